//! kubelet's `killContainer` sequence (Kubernetes >= 1.28) as a pure state machine.
//!
//! The reference model of how a container is stopped: the daemon judges what it observed
//! against it (`crate::prestop` reads an observed stop window with these rules) and
//! `observer drill` carries it out ([`Engine`]). No clocks, no I/O: the caller passes kernel-monotonic nanoseconds in and acts
//! on the [`Action`]s that come out.
//!
//! The rules, from kubernetes/kubernetes pkg/kubelet/kuberuntime/kuberuntime_container.go
//! (`killContainer`, `executePreStopHook`, `setTerminationGracePeriod`) and
//! kuberuntime_manager.go (`minimumGracePeriodInSeconds`):
//! 1. grace G = the pod's deletion grace if set, else `terminationGracePeriodSeconds` (the API
//!    server defaults it to 30), else 2 ([`grace_period`]);
//! 2. the preStop hook runs only when G > 0, with G as its budget: kubelet waits for the hook
//!    or for G, whichever is first, truncates the elapsed time to whole seconds and subtracts
//!    it: G' = G - floor(elapsed). A timed-out hook is not cancelled;
//! 3. G' is raised to at least 2 s ([`MINIMUM_GRACE_PERIOD_SECONDS`]), so an overrun gives the
//!    stop signal at ~start + G and SIGKILL 2 s later ([`stop_window_seconds`]);
//! 4. the runtime sends the stop signal to PID 1, waits G', then SIGKILL. G = 0 (force) still
//!    yields the 2 s window on the node.

use std::time::Duration;

const SEC: u64 = 1_000_000_000;

/// `minimumGracePeriodInSeconds` in kuberuntime_manager.go.
pub const MINIMUM_GRACE_PERIOD_SECONDS: u64 = 2;
/// The API server's default `terminationGracePeriodSeconds`.
pub const DEFAULT_GRACE_PERIOD_SECONDS: u64 = 30;
/// Rule 1: the grace period kubelet uses, from the pod's deletion grace (when the pod is
/// being deleted with one) and its `terminationGracePeriodSeconds` (None when unset).
pub fn grace_period(deletion_grace: Option<u64>, spec_grace: Option<u64>) -> u64 {
    deletion_grace.or(spec_grace).unwrap_or(MINIMUM_GRACE_PERIOD_SECONDS)
}

/// Rule 2: what kubelet subtracts for a preStop hook that took `elapsed` (or that it gave up
/// on after `elapsed`): whole seconds, truncated (`int64(time.Since(start).Seconds())`).
pub fn prestop_charge_seconds(elapsed: Duration) -> u64 {
    elapsed.as_secs()
}

/// Rules 2 and 3: the stop window G' the runtime is given, for grace `grace` and a preStop
/// hook that ran for `prestop` (None: no hook, or G = 0 so none ran).
pub fn stop_window_seconds(grace: u64, prestop: Option<Duration>) -> u64 {
    let charged = prestop.map(prestop_charge_seconds).unwrap_or(0);
    grace.saturating_sub(charged).max(MINIMUM_GRACE_PERIOD_SECONDS)
}

/// Rule 2's condition: whether kubelet runs a preStop hook at all.
pub fn runs_prestop(grace: u64, has_hook: bool) -> bool {
    has_hook && grace > 0
}

/// What the container is to be stopped with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// G, already resolved by [`grace_period`].
    pub grace_period_seconds: u64,
    /// Whether the container has a preStop hook (exec, HTTP or sleep).
    pub has_prestop: bool,
}

/// Inputs, each at a kernel-monotonic time in ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// kubelet starts stopping the container.
    Start,
    /// The preStop hook returned.
    PreStopDone,
    /// PID 1 exited.
    Exited,
    /// A deadline ([`Engine::deadline`]) may have passed.
    Tick,
}

/// What the executor must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start the preStop hook; it has until `deadline_ns`.
    RunPreStop { deadline_ns: u64 },
    /// Send the stop signal to PID 1, with a stop window of `window_seconds` (G');
    /// SIGKILL follows at `kill_at_ns` unless PID 1 exits first. `prestop_timed_out`: kubelet
    /// stopped waiting for the hook (it keeps running).
    SendStopSignal { window_seconds: u64, kill_at_ns: u64, prestop_timed_out: bool },
    /// Send SIGKILL to PID 1.
    SendKill,
    /// Nothing yet: wait for an input or the deadline.
    Wait,
    /// PID 1 is gone: the sequence is over.
    Done,
}

/// Where the sequence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    PreStop { started_ns: u64, deadline_ns: u64 },
    Stopping { kill_at_ns: u64 },
    Killed,
    Exited,
}

/// The sequence, one transition per input. See the module docs for the rules.
#[derive(Debug, Clone)]
pub struct Engine {
    plan: Plan,
    phase: Phase,
}

impl Engine {
    pub fn new(plan: Plan) -> Self {
        Self { plan, phase: Phase::Running }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// When the executor must feed [`Input::Tick`] at the latest.
    pub fn deadline(&self) -> Option<u64> {
        match self.phase {
            Phase::PreStop { deadline_ns, .. } => Some(deadline_ns),
            Phase::Stopping { kill_at_ns } => Some(kill_at_ns),
            _ => None,
        }
    }

    pub fn step(&mut self, input: Input, now_ns: u64) -> Action {
        let grace = self.plan.grace_period_seconds;
        match (self.phase, input) {
            (Phase::Exited, _) => Action::Done,
            (_, Input::Exited) => {
                self.phase = Phase::Exited;
                Action::Done
            }
            (Phase::Running, Input::Start) => {
                if runs_prestop(grace, self.plan.has_prestop) {
                    let deadline_ns = now_ns.saturating_add(grace.saturating_mul(SEC));
                    self.phase = Phase::PreStop { started_ns: now_ns, deadline_ns };
                    Action::RunPreStop { deadline_ns }
                } else {
                    self.stop(now_ns, stop_window_seconds(grace, None), false)
                }
            }
            (Phase::PreStop { started_ns, deadline_ns }, Input::PreStopDone | Input::Tick) => {
                let timed_out = now_ns >= deadline_ns;
                if input == Input::Tick && !timed_out {
                    return Action::Wait;
                }
                let elapsed = Duration::from_nanos(now_ns.saturating_sub(started_ns));
                self.stop(now_ns, stop_window_seconds(grace, Some(elapsed)), timed_out)
            }
            (Phase::Stopping { kill_at_ns }, Input::Tick) if now_ns >= kill_at_ns => {
                self.phase = Phase::Killed;
                Action::SendKill
            }
            // A hook that returns after kubelet stopped waiting changes nothing; neither does
            // a second Start or an early tick.
            _ => Action::Wait,
        }
    }

    fn stop(&mut self, now_ns: u64, window_seconds: u64, prestop_timed_out: bool) -> Action {
        let kill_at_ns = now_ns.saturating_add(window_seconds * SEC);
        self.phase = Phase::Stopping { kill_at_ns };
        Action::SendStopSignal { window_seconds, kill_at_ns, prestop_timed_out }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn engine(grace: u64, has_prestop: bool) -> Engine {
        Engine::new(Plan { grace_period_seconds: grace, has_prestop })
    }

    #[test]
    fn grace_is_deletion_grace_then_spec_then_two() {
        assert_eq!(grace_period(Some(5), Some(30)), 5);
        assert_eq!(grace_period(Some(0), Some(30)), 0, "a forced delete");
        assert_eq!(grace_period(None, Some(45)), 45);
        assert_eq!(grace_period(None, None), 2);
    }

    #[test]
    fn prestop_time_is_truncated_to_whole_seconds() {
        assert_eq!(prestop_charge_seconds(Duration::from_millis(1999)), 1);
        assert_eq!(stop_window_seconds(30, Some(Duration::from_millis(1999))), 29);
        assert_eq!(stop_window_seconds(30, Some(Duration::from_millis(999))), 30);
        assert_eq!(stop_window_seconds(30, None), 30);
    }

    #[test]
    fn the_stop_window_never_drops_below_two_seconds() {
        assert_eq!(stop_window_seconds(3, Some(Duration::from_millis(2500))), 2);
        assert_eq!(stop_window_seconds(1, None), 2);
        assert_eq!(stop_window_seconds(10, Some(Duration::from_secs(60))), 2);
    }

    #[test]
    fn without_a_hook_the_stop_signal_goes_first_with_the_whole_grace() {
        let mut e = engine(30, false);
        assert_eq!(
            e.step(Input::Start, 0),
            Action::SendStopSignal {
                window_seconds: 30,
                kill_at_ns: 30 * SEC,
                prestop_timed_out: false
            }
        );
        assert_eq!(e.step(Input::Tick, 29 * SEC), Action::Wait);
        assert_eq!(e.step(Input::Tick, 30 * SEC), Action::SendKill);
        assert_eq!(e.step(Input::Exited, 30 * SEC + MS), Action::Done);
        assert_eq!(e.phase(), Phase::Exited);
    }

    #[test]
    fn a_hook_that_returns_is_charged_whole_seconds() {
        let mut e = engine(30, true);
        assert_eq!(e.step(Input::Start, 0), Action::RunPreStop { deadline_ns: 30 * SEC });
        assert_eq!(e.deadline(), Some(30 * SEC));
        assert_eq!(e.step(Input::Tick, 5 * SEC), Action::Wait);
        assert_eq!(
            e.step(Input::PreStopDone, 7_900 * MS),
            Action::SendStopSignal {
                window_seconds: 23,
                kill_at_ns: 7_900 * MS + 23 * SEC,
                prestop_timed_out: false
            }
        );
        assert_eq!(e.step(Input::Exited, 8 * SEC), Action::Done);
    }

    #[test]
    fn an_overrun_gives_the_stop_signal_at_grace_and_sigkill_two_seconds_later() {
        let mut e = engine(10, true);
        e.step(Input::Start, 0);
        assert_eq!(
            e.step(Input::Tick, 10 * SEC),
            Action::SendStopSignal {
                window_seconds: 2,
                kill_at_ns: 12 * SEC,
                prestop_timed_out: true
            }
        );
        // The hook is not cancelled; its late return changes nothing.
        assert_eq!(e.step(Input::PreStopDone, 11 * SEC), Action::Wait);
        assert_eq!(e.step(Input::Tick, 12 * SEC), Action::SendKill);
        assert_eq!(e.phase(), Phase::Killed);
        assert_eq!(e.step(Input::Exited, 12 * SEC + MS), Action::Done);
    }

    #[test]
    fn zero_grace_skips_the_hook_and_still_gives_two_seconds() {
        let mut e = engine(0, true);
        assert_eq!(
            e.step(Input::Start, 0),
            Action::SendStopSignal {
                window_seconds: 2,
                kill_at_ns: 2 * SEC,
                prestop_timed_out: false
            }
        );
        assert_eq!(e.step(Input::Tick, 2 * SEC), Action::SendKill);
    }

    #[test]
    fn pid1_dying_during_the_hook_ends_the_sequence() {
        let mut e = engine(30, true);
        e.step(Input::Start, 0);
        assert_eq!(e.step(Input::Exited, SEC), Action::Done);
        assert_eq!(e.step(Input::Tick, 31 * SEC), Action::Done);
        assert_eq!(e.deadline(), None);
    }
}
