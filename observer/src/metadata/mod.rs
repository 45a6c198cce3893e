//! Who a cgroup belongs to: namespace, pod, container, workload, grace period, preStop.
//!
//! One small interface for the rest of the daemon: [`Metadata::learn`] when a container cgroup
//! appears (the cgroup_mkdir probe, or the start-up walk) returns a [`resolver::Lookup`] for the
//! metadata task; [`Metadata::apply`] merges its answer; [`Metadata::identity`] when a record
//! closes; [`Metadata::forget`] when the cgroup is removed. Identity is resolved when the
//! container appears, because the runtime (and runc's cgroup) may be gone when it dies.
//!
//! Sources, merged per container, best first: the CRI runtime, the runtime's state files,
//! kubelet's log layout (all in [`resolver`], off the event path), then the cgroup path alone
//! (pod uid, QoS class, container id; names null), parsed here at once.
pub mod annotations;
pub mod cgroup_path;
pub mod cri;
pub mod kubelet_logs;
pub mod resolver;
pub mod state_files;
pub mod workload;

use std::collections::{HashMap, VecDeque};

use self::{
    annotations::PreStopHandler,
    cgroup_path::{CgroupKind, QosClass, Runtime},
    resolver::{Lookup, Resolved},
};

/// Everything known about a container; `None` is unknown, never guessed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub cgroup: String,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub pod_uid: Option<String>,
    pub container: Option<String>,
    pub container_id: Option<String>,
    /// The owning workload ([`workload::resolve`]): none for a pod that nothing names an owner
    /// of (a bare pod), so that metrics never carry a series per pod.
    pub workload: Option<String>,
    pub runtime: Option<Runtime>,
    pub qos: Option<QosClass>,
    pub image: Option<String>,
    /// "container" or "sandbox" (a pod's pause container), when a source says.
    pub container_type: Option<String>,
    /// kubelet's grace for this container: the pod's deletion grace period when set at
    /// creation, else terminationGracePeriodSeconds (from the CRI annotations).
    pub grace_period_seconds: Option<u64>,
    /// The preStop hook kubelet will run (the `preStopHandler` annotation).
    pub prestop_handler: Option<PreStopHandler>,
    /// The image's STOPSIGNAL, where the runtime records it (CRI-O).
    pub image_stop_signal: Option<String>,
    /// The pod spec list the container is in (kubelet's `io.kubernetes.container.type`):
    /// `init` (a native sidecar when it runs alongside the main containers), `container`,
    /// `ephemeral`.
    pub spec_list: Option<String>,
}

impl Identity {
    pub fn is_named(&self) -> bool {
        self.namespace.is_some() && self.pod.is_some() && self.container.is_some()
    }

    pub fn is_sandbox(&self) -> bool {
        self.container_type.as_deref() == Some("sandbox")
    }
}

/// Bound on remembered cgroups (containers alive plus recently removed).
pub const MAX_CGROUPS: usize = 65_536;
/// How many removed cgroups are kept for records that close after the rmdir (runc removes the
/// cgroup right after PID 1 dies, often before the exit record is read).
pub const MAX_REMOVED: usize = 4_096;

#[derive(Debug)]
struct Entry {
    identity: Identity,
    /// A lookup is out; records for this cgroup wait for it (bounded by the daemon).
    pending: bool,
    /// Looked up again at close because names were missing (done once).
    retried: bool,
}

/// See the module docs.
#[derive(Default)]
pub struct Metadata {
    cgroups: HashMap<u64, Entry>,
    removed: VecDeque<u64>,
    /// Failures per source, for `observer_metadata_errors_total{source}`.
    pub errors: HashMap<&'static str, u64>,
}

impl Metadata {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of cgroups remembered.
    pub fn len(&self) -> usize {
        self.cgroups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cgroups.is_empty()
    }

    /// A cgroup appeared (or was found at start-up). For a container's, remembers what the
    /// path says and returns the lookup to hand to the metadata task.
    pub fn learn(&mut self, id: u64, path: &str) -> Option<Lookup> {
        let kind = match cgroup_path::parse(path) {
            Ok(kind) => kind,
            Err(cgroup_path::CgroupPathError::NotKubepods(_)) => return None,
            Err(e) => {
                log::debug!("cgroup {id} {path:?}: {e}");
                *self.errors.entry("cgroup_path").or_default() += 1;
                return None;
            }
        };
        let CgroupKind::Container { pod_uid, qos, container_id, runtime } = kind else {
            return None;
        };
        if self.cgroups.len() >= MAX_CGROUPS && !self.cgroups.contains_key(&id) {
            // Forget the oldest removed one first; if none, refuse (counted).
            match self.removed.pop_front() {
                Some(old) => {
                    self.cgroups.remove(&old);
                }
                None => {
                    *self.errors.entry("capacity").or_default() += 1;
                    return None;
                }
            }
        }
        let identity = Identity {
            cgroup: path.to_string(),
            pod_uid: Some(pod_uid.clone()),
            container_id: Some(container_id.clone()),
            qos: Some(qos),
            runtime: Some(runtime).filter(|r| *r != Runtime::Unknown),
            ..Default::default()
        };
        self.cgroups.insert(id, Entry { identity, pending: true, retried: false });
        Some(Lookup { cgroup_id: id, container_id, pod_uid: Some(pod_uid) })
    }

    /// The metadata task's answer: fills what the path could not tell.
    pub fn apply(&mut self, r: Resolved) {
        for source in &r.errors {
            *self.errors.entry(source).or_default() += 1;
        }
        let Some(entry) = self.cgroups.get_mut(&r.cgroup_id) else { return };
        entry.pending = false;
        let id = &mut entry.identity;
        let f = r.facts;
        fn fill<T>(a: &mut Option<T>, b: Option<T>) {
            if a.is_none() {
                *a = b;
            }
        }
        fill(&mut id.namespace, f.namespace.clone());
        fill(&mut id.pod, f.pod.clone());
        fill(&mut id.container, f.container.clone());
        fill(&mut id.image, f.image.clone());
        fill(&mut id.container_type, f.container_type.clone());
        fill(&mut id.prestop_handler, f.prestop.clone());
        fill(&mut id.image_stop_signal, f.stop_signal.clone());
        fill(&mut id.spec_list, f.spec_list.clone());
        fill(&mut id.grace_period_seconds, f.grace_period_seconds().map(|g| g.max(0) as u64));
        // The runtime that answered for this container beats a guess from the path.
        if r.runtime.is_some() {
            id.runtime = r.runtime;
        }
        // The sandbox's labels first, the pod name's shape next; a bare pod name is none.
        if let (None, Some(pod)) = (&id.workload, &id.pod) {
            id.workload = workload::resolve(pod, f.workload.clone()).map(|w| w.name);
        }
        if id.pod_uid.is_none() {
            id.pod_uid = f.pod_uid;
        }
    }

    /// A lookup could not be handed to the metadata task (queue full): counted, and the
    /// record goes out with what the path says.
    pub fn lookup_dropped(&mut self, id: u64) {
        *self.errors.entry("queue").or_default() += 1;
        if let Some(e) = self.cgroups.get_mut(&id) {
            e.pending = false;
        }
    }

    /// Whether records for this cgroup should wait for a lookup in flight.
    pub fn is_pending(&self, id: u64) -> bool {
        self.cgroups.get(&id).is_some_and(|e| e.pending)
    }

    /// At close: when names are still missing (kubelet may have written its log directory,
    /// or the runtime may have come back, after the cgroup appeared), one more lookup.
    pub fn retry(&mut self, id: u64) -> Option<Lookup> {
        let e = self.cgroups.get_mut(&id)?;
        if e.pending || e.retried || e.identity.is_named() {
            return None;
        }
        e.retried = true;
        e.pending = true;
        Some(Lookup {
            cgroup_id: id,
            container_id: e.identity.container_id.clone()?,
            pod_uid: e.identity.pod_uid.clone(),
        })
    }

    /// The cgroup was removed: keep it a while for records still closing.
    pub fn forget(&mut self, id: u64) {
        if !self.cgroups.contains_key(&id) {
            return;
        }
        self.removed.push_back(id);
        while self.removed.len() > MAX_REMOVED {
            if let Some(old) = self.removed.pop_front() {
                self.cgroups.remove(&old);
            }
        }
    }

    /// Identity of a container cgroup.
    pub fn identity(&self, id: u64) -> Option<&Identity> {
        self.cgroups.get(&id).map(|e| &e.identity)
    }
}

#[cfg(test)]
mod tests {
    use super::{annotations::Facts, *};

    const UID: &str = "0f2c9a4e-1b7d-4c3e-9a51-2d8e7f6a5b4c";
    const CID: &str = "3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a";

    #[test]
    fn the_path_gives_ids_at_once_and_a_lookup_for_the_rest() {
        let mut md = Metadata::new();
        let lookup = md.learn(7, &format!("/kubepods/burstable/pod{UID}/{CID}")).unwrap();
        assert_eq!((lookup.cgroup_id, lookup.container_id.as_str()), (7, CID));
        assert!(md.is_pending(7));
        let id = md.identity(7).unwrap();
        assert_eq!(id.pod_uid.as_deref(), Some(UID));
        assert_eq!(id.qos, Some(QosClass::Burstable));
        assert_eq!((id.pod.as_ref(), id.runtime), (None, None));

        md.apply(Resolved {
            cgroup_id: 7,
            facts: Facts {
                namespace: Some("shop".into()),
                pod: Some("web-7d4b9c6f8-x2k9p".into()),
                container: Some("nginx".into()),
                termination_grace_period_seconds: Some(45),
                ..Default::default()
            },
            runtime: Some(Runtime::Containerd),
            sources: vec!["cri"],
            errors: vec!["annotations"],
        });
        assert!(!md.is_pending(7));
        let id = md.identity(7).unwrap();
        assert_eq!(id.workload.as_deref(), Some("web"));
        assert_eq!(id.grace_period_seconds, Some(45));
        assert_eq!(id.runtime, Some(Runtime::Containerd));
        assert_eq!(md.errors.get("annotations"), Some(&1));
        assert!(md.retry(7).is_none(), "named: no second lookup");
    }

    #[test]
    fn the_sandboxs_labels_name_the_workload_and_a_bare_pod_has_none() {
        let mut md = Metadata::new();
        let named = |pod: &str, workload| Facts {
            namespace: Some("ci".into()),
            pod: Some(pod.into()),
            container: Some("step".into()),
            workload,
            ..Default::default()
        };
        let tekton =
            workload::Workload { name: "build".into(), kind: workload::WorkloadKind::Tekton };
        for (id, facts) in [
            (1, named("build-run-x7k2p-compile-pod", Some(tekton))),
            (2, named("build-run-q8w2z-compile-pod", None)),
        ] {
            md.learn(id, &format!("/kubepods/besteffort/pod{UID}/{CID}")).unwrap();
            md.apply(Resolved { cgroup_id: id, facts, ..Default::default() });
        }
        assert_eq!(md.identity(1).unwrap().workload.as_deref(), Some("build"));
        let bare = md.identity(2).unwrap();
        assert_eq!(
            (bare.pod.as_deref(), bare.workload.as_deref()),
            (Some("build-run-q8w2z-compile-pod"), None)
        );
    }

    #[test]
    fn an_unnamed_container_is_looked_up_once_more_at_close() {
        let mut md = Metadata::new();
        md.learn(1, &format!("/kubepods/besteffort/pod{UID}/{CID}")).unwrap();
        md.apply(Resolved { cgroup_id: 1, ..Default::default() });
        let again = md.retry(1).unwrap();
        assert_eq!(again.container_id, CID);
        assert!(md.is_pending(1));
        md.apply(Resolved { cgroup_id: 1, ..Default::default() });
        assert!(md.retry(1).is_none());
    }

    #[test]
    fn nothing_for_non_containers_and_malformed_paths_are_counted() {
        let mut md = Metadata::new();
        assert!(md.learn(2, &format!("/kubepods/besteffort/pod{UID}")).is_none());
        assert!(md.learn(3, "/system.slice/ssh.service").is_none());
        assert!(md.learn(4, "/kubepods/besteffort/pod{UID}/not-hex").is_none());
        assert_eq!(md.errors.get("cgroup_path"), Some(&1));
        assert!(md.identity(2).is_none());
        // An answer for a cgroup we do not know is ignored.
        md.apply(Resolved { cgroup_id: 99, ..Default::default() });
        assert!(md.is_empty());
    }

    #[test]
    fn removed_cgroups_are_kept_for_closing_records_then_evicted() {
        let mut md = Metadata::new();
        let path = format!("/kubepods/besteffort/pod{UID}/{CID}");
        for id in 0..(MAX_REMOVED as u64 + 10) {
            assert!(md.learn(id, &path).is_some());
            md.forget(id);
        }
        assert_eq!(md.len(), MAX_REMOVED);
        assert!(md.identity(0).is_none());
        assert!(md.identity(MAX_REMOVED as u64 + 9).is_some());
    }
}
