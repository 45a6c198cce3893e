//! The journal under a disk that hangs, and its copy on stdout.
//!
//! The journal is written by a thread of its own from a bounded queue (`sinks::writer`): a
//! disk that stops answering must not stall correlation, the metrics or `/terminations`, and a
//! termination whose record the disk has not taken must stay in the kernel (`ENDED`) for the
//! next daemon. A real hung disk here: an ext4 filesystem on a loop device, frozen with
//! `fsfreeze` (FIFREEZE: every write to it blocks in the kernel until it is thawed).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use observer_tests::{by_id, runc_container, unique, Daemon, Exit};

const WAIT: Duration = Duration::from_secs(15);

/// An ext4 filesystem of its own on a loop device, mounted on a fresh directory; thawed,
/// unmounted and removed on drop.
struct LoopFs {
    image: PathBuf,
    mount: PathBuf,
    frozen: bool,
}

fn sh(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl LoopFs {
    fn new() -> Self {
        let base = std::env::temp_dir().join(unique("observer-loopfs-"));
        std::fs::create_dir_all(&base).unwrap();
        let image = base.join("fs.img");
        let mount = base.join("mnt");
        std::fs::create_dir_all(&mount).unwrap();
        std::fs::File::create(&image).unwrap().set_len(64 << 20).unwrap();
        sh("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
        sh("mount", &["-o", "loop", image.to_str().unwrap(), mount.to_str().unwrap()]);
        Self { image, mount, frozen: false }
    }

    fn freeze(&mut self) {
        sh("fsfreeze", &["--freeze", self.mount.to_str().unwrap()]);
        self.frozen = true;
    }

    fn thaw(&mut self) {
        if self.frozen {
            sh("fsfreeze", &["--unfreeze", self.mount.to_str().unwrap()]);
            self.frozen = false;
        }
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        self.thaw();
        // `mount -o loop` made the loop device with autoclear: unmounting frees it.
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = std::fs::remove_dir_all(self.image.parent().unwrap());
    }
}

/// The journal's lines that parse, as JSON.
fn journal_ids(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["record_id"].as_str().map(str::to_string))
        .collect()
}

/// The record `/terminations` serves for container `cid`, waiting up to [`WAIT`].
fn served(d: &Daemon, cid: &str) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = d.http_get("/terminations").expect("GET /terminations");
        assert_eq!(status, 200, "{body}");
        let recs: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        if let Some(r) = recs.into_iter().find(|r| by_id(cid)(r)) {
            return r;
        }
        assert!(Instant::now() < deadline, "no record for {cid} served\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `runc kill` with `sig`, then waits for the container to be gone from running.
fn stop(runc: &observer_tests::Runc, sig: &str) {
    runc.kill(sig).unwrap();
    let deadline = Instant::now() + WAIT;
    while runc.status() == "running" {
        assert!(Instant::now() < deadline, "the container did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_hung_disk_stalls_no_record_and_loses_none() {
    let mut fs = LoopFs::new();
    let journal = fs.mount.join("terminations.jsonl");
    let mut d = Daemon::start_with_journal(Some(&journal), None, &[]);
    let ns = unique("hung");
    let (pod, cid, runc) = runc_container(&d, &ns, "api-7d4b9c6f8-x2k9p", &["sleep", "1000"]);
    fs.freeze();
    let frozen_at = Instant::now();
    stop(&runc, "KILL");
    drop(runc);
    // The pipeline goes on: the record is served and counted while the disk hangs.
    let r = served(&d, &cid);
    assert_eq!(r["outcome"], "killed_without_stop_signal");
    let id = r["record_id"].as_str().unwrap().to_string();
    assert_eq!(
        d.metric("container_terminations_total", &[("namespace", &ns)]),
        1.0,
        "the metrics have it"
    );
    // Nothing reached the frozen disk, and what waits for it shows.
    assert!(!journal_ids(&journal).contains(&id));
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = d.http_get("/healthz").unwrap();
        // The pipeline is healthy (a restart would not mend a disk); the stall is said.
        assert_eq!(status, 200, "{body}");
        if body.contains("journal writes stalled") {
            break;
        }
        assert!(Instant::now() < deadline, "/healthz never said the journal stalled: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(d.metric("observer_journal_queue", &[]) >= 1.0, "{}", d.metrics());
    // A SIGTERM now: the shutdown waits for the journal, gives up, and leaves the termination in
    // the kernel. The daemon cannot finish exiting while its writer thread is blocked in the
    // frozen filesystem: thaw once it has given up.
    // SAFETY: signals the daemon this test started.
    unsafe { libc::kill(d.pid() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + WAIT;
    while !d.log().contains("left to the next daemon") {
        assert!(Instant::now() < deadline, "no give-up logged:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(d.log().contains("terminations left in the kernel's ENDED map"), "{}", d.log());
    eprintln!("journal frozen for {:?}", frozen_at.elapsed());
    fs.thaw();
    d.stop(Exit::Term);
    // The write that was blocked completed at the thaw, or not: either way the record is in
    // the journal once after the next daemon has run (the kernel kept it; the journal's ids
    // keep it from being written twice).
    d.start_again();
    let deadline = Instant::now() + WAIT;
    while !journal_ids(&journal).contains(&id) {
        assert!(Instant::now() < deadline, "record {id} never journaled\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3));
    let ids = journal_ids(&journal);
    assert_eq!(ids.iter().filter(|i| **i == id).count(), 1, "{ids:?}");
    assert_eq!(d.metric("observer_events_lost_total", &[("stage", "journal_queue")]), 0.0);
    drop(pod);
    drop(d);
}

#[test]
fn each_record_goes_to_stdout_as_its_journal_line() {
    let d = Daemon::start_with(None, &["--records-to-stdout"]);
    let ns = unique("stdout");
    let (pod, cid, runc) = runc_container(&d, &ns, "web-7d4b9c6f8-x2k9p", &["sleep", "1000"]);
    stop(&runc, "KILL");
    drop(runc);
    let recs = d.wait_records(1, WAIT, by_id(&cid));
    let id = recs[0]["record_id"].as_str().unwrap();
    let journal = std::fs::read_to_string(&d.journal).unwrap();
    let line = journal.lines().find(|l| l.contains(id)).unwrap();
    let deadline = Instant::now() + WAIT;
    while !d.stdout().contains(id) {
        assert!(Instant::now() < deadline, "not on stdout:\n{}", d.stdout());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Byte for byte, one line; nothing else goes to stdout (the log is on stderr).
    let out = d.stdout();
    assert!(out.lines().any(|l| l == line), "{out}");
    for l in out.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
        assert!(v["record_id"].is_string(), "{l}");
    }
    drop(pod);
}

#[test]
fn a_journal_path_that_is_a_symlink_is_refused_at_start() {
    let dir = std::env::temp_dir().join(unique("observer-symlink-"));
    std::fs::create_dir_all(&dir).unwrap();
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let planted = dir.join("terminations.jsonl");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let out = Command::new(observer_tests::observer_bin())
        .args(["run", "--listen", "127.0.0.1:0", "--pin-dir", "none", "--journal"])
        .arg(&planted)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(planted.to_str().unwrap()), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    std::fs::remove_dir_all(&dir).unwrap();
}
