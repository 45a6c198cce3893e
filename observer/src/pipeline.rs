//! The record path of `observer run`: kernel events in, one record per container termination
//! out.
//!
//! ```text
//! ingest(event) ─► correlator ─► closed termination ─► waits for its container's metadata
//!                     ▲                                   (at most `hold_ns`, one retry)
//! resolved(answer) ───┘ metadata ◄── lookups to the resolver task
//! tick(now) ─► ready terminations ─► Record ─► Sink::emit (journal, metrics, recent store)
//! ```
//!
//! Everything here is synchronous and driven by the daemon's select loop (`daemon.rs`); the
//! tests drive it with synthetic events and a real lookup channel. The wait for metadata lives
//! here in one place: the deadline and the waiting list with the [`Metadata`] they wait on.

use tokio::sync::mpsc;

use crate::{
    clock::WallClock,
    correlate::{self, Correlator, Gap, StuckSeen, Termination},
    events::{Event, Origin, ProcKey, SignalGenerate},
    metadata::{
        resolver::{Lookup, Resolved},
        Metadata,
    },
    record::Record,
    stuck,
};

/// Where records go. The daemon's is [`crate::sinks::Outputs`]: journal, metrics, recent store.
pub trait Sink {
    /// One finished record, `delay_ns` after its exit (kernel clock: the linger, the wait for
    /// metadata, the tick).
    fn emit(&mut self, record: &Record, delay_ns: u64);
    /// A termination seen and deliberately not recorded (`reason` is a metric label).
    fn ignored(&mut self, reason: &'static str);
    /// A pod's end, once its sandbox is gone ([`crate::pod`]).
    fn pod(&mut self, record: &crate::pod::PodRecord);
    /// End of a tick: make what was emitted durable.
    fn flush(&mut self);
}

/// What every record of this daemon carries, and how long a record waits for metadata.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Node name written in every record.
    pub node: String,
    /// A closed termination waits at most this long (kernel ns) for its container's lookup.
    pub hold_ns: u64,
    /// A SIGKILLed main process still there this long after is reported stuck.
    pub stuck_after_ns: u64,
}

/// The correlator, the metadata it waits on, and the terminations waiting.
pub struct Pipeline<S: Sink> {
    settings: Settings,
    clock: WallClock,
    /// Where [`stuck::inspect`] reads.
    roots: stuck::Roots,
    /// When kubelet and the runtime started: a restart during a stop is a retried stop's
    /// evidence ([`crate::verdict`]).
    starts: crate::node::Starts,
    correlator: Correlator,
    /// Pods whose containers ended, waiting for their sandbox's end.
    pods: crate::pod::Pods,
    metadata: Metadata,
    lookups: mpsc::Sender<Lookup>,
    /// Closed terminations waiting for their container's metadata, with their deadline.
    waiting: Vec<(Termination, u64)>,
    /// Terminations handed to the sink (recorded, or deliberately not) since
    /// [`Pipeline::take_done`].
    done: Vec<ProcKey>,
    sink: S,
}

impl<S: Sink> Pipeline<S> {
    pub fn new(
        settings: Settings,
        clock: WallClock,
        lookups: mpsc::Sender<Lookup>,
        sink: S,
    ) -> Self {
        Self {
            settings,
            clock,
            roots: stuck::Roots::default(),
            starts: crate::node::Starts::none(),
            correlator: Correlator::new(),
            pods: crate::pod::Pods::new(),
            metadata: Metadata::new(),
            lookups,
            waiting: Vec::new(),
            done: Vec::new(),
            sink,
        }
    }

    /// Watches kubelet's and the runtime's starts (none are watched until this is called).
    pub fn watch_node(&mut self, starts: crate::node::Starts) {
        self.starts = starts;
    }

    /// A container cgroup that existed before the probes attached (the start-up walk).
    pub fn learn(&mut self, cgroup_id: u64, path: &str) {
        if let Some(lookup) = self.metadata.learn(cgroup_id, path) {
            self.request(lookup);
        }
    }

    /// One decoded kernel event.
    pub fn ingest(&mut self, mut ev: Event) {
        match &mut ev {
            Event::CgroupMkdir(c) => return self.learn(c.id, &c.path),
            Event::CgroupRmdir(c) => {
                // The correlator first: a record waiting for this container's exit closes
                // now, while its metadata is still kept.
                let id = c.id;
                self.correlator.ingest(&ev);
                return self.metadata.forget(id);
            }
            Event::SignalGenerate(g) => match self.origin(g) {
                Some(from) => g.sender.from = from,
                None => return self.sink.ignored("self_signal"),
            },
            // An exit whose signals this daemon never read (it started since, or their events
            // were lost): the kernel kept them in the process's entry, and its exit carries
            // them. A record already open may lack one: a stop signal the previous daemon read
            // before it was killed, with the SIGKILL read by this one. What it lacks comes from
            // the kernel (a copy of what it has merges into the same record).
            Event::ProcessExit(x) if x.main && !x.kept.is_empty() => {
                let (stop, kill) = self.correlator.has_signals(x.key);
                let lacks = !self.correlator.is_open(x.key)
                    || (x.kept.stop.is_some() && !stop)
                    || (x.kept.kill.is_some() && !kill);
                if lacks {
                    self.correlator.stats.kept_used += 1;
                    let key = x.key;
                    self.ingest_kept(x.kept.events(), key);
                }
            }
            Event::MainProcess(m) => {
                log::debug!(
                    "cgroup {}: main process {} ({}), started by {} ({})",
                    m.cgroup_id,
                    m.main.pid,
                    m.main.comm,
                    m.parent.pid,
                    m.parent.comm
                );
            }
            _ => {}
        }
        self.correlator.ingest(&ev);
    }

    /// What the kernel kept of process `key`'s termination (its entry's summary), in place of
    /// its own events: the record it opens says so ([`Gap::KernelSummary`]).
    pub fn ingest_kept(&mut self, events: Vec<Event>, key: ProcKey) {
        for e in events {
            self.ingest(e);
        }
        self.correlator.flag(key, Gap::KernelSummary);
    }

    /// The count of events lost so far, everywhere, at kernel time `now_ns`: records whose
    /// events span a loss say so.
    pub fn losses(&mut self, total: u64, now_ns: u64) {
        self.correlator.losses(total, now_ns);
    }

    /// Where a signal came from, relative to its target's container; None when from the
    /// container itself. The kernel already drops senders in the target's own cgroup; this
    /// also catches the container's sub-cgroups (crun's `container` child, a nested
    /// runtime's), which name the same container.
    fn origin(&self, g: &SignalGenerate) -> Option<Origin> {
        if g.sender.from == Origin::Kernel {
            return Some(Origin::Kernel);
        }
        let container_of = |id| self.metadata.identity(id).and_then(|i| i.container_id.clone());
        match container_of(g.sender_cgroup_id) {
            None => Some(Origin::Host),
            Some(sender) if Some(&sender) == container_of(g.target_cgroup_id).as_ref() => None,
            Some(_) => Some(Origin::OtherContainer),
        }
    }

    /// The resolver's answer for one container.
    pub fn resolved(&mut self, r: Resolved) {
        log::debug!("cgroup {}: metadata from {:?}", r.cgroup_id, r.sources);
        self.metadata.apply(r);
    }

    /// Moves closed terminations into the wait, emits those whose metadata is in (or whose
    /// deadline passed), and flushes the sink. `now_ns` is the kernel clock.
    pub fn tick(&mut self, now_ns: u64) {
        self.clock.remeasure();
        self.starts.poll(now_ns);
        // Alive: the same process (tgid and start time) is still in /proc.
        self.correlator
            .expire(now_ns, |k| crate::existing::proc_of(k.tgid).is_some_and(|p| p.key == k));
        self.correlator.hold_exited(now_ns, |k| stuck::held(&self.roots, k));
        self.report_stuck(now_ns);
        self.flush_closed(now_ns);
        // A pod's containers' records wait for metadata at most the hold: then it is whole.
        let linger = self.settings.hold_ns.saturating_add(1_000_000_000);
        for pod in self.pods.drain(now_ns, linger, &self.settings.node, &self.clock) {
            self.sink.pod(&pod);
        }
    }

    /// Pods followed, waiting for their sandbox or its linger.
    pub fn pods(&self) -> &crate::pod::Pods {
        &self.pods
    }

    /// Writes a `stuck` record for each termination that just became stuck, with what /proc
    /// shows holds it; its ordinary record follows when it goes.
    fn report_stuck(&mut self, now_ns: u64) {
        for due in self.correlator.stuck_due(now_ns, self.settings.stuck_after_ns) {
            // The same process (pid and start time) still there, or its exit was lost: a
            // stuck report about a reused pid, or a process long gone, would be invented.
            let there = crate::existing::proc_of(due.key.tgid).is_some_and(|p| p.key == due.key);
            if !there {
                self.correlator.not_stuck(due.key);
                continue;
            }
            let identity = self.metadata.identity(due.termination.cgroup_id);
            let inspection = stuck::inspect(
                &self.roots,
                due.termination.pid,
                identity.map(|i| i.cgroup.as_str()),
                due.exited,
            );
            log::warn!(
                "{}/{} container {}: main process {} stuck {:.1} s after its SIGKILL: {}",
                identity.and_then(|i| i.namespace.as_deref()).unwrap_or("?"),
                identity.and_then(|i| i.pod.as_deref()).unwrap_or("?"),
                identity.and_then(|i| i.container.as_deref()).unwrap_or("?"),
                due.termination.pid,
                now_ns.saturating_sub(due.since_ns) as f64 / 1e9,
                inspection.look_at
            );
            let seen = StuckSeen {
                since_ns: due.since_ns,
                reported_ns: now_ns,
                inspection,
                released_ns: None,
                written: Some((self.clock.rfc3339(due.since_ns), self.clock.rfc3339(now_ns))),
            };
            self.correlator.note_stuck(due.key, seen.clone());
            let mut t = due.termination;
            t.stuck = Some(seen);
            let record =
                Record::new(&t, identity, &self.settings.node, &self.clock, self.starts.evidence());
            self.sink.emit(&record, 0);
        }
    }

    /// Terminations reported stuck whose process has not gone yet.
    pub fn stuck_terminations(&self) -> usize {
        self.correlator.stuck_len()
    }

    /// Emits what is closed at `now_ns` (see [`Pipeline::tick`]), without expiring anything.
    fn flush_closed(&mut self, now_ns: u64) {
        let deadline = now_ns.saturating_add(self.settings.hold_ns);
        self.waiting
            .extend(self.correlator.drain_closed(now_ns).into_iter().map(|t| (t, deadline)));
        let mut ready = Vec::new();
        let mut retries = Vec::new();
        let metadata = &mut self.metadata;
        self.waiting.retain(|(t, deadline)| {
            if now_ns < *deadline {
                if metadata.is_pending(t.cgroup_id) {
                    return true;
                }
                if let Some(lookup) = metadata.retry(t.cgroup_id) {
                    retries.push(lookup);
                    return true;
                }
            }
            ready.push(t.clone());
            false
        });
        for lookup in retries {
            self.request(lookup);
        }
        for t in ready {
            self.emit(&t, now_ns);
        }
        self.sink.flush();
    }

    /// Shutdown: every termination whose exit was seen is emitted now, named or not.
    pub fn finish(&mut self) {
        self.clock.remeasure();
        self.flush_closed(u64::MAX);
    }

    /// The correlator's counts of what it could not join or had to drop.
    pub fn stats(&self) -> &correlate::Stats {
        &self.correlator.stats
    }

    /// Containers signalled whose exit has not been seen yet.
    pub fn open_terminations(&self) -> usize {
        self.correlator.open_len()
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    pub fn sink(&self) -> &S {
        &self.sink
    }

    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// The main processes whose terminations went to the sink since the last call, each
    /// flushed with it ([`Sink::flush`] ends every tick): the kernel need not keep them.
    pub fn take_done(&mut self) -> Vec<ProcKey> {
        std::mem::take(&mut self.done)
    }

    fn emit(&mut self, t: &Termination, now_ns: u64) {
        self.done.push(ProcKey { tgid: t.pid, start_ticks: t.start_ticks });
        let identity = self.metadata.identity(t.cgroup_id);
        if let Some(sandbox) = identity.filter(|i| i.is_sandbox()) {
            // A pod's pause container: kubelet's StopPodSandbox SIGKILLs it by design, once
            // every container is stopped: the pod's end.
            self.pods.sandbox_gone(sandbox, t.exit.at_ns);
            self.sink.ignored("pod_sandbox");
            return;
        }
        // A stop window past kubelet's 2 s floor may be a retried stop's: look for a kubelet or
        // runtime that came back since the last poll.
        if t.term_to_kill_ns()
            .is_some_and(|w| w > crate::kubelet::MINIMUM_GRACE_PERIOD_SECONDS * 1_000_000_000)
        {
            self.starts.refresh(now_ns);
        }
        let record =
            Record::new(t, identity, &self.settings.node, &self.clock, self.starts.evidence());
        if let Some(id) = identity {
            self.pods.container(t, id, record.verdict, &self.clock);
        }
        // At shutdown (`finish`) the tick's time is no time: no delay to tell.
        let delay = if now_ns == u64::MAX { 0 } else { now_ns.saturating_sub(t.exit.at_ns) };
        self.sink.emit(&record, delay);
    }

    /// Hands a lookup to the resolver without waiting; a full queue is counted.
    fn request(&mut self, lookup: Lookup) {
        let id = lookup.cgroup_id;
        if self.lookups.try_send(lookup).is_err() {
            self.metadata.lookup_dropped(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use observer_ebpf::signal_result;

    use super::*;
    use crate::{
        events::{CgroupChange, Disposition, Proc, ProcessExit, Sender},
        metadata::annotations::Facts,
    };

    const MS: u64 = 1_000_000;
    const CGROUP: u64 = 5000;
    const CONTAINER: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const POD_UID: &str = "6e1f3a52-9c0d-4c55-8a3b-1f2e3d4c5b6a";

    /// Collects what the pipeline emits.
    #[derive(Default)]
    struct Collect {
        records: Vec<Record>,
        ignored: Vec<&'static str>,
        pods: Vec<crate::pod::PodRecord>,
        flushes: usize,
    }

    impl Sink for Collect {
        fn emit(&mut self, record: &Record, _delay_ns: u64) {
            self.records.push(record.clone());
        }
        fn ignored(&mut self, reason: &'static str) {
            self.ignored.push(reason);
        }
        fn pod(&mut self, record: &crate::pod::PodRecord) {
            self.pods.push(record.clone());
        }
        fn flush(&mut self) {
            self.flushes += 1;
        }
    }

    fn pipeline(queue: usize) -> (Pipeline<Collect>, mpsc::Receiver<Lookup>) {
        let (tx, rx) = mpsc::channel(queue);
        let settings = Settings {
            node: "node-a".into(),
            hold_ns: 1000 * MS,
            stuck_after_ns: stuck::DEFAULT_STUCK_AFTER_NS,
        };
        (Pipeline::new(settings, WallClock::measure(), tx, Collect::default()), rx)
    }

    fn mkdir(id: u64) -> Event {
        Event::CgroupMkdir(CgroupChange {
            ktime_ns: 1,
            id,
            level: 4,
            path: format!("/kubepods/besteffort/pod{POD_UID}/{CONTAINER}"),
        })
    }

    fn proc(pid: u32, comm: &str) -> Proc {
        Proc { pid, comm: comm.into() }
    }

    /// `sig` from runc to PID 100 of cgroup `cgroup`, dropped (no handler).
    fn signal(at: u64, sig: u32, pid: u32, cgroup: u64) -> Event {
        Event::SignalGenerate(SignalGenerate {
            ktime_ns: at,
            sig,
            result: signal_result::IGNORED.into(),
            target_handler: Some(Disposition::Default),
            target: proc(pid, "sleep"),
            target_key: ProcKey { tgid: pid, start_ticks: 1 },
            target_cgroup_id: cgroup,
            sender: Sender { pid: 7, comm: "runc".into(), from: Origin::Host },
            sender_cgroup_id: 1,
        })
    }

    fn term(at: u64, sig: u32) -> Event {
        signal(at, sig, 100, CGROUP)
    }

    fn exit_of(at: u64, pid: u32, cgroup: u64) -> Event {
        Event::ProcessExit(ProcessExit {
            kept: Default::default(),
            ktime_ns: at,
            key: ProcKey { tgid: pid, start_ticks: 1 },
            main: true,
            comm: "sleep".into(),
            exit_code: None,
            exit_signal: Some(9),
            cgroup_id: cgroup,
        })
    }

    fn exit(at: u64) -> Event {
        exit_of(at, 100, CGROUP)
    }

    fn named(cgroup_id: u64, container_type: &str) -> Resolved {
        Resolved {
            cgroup_id,
            facts: Facts {
                namespace: Some("shop".into()),
                pod: Some("web-7d4b9c6f8-x2k9p".into()),
                container: Some("app".into()),
                container_type: Some(container_type.into()),
                ..Default::default()
            },
            sources: vec!["cri"],
            ..Default::default()
        }
    }

    /// A killed container: stop signal, SIGKILL 2 s later, exit.
    fn killed(p: &mut Pipeline<Collect>) {
        p.ingest(term(10 * MS, 15));
        p.ingest(term(2010 * MS, 9));
        p.ingest(exit(2011 * MS));
    }

    #[test]
    fn a_record_waits_for_its_containers_metadata_and_carries_it() {
        let (mut p, mut lookups) = pipeline(16);
        p.ingest(mkdir(CGROUP));
        let lookup = lookups.try_recv().expect("a lookup for the new container");
        assert_eq!((lookup.cgroup_id, lookup.container_id.as_str()), (CGROUP, CONTAINER));
        killed(&mut p);
        p.tick(2100 * MS);
        assert!(p.sink().records.is_empty(), "waits while the lookup is pending");
        p.resolved(named(CGROUP, "container"));
        p.tick(2150 * MS);
        let r = &p.sink().records[0];
        assert_eq!(p.sink().records.len(), 1);
        assert_eq!(r.namespace.as_deref(), Some("shop"));
        assert_eq!(r.pod.as_deref(), Some("web-7d4b9c6f8-x2k9p"));
        assert_eq!(r.container.as_deref(), Some("app"));
        assert_eq!(r.node, "node-a");
        assert_eq!(r.outcome.as_str(), "killed");
        assert_eq!(p.sink().flushes, 2, "one flush per tick");
        assert_eq!(p.take_done(), [ProcKey { tgid: 100, start_ticks: 1 }]);
        assert!(p.take_done().is_empty());
    }

    /// `exit()` carrying the stop signal and SIGKILL of `killed()` as the kernel kept them.
    fn exit_with_kept() -> Event {
        let Event::ProcessExit(mut x) = exit(2011 * MS) else { unreachable!() };
        let (Event::SignalGenerate(stop), Event::SignalGenerate(kill)) =
            (term(10 * MS, 15), term(2010 * MS, 9))
        else {
            unreachable!()
        };
        x.kept = Box::new(crate::events::Kept {
            stop: Some(stop),
            stop_delivered: None,
            kill: Some(kill),
            oom: None,
            traffic: None,
        });
        Event::ProcessExit(x)
    }

    #[test]
    fn an_oom_kill_the_kernel_marked_reads_as_one_from_the_exit_alone() {
        // The OOM mark was read by a daemon gone since: the exit carries it.
        let (mut p, _lookups) = pipeline(16);
        p.ingest(mkdir(CGROUP));
        p.resolved(named(CGROUP, "container"));
        let Event::ProcessExit(mut x) = exit_with_kept() else { unreachable!() };
        x.kept.stop = None;
        let at = x.kept.kill.as_ref().unwrap().ktime_ns;
        x.kept.oom = Some(crate::events::OomVictim { ktime_ns: at, pid: 100 });
        p.ingest(Event::ProcessExit(x));
        p.tick(2200 * MS);
        assert_eq!(p.sink().records[0].outcome.as_str(), "oom_killed");
    }

    #[test]
    fn an_exit_alone_makes_the_whole_record_from_what_the_kernel_kept() {
        // The signals' own events were read by the daemon before this one (or lost).
        let (mut p, _lookups) = pipeline(16);
        p.ingest(mkdir(CGROUP));
        p.resolved(named(CGROUP, "container"));
        let x = exit_with_kept();
        p.ingest(x);
        p.tick(2200 * MS);
        let r = &p.sink().records[0];
        assert_eq!(r.outcome.as_str(), "killed");
        assert_eq!(r.stop_signal.as_deref(), Some("SIGTERM"));
        assert_eq!(r.stop_signal_ignored, Some(true));
        assert_eq!(r.sigkill_sender.as_ref().map(|s| s.comm.as_str()), Some("runc"));
        assert_eq!(r.term_to_kill_seconds, Some(2.0));
        assert_eq!(p.stats().kept_used, 1);
        // With the events read as well (the normal path), the same one record.
        let (mut q, _lookups) = pipeline(16);
        q.ingest(mkdir(CGROUP));
        q.resolved(named(CGROUP, "container"));
        q.ingest(term(10 * MS, 15));
        q.ingest(term(2010 * MS, 9));
        let x = exit_with_kept();
        q.ingest(x);
        q.tick(2200 * MS);
        assert_eq!(q.sink().records.len(), 1);
        // The same record but for the wall clock each pipeline measured for itself.
        let (mut a, b) = (q.sink().records[0].clone(), &p.sink().records[0]);
        a.ts.clone_from(&b.ts);
        a.exit_at.clone_from(&b.exit_at);
        a.stop_signal_at.clone_from(&b.stop_signal_at);
        a.sigkill_at.clone_from(&b.sigkill_at);
        // The one made from the kernel's summary says so.
        assert_eq!(b.incomplete, Some(vec![Gap::KernelSummary]));
        assert_eq!(a.incomplete, None);
        a.incomplete.clone_from(&b.incomplete);
        assert_eq!(&a, b);
        assert_eq!(q.stats().kept_used, 0);
    }

    #[test]
    fn a_stop_signal_read_by_the_daemon_before_is_taken_from_the_exit_when_its_sigkill_was_read() {
        // The previous daemon read the SIGTERM and was killed; this one read the SIGKILL and
        // then the exit, which carries the stop signal the kernel kept.
        let (mut p, _lookups) = pipeline(16);
        p.ingest(mkdir(CGROUP));
        p.resolved(named(CGROUP, "container"));
        p.ingest(term(2010 * MS, 9));
        p.ingest(exit_with_kept());
        p.tick(2200 * MS);
        let r = &p.sink().records[0];
        assert_eq!(r.outcome.as_str(), "killed");
        assert_eq!(r.stop_signal.as_deref(), Some("SIGTERM"));
        assert_eq!(r.term_to_kill_seconds, Some(2.0));
        assert_eq!(r.incomplete, Some(vec![Gap::KernelSummary]));
        assert_eq!((p.sink().records.len(), p.stats().kept_used), (1, 1));
    }

    #[test]
    fn a_record_open_while_events_were_lost_says_so_and_one_opened_after_does_not() {
        let (mut p, _lookups) = pipeline(16);
        p.ingest(mkdir(CGROUP));
        p.resolved(named(CGROUP, "container"));
        // Baseline 3 at 5 ms; two more lost between 5 and 25 ms, while the first was open.
        p.losses(3, 5 * MS);
        p.ingest(term(10 * MS, 15));
        p.losses(5, 25 * MS);
        p.ingest(exit(20 * MS));
        p.losses(5, 28 * MS);
        p.ingest(signal(30 * MS, 9, 200, CGROUP));
        p.ingest(exit_of(40 * MS, 200, CGROUP));
        p.tick(300 * MS);
        let r = &p.sink().records;
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].incomplete, Some(vec![Gap::EventsLost]));
        assert_eq!(r[1].incomplete, None);
    }

    #[test]
    fn a_record_goes_out_unnamed_when_the_lookup_never_answers() {
        let (mut p, mut lookups) = pipeline(16);
        p.ingest(mkdir(CGROUP));
        let _ = lookups.try_recv();
        killed(&mut p);
        // The record closes CLOSE_LINGER_NS after the exit, then waits up to hold_ns.
        let closed = 2011 * MS + correlate::CLOSE_LINGER_NS;
        p.tick(closed);
        p.tick(closed + 999 * MS);
        assert!(p.sink().records.is_empty(), "still inside the hold");
        p.tick(closed + 1000 * MS);
        let r = &p.sink().records[0];
        assert_eq!(r.container_id.as_deref(), Some(CONTAINER), "named from the cgroup path");
        assert_eq!(r.namespace, None);
    }

    #[test]
    fn an_unnamed_answer_is_asked_again_once_before_the_deadline() {
        let (mut p, mut lookups) = pipeline(16);
        p.ingest(mkdir(CGROUP));
        let _ = lookups.try_recv();
        p.resolved(Resolved { cgroup_id: CGROUP, ..Default::default() });
        killed(&mut p);
        p.tick(2200 * MS);
        let retry = lookups.try_recv().expect("one retry for a container still unnamed");
        assert_eq!(retry.cgroup_id, CGROUP);
        assert!(p.sink().records.is_empty());
        p.resolved(named(CGROUP, "container"));
        p.tick(2250 * MS);
        assert_eq!(p.sink().records[0].container.as_deref(), Some("app"));
        assert!(lookups.try_recv().is_err(), "no second retry");
    }

    #[test]
    fn a_pod_sandbox_is_counted_not_recorded() {
        let (mut p, _lookups) = pipeline(16);
        p.ingest(mkdir(CGROUP));
        p.resolved(named(CGROUP, "sandbox"));
        p.ingest(term(10 * MS, 9));
        p.ingest(exit(11 * MS));
        p.tick(200 * MS);
        assert!(p.sink().records.is_empty());
        assert_eq!(p.sink().ignored, vec!["pod_sandbox"]);
    }

    #[test]
    fn a_full_lookup_queue_is_counted_and_the_record_still_goes_out() {
        let (mut p, _lookups) = pipeline(1);
        p.ingest(mkdir(CGROUP));
        p.ingest(mkdir(CGROUP + 1));
        assert_eq!(p.metadata().errors.get("queue"), Some(&1));
        p.ingest(signal(10 * MS, 9, 100, CGROUP + 1));
        p.ingest(exit_of(11 * MS, 100, CGROUP + 1));
        // The retry meets the full queue too; the record goes out on the next tick, long
        // before the hold ends.
        p.tick(200 * MS);
        p.tick(250 * MS);
        assert_eq!(p.sink().records.len(), 1, "not held for lookups that were never queued");
        assert_eq!(p.metadata().errors.get("queue"), Some(&2));
    }

    #[test]
    fn shutdown_emits_every_termination_whose_exit_was_seen() {
        let (mut p, _lookups) = pipeline(16);
        p.ingest(mkdir(CGROUP));
        killed(&mut p);
        // A second container signalled but not exited stays open: nothing to write yet.
        p.ingest(signal(20 * MS, 15, 200, CGROUP));
        p.finish();
        assert_eq!(p.sink().records.len(), 1);
        assert_eq!(p.open_terminations(), 1);
    }

    #[test]
    fn a_container_whose_cgroup_is_already_gone_keeps_its_name() {
        // runc removes the container's cgroup right after PID 1 dies, before the record closes.
        let (mut p, _lookups) = pipeline(16);
        p.ingest(mkdir(CGROUP));
        p.resolved(named(CGROUP, "container"));
        killed(&mut p);
        p.ingest(Event::CgroupRmdir(CgroupChange {
            ktime_ns: 2012 * MS,
            id: CGROUP,
            level: 4,
            path: String::new(),
        }));
        p.tick(2200 * MS);
        assert_eq!(p.sink().records[0].pod.as_deref(), Some("web-7d4b9c6f8-x2k9p"));
    }

    /// `ev` (a signal or an exit of pid 100) made about process `key`.
    fn about(key: ProcKey, mut ev: Event) -> Event {
        match &mut ev {
            Event::SignalGenerate(g) => {
                g.target_key = key;
                g.target.pid = key.tgid;
            }
            Event::ProcessExit(x) => x.key = key,
            _ => {}
        }
        ev
    }

    #[test]
    fn a_stuck_sigkill_is_reported_while_stuck_and_recorded_when_it_goes() {
        // A real process stands for the stuck one: it is there, with its start time. Ended by
        // pid when the test ends, whatever fails.
        struct Sleeper(std::process::Child);
        impl Drop for Sleeper {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut child = Sleeper(std::process::Command::new("sleep").arg("1000").spawn().unwrap());
        let pid = child.0.id();
        // Wait for it to be asleep in nanosleep: /proc/<pid>/comm reads "sleep" as soon as exec
        // has begun, while the kernel may still fault the binary in (state D in elf_load, seen
        // in CI on a loaded machine).
        let asleep = || {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
            comm.trim() == "sleep" && state == Some(Some('S'))
        };
        let since = std::time::Instant::now();
        while !asleep() {
            assert!(since.elapsed().as_secs() < 30, "sleep 1000 never went to sleep");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let key = crate::existing::proc_of(pid).expect("in /proc").key;
        let (mut p, _lookups) = pipeline(16);
        p.ingest(mkdir(CGROUP));
        p.resolved(named(CGROUP, "container"));
        p.ingest(about(key, term(10 * MS, 15)));
        p.ingest(about(key, term(2010 * MS, 9)));
        let due = 2010 * MS + stuck::DEFAULT_STUCK_AFTER_NS;
        p.tick(due - MS);
        assert!(p.sink().records.is_empty());
        p.tick(due);
        p.tick(due + 500 * MS);
        assert_eq!(p.sink().records.len(), 1, "reported once");
        assert_eq!(p.stuck_terminations(), 1);
        let r = p.sink().records[0].clone();
        assert_eq!(r.outcome.as_str(), "stuck");
        assert!(r.record_id.ends_with(":stuck"), "{}", r.record_id);
        assert_eq!((r.exit_at.as_deref(), r.exit_code, r.term_to_exit_seconds), (None, None, None));
        assert_eq!(r.term_to_kill_seconds, Some(2.0));
        let s = r.stuck.as_ref().unwrap();
        assert_eq!(s.stuck_seconds, 10.0);
        let main = s.inspection.main.as_ref().expect("read from /proc");
        assert_eq!((main.pid, main.comm.as_str()), (pid, "sleep"));
        assert!(matches!(main.state.as_str(), "S" | "R"), "{main:?}");
        assert!(s.inspection.look_at.contains("with SIGKILL pending"), "{}", s.inspection.look_at);
        assert_eq!(r.kubernetes.reason, None);
        // No grace period known: the verdict cannot be judged.
        assert_eq!(r.verdict.as_str(), "unknown");
        // The exit, at last: the ordinary record, which says it was stuck.
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        p.ingest(about(key, exit(40_000 * MS)));
        p.tick(40_200 * MS);
        let done = &p.sink().records[1];
        assert_eq!(done.outcome.as_str(), "killed");
        assert_eq!(format!("{}:stuck", done.record_id), r.record_id);
        let s = done.stuck.as_ref().unwrap();
        assert!((s.stuck_seconds - 37.99).abs() < 1e-6, "{}", s.stuck_seconds);
        assert_eq!(s.reported_at, r.stuck.as_ref().unwrap().reported_at);
        assert_eq!(p.stuck_terminations(), 0);
    }

    #[test]
    fn a_sigkilled_process_gone_without_its_exit_is_not_stuck() {
        // pid 100 with start time 1 is no process on this machine: its exit is behind a
        // backlog in the ring, or lost.
        let (mut p, _lookups) = pipeline(16);
        p.ingest(mkdir(CGROUP));
        p.resolved(named(CGROUP, "container"));
        p.ingest(term(2010 * MS, 9));
        let due = 2010 * MS + stuck::DEFAULT_STUCK_AFTER_NS;
        p.tick(due);
        p.tick(due + 200 * MS);
        assert!(p.sink().records.is_empty(), "{:?}", p.sink().records);
        assert_eq!(p.stuck_terminations(), 0);
        // Its exit, read late, makes its record as usual.
        p.ingest(exit(due + 300 * MS));
        p.tick(due + 500 * MS);
        assert_eq!(p.sink().records.len(), 1);
        assert_eq!(p.sink().records[0].outcome.as_str(), "killed_without_stop_signal");
        assert_eq!(p.sink().records[0].stuck, None);
    }

    #[test]
    fn a_pod_ends_with_its_sandbox_in_one_record() {
        let (mut p, _lookups) = pipeline(16);
        p.ingest(mkdir(CGROUP));
        let mut app = named(CGROUP, "container");
        app.facts.pod_uid = Some(POD_UID.into());
        app.facts.spec_list = Some("container".into());
        p.resolved(app);
        p.ingest(mkdir(CGROUP + 1));
        let mut pause = named(CGROUP + 1, "sandbox");
        pause.facts.pod_uid = Some(POD_UID.into());
        p.resolved(pause);
        killed(&mut p);
        p.tick(2200 * MS);
        assert_eq!(p.sink().records.len(), 1);
        assert!(p.sink().pods.is_empty(), "the sandbox still runs");
        // StopPodSandbox: the pause container's SIGKILL and exit.
        p.ingest(signal(3000 * MS, 9, 300, CGROUP + 1));
        p.ingest(exit_of(3001 * MS, 300, CGROUP + 1));
        p.tick(3200 * MS);
        assert!(p.sink().pods.is_empty(), "lingers for late container records");
        p.tick(3001 * MS + 1000 * MS + 1000 * MS);
        let pod = &p.sink().pods[0];
        assert_eq!(pod.pod_uid, POD_UID);
        assert_eq!((pod.outcome, pod.kills), ("killed", 1));
        assert_eq!(pod.held_up_by.as_deref(), Some("app"));
        assert!((pod.termination_seconds.unwrap() - 2.001).abs() < 1e-9);
        assert_eq!(pod.containers.len(), 1);
        assert_eq!(pod.containers[0].role, Some("container"));
        assert_eq!(pod.order_kept, None, "no sidecar");
        assert_eq!(p.pods().len(), 0);
    }
}
