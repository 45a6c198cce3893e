//! Exec sessions at the stop as the daemon sees them with a real runtime and no metadata:
//! `runc exec` into a runc container (what containerd does for kubelet's ExecSync), then
//! `runc kill`. Without kubelet's annotations nothing says a session is the preStop hook, so
//! it is reported as a session, never as a hook or an overrun; sessions long before the stop
//! are nothing. The confirmed hooks, with metadata, are `drill_cri.rs`'s (through the CRI).

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use observer_tests::{by_id, runc_container, unique, wait_handler, Daemon, Pod, Spec};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

/// `runc exec ID ARGS` to its end, as ExecSync runs a hook.
fn runc_exec(id: &str, args: &[&str]) {
    let status = Command::new("runc")
        .args(["exec", id])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "runc exec {args:?}: {status}");
}

/// `observer report` of `d`'s journal, for namespace `ns`.
fn report_text(d: &Daemon, ns: &str) -> String {
    d.report(&["--namespace", ns])
}

/// Without metadata (runc alone: no grace period, no preStopHandler) an exec session that
/// returned right before the stop signal is reported as a session, with its kernel times:
/// it may be the hook, a `kubectl exec` or an exec probe. An exec long before is nothing.
#[test]
fn an_exec_session_that_returned_before_the_stop_signal_is_a_session_with_its_times() {
    let d = Daemon::start();
    let ns = unique("hook");
    let (pod, cid, runc) = runc_container(
        &d,
        &ns,
        "shop-7d4b9c6f8-x2k9p",
        &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
    );
    wait_handler(runc.pid().unwrap(), libc::SIGTERM).unwrap();
    // An exec long before the stop (an exec probe, say) is not a candidate.
    runc_exec(&runc.id, &["true"]);
    std::thread::sleep(Duration::from_millis(1500));
    let t0 = Instant::now();
    runc_exec(&runc.id, &["sleep", "1"]);
    let hook = t0.elapsed().as_secs_f64();
    runc.kill("TERM").unwrap();
    let r = &d.wait_records(1, WAIT, by_id(&cid))[0];
    assert_eq!(r["outcome"], "graceful");
    assert_eq!(r["grace_period_seconds"], Value::Null, "no metadata: {r:#}");
    let p = &r["prestop"];
    assert_eq!(p["kind"], "session", "{r:#}");
    assert_eq!(p["comm"], "sleep");
    assert_eq!(p["overrun"], false);
    let dur = p["duration_seconds"].as_f64().unwrap();
    // The kernel's exec -> exit lies inside what `runc exec` took end to end.
    assert!(dur >= 1.0 && dur <= hook, "session {dur} s, runc exec {hook} s");
    // No preStop series counts what is not known to be the hook.
    let labels = [("namespace", ns.as_str())];
    assert_eq!(d.metric("container_termination_prestop_duration_seconds_count", &labels), 0.0);
    assert_eq!(d.metric("container_termination_prestop_overruns_total", &labels), 0.0);
    drop(runc);
    drop(pod);
}

/// The issue's case: a session running at the stop signal, the stop signal and SIGKILL sent
/// by hand (15 ms apart, and 2 s apart), no metadata. Neither window is kubelet's floor to
/// judge by, and the session is not known to be a hook: never an overrun, and the report
/// says nothing of a preStop.
#[test]
fn a_session_running_at_a_hand_stop_is_never_an_overrun() {
    let d = Daemon::start();
    let ns = unique("handstop");
    for (n, gap) in [Duration::from_millis(15), Duration::from_secs(2)].into_iter().enumerate() {
        let (pod, cid, runc) =
            runc_container(&d, &ns, &format!("shop-7d4b9c6f8-x2k9{n}"), &["sleep", "1000"]);
        let mut session = Command::new("runc")
            .args(["exec", &runc.id, "sleep", "30"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        runc.kill("TERM").unwrap();
        std::thread::sleep(gap);
        runc.kill("KILL").unwrap();
        // The kernel ended the session with the container.
        let _ = session.wait();
        let r = &d.wait_records(1, WAIT, by_id(&cid))[0];
        assert_eq!(r["outcome"], "killed", "{r:#}");
        let p = &r["prestop"];
        assert_eq!(p["kind"], "session", "{r:#}");
        assert_eq!(p["comm"], "sleep");
        assert_eq!(p["overrun"], false, "{r:#}");
        assert!(p["pid"].is_u64() && p["pid"] != r["pid"], "{p:#}");
        drop(runc);
        drop(pod);
    }
    let labels = [("namespace", ns.as_str())];
    assert_eq!(d.metric("container_termination_prestop_overruns_total", &labels), 0.0);
    assert_eq!(d.metric("container_termination_prestop_duration_seconds_count", &labels), 0.0);
    let text = report_text(&d, &ns);
    assert!(!text.contains("preStop"), "no preStop in the report:\n{text}");
    assert!(text.contains("slow shutdown") || text.contains("ignored"), "{text}");
}

/// An exec session that re-execs itself without end (an exec probe's script calling itself, a
/// wrapper loop): the kernel reports a program again only when it changes, and at most
/// `MAX_SESSION_EXECS` of a session's programs; the rest are counted. The record still names
/// the session. The host's own programs (dash, env): busybox re-execs its applets through
/// /proc/self/exe, which makes every program the same to the kernel.
#[test]
fn a_session_re_execing_itself_is_reported_a_bounded_number_of_times() {
    let d = Daemon::start();
    let ns = unique("reexec");
    let mut pod = Pod::new(&d.log_root, &ns, "probe-7d4b9c6f8-x2k9p");
    let (cid, _) = pod.container("main");
    let runc = Spec::host(&["sleep", "1000"]).run(&cid, &pod.container_cgroup(&cid)).unwrap();
    runc.wait_running(WAIT).unwrap();
    let repeats = || d.metric("observer_exec_session_repeats_total", &[]);
    let capped = || d.metric("observer_events_lost_total", &[("stage", "exec_session_programs")]);
    let (repeats0, capped0) = (repeats(), capped());
    // 200 execs of `sh` by `sh`: the same program each time.
    let same = r#"n=${1:-0}; [ "$n" -ge 200 ] && exit 0; exec sh -c "$0" "$0" $((n+1))"#;
    runc_exec(&runc.id, &["sh", "-c", same, same, "0"]);
    // 100 rounds of `env` -> `sh`: a new program at every exec, 200 of them.
    let alternating = r#"n=${1:-0}; [ "$n" -ge 100 ] && exit 0; exec env sh -c "$0" "$0" $((n+1))"#;
    runc_exec(&runc.id, &["sh", "-c", alternating, alternating, "0"]);
    let deadline = Instant::now() + WAIT;
    while repeats() - repeats0 < 200.0 || capped() - capped0 < 193.0 {
        assert!(Instant::now() < deadline, "{}", d.metrics());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (r, c) = (repeats() - repeats0, capped() - capped0);
    eprintln!("re-execs not emitted: {r}; programs past the cap: {c}");
    // Exactly: the first session's 200 re-execs of `sh`; the second's 200 execs of a new
    // program (`env`, `sh`, `env`, ...) after its first, of which 7 are reported.
    assert_eq!((r, c), (200.0, 193.0));
    // A session running at the stop is named by what the kernel reported.
    let mut sleeper = Command::new("runc")
        .args(["exec", &runc.id, "sleep", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    runc.kill("TERM").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    runc.kill("KILL").unwrap();
    let _ = sleeper.wait();
    let rec = &d.wait_records(1, WAIT, by_id(&cid))[0];
    assert_eq!(rec["prestop"]["kind"], "session", "{rec:#}");
    assert_eq!(rec["prestop"]["comm"], "sleep", "{rec:#}");
    drop(runc);
    drop(pod);
}
