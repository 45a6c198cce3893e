//! The node's own addresses, for the traffic probe to tell kubelet's probes from clients.
//!
//! kubelet's httpGet and tcpSocket probes connect from the host's network namespace to the
//! pod's IP, and readiness probes go on while a pod terminates (pkg/kubelet/prober/worker.go
//! stops only liveness and startup probes once the pod is being deleted); so do the node's own
//! clients. Their source address is one of the host's (the CNI bridge's, the node's, a
//! tunnel's). Counted with the clients, they would make every pod with a readiness probe look
//! as if traffic still arrived until it died. The probe (`observer-ebpf/src/probes/net.rs`)
//! counts a passive open whose peer is in the `NODE_V4` / `NODE_V6` arrays apart.
//!
//! The addresses are the host network namespace's local ones, read from `/proc/1/net`
//! (`fib_trie`'s `/32 host LOCAL` entries for IPv4, `if_inet6` for IPv6), which any process
//! with the host's pid namespace can read (proc_net needs no ptrace access). Loopback
//! (127.0.0.0/8, ::1) is left out: a pod's own loopback connections (a sidecar to its app) are
//! its traffic; IPv6 link-local addresses too (a probe goes to the pod's global address).
//! Read again every [`REFRESH_NS`], and soon after a container starts (a pod's first brings
//! its CNI bridge's address); written only when they changed. A connection to a pod through
//! kube-proxy's masquerade (a NodePort with `externalTrafficPolicy: Cluster`, hairpin traffic)
//! also comes from a node address and is counted with the node's, not as a client's.

use std::{
    collections::BTreeSet,
    io::Read as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use aya::maps::{HashMap as BpfHashMap, MapData};
use observer_ebpf::NODE_ADDRS;

/// How often the addresses are read again.
pub const REFRESH_NS: u64 = 10_000_000_000;
/// At most this often when asked sooner ([`NodeAddressMaps::soon`]): a burst of container
/// starts reads the files once.
pub const SOONEST_NS: u64 = 1_000_000_000;
/// At most this much of a file is read (a node with a full routing table has a large
/// `fib_trie`; its local entries are a few lines of it).
const MAX_READ: u64 = 8 << 20;

/// IPv4 local addresses in `/proc/<pid>/net/fib_trie`: a `|-- a.b.c.d` line followed by
/// `/32 host LOCAL`. Both tables (Main and Local) list them: the set keeps one.
pub fn parse_fib_trie(text: &str) -> BTreeSet<Ipv4Addr> {
    let mut out = BTreeSet::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(a) = t.strip_prefix("|-- ") {
            last = a.trim().parse().ok();
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(a) = last.take() {
                out.insert(a);
            }
        } else if !t.starts_with('/') {
            last = None;
        }
    }
    out
}

/// IPv6 addresses in `/proc/<pid>/net/if_inet6`: 32 hex digits first on each line.
pub fn parse_if_inet6(text: &str) -> BTreeSet<Ipv6Addr> {
    text.lines()
        .filter_map(|l| {
            let hex = l.split_whitespace().next()?;
            (hex.len() == 32).then_some(())?;
            u128::from_str_radix(hex, 16).ok().map(Ipv6Addr::from)
        })
        .collect()
}

/// Whether `a` is one of the node's addresses to tell apart: not loopback, not link-local,
/// not unspecified.
pub fn is_node_address(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => !a.is_loopback() && !a.is_unspecified(),
        IpAddr::V6(a) => {
            !a.is_loopback() && !a.is_unspecified() && (a.segments()[0] & 0xffc0) != 0xfe80
        }
    }
}

fn read_bounded(path: &Path) -> std::io::Result<String> {
    let mut s = String::new();
    std::fs::File::open(path)?.take(MAX_READ).read_to_string(&mut s)?;
    Ok(s)
}

/// The node's addresses as the probe compares them: IPv4 in network byte order as a `u32` in
/// memory (the tracepoint's `daddr` bytes), IPv6 as its 16 bytes in two words.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NodeAddresses {
    pub v4: Vec<u32>,
    pub v6: Vec<[u64; 2]>,
    /// Addresses past [`NODE_ADDRS`] of a family, not told apart.
    pub dropped: usize,
}

impl NodeAddresses {
    pub fn of(v4: &BTreeSet<Ipv4Addr>, v6: &BTreeSet<Ipv6Addr>) -> Self {
        let max = NODE_ADDRS as usize;
        let v4: Vec<u32> = v4
            .iter()
            .filter(|a| is_node_address(IpAddr::V4(**a)))
            .map(|a| u32::from_ne_bytes(a.octets()))
            .collect();
        let v6: Vec<[u64; 2]> = v6
            .iter()
            .filter(|a| is_node_address(IpAddr::V6(**a)))
            .map(|a| {
                let o = a.octets();
                [
                    u64::from_ne_bytes(o[..8].try_into().expect("8 bytes")),
                    u64::from_ne_bytes(o[8..].try_into().expect("8 bytes")),
                ]
            })
            .collect();
        let dropped = v4.len().saturating_sub(max) + v6.len().saturating_sub(max);
        Self {
            v4: v4.into_iter().take(max).collect(),
            v6: v6.into_iter().take(max).collect(),
            dropped,
        }
    }

    /// Read from `proc_net` (`/proc/1/net`: the host's namespace). An unreadable file gives
    /// none of its family (logged by the caller).
    pub fn read(proc_net: &Path) -> std::io::Result<Self> {
        let v4 = parse_fib_trie(&read_bounded(&proc_net.join("fib_trie"))?);
        // No IPv6 on the node: no file.
        let v6 = read_bounded(&proc_net.join("if_inet6"))
            .map(|t| parse_if_inet6(&t))
            .unwrap_or_default();
        Ok(Self::of(&v4, &v6))
    }
}

/// Keeps `NODE_V4` and `NODE_V6` to the node's addresses.
pub struct NodeAddressMaps {
    v4: BpfHashMap<MapData, u32, u8>,
    v6: BpfHashMap<MapData, [u64; 2], u8>,
    proc_net: std::path::PathBuf,
    written: Option<NodeAddresses>,
    next_ns: u64,
    read_ns: u64,
}

impl NodeAddressMaps {
    pub fn new(
        v4: BpfHashMap<MapData, u32, u8>,
        v6: BpfHashMap<MapData, [u64; 2], u8>,
        proc_net: &Path,
    ) -> Self {
        Self { v4, v6, proc_net: proc_net.to_path_buf(), written: None, next_ns: 0, read_ns: 0 }
    }

    /// Read again at the next tick, or [`SOONEST_NS`] after the last read: a container
    /// started (a pod's first brings its CNI bridge's address to the node).
    pub fn soon(&mut self) {
        self.next_ns = self.next_ns.min(self.read_ns + SOONEST_NS);
    }

    /// Reads the addresses (at most every [`REFRESH_NS`]) and writes them where they changed.
    pub fn tick(&mut self, now_ns: u64) {
        if now_ns < self.next_ns {
            return;
        }
        self.next_ns = now_ns + REFRESH_NS;
        self.read_ns = now_ns;
        let now = match NodeAddresses::read(&self.proc_net) {
            Ok(a) => a,
            Err(e) => {
                if self.written.is_none() {
                    log::warn!(
                        "the node's addresses ({}): {e}; kubelet's probes and the node's own \
                         connections to pods are counted as clients'",
                        self.proc_net.display()
                    );
                }
                return;
            }
        };
        if self.written.as_ref() == Some(&now) {
            return;
        }
        if now.dropped > 0 {
            log::warn!(
                "the node has {} addresses past the {NODE_ADDRS} per family the traffic probe \
                 tells apart: connections from them count as clients'",
                now.dropped
            );
        }
        // New ones first, then the gone ones: a probe never finds an address of the node
        // missing while it is still one.
        let mut ok = true;
        for a in &now.v4 {
            ok &= self.v4.insert(a, 1, 0).is_ok();
        }
        for a in &now.v6 {
            ok &= self.v6.insert(a, 1, 0).is_ok();
        }
        let gone4: Vec<u32> = self.v4.keys().flatten().filter(|k| !now.v4.contains(k)).collect();
        let gone6: Vec<[u64; 2]> =
            self.v6.keys().flatten().filter(|k| !now.v6.contains(k)).collect();
        for k in &gone4 {
            ok &= self.v4.remove(k).is_ok();
        }
        for k in &gone6 {
            ok &= self.v6.remove(k).is_ok();
        }
        if ok {
            log::info!("the node's addresses (told apart from clients): {}", describe(&now));
            self.written = Some(now);
        } else {
            log::warn!("writing the node's addresses to the probe failed: retried");
            self.next_ns = now_ns;
        }
    }
}

fn describe(a: &NodeAddresses) -> String {
    let v4 = a.v4.iter().map(|w| Ipv4Addr::from(w.to_ne_bytes()).to_string());
    let v6 = a.v6.iter().map(|w| {
        let mut o = [0u8; 16];
        o[..8].copy_from_slice(&w[0].to_ne_bytes());
        o[8..].copy_from_slice(&w[1].to_ne_bytes());
        Ipv6Addr::from(o).to_string()
    });
    let all: Vec<String> = v4.chain(v6).collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIB_TRIE: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.244.1.0/24 2 0 2
        |-- 10.244.1.0
           /24 link UNICAST
        |-- 10.244.1.1
           /32 host LOCAL
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
     +-- 192.0.2.0/24 2 0 2
           |-- 192.0.2.2
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
Local:
     +-- 192.0.2.0/24 2 0 2
           |-- 192.0.2.2
              /32 host LOCAL
";

    #[test]
    fn local_addresses_come_from_both_tables_once_and_broadcasts_and_nets_are_not_addresses() {
        let got: Vec<String> = parse_fib_trie(FIB_TRIE).iter().map(|a| a.to_string()).collect();
        assert_eq!(got, ["10.244.1.1", "127.0.0.1", "192.0.2.2"]);
    }

    #[test]
    fn loopback_and_link_local_are_left_to_the_pods() {
        let v6 = parse_if_inet6(
            "fe8000000000000000fc00fffe000001 04 40 20 80     eth0\n\
             fd000000000000000000000000000002 04 40 00 82     eth0\n\
             00000000000000000000000000000001 01 80 10 80       lo\n\
             garbage\n",
        );
        assert_eq!(v6.len(), 3);
        let a = NodeAddresses::of(&parse_fib_trie(FIB_TRIE), &v6);
        // 10.244.1.1 as the tracepoint's daddr bytes read as a u32.
        assert_eq!(a.v4, [u32::from_ne_bytes([10, 244, 1, 1]), u32::from_ne_bytes([192, 0, 2, 2])]);
        assert_eq!(a.v6.len(), 1);
        assert_eq!(describe(&a), "10.244.1.1, 192.0.2.2, fd00::2");
        assert_eq!(a.dropped, 0);
    }

    #[test]
    fn past_the_probes_room_addresses_are_counted_not_written() {
        let n = NODE_ADDRS + 8;
        let many: BTreeSet<Ipv4Addr> = (1..=n).map(|i| Ipv4Addr::from(0x0a00_0000 + i)).collect();
        let a = NodeAddresses::of(&many, &BTreeSet::new());
        assert_eq!((a.v4.len(), a.dropped), (NODE_ADDRS as usize, 8));
    }

    #[test]
    fn this_hosts_proc_reads() {
        let a = NodeAddresses::read(Path::new("/proc/1/net")).expect("/proc/1/net readable");
        assert!(a.v4.iter().all(|w| w.to_ne_bytes()[0] != 127));
    }
}
