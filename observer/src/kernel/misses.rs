//! Runs of our programs the kernel skipped: `bpf_prog_info.recursion_misses`.
//!
//! A classic tracepoint's program does not run when another BPF program of the tracing kinds
//! is already running on that CPU (kernel/trace/bpf_trace.c `trace_call_bpf()`: the per-CPU
//! `bpf_prog_active` guard); a tp_btf program does not run nested in itself
//! (`__bpf_trace_run()`'s `prog->active`). Since 5.12 the kernel counts each skip in the
//! program's `recursion_misses` (`bpf_prog_inc_misses_counter()`). For `inet_sock_set_state`
//! that is a TCP state change arriving in softirq while a program ran in the task it
//! interrupted: a count the traffic gauges then lack. Read from BPF_OBJ_GET_INFO_BY_FD (aya
//! 0.14's `ProgramInfo` does not expose the field), which needs no capability.

use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};

use aya::Ebpf;
use aya_obj::generated::bpf_prog_info;

use super::{compat::Support, loader::PROBES};

/// `BPF_OBJ_GET_INFO_BY_FD`, include/uapi/linux/bpf.h.
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// `union bpf_attr`'s `info` member.
#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The loaded programs, by name, with a descriptor of each (a duplicate: the `Ebpf` may be
/// dropped or moved).
pub struct Misses {
    programs: Vec<(&'static str, OwnedFd)>,
}

impl Misses {
    /// Every program this node loaded ([`PROBES`] it wants).
    pub fn of(ebpf: &Ebpf, support: &Support) -> Self {
        let programs = PROBES
            .iter()
            .filter(|s| s.wanted(support))
            .filter_map(|s| {
                let fd = ebpf.program(s.program)?.fd().ok()?.as_fd().try_clone_to_owned().ok()?;
                Some((s.program, fd))
            })
            .collect();
        Self { programs }
    }

    /// Each program's skipped runs so far (a program whose info cannot be read is left out).
    pub fn read(&self) -> Vec<(&'static str, u64)> {
        self.programs.iter().filter_map(|(name, fd)| Some((*name, recursion_misses(fd)?))).collect()
    }
}

fn recursion_misses(fd: &OwnedFd) -> Option<u64> {
    // SAFETY: bpf_prog_info is plain integers; zeroed is a valid value.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<bpf_prog_info>() as u32,
        info: &mut info as *mut bpf_prog_info as u64,
    };
    // SAFETY: BPF_OBJ_GET_INFO_BY_FD writes at most `info_len` bytes into `info`, which lives
    // for the call; `attr` is the union member the command reads.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &mut attr as *mut InfoAttr,
            std::mem::size_of::<InfoAttr>(),
        )
    };
    (rc == 0).then_some(info.recursion_misses)
}
