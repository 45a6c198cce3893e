//! Where records and counts go: Prometheus metrics, the journal, the recent-terminations
//! store, the HTTP server; [`Outputs`] is the pipeline's sink for `observer run`.
pub mod http;
pub mod journal;
pub mod metrics;
pub mod recent;

use std::sync::Arc;

use self::{
    http::Shared,
    journal::{Journal, JournalError},
};
use crate::{pipeline::Sink, pod::PodRecord, record::Record};

/// The daemon's sink: every record goes to the journal, the metrics and the recent store,
/// and is logged. A journal that cannot be written (a full disk) is counted, logged at the
/// first failure and every 100th, and never stops the record from reaching the others.
pub struct Outputs {
    journal: Journal,
    shared: Arc<Shared>,
    /// Consecutive failed journal writes.
    failing: u64,
}

impl Outputs {
    pub fn new(journal: Journal, shared: Arc<Shared>) -> Self {
        Self { journal, shared, failing: 0 }
    }

    fn append(&mut self, record: &impl journal::Line) {
        let m = &self.shared.metrics;
        match self.journal.append(record) {
            Ok(()) => {
                m.journal_records.inc();
                if self.failing > 0 {
                    log::info!("journal writable again after {} failed writes", self.failing);
                    self.failing = 0;
                }
            }
            Err(e) => {
                m.journal_errors.inc();
                if let JournalError::Rotate { .. } = e {
                    // Rotation failed; the record went to the current file.
                    m.journal_records.inc();
                    log::error!("{e}");
                } else {
                    self.failing += 1;
                    if self.failing == 1 || self.failing.is_multiple_of(100) {
                        log::error!(
                            "{e} ({} in a row; the record is in /terminations and the metrics only)",
                            self.failing
                        );
                    }
                }
            }
        }
    }
}

impl Sink for Outputs {
    /// A record the journal already holds (the same termination offered again after a
    /// restart: `daemon::ended`) is counted and goes nowhere: the journal, the metrics and the
    /// recent store each have it once.
    fn emit(&mut self, record: &Record, delay_ns: u64) {
        if self.journal.holds(&record.record_id) {
            self.shared.metrics.duplicates.inc();
            log::debug!("record {} is in the journal already", record.record_id);
            return;
        }
        self.append(record);
        if delay_ns > 0 {
            self.shared.metrics.record_delay.observe(delay_ns as f64 / 1e9);
        }
        self.shared.recent.push(record);
        self.shared.metrics.observe(record);
        log::info!(
            "{}/{} {}: {} (stop signal {} -> exit {:?} s, SIGKILL {})",
            record.namespace.as_deref().unwrap_or("?"),
            record.pod.as_deref().unwrap_or("?"),
            record.container.as_deref().unwrap_or("?"),
            record.outcome.as_str(),
            record.stop_signal.as_deref().unwrap_or("none"),
            record.term_to_exit_seconds,
            if record.sigkill_at.is_some() { "sent" } else { "not sent" },
        );
    }

    fn ignored(&mut self, reason: &'static str) {
        self.shared.metrics.ignored.with_label_values(&[reason]).inc();
    }

    fn pod(&mut self, record: &PodRecord) {
        if self.journal.holds(&record.record_id) {
            self.shared.metrics.duplicates.inc();
            return;
        }
        self.append(record);
        self.shared.pods.push(record);
        self.shared.metrics.observe_pod(record);
        log::info!(
            "pod {}/{} ended: {} ({:?} s from the first stop signal, held up by {}, {} kill(s){})",
            record.namespace.as_deref().unwrap_or("?"),
            record.pod.as_deref().unwrap_or("?"),
            record.outcome,
            record.termination_seconds,
            record.held_up_by.as_deref().unwrap_or("?"),
            record.kills,
            if record.order_kept == Some(false) { ", sidecar order broken" } else { "" },
        );
    }

    /// Durable against a node crash: one fdatasync per tick, not per record.
    fn flush(&mut self) {
        if let Err(e) = self.journal.sync() {
            self.shared.metrics.journal_errors.inc();
            log::error!("{e}");
        }
    }
}
