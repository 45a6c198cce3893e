//! cgroup creation and removal on the v2 hierarchy.
//!
//! runc removes a container's cgroup right after its PID 1 dies, so the id -> path mapping must
//! be learned at creation. `cgroup_mkdir`/`cgroup_rmdir` (include/trace/events/cgroup.h, class
//! `cgroup`) fire once per hierarchy; only the v2 one (`root` == cgrp_dfl_root's hierarchy id)
//! carries the ids `bpf_get_current_cgroup_id()` returns. Paths under the configured prefix
//! (`/kubepods` by default) are put into `WATCHED_CGROUPS` here, in the kernel, so a container
//! that is signalled microseconds after its cgroup appears is still seen.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel_str_bytes, macros::tracepoint, programs::TracePointContext,
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

#[tracepoint]
pub fn cgroup_mkdir(ctx: TracePointContext) -> i32 {
    match unsafe { try_cgroup_event(&ctx, EventKind::CgroupMkdir) } {
        Ok(()) | Err(_) => 0,
    }
}

#[tracepoint]
pub fn cgroup_rmdir(ctx: TracePointContext) -> i32 {
    match unsafe { try_cgroup_event(&ctx, EventKind::CgroupRmdir) } {
        Ok(()) | Err(_) => 0,
    }
}

/// A field of the tracepoint's record at a fixed offset, loaded straight from the context
/// (`tp_prog_is_valid_access()`, kernel/trace/bpf_trace.c: aligned reads inside the record
/// are allowed): no helper call. The offset must be a constant, which `tp_offsets` are.
#[inline(always)]
unsafe fn field<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    unsafe { core::ptr::read_volatile((ctx.as_ptr() as *const u8).add(offset) as *const T) }
}

unsafe fn try_cgroup_event(ctx: &TracePointContext, kind: EventKind) -> Result<(), i64> {
    // Every hierarchy's mkdir and rmdir pass here: the record's own fields decide, before
    // any helper call or clock read.
    let root: i32 = unsafe { field(ctx, tp_offsets::CGROUP_ROOT) };
    if root as u32 != config!(v2_hierarchy_id) {
        return Ok(());
    }
    let id: u64 = unsafe { field(ctx, tp_offsets::CGROUP_ID) };
    let loc: u32 = unsafe { field(ctx, tp_offsets::CGROUP_PATH_LOC) };
    let path = unsafe { (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize) };
    match kind {
        EventKind::CgroupMkdir => {
            if !unsafe { has_prefix(path) } {
                return Ok(());
            }
            // The path is kept with the entry: a termination in this cgroup is named by it
            // even when no daemon read this event (`ENDED`).
            let Some(w) = SCRATCH_WATCHED.get_ptr_mut(0) else {
                return Ok(());
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
            // Counted before the entry exists (an entry the start-up walk made a moment ago
            // is then counted twice: a lookup more, never a cgroup hidden).
            watch_count(id, true);
            if WATCHED_CGROUPS.insert(&id, unsafe { &*w }, 0).is_err() {
                watch_count(id, false);
                // Rare (WATCHED_CGROUPS_MAX cgroups): worth a log line besides the counter.
                count(Counter::WatchedInsertFailed);
                warn!(ctx, "WATCHED_CGROUPS full: signals to cgroup {} will not be seen", id);
            }
        }
        _ => {
            // Only cgroups we watched are reported gone: the prefilter first, then the
            // lookup. A main process still followed here ended unseen (or the cgroup was
            // emptied by moving it): forget it.
            if !may_watch(id) {
                return Ok(());
            }
            let Some(w) = (unsafe { WATCHED_CGROUPS.get(&id) }) else {
                return Ok(());
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
                return Ok(());
            }
            if flags & watched::COUNTED != 0 {
                watch_count(id, false);
            }
        }
    }
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
    Ok(())
}

/// True when the NUL-terminated kernel string at `path` starts with `CONFIG.cgroup_prefix`.
#[inline(always)]
unsafe fn has_prefix(path: *const u8) -> bool {
    let mut buf = [0u8; CGROUP_PREFIX_LEN];
    if bpf_probe_read_kernel_str_bytes(path, &mut buf).is_err() {
        return false;
    }
    let n = config!(cgroup_prefix_len) as usize;
    if n == 0 || n > CGROUP_PREFIX_LEN {
        return false;
    }
    let mut i = 0;
    while i < CGROUP_PREFIX_LEN {
        if i >= n {
            break;
        }
        if buf[i] != config!(cgroup_prefix[i]) {
            return false;
        }
        i += 1;
    }
    true
}
