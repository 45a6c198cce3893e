//! Userspace's side of the prefilter in front of `PROCESSES` (`observer_ebpf::slot`): the
//! `FOLLOWED` array mapped into this process (`BPF_F_MMAPABLE`, kernel/bpf/arraymap.c
//! `array_map_mmap()`), so an entry the start-up walk makes is counted with a real atomic add
//! on the same memory the kernel's BPF_XADD updates: one prefilter, no writer's update lost.

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::{Map, MapData};
use observer_ebpf::{names, slot, FOLLOWED_SLOTS};

use super::loader::LoadError;

/// `FOLLOWED`, mapped read-write.
pub struct Slots {
    ptr: *mut AtomicU64,
    len: usize,
    /// Keeps the map (and so the mapping's object) ours.
    _map: MapData,
}

// SAFETY: the mapping is plain shared memory only touched through atomics.
unsafe impl Send for Slots {}

impl Slots {
    pub fn take(ebpf: &mut aya::Ebpf) -> Result<Self, LoadError> {
        let map = ebpf.take_map(names::FOLLOWED).ok_or(LoadError::MissingMap(names::FOLLOWED))?;
        let Map::Array(data) = map else {
            return Err(LoadError::MissingMap(names::FOLLOWED));
        };
        let len = FOLLOWED_SLOTS as usize * 8;
        // SAFETY: a shared read-write mapping of the array's values, `len` bytes (the array is
        // FOLLOWED_SLOTS u64s, page-aligned by the kernel for mmapable arrays); unmapped on
        // drop, and the map outlives it (`_map`).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(LoadError::Mmap {
                map: names::FOLLOWED,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Self { ptr: ptr.cast(), len, _map: data })
    }

    fn slot(&self, tgid: u32) -> &AtomicU64 {
        let i = slot::index(tgid) as usize;
        debug_assert!(i * 8 < self.len);
        // SAFETY: `i` < FOLLOWED_SLOTS: inside the mapping, 8-byte aligned.
        unsafe { &*self.ptr.add(i) }
    }

    /// Counts `tgid` as followed (before its entry is made).
    pub fn follow(&self, tgid: u32) {
        self.slot(tgid).fetch_add(slot::delta(tgid), Ordering::SeqCst);
    }

    /// Uncounts `tgid` (after its entry, which was counted, was removed).
    pub fn unfollow(&self, tgid: u32) {
        self.slot(tgid).fetch_sub(slot::delta(tgid), Ordering::SeqCst);
    }

    /// The slot of `tgid` as it is now (tests).
    pub fn get(&self, tgid: u32) -> u64 {
        self.slot(tgid).load(Ordering::SeqCst)
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `take`.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}
