//! Userspace's side of the prefilters in front of `PROCESSES` and `WATCHED_CGROUPS`
//! (`observer_ebpf::slot`): the `FOLLOWED` and `WATCHED_SLOTS` arrays mapped into this process
//! (`BPF_F_MMAPABLE`, kernel/bpf/arraymap.c `array_map_mmap()`), so an entry the start-up walk
//! makes is counted with a real atomic add on the same memory the kernel's BPF_XADD updates:
//! one prefilter, no writer's update lost.

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::{Map, MapData};
use observer_ebpf::{slot, FOLLOWED_SLOTS};

use super::loader::LoadError;

/// A prefilter array, mapped read-write.
pub struct Slots {
    ptr: *mut AtomicU64,
    len: usize,
    /// Keeps the map (and so the mapping's object) ours.
    _map: MapData,
}

// SAFETY: the mapping is plain shared memory only touched through atomics.
unsafe impl Send for Slots {}

impl Slots {
    /// Takes the array `name` (`names::FOLLOWED`, `names::WATCHED_SLOTS`) out of `ebpf`.
    pub fn take(ebpf: &mut aya::Ebpf, name: &'static str) -> Result<Self, LoadError> {
        let map = ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
        let Map::Array(data) = map else {
            return Err(LoadError::MissingMap(name));
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
            return Err(LoadError::Mmap { map: name, source: std::io::Error::last_os_error() });
        }
        Ok(Self { ptr: ptr.cast(), len, _map: data })
    }

    fn slot(&self, key: u32) -> &AtomicU64 {
        let i = slot::index(key) as usize;
        debug_assert!(i * 8 < self.len);
        // SAFETY: `i` < FOLLOWED_SLOTS: inside the mapping, 8-byte aligned.
        unsafe { &*self.ptr.add(i) }
    }

    /// Counts `key` (a tgid, a cgroup id's low 32 bits) before its entry is made.
    pub fn count(&self, key: u32) {
        self.slot(key).fetch_add(slot::delta(key), Ordering::SeqCst);
    }

    /// Uncounts `key` after its entry, which was counted, was removed.
    pub fn uncount(&self, key: u32) {
        self.slot(key).fetch_sub(slot::delta(key), Ordering::SeqCst);
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `take`.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}
