//! Loading and attaching the embedded eBPF object.
//!
//! [`PROBES`] is the one table of what observer hooks: program, program type, tracepoint,
//! the kernel feature it rests on (a row of [`super::compat::TABLE`], which says since when) and why.
//! `observer check` and `observer run` both walk it; a program tied to one side of an optional
//! feature is loaded only on nodes that take that side ([`Support`]).

use std::time::Duration;

use aya::{
    maps::{HashMap as BpfHashMap, Map, MapData, PerCpuArray, RingBuf},
    programs::{links::FdLink, BtfTracePoint, TracePoint},
    Ebpf, EbpfLoader,
};
use observer_ebpf::{
    names, process_flags, programs, role, watched, Config, Counter, Ended, EndedKey, EventKind,
    KernelOffsets, Process, WatchedCgroup, CGROUP_PREFIX_LEN,
};

use super::{
    btf::Btf,
    compat::{FeatureId, Support},
    pins::{self, PinError, Pins, PINNED_MAPS},
    slots::Slots,
};

/// The eBPF object built by build.rs, embedded so the binary runs alone on a node.
pub(crate) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/observer"));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramKind {
    /// Classic tracepoint (perf_event attach; Linux 4.7+).
    TracePoint,
    /// BTF-typed raw tracepoint (Linux 5.5+, needs kernel BTF).
    BtfTracePoint,
}

impl ProgramKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TracePoint => "tracepoint",
            Self::BtfTracePoint => "tp_btf",
        }
    }
}

/// One program of the object and where it attaches. Every hook is required: without any of
/// them a termination record would be wrong, not just poorer; some hooks have one program per
/// side of an optional kernel feature.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSpec {
    pub program: &'static str,
    pub kind: ProgramKind,
    pub category: &'static str,
    pub event: &'static str,
    /// The compatibility-table row this program needs (its oldest kernel is said there).
    pub requires: FeatureId,
    /// `Some((feature, native))`: loaded only where the node is on that side of `feature`.
    pub only: Option<(FeatureId, bool)>,
    /// The records it writes (decoded in `events::decode`; a full ring buffer is counted in
    /// each kind's `ring_full()` counter).
    pub emits: &'static [EventKind],
    pub purpose: &'static str,
}

impl ProbeSpec {
    /// Whether this node loads this program.
    pub fn wanted(&self, support: &Support) -> bool {
        self.only.is_none_or(|(feature, native)| support.native(feature) == native)
    }
}

pub const PROBES: &[ProbeSpec] = &[
    ProbeSpec {
        program: programs::SIGNAL_GENERATE,
        kind: ProgramKind::BtfTracePoint,
        category: "signal",
        event: "signal_generate",
        requires: FeatureId::TpBtf,
        only: None,
        emits: &[EventKind::SignalGenerate],
        purpose: "stop signals and SIGKILLs sent to containers' main processes (every send path)",
    },
    ProbeSpec {
        program: programs::SIGNAL_DELIVER,
        kind: ProgramKind::BtfTracePoint,
        category: "signal",
        event: "signal_deliver",
        requires: FeatureId::TpBtf,
        only: None,
        emits: &[EventKind::SignalDeliver],
        purpose: "disposition of a delivered stop signal (default, ignored, handled)",
    },
    ProbeSpec {
        program: programs::SCHED_PROCESS_EXIT,
        kind: ProgramKind::BtfTracePoint,
        category: "sched",
        event: "sched_process_exit",
        requires: FeatureId::TpBtf,
        only: Some((FeatureId::ExitGroupDead, true)),
        emits: &[EventKind::ProcessExit],
        purpose: "exit time and status of a tracked process (its last thread)",
    },
    ProbeSpec {
        program: programs::SCHED_PROCESS_EXIT_LIVE,
        kind: ProgramKind::BtfTracePoint,
        category: "sched",
        event: "sched_process_exit",
        requires: FeatureId::TpBtf,
        only: Some((FeatureId::ExitGroupDead, false)),
        emits: &[EventKind::ProcessExit],
        purpose: "exit time and status of a tracked process (its last thread, from signal->live)",
    },
    ProbeSpec {
        program: programs::CGROUP_MKDIR,
        kind: ProgramKind::TracePoint,
        category: "cgroup",
        event: "cgroup_mkdir",
        requires: FeatureId::ClassicTracepoints,
        only: None,
        emits: &[EventKind::CgroupMkdir],
        purpose: "learn container cgroup id -> path before the runtime removes it",
    },
    ProbeSpec {
        program: programs::CGROUP_RMDIR,
        kind: ProgramKind::TracePoint,
        category: "cgroup",
        event: "cgroup_rmdir",
        requires: FeatureId::ClassicTracepoints,
        only: None,
        emits: &[EventKind::CgroupRmdir],
        purpose: "forget removed container cgroups",
    },
    ProbeSpec {
        program: programs::OOM_MARK_VICTIM,
        kind: ProgramKind::TracePoint,
        category: "oom",
        event: "mark_victim",
        requires: FeatureId::ClassicTracepoints,
        only: None,
        emits: &[EventKind::OomVictim],
        purpose: "tell an OOM kill from a grace-period SIGKILL",
    },
    ProbeSpec {
        program: programs::SCHED_PROCESS_EXEC,
        kind: ProgramKind::BtfTracePoint,
        category: "sched",
        event: "sched_process_exec",
        requires: FeatureId::TpBtf,
        only: None,
        emits: &[EventKind::MainProcess, EventKind::ExecSession],
        purpose: "containers' main processes as the runtime execs them, and exec sessions entering a container (preStop exec hooks)",
    },
    ProbeSpec {
        program: programs::INET_SOCK_SET_STATE,
        kind: ProgramKind::BtfTracePoint,
        category: "sock",
        event: "inet_sock_set_state",
        requires: FeatureId::TcpState,
        only: Some((FeatureId::TcpState, true)),
        emits: &[],
        purpose: "TCP connections of pods' network namespaces and host-network containers' ports: accepted after the stop signal, open at the SIGKILL and the exit",
    },
];

/// The `probe` label of a record kind in `observer_events_total`: the first program that writes
/// it (`sched_process_exit` for both exit programs, so the series survives the kernel's path).
pub fn probe_label(kind: EventKind) -> &'static str {
    PROBES.iter().find(|s| s.emits.contains(&kind)).map(|s| s.program).unwrap_or("unknown")
}

/// What a kernel counter means to the metrics and the drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// A record or a decision the kernel side could not make: a loss, at `stage` (the label of
    /// `observer_events_lost_total`).
    Lost { stage: &'static str },
    /// A repeated signal inside the de-duplication window, not emitted by design.
    Deduplicated,
    /// A cgroup path cut to `CGROUP_PATH_LEN`: the record is kept, its path is short.
    PathTruncated,
    /// A signal to a container's main process from inside that container: by design never a
    /// record (`observer_container_self_signals_total`).
    SelfSignal,
    /// A cgroup below a container with a main process, which makes no container of its own
    /// (`observer_nested_cgroups_total`).
    Nested,
    /// A signal to a main process already exiting (`observer_signals_to_exiting_total`).
    TargetExiting,
    /// A termination the kernel could not keep in `ENDED` (full): recorded only from the ring
    /// (`observer_terminations_unkept_total`).
    Unkept,
    /// An exec session exec'ing the program it was reported running: not emitted by design
    /// (`observer_exec_session_repeats_total`).
    SessionExecRepeated,
}

/// The one table of kernel counters: every `Counter` has a meaning (the match is exhaustive,
/// so a new counter cannot be left out of the metrics or the drill's loss count).
pub const fn meaning(counter: Counter) -> Meaning {
    match counter {
        Counter::RingbufFullSignalGenerate
        | Counter::RingbufFullSignalDeliver
        | Counter::RingbufFullProcessExit
        | Counter::RingbufFullCgroup
        | Counter::RingbufFullOom
        | Counter::RingbufFullExec => Meaning::Lost { stage: "ring_buffer" },
        Counter::KernelReadFailed => Meaning::Lost { stage: "kernel_read" },
        Counter::ProcessesFull => Meaning::Lost { stage: "processes_map_full" },
        Counter::WatchedInsertFailed => Meaning::Lost { stage: "watched_map_full" },
        Counter::StaleProcess => Meaning::Lost { stage: "exit_unseen" },
        Counter::SignalDeduplicated => Meaning::Deduplicated,
        Counter::CgroupPathTruncated => Meaning::PathTruncated,
        Counter::SelfSignal => Meaning::SelfSignal,
        Counter::NestedCgroup => Meaning::Nested,
        Counter::TargetExiting => Meaning::TargetExiting,
        Counter::EndedFull => Meaning::Unkept,
        Counter::SessionExecRepeated => Meaning::SessionExecRepeated,
        // A program of the session's not reported: its record's program list is short.
        Counter::SessionExecCapped => Meaning::Lost { stage: "exec_session_programs" },
        // A pod's (or host port's) connections not counted: its records say nothing of them.
        Counter::NetnsFull => Meaning::Lost { stage: "netns_map_full" },
        Counter::HostPortsFull => Meaning::Lost { stage: "host_ports_full" },
        Counter::NetnsUnknown => Meaning::Lost { stage: "netns_unknown" },
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading kernel BTF: {0}")]
    Btf(#[from] super::btf::BtfError),
    #[error("aya cannot read kernel BTF: {0}")]
    AyaBtf(#[from] aya::BtfError),
    #[error("loading the eBPF object: {0}")]
    Object(#[source] Box<aya::EbpfError>),
    #[error("mapping the {map} map: {source}")]
    Mmap {
        map: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("program {program} missing from the eBPF object")]
    MissingProgram { program: &'static str },
    #[error("loading program {program} ({kind}): {source}")]
    Program {
        program: &'static str,
        kind: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("attaching {program} to {category}/{event}: {source}")]
    Attach {
        program: &'static str,
        category: &'static str,
        event: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("map {0}: {1}")]
    Map(&'static str, #[source] Box<aya::maps::MapError>),
    #[error("map {0} missing from the eBPF object")]
    MissingMap(&'static str),
    #[error("invalid option: {0}")]
    Option(String),
    #[error("pinning {program}'s link: {why}")]
    Pin { program: &'static str, why: String },
    #[error(transparent)]
    Pins(#[from] PinError),
}

/// What the kernel side is told at load time.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Signal numbers reported as stop signals (SIGKILL always is).
    pub stop_signals: Vec<u32>,
    /// A repeated (target, signal) inside this window is counted, not emitted.
    pub dedupe_window: Duration,
    /// Hierarchy-relative prefix of the containers' cgroups (`/kubepods`).
    pub cgroup_prefix: String,
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub ring_buffer_bytes: u32,
    /// Optional kernel features whose fallback is taken even where the kernel has them.
    pub force_fallback: Vec<FeatureId>,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            // SIGHUP SIGINT SIGQUIT SIGUSR1 SIGUSR2 SIGTERM SIGWINCH: what real images use
            // as STOPSIGNAL (nginx/php-fpm QUIT, httpd WINCH, haproxy USR1, postgres INT).
            stop_signals: vec![1, 2, 3, 10, 12, 15, 28],
            dedupe_window: Duration::from_secs(1),
            cgroup_prefix: "/kubepods".into(),
            ring_buffer_bytes: 1 << 20,
            force_fallback: Vec::new(),
        }
    }
}

/// The probes' command-line options, shared by `observer run` and `observer check`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Signals reported as stop signals besides SIGKILL (names or numbers, comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "SIGHUP,SIGINT,SIGQUIT,SIGUSR1,SIGUSR2,SIGTERM,SIGWINCH",
        value_parser = crate::signals::parse
    )]
    pub stop_signals: Vec<u32>,

    /// Cgroup path prefix (relative to the v2 hierarchy root) under which kubelet puts pods:
    /// kubelet's --cgroup-root plus "kubepods".
    #[arg(long, default_value = "/kubepods")]
    pub cgroup_root: String,

    /// Size of the kernel -> userspace ring buffer in bytes (power of two).
    #[arg(long, default_value_t = 1 << 20)]
    pub ring_buffer_bytes: u32,

    /// Take this optional kernel feature's fallback even where the kernel has it (repeatable):
    /// exit-group-dead (read group_dead from signal->live, as on kernels before 6.16).
    /// `observer check` says which path each feature takes on this node.
    #[arg(long, value_name = "FEATURE", value_parser = super::compat::parse_fallback)]
    pub force_fallback: Vec<FeatureId>,
}

impl ProbeArgs {
    /// The options these arguments ask for.
    pub fn options(&self) -> ProbeOptions {
        ProbeOptions {
            stop_signals: self.stop_signals.clone(),
            cgroup_prefix: self.cgroup_root.clone(),
            ring_buffer_bytes: self.ring_buffer_bytes,
            dedupe_window: Duration::from_secs(1),
            force_fallback: self.force_fallback.clone(),
        }
    }
}

impl ProbeOptions {
    pub fn config(&self, offsets: KernelOffsets) -> Result<Config, LoadError> {
        let mut config = Config::ZERO;
        for &sig in &self.stop_signals {
            if sig == 0 || sig > observer_ebpf::MAX_SIGNAL {
                return Err(LoadError::Option(format!("signal number {sig} out of range 1..=63")));
            }
            // The probes leave on these before reading anything (the commonest signals on a
            // node): a stop signal among them would never be seen, so it is refused here.
            if observer_ebpf::NEVER_STOP_SIGNALS & (1 << sig) != 0 {
                return Err(LoadError::Option(format!(
                    "{} cannot be a stop signal: it ignores, continues or stops a process and \
                     never ends one (SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN and SIGTTOU \
                     are not watched)",
                    crate::signals::name(sig)
                )));
            }
            config.stop_signal_mask |= 1 << sig;
        }
        config.dedupe_window_ns = self.dedupe_window.as_nanos().min(u64::MAX as u128) as u64;
        config.offsets = offsets;
        // cgrp_dfl_root is the first hierarchy registered: id 0, the `0::` line of /proc/*/cgroup.
        config.v2_hierarchy_id = 0;
        let prefix = self.cgroup_prefix.as_bytes();
        if prefix.is_empty() || !prefix.starts_with(b"/") || prefix.len() > CGROUP_PREFIX_LEN {
            return Err(LoadError::Option(format!(
                "cgroup prefix {:?} must start with / and be 1..={CGROUP_PREFIX_LEN} bytes",
                self.cgroup_prefix
            )));
        }
        config.cgroup_prefix[..prefix.len()].copy_from_slice(prefix);
        config.cgroup_prefix_words = observer_ebpf::PrefixWord::split(prefix);
        config.cgroup_prefix_len = prefix.len() as u32;
        if !self.ring_buffer_bytes.is_power_of_two() || self.ring_buffer_bytes < 4096 {
            return Err(LoadError::Option(format!(
                "ring buffer size {} must be a power of two >= 4096",
                self.ring_buffer_bytes
            )));
        }
        Ok(config)
    }
}

/// The loaded (verified, not yet attached) object and the paths this node takes.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub support: Support,
}

/// Reads the kernel's BTF (offsets, tracepoint prototypes), decides the node's paths, parses
/// the object with the resulting `Config` and loads (verifies) the programs this node needs,
/// without attaching.
/// With `pins`, the maps that outlive a daemon are opened from there (made and pinned on a
/// first start).
pub fn load(options: &ProbeOptions, pins: Option<&Pins>) -> Result<Loaded, LoadError> {
    let btf = Btf::from_sys_fs()?;
    let support = Support::detect(&btf, &options.force_fallback);
    let offsets = match support.tcp_state.is_native() {
        true => btf.kernel_offsets()?,
        false => super::btf::without_traffic(btf.kernel_offsets()?),
    };
    let config = options.config(offsets)?;
    bump_memlock_rlimit();
    let mut loader = EbpfLoader::new();
    loader
        .override_global(names::CONFIG, &config, true)
        .map_max_entries(names::EVENTS, options.ring_buffer_bytes);
    let paths: Vec<(&str, std::path::PathBuf)> = match pins {
        Some(pins) => PINNED_MAPS.iter().map(|&m| (m, pins.map(m))).collect(),
        None => Vec::new(),
    };
    for (name, path) in &paths {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader.load(OBJECT).map_err(|e| LoadError::Object(Box::new(e)))?;
    let aya_btf = aya::Btf::from_sys_fs()?;
    for spec in PROBES.iter().filter(|s| s.wanted(&support)) {
        load_program(&mut ebpf, spec, &aya_btf)?;
    }
    Ok(Loaded { ebpf, support })
}

pub(crate) fn load_program(
    ebpf: &mut Ebpf,
    spec: &ProbeSpec,
    btf: &aya::Btf,
) -> Result<(), LoadError> {
    let program = ebpf
        .program_mut(spec.program)
        .ok_or(LoadError::MissingProgram { program: spec.program })?;
    let err = |source| LoadError::Program {
        program: spec.program,
        kind: spec.kind.as_str(),
        source: Box::new(source),
    };
    match spec.kind {
        ProgramKind::TracePoint => {
            let p: &mut TracePoint = program.try_into().map_err(err)?;
            p.load().map_err(err)
        }
        ProgramKind::BtfTracePoint => {
            let p: &mut BtfTracePoint = program.try_into().map_err(err)?;
            p.load(spec.event, btf).map_err(err)
        }
    }
}

/// `spec`'s loaded program, and how an attach failure of it reads.
fn program_of<'a>(
    ebpf: &'a mut Ebpf,
    spec: &ProbeSpec,
) -> Result<
    (&'a mut aya::programs::Program, impl Fn(aya::programs::ProgramError) -> LoadError + Copy),
    LoadError,
> {
    let (program, category, event) = (spec.program, spec.category, spec.event);
    let p = ebpf.program_mut(program).ok_or(LoadError::MissingProgram { program })?;
    let err =
        move |source| LoadError::Attach { program, category, event, source: Box::new(source) };
    Ok((p, err))
}

/// Attaches one loaded program, its link living as long as `ebpf` (unpinned probes, the
/// floor's programs).
pub(crate) fn attach_unpinned(ebpf: &mut Ebpf, spec: &ProbeSpec) -> Result<(), LoadError> {
    let (program, err) = program_of(ebpf, spec)?;
    match spec.kind {
        ProgramKind::TracePoint => {
            let p: &mut TracePoint = program.try_into().map_err(err)?;
            p.attach(spec.category, spec.event).map_err(err)?;
        }
        ProgramKind::BtfTracePoint => {
            let p: &mut BtfTracePoint = program.try_into().map_err(err)?;
            p.attach().map_err(err)?;
        }
    }
    Ok(())
}

/// Attaches every program [`load`] loaded. Without `pins` the links live as long as `ebpf`;
/// with them each link is pinned in place of the one a previous daemon left (which detaches
/// that daemon's program, now that this one runs), and outlives this daemon.
pub fn attach(ebpf: &mut Ebpf, support: &Support, pins: Option<&Pins>) -> Result<(), LoadError> {
    for spec in PROBES.iter().filter(|s| s.wanted(support)) {
        match pins {
            None => attach_unpinned(ebpf, spec)?,
            Some(pins) => attach_pinned(ebpf, spec, pins)?,
        }
    }
    Ok(())
}

/// Attaches `spec`'s program and pins its link, replacing the previous daemon's.
fn attach_pinned(ebpf: &mut Ebpf, spec: &ProbeSpec, pins: &Pins) -> Result<(), LoadError> {
    let (program, err) = program_of(ebpf, spec)?;
    let link: FdLink = match spec.kind {
        ProgramKind::TracePoint => {
            let p: &mut TracePoint = program.try_into().map_err(err)?;
            let id = p.attach(spec.category, spec.event).map_err(err)?;
            // A perf-event link (bpf_link_create, 5.15+) is an fd link.
            p.take_link(id)
                .map_err(err)?
                .try_into()
                .map_err(|e| pin_err(spec.program, format!("{e}")))?
        }
        ProgramKind::BtfTracePoint => {
            let p: &mut BtfTracePoint = program.try_into().map_err(err)?;
            let id = p.attach().map_err(err)?;
            p.take_link(id).map_err(err)?.into()
        }
    };
    let path = pins.link(spec.program);
    // The previous daemon's program stops here: this one is already attached.
    if path.exists() {
        std::fs::remove_file(&path)
            .map_err(|e| pin_err(spec.program, format!("unpinning the old link: {e}")))?;
    }
    link.pin(&path).map_err(|e| pin_err(spec.program, format!("{e}")))?;
    Ok(())
}

fn pin_err(program: &'static str, why: String) -> LoadError {
    LoadError::Pin { program, why }
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones to the memcg.
fn bump_memlock_rlimit() {
    let rlim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: a valid rlimit struct; failure only matters on old kernels and shows at load.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
    if rc != 0 {
        log::debug!("raising RLIMIT_MEMLOCK failed: {}", std::io::Error::last_os_error());
    }
}

/// Takes the ring buffer out of the object (it moves into the reader task).
pub fn take_events(ebpf: &mut Ebpf) -> Result<RingBuf<MapData>, LoadError> {
    let map = ebpf.take_map(names::EVENTS).ok_or(LoadError::MissingMap(names::EVENTS))?;
    RingBuf::try_from(map).map_err(|e| LoadError::Map(names::EVENTS, Box::new(e)))
}

/// The containers' cgroups the kernel side filters on.
pub fn take_watched(ebpf: &mut Ebpf) -> Result<BpfHashMap<MapData, u64, WatchedCgroup>, LoadError> {
    let map = ebpf
        .take_map(names::WATCHED_CGROUPS)
        .ok_or(LoadError::MissingMap(names::WATCHED_CGROUPS))?;
    BpfHashMap::try_from(map).map_err(|e| LoadError::Map(names::WATCHED_CGROUPS, Box::new(e)))
}

/// The processes the probes follow (`PROCESSES`), for the start-up walk's main processes.
pub fn take_processes(ebpf: &mut Ebpf) -> Result<BpfHashMap<MapData, u32, Process>, LoadError> {
    let map = ebpf.take_map(names::PROCESSES).ok_or(LoadError::MissingMap(names::PROCESSES))?;
    BpfHashMap::try_from(map).map_err(|e| LoadError::Map(names::PROCESSES, Box::new(e)))
}

/// The terminations the kernel keeps until a daemon has recorded them (`ENDED`).
pub fn take_netns(
    ebpf: &mut Ebpf,
) -> Result<BpfHashMap<MapData, observer_ebpf::NetKey, observer_ebpf::Traffic>, LoadError> {
    let map = ebpf.take_map(names::NETNS).ok_or(LoadError::MissingMap(names::NETNS))?;
    BpfHashMap::try_from(map).map_err(|e| LoadError::Map(names::NETNS, Box::new(e)))
}

/// `NODE_V4` and `NODE_V6` (`node::addresses` writes them).
#[allow(clippy::type_complexity)]
pub fn take_node_addresses(
    ebpf: &mut Ebpf,
) -> Result<(BpfHashMap<MapData, u32, u8>, BpfHashMap<MapData, [u64; 2], u8>), LoadError> {
    let v4 = ebpf.take_map(names::NODE_V4).ok_or(LoadError::MissingMap(names::NODE_V4))?;
    let v6 = ebpf.take_map(names::NODE_V6).ok_or(LoadError::MissingMap(names::NODE_V6))?;
    Ok((
        BpfHashMap::try_from(v4).map_err(|e| LoadError::Map(names::NODE_V4, Box::new(e)))?,
        BpfHashMap::try_from(v6).map_err(|e| LoadError::Map(names::NODE_V6, Box::new(e)))?,
    ))
}

pub fn take_ended(ebpf: &mut Ebpf) -> Result<BpfHashMap<MapData, EndedKey, Ended>, LoadError> {
    let map = ebpf.take_map(names::ENDED).ok_or(LoadError::MissingMap(names::ENDED))?;
    BpfHashMap::try_from(map).map_err(|e| LoadError::Map(names::ENDED, Box::new(e)))
}

/// `BPF_NOEXIST` (include/uapi/linux/bpf.h): insert only where the key is absent.
const BPF_NOEXIST: u64 = 1;

/// Kernel-side counters, summed over CPUs.
pub struct KernelCounters {
    map: PerCpuArray<MapData, u64>,
}

impl KernelCounters {
    /// Every record or decision the kernel side lost, at any stage.
    pub fn lost(&self) -> u64 {
        Counter::ALL
            .iter()
            .filter(|&&c| matches!(meaning(c), Meaning::Lost { .. }))
            .map(|&c| self.get(c))
            .sum()
    }

    pub fn take(ebpf: &mut Ebpf) -> Result<Self, LoadError> {
        let map = ebpf.take_map(names::COUNTERS).ok_or(LoadError::MissingMap(names::COUNTERS))?;
        let map =
            PerCpuArray::try_from(map).map_err(|e| LoadError::Map(names::COUNTERS, Box::new(e)))?;
        Ok(Self { map })
    }

    pub fn get(&self, counter: Counter) -> u64 {
        self.map.get(&(counter as u32), 0).map(|v| v.iter().sum()).unwrap_or(0)
    }
}

/// Removes the layout directories of other builds under the pin root, now that this build's
/// programs run: their links first (their programs stop), then what their ring still held is
/// counted, then their maps.
fn retire_others(pins: &Pins) -> Handover {
    let mut handover = Handover::default();
    for dir in pins.others() {
        let mut removed = pins::Removed::default();
        let links: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        for l in links.iter().filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("link_"))
        }) {
            if std::fs::remove_file(l).is_ok() {
                removed.links += 1;
            }
        }
        let old_ring = MapData::from_pin(dir.join(names::EVENTS))
            .and_then(Map::from_map_data)
            .and_then(RingBuf::try_from);
        if let Ok(mut ring) = old_ring {
            while let Some(item) = ring.next() {
                handover.records += 1;
                handover.bytes += item.len() as u64;
            }
        }
        match pins::remove_layout(&dir, &mut removed) {
            Ok(()) => log::warn!(
                "an observer of another layout left {}: {} links detached; {} events it had \
                 not read ({} bytes) are lost (observer_events_lost_total{{stage=\"handover\"}})",
                dir.display(),
                removed.links,
                handover.records,
                handover.bytes
            ),
            Err(e) => log::error!("cannot remove the old layout {}: {e}", dir.display()),
        }
    }
    handover
}

/// The probes, loaded and attached, with the maps userspace reads: what `observer run` and
/// `observer drill` both start (one bring-up).
pub struct Probes {
    /// Keeps the programs and their links alive.
    pub ebpf: Ebpf,
    /// The paths this node takes (see `compat`).
    pub support: Support,
    pub ring: RingBuf<MapData>,
    pub watched: BpfHashMap<MapData, u64, WatchedCgroup>,
    pub processes: BpfHashMap<MapData, u32, Process>,
    pub ended: BpfHashMap<MapData, EndedKey, Ended>,
    /// The pods' network namespaces' connection counts (`daemon::netns` keeps it to the pods
    /// still there).
    pub netns: BpfHashMap<MapData, observer_ebpf::NetKey, observer_ebpf::Traffic>,
    /// The node's addresses the traffic probe tells apart (`node::addresses`).
    pub node_v4: BpfHashMap<MapData, u32, u8>,
    pub node_v6: BpfHashMap<MapData, [u64; 2], u8>,
    /// The programs' skipped runs (`kernel::misses`).
    pub misses: super::misses::Misses,
    /// The prefilters in front of `PROCESSES` and `WATCHED_CGROUPS`, mapped here
    /// (`observer_ebpf::slot`).
    pub slots: Slots,
    pub watched_slots: Slots,
    pub counters: KernelCounters,
    /// The probes' own log records (aya-log), when the object has any.
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// Where the maps and links are pinned (`observer run`; the drill pins nothing).
    pub pins: Option<Pins>,
    /// What an upgrade's predecessor left unread in a ring of another layout.
    pub handover: Handover,
}

/// Events a predecessor of another layout left unread: counted, not decodable by this build.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Handover {
    pub records: u64,
    pub bytes: u64,
}

impl Probes {
    /// Loads, attaches, and takes the ring buffer, the watched-cgroups map and the counters;
    /// with `pins`, adopts what a previous daemon pinned there (see `pins`).
    pub fn start(options: &ProbeOptions, pins: Option<Pins>) -> Result<Self, LoadError> {
        let Loaded { mut ebpf, support } = load(options, pins.as_ref())?;
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(e) => {
                log::warn!("eBPF log forwarding unavailable: {e}");
                None
            }
        };
        attach(&mut ebpf, &support, pins.as_ref())?;
        let handover = match &pins {
            Some(pins) => retire_others(pins),
            None => Handover::default(),
        };
        let ring = take_events(&mut ebpf)?;
        let watched = take_watched(&mut ebpf)?;
        let processes = take_processes(&mut ebpf)?;
        let ended = take_ended(&mut ebpf)?;
        let netns = take_netns(&mut ebpf)?;
        let (node_v4, node_v6) = take_node_addresses(&mut ebpf)?;
        let misses = super::misses::Misses::of(&ebpf, &support);
        let slots = Slots::take(&mut ebpf, names::FOLLOWED)?;
        let watched_slots = Slots::take(&mut ebpf, names::WATCHED_SLOTS)?;
        let counters = KernelCounters::take(&mut ebpf)?;
        Ok(Self {
            ebpf,
            support,
            ring,
            watched,
            processes,
            ended,
            netns,
            node_v4,
            node_v6,
            misses,
            slots,
            watched_slots,
            counters,
            logger,
            pins,
            handover,
        })
    }

    /// Watches a container cgroup that may predate the probes (the start-up walk, the drill)
    /// without undoing what the kernel learnt meanwhile: an entry the kernel made is kept, and
    /// `main` (tgid, start ticks) becomes the cgroup's main process where the kernel has none,
    /// or in place of one the kernel took meanwhile (an exec session into a cgroup watched a
    /// moment before its main process was set) when `confirmed` (the runtime's own state named
    /// it) or when the kernel's pick started later. Returns whether `main` was adopted.
    /// `path` is the cgroup's (kept with the entry, as the kernel keeps the paths it sees).
    pub fn watch_existing(
        &mut self,
        cgroup_id: u64,
        path: &str,
        main: Option<(u32, u64)>,
        confirmed: bool,
    ) -> Result<bool, LoadError> {
        let map_err = |e| LoadError::Map(names::WATCHED_CGROUPS, Box::new(e));
        let mut fresh = WatchedCgroup { flags: watched::COUNTED, ..WatchedCgroup::default() };
        let n = path.len().min(fresh.path.len() - 1);
        fresh.path[..n].copy_from_slice(&path.as_bytes()[..n]);
        fresh.path_len = n as u32;
        // Counted before it exists, as the kernel's mkdir does; uncounted when the kernel's
        // entry was there first.
        self.watched_slots.count(cgroup_id as u32);
        if let Err(e) = self.watched.insert(cgroup_id, fresh, BPF_NOEXIST) {
            self.watched_slots.uncount(cgroup_id as u32);
            if !matches!(&e, aya::maps::MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::EEXIST))
            {
                return Err(map_err(e));
            }
        }
        let Some((tgid, start_ticks)) = main else { return Ok(false) };
        let mut w = self.watched.get(&cgroup_id, 0).map_err(map_err)?;
        if w.main_tgid == tgid {
            return Ok(false);
        }
        if w.main_tgid != 0 && !confirmed {
            // The kernel took a main in the gap between the walk's watching and this: an exec
            // session (a probe, a `kubectl exec`) that started after the walk's pick is no
            // main; a process that started before it is the kernel's better knowledge.
            let later = self
                .processes
                .get(&w.main_tgid, 0)
                .is_ok_and(|k| k.cgroup_id == cgroup_id && k.start_ticks > start_ticks);
            if !later {
                return Ok(false);
            }
        }
        if w.main_tgid != 0 {
            // The kernel's pick, overruled: it is no main process of this cgroup.
            if let Ok(old) = self.processes.get(&w.main_tgid, 0) {
                if old.cgroup_id == cgroup_id
                    && self.processes.remove(&w.main_tgid).is_ok()
                    && old.flags & process_flags::COUNTED != 0
                {
                    self.slots.uncount(w.main_tgid);
                }
            }
        }
        // An entry of this tgid left by an earlier process (ended unseen) goes first.
        if let Ok(old) = self.processes.get(&tgid, 0) {
            if self.processes.remove(&tgid).is_ok() && old.flags & process_flags::COUNTED != 0 {
                self.slots.uncount(tgid);
            }
        }
        let p = Process { start_ticks, cgroup_id, role: role::MAIN, ..Default::default() };
        // Counted in the prefilter before the entry exists, as the kernel does, so no probe
        // ever finds an entry its prefilter hides; whoever removes it uncounts it.
        let p = Process { flags: process_flags::COUNTED, ..p };
        self.slots.count(tgid);
        if let Err(e) = self.processes.insert(tgid, p, BPF_NOEXIST) {
            self.slots.uncount(tgid);
            return Err(LoadError::Map(names::PROCESSES, Box::new(e)));
        }
        w.main_tgid = tgid;
        self.watched.insert(cgroup_id, w, 0).map_err(map_err)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_kind_has_a_probe_and_a_ring_counter_that_counts_as_lost() {
        for kind in EventKind::ALL {
            assert_ne!(probe_label(kind), "unknown", "{kind:?} has no program in PROBES");
            assert_eq!(meaning(kind.ring_full()), Meaning::Lost { stage: "ring_buffer" });
        }
        assert_eq!(probe_label(EventKind::ProcessExit), "sched_process_exit");
        assert_eq!(probe_label(EventKind::OomVictim), "oom_mark_victim");
    }

    #[test]
    fn program_names_are_unique_and_each_hook_has_one_program_per_path() {
        for s in PROBES {
            assert_eq!(PROBES.iter().filter(|t| t.program == s.program).count(), 1);
            let same_hook: Vec<_> =
                PROBES.iter().filter(|t| (t.category, t.event) == (s.category, s.event)).collect();
            if same_hook.len() > 1 {
                // Alternatives: one per side of the same optional feature.
                let feature = s.only.expect("alternatives are tied to a feature").0;
                assert!(same_hook.iter().all(|t| t.only.map(|o| o.0) == Some(feature)));
                for support in [true, false] {
                    let support = Support {
                        exit_group_dead: if support {
                            super::super::compat::Path::Native { evidence: String::new() }
                        } else {
                            super::super::compat::Path::Fallback { reason: String::new() }
                        },
                        tcp_state: super::super::compat::Path::Native { evidence: String::new() },
                    };
                    assert_eq!(same_hook.iter().filter(|t| t.wanted(&support)).count(), 1);
                }
            }
        }
    }
}

#[cfg(test)]
mod option_tests {
    use super::*;

    fn config_for(stop_signals: Vec<u32>) -> Result<Config, LoadError> {
        ProbeOptions { stop_signals, ..ProbeOptions::default() }.config(Config::ZERO.offsets)
    }

    #[test]
    fn the_default_stop_signals_are_all_watched() {
        let c = config_for(ProbeOptions::default().stop_signals).expect("defaults load");
        for sig in [1, 2, 3, 10, 12, 15, 28] {
            assert_ne!(c.stop_signal_mask & (1 << sig), 0, "signal {sig}");
        }
    }

    #[test]
    fn signals_the_probes_never_watch_are_refused_as_stop_signals() {
        for sig in [17, 18, 19, 20, 21, 22] {
            let e = config_for(vec![15, sig]).expect_err("refused");
            let text = e.to_string();
            assert!(text.contains("cannot be a stop signal"), "{sig}: {text}");
            assert!(text.contains(&crate::signals::name(sig)), "{sig}: {text}");
        }
        assert!(config_for(vec![0]).is_err());
        assert!(config_for(vec![64]).is_err());
    }

    /// What cgroup_mkdir/rmdir do with the words: 64 bytes copied from the record (the path,
    /// its NUL, then whatever the buffer holds), compared 8 bytes at a time up to the
    /// prefix's end.
    fn under(prefix: &str, path: &str) -> bool {
        let words = observer_ebpf::PrefixWord::split(prefix.as_bytes());
        let mut bytes = [0xa5u8; CGROUP_PREFIX_LEN];
        let n = path.len().min(CGROUP_PREFIX_LEN);
        bytes[..n].copy_from_slice(&path.as_bytes()[..n]);
        if n < CGROUP_PREFIX_LEN {
            bytes[n] = 0;
        }
        for (i, w) in words.iter().enumerate() {
            if w.mask == 0 {
                return i > 0;
            }
            let word = u64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().unwrap());
            if !w.matches(word) {
                return false;
            }
        }
        true
    }

    #[test]
    fn the_prefix_words_match_what_the_string_compare_did() {
        for (prefix, path, want) in [
            ("/kubepods", "/kubepods", true),
            ("/kubepods", "/kubepods/besteffort/pod1/abc", true),
            ("/kubepods", "/kubepodsX", true),
            ("/kubepods", "/kubepod", false),
            ("/kubepods", "/system.slice/kubepods", false),
            ("/kubepods", "/", false),
            ("/kubepods.slice", "/kubepods.slice/kubepods-burstable.slice", true),
            ("/kubepods.slice", "/kubepods.slicf", false),
            ("/12345678", "/12345678/x", true),
            ("/1234567", "/1234567", true),
            ("/1234567", "/123456", false),
        ] {
            assert_eq!(under(prefix, path), want, "{prefix} {path}");
        }
        let long = format!("/{}", "k".repeat(CGROUP_PREFIX_LEN - 1));
        assert!(under(&long, &long));
        assert!(!under(&long, &long[..CGROUP_PREFIX_LEN - 1]));
        let c = ProbeOptions { cgroup_prefix: "/kubepods".into(), ..ProbeOptions::default() }
            .config(Config::ZERO.offsets)
            .unwrap();
        assert_eq!(c.cgroup_prefix_words, observer_ebpf::PrefixWord::split(b"/kubepods"));
    }
}
