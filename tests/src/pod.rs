//! A pod as kubelet lays it out on the node: its kubepods cgroups (cgroupfs or systemd driver,
//! any QoS class, under kubelet's `--cgroup-root`) and its log directories and links under
//! kubelet's log root, which is how the daemon names it.

use std::path::{Path, PathBuf};

use crate::{cgroup_v2_root, hex64, remove_cgroup_everywhere, unique, uuid};

/// kubelet's cgroup driver, which decides how pod and container cgroups are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `/kubepods/<qos>/pod<uid>/<id>`; guaranteed pods `/kubepods/pod<uid>/<id>`.
    Cgroupfs,
    /// `/kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_>.slice/
    /// cri-containerd-<id>.scope` (the uid's `-` written `_`); guaranteed pods
    /// `/kubepods.slice/kubepods-pod<uid_>.slice/…`. A `--cgroup-root` of `/kubelet` is
    /// folded into every slice name (`/kubelet.slice/kubelet-kubepods.slice/…`).
    Systemd,
}

/// A pod as kubelet lays it out: a kubepods cgroup per container and, optionally, the log
/// directories that name it.
pub struct Pod {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's uid (unique to this test).
    pub uid: String,
    /// The QoS class that names its kubepods cgroup: "besteffort", "burstable" or
    /// "guaranteed" (no QoS level in the path).
    pub qos: &'static str,
    /// kubelet's cgroup driver.
    pub layout: Layout,
    /// kubelet's `--cgroup-root` ("/" by default; e.g. "/kubelet" as kind runs it).
    pub kubelet_cgroup_root: String,
    log_root: PathBuf,
    dirs: Vec<PathBuf>,
}

impl Pod {
    /// `name` should look like a real pod name (e.g. "web-7d4b9c6f8-x2k9p"). A besteffort pod
    /// of the cgroupfs driver under kubelet's default cgroup root.
    pub fn new(log_root: &Path, namespace: &str, name: &str) -> Self {
        let uid = uuid(&unique(name));
        let dir = log_root.join("pods").join(format!("{namespace}_{name}_{uid}"));
        std::fs::create_dir_all(&dir).expect("pod log dir");
        Self {
            namespace: namespace.into(),
            name: name.into(),
            uid,
            qos: "besteffort",
            layout: Layout::Cgroupfs,
            kubelet_cgroup_root: "/".into(),
            log_root: log_root.into(),
            dirs: vec![dir],
        }
    }

    /// The same pod under `layout` (before any container is made).
    pub fn with_layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// The same pod of QoS class `qos` ("besteffort", "burstable", "guaranteed").
    pub fn with_qos(mut self, qos: &'static str) -> Self {
        assert!(["besteffort", "burstable", "guaranteed"].contains(&qos), "QoS class {qos}");
        self.qos = qos;
        self
    }

    /// The same pod under kubelet's `--cgroup-root` `root` (e.g. "/kubelet").
    pub fn with_kubelet_cgroup_root(mut self, root: &str) -> Self {
        assert!(root.starts_with('/'), "a cgroup root is absolute: {root}");
        self.kubelet_cgroup_root = root.into();
        self
    }

    /// The cgroup names kubelet composes, from its cgroup root down to the pod
    /// (`["kubelet", "kubepods", "besteffort", "pod<uid>"]`).
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .kubelet_cgroup_root
            .split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        names.push("kubepods".into());
        if self.qos != "guaranteed" {
            names.push(self.qos.into());
        }
        names.push(match self.layout {
            Layout::Cgroupfs => format!("pod{}", self.uid),
            Layout::Systemd => format!("pod{}", self.uid.replace('-', "_")),
        });
        names
    }

    /// Hierarchy-relative paths from the first level below the hierarchy root to the pod.
    fn levels(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut path = String::new();
        let mut slice = String::new();
        for name in self.names() {
            match self.layout {
                Layout::Cgroupfs => path.push_str(&format!("/{name}")),
                Layout::Systemd => {
                    // kubelet's ConvertCgroupNameToSystemd: each level's slice repeats its
                    // ancestors' names, `-` separated.
                    slice = if slice.is_empty() { name } else { format!("{slice}-{name}") };
                    path.push_str(&format!("/{slice}.slice"));
                }
            }
            out.push(path.clone());
        }
        out
    }

    /// Hierarchy-relative cgroup path of the pod.
    pub fn cgroup_parent(&self) -> String {
        self.levels().pop().expect("a pod level")
    }

    /// What the daemon's `--cgroup-root` is for this pod's kubelet: its cgroup root plus
    /// "kubepods" (`/kubepods` by default; `/kubelet.slice/kubelet-kubepods` for a systemd
    /// kubelet under `/kubelet`), a prefix of every container's cgroup path.
    pub fn daemon_cgroup_root(&self) -> String {
        let levels = self.levels();
        let kubepods = &levels[levels.len() - if self.qos == "guaranteed" { 2 } else { 3 }];
        kubepods.strip_suffix(".slice").unwrap_or(kubepods).to_string()
    }

    /// Hierarchy-relative cgroup path of the container `id` (as a runtime names it under
    /// this layout: the bare id, or containerd's `cri-containerd-<id>.scope`).
    pub fn container_cgroup(&self, id: &str) -> String {
        match self.layout {
            Layout::Cgroupfs => format!("{}/{id}", self.cgroup_parent()),
            Layout::Systemd => format!("{}/cri-containerd-{id}.scope", self.cgroup_parent()),
        }
    }

    /// Creates the container's kubelet log entries; returns (id, its v2 cgroup directory,
    /// which the caller or its runtime creates).
    pub fn container(&mut self, container: &str) -> (String, PathBuf) {
        let id = hex64(&unique(container));
        let pod_dir = self
            .log_root
            .join("pods")
            .join(format!("{}_{}_{}", self.namespace, self.name, self.uid));
        let cdir = pod_dir.join(container);
        std::fs::create_dir_all(&cdir).expect("container log dir");
        let containers = self.log_root.join("containers");
        std::fs::create_dir_all(&containers).expect("containers dir");
        let link =
            containers.join(format!("{}_{}_{container}-{id}.log", self.name, self.namespace));
        let _ = std::os::unix::fs::symlink(cdir.join("0.log"), &link);
        let cg = cgroup_v2_root().join(self.container_cgroup(&id).trim_start_matches('/'));
        self.dirs.push(link);
        (id, cg)
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_file(d);
            let _ = std::fs::remove_dir_all(d);
        }
        // Containers' cgroups are removed by their owners, which end first.
        remove_cgroup_everywhere(&self.cgroup_parent());
        // Levels above the pod under a cgroup root of the test's own (no other test uses it)
        // are the test's too, once empty; kubelet's default ones are shared between tests.
        if self.kubelet_cgroup_root != "/" {
            let mut roots = vec![cgroup_v2_root()];
            if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
                roots.extend(entries.flatten().map(|e| e.path()));
            }
            let levels = self.levels();
            for level in levels[..levels.len() - 1].iter().rev() {
                for root in &roots {
                    let _ = std::fs::remove_dir(root.join(level.trim_start_matches('/')));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(layout: Layout, qos: &'static str, root: &str) -> Pod {
        let dir = std::env::temp_dir().join(unique("observer-pod-unit-"));
        let mut p = Pod::new(&dir, "ns", "web-0")
            .with_layout(layout)
            .with_qos(qos)
            .with_kubelet_cgroup_root(root);
        p.uid = "0123abcd-0000-1111-2222-333344445555".into();
        let _ = std::fs::remove_dir_all(&dir);
        p.dirs.clear();
        p
    }

    #[test]
    fn paths_are_kubelets() {
        let u = "0123abcd-0000-1111-2222-333344445555";
        let u_ = "0123abcd_0000_1111_2222_333344445555";
        let cases = [
            (Layout::Cgroupfs, "besteffort", "/", format!("/kubepods/besteffort/pod{u}/ID"), "/kubepods"),
            (Layout::Cgroupfs, "guaranteed", "/", format!("/kubepods/pod{u}/ID"), "/kubepods"),
            (
                Layout::Systemd,
                "burstable",
                "/",
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u_}.slice/cri-containerd-ID.scope"),
                "/kubepods",
            ),
            (
                Layout::Systemd,
                "guaranteed",
                "/",
                format!("/kubepods.slice/kubepods-pod{u_}.slice/cri-containerd-ID.scope"),
                "/kubepods",
            ),
            (
                Layout::Systemd,
                "besteffort",
                "/kubelet",
                format!("/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{u_}.slice/cri-containerd-ID.scope"),
                "/kubelet.slice/kubelet-kubepods",
            ),
            (Layout::Cgroupfs, "burstable", "/kubelet", format!("/kubelet/kubepods/burstable/pod{u}/ID"), "/kubelet/kubepods"),
        ];
        for (layout, qos, root, want, daemon_root) in cases {
            let mut p = pod(layout, qos, root);
            assert_eq!(p.container_cgroup("ID"), want);
            assert_eq!(p.daemon_cgroup_root(), daemon_root);
            assert!(want.starts_with(&p.daemon_cgroup_root()));
            // Nothing was made: dropping must touch nothing of anyone's.
            p.kubelet_cgroup_root = "/".into();
            p.uid = unique("never-made");
        }
    }
}
