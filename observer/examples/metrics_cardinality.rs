//! The daemon's metrics after 100,000 uniquely named pods each ended once: heap, RSS, scrape
//! size and time. `cargo xtask bench` runs it once per variant, each in a process of its own:
//!
//! - `unbounded`: every label set kept, each pod its own workload: the daemon before the bound
//!   (a bare pod's name was its workload, and nothing was removed);
//! - `bounded`: the same records under the daemon's bound (`sinks::series::MAX_SERIES` label
//!   sets per family, the rest folded into `_overflow`);
//! - `bare`: the same pods as the daemon names them now: a bare pod has no workload.
//!
//! Prints one JSON object. A measurement, not a test: nothing here is asserted.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering},
    time::Instant,
};

use observer::{
    clock::WallClock,
    correlate::{Exit, Kill, Outcome, StopSignal, Termination},
    events::{Disposition, Origin, Sender},
    metadata::Identity,
    record::Record,
    sinks::{
        metrics::Metrics,
        series::{Limits, IDLE_AFTER},
    },
    traffic,
};

const PODS: usize = 100_000;

/// The heap in use: what the metrics hold, apart from the allocator's own overhead.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: System's allocator, with the size of every live block counted beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// VmRSS of this process, bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()));
    kib.unwrap_or(0) * 1024
}

/// A termination as containerd ends a pod that ignores SIGTERM: SIGKILL 30 s later.
fn record() -> Record {
    let runc = |pid| Sender { pid, comm: "runc".into(), from: Origin::Host };
    let t = Termination {
        pid: 4242,
        start_ticks: 90_000,
        comm: "sleep".into(),
        cgroup_id: 7,
        stop_signal: Some(StopSignal {
            sig: 15,
            at_ns: 1_000_000_000,
            sender: runc(1),
            ignored: true,
            handler: Some(Disposition::Default),
            disposition: None,
        }),
        repeated_stops: Vec::new(),
        sigkill: Some(Kill { at_ns: 31_000_000_000, sender: runc(2) }),
        oom: false,
        exit: Exit { at_ns: 31_001_000_000, code: None, signal: Some(9) },
        outcome: Outcome::Killed,
        stuck: None,
        prestop_candidates: Vec::new(),
        incomplete: Vec::new(),
        // Connections still arriving and cut: every traffic family gets a series too.
        traffic: Some(traffic::Seen {
            scope: traffic::Scope::PodNetwork,
            ports: Vec::new(),
            counted_from: traffic::CountedFrom::ContainerStart,
            at_stop: Some(traffic::Counts { since_ns: 1, accepted: 10, ..Default::default() }),
            at_kill: Some(traffic::Counts { since_ns: 1, established: 2, ..Default::default() }),
            at_exit: Some(traffic::Counts {
                since_ns: 1,
                established: 2,
                accepted: 14,
                last_accept_ns: Some(30_900_000_000),
                ..Default::default()
            }),
        }),
    };
    let id = Identity {
        namespace: Some("ci".into()),
        container: Some("step".into()),
        grace_period_seconds: Some(30),
        cgroup: "/kubepods/besteffort/pod1/abc".into(),
        ..Default::default()
    };
    Record::new(&t, Some(&id), "node-1", &WallClock::measure(), &observer::node::Evidence::none())
}

fn main() {
    let variant = std::env::args().nth(1).unwrap_or_else(|| "bounded".into());
    let limits = match variant.as_str() {
        "unbounded" => Limits { series: usize::MAX, idle: IDLE_AFTER },
        "bounded" | "bare" => Limits::default(),
        other => {
            eprintln!("unknown variant {other:?}: unbounded, bounded or bare");
            std::process::exit(2);
        }
    };
    let base = record();
    let (heap0, rss0) = (LIVE.load(Ordering::Relaxed), rss());
    let m = Metrics::with_limits(limits);
    let started = Instant::now();
    for i in 0..PODS {
        let mut r = base.clone();
        r.pod = Some(format!("ci-run-{i:06}-8f14e45f"));
        if variant != "bare" {
            r.workload = r.pod.clone();
        }
        m.observe(&r);
    }
    let observe_s = started.elapsed().as_secs_f64();
    let (heap, rss1) = (LIVE.load(Ordering::Relaxed) - heap0, rss());
    let mut render_s = f64::MAX;
    let mut bytes = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let scrape = m.render();
        render_s = render_s.min(t.elapsed().as_secs_f64());
        bytes = scrape.len();
    }
    println!(
        "{{\"variant\":\"{variant}\",\"pods\":{PODS},\"heap_bytes\":{heap},\"rss_growth_bytes\":{},\
         \"scrape_bytes\":{bytes},\"render_seconds\":{render_s:.4},\"observe_seconds\":{observe_s:.4}}}",
        rss1.saturating_sub(rss0)
    );
}
