//! The node's own components, seen from /proc: when kubelet and the container runtime last
//! started. A stop that kubelet or the runtime re-issued after restarting is invisible to the
//! kernel when the runtime does not send the stop signal again: containerd sends it once per
//! container (internal/cri/server/container_stop.go, "Skipping the sending of signal ... because
//! a prior stop with timeout>0 request already sent the signal") but every StopContainer starts
//! a fresh timer, and kubelet after a restart "retries from the start including the full
//! original grace period". A restart of either between the stop signal and the SIGKILL is the
//! node's evidence that the late SIGKILL was a retried stop's ([`crate::verdict`]).
//!
//! - The runtime: the process at the other end of the CRI socket (`SO_PEERCRED`, needs the
//!   host's pid namespace, as the DaemonSet has), looked up again only when that process is
//!   gone: a connection that sends nothing makes gRPC servers log a line.
//! - kubelet: the process whose comm is `kubelet`, looked for in /proc again at most every
//!   [`RESCAN_NS`] while none is known.
//!
//! Start times are /proc/<pid>/stat's `starttime` (clock ticks since boot, CLOCK_BOOTTIME,
//! fs/proc/array.c), moved onto CLOCK_MONOTONIC (what `bpf_ktime_get_ns()` reads) with the
//! boottime - monotonic offset now: the two differ by the time the node was suspended, which a
//! restart between a stop signal and its SIGKILL does not span. Resolution: one tick (10 ms).
//!
//! Each kubelet found also has its configuration read ([`graces`]): the graces its soft
//! evictions and graceful node shutdowns give, what a shortened grace is held against.

pub mod addresses;
pub mod graces;

use graces::NodeGraces;

use std::{
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use serde::Serialize;

/// How often the known processes are checked, kernel ns: a restart is found within a second.
pub const POLL_NS: u64 = 1_000_000_000;
/// How often /proc is scanned for kubelet while none is known.
pub const RESCAN_NS: u64 = 10_000_000_000;
/// How often kubelet's configuration is read again while it could not be read.
pub const REREAD_NS: u64 = 60_000_000_000;
/// Starts kept: a restart loop adds one a second at most while the poll runs; records look at
/// the minutes before them.
const MAX_STARTS: usize = 64;

/// Which component started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    Kubelet,
    /// The process serving the CRI socket (containerd, CRI-O).
    Runtime,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kubelet => "kubelet",
            Self::Runtime => "runtime",
        }
    }
}

/// One process of a component, and when it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub component: Component,
    pub comm: String,
    pub pid: u32,
    /// CLOCK_MONOTONIC ns.
    pub started_ns: u64,
    /// /proc/<pid>/stat's starttime, to tell the same process from a new one with its pid.
    start_ticks: u64,
}

impl Start {
    /// A start at `started_ns` (for the verdict's tests and the fuzzer).
    pub fn at(component: Component, comm: &str, pid: u32, started_ns: u64) -> Self {
        Self { component, comm: comm.into(), pid, started_ns, start_ticks: 0 }
    }
}

/// `(comm, starttime)` of a /proc/<pid>/stat line: the comm sits between the first '(' and the
/// last ')'; starttime is the 22nd field, the 20th after the comm.
pub fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let ticks = stat.get(close + 1..)?.split_whitespace().nth(19)?.parse().ok()?;
    Some((comm, ticks))
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid clock id and out pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// A starttime in ticks since boot, on CLOCK_MONOTONIC.
fn monotonic_of(ticks: u64) -> u64 {
    let boot_ns = ticks as i128 * 1_000_000_000 / ticks_per_second() as i128;
    let offset = clock_ns(libc::CLOCK_BOOTTIME) - clock_ns(libc::CLOCK_MONOTONIC);
    (boot_ns - offset).max(0) as u64
}

/// The pid at the other end of the unix socket `path` (0 when it is in another pid namespace).
/// The connect is non-blocking: a wedged runtime whose backlog is full answers EAGAIN at
/// once (net/unix/af_unix.c `unix_stream_connect()`), and this thread, the pipeline's, goes on.
fn socket_peer(path: &Path) -> Option<u32> {
    use std::os::{fd::FromRawFd as _, unix::ffi::OsStrExt as _};
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: an all-zero sockaddr_un is valid; the path is copied within its bounds.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return None;
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, b) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *b as libc::c_char;
    }
    // SAFETY: plain socket(2); the descriptor is owned by `s` from here on.
    let fd = unsafe {
        libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0)
    };
    if fd < 0 {
        return None;
    }
    let s = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let len = (std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    // SAFETY: `addr` is a sockaddr_un of at least `len` bytes.
    let r =
        unsafe { libc::connect(s.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len) };
    if r != 0 {
        return None;
    }
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: a connected socket, an out buffer of the size passed.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (r == 0 && cred.pid > 0).then_some(cred.pid as u32)
}

/// What the node's components tell a verdict: when they started, and the graces kubelet's
/// configuration gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The starts of kubelet and the runtime seen since the daemon began, oldest first.
    pub restarts: Vec<Start>,
    /// The last kubelet's configuration.
    pub graces: NodeGraces,
}

impl Evidence {
    /// Nothing known (the drill, examples): no starts, kubelet's graces unknown.
    pub fn none() -> Self {
        Self {
            restarts: Vec::new(),
            graces: NodeGraces::Unknown(
                "kubelet's configuration not read: no process named kubelet seen on this node"
                    .into(),
            ),
        }
    }
}

/// Watches kubelet and the runtime: their starts since the daemon began, oldest first, and the
/// configuration of the kubelet now running.
#[derive(Debug)]
pub struct Starts {
    proc: PathBuf,
    /// The CRI sockets to try, in order (the first with a process behind it).
    runtime_sockets: Vec<PathBuf>,
    /// The processes now known, `(pid, start_ticks)`.
    kubelet: Option<(u32, u64)>,
    runtime: Option<(u32, u64)>,
    /// kubelet's configuration as mounted for this process, instead of through its root.
    kubelet_config: graces::Mounted,
    next_graces_read_ns: u64,
    /// The last reason logged for an unread configuration.
    logged: Option<String>,
    evidence: Evidence,
    next_poll_ns: u64,
    next_scan_ns: u64,
    next_refresh_ns: u64,
}

impl Starts {
    /// Watches kubelet in `proc` and the process serving the first of `runtime_sockets` that
    /// answers.
    pub fn new(proc: impl Into<PathBuf>, runtime_sockets: Vec<PathBuf>) -> Self {
        Self {
            proc: proc.into(),
            runtime_sockets,
            kubelet: None,
            runtime: None,
            kubelet_config: graces::Mounted::default(),
            next_graces_read_ns: u64::MAX,
            logged: None,
            evidence: Evidence::none(),
            next_poll_ns: 0,
            next_scan_ns: 0,
            next_refresh_ns: 0,
        }
    }

    /// kubelet's configuration read from mounts instead of through its /proc root.
    pub fn with_kubelet_config(mut self, mounted: graces::Mounted) -> Self {
        self.kubelet_config = mounted;
        self
    }

    /// Nothing watched (the drill, tests): no starts.
    pub fn none() -> Self {
        Self::new("/nonexistent", Vec::new())
    }

    /// The starts kept, oldest first.
    pub fn seen(&self) -> &[Start] {
        &self.evidence.restarts
    }

    /// What a verdict is given.
    pub fn evidence(&self) -> &Evidence {
        &self.evidence
    }

    fn stat(&self, pid: u32) -> Option<(String, u64)> {
        parse_stat(&std::fs::read_to_string(self.proc.join(pid.to_string()).join("stat")).ok()?)
    }

    fn alive(&self, known: Option<(u32, u64)>) -> bool {
        known.is_some_and(|(pid, ticks)| self.stat(pid).is_some_and(|(_, t)| t == ticks))
    }

    fn note(&mut self, component: Component, pid: u32, comm: String, ticks: u64) -> (u32, u64) {
        let start =
            Start { component, comm, pid, started_ns: monotonic_of(ticks), start_ticks: ticks };
        let seen = &mut self.evidence.restarts;
        if !seen.iter().any(|s| s.pid == pid && s.start_ticks == ticks) {
            if seen.len() == MAX_STARTS {
                seen.remove(0);
            }
            seen.push(start);
        }
        (pid, ticks)
    }

    /// Whether `pid` may be the node's kubelet, beside its name: a process of this /proc's own
    /// pid namespace (one pid in /proc/<pid>/status's `NSpid`: a pod's processes in their own
    /// namespaces have two or more) outside every pod's cgroup (kubelet's `kubepods`
    /// hierarchy, cgroupfs or systemd driver). A pod sharing the host's pid namespace can still
    /// name a process kubelet: what it could make the daemon read is bounded
    /// ([`graces::MAX_FILE_BYTES`], regular files only).
    fn may_be_kubelet(&self, pid: u32) -> bool {
        let dir = self.proc.join(pid.to_string());
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let one_pid = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .is_some_and(|v| v.split_whitespace().count() == 1);
        let cgroup = std::fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
        one_pid && !cgroup.lines().any(|l| l.contains("/kubepods"))
    }

    fn find_kubelet(&self) -> Option<(u32, String, u64)> {
        let dir = std::fs::read_dir(&self.proc).ok()?;
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| {
                let (comm, ticks) = self.stat(pid)?;
                (comm == "kubelet" && self.may_be_kubelet(pid)).then_some((pid, comm, ticks))
            })
            // The oldest: a kubelet's own short-lived children keep their parent's comm only
            // until they exec.
            .min_by_key(|(_, _, ticks)| *ticks)
    }

    /// kubelet reads its configuration once, at its start: so does this, for each kubelet,
    /// and again while it could not (every [`REREAD_NS`]: a mount that was missing, a file
    /// being rewritten; at the next poll for a kubelet caught starting). A reason is logged
    /// once.
    fn read_graces(&mut self, pid: u32, now_ns: u64) {
        let proc_pid = self.proc.join(pid.to_string());
        self.evidence.graces = graces::of_kubelet(&proc_pid, &self.kubelet_config);
        self.next_graces_read_ns = match &self.evidence.graces {
            NodeGraces::Read { .. } => u64::MAX,
            NodeGraces::Starting(_) => now_ns,
            NodeGraces::Unknown(why) => {
                if self.logged.as_deref() != Some(why.as_str()) {
                    log::warn!("kubelet {pid}: {why}: shortened graces will not be named");
                    self.logged = Some(why.clone());
                }
                now_ns.saturating_add(REREAD_NS)
            }
        };
    }

    /// Checks the known processes (at most every [`POLL_NS`]) and notes new ones.
    pub fn poll(&mut self, now_ns: u64) {
        if now_ns < self.next_poll_ns {
            return;
        }
        self.next_poll_ns = now_ns.saturating_add(POLL_NS);
        if !self.alive(self.runtime) {
            self.runtime = None;
            let found = self.runtime_sockets.iter().find_map(|s| socket_peer(s));
            if let Some((pid, (comm, ticks))) = found.and_then(|p| Some((p, self.stat(p)?))) {
                self.runtime = Some(self.note(Component::Runtime, pid, comm, ticks));
            }
        }
        if let Some((pid, _)) = self.kubelet.filter(|_| now_ns >= self.next_graces_read_ns) {
            self.read_graces(pid, now_ns);
        }
        if !self.alive(self.kubelet) {
            self.kubelet = None;
            if now_ns >= self.next_scan_ns {
                self.next_scan_ns = now_ns.saturating_add(RESCAN_NS);
                if let Some((pid, comm, ticks)) = self.find_kubelet() {
                    self.kubelet = Some(self.note(Component::Kubelet, pid, comm, ticks));
                    self.read_graces(pid, now_ns);
                }
            }
        }
    }

    /// Looks again now, /proc scan included, at most once per [`POLL_NS`]: a record that may
    /// be a retried stop's is about to be judged, and kubelet may have come back since the last
    /// scan.
    pub fn refresh(&mut self, now_ns: u64) {
        if now_ns >= self.next_refresh_ns {
            self.next_refresh_ns = now_ns.saturating_add(POLL_NS);
            self.next_poll_ns = 0;
            self.next_scan_ns = 0;
        }
        self.poll(now_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_comm_and_starttime() {
        let line = "4242 (kube let) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 12 0 \
                    98765 1000 10 18446744073709551615";
        assert_eq!(parse_stat(line), Some(("kube let) x".into(), 98765)));
        assert_eq!(parse_stat("12 (sh) S 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    proptest::proptest! {
        #[test]
        fn stat_lines_never_panic(line in "[0-9]{0,6} ?\\(?.{0,20}\\)?( [A-Z0-9-]{1,20}){0,25}") {
            let _ = parse_stat(&line);
        }
    }

    #[test]
    fn this_process_start_is_before_now_on_the_kernel_clock() {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let (_, ticks) = parse_stat(&stat).unwrap();
        let started = monotonic_of(ticks);
        let now = crate::clock::monotonic_ns();
        assert!(started <= now + 10_000_000, "{started} > {now}");
        // The test binary started within the last hour.
        assert!(now - started < 3_600_000_000_000, "{started} {now}");
    }

    #[test]
    fn a_kubelet_process_and_a_socket_server_are_found_and_a_new_one_is_a_new_start() {
        // A real process named kubelet (a copy of sleep) and this test's own listening socket.
        let dir = std::env::temp_dir().join(format!("observer-node-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubelet = dir.join("kubelet");
        // A symlink: the comm is the name exec'd; no copy for a forking thread to hold open.
        std::os::unix::fs::symlink("/bin/sleep", &kubelet).unwrap();
        let socket = dir.join("cri.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let mut starts = Starts::new("/proc", vec![dir.join("absent.sock"), socket.clone()]);
        let mut first = std::process::Command::new(&kubelet).arg("60").spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        starts.poll(1);
        let runtime: Vec<_> =
            starts.seen().iter().filter(|s| s.component == Component::Runtime).cloned().collect();
        assert_eq!(runtime.len(), 1, "{runtime:?}");
        assert_eq!(runtime[0].pid, std::process::id());
        let k: Vec<_> =
            starts.seen().iter().filter(|s| s.component == Component::Kubelet).cloned().collect();
        assert_eq!(k.iter().map(|s| s.pid).collect::<Vec<_>>(), [first.id()], "{k:?}");
        assert_eq!(k[0].comm, "kubelet");
        // Its configuration read: flags only, no grace of its own.
        assert!(
            matches!(&starts.evidence().graces, NodeGraces::Read { graces, .. } if graces.is_empty()),
            "{:?}",
            starts.evidence().graces
        );
        // Polled again, nothing new; kubelet restarts: one more start, after the first.
        starts.refresh(2);
        assert_eq!(starts.seen().len(), 2);
        first.kill().unwrap();
        first.wait().unwrap();
        let mut second = std::process::Command::new(&kubelet).arg("60").spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        starts.refresh(3 + POLL_NS);
        let k: Vec<_> =
            starts.seen().iter().filter(|s| s.component == Component::Kubelet).cloned().collect();
        assert_eq!(k.iter().map(|s| s.pid).collect::<Vec<_>>(), [first.id(), second.id()]);
        assert!(k[1].started_ns >= k[0].started_ns);
        second.kill().unwrap();
        second.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
