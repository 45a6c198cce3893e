//! The cost floor: one empty program per hook, of the same program type as observer's own
//! there. `cargo xtask bench` attaches them beside observer's (`observer floor`) and reads the
//! kernel's run-time accounting (`kernel.bpf_stats_enabled`) for both in the same storms: what
//! a program at that hook costs before it does anything (the trampoline or the perf
//! tracepoint's call, the stats' own clock reads), against what observer's costs. Never
//! loaded by `observer run`.

use aya_ebpf::{
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};

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
