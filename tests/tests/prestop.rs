//! preStop exec hooks as the daemon sees them with a real runtime: `runc exec` into a runc
//! container (what containerd does for kubelet's ExecSync), then `runc kill`, as kubelet's
//! sequence does. Exec probes and other sessions long before the stop are not hooks.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use observer_tests::{by_id, runc_container, unique, wait_handler, Daemon};

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

#[test]
fn runc_exec_hook_that_returns_before_the_stop_signal() {
    let d = Daemon::start();
    let ns = unique("hook");
    let (pod, cid, runc) = runc_container(
        &d,
        &ns,
        "shop-7d4b9c6f8-x2k9p",
        &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
    );
    wait_handler(runc.pid().unwrap(), libc::SIGTERM).unwrap();
    // An exec long before the stop (an exec probe, say) is not the hook.
    runc_exec(&runc.id, &["true"]);
    std::thread::sleep(Duration::from_millis(1500));
    let t0 = Instant::now();
    runc_exec(&runc.id, &["sleep", "1"]);
    let hook = t0.elapsed().as_secs_f64();
    runc.kill("TERM").unwrap();
    let r = &d.wait_records(1, WAIT, by_id(&cid))[0];
    assert_eq!(r["outcome"], "graceful");
    let p = &r["prestop"];
    assert_eq!(p["kind"], "exec", "{r:#}");
    assert_eq!(p["comm"], "sleep");
    assert_eq!(p["overrun"], false);
    let dur = p["duration_seconds"].as_f64().unwrap();
    // The kernel's exec -> exit lies inside what `runc exec` took end to end.
    assert!(dur >= 1.0 && dur <= hook, "hook {dur} s, runc exec {hook} s");
    let labels = [("namespace", ns.as_str())];
    assert_eq!(d.metric("container_termination_prestop_duration_seconds_count", &labels), 1.0);
    assert_eq!(d.metric("container_termination_prestop_overruns_total", &labels), 0.0);
    drop(runc);
    drop(pod);
}

#[test]
fn runc_exec_hook_still_running_at_the_stop_signal_overran() {
    let d = Daemon::start();
    let ns = unique("hookover");
    let (pod, cid, runc) = runc_container(&d, &ns, "shop-7d4b9c6f8-x2k9p", &["sleep", "1000"]);
    let mut hook = Command::new("runc")
        .args(["exec", &runc.id, "sleep", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // The grace period ran out during the hook: stop signal, SIGKILL 2 s later.
    runc.kill("TERM").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    runc.kill("KILL").unwrap();
    // The kernel ended the hook with the container.
    let _ = hook.wait();
    let r = &d.wait_records(1, WAIT, by_id(&cid))[0];
    assert_eq!(r["outcome"], "killed");
    let p = &r["prestop"];
    assert_eq!(p["kind"], "exec", "{r:#}");
    assert_eq!(p["comm"], "sleep");
    assert_eq!(p["overrun"], true);
    assert!(p["pid"].is_u64() && p["pid"] != r["pid"], "{p:#}");
    let labels = [("namespace", ns.as_str())];
    assert_eq!(d.metric("container_termination_prestop_overruns_total", &labels), 1.0);
    drop(runc);
    drop(pod);
}
