//! cgroup creation and removal on the v2 hierarchy.
//!
//! runc removes a container's cgroup right after its PID 1 dies, so the id -> path mapping must
//! be learned at creation. `cgroup_mkdir`/`cgroup_rmdir` (include/trace/events/cgroup.h, class
//! `cgroup`) fire once per hierarchy; only the v2 one (`root` == cgrp_dfl_root's hierarchy id)
//! carries the ids `bpf_get_current_cgroup_id()` returns. Paths under the configured prefix
//! (`/kubepods` by default) are put into `WATCHED_CGROUPS` here, in the kernel, so a container
//! that is signalled microseconds after its cgroup appears is still seen.

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes},
    macros::tracepoint,
    programs::TracePointContext,
    EbpfContext,
};
use aya_log_ebpf::warn;
use observer_ebpf::{
    tp_offsets, watched, CgroupEvent, Counter, EventKind, CGROUP_PATH_LEN, CGROUP_PREFIX_LEN,
};

use super::{
    config, count, emit_in_place, may_watch, now, unfollow, watch_count, PROCESSES,
    SCRATCH_WATCHED, WATCHED_CGROUPS,
};

/// `hierarchy_id` of the v2 hierarchy in the record's `root`: `cgrp_dfl_root` is registered
/// first and its id is 0 (kernel/cgroup/cgroup.c `cgroup_init()`: `cgrp_dfl_root` gets
/// `hierarchy_id` 0 before any v1 hierarchy is mounted; the `0::` line of /proc/*/cgroup). A
/// constant: the first test of every cgroup event on the node reads no memory.
const V2_HIERARCHY_ID: u32 = 0;

#[tracepoint]
pub fn cgroup_mkdir(ctx: TracePointContext) -> i32 {
    match unsafe { try_cgroup_mkdir(&ctx) } {
        Ok(()) | Err(_) => 0,
    }
}

#[tracepoint]
pub fn cgroup_rmdir(ctx: TracePointContext) -> i32 {
    match unsafe { try_cgroup_rmdir(&ctx) } {
        Ok(()) | Err(_) => 0,
    }
}

use super::tp_field as field;

/// The record's path when the event is on the v2 hierarchy and under the prefix. Every
/// hierarchy's mkdir and rmdir pass here: the record's own fields decide, before any clock
/// read, and the root before the path's copy.
#[inline(always)]
unsafe fn v2_path_under_prefix(ctx: &TracePointContext) -> Option<*const u8> {
    let root: i32 = unsafe { field(ctx, tp_offsets::CGROUP_ROOT) };
    if root as u32 != V2_HIERARCHY_ID {
        return None;
    }
    let loc: u32 = unsafe { field(ctx, tp_offsets::CGROUP_PATH_LOC) };
    let path = unsafe { (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize) };
    unsafe { has_prefix(path) }.then_some(path)
}

unsafe fn try_cgroup_mkdir(ctx: &TracePointContext) -> Result<(), i64> {
    if let Some(path) = unsafe { v2_path_under_prefix(ctx) } {
        unsafe { watch(ctx, path) };
    }
    Ok(())
}

/// A cgroup under the prefix: its entry in `WATCHED_CGROUPS` and its record. Not inlined, so
/// the programs' filters stay a few instructions.
#[inline(never)]
unsafe fn watch(ctx: &TracePointContext, path: *const u8) {
    let id: u64 = unsafe { field(ctx, tp_offsets::CGROUP_ID) };
    // The path is kept with the entry: a termination in this cgroup is named by it even when
    // no daemon read this event (`ENDED`).
    let Some(w) = SCRATCH_WATCHED.get_ptr_mut(0) else {
        return;
    };
    let len = unsafe {
        (*w).since_ns = now();
        (*w).main_tgid = 0;
        (*w).flags = watched::COUNTED;
        match bpf_probe_read_kernel_str_bytes(path, &mut (*w).path) {
            Ok(s) => s.len(),
            Err(_) => 0,
        }
    };
    unsafe { (*w).path_len = len as u32 };
    // Counted before the entry exists (an entry the start-up walk made a moment ago is then
    // counted twice: a lookup more, never a cgroup hidden).
    watch_count(id, true);
    if WATCHED_CGROUPS.insert(&id, unsafe { &*w }, 0).is_err() {
        watch_count(id, false);
        // Rare (WATCHED_CGROUPS_MAX cgroups): worth a log line besides the counter.
        count(Counter::WatchedInsertFailed);
        warn!(ctx, "WATCHED_CGROUPS full: signals to cgroup {} will not be seen", id);
    }
    unsafe { emit_cgroup(ctx, EventKind::CgroupMkdir, id, path) };
}

unsafe fn try_cgroup_rmdir(ctx: &TracePointContext) -> Result<(), i64> {
    // Only cgroups we watched are reported gone. Every watched cgroup is under the prefix
    // (made there, or found there by the start-up walk; a v2 cgroup cannot be renamed:
    // `cgroup_kf_syscall_ops` has no rename, kernel/cgroup/cgroup.c), so the prefix test
    // first: the record's path and `CONFIG`, which mkdir keeps warm, where the prefilter's
    // slot is a line nothing else touches (half the cost in a churn outside kubepods).
    let Some(path) = (unsafe { v2_path_under_prefix(ctx) }) else {
        return Ok(());
    };
    let id: u64 = unsafe { field(ctx, tp_offsets::CGROUP_ID) };
    if !may_watch(id) {
        return Ok(());
    }
    unsafe { unwatch(ctx, id, path) };
    Ok(())
}

/// A cgroup that may be watched is gone: its entry removed, its record emitted. A main
/// process still followed here ended unseen (or the cgroup was emptied by moving it): forget
/// it. Not inlined (see [`watch`]).
#[inline(never)]
unsafe fn unwatch(ctx: &TracePointContext, id: u64, path: *const u8) {
    let Some(w) = (unsafe { WATCHED_CGROUPS.get(&id) }) else {
        return;
    };
    let (main, flags) = (w.main_tgid, w.flags);
    if main != 0 {
        if let Some(p) = unsafe { PROCESSES.get(&main) } {
            if p.cgroup_id == id {
                let flags = p.flags;
                unfollow(main, flags);
            }
        }
    }
    if WATCHED_CGROUPS.remove(&id).is_err() {
        return;
    }
    if flags & watched::COUNTED != 0 {
        watch_count(id, false);
    }
    unsafe { emit_cgroup(ctx, EventKind::CgroupRmdir, id, path) };
}

/// The mkdir or rmdir record of cgroup `id`.
#[inline(always)]
unsafe fn emit_cgroup(ctx: &TracePointContext, kind: EventKind, id: u64, path: *const u8) {
    let level: i32 = unsafe { field(ctx, tp_offsets::CGROUP_LEVEL) };
    emit_in_place(kind, now(), |ev: *mut CgroupEvent| unsafe {
        (*ev).id = id;
        (*ev).level = level as u32;
        let len = match bpf_probe_read_kernel_str_bytes(path, &mut (*ev).path) {
            Ok(s) => s.len(),
            Err(_) => 0,
        };
        if len >= CGROUP_PATH_LEN - 1 {
            count(Counter::CgroupPathTruncated);
        }
        (*ev).path_len = len as u32;
    });
}

/// True when the NUL-terminated kernel string at `path` starts with `CONFIG.cgroup_prefix`.
///
/// The path is the record's dynamic part, which a tracepoint program may not load from its
/// context (`perf_event_attach_bpf_prog()` refuses, EACCES, a program that reads past the
/// fixed fields: kernel/trace/bpf_trace.c), so one helper copies it: a plain copy of
/// `CGROUP_PREFIX_LEN` bytes (the record sits in the per-CPU trace buffer, which a copy past
/// its NUL stays inside; the copy is fault-safe anyway), then 8 bytes a compare against
/// `CONFIG.cgroup_prefix_words`, stopping at the prefix's end. A path shorter than the prefix
/// fails at its NUL, which no prefix byte is.
#[inline(always)]
unsafe fn has_prefix(path: *const u8) -> bool {
    let Ok(words) = (unsafe { bpf_probe_read_kernel(path as *const [u64; CGROUP_PREFIX_LEN / 8]) })
    else {
        return false;
    };
    macro_rules! word {
        ($i:literal) => {{
            let p = config!(cgroup_prefix_words[$i]);
            if p.mask == 0 {
                return $i > 0;
            }
            if !p.matches(words[$i]) {
                return false;
            }
        }};
    }
    word!(0);
    word!(1);
    word!(2);
    word!(3);
    word!(4);
    word!(5);
    word!(6);
    word!(7);
    true
}
