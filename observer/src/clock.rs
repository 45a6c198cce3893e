//! Kernel time -> wall-clock time.
//!
//! Every interval in a record is a difference of `bpf_ktime_get_ns()` values (CLOCK_MONOTONIC),
//! never of the times userspace happened to read the events. Wall-clock fields are converted
//! per value with the realtime - monotonic offset *at the event's time*: the offset is not a
//! constant (an NTP step; on the VM this project is built on, CLOCK_REALTIME gains 5 ms a
//! second on CLOCK_MONOTONIC), so it is sampled again at every pipeline tick
//! ([`WallClock::remeasure`]) and an event's offset is interpolated between the samples that
//! bracket it (exact for a steady drift, one tick's worth of error across a step). Each sample
//! is CLOCK_REALTIME read between two CLOCK_MONOTONIC reads, the tightest of several tries.

use std::collections::VecDeque;

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

/// Samples kept at least this far apart (the newest is always kept as well).
const SAMPLE_SPACING_NS: i128 = 1_000_000_000;
/// A change of offset this large between two samples is a step of the realtime clock (an NTP
/// step, `date -s`), not drift: drift between ticks is microseconds (5 ms a second at worst
/// seen, on this project's VM).
const STEP_NS: i128 = 10_000_000;
/// Samples kept: an hour of them, older events take the oldest offset (records are made
/// within seconds of their events; an open termination expires long before that matters).
const MAX_SAMPLES: usize = 3_600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    /// CLOCK_MONOTONIC at the sample.
    mono_ns: i128,
    /// realtime - monotonic, in ns.
    offset_ns: i128,
    /// Half the sampling window.
    error_ns: i128,
}

impl Sample {
    fn take() -> Self {
        let mut best = Sample { mono_ns: 0, offset_ns: 0, error_ns: i128::MAX };
        for _ in 0..16 {
            let a = clock_ns(libc::CLOCK_MONOTONIC);
            let r = clock_ns(libc::CLOCK_REALTIME);
            let b = clock_ns(libc::CLOCK_MONOTONIC);
            if (b - a) / 2 < best.error_ns {
                best = Sample {
                    mono_ns: (a + b) / 2,
                    offset_ns: r - (a + b) / 2,
                    error_ns: (b - a) / 2,
                };
            }
        }
        best
    }
}

/// Converts kernel timestamps to UTC.
#[derive(Debug, Clone)]
pub struct WallClock {
    /// Oldest first, at least [`SAMPLE_SPACING_NS`] apart.
    samples: VecDeque<Sample>,
    /// The newest sample.
    latest: Sample,
}

impl WallClock {
    pub fn measure() -> Self {
        Self::from_sample(Sample::take())
    }

    fn from_sample(s: Sample) -> Self {
        Self { samples: VecDeque::from([s]), latest: s }
    }

    /// Uncertainty of the newest offset (half its sampling window), in ns.
    pub fn error_ns(&self) -> i128 {
        self.latest.error_ns
    }

    /// Samples the offset again (each pipeline tick, and before a drill's record).
    pub fn remeasure(&mut self) {
        self.push(Sample::take());
    }

    fn push(&mut self, s: Sample) {
        if s.mono_ns <= self.latest.mono_ns {
            return;
        }
        let last = self.samples.back().map_or(i128::MIN, |l| l.mono_ns);
        if (s.offset_ns - self.latest.offset_ns).abs() >= STEP_NS {
            // A step: both sides of it are kept, so only the tick that straddles it is
            // interpolated (thinned, the step would be smeared over a second).
            if last != self.latest.mono_ns {
                self.samples.push_back(self.latest);
            }
            self.samples.push_back(s);
            while self.samples.len() > MAX_SAMPLES {
                self.samples.pop_front();
            }
        } else if s.mono_ns - last >= SAMPLE_SPACING_NS {
            self.samples.push_back(s);
            if self.samples.len() > MAX_SAMPLES {
                self.samples.pop_front();
            }
        }
        self.latest = s;
    }

    /// realtime - monotonic at kernel time `mono_ns`.
    fn offset_at(&self, mono_ns: i128) -> i128 {
        let points = self
            .samples
            .iter()
            .chain((self.samples.back() != Some(&self.latest)).then_some(&self.latest));
        let mut before: Option<&Sample> = None;
        for s in points {
            if s.mono_ns >= mono_ns {
                return match before {
                    // Between two samples: the straight line through them.
                    Some(b) => {
                        b.offset_ns
                            + (s.offset_ns - b.offset_ns) * (mono_ns - b.mono_ns)
                                / (s.mono_ns - b.mono_ns)
                    }
                    None => s.offset_ns,
                };
            }
            before = Some(s);
        }
        self.latest.offset_ns
    }

    pub fn to_utc(&self, ktime_ns: u64) -> DateTime<Utc> {
        let ns = ktime_ns as i128 + self.offset_at(ktime_ns as i128);
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
        assert!(c.error_ns() < 1_000_000, "sampling window {} ns", c.error_ns());
        let k = monotonic_ns();
        let wall = c.to_utc(k);
        let diff = (Utc::now() - wall).num_milliseconds().abs();
        assert!(diff < 50, "{diff} ms");
        let s = c.rfc3339(k);
        assert!(s.ends_with('Z') && s.len() == "2026-11-21T16:12:59.123456789Z".len(), "{s}");
    }

    fn at(mono_s: i128, offset_ms: i128) -> Sample {
        Sample { mono_ns: mono_s * 1_000_000_000, offset_ns: offset_ms * 1_000_000, error_ns: 0 }
    }

    #[test]
    fn an_event_takes_the_offset_of_its_own_time() {
        // Realtime gaining 5 ms a second, as on the VM this is built on.
        let mut c = WallClock::from_sample(at(100, 0));
        c.push(at(101, 5));
        c.push(at(102, 10));
        let off = |s: f64| c.offset_at((s * 1e9) as i128) / 1_000;
        assert_eq!(off(100.0), 0);
        assert_eq!(off(100.5), 2_500);
        assert_eq!(off(101.2), 6_000);
        assert_eq!(off(99.0), 0, "before the first sample: the first offset");
        assert_eq!(off(103.0), 10_000, "after the last: the newest");
    }

    #[test]
    fn an_ntp_step_is_taken_up_at_the_next_tick() {
        // Realtime stepped 3 s forward (chronyd's makestep, an NTP step after early boot)
        // between two ticks, 50 ms apart, long after the daemon started.
        let mut c = WallClock::from_sample(at(0, 0));
        for i in 1..=100 {
            c.push(Sample { mono_ns: i * 50_000_000, offset_ns: 0, error_ns: 0 });
        }
        c.push(Sample { mono_ns: 101 * 50_000_000, offset_ns: 3_000_000_000, error_ns: 0 });
        for i in 102..=200 {
            c.push(Sample { mono_ns: i * 50_000_000, offset_ns: 3_000_000_000, error_ns: 0 });
        }
        let off = |ms: i128| c.offset_at(ms * 1_000_000) / 1_000_000;
        assert_eq!(off(4_000), 0, "before the step: the old offset");
        assert_eq!(off(5_000), 0, "up to the last tick before it");
        assert_eq!(off(5_050), 3_000, "from the tick after it: the new one");
        assert_eq!(off(5_500), 3_000, "not smeared over the next second");
        assert_eq!(off(9_000), 3_000);
        // Within the tick that straddles it, between the two (interpolated).
        assert_eq!(off(5_025), 1_500);
    }

    #[test]
    fn samples_are_thinned_to_one_a_second_but_the_newest_counts() {
        let mut c = WallClock::from_sample(at(0, 0));
        for i in 1..=50 {
            // Every 50 ms, as the pipeline ticks.
            c.push(Sample { mono_ns: i * 50_000_000, offset_ns: i * 250_000, error_ns: 0 });
        }
        assert_eq!(c.samples.len(), 3, "0 s, 1 s, 2 s");
        assert_eq!(c.latest.mono_ns, 2_500_000_000);
        assert_eq!(c.offset_at(2_250_000_000) / 1_000, 11_250);
        // A sample from the past (clock read out of order) changes nothing.
        c.push(at(1, 99));
        assert_eq!(c.latest.mono_ns, 2_500_000_000);
        for i in 0..(MAX_SAMPLES as i128 + 10) {
            c.push(at(10 + i, 0));
        }
        assert_eq!(c.samples.len(), MAX_SAMPLES);
    }
}
