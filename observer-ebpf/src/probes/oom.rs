//! OOM kills. `__oom_kill_process()` (mm/oom_kill.c, v6.18) sends SIGKILL with
//! do_send_sig_info() and then calls mark_oom_victim() -> trace_mark_victim(): the SIGKILL's
//! signal_generate comes first, this record names it as the OOM killer's. The victim is
//! tracked here too, so its exit is seen even when it OOM-killed itself (sender == target,
//! which signal_generate skips).

use aya_ebpf::{
    helpers::bpf_get_current_cgroup_id, macros::tracepoint, programs::TracePointContext,
};
use observer_ebpf::{tp_offsets, Counter, EventHeader, EventKind, OomVictimEvent, Tracked};

use super::{count, cpu, now, EVENTS, TRACKED};

#[tracepoint]
pub fn oom_mark_victim(ctx: TracePointContext) -> i32 {
    match unsafe { try_oom_mark_victim(&ctx) } {
        Ok(()) | Err(_) => 0,
    }
}

unsafe fn try_oom_mark_victim(ctx: &TracePointContext) -> Result<(), i64> {
    let pid: i32 = unsafe { ctx.read_at(tp_offsets::MARK_VICTIM_PID)? };
    let pid = pid as u32;
    let ts = now();
    if unsafe { TRACKED.get(&pid) }.is_none() {
        let t = Tracked { window_start_ns: ts, generated_mask: 0, delivered_mask: 0 };
        if TRACKED.insert(&pid, &t, 0).is_err() {
            count(Counter::TrackedInsertFailed);
        }
    }
    let Some(mut entry) = EVENTS.reserve::<OomVictimEvent>(0) else {
        count(Counter::RingbufFullOom);
        return Ok(());
    };
    entry.write(OomVictimEvent {
        header: EventHeader { kind: EventKind::OomVictim as u32, cpu: cpu(), ktime_ns: ts },
        pid,
        _pad0: 0,
        trigger_cgroup_id: unsafe { bpf_get_current_cgroup_id() },
    });
    entry.submit(0);
    Ok(())
}
