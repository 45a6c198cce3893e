//! The `observer` daemon under test: its binary, a running daemon of a test's own (port,
//! journal, kubelet log root), its HTTP endpoints and metrics, and ending what a test spawned.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::Result;
use serde_json::Value;

use crate::unique;

/// Fails loudly when the tests cannot run for real.
pub fn require_root() {
    // SAFETY: no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "integration tests need root: run `cargo xtask test` as root"
    );
}

/// The daemon binary under test: `$OBSERVER_BIN`, else the workspace's release build.
pub fn observer_bin() -> PathBuf {
    std::env::var_os("OBSERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/observer"))
}

/// The daemon under test, on a loopback port of its own, with its own journal, log root and
/// pin directory (`/sys/fs/bpf/observer-it-*`, removed by `observer cleanup` on drop).
pub struct Daemon {
    child: Child,
    /// Its `--listen` address (loopback).
    pub addr: String,
    /// Its own directory (its log; the journal by default), removed on drop.
    pub dir: PathBuf,
    /// Its journal file.
    pub journal: PathBuf,
    /// Its `--kubelet-log-root`.
    pub log_root: PathBuf,
    /// Its `--pin-dir` (None: the test chose its own, or "none").
    pub pin_dir: Option<PathBuf>,
    /// Every argument after `observer run`, for a restart.
    args: Vec<String>,
    /// Whether `child` is running (not yet reaped): only then is it ours to signal.
    running: bool,
}

/// How a test ends a daemon before starting the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM: a clean shutdown (a rollout, `kubectl delete pod`).
    Term,
    /// SIGKILL: a crash, the OOM killer, a failed liveness probe's kill.
    Kill,
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("addr").port()
}

impl Daemon {
    /// Starts a daemon with a journal and a kubelet log root of its own; returns once healthy.
    pub fn start() -> Self {
        Self::start_with(None, &[])
    }

    /// Starts the daemon with `log_root` as kubelet's log root (default: a fresh directory
    /// of its own) and extra `observer run` arguments.
    pub fn start_with(log_root: Option<&Path>, extra: &[&str]) -> Self {
        Self::start_with_journal(None, log_root, extra)
    }

    /// Like [`Daemon::start_with`], with the journal at `journal` (default: in the daemon's
    /// own directory, removed with it).
    pub fn start_with_journal(
        journal: Option<&Path>,
        log_root: Option<&Path>,
        extra: &[&str],
    ) -> Self {
        require_root();
        let dir = std::env::temp_dir().join(unique("observer-it-"));
        let log_root = log_root.map(Path::to_path_buf).unwrap_or_else(|| dir.join("logs"));
        std::fs::create_dir_all(&log_root).expect("log root");
        std::fs::create_dir_all(&dir).expect("test dir");
        let journal = journal.map(Path::to_path_buf).unwrap_or_else(|| dir.join("journal.jsonl"));
        let addr = format!("127.0.0.1:{}", free_port());
        let mut args: Vec<String> = ["run", "--listen", &addr, "--journal"]
            .iter()
            .map(|a| (*a).to_string())
            .chain([journal.display().to_string(), "--kubelet-log-root".into()])
            .chain([log_root.display().to_string()])
            .chain(extra.iter().map(|a| (*a).to_string()))
            .collect();
        let pin_dir = if extra.contains(&"--pin-dir") {
            None
        } else {
            let p = PathBuf::from("/sys/fs/bpf").join(unique("observer-it-"));
            args.extend(["--pin-dir".into(), p.display().to_string()]);
            Some(p)
        };
        let child = spawn(&dir, &args);
        let d = Self { child, addr, journal, log_root, dir, pin_dir, args, running: true };
        d.wait_healthy();
        d
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.http_get("/healthz").map(|(s, _)| s != 200).unwrap_or(true) {
            assert!(Instant::now() < deadline, "observer not healthy in 30 s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ends this daemon (`how`) and waits for it to be gone, leaving its pins: the node
    /// without a daemon.
    pub fn stop(&mut self, how: Exit) {
        let sig = match how {
            Exit::Term => libc::SIGTERM,
            Exit::Kill => libc::SIGKILL,
        };
        // SAFETY: signals the pid we spawned.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        let status = self.child.wait().expect("wait for the daemon");
        self.running = false;
        if how == Exit::Term {
            assert!(status.success(), "observer's clean shutdown: {status}\n{}", self.log());
        }
    }

    /// Starts the next daemon with the same arguments (journal, pin directory, port) after
    /// [`Daemon::stop`]; returns once healthy.
    pub fn start_again(&mut self) {
        assert!(!self.running, "start_again after stop");
        self.child = spawn(&self.dir, &self.args);
        self.running = true;
        self.wait_healthy();
    }

    /// The daemon's pid (to SIGKILL it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the daemon logged so far (stderr, `RUST_LOG=info`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// What the daemon wrote on stdout so far (`--records-to-stdout`).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.stdout")).unwrap_or_default()
    }

    /// Minimal HTTP/1.1 GET on loopback: (status, body).
    pub fn http_get(&self, path: &str) -> Result<(u16, String)> {
        let mut s = TcpStream::connect(&self.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr)?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Ok((status, body))
    }

    /// The body of `GET /metrics`.
    pub fn metrics(&self) -> String {
        self.http_get("/metrics").expect("GET /metrics").1
    }

    /// `observer report` of this daemon's journal, with `args` (filters).
    pub fn report(&self, args: &[&str]) -> String {
        let out = Command::new(observer_bin())
            .arg("report")
            .arg("--journal")
            .arg(&self.journal)
            .args(args)
            .output()
            .expect("observer report");
        assert!(out.status.success(), "report: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("the report is UTF-8")
    }

    /// Value of one series (exact label set as rendered, e.g. `{namespace="x",outcome="killed"}`
    /// matched by every `key="value"` pair given); sums matching series.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics(), name, labels)
    }

    /// Every record of the journal so far, in order. A last line without its newline is a
    /// write still in progress (a read does not take the lock a write holds, so it can see
    /// part of one): left for the next call. Any other line that does not parse is a defect.
    pub fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.journal).unwrap_or_default();
        let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
        whole
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad journal line {l:?}: {e}"))
            })
            .collect()
    }

    /// Waits until `n` records match `filter`, and returns them.
    pub fn wait_records(
        &self,
        n: usize,
        timeout: Duration,
        filter: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let recs: Vec<Value> = self.records().into_iter().filter(|r| filter(r)).collect();
            if recs.len() >= n || Instant::now() > deadline {
                assert_eq!(
                    recs.len(),
                    n,
                    "records matching after {timeout:?}: {recs:#?}\ndaemon log:\n{}",
                    self.log()
                );
                return recs;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `observer <args>`, its stderr appended to `dir/daemon.log`.
fn spawn(dir: &Path, args: &[String]) -> Child {
    let bin = observer_bin();
    assert!(bin.exists(), "{} missing: run `cargo xtask test` (it builds it)", bin.display());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("daemon.log"))
        .expect("log file");
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("daemon.stdout"))
        .expect("stdout file");
    Command::new(&bin)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(out)
        .stderr(log)
        .spawn()
        .expect("spawn observer")
}

/// `observer cleanup --pin-dir DIR`: what the DaemonSet's removal runs.
pub fn cleanup_pins(pin_dir: &Path) -> Result<String> {
    let out = Command::new(observer_bin()).arg("cleanup").arg("--pin-dir").arg(pin_dir).output()?;
    anyhow::ensure!(
        out.status.success(),
        "observer cleanup --pin-dir {}: {}: {}",
        pin_dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.running {
            stop_child(&mut self.child);
        }
        if let Some(p) = &self.pin_dir {
            if let Err(e) = cleanup_pins(p) {
                eprintln!("{e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Ends a process this harness spawned, by its PID: SIGTERM, up to 10 s, then SIGKILL; reaps it.
pub fn stop_child(child: &mut Child) {
    // SAFETY: signals the pid we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Sums the values of `name` series whose labels include every pair in `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, r)) => (n, r),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_parser_sums_matching_series() {
        let text = "# HELP x y\nx{a=\"1\",b=\"2\"} 3\nx{a=\"1\",b=\"3\"} 4\nxy{a=\"1\"} 100\ny 5\n";
        assert_eq!(metric_value(text, "x", &[("a", "1")]), 7.0);
        assert_eq!(metric_value(text, "x", &[("b", "3")]), 4.0);
        assert_eq!(metric_value(text, "y", &[]), 5.0);
        assert_eq!(metric_value(text, "z", &[]), 0.0);
    }
}
