//! Exec sessions entering a container: how a preStop exec hook shows in the kernel.
//!
//! kubelet runs an exec hook through the CRI's ExecSync; the runtime (`runc exec`, crun
//! exec) starts a process that joins the container's cgroup and namespaces and then execs the
//! hook's command. Its parent is the runtime on the host, never the container's PID 1. So at
//! `sched_process_exec` (fs/exec.c `exec_binprm()`, v6.18: `trace_sched_process_exec(current,
//! old_pid, bprm)`, after the new program's comm is set) a session is: current's cgroup is a
//! watched container cgroup, current is not the pid namespace's init (whose own exec starts
//! the container), and its `real_parent` is in another cgroup (the container's own processes
//! and the hook's children have their parent inside). tp_btf, because every exec on the node
//! passes here: the first test is one helper call and one hash lookup.
//!
//! The session's pid is put in `TRACKED`, so `sched_process_exit` reports when it ends.

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use observer_ebpf::{Counter, EventKind, ExecSessionEvent, Tracked, TASK_COMM_LEN};

use super::{
    config, count, emit, now, read_field, signal::is_pid_ns_init, task_cgroup_id, TRACKED,
    WATCHED_CGROUPS,
};

/// `TRACE_EVENT(sched_process_exec, TP_PROTO(struct task_struct *p, pid_t old_pid,
/// struct linux_binprm *bprm))`, include/trace/events/sched.h.
#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> i32 {
    match unsafe { try_sched_process_exec(&ctx) } {
        Ok(()) | Err(_) => 0,
    }
}

unsafe fn try_sched_process_exec(ctx: &BtfTracePointContext) -> Result<(), i64> {
    // 1. Only inside a container's cgroup: one lookup for every other exec on the node.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if unsafe { WATCHED_CGROUPS.get(&cgroup_id) }.is_none() {
        return Ok(());
    }
    let task: *const u8 = ctx.arg(0);
    // 2. Not the container's PID 1 starting.
    if unsafe { is_pid_ns_init(task)? } {
        return Ok(());
    }
    // 3. Entered from outside: the parent lives in another cgroup.
    let parent: *const u8 = unsafe { read_field(task, config!(offsets.task_real_parent))? };
    if unsafe { task_cgroup_id(parent)? } == cgroup_id {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let parent_tgid: i32 = unsafe { read_field(parent, config!(offsets.task_tgid)) }.unwrap_or(0);
    let parent_comm: [u8; TASK_COMM_LEN] =
        unsafe { read_field(parent, config!(offsets.task_comm)) }.unwrap_or([0; TASK_COMM_LEN]);
    let ts = now();
    // So sched_process_exit reports the session's end. A session that execs again (`sh -c`
    // exec'ing its last command) keeps its entry.
    if unsafe { TRACKED.get(&tgid) }.is_none()
        && TRACKED.insert(&tgid, &Tracked::default(), 0).is_err()
    {
        count(Counter::TrackedInsertFailed);
    }
    emit(EventKind::ExecSession, ts, |header| ExecSessionEvent {
        header,
        tgid,
        parent_tgid: parent_tgid as u32,
        cgroup_id,
        comm: bpf_get_current_comm().unwrap_or([0; TASK_COMM_LEN]),
        parent_comm,
    });
    Ok(())
}
