//! Identity: which process is a container's main process, and who sent its stop signal, with
//! real runc containers and real programs as their main process. The kernel learns the main
//! process at its exec (the first exec into a watched cgroup by a process whose parent is
//! outside it), keys it by (tgid, start time), opens a record only for a stop signal to a main
//! process, and counts, never records, signals a container's own processes send.
//!
//! Every test stops each container for real and asserts exactly one record per stop (and none
//! for what is not a stop), field by field, against the runc process that sent the signal and
//! the test's own clock.

use std::{
    collections::{HashMap, HashSet},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use observer_tests::{
    by_id, epoch_ns, unique, wait_handler, Daemon, Layout, Pidfd, Pod, Runc, Sent, Spec,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

/// How far a kernel timestamp, put on the wall clock by the daemon, may fall outside the
/// test's own readings around the event (the daemon's kernel -> wall clock conversion).
const WALL_SLACK_NS: i128 = 5_000_000;

/// A runc container of a pod of its own, named as kubelet's log layout names it.
/// Fields drop in order: the container before its pod (whose cgroup needs it gone).
struct Container {
    runc: Runc,
    cid: String,
    name: String,
    pod: Pod,
}

impl Container {
    /// `spec` as container `name` of a fresh pod `pod_name` in `ns`, under `d`'s log root.
    fn start(d: &Daemon, ns: &str, pod_name: &str, name: &str, spec: &Spec) -> Self {
        let pod = Pod::new(&d.log_root, ns, pod_name);
        Self::start_in(pod, name, spec)
    }

    /// `spec` as container `name` of `pod`, in its cgroup for this pod's layout.
    fn start_in(mut pod: Pod, name: &str, spec: &Spec) -> Self {
        let (cid, _) = pod.container(name);
        let runc = spec.run(&cid, &pod.container_cgroup(&cid)).unwrap();
        runc.wait_running(WAIT).unwrap();
        Self { runc, cid, name: name.into(), pod }
    }

    fn pid(&self) -> u32 {
        self.runc.pid().unwrap()
    }
}

fn ns_nanos(t: SystemTime) -> i128 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as i128
}

/// `r[key]` is `want`, saying which record it was not.
#[track_caller]
fn field(r: &Value, key: &str, want: impl Into<Value>) {
    let want = want.into();
    assert_eq!(r[key], want, "{key}: want {want}, record {r:#}");
}

/// The record names the container: namespace, pod, pod uid, container, container id, cgroup.
#[track_caller]
fn names(r: &Value, c: &Container) {
    field(r, "namespace", c.pod.namespace.as_str());
    field(r, "pod", c.pod.name.as_str());
    field(r, "pod_uid", c.pod.uid.as_str());
    field(r, "container", c.name.as_str());
    field(r, "container_id", c.cid.as_str());
    field(r, "cgroup", c.pod.container_cgroup(&c.cid));
}

/// `r[key]` (a timestamp) lies in `[from, to]` on the test's clock, give or take the
/// conversion's slack.
#[track_caller]
fn between(r: &Value, key: &str, from: SystemTime, to: SystemTime) {
    let t = epoch_ns(&r[key]);
    assert!(
        t >= ns_nanos(from) - WALL_SLACK_NS && t <= ns_nanos(to) + WALL_SLACK_NS,
        "{key} {} outside the test's window [{}, {}] ns: {r:#}",
        t,
        ns_nanos(from),
        ns_nanos(to)
    );
}

/// A sender that is the `runc kill` process of `sent`, from the host.
#[track_caller]
fn runc_sender(r: &Value, key: &str, sent: &Sent) {
    let s = &r[key];
    assert_eq!(s["pid"], sent.runc_pid, "{key} pid: {r:#}");
    assert_eq!(s["comm"], "runc", "{key} comm: {r:#}");
    assert_eq!(s["from"], "host", "{key} from: {r:#}");
}

/// The stop signal `sig` came from `sent`: its sender, and its time inside runc's window.
#[track_caller]
fn stopped_by(r: &Value, sig: &str, sent: &Sent) {
    field(r, "stop_signal", sig);
    runc_sender(r, "stop_signal_sender", sent);
    between(r, "stop_signal_at", sent.before, sent.after);
}

/// The exit was seen by the kernel after the stop signal and before the test saw the process
/// gone (`seen`); the interval is the difference of the two kernel times.
#[track_caller]
fn exited_by(r: &Value, seen: SystemTime) {
    let stop = epoch_ns(&r["stop_signal_at"]);
    let exit = epoch_ns(&r["exit_at"]);
    assert!(exit >= stop, "exit before stop signal: {r:#}");
    assert!(exit <= ns_nanos(seen) + WALL_SLACK_NS, "exit_at after the test saw it gone: {r:#}");
    let t2e = r["term_to_exit_seconds"].as_f64().unwrap_or_else(|| panic!("no term_to_exit: {r:#}"));
    assert!((t2e - (exit - stop) as f64 / 1e9).abs() < 1e-6, "term_to_exit vs times: {r:#}");
}

/// No SIGKILL in the record.
#[track_caller]
fn no_sigkill(r: &Value) {
    field(r, "sigkill_at", Value::Null);
    field(r, "sigkill_sender", Value::Null);
    field(r, "term_to_kill_seconds", Value::Null);
}

/// The records of `cid`, once at least `n` are there (`WAIT` at most), asserting there are
/// exactly `n`, then still exactly `n` after a pause in which an extra one would have come.
fn exactly(d: &Daemon, cid: &str, n: usize) -> Vec<Value> {
    d.wait_records(n, WAIT, by_id(cid));
    std::thread::sleep(Duration::from_millis(700));
    let recs: Vec<Value> = d.records().into_iter().filter(by_id(cid)).collect();
    assert_eq!(recs.len(), n, "records of {cid}: {recs:#?}\ndaemon log:\n{}", d.log());
    recs
}

/// The record of `cid` alone, once.
fn one(d: &Daemon, cid: &str) -> Value {
    exactly(d, cid, 1).remove(0)
}

/// No record names `cid` (after a pause long enough for one to be written).
fn none(d: &Daemon, cid: &str) {
    std::thread::sleep(Duration::from_millis(700));
    let recs: Vec<Value> = d.records().into_iter().filter(by_id(cid)).collect();
    assert!(recs.is_empty(), "records of {cid}: {recs:#?}\ndaemon log:\n{}", d.log());
}

/// A mask of `/proc/<pid>/status` ("SigBlk:", "SigCgt:").
fn sigmask(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

/// Waits until `cond` holds (10 s at most), saying `what` if it never does.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "{what} within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until `pid` sleeps in sigtimedwait(2) (its `wchan`): there the signals it waits for
/// are in `real_blocked` (its `blocked` mask, /proc's `SigBlk`, is lifted while it waits).
fn wait_sigtimedwait(pid: u32) {
    wait_until(&format!("pid {pid} waits in sigtimedwait"), || {
        std::fs::read_to_string(format!("/proc/{pid}/wchan"))
            .unwrap_or_default()
            .contains("sigtimedwait")
    });
}

/// The children of `pid` (its main thread's).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

/// Waits until `pid` has a child that has exec'd `name`; returns its pid.
fn wait_child(pid: u32, name: &str) -> u32 {
    let mut found = 0;
    wait_until(&format!("pid {pid} runs a child {name}"), || {
        found = children(pid).into_iter().find(|c| comm(*c) == name).unwrap_or(0);
        found != 0
    });
    found
}

// ---------------------------------------------------------------------------------------
// 3. Init wrappers as PID 1: tini and dumb-init take the stop signal with sigwait.
// ---------------------------------------------------------------------------------------

/// An init wrapper that blocks every signal and takes them with sigwait/sigtimedwait, then
/// forwards them: the stop signal is "blocked" at generation, not dropped, its child dies of
/// it, and the wrapper exits 128 + 15.
fn sigwait_init_forwards_sigterm(what: &str, args: &[&str], wrapper: &str) {
    let d = Daemon::start();
    let ns = unique(what);
    let c = Container::start(&d, &ns, "edge-7d4b9c6f8-x2k9p", "proxy", &Spec::host(args));
    let pid = c.pid();
    let child = wait_child(pid, "sleep");
    wait_sigtimedwait(pid);
    let watch = Pidfd::open(pid).unwrap();
    let child_watch = Pidfd::open(child).unwrap();
    let sent = c.runc.signal("TERM").unwrap();
    let seen = watch.wait_exit(WAIT).unwrap();
    child_watch.wait_exit(WAIT).unwrap();
    let r = one(&d, &c.cid);
    eprintln!("{what} record: {r:#}");
    names(&r, &c);
    field(&r, "pid", pid);
    field(&r, "comm", wrapper);
    stopped_by(&r, "SIGTERM", &sent);
    field(&r, "stop_signal_ignored", false);
    field(&r, "stop_signal_handler", "blocked");
    // Taken by sigwait, never delivered through a handler or a default action.
    field(&r, "stop_signal_disposition", Value::Null);
    field(&r, "outcome", "graceful");
    field(&r, "exit_code", 143);
    field(&r, "exit_signal", Value::Null);
    no_sigkill(&r);
    exited_by(&r, seen);
    // The child the wrapper forwarded SIGTERM to is no main process: no record of its own.
    let stray: Vec<Value> = d.records().into_iter().filter(|x| x["pid"] == child).collect();
    assert!(stray.is_empty(), "the wrapper's child was recorded: {stray:#?}");
    assert!(r["term_to_exit_seconds"].as_f64().unwrap() < 2.0, "{r:#}");
}

#[test]
fn tini_as_pid1_blocks_sigterm_forwards_it_and_exits_143() {
    sigwait_init_forwards_sigterm("tini", &["tini", "--", "sleep", "1000"], "tini");
}

#[test]
fn dumb_init_as_pid1_blocks_sigterm_forwards_it_and_exits_143() {
    sigwait_init_forwards_sigterm("dumbinit", &["dumb-init", "sleep", "1000"], "dumb-init");
}
