//! TCP at termination: the connections of the pods' network namespaces (and of host-network
//! containers' listening ports), counted as the kernel changes their state.
//!
//! Every TCP state change goes through `tcp_set_state()` (net/ipv4/tcp.c), which fires
//! `sock:inet_sock_set_state` (include/trace/events/sock.h; the record's layout is the same
//! on 6.1, 6.12 and 6.18 and `observer check` compares it with the running kernel's). What
//! the transitions mean, read on this kernel with a server in a network namespace of its own:
//!
//! | transition | what it is | runs in |
//! |---|---|---|
//! | CLOSE -> LISTEN | listen(2) | the listening task |
//! | SYN_RECV -> ESTABLISHED | a client's connection completed, queued for accept(2) (`tcp_rcv_state_process()`) | softirq: any task |
//! | SYN_SENT -> ESTABLISHED | an outgoing connect(2) completed | softirq |
//! | ESTABLISHED -> CLOSE / FIN_WAIT1 / CLOSE_WAIT | reset, closed by us, closed by the peer | either |
//! | LISTEN -> SYN_RECV | a passive open's child, made as a copy of its listener (`inet_csk_clone_lock()`): not counted | softirq |
//! | LISTEN -> CLOSE | the listening socket closed; its unaccepted children are reset | the closing task |
//!
//! A SIGKILLed server's sockets close in its own exit, after `trace_sched_process_exit()`
//! (do_exit(): `exit_files()` comes later), in reverse fd order: the exit probe's copy still
//! sees them ESTABLISHED. Request sockets (NEW_SYN_RECV) and TIME_WAIT never pass here, and a
//! SYN dropped by a full backlog makes no state change at all.
//!
//! The namespace comes from the socket (`sk->__sk_common.skc_net`), never from `current`:
//! passive opens complete in softirq on whatever task the CPU was running. Its key is the
//! namespace's cookie (`net->net_cookie`, never reused while the node is up; the inode number
//! of a deleted namespace is given to the next one).
//!
//! Cost for the node's own traffic: transitions that change none of the counts return on the
//! record's own fields; the others read two pointers and do one hash lookup (`NETNS`), which
//! misses for every namespace that is no pod's. A listen(2) in the host's namespace also asks
//! the prefilter in front of `WATCHED_CGROUPS` (an inlined array load), and looks up the
//! container only when the listener is in one.

use aya_ebpf::{
    helpers::bpf_get_current_cgroup_id,
    macros::{map, tracepoint},
    maps::{Array, HashMap},
    programs::TracePointContext,
};
use observer_ebpf::{
    net_flags, tp_offsets, Counter, NetKey, NetOf, Process, Traffic, HOST_PORTS, NETNS_MAX,
    NODE_ADDRS,
};

use super::{
    atomic_add, config, count, may_watch, now, read_field, tp_field, BPF_NOEXIST, PROCESSES,
    WATCHED_CGROUPS,
};

/// The connections counted, by pod network namespace (`port` 0) or host port. Entries are made
/// at a main process's exec (its pod's, if no container of the pod made it first), at its stop
/// signal for a container older than the probes, and at a host-network container's listen(2);
/// observer removes those no followed process refers to any more.
#[map]
pub static NETNS: HashMap<NetKey, Traffic> = HashMap::with_max_entries(NETNS_MAX, 0);

/// The host's network namespace cookie: the one a container's runtime runs in, learnt when a
/// container that shares it (host network) starts or is stopped. 0: none seen yet, and every
/// namespace is a pod's.
#[map]
pub static HOST_NET: Array<u64> = Array::with_max_entries(1, 0);

/// `enum tcp_state`, include/net/tcp_states.h.
const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_RECV: i32 = 3;
const TCP_CLOSE: i32 = 7;
const TCP_LISTEN: i32 = 10;
/// `IPPROTO_TCP`: the tracepoint also fires for SCTP and MPTCP sockets.
const IPPROTO_TCP: u16 = 6;
/// `EEXIST`, what an insert with `BPF_NOEXIST` returns for a key already there.
const EEXIST: i32 = 17;

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> i32 {
    let _ = unsafe { try_inet_sock_set_state(&ctx) };
    0
}

unsafe fn try_inet_sock_set_state(ctx: &TracePointContext) -> Result<(), i64> {
    let protocol: u16 = unsafe { tp_field(ctx, tp_offsets::SOCK_PROTOCOL) };
    if protocol != IPPROTO_TCP {
        return Ok(());
    }
    let old: i32 = unsafe { tp_field(ctx, tp_offsets::SOCK_OLDSTATE) };
    let new: i32 = unsafe { tp_field(ctx, tp_offsets::SOCK_NEWSTATE) };
    // Only what changes a count: into or out of ESTABLISHED, into LISTEN, LISTEN -> CLOSE. A
    // passive open's child is made as a copy of its listener and leaves LISTEN for SYN_RECV
    // (`inet_csk_clone_lock()`: `inet_sk_set_state(newsk, TCP_SYN_RECV)`): no listener closed.
    let unlisten = old == TCP_LISTEN && new == TCP_CLOSE;
    if new != TCP_ESTABLISHED && old != TCP_ESTABLISHED && new != TCP_LISTEN && !unlisten {
        return Ok(());
    }
    let sk: *const u8 = unsafe { tp_field(ctx, tp_offsets::SOCK_SKADDR) };
    let net: *const u8 = unsafe { read_field(sk, config!(offsets.sock_net))? };
    let cookie: u64 = unsafe { read_field(net, config!(offsets.net_cookie))? };
    let host = HOST_NET.get(0).copied().unwrap_or(0);
    let port = if host != 0 && cookie == host {
        let sport: u16 = unsafe { tp_field(ctx, tp_offsets::SOCK_SPORT) };
        if new == TCP_LISTEN {
            unsafe { host_listen(cookie, sport) };
            return Ok(());
        }
        sport
    } else {
        0
    };
    let key = NetKey { cookie, port, _pad: [0; 3] };
    let Some(t) = NETNS.get_ptr_mut(&key) else {
        return Ok(());
    };
    unsafe {
        if new == TCP_ESTABLISHED {
            atomic_add(core::ptr::addr_of_mut!((*t).established), 1);
            if old == TCP_SYN_RECV {
                if from_node(ctx) {
                    atomic_add(core::ptr::addr_of_mut!((*t).node_accepted), 1);
                    (*t).last_node_accept_ns = now();
                } else {
                    atomic_add(core::ptr::addr_of_mut!((*t).accepted), 1);
                    (*t).last_accept_ns = now();
                }
            }
        } else if old == TCP_ESTABLISHED {
            atomic_add(core::ptr::addr_of_mut!((*t).established), u64::MAX);
        } else if new == TCP_LISTEN {
            atomic_add(core::ptr::addr_of_mut!((*t).listening), 1);
        } else {
            atomic_add(core::ptr::addr_of_mut!((*t).listening), u64::MAX);
            atomic_add(core::ptr::addr_of_mut!((*t).listen_closed), 1);
            (*t).last_listen_close_ns = now();
        }
    }
    Ok(())
}

/// The node's own addresses (`NODE_V4`, `NODE_V6`), written by observer; 0 ends the list.
#[map]
pub static NODE_V4: Array<u32> = Array::with_max_entries(NODE_ADDRS, 0);
#[map]
pub static NODE_V6: Array<[u64; 2]> = Array::with_max_entries(NODE_ADDRS, 0);

/// `AF_INET6`, include/linux/socket.h.
const AF_INET6: u16 = 10;

/// Whether a passive open's peer (the client) is one of the node's own addresses: kubelet's
/// probes come from the host's side of the pod's network (its bridge, its node address), and
/// so do the node's own clients. Only passive opens of a pod (or a host port) ask: at most
/// [`NODE_ADDRS`] loads from an array each list, never for the node's own traffic.
#[inline(always)]
unsafe fn from_node(ctx: &TracePointContext) -> bool {
    let v4: u32 = unsafe { tp_field(ctx, tp_offsets::SOCK_DADDR) };
    for i in 0..NODE_ADDRS {
        match NODE_V4.get(i) {
            Some(&a) if a == 0 => break,
            Some(&a) if a == v4 => return true,
            Some(_) => {}
            None => break,
        }
    }
    let family: u16 = unsafe { tp_field(ctx, tp_offsets::SOCK_FAMILY) };
    if family != AF_INET6 {
        return false;
    }
    let v6: [u64; 2] = unsafe { tp_field(ctx, tp_offsets::SOCK_DADDR_V6) };
    for i in 0..NODE_ADDRS {
        match NODE_V6.get(i) {
            Some(a) if *a == [0, 0] => break,
            Some(a) if *a == v6 => return true,
            Some(_) => {}
            None => break,
        }
    }
    false
}

/// A listen(2) in the host's namespace: counted from now on when the listener is in a
/// container with a main process (a host-network container), whose entry gets the port. A
/// container makes at most [`HOST_PORTS`] entries, whatever it listens on: one that listens
/// on port after port fills its own slots, never the map.
#[inline(never)]
unsafe fn host_listen(cookie: u64, port: u16) {
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    if port == 0 || !may_watch(cgroup) {
        return;
    }
    let Some(w) = (unsafe { WATCHED_CGROUPS.get(&cgroup) }) else { return };
    let main = w.main_tgid;
    if main == 0 {
        return;
    }
    let Some(p) = PROCESSES.get_ptr_mut(&main) else { return };
    if unsafe { (*p).net.flags } & net_flags::HOST_NETWORK == 0 {
        return;
    }
    let ports = unsafe { &mut (*p).net.ports };
    let mut slot = HOST_PORTS;
    for i in 0..HOST_PORTS {
        if ports[i] == port || (ports[i] == 0 && slot == HOST_PORTS) {
            slot = i;
        }
    }
    if slot == HOST_PORTS {
        count(Counter::HostPortsFull);
        return;
    }
    let key = NetKey { cookie, port, _pad: [0; 3] };
    match NETNS.get_ptr_mut(&key) {
        // Another listener of the same container (SO_REUSEPORT, a worker's own).
        Some(t) if unsafe { (*t).owner_cgroup } == cgroup => unsafe {
            atomic_add(core::ptr::addr_of_mut!((*t).listening), 1);
        },
        // An earlier container's port: counting starts again for this one.
        Some(t) => unsafe {
            *t = Traffic { since_ns: now(), owner_cgroup: cgroup, listening: 1, ..Traffic::ZERO };
        },
        None => {
            let fresh =
                Traffic { since_ns: now(), owner_cgroup: cgroup, listening: 1, ..Traffic::ZERO };
            if let Err(e) = NETNS.insert(&key, &fresh, BPF_NOEXIST) {
                if e != -EEXIST {
                    count(Counter::NetnsFull);
                    return;
                }
            }
        }
    }
    if slot < HOST_PORTS {
        ports[slot] = port;
    }
}

/// `task->nsproxy->net_ns->net_cookie`.
#[inline(always)]
unsafe fn netns_cookie(task: *const u8) -> Result<u64, i64> {
    let nsproxy: *const u8 = unsafe { read_field(task, config!(offsets.task_nsproxy))? };
    let net: *const u8 = unsafe { read_field(nsproxy, config!(offsets.nsproxy_net_ns))? };
    unsafe { read_field(net, config!(offsets.net_cookie)) }
}

/// Where the connections of main process `task` (whose parent is `parent`: the runtime, or
/// the shim that reaped it) are counted, and its pod's `NETNS` entry made if no container of
/// the pod made it first. A process in its parent's namespace shares the runtime's (the
/// host's: `hostNetwork`), whose cookie `HOST_NET` keeps. `from_stop`: learnt at its stop
/// signal (a container older than the probes). Written to `out` (left as it is when a read
/// fails, which is counted). A BPF-to-BPF call returns one register: results go through `out`.
#[inline(never)]
pub unsafe fn learn(task: *const u8, parent: *const u8, from_stop: bool, out: *mut NetOf) {
    let Ok(cookie) = (unsafe { netns_cookie(task) }) else { return };
    let from_stop = if from_stop { net_flags::FROM_STOP } else { 0 };
    let mut flags = from_stop;
    if unsafe { netns_cookie(parent) } == Ok(cookie) {
        if let Some(h) = HOST_NET.get_ptr_mut(0) {
            unsafe { *h = cookie };
        }
        flags |= net_flags::HOST_NETWORK;
    } else {
        let key = NetKey { cookie, port: 0, _pad: [0; 3] };
        let fresh = Traffic { since_ns: now(), ..Traffic::ZERO };
        if let Err(e) = NETNS.insert(&key, &fresh, BPF_NOEXIST) {
            if e != -EEXIST {
                count(Counter::NetnsFull);
            }
        }
    }
    unsafe {
        (*out).cookie = cookie;
        (*out).flags = flags;
    }
}

/// The connections counted for `p` now: its pod's namespace, or the sum over its host ports
/// (the latest start and last times), written to `out`. `since_ns` 0: nothing counted for it.
#[inline(never)]
pub unsafe fn snapshot(p: *const Process, out: *mut Traffic) {
    let (net, cgroup) = unsafe { ((*p).net, (*p).cgroup_id) };
    let out = unsafe { &mut *out };
    *out = Traffic::ZERO;
    if net.cookie == 0 {
        return;
    }
    if net.flags & net_flags::HOST_NETWORK == 0 {
        let key = NetKey { cookie: net.cookie, port: 0, _pad: [0; 3] };
        if let Some(t) = unsafe { NETNS.get(&key) } {
            *out = *t;
        }
        return;
    }
    let sum = out;
    for i in 0..HOST_PORTS {
        let port = net.ports[i];
        if port == 0 {
            continue;
        }
        let key = NetKey { cookie: net.cookie, port, _pad: [0; 3] };
        let Some(t) = (unsafe { NETNS.get(&key) }) else { continue };
        if t.owner_cgroup != cgroup {
            continue;
        }
        sum.since_ns = sum.since_ns.max(t.since_ns);
        sum.established = sum.established.wrapping_add(t.established);
        sum.accepted = sum.accepted.wrapping_add(t.accepted);
        sum.last_accept_ns = sum.last_accept_ns.max(t.last_accept_ns);
        sum.node_accepted = sum.node_accepted.wrapping_add(t.node_accepted);
        sum.last_node_accept_ns = sum.last_node_accept_ns.max(t.last_node_accept_ns);
        sum.listening = sum.listening.wrapping_add(t.listening);
        sum.listen_closed = sum.listen_closed.wrapping_add(t.listen_closed);
        sum.last_listen_close_ns = sum.last_listen_close_ns.max(t.last_listen_close_ns);
        sum.owner_cgroup = cgroup;
    }
}
