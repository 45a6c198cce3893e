//! Ring-buffer records decoded into typed events. Pure: no aya, no I/O.

use observer_ebpf::{
    disposition, process_flags, role, signal_result, CgroupEvent, EventHeader, EventKind,
    ExecSessionEvent, MainProcessEvent, OomVictimEvent, ProcessExitEvent, SignalDeliverEvent,
    SignalFact, SignalGenerateEvent, SI_KERNEL,
};

/// What the kernel did with a signal at generation (`enum trace_signal_result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalResult {
    Delivered,
    /// Dropped: SIG_IGN, or a pid namespace's init with no handler.
    Ignored,
    AlreadyPending,
    OverflowFail,
    LoseInfo,
    Unknown(u32),
}

impl From<u32> for SignalResult {
    fn from(v: u32) -> Self {
        match v {
            signal_result::DELIVERED => Self::Delivered,
            signal_result::IGNORED => Self::Ignored,
            signal_result::ALREADY_PENDING => Self::AlreadyPending,
            signal_result::OVERFLOW_FAIL => Self::OverflowFail,
            signal_result::LOSE_INFO => Self::LoseInfo,
            other => Self::Unknown(other),
        }
    }
}

/// A signal's disposition in the target process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Disposition {
    /// SIG_DFL: for a pid namespace's init the kernel drops the signal; for any other process
    /// its default action (termination, for the stop signals) is taken.
    Default,
    /// SIG_IGN.
    Ignored,
    /// A user handler.
    Handled,
    /// Blocked at generation (`blocked` or `real_blocked`): pending until sigwait(2),
    /// sigtimedwait(2) or a signalfd takes it, or the process unblocks it (tini, runtimes
    /// built on sigwait). Only the target's disposition at generation can be this.
    Blocked,
}

impl Disposition {
    fn from_raw(v: u32) -> Option<Self> {
        match v {
            disposition::DEFAULT => Some(Self::Default),
            disposition::IGNORED => Some(Self::Ignored),
            disposition::HANDLED => Some(Self::Handled),
            disposition::BLOCKED => Some(Self::Blocked),
            _ => None,
        }
    }
}

/// A process as seen by the kernel: host tgid and comm.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Proc {
    pub pid: u32,
    pub comm: String,
}

/// A process's identity: its tgid and its start time in clock ticks since boot (what
/// /proc/<pid>/stat calls `starttime`), so a reused tgid is another process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcKey {
    pub tgid: u32,
    pub start_ticks: u64,
}

/// Who sent a signal, relative to the container it was sent to. (A sender inside that
/// container never makes a record: see `probes/signal.rs`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A process outside every container cgroup: the runtime (runc, crun, the shim), kubelet,
    /// an operator's kill.
    Host,
    /// A process in another container's cgroup (a sidecar or a debug container sharing the
    /// pod's pid namespace).
    OtherContainer,
    /// The kernel on its own behalf (si_code SI_KERNEL): the OOM killer, a pid namespace's
    /// init dying.
    Kernel,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::OtherContainer => "other_container",
            Self::Kernel => "kernel",
        }
    }
}

/// The sender of a signal as a record shows it: `from` says where, relative to the container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sender {
    pub pid: u32,
    pub comm: String,
    pub from: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalGenerate {
    pub ktime_ns: u64,
    pub sig: u32,
    pub result: SignalResult,
    /// The target's disposition for `sig` at the time it was sent.
    pub target_handler: Option<Disposition>,
    pub target: Proc,
    pub target_key: ProcKey,
    pub target_cgroup_id: u64,
    /// `from` is [`Origin::Kernel`] or [`Origin::Host`] as decoded; the pipeline, which knows
    /// the containers' cgroups, makes it [`Origin::OtherContainer`] where the sender is in one.
    pub sender: Sender,
    pub sender_cgroup_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalDeliver {
    pub ktime_ns: u64,
    pub sig: u32,
    pub disposition: Disposition,
    pub key: ProcKey,
    pub cgroup_id: u64,
}

impl Sender {
    /// As the kernel reports it: [`Origin::Kernel`] for `SEND_SIG_PRIV` (si_code SI_KERNEL),
    /// else [`Origin::Host`] until the pipeline, which knows the containers, says otherwise.
    fn decoded(tgid: u32, comm: &[u8], si_code: i32) -> Self {
        let from = if si_code == SI_KERNEL { Origin::Kernel } else { Origin::Host };
        Self { pid: tgid, comm: cstr(comm), from }
    }
}

/// What the kernel kept of a main process's signals ([`observer_ebpf::SignalFact`]), as the
/// events they were: its exit event and its `PROCESSES` entry carry them, for a daemon that
/// did not read those events (it started since, or the ring was full).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Kept {
    pub stop: Option<SignalGenerate>,
    pub stop_delivered: Option<SignalDeliver>,
    pub kill: Option<SignalGenerate>,
    /// The OOM killer's mark, when the kernel kept one (stamped at the SIGKILL, which the
    /// OOM killer sends just before it marks its victim).
    pub oom: Option<OomVictim>,
    /// Its connections as the kernel counted them at the stop signal, SIGKILL and exit (a
    /// main process's exit only: see [`crate::traffic`]).
    pub traffic: Option<crate::traffic::Seen>,
}

impl Kept {
    /// The facts of process `key` (comm `comm`, container cgroup `cgroup_id`, its
    /// `process_flags`).
    pub fn from_facts(
        key: ProcKey,
        comm: &str,
        cgroup_id: u64,
        flags: u32,
        stop: &SignalFact,
        kill: &SignalFact,
    ) -> Self {
        let generate = |f: &SignalFact| {
            (f.at_ns != 0).then(|| SignalGenerate {
                ktime_ns: f.at_ns,
                sig: f.sig,
                result: f.result.into(),
                target_handler: Disposition::from_raw(f.handler),
                target: Proc { pid: key.tgid, comm: comm.into() },
                target_key: key,
                target_cgroup_id: cgroup_id,
                sender: Sender::decoded(f.sender_tgid, &f.sender_comm, f.si_code),
                sender_cgroup_id: f.sender_cgroup_id,
            })
        };
        let stop_delivered = (stop.at_ns != 0 && stop.delivered != 0).then(|| SignalDeliver {
            // At or after the generation: the correlator takes a delivery no earlier.
            ktime_ns: stop.at_ns,
            sig: stop.sig,
            disposition: Disposition::from_raw(stop.delivered - 1).unwrap_or(Disposition::Handled),
            key,
            cgroup_id,
        });
        let oom = (flags & process_flags::OOM_VICTIM != 0 && kill.at_ns != 0)
            .then_some(OomVictim { ktime_ns: kill.at_ns, pid: key.tgid });
        Self { stop: generate(stop), stop_delivered, kill: generate(kill), oom, traffic: None }
    }

    pub fn is_empty(&self) -> bool {
        self.stop.is_none() && self.kill.is_none()
    }

    /// The events, in the order they happened.
    pub fn events(&self) -> Vec<Event> {
        let mut out: Vec<Event> = Vec::new();
        out.extend(self.stop.clone().map(Event::SignalGenerate));
        out.extend(self.stop_delivered.clone().map(Event::SignalDeliver));
        out.extend(self.kill.clone().map(Event::SignalGenerate));
        out.extend(self.oom.clone().map(Event::OomVictim));
        // Stable: the OOM mark stays after the SIGKILL it shares a time with.
        out.sort_by_key(|e| match e {
            Event::SignalGenerate(g) => g.ktime_ns,
            Event::SignalDeliver(d) => d.ktime_ns,
            Event::OomVictim(o) => o.ktime_ns,
            _ => 0,
        });
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessExit {
    pub ktime_ns: u64,
    pub key: ProcKey,
    /// A main process's exit (else an exec session's).
    pub main: bool,
    /// Its stop signal and SIGKILL as the kernel kept them (boxed: most exits are read with
    /// their signals' own events, and `Event` stays small).
    pub kept: Box<Kept>,
    pub comm: String,
    /// exit(code), when the process exited.
    pub exit_code: Option<u32>,
    /// The fatal signal, when a signal ended it.
    pub exit_signal: Option<u32>,
    pub cgroup_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupChange {
    pub ktime_ns: u64,
    pub id: u64,
    pub level: u32,
    /// Hierarchy-relative path, e.g. `/kubepods/besteffort/pod<uid>/<id>`.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomVictim {
    pub ktime_ns: u64,
    pub pid: u32,
}

/// A process the runtime exec'd into a container from outside it (see the probe's docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSession {
    pub ktime_ns: u64,
    /// The session's host tgid and its comm after exec.
    pub session: Proc,
    /// The process that started it (the runtime: runc, crun, observer drill).
    pub parent: Proc,
    pub cgroup_id: u64,
}

/// A container's main process, learnt as the runtime exec'd it (see `probes/exec.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MainProcess {
    pub ktime_ns: u64,
    pub main: Proc,
    pub key: ProcKey,
    pub parent: Proc,
    pub cgroup_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    SignalGenerate(SignalGenerate),
    SignalDeliver(SignalDeliver),
    ProcessExit(ProcessExit),
    CgroupMkdir(CgroupChange),
    CgroupRmdir(CgroupChange),
    OomVictim(OomVictim),
    ExecSession(ExecSession),
    MainProcess(MainProcess),
}

impl Event {
    /// The kind of record it was decoded from.
    pub fn kind(&self) -> EventKind {
        match self {
            Self::SignalGenerate(_) => EventKind::SignalGenerate,
            Self::SignalDeliver(_) => EventKind::SignalDeliver,
            Self::ProcessExit(_) => EventKind::ProcessExit,
            Self::CgroupMkdir(_) => EventKind::CgroupMkdir,
            Self::CgroupRmdir(_) => EventKind::CgroupRmdir,
            Self::OomVictim(_) => EventKind::OomVictim,
            Self::ExecSession(_) => EventKind::ExecSession,
            Self::MainProcess(_) => EventKind::MainProcess,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("{kind:?} record of {len} bytes, expected {expected}")]
    Size { kind: EventKind, len: usize, expected: usize },
}

impl DecodeError {
    /// Label for the decode-failure counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Short(_) => "short",
            Self::UnknownKind(_) => "unknown_kind",
            Self::Size { .. } => "size",
        }
    }
}

/// Reads a `T` from the start of `bytes` (which is at least `size_of::<T>()` long).
fn read<T: Copy>(bytes: &[u8]) -> T {
    debug_assert!(bytes.len() >= std::mem::size_of::<T>());
    // SAFETY: length checked by every caller; T is a #[repr(C)] Pod from observer-ebpf, valid
    // for any bit pattern; read_unaligned copes with the ring buffer's 8-byte alignment.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

fn sized<T: Copy>(bytes: &[u8], kind: EventKind) -> Result<T, DecodeError> {
    let expected = std::mem::size_of::<T>();
    if bytes.len() < expected {
        return Err(DecodeError::Size { kind, len: bytes.len(), expected });
    }
    Ok(read(bytes))
}

/// NUL-terminated kernel string -> String (lossy).
fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Decodes one ring-buffer record.
fn process_exit(e: &ProcessExitEvent) -> Event {
    let (exit_code, exit_signal) = ProcessExitEvent::decode_status(e.exit_code);
    let key = ProcKey { tgid: e.tgid, start_ticks: e.start_ticks };
    let comm = cstr(&e.comm);
    Event::ProcessExit(ProcessExit {
        ktime_ns: e.header.ktime_ns,
        key,
        main: e.role == role::MAIN,
        kept: Box::new(Kept {
            traffic: (e.role == role::MAIN).then(|| crate::traffic::Seen::from_exit(e)).flatten(),
            ..Kept::from_facts(key, &comm, e.cgroup_id, e.flags, &e.stop, &e.kill)
        }),
        comm,
        exit_code,
        exit_signal,
        cgroup_id: e.cgroup_id,
    })
}

/// A termination the kernel kept in `ENDED`: its exit, as the ring had it, and its container's
/// cgroup (id and path) when the kernel knew the path.
pub fn ended(e: &observer_ebpf::Ended) -> (Event, Option<CgroupChange>) {
    let len = (e.path_len as usize).min(e.path.len());
    let cgroup = (len > 0).then(|| CgroupChange {
        ktime_ns: e.exit.header.ktime_ns,
        id: e.cgroup_id,
        level: 0,
        path: cstr(&e.path[..len]),
    });
    (process_exit(&e.exit), cgroup)
}

pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    if bytes.len() < std::mem::size_of::<EventHeader>() {
        return Err(DecodeError::Short(bytes.len()));
    }
    let header: EventHeader = read(bytes);
    let kind = EventKind::from_u32(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
    Ok(match kind {
        EventKind::SignalGenerate => {
            let e: SignalGenerateEvent = sized(bytes, kind)?;
            Event::SignalGenerate(SignalGenerate {
                ktime_ns: e.header.ktime_ns,
                sig: e.sig,
                result: e.result.into(),
                target_handler: Disposition::from_raw(e.target_handler),
                target: Proc { pid: e.target_tgid, comm: cstr(&e.target_comm) },
                target_key: ProcKey { tgid: e.target_tgid, start_ticks: e.target_start_ticks },
                target_cgroup_id: e.target_cgroup_id,
                sender: Sender::decoded(e.sender_tgid, &e.sender_comm, e.si_code),
                sender_cgroup_id: e.sender_cgroup_id,
            })
        }
        EventKind::SignalDeliver => {
            let e: SignalDeliverEvent = sized(bytes, kind)?;
            Event::SignalDeliver(SignalDeliver {
                ktime_ns: e.header.ktime_ns,
                sig: e.sig,
                disposition: Disposition::from_raw(e.disposition).unwrap_or(Disposition::Handled),
                key: ProcKey { tgid: e.tgid, start_ticks: e.start_ticks },
                cgroup_id: e.cgroup_id,
            })
        }
        EventKind::ProcessExit => process_exit(&sized::<ProcessExitEvent>(bytes, kind)?),
        EventKind::CgroupMkdir | EventKind::CgroupRmdir => {
            let e: CgroupEvent = sized(bytes, kind)?;
            let len = (e.path_len as usize).min(e.path.len());
            let change = CgroupChange {
                ktime_ns: e.header.ktime_ns,
                id: e.id,
                level: e.level,
                path: cstr(&e.path[..len]),
            };
            if kind == EventKind::CgroupMkdir {
                Event::CgroupMkdir(change)
            } else {
                Event::CgroupRmdir(change)
            }
        }
        EventKind::OomVictim => {
            let e: OomVictimEvent = sized(bytes, kind)?;
            Event::OomVictim(OomVictim { ktime_ns: e.header.ktime_ns, pid: e.pid })
        }
        EventKind::ExecSession => {
            let e: ExecSessionEvent = sized(bytes, kind)?;
            Event::ExecSession(ExecSession {
                ktime_ns: e.header.ktime_ns,
                session: Proc { pid: e.tgid, comm: cstr(&e.comm) },
                parent: Proc { pid: e.parent_tgid, comm: cstr(&e.parent_comm) },
                cgroup_id: e.cgroup_id,
            })
        }
        EventKind::MainProcess => {
            let e: MainProcessEvent = sized(bytes, kind)?;
            Event::MainProcess(MainProcess {
                ktime_ns: e.header.ktime_ns,
                main: Proc { pid: e.tgid, comm: cstr(&e.comm) },
                key: ProcKey { tgid: e.tgid, start_ticks: e.start_ticks },
                parent: Proc { pid: e.parent_tgid, comm: cstr(&e.parent_comm) },
                cgroup_id: e.cgroup_id,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use observer_ebpf::{CGROUP_PATH_LEN, TASK_COMM_LEN};

    fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: T is a padding-free #[repr(C)] struct.
        unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
        .to_vec()
    }

    fn comm(s: &str) -> [u8; TASK_COMM_LEN] {
        let mut c = [0; TASK_COMM_LEN];
        c[..s.len()].copy_from_slice(s.as_bytes());
        c
    }

    #[test]
    fn decodes_a_signal_generate_record() {
        let raw = SignalGenerateEvent {
            header: EventHeader { kind: EventKind::SignalGenerate as u32, cpu: 1, ktime_ns: 42 },
            sig: 15,
            si_code: 0,
            _pad0: 0,
            result: 1,
            group: 1,
            target_handler: 0,
            target_tgid: 100,
            target_tid: 100,
            sender_tgid: 7,
            sender_tid: 8,
            target_start_ticks: 1234,
            target_cgroup_id: 5000,
            sender_cgroup_id: 1,
            target_comm: comm("sleep"),
            sender_comm: comm("runc"),
        };
        let Event::SignalGenerate(e) = decode(&bytes_of(&raw)).unwrap() else { panic!() };
        assert_eq!(e.ktime_ns, 42);
        assert_eq!(e.result, SignalResult::Ignored);
        assert_eq!(e.target_handler, Some(Disposition::Default));
        assert_eq!(e.target, Proc { pid: 100, comm: "sleep".into() });
        assert_eq!(e.sender, Sender { pid: 7, comm: "runc".into(), from: Origin::Host });
        assert_eq!(e.target_key, ProcKey { tgid: 100, start_ticks: 1234 });
        assert_eq!(e.target_cgroup_id, 5000);
        // SEND_SIG_PRIV: the OOM killer's SIGKILL, from whichever task allocated.
        let oom = SignalGenerateEvent { sig: 9, si_code: SI_KERNEL, target_handler: 3, ..raw };
        let Event::SignalGenerate(e) = decode(&bytes_of(&oom)).unwrap() else { panic!() };
        assert_eq!(e.sender.from, Origin::Kernel);
        assert_eq!(e.target_handler, Some(Disposition::Blocked));
    }

    #[test]
    fn decodes_a_main_process_record() {
        let raw = MainProcessEvent {
            header: EventHeader { kind: EventKind::MainProcess as u32, cpu: 0, ktime_ns: 5 },
            tgid: 100,
            parent_tgid: 90,
            start_ticks: 777,
            cgroup_id: 5000,
            comm: comm("redis-server"),
            parent_comm: comm("containerd-shim"),
        };
        let Event::MainProcess(e) = decode(&bytes_of(&raw)).unwrap() else { panic!() };
        assert_eq!(e.key, ProcKey { tgid: 100, start_ticks: 777 });
        assert_eq!(e.main.comm, "redis-server");
        assert_eq!(e.parent, Proc { pid: 90, comm: "containerd-shim".into() });
        assert_eq!(e.cgroup_id, 5000);
    }

    #[test]
    fn decodes_the_connections_kept_at_stop_kill_and_exit() {
        use observer_ebpf::{net_flags, NetOf, Traffic};
        let counts = |since, established: i64, accepted, last| Traffic {
            since_ns: since,
            established: established as u64,
            accepted,
            last_accept_ns: last,
            listening: 1,
            ..Traffic::ZERO
        };
        let mut raw: ProcessExitEvent = unsafe { std::mem::zeroed() };
        raw.header = EventHeader { kind: EventKind::ProcessExit as u32, cpu: 0, ktime_ns: 90 };
        raw.role = role::MAIN;
        raw.net = NetOf { cookie: 4096, ports: [0; 4], flags: 0, _pad0: 0 };
        raw.traffic_stop = counts(1, 3, 10, 5);
        raw.traffic_exit = counts(1, -1, 12, 80);
        let Event::ProcessExit(e) = decode(&bytes_of(&raw)).unwrap() else { panic!() };
        let t = e.kept.traffic.expect("traffic");
        assert_eq!(t.scope, crate::traffic::Scope::PodNetwork);
        assert_eq!(t.counted_from, crate::traffic::CountedFrom::ContainerStart);
        assert_eq!(t.at_stop.map(|c| (c.established, c.accepted)), Some((3, 10)));
        // A gauge below zero stays negative (what traffic.rs reads as unknown), not 2^64 - 1.
        assert_eq!(t.at_exit.map(|c| (c.established, c.last_accept_ns)), Some((-1, Some(80))));
        assert_eq!(t.at_kill, None);

        // A host-network container: its ports, sorted, duplicates and free slots dropped.
        raw.net.flags = net_flags::HOST_NETWORK | net_flags::FROM_STOP;
        raw.net.ports = [8443, 0, 80, 8443];
        let Event::ProcessExit(e) = decode(&bytes_of(&raw)).unwrap() else { panic!() };
        let t = e.kept.traffic.expect("traffic");
        assert_eq!((t.scope, t.ports), (crate::traffic::Scope::HostPorts, vec![80, 8443]));
        assert_eq!(t.counted_from, crate::traffic::CountedFrom::StopSignal);
        // ... and one never seen listen has nothing counted.
        raw.net.ports = [0; 4];
        let Event::ProcessExit(e) = decode(&bytes_of(&raw)).unwrap() else { panic!() };
        assert_eq!(e.kept.traffic, None);
        // An exec session's exit carries none.
        raw.role = role::SESSION;
        raw.net.flags = 0;
        let Event::ProcessExit(e) = decode(&bytes_of(&raw)).unwrap() else { panic!() };
        assert_eq!(e.kept.traffic, None);
    }

    #[test]
    fn decodes_exit_status_and_cgroup_paths() {
        let raw = ProcessExitEvent {
            header: EventHeader { kind: EventKind::ProcessExit as u32, cpu: 0, ktime_ns: 9 },
            tgid: 100,
            tid: 100,
            start_ticks: 1,
            exit_code: 9,
            role: role::MAIN,
            flags: 0,
            _pad0: 0,
            cgroup_id: 5000,
            comm: comm("sleep"),
            stop: SignalFact {
                at_ns: 3,
                sender_cgroup_id: 1,
                sig: 15,
                si_code: 0,
                result: signal_result::IGNORED,
                handler: disposition::DEFAULT,
                sender_tgid: 42,
                delivered: 0,
                sender_comm: comm("runc"),
            },
            kill: SignalFact { at_ns: 0, ..Default::default() },
            net: Default::default(),
            traffic_stop: Default::default(),
            traffic_kill: Default::default(),
            traffic_exit: Default::default(),
        };
        let Event::ProcessExit(e) = decode(&bytes_of(&raw)).unwrap() else { panic!() };
        assert_eq!((e.exit_code, e.exit_signal), (None, Some(9)));
        // No network namespace learnt: no traffic.
        assert_eq!(e.kept.traffic, None);
        assert!(e.main);
        // The stop signal the kernel kept, as the event it was; no SIGKILL kept.
        let stop = e.kept.stop.as_ref().expect("the kept stop signal");
        assert_eq!((stop.ktime_ns, stop.sig, stop.result), (3, 15, SignalResult::Ignored));
        assert_eq!(stop.target_key, e.key);
        assert_eq!(stop.sender, Sender { pid: 42, comm: "runc".into(), from: Origin::Host });
        assert_eq!(stop.target_handler, Some(Disposition::Default));
        assert_eq!((e.kept.stop_delivered.is_none(), e.kept.kill.is_none()), (true, true));
        assert_eq!(e.kept.events().len(), 1);

        // An OOM victim's exit: its SIGKILL, then the OOM killer's mark at the same time.
        let mut oom = raw;
        oom.flags = process_flags::OOM_VICTIM;
        oom.kill = SignalFact { at_ns: 5, sig: 9, si_code: SI_KERNEL, ..Default::default() };
        let Event::ProcessExit(e) = decode(&bytes_of(&oom)).unwrap() else { panic!() };
        let kinds: Vec<EventKind> = e.kept.events().iter().map(Event::kind).collect();
        assert_eq!(
            kinds,
            [EventKind::SignalGenerate, EventKind::SignalGenerate, EventKind::OomVictim]
        );
        assert_eq!(e.kept.oom, Some(OomVictim { ktime_ns: 5, pid: 100 }));

        let mut path = [0u8; CGROUP_PATH_LEN];
        let p = b"/kubepods/besteffort/podx/abc";
        path[..p.len()].copy_from_slice(p);
        let raw = CgroupEvent {
            header: EventHeader { kind: EventKind::CgroupRmdir as u32, cpu: 0, ktime_ns: 1 },
            id: 77,
            level: 4,
            path_len: p.len() as u32,
            path,
        };
        let Event::CgroupRmdir(c) = decode(&bytes_of(&raw)).unwrap() else { panic!() };
        assert_eq!(c.path, "/kubepods/besteffort/podx/abc");
        assert_eq!(c.id, 77);
    }

    #[test]
    fn decodes_an_exec_session_record() {
        let raw = ExecSessionEvent {
            header: EventHeader { kind: EventKind::ExecSession as u32, cpu: 1, ktime_ns: 77 },
            tgid: 300,
            parent_tgid: 200,
            cgroup_id: 5000,
            comm: comm("sh"),
            parent_comm: comm("runc"),
        };
        let Event::ExecSession(e) = decode(&bytes_of(&raw)).unwrap() else { panic!() };
        assert_eq!(e.session, Proc { pid: 300, comm: "sh".into() });
        assert_eq!(e.parent, Proc { pid: 200, comm: "runc".into() });
        assert_eq!((e.ktime_ns, e.cgroup_id), (77, 5000));
        assert_eq!(Event::ExecSession(e).kind(), EventKind::ExecSession);
    }

    #[test]
    fn rejects_short_unknown_and_truncated_records() {
        assert_eq!(decode(&[0; 3]), Err(DecodeError::Short(3)));
        let mut h = bytes_of(&EventHeader { kind: 99, cpu: 0, ktime_ns: 0 });
        assert_eq!(decode(&h), Err(DecodeError::UnknownKind(99)));
        h = bytes_of(&EventHeader { kind: EventKind::SignalGenerate as u32, cpu: 0, ktime_ns: 0 });
        assert!(matches!(decode(&h), Err(DecodeError::Size { .. })));
        // A path_len larger than the buffer is clamped, not trusted.
        let raw = CgroupEvent {
            header: EventHeader { kind: EventKind::CgroupMkdir as u32, cpu: 0, ktime_ns: 1 },
            id: 1,
            level: 1,
            path_len: u32::MAX,
            path: [b'a'; CGROUP_PATH_LEN],
        };
        let Event::CgroupMkdir(c) = decode(&bytes_of(&raw)).unwrap() else { panic!() };
        assert_eq!(c.path.len(), CGROUP_PATH_LEN);
    }
}
