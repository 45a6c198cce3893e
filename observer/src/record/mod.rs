//! The journal record: one JSON object per container termination (the interface contract).
//! Timestamps are RFC 3339 UTC with nanoseconds, converted from kernel time; intervals are
//! differences of kernel timestamps. Unknown values are null, never invented.
//!
//! The one home of the journal schema: [`Record`] is what the daemon writes (the journal,
//! `GET /terminations`); [`entry`] is how a journal line reads back, and how a typed record is
//! read the same way without a round trip through JSON; [`filter`] is which records a question
//! is about. `observer report` and the sinks both use these. A new field is a field of
//! [`Record`] filled by [`Record::new`]; only a field the report or a filter reads is also one
//! of [`entry::Entry`].

pub mod entry;
#[cfg(test)]
pub(crate) mod example;
pub mod filter;

use serde::Serialize;

pub use crate::prestop::PreStop;
use crate::{
    clock::WallClock,
    correlate::{Gap, Outcome, Termination},
    events::{Disposition, Sender},
    metadata::{cgroup_path::Runtime, Identity},
    prestop, signals,
};

/// One container termination as the journal holds it: one JSON object per line, field for
/// field in this order. A field is null when the kernel or the metadata did not say.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub ts: String,
    pub node: String,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub pod_uid: Option<String>,
    pub container: Option<String>,
    pub container_id: Option<String>,
    pub workload: Option<String>,
    pub image: Option<String>,
    pub runtime: Option<Runtime>,
    pub cgroup: Option<String>,
    pub pid: u32,
    pub comm: String,
    pub stop_signal: Option<String>,
    pub stop_signal_at: Option<String>,
    pub stop_signal_sender: Option<Sender>,
    pub stop_signal_ignored: Option<bool>,
    pub stop_signal_disposition: Option<Disposition>,
    /// The target's disposition when the stop signal was sent (read in the kernel): tells
    /// "no handler" (default) from SIG_IGN when the kernel dropped the signal.
    pub stop_signal_handler: Option<Disposition>,
    pub sigkill_at: Option<String>,
    pub sigkill_sender: Option<Sender>,
    pub exit_at: String,
    pub exit_code: Option<u32>,
    pub exit_signal: Option<String>,
    pub term_to_exit_seconds: Option<f64>,
    pub term_to_kill_seconds: Option<f64>,
    pub outcome: Outcome,
    pub grace_period_seconds: Option<u64>,
    pub prestop: Option<PreStop>,
    /// What the record may be missing (null: nothing known to be missing): `events_lost`
    /// (events were lost while it was open), `kernel_summary` (its signals come from the
    /// kernel's summary, across a daemon restart or a loss).
    pub incomplete: Option<Vec<Gap>>,
    /// `<boot id>:<pid>:<start ticks>`: the main process's identity on this node, which no
    /// other record shares. The journal writes a record once ([`record_id`]).
    pub record_id: String,
}

/// The node's boot id (`/proc/sys/kernel/random/boot_id`, new at every boot), read once.
pub fn boot_id() -> &'static str {
    static BOOT_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOOT_ID.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|e| {
                log::warn!("cannot read the boot id ({e}): record ids use \"unknown\"");
                "unknown".into()
            })
    })
}

/// A record's id: the main process's tgid and start time (clock ticks since boot, as
/// /proc/<pid>/stat's `starttime`) are unique within a boot, the boot id across boots. The same
/// termination seen by two daemons (one killed after journaling, the next recovering it from the
/// kernel) gets the same id.
pub fn record_id(pid: u32, start_ticks: u64) -> String {
    format!("{}:{pid}:{start_ticks}", boot_id())
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

impl Record {
    /// The record of a closed termination: `identity` is what the metadata knew of its cgroup
    /// (None: nothing), kernel times are placed on the wall clock with `clock`.
    pub fn new(
        t: &Termination,
        identity: Option<&Identity>,
        node: &str,
        clock: &WallClock,
    ) -> Self {
        let id = identity.cloned().unwrap_or_default();
        let prestop = prestop::for_record(&t.stop_seen(), &id, clock);
        let stop = t.stop_signal.as_ref();
        Self {
            ts: clock.rfc3339(t.exit.at_ns),
            node: node.to_string(),
            namespace: id.namespace,
            pod: id.pod,
            pod_uid: id.pod_uid,
            container: id.container,
            container_id: id.container_id,
            workload: id.workload,
            image: id.image,
            runtime: id.runtime,
            cgroup: identity.map(|i| i.cgroup.clone()),
            pid: t.pid,
            comm: t.comm.clone(),
            stop_signal: stop.map(|s| signals::name(s.sig)),
            stop_signal_at: stop.map(|s| clock.rfc3339(s.at_ns)),
            stop_signal_sender: stop.map(|s| s.sender.clone()),
            stop_signal_ignored: stop.map(|s| s.ignored),
            stop_signal_disposition: stop.and_then(|s| s.disposition),
            stop_signal_handler: stop.and_then(|s| s.handler),
            sigkill_at: t.sigkill.as_ref().map(|k| clock.rfc3339(k.at_ns)),
            sigkill_sender: t.sigkill.as_ref().map(|k| k.sender.clone()),
            exit_at: clock.rfc3339(t.exit.at_ns),
            exit_code: t.exit.code,
            exit_signal: t.exit.signal.map(signals::name),
            term_to_exit_seconds: t.term_to_exit_ns().map(secs),
            term_to_kill_seconds: t.term_to_kill_ns().map(secs),
            outcome: t.outcome,
            grace_period_seconds: id.grace_period_seconds,
            prestop,
            incomplete: (!t.incomplete.is_empty()).then(|| t.incomplete.clone()),
            record_id: record_id(t.pid, t.start_ticks),
        }
    }
}
