//! OOM kills. `__oom_kill_process()` (mm/oom_kill.c, v6.18) sends SIGKILL with
//! do_send_sig_info() and then calls mark_oom_victim() -> trace_mark_victim(): the SIGKILL's
//! signal_generate comes first (and passes its filter even when the victim OOM-killed itself,
//! sender == target), and this record names that SIGKILL as the OOM killer's. OOM kills are rare:
//! every one is emitted, and userspace keeps those that hit a container's PID 1.

use aya_ebpf::{
    helpers::bpf_get_current_cgroup_id, macros::tracepoint, programs::TracePointContext,
};
use observer_ebpf::{process_flags, tp_offsets, EventKind, OomVictimEvent};

use super::{emit, now, PROCESSES};

#[tracepoint]
pub fn oom_mark_victim(ctx: TracePointContext) -> i32 {
    match unsafe { try_oom_mark_victim(&ctx) } {
        Ok(()) | Err(_) => 0,
    }
}

unsafe fn try_oom_mark_victim(ctx: &TracePointContext) -> Result<(), i64> {
    let pid: i32 = unsafe { ctx.read_at(tp_offsets::MARK_VICTIM_PID)? };
    let pid = pid as u32;
    emit(EventKind::OomVictim, now(), |header| OomVictimEvent {
        header,
        pid,
        _pad0: 0,
        trigger_cgroup_id: unsafe { bpf_get_current_cgroup_id() },
    });
    // A followed process keeps the mark, so its exit says so to a daemon that never read this
    // record (a restart in between).
    if let Some(p) = PROCESSES.get_ptr_mut(&pid) {
        unsafe { (*p).flags |= process_flags::OOM_VICTIM };
    }
    Ok(())
}
