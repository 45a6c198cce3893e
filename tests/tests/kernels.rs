//! The kernel matrix: the same scenarios (`tests/vm/scenarios.sh`) against the real static
//! observer on Debian bookworm's cloud kernels 6.1 and 6.12, each booted under qemu with an
//! initramfs of our own (`observer_tests::vm`), and natively on this host's kernel. Every
//! journal record is checked field by field against what the script did: ids and names,
//! outcome, stop signal and whether the kernel dropped it, the handler, SIGKILL and who sent
//! it, exit code or signal, OOM, preStop exec session, and the kernel-clock times, bounded by
//! the script's clock read right before and right after each kill(2). A TCP server's
//! connections around its stop (`traffic`), on the pod network and on a host port, are
//! checked count by count: the kernel's figures, read through offsets that differ per
//! kernel. What the daemon must not record (a host process, a pid namespace's init outside
//! kubepods, a container's own child and nested pid namespace's init) leaves no record, and a
//! signal from inside a container to its main process is only counted.
//!
//! One `#[test]` per kernel, so a failure names it. A kernel not cached, qemu missing or the
//! static binary missing fails the test with what to do.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use observer_tests::{
    cgroup_v2_root, epoch_ns, free_port, require_root, unique,
    vm::{self, Report},
};
use serde_json::{json, Value};

/// A VM's whole run under TCG (boot, preflight, scenarios) takes about a minute.
const VM_TIMEOUT: Duration = Duration::from_secs(600);
const NATIVE_TIMEOUT: Duration = Duration::from_secs(180);
/// Kernel timestamps converted to wall-clock time against the script's wall clock (the
/// daemon samples its offset every tick: observer/src/clock.rs).
const WALL_SLACK: f64 = 0.020;
/// Kernel intervals against the script's interval bounds (both clocks tick at the same
/// rate; EPOCHREALTIME has microseconds).
const INTERVAL_SLACK: f64 = 0.002;
/// The namespace of every scenario's pod (scenarios.sh `NS`).
const NS: &str = "kmatrix";

/// The scenarios that must leave exactly one record, with their pods' workloads.
const RECORDED: &[(&str, &str)] = &[
    ("early", "cache"),
    ("noh", "web"),
    ("handled", "api"),
    ("ignored", "worker"),
    ("oom", "hog"),
    ("prestop", "shop"),
    ("force", "batch"),
    ("threads", "queue"),
    ("threadgroup", "cron"),
    ("noinit", "nginx"),
    ("family", "relay"),
    ("traffic", "gateway"),
    ("hostnet", "edge"),
];

/// The scenarios that must leave no record (README: a main process is the first exec in a
/// watched kubepods cgroup by a process whose parent is outside it), with the status their
/// reaper saw: a host process and a container's child that SIGTERM's default action ends; a
/// pid namespace's init outside kubepods and a nested one inside a container (`family`'s),
/// which drop SIGTERM (SIG_DFL) and end by SIGKILL.
const NOT_CONTAINERS: &[(&str, &str)] =
    &[("hostproc", "143"), ("outside", "137"), ("child", "143"), ("nested", "137")];

#[test]
fn vm_6_1_debian_cloud_kernel() {
    in_vm("6.1");
}

#[test]
fn vm_6_12_debian_cloud_kernel() {
    in_vm("6.12");
}

#[test]
fn native_this_hosts_kernel() {
    require_root();
    let observer = vm::static_observer().unwrap();
    let work = std::env::temp_dir().join(unique("observer-matrix-"));
    let _cleanup = RemoveDir(work.clone());
    std::fs::create_dir_all(&work).unwrap();
    let tag = unique("host");
    let listen = format!("127.0.0.1:{}", free_port());
    let run =
        vm::run_native(&observer, &cgroup_v2_root(), &work, &tag, &listen, NATIVE_TIMEOUT).unwrap();
    let report = Report::parse(&run.markers);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut c = Checker::new(&report, "observer-matrix-host");
    c.eq("kernel", &json!(report.kernel), json!(release.trim()));
    if run.status.is_none_or(|s| !s.success()) {
        c.fail(format!("scenarios.sh: {:?}", run.status));
    }
    c.all();
    let progress = format!("{}{}", run.stdout, run.stderr);
    c.finish(&format!("this host's kernel {}", release.trim()), &progress, run.wall, None);
}

fn in_vm(series: &str) {
    require_root();
    let kernel = vm::kernel(series).unwrap();
    let observer = vm::static_observer().unwrap();
    let out_dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/vm/runs").join(&kernel.release);
    std::fs::create_dir_all(&out_dir).unwrap();
    let initrd = out_dir.join("initramfs.cpio");
    std::fs::write(&initrd, vm::initramfs(&observer).unwrap()).unwrap();
    let boot = vm::boot(&kernel, &initrd, &out_dir, VM_TIMEOUT);
    let _ = std::fs::remove_file(&initrd);
    let boot = boot.unwrap();
    let report = Report::parse(&boot.data);
    let mut c = Checker::new(&report, "observer-vm");
    c.pure_v2 = true;
    c.eq("kernel", &json!(report.kernel), json!(kernel.release));
    c.all();
    c.finish(
        &format!("kernel {} ({})", kernel.release, kernel.package),
        &boot.console_tail(60),
        boot.wall,
        boot.boot,
    );
}

/// Removes a directory when dropped.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Collects every mismatch of a run instead of stopping at the first: a kernel's whole
/// picture in one failure.
struct Checker<'a> {
    r: &'a Report,
    node: &'static str,
    /// The guest mounts cgroup2 alone: the OOM case must take the memory.max path.
    pure_v2: bool,
    fails: Vec<String>,
}

impl<'a> Checker<'a> {
    fn new(r: &'a Report, node: &'static str) -> Self {
        Self { r, node, pure_v2: false, fails: Vec::new() }
    }

    fn fail(&mut self, msg: String) {
        self.fails.push(msg);
    }

    fn eq(&mut self, what: &str, actual: &Value, expected: Value) {
        if *actual != expected {
            self.fail(format!("{what}: {actual} (expected {expected})"));
        }
    }

    /// A fact as a number (a time in seconds since the epoch, a pid).
    fn num(&mut self, scenario: &str, key: &str) -> f64 {
        match self.r.fact(scenario, key).and_then(|v| v.parse().ok()) {
            Some(v) => v,
            None => {
                self.fail(format!("{scenario}: the script reported no {key}"));
                f64::NAN
            }
        }
    }

    fn within(&mut self, what: &str, v: Option<f64>, lo: f64, hi: f64) {
        match v {
            Some(v) if v >= lo && v <= hi => {}
            Some(v) => self.fail(format!("{what}: {v:.6} outside [{lo:.6}, {hi:.6}]")),
            None => self.fail(format!("{what}: missing")),
        }
    }

    /// A record's RFC 3339 time as seconds since the epoch.
    fn wall(&mut self, what: &str, v: &Value) -> Option<f64> {
        if !v.is_string() {
            self.fail(format!("{what}: {v} (expected a time)"));
            return None;
        }
        Some(epoch_ns(v) as f64 / 1e9)
    }

    fn all(&mut self) {
        self.preflight();
        if !self.r.errors.is_empty() {
            self.fail(format!("scenarios.sh stopped: {:?}", self.r.errors));
        }
        if !self.r.garbled.is_empty() {
            self.fail(format!("marker lines that do not parse: {:#?}", self.r.garbled));
        }
        self.eq("scenarios.sh exit status", &json!(self.r.end), json!(0));
        if self.r.errors.is_empty() {
            self.eq(
                "the daemon's exit status after SIGTERM",
                &json!(self.r.fact("daemon", "exit")),
                json!("0"),
            );
            self.eq(
                "observer cleanup after the daemon",
                &json!(self.r.fact("daemon", "cleanup")),
                json!("0"),
            );
            self.eq(
                "pins left after observer cleanup",
                &json!(self.r.fact("daemon", "pins_left")),
                json!(null),
            );
        }
        // A scenario is checked once the script saw its end (reaped its processes): after a
        // failure of the script, only what ran is.
        let done = |s: &str| self.r.fact(s, "status").is_some();
        let not_run: Vec<&str> = RECORDED
            .iter()
            .map(|(s, _)| *s)
            .chain(NOT_CONTAINERS.iter().map(|(s, _)| *s))
            .filter(|s| !done(s))
            .collect();
        if !not_run.is_empty() {
            self.fail(format!("scenarios not run to their end: {not_run:?}"));
        }
        let ids: Vec<(&str, &str, String)> = RECORDED
            .iter()
            .filter(|(s, _)| done(s))
            .map(|(s, w)| (*s, *w, self.r.fact(s, "cid").unwrap_or("?").to_string()))
            .collect();
        for (scenario, workload, cid) in &ids {
            let recs: Vec<&Value> =
                self.r.journal.iter().filter(|r| r["container_id"] == cid.as_str()).collect();
            match recs[..] {
                [r] => self.record(scenario, workload, r),
                _ => self.fail(format!("{scenario}: {} records for container {cid}", recs.len())),
            }
        }
        // The daemon sees every kubepods container on the node (natively, other tests' too):
        // only records of our namespace are ours, and each is one of the above.
        for r in &self.r.journal {
            if r["namespace"] == NS && !ids.iter().any(|(_, _, c)| r["container_id"] == c.as_str())
            {
                self.fail(format!("unexpected record: {r}"));
            }
        }
        self.not_containers(&not_run);
        if !not_run.contains(&"family") {
            self.self_signal();
        }
    }

    /// Scenario 1: every `observer check` line passes and the exit status is 0.
    fn preflight(&mut self) {
        if self.r.check.is_empty() {
            self.fail("observer check printed nothing".into());
        }
        let failed: Vec<&String> = self
            .r
            .check
            .iter()
            .filter(|l| !l.starts_with("PASS ") && !l.starts_with("all "))
            .collect();
        if !failed.is_empty() {
            self.fail(format!("observer check: {failed:#?}"));
        }
        self.eq("observer check exit status", &json!(self.r.check_exit), json!(0));
    }

    /// Scenarios 5 and 8: a host process, a pid namespace's init outside kubepods, and a
    /// container's child and nested pid namespace's init leave no record at all (the family
    /// container's one record, checked as RECORDED, is its PID 1's).
    fn not_containers(&mut self, not_run: &[&str]) {
        for (scenario, status) in NOT_CONTAINERS.iter().filter(|(s, _)| !not_run.contains(s)) {
            let pid = self.num(scenario, "pid");
            let (start, gone) = (self.num(scenario, "start"), self.num(scenario, "gone"));
            // Natively, another container may get the same pid later (the daemon records every
            // kubepods container on the node): only an exit while it lived is its.
            let stray: Vec<&Value> = self
                .r
                .journal
                .iter()
                .filter(|r| r["pid"].as_f64() == Some(pid))
                .filter(|r| {
                    r["exit_at"].is_string()
                        && (start - 1.0..=gone + 1.0)
                            .contains(&(epoch_ns(&r["exit_at"]) as f64 / 1e9))
                })
                .collect();
            if !stray.is_empty() {
                self.fail(format!("{scenario} (pid {pid}) was recorded: {stray:#?}"));
            }
            // 143: SIGTERM's default action ended it; 137: a pid namespace's init, which
            // dropped SIGTERM, ended by SIGKILL.
            let seen = json!(self.r.fact(scenario, "status"));
            self.eq(&format!("{scenario}: exit status"), &seen, json!(status));
            if *scenario == "nested" {
                self.eq(
                    "nested: alive after SIGTERM",
                    &json!(self.r.fact(scenario, "alive_after_term")),
                    json!("yes"),
                );
            }
        }
    }

    /// Scenario 8: `kill -TERM <PID 1>` by an exec session inside the family container is
    /// counted in observer_container_self_signals_total (on this host natively, other
    /// containers' may be counted too) and is neither a record nor the family record's stop
    /// signal (checked as RECORDED: killed without a stop signal).
    fn self_signal(&mut self) {
        let kill = json!(self.r.fact("selfsig", "kill_status"));
        self.eq("selfsig: the exec session's kill status", &kill, json!("0"));
        let alive = json!(self.r.fact("family", "alive_after_self_signal"));
        self.eq("family: PID 1 alive after its own SIGTERM", &alive, json!("yes"));
        let count = |c: &mut Self, key: &str| match c.r.fact("selfsig", key) {
            Some(v) => v.parse::<f64>().ok().or_else(|| {
                c.fail(format!("selfsig: observer_container_self_signals_total {key}: {v}"));
                None
            }),
            None => {
                c.fail(format!("selfsig: the script reported no {key}"));
                None
            }
        };
        if let (Some(before), Some(after)) = (count(self, "before"), count(self, "after")) {
            let what = "selfsig: observer_container_self_signals_total after - before";
            if self.pure_v2 {
                self.eq(what, &json!(after - before), json!(1.0));
            } else if after - before < 1.0 {
                self.fail(format!("{what}: {} (expected at least 1)", after - before));
            }
        }
    }

    fn record(&mut self, s: &str, workload: &str, r: &Value) {
        let what = |field: &str| format!("{s}: {field}");
        // Who: every name from kubelet's log layout and the cgroup path (no CRI here).
        for key in ["namespace", "pod", "pod_uid", "container", "cgroup"] {
            self.eq(&what(key), &r[key], json!(self.r.fact(s, key)));
        }
        self.eq(&what("workload"), &r["workload"], json!(workload));
        self.eq(&what("node"), &r["node"], json!(self.node));
        let pid = self.num(s, "pid") as u64;
        self.eq(&what("pid"), &r["pid"], json!(pid));
        self.eq(&what("comm"), &r["comm"], json!(self.r.fact(s, "comm")));
        self.eq(&what("grace_period_seconds"), &r["grace_period_seconds"], Value::Null);
        self.eq(&what("image"), &r["image"], Value::Null);
        // The script's shell is outside every container.
        let script = json!({
            "pid": self.num("script", "pid") as u64,
            "comm": self.r.fact("script", "comm"),
            "from": "host",
        });
        // How it ended, against what its reaper saw (unshare, or this shell for `noinit`: the
        // main process's code, or 128 + its signal).
        let status = self.num(s, "status");
        if status == 137.0 || status == 143.0 {
            let signal = if status == 137.0 { "SIGKILL" } else { "SIGTERM" };
            self.eq(&what("exit_signal"), &r["exit_signal"], json!(signal));
            self.eq(&what("exit_code"), &r["exit_code"], Value::Null);
        } else {
            self.eq(&what("exit_code"), &r["exit_code"], json!(status as u64));
            self.eq(&what("exit_signal"), &r["exit_signal"], Value::Null);
        }
        let gone = self.num(s, "gone");
        let exit_at = self.wall(&what("exit_at"), &r["exit_at"]);
        let ts = self.wall(&what("ts"), &r["ts"]);
        if let (Some(ts), Some(exit)) = (ts, exit_at) {
            self.within(&what("ts (not before the exit)"), Some(ts), exit - 1e-6, f64::MAX);
        }

        // The stop signal (SIGTERM from this script) and what the kernel did with it.
        let stopped = self.r.fact(s, "term_a").is_some();
        let stop_at =
            if stopped { self.wall(&what("stop_signal_at"), &r["stop_signal_at"]) } else { None };
        let (term_a, term_b) =
            if stopped { (self.num(s, "term_a"), self.num(s, "term_b")) } else { (0.0, 0.0) };
        match s {
            "noh" | "early" | "ignored" => {
                self.eq(&what("stop_signal_ignored"), &r["stop_signal_ignored"], json!(true));
                self.eq(
                    &what("stop_signal_disposition"),
                    &r["stop_signal_disposition"],
                    Value::Null,
                );
                let handler = if s == "ignored" { "ignored" } else { "default" };
                self.eq(&what("stop_signal_handler"), &r["stop_signal_handler"], json!(handler));
                if s != "early" {
                    self.eq(
                        &what("alive after SIGTERM"),
                        &json!(self.r.fact(s, "alive_after_term")),
                        json!("yes"),
                    );
                }
            }
            // SIGTERM blocked in every thread and taken by sigwait() (tests/progs/
            // threads_exit.c): not dropped (a blocked signal is queued, kernel/signal.c
            // sig_ignored()), never delivered through get_signal() (no signal_deliver), and
            // "blocked" when sent (in the blocked mask: the process takes it itself).
            "threads" | "threadgroup" => {
                self.eq(&what("stop_signal_ignored"), &r["stop_signal_ignored"], json!(false));
                self.eq(
                    &what("stop_signal_disposition"),
                    &r["stop_signal_disposition"],
                    Value::Null,
                );
                self.eq(&what("stop_signal_handler"), &r["stop_signal_handler"], json!("blocked"));
            }
            // No pid namespace's init, SIG_DFL: nothing protects it. Never delivered as
            // itself: a fatal default action is taken at generation (kernel/signal.c
            // complete_signal() starts the group exit and queues SIGKILL to every thread), so
            // signal_deliver fires for SIGKILL, never for SIGTERM.
            "noinit" => {
                self.eq(&what("stop_signal_ignored"), &r["stop_signal_ignored"], json!(false));
                self.eq(
                    &what("stop_signal_disposition"),
                    &r["stop_signal_disposition"],
                    Value::Null,
                );
                self.eq(&what("stop_signal_handler"), &r["stop_signal_handler"], json!("default"));
            }
            "handled" | "prestop" | "traffic" | "hostnet" => {
                self.eq(&what("stop_signal_ignored"), &r["stop_signal_ignored"], json!(false));
                self.eq(
                    &what("stop_signal_disposition"),
                    &r["stop_signal_disposition"],
                    json!("handled"),
                );
                self.eq(&what("stop_signal_handler"), &r["stop_signal_handler"], json!("handled"));
            }
            _ => {}
        }
        if stopped {
            self.eq(&what("stop_signal"), &r["stop_signal"], json!("SIGTERM"));
            self.eq(&what("stop_signal_sender"), &r["stop_signal_sender"], script.clone());
            self.within(&what("stop_signal_at"), stop_at, term_a - WALL_SLACK, term_b + WALL_SLACK);
        } else {
            for key in [
                "stop_signal",
                "stop_signal_at",
                "stop_signal_sender",
                "stop_signal_ignored",
                "stop_signal_disposition",
                "stop_signal_handler",
                "term_to_exit_seconds",
                "term_to_kill_seconds",
            ] {
                self.eq(&what(key), &r[key], Value::Null);
            }
        }

        // SIGKILL: from this script, or from the OOM killer.
        let killed = self.r.fact(s, "kill_a").is_some();
        let kill_at = if killed || s == "oom" {
            self.wall(&what("sigkill_at"), &r["sigkill_at"])
        } else {
            None
        };
        if killed {
            let (kill_a, kill_b) = (self.num(s, "kill_a"), self.num(s, "kill_b"));
            self.eq(&what("sigkill_sender"), &r["sigkill_sender"], script.clone());
            self.within(&what("sigkill_at"), kill_at, kill_a - WALL_SLACK, kill_b + WALL_SLACK);
            self.within(&what("exit_at"), exit_at, kill_a - WALL_SLACK, gone + WALL_SLACK);
            if stopped {
                self.within(
                    &what("term_to_kill_seconds"),
                    r["term_to_kill_seconds"].as_f64(),
                    kill_a - term_b - INTERVAL_SLACK,
                    kill_b - term_a + INTERVAL_SLACK,
                );
                self.within(
                    &what("term_to_exit_seconds"),
                    r["term_to_exit_seconds"].as_f64(),
                    kill_a - term_b - INTERVAL_SLACK,
                    gone - term_a + INTERVAL_SLACK,
                );
                self.eq(&what("outcome"), &r["outcome"], json!("killed"));
            } else {
                self.eq(&what("outcome"), &r["outcome"], json!("killed_without_stop_signal"));
            }
        } else if s == "oom" {
            self.eq(&what("outcome"), &r["outcome"], json!("oom_killed"));
            if self.pure_v2 {
                self.eq(&what("memory limit"), &json!(self.r.fact(s, "memory")), json!("v2"));
            }
            // The OOM killer runs in the task whose charge failed (mm/memcontrol.c
            // try_charge -> mem_cgroup_oom -> out_of_memory): PID 1, the only task there.
            self.eq(&what("sigkill_sender.pid"), &r["sigkill_sender"]["pid"], json!(pid));
            self.within(&what("sigkill_at"), kill_at, 0.0, gone + WALL_SLACK);
            self.within(
                &what("exit_at"),
                exit_at,
                kill_at.unwrap_or(0.0) - 1e-6,
                gone + WALL_SLACK,
            );
        } else {
            self.eq(&what("outcome"), &r["outcome"], json!("graceful"));
            self.eq(&what("sigkill_at"), &r["sigkill_at"], Value::Null);
            self.eq(&what("sigkill_sender"), &r["sigkill_sender"], Value::Null);
            self.eq(&what("term_to_kill_seconds"), &r["term_to_kill_seconds"], Value::Null);
            self.within(&what("exit_at"), exit_at, term_a - WALL_SLACK, gone + WALL_SLACK);
            // The threaded PID 1s end with their last thread, delay_ms after SIGTERM.
            let delay = self.r.fact(s, "delay_ms").and_then(|v| v.parse::<f64>().ok());
            self.within(
                &what("term_to_exit_seconds"),
                r["term_to_exit_seconds"].as_f64(),
                delay.map_or(-INTERVAL_SLACK, |ms| ms / 1000.0),
                gone - term_a + INTERVAL_SLACK,
            );
        }
        // Intervals are differences of the same kernel timestamps the times come from.
        let exact = |c: &mut Self, field: &str, a: Option<f64>, b: Option<f64>| {
            if let (Some(a), Some(b), Some(v)) = (a, b, r[field].as_f64()) {
                c.within(&what(field), Some(v), b - a - 1e-6, b - a + 1e-6);
            }
        };
        exact(self, "term_to_kill_seconds", stop_at, kill_at);
        exact(self, "term_to_exit_seconds", stop_at, exit_at);

        // 7. The exec session right before the stop: the preStop.
        if s == "prestop" {
            let p = &r["prestop"];
            // No metadata in the VM: the session is reported as what it is, unconfirmed.
            self.eq(&what("prestop.kind"), &p["kind"], json!("session"));
            self.eq(&what("prestop.comm"), &p["comm"], json!("sleep"));
            let hook_pid = self.num(s, "hook_pid") as u64;
            self.eq(&what("prestop.pid"), &p["pid"], json!(hook_pid));
            self.eq(&what("prestop.overrun"), &p["overrun"], json!(false));
            self.eq(&what("hook exit status"), &json!(self.r.fact(s, "hook_status")), json!("0"));
            let (a, b) = (self.num(s, "hook_a"), self.num(s, "hook_b"));
            self.within(
                &what("prestop.duration_seconds"),
                p["duration_seconds"].as_f64(),
                1.0,
                b - a,
            );
            let started = self.wall(&what("prestop.started_at"), &p["started_at"]);
            let ended = self.wall(&what("prestop.ended_at"), &p["ended_at"]);
            self.within(&what("prestop.started_at"), started, a - WALL_SLACK, b + WALL_SLACK);
            self.within(
                &what("prestop.ended_at"),
                ended,
                a - WALL_SLACK,
                stop_at.unwrap_or(b) + 1e-6,
            );
        } else {
            self.eq(&what("prestop"), &r["prestop"], Value::Null);
        }

        // 9. The connections around the stop.
        if s == "traffic" || s == "hostnet" {
            self.traffic(s, r, stop_at, exit_at);
        } else {
            // Every other main process shares its parent's network namespace (a host-network
            // container) and never listens: nothing is counted for it.
            self.eq(&what("traffic"), &r["traffic"], Value::Null);
        }
    }

    /// Scenario 9: tcp_hold's connections (tests/progs/tcp_hold.c), HELD open at the stop
    /// signal, LATE more accepted after it (the server saw the signal first), its listener
    /// closed, then SIGKILL with every connection open (its clients, outside the container,
    /// live on). Per connection, `traffic` (observer/src/traffic.rs) counts:
    /// - on the pod network (`traffic`): a loopback connection inside the pod's namespace has
    ///   both ends there, so 2 established (the client's SYN_SENT -> ESTABLISHED and the
    ///   server's SYN_RECV -> ESTABLISHED) but 1 accepted (passive opens only);
    /// - on a host port (`hostnet`): only the server's end (its local port is the listening
    ///   one; the client's is an ephemeral port), so 1 established and 1 accepted.
    ///
    /// So established at the stop signal = per * HELD; at SIGKILL and at the exit (before the
    /// exit closes the server's files) per * (HELD + LATE), every one of them cut by the
    /// SIGKILL; accepted after the stop signal = LATE; one listener at the stop, none at the
    /// exit. A wrong BTF offset (net.net_cookie, sock_common.skc_net, task_struct.nsproxy,
    /// nsproxy.net_ns) would count nothing, or someone else's.
    fn traffic(&mut self, s: &str, r: &Value, stop_at: Option<f64>, exit_at: Option<f64>) {
        let what = |field: &str| format!("{s}: traffic.{field}");
        let t = &r["traffic"];
        if !t.is_object() {
            self.fail(format!("{s}: traffic: {t} (expected the connections' counts)"));
            return;
        }
        let pod = self.r.fact(s, "net") == Some("pod");
        let per = if pod { 2 } else { 1 };
        let held = self.num(s, "held") as u64;
        let late = self.num(s, "late") as u64;
        let port = self.num(s, "port") as u64;
        let alive = json!(self.r.fact(s, "clients_alive"));
        self.eq(
            &format!("{s}: clients alive at the SIGKILL"),
            &alive,
            json!((held + late).to_string()),
        );
        if pod {
            self.eq(&what("scope"), &t["scope"], json!("pod_network"));
            self.eq(&what("ports"), &t["ports"], Value::Null);
        } else {
            self.eq(&what("scope"), &t["scope"], json!("host_ports"));
            self.eq(&what("ports"), &t["ports"], json!([port]));
        }
        self.eq(&what("counted_from"), &t["counted_from"], json!("container_start"));
        // The clients run inside the pod's namespace (nsenter) and connect over loopback: in a
        // pod's network those are the pod's own connections (`sk_rx_dst_ifindex` is lo's),
        // counted apart from clients'; a host port counts loopback clients as clients.
        let (clients, inside) = if pod { (0, late) } else { (late, 0) };
        self.eq(
            &what("accepted_after_stop_signal"),
            &t["accepted_after_stop_signal"],
            json!(clients),
        );
        self.eq(
            &what("from_pod_after_stop_signal"),
            &t["from_pod_after_stop_signal"],
            json!(inside),
        );
        self.eq(&what("from_node_after_stop_signal"), &t["from_node_after_stop_signal"], json!(0));
        self.eq(
            &what("established_at_stop_signal"),
            &t["established_at_stop_signal"],
            json!(per * held),
        );
        let open = json!(per * (held + late));
        self.eq(&what("established_at_sigkill"), &t["established_at_sigkill"], open.clone());
        self.eq(&what("established_at_exit"), &t["established_at_exit"], open.clone());
        self.eq(&what("cut_by_sigkill"), &t["cut_by_sigkill"], open);
        self.eq(&what("listening_at_stop_signal"), &t["listening_at_stop_signal"], json!(1));
        self.eq(&what("listening_at_exit"), &t["listening_at_exit"], json!(0));
        self.eq(
            &what("stopped_accepting_before_exit"),
            &t["stopped_accepting_before_exit"],
            json!(true),
        );
        // The last passive open: after the last client was started, before the server said
        // it accepted it; the listener's close after that, before the server said it closed.
        let (term_a, term_b) = (self.num(s, "term_a"), self.num(s, "term_b"));
        let (connect_a, accept_b) = (self.num(s, "last_connect_a"), self.num(s, "last_accept_b"));
        let closed_b = self.num(s, "closed_b");
        let last = t["last_accepted_after_stop_signal_seconds"].as_f64();
        if pod {
            // No client's connection: the pod's own have no "last" of their own.
            self.eq(&what("last_accepted_after_stop_signal_seconds"), &json!(last), Value::Null);
            self.eq(&what("still_arriving_at_exit"), &t["still_arriving_at_exit"], json!(false));
        } else {
            self.within(
                &what("last_accepted_after_stop_signal_seconds"),
                last,
                connect_a - term_b - INTERVAL_SLACK,
                accept_b - term_a + INTERVAL_SLACK,
            );
        }
        let closed = t["listeners_closed_after_stop_signal_seconds"].as_f64();
        self.within(
            &what("listeners_closed_after_stop_signal_seconds"),
            closed,
            last.unwrap_or(connect_a - term_b - INTERVAL_SLACK),
            closed_b - term_a + INTERVAL_SLACK,
        );
        // Still arriving: the last passive open within 1 s of the exit (STILL_ARRIVING_NS), on
        // the record's own kernel times (a boundary case within 10 us is not judged).
        if pod {
            // Judged above: no client connection came.
        } else if let (Some(stop), Some(exit), Some(last)) = (stop_at, exit_at, last) {
            let gap = exit - (stop + last);
            if (gap - 1.0).abs() > 1e-5 {
                self.eq(
                    &format!("{}, {gap:.6} s before the exit", what("still_arriving_at_exit")),
                    &t["still_arriving_at_exit"],
                    json!(gap <= 1.0),
                );
            }
        } else {
            self.fail(format!("{}: not judged: {t}", what("still_arriving_at_exit")));
        }
    }

    /// Panics with every mismatch and what explains them; else prints the run's summary.
    fn finish(self, name: &str, progress: &str, wall: Duration, boot: Option<Duration>) {
        let boot =
            boot.map(|b| format!(", boot to init {:.1} s", b.as_secs_f64())).unwrap_or_default();
        let summary = format!(
            "{name}: {:.1} s{boot}; {}\ncheck:\n  {}\nrecords:\n{}",
            wall.as_secs_f64(),
            self.r.version.as_deref().unwrap_or("(no /proc/version)"),
            self.r.check.join("\n  "),
            self.records()
        );
        if self.fails.is_empty() {
            eprintln!("{summary}");
            return;
        }
        panic!(
            "{name}: {} mismatches:\n- {}\n\n{summary}\ndaemon log (last 30 lines):\n{}\nprogress:\n{progress}",
            self.fails.len(),
            self.fails.join("\n- "),
            vm::tail(&self.r.daemon_log.join("\n"), 30),
        );
    }

    /// The scenarios' records, one line each.
    fn records(&self) -> String {
        RECORDED
            .iter()
            .filter_map(|(s, _)| {
                let cid = self.r.fact(s, "cid")?;
                let r = self.r.journal.iter().find(|r| r["container_id"] == cid)?;
                Some(format!("  {s:8} {r}"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
