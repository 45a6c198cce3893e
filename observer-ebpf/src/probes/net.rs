//! TCP at termination: the connections of the pods' network namespaces (and of host-network
//! containers' listening ports), counted as the kernel changes their state.
//!
//! Every TCP state change goes through `tcp_set_state()` (net/ipv4/tcp.c), which fires
//! `sock:inet_sock_set_state` (include/trace/events/sock.h, `TP_PROTO(const struct sock *sk,
//! const int oldstate, const int newstate)`). The program is tp_btf, not a classic
//! tracepoint: a classic tracepoint's program is skipped whenever any kprobe or tracepoint
//! program (another agent's too) is running on that CPU (`trace_call_bpf()`'s per-CPU
//! `bpf_prog_active`), which a softirq's TCP state change interrupting one would hit, and
//! the kernel counted those skips only from 6.7; a tp_btf program is skipped only when it is
//! itself interrupted on its CPU (`__bpf_trace_run()`'s `prog->active`), and counted in its
//! `recursion_misses` (kernel/misses.rs in observer). Its fields are read from the socket
//! through BTF offsets, with no helper call. What the transitions mean, read on this kernel
//! with a server in a network namespace of its own:
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
use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_probe_read_kernel},
    macros::{btf_tracepoint, map},
    maps::{Array, HashMap},
    programs::BtfTracePointContext,
};
use observer_ebpf::{
    net_flags, traffic_flags, Counter, NetKey, NetOf, Process, Traffic, HOST_PORTS, NETNS_MAX,
    NODE_ADDRS,
};

use super::{
    arg_field, atomic_add, cgroup_id, cgroup_parent, config, count, may_watch, now, read_field,
    task_dfl_cgroup, BPF_NOEXIST, PROCESSES, WATCHED_CGROUPS,
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

/// The node's own addresses (`NODE_V4`, `NODE_V6`), written by observer (`node/addresses.rs`).
#[map]
pub static NODE_V4: HashMap<u32, u8> = HashMap::with_max_entries(NODE_ADDRS, 0);
#[map]
pub static NODE_V6: HashMap<[u64; 2], u8> = HashMap::with_max_entries(NODE_ADDRS, 0);

/// `enum tcp_state`, include/net/tcp_states.h.
const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_RECV: i32 = 3;
const TCP_CLOSE: i32 = 7;
const TCP_LISTEN: i32 = 10;
/// `IPPROTO_TCP`: the tracepoint also fires for SCTP and MPTCP sockets.
const IPPROTO_TCP: u16 = 6;
/// `AF_INET6`, include/linux/socket.h.
const AF_INET6: u16 = 10;
/// `LOOPBACK_IFINDEX`, include/net/net_namespace.h: `lo` is interface 1 in every namespace.
const LOOPBACK_IFINDEX: i32 = 1;
/// `EEXIST`, what an insert with `BPF_NOEXIST` returns for a key already there.
const EEXIST: i32 = 17;
/// Ancestors of a main process asked for the runtime's namespace: its parent, or (the parent
/// exiting, its namespaces already released) the shim or init above it.
const RUNTIME_ANCESTORS: usize = 4;

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: BtfTracePointContext) -> i32 {
    let _ = unsafe { try_inet_sock_set_state(&ctx) };
    0
}

unsafe fn try_inet_sock_set_state(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    // Only what changes a count: into or out of ESTABLISHED, into LISTEN, LISTEN -> CLOSE. A
    // passive open's child is made as a copy of its listener and leaves LISTEN for SYN_RECV
    // (`inet_csk_clone_lock()`: `inet_sk_set_state(newsk, TCP_SYN_RECV)`): no listener closed.
    let unlisten = old == TCP_LISTEN && new == TCP_CLOSE;
    if new != TCP_ESTABLISHED && old != TCP_ESTABLISHED && new != TCP_LISTEN && !unlisten {
        return Ok(());
    }
    let sk: *const u8 = ctx.arg(0);
    let protocol: u16 = unsafe { arg_field(sk, config!(offsets.net.sock_protocol)) };
    if protocol != IPPROTO_TCP {
        return Ok(());
    }
    let net: *const u8 = unsafe { arg_field(sk, config!(offsets.net.sock_net)) };
    if net.is_null() {
        return Ok(());
    }
    let cookie: u64 = unsafe { arg_field(net, config!(offsets.net.net_cookie)) };
    let host = HOST_NET.get(0).copied().unwrap_or(0);
    let port = if host != 0 && cookie == host {
        // Past `struct sock` (in its `inet_sock`): a read, not a BTF load.
        let sport =
            u16::from_be(unsafe { read_field::<u16>(sk, config!(offsets.net.inet_sport))? });
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
                passive_open(sk, t, port == 0);
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

/// A passive open completed (SYN_RECV -> ESTABLISHED): a client's, the node's (kubelet's
/// probes), or, in a pod's namespace, the pod's own (it came in on loopback).
#[inline(always)]
unsafe fn passive_open(sk: *const u8, t: *mut Traffic, pod: bool) {
    let ifindex: i32 = unsafe { arg_field(sk, config!(offsets.net.sock_rx_ifindex)) };
    unsafe {
        if pod && ifindex == LOOPBACK_IFINDEX {
            atomic_add(core::ptr::addr_of_mut!((*t).inside_accepted), 1);
            (*t).last_inside_accept_ns = now();
        } else if from_node(sk) {
            atomic_add(core::ptr::addr_of_mut!((*t).node_accepted), 1);
            (*t).last_node_accept_ns = now();
        } else {
            atomic_add(core::ptr::addr_of_mut!((*t).accepted), 1);
            (*t).last_accept_ns = now();
        }
    }
}

/// Whether a passive open's peer (the client) is one of the node's own addresses: kubelet's
/// probes come from the host's side of the pod's network (its bridge, its node address), and
/// so do the node's own clients. Only passive opens of a pod (or a host port) ask: one lookup
/// (two for an IPv6 peer), never for the node's own traffic.
#[inline(always)]
unsafe fn from_node(sk: *const u8) -> bool {
    let v4: u32 = unsafe { arg_field(sk, config!(offsets.net.skc_daddr)) };
    if unsafe { NODE_V4.get(&v4) }.is_some() {
        return true;
    }
    let family: u16 = unsafe { arg_field(sk, config!(offsets.net.skc_family)) };
    if family != AF_INET6 {
        return false;
    }
    let off = config!(offsets.net.skc_v6_daddr);
    if off == 0 {
        return false;
    }
    // SAFETY: 16 bytes of the socket, at a BTF offset; a failed read is no match.
    let Ok(v6) = (unsafe { bpf_probe_read_kernel(sk.add(off as usize) as *const [u64; 2]) }) else {
        return false;
    };
    unsafe { NODE_V6.get(&v6) }.is_some()
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

/// `task->nsproxy->net_ns->net_cookie`, or None where the task's namespaces are gone (an
/// exiting task's, after `exit_task_namespaces()`): an expected state, not counted.
#[inline(always)]
unsafe fn netns_cookie(task: *const u8) -> Option<u64> {
    let read = |base: *const u8, off: u32| -> Option<u64> {
        if base.is_null() || off == 0 {
            return None;
        }
        unsafe { bpf_probe_read_kernel(base.add(off as usize) as *const u64) }.ok()
    };
    let nsproxy = read(task, config!(offsets.net.task_nsproxy))? as *const u8;
    let net = read(nsproxy, config!(offsets.net.nsproxy_net_ns))? as *const u8;
    read(net, config!(offsets.net.net_cookie)).filter(|c| *c != 0)
}

/// The runtime's namespace for main process `task`, whose parent is `parent`: the parent's,
/// or where the parent is exiting (runc's `create` leaving as its init execs), its nearest
/// live ancestor's (the shim, init).
#[inline(always)]
unsafe fn runtime_cookie(parent: *const u8) -> Option<u64> {
    let mut cur = parent;
    for _ in 0..RUNTIME_ANCESTORS {
        if let Some(c) = unsafe { netns_cookie(cur) } {
            return Some(c);
        }
        let up: *const u8 = unsafe { read_field(cur, config!(offsets.task_real_parent)) }.ok()?;
        if up.is_null() || up == cur {
            return None;
        }
        cur = up;
    }
    None
}

/// Whether the pod `task`'s container belongs to was made before the probes: its cgroup (the
/// container cgroup's parent) was found by the start-up walk (`since_ns` 0), so its network
/// namespace may hold connections no count saw begin.
#[inline(always)]
unsafe fn pod_predates(task: *const u8) -> bool {
    let Ok(cgrp) = (unsafe { task_dfl_cgroup(task) }) else { return true };
    let Some(pod) = (unsafe { cgroup_parent(cgrp) }) else { return true };
    let Ok(id) = (unsafe { cgroup_id(pod) }) else { return true };
    match unsafe { WATCHED_CGROUPS.get(&id) } {
        Some(w) => w.since_ns == 0,
        // Not under the prefix: a container cgroup directly below it, made since.
        None => false,
    }
}

/// Where the connections of main process `task` (whose parent is `parent`: the runtime, or
/// the shim that reaped it) are counted, and its pod's `NETNS` entry made if no container of
/// the pod made it first. A process in its runtime's namespace shares the host's
/// (`hostNetwork`), whose cookie `HOST_NET` keeps. `from_stop`: learnt at its stop signal (a
/// container older than the probes). Written to `out`; left as it is (no counting for it,
/// counted in [`Counter::NetnsUnknown`]) when either namespace cannot be read. A BPF-to-BPF
/// call returns one register: results go through `out`.
#[inline(never)]
pub unsafe fn learn(task: *const u8, parent: *const u8, from_stop: bool, out: *mut NetOf) {
    // No traffic probe on this node (its offsets are zero): nothing to learn.
    if config!(offsets.net.net_cookie) == 0 {
        return;
    }
    let (Some(cookie), Some(runtime)) =
        (unsafe { netns_cookie(task) }, unsafe { runtime_cookie(parent) })
    else {
        count(Counter::NetnsUnknown);
        return;
    };
    let mut flags = if from_stop { net_flags::FROM_STOP } else { 0 };
    if runtime == cookie {
        if let Some(h) = HOST_NET.get_ptr_mut(0) {
            unsafe { *h = cookie };
        }
        flags |= net_flags::HOST_NETWORK;
    } else {
        let key = NetKey { cookie, port: 0, _pad: [0; 3] };
        let predates = if unsafe { pod_predates(task) } { traffic_flags::POD_PREDATES } else { 0 };
        let fresh = Traffic { since_ns: now(), flags: predates, ..Traffic::ZERO };
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
        sum.inside_accepted = sum.inside_accepted.wrapping_add(t.inside_accepted);
        sum.last_inside_accept_ns = sum.last_inside_accept_ns.max(t.last_inside_accept_ns);
        sum.flags |= t.flags;
        sum.listening = sum.listening.wrapping_add(t.listening);
        sum.listen_closed = sum.listen_closed.wrapping_add(t.listen_closed);
        sum.last_listen_close_ns = sum.last_listen_close_ns.max(t.last_listen_close_ns);
        sum.owner_cgroup = cgroup;
    }
}
