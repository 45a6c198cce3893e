//! Least privilege once started: `observer run` needs CAP_BPF and CAP_PERFMON to load its
//! programs, create its maps and attach its tracepoints, and nothing of that after. Once the
//! probes are attached, the pins made, the journal opened and the listener bound,
//! [`drop_after_start`] takes from every thread of the daemon every capability the rest of its
//! life does not need ([`after_start`] says which those are and why), clears the ambient set,
//! and sets no-new-privileges, so nothing it could exec would gain any.
//!
//! What the daemon still does after start, and what the kernel checks for each:
//! - bpf() on the map descriptors it holds (the process, cgroup and ended maps, the counters,
//!   the ring buffer's mmap): since 6.5 (kernel/bpf/syscall.c, "bpf: Move unprivileged
//!   checks into map_create() and bpf_prog_load()") only map creation and program loading are
//!   checked against kernel.unprivileged_bpf_disabled; before, `__sys_bpf()` refused more
//!   commands to a caller that was not `bpf_capable()` while it was set. CAP_BPF is kept there.
//! - reads of /proc/<pid>/stat, status, cgroup and comm of container processes, the runtime's
//!   state files and socket, kubelet's log layout, the cgroup hierarchy: world-readable or
//!   root's own files, which uid 0 reads without CAP_DAC_OVERRIDE.
//! - writes to the journal directory and the pin directory's mtime (the heartbeat): root's.
//! - a stuck termination's /proc/<pid>/wchan and /proc/<pid>/stack (fs/proc/base.c):
//!   `proc_pid_wchan()` prints "0" unless `ptrace_may_access(PTRACE_MODE_READ_FSCREDS)`, which
//!   for another uid, or a task whose permitted set is not within our effective set
//!   (security/commoncap.c `cap_ptrace_access_check()`), takes CAP_SYS_PTRACE;
//!   `proc_pid_stack()` refuses an opener without CAP_SYS_ADMIN (`file_ns_capable()`), then
//!   takes `PTRACE_MODE_ATTACH_FSCREDS` access. Both are kept where the daemon has them (root
//!   on a host); the DaemonSet grants neither, and those two fields are null there.
//!
//! Credentials are per thread (capset(2) changes the caller's only) and the tokio runtime's
//! threads exist by then, so the change is made on every thread, as glibc's setuid() does:
//! each other thread is sent [`SIGNAL`], whose handler makes the same system calls, and
//! /proc/self/task/<tid>/status is read back until every thread shows the kept sets.
//!
//! `observer install-seccomp` ([`install_profile`]) is the DaemonSet's init container: it puts
//! the daemon's seccomp profile where kubelet looks for Localhost profiles.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use clap::Args;

/// Capability numbers, include/uapi/linux/capability.h.
pub mod cap {
    pub const SETPCAP: u32 = 8;
    pub const SYS_PTRACE: u32 = 19;
    pub const SYS_ADMIN: u32 = 21;
    pub const PERFMON: u32 = 38;
    pub const BPF: u32 = 39;
}

/// Every capability's name, by number (include/uapi/linux/capability.h, up to CAP_LAST_CAP
/// of 5.9 and later, CAP_CHECKPOINT_RESTORE).
pub const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The signal each other thread is asked to drop its capabilities with: a real-time signal
/// nothing else in the daemon uses (glibc keeps SIGRTMIN's first two for itself and
/// `libc::SIGRTMIN()` is past them).
fn signal() -> libc::c_int {
    libc::SIGRTMIN() + 6
}

/// How long the other threads are given to drop theirs, in all.
const THREADS_DEADLINE: Duration = Duration::from_secs(5);

/// `observer run`'s privilege flag.
#[derive(Debug, Clone, Args)]
pub struct PrivilegeArgs {
    /// Keep every capability the daemon was started with (debugging). By default, once the
    /// probes are attached, it keeps only what the rest of its run needs (at most
    /// CAP_SYS_PTRACE and CAP_SYS_ADMIN for a stuck container's wchan and kernel stack, and
    /// CAP_BPF for map updates before Linux 6.5), and sets no-new-privileges.
    #[arg(long, env = "OBSERVER_KEEP_CAPABILITIES")]
    pub keep_capabilities: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("{call}: {source}")]
    Sys { call: &'static str, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: no {field} line")]
    Status { path: PathBuf, field: &'static str },
    #[error(
        "threads {tids:?} still hold capabilities after {THREADS_DEADLINE:?} ({failed} \
         refused): run with --keep-capabilities to start anyway"
    )]
    Threads { tids: Vec<u32>, failed: i32 },
    #[error("{path}: not a seccomp profile: {why}")]
    Profile { path: PathBuf, why: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// A set of capabilities, bit n for capability n.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caps(pub u64);

impl Caps {
    pub fn has(self, cap: u32) -> bool {
        self.0 & (1 << cap) != 0
    }

    pub fn with(self, cap: u32) -> Self {
        Self(self.0 | 1 << cap)
    }

    /// The capabilities' names, lowest first (a number where the name is unknown).
    pub fn names(self) -> Vec<String> {
        (0..64)
            .filter(|&c| self.has(c))
            .map(|c| NAMES.get(c as usize).map_or_else(|| format!("cap_{c}"), |n| n.to_string()))
            .collect()
    }
}

impl std::fmt::Display for Caps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.names() {
            n if n.is_empty() => f.write_str("none"),
            n => f.write_str(&n.join(", ")),
        }
    }
}

/// A capability the daemon needs after start, and the operation that needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub cap: u32,
    pub why: &'static str,
}

/// What the daemon needs after start on a kernel `release` (`uname -r`) with
/// kernel.unprivileged_bpf_disabled `bpf_disabled`, before intersecting with what it holds.
pub fn after_start(release: &str, bpf_disabled: bool) -> Vec<Need> {
    let mut needs = vec![
        Need {
            cap: cap::SYS_PTRACE,
            why: "a stuck container's /proc/<pid>/wchan and /proc/<pid>/stack: \
                  ptrace_may_access() of tasks of another uid or with capabilities of their own",
        },
        Need {
            cap: cap::SYS_ADMIN,
            why:
                "a stuck container's /proc/<pid>/stack: proc_pid_stack() requires it of the opener",
        },
    ];
    if bpf_disabled && !since(release, (6, 5)) {
        needs.push(Need {
            cap: cap::BPF,
            why: "bpf() map lookups, updates and deletes: before 6.5, __sys_bpf() refuses them \
                  to callers without CAP_BPF while kernel.unprivileged_bpf_disabled is set",
        });
    }
    needs
}

/// Whether kernel `release` ("6.1.0-27-cloud-amd64") is at least `major.minor`.
pub fn since(release: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b))) => (a, b) >= (major, minor),
        // Unparsable: assume the older kernel, which keeps more.
        _ => false,
    }
}

/// One thread's capability sets, as the kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThreadCaps {
    pub effective: Caps,
    pub permitted: Caps,
    pub inheritable: Caps,
    pub bounding: Caps,
    pub ambient: Caps,
    pub no_new_privs: bool,
}

impl ThreadCaps {
    /// From a /proc/<pid>/status or /proc/<pid>/task/<tid>/status.
    pub fn read(path: &Path) -> Result<Self, PrivilegeError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| PrivilegeError::Read { path: path.into(), source })?;
        Self::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<Self, PrivilegeError> {
        let field = |name: &'static str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
                .ok_or(PrivilegeError::Status { path: path.into(), field: name })
        };
        let caps = |name: &'static str| {
            field(name).and_then(|v| {
                u64::from_str_radix(v, 16)
                    .map(Caps)
                    .map_err(|_| PrivilegeError::Status { path: path.into(), field: name })
            })
        };
        Ok(Self {
            effective: caps("CapEff")?,
            permitted: caps("CapPrm")?,
            inheritable: caps("CapInh")?,
            bounding: caps("CapBnd")?,
            ambient: caps("CapAmb")?,
            no_new_privs: field("NoNewPrivs")? == "1",
        })
    }
}

/// What [`drop_after_start`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// What the daemon started with (its main thread's sets).
    pub before: ThreadCaps,
    /// Kept in the effective and permitted sets, each with its reason.
    pub kept: Vec<Need>,
    /// Taken from the effective and permitted sets.
    pub dropped: Caps,
    /// Left in the bounding set for want of CAP_SETPCAP to drop them (nothing raises them
    /// again: the permitted set is the ceiling, and no new privileges stop exec's).
    pub bounding_left: Caps,
    /// Threads changed.
    pub threads: usize,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "capabilities dropped: {}; kept: ", self.dropped)?;
        if self.kept.is_empty() {
            f.write_str("none")?;
        }
        for (i, k) in self.kept.iter().enumerate() {
            let sep = if i == 0 { "" } else { "; " };
            write!(f, "{sep}{} ({})", NAMES[k.cap as usize], k.why)?;
        }
        if self.bounding_left.0 != 0 {
            write!(
                f,
                "; left in the bounding set (no CAP_SETPCAP to drop them): {}",
                self.bounding_left
            )?;
        }
        write!(f, "; no new privileges, on {} threads", self.threads)
    }
}

/// What every thread is to end with, for the signal handler (which may touch nothing but
/// atomics and system calls).
static KEEP: AtomicU64 = AtomicU64::new(0);
/// Bounding-set capabilities each thread drops (empty without CAP_SETPCAP).
static BOUNDING_DROP: AtomicU64 = AtomicU64::new(0);
/// Threads that ran the handler, and the last errno one of them met (0: none).
static HANDLED: AtomicUsize = AtomicUsize::new(0);
static FAILED: AtomicI32 = AtomicI32::new(0);

/// Drops, on every thread of this process, every capability not in `after_start`, keeps
/// those of them it holds, clears the ambient and inheritable sets, drops the rest from the
/// bounding set where it holds CAP_SETPCAP, and sets no-new-privileges. With
/// `--keep-capabilities` it changes nothing and returns None.
pub fn drop_after_start(args: &PrivilegeArgs) -> Result<Option<Dropped>, PrivilegeError> {
    let status = Path::new("/proc/thread-self/status");
    let before = ThreadCaps::read(status)?;
    if args.keep_capabilities {
        log::warn!(
            "--keep-capabilities: keeping every capability the daemon started with ({})",
            before.effective
        );
        return Ok(None);
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    // Unreadable: assume it is set, which keeps more.
    let bpf_disabled = std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled")
        .map_or(true, |s| s.trim() != "0");
    let kept: Vec<Need> = after_start(release.trim(), bpf_disabled)
        .into_iter()
        .filter(|n| before.permitted.has(n.cap))
        .collect();
    let keep = kept.iter().fold(Caps::default(), |c, n| c.with(n.cap));
    let bounding_drop =
        if before.effective.has(cap::SETPCAP) { before.bounding.0 & !keep.0 } else { 0 };
    KEEP.store(keep.0, Ordering::SeqCst);
    BOUNDING_DROP.store(bounding_drop, Ordering::SeqCst);

    let target = |bounding: Caps| ThreadCaps {
        effective: keep,
        permitted: keep,
        inheritable: Caps::default(),
        bounding,
        ambient: Caps::default(),
        no_new_privs: true,
    };
    let want = target(Caps(before.bounding.0 & !bounding_drop));
    // This thread first, then the others.
    apply(keep.0, bounding_drop).map_err(|(call, e)| PrivilegeError::Sys {
        call,
        source: std::io::Error::from_raw_os_error(e),
    })?;
    let threads = on_every_thread(&want)?;
    let dropped = Dropped {
        before,
        kept,
        dropped: Caps(before.permitted.0 & !keep.0),
        bounding_left: Caps(want.bounding.0 & !keep.0),
        threads,
    };
    log::info!("{dropped}");
    Ok(Some(dropped))
}

/// Sends [`signal`] to every other thread whose sets are not `want` yet, until every thread
/// shows them (threads made meanwhile by a thread not yet changed are found on the next
/// pass). Returns how many threads there are.
fn on_every_thread(want: &ThreadCaps) -> Result<usize, PrivilegeError> {
    let sig = signal();
    // SAFETY: a handler of only atomics and raw system calls (async-signal-safe), installed
    // for a signal nothing else uses.
    let previous = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(sig, &action, &mut previous) != 0 {
            return Err(sys("sigaction"));
        }
        previous
    };
    // SAFETY: plain system calls.
    let (pid, me) = unsafe { (libc::getpid(), libc::gettid()) };
    let deadline = Instant::now() + THREADS_DEADLINE;
    let mut sent = 0;
    let result = loop {
        let mut pending = Vec::new();
        let mut threads = 0;
        for tid in tasks()? {
            let Ok(caps) =
                ThreadCaps::read(&PathBuf::from(format!("/proc/self/task/{tid}/status")))
            else {
                continue; // exited meanwhile
            };
            threads += 1;
            if caps != *want {
                pending.push(tid);
            }
        }
        if pending.is_empty() {
            break Ok(threads);
        }
        if Instant::now() > deadline {
            break Err(PrivilegeError::Threads {
                tids: pending,
                failed: FAILED.load(Ordering::SeqCst),
            });
        }
        for &tid in pending.iter().filter(|&&t| t as i32 != me) {
            // SAFETY: a signal to a thread of this process, whose handler is installed.
            let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid as libc::c_int, sig) };
            if rc == 0 {
                sent += 1;
            }
        }
        // Every signal sent is handled before the threads are read again.
        while HANDLED.load(Ordering::SeqCst) < sent && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    if HANDLED.load(Ordering::SeqCst) >= sent {
        // None is pending any more: the previous disposition can come back.
        // SAFETY: restoring the disposition read above.
        unsafe { libc::sigaction(sig, &previous, std::ptr::null_mut()) };
    }
    result
}

extern "C" fn on_signal(_: libc::c_int) {
    // SAFETY: errno is this thread's; saved and restored around the handler's system calls.
    let errno = unsafe { *libc::__errno_location() };
    if let Err((_, e)) = apply(KEEP.load(Ordering::SeqCst), BOUNDING_DROP.load(Ordering::SeqCst)) {
        FAILED.store(e, Ordering::SeqCst);
    }
    HANDLED.fetch_add(1, Ordering::SeqCst);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// The calling thread's part, raw system calls only (it runs in a signal handler): the
/// bounding set first (PR_CAPBSET_DROP needs CAP_SETPCAP in the effective set, which capset
/// takes away), the ambient set, then capset, then no-new-privileges.
fn apply(keep: u64, bounding_drop: u64) -> Result<(), (&'static str, i32)> {
    let errno = || unsafe { *libc::__errno_location() };
    for c in (0..64).filter(|c| bounding_drop & (1 << c) != 0) {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::syscall(libc::SYS_prctl, libc::PR_CAPBSET_DROP, c, 0, 0, 0) } != 0 {
            return Err(("prctl(PR_CAPBSET_DROP)", errno()));
        }
    }
    // SAFETY: as above.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_prctl,
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", errno()));
    }
    // _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set; pid 0 is the calling thread.
    let header = CapHeader { version: 0x2008_0522, pid: 0 };
    let word = |i: u32| CapData {
        effective: (keep >> (32 * i)) as u32,
        permitted: (keep >> (32 * i)) as u32,
        inheritable: 0,
    };
    let data = [word(0), word(1)];
    // SAFETY: a valid header and two data words, as capset(2) takes for version 3.
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        return Err(("capset", errno()));
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::syscall(libc::SYS_prctl, libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(("prctl(PR_SET_NO_NEW_PRIVS)", errno()));
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// This process's thread ids.
fn tasks() -> Result<Vec<u32>, PrivilegeError> {
    let dir = Path::new("/proc/self/task");
    let entries = std::fs::read_dir(dir)
        .map_err(|source| PrivilegeError::Read { path: dir.into(), source })?;
    Ok(entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
}

fn sys(call: &'static str) -> PrivilegeError {
    PrivilegeError::Sys { call, source: std::io::Error::last_os_error() }
}

/// `observer install-seccomp`: the DaemonSet's init container.
#[derive(Debug, Clone, Args)]
pub struct InstallArgs {
    /// The profile to install (the DaemonSet mounts its ConfigMap here).
    #[arg(long, default_value = "/etc/observer/seccomp/observer.json")]
    pub profile: PathBuf,
    /// Where to put it: the host's <kubelet root>/seccomp/observer/observer.json, which the
    /// DaemonSet mounts at /host/seccomp.
    #[arg(long, default_value = "/host/seccomp/observer.json")]
    pub to: PathBuf,
}

/// Copies a seccomp profile into place: checked to be one (an object with a defaultAction and
/// a list of syscalls, each with names and an action), written to a temporary file beside the
/// target, synced and renamed over it, so the runtime never reads half a profile. Returns
/// what it did, in a line.
pub fn install_profile(args: &InstallArgs) -> Result<String, PrivilegeError> {
    let text = std::fs::read(&args.profile)
        .map_err(|source| PrivilegeError::Read { path: args.profile.clone(), source })?;
    let allowed = check_profile(&text)
        .map_err(|why| PrivilegeError::Profile { path: args.profile.clone(), why })?;
    if std::fs::read(&args.to).is_ok_and(|old| old == text) {
        return Ok(format!("{} unchanged ({allowed} system calls allowed)", args.to.display()));
    }
    let write = |source| PrivilegeError::Write { path: args.to.clone(), source };
    let dir = args.to.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        args.to.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
    ));
    let mut f = std::fs::File::create(&tmp).map_err(write)?;
    f.write_all(&text).and_then(|()| f.sync_all()).map_err(write)?;
    drop(f);
    std::fs::rename(&tmp, &args.to).map_err(write)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(write)?;
    Ok(format!("installed {} ({allowed} system calls allowed)", args.to.display()))
}

/// How many system calls a seccomp profile (OCI or Docker JSON) allows; why it is not one.
pub fn check_profile(text: &[u8]) -> Result<usize, String> {
    let v: serde_json::Value = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    let action = v["defaultAction"].as_str().ok_or("no defaultAction")?;
    if !action.starts_with("SCMP_ACT_") {
        return Err(format!("defaultAction {action:?}"));
    }
    let syscalls = v["syscalls"].as_array().ok_or("no syscalls list")?;
    let mut allowed = 0;
    for s in syscalls {
        let names = s["names"].as_array().ok_or("a syscalls entry without names")?;
        let action = s["action"].as_str().ok_or("a syscalls entry without an action")?;
        if !action.starts_with("SCMP_ACT_") || names.iter().any(|n| !n.is_string()) {
            return Err(format!("malformed syscalls entry {s}"));
        }
        if action == "SCMP_ACT_ALLOW" {
            allowed += names.len();
        }
    }
    Ok(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_compare_by_major_and_minor() {
        assert!(since("6.18.44-fc-v1147", (6, 5)));
        assert!(since("6.5.0", (6, 5)));
        assert!(!since("6.1.0-27-cloud-amd64", (6, 5)));
        assert!(!since("5.15.0-1051-aws", (6, 5)));
        assert!(!since("garbage", (6, 5)));
    }

    #[test]
    fn cap_bpf_is_kept_only_where_map_operations_need_it() {
        let caps = |r, d| after_start(r, d).iter().map(|n| n.cap).collect::<Vec<_>>();
        assert_eq!(caps("6.18.0", true), [cap::SYS_PTRACE, cap::SYS_ADMIN]);
        assert_eq!(caps("6.1.0", false), [cap::SYS_PTRACE, cap::SYS_ADMIN]);
        assert_eq!(caps("6.1.0", true), [cap::SYS_PTRACE, cap::SYS_ADMIN, cap::BPF]);
        assert!(!caps("6.12.0", true).contains(&cap::PERFMON));
    }

    #[test]
    fn status_lines_parse_into_sets() {
        let text = "Name:\tobserver\nCapInh:\t0000000000000000\nCapPrm:\t0000000000280000\n\
                    CapEff:\t0000000000280000\nCapBnd:\t000001fffeffffff\n\
                    CapAmb:\t0000000000000000\nNoNewPrivs:\t1\n";
        let t = ThreadCaps::parse(text, Path::new("status")).unwrap();
        assert_eq!(t.effective.names(), ["CAP_SYS_PTRACE", "CAP_SYS_ADMIN"]);
        assert!(t.no_new_privs);
        assert!(t.bounding.has(cap::BPF) && !t.bounding.has(24));
        assert_eq!(Caps(0).to_string(), "none");
        let e = ThreadCaps::parse("CapEff:\tzz\n", Path::new("s")).unwrap_err();
        assert!(e.to_string().contains("CapEff"), "{e}");
    }

    #[test]
    fn every_capability_number_names_itself() {
        for (n, name) in [
            (cap::SETPCAP, "CAP_SETPCAP"),
            (cap::SYS_PTRACE, "CAP_SYS_PTRACE"),
            (cap::SYS_ADMIN, "CAP_SYS_ADMIN"),
            (cap::PERFMON, "CAP_PERFMON"),
            (cap::BPF, "CAP_BPF"),
        ] {
            assert_eq!(NAMES[n as usize], name);
        }
    }

    #[test]
    fn profiles_are_checked_before_they_are_installed() {
        let good = concat!(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","#,
            r#""syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"}]}"#
        );
        assert_eq!(check_profile(good.as_bytes()), Ok(2));
        for (bad, says) in [
            (&b"{"[..], "EOF"),
            (br#"{"syscalls":[]}"#, "defaultAction"),
            (br#"{"defaultAction":"SCMP_ACT_ERRNO"}"#, "syscalls"),
            (
                br#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"action":"SCMP_ACT_ALLOW"}]}"#,
                "names",
            ),
            (br#"{"defaultAction":"ERRNO","syscalls":[]}"#, "defaultAction"),
        ] {
            let e = check_profile(bad).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn install_writes_atomically_and_says_when_unchanged() {
        let dir = std::env::temp_dir().join(format!("observer-seccomp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let profile = dir.join("in.json");
        let one = concat!(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","#,
            r#""syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#
        );
        std::fs::write(&profile, one).unwrap();
        let args = InstallArgs { profile: profile.clone(), to: dir.join("observer.json") };
        let said = install_profile(&args).unwrap();
        assert!(said.starts_with("installed") && said.contains("1 system calls"), "{said}");
        assert_eq!(std::fs::read(&args.to).unwrap(), std::fs::read(&profile).unwrap());
        assert!(install_profile(&args).unwrap().contains("unchanged"));
        let names: Vec<_> =
            std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
        std::fs::write(&profile, "{}").unwrap();
        assert!(install_profile(&args).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
