//! Prometheus metrics. One struct owns its Registry (no global macros).
//!
//! Cardinality: container series are labelled `namespace, workload, container` (plus `outcome`
//! on the counter), pod series `namespace, workload`. `workload` is the pod's owner, from its
//! sandbox's labels or its name's shape (`metadata::workload::resolve`), never the pod name
//! itself, so series do not grow with pod churn: a Deployment rolled a thousand times is still
//! one workload, a bare pod has none (the empty string, as every unknown name). What churn is
//! left (a namespace per CI run) is bounded by [`series`]: at most [`series::MAX_SERIES`] label
//! sets per family, the rest folded into `_overflow` and counted in
//! `observer_metric_series_overflow_total{family}`, and a label set idle for
//! [`series::IDLE_AFTER`] removed ([`Metrics::expire`]).

use std::{
    sync::{Mutex, MutexGuard},
    time::Instant,
};

use prometheus::{
    core::Collector, Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use observer_ebpf::Counter;

use super::series::{self, Limits, Series};
use crate::{
    correlate::{self, Outcome},
    kernel::loader::{self, Meaning},
    metadata::Metadata,
    record::Record,
    verdict::Cause,
};

/// Suited to grace periods: 50 ms .. 120 s, with 2 (the kubelet floor), 5, 10 and 30 (the
/// default grace period) among them.
pub const TERMINATION_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 31.0, 45.0, 60.0, 90.0, 120.0,
];

/// Suited to endpoint propagation (the stop signal -> the last new connection): a healthy
/// cluster's proxies at 1 and 2 (kube-proxy's 1 s minimum sync period), a busy control plane
/// or an external load balancer's deregistration at 5 .. 60.
pub const CONNECTION_BUCKETS: &[f64] =
    &[0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0];

const CONTAINER_LABELS: &[&str] = &["namespace", "workload", "container"];

/// The families whose label sets name containers and pods: bounded by [`series`]. The other
/// families' labels are enumerations (a probe, a stage, a reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Terminations,
    TermToExit,
    TermToKill,
    StopSignalIgnored,
    PrestopOverruns,
    PrestopDuration,
    Verdicts,
    StopRepeats,
    StuckReported,
    StuckNow,
    LastConnection,
    ConnectionsAfterStop,
    ConnectionsCut,
    TrafficAtExit,
    PodTermination,
    PodTerminations,
}

impl Family {
    const ALL: [Family; 16] = [
        Family::Terminations,
        Family::TermToExit,
        Family::TermToKill,
        Family::StopSignalIgnored,
        Family::PrestopOverruns,
        Family::PrestopDuration,
        Family::Verdicts,
        Family::StopRepeats,
        Family::StuckReported,
        Family::StuckNow,
        Family::LastConnection,
        Family::ConnectionsAfterStop,
        Family::ConnectionsCut,
        Family::TrafficAtExit,
        Family::PodTermination,
        Family::PodTerminations,
    ];

    /// The metric's name: the `family` label of the series metrics.
    fn name(self) -> &'static str {
        match self {
            Family::Terminations => "container_terminations_total",
            Family::TermToExit => "container_termination_term_to_exit_seconds",
            Family::TermToKill => "container_termination_term_to_kill_seconds",
            Family::StopSignalIgnored => "container_termination_stop_signal_ignored_total",
            Family::PrestopOverruns => "container_termination_prestop_overruns_total",
            Family::PrestopDuration => "container_termination_prestop_duration_seconds",
            Family::Verdicts => "container_termination_verdicts_total",
            Family::StopRepeats => "container_termination_stop_signal_repeats_total",
            Family::StuckReported => "container_terminations_stuck_total",
            Family::StuckNow => "container_terminations_stuck",
            Family::LastConnection => {
                "container_termination_last_connection_after_stop_signal_seconds"
            }
            Family::ConnectionsAfterStop => {
                "container_termination_connections_after_stop_signal_total"
            }
            Family::ConnectionsCut => "container_termination_connections_cut_total",
            Family::TrafficAtExit => "container_terminations_traffic_at_exit_total",
            Family::PodTermination => "pod_termination_seconds",
            Family::PodTerminations => "pod_terminations_total",
        }
    }

    /// How many leading labels name a container (namespace, workload, container) or a pod.
    fn identity(self) -> usize {
        match self {
            Family::PodTermination | Family::PodTerminations => 2,
            _ => CONTAINER_LABELS.len(),
        }
    }
}

/// Exit -> journal: the 0.1 s linger and a tick at best, a CRI lookup's few hundred ms, the
/// hold's 9 s at worst.
pub const DELAY_BUCKETS: &[f64] =
    &[0.1, 0.125, 0.15, 0.175, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0];

pub struct Metrics {
    registry: Registry,
    pub terminations: IntCounterVec,
    pub term_to_exit: HistogramVec,
    pub term_to_kill: HistogramVec,
    pub stop_signal_ignored: IntCounterVec,
    pub prestop_overruns: IntCounterVec,
    pub prestop_duration: HistogramVec,
    pub verdicts: IntCounterVec,
    pub shortened_graces: IntCounterVec,
    pub stop_repeats: IntCounterVec,
    pub stuck_reported: IntCounterVec,
    pub stuck_now: IntGaugeVec,
    /// The journal's `traffic` ([`crate::traffic`]): the stop signal -> the last new
    /// connection, connections after the stop signal, connections the SIGKILL cut, and
    /// terminations with traffic still arriving at the exit.
    pub last_connection: HistogramVec,
    pub connections_after_stop: IntCounterVec,
    pub connections_cut: IntCounterVec,
    pub traffic_at_exit: IntCounterVec,
    pub pod_termination: HistogramVec,
    pub pod_terminations: IntCounterVec,
    pub events: IntCounterVec,
    pub lost: IntCounterVec,
    pub deduplicated: IntCounter,
    pub paths_truncated: IntCounter,
    pub self_signals: IntCounter,
    pub nested_cgroups: IntCounter,
    pub signals_to_exiting: IntCounter,
    pub unkept: IntCounter,
    pub session_repeats: IntCounter,
    /// Runs of each program the kernel skipped (`bpf_prog_info.recursion_misses`).
    pub probe_misses: IntCounterVec,
    pub recovered: IntCounter,
    pub duplicates: IntCounter,
    pub incomplete: IntCounterVec,
    pub record_delay: prometheus::Histogram,
    pub unmatched: IntCounterVec,
    pub ignored: IntCounterVec,
    pub metadata_errors: IntCounterVec,
    pub journal_records: IntCounter,
    pub journal_errors: IntCounter,
    pub open_terminations: IntGauge,
    pub watched_cgroups: IntGauge,
    /// Records waiting for the journal writer.
    pub journal_queue: IntGauge,
    /// Requests and connections the HTTP endpoint refused (`sinks::web::Rejected`).
    pub http_rejected: IntCounterVec,
    /// Label sets per bounded family ([`Family`]), and what overflowed.
    series: Mutex<Series>,
    series_held: Vec<IntGauge>,
    series_overflow: Vec<IntCounter>,
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry.register(Box::new(c.clone())).expect("metric names are unique");
    c
}

impl Metrics {
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    /// Metrics whose container and pod families hold at most `limits` (the benchmark's
    /// unbounded run is how the daemon was before the bound).
    pub fn with_limits(limits: Limits) -> Self {
        let r = Registry::new();
        let hist = |name: &str, help: &str| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(TERMINATION_BUCKETS.to_vec()),
                CONTAINER_LABELS,
            )
            .expect("valid histogram")
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter")
        };
        // A gauge, as Prometheus' `_info` convention has it (a counter needs `_total`).
        let build_info = IntGaugeVec::new(
            Opts::new("observer_build_info", "observer build; the value is always 1"),
            &["version"],
        )
        .expect("valid");
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        register(&r, build_info);
        #[cfg(target_os = "linux")]
        r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("process metrics register once");

        let held = register(&r, IntGaugeVec::new(
            Opts::new(
                "observer_metric_series",
                "Label sets a container or pod metric family holds now, by family (at most the bound, the overflow series aside)",
            ),
            &["family"],
        ).expect("valid"));
        let overflow = register(&r, counter(
            "observer_metric_series_overflow_total",
            "Observations folded into a family's _overflow series because it held its bound of label sets, by family",
            &["family"],
        ));
        let identity: Vec<usize> = Family::ALL.iter().map(|f| f.identity()).collect();
        let mut labels_outcome = CONTAINER_LABELS.to_vec();
        labels_outcome.push("outcome");
        let mut labels_verdict = CONTAINER_LABELS.to_vec();
        labels_verdict.extend(["verdict", "cause"]);
        Self {
            terminations: register(&r, counter(
                "container_terminations_total",
                "Container terminations seen by the kernel probes, by outcome (graceful, killed, killed_without_stop_signal, oom_killed)",
                &labels_outcome,
            )),
            term_to_exit: register(&r, hist(
                "container_termination_term_to_exit_seconds",
                "Stop signal to exit of the container's PID 1 (kernel clock), graceful or killed",
            )),
            term_to_kill: register(&r, hist(
                "container_termination_term_to_kill_seconds",
                "Stop signal to SIGKILL, for terminations that needed SIGKILL",
            )),
            stop_signal_ignored: register(&r, counter(
                "container_termination_stop_signal_ignored_total",
                "Stop signals the kernel dropped at the container's PID 1 (no handler in a pid namespace init, or SIG_IGN)",
                CONTAINER_LABELS,
            )),
            prestop_overruns: register(&r, counter(
                "container_termination_prestop_overruns_total",
                "preStop hooks still running when the stop signal was sent with the 2 s floor",
                CONTAINER_LABELS,
            )),
            prestop_duration: register(&r, hist(
                "container_termination_prestop_duration_seconds",
                "Duration of preStop hooks",
            )),
            verdicts: register(&r, counter(
                "container_termination_verdicts_total",
                "Terminations judged against kubelet's stop sequence: verdict kept, kill_late, kill_early, unknown or not_a_stop; cause retried_stop, prestop_outlived_budget, no_stop_signal, kubelet_floor, shortened_grace or empty",
                &labels_verdict,
            )),
            shortened_graces: register(&r, counter(
                "container_termination_shortened_graces_total",
                "kill_early terminations with a shortened grace (cause shortened_grace), by the rule of kubelet's configuration on this node that gives that grace: soft_eviction, node_shutdown, unknown (no rule of the node's gives it, or more than one: the API's grace or a probe's) or unread (kubelet's configuration could not be read)",
                &["rule"],
            )),
            stop_repeats: register(&r, counter(
                "container_termination_stop_signal_repeats_total",
                "Stop signals sent again to a container's main process after the first (a re-issued stop: kubelet or the runtime restarted mid-termination)",
                CONTAINER_LABELS,
            )),
            stuck_reported: register(&r, counter(
                "container_terminations_stuck_total",
                "Containers whose main process was still there --stuck-after its SIGKILL (reported with its task state, wchan and stack in the journal)",
                CONTAINER_LABELS,
            )),
            pod_termination: register(&r, HistogramVec::new(
                HistogramOpts::new(
                    "pod_termination_seconds",
                    "A pod's end: its first container's stop signal to its last container's exit (kernel clock), once its sandbox is gone",
                )
                .buckets(TERMINATION_BUCKETS.to_vec()),
                &["namespace", "workload"],
            ).expect("valid histogram")),
            pod_terminations: register(&r, counter(
                "pod_terminations_total",
                "Pods ended (their sandbox gone), by outcome (graceful: no container needed SIGKILL; killed) and sidecar order (kept, broken, or empty: no sidecar or roles unknown)",
                &["namespace", "workload", "outcome", "order"],
            )),
            stuck_now: register(&r, IntGaugeVec::new(
                Opts::new(
                    "container_terminations_stuck",
                    "Containers stuck now: SIGKILLed, reported stuck, and not gone yet",
                ),
                CONTAINER_LABELS,
            ).expect("valid")),
            last_connection: register(&r, HistogramVec::new(
                HistogramOpts::new(
                    "container_termination_last_connection_after_stop_signal_seconds",
                    "Stop signal to the last new connection clients made before the main process exited (kernel clock), for terminations that had one: how long new traffic still came after the stop (the endpoint removal began at the pod's deletion, before any preStop hook: its lag is this plus the hook's time)",
                )
                .buckets(CONNECTION_BUCKETS.to_vec()),
                CONTAINER_LABELS,
            ).expect("valid histogram")),
            connections_after_stop: register(&r, counter(
                "container_termination_connections_after_stop_signal_total",
                "New connections clients made after a container's stop signal until its main process exited, counted in the pod's network namespace (every container of the pod counts the pod's) or on a host-network container's listening ports",
                CONTAINER_LABELS,
            )),
            connections_cut: register(&r, counter(
                "container_termination_connections_cut_total",
                "Connections still established when a container's main process died of its SIGKILL, reset by the kill (in a pod's network namespace its outgoing connections count too)",
                CONTAINER_LABELS,
            )),
            traffic_at_exit: register(&r, counter(
                "container_terminations_traffic_at_exit_total",
                "Terminations with a new connection within 1 s of the main process's exit: traffic still arriving when the container died (the endpoint removal had not reached every client)",
                CONTAINER_LABELS,
            )),
            events: register(&r, counter(
                "observer_events_total",
                "Records read from the kernel ring buffer, by probe",
                &["probe"],
            )),
            lost: register(&r, counter(
                "observer_events_lost_total",
                "Events lost, by stage: ring_buffer (kernel reserve failed), kernel_read (a probe could not read a kernel struct, so it could not decide), channel (userspace queue full), decode, processes_map_full (the kernel's map of followed processes was full), exit_unseen (a followed process ended while no probe saw it), watched_map_full, correlation_evicted, exec_session_evicted, journal_queue (the journal writer's queue was full), stdout_queue and stdout_write (--records-to-stdout copies dropped at a full queue, or not written), exec_session_programs (an exec session's programs past the kernel's 8 not reported), exec_session_programs_dropped (the same, in userspace), netns_map_full (a pod's network namespace or a host-network container's port not counted: its records have no traffic), host_ports_full (a host-network container's listening ports past those the kernel counts)",
                &["stage"],
            )),
            deduplicated: register(&r, IntCounter::new(
                "observer_kernel_signals_deduplicated_total",
                "Repeated (process, signal) pairs inside the de-duplication window, counted in the kernel and not emitted",
            ).expect("valid")),
            paths_truncated: register(
                &r,
                IntCounter::new(
                    "observer_kernel_cgroup_paths_truncated_total",
                    "cgroup paths longer than the probe's buffer, cut (the container is then named by id only)",
                )
                .expect("valid"),
            ),
            self_signals: register(
                &r,
                IntCounter::new(
                    "observer_container_self_signals_total",
                    "Stop signals and SIGKILLs sent to a container's main process from inside that container (its own processes, a preStop hook's kill): never a termination record. One that repeats a signal already reported from outside in the same de-duplication window is counted as de-duplicated instead",
                )
                .expect("valid"),
            ),
            nested_cgroups: register(
                &r,
                IntCounter::new(
                    "observer_nested_cgroups_total",
                    "cgroups below a container that has a main process (docker-in-docker, a sandbox's own cgroups): their processes belong to that container and make no container of their own",
                )
                .expect("valid"),
            ),
            signals_to_exiting: register(
                &r,
                IntCounter::new(
                    "observer_signals_to_exiting_total",
                    "stop signals and SIGKILLs to a main process already exiting, which the kernel dropped for that (a dying pid namespace init's SIGKILL to its last threads, a stop racing an exit): no record",
                )
                .expect("valid"),
            ),
            unkept: register(
                &r,
                IntCounter::new(
                    "observer_terminations_unkept_total",
                    "Terminations the kernel could not keep for the next daemon (its ENDED map was full): recorded only if the ring buffer still held them when a daemon read it",
                )
                .expect("valid"),
            ),
            session_repeats: register(
                &r,
                IntCounter::new(
                    "observer_exec_session_repeats_total",
                    "Execs of an exec session into the program it was already running (a probe's script re-exec'ing itself), counted in the kernel and not emitted",
                )
                .expect("valid"),
            ),
            probe_misses: register(
                &r,
                counter(
                    "observer_probe_missed_runs_total",
                    "Runs of a probe program the kernel skipped because another BPF program was running on that CPU (bpf_prog_info.recursion_misses, kernel 5.12+: e.g. a TCP state change in softirq nested in a tracepoint program), by program: what those runs would have seen is missing",
                    &["program"],
                ),
            ),
            recovered: register(
                &r,
                IntCounter::new(
                    "observer_terminations_recovered_total",
                    "Terminations taken from the kernel's ENDED map because this daemon never read their exit from the ring buffer: they ended while no daemon ran, a killed daemon had not recorded them yet, or the ring overflowed",
                )
                .expect("valid"),
            ),
            record_delay: register(
                &r,
                prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "observer_record_delay_seconds",
                        "Exit of a container's main process to its record in the journal (kernel clock, to the 50 ms tick): the 0.1 s linger for late events, the wait for metadata",
                    )
                    .buckets(DELAY_BUCKETS.to_vec()),
                )
                .expect("valid histogram"),
            ),
            incomplete: register(
                &r,
                counter(
                    "observer_records_incomplete_total",
                    "Records that may lack facts, by reason: events_lost (events were lost while the termination was open), kernel_summary (its signals come from the kernel's summary in the process entry: across a daemon restart, or lost)",
                    &["reason"],
                ),
            ),
            duplicates: register(
                &r,
                IntCounter::new(
                    "observer_records_duplicate_total",
                    "Records not written again because the journal already held their record_id (a termination recovered after a restart that the previous daemon had journaled)",
                )
                .expect("valid"),
            ),
            unmatched: register(
                &r,
                counter(
                    "observer_correlation_unmatched_total",
                    "Events that joined no termination, by reason: orphan_exit (a container's main process exited with no stop signal or SIGKILL: it completed or crashed on its own), late (arrived after its record closed)",
                    &["reason"],
                ),
            ),
            ignored: register(&r, counter(
                "observer_terminations_ignored_total",
                "Terminations seen and deliberately not recorded, by reason: pod_sandbox (a pod's pause container, which kubelet's StopPodSandbox SIGKILLs by design)",
                &["reason"],
            )),
            metadata_errors: register(&r, counter(
                "observer_metadata_errors_total",
                "Failures of a metadata source, by source: cri (socket missing, refused, timed out, error status), state_files (unreadable or malformed runtime config.json), kubelet_logs, annotations (a kubelet annotation that does not parse), cgroup_path (malformed kubepods path), queue (lookup queue full), capacity (metadata cache full)",
                &["source"],
            )),
            journal_records: register(&r, IntCounter::new(
                "observer_journal_records_total",
                "Records appended to the journal",
            ).expect("valid")),
            journal_errors: register(&r, IntCounter::new(
                "observer_journal_errors_total",
                "Journal writes that failed",
            ).expect("valid")),
            open_terminations: register(&r, IntGauge::new(
                "observer_open_terminations",
                "Containers signalled whose exit has not been seen yet",
            ).expect("valid")),
            watched_cgroups: register(&r, IntGauge::new(
                "observer_watched_cgroups",
                "Container cgroups known to the daemon",
            ).expect("valid")),
            journal_queue: register(&r, IntGauge::new(
                "observer_journal_queue",
                "Records waiting for the journal writer",
            ).expect("valid")),
            http_rejected: register(&r, counter(
                "observer_http_rejected_total",
                "Requests and connections the HTTP endpoint refused, by reason: unauthorized (401), busy (429: too many password checks waiting), tls_handshake (failed or timed out), tls_overflow (too many handshakes in progress)",
                &["reason"],
            )),
            series: Mutex::new(Series::new(&identity, limits)),
            series_held: Family::ALL.iter().map(|f| held.with_label_values(&[f.name()])).collect(),
            series_overflow: Family::ALL
                .iter()
                .map(|f| overflow.with_label_values(&[f.name()]))
                .collect(),
            registry: r,
        }
    }

    /// The bounded families' book (a panic elsewhere while it was held leaves it usable).
    fn book(&self) -> MutexGuard<'_, Series> {
        self.series.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Where an observation of family `f` with `labels` goes (its own series, or the family's
    /// overflow series, counted).
    fn admit<'a>(
        &self,
        book: &mut Series,
        f: Family,
        labels: &[&'a str],
        now: Instant,
    ) -> Vec<&'a str> {
        let admitted = book.admit(f as usize, labels, now);
        if admitted.overflow {
            self.series_overflow[f as usize].inc();
        } else {
            self.series_held[f as usize].set(book.len(f as usize) as i64);
        }
        admitted.labels
    }

    /// Removes the container and pod label sets not written for [`series::IDLE_AFTER`] (a
    /// stuck gauge still up is kept). For the daemon's tick: it sweeps once every
    /// [`series::SWEEP_EVERY`] and returns at once in between.
    pub fn expire(&self, now: Instant) {
        let mut book = self.book();
        let up = |f: usize, labels: &[&str]| {
            Family::ALL[f] == Family::StuckNow
                && self.stuck_now.get_metric_with_label_values(labels).is_ok_and(|g| g.get() > 0)
        };
        let gone = book.expire(now, up);
        for (f, key) in &gone {
            let labels = series::decode(key);
            // Every label set here was written with its family's labels: removal finds it.
            let _ = match Family::ALL[*f] {
                Family::Terminations => self.terminations.remove_label_values(&labels),
                Family::TermToExit => self.term_to_exit.remove_label_values(&labels),
                Family::TermToKill => self.term_to_kill.remove_label_values(&labels),
                Family::StopSignalIgnored => self.stop_signal_ignored.remove_label_values(&labels),
                Family::PrestopOverruns => self.prestop_overruns.remove_label_values(&labels),
                Family::PrestopDuration => self.prestop_duration.remove_label_values(&labels),
                Family::Verdicts => self.verdicts.remove_label_values(&labels),
                Family::StopRepeats => self.stop_repeats.remove_label_values(&labels),
                Family::StuckReported => self.stuck_reported.remove_label_values(&labels),
                Family::StuckNow => self.stuck_now.remove_label_values(&labels),
                Family::LastConnection => self.last_connection.remove_label_values(&labels),
                Family::ConnectionsAfterStop => {
                    self.connections_after_stop.remove_label_values(&labels)
                }
                Family::ConnectionsCut => self.connections_cut.remove_label_values(&labels),
                Family::TrafficAtExit => self.traffic_at_exit.remove_label_values(&labels),
                Family::PodTermination => self.pod_termination.remove_label_values(&labels),
                Family::PodTerminations => self.pod_terminations.remove_label_values(&labels),
            };
        }
        if !gone.is_empty() {
            for f in Family::ALL {
                self.series_held[f as usize].set(book.len(f as usize) as i64);
            }
        }
    }

    /// Folds one closed termination into the container metrics.
    pub fn observe(&self, record: &Record) {
        let ids = [
            record.namespace.as_deref().unwrap_or(""),
            record.workload.as_deref().unwrap_or(""),
            record.container.as_deref().unwrap_or(""),
        ];
        let now = Instant::now();
        let mut book = self.book();
        // A stuck record is a report while it lasts; its termination is counted when it goes.
        if record.outcome == Outcome::Stuck {
            let labels = self.admit(&mut book, Family::StuckReported, &ids, now);
            self.stuck_reported.with_label_values(&labels).inc();
            let labels = self.admit(&mut book, Family::StuckNow, &ids, now);
            self.stuck_now.with_label_values(&labels).inc();
            return;
        }
        // Taken back where the report added it, held or folded (nowhere: reported before
        // this daemon started).
        if let Some(labels) =
            record.stuck.as_ref().and_then(|_| book.placed(Family::StuckNow as usize, &ids))
        {
            let gauge = self.stuck_now.with_label_values(&labels);
            if gauge.get() > 0 {
                gauge.dec();
            }
        }
        let mut at = |f: Family, extra: &[&'static str]| -> Vec<&str> {
            let labels: Vec<&str> = ids.iter().copied().chain(extra.iter().copied()).collect();
            self.admit(&mut book, f, &labels, now)
        };
        let cause = record.contract.cause.map_or("", Cause::as_str);
        self.verdicts
            .with_label_values(&at(Family::Verdicts, &[record.verdict.as_str(), cause]))
            .inc();
        if let Some(by) = &record.contract.shortened_by {
            self.shortened_graces.with_label_values(&[by.rule]).inc();
        }
        if let Some(n) = record.stop_signal_repeats.as_ref().map(Vec::len) {
            self.stop_repeats.with_label_values(&at(Family::StopRepeats, &[])).inc_by(n as u64);
        }
        self.terminations
            .with_label_values(&at(Family::Terminations, &[record.outcome.as_str()]))
            .inc();
        if let Some(s) = record.term_to_exit_seconds {
            self.term_to_exit.with_label_values(&at(Family::TermToExit, &[])).observe(s);
        }
        if let Some(s) = record.term_to_kill_seconds {
            self.term_to_kill.with_label_values(&at(Family::TermToKill, &[])).observe(s);
        }
        if record.stop_signal_ignored == Some(true) {
            self.stop_signal_ignored.with_label_values(&at(Family::StopSignalIgnored, &[])).inc();
        }
        for gap in record.incomplete.iter().flatten() {
            self.incomplete.with_label_values(&[gap.as_str()]).inc();
        }
        // A series is born at the first termination whose count is known (at its value, 0
        // included), so that increase() sees the first connection after it.
        if let Some(t) = &record.traffic {
            if let Some(s) = t.last_accepted_after_stop_signal_seconds {
                self.last_connection.with_label_values(&at(Family::LastConnection, &[])).observe(s);
            }
            if let Some(n) = t.accepted_after_stop_signal {
                self.connections_after_stop
                    .with_label_values(&at(Family::ConnectionsAfterStop, &[]))
                    .inc_by(n);
            }
            if let Some(n) = t.cut_by_sigkill {
                self.connections_cut.with_label_values(&at(Family::ConnectionsCut, &[])).inc_by(n);
            }
            if let Some(arriving) = t.still_arriving_at_exit {
                let c = self.traffic_at_exit.with_label_values(&at(Family::TrafficAtExit, &[]));
                if arriving {
                    c.inc();
                }
            }
        }
        // An exec session metadata did not confirm as the hook is no preStop.
        if let Some(p) = record.prestop.as_ref().filter(|p| p.is_hook()) {
            if p.overrun {
                self.prestop_overruns.with_label_values(&at(Family::PrestopOverruns, &[])).inc();
            }
            if let Some(d) = p.duration_seconds {
                self.prestop_duration
                    .with_label_values(&at(Family::PrestopDuration, &[]))
                    .observe(d);
            }
        }
    }

    /// Folds one pod's end into the pod metrics.
    pub fn observe_pod(&self, record: &crate::pod::PodRecord) {
        let ids =
            [record.namespace.as_deref().unwrap_or(""), record.workload.as_deref().unwrap_or("")];
        let now = Instant::now();
        let mut book = self.book();
        if let Some(s) = record.termination_seconds {
            let labels = self.admit(&mut book, Family::PodTermination, &ids, now);
            self.pod_termination.with_label_values(&labels).observe(s);
        }
        let order = match record.order_kept {
            Some(true) => "kept",
            Some(false) => "broken",
            None => "",
        };
        let labels = [ids[0], ids[1], record.outcome, order];
        let labels = self.admit(&mut book, Family::PodTerminations, &labels, now);
        self.pod_terminations.with_label_values(&labels).inc();
    }

    /// Brings the kernel-side series up to the kernel's own counters (`read` is
    /// `KernelCounters::get`): each counter becomes the series its `loader::meaning` names.
    pub fn refresh_kernel(&self, read: impl Fn(Counter) -> u64) {
        let mut lost: Vec<(&str, u64)> = Vec::new();
        for c in Counter::ALL {
            let n = read(c);
            match loader::meaning(c) {
                Meaning::Lost { stage } => match lost.iter_mut().find(|(s, _)| *s == stage) {
                    Some((_, total)) => *total += n,
                    None => lost.push((stage, n)),
                },
                Meaning::Deduplicated => Self::set_counter(&self.deduplicated, n),
                Meaning::PathTruncated => Self::set_counter(&self.paths_truncated, n),
                Meaning::SelfSignal => Self::set_counter(&self.self_signals, n),
                Meaning::Nested => Self::set_counter(&self.nested_cgroups, n),
                Meaning::TargetExiting => Self::set_counter(&self.signals_to_exiting, n),
                Meaning::Unkept => Self::set_counter(&self.unkept, n),
                Meaning::SessionExecRepeated => Self::set_counter(&self.session_repeats, n),
            }
        }
        for (stage, n) in lost {
            Self::set_counter(&self.lost.with_label_values(&[stage]), n);
        }
    }

    /// Brings `observer_probe_missed_runs_total` up to each program's skipped runs as the
    /// kernel counts them (`kernel::misses::Misses::read`: absolute, per program name).
    pub fn refresh_probe_misses(&self, misses: &[(&'static str, u64)]) {
        for (program, n) in misses {
            Self::set_counter(&self.probe_misses.with_label_values(&[program]), *n);
        }
    }

    /// Brings the pipeline's series up to its correlator's and metadata's counts.
    pub fn refresh_pipeline(
        &self,
        stats: &correlate::Stats,
        open_terminations: usize,
        metadata: &Metadata,
        pods: &crate::pod::Pods,
    ) {
        let lost = |stage: &str| self.lost.with_label_values(&[stage]);
        Self::set_counter(&lost("correlation_evicted"), stats.evicted);
        Self::set_counter(&lost("exec_session_evicted"), stats.sessions_evicted);
        Self::set_counter(&lost("exec_session_programs_dropped"), stats.session_programs_dropped);
        Self::set_counter(&lost("stop_repeat_dropped"), stats.repeats_dropped);
        Self::set_counter(&lost("pod_evicted"), pods.evicted);
        let unmatched = |reason: &str| self.unmatched.with_label_values(&[reason]);
        Self::set_counter(&unmatched("orphan_exit"), stats.orphan_exits);
        Self::set_counter(&unmatched("late"), stats.late);
        Self::set_counter(&unmatched("stop_survived"), stats.survived);
        for (source, n) in &metadata.errors {
            Self::set_counter(&self.metadata_errors.with_label_values(&[source]), *n);
        }
        self.open_terminations.set(open_terminations as i64);
        self.watched_cgroups.set(metadata.len() as i64);
    }

    /// Raises a counter to an absolute value read elsewhere (kernel counters, stats).
    /// Brings `observer_http_rejected_total` up to the endpoint's counts.
    pub fn refresh_http(&self, r: &crate::sinks::web::Rejected) {
        use std::sync::atomic::Ordering::Relaxed;
        for (reason, n) in [
            ("unauthorized", &r.unauthorized),
            ("busy", &r.busy),
            ("tls_handshake", &r.tls_handshake),
            ("tls_overflow", &r.tls_overflow),
        ] {
            Self::set_counter(&self.http_rejected.with_label_values(&[reason]), n.load(Relaxed));
        }
    }

    pub fn set_counter(counter: &IntCounter, value: u64) {
        let now = counter.get();
        if value > now {
            counter.inc_by(value - now);
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unconfirmed_exec_session_is_no_prestop_in_the_metrics() {
        let m = Metrics::new();
        let mut session = crate::record::Record::example().prestop(28.0, true).build();
        let hook = session.clone();
        if let Some(p) = session.prestop.as_mut() {
            p.kind = "session";
        }
        m.observe(&session);
        // Every series of a family, summed.
        let durations = || -> u64 {
            let f = m.prestop_duration.collect();
            f[0].get_metric().iter().map(|x| x.get_histogram().get_sample_count()).sum()
        };
        let overruns = || -> f64 {
            let f = m.prestop_overruns.collect();
            f[0].get_metric().iter().map(|x| x.get_counter().get_value()).sum()
        };
        assert_eq!((durations(), overruns()), (0, 0.0));
        m.observe(&hook);
        assert_eq!((durations(), overruns()), (1, 1.0));
    }

    #[test]
    fn every_ring_buffer_counter_is_a_ring_buffer_loss() {
        let m = Metrics::new();
        // Each counter reads as its slot number + 1: every one is distinct and non-zero.
        m.refresh_kernel(|c| c as u64 + 1);
        let ring: u64 = ring_counters().iter().map(|&c| c as u64 + 1).sum();
        let lost = |stage: &str| m.lost.with_label_values(&[stage]).get();
        assert_eq!(lost("ring_buffer"), ring);
        assert_eq!(lost("kernel_read"), Counter::KernelReadFailed as u64 + 1);
        assert_eq!(lost("processes_map_full"), Counter::ProcessesFull as u64 + 1);
        assert_eq!(lost("watched_map_full"), Counter::WatchedInsertFailed as u64 + 1);
        assert_eq!(m.deduplicated.get(), Counter::SignalDeduplicated as u64 + 1);
        assert_eq!(m.paths_truncated.get(), Counter::CgroupPathTruncated as u64 + 1);
        // Counters only ever rise: a smaller reading (a reloaded map) leaves them.
        m.refresh_kernel(|_| 0);
        assert_eq!(lost("ring_buffer"), ring);
    }

    /// The distinct ring-buffer counters, from the record kinds (cgroup mkdir/rmdir share one).
    fn ring_counters() -> Vec<Counter> {
        let mut v: Vec<Counter> = Vec::new();
        for k in observer_ebpf::EventKind::ALL {
            if !v.contains(&k.ring_full()) {
                v.push(k.ring_full());
            }
        }
        v
    }

    #[test]
    fn dropped_repeats_and_evicted_pods_are_counted_losses() {
        let m = Metrics::new();
        let stats = correlate::Stats { repeats_dropped: 3, ..Default::default() };
        let mut pods = crate::pod::Pods::new();
        pods.evicted = 2;
        m.refresh_pipeline(&stats, 0, &Metadata::new(), &pods);
        let lost = |stage: &str| m.lost.with_label_values(&[stage]).get();
        assert_eq!((lost("stop_repeat_dropped"), lost("pod_evicted")), (3, 2));
    }

    /// Label sets of family `f` served now: (its own, its overflow sets).
    fn served(m: &Metrics, f: Family) -> (usize, usize) {
        let families = m.registry.gather();
        let Some(family) = families.iter().find(|x| x.name() == f.name()) else { return (0, 0) };
        let overflow = |x: &&prometheus::proto::Metric| {
            x.get_label().iter().any(|l| l.value() == series::OVERFLOW)
        };
        let folded = family.get_metric().iter().filter(overflow).count();
        (family.get_metric().len() - folded, folded)
    }

    #[test]
    fn a_hundred_thousand_bare_pods_stay_within_the_bound() {
        const PODS: usize = 100_000;
        let m = Metrics::new();
        let base = crate::record::Record::example().build();
        for i in 0..PODS {
            // Each pod its own workload: how a bare pod's name was taken for one.
            let mut r = base.clone();
            r.pod = Some(format!("ci-run-{i}"));
            r.workload = r.pod.clone();
            m.observe(&r);
        }
        // The example is a SIGKILL after an ignored SIGTERM: these families get one label set
        // per record, the others none.
        let written = [
            Family::Terminations,
            Family::TermToExit,
            Family::TermToKill,
            Family::StopSignalIgnored,
            Family::Verdicts,
        ];
        for f in Family::ALL {
            let (held, folded) = served(&m, f);
            let overflowed = m.series_overflow[f as usize].get();
            if written.contains(&f) {
                assert_eq!((held, folded), (series::MAX_SERIES, 1), "{}", f.name());
                assert_eq!(overflowed, (PODS - series::MAX_SERIES) as u64, "{}", f.name());
                assert_eq!(m.series_held[f as usize].get(), series::MAX_SERIES as i64);
            } else {
                assert_eq!((held, folded, overflowed), (0, 0, 0), "{}", f.name());
            }
        }
        // Every observation is in a series: the held ones and the overflow add up.
        let killed: u64 = m.terminations.collect()[0]
            .get_metric()
            .iter()
            .map(|x| x.get_counter().get_value() as u64)
            .sum();
        assert_eq!(killed, PODS as u64);
        // The scrape, bounded by its shape: per family, the bound's label sets and a few
        // overflow sets, a histogram's 20 lines each, lines of at most 200 bytes here; 512
        // lines for everything else.
        let lines: usize = Family::ALL
            .iter()
            .map(|f| {
                let per_set = match f {
                    Family::TermToExit
                    | Family::TermToKill
                    | Family::PrestopDuration
                    | Family::PodTermination => TERMINATION_BUCKETS.len() + 3,
                    Family::LastConnection => CONNECTION_BUCKETS.len() + 3,
                    _ => 1,
                };
                (series::MAX_SERIES + 16) * per_set + 2
            })
            .sum::<usize>()
            + 512;
        let scrape = m.render();
        assert!(scrape.lines().count() <= lines);
        assert!(scrape.len() <= lines * 200, "{} bytes", scrape.len());
    }

    #[test]
    fn idle_series_are_removed_and_a_stuck_gauge_still_up_is_kept() {
        let m = Metrics::with_limits(Limits { series: 2, idle: series::IDLE_AFTER });
        let t = Instant::now();
        let mut stuck = crate::record::Record::example().workload("hung").build();
        stuck.outcome = Outcome::Stuck;
        m.observe(&stuck);
        for w in ["a", "b", "c"] {
            m.observe(&crate::record::Record::example().workload(w).build());
        }
        assert_eq!(served(&m, Family::Terminations), (2, 1), "a and b held, c folded");
        m.expire(t);
        assert_eq!(served(&m, Family::Terminations), (2, 1), "nothing idle yet");
        m.expire(t + series::IDLE_AFTER + std::time::Duration::from_secs(1));
        assert_eq!(served(&m, Family::Terminations), (0, 0));
        assert_eq!(served(&m, Family::Verdicts), (0, 0));
        assert_eq!(m.series_held[Family::Terminations as usize].get(), 0);
        assert_eq!(served(&m, Family::StuckNow), (1, 0), "still stuck: kept");
        assert_eq!(served(&m, Family::StuckReported), (0, 0), "its counter went");
        assert!(!m.render().contains("workload=\"a\""));
        // The room is back: a new workload gets its own series.
        m.observe(&crate::record::Record::example().workload("d").build());
        assert_eq!(served(&m, Family::Terminations), (1, 0));
        assert_eq!(m.series_overflow[Family::Terminations as usize].get(), 1, "c's, once");
    }

    #[test]
    fn connections_after_the_stop_signal_and_cut_by_sigkill_are_counted_per_container() {
        let m = Metrics::new();
        let web = ["shop", "web", "app"];
        // SIGKILLed at +30 s with 4 connections open, the last of 3 new ones at +29.5 s.
        m.observe(&Record::example().traffic(3, 29.5, 4).build());
        // Drained: the last of 2 new ones at +2 s, nothing open at its exit at +6 s.
        m.observe(&Record::example().graceful(6.0).traffic(2, 2.0, 0).build());
        // Nothing came after the stop signal: its series are born, at 0.
        m.observe(&Record::example().workload("api").graceful(1.0).traffic(0, 0.0, 0).build());
        // Not counted (no network namespace learnt): no series at all.
        m.observe(&Record::example().workload("batch").build());
        assert_eq!(served(&m, Family::LastConnection), (1, 0), "only web had a last one");
        for f in [Family::ConnectionsAfterStop, Family::ConnectionsCut, Family::TrafficAtExit] {
            assert_eq!(served(&m, f), (2, 0), "web and api: {}", f.name());
        }
        assert_eq!(m.connections_after_stop.with_label_values(&web).get(), 5);
        assert_eq!(m.connections_cut.with_label_values(&web).get(), 4);
        assert_eq!(m.traffic_at_exit.with_label_values(&web).get(), 1, "the kill's, 0.5 s");
        let h = m.last_connection.with_label_values(&web);
        assert_eq!((h.get_sample_count(), h.get_sample_sum()), (2, 31.5));
        let api = ["shop", "api", "app"];
        assert_eq!(m.connections_after_stop.with_label_values(&api).get(), 0);
        assert_eq!(m.traffic_at_exit.with_label_values(&api).get(), 0);
        // A stuck report is no termination: its connections count with its later record.
        let mut stuck = Record::example().workload("hung").traffic(1, 29.9, 2).build();
        stuck.outcome = Outcome::Stuck;
        m.observe(&stuck);
        assert_eq!(served(&m, Family::ConnectionsCut), (2, 0));
    }

    #[test]
    fn probe_misses_follow_the_kernels_counts_and_only_rise() {
        let m = Metrics::new();
        m.refresh_probe_misses(&[("inet_sock_set_state", 3), ("signal_generate", 0)]);
        let misses = |p: &str| m.probe_misses.with_label_values(&[p]).get();
        assert_eq!((misses("inet_sock_set_state"), misses("signal_generate")), (3, 0));
        m.refresh_probe_misses(&[("inet_sock_set_state", 1)]);
        assert_eq!(misses("inet_sock_set_state"), 3, "a smaller reading leaves it");
        m.refresh_probe_misses(&[("inet_sock_set_state", 7)]);
        assert_eq!(misses("inet_sock_set_state"), 7);
        let scrape = m.render();
        assert!(scrape.contains("observer_probe_missed_runs_total{program=\"signal_generate\"} 0"));
    }

    #[test]
    fn a_stuck_record_is_counted_while_it_lasts_and_its_termination_once() {
        let m = Metrics::new();
        let mut stuck = crate::record::Record::example().build();
        stuck.outcome = Outcome::Stuck;
        let labels = ["shop", "web", "app"];
        m.observe(&stuck);
        assert_eq!(m.stuck_now.with_label_values(&labels).get(), 1);
        assert_eq!(m.stuck_reported.with_label_values(&labels).get(), 1);
        let verdicts = |v: &str| m.verdicts.with_label_values(&["shop", "web", "app", v, ""]).get();
        assert_eq!(verdicts("kept"), 0, "a stuck report is no termination");
        let done = crate::record::Record::example().build().with_stuck(12.0, None, "");
        m.observe(&done);
        assert_eq!(m.stuck_now.with_label_values(&labels).get(), 0);
        assert_eq!(verdicts("kept"), 1);
        let killed = m.terminations.with_label_values(&["shop", "web", "app", "killed"]).get();
        assert_eq!(killed, 1);
    }
}
