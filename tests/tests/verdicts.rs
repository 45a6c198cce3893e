//! Verdicts through the private containerd's CRI, driven as kubelet drives it: the daemon
//! judges each record against kubelet's stop sequence (the annotated grace period and preStop
//! hook) and says what kubectl will show. A StopContainer timeout shorter than the grace is
//! kill_early, with the rule of kubelet's configuration that gives it named (a stand-in kubelet
//! started with `--config`); a StopContainer that kubelet abandons and issues again after
//! restarting is kill_late, the restart named; an exec hook that kubelet waited for past the
//! grace period is kill_late; a stop by the book is kept.

use std::time::{Duration, Instant};

use observer_tests::{
    containerd::{ContainerSpec, PodSpec, PrivateContainerd},
    wait_handler, Daemon,
};
use serde_json::Value;

/// busybox `sleep` as PID 1: no handler, so the kernel drops SIGTERM.
const NO_HANDLER: &[&str] = &["sleep", "2147483647"];
/// A shell PID 1 that exits 0 on SIGTERM.
const GRACEFUL: &[&str] = &["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done"];
const WAIT: Duration = Duration::from_secs(20);

fn record_of(d: &Daemon, id: &str) -> Value {
    let r = d.wait_records(1, WAIT, |r| r["container_id"] == id).remove(0);
    eprintln!("record: {r:#}");
    r
}

fn f64_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A container of `pod` in a fresh sandbox, grace `grace` and preStop `prestop` annotated,
/// running `command`, its PID 1 ready.
fn start(
    c: &mut PrivateContainerd,
    pod: &PodSpec,
    name: &str,
    command: &[&str],
    grace: u64,
    prestop: Option<&str>,
) -> String {
    let sandbox = c.run_pod(pod).unwrap();
    start_in(c, &sandbox, pod, name, command, grace, prestop)
}

/// The same in the running sandbox `sandbox`.
fn start_in(
    c: &mut PrivateContainerd,
    sandbox: &str,
    pod: &PodSpec,
    name: &str,
    command: &[&str],
    grace: u64,
    prestop: Option<&str>,
) -> String {
    let mut spec = ContainerSpec::new(name, command);
    spec.grace_period_seconds = Some(grace);
    spec.prestop_json = prestop.map(str::to_string);
    let id = c.start_container(sandbox, pod, &spec).unwrap();
    let pid = c.pid(&id).unwrap();
    if command == GRACEFUL {
        wait_handler(pid, libc::SIGTERM).unwrap();
    } else {
        // busybox sleep is running once its comm is `sleep`.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim()
            != "sleep"
        {
            assert!(Instant::now() < deadline, "{pid} never became sleep");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    id
}

/// kubelet's configuration on the test's node: soft evictions give 3 s, a graceful node
/// shutdown gives regular pods 6 - 2 = 4 s.
const KUBELET_CONFIG: &str = "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
evictionSoft:
  memory.available: 1Gi
evictionSoftGracePeriod:
  memory.available: 1m
evictionMaxPodGracePeriod: 3
shutdownGracePeriod: 6s
shutdownGracePeriodCriticalPods: 2s
";

#[test]
fn a_stop_timeout_shorter_than_the_grace_period_is_kill_early_with_the_kubelet_rule_named() {
    let _one = KUBELETS.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = PrivateContainerd::start().expect("private containerd");
    let d = c.daemon(&[]);
    let config = c.dir.join("kubelet-config.yaml");
    std::fs::write(&config, KUBELET_CONFIG).unwrap();
    let flags = [format!("--config={}", config.display())];
    let pod = PodSpec::new("shop", "web-7d4b9c6f8-early");
    let sandbox = c.run_pod(&pod).unwrap();
    let ids: Vec<String> = ["soft", "shutdown", "api"]
        .iter()
        .map(|name| start_in(&mut c, &sandbox, &pod, name, NO_HANDLER, 30, None))
        .collect();
    // kubelet's pod workers stop the three at once, with what a soft eviction gives (3 s), a
    // node shutdown's regular share (4 s), and `kubectl delete --grace-period=5` (no rule of
    // the node's gives 5).
    let kubelet = Kubelet::new(&c);
    let mut workers: Vec<_> =
        ids.iter().zip([3, 4, 5]).map(|(id, t)| kubelet.stop_with(id, t, &flags)).collect();
    for w in &mut workers {
        assert_eq!(Kubelet::answer(w), "stopped", "{}", c.log());
    }
    let records: Vec<Value> = ids.iter().map(|id| record_of(&d, id)).collect();
    workers.into_iter().for_each(end);
    for (r, used) in records.iter().zip([3, 4, 5]) {
        assert_eq!(r["outcome"], "killed");
        assert_eq!(r["grace_period_seconds"], 30);
        assert_eq!(r["verdict"], "kill_early", "{r:#}");
        let k = &r["contract"];
        assert_eq!(k["cause"], "shortened_grace");
        assert_eq!(k["grace_used_seconds"], used);
        assert_eq!(k["stop_window_seconds"]["min"], 30);
        assert_eq!(k["stop_window_seconds"]["max"], 30);
        assert_eq!(k["missing"], Value::Null);
        let observed = f64_of(&k["observed_seconds"]);
        assert_eq!(observed, f64_of(&r["term_to_kill_seconds"]));
        assert!((used as f64..used as f64 + 0.5).contains(&observed), "{observed}");
        assert!((f64_of(&k["off_by_seconds"]) + 30.0 - observed).abs() < 1e-6, "{k:#}");
        assert_eq!(r["kubernetes"]["reason"], "Error");
        assert_eq!(r["kubernetes"]["exit_code"], 137);
        assert!(r["kubernetes"]["note"].as_str().unwrap().contains("not an OOM kill"));
    }
    // Which of kubelet's rules gives each, read from the stand-in kubelet's own --config.
    let by: Vec<&Value> = records.iter().map(|r| &r["contract"]["shortened_by"]).collect();
    assert_eq!(by[0]["rule"], "soft_eviction", "{:#}", by[0]);
    let evidence = by[0]["evidence"].as_str().unwrap();
    assert!(evidence.contains("evictionMaxPodGracePeriod: 3"), "{evidence}");
    assert!(evidence.contains(&config.display().to_string()), "{evidence}");
    assert_eq!(by[1]["rule"], "node_shutdown", "{:#}", by[1]);
    assert!(by[1]["evidence"].as_str().unwrap().contains("regular pods get 4 s"), "{:#}", by[1]);
    assert_eq!(by[2]["rule"], "unknown", "{:#}", by[2]);
    assert!(
        by[2]["evidence"]
            .as_str()
            .unwrap()
            .starts_with("no rule of kubelet's on this node gives 5 s"),
        "{:#}",
        by[2]
    );
    let labels = [("namespace", "shop"), ("verdict", "kill_early"), ("cause", "shortened_grace")];
    assert_eq!(d.metric("container_termination_verdicts_total", &labels), 3.0);
    for rule in ["soft_eviction", "node_shutdown", "unknown"] {
        let labels = [("rule", rule)];
        assert_eq!(
            d.metric("container_termination_shortened_graces_total", &labels),
            1.0,
            "{rule}"
        );
    }
    let (code, body) = d.http_get("/terminations?verdict=kill_early&namespace=shop").unwrap();
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_str::<Vec<Value>>(&body).unwrap().len(), 3, "{body}");
    let report = d.report(&[]);
    let words = report.split_whitespace().collect::<Vec<_>>().join(" ");
    for said in [
        "kill_early: got 3 s of 30 s, as kubelet's soft eviction gives: evictionMaxPodGracePeriod: 3",
        "kill_early: got 4 s of 30 s, as kubelet's graceful node shutdown gives: shutdownGracePeriod: 6s",
        "kill_early: got 5 s of 30 s, cause unknown: no rule of kubelet's on this node gives 5 s",
    ] {
        assert!(words.contains(said), "{said:?} not in\n{report}");
    }
}

#[test]
fn a_stop_by_the_book_is_kept() {
    let mut c = PrivateContainerd::start().expect("private containerd");
    let d = c.daemon(&[]);
    let pod = PodSpec::new("shop", "api-0");
    let killed = start(&mut c, &pod, "api", NO_HANDLER, 3, None);
    c.stop_container(&killed, 3).unwrap();
    let r = record_of(&d, &killed);
    assert_eq!(r["verdict"], "kept", "{r:#}");
    assert_eq!(r["contract"]["off_by_seconds"], 0.0);
    assert_eq!(r["contract"]["cause"], Value::Null);
    let pod2 = PodSpec::new("shop", "api-1");
    let graceful = start(&mut c, &pod2, "api", GRACEFUL, 3, None);
    c.stop_container(&graceful, 3).unwrap();
    let r = record_of(&d, &graceful);
    assert_eq!(r["outcome"], "graceful");
    assert_eq!(r["verdict"], "kept", "{r:#}");
    assert_eq!(r["kubernetes"]["reason"], "Completed");
    assert_eq!(r["kubernetes"]["exit_code"], 0);
    assert!(f64_of(&r["contract"]["observed_seconds"]) < 1.0);
}

/// The test plays kubelet from processes named `kubelet` (src/bin/cri-stop.rs copied under that
/// name): each makes one StopContainer call, as kubelet's pod worker does.
struct Kubelet {
    path: std::path::PathBuf,
    socket: String,
}

/// The tests that run stand-in kubelets take turns: the daemon takes any process named kubelet
/// for the node's kubelet.
static KUBELETS: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Kubelet {
    fn new(c: &PrivateContainerd) -> Self {
        let dir = c.dir.join("kubelet-bin");
        std::fs::create_dir_all(&dir).unwrap();
        // A symlink: the comm is the name exec'd (fs/exec.c `__set_task_comm(me,
        // kbasename(bprm->filename))`), and no copy is written while other threads fork
        // (a copy's writer fd inherited by a fork makes its exec fail with ETXTBSY).
        let path = dir.join("kubelet");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_cri-stop"), &path).unwrap();
        Self { path, socket: c.socket.display().to_string() }
    }

    /// A kubelet whose pod worker calls StopContainer(id, timeout) and goes on running.
    fn stop(&self, id: &str, timeout: u64) -> std::process::Child {
        self.stop_with(id, timeout, &[])
    }

    /// The same, kubelet started with `flags`.
    fn stop_with(&self, id: &str, timeout: u64, flags: &[String]) -> std::process::Child {
        std::process::Command::new(&self.path)
            .args([&self.socket, id, &timeout.to_string()])
            .args(flags)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// What its StopContainer call answered (`stopped` or the error).
    fn answer(child: &mut std::process::Child) -> String {
        use std::io::BufRead as _;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        line.trim().to_string()
    }
}

/// Ends a stand-in kubelet (ours, by its pid).
fn end(mut child: std::process::Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_stop_issued_again_by_a_restarted_kubelet_is_kill_late_with_the_restart_named() {
    let _one = KUBELETS.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = PrivateContainerd::start().expect("private containerd");
    let d = c.daemon(&[]);
    let pod = PodSpec::new("shop", "db-0");
    let id = start(&mut c, &pod, "db", NO_HANDLER, 4, None);
    // kubelet calls StopContainer(4) and dies 2 s into it (containerd gives up the stop with
    // the call: no SIGKILL); the new kubelet retries the whole stop with the full grace period.
    let kubelet = Kubelet::new(&c);
    let stop_at = Instant::now();
    let mut first = kubelet.stop(&id, 4);
    std::thread::sleep(Duration::from_secs(2));
    assert!(first.try_wait().unwrap().is_none(), "StopContainer answered before 2 s");
    end(first);
    std::thread::sleep(Duration::from_millis(500));
    let retry_at = stop_at.elapsed();
    let mut second = kubelet.stop(&id, 4);
    assert_eq!(Kubelet::answer(&mut second), "stopped", "{}", c.log());
    let second_pid = second.id();
    let r = record_of(&d, &id);
    end(second);
    let took = f64_of(&r["term_to_kill_seconds"]);
    eprintln!("retry {retry_at:?} after the first stop; SIGKILL {took} s after the stop signal");
    assert_eq!(r["verdict"], "kill_late", "{r:#}\n{}", c.log());
    let k = &r["contract"];
    assert_eq!(k["stop_window_seconds"]["max"], 4);
    assert!(took > 4.0 + retry_at.as_secs_f64() - 0.5, "{took}");
    assert!((f64_of(&k["off_by_seconds"]) - (took - 4.0)).abs() < 1e-6, "{k:#}");
    // containerd sends the stop signal once per container (a repeat only if it forgot the
    // first): the new kubelet's start is the evidence, seen from /proc.
    assert_eq!(k["cause"], "retried_stop", "{k:#}");
    let restarted = k["restarted"].as_array().unwrap_or_else(|| panic!("{k:#}"));
    assert_eq!(restarted.len(), 1, "{k:#}");
    assert_eq!(restarted[0]["component"], "kubelet");
    assert_eq!(restarted[0]["comm"], "kubelet");
    assert_eq!(restarted[0]["pid"], second_pid);
    // It started 2.5 s after the first kubelet (whose call brought the stop signal within
    // a few hundred ms), on the kernel clock to a tick.
    let after = f64_of(&restarted[0]["after_stop_signal_seconds"]);
    assert!(after > retry_at.as_secs_f64() - 0.5 && after <= retry_at.as_secs_f64(), "{after}");
    if let Some(repeats) = r["stop_signal_repeats"].as_array() {
        assert_eq!(repeats.len(), 1, "{r:#}");
    }
    let labels = [("namespace", "shop"), ("verdict", "kill_late"), ("cause", "retried_stop")];
    assert_eq!(d.metric("container_termination_verdicts_total", &labels), 1.0);
    // The report names it.
    let report = d.report(&[]);
    let words = report.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains(": kubelet restarted ")
            && words.contains(" s after the stop signal and the stop was issued again"),
        "{report}"
    );
}

#[test]
fn a_prestop_hook_kubelet_waited_for_past_the_grace_period_is_kill_late() {
    let mut c = PrivateContainerd::start().expect("private containerd");
    let d = c.daemon(&[]);
    let pod = PodSpec::new("shop", "cache-0");
    let hook = r#"{"exec":{"command":["sleep","6"]}}"#;
    let id = start(&mut c, &pod, "cache", NO_HANDLER, 3, Some(hook));
    // A kubelet before 1.28 (kubernetes#115817): it waits for the hook to return, past G = 3,
    // then stops the container with the grace left floored at 2 s.
    assert_eq!(c.exec_sync(&id, &["sleep", "6"]).unwrap(), 0);
    c.stop_container(&id, 2).unwrap();
    let r = record_of(&d, &id);
    assert_eq!(r["prestop"]["kind"], "exec", "{r:#}");
    assert_eq!(r["prestop"]["comm"], "sleep");
    let hook_took = f64_of(&r["prestop"]["duration_seconds"]);
    assert!((5.9..7.0).contains(&hook_took), "{hook_took}");
    assert_eq!(r["verdict"], "kill_late", "{r:#}");
    let k = &r["contract"];
    assert_eq!(k["cause"], "prestop_outlived_budget");
    // Late by the hook's time past G (the stop signal came ~6 s after the hook began).
    let late = f64_of(&k["off_by_seconds"]);
    assert!((2.9..4.5).contains(&late), "{late}");
    let labels =
        [("namespace", "shop"), ("verdict", "kill_late"), ("cause", "prestop_outlived_budget")];
    assert_eq!(d.metric("container_termination_verdicts_total", &labels), 1.0);
}
