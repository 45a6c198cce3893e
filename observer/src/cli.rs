//! Command line: `observer run | check | report`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::kernel::loader::ProbeOptions;

#[derive(Debug, Parser)]
#[command(
    name = "observer",
    version,
    about = "Watches how Kubernetes containers die",
    long_about = "observer attaches eBPF probes to signal generation, signal delivery and process \
        exit, and records for every container the runtime stops: stop signal -> exit time, \
        whether the stop signal was ignored or handled, whether SIGKILL was needed, and why. \
        It exports Prometheus metrics and keeps a JSON-lines journal."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node daemon: probes, correlation, metrics, journal.
    Run(RunArgs),
    /// Preflight: can this node run observer? Exit status 0 when every check passes.
    ///
    /// One line per requirement, PASS or FAIL with the remedy: kernel version, kernel BTF,
    /// tracefs (mounted when missing and root), each tracepoint and the record fields the
    /// probes read, cgroup v2, privileges, and that every BPF program loads.
    Check(CheckArgs),
    /// Post-incident analysis of the journal: which pods were SIGKILLed, and why.
    ///
    /// A summary per workload (terminations, graceful/killed/OOM, p50/p95/max stop signal ->
    /// exit, stop signals ignored, preStop overruns), then the forced kills, newest first, with
    /// the reason in words. Reads rotated files (FILE.N .. FILE.1, FILE) in time order; corrupt
    /// or truncated lines are skipped and counted in a closing warning.
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Signals reported as stop signals besides SIGKILL (names or numbers, comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "SIGHUP,SIGINT,SIGQUIT,SIGUSR1,SIGUSR2,SIGTERM,SIGWINCH",
        value_parser = parse_signal
    )]
    pub stop_signals: Vec<u32>,

    /// Cgroup path prefix (relative to the v2 hierarchy root) under which kubelet puts pods:
    /// kubelet's --cgroup-root plus "kubepods".
    #[arg(long, default_value = "/kubepods")]
    pub cgroup_root: String,

    /// Size of the kernel -> userspace ring buffer in bytes (power of two).
    #[arg(long, default_value_t = 1 << 20)]
    pub ring_buffer_bytes: u32,
}

impl ProbeArgs {
    pub fn options(&self) -> ProbeOptions {
        ProbeOptions {
            stop_signals: self.stop_signals.clone(),
            cgroup_prefix: self.cgroup_root.clone(),
            ring_buffer_bytes: self.ring_buffer_bytes,
            dedupe_window: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Address of the HTTP server (/metrics, /healthz).
    #[arg(long, default_value = "127.0.0.1:9464", env = "OBSERVER_LISTEN")]
    pub listen: SocketAddr,

    /// Journal file: one JSON line per container termination.
    #[arg(long, default_value = "/var/lib/observer/terminations.jsonl", env = "OBSERVER_JOURNAL")]
    pub journal: PathBuf,

    /// Where kubelet keeps `pods/` and `containers/` logs (names pods when the runtime cannot).
    #[arg(long, default_value = "/var/log")]
    pub kubelet_log_root: PathBuf,

    /// Node name written in every record (default: the host name).
    #[arg(long, env = "NODE_NAME")]
    pub node: Option<String>,

    /// Rotate the journal before a record would make it larger than this many bytes.
    #[arg(long, default_value_t = 10 << 20, value_parser = clap::value_parser!(u64).range(4096..))]
    pub journal_max_bytes: u64,

    /// Rotated journal files kept, named as logrotate does: FILE.1 (newest) .. FILE.N.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub journal_files: u32,

    /// Terminations kept in memory for GET /terminations.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub recent_terminations: u32,

    #[command(flatten)]
    pub probes: ProbeArgs,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Journal file; its rotated files FILE.1 .. FILE.N are read too, oldest first.
    #[arg(long, default_value = "/var/lib/observer/terminations.jsonl", env = "OBSERVER_JOURNAL")]
    pub journal: PathBuf,

    /// Only terminations in this last stretch of time: 90s, 15m, 6h, 2d, 1h30m.
    #[arg(long, value_name = "DURATION", value_parser = parse_since_duration, conflicts_with_all = ["from", "to"])]
    pub since: Option<chrono::Duration>,

    /// Only terminations at or after this time: RFC 3339 (2026-08-01T02:00:00Z) or a UTC date.
    #[arg(long, value_name = "TIME", value_parser = parse_report_time)]
    pub from: Option<chrono::DateTime<chrono::Utc>>,

    /// Only terminations at or before this time.
    #[arg(long, value_name = "TIME", value_parser = parse_report_time)]
    pub to: Option<chrono::DateTime<chrono::Utc>>,

    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,

    /// The pod's owner as in the metrics (Deployment, StatefulSet, ... name).
    #[arg(long, value_name = "W")]
    pub workload: Option<String>,

    #[arg(long, value_name = "P")]
    pub pod: Option<String>,

    /// graceful, killed, killed_without_stop_signal or oom_killed.
    #[arg(long, value_name = "O", value_parser = parse_report_outcome)]
    pub outcome: Option<String>,

    /// Print the matching journal records unchanged, one per line (pipe into jq).
    #[arg(long)]
    pub json: bool,

    /// Forced kills listed at most (0: all); the rest are counted.
    #[arg(long, default_value_t = 100)]
    pub max_kills: usize,

    /// Colour: auto (only on a terminal, and not with NO_COLOR set), always, never.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

fn parse_since_duration(s: &str) -> Result<chrono::Duration, String> {
    crate::report::filter::parse_duration(s).map_err(|e| e.to_string())
}

fn parse_report_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    crate::report::filter::parse_time(s).map_err(|e| e.to_string())
}

fn parse_report_outcome(s: &str) -> Result<String, String> {
    crate::report::filter::parse_outcome(s).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub probes: ProbeArgs,
}

fn parse_signal(s: &str) -> Result<u32, String> {
    crate::signals::parse(s).map_err(|e| e.to_string())
}
