//! The read side of the journal schema ([`crate::record::Record`]): the fields the report and
//! `GET /terminations` filter and summarise on, borrowed from the line where possible.
//! Unknown fields are ignored, so older readers keep working on newer journals.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

/// Why a journal line is not a record.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("not a journal record: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Entry<'a> {
    /// `ts`: the exit, RFC 3339.
    #[serde(rename = "ts", deserialize_with = "rfc3339")]
    pub at: DateTime<Utc>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub pod: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub container: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub workload: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub outcome: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub stop_signal: Option<Cow<'a, str>>,
    #[serde(default)]
    pub stop_signal_ignored: Option<bool>,
    /// The disposition when the stop signal was sent: "default" (no handler) or "ignored".
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub stop_signal_handler: Option<Cow<'a, str>>,
    #[serde(default)]
    pub term_to_exit_seconds: Option<f64>,
    #[serde(default)]
    pub term_to_kill_seconds: Option<f64>,
    #[serde(default)]
    pub grace_period_seconds: Option<u64>,
    #[serde(default)]
    pub prestop: Option<PreStopEntry>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PreStopEntry {
    #[serde(default)]
    pub duration_seconds: Option<f64>,
    #[serde(default)]
    pub overrun: bool,
}

fn rfc3339<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let s = Cow::<'de, str>::deserialize(d)?;
    DateTime::parse_from_rfc3339(&s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| serde::de::Error::custom(format!("ts {s:?}: {e}")))
}

/// `Option<Cow<str>>` that borrows from the line when it can (serde's derive only borrows a
/// bare `Cow<str>`): no allocation per name for the common, escape-free journal line.
fn opt_cow<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed<'a>>::deserialize(d)?.map(|b| b.0))
}

fn owned(c: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
    c.map(|c| Cow::Owned(c.into_owned()))
}

impl<'a> Entry<'a> {
    /// One journal line (without its newline).
    pub fn parse(line: &'a [u8]) -> Result<Self, EntryError> {
        Ok(serde_json::from_slice(line)?)
    }

    pub fn into_owned(self) -> Entry<'static> {
        Entry {
            at: self.at,
            namespace: owned(self.namespace),
            pod: owned(self.pod),
            container: owned(self.container),
            workload: owned(self.workload),
            outcome: Cow::Owned(self.outcome.into_owned()),
            stop_signal: owned(self.stop_signal),
            stop_signal_ignored: self.stop_signal_ignored,
            stop_signal_handler: owned(self.stop_signal_handler),
            term_to_exit_seconds: self.term_to_exit_seconds,
            term_to_kill_seconds: self.term_to_kill_seconds,
            grace_period_seconds: self.grace_period_seconds,
            prestop: self.prestop,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{
        clock::WallClock,
        correlate::{Exit, Kill, Outcome, StopSignal, Termination},
        events::{Disposition, Proc},
        metadata::Identity,
        record::{PreStop, Record},
    };

    /// A record as the daemon writes it: killed after an ignored SIGTERM, with names.
    pub(crate) fn record() -> Record {
        let t = Termination {
            pid: 4242,
            comm: "sleep".into(),
            cgroup_id: 7,
            stop_signal: Some(StopSignal {
                sig: 15,
                at_ns: 1_000_000_000,
                sender: Proc { pid: 1, comm: "runc".into() },
                ignored: true,
                disposition: None,
                handler: Some(Disposition::Default),
            }),
            sigkill: Some(Kill {
                at_ns: 31_000_000_000,
                sender: Proc { pid: 2, comm: "runc".into() },
            }),
            oom: false,
            exit: Exit { at_ns: 31_001_000_000, code: None, signal: Some(9) },
            outcome: Outcome::Killed,
            prestop_candidates: Vec::new(),
        };
        let id = Identity {
            namespace: Some("shop".into()),
            pod: Some("web-7d4b9c6f8-x2k9p".into()),
            container: Some("app".into()),
            workload: Some("web".into()),
            grace_period_seconds: Some(30),
            cgroup: "/kubepods/besteffort/pod1/abc".into(),
            ..Default::default()
        };
        let mut r = Record::new(&t, Some(&id), "node-1", &WallClock::measure());
        r.prestop = Some(PreStop {
            started_at: None,
            ended_at: None,
            duration_seconds: Some(28.0),
            overrun: true,
            kind: "exec",
            pid: Some(4300),
            comm: Some("sh".into()),
        });
        r
    }

    #[test]
    fn reads_what_the_daemon_writes() {
        let r = record();
        let line = serde_json::to_vec(&r).unwrap();
        let e = Entry::parse(&line).unwrap();
        assert_eq!(e.at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true), r.ts);
        assert_eq!(e.namespace.as_deref(), Some("shop"));
        assert_eq!(e.pod.as_deref(), r.pod.as_deref());
        assert_eq!(e.container.as_deref(), Some("app"));
        assert_eq!(e.workload.as_deref(), Some("web"));
        assert_eq!(e.outcome, "killed");
        assert_eq!(e.stop_signal.as_deref(), Some("SIGTERM"));
        assert_eq!(e.stop_signal_ignored, Some(true));
        assert_eq!(e.stop_signal_handler.as_deref(), Some("default"));
        assert_eq!(e.term_to_kill_seconds, Some(30.0));
        assert_eq!(e.term_to_exit_seconds, Some(30.001));
        assert_eq!(e.grace_period_seconds, Some(30));
        assert_eq!(e.prestop, Some(PreStopEntry { duration_seconds: Some(28.0), overrun: true }));
        // Borrowed, not copied, when the line has no escapes.
        assert!(matches!(e.namespace, Some(Cow::Borrowed(_))));
        let owned = e.clone().into_owned();
        assert_eq!(owned, e);
    }

    #[test]
    fn escapes_and_unknown_fields_are_fine() {
        let e = Entry::parse(
            br#"{"ts":"2026-08-01T02:00:00Z","pod":"a\"b","outcome":"graceful","future":[1,{}]}"#,
        )
        .unwrap();
        assert_eq!(e.pod.as_deref(), Some("a\"b"));
        assert_eq!(e.namespace, None);
    }

    #[test]
    fn corrupt_lines_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"ts\":\"2026-08-01T02:00:00Z\",\"outcome\":\"killed\"",
            b"{\"outcome\":\"killed\"}",
            b"{\"ts\":\"yesterday\",\"outcome\":\"killed\"}",
            b"{\"ts\":\"2026-08-01T02:00:00Z\"}",
            b"{\"ts\":\"2026-08-01T02:00:00Z\",\"outcome\":7}",
            b"[]",
            b"\xff\xfe",
            b"\0\0\0\0",
        ] {
            assert!(Entry::parse(bad).is_err(), "{:?} accepted", String::from_utf8_lossy(bad));
        }
    }
}
