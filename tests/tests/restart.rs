//! Restarts: the probes are pinned (`kernel/pins.rs`), so the kernel keeps recording while no
//! daemon runs and the next daemon reads on; one daemon per pin directory and journal;
//! `observer cleanup` leaves no program attached and no pin, as the kernel itself reports.
//!
//! A termination that spans a restart (its stop signal read by one daemon, its SIGKILL or exit
//! by the next) is made whole from what the kernel keeps in the main process's entry: at start
//! the records of terminations in flight open again, and an exit event carries its signals.

use std::{path::Path, process::Command, time::Duration};

use observer_tests::{
    by_id, cleanup_pins, observer_bin, runc_container, unique, wait_handler, Daemon, Exit,
    MemoryLimit, NsInit, Pod, MEMORY_HOG,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

/// Program ids the kernel has loaded whose name is one of observer's (bpftool's view).
fn observer_programs() -> Vec<u64> {
    let out = Command::new("bpftool").args(["-j", "prog", "show"]).output().expect("bpftool");
    assert!(out.status.success(), "bpftool prog show: {}", String::from_utf8_lossy(&out.stderr));
    let progs: Vec<Value> = serde_json::from_slice(&out.stdout).expect("bpftool json");
    progs
        .iter()
        .filter(|p| {
            p["name"].as_str().is_some_and(|n| {
                [
                    "signal_generat",
                    "signal_deliver",
                    "sched_process_",
                    "cgroup_mkdir",
                    "cgroup_rmdir",
                    "oom_mark_victim",
                ]
                .iter()
                .any(|o| n.starts_with(o))
            })
        })
        .filter_map(|p| p["id"].as_u64())
        .collect()
}

/// The pins under `dir` (recursively).
fn pins(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(pins(&e.path()));
        } else {
            out.push(e.path().display().to_string());
        }
    }
    out.sort();
    out
}

/// A container is started, stopped and gone while no daemon runs (the previous one ended by
/// `how`): the next daemon still writes its one right record, from the pinned ring.
fn stopped_while_down(how: Exit) {
    let mut d = Daemon::start();
    let pin_dir = d.pin_dir.clone().expect("a pin dir of its own");
    d.stop(how);
    // The probes are still attached: the daemon is gone, its pinned links are not.
    let layout: Vec<String> = pins(&pin_dir);
    assert!(layout.iter().any(|p| p.ends_with("/EVENTS")), "{layout:?}");
    assert!(layout.iter().any(|p| p.ends_with("/link_signal_generate")), "{layout:?}");
    let ns = unique("down");
    let (pod, cid, runc) = runc_container(
        &d,
        &ns,
        "api-7d4b9c6f8-x2k9p",
        &["sh", "-c", "trap 'exit 3' TERM; sleep 1000 & wait"],
    );
    let pid = runc.pid().unwrap();
    term_when_trapped(&runc);
    wait_stopped(&runc);
    drop(runc);
    d.start_again();
    let r = &d.wait_records(1, WAIT, by_id(&cid))[0];
    eprintln!("record: {r:#}\nlog:\n{}", d.log());
    assert_eq!(r["pid"], pid);
    assert_eq!(r["namespace"], ns.as_str());
    assert_eq!(r["outcome"], "graceful");
    assert_eq!(r["exit_code"], 3);
    assert_eq!(r["stop_signal"], "SIGTERM");
    assert_eq!(r["stop_signal_handler"], "handled");
    assert_eq!(r["stop_signal_sender"]["comm"], "runc");
    assert_eq!(r["stop_signal_sender"]["from"], "host");
    let t = r["term_to_exit_seconds"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&t), "kernel-clock interval {t}");
    assert!(d.log().contains("adopting the probes pinned at"), "{}", d.log());
    assert_eq!(d.metric("observer_events_lost_total", &[]), 0.0);
    // Every event of it was in the ring: nothing is missing.
    assert_eq!(r["incomplete"], Value::Null);
    drop(pod);
}

#[test]
fn a_container_stopped_while_the_daemon_was_stopped_is_recorded() {
    stopped_while_down(Exit::Term);
}

#[test]
fn a_container_stopped_while_the_daemon_was_killed_is_recorded() {
    stopped_while_down(Exit::Kill);
}

/// `runc kill TERM` once the container's shell has its SIGTERM trap (and is in `wait`).
fn term_when_trapped(runc: &observer_tests::Runc) {
    wait_handler(runc.pid().unwrap(), libc::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    runc.kill("TERM").unwrap();
}

/// Waits until `runc` reports the container gone from running.
fn wait_stopped(runc: &observer_tests::Runc) {
    let deadline = std::time::Instant::now() + WAIT;
    while runc.status() == "running" {
        assert!(std::time::Instant::now() < deadline, "the container did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Its stop signal seen by one daemon (which then ends by `how`), its SIGKILL by the next: one
/// record, killed after that stop signal, the interval from the kernel's clock.
fn stop_signal_before_sigkill_after(how: Exit) {
    let mut d = Daemon::start();
    let ns = unique("span");
    let (pod, cid, runc) = runc_container(&d, &ns, "web-7d4b9c6f8-x2k9p", &["sleep", "1000"]);
    let pid = runc.pid().unwrap();
    runc.kill("TERM").unwrap();
    // The first daemon reads it (its record opens), then ends.
    std::thread::sleep(Duration::from_millis(300));
    d.stop(how);
    d.start_again();
    std::thread::sleep(Duration::from_millis(700));
    runc.kill("KILL").unwrap();
    wait_stopped(&runc);
    let recs = d.wait_records(1, WAIT, by_id(&cid));
    let r = &recs[0];
    eprintln!("record: {r:#}\nlog:\n{}", d.log());
    assert_eq!(r["pid"], pid);
    assert_eq!(r["outcome"], "killed");
    assert_eq!(r["stop_signal"], "SIGTERM");
    assert_eq!(r["stop_signal_ignored"], true);
    assert_eq!(r["stop_signal_handler"], "default");
    assert_eq!(r["stop_signal_sender"]["comm"], "runc");
    assert_eq!(r["stop_signal_sender"]["from"], "host");
    assert_eq!(r["sigkill_sender"]["comm"], "runc");
    assert_eq!(r["exit_signal"], "SIGKILL");
    let t2k = r["term_to_kill_seconds"].as_f64().unwrap();
    assert!((0.9..5.0).contains(&t2k), "TERM to KILL on the kernel clock: {t2k}");
    assert!(d.log().contains("terminations in flight"), "{}", d.log());
    assert_eq!(r["incomplete"], serde_json::json!(["kernel_summary"]));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.records().iter().filter(|r| r["container_id"] == cid.as_str()).count(), 1);
    drop(runc);
    drop(pod);
}

/// Its stop signal seen by one daemon (which then ends by `how`), its exit while no daemon
/// runs: the next daemon reads the exit, which carries the stop signal the kernel kept.
fn stop_signal_before_exit_while_down(how: Exit) {
    let mut d = Daemon::start();
    let ns = unique("spanx");
    let (pod, cid, runc) = runc_container(
        &d,
        &ns,
        "api-7d4b9c6f8-x2k9p",
        &["sh", "-c", "trap 'sleep 1; exit 3' TERM; sleep 1000 & wait"],
    );
    let pid = runc.pid().unwrap();
    term_when_trapped(&runc);
    std::thread::sleep(Duration::from_millis(200));
    d.stop(how);
    wait_stopped(&runc);
    d.start_again();
    let recs = d.wait_records(1, WAIT, by_id(&cid));
    let r = &recs[0];
    eprintln!("record: {r:#}\nlog:\n{}", d.log());
    assert_eq!(r["pid"], pid);
    assert_eq!(r["outcome"], "graceful");
    assert_eq!(r["exit_code"], 3);
    assert_eq!(r["stop_signal"], "SIGTERM");
    assert_eq!(r["stop_signal_handler"], "handled");
    assert_eq!(r["stop_signal_sender"]["comm"], "runc");
    let t = r["term_to_exit_seconds"].as_f64().unwrap();
    assert!((0.9..5.0).contains(&t), "TERM to exit on the kernel clock: {t}");
    assert_eq!(r["incomplete"], serde_json::json!(["kernel_summary"]));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.records().iter().filter(|r| r["container_id"] == cid.as_str()).count(), 1);
    drop(runc);
    drop(pod);
}

#[test]
fn daemon_stopped_between_stop_signal_and_sigkill() {
    stop_signal_before_sigkill_after(Exit::Term);
}

#[test]
fn daemon_killed_between_stop_signal_and_sigkill() {
    stop_signal_before_sigkill_after(Exit::Kill);
}

#[test]
fn daemon_stopped_between_stop_signal_and_exit() {
    stop_signal_before_exit_while_down(Exit::Term);
}

#[test]
fn daemon_killed_between_stop_signal_and_exit() {
    stop_signal_before_exit_while_down(Exit::Kill);
}

/// A CRI endpoint that takes connections and never answers: a lookup waits its whole
/// `--cri-timeout`, so a record waits for its container's metadata (as under a runtime that
/// hangs). Dropped: the socket is gone and lookups fail at once.
struct HangingCri {
    path: std::path::PathBuf,
    _listener: std::os::unix::net::UnixListener,
}

impl HangingCri {
    fn new(dir: &Path) -> Self {
        let path = dir.join("hanging-cri.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).expect("bind the CRI socket");
        Self { path, _listener }
    }
}

impl Drop for HangingCri {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The daemon reads a container's stop and exit, and its record waits for metadata (the CRI
/// hangs) when the daemon is killed: nothing of it is left in the ring or in the process
/// entries, but the kernel kept the termination (`ENDED`) and the next daemon writes it, once,
/// whole, named by the cgroup path the kernel kept.
#[test]
fn a_record_waiting_for_metadata_when_the_daemon_is_killed_is_written_by_the_next() {
    let dir = std::env::temp_dir().join(unique("observer-it-cri-"));
    std::fs::create_dir_all(&dir).unwrap();
    let cri = HangingCri::new(&dir);
    let sock = cri.path.display().to_string();
    let mut d = Daemon::start_with(None, &["--cri-endpoint", &sock, "--cri-timeout", "10s"]);
    let ns = unique("held");
    let (pod, cid, runc) = runc_container(
        &d,
        &ns,
        "api-7d4b9c6f8-x2k9p",
        &["sh", "-c", "trap 'sleep 0.3; exit 3' TERM; sleep 1000 & wait"],
    );
    let pid = runc.pid().unwrap();
    term_when_trapped(&runc);
    wait_stopped(&runc);
    drop(runc);
    // Read by this daemon (the ring is drained within milliseconds), held for the CRI.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(d.records().iter().all(|r| r["container_id"] != cid.as_str()), "not held?");
    d.stop(Exit::Kill);
    drop(cri);
    d.start_again();
    let r = &d.wait_records(1, WAIT, by_id(&cid))[0];
    eprintln!(
        "record: {r:#}
log:
{}",
        d.log()
    );
    assert_eq!(r["pid"], pid);
    assert_eq!(r["namespace"], ns.as_str());
    assert_eq!(r["pod"], "api-7d4b9c6f8-x2k9p");
    assert_eq!(r["outcome"], "graceful");
    assert_eq!(r["exit_code"], 3);
    assert_eq!(r["stop_signal"], "SIGTERM");
    assert_eq!(r["stop_signal_handler"], "handled");
    assert_eq!(r["stop_signal_sender"]["comm"], "runc");
    let t = r["term_to_exit_seconds"].as_f64().unwrap();
    assert!((0.3..2.0).contains(&t), "TERM to exit on the kernel clock: {t}");
    assert_eq!(r["incomplete"], serde_json::json!(["kernel_summary"]));
    // (At least: every daemon watches every test's containers.)
    assert!(d.metric("observer_terminations_recovered_total", &[]) >= 1.0, "{}", d.metrics());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(d.records().iter().filter(|r| r["container_id"] == cid.as_str()).count(), 1);
    drop(pod);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A preStop exec hook running when the daemon is killed (`runc exec`, as ExecSync runs it),
/// and the container's stop after the restart: the next daemon finds the session in the
/// kernel's process entries, with its exec time, and the record names it (a session: no
/// metadata here).
#[test]
fn a_prestop_exec_hook_running_across_a_daemon_kill_is_the_records_hook() {
    let mut d = Daemon::start();
    let ns = unique("hookspan");
    let (pod, cid, runc) = runc_container(&d, &ns, "shop-7d4b9c6f8-x2k9p", &["sleep", "1000"]);
    let t0 = std::time::Instant::now();
    let mut hook = Command::new("runc")
        .args(["exec", &runc.id, "sleep", "2"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    d.stop(Exit::Kill);
    d.start_again();
    let status = hook.wait().unwrap();
    let took = t0.elapsed().as_secs_f64();
    assert!(status.success(), "runc exec: {status}");
    // kubelet's stop right after the hook: the stop signal (dropped by this PID 1), SIGKILL.
    runc.kill("TERM").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    runc.kill("KILL").unwrap();
    wait_stopped(&runc);
    let r = &d.wait_records(1, WAIT, by_id(&cid))[0];
    eprintln!("record: {r:#}\nlog:\n{}", d.log());
    let p = &r["prestop"];
    // No metadata here (runc alone): the session, unconfirmed as the hook, with its times.
    assert_eq!(p["kind"], "session", "{r:#}");
    assert_eq!(p["comm"], "sleep");
    let dur = p["duration_seconds"].as_f64().unwrap();
    // The kernel's exec -> exit lies inside what `runc exec` took end to end.
    assert!(dur >= 2.0 && dur <= took, "hook {dur} s, runc exec {took} s");
    assert!(d.log().contains("1 exec sessions running"), "{}", d.log());
    drop(runc);
    drop(pod);
}

/// The same for an OOM kill: the OOM killer's mark was read by the killed daemon only, and the
/// kernel kept it with the process (`process_flags::OOM_VICTIM`): the next daemon's record is
/// `oom_killed`, not a grace-period kill without a stop signal.
#[test]
fn an_oom_kill_held_for_metadata_when_the_daemon_is_killed_stays_an_oom_kill() {
    let dir = std::env::temp_dir().join(unique("observer-it-cri-"));
    std::fs::create_dir_all(&dir).unwrap();
    let cri = HangingCri::new(&dir);
    let sock = cri.path.display().to_string();
    let mut d = Daemon::start_with(None, &["--cri-endpoint", &sock, "--cri-timeout", "10s"]);
    let ns = unique("heldoom");
    let mut pod = Pod::new(&d.log_root, &ns, "hog-7d4b9c6f8-x2k9p");
    let (cid, cg) = pod.container("hog");
    let limit = MemoryLimit::new(&cg, 32 << 20);
    let p = NsInit::spawn_in(&cg, &limit.extra(), MEMORY_HOG).unwrap();
    p.wait_exit(Duration::from_secs(60)).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(d.records().iter().all(|r| r["container_id"] != cid.as_str()), "not held?");
    d.stop(Exit::Kill);
    drop(cri);
    d.start_again();
    let r = &d.wait_records(1, WAIT, by_id(&cid))[0];
    eprintln!("record: {r:#}\nlog:\n{}", d.log());
    assert_eq!(r["outcome"], "oom_killed");
    assert_eq!(r["exit_signal"], "SIGKILL");
    assert_eq!(r["sigkill_sender"]["from"], "kernel");
    assert_eq!(r["pod"], "hog-7d4b9c6f8-x2k9p");
    drop(p);
    drop(limit);
    drop(pod);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A pinned map as bpftool dumps it: (key bytes, value bytes) per entry.
fn dump(pin: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let out = Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(pin)
        .output()
        .expect("bpftool");
    assert!(out.status.success(), "bpftool map dump: {}", String::from_utf8_lossy(&out.stderr));
    let entries: Vec<Value> = serde_json::from_slice(&out.stdout).expect("bpftool json");
    let bytes = |v: &Value| -> Vec<u8> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b.as_str())
            .filter_map(|b| u8::from_str_radix(b.trim_start_matches("0x"), 16).ok())
            .collect()
    };
    entries.iter().map(|e| (bytes(&e["key"]), bytes(&e["value"]))).collect()
}

/// Whether the prefilter (`FOLLOWED`: per slot, the count and the sum of the tgids followed
/// there) says exactly what `PROCESSES` holds, in one pair of dumps.
fn prefilter_is_exact(layout: &Path) -> Result<(), String> {
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let mut want: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
    for (k, v) in dump(&layout.join("PROCESSES")) {
        let tgid = u32_at(&k, 0);
        // Process: start_ticks u64, cgroup_id u64, role u32, flags u32 (COUNTED = 2).
        assert_ne!(u32_at(&v, 20) & 2, 0, "pid {tgid}'s entry is not counted");
        let slot = want.entry(tgid % 65_536).or_default();
        *slot = slot.wrapping_add((u64::from(tgid) << 32).wrapping_add(1));
    }
    for (k, v) in dump(&layout.join("FOLLOWED")) {
        let i = u32_at(&k, 0);
        let got = u64::from_le_bytes(v[..8].try_into().unwrap());
        let expected = want.remove(&i).unwrap_or(0);
        if got != expected {
            return Err(format!("slot {i}: {got:#x}, PROCESSES says {expected:#x}"));
        }
    }
    // WATCHED_SLOTS may count a cgroup twice (its mkdir and the start-up walk racing), never
    // miss one: every watched cgroup's slot must say "maybe".
    let slots: Vec<u64> = dump(&layout.join("WATCHED_SLOTS"))
        .iter()
        .map(|(_, v)| u64::from_le_bytes(v[..8].try_into().unwrap()))
        .collect();
    for (k, v) in dump(&layout.join("WATCHED_CGROUPS")) {
        let id = u32_at(&k, 0);
        // WatchedCgroup: since_ns u64, main_tgid u32, flags u32 (COUNTED = 2).
        assert_ne!(u32_at(&v, 12) & 2, 0, "cgroup {id}'s entry is not counted");
        let s = slots[(id % 65_536) as usize];
        let (n, sum) = (s as u32, (s >> 32) as u32);
        if n == 0 || (n == 1 && sum != id) {
            return Err(format!("cgroup {id} is watched but its slot {s:#x} hides it"));
        }
    }
    Ok(())
}

/// The prefilter in front of the process entries (`observer_ebpf::slot`) counts exactly what
/// they hold, whoever made and removed them: the kernel at exec and exit, the start-up walk
/// for a container older than the probes, a daemon killed and started again in between.
#[test]
fn the_prefilter_counts_exactly_the_followed_processes_across_adoption_and_restarts() {
    let log_root = std::env::temp_dir().join(unique("observer-it-slots-"));
    let ns = unique("slots");
    let mut pod = Pod::new(&log_root, &ns, "api-7d4b9c6f8-x2k9p");
    // Older than the probes: the start-up walk adopts it.
    let (_, cg) = pod.container("old");
    let old = NsInit::spawn(&cg, &["busybox", "sleep", "1000"]).unwrap();
    let mut d = Daemon::start_with(Some(&log_root), &[]);
    let layout =
        std::fs::read_dir(d.pin_dir.as_ref().unwrap()).unwrap().flatten().next().unwrap().path();
    let mut news = Vec::new();
    for i in 0..3 {
        let (_, cg) = pod.container(&format!("new{i}"));
        news.push(NsInit::spawn(&cg, &["busybox", "sleep", "1000"]).unwrap());
    }
    d.stop(Exit::Kill);
    let (_, cg) = pod.container("while-down");
    let down = NsInit::spawn(&cg, &["busybox", "sleep", "1000"]).unwrap();
    news.remove(0).signal(libc::SIGKILL);
    d.start_again();
    news.remove(0).signal(libc::SIGKILL);
    std::thread::sleep(Duration::from_millis(300));
    // Other tests' containers come and go meanwhile: a consistent pair of dumps is asked for.
    let exact = |what: &str| {
        let mut last = String::new();
        for _ in 0..20 {
            match prefilter_is_exact(&layout) {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{what}: {last}");
    };
    exact("with an adopted main, kernel-followed ones, a restart");
    old.signal(libc::SIGKILL);
    down.signal(libc::SIGKILL);
    drop(news);
    std::thread::sleep(Duration::from_millis(300));
    exact("after every one of them ended");
    drop((old, down));
    drop(pod);
    let _ = std::fs::remove_dir_all(&log_root);
}

/// The kernel's `ENDED` entries of process `pid`, as bpftool dumps the pinned map: (key,
/// value), each as the hex bytes `bpftool map update` takes back.
fn ended_entries(pin: &Path, pid: u32) -> Vec<(Vec<String>, Vec<String>)> {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>();
    dump(pin)
        .into_iter()
        .filter(|(k, _)| k.len() >= 4 && u32::from_le_bytes(k[..4].try_into().unwrap()) == pid)
        .map(|(k, v)| (hex(&k), hex(&v)))
        .collect()
}

/// A daemon killed just after journaling a record, before it deleted the kernel's entry of
/// the termination (a window of one tick): the next daemon is offered it again and finds its
/// `record_id` in the journal's tail. One line in the journal, the duplicate counted. The
/// window is made wide by a hanging CRI (the record waits for metadata): the entry is read
/// while it waits, and put back after the kill, as a kill inside the window leaves it.
#[test]
fn a_record_journaled_just_before_a_kill_is_not_written_twice() {
    let dir = std::env::temp_dir().join(unique("observer-it-cri-"));
    std::fs::create_dir_all(&dir).unwrap();
    let cri = HangingCri::new(&dir);
    let sock = cri.path.display().to_string();
    let mut d = Daemon::start_with(None, &["--cri-endpoint", &sock, "--cri-timeout", "1s"]);
    let layout = std::fs::read_dir(d.pin_dir.as_ref().unwrap()).unwrap().flatten().next().unwrap();
    let ended = layout.path().join("ENDED");
    let ns = unique("twice");
    let (pod, cid, runc) = runc_container(&d, &ns, "web-7d4b9c6f8-x2k9p", &["sleep", "1000"]);
    let pid = runc.pid().unwrap();
    runc.kill("KILL").unwrap();
    wait_stopped(&runc);
    drop(runc);
    let deadline = std::time::Instant::now() + WAIT;
    let kept = loop {
        let e = ended_entries(&ended, pid);
        if !e.is_empty() {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "no ENDED entry for pid {pid}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let first = d.wait_records(1, WAIT, by_id(&cid))[0].clone();
    // Journaled: the entry is deleted in the same tick.
    std::thread::sleep(Duration::from_millis(300));
    assert!(ended_entries(&ended, pid).is_empty(), "the entry of a journaled record stays");
    d.stop(Exit::Kill);
    for (k, v) in &kept {
        let out = Command::new("bpftool")
            .args(["map", "update", "pinned"])
            .arg(&ended)
            .arg("key")
            .arg("hex")
            .args(k)
            .arg("value")
            .arg("hex")
            .args(v)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bpftool map update: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(cri);
    d.start_again();
    // The next daemon sweeps the kernel's map a second after it starts.
    let deadline = std::time::Instant::now() + WAIT;
    while d.metric("observer_records_duplicate_total", &[]) < 1.0 {
        assert!(std::time::Instant::now() < deadline, "{}\n{}", d.metrics(), d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let mine: Vec<Value> =
        d.records().into_iter().filter(|r| r["container_id"] == cid.as_str()).collect();
    assert_eq!(mine.len(), 1, "{mine:#?}");
    assert_eq!(mine[0], first);
    assert!(d.metric("observer_terminations_recovered_total", &[]) >= 1.0);
    // And the recovered one's entry is gone too.
    std::thread::sleep(Duration::from_millis(300));
    assert!(ended_entries(&ended, pid).is_empty());
    // `<boot id>:<pid>:<start ticks>`.
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let id = first["record_id"].as_str().unwrap_or_default();
    let prefix = format!("{}:{}:", boot.trim(), first["pid"]);
    assert!(id.strip_prefix(&prefix).is_some_and(|t| t.parse::<u64>().is_ok()), "{first:#}");
    drop(pod);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Empty container cgroups made to fill the ring with their mkdir events, removed on drop.
struct Fillers(Vec<std::path::PathBuf>);

impl Drop for Fillers {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = std::fs::remove_dir(f);
        }
    }
}

/// A ring buffer that overflows while the daemon is not reading (frozen here with SIGSTOP, as
/// a daemon starved of CPU is): the stop's signal and exit events are lost, counted, and the
/// termination is recovered from the kernel's map two seconds later, whole.
#[test]
fn a_termination_lost_in_a_full_ring_buffer_is_recovered_from_the_kernel() {
    let d = Daemon::start_with(None, &["--ring-buffer-bytes", "4096"]);
    let ns = unique("overflow");
    let (mut pod, cid, runc) = runc_container(
        &d,
        &ns,
        "api-7d4b9c6f8-x2k9p",
        &["sh", "-c", "trap 'exit 4' TERM; sleep 1000 & wait"],
    );
    wait_handler(runc.pid().unwrap(), libc::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signals the daemon we spawned.
    unsafe { libc::kill(d.pid() as i32, libc::SIGSTOP) };
    // Each container cgroup's mkdir is a ~300-byte event: 40 of them fill 4 KiB.
    let fillers = Fillers((0..40).map(|i| pod.container(&format!("filler-{i}")).1).collect());
    for f in &fillers.0 {
        std::fs::create_dir_all(f).unwrap();
    }
    runc.kill("TERM").unwrap();
    wait_stopped(&runc);
    drop(runc);
    // SAFETY: as above.
    unsafe { libc::kill(d.pid() as i32, libc::SIGCONT) };
    let r = &d.wait_records(1, WAIT, by_id(&cid))[0];
    eprintln!(
        "record: {r:#}
log:
{}",
        d.log()
    );
    assert!(
        d.metric("observer_events_lost_total", &[("stage", "ring_buffer")]) >= 1.0,
        "the ring overflowed:
{}",
        d.metrics()
    );
    assert!(d.metric("observer_terminations_recovered_total", &[]) >= 1.0, "{}", d.metrics());
    assert_eq!(r["outcome"], "graceful");
    assert_eq!(r["exit_code"], 4);
    let gaps = r["incomplete"].as_array().cloned().unwrap_or_default();
    assert!(gaps.contains(&Value::from("events_lost")), "{r:#}");
    assert_eq!(r["stop_signal"], "SIGTERM");
    assert_eq!(r["stop_signal_handler"], "handled");
    assert_eq!(r["namespace"], ns.as_str());
    drop(fillers);
    drop(pod);
}

/// An upgrade whose map layout changed: the new daemon cannot share the old maps. It attaches
/// its own first, then retires the old layout's directory (links, so the old programs stop;
/// maps), counting what the old ring held unread as lost at the handover. Simulated by
/// renaming the old daemon's layout directory (bpffs renames), as a build of another layout
/// would have named it.
#[test]
fn an_upgrade_of_another_layout_retires_the_old_pins_and_counts_what_they_held() {
    let mut d = Daemon::start();
    let pin_dir = d.pin_dir.clone().unwrap();
    d.stop(Exit::Kill);
    let layouts: Vec<_> =
        std::fs::read_dir(&pin_dir).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(layouts.len(), 1, "{layouts:?}");
    // While no daemon runs, the old programs record a container's stop into the old ring.
    let ns = unique("upgrade");
    let (pod, cid, runc) = runc_container(
        &d,
        &ns,
        "api-7d4b9c6f8-x2k9p",
        &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
    );
    term_when_trapped(&runc);
    wait_stopped(&runc);
    drop(runc);
    let old = pin_dir.join("00000000000000aa");
    std::fs::rename(&layouts[0], &old).unwrap();
    d.start_again();
    assert!(!old.exists(), "the old layout is retired: {:?}", pins(&old));
    assert!(d.log().contains("an observer of another layout left"), "{}", d.log());
    let lost = d.metric("observer_events_lost_total", &[("stage", "handover")]);
    assert!(lost >= 2.0, "the stop's signal and exit, at least: {lost}\n{}", d.metrics());
    // The new layout records what happens from here on; the lost stop has no record.
    assert!(d.records().iter().all(|r| r["container_id"] != cid.as_str()));
    let (pod2, cid2, runc2) = runc_container(
        &d,
        &ns,
        "web-7d4b9c6f8-x2k9p",
        &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
    );
    term_when_trapped(&runc2);
    wait_stopped(&runc2);
    let r = &d.wait_records(1, WAIT, by_id(&cid2))[0];
    assert_eq!(r["outcome"], "graceful");
    drop(runc2);
    drop(pod2);
    drop(pod);
}

#[test]
fn a_second_daemon_on_the_same_pins_or_journal_is_refused() {
    let d = Daemon::start();
    let pin_dir = d.pin_dir.clone().unwrap();
    let second = |extra: &[&str]| {
        let out = Command::new(observer_bin())
            .args(["run", "--listen", "127.0.0.1:0", "--cri-endpoint", "none"])
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success(), "a second daemon ran");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let other_journal = d.dir.join("other.jsonl");
    let e = second(&[
        "--pin-dir",
        pin_dir.to_str().unwrap(),
        "--journal",
        other_journal.to_str().unwrap(),
    ]);
    assert!(e.contains("another observer is running on this node"), "{e}");
    let other_pins = Path::new("/sys/fs/bpf").join(unique("observer-it-other-"));
    let e = second(&[
        "--pin-dir",
        other_pins.to_str().unwrap(),
        "--journal",
        d.journal.to_str().unwrap(),
    ]);
    assert!(e.contains("is being written by another observer"), "{e}");
    // The refused one made no pins of its own beyond its (empty) directory.
    assert!(pins(&other_pins).is_empty(), "{:?}", pins(&other_pins));
    cleanup_pins(&other_pins).unwrap();
    // And the running daemon is untouched.
    assert_eq!(d.http_get("/healthz").unwrap().0, 200);
}

#[test]
fn cleanup_detaches_every_program_and_removes_every_pin() {
    let before = observer_programs();
    let mut d = Daemon::start();
    let pin_dir = d.pin_dir.clone().unwrap();
    let running: Vec<u64> =
        observer_programs().into_iter().filter(|id| !before.contains(id)).collect();
    assert!(running.len() >= 7, "this daemon's programs: {running:?}");
    // Refused while the daemon holds the lock.
    let out = Command::new(observer_bin())
        .args(["cleanup", "--pin-dir", pin_dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another observer"));
    let check = |want: &str| {
        let out = Command::new(observer_bin())
            .args(["check", "--pin-dir", pin_dir.to_str().unwrap()])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{said}");
        let line = said.lines().find(|l| l.contains("pinned probes")).unwrap_or_default();
        assert!(line.contains(want), "{line:?} should say {want:?}:\n{said}");
    };
    check("a running daemon's (heartbeat");
    d.stop(Exit::Kill);
    check("left by a daemon gone for");
    // Killed: its programs stay attached through the pins.
    let still: Vec<u64> =
        observer_programs().into_iter().filter(|id| running.contains(id)).collect();
    assert_eq!(still, running, "pinned programs outlive a killed daemon");
    let said = cleanup_pins(&pin_dir).unwrap();
    assert!(said.contains("program links detached"), "{said}");
    assert!(!pin_dir.exists(), "{:?}", pins(&pin_dir));
    // The kernel frees a program once its last link and descriptor are gone.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left: Vec<u64> =
            observer_programs().into_iter().filter(|id| running.contains(id)).collect();
        if left.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "programs still loaded: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Nothing left for Drop's cleanup: it finds no directory.
    d.pin_dir = None;
}

/// A server that holds every connection it accepts and ignores SIGTERM (a handler that does
/// nothing): what the SIGKILL cuts is every connection the clients made.
const HOLDING_SERVER: &str = "import signal, socket\n\
signal.signal(signal.SIGTERM, lambda *a: None)\n\
s = socket.socket()\n\
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind(('0.0.0.0', 8080))\n\
s.listen(64)\n\
held = []\n\
while True: held.append(s.accept()[0])\n";

/// `n` connections from the client's namespace to the pod's server, held open (returned).
/// The first waits for the server to listen; a refused attempt is no connection the kernel
/// counts (no passive open completes).
fn hold(pair: &observer_tests::VethPair, n: usize) -> Vec<std::net::TcpStream> {
    let to = std::net::SocketAddr::from((observer_tests::VethPair::SERVER, 8080));
    let deadline = std::time::Instant::now() + WAIT;
    (0..n)
        .map(|_| loop {
            match pair.client.connect(to) {
                Ok(c) => break c,
                Err(e) => {
                    assert!(std::time::Instant::now() < deadline, "connect {to}: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })
        .collect()
}

/// The server in a pod network of the test's own, as a container of `log_root`'s pod.
fn holding_server(
    log_root: &Path,
    ns: &str,
    pair: &observer_tests::VethPair,
) -> (Pod, String, observer_tests::Runc) {
    let spec = observer_tests::Spec::host(&["python3", "-c", HOLDING_SERVER])
        .join_namespace("network", &pair.server.path());
    let (pod, cid, runc) = observer_tests::spec_in_pod(log_root, ns, "web-7d4b9c6f8-x2k9p", &spec);
    wait_handler(runc.pid().unwrap(), libc::SIGTERM).unwrap();
    (pod, cid, runc)
}

/// Its stop signal and the connections after it seen while one daemon runs, more connections
/// and its SIGKILL and exit while none does: the next daemon's record has every figure, from
/// the kernel's copies at the stop signal, the SIGKILL and the exit (`ENDED`).
#[test]
fn traffic_across_a_daemon_killed_mid_stop_is_whole() {
    let mut d = Daemon::start();
    let pair = observer_tests::VethPair::spawn();
    let ns = unique("trafr");
    let (pod, cid, runc) = holding_server(&d.log_root.clone(), &ns, &pair);
    let mut held = hold(&pair, 3);
    // The kernel stamps each passive open as the client's final ACK lands: a moment to settle
    // before the signal that copies the counts.
    std::thread::sleep(Duration::from_millis(100));
    runc.kill("TERM").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    held.extend(hold(&pair, 4));
    d.stop(Exit::Kill);
    held.extend(hold(&pair, 2));
    std::thread::sleep(Duration::from_millis(100));
    runc.kill("KILL").unwrap();
    wait_stopped(&runc);
    d.start_again();
    let r = &d.wait_records(1, WAIT, by_id(&cid))[0];
    let t = &r["traffic"];
    eprintln!("record: {r:#}\nlog:\n{}", d.log());
    // The SIGTERM read by the daemon that was killed, the SIGKILL by this one: the stop
    // signal comes from what the kernel kept, and the record says so.
    assert_eq!(r["outcome"], "killed");
    assert_eq!(r["stop_signal"], "SIGTERM");
    assert_eq!(r["incomplete"], serde_json::json!(["kernel_summary"]));
    assert_eq!(t["scope"], "pod_network");
    assert_eq!(t["counted_from"], "container_start");
    assert_eq!(t["established_at_stop_signal"], 3);
    assert_eq!(t["accepted_after_stop_signal"], 6);
    assert_eq!(t["established_at_sigkill"], 9);
    assert_eq!(t["established_at_exit"], 9);
    assert_eq!(t["cut_by_sigkill"], 9);
    assert_eq!(t["listening_at_stop_signal"], 1);
    assert_eq!(t["still_arriving_at_exit"], true);
    // Every held connection was reset or closed by the kill.
    for mut c in held {
        c.set_read_timeout(Some(WAIT)).unwrap();
        let mut b = [0u8; 1];
        assert!(matches!(std::io::Read::read(&mut c, &mut b), Ok(0) | Err(_)), "still open");
    }
    drop(runc);
    drop(pod);
}

/// A container that was serving before the daemon (and its probes) started: its namespace is
/// learnt at its stop signal, so what came after is counted and what was established before
/// is unknown (null), never a guess from a count that began late.
#[test]
fn traffic_of_a_container_older_than_the_probes_is_counted_from_its_stop_signal() {
    let dir = std::env::temp_dir().join(unique("observer-it-older-"));
    let log_root = dir.join("logs");
    std::fs::create_dir_all(&log_root).unwrap();
    let pair = observer_tests::VethPair::spawn();
    let ns = unique("trafo");
    let (pod, cid, runc) = holding_server(&log_root, &ns, &pair);
    let mut held = hold(&pair, 3);
    let d = Daemon::start_with(Some(&log_root), &[]);
    runc.kill("TERM").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    held.extend(hold(&pair, 4));
    std::thread::sleep(Duration::from_millis(100));
    runc.kill("KILL").unwrap();
    wait_stopped(&runc);
    let r = &d.wait_records(1, WAIT, by_id(&cid))[0];
    let t = &r["traffic"];
    eprintln!("record: {r:#}");
    assert_eq!(r["outcome"], "killed");
    assert_eq!(t["scope"], "pod_network");
    assert_eq!(t["counted_from"], "stop_signal");
    assert_eq!(t["accepted_after_stop_signal"], 4);
    assert_eq!(t["from_node_after_stop_signal"], 0);
    assert!(t["last_accepted_after_stop_signal_seconds"].as_f64().is_some_and(|s| s < 1.0), "{t}");
    for unknown in [
        "established_at_stop_signal",
        "established_at_sigkill",
        "established_at_exit",
        "cut_by_sigkill",
        "listening_at_stop_signal",
        "listening_at_exit",
        "stopped_accepting_before_exit",
    ] {
        assert!(t[unknown].is_null(), "{unknown}: {t}");
    }
    drop(held);
    drop(runc);
    drop(pod);
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
