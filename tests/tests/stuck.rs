//! Stuck terminations on the real kernel: runc containers whose main process cannot die when
//! SIGKILLed, held by the cgroup v1 freezer (v1 leaves a killed task frozen), and a main
//! process that exits but, as its pid namespace's init, waits in zap_pid_ns_processes() for a
//! frozen child. The daemon reports each while it is stuck (outcome `stuck`, with /proc's view)
//! and writes its ordinary record when it goes; the metrics follow.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use observer_tests::{runc_container, unique, Daemon};
use serde_json::Value;

const STUCK_AFTER: &str = "2s";
const WAIT: Duration = Duration::from_secs(20);

/// A cgroup v1 freezer directory: frozen on request, thawed and (if this test made it) removed
/// when dropped.
struct Freezer {
    dir: PathBuf,
    made: bool,
}

impl Freezer {
    /// The container's own freezer cgroup (runc made it), or a child of it made here.
    fn of(cgroup: &str, child: Option<&str>) -> Self {
        let mut dir = PathBuf::from("/sys/fs/cgroup/freezer").join(cgroup.trim_start_matches('/'));
        assert!(
            dir.join("freezer.state").exists(),
            "no cgroup v1 freezer at {} (this test needs the hybrid layout's freezer)",
            dir.display()
        );
        let made = child.is_some();
        if let Some(c) = child {
            dir = dir.join(c);
            std::fs::create_dir(&dir).unwrap();
        }
        Self { dir, made }
    }

    fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }

    fn set(&self, state: &str) {
        std::fs::write(self.dir.join("freezer.state"), state).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(self.dir.join("freezer.state")).unwrap().trim() != state {
            assert!(Instant::now() < deadline, "freezer not {state} in 5 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("freezer.state"), "THAWED");
        if self.made {
            // Empty once its tasks died; runc's own removal may have taken it already.
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.dir.exists() && std::fs::remove_dir(&self.dir).is_err() {
                if Instant::now() > deadline {
                    eprintln!("could not remove {}", self.dir.display());
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn kill(pid: u32, sig: i32) {
    // SAFETY: signalling a process this test started (the container's main process), by pid.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0, "kill {pid}");
}

/// The one child of `pid` (/proc/<pid>/task/<pid>/children).
fn child_of(pid: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let c = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
        if let Some(c) = c.split_whitespace().next() {
            return c.parse().unwrap();
        }
        assert!(Instant::now() < deadline, "{pid} has no child");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stuck_of(cid: &str) -> impl Fn(&Value) -> bool + '_ {
    move |r| r["container_id"] == cid && r["outcome"] == "stuck"
}

fn done_of(cid: &str) -> impl Fn(&Value) -> bool + '_ {
    move |r| r["container_id"] == cid && r["outcome"] != "stuck"
}

fn stuck_gauge(d: &Daemon, ns: &str) -> f64 {
    d.metric("container_terminations_stuck", &[("namespace", ns)])
}

#[test]
fn a_frozen_main_process_is_reported_stuck_then_recorded_when_thawed() {
    let d = Daemon::start_with(None, &["--stuck-after", STUCK_AFTER]);
    let ns = unique("stuck");
    let (pod, cid, runc) = runc_container(&d, &ns, "db-0", &["sleep", "1000"]);
    let pid = runc.pid().unwrap();
    let freezer = Freezer::of(&pod.container_cgroup(&cid), None);
    freezer.set("FROZEN");
    // Not `runc kill`: it thaws a v1 cgroup after a SIGKILL. A SIGKILL from the host, as an
    // operator's or a runtime that does not thaw would send it.
    let killed_at = Instant::now();
    kill(pid, libc::SIGKILL);
    let r = &d.wait_records(1, WAIT, stuck_of(&cid))[0];
    let reported_after = killed_at.elapsed();
    eprintln!("stuck record: {r:#}");
    assert!(reported_after >= Duration::from_secs(2), "{reported_after:?}");
    assert_eq!(r["pid"], pid);
    assert!(r["record_id"].as_str().unwrap().ends_with(":stuck"), "{r:#}");
    assert_eq!(r["exit_at"], Value::Null, "{r:#}");
    assert_eq!(r["exit_code"], Value::Null);
    assert!(r["sigkill_at"].is_string());
    let s = &r["stuck"];
    let secs = s["stuck_seconds"].as_f64().unwrap();
    assert!((2.0..4.0).contains(&secs), "{secs}");
    assert_eq!(s["held_by_children"], false);
    assert_eq!(s["freezer"], "FROZEN", "{s:#}");
    assert_eq!(s["main"]["pid"], pid);
    assert_eq!(s["main"]["comm"], "sleep");
    // A frozen task shows as D in /proc (TASK_FROZEN), its SIGKILL pending.
    assert_eq!(s["main"]["state"], "D", "{s:#}");
    assert_eq!(s["main"]["state_name"], "uninterruptible");
    assert_eq!(s["main"]["sigkill_pending"], true);
    assert!(s["main"]["wchan"].is_string(), "{s:#}");
    let stack = s["main"]["stack"].as_array().expect("root reads the kernel stack here");
    assert!(!stack.is_empty());
    assert!(s["look_at"].as_str().unwrap().contains("freezer is FROZEN"), "{s:#}");
    assert_eq!(r["kubernetes"]["reason"], Value::Null);
    assert_eq!(stuck_gauge(&d, &ns), 1.0, "{}", d.metrics());
    assert_eq!(d.metric("container_terminations_stuck_total", &[("namespace", &ns)]), 1.0);
    // /terminations serves it, and its filter finds it.
    let (code, body) = d.http_get(&format!("/terminations?namespace={ns}&outcome=stuck")).unwrap();
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_str::<Vec<Value>>(&body).unwrap().len(), 1, "{body}");

    // Still stuck: no second report.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.records().into_iter().filter(stuck_of(&cid)).count(), 1);

    freezer.set("THAWED");
    let done = &d.wait_records(1, WAIT, done_of(&cid))[0];
    eprintln!("record: {done:#}");
    assert_eq!(done["outcome"], "killed_without_stop_signal");
    assert_eq!(format!("{}:stuck", done["record_id"].as_str().unwrap()), r["record_id"]);
    assert_eq!(done["stuck"]["reported_at"], r["stuck"]["reported_at"]);
    assert_eq!(done["stuck"]["freezer"], "FROZEN", "what held it, as reported");
    let total = done["stuck"]["stuck_seconds"].as_f64().unwrap();
    assert!(total >= 4.0, "stuck from the SIGKILL to the exit: {total}");
    assert_eq!(done["kubernetes"]["exit_code"], 137);
    assert_eq!(done["kubernetes"]["reason"], "Error");
    assert_eq!(stuck_gauge(&d, &ns), 0.0, "{}", d.metrics());
    drop(freezer);
    drop(runc);
    drop(pod);
}

#[test]
fn a_main_process_held_by_a_child_that_cannot_die_is_stuck_until_released() {
    let d = Daemon::start_with(None, &["--stuck-after", STUCK_AFTER]);
    let ns = unique("held");
    let (pod, cid, runc) = runc_container(&d, &ns, "worker-0", &["sh", "-c", "sleep 1000 & wait"]);
    let pid = runc.pid().unwrap();
    let child = child_of(pid);
    let held = Freezer::of(&pod.container_cgroup(&cid), Some("held"));
    held.add(child);
    held.set("FROZEN");
    // A shell as PID 1 drops SIGTERM; SIGKILL then ends it, and its pid namespace must die
    // with it: the frozen child cannot.
    kill(pid, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    kill(pid, libc::SIGKILL);
    let r = &d.wait_records(1, WAIT, stuck_of(&cid))[0];
    eprintln!("stuck record: {r:#}");
    let s = &r["stuck"];
    assert_eq!(s["held_by_children"], true, "{s:#}");
    // The exit the kernel reported is in the record; the process is not gone.
    assert!(r["exit_at"].is_string(), "{r:#}");
    assert_eq!(s["main"]["pid"], pid);
    assert_ne!(s["main"]["state"], "Z", "{s:#}");
    let stack: Vec<&str> =
        s["main"]["stack"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert!(stack.contains(&"zap_pid_ns_processes"), "{stack:?}");
    let tasks = s["tasks"].as_array().unwrap();
    let t = tasks.iter().find(|t| t["pid"] == child).unwrap_or_else(|| panic!("{s:#}"));
    assert_eq!(t["state"], "D", "{t:#}");
    assert_eq!(t["sigkill_pending"], true);
    assert_eq!(s["freezer"], "FROZEN", "the child's freezer: {s:#}");
    let look_at = s["look_at"].as_str().unwrap();
    assert!(look_at.contains("waits until the other 1 process(es) die"), "{look_at}");
    assert!(look_at.contains(&format!("{child} sleep (uninterruptible")), "{look_at}");
    assert!(look_at.contains("freezer is FROZEN"), "{look_at}");
    assert_eq!(stuck_gauge(&d, &ns), 1.0);
    // Held: the ordinary record waits.
    assert_eq!(d.records().into_iter().filter(done_of(&cid)).count(), 0);

    held.set("THAWED");
    let done = &d.wait_records(1, WAIT, done_of(&cid))[0];
    eprintln!("record: {done:#}");
    assert_eq!(done["outcome"], "killed");
    assert_eq!(done["exit_signal"], "SIGKILL");
    assert_eq!(done["stuck"]["held_by_children"], true);
    assert!(done["stuck"]["released_at"].is_string(), "{done:#}");
    assert!(done["stuck"]["stuck_seconds"].as_f64().unwrap() >= 2.0);
    assert_eq!(done["stop_signal"], "SIGTERM");
    assert_eq!(stuck_gauge(&d, &ns), 0.0);
    drop(held);
    drop(runc);
    drop(pod);
}
