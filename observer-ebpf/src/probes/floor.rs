//! The cost floor: one empty program per hook, of the same program type as observer's own
//! there. `cargo xtask bench` attaches them beside observer's (`observer floor`) and reads the
//! kernel's run-time accounting (`kernel.bpf_stats_enabled`) for both in the same storms: what
//! a program at that hook costs before it does anything (the trampoline or the perf
//! tracepoint's call, the stats' own clock reads), against what observer's costs. Never
//! loaded by `observer run`.

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid},
    macros::{btf_tracepoint, tracepoint},
    maps::Array,
    programs::{BtfTracePointContext, TracePointContext},
    EbpfContext,
};
use observer_ebpf::slot;

use super::{FOLLOWED, WATCHED_SLOTS};

#[btf_tracepoint(function = "signal_generate")]
pub fn floor_sig_gen(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "signal_deliver")]
pub fn floor_sig_dlv(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sched_process_exit")]
pub fn floor_exit(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn floor_exec(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[tracepoint]
pub fn floor_cg_mkdir(_ctx: TracePointContext) -> i32 {
    0
}

#[tracepoint]
pub fn floor_cg_rmdir(_ctx: TracePointContext) -> i32 {
    0
}

#[tracepoint]
pub fn floor_oom(_ctx: TracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn floor_sock(_ctx: BtfTracePointContext) -> i32 {
    0
}

// The one-load references: an empty program plus the one array load observer's own filter
// makes at the hook (its own instance of the prefilter array, keyed the same way), nothing
// else. In storms that thrash the caches (forks, execs) any data line a program touches is a
// miss; these show what consulting one word of state costs there, against which observer's
// program, whose filter is that word, is measured too.

/// Loads `slots[slot::index(key)]` and keeps the load (volatile): the reference's whole work.
#[inline(always)]
fn load_slot(slots: &Array<u64>, key: u32) -> i32 {
    if let Some(p) = slots.get_ptr(slot::index(key)) {
        // SAFETY: a pointer to an array element the verifier checked.
        let _ = unsafe { core::ptr::read_volatile(p) };
    }
    0
}

#[btf_tracepoint(function = "sched_process_exit")]
pub fn load_exit(_ctx: BtfTracePointContext) -> i32 {
    load_slot(&FOLLOWED, (bpf_get_current_pid_tgid() >> 32) as u32)
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn load_exec(_ctx: BtfTracePointContext) -> i32 {
    load_slot(&WATCHED_SLOTS, unsafe { bpf_get_current_cgroup_id() } as u32)
}

/// In the other array: a mkdir that loaded rmdir's slot would warm it for rmdir's reference
/// (the churn removes each cgroup right after making it), which observer's mkdir does not.
#[tracepoint]
pub fn load_cg_mkdir(ctx: TracePointContext) -> i32 {
    load_slot(&FOLLOWED, unsafe { cgroup_id_field(&ctx) } as u32)
}

#[tracepoint]
pub fn load_cg_rmdir(ctx: TracePointContext) -> i32 {
    load_slot(&WATCHED_SLOTS, unsafe { cgroup_id_field(&ctx) } as u32)
}

/// The record's cgroup id, loaded from the context as `cgroup.rs` does.
#[inline(always)]
unsafe fn cgroup_id_field(ctx: &TracePointContext) -> u64 {
    unsafe {
        core::ptr::read_volatile(
            (ctx.as_ptr() as *const u8).add(observer_ebpf::tp_offsets::CGROUP_ID) as *const u64,
        )
    }
}
