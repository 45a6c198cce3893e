//! `cargo xtask bench`, the kernel's own accounting: what each of observer's programs costs per
//! run, against an empty program of the same type at the same hook, in the same storm.
//!
//! `kernel.bpf_stats_enabled=1` makes the kernel time every run of every program
//! (`__bpf_prog_run()` in include/linux/filter.h, the trampoline's enter/exit for tp_btf in
//! kernel/bpf/trampoline.c): `run_time_ns` and `run_cnt` per program, which `bpftool prog show`
//! prints. The sysctl is set for the run and restored after. The floor programs are `observer
//! floor`'s (`observer/src/kernel/floor.rs`): attached beside the daemon's for the whole run, so
//! each storm's delta of the two programs at a hook is observer's cost and the hook's floor,
//! measured together. A program's figure counts only its own run; what the hook costs before
//! any program runs (perf's record formatting for a classic tracepoint) is in neither.
//!
//! Two more references per hook. The floor is attached twice: once before the daemon (the
//! first program at the hook: here it paid up to 2x what the same empty program paid after
//! observer's, at signal_deliver, so a floor taken only after observer's flatters observer's
//! ratio there) and once after. And beside some floors a one-load reference (`load_*`): the
//! floor plus the single prefilter-array load observer's filter makes, in its own array: in
//! storms that thrash the caches (forks, execs) one data line is a miss, which no program
//! that consults any state avoids.
//!
//! Storms, each on a path most events of a node take or on the path that records:
//! - signals host -> host: SIGURG, which no image stops with (signal_generate's and
//!   signal_deliver's first test, as for every SIGCHLD), and SIGUSR1, one of the stop signals
//!   watched by default (the lookup of the target among containers' main processes);
//! - SIGTERM host -> a container's main process with a handler (the reported path: one lookup
//!   hit, the de-duplication window);
//! - fork/exit (subshells that exit without exec: sched_process_exit of processes nobody
//!   follows, SIGCHLD);
//! - exec (`/bin/true` spawned: sched_process_exec outside containers' cgroups);
//! - cgroup churn outside the kubepods prefix (the prefix test) and inside it (the cgroup's
//!   entry made with its path, its mkdir and rmdir records);
//! - TCP connections on loopback (connect, accept, close: about 10 state changes each) in the
//!   host's network namespace (the node's own traffic: one `NETNS` lookup that misses) and in
//!   the container's (a pod's: the lookup hits and the counts are added to).

use std::{
    collections::{HashMap, HashSet},
    io::BufRead as _,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
const SIGNALS: u32 = 200_000;
// With 3,000 forks and 2,000 execs one build's ns/run swung 2-3x between runs here (the
// cold first runs of each program weigh too much): storms long enough to average them out.
const FORKS: u32 = 20_000;
const EXECS: u32 = 10_000;
const CGROUPS: u32 = 5_000;
const CONNECTIONS: u32 = 5_000;

/// One storm: runs it to its end.
type Storm<'a> = Box<dyn Fn() -> Result<()> + 'a>;

/// One program's accounting at a moment.
#[derive(Debug, Clone, Copy, Default)]
struct Stat {
    run_time_ns: u64,
    run_cnt: u64,
}

/// `kernel.bpf_stats_enabled` on for as long as this lives; the previous value after.
struct StatsEnabled(String);

impl StatsEnabled {
    fn new() -> Result<Self> {
        let before =
            std::fs::read_to_string(SYSCTL).with_context(|| format!("reading {SYSCTL}"))?;
        std::fs::write(SYSCTL, "1").with_context(|| format!("writing {SYSCTL}"))?;
        Ok(Self(before.trim().to_string()))
    }
}

impl Drop for StatsEnabled {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, &self.0);
    }
}

/// Every loaded program: id -> (name, stat), as bpftool reads the kernel's.
fn programs() -> Result<HashMap<u64, (String, Stat)>> {
    let out = Command::new("bpftool").args(["-j", "prog", "show"]).output().context("bpftool")?;
    if !out.status.success() {
        bail!("bpftool prog show: {}", String::from_utf8_lossy(&out.stderr));
    }
    let progs: Vec<Value> = serde_json::from_slice(&out.stdout).context("bpftool's json")?;
    Ok(progs
        .iter()
        .filter_map(|p| {
            let stat = Stat {
                run_time_ns: p["run_time_ns"].as_u64().unwrap_or(0),
                run_cnt: p["run_cnt"].as_u64().unwrap_or(0),
            };
            Some((p["id"].as_u64()?, (p["name"].as_str()?.to_string(), stat)))
        })
        .collect())
}

/// `observer floor`, attached until dropped; what it printed of its programs.
pub struct Floor {
    child: Child,
    stdin: Option<ChildStdin>,
    hooks: Vec<Hook>,
}

/// One hook as `observer floor` described it.
struct Hook {
    floor: String,
    /// The one-load reference there, if any.
    load: Option<String>,
    hook: String,
    /// Observer's programs at the hook.
    probes: Vec<String>,
}

impl Floor {
    /// `observer floor` (the empty programs alone with `empty_only`), attached once it has
    /// printed its programs.
    pub fn start(bin: &Path, empty_only: bool) -> Result<Self> {
        let mut child = Command::new(bin)
            .arg("floor")
            .args(empty_only.then_some("--empty-only"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("{} floor", bin.display()))?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().context("floor's stdout")?)
            .read_line(&mut line)?;
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("observer floor printed {line:?}"))?;
        let hooks = v["floors"]
            .as_array()
            .context("floors")?
            .iter()
            .map(|f| {
                let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
                let probes = f["probes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.as_str().map(String::from))
                    .collect();
                Hook {
                    floor: s("floor"),
                    load: f["load"].as_str().map(String::from),
                    hook: s("hook"),
                    probes,
                }
            })
            .collect();
        Ok(Self { child, stdin, hooks })
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        // Closing stdin ends it; its links go with its descriptors.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// One row: a program in a storm.
#[derive(Debug, Clone)]
pub struct Row {
    pub storm: &'static str,
    pub hook: String,
    pub program: String,
    pub runs: u64,
    pub ns_per_run: f64,
    /// The empty program attached after observer's.
    pub floor_ns_per_run: f64,
    /// The empty program attached before observer's (the first at the hook).
    pub first_floor_ns_per_run: Option<f64>,
    /// The floor plus one prefilter-array load, where there is one.
    pub load_ns_per_run: Option<f64>,
}

impl Row {
    pub fn ratio(&self) -> f64 {
        self.ns_per_run / self.floor_ns_per_run
    }

    /// Against the one-load reference.
    pub fn load_ratio(&self) -> Option<f64> {
        self.load_ns_per_run.map(|l| self.ns_per_run / l)
    }

    pub fn json(&self) -> Value {
        json!({
            "storm": self.storm, "hook": self.hook, "program": self.program, "runs": self.runs,
            "ns_per_run": round(self.ns_per_run), "floor_ns_per_run": round(self.floor_ns_per_run),
            "ratio": round(self.ratio() * 100.0) / 100.0,
            "first_floor_ns_per_run": self.first_floor_ns_per_run.map(round),
            "load_ns_per_run": self.load_ns_per_run.map(round),
            "load_ratio": self.load_ratio().map(|r| round(r * 100.0) / 100.0),
        })
    }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The programs loaded now (before the daemon starts): the run tells its own from these.
pub fn loaded() -> Result<HashSet<u64>> {
    Ok(programs()?.into_keys().collect())
}

/// Runs every storm with the daemon (started since `before`), the floor attached after it
/// and the first floor (`first`, attached before it: its programs are among `before`);
/// returns one row per (storm, observer program that ran in it).
pub fn run(floor_bin: &Path, before: &HashSet<u64>, first: &HashSet<u64>) -> Result<Vec<Row>> {
    let _stats = StatsEnabled::new()?;
    let floor = Floor::start(floor_bin, false)?;
    let ours: HashMap<u64, String> = programs()?
        .into_iter()
        .filter(|(id, _)| !before.contains(id))
        .map(|(id, (name, _))| (id, name))
        .collect();
    let id_of = |name: &str| ours.iter().find(|(_, n)| n.as_str() == name).map(|(id, _)| *id);
    let firsts: HashMap<String, u64> = programs()?
        .into_iter()
        .filter(|(id, _)| first.contains(id))
        .map(|(id, (name, _))| (name, id))
        .collect();

    let targets = Targets::start()?;
    let storms: Vec<(&'static str, Storm<'_>)> = vec![
        (
            "SIGURG host->host (no stop sig)",
            Box::new(|| signals(targets.host.id(), libc::SIGURG, SIGNALS)),
        ),
        (
            "SIGUSR1 host->host (stop sig)",
            Box::new(|| signals(targets.host.id(), libc::SIGUSR1, SIGNALS)),
        ),
        (
            "SIGTERM host->container main",
            Box::new(|| signals(targets.main_pid, libc::SIGTERM, SIGNALS)),
        ),
        ("fork/exit (no exec)", Box::new(|| forks(FORKS))),
        ("exec (/bin/true)", Box::new(|| execs(EXECS))),
        ("cgroup churn outside kubepods", Box::new(|| churn(&targets.outside, CGROUPS))),
        ("cgroup churn inside kubepods", Box::new(|| churn(&targets.inside, CGROUPS))),
        ("TCP loopback, host netns", Box::new(|| connections(None, CONNECTIONS))),
        (
            "TCP loopback, a pod's netns",
            Box::new(|| connections(Some(targets.main_pid), CONNECTIONS)),
        ),
    ];
    let mut rows = Vec::new();
    for (storm, run) in &storms {
        let a = programs()?;
        run()?;
        let b = programs()?;
        let delta = |id: u64| {
            let (x, y) = (a.get(&id)?.1, b.get(&id)?.1);
            let runs = y.run_cnt.checked_sub(x.run_cnt)?;
            let ns = y.run_time_ns.checked_sub(x.run_time_ns)?;
            (runs > 0).then(|| (runs, ns as f64 / runs as f64))
        };
        for h in &floor.hooks {
            let Some((_, floor_ns)) = id_of(&h.floor).and_then(delta) else { continue };
            let first_ns = firsts.get(&h.floor).and_then(|id| delta(*id)).map(|(_, ns)| ns);
            let load_ns = h.load.as_deref().and_then(id_of).and_then(delta).map(|(_, ns)| ns);
            for p in &h.probes {
                if let Some((runs, ns)) = id_of(p).and_then(delta) {
                    rows.push(Row {
                        storm,
                        hook: h.hook.clone(),
                        program: p.clone(),
                        runs,
                        ns_per_run: ns,
                        floor_ns_per_run: floor_ns,
                        first_floor_ns_per_run: first_ns,
                        load_ns_per_run: load_ns,
                    });
                }
            }
        }
    }
    drop(storms);
    drop(targets);
    drop(floor);
    Ok(rows)
}

pub fn print(rows: &[Row]) {
    let opt = |v: Option<f64>, prec: usize| match v {
        Some(v) => format!("{v:.prec$}"),
        None => "-".to_string(),
    };
    println!(
        "{:<32} {:<24} {:>7} {:>7} {:>6} {:>7} {:>6} {:>7} {:>6}",
        "storm", "program", "runs", "ns/run", "floor", "x floor", "first", "1 load", "x load"
    );
    for r in rows {
        println!(
            "{:<32} {:<24} {:>7} {:>7.0} {:>6.0} {:>7.2} {:>6} {:>7} {:>6}",
            r.storm,
            r.program,
            r.runs,
            r.ns_per_run,
            r.floor_ns_per_run,
            r.ratio(),
            opt(r.first_floor_ns_per_run, 0),
            opt(r.load_ns_per_run, 0),
            opt(r.load_ratio(), 2),
        );
    }
}

/// The storms' targets: a host process and a container's main process, both with handlers;
/// cgroup parents outside and inside the kubepods prefix.
struct Targets {
    host: Child,
    main: Child,
    main_pid: u32,
    container: PathBuf,
    outside: PathBuf,
    inside: PathBuf,
}

const HANDLER: &str = "trap : USR1 TERM URG; while :; do busybox sleep 1; done";

impl Targets {
    fn start() -> Result<Self> {
        let v2 = PathBuf::from("/sys/fs/cgroup/unified");
        let v2 =
            if v2.join("cgroup.procs").exists() { v2 } else { PathBuf::from("/sys/fs/cgroup") };
        let tag = std::process::id();
        let pod = v2.join(format!("kubepods/besteffort/pod00000000-0000-0000-0000-{tag:012}"));
        let container = pod.join("c".repeat(64));
        std::fs::create_dir_all(&container)
            .with_context(|| format!("mkdir {}", container.display()))?;
        let host =
            Command::new("busybox").args(["sh", "-c", HANDLER]).spawn().context("busybox")?;
        // The container's main process, in a network namespace of its own (its pod's, with
        // its loopback up): it joins the cgroup, then execs (the kernel's exec probe takes it
        // as the main process: its parent, this bench, is outside).
        let main = Command::new("unshare")
            .args(["-n", "sh", "-c"])
            .arg(format!(
                "busybox ip link set lo up && echo $$ > {}/cgroup.procs && exec busybox sh -c '{HANDLER}'",
                container.display()
            ))
            .spawn()
            .context("the container's main process (unshare -n)")?;
        let main_pid = main.id();
        let outside = v2.join(format!("observer-bench-{tag}"));
        let inside = pod.join("churn");
        std::fs::create_dir_all(&outside)?;
        std::fs::create_dir_all(&inside)?;
        // The handlers are installed once busybox has read its script.
        std::thread::sleep(Duration::from_millis(300));
        Ok(Self { host, main, main_pid, container, outside, inside })
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        for c in [&mut self.host, &mut self.main] {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in [&self.inside, &self.container, &self.outside] {
            crate::bench::remove_cgroup(d);
        }
        if let Some(pod) = self.container.parent() {
            crate::bench::remove_cgroup(pod);
        }
    }
}

/// `n` signals `sig` to `pid` as fast as kill(2) goes.
fn signals(pid: u32, sig: i32, n: u32) -> Result<()> {
    for _ in 0..n {
        // SAFETY: a pid this bench started and still holds.
        if unsafe { libc::kill(pid as i32, sig) } != 0 {
            bail!("kill({pid}): {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `n` subshells that exit without exec.
fn forks(n: u32) -> Result<()> {
    let script = format!("i=0; while [ $i -lt {n} ]; do ( : ); i=$((i+1)); done");
    let s = Command::new("busybox").args(["sh", "-c", &script]).status()?;
    if !s.success() {
        bail!("fork storm: {s}");
    }
    Ok(())
}

/// `/bin/true`, `n` times.
fn execs(n: u32) -> Result<()> {
    for _ in 0..n {
        Command::new("/bin/true").status()?;
    }
    Ok(())
}

/// `n` TCP connections to a listener on 127.0.0.1, each accepted and closed by both ends, in
/// this process's network namespace or (`netns_of`) in that process's, which a thread of its
/// own joins (setns(2) moves only the calling thread).
fn connections(netns_of: Option<u32>, n: u32) -> Result<()> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            if let Some(pid) = netns_of {
                let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
                // SAFETY: setns on a descriptor this thread holds, for this thread only.
                if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) }
                    != 0
                {
                    bail!(
                        "setns into {pid}'s network namespace: {}",
                        std::io::Error::last_os_error()
                    );
                }
            }
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            let addr = listener.local_addr()?;
            for _ in 0..n {
                let c = std::net::TcpStream::connect(addr)?;
                let (a, _) = listener.accept()?;
                drop(c);
                drop(a);
            }
            Ok(())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the connection storm's thread panicked"))?
    })
}

/// `n` cgroups made and removed under `parent`.
fn churn(parent: &Path, n: u32) -> Result<()> {
    for i in 0..n {
        let d = parent.join(format!("{:064x}", u64::from(i) + 1));
        std::fs::create_dir(&d).with_context(|| format!("mkdir {}", d.display()))?;
        std::fs::remove_dir(&d).with_context(|| format!("rmdir {}", d.display()))?;
    }
    Ok(())
}
