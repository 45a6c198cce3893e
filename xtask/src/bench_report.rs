//! `cargo xtask bench` (also `--report-only`, no root needed): how long `observer report`
//! takes on a 100,000-record journal, and its peak memory.
//!
//! The journal is generated with every field the daemon writes, realistic names and a mix of
//! outcomes (graceful, killed with SIGTERM ignored, slow shutdowns, OOM, preStop overruns),
//! spread over 91 workloads in 7 namespaces and three rotated files. Each variant runs
//! `RUNS` times with stdout to /dev/null; the best and the median wall time are printed.

use std::{
    fmt::Write as _,
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _, Result};

pub const RECORDS: usize = 100_000;
const RUNS: usize = 5;

pub fn run() -> Result<()> {
    let bin = crate::workspace_root().join("target/release/observer");
    let work = std::env::temp_dir().join(format!("observer-bench-report-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = bench(&bin, &work.join("terminations.jsonl"));
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn bench(bin: &Path, journal: &Path) -> Result<()> {
    let bytes = generate(journal, RECORDS)?;
    println!(
        "observer report: {RECORDS} records, {:.1} MiB in 3 files; wall time over {RUNS} runs, stdout to /dev/null",
        bytes as f64 / (1024.0 * 1024.0)
    );
    println!("{:<44} {:>9} {:>9} {:>12}", "variant", "best s", "median s", "max RSS MiB");
    let j = journal.to_str().context("journal path")?;
    let variants: [(&str, Vec<&str>); 4] = [
        ("summary + forced kills (default)", vec!["report", "--journal", j]),
        ("summary, every forced kill listed", vec!["report", "--journal", j, "--max-kills", "0"]),
        ("--json (every record)", vec!["report", "--journal", j, "--json"]),
        (
            "--json --namespace --outcome --from",
            vec![
                "report",
                "--journal",
                j,
                "--json",
                "--namespace",
                "ns3",
                "--outcome",
                "killed",
                "--from",
                "2026-08-01T12:00:00Z",
            ],
        ),
    ];
    for (name, args) in variants {
        let mut times = Vec::new();
        let mut rss = 0;
        for _ in 0..RUNS {
            let (t, r) = timed(bin, &args)?;
            times.push(t);
            rss = rss.max(r);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{name:<44} {:>9.3} {:>9.3} {:>12.1}",
            times[0],
            times[RUNS / 2],
            rss as f64 / 1024.0
        );
    }
    Ok(())
}

/// Runs `bin args`; returns (wall seconds, peak RSS in KiB) from wait4's rusage.
fn timed(bin: &Path, args: &[&str]) -> Result<(f64, i64)> {
    let t = Instant::now();
    let child = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("{} (run `cargo xtask build`)", bin.display()))?;
    let mut status = 0;
    // SAFETY: plain rusage out-parameter; we reap our own child by pid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let elapsed = t.elapsed().as_secs_f64();
    if pid < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 || !err.is_empty() {
        bail!("observer {args:?} failed or warned ({status}): {err}");
    }
    Ok((elapsed, usage.ru_maxrss))
}

/// Writes `n` records over FILE.2, FILE.1, FILE; returns the bytes written.
fn generate(journal: &Path, n: usize) -> Result<u64> {
    // Streamed to disk: xtask stays small, because a child started with vfork reports the
    // parent's peak RSS as its own in wait4's ru_maxrss.
    let mut files = Vec::new();
    for k in 0..3 {
        let path = match 2 - k {
            0 => journal.to_path_buf(),
            n => journal.with_extension(format!("jsonl.{n}")),
        };
        let f = std::fs::File::create(&path).with_context(|| format!("{}", path.display()))?;
        files.push(std::io::BufWriter::new(f));
    }
    let mut bytes = 0;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..n {
        let r = rand();
        let ns = format!("ns{}", i % 7);
        let workload = format!("app{}", i % 13);
        let pod = format!("{workload}-7d4b9c6f8-{:05x}", r & 0xfffff);
        let id =
            format!("{:016x}{:016x}{:016x}{:016x}", r, r.rotate_left(7), !r, r.rotate_left(29));
        let uid = format!("{:08x}-0000-4000-8000-{:012x}", r >> 32, r & 0xffff_ffff_ffff);
        let exit = ts(i as u64 * 1000 + 30_000);
        let term = ts(i as u64 * 1000);
        // 70% graceful, 10% SIGTERM ignored, 10% slow, 5% OOM, 5% preStop overrun.
        let (outcome, ignored, disposition, handler, kill, t2e, code, signal, prestop) =
            match r % 20 {
                0..=13 => ("graceful", false, "\"handled\"", "\"handled\"", false, (r % 3000) as f64 / 1000.0, "0", "null", "null".to_string()),
                14 | 15 => ("killed", true, "null", "\"default\"", true, 30.001, "null", "\"SIGKILL\"", "null".into()),
                16 | 17 => ("killed", false, "\"handled\"", "\"handled\"", true, 30.001, "null", "\"SIGKILL\"", "null".into()),
                18 => ("oom_killed", false, "null", "null", false, 0.0, "null", "\"SIGKILL\"", "null".into()),
                _ => ("killed", false, "\"handled\"", "\"handled\"", true, 2.001, "null", "\"SIGKILL\"",
                      format!("{{\"started_at\":\"{term}\",\"ended_at\":null,\"duration_seconds\":28.0,\"overrun\":true,\"kind\":\"exec\"}}")),
            };
        let stop = outcome != "oom_killed";
        let mut line = String::with_capacity(1024);
        write!(
            line,
            "{{\"ts\":\"{exit}\",\"node\":\"node-1\",\"namespace\":\"{ns}\",\"pod\":\"{pod}\",\"pod_uid\":\"{uid}\",\
             \"container\":\"main\",\"container_id\":\"{id}\",\"workload\":\"{workload}\",\"runtime\":\"containerd\",\
             \"cgroup\":\"/kubepods/burstable/pod{uid}/{id}\",\"pid\":{},\"comm\":\"java\",",
            10_000 + i
        )?;
        if stop {
            write!(
                line,
                "\"stop_signal\":\"SIGTERM\",\"stop_signal_at\":\"{term}\",\"stop_signal_sender\":{{\"pid\":{},\"comm\":\"runc\"}},\
                 \"stop_signal_ignored\":{ignored},\"stop_signal_disposition\":{disposition},\"stop_signal_handler\":{handler},",
                500 + i
            )?;
        } else {
            line.push_str("\"stop_signal\":null,\"stop_signal_at\":null,\"stop_signal_sender\":null,\"stop_signal_ignored\":null,\"stop_signal_disposition\":null,\"stop_signal_handler\":null,");
        }
        if kill {
            write!(
                line,
                "\"sigkill_at\":\"{exit}\",\"sigkill_sender\":{{\"pid\":{},\"comm\":\"runc\"}},",
                600 + i
            )?;
        } else {
            line.push_str("\"sigkill_at\":null,\"sigkill_sender\":null,");
        }
        let t2e = if stop { format!("{t2e}") } else { "null".into() };
        let t2k = if kill { "30.0" } else { "null" };
        // The verdict, its contract and what kubectl shows, as the daemon writes them now.
        let (kube_reason, kube_code, kube_note) = if kill {
            ("Error", 137, "137 = 128 + 9 (SIGKILL), not an OOM kill: containerd's OOMKilled counts any process's, and can race the exit")
        } else {
            (
                "Completed",
                0,
                "exit 0: a 137 with ContainerStatusUnknown in kubectl is kubelet losing the status",
            )
        };
        writeln!(
            line,
            "\"exit_at\":\"{exit}\",\"exit_code\":{code},\"exit_signal\":{signal},\"term_to_exit_seconds\":{t2e},\
             \"term_to_kill_seconds\":{t2k},\"outcome\":\"{outcome}\",\"grace_period_seconds\":30,\"prestop\":{prestop},\
             \"verdict\":\"kept\",\"contract\":{{\"stop_window_seconds\":{{\"min\":30,\"max\":30}},\"observed_seconds\":{t2e},\
             \"off_by_seconds\":0.0,\"cause\":null,\"grace_used_seconds\":null,\"missing\":null}},\
             \"kubernetes\":{{\"reason\":\"{kube_reason}\",\"exit_code\":{kube_code},\"note\":\"{kube_note}\"}},\
             \"stuck\":null,\"incomplete\":null,\"record_id\":\"bench:{}:{}\"}}",
            10_000 + i,
            90_000 + i
        )?;
        std::io::Write::write_all(&mut files[i * 3 / n], line.as_bytes())?;
        bytes += line.len() as u64;
    }
    for mut f in files {
        std::io::Write::flush(&mut f)?;
    }
    Ok(bytes)
}

/// 2026-08-01T00:00:00Z plus `ms` milliseconds, as the daemon writes it (nanoseconds, Z).
fn ts(ms: u64) -> String {
    let (s, frac) = (ms / 1000, ms % 1000);
    let (d, s) = (s / 86_400, s % 86_400);
    format!(
        "2026-08-{:02}T{:02}:{:02}:{:02}.{:03}000000Z",
        1 + d,
        s / 3600,
        s % 3600 / 60,
        s % 60,
        frac
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_journal_is_well_formed() {
        let dir = std::env::temp_dir().join(format!("xtask-gen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let j = dir.join("terminations.jsonl");
        let bytes = generate(&j, 300).unwrap();
        assert!(bytes > 300 * 700, "{bytes}");
        let mut n = 0;
        for f in ["terminations.jsonl.2", "terminations.jsonl.1", "terminations.jsonl"] {
            let text = std::fs::read_to_string(dir.join(f)).unwrap();
            for l in text.lines() {
                assert!(l.starts_with("{\"ts\":\"2026-08-0") && l.ends_with('}'), "{l}");
                assert_eq!(l.matches('{').count(), l.matches('}').count(), "{l}");
                n += 1;
            }
        }
        assert_eq!(n, 300);
        assert_eq!(ts(86_400_000 + 3_723_004), "2026-08-02T01:02:03.004000000Z");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
