//! Time in the records: their RFC 3339 timestamps as nanoseconds since the epoch, and their
//! kernel-measured intervals against the test's own clock.

use chrono::DateTime;
use serde_json::Value;

/// The bound for kernel intervals against the test's own clock.
pub const CLOCK_SLACK: f64 = 0.020;

/// Nanoseconds since the epoch of an RFC 3339 timestamp (the journal's: UTC, nanoseconds).
pub fn epoch_ns(ts: &Value) -> i128 {
    let s = ts.as_str().unwrap_or_else(|| panic!("not a timestamp: {ts}"));
    let t = DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("not RFC 3339 ({e}): {s}"));
    i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())
}

/// Asserts that a kernel interval, `actual` seconds, is within [`CLOCK_SLACK`] of what the
/// test's clock measured, `expected` seconds.
pub fn close_to(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= CLOCK_SLACK,
        "{what}: kernel {actual:.6} s vs test clock {expected:.6} s"
    );
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn timestamps_keep_their_nanoseconds() {
        assert_eq!(epoch_ns(&json!("1970-01-01T00:00:00Z")), 0);
        assert_eq!(epoch_ns(&json!("1970-01-01T00:00:01.000000001Z")), 1_000_000_001);
        assert_eq!(epoch_ns(&json!("1969-12-31T23:59:59.5Z")), -500_000_000);
        assert_eq!(epoch_ns(&json!("2026-08-01T12:34:56.123456789Z")), 1_785_587_696_123_456_789);
        assert_eq!(
            epoch_ns(&json!("2024-02-29T00:00:00.000000000Z"))
                - epoch_ns(&json!("2024-02-28T23:59:59.999999999Z")),
            1
        );
    }
}
