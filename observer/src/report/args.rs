//! `observer report`'s arguments.

use std::path::PathBuf;

use clap::Args;

use crate::{
    duration::{self, DurationError},
    record::filter,
};

/// `observer report`: which journal, which records, how to print them.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Journal file; its rotated files FILE.1 .. FILE.N are read too, oldest first.
    #[arg(long, default_value = "/var/lib/observer/terminations.jsonl", env = "OBSERVER_JOURNAL")]
    pub journal: PathBuf,

    /// Only terminations in this last stretch of time. DURATION: a number and a unit (ms, s,
    /// m, h, d, w) or several, e.g. 500ms, 1.5s, 15m, 1h30m, 2d; a number alone is seconds.
    #[arg(long, value_name = "DURATION", value_parser = parse_since, conflicts_with_all = ["from", "to"])]
    pub since: Option<chrono::Duration>,

    /// Only terminations at or after this time: RFC 3339 (2026-08-01T02:00:00Z) or a UTC date.
    #[arg(long, value_name = "TIME", value_parser = filter::parse_time)]
    pub from: Option<chrono::DateTime<chrono::Utc>>,

    /// Only terminations at or before this time.
    #[arg(long, value_name = "TIME", value_parser = filter::parse_time)]
    pub to: Option<chrono::DateTime<chrono::Utc>>,

    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,

    /// The pod's owner as in the metrics (Deployment, StatefulSet, ... name).
    #[arg(long, value_name = "W")]
    pub workload: Option<String>,

    #[arg(long, value_name = "P")]
    pub pod: Option<String>,

    /// graceful, killed, killed_without_stop_signal, oom_killed, exit_not_observed or stuck.
    #[arg(long, value_name = "O", value_parser = filter::parse_outcome)]
    pub outcome: Option<String>,

    /// Was kubelet's stop sequence kept: kept, kill_late, kill_early, unknown or not_a_stop.
    #[arg(long, value_name = "V", value_parser = filter::parse_verdict)]
    pub verdict: Option<String>,

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

/// When the report is in colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

/// `--since`: any duration; one longer than chrono's range is all of time.
fn parse_since(s: &str) -> Result<chrono::Duration, DurationError> {
    duration::parse(s).map(duration::to_chrono)
}
