//! The most recent terminations, bounded in memory, for `GET /terminations`: typed records,
//! filtered as the report filters the journal ([`Record::entry`]). Older records leave memory,
//! not the journal.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
};

use chrono::{DateTime, Utc};

use crate::{
    pod::PodRecord,
    record::{
        filter::{Filter, Names},
        Record,
    },
};

/// A record the stores hold, read by the filters without a parse.
trait Held {
    fn names(&self) -> Names<'_>;
}

impl Held for Record {
    fn names(&self) -> Names<'_> {
        Names::of_record(self)
    }
}

impl Held for PodRecord {
    fn names(&self) -> Names<'_> {
        Names::of_pod(self)
    }
}

/// At most `capacity` records with their times, oldest dropped first. The pipeline pushes
/// under the lock; a query holds it only to compare and to clone the `Arc`s it picks, and
/// serializes after (the HTTP handler), so a large answer never holds up a push.
struct Store<T> {
    held: Mutex<VecDeque<(DateTime<Utc>, Arc<T>)>>,
    capacity: usize,
}

impl<T: Held> Store<T> {
    fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { held: Mutex::new(VecDeque::with_capacity(capacity.min(4096))), capacity }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<(DateTime<Utc>, Arc<T>)>> {
        // A panic elsewhere while holding the lock leaves a valid deque: keep serving.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, at: DateTime<Utc>, record: Arc<T>) {
        let mut held = self.lock();
        if held.len() == self.capacity {
            held.pop_front();
        }
        held.push_back((at, record));
    }

    fn query(&self, filter: &Filter, limit: usize) -> Vec<Arc<T>> {
        let held = self.lock();
        held.iter()
            .rev()
            .filter(|(at, r)| filter.matches_names(*at, &r.names()))
            .take(limit)
            .map(|(_, r)| r.clone())
            .collect()
    }
}

/// At most `capacity` records, oldest dropped first.
pub struct Recent(Store<Record>);

impl Recent {
    /// Holds at most `capacity` records (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self(Store::new(capacity))
    }

    /// The most records held.
    pub fn capacity(&self) -> usize {
        self.0.capacity
    }

    /// Keeps a copy of `record`, dropping the oldest when full.
    pub fn push(&self, record: &Record) {
        let at = match record.entry() {
            Ok(e) => e.at,
            Err(e) => {
                // Unreadable by the filters: a bug in the producer, not node input.
                log::error!("recent terminations: cannot filter a record: {e}");
                return;
            }
        };
        self.0.push(at, Arc::new(record.clone()));
    }

    /// How many records are held.
    pub fn len(&self) -> usize {
        self.0.lock().len()
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// At most `limit` records that `filter` matches, newest first.
    pub fn query(&self, filter: &Filter, limit: usize) -> Vec<Arc<Record>> {
        self.0.query(filter, limit)
    }
}

/// The most recent pod records ([`PodRecord`]), for `GET /pods`, the same way.
pub struct RecentPods(Store<PodRecord>);

impl RecentPods {
    pub fn new(capacity: usize) -> Self {
        Self(Store::new(capacity))
    }

    pub fn capacity(&self) -> usize {
        self.0.capacity
    }

    /// Keeps a copy of `record`, dropping the oldest when full; one whose `ts` is not RFC 3339
    /// (which no filter would match) is not held.
    pub fn push(&self, record: &PodRecord) {
        let Ok(at) = DateTime::parse_from_rfc3339(&record.ts) else {
            log::error!("recent pods: cannot filter a pod record with ts {:?}", record.ts);
            return;
        };
        self.0.push(at.to_utc(), Arc::new(record.clone()));
    }

    /// At most `limit` pod records `filter` matches (its time, names and outcome; a verdict
    /// matches none: pods have none), newest first.
    pub fn query(&self, filter: &Filter, limit: usize) -> Vec<Arc<PodRecord>> {
        self.0.query(filter, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pids(records: &[Arc<Record>]) -> Vec<u32> {
        records.iter().map(|r| r.pid).collect()
    }

    #[test]
    fn bounded_newest_first_filtered() {
        let recent = Recent::new(3);
        for i in 0..5 {
            let namespace = if i % 2 == 0 { "other" } else { "shop" };
            let mut r = Record::example().namespace(namespace).build();
            r.pid = i;
            recent.push(&r);
        }
        assert_eq!(recent.len(), 3);
        let all = Filter::default();
        assert_eq!(pids(&recent.query(&all, 10)), [4, 3, 2]);
        assert_eq!(pids(&recent.query(&all, 1)), [4]);
        let shop = Filter { namespace: Some("shop".into()), ..Filter::default() };
        assert_eq!(pids(&recent.query(&shop, 10)), [3]);
        let none = Filter { outcome: Some("graceful".into()), ..Filter::default() };
        assert!(recent.query(&none, 10).is_empty());
    }

    #[test]
    fn holds_the_record_as_given() {
        let recent = Recent::new(1);
        let r = Record::example().prestop(28.0, true).build();
        recent.push(&r);
        assert_eq!(*recent.query(&Filter::default(), 1)[0], r);
    }

    #[test]
    fn a_record_the_filters_cannot_read_is_not_held() {
        let recent = Recent::new(1);
        let mut r = Record::example().build();
        r.ts = "yesterday".into();
        recent.push(&r);
        assert!(recent.is_empty());
    }

    /// Every combination of these records and filters.
    fn filters() -> Vec<Filter> {
        let t = |s: &str| crate::record::filter::parse_time(s).unwrap();
        let mut all = vec![Filter::default()];
        for from in [None, Some(t("2026-08-01T11:00:00Z")), Some(t("2026-08-01T12:00:00Z"))] {
            for to in [None, Some(t("2026-08-01T12:00:00Z")), Some(t("2026-08-01T11:59:59Z"))] {
                all.push(Filter { from, to, ..Filter::default() });
            }
        }
        for name in ["shop", "web", "web-1", "other"] {
            all.push(Filter { namespace: Some(name.into()), ..Filter::default() });
            all.push(Filter { workload: Some(name.into()), ..Filter::default() });
            all.push(Filter { pod: Some(name.into()), ..Filter::default() });
        }
        for outcome in ["killed", "graceful", "oom_killed"] {
            all.push(Filter { outcome: Some(outcome.into()), ..Filter::default() });
        }
        for verdict in ["kept", "kill_early", "unknown"] {
            all.push(Filter { verdict: Some(verdict.into()), ..Filter::default() });
        }
        all.push(Filter {
            namespace: Some("shop".into()),
            outcome: Some("killed".into()),
            from: Some(t("2026-08-01T11:00:00Z")),
            ..Filter::default()
        });
        all
    }

    fn pod_record(ts: &str, outcome: &'static str, names: bool) -> PodRecord {
        let name = |s: &str| names.then(|| s.to_string());
        PodRecord {
            ts: ts.into(),
            kind: "pod",
            node: "n".into(),
            namespace: name("shop"),
            pod: name("web-1"),
            pod_uid: "uid".into(),
            workload: name("web"),
            outcome,
            first_stop_signal_at: None,
            last_exit_at: ts.into(),
            termination_seconds: Some(1.0),
            held_up_by: name("app"),
            containers: Vec::new(),
            kills: 0,
            order_kept: None,
            order_broken: None,
            sandbox_exit_at: ts.into(),
            record_id: format!("boot:pod:{ts}"),
        }
    }

    /// What the stores read of a record in memory is what the filters read of its journal line.
    #[test]
    fn the_stores_match_as_the_filters_do() {
        let records = [
            Record::example().at("2026-08-01T12:00:00Z").namespace("shop").build(),
            Record::example()
                .at("2026-08-01T11:30:00+02:00")
                .namespace("shop")
                .workload("web")
                .pod("web-1")
                .graceful(0.5)
                .build(),
            Record::example().at("2026-08-01T11:00:00Z").unnamed().oom().build(),
        ];
        let pods = [
            pod_record("2026-08-01T12:00:00Z", "killed", true),
            pod_record("2026-08-01T11:00:00.5+00:00", "graceful", false),
        ];
        for f in filters() {
            for r in &records {
                let e = r.entry().unwrap();
                assert_eq!(f.matches_names(e.at, &r.names()), f.matches(&e), "{f:?} on {r:?}");
            }
            for p in &pods {
                let at = DateTime::parse_from_rfc3339(&p.ts).unwrap().to_utc();
                assert_eq!(f.matches_names(at, &p.names()), f.matches_pod(p), "{f:?} on {p:?}");
            }
        }
    }

    #[test]
    fn pods_bounded_newest_first_filtered() {
        let pods = RecentPods::new(2);
        pods.push(&pod_record("2026-08-01T10:00:00Z", "killed", true));
        pods.push(&pod_record("2026-08-01T11:00:00Z", "graceful", true));
        pods.push(&pod_record("2026-08-01T12:00:00Z", "killed", false));
        pods.push(&pod_record("yesterday", "killed", true));
        let ts = |f: &Filter| -> Vec<String> {
            pods.query(f, 10).iter().map(|p| p.ts.clone()).collect()
        };
        assert_eq!(ts(&Filter::default()), ["2026-08-01T12:00:00Z", "2026-08-01T11:00:00Z"]);
        let killed = Filter { outcome: Some("killed".into()), ..Filter::default() };
        assert_eq!(ts(&killed), ["2026-08-01T12:00:00Z"]);
        let shop = Filter { namespace: Some("shop".into()), ..Filter::default() };
        assert_eq!(ts(&shop), ["2026-08-01T11:00:00Z"]);
        let kept = Filter { verdict: Some("kept".into()), ..Filter::default() };
        assert!(pods.query(&kept, 10).is_empty(), "pods have no verdict");
    }
}
