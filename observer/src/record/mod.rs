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
    status::{self, KubeStatus},
    stuck::Inspection,
    verdict::{self, Contract, Verdict},
};

/// A stop signal sent again after the first (`stop_signal_repeats`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepeatedStop {
    pub at: String,
    pub sender: Sender,
}

/// The journal's `stuck`: on the record of outcome `stuck` written while it is stuck, and on the
/// record written when it finally went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stuck {
    /// The SIGKILL (or the held exit): when it should have been gone.
    pub since: String,
    pub reported_at: String,
    /// since -> reported (outcome stuck), since -> released or exit (the later record).
    pub stuck_seconds: f64,
    /// When the container's cgroup went (a held main process released), on the later record.
    pub released_at: Option<String>,
    #[serde(flatten)]
    pub inspection: Inspection,
}

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
    /// The stop signal sent again (a re-issued stop), in time order; null: sent once.
    pub stop_signal_repeats: Option<Vec<RepeatedStop>>,
    pub sigkill_at: Option<String>,
    pub sigkill_sender: Option<Sender>,
    /// The exit (for `exit_not_observed`, when the record closed without it); null on a
    /// `stuck` record whose main process has not exited.
    pub exit_at: Option<String>,
    pub exit_code: Option<u32>,
    pub exit_signal: Option<String>,
    pub term_to_exit_seconds: Option<f64>,
    pub term_to_kill_seconds: Option<f64>,
    pub outcome: Outcome,
    pub grace_period_seconds: Option<u64>,
    pub prestop: Option<PreStop>,
    /// Whether kubelet's stop sequence was kept ([`crate::verdict`]), and why.
    pub verdict: Verdict,
    pub contract: Contract,
    /// What kubelet will report for it (`kubectl describe`'s Last State), from the exit.
    pub kubernetes: KubeStatus,
    /// Reported stuck after its SIGKILL ([`crate::stuck`]); null: it was not.
    pub stuck: Option<Stuck>,
    /// Its connections around the stop ([`crate::traffic`]): what still arrived after the
    /// stop signal, what the kill cut; null: not counted (no network namespace learnt).
    pub traffic: Option<crate::traffic::Traffic>,
    /// What the record may be missing (null: nothing known to be missing): `events_lost`
    /// (events were lost while it was open), `kernel_summary` (its signals come from the
    /// kernel's summary, across a daemon restart or a loss).
    pub incomplete: Option<Vec<Gap>>,
    /// `<boot id>:<pid>:<start ticks>`: the main process's identity on this node, which no
    /// other record shares (a `stuck` record adds `:stuck`). The journal writes a record once
    /// ([`record_id`]).
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
    /// `evidence`: what the node's components told ([`crate::node::Starts`]): kubelet's and
    /// the runtime's starts, kubelet's graces.
    pub fn new(
        t: &Termination,
        identity: Option<&Identity>,
        node: &str,
        clock: &WallClock,
        evidence: &crate::node::Evidence,
    ) -> Self {
        let id = identity.cloned().unwrap_or_default();
        let seen = t.stop_seen();
        let prestop = prestop::for_record(&seen, &id, clock);
        let stop = t.stop_signal.as_ref();
        let exit_seen = t.exit_seen();
        let judgement = verdict::judge(&verdict::Inputs {
            outcome: t.outcome,
            grace_period_seconds: id.grace_period_seconds,
            hook: verdict::hook_of(&seen, &id),
            stop_ns: stop.map(|s| s.at_ns),
            repeated_stops_ns: t.repeated_stops.iter().map(|r| r.at_ns).collect(),
            kill_ns: t.sigkill.as_ref().map(|k| k.at_ns),
            exit_ns: exit_seen.then_some(t.exit.at_ns),
            restarts: &evidence.restarts,
            graces: &evidence.graces,
        });
        let stuck = t.stuck.as_ref().map(|s| {
            let end = match t.outcome {
                Outcome::Stuck => s.reported_ns,
                _ => s.released_ns.unwrap_or(t.exit.at_ns).max(t.exit.at_ns),
            };
            let (since, reported_at) = s
                .written
                .clone()
                .unwrap_or_else(|| (clock.rfc3339(s.since_ns), clock.rfc3339(s.reported_ns)));
            Stuck {
                since,
                reported_at,
                stuck_seconds: secs(end.saturating_sub(s.since_ns)),
                released_at: s.released_ns.map(|r| clock.rfc3339(r)),
                inspection: s.inspection.clone(),
            }
        });
        let mut id_of_record = record_id(t.pid, t.start_ticks);
        let ts = match (t.outcome, &t.stuck) {
            (Outcome::Stuck, Some(s)) => {
                id_of_record.push_str(":stuck");
                s.reported_ns
            }
            _ => t.exit.at_ns,
        };
        Self {
            ts: clock.rfc3339(ts),
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
            stop_signal_repeats: (!t.repeated_stops.is_empty()).then(|| {
                t.repeated_stops
                    .iter()
                    .map(|r| RepeatedStop { at: clock.rfc3339(r.at_ns), sender: r.sender.clone() })
                    .collect()
            }),
            sigkill_at: t.sigkill.as_ref().map(|k| clock.rfc3339(k.at_ns)),
            sigkill_sender: t.sigkill.as_ref().map(|k| k.sender.clone()),
            // A record closed without the exit keeps the time it closed (as `ts`).
            exit_at: (exit_seen || t.outcome != Outcome::Stuck)
                .then(|| clock.rfc3339(t.exit.at_ns)),
            exit_code: t.exit.code.filter(|_| exit_seen),
            exit_signal: t.exit.signal.filter(|_| exit_seen).map(signals::name),
            term_to_exit_seconds: t.term_to_exit_ns().map(secs),
            term_to_kill_seconds: t.term_to_kill_ns().map(secs),
            outcome: t.outcome,
            grace_period_seconds: id.grace_period_seconds,
            prestop,
            verdict: judgement.verdict,
            contract: judgement.contract,
            kubernetes: status::for_exit(t.outcome, &t.exit),
            stuck,
            traffic: t.traffic.as_ref().map(|seen| {
                crate::traffic::account(
                    seen,
                    crate::traffic::Times {
                        stop_ns: stop.map(|s| s.at_ns),
                        kill_ns: t.sigkill.as_ref().map(|k| k.at_ns),
                        exit_ns: exit_seen.then_some(t.exit.at_ns),
                        killed: exit_seen && t.sigkill.is_some() && t.exit.signal == Some(9),
                    },
                )
            }),
            incomplete: (!t.incomplete.is_empty()).then(|| t.incomplete.clone()),
            record_id: id_of_record,
        }
    }
}
