//! Harness for the root integration tests: the real `observer` binary against the real kernel,
//! real pid namespaces in real kubepods-style cgroups, and real runc containers.
//!
//! Everything a test starts is ended by PID and everything it creates is removed on drop.
//! Each test gets its own pod uid, container id and namespace name (through a kubelet log
//! layout of its own), so journal records and metric series are its own even when tests run
//! in parallel.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

pub mod containerd;
pub mod prometheus;
pub mod vm;

/// Fails loudly when the tests cannot run for real.
pub fn require_root() {
    // SAFETY: no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "integration tests need root: run `cargo xtask test` as root"
    );
}

pub fn observer_bin() -> PathBuf {
    std::env::var_os("OBSERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/observer"))
}

/// Where the v2 hierarchy is mounted here (hybrid: /sys/fs/cgroup/unified).
pub fn cgroup_v2_root() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    for line in info.lines() {
        if let Some((left, right)) = line.split_once(" - ") {
            if right.starts_with("cgroup2 ") {
                return PathBuf::from(left.split_whitespace().nth(4).expect("mount point"));
            }
        }
    }
    panic!("no cgroup2 mount: these tests need cgroup v2 (unified or hybrid)");
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A name unique to this test process and call.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}x{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

pub fn hex64(seed: &str) -> String {
    // Not cryptographic: a stable 64-hex id from the seed (FNV-1a, repeated).
    let mut out = String::new();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    while out.len() < 64 {
        for b in seed.bytes().chain(out.clone().bytes()) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out.truncate(64);
    out
}

pub fn uuid(seed: &str) -> String {
    let h = hex64(&format!("uid{seed}"));
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// A pod as kubelet lays it out: a kubepods cgroup per container and, optionally, the log
/// directories that name it.
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub qos: &'static str,
    log_root: PathBuf,
    dirs: Vec<PathBuf>,
}

impl Pod {
    /// `name` should look like a real pod name (e.g. "web-7d4b9c6f8-x2k9p").
    pub fn new(log_root: &Path, namespace: &str, name: &str) -> Self {
        let uid = uuid(&unique(name));
        let dir = log_root.join("pods").join(format!("{namespace}_{name}_{uid}"));
        std::fs::create_dir_all(&dir).expect("pod log dir");
        Self {
            namespace: namespace.into(),
            name: name.into(),
            uid,
            qos: "besteffort",
            log_root: log_root.into(),
            dirs: vec![dir],
        }
    }

    /// Hierarchy-relative cgroup path of the pod (cgroupfs driver).
    pub fn cgroup_parent(&self) -> String {
        format!("/kubepods/{}/pod{}", self.qos, self.uid)
    }

    /// Creates the container's v2 cgroup and its kubelet log entries; returns (id, cgroup dir).
    pub fn container(&mut self, container: &str) -> (String, PathBuf) {
        let id = hex64(&unique(container));
        let pod_dir = self
            .log_root
            .join("pods")
            .join(format!("{}_{}_{}", self.namespace, self.name, self.uid));
        let cdir = pod_dir.join(container);
        std::fs::create_dir_all(&cdir).expect("container log dir");
        let containers = self.log_root.join("containers");
        std::fs::create_dir_all(&containers).expect("containers dir");
        let link =
            containers.join(format!("{}_{}_{container}-{id}.log", self.name, self.namespace));
        let _ = std::os::unix::fs::symlink(cdir.join("0.log"), &link);
        let cg =
            cgroup_v2_root().join(format!("{}/{id}", self.cgroup_parent().trim_start_matches('/')));
        self.dirs.push(link);
        (id, cg)
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_file(d);
            let _ = std::fs::remove_dir_all(d);
        }
        // Containers' cgroups are removed by their owners, which end first.
        remove_cgroup_everywhere(&self.cgroup_parent());
    }
}

/// Removes a (pod) cgroup in every hierarchy: v2, and the v1 controllers runc also uses (it
/// removes a container's directories but leaves the pod's).
pub fn remove_cgroup_everywhere(path: &str) {
    let rel = path.trim_start_matches('/');
    let mut roots = vec![cgroup_v2_root()];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(entries.flatten().map(|e| e.path()));
    }
    for root in roots {
        let dir = root.join(rel);
        // The runtime's own cleanup of the container's cgroups can lag its exit a little.
        let mut tries = 0;
        while dir.is_dir() && std::fs::remove_dir(&dir).is_err() && tries < 100 {
            std::thread::sleep(Duration::from_millis(10));
            tries += 1;
        }
        if dir.is_dir() {
            eprintln!("warning: could not remove {}", dir.display());
        }
    }
}

/// A process that is PID 1 of a fresh pid namespace inside a container cgroup, as a runtime
/// would start it: `sh` joins the cgroup, then `unshare --pid --fork` makes the child PID 1.
pub struct NsInit {
    unshare: Child,
    /// Host pid of the namespace's PID 1.
    pub pid: u32,
    pidfd: OwnedFd,
    cgroup: PathBuf,
}

impl NsInit {
    pub fn spawn(cgroup: &Path, argv: &[&str]) -> Result<Self> {
        Self::spawn_in(cgroup, &[], argv)
    }

    /// Like [`NsInit::spawn`], also joining `extra` cgroups (v1 controllers: hybrid hosts).
    pub fn spawn_in(cgroup: &Path, extra: &[&Path], argv: &[&str]) -> Result<Self> {
        let mut join = String::new();
        for dir in std::iter::once(cgroup).chain(extra.iter().copied()) {
            std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
            join.push_str(&format!("echo $$ > {}/cgroup.procs && ", dir.display()));
        }
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("{join}exec unshare --pid --fork \"$@\""))
            .arg("sh")
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let unshare = cmd.spawn().context("spawning unshare")?;
        let upid = unshare.id();
        // The namespace's PID 1 is unshare's only child.
        let deadline = Instant::now() + Duration::from_secs(5);
        let pid = loop {
            let children = std::fs::read_to_string(format!("/proc/{upid}/task/{upid}/children"))
                .unwrap_or_default();
            if let Some(p) = children.split_whitespace().next().and_then(|p| p.parse::<u32>().ok())
            {
                // Wait until it has exec'd the workload (no longer unshare's copy).
                let exe = std::fs::read_link(format!("/proc/{p}/exe")).unwrap_or_default();
                if !exe.to_string_lossy().contains("unshare") {
                    break p;
                }
            }
            if Instant::now() > deadline {
                bail!("unshare did not start PID 1 in 5 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // SAFETY: plain syscall; the fd is owned below.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
        if fd < 0 {
            bail!("pidfd_open({pid}): {}", std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, owned pidfd.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(Self { unshare, pid, pidfd, cgroup: cgroup.into() })
    }

    /// Sends `sig` to PID 1 (from the host, as runc does) and returns the time it was sent.
    pub fn signal(&self, sig: i32) -> Instant {
        let t = Instant::now();
        // SAFETY: a pidfd we own keeps the target identity stable.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                sig,
                std::ptr::null::<u8>(),
                0,
            )
        };
        assert_eq!(rc, 0, "pidfd_send_signal: {}", std::io::Error::last_os_error());
        t
    }

    /// Waits (poll on the pidfd) until PID 1 has exited; returns when it was seen gone.
    pub fn wait_exit(&self, timeout: Duration) -> Result<Instant> {
        let mut pfd = libc::pollfd { fd: self.pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        let t = Instant::now();
        if rc != 1 {
            bail!("PID 1 ({}) did not exit within {timeout:?}", self.pid);
        }
        Ok(t)
    }

    /// Waits until PID 1 has a handler for `sig` or ignores it (a shell runs `trap` only
    /// after exec: a signal sent before that meets SIG_DFL, which an init drops).
    pub fn wait_handler(&self, sig: i32) -> Result<()> {
        wait_handler(self.pid, sig)
    }

    pub fn alive(&self) -> bool {
        let mut pfd = libc::pollfd { fd: self.pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, no wait.
        unsafe { libc::poll(&mut pfd, 1, 0) == 0 }
    }

    /// The status PID 1's parent reaped, as a runtime would: `unshare --fork` waits for its
    /// child and exits with the same code (util-linux sys-utils/unshare.c). It means to kill
    /// itself with a fatal signal too, but 2.38 fails to for SIGKILL and exits 1.
    pub fn reaped_status(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.unshare.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("unshare (parent of PID {}) did not exit within {timeout:?}", self.pid);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A trigger program of `tests/progs/<name>.c`, compiled with the system's C compiler into
/// `target/test-progs/` the first time a test asks for it (tiny purpose-built programs where
/// no real one behaves as the test needs).
pub fn trigger_program(name: &str) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("progs").join(format!("{name}.c"));
    let out_dir = root.join("../target/test-progs");
    let out = out_dir.join(name);
    let fresh = |o: &Path| {
        let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        matches!((m(o), m(&src)), (Some(a), Some(b)) if a >= b)
    };
    if !fresh(&out) {
        std::fs::create_dir_all(&out_dir).expect("target/test-progs");
        let tmp = out_dir.join(format!("{name}.{}", std::process::id()));
        let status = Command::new("cc")
            .args(["-O2", "-Wall", "-Werror", "-pthread", "-o"])
            .arg(&tmp)
            .arg(&src)
            .status()
            .expect("cc (gcc) is needed to build the tests' trigger programs: apt-get install gcc");
        assert!(status.success(), "compiling {} failed", src.display());
        std::fs::rename(&tmp, &out).expect("install trigger program");
    }
    out
}

impl Drop for NsInit {
    fn drop(&mut self) {
        if self.alive() {
            self.signal(libc::SIGKILL);
            let _ = self.wait_exit(Duration::from_secs(5));
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        // The cgroup is empty once PID 1 and unshare are gone.
        for _ in 0..100 {
            if std::fs::remove_dir(&self.cgroup).is_ok() || !self.cgroup.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Waits until `pid` catches or ignores `sig` (SigCgt / SigIgn in /proc/<pid>/status).
pub fn wait_handler(pid: u32, sig: i32) -> Result<()> {
    let bit = 1u64 << (sig - 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let mask = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or(0)
        };
        if (mask("SigCgt:") | mask("SigIgn:")) & bit != 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("pid {pid} installed no disposition for signal {sig} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The daemon under test, on a loopback port of its own, with its own journal and log root.
pub struct Daemon {
    child: Child,
    pub addr: String,
    pub dir: PathBuf,
    pub journal: PathBuf,
    pub log_root: PathBuf,
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("addr").port()
}

impl Daemon {
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
        let bin = observer_bin();
        assert!(bin.exists(), "{} missing: run `cargo xtask test` (it builds it)", bin.display());
        let child = Command::new(&bin)
            .args(["run", "--listen", &addr, "--journal"])
            .arg(&journal)
            .arg("--kubelet-log-root")
            .arg(&log_root)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("daemon.log")).expect("log file"))
            .spawn()
            .expect("spawn observer");
        let d = Self { child, addr, journal, log_root, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while d.http_get("/healthz").map(|(s, _)| s != 200).unwrap_or(true) {
            assert!(Instant::now() < deadline, "observer not healthy in 30 s:\n{}", d.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    /// The daemon's pid (to SIGKILL it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
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

    pub fn metrics(&self) -> String {
        self.http_get("/metrics").expect("GET /metrics").1
    }

    /// Value of one series (exact label set as rendered, e.g. `{namespace="x",outcome="killed"}`
    /// matched by every `key="value"` pair given); sums matching series.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics(), name, labels)
    }

    pub fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.journal)
            .unwrap_or_default()
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

impl Drop for Daemon {
    fn drop(&mut self) {
        stop_child(&mut self.child);
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

/// A runc container named `main` in a fresh pod `pod_name` of namespace `ns` (kubelet's log
/// layout under `log_root`), running `args`; returns once runc reports it running.
pub fn runc_in_pod(
    log_root: &Path,
    ns: &str,
    pod_name: &str,
    args: &[&str],
) -> (Pod, String, Runc) {
    let mut pod = Pod::new(log_root, ns, pod_name);
    let (cid, _) = pod.container("main");
    let runc = Runc::run(&cid, &format!("{}/{cid}", pod.cgroup_parent()), args).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while runc.status() != "running" {
        assert!(Instant::now() < deadline, "runc container not running");
        std::thread::sleep(Duration::from_millis(20));
    }
    (pod, cid, runc)
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

/// A runc container from a busybox-static root filesystem, in a kubepods cgroup.
pub struct Runc {
    pub id: String,
    bundle: PathBuf,
    created: bool,
}

impl Runc {
    /// Creates the bundle and starts the container detached; `cgroups_path` is
    /// hierarchy-relative (`/kubepods/besteffort/pod<uid>/<id>`).
    pub fn run(id: &str, cgroups_path: &str, args: &[&str]) -> Result<Self> {
        let bundle = std::env::temp_dir().join(format!("observer-bundle-{id}"));
        let rootfs = bundle.join("rootfs");
        for d in ["bin", "proc", "dev", "sys", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d))?;
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .context("busybox-static is not installed (cargo xtask setup installs it)")?;
        std::fs::copy(busybox, rootfs.join("bin/busybox"))?;
        for applet in ["sh", "sleep", "true", "kill"] {
            let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
        }
        let mut me = Self { id: id.into(), bundle: bundle.clone(), created: false };
        run_ok(Command::new("runc").args(["spec", "--rootless=false", "--bundle"]).arg(&bundle))
            .or_else(|_| run_ok(Command::new("runc").args(["spec", "--bundle"]).arg(&bundle)))?;
        let spec_path = bundle.join("config.json");
        let mut spec: Value = serde_json::from_str(&std::fs::read_to_string(&spec_path)?)?;
        spec["process"]["terminal"] = Value::Bool(false);
        spec["process"]["args"] = args.iter().map(|a| Value::String((*a).into())).collect();
        spec["root"]["readonly"] = Value::Bool(true);
        spec["linux"]["cgroupsPath"] = Value::String(cgroups_path.into());
        std::fs::write(&spec_path, serde_json::to_vec_pretty(&spec)?)?;
        // Detached: the container keeps its stdio, so it must not be our pipes (output()
        // would wait for the container to exit).
        let errlog = bundle.join("runc-run.err");
        let status = Command::new("runc")
            .args(["run", "--detach", "--bundle"])
            .arg(&bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&errlog)?)
            .status()?;
        if !status.success() {
            bail!(
                "runc run {id}: {status}: {}",
                std::fs::read_to_string(&errlog).unwrap_or_default()
            );
        }
        me.created = true;
        Ok(me)
    }

    /// Host pid of the container's PID 1.
    pub fn pid(&self) -> Result<u32> {
        let out = Command::new("runc").args(["state", &self.id]).output()?;
        let v: Value = serde_json::from_slice(&out.stdout)?;
        v["pid"].as_u64().map(|p| p as u32).context("runc state has no pid")
    }

    pub fn kill(&self, sig: &str) -> Result<()> {
        run_ok(Command::new("runc").args(["kill", &self.id, sig]))
    }

    pub fn status(&self) -> String {
        Command::new("runc")
            .args(["state", &self.id])
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
            .and_then(|v| v["status"].as_str().map(String::from))
            .unwrap_or_default()
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        if self.created {
            let _ = Command::new("runc").args(["delete", "--force", &self.id]).output();
        }
        let _ = std::fs::remove_dir_all(&self.bundle);
    }
}

fn run_ok(cmd: &mut Command) -> Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        bail!("{cmd:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Nanoseconds since the epoch of an RFC 3339 UTC timestamp with nanoseconds.
pub fn epoch_ns(ts: &Value) -> i128 {
    let s = ts.as_str().unwrap_or_else(|| panic!("not a timestamp: {ts}"));
    let (date, time) = s.trim_end_matches('Z').split_once('T').expect("RFC 3339");
    let d: Vec<i64> = date.split('-').map(|p| p.parse().unwrap()).collect();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m, day) = (if d[1] <= 2 { d[0] - 1 } else { d[0] }, d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|p| p.parse().unwrap()).collect();
    let ns: i64 = format!("{frac:0<9}")[..9].parse().unwrap();
    (days as i128 * 86_400 + (t[0] * 3600 + t[1] * 60 + t[2]) as i128) * 1_000_000_000 + ns as i128
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

    #[test]
    fn ids_look_like_kubernetes_ids() {
        let id = hex64("a");
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        let u = uuid("a");
        assert_eq!(u.len(), 36);
        assert_ne!(hex64("a"), hex64("b"));
    }
}
