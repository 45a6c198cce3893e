//! What the daemon keeps once started, for real: its capabilities after the probes are
//! attached (observer/src/privileges.rs), and its seccomp profile
//! (deploy/kubernetes/base/seccomp/observer.json, the DaemonSet's Localhost profile).
//!
//! - The profile is complete: the static daemon under `strace -f -c`, through a start that
//!   pins its probes, containers stopped through a real containerd's CRI and by runc (the CRI
//!   lookups answered), scrapes, journal rotation, the pins' heartbeat, a clean shutdown, and
//!   a restart that adopts the pins, repairs a torn journal line and retires another build's
//!   layout, makes no system call the profile does not allow. And it is minimal: every call
//!   it allows was made in that run, or is in a group whose comment says who else makes it
//!   (the OCI runtime's last steps before exec).
//! - The profile works: the daemon in a runc container with the DaemonSet's capabilities, no
//!   new privileges and that profile as its seccomp filter records a container's stop; it
//!   has dropped every capability (effective, permitted) while running, and a call outside
//!   the profile (unshare) is refused to a process under the same filter while it succeeds
//!   without it.
//! - The capabilities: a daemon started as root keeps exactly CAP_SYS_PTRACE and
//!   CAP_SYS_ADMIN (CapEff, CapPrm and CapBnd of every thread), with no new privileges, and
//!   still records a stop signal's termination and a stuck container's wchan and kernel stack,
//!   which need them; `--keep-capabilities` keeps everything.
//!
//! Pins go to a bpffs of each test's own, mounted in a temporary directory and unmounted
//! after `observer cleanup` (never the host's /sys/fs/bpf).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use observer_tests::{
    cleanup_pins,
    containerd::{ContainerSpec, PodSpec, PrivateContainerd},
    free_port, observer_bin,
    prometheus::{http_get, workspace_root},
    require_root, runc_container, runc_in_pod, unique, Daemon, Pod, Runc,
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// CAP_SYS_PTRACE and CAP_SYS_ADMIN: what a root daemon keeps on a 6.5+ kernel.
const ROOT_KEEPS: u64 = (1 << 19) | (1 << 21);
/// CAP_PERFMON and CAP_BPF: the DaemonSet's grants.
const DAEMONSET_CAPS: &[&str] = &["CAP_BPF", "CAP_PERFMON"];
const DAEMONSET_MASK: u64 = (1 << 38) | (1 << 39);

fn profile_path() -> PathBuf {
    workspace_root().join("deploy/kubernetes/base/seccomp/observer.json")
}

fn profile() -> Value {
    serde_json::from_str(&std::fs::read_to_string(profile_path()).unwrap())
        .expect("the seccomp profile is JSON")
}

/// Every system call the profile names, with its group's comment. Each group allows its
/// calls (clone only without namespace flags) or refuses them with an errno of its own
/// (clone3: ENOSYS, so that glibc falls back to clone).
fn listed() -> Vec<(String, String)> {
    let p = profile();
    assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO", "everything else is refused");
    assert_eq!(p["architectures"], json!(["SCMP_ARCH_X86_64"]));
    let mut out = Vec::new();
    for group in p["syscalls"].as_array().expect("a syscalls list") {
        let names: Vec<&str> =
            group["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
        match group["action"].as_str() {
            Some("SCMP_ACT_ALLOW") if names == ["clone"] => {
                assert_eq!(group["args"][0]["op"], "SCMP_CMP_MASKED_EQ", "{group}");
                assert_eq!(group["args"][0]["value"], 0x7e02_0000, "{group}");
            }
            Some("SCMP_ACT_ALLOW") => assert!(group.get("args").is_none(), "{group}"),
            Some("SCMP_ACT_ERRNO") => {
                assert_eq!((names.as_slice(), &group["errnoRet"]), (&["clone3"][..], &json!(38)))
            }
            other => panic!("action {other:?} in {group}"),
        }
        let comment = group["comment"].as_str().expect("every group says what it is for");
        out.extend(names.iter().map(|n| (n.to_string(), comment.to_string())));
    }
    out
}

/// The running kernel is 6.5 or later: the root daemon keeps no CAP_BPF for map updates.
fn map_updates_need_no_capability() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>().unwrap());
    let version = (v.next().unwrap(), v.next().unwrap());
    let disabled =
        std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled").unwrap().trim()
            != "0";
    version >= (6, 5) || !disabled
}

/// A bpffs of the test's own: pins go under `pin_dir()`; removed by `observer cleanup`, then
/// unmounted, on drop.
struct Bpffs(PathBuf);

impl Bpffs {
    fn mount() -> Self {
        require_root();
        let dir = std::env::temp_dir().join(unique("observer-bpffs-"));
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("mount").args(["-t", "bpf", "bpffs"]).arg(&dir).status();
        assert!(status.is_ok_and(|s| s.success()), "mount -t bpf bpffs {}", dir.display());
        Self(dir)
    }

    fn pin_dir(&self) -> PathBuf {
        self.0.join("observer")
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        if self.pin_dir().exists() {
            if let Err(e) = cleanup_pins(&self.pin_dir()) {
                eprintln!("{e}");
            }
        }
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A directory of the test's own, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(prefix: &str) -> Self {
        let dir = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The journal record of container `cid` (not a stuck one), waited for up to [`WAIT`].
fn wait_record(journal: &Path, cid: &str, log: &dyn Fn() -> String) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(journal).unwrap_or_default();
        let found = text.lines().filter(|l| l.ends_with('}')).find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["container_id"] == cid && v["outcome"] != "stuck").then_some(v)
        });
        if let Some(r) = found {
            return r;
        }
        assert!(Instant::now() < deadline, "no record for {cid} in {WAIT:?}:\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_healthy(addr: &str, log: &dyn Fn() -> String) {
    let deadline = Instant::now() + WAIT;
    while http_get(addr, "/healthz").map(|(s, _)| s != 200).unwrap_or(true) {
        assert!(Instant::now() < deadline, "observer not healthy in {WAIT:?}:\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One thread's capability sets and no-new-privileges, from its status file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sets {
    eff: u64,
    prm: u64,
    bnd: u64,
    inh: u64,
    amb: u64,
    nnp: bool,
}

fn sets(status: &str) -> Sets {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .trim()
            .to_string()
    };
    let hex = |name: &str| u64::from_str_radix(&field(name), 16).unwrap();
    Sets {
        eff: hex("CapEff"),
        prm: hex("CapPrm"),
        bnd: hex("CapBnd"),
        inh: hex("CapInh"),
        amb: hex("CapAmb"),
        nnp: field("NoNewPrivs") == "1",
    }
}

/// Every thread of `pid`: (tid, its sets).
fn thread_sets(pid: u32) -> Vec<(u32, Sets)> {
    let dir = format!("/proc/{pid}/task");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .flatten()
        .filter_map(|t| {
            let tid = t.file_name().to_str()?.parse().ok()?;
            Some((tid, sets(&std::fs::read_to_string(t.path().join("status")).ok()?)))
        })
        .collect()
}

fn kill(pid: u32, sig: i32) {
    // SAFETY: a signal to a process this test started (directly or through strace/runc).
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0, "kill {pid} {sig}");
}

/// The daemon under `strace -f -c`: the table of every system call its threads made.
struct Traced {
    strace: Child,
    table: PathBuf,
    log: PathBuf,
    addr: String,
}

impl Traced {
    fn start(dir: &Path, name: &str, args: &[String]) -> Self {
        let table = dir.join(format!("{name}.strace"));
        let log = dir.join(format!("{name}.log"));
        let addr = format!("127.0.0.1:{}", free_port());
        let strace = Command::new("strace")
            .args(["-f", "-c", "-o"])
            .arg(&table)
            .arg("--")
            .arg(observer_bin())
            .args(["run", "--listen", &addr])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("strace is not installed: `cargo xtask setup` installs Debian's strace");
        let me = Self { strace, table, log, addr };
        wait_healthy(&me.addr, &|| me.log());
        me
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon strace runs (its only child).
    fn daemon_pid(&self) -> u32 {
        let pid = self.strace.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        children.split_whitespace().next().expect("strace's child").parse().unwrap()
    }

    /// SIGTERM to the daemon, then the system calls strace counted.
    fn stop(mut self) -> BTreeSet<String> {
        kill(self.daemon_pid(), libc::SIGTERM);
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(s) = self.strace.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "traced daemon did not stop:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "traced daemon: {status}\n{}", self.log());
        assert!(self.log().contains("observer stopped"), "{}", self.log());
        let table = std::fs::read_to_string(&self.table).unwrap();
        let calls: BTreeSet<String> = table
            .lines()
            .filter_map(|l| {
                let t: Vec<&str> = l.split_whitespace().collect();
                (t.len() >= 5 && t[0].parse::<f64>().is_ok() && *t.last()? != "total")
                    .then(|| t.last().unwrap().to_string())
            })
            .collect();
        assert!(calls.contains("bpf") && calls.contains("perf_event_open"), "{table}");
        calls
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        if self.strace.try_wait().ok().flatten().is_none() {
            // The daemon first: a tracer's end detaches its tracee, which would run on.
            let pid = self.strace.id();
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()) {
                // SAFETY: the daemon this test started under strace, by pid.
                unsafe { libc::kill(child, libc::SIGKILL) };
            }
            let _ = self.strace.kill();
            let _ = self.strace.wait();
        }
    }
}

#[test]
fn the_seccomp_profile_allows_exactly_what_the_daemon_calls() {
    let allowed = listed();
    let mut seen = BTreeSet::new();
    for (name, _) in &allowed {
        assert!(seen.insert(name.clone()), "{name} listed twice in the profile");
    }

    let bpffs = Bpffs::mount();
    let scratch = Scratch::new("observer-seccomp-");
    let mut ctd = PrivateContainerd::start().unwrap();
    let journal = scratch.0.join("journal.jsonl");
    let args: Vec<String> = [
        "--journal",
        &journal.display().to_string(),
        // Small: the records below rotate it.
        "--journal-max-bytes",
        "4096",
        "--journal-files",
        "2",
        "--kubelet-log-root",
        &ctd.log_root.display().to_string(),
        "--cri-endpoint",
        &ctd.socket.display().to_string(),
        "--containerd-state",
        &ctd.state.display().to_string(),
        "--pin-dir",
        &bpffs.pin_dir().display().to_string(),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();

    let first = Traced::start(&scratch.0, "first", &args);
    let ns = unique("seccomp");
    // Through the CRI: names, grace periods and handlers are looked up there.
    for name in ["web-0", "web-1"] {
        let pod = PodSpec::new(&ns, name);
        let sandbox = ctd.run_pod(&pod).unwrap();
        let spec =
            ContainerSpec::new("app", &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"]);
        let id = ctd.start_container(&sandbox, &pod, &spec).unwrap();
        observer_tests::wait_handler(ctd.pid(&id).unwrap(), libc::SIGTERM).unwrap();
        ctd.stop_container(&id, 5).unwrap();
        wait_record(&journal, &id, &|| first.log());
    }
    // By runc, ignoring its stop signal: SIGKILLed.
    let (pod, cid, runc) = runc_in_pod(
        &ctd.log_root,
        &ns,
        "cache-0",
        &["sh", "-c", "trap 'echo no' TERM; while :; do sleep 1; done"],
    );
    observer_tests::wait_handler(runc.pid().unwrap(), libc::SIGTERM).unwrap();
    runc.kill("TERM").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    runc.kill("KILL").unwrap();
    let r = wait_record(&journal, &cid, &|| first.log());
    assert!(r["sigkill_at"].is_string(), "{r:#}");
    drop(runc);
    drop(pod);
    for path in ["/metrics", "/healthz", "/terminations", "/pods"] {
        let (status, _) = http_get(&first.addr, path).unwrap();
        assert_eq!(status, 200, "GET {path}");
    }
    // The pins' heartbeat (every 10 s from when the probes are attached, which under strace
    // takes seconds of its own): waited for as what it does, the layout directory's mtime
    // moving, not as a time since this test began.
    wait_heartbeat(&bpffs.pin_dir(), &|| first.log());
    let mut calls = first.stop();
    assert!(
        journal.with_extension("jsonl.1").exists(),
        "the journal did not rotate: {}",
        std::fs::read_to_string(&journal).unwrap_or_default()
    );

    // The restart: a torn last line to repair, the pins to adopt, another build's layout
    // directory to retire.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"torn"))
        .unwrap();
    std::fs::create_dir(bpffs.pin_dir().join("v0-other-build")).unwrap();
    let second = Traced::start(&scratch.0, "second", &args);
    assert!(second.log().contains("adopting the probes pinned"), "{}", second.log());
    let (pod, cid, runc) = runc_in_pod(
        &ctd.log_root,
        &ns,
        "cache-1",
        &["sh", "-c", "trap 'exit 2' TERM; sleep 1000 & wait"],
    );
    observer_tests::wait_handler(runc.pid().unwrap(), libc::SIGTERM).unwrap();
    runc.kill("TERM").unwrap();
    wait_record(&journal, &cid, &|| second.log());
    drop(runc);
    drop(pod);
    calls.extend(second.stop());
    drop(ctd);

    let names: BTreeSet<String> = allowed.iter().map(|(n, _)| n.clone()).collect();
    let missing: Vec<&String> = calls.difference(&names).collect();
    assert!(
        missing.is_empty(),
        "the daemon made system calls its seccomp profile ({}) does not list: {missing:?}\n\
         every call measured: {calls:?}",
        profile_path().display()
    );
    // Minimal: every allowed call was made here, or its group says who makes it.
    let unused: Vec<&(String, String)> = allowed
        .iter()
        .filter(|(n, c)| !calls.contains(n) && !c.starts_with("Not measured"))
        .collect();
    assert!(
        unused.is_empty(),
        "listed by the profile but never called by the daemon: {unused:?}\n\
         every call measured: {calls:?}"
    );
    eprintln!("measured {} system calls: {calls:?}", calls.len());
}

/// Until a live daemon renews the heartbeat on its layout directory (the one directory under
/// `pin_dir`): its mtime moves.
fn wait_heartbeat(pin_dir: &Path, log: &dyn Fn() -> String) {
    let layout = || -> Option<(PathBuf, std::time::SystemTime)> {
        let dirs: Vec<PathBuf> = std::fs::read_dir(pin_dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        let [dir] = dirs.as_slice() else { return None };
        let mtime = std::fs::metadata(dir).ok()?.modified().ok()?;
        Some((dir.clone(), mtime))
    };
    let (dir, before) =
        layout().unwrap_or_else(|| panic!("no one layout directory in {}", pin_dir.display()));
    // Two heartbeats' time: the first may have come just before `before` was read.
    // observer/src/daemon.rs: HEARTBEAT is 10 s.
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        match layout() {
            Some((d, m)) if d == dir && m != before => return,
            _ => {}
        }
        assert!(Instant::now() < deadline, "no heartbeat on {} in time:\n{}", dir.display(), log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A runc bundle of the test's own: the static daemon (or busybox) in a root filesystem of
/// its own, with the DaemonSet's security context: CAP_BPF and CAP_PERFMON, no new
/// privileges, a read-only root, `seccomp` (the profile, or none), the host's pid and
/// network namespaces (hostPID; the network only so that the test reaches /metrics).
struct Bundle {
    dir: PathBuf,
    id: String,
    started: bool,
}

impl Bundle {
    fn new(args: &[&str], seccomp: Option<Value>, mounts: Vec<Value>) -> Self {
        require_root();
        let id = unique("observer-priv-");
        let dir = std::env::temp_dir().join(&id);
        let rootfs = dir.join("rootfs");
        for d in ["proc", "dev", "sys", "tmp", "usr/bin", "bin", "var/lib/observer"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy(observer_bin(), rootfs.join("usr/bin/observer")).unwrap();
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("busybox-static is not installed (cargo xtask setup installs it)");
        let me = Self { dir, id, started: false };
        let out =
            Command::new("runc").args(["spec", "--bundle"]).arg(&me.dir).output().expect("runc");
        assert!(out.status.success(), "runc spec: {}", String::from_utf8_lossy(&out.stderr));
        let path = me.dir.join("config.json");
        let mut spec: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        spec["process"]["args"] = json!(args);
        spec["process"]["terminal"] = false.into();
        spec["process"]["user"] = json!({"uid": 0, "gid": 0});
        spec["process"]["env"]
            .as_array_mut()
            .unwrap()
            .extend([json!("NODE_NAME=privileges-test-node"), json!("RUST_LOG=info")]);
        let caps = json!(DAEMONSET_CAPS);
        spec["process"]["capabilities"] = json!({
            "bounding": caps, "effective": caps, "permitted": caps,
            "inheritable": [], "ambient": [],
        });
        spec["process"]["noNewPrivileges"] = true.into();
        spec["root"]["readonly"] = true.into();
        match seccomp {
            Some(s) => spec["linux"]["seccomp"] = s,
            None => {
                spec["linux"].as_object_mut().unwrap().remove("seccomp");
            }
        }
        spec["linux"]["namespaces"] =
            json!([{"type": "mount"}, {"type": "ipc"}, {"type": "uts"}, {"type": "cgroup"}]);
        spec["linux"]["cgroupsPath"] = format!("/{}", me.id).into();
        let all = spec["mounts"].as_array_mut().unwrap();
        all.retain(|m| m["destination"] != "/sys/fs/cgroup");
        for m in all.iter_mut().filter(|m| m["destination"] == "/sys") {
            m["options"] = json!(["nosuid", "noexec", "nodev", "ro"]);
        }
        all.push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                        "options": ["nosuid", "nodev", "mode=1777"]}));
        all.extend(mounts);
        std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
        me
    }

    fn start_detached(&mut self) {
        let log = std::fs::File::create(self.dir.join("daemon.log")).unwrap();
        self.started = true;
        let status = Command::new("runc")
            .args(["run", "--detach", "--bundle"])
            .arg(&self.dir)
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .status()
            .expect("runc");
        assert!(status.success(), "runc run --detach: {}", self.log());
    }

    /// Runs the container in the foreground to completion: (success, stdout + stderr).
    fn run_to_end(&mut self) -> (bool, String) {
        self.started = true;
        let out = Command::new("runc")
            .args(["run", "--bundle"])
            .arg(&self.dir)
            .arg(&self.id)
            .stdin(Stdio::null())
            .output()
            .expect("runc");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        let out = Command::new("runc").args(["state", &self.id]).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["pid"].as_u64().expect("runc state has a pid") as u32
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        if self.started {
            let _ = Command::new("runc").args(["kill", &self.id, "TERM"]).output();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline
                && Command::new("runc")
                    .args(["state", &self.id])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("\"running\""))
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = Command::new("runc").args(["delete", "--force", &self.id]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        for root in [observer_tests::cgroup_v2_root(), PathBuf::from("/sys/fs/cgroup")] {
            let _ = std::fs::remove_dir(root.join(&self.id));
        }
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            for e in entries.flatten() {
                let _ = std::fs::remove_dir(e.path().join(&self.id));
            }
        }
    }
}

fn bind(src: &Path, dst: &str, ro: bool) -> Value {
    let mut options = vec!["rbind", "nosuid", "nodev", "noexec"];
    if ro {
        options.push("ro");
    }
    json!({"type": "bind", "source": src, "destination": dst, "options": options})
}

#[test]
fn the_daemon_under_its_seccomp_profile_records_with_no_capability_left() {
    let bpffs = Bpffs::mount();
    let scratch = Scratch::new("observer-priv-it-");
    let (logs, journal) = (scratch.0.join("logs"), scratch.0.join("journal"));
    for d in [logs.join("pods"), logs.join("containers"), journal.clone()] {
        std::fs::create_dir_all(d).unwrap();
    }
    let addr = format!("127.0.0.1:{}", free_port());
    let mounts = vec![
        bind(Path::new("/sys/kernel/tracing"), "/sys/kernel/tracing", true),
        bind(Path::new("/sys/kernel/btf"), "/sys/kernel/btf", true),
        bind(Path::new("/sys/fs/cgroup"), "/sys/fs/cgroup", true),
        bind(&logs.join("pods"), "/var/log/pods", true),
        bind(&logs.join("containers"), "/var/log/containers", true),
        bind(&bpffs.0, "/sys/fs/bpf", false),
        bind(&journal, "/var/lib/observer", false),
    ];
    let listen = format!("--listen={addr}");
    let mut b = Bundle::new(
        &[
            "/usr/bin/observer",
            "run",
            &listen,
            "--journal=/var/lib/observer/terminations.jsonl",
            "--kubelet-log-root=/var/log",
            "--pin-dir=/sys/fs/bpf/observer",
        ],
        Some(profile()),
        mounts,
    );
    b.start_detached();
    wait_healthy(&addr, &|| b.log());
    let log = b.log();
    assert!(log.contains("pinning the probes at /sys/fs/bpf/observer/"), "{log}");
    assert!(log.contains("capabilities dropped: CAP_PERFMON"), "{log}");

    // No capability left in any thread; the bounding set is the runtime's (no CAP_SETPCAP to
    // drop from it), and no new privileges.
    let pid = b.pid();
    let keep = if map_updates_need_no_capability() { 0 } else { 1 << 39 };
    let threads = thread_sets(pid);
    // Threads made under the filter: clone, not clone3.
    assert!(threads.len() > 2, "{threads:?}");
    for (tid, s) in threads {
        assert_eq!((s.eff, s.prm, s.inh, s.amb), (keep, keep, 0, 0), "thread {tid}: {s:?}\n{log}");
        assert_eq!(s.bnd, DAEMONSET_MASK, "thread {tid}: {s:?}");
        assert!(s.nnp, "thread {tid}");
    }
    // The seccomp filter is the container's: Seccomp 2 (filter mode) on every thread.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.lines().any(|l| l == "Seccomp:\t2"), "{status}");

    // A container's stop, recorded by the confined daemon.
    let ns = unique("priv");
    let mut pod = Pod::new(&logs, &ns, "api-6d8f7c5b9-x2k4q");
    let (cid, _) = pod.container("server");
    let runc = Runc::run(
        &cid,
        &pod.container_cgroup(&cid),
        &["sh", "-c", "trap 'exit 7' TERM; sleep 1000 & wait"],
    )
    .unwrap();
    let main_pid = runc.pid().unwrap();
    observer_tests::wait_handler(main_pid, libc::SIGTERM).unwrap();
    runc.kill("TERM").unwrap();
    let record = wait_record(&journal.join("terminations.jsonl"), &cid, &|| b.log());
    assert_eq!(record["pid"], main_pid, "{record:#}");
    assert_eq!(record["container"], "server");
    assert_eq!(record["workload"], "api");
    assert_eq!(record["outcome"], "graceful", "{record:#}");
    assert_eq!(record["exit_code"], 7, "{record:#}");
    assert_eq!(record["stop_signal"], "SIGTERM");
    let (status, metrics) = http_get(&addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("container_terminations_total{"), "{metrics}");
    drop(runc);
    drop(pod);
    drop(b);
}

/// What the README has operators run in the pod (`kubectl exec <pod> -- observer check`, and
/// `observer report` on the journal) works under the same filter and capabilities: the
/// preflight loads every program.
#[test]
fn observer_check_and_report_run_under_the_profile() {
    let bpffs = Bpffs::mount();
    let journal = Scratch::new("observer-priv-report-");
    std::fs::write(journal.0.join("terminations.jsonl"), "").unwrap();
    let mounts = || {
        vec![
            bind(Path::new("/sys/kernel/tracing"), "/sys/kernel/tracing", true),
            bind(Path::new("/sys/kernel/btf"), "/sys/kernel/btf", true),
            bind(Path::new("/sys/fs/cgroup"), "/sys/fs/cgroup", true),
            bind(&bpffs.0, "/sys/fs/bpf", false),
            bind(&journal.0, "/var/lib/observer", true),
        ]
    };
    let mut check = Bundle::new(&["/usr/bin/observer", "check"], Some(profile()), mounts());
    let (ok, out) = check.run_to_end();
    assert!(ok, "observer check under the profile:\n{out}");
    assert!(out.contains("checks passed") && out.contains("program signal_generate"), "{out}");
    drop(check);
    let mut report = Bundle::new(
        &["/usr/bin/observer", "report", "--journal=/var/lib/observer/terminations.jsonl"],
        Some(profile()),
        mounts(),
    );
    let (ok, out) = report.run_to_end();
    assert!(ok, "observer report under the profile:\n{out}");
}

/// The same filter refuses what the daemon never calls: busybox's `unshare -U` (a user
/// namespace, which needs no capability) fails under the profile and succeeds without it.
#[test]
fn a_system_call_outside_the_profile_is_refused() {
    let unshare = ["/bin/busybox", "unshare", "-U", "/bin/busybox", "true"];
    let mut without = Bundle::new(&unshare, None, Vec::new());
    let (ok, out) = without.run_to_end();
    assert!(ok, "unshare -U without the profile (is user namespace creation allowed here?): {out}");
    drop(without);
    let mut confined = Bundle::new(&unshare, Some(profile()), Vec::new());
    let (ok, out) = confined.run_to_end();
    assert!(!ok, "unshare -U succeeded under the daemon's seccomp profile: {out}");
    assert!(out.contains("Operation not permitted"), "{out}");
}

/// Started as root (every capability), the daemon keeps exactly what the rest of its run
/// needs, on every thread, and what needs it works: a stop signal's termination is recorded,
/// and so is a stuck container's wchan and kernel stack (CAP_SYS_PTRACE, CAP_SYS_ADMIN).
#[test]
fn a_root_daemon_keeps_only_what_stuck_inspection_and_maps_need() {
    let d = Daemon::start_with(None, &["--stuck-after", "2s", "--pin-dir", "none"]);
    let keep = if map_updates_need_no_capability() { ROOT_KEEPS } else { ROOT_KEEPS | 1 << 39 };
    let threads = thread_sets(d.pid());
    assert!(threads.len() > 1, "{threads:?}");
    for (tid, s) in &threads {
        assert_eq!(
            *s,
            Sets { eff: keep, prm: keep, bnd: keep, inh: 0, amb: 0, nnp: true },
            "thread {tid}\n{}",
            d.log()
        );
    }
    assert!(d.log().contains("kept: CAP_SYS_PTRACE ("), "{}", d.log());

    let ns = unique("privroot");
    let (pod, cid, runc) =
        runc_container(&d, &ns, "queue-0", &["sh", "-c", "trap 'exit 5' TERM; sleep 1000 & wait"]);
    let pid = runc.pid().unwrap();
    observer_tests::wait_handler(pid, libc::SIGTERM).unwrap();
    runc.kill("TERM").unwrap();
    let r = &d.wait_records(1, WAIT, |r| r["container_id"] == cid)[0];
    assert_eq!(
        (r["outcome"].as_str(), r["exit_code"].as_i64()),
        (Some("graceful"), Some(5)),
        "{r:#}"
    );
    assert_eq!(r["stop_signal"], "SIGTERM");
    assert_eq!(r["pid"], pid);
    drop(runc);
    drop(pod);

    // Stuck: a frozen main process SIGKILLed (cgroup v1's freezer keeps a killed task
    // frozen), inspected by the daemon with only the kept capabilities.
    let (pod, cid, runc) = runc_container(&d, &ns, "db-0", &["sleep", "1000"]);
    let pid = runc.pid().unwrap();
    let freezer = Freezer::of(&pod.container_cgroup(&cid));
    freezer.set("FROZEN");
    kill(pid, libc::SIGKILL);
    let stuck =
        &d.wait_records(1, WAIT, |r| r["container_id"] == cid && r["outcome"] == "stuck")[0];
    freezer.set("THAWED");
    let main = &stuck["stuck"]["main"];
    assert_eq!(main["pid"], pid, "{stuck:#}");
    assert_eq!(main["state"], "D", "{stuck:#}");
    assert!(main["wchan"].is_string(), "wchan needs CAP_SYS_PTRACE: {stuck:#}");
    let stack = main["stack"].as_array().expect("the kernel stack needs CAP_SYS_ADMIN");
    assert!(!stack.is_empty(), "{stuck:#}");
    d.wait_records(1, WAIT, |r| r["container_id"] == cid && r["outcome"] != "stuck");
    drop(runc);
    drop(pod);
}

/// A container's cgroup v1 freezer (runc made it), thawed on drop.
struct Freezer(PathBuf);

impl Freezer {
    fn of(cgroup: &str) -> Self {
        let dir = PathBuf::from("/sys/fs/cgroup/freezer").join(cgroup.trim_start_matches('/'));
        assert!(
            dir.join("freezer.state").exists(),
            "no cgroup v1 freezer at {} (this test needs the hybrid layout's freezer)",
            dir.display()
        );
        Self(dir)
    }

    fn set(&self, state: &str) {
        std::fs::write(self.0.join("freezer.state"), state).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(self.0.join("freezer.state")).unwrap().trim() != state {
            assert!(Instant::now() < deadline, "freezer not {state} in 5 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("freezer.state"), "THAWED");
    }
}

#[test]
fn keep_capabilities_keeps_them_all() {
    let mine = sets(&std::fs::read_to_string("/proc/self/status").unwrap());
    let d = Daemon::start_with(None, &["--keep-capabilities", "--pin-dir", "none"]);
    for (tid, s) in thread_sets(d.pid()) {
        assert_eq!((s.eff, s.prm, s.bnd), (mine.eff, mine.prm, mine.bnd), "thread {tid}");
    }
    assert!(d.log().contains("--keep-capabilities: keeping every capability"), "{}", d.log());
    assert!(!d.log().contains("capabilities dropped"), "{}", d.log());
}
