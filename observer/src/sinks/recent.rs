//! The most recent terminations, bounded in memory, for `GET /terminations`: typed records,
//! filtered as the report filters the journal ([`Record::entry`]). Older records leave memory,
//! not the journal.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use crate::{
    pod::PodRecord,
    record::{filter::Filter, Record},
};

/// At most `capacity` records, oldest dropped first.
pub struct Recent {
    /// Shared with the queries that return them: a query holds the lock only to pick.
    held: Mutex<VecDeque<Arc<Record>>>,
    capacity: usize,
}

impl Recent {
    /// Holds at most `capacity` records (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { held: Mutex::new(VecDeque::with_capacity(capacity.min(4096))), capacity }
    }

    /// The most records held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Record>>> {
        // A panic elsewhere while holding the lock leaves a valid deque: keep serving.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a copy of `record`, dropping the oldest when full.
    pub fn push(&self, record: &Record) {
        if let Err(e) = record.entry() {
            // Unreadable by the filters: a bug in the producer, not node input.
            log::error!("recent terminations: cannot filter a record: {e}");
            return;
        }
        let record = Arc::new(record.clone());
        let mut held = self.lock();
        if held.len() == self.capacity {
            held.pop_front();
        }
        held.push_back(record);
    }

    /// How many records are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// At most `limit` records that `filter` matches, newest first.
    pub fn query(&self, filter: &Filter, limit: usize) -> Vec<Arc<Record>> {
        let held = self.lock();
        held.iter()
            .rev()
            .filter(|r| r.entry().is_ok_and(|e| filter.matches(&e)))
            .take(limit)
            .cloned()
            .collect()
    }
}

/// The most recent pod records ([`PodRecord`]), for `GET /pods`, the same way.
pub struct RecentPods {
    held: Mutex<VecDeque<Arc<PodRecord>>>,
    capacity: usize,
}

impl RecentPods {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { held: Mutex::new(VecDeque::new()), capacity }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<PodRecord>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, record: &PodRecord) {
        let record = Arc::new(record.clone());
        let mut held = self.lock();
        if held.len() == self.capacity {
            held.pop_front();
        }
        held.push_back(record);
    }

    /// At most `limit` pod records `filter` matches (its time, names and outcome; a verdict
    /// matches none: pods have none), newest first.
    pub fn query(&self, filter: &Filter, limit: usize) -> Vec<Arc<PodRecord>> {
        let held = self.lock();
        held.iter().rev().filter(|p| filter.matches_pod(p)).take(limit).cloned().collect()
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
}
