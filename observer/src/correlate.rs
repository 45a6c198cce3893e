//! Correlation: kernel events -> one termination record per container main process.
//!
//! Pure state (no aya, no I/O, no clocks of its own): the daemon feeds it decoded events and
//! calls [`Correlator::drain_closed`] with the current kernel time. Every field of a record is
//! merged by kernel timestamp, not by arrival order, so duplicated and out-of-order events give
//! the same record. Events that arrive before the record they belong to are parked explicitly
//! (exits before their signal, OOM marks before their SIGKILL) for a bounded time.
//!
//! A termination is: the first stop signal (time, sender, ignored?, disposition), the SIGKILL
//! (time, sender, OOM?), and the exit (time, code or fatal signal). The kernel side only reports
//! signals aimed at a container's main process (as the runtime exec'd it) from outside that
//! container, so every record here is about one; records are keyed by the process's identity
//! ([`ProcKey`]: tgid and start time), so a reused tgid never joins another's record.
//!
//! Nothing stays open for ever: a record whose exit was never seen (lost in a full ring
//! buffer) closes as [`Outcome::ExitNotObserved`] when its container's cgroup is removed, or
//! after [`KILL_EXPIRY_NS`] past its SIGKILL / [`STOP_EXPIRY_NS`] past its stop signal.
//!
//! preStop exec hooks: exec sessions the runtime started into a container cgroup are kept in
//! [`crate::prestop::ExecSessions`]; when a termination closes, that room names its candidates.

use std::collections::HashMap;

use crate::{
    events::{Disposition, Event, ProcKey, ProcessExit, Sender, SignalResult},
    prestop::{ExecSessions, SessionSeen, StopSeen},
    signals::SIGKILL,
    stuck::Inspection,
};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000 * MS;

/// After an exit, how long a record stays open for late events from other CPUs (a delivery
/// reserved on one CPU can be read after an exit reserved on another).
pub const CLOSE_LINGER_NS: u64 = 100 * MS;
/// How long an exit with no record yet waits for the signal that explains it.
pub const ORPHAN_EXIT_TTL_NS: u64 = SEC;
/// A record that lost its exit (closed by its cgroup's removal, or expired) waits this long
/// for it: an exit the ring lost is in the kernel's `ENDED`, which the daemon sweeps once a
/// second and takes an exit from 2 s after the kernel saw it (`daemon::ended`'s RING_GRACE_NS
/// and SWEEP_EVERY_NS), plus half a second for the tick. Found by `fuzz.rs`: closed at once,
/// the record said exit_not_observed though the kernel had the exit.
pub const EXIT_RECOVERY_WAIT_NS: u64 = 3_500 * MS;
/// How long an OOM mark waits for the SIGKILL record of its victim.
pub const OOM_MARK_TTL_NS: u64 = 5 * SEC;
/// A SIGKILLed process that has not exited after this long is given up on (it is stuck in
/// uninterruptible sleep, or its exit was lost): the record closes as exit_not_observed.
pub const KILL_EXPIRY_NS: u64 = 10 * 60 * SEC;
/// The same for a stop signal without a SIGKILL: past any grace period kubelet would give
/// (a day), unless the container's cgroup removal closed it first.
pub const STOP_EXPIRY_NS: u64 = 24 * 3600 * SEC;
/// A stop signal of another number, arriving this long after the first one, replaces it: the
/// earlier one was not a stop (a SIGHUP reload before a SIGTERM, say).
pub const STOP_SIGNAL_SUPERSEDE_NS: u64 = observer_ebpf::STOP_SIGNAL_SUPERSEDE_NS;
/// Intervals of loss kept (a record asks about the ones its events span).
pub const MAX_LOSSY_INTERVALS: usize = 4096;
/// Bound on open records; past it the oldest is evicted and counted.
pub const MAX_OPEN: usize = 65_536;
/// Repeated stop signals kept per record (re-issued stops); more are counted
/// ([`Stats::repeats_dropped`]).
pub const MAX_REPEATED_STOPS: usize = 8;
/// Stop signals kept per record to choose from: the stop and its repeats, and as many of
/// another number (a reload's SIGHUP before the stop); past it one is dropped and counted
/// ([`Stats::repeats_dropped`]).
const STOPS_KEPT: usize = 2 * MAX_REPEATED_STOPS + 1;
/// A main process whose exit came but which is still there (held by its pid namespace) keeps
/// its record open at most this long after the exit, like a SIGKILL never answered.
pub const HELD_EXPIRY_NS: u64 = KILL_EXPIRY_NS;
/// The first stop signal of a termination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopSignal {
    pub sig: u32,
    pub at_ns: u64,
    pub sender: Sender,
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
    pub sender: Sender,
}

/// A stop signal of the same number sent again after the first: a re-issued StopContainer
/// (kubelet or the runtime restarted mid-termination), a second `kill`. Recorded, not merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepeatedStop {
    pub sig: u32,
    pub at_ns: u64,
    pub sender: Sender,
}

/// A termination that became stuck ([`Correlator::stuck_due`]).
#[derive(Debug, Clone)]
pub struct StuckDue {
    pub key: ProcKey,
    /// Its SIGKILL (or its held exit, without one).
    pub since_ns: u64,
    /// Its exit came (its pid namespace holds it).
    pub exited: bool,
    /// The record so far, as [`Outcome::Stuck`].
    pub termination: Termination,
}

/// A termination reported stuck ([`crate::stuck`]): since when, when it was reported, what
/// held it, and when its container's cgroup went (a held main process's release).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StuckSeen {
    /// The SIGKILL (or, without one, the exit the pid namespace held).
    pub since_ns: u64,
    pub reported_ns: u64,
    pub inspection: Inspection,
    pub released_ns: Option<u64>,
    /// `since_ns` and `reported_ns` as the stuck record wrote them (RFC 3339): the completion
    /// repeats them exactly (a later conversion, from later clock samples, can differ in its
    /// last digits). None: converted when the record is made.
    pub written: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The exit's time; for [`Outcome::ExitNotObserved`], when the record was closed without
    /// it (the container's cgroup removal, or the expiry).
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
    /// The main process's exit was never seen (a full ring buffer lost it): the record is
    /// what was seen before, closed when its container's cgroup went away.
    ExitNotObserved,
    /// Still there after its SIGKILL ([`crate::stuck`]): the record written while it is stuck.
    Stuck,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Graceful => "graceful",
            Self::Killed => "killed",
            Self::KilledWithoutStopSignal => "killed_without_stop_signal",
            Self::OomKilled => "oom_killed",
            Self::ExitNotObserved => "exit_not_observed",
            Self::Stuck => "stuck",
        }
    }
}

/// Why a record may lack facts (the journal's `incomplete`): it is still the best account of
/// what happened, and says what it could be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gap {
    /// Events were lost (a full ring buffer, a full queue) while the termination was open:
    /// any of its own (a delivery, an exec session, an OOM mark) may be among them.
    EventsLost,
    /// Its signals come from the kernel's summary in the process entry, not from their own
    /// events: a daemon started since read them (or they were lost). What only events carry,
    /// an exec session that ended before this daemon started, is not in the record.
    KernelSummary,
}

impl Gap {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EventsLost => "events_lost",
            Self::KernelSummary => "kernel_summary",
        }
    }
}

/// A closed termination of one container PID 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    pub pid: u32,
    /// The main process's start time (clock ticks since boot): with `pid`, its identity.
    pub start_ticks: u64,
    pub comm: String,
    /// cgroup v2 id of the container (as the first signal saw it).
    pub cgroup_id: u64,
    pub stop_signal: Option<StopSignal>,
    /// The stop signal sent again, in time order (at most [`MAX_REPEATED_STOPS`]).
    pub repeated_stops: Vec<RepeatedStop>,
    pub sigkill: Option<Kill>,
    pub oom: bool,
    /// For [`Outcome::Stuck`], the exit only when it came (a held main process): see
    /// [`Termination::exit_seen`].
    pub exit: Exit,
    pub outcome: Outcome,
    /// Reported stuck before this record ([`Outcome::Stuck`] records carry it too).
    pub stuck: Option<StuckSeen>,
    /// Exec sessions into the container running at the stop signal or ended just before it,
    /// latest start first: the preStop exec hook's candidates.
    pub prestop_candidates: Vec<SessionSeen>,
    /// What it may be missing, sorted (empty: nothing known to be missing).
    pub incomplete: Vec<Gap>,
    /// Its connections as the kernel counted them ([`crate::traffic`]); None: not counted.
    pub traffic: Option<crate::traffic::Seen>,
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

    /// Whether `exit` is the kernel's exit of the main process (not made up at a cgroup's
    /// removal or expiry, and not the moment a stuck record was written).
    pub fn exit_seen(&self) -> bool {
        match self.outcome {
            Outcome::ExitNotObserved => false,
            Outcome::Stuck => self.stuck.as_ref().is_some_and(|s| s.inspection.held_by_children),
            _ => true,
        }
    }

    /// Stop signal -> exit, in nanoseconds.
    pub fn term_to_exit_ns(&self) -> Option<u64> {
        if !self.exit_seen() && self.outcome == Outcome::Stuck {
            return None;
        }
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
    /// Records closed without their exit ([`Outcome::ExitNotObserved`]): at the cgroup's
    /// removal or at expiry.
    pub exit_not_observed: u64,
    /// Exits whose signal never came within [`ORPHAN_EXIT_TTL_NS`].
    pub orphan_exits: u64,
    /// Events for a record that had already closed.
    pub late: u64,
    /// Exec sessions evicted because [`crate::prestop::MAX_SESSIONS`] were kept.
    pub sessions_evicted: u64,
    /// Programs of exec sessions not kept past [`crate::prestop::MAX_SESSION_PROGRAMS`].
    pub session_programs_dropped: u64,
    /// Records of a stop signal the process outlived by [`STOP_EXPIRY_NS`]: no termination.
    pub survived: u64,
    /// Exits whose stop signal or SIGKILL came from what the kernel kept, not from their
    /// own events (read before this daemon started, or lost).
    pub kept_used: u64,
    /// Repeated stop signals past [`MAX_REPEATED_STOPS`] for one record, not kept.
    pub repeats_dropped: u64,
}

#[derive(Debug, Clone)]
struct Open {
    comm: String,
    cgroup_id: u64,
    opened_ns: u64,
    /// The stop signal: [`choose_stop_signal`] folded over `stops` in time order.
    stop: Option<StopSignal>,
    /// Every stop signal seen (at most [`STOPS_KEPT`]), in time order, with the dispositions
    /// their deliveries reported: the choice is made again from them whenever one comes, so
    /// it is the kernel order's whatever the order they were read in.
    stops: Vec<StopSignal>,
    kill: Option<Kill>,
    exit: Option<Exit>,
    /// False when `exit` was made up at the cgroup's removal or at expiry.
    exit_observed: bool,
    /// The exit came but the process is still there (its pid namespace holds it): the record
    /// stays open ([`Correlator::hold_exited`]).
    held: bool,
    stuck: Option<StuckSeen>,
    /// Found not stuck ([`Correlator::not_stuck`]): not asked about again.
    stuck_checked: bool,
    oom: bool,
    gaps: Vec<Gap>,
    /// What the kernel counted of its connections, from its exit.
    traffic: Option<crate::traffic::Seen>,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Correlator {
    open: HashMap<ProcKey, Open>,
    orphan_exits: HashMap<ProcKey, ProcessExit>,
    /// OOM victims by pid (the tracepoint has no start time), waiting for their SIGKILL.
    oom_marks: HashMap<u32, u64>,
    /// Exit time of records closed recently, to tell late events from new ones.
    recently_closed: HashMap<ProcKey, u64>,
    /// Exec sessions into containers.
    sessions: ExecSessions,
    /// Events lost so far, everywhere, as last told ([`Correlator::losses`]), and when.
    lost: Option<(u64, u64)>,
    /// Kernel-time intervals in which the count of lost events grew, oldest first.
    lossy: std::collections::VecDeque<(u64, u64)>,
    pub stats: Stats,
}

impl Correlator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Open records (for the `observer_open_terminations` gauge).
    pub fn is_open(&self, key: ProcKey) -> bool {
        self.open.contains_key(&key)
    }

    /// Whether the open record of `key` has a stop signal and a SIGKILL (false when not open).
    pub fn has_signals(&self, key: ProcKey) -> (bool, bool) {
        self.open.get(&key).map_or((false, false), |r| (r.stop.is_some(), r.kill.is_some()))
    }

    pub fn open_len(&self) -> usize {
        self.open.len()
    }

    /// The count of events lost so far (kernel and userspace stages) at kernel time `now_ns`:
    /// when it grew since the last call, the loss happened in between, and a record whose
    /// events span that interval is [`Gap::EventsLost`]. The first call is the baseline.
    pub fn losses(&mut self, total: u64, now_ns: u64) {
        if let Some((before, since)) = self.lost {
            if total > before {
                self.lossy.push_back((since, now_ns));
                while self.lossy.len() > MAX_LOSSY_INTERVALS {
                    self.lossy.pop_front();
                }
            }
        }
        if self.lost.is_none_or(|(before, _)| total >= before) {
            self.lost = Some((total, now_ns));
        }
    }

    /// Whether events were lost while a record spanning `from..=to` (kernel ns) was open.
    fn lost_between(&self, from: u64, to: u64) -> bool {
        self.lossy.iter().any(|&(a, b)| a <= to && b >= from)
    }

    /// Notes `gap` on the open record of `key` (none open: nothing to note).
    pub fn flag(&mut self, key: ProcKey, gap: Gap) {
        if let Some(rec) = self.open.get_mut(&key) {
            if !rec.gaps.contains(&gap) {
                rec.gaps.push(gap);
            }
        }
    }

    pub fn ingest(&mut self, event: &Event) {
        match event {
            Event::SignalGenerate(g) => {
                let key = g.target_key;
                if self.is_late(key, g.ktime_ns) {
                    return;
                }
                self.make_room();
                let rec = self.open.entry(key).or_insert_with(|| Open {
                    comm: g.target.comm.clone(),
                    cgroup_id: g.target_cgroup_id,
                    opened_ns: g.ktime_ns,
                    stop: None,
                    stops: Vec::new(),
                    kill: None,
                    exit: None,
                    exit_observed: true,
                    held: false,
                    stuck: None,
                    stuck_checked: false,
                    oom: false,
                    gaps: Vec::new(),
                    traffic: None,
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
                    if !rec.stops.iter().any(|o| o.sig == new.sig && o.at_ns == new.at_ns) {
                        if rec.stops.len() < STOPS_KEPT {
                            let at = rec.stops.partition_point(|o| o.at_ns <= new.at_ns);
                            rec.stops.insert(at, new);
                        } else {
                            self.stats.repeats_dropped += 1;
                        }
                    }
                    rec.stop = chosen_stop(&rec.stops);
                }
                if let Some(x) = self.orphan_exits.remove(&key) {
                    self.attach_exit(key, &x);
                }
                if self.oom_marks.remove(&key.tgid).is_some() {
                    if let Some(rec) = self.open.get_mut(&key) {
                        rec.oom = true;
                    }
                }
            }
            Event::SignalDeliver(d) => {
                let Some(rec) = self.open.get_mut(&d.key) else { return };
                // The latest generation of this signal before the delivery.
                if let Some(stop) = rec
                    .stops
                    .iter_mut()
                    .rev()
                    .find(|s| s.sig == d.sig && s.at_ns <= d.ktime_ns)
                    .filter(|s| s.disposition.is_none())
                {
                    stop.disposition = Some(d.disposition);
                    rec.stop = chosen_stop(&rec.stops);
                }
            }
            Event::ExecSession(e) => {
                self.sessions.ingest(e);
                self.stats.sessions_evicted = self.sessions.evicted;
                self.stats.session_programs_dropped = self.sessions.programs_dropped;
            }
            Event::ProcessExit(x) if !x.main => {
                self.sessions.exited(x.key.tgid, x.ktime_ns);
            }
            Event::ProcessExit(x) => {
                if self.is_late(x.key, x.ktime_ns) {
                    return;
                }
                if self.open.contains_key(&x.key) {
                    self.attach_exit(x.key, x);
                } else {
                    self.orphan_exits.insert(x.key, x.clone());
                }
            }
            // The tracepoint has no start time: of the records open for this tgid, the newest.
            Event::OomVictim(o) => match self
                .open
                .iter_mut()
                .filter(|(k, _)| k.tgid == o.pid)
                .max_by_key(|(_, r)| r.opened_ns)
            {
                Some((_, rec)) => rec.oom = true,
                None => {
                    self.oom_marks.insert(o.pid, o.ktime_ns);
                }
            },
            Event::CgroupRmdir(c) => self.cgroup_removed(c.id, c.ktime_ns),
            Event::CgroupMkdir(_) | Event::MainProcess(_) => {}
        }
    }

    /// A container's cgroup is gone, so is its main process: a record still waiting for the
    /// exit will not see it (the runtime removes the cgroup after reaping the process, so
    /// the exit, when the kernel reported it, came first).
    fn cgroup_removed(&mut self, cgroup_id: u64, at_ns: u64) {
        for rec in self.open.values_mut().filter(|r| r.cgroup_id == cgroup_id) {
            if rec.exit.is_none() {
                rec.exit = Some(Exit { at_ns, code: None, signal: None });
                rec.exit_observed = false;
            }
            // A held main process is released: the runtime reaped it and removed the cgroup.
            if rec.held {
                rec.held = false;
                if let Some(s) = rec.stuck.as_mut() {
                    s.released_ns.get_or_insert(at_ns);
                }
            }
        }
    }

    /// Records whose exit came at least [`CLOSE_LINGER_NS`] before `now_ns` stay open while
    /// `held` says their process is still there and not a zombie (a pid namespace's init
    /// waiting in `zap_pid_ns_processes()` for processes that cannot die): the container is
    /// not gone. At most [`HELD_EXPIRY_NS`] after the exit.
    pub fn hold_exited(&mut self, now_ns: u64, held: impl Fn(ProcKey) -> bool) {
        for (key, rec) in self.open.iter_mut() {
            let Some(exit) = rec.exit.as_ref().filter(|_| rec.exit_observed) else { continue };
            if now_ns < exit.at_ns.saturating_add(CLOSE_LINGER_NS) {
                continue;
            }
            let was = rec.held;
            let still = held(*key);
            rec.held = still && now_ns < exit.at_ns.saturating_add(HELD_EXPIRY_NS);
            // Released: gone from /proc (not given up on at the expiry, still held).
            if was && !still {
                if let Some(s) = rec.stuck.as_mut() {
                    s.released_ns.get_or_insert(now_ns);
                }
            }
        }
    }

    /// The records stuck at `now_ns` and not yet reported: a SIGKILL at least `after_ns` ago
    /// and no exit, or an exit its pid namespace holds (`after_ns` past the SIGKILL, or past
    /// the exit without one). Each as a [`Outcome::Stuck`] snapshot, with when it became
    /// stuck; [`Correlator::note_stuck`] marks it reported.
    pub fn stuck_due(&self, now_ns: u64, after_ns: u64) -> Vec<StuckDue> {
        let mut out = Vec::new();
        for (&key, rec) in self.open.iter().filter(|(_, r)| r.stuck.is_none() && !r.stuck_checked) {
            let since = match (&rec.kill, &rec.exit) {
                (Some(k), None) => k.at_ns,
                (k, Some(x)) if rec.held => k.as_ref().map_or(x.at_ns, |k| k.at_ns),
                _ => continue,
            };
            if now_ns < since.saturating_add(after_ns) {
                continue;
            }
            let exit = rec.exit.clone().unwrap_or(Exit { at_ns: now_ns, code: None, signal: None });
            let mut termination = finish(key, rec, &self.sessions, exit);
            termination.outcome = Outcome::Stuck;
            out.push(StuckDue { key, since_ns: since, exited: rec.held, termination });
        }
        out.sort_by_key(|d| d.since_ns);
        out
    }

    /// `key`'s process is not stuck although its exit has not been read: it is gone from /proc
    /// (its exit is still in the ring behind a backlog, or was lost). Never reported stuck; its
    /// exit, its cgroup's removal or the expiry closes it as any other.
    pub fn not_stuck(&mut self, key: ProcKey) {
        if let Some(rec) = self.open.get_mut(&key) {
            rec.stuck_checked = true;
        }
    }

    /// Marks `key`'s record reported stuck with what held it.
    pub fn note_stuck(&mut self, key: ProcKey, stuck: StuckSeen) {
        if let Some(rec) = self.open.get_mut(&key) {
            rec.stuck = Some(stuck);
        }
    }

    /// Records reported stuck and still open (the `observer_stuck_terminations` gauge).
    pub fn stuck_len(&self) -> usize {
        self.open.values().filter(|r| r.stuck.is_some()).count()
    }

    /// Exec sessions kept (for tests and gauges).
    pub fn sessions_len(&self) -> usize {
        self.sessions.len()
    }

    fn attach_exit(&mut self, key: ProcKey, x: &ProcessExit) {
        if let Some(rec) = self.open.get_mut(&key) {
            // The real exit, also over one made up at the cgroup's removal or the expiry.
            if rec.exit.is_none() || !rec.exit_observed {
                rec.exit =
                    Some(Exit { at_ns: x.ktime_ns, code: x.exit_code, signal: x.exit_signal });
                rec.exit_observed = true;
                rec.traffic = x.kept.traffic.clone();
            }
        }
    }

    /// An event for a pid whose record closed at or after the event's time is a duplicate or
    /// a straggler of that record, not the start of a new one.
    fn is_late(&mut self, key: ProcKey, ktime_ns: u64) -> bool {
        match self.recently_closed.get(&key) {
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
        if let Some((&key, _)) = self.open.iter().min_by_key(|(_, r)| r.opened_ns) {
            self.open.remove(&key);
            self.stats.evicted += 1;
        }
    }

    /// Gives up on records open past their expiry at `now_ns`: they close as
    /// [`Outcome::ExitNotObserved`] at the next [`Correlator::drain_closed`], unless `alive`
    /// says the process still runs (same tgid and start time). Then a record with a stop
    /// signal only was no termination (a SIGHUP reload, a dropped SIGTERM nobody followed up):
    /// it is dropped and counted in [`Stats::survived`]; one with a SIGKILL stays open (the
    /// process is stuck; its exit or its cgroup's removal closes it). Not called at shutdown:
    /// the daemon stopping is not the container's exit.
    pub fn expire(&mut self, now_ns: u64, alive: impl Fn(ProcKey) -> bool) {
        let mut survived = Vec::new();
        for (key, rec) in self.open.iter_mut().filter(|(_, r)| r.exit.is_none()) {
            let expiry = match (&rec.kill, &rec.stop) {
                (Some(k), _) => k.at_ns.saturating_add(KILL_EXPIRY_NS),
                (None, Some(s)) => s.at_ns.saturating_add(STOP_EXPIRY_NS),
                (None, None) => rec.opened_ns.saturating_add(STOP_EXPIRY_NS),
            };
            if now_ns < expiry {
                continue;
            }
            if alive(*key) {
                if rec.kill.is_none() {
                    survived.push(*key);
                }
                continue;
            }
            rec.exit = Some(Exit { at_ns: expiry, code: None, signal: None });
            rec.exit_observed = false;
        }
        for key in survived {
            self.open.remove(&key);
            self.stats.survived += 1;
        }
    }

    /// Closes and returns every record whose exit is older than [`CLOSE_LINGER_NS`] at
    /// `now_ns` (kernel monotonic time), oldest exit first; expires parked events.
    pub fn drain_closed(&mut self, now_ns: u64) -> Vec<Termination> {
        let mut done = Vec::new();
        let mut closing: Vec<(ProcKey, u64, u64)> = Vec::new();
        for (&key, rec) in &self.open {
            if let Some(exit) = rec.exit.as_ref().filter(|_| !rec.held) {
                if now_ns >= exit.at_ns.saturating_add(linger(rec)) {
                    closing.push((key, rec.opened_ns, exit.at_ns));
                }
            }
        }
        for (key, from, to) in closing {
            if self.lost_between(from, to) {
                self.flag(key, Gap::EventsLost);
            }
        }
        let sessions = &self.sessions;
        let mut repeats_dropped = 0;
        self.open.retain(|&key, rec| match &rec.exit {
            Some(exit) if !rec.held && now_ns >= exit.at_ns.saturating_add(linger(rec)) => {
                let t = finish(key, rec, sessions, exit.clone());
                let all = repeats(rec, t.stop_signal.as_ref(), exit).count();
                repeats_dropped += all.saturating_sub(MAX_REPEATED_STOPS) as u64;
                done.push(t);
                false
            }
            _ => true,
        });
        self.stats.exit_not_observed +=
            done.iter().filter(|t| t.outcome == Outcome::ExitNotObserved).count() as u64;
        self.stats.repeats_dropped += repeats_dropped;
        let before = self.orphan_exits.len();
        self.orphan_exits.retain(|_, x| now_ns < x.ktime_ns.saturating_add(ORPHAN_EXIT_TTL_NS));
        self.stats.orphan_exits += (before - self.orphan_exits.len()) as u64;
        self.oom_marks.retain(|_, &mut t| now_ns < t.saturating_add(OOM_MARK_TTL_NS));
        // Past a recovered exit's delay too: one recovered late is a straggler, not a record.
        self.recently_closed.retain(|_, &mut t| {
            now_ns < t.saturating_add(ORPHAN_EXIT_TTL_NS.max(EXIT_RECOVERY_WAIT_NS))
        });
        self.sessions.expire(now_ns);
        for t in &done {
            self.recently_closed
                .insert(ProcKey { tgid: t.pid, start_ticks: t.start_ticks }, t.exit.at_ns);
        }
        done.sort_by_key(|t| t.exit.at_ns);
        done
    }
}

/// How long a record stays open after its exit: [`CLOSE_LINGER_NS`], or
/// [`EXIT_RECOVERY_WAIT_NS`] after an exit made up (the real one may be recovered).
fn linger(rec: &Open) -> u64 {
    if rec.exit_observed {
        CLOSE_LINGER_NS
    } else {
        EXIT_RECOVERY_WAIT_NS
    }
}

/// The stop signal of `stops` (in time order): each chosen against the one before, as they
/// came in the kernel.
fn chosen_stop(stops: &[StopSignal]) -> Option<StopSignal> {
    stops.iter().cloned().reduce(choose_stop_signal)
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

/// Repeats of the stop signal `stop`, before the exit (a signal to a dead process is none).
fn repeats<'a>(
    rec: &'a Open,
    stop: Option<&'a StopSignal>,
    exit: &'a Exit,
) -> impl Iterator<Item = &'a StopSignal> + 'a {
    rec.stops.iter().filter(move |r| {
        stop.is_some_and(|s| r.sig == s.sig && r.at_ns > s.at_ns && r.at_ns <= exit.at_ns)
    })
}

fn finish(key: ProcKey, rec: &Open, sessions: &ExecSessions, exit: Exit) -> Termination {
    // A stop signal after the SIGKILL did not start this termination.
    let stop = rec
        .stop
        .clone()
        .filter(|s| rec.kill.as_ref().is_none_or(|k| s.at_ns <= k.at_ns) && s.at_ns <= exit.at_ns);
    let killed_by_sigkill = exit.signal == Some(SIGKILL);
    let outcome = if !rec.exit_observed {
        Outcome::ExitNotObserved
    } else if rec.oom && killed_by_sigkill {
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
    let mut incomplete = rec.gaps.clone();
    incomplete.sort();
    let repeated_stops: Vec<RepeatedStop> = repeats(rec, stop.as_ref(), &exit)
        .take(MAX_REPEATED_STOPS)
        .map(|r| RepeatedStop { sig: r.sig, at_ns: r.at_ns, sender: r.sender.clone() })
        .collect();
    Termination {
        pid: key.tgid,
        start_ticks: key.start_ticks,
        comm: rec.comm.clone(),
        cgroup_id: rec.cgroup_id,
        prestop_candidates,
        stop_signal: stop,
        repeated_stops,
        sigkill: rec.kill.clone(),
        oom: rec.oom,
        exit,
        outcome,
        stuck: rec.stuck.clone(),
        incomplete,
        traffic: rec.traffic.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        events::{
            CgroupChange, ExecSession, OomVictim, Origin, Proc, SignalDeliver, SignalGenerate,
        },
        prestop::{choose_exec_prestop, MAX_SESSIONS, SESSION_LINGER_NS},
    };

    const PID: u32 = 4242;
    const KEY: ProcKey = ProcKey { tgid: PID, start_ticks: 1000 };
    const CG: u64 = 9001;

    fn sig_to(key: ProcKey, at_ms: u64, sig: u32, result: SignalResult) -> Event {
        Event::SignalGenerate(SignalGenerate {
            ktime_ns: at_ms * MS,
            sig,
            result,
            target_handler: Some(Disposition::Default),
            target: Proc { pid: key.tgid, comm: "app".into() },
            target_key: key,
            target_cgroup_id: CG,
            sender: Sender { pid: 77, comm: "runc".into(), from: Origin::Host },
            sender_cgroup_id: 1,
        })
    }
    fn sig(at_ms: u64, sig: u32, result: SignalResult) -> Event {
        sig_to(KEY, at_ms, sig, result)
    }
    fn deliver(at_ms: u64, sig: u32, disposition: Disposition) -> Event {
        Event::SignalDeliver(SignalDeliver {
            ktime_ns: at_ms * MS,
            sig,
            disposition,
            key: KEY,
            cgroup_id: CG,
        })
    }
    fn exit_key(key: ProcKey, at_ms: u64, code: Option<u32>, signal: Option<u32>) -> Event {
        Event::ProcessExit(ProcessExit {
            kept: Default::default(),
            ktime_ns: at_ms * MS,
            key,
            main: true,
            comm: "app".into(),
            exit_code: code,
            exit_signal: signal,
            cgroup_id: CG,
        })
    }
    fn exit(at_ms: u64, code: Option<u32>, signal: Option<u32>) -> Event {
        exit_key(KEY, at_ms, code, signal)
    }
    fn rmdir(at_ms: u64, id: u64) -> Event {
        Event::CgroupRmdir(CgroupChange { ktime_ns: at_ms * MS, id, level: 4, path: "/x".into() })
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
    fn a_sigkilled_process_that_never_exits_closes_as_exit_not_observed() {
        let mut c = Correlator::new();
        c.ingest(&sig(0, 9, SignalResult::Delivered));
        c.expire(KILL_EXPIRY_NS - 1, |_| false);
        assert!(c.drain_closed(u64::MAX / 2).is_empty(), "shutdown is not the exit");
        c.expire(KILL_EXPIRY_NS, |_| false);
        // It waits for an exit recovered from the kernel's ENDED first.
        assert!(c.drain_closed(KILL_EXPIRY_NS + EXIT_RECOVERY_WAIT_NS - 1).is_empty());
        let out = c.drain_closed(KILL_EXPIRY_NS + EXIT_RECOVERY_WAIT_NS);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].outcome, Outcome::ExitNotObserved);
        assert_eq!(
            (out[0].exit.at_ns, out[0].exit.code, out[0].exit.signal),
            (KILL_EXPIRY_NS, None, None)
        );
        assert!(out[0].sigkill.is_some());
        assert_eq!((c.stats.exit_not_observed, c.open_len()), (1, 0));
        // A stop signal alone lives at most a day.
        c.ingest(&sig_to(ProcKey { tgid: 7, start_ticks: 7 }, 0, 15, SignalResult::Delivered));
        c.expire(STOP_EXPIRY_NS, |_| false);
        let out = c.drain_closed(STOP_EXPIRY_NS + EXIT_RECOVERY_WAIT_NS);
        assert_eq!(out[0].outcome, Outcome::ExitNotObserved);
    }

    #[test]
    fn a_process_alive_at_expiry_is_not_made_an_exit() {
        let mut c = Correlator::new();
        let (reload, stuck) =
            (ProcKey { tgid: 7, start_ticks: 7 }, ProcKey { tgid: 8, start_ticks: 8 });
        // A SIGHUP reload it survived; a SIGKILL it is stuck under.
        c.ingest(&sig_to(reload, 0, 1, SignalResult::Delivered));
        c.ingest(&sig_to(stuck, 0, 9, SignalResult::Delivered));
        c.expire(STOP_EXPIRY_NS, |_| true);
        assert!(c.drain_closed(STOP_EXPIRY_NS + CLOSE_LINGER_NS).is_empty());
        assert_eq!((c.stats.survived, c.stats.exit_not_observed, c.open_len()), (1, 0, 1));
        // The stuck one's exit still makes its record.
        c.ingest(&Event::ProcessExit(ProcessExit {
            kept: Default::default(),
            ktime_ns: STOP_EXPIRY_NS + 1,
            key: stuck,
            exit_code: None,
            exit_signal: Some(9),
            main: true,
            cgroup_id: CG,
            comm: "stuck".into(),
        }));
        let out = c.drain_closed(STOP_EXPIRY_NS + 2 * CLOSE_LINGER_NS);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].pid, 8);
    }

    #[test]
    fn an_exit_recovered_after_the_cgroup_removal_is_the_records_exit() {
        let mut c = Correlator::new();
        c.ingest(&sig(1000, 15, SignalResult::Delivered));
        c.ingest(&rmdir(1500, CG));
        // The ring lost the exit at 1200; the daemon takes it from ENDED ~2 s later.
        c.ingest(&exit(1200, None, Some(15)));
        let out = c.drain_closed(5000 * MS);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].outcome, Outcome::Graceful);
        assert_eq!((out[0].exit.at_ns, out[0].exit.signal), (1200 * MS, Some(15)));
        assert_eq!(c.stats.exit_not_observed, 0);
    }

    #[test]
    fn a_lost_exit_closes_at_the_cgroup_removal_and_a_later_exit_is_late() {
        let mut c = Correlator::new();
        c.ingest(&sig(1000, 15, SignalResult::Ignored));
        c.ingest(&sig(3000, 9, SignalResult::Delivered));
        c.ingest(&rmdir(3005, CG + 1));
        assert!(c.drain_closed(4000 * MS).is_empty(), "another container's cgroup");
        c.ingest(&rmdir(3010, CG));
        assert!(c.drain_closed(4000 * MS).is_empty(), "waiting for an exit from ENDED");
        let out = c.drain_closed(3010 * MS + EXIT_RECOVERY_WAIT_NS);
        assert_eq!(out.len(), 1);
        let t = &out[0];
        assert_eq!(t.outcome, Outcome::ExitNotObserved);
        assert_eq!(t.exit.at_ns, 3010 * MS);
        assert_eq!(t.term_to_kill_ns(), Some(2000 * MS));
        assert_eq!(t.stop_signal.as_ref().unwrap().sig, 15);
        assert_eq!(c.stats.exit_not_observed, 1);
        // A removal after the exit changes nothing.
        let (out, _) =
            run(&[sig(1, 15, SignalResult::Delivered), exit(2, Some(0), None), rmdir(3, CG)]);
        assert_eq!(out[0].outcome, Outcome::Graceful);
    }

    #[test]
    fn a_reused_tgid_is_another_process() {
        // The first process's exit was lost; a later process with its tgid is stopped.
        let later = ProcKey { tgid: PID, start_ticks: 99_000 };
        let (out, _) = run(&[
            sig(1000, 15, SignalResult::Delivered),
            sig_to(later, 5000, 9, SignalResult::Delivered),
            exit_key(later, 5001, None, Some(9)),
            rmdir(6000, CG),
        ]);
        assert_eq!(out.len(), 2, "{out:?}");
        let second = out.iter().find(|t| t.start_ticks == 99_000).unwrap();
        assert_eq!(second.outcome, Outcome::KilledWithoutStopSignal);
        assert!(second.stop_signal.is_none(), "the first one's SIGTERM is not its");
        let first = out.iter().find(|t| t.start_ticks == 1000).unwrap();
        assert_eq!(first.outcome, Outcome::ExitNotObserved);
        assert!(first.sigkill.is_none());
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
            kept: Default::default(),
            ktime_ns: at_ms * MS,
            key: ProcKey { tgid: pid, start_ticks: 5 },
            main: false,
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

    #[test]
    fn a_repeated_stop_signal_is_kept_beside_the_first() {
        let t = one(&[
            sig(1000, 15, SignalResult::Ignored),
            sig(7000, 15, SignalResult::Ignored),
            // The same event twice (ring and kernel summary) is one repeat.
            sig(7000, 15, SignalResult::Ignored),
            sig(17000, 9, SignalResult::Delivered),
            exit(17001, None, Some(9)),
        ]);
        assert_eq!(t.stop_signal.as_ref().unwrap().at_ns, 1000 * MS);
        let at: Vec<u64> = t.repeated_stops.iter().map(|r| r.at_ns).collect();
        assert_eq!(at, [7000 * MS]);
        assert_eq!(t.repeated_stops[0].sender.comm, "runc");
        // Read in the other order, the same record.
        let u = one(&[
            sig(7000, 15, SignalResult::Ignored),
            sig(1000, 15, SignalResult::Ignored),
            sig(17000, 9, SignalResult::Delivered),
            exit(17001, None, Some(9)),
        ]);
        assert_eq!(u, t);
        // A signal of another number that supersedes the first leaves no repeats of it.
        let v = one(&[
            sig(0, 1, SignalResult::Delivered),
            sig(10, 1, SignalResult::Delivered),
            sig(60_000, 15, SignalResult::Delivered),
            exit(60_100, Some(0), None),
        ]);
        assert!(v.repeated_stops.is_empty(), "{:?}", v.repeated_stops);
    }

    #[test]
    fn repeats_are_bounded_and_the_excess_counted() {
        let mut events: Vec<Event> =
            (0..20).map(|i| sig(1000 + i * 1000, 15, SignalResult::Ignored)).collect();
        events.push(exit(30_000, Some(0), None));
        let (out, c) = run(&events);
        assert_eq!(out[0].repeated_stops.len(), MAX_REPEATED_STOPS);
        assert_eq!(c.stats.repeats_dropped, 19 - MAX_REPEATED_STOPS as u64);
    }

    #[test]
    fn a_sigkill_unanswered_is_stuck_once_and_its_exit_still_makes_the_record() {
        let mut c = Correlator::new();
        c.ingest(&sig(1000, 15, SignalResult::Ignored));
        c.ingest(&sig(3000, 9, SignalResult::Delivered));
        assert!(c.stuck_due(3000 * MS + 10 * SEC - 1, 10 * SEC).is_empty());
        let due = c.stuck_due(3000 * MS + 10 * SEC, 10 * SEC);
        assert_eq!(due.len(), 1);
        let d = &due[0];
        assert_eq!((d.key, d.since_ns, d.exited), (KEY, 3000 * MS, false));
        assert_eq!(d.termination.outcome, Outcome::Stuck);
        assert!(!d.termination.exit_seen());
        assert_eq!(d.termination.term_to_exit_ns(), None);
        let seen = StuckSeen {
            since_ns: d.since_ns,
            reported_ns: 13_000 * MS,
            inspection: crate::stuck::inspect(&crate::stuck::Roots::default(), PID, None, false),
            released_ns: None,
            written: None,
        };
        c.note_stuck(KEY, seen.clone());
        assert!(c.stuck_due(60 * SEC, 10 * SEC).is_empty(), "reported once");
        assert_eq!(c.stuck_len(), 1);
        c.ingest(&exit(40_000, None, Some(9)));
        let out = c.drain_closed(41 * SEC);
        assert_eq!(out[0].outcome, Outcome::Killed);
        assert_eq!(out[0].stuck, Some(seen));
        assert_eq!(c.stuck_len(), 0);
    }

    #[test]
    fn an_exit_its_pid_namespace_holds_keeps_the_record_open_until_released() {
        let mut c = Correlator::new();
        c.ingest(&sig(1000, 9, SignalResult::Delivered));
        c.ingest(&exit(1001, None, Some(9)));
        let linger = 1001 * MS + CLOSE_LINGER_NS;
        c.hold_exited(linger, |_| true);
        assert!(c.drain_closed(linger).is_empty(), "held");
        let due = c.stuck_due(1000 * MS + 10 * SEC, 10 * SEC);
        assert_eq!(due.len(), 1);
        assert!(due[0].exited);
        assert_eq!(due[0].termination.exit.at_ns, 1001 * MS, "the exit the kernel reported");
        let inspection = crate::stuck::inspect(&crate::stuck::Roots::default(), PID, None, true);
        c.note_stuck(
            KEY,
            StuckSeen {
                since_ns: 1000 * MS,
                reported_ns: 11 * SEC,
                inspection,
                released_ns: None,
                written: None,
            },
        );
        // The runtime reaps it and removes the cgroup: released at that time, closed.
        c.ingest(&rmdir(15_000, CG));
        let out = c.drain_closed(16 * SEC);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].outcome, Outcome::KilledWithoutStopSignal);
        assert_eq!(out[0].exit.at_ns, 1001 * MS);
        assert_eq!(out[0].stuck.as_ref().unwrap().released_ns, Some(15 * SEC));
        // Not held (reaped at once, the usual case): closes after the linger.
        let mut c = Correlator::new();
        c.ingest(&sig(1000, 9, SignalResult::Delivered));
        c.ingest(&exit(1001, None, Some(9)));
        c.hold_exited(linger, |_| false);
        assert_eq!(c.drain_closed(linger).len(), 1);
    }
}
