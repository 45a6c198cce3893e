//! A real Prometheus (Debian's) scraping a real daemon: the target is up, the container series
//! carry exactly the labels the README documents, the recording rules and alerts of
//! deploy/prometheus/rules.yaml evaluate to the terminations the test caused, and every PromQL
//! expression of the Grafana dashboard evaluates. `promtool check metrics` on the daemon's
//! /metrics reports nothing, and the README's metrics reference matches what it serves.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write as _,
    process::{Command, Stdio},
    time::Duration,
};

use observer_tests::{
    by_id,
    prometheus::{parse_exposition, readme_metrics, workspace_root, Prometheus},
    unique, Daemon, NsInit, Pod,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// One graceful stop (handler exits on SIGTERM) and one that needs SIGKILL (no handler: the
/// kernel drops SIGTERM at the init), both in workload "web" of `pod`'s namespace.
fn terminate_two(d: &Daemon, pod: &mut Pod) {
    let (graceful_id, cg) = pod.container("app");
    let graceful = NsInit::spawn(
        &cg,
        &["busybox", "sh", "-c", "trap 'exit 0' TERM; busybox sleep 1000 & wait"],
    )
    .unwrap();
    graceful.wait_handler(libc::SIGTERM).unwrap();
    let (killed_id, cg) = pod.container("sidecar");
    let killed = NsInit::spawn(&cg, &["busybox", "sleep", "1000"]).unwrap();
    graceful.signal(libc::SIGTERM);
    killed.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    killed.signal(libc::SIGKILL);
    graceful.wait_exit(WAIT).unwrap();
    killed.wait_exit(WAIT).unwrap();
    d.wait_records(1, WAIT, by_id(&graceful_id));
    d.wait_records(1, WAIT, by_id(&killed_id));
}

fn readme() -> String {
    std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md")
}

fn labels_of(series: &Value) -> BTreeSet<String> {
    series["metric"].as_object().expect("metric labels").keys().cloned().collect()
}

#[test]
fn prometheus_scrapes_the_daemon_and_rules_alerts_and_dashboard_evaluate() {
    let d = Daemon::start();
    let ns = unique("prom");
    let mut pod = Pod::new(&d.log_root, &ns, "web-7d4b9c6f8-x2k9p");
    terminate_two(&d, &mut pod);

    let rules = workspace_root().join("deploy/prometheus/rules.yaml");
    let p = Prometheus::start(&d.addr, &[rules]);
    // The target is up.
    p.wait_for("up{job=\"observer\"} == 1", WAIT);
    let targets = p.api("/api/v1/targets", &[]).unwrap();
    let active = targets["activeTargets"].as_array().unwrap();
    assert_eq!(active.len(), 1, "{targets}");
    assert_eq!(active[0]["health"], "up", "{targets}");
    assert_eq!(active[0]["lastError"], "", "{targets}");

    // The same workload stops again while Prometheus watches: rates and quantiles exist.
    let mut pod2 = Pod::new(&d.log_root, &ns, "web-7d4b9c6f8-q8w2z");
    terminate_two(&d, &mut pod2);

    // Container series: the README's labels, plus the target's job and instance.
    let documented = readme_metrics(&readme()).unwrap();
    let sel = format!("{{namespace=\"{ns}\"}}");
    for (metric, family) in [
        ("container_terminations_total", "container_terminations_total"),
        (
            "container_termination_term_to_exit_seconds_bucket",
            "container_termination_term_to_exit_seconds",
        ),
        (
            "container_termination_term_to_kill_seconds_count",
            "container_termination_term_to_kill_seconds",
        ),
        (
            "container_termination_stop_signal_ignored_total",
            "container_termination_stop_signal_ignored_total",
        ),
    ] {
        let series = p.wait_for(&format!("{metric}{sel}"), WAIT);
        let mut expected = documented
            .get(family)
            .unwrap_or_else(|| panic!("{family} is not in the README's metrics reference"))
            .labels
            .clone();
        expected.extend(["__name__", "job", "instance"].map(String::from));
        if metric.ends_with("_bucket") {
            expected.insert("le".into());
        }
        for s in &series {
            assert_eq!(labels_of(s), expected, "{metric}: {s}");
            assert_eq!(s["metric"]["workload"], "web", "{s}");
        }
    }
    let outcomes: BTreeSet<String> = p
        .wait_for(&format!("container_terminations_total{sel}"), WAIT)
        .iter()
        .map(|s| format!("{}={}", s["metric"]["container"], s["metric"]["outcome"]))
        .collect();
    assert_eq!(
        outcomes,
        BTreeSet::from(["\"app\"=\"graceful\"".into(), "\"sidecar\"=\"killed\"".into()])
    );
    // The daemon's own series carry their documented labels too.
    for (metric, label) in
        [("observer_events_lost_total", "stage"), ("observer_events_total", "probe")]
    {
        let series = p.wait_for(&format!("{metric}{{job=\"observer\"}}"), WAIT);
        assert!(documented[metric].labels.contains(label));
        assert!(series.iter().all(|s| s["metric"][label].is_string()), "{metric}: {series:?}");
    }

    // Recording rules: term->exit quantiles of this workload, from this test's stops.
    for q in ["p50", "p95", "p99"] {
        let expr = format!(
            "namespace_workload:container_termination_term_to_exit_seconds:{q}{{namespace=\"{ns}\",workload=\"web\"}}"
        );
        let v: f64 = p.wait_for(&expr, WAIT)[0]["value"][1].as_str().unwrap().parse().unwrap();
        // Both stops took well under the 0.25 s bucket boundary... or the kill's ~0.2 s:
        // either way a finite quantile inside the histogram's range.
        assert!(v > 0.0 && v <= 120.0, "{q} = {v}");
    }
    // The alerts fire for this workload: one SIGKILL, one ignored stop signal.
    for alert in ["ContainerNeededSigkill", "ContainerStopSignalIgnored"] {
        let firing = p.wait_for(
            &format!("ALERTS{{alertname=\"{alert}\",alertstate=\"firing\",namespace=\"{ns}\"}}"),
            WAIT,
        );
        assert_eq!(firing.len(), 1, "{alert}: {firing:?}");
        assert_eq!(firing[0]["metric"]["workload"], "web");
        assert_eq!(firing[0]["metric"]["container"], "sidecar");
    }
    // ... and the daemon-health alerts do not.
    for alert in ["ObserverDown", "ObserverAbsent", "ObserverEventsLost"] {
        let r = p.query(&format!("ALERTS{{alertname=\"{alert}\"}}")).unwrap();
        assert_eq!(r["result"], Value::Array(vec![]), "{alert} fires: {r}");
    }

    dashboard_expressions_evaluate(&p, &ns);
}

/// Grafana's variables, as Grafana would substitute them for this test's namespace.
fn substitute(expr: &str, ns: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "1h")
        .replace("$__interval", "15s")
        .replace("$namespace", ns)
        .replace("$workload", "web")
}

fn dashboard_expressions_evaluate(p: &Prometheus, ns: &str) {
    let path = workspace_root().join("deploy/grafana/observer.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // Template variables: label_values(<selector>, <label>) -> /api/v1/label/<label>/values.
    for var in dash["templating"]["list"].as_array().unwrap() {
        if var["type"] != "query" {
            continue;
        }
        let q = var["query"]["query"].as_str().unwrap();
        let inner = q.strip_prefix("label_values(").and_then(|s| s.strip_suffix(')')).unwrap();
        let (selector, label) = inner.rsplit_once(',').unwrap();
        let values = p
            .api(
                &format!("/api/v1/label/{}/values", label.trim()),
                &[("match[]", &substitute(selector.trim(), ns))],
            )
            .unwrap_or_else(|e| panic!("variable {}: {e:#}", var["name"]));
        let want = if var["name"] == "namespace" { ns } else { "web" };
        assert!(values.as_array().unwrap().iter().any(|v| v == want), "{q}: {values}");
    }
    let mut evaluated = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = substitute(target["expr"].as_str().unwrap(), ns);
            let title = panel["title"].as_str().unwrap();
            let r =
                if target["instant"] == true { p.query(&expr) } else { p.query_range(&expr, 5) }
                    .unwrap_or_else(|e| panic!("panel {title:?}: {expr}: {e:#}"));
            evaluated += 1;
            // preStop, metadata-error, stuck, broken-contract and traffic series exist only once
            // one was seen (traffic: a termination whose network namespace the kernel counted);
            // everything else has data from this test's stops or from the daemon itself.
            let rare = [
                "prestop",
                "metadata_errors",
                "stuck",
                "kill_late|kill_early",
                "pod_termination",
                "shortened",
                "connection",
                "traffic_at_exit",
            ];
            if !rare.iter().any(|r| expr.contains(r)) {
                assert!(
                    !r["result"].as_array().unwrap().is_empty(),
                    "panel {title:?}: {expr} returned no series: {r}\ninstant: {:?}",
                    p.query(&expr)
                );
            }
        }
    }
    assert!(evaluated >= 15, "only {evaluated} dashboard expressions found");
}

/// `promtool check metrics` finds nothing to say about what the daemon serves, and every
/// family served is in the README's metrics reference with its type and labels.
#[test]
fn metrics_pass_promtool_and_match_the_readme_reference() {
    let d = Daemon::start();
    let ns = unique("doc");
    let mut pod = Pod::new(&d.log_root, &ns, "web-7d4b9c6f8-x2k9p");
    terminate_two(&d, &mut pod);
    let text = d.metrics();

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed: `cargo xtask setup` installs Debian's prometheus");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool check metrics:\n{report}");

    let served = parse_exposition(&text);
    let documented = readme_metrics(&readme()).unwrap();
    let source =
        std::fs::read_to_string(workspace_root().join("observer/src/sinks/metrics.rs")).unwrap();
    let mut problems = Vec::new();
    for (name, family) in &served {
        assert!(!family.help.is_empty(), "{name} has no help text");
        match documented.get(name) {
            None => problems.push(format!("{name} ({}) is served but not documented", family.kind)),
            Some(doc) => {
                if doc.kind != family.kind {
                    problems
                        .push(format!("{name}: README says {}, served {}", doc.kind, family.kind));
                }
                if doc.labels != family.labels {
                    problems.push(format!(
                        "{name}: README labels {:?}, served {:?}",
                        doc.labels, family.labels
                    ));
                }
            }
        }
    }
    // A documented family not served yet (a series appears at its first event, e.g. preStop)
    // must at least be declared by the daemon's code.
    let unserved: BTreeMap<_, _> =
        documented.iter().filter(|(n, _)| !served.contains_key(*n)).collect();
    for name in unserved.keys() {
        if !source.contains(&format!("\"{name}\"")) {
            problems.push(format!("{name} is documented but neither served nor in metrics.rs"));
        }
    }
    assert!(problems.is_empty(), "README metrics reference vs /metrics:\n{}", problems.join("\n"));
    // This test's own series are among those served.
    assert!(text.contains(&format!("namespace=\"{ns}\"")));
}
