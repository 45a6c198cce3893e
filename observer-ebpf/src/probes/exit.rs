//! Process exit.
//!
//! The classic sched_process_exit record has no exit code, and on this kernel kprobes do not
//! exist and fentry is refused, so the code is read from `current->exit_code` (offset from BTF):
//! do_exit() (kernel/exit.c, v6.18) stores `tsk->exit_code = code` before it calls
//! `trace_sched_process_exit(tsk, group_dead)`, and the tracepoint runs in the exiting task.
//! `group_dead` is true for the last thread of the group: the process is gone.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task,
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use observer_ebpf::{tp_offsets, Counter, EventHeader, EventKind, ProcessExitEvent, TASK_COMM_LEN};

use super::{config, count, cpu, now, read_field, EVENTS, TRACKED};

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> i32 {
    match unsafe { try_sched_process_exit(&ctx) } {
        Ok(()) | Err(_) => 0,
    }
}

unsafe fn try_sched_process_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // Untracked processes: one lookup, nothing emitted.
    if unsafe { TRACKED.get(&tgid) }.is_none() {
        return Ok(());
    }
    let group_dead: u8 = unsafe { ctx.read_at(tp_offsets::SCHED_PROCESS_EXIT_GROUP_DEAD)? };
    if group_dead == 0 {
        return Ok(());
    }
    let ts = now();
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let exit_code: i32 = unsafe { read_field(task, config!(offsets.task_exit_code)) }.unwrap_or(-1);
    let _ = TRACKED.remove(&tgid);
    let Some(mut entry) = EVENTS.reserve::<ProcessExitEvent>(0) else {
        count(Counter::RingbufFullProcessExit);
        return Ok(());
    };
    entry.write(ProcessExitEvent {
        header: EventHeader { kind: EventKind::ProcessExit as u32, cpu: cpu(), ktime_ns: ts },
        tgid,
        tid: pid_tgid as u32,
        exit_code: exit_code as u32,
        _pad0: 0,
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        comm: bpf_get_current_comm().unwrap_or([0; TASK_COMM_LEN]),
    });
    entry.submit(0);
    Ok(())
}
