//! The scenario matrix through `observer drill` in process mode, on the real kernel: each case
//! asserts the drill's record and exit status, and that a daemon watching at the same time
//! wrote the same record (timestamps and intervals within 5 ms: both read the kernel's clock
//! from their own probes on the same hooks).
//!
//! The containerd half of the matrix comes with the drill's CRI mode.

use std::{
    io::{Read as _, Write as _},
    net::TcpListener,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use observer_tests::{by_id, epoch_ns, observer_bin, Daemon, INTERVALS, TIMESTAMPS};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);
/// The bound between the drill's and the daemon's record.
const SAME: f64 = 0.005;
/// A stop window measured by the kernel against the one the engine intended: the drill acts
/// on a 2 ms poll, and a busy 2-CPU machine delays it a little more.
const ACT_SLACK: f64 = 0.150;
/// Time for the workload to install its handlers before the stop.
const START_AFTER: &str = "1s";

/// A PID 1 whose handler for `sig` exits at once with code 0.
fn handler_exits(sig: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), format!("trap 'exit 0' {sig}; sleep 1000 & wait")]
}

fn no_handler() -> Vec<String> {
    vec!["sleep".into(), "1000".into()]
}

struct Drill {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Drill {
    fn record(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!("drill printed no record ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }
}

/// Runs `observer drill FLAGS -- CMD` to its end.
fn drill(flags: &[&str], cmd: &[String]) -> Drill {
    let out = Command::new(observer_bin())
        .arg("drill")
        .args(["--start-after", START_AFTER])
        .args(flags)
        .arg("--")
        .args(cmd)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("run observer drill");
    Drill {
        status: out.status.code().expect("drill exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn secs(v: &Value, what: &str) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// The daemon's record of the drill's container equals the drill's: every field, with
/// timestamps and intervals within 5 ms. What only the drill knows is the grace period and the
/// hook (the daemon reads them from CRI metadata, absent in process mode): so an inferred
/// preStop, and an exec hook the daemon sees as an unconfirmed exec session.
fn assert_same_record(drill: &Value, daemon: &Value) {
    let (dm, am) = (drill.as_object().unwrap(), daemon.as_object().unwrap());
    assert_eq!(dm.keys().collect::<Vec<_>>(), am.keys().collect::<Vec<_>>(), "same schema");
    for (k, dv) in dm {
        let av = &am[k];
        match k.as_str() {
            k if TIMESTAMPS.contains(&k) => {
                assert_eq!(dv.is_null(), av.is_null(), "{k}: drill {dv} daemon {av}");
                if !dv.is_null() {
                    let diff = (epoch_ns(dv) - epoch_ns(av)).abs();
                    assert!(diff <= 5_000_000, "{k}: drill {dv} daemon {av}");
                }
            }
            k if INTERVALS.contains(&k) => {
                assert_eq!(dv.is_null(), av.is_null(), "{k}: drill {dv} daemon {av}");
                if !dv.is_null() {
                    assert!((secs(dv, k) - secs(av, k)).abs() <= SAME, "{k}: {dv} vs {av}");
                }
            }
            "grace_period_seconds" => {
                assert!(dv.is_u64(), "the drill knows G: {dv}");
                assert_eq!(*av, Value::Null, "process mode: no CRI metadata for the daemon");
            }
            // The drill judges its own run by its G and hook; the daemon, without them,
            // cannot: unknown, and it says what it lacks.
            "verdict" => {
                assert_eq!(*dv, "kept", "the drill keeps kubelet's sequence");
                assert_eq!(*av, "unknown");
            }
            "contract" => {
                assert!(dv["stop_window_seconds"]["max"].is_u64(), "{dv}");
                assert_eq!(dv["missing"], Value::Null, "{dv}");
                assert_eq!(av["missing"], serde_json::json!(["grace_period", "prestop"]), "{av}");
                let (a, b) =
                    (secs(&dv["observed_seconds"], "o"), secs(&av["observed_seconds"], "o"));
                assert!((a - b).abs() <= SAME, "contract.observed_seconds {a} vs {b}");
            }
            "prestop" if dv["kind"] == "inferred" => {
                assert_eq!(*av, Value::Null, "the daemon cannot infer without G: {av}");
            }
            "prestop" if !dv.is_null() => {
                // The drill knows its hook; the daemon, without metadata in process mode, sees
                // the same exec session and reports it as what it knows: a session, which is
                // never an overrun.
                assert_eq!(dv["kind"], "exec", "the drill's own hook: {dv}");
                assert_eq!(av["kind"], "session", "no metadata, no confirmed hook: {av}");
                assert_eq!(av["overrun"], false, "{av}");
                for f in ["pid", "comm"] {
                    assert_eq!(dv[f], av[f], "prestop.{f}");
                }
                for f in ["started_at", "ended_at"] {
                    assert!(
                        (epoch_ns(&dv[f]) - epoch_ns(&av[f])).abs() <= 5_000_000,
                        "prestop.{f}: {} vs {}",
                        dv[f],
                        av[f]
                    );
                }
                let (a, b) =
                    (secs(&dv["duration_seconds"], "d"), secs(&av["duration_seconds"], "d"));
                assert!((a - b).abs() <= SAME, "prestop.duration_seconds {a} vs {b}");
            }
            _ => assert_eq!(dv, av, "{k}"),
        }
    }
}

/// Runs one case with a daemon watching: checks the exit status, returns the drill's record
/// after checking the daemon wrote the same one.
fn case(flags: &[&str], cmd: &[String], status: i32) -> (Value, Daemon) {
    let d = Daemon::start();
    let mut all = vec!["--json"];
    all.extend_from_slice(flags);
    let run = drill(&all, cmd);
    assert_eq!(
        run.status, status,
        "drill exit status\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let rec = run.record();
    let cid = rec["container_id"].as_str().expect("a container id").to_string();
    let theirs = d.wait_records(1, WAIT, by_id(&cid)).remove(0);
    assert_same_record(&rec, &theirs);
    (rec, d)
}

fn within(actual: f64, expected: f64, what: &str) {
    assert!(
        actual >= expected - 0.002 && actual <= expected + ACT_SLACK,
        "{what}: {actual:.6} s, expected {expected} s"
    );
}

#[test]
fn handler_exits_fast() {
    let (r, _d) = case(&["--grace-period", "5"], &handler_exits("TERM"), 0);
    assert_eq!(r["outcome"], "graceful");
    assert_eq!(r["stop_signal"], "SIGTERM");
    assert_eq!(r["stop_signal_ignored"], false);
    assert_eq!(r["stop_signal_disposition"], "handled");
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["sigkill_at"], Value::Null);
    assert_eq!(r["prestop"], Value::Null);
    assert_eq!(r["grace_period_seconds"], 5);
    assert_eq!(r["comm"], "sh");
    assert!(secs(&r["term_to_exit_seconds"], "t2e") < 0.5, "{r:#}");
}

#[test]
fn handler_slower_than_a_second_within_grace() {
    let cmd =
        vec!["sh".into(), "-c".into(), "trap 'sleep 1.2; exit 0' TERM; sleep 1000 & wait".into()];
    let (r, _d) = case(&["--grace-period", "5"], &cmd, 0);
    assert_eq!(r["outcome"], "graceful");
    assert_eq!(r["stop_signal_disposition"], "handled");
    let t2e = secs(&r["term_to_exit_seconds"], "t2e");
    assert!((1.2..2.0).contains(&t2e), "{t2e}");
    assert_eq!(r["sigkill_at"], Value::Null);
}

#[test]
fn pid1_without_handler_is_killed_at_grace() {
    let (r, _d) = case(&["--grace-period", "2"], &no_handler(), 3);
    assert_eq!(r["outcome"], "killed");
    assert_eq!(r["comm"], "sleep");
    assert_eq!(r["stop_signal_ignored"], true);
    assert_eq!(r["stop_signal_handler"], "default");
    assert_eq!(r["stop_signal_disposition"], Value::Null);
    assert_eq!(r["exit_signal"], "SIGKILL");
    within(secs(&r["term_to_kill_seconds"], "t2k"), 2.0, "stop signal -> SIGKILL");
    assert_eq!(r["sigkill_sender"], r["stop_signal_sender"]);
    assert_eq!(r["sigkill_sender"]["comm"], "observer");
}

#[test]
fn sig_ign_is_ignored_and_killed() {
    let cmd = vec!["sh".into(), "-c".into(), "trap '' TERM; sleep 1000 & wait".into()];
    let (r, _d) = case(&["--grace-period", "2"], &cmd, 3);
    assert_eq!(r["outcome"], "killed");
    assert_eq!(r["stop_signal_ignored"], true);
    assert_eq!(r["stop_signal_handler"], "ignored");
    within(secs(&r["term_to_kill_seconds"], "t2k"), 2.0, "stop signal -> SIGKILL");
}

#[test]
fn shell_entrypoint_that_does_not_forward_term() {
    // `; true` keeps sh from exec'ing sleep: sh stays PID 1, sleep its child.
    let cmd = vec!["sh".into(), "-c".into(), "sleep 1000; true".into()];
    let (r, _d) = case(&["--grace-period", "2"], &cmd, 3);
    assert_eq!(r["comm"], "sh");
    assert_eq!(r["outcome"], "killed");
    assert_eq!(r["stop_signal_ignored"], true);
    assert_eq!(r["stop_signal_handler"], "default");
    within(secs(&r["term_to_kill_seconds"], "t2k"), 2.0, "stop signal -> SIGKILL");
    // The text report names the problem and the fix.
    let text = drill(&["--grace-period", "2"], &cmd);
    assert_eq!(text.status, 3);
    assert!(text.stdout.contains("PID 1 is a shell (sh)"), "{}", text.stdout);
    assert!(text.stdout.contains("fix: exec your server from the entrypoint"), "{}", text.stdout);
    assert!(text.stdout.contains("SIGTERM sent by observer"), "{}", text.stdout);
    assert!(text.stdout.contains("dropped by the kernel: PID 1 has no handler"), "{}", text.stdout);
}

#[test]
fn prestop_finishes_then_term() {
    let (r, d) =
        case(&["--grace-period", "5", "--prestop-exec", "sleep 1"], &handler_exits("TERM"), 0);
    assert_eq!(r["outcome"], "graceful");
    let p = &r["prestop"];
    assert_eq!(p["kind"], "exec", "{r:#}");
    assert_eq!(p["overrun"], false);
    assert_eq!(p["comm"], "sh");
    let dur = secs(&p["duration_seconds"], "prestop");
    assert!((1.0..1.0 + ACT_SLACK).contains(&dur), "{dur}");
    // kubelet sends the stop signal right after the hook returns.
    let gap = (epoch_ns(&r["stop_signal_at"]) - epoch_ns(&p["ended_at"])) as f64 / 1e9;
    assert!((0.0..ACT_SLACK).contains(&gap), "hook end -> stop signal {gap}");
    // The daemon has no metadata in process mode: the hook is an unconfirmed exec session
    // to it, which no preStop series counts (nor any other drill's, all in process mode).
    assert_eq!(d.metric("container_termination_prestop_duration_seconds_count", &[]), 0.0);
}

#[test]
fn prestop_overruns_and_app_exits_on_term() {
    let (r, d) =
        case(&["--grace-period", "3", "--prestop-exec", "sleep 30"], &handler_exits("TERM"), 4);
    assert_eq!(r["outcome"], "graceful");
    assert_eq!(r["sigkill_at"], Value::Null);
    let p = &r["prestop"];
    assert_eq!(p["kind"], "exec", "{r:#}");
    assert_eq!(p["overrun"], true);
    // The stop signal came when the grace period ran out, G after the hook began.
    let hook_to_term = (epoch_ns(&r["stop_signal_at"]) - epoch_ns(&p["started_at"])) as f64 / 1e9;
    within(hook_to_term, 3.0 - 0.05, "hook start -> stop signal");
    // The hook was not cancelled: it died with the container.
    assert!(epoch_ns(&p["ended_at"]) >= epoch_ns(&r["exit_at"]), "{p:#}");
    // Without metadata the daemon cannot tell the hook from any exec: no overrun counted.
    assert_eq!(d.metric("container_termination_prestop_overruns_total", &[]), 0.0);
}

#[test]
fn prestop_overruns_and_app_ignores_term() {
    let (r, d) = case(&["--grace-period", "3", "--prestop-exec", "sleep 30"], &no_handler(), 3);
    assert_eq!(r["outcome"], "killed");
    let p = &r["prestop"];
    assert_eq!(p["kind"], "exec", "{r:#}");
    assert_eq!(p["overrun"], true);
    // SIGKILL 2 s after the stop signal: the floor, not G.
    within(secs(&r["term_to_kill_seconds"], "t2k"), 2.0, "stop signal -> SIGKILL");
    assert_eq!(d.metric("container_termination_prestop_overruns_total", &[]), 0.0);
}

#[test]
fn grace_zero_skips_prestop_and_still_gives_two_seconds() {
    let (r, _d) = case(&["--grace-period", "0", "--prestop-exec", "sleep 30"], &no_handler(), 3);
    assert_eq!(r["grace_period_seconds"], 0);
    assert_eq!(r["prestop"], Value::Null, "no hook runs with G = 0");
    assert_eq!(r["outcome"], "killed");
    within(secs(&r["term_to_kill_seconds"], "t2k"), 2.0, "stop signal -> SIGKILL");
}

#[test]
fn stopsignal_sigquit() {
    let (r, _d) =
        case(&["--grace-period", "5", "--stop-signal", "SIGQUIT"], &handler_exits("QUIT"), 0);
    assert_eq!(r["stop_signal"], "SIGQUIT");
    assert_eq!(r["stop_signal_disposition"], "handled");
    assert_eq!(r["outcome"], "graceful");
    assert_eq!(r["exit_code"], 0);
}

#[test]
fn sleep_prestop_overrun_is_inferred_from_the_stop_window() {
    let (r, _d) = case(&["--grace-period", "3", "--prestop-sleep", "10"], &no_handler(), 3);
    let p = &r["prestop"];
    assert_eq!(p["kind"], "inferred", "{r:#}");
    assert_eq!(p["overrun"], true);
    assert_eq!(p["duration_seconds"], 1.0, "G - G' = 3 - 2");
    assert_eq!(p["started_at"], Value::Null);
    within(secs(&r["term_to_kill_seconds"], "t2k"), 2.0, "stop signal -> SIGKILL");
}

/// A loopback server for the HTTP hook: answers 200 after `delay`; returns the request line.
fn slow_http_server(delay: Duration) -> (String, std::thread::JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/shutdown", l.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "request cut short: {:?}", String::from_utf8_lossy(&req));
            req.extend_from_slice(&buf[..n]);
        }
        std::thread::sleep(delay);
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
        String::from_utf8_lossy(&req).lines().next().unwrap_or_default().to_string()
    });
    (url, h)
}

#[test]
fn http_prestop_within_grace_is_charged_whole_seconds() {
    let (url, server) = slow_http_server(Duration::from_millis(1500));
    let t0 = Instant::now();
    let (r, _d) = case(&["--grace-period", "5", "--prestop-http", &url], &no_handler(), 3);
    assert_eq!(server.join().unwrap(), "GET /shutdown HTTP/1.1");
    // 1.5 s hook, truncated to 1: G' = 5 - 1 = 4.
    within(secs(&r["term_to_kill_seconds"], "t2k"), 4.0, "stop signal -> SIGKILL");
    let p = &r["prestop"];
    assert_eq!(p["kind"], "inferred", "{r:#}");
    assert_eq!(p["overrun"], false);
    assert_eq!(p["duration_seconds"], 1.0);
    assert!(t0.elapsed() >= Duration::from_millis(5500));
}

#[test]
fn usage_errors_exit_2_and_need_a_command() {
    let out = Command::new(observer_bin()).args(["drill", "--grace-period", "5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(observer_bin())
        .args(["drill", "--prestop-sleep", "1", "--prestop-exec", "true", "--", "sleep", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "one preStop hook at most");
    let out = Command::new(observer_bin())
        .args(["drill", "--stop-signal", "SIGKILL", "--", "sleep", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out =
        Command::new(observer_bin()).args(["drill", "--", "no-such-program-x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    // A workload that exits before the stop is an error, not a verdict.
    let out = Command::new(observer_bin())
        .args(["drill", "--start-after", "500ms", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("before any stop signal"));
}
