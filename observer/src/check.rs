//! `observer check`: the preflight. One line per requirement, pass or fail, with the remedy.
//! `observer run` runs the same checks first and refuses to start with this text.

use std::fmt;

use crate::{
    cgroup::CgroupV2,
    kernel::{btf::Btf, loader, tracefs},
};

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

/// Oldest kernel the probes can run on: BPF ring buffer (5.8) and the `group_dead` field of
/// sched_process_exit; the tracepoint format check below is the precise test.
const MIN_KERNEL: (u32, u32) = (5, 8);

/// Capability numbers, include/uapi/linux/capability.h.
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Runs every check. `load_programs` also loads (verifies) each BPF program; it needs the
/// privileges checked before it.
pub fn run(options: &loader::ProbeOptions, load_programs: bool) -> Report {
    let mut checks = vec![kernel_version()];

    let btf = match Btf::from_sys_fs() {
        Ok(btf) => match btf.kernel_offsets() {
            Ok(o) => {
                checks.push(Check::pass(
                    "kernel BTF",
                    format!(
                        "{} (task_struct.tgid@{} .exit_code@{} .cgroups@{})",
                        crate::kernel::btf::VMLINUX_BTF,
                        o.task_tgid,
                        o.task_exit_code,
                        o.task_cgroups
                    ),
                ));
                Some(o)
            }
            Err(e) => {
                checks.push(Check::fail("kernel BTF", e.to_string(), "a kernel whose BTF describes task_struct, signal_struct, css_set, cgroup and kernfs_node"));
                None
            }
        },
        Err(e) => {
            checks.push(Check::fail(
                "kernel BTF",
                e.to_string(),
                "boot a kernel built with CONFIG_DEBUG_INFO_BTF=y",
            ));
            None
        }
    };

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
        checks.extend(tracepoints(tracefs));
    }

    checks.push(match CgroupV2::discover() {
        Ok(v2) => Check::pass(
            "cgroup v2",
            format!("{} ({})", v2.mount.display(), if v2.hybrid { "hybrid" } else { "unified" }),
        ),
        Err(e) => Check::fail(
            "cgroup v2",
            e.to_string(),
            "mount cgroup2 (unified, or hybrid at /sys/fs/cgroup/unified); observer keys containers by v2 ids",
        ),
    });

    let caps = privileges();
    let privileged = caps.ok;
    checks.push(caps);

    if load_programs {
        checks.extend(programs(options, btf, privileged));
    }
    Report { checks }
}

fn kernel_version() -> Check {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok());
    let version: (u32, u32) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if version >= MIN_KERNEL {
        Check::pass("kernel version", format!("{release} (>= {}.{})", MIN_KERNEL.0, MIN_KERNEL.1))
    } else {
        Check::fail(
            "kernel version",
            format!("{release:?}"),
            format!("Linux {}.{} or newer is needed (BPF ring buffer)", MIN_KERNEL.0, MIN_KERNEL.1),
        )
    }
}

/// Each tracepoint the probes use exists, and each classic-tracepoint field the probes read is
/// where `observer_ebpf::tp_offsets` says it is.
fn tracepoints(tracefs: &std::path::Path) -> Vec<Check> {
    let mut checks = Vec::new();
    for spec in loader::PROBES {
        let name = format!("tracepoint {}/{}", spec.category, spec.event);
        let fields = match tracefs::read_format(tracefs, spec.category, spec.event) {
            Ok(f) => f,
            Err(e) => {
                checks.push(Check::fail(
                    name,
                    e.to_string(),
                    format!("Linux {} or newer ({})", spec.min_kernel, spec.purpose),
                ));
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
                mismatches.join(", "),
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
        let admin = if has(CAP_SYS_ADMIN) { ", CAP_SYS_ADMIN" } else { "" };
        Check::pass(
            "privileges",
            format!("CAP_BPF, CAP_PERFMON{admin} (uid {})", unsafe { libc::geteuid() }),
        )
    } else {
        Check::fail(
            "privileges",
            format!("missing {}", missing.join(", ")),
            "run as root, or grant CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN to mount tracefs)",
        )
    }
}

/// Loads the object and each program through the verifier (nothing is attached).
fn programs(
    options: &loader::ProbeOptions,
    offsets: Option<observer_ebpf::KernelOffsets>,
    privileged: bool,
) -> Vec<Check> {
    let Some(offsets) = offsets else {
        return vec![Check::fail(
            "BPF programs load",
            "skipped: kernel BTF offsets unavailable",
            "fix kernel BTF first",
        )];
    };
    if !privileged {
        return vec![Check::fail(
            "BPF programs load",
            "skipped: missing privileges",
            "fix privileges first",
        )];
    }
    match loader::load(options, offsets) {
        Ok(_) => loader::PROBES
            .iter()
            .map(|s| {
                Check::pass(
                    format!("program {}", s.program),
                    format!("{} loads ({}/{})", s.kind.as_str(), s.category, s.event),
                )
            })
            .collect(),
        Err(e) => vec![Check::fail(
            "BPF programs load",
            format!("{e:#}"),
            "see the verifier message above; kprobes/fentry are not used, tracepoint and tp_btf must be allowed",
        )],
    }
}
