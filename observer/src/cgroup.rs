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

    /// Every cgroup under `prefix` (itself included) as (id, hierarchy-relative path).
    /// Cgroups that vanish during the walk are skipped: containers come and go.
    pub fn walk(&self, prefix: &str) -> Result<Vec<(u64, String)>, CgroupError> {
        let root = self.dir_of(prefix);
        let mut out = Vec::new();
        if !root.is_dir() {
            return Ok(out);
        }
        let mut stack = vec![(root, prefix.trim_end_matches('/').to_string())];
        while let Some((dir, rel)) = stack.pop() {
            let Ok(meta) = std::fs::metadata(&dir) else { continue };
            out.push((meta.ino(), if rel.is_empty() { "/".into() } else { rel.clone() }));
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    stack.push((entry.path(), format!("{rel}/{name}")));
                }
            }
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
}
