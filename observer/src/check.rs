//! `observer check`: the preflight. One line per requirement, pass or fail, with the remedy.
//! `observer run` runs the same checks first and refuses to start with this text.

use std::fmt;

use crate::{
    cgroup::CgroupV2,
    kernel::{
        btf::Btf,
        compat::{self, FeatureId, KernelVersion, Support},
        loader, tracefs,
    },
};

/// `observer check`'s arguments: the probes' options, checked as `observer run` would load them.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub probes: loader::ProbeArgs,

    /// The pin directory `observer run` uses: said whether it holds pins, and whether a
    /// daemon reads them.
    #[arg(long, default_value = "/sys/fs/bpf/observer", env = "OBSERVER_PIN_DIR")]
    pub pin_dir: std::path::PathBuf,
}

/// A line on the pins (never a failure: pins left behind are adopted by the next daemon).
pub fn pins(root: &std::path::Path) -> Check {
    Check::pass("pinned probes", crate::kernel::pins::describe(root))
}

/// Outcome of one requirement.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do when it failed.
    pub remedy: Option<String>,
}

impl Check {
    fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { name: name.into(), ok: true, detail: detail.into(), remedy: None }
    }
    fn fail(name: impl Into<String>, detail: impl Into<String>, remedy: impl Into<String>) -> Self {
        Self { name: name.into(), ok: false, detail: detail.into(), remedy: Some(remedy.into()) }
    }
}

/// All checks, in the order they are printed.
#[derive(Debug, Clone)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &self.checks {
            let mark = if c.ok { "PASS" } else { "FAIL" };
            writeln!(f, "{mark}  {:width$}  {}", c.name, c.detail)?;
            if let Some(r) = &c.remedy {
                writeln!(f, "      {:width$}  remedy: {r}", "")?;
            }
        }
        let failed = self.checks.iter().filter(|c| !c.ok).count();
        if failed == 0 {
            write!(f, "all {} checks passed", self.checks.len())
        } else {
            write!(f, "{failed} of {} checks failed", self.checks.len())
        }
    }
}

/// Capability numbers, include/uapi/linux/capability.h.
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Runs every check. `load_programs` also loads (verifies) each BPF program; it needs the
/// privileges checked before it. The kernel lines follow `compat::TABLE`: a failed required
/// feature names this node's kernel, what is missing and what to do; an optional one says
/// which path this node takes and why.
pub fn run(options: &loader::ProbeOptions, load_programs: bool) -> Report {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mut checks = vec![kernel_version(&release)];

    let btf = match Btf::from_sys_fs() {
        Ok(btf) => match btf.kernel_offsets() {
            Ok(o) => {
                checks.push(Check::pass(
                    "kernel BTF",
                    format!(
                        "{} (task_struct.tgid@{} .exit_code@{} .signal@{}, signal_struct.live@{})",
                        crate::kernel::btf::VMLINUX_BTF,
                        o.task_tgid,
                        o.task_exit_code,
                        o.task_signal,
                        o.signal_live,
                    ),
                ));
                Some((btf, o))
            }
            Err(e) => {
                checks.push(missing(&release, FeatureId::Btf, e.to_string()));
                None
            }
        },
        Err(e) => {
            checks.push(missing(&release, FeatureId::Btf, e.to_string()));
            None
        }
    };
    if let Some((btf, _)) = &btf {
        checks.push(tp_btf(&release, btf));
        let support = Support::detect(btf, &options.force_fallback);
        checks.push(optional(FeatureId::ExitGroupDead, &support.exit_group_dead));
        checks.push(optional(FeatureId::TcpState, &support.tcp_state));
    }

    let tracefs = match tracefs::ensure_mounted() {
        Ok((path, mounted)) => {
            let how = if mounted { "mounted it now" } else { "mounted" };
            checks.push(Check::pass("tracefs", format!("{} ({how})", path.display())));
            Some(path)
        }
        Err(e) => {
            checks.push(Check::fail(
                "tracefs",
                e.to_string(),
                "mount -t tracefs nodev /sys/kernel/tracing (as root), or mount the host's into the pod",
            ));
            None
        }
    };

    if let Some(tracefs) = &tracefs {
        checks.extend(tracepoints(&release, tracefs));
    }

    checks.push(match CgroupV2::discover() {
        Ok(v2) => Check::pass(
            "cgroup v2",
            format!("{} ({})", v2.mount.display(), if v2.hybrid { "hybrid" } else { "unified" }),
        ),
        Err(e) => missing(&release, FeatureId::CgroupV2, format!("{e}: cgroup v1 only")),
    });

    let caps = privileges();
    let privileged = caps.ok;
    checks.push(caps);

    if load_programs {
        checks.extend(programs(options, btf.is_some(), privileged));
    }
    Report { checks }
}

/// A required feature of `compat::TABLE` this node lacks.
fn missing(release: &str, id: FeatureId, found: String) -> Check {
    let f = id.feature();
    Check::fail(
        check_name(id),
        format!("{found} (Linux {release}; needs {}, since {})", f.name, f.since),
        f.remedy,
    )
}

fn check_name(id: FeatureId) -> &'static str {
    match id {
        FeatureId::RingBuffer => "kernel version",
        FeatureId::Btf => "kernel BTF",
        FeatureId::TpBtf => "tp_btf prototypes",
        FeatureId::ExitGroupDead => "exit: group_dead",
        FeatureId::ClassicTracepoints => "classic tracepoints",
        FeatureId::TcpState => "tcp state tracepoint",
        FeatureId::CgroupV2 => "cgroup v2",
        FeatureId::BpfCapabilities => "privileges",
    }
}

/// An optional feature: which path this node takes, and why. Both paths pass.
fn optional(id: FeatureId, path: &compat::Path) -> Check {
    let f = id.feature();
    let detail = match (path, f.need) {
        (compat::Path::Native { evidence }, _) => format!("{} ({evidence})", f.name),
        (compat::Path::Fallback { reason }, compat::Need::Optional { fallback }) => {
            format!("fallback: {fallback} ({reason})")
        }
        (compat::Path::Fallback { reason }, compat::Need::Required) => reason.clone(),
    };
    Check::pass(check_name(id), detail)
}

fn kernel_version(release: &str) -> Check {
    let floor = compat::MIN_KERNEL;
    match KernelVersion::parse(release) {
        Some(v) if v >= floor => Check::pass(
            "kernel version",
            format!(
                "{release} (observer needs {floor} or newer: {})",
                FeatureId::RingBuffer.feature().name
            ),
        ),
        Some(_) => missing(
            release,
            FeatureId::RingBuffer,
            format!("Linux {release} is older than {floor}"),
        ),
        None => missing(
            release,
            FeatureId::RingBuffer,
            format!("cannot read the kernel release ({release:?})"),
        ),
    }
}

/// Every tp_btf program's tracepoint has a BTF prototype (what the verifier checks its
/// argument reads against).
fn tp_btf(release: &str, btf: &Btf) -> Check {
    let mut found = Vec::new();
    let mut absent = Vec::new();
    let mut events: Vec<&str> = loader::PROBES
        .iter()
        .filter(|s| s.kind == loader::ProgramKind::BtfTracePoint)
        .map(|s| s.event)
        .collect();
    events.dedup();
    for event in events {
        match btf.tracepoint_args(event) {
            Ok(n) => found.push(format!("{event}/{n}")),
            Err(e) => absent.push(e.to_string()),
        }
    }
    if absent.is_empty() {
        Check::pass(check_name(FeatureId::TpBtf), found.join(" "))
    } else {
        missing(release, FeatureId::TpBtf, absent.join("; "))
    }
}

/// Each tracepoint the probes use exists, and each classic-tracepoint field the probes read is
/// where `observer_ebpf::tp_offsets` says it is.
fn tracepoints(release: &str, tracefs: &std::path::Path) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for spec in loader::PROBES {
        if !seen.insert((spec.category, spec.event)) {
            continue;
        }
        let name = format!("tracepoint {}/{}", spec.category, spec.event);
        let fields = match tracefs::read_format(tracefs, spec.category, spec.event) {
            Ok(f) => f,
            Err(e) => {
                let mut c = missing(release, spec.requires, e.to_string());
                c.name = name;
                checks.push(c);
                continue;
            }
        };
        let mismatches: Vec<String> = observer_ebpf::tp_offsets::EXPECTED
            .iter()
            .filter(|(c, e, ..)| *c == spec.category && *e == spec.event)
            .filter_map(|&(_, _, field, offset, size)| match fields.get(field) {
                Some(f) if f.offset == offset && f.size == size => None,
                Some(f) => Some(format!(
                    "{field} at {}+{} (probes read {offset}+{size})",
                    f.offset, f.size
                )),
                None => Some(format!("no field {field}")),
            })
            .collect();
        checks.push(if mismatches.is_empty() {
            Check::pass(name, format!("{} ({})", spec.kind.as_str(), spec.purpose))
        } else {
            Check::fail(
                name,
                format!("{} (Linux {release})", mismatches.join(", ")),
                "this kernel's record layout differs from the one the probes were built for; report it with `uname -r`",
            )
        });
    }
    checks
}

/// Effective capabilities from /proc/self/status.
fn privileges() -> Check {
    let cap_eff = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    });
    let Some(cap_eff) = cap_eff else {
        return Check::fail(
            "privileges",
            "cannot read CapEff from /proc/self/status",
            "run on Linux with /proc mounted",
        );
    };
    let has = |cap: u32| cap_eff & (1 << cap) != 0;
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .iter()
        .filter(|(c, _)| !has(*c) && !has(CAP_SYS_ADMIN))
        .map(|(_, n)| *n)
        .collect();
    if missing.is_empty() {
        let uid = unsafe { libc::geteuid() };
        if has(CAP_BPF) && has(CAP_PERFMON) {
            let admin = if has(CAP_SYS_ADMIN) { ", CAP_SYS_ADMIN" } else { "" };
            Check::pass("privileges", format!("CAP_BPF, CAP_PERFMON{admin} (uid {uid})"))
        } else {
            let path = compat::Path::Fallback {
                reason: format!("CAP_SYS_ADMIN without CAP_BPF/CAP_PERFMON (uid {uid})"),
            };
            optional(FeatureId::BpfCapabilities, &path)
        }
    } else {
        Check::fail(
            "privileges",
            format!("missing {}", missing.join(", ")),
            "run as root, or grant CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN to mount tracefs)",
        )
    }
}

/// Loads the object and each program this node needs through the verifier (nothing is
/// attached); a program of the other side of an optional feature is listed as such.
fn programs(options: &loader::ProbeOptions, btf_ok: bool, privileged: bool) -> Vec<Check> {
    if !btf_ok {
        return vec![Check::fail(
            "BPF programs load",
            "skipped: kernel BTF offsets unavailable",
            "fix kernel BTF first",
        )];
    }
    if !privileged {
        return vec![Check::fail(
            "BPF programs load",
            "skipped: missing privileges",
            "fix privileges first",
        )];
    }
    match loader::load(options, None) {
        Ok(loaded) => loader::PROBES
            .iter()
            .map(|s| {
                let name = format!("program {}", s.program);
                let at = format!("{}/{}", s.category, s.event);
                if s.wanted(&loaded.support) {
                    Check::pass(name, format!("{} loads ({at})", s.kind.as_str()))
                } else {
                    let why = match s.only {
                        Some((f, true)) => format!("takes the fallback for {}", f.feature().name),
                        Some((f, false)) => format!("has {}", f.feature().name),
                        None => "does not need it".into(),
                    };
                    Check::pass(name, format!("not loaded: this node {why} ({at})"))
                }
            })
            .collect(),
        Err(e) => vec![Check::fail(
            "BPF programs load",
            format!("{e:#}"),
            "see the verifier message above; kprobes/fentry are not used, tracepoint and tp_btf must be allowed",
        )],
    }
}
