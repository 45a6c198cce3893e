//! The cgroup v2 hierarchy: where it is mounted (unified or hybrid), and the start-up walk that
//! learns the containers that existed before observer started.
//!
//! A cgroup's v2 id is its kernfs node id, which is the directory's inode number
//! (kernfs_gen_ino() -> `kn->id`; `bpf_get_current_cgroup_id()` returns the same value).

use std::{os::unix::fs::MetadataExt as _, path::PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no cgroup v2 hierarchy is mounted (looked for fstype cgroup2 in /proc/self/mountinfo)"
    )]
    NoV2,
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// How the node mounts cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupV2 {
    /// Mount point of the v2 hierarchy: /sys/fs/cgroup (unified) or /sys/fs/cgroup/unified (hybrid).
    pub mount: PathBuf,
    /// True when v1 controller hierarchies are mounted too.
    pub hybrid: bool,
}

impl CgroupV2 {
    pub fn discover() -> Result<Self, CgroupError> {
        let path = "/proc/self/mountinfo";
        let info = std::fs::read_to_string(path)
            .map_err(|source| CgroupError::Io { path: path.into(), source })?;
        Self::from_mountinfo(&info).ok_or(CgroupError::NoV2)
    }

    fn from_mountinfo(info: &str) -> Option<Self> {
        let mut v2 = None;
        let mut hybrid = false;
        for line in info.lines() {
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let Some(fstype) = right.split_whitespace().next() else { continue };
            let Some(mount) = left.split_whitespace().nth(4) else { continue };
            match fstype {
                "cgroup2" if v2.is_none() => v2 = Some(PathBuf::from(mount)),
                "cgroup" => hybrid = true,
                _ => {}
            }
        }
        v2.map(|mount| Self { mount, hybrid })
    }

    /// Absolute directory of a hierarchy-relative cgroup path (`/kubepods/...`).
    pub fn dir_of(&self, path: &str) -> PathBuf {
        self.mount.join(path.trim_start_matches('/'))
    }

    /// Every cgroup whose hierarchy-relative path starts with `prefix` as a string, the test
    /// the kernel's `cgroup_mkdir` probe makes (`/kubepods` matches systemd's
    /// `/kubepods.slice/...` as well as cgroupfs' `/kubepods/...`), as (id, path), parents
    /// before their children. Cgroups that vanish during the walk are skipped: containers come
    /// and go.
    pub fn walk(&self, prefix: &str) -> Result<Vec<(u64, String)>, CgroupError> {
        let prefix = prefix.trim_end_matches('/');
        // What can lead to a match: a path that is a prefix of `prefix` at a `/` boundary
        // (an ancestor of the matches) or one that starts with it.
        let leads = |rel: &str| {
            rel.starts_with(prefix)
                || (prefix.starts_with(rel)
                    && (rel.is_empty() || prefix.as_bytes().get(rel.len()) == Some(&b'/')))
        };
        let mut out = Vec::new();
        let mut stack = vec![(self.mount.clone(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let Ok(meta) = std::fs::metadata(&dir) else { continue };
            if rel.starts_with(prefix) && (!rel.is_empty() || prefix.is_empty()) {
                out.push((meta.ino(), if rel.is_empty() { "/".into() } else { rel.clone() }));
            }
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            let mut children: Vec<(PathBuf, String)> = entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| (e.path(), format!("{rel}/{}", e.file_name().to_string_lossy())))
                .filter(|(_, r)| leads(r))
                .collect();
            // Popped in name order: a stable walk.
            children.sort_by(|a, b| b.1.cmp(&a.1));
            stack.extend(children);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hybrid_and_unified_layouts() {
        let hybrid = "30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
            31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
            32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(
            CgroupV2::from_mountinfo(hybrid),
            Some(CgroupV2 { mount: "/sys/fs/cgroup/unified".into(), hybrid: true })
        );
        let unified = "31 30 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            CgroupV2::from_mountinfo(unified),
            Some(CgroupV2 { mount: "/sys/fs/cgroup".into(), hybrid: false })
        );
        assert_eq!(CgroupV2::from_mountinfo("32 30 0:28 / /x rw - cgroup cgroup rw\n"), None);
    }

    #[test]
    fn walks_the_real_hierarchy() {
        let v2 = CgroupV2::discover().expect("this machine mounts cgroup v2");
        let all = v2.walk("/").expect("walk");
        assert!(!all.is_empty());
        assert_eq!(all[0].1, "/");
        assert_eq!(all[0].0, std::fs::metadata(&v2.mount).unwrap().ino());
        assert!(v2.walk("/no/such/prefix").unwrap().is_empty());
    }

    #[test]
    fn walk_matches_the_prefix_as_the_kernel_does_parents_first() {
        let v2 = CgroupV2::discover().expect("this machine mounts cgroup v2");
        let top = format!("observer-walk-{}", std::process::id());
        let made = [
            format!("{top}/kubepods/besteffort/pod1"),
            format!("{top}/kubepods.slice/kubepods-pod1.slice/cri-containerd-x.scope"),
            format!("{top}/kubepodsX"),
            format!("{top}/kube"),
        ];
        for m in &made {
            std::fs::create_dir_all(v2.dir_of(m)).unwrap();
        }
        let got: Vec<String> =
            v2.walk(&format!("/{top}/kubepods")).unwrap().into_iter().map(|(_, p)| p).collect();
        let want: Vec<String> = [
            "/kubepods",
            "/kubepods/besteffort",
            "/kubepods/besteffort/pod1",
            "/kubepods.slice",
            "/kubepods.slice/kubepods-pod1.slice",
            "/kubepods.slice/kubepods-pod1.slice/cri-containerd-x.scope",
            "/kubepodsX",
        ]
        .iter()
        .map(|s| format!("/{top}{s}"))
        .collect();
        let mut dirs: Vec<PathBuf> = Vec::new();
        for m in &made {
            let mut d = v2.dir_of(m);
            while d != v2.mount {
                dirs.push(d.clone());
                d.pop();
            }
        }
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        dirs.dedup();
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
        assert_eq!(got, want);
    }
}
