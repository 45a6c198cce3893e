//! Durations as a user writes them: one grammar for every flag that takes one
//! (`--cri-timeout`, `--start-after`, `--grace-period`, `--prestop-sleep`, `--since`) and for
//! `GET /terminations?since=`.
//!
//! The grammar is humantime's: a number and a unit, or several summed (`1h30m`, `1h 30m`),
//! the number whole or with a decimal fraction (`1.5s`, `0.25h`). Units: `ns`, `us`, `ms`,
//! `s`, `m`, `h`, `d`, `w`, and humantime's longer spellings (`sec`, `min`, `hours`, `days`,
//! ..., `M` for months of 30.44 days, `y` for years of 365.25 days). Beyond humantime, for
//! what the flags accepted before: a number alone is seconds (`3`, `0.5`), a leading `+` is
//! allowed, and a number may leave out the digits on one side of its point (`.5s`, `5.s`).
//! Bounds are the flags' own: see [`parse_at_most`] and [`parse_whole_seconds`].

use std::{fmt, time::Duration};

/// The grammar in words, as every duration flag's help and every error say it.
pub const GRAMMAR: &str = "a number and a unit (ms, s, m, h, d, w) or several, e.g. 500ms, \
    1.5s, 15m, 1h30m, 2d; a number alone is seconds";

/// Why a duration does not parse, or is out of a flag's bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("bad duration {0:?}: expected {GRAMMAR}")]
    Syntax(String),
    #[error(
        "bad duration {0:?}: too long, finer than 1ns, or a fraction of an hour, day or week \
        that is not whole seconds"
    )]
    Range(String),
    #[error("bad duration {input:?}: at most {}", Short(*max))]
    TooLong { input: String, max: Duration },
    #[error("bad duration {0:?}: whole seconds only")]
    NotWholeSeconds(String),
}

/// Parses a duration in the [`GRAMMAR`], without bounds.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(&normalize(s)).map_err(|e| match e {
        humantime::DurationError::NumberOverflow => DurationError::Range(s.to_string()),
        _ => DurationError::Syntax(s.to_string()),
    })
}

/// Parses a duration of at most `max`.
pub fn parse_at_most(s: &str, max: Duration) -> Result<Duration, DurationError> {
    let d = parse(s)?;
    if d > max {
        return Err(DurationError::TooLong { input: s.to_string(), max });
    }
    Ok(d)
}

/// Parses a duration that is a whole number of seconds (kubelet's grace periods and sleeps
/// count in seconds), and returns that number.
pub fn parse_whole_seconds(s: &str) -> Result<u64, DurationError> {
    let d = parse(s)?;
    if d.subsec_nanos() != 0 {
        return Err(DurationError::NotWholeSeconds(s.to_string()));
    }
    Ok(d.as_secs())
}

/// `d` as a chrono duration, saturating at chrono's maximum (about 292 million years: as good
/// as "everything" for a time window).
pub fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// What humantime reads for `s`: trimmed, without a leading `+`, a point with digits on one
/// side only completed (`.5s` -> `0.5s`, `5.s` -> `5s`), and `s` after a number alone.
fn normalize(s: &str) -> String {
    let t = s.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    let digit_at =
        |i: Option<usize>| i.and_then(|i| t.as_bytes().get(i)).is_some_and(u8::is_ascii_digit);
    let mut out = String::with_capacity(t.len() + 2);
    for (i, c) in t.char_indices() {
        if c == '.' {
            match (digit_at(i.checked_sub(1)), digit_at(Some(i + 1))) {
                (false, true) => out.push_str("0."),
                (true, false) => {}
                _ => out.push('.'),
            }
        } else {
            out.push(c);
        }
    }
    if out.bytes().any(|b| b.is_ascii_digit())
        && out.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        out.push('s');
    }
    out
}

/// A bound as the grammar writes it: `24h`, `90s`, `500ms`.
struct Short(Duration);

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (secs, nanos) = (self.0.as_secs(), self.0.subsec_nanos());
        match (secs, nanos) {
            (s, 0) if s > 0 && s % 3600 == 0 => write!(f, "{}h", s / 3600),
            (s, 0) if s > 0 && s % 60 == 0 => write!(f, "{}m", s / 60),
            (s, 0) => write!(f, "{s}s"),
            (s, n) if n % 1_000_000 == 0 => write!(f, "{}ms", s * 1000 + u64::from(n / 1_000_000)),
            _ => write!(f, "{}ns", self.0.as_nanos()),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn ms(n: u64) -> Result<Duration, DurationError> {
        Ok(Duration::from_millis(n))
    }

    #[test]
    fn units_and_combinations_parse() {
        assert_eq!(parse("500ms"), ms(500));
        assert_eq!(parse("2s"), ms(2_000));
        assert_eq!(parse("1m"), ms(60_000));
        assert_eq!(parse("90s"), ms(90_000));
        assert_eq!(parse("15m"), ms(900_000));
        assert_eq!(parse("6h"), ms(21_600_000));
        assert_eq!(parse("2d"), ms(172_800_000));
        assert_eq!(parse("1w"), ms(604_800_000));
        assert_eq!(parse("1h30m"), ms(5_400_000));
        assert_eq!(parse("1h 30m"), ms(5_400_000));
        assert_eq!(parse("1m30s500ms"), ms(90_500));
        assert_eq!(parse("30m1h"), ms(5_400_000));
        assert_eq!(parse("2 min"), ms(120_000));
        assert_eq!(parse("250us"), Ok(Duration::from_micros(250)));
    }

    #[test]
    fn what_the_drill_and_the_report_accepted_still_parses() {
        // The drill's: fractions, a number alone as seconds, spaces around.
        assert_eq!(parse("1.5s"), ms(1_500));
        assert_eq!(parse("0.5s"), ms(500));
        assert_eq!(parse("1.5m"), ms(90_000));
        assert_eq!(parse("1.5ms"), Ok(Duration::from_micros(1_500)));
        assert_eq!(parse("3"), ms(3_000));
        assert_eq!(parse("0.5"), ms(500));
        assert_eq!(parse("0"), ms(0));
        assert_eq!(parse(" 2s "), ms(2_000));
        assert_eq!(parse("2 s"), ms(2_000));
        assert_eq!(parse("+2s"), ms(2_000));
        assert_eq!(parse(".5s"), ms(500));
        assert_eq!(parse("5.s"), ms(5_000));
        assert_eq!(parse("5."), ms(5_000));
        // The report's: integers with s, m, h, d, w, summed.
        assert_eq!(parse("0s"), ms(0));
        assert_eq!(parse("1m1m"), ms(120_000));
        // Huge but representable: the caller decides.
        assert!(parse("9999999999999w").is_ok());
        // Whole seconds as kubelet counts them (the drill's --grace-period and --prestop-sleep).
        assert_eq!(parse_whole_seconds("30"), Ok(30));
        assert_eq!(parse_whole_seconds("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn what_is_not_a_duration_says_the_grammar() {
        for bad in [
            "",
            " ",
            "ms",
            "s",
            "abc",
            "yesterday",
            "-1s",
            "-0s",
            "1x",
            "10 x",
            "1sec2",
            "NaNs",
            "inf",
            "1e3",
            "1.2.3s",
            ".",
            "..5s",
            "1h-30m",
            "1,5s",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e, DurationError::Syntax(bad.to_string()), "{bad:?}");
            let text = e.to_string();
            assert!(text.starts_with("bad duration") && text.contains(GRAMMAR), "{text}");
        }
        for huge in ["99999999999999999999s", "99999999999999w", "0.0000000001s", "0.001h"] {
            assert_eq!(parse(huge), Err(DurationError::Range(huge.to_string())), "{huge:?}");
        }
    }

    #[test]
    fn bounds_are_the_callers_and_say_so() {
        assert_eq!(parse_at_most("24h", DAY), Ok(DAY));
        assert_eq!(parse_at_most("1d", DAY), Ok(DAY));
        assert_eq!(parse_at_most("500ms", DAY), ms(500));
        let e = parse_at_most("100000m", DAY).unwrap_err();
        assert_eq!(e.to_string(), "bad duration \"100000m\": at most 24h");
        assert!(matches!(parse_at_most("x", DAY), Err(DurationError::Syntax(_))));
        let e = parse_whole_seconds("1.5s").unwrap_err();
        assert_eq!(e.to_string(), "bad duration \"1.5s\": whole seconds only");
        assert_eq!(parse_whole_seconds("1m"), Ok(60));
        assert_eq!(
            parse_whole_seconds("1500ms"),
            Err(DurationError::NotWholeSeconds("1500ms".into()))
        );
    }

    #[test]
    fn bounds_print_in_the_grammar() {
        let s = |d| Short(d).to_string();
        assert_eq!(s(DAY), "24h");
        assert_eq!(s(Duration::from_secs(90)), "90s");
        assert_eq!(s(Duration::from_secs(120)), "2m");
        assert_eq!(s(Duration::from_millis(1_500)), "1500ms");
        assert_eq!(s(Duration::ZERO), "0s");
        assert_eq!(s(Duration::from_nanos(7)), "7ns");
    }

    #[test]
    fn chrono_saturates_beyond_its_range() {
        assert_eq!(to_chrono(Duration::from_secs(90)), chrono::Duration::seconds(90));
        assert_eq!(to_chrono(parse("9999999999999w").unwrap()), chrono::Duration::MAX);
    }

    proptest! {
        // `GET /terminations?since=` reads remote input with it.
        #[test]
        fn duration_parser_never_panics(s in ".*") {
            let _ = parse(&s);
        }

        #[test]
        fn written_durations_read_back(h in 0u64..1000, m in 0u64..60, s in 0u64..60, milli in 0u64..1000) {
            let text = format!("{h}h{m}m{s}s{milli}ms");
            let want = Duration::from_millis(((h * 60 + m) * 60 + s) * 1000 + milli);
            prop_assert_eq!(parse(&text), Ok(want));
            prop_assert_eq!(parse(&format!("{h}h {m}m {s}.{milli:03}s")), Ok(want));
        }
    }
}
