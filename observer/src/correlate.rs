//! Correlation: kernel events -> one termination record per container PID 1.
//!
//! Pure state (no aya, no I/O, no clocks of its own): the daemon feeds it decoded events and
//! calls [`Correlator::drain_closed`] with the current kernel time. Every field of a record is
//! merged by kernel timestamp, not by arrival order, so duplicated and out-of-order events give
//! the same record. Events that arrive before the record they belong to are parked explicitly
//! (exits before their signal, OOM marks before their SIGKILL) for a bounded time.
//!
//! A termination is: the first stop signal (time, sender, ignored?, disposition), the SIGKILL
//! (time, sender, OOM?), and the exit (time, code or fatal signal). The kernel side only reports
//! signals aimed at a pid namespace's init inside a watched container cgroup, so every record
//! here is about a container's PID 1; a signalled host process never reaches this module.
//!
//! preStop exec hooks: exec sessions the runtime started into a container cgroup are kept in
//! [`crate::prestop::ExecSessions`]; when a termination closes, that room names its candidates.

use std::collections::HashMap;

use crate::{
    events::{Disposition, Event, Proc, ProcessExit, SignalResult},
    prestop::{ExecSessions, SessionSeen, StopSeen},
    signals::SIGKILL,
};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000 * MS;

/// After an exit, how long a record stays open for late events from other CPUs (a delivery
/// reserved on one CPU can be read after an exit reserved on another).
pub const CLOSE_LINGER_NS: u64 = 100 * MS;
/// How long an exit with no record yet waits for the signal that explains it.
pub const ORPHAN_EXIT_TTL_NS: u64 = SEC;
/// How long an OOM mark waits for the SIGKILL record of its victim.
pub const OOM_MARK_TTL_NS: u64 = 5 * SEC;
/// A SIGKILLed process that has not exited after this long is given up on (it is stuck in
/// uninterruptible sleep, or its exit was lost); the record is dropped and counted.
pub const KILL_EXPIRY_NS: u64 = 10 * 60 * SEC;
/// A stop signal of another number, arriving this long after the first one, replaces it: the
/// earlier one was not a stop (a SIGHUP reload before a SIGTERM, say).
pub const STOP_SIGNAL_SUPERSEDE_NS: u64 = 5 * SEC;
/// Bound on open records; past it the oldest is evicted and counted.
pub const MAX_OPEN: usize = 65_536;
/// The first stop signal of a termination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopSignal {
    pub sig: u32,
    pub at_ns: u64,
    pub sender: Proc,
    /// The kernel dropped it at generation (result = ignored): never delivered.
    pub ignored: bool,
    /// The target's disposition when it was sent (read from its sighand in the kernel).
    pub handler: Option<Disposition>,
    /// The disposition the receiver acted on, when it was delivered.
    pub disposition: Option<Disposition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kill {
    pub at_ns: u64,
    pub sender: Proc,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub at_ns: u64,
    pub code: Option<u32>,
    pub signal: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Graceful,
    Killed,
    KilledWithoutStopSignal,
    OomKilled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Graceful => "graceful",
            Self::Killed => "killed",
            Self::KilledWithoutStopSignal => "killed_without_stop_signal",
            Self::OomKilled => "oom_killed",
        }
    }
}

/// A closed termination of one container PID 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    pub pid: u32,
    pub comm: String,
    /// cgroup v2 id of the container (as the first signal saw it).
    pub cgroup_id: u64,
    pub stop_signal: Option<StopSignal>,
    pub sigkill: Option<Kill>,
    pub oom: bool,
    pub exit: Exit,
    pub outcome: Outcome,
    /// Exec sessions into the container running at the stop signal or ended just before it,
    /// latest start first: the preStop exec hook's candidates.
    pub prestop_candidates: Vec<SessionSeen>,
}

impl Termination {
    /// What preStop reads of it: the stop signal, the observed window, the candidates.
    pub fn stop_seen(&self) -> StopSeen<'_> {
        StopSeen {
            stop_ns: self.stop_signal.as_ref().map(|s| s.at_ns),
            window_ns: self.term_to_kill_ns(),
            candidates: &self.prestop_candidates,
        }
    }

    /// Stop signal -> exit, in nanoseconds.
    pub fn term_to_exit_ns(&self) -> Option<u64> {
        self.stop_signal.as_ref().map(|s| self.exit.at_ns.saturating_sub(s.at_ns))
    }
    /// Stop signal -> SIGKILL, in nanoseconds.
    pub fn term_to_kill_ns(&self) -> Option<u64> {
        match (&self.stop_signal, &self.sigkill) {
            (Some(s), Some(k)) => Some(k.at_ns.saturating_sub(s.at_ns)),
            _ => None,
        }
    }
}

/// What the correlator threw away, for `observer_events_lost_total` and friends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records evicted because [`MAX_OPEN`] were open.
    pub evicted: u64,
    /// SIGKILLed processes that never exited within [`KILL_EXPIRY_NS`].
    pub kill_expired: u64,
    /// Exits whose signal never came within [`ORPHAN_EXIT_TTL_NS`].
    pub orphan_exits: u64,
    /// Events for a record that had already closed.
    pub late: u64,
    /// Exec sessions evicted because [`crate::prestop::MAX_SESSIONS`] were kept.
    pub sessions_evicted: u64,
}

#[derive(Debug, Clone)]
struct Open {
    comm: String,
    cgroup_id: u64,
    opened_ns: u64,
    stop: Option<StopSignal>,
    kill: Option<Kill>,
    exit: Option<Exit>,
    oom: bool,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Correlator {
    open: HashMap<u32, Open>,
    orphan_exits: HashMap<u32, ProcessExit>,
    oom_marks: HashMap<u32, u64>,
    /// pid -> exit time of records closed recently, to tell late events from new ones.
    recently_closed: HashMap<u32, u64>,
    /// Exec sessions into containers.
    sessions: ExecSessions,
    pub stats: Stats,
}

impl Correlator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Open records (for the `observer_open_terminations` gauge).
    pub fn open_len(&self) -> usize {
        self.open.len()
    }

    pub fn ingest(&mut self, event: &Event) {
        match event {
            Event::SignalGenerate(g) => {
                if self.is_late(g.target.pid, g.ktime_ns) {
                    return;
                }
                self.make_room();
                let rec = self.open.entry(g.target.pid).or_insert_with(|| Open {
                    comm: g.target.comm.clone(),
                    cgroup_id: g.target_cgroup_id,
                    opened_ns: g.ktime_ns,
                    stop: None,
                    kill: None,
                    exit: None,
                    oom: false,
                });
                rec.opened_ns = rec.opened_ns.min(g.ktime_ns);
                if g.sig == SIGKILL {
                    if rec.kill.as_ref().is_none_or(|k| g.ktime_ns < k.at_ns) {
                        rec.kill = Some(Kill { at_ns: g.ktime_ns, sender: g.sender.clone() });
                    }
                } else {
                    let new = StopSignal {
                        sig: g.sig,
                        at_ns: g.ktime_ns,
                        sender: g.sender.clone(),
                        ignored: g.result == SignalResult::Ignored,
                        handler: g.target_handler,
                        disposition: None,
                    };
                    rec.stop = Some(match rec.stop.take() {
                        None => new,
                        Some(old) => choose_stop_signal(old, new),
                    });
                }
                let pid = g.target.pid;
                if let Some(x) = self.orphan_exits.remove(&pid) {
                    self.attach_exit(pid, &x);
                }
                if self.oom_marks.remove(&pid).is_some() {
                    if let Some(rec) = self.open.get_mut(&pid) {
                        rec.oom = true;
                    }
                }
            }
            Event::SignalDeliver(d) => {
                let Some(rec) = self.open.get_mut(&d.tgid) else { return };
                if let Some(stop) = rec.stop.as_mut() {
                    if stop.sig == d.sig && d.ktime_ns >= stop.at_ns && stop.disposition.is_none() {
                        stop.disposition = Some(d.disposition);
                    }
                }
            }
            Event::ExecSession(e) => {
                self.sessions.ingest(e);
                self.stats.sessions_evicted = self.sessions.evicted;
            }
            Event::ProcessExit(x) if self.sessions.exited(x.tgid, x.ktime_ns) => {}
            Event::ProcessExit(x) => {
                if self.is_late(x.tgid, x.ktime_ns) {
                    return;
                }
                if self.open.contains_key(&x.tgid) {
                    self.attach_exit(x.tgid, x);
                } else {
                    self.orphan_exits.insert(x.tgid, x.clone());
                }
            }
            Event::OomVictim(o) => match self.open.get_mut(&o.pid) {
                Some(rec) => rec.oom = true,
                None => {
                    self.oom_marks.insert(o.pid, o.ktime_ns);
                }
            },
            Event::CgroupMkdir(_) | Event::CgroupRmdir(_) => {}
        }
    }

    /// Exec sessions kept (for tests and gauges).
    pub fn sessions_len(&self) -> usize {
        self.sessions.len()
    }

    fn attach_exit(&mut self, pid: u32, x: &ProcessExit) {
        if let Some(rec) = self.open.get_mut(&pid) {
            if rec.exit.is_none() {
                rec.exit =
                    Some(Exit { at_ns: x.ktime_ns, code: x.exit_code, signal: x.exit_signal });
            }
        }
    }

    /// An event for a pid whose record closed at or after the event's time is a duplicate or
    /// a straggler of that record, not the start of a new one.
    fn is_late(&mut self, pid: u32, ktime_ns: u64) -> bool {
        match self.recently_closed.get(&pid) {
            Some(&exit_ns) if ktime_ns <= exit_ns => {
                self.stats.late += 1;
                true
            }
            _ => false,
        }
    }

    fn make_room(&mut self) {
        if self.open.len() < MAX_OPEN {
            return;
        }
        if let Some((&pid, _)) = self.open.iter().min_by_key(|(_, r)| r.opened_ns) {
            self.open.remove(&pid);
            self.stats.evicted += 1;
        }
    }

    /// Closes and returns every record whose exit is older than [`CLOSE_LINGER_NS`] at
    /// `now_ns` (kernel monotonic time), oldest exit first; expires parked events.
    pub fn drain_closed(&mut self, now_ns: u64) -> Vec<Termination> {
        let mut done = Vec::new();
        let mut expired_kills = 0;
        let sessions = &self.sessions;
        self.open.retain(|&pid, rec| match &rec.exit {
            Some(exit) if now_ns >= exit.at_ns.saturating_add(CLOSE_LINGER_NS) => {
                done.push(finish(pid, rec, sessions));
                false
            }
            Some(_) => true,
            None => match &rec.kill {
                Some(k) if now_ns >= k.at_ns.saturating_add(KILL_EXPIRY_NS) => {
                    expired_kills += 1;
                    false
                }
                _ => true,
            },
        });
        self.stats.kill_expired += expired_kills;
        let before = self.orphan_exits.len();
        self.orphan_exits.retain(|_, x| now_ns < x.ktime_ns.saturating_add(ORPHAN_EXIT_TTL_NS));
        self.stats.orphan_exits += (before - self.orphan_exits.len()) as u64;
        self.oom_marks.retain(|_, &mut t| now_ns < t.saturating_add(OOM_MARK_TTL_NS));
        self.recently_closed.retain(|_, &mut t| now_ns < t.saturating_add(ORPHAN_EXIT_TTL_NS));
        self.sessions.expire(now_ns);
        for t in &done {
            self.recently_closed.insert(t.pid, t.exit.at_ns);
        }
        done.sort_by_key(|t| t.exit.at_ns);
        done
    }
}

/// Two stop signals for one process: the earlier wins, unless it is of another number and
/// [`STOP_SIGNAL_SUPERSEDE_NS`] older (then it was not the stop: a reload, say).
fn choose_stop_signal(a: StopSignal, b: StopSignal) -> StopSignal {
    let (first, second) = if a.at_ns <= b.at_ns { (a, b) } else { (b, a) };
    if first.sig != second.sig && second.at_ns - first.at_ns > STOP_SIGNAL_SUPERSEDE_NS {
        second
    } else if first.sig == second.sig && first.disposition.is_none() {
        StopSignal { disposition: second.disposition, ..first }
    } else {
        first
    }
}

fn finish(pid: u32, rec: &Open, sessions: &ExecSessions) -> Termination {
    let exit = rec.exit.clone().expect("finish is only called with an exit");
    // A stop signal after the SIGKILL did not start this termination.
    let stop = rec
        .stop
        .clone()
        .filter(|s| rec.kill.as_ref().is_none_or(|k| s.at_ns <= k.at_ns) && s.at_ns <= exit.at_ns);
    let killed_by_sigkill = exit.signal == Some(SIGKILL);
    let outcome = if rec.oom && killed_by_sigkill {
        Outcome::OomKilled
    } else if killed_by_sigkill && stop.is_none() {
        Outcome::KilledWithoutStopSignal
    } else if killed_by_sigkill {
        Outcome::Killed
    } else {
        Outcome::Graceful
    };
    let prestop_candidates =
        stop.as_ref().map(|s| sessions.candidates(rec.cgroup_id, s.at_ns)).unwrap_or_default();
    Termination {
        pid,
        comm: rec.comm.clone(),
        cgroup_id: rec.cgroup_id,
        prestop_candidates,
        stop_signal: stop,
        sigkill: rec.kill.clone(),
        oom: rec.oom,
        exit,
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        events::{ExecSession, OomVictim, SignalDeliver, SignalGenerate},
        prestop::{choose_exec_prestop, MAX_SESSIONS, SESSION_LINGER_NS},
    };

    const PID: u32 = 4242;
    const CG: u64 = 9001;

    fn sig(at_ms: u64, sig: u32, result: SignalResult) -> Event {
        Event::SignalGenerate(SignalGenerate {
            ktime_ns: at_ms * MS,
            sig,
            result,
            target_handler: Some(Disposition::Default),
            target: Proc { pid: PID, comm: "app".into() },
            target_cgroup_id: CG,
            sender: Proc { pid: 77, comm: "runc".into() },
            sender_cgroup_id: 1,
        })
    }
    fn deliver(at_ms: u64, sig: u32, disposition: Disposition) -> Event {
        Event::SignalDeliver(SignalDeliver {
            ktime_ns: at_ms * MS,
            sig,
            disposition,
            tgid: PID,
            cgroup_id: CG,
        })
    }
    fn exit(at_ms: u64, code: Option<u32>, signal: Option<u32>) -> Event {
        Event::ProcessExit(ProcessExit {
            ktime_ns: at_ms * MS,
            tgid: PID,
            comm: "app".into(),
            exit_code: code,
            exit_signal: signal,
            cgroup_id: CG,
        })
    }
    fn run(events: &[Event]) -> (Vec<Termination>, Correlator) {
        let mut c = Correlator::new();
        for e in events {
            c.ingest(e);
        }
        let out = c.drain_closed(u64::MAX / 2);
        (out, c)
    }
    fn one(events: &[Event]) -> Termination {
        let (mut out, _) = run(events);
        assert_eq!(out.len(), 1, "{out:?}");
        out.remove(0)
    }

    #[test]
    fn handled_stop_signal_then_exit_is_graceful() {
        let t = one(&[
            sig(1000, 15, SignalResult::Delivered),
            deliver(1001, 15, Disposition::Handled),
            exit(1250, Some(0), None),
        ]);
        assert_eq!(t.outcome, Outcome::Graceful);
        assert_eq!(t.term_to_exit_ns(), Some(250 * MS));
        assert_eq!(t.term_to_kill_ns(), None);
        assert_eq!(t.exit.code, Some(0));
        assert_eq!(t.cgroup_id, CG);
        let s = t.stop_signal.unwrap();
        assert_eq!((s.sig, s.ignored, s.disposition), (15, false, Some(Disposition::Handled)));
    }

    #[test]
    fn ignored_stop_signal_then_sigkill_is_killed() {
        let t = one(&[
            sig(1000, 15, SignalResult::Ignored),
            sig(31000, 9, SignalResult::Delivered),
            exit(31001, None, Some(9)),
        ]);
        assert_eq!(t.outcome, Outcome::Killed);
        assert_eq!(t.term_to_kill_ns(), Some(30 * SEC));
        assert_eq!(t.term_to_exit_ns(), Some(30 * SEC + MS));
        let s = t.stop_signal.unwrap();
        assert!(s.ignored);
        assert_eq!(s.disposition, None, "never delivered");
    }

    #[test]
    fn sigkill_alone_is_killed_without_stop_signal() {
        let t = one(&[sig(5, 9, SignalResult::Delivered), exit(6, None, Some(9))]);
        assert_eq!(t.outcome, Outcome::KilledWithoutStopSignal);
        assert!(t.stop_signal.is_none());
        assert_eq!(t.term_to_exit_ns(), None);
    }

    #[test]
    fn oom_mark_makes_it_oom_killed_in_any_order() {
        let ordered = one(&[
            sig(10, 9, SignalResult::Delivered),
            Event::OomVictim(OomVictim { ktime_ns: 10 * MS, pid: PID }),
            exit(11, None, Some(9)),
        ]);
        assert_eq!(ordered.outcome, Outcome::OomKilled);
        let reversed = one(&[
            Event::OomVictim(OomVictim { ktime_ns: 10 * MS, pid: PID }),
            exit(11, None, Some(9)),
            sig(10, 9, SignalResult::Delivered),
        ]);
        assert_eq!(reversed, ordered);
    }

    #[test]
    fn out_of_order_and_duplicated_events_give_the_same_record() {
        let events = [
            sig(1000, 15, SignalResult::Delivered),
            deliver(1002, 15, Disposition::Handled),
            sig(3000, 9, SignalResult::Delivered),
            exit(3001, None, Some(9)),
        ];
        let reference = one(&events);
        let shuffled = [
            events[3].clone(),
            events[2].clone(),
            events[2].clone(),
            events[1].clone(),
            events[0].clone(),
            events[0].clone(),
        ];
        let mut c = Correlator::new();
        for e in &shuffled {
            c.ingest(e);
        }
        // Delivery before its generation is not matched (no record yet), so feed it again
        // after: what the ring buffer does (deliveries always follow generation).
        c.ingest(&events[1]);
        let out = c.drain_closed(u64::MAX / 2);
        assert_eq!(out, vec![reference]);
    }

    #[test]
    fn a_record_waits_for_late_events_before_closing() {
        let mut c = Correlator::new();
        c.ingest(&sig(1000, 15, SignalResult::Delivered));
        c.ingest(&exit(1010, Some(0), None));
        assert!(c.drain_closed(1010 * MS + CLOSE_LINGER_NS - 1).is_empty());
        c.ingest(&deliver(1001, 15, Disposition::Handled));
        let out = c.drain_closed(1010 * MS + CLOSE_LINGER_NS);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].stop_signal.as_ref().unwrap().disposition, Some(Disposition::Handled));
        // Stragglers after close are counted, never reopen a record.
        c.ingest(&exit(1010, Some(0), None));
        c.ingest(&sig(1000, 15, SignalResult::Delivered));
        assert_eq!(c.stats.late, 2);
        assert_eq!(c.open_len(), 0);
    }

    #[test]
    fn an_exit_without_a_signal_is_not_a_termination() {
        let (out, c) = run(&[exit(5, Some(0), None)]);
        assert!(out.is_empty());
        assert_eq!(c.stats.orphan_exits, 1);
    }

    #[test]
    fn a_survived_reload_signal_does_not_start_the_later_stop() {
        // SIGHUP (reload) at t=0, SIGTERM a minute later, graceful exit.
        let t = one(&[
            sig(0, 1, SignalResult::Delivered),
            sig(60_000, 15, SignalResult::Delivered),
            exit(60_100, Some(0), None),
        ]);
        assert_eq!(t.term_to_exit_ns(), Some(100 * MS));
        assert_eq!(t.stop_signal.unwrap().sig, 15);
    }

    #[test]
    fn the_first_of_repeated_stop_signals_counts() {
        let t = one(&[
            sig(2000, 15, SignalResult::Delivered),
            sig(1000, 15, SignalResult::Delivered),
            exit(2500, Some(0), None),
        ]);
        assert_eq!(t.stop_signal.unwrap().at_ns, 1000 * MS);
    }

    #[test]
    fn a_stop_signal_after_the_sigkill_is_not_the_stop_signal() {
        let t = one(&[
            sig(10, 9, SignalResult::Delivered),
            sig(11, 15, SignalResult::Delivered),
            exit(12, None, Some(9)),
        ]);
        assert_eq!(t.outcome, Outcome::KilledWithoutStopSignal);
    }

    #[test]
    fn a_sigkilled_process_that_never_exits_expires() {
        let mut c = Correlator::new();
        c.ingest(&sig(0, 9, SignalResult::Delivered));
        assert!(c.drain_closed(KILL_EXPIRY_NS).is_empty());
        assert_eq!((c.stats.kill_expired, c.open_len()), (1, 0));
    }

    fn session(at_ms: u64, pid: u32, cgroup_id: u64, comm: &str) -> Event {
        Event::ExecSession(ExecSession {
            ktime_ns: at_ms * MS,
            session: Proc { pid, comm: comm.into() },
            parent: Proc { pid: 77, comm: "runc".into() },
            cgroup_id,
        })
    }
    fn exit_of(at_ms: u64, pid: u32) -> Event {
        Event::ProcessExit(ProcessExit {
            ktime_ns: at_ms * MS,
            tgid: pid,
            comm: "sh".into(),
            exit_code: Some(0),
            exit_signal: None,
            cgroup_id: CG,
        })
    }

    #[test]
    fn a_session_ending_just_before_the_stop_signal_is_a_prestop_candidate() {
        let t = one(&[
            session(0, 500, CG, "sh"),
            exit_of(3000, 500),
            sig(3010, 15, SignalResult::Delivered),
            exit(3100, Some(0), None),
        ]);
        assert_eq!(t.prestop_candidates.len(), 1);
        let s = &t.prestop_candidates[0];
        assert_eq!((s.session.pid, s.started_ns, s.ended_ns), (500, 0, Some(3000 * MS)));
        assert_eq!(s.parent.comm, "runc");
        assert!(!s.running_at(3010 * MS));
    }

    #[test]
    fn a_session_still_running_at_the_stop_signal_is_a_candidate_and_its_exit_is_not_an_orphan() {
        let (out, c) = run(&[
            session(0, 500, CG, "sleep"),
            sig(2000, 15, SignalResult::Delivered),
            exit(2050, Some(0), None),
            exit_of(2051, 500),
        ]);
        let s = &out[0].prestop_candidates[0];
        assert!(s.running_at(2000 * MS));
        assert_eq!(s.ended_ns, Some(2051 * MS));
        assert_eq!(c.stats.orphan_exits, 0);
    }

    #[test]
    fn old_sessions_and_other_containers_sessions_are_not_candidates() {
        let t = one(&[
            session(0, 501, CG, "sh"),
            exit_of(100, 501),
            session(50, 502, CG + 1, "sh"),
            session(2500, 503, CG, "late"),
            sig(2000, 15, SignalResult::Delivered),
            exit(2100, Some(0), None),
        ]);
        assert!(t.prestop_candidates.is_empty(), "{:?}", t.prestop_candidates);
    }

    #[test]
    fn a_session_that_execs_again_stays_one_session() {
        let t = one(&[
            session(0, 500, CG, "sh"),
            session(3, 500, CG, "sleep"),
            sig(2000, 15, SignalResult::Delivered),
            exit(2100, Some(0), None),
        ]);
        assert_eq!(t.prestop_candidates.len(), 1);
        assert_eq!(t.prestop_candidates[0].session.comm, "sleep");
        assert_eq!(t.prestop_candidates[0].started_ns, 0);
    }

    #[test]
    fn the_hook_command_picks_among_candidates_else_the_latest_start() {
        let t = one(&[
            session(0, 600, CG, "sh"),
            session(1000, 601, CG, "probe"),
            sig(2000, 15, SignalResult::Delivered),
            exit(2100, Some(0), None),
        ]);
        let c = &t.prestop_candidates;
        assert_eq!(choose_exec_prestop(c, None).unwrap().session.pid, 601);
        let hook = ["/bin/sh".to_string(), "-c".into(), "sleep 5".into()];
        assert_eq!(choose_exec_prestop(c, Some(&hook)).unwrap().session.pid, 600);
        assert!(choose_exec_prestop(c, Some(&["nginx".to_string()])).is_none());
        assert!(choose_exec_prestop(&[], None).is_none());
    }

    #[test]
    fn ended_sessions_expire_and_running_ones_are_bounded() {
        let mut c = Correlator::new();
        c.ingest(&session(0, 1, CG, "sh"));
        c.ingest(&exit_of(10, 1));
        c.ingest(&session(0, 2, CG, "sh"));
        c.drain_closed(10 * MS + SESSION_LINGER_NS);
        assert_eq!(c.sessions_len(), 1, "the running one stays");
        for pid in 10..(10 + MAX_SESSIONS as u32) {
            c.ingest(&session(1, pid, CG, "sh"));
        }
        assert_eq!(c.sessions_len(), MAX_SESSIONS);
        assert_eq!(c.stats.sessions_evicted, 1);
    }

    #[test]
    fn exit_code_is_kept() {
        let t = one(&[sig(1, 15, SignalResult::Delivered), exit(2, Some(3), None)]);
        assert_eq!((t.exit.code, t.exit.signal, t.outcome), (Some(3), None, Outcome::Graceful));
    }
}
