//! Bounded label sets for the metric families that name containers and pods.
//!
//! `namespace, workload, container` is bounded only as far as the workload is: a namespace per
//! CI run, or `app` labels made per run, still make a label set per pod, and every one would
//! stay in the daemon's memory (its limit is 192 MiB) and in every scrape for as long as it
//! runs. So each family holds at most [`Limits::series`] label sets; past that, a record's
//! identity labels (the leading ones: namespace, workload, container) read [`OVERFLOW`], its
//! enumerations (outcome, verdict, cause, order) are kept, and each observation folded so is
//! counted. A label set not written for [`Limits::idle`] is removed (and its room with it).
//!
//! A removed counter that comes back starts again from 0: Prometheus' `rate()` and
//! `increase()` take a drop in a counter for a reset and count from the new value, as after a
//! daemon restart, so nothing is lost but the idle series' last value; and a series missing
//! from a scrape is marked stale, so it ends in graphs instead of holding its last value.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// Label sets per family. A node runs at most kubelet's `maxPods` (110 by default) pods of a
/// few containers each: their workloads' containers and outcomes over an hour fit several
/// times over. More is churn no workload folds; and a full histogram family is already 20,000
/// lines (20 per label set), about 2.5 MiB of each scrape (`cargo xtask bench`).
pub const MAX_SERIES: usize = 1_024;
/// A label set not written for this long is removed: an hour keeps every series a dashboard's
/// `rate(..[5m])` or an alert's `increase(..[1h])` reads while its workload is alive.
pub const IDLE_AFTER: Duration = Duration::from_secs(3600);
/// How often [`Series::expire`] looks at every label set (one pass over at most
/// [`MAX_SERIES`] per family); in between it costs a comparison.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// What the identity labels read in a family's overflow series.
pub const OVERFLOW: &str = "_overflow";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Label sets a family holds before it overflows.
    pub series: usize,
    /// A label set not written for this long is removed.
    pub idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { series: MAX_SERIES, idle: IDLE_AFTER }
    }
}

/// A label set, encoded as each value's length (4 bytes, little-endian) and bytes: one
/// allocation, and no separator a value could contain.
type Key = Box<[u8]>;

fn encode(labels: &[&str]) -> Vec<u8> {
    let mut key = Vec::with_capacity(labels.iter().map(|l| l.len() + 4).sum());
    for l in labels {
        key.extend_from_slice(&(l.len() as u32).to_le_bytes());
        key.extend_from_slice(l.as_bytes());
    }
    key
}

/// The label values of a key made by [`encode`].
pub fn decode(key: &[u8]) -> Vec<&str> {
    let mut labels = Vec::new();
    let mut rest = key;
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = (u32::from_le_bytes(*len) as usize).min(tail.len());
        let (value, tail) = tail.split_at(len);
        // Made from a &str: always UTF-8.
        labels.push(std::str::from_utf8(value).unwrap_or_default());
        rest = tail;
    }
    labels
}

/// One family's label sets, each with when it was last written.
#[derive(Default)]
struct Family {
    /// How many leading labels name a container or pod.
    identity: usize,
    held: HashMap<Key, Instant>,
    /// The overflow label sets (one per combination of the kept labels), outside the cap.
    overflow: HashMap<Key, Instant>,
    overflowed: u64,
}

/// Where an observation goes.
#[derive(Debug, PartialEq, Eq)]
pub struct Admitted<'a> {
    pub labels: Vec<&'a str>,
    /// Folded into the overflow series (the family was full).
    pub overflow: bool,
}

/// The label sets of every bounded family, by index.
pub struct Series {
    families: Vec<Family>,
    limits: Limits,
    swept: Option<Instant>,
}

impl Series {
    /// Families whose first `identity[i]` labels name a container or pod.
    pub fn new(identity: &[usize], limits: Limits) -> Self {
        let families = identity.iter().map(|&identity| Family { identity, ..Default::default() });
        Self { families: families.collect(), limits, swept: None }
    }

    /// The label values to write `labels` of family `f` with, at `now`: `labels` when the
    /// family holds them or has room for them, else its overflow set for them.
    pub fn admit<'a>(&mut self, f: usize, labels: &[&'a str], now: Instant) -> Admitted<'a> {
        let limit = self.limits.series;
        let family = &mut self.families[f];
        let key = encode(labels);
        if let Some(seen) = family.held.get_mut(key.as_slice()) {
            *seen = now;
            return Admitted { labels: labels.to_vec(), overflow: false };
        }
        if family.held.len() < limit {
            family.held.insert(key.into_boxed_slice(), now);
            return Admitted { labels: labels.to_vec(), overflow: false };
        }
        let folded = overflow_of(family.identity, labels);
        family.overflow.insert(encode(&folded).into_boxed_slice(), now);
        family.overflowed += 1;
        Admitted { labels: folded, overflow: true }
    }

    /// Where `labels` of family `f` were written, without making room for them: themselves
    /// when held, else their overflow set when there is one, else nowhere (for a gauge to take
    /// back what it added).
    pub fn placed<'a>(&self, f: usize, labels: &[&'a str]) -> Option<Vec<&'a str>> {
        let family = &self.families[f];
        if family.held.contains_key(encode(labels).as_slice()) {
            return Some(labels.to_vec());
        }
        let folded = overflow_of(family.identity, labels);
        family.overflow.contains_key(encode(&folded).as_slice()).then_some(folded)
    }

    /// Label sets held by family `f` (overflow sets aside).
    pub fn len(&self, f: usize) -> usize {
        self.families[f].held.len()
    }

    pub fn is_empty(&self, f: usize) -> bool {
        self.families[f].held.is_empty()
    }

    /// Observations family `f` folded into its overflow series.
    pub fn overflowed(&self, f: usize) -> u64 {
        self.families[f].overflowed
    }

    /// When a sweep is due ([`SWEEP_EVERY`]): forgets and returns, per family, the label sets
    /// not written since `now - idle`, except those `keep` keeps (a gauge still up), which
    /// count as written now.
    pub fn expire(
        &mut self,
        now: Instant,
        keep: impl Fn(usize, &[&str]) -> bool,
    ) -> Vec<(usize, Key)> {
        if self.swept.is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY) {
            return Vec::new();
        }
        self.swept = Some(now);
        let idle = self.limits.idle;
        let mut gone = Vec::new();
        for (f, family) in self.families.iter_mut().enumerate() {
            for map in [&mut family.held, &mut family.overflow] {
                map.retain(|key, seen| {
                    if now.saturating_duration_since(*seen) < idle {
                        return true;
                    }
                    if keep(f, &decode(key)) {
                        *seen = now;
                        return true;
                    }
                    gone.push((f, key.clone()));
                    false
                });
            }
        }
        gone
    }
}

/// `labels` with the first `identity` values made [`OVERFLOW`].
fn overflow_of<'a>(identity: usize, labels: &[&'a str]) -> Vec<&'a str> {
    labels.iter().enumerate().map(|(i, l)| if i < identity { OVERFLOW } else { *l }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_family_folds_new_label_sets_and_keeps_the_ones_it_holds() {
        let mut s = Series::new(&[2], Limits { series: 2, idle: IDLE_AFTER });
        let t = Instant::now();
        assert!(!s.admit(0, &["a", "x", "killed"], t).overflow);
        assert!(!s.admit(0, &["b", "y", "killed"], t).overflow);
        let third = s.admit(0, &["c", "z", "graceful"], t);
        assert_eq!(
            third,
            Admitted { labels: vec![OVERFLOW, OVERFLOW, "graceful"], overflow: true }
        );
        assert!(!s.admit(0, &["a", "x", "killed"], t).overflow, "held label sets stay writable");
        assert_eq!((s.len(0), s.overflowed(0)), (2, 1));
        assert_eq!(s.placed(0, &["b", "y", "killed"]), Some(vec!["b", "y", "killed"]));
        assert_eq!(
            s.placed(0, &["d", "w", "graceful"]),
            Some(vec![OVERFLOW, OVERFLOW, "graceful"])
        );
        assert_eq!(s.placed(0, &["d", "w", "oom_killed"]), None, "never written");
    }

    #[test]
    fn idle_label_sets_go_at_a_sweep_and_make_room() {
        let mut s = Series::new(&[1, 1], Limits { series: 1, idle: Duration::from_secs(10) });
        let t = Instant::now();
        s.admit(0, &["old"], t);
        s.admit(1, &["kept"], t);
        assert!(s.admit(0, &["new"], t).overflow);
        let later = t + Duration::from_secs(11);
        let gone = s.expire(later, |f, labels| f == 1 && labels == ["kept"]);
        let gone: Vec<(usize, Vec<&str>)> = gone.iter().map(|(f, k)| (*f, decode(k))).collect();
        assert_eq!(gone, [(0, vec!["old"]), (0, vec![OVERFLOW])]);
        assert_eq!((s.len(0), s.len(1)), (0, 1));
        assert!(!s.admit(0, &["new"], later).overflow, "room again");
        // The next sweep is a minute away: nothing goes before it.
        assert!(s.expire(later + Duration::from_secs(30), |_, _| false).is_empty());
    }

    #[test]
    fn keys_round_trip_any_value() {
        for labels in [vec![], vec![""], vec!["a\u{1f}b", "", "ünï", "\0"]] {
            assert_eq!(decode(&encode(&labels)), labels);
        }
        // Distinct tuples whose joined text is the same stay distinct.
        assert_ne!(encode(&["ab", "c"]), encode(&["a", "bc"]));
    }
}
