//! preStop as observed, in one room: the exec sessions a runtime starts into a container
//! (kept by pid until they end), which of them was the hook, what the stop window says when
//! the hook left no process (HTTP and sleep hooks), and the journal's `prestop` field. The
//! kubelet rules it is all judged by are [`crate::kubelet`]'s.
//!
//! An exec hook: kubelet runs it through the CRI's ExecSync; the runtime's exec joins the
//! container's cgroup and execs the command, which the kernel side reports as an exec session
//! (observer-ebpf `probes/exec.rs`). When a termination closes, the sessions of its cgroup
//! that were running at the stop signal, or ended at most [`PRESTOP_END_SLACK_NS`] before it,
//! are its candidates ([`ExecSessions::candidates`]); [`choose_exec_prestop`] picks the hook.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use crate::{
    clock::WallClock,
    events::{ExecSession, Proc},
    kubelet::MINIMUM_GRACE_PERIOD_SECONDS,
    metadata::{annotations::PreStopHandler, Identity},
};

const SEC: u64 = 1_000_000_000;

/// How far an observed stop window may be from whole seconds and still be read as kubelet's
/// G' (the runtime's timer, then `runc kill` being started, add tens of milliseconds).
pub const WINDOW_TOLERANCE_NS: u64 = 300_000_000;
/// An exec session that ended at most this long before the stop signal is the preStop hook
/// kubelet was waiting for (it calls StopContainer as soon as the hook returns).
pub const PRESTOP_END_SLACK_NS: u64 = 500_000_000;
/// How long an ended exec session is kept for the termination it may be the preStop of (the
/// record closes `correlate::CLOSE_LINGER_NS` after PID 1's exit; the session can end after that exit).
pub const SESSION_LINGER_NS: u64 = 10 * SEC;
/// How far short of the grace period G the stop signal may come after a confirmed exec hook's
/// start and still be kubelet giving up on it. kubelet starts the hook with no timeout of its
/// own (`RunInContainer(..., 0)`, pkg/kubelet/lifecycle/handlers.go) and waits for it at most
/// G (`executePreStopHook`, pkg/kubelet/kuberuntime/kuberuntime_container.go), then stops the
/// container with the 2 s floor; the kernel sees the hook's exec after ExecSync's round trip
/// and the runtime's exec start (tens to hundreds of ms), and kubelet counts whole seconds.
pub const HOOK_TIMEOUT_TOLERANCE_NS: u64 = SEC;
/// Bound on exec sessions kept (running ones included); past it the oldest is evicted and
/// counted.
pub const MAX_SESSIONS: usize = 16_384;
/// Programs kept per session (its first and the distinct ones it exec'd after), as the kernel
/// caps what it reports (`observer_ebpf::MAX_SESSION_EXECS`): the list stays short and its
/// search per exec cheap; more are counted, not kept.
pub const MAX_SESSION_PROGRAMS: usize = observer_ebpf::MAX_SESSION_EXECS as usize;

/// An exec session into a container, as the kernel saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSeen {
    pub session: Proc,
    /// Who started it (the runtime).
    pub parent: Proc,
    pub started_ns: u64,
    /// When it exited; None while it runs (or when its exit was not seen by the close).
    pub ended_ns: Option<u64>,
    /// Every program it ran, in order (`session.comm` is the last): a runtime's exec can show
    /// its own re-exec (runc's `exe`) after the hook's program.
    pub comms: Vec<String>,
}

impl SessionSeen {
    /// Whether it was still running at `at_ns`.
    pub fn running_at(&self, at_ns: u64) -> bool {
        self.started_ns <= at_ns && self.ended_ns.is_none_or(|e| e > at_ns)
    }
}

/// Picks the preStop hook among a termination's candidates (latest start first): the first
/// whose program is the hook command's (its basename, as the kernel's comm keeps it) when the
/// command is known, else the latest started. A known command that matches none means the
/// hook left no session (or another exec was running): no preStop is made up.
pub fn choose_exec_prestop<'a>(
    candidates: &'a [SessionSeen],
    hook_command: Option<&[String]>,
) -> Option<&'a SessionSeen> {
    let Some(command) = hook_command.filter(|c| !c.is_empty()) else {
        return candidates.first();
    };
    // The session's comm is its program's name at its exec, or at a later exec of the same
    // process: `sh -c "sleep 5"` becomes `sleep` where the shell execs its last command
    // (busybox ash does). Any word of the command names the hook.
    let names: Vec<String> = command
        .iter()
        .flat_map(|arg| arg.split_whitespace())
        .map(|word| {
            let base = word.rsplit('/').next().unwrap_or(word);
            base.chars().take(observer_ebpf::TASK_COMM_LEN - 1).collect()
        })
        .collect();
    candidates.iter().find(|c| {
        names.contains(&c.session.comm) || c.comms.iter().any(|comm| names.contains(comm))
    })
}

/// The exec sessions into containers the kernel reported, by session pid, with their cgroup.
#[derive(Debug, Default)]
pub struct ExecSessions {
    by_pid: HashMap<u32, (u64, SessionSeen)>,
    /// `(started_ns, pid)` of every session kept, oldest first: who goes at [`MAX_SESSIONS`],
    /// found without a scan (an exec probe's sessions on every pod of a busy node arrive at a
    /// steady rate, each one an eviction once the map is full).
    by_start: BTreeSet<(u64, u32)>,
    /// Sessions evicted because [`MAX_SESSIONS`] were kept.
    pub evicted: u64,
    /// Programs of sessions not kept because a session had [`MAX_SESSION_PROGRAMS`].
    pub programs_dropped: u64,
}

impl ExecSessions {
    /// A session's exec (or a later exec of the same process).
    pub fn ingest(&mut self, e: &ExecSession) {
        if let Some((_, s)) = self.by_pid.get_mut(&e.session.pid) {
            // The same process exec'ing again (`sh -c` exec'ing its command): one session,
            // from its first exec, named by its last program.
            if s.ended_ns.is_none() {
                if e.ktime_ns >= s.started_ns {
                    s.session.comm = e.session.comm.clone();
                }
                if !s.comms.contains(&e.session.comm) {
                    if s.comms.len() < MAX_SESSION_PROGRAMS {
                        s.comms.push(e.session.comm.clone());
                    } else {
                        self.programs_dropped += 1;
                    }
                }
                if e.ktime_ns < s.started_ns {
                    self.by_start.remove(&(s.started_ns, e.session.pid));
                    s.started_ns = e.ktime_ns;
                    self.by_start.insert((s.started_ns, e.session.pid));
                }
                return;
            }
        }
        // A new session: one that ended with this pid is replaced, unless this exec is from
        // before that end (an exec read again: a straggler, or the programs' handover copy),
        // which starts nothing.
        if let Some((_, old)) = self.by_pid.get(&e.session.pid) {
            if old.ended_ns.is_some_and(|end| e.ktime_ns <= end) {
                return;
            }
        }
        if let Some((_, old)) = self.by_pid.remove(&e.session.pid) {
            self.by_start.remove(&(old.started_ns, e.session.pid));
        }
        if self.by_pid.len() >= MAX_SESSIONS {
            if let Some((_, pid)) = self.by_start.pop_first() {
                self.by_pid.remove(&pid);
                self.evicted += 1;
            }
        }
        let seen = SessionSeen {
            session: e.session.clone(),
            parent: e.parent.clone(),
            started_ns: e.ktime_ns,
            ended_ns: None,
            comms: vec![e.session.comm.clone()],
        };
        self.by_start.insert((seen.started_ns, e.session.pid));
        self.by_pid.insert(e.session.pid, (e.cgroup_id, seen));
    }

    /// `pid` exited at `at_ns`: true when it was a session (its end is kept).
    pub fn exited(&mut self, pid: u32, at_ns: u64) -> bool {
        let Some((_, s)) = self.by_pid.get_mut(&pid) else { return false };
        if at_ns >= s.started_ns {
            s.ended_ns = Some(s.ended_ns.map_or(at_ns, |e| e.min(at_ns)));
        }
        true
    }

    /// Forgets sessions that ended more than [`SESSION_LINGER_NS`] before `now_ns`.
    pub fn expire(&mut self, now_ns: u64) {
        let by_start = &mut self.by_start;
        self.by_pid.retain(|&pid, (_, s)| {
            let keep = s.ended_ns.is_none_or(|e| now_ns < e.saturating_add(SESSION_LINGER_NS));
            if !keep {
                by_start.remove(&(s.started_ns, pid));
            }
            keep
        });
    }

    /// Sessions kept.
    pub fn len(&self) -> usize {
        self.by_pid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_pid.is_empty()
    }

    /// The sessions of `cgroup_id` running at `stop_ns` or ended at most
    /// [`PRESTOP_END_SLACK_NS`] before it, latest start first.
    pub fn candidates(&self, cgroup_id: u64, stop_ns: u64) -> Vec<SessionSeen> {
        let mut out: Vec<SessionSeen> = self
            .by_pid
            .values()
            .filter(|(cg, s)| {
                *cg == cgroup_id
                    && s.started_ns <= stop_ns
                    && s.ended_ns.is_none_or(|e| e.saturating_add(PRESTOP_END_SLACK_NS) >= stop_ns)
            })
            .map(|(_, s)| s.clone())
            .collect();
        out.sort_by(|a, b| b.started_ns.cmp(&a.started_ns).then(a.session.pid.cmp(&b.session.pid)));
        out
    }
}

/// A preStop hook inferred from the stop window (HTTP and sleep hooks leave no process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InferredPreStop {
    /// What kubelet charged for the hook, G - G': whole seconds, a lower bound of its
    /// duration (kubelet truncates).
    pub charged_seconds: u64,
    /// G' was the 2 s floor while G was longer: the hook used up (nearly) all of the grace.
    pub overrun: bool,
}

/// Reads an observed stop window (stop signal -> SIGKILL, kernel clock) as kubelet's G'.
/// None when it is not within [`WINDOW_TOLERANCE_NS`] of whole seconds.
pub fn observed_window_seconds(window_ns: u64) -> Option<u64> {
    let secs = (window_ns + SEC / 2) / SEC;
    let diff = window_ns.abs_diff(secs * SEC);
    (diff <= WINDOW_TOLERANCE_NS).then_some(secs)
}

/// Infers a preStop hook from grace `grace` and the observed stop window. None whenever the
/// window does not show one: no SIGKILL (so no window), a window that is not whole seconds,
/// G' = G (no hook, or one shorter than 1 s: indistinguishable), or G <= 2 (the floor hides
/// everything). Never invents a hook.
pub fn infer_prestop(grace: u64, observed_window_ns: u64) -> Option<InferredPreStop> {
    let window = observed_window_seconds(observed_window_ns)?;
    if window >= grace || window < MINIMUM_GRACE_PERIOD_SECONDS {
        return None;
    }
    Some(InferredPreStop {
        charged_seconds: grace - window,
        overrun: window == MINIMUM_GRACE_PERIOD_SECONDS,
    })
}

/// Whether a confirmed exec preStop hook `s` overran: still running at the stop signal
/// (kubelet signals before the hook returns only once it stopped waiting for it) and shown to
/// have used the grace: with G known, the stop came at least G after the hook started (less
/// [`HOOK_TIMEOUT_TOLERANCE_NS`]); without it, the stop window was kubelet's 2 s floor (whole
/// seconds within [`WINDOW_TOLERANCE_NS`] of 2 s: a SIGKILL 15 ms after the stop signal is
/// someone's kill, no floor). False when nothing shows it: never a guess.
pub fn exec_prestop_overrun(
    s: &SessionSeen,
    stop_ns: u64,
    grace_period_seconds: Option<u64>,
    observed_window_ns: Option<u64>,
) -> bool {
    if !s.running_at(stop_ns) {
        return false;
    }
    match grace_period_seconds {
        Some(g) => {
            stop_ns.saturating_sub(s.started_ns).saturating_add(HOOK_TIMEOUT_TOLERANCE_NS)
                >= g.saturating_mul(SEC)
        }
        None => {
            observed_window_ns.and_then(observed_window_seconds)
                == Some(MINIMUM_GRACE_PERIOD_SECONDS)
        }
    }
}

/// The preStop hook as observed; `prestop` is null when none was seen or can be inferred.
///
/// - `kind: "exec"`: the hook, confirmed: metadata says it is an exec hook and this exec
///   session the runtime started into the container ran its command, running at the stop
///   signal or ended just before it. Times are its exec and exit (kernel clock); `overrun`
///   per [`exec_prestop_overrun`].
/// - `kind: "session"`: an exec session running at the stop signal (or ended just before it)
///   in a container whose hook metadata does not know (no annotations reached observer): a
///   `kubectl exec` shell, an exec probe or a runtime's helper as much as a hook. Reported as
///   what it is, with its times; `overrun` is always false and no preStop metric counts it.
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

/// What a closed termination says about its stop, as preStop reads it (built by
/// `correlate::Termination::stop_seen`; this module does not depend on the correlator).
#[derive(Debug, Clone, Copy)]
pub struct StopSeen<'a> {
    /// The stop signal (kernel clock), when one was sent.
    pub stop_ns: Option<u64>,
    /// Stop signal -> SIGKILL, when both were seen: the observed G'.
    pub window_ns: Option<u64>,
    /// The exec sessions running at the stop signal or ended just before it, latest first.
    pub candidates: &'a [SessionSeen],
}

impl PreStop {
    /// From the termination's exec sessions, else inferred from G and the stop window.
    /// `hook_command` is the preStopHandler's exec command when metadata knows it.
    /// Whether this is the container's preStop hook (confirmed or inferred), not an exec
    /// session that may be something else.
    pub fn is_hook(&self) -> bool {
        self.kind != "session"
    }

    pub fn observe(
        t: &StopSeen<'_>,
        grace_period_seconds: Option<u64>,
        hook_command: Option<&[String]>,
        clock: &WallClock,
    ) -> Option<Self> {
        let stop_ns = t.stop_ns?;
        let window = t.window_ns;
        if let Some(s) = choose_exec_prestop(t.candidates, hook_command) {
            // Only metadata confirms a session as the hook: its command, from kubelet's
            // preStopHandler annotation.
            let confirmed = hook_command.is_some_and(|c| !c.is_empty());
            return Some(Self {
                kind: if confirmed { "exec" } else { "session" },
                started_at: Some(clock.rfc3339(s.started_ns)),
                ended_at: s.ended_ns.map(|e| clock.rfc3339(e)),
                duration_seconds: s.ended_ns.map(|e| e.saturating_sub(s.started_ns) as f64 / 1e9),
                overrun: confirmed
                    && exec_prestop_overrun(s, stop_ns, grace_period_seconds, window),
                pid: Some(s.session.pid),
                comm: Some(s.session.comm.clone()),
            });
        }
        let inferred = infer_prestop(grace_period_seconds?, window?)?;
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

/// preStop as the kernel saw it, read against what kubelet was told to run. kubelet writes the
/// grace-period annotation beside the preStop one on every container, so a known grace with no
/// handler means there was no hook: nothing is inferred, and exec sessions at that moment
/// (`kubectl exec`, probes) are not taken for one. A known HTTP or sleep hook leaves no process:
/// only the inference from the stop window applies.
pub fn for_record(t: &StopSeen<'_>, id: &Identity, clock: &WallClock) -> Option<PreStop> {
    match &id.prestop_handler {
        None if id.grace_period_seconds.is_some() => None,
        None => PreStop::observe(t, id.grace_period_seconds, None, clock),
        Some(PreStopHandler::Exec { command }) => {
            PreStop::observe(t, id.grace_period_seconds, Some(command), clock)
        }
        Some(_) => {
            let no_exec = StopSeen { candidates: &[], ..*t };
            PreStop::observe(&no_exec, id.grace_period_seconds, None, clock)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{annotations::PreStopHandler, Identity};

    const MS: u64 = 1_000_000;

    #[test]
    fn a_session_re_execing_without_end_keeps_a_short_program_list() {
        let mut sessions = ExecSessions::default();
        let exec = |at_ms: u64, comm: &str| ExecSession {
            ktime_ns: at_ms * MS,
            session: Proc { pid: 20, comm: comm.into() },
            parent: Proc { pid: 10, comm: "runc".into() },
            cgroup_id: 7,
        };
        sessions.ingest(&exec(1, "sh"));
        for i in 0..1000 {
            // An exec probe's script exec'ing itself, and now and then something new.
            sessions.ingest(&exec(2 + i, "probe.sh"));
            if i % 50 == 0 {
                sessions.ingest(&exec(2 + i, &format!("step-{i}")));
            }
        }
        let s = &sessions.candidates(7, 5_000 * MS)[0];
        assert_eq!(s.comms.len(), MAX_SESSION_PROGRAMS);
        assert_eq!(s.comms[..2], ["sh".to_string(), "probe.sh".to_string()]);
        assert_eq!(sessions.programs_dropped, 20 + 2 - MAX_SESSION_PROGRAMS as u64);
        assert_eq!(s.session.comm, "probe.sh", "named by its last program still");
        assert_eq!(sessions.len(), 1);
    }

    #[test]
    fn a_full_map_evicts_the_oldest_session_and_its_order_stays_whole() {
        let mut sessions = ExecSessions::default();
        let exec = |pid: u32, at_ns: u64| ExecSession {
            ktime_ns: at_ns,
            session: Proc { pid, comm: "probe".into() },
            parent: Proc { pid: 1, comm: "runc".into() },
            cgroup_id: 7,
        };
        // Pids in no order of their starts; one re-exec reported out of order (earlier).
        for i in 0..MAX_SESSIONS as u32 {
            sessions.ingest(&exec(100_000 + (i * 7919) % MAX_SESSIONS as u32, 1_000 + i as u64));
        }
        sessions.ingest(&exec(100_000 + (5 * 7919) % MAX_SESSIONS as u32, 10));
        assert_eq!(sessions.len(), MAX_SESSIONS);
        sessions.ingest(&exec(1, 50_000));
        assert_eq!(sessions.evicted, 1);
        assert!(!sessions.by_pid.contains_key(&(100_000 + (5 * 7919) % MAX_SESSIONS as u32)));
        sessions.ingest(&exec(2, 50_001));
        assert!(!sessions.by_pid.contains_key(&100_000), "then the next oldest");
        // Ended and expired, a pid reused: both indexes agree throughout.
        sessions.exited(1, 60_000);
        sessions.expire(60_000 + SESSION_LINGER_NS);
        sessions.ingest(&exec(2, 70_000));
        assert_eq!(sessions.by_start.len(), sessions.by_pid.len());
        assert!(sessions
            .by_pid
            .iter()
            .all(|(p, (_, s))| sessions.by_start.contains(&(s.started_ns, *p))));
    }

    #[test]
    fn observed_windows_are_read_as_whole_seconds_or_not_at_all() {
        assert_eq!(observed_window_seconds(2_010 * MS), Some(2));
        assert_eq!(observed_window_seconds(1_950 * MS), Some(2));
        assert_eq!(observed_window_seconds(2_500 * MS), None);
        assert_eq!(observed_window_seconds(0), Some(0));
    }

    #[test]
    fn inference_needs_a_window_shorter_than_grace() {
        // G = 30, G' = 27: a hook charged 3 s.
        assert_eq!(
            infer_prestop(30, 27_020 * MS),
            Some(InferredPreStop { charged_seconds: 3, overrun: false })
        );
        // G' = 2 < G: the hook used the grace up.
        assert_eq!(
            infer_prestop(30, 2_005 * MS),
            Some(InferredPreStop { charged_seconds: 28, overrun: true })
        );
        // G' = G: no hook, or one under a second. Never invented.
        assert_eq!(infer_prestop(30, 30_001 * MS), None);
        // G <= 2: the floor hides everything.
        assert_eq!(infer_prestop(2, 2_001 * MS), None);
        assert_eq!(infer_prestop(0, 2_001 * MS), None);
        // Not whole seconds: someone else's SIGKILL.
        assert_eq!(infer_prestop(30, 12_500 * MS), None);
        // Longer than G: not kubelet's window.
        assert_eq!(infer_prestop(5, 9 * SEC), None);
    }

    #[test]
    fn an_exec_hook_overran_when_it_was_running_when_kubelet_stopped_waiting() {
        // Started at 70 s, still running at the stop signal at 100 s.
        let s = session(70, Some(102));
        // G = 30: kubelet waited the whole grace.
        assert!(exec_prestop_overrun(&s, 100 * SEC, Some(30), None));
        assert!(exec_prestop_overrun(&s, 100 * SEC, Some(30), Some(2 * SEC)));
        // G = 60: the stop came 30 s into a 60 s grace: not kubelet giving up on the hook.
        assert!(!exec_prestop_overrun(&s, 100 * SEC, Some(60), Some(2 * SEC)));
        // Ended before the stop signal: it returned, whatever it took.
        assert!(!exec_prestop_overrun(&session(70, Some(99)), 100 * SEC, Some(30), None));
        // G unknown: only kubelet's 2 s floor shows it.
        assert!(exec_prestop_overrun(&s, 100 * SEC, None, Some(2_003 * MS)));
        assert!(!exec_prestop_overrun(&s, 100 * SEC, None, None), "no window: not shown");
        assert!(!exec_prestop_overrun(&s, 100 * SEC, None, Some(25 * SEC)), "not the floor");
        // A SIGKILL 15 ms after the stop signal is someone's kill, not the floor.
        assert!(!exec_prestop_overrun(&s, 100 * SEC, None, Some(15 * MS)));
        assert!(!exec_prestop_overrun(&s, 100 * SEC, None, Some(1_200 * MS)));
    }

    #[test]
    fn without_hook_metadata_a_session_at_the_stop_is_a_session_never_an_overrun() {
        let clock = WallClock::measure();
        let sessions = [session(99, None)];
        // Stop signal and SIGKILL 15 ms apart by hand, no metadata: the 1,000 stops.
        let t = StopSeen { window_ns: Some(15 * MS), ..termination(None, &sessions) };
        let id = Identity::default();
        let p = for_record(&t, &id, &clock).unwrap();
        assert_eq!((p.kind, p.overrun, p.pid), ("session", false, Some(20)));
        assert!(!p.is_hook());
        // The 2 s floor does not make it one either.
        let t = termination(Some(2), &sessions);
        let p = for_record(&t, &id, &clock).unwrap();
        assert_eq!((p.kind, p.overrun), ("session", false));
        // A grace period known without a handler: no hook at all.
        let id = Identity { grace_period_seconds: Some(30), ..Identity::default() };
        assert_eq!(for_record(&t, &id, &clock), None);
        // With the exec handler known and its command run: the hook, and it overran.
        let hook = [SessionSeen { started_ns: 70 * SEC, ..session(70, None) }];
        let t = termination(Some(2), &hook);
        let id = Identity {
            grace_period_seconds: Some(30),
            prestop_handler: Some(PreStopHandler::Exec { command: vec!["sh".into()] }),
            ..Identity::default()
        };
        let p = for_record(&t, &id, &clock).unwrap();
        assert_eq!((p.kind, p.overrun), ("exec", true));
        assert!(p.is_hook());
    }

    /// A stop signal at 100 s and, `kill_after_s` later, SIGKILL.
    fn termination(kill_after_s: Option<u64>, sessions: &[SessionSeen]) -> StopSeen<'_> {
        StopSeen {
            stop_ns: Some(100 * SEC),
            window_ns: kill_after_s.map(|s| s * SEC),
            candidates: sessions,
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
        let sh = ["sh".to_string()];
        let sessions = [session(90, Some(99))];
        let t = termination(Some(20), &sessions);
        let p = PreStop::observe(&t, Some(30), Some(&sh), &clock).unwrap();
        assert_eq!((p.kind, p.overrun, p.pid), ("exec", false, Some(20)));
        assert_eq!(p.duration_seconds, Some(9.0));
        assert_eq!(p.started_at, Some(clock.rfc3339(90 * SEC)));
        // Unconfirmed (no command known): the same times, as a session.
        let p = PreStop::observe(&t, None, None, &clock).unwrap();
        assert_eq!((p.kind, p.overrun, p.duration_seconds), ("session", false, Some(9.0)));
        // Running at the stop signal 30 s after it started, G = 30: overrun.
        let sessions = [session(70, Some(102))];
        let t = termination(Some(2), &sessions);
        assert!(PreStop::observe(&t, Some(30), Some(&sh), &clock).unwrap().overrun);
        assert!(!PreStop::observe(&t, Some(30), None, &clock).unwrap().overrun);
    }

    #[test]
    fn without_a_session_the_hook_is_inferred_only_with_grace_and_a_window() {
        let clock = WallClock::measure();
        let t = termination(Some(2), &[]);
        let p = PreStop::observe(&t, Some(30), None, &clock).unwrap();
        assert_eq!((p.kind, p.overrun, p.duration_seconds), ("inferred", true, Some(28.0)));
        assert_eq!((p.started_at, p.pid), (None, None));
        assert_eq!(PreStop::observe(&t, None, None, &clock), None, "no G: nothing invented");
        let graceful = termination(None, &[]);
        assert_eq!(PreStop::observe(&graceful, Some(30), None, &clock), None, "no window");
        let full = termination(Some(30), &[]);
        assert_eq!(PreStop::observe(&full, Some(30), None, &clock), None, "G' = G");
        let sessions = [session(99, None)];
        let no_stop = StopSeen { stop_ns: None, ..termination(Some(2), &sessions) };
        assert_eq!(PreStop::observe(&no_stop, Some(30), None, &clock), None);
    }
}
