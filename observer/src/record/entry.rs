//! The read side of the journal schema ([`Record`]): the fields the report and
//! `GET /terminations` filter and summarise on, borrowed from the line where possible, or from
//! a typed record ([`Record::entry`]) without a round trip through JSON.
//!
//! Only `ts` and `outcome` are required, and values are kept as the journal spells them, so
//! older readers keep working on newer journals: unknown fields are ignored, missing ones are
//! None, and an outcome or disposition a newer daemon writes is read as its name.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

use super::Record;
use crate::events::Disposition;

/// Why a journal line, or a record, does not read as an entry.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("not a journal record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("ts {ts:?}: {source}")]
    Time {
        ts: String,
        #[source]
        source: chrono::ParseError,
    },
}

/// A journal record as the report reads it.
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
    /// Older journals have none.
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub verdict: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub contract: Option<ContractEntry<'a>>,
    #[serde(borrow, default)]
    pub kubernetes: Option<KubeEntry<'a>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub record_id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub stuck: Option<StuckEntry>,
    /// Older journals have none; null: not counted.
    #[serde(default)]
    pub traffic: Option<TrafficEntry>,
    #[serde(default)]
    pub exit_code: Option<u32>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub exit_signal: Option<Cow<'a, str>>,
    /// `pod` for a pod-level record ([`crate::pod::PodRecord`]); absent on container records.
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub kind: Option<Cow<'a, str>>,
    /// A pod record's fields.
    #[serde(default)]
    pub termination_seconds: Option<f64>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub held_up_by: Option<Cow<'a, str>>,
    #[serde(default)]
    pub kills: Option<u32>,
    #[serde(default)]
    pub order_kept: Option<bool>,
    #[serde(default)]
    pub order_broken: Option<Vec<String>>,
}

impl Entry<'_> {
    /// A pod-level record, not a container's.
    pub fn is_pod(&self) -> bool {
        self.kind.as_deref() == Some("pod")
    }
}

/// The verdict's reasons as the report reads them ([`crate::verdict::Contract`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ContractEntry<'a> {
    #[serde(default)]
    pub off_by_seconds: Option<f64>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub cause: Option<Cow<'a, str>>,
    #[serde(default)]
    pub grace_used_seconds: Option<u64>,
    #[serde(default)]
    pub missing: Option<Vec<String>>,
    /// kubelet or the runtime started during the stop ([`crate::verdict::Restarted`]).
    #[serde(borrow, default)]
    pub restarted: Option<Vec<RestartedEntry<'a>>>,
    /// Which of kubelet's rules gave a shortened grace ([`crate::verdict::ShortenedBy`]).
    #[serde(borrow, default)]
    pub shortened_by: Option<ShortenedByEntry<'a>>,
}

/// A shortened grace's rule as the report reads it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ShortenedByEntry<'a> {
    #[serde(borrow)]
    pub rule: Cow<'a, str>,
    #[serde(borrow)]
    pub evidence: Cow<'a, str>,
}

/// A restart during a stop as the report reads it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RestartedEntry<'a> {
    #[serde(borrow)]
    pub comm: Cow<'a, str>,
    pub after_stop_signal_seconds: f64,
}

/// What kubelet will report ([`crate::status::KubeStatus`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct KubeEntry<'a> {
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub reason: Option<Cow<'a, str>>,
    #[serde(default)]
    pub exit_code: Option<u32>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub note: Option<Cow<'a, str>>,
}

/// A stuck report ([`super::Stuck`]) as the report reads it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StuckEntry {
    #[serde(default)]
    pub stuck_seconds: Option<f64>,
    #[serde(default)]
    pub look_at: Option<String>,
    #[serde(default)]
    pub released_at: Option<String>,
}

/// The connections around the stop as the report reads them ([`crate::traffic::Traffic`]):
/// its counts only, so a scope a newer daemon writes still reads.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct TrafficEntry {
    #[serde(default)]
    pub accepted_after_stop_signal: Option<u64>,
    #[serde(default)]
    pub last_accepted_after_stop_signal_seconds: Option<f64>,
    #[serde(default)]
    pub still_arriving_at_exit: Option<bool>,
    #[serde(default)]
    pub cut_by_sigkill: Option<u64>,
    #[serde(default)]
    pub from_node_after_stop_signal: Option<u64>,
    #[serde(default)]
    pub listeners_closed_after_stop_signal_seconds: Option<f64>,
    #[serde(default)]
    pub stopped_accepting_before_exit: Option<bool>,
}

/// The preStop hook as the report reads it ([`super::PreStop`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PreStopEntry {
    #[serde(default)]
    pub duration_seconds: Option<f64>,
    #[serde(default)]
    pub overrun: bool,
}

fn parse_ts(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc))
}

fn rfc3339<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let s = Cow::<'de, str>::deserialize(d)?;
    parse_ts(&s).map_err(|e| serde::de::Error::custom(format!("ts {s:?}: {e}")))
}

/// `Option<Cow<str>>` that borrows from the line when it can (serde's derive only borrows a
/// bare `Cow<str>`): no allocation per name for the common, escape-free journal line.
fn opt_cow<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed<'a>>::deserialize(d)?.map(|b| b.0))
}

/// As the journal spells it (`rename_all = "lowercase"` on [`Disposition`]).
fn disposition(d: Disposition) -> &'static str {
    match d {
        Disposition::Default => "default",
        Disposition::Ignored => "ignored",
        Disposition::Handled => "handled",
        Disposition::Blocked => "blocked",
    }
}

impl<'a> Entry<'a> {
    /// One journal line (without its newline).
    pub fn parse(line: &'a [u8]) -> Result<Self, EntryError> {
        Ok(serde_json::from_slice(line)?)
    }
}

impl Record {
    /// This record as [`Entry::parse`] reads its journal line, borrowed from the record. An
    /// error only for a `ts` that is not RFC 3339, which [`Record::new`] never writes.
    pub fn entry(&self) -> Result<Entry<'_>, EntryError> {
        fn name(s: &Option<String>) -> Option<Cow<'_, str>> {
            s.as_deref().map(Cow::Borrowed)
        }
        Ok(Entry {
            at: parse_ts(&self.ts)
                .map_err(|source| EntryError::Time { ts: self.ts.clone(), source })?,
            namespace: name(&self.namespace),
            pod: name(&self.pod),
            container: name(&self.container),
            workload: name(&self.workload),
            outcome: Cow::Borrowed(self.outcome.as_str()),
            stop_signal: name(&self.stop_signal),
            stop_signal_ignored: self.stop_signal_ignored,
            stop_signal_handler: self.stop_signal_handler.map(|d| Cow::Borrowed(disposition(d))),
            term_to_exit_seconds: self.term_to_exit_seconds,
            term_to_kill_seconds: self.term_to_kill_seconds,
            grace_period_seconds: self.grace_period_seconds,
            prestop: self
                .prestop
                .as_ref()
                .map(|p| PreStopEntry { duration_seconds: p.duration_seconds, overrun: p.overrun }),
            verdict: Some(Cow::Borrowed(self.verdict.as_str())),
            contract: Some(ContractEntry {
                off_by_seconds: self.contract.off_by_seconds,
                cause: self.contract.cause.map(|c| Cow::Borrowed(c.as_str())),
                grace_used_seconds: self.contract.grace_used_seconds,
                missing: self
                    .contract
                    .missing
                    .as_ref()
                    .map(|m| m.iter().map(|s| s.to_string()).collect()),
                restarted: self.contract.restarted.as_ref().map(|r| {
                    r.iter()
                        .map(|r| RestartedEntry {
                            comm: Cow::Borrowed(&r.comm),
                            after_stop_signal_seconds: r.after_stop_signal_seconds,
                        })
                        .collect()
                }),
                shortened_by: self.contract.shortened_by.as_ref().map(|b| ShortenedByEntry {
                    rule: Cow::Borrowed(b.rule),
                    evidence: Cow::Borrowed(&b.evidence),
                }),
            }),
            kubernetes: Some(KubeEntry {
                reason: self.kubernetes.reason.map(Cow::Borrowed),
                exit_code: self.kubernetes.exit_code,
                note: Some(Cow::Borrowed(self.kubernetes.note.as_str())),
            }),
            record_id: Some(Cow::Borrowed(self.record_id.as_str())),
            stuck: self.stuck.as_ref().map(|s| StuckEntry {
                stuck_seconds: Some(s.stuck_seconds),
                look_at: Some(s.inspection.look_at.clone()),
                released_at: s.released_at.clone(),
            }),
            traffic: self.traffic.as_ref().map(|t| TrafficEntry {
                accepted_after_stop_signal: t.accepted_after_stop_signal,
                last_accepted_after_stop_signal_seconds: t.last_accepted_after_stop_signal_seconds,
                still_arriving_at_exit: t.still_arriving_at_exit,
                cut_by_sigkill: t.cut_by_sigkill,
                from_node_after_stop_signal: t.from_node_after_stop_signal,
                listeners_closed_after_stop_signal_seconds: t
                    .listeners_closed_after_stop_signal_seconds,
                stopped_accepting_before_exit: t.stopped_accepting_before_exit,
            }),
            exit_code: self.exit_code,
            exit_signal: self.exit_signal.as_deref().map(Cow::Borrowed),
            kind: None,
            termination_seconds: None,
            held_up_by: None,
            kills: None,
            order_kept: None,
            order_broken: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_daemon_writes() {
        let r = Record::example().prestop(28.0, true).build();
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
    }

    #[test]
    fn a_typed_record_reads_as_its_journal_line_does() {
        let examples = [
            Record::example().prestop(28.0, true),
            Record::example().handler(Disposition::Ignored),
            Record::example().handler(Disposition::Handled),
            Record::example().graceful(0.25),
            Record::example().without_stop_signal(),
            Record::example().oom().unnamed(),
            Record::example().traffic(3, 29.5, 4),
            Record::example().graceful(6.0).traffic(0, 0.0, 0),
        ];
        for r in examples.map(|b| b.build()) {
            let line = serde_json::to_vec(&r).unwrap();
            let read = Entry::parse(&line).unwrap();
            assert_eq!(r.entry().unwrap(), read, "{}", String::from_utf8_lossy(&line));
        }
        let mut bad = Record::example().build();
        bad.ts = "yesterday".into();
        assert!(bad.entry().unwrap_err().to_string().contains("yesterday"));
    }

    #[test]
    fn traffic_reads_back_and_older_journals_have_none() {
        let r = Record::example().traffic(3, 29.5, 4).build();
        let line = serde_json::to_vec(&r).unwrap();
        let t = Entry::parse(&line).unwrap().traffic.unwrap();
        assert_eq!(t.accepted_after_stop_signal, Some(3));
        assert_eq!(t.last_accepted_after_stop_signal_seconds, Some(29.5));
        assert_eq!(t.still_arriving_at_exit, Some(true));
        assert_eq!(t.cut_by_sigkill, Some(4));
        let older = br#"{"ts":"2026-08-01T02:00:00Z","outcome":"killed"}"#;
        assert_eq!(Entry::parse(older).unwrap().traffic, None);
        let uncounted = br#"{"ts":"2026-08-01T02:00:00Z","outcome":"killed","traffic":null}"#;
        assert_eq!(Entry::parse(uncounted).unwrap().traffic, None);
        // A scope a newer daemon writes, and unknown counts: still read.
        let newer = br#"{"ts":"2026-08-01T02:00:00Z","outcome":"killed","traffic":{"scope":"vm","cut_by_sigkill":null,"accepted_after_stop_signal":2}}"#;
        let t = Entry::parse(newer).unwrap().traffic.unwrap();
        assert_eq!((t.accepted_after_stop_signal, t.cut_by_sigkill), (Some(2), None));
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
