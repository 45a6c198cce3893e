//! Exec in a container cgroup: how a container's main process and its exec sessions show in
//! the kernel.
//!
//! **The main process.** runc makes a container's init as its child (nsexec's stage-2,
//! `clone(CLONE_PARENT)`, libcontainer/nsenter/nsexec.c), puts it in the container's cgroup
//! before it runs any of the container's code (`initProcess.start()`: `manager.Apply(pid)`
//! before the bootstrap data is sent, libcontainer/process_linux.go), and the init waits on
//! the exec fifo until `runc start`, then execs the entrypoint (libcontainer/
//! standard_init_linux.go, `unix.Exec`). crun does the same with `clone3(CLONE_INTO_CGROUP)`
//! or a cgroup.procs write. So the main process is the first process that execs in a
//! container cgroup whose parent is outside it (the runtime, or the shim that reaped it). That
//! holds for a pid namespace of its own and for one shared with the pod's pause process
//! (`shareProcessNamespace`), whose app containers are not namespace inits.
//!
//! A cgroup below one that already has a main process belongs to that container (docker-in-
//! docker, buildkit or a kind node making cgroups of their own): it is flagged
//! `watched::NESTED` and never gets a main, whatever its processes do. The ancestors are
//! walked once, at the cgroup's first exec.
//!
//! runc's own bootstrap process (`runc init`, nsexec's stage 0) is started by runc with an
//! exec of its own binary and may already be in the cgroup when that exec happens (runc
//! applies the cgroup right after starting it): it is taken for the main process, and exits
//! before the real init execs the entrypoint. The exit of a main process that was never
//! signalled clears the cgroup's `main_tgid` (`exit.rs`), so the next exec from outside is
//! the main process again; a main that was stopped keeps it, so a session still running in
//! the dying container (or re-exec'ing there) never becomes one.
//!
//! **Exec sessions.** kubelet runs an exec hook through the CRI's ExecSync; the runtime (`runc
//! exec`, crun exec) starts a process that joins the container's cgroup and namespaces and
//! execs the hook's command; its parent is the runtime on the host. So a later exec from
//! outside, while the cgroup has its main, is a session. Execs whose parent is inside the
//! container (the container's own programs, a sandbox's nested inits) are neither.
//!
//! `sched_process_exec` (fs/exec.c `exec_binprm()`, v6.18: `trace_sched_process_exec(current,
//! old_pid, bprm)`, after the new program's comm is set) is tp_btf: every exec on the node
//! passes here, and the first test is the helper's cgroup id and one array load (the prefilter
//! in front of `WATCHED_CGROUPS`); the rest is a BPF-to-BPF call, so the filter and its return
//! stay in a few instructions.

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use observer_ebpf::{
    comm_key, role, watched, Counter, EventKind, ExecSessionEvent, MainProcessEvent, Process,
    MAX_SESSION_EXECS, TASK_COMM_LEN,
};

use super::{
    cgroup_id, cgroup_parent, config, count, emit, follow, may_watch, now, read_field, start_ticks,
    task_cgroup_id, task_dfl_cgroup, MAX_ANCESTORS, PROCESSES, SCRATCH_PROCESS, WATCHED_CGROUPS,
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
    // 1. Only inside a container's cgroup: the prefilter, then (not inlined) one lookup. The
    //    exec'ing task is `current`: the helper walks task->cgroups->dfl_cgrp->kn->id with no
    //    offsets of ours to load (the same walk through the task argument needs four from
    //    `CONFIG`, a cache line that nothing else touches in an exec storm).
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if !may_watch(cgroup_id) {
        return Ok(());
    }
    unsafe { exec_in_watched(ctx.arg(0), cgroup_id) }
}

/// An exec in a cgroup that may be watched: the main process, a session, or nothing.
#[inline(never)]
unsafe fn exec_in_watched(task: *const u8, cgroup_id: u64) -> Result<(), i64> {
    let Some(w) = WATCHED_CGROUPS.get_ptr_mut(&cgroup_id) else {
        return Ok(());
    };
    let w = unsafe { &mut *w };
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // 2. The main process exec'ing again (`sh -c` exec'ing its last command, an init
    //    wrapper's exec): still the main process. A nested cgroup makes no container.
    if w.main_tgid == tgid || w.flags & watched::NESTED != 0 {
        return Ok(());
    }
    // 3. Entered from outside: the parent lives in another cgroup.
    let parent: *const u8 = unsafe { read_field(task, config!(offsets.task_real_parent))? };
    if unsafe { task_cgroup_id(parent)? } == cgroup_id {
        return Ok(());
    }
    let parent_tgid: i32 = unsafe { read_field(parent, config!(offsets.task_tgid)) }.unwrap_or(0);
    let parent_comm: [u8; TASK_COMM_LEN] =
        unsafe { read_field(parent, config!(offsets.task_comm)) }.unwrap_or([0; TASK_COMM_LEN]);
    let start_ticks = unsafe { start_ticks(task)? };
    let ts = now();
    if w.main_tgid == 0 {
        // 4a. The cgroup's first exec from outside: its main process, unless an ancestor
        //     is a container already.
        if unsafe { ancestor_has_main(task_dfl_cgroup(task)?) } {
            w.flags |= watched::NESTED;
            count(Counter::NestedCgroup);
            return Ok(());
        }
        w.main_tgid = tgid;
        let Some(p) = (unsafe { new_process() }) else { return Ok(()) };
        p.start_ticks = start_ticks;
        p.cgroup_id = cgroup_id;
        p.role = role::MAIN;
        p.exec_ns = ts;
        // Where its connections are counted (`net.rs`): its pod's namespace, made at the
        // pod's first container, or the host's ports.
        unsafe { super::net::learn(task, parent, false, core::ptr::addr_of_mut!(p.net)) };
        follow(tgid, p);
        emit(EventKind::MainProcess, ts, |header| MainProcessEvent {
            header,
            tgid,
            parent_tgid: parent_tgid as u32,
            start_ticks,
            cgroup_id,
            comm: bpf_get_current_comm().unwrap_or([0; TASK_COMM_LEN]),
            parent_comm,
        });
        return Ok(());
    }
    // 4b. An exec session. One that execs again keeps its entry, and is reported again only
    //     for a program it was not running, at most MAX_SESSION_EXECS times.
    let comm = bpf_get_current_comm().unwrap_or([0; TASK_COMM_LEN]);
    let key = comm_key(&comm);
    match PROCESSES.get_ptr_mut(&tgid) {
        Some(p) if unsafe { (*p).start_ticks } == start_ticks => {
            let p = unsafe { &mut *p };
            if p.session_comm == key {
                count(Counter::SessionExecRepeated);
                return Ok(());
            }
            // The program it runs now, reported or not (so a repeat is of what it runs).
            p.session_comm = key;
            if p.session_execs >= MAX_SESSION_EXECS {
                count(Counter::SessionExecCapped);
                return Ok(());
            }
            p.session_execs += 1;
        }
        _ => {
            let Some(p) = (unsafe { new_process() }) else { return Ok(()) };
            p.start_ticks = start_ticks;
            p.cgroup_id = cgroup_id;
            p.role = role::SESSION;
            p.exec_ns = ts;
            p.session_execs = 1;
            p.session_comm = key;
            follow(tgid, p);
        }
    }
    emit(EventKind::ExecSession, ts, |header| ExecSessionEvent {
        header,
        tgid,
        parent_tgid: parent_tgid as u32,
        cgroup_id,
        comm,
        parent_comm,
    });
    Ok(())
}

/// This CPU's room for a new `PROCESSES` entry, zeroed.
#[inline(always)]
unsafe fn new_process() -> Option<&'static mut Process> {
    let p = SCRATCH_PROCESS.get_ptr_mut(0)?;
    unsafe {
        core::ptr::write_bytes(p, 0, 1);
        Some(&mut *p)
    }
}

/// True when a watched ancestor of `cgrp` has a main process (or is nested itself). Stops at
/// the first ancestor outside the watched prefix.
#[inline(always)]
unsafe fn ancestor_has_main(cgrp: *const u8) -> bool {
    let mut cur = cgrp;
    for _ in 0..MAX_ANCESTORS {
        let Some(parent) = (unsafe { cgroup_parent(cur) }) else {
            return false;
        };
        cur = parent;
        let Ok(id) = (unsafe { cgroup_id(cur) }) else {
            return false;
        };
        match unsafe { WATCHED_CGROUPS.get(&id) } {
            None => return false,
            Some(a) if a.main_tgid != 0 || a.flags & watched::NESTED != 0 => return true,
            Some(_) => {}
        }
    }
    false
}
