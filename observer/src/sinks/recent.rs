//! The most recent terminations, bounded in memory, for `GET /terminations`: each kept as its
//! journal line (so the API and the journal say the same thing) and its parsed filter keys.
//! Older records leave memory, not the journal.

use std::{collections::VecDeque, sync::Mutex};

use crate::{
    record::Record,
    report::{entry::Entry, filter::Filter},
};

struct Held {
    line: String,
    entry: Entry<'static>,
}

pub struct Recent {
    held: Mutex<VecDeque<Held>>,
    capacity: usize,
}

impl Recent {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { held: Mutex::new(VecDeque::with_capacity(capacity.min(4096))), capacity }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Held>> {
        // A panic elsewhere while holding the lock leaves a valid deque: keep serving.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, record: &Record) {
        let line = serde_json::to_string(record).expect("a Record always serializes");
        let entry = match Entry::parse(line.as_bytes()) {
            Ok(e) => e.into_owned(),
            Err(e) => {
                // The write and read sides of the schema disagree: a bug, not node input.
                log::error!("recent terminations: cannot read back a record: {e}");
                return;
            }
        };
        let mut held = self.lock();
        if held.len() == self.capacity {
            held.pop_front();
        }
        held.push_back(Held { line, entry });
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A JSON array of at most `limit` matching records, newest first.
    pub fn query(&self, filter: &Filter, limit: usize) -> String {
        let held = self.lock();
        let mut out = String::from("[");
        for h in held.iter().rev().filter(|h| filter.matches(&h.entry)).take(limit) {
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(&h.line);
        }
        out.push_str("]\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::entry::tests::record;

    fn pids(json: &str) -> Vec<u64> {
        let v: Vec<serde_json::Value> = serde_json::from_str(json).unwrap();
        v.iter().map(|r| r["pid"].as_u64().unwrap()).collect()
    }

    #[test]
    fn bounded_newest_first_filtered() {
        let recent = Recent::new(3);
        for i in 0..5 {
            let mut r = record();
            r.pid = i;
            if i % 2 == 0 {
                r.namespace = Some("other".into());
            }
            recent.push(&r);
        }
        assert_eq!(recent.len(), 3);
        let all = Filter::default();
        assert_eq!(pids(&recent.query(&all, 10)), [4, 3, 2]);
        assert_eq!(pids(&recent.query(&all, 1)), [4]);
        let shop = Filter { namespace: Some("shop".into()), ..Filter::default() };
        assert_eq!(pids(&recent.query(&shop, 10)), [3]);
        let none = Filter { outcome: Some("graceful".into()), ..Filter::default() };
        assert_eq!(recent.query(&none, 10), "[]\n");
    }

    #[test]
    fn the_api_says_what_the_journal_says() {
        let recent = Recent::new(1);
        let r = record();
        recent.push(&r);
        let served = recent.query(&Filter::default(), 1);
        assert_eq!(served, format!("[{}]\n", serde_json::to_string(&r).unwrap()));
    }
}
