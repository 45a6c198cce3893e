//! `cargo xtask bench`: the cost of observer on a node.
//!
//! First the kernel's own accounting, per program against an empty program at the same hook
//! (`bench_stats`): the figure that shows a few percent. Then throughput A/B: each workload
//! without the daemon (A) and with it (B), interleaved A B A B A B A, reported as medians
//! with their spread (this VM's fork-storm throughput swings by tens of percent between
//! identical rounds: a B/A inside the spread is no effect it can show): a fork/exec/exit storm
//! (`/bin/true` spawned in a loop), a signal storm between two host processes (SIGUSR1 to a
//! handler), and one at a pid namespace init in a kubepods cgroup. Also events read, lost and
//! de-duplicated in the kernel, and the daemon's CPU and RSS from its own /metrics. Everything
//! is written to `target/bench/bench.json`, to compare across commits.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

/// One storm: runs it and returns operations per second.
type Workload<'a> = Box<dyn Fn() -> Result<f64> + 'a>;

const LISTEN: &str = "127.0.0.1:19465";
const SPAWNS: u32 = 3000;
const SIGNALS: u32 = 200_000;

pub fn run(kernel_only: bool) -> Result<()> {
    let bin = bench_binary();
    let work = std::env::temp_dir().join(format!("observer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = bench(&bin, &work, kernel_only);
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// The observer measured: this tree's release build, or `OBSERVER_BIN` (an earlier commit's
/// build, to hold two builds against each other in the same conditions).
fn bench_binary() -> PathBuf {
    std::env::var_os("OBSERVER_BIN").map(PathBuf::from).unwrap_or_else(floor_binary)
}

/// Whose `observer floor` the programs are measured against: always this tree's build, so
/// two builds are held against the same yardstick.
fn floor_binary() -> PathBuf {
    crate::workspace_root().join("target/release/observer")
}

/// The load runs alone (`--load-only`).
pub fn run_load() -> Result<()> {
    let bin = bench_binary();
    let work = std::env::temp_dir().join(format!("observer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    println!("observer bench: {} cores, kernel {}", num_cpus(), uname_r());
    let result = crate::bench_load::run(&bin, &work).and_then(|load| {
        write(&serde_json::json!({
            "commit": git_head(), "kernel": uname_r(), "cores": num_cpus(), "load": load,
        }))
    });
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn bench(bin: &Path, work: &Path, kernel_only: bool) -> Result<()> {
    println!("observer bench: {} cores, kernel {}", num_cpus(), uname_r());
    // 1. The kernel's accounting: ns per run of each program against its hook's floor.
    //    The first floor goes on before the daemon: the first program at a hook pays more.
    let pre = crate::bench_stats::loaded()?;
    let first = crate::bench_stats::Floor::start(&floor_binary(), true)?;
    let before = crate::bench_stats::loaded()?;
    let first_ids = before.difference(&pre).copied().collect();
    let daemon = Daemon::start(bin, work)?;
    let rows = crate::bench_stats::run(&floor_binary(), &before, &first_ids)?;
    drop(daemon);
    drop(first);
    println!("\nper program, from the kernel's bpf_stats (observer's; an empty program after it, \"floor\", and before it, \"first\"; the floor plus one prefilter-array load, \"1 load\"; same storm):");
    crate::bench_stats::print(&rows);
    if kernel_only {
        return write(&serde_json::json!({
            "commit": git_head(), "kernel": uname_r(), "cores": num_cpus(),
            "programs": rows.iter().map(crate::bench_stats::Row::json).collect::<Vec<_>>(),
        }));
    }

    // 2. Throughput, without (A) and with (B) the daemon, interleaved A B A B A B A.
    let container = Container::start()?;
    let host_target = Command::new("busybox")
        .args(["sh", "-c", "trap : USR1; while :; do busybox sleep 1; done"])
        .spawn()
        .context("busybox")?;
    let host_target = Guard(host_target);
    std::thread::sleep(Duration::from_millis(200));
    let workloads: [(&str, Workload<'_>); 3] = [
        ("fork/exec/exit storm", Box::new(|| spawn_storm(SPAWNS))),
        ("signal storm, host->host", Box::new(|| signal_storm(host_target.0.id(), SIGNALS))),
        ("signal storm, host->container", Box::new(|| signal_storm(container.pid, SIGNALS))),
    ];
    println!("\nthroughput, ops/s without (A) and with (B) the daemon, {ROUNDS} rounds interleaved A B .. A:");
    println!(
        "{:<32} {:>11} {:>9} {:>11} {:>9} {:>8}",
        "workload", "A median", "A spread", "B median", "B spread", "B/A"
    );
    let mut rows_daemon = Vec::new();
    let mut throughput = Vec::new();
    for (name, w) in &workloads {
        let mut a = vec![w()?];
        let mut b = Vec::new();
        let (mut first, mut last) = (None, None);
        for _ in 0..ROUNDS {
            let daemon = Daemon::start(bin, work)?;
            let before = (daemon.scrape()?, daemon.cpu_seconds()?);
            b.push(w()?);
            let after = (daemon.scrape()?, daemon.cpu_seconds()?);
            first = Some(before);
            last = Some(after);
            drop(daemon);
            a.push(w()?);
        }
        let (am, bm) = (median(&a), median(&b));
        println!(
            "{name:<32} {am:>11.0} {:>8.0}% {bm:>11.0} {:>8.0}% {:>8.3}",
            spread(&a) * 100.0,
            spread(&b) * 100.0,
            bm / am
        );
        throughput.push(serde_json::json!({
            "workload": name, "a_ops_per_s": a, "b_ops_per_s": b,
            "a_median": am.round(), "b_median": bm.round(), "b_over_a": (bm / am * 1000.0).round() / 1000.0,
        }));
        if let (Some(f), Some(l)) = (first, last) {
            rows_daemon.push((name, f, l));
        }
    }
    println!("\n(spread: (max - min) / median over the rounds; B/A inside the spread is no effect this VM can show)");
    println!(
        "\n{:<32} {:>10} {:>8} {:>12} {:>10} {:>9}",
        "daemon during (last B round)", "events", "lost", "deduplicated", "cpu s", "rss MiB"
    );
    for (name, (before, cpu_before), (after, cpu_after)) in rows_daemon {
        let d = |k: &str| after.get(k) - before.get(k);
        println!(
            "{name:<32} {:>10.0} {:>8.0} {:>12.0} {:>10.3} {:>9.1}",
            d("observer_events_total"),
            d("observer_events_lost_total"),
            d("observer_kernel_signals_deduplicated_total"),
            // From /proc: the process collector counts whole seconds.
            cpu_after - cpu_before,
            after.get("process_resident_memory_bytes") / (1024.0 * 1024.0),
        );
    }
    drop(workloads);
    drop(host_target);
    drop(container);
    let load = crate::bench_load::run(bin, work)?;
    write(&serde_json::json!({
        "commit": git_head(),
        "kernel": uname_r(),
        "cores": num_cpus(),
        "programs": rows.iter().map(crate::bench_stats::Row::json).collect::<Vec<_>>(),
        "throughput": throughput,
        "load": load,
    }))
}

/// `target/bench/bench.json`.
fn write(report: &serde_json::Value) -> Result<()> {
    let out = crate::workspace_root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let path = out.join("bench.json");
    std::fs::write(&path, serde_json::to_string_pretty(report)?)?;
    println!("\nwritten: {}", path.display());
    Ok(())
}

/// Interleaved rounds of B (each between two of A).
const ROUNDS: usize = 3;

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn spread(v: &[f64]) -> f64 {
    let (min, max) = v.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    (max - min) / median(v)
}

fn uname_r() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn git_head() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(crate::workspace_root())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// fork + exec + exit of /bin/true, `n` times; returns spawns per second.
fn spawn_storm(n: u32) -> Result<f64> {
    let t = Instant::now();
    for _ in 0..n {
        Command::new("/bin/true").status()?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// `n` SIGUSR1s to `pid` as fast as kill(2) goes; returns signals per second.
fn signal_storm(pid: u32, n: u32) -> Result<f64> {
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: a pid this bench started and still holds.
        if unsafe { libc::kill(pid as i32, libc::SIGUSR1) } != 0 {
            bail!("kill({pid}): {}", std::io::Error::last_os_error());
        }
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A container's main process in a kubepods cgroup, with a SIGUSR1 handler: it joins the
/// cgroup, then execs, its parent (this bench) outside, as a runtime's init does, so the
/// daemon follows it (at its exec, or from the start-up walk) and the storm at it is the
/// reported path.
struct Container {
    main: Child,
    pid: u32,
    cgroup: PathBuf,
}

impl Container {
    fn start() -> Result<Self> {
        let cgroup = PathBuf::from(format!(
            "/sys/fs/cgroup/unified/kubepods/besteffort/pod00000000-0000-0000-0000-{:012}/{}",
            std::process::id(),
            "b".repeat(64)
        ));
        std::fs::create_dir_all(&cgroup).with_context(|| format!("mkdir {}", cgroup.display()))?;
        let main = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec busybox sh -c 'trap : USR1; while :; do busybox sleep 1; done'",
                cgroup.display()
            ))
            .spawn()
            .context("the container's main process")?;
        let pid = main.id();
        // The handler is installed once busybox has read its script.
        std::thread::sleep(Duration::from_millis(300));
        Ok(Self { main, pid, cgroup })
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.main.kill();
        let _ = self.main.wait();
        remove_cgroup(&self.cgroup);
        if let Some(pod) = self.cgroup.parent() {
            remove_cgroup(pod);
        }
    }
}

/// Removes a cgroup this bench made. What is still in it is the bench's own: a main process's
/// `busybox sleep 1` outlives its killed parent by up to a second, and its cgroup cannot go
/// before it does, so each PID in `cgroup.procs` is killed first; then rmdir is retried for up
/// to 5 s. A cgroup left behind is said, never left silently.
pub(crate) fn remove_cgroup(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            // SAFETY: a process in a cgroup only this bench's processes were put in.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        if Instant::now() > deadline {
            eprintln!(
                "bench: could not remove {}: {}",
                dir.display(),
                std::io::Error::last_os_error()
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) struct Daemon(Child);

pub(crate) struct Scrape(pub(crate) String);

impl Scrape {
    /// Sum of every series of `name`.
    pub(crate) fn get(&self, name: &str) -> f64 {
        self.0
            .lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter(|l| l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }
}

impl Daemon {
    /// The daemon's CPU time so far (user + system), from /proc/PID/stat in clock ticks:
    /// `process_cpu_seconds_total` of the prometheus crate's process collector counts whole
    /// seconds only, too coarse for an idle daemon.
    pub(crate) fn cpu_seconds(&self) -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0.id()))?;
        // Fields after the command's closing parenthesis: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').context("/proc/PID/stat")?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f.get(11).context("utime")?.parse::<f64>()?
            + f.get(12).context("stime")?.parse::<f64>()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Ok(ticks / hz)
    }

    pub(crate) fn start(bin: &Path, work: &Path) -> Result<Self> {
        let child = Command::new(bin)
            .args(["run", "--listen", LISTEN, "--journal"])
            .arg(work.join("journal.jsonl"))
            .arg("--kubelet-log-root")
            .arg(work)
            // Unpinned: the probes must end with the daemon, or the rounds without it would
            // still pay for them.
            .args(["--pin-dir", "none"])
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("{} (run `cargo xtask build`)", bin.display()))?;
        let d = Self(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while d.scrape().is_err() {
            if Instant::now() > deadline {
                bail!("observer did not come up on {LISTEN}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(d)
    }

    pub(crate) fn scrape(&self) -> Result<Scrape> {
        // Let the daemon's 50 ms tick fold kernel counters in.
        std::thread::sleep(Duration::from_millis(120));
        let mut s = TcpStream::connect(LISTEN)?;
        write!(s, "GET /metrics HTTP/1.1\r\nHost: {LISTEN}\r\nConnection: close\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        Ok(Scrape(body))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: the daemon this bench started, by pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}
