//! A pod as kubelet lays it out on the node: its kubepods cgroups (cgroupfs driver) and its
//! log directories and links under kubelet's log root, which is how the daemon names it.

use std::path::{Path, PathBuf};

use crate::{cgroup_v2_root, hex64, remove_cgroup_everywhere, unique, uuid};

/// A pod as kubelet lays it out: a kubepods cgroup per container and, optionally, the log
/// directories that name it.
pub struct Pod {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's uid (unique to this test).
    pub uid: String,
    /// The QoS class that names its kubepods cgroup.
    pub qos: &'static str,
    log_root: PathBuf,
    dirs: Vec<PathBuf>,
}

impl Pod {
    /// `name` should look like a real pod name (e.g. "web-7d4b9c6f8-x2k9p").
    pub fn new(log_root: &Path, namespace: &str, name: &str) -> Self {
        let uid = uuid(&unique(name));
        let dir = log_root.join("pods").join(format!("{namespace}_{name}_{uid}"));
        std::fs::create_dir_all(&dir).expect("pod log dir");
        Self {
            namespace: namespace.into(),
            name: name.into(),
            uid,
            qos: "besteffort",
            log_root: log_root.into(),
            dirs: vec![dir],
        }
    }

    /// Hierarchy-relative cgroup path of the pod (cgroupfs driver).
    pub fn cgroup_parent(&self) -> String {
        format!("/kubepods/{}/pod{}", self.qos, self.uid)
    }

    /// Creates the container's v2 cgroup and its kubelet log entries; returns (id, cgroup dir).
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
        let cg =
            cgroup_v2_root().join(format!("{}/{id}", self.cgroup_parent().trim_start_matches('/')));
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
    }
}
