//! `cargo xtask bench`, load: what the daemon does with many containers and many stops.
//!
//! - **Burst**: 1,000 container main processes stopped within a second (SIGTERM, no handler,
//!   so each exits at once): records written, events lost at every stage, exit -> journal
//!   delay p50/p99 (`observer_record_delay_seconds`, kernel clock).
//! - **Sustained**: 5,000 main processes stopped at 1,000 a second: the same, and whether the
//!   journal kept up (records written per second).
//! - **Watched**: 10,000 container cgroups under kubepods (mkdir: the kernel's entry, the
//!   daemon's metadata): the daemon's RSS, and its CPU over 10 idle seconds.
//! - **Signal storm**: about 50,000 reported stop-signal events a second for 10 s (7,200 main
//!   processes that ignore the seven default stop signals, each sent every one of them once a
//!   de-duplication window, so every one is reported), while 5,000 other containers are
//!   stopped at 1,000 a second beside it (the journal's 1,000 records a second on the same
//!   event path): events read against events sent, losses at every stage, and the delay of
//!   the records written meanwhile.
//!
//! Each container is what a runtime makes of one, without the runtime: a cgroup in kubelet's
//! cgroupfs layout and a child of this bench that joins it before exec'ing `busybox sleep`
//! (the exec probe's main process: the first exec in the cgroup by a process whose parent is
//! outside it).

use std::{
    os::unix::{ffi::OsStringExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use crate::bench::{Daemon, Scrape};

const BURST: usize = 1_000;
const SUSTAINED: usize = 5_000;
const SUSTAINED_RATE: f64 = 1_000.0;
const WATCHED: usize = 10_000;
/// Main processes of the signal storm, and the signals each is sent (the daemon's default
/// stop signals: SIGHUP SIGINT SIGQUIT SIGUSR1 SIGUSR2 SIGTERM SIGWINCH).
const STORM_MAINS: usize = 7_200;
const STORM_SIGNALS: [i32; 7] = [1, 2, 3, 10, 12, 15, 28];
/// A (process, signal) is sent again no sooner than this: just past the kernel's 1 s
/// de-duplication window (`ProbeOptions::dedupe_window`), so each send is a reported event.
/// 7,200 x 7 / 1.008 s = 50,000 a second.
const STORM_PERIOD: Duration = Duration::from_millis(1_008);
const STORM_SECONDS: u64 = 10;

/// One pod's worth of container cgroups and their main processes.
struct Fleet {
    pod: PathBuf,
    cgroups: Vec<PathBuf>,
    mains: Vec<Child>,
}

impl Fleet {
    fn new(tag: &str) -> Result<Self> {
        let pod = v2_root().join(format!(
            "kubepods/besteffort/pod{:08x}-0000-4000-8000-{:012x}",
            std::process::id(),
            tag.bytes().fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(u64::from(b)))
                & 0xffff_ffff_ffff
        ));
        std::fs::create_dir_all(&pod).with_context(|| format!("mkdir {}", pod.display()))?;
        Ok(Self { pod, cgroups: Vec::new(), mains: Vec::new() })
    }

    fn cgroup(&mut self) -> Result<PathBuf> {
        let d = self.pod.join(format!("{:064x}", self.cgroups.len() + 1));
        std::fs::create_dir(&d).with_context(|| format!("mkdir {}", d.display()))?;
        self.cgroups.push(d.clone());
        Ok(d)
    }

    /// A container whose main process sleeps until stopped.
    fn container(&mut self) -> Result<()> {
        self.container_ignoring(&[])
    }

    /// A container whose main process has `ignored` at SIG_IGN (kept across its exec,
    /// signal(7)): each such signal is generated and reported, and changes nothing.
    fn container_ignoring(&mut self, ignored: &'static [i32]) -> Result<()> {
        let cg = self.cgroup()?;
        let procs = std::ffi::CString::new(cg.join("cgroup.procs").into_os_string().into_vec())?;
        let mut cmd = Command::new("busybox");
        cmd.args(["sleep", "100000"]).stdin(Stdio::null()).stdout(Stdio::null());
        // SAFETY: only async-signal-safe calls between fork and exec (open, write, close) on
        // memory made before the fork.
        unsafe {
            cmd.pre_exec(move || {
                for &sig in ignored {
                    libc::signal(sig, libc::SIG_IGN);
                }
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                libc::close(fd);
                if ok {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        self.mains.push(cmd.spawn().context("busybox sleep")?);
        Ok(())
    }

    /// SIGTERM to every main process, `per_second` at most (None: at once); returns the time
    /// it took.
    fn stop_all(&mut self, per_second: Option<f64>) -> Duration {
        let t0 = Instant::now();
        for (i, c) in self.mains.iter().enumerate() {
            if let Some(rate) = per_second {
                let due = Duration::from_secs_f64(i as f64 / rate);
                if let Some(wait) = due.checked_sub(t0.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            // SAFETY: a child this bench spawned and has not reaped.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        let took = t0.elapsed();
        for c in &mut self.mains {
            let _ = c.wait();
        }
        self.mains.clear();
        took
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in &mut self.mains {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in self.cgroups.iter().rev() {
            crate::bench::remove_cgroup(d);
        }
        crate::bench::remove_cgroup(&self.pod);
    }
}

fn v2_root() -> PathBuf {
    let hybrid = PathBuf::from("/sys/fs/cgroup/unified");
    if hybrid.join("cgroup.procs").exists() {
        hybrid
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

/// The `q` quantile of a Prometheus histogram `name` in `s`, linear inside its bucket.
fn quantile(s: &Scrape, name: &str, q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> =
        s.0.lines()
            .filter(|l| l.starts_with(&format!("{name}_bucket{{")))
            .filter_map(|l| {
                let le = l.split("le=\"").nth(1)?.split('"').next()?;
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                Some((le, l.rsplit_once(' ')?.1.parse().ok()?))
            })
            .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    let want = q * total;
    let (mut lo, mut below) = (0.0, 0.0);
    for (le, n) in buckets {
        if n >= want {
            if le.is_infinite() {
                return Some(lo);
            }
            let inside = n - below;
            return Some(if inside > 0.0 { lo + (le - lo) * (want - below) / inside } else { le });
        }
        (lo, below) = (le, n);
    }
    None
}

/// Waits until the journal at `journal` holds `n` more lines than `before`; returns the count.
/// Exit -> journal delay, p50 and p99, from `observer_record_delay_seconds` (kernel clock).
fn delays(scrape: &Scrape) -> (Option<f64>, Option<f64>) {
    let q = |p| quantile(scrape, "observer_record_delay_seconds", p);
    (q(0.5), q(0.99))
}

fn wait_lines(journal: &Path, before: usize, n: usize, limit: Duration) -> usize {
    let t = Instant::now();
    loop {
        let lines = lines(journal);
        if lines >= before + n || t.elapsed() > limit {
            return lines - before;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn lines(journal: &Path) -> usize {
    std::fs::read(journal).map(|b| b.iter().filter(|&&c| c == b'\n').count()).unwrap_or(0)
}

/// Stops `n` containers (`rate` a second, None: at once) under a running daemon; one JSON
/// object of what it saw.
fn stops(bin: &Path, work: &Path, what: &str, n: usize, rate: Option<f64>) -> Result<Value> {
    let d = Daemon::start(bin, work)?;
    let journal = work.join("journal.jsonl");
    let mut fleet = Fleet::new(what)?;
    for _ in 0..n {
        fleet.container()?;
    }
    // The daemon learns them (the exec probe; their cgroups' lookups).
    std::thread::sleep(Duration::from_secs(2));
    let before = lines(&journal);
    let s0 = d.scrape()?;
    let cpu0 = d.cpu_seconds()?;
    let took = fleet.stop_all(rate);
    let t = Instant::now();
    let written = wait_lines(&journal, before, n, Duration::from_secs(60));
    let done = t.elapsed() + took;
    let s1 = d.scrape()?;
    let cpu = d.cpu_seconds()? - cpu0;
    let lost = s1.get("observer_events_lost_total") - s0.get("observer_events_lost_total");
    let (p50, p99) = delays(&s1);
    println!(
        "{what:<34} {n:>6} stops in {:>5.2} s: {written:>6} records in {:>5.2} s, {lost:>4.0} events lost, exit->journal p50 {:>5.3} s p99 {:>5.3} s, daemon cpu {:.2} s",
        took.as_secs_f64(),
        done.as_secs_f64(),
        p50.unwrap_or(f64::NAN),
        p99.unwrap_or(f64::NAN),
        cpu,
    );
    drop(fleet);
    drop(d);
    let _ = std::fs::remove_file(&journal);
    Ok(json!({
        "load": what, "stops": n, "stop_seconds": took.as_secs_f64(), "records": written,
        "records_seconds": done.as_secs_f64(), "events_lost": lost,
        "delay_p50_seconds": p50, "delay_p99_seconds": p99, "daemon_cpu_seconds": cpu,
    }))
}

/// One series of `name` whose labels contain `label` (`probe="signal_generate"`).
fn series(s: &Scrape, name: &str, label: &str) -> f64 {
    s.0.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Every stage's losses in `s1` since `s0`, by stage, and their sum.
fn losses(s0: &Scrape, s1: &Scrape) -> (Value, f64) {
    let name = "observer_events_lost_total";
    let mut by_stage = serde_json::Map::new();
    let mut total = 0.0;
    for l in s1.0.lines().filter(|l| l.starts_with(&format!("{name}{{"))) {
        let Some(stage) = l.split("stage=\"").nth(1).and_then(|r| r.split('"').next()) else {
            continue;
        };
        let label = format!("stage=\"{stage}\"");
        let n = series(s1, name, &label) - series(s0, name, &label);
        total += n;
        by_stage.insert(stage.to_string(), json!(n));
    }
    (Value::Object(by_stage), total)
}

/// About 50,000 reported stop-signal events a second for [`STORM_SECONDS`], with 5,000
/// stops at 1,000 a second beside it.
fn storm(bin: &Path, work: &Path) -> Result<Value> {
    let d = Daemon::start(bin, work)?;
    let journal = work.join("journal.jsonl");
    let mut targets = Fleet::new("storm")?;
    for _ in 0..STORM_MAINS {
        targets.container_ignoring(&STORM_SIGNALS)?;
    }
    let mut stopped = Fleet::new("storm-stops")?;
    for _ in 0..SUSTAINED {
        stopped.container()?;
    }
    std::thread::sleep(Duration::from_secs(3));
    let pids: Vec<i32> = targets.mains.iter().map(|c| c.id() as i32).collect();
    let before = lines(&journal);
    let s0 = d.scrape()?;
    let cpu0 = d.cpu_seconds()?;
    // The stops, on a thread of their own, while this one sends the storm.
    let stops = std::thread::spawn(move || {
        let took = stopped.stop_all(Some(SUSTAINED_RATE));
        (stopped, took)
    });
    let t0 = Instant::now();
    let mut sent = 0u64;
    let mut failed = 0u64;
    let mut last = vec![None::<Instant>; pids.len()];
    let per_slot = STORM_PERIOD / pids.len() as u32;
    'storm: for round in 0u32.. {
        for (i, &pid) in pids.iter().enumerate() {
            let due = t0 + STORM_PERIOD * round + per_slot * i as u32;
            if due - t0 >= Duration::from_secs(STORM_SECONDS) {
                break 'storm;
            }
            // Never sooner than a period after this process's last round (a sender that
            // fell behind and catches up would be de-duplicated), never before it is due.
            let not_before = last[i].map_or(due, |l: Instant| (l + STORM_PERIOD).max(due));
            if let Some(wait) = not_before.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            last[i] = Some(Instant::now());
            for &sig in &STORM_SIGNALS {
                // SAFETY: a child this bench spawned and has not reaped.
                if unsafe { libc::kill(pid, sig) } == 0 {
                    sent += 1;
                } else {
                    failed += 1;
                }
            }
        }
    }
    let storm_took = t0.elapsed();
    let (stopped, stops_took) = stops.join().map_err(|_| anyhow::anyhow!("stop thread"))?;
    let written = wait_lines(&journal, before, SUSTAINED, Duration::from_secs(60));
    // Every generated event has reached the daemon (the ring is drained within a tick).
    std::thread::sleep(Duration::from_secs(1));
    let s1 = d.scrape()?;
    let read = series(&s1, "observer_events_total", "probe=\"signal_generate\"")
        - series(&s0, "observer_events_total", "probe=\"signal_generate\"");
    let deduplicated = s1.get("observer_kernel_signals_deduplicated_total")
        - s0.get("observer_kernel_signals_deduplicated_total");
    // What should have been read: every storm signal not de-duplicated, and each stopped
    // container's SIGTERM.
    let expected = sent as f64 - deduplicated + SUSTAINED as f64;
    let (lost_by_stage, lost) = losses(&s0, &s1);
    let (p50, p99) = delays(&s1);
    let rate = sent as f64 / storm_took.as_secs_f64();
    let cpu = d.cpu_seconds()? - cpu0;
    println!(
        "{:<34} {rate:>6.0} stop signals/s for {:.1} s ({sent} sent, {failed} failed): {read:.0} of {expected:.0} signal_generate events read ({deduplicated:.0} de-duplicated), {lost:.0} lost at any stage; beside it {SUSTAINED} stops in {:.2} s: {written} records, exit->journal p50 {:.3} s p99 {:.3} s; daemon cpu {:.2} s ({:.0} % of a core)",
        "signal storm + 1,000 stops a second",
        storm_took.as_secs_f64(),
        stops_took.as_secs_f64(),
        p50.unwrap_or(f64::NAN),
        p99.unwrap_or(f64::NAN),
        cpu,
        cpu / storm_took.as_secs_f64() * 100.0,
    );
    drop(stopped);
    drop(targets);
    drop(d);
    let _ = std::fs::remove_file(&journal);
    Ok(json!({
        "mains": STORM_MAINS, "signals_per_main": STORM_SIGNALS.len(),
        "seconds": storm_took.as_secs_f64(), "sent": sent, "send_failed": failed,
        "rate_per_second": rate, "signal_generate_read": read, "signal_generate_expected": expected,
        "deduplicated": deduplicated,
        "events_lost": lost, "events_lost_by_stage": lost_by_stage,
        "stops": SUSTAINED, "stops_seconds": stops_took.as_secs_f64(), "records": written,
        "delay_p50_seconds": p50, "delay_p99_seconds": p99, "daemon_cpu_seconds": cpu,
    }))
}

/// 10,000 container cgroups watched: RSS, idle CPU.
fn watched(bin: &Path, work: &Path) -> Result<Value> {
    let d = Daemon::start(bin, work)?;
    let idle0 = d.scrape()?;
    let mut fleet = Fleet::new("watched")?;
    for _ in 0..WATCHED {
        fleet.cgroup()?;
    }
    let t = Instant::now();
    while d.scrape()?.get("observer_watched_cgroups") < WATCHED as f64 {
        if t.elapsed() > Duration::from_secs(60) {
            bail!(
                "the daemon learnt {} of {WATCHED} cgroups",
                d.scrape()?.get("observer_watched_cgroups")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let cpu0 = d.cpu_seconds()?;
    std::thread::sleep(Duration::from_secs(10));
    let s1 = d.scrape()?;
    let mib = |s: &Scrape| s.get("process_resident_memory_bytes") / (1024.0 * 1024.0);
    let idle_cpu = (d.cpu_seconds()? - cpu0) / 10.0;
    println!(
        "{:<34} {WATCHED:>6} cgroups: RSS {:.1} MiB (idle, none: {:.1} MiB), idle CPU {:.2} % of a core",
        "watched containers",
        mib(&s1),
        mib(&idle0),
        idle_cpu * 100.0
    );
    drop(fleet);
    drop(d);
    Ok(json!({
        "cgroups": WATCHED, "rss_mib": mib(&s1), "rss_mib_empty": mib(&idle0),
        "idle_cpu_fraction": idle_cpu,
    }))
}

pub fn run(bin: &Path, work: &Path) -> Result<Value> {
    println!("\nload (records, losses at every stage, exit -> journal delay from observer_record_delay_seconds):");
    let burst = stops(bin, work, "burst: stopped within a second", BURST, None)?;
    let sustained =
        stops(bin, work, "sustained: 1,000 stops a second", SUSTAINED, Some(SUSTAINED_RATE))?;
    let watched = watched(bin, work)?;
    let storm = storm(bin, work)?;
    Ok(json!({ "burst": burst, "sustained": sustained, "watched": watched, "storm": storm }))
}
