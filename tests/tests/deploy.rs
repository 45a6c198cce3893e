//! The deploy/ files, checked by the real tools: the plain manifests and every kustomize
//! overlay (rendered by `kubectl kustomize` of Debian's kubectl 1.20, kustomize v2.0.3, and of
//! the system's kubectl when there is one, which must render the same objects) against the
//! Kubernetes and Prometheus Operator schemas (pinned kubernetes-validate and the operator's
//! CRD models, in the venv `cargo xtask setup` installs), each overlay's flags against the
//! daemon's own parser, the rules by `promtool check rules` and their unit tests by `promtool
//! test rules` (every alert, firing and not firing).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use observer_tests::{observer_bin, prometheus::workspace_root, unique};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Kubernetes versions the manifests are validated against: the oldest supported (the
/// DaemonSet's `recursiveReadOnly` is 1.30+) and the newest kubernetes-validate knows.
const KUBERNETES_VERSIONS: &[&str] = &["1.31.0", "1.37.0"];

/// The overlays, by container runtime and kubelet cgroup driver.
const OVERLAYS: &[&str] =
    &["containerd-cgroupfs", "containerd-systemd", "crio-cgroupfs", "crio-systemd"];

/// deploy/kubernetes/observer.yaml is this overlay, rendered.
const PLAIN: &str = "containerd-systemd";

/// What observer.yaml says above the rendered overlay (kustomize drops comments).
const PLAIN_HEADER: &str = "\
# GENERATED from deploy/kubernetes/overlays/containerd-systemd by `kubectl kustomize`: do not
# edit. After changing base/, runtimes/ or overlays/, regenerate it with
#   OBSERVER_WRITE_MANIFEST=1 cargo test -q -p observer-tests --test deploy observer_yaml
# (tests/tests/deploy.rs fails while the two differ).
#
# For nodes running containerd whose kubelet uses the systemd cgroup driver (kubeadm's
# default):
#   kubectl apply -f deploy/kubernetes/observer.yaml
# Any other node layout: kubectl apply -k deploy/kubernetes/overlays/<runtime>-<driver>
# (README, Deploy > Apply). What each field is for: the commented sources in base/ and
# runtimes/.
";

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

/// Debian bookworm's kubectl 1.20 (kustomize v2.0.3, the oldest the overlays support), which
/// `cargo xtask setup` unpacks into target/tools, first; then the system's `kubectl`, if one
/// is on PATH (kubectl 1.32 and kustomize v5.5 here).
fn kubectls() -> Vec<PathBuf> {
    let debian = std::env::var_os("OBSERVER_DEBIAN_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/tools/kubernetes-client/usr/bin/kubectl"));
    assert!(
        debian.is_file(),
        "{} missing: run `cargo xtask setup` (it unpacks Debian's kubernetes-client)",
        debian.display()
    );
    let out = Command::new(&debian).args(["version", "--client", "-o", "json"]).output().unwrap();
    let version: Value = serde_json::from_slice(&out.stdout).expect("kubectl version as JSON");
    assert_eq!(
        version["clientVersion"]["minor"],
        "20",
        "{} is not kubectl 1.20 (kustomize v2.0.3): {version}",
        debian.display()
    );
    let mut all = vec![debian.clone()];
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(system) =
        std::env::split_paths(&path).map(|d| d.join("kubectl")).find(|k| k.is_file())
    {
        if std::fs::canonicalize(&system).ok() != std::fs::canonicalize(&debian).ok() {
            all.push(system);
        }
    }
    all
}

fn validate(dir: &Path, extra: &[&Path]) -> Output {
    let mut cmd = Command::new(venv_python());
    cmd.arg(workspace_root().join("tests/scripts/validate_manifests.py"))
        .arg(dir)
        .args(KUBERNETES_VERSIONS);
    for k in extra {
        cmd.arg("--kustomization").arg(k);
    }
    for k in kubectls() {
        cmd.arg("--kubectl").arg(k);
    }
    cmd.output().expect("running validate_manifests.py")
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

/// What kustomize v5 says of the fields kustomize v2.0.3 needs (deploy/kubernetes/base/
/// kustomization.yaml): the only stderr a rendering may have.
const DEPRECATED: &[&str] = &[
    "# Warning: 'bases' is deprecated. Please use 'resources' instead.",
    "# Warning: 'patchesJson6902' is deprecated. Please use 'patches' instead.",
];

/// `kubectl kustomize DIR` by every kubectl of [`kubectls`], which must all render the same
/// objects; as YAML, Debian's kubectl 1.20's text.
fn kustomize(dir: &Path) -> String {
    let mut first: Option<(PathBuf, String, Vec<Value>)> = None;
    for kubectl in kubectls() {
        let out = Command::new(&kubectl).arg("kustomize").arg(dir).output().unwrap();
        let what = format!("{} kustomize {}", kubectl.display(), dir.display());
        assert!(out.status.success(), "{what}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
            assert!(DEPRECATED.iter().any(|d| line.starts_with(d)), "{what} warns: {line}");
        }
        let yaml = String::from_utf8(out.stdout).unwrap();
        let docs = documents(&yaml);
        match &first {
            None => first = Some((kubectl, yaml, docs)),
            Some((k, _, want)) => assert!(
                &docs == want,
                "{what} renders other objects than {}:\n{docs:#?}\n{want:#?}",
                k.display()
            ),
        }
    }
    first.unwrap().1
}

/// Every document of a YAML stream, as JSON (the venv's PyYAML reads it).
fn documents(yaml: &str) -> Vec<Value> {
    let mut child = Command::new(venv_python())
        .args([
            "-c",
            "import json, sys, yaml\n\
             print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running the venv's python");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), yaml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).expect("the documents as JSON")
}

fn overlay(name: &str) -> Vec<Value> {
    documents(&kustomize(&deploy().join("kubernetes/overlays").join(name)))
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} expected: {docs:#?}");
    found[0]
}

#[test]
fn manifests_and_overlays_pass_kubernetes_and_operator_schemas_strictly() {
    let out = validate(&deploy(), &[]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    // Every object of every source was checked, none skipped.
    let deployed = [
        "Namespace/observer",
        "ServiceAccount/observer",
        "ConfigMap/observer-seccomp",
        "DaemonSet/observer",
        "Service/observer",
        "NetworkPolicy/observer",
    ];
    let sources = OVERLAYS.iter().map(|o| format!("overlays/{o}")).chain(["observer.yaml".into()]);
    // Every overlay rendered alike by Debian's kubectl 1.20 and the system's, if any.
    let renderers = kubectls().len();
    for o in OVERLAYS {
        let alike = format!("PASS overlays/{o}: the same objects from kubectl v1.20.");
        assert!(renderers == 1 || report.contains(&alike), "{o} not compared:\n{report}");
    }
    for source in sources {
        for object in deployed {
            assert!(
                report.contains(&format!("PASS {source}: {object}")),
                "{source}: {object} not validated:\n{report}"
            );
        }
    }
    for object in ["ServiceMonitor/observer", "PrometheusRule/observer"] {
        assert!(report.contains(&format!("PASS prometheus-operator.yaml: {object}")), "{report}");
    }
}

/// A copy of deploy/ in a directory of its own, removed on drop.
struct DeployCopy(PathBuf);

impl DeployCopy {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("observer-deploy-"));
        let status = Command::new("cp").arg("-r").arg(deploy()).arg(&dir).status().expect("cp");
        assert!(status.success());
        Self(dir)
    }

    fn edit(&self, file: &str, edit: impl Fn(String) -> String) {
        let path = self.0.join(file);
        let before = std::fs::read_to_string(&path).unwrap();
        let after = edit(before.clone());
        assert_ne!(before, after, "{file}: the edit changed nothing");
        std::fs::write(path, after).unwrap();
    }
}

impl Drop for DeployCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The checker is not vacuous: a misspelt field in the base's DaemonSet and NetworkPolicy
/// fails every overlay, an overlay kustomize cannot render fails, and so does one only
/// kustomize v3+ renders (`resources:` naming a directory), a misspelt ServiceMonitor field
/// and rules that drifted from rules.yaml; and (with a system kubectl) the generated
/// ConfigMap's hash suffix, which kustomize v2 and v5 compute differently.
#[test]
fn schema_check_rejects_unknown_fields_broken_overlays_and_drifted_rules() {
    let copy = DeployCopy::new();
    copy.edit("kubernetes/base/daemonset.yaml", |s| {
        s.replace("readOnlyRootFilesystem", "readOnlyRootFilesytem")
    });
    copy.edit("kubernetes/base/networkpolicy.yaml", |s| s.replace("policyTypes:", "policyType:"));
    copy.edit("kubernetes/overlays/crio-cgroupfs/kustomization.yaml", |s| {
        s.replace("runtimes/crio", "runtimes/cri")
    });
    copy.edit("kubernetes/overlays/containerd-cgroupfs/kustomization.yaml", |s| {
        s.replace("bases:", "resources:")
    });
    copy.edit("kubernetes/prometheus-operator.yaml", |s| {
        s.replacen("scrapeTimeout", "scrapeTimout", 1)
    });
    copy.edit("prometheus/rules.yaml", |s| {
        s.replacen("severity: warning", "severity: critical", 1)
    });
    let out = validate(&copy.0, &[]);
    let report = text(&out);
    assert!(!out.status.success(), "mutated manifests passed:\n{report}");
    let mut needles = vec![
        "FAIL overlays/crio-cgroupfs: kubectl kustomize:".to_string(),
        "FAIL overlays/containerd-cgroupfs: kubectl kustomize: kubectl v1.20.".into(),
        "must be a file".into(),
        "readOnlyRootFilesytem".into(),
        "policyType".into(),
        "FAIL prometheus-operator.yaml: ServiceMonitor/observer".into(),
        "scrapeTimout".into(),
        "FAIL prometheus-operator.yaml: PrometheusRule/observer".into(),
    ];
    for o in ["containerd-systemd", "crio-systemd"] {
        needles.push(format!("FAIL overlays/{o}: DaemonSet/observer"));
        needles.push(format!("FAIL overlays/{o}: NetworkPolicy/observer"));
    }
    for needle in needles {
        assert!(report.contains(&needle), "expected {needle:?} in:\n{report}");
    }

    let copy = DeployCopy::new();
    copy.edit("kubernetes/base/kustomization.yaml", |s| {
        s.replace("disableNameSuffixHash: true", "disableNameSuffixHash: false")
    });
    let out = validate(&copy.0, &[]);
    let report = text(&out);
    if kubectls().len() == 1 {
        eprintln!("no system kubectl: kustomize v2 and v5 not compared");
        assert!(out.status.success(), "{report}");
        return;
    }
    assert!(!out.status.success(), "hash suffixes passed:\n{report}");
    for o in OVERLAYS {
        let needle = format!("FAIL overlays/{o}: kubectl kustomize: kubectl v1.20.");
        assert!(report.contains(&needle), "expected {needle:?} in:\n{report}");
    }
    assert!(report.contains("differ at [2].metadata.name: 'observer-seccomp-"), "{report}");
}

/// observer.yaml, for `kubectl apply -f`, is the containerd-systemd overlay rendered.
#[test]
fn observer_yaml_is_the_containerd_systemd_overlay_rendered() {
    let path = deploy().join("kubernetes/observer.yaml");
    let want =
        format!("{PLAIN_HEADER}{}", kustomize(&deploy().join("kubernetes/overlays").join(PLAIN)));
    if std::env::var_os("OBSERVER_WRITE_MANIFEST").is_some() {
        std::fs::write(&path, &want).unwrap();
        eprintln!("wrote {}", path.display());
    }
    let have = std::fs::read_to_string(&path).unwrap();
    assert!(
        have == want,
        "{} differs from overlays/{PLAIN} rendered: regenerate it with\n  \
         OBSERVER_WRITE_MANIFEST=1 cargo test -q -p observer-tests --test deploy observer_yaml",
        path.display()
    );
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

/// `observer <args> --help` exits 0 only when every argument before `--help` is one the
/// daemon's parser takes, with a value it accepts.
fn parses(args: &[Value]) {
    let bin = observer_bin();
    assert!(bin.exists(), "{} missing: run `cargo xtask build`", bin.display());
    let args: Vec<&str> = args.iter().map(|a| a.as_str().unwrap()).collect();
    let out = Command::new(&bin).args(&args).arg("--help").output().unwrap();
    assert!(out.status.success(), "observer {args:?} is refused: {}", text(&out));
}

/// Both of the pod's containers run the image `cargo xtask image` builds, by its entrypoint,
/// with arguments the daemon's parser takes.
#[test]
fn every_overlay_runs_the_image_xtask_builds_with_flags_it_takes() {
    let version = env!("CARGO_PKG_VERSION");
    for o in OVERLAYS {
        let docs = overlay(o);
        let spec = &kind(&docs, "DaemonSet")["spec"]["template"]["spec"];
        for c in spec["containers"]
            .as_array()
            .unwrap()
            .iter()
            .chain(spec["initContainers"].as_array().unwrap())
        {
            assert_eq!(c["image"], format!("localhost/observer:{version}"), "{o}: {c}");
            assert_eq!(c["command"], json!(["/usr/bin/observer"]), "{o}: {c}");
            parses(c["args"].as_array().unwrap());
        }
    }
}

/// What tests/tests/image.rs and tests/tests/privileges.rs run the daemon with is what every
/// overlay declares: the host pid namespace (the start-up walk), CAP_BPF and CAP_PERFMON only,
/// the daemon's own seccomp profile as a Localhost profile of the observer container (never
/// of the pod: the sandbox is made before the init container installs it), the host's bpffs
/// read-write with the pin directory `observer cleanup` takes by default; and per overlay, the
/// runtime's socket and state read-only and kubelet's cgroup layout.
#[test]
fn every_overlay_declares_the_privileges_the_tests_exercise() {
    for o in OVERLAYS {
        let docs = overlay(o);
        let spec = &kind(&docs, "DaemonSet")["spec"]["template"]["spec"];
        assert_eq!(spec["hostPID"], true, "{o}: the start-up walk reads host pids");
        assert_eq!(spec["hostNetwork"], false, "{o}: the NetworkPolicy must apply");
        assert_eq!(spec["hostIPC"], false);
        assert!(spec["securityContext"]["seccompProfile"].is_null(), "{o}: no pod-level profile");
        let c = &spec["containers"][0];
        let sc = &c["securityContext"];
        assert_eq!(sc["privileged"], false);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(sc["capabilities"]["add"], json!(["BPF", "PERFMON"]));
        assert_eq!(
            sc["seccompProfile"],
            json!({"type": "Localhost", "localhostProfile": "observer/observer.json"}),
            "{o}"
        );
        let args: Vec<&str> =
            c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert!(args.contains(&"--pin-dir=/sys/fs/bpf/observer"), "{o}: {args:?}");

        let volume = |name: &str| {
            spec["volumes"].as_array().unwrap().iter().find(|v| v["name"] == name).cloned()
        };
        let mount = |c: &Value, path: &str| {
            c["volumeMounts"].as_array().unwrap().iter().find(|m| m["mountPath"] == path).cloned()
        };
        let host_path = |c: &Value, path: &str| {
            let m = mount(c, path).unwrap_or_else(|| panic!("{o}: no volume mounted at {path}"));
            let v = volume(m["name"].as_str().unwrap()).unwrap();
            (v["hostPath"]["path"].as_str().unwrap_or("").to_string(), m)
        };
        let (src, m) = host_path(c, "/sys/fs/bpf");
        assert_eq!(src, "/sys/fs/bpf");
        assert!(m.get("readOnly").is_none_or(|r| r == false), "pins are written: {m}");
        let (runtime, driver) = o.split_once('-').unwrap();
        let ro: &[(&str, &str)] = match runtime {
            "containerd" => &[("/run/containerd", "/run/containerd")],
            _ => &[
                ("/var/run/crio", "/var/run/crio"),
                ("/run/containers/storage", "/run/containers/storage"),
                ("/run/runc", "/run/runc"),
                ("/run/crun", "/run/crun"),
            ],
        };
        for (path, host) in ro {
            let (src, m) = host_path(c, path);
            assert_eq!((src.as_str(), &m["readOnly"]), (*host, &json!(true)), "{o}: {m}");
        }
        let socket = match runtime {
            "containerd" => "--cri-endpoint=/run/containerd/containerd.sock",
            _ => "--cri-endpoint=/var/run/crio/crio.sock",
        };
        let cgroup_root = match driver {
            "systemd" => "--cgroup-root=/kubepods.slice",
            _ => "--cgroup-root=/kubepods",
        };
        for arg in [socket, cgroup_root] {
            assert_eq!(args.iter().filter(|a| **a == arg).count(), 1, "{o}: {args:?}");
        }
        for other in ["containerd", "crio"].iter().filter(|r| **r != runtime) {
            assert!(!args.iter().any(|a| a.contains(other)), "{o} names {other}: {args:?}");
        }

        // The profile's installer: the ConfigMap kustomize made from the profile, into the
        // directory kubelet resolves observer/observer.json in.
        let init = &spec["initContainers"][0];
        assert_eq!(init["args"][0], "install-seccomp");
        assert!(init["args"]
            .as_array()
            .unwrap()
            .contains(&json!("--to=/host/seccomp/observer.json")));
        assert_eq!(init["securityContext"]["capabilities"], json!({"drop": ["ALL"]}));
        assert_eq!(init["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
        let (src, _) = host_path(init, "/host/seccomp");
        assert_eq!(src, "/var/lib/kubelet/seccomp/observer");
        let cm_mount = mount(init, "/etc/observer/seccomp").unwrap();
        let cm_name =
            volume(cm_mount["name"].as_str().unwrap()).unwrap()["configMap"]["name"].clone();
        let cm = kind(&docs, "ConfigMap");
        assert_eq!(
            cm["metadata"]["name"], cm_name,
            "{o}: the volume names the generated ConfigMap"
        );
        let profile =
            std::fs::read_to_string(deploy().join("kubernetes/base/seccomp/observer.json"))
                .unwrap();
        assert_eq!(
            cm["data"]["observer.json"],
            profile.as_str(),
            "{o}: the ConfigMap is the profile"
        );
        // Its name carries no hash (kustomize v2 and v5 differ): the pod template's checksum
        // rolls the pods when the profile changes.
        let digest = format!("{:x}", Sha256::digest(profile.as_bytes()));
        assert_eq!(
            kind(&docs, "DaemonSet")["spec"]["template"]["metadata"]["annotations"]
                ["checksum/seccomp-profile"],
            digest.as_str(),
            "{o}: set base/daemonset.yaml's checksum/seccomp-profile to the profile's SHA-256 \
             (`sha256sum deploy/kubernetes/base/seccomp/observer.json`)"
        );
    }
}

/// The NetworkPolicy selects the daemon's pods, admits only the scraper on the metrics port,
/// and denies every egress; the README's patch for another Prometheus renders and validates.
#[test]
fn the_network_policy_admits_only_the_scraper_and_the_readme_patch_works() {
    for o in OVERLAYS {
        let docs = overlay(o);
        let np = &kind(&docs, "NetworkPolicy")["spec"];
        let ds = kind(&docs, "DaemonSet");
        let labels = &ds["spec"]["template"]["metadata"]["labels"];
        for (k, v) in np["podSelector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(&labels[k], v, "{o}: the policy selects the daemon's pods");
        }
        assert_eq!(np["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(np["egress"], json!([]), "{o}: no egress at all");
        let ingress = np["ingress"].as_array().unwrap();
        assert_eq!(ingress.len(), 1, "{o}");
        assert_eq!(ingress[0]["ports"], json!([{"port": "metrics", "protocol": "TCP"}]));
        let port = &ds["spec"]["template"]["spec"]["containers"][0]["ports"][0];
        assert_eq!((&port["name"], &port["containerPort"]), (&json!("metrics"), &json!(9464)));
        assert_eq!(
            ingress[0]["from"],
            json!([{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            }])
        );
    }

    // The README's overlay (its kustomization and patch files), on top of one of ours in a
    // copy of deploy/.
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let copy = DeployCopy::new();
    let me = copy.0.join("kubernetes/overlays/my-cluster");
    std::fs::create_dir_all(&me).unwrap();
    let marker = "# observer for another Prometheus: deploy/kubernetes/overlays/my-cluster/";
    let mut files = Vec::new();
    for (at, _) in readme.match_indices(marker) {
        let block = &readme[at..];
        let name = block[marker.len()..].lines().next().unwrap().trim();
        let content = &block[..block.find("```").expect("its code block ends")];
        std::fs::write(me.join(name), content).unwrap();
        files.push(name);
    }
    assert!(files.contains(&"kustomization.yaml") && files.len() > 1, "README: {files:?}");
    let docs = documents(&kustomize(&me));
    let out = validate(&deploy(), &[&me]);
    // This overlay's documents (the other sources are the first test's).
    let report = text(&out);
    let mine = format!("{}: ", me.display());
    assert!(!report.contains(&format!("FAIL {mine}")), "{report}");
    for object in ["DaemonSet/observer", "NetworkPolicy/observer"] {
        assert!(report.contains(&format!("PASS {mine}{object}")), "{report}");
    }
    let from = &kind(&docs, "NetworkPolicy")["spec"]["ingress"][0]["from"];
    assert_eq!(
        from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], "prometheus",
        "{from}"
    );
}

/// The profile the init container installs is one `observer install-seccomp` takes, and the
/// command installs it: where kubelet looks, atomically, byte for byte.
#[test]
fn the_seccomp_profile_installs_with_the_init_containers_command() {
    let dir = std::env::temp_dir().join(unique("observer-install-"));
    std::fs::create_dir_all(&dir).unwrap();
    let profile = deploy().join("kubernetes/base/seccomp/observer.json");
    let to = dir.join("observer.json");
    let out = Command::new(observer_bin())
        .arg("install-seccomp")
        .arg(format!("--profile={}", profile.display()))
        .arg(format!("--to={}", to.display()))
        .output()
        .unwrap();
    let installed = std::fs::read(&to);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("system calls allowed"), "{}", text(&out));
    assert_eq!(installed.unwrap(), std::fs::read(&profile).unwrap());
}
