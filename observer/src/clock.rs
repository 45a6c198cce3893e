//! Kernel time -> wall-clock time.
//!
//! Every interval in a record is a difference of `bpf_ktime_get_ns()` values (CLOCK_MONOTONIC),
//! never of the times userspace happened to read the events. Wall-clock fields are converted
//! once per value with an offset measured at start: CLOCK_REALTIME sampled between two
//! CLOCK_MONOTONIC reads, keeping the tightest of several tries.

use chrono::{DateTime, SecondsFormat, Utc};

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid clock id and out pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// Now on the clock `bpf_ktime_get_ns()` reads.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

/// Converts kernel timestamps to UTC.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    /// realtime - monotonic, in ns.
    offset_ns: i128,
    /// Uncertainty of the offset (half the tightest sampling window), in ns.
    pub error_ns: i128,
}

impl WallClock {
    pub fn measure() -> Self {
        let mut best = (i128::MAX, 0);
        for _ in 0..16 {
            let a = clock_ns(libc::CLOCK_MONOTONIC);
            let r = clock_ns(libc::CLOCK_REALTIME);
            let b = clock_ns(libc::CLOCK_MONOTONIC);
            if b - a < best.0 {
                best = (b - a, r - (a + b) / 2);
            }
        }
        Self { offset_ns: best.1, error_ns: best.0 / 2 }
    }

    pub fn to_utc(&self, ktime_ns: u64) -> DateTime<Utc> {
        let ns = ktime_ns as i128 + self.offset_ns;
        let secs = ns.div_euclid(1_000_000_000) as i64;
        let sub = ns.rem_euclid(1_000_000_000) as u32;
        DateTime::from_timestamp(secs, sub).unwrap_or_default()
    }

    /// RFC 3339, UTC, nanoseconds: `2026-11-21T16:12:59.123456789Z`.
    pub fn rfc3339(&self, ktime_ns: u64) -> String {
        self.to_utc(ktime_ns).to_rfc3339_opts(SecondsFormat::Nanos, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_now_to_now() {
        let c = WallClock::measure();
        assert!(c.error_ns < 1_000_000, "sampling window {} ns", c.error_ns);
        let k = monotonic_ns();
        let wall = c.to_utc(k);
        let diff = (Utc::now() - wall).num_milliseconds().abs();
        assert!(diff < 50, "{diff} ms");
        let s = c.rfc3339(k);
        assert!(s.ends_with('Z') && s.len() == "2026-11-21T16:12:59.123456789Z".len(), "{s}");
    }
}
