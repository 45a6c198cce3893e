//! Exec sessions at the stop as the daemon sees them with a real runtime and no metadata:
//! `runc exec` into a runc container (what containerd does for kubelet's ExecSync), then
//! `runc kill`. Without kubelet's annotations nothing says a session is the preStop hook, so
//! it is reported as a session, never as a hook or an overrun; sessions long before the stop
//! are nothing. The confirmed hooks, with metadata, are `drill_cri.rs`'s (through the CRI).

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use observer_tests::{by_id, observer_bin, runc_container, unique, wait_handler, Daemon};
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
    let out = Command::new(observer_bin())
        .arg("report")
        .arg("--journal")
        .arg(&d.journal)
        .args(["--namespace", ns])
        .output()
        .expect("observer report");
    assert!(out.status.success(), "report: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
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

/// The case: a session running at the stop signal, the stop signal and SIGKILL sent
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
