//! Command line: `observer run | check`.

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

    #[command(flatten)]
    pub probes: ProbeArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub probes: ProbeArgs,
}

fn parse_signal(s: &str) -> Result<u32, String> {
    crate::signals::parse(s).map_err(|e| e.to_string())
}
