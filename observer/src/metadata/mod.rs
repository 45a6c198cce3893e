//! Who a cgroup belongs to: namespace, pod, container, workload.
//!
//! One small interface for the rest of the daemon: [`Metadata::learn`] when a container cgroup
//! appears (the cgroup_mkdir probe, or the start-up walk), [`Metadata::identity`] when a record
//! closes, [`Metadata::forget`] when the cgroup is removed. Identity is resolved when the
//! container appears, because the runtime (and runc's cgroup) may be gone when it dies.
//!
//! Sources, merged per container, best first: kubelet's log layout (namespace, pod, container
//! names), then the cgroup path alone (pod uid, QoS class, container id; names null).
pub mod cgroup_path;
pub mod kubelet_logs;
pub mod workload;

use std::{
    collections::{HashMap, VecDeque},
    path::PathBuf,
};

use self::{
    cgroup_path::{CgroupKind, QosClass, Runtime},
    kubelet_logs::KubeletLogs,
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
    pub workload: Option<String>,
    pub runtime: Option<Runtime>,
    pub qos: Option<QosClass>,
    pub grace_period_seconds: Option<u64>,
}

/// Bound on remembered cgroups (containers alive plus recently removed).
pub const MAX_CGROUPS: usize = 65_536;
/// How many removed cgroups are kept for records that close after the rmdir (runc removes the
/// cgroup right after PID 1 dies, often before the exit record is read).
pub const MAX_REMOVED: usize = 4_096;

#[derive(Debug)]
struct Entry {
    identity: Identity,
    kind: CgroupKind,
}

/// See the module docs.
pub struct Metadata {
    logs: KubeletLogs,
    cgroups: HashMap<u64, Entry>,
    removed: VecDeque<u64>,
    /// Failures per source, for `observer_metadata_errors_total{source}`.
    pub errors: HashMap<&'static str, u64>,
}

impl Metadata {
    pub fn new(kubelet_log_root: impl Into<PathBuf>) -> Self {
        Self {
            logs: KubeletLogs::new(kubelet_log_root),
            cgroups: HashMap::new(),
            removed: VecDeque::new(),
            errors: HashMap::new(),
        }
    }

    /// Number of cgroups remembered.
    pub fn len(&self) -> usize {
        self.cgroups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cgroups.is_empty()
    }

    /// A cgroup appeared (or was found at start-up). Returns whether it is a container's.
    pub fn learn(&mut self, id: u64, path: &str) -> bool {
        let kind = match cgroup_path::parse(path) {
            Ok(kind) => kind,
            Err(cgroup_path::CgroupPathError::NotKubepods(_)) => return false,
            Err(e) => {
                log::debug!("cgroup {id} {path:?}: {e}");
                *self.errors.entry("cgroup_path").or_default() += 1;
                return false;
            }
        };
        let is_container = matches!(kind, CgroupKind::Container { .. });
        if !is_container {
            return false;
        }
        if self.cgroups.len() >= MAX_CGROUPS {
            // Forget the oldest removed one first; if none, refuse (counted).
            match self.removed.pop_front() {
                Some(old) => {
                    self.cgroups.remove(&old);
                }
                None => {
                    *self.errors.entry("capacity").or_default() += 1;
                    return false;
                }
            }
        }
        let mut identity = Identity { cgroup: path.to_string(), ..Default::default() };
        fill_from_path(&mut identity, &kind);
        fill_from_logs(&self.logs, &mut self.errors, &mut identity);
        self.cgroups.insert(id, Entry { identity, kind });
        true
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

    /// Identity of a container cgroup; names still missing are looked up again (kubelet may
    /// have created the log directory after the cgroup).
    pub fn identity(&mut self, id: u64) -> Option<Identity> {
        let entry = self.cgroups.get_mut(&id)?;
        if entry.identity.pod.is_none() || entry.identity.container.is_none() {
            fill_from_path(&mut entry.identity, &entry.kind);
            fill_from_logs(&self.logs, &mut self.errors, &mut entry.identity);
        }
        Some(entry.identity.clone())
    }
}

/// Names from kubelet's log layout; failures are counted under `kubelet_logs`.
fn fill_from_logs(
    logs: &KubeletLogs,
    errors: &mut HashMap<&'static str, u64>,
    identity: &mut Identity,
) {
    if let Some(uid) = identity.pod_uid.clone() {
        match logs.pod_by_uid(&uid) {
            Ok(Some(pod)) => {
                identity.workload = Some(workload::derive(&pod.pod).name);
                identity.namespace = Some(pod.namespace);
                identity.pod = Some(pod.pod);
            }
            Ok(None) => {}
            Err(e) => {
                log::debug!("kubelet log layout, pod {uid}: {e}");
                *errors.entry("kubelet_logs").or_default() += 1;
            }
        }
    }
    if let Some(id) = identity.container_id.clone() {
        match logs.container_by_id(&id) {
            Ok(Some(c)) => {
                identity.container = Some(c.container);
                if identity.pod.is_none() {
                    identity.workload = Some(workload::derive(&c.pod).name);
                    identity.pod = Some(c.pod);
                    identity.namespace = Some(c.namespace);
                }
            }
            Ok(None) => {}
            Err(e) => {
                log::debug!("kubelet log layout, container {id}: {e}");
                *errors.entry("kubelet_logs").or_default() += 1;
            }
        }
    }
}

fn fill_from_path(identity: &mut Identity, kind: &CgroupKind) {
    if let CgroupKind::Container { pod_uid, qos, container_id, runtime } = kind {
        identity.pod_uid.get_or_insert_with(|| pod_uid.clone());
        identity.container_id.get_or_insert_with(|| container_id.clone());
        identity.qos.get_or_insert(*qos);
        if *runtime != Runtime::Unknown {
            identity.runtime.get_or_insert(*runtime);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0f2c9a4e-1b7d-4c3e-9a51-2d8e7f6a5b4c";
    const CID: &str = "3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a";

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("observer-md-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn names_a_container_from_the_kubelet_log_layout() {
        let root = temp_dir("names");
        std::fs::create_dir_all(root.join(format!("pods/shop_web-7d4b9c6f8-x2k9p_{UID}/nginx")))
            .unwrap();
        let mut md = Metadata::new(&root);
        let path = format!("/kubepods/burstable/pod{UID}/{CID}");
        assert!(md.learn(7, &path));
        let id = md.identity(7).unwrap();
        assert_eq!(id.namespace.as_deref(), Some("shop"));
        assert_eq!(id.pod.as_deref(), Some("web-7d4b9c6f8-x2k9p"));
        assert_eq!(id.workload.as_deref(), Some("web"));
        assert_eq!(id.pod_uid.as_deref(), Some(UID));
        assert_eq!(id.container_id.as_deref(), Some(CID));
        assert_eq!(id.qos, Some(QosClass::Burstable));
        // No containers/ symlink: the container name stays unknown rather than guessed.
        assert_eq!(id.container, None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn ids_only_without_a_log_layout_and_nothing_for_non_containers() {
        let mut md = Metadata::new("/nonexistent-observer-log-root");
        assert!(md.learn(1, &format!("/kubepods/besteffort/pod{UID}/{CID}")));
        let id = md.identity(1).unwrap();
        assert_eq!((id.pod, id.namespace, id.workload), (None, None, None));
        assert_eq!(id.container_id.as_deref(), Some(CID));
        assert!(!md.learn(2, &format!("/kubepods/besteffort/pod{UID}")));
        assert!(!md.learn(3, "/system.slice/ssh.service"));
        assert!(!md.learn(4, "/kubepods/besteffort/pod{UID}/not-hex"));
        assert_eq!(md.errors.get("cgroup_path"), Some(&1));
        assert!(md.identity(2).is_none());
    }

    #[test]
    fn removed_cgroups_are_kept_for_closing_records_then_evicted() {
        let mut md = Metadata::new("/nonexistent-observer-log-root");
        let path = format!("/kubepods/besteffort/pod{UID}/{CID}");
        for id in 0..(MAX_REMOVED as u64 + 10) {
            assert!(md.learn(id, &path));
            md.forget(id);
        }
        assert_eq!(md.len(), MAX_REMOVED);
        assert!(md.identity(0).is_none());
        assert!(md.identity(MAX_REMOVED as u64 + 9).is_some());
    }
}
