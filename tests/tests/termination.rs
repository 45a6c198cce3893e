//! The core timeline, end to end on the real kernel: real processes as PID 1 of real pid
//! namespaces in kubepods cgroups, and real runc containers. Each test asserts the journal
//! record's fields and the metric values of its own namespace.

use std::time::{Duration, Instant};

use observer_tests::{
    args, by_id, cgroup_v2_root, close_to, graceful_inits, handler_exits, runc_container, unique,
    Daemon, MemoryLimit, NsInit, Pod, MEMORY_HOG,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

#[test]
fn pid1_without_handler_drops_sigterm_and_needs_sigkill() {
    let d = Daemon::start();
    let ns = unique("noh");
    let mut pod = Pod::new(&d.log_root, &ns, "web-7d4b9c6f8-x2k9p");
    let (cid, cg) = pod.container("app");
    let p = NsInit::spawn(&cg, &["busybox", "sleep", "1000"]).unwrap();
    let t_term = p.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    assert!(p.alive(), "PID 1 with no handler must survive SIGTERM");
    let t_kill = p.signal(libc::SIGKILL);
    let t_exit = p.wait_exit(WAIT).unwrap();
    let r = &d.wait_records(1, WAIT, by_id(&cid))[0];

    assert_eq!(r["namespace"], ns.as_str());
    assert_eq!(r["pod"], "web-7d4b9c6f8-x2k9p");
    assert_eq!(r["workload"], "web");
    assert_eq!(r["container"], "app");
    assert_eq!(r["pod_uid"], pod.uid.as_str());
    assert_eq!(r["pid"], p.pid);
    assert_eq!(r["comm"], "busybox");
    assert_eq!(r["outcome"], "killed");
    assert_eq!(r["stop_signal"], "SIGTERM");
    assert_eq!(r["stop_signal_ignored"], true);
    assert_eq!(r["stop_signal_disposition"], Value::Null, "never delivered");
    assert_eq!(r["stop_signal_handler"], "default");
    assert_eq!(r["exit_signal"], "SIGKILL");
    assert_eq!(r["exit_code"], Value::Null);
    assert!(r["sigkill_at"].is_string() && r["stop_signal_at"].is_string());
    assert_eq!(r["stop_signal_sender"]["pid"], std::process::id());
    // Nothing entered the container from outside while it stopped: no preStop.
    assert_eq!(r["prestop"], Value::Null, "{r:#}");
    close_to(
        r["term_to_kill_seconds"].as_f64().unwrap(),
        (t_kill - t_term).as_secs_f64(),
        "term->kill",
    );
    close_to(
        r["term_to_exit_seconds"].as_f64().unwrap(),
        (t_exit - t_term).as_secs_f64(),
        "term->exit",
    );

    let l = [("namespace", ns.as_str())];
    assert_eq!(
        d.metric(
            "container_terminations_total",
            &[l[0], ("outcome", "killed"), ("workload", "web"), ("container", "app")]
        ),
        1.0
    );
    assert_eq!(d.metric("container_termination_stop_signal_ignored_total", &l), 1.0);
    assert_eq!(d.metric("container_termination_term_to_kill_seconds_count", &l), 1.0);
    assert_eq!(d.metric("container_termination_term_to_exit_seconds_count", &l), 1.0);
}

#[test]
fn handler_that_exits_is_graceful_and_keeps_the_exit_code() {
    let d = Daemon::start();
    let ns = unique("graceful");
    let mut pod = Pod::new(&d.log_root, &ns, "api-0");
    let (cid, cg) = pod.container("api");
    let p = NsInit::spawn(&cg, &args(&handler_exits(3))).unwrap();
    p.wait_handler(libc::SIGTERM).unwrap();
    let t_term = p.signal(libc::SIGTERM);
    let t_exit = p.wait_exit(WAIT).unwrap();
    let r = &d.wait_records(1, WAIT, by_id(&cid))[0];
    assert_eq!(r["outcome"], "graceful");
    assert_eq!(r["workload"], "api", "StatefulSet pod api-0");
    assert_eq!(r["exit_code"], 3);
    assert_eq!(r["exit_signal"], Value::Null);
    assert_eq!(r["stop_signal_ignored"], false);
    assert_eq!(r["stop_signal_disposition"], "handled");
    assert_eq!(r["sigkill_at"], Value::Null);
    assert_eq!(r["term_to_kill_seconds"], Value::Null);
    close_to(
        r["term_to_exit_seconds"].as_f64().unwrap(),
        (t_exit - t_term).as_secs_f64(),
        "term->exit",
    );
    let l = [("namespace", ns.as_str())];
    assert_eq!(d.metric("container_terminations_total", &[l[0], ("outcome", "graceful")]), 1.0);
    assert_eq!(d.metric("container_termination_stop_signal_ignored_total", &l), 0.0);
    assert_eq!(d.metric("container_termination_term_to_kill_seconds_count", &l), 0.0);
}

#[test]
fn sig_ign_is_told_apart_from_no_handler() {
    let d = Daemon::start();
    let ns = unique("sigign");
    let mut pod = Pod::new(&d.log_root, &ns, "worker-5f6d7c8b9-abcde");
    let (cid, cg) = pod.container("worker");
    let p = NsInit::spawn(&cg, &["busybox", "sh", "-c", "trap '' TERM; busybox sleep 1000 & wait"])
        .unwrap();
    p.wait_handler(libc::SIGTERM).unwrap();
    p.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    assert!(p.alive());
    p.signal(libc::SIGKILL);
    p.wait_exit(WAIT).unwrap();
    let r = &d.wait_records(1, WAIT, by_id(&cid))[0];
    assert_eq!(r["outcome"], "killed");
    assert_eq!(r["stop_signal_ignored"], true);
    assert_eq!(r["stop_signal_handler"], "ignored");
    assert_eq!(r["stop_signal_disposition"], Value::Null);
    assert_eq!(
        d.metric("container_termination_stop_signal_ignored_total", &[("namespace", &ns)]),
        1.0
    );
}

#[test]
fn slow_handler_interval_matches_the_test_clock() {
    let d = Daemon::start();
    let ns = unique("slow");
    let mut pod = Pod::new(&d.log_root, &ns, "db-0");
    let (cid, cg) = pod.container("db");
    let p = NsInit::spawn(
        &cg,
        &[
            "busybox",
            "sh",
            "-c",
            "trap 'busybox sleep 0.7; exit 0' TERM; busybox sleep 1000 & wait",
        ],
    )
    .unwrap();
    p.wait_handler(libc::SIGTERM).unwrap();
    let t_term = p.signal(libc::SIGTERM);
    let t_exit = p.wait_exit(WAIT).unwrap();
    let r = &d.wait_records(1, WAIT, by_id(&cid))[0];
    let kernel = r["term_to_exit_seconds"].as_f64().unwrap();
    assert!(kernel >= 0.7, "{kernel}");
    close_to(kernel, (t_exit - t_term).as_secs_f64(), "term->exit");
    assert_eq!(r["outcome"], "graceful");
    assert_eq!(r["exit_code"], 0);
    // The histogram put it in the (0.5, 1] bucket.
    let l = [("namespace", ns.as_str())];
    assert_eq!(
        d.metric("container_termination_term_to_exit_seconds_bucket", &[l[0], ("le", "0.5")]),
        0.0
    );
    assert_eq!(
        d.metric("container_termination_term_to_exit_seconds_bucket", &[l[0], ("le", "1")]),
        1.0
    );
}

#[test]
fn sigkill_without_stop_signal() {
    let d = Daemon::start();
    let ns = unique("force");
    let mut pod = Pod::new(&d.log_root, &ns, "batch-28340160-4sxv9");
    let (cid, cg) = pod.container("job");
    let p = NsInit::spawn(&cg, &["busybox", "sleep", "1000"]).unwrap();
    p.signal(libc::SIGKILL);
    p.wait_exit(WAIT).unwrap();
    let r = &d.wait_records(1, WAIT, by_id(&cid))[0];
    assert_eq!(r["outcome"], "killed_without_stop_signal");
    assert_eq!(r["workload"], "batch", "CronJob pod");
    assert_eq!(r["stop_signal"], Value::Null);
    assert_eq!(r["term_to_exit_seconds"], Value::Null);
    assert!(r["sigkill_at"].is_string());
    assert_eq!(
        d.metric(
            "container_terminations_total",
            &[("namespace", &ns), ("outcome", "killed_without_stop_signal")]
        ),
        1.0
    );
    assert_eq!(
        d.metric("container_termination_term_to_exit_seconds_count", &[("namespace", &ns)]),
        0.0
    );
}

#[test]
fn host_processes_are_never_container_terminations() {
    let d = Daemon::start();
    // A plain host process, and a pid-namespace init outside kubepods.
    let mut host = std::process::Command::new("busybox").args(["sleep", "1000"]).spawn().unwrap();
    let outside = cgroup_v2_root().join(unique("observer-it-outside-"));
    let ns_outside = NsInit::spawn(&outside, &["busybox", "sleep", "1000"]).unwrap();
    // SAFETY: our own child, by pid.
    unsafe { libc::kill(host.id() as i32, libc::SIGTERM) };
    host.wait().unwrap();
    ns_outside.signal(libc::SIGTERM);
    ns_outside.signal(libc::SIGKILL);
    ns_outside.wait_exit(WAIT).unwrap();
    // A pod container stopped after them: once its record is written, theirs would have been.
    let ns = unique("marker");
    let mut pod = Pod::new(&d.log_root, &ns, "marker");
    let (cid, cg) = pod.container("m");
    let p = NsInit::spawn(&cg, &["busybox", "sleep", "1000"]).unwrap();
    p.signal(libc::SIGKILL);
    p.wait_exit(WAIT).unwrap();
    d.wait_records(1, WAIT, by_id(&cid));
    let pids = [host.id(), ns_outside.pid];
    let stray: Vec<Value> =
        d.records().into_iter().filter(|r| pids.iter().any(|p| r["pid"] == *p)).collect();
    assert!(stray.is_empty(), "host processes recorded: {stray:#?}");
}

/// OOM: a memory limit on the container's cgroup (v1 memory controller on hybrid hosts, v2
/// memory.max on unified ones) and a PID 1 that doubles a string until it is killed.
#[test]
fn oom_kill_is_not_a_grace_period_kill() {
    let d = Daemon::start();
    let ns = unique("oom");
    let mut pod = Pod::new(&d.log_root, &ns, "hog-7d4b9c6f8-x2k9p");
    let (cid, cg) = pod.container("hog");
    let limit = MemoryLimit::new(&cg, 32 << 20);
    let p = NsInit::spawn_in(&cg, &limit.extra(), MEMORY_HOG).unwrap();
    p.wait_exit(Duration::from_secs(60)).unwrap();
    let r = &d.wait_records(1, WAIT, by_id(&cid))[0];
    assert_eq!(r["outcome"], "oom_killed", "{r:#}");
    assert_eq!(r["exit_signal"], "SIGKILL");
    assert_eq!(r["stop_signal"], Value::Null);
    assert_eq!(
        d.metric("container_terminations_total", &[("namespace", &ns), ("outcome", "oom_killed")]),
        1.0
    );
    assert_eq!(
        d.metric("container_terminations_total", &[("namespace", &ns), ("outcome", "killed")]),
        0.0
    );
    drop(p);
    drop(limit);
}

#[test]
fn a_burst_of_200_pod_processes_stopped_at_once_loses_nothing() {
    const N: usize = 200;
    let d = Daemon::start();
    let ns = unique("burst");
    let mut pod = Pod::new(&d.log_root, &ns, "fleet-7d4b9c6f8-x2k9p");
    let procs = graceful_inits(&mut pod, N);
    let t0 = Instant::now();
    for (_, p) in &procs {
        p.signal(libc::SIGTERM);
    }
    for (_, p) in &procs {
        p.wait_exit(WAIT).unwrap();
    }
    eprintln!("{N} PID 1s stopped in {:?}", t0.elapsed());
    let ids: std::collections::HashSet<&str> = procs.iter().map(|(c, _)| c.as_str()).collect();
    let recs = d.wait_records(N, Duration::from_secs(30), |r| {
        r["container_id"].as_str().is_some_and(|c| ids.contains(c))
    });
    assert!(recs.iter().all(|r| r["outcome"] == "graceful" && r["exit_code"] == 0), "{recs:#?}");
    let l = [("namespace", ns.as_str())];
    assert_eq!(
        d.metric("container_terminations_total", &[l[0], ("outcome", "graceful")]),
        N as f64
    );
    assert_eq!(d.metric("container_termination_term_to_exit_seconds_count", &l), N as f64);
    assert_eq!(d.metric("observer_events_lost_total", &[]), 0.0, "{}", d.metrics());
}

#[test]
fn containers_started_before_the_daemon_are_known() {
    let log_root = std::env::temp_dir().join(unique("observer-it-early-"));
    let ns = unique("early");
    let mut pod = Pod::new(&log_root, &ns, "cache-0");
    let (cid, cg) = pod.container("redis");
    let p = NsInit::spawn(&cg, &["busybox", "sleep", "1000"]).unwrap();
    let d = Daemon::start_with(Some(&log_root), &[]);
    p.signal(libc::SIGTERM);
    p.signal(libc::SIGKILL);
    p.wait_exit(WAIT).unwrap();
    let r = &d.wait_records(1, WAIT, by_id(&cid))[0];
    assert_eq!(r["namespace"], ns.as_str());
    assert_eq!(r["container"], "redis");
    assert_eq!(r["outcome"], "killed");
    drop(p);
    drop(pod);
    let _ = std::fs::remove_dir_all(&log_root);
}

#[test]
fn runc_sleep_as_pid1_ignores_sigterm_then_is_killed() {
    let d = Daemon::start();
    let ns = unique("runc");
    let (pod, cid, runc) = runc_container(&d, &ns, "shop-7d4b9c6f8-x2k9p", &["sleep", "1000"]);
    let pid = runc.pid().unwrap();
    runc.kill("TERM").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(runc.status(), "running", "busybox sleep as PID 1 ignores SIGTERM");
    runc.kill("KILL").unwrap();
    let r = &d.wait_records(1, WAIT, by_id(&cid))[0];
    eprintln!("record: {r:#}\ndaemon log:\n{}", d.log());
    assert_eq!(r["pid"], pid);
    assert_eq!(r["outcome"], "killed");
    assert_eq!(r["stop_signal_ignored"], true);
    assert_eq!(r["stop_signal_handler"], "default");
    assert_eq!(r["stop_signal_sender"]["comm"], "runc");
    assert_eq!(r["sigkill_sender"]["comm"], "runc");
    assert_eq!(r["workload"], "shop");
    assert_eq!(r["container"], "main");
    let t2k = r["term_to_kill_seconds"].as_f64().unwrap();
    assert!((0.3..1.5).contains(&t2k), "{t2k}");
    assert_eq!(
        d.metric("container_terminations_total", &[("namespace", &ns), ("outcome", "killed")]),
        1.0
    );
    drop(runc);
    drop(pod);
}

#[test]
fn runc_handler_exits_gracefully() {
    let d = Daemon::start();
    let ns = unique("runcok");
    let (pod, cid, runc) = runc_container(
        &d,
        &ns,
        "shop-7d4b9c6f8-x2k9p",
        &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
    );
    observer_tests::wait_handler(runc.pid().unwrap(), libc::SIGTERM).unwrap();
    runc.kill("TERM").unwrap();
    let r = &d.wait_records(1, WAIT, by_id(&cid))[0];
    assert_eq!(r["outcome"], "graceful");
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["stop_signal_disposition"], "handled");
    assert_eq!(r["stop_signal_sender"]["comm"], "runc");
    assert!(r["term_to_exit_seconds"].as_f64().unwrap() < 1.0);
    drop(runc);
    drop(pod);
}

#[test]
fn check_passes_and_serves_health() {
    let out =
        std::process::Command::new(observer_tests::observer_bin()).arg("check").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("PASS  program signal_generate"), "{text}");
    let d = Daemon::start();
    assert_eq!(d.http_get("/healthz").unwrap(), (200, "ok\n".into()));
    let m = d.metrics();
    for name in
        ["observer_build_info", "process_resident_memory_bytes", "process_cpu_seconds_total"]
    {
        assert!(m.contains(name), "{name} missing");
    }
    let bad = std::process::Command::new(observer_tests::observer_bin())
        .args(["run", "--stop-signals", "SIGNOPE"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown signal"));
}
