//! Traffic at termination: the connections that still arrived after the stop signal, and the
//! ones the kill cut.
//!
//! The control plane removes a terminating pod from its Service's endpoints at the moment
//! kubelet starts stopping it, and every node's proxy (and every client) learns it later: until
//! then new connections still arrive. A preStop `sleep` and a drain on SIGTERM exist for that
//! window; a SIGKILL resets what is still open. The kernel sees all of it: every TCP state
//! change passes `tcp_set_state()` (net/ipv4/tcp.c), which fires `sock:inet_sock_set_state`.
//!
//! The probe (`observer-ebpf/src/probes/net.rs`) counts, per pod network namespace (all the
//! pod's containers share it) or per listening port of a host-network container, the
//! connections entering and leaving ESTABLISHED, the passive opens (SYN_RECV -> ESTABLISHED:
//! a client's connection, queued for accept(2)) with the time of the last, and the listening
//! sockets opened and closed. The exec, signal and exit probes copy those numbers at the main
//! process's stop signal, SIGKILL and exit; this module turns the three copies into the
//! journal's `traffic`. Differences of the kernel's counts on the kernel's clock: nothing here
//! comes from when userspace read them.

use observer_ebpf::{net_flags, traffic_flags, ProcessExitEvent, Traffic as KernelTraffic};
use serde::{Deserialize, Serialize};

/// A connection made within this long before the main process exited counts as traffic still
/// arriving when it died. A client told the endpoint is gone makes no new connection to it;
/// the endpoint update reaches the node's proxies and clients within about a second on a
/// healthy cluster (kube-proxy's and EndpointSlice controllers' batching is 1 s by default:
/// `--iptables-min-sync-period`, `--endpoint-updates-batch-period` 0 to 1 s). A connection in
/// the last second means the pod died before the update had reached every client.
pub const STILL_ARRIVING_NS: u64 = 1_000_000_000;

/// Where a container's connections are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Its pod's network namespace, every container of the pod together (a sidecar's
    /// connections count too; a loopback connection inside the pod counts at both ends).
    PodNetwork,
    /// A host-network container: the connections accepted on the ports its processes listen
    /// on (its own outgoing connections are not counted: they are the node's).
    HostPorts,
}

/// When the kernel began counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountedFrom {
    /// The first container of the pod that the probes saw start (its main process's exec),
    /// or, for a host port, the container's listen(2): the gauges (established, listening)
    /// are exact.
    ContainerStart,
    /// The stop signal: the container started before the probes were loaded. What was
    /// established or listening before is not known (null); what came after is counted.
    StopSignal,
    /// A container's start, in a pod older than the probes (a container restarted since
    /// they were loaded): the pod's namespace may hold connections and listeners from
    /// before (null); what came after is counted.
    PodOlderThanProbes,
}

/// One copy of the kernel's counts (see `observer_ebpf::Traffic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub since_ns: u64,
    /// Negative: more connections left than entered since counting began (one made before).
    pub established: i64,
    pub accepted: u64,
    pub last_accept_ns: Option<u64>,
    /// Passive opens from the node's own addresses (kubelet's probes), not in `accepted`.
    pub node_accepted: u64,
    /// Passive opens from inside the pod (they came in on loopback), not in `accepted`.
    pub inside_accepted: u64,
    pub listening: i64,
    pub listen_closed: u64,
    pub last_listen_close_ns: Option<u64>,
}

impl Counts {
    fn of(t: &KernelTraffic) -> Option<Self> {
        (t.since_ns != 0).then(|| Self {
            since_ns: t.since_ns,
            established: t.established as i64,
            accepted: t.accepted,
            last_accept_ns: (t.last_accept_ns != 0).then_some(t.last_accept_ns),
            node_accepted: t.node_accepted,
            inside_accepted: t.inside_accepted,
            listening: t.listening as i64,
            listen_closed: t.listen_closed,
            last_listen_close_ns: (t.last_listen_close_ns != 0).then_some(t.last_listen_close_ns),
        })
    }
}

/// What the kernel kept of a main process's connections (its exit event, or `ENDED`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub scope: Scope,
    /// A host-network container's listening ports, sorted.
    pub ports: Vec<u16>,
    pub counted_from: CountedFrom,
    pub at_stop: Option<Counts>,
    pub at_kill: Option<Counts>,
    pub at_exit: Option<Counts>,
}

impl Seen {
    /// From a main process's exit; None when its network namespace was never learnt (a
    /// container older than the probes that had no stop signal or SIGKILL), or a host-network
    /// container never seen listen.
    pub fn from_exit(e: &ProcessExitEvent) -> Option<Self> {
        if e.net.cookie == 0 {
            return None;
        }
        let host = e.net.flags & net_flags::HOST_NETWORK != 0;
        let mut ports: Vec<u16> = e.net.ports.iter().copied().filter(|p| *p != 0).collect();
        ports.sort_unstable();
        ports.dedup();
        if host && ports.is_empty() {
            return None;
        }
        Some(Self {
            scope: if host { Scope::HostPorts } else { Scope::PodNetwork },
            ports,
            counted_from: if e.net.flags & net_flags::FROM_STOP != 0 {
                CountedFrom::StopSignal
            } else if [&e.traffic_stop, &e.traffic_kill, &e.traffic_exit]
                .iter()
                .any(|t| t.flags & traffic_flags::POD_PREDATES != 0)
            {
                CountedFrom::PodOlderThanProbes
            } else {
                CountedFrom::ContainerStart
            },
            at_stop: Counts::of(&e.traffic_stop),
            at_kill: Counts::of(&e.traffic_kill),
            at_exit: Counts::of(&e.traffic_exit),
        })
    }
}

/// The journal's `traffic`. Null fields: not known (no stop signal, counting began later,
/// a gauge that went negative), never a guess.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    pub scope: Scope,
    /// `host_ports`: the container's listening ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<u16>>,
    pub counted_from: CountedFrom,
    /// Connections clients made after the stop signal, until the main process exited (from
    /// anywhere but the node itself).
    pub accepted_after_stop_signal: Option<u64>,
    /// Connections from the node's own addresses after the stop signal: kubelet's readiness
    /// probes (which go on while a pod terminates) and the node's own clients, never taken
    /// for traffic the endpoint removal should have stopped.
    pub from_node_after_stop_signal: Option<u64>,
    /// Connections from inside the pod after the stop signal (they came in on loopback: a
    /// sidecar proxying to its app, an exec probe's `curl localhost`), counted apart in a
    /// pod's network likewise.
    #[serde(default)]
    pub from_pod_after_stop_signal: Option<u64>,
    /// Stop signal -> the last of them: how long this node still saw new traffic (the
    /// endpoint-propagation lag).
    pub last_accepted_after_stop_signal_seconds: Option<f64>,
    /// A connection came within [`STILL_ARRIVING_NS`] of the exit: traffic still arriving
    /// when the container died.
    pub still_arriving_at_exit: Option<bool>,
    pub established_at_stop_signal: Option<u64>,
    pub established_at_sigkill: Option<u64>,
    /// Established when the main process exited (before its exit closed its sockets).
    pub established_at_exit: Option<u64>,
    /// Of those, reset by the SIGKILL: all of them when the process died of its SIGKILL, 0
    /// when it exited before one.
    pub cut_by_sigkill: Option<u64>,
    pub listening_at_stop_signal: Option<u64>,
    pub listening_at_exit: Option<u64>,
    /// Stop signal -> the last listening socket closed before the exit.
    pub listeners_closed_after_stop_signal_seconds: Option<f64>,
    /// Every listening socket was closed before the exit: the app stopped accepting (null:
    /// it never listened, or counting began at the stop signal).
    pub stopped_accepting_before_exit: Option<bool>,
}

/// What a termination's kernel times are.
#[derive(Debug, Clone, Copy, Default)]
pub struct Times {
    pub stop_ns: Option<u64>,
    pub kill_ns: Option<u64>,
    /// The kernel's exit of the main process (None: not seen).
    pub exit_ns: Option<u64>,
    /// It died of its SIGKILL (the exit's fatal signal, after a SIGKILL was sent).
    pub killed: bool,
}

fn gauge(v: i64, exact: bool) -> Option<u64> {
    (exact && v >= 0).then_some(v as u64)
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// The journal's `traffic` from what the kernel kept and the termination's times.
pub fn account(seen: &Seen, t: Times) -> Traffic {
    let exact = seen.counted_from == CountedFrom::ContainerStart;
    let exit = seen.at_exit.filter(|_| t.exit_ns.is_some());
    // Copies of one count: an entry made again between two (a host port another container
    // took over, a namespace's entry removed and made again) makes differences meaningless.
    let same = |c: &Counts| exit.is_none_or(|e| e.since_ns == c.since_ns);
    let stop = seen.at_stop.filter(|c| t.stop_ns.is_some() && same(c));
    let kill = seen.at_kill.filter(|c| t.kill_ns.is_some() && same(c));
    let after = |s: &Counts, e: &Counts| e.accepted.checked_sub(s.accepted);
    let (accepted_after, last_after) = match (stop, exit, t.stop_ns) {
        (Some(s), Some(e), Some(stop_ns)) => {
            let n = after(&s, &e);
            let last = e.last_accept_ns.filter(|l| *l > stop_ns && n.unwrap_or(0) > 0);
            (n, last.map(|l| l - stop_ns))
        }
        _ => (None, None),
    };
    let from_node_after = match (stop, exit) {
        (Some(s), Some(e)) => e.node_accepted.checked_sub(s.node_accepted),
        _ => None,
    };
    let from_pod_after = match (stop, exit) {
        (Some(s), Some(e)) => e.inside_accepted.checked_sub(s.inside_accepted),
        _ => None,
    };
    let still_arriving = match (accepted_after, t.stop_ns, t.exit_ns, exit) {
        (Some(0), ..) => Some(false),
        (Some(_), Some(_), Some(exit_ns), Some(e)) => {
            e.last_accept_ns.map(|l| exit_ns.saturating_sub(l) <= STILL_ARRIVING_NS)
        }
        _ => None,
    };
    let established_at_exit = exit.and_then(|e| gauge(e.established, exact));
    let cut_by_sigkill = match (t.exit_ns, t.kill_ns) {
        (Some(_), Some(_)) if t.killed => established_at_exit,
        (Some(_), _) if !t.killed => exit.map(|_| 0),
        _ => None,
    };
    let listening_at_stop = stop.and_then(|s| gauge(s.listening, exact));
    let listening_at_exit = exit.and_then(|e| gauge(e.listening, exact));
    let (closed_after, closed_at) = match (stop, exit, t.stop_ns) {
        (Some(s), Some(e), Some(stop_ns)) => {
            let n = e.listen_closed.saturating_sub(s.listen_closed);
            let at = e.last_listen_close_ns.filter(|c| n > 0 && *c > stop_ns);
            (Some(n), at.map(|c| c - stop_ns))
        }
        _ => (None, None),
    };
    let stopped_accepting = match (listening_at_stop, listening_at_exit, closed_after) {
        (Some(0), _, Some(0)) => None,
        (Some(_), Some(at_exit), Some(_)) => Some(at_exit == 0),
        _ => None,
    };
    // A connection made after the last listener closed is refused with no state change to
    // count (`tcp_v4_rcv()` finds no socket and resets it): with no listener left for longer
    // than the window before the exit, none seen in it says nothing.
    let deaf_for_window = listening_at_exit.is_none_or(|n| n == 0)
        && matches!((closed_at, t.stop_ns, t.exit_ns), (Some(c), Some(s), Some(x))
            if x.saturating_sub(s + c) > STILL_ARRIVING_NS);
    let still_arriving = match still_arriving {
        Some(false) if deaf_for_window => None,
        v => v,
    };
    Traffic {
        scope: seen.scope,
        ports: (seen.scope == Scope::HostPorts).then(|| seen.ports.clone()),
        counted_from: seen.counted_from,
        accepted_after_stop_signal: accepted_after,
        from_node_after_stop_signal: from_node_after,
        from_pod_after_stop_signal: from_pod_after,
        last_accepted_after_stop_signal_seconds: last_after.map(secs),
        still_arriving_at_exit: still_arriving,
        established_at_stop_signal: stop.and_then(|s| gauge(s.established, exact)),
        established_at_sigkill: kill.and_then(|k| gauge(k.established, exact)),
        established_at_exit,
        cut_by_sigkill,
        listening_at_stop_signal: listening_at_stop,
        listening_at_exit,
        listeners_closed_after_stop_signal_seconds: closed_at.map(secs),
        stopped_accepting_before_exit: stopped_accepting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn counts(established: i64, accepted: u64, last_accept: u64, listening: i64) -> Counts {
        Counts {
            since_ns: 1,
            established,
            accepted,
            last_accept_ns: (last_accept != 0).then_some(last_accept),
            node_accepted: 0,
            inside_accepted: 0,
            listening,
            listen_closed: 0,
            last_listen_close_ns: None,
        }
    }

    fn seen(stop: Counts, kill: Option<Counts>, exit: Counts) -> Seen {
        Seen {
            scope: Scope::PodNetwork,
            ports: vec![],
            counted_from: CountedFrom::ContainerStart,
            at_stop: Some(stop),
            at_kill: kill,
            at_exit: Some(exit),
        }
    }

    #[test]
    fn a_server_that_drains_stops_accepting_and_cuts_nothing() {
        // 3 open at the stop signal, 2 more accepted in the next 1.5 s, listener closed at
        // +2 s, every connection closed by the app before it exited at +4 s.
        let stop = counts(3, 10, 5 * S, 1);
        let mut exit = counts(0, 12, 101 * S + S / 2, 0);
        // Two readiness probes by kubelet, the last 0.2 s before the exit: not clients.
        exit.node_accepted = 2;
        exit.listen_closed = 1;
        exit.last_listen_close_ns = Some(102 * S);
        let t = account(
            &seen(stop, None, exit),
            Times { stop_ns: Some(100 * S), kill_ns: None, exit_ns: Some(104 * S), killed: false },
        );
        assert_eq!(t.accepted_after_stop_signal, Some(2));
        assert_eq!(t.from_node_after_stop_signal, Some(2));
        assert_eq!(t.last_accepted_after_stop_signal_seconds, Some(1.5));
        // Its listener closed 2 s before the exit: connections refused since make no state
        // change, so none seen in the last second says nothing.
        assert_eq!(t.still_arriving_at_exit, None);
        assert_eq!(t.established_at_stop_signal, Some(3));
        assert_eq!((t.established_at_exit, t.cut_by_sigkill), (Some(0), Some(0)));
        assert_eq!(t.listeners_closed_after_stop_signal_seconds, Some(2.0));
        assert_eq!((t.listening_at_stop_signal, t.listening_at_exit), (Some(1), Some(0)));
        assert_eq!(t.stopped_accepting_before_exit, Some(true));
    }

    #[test]
    fn a_server_killed_while_accepting_had_traffic_arriving_and_its_connections_cut() {
        let stop = counts(1, 4, 99 * S, 1);
        let kill = counts(5, 8, 101 * S, 1);
        let exit = counts(5, 9, 102 * S - S / 4, 1);
        let t = account(
            &seen(stop, Some(kill), exit),
            Times {
                stop_ns: Some(100 * S),
                kill_ns: Some(102 * S - S / 2),
                exit_ns: Some(102 * S),
                killed: true,
            },
        );
        assert_eq!(t.accepted_after_stop_signal, Some(5));
        assert_eq!(t.last_accepted_after_stop_signal_seconds, Some(1.75));
        assert_eq!(t.still_arriving_at_exit, Some(true));
        assert_eq!(t.established_at_sigkill, Some(5));
        assert_eq!(t.cut_by_sigkill, Some(5));
        assert_eq!(t.stopped_accepting_before_exit, Some(false));
    }

    #[test]
    fn the_pods_own_connections_are_apart_and_copies_of_another_count_say_nothing() {
        let stop = counts(1, 4, 5 * S, 1);
        let mut exit = counts(1, 6, 100 * S + S / 2, 1);
        // A sidecar's 7 connections to its app (in on loopback), the last in the final second.
        exit.inside_accepted = 7;
        let times =
            Times { stop_ns: Some(100 * S), kill_ns: None, exit_ns: Some(101 * S), killed: false };
        let t = account(&seen(stop, None, exit), times);
        assert_eq!(
            (t.accepted_after_stop_signal, t.from_pod_after_stop_signal),
            (Some(2), Some(7))
        );
        assert_eq!(t.still_arriving_at_exit, Some(true), "the clients' last came at +0.5 s");
        // The entry was made again between the copies (a host port another container took):
        // no difference of the two is a fact.
        let mut other = exit;
        other.since_ns = 2;
        let t = account(&seen(stop, None, other), times);
        assert_eq!((t.accepted_after_stop_signal, t.established_at_stop_signal), (None, None));
        assert_eq!(t.established_at_exit, Some(1));
        // A pod older than the probes: what came after counts, the gauges are unknown.
        let mut older = seen(stop, None, exit);
        older.counted_from = CountedFrom::PodOlderThanProbes;
        let t = account(&older, times);
        assert_eq!(t.accepted_after_stop_signal, Some(2));
        assert_eq!((t.established_at_exit, t.listening_at_exit), (None, None));
    }

    #[test]
    fn counted_from_the_stop_signal_leaves_the_gauges_unknown() {
        let mut s = seen(counts(0, 0, 0, 0), None, counts(-2, 3, 100 * S + S, -1));
        s.counted_from = CountedFrom::StopSignal;
        let t = account(
            &s,
            Times { stop_ns: Some(100 * S), kill_ns: None, exit_ns: Some(103 * S), killed: false },
        );
        assert_eq!(t.accepted_after_stop_signal, Some(3));
        assert_eq!(t.last_accepted_after_stop_signal_seconds, Some(1.0));
        assert_eq!(t.established_at_exit, None);
        // No SIGKILL came: it cut nothing, whatever was open.
        assert_eq!(t.cut_by_sigkill, Some(0));
        assert_eq!(t.listening_at_exit, None);
        assert_eq!(t.stopped_accepting_before_exit, None);
    }

    #[test]
    fn no_stop_signal_and_no_exit_say_nothing() {
        let s = seen(counts(0, 0, 0, 0), None, counts(1, 1, 5, 1));
        let t = account(&s, Times { exit_ns: Some(10 * S), ..Default::default() });
        assert_eq!(t.accepted_after_stop_signal, None);
        assert_eq!(t.still_arriving_at_exit, None);
        assert_eq!(t.established_at_exit, Some(1));
        let t = account(&s, Times { stop_ns: Some(1), ..Default::default() });
        assert_eq!((t.established_at_exit, t.cut_by_sigkill), (None, None));
    }

    #[test]
    fn a_negative_gauge_is_unknown_not_a_huge_number() {
        let s = seen(counts(-1, 0, 0, 0), None, counts(-3, 0, 0, 0));
        let t = account(
            &s,
            Times { stop_ns: Some(S), kill_ns: None, exit_ns: Some(2 * S), killed: false },
        );
        assert_eq!(t.established_at_stop_signal, None);
        assert_eq!(t.established_at_exit, None);
        assert_eq!(t.cut_by_sigkill, Some(0));
        let killed = account(
            &s,
            Times { stop_ns: Some(S), kill_ns: Some(S + 1), exit_ns: Some(2 * S), killed: true },
        );
        // Killed with an unknown count open: how many it cut is unknown, not 0.
        assert_eq!(killed.cut_by_sigkill, None);
        // Never listened: nothing to stop.
        assert_eq!(t.stopped_accepting_before_exit, None);
    }
}
