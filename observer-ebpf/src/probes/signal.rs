//! Signal generation and delivery.
//!
//! signal_generate fires in `__send_signal_locked()` (kernel/signal.c, v6.18), the one place
//! every sender path meets: kill(2), tgkill(2), pidfd_send_signal(2) (what runc uses since
//! Go 1.23), cgroup.kill and the OOM killer. Hooking the syscalls instead would miss the last
//! three. `current` is the sender; the target arrives as a `task_struct *`, which is why this is
//! tp_btf and not the classic tracepoint (whose record has only the target's tid and comm).
//!
//! "Container PID 1" is tested as `task->thread_pid->numbers[level].nr == 1` with level > 0,
//! not with SIGNAL_UNKILLABLE: complete_signal() overwrites `signal->flags` with
//! SIGNAL_GROUP_EXIT for a fatal signal before this tracepoint fires, so the SIGKILL that ends
//! a container would be filtered out.
//!
//! A pid namespace's init with SIG_DFL drops everything but SIGKILL/SIGSTOP sent from an
//! ancestor namespace (`sig_task_ignored()`): that is result=1 here and no delivery later,
//! the commonest reason a container ignores SIGTERM.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_probe_read_kernel,
    },
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use observer_ebpf::{
    disposition, Counter, EventKind, SignalDeliverEvent, SignalGenerateEvent, Tracked, SIGKILL,
    TASK_COMM_LEN,
};

use super::{
    config, count, emit, is_reported_signal, now, read_field, task_cgroup_id, TRACKED,
    WATCHED_CGROUPS,
};

/// `TRACE_EVENT(signal_generate, TP_PROTO(int sig, struct kernel_siginfo *info,
/// struct task_struct *task, int group, int result))`, include/trace/events/signal.h.
#[btf_tracepoint(function = "signal_generate")]
pub fn signal_generate(ctx: BtfTracePointContext) -> i32 {
    match unsafe { try_signal_generate(&ctx) } {
        Ok(()) | Err(_) => 0,
    }
}

unsafe fn try_signal_generate(ctx: &BtfTracePointContext) -> Result<(), i64> {
    // 1. Signal number first: every process exit sends a SIGCHLD through here.
    let sig: i32 = ctx.arg(0);
    let sig = sig as u32;
    if !is_reported_signal(sig) {
        return Ok(());
    }
    let task: *const u8 = ctx.arg(2);
    // 2. Only a pid namespace's init (not the host's init): the process the runtime stops.
    //    Host processes fail here after two reads.
    if !unsafe { is_pid_ns_init(task)? } {
        return Ok(());
    }
    let target_tgid: i32 = unsafe { read_field(task, config!(offsets.task_tgid))? };
    let target_tgid = target_tgid as u32;
    // 3. A process signalling itself is never a container stop. SIGKILL is the exception: the
    //    OOM killer sends it from the allocating task, which can be the victim itself.
    let pid_tgid = bpf_get_current_pid_tgid();
    let sender_tgid = (pid_tgid >> 32) as u32;
    if sender_tgid == target_tgid && sig != SIGKILL {
        return Ok(());
    }
    // 4. Only inside a container's cgroup.
    let target_cgroup_id = unsafe { task_cgroup_id(task)? };
    if unsafe { WATCHED_CGROUPS.get(&target_cgroup_id) }.is_none() {
        return Ok(());
    }
    // 5. Once per (target, signal) per window: a signal storm at one PID 1 is one record.
    let ts = now();
    if !mark_emitted(target_tgid, sig, ts, false) {
        return Ok(());
    }

    let target_tid: i32 = unsafe { read_field(task, config!(offsets.task_pid)) }.unwrap_or(0);
    let target_comm: [u8; TASK_COMM_LEN] =
        unsafe { read_field(task, config!(offsets.task_comm)) }.unwrap_or([0; TASK_COMM_LEN]);
    let target_handler = unsafe { handler_of(task, sig) };
    let group: i32 = ctx.arg(3);
    let result: i32 = ctx.arg(4);
    emit(EventKind::SignalGenerate, ts, |header| SignalGenerateEvent {
        header,
        sig,
        result: result as u32,
        group: group as u32,
        target_handler,
        target_tgid,
        target_tid: target_tid as u32,
        sender_tgid,
        sender_tid: pid_tgid as u32,
        target_cgroup_id,
        sender_cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        target_comm,
        sender_comm: bpf_get_current_comm().unwrap_or([0; TASK_COMM_LEN]),
    });
    Ok(())
}

/// `TRACE_EVENT(signal_deliver, TP_PROTO(int sig, struct kernel_siginfo *info,
/// struct k_sigaction *ka))`, called from get_signal() in the receiving thread just before
/// the handler runs or the default action is taken. tp_btf rather than the classic tracepoint:
/// this fires for every delivered signal on the node, and the classic one formats a perf
/// record each time before the program can say no.
#[btf_tracepoint(function = "signal_deliver")]
pub fn signal_deliver(ctx: BtfTracePointContext) -> i32 {
    match unsafe { try_signal_deliver(&ctx) } {
        Ok(()) | Err(_) => 0,
    }
}

unsafe fn try_signal_deliver(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let sig: i32 = ctx.arg(0);
    let sig = sig as u32;
    if !is_reported_signal(sig) {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // Only processes signal_generate chose to track (one lookup for everything else).
    let ts = now();
    if !mark_emitted(tgid, sig, ts, true) {
        return Ok(());
    }
    // struct k_sigaction { struct sigaction sa; ... }, sa = { sa_handler, sa_flags, ... }
    // (include/linux/signal_types.h): the handler is the first word, the flags the second.
    let ka: *const u8 = ctx.arg(2);
    let sa_handler: u64 =
        unsafe { bpf_probe_read_kernel(ka as *const u64) }.map_err(|e| e as i64)?;
    let sa_flags: u64 =
        unsafe { bpf_probe_read_kernel(ka.add(8) as *const u64) }.map_err(|e| e as i64)?;
    emit(EventKind::SignalDeliver, ts, |header| SignalDeliverEvent {
        header,
        sig,
        disposition: match sa_handler {
            0 => disposition::DEFAULT,
            1 => disposition::IGNORED,
            _ => disposition::HANDLED,
        },
        tgid,
        tid: pid_tgid as u32,
        sa_flags,
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
    });
    Ok(())
}

/// Records that `sig` for `tgid` is being emitted; false when it already was in this window
/// (or, for deliveries, when `tgid` is not tracked at all). Generation inserts the entry.
#[inline(always)]
fn mark_emitted(tgid: u32, sig: u32, ts: u64, delivered: bool) -> bool {
    let bit = 1u64 << sig;
    match TRACKED.get_ptr_mut(&tgid) {
        Some(t) => {
            let t = unsafe { &mut *t };
            if ts.wrapping_sub(t.window_start_ns) > config!(dedupe_window_ns) {
                t.window_start_ns = ts;
                t.generated_mask = 0;
                t.delivered_mask = 0;
            }
            let mask = if delivered { &mut t.delivered_mask } else { &mut t.generated_mask };
            if *mask & bit != 0 {
                count(Counter::SignalDeduplicated);
                return false;
            }
            *mask |= bit;
            true
        }
        None if delivered => false,
        None => {
            let t = Tracked { window_start_ns: ts, generated_mask: bit, delivered_mask: 0 };
            if TRACKED.insert(&tgid, &t, 0).is_err() {
                count(Counter::TrackedInsertFailed);
            }
            true
        }
    }
}

/// `task->sighand->action[sig - 1].sa.sa_handler` as a [`disposition`] value.
#[inline(always)]
unsafe fn handler_of(task: *const u8, sig: u32) -> u32 {
    let Ok(sighand) = (unsafe { read_field::<*const u8>(task, config!(offsets.task_sighand)) })
    else {
        return disposition::UNKNOWN;
    };
    let size = config!(offsets.k_sigaction_size);
    let offset = config!(offsets.sighand_action) + (sig - 1) * size;
    if size == 0 {
        return disposition::UNKNOWN;
    }
    match unsafe { read_field::<u64>(sighand, offset) } {
        Ok(0) => disposition::DEFAULT,
        Ok(1) => disposition::IGNORED,
        Ok(_) => disposition::HANDLED,
        Err(_) => disposition::UNKNOWN,
    }
}

/// True when `task` is pid 1 of a pid namespace below the host's (include/linux/pid.h:
/// `struct pid { ...; unsigned int level; ...; struct upid numbers[]; }`).
#[inline(always)]
pub(super) unsafe fn is_pid_ns_init(task: *const u8) -> Result<bool, i64> {
    let pid: *const u8 = unsafe { read_field(task, config!(offsets.task_thread_pid))? };
    let level: u32 = unsafe { read_field(pid, config!(offsets.pid_level))? };
    if level == 0 || level > 32 {
        return Ok(false);
    }
    let nr_offset = config!(offsets.pid_numbers) + level * config!(offsets.upid_size);
    let nr: i32 = unsafe { read_field(pid, nr_offset)? };
    Ok(nr == 1)
}
