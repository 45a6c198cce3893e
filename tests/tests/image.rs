//! The image `cargo xtask image` builds, run by runc with exactly the privileges and mounts
//! deploy/kubernetes/observer.yaml declares: CAP_BPF and CAP_PERFMON only, no new privileges,
//! a read-only root filesystem, no seccomp filter, the host's pid namespace (`hostPID: true`:
//! the start-up walk reads host pids from /proc and cgroup.procs) and private
//! mount/ipc/uts/cgroup namespaces; read-only host mounts of tracefs, BTF, the cgroup
//! hierarchy, kubelet's logs and containerd's state directory, and read-write the host's bpffs
//! (the probes' pins) and the journal directory.
//!
//! Test-only differences from a pod: the host network namespace (the test reads /metrics on
//! loopback; the DaemonSet uses the pod network), a pin directory of the test's own
//! (`--pin-dir /sys/fs/bpf/observer-it-*`, never the node's default), removed afterwards by the
//! host's `observer cleanup` as a node's is when the DaemonSet goes, and /run/containerd
//! mounted only where the host has it. The CRI path itself (containerd running the image) is
//! the CRI test's.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use observer_tests::{
    cleanup_pins,
    prometheus::{http_get, workspace_root},
    require_root, unique, Pod, Runc,
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);
/// The DaemonSet's `capabilities.add` (after `drop: [ALL]`), as the runtime names them.
const DAEMONSET_CAPS: &[&str] = &["CAP_BPF", "CAP_PERFMON"];
/// Where nodes mount bpffs (the DaemonSet's `bpffs` hostPath, mounted at the same path).
const BPFFS: &str = "/sys/fs/bpf";
/// bpffs' `f_type` (include/uapi/linux/magic.h `BPF_FS_MAGIC`).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// containerd's state directory (the DaemonSet's `containerd-state` hostPath, read-only).
const CONTAINERD_STATE: &str = "/run/containerd";

/// The host's /sys/fs/bpf must be bpffs, as on a node (systemd's sys-fs-bpf.mount): the
/// container gets a bind of it, as the pod gets the hostPath. Not mounted here: a test that
/// mounted bpffs over the host's would hide the host's pins from everything else.
fn require_host_bpffs() {
    let path = std::ffi::CString::new(BPFFS).unwrap();
    // SAFETY: a NUL-terminated path and an out struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(path.as_ptr(), &mut st) };
    assert!(
        rc == 0 && st.f_type as i64 == BPF_FS_MAGIC,
        "{BPFFS} is not bpffs on this host (statfs: rc {rc}, f_type {:#x}, {}): the image test \
         mounts the host's bpffs into the container as the DaemonSet does. Mount it as systemd \
         does on a node: `mount -t bpf bpffs {BPFFS}` (as root), then run the test again",
        st.f_type,
        if rc == 0 { "no error".to_string() } else { std::io::Error::last_os_error().to_string() }
    );
}

/// A pin directory of the test's own in the host's bpffs: `observer cleanup` removes it on
/// drop if the test did not get that far (declare it before the [`Bundle`] whose daemon pins
/// there: cleanup is refused while that daemon holds the lock).
struct PinDir(PathBuf);

impl PinDir {
    fn new() -> Self {
        require_host_bpffs();
        Self(Path::new(BPFFS).join(unique("observer-it-")))
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if self.0.exists() {
            if let Err(e) = cleanup_pins(&self.0) {
                eprintln!("{e}");
            }
        }
    }
}

/// The unpacked image as an OCI bundle, ended and removed on drop.
struct Bundle {
    dir: PathBuf,
    id: String,
    started: bool,
}

impl Bundle {
    /// Unpacks the image built by `cargo xtask image` and applies the DaemonSet's security
    /// context and mounts; `journal` is the host directory mounted at /var/lib/observer.
    fn new(args: &[&str], log_root: &Path, journal: &Path) -> Self {
        Self::with_caps(args, log_root, journal, DAEMONSET_CAPS)
    }

    /// Like [`Bundle::new`] with other capabilities (to show each one is needed).
    fn with_caps(args: &[&str], log_root: &Path, journal: &Path, caps: &[&str]) -> Self {
        require_root();
        let layout = std::env::var_os("OBSERVER_IMAGE_LAYOUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target/image/oci"));
        assert!(
            layout.join("index.json").is_file(),
            "{} missing: run `cargo xtask image` (`cargo xtask test` does)",
            layout.display()
        );
        let id = unique("observer-image-");
        let dir = std::env::temp_dir().join(&id);
        let image = format!("{}:{}", layout.display(), env!("CARGO_PKG_VERSION"));
        let out = Command::new("umoci")
            .args(["unpack", "--image", &image])
            .arg(&dir)
            .output()
            .expect("umoci is not installed: `cargo xtask setup` installs it");
        assert!(out.status.success(), "umoci unpack: {}", String::from_utf8_lossy(&out.stderr));
        let me = Self { dir, id, started: false };

        let path = me.dir.join("config.json");
        let mut spec: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        // The image's own entrypoint, as the DaemonSet's `command`.
        assert_eq!(spec["process"]["args"][0], "/usr/bin/observer", "{}", spec["process"]);
        let mut argv = vec![Value::from("/usr/bin/observer")];
        argv.extend(args.iter().map(|a| Value::from(*a)));
        spec["process"]["args"] = Value::Array(argv);
        spec["process"]["terminal"] = false.into();
        spec["process"]["user"] = json!({"uid": 0, "gid": 0});
        spec["process"]["env"]
            .as_array_mut()
            .unwrap()
            .extend([json!("NODE_NAME=image-test-node"), json!("RUST_LOG=info")]);
        // drop: [ALL], add: [BPF, PERFMON]; allowPrivilegeEscalation: false.
        let caps = json!(caps);
        spec["process"]["capabilities"] = json!({
            "bounding": caps, "effective": caps, "permitted": caps,
            "inheritable": [], "ambient": [],
        });
        spec["process"]["noNewPrivileges"] = true.into();
        spec["root"]["readonly"] = true.into();
        // seccompProfile: Unconfined.
        spec["linux"].as_object_mut().unwrap().remove("seccomp");
        // hostPID: true (no "pid" entry: runc keeps the host's); hostIPC: false. hostNetwork:
        // false in the DaemonSet, here the host's (see the module doc).
        spec["linux"]["namespaces"] =
            json!([{"type": "mount"}, {"type": "ipc"}, {"type": "uts"}, {"type": "cgroup"}]);
        // A cgroup of its own at the top, no shared parent: tests run in parallel, and one
        // bundle's cleanup removing an empty shared parent raced another's `runc run`
        // (mkdir of its cgroup under the parent: ENOENT).
        spec["linux"]["cgroupsPath"] = format!("/{}", me.id).into();
        spec["linux"]["maskedPaths"] = json!([
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/proc/scsi"
        ]);
        spec["linux"]["readonlyPaths"] =
            json!(["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]);
        let mounts = spec["mounts"].as_array_mut().unwrap();
        // The runtime's namespaced cgroupfs is replaced by the host's, as in the DaemonSet.
        mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
        for m in mounts.iter_mut().filter(|m| m["destination"] == "/sys") {
            m["options"] = json!(["nosuid", "noexec", "nodev", "ro"]);
        }
        let bind = |src: &Path, dst: &str, ro: bool| {
            let mut options = vec!["rbind", "nosuid", "nodev", "noexec"];
            if ro {
                options.push("ro");
            }
            json!({"type": "bind", "source": src, "destination": dst, "options": options})
        };
        require_host_bpffs();
        mounts.extend([
            bind(Path::new("/sys/kernel/tracing"), "/sys/kernel/tracing", true),
            bind(Path::new("/sys/kernel/btf"), "/sys/kernel/btf", true),
            bind(Path::new("/sys/fs/cgroup"), "/sys/fs/cgroup", true),
            bind(&log_root.join("pods"), "/var/log/pods", true),
            bind(&log_root.join("containers"), "/var/log/containers", true),
            bind(Path::new(BPFFS), BPFFS, false),
            bind(journal, "/var/lib/observer", false),
        ]);
        // containerd's state directory, read-only. No containerd runs there for this test (its
        // containers are plain runc ones, whose state is under /run/runc, not mounted: the
        // daemon finds their main processes from the cgroups' shape), so the mount is only
        // skipped when the host has no such directory: runc cannot bind a missing source.
        if Path::new(CONTAINERD_STATE).is_dir() {
            mounts.push(bind(Path::new(CONTAINERD_STATE), CONTAINERD_STATE, true));
        } else {
            eprintln!("{CONTAINERD_STATE} is absent on this host: not mounted into the image");
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
        me
    }

    /// Runs the container in the foreground to completion: (exit status, stdout + stderr).
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

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        if self.started {
            // SIGTERM first: the daemon writes what it has, then runc removes the container.
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
        // `runc delete` removes the container's cgroup; what a failed `runc run` made
        // before it failed goes here, in every hierarchy.
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

/// A kubelet log root and a journal directory of the test's own, removed on drop (declare it
/// first: it must outlive the containers that mount it).
struct Scratch {
    base: PathBuf,
    logs: PathBuf,
    journal: PathBuf,
}

fn scratch_dirs() -> Scratch {
    let base = std::env::temp_dir().join(unique("observer-image-it-"));
    let (logs, journal) = (base.join("logs"), base.join("journal"));
    for d in [logs.join("pods"), logs.join("containers"), journal.clone()] {
        std::fs::create_dir_all(d).unwrap();
    }
    Scratch { base, logs, journal }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// `observer check` inside the image, with only CAP_BPF and CAP_PERFMON: every check passes,
/// including loading every BPF program, and CAP_SYS_ADMIN is indeed absent.
#[test]
fn image_preflight_passes_with_only_bpf_and_perfmon() {
    let scratch = scratch_dirs();
    let mut b = Bundle::new(&["check"], &scratch.logs, &scratch.journal);
    let (ok, out) = b.run_to_end();
    drop(b);
    assert!(ok, "observer check failed in the image:\n{out}");
    assert!(out.contains("checks passed"), "{out}");
    assert!(out.contains("CAP_BPF, CAP_PERFMON (uid 0)"), "{out}");
    assert!(!out.contains("CAP_SYS_ADMIN ("), "the container must not hold CAP_SYS_ADMIN:\n{out}");
    assert!(out.contains("program signal_generate"), "{out}");
}

/// Least privilege, the other way round: without either capability the preflight fails and
/// names what is missing.
#[test]
fn image_preflight_fails_without_bpf_or_perfmon() {
    for (keep, missing) in [("CAP_BPF", "CAP_PERFMON"), ("CAP_PERFMON", "CAP_BPF")] {
        let scratch = scratch_dirs();
        let mut b = Bundle::with_caps(&["check"], &scratch.logs, &scratch.journal, &[keep]);
        let (ok, out) = b.run_to_end();
        drop(b);
        assert!(!ok, "observer check passed with only {keep}:\n{out}");
        assert!(out.contains(&format!("missing {missing}")), "{out}");
    }
}

/// The journal record for container `cid`, waited for up to [`WAIT`].
fn wait_record(journal: &Path, cid: &str, b: &Bundle) -> Value {
    let file = journal.join("terminations.jsonl");
    let deadline = Instant::now() + WAIT;
    loop {
        let found = std::fs::read_to_string(&file).unwrap_or_default().lines().find_map(|l| {
            let v: Value = serde_json::from_str(l).expect("journal line is JSON");
            (v["container_id"] == cid).then_some(v)
        });
        if let Some(r) = found {
            return r;
        }
        assert!(Instant::now() < deadline, "no record for {cid} in {WAIT:?}:\n{}", b.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The containerized daemon, with the DaemonSet's privileges and mounts:
/// - pins its probes in the host's bpffs (its log says so), and the pins outlive it until the
///   host's `observer cleanup` removes them, as on a node when the DaemonSet goes;
/// - adopts a container already running when it starts (a runc container in a kubepods cgroup:
///   the start-up walk needs the host pid namespace) and records its stop;
/// - sees another container started after it stop, names it from the mounted kubelet log
///   layout, journals it on the host path, and serves it in /metrics.
#[test]
fn image_daemon_observes_another_container_and_serves_metrics() {
    let scratch = scratch_dirs();
    let (logs, journal) = (&scratch.logs, &scratch.journal);
    let pins = PinDir::new();
    let ns = unique("img");

    // Running before the daemon: the kernel never sees its main process exec.
    let mut early_pod = Pod::new(logs, &ns, "cache-0");
    let (early_cid, _) = early_pod.container("redis");
    let early = Runc::run(
        &early_cid,
        &early_pod.container_cgroup(&early_cid),
        &["sh", "-c", "trap 'exit 4' TERM; sleep 1000 & wait"],
    )
    .unwrap();
    early.wait_running(Duration::from_secs(15)).unwrap();
    let early_pid = early.pid().unwrap();
    observer_tests::wait_handler(early_pid, libc::SIGTERM).unwrap();

    let addr = format!("127.0.0.1:{}", observer_tests::free_port());
    let listen = format!("--listen={addr}");
    let pin_dir = format!("--pin-dir={}", pins.0.display());
    let mut b = Bundle::new(
        &[
            "run",
            &listen,
            "--journal=/var/lib/observer/terminations.jsonl",
            "--kubelet-log-root=/var/log",
            &pin_dir,
        ],
        logs,
        journal,
    );
    b.start_detached();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(&addr, "/healthz").map(|(s, _)| s != 200).unwrap_or(true) {
        assert!(Instant::now() < deadline, "containerized observer not healthy:\n{}", b.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = b.log();
    assert!(
        log.contains(&format!("pinning the probes at {}/", pins.0.display())),
        "the containerized daemon did not pin its probes in the host's bpffs:\n{log}"
    );
    assert!(!log.contains("running unpinned"), "{log}");
    let adopted = log
        .lines()
        .find_map(|l| l.split_once("start-up walk: ")?.1.split_once(" running main processes"))
        .and_then(|(head, _)| head.rsplit(' ').next()?.parse::<u32>().ok());
    assert!(
        adopted.is_some_and(|n| n >= 1),
        "the start-up walk adopted no running container (host pid namespace?):\n{log}"
    );

    // The adopted container's stop is recorded, with its main process as the host sees it.
    early.kill("TERM").unwrap();
    let record = wait_record(journal, &early_cid, &b);
    assert_eq!(record["namespace"], ns.as_str());
    assert_eq!(record["pod"], "cache-0");
    assert_eq!(record["container"], "redis");
    assert_eq!(record["pid"], early_pid, "{record:#}");
    assert_eq!(record["outcome"], "graceful", "{record:#}");
    assert_eq!(record["exit_code"], 4, "{record:#}");
    assert_eq!(record["stop_signal"], "SIGTERM");
    assert_eq!(record["stop_signal_sender"]["comm"], "runc");
    drop(early);
    drop(early_pod);

    let mut pod = Pod::new(logs, &ns, "checkout-5f7c9d8b6-m4k2p");
    let (cid, _) = pod.container("server");
    let runc = Runc::run(
        &cid,
        &pod.container_cgroup(&cid),
        &["sh", "-c", "trap 'exit 3' TERM; sleep 1000 & wait"],
    )
    .unwrap();
    let pid = runc.pid().unwrap();
    observer_tests::wait_handler(pid, libc::SIGTERM).unwrap();
    runc.kill("TERM").unwrap();

    let record = wait_record(journal, &cid, &b);
    assert_eq!(record["node"], "image-test-node");
    assert_eq!(record["namespace"], ns.as_str());
    assert_eq!(record["pod"], "checkout-5f7c9d8b6-m4k2p");
    assert_eq!(record["workload"], "checkout");
    assert_eq!(record["container"], "server");
    assert_eq!(record["pid"], pid);
    assert_eq!(record["outcome"], "graceful");
    assert_eq!(record["exit_code"], 3, "{record:#}");
    assert_eq!(record["stop_signal"], "SIGTERM");
    assert_eq!(record["stop_signal_sender"]["comm"], "runc");

    let (status, metrics) = http_get(&addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    let graceful = observer_tests::metric_value(
        &metrics,
        "container_terminations_total",
        &[("namespace", &ns), ("workload", "checkout"), ("outcome", "graceful")],
    );
    assert_eq!(graceful, 1.0, "{metrics}");
    drop(runc);
    drop(pod);
    drop(b);

    // The pod is gone; its pins are not (the kernel keeps recording until a next daemon or
    // `observer cleanup`): a layout directory holding the program links.
    let links: Vec<String> = std::fs::read_dir(&pins.0)
        .unwrap_or_else(|e| panic!("{} gone with the container: {e}", pins.0.display()))
        .flatten()
        .filter(|e| e.path().is_dir())
        .flat_map(|layout| std::fs::read_dir(layout.path()).into_iter().flatten().flatten())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("link_"))
        .collect();
    assert!(!links.is_empty(), "no program link pinned under {}", pins.0.display());
    // What a node's removal runs: the host's observer, with the same pin directory.
    let out = cleanup_pins(&pins.0).unwrap();
    assert!(out.contains(&format!("{} program links detached", links.len())), "{out}");
    assert!(!pins.0.exists(), "{} left after observer cleanup: {out}", pins.0.display());
}
