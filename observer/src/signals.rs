//! Signal names and numbers (Linux generic ABI: x86, arm64, riscv; include/uapi/asm-generic/signal.h).

/// (number, name) for the signals observer can report.
const SIGNALS: &[(u32, &str)] = &[
    (1, "SIGHUP"),
    (2, "SIGINT"),
    (3, "SIGQUIT"),
    (4, "SIGILL"),
    (5, "SIGTRAP"),
    (6, "SIGABRT"),
    (7, "SIGBUS"),
    (8, "SIGFPE"),
    (9, "SIGKILL"),
    (10, "SIGUSR1"),
    (11, "SIGSEGV"),
    (12, "SIGUSR2"),
    (13, "SIGPIPE"),
    (14, "SIGALRM"),
    (15, "SIGTERM"),
    (16, "SIGSTKFLT"),
    (17, "SIGCHLD"),
    (18, "SIGCONT"),
    (19, "SIGSTOP"),
    (20, "SIGTSTP"),
    (21, "SIGTTIN"),
    (22, "SIGTTOU"),
    (23, "SIGURG"),
    (24, "SIGXCPU"),
    (25, "SIGXFSZ"),
    (26, "SIGVTALRM"),
    (27, "SIGPROF"),
    (28, "SIGWINCH"),
    (29, "SIGIO"),
    (30, "SIGPWR"),
    (31, "SIGSYS"),
];

pub const SIGKILL: u32 = 9;
pub const SIGTERM: u32 = 15;

/// "SIGTERM" for 15; "SIG<n>" for real-time and unknown numbers.
pub fn name(sig: u32) -> String {
    SIGNALS
        .iter()
        .find(|(n, _)| *n == sig)
        .map(|(_, s)| (*s).to_string())
        .unwrap_or_else(|| format!("SIG{sig}"))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown signal {0:?} (use a name like SIGTERM or TERM, or a number 1..=63)")]
pub struct UnknownSignal(pub String);

/// Parses "SIGTERM", "TERM", "term" or "15".
pub fn parse(s: &str) -> Result<u32, UnknownSignal> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u32>() {
        return if (1..=63).contains(&n) { Ok(n) } else { Err(UnknownSignal(s.into())) };
    }
    let upper = t.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    SIGNALS.iter().find(|(_, n)| *n == full).map(|(n, _)| *n).ok_or_else(|| UnknownSignal(s.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(name(15), "SIGTERM");
        assert_eq!(name(28), "SIGWINCH");
        assert_eq!(name(40), "SIG40");
        assert_eq!(parse("SIGQUIT"), Ok(3));
        assert_eq!(parse("usr1"), Ok(10));
        assert_eq!(parse(" 15 "), Ok(15));
        assert!(parse("0").is_err());
        assert!(parse("64").is_err());
        assert!(parse("SIGNOPE").is_err());
        assert!(parse("").is_err());
    }
}
