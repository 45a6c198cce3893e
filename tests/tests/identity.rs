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

/// A runc container `name` of a pod the caller keeps (declared before its containers, so that
/// they drop first), named as kubelet's log layout names it.
struct InPod {
    runc: Runc,
    cid: String,
    name: String,
}

impl InPod {
    /// `spec` as container `name` of `pod`, in its cgroup for this pod's layout.
    fn start(pod: &mut Pod, name: &str, spec: &Spec) -> Self {
        let (cid, _) = pod.container(name);
        let runc = spec.run(&cid, &pod.container_cgroup(&cid)).unwrap();
        runc.wait_running(WAIT).unwrap();
        Self { runc, cid, name: name.into() }
    }

    /// The host pid of its main process (while it runs).
    fn pid(&self) -> u32 {
        self.runc.pid().unwrap()
    }
}

/// A runc container of a pod of its own.
/// Fields drop in order: the container before its pod (whose cgroup needs it gone).
struct Container {
    c: InPod,
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
        let c = InPod::start(&mut pod, name, spec);
        Self { c, pod }
    }
}

impl std::ops::Deref for Container {
    type Target = InPod;

    fn deref(&self) -> &InPod {
        &self.c
    }
}

/// A daemon that watches a kubelet cgroup root of this test's own (`/<unique>/kubepods`):
/// node-wide counters (self-signals, nested cgroups, orphan exits) then count this test's
/// containers only, whatever the tests running beside it do.
struct Node {
    d: Daemon,
    kubelet_cgroup_root: String,
}

impl Node {
    fn start(tag: &str) -> Self {
        let kubelet_cgroup_root = format!("/{}", unique(tag));
        let d = Daemon::start_with(
            None,
            &["--cgroup-root", &format!("{kubelet_cgroup_root}/kubepods")],
        );
        Self { d, kubelet_cgroup_root }
    }

    /// A pod of this node (cgroupfs layout under its cgroup root, the daemon's log root).
    fn pod(&self, ns: &str, name: &str) -> Pod {
        Pod::new(&self.d.log_root, ns, name).with_kubelet_cgroup_root(&self.kubelet_cgroup_root)
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

/// The record names container `c` of `pod` (namespace, pod, pod uid, container, container id,
/// cgroup) and its main process, `pid` running `comm`.
#[track_caller]
fn main_process(r: &Value, pod: &Pod, c: &InPod, pid: u32, comm: &str) {
    field(r, "namespace", pod.namespace.as_str());
    field(r, "pod", pod.name.as_str());
    field(r, "pod_uid", pod.uid.as_str());
    field(r, "container", c.name.as_str());
    field(r, "container_id", c.cid.as_str());
    field(r, "cgroup", pod.container_cgroup(&c.cid));
    field(r, "pid", pid);
    field(r, "comm", comm);
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
    let t2e =
        r["term_to_exit_seconds"].as_f64().unwrap_or_else(|| panic!("no term_to_exit: {r:#}"));
    assert!((t2e - (exit - stop) as f64 / 1e9).abs() < 1e-6, "term_to_exit vs times: {r:#}");
}

/// No SIGKILL in the record.
#[track_caller]
fn no_sigkill(r: &Value) {
    field(r, "sigkill_at", Value::Null);
    field(r, "sigkill_sender", Value::Null);
    field(r, "term_to_kill_seconds", Value::Null);
}

/// The SIGKILL came from `kill`: its sender, its time inside runc's window; the interval is the
/// difference of the stop signal's and the SIGKILL's kernel times.
#[track_caller]
fn killed_by(r: &Value, kill: &Sent) {
    runc_sender(r, "sigkill_sender", kill);
    between(r, "sigkill_at", kill.before, kill.after);
    let (stop, k) = (epoch_ns(&r["stop_signal_at"]), epoch_ns(&r["sigkill_at"]));
    let t2k =
        r["term_to_kill_seconds"].as_f64().unwrap_or_else(|| panic!("no term_to_kill: {r:#}"));
    assert!((t2k - (k - stop) as f64 / 1e9).abs() < 1e-6, "term_to_kill vs times: {r:#}");
}

/// How a main process ended.
enum Exit<'a> {
    /// Gracefully, with this exit code.
    Code(i32),
    /// Gracefully, of this signal's default action.
    Signal(&'static str),
    /// Killed by the SIGKILL `runc kill` sent here.
    Killed(&'a Sent),
}

/// How a main process took its stop signal and how it ended, as its record must say.
struct Stop<'a> {
    /// `stop_signal_ignored`: the kernel dropped the signal.
    ignored: bool,
    /// `stop_signal_handler`: the signal's disposition when it was sent.
    handler: &'static str,
    /// `stop_signal_disposition`: how it was delivered (none: never delivered as itself).
    disposition: Option<&'static str>,
    /// `outcome`, `exit_code`, `exit_signal` and the SIGKILL fields.
    exit: Exit<'a>,
}

/// A handler that exits 0: "handled" when sent and when delivered.
const HANDLER_EXITS_0: Stop =
    Stop { ignored: false, handler: "handled", disposition: Some("handled"), exit: Exit::Code(0) };

/// An init wrapper that blocks every signal and takes them with sigwait: "blocked" when sent,
/// not dropped; taken by sigwait, never delivered through a handler or a default action. The
/// wrapper exits 128 + 15.
const SIGWAIT_EXITS_143: Stop =
    Stop { ignored: false, handler: "blocked", disposition: None, exit: Exit::Code(143) };

/// No handler, and not its pid namespace's init: SIGTERM's default action ends it. Never
/// delivered as itself: a fatal default action is taken at generation (kernel/signal.c
/// complete_signal() starts the group exit and queues SIGKILL to every thread), so
/// signal_deliver fires for SIGKILL, never for SIGTERM.
const DEFAULT_ACTION_ENDS_IT: Stop =
    Stop { ignored: false, handler: "default", disposition: None, exit: Exit::Signal("SIGTERM") };

impl Stop<'_> {
    /// The record took and ended the stop as this says, with no preStop hook; and its exit
    /// came after the stop signal and before the test saw the process gone (`seen`).
    #[track_caller]
    fn check(&self, r: &Value, seen: SystemTime) {
        field(r, "stop_signal_ignored", self.ignored);
        field(r, "stop_signal_handler", self.handler);
        field(r, "stop_signal_disposition", self.disposition);
        match self.exit {
            Exit::Code(code) => {
                field(r, "outcome", "graceful");
                field(r, "exit_code", code);
                field(r, "exit_signal", Value::Null);
                no_sigkill(r);
            }
            Exit::Signal(sig) => {
                field(r, "outcome", "graceful");
                field(r, "exit_code", Value::Null);
                field(r, "exit_signal", sig);
                no_sigkill(r);
            }
            Exit::Killed(kill) => {
                field(r, "outcome", "killed");
                field(r, "exit_code", Value::Null);
                field(r, "exit_signal", "SIGKILL");
                killed_by(r, kill);
            }
        }
        field(r, "prestop", Value::Null);
        exited_by(r, seen);
    }
}

/// The daemon's own counters (`observer_*` series), for failure messages.
fn observer_metrics(d: &Daemon) -> String {
    d.metrics().lines().filter(|l| l.starts_with("observer_")).collect::<Vec<_>>().join("\n")
}

/// The records that `filter` matches, once at least `n` are there (`timeout` at most) and
/// after a pause in which an extra one would have come.
fn settled(d: &Daemon, n: usize, timeout: Duration, filter: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    while d.records().iter().filter(|r| filter(r)).count() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(700));
    d.records().into_iter().filter(|r| filter(r)).collect()
}

/// The records of `cid`, asserting there are exactly `n`, and still exactly `n` after a pause
/// in which an extra one would have come ([`settled`]).
fn exactly(d: &Daemon, cid: &str, n: usize) -> Vec<Value> {
    let recs = settled(d, n, WAIT, by_id(cid));
    assert_eq!(
        recs.len(),
        n,
        "records of {cid}: {recs:#?}\ndaemon log:\n{}\n{}",
        d.log(),
        observer_metrics(d)
    );
    recs
}

/// The record of `cid` alone, once.
fn one(d: &Daemon, cid: &str) -> Value {
    exactly(d, cid, 1).remove(0)
}

/// No record names `cid` (after a pause long enough for one to be written).
fn none(d: &Daemon, cid: &str) {
    exactly(d, cid, 0);
}

/// Exactly `n` records name namespace `ns` (one per container stopped, none more).
fn in_namespace(d: &Daemon, ns: &str, n: usize) {
    let recs: Vec<Value> = d.records().into_iter().filter(|r| r["namespace"] == ns).collect();
    assert_eq!(recs.len(), n, "records of namespace {ns}: {recs:#?}");
}

/// The records of process `pid`, whatever container they name.
fn of_pid(d: &Daemon, pid: u32) -> Vec<Value> {
    d.records().into_iter().filter(|r| r["pid"] == pid).collect()
}

/// Sends a stop to `pid` (`send`) and waits until the process is gone (`WAIT` at most): what
/// `send` returned, and when the test saw the process gone.
fn until_gone<T>(pid: u32, send: impl FnOnce() -> T) -> (T, SystemTime) {
    let watch = Pidfd::open(pid).unwrap();
    let sent = send();
    (sent, watch.wait_exit(WAIT).unwrap())
}

/// Stops container `c` of `pod` by `runc kill <sig>` ("TERM", …) and returns its one record,
/// checked: it names the container and its main process (`comm`), the signal and the runc
/// process that sent it, and the stop as `want` says.
fn runc_stop(d: &Daemon, pod: &Pod, c: &InPod, comm: &str, sig: &str, want: &Stop) -> Value {
    let pid = c.pid();
    let (sent, seen) = until_gone(pid, || c.runc.signal(sig).unwrap());
    let r = one(d, &c.cid);
    eprintln!("{} record: {r:#}", c.name);
    main_process(&r, pod, c, pid, comm);
    stopped_by(&r, &format!("SIG{sig}"), &sent);
    want.check(&r, seen);
    r
}

/// Stops container `c` of `pod`, whose main process is its pid namespace's init with no
/// SIGTERM handler: `runc kill TERM`, which the kernel drops (an init's signal with the default
/// disposition is ignored at generation, kernel/signal.c sig_task_ignored(); only SIGKILL and
/// SIGSTOP from an ancestor namespace get through), so the process outlives `grace` (`why`
/// says why it must); then `runc kill KILL`. Returns its one record, checked as [`runc_stop`]
/// checks it: SIGTERM ignored, never delivered, then runc's SIGKILL.
fn runc_term_then_kill(
    d: &Daemon,
    pod: &Pod,
    c: &InPod,
    comm: &str,
    grace: Duration,
    why: &str,
) -> Value {
    let pid = c.pid();
    let watch = Pidfd::open(pid).unwrap();
    let term = c.runc.signal("TERM").unwrap();
    std::thread::sleep(grace);
    assert!(watch.alive(), "{why}");
    let kill = c.runc.signal("KILL").unwrap();
    let seen = watch.wait_exit(WAIT).unwrap();
    let r = one(d, &c.cid);
    eprintln!("{} record: {r:#}", c.name);
    main_process(&r, pod, c, pid, comm);
    stopped_by(&r, "SIGTERM", &term);
    let dropped =
        Stop { ignored: true, handler: "default", disposition: None, exit: Exit::Killed(&kill) };
    dropped.check(&r, seen);
    r
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

/// Whether `pid` sleeps in its shell's `wait` builtin: waitpid(2) (`do_wait`), or
/// sigsuspend(2), which busybox ash uses while it has traps.
fn in_wait(pid: u32) -> bool {
    let w = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    w == "do_wait" || w.starts_with("sigsuspend")
}

/// Waits until a shell of `trap '…' TERM; sleep 1000 & wait` is blocked in `wait` with its
/// trap set: a trapped signal that comes between the fork and the wait is only acted on when
/// the wait returns (busybox ash, dash), here after 1000 s.
fn wait_shell_waits(pid: u32) {
    wait_handler(pid, libc::SIGTERM).unwrap();
    wait_child(pid, "sleep");
    wait_until(&format!("shell {pid} waits for its child"), || in_wait(pid));
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
/// forwards them: its child dies of the stop signal, and the wrapper exits 128 + 15
/// ([`SIGWAIT_EXITS_143`]).
fn sigwait_init_forwards_sigterm(what: &str, args: &[&str], wrapper: &str) {
    let d = Daemon::start();
    let ns = unique(what);
    let c = Container::start(&d, &ns, "edge-7d4b9c6f8-x2k9p", "proxy", &Spec::host(args));
    let pid = c.pid();
    let child = wait_child(pid, "sleep");
    wait_sigtimedwait(pid);
    let child_watch = Pidfd::open(child).unwrap();
    let r = runc_stop(&d, &c.pod, &c, wrapper, "TERM", &SIGWAIT_EXITS_143);
    child_watch.wait_exit(WAIT).unwrap();
    // The child the wrapper forwarded SIGTERM to is no main process: no record of its own.
    let stray = of_pid(&d, child);
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

// ---------------------------------------------------------------------------------------
// 4. Real programs as PID 1, with the host's own binaries.
// ---------------------------------------------------------------------------------------

/// Waits until `pid` (in its own network namespace) listens on TCP `port`
/// (`/proc/<pid>/net/tcp{,6}`, state 0A).
fn wait_listen(pid: u32, port: u16) {
    let want = format!(":{port:04X}");
    wait_until(&format!("pid {pid} listens on {port}"), || {
        ["tcp", "tcp6"].iter().any(|f| {
            std::fs::read_to_string(format!("/proc/{pid}/net/{f}"))
                .unwrap_or_default()
                .lines()
                .skip(1)
                .any(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    cols.len() > 3 && cols[1].ends_with(&want) && cols[3] == "0A"
                })
        })
    });
}

/// A main process (`comm`) that handles `sig` and exits 0: one graceful record
/// ([`HANDLER_EXITS_0`]), sent by runc from the host.
fn handled_and_exited_0(d: &Daemon, c: &Container, comm: &str, sig: &str) {
    let r = runc_stop(d, &c.pod, c, comm, sig, &HANDLER_EXITS_0);
    assert!(r["term_to_exit_seconds"].as_f64().unwrap() < 5.0, "{r:#}");
}

#[test]
fn redis_server_as_pid1_handles_sigterm_and_exits_0() {
    let d = Daemon::start();
    let ns = unique("redis");
    let spec = Spec::host(&[
        "redis-server",
        "--port",
        "6379",
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    let c = Container::start(&d, &ns, "cache-0", "redis", &spec);
    let pid = c.pid();
    wait_handler(pid, libc::SIGTERM).unwrap();
    wait_listen(pid, 6379);
    handled_and_exited_0(&d, &c, "redis-server", "TERM");
}

#[test]
fn nginx_as_pid1_takes_sigquit_as_its_graceful_stop() {
    let node = Node::start("nginx");
    let d = &node.d;
    let ns = unique("nginx");
    let spec =
        Spec::host(&["nginx", "-g", "daemon off;"]).tmpfs("/var/lib/nginx").tmpfs("/var/log/nginx");
    let c = Container::start_in(node.pod(&ns, "web-7d4b9c6f8-x2k9p"), "nginx", &spec);
    let pid = c.pid();
    wait_handler(pid, libc::SIGQUIT).unwrap();
    wait_listen(pid, 80);
    // Its workers run (forked by the master: no main processes of their own).
    let worker = wait_child(pid, "nginx");
    handled_and_exited_0(d, &c, "nginx", "QUIT");
    // The master's SIGQUIT to its workers came from inside the container, to processes that
    // are no main process: nothing recorded, nothing counted.
    let stray = of_pid(d, worker);
    assert!(stray.is_empty(), "a worker was recorded: {stray:#?}");
    assert_eq!(d.metric("observer_container_self_signals_total", &[]), 0.0);
}

#[test]
fn python_with_a_handler_as_pid1_exits_0() {
    let d = Daemon::start();
    let ns = unique("pyok");
    let spec = Spec::host(&[
        "python3",
        "-c",
        "import signal,sys,time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(1000)",
    ]);
    let c = Container::start(&d, &ns, "worker-5f6d7c8b9-abcde", "worker", &spec);
    let pid = c.pid();
    wait_handler(pid, libc::SIGTERM).unwrap();
    handled_and_exited_0(&d, &c, "python3", "TERM");
}

#[test]
fn python_without_a_handler_as_pid1_drops_sigterm_and_is_killed() {
    let d = Daemon::start();
    let ns = unique("pynoh");
    let spec = Spec::host(&["python3", "-c", "import time; time.sleep(1000)"]);
    let c = Container::start(&d, &ns, "worker-5f6d7c8b9-abcde", "worker", &spec);
    let pid = c.pid();
    // The interpreter runs once it has its own SIGINT handler; SIGTERM it leaves alone.
    wait_handler(pid, libc::SIGINT).unwrap();
    assert_eq!(sigmask(pid, "SigCgt:") & (1 << (libc::SIGTERM - 1)), 0, "no SIGTERM handler");
    let r = runc_term_then_kill(
        &d,
        &c.pod,
        &c,
        "python3",
        Duration::from_millis(500),
        "python3 as PID 1 with no handler must survive SIGTERM",
    );
    let t2k = r["term_to_kill_seconds"].as_f64().unwrap();
    assert!((0.5..3.0).contains(&t2k), "{r:#}");
    assert_eq!(
        d.metric("container_termination_stop_signal_ignored_total", &[("namespace", &ns)]),
        1.0
    );
}

// ---------------------------------------------------------------------------------------
// 1. shareProcessNamespace: app containers' main processes are not their namespace's init.
// ---------------------------------------------------------------------------------------

/// `pid`'s pid in its own (innermost) pid namespace (`NSpid`).
fn inner_pid(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|v| v.split_whitespace().last().and_then(|p| p.parse().ok()))
        .unwrap()
}

#[test]
fn shared_pid_namespace_app_containers_are_recorded_by_their_main_process() {
    let node = Node::start("sharedpid");
    let d = &node.d;
    let ns = unique("sharedpid");
    let mut pod = node.pod(&ns, "shop-7d4b9c6f8-x2k9p");
    // The sandbox: PID 1 of the pod's pid namespace, in a cgroup of its own.
    let pause = InPod::start(&mut pod, "pause", &Spec::busybox(&["sleep", "1000"]));
    let pause_pid = pause.pid();
    let pidns = format!("/proc/{pause_pid}/ns/pid");
    // A: a handler; B: none (not the namespace's init, so SIGTERM's default action kills
    // it); C: none, stopped by a process of A (a sidecar), not by the runtime.
    let a = InPod::start(
        &mut pod,
        "api",
        &Spec::busybox(&["sh", "-c", "trap 'kill $!; exit 0' TERM; sleep 1000 & wait"])
            .join_namespace("pid", &pidns),
    );
    let b = InPod::start(
        &mut pod,
        "worker",
        &Spec::busybox(&["sleep", "1000"]).join_namespace("pid", &pidns),
    );
    let c = InPod::start(
        &mut pod,
        "cache",
        &Spec::busybox(&["sleep", "1000"]).join_namespace("pid", &pidns),
    );
    let (a_pid, b_pid, c_pid) = (a.pid(), b.pid(), c.pid());
    for p in [a_pid, b_pid, c_pid] {
        assert_eq!(
            std::fs::read_link(format!("/proc/{p}/ns/pid")).unwrap(),
            std::fs::read_link(&pidns).unwrap(),
            "pid {p} shares the sandbox's pid namespace"
        );
        assert_ne!(inner_pid(p), 1, "pid {p} is not the namespace's init");
    }
    wait_shell_waits(a_pid);
    assert_eq!(comm(b_pid), "sleep");
    assert_eq!(comm(c_pid), "sleep");

    // C, stopped by a process of A: `kill` run in A by `runc exec`, C's pid as A sees it.
    let ((before, after), seen) = until_gone(c_pid, || {
        let before = SystemTime::now();
        let status = Command::new("runc")
            .args(["exec", &a.cid, "kill", "-TERM", &inner_pid(c_pid).to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        let after = SystemTime::now();
        assert!(status.success(), "runc exec kill: {status}");
        (before, after)
    });
    let r = one(d, &c.cid);
    eprintln!("cache record: {r:#}");
    main_process(&r, &pod, &c, c_pid, "sleep");
    field(&r, "stop_signal", "SIGTERM");
    between(&r, "stop_signal_at", before, after);
    let s = &r["stop_signal_sender"];
    assert_eq!(s["from"], "other_container", "{r:#}");
    assert_eq!(s["comm"], "kill", "{r:#}");
    assert!(
        s["pid"].as_u64().is_some_and(|p| ![a_pid, b_pid, c_pid, pause_pid].contains(&(p as u32))),
        "{r:#}"
    );
    DEFAULT_ACTION_ENDS_IT.check(&r, seen);

    // A: its handler exits 0.
    runc_stop(d, &pod, &a, "sh", "TERM", &HANDLER_EXITS_0);

    // B: no handler, no init: SIGTERM kills it.
    let r = runc_stop(d, &pod, &b, "sleep", "TERM", &DEFAULT_ACTION_ENDS_IT);
    assert!(r["term_to_exit_seconds"].as_f64().unwrap() < 1.0, "{r:#}");

    // Nothing for the sandbox so far; then runc stops it: init, no handler, SIGTERM dropped.
    none(d, &pause.cid);
    let why = "the sandbox's init has no handler";
    runc_term_then_kill(d, &pod, &pause, "sleep", Duration::from_millis(300), why);
    // One record per container, none more in the namespace.
    in_namespace(d, &ns, 4);
    assert_eq!(d.metric("observer_container_self_signals_total", &[]), 0.0);
    drop((c, b, a, pause));
}

// ---------------------------------------------------------------------------------------
// 2. Nested pid namespaces and nested cgroups inside a container.
// ---------------------------------------------------------------------------------------

/// The container's main shell runs three nested pid namespaces (`unshare -fp`) one after the
/// other, sends SIGTERM (dropped: the nested init has no handler) and SIGKILL to each nested
/// init and reaps it; then one of its processes signals the main process itself three times
/// (each ignored). None of that is a stop by the runtime.
const NESTED_SCRIPT: &str = r#"
trap '' USR1 USR2 HUP
trap 'exit 0' TERM
i=0
while [ $i -lt 3 ]; do
  unshare -fp sleep 1000 & u=$!
  c=
  while [ -z "$c" ]; do c=$(cat /proc/$u/task/$u/children 2>/dev/null); done
  sleep 0.1
  kill -TERM $c
  sleep 0.1
  kill -KILL $c
  wait $u
  i=$((i+1))
done
sh -c 'kill -USR1 1; kill -USR2 1; kill -HUP 1'
sleep 1000 &
wait
"#;

#[test]
fn nested_pid_namespace_inits_and_self_signals_make_no_record() {
    let node = Node::start("nestedpid");
    let d = &node.d;
    let ns = unique("nestedpid");
    let spec = Spec::host(&["sh", "-c", NESTED_SCRIPT]).cap("CAP_SYS_ADMIN");
    let c = Container::start_in(node.pod(&ns, "buildkit-0"), "builder", &spec);
    let pid = c.pid();
    // Done once its last child is the final `sleep 1000` (its handlers are set by then).
    wait_until("the nested namespaces are done", || {
        children(pid).iter().any(|ch| {
            std::fs::read(format!("/proc/{ch}/cmdline")).unwrap_or_default() == b"sleep\x001000\x00"
        })
    });
    wait_until("the main shell waits", || in_wait(pid));
    none(d, &c.cid);
    in_namespace(d, &ns, 0);
    // The three signals to the main process from inside: counted, not recorded (the
    // nested inits are no main processes: their signals are not even counted).
    assert_eq!(d.metric("observer_container_self_signals_total", &[]), 3.0, "{}", d.metrics());

    runc_stop(d, &c.pod, &c, "sh", "TERM", &HANDLER_EXITS_0);
    in_namespace(d, &ns, 1);
}

/// A pid-namespace init started from the host into a cgroup below a running container's
/// (docker-in-docker, a kind node): the cgroup is flagged nested, its init is no main
/// process, its stop makes no record; the container's own stop still does.
#[test]
fn a_nested_cgroup_below_a_container_makes_no_container() {
    let node = Node::start("nestedcg");
    let d = &node.d;
    let ns = unique("nestedcg");
    let c = Container::start_in(
        node.pod(&ns, "kind-0"),
        "node",
        &Spec::busybox(&["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"]),
    );
    let pid = c.pid();
    wait_shell_waits(pid);
    let nested_rel = format!("{}/nested", c.pod.container_cgroup(&c.cid));
    let nested = observer_tests::cgroup_v2_root().join(nested_rel.trim_start_matches('/'));
    let inner = observer_tests::NsInit::spawn(
        &nested,
        &["busybox", "sh", "-c", "trap 'exit 0' TERM; busybox sleep 1000 & wait"],
    )
    .unwrap();
    inner.wait_handler(libc::SIGTERM).unwrap();
    inner.signal(libc::SIGTERM);
    inner.wait_exit(WAIT).unwrap();
    let inner_pid = inner.pid;
    drop(inner);
    none(d, &c.cid);
    let stray: Vec<Value> = d
        .records()
        .into_iter()
        .filter(|r| r["pid"] == inner_pid || r["cgroup"] == nested_rel.as_str())
        .collect();
    assert!(stray.is_empty(), "{stray:#?}");
    assert_eq!(d.metric("observer_nested_cgroups_total", &[]), 1.0, "{}", d.metrics());

    runc_stop(d, &c.pod, &c, "sh", "TERM", &HANDLER_EXITS_0);
    in_namespace(d, &ns, 1);
}

/// A process in a cgroup below the container's own (a supervisor's sub-cgroup, crun's
/// `container`) signalling the main process is the container itself: counted, no record, and
/// it does not take the runtime's stop signal's place (the kernel decides before its
/// one-per-second de-duplication): runc's SIGTERM right after still opens the record.
#[test]
fn a_signal_from_a_sub_cgroup_is_the_containers_own_and_takes_no_slot() {
    let node = Node::start("subcg");
    let d = &node.d;
    let ns = unique("subcg");
    let c = Container::start_in(node.pod(&ns, "api-0"), "api", &Spec::busybox(&["sleep", "1000"]));
    let pid = c.pid();
    let sub = observer_tests::cgroup_v2_root()
        .join(c.pod.container_cgroup(&c.cid).trim_start_matches('/'))
        .join("supervisor");
    std::fs::create_dir(&sub).unwrap();
    let script =
        format!("echo $$ > {}/cgroup.procs && exec busybox kill -TERM {pid}", sub.display());
    let status = Command::new("busybox").args(["sh", "-c", &script]).status().unwrap();
    assert!(status.success(), "the sub-cgroup's kill: {status}");
    std::fs::remove_dir(&sub).unwrap();
    // The init with no handler dropped it; now the runtime stops it, within the same second.
    let r = runc_term_then_kill(
        d,
        &c.pod,
        &c,
        "sleep",
        Duration::from_millis(300),
        "an init drops SIGTERM",
    );
    eprintln!("{r:#}");
    assert_eq!(d.metric("observer_container_self_signals_total", &[]), 1.0, "{}", d.metrics());
    in_namespace(d, &ns, 1);
}

// ---------------------------------------------------------------------------------------
// 5. Containers created before the daemon, in every cgroup layout kubelet makes.
// ---------------------------------------------------------------------------------------

/// A directory removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn predates_the_daemon(layout: Layout, qos: &'static str, root: &str) {
    let log_root = TempDir(std::env::temp_dir().join(unique("observer-it-before-")));
    let ns = unique("before");
    let pod = Pod::new(&log_root.0, &ns, "cache-0")
        .with_layout(layout)
        .with_qos(qos)
        .with_kubelet_cgroup_root(root);
    let cgroup_root = pod.daemon_cgroup_root();
    let c = Container::start_in(pod, "redis", &Spec::busybox(&["sleep", "1000"]));
    let pid = c.pid();
    assert!(
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap()
            .lines()
            .any(|l| l.starts_with("0::") && l.ends_with(&c.pod.container_cgroup(&c.cid))),
        "runc put the container in {}",
        c.pod.container_cgroup(&c.cid)
    );
    let d = Daemon::start_with(Some(&log_root.0), &["--cgroup-root", &cgroup_root]);
    let watched = d.metric("observer_watched_cgroups", &[]);
    assert!(
        watched >= 1.0,
        "the start-up walk found no container:\n{}\n{}",
        observer_metrics(&d),
        d.log()
    );
    eprintln!("{layout:?} {qos} {root}");
    let why = "busybox sleep as PID 1 ignores SIGTERM";
    runc_term_then_kill(&d, &c.pod, &c, "sleep", Duration::from_millis(300), why);
    in_namespace(&d, &ns, 1);
    drop(c);
    drop(d);
}

#[test]
fn predates_the_daemon_cgroupfs_besteffort() {
    predates_the_daemon(Layout::Cgroupfs, "besteffort", "/");
}

#[test]
fn predates_the_daemon_cgroupfs_guaranteed() {
    predates_the_daemon(Layout::Cgroupfs, "guaranteed", "/");
}

#[test]
fn predates_the_daemon_systemd_burstable() {
    predates_the_daemon(Layout::Systemd, "burstable", "/");
}

#[test]
fn predates_the_daemon_systemd_guaranteed() {
    predates_the_daemon(Layout::Systemd, "guaranteed", "/");
}

#[test]
fn predates_the_daemon_systemd_besteffort_under_kubelet_cgroup_root() {
    predates_the_daemon(Layout::Systemd, "besteffort", "/kubelet");
}

// ---------------------------------------------------------------------------------------
// 6. Many short-lived containers, and a main process's pid reused.
// ---------------------------------------------------------------------------------------

/// 200 runc containers, one after the other, each started, stopped by `runc kill TERM` (its
/// handler exits 0) and deleted: 200 records, each with its own container id, the pid runc
/// reported for it and the runc process that stopped it.
#[test]
fn two_hundred_sequential_runc_containers_get_their_own_records() {
    const N: usize = 200;
    let node = Node::start("churn");
    let d = &node.d;
    let ns = unique("churn");
    let mut pod = node.pod(&ns, "jobs-7d4b9c6f8-x2k9p");
    let spec = Spec::busybox(&["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"]);
    let t0 = Instant::now();
    // container id -> (main pid, runc kill, when the test saw the main process gone)
    let mut want: HashMap<String, (u32, Sent, SystemTime)> = HashMap::new();
    // The daemon's orphan_exit count (a main process exited with no signal) at each
    // container's start: should a record be missing, whether the daemon took another process
    // for that container's main (it is counted within a cycle or two, the pipeline is async).
    let orphans =
        |d: &Daemon| d.metric("observer_correlation_unmatched_total", &[("reason", "orphan_exit")]);
    let mut orphan_counts: Vec<f64> = Vec::new();
    let mut order: Vec<String> = Vec::new();
    for i in 0..N {
        orphan_counts.push(orphans(d));
        let c = InPod::start(&mut pod, &format!("c{i}"), &spec);
        order.push(c.cid.clone());
        let pid = c.pid();
        wait_shell_waits(pid);
        let (sent, seen) = until_gone(pid, || c.runc.signal("TERM").unwrap());
        assert!(want.insert(c.cid.clone(), (pid, sent, seen)).is_none());
        drop(c);
    }
    eprintln!("{N} runc containers started and stopped in {:?}", t0.elapsed());
    let ids: HashSet<String> = want.keys().cloned().collect();
    // Pids may repeat (the node's pid counter wraps): records are matched by container id,
    // each against the pid runc reported for it.
    let ours = |r: &Value| r["container_id"].as_str().is_some_and(|c| ids.contains(c));
    let recs = settled(d, N, Duration::from_secs(30), ours);
    if recs.len() != N {
        let got: HashSet<&str> = recs.iter().filter_map(|r| r["container_id"].as_str()).collect();
        let missing: Vec<(&String, &(u32, Sent, SystemTime))> =
            want.iter().filter(|(c, _)| !got.contains(c.as_str())).collect();
        let missing_pids: HashSet<u32> = missing.iter().map(|(_, (p, ..))| *p).collect();
        let missing_at: Vec<usize> = order
            .iter()
            .enumerate()
            .filter(|(_, c)| !got.contains(c.as_str()))
            .map(|(i, _)| i)
            .collect();
        orphan_counts.push(orphans(d));
        let orphan_cycles: Vec<usize> =
            (0..N).filter(|&i| orphan_counts[i + 1] > orphan_counts[i]).collect();
        let by_pid: Vec<Value> = d
            .records()
            .into_iter()
            .filter(|r| r["pid"].as_u64().is_some_and(|p| missing_pids.contains(&(p as u32))))
            .collect();
        panic!(
            "{} of {N} records; no record for (container id, (pid, runc kill, exit seen)) \
             {missing:?}; \
             records of those pids: {by_pid:#?}\nmissing: containers {missing_at:?}; cycles \
             in which orphan_exit rose: {orphan_cycles:?}\n{}\ndaemon log:\n{}",
            recs.len(),
            observer_metrics(d),
            d.log()
        );
    }
    // One record per container, none more.
    in_namespace(d, &ns, N);
    let mut recorded = HashSet::new();
    for r in &recs {
        let cid = r["container_id"].as_str().unwrap();
        assert!(recorded.insert(cid.to_string()), "two records for {cid}: {r:#}");
        let (pid, sent, seen) = want[cid];
        field(r, "pid", pid);
        field(r, "comm", "sh");
        field(r, "namespace", ns.as_str());
        field(r, "pod", pod.name.as_str());
        field(r, "cgroup", pod.container_cgroup(cid));
        stopped_by(r, "SIGTERM", &sent);
        HANDLER_EXITS_0.check(r, seen);
    }
    let l = [("namespace", ns.as_str())];
    assert_eq!(
        d.metric("container_terminations_total", &[l[0], ("outcome", "graceful")]),
        N as f64
    );
    assert_eq!(d.metric("observer_events_lost_total", &[]), 0.0, "{}", observer_metrics(d));
}

/// A runc container made with `runc create` (its init waits on runc's exec fifo, nothing is
/// exec'd yet) and started with `runc start`: what lets a test see the main process's pid
/// before it exists as a main process. Deleted (and its bundle removed) on drop.
struct Created {
    id: String,
    bundle: std::path::PathBuf,
}

impl Created {
    /// A busybox-static bundle running `args` in `cgroups_path`, created as `id`.
    fn new(id: &str, cgroups_path: &str, args: &[&str]) -> Self {
        let bundle = std::env::temp_dir().join(format!("observer-identity-bundle-{id}"));
        let me = Self { id: id.into(), bundle: bundle.clone() };
        let rootfs = bundle.join("rootfs");
        for d in ["bin", "proc", "dev", "sys", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("busybox-static is installed");
        std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
        for applet in ["sh", "sleep"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        let out = Command::new("runc")
            .args(["spec", "--bundle"])
            .arg(&bundle)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "runc spec: {}", String::from_utf8_lossy(&out.stderr));
        let path = bundle.join("config.json");
        let mut spec: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        spec["process"]["terminal"] = Value::Bool(false);
        spec["process"]["args"] = args.iter().map(|a| Value::String((*a).into())).collect();
        spec["root"]["readonly"] = Value::Bool(true);
        spec["linux"]["cgroupsPath"] = Value::String(cgroups_path.into());
        std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
        me
    }

    /// `runc create`: the container's init, waiting on the exec fifo; returns its host pid.
    fn create(&self) -> u32 {
        let status = Command::new("runc")
            .args(["create", "--bundle"])
            .arg(&self.bundle)
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "runc create {}: {status}", self.id);
        let out = Command::new("runc").args(["state", &self.id]).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["pid"].as_u64().unwrap() as u32
    }

    fn start(&self) {
        let status = Command::new("runc").args(["start", &self.id]).status().unwrap();
        assert!(status.success(), "runc start {}: {status}", self.id);
    }

    fn signal(&self, sig: &str) -> Sent {
        let before = SystemTime::now();
        let child = Command::new("runc")
            .args(["kill", &self.id, sig])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let runc_pid = child.id();
        let out = child.wait_with_output().unwrap();
        let after = SystemTime::now();
        assert!(out.status.success(), "runc kill {} {sig}", self.id);
        Sent { runc_pid, before, after }
    }

    /// `runc delete --force`.
    fn delete(&self) {
        let _ = Command::new("runc").args(["delete", "--force", &self.id]).output();
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        self.delete();
        let _ = std::fs::remove_dir_all(&self.bundle);
    }
}

/// `/proc/<pid>/stat`'s start time (clock ticks since boot), the second half of the kernel's
/// process identity.
fn start_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    after_comm.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// Makes the host's next pid `pid` (as CRIU does): the kernel allocates `ns_last_pid + 1`
/// next, unless another process forks first (callers check, and try again).
fn next_pid_is(pid: u32) {
    std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
}

/// A main process's pid reused: container A's main process (pid P) is stopped and recorded;
/// then container B's init is created until the kernel gives it P (the host's next pid set
/// through `ns_last_pid`, `runc create` repeated: a created container never exec'd is no
/// container yet), and started: B's main process is P with another start time. Its stop makes
/// one record, B's; A keeps its one. Then a host process at P is signalled: nothing.
#[test]
fn a_reused_pid_is_a_new_main_process() {
    let d = Daemon::start();
    let ns = unique("pidreuse");
    let mut pod = Pod::new(&d.log_root, &ns, "jobs-7d4b9c6f8-x2k9p");
    let args = ["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"];
    let a = InPod::start(&mut pod, "a", &Spec::busybox(&args));
    let a_cid = a.cid.clone();
    let p = a.pid();
    wait_shell_waits(p);
    let a_start = start_ticks(p);
    let (sent_a, _) = until_gone(p, || a.runc.signal("TERM").unwrap());
    drop(a);
    let ra = one(&d, &a_cid);
    field(&ra, "pid", p);
    runc_sender(&ra, "stop_signal_sender", &sent_a);

    let (b_cid, _) = pod.container("b");
    let b = Created::new(&b_cid, &pod.container_cgroup(&b_cid), &args);
    // runc's own processes and threads come first: aim that many pids below P.
    let mut offset: i64 = 0;
    let mut placed = false;
    // Tests running beside this one take pids too: aim again until P is hit, for a while.
    let deadline = Instant::now() + Duration::from_secs(60);
    for attempt in 0.. {
        if Instant::now() > deadline {
            break;
        }
        let aim = (i64::from(p) - offset).max(300) as u32;
        next_pid_is(aim);
        let got = b.create();
        if got == p {
            placed = true;
            eprintln!("B's init got pid {p} at attempt {attempt}");
            break;
        }
        b.delete();
        // The next attempt aims so that runc's init lands on P, given where this one landed.
        offset = (offset + i64::from(got) - i64::from(p)).clamp(0, 2000);
    }
    assert!(placed, "the kernel never gave B's init pid {p} in 60 s of attempts");
    b.start();
    wait_shell_waits(p);
    assert_ne!(start_ticks(p), a_start, "same pid, another process");
    let (sent_b, seen) = until_gone(p, || b.signal("TERM"));
    let rb = one(&d, &b_cid);
    eprintln!("B record: {rb:#}");
    field(&rb, "pid", p);
    field(&rb, "comm", "sh");
    field(&rb, "container", "b");
    field(&rb, "namespace", ns.as_str());
    field(&rb, "cgroup", pod.container_cgroup(&b_cid));
    stopped_by(&rb, "SIGTERM", &sent_b);
    HANDLER_EXITS_0.check(&rb, seen);
    drop(b);

    // A host process at P: no container's, whatever the kernel once knew of P.
    let mut host = None;
    for _ in 0..200 {
        next_pid_is(p);
        let child =
            Command::new("busybox").args(["sleep", "1000"]).stdin(Stdio::null()).spawn().unwrap();
        if child.id() == p {
            host = Some(child);
            break;
        }
        let mut child = child;
        observer_tests::stop_child(&mut child);
    }
    let mut host = host.unwrap_or_else(|| panic!("pid {p} never came back for a host process"));
    // SAFETY: our own child, by pid.
    unsafe { libc::kill(p as i32, libc::SIGTERM) };
    host.wait().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let all = of_pid(&d, p);
    assert_eq!(all.len(), 2, "A's and B's records only: {all:#?}");
    in_namespace(&d, &ns, 2);
}
