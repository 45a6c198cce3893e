//! `observer drill`: stop a workload the way kubelet stops a container, and report what the
//! kernel saw.
//!
//! The sequence is [`crate::kubelet`]'s; an [`Executor`] carries it out (process mode:
//! [`process::ProcessExecutor`]; a CRI executor plugs in beside it). The probes are the
//! daemon's, loaded by the drill itself, and the report is built from what they saw, with the
//! daemon's own correlator and record: the drill's `--json` line is a journal record, and a
//! daemon watching at the same time writes the same one.
//!
//! Exit status: 0 the workload exited gracefully; 3 SIGKILL was needed; 4 the preStop hook
//! overran (no SIGKILL); 1 error; 2 usage.

pub mod args;
pub mod cri;
pub mod process;
pub mod report;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    process::ExitCode,
    sync::mpsc,
    time::Duration,
};

use self::args::{DrillArgs, HttpTarget};
use crate::{
    clock::{monotonic_ns, WallClock},
    correlate::{Correlator, Termination},
    events::{self, Event},
    kernel::loader::{self, ProbeOptions},
    kubelet::{Action, Engine, Input, Plan},
    metadata::{annotations::PreStopHandler, Identity, Metadata},
    record::Record,
    signals,
};

/// How often the drill looks at the workload, the hook and the ring buffer. Only when the
/// drill acts depends on it (as kubelet's and the runtime's own latency would); every time in
/// the report is the kernel's.
pub const POLL: Duration = Duration::from_millis(2);
/// How long after PID 1's exit the drill waits for the probes' record of it.
pub const RECORD_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Setup(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("loading the probes: {0}")]
    Probes(String),
    #[error(
        "the workload exited {0}, before any stop signal; a drill needs a long-running workload"
    )]
    ExitedEarly(&'static str),
    #[error("the probes saw no termination of PID 1 ({0}) within {RECORD_WAIT:?} of its exit")]
    NotSeen(u32),
}

/// The container an executor runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Hierarchy-relative cgroup v2 path (`/kubepods/besteffort/pod<uid>/<id>`).
    pub cgroup_path: String,
    /// Its cgroup v2 id (the directory's inode).
    pub cgroup_id: u64,
    /// Host pid of PID 1.
    pub pid: u32,
}

/// What carries the sequence out: the container's runtime, or its stand-in.
pub trait Executor {
    fn container(&self) -> &Container;
    /// Starts `sh -c command` inside the container, as the runtime's exec does.
    fn start_prestop_exec(&mut self, command: &str) -> Result<(), DrillError>;
    /// Whether the exec hook started by [`Executor::start_prestop_exec`] still runs.
    fn prestop_exec_running(&mut self) -> bool;
    /// Sends `sig` to PID 1 from the host.
    fn send_signal(&mut self, sig: u32) -> Result<(), DrillError>;
    /// The runtime's stop: the stop signal now, SIGKILL after `window_seconds` (kubelet's
    /// StopContainer timeout). By default the drill sends both itself.
    fn stop(&mut self, sig: u32, window_seconds: u64) -> Result<(), DrillError> {
        let _ = window_seconds;
        self.send_signal(sig)
    }
    /// The window ran out. A runtime that was given the window kills on its own.
    fn kill(&mut self) -> Result<(), DrillError> {
        self.send_signal(crate::signals::SIGKILL)
    }
    fn pid1_exited(&mut self) -> bool;
    /// PID 1 and every session the drill started have exited.
    fn finished(&mut self) -> bool;
    /// What the executor knows about the container beyond its cgroup path (a runtime knows
    /// the names, image and runtime it created it with).
    fn identity(&self) -> Option<Identity> {
        None
    }
}

/// The preStop hook to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    Exec(String),
    Http(HttpTarget),
    Sleep(Duration),
}

impl Hook {
    /// The hook in the `preStopHandler` annotation's terms.
    pub fn handler(&self) -> PreStopHandler {
        match self {
            Self::Exec(cmd) => {
                PreStopHandler::Exec { command: vec!["sh".into(), "-c".into(), cmd.clone()] }
            }
            Self::Http(t) => PreStopHandler::HttpGet {
                scheme: "HTTP".into(),
                host: Some(t.host.clone()),
                port: t.port.to_string(),
                path: t.path.clone(),
            },
            Self::Sleep(d) => PreStopHandler::Sleep { seconds: d.as_secs() as i64 },
        }
    }
}

impl DrillArgs {
    pub fn hook(&self) -> Option<Hook> {
        if let Some(c) = &self.prestop_exec {
            return Some(Hook::Exec(c.clone()));
        }
        if let Some(t) = &self.prestop_http {
            return Some(Hook::Http(t.clone()));
        }
        self.prestop_sleep.map(|s| Hook::Sleep(Duration::from_secs(s)))
    }
}

/// `observer drill` from main: runs it, prints the report, maps the result to the exit status.
pub fn main(args: DrillArgs) -> ExitCode {
    match run(&args) {
        Ok(outcome) => {
            let text = if args.json {
                serde_json::to_string(&outcome.record).expect("a Record always serializes")
            } else {
                outcome.report.to_string()
            };
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            ExitCode::from(outcome.report.verdict.exit_status)
        }
        Err(DrillError::Usage(e)) => {
            eprintln!("observer drill: {e}");
            ExitCode::from(report::status::USAGE)
        }
        Err(e) => {
            eprintln!("observer drill: {e}");
            ExitCode::from(report::status::ERROR)
        }
    }
}

/// What a drill found.
pub struct Outcome {
    pub record: Record,
    pub report: report::Report,
}

/// The probes, loaded and attached (the daemon's bring-up), and the drill's view of their
/// events.
struct Observer {
    probes: loader::Probes,
    correlator: Correlator,
    /// Ring-buffer records that did not decode.
    undecoded: u64,
}

impl Observer {
    fn start(options: &ProbeOptions) -> Result<Self, DrillError> {
        let probes =
            loader::Probes::start(options, None).map_err(|e| DrillError::Probes(e.to_string()))?;
        Ok(Self { probes, correlator: Correlator::new(), undecoded: 0 })
    }

    /// Records the kernel side could not emit or read (every counter whose meaning is a
    /// loss, OOM records included), and records we could not decode: a report built without
    /// them may miss a step, so the drill says so.
    fn lost(&self) -> u64 {
        self.probes.counters.lost() + self.undecoded
    }

    fn drain(&mut self) {
        while let Some(item) = self.probes.ring.next() {
            match events::decode(&item) {
                Ok(Event::CgroupMkdir(_) | Event::CgroupRmdir(_)) => {}
                Ok(ev) => self.correlator.ingest(&ev),
                Err(e) => {
                    log::warn!("bad ring-buffer record: {e}");
                    self.undecoded += 1;
                }
            }
        }
    }

    /// PID `pid`'s termination once the correlator closed it.
    fn termination_of(&mut self, pid: u32) -> Option<Termination> {
        self.drain();
        self.correlator.drain_closed(monotonic_ns()).into_iter().find(|t| t.pid == pid)
    }
}

/// The hook in flight.
enum Running {
    Exec,
    Http(mpsc::Receiver<Result<u16, String>>),
    Sleep { until_ns: u64 },
}

/// Runs the drill in process mode.
pub fn run(args: &DrillArgs) -> Result<Outcome, DrillError> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(DrillError::Setup(
            "observer drill needs root (eBPF probes, namespaces, cgroups)".into(),
        ));
    }
    if args.stop_signal == signals::SIGKILL {
        return Err(DrillError::Usage("the stop signal cannot be SIGKILL".into()));
    }
    let mut options =
        ProbeOptions { cgroup_prefix: args.cgroup_root.clone(), ..Default::default() };
    if !options.stop_signals.contains(&args.stop_signal) {
        options.stop_signals.push(args.stop_signal);
    }
    // Sessions the hook leaves behind are reparented to us, so we can reap them (PID 1's
    // exit completes only once every process of its pid namespace is reaped).
    // SAFETY: plain prctl.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } != 0 {
        return Err(DrillError::Io {
            what: "prctl(PR_SET_CHILD_SUBREAPER)".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    let mut observer = Observer::start(&options)?;
    let mut clock = WallClock::measure();
    match (&args.cri_endpoint, &args.image) {
        (Some(endpoint), Some(image)) => {
            let mut executor = cri::CriExecutor::start(endpoint, image, args)?;
            drive(args, &mut observer, &mut executor, &mut clock)
        }
        _ => {
            let mut executor = process::ProcessExecutor::start(&args.cgroup_root, &args.command)?;
            drive(args, &mut observer, &mut executor, &mut clock)
        }
    }
}

fn drive(
    args: &DrillArgs,
    observer: &mut Observer,
    executor: &mut dyn Executor,
    clock: &mut WallClock,
) -> Result<Outcome, DrillError> {
    let container = executor.container().clone();
    // The cgroup_mkdir probe saw the cgroup being made and the exec probe its PID 1; say
    // both again, in case they came before the probes were attached. The drill started the
    // process itself: its word is the runtime's.
    let main = crate::existing::proc_of(container.pid).map(|p| (p.key.tgid, p.key.start_ticks));
    if let Err(e) =
        observer.probes.watch_existing(container.cgroup_id, &container.cgroup_path, main, true)
    {
        return Err(DrillError::Probes(format!("watching the container's cgroup: {e}")));
    }
    // The drill knows what kubelet would have been told: the cgroup path gives the ids, the
    // arguments give the grace period and the preStop hook.
    let mut metadata = Metadata::new();
    let _ = metadata.learn(container.cgroup_id, &container.cgroup_path);
    let mut identity = metadata.identity(container.cgroup_id).cloned().unwrap_or_else(|| {
        Identity { cgroup: container.cgroup_path.clone(), ..Default::default() }
    });
    if let Some(known) = executor.identity() {
        identity = Identity { cgroup: identity.cgroup, qos: identity.qos, ..known };
    }
    identity.grace_period_seconds = Some(args.grace_period);
    identity.prestop_handler = args.hook().map(|h| h.handler());
    log::info!(
        "PID 1 is pid {} in {}; stopping it in {:?}",
        container.pid,
        container.cgroup_path,
        args.start_after
    );

    // Let the workload start (install its handlers).
    let start_at = monotonic_ns() + args.start_after.as_nanos() as u64;
    while monotonic_ns() < start_at {
        observer.drain();
        if executor.pid1_exited() {
            return Err(DrillError::ExitedEarly("early (its output is above)"));
        }
        std::thread::sleep(POLL);
    }

    let hook = args.hook();
    let mut engine =
        Engine::new(Plan { grace_period_seconds: args.grace_period, has_prestop: hook.is_some() });
    let mut running: Option<Running> = None;
    let mut hook_error = None;
    let mut signalled = false;
    let mut action = engine.step(Input::Start, monotonic_ns());
    loop {
        match action {
            Action::RunPreStop { .. } => {
                running = Some(match hook.clone().expect("RunPreStop only with a hook") {
                    Hook::Exec(cmd) => {
                        executor.start_prestop_exec(&cmd)?;
                        Running::Exec
                    }
                    Hook::Http(target) => Running::Http(http_get(target)),
                    Hook::Sleep(d) => {
                        Running::Sleep { until_ns: monotonic_ns() + d.as_nanos() as u64 }
                    }
                });
            }
            Action::SendStopSignal { window_seconds, prestop_timed_out, .. } => {
                if prestop_timed_out {
                    log::info!("preStop hook not completed in the grace period");
                }
                log::info!(
                    "sending {} to PID 1, SIGKILL in {window_seconds} s",
                    signals::name(args.stop_signal)
                );
                executor.stop(args.stop_signal, window_seconds)?;
                signalled = true;
            }
            Action::SendKill => executor.kill()?,
            Action::Done => break,
            Action::Wait => {}
        }
        std::thread::sleep(POLL);
        observer.drain();
        let now = monotonic_ns();
        let hook_done = match &running {
            Some(Running::Exec) => !executor.prestop_exec_running(),
            Some(Running::Http(rx)) => match rx.try_recv() {
                Ok(result) => {
                    hook_error = match result {
                        Ok(status) if (200..400).contains(&status) => None,
                        Ok(status) => Some(format!("HTTP {status}")),
                        Err(e) => Some(e),
                    };
                    true
                }
                Err(mpsc::TryRecvError::Empty) => false,
                Err(mpsc::TryRecvError::Disconnected) => true,
            },
            Some(Running::Sleep { until_ns }) => now >= *until_ns,
            None => false,
        };
        action = if executor.pid1_exited() {
            engine.step(Input::Exited, now)
        } else if hook_done {
            running = None;
            engine.step(Input::PreStopDone, now)
        } else {
            engine.step(Input::Tick, now)
        };
    }
    if !signalled {
        return Err(DrillError::ExitedEarly("during the preStop hook"));
    }
    if let Some(e) = &hook_error {
        log::warn!("preStop hook failed ({e}): kubelet records a FailedPreStopHook event");
    }
    // The kernel ends a timed-out exec hook with the container; reap it so PID 1's exit
    // completes, then wait for the probes' record.
    let deadline = monotonic_ns() + RECORD_WAIT.as_nanos() as u64;
    let termination = loop {
        executor.finished();
        if let Some(t) = observer.termination_of(container.pid) {
            break t;
        }
        if monotonic_ns() > deadline {
            return Err(DrillError::NotSeen(container.pid));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let lost = observer.lost();
    if lost > 0 {
        log::warn!("{lost} kernel records were lost or unreadable: the report may miss a step");
    }
    // A second sample after the run: the run's events lie between the two.
    clock.remeasure();
    let record = Record::new(
        &termination,
        Some(&identity),
        &hostname(),
        clock,
        &crate::node::Evidence::none(),
    );
    let report = report::Report::new(&termination, &record, args, hook_error);
    Ok(Outcome { record, report })
}

/// kubelet's HTTP hook: one GET, its status code, on a thread of its own (it is not cancelled
/// when the grace period runs out either).
fn http_get(target: HttpTarget) -> mpsc::Receiver<Result<u16, String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = (|| {
            let mut s = TcpStream::connect((target.host.as_str(), target.port))
                .map_err(|e| format!("connect {}:{}: {e}", target.host, target.port))?;
            let request = format!(
                "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: kube-lifecycle/observer-drill\r\nConnection: close\r\n\r\n",
                target.path, target.host, target.port
            );
            s.write_all(request.as_bytes()).map_err(|e| format!("send: {e}"))?;
            let mut resp = Vec::new();
            s.read_to_end(&mut resp).map_err(|e| format!("read: {e}"))?;
            let text = String::from_utf8_lossy(&resp);
            text.split_whitespace()
                .nth(1)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| "no HTTP status line in the response".to_string())
        })();
        let _ = tx.send(result);
    });
    rx
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
