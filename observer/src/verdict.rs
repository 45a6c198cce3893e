//! Was the termination contract kept? Every record is judged against kubelet's stop sequence
//! ([`crate::kubelet`]): from the grace period G and the preStop hook the annotations name, the
//! observed hook, and the stop signal, SIGKILL and exit on the kernel clock, the stop window
//! (stop signal -> SIGKILL) kubelet's rules allow, and whether the runtime kept to it.
//!
//! - `kept`: the SIGKILL came inside the allowed window (or the exit came before it closed);
//! - `kill_late`: the container got longer than its grace: a stop retried after a kubelet or
//!   runtime restart (every re-issued StopContainer starts a fresh timer in containerd,
//!   internal/cri/server/container_stop.go; the total passes G: named `retried_stop` when the
//!   stop signal came again or kubelet or the runtime started between the stop signal and the
//!   SIGKILL ([`crate::node`]), else no cause), a preStop hook that outlived
//!   its budget (kubelet before 1.28 gave a second G after it, kubernetes#115817), or no SIGKILL
//!   at all while the container ran past the window;
//! - `kill_early`: the grace used was shorter than the pod's: `no_stop_signal` (SIGKILL alone:
//!   a StopContainer timeout of 0), `kubelet_floor` (a window of kubelet's 2 s floor: a hard
//!   eviction, a force delete, `--grace-period` of 0 to 2), or `shortened_grace` (another whole
//!   number of seconds: a soft eviction's maximum, a graceful node shutdown's share,
//!   `--grace-period=N`; the node cannot tell these apart, so `grace_used_seconds` says N and
//!   nothing more);
//! - `unknown`: an input is missing (`missing` names it): never a guess;
//! - `not_a_stop`: nobody stopped the container: the OOM killer chose its main process.
//!
//! Pure: the caller passes kernel nanoseconds in ([`Inputs`]); no clocks, no I/O.

use serde::Serialize;

use crate::{
    correlate::Outcome,
    kubelet::{self, MINIMUM_GRACE_PERIOD_SECONDS},
    metadata::{annotations::PreStopHandler, Identity},
    node::{
        graces::{NodeGraces, Rule},
        Component, Start,
    },
    prestop::{choose_exec_prestop, StopSeen, HOOK_TIMEOUT_TOLERANCE_NS, WINDOW_TOLERANCE_NS},
};

const SEC: u64 = 1_000_000_000;

/// How much later than the window allows a SIGKILL (or, without one, an exit) may come and
/// still be the runtime keeping it. containerd's timer fires, then its shim starts `runc kill`,
/// which signals: 10-60 ms on this machine; a second covers a loaded node's scheduling and stays
/// below a retried stop's delay (the retry comes after kubelet's or the runtime's restart,
/// seconds at least).
pub const KILL_LATE_TOLERANCE_NS: u64 = SEC;
/// How much earlier than the window allows a SIGKILL may come and still be the window: the
/// runtime's timer never fires early; this is the read of whole seconds off the kernel clock
/// ([`WINDOW_TOLERANCE_NS`]).
pub const KILL_EARLY_TOLERANCE_NS: u64 = WINDOW_TOLERANCE_NS;

/// The verdict on one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Kept,
    KillLate,
    KillEarly,
    Unknown,
    NotAStop,
}

impl Verdict {
    pub const ALL: [Verdict; 5] =
        [Self::Kept, Self::KillLate, Self::KillEarly, Self::Unknown, Self::NotAStop];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kept => "kept",
            Self::KillLate => "kill_late",
            Self::KillEarly => "kill_early",
            Self::Unknown => "unknown",
            Self::NotAStop => "not_a_stop",
        }
    }
}

/// Why the verdict is what it is, where the node's evidence says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The stop signal came again (a re-issued stop) and the SIGKILL followed the last one.
    RetriedStop,
    /// A confirmed exec preStop hook ran past G before the stop signal came.
    PrestopOutlivedBudget,
    /// SIGKILL without a stop signal: no grace at all.
    NoStopSignal,
    /// The window was kubelet's 2 s floor: G was 0 to 2 (hard eviction, force delete,
    /// `--grace-period` of 0 to 2).
    KubeletFloor,
    /// Another whole number of seconds, shorter than the pod's: soft eviction, node shutdown,
    /// `--grace-period=N`: the node cannot tell which.
    ShortenedGrace,
}

impl Cause {
    pub const ALL: [Cause; 5] = [
        Self::RetriedStop,
        Self::PrestopOutlivedBudget,
        Self::NoStopSignal,
        Self::KubeletFloor,
        Self::ShortenedGrace,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RetriedStop => "retried_stop",
            Self::PrestopOutlivedBudget => "prestop_outlived_budget",
            Self::NoStopSignal => "no_stop_signal",
            Self::KubeletFloor => "kubelet_floor",
            Self::ShortenedGrace => "shortened_grace",
        }
    }
}

/// The preStop hook as far as the metadata and the kernel tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// kubelet's annotations name none (with G known, kubelet writes both).
    None,
    /// A confirmed exec hook, its exec seen at this kernel time.
    Exec { started_ns: u64 },
    /// A hook whose time the kernel did not see (HTTP, sleep, or an exec hook with no session):
    /// it took between 0 and G.
    Unobserved,
    /// The metadata does not say.
    Unknown,
}

/// What is known of one termination, kernel nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs<'a> {
    pub outcome: Outcome,
    /// G as kubelet's annotations give it.
    pub grace_period_seconds: Option<u64>,
    pub hook: Hook,
    /// The first stop signal, and the later ones of the same number (re-issued stops).
    pub stop_ns: Option<u64>,
    pub repeated_stops_ns: Vec<u64>,
    pub kill_ns: Option<u64>,
    /// None when the exit was not seen (yet).
    pub exit_ns: Option<u64>,
    /// Starts of kubelet and the runtime the daemon saw ([`crate::node::Starts`]): any between
    /// the stop signal and the SIGKILL.
    pub restarts: &'a [Start],
    /// The graces kubelet's configuration on this node gives ([`crate::node::graces`]): what a
    /// `shortened_grace` is held against.
    pub graces: &'a NodeGraces,
}

/// For `shortened_grace`: which of kubelet's rules on this node gives the grace used, or
/// `unknown` with the reason (no rule gives it, more than one does), or `unread` (kubelet's
/// configuration could not be read, and why).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShortenedBy {
    /// `soft_eviction`, `node_shutdown`, `unknown` (kubelet's configuration read: no rule, or
    /// more than one, gives it) or `unread` (kubelet's configuration could not be read).
    pub rule: &'static str,
    /// The setting that gives it, or why none is named: for the SRE to check.
    pub evidence: String,
}

/// The grace kubelet gave the runtime, whole seconds, as kubelet's rules make a window of
/// `window` seconds from it with `hook` run before the stop at `stop_ns`: G' = window + the
/// hook's whole seconds (`kubelet::stop_window_seconds`); an exec hook's seconds are one of two
/// (its start is seen a little after kubelet's); a hook the kernel did not see leaves G'
/// unknown (not reached today: such a hook allows any window down to the floor, so a window
/// above the floor is never early).
fn graces_used(window: u64, hook: Hook, stop_ns: u64) -> Option<Vec<u64>> {
    match hook {
        Hook::None => Some(vec![window]),
        Hook::Exec { started_ns } => {
            let h = stop_ns.saturating_sub(started_ns) / SEC;
            Some(vec![window + h, window + h + 1])
        }
        Hook::Unobserved | Hook::Unknown => None,
    }
}

/// Which of kubelet's rules gives `window` (see [`ShortenedBy`]).
fn shortened_by(window: u64, hook: Hook, stop_ns: u64, graces: &NodeGraces) -> ShortenedBy {
    let unknown = |evidence: String| ShortenedBy { rule: "unknown", evidence };
    let from = match graces {
        NodeGraces::Unknown(why) | NodeGraces::Starting(why) => {
            return ShortenedBy { rule: "unread", evidence: why.clone() };
        }
        NodeGraces::Read { from, .. } => from,
    };
    let Some(used) = graces_used(window, hook, stop_ns) else {
        return unknown(
            "a preStop hook ran whose time the kernel did not see: the grace \
            kubelet gave is not known"
                .into(),
        );
    };
    let mut giving: Vec<_> = used.iter().flat_map(|g| graces.giving(*g)).collect();
    giving.dedup();
    let rules: std::collections::BTreeSet<Rule> = giving.iter().map(|g| g.rule).collect();
    let settings = giving.iter().map(|g| g.setting.as_str()).collect::<Vec<_>>().join("; ");
    let seconds = used.iter().map(|g| format!("{g} s")).collect::<Vec<_>>().join(" or ");
    match rules.len() {
        0 => unknown(format!(
            "no rule of kubelet's on this node gives {seconds} (read from {from}): the API's \
             grace (kubectl delete or drain --grace-period, an API eviction) or a probe's \
             terminationGracePeriodSeconds"
        )),
        1 => ShortenedBy {
            rule: giving[0].rule.as_str(),
            evidence: format!("{settings} (read from {from})"),
        },
        _ => unknown(format!("more than one of kubelet's rules gives {seconds}: {settings}")),
    }
}

/// A restart of kubelet or the runtime during the stop: the evidence of a re-issued stop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Restarted {
    pub component: Component,
    pub comm: String,
    pub pid: u32,
    pub after_stop_signal_seconds: f64,
}

/// The stop window (stop signal -> SIGKILL) kubelet's rules allow, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Window {
    pub min: u64,
    pub max: u64,
}

/// The journal's `contract`: the verdict's reasons.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contract {
    /// What kubelet's rules allow from the stop signal to the SIGKILL.
    pub stop_window_seconds: Option<Window>,
    /// Stop signal -> SIGKILL as seen (without a SIGKILL: stop signal -> exit).
    pub observed_seconds: Option<f64>,
    /// How far outside the window (positive: late, negative: early), 0 when kept.
    pub off_by_seconds: Option<f64>,
    pub cause: Option<Cause>,
    /// For `shortened_grace` and `kubelet_floor`: the grace the runtime was given, seconds.
    pub grace_used_seconds: Option<u64>,
    /// The inputs an `unknown` verdict lacked.
    pub missing: Option<Vec<&'static str>>,
    /// For `retried_stop`: kubelet or the runtime started between the stop signal and the
    /// SIGKILL (the stop signal need not come again: containerd sends it once per container).
    pub restarted: Option<Vec<Restarted>>,
    /// For `shortened_grace`: which of kubelet's rules gave the grace used.
    pub shortened_by: Option<ShortenedBy>,
}

/// The verdict and its reasons.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub contract: Contract,
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// The window kubelet's rules allow for grace `g` and `hook` seen before the stop at `stop_ns`.
pub fn allowed_window(g: u64, hook: Hook, stop_ns: u64) -> Option<Window> {
    let floor = |w: u64| w.max(MINIMUM_GRACE_PERIOD_SECONDS);
    match hook {
        Hook::None => {
            let w = kubelet::stop_window_seconds(g, None);
            Some(Window { min: w, max: w })
        }
        // kubelet started the hook a little before the kernel saw its exec (ExecSync's round
        // trip, the runtime's exec): its elapsed time is this one plus up to
        // HOOK_TIMEOUT_TOLERANCE_NS, so its whole-seconds charge is one of two.
        Hook::Exec { started_ns } => {
            let seen = stop_ns.saturating_sub(started_ns);
            let most = (seen + HOOK_TIMEOUT_TOLERANCE_NS) / SEC;
            let least = seen / SEC;
            Some(Window { min: floor(g.saturating_sub(most)), max: floor(g.saturating_sub(least)) })
        }
        Hook::Unobserved => Some(Window { min: MINIMUM_GRACE_PERIOD_SECONDS, max: floor(g) }),
        Hook::Unknown => None,
    }
}

/// The hook as the verdict judges it: none (kubelet's annotations name no hook beside a
/// known grace period), a confirmed exec hook with its start, a hook the kernel did not see run
/// (HTTP, sleep, or an exec hook with no session), or unknown (no metadata).
pub fn hook_of(t: &StopSeen<'_>, id: &Identity) -> Hook {
    match &id.prestop_handler {
        None if id.grace_period_seconds.is_some() => Hook::None,
        None => Hook::Unknown,
        Some(PreStopHandler::Exec { command }) => {
            match t.stop_ns.and(choose_exec_prestop(t.candidates, Some(command))) {
                Some(s) => Hook::Exec { started_ns: s.started_ns },
                None => Hook::Unobserved,
            }
        }
        Some(_) => Hook::Unobserved,
    }
}

fn unknown(missing: Vec<&'static str>, observed: Option<f64>) -> Judgement {
    Judgement {
        verdict: Verdict::Unknown,
        contract: Contract {
            stop_window_seconds: None,
            observed_seconds: observed,
            off_by_seconds: None,
            cause: None,
            grace_used_seconds: None,
            missing: Some(missing),
            restarted: None,
            shortened_by: None,
        },
    }
}

/// Judges one termination. See the module docs for the verdicts.
pub fn judge(i: &Inputs<'_>) -> Judgement {
    let observed = match (i.stop_ns, i.kill_ns, i.exit_ns) {
        (Some(s), Some(k), _) => Some(k.saturating_sub(s)),
        (Some(s), None, Some(x)) => Some(x.saturating_sub(s)),
        (None, Some(_), _) => Some(0),
        _ => None,
    };
    if i.outcome == Outcome::OomKilled {
        return Judgement {
            verdict: Verdict::NotAStop,
            contract: Contract {
                stop_window_seconds: None,
                observed_seconds: observed.map(secs),
                off_by_seconds: None,
                cause: None,
                grace_used_seconds: None,
                missing: None,
                restarted: None,
                shortened_by: None,
            },
        };
    }
    let mut missing = Vec::new();
    if i.grace_period_seconds.is_none() {
        missing.push("grace_period");
    }
    if i.hook == Hook::Unknown {
        missing.push("prestop");
    }
    if i.kill_ns.is_none() && i.exit_ns.is_none() {
        missing.push("exit");
    }
    let (Some(g), Some(observed_ns)) = (i.grace_period_seconds, observed) else {
        return unknown(missing, observed.map(secs));
    };
    // SIGKILL alone: the window was 0 whatever kubelet allowed.
    let stop_ns = i.stop_ns.or(i.kill_ns).unwrap_or(0);
    let Some(window) = allowed_window(g, i.hook, stop_ns) else {
        return unknown(missing, Some(secs(observed_ns)));
    };
    if !missing.is_empty() {
        return unknown(missing, Some(secs(observed_ns)));
    }
    let mut contract = Contract {
        stop_window_seconds: Some(window),
        observed_seconds: Some(secs(observed_ns)),
        off_by_seconds: Some(0.0),
        cause: None,
        grace_used_seconds: None,
        missing: None,
        restarted: None,
        shortened_by: None,
    };
    // A confirmed hook that kubelet waited for past G: the stop signal itself was late.
    if let (Hook::Exec { started_ns }, Some(stop)) = (i.hook, i.stop_ns) {
        let waited = stop.saturating_sub(started_ns);
        let budget = g.saturating_mul(SEC);
        if waited > budget + HOOK_TIMEOUT_TOLERANCE_NS + KILL_LATE_TOLERANCE_NS {
            contract.off_by_seconds = Some(secs(waited - budget));
            contract.cause = Some(Cause::PrestopOutlivedBudget);
            return Judgement { verdict: Verdict::KillLate, contract };
        }
    }
    let (min_ns, max_ns) = (window.min * SEC, window.max * SEC);
    if observed_ns > max_ns + KILL_LATE_TOLERANCE_NS {
        contract.off_by_seconds = Some(secs(observed_ns - max_ns));
        // The SIGKILL (or exit) inside the window counted from the last repeated stop: the
        // timer started again there.
        let last = i.repeated_stops_ns.iter().copied().max();
        let end = i.kill_ns.or(i.exit_ns);
        if let (Some(last), Some(end)) = (last, end) {
            if end.saturating_sub(last) <= max_ns + KILL_LATE_TOLERANCE_NS {
                contract.cause = Some(Cause::RetriedStop);
            }
        }
        // kubelet or the runtime started while the container was stopping: the stop was
        // re-issued by the new process whether or not the stop signal came again. A SIGKILL
        // that a re-issued stop's timer sent comes a window after the restart at the
        // earliest; one sooner was not that stop's.
        if let (Some(stop), Some(end)) = (i.stop_ns, end) {
            let earliest = |started: u64| match i.kill_ns {
                Some(_) => started + min_ns.saturating_sub(KILL_EARLY_TOLERANCE_NS),
                None => started,
            };
            let during: Vec<Restarted> = i
                .restarts
                .iter()
                .filter(|s| {
                    s.started_ns > stop && s.started_ns < end && end >= earliest(s.started_ns)
                })
                .map(|s| Restarted {
                    component: s.component,
                    comm: s.comm.clone(),
                    pid: s.pid,
                    after_stop_signal_seconds: secs(s.started_ns - stop),
                })
                .collect();
            if !during.is_empty() {
                contract.cause = Some(Cause::RetriedStop);
                contract.restarted = Some(during);
            }
        }
        return Judgement { verdict: Verdict::KillLate, contract };
    }
    if i.kill_ns.is_some() && observed_ns + KILL_EARLY_TOLERANCE_NS < min_ns {
        contract.off_by_seconds = Some(-secs(min_ns - observed_ns));
        if i.stop_ns.is_none() {
            contract.cause = Some(Cause::NoStopSignal);
            contract.grace_used_seconds = Some(0);
        } else if let Some(w) = crate::prestop::observed_window_seconds(observed_ns) {
            contract.grace_used_seconds = Some(w);
            if w <= MINIMUM_GRACE_PERIOD_SECONDS {
                contract.cause = Some(Cause::KubeletFloor);
            } else {
                contract.cause = Some(Cause::ShortenedGrace);
                let stop = i.stop_ns.unwrap_or_default();
                contract.shortened_by = Some(shortened_by(w, i.hook, stop, i.graces));
            }
        }
        return Judgement { verdict: Verdict::KillEarly, contract };
    }
    Judgement { verdict: Verdict::Kept, contract }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const T0: u64 = 1000 * SEC;

    fn inputs(g: Option<u64>, hook: Hook) -> Inputs<'static> {
        Inputs {
            outcome: Outcome::Killed,
            grace_period_seconds: g,
            hook,
            stop_ns: Some(T0),
            repeated_stops_ns: Vec::new(),
            kill_ns: None,
            exit_ns: None,
            restarts: &[],
            graces: &UNKNOWN,
        }
    }
    static UNKNOWN: NodeGraces = NodeGraces::Unknown(String::new());
    fn killed_after(mut i: Inputs<'static>, ms: u64) -> Inputs<'static> {
        i.kill_ns = Some(T0 + ms * MS);
        i.exit_ns = Some(T0 + ms * MS + MS);
        i
    }
    fn exited_after(mut i: Inputs<'static>, ms: u64) -> Inputs<'static> {
        i.outcome = Outcome::Graceful;
        i.exit_ns = Some(T0 + ms * MS);
        i
    }

    #[test]
    fn a_sigkill_at_the_grace_period_is_kept() {
        let j = judge(&killed_after(inputs(Some(30), Hook::None), 30_040));
        assert_eq!(j.verdict, Verdict::Kept);
        assert_eq!(j.contract.stop_window_seconds, Some(Window { min: 30, max: 30 }));
        assert_eq!(j.contract.off_by_seconds, Some(0.0));
        assert_eq!(j.contract.observed_seconds, Some(30.04));
        // A graceful exit inside the window too.
        assert_eq!(judge(&exited_after(inputs(Some(30), Hook::None), 250)).verdict, Verdict::Kept);
    }

    #[test]
    fn a_shortened_grace_names_the_kubelet_rule_that_gives_it_or_says_why_not() {
        use crate::node::graces::Grace;
        let grace = |rule, seconds, setting: &str| Grace { rule, seconds, setting: setting.into() };
        let graces = NodeGraces::Read {
            graces: vec![
                grace(Rule::SoftEviction, 5, "evictionMaxPodGracePeriod: 5"),
                grace(Rule::NodeShutdown, 20, "shutdownGracePeriod: 30s (regular pods get 20 s)"),
                grace(Rule::NodeShutdown, 10, "shutdownGracePeriod: 30s (critical pods get 10 s)"),
            ],
            from: "/var/lib/kubelet/config.yaml".into(),
        };
        let by = |i: Inputs<'_>| {
            let j = judge(&i);
            assert_eq!(
                (j.verdict, j.contract.cause),
                (Verdict::KillEarly, Some(Cause::ShortenedGrace))
            );
            j.contract.shortened_by.unwrap()
        };
        let soft =
            by(Inputs { graces: &graces, ..killed_after(inputs(Some(30), Hook::None), 5_020) });
        assert_eq!(soft.rule, "soft_eviction");
        assert!(soft.evidence.contains("evictionMaxPodGracePeriod: 5"), "{}", soft.evidence);
        assert!(soft.evidence.contains("/var/lib/kubelet/config.yaml"), "{}", soft.evidence);
        // A 4.2 s exec hook, then a 16 s window: kubelet gave 20 s (or 21): a node shutdown's.
        let hook = Hook::Exec { started_ns: T0 - 4_200 * MS };
        let shutdown =
            by(Inputs { graces: &graces, ..killed_after(inputs(Some(30), hook), 16_030) });
        assert_eq!(shutdown.rule, "node_shutdown");
        assert!(shutdown.evidence.contains("regular pods get 20 s"), "{}", shutdown.evidence);
        // 7 s: no rule of the node's gives it.
        let none =
            by(Inputs { graces: &graces, ..killed_after(inputs(Some(30), Hook::None), 7_010) });
        assert_eq!(none.rule, "unknown");
        assert!(
            none.evidence.starts_with("no rule of kubelet's on this node gives 7 s"),
            "{}",
            none.evidence
        );
        // Two rules give 10 s; and a configuration not read says why.
        let two = NodeGraces::Read {
            graces: vec![grace(Rule::SoftEviction, 10, "a"), grace(Rule::NodeShutdown, 10, "b")],
            from: "x".into(),
        };
        let both =
            by(Inputs { graces: &two, ..killed_after(inputs(Some(30), Hook::None), 10_010) });
        assert_eq!(both.rule, "unknown");
        assert!(both.evidence.contains("more than one"), "{}", both.evidence);
        let unread = NodeGraces::Unknown("kubelet's configuration: reading /c: denied".into());
        let u = by(Inputs { graces: &unread, ..killed_after(inputs(Some(30), Hook::None), 5_020) });
        assert_eq!(
            (u.rule, u.evidence.as_str()),
            ("unread", "kubelet's configuration: reading /c: denied")
        );
        // The floor is its own cause, with no rule to name.
        let j =
            judge(&Inputs { graces: &graces, ..killed_after(inputs(Some(30), Hook::None), 2_010) });
        assert_eq!((j.contract.cause, j.contract.shortened_by), (Some(Cause::KubeletFloor), None));
    }

    #[test]
    fn a_stop_container_timeout_shorter_than_the_grace_is_kill_early_with_the_grace_used() {
        let j = judge(&killed_after(inputs(Some(30), Hook::None), 5_020));
        assert_eq!(j.verdict, Verdict::KillEarly);
        assert_eq!(j.contract.cause, Some(Cause::ShortenedGrace));
        assert_eq!(j.contract.grace_used_seconds, Some(5));
        assert!((j.contract.off_by_seconds.unwrap() + 24.98).abs() < 1e-9, "{j:?}");
        let floor = judge(&killed_after(inputs(Some(30), Hook::None), 2_010));
        assert_eq!(floor.contract.cause, Some(Cause::KubeletFloor));
        // Not whole seconds: early, and no grace is named.
        let odd = judge(&killed_after(inputs(Some(30), Hook::None), 4_500));
        assert_eq!((odd.verdict, odd.contract.cause), (Verdict::KillEarly, None));
    }

    #[test]
    fn sigkill_alone_used_no_grace() {
        let mut i = killed_after(inputs(Some(30), Hook::None), 0);
        i.stop_ns = None;
        i.outcome = Outcome::KilledWithoutStopSignal;
        let j = judge(&i);
        assert_eq!(j.verdict, Verdict::KillEarly);
        assert_eq!(
            (j.contract.cause, j.contract.grace_used_seconds),
            (Some(Cause::NoStopSignal), Some(0))
        );
    }

    #[test]
    fn a_retried_stop_makes_the_kill_late_and_says_so() {
        // Stop at 0, re-issued at 6 s, SIGKILL 10 s after the retry: G = 10.
        let mut i = killed_after(inputs(Some(10), Hook::None), 16_030);
        i.repeated_stops_ns = vec![T0 + 6 * SEC];
        let j = judge(&i);
        assert_eq!(j.verdict, Verdict::KillLate);
        assert_eq!(j.contract.cause, Some(Cause::RetriedStop));
        assert!((j.contract.off_by_seconds.unwrap() - 6.03).abs() < 1e-9);
        // Without the repeated signal (a runtime that does not send it again) it is late with
        // no cause named.
        i.repeated_stops_ns.clear();
        let j = judge(&i);
        assert_eq!((j.verdict, j.contract.cause), (Verdict::KillLate, None));
        // An exit long past the window with no SIGKILL at all is late too.
        let j = judge(&exited_after(inputs(Some(10), Hook::None), 14_000));
        assert_eq!(j.verdict, Verdict::KillLate);
    }

    #[test]
    fn within_the_tolerances_is_kept() {
        let late = killed_after(inputs(Some(10), Hook::None), 10_000 + KILL_LATE_TOLERANCE_NS / MS);
        assert_eq!(judge(&late).verdict, Verdict::Kept);
        let early =
            killed_after(inputs(Some(10), Hook::None), 10_000 - KILL_EARLY_TOLERANCE_NS / MS);
        assert_eq!(judge(&early).verdict, Verdict::Kept);
    }

    #[test]
    fn an_exec_hook_is_charged_as_kubelet_charges_it() {
        // G = 30, hook exec seen 7.4 s before the stop: kubelet charged 7 or 8 s.
        let hook = Hook::Exec { started_ns: T0 - 7_400 * MS };
        assert_eq!(allowed_window(30, hook, T0), Some(Window { min: 22, max: 23 }));
        assert_eq!(judge(&killed_after(inputs(Some(30), hook), 22_010)).verdict, Verdict::Kept);
        assert_eq!(judge(&killed_after(inputs(Some(30), hook), 23_010)).verdict, Verdict::Kept);
        assert_eq!(judge(&killed_after(inputs(Some(30), hook), 30_000)).verdict, Verdict::KillLate);
        // A hook that used all of G: the 2 s floor.
        let hook = Hook::Exec { started_ns: T0 - 30_200 * MS };
        assert_eq!(allowed_window(30, hook, T0), Some(Window { min: 2, max: 2 }));
        assert_eq!(judge(&killed_after(inputs(Some(30), hook), 2_020)).verdict, Verdict::Kept);
    }

    #[test]
    fn a_hook_kubelet_waited_for_past_the_grace_is_kill_late() {
        // G = 10: the stop signal came 25 s after the hook started (kubelet before 1.28 gave
        // the hook a second G, kubernetes#115817).
        let hook = Hook::Exec { started_ns: T0 - 25 * SEC };
        let j = judge(&killed_after(inputs(Some(10), hook), 2_000));
        assert_eq!(j.verdict, Verdict::KillLate);
        assert_eq!(j.contract.cause, Some(Cause::PrestopOutlivedBudget));
        assert_eq!(j.contract.off_by_seconds, Some(15.0));
    }

    #[test]
    fn an_unobserved_hook_allows_any_window_from_the_floor_to_the_grace() {
        let i = |ms| killed_after(inputs(Some(30), Hook::Unobserved), ms);
        assert_eq!(judge(&i(2_010)).verdict, Verdict::Kept);
        assert_eq!(judge(&i(17_010)).verdict, Verdict::Kept);
        assert_eq!(judge(&i(30_010)).verdict, Verdict::Kept);
        assert_eq!(judge(&i(33_000)).verdict, Verdict::KillLate);
        assert_eq!(judge(&i(1_000)).verdict, Verdict::KillEarly);
    }

    #[test]
    fn a_missing_input_is_unknown_and_named() {
        let j = judge(&killed_after(inputs(None, Hook::Unknown), 15));
        assert_eq!(j.verdict, Verdict::Unknown);
        assert_eq!(j.contract.missing, Some(vec!["grace_period", "prestop"]));
        assert_eq!(j.contract.observed_seconds, Some(0.015));
        // A stop signal with neither SIGKILL nor exit seen: no window to judge.
        let j = judge(&inputs(Some(30), Hook::None));
        assert_eq!(j.contract.missing, Some(vec!["exit"]));
        // With a SIGKILL the kill is judged although the exit was never seen (a stuck process).
        let mut i = killed_after(inputs(Some(30), Hook::None), 30_010);
        i.exit_ns = None;
        i.outcome = Outcome::ExitNotObserved;
        assert_eq!(judge(&i).verdict, Verdict::Kept);
    }

    #[test]
    fn an_oom_kill_is_not_a_stop() {
        let mut i = killed_after(inputs(Some(30), Hook::None), 0);
        i.stop_ns = None;
        i.outcome = Outcome::OomKilled;
        assert_eq!(judge(&i).verdict, Verdict::NotAStop);
    }

    #[test]
    fn verdicts_are_spelt_as_serde_spells_them() {
        for v in Verdict::ALL {
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
        }
        for c in Cause::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }
    #[test]
    fn a_late_kill_after_a_kubelet_or_runtime_restart_is_a_retried_stop() {
        // kubelet restarted 2.5 s into a 4 s stop and stopped again: SIGKILL at 2.5 + 1 + 4 s.
        let i = killed_after(inputs(Some(4), Hook::None), 7_600);
        let late = judge(&i);
        assert_eq!((late.verdict, late.contract.cause), (Verdict::KillLate, None));
        let restarts = [
            Start::at(Component::Kubelet, "kubelet", 40, T0 - 600 * SEC),
            Start::at(Component::Kubelet, "kubelet", 77, T0 + 2_500 * MS),
            Start::at(Component::Runtime, "containerd", 9, T0 + 9_000 * MS),
        ];
        let j = judge(&Inputs { restarts: &restarts, ..i.clone() });
        assert_eq!((j.verdict, j.contract.cause), (Verdict::KillLate, Some(Cause::RetriedStop)));
        let r = j.contract.restarted.expect("the restart during the stop");
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(
            (r[0].component, r[0].pid, r[0].comm.as_str()),
            (Component::Kubelet, 77, "kubelet")
        );
        assert!((r[0].after_stop_signal_seconds - 2.5).abs() < 1e-9);
        assert!((j.contract.off_by_seconds.unwrap() - 3.6).abs() < 1e-9);
        // A restart less than a window before the SIGKILL cannot have issued the stop whose
        // timer sent it: no cause named.
        let soon = [Start::at(Component::Runtime, "containerd", 9, T0 + 5_000 * MS)];
        let j = judge(&Inputs { restarts: &soon, ..i.clone() });
        assert_eq!(
            (j.verdict, j.contract.cause, j.contract.restarted),
            (Verdict::KillLate, None, None)
        );
        // A restart during a stop that was kept changes nothing.
        let kept = killed_after(inputs(Some(4), Hook::None), 4_030);
        let restarts = [Start::at(Component::Runtime, "containerd", 9, T0 + SEC)];
        let j = judge(&Inputs { restarts: &restarts, ..kept });
        assert_eq!(
            (j.verdict, j.contract.cause, j.contract.restarted),
            (Verdict::Kept, None, None)
        );
    }
}
