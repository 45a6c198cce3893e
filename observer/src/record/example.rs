//! Records for tests, made as the daemon makes them: [`Record::new`] on a termination and an
//! identity, so every field of a test record comes from the one producer, and a new field
//! reaches every test with nothing to change here. Each test states only what it is about:
//! `Record::example().graceful(0.25).pod("api-0").build()`.

use chrono::{DateTime, SecondsFormat, Utc};

use super::{PreStop, Record};
use crate::{
    clock::WallClock,
    correlate::{Exit, Kill, Outcome, StopSignal, Termination},
    events::{Disposition, Origin, Sender},
    metadata::Identity,
    traffic::{CountedFrom, Counts, Scope, Seen},
};

const SEC: u64 = 1_000_000_000;
/// Kernel time of the stop signal; the other kernel times are counted from it.
const STOP_NS: u64 = SEC;

/// An RFC 3339 time `shift` later.
fn shifted(t: &str, shift: chrono::Duration) -> String {
    let t = DateTime::parse_from_rfc3339(t).expect("Record::new writes RFC 3339");
    (t.to_utc() + shift).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn ns(seconds: f64) -> u64 {
    (seconds * 1e9).round() as u64
}

/// A record under construction; later calls win where two set the same thing.
#[derive(Debug, Clone)]
pub(crate) struct RecordBuilder {
    termination: Termination,
    identity: Option<Identity>,
    /// The exit on the wall clock: the record's `ts`.
    at: DateTime<Utc>,
    prestop: Option<PreStop>,
}

impl Record {
    /// `sleep` as PID 1 of shop/web-7d4b9c6f8-x2k9p (container app, workload web, grace
    /// 30 s): SIGTERM dropped by the kernel (no handler), SIGKILL 30 s later, the exit 1 ms
    /// after it, at 2026-08-01T02:00:00Z.
    pub(crate) fn example() -> RecordBuilder {
        let runc = |pid| Sender { pid, comm: "runc".into(), from: Origin::Host };
        RecordBuilder {
            termination: Termination {
                pid: 4242,
                start_ticks: 90_000,
                comm: "sleep".into(),
                cgroup_id: 7,
                stop_signal: Some(StopSignal {
                    sig: 15,
                    at_ns: STOP_NS,
                    sender: runc(1),
                    ignored: true,
                    handler: Some(Disposition::Default),
                    disposition: None,
                }),
                repeated_stops: Vec::new(),
                // Set by `killed` below.
                sigkill: None,
                oom: false,
                exit: Exit { at_ns: STOP_NS, code: None, signal: None },
                outcome: Outcome::Killed,
                stuck: None,
                prestop_candidates: Vec::new(),
                incomplete: Vec::new(),
                traffic: None,
            },
            identity: Some(Identity {
                namespace: Some("shop".into()),
                pod: Some("web-7d4b9c6f8-x2k9p".into()),
                container: Some("app".into()),
                workload: Some("web".into()),
                grace_period_seconds: Some(30),
                cgroup: "/kubepods/besteffort/pod1/abc".into(),
                ..Default::default()
            }),
            at: DateTime::from_timestamp(1_785_549_600, 0).expect("2026-08-01T02:00:00Z"),
            prestop: None,
        }
        .killed(30.0, 30.001)
    }
}

impl Record {
    /// This record with a `stuck` field: stuck `seconds` from its `ts`, held by the cgroup
    /// freezer in state `freezer` when given, with `look_at` as the sentence.
    pub(crate) fn with_stuck(mut self, seconds: f64, freezer: Option<&str>, look_at: &str) -> Self {
        self.stuck = Some(super::Stuck {
            since: self.ts.clone(),
            reported_at: self.ts.clone(),
            stuck_seconds: seconds,
            released_at: None,
            inspection: crate::stuck::Inspection {
                main: None,
                held_by_children: false,
                tasks: vec![],
                tasks_total: 0,
                freezer: freezer.map(str::to_string),
                look_at: look_at.into(),
            },
        });
        self
    }
}

impl RecordBuilder {
    /// The exit (`ts`) at this RFC 3339 time; the record's other times keep their distance.
    pub(crate) fn at(mut self, rfc3339: &str) -> Self {
        self.at = DateTime::parse_from_rfc3339(rfc3339).expect("an RFC 3339 time").to_utc();
        self
    }

    fn identity(&mut self) -> &mut Identity {
        self.identity.get_or_insert_with(Identity::default)
    }

    pub(crate) fn namespace(mut self, namespace: &str) -> Self {
        self.identity().namespace = Some(namespace.into());
        self
    }

    pub(crate) fn workload(mut self, workload: &str) -> Self {
        self.identity().workload = Some(workload.into());
        self
    }

    pub(crate) fn pod(mut self, pod: &str) -> Self {
        self.identity().pod = Some(pod.into());
        self
    }

    pub(crate) fn container(mut self, container: &str) -> Self {
        self.identity().container = Some(container.into());
        self
    }

    /// The metadata knew nothing of the container: no names, no grace period.
    pub(crate) fn unnamed(mut self) -> Self {
        self.identity = None;
        self
    }

    /// Stopped with this signal number instead of SIGTERM.
    pub(crate) fn stop_signal(mut self, sig: u32) -> Self {
        if let Some(s) = &mut self.termination.stop_signal {
            s.sig = sig;
        }
        self
    }

    /// PID 1's disposition of the stop signal when it was sent: with no handler or SIG_IGN
    /// the kernel drops it; a handler receives it.
    pub(crate) fn handler(mut self, handler: Disposition) -> Self {
        if let Some(s) = &mut self.termination.stop_signal {
            s.handler = Some(handler);
            s.ignored = handler != Disposition::Handled;
            s.disposition = (!s.ignored).then_some(handler);
        }
        self
    }

    /// SIGKILL `kill_after` seconds after the stop signal, the exit `exit_after` seconds after
    /// it.
    pub(crate) fn killed(mut self, kill_after: f64, exit_after: f64) -> Self {
        let t = &mut self.termination;
        t.sigkill = Some(Kill {
            at_ns: STOP_NS + ns(kill_after),
            sender: Sender { pid: 2, comm: "runc".into(), from: Origin::Host },
        });
        t.exit = Exit { at_ns: STOP_NS + ns(exit_after), code: None, signal: Some(9) };
        t.outcome = Outcome::Killed;
        self
    }

    /// PID 1 handles the stop signal and exits 0 `exit_after` seconds after it.
    pub(crate) fn graceful(self, exit_after: f64) -> Self {
        let mut b = self.handler(Disposition::Handled);
        let t = &mut b.termination;
        t.sigkill = None;
        t.exit = Exit { at_ns: STOP_NS + ns(exit_after), code: Some(0), signal: None };
        t.outcome = Outcome::Graceful;
        b
    }

    /// SIGKILL with no stop signal before it.
    pub(crate) fn without_stop_signal(mut self) -> Self {
        self.termination.stop_signal = None;
        self.termination.outcome = Outcome::KilledWithoutStopSignal;
        self
    }

    /// Killed by the OOM killer, with no stop signal.
    pub(crate) fn oom(mut self) -> Self {
        let t = &mut self.termination;
        t.stop_signal = None;
        t.sigkill = None;
        t.oom = true;
        t.outcome = Outcome::OomKilled;
        self
    }

    /// A preStop exec hook that ran `duration` seconds; set on the record as written, not
    /// observed, so that any combination with the rest can be tested.
    pub(crate) fn prestop(mut self, duration: f64, overrun: bool) -> Self {
        self.prestop = Some(PreStop {
            kind: "exec",
            started_at: None,
            ended_at: None,
            duration_seconds: Some(duration),
            overrun,
            pid: Some(4300),
            comm: Some("sh".into()),
        });
        self
    }

    /// Its pod's network, as the kernel counted it from the container's start: `accepted`
    /// new connections after the stop signal, the last `last_after` seconds after it, and
    /// `open` connections established at the stop signal, the SIGKILL and the exit (cut when a
    /// SIGKILL ends it); one listening socket throughout. [`Record::new`] makes the record's
    /// `traffic` from it with the termination's own times, whichever are set later.
    pub(crate) fn traffic(mut self, accepted: u64, last_after: f64, open: i64) -> Self {
        let counts = |accepted_now: u64, last: Option<u64>| Counts {
            since_ns: 1,
            established: open,
            accepted: 100 + accepted_now,
            last_accept_ns: last,
            node_accepted: 0,
            inside_accepted: 0,
            listening: 1,
            listen_closed: 0,
            last_listen_close_ns: None,
        };
        let before = Some(STOP_NS / 2);
        let last = if accepted == 0 { before } else { Some(STOP_NS + ns(last_after)) };
        // Nothing open at the exit: it drained, its listener closed 0.5 s after the last.
        let mut exit = counts(accepted, last);
        if open == 0 && accepted > 0 {
            exit.listening = 0;
            exit.listen_closed = 1;
            exit.last_listen_close_ns = Some(STOP_NS + ns(last_after + 0.5));
        }
        self.termination.traffic = Some(Seen {
            scope: Scope::PodNetwork,
            ports: Vec::new(),
            counted_from: CountedFrom::ContainerStart,
            at_stop: Some(counts(0, before)),
            at_kill: Some(counts(accepted, last)),
            at_exit: Some(exit),
        });
        self
    }

    /// The record as [`Record::new`] writes it, its wall-clock times moved to `at`.
    pub(crate) fn build(self) -> Record {
        let clock = WallClock::measure();
        let mut r = Record::new(
            &self.termination,
            self.identity.as_ref(),
            "node-1",
            &clock,
            &crate::node::Evidence::none(),
        );
        if self.prestop.is_some() {
            r.prestop = self.prestop;
        }
        // Record::new put the kernel times on this boot's wall clock; the story is at `at`.
        let shift = self.at - clock.to_utc(self.termination.exit.at_ns);
        let moved = |t: &str| shifted(t, shift);
        r.ts = shifted(&r.ts, shift);
        r.exit_at = r.exit_at.as_deref().map(moved);
        r.stop_signal_at = r.stop_signal_at.as_deref().map(moved);
        r.sigkill_at = r.sigkill_at.as_deref().map(moved);
        r
    }
}
