//! Command line: `observer run | check | drill | report`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::{
    kernel::loader::ProbeOptions,
    metadata::{cri::DEFAULT_ENDPOINTS, resolver::Sources, state_files::StateFiles},
};

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
    /// Stop a workload the way kubelet stops a container, and report what the kernel saw.
    ///
    /// Runs CMD as PID 1 of a fresh pid and mount namespace in a kubepods cgroup of its own,
    /// then carries out kubelet's sequence: preStop (with the grace period as its budget),
    /// the stop signal, SIGKILL when the remaining window (at least 2 s) runs out. Prints a
    /// timeline and a verdict with the fix, or with --json one journal record. Exit status:
    /// 0 exited gracefully, 3 SIGKILL was needed, 4 preStop overran (no SIGKILL), 1 error,
    /// 2 usage.
    Drill(DrillArgs),
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

    /// Take this optional kernel feature's fallback even where the kernel has it (repeatable):
    /// exit-group-dead (read group_dead from signal->live, as on kernels before 6.16).
    /// `observer check` says which path each feature takes on this node.
    #[arg(long, value_name = "FEATURE", value_parser = crate::kernel::compat::parse_fallback)]
    pub force_fallback: Vec<crate::kernel::compat::FeatureId>,
}

impl ProbeArgs {
    pub fn options(&self) -> ProbeOptions {
        ProbeOptions {
            stop_signals: self.stop_signals.clone(),
            cgroup_prefix: self.cgroup_root.clone(),
            ring_buffer_bytes: self.ring_buffer_bytes,
            dedupe_window: Duration::from_secs(1),
            force_fallback: self.force_fallback.clone(),
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

    #[command(flatten)]
    pub metadata: MetadataArgs,

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

/// Where container metadata comes from (see `metadata::resolver`).
#[derive(Debug, Args)]
pub struct MetadataArgs {
    /// CRI runtime socket(s), tried in order (repeat or comma-separate; "none" disables the
    /// CRI). Default: /run/containerd/containerd.sock, /var/run/crio/crio.sock,
    /// /var/run/cri-dockerd.sock.
    #[arg(long, value_delimiter = ',', env = "OBSERVER_CRI_ENDPOINT")]
    pub cri_endpoint: Vec<String>,

    /// Deadline of each CRI call; a runtime slower than this is skipped, never waited on.
    #[arg(long, default_value = "2s", value_parser = crate::drill::parse_duration)]
    pub cri_timeout: Duration,

    /// containerd's state directory (bundles with config.json, read when the CRI is unavailable).
    #[arg(long, default_value = "/run/containerd")]
    pub containerd_state: PathBuf,

    /// CRI-O's container storage run root (userdata/config.json per container).
    #[arg(long, default_value = "/run/containers/storage")]
    pub crio_storage: PathBuf,

    /// Where kubelet keeps `pods/` and `containers/` logs (names pods when the runtime cannot).
    #[arg(long, default_value = "/var/log")]
    pub kubelet_log_root: PathBuf,
}

impl MetadataArgs {
    pub fn sources(&self) -> Sources {
        let cri_endpoints = if self.cri_endpoint.is_empty() {
            DEFAULT_ENDPOINTS.iter().map(PathBuf::from).collect()
        } else if self.cri_endpoint.iter().any(|e| e == "none") {
            Vec::new()
        } else {
            // Accept kubelet's spelling too: unix:///run/containerd/containerd.sock.
            self.cri_endpoint
                .iter()
                .map(|e| PathBuf::from(e.strip_prefix("unix://").unwrap_or(e)))
                .collect()
        };
        Sources {
            cri_endpoints,
            cri_timeout: self.cri_timeout,
            state_files: StateFiles {
                containerd_state: self.containerd_state.clone(),
                crio_storage: self.crio_storage.clone(),
                ..Default::default()
            },
            kubelet_log_root: self.kubelet_log_root.clone(),
        }
    }
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
    crate::record::filter::parse_duration(s).map_err(|e| e.to_string())
}

fn parse_report_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    crate::record::filter::parse_time(s).map_err(|e| e.to_string())
}

fn parse_report_outcome(s: &str) -> Result<String, String> {
    crate::record::filter::parse_outcome(s).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub probes: ProbeArgs,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("prestop").args(["prestop_exec", "prestop_http", "prestop_sleep"])))]
pub struct DrillArgs {
    /// terminationGracePeriodSeconds (or the deletion's grace): the budget of preStop and stop.
    #[arg(long, value_name = "S", default_value_t = crate::kubelet::DEFAULT_GRACE_PERIOD_SECONDS)]
    pub grace_period: u64,

    /// preStop exec hook: `sh -c CMD` inside the workload's namespaces and cgroup.
    #[arg(long, value_name = "CMD")]
    pub prestop_exec: Option<String>,

    /// preStop HTTP hook: GET this http:// URL.
    #[arg(long, value_name = "URL", value_parser = crate::drill::parse_http_url)]
    pub prestop_http: Option<crate::drill::HttpTarget>,

    /// preStop sleep hook of S seconds.
    #[arg(long, value_name = "S")]
    pub prestop_sleep: Option<u64>,

    /// The image's STOPSIGNAL.
    #[arg(long, value_name = "SIG", default_value = "SIGTERM", value_parser = parse_signal)]
    pub stop_signal: u32,

    /// How long the workload runs before the stop begins (500ms, 2s, 1m).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = crate::drill::parse_duration)]
    pub start_after: Duration,

    /// Print one record in the journal schema instead of the timeline.
    #[arg(long)]
    pub json: bool,

    /// Cgroup path prefix the container's cgroup is made under (as for `observer run`).
    #[arg(long, default_value = "/kubepods")]
    pub cgroup_root: String,

    /// CRI mode: run the workload as a container of this CRI runtime (e.g.
    /// /run/containerd/containerd.sock) in a host-network pod sandbox, and carry the sequence
    /// out as kubelet does: ExecSync for an exec hook, StopContainer with the grace left.
    /// The runtime then picks the stop signal (the image's STOPSIGNAL); --stop-signal is not
    /// used.
    #[arg(long, value_name = "SOCKET", requires = "image")]
    pub cri_endpoint: Option<PathBuf>,

    /// CRI mode: the image to run (already pulled or imported on the node); CMD overrides
    /// its command.
    #[arg(long, value_name = "IMAGE", requires = "cri_endpoint")]
    pub image: Option<String>,

    /// The workload and its arguments. Its stdout and stderr go to the drill's stderr.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn parse_signal(s: &str) -> Result<u32, String> {
    crate::signals::parse(s).map_err(|e| e.to_string())
}
