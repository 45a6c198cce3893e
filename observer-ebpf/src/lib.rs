//! Types that cross the kernel boundary, compiled by both sides.
//!
//! The eBPF programs (`src/main.rs`, target `bpfel-unknown-none`) write these structs into the
//! `EVENTS` ring buffer and read [`Config`] as a global; observer reads them back with the
//! `user` feature, which adds the `aya::Pod` impls. Every struct is `#[repr(C)]`, uses fixed-width
//! integers only, spells its padding out as `_pad` fields and has its size pinned by a
//! compile-time assertion, so a layout change is a build error rather than garbage at runtime.
//!
//! Event kinds are numbered once and never reused (see [`EventKind`]).
#![no_std]

use core::mem::size_of;

/// Names of the maps and globals in the eBPF object, shared so neither side spells them twice.
pub mod names {
    /// The one ring buffer every probe writes to.
    pub const EVENTS: &str = "EVENTS";
    /// Hash map: tgid -> [`super::Process`], the containers' main processes and the exec
    /// sessions entering containers.
    pub const PROCESSES: &str = "PROCESSES";
    /// Hash map: cgroup v2 id -> [`super::WatchedCgroup`], the containers' cgroups.
    pub const WATCHED_CGROUPS: &str = "WATCHED_CGROUPS";
    /// Per-CPU array of `u64`, indexed by [`super::Counter`].
    pub const COUNTERS: &str = "COUNTERS";
    /// Hash map: [`super::EndedKey`] -> [`super::Ended`], the terminations the kernel saw end
    /// and no daemon has recorded yet.
    pub const ENDED: &str = "ENDED";
    /// Array of [`super::FOLLOWED_SLOTS`] `u64`, mmapable: the prefilter in front of
    /// `PROCESSES` ([`super::slot`]), counted with atomic adds by the kernel and by userspace.
    pub const FOLLOWED: &str = "FOLLOWED";
    /// The same prefilter in front of `WATCHED_CGROUPS`, keyed by a cgroup id's low 32 bits
    /// (the kernfs inode number).
    pub const WATCHED_SLOTS: &str = "WATCHED_SLOTS";
    /// Hash map: [`super::NetKey`] -> [`super::Traffic`], the TCP connections of the pods'
    /// network namespaces and of host-network containers' listening ports.
    pub const NETNS: &str = "NETNS";
    /// Array of one `u64`: the runtime's network namespace cookie (the host's), learnt at a
    /// main process's exec (0: not yet).
    pub const HOST_NET: &str = "HOST_NET";
    /// Hash sets (value `u8` 1) of up to [`super::NODE_ADDRS`] addresses (IPv4 as `u32` in
    /// network order, IPv6 as two `u64` words in memory order): the node's own, written by
    /// observer from its host network namespace's local addresses (loopback excluded: a pod's
    /// own loopback connections are its traffic).
    pub const NODE_V4: &str = "NODE_V4";
    pub const NODE_V6: &str = "NODE_V6";
    /// The [`super::Config`] global.
    pub const CONFIG: &str = "CONFIG";
}

/// Names of the programs in the eBPF object, `<category>_<event>`.
pub mod programs {
    pub const SIGNAL_GENERATE: &str = "signal_generate";
    pub const SIGNAL_DELIVER: &str = "signal_deliver";
    /// sched_process_exit on kernels whose tracepoint passes `group_dead` (6.16 and later).
    pub const SCHED_PROCESS_EXIT: &str = "sched_process_exit";
    /// sched_process_exit on older kernels: `group_dead` read back from `signal->live`.
    pub const SCHED_PROCESS_EXIT_LIVE: &str = "sched_process_exit_live";
    pub const CGROUP_MKDIR: &str = "cgroup_mkdir";
    pub const CGROUP_RMDIR: &str = "cgroup_rmdir";
    pub const OOM_MARK_VICTIM: &str = "oom_mark_victim";
    pub const SCHED_PROCESS_EXEC: &str = "sched_process_exec";
    pub const INET_SOCK_SET_STATE: &str = "inet_sock_set_state";
}

/// `TASK_COMM_LEN` in include/linux/sched.h.
pub const TASK_COMM_LEN: usize = 16;
/// Bytes of a cgroup path carried in a [`CgroupEvent`]. Kubernetes paths are at most ~200
/// bytes (systemd driver, 64-hex id); a longer one is cut and counted in
/// [`Counter::CgroupPathTruncated`].
pub const CGROUP_PATH_LEN: usize = 256;
/// Bytes of the cgroup prefix the kernel side matches at `cgroup_mkdir` (`/kubepods` by default).
pub const CGROUP_PREFIX_LEN: usize = 64;

pub const SIGKILL: u32 = 9;

/// Signals that are never a stop signal, tested against a constant before anything is read
/// from memory: SIGCHLD (every process exit on the node sends one, and delivers it where the
/// parent has a handler), SIGCONT and the job-control stops SIGSTOP, SIGTSTP, SIGTTIN and
/// SIGTTOU. Their default actions ignore, continue or stop (signal(7)), none ends a process,
/// so a container "stopped" with one never terminates; `--stop-signal` refuses them.
pub const NEVER_STOP_SIGNALS: u64 =
    (1 << 17) | (1 << 18) | (1 << 19) | (1 << 20) | (1 << 21) | (1 << 22);
/// Highest signal number the mask in [`Config::stop_signal_mask`] can hold (`_NSIG` is 64).
pub const MAX_SIGNAL: u32 = 63;

/// `result` of the signal_generate tracepoint (`enum trace_signal_result`,
/// include/trace/events/signal.h).
pub mod signal_result {
    pub const DELIVERED: u32 = 0;
    pub const IGNORED: u32 = 1;
    pub const ALREADY_PENDING: u32 = 2;
    pub const OVERFLOW_FAIL: u32 = 3;
    pub const LOSE_INFO: u32 = 4;
}

/// Disposition of a delivered signal, from `ka->sa.sa_handler` at signal_deliver.
pub mod disposition {
    /// `SIG_DFL` (sa_handler == 0).
    pub const DEFAULT: u32 = 0;
    /// `SIG_IGN` (sa_handler == 1).
    pub const IGNORED: u32 = 1;
    /// A user handler.
    pub const HANDLED: u32 = 2;
    /// The signal is blocked (in `task->blocked`, or in `task->real_blocked` while the task
    /// waits in sigtimedwait(2)): it stays pending and is taken by sigwait, signalfd or a
    /// handler when unblocked. Only at generation; kernel/signal.c `sig_ignored()` never
    /// drops a blocked signal, whatever its handler.
    pub const BLOCKED: u32 = 3;
    /// Could not be read.
    pub const UNKNOWN: u32 = 255;
}

/// Field offsets in the classic tracepoints' records, as printed in
/// `/sys/kernel/tracing/events/<category>/<name>/format` on Linux 6.18 (the first 8 bytes are the
/// common header). `observer check` compares every one of these with the running kernel's format
/// files and refuses to start on a mismatch, so a kernel that moves a field cannot feed us garbage.
pub mod tp_offsets {
    /// cgroup:cgroup_mkdir / cgroup_rmdir, include/trace/events/cgroup.h `DECLARE_EVENT_CLASS(cgroup)`.
    pub const CGROUP_ROOT: usize = 8;
    pub const CGROUP_LEVEL: usize = 12;
    pub const CGROUP_ID: usize = 16;
    /// `__data_loc char[] path`: a u32, low 16 bits the offset in the record, high 16 the length.
    pub const CGROUP_PATH_LOC: usize = 24;
    /// oom:mark_victim, include/trace/events/oom.h.
    pub const MARK_VICTIM_PID: usize = 8;

    /// (category, event, field, offset, size) for each offset above, for `observer check`.
    pub const EXPECTED: &[(&str, &str, &str, usize, usize)] = &[
        ("cgroup", "cgroup_mkdir", "root", CGROUP_ROOT, 4),
        ("cgroup", "cgroup_mkdir", "level", CGROUP_LEVEL, 4),
        ("cgroup", "cgroup_mkdir", "id", CGROUP_ID, 8),
        ("cgroup", "cgroup_mkdir", "path", CGROUP_PATH_LOC, 4),
        ("cgroup", "cgroup_rmdir", "root", CGROUP_ROOT, 4),
        ("cgroup", "cgroup_rmdir", "level", CGROUP_LEVEL, 4),
        ("cgroup", "cgroup_rmdir", "id", CGROUP_ID, 8),
        ("cgroup", "cgroup_rmdir", "path", CGROUP_PATH_LOC, 4),
        ("oom", "mark_victim", "pid", MARK_VICTIM_PID, 4),
    ];
}

/// Kinds of ring-buffer records. Numbers are never reused.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    SignalGenerate = 1,
    SignalDeliver = 2,
    ProcessExit = 3,
    CgroupMkdir = 4,
    CgroupRmdir = 5,
    OomVictim = 6,
    ExecSession = 7,
    MainProcess = 8,
}

impl EventKind {
    /// Every kind, in number order.
    pub const ALL: [Self; 8] = [
        Self::SignalGenerate,
        Self::SignalDeliver,
        Self::ProcessExit,
        Self::CgroupMkdir,
        Self::CgroupRmdir,
        Self::OomVictim,
        Self::ExecSession,
        Self::MainProcess,
    ];

    /// The counter a full ring buffer bumps when a record of this kind is lost: the probes
    /// count with it and userspace reports it, so neither side keeps a list of its own.
    pub const fn ring_full(self) -> Counter {
        match self {
            Self::SignalGenerate => Counter::RingbufFullSignalGenerate,
            Self::SignalDeliver => Counter::RingbufFullSignalDeliver,
            Self::ProcessExit => Counter::RingbufFullProcessExit,
            Self::CgroupMkdir | Self::CgroupRmdir => Counter::RingbufFullCgroup,
            Self::OomVictim => Counter::RingbufFullOom,
            Self::ExecSession | Self::MainProcess => Counter::RingbufFullExec,
        }
    }

    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::SignalGenerate,
            2 => Self::SignalDeliver,
            3 => Self::ProcessExit,
            4 => Self::CgroupMkdir,
            5 => Self::CgroupRmdir,
            6 => Self::OomVictim,
            7 => Self::ExecSession,
            8 => Self::MainProcess,
            _ => return None,
        })
    }
}

/// First field of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// An [`EventKind`] as u32.
    pub kind: u32,
    pub cpu: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the probe fired.
    pub ktime_ns: u64,
}

/// signal:signal_generate (tp_btf), for a stop signal or SIGKILL aimed at a container's main
/// process by anyone but the container itself (or by the kernel).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SignalGenerateEvent {
    pub header: EventHeader,
    pub sig: u32,
    /// `info->si_code` (include/uapi/asm-generic/siginfo.h): [`SI_USER`] for kill(2),
    /// pidfd_send_signal(2) without info and cgroup.kill, SI_TKILL for tgkill(2), [`SI_KERNEL`]
    /// for `SEND_SIG_PRIV` (the OOM killer, a pid namespace's dying init).
    pub si_code: i32,
    pub _pad0: u32,
    /// A [`signal_result`] value.
    pub result: u32,
    /// `group` argument: 1 when sent to the whole thread group (PIDTYPE_TGID and up).
    pub group: u32,
    /// The target's disposition for `sig` when it was sent (a [`disposition`] value, or
    /// [`disposition::UNKNOWN`]): tells "PID 1 has no handler" (default) from SIG_IGN, both of
    /// which the kernel drops at generation (result = ignored) and never delivers.
    pub target_handler: u32,
    pub target_tgid: u32,
    pub target_tid: u32,
    pub sender_tgid: u32,
    pub sender_tid: u32,
    /// The target's start time ([`Process::start_ticks`]): with `target_tgid`, its identity.
    pub target_start_ticks: u64,
    /// The target's container cgroup (v2 id), as learnt with its main process.
    pub target_cgroup_id: u64,
    pub sender_cgroup_id: u64,
    pub target_comm: [u8; TASK_COMM_LEN],
    pub sender_comm: [u8; TASK_COMM_LEN],
}

/// signal:signal_deliver (tp_btf), in the receiving thread, for a tracked process.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SignalDeliverEvent {
    pub header: EventHeader,
    pub sig: u32,
    /// A [`disposition`] value.
    pub disposition: u32,
    pub tgid: u32,
    pub tid: u32,
    pub start_ticks: u64,
    pub sa_flags: u64,
    pub cgroup_id: u64,
}

/// sched:sched_process_exit (tp_btf) of a followed process's last thread: the process is gone.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcessExitEvent {
    pub header: EventHeader,
    pub tgid: u32,
    pub tid: u32,
    pub start_ticks: u64,
    /// The wait(2) status the process's parent (the runtime) reaps, computed as
    /// `wait_task_zombie()` does (kernel/exit.c): `signal->group_exit_code` after a group exit
    /// or a fatal signal, else the group leader's `exit_code`. `code << 8` for exit(code), the
    /// signal number (| 0x80 for a core dump) for a fatal signal.
    pub exit_code: u32,
    /// A [`role`] value: a container's main process or an exec session.
    pub role: u32,
    /// The process's [`Process::flags`] at its exit.
    pub flags: u32,
    pub _pad0: u32,
    pub cgroup_id: u64,
    pub comm: [u8; TASK_COMM_LEN],
    /// The process's [`Process::stop`] and [`Process::kill`] at its exit.
    pub stop: SignalFact,
    pub kill: SignalFact,
    /// A main process's [`Process::net`], [`Process::traffic_stop`], [`Process::traffic_kill`]
    /// and its connections as counted at its exit (before do_exit() closes its files:
    /// `exit_files()` comes after `trace_sched_process_exit()`).
    pub net: NetOf,
    pub traffic_stop: Traffic,
    pub traffic_kill: Traffic,
    pub traffic_exit: Traffic,
}

impl ProcessExitEvent {
    /// `(exit code, fatal signal)` from the wait status; exactly one is `Some`.
    /// (Not `exit_code >> 8` alone, which loses the fatal signal.)
    pub const fn decode_status(status: u32) -> (Option<u32>, Option<u32>) {
        let sig = status & 0x7f;
        if sig == 0 {
            (Some((status >> 8) & 0xff), None)
        } else {
            (None, Some(sig))
        }
    }
}

/// cgroup:cgroup_mkdir / cgroup_rmdir on the v2 hierarchy under the configured prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CgroupEvent {
    pub header: EventHeader,
    pub id: u64,
    pub level: u32,
    /// Bytes of `path` used (without the NUL).
    pub path_len: u32,
    pub path: [u8; CGROUP_PATH_LEN],
}

/// oom:mark_victim: the OOM killer chose this process (its SIGKILL was already sent).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OomVictimEvent {
    pub header: EventHeader,
    pub pid: u32,
    pub _pad0: u32,
    /// cgroup v2 id of the task that ran the OOM killer (the allocating task).
    pub trigger_cgroup_id: u64,
}

/// sched:sched_process_exec (tp_btf): a process exec'd inside a watched container cgroup
/// whose parent is outside it, i.e. an exec session the runtime started into the container
/// (`runc exec`, CRI ExecSync: preStop exec hooks, exec probes, `kubectl exec`). The
/// container's own PID 1 and its descendants are never reported.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecSessionEvent {
    pub header: EventHeader,
    pub tgid: u32,
    pub parent_tgid: u32,
    /// The container's cgroup v2 id (the session's own).
    pub cgroup_id: u64,
    /// The comm after exec (the new program's name).
    pub comm: [u8; TASK_COMM_LEN],
    pub parent_comm: [u8; TASK_COMM_LEN],
}

/// sched:sched_process_exec (tp_btf): a container's main process, learnt as the runtime makes
/// it: the first exec in a container cgroup by a process whose parent is outside it (runc's or
/// crun's init exec'ing the entrypoint), in a cgroup none of whose ancestors has a main
/// process already.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MainProcessEvent {
    pub header: EventHeader,
    pub tgid: u32,
    pub parent_tgid: u32,
    pub start_ticks: u64,
    /// The container's cgroup v2 id.
    pub cgroup_id: u64,
    /// The comm after exec (the entrypoint's name).
    pub comm: [u8; TASK_COMM_LEN],
    pub parent_comm: [u8; TASK_COMM_LEN],
}

/// What a followed process is to its container ([`Process::role`]).
pub mod role {
    /// The container's main process: the runtime's init after it exec'd the entrypoint.
    pub const MAIN: u32 = 1;
    /// An exec session the runtime started into the container (preStop exec hooks).
    pub const SESSION: u32 = 2;
}

/// What the kernel keeps of one reported signal to a main process, in its `PROCESSES` entry
/// and in its exit event: enough for a record when the daemon that read the signal's own
/// event is gone (a restart) or the event was lost (a full ring).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SignalFact {
    /// `bpf_ktime_get_ns` at generation; 0: none.
    pub at_ns: u64,
    pub sender_cgroup_id: u64,
    pub sig: u32,
    pub si_code: i32,
    /// A [`signal_result`] value.
    pub result: u32,
    /// The disposition at generation (a [`disposition`] value).
    pub handler: u32,
    pub sender_tgid: u32,
    /// The disposition at delivery plus one; 0: not delivered (yet).
    pub delivered: u32,
    pub sender_comm: [u8; TASK_COMM_LEN],
}

/// A stop signal of another number this long after the kept one replaces it: the earlier one
/// was not the stop (a SIGHUP reload before a SIGTERM, say). The kernel's [`SignalFact`] and
/// the correlator choose alike.
pub const STOP_SIGNAL_SUPERSEDE_NS: u64 = 5_000_000_000;

/// Value of the `PROCESSES` map, keyed by tgid: a process the probes follow and what has
/// already been emitted for it, so a storm of the same signal costs a map update, not a
/// ring-buffer record. `(tgid, start_ticks)` is the process's identity: a tgid reused by a
/// later process does not match the entry's start time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Process {
    /// The thread group leader's `start_boottime` in clock ticks (USER_HZ, 100 per second):
    /// the value /proc/<pid>/stat shows as `starttime` (fs/proc/array.c `do_task_stat()`,
    /// `nsec_to_clock_t(task->start_boottime)`), so a process found in /proc at start-up
    /// has the same identity as one learnt in the kernel.
    pub start_ticks: u64,
    /// The container's cgroup v2 id.
    pub cgroup_id: u64,
    /// A [`role`] value.
    pub role: u32,
    /// [`process_flags`] bits.
    pub flags: u32,
    /// Start of the current de-duplication window (`bpf_ktime_get_ns`).
    pub window_start_ns: u64,
    /// Bit n: signal n's generation was emitted in this window.
    pub generated_mask: u64,
    /// Bit n: signal n's delivery was emitted in this window.
    pub delivered_mask: u64,
    /// `bpf_ktime_get_ns` at the exec that made it followed (0: adopted by the start-up
    /// walk): an exec session's start, which a daemon started since reads from here.
    pub exec_ns: u64,
    /// The stop signal kept (first, unless superseded: [`STOP_SIGNAL_SUPERSEDE_NS`]).
    pub stop: SignalFact,
    /// The first SIGKILL.
    pub kill: SignalFact,
    /// An exec session's execs reported so far (its first included): at
    /// [`MAX_SESSION_EXECS`] the rest are counted, not emitted.
    pub session_execs: u32,
    pub _pad0: u32,
    /// [`comm_key`] of the program an exec session runs (reported or not): an exec of the same
    /// program again (a probe's script re-exec'ing itself) is not reported.
    pub session_comm: u64,
    /// A main process's network: where its connections are counted ([`NetOf`]).
    pub net: NetOf,
    /// The connections counted for it ([`Traffic`], summed over its ports for a host-network
    /// container) when its kept stop signal and its first SIGKILL were sent; `since_ns` 0:
    /// not taken.
    pub traffic_stop: Traffic,
    pub traffic_kill: Traffic,
}

/// Which connections are a main process's ([`Process::net`]): its pod's network namespace,
/// or, for a container sharing the runtime's (the host's, `hostNetwork: true`), the ports its
/// processes listen on.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetOf {
    /// `net->net_cookie` of its network namespace (never reused while the node is up; the
    /// namespace's inode number is). 0: not known.
    pub cookie: u64,
    /// A host-network container's listening ports (0: a free slot), learnt at its listen(2)s.
    pub ports: [u16; HOST_PORTS],
    /// [`net_flags`] bits.
    pub flags: u32,
    pub _pad0: u32,
}

/// Entries of `NODE_V4` and `NODE_V6`: a node's own addresses (its interfaces', a CNI bridge's,
/// a tunnel's, and with kube-proxy's IPVS mode every ClusterIP, bound to `kube-ipvs0`); more
/// are not told from clients (logged by observer).
pub const NODE_ADDRS: u32 = 16_384;

/// Ports of a host-network container that are counted; a listen on another is counted in
/// [`Counter::HostPortsFull`].
pub const HOST_PORTS: usize = 4;

/// [`NetOf::flags`].
pub mod net_flags {
    /// The process shares its runtime's network namespace (the host's): its connections are
    /// those of its listening ports.
    pub const HOST_NETWORK: u32 = 1;
    /// Counting for its network namespace began at its stop signal (a container older than
    /// the probes): what was established before is not known.
    pub const FROM_STOP: u32 = 2;
}

/// Key of the `NETNS` map: a pod's network namespace (`port` 0), or one listening port of a
/// host-network container in the host's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NetKey {
    pub cookie: u64,
    pub port: u16,
    pub _pad: [u16; 3],
}

/// Value of the `NETNS` map: the TCP state changes of one network namespace (or host port),
/// counted by the `inet_sock_set_state` probe with atomic adds, and the same numbers copied
/// at a main process's stop signal, SIGKILL and exit. Counts are cumulative from `since_ns`;
/// the gauges (`established`, `listening`) are two's-complement `i64`s in `u64`s (a
/// connection established before counting began leaves as -1).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// `bpf_ktime_get_ns` when counting began (0: a snapshot not taken).
    pub since_ns: u64,
    /// Connections in ESTABLISHED now: +1 entering it, -1 leaving it. For a host port, the
    /// connections accepted on it.
    pub established: u64,
    /// Passive opens completed (SYN_RECV -> ESTABLISHED): connections clients made, queued for
    /// accept(2), from anywhere but the node itself.
    pub accepted: u64,
    pub last_accept_ns: u64,
    /// Passive opens from one of the node's own addresses ([`names::NODE_V4`],
    /// [`names::NODE_V6`]): kubelet's httpGet and tcpSocket probes (readiness probes go on
    /// while a pod terminates) and the node's own clients, counted apart so they are never
    /// taken for traffic the endpoint removal should have stopped.
    pub node_accepted: u64,
    pub last_node_accept_ns: u64,
    /// Passive opens that came in on loopback (`sk_rx_dst_ifindex` 1): from inside the pod
    /// itself (a sidecar proxying to its app, an exec probe's `curl localhost`), counted apart
    /// in a pod's namespace; a host port counts them as clients.
    pub inside_accepted: u64,
    pub last_inside_accept_ns: u64,
    /// [`traffic_flags`] bits, set when the entry is made.
    pub flags: u64,
    /// Listening sockets now: +1 at LISTEN, -1 leaving it.
    pub listening: u64,
    /// Listening sockets closed (LISTEN -> CLOSE), and when the last one was.
    pub listen_closed: u64,
    pub last_listen_close_ns: u64,
    /// A host port's container (cgroup v2 id); 0 for a pod's namespace.
    pub owner_cgroup: u64,
}

impl Traffic {
    pub const ZERO: Self = Self {
        since_ns: 0,
        established: 0,
        accepted: 0,
        last_accept_ns: 0,
        node_accepted: 0,
        last_node_accept_ns: 0,
        inside_accepted: 0,
        last_inside_accept_ns: 0,
        flags: 0,
        listening: 0,
        listen_closed: 0,
        last_listen_close_ns: 0,
        owner_cgroup: 0,
    };
}

/// [`Traffic::flags`].
pub mod traffic_flags {
    /// The entry was made after its pod's network namespace: the pod's cgroup predates the
    /// probes (found by the start-up walk), so connections and listeners from before are not
    /// in the gauges.
    pub const POD_PREDATES: u64 = 1;
}

/// Entries of `NETNS` (preallocated, about 1 MiB): a node's pods' network namespaces and
/// host-network containers' ports. A full map is counted ([`Counter::NetnsFull`]).
pub const NETNS_MAX: u32 = 8_192;

/// Exec events reported per exec session: a session's program list (`sh` -> the hook's
/// command -> a runtime's re-exec) is a handful of programs; one that re-execs itself without
/// end (an exec probe's loop) would otherwise fill the ring and grow userspace's list.
pub const MAX_SESSION_EXECS: u32 = 8;

/// A comm (NUL-padded, [`TASK_COMM_LEN`] bytes) folded to 64 bits, to compare programs in a
/// map value without keeping the name: the two halves, one rotated (names are ASCII, a
/// collision of two names of one session is not a practical concern).
#[inline(always)]
pub const fn comm_key(comm: &[u8; TASK_COMM_LEN]) -> u64 {
    let lo = u64::from_le_bytes([
        comm[0], comm[1], comm[2], comm[3], comm[4], comm[5], comm[6], comm[7],
    ]);
    let hi = u64::from_le_bytes([
        comm[8], comm[9], comm[10], comm[11], comm[12], comm[13], comm[14], comm[15],
    ]);
    lo ^ hi.rotate_left(29)
}

/// [`Process::flags`] and [`ProcessExitEvent::flags`].
pub mod process_flags {
    /// The OOM killer chose this process (oom:mark_victim named it): its SIGKILL is the OOM
    /// killer's, which the exit carries across a daemon restart.
    pub const OOM_VICTIM: u32 = 1;
    /// The entry is counted in `FOLLOWED` ([`super::slot`]): whoever removes it uncounts it.
    pub const COUNTED: u32 = 2;
}

/// Entries of the `FOLLOWED` and `WATCHED_SLOTS` arrays: the prefilters in front of
/// `PROCESSES` and `WATCHED_CGROUPS` (512 KiB each).
pub const FOLLOWED_SLOTS: u32 = 65_536;
/// `BPF_F_MMAPABLE` (include/uapi/linux/bpf.h, 5.5+): `FOLLOWED` is mapped by userspace,
/// whose atomic adds then share the kernel's.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;

/// The prefilter every hot path asks before its `PROCESSES` lookup. A hash lookup that misses
/// costs about 200 ns here (its bucket is cold in a fork storm); an array lookup is inlined by
/// the verifier and hits a small table. Slot `tgid % FOLLOWED_SLOTS` holds, for the processes
/// followed there, their count in the low 32 bits and the sum of their tgids in the high 32
/// (mod 2^32): following adds [`slot::delta`], unfollowing subtracts it. Addition commutes, so
/// the kernel (BPF_XADD, every kernel) and userspace (an atomic add on the mmapped array) update
/// slots from any CPU in any order and a slot is always exact: no follower, or one follower
/// that is another tgid, means "not followed"; two or more means "ask `PROCESSES`". An entry is
/// counted before it is inserted and uncounted after it is removed ([`process_flags::COUNTED`]),
/// so no probe ever finds an entry its slot hides.
pub mod slot {
    use super::FOLLOWED_SLOTS;

    /// The slot of `tgid`.
    pub const fn index(tgid: u32) -> u32 {
        tgid & (FOLLOWED_SLOTS - 1)
    }

    /// What following `tgid` adds to its slot (mod 2^64); unfollowing adds its negation.
    pub const fn delta(tgid: u32) -> u64 {
        ((tgid as u64) << 32).wrapping_add(1)
    }

    /// Whether `tgid` may be followed, by the value of its slot.
    pub const fn may_follow(slot: u64, tgid: u32) -> bool {
        let n = slot as u32;
        n != 0 && (n != 1 || (slot >> 32) as u32 == tgid)
    }
}

/// Value of the `WATCHED_CGROUPS` map.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WatchedCgroup {
    /// `bpf_ktime_get_ns` when the cgroup was seen (0: found by the start-up walk).
    pub since_ns: u64,
    /// The cgroup's main process (0: none yet), set once.
    pub main_tgid: u32,
    /// [`watched::NESTED`] and friends.
    pub flags: u32,
    /// Bytes of `path` used (0: not known).
    pub path_len: u32,
    pub _pad0: u32,
    /// The cgroup's path as cgroup_mkdir gave it (or the start-up walk found it), kept so an
    /// [`Ended`] termination still names its container after the cgroup is gone and no daemon
    /// read the mkdir.
    pub path: [u8; CGROUP_PATH_LEN],
}

impl WatchedCgroup {
    pub const ZERO: Self = Self {
        since_ns: 0,
        main_tgid: 0,
        flags: 0,
        path_len: 0,
        _pad0: 0,
        path: [0; CGROUP_PATH_LEN],
    };
}

impl Default for WatchedCgroup {
    fn default() -> Self {
        Self::ZERO
    }
}

/// Key of the `ENDED` map: the ended process's identity ([`Process::start_ticks`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EndedKey {
    pub tgid: u32,
    pub _pad0: u32,
    pub start_ticks: u64,
}

/// Value of the `ENDED` map: the exit of a container's main process that had a stop signal or
/// a SIGKILL, as it was emitted (with the signals the kernel kept), and its cgroup's path. The
/// kernel keeps it until a daemon has journaled the record (and deletes it): a daemon killed
/// before that, or a ring buffer that overflowed while no daemon read it, loses nothing. A
/// full map is counted ([`Counter::EndedFull`]); the exit event still goes to the ring.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Ended {
    pub exit: ProcessExitEvent,
    /// The container's cgroup (the main process's, as followed), whose path `path` is.
    pub cgroup_id: u64,
    /// Bytes of `path` used (0: the cgroup's path was not known).
    pub path_len: u32,
    pub _pad0: u32,
    pub path: [u8; CGROUP_PATH_LEN],
}

/// [`WatchedCgroup::flags`].
pub mod watched {
    /// A cgroup below a container that has a main process (a container's own sub-cgroups:
    /// docker-in-docker, a kind node's pods): its processes belong to that container and
    /// never make a container of their own.
    pub const NESTED: u32 = 1;
    /// The entry is counted in `WATCHED_SLOTS` ([`super::slot`], keyed by the id's low 32
    /// bits): whoever removes it uncounts it.
    pub const COUNTED: u32 = 2;
}

/// `si_code` values (include/uapi/asm-generic/siginfo.h).
pub const SI_USER: i32 = 0;
pub const SI_KERNEL: i32 = 0x80;

/// Indexes of the `COUNTERS` per-CPU array. Numbers are never reused.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Ring buffer full: a record was lost (one counter per probe).
    RingbufFullSignalGenerate = 0,
    RingbufFullSignalDeliver = 1,
    RingbufFullProcessExit = 2,
    RingbufFullCgroup = 3,
    RingbufFullOom = 4,
    /// A repeated signal inside the de-duplication window, not emitted (by design, not a loss).
    SignalDeduplicated = 5,
    /// `PROCESSES` insert failed (map full): that process is not followed.
    ProcessesFull = 6,
    /// `WATCHED_CGROUPS` insert failed (map full): signals to that container are not seen.
    WatchedInsertFailed = 7,
    /// A cgroup path longer than [`CGROUP_PATH_LEN`] was cut.
    CgroupPathTruncated = 8,
    /// A `bpf_probe_read_kernel` of a kernel struct failed.
    KernelReadFailed = 9,
    RingbufFullExec = 10,
    /// A signal to a container's main process from inside that container (its own
    /// processes, a preStop hook's `kill 1`): not a stop by the runtime, never recorded.
    SelfSignal = 11,
    /// A `PROCESSES` entry whose start time did not match the live process with its tgid:
    /// the entry's process ended unseen (removed when found).
    StaleProcess = 12,
    /// An exec in a container cgroup below one with a main process: not a container.
    NestedCgroup = 13,
    /// A stop signal or SIGKILL to a main process already exiting, which the kernel dropped
    /// for that (`prepare_signal()` after SIGNAL_GROUP_EXIT): it changes nothing, no record.
    TargetExiting = 14,
    /// `ENDED` insert failed (map full: no daemon deleted what it recorded for a long time):
    /// that termination is only in the ring buffer, and lost if the ring is not read in time.
    EndedFull = 15,
    /// An exec session exec'd the program it was already reported running: not emitted (by
    /// design: its program list already has it).
    SessionExecRepeated = 16,
    /// An exec session exec'd a new program past [`MAX_SESSION_EXECS`]: not emitted (its
    /// program list in the record stops there).
    SessionExecCapped = 17,
    /// `NETNS` insert failed (map full): that pod's (or host port's) connections are not
    /// counted.
    NetnsFull = 18,
    /// A host-network container listened on more than [`HOST_PORTS`] ports: the rest are not
    /// counted.
    HostPortsFull = 19,
    /// A main process's network namespace, or its runtime's, could not be read at its exec:
    /// its connections are not counted.
    NetnsUnknown = 20,
}

impl Counter {
    /// Every counter, in slot order (userspace gives each a meaning; see observer's
    /// `kernel::loader::meaning`).
    pub const ALL: [Self; 21] = [
        Self::RingbufFullSignalGenerate,
        Self::RingbufFullSignalDeliver,
        Self::RingbufFullProcessExit,
        Self::RingbufFullCgroup,
        Self::RingbufFullOom,
        Self::SignalDeduplicated,
        Self::ProcessesFull,
        Self::WatchedInsertFailed,
        Self::CgroupPathTruncated,
        Self::KernelReadFailed,
        Self::RingbufFullExec,
        Self::SelfSignal,
        Self::StaleProcess,
        Self::NestedCgroup,
        Self::TargetExiting,
        Self::EndedFull,
        Self::SessionExecRepeated,
        Self::SessionExecCapped,
        Self::NetnsFull,
        Self::HostPortsFull,
        Self::NetnsUnknown,
    ];
}

/// Size of the `COUNTERS` array.
pub const COUNTER_SLOTS: u32 = 32;

/// Offsets of the kernel struct fields the probes read, taken from the running kernel's BTF
/// (/sys/kernel/btf/vmlinux) at load time: aya cannot emit CO-RE relocations from Rust, and
/// these layouts change with kernel version and config.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.tgid` (pid_t).
    pub task_tgid: u32,
    /// `task_struct.pid` (pid_t).
    pub task_pid: u32,
    /// `task_struct.cgroups` (struct css_set *).
    pub task_cgroups: u32,
    /// `task_struct.exit_code` (int).
    pub task_exit_code: u32,
    /// `task_struct.comm` (char[16]).
    pub task_comm: u32,
    /// `css_set.dfl_cgrp` (struct cgroup *).
    pub css_set_dfl_cgrp: u32,
    /// `cgroup.kn` (struct kernfs_node *).
    pub cgroup_kn: u32,
    /// `kernfs_node.id` (u64): the cgroup id `bpf_get_current_cgroup_id()` returns.
    pub kernfs_node_id: u32,
    /// `task_struct.sighand` (struct sighand_struct *).
    pub task_sighand: u32,
    /// `sighand_struct.action` (struct k_sigaction[_NSIG]); `sa.sa_handler` is its first word.
    pub sighand_action: u32,
    /// `sizeof(struct k_sigaction)`.
    pub k_sigaction_size: u32,
    /// `task_struct.thread_pid` (struct pid *).
    pub task_thread_pid: u32,
    /// `pid.level` (unsigned int): depth of the task's pid namespace (0 = the host's).
    pub pid_level: u32,
    /// `pid.numbers` (struct upid[]): the task's pid in each namespace, host first.
    pub pid_numbers: u32,
    /// `sizeof(struct upid)`; `upid.nr` is its first field.
    pub upid_size: u32,
    /// `task_struct.real_parent` (struct task_struct *).
    pub task_real_parent: u32,
    /// `task_struct.group_leader` (struct task_struct *).
    pub task_group_leader: u32,
    /// `task_struct.signal` (struct signal_struct *).
    pub task_signal: u32,
    /// `signal_struct.live` (atomic_t): threads of the group that have not begun to exit.
    pub signal_live: u32,
    /// `signal_struct.flags` (unsigned int): `SIGNAL_GROUP_EXIT` and friends.
    pub signal_flags: u32,
    /// `signal_struct.group_exit_code` (int).
    pub signal_group_exit_code: u32,
    /// `task_struct.blocked` (sigset_t, one u64 word on 64-bit: `_NSIG_WORDS` = 1).
    pub task_blocked: u32,
    /// `task_struct.real_blocked` (sigset_t): the mask saved by sigtimedwait(2) while it waits.
    pub task_real_blocked: u32,
    /// `task_struct.start_boottime` (u64 ns, CLOCK_BOOTTIME at fork).
    pub task_start_boottime: u32,
    /// `cgroup.self` + `cgroup_subsys_state.parent`: the parent's `self` css (NULL at the
    /// root); the parent cgroup is that pointer minus `cgroup_self` (kernel/cgroup
    /// `cgroup_parent()`).
    pub cgroup_parent_css: u32,
    /// `cgroup.self`, the offset of the embedded css.
    pub cgroup_self: u32,
    /// What the traffic probe reads ([`NetOffsets`]); all zero where it is not loaded.
    pub net: NetOffsets,
}

/// The offsets the traffic probe (`probes/net.rs`) and the exec probe's namespace reads use:
/// resolved together, or all zero (the probe is not loaded, and `net_cookie` 0 turns the
/// namespace reads off).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetOffsets {
    /// `sock.__sk_common` + `sock_common.skc_net` (possible_net_t, whose one member is the
    /// `struct net *`).
    pub sock_net: u32,
    /// `net.net_cookie` (u64).
    pub net_cookie: u32,
    /// `task_struct.nsproxy` (struct nsproxy *).
    pub task_nsproxy: u32,
    /// `nsproxy.net_ns` (struct net *).
    pub nsproxy_net_ns: u32,
    /// `sock.sk_protocol` (u16, 5.6+).
    pub sock_protocol: u32,
    /// `sock.sk_rx_dst_ifindex` (int, 5.16+): the interface a passive open's SYN came in on.
    pub sock_rx_ifindex: u32,
    /// `sock_common.skc_family` (unsigned short).
    pub skc_family: u32,
    /// `inet_sock.inet_sport` (__be16): the local port. Not `skc_num`, which `inet_put_port()`
    /// zeroes before the state change to CLOSE of a socket whose port was not bound by hand.
    pub inet_sport: u32,
    /// `sock_common.skc_daddr` (__be32): the peer's IPv4 address (a v6 socket's mapped one).
    pub skc_daddr: u32,
    /// `sock_common.skc_v6_daddr` (struct in6_addr).
    pub skc_v6_daddr: u32,
}

impl NetOffsets {
    pub const ZERO: Self = Self {
        sock_net: 0,
        net_cookie: 0,
        task_nsproxy: 0,
        nsproxy_net_ns: 0,
        sock_protocol: 0,
        sock_rx_ifindex: 0,
        skc_family: 0,
        inet_sport: 0,
        skc_daddr: 0,
        skc_v6_daddr: 0,
    };
}

/// `SIGNAL_GROUP_EXIT` in include/linux/sched/signal.h (0x4 in 6.1, 6.12 and 6.18).
pub const SIGNAL_GROUP_EXIT: u32 = 0x0000_0004;

/// The `CONFIG` global, written by observer when it loads the object.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Bit n set: signal n is a stop signal worth reporting. SIGKILL is always reported.
    pub stop_signal_mask: u64,
    /// A repeated (target, signal) inside this window is counted, not emitted.
    pub dedupe_window_ns: u64,
    /// `cgroup_prefix` as little-endian words with the mask of the bytes that count (0 past
    /// its end): cgroup_mkdir compares the record's path 8 bytes at a time.
    /// Beside the stop-signal mask, so `/kubepods` shares its cache line.
    pub cgroup_prefix_words: [PrefixWord; CGROUP_PREFIX_LEN / 8],
    pub offsets: KernelOffsets,
    /// `hierarchy_id` of the cgroup v2 hierarchy (0, `cgrp_dfl_root`) as seen in `root`.
    pub v2_hierarchy_id: u32,
    pub cgroup_prefix_len: u32,
    pub cgroup_prefix: [u8; CGROUP_PREFIX_LEN],
}

/// Eight bytes of the cgroup prefix and which of them count.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixWord {
    pub word: u64,
    pub mask: u64,
}

impl PrefixWord {
    pub const ZERO: Self = Self { word: 0, mask: 0 };

    /// `prefix` cut into words (its bytes in memory order, little-endian as BPF loads them).
    pub fn split(prefix: &[u8]) -> [Self; CGROUP_PREFIX_LEN / 8] {
        let mut out = [Self::ZERO; CGROUP_PREFIX_LEN / 8];
        for (i, chunk) in prefix.chunks(8).take(out.len()).enumerate() {
            let mut word = [0u8; 8];
            let mut mask = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            mask[..chunk.len()].fill(0xff);
            out[i] = Self { word: u64::from_le_bytes(word), mask: u64::from_le_bytes(mask) };
        }
        out
    }

    /// True when the 8 path bytes `path_word` match this word where it counts.
    pub const fn matches(&self, path_word: u64) -> bool {
        (path_word ^ self.word) & self.mask == 0
    }
}

impl Config {
    /// Defaults before userspace fills in the real values (all offsets 0 make every kernel
    /// read fail and count, never read a wrong field).
    pub const ZERO: Self = Self {
        stop_signal_mask: 0,
        dedupe_window_ns: 0,
        cgroup_prefix_words: [PrefixWord::ZERO; CGROUP_PREFIX_LEN / 8],
        offsets: KernelOffsets {
            task_tgid: 0,
            task_pid: 0,
            task_cgroups: 0,
            task_exit_code: 0,
            task_comm: 0,
            css_set_dfl_cgrp: 0,
            cgroup_kn: 0,
            kernfs_node_id: 0,
            task_sighand: 0,
            sighand_action: 0,
            k_sigaction_size: 0,
            task_thread_pid: 0,
            pid_level: 0,
            pid_numbers: 0,
            upid_size: 0,
            task_real_parent: 0,
            task_group_leader: 0,
            task_signal: 0,
            signal_live: 0,
            signal_flags: 0,
            signal_group_exit_code: 0,
            task_blocked: 0,
            task_real_blocked: 0,
            task_start_boottime: 0,
            cgroup_parent_css: 0,
            cgroup_self: 0,
            net: NetOffsets::ZERO,
        },
        v2_hierarchy_id: 0,
        cgroup_prefix_len: 0,
        cgroup_prefix: [0; CGROUP_PREFIX_LEN],
    };
}

// Layouts are part of the contract: no implicit padding, sizes pinned.
/// Entries of `PROCESSES` and of `WATCHED_CGROUPS`, preallocated (about 3.5 MiB and 5 MiB):
/// a node's containers' main processes and exec sessions, and their cgroups, with room for
/// 10,000 containers. A full map is counted (`processes_map_full`, `watched_map_full`).
pub const PROCESSES_MAX: u32 = 16_384;
pub const WATCHED_CGROUPS_MAX: u32 = 16_384;
/// Entries of `ENDED`, preallocated (about 4 MiB): terminations not yet recorded, which is a
/// few at a time while a daemon runs, and what ends while none does (a rollout of 8,000
/// containers' stops on one node before its daemon is back).
pub const ENDED_MAX: u32 = 8_192;

/// Bumped by hand when the meaning of a map's contents changes without its size changing.
const LAYOUT_REVISION: u64 = 6;

/// What a daemon and the probes it finds pinned must agree on to share the maps: the maps'
/// value layouts and sizes, the events and the counters (FNV-1a over them). A new daemon of
/// another layout does not adopt the pins of an old one (see observer's `kernel/pins.rs`).
pub const LAYOUT: u64 = {
    let parts: [u64; 25] = [
        LAYOUT_REVISION,
        size_of::<SignalFact>() as u64,
        size_of::<EventHeader>() as u64,
        size_of::<SignalGenerateEvent>() as u64,
        size_of::<SignalDeliverEvent>() as u64,
        size_of::<ProcessExitEvent>() as u64,
        size_of::<MainProcessEvent>() as u64,
        size_of::<CgroupEvent>() as u64,
        size_of::<OomVictimEvent>() as u64,
        size_of::<ExecSessionEvent>() as u64,
        size_of::<Process>() as u64,
        size_of::<WatchedCgroup>() as u64,
        EventKind::ALL.len() as u64,
        Counter::ALL.len() as u64,
        COUNTER_SLOTS as u64,
        PROCESSES_MAX as u64,
        WATCHED_CGROUPS_MAX as u64,
        size_of::<EndedKey>() as u64,
        size_of::<Ended>() as u64,
        ENDED_MAX as u64,
        FOLLOWED_SLOTS as u64,
        size_of::<NetKey>() as u64,
        size_of::<Traffic>() as u64,
        NETNS_MAX as u64,
        NODE_ADDRS as u64,
    ];
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < parts.len() {
        let mut b = 0;
        while b < 8 {
            h ^= (parts[i] >> (b * 8)) & 0xff;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
            b += 1;
        }
        i += 1;
    }
    h
};

const _: () = assert!(size_of::<EventHeader>() == 16);
const _: () = assert!(size_of::<SignalGenerateEvent>() == 16 + 32 + 8 + 24 + 32);
const _: () = assert!(size_of::<SignalDeliverEvent>() == 16 + 16 + 8 + 16);
const _: () = assert!(size_of::<SignalFact>() == 56);
const _: () = assert!(size_of::<NetOf>() == 8 + 2 * HOST_PORTS + 8);
const _: () = assert!(size_of::<Traffic>() == 104);
const _: () = assert!(size_of::<NetKey>() == 16);
const _: () =
    assert!(size_of::<ProcessExitEvent>() == 16 + 8 + 8 + 8 + 8 + 8 + 16 + 2 * 56 + 24 + 3 * 104);
const _: () = assert!(size_of::<MainProcessEvent>() == 16 + 8 + 8 + 8 + 32);
const _: () = assert!(size_of::<CgroupEvent>() == 16 + 16 + CGROUP_PATH_LEN);
const _: () = assert!(size_of::<OomVictimEvent>() == 16 + 16);
const _: () = assert!(size_of::<ExecSessionEvent>() == 16 + 16 + 32);
const _: () = assert!(size_of::<Process>() == 56 + 2 * 56 + 16 + 24 + 2 * 104);
const _: () = assert!(size_of::<WatchedCgroup>() == 24 + CGROUP_PATH_LEN);
const _: () = assert!(size_of::<EndedKey>() == 16);
const _: () = assert!(size_of::<Ended>() == size_of::<ProcessExitEvent>() + 16 + CGROUP_PATH_LEN);
const _: () = assert!(size_of::<NetOffsets>() == 40);
const _: () = assert!(size_of::<KernelOffsets>() == 144);
const _: () =
    assert!(size_of::<Config>() == 16 + 2 * CGROUP_PREFIX_LEN + 144 + 4 + 4 + CGROUP_PREFIX_LEN);

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: all of these are #[repr(C)], Copy, made of integers and integer arrays, with no
    // implicit padding (pinned by the size assertions above): every bit pattern is valid.
    unsafe impl aya::Pod for EventHeader {}
    unsafe impl aya::Pod for SignalGenerateEvent {}
    unsafe impl aya::Pod for SignalDeliverEvent {}
    unsafe impl aya::Pod for ProcessExitEvent {}
    unsafe impl aya::Pod for CgroupEvent {}
    unsafe impl aya::Pod for OomVictimEvent {}
    unsafe impl aya::Pod for ExecSessionEvent {}
    unsafe impl aya::Pod for Process {}
    unsafe impl aya::Pod for SignalFact {}
    unsafe impl aya::Pod for MainProcessEvent {}
    unsafe impl aya::Pod for WatchedCgroup {}
    unsafe impl aya::Pod for EndedKey {}
    unsafe impl aya::Pod for Ended {}
    unsafe impl aya::Pod for KernelOffsets {}
    unsafe impl aya::Pod for NetOffsets {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for NetKey {}
    unsafe impl aya::Pod for Traffic {}
    unsafe impl aya::Pod for NetOf {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_status_keeps_the_fatal_signal() {
        assert_eq!(ProcessExitEvent::decode_status(0), (Some(0), None));
        assert_eq!(ProcessExitEvent::decode_status(3 << 8), (Some(3), None));
        assert_eq!(ProcessExitEvent::decode_status(9), (None, Some(9)));
        // SIGQUIT with a core dump.
        assert_eq!(ProcessExitEvent::decode_status(0x80 | 3), (None, Some(3)));
    }

    #[test]
    fn a_slot_says_exactly_who_may_be_followed_in_any_order_of_updates() {
        let (a, b, c) = (7, 7 + FOLLOWED_SLOTS, 7 + 2 * FOLLOWED_SLOTS);
        assert_eq!((slot::index(a), slot::index(b)), (7, 7));
        let add = |s: u64, t: u32| s.wrapping_add(slot::delta(t));
        let sub = |s: u64, t: u32| s.wrapping_sub(slot::delta(t));
        let mut s = 0;
        assert!(!slot::may_follow(s, a));
        s = add(s, a);
        assert!(slot::may_follow(s, a) && !slot::may_follow(s, b));
        s = add(s, b);
        assert!(slot::may_follow(s, a) && slot::may_follow(s, b) && slot::may_follow(s, c));
        // Unfollowed in another order than followed: exact again.
        s = sub(s, a);
        assert!(slot::may_follow(s, b) && !slot::may_follow(s, a));
        s = sub(s, b);
        assert_eq!(s, 0);
        // The largest tgids (pid_max 4,194,304) and many followers: the sum wraps, the count
        // does not, and unfollowing them all leaves nothing.
        let many: [u32; 3] =
            [4_194_303, 4_194_303 - FOLLOWED_SLOTS, 4_194_303 - 5 * FOLLOWED_SLOTS];
        let mut s = 0;
        for _ in 0..2000 {
            for t in many {
                s = add(s, t);
            }
        }
        assert_eq!(s as u32, 6000);
        for _ in 0..2000 {
            for t in many.iter().rev() {
                s = sub(s, *t);
            }
        }
        assert_eq!(s, 0);
    }

    #[test]
    fn event_kinds_round_trip() {
        for k in 1..=8 {
            assert_eq!(EventKind::from_u32(k).map(|k| k as u32), Some(k));
            assert_eq!(EventKind::ALL[k as usize - 1] as u32, k);
        }
        for (slot, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, slot);
            assert!((*c as u32) < COUNTER_SLOTS);
        }
        assert_eq!(EventKind::from_u32(0), None);
        assert_eq!(EventKind::from_u32(9), None);
    }
}
