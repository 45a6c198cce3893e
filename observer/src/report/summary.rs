//! The report's text: stuck terminations first (SIGKILLed and still there), a summary per
//! workload, the terminations whose grace period was not kept (kill_late, kill_early), the
//! connections that still came after the stop signal or that the SIGKILL cut, with what to do,
//! then the forced kills, newest first, each with its reason in words and what kubectl shows,
//! and what those exit codes mean. Pure: records in, text out.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::record::entry::Entry;

/// The report fits a terminal this wide with names of usual length.
pub const WIDTH: usize = 100;
const NAME_MAX: usize = 36;
const NAME_MIN: usize = 16;
/// `08-01 02:13:07`: the year is in the report's first line.
const TIME_W: usize = 14;
const CONTAINER_MAX: usize = 16;
/// `OOMKilled 137`.
const KUBECTL_W: usize = 13;

/// What kubectl shows for some records: reason, exit code, how many, and what it means.
#[derive(Debug)]
struct Kubectl {
    reason: String,
    exit_code: u32,
    records: u64,
    note: String,
}

#[derive(Debug, Default)]
struct Workload {
    total: u64,
    graceful: u64,
    /// killed + killed_without_stop_signal.
    killed: u64,
    oom: u64,
    ignored: u64,
    overruns: u64,
    term_to_exit: Vec<f64>,
}

/// One forced kill, owned (the line it came from is gone once read).
#[derive(Debug, Clone, PartialEq)]
pub struct Kill {
    pub at: DateTime<Utc>,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub reason: String,
}

/// A stuck report, and whether its termination's record came since.
#[derive(Debug, Clone, PartialEq)]
struct StuckLine {
    at: DateTime<Utc>,
    who: String,
    seconds: f64,
    look_at: String,
    /// The termination's own record id (the stuck one's without `:stuck`).
    of: String,
}

/// A pod's end.
#[derive(Debug, Clone, PartialEq)]
struct PodLine {
    at: DateTime<Utc>,
    who: String,
    seconds: Option<f64>,
    held_up_by: String,
    kills: u32,
    broken: Option<Vec<String>>,
}

/// A termination whose grace period was not kept.
#[derive(Debug, Clone, PartialEq)]
struct Broken {
    at: DateTime<Utc>,
    who: String,
    what: String,
}

/// A termination whose pod still got new connections after the stop signal, or whose
/// connections the SIGKILL cut.
#[derive(Debug, Clone, PartialEq)]
struct TrafficLine {
    at: DateTime<Utc>,
    who: String,
    /// [`traffic`]'s facts, one a line.
    facts: Vec<String>,
}

/// Wraps `text` to `width` columns at spaces (runs of spaces inside a line are kept), each
/// line after the first indented by `indent` (and then `width` wide).
fn wrap(text: &str, width: usize, indent: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            out += line.trim_end();
            out += "\n";
            out += &" ".repeat(indent);
            line.clear();
        }
        if line.is_empty() && word.is_empty() {
            continue;
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line += word;
    }
    out + line.trim_end()
}

/// The verdict of a record whose grace period was not kept, in words; None when kept or not
/// judged.
pub fn broken(e: &Entry<'_>) -> Option<String> {
    let c = e.contract.as_ref();
    let off = c.and_then(|c| c.off_by_seconds).unwrap_or(0.0).abs();
    let cause = c.and_then(|c| c.cause.as_deref());
    let grace = e.grace_period_seconds.map(|g| format!(" of {g} s")).unwrap_or_default();
    Some(match e.verdict.as_deref()? {
        "kill_late" => match cause {
            Some("retried_stop") => match c.and_then(|c| c.restarted.as_deref()) {
                Some([r, ..]) => format!(
                    "kill_late by {}: {} restarted {} after the stop signal and the stop was issued again, its timer started over",
                    secs(off),
                    r.comm,
                    secs(r.after_stop_signal_seconds)
                ),
                _ => format!(
                    "kill_late by {}: the stop was issued again (kubelet or runtime restart) and its timer started over",
                    secs(off)
                ),
            },
            Some("prestop_outlived_budget") => format!(
                "kill_late by {}: kubelet waited for the preStop hook past the grace period{grace}",
                secs(off)
            ),
            _ => format!("kill_late by {}: longer than the grace period{grace} allows", secs(off)),
        },
        "kill_early" => {
            let used = c.and_then(|c| c.grace_used_seconds);
            match (cause, used) {
                (Some("no_stop_signal"), _) => "kill_early: SIGKILL with no grace at all".into(),
                (Some("kubelet_floor"), _) => format!(
                    "kill_early: got kubelet's 2 s floor{grace} (hard eviction, force delete or --grace-period of 0-2)"
                ),
                (_, Some(u)) => match c.and_then(|c| c.shortened_by.as_ref()) {
                    // The seconds match the rule: the pod's conditions say whether it applied
                    // (a soft eviction leaves DisruptionTarget, TerminationByKubelet).
                    Some(b) if b.rule == "soft_eviction" => format!(
                        "kill_early: got {u} s{grace}, as kubelet's soft eviction gives: {}",
                        b.evidence
                    ),
                    Some(b) if b.rule == "node_shutdown" => format!(
                        "kill_early: got {u} s{grace}, as kubelet's graceful node shutdown gives: {}",
                        b.evidence
                    ),
                    Some(b) => {
                        format!("kill_early: got {u} s{grace}, cause unknown: {}", b.evidence)
                    }
                    // Journals written before the rule was named.
                    None => format!(
                        "kill_early: got {u} s{grace} (soft eviction, node shutdown or --grace-period={u})"
                    ),
                },
                _ => format!("kill_early by {}{grace}", secs(off)),
            }
        }
        _ => return None,
    })
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A termination's connections after its stop signal and at its SIGKILL, in words, a fact
/// each; none when none came after the stop signal and none was cut (or they were not
/// counted).
pub fn traffic(e: &Entry<'_>) -> Vec<String> {
    let Some(t) = e.traffic.as_ref() else { return Vec::new() };
    let after = t.accepted_after_stop_signal.unwrap_or(0);
    let cut = t.cut_by_sigkill.unwrap_or(0);
    let mut parts = Vec::new();
    if after > 0 {
        let mut s = format!("{after} new connection{} after the stop signal", plural(after));
        if let Some(last) = t.last_accepted_after_stop_signal_seconds {
            s += &format!(" (last at +{})", secs(last));
        }
        if t.still_arriving_at_exit == Some(true) {
            s += ", still arriving at exit";
        }
        parts.push(s);
        match (t.stopped_accepting_before_exit, t.listeners_closed_after_stop_signal_seconds) {
            (Some(true), Some(at)) => parts.push(format!("stopped accepting at +{}", secs(at))),
            (Some(false), _) => parts.push("still listening at exit".into()),
            _ => {}
        }
    }
    if let Some(n) = t.from_node_after_stop_signal.filter(|n| *n > 0) {
        parts.push(format!("{n} from the node itself (kubelet's probes), not counted as clients"));
    }
    if cut > 0 {
        parts.push(format!("{cut} connection{} cut by SIGKILL", plural(cut)));
    }
    parts
}

/// How a kill's pod is named in the list.
type Label = Box<dyn Fn(&Kill) -> String>;

/// Everything the text is made from.
#[derive(Debug, Default)]
pub struct Summary {
    workloads: HashMap<(String, String), Workload>,
    kills: Vec<Kill>,
    stuck: Vec<StuckLine>,
    /// Record ids of the stuck reports' terminations, and of those whose record came since
    /// (the journal is append-only: a stuck report comes before its termination's record).
    stuck_ids: HashSet<String>,
    released: HashSet<String>,
    broken: Vec<Broken>,
    /// What kubectl shows for the records (a handful of distinct rows: no allocation per
    /// record).
    kubectl: Vec<Kubectl>,
    pods: Vec<PodLine>,
    traffic: Vec<TrafficLine>,
    /// Terminations with a new connection in their last second, and the latest of those
    /// connections after its stop signal.
    arriving_at_exit: u64,
    latest_arriving: Option<f64>,
    /// Connections the SIGKILLs cut.
    cut: u64,
    records: u64,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

fn name(s: &Option<std::borrow::Cow<'_, str>>) -> String {
    s.as_deref().filter(|s| !s.is_empty()).unwrap_or("-").to_string()
}

/// Seconds in words: "28 s", "2.0 s", "0.31 s".
pub fn secs(s: f64) -> String {
    if s >= 9.95 {
        format!("{s:.0} s")
    } else if s >= 0.995 {
        format!("{s:.1} s")
    } else {
        format!("{s:.2} s")
    }
}

/// Why a container was killed, in words; None for a graceful stop.
pub fn reason(e: &Entry<'_>) -> Option<String> {
    let sig = e.stop_signal.as_deref().unwrap_or("the stop signal");
    Some(match e.outcome.as_ref() {
        "graceful" => return None,
        "oom_killed" => "OOM".to_string(),
        "killed_without_stop_signal" => "SIGKILL with no stop signal before it".to_string(),
        "killed" => match &e.prestop {
            Some(p) if p.overrun => match (p.duration_seconds, e.grace_period_seconds) {
                (Some(d), Some(g)) => format!("preStop used {} of {g} s grace", secs(d)),
                (Some(d), None) => format!("preStop used {}, past the grace period", secs(d)),
                _ => "preStop overran the grace period".to_string(),
            },
            _ if e.stop_signal_ignored == Some(true) => match e.stop_signal_handler.as_deref() {
                Some("default") => format!("{sig} ignored by PID 1 (no handler)"),
                Some("ignored") => format!("{sig} ignored by PID 1 (SIG_IGN)"),
                _ => format!("{sig} ignored by PID 1"),
            },
            _ => match e.term_to_kill_seconds {
                Some(t) => format!("slow shutdown: still running {} after {sig}", secs(t)),
                None => format!("slow shutdown: still running after {sig}"),
            },
        },
        other => other.to_string(),
    })
}

impl Summary {
    pub fn add(&mut self, e: &Entry<'_>) {
        if e.is_pod() {
            self.pods.push(PodLine {
                at: e.at,
                who: format!("{}/{}", name(&e.namespace), name(&e.pod)),
                seconds: e.termination_seconds,
                held_up_by: name(&e.held_up_by),
                kills: e.kills.unwrap_or(0),
                broken: e.order_broken.clone().filter(|_| e.order_kept == Some(false)),
            });
            return;
        }
        // Only the few records listed by name need it.
        let who = || format!("{}/{} {}", name(&e.namespace), name(&e.pod), name(&e.container));
        if e.outcome == "stuck" {
            let of = e.record_id.as_deref().unwrap_or("");
            let of = of.strip_suffix(":stuck").unwrap_or(of).to_string();
            self.stuck_ids.insert(of.clone());
            self.stuck.push(StuckLine {
                at: e.at,
                who: who(),
                seconds: e.stuck.as_ref().and_then(|s| s.stuck_seconds).unwrap_or(0.0),
                look_at: e.stuck.as_ref().and_then(|s| s.look_at.clone()).unwrap_or_default(),
                of,
            });
            return;
        }
        // Its record, with or without the stuck report's copy (a daemon restarted since
        // writes it without).
        if let Some(id) = e.record_id.as_deref().filter(|id| self.stuck_ids.contains(*id)) {
            self.released.insert(id.to_string());
        }
        if let Some(what) = broken(e) {
            self.broken.push(Broken { at: e.at, who: who(), what });
        }
        if let Some(t) = &e.traffic {
            if t.still_arriving_at_exit == Some(true) {
                self.arriving_at_exit += 1;
                if let Some(l) = t.last_accepted_after_stop_signal_seconds {
                    self.latest_arriving = Some(self.latest_arriving.map_or(l, |m| m.max(l)));
                }
            }
            self.cut += t.cut_by_sigkill.unwrap_or(0);
            let facts = traffic(e);
            if !facts.is_empty() {
                self.traffic.push(TrafficLine { at: e.at, who: who(), facts });
            }
        }
        if let Some(k) = &e.kubernetes {
            if let (Some(reason), Some(code)) = (k.reason.as_deref(), k.exit_code) {
                match self.kubectl.iter_mut().find(|r| r.exit_code == code && r.reason == reason) {
                    Some(row) => row.records += 1,
                    None => self.kubectl.push(Kubectl {
                        reason: reason.to_string(),
                        exit_code: code,
                        records: 1,
                        note: k.note.as_deref().unwrap_or("").to_string(),
                    }),
                }
            }
        }
        self.records += 1;
        self.first = Some(self.first.map_or(e.at, |f| f.min(e.at)));
        self.last = Some(self.last.map_or(e.at, |l| l.max(e.at)));
        let w = self.workloads.entry((name(&e.namespace), name(&e.workload))).or_default();
        w.total += 1;
        match e.outcome.as_ref() {
            "graceful" => w.graceful += 1,
            "killed" | "killed_without_stop_signal" => w.killed += 1,
            "oom_killed" => w.oom += 1,
            _ => {}
        }
        if e.stop_signal_ignored == Some(true) {
            w.ignored += 1;
        }
        if e.prestop.as_ref().is_some_and(|p| p.overrun) {
            w.overruns += 1;
        }
        if let Some(t) = e.term_to_exit_seconds.filter(|t| t.is_finite()) {
            w.term_to_exit.push(t);
        }
        if let Some(reason) = reason(e) {
            self.kills.push(Kill {
                at: e.at,
                namespace: name(&e.namespace),
                pod: name(&e.pod),
                container: name(&e.container),
                reason,
            });
        }
    }

    /// The report; `max_kills` 0 lists every forced kill.
    pub fn render(mut self, max_kills: usize, color: bool) -> String {
        let paint = |code: &str, s: &str| {
            if color {
                format!("\x1b[{code}m{s}\x1b[0m")
            } else {
                s.to_string()
            }
        };
        let (Some(first), Some(last)) = (self.first, self.last) else {
            return "no terminations match\n".to_string();
        };
        let mut out = String::new();
        let fmt = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
        out += &format!(
            "{} termination{} from {} to {} UTC\n\n",
            self.records,
            if self.records == 1 { "" } else { "s" },
            fmt(first),
            fmt(last)
        );
        // Stuck first: what is still holding a node's pod in Terminating.
        if !self.stuck.is_empty() {
            self.stuck.sort_by_key(|s| std::cmp::Reverse(s.at));
            let still = self.stuck.iter().filter(|s| !self.released.contains(&s.of)).count();
            out += &paint(
                "1",
                &format!("STUCK ({}, {still} not gone when last recorded)", self.stuck.len()),
            );
            out += "\n";
            for s in &self.stuck {
                let state =
                    if self.released.contains(&s.of) { "gone since" } else { "STILL STUCK" };
                let head = format!(
                    "{}  {}  stuck {} after SIGKILL, {state}",
                    s.at.format("%m-%d %H:%M:%S"),
                    s.who,
                    secs(s.seconds)
                );
                out += &if state == "STILL STUCK" { paint("31", &head) } else { head };
                out += "\n";
                out += &format!("    {}\n", wrap(&s.look_at, WIDTH - 4, 4));
            }
            out += "\n";
        }
        if self.records == 0 {
            out += &render_pods(&mut self.pods, max_kills);
            return out;
        }

        // Workloads with forced kills first, then the busiest, then by name.
        let mut rows: Vec<_> = self.workloads.into_iter().collect();
        rows.sort_by(|a, b| {
            (b.1.killed + b.1.oom, b.1.total)
                .cmp(&(a.1.killed + a.1.oom, a.1.total))
                .then_with(|| a.0.cmp(&b.0))
        });
        let nums = [
            ("TOTAL", 7),
            ("GRACEFUL", 9),
            ("KILLED", 7),
            ("OOM", 5),
            ("p50", 7),
            ("p95", 7),
            ("max", 7),
            ("IGNORED", 8),
            ("OVERRUNS", 9),
        ];
        let num_width: usize = nums.iter().map(|n| n.1).sum();
        let label = |k: &(String, String)| format!("{}/{}", k.0, k.1);
        let name_w = rows
            .iter()
            .map(|r| label(&r.0).chars().count())
            .chain(["NAMESPACE/WORKLOAD".len()])
            .max()
            .unwrap_or(0)
            .min(WIDTH - num_width);
        let mut header = pad("NAMESPACE/WORKLOAD", name_w);
        for (h, w) in nums {
            header += &format!("{h:>w$}");
        }
        out += &paint("1", &header);
        out += "\n";
        out +=
            &format!("{:>w$}\n", "(p50 p95 max: stop signal -> exit, s)", w = name_w + num_width);
        for (key, w) in &mut rows {
            w.term_to_exit.sort_by(f64::total_cmp);
            let q =
                |p: f64| percentile(&w.term_to_exit, p).map_or("-".into(), |v| format!("{v:.2}"));
            let cells = [
                w.total.to_string(),
                w.graceful.to_string(),
                w.killed.to_string(),
                w.oom.to_string(),
                q(0.50),
                q(0.95),
                q(1.0),
                w.ignored.to_string(),
                w.overruns.to_string(),
            ];
            let mut line = pad(&label(key), name_w);
            for (i, (c, (_, width))) in cells.iter().zip(nums).enumerate() {
                let cell = format!("{c:>width$}");
                // Counts of forced kills stand out in red when not zero.
                let hot = matches!(i, 2 | 3 | 7 | 8) && c != "0";
                line += &if hot { paint("31", &cell) } else { cell };
            }
            out += &line;
            out += "\n";
        }

        if !self.broken.is_empty() {
            self.broken.sort_by_key(|b| std::cmp::Reverse(b.at));
            out += &paint(
                "1",
                &format!("\nGRACE PERIOD NOT KEPT ({}, newest first)", self.broken.len()),
            );
            out += "\n";
            let shown = if max_kills == 0 { self.broken.len() } else { max_kills };
            for b in self.broken.iter().take(shown) {
                out += &wrap(
                    &format!("{}  {}  {}", b.at.format("%m-%d %H:%M:%S"), b.who, b.what),
                    WIDTH - TIME_W - 2,
                    TIME_W + 2,
                );
                out += "\n";
            }
        }

        if !self.traffic.is_empty() {
            self.traffic.sort_by_key(|t| std::cmp::Reverse(t.at));
            out += &paint(
                "1",
                &format!(
                    "\nCONNECTIONS AFTER THE STOP SIGNAL ({}, newest first)",
                    self.traffic.len()
                ),
            );
            out += "\n";
            let total = self.traffic.len();
            let shown = if max_kills == 0 { total } else { max_kills.min(total) };
            for t in &self.traffic[..shown] {
                out += &format!("{}  {}\n", t.at.format("%m-%d %H:%M:%S"), t.who);
                for fact in &t.facts {
                    out += &format!("    {}\n", wrap(fact, WIDTH - 4, 4));
                }
            }
            if shown < total {
                out +=
                    &format!("... {} older not shown (--max-kills 0 lists all)\n", total - shown);
            }
            out += &traffic_advice(self.arriving_at_exit, self.latest_arriving, self.cut);
        }

        out += &render_pods(&mut self.pods, max_kills);

        self.kills.sort_by_key(|k| std::cmp::Reverse(k.at));
        let total_kills = self.kills.len();
        if total_kills == 0 {
            out += "\nno forced kills\n";
            return out;
        }
        let shown = if max_kills == 0 { total_kills } else { max_kills.min(total_kills) };
        // One namespace (the usual question): named once, not on every line.
        let ns0 = self.kills[0].namespace.clone();
        let kills = &self.kills[..shown];
        let (pod_header, label): (&str, Label) = if self.kills.iter().all(|k| k.namespace == ns0) {
            out += &format!("\nFORCED KILLS ({total_kills}, newest first) in namespace {ns0}\n");
            ("POD", Box::new(|k: &Kill| k.pod.clone()))
        } else {
            out += &format!("\nFORCED KILLS ({total_kills}, newest first)\n");
            ("NAMESPACE/POD", Box::new(|k: &Kill| format!("{}/{}", k.namespace, k.pod)))
        };
        let ctr_w = kills
            .iter()
            .map(|k| k.container.chars().count())
            .chain(["CONTAINER".len()])
            .max()
            .unwrap_or(0)
            .min(CONTAINER_MAX);
        // The pod column gives way to the longest reason, down to NAME_MIN.
        let reason_w = kills.iter().map(|k| k.reason.chars().count()).max().unwrap_or(0);
        let pod_w = kills
            .iter()
            .map(|k| label(k).chars().count())
            .chain([pod_header.len()])
            .max()
            .unwrap_or(0)
            .min(NAME_MAX)
            .min(WIDTH.saturating_sub(TIME_W + 6 + ctr_w + reason_w).max(NAME_MIN));
        let header = format!(
            "{}  {}  {}  REASON",
            pad("TIME (UTC)", TIME_W),
            pad(pod_header, pod_w),
            pad("CONTAINER", ctr_w)
        );
        out += &paint("1", &header);
        out += "\n";
        for k in kills {
            let reason =
                if k.reason == "OOM" { paint("35", &k.reason) } else { paint("31", &k.reason) };
            out += &format!(
                "{}  {}  {}  {reason}\n",
                k.at.format("%m-%d %H:%M:%S"),
                pad(&label(k), pod_w),
                pad(&k.container, ctr_w)
            );
        }
        if shown < total_kills {
            out += &format!(
                "... {} older forced kill{} not shown (--max-kills 0 lists all)\n",
                total_kills - shown,
                if total_kills - shown == 1 { "" } else { "s" }
            );
        }
        // What kubectl describe will say for these, and where it may say otherwise.
        out += &paint("1", "\nWHAT kubectl describe SHOWS (Last State: Terminated), and why");
        out += "\n";
        self.kubectl.sort_by(|a, b| a.reason.cmp(&b.reason).then(a.exit_code.cmp(&b.exit_code)));
        for k in &self.kubectl {
            out += &pad(&format!("{} {} ({})", k.reason, k.exit_code, k.records), KUBECTL_W + 6);
            out += "  ";
            out += &wrap(&k.note, WIDTH - KUBECTL_W - 8, KUBECTL_W + 8);
            out += "\n";
        }
        out
    }
}

/// What the connections after the stop signal and the cut ones say, and what to do.
fn traffic_advice(arriving: u64, latest: Option<f64>, cut: u64) -> String {
    let mut out = "\n".to_string();
    out += &wrap(
        &format!(
            "{arriving} termination{} still received connections in {} last second; {cut} \
             connection{} cut by SIGKILL.",
            plural(arriving),
            if arriving == 1 { "its" } else { "their" },
            plural(cut)
        ),
        WIDTH,
        0,
    );
    out += "\n";
    let mut advice = Vec::new();
    if arriving > 0 {
        let latest = latest.map(|l| format!(" (here up to +{})", secs(l))).unwrap_or_default();
        advice.push(format!(
            "Connections in a container's last second: the pod's removal from its Service's \
             endpoints had not reached every client when it died (the pod leaves the endpoints \
             at the moment kubelet begins stopping it; every node's proxy, ingress and load \
             balancer learns it later). Add a preStop sleep longer than the last new connection \
             after the stop signal{latest}, lengthening a hook you have by that much within \
             terminationGracePeriodSeconds, or keep accepting after SIGTERM for that long."
        ));
    }
    if cut > 0 {
        advice.push(
            "Connections cut by SIGKILL were still open when it came (in a \
             pod's network its outgoing ones count too): on SIGTERM, stop taking new requests on \
             them, finish those in flight and close them (HTTP keep-alive: Connection: close) \
             well within terminationGracePeriodSeconds."
                .to_string(),
        );
    }
    for a in advice {
        out += &format!("    {}\n", wrap(&a, WIDTH - 4, 4));
    }
    out
}

/// Pods that ended: the slowest first, with what held each up and a broken sidecar order.
fn render_pods(pods: &mut [PodLine], max: usize) -> String {
    if pods.is_empty() {
        return String::new();
    }
    pods.sort_by(|a, b| {
        b.seconds.unwrap_or(0.0).total_cmp(&a.seconds.unwrap_or(0.0)).then(b.at.cmp(&a.at))
    });
    let broken = pods.iter().filter(|p| p.broken.is_some()).count();
    let mut out = format!(
        "\nPODS ENDED ({}, slowest first; {broken} with the sidecar order broken)\n",
        pods.len()
    );
    let shown = if max == 0 { pods.len() } else { max.min(pods.len()) };
    for p in &pods[..shown] {
        let line = format!(
            "{}  {}  {} from the first stop signal, held up by {}, {} kill{}",
            p.at.format("%m-%d %H:%M:%S"),
            p.who,
            p.seconds.map(secs).unwrap_or_else(|| "?".into()),
            p.held_up_by,
            p.kills,
            if p.kills == 1 { "" } else { "s" }
        );
        out += &wrap(&line, WIDTH - TIME_W - 2, TIME_W + 2);
        out += "\n";
        for why in p.broken.iter().flatten() {
            out += &" ".repeat(TIME_W + 2);
            out += &wrap(&format!("order broken: {why}"), WIDTH - TIME_W - 4, TIME_W + 4);
            out += "\n";
        }
    }
    out
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Left-aligned in `width` characters; a longer name loses its middle to "…" (a pod's
/// distinguishing suffix and its namespace prefix both stay).
fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        format!("{s}{}", " ".repeat(width - n))
    } else {
        let keep = width.saturating_sub(1);
        let tail = keep / 2;
        let mut cut: String = s.chars().take(keep - tail).collect();
        cut.push('…');
        cut.extend(s.chars().skip(n - tail));
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        events::Disposition,
        record::{example::RecordBuilder, Record},
    };

    fn reason_of(r: RecordBuilder) -> Option<String> {
        reason(&r.build().entry().unwrap())
    }

    fn killed_no_handler() -> RecordBuilder {
        Record::example().at("2026-08-01T02:00:03Z").killed(30.0, 30.01)
    }

    fn graceful() -> RecordBuilder {
        Record::example().at("2026-08-01T02:00:01Z").pod("web-7d4b9c6f8-abcde").graceful(0.25)
    }

    fn slow() -> RecordBuilder {
        Record::example()
            .at("2026-08-01T02:00:02Z")
            .workload("api")
            .pod("api-0")
            .container("api")
            .handler(Disposition::Handled)
            .killed(30.0, 30.0)
    }

    fn oom() -> RecordBuilder {
        Record::example()
            .at("2026-08-01T02:00:04Z")
            .namespace("batch")
            .workload("hog")
            .pod("hog-1")
            .container("hog")
            .oom()
    }

    #[test]
    fn reasons_in_words() {
        assert_eq!(
            reason_of(killed_no_handler()).unwrap(),
            "SIGTERM ignored by PID 1 (no handler)"
        );
        assert_eq!(reason_of(graceful()), None);
        assert_eq!(reason_of(slow()).unwrap(), "slow shutdown: still running 30 s after SIGTERM");
        assert_eq!(reason_of(oom()).unwrap(), "OOM");
        let sig_ign = killed_no_handler().handler(Disposition::Ignored);
        assert_eq!(reason_of(sig_ign).unwrap(), "SIGTERM ignored by PID 1 (SIG_IGN)");
        let prestop = slow().prestop(28.2, true);
        assert_eq!(reason_of(prestop).unwrap(), "preStop used 28 s of 30 s grace");
        let no_stop = Record::example().without_stop_signal();
        assert_eq!(reason_of(no_stop).unwrap(), "SIGKILL with no stop signal before it");
        let quit = slow().stop_signal(3).killed(0.5, 0.5);
        assert_eq!(reason_of(quit).unwrap(), "slow shutdown: still running 0.50 s after SIGQUIT");
    }

    #[test]
    fn seconds_read_naturally() {
        assert_eq!(secs(28.2), "28 s");
        assert_eq!(secs(2.01), "2.0 s");
        assert_eq!(secs(0.314), "0.31 s");
        assert_eq!(secs(9.96), "10 s");
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.95), Some(95.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&[3.0], 0.5), Some(3.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    fn summary(records: &[RecordBuilder]) -> Summary {
        let mut s = Summary::default();
        for r in records {
            s.add(&r.clone().build().entry().unwrap());
        }
        s
    }

    #[test]
    fn summary_then_kills_newest_first() {
        let text = summary(&[graceful(), slow(), killed_no_handler(), oom()]).render(0, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "4 terminations from 2026-08-01 02:00:01 to 2026-08-01 02:00:04 UTC");
        let row = |name: &str| {
            lines
                .iter()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{name} in\n{text}"))
                .split_whitespace()
                .skip(1)
                .collect::<Vec<_>>()
        };
        // TOTAL GRACEFUL KILLED OOM p50 p95 max IGNORED OVERRUNS
        assert_eq!(row("shop/web"), ["2", "1", "1", "0", "0.25", "30.01", "30.01", "1", "0"]);
        assert_eq!(row("shop/api"), ["1", "0", "1", "0", "30.00", "30.00", "30.00", "0", "0"]);
        assert_eq!(row("batch/hog"), ["1", "0", "0", "1", "-", "-", "-", "0", "0"]);
        let kills: Vec<&&str> = lines
            .iter()
            .skip_while(|l| !l.starts_with("FORCED KILLS (3"))
            .skip(2)
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(kills.len(), 3, "{text}");
        assert!(kills[0].starts_with("08-01 02:00:04  batch/hog-1") && kills[0].ends_with("OOM"));
        assert!(
            kills[1].contains("shop/web-7d4b9c6f8-x2k9p  app ")
                && kills[1].ends_with("(no handler)")
        );
        assert!(kills[2].ends_with("still running 30 s after SIGTERM"));
        // What kubectl shows for them, counted, and what it means.
        let notes: Vec<&&str> =
            lines.iter().skip_while(|l| !l.starts_with("WHAT kubectl describe")).skip(1).collect();
        assert!(notes[0].starts_with("Completed 0 (1)"), "{text}");
        assert!(notes.iter().any(|l| l.starts_with("Error 137 (2)")), "{text}");
        assert!(notes.iter().any(|l| l.starts_with("OOMKilled 137 (1)")), "{text}");
        assert!(!text.contains('\x1b'), "no colour unless asked");
        for l in &lines {
            assert!(l.chars().count() <= WIDTH, "{} columns: {l}", l.chars().count());
        }
    }

    #[test]
    fn long_names_are_cut_to_fit_and_colour_is_optional() {
        let long = [killed_no_handler().workload(&"w".repeat(80)).pod(&"p".repeat(80))];
        let text = summary(&long).render(0, false);
        for l in text.lines() {
            assert!(l.chars().count() <= WIDTH, "{} columns: {l}", l.chars().count());
        }
        assert!(text.contains("…x2k9p") || text.contains("…pppp"), "{text}");
        assert!(text.contains("shop/www"), "the namespace prefix stays: {text}");
        assert!(text.contains("in namespace shop"), "{text}");
        let coloured = summary(&long).render(0, true);
        assert!(coloured.contains("\x1b[31m"));
    }

    #[test]
    fn kills_beyond_the_limit_are_counted() {
        let text = summary(&[slow(), killed_no_handler(), oom()]).render(1, false);
        assert!(text.contains("FORCED KILLS (3, newest first)"), "{text}");
        assert!(text.contains("... 2 older forced kills not shown"), "{text}");
        assert_eq!(summary(&[]).render(0, false), "no terminations match\n");
        assert!(summary(&[graceful()]).render(0, false).ends_with("\nno forced kills\n"));
    }

    #[test]
    fn stuck_reports_come_first_and_say_whether_the_termination_went_since() {
        let stuck = |r: RecordBuilder| {
            let look_at = "the container's cgroup freezer is FROZEN";
            let mut rec = r.build().with_stuck(12.0, Some("FROZEN"), look_at);
            rec.outcome = crate::correlate::Outcome::Stuck;
            rec.record_id.push_str(":stuck");
            rec
        };
        let mut still = stuck(killed_no_handler().pod("db-0"));
        still.record_id = "boot:1:2:stuck".into();
        let gone = stuck(slow());
        let mut gone_record = slow().build();
        gone_record.stuck = gone.stuck.clone();
        let mut s = Summary::default();
        for r in [&still, &gone, &gone_record] {
            s.add(&r.entry().unwrap());
        }
        let text = s.render(0, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "1 termination from 2026-08-01 02:00:02 to 2026-08-01 02:00:02 UTC");
        assert_eq!(lines[2], "STUCK (2, 1 not gone when last recorded)", "{text}");
        assert!(
            lines[3].contains("shop/db-0 app  stuck 12 s after SIGKILL, STILL STUCK"),
            "{text}"
        );
        assert_eq!(lines[4], "    the container's cgroup freezer is FROZEN");
        assert!(
            lines[5].contains("shop/api-0 api  stuck 12 s after SIGKILL, gone since"),
            "{text}"
        );
    }

    #[test]
    fn grace_periods_not_kept_are_listed_with_their_cause() {
        let early = Record::example().at("2026-08-01T02:00:05Z").killed(5.0, 5.01);
        let e = early.clone().build();
        assert_eq!(e.verdict.as_str(), "kill_early");
        assert_eq!(
            broken(&e.entry().unwrap()).unwrap(),
            "kill_early: got 5 s of 30 s, cause unknown: kubelet's configuration not read: no process named kubelet seen on this node"
        );
        let floor = Record::example().killed(2.0, 2.01).build();
        assert!(broken(&floor.entry().unwrap()).unwrap().contains("kubelet's 2 s floor"));
        let late = Record::example().killed(36.0, 36.01).build();
        assert_eq!(
            broken(&late.entry().unwrap()).unwrap(),
            "kill_late by 6.0 s: longer than the grace period of 30 s allows"
        );
        assert_eq!(broken(&killed_no_handler().build().entry().unwrap()), None, "kept");
        let text = summary(&[early, killed_no_handler()]).render(0, false);
        assert!(text.contains("GRACE PERIOD NOT KEPT (1, newest first)"), "{text}");
        assert!(
            text.contains("08-01 02:00:05  shop/web-7d4b9c6f8-x2k9p app  kill_early: got 5 s"),
            "{text}"
        );
        for l in text.lines() {
            assert!(l.chars().count() <= WIDTH, "{} columns: {l}", l.chars().count());
        }
    }

    #[test]
    fn connections_after_the_stop_signal_and_cut_by_sigkill_are_listed_with_what_to_do() {
        // SIGKILLed with 4 connections open, the last of 3 new ones 0.41 s before its exit.
        let arriving = killed_no_handler().traffic(3, 29.6, 4);
        // Drained: the last of 2 new ones at +2 s, its exit at +6 s, nothing open.
        let drained = graceful().graceful(6.0).traffic(2, 2.0, 0);
        let quiet = slow().traffic(0, 0.0, 0);
        let words = |r: &RecordBuilder| traffic(&r.clone().build().entry().unwrap());
        assert_eq!(
            words(&arriving),
            [
                "3 new connections after the stop signal (last at +30 s), still arriving at exit",
                "still listening at exit",
                "4 connections cut by SIGKILL"
            ]
        );
        assert_eq!(
            words(&drained),
            [
                "2 new connections after the stop signal (last at +2.0 s)",
                "stopped accepting at +2.5 s"
            ]
        );
        assert!(words(&quiet).is_empty(), "nothing came, nothing was cut");
        assert!(words(&graceful()).is_empty(), "not counted");

        let text = summary(&[drained.clone(), quiet, arriving, oom()]).render(0, false);
        let lines: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("CONNECTIONS AFTER THE STOP SIGNAL (2, newest first)"))
            .collect();
        assert!(!lines.is_empty(), "{text}");
        // Each termination, then its facts a line each: a number beside what it counts.
        assert_eq!(
            lines[1..8],
            [
                "08-01 02:00:03  shop/web-7d4b9c6f8-x2k9p app",
                "    3 new connections after the stop signal (last at +30 s), still arriving at exit",
                "    still listening at exit",
                "    4 connections cut by SIGKILL",
                "08-01 02:00:01  shop/web-7d4b9c6f8-abcde app",
                "    2 new connections after the stop signal (last at +2.0 s)",
                "    stopped accepting at +2.5 s",
            ],
            "{text}"
        );
        let said = lines.join(" ").split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            said.contains(
                "1 termination still received connections in its last second; 4 connections cut by SIGKILL."
            ),
            "{text}"
        );
        assert!(said.contains("preStop sleep longer than the last new connection"), "{text}");
        assert!(said.contains("(here up to +30 s)"), "{text}");
        assert!(said.contains("Connections cut by SIGKILL were still open"), "{text}");
        for l in text.lines() {
            assert!(l.chars().count() <= WIDTH, "{} columns: {l}", l.chars().count());
        }

        // Drained in time: listed, and nothing to do.
        let text = summary(&[drained]).render(0, false);
        assert!(
            text.contains(
                "0 terminations still received connections in their last second; 0 connections cut by SIGKILL."
            ),
            "{text}"
        );
        assert!(!text.contains("preStop sleep") && !text.contains("were still open"), "{text}");
        // Older journals, or not counted: no section.
        assert!(!summary(&[graceful(), slow()]).render(0, false).contains("CONNECTIONS AFTER"));
        // Limited as the kills are.
        let many = [killed_no_handler().traffic(1, 1.0, 0), slow().traffic(0, 0.0, 2)];
        let text = summary(&many).render(1, false);
        assert!(text.contains("CONNECTIONS AFTER THE STOP SIGNAL (2, newest first)"), "{text}");
        assert!(text.contains("... 1 older not shown (--max-kills 0 lists all)"), "{text}");
        assert!(text.contains("0 terminations still received connections in their last second; 2 connections cut by SIGKILL."), "{text}");
    }

    #[test]
    fn text_wraps_inside_its_width() {
        let w = wrap("aaa bbb ccc ddd", 8, 2);
        assert_eq!(w, "aaa bbb\n  ccc ddd");
        assert_eq!(wrap("", 8, 2), "");
    }

    #[test]
    fn pods_that_ended_are_listed_slowest_first_with_a_broken_order() {
        let lines = [
            r#"{"ts":"2026-08-01T02:00:05Z","kind":"pod","namespace":"shop","pod":"web-1","workload":"web","outcome":"killed","termination_seconds":31.2,"held_up_by":"app","kills":1,"order_kept":false,"order_broken":["sidecar proxy got its stop signal 5.000 s before main container app exited"]}"#,
            r#"{"ts":"2026-08-01T02:00:06Z","kind":"pod","namespace":"shop","pod":"web-2","workload":"web","outcome":"graceful","termination_seconds":0.4,"held_up_by":"proxy","kills":0,"order_kept":true}"#,
        ];
        let mut s = Summary::default();
        for l in lines {
            s.add(&Entry::parse(l.as_bytes()).unwrap());
        }
        s.add(&graceful().build().entry().unwrap());
        let text = s.render(0, false);
        assert!(text.starts_with("1 termination "), "pods are not container terminations: {text}");
        let pods: Vec<&str> =
            text.lines().skip_while(|l| !l.starts_with("PODS ENDED (2")).collect();
        assert_eq!(pods[0], "PODS ENDED (2, slowest first; 1 with the sidecar order broken)");
        assert_eq!(
            pods[1],
            "08-01 02:00:05  shop/web-1  31 s from the first stop signal, held up by app, 1 kill"
        );
        assert!(
            pods[2].trim_start().starts_with("order broken: sidecar proxy got its stop signal"),
            "{text}"
        );
        assert!(pods.iter().any(|l| l.contains("shop/web-2  0.40 s")), "{text}");
    }
}
