//! `observer run`: wires the tasks. Preflight, the probes (`kernel::loader::Probes`), the
//! ring-buffer reader ([`reader`]), the metadata resolver, the HTTP server, and the
//! record path (`pipeline`), driven by one select loop. Timing comes from the kernel's
//! timestamps only.

pub mod args;
pub mod ended;
pub mod netns;
pub mod reader;

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use tokio::sync::mpsc;

use crate::{
    cgroup::CgroupV2,
    check,
    clock::{monotonic_ns, WallClock},
    correlate,
    daemon::{
        args::RunArgs,
        ended::{Ended, Recovered},
    },
    events::{Event, ExecSession, Kept, Proc, ProcKey},
    existing::{self, Found, RuntimeFiles},
    kernel::{
        loader::Probes,
        pins::{PinError, Pins},
    },
    metadata::{resolver, state_files::StateFiles},
    pipeline::{Pipeline, Settings},
    sinks::{
        http::{self, Shared},
        journal::{Journal, JournalOptions, Repair},
        metrics::Metrics,
        recent::Recent,
        Outputs,
    },
};

/// Decoded events waiting for the pipeline; past this the reader counts drops.
pub const EVENT_QUEUE: usize = 65_536;
/// Container lookups waiting for the metadata task; past this they are counted and skipped.
pub const LOOKUP_QUEUE: usize = 4_096;
/// How often the programs' skipped runs are read (a syscall per program).
const MISSES_EVERY: Duration = Duration::from_secs(1);
/// How often the pins' heartbeat is renewed (`observer check` reads it).
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// How often closed records are drained and counters refreshed.
pub const TICK: Duration = Duration::from_millis(50);

pub async fn run(args: RunArgs) -> Result<()> {
    // A bad web config file is a mistake in the deployment: said before anything is attached.
    let web = args.web.load()?;
    let options = args.probes.options();
    let report = check::run(&options, false);
    if !report.passed() {
        bail!("observer cannot run on this node:\n{report}");
    }
    // One daemon per node: the pin directory and the journal are locked before anything is
    // attached, so a second `observer run` changes nothing.
    let pins = match args.pin_dir().map(|root| Pins::open(&root)) {
        None => None,
        Some(Ok(pins)) => Some(pins),
        // A node without bpffs (and no CAP_SYS_ADMIN to mount it) still gets a daemon; its
        // probes end with it, and a restart loses what happens meanwhile.
        Some(Err(e @ PinError::NoBpffs { .. })) => {
            log::warn!("{e}: running unpinned (the probes stop with this daemon)");
            None
        }
        Some(Err(e)) => return Err(e.into()),
    };
    let journal = Journal::open(
        &args.journal,
        JournalOptions { max_bytes: args.journal_max_bytes, files: args.journal_files },
    )?;
    if let Some(p) = &pins {
        if p.adopted {
            log::info!(
                "adopting the probes pinned at {} (they ran while no daemon did)",
                p.dir.display()
            );
        } else {
            log::info!("pinning the probes at {}", p.dir.display());
        }
    }
    let mut probes = Probes::start(&options, pins)?;
    let sources = args.metadata.sources();
    let v2 = CgroupV2::discover()?;
    let existing = adopt_existing(&mut probes, &v2, &options.cgroup_prefix, &sources.state_files)?;
    let kept = kept_in_flight(&probes);
    // `_ebpf` keeps this daemon's descriptors until we return; `pins` the lock.
    let Probes {
        ebpf: _ebpf,
        support,
        ring,
        counters,
        logger,
        pins,
        handover,
        ended,
        netns,
        processes,
        watched,
        misses,
        node_v4,
        node_v6,
        ..
    } = probes;
    let mut netns = netns::NetnsSweep::new(netns, processes, watched, monotonic_ns());
    // The host's namespace, through its init (the DaemonSet has the host's pid namespace).
    let mut node_addresses = crate::node::addresses::NodeAddressMaps::new(
        node_v4,
        node_v6,
        std::path::Path::new("/proc/1/net"),
    );
    node_addresses.tick(monotonic_ns());
    log::info!("sched_process_exit: {}", support.describe_exit());
    reader::spawn_logger(logger)?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    // Every privileged step is behind us (probes, pins, journal, listener): what the rest
    // needs is kept, the rest dropped on every thread.
    crate::privileges::drop_after_start(&args.privileges).context("dropping capabilities")?;
    let shared = Arc::new(Shared {
        metrics: Metrics::new(),
        healthy: std::sync::atomic::AtomicBool::new(true),
        recent: Recent::new(args.recent_terminations as usize),
        pods: crate::sinks::recent::RecentPods::new(args.recent_terminations as usize),
        last_tick_ns: std::sync::atomic::AtomicU64::new(monotonic_ns()),
        journal_stalled_since_ns: std::sync::atomic::AtomicU64::new(0),
        rejected: Default::default(),
    });
    if handover.records > 0 {
        shared.metrics.lost.with_label_values(&["handover"]).inc_by(handover.records);
    }
    if let Some(Repair::Truncated { .. }) = journal.repair {
        // A record torn by the previous run's end is a record lost.
        shared.metrics.journal_errors.inc();
    }
    let journal_path = journal.path().to_path_buf();

    // A record waits at most this long for its container's lookup: connect, list and two
    // calls, each under the CRI deadline, then the file sources.
    let hold_ns = (sources.cri_timeout * 4 + Duration::from_secs(1)).as_nanos() as u64;
    let starts = crate::node::Starts::new("/proc", sources.cri_endpoints.clone())
        .with_kubelet_config(crate::node::graces::Mounted {
            config: args.kubelet_config.clone(),
            config_dir: args.kubelet_config_dir.clone(),
        });
    let (lookups, mut resolved) = resolver::spawn(sources, LOOKUP_QUEUE);
    let node = args.node.clone().unwrap_or_else(hostname);
    let settings = Settings {
        node: node.clone(),
        hold_ns,
        stuck_after_ns: args.stuck_after.as_nanos() as u64,
    };
    // A termination the pipeline has is journaled (and synced) within this: the linger after
    // its exit, the hold for its metadata, an exit that came before its signals, a tick.
    let settle_ns =
        hold_ns + correlate::CLOSE_LINGER_NS + correlate::ORPHAN_EXIT_TTL_NS + 1_000_000_000;
    let mut ended = Ended::new(ended, settle_ns, &v2.mount, monotonic_ns());
    let outputs = Outputs::new(journal, args.records_to_stdout, shared.clone())
        .context("starting the journal's writer thread")?;
    let mut pipeline = Pipeline::new(settings, WallClock::measure(), lookups, outputs);
    pipeline.watch_node(starts);

    for (id, path) in &existing {
        pipeline.learn(*id, path);
    }
    // Terminations a previous daemon had seen begin: their records open again before the
    // ring (which may hold the same signals again: the correlator merges them) is read.
    if !kept.is_empty() {
        let sessions =
            kept.iter().filter(|e| matches!(e.first(), Some(Event::ExecSession(_)))).count();
        log::info!(
            "{} terminations in flight and {sessions} exec sessions running, from the pinned \
             probes' process entries",
            kept.len() - sessions
        );
    }
    // Every loss so far, kernel (pinned: every daemon's) and this daemon's reader: a record
    // open while it grows says so.
    let losses = || {
        let read: u64 = ["channel", "decode"]
            .iter()
            .map(|s| shared.metrics.lost.with_label_values(&[s]).get())
            .sum();
        counters.lost() + read + handover.records
    };
    pipeline.losses(losses(), monotonic_ns());
    for events in kept {
        match events.iter().find_map(|e| match e {
            Event::SignalGenerate(g) => Some(g.target_key),
            _ => None,
        }) {
            Some(key) => pipeline.ingest_kept(events, key),
            None => events.into_iter().for_each(|e| pipeline.ingest(e)),
        }
    }

    release_startup_memory();
    // The first scrape already sees what the start-up found (the tick keeps it so after).
    shared.metrics.refresh_kernel(|c| counters.get(c));
    shared.metrics.refresh_pipeline(
        pipeline.stats(),
        pipeline.open_terminations(),
        pipeline.metadata(),
        pipeline.pods(),
    );

    let (tx, mut rx) = mpsc::channel(EVENT_QUEUE);
    let reader = tokio::spawn(reader::read_ring(ring, tx, shared.clone()));
    let scheme = web.scheme();
    let server = tokio::spawn(http::serve(listener, shared.clone(), web));
    log::info!(
        "observer {} on {node}: probes attached, {} container cgroups known; metrics on {scheme}://{}/metrics, journal {}",
        env!("CARGO_PKG_VERSION"),
        pipeline.metadata().len(),
        args.listen,
        journal_path.display()
    );

    // Which records the journal's writer thread has made durable.
    let journal = pipeline.sink().journal().clone();
    let mut tick = tokio::time::interval(TICK);
    let mut heartbeat_at = std::time::Instant::now();
    let mut misses_at = std::time::Instant::now();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let m = &shared.metrics;
    let result = loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => {
                    // A container started: a pod's first can bring the node an address (a
                    // CNI bridge's), read before its probes connect.
                    if matches!(ev, Event::MainProcess(_)) {
                        node_addresses.soon();
                    }
                    read(&mut pipeline, &mut ended, ev)
                }
                None => break Err(anyhow::anyhow!("ring-buffer reader stopped")),
            },
            Some(r) = resolved.recv() => pipeline.resolved(r),
            _ = tick.tick() => {
                // Counters first: a record is never visible before the errors behind it.
                m.refresh_kernel(|c| counters.get(c));
                m.refresh_pipeline(
                    pipeline.stats(),
                    pipeline.open_terminations(),
                    pipeline.metadata(),
                    pipeline.pods(),
                );
                // Idle container and pod series go (a sweep a minute; a comparison otherwise).
                m.expire(std::time::Instant::now());
                m.refresh_http(&shared.rejected);
                let now = monotonic_ns();
                shared.last_tick_ns.store(now, Ordering::Relaxed);
                pipeline.losses(losses(), now);
                pipeline.tick(now);
                ended.handed(pipeline.take_done(), journal.queued());
                ended.durable(journal.durable());
                m.journal_queue.set(journal.pending() as i64);
                let stalled = journal.stalled_since_ns(now).unwrap_or(0);
                shared.journal_stalled_since_ns.store(stalled, Ordering::Relaxed);
                let recovered = ended.sweep(now);
                if !recovered.is_empty() {
                    log::info!(
                        "{} terminations taken from the kernel's ENDED map: the ring never \
                         brought their exit to this daemon",
                        recovered.len()
                    );
                }
                for r in recovered {
                    m.recovered.inc();
                    recover(&mut pipeline, r);
                }
                netns.tick(now);
                node_addresses.tick(now);
                if misses_at.elapsed() >= MISSES_EVERY {
                    misses_at = std::time::Instant::now();
                    m.refresh_probe_misses(&misses.read());
                }
                if heartbeat_at.elapsed() >= HEARTBEAT {
                    heartbeat_at = std::time::Instant::now();
                    if let Some(p) = &pins {
                        p.heartbeat();
                    }
                }
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
        read(&mut pipeline, &mut ended, ev);
    }
    pipeline.finish();
    // What the journal made durable the kernel need not keep for the next daemon; what a
    // hung disk kept from it stays in the kernel.
    ended.handed(pipeline.take_done(), journal.queued());
    pipeline.sink_mut().close();
    ended.durable(journal.durable());
    ended.settle_all();
    reader.abort();
    server.abort();
    match &result {
        Ok(()) => log::info!("observer stopped"),
        Err(e) => log::error!("observer stopping: {e:#}"),
    }
    result
}

/// Containers older than the daemon: the kernel saw neither their cgroups being made nor
/// their main processes' exec. Every cgroup under the prefix is watched first, so the kernel
/// learns from here on what starts in them, then each container's main process is found
/// (`existing`) and handed to the kernel where it has none. Returns the cgroups, for the
/// metadata.
fn adopt_existing(
    probes: &mut Probes,
    v2: &CgroupV2,
    prefix: &str,
    state: &StateFiles,
) -> Result<Vec<(u64, String)>> {
    let cgroups = v2.walk(prefix)?;
    for (id, path) in &cgroups {
        if let Err(e) = probes.watch_existing(*id, path, None, false) {
            log::warn!("cannot watch existing cgroup {path}: {e}");
        }
    }
    let files = RuntimeFiles::new(state);
    let found = existing::choose(&existing::read_cgroups(v2, &cgroups), |id| files.init_of(id));
    let (mut adopted, mut confirmed) = (0, 0);
    for e in &found {
        let Some((key, how)) = e.main else { continue };
        let by_runtime = how == Found::Runtime;
        match probes.watch_existing(
            e.cgroup_id,
            &e.path,
            Some((key.tgid, key.start_ticks)),
            by_runtime,
        ) {
            Ok(true) => {
                adopted += 1;
                confirmed += usize::from(by_runtime);
                log::debug!("main process of {}: pid {} ({how:?})", e.path, key.tgid);
            }
            Ok(false) => {}
            Err(e) => log::warn!("cannot follow pid {} as a main process: {e}", key.tgid),
        }
    }
    log::info!(
        "start-up walk: {} cgroups under {prefix}, {adopted} running main processes \
         ({confirmed} named by the runtime's state)",
        cgroups.len()
    );
    Ok(cgroups)
}

/// What the kernel keeps of processes still running, for a daemon that starts after another
/// (a fresh map has none): the stop signals and SIGKILLs of main processes (terminations not
/// yet over), and the exec sessions in containers (a preStop exec hook running across the
/// restart), with the exec time the kernel kept and their parent as /proc has it now.
fn kept_in_flight(probes: &Probes) -> Vec<Vec<Event>> {
    probes
        .processes
        .iter()
        .filter_map(Result::ok)
        .filter_map(|(tgid, p)| {
            let key = ProcKey { tgid, start_ticks: p.start_ticks };
            let now = existing::proc_of(tgid).filter(|x| x.key == key);
            match p.role {
                observer_ebpf::role::MAIN => {
                    let comm = now.map(|x| x.comm).unwrap_or_default();
                    let kept = Kept::from_facts(key, &comm, p.cgroup_id, p.flags, &p.stop, &p.kill);
                    (!kept.is_empty()).then(|| kept.events())
                }
                observer_ebpf::role::SESSION if p.exec_ns != 0 => {
                    let x = now?;
                    let parent = existing::proc_of(x.ppid);
                    Some(vec![Event::ExecSession(ExecSession {
                        ktime_ns: p.exec_ns,
                        session: Proc { pid: tgid, comm: x.comm },
                        parent: Proc {
                            pid: x.ppid,
                            comm: parent.map(|p| p.comm).unwrap_or_default(),
                        },
                        cgroup_id: p.cgroup_id,
                    })])
                }
                _ => None,
            }
        })
        .collect()
}

/// An event read from the ring. A termination's exit is noted in `ended`; if its container is
/// unknown here (learnt by a daemon killed since, and gone before this one's walk), it is
/// learnt from the path the kernel kept with the termination, as for a recovered one.
fn read<S: crate::pipeline::Sink>(pipeline: &mut Pipeline<S>, ended: &mut Ended, ev: Event) {
    let cgroup = match &ev {
        Event::ProcessExit(x) => Some(x.cgroup_id),
        _ => None,
    };
    let key = ended.saw(&ev, monotonic_ns());
    match (key, cgroup) {
        (Some(key), Some(id)) if pipeline.metadata().identity(id).is_none() => {
            let (cgroup, cgroup_gone) = match ended.cgroup_of(key) {
                Some((c, gone)) => (Some(c), gone),
                None => (None, false),
            };
            recover(pipeline, Recovered { exit: ev, cgroup, cgroup_gone });
        }
        _ => pipeline.ingest(ev),
    }
}

/// A termination the ring never delivered, from the kernel's `ENDED`: its container is learnt
/// from the kept path (unless known), its exit ingested with the signals it carries, and a
/// cgroup removed meanwhile forgotten after it, as its rmdir would have been.
fn recover<S: crate::pipeline::Sink>(pipeline: &mut Pipeline<S>, r: Recovered) {
    if let Some(c) = &r.cgroup {
        if pipeline.metadata().identity(c.id).is_none() {
            pipeline.learn(c.id, &c.path);
        }
    }
    pipeline.ingest(r.exit);
    if let Some(c) = r.cgroup.filter(|_| r.cgroup_gone) {
        pipeline.ingest(Event::CgroupRmdir(c));
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Blocking threads of the runtime at most: the metadata lookups' file reads (runtime state,
/// kubelet's log layout) are short, and tokio's default (512) let a start with thousands of
/// containers to look up make a thread per lookup, each with its malloc arena.
const BLOCKING_THREADS: usize = 4;

/// The daemon's runtime: a worker per core, [`BLOCKING_THREADS`] for blocking file reads.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
}

/// Hands the start-up's freed heap back to the kernel. Parsing the kernel's BTF (about 5 MiB
/// of types, read for the offsets and again by aya for the programs' attach targets) leaves
/// some 20 MiB of freed heap that glibc keeps mapped below live allocations; `malloc_trim`
/// releases its free pages (MADV_DONTNEED), which is most of the daemon's idle RSS.
fn release_startup_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of glibc's own heap to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}
