//! Real containerd 1.6 (Debian), its CRI plugin driven as kubelet drives it, and the real
//! observer daemon naming what it saw: from the CRI, from containerd's state files when the
//! socket is absent, from kubelet's log layout when both are, and never blocked by a CRI
//! that hangs.

use std::time::Duration;

use observer_tests::{
    containerd::{ContainerSpec, PodSpec, PrivateContainerd, BUSYBOX},
    metric_value, wait_handler, Daemon, NsInit, Pod,
};
use serde_json::Value;

/// A shell PID 1 that exits 0 on SIGTERM (its handler installed before it reports ready).
const GRACEFUL: &[&str] = &["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done"];
/// busybox `sleep` as PID 1: no handler, so the kernel drops SIGTERM.
const NO_HANDLER: &[&str] = &["sleep", "2147483647"];

/// A daemon using `c`'s CRI socket (or `cri` instead), state directory and log root.
fn daemon_for(c: &PrivateContainerd, cri: Option<&str>, extra: &[&str]) -> Daemon {
    let socket = c.socket.display().to_string();
    let state = c.state.display().to_string();
    let mut args = vec!["--cri-endpoint", cri.unwrap_or(&socket), "--containerd-state", &state];
    args.extend_from_slice(extra);
    Daemon::start_with(Some(&c.log_root), &args)
}

fn str_field<'a>(r: &'a Value, k: &str) -> Option<&'a str> {
    r[k].as_str()
}

#[test]
fn cri_names_pod_container_workload_and_carries_the_grace_period() {
    let mut c = PrivateContainerd::start().expect("private containerd");
    let d = daemon_for(&c, None, &[]);
    let pod = PodSpec::new("shop", "web-7d4b9c6f8-x2k9p");
    let sandbox = c.run_pod(&pod).unwrap();

    let mut app = ContainerSpec::new("nginx", GRACEFUL);
    app.grace_period_seconds = Some(45);
    app.prestop_json = Some(r#"{"exec":{"command":["sh","-c","sleep 1"]}}"#.into());
    let app_id = c.start_container(&sandbox, &pod, &app).unwrap();
    wait_handler(c.pid(&app_id).unwrap(), libc::SIGTERM).unwrap();

    let sidecar = ContainerSpec::new("sidecar", NO_HANDLER);
    let sidecar_id = c.start_container(&sandbox, &pod, &sidecar).unwrap();

    c.stop_container(&app_id, 45).unwrap();
    // The sidecar ignores SIGTERM: containerd SIGKILLs it after the 2 s kubelet would give.
    c.stop_container(&sidecar_id, 2).unwrap();

    let by_pod = |r: &Value| str_field(r, "pod_uid") == Some(pod.uid.as_str());
    let recs = d.wait_records(2, Duration::from_secs(15), by_pod);
    let app_rec = recs.iter().find(|r| str_field(r, "container_id") == Some(&app_id)).unwrap();
    let side_rec = recs.iter().find(|r| str_field(r, "container_id") == Some(&sidecar_id)).unwrap();
    for (r, name) in [(app_rec, "nginx"), (side_rec, "sidecar")] {
        assert_eq!(str_field(r, "namespace"), Some("shop"), "{r:#}");
        assert_eq!(str_field(r, "pod"), Some("web-7d4b9c6f8-x2k9p"), "{r:#}");
        assert_eq!(str_field(r, "workload"), Some("web"), "{r:#}");
        assert_eq!(str_field(r, "container"), Some(name), "{r:#}");
        assert_eq!(str_field(r, "runtime"), Some("containerd"), "{r:#}");
        assert_eq!(str_field(r, "image"), Some(BUSYBOX), "{r:#}");
        assert_eq!(str_field(r, "stop_signal"), Some("SIGTERM"), "{r:#}");
        // The shim runs `runc kill`: the sender is runc, as on a real node.
        assert_eq!(r["stop_signal_sender"]["comm"], "runc", "{r:#}");
    }
    assert_eq!(app_rec["grace_period_seconds"], 45, "{app_rec:#}");
    assert_eq!(str_field(app_rec, "outcome"), Some("graceful"), "{app_rec:#}");
    assert_eq!(app_rec["exit_code"], 0, "{app_rec:#}");
    assert_eq!(side_rec["grace_period_seconds"], 30, "{side_rec:#}");
    assert_eq!(str_field(side_rec, "outcome"), Some("killed"), "{side_rec:#}");
    assert_eq!(side_rec["stop_signal_ignored"], true, "{side_rec:#}");
    let term_to_kill = side_rec["term_to_kill_seconds"].as_f64().unwrap();
    assert!((1.9..3.0).contains(&term_to_kill), "StopContainer(timeout=2): {term_to_kill}");

    // StopPodSandbox SIGKILLs the pause container by design: not a container termination.
    c.remove_pod(&sandbox).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(d.records().into_iter().filter(|r| by_pod(r)).count(), 2, "{}", d.log());
    let m = d.metrics();
    assert!(
        metric_value(&m, "observer_terminations_ignored_total", &[("reason", "pod_sandbox")])
            >= 1.0,
        "{m}"
    );
    let labels = [("namespace", "shop"), ("workload", "web"), ("container", "sidecar")];
    assert_eq!(
        metric_value(
            &m,
            "container_terminations_total",
            &[labels[0], labels[1], labels[2], ("outcome", "killed")]
        ),
        1.0,
        "{m}"
    );
}

#[test]
fn without_the_socket_names_come_from_state_files_then_the_log_layout() {
    let mut c = PrivateContainerd::start().expect("private containerd");
    let missing = c.dir.join("no-such.sock").display().to_string();
    // Two daemons watch the same container: one can read containerd's state directory, the
    // other has only kubelet's log layout (and the cgroup path).
    let with_state = daemon_for(&c, Some(&missing), &[]);
    let logs_only = Daemon::start_with(
        Some(&c.log_root),
        &["--cri-endpoint", &missing, "--containerd-state", "/nonexistent-observer-state"],
    );
    let pod = PodSpec::new("data", "db-0");
    let sandbox = c.run_pod(&pod).unwrap();
    let id = c.start_container(&sandbox, &pod, &ContainerSpec::new("postgres", GRACEFUL)).unwrap();
    wait_handler(c.pid(&id).unwrap(), libc::SIGTERM).unwrap();
    c.stop_container(&id, 10).unwrap();

    let mine = |r: &Value| str_field(r, "container_id") == Some(id.as_str());
    let a = &with_state.wait_records(1, Duration::from_secs(15), mine)[0];
    let b = &logs_only.wait_records(1, Duration::from_secs(15), mine)[0];
    for r in [a, b] {
        assert_eq!(str_field(r, "namespace"), Some("data"), "{r:#}");
        assert_eq!(str_field(r, "pod"), Some("db-0"), "{r:#}");
        assert_eq!(str_field(r, "workload"), Some("db"), "{r:#}");
        assert_eq!(str_field(r, "container"), Some("postgres"), "{r:#}");
        assert_eq!(str_field(r, "pod_uid"), Some(pod.uid.as_str()), "{r:#}");
        assert_eq!(str_field(r, "outcome"), Some("graceful"), "{r:#}");
        // kubelet's grace annotation reaches containerd only through the CRI.
        assert_eq!(r["grace_period_seconds"], Value::Null, "{r:#}");
    }
    assert_eq!(str_field(a, "runtime"), Some("containerd"), "state files name the runtime: {a:#}");
    assert_eq!(str_field(a, "image"), Some(BUSYBOX), "{a:#}");
    // A bare-id cgroupfs path cannot tell containerd from docker: unknown, not guessed.
    assert_eq!(b["runtime"], Value::Null, "{b:#}");
    for d in [&with_state, &logs_only] {
        let errors =
            metric_value(&d.metrics(), "observer_metadata_errors_total", &[("source", "cri")]);
        assert!(errors >= 1.0, "a missing socket is a counted metadata error");
    }
    c.remove_pod(&sandbox).unwrap();
}

#[test]
fn a_sandbox_without_kubelets_labels_is_still_named_from_its_metadata() {
    let mut c = PrivateContainerd::start().expect("private containerd");
    let d = daemon_for(&c, None, &[]);
    let mut pod = PodSpec::new("batch", "report-28391520-q7k2m");
    pod.labels = false;
    let sandbox = c.run_pod(&pod).unwrap();
    let mut spec = ContainerSpec::new("report", NO_HANDLER);
    spec.labels = false;
    spec.grace_period_seconds = None;
    let id = c.start_container(&sandbox, &pod, &spec).unwrap();
    c.stop_container(&id, 2).unwrap();

    let mine = |r: &Value| str_field(r, "container_id") == Some(id.as_str());
    let r = &d.wait_records(1, Duration::from_secs(15), mine)[0];
    // No labels: the container's name comes from its CRI metadata, the pod's from the sandbox
    // annotations containerd writes into the bundle.
    assert_eq!(str_field(r, "container"), Some("report"), "{r:#}");
    assert_eq!(str_field(r, "pod"), Some("report-28391520-q7k2m"), "{r:#}");
    assert_eq!(str_field(r, "namespace"), Some("batch"), "{r:#}");
    assert_eq!(str_field(r, "workload"), Some("report"), "CronJob pod -> cronjob name: {r:#}");
    assert_eq!(str_field(r, "runtime"), Some("containerd"), "{r:#}");
    assert_eq!(r["grace_period_seconds"], Value::Null, "no annotation, no invented grace: {r:#}");
    assert_eq!(str_field(r, "outcome"), Some("killed"), "{r:#}");
    c.remove_pod(&sandbox).unwrap();
}

#[test]
fn a_hung_cri_costs_its_deadline_and_blocks_nothing() {
    let c = PrivateContainerd::start().expect("private containerd");
    let d = daemon_for(&c, None, &["--cri-timeout", "300ms"]);
    // containerd accepts connections and answers nothing from now on.
    c.freeze(true);

    let mut pod = Pod::new(&c.log_root, "web", "api-5f7d8b9c4-abcde");
    let (id, cgroup) = pod.container("api");
    let init = NsInit::spawn(&cgroup, GRACEFUL).unwrap();
    init.wait_handler(libc::SIGTERM).unwrap();
    init.signal(libc::SIGTERM);
    init.wait_exit(Duration::from_secs(5)).unwrap();

    // The record still goes out, named from kubelet's log layout, once the lookup's deadlines
    // have passed (well inside the wait below), and /metrics answers meanwhile.
    let (status, _) = d.http_get("/metrics").unwrap();
    assert_eq!(status, 200);
    let mine = |r: &Value| str_field(r, "container_id") == Some(id.as_str());
    let r = &d.wait_records(1, Duration::from_secs(10), mine)[0];
    assert_eq!(str_field(r, "namespace"), Some("web"), "{r:#}");
    assert_eq!(str_field(r, "pod"), Some("api-5f7d8b9c4-abcde"), "{r:#}");
    assert_eq!(str_field(r, "container"), Some("api"), "{r:#}");
    assert_eq!(str_field(r, "outcome"), Some("graceful"), "{r:#}");
    let errors = metric_value(&d.metrics(), "observer_metadata_errors_total", &[("source", "cri")]);
    assert!(errors >= 1.0, "the timeout is a counted metadata error:\n{}", d.log());
    assert!(d.log().contains("timed out"), "{}", d.log());
    drop(init);
    drop(pod);
    c.freeze(false);
}
