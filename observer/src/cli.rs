//! Command line: `observer run | check`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

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

    #[command(flatten)]
    pub metadata: MetadataArgs,

    /// Node name written in every record (default: the host name).
    #[arg(long, env = "NODE_NAME")]
    pub node: Option<String>,

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
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
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

/// `500ms`, `2s`, `1m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) =
        s.find(|c: char| !c.is_ascii_digit() && c != '.').map_or((s, "s"), |i| s.split_at(i));
    let n: f64 =
        num.parse().map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 2s, 1m)"))?;
    let secs = match unit {
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub probes: ProbeArgs,
}

fn parse_signal(s: &str) -> Result<u32, String> {
    crate::signals::parse(s).map_err(|e| e.to_string())
}
