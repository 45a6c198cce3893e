//! The pod as a whole: when a pod's sandbox is gone (StopPodSandbox SIGKILLs its pause
//! container once kubelet has stopped every container), one pod-level record from its
//! containers' records: the first stop signal -> the last exit, the container that held the
//! pod up, the order the containers stopped in, and the kills.
//!
//! kubelet's order (kuberuntime_termination_order.go, `newTerminationOrdering`, KEP-753): the
//! main containers are stopped at once; each native sidecar (an init container with
//! restartPolicy Always: kubelet's `io.kubernetes.container.type` annotation says `init`, and
//! it was running when the pod stopped) waits for every main container and for the sidecars
//! declared after it, so sidecars get their stop signal after the main containers exited, in
//! reverse order. The declaration order is not on the node; sidecars start in it (kubelet starts
//! each once the one before has started), so their start order stands for it. Where that order
//! was broken the record says how.
//!
//! Pure: the pipeline feeds it closed terminations and the sandbox's end (kernel ns), and asks
//! for the pods done at a kernel time.

use std::collections::HashMap;

use serde::Serialize;

use crate::{
    clock::WallClock,
    correlate::{Outcome, Termination},
    kubelet::DEFAULT_GRACE_PERIOD_SECONDS,
    metadata::Identity,
    verdict::Verdict,
};

const SEC: u64 = 1_000_000_000;

/// Bound on pods followed (with a container record, waiting for their sandbox); past it the
/// oldest is dropped and counted.
pub const MAX_PODS: usize = 16_384;
/// A pod with no record for this long and no sandbox end is forgotten (its containers restart
/// and the pod lives on): counted, no record.
pub const POD_IDLE_NS: u64 = 3600 * SEC;
/// A container's termination belongs to the pod's end when its exit came at most this long,
/// plus the longest grace period of the pod's containers, before the sandbox's end: kubelet
/// stops every container within the grace period (preStop included) plus its 2 s floor; older
/// records are restarts of a pod that lived on.
pub const POD_TERMINATION_SLACK_NS: u64 = 10 * SEC;
/// Containers kept per pod (its latest, by exit) and listed in its record.
pub const MAX_CONTAINERS: usize = 64;

/// One container's part in the pod's end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PodContainer {
    pub container: Option<String>,
    pub container_id: Option<String>,
    /// `container`, `sidecar` (an init container running at the stop), `ephemeral`, or null
    /// when kubelet's annotation did not reach observer.
    pub role: Option<&'static str>,
    pub stop_signal_at: Option<String>,
    pub exit_at: Option<String>,
    /// Stop signal -> exit.
    pub seconds: Option<f64>,
    pub outcome: Outcome,
    pub verdict: Verdict,
    #[serde(skip)]
    start_ticks: u64,
    #[serde(skip)]
    stop_ns: Option<u64>,
    #[serde(skip)]
    exit_ns: u64,
    #[serde(skip)]
    grace: Option<u64>,
    #[serde(skip)]
    killed: bool,
}

/// The journal's pod-level record (`kind: "pod"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PodRecord {
    /// The last container's exit.
    pub ts: String,
    pub kind: &'static str,
    pub node: String,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub pod_uid: String,
    pub workload: Option<String>,
    /// `graceful` (no container needed SIGKILL) or `killed`.
    pub outcome: &'static str,
    pub first_stop_signal_at: Option<String>,
    pub last_exit_at: String,
    /// First stop signal -> last exit of its containers (the pod's termination as its
    /// containers lived it; the sandbox follows).
    pub termination_seconds: Option<f64>,
    /// The container that exited last: what the pod waited for.
    pub held_up_by: Option<String>,
    /// In the order they got their stop signal (those without one by their exit).
    pub containers: Vec<PodContainer>,
    /// Containers that needed SIGKILL.
    pub kills: u32,
    /// kubelet's sidecar order held (null: no sidecar, or roles unknown).
    pub order_kept: Option<bool>,
    /// How it was broken.
    pub order_broken: Option<Vec<String>>,
    pub sandbox_exit_at: String,
    /// `<boot id>:pod:<uid>`.
    pub record_id: String,
}

#[derive(Debug, Default)]
struct Pod {
    namespace: Option<String>,
    pod: Option<String>,
    workload: Option<String>,
    /// The latest record of each container (by id, else name).
    containers: HashMap<String, PodContainer>,
    last_ns: u64,
    /// The sandbox's exit.
    sandbox_ns: Option<u64>,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Pods {
    pods: HashMap<String, Pod>,
    /// Pods dropped: [`MAX_PODS`] reached, or idle past [`POD_IDLE_NS`].
    pub evicted: u64,
    pub forgotten: u64,
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

impl Pods {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// A container's closed termination (its record went out with `verdict`).
    pub fn container(
        &mut self,
        t: &Termination,
        id: &Identity,
        verdict: Verdict,
        clock: &WallClock,
    ) {
        let Some(uid) = id.pod_uid.clone() else { return };
        if t.outcome == Outcome::Stuck {
            return;
        }
        if !self.pods.contains_key(&uid) && self.pods.len() >= MAX_PODS {
            if let Some(oldest) =
                self.pods.iter().min_by_key(|(_, p)| p.last_ns).map(|(k, _)| k.clone())
            {
                self.pods.remove(&oldest);
                self.evicted += 1;
            }
        }
        let pod = self.pods.entry(uid).or_default();
        pod.namespace = pod.namespace.take().or_else(|| id.namespace.clone());
        pod.pod = pod.pod.take().or_else(|| id.pod.clone());
        pod.workload = pod.workload.take().or_else(|| id.workload.clone());
        pod.last_ns = pod.last_ns.max(t.exit.at_ns);
        let stop_ns = t.stop_signal.as_ref().map(|s| s.at_ns);
        let role = match id.spec_list.as_deref() {
            Some("init") => Some("sidecar"),
            Some("container") => Some("container"),
            Some("ephemeral") => Some("ephemeral"),
            _ => None,
        };
        let key = id.container_id.clone().or_else(|| id.container.clone()).unwrap_or_default();
        // A pod that lives on through many restarts keeps its latest containers only.
        if pod.containers.len() >= MAX_CONTAINERS && !pod.containers.contains_key(&key) {
            if let Some(oldest) =
                pod.containers.iter().min_by_key(|(_, c)| c.exit_ns).map(|(k, _)| k.clone())
            {
                pod.containers.remove(&oldest);
            }
        }
        pod.containers.insert(
            key,
            PodContainer {
                container: id.container.clone(),
                container_id: id.container_id.clone(),
                role,
                stop_signal_at: stop_ns.map(|s| clock.rfc3339(s)),
                exit_at: Some(clock.rfc3339(t.exit.at_ns)),
                seconds: stop_ns.map(|s| secs(t.exit.at_ns.saturating_sub(s))),
                outcome: t.outcome,
                verdict,
                start_ticks: t.start_ticks,
                stop_ns,
                exit_ns: t.exit.at_ns,
                grace: id.grace_period_seconds,
                killed: t.sigkill.is_some(),
            },
        );
    }

    /// The pod's sandbox went (its pause container's exit, kernel ns).
    pub fn sandbox_gone(&mut self, id: &Identity, at_ns: u64) {
        let Some(uid) = id.pod_uid.clone() else { return };
        let pod = self.pods.entry(uid).or_default();
        pod.namespace = pod.namespace.take().or_else(|| id.namespace.clone());
        pod.pod = pod.pod.take().or_else(|| id.pod.clone());
        pod.workload = pod.workload.take().or_else(|| id.workload.clone());
        pod.sandbox_ns = Some(at_ns);
        pod.last_ns = pod.last_ns.max(at_ns);
    }

    /// The pods whose sandbox went at least `linger_ns` before `now_ns` (their containers'
    /// records have had time to close), each as its record; forgets idle pods.
    pub fn drain(
        &mut self,
        now_ns: u64,
        linger_ns: u64,
        node: &str,
        clock: &WallClock,
    ) -> Vec<PodRecord> {
        let done: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| p.sandbox_ns.is_some_and(|s| now_ns >= s.saturating_add(linger_ns)))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for uid in done {
            let pod = self.pods.remove(&uid).expect("listed");
            out.extend(record(&uid, pod, node, clock));
        }
        let before = self.pods.len();
        self.pods.retain(|_, p| {
            p.sandbox_ns.is_some() || now_ns < p.last_ns.saturating_add(POD_IDLE_NS)
        });
        self.forgotten += (before - self.pods.len()) as u64;
        out
    }
}

/// The pod's record; None when none of its containers ended with it (a pod whose containers
/// had all exited on their own long before: nothing was stopped).
fn record(uid: &str, pod: Pod, node: &str, clock: &WallClock) -> Option<PodRecord> {
    let sandbox_ns = pod.sandbox_ns?;
    let longest_grace = pod
        .containers
        .values()
        .filter_map(|c| c.grace)
        .max()
        .unwrap_or(DEFAULT_GRACE_PERIOD_SECONDS);
    let window = longest_grace
        .saturating_add(crate::kubelet::MINIMUM_GRACE_PERIOD_SECONDS)
        .saturating_mul(SEC)
        .saturating_add(POD_TERMINATION_SLACK_NS);
    let mut containers: Vec<PodContainer> = pod
        .containers
        .into_values()
        .filter(|c| c.exit_ns.saturating_add(window) >= sandbox_ns)
        .collect();
    if containers.is_empty() {
        return None;
    }
    containers.sort_by_key(|c| (c.stop_ns.unwrap_or(c.exit_ns), c.exit_ns));
    containers.truncate(MAX_CONTAINERS);
    let first_stop = containers.iter().filter_map(|c| c.stop_ns).min();
    let last = containers.iter().max_by_key(|c| c.exit_ns).expect("not empty");
    let (last_exit, held_up_by) = (last.exit_ns, last.container.clone());
    let kills = containers.iter().filter(|c| c.killed).count() as u32;
    let (order_kept, order_broken) = sidecar_order(&containers);
    Some(PodRecord {
        ts: clock.rfc3339(last_exit),
        kind: "pod",
        node: node.to_string(),
        namespace: pod.namespace,
        pod: pod.pod,
        pod_uid: uid.to_string(),
        workload: pod.workload,
        outcome: if kills > 0 { "killed" } else { "graceful" },
        first_stop_signal_at: first_stop.map(|s| clock.rfc3339(s)),
        last_exit_at: clock.rfc3339(last_exit),
        termination_seconds: first_stop.map(|s| secs(last_exit.saturating_sub(s))),
        held_up_by,
        containers,
        kills,
        order_kept,
        order_broken,
        sandbox_exit_at: clock.rfc3339(sandbox_ns),
        record_id: format!("{}:pod:{uid}", crate::record::boot_id()),
    })
}

/// kubelet's sidecar order (see the module docs): every sidecar's stop signal after every main
/// container's exit, and sidecars stopped in reverse of their start. (None, None) when there is
/// no sidecar or a container's role is unknown.
pub fn sidecar_order(containers: &[PodContainer]) -> (Option<bool>, Option<Vec<String>>) {
    if containers.iter().any(|c| c.role.is_none()) {
        return (None, None);
    }
    let sidecars: Vec<&PodContainer> =
        containers.iter().filter(|c| c.role == Some("sidecar")).collect();
    if sidecars.is_empty() {
        return (None, None);
    }
    let name = |c: &PodContainer| c.container.clone().unwrap_or_else(|| "?".into());
    let mut broken = Vec::new();
    for s in &sidecars {
        let stop = s.stop_ns.unwrap_or(s.exit_ns);
        for m in containers.iter().filter(|c| c.role == Some("container")) {
            if stop < m.exit_ns {
                broken.push(format!(
                    "sidecar {} got its stop signal {:.3} s before main container {} exited",
                    name(s),
                    secs(m.exit_ns - stop),
                    name(m)
                ));
            }
        }
    }
    // Reverse start order: a sidecar started later stops earlier.
    for a in &sidecars {
        for b in &sidecars {
            let a_stop = a.stop_ns.unwrap_or(a.exit_ns);
            if a.start_ticks < b.start_ticks && a_stop < b.exit_ns {
                broken.push(format!(
                    "sidecar {} (started before {}) got its stop signal before {} exited",
                    name(a),
                    name(b),
                    name(b)
                ));
            }
        }
    }
    if broken.is_empty() {
        (Some(true), None)
    } else {
        (Some(false), Some(broken))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        correlate::{Exit, Kill, StopSignal},
        events::{Origin, Sender},
    };

    const MS: u64 = 1_000_000;

    fn runc() -> Sender {
        Sender { pid: 1, comm: "runc".into(), from: Origin::Host }
    }

    fn termination(start_ticks: u64, stop_ms: u64, exit_ms: u64, killed: bool) -> Termination {
        Termination {
            pid: start_ticks as u32,
            start_ticks,
            comm: "app".into(),
            cgroup_id: start_ticks,
            stop_signal: Some(StopSignal {
                sig: 15,
                at_ns: stop_ms * MS,
                sender: runc(),
                ignored: false,
                handler: None,
                disposition: None,
            }),
            repeated_stops: Vec::new(),
            sigkill: killed.then(|| Kill { at_ns: (exit_ms - 1) * MS, sender: runc() }),
            oom: false,
            exit: Exit { at_ns: exit_ms * MS, code: Some(0), signal: None },
            outcome: if killed { Outcome::Killed } else { Outcome::Graceful },
            prestop_candidates: Vec::new(),
            stuck: None,
            incomplete: Vec::new(),
            traffic: None,
        }
    }

    fn identity(name: &str, spec_list: &str) -> Identity {
        Identity {
            namespace: Some("shop".into()),
            pod: Some("web-7d4b9c6f8-x2k9p".into()),
            pod_uid: Some("uid-1".into()),
            workload: Some("web".into()),
            container: Some(name.into()),
            container_id: Some(format!("id-{name}")),
            grace_period_seconds: Some(30),
            spec_list: Some(spec_list.into()),
            ..Default::default()
        }
    }

    fn pod_of(parts: &[(&str, &str, u64, u64, u64, bool)]) -> PodRecord {
        let clock = WallClock::measure();
        let mut pods = Pods::new();
        for &(name, list, start, stop, exit, killed) in parts {
            pods.container(
                &termination(start, stop, exit, killed),
                &identity(name, list),
                Verdict::Kept,
                &clock,
            );
        }
        pods.sandbox_gone(&identity("pause", "container"), 40_000 * MS);
        assert!(pods.drain(40_000 * MS, SEC, "n", &clock).is_empty(), "lingers");
        let mut out = pods.drain(41_000 * MS, SEC, "n", &clock);
        assert_eq!(out.len(), 1);
        assert!(pods.is_empty());
        out.remove(0)
    }

    #[test]
    fn sidecars_stopped_after_the_main_containers_in_reverse_order_keep_the_order() {
        // app stops at 10 s and exits at 12 s; sidecars (proxy started before log) after it,
        // log first.
        let p = pod_of(&[
            ("app", "container", 300, 10_000, 12_000, false),
            ("proxy", "init", 100, 12_600, 13_000, false),
            ("log", "init", 200, 12_100, 12_500, false),
        ]);
        assert_eq!(p.order_kept, Some(true), "{:?}", p.order_broken);
        let names: Vec<_> = p.containers.iter().map(|c| c.container.clone().unwrap()).collect();
        assert_eq!(names, ["app", "log", "proxy"]);
        assert_eq!(p.held_up_by.as_deref(), Some("proxy"));
        assert_eq!(p.termination_seconds, Some(3.0));
        assert_eq!((p.kills, p.outcome), (0, "graceful"));
        assert_eq!(p.containers[1].role, Some("sidecar"));
        assert_eq!(p.kind, "pod");
        assert!(p.record_id.ends_with(":pod:uid-1"));
    }

    #[test]
    fn a_sidecar_stopped_with_the_main_container_breaks_the_order() {
        let p = pod_of(&[
            ("app", "container", 300, 10_000, 15_000, true),
            ("proxy", "init", 100, 10_000, 10_200, false),
        ]);
        assert_eq!(p.order_kept, Some(false));
        let why = p.order_broken.unwrap();
        assert_eq!(why.len(), 1);
        assert_eq!(
            why[0],
            "sidecar proxy got its stop signal 5.000 s before main container app exited"
        );
        assert_eq!((p.kills, p.outcome), (1, "killed"));
        assert_eq!(p.held_up_by.as_deref(), Some("app"));
    }

    #[test]
    fn sidecars_in_start_order_break_it_too() {
        let p = pod_of(&[
            ("app", "container", 300, 10_000, 11_000, false),
            ("proxy", "init", 100, 11_100, 11_200, false),
            ("log", "init", 200, 11_500, 11_600, false),
        ]);
        assert_eq!(p.order_kept, Some(false));
        assert!(p.order_broken.unwrap()[0].contains("sidecar proxy (started before log)"));
    }

    #[test]
    fn without_sidecars_or_roles_the_order_is_not_judged() {
        let p = pod_of(&[("app", "container", 300, 10_000, 11_000, false)]);
        assert_eq!((p.order_kept, p.order_broken), (None, None));
        let clock = WallClock::measure();
        let mut pods = Pods::new();
        let mut id = identity("app", "container");
        id.spec_list = None;
        pods.container(&termination(1, 10_000, 11_000, false), &id, Verdict::Kept, &clock);
        pods.sandbox_gone(&id, 12_000 * MS);
        let p = pods.drain(20_000 * MS, SEC, "n", &clock).remove(0);
        assert_eq!(p.order_kept, None);
        assert_eq!(p.containers[0].role, None);
    }

    #[test]
    fn old_restarts_are_not_part_of_the_pods_end_and_idle_pods_are_forgotten() {
        let clock = WallClock::measure();
        let mut pods = Pods::new();
        // A liveness kill an hour before the pod's deletion, of a container that then ran on
        // (its later instance has another id), and the deletion.
        let mut old = identity("app", "container");
        old.container_id = Some("old".into());
        pods.container(&termination(1, 1_000, 2_000, true), &old, Verdict::Kept, &clock);
        pods.container(
            &termination(2, 3_600_000, 3_601_000, false),
            &identity("app", "container"),
            Verdict::Kept,
            &clock,
        );
        pods.sandbox_gone(&identity("pause", "container"), 3_602_000 * MS);
        let p = pods.drain(3_700_000 * MS, SEC, "n", &clock).remove(0);
        assert_eq!(p.containers.len(), 1);
        assert_eq!(p.kills, 0);
        // A pod whose sandbox never goes is forgotten after an hour idle.
        let mut other = identity("app", "container");
        other.pod_uid = Some("uid-2".into());
        pods.container(&termination(3, 0, 1_000, false), &other, Verdict::Kept, &clock);
        assert!(pods.drain(1_000 * MS + POD_IDLE_NS, SEC, "n", &clock).is_empty());
        assert_eq!((pods.len(), pods.forgotten), (0, 1));
    }
}
