//! The pod as a whole, through the private containerd's CRI: kubelet's stop of a pod with a
//! native sidecar (an init container with restartPolicy Always, which kubelet annotates
//! `io.kubernetes.container.type: init`): the main container first, the sidecar after it
//! exited, then StopPodSandbox. One pod record says how long the pod took, what held it up,
//! the order, and whether kubelet's sidecar order held; a pod stopped out of order says how.

use std::time::Duration;

use observer_tests::{
    containerd::{ContainerSpec, PodSpec, PrivateContainerd},
    wait_handler, Daemon,
};
use serde_json::Value;

/// A shell PID 1 that exits 0 on SIGTERM, after `delay` of shutdown work.
fn graceful_after(delay: &str) -> Vec<String> {
    let script = format!("trap 'sleep {delay}; exit 0' TERM; while :; do sleep 0.05; done");
    ["sh", "-c", &script].iter().map(|s| s.to_string()).collect()
}

/// A pod with main container `app` and native sidecar `proxy`, both ready; returns the
/// sandbox and the two container ids.
fn pod_with_sidecar(c: &mut PrivateContainerd, pod: &PodSpec) -> (String, String, String) {
    let sandbox = c.run_pod(pod).unwrap();
    let mut proxy = ContainerSpec::new("proxy", &[]);
    proxy.command = graceful_after("0.2");
    proxy.spec_list = "init";
    proxy.grace_period_seconds = Some(10);
    // kubelet starts sidecars before the main containers.
    let proxy_id = c.start_container(&sandbox, pod, &proxy).unwrap();
    let mut app = ContainerSpec::new("app", &[]);
    app.command = graceful_after("1");
    app.grace_period_seconds = Some(10);
    let app_id = c.start_container(&sandbox, pod, &app).unwrap();
    for id in [&proxy_id, &app_id] {
        wait_handler(c.pid(id).unwrap(), libc::SIGTERM).unwrap();
    }
    (sandbox, app_id, proxy_id)
}

fn pod_record(d: &Daemon, uid: &str) -> Value {
    let r = d
        .wait_records(1, Duration::from_secs(25), |r| r["kind"] == "pod" && r["pod_uid"] == uid)
        .remove(0);
    eprintln!("pod record: {r:#}");
    r
}

#[test]
fn a_pod_stopped_in_kubelets_sidecar_order_is_one_record_that_says_so() {
    let mut c = PrivateContainerd::start().expect("private containerd");
    let d = c.daemon(&[]);
    let pod = PodSpec::new("shop", "web-7d4b9c6f8-q8w2z");
    let (sandbox, app, proxy) = pod_with_sidecar(&mut c, &pod);
    // kubelet: the main container, then (once it exited) the sidecar, then the sandbox.
    c.stop_container(&app, 10).unwrap();
    c.stop_container(&proxy, 10).unwrap();
    c.remove_pod(&sandbox).unwrap();
    let r = pod_record(&d, &pod.uid);
    assert_eq!(r["namespace"], "shop");
    assert_eq!(r["pod"], "web-7d4b9c6f8-q8w2z");
    assert_eq!(r["workload"], "web");
    assert_eq!(r["outcome"], "graceful");
    assert_eq!(r["kills"], 0);
    assert_eq!(r["order_kept"], true, "{r:#}");
    assert_eq!(r["order_broken"], Value::Null);
    assert_eq!(r["held_up_by"], "proxy");
    let cs = r["containers"].as_array().unwrap();
    let names: Vec<&str> = cs.iter().map(|c| c["container"].as_str().unwrap()).collect();
    assert_eq!(names, ["app", "proxy"]);
    assert_eq!(cs[0]["role"], "container");
    assert_eq!(cs[1]["role"], "sidecar");
    assert_eq!(cs[0]["container_id"], app.as_str());
    assert!(cs.iter().all(|c| c["outcome"] == "graceful" && c["verdict"] == "kept"), "{r:#}");
    // app took 1 s to shut down, then proxy 0.2 s: the pod about 1.2 s from its first stop.
    let took = r["termination_seconds"].as_f64().unwrap();
    assert!((1.15..2.5).contains(&took), "{took}");
    assert!(r["sandbox_exit_at"].as_str().unwrap() >= r["last_exit_at"].as_str().unwrap());
    assert!(r["record_id"].as_str().unwrap().ends_with(&format!(":pod:{}", pod.uid)));
    // The container records are in the journal beside it, and the pod metrics count it.
    let containers = d.records().into_iter().filter(|r| r["pod_uid"] == pod.uid.as_str());
    assert_eq!(containers.count(), 3, "two containers and the pod");
    let labels = [("namespace", "shop"), ("workload", "web")];
    assert_eq!(d.metric("pod_termination_seconds_count", &labels), 1.0);
    let kept = [labels[0], labels[1], ("outcome", "graceful"), ("order", "kept")];
    assert_eq!(d.metric("pod_terminations_total", &kept), 1.0);
    // GET /pods serves it as the journal holds it, filtered as /terminations filters.
    let (code, body) = d.http_get("/pods?namespace=shop&workload=web").unwrap();
    assert_eq!(code, 200);
    let served: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(served, vec![r.clone()], "{body}");
    let (_, body) = d.http_get("/pods?namespace=shop&outcome=killed").unwrap();
    assert_eq!(body.trim(), "[]");
    let (code, body) = d.http_get("/pods?bogus=1").unwrap();
    assert_eq!(code, 400, "{body}");
}

#[test]
fn a_sidecar_stopped_before_the_main_container_exited_breaks_the_order() {
    let mut c = PrivateContainerd::start().expect("private containerd");
    let d = c.daemon(&[]);
    let pod = PodSpec::new("shop", "web-7d4b9c6f8-m4n7b");
    let (sandbox, app, proxy) = pod_with_sidecar(&mut c, &pod);
    // Out of order: the sidecar first (a kubelet before 1.29, or one that ignores the order).
    c.stop_container(&proxy, 10).unwrap();
    c.stop_container(&app, 10).unwrap();
    c.remove_pod(&sandbox).unwrap();
    let r = pod_record(&d, &pod.uid);
    assert_eq!(r["order_kept"], false, "{r:#}");
    let why = r["order_broken"].as_array().unwrap();
    assert_eq!(why.len(), 1, "{why:?}");
    let why = why[0].as_str().unwrap();
    assert!(why.starts_with("sidecar proxy got its stop signal "), "{why}");
    assert!(why.ends_with(" s before main container app exited"), "{why}");
    assert_eq!(r["held_up_by"], "app");
    let names: Vec<&str> = r["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["container"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["proxy", "app"]);
    let broken = [("namespace", "shop"), ("order", "broken")];
    assert_eq!(d.metric("pod_terminations_total", &broken), 1.0);
}
