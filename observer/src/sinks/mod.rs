//! Where records and counts go: Prometheus metrics, the journal (and optionally stdout), the
//! recent-terminations store, the HTTP server; [`Outputs`] is the pipeline's sink for
//! `observer run`.
pub mod http;
pub mod journal;
pub mod metrics;
pub mod recent;
pub mod series;
pub mod web;
pub mod writer;

use std::sync::Arc;

use self::{
    http::Shared,
    journal::{Journal, Recorded},
    writer::{Counters, Stdout, Writer},
};
use crate::{pipeline::Sink, pod::PodRecord, record::Record};

/// The daemon's sink: every record goes to the journal (and stdout, when asked), the metrics
/// and the recent store, and is logged. The journal is written by its own thread
/// ([`writer`]): a journal that cannot be written (a full disk) or that hangs is counted and
/// never stops the record from reaching the others.
pub struct Outputs {
    journal: Writer,
    stdout: Option<Writer>,
    /// The ids of the journal's latest records: what was found at open and what went to the
    /// journal's queue since.
    recorded: Recorded,
    shared: Arc<Shared>,
}

impl Outputs {
    /// Starts the journal's writer thread (and stdout's, when `stdout`).
    pub fn new(mut journal: Journal, stdout: bool, shared: Arc<Shared>) -> std::io::Result<Self> {
        let recorded = journal.take_recorded();
        let m = &shared.metrics;
        let journal = Writer::spawn(
            "journal",
            journal,
            Counters {
                written: m.journal_records.clone(),
                errors: m.journal_errors.clone(),
                dropped: m.lost.with_label_values(&["journal_queue"]),
            },
        )?;
        let stdout = if stdout {
            Some(Writer::spawn(
                "stdout",
                Stdout,
                Counters {
                    written: prometheus::IntCounter::new("stdout", "unregistered").expect("valid"),
                    errors: m.lost.with_label_values(&["stdout_write"]),
                    dropped: m.lost.with_label_values(&["stdout_queue"]),
                },
            )?)
        } else {
            None
        };
        Ok(Self { journal, stdout, recorded, shared })
    }

    /// The journal writer's progress: which records are durable.
    pub fn journal(&self) -> &Arc<writer::Progress> {
        self.journal.progress()
    }

    /// Shutdown: waits up to [`writer::DRAIN_TIMEOUT`] for the queued records to be written;
    /// true when the journal's all were.
    pub fn close(&mut self) -> bool {
        let done = self.journal.close(writer::DRAIN_TIMEOUT);
        if let Some(s) = &mut self.stdout {
            s.close(writer::DRAIN_TIMEOUT);
        }
        done
    }

    fn append(&mut self, record: &impl journal::Line) {
        let line = journal::line_of(record);
        let id = record.record_id();
        self.recorded.insert(id);
        if let Some(s) = &mut self.stdout {
            s.push(line.clone(), id);
        }
        self.journal.push(line, id);
    }

    /// A record the journal already holds (the same termination offered again after a
    /// restart: `daemon::ended`) is counted and goes nowhere.
    fn known(&self, record_id: &str) -> bool {
        let known = self.recorded.contains(record_id);
        if known {
            self.shared.metrics.duplicates.inc();
            log::debug!("record {record_id} is in the journal already");
        }
        known
    }
}

impl Sink for Outputs {
    /// A record the journal already holds (the same termination offered again after a
    /// restart: `daemon::ended`) is counted and goes nowhere: the journal, the metrics and the
    /// recent store each have it once.
    fn emit(&mut self, record: &Record, delay_ns: u64) {
        if self.known(&record.record_id) {
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
        if self.known(&record.record_id) {
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

    /// The journal's thread syncs after each batch it writes ([`writer`]).
    fn flush(&mut self) {}
}
