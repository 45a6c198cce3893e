//! The daemon's journal records as tests read them: filters for
//! [`Daemon::wait_records`](crate::Daemon::wait_records) and the fields that are times.

use serde_json::Value;

/// The record's timestamp fields (RFC 3339, nanoseconds).
pub const TIMESTAMPS: &[&str] = &["ts", "stop_signal_at", "sigkill_at", "exit_at"];

/// The record's interval fields (seconds, measured by the kernel).
pub const INTERVALS: &[&str] = &["term_to_exit_seconds", "term_to_kill_seconds"];

/// Matches the records of container `cid`.
pub fn by_id(cid: &str) -> impl Fn(&Value) -> bool + '_ {
    move |r| r["container_id"] == cid
}
