//! Writers off the pipeline's thread: the journal's `write(2)` and `fdatasync(2)` (and the
//! optional copy of each record on stdout) run on a thread of their own, fed by a bounded
//! queue, so a disk that hangs (a dying device, a frozen filesystem, an NFS server gone) or a
//! log pipeline that stops reading stdout never stalls correlation, the metrics or
//! `/terminations`.
//!
//! - **Bounded.** At most [`QUEUE`] lines wait; past that a record is dropped from this output
//!   (it still reaches the metrics and `/terminations`) and counted, never silently.
//! - **Batched.** The thread writes what is queued, then syncs once (one fdatasync per batch:
//!   per record under a trickle, amortised under a storm).
//! - **Durability known.** Every queued line gets a sequence number; [`Progress::durable`] is the
//!   last one written and synced (or given up on: a failed write is counted and not retried).
//!   The daemon lets the kernel forget a termination (`daemon::ended`) only once its record is
//!   durable, so a daemon killed with records still queued loses none: the next one has them
//!   offered again.
//! - **Stall visible.** [`Progress::busy_since_ns`] is when the write or sync in progress began
//!   (0: idle), which `/healthz` and the metrics read.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc::{self, SyncSender, TrySendError},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use prometheus::IntCounter;

use crate::clock::monotonic_ns;

use super::journal::{Journal, JournalError};

/// Lines waiting for a writer: about 6 MiB of records at their usual ~1.5 KiB, against the
/// daemon's 192 MiB memory limit; at the daemon's tick (50 ms) that is minutes of a
/// termination storm's records (the bench's worst is about 200 a second).
pub const QUEUE: usize = 4096;
/// A batch is written before the next sync after at most this many lines, so a long queue is
/// made durable in steps.
const BATCH: usize = 256;
/// A write or fdatasync in progress this long is a stalled journal, not a slow one: a loaded
/// disk's sync takes tens to hundreds of ms, a dying or frozen one never returns.
pub const STALL_NS: u64 = 5_000_000_000;
/// How long the daemon's shutdown waits for the queue to be written.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a writer's lines go.
pub trait Target: Send + 'static {
    /// Appends one line (its newline included). A `Rotate` error means the line was written
    /// and the rotation before it failed.
    fn append(&mut self, line: &[u8], record_id: &str) -> Result<(), JournalError>;
    /// Makes what was appended durable.
    fn sync(&mut self) -> Result<(), JournalError>;
}

impl Target for Journal {
    fn append(&mut self, line: &[u8], record_id: &str) -> Result<(), JournalError> {
        self.append_line(line, record_id)
    }

    fn sync(&mut self) -> Result<(), JournalError> {
        Journal::sync(self)
    }
}

/// The daemon's stdout, for clusters whose log pipeline collects the pod's log: each record as
/// its journal line. Written whole with one `write_all` on the locked handle.
pub struct Stdout;

impl Target for Stdout {
    fn append(&mut self, line: &[u8], _record_id: &str) -> Result<(), JournalError> {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        out.write_all(line)
            .and_then(|()| out.flush())
            .map_err(|source| JournalError::Write { path: "stdout".into(), source })
    }

    fn sync(&mut self) -> Result<(), JournalError> {
        Ok(())
    }
}

/// What a writer counts: lines written, lines it failed to write, lines dropped at a full queue.
#[derive(Clone)]
pub struct Counters {
    pub written: IntCounter,
    pub errors: IntCounter,
    pub dropped: IntCounter,
}

/// A writer's progress, shared with the daemon (durability) and `/healthz` (stalls).
#[derive(Debug, Default)]
pub struct Progress {
    /// Sequence number of the last line queued (the first is 1).
    queued: AtomicU64,
    /// The last line written and synced, or failed for good.
    durable: AtomicU64,
    /// CLOCK_MONOTONIC ns when the write or sync in progress began; 0 when idle.
    busy_since: AtomicU64,
}

impl Progress {
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Acquire)
    }

    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Lines queued and not yet durable.
    pub fn pending(&self) -> u64 {
        self.queued().saturating_sub(self.durable())
    }

    /// When the write or sync in progress began (CLOCK_MONOTONIC ns), if one is.
    pub fn busy_since_ns(&self) -> Option<u64> {
        Some(self.busy_since.load(Ordering::Acquire)).filter(|&t| t != 0)
    }

    /// When the write or sync in progress began, if it has taken [`STALL_NS`] by `now_ns`.
    pub fn stalled_since_ns(&self, now_ns: u64) -> Option<u64> {
        self.busy_since_ns().filter(|&t| now_ns.saturating_sub(t) >= STALL_NS)
    }
}

enum Msg {
    Line { seq: u64, line: Vec<u8>, record_id: String },
}

/// The handle the pipeline's sink holds: queue lines, read progress, close.
pub struct Writer {
    name: &'static str,
    tx: Option<SyncSender<Msg>>,
    progress: Arc<Progress>,
    dropped: IntCounter,
    /// Consecutive drops, for the log (the first, then every 1000th).
    dropping: u64,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts `target`'s thread (named `observer-<name>`).
    pub fn spawn(
        name: &'static str,
        target: impl Target,
        counters: Counters,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let progress = Arc::new(Progress::default());
        let dropped = counters.dropped.clone();
        let thread = std::thread::Builder::new().name(format!("observer-{name}")).spawn({
            let progress = progress.clone();
            move || write_loop(name, target, rx, &progress, &counters)
        })?;
        Ok(Self { name, tx: Some(tx), progress, dropped, dropping: 0, thread: Some(thread) })
    }

    /// Queues a line; false (and counted) when the queue is full or the thread has ended.
    pub fn push(&mut self, line: Vec<u8>, record_id: &str) -> bool {
        let Some(tx) = &self.tx else {
            self.dropped.inc();
            return false;
        };
        let seq = self.progress.queued() + 1;
        match tx.try_send(Msg::Line { seq, line, record_id: record_id.to_string() }) {
            Ok(()) => {
                self.progress.queued.store(seq, Ordering::Release);
                if self.dropping > 0 {
                    log::warn!(
                        "{}: writing again after {} dropped records",
                        self.name,
                        self.dropping
                    );
                    self.dropping = 0;
                }
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.inc();
                self.dropping += 1;
                if self.dropping == 1 || self.dropping.is_multiple_of(1000) {
                    log::error!(
                        "{}: {QUEUE} records waiting for a write that does not finish (a hung \
                         disk?): record {record_id} dropped from it ({} in a row; it is in \
                         /terminations and the metrics)",
                        self.name,
                        self.dropping
                    );
                }
                false
            }
        }
    }

    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// Closes the queue and waits up to `timeout` for what is queued to be written and synced.
    /// True when everything was; false leaves the thread behind (blocked in the kernel), and
    /// what it did not write unsettled for the next daemon.
    pub fn close(&mut self, timeout: Duration) -> bool {
        self.tx = None;
        let deadline = Instant::now() + timeout;
        while self.progress.pending() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let done = self.progress.pending() == 0;
        if done {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        } else {
            log::error!(
                "{}: {} records not written after {timeout:?}: left to the next daemon",
                self.name,
                self.progress.pending()
            );
        }
        done
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.tx = None;
    }
}

fn write_loop(
    name: &str,
    mut target: impl Target,
    rx: mpsc::Receiver<Msg>,
    progress: &Progress,
    counters: &Counters,
) {
    // Consecutive failed writes, for the log (the first, then every 100th).
    let mut failing = 0u64;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        progress.busy_since.store(monotonic_ns(), Ordering::Release);
        let mut last = 0;
        for Msg::Line { seq, line, record_id } in batch {
            last = seq;
            match target.append(&line, &record_id) {
                Ok(()) => {
                    counters.written.inc();
                    if failing > 0 {
                        log::info!("{name} writable again after {failing} failed writes");
                        failing = 0;
                    }
                }
                Err(e @ JournalError::Rotate { .. }) => {
                    // Rotation failed; the record went to the current file.
                    counters.written.inc();
                    counters.errors.inc();
                    log::error!("{e}");
                }
                Err(e) => {
                    counters.errors.inc();
                    failing += 1;
                    if failing == 1 || failing.is_multiple_of(100) {
                        log::error!(
                            "{e} ({failing} in a row; the record is in /terminations and the \
                             metrics only)"
                        );
                    }
                }
            }
        }
        if let Err(e) = target.sync() {
            counters.errors.inc();
            log::error!("{e}");
        }
        progress.busy_since.store(0, Ordering::Release);
        progress.durable.store(last, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target that takes `hold` before each line: a slow disk, in memory.
    struct Slow {
        lines: Arc<std::sync::Mutex<Vec<String>>>,
        hold: Arc<std::sync::Mutex<()>>,
        fail: bool,
    }

    impl Target for Slow {
        fn append(&mut self, line: &[u8], _: &str) -> Result<(), JournalError> {
            let _held = self.hold.lock().unwrap();
            if self.fail {
                return Err(JournalError::Write {
                    path: "slow".into(),
                    source: std::io::Error::from_raw_os_error(libc::ENOSPC),
                });
            }
            self.lines.lock().unwrap().push(String::from_utf8_lossy(line).into_owned());
            Ok(())
        }

        fn sync(&mut self) -> Result<(), JournalError> {
            Ok(())
        }
    }

    fn counters() -> Counters {
        let c = |n: &str| IntCounter::new(n, n).unwrap();
        Counters { written: c("w"), errors: c("e"), dropped: c("d") }
    }

    fn wait_for(mut f: impl FnMut() -> bool) {
        let since = Instant::now();
        while !f() {
            assert!(since.elapsed() < Duration::from_secs(10), "never happened");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_stalled_target_fills_the_queue_drops_are_counted_and_the_rest_is_written() {
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let hold = Arc::new(std::sync::Mutex::new(()));
        let stall = hold.lock().unwrap();
        let c = counters();
        let slow = Slow { lines: lines.clone(), hold: hold.clone(), fail: false };
        let mut w = Writer::spawn("test", slow, c.clone()).unwrap();
        // The first line is taken by the thread, which then blocks on it; QUEUE more wait.
        assert!(w.push(b"0\n".to_vec(), "0"));
        wait_for(|| w.progress().busy_since_ns().is_some());
        for i in 1..=QUEUE {
            assert!(w.push(format!("{i}\n").into_bytes(), "x"), "line {i}");
        }
        assert!(!w.push(b"over\n".to_vec(), "over"));
        assert!(!w.push(b"over\n".to_vec(), "over"));
        assert_eq!(c.dropped.get(), 2);
        assert_eq!(w.progress().queued(), QUEUE as u64 + 1);
        assert_eq!(w.progress().durable(), 0, "nothing is durable while the disk hangs");
        drop(stall);
        assert!(w.close(Duration::from_secs(10)));
        assert_eq!(w.progress().durable(), QUEUE as u64 + 1);
        assert_eq!(c.written.get(), QUEUE as u64 + 1);
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), QUEUE + 1);
        assert!(lines.iter().enumerate().all(|(i, l)| *l == format!("{i}\n")), "in order");
        assert_eq!(w.progress().busy_since_ns(), None);
    }

    #[test]
    fn a_failed_write_is_counted_and_durability_moves_on() {
        let c = counters();
        let slow = Slow { lines: Arc::default(), hold: Arc::default(), fail: true };
        let mut w = Writer::spawn("test", slow, c.clone()).unwrap();
        assert!(w.push(b"a\n".to_vec(), "a"));
        assert!(w.push(b"b\n".to_vec(), "b"));
        wait_for(|| w.progress().durable() == 2);
        assert_eq!((c.written.get(), c.errors.get(), c.dropped.get()), (0, 2, 0));
        assert!(w.close(Duration::from_secs(1)));
        assert!(!w.push(b"c\n".to_vec(), "c"), "closed: nothing more is taken");
        assert_eq!(c.dropped.get(), 1);
    }

    #[test]
    fn close_gives_up_on_a_hung_target_and_says_so() {
        let hold = Arc::new(std::sync::Mutex::new(()));
        let stall = hold.lock().unwrap();
        let slow = Slow { lines: Arc::default(), hold: hold.clone(), fail: false };
        let mut w = Writer::spawn("test", slow, counters()).unwrap();
        assert!(w.push(b"a\n".to_vec(), "a"));
        assert!(!w.close(Duration::from_millis(50)));
        assert_eq!(w.progress().pending(), 1);
        drop(stall);
        wait_for(|| w.progress().pending() == 0);
    }
}
