//! Signal generation and delivery.
//!
//! signal_generate fires in `__send_signal_locked()` (kernel/signal.c, v6.18), the one place
//! every sender path meets: kill(2), tgkill(2), pidfd_send_signal(2) (what runc uses since
//! Go 1.23), cgroup.kill and the OOM killer. Hooking the syscalls instead would miss the last
//! three. `current` is the sender; the target arrives as a `task_struct *`, which is why this is
//! tp_btf and not the classic tracepoint (whose record has only the target's tid and comm).
//!
//! Only signals to a container's main process are reported: one `PROCESSES` lookup on the
//! target's tgid after the signal-number test decides, for every signal on the node (see
//! `exec.rs` for how a main process is learnt). This replaces "any pid namespace init in a
//! kubepods cgroup", which took a sandbox's nested inits for containers and missed the app
//! containers of a shared pid namespace.
//!
//! Who sent it, relative to the container, comes from the sender's cgroup and the siginfo:
//! `SEND_SIG_PRIV` / SI_KERNEL is the kernel (the OOM killer's SIGKILL); a sender in the
//! target's container cgroup or below it is the container itself (a supervisor, a preStop
//! hook's `kill 1`): not a stop by the runtime, counted in `Counter::SelfSignal` and never
//! emitted, so a pod cannot forge a termination of its own. Only the kernel's SIGKILL is
//! exempt: its other signals from inside (a tty's SIGWINCH) are the container's too.
//!
//! A pid namespace's init with SIG_DFL drops everything but SIGKILL/SIGSTOP sent from an
//! ancestor namespace (`sig_task_ignored()`): that is result=1 here and no delivery later,
//! the commonest reason a container ignores SIGTERM. A main process that is not a namespace
//! init (a shared pid namespace) is killed by the default action instead.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_probe_read_kernel,
    },
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use observer_ebpf::{
    disposition, role, signal_result, Counter, EventKind, Process, SignalDeliverEvent, SignalFact,
    SignalGenerateEvent, SIGKILL, SIGNAL_GROUP_EXIT, SI_KERNEL, SI_USER, STOP_SIGNAL_SUPERSEDE_NS,
    TASK_COMM_LEN,
};

use super::{
    arg_field, config, count, emit, followed, is_reported_signal, may_follow, now, read_field,
    task_dfl_cgroup, within, PROCESSES,
};

/// `SEND_SIG_PRIV` (include/linux/sched/signal.h): `info` is this constant, not a pointer,
/// for signals the kernel sends on its own behalf.
const SEND_SIG_PRIV: u64 = 1;
/// `si_code` follows `si_signo` and `si_errno` in `struct kernel_siginfo`
/// (include/uapi/asm-generic/siginfo.h `__SIGINFO`, every architecture but MIPS).
const SI_CODE_OFFSET: usize = 8;

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
    // 2. Only a container's main process: one lookup for everything else on the node.
    let task: *const u8 = ctx.arg(2);
    let target_tgid: i32 = unsafe { arg_field(task, config!(offsets.task_tgid)) };
    let target_tgid = target_tgid as u32;
    if !may_follow(target_tgid) {
        return Ok(());
    }
    let Some(p) = (unsafe { followed(target_tgid, task) }) else {
        return Ok(());
    };
    let p = unsafe { &mut *p };
    if p.role != role::MAIN {
        return Ok(());
    }
    // 2a. A (target, signal) already reported in this window (a storm at one process): done,
    //     before any kernel read. Marked only below, once the signal is known to be reported.
    let ts = now();
    if seen_in_window(p, sig, ts, false) {
        count(Counter::SignalDeduplicated);
        return Ok(());
    }
    // 2b. A process already exiting cannot be stopped: its pid namespace's dying init
    //     SIGKILLs its last threads (`zap_pid_ns_processes()`, kernel/pid_namespace.c), a
    //     stop races an exit_group(). The kernel then drops the signal (`prepare_signal()`
    //     refuses every signal once SIGNAL_GROUP_EXIT is set, unless dumping core), so the
    //     flag with a result other than delivered means "already exiting"; a fatal signal
    //     that is delivered sets the flag itself (`complete_signal()`, before this
    //     tracepoint fires). Seen as a "SIGKILL from the kernel" 0.01 ms before
    //     redis-server's exit 0.
    let result: i32 = ctx.arg(4);
    if result as u32 != signal_result::DELIVERED {
        let signal: *const u8 = unsafe { read_field(task, config!(offsets.task_signal))? };
        let flags: u32 = unsafe { read_field(signal, config!(offsets.signal_flags))? };
        if flags & SIGNAL_GROUP_EXIT != 0 {
            count(Counter::TargetExiting);
            return Ok(());
        }
    }
    // 3. Not from the container itself: a sender in the main process's cgroup or below it
    //    (crun's `container` sub-cgroup, a supervisor's own cgroups), decided before the
    //    de-duplication below so it never takes the runtime's slot. The kernel's SIGKILL
    //    counts whoever `current` is (the OOM killer runs in the allocating task); its other
    //    signals (a tty's SIGWINCH or SIGHUP, RLIMIT_CPU's) from inside are the container's.
    let si_code = unsafe { si_code(ctx.arg(1)) };
    let sender_cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    let kernel_kill = si_code == SI_KERNEL && sig == SIGKILL;
    if !kernel_kill {
        let from_self = sender_cgroup_id == p.cgroup_id || {
            let current = unsafe { bpf_get_current_task() } as *const u8;
            unsafe { task_dfl_cgroup(current) }.is_ok_and(|c| unsafe { within(c, p.cgroup_id) })
        };
        if from_self {
            count(Counter::SelfSignal);
            return Ok(());
        }
    }
    // 4. Once per (target, signal) per window: a signal storm at one process is one record.
    if !mark_emitted(p, sig, ts, false) {
        return Ok(());
    }

    let pid_tgid = bpf_get_current_pid_tgid();
    let target_tid: i32 = unsafe { read_field(task, config!(offsets.task_pid)) }.unwrap_or(0);
    let target_comm: [u8; TASK_COMM_LEN] =
        unsafe { read_field(task, config!(offsets.task_comm)) }.unwrap_or([0; TASK_COMM_LEN]);
    let target_handler = unsafe { disposition_of(task, sig) };
    let group: i32 = ctx.arg(3);
    let sender_comm = bpf_get_current_comm().unwrap_or([0; TASK_COMM_LEN]);
    // 5. Kept in the process's entry too: its exit event carries it to a daemon that never
    //    read this event (started since, or the ring was full).
    let fact = SignalFact {
        at_ns: ts,
        sender_cgroup_id,
        sig,
        si_code,
        result: result as u32,
        handler: target_handler,
        sender_tgid: (pid_tgid >> 32) as u32,
        delivered: 0,
        sender_comm,
    };
    // 6. A main process's connections at its stop signal and SIGKILL (`net.rs`); for one
    //    older than the probes, counting begins here.
    let main = p.role == role::MAIN;
    let pp: *mut Process = p;
    if main && p.net.cookie == 0 {
        let parent = unsafe { read_field::<*const u8>(task, config!(offsets.task_real_parent)) };
        if let Ok(parent) = parent {
            unsafe { super::net::learn(task, parent, true, core::ptr::addr_of_mut!((*pp).net)) };
        }
    }
    if sig == SIGKILL {
        if p.kill.at_ns == 0 {
            p.kill = fact;
            if main {
                unsafe { super::net::snapshot(pp, core::ptr::addr_of_mut!((*pp).traffic_kill)) };
            }
        }
    } else if p.stop.at_ns == 0
        || (p.stop.sig != sig && ts.wrapping_sub(p.stop.at_ns) > STOP_SIGNAL_SUPERSEDE_NS)
    {
        p.stop = fact;
        if main {
            unsafe { super::net::snapshot(pp, core::ptr::addr_of_mut!((*pp).traffic_stop)) };
        }
    }
    let (start_ticks, target_cgroup_id) = (p.start_ticks, p.cgroup_id);
    emit(EventKind::SignalGenerate, ts, |header| SignalGenerateEvent {
        header,
        sig,
        si_code,
        _pad0: 0,
        result: result as u32,
        group: group as u32,
        target_handler,
        target_tgid,
        target_tid: target_tid as u32,
        sender_tgid: (pid_tgid >> 32) as u32,
        sender_tid: pid_tgid as u32,
        target_start_ticks: start_ticks,
        target_cgroup_id,
        sender_cgroup_id,
        target_comm,
        sender_comm,
    });
    Ok(())
}

/// `info->si_code`, with the two special values of `info` (kernel/signal.c
/// `__send_signal_locked()`): `SEND_SIG_NOINFO` (0) is a user's kill, `SEND_SIG_PRIV` the
/// kernel's.
#[inline(always)]
unsafe fn si_code(info: u64) -> i32 {
    match info {
        0 => SI_USER,
        SEND_SIG_PRIV => SI_KERNEL,
        _ => unsafe { bpf_probe_read_kernel((info as usize + SI_CODE_OFFSET) as *const i32) }
            .unwrap_or(SI_USER),
    }
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
    // Only main processes whose signal was reported (the prefilter for everything else).
    if !may_follow(tgid) {
        return Ok(());
    }
    let Some(p) = PROCESSES.get_ptr_mut(&tgid) else {
        return Ok(());
    };
    let p = unsafe { &mut *p };
    let ts = now();
    if p.role != role::MAIN || !mark_emitted(p, sig, ts, true) {
        return Ok(());
    }
    // struct k_sigaction { struct sigaction sa; ... }, sa = { sa_handler, sa_flags, ... }
    // (include/linux/signal_types.h): the handler is the first word, the flags the second.
    let ka: *const u8 = ctx.arg(2);
    let sa_handler: u64 =
        unsafe { bpf_probe_read_kernel(ka as *const u64) }.map_err(|e| e as i64)?;
    let sa_flags: u64 =
        unsafe { bpf_probe_read_kernel(ka.add(8) as *const u64) }.map_err(|e| e as i64)?;
    let start_ticks = p.start_ticks;
    let disposition = match sa_handler {
        0 => disposition::DEFAULT,
        1 => disposition::IGNORED,
        _ => disposition::HANDLED,
    };
    if p.stop.at_ns != 0 && p.stop.sig == sig && p.stop.delivered == 0 {
        p.stop.delivered = disposition + 1;
    }
    emit(EventKind::SignalDeliver, ts, |header| SignalDeliverEvent {
        header,
        sig,
        disposition,
        tgid,
        tid: pid_tgid as u32,
        start_ticks,
        sa_flags,
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
    });
    Ok(())
}

/// True when `sig` (its generation, or its delivery) was emitted for `p` in the window that
/// `ts` falls in; changes nothing.
#[inline(always)]
fn seen_in_window(p: &Process, sig: u32, ts: u64, delivered: bool) -> bool {
    let mask = if delivered { p.delivered_mask } else { p.generated_mask };
    ts.wrapping_sub(p.window_start_ns) <= config!(dedupe_window_ns) && mask & (1u64 << sig) != 0
}

/// Records that `sig` (its generation, or its delivery) is being emitted for `p`; false when
/// it already was in this window.
#[inline(always)]
fn mark_emitted(p: &mut Process, sig: u32, ts: u64, delivered: bool) -> bool {
    let bit = 1u64 << sig;
    if ts.wrapping_sub(p.window_start_ns) > config!(dedupe_window_ns) {
        p.window_start_ns = ts;
        p.generated_mask = 0;
        p.delivered_mask = 0;
    }
    let mask = if delivered { &mut p.delivered_mask } else { &mut p.generated_mask };
    if *mask & bit != 0 {
        count(Counter::SignalDeduplicated);
        return false;
    }
    *mask |= bit;
    true
}

/// The target's disposition of `sig` as the kernel weighs it at generation: blocked first
/// (kernel/signal.c `sig_ignored()`: "Blocked signals are never ignored"; `real_blocked` is
/// the mask sigtimedwait(2) saved while it waits, which is how tini takes SIGTERM), then
/// `task->sighand->action[sig - 1].sa.sa_handler`.
#[inline(always)]
unsafe fn disposition_of(task: *const u8, sig: u32) -> u32 {
    let bit = 1u64 << (sig - 1);
    let blocked: u64 = unsafe { read_field(task, config!(offsets.task_blocked)) }.unwrap_or(0);
    let real_blocked: u64 =
        unsafe { read_field(task, config!(offsets.task_real_blocked)) }.unwrap_or(0);
    if (blocked | real_blocked) & bit != 0 {
        return disposition::BLOCKED;
    }
    unsafe { handler_of(task, sig) }
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
