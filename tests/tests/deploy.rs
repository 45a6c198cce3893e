//! The deploy/ files, checked by the real tools: the manifests against the Kubernetes and
//! Prometheus Operator schemas (pinned kubernetes-validate and the operator's CRD models, in
//! the venv `cargo xtask setup` installs), the rules by `promtool check rules` and their unit
//! tests by `promtool test rules` (every alert, firing and not firing).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use observer_tests::{prometheus::workspace_root, unique};

/// Kubernetes versions the manifests are validated against: the oldest supported (the
/// DaemonSet's `recursiveReadOnly` is 1.30+) and the newest kubernetes-validate knows.
const KUBERNETES_VERSIONS: &[&str] = &["1.31.0", "1.37.0"];

fn deploy() -> PathBuf {
    workspace_root().join("deploy")
}

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("OBSERVER_VALIDATE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/tools/validate-venv"));
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "{} missing: run `cargo xtask setup` (it installs the pinned manifest checkers)",
        python.display()
    );
    python
}

fn validate(dir: &Path) -> Output {
    Command::new(venv_python())
        .arg(workspace_root().join("tests/scripts/validate_manifests.py"))
        .arg(dir)
        .args(KUBERNETES_VERSIONS)
        .output()
        .expect("running validate_manifests.py")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn promtool(args: &[&str]) -> Output {
    Command::new("promtool")
        .args(args)
        .current_dir(deploy().join("prometheus"))
        .output()
        .expect("promtool is not installed: `cargo xtask setup` installs Debian's prometheus")
}

#[test]
fn manifests_pass_kubernetes_and_operator_schemas_strictly() {
    let out = validate(&deploy());
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    // Every object was checked, none skipped.
    for object in [
        "Namespace/observer",
        "ServiceAccount/observer",
        "DaemonSet/observer",
        "Service/observer",
        "ServiceMonitor/observer",
        "PrometheusRule/observer",
    ] {
        assert!(
            report.contains(&format!("PASS observer.yaml: {object}"))
                || report.contains(&format!("PASS prometheus-operator.yaml: {object}")),
            "{object} not validated:\n{report}"
        );
    }
}

/// The checker is not vacuous: a misspelt field in each kind of document, and rules that
/// drifted from rules.yaml, each fail.
#[test]
fn schema_check_rejects_unknown_fields_and_drifted_rules() {
    let dir = std::env::temp_dir().join(unique("observer-deploy-"));
    let copy = |from: &Path, to: &Path, edit: &dyn Fn(String) -> String| {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, edit(std::fs::read_to_string(from).unwrap())).unwrap();
    };
    let k = |f: &str| (deploy().join("kubernetes").join(f), dir.join("kubernetes").join(f));
    let (from, to) = k("observer.yaml");
    copy(&from, &to, &|s| s.replace("readOnlyRootFilesystem", "readOnlyRootFilesytem"));
    let (from, to) = k("prometheus-operator.yaml");
    copy(&from, &to, &|s| s.replacen("scrapeTimeout", "scrapeTimout", 1));
    copy(&deploy().join("prometheus/rules.yaml"), &dir.join("prometheus/rules.yaml"), &|s| {
        s.replacen("severity: warning", "severity: critical", 1)
    });
    let out = validate(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let report = text(&out);
    assert!(!out.status.success(), "mutated manifests passed:\n{report}");
    for needle in [
        "FAIL observer.yaml: DaemonSet/observer",
        "readOnlyRootFilesytem",
        "FAIL prometheus-operator.yaml: ServiceMonitor/observer",
        "scrapeTimout",
        "FAIL prometheus-operator.yaml: PrometheusRule/observer",
    ] {
        assert!(report.contains(needle), "expected {needle:?} in:\n{report}");
    }
}

#[test]
fn promtool_check_rules_is_clean() {
    let out = promtool(&["check", "rules", "rules.yaml"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("SUCCESS"), "{}", text(&out));
}

#[test]
fn promtool_rule_unit_tests_pass() {
    let out = promtool(&["test", "rules", "rules.test.yaml"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Every alert has a unit test where it fires and one where it does not.
#[test]
fn every_alert_is_unit_tested_firing_and_not_firing() {
    let rules = std::fs::read_to_string(deploy().join("prometheus/rules.yaml")).unwrap();
    let tests = std::fs::read_to_string(deploy().join("prometheus/rules.test.yaml")).unwrap();
    let alerts: Vec<&str> =
        rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert!(alerts.len() >= 5, "alerts found: {alerts:?}");
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    for alert in alerts {
        let cases: Vec<&str> = lines
            .windows(2)
            .filter(|w| w[0] == format!("alertname: {alert}"))
            .map(|w| w[1])
            .collect();
        assert!(cases.contains(&"exp_alerts: []"), "{alert}: no not-firing case");
        assert!(cases.contains(&"exp_alerts:"), "{alert}: no firing case");
        assert!(
            rules.contains(&format!("- alert: {alert}\n")),
            "{alert} listed twice or malformed"
        );
    }
}

/// The DaemonSet runs the image `cargo xtask image` builds, by its entrypoint.
#[test]
fn daemonset_runs_the_image_xtask_builds() {
    let ds = std::fs::read_to_string(deploy().join("kubernetes/observer.yaml")).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        ds.contains(&format!("image: localhost/observer:{version}\n")),
        "deploy/kubernetes/observer.yaml must run localhost/observer:{version}"
    );
    assert!(ds.contains("command: [\"/usr/bin/observer\"]"));
}

/// The DaemonSet's pod spec, as JSON (the venv's PyYAML reads the manifest).
fn daemonset_pod_spec() -> serde_json::Value {
    let out = Command::new(venv_python())
        .args([
            "-c",
            "import json, sys, yaml\n\
             docs = yaml.safe_load_all(open(sys.argv[1]))\n\
             ds = next(d for d in docs if d and d['kind'] == 'DaemonSet')\n\
             print(json.dumps(ds['spec']['template']['spec']))",
        ])
        .arg(deploy().join("kubernetes/observer.yaml"))
        .output()
        .expect("running the venv's python");
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).expect("the pod spec as JSON")
}

/// What tests/tests/image.rs runs the image with is what the DaemonSet declares: the host pid
/// namespace (the start-up walk), CAP_BPF and CAP_PERFMON only, the host's bpffs read-write
/// at /sys/fs/bpf with the pin directory `observer cleanup` takes by default, containerd's
/// state directory read-only.
#[test]
fn daemonset_declares_the_pins_and_the_start_up_walk_privileges() {
    let spec = daemonset_pod_spec();
    assert_eq!(spec["hostPID"], true, "the start-up walk reads host pids");
    assert_eq!(spec["hostNetwork"], false);
    assert_eq!(spec["hostIPC"], false);
    let c = &spec["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(sc["capabilities"]["add"], serde_json::json!(["BPF", "PERFMON"]));
    assert!(c["args"].as_array().unwrap().contains(&"--pin-dir=/sys/fs/bpf/observer".into()));

    let volume = |name: &str| {
        spec["volumes"].as_array().unwrap().iter().find(|v| v["name"] == name).cloned()
    };
    let mount = |path: &str| {
        c["volumeMounts"].as_array().unwrap().iter().find(|m| m["mountPath"] == path).cloned()
    };
    let host_path = |path: &str| {
        let m = mount(path).unwrap_or_else(|| panic!("no volume mounted at {path}"));
        let v = volume(m["name"].as_str().unwrap()).unwrap();
        (v["hostPath"]["path"].clone(), v["hostPath"]["type"].clone(), m)
    };
    let (src, kind, m) = host_path("/sys/fs/bpf");
    assert_eq!((src, kind), ("/sys/fs/bpf".into(), "Directory".into()));
    assert!(m.get("readOnly").is_none_or(|r| r == false), "pins are written: {m}");
    let (src, kind, m) = host_path("/run/containerd");
    assert_eq!((src, kind), ("/run/containerd".into(), "Directory".into()));
    assert_eq!(m["readOnly"], true, "{m}");
    assert!(
        mount("/run/containerd/containerd.sock").is_none(),
        "the socket comes with /run/containerd"
    );
}
