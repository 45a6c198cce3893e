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

use crate::{
    clock::WallClock,
    correlate::{choose_exec_prestop, Outcome, Termination},
    engine,
    events::{Disposition, Proc},
    metadata::{annotations::PreStopHandler, cgroup_path::Runtime, Identity},
    signals,
};

/// The preStop hook as observed; `prestop` is null when none was seen or can be inferred.
///
/// - `kind: "exec"`: an exec session the runtime started into the container, running at the
///   stop signal or ended just before it. Times are its exec and exit (kernel clock);
///   `overrun` when it was still running at the stop signal and the stop window, when one
///   was observed, was the 2 s floor.
/// - `kind: "inferred"` (HTTP and sleep hooks leave no process): from the grace period G and
///   the observed stop window G' (stop signal -> SIGKILL). `duration_seconds` is what kubelet
///   charged, G - G': whole seconds, a lower bound; times and pid are null; `overrun` when
///   G' is the 2 s floor and G is longer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreStop {
    pub kind: &'static str,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_seconds: Option<f64>,
    pub overrun: bool,
    /// The exec session's host pid and program (exec only).
    pub pid: Option<u32>,
    pub comm: Option<String>,
}

impl PreStop {
    /// From the termination's exec sessions, else inferred from G and the stop window.
    /// `hook_command` is the preStopHandler's exec command when metadata knows it.
    pub fn observe(
        t: &Termination,
        grace_period_seconds: Option<u64>,
        hook_command: Option<&[String]>,
        clock: &WallClock,
    ) -> Option<Self> {
        let stop = t.stop_signal.as_ref()?;
        let window = t.term_to_kill_ns();
        if let Some(s) = choose_exec_prestop(&t.prestop_candidates, hook_command) {
            return Some(Self {
                kind: "exec",
                started_at: Some(clock.rfc3339(s.started_ns)),
                ended_at: s.ended_ns.map(|e| clock.rfc3339(e)),
                duration_seconds: s.ended_ns.map(|e| secs(e.saturating_sub(s.started_ns))),
                overrun: engine::exec_prestop_overrun(s.running_at(stop.at_ns), window),
                pid: Some(s.session.pid),
                comm: Some(s.session.comm.clone()),
            });
        }
        let inferred = engine::infer_prestop(grace_period_seconds?, window?)?;
        Some(Self {
            kind: "inferred",
            started_at: None,
            ended_at: None,
            duration_seconds: Some(inferred.charged_seconds as f64),
            overrun: inferred.overrun,
            pid: None,
            comm: None,
        })
    }
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
    pub stop_signal_sender: Option<Proc>,
    pub stop_signal_ignored: Option<bool>,
    pub stop_signal_disposition: Option<Disposition>,
    /// The target's disposition when the stop signal was sent (read in the kernel): tells
    /// "no handler" (default) from SIG_IGN when the kernel dropped the signal.
    pub stop_signal_handler: Option<Disposition>,
    pub sigkill_at: Option<String>,
    pub sigkill_sender: Option<Proc>,
    pub exit_at: String,
    pub exit_code: Option<u32>,
    pub exit_signal: Option<String>,
    pub term_to_exit_seconds: Option<f64>,
    pub term_to_kill_seconds: Option<f64>,
    pub outcome: Outcome,
    pub grace_period_seconds: Option<u64>,
    pub prestop: Option<PreStop>,
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
        let prestop = prestop(t, &id, clock);
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
        }
    }
}

/// preStop as the kernel saw it, read against what kubelet was told to run. kubelet writes the
/// grace-period annotation beside the preStop one on every container, so a known grace with no
/// handler means there was no hook: nothing is inferred, and exec sessions at that moment
/// (`kubectl exec`, probes) are not taken for one. A known HTTP or sleep hook leaves no process:
/// only the inference from the stop window applies.
fn prestop(t: &Termination, id: &Identity, clock: &WallClock) -> Option<PreStop> {
    match &id.prestop_handler {
        None if id.grace_period_seconds.is_some() => None,
        None => PreStop::observe(t, id.grace_period_seconds, None, clock),
        Some(PreStopHandler::Exec { command }) => {
            PreStop::observe(t, id.grace_period_seconds, Some(command), clock)
        }
        Some(_) if t.prestop_candidates.is_empty() => {
            PreStop::observe(t, id.grace_period_seconds, None, clock)
        }
        Some(_) => {
            let mut no_exec = t.clone();
            no_exec.prestop_candidates.clear();
            PreStop::observe(&no_exec, id.grace_period_seconds, None, clock)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::{Exit, Kill, SessionSeen, StopSignal};

    const SEC: u64 = 1_000_000_000;

    fn termination(kill_after_s: Option<u64>, sessions: Vec<SessionSeen>) -> Termination {
        let proc_ = |pid, comm: &str| Proc { pid, comm: comm.into() };
        let stop_at = 100 * SEC;
        Termination {
            pid: 10,
            comm: "app".into(),
            cgroup_id: 1,
            stop_signal: Some(StopSignal {
                sig: 15,
                at_ns: stop_at,
                sender: proc_(5, "runc"),
                ignored: true,
                handler: Some(Disposition::Default),
                disposition: None,
            }),
            sigkill: kill_after_s
                .map(|s| Kill { at_ns: stop_at + s * SEC, sender: proc_(5, "runc") }),
            oom: false,
            exit: Exit {
                at_ns: stop_at + kill_after_s.unwrap_or(1) * SEC + 1,
                code: None,
                signal: Some(9),
            },
            outcome: Outcome::Killed,
            prestop_candidates: sessions,
        }
    }

    fn session(started_s: u64, ended_s: Option<u64>) -> SessionSeen {
        SessionSeen {
            session: Proc { pid: 20, comm: "sh".into() },
            parent: Proc { pid: 5, comm: "runc".into() },
            started_ns: started_s * SEC,
            ended_ns: ended_s.map(|e| e * SEC),
            comms: vec!["sh".into()],
        }
    }

    #[test]
    fn an_exec_session_is_the_prestop_with_its_kernel_times() {
        let clock = WallClock::measure();
        let t = termination(Some(20), vec![session(90, Some(99))]);
        let p = PreStop::observe(&t, None, None, &clock).unwrap();
        assert_eq!((p.kind, p.overrun, p.pid), ("exec", false, Some(20)));
        assert_eq!(p.duration_seconds, Some(9.0));
        assert_eq!(p.started_at, Some(clock.rfc3339(90 * SEC)));
        // Running at the stop signal, 2 s floor: overrun.
        let t = termination(Some(2), vec![session(70, Some(102))]);
        assert!(PreStop::observe(&t, Some(30), None, &clock).unwrap().overrun);
    }

    #[test]
    fn without_a_session_the_hook_is_inferred_only_with_grace_and_a_window() {
        let clock = WallClock::measure();
        let t = termination(Some(2), vec![]);
        let p = PreStop::observe(&t, Some(30), None, &clock).unwrap();
        assert_eq!((p.kind, p.overrun, p.duration_seconds), ("inferred", true, Some(28.0)));
        assert_eq!((p.started_at, p.pid), (None, None));
        assert_eq!(PreStop::observe(&t, None, None, &clock), None, "no G: nothing invented");
        let graceful = termination(None, vec![]);
        assert_eq!(PreStop::observe(&graceful, Some(30), None, &clock), None, "no window");
        let full = termination(Some(30), vec![]);
        assert_eq!(PreStop::observe(&full, Some(30), None, &clock), None, "G' = G");
        let mut no_stop = termination(Some(2), vec![session(99, None)]);
        no_stop.stop_signal = None;
        assert_eq!(PreStop::observe(&no_stop, Some(30), None, &clock), None);
    }
}
