//! `observer run`: preflight, probes, the ring-buffer reader, the correlation pipeline, sinks.
//!
//! Tasks: the reader drains the ring buffer into a bounded queue and never blocks (a full
//! queue is counted as loss); the pipeline owns the correlator, metadata and journal; the HTTP
//! server reads the metrics. Timing comes from the kernel's timestamps only.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use aya::maps::{MapData, RingBuf};
use observer_ebpf::{Counter, WatchedCgroup};
use prometheus::IntCounter;
use tokio::{
    io::{unix::AsyncFd, Interest},
    sync::mpsc,
};

use crate::{
    cgroup::CgroupV2,
    check,
    cli::RunArgs,
    clock::{monotonic_ns, WallClock},
    correlate::{Correlator, Termination},
    events::{self, Event},
    kernel::loader,
    metadata::{
        resolver::{self, Lookup},
        Metadata,
    },
    record::Record,
    sinks::{
        http::{self, Shared},
        journal::{Journal, JournalError, JournalOptions, Repair},
        metrics::Metrics,
        recent::Recent,
    },
};

/// Decoded events waiting for the pipeline; past this the reader counts drops.
pub const EVENT_QUEUE: usize = 65_536;
/// Container lookups waiting for the metadata task; past this they are counted and skipped.
pub const LOOKUP_QUEUE: usize = 4_096;
/// How often closed records are drained and counters refreshed.
pub const TICK: Duration = Duration::from_millis(50);

pub async fn run(args: RunArgs) -> Result<()> {
    let options = args.probes.options();
    let report = check::run(&options, false);
    if !report.passed() {
        bail!("observer cannot run on this node:\n{report}");
    }
    let loader::Loaded { mut ebpf, support } = loader::load(&options)?;
    log::info!("sched_process_exit: {}", support.describe_exit());
    match aya_log::EbpfLogger::init(&mut ebpf) {
        Ok(logger) => {
            let mut logger = readable(logger)?;
            tokio::spawn(async move {
                while let Ok(mut guard) = logger.readable_mut().await {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            });
        }
        Err(e) => log::warn!("eBPF log forwarding unavailable: {e}"),
    }
    loader::attach(&mut ebpf, &support)?;

    // Containers that existed before we attached: the kernel only saw new cgroups.
    let v2 = CgroupV2::discover()?;
    let mut watched = loader::take_watched(&mut ebpf)?;
    let sources = args.metadata.sources();
    // A record waits at most this long for its container's lookup: connect, list and two
    // calls, each under the CRI deadline, then the file sources.
    let hold_ns = (sources.cri_timeout * 4 + Duration::from_secs(1)).as_nanos() as u64;
    let (lookups, mut resolved) = resolver::spawn(sources, LOOKUP_QUEUE);
    let mut metadata = Metadata::new();
    for (id, path) in v2.walk(&options.cgroup_prefix)? {
        if let Err(e) = watched.insert(id, WatchedCgroup { since_ns: 0 }, 0) {
            log::warn!("cannot watch existing cgroup {path}: {e}");
        }
        if let Some(lookup) = metadata.learn(id, &path) {
            request(&lookups, &mut metadata, lookup);
        }
    }
    let ring = loader::take_events(&mut ebpf)?;
    let counters = loader::KernelCounters::take(&mut ebpf)?;
    let mut journal = Journal::open(
        &args.journal,
        JournalOptions { max_bytes: args.journal_max_bytes, files: args.journal_files },
    )?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let shared = Arc::new(Shared {
        metrics: Metrics::new(),
        healthy: std::sync::atomic::AtomicBool::new(true),
        recent: Recent::new(args.recent_terminations as usize),
    });
    if let Some(Repair::Truncated { .. }) = journal.repair {
        // A record torn by the previous run's end is a record lost.
        shared.metrics.journal_errors.inc();
    }
    let node = args.node.clone().unwrap_or_else(hostname);
    let clock = WallClock::measure();

    let (tx, mut rx) = mpsc::channel(EVENT_QUEUE);
    let reader = tokio::spawn(read_ring(ring, tx, shared.clone()));
    let server = tokio::spawn(http::serve(listener, shared.clone()));
    log::info!(
        "observer {} on {node}: probes attached, {} container cgroups known; metrics on http://{}/metrics, journal {}",
        env!("CARGO_PKG_VERSION"),
        metadata.len(),
        args.listen,
        journal.path().display()
    );

    let mut correlator = Correlator::new();
    let mut tick = tokio::time::interval(TICK);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let m = &shared.metrics;
    // Closed terminations waiting for their container's metadata, with a deadline.
    let mut waiting: Vec<(Termination, u64)> = Vec::new();
    // Consecutive failed journal writes (a full disk): logged at the first and every 100th.
    let mut failing = 0u64;
    let mut close = |correlator: &mut Correlator, metadata: &mut Metadata, now: u64| {
        waiting.extend(
            correlator.drain_closed(now).into_iter().map(|t| (t, now.saturating_add(hold_ns))),
        );
        let mut ready = Vec::new();
        waiting.retain_mut(|(t, deadline)| {
            if now < *deadline {
                if metadata.is_pending(t.cgroup_id) {
                    return true;
                }
                if let Some(lookup) = metadata.retry(t.cgroup_id) {
                    request(&lookups, metadata, lookup);
                    return true;
                }
            }
            ready.push(t.clone());
            false
        });
        for t in ready {
            let identity = metadata.identity(t.cgroup_id);
            if identity.is_some_and(|i| i.is_sandbox()) {
                // A pod's pause container: kubelet's StopPodSandbox SIGKILLs it by design.
                m.ignored.with_label_values(&["pod_sandbox"]).inc();
                continue;
            }
            let record = Record::new(&t, identity, &node, &clock);
            match journal.append(&record) {
                Ok(()) => {
                    m.journal_records.inc();
                    if failing > 0 {
                        log::info!("journal writable again after {failing} failed writes");
                        failing = 0;
                    }
                }
                Err(e) => {
                    m.journal_errors.inc();
                    if let JournalError::Rotate { .. } = e {
                        // Rotation failed; the record went to the current file.
                        m.journal_records.inc();
                        log::error!("{e}");
                    } else {
                        failing += 1;
                        if failing == 1 || failing.is_multiple_of(100) {
                            log::error!("{e} ({failing} in a row; the record is in /terminations and the metrics only)");
                        }
                    }
                }
            }
            shared.recent.push(&record);
            m.observe(&record);
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
        // Durable against a node crash: one fdatasync per tick, not per record.
        if let Err(e) = journal.sync() {
            m.journal_errors.inc();
            log::error!("{e}");
        }
    };
    let result = loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => handle(ev, &mut correlator, &mut metadata, &lookups),
                None => break Err(anyhow::anyhow!("ring-buffer reader stopped")),
            },
            Some(r) = resolved.recv() => {
                log::debug!("cgroup {}: metadata from {:?}", r.cgroup_id, r.sources);
                metadata.apply(r);
            }
            _ = tick.tick() => {
                // Counters first: a record is never visible before the errors behind it.
                refresh_counters(m, &counters, &correlator, &metadata);
                close(&mut correlator, &mut metadata, monotonic_ns());
                if reader.is_finished() || server.is_finished() {
                    break Err(anyhow::anyhow!("a daemon task stopped"));
                }
            }
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = sigterm.recv() => break Ok(()),
        }
    };
    shared.healthy.store(false, Ordering::Relaxed);
    // Records whose exit was seen are complete: write them before leaving.
    while let Ok(ev) = rx.try_recv() {
        handle(ev, &mut correlator, &mut metadata, &lookups);
    }
    close(&mut correlator, &mut metadata, u64::MAX);
    reader.abort();
    server.abort();
    match &result {
        Ok(()) => log::info!("observer stopped"),
        Err(e) => log::error!("observer stopping: {e:#}"),
    }
    result
}

fn handle(
    ev: Event,
    correlator: &mut Correlator,
    metadata: &mut Metadata,
    lookups: &mpsc::Sender<Lookup>,
) {
    match &ev {
        Event::CgroupMkdir(c) => {
            if let Some(lookup) = metadata.learn(c.id, &c.path) {
                request(lookups, metadata, lookup);
            }
        }
        Event::CgroupRmdir(c) => metadata.forget(c.id),
        _ => correlator.ingest(&ev),
    }
}

/// Hands a lookup to the metadata task without waiting; a full queue is counted.
fn request(lookups: &mpsc::Sender<Lookup>, metadata: &mut Metadata, lookup: Lookup) {
    let id = lookup.cgroup_id;
    if lookups.try_send(lookup).is_err() {
        metadata.lookup_dropped(id);
    }
}

fn refresh_counters(
    m: &Metrics,
    counters: &loader::KernelCounters,
    correlator: &Correlator,
    metadata: &Metadata,
) {
    let lost = |stage: &str| m.lost.with_label_values(&[stage]);
    let ring = [
        Counter::RingbufFullSignalGenerate,
        Counter::RingbufFullSignalDeliver,
        Counter::RingbufFullProcessExit,
        Counter::RingbufFullCgroup,
        Counter::RingbufFullOom,
        Counter::RingbufFullExec,
    ]
    .iter()
    .map(|&c| counters.get(c))
    .sum();
    Metrics::set_counter(&lost("ring_buffer"), ring);
    Metrics::set_counter(&lost("kernel_read"), counters.get(Counter::KernelReadFailed));
    Metrics::set_counter(&lost("tracked_map_full"), counters.get(Counter::TrackedInsertFailed));
    Metrics::set_counter(&lost("watched_map_full"), counters.get(Counter::WatchedInsertFailed));
    Metrics::set_counter(&lost("correlation_evicted"), correlator.stats.evicted);
    Metrics::set_counter(&lost("kill_expired"), correlator.stats.kill_expired);
    Metrics::set_counter(&lost("exec_session_evicted"), correlator.stats.sessions_evicted);
    Metrics::set_counter(&m.deduplicated, counters.get(Counter::SignalDeduplicated));
    Metrics::set_counter(&m.paths_truncated, counters.get(Counter::CgroupPathTruncated));
    let unmatched = |reason: &str| m.unmatched.with_label_values(&[reason]);
    Metrics::set_counter(&unmatched("orphan_exit"), correlator.stats.orphan_exits);
    Metrics::set_counter(&unmatched("late"), correlator.stats.late);
    for (source, n) in &metadata.errors {
        Metrics::set_counter(&m.metadata_errors.with_label_values(&[source]), *n);
    }
    m.open_terminations.set(correlator.open_len() as i64);
    m.watched_cgroups.set(metadata.len() as i64);
}

/// Drains the ring buffer whenever it is readable; never blocks the kernel side: a full queue
/// is counted and the record dropped.
async fn read_ring(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<Event>,
    shared: Arc<Shared>,
) -> Result<()> {
    let m = &shared.metrics;
    let per_probe: Vec<IntCounter> =
        Event::PROBES.iter().map(|p| m.events.with_label_values(&[p])).collect();
    let lost_channel = m.lost.with_label_values(&["channel"]);
    let lost_decode = m.lost.with_label_values(&["decode"]);
    let mut fd = readable(ring)?;
    loop {
        let mut guard = fd.readable_mut().await?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            match events::decode(&item) {
                Ok(ev) => {
                    per_probe[ev.probe_index()].inc();
                    if tx.try_send(ev).is_err() {
                        lost_channel.inc();
                    }
                }
                Err(e) => {
                    log::debug!("bad ring-buffer record: {e}");
                    lost_decode.inc();
                }
            }
        }
        guard.clear_ready();
    }
}

/// Registers an fd-owning aya object with tokio for readability.
fn readable<T: std::os::fd::AsRawFd>(inner: T) -> std::io::Result<AsyncFd<T>> {
    // SAFETY: `inner` owns its file descriptor (a BPF map or the aya-log ring) and keeps it
    // open for as long as the AsyncFd, which owns `inner`, lives.
    unsafe { AsyncFd::register_with_interest(inner, Interest::READABLE) }.map_err(|e| e.into())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
