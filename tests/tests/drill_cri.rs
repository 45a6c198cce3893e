//! The scenario matrix through `observer drill --cri-endpoint` against a real containerd 1.6:
//! kubelet's calls (ExecSync for the exec hook, StopContainer with the grace left), the
//! runtime's own stop signal (the image's STOPSIGNAL) and SIGKILL. Each case asserts the
//! drill's record and exit status, and that a daemon watching through the same CRI wrote the
//! same record: names, grace period and preStop from the CRI, timestamps and intervals within
//! 5 ms.
//!
//! One containerd and one daemon serve the cases in sequence: the stop windows are timed by
//! the runtime, and ten private containerds at once on two CPUs would time themselves.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use observer_tests::{
    by_id,
    containerd::{PrivateContainerd, BUSYBOX, BUSYBOX_SIGQUIT},
    epoch_ns, observer_bin, Daemon, INTERVALS, TIMESTAMPS,
};
use serde_json::Value;

/// The runtime's SIGKILL against its timeout: containerd's timer and `runc kill`.
const KILL_SLACK: f64 = 0.3;

struct Case {
    name: &'static str,
    flags: &'static [&'static str],
    image: &'static str,
    cmd: &'static [&'static str],
    status: i32,
    check: fn(&Value),
}

fn t2k(r: &Value) -> f64 {
    r["term_to_kill_seconds"].as_f64().unwrap_or_else(|| panic!("no SIGKILL: {r:#}"))
}

fn killed_after_two_seconds(r: &Value) {
    assert_eq!(r["outcome"], "killed", "{r:#}");
    assert_eq!(r["stop_signal_ignored"], true, "{r:#}");
    assert!((2.0..2.0 + KILL_SLACK).contains(&t2k(r)), "StopContainer(timeout=2): {r:#}");
    // containerd's shim runs `runc kill` for both.
    assert_eq!(r["stop_signal_sender"]["comm"], "runc", "{r:#}");
    assert_eq!(r["sigkill_sender"]["comm"], "runc", "{r:#}");
}

const CASES: &[Case] = &[
    Case {
        name: "handler exits fast",
        flags: &["--grace-period", "5"],
        image: BUSYBOX,
        cmd: &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
        status: 0,
        check: |r| {
            assert_eq!(r["outcome"], "graceful");
            assert_eq!(r["stop_signal_disposition"], "handled");
            assert_eq!(r["exit_code"], 0);
            assert!(r["term_to_exit_seconds"].as_f64().unwrap() < 0.5, "{r:#}");
        },
    },
    Case {
        name: "handler slower than a second, within grace",
        flags: &["--grace-period", "5"],
        image: BUSYBOX,
        cmd: &["sh", "-c", "trap 'sleep 1.2; exit 0' TERM; sleep 1000 & wait"],
        status: 0,
        check: |r| {
            assert_eq!(r["outcome"], "graceful");
            let t2e = r["term_to_exit_seconds"].as_f64().unwrap();
            assert!((1.2..2.0).contains(&t2e), "{r:#}");
        },
    },
    Case {
        name: "PID 1 without a handler",
        flags: &["--grace-period", "2"],
        image: BUSYBOX,
        cmd: &["sleep", "1000"],
        status: 3,
        check: |r| {
            killed_after_two_seconds(r);
            assert_eq!(r["stop_signal_handler"], "default");
        },
    },
    Case {
        name: "SIG_IGN",
        flags: &["--grace-period", "2"],
        image: BUSYBOX,
        cmd: &["sh", "-c", "trap '' TERM; sleep 1000 & wait"],
        status: 3,
        check: |r| {
            killed_after_two_seconds(r);
            assert_eq!(r["stop_signal_handler"], "ignored");
        },
    },
    Case {
        name: "shell entrypoint that does not forward TERM",
        flags: &["--grace-period", "2"],
        image: BUSYBOX,
        cmd: &["sh", "-c", "sleep 1000; true"],
        status: 3,
        check: |r| {
            killed_after_two_seconds(r);
            assert_eq!(r["comm"], "sh");
        },
    },
    Case {
        name: "preStop finishes, then TERM",
        flags: &["--grace-period", "5", "--prestop-exec", "sleep 1"],
        image: BUSYBOX,
        cmd: &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
        status: 0,
        check: |r| {
            assert_eq!(r["outcome"], "graceful");
            let p = &r["prestop"];
            assert_eq!(p["kind"], "exec", "{r:#}");
            assert_eq!(p["overrun"], false, "{r:#}");
            let d = p["duration_seconds"].as_f64().unwrap();
            assert!((1.0..1.5).contains(&d), "{r:#}");
            assert!(epoch_ns(&r["stop_signal_at"]) >= epoch_ns(&p["ended_at"]), "{r:#}");
        },
    },
    Case {
        name: "preStop overruns, app exits on TERM",
        flags: &["--grace-period", "3", "--prestop-exec", "sleep 30"],
        image: BUSYBOX,
        cmd: &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
        status: 4,
        check: |r| {
            assert_eq!(r["outcome"], "graceful");
            assert_eq!(r["sigkill_at"], Value::Null);
            assert_eq!(r["prestop"]["kind"], "exec", "{r:#}");
            assert_eq!(r["prestop"]["overrun"], true, "{r:#}");
            let hook_to_term = (epoch_ns(&r["stop_signal_at"])
                - epoch_ns(&r["prestop"]["started_at"])) as f64
                / 1e9;
            assert!((2.9..3.5).contains(&hook_to_term), "G after the hook began: {r:#}");
        },
    },
    Case {
        name: "preStop overruns, app ignores TERM",
        flags: &["--grace-period", "3", "--prestop-exec", "sleep 30"],
        image: BUSYBOX,
        cmd: &["sleep", "1000"],
        status: 3,
        check: |r| {
            killed_after_two_seconds(r);
            assert_eq!(r["prestop"]["kind"], "exec", "{r:#}");
            assert_eq!(r["prestop"]["overrun"], true, "{r:#}");
        },
    },
    Case {
        name: "grace 0",
        flags: &["--grace-period", "0", "--prestop-exec", "sleep 30"],
        image: BUSYBOX,
        cmd: &["sleep", "1000"],
        status: 3,
        check: |r| {
            killed_after_two_seconds(r);
            assert_eq!(r["grace_period_seconds"], 0);
            assert_eq!(r["prestop"], Value::Null, "no hook runs with G = 0: {r:#}");
        },
    },
    Case {
        name: "image STOPSIGNAL SIGQUIT",
        flags: &["--grace-period", "5"],
        image: BUSYBOX_SIGQUIT,
        cmd: &["sh", "-c", "trap 'exit 0' QUIT; sleep 1000 & wait"],
        status: 0,
        check: |r| {
            assert_eq!(r["stop_signal"], "SIGQUIT", "the runtime used the image's: {r:#}");
            assert_eq!(r["stop_signal_disposition"], "handled");
            assert_eq!(r["outcome"], "graceful");
        },
    },
];

fn assert_same_record(case: &str, drill: &Value, daemon: &Value) {
    let (dm, am) = (drill.as_object().unwrap(), daemon.as_object().unwrap());
    assert_eq!(dm.keys().collect::<Vec<_>>(), am.keys().collect::<Vec<_>>(), "{case}: schema");
    for (k, dv) in dm {
        let av = &am[k];
        let close = |a: &Value, b: &Value, what: &str| {
            assert_eq!(a.is_null(), b.is_null(), "{case}: {what}: drill {a} daemon {b}");
            if !a.is_null() {
                let diff = (epoch_ns(a) - epoch_ns(b)).abs();
                assert!(diff <= 5_000_000, "{case}: {what}: drill {a} daemon {b}");
            }
        };
        match k.as_str() {
            k if TIMESTAMPS.contains(&k) => close(dv, av, k),
            k if INTERVALS.contains(&k) => {
                assert_eq!(dv.is_null(), av.is_null(), "{case}: {k}: drill {dv} daemon {av}");
                if let (Some(a), Some(b)) = (dv.as_f64(), av.as_f64()) {
                    assert!((a - b).abs() <= 0.005, "{case}: {k}: {a} vs {b}");
                }
            }
            // Both judge with the same metadata: the same verdict and window; the observed
            // interval within the clocks' 5 ms.
            "contract" => {
                for f in ["stop_window_seconds", "cause", "grace_used_seconds", "missing"] {
                    assert_eq!(dv[f], av[f], "{case}: contract.{f}");
                }
                for f in ["observed_seconds", "off_by_seconds"] {
                    assert_eq!(dv[f].is_null(), av[f].is_null(), "{case}: contract.{f}");
                    if let (Some(a), Some(b)) = (dv[f].as_f64(), av[f].as_f64()) {
                        assert!((a - b).abs() <= 0.005, "{case}: contract.{f}: {a} vs {b}");
                    }
                }
            }
            "prestop" if !dv.is_null() => {
                for f in ["kind", "overrun", "pid", "comm"] {
                    assert_eq!(dv[f], av[f], "{case}: prestop.{f}");
                }
                close(&dv["started_at"], &av["started_at"], "prestop.started_at");
                close(&dv["ended_at"], &av["ended_at"], "prestop.ended_at");
            }
            _ => assert_eq!(dv, av, "{case}: {k}"),
        }
    }
}

#[test]
fn scenario_matrix_through_containerds_cri() {
    let c = PrivateContainerd::start().expect("private containerd");
    let socket = c.socket.display().to_string();
    let state = c.state.display().to_string();
    let d = Daemon::start_with(
        Some(&c.log_root),
        &["--cri-endpoint", &socket, "--containerd-state", &state],
    );
    for case in CASES {
        let out = Command::new(observer_bin())
            .args(["drill", "--json", "--start-after", "1s", "--cri-endpoint", &socket])
            .args(["--image", case.image])
            .args(case.flags)
            .arg("--")
            .args(case.cmd)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .output()
            .expect("run observer drill");
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            out.status.code(),
            Some(case.status),
            "{}: drill exit status\nstdout:\n{stdout}\nstderr:\n{stderr}\ncontainerd:\n{}",
            case.name,
            c.log()
        );
        let r: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{}: no record ({e}):\n{stdout}\n{stderr}", case.name));
        assert_eq!(r["runtime"], "containerd", "{}: {r:#}", case.name);
        assert_eq!(r["namespace"], "observer-drill", "{}: {r:#}", case.name);
        assert_eq!(r["container"], "workload", "{}: {r:#}", case.name);
        assert_eq!(r["image"], case.image, "{}: {r:#}", case.name);
        (case.check)(&r);
        let cid = r["container_id"].as_str().expect("container id").to_string();
        let theirs = d.wait_records(1, Duration::from_secs(15), by_id(&cid)).remove(0);
        assert_same_record(case.name, &r, &theirs);
    }
    // The drill removed every sandbox it made: the pause containers' SIGKILLs were seen and
    // set aside, not recorded.
    let ignored = || d.metric("observer_terminations_ignored_total", &[("reason", "pod_sandbox")]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ignored() < CASES.len() as f64 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ignored(), CASES.len() as f64, "{}", d.metrics());
    // And none of them became a container record; each drill's pod ended in a pod record.
    let containers = d.records().into_iter().filter(|r| r["kind"] != "pod").count();
    assert_eq!(containers, CASES.len(), "{:#?}", d.records());
    let pods = d.wait_records(CASES.len(), Duration::from_secs(20), |r| r["kind"] == "pod");
    for p in &pods {
        assert_eq!(p["namespace"], "observer-drill", "{p:#}");
        assert_eq!(p["containers"].as_array().unwrap().len(), 1, "{p:#}");
        assert_eq!(p["held_up_by"], "workload", "{p:#}");
    }
}
