//! The ring-buffer reader: drains the kernel's records into the pipeline's queue.

use std::{os::fd::AsRawFd, sync::Arc};

use aya::maps::{MapData, RingBuf};
use observer_ebpf::EventKind;
use prometheus::IntCounter;
use tokio::{
    io::{unix::AsyncFd, Interest},
    sync::mpsc,
};

use crate::{
    events::{self, Event},
    kernel::loader,
    sinks::http::Shared,
};

/// Drains the ring buffer whenever it is readable (AsyncFd: await readable, drain until empty,
/// clear readiness; no polling); never blocks the kernel side: a full queue is counted as
/// `observer_events_lost_total{stage="channel"}` and the record dropped.
pub async fn read_ring(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<Event>,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let m = &shared.metrics;
    let per_kind: Vec<IntCounter> = EventKind::ALL
        .iter()
        .map(|&k| m.events.with_label_values(&[loader::probe_label(k)]))
        .collect();
    let lost_channel = m.lost.with_label_values(&["channel"]);
    let lost_decode = m.lost.with_label_values(&["decode"]);
    let mut fd = readable(ring)?;
    loop {
        let mut guard = fd.readable_mut().await?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            match events::decode(&item) {
                Ok(ev) => {
                    if let Some(i) = EventKind::ALL.iter().position(|&k| k == ev.kind()) {
                        per_kind[i].inc();
                    }
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

/// Forwards the probes' own log records (aya-log) to the daemon's log.
pub fn spawn_logger(
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
) -> std::io::Result<()> {
    let Some(logger) = logger else { return Ok(()) };
    let mut logger = readable(logger)?;
    tokio::spawn(async move {
        while let Ok(mut guard) = logger.readable_mut().await {
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
    Ok(())
}

/// Registers an fd-owning aya object with tokio for readability.
fn readable<T: AsRawFd>(inner: T) -> std::io::Result<AsyncFd<T>> {
    // SAFETY: `inner` owns its file descriptor (a BPF map or the aya-log ring) and keeps it
    // open for as long as the AsyncFd, which owns `inner`, lives.
    unsafe { AsyncFd::register_with_interest(inner, Interest::READABLE) }.map_err(|e| e.into())
}
