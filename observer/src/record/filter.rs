//! Which records a question is about: a time window and exact names, shared by `observer
//! report` (on journal lines) and `GET /terminations` (on typed records), both read as an
//! [`Entry`]. Pure: "now" is an argument.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use super::entry::Entry;
use crate::duration::{self, DurationError};

/// Every outcome a record can have, as the journal spells it.
pub const OUTCOMES: &[&str] = &[
    "graceful",
    "killed",
    "killed_without_stop_signal",
    "oom_killed",
    "exit_not_observed",
    "stuck",
];

/// Why a filter's argument does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("{0}")]
    Duration(DurationError),
    #[error(
        "bad time {0:?}: expected RFC 3339 (2026-08-01T02:00:00Z) or a date (2026-08-01, UTC)"
    )]
    Time(String),
    #[error("unknown outcome {0:?}: expected one of {all}", all = OUTCOMES.join(", "))]
    Outcome(String),
    #[error("unknown verdict {0:?}: expected one of {all}", all = VERDICTS.join(", "))]
    Verdict(String),
}

/// Every verdict a record can have ([`crate::verdict::Verdict`]), as the journal spells it.
pub const VERDICTS: &[&str] = &["kept", "kill_late", "kill_early", "unknown", "not_a_stop"];

/// Conditions a record must all meet. The window is on the record's `ts` (the exit), both
/// ends inclusive; names compare exactly.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub namespace: Option<String>,
    pub workload: Option<String>,
    pub pod: Option<String>,
    pub outcome: Option<String>,
    pub verdict: Option<String>,
}

impl Filter {
    /// True when the record meets every condition.
    pub fn matches(&self, e: &Entry<'_>) -> bool {
        self.matches_names(
            e.at,
            &Names {
                namespace: e.namespace.as_deref(),
                workload: e.workload.as_deref(),
                pod: e.pod.as_deref(),
                outcome: &e.outcome,
                verdict: e.verdict.as_deref(),
            },
        )
    }

    /// The conditions on a record's time and names, however they were read (a journal line's
    /// [`Entry`], a pod record, the recent store's time parsed once at push).
    pub fn matches_names(&self, at: DateTime<Utc>, n: &Names<'_>) -> bool {
        let same = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        self.from.is_none_or(|f| at >= f)
            && self.to.is_none_or(|t| at <= t)
            && same(&self.namespace, n.namespace)
            && same(&self.workload, n.workload)
            && same(&self.pod, n.pod)
            && self.outcome.as_deref().is_none_or(|o| n.outcome == o)
            && same(&self.verdict, n.verdict)
    }

    /// The same conditions on a pod record ([`crate::pod::PodRecord`]): its `ts`, names and
    /// outcome; a verdict condition matches no pod.
    pub fn matches_pod(&self, p: &crate::pod::PodRecord) -> bool {
        let Ok(at) = DateTime::parse_from_rfc3339(&p.ts).map(|t| t.with_timezone(&Utc)) else {
            return false;
        };
        self.matches_names(at, &Names::of_pod(p))
    }
}

/// What a [`Filter`] reads of a record besides its time, borrowed from it.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    pub namespace: Option<&'a str>,
    pub workload: Option<&'a str>,
    pub pod: Option<&'a str>,
    pub outcome: &'a str,
    /// Pods have none.
    pub verdict: Option<&'a str>,
}

impl<'a> Names<'a> {
    /// A container record's, as [`crate::record::Record::entry`] has them.
    pub fn of_record(r: &'a crate::record::Record) -> Self {
        Self {
            namespace: r.namespace.as_deref(),
            workload: r.workload.as_deref(),
            pod: r.pod.as_deref(),
            outcome: r.outcome.as_str(),
            verdict: Some(r.verdict.as_str()),
        }
    }

    /// A pod record's.
    pub fn of_pod(p: &'a crate::pod::PodRecord) -> Self {
        Self {
            namespace: p.namespace.as_deref(),
            workload: p.workload.as_deref(),
            pod: p.pod.as_deref(),
            outcome: p.outcome,
            verdict: None,
        }
    }
}

/// RFC 3339 with any offset, `YYYY-MM-DDTHH:MM:SS` (UTC) or a date alone (midnight UTC).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, FilterError> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| FilterError::Time(s.to_string()))
}

/// The start of a `since` window: a duration before `now` (in [`duration::GRAMMAR`]), or a
/// time.
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, FilterError> {
    match duration::parse(s) {
        Ok(d) => {
            Ok(now.checked_sub_signed(duration::to_chrono(d)).unwrap_or(DateTime::<Utc>::MIN_UTC))
        }
        Err(duration_err) => parse_time(s).map_err(|_| FilterError::Duration(duration_err)),
    }
}

/// A verdict as the journal spells it ([`VERDICTS`]).
pub fn parse_verdict(s: &str) -> Result<String, FilterError> {
    let s = s.trim();
    VERDICTS
        .iter()
        .find(|v| v.eq_ignore_ascii_case(s))
        .map(|v| v.to_string())
        .ok_or_else(|| FilterError::Verdict(s.to_string()))
}

/// An outcome as the journal spells it ([`OUTCOMES`]).
pub fn parse_outcome(s: &str) -> Result<String, FilterError> {
    OUTCOMES
        .iter()
        .find(|o| **o == s)
        .map(|o| o.to_string())
        .ok_or_else(|| FilterError::Outcome(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{correlate::Outcome, record::Record};

    fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    #[test]
    fn outcomes_are_the_journal_spelling() {
        let all = [
            Outcome::Graceful,
            Outcome::Killed,
            Outcome::KilledWithoutStopSignal,
            Outcome::OomKilled,
            Outcome::ExitNotObserved,
            Outcome::Stuck,
        ];
        assert_eq!(all.map(Outcome::as_str).as_slice(), OUTCOMES);
        let verdicts = crate::verdict::Verdict::ALL.map(crate::verdict::Verdict::as_str);
        assert_eq!(verdicts.as_slice(), VERDICTS);
        assert_eq!(parse_verdict("Kill_Late").unwrap(), "kill_late");
        assert!(parse_verdict("late").unwrap_err().to_string().contains("kill_early"));
        for o in all {
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
        assert_eq!(parse_outcome("killed").unwrap(), "killed");
        assert!(parse_outcome("KILLED").unwrap_err().to_string().contains("oom_killed"));
    }

    #[test]
    fn times_in_rfc3339_naive_utc_or_a_date() {
        assert_eq!(t("2026-08-01T02:00:00Z"), t("2026-08-01T04:00:00+02:00"));
        assert_eq!(t("2026-08-01T02:00:00"), t("2026-08-01T02:00:00Z"));
        assert_eq!(t("2026-08-01 02:00:00.5"), t("2026-08-01T02:00:00.500Z"));
        assert_eq!(t("2026-08-01"), t("2026-08-01T00:00:00Z"));
        for bad in ["", "yesterday", "2026-13-01", "2026-08-01T25:00:00Z", "1690000000"] {
            assert!(parse_time(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn since_is_a_duration_before_now_or_a_time() {
        let now = t("2026-08-01T12:00:00Z");
        assert_eq!(parse_since("2h", now), Ok(t("2026-08-01T10:00:00Z")));
        assert_eq!(parse_since("2026-08-01T11:00:00Z", now), Ok(t("2026-08-01T11:00:00Z")));
        assert_eq!(parse_since("9999999999999w", now).ok(), Some(DateTime::<Utc>::MIN_UTC));
        let e = parse_since("yesterday", now).unwrap_err().to_string();
        assert!(e.contains("yesterday") && e.contains("15m"), "{e}");
    }

    #[test]
    fn filter_matches_window_and_exact_names() {
        let r = Record::example().at("2026-08-01T02:00:00.000000001Z").pod("web-1").build();
        let e = r.entry().unwrap();
        let all = Filter::default();
        assert!(all.matches(&e));
        let f = |f: Filter| f.matches(&e);
        assert!(f(Filter { namespace: Some("shop".into()), ..all.clone() }));
        assert!(!f(Filter { namespace: Some("sho".into()), ..all.clone() }));
        assert!(!f(Filter { workload: Some("api".into()), ..all.clone() }));
        assert!(f(Filter { pod: Some("web-1".into()), ..all.clone() }));
        assert!(!f(Filter { outcome: Some("graceful".into()), ..all.clone() }));
        assert!(f(Filter { from: Some(t("2026-08-01T02:00:00Z")), ..all.clone() }));
        assert!(!f(Filter { from: Some(t("2026-08-01T02:00:01Z")), ..all.clone() }));
        assert!(!f(Filter { to: Some(t("2026-08-01T02:00:00Z")), ..all.clone() }));
        assert!(f(Filter { to: Some(t("2026-08-01T02:00:00.000000001Z")), ..all.clone() }));
        // A record with no namespace never matches a namespace filter.
        let anon = Record::example().unnamed().build();
        assert!(!Filter { namespace: Some("shop".into()), ..all }.matches(&anon.entry().unwrap()));
    }
}
