//! `observer run`'s arguments.

use std::{net::SocketAddr, path::PathBuf};

use clap::Args;

use crate::{kernel::loader::ProbeArgs, metadata::resolver::MetadataArgs};

/// `observer run`: where to serve and write, where metadata comes from, what the probes watch.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Address of the HTTP server (/metrics, /healthz).
    #[arg(long, default_value = "127.0.0.1:9464", env = "OBSERVER_LISTEN")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub web: crate::sinks::web::WebArgs,

    /// Journal file: one JSON line per container termination.
    #[arg(long, default_value = "/var/lib/observer/terminations.jsonl", env = "OBSERVER_JOURNAL")]
    pub journal: PathBuf,

    #[command(flatten)]
    pub metadata: MetadataArgs,

    /// Write each record to stdout as well, as its journal line (JSON), for a cluster whose log
    /// pipeline collects the pod's log. Its own writer thread and queue: a log reader that
    /// stops reading drops (counted) copies, never a journal record.
    #[arg(long, env = "OBSERVER_RECORDS_TO_STDOUT")]
    pub records_to_stdout: bool,

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

    #[command(flatten)]
    pub privileges: crate::privileges::PrivilegeArgs,

    /// A SIGKILLed container main process still there this long after is reported stuck
    /// (a journal record of outcome `stuck` with what holds it, from /proc): "pod stuck in
    /// Terminating". At least 1s, at most 1h.
    #[arg(long, default_value = "10s", value_parser = parse_stuck_after, env = "OBSERVER_STUCK_AFTER")]
    pub stuck_after: std::time::Duration,

    /// kubelet's configuration file (KubeletConfiguration) as this process reads it, for a
    /// DaemonSet that mounts the node's file read-only: what a shortened grace is held against
    /// (soft eviction, node shutdown). Default: the file the running kubelet's `--config`
    /// names, read through /proc/<kubelet>/root, which takes CAP_SYS_PTRACE (a host install
    /// has it; the DaemonSet does not). kubelet's flags are read from its cmdline either way.
    #[arg(long, env = "OBSERVER_KUBELET_CONFIG")]
    pub kubelet_config: Option<PathBuf>,

    /// The same for the directory kubelet's `--config-dir` names (drop-ins, `*.conf`).
    #[arg(long, env = "OBSERVER_KUBELET_CONFIG_DIR")]
    pub kubelet_config_dir: Option<PathBuf>,

    /// bpffs directory where the probes' maps and links are pinned, so the kernel keeps
    /// recording while no daemon runs and the next one reads on (one daemon per pin
    /// directory: it is locked). "none": nothing pinned, the probes end with the daemon.
    /// `observer cleanup` removes the pins.
    #[arg(long, default_value = "/sys/fs/bpf/observer", env = "OBSERVER_PIN_DIR")]
    pub pin_dir: String,
}

fn parse_stuck_after(s: &str) -> Result<std::time::Duration, String> {
    let d = crate::duration::parse_at_most(s, std::time::Duration::from_secs(3600))
        .map_err(|e| e.to_string())?;
    if d < std::time::Duration::from_secs(1) {
        return Err(format!("{s:?} is under 1s: every SIGKILL would look stuck"));
    }
    Ok(d)
}

impl RunArgs {
    /// The pin directory, unless pinning is off.
    pub fn pin_dir(&self) -> Option<PathBuf> {
        (self.pin_dir != "none").then(|| PathBuf::from(&self.pin_dir))
    }
}
