//! The workload label from the pod's own labels, through a real containerd: kubelet puts them
//! on the sandbox (labels.go `newPodLabels`), containerd keeps them and answers
//! `ListPodSandbox` with them, and the daemon names the record's and the metrics' workload from
//! them. A pod whose labels and name name no owner has none: never a series per pod.

use std::time::Duration;

use observer_tests::{
    containerd::{ContainerSpec, PodSpec, PrivateContainerd},
    metric_value, unique, wait_handler,
};
use serde_json::Value;

/// A shell PID 1 that exits 0 on SIGTERM (its handler installed before it reports ready).
const GRACEFUL: &[&str] = &["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done"];

/// Runs `pod` with one graceful container, stops it, and returns its record.
fn stopped(c: &mut PrivateContainerd, d: &observer_tests::Daemon, pod: &PodSpec) -> Value {
    let sandbox = c.run_pod(pod).unwrap();
    let id = c.start_container(&sandbox, pod, &ContainerSpec::new("step", GRACEFUL)).unwrap();
    wait_handler(c.pid(&id).unwrap(), libc::SIGTERM).unwrap();
    c.stop_container(&id, 10).unwrap();
    let mine = |r: &Value| r["container_id"].as_str() == Some(id.as_str());
    let r = d.wait_records(1, Duration::from_secs(15), mine).remove(0);
    c.remove_pod(&sandbox).unwrap();
    r
}

#[test]
fn the_sandboxs_labels_name_the_workload_and_a_bare_pod_has_none() {
    let mut c = PrivateContainerd::start().expect("private containerd");
    let d = c.daemon(&[]);
    let ns = unique("card");

    // A Tekton TaskRun's pod: `<taskrun>-pod`, no controller's shape; its labels name the
    // Pipeline (the run's name, folded, would be next).
    let mut tekton = PodSpec::new(&ns, "build-run-x7k2p-compile-pod");
    tekton.pod_labels = [
        ("tekton.dev/pipeline", "build"),
        ("tekton.dev/pipelineRun", "build-run-x7k2p"),
        ("tekton.dev/taskRun", "build-run-x7k2p-compile"),
        ("app.kubernetes.io/managed-by", "tekton-pipelines"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // An Argo CronWorkflow run's pod, `<workflow>-<template>-<node hash>`: by its name's shape
    // a StatefulSet per run (the hash reads as an ordinal); its label names the run, whose
    // scheduled second folds away.
    let mut argo = PodSpec::new(&ns, "nightly-1785549600-main-3180211947");
    argo.pod_labels =
        [("workflows.argoproj.io/workflow".to_string(), "nightly-1785549600".to_string())].into();
    // A bare pod with a label that names nothing.
    let mut bare = PodSpec::new(&ns, "ci-run-8f14e45f");
    bare.pod_labels = [("team".to_string(), "infra".to_string())].into();

    let r = stopped(&mut c, &d, &tekton);
    assert_eq!(r["pod"], "build-run-x7k2p-compile-pod", "{r:#}");
    assert_eq!(r["workload"], "build", "{r:#}\n{}", d.log());
    let r = stopped(&mut c, &d, &argo);
    assert_eq!(r["workload"], "nightly", "{r:#}");
    let r = stopped(&mut c, &d, &bare);
    assert_eq!(r["pod"], "ci-run-8f14e45f", "the record still names the pod: {r:#}");
    assert_eq!(r["workload"], Value::Null, "no owner, no workload: {r:#}");

    let m = d.metrics();
    // One termination each, whatever its outcome.
    let ended = |workload: &str| {
        let labels = [("namespace", ns.as_str()), ("workload", workload)];
        metric_value(&m, "container_terminations_total", &labels)
    };
    assert_eq!((ended("build"), ended("nightly"), ended("")), (1.0, 1.0, 1.0), "{m}");
    for name in ["build-run-x7k2p-compile-pod", "ci-run-8f14e45f", "nightly-1785549600-main"] {
        assert!(!m.contains(&format!("workload=\"{name}\"")), "{name} in a series:\n{m}");
    }
    // Three label sets are far from the bound: nothing overflowed, and the families say so.
    let family = [("family", "container_terminations_total")];
    assert_eq!(metric_value(&m, "observer_metric_series_overflow_total", &family), 0.0, "{m}");
    assert!(metric_value(&m, "observer_metric_series", &family) >= 3.0, "{m}");
}
