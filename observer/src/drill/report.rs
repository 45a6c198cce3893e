//! The drill's report: a timeline of what the kernel saw and a verdict with the fix in plain
//! words. Pure: built from the termination and its record.

use std::fmt;

use super::args::DrillArgs;
use crate::{
    correlate::{Outcome, Termination},
    events::Disposition,
    record::Record,
    signals,
};

/// Exit statuses of `observer drill`.
pub mod status {
    pub const GRACEFUL: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const SIGKILL_NEEDED: u8 = 3;
    pub const PRESTOP_OVERRUN: u8 = 4;
}

/// The judgement, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub exit_status: u8,
    pub summary: String,
    /// The fix in plain words; None when there is nothing to fix.
    pub fix: Option<String>,
}

/// Program names of shells: as PID 1 they neither forward signals to their foreground child
/// nor run a trap until it ends.
const SHELLS: &[&str] = &["sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "busybox"];

fn is_shell(comm: &str) -> bool {
    SHELLS.contains(&comm)
}

/// `0.8 ms`, `250.3 ms`, `2.004 s`.
pub fn human(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{seconds:.3} s")
    }
}

/// Judges a drill's record. `grace` is G; `stop` the stop signal's name.
pub fn verdict(record: &Record, grace: u64) -> Verdict {
    let sig = record.stop_signal.clone().unwrap_or_else(|| "the stop signal".into());
    let comm = record.comm.as_str();
    let overrun = record.prestop.as_ref().is_some_and(|p| p.overrun);
    let overrun_note = format!(
        "the preStop hook used up the {grace} s grace period, so PID 1 got {sig} with only \
         the 2 s minimum before SIGKILL: shorten the hook, or raise \
         terminationGracePeriodSeconds above the hook's duration plus the app's shutdown time"
    );
    let killed = matches!(
        record.outcome,
        Outcome::Killed | Outcome::KilledWithoutStopSignal | Outcome::OomKilled
    );
    if !killed {
        let took = record.term_to_exit_seconds.map(human).unwrap_or_else(|| "?".into());
        let code = match (record.exit_code, &record.exit_signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("ended by {s}"),
            (None, None) => "unknown exit".into(),
        };
        if overrun {
            return Verdict {
                exit_status: status::PRESTOP_OVERRUN,
                summary: format!(
                    "preStop overran: PID 1 exited {took} after {sig} ({code}), with no margin left"
                ),
                fix: Some(overrun_note),
            };
        }
        let fix = match record.exit_code {
            Some(c) if c != 0 => Some(format!(
                "exit with code 0 on {sig}: kubelet reports exit code {c} as reason Error"
            )),
            _ => None,
        };
        return Verdict {
            exit_status: status::GRACEFUL,
            summary: format!("graceful: PID 1 exited {took} after {sig} ({code})"),
            fix,
        };
    }
    let window = record.term_to_kill_seconds.map(human).unwrap_or_else(|| "?".into());
    let (summary, mut fix) = match (record.outcome, record.stop_signal_ignored, record.stop_signal_handler, record.stop_signal_disposition) {
        (Outcome::OomKilled, ..) => (
            "SIGKILL by the OOM killer".to_string(),
            "raise the memory limit or lower the app's use".to_string(),
        ),
        (Outcome::KilledWithoutStopSignal, ..) => (
            "SIGKILL came with no stop signal before it".to_string(),
            "nothing the app can do: it was killed outright (grace period 0 at the runtime)".to_string(),
        ),
        (_, Some(true), Some(Disposition::Ignored), _) => (
            format!("{sig} was ignored: PID 1 ({comm}) sets it to SIG_IGN; SIGKILL after {window}"),
            format!("stop ignoring {sig} (trap '' TERM, signal.Ignore, nohup) and shut down on it"),
        ),
        (_, Some(true), _, _) if is_shell(comm) => (
            format!("{sig} was ignored: PID 1 is a shell ({comm}) with no handler, and a shell does not forward {sig} to its child; SIGKILL after {window}"),
            "exec your server from the entrypoint (`exec app`, or the exec form of CMD), or run under an init such as tini".to_string(),
        ),
        (_, Some(true), _, _) => (
            format!("{sig} was ignored: PID 1 ({comm}) has no handler, and the kernel drops it for a pid namespace's init; SIGKILL after {window}"),
            "exec your server from the entrypoint, install a handler, or run under an init such as tini".to_string(),
        ),
        (_, _, _, Some(Disposition::Handled)) if is_shell(comm) => (
            format!("PID 1 is a shell ({comm}) that caught {sig} but was still running after {window}: its trap runs only when its foreground child ends"),
            "exec the server (`exec app`), or run the child in the background and forward the signal: trap 'kill -TERM $pid' TERM; app & pid=$!; wait".to_string(),
        ),
        (_, _, _, Some(_)) => (
            format!("PID 1 ({comm}) received {sig} but was still running after {window}"),
            "finish shutting down within the grace period, or raise terminationGracePeriodSeconds".to_string(),
        ),
        _ => (
            format!("{sig} was sent but never delivered to PID 1 ({comm}): it blocks the signal; SIGKILL after {window}"),
            format!("unblock {sig} in PID 1 (sigprocmask) and shut down on it"),
        ),
    };
    if overrun {
        fix = format!("{overrun_note}; and {fix}");
    }
    Verdict {
        exit_status: status::SIGKILL_NEEDED,
        summary: format!("SIGKILL was needed. {summary}"),
        fix: Some(fix),
    }
}

/// One line of the timeline, at a kernel time.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub at_ns: u64,
    pub what: String,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub header: String,
    pub steps: Vec<Step>,
    pub verdict: Verdict,
    /// The daemon's verdict on the same record: was kubelet's stop sequence kept.
    pub contract: String,
    /// What kubectl describe will show for it.
    pub kubectl: String,
}

/// The daemon's verdict on a record ([`crate::verdict`]) in words, as the journal judges it.
pub fn contract_line(record: &Record) -> String {
    let c = &record.contract;
    let window =
        c.stop_window_seconds
            .map(|w| {
                if w.min == w.max {
                    format!("{} s", w.min)
                } else {
                    format!("{}-{} s", w.min, w.max)
                }
            })
            .unwrap_or_else(|| "?".into());
    let observed = c.observed_seconds.map(human).unwrap_or_else(|| "?".into());
    let what = if record.sigkill_at.is_some() { "SIGKILL" } else { "the exit" };
    match record.verdict {
        crate::verdict::Verdict::Kept => format!(
            "kept: {what} {observed} after the stop signal, inside kubelet's window of {window}"
        ),
        crate::verdict::Verdict::Unknown => {
            format!("unknown: {} not known", c.missing.as_deref().unwrap_or_default().join(", "))
        }
        crate::verdict::Verdict::NotAStop => "not_a_stop: the OOM killer, not a stop".into(),
        _ => record
            .entry()
            .ok()
            .and_then(|e| crate::report::summary::broken(&e))
            .map(|b| format!("{b} (kubelet's window: {window}; {what} came after {observed})"))
            .unwrap_or_else(|| record.verdict.as_str().into()),
    }
}

impl Report {
    pub fn new(
        t: &Termination,
        record: &Record,
        args: &DrillArgs,
        hook_error: Option<String>,
    ) -> Self {
        let mut steps = Vec::new();
        let sig = signals::name(args.stop_signal);
        if let Some(p) = &record.prestop {
            if p.kind == "exec" {
                if let Some(s) = t.prestop_candidates.iter().find(|s| Some(s.session.pid) == p.pid)
                {
                    steps.push(Step {
                        at_ns: s.started_ns,
                        what: format!(
                            "preStop exec started: {} (pid {}, started by {} pid {})",
                            s.session.comm, s.session.pid, s.parent.comm, s.parent.pid
                        ),
                    });
                    if let Some(e) = s.ended_ns {
                        steps.push(Step {
                            at_ns: e,
                            what: format!(
                                "preStop exec ended after {:.3} s{}",
                                (e - s.started_ns) as f64 / 1e9,
                                if p.overrun {
                                    " (it ran past the grace period and died with the container)"
                                } else {
                                    ""
                                }
                            ),
                        });
                    }
                }
            }
        }
        if let Some(s) = &t.stop_signal {
            let fate = match (s.ignored, s.handler, s.disposition) {
                (true, Some(Disposition::Ignored), _) => {
                    "dropped by the kernel: PID 1 ignores it (SIG_IGN)".to_string()
                }
                (true, _, _) => "dropped by the kernel: PID 1 has no handler".to_string(),
                (false, _, Some(Disposition::Handled)) => "delivered: PID 1 handles it".to_string(),
                (false, _, Some(Disposition::Default)) => "delivered: default action".to_string(),
                (false, _, Some(Disposition::Ignored)) => "delivered: ignored".to_string(),
                (false, _, Some(Disposition::Blocked)) => "delivered".to_string(),
                (false, Some(Disposition::Blocked), None) => {
                    "pending: PID 1 blocks it, to take it with sigwait or a signalfd (as tini \
                     does) or when it unblocks it"
                        .to_string()
                }
                (false, _, None) => "not delivered (PID 1 exited first)".to_string(),
            };
            steps.push(Step {
                at_ns: s.at_ns,
                what: format!(
                    "{} sent by {} (pid {}): {fate}",
                    signals::name(s.sig),
                    s.sender.comm,
                    s.sender.pid
                ),
            });
        }
        if let Some(k) = &t.sigkill {
            steps.push(Step {
                at_ns: k.at_ns,
                what: format!("SIGKILL sent by {} (pid {})", k.sender.comm, k.sender.pid),
            });
        }
        let how = match (t.exit.code, t.exit.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by {}", signals::name(s)),
            _ => "unknown status".into(),
        };
        steps.push(Step { at_ns: t.exit.at_ns, what: format!("PID 1 exited: {how}") });
        steps.sort_by_key(|s| s.at_ns);
        let hook = match args.hook() {
            None => "no preStop hook".to_string(),
            Some(super::Hook::Exec(c)) => format!("preStop exec {c:?}"),
            Some(super::Hook::Http(h)) => {
                format!("preStop HTTP GET http://{}:{}{}", h.host, h.port, h.path)
            }
            Some(super::Hook::Sleep(d)) => format!("preStop sleep {} s", d.as_secs()),
        };
        let mut header = format!(
            "observer drill: {} as PID 1 (pid {}, cgroup {}), grace period {} s, stop signal {sig}, {hook}",
            super::process::display_command(&args.command),
            t.pid,
            record.cgroup.as_deref().unwrap_or("?"),
            args.grace_period,
        );
        if let Some(e) = hook_error {
            header.push_str(&format!(
                "\npreStop hook failed: {e} (kubelet records FailedPreStopHook and goes on)"
            ));
        }
        if let Some(p) = record.prestop.as_ref().filter(|p| p.kind == "inferred") {
            header.push_str(&format!(
                "\npreStop inferred from the stop window: kubelet charged it {} s{}",
                p.duration_seconds.unwrap_or(0.0),
                if p.overrun { ", an overrun" } else { "" }
            ));
        }
        let k = &record.kubernetes;
        let kubectl = match (k.reason, k.exit_code) {
            (Some(r), Some(c)) => format!("{r}, exit code {c}: {}", k.note),
            _ => k.note.clone(),
        };
        Self {
            header,
            steps,
            verdict: verdict(record, args.grace_period),
            contract: contract_line(record),
            kubectl,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.header)?;
        let t0 = self.steps.first().map(|s| s.at_ns).unwrap_or(0);
        for s in &self.steps {
            writeln!(f, "  +{:>8.3} s  {}", (s.at_ns - t0) as f64 / 1e9, s.what)?;
        }
        writeln!(f, "grace period: {}", self.contract)?;
        writeln!(f, "kubectl will show: {}", self.kubectl)?;
        write!(f, "verdict: {}", self.verdict.summary)?;
        if let Some(fix) = &self.verdict.fix {
            write!(f, "\nfix: {fix}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::PreStop;

    /// A record as the drill makes them; each test changes what it is about.
    fn record(comm: &str) -> Record {
        let mut r = Record::example().graceful(0.25).build();
        r.comm = comm.into();
        r.pid = 10;
        r
    }

    fn killed(mut r: Record, ignored: bool, handler: Disposition) -> Record {
        r.outcome = Outcome::Killed;
        r.stop_signal_ignored = Some(ignored);
        r.stop_signal_handler = Some(handler);
        r.stop_signal_disposition = (!ignored).then_some(handler);
        r.exit_code = None;
        r.exit_signal = Some("SIGKILL".into());
        r.term_to_kill_seconds = Some(30.002);
        r
    }

    fn overrun() -> Option<PreStop> {
        Some(PreStop {
            kind: "exec",
            started_at: None,
            ended_at: None,
            duration_seconds: Some(32.0),
            overrun: true,
            pid: Some(11),
            comm: Some("sh".into()),
        })
    }

    #[test]
    fn a_clean_exit_is_status_0_with_nothing_to_fix() {
        let v = verdict(&record("server"), 30);
        assert_eq!(v.exit_status, status::GRACEFUL);
        assert_eq!(v.summary, "graceful: PID 1 exited 250.0 ms after SIGTERM (exit code 0)");
        assert_eq!(v.fix, None);
        let mut r = record("server");
        r.exit_code = Some(1);
        let v = verdict(&r, 30);
        assert_eq!(v.exit_status, status::GRACEFUL);
        assert!(v.fix.unwrap().contains("exit code 1 as reason Error"));
    }

    #[test]
    fn no_handler_names_the_fix_and_tells_shells_apart() {
        let v = verdict(&killed(record("server"), true, Disposition::Default), 30);
        assert_eq!(v.exit_status, status::SIGKILL_NEEDED);
        assert!(v.summary.contains("SIGTERM was ignored: PID 1 (server) has no handler"), "{v:?}");
        assert_eq!(
            v.fix.as_deref(),
            Some("exec your server from the entrypoint, install a handler, or run under an init such as tini")
        );
        let v = verdict(&killed(record("sh"), true, Disposition::Default), 30);
        assert!(v.summary.contains("PID 1 is a shell (sh)"), "{v:?}");
        assert!(v.summary.contains("does not forward SIGTERM to its child"), "{v:?}");
    }

    #[test]
    fn sig_ign_and_a_slow_handler_have_their_own_words() {
        let v = verdict(&killed(record("app"), true, Disposition::Ignored), 30);
        assert!(v.summary.contains("sets it to SIG_IGN"), "{v:?}");
        let v = verdict(&killed(record("app"), false, Disposition::Handled), 30);
        assert!(v.summary.contains("received SIGTERM but was still running after 30.002 s"));
        assert!(v.fix.unwrap().contains("terminationGracePeriodSeconds"));
        let v = verdict(&killed(record("bash"), false, Disposition::Handled), 30);
        assert!(v.summary.contains("its trap runs only when its foreground child ends"), "{v:?}");
    }

    #[test]
    fn a_prestop_overrun_is_status_4_without_sigkill_and_3_with_it() {
        let mut r = record("app");
        r.prestop = overrun();
        let v = verdict(&r, 30);
        assert_eq!(v.exit_status, status::PRESTOP_OVERRUN);
        assert!(v.fix.unwrap().contains("used up the 30 s grace period"));
        let mut r = killed(record("app"), false, Disposition::Handled);
        r.prestop = overrun();
        let v = verdict(&r, 30);
        assert_eq!(v.exit_status, status::SIGKILL_NEEDED);
        assert!(v.fix.unwrap().starts_with("the preStop hook used up the 30 s grace period"));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(0.0008), "0.8 ms");
        assert_eq!(human(2.0041), "2.004 s");
    }

    #[test]
    fn the_contract_reads_as_the_daemon_judges_it() {
        let kept = Record::example().killed(30.0, 30.01).build();
        assert_eq!(
            contract_line(&kept),
            "kept: SIGKILL 30.000 s after the stop signal, inside kubelet's window of 30 s"
        );
        let early = Record::example().killed(5.0, 5.01).build();
        assert_eq!(
            contract_line(&early),
            "kill_early: got 5 s of 30 s, cause unknown: kubelet's configuration not read: no process named kubelet seen on this node \
             (kubelet's window: 30 s; SIGKILL came after 5.000 s)"
        );
        let graceful = Record::example().graceful(0.25).build();
        assert!(contract_line(&graceful).starts_with("kept: the exit 250.0 ms after"));
        let unnamed = Record::example().unnamed().build();
        assert!(
            contract_line(&unnamed).starts_with("unknown: grace_period"),
            "{}",
            contract_line(&unnamed)
        );
    }
}
