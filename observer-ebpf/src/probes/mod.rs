//! Maps, the `CONFIG` global and helpers shared by the probes; one file per hook family.
//!
//! | program | hook | why this hook |
//! |---|---|---|
//! | `signal_generate` | tp_btf signal_generate | every way a signal is sent (kill, tgkill, pidfd_send_signal, cgroup.kill, OOM) goes through `__send_signal_locked`; tp_btf hands us the target `task_struct` and the siginfo, needed to filter in the kernel |
//! | `signal_deliver` | tp_btf signal_deliver | runs in the receiver with the disposition it acts on |
//! | `sched_process_exit` | tp_btf sched_process_exit (6.16+) | runs in the exiting thread; its `group_dead` argument marks the thread group's end |
//! | `sched_process_exit_live` | tp_btf sched_process_exit (5.8 to 6.15) | the same hook without the argument: `group_dead` read back from `signal->live` |
//! | `cgroup_mkdir` / `cgroup_rmdir` | tracepoint cgroup/* | learn a container's cgroup id -> path before runc removes it |
//! | `oom_mark_victim` | tracepoint oom/mark_victim | tells an OOM SIGKILL from a grace-period SIGKILL |
//! | `sched_process_exec` | tp_btf sched_process_exec | a container's main process (the runtime's init exec'ing the entrypoint) and the exec sessions the runtime starts in it later (preStop exec hooks): the new program, in its final cgroup, with its parent |
//! | `inet_sock_set_state` | tp_btf inet_sock_set_state | every TCP state change passes `tcp_set_state()`, with the socket (its namespace, port, peer, the interface a connection came in on): counts per pod network namespace and host port, no records (`net.rs`) |
//!
//! Which processes are followed is decided once, at exec, and kept in `PROCESSES`: every
//! other probe costs one lookup for a process that is no container's main process or exec
//! session.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use observer_ebpf::{
    process_flags, slot, Config, Counter, Ended, EndedKey, EventHeader, EventKind, Process,
    WatchedCgroup, COUNTER_SLOTS, ENDED_MAX, FOLLOWED_SLOTS, PROCESSES_MAX, WATCHED_CGROUPS_MAX,
};

mod cgroup;
mod exec;
mod exit;
mod floor;
mod net;
mod oom;
mod signal;

/// 1 MiB: ~10k signal records; a node stopping every container at once stays far below it.
/// Userspace can resize it at load (`set_max_entries`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// The processes followed, by tgid: containers' main processes and exec sessions, inserted at
/// exec (or by userspace's start-up walk), removed at their exit. A hash map, not an LRU: an
/// entry is never evicted behind our back; a full map is counted at insert.
#[map]
pub static PROCESSES: HashMap<u32, Process> = HashMap::with_max_entries(PROCESSES_MAX, 0);

/// The prefilter in front of `PROCESSES` ([`observer_ebpf::slot`]), counted here with atomic
/// adds as entries are made and removed, and by userspace (the start-up walk's entries)
/// through its mapping of the array.
#[map]
pub static FOLLOWED: Array<u64> =
    Array::with_max_entries(FOLLOWED_SLOTS, observer_ebpf::BPF_F_MMAPABLE);

/// Whether `tgid` may be a followed process: one inlined array load, before any hash lookup.
#[inline(always)]
pub fn may_follow(tgid: u32) -> bool {
    slot::may_follow(FOLLOWED.get(slot::index(tgid)).copied().unwrap_or(u64::MAX), tgid)
}

/// The same in front of `WATCHED_CGROUPS`, keyed by a cgroup id's low 32 bits.
#[map]
pub static WATCHED_SLOTS: Array<u64> =
    Array::with_max_entries(FOLLOWED_SLOTS, observer_ebpf::BPF_F_MMAPABLE);

/// Whether cgroup `id` may be watched: one inlined array load, before any hash lookup.
#[inline(always)]
pub fn may_watch(id: u64) -> bool {
    let key = id as u32;
    slot::may_follow(WATCHED_SLOTS.get(slot::index(key)).copied().unwrap_or(u64::MAX), key)
}

/// Counts (`add`) or uncounts cgroup `id` in `WATCHED_SLOTS`.
#[inline(always)]
pub fn watch_count(id: u64, add: bool) {
    let key = id as u32;
    let d = slot::delta(key);
    xadd(&WATCHED_SLOTS, key, if add { d } else { d.wrapping_neg() });
}

/// Adds `delta` to `tgid`'s slot in `FOLLOWED`, atomically (BPF_XADD: any CPU, any order).
#[inline(always)]
fn slot_add(tgid: u32, delta: u64) {
    xadd(&FOLLOWED, tgid, delta);
}

/// Adds `delta` to `key`'s slot of `slots`, atomically.
#[inline(always)]
fn xadd(slots: &Array<u64>, key: u32, delta: u64) {
    if let Some(p) = slots.get_ptr_mut(slot::index(key)) {
        // SAFETY: `p` points at an 8-byte array element.
        unsafe { atomic_add(p, delta) };
    }
}

/// Adds `delta` (mod 2^64: `u64::MAX` subtracts one) to the `u64` at `p`, a map value's
/// field, atomically: BPF_XADD, which every kernel has and every CPU's update shares.
///
/// # Safety
/// `p` must point into a map value the verifier knows (a lookup's result), 8-byte aligned.
#[inline(always)]
pub unsafe fn atomic_add(p: *mut u64, delta: u64) {
    unsafe {
        core::arch::asm!(
            "lock *(u64 *)({p} + 0) += {v}",
            p = in(reg) p,
            v = in(reg) delta,
        );
    }
}

/// A field of a classic tracepoint's record at a fixed offset, loaded straight from the
/// context (`tp_prog_is_valid_access()`, kernel/trace/bpf_trace.c: aligned reads inside the
/// record are allowed): no helper call. The offset must be a constant, which `tp_offsets` are.
#[inline(always)]
pub unsafe fn tp_field<T: Copy>(ctx: &aya_ebpf::programs::TracePointContext, offset: usize) -> T {
    use aya_ebpf::EbpfContext;
    unsafe { core::ptr::read_volatile((ctx.as_ptr() as *const u8).add(offset) as *const T) }
}

/// Follows `tgid` as `p`: any earlier entry of its tgid (an earlier process's, ended unseen)
/// is removed first; the new one is counted in its slot before it exists.
#[inline(always)]
pub fn follow(tgid: u32, p: &mut Process) {
    if let Some(old) = unsafe { PROCESSES.get(&tgid) } {
        let flags = old.flags;
        unfollow(tgid, flags);
    }
    p.flags |= process_flags::COUNTED;
    slot_add(tgid, slot::delta(tgid));
    if PROCESSES.insert(&tgid, p, BPF_NOEXIST).is_err() {
        slot_add(tgid, slot::delta(tgid).wrapping_neg());
        count(Counter::ProcessesFull);
    }
}

/// Removes `tgid`'s entry (whose flags are `flags`); uncounts it when this call removed it.
/// False when another CPU removed it first.
#[inline(always)]
pub fn unfollow(tgid: u32, flags: u32) -> bool {
    if PROCESSES.remove(&tgid).is_err() {
        return false;
    }
    if flags & process_flags::COUNTED != 0 {
        slot_add(tgid, slot::delta(tgid).wrapping_neg());
    }
    true
}

/// `BPF_NOEXIST` (include/uapi/linux/bpf.h).
pub const BPF_NOEXIST: u64 = 1;

/// cgroup v2 ids of the containers' cgroups (filled here at mkdir, and by userspace's start-up
/// walk; emptied at rmdir).
#[map]
pub static WATCHED_CGROUPS: HashMap<u64, WatchedCgroup> =
    HashMap::with_max_entries(WATCHED_CGROUPS_MAX, 0);

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Terminations that ended and that no daemon has recorded yet (`exit.rs` inserts, the daemon
/// deletes once its record is journaled). A hash map, not an LRU: nothing is evicted unseen;
/// a full map is counted at insert.
#[map]
pub static ENDED: HashMap<EndedKey, Ended> = HashMap::with_max_entries(ENDED_MAX, 0);

/// Per-CPU room to build map values too large for the BPF stack (512 bytes) before inserting
/// them. A program runs to completion on its CPU, so one slot per CPU is never shared.
#[map]
pub static SCRATCH_WATCHED: PerCpuArray<WatchedCgroup> = PerCpuArray::with_max_entries(1, 0);
/// Room for a new `PROCESSES` entry (larger than the stack should carry).
#[map]
pub static SCRATCH_PROCESS: PerCpuArray<Process> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static SCRATCH_ENDED: PerCpuArray<Ended> = PerCpuArray::with_max_entries(1, 0);

/// Written by userspace at load time (`EbpfLoader::set_global`).
#[unsafe(no_mangle)]
pub static CONFIG: Config = Config::ZERO;

/// Reads a field of `CONFIG` without letting the compiler fold the initial value.
macro_rules! config {
    ($($field:tt)+) => {{
        #[allow(unused_unsafe)]
        let v = unsafe {
            core::ptr::read_volatile(core::ptr::addr_of!($crate::probes::CONFIG.$($field)+))
        };
        v
    }};
}
pub(crate) use config;

#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // Per-CPU slot: no other writer.
        unsafe { *slot += 1 };
    }
}

/// Reads a `T` at `base + offset` in kernel memory (offsets come from BTF, see
/// `KernelOffsets`). A zero offset means "unknown" and fails rather than read the wrong field.
#[inline(always)]
pub unsafe fn read_field<T>(base: *const u8, offset: u32) -> Result<T, i64> {
    if base.is_null() || offset == 0 {
        count(Counter::KernelReadFailed);
        return Err(-1);
    }
    match unsafe { bpf_probe_read_kernel(base.add(offset as usize) as *const T) } {
        Ok(v) => Ok(v),
        Err(e) => {
            count(Counter::KernelReadFailed);
            Err(e as i64)
        }
    }
}

/// Loads a `T` at `base + offset` straight from a BTF-typed pointer a tp_btf program was
/// handed (its task argument): no helper call. `offset` comes from `CONFIG`, a frozen
/// read-only map, so the verifier knows it as a constant and checks the access against the
/// kernel's BTF (`btf_struct_access()`), turning it into a fault-safe load. For the arguments
/// and for the pointers loaded this way from them (a pointer member's load is PTR_TO_BTF_ID of
/// the member's type again); anything else (a pointer after arithmetic) is [`read_field`]'s.
#[inline(always)]
pub unsafe fn arg_field<T: Copy>(base: *const u8, offset: u32) -> T {
    unsafe { core::ptr::read_volatile(base.add(offset as usize) as *const T) }
}

/// `task->cgroups->dfl_cgrp`: a task's cgroup on the v2 hierarchy.
#[inline(always)]
pub unsafe fn task_dfl_cgroup(task: *const u8) -> Result<*const u8, i64> {
    let css_set: *const u8 = unsafe { read_field(task, config!(offsets.task_cgroups))? };
    unsafe { read_field(css_set, config!(offsets.css_set_dfl_cgrp)) }
}

/// `cgrp->kn->id`: a cgroup's v2 id (kernel/bpf/helpers.c `cgroup_id()`).
#[inline(always)]
pub unsafe fn cgroup_id(cgrp: *const u8) -> Result<u64, i64> {
    let kn: *const u8 = unsafe { read_field(cgrp, config!(offsets.cgroup_kn))? };
    unsafe { read_field(kn, config!(offsets.kernfs_node_id)) }
}

/// Cgroup levels walked up from a cgroup: kubelet's deepest container cgroup is 4 below the
/// prefix, a nested one a few more.
pub const MAX_ANCESTORS: usize = 16;

/// `cgrp`'s parent: `container_of(cgrp->self.parent, struct cgroup, self)`; None at the root.
#[inline(always)]
pub unsafe fn cgroup_parent(cgrp: *const u8) -> Option<*const u8> {
    let css: *const u8 = unsafe { read_field(cgrp, config!(offsets.cgroup_parent_css)) }.ok()?;
    (!css.is_null()).then(|| unsafe { css.sub(config!(offsets.cgroup_self) as usize) })
}

/// True when `cgrp` is the cgroup `id` or below it (at most [`MAX_ANCESTORS`] levels).
#[inline(always)]
pub unsafe fn within(cgrp: *const u8, id: u64) -> bool {
    let mut cur = cgrp;
    for _ in 0..MAX_ANCESTORS {
        match unsafe { cgroup_id(cur) } {
            Ok(c) if c == id => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
        match unsafe { cgroup_parent(cur) } {
            Some(p) => cur = p,
            None => return false,
        }
    }
    false
}

/// The cgroup v2 id of any task, the value `bpf_get_current_cgroup_id()` returns for
/// `current`.
#[inline(always)]
pub unsafe fn task_cgroup_id(task: *const u8) -> Result<u64, i64> {
    unsafe { cgroup_id(task_dfl_cgroup(task)?) }
}

/// Nanoseconds per clock tick of /proc's `starttime` (USER_HZ is 100 on every architecture
/// Linux builds for userspace: include/asm-generic/param.h).
pub const NS_PER_TICK: u64 = 10_000_000;

/// A process's start time in clock ticks: its thread group leader's `start_boottime`, as
/// /proc/<tgid>/stat reports it (see `Process::start_ticks`).
#[inline(always)]
pub unsafe fn start_ticks(task: *const u8) -> Result<u64, i64> {
    let leader: *const u8 = unsafe { read_field(task, config!(offsets.task_group_leader))? };
    let ns: u64 = unsafe { read_field(leader, config!(offsets.task_start_boottime))? };
    Ok(ns / NS_PER_TICK)
}

/// The followed process `tgid` if `task` (a thread of it) is the process the entry was made
/// for. A stale entry (its process ended unseen, the tgid now another's) is removed and
/// counted. Costs one lookup, and two reads on a hit.
#[inline(always)]
pub unsafe fn followed(tgid: u32, task: *const u8) -> Option<*mut Process> {
    let p = PROCESSES.get_ptr_mut(&tgid)?;
    let start = unsafe { start_ticks(task) }.ok()?;
    if unsafe { (*p).start_ticks } != start {
        count(Counter::StaleProcess);
        let flags = unsafe { (*p).flags };
        unfollow(tgid, flags);
        return None;
    }
    Some(p)
}

/// The header every record starts with.
#[inline(always)]
pub fn header(kind: EventKind, ktime_ns: u64) -> EventHeader {
    EventHeader { kind: kind as u32, cpu: cpu(), ktime_ns }
}

/// Emits one record of `kind` stamped `ktime_ns`: reserves it in `EVENTS`, builds it with
/// `body` from its header, submits it. A full ring buffer is counted in `kind.ring_full()`.
#[inline(always)]
pub fn emit<T: 'static>(kind: EventKind, ktime_ns: u64, body: impl FnOnce(EventHeader) -> T) {
    let Some(mut entry) = EVENTS.reserve::<T>(0) else {
        count(kind.ring_full());
        return;
    };
    entry.write(body(header(kind, ktime_ns)));
    entry.submit(0);
}

/// Like [`emit`] for a record too large for the BPF stack: writes the header, then `fill`
/// writes the rest in place. `T` must start with an [`EventHeader`] (every record does).
#[inline(always)]
pub fn emit_in_place<T: 'static>(kind: EventKind, ktime_ns: u64, fill: impl FnOnce(*mut T)) {
    let Some(mut entry) = EVENTS.reserve::<T>(0) else {
        count(kind.ring_full());
        return;
    };
    let ptr = entry.as_mut_ptr();
    // SAFETY: the reservation holds a `T`, whose first field is its `EventHeader`.
    unsafe { (ptr as *mut EventHeader).write(header(kind, ktime_ns)) };
    fill(ptr);
    entry.submit(0);
}

#[inline(always)]
pub fn cpu() -> u32 {
    unsafe { aya_ebpf::helpers::bpf_get_smp_processor_id() }
}

#[inline(always)]
pub fn now() -> u64 {
    unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() }
}

/// True when `sig` is reported: SIGKILL, or a configured stop signal.
#[inline(always)]
pub fn is_reported_signal(sig: u32) -> bool {
    if sig == 0 || sig > observer_ebpf::MAX_SIGNAL {
        return false;
    }
    // The commonest signals on any node (SIGCHLD) leave on a constant: no load.
    if observer_ebpf::NEVER_STOP_SIGNALS & (1u64 << sig) != 0 {
        return false;
    }
    if sig == observer_ebpf::SIGKILL {
        return true;
    }
    config!(stop_signal_mask) & (1u64 << sig) != 0
}
