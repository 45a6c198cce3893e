//! The cgroup hierarchies of this host: where v2 is mounted, and removing a cgroup from every
//! hierarchy.

use std::{path::PathBuf, time::Duration};

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
