//! Process exit: the end of a followed process (a container's main process, an exec session).
//!
//! Both programs are tp_btf at sched_process_exit, which runs in the exiting thread
//! (`current`) inside do_exit() (kernel/exit.c). Two facts of do_exit() hold from 5.8 to
//! 6.18 (read in Debian's 6.1.192 and 6.12.117 sources, lines 840/862/878 and 907/929/945):
//!
//! ```c
//! group_dead = atomic_dec_and_test(&tsk->signal->live);   // the last thread to get here
//! ...
//! tsk->exit_code = code;
//! ...
//! trace_sched_process_exit(tsk);            // 6.16+: trace_sched_process_exit(tsk, group_dead)
//! ```
//!
//! Commit 3e816361e94a ("sched/tracepoints: Move and extend the sched_process_exit()
//! tracepoint", 6.16) added `group_dead` to the tracepoint and moved it before exit_mm(); the
//! loader picks [`sched_process_exit`] where the tracepoint's BTF prototype has that argument
//! and [`sched_process_exit_live`] elsewhere (`kernel/compat.rs` in observer).
//!
//! Without the argument, `signal->live == 0` at the tracepoint says every thread of the group
//! has passed its decrement: the group is dead. More than one thread can see 0 when threads
//! exit at the same time (the first decrements to 1, the second to 0, then both reach the
//! tracepoint), so the record is emitted by whichever thread deletes the process's
//! `PROCESSES` entry: one record per process on both paths. The exit status does not depend on which
//! thread emits it: it is computed as the parent's wait(2) will see it (see [`exit_status`]).

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_probe_read_kernel_buf,
    },
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use observer_ebpf::{
    role, Counter, EndedKey, EventKind, ProcessExitEvent, Traffic, SIGNAL_GROUP_EXIT, TASK_COMM_LEN,
};

use super::{
    config, count, followed, header, may_follow, now, read_field, unfollow, ENDED, EVENTS,
    PROCESSES, SCRATCH_ENDED, WATCHED_CGROUPS,
};

/// 6.16 and later: `TP_PROTO(struct task_struct *p, bool group_dead)`,
/// include/trace/events/sched.h.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    // A bool in the low byte of its u64 argument slot: a thread that is not the group's last
    // costs nothing more.
    let group_dead: u64 = ctx.arg(1);
    if group_dead & 0xff == 0 {
        return 0;
    }
    // The exiting task is `current`: its tgid from the helper, which reads the task's own
    // (hot) line; through the task argument it would take an offset from `CONFIG`, a line
    // that nothing else touches in a fork storm.
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // Processes not followed: one array load (the prefilter), nothing emitted.
    if !may_follow(tgid) || unsafe { PROCESSES.get(&tgid) }.is_none() {
        return 0;
    }
    let _ = unsafe { emit_exit(tgid) };
    0
}

/// Before 6.16: `TP_PROTO(struct task_struct *p)`; `group_dead` is read back from
/// `p->signal->live`, which do_exit() decremented before the tracepoint.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit_live(_ctx: BtfTracePointContext) -> i32 {
    // The exiting task is `current` (see `sched_process_exit`).
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !may_follow(tgid) || unsafe { PROCESSES.get(&tgid) }.is_none() {
        return 0;
    }
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let live = unsafe {
        read_field::<*const u8>(task, config!(offsets.task_signal))
            .and_then(|signal| read_field::<i32>(signal, config!(offsets.signal_live)))
    };
    // Another thread is still running (or `live` could not be read, which is counted).
    if live != Ok(0) {
        return 0;
    }
    let _ = unsafe { emit_exit(tgid) };
    0
}

/// Emits the exit of `tgid` once: the thread that removes its `PROCESSES` entry reports it.
/// An entry made for an earlier process with this tgid is dropped (and counted) unreported.
/// A BPF-to-BPF call, not inlined: the programs' filter and their return stay in a few
/// instructions (one instruction-cache line, the epilogue beside it) for the exits of
/// processes nobody follows.
#[inline(never)]
unsafe fn emit_exit(tgid: u32) -> Result<(), i64> {
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let Some(p) = (unsafe { followed(tgid, task) }) else {
        return Ok(());
    };
    let (start_ticks, role, flags, cgroup, window_start) = unsafe {
        let p = &*p;
        (p.start_ticks, p.role, p.flags, p.cgroup_id, p.window_start_ns)
    };
    // Built once, in per-CPU room (with the path it is too large for the stack): the ring
    // gets the exit event, `ENDED` the whole termination. What comes from the entry is copied
    // before the entry goes; the connections are counted now, before do_exit() closes the
    // process's files (`net.rs`).
    let Some(e) = SCRATCH_ENDED.get_ptr_mut(0) else {
        return Ok(());
    };
    let e = unsafe { &mut *e };
    unsafe {
        e.exit.stop = (*p).stop;
        e.exit.kill = (*p).kill;
        e.exit.net = (*p).net;
        e.exit.traffic_stop = (*p).traffic_stop;
        e.exit.traffic_kill = (*p).traffic_kill;
        if role == role::MAIN {
            super::net::snapshot(p, core::ptr::addr_of_mut!(e.exit.traffic_exit));
        } else {
            e.exit.traffic_exit = Traffic::ZERO;
        }
    }
    if !unfollow(tgid, flags) {
        // Another exiting thread of the group got here first.
        return Ok(());
    }
    // A main process that never had a stop signal or SIGKILL reported (`window_start_ns` is
    // set at the first) leaves its cgroup without one: runc's bootstrap process (`runc init`,
    // stage 0) may have exec'd inside the cgroup before the real init did, and exits before
    // the entrypoint's exec, which then becomes the main process. One that was stopped keeps
    // it: an exec session still running in a dying container never becomes a main.
    if role == role::MAIN && window_start == 0 {
        if let Some(w) = WATCHED_CGROUPS.get_ptr_mut(&cgroup) {
            if unsafe { (*w).main_tgid } == tgid {
                unsafe { (*w).main_tgid = 0 };
            }
        }
    }
    let ts = now();
    let status = unsafe { exit_status(task) }.unwrap_or(-1);
    let x = &mut e.exit;
    x.header = header(EventKind::ProcessExit, ts);
    x.tgid = tgid;
    x.tid = bpf_get_current_pid_tgid() as u32;
    x.start_ticks = start_ticks;
    x.exit_code = status as u32;
    x.role = role;
    x.flags = flags;
    x._pad0 = 0;
    x.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    x.comm = bpf_get_current_comm().unwrap_or([0; TASK_COMM_LEN]);
    let (stop, kill) = (x.stop, x.kill);
    if EVENTS.output::<ProcessExitEvent>(&e.exit, 0).is_err() {
        count(EventKind::ProcessExit.ring_full());
    }
    // A termination (a main process that had a stop signal or a SIGKILL) is kept until a
    // daemon has recorded it: one killed before that, or a ring that overflowed while no
    // daemon read it, loses nothing.
    if role == role::MAIN && (stop.at_ns != 0 || kill.at_ns != 0) {
        e.cgroup_id = cgroup;
        e.path_len = 0;
        if let Some(w) = WATCHED_CGROUPS.get_ptr(&cgroup) {
            let len = unsafe { (*w).path_len };
            if len > 0
                && unsafe { bpf_probe_read_kernel_buf((*w).path.as_ptr(), &mut e.path) }.is_ok()
            {
                e.path_len = len;
            }
        }
        let key = EndedKey { tgid, _pad0: 0, start_ticks };
        if ENDED.insert(&key, e, 0).is_err() {
            count(Counter::EndedFull);
        }
    }
    Ok(())
}

/// The status the parent reaps, as `wait_task_zombie()` computes it (kernel/exit.c, 6.1 to
/// 6.18): `(p->signal->flags & SIGNAL_GROUP_EXIT) ? p->signal->group_exit_code :
/// p->exit_code`, where `p` is the group leader. A leader that left with pthread_exit() before
/// its last thread called `_exit(7)` is reaped with the leader's 0, not 7; after exit_group()
/// or a fatal signal every thread carries `group_exit_code`.
#[inline(always)]
unsafe fn exit_status(task: *const u8) -> Result<i32, i64> {
    let signal: *const u8 = unsafe { read_field(task, config!(offsets.task_signal))? };
    let flags: u32 = unsafe { read_field(signal, config!(offsets.signal_flags))? };
    if flags & SIGNAL_GROUP_EXIT != 0 {
        return unsafe { read_field(signal, config!(offsets.signal_group_exit_code)) };
    }
    let leader: *const u8 = unsafe { read_field(task, config!(offsets.task_group_leader))? };
    unsafe { read_field(leader, config!(offsets.task_exit_code)) }
}
