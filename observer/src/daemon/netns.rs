//! The kernel's `NETNS` map kept to the pods that are still there.
//!
//! The probes make an entry per pod network namespace at its first container's exec (and per
//! listening port of a host-network container at its listen(2)), and never remove one: no
//! hook of ours sees a namespace die (kprobes are not there to use, and a namespace outlives
//! its last process while a bind mount holds it). This daemon removes an entry once no
//! process the probes follow refers to it ([`Process::net`]: a main process of the pod, or the
//! host-network container owning the port, whose cgroup is still watched) for [`RETAIN_NS`],
//! which is longer than kubelet's longest crash-loop back-off: a pod whose only container
//! waits to be restarted keeps its counts, and its next container counts on from them.
//!
//! Swept once a minute: the two maps are read whole, at most [`observer_ebpf::NETNS_MAX`] and
//! [`observer_ebpf::PROCESSES_MAX`] entries (a few hundred on a node, a lookup each).

use std::collections::{HashMap, HashSet};

use aya::maps::{HashMap as BpfHashMap, MapData};
use observer_ebpf::{net_flags, role, NetKey, Process, Traffic, WatchedCgroup};

const SEC: u64 = 1_000_000_000;
/// How often the map is swept.
pub const SWEEP_EVERY_NS: u64 = 60 * SEC;
/// An entry nobody refers to is removed after this: kubelet's crash-loop back-off tops out at
/// 5 minutes (`MaxContainerBackOff`, pkg/kubelet/kubelet.go), so a pod between two restarts of
/// its container is never mistaken for a pod that is gone.
pub const RETAIN_NS: u64 = 10 * 60 * SEC;

/// What refers to a `NETNS` entry now.
#[derive(Debug, Default)]
pub struct Refs {
    /// Pod namespaces of followed main processes (by cookie).
    pub pods: HashSet<u64>,
    /// Cgroups watched now (a host port's owner must be one).
    pub cgroups: HashSet<u64>,
}

impl Refs {
    pub fn refers_to(&self, key: &NetKey, value: &Traffic) -> bool {
        if key.port == 0 {
            self.pods.contains(&key.cookie)
        } else {
            self.cgroups.contains(&value.owner_cgroup)
        }
    }
}

/// Which entries have gone unreferenced since when (the pure half of the sweep).
#[derive(Debug, Default)]
pub struct Unreferenced {
    since: HashMap<NetKey, u64>,
}

impl Unreferenced {
    /// Given every entry and whether something refers to it at `now_ns`, the keys to remove.
    pub fn sweep(
        &mut self,
        entries: impl IntoIterator<Item = (NetKey, bool)>,
        now_ns: u64,
    ) -> Vec<NetKey> {
        let mut seen = HashSet::new();
        let mut gone = Vec::new();
        for (key, referenced) in entries {
            seen.insert(key);
            if referenced {
                self.since.remove(&key);
                continue;
            }
            let since = *self.since.entry(key).or_insert(now_ns);
            if now_ns.saturating_sub(since) >= RETAIN_NS {
                gone.push(key);
            }
        }
        // Entries removed meanwhile (by an earlier sweep) are forgotten.
        self.since.retain(|k, _| seen.contains(k) && !gone.contains(k));
        gone
    }

    pub fn len(&self) -> usize {
        self.since.len()
    }

    pub fn is_empty(&self) -> bool {
        self.since.is_empty()
    }
}

pub struct NetnsSweep {
    netns: BpfHashMap<MapData, NetKey, Traffic>,
    processes: BpfHashMap<MapData, u32, Process>,
    watched: BpfHashMap<MapData, u64, WatchedCgroup>,
    unreferenced: Unreferenced,
    next_ns: u64,
}

impl NetnsSweep {
    pub fn new(
        netns: BpfHashMap<MapData, NetKey, Traffic>,
        processes: BpfHashMap<MapData, u32, Process>,
        watched: BpfHashMap<MapData, u64, WatchedCgroup>,
        now_ns: u64,
    ) -> Self {
        Self {
            netns,
            processes,
            watched,
            unreferenced: Unreferenced::default(),
            next_ns: now_ns + SWEEP_EVERY_NS,
        }
    }

    /// At most once a [`SWEEP_EVERY_NS`]: removes the entries unreferenced for [`RETAIN_NS`];
    /// returns how many. A map that cannot be read skips the sweep (nothing is removed on a
    /// partial view).
    pub fn tick(&mut self, now_ns: u64) -> usize {
        if now_ns < self.next_ns {
            return 0;
        }
        self.next_ns = now_ns + SWEEP_EVERY_NS;
        let mut refs = Refs::default();
        for entry in self.processes.iter() {
            let Ok((_, p)) = entry else { return 0 };
            if p.role == role::MAIN
                && p.net.cookie != 0
                && p.net.flags & net_flags::HOST_NETWORK == 0
            {
                refs.pods.insert(p.net.cookie);
            }
        }
        for entry in self.watched.keys() {
            let Ok(id) = entry else { return 0 };
            refs.cgroups.insert(id);
        }
        let mut entries = Vec::new();
        for entry in self.netns.iter() {
            let Ok((key, value)) = entry else { return 0 };
            entries.push((key, refs.refers_to(&key, &value)));
        }
        let gone = self.unreferenced.sweep(entries, now_ns);
        let mut removed = 0;
        for key in &gone {
            match self.netns.remove(key) {
                Ok(()) => removed += 1,
                Err(e) => log::debug!("NETNS entry {key:?}: {e}"),
            }
        }
        if removed > 0 {
            log::debug!("{removed} network namespace entries removed: no pod refers to them");
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(cookie: u64, port: u16) -> NetKey {
        NetKey { cookie, port, _pad: [0; 3] }
    }

    #[test]
    fn an_entry_goes_only_after_being_unreferenced_for_the_whole_retention() {
        let mut u = Unreferenced::default();
        let (a, b) = (key(1, 0), key(2, 8080));
        assert!(u.sweep([(a, false), (b, true)], 0).is_empty());
        // Referenced again (the container restarted after its back-off): the clock restarts.
        assert!(u.sweep([(a, true), (b, true)], RETAIN_NS - 1).is_empty());
        assert!(u.sweep([(a, false), (b, true)], RETAIN_NS).is_empty());
        assert!(u.sweep([(a, false), (b, false)], 2 * RETAIN_NS - 1).is_empty());
        assert_eq!(u.sweep([(a, false), (b, false)], 2 * RETAIN_NS), vec![a]);
        // Forgotten once gone; b's clock runs on.
        assert_eq!(u.len(), 1);
        assert_eq!(u.sweep([(b, false)], 3 * RETAIN_NS), vec![b]);
        assert!(u.is_empty());
    }

    #[test]
    fn a_pod_namespace_is_referred_to_by_its_cookie_and_a_host_port_by_its_owner() {
        let refs = Refs { pods: [7].into(), cgroups: [42].into() };
        let owned = |c| Traffic { owner_cgroup: c, ..Traffic::ZERO };
        assert!(refs.refers_to(&key(7, 0), &Traffic::ZERO));
        assert!(!refs.refers_to(&key(8, 0), &Traffic::ZERO));
        assert!(refs.refers_to(&key(9, 80), &owned(42)));
        assert!(!refs.refers_to(&key(9, 80), &owned(43)));
        // A pod cookie does not keep a host port of the same namespace.
        assert!(!refs.refers_to(&key(7, 80), &owned(0)));
    }
}
