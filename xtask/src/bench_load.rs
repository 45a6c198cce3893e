//! `cargo xtask bench`, load: what the daemon does with many containers and many stops.
//!
//! - **Burst**: 1,000 container main processes stopped within a second (SIGTERM, no handler,
//!   so each exits at once): records written, events lost at every stage, exit -> journal
//!   delay p50/p99 (`observer_record_delay_seconds`, kernel clock).
//! - **Sustained**: 5,000 main processes stopped at 1,000 a second: the same, and whether the
//!   journal kept up (records written per second).
//! - **Watched**: 10,000 container cgroups under kubepods (mkdir: the kernel's entry, the
//!   daemon's metadata): the daemon's RSS, and its CPU over 10 idle seconds.
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
        let cg = self.cgroup()?;
        let procs = std::ffi::CString::new(cg.join("cgroup.procs").into_os_string().into_vec())?;
        let mut cmd = Command::new("busybox");
        cmd.args(["sleep", "100000"]).stdin(Stdio::null()).stdout(Stdio::null());
        // SAFETY: only async-signal-safe calls between fork and exec (open, write, close) on
        // memory made before the fork.
        unsafe {
            cmd.pre_exec(move || {
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
            for _ in 0..50 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = std::fs::remove_dir(&self.pod);
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
    let took = fleet.stop_all(rate);
    let t = Instant::now();
    let written = wait_lines(&journal, before, n, Duration::from_secs(60));
    let done = t.elapsed() + took;
    let s1 = d.scrape()?;
    let lost = s1.get("observer_events_lost_total") - s0.get("observer_events_lost_total");
    let p50 = quantile(&s1, "observer_record_delay_seconds", 0.5);
    let p99 = quantile(&s1, "observer_record_delay_seconds", 0.99);
    println!(
        "{what:<34} {n:>6} stops in {:>5.2} s: {written:>6} records in {:>5.2} s, {lost:>4.0} events lost, exit->journal p50 {:>5.3} s p99 {:>5.3} s, daemon cpu {:.2} s",
        took.as_secs_f64(),
        done.as_secs_f64(),
        p50.unwrap_or(f64::NAN),
        p99.unwrap_or(f64::NAN),
        s1.get("process_cpu_seconds_total") - s0.get("process_cpu_seconds_total"),
    );
    drop(fleet);
    drop(d);
    let _ = std::fs::remove_file(&journal);
    Ok(json!({
        "load": what, "stops": n, "stop_seconds": took.as_secs_f64(), "records": written,
        "records_seconds": done.as_secs_f64(), "events_lost": lost,
        "delay_p50_seconds": p50, "delay_p99_seconds": p99,
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
    let s0 = d.scrape()?;
    std::thread::sleep(Duration::from_secs(10));
    let s1 = d.scrape()?;
    let mib = |s: &Scrape| s.get("process_resident_memory_bytes") / (1024.0 * 1024.0);
    let idle_cpu =
        (s1.get("process_cpu_seconds_total") - s0.get("process_cpu_seconds_total")) / 10.0;
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
    Ok(json!({ "burst": burst, "sustained": sustained, "watched": watched }))
}
