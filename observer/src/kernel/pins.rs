//! Pins: the probes keep recording while no daemon runs.
//!
//! A DaemonSet's pod is replaced in place, OOM-killed, evicted, restarted by its liveness
//! probe; the terminations worth recording happen then. So the maps that carry state
//! (`EVENTS`, `PROCESSES`, `WATCHED_CGROUPS`, `COUNTERS`, `ENDED`, the prefilters) and the program links are pinned in
//! bpffs under `<pin dir>/<layout>/` (`/sys/fs/bpf/observer/<16 hex digits>/`): a pinned link
//! keeps its program attached after the daemon's descriptors close (kernel/bpf/syscall.c,
//! `bpf_link_put()` detaches on the last reference; a pin is one), and the next daemon opens
//! the same maps (aya `EbpfLoader::map_pin_path`) and reads the ring from where the last one
//! stopped (the consumer position lives in the ring's shared pages).
//!
//! `<layout>` is `observer_ebpf::LAYOUT`, a hash of every struct and size the two sides share:
//! - **Same layout** (a restart, or an upgrade that changed no layout): the maps are reused; the
//!   new programs are attached first, then each old link's pin is replaced by the new link's,
//!   which detaches the old program. For those microseconds both run on the same maps; their
//!   shared state (each process's de-duplication masks, the main process a cgroup has, an entry
//!   removed once at exit) makes the second copy of an event a counted duplicate, not a record.
//! - **Another layout** (an upgrade): fresh maps and programs in a directory of their own,
//!   attached before the old directory is removed; the events the old ring still held cannot be
//!   read by this build and are counted as lost (`observer_events_lost_total{stage="handover"}`),
//!   records and bytes.
//!
//! bpffs holds no regular files, so "one daemon per node" is an exclusive `flock(2)` on the pin
//! directory itself: a second `observer run` with the same pin directory is refused.
//! `observer cleanup` removes the pins (detaching every program) when the DaemonSet goes.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use observer_ebpf::{names, LAYOUT};

/// bpffs' `f_type` (include/uapi/linux/magic.h `BPF_FS_MAGIC`).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// Where bpffs is mounted on a node.
pub const BPFFS: &str = "/sys/fs/bpf";

/// The maps whose contents outlive a daemon.
pub const PINNED_MAPS: [&str; 11] = [
    names::EVENTS,
    names::PROCESSES,
    names::WATCHED_CGROUPS,
    names::COUNTERS,
    names::ENDED,
    names::FOLLOWED,
    names::WATCHED_SLOTS,
    names::NETNS,
    names::HOST_NET,
    names::NODE_V4,
    names::NODE_V6,
];

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{path} is not on a bpffs mount, and mounting bpffs at {BPFFS} failed: {source}")]
    NoBpffs {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another observer is running on this node (it holds the lock on {path}); one daemon per \
         node: stop it first, or give this one another --pin-dir and --journal"
    )]
    Locked { path: String },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PinError + 'a {
    move |source| PinError::Io { what, path: path.display().to_string(), source }
}

/// The pin directory of this build's layout, locked for this daemon.
#[derive(Debug)]
pub struct Pins {
    /// `--pin-dir`.
    pub root: PathBuf,
    /// `<root>/<layout>`.
    pub dir: PathBuf,
    /// Whether `dir` held pins when it was opened (a restart, not a first start).
    pub adopted: bool,
    /// Held for the daemon's life: `flock` on `root`.
    _lock: File,
}

/// This build's layout directory name.
pub fn layout_name() -> String {
    format!("{LAYOUT:016x}")
}

impl Pins {
    /// Opens (making it, and mounting bpffs at [`BPFFS`] where nothing is mounted) and locks
    /// `root`, and makes this layout's directory in it.
    pub fn open(root: &Path) -> Result<Self, PinError> {
        ensure_bpffs(root)?;
        // bpffs refuses a name with a dot (kernel/bpf/inode.c `bpf_lookup()`: the dot is
        // reserved for its own files, `maps.debug`): say so rather than EPERM.
        let new_names = root.ancestors().take_while(|p| !p.exists()).filter_map(|p| p.file_name());
        if let Some(bad) = new_names.map(|n| n.to_string_lossy()).find(|n| n.contains('.')) {
            return Err(PinError::Io {
                what: "cannot make",
                path: root.display().to_string(),
                source: std::io::Error::other(format!("bpffs refuses names with a dot ({bad:?})")),
            });
        }
        std::fs::create_dir_all(root).map_err(io("cannot make", root))?;
        let lock = lock(root)?;
        let dir = root.join(layout_name());
        let adopted = dir.join(names::EVENTS).exists();
        std::fs::create_dir_all(&dir).map_err(io("cannot make", &dir))?;
        Ok(Self { root: root.into(), dir, adopted, _lock: lock })
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn link(&self, program: &str) -> PathBuf {
        self.dir.join(format!("link_{program}"))
    }

    /// Marks the layout directory as read by a live daemon now (its mtime): what
    /// `observer check` reads to tell pins nobody reads from a daemon's.
    pub fn heartbeat(&self) {
        let now = std::time::SystemTime::now();
        if let Err(e) = File::open(&self.dir).and_then(|d| d.set_modified(now)) {
            log::debug!("heartbeat on {}: {e}", self.dir.display());
        }
    }

    /// Layout directories of other builds under the root (an upgrade's predecessor).
    pub fn others(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return Vec::new() };
        entries.flatten().map(|e| e.path()).filter(|p| p != &self.dir && p.is_dir()).collect()
    }
}

/// Takes the exclusive lock on `root`, or says who has it.
fn lock(root: &Path) -> Result<File, PinError> {
    let f = File::open(root).map_err(io("cannot open", root))?;
    // SAFETY: a valid descriptor; LOCK_NB never blocks.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            PinError::Locked { path: root.display().to_string() }
        } else {
            PinError::Io { what: "cannot lock", path: root.display().to_string(), source: e }
        });
    }
    Ok(f)
}

fn on_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: a NUL-terminated path and an out struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}

/// The nearest existing ancestor of `root` must be bpffs; where it is not and nothing is
/// mounted at [`BPFFS`], bpffs is mounted there (as tracefs is for the probes).
fn ensure_bpffs(root: &Path) -> Result<(), PinError> {
    let existing = root.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
    if on_bpffs(existing) {
        return Ok(());
    }
    let not_bpffs = |source| PinError::NoBpffs { path: root.display().to_string(), source };
    if !root.starts_with(BPFFS) || on_bpffs(Path::new(BPFFS)) {
        return Err(not_bpffs(std::io::Error::other("not bpffs")));
    }
    std::fs::create_dir_all(BPFFS).map_err(not_bpffs)?;
    let (src, target, fstype) = (c"bpffs", c"/sys/fs/bpf", c"bpf");
    // SAFETY: NUL-terminated strings; no data.
    let rc =
        unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(not_bpffs(std::io::Error::last_os_error()));
    }
    log::info!("mounted bpffs at {BPFFS}");
    Ok(())
}

/// What `observer check` says of the pins under `root`: none, a daemon's (the lock is held),
/// or left behind, with how long ago a daemon last read them (their heartbeat).
pub fn describe(root: &Path) -> String {
    let Ok(entries) = std::fs::read_dir(root) else {
        return format!("{}: none", root.display());
    };
    let newest = entries
        .flatten()
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max()
        .and_then(|t| t.elapsed().ok());
    let ago = |d: std::time::Duration| match d.as_secs() {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    };
    match (lock(root), newest) {
        (Err(PinError::Locked { .. }), Some(d)) => {
            format!("{}: a running daemon's (heartbeat {} ago)", root.display(), ago(d))
        }
        (Err(PinError::Locked { .. }), None) => format!("{}: a running daemon's", root.display()),
        (_, None) => format!("{}: an empty directory", root.display()),
        (_, Some(d)) => format!(
            "{}: left by a daemon gone for {} (the probes still record, into a ring nobody \
             reads): start `observer run`, or run `observer cleanup` if it was removed",
            root.display(),
            ago(d)
        ),
    }
}

/// What `observer cleanup` removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub links: usize,
    pub maps: usize,
}

/// Removes every pin under `root` (each layout's links, which detaches their programs, and
/// maps) and `root` itself, under the daemon's lock: refused while a daemon runs.
pub fn cleanup(root: &Path) -> Result<Removed, PinError> {
    let mut removed = Removed::default();
    if !root.exists() {
        return Ok(removed);
    }
    let _lock = lock(root)?;
    for dir in std::fs::read_dir(root).map_err(io("cannot read", root))?.flatten() {
        let dir = dir.path();
        remove_layout(&dir, &mut removed)?;
    }
    std::fs::remove_dir(root).map_err(io("cannot remove", root))?;
    Ok(removed)
}

/// Removes one layout directory: links first (the programs stop), then the maps.
pub fn remove_layout(dir: &Path, removed: &mut Removed) -> Result<(), PinError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io("cannot read", dir))?
        .flatten()
        .map(|e| e.path())
        .collect();
    let is_link = |p: &PathBuf| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("link_"))
    };
    entries.sort_by_key(|p| !is_link(p));
    for p in entries {
        std::fs::remove_file(&p).map_err(io("cannot unpin", &p))?;
        if is_link(&p) {
            removed.links += 1;
        } else {
            removed.maps += 1;
        }
    }
    std::fs::remove_dir(dir).map_err(io("cannot remove", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_names_are_sixteen_hex_digits() {
        let n = layout_name();
        assert_eq!(n.len(), 16);
        assert!(n.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    /// A bpffs instance of the test's own, unmounted when dropped.
    struct Bpffs(PathBuf);

    impl Bpffs {
        fn mount(tag: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("observer-bpffs-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let target = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: NUL-terminated strings; no data.
            let rc = unsafe {
                libc::mount(
                    c"bpffs".as_ptr(),
                    target.as_ptr(),
                    c"bpf".as_ptr(),
                    0,
                    std::ptr::null(),
                )
            };
            assert_eq!(rc, 0, "mounting bpffs (root): {}", std::io::Error::last_os_error());
            Self(dir)
        }
    }

    impl Drop for Bpffs {
        fn drop(&mut self) {
            let target = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a NUL-terminated path.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
            let _ = std::fs::remove_dir(&self.0);
        }
    }

    #[test]
    fn refuses_a_second_daemon_and_cleans_up_under_the_lock() {
        let fs = Bpffs::mount("lock");
        let root = fs.0.join("observer");
        let first = Pins::open(&root).expect("pins on bpffs");
        assert!(!first.adopted);
        assert!(matches!(Pins::open(&root), Err(PinError::Locked { .. })));
        assert!(matches!(cleanup(&root), Err(PinError::Locked { .. })));
        first.heartbeat();
        assert!(
            describe(&root).contains("a running daemon's (heartbeat 0 s ago)"),
            "{}",
            describe(&root)
        );
        drop(first);
        assert!(describe(&root).contains("left by a daemon gone for 0 s"), "{}", describe(&root));
        let again = Pins::open(&root).unwrap();
        assert!(again.others().is_empty());
        drop(again);
        assert_eq!(cleanup(&root).unwrap(), Removed::default());
        assert!(!root.exists());
    }

    #[test]
    fn a_name_with_a_dot_is_refused_with_the_reason() {
        let fs = Bpffs::mount("dot");
        let e = Pins::open(&fs.0.join("observer-6.1")).unwrap_err();
        assert!(e.to_string().contains("refuses names with a dot"), "{e}");
    }

    #[test]
    fn a_path_off_bpffs_is_refused() {
        let e = Pins::open(Path::new("/tmp/observer-not-bpffs")).unwrap_err();
        assert!(matches!(e, PinError::NoBpffs { .. }), "{e}");
    }
}
