//! Which kernels observer runs on: the one compatibility table.
//!
//! Every kernel feature observer depends on is a row of [`TABLE`]: what it is, the oldest
//! kernel that has it, whether observer needs it or has a fallback, and what the fallback
//! costs. The loader asks [`Support::detect`] which path this node takes (and loads the
//! programs of that path, see `loader::PROBES`); `observer check` prints one line per row with
//! the path and the evidence; the README's kernel table is [`markdown_table`] (a unit test
//! keeps the two equal).
//!
//! Paths are chosen by what the kernel declares (its BTF, its mounts, the process's
//! capabilities), never by its version number: distributions backport features, and a
//! version compare would send a patched 6.1 down the wrong path.

use std::fmt;

use super::btf::{Btf, BtfError};

/// A kernel release, `major.minor`, as in `uname -r`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
}

impl KernelVersion {
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// `6.1.0-28-cloud-amd64` -> 6.1; `None` when the release does not start with `N.N`.
    pub fn parse(release: &str) -> Option<Self> {
        let mut parts = release.trim().splitn(3, |c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Self { major, minor })
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The oldest kernel observer supports: the newest of the required rows' kernels.
pub const MIN_KERNEL: KernelVersion = min_kernel();

const fn min_kernel() -> KernelVersion {
    let mut v = KernelVersion::new(0, 0);
    let mut i = 0;
    while i < TABLE.len() {
        let row = &TABLE[i];
        if matches!(row.need, Need::Required) {
            let s = row.since;
            if s.major > v.major || (s.major == v.major && s.minor > v.minor) {
                v = s;
            }
        }
        i += 1;
    }
    v
}

/// Whether observer can run without a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Without it observer does not start: its records would be wrong, not just poorer.
    Required,
    /// Without it observer takes `fallback`, which costs what the text says.
    Optional { fallback: &'static str },
}

/// The features, named for `--force-fallback` and the check's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeatureId {
    RingBuffer,
    Btf,
    TpBtf,
    ExitGroupDead,
    ClassicTracepoints,
    TcpState,
    CgroupV2,
    BpfCapabilities,
}

impl FeatureId {
    /// The name users type (`--force-fallback exit-group-dead`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RingBuffer => "ring-buffer",
            Self::Btf => "btf",
            Self::TpBtf => "tp-btf",
            Self::ExitGroupDead => "exit-group-dead",
            Self::ClassicTracepoints => "classic-tracepoints",
            Self::TcpState => "tcp-state",
            Self::CgroupV2 => "cgroup-v2",
            Self::BpfCapabilities => "bpf-capabilities",
        }
    }

    pub fn feature(self) -> &'static Feature {
        TABLE.iter().find(|f| f.id == self).expect("every FeatureId has a row")
    }
}

/// Features whose fallback is a choice of programs, which `--force-fallback` can make.
pub const FORCEABLE: &[FeatureId] = &[FeatureId::ExitGroupDead, FeatureId::TcpState];

/// Parses a `--force-fallback` value: the name of a feature in [`FORCEABLE`].
pub fn parse_fallback(s: &str) -> Result<FeatureId, String> {
    FORCEABLE.iter().copied().find(|f| f.as_str() == s).ok_or_else(|| {
        let names: Vec<&str> = FORCEABLE.iter().map(|f| f.as_str()).collect();
        format!("{s:?} is not a feature with a fallback to force (one of: {})", names.join(", "))
    })
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Feature {
    pub id: FeatureId,
    /// What it is, in the kernel's words.
    pub name: &'static str,
    /// The oldest kernel release that has it (mainline).
    pub since: KernelVersion,
    pub need: Need,
    /// What observer uses it for.
    pub used_for: &'static str,
    /// What to do on a node that lacks it.
    pub remedy: &'static str,
}

/// Every kernel feature observer depends on. 5.8 is the floor: the ring buffer and CAP_BPF
/// arrived there; tp_btf (5.5) is older. A node on cgroup v1 only, or without BTF, or older
/// than 5.8, gets no records: `observer run` refuses to start and `observer check` says why.
pub const TABLE: &[Feature] = &[
    Feature {
        id: FeatureId::RingBuffer,
        name: "BPF ring buffer (BPF_MAP_TYPE_RINGBUF)",
        since: KernelVersion::new(5, 8),
        need: Need::Required,
        used_for: "every record from the kernel, in order, with reserve failures counted",
        remedy: "upgrade the node to Linux 5.8 or newer (Ubuntu 20.10+, Debian 11+, RHEL 9, Amazon Linux 2023, COS 93+)",
    },
    Feature {
        id: FeatureId::Btf,
        name: "kernel BTF at /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF)",
        since: KernelVersion::new(5, 5),
        need: Need::Required,
        used_for: "kernel struct offsets at load time (aya emits no CO-RE relocations) and tp_btf",
        remedy: "boot a kernel built with CONFIG_DEBUG_INFO_BTF=y (every major distribution's since 2021)",
    },
    Feature {
        id: FeatureId::TpBtf,
        name: "BTF-typed tracepoints (tp_btf)",
        since: KernelVersion::new(5, 5),
        need: Need::Required,
        used_for: "signal_generate, signal_deliver, sched_process_exec, sched_process_exit with their task arguments",
        remedy: "a kernel with BTF whose tracepoints carry btf_trace_* prototypes (5.5 or newer)",
    },
    Feature {
        id: FeatureId::ExitGroupDead,
        name: "sched_process_exit's group_dead argument",
        since: KernelVersion::new(6, 16),
        need: Need::Optional {
            fallback: "read task->signal->live at the tracepoint (do_exit() decremented it to decide group_dead): one more kernel read per tracked exit",
        },
        used_for: "the exit of a process's last thread, not of its first",
        remedy: "none needed",
    },
    Feature {
        id: FeatureId::ClassicTracepoints,
        name: "cgroup/cgroup_mkdir, cgroup_rmdir (64-bit ids) and oom/mark_victim tracepoints",
        since: KernelVersion::new(5, 5),
        need: Need::Required,
        used_for: "container cgroups as runtimes create them; OOM kills told from grace-period kills",
        remedy: "a kernel with CONFIG_CGROUPS and tracepoints enabled (5.5 or newer for 64-bit cgroup ids)",
    },
    Feature {
        id: FeatureId::TcpState,
        name: "tp_btf inet_sock_set_state, with net.net_cookie and sock.sk_rx_dst_ifindex in BTF",
        since: KernelVersion::new(5, 16),
        need: Need::Optional {
            fallback: "no TCP probe: every record's `traffic` is null",
        },
        used_for: "every TCP state change, the socket's network namespace by its cookie (set at the namespace's making since 5.12, never reused), the interface a connection came in on: the journal's traffic",
        remedy: "a 5.16 or newer kernel with CONFIG_NET_NS",
    },
    Feature {
        id: FeatureId::CgroupV2,
        name: "cgroup v2, unified or hybrid (cgroup2 at /sys/fs/cgroup/unified)",
        since: KernelVersion::new(4, 5),
        need: Need::Required,
        used_for: "containers keyed by v2 cgroup id (bpf_get_current_cgroup_id)",
        remedy: "boot with systemd.unified_cgroup_hierarchy=1 (kubelet itself deprecates cgroup v1 since 1.31), or mount cgroup2 at /sys/fs/cgroup/unified",
    },
    Feature {
        id: FeatureId::BpfCapabilities,
        name: "CAP_BPF and CAP_PERFMON",
        since: KernelVersion::new(5, 8),
        need: Need::Optional {
            fallback: "CAP_SYS_ADMIN, which grants far more than observer needs",
        },
        used_for: "loading programs and maps, attaching tracepoints, without CAP_SYS_ADMIN",
        remedy: "run as root, or grant CAP_BPF and CAP_PERFMON",
    },
];

/// Which side of an optional feature this node is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    /// The kernel has it; `evidence` says how we know.
    Native { evidence: String },
    /// Observer uses the row's fallback; `reason` says why.
    Fallback { reason: String },
}

impl Path {
    pub fn is_native(&self) -> bool {
        matches!(self, Self::Native { .. })
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Native { evidence } => write!(f, "native: {evidence}"),
            Self::Fallback { reason } => write!(f, "fallback: {reason}"),
        }
    }
}

/// What the loader needs to know of this node, found from its BTF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Support {
    /// `sched_process_exit` ([`Path::Native`]) or `sched_process_exit_live`.
    pub exit_group_dead: Path,
    /// `inet_sock_set_state` loaded ([`Path::Native`]), or no traffic.
    pub tcp_state: Path,
}

impl Support {
    /// Decides every optional path from the kernel's BTF; `forced` features take their fallback
    /// even where the kernel has them (to test the fallback, or to step around a kernel bug).
    pub fn detect(btf: &Btf, forced: &[FeatureId]) -> Self {
        Self {
            exit_group_dead: exit_group_dead(btf.tracepoint_args("sched_process_exit"), forced),
            tcp_state: tcp_state(btf, forced),
        }
    }

    /// One line for the daemon's log: which exit program runs, and why.
    pub fn describe_exit(&self) -> String {
        match &self.exit_group_dead {
            Path::Native { evidence } => format!("group_dead argument ({evidence})"),
            Path::Fallback { reason } => format!("group_dead from signal->live ({reason})"),
        }
    }

    /// Whether this node loads the programs of `feature`'s native side (`loader::PROBES`'
    /// `only`). Features no program variant depends on answer true: required ones are native
    /// on every node observer runs on, and capabilities are checked, not loaded.
    pub fn native(&self, feature: FeatureId) -> bool {
        match feature {
            FeatureId::ExitGroupDead => self.exit_group_dead.is_native(),
            FeatureId::TcpState => self.tcp_state.is_native(),
            _ => true,
        }
    }
}

/// 6.16's `TP_PROTO(struct task_struct *p, bool group_dead)` has two arguments; before, one.
fn exit_group_dead(args: Result<u32, BtfError>, forced: &[FeatureId]) -> Path {
    match args {
        Ok(n) if n >= 2 && forced.contains(&FeatureId::ExitGroupDead) => Path::Fallback {
            reason: format!(
                "forced by --force-fallback (this kernel's tracepoint has {n} arguments)"
            ),
        },
        Ok(n) if n >= 2 => Path::Native {
            evidence: format!(
                "btf_trace_sched_process_exit takes (task, group_dead): {n} arguments"
            ),
        },
        Ok(n) => Path::Fallback {
            reason: format!(
                "btf_trace_sched_process_exit takes {n} argument{} (no group_dead before 6.16)",
                if n == 1 { "" } else { "s" }
            ),
        },
        Err(e) => Path::Fallback { reason: e.to_string() },
    }
}

/// `inet_sock_set_state(sk, oldstate, newstate)` and every offset the traffic probe reads.
fn tcp_state(btf: &Btf, forced: &[FeatureId]) -> Path {
    if forced.contains(&FeatureId::TcpState) {
        return Path::Fallback { reason: "forced by --force-fallback".into() };
    }
    match (btf.tracepoint_args("inet_sock_set_state"), btf.traffic_offsets()) {
        (Ok(3), Ok(o)) => Path::Native {
            evidence: format!(
                "btf_trace_inet_sock_set_state takes (sk, oldstate, newstate); net.net_cookie@{}",
                o.net_cookie
            ),
        },
        (Ok(n), Ok(_)) => Path::Fallback {
            reason: format!("btf_trace_inet_sock_set_state takes {n} arguments, not 3"),
        },
        (Err(e), _) | (_, Err(e)) => Path::Fallback { reason: e.to_string() },
    }
}

/// The table in Markdown, as the README prints it.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| feature | since | observer needs it | without it | used for |\n|---|---|---|---|---|\n",
    );
    for f in TABLE {
        let (need, without) = match f.need {
            Need::Required => ("required", "observer does not start; `observer check` says why"),
            Need::Optional { fallback } => ("optional", fallback),
        };
        out.push_str(&format!(
            "| {} | {} | {need} | {without} | {} |\n",
            f.name, f.since, f.used_for
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_parse_from_uname_releases() {
        assert_eq!(KernelVersion::parse("6.1.0-28-cloud-amd64"), Some(KernelVersion::new(6, 1)));
        assert_eq!(
            KernelVersion::parse("6.12.117+deb12-cloud-amd64"),
            Some(KernelVersion::new(6, 12))
        );
        assert_eq!(KernelVersion::parse("5.15.0-1057-aws\n"), Some(KernelVersion::new(5, 15)));
        assert_eq!(KernelVersion::parse("6.18.44-fc-v1098"), Some(KernelVersion::new(6, 18)));
        assert_eq!(KernelVersion::parse("6"), None);
        assert_eq!(KernelVersion::parse(""), None);
        assert_eq!(KernelVersion::parse("linux"), None);
        assert!(KernelVersion::new(5, 10) < KernelVersion::new(5, 8).max(KernelVersion::new(6, 1)));
    }

    #[test]
    fn the_floor_is_the_newest_required_feature() {
        assert_eq!(MIN_KERNEL, KernelVersion::new(5, 8));
        // An optional feature newer than the floor does not raise it.
        assert!(FeatureId::ExitGroupDead.feature().since > MIN_KERNEL);
    }

    #[test]
    fn exit_takes_the_argument_where_the_prototype_has_it() {
        assert!(exit_group_dead(Ok(2), &[]).is_native());
        // 6.1 and 6.12: (task) only.
        let Path::Fallback { reason } = exit_group_dead(Ok(1), &[]) else { panic!() };
        assert!(reason.contains("1 argument ") && reason.contains("6.16"), "{reason}");
        let Path::Fallback { reason } = exit_group_dead(Ok(2), &[FeatureId::ExitGroupDead]) else {
            panic!()
        };
        assert!(reason.contains("--force-fallback"), "{reason}");
        let missing = Err(BtfError::NoTracepoint("sched_process_exit".into()));
        assert!(!exit_group_dead(missing, &[]).is_native());
    }

    #[test]
    fn only_optional_features_can_be_forced() {
        assert_eq!(parse_fallback("exit-group-dead"), Ok(FeatureId::ExitGroupDead));
        assert!(parse_fallback("bpf-capabilities").is_err());
        let err = parse_fallback("ring-buffer").unwrap_err();
        assert!(err.contains("exit-group-dead"), "{err}");
        assert!(parse_fallback("").is_err());
    }

    #[test]
    fn every_feature_has_one_row() {
        for id in FORCEABLE {
            assert!(matches!(id.feature().need, Need::Optional { .. }));
        }
        for f in TABLE {
            assert_eq!(f.id.feature().name, f.name);
            assert_eq!(TABLE.iter().filter(|g| g.id == f.id).count(), 1);
        }
    }

    /// The README's kernel table is this table.
    #[test]
    fn readme_prints_the_table() {
        let readme = include_str!("../../../README.md");
        assert!(
            readme.contains(&markdown_table()),
            "README.md's kernel table differs from kernel::compat::TABLE; paste this:\n{}",
            markdown_table()
        );
    }
}
