//! The cgroup hierarchies of this host: where v2 is mounted, removing a cgroup from every
//! hierarchy, and a memory limit on a container's cgroup (for OOM kills).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

/// Where the v2 hierarchy is mounted here (hybrid: /sys/fs/cgroup/unified).
pub fn cgroup_v2_root() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    for line in info.lines() {
        if let Some((left, right)) = line.split_once(" - ") {
            if right.starts_with("cgroup2 ") {
                return PathBuf::from(left.split_whitespace().nth(4).expect("mount point"));
            }
        }
    }
    panic!("no cgroup2 mount: these tests need cgroup v2 (unified or hybrid)");
}

/// Removes a (pod) cgroup in every hierarchy: v2, and the v1 controllers runc also uses (it
/// removes a container's directories but leaves the pod's).
pub fn remove_cgroup_everywhere(path: &str) {
    let rel = path.trim_start_matches('/');
    let mut roots = vec![cgroup_v2_root()];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(entries.flatten().map(|e| e.path()));
    }
    for root in roots {
        let dir = root.join(rel);
        // The runtime's own cleanup of the container's cgroups can lag its exit a little.
        let mut tries = 0;
        while dir.is_dir() && std::fs::remove_dir(&dir).is_err() && tries < 100 {
            std::thread::sleep(Duration::from_millis(10));
            tries += 1;
        }
        if dir.is_dir() {
            eprintln!("warning: could not remove {}", dir.display());
        }
    }
}

/// A memory limit on a container's cgroup `cg` (a v2 path): the v1 memory controller's
/// `memory.limit_in_bytes` on hybrid hosts, v2 `memory.max` on unified ones. Its v1 directory
/// (to join besides `cg`, see `NsInit::spawn_in`) is removed on drop.
pub struct MemoryLimit {
    /// The v1 memory cgroup, on hybrid hosts.
    pub v1: Option<PathBuf>,
}

impl MemoryLimit {
    pub fn new(cg: &Path, bytes: u64) -> Self {
        let rel = cg.strip_prefix(cgroup_v2_root()).expect("a v2 cgroup path");
        let v1 = PathBuf::from("/sys/fs/cgroup/memory");
        if v1.join("memory.limit_in_bytes").exists() {
            let dir = v1.join(rel);
            std::fs::create_dir_all(&dir).expect("v1 memory cgroup");
            std::fs::write(dir.join("memory.limit_in_bytes"), bytes.to_string()).unwrap();
            let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), bytes.to_string());
            return Self { v1: Some(dir) };
        }
        // Unified hierarchy: enable the memory controller down to the container.
        let mut dir = cgroup_v2_root();
        for part in rel.components() {
            let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+memory");
            dir = dir.join(part);
            std::fs::create_dir_all(&dir).unwrap();
        }
        std::fs::write(cg.join("memory.max"), bytes.to_string())
            .expect("a memory limit on this machine");
        Self { v1: None }
    }

    /// The cgroups to join besides the v2 one.
    pub fn extra(&self) -> Vec<&Path> {
        self.v1.iter().map(PathBuf::as_path).collect()
    }
}

impl Drop for MemoryLimit {
    /// After the processes in it ended.
    fn drop(&mut self) {
        if let Some(dir) = &self.v1 {
            let _ = std::fs::remove_dir(dir);
            let _ = std::fs::remove_dir(dir.parent().unwrap());
        }
    }
}

/// A PID 1 that doubles a string until the OOM killer takes it.
pub const MEMORY_HOG: &[&str] =
    &["busybox", "sh", "-c", "a=xxxxxxxxxxxxxxxx; while :; do a=\"$a$a\"; done"];
