//! TCP traffic at termination, end to end: real python3 servers as the main processes of runc
//! containers, in a pod network namespace of the test's own (joined by a veth pair to a client
//! namespace) or in the host's (`hostNetwork`), real clients made by the test (and kubelet's
//! probes, from an address the test puts on the host's loopback: one of the node's), and the
//! journal's `traffic` checked figure by figure against what those clients saw.
//!
//! Counts are exact: the clients stop connecting around each signal (the kernel copies its
//! counts when the signal is generated, inside `runc kill`, and the server says when it saw
//! the stop signal) and around the drain server's listener close (it says when it is about to
//! close, 0.2 s before, and when it closed). Every short connection is closed by the server
//! before the client goes on (it reads the server's EOF), so the only connections established
//! at a signal are the ones the clients hold. Times are compared on CLOCK_MONOTONIC, the clock
//! of the kernel's stamps, of python's `time.monotonic()` and of the test's: each kernel figure
//! "stop signal -> X" is checked against the window the test saw the two events in.

use std::{
    io::{self, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    process::{Command, Output, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use observer_tests::{
    by_id, free_port, monotonic, spec_container, unique, Daemon, Netns, Pidfd, Pod, Runc, Spec,
    VethPair,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);
/// The servers' port in a pod's network namespace.
const POD_PORT: u16 = 8080;
/// Connections the clients hold open across the stop signal.
const HELD: usize = 3;
/// How often the clients connect after the stop signal.
const EVERY: Duration = Duration::from_millis(100);

/// The server's kernel stamps a passive open when it processes the client's last ACK of the
/// handshake: on a veth pair or loopback that is the softirq the client's own send raises,
/// before its connect() returns to it, or at worst in ksoftirqd soon after. 0.25 s bounds the
/// latter on a loaded CI machine; it is no speed claim.
const SOFTIRQ_SLACK: f64 = 0.25;
/// Rounding of the journal's seconds (nanoseconds as f64) and of python's float times.
const EPS: f64 = 1e-6;

/// The container's main process: a line server. `hold` is answered `held` and the connection
/// kept; any other line is answered `pong` and the server closes the connection. `drain`: on
/// SIGTERM it keeps accepting for 1 s (marking `closing` 0.2 s before the end), closes its
/// listener, answers what its open connections still ask (closing each), and exits 0 1.5 s
/// after the close. `ignore`: its SIGTERM handler does nothing. Markers in its /tmp carry its
/// `time.monotonic()`.
const SERVER: &str = r#"
import os, selectors, signal, socket, sys, time

mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ACCEPT_FOR = 0.8   # after SIGTERM: still accepting (an app waiting out endpoint propagation)
CLOSING_FOR = 0.2  # then 'closing' is marked, still accepting, until the listener closes
DRAIN_FOR = 1.5    # listener closed: open connections answered, then the exit

def mark(name, text=""):
    with open("/tmp/" + name + ".part", "w") as f:
        f.write(text)
    os.rename("/tmp/" + name + ".part", "/tmp/" + name)

term_at = None
def on_term(signum, frame):
    global term_at
    if term_at is None:
        term_at = time.monotonic()
        mark("term", repr(term_at))
signal.signal(signal.SIGTERM, on_term)

ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((host, port))
ls.listen(128)
sel = selectors.DefaultSelector()
sel.register(ls, selectors.EVENT_READ)
pending = {}

def close(c):
    sel.unregister(c)
    del pending[c]
    c.close()

mark("ready")
closing = False
closed_at = None
while True:
    if mode == "drain" and term_at is not None:
        now = time.monotonic()
        if ls is not None and now >= term_at + ACCEPT_FOR + CLOSING_FOR:
            before = time.monotonic()
            sel.unregister(ls)
            ls.close()
            closed_at = time.monotonic()
            ls = None
            mark("closed", repr(before) + " " + repr(closed_at))
        elif ls is not None and now >= term_at + ACCEPT_FOR and not closing:
            closing = True
            mark("closing", repr(now))
        elif closed_at is not None and now >= closed_at + DRAIN_FOR:
            for c in list(pending):
                close(c)
            sys.exit(0)
    for key, _ in sel.select(timeout=0.01):
        s = key.fileobj
        if s is ls:
            c, _ = ls.accept()
            sel.register(c, selectors.EVENT_READ)
            pending[c] = b""
            continue
        try:
            data = s.recv(4096)
        except ConnectionError:
            data = b""
        if not data:
            close(s)
            continue
        pending[s] += data
        while s in pending and b"\n" in pending[s]:
            line, pending[s] = pending[s].split(b"\n", 1)
            if line == b"hold":
                s.sendall(b"held\n")
            else:
                s.sendall(b"pong\n")
                close(s)
"#;

/// A server container (its main process [`SERVER`]) and the network it serves on.
struct Server {
    // Dropped in this order: the container, then its pod, then the namespaces it was in.
    runc: Runc,
    pidfd: Pidfd,
    _pod: Pod,
    cid: String,
    /// Its pod's network namespace and the clients', or None: the host's.
    net: Option<VethPair>,
    /// Where the clients connect.
    addr: SocketAddr,
}

impl Server {
    /// A `mode` server in a pod network of its own, on [`POD_PORT`]; once it listens.
    fn in_pod(d: &Daemon, ns: &str, mode: &str) -> Self {
        Self::start(d, ns, mode, Some(VethPair::spawn()), POD_PORT)
    }

    /// A `mode` server in a host-network container (no network namespace of its own) on
    /// 127.0.0.1:`port`; once it listens.
    fn on_host(d: &Daemon, ns: &str, mode: &str, port: u16) -> Self {
        Self::start(d, ns, mode, None, port)
    }

    fn start(d: &Daemon, ns: &str, mode: &str, net: Option<VethPair>, port: u16) -> Self {
        let bind = if net.is_some() { "0.0.0.0" } else { "127.0.0.1" };
        let spec = Spec::host(&["python3", "/config/server.py", mode, bind, &port.to_string()])
            .file("server.py", SERVER);
        let spec = match &net {
            Some(n) => spec.join_namespace("network", &n.server.path()),
            None => spec.without_namespace("network"),
        };
        let (pod, cid, runc) = spec_container(d, ns, "web-7d4b9c6f8-x2k9p", &spec);
        let pid = runc.pid().unwrap();
        let pidfd = Pidfd::open(pid).unwrap();
        let own = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
        let want = match &net {
            Some(n) => std::fs::read_link(n.server.path()).unwrap(),
            None => std::fs::read_link("/proc/self/ns/net").unwrap(),
        };
        assert_eq!(own, want, "the server's network namespace");
        let addr = match &net {
            Some(_) => (VethPair::SERVER, port).into(),
            None => ([127, 0, 0, 1], port).into(),
        };
        wait_marker(pid, "ready");
        Self { runc, pidfd, _pod: pod, cid, net, addr }
    }

    fn pid(&self) -> u32 {
        self.pidfd.pid
    }

    /// Its clients: in the client namespace, or on the host's loopback.
    fn clients(&self) -> Clients<'_> {
        Clients { netns: self.net.as_ref().map(|n| &n.client), addr: self.addr, from: None }
    }

    /// kubelet on the node at `node` (an address of the host's, [`HostAddress`]): clients in
    /// the client namespace that connect from `node` too, routed to from the pod's side, as
    /// kubelet's probes come from the host's side of a pod's network.
    fn kubelet_at(&self, node: Ipv4Addr) -> Clients<'_> {
        let net = self.net.as_ref().expect("a pod network of its own");
        net.add_client_address(node);
        Clients { from: Some(node), ..self.clients() }
    }

    /// A sidecar of the pod: connects from inside the pod's network namespace to the server
    /// over loopback (a proxy in front of its app, an exec probe's `curl localhost`).
    fn sidecar(&self) -> Clients<'_> {
        let net = self.net.as_ref().expect("a pod network of its own");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.addr.port()));
        Clients { netns: Some(&net.server), addr, from: None }
    }
}

/// The server's marker `name`, if written (its /tmp, a tmpfs of its own mount namespace).
fn marker(pid: u32, name: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/root/tmp/{name}")).ok()
}

fn wait_marker(pid: u32, name: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(m) = marker(pid, name) {
            return m;
        }
        assert!(Instant::now() < deadline, "the server (pid {pid}) never marked {name}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A signal sent with `runc kill`, and the CLOCK_MONOTONIC window it was sent in (the kernel's
/// stamp of it lies inside).
#[derive(Debug, Clone, Copy)]
struct Window {
    before: f64,
    after: f64,
}

fn send(runc: &Runc, sig: &str) -> Window {
    let before = monotonic();
    runc.kill(sig).unwrap();
    Window { before, after: monotonic() }
}

/// A connection a client made: when its connect() was called and returned.
#[derive(Debug, Clone, Copy)]
struct Connect {
    called: f64,
    returned: f64,
}

/// The clients: connections to `addr` from a namespace of the test's (or the host's), from
/// its address `from` if given (in a namespace of the test's only).
struct Clients<'a> {
    netns: Option<&'a Netns>,
    addr: SocketAddr,
    from: Option<Ipv4Addr>,
}

impl Clients<'_> {
    fn connect(&self) -> (Connect, io::Result<TcpStream>) {
        let called = monotonic();
        let s = match (self.netns, self.from) {
            (Some(n), Some(from)) => n.connect_from(from, self.addr),
            (Some(n), None) => n.connect(self.addr),
            (None, _) => TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)),
        };
        (Connect { called, returned: monotonic() }, s)
    }

    /// A short connection: `ping`, `pong`, and the server's EOF. Err: the connect failed.
    fn ping(&self) -> io::Result<Connect> {
        self.short("ping")
    }

    /// A short connection asking `line`.
    fn short(&self, line: &str) -> io::Result<Connect> {
        let (c, s) = self.connect();
        finish(s?, line);
        Ok(c)
    }

    /// A connection held open: `hold`, `held`.
    fn hold(&self) -> (Connect, TcpStream) {
        let (c, s) = self.connect();
        let mut s = s.unwrap_or_else(|e| panic!("connect {}: {e}", self.addr));
        assert_eq!(request(&mut s, "hold"), "held\n");
        (c, s)
    }

    /// Before the stop: `pings` short connections, closed, then `held` held open.
    fn before_stop(&self, pings: usize, held: usize) -> Vec<TcpStream> {
        for _ in 0..pings {
            self.ping().expect("served before the stop");
        }
        (0..held).map(|_| self.hold().1).collect()
    }
}

/// One line out, one line back.
fn request(s: &mut TcpStream, line: &str) -> String {
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while !got.ends_with(b"\n") {
        match s.read(&mut b) {
            Ok(0) => break,
            Ok(_) => got.push(b[0]),
            Err(e) => panic!("request {line:?}: {e} after {got:?}"),
        }
    }
    String::from_utf8(got).unwrap()
}

/// `line` (any but `hold`) on `s`: answered, then closed by the server (its side leaves
/// ESTABLISHED when it closes, before the FIN the client reads).
fn finish(mut s: TcpStream, line: &str) {
    assert_eq!(request(&mut s, line), "pong\n");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("the server's EOF");
    assert!(rest.is_empty(), "{rest:?}");
}

/// Whether `s` was reset or closed by the server's end (EOF or ECONNRESET), within [`WAIT`].
fn was_cut(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut b = [0u8; 16];
    match s.read(&mut b) {
        Ok(0) => true,
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => true,
        Ok(n) => panic!("data on a held connection: {:?}", &b[..n]),
        Err(e) => panic!("a held connection was not cut: {e}"),
    }
}

/// What a termination's record and metrics are checked against, every mismatch collected
/// (one run tells all that is off), then failed on at once with the record.
struct Expect<'a> {
    d: &'a Daemon,
    ns: &'a str,
    r: Value,
    failed: Vec<String>,
}

impl<'a> Expect<'a> {
    /// The one record of container `cid`.
    fn record(d: &'a Daemon, ns: &'a str, cid: &str) -> Self {
        let r = d.wait_records(1, WAIT, by_id(cid)).remove(0);
        Self { d, ns, r, failed: Vec::new() }
    }

    fn that(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.failed.push(what());
        }
    }

    /// The record's `field` is `want`.
    fn field(&mut self, field: &str, want: impl Into<Value>) {
        let (got, want) = (self.r[field].clone(), want.into());
        self.that(got == want, || format!("{field}: {got}, expected {want}"));
    }

    /// Its `traffic.<field>` is `want` (null: absent or null).
    fn traffic(&mut self, field: &str, want: impl Into<Value>) {
        let (got, want) = (self.r["traffic"][field].clone(), want.into());
        self.that(got == want, || format!("traffic.{field}: {got}, expected {want}"));
    }

    /// Its `traffic.<field>`, seconds from the stop signal to X, lies in what the test saw: X
    /// in `[x0, x1]`, the stop signal in `stop`.
    fn seconds(&mut self, field: &str, x0: f64, x1: f64, stop: Window) {
        let got = self.r["traffic"][field].clone();
        let (lo, hi) = (x0 - stop.after - EPS, x1 - stop.before + EPS);
        let ok = got.as_f64().is_some_and(|k| (lo..=hi).contains(&k));
        self.that(ok, || format!("traffic.{field}: {got}, the test saw {lo:.6}..{hi:.6} s"));
    }

    /// `traffic.last_accepted_after_stop_signal_seconds`: the last of `after`. The kernel
    /// stamps it between the client's connect() call and [`SOFTIRQ_SLACK`] after it returned.
    fn last_accept(&mut self, after: &[Connect], stop: Window) {
        let last = after.last().expect("connections after the stop signal");
        let field = "last_accepted_after_stop_signal_seconds";
        self.seconds(field, last.called, last.returned + SOFTIRQ_SLACK, stop);
    }

    /// The namespace's traffic series: connections accepted after the stop signal and cut by
    /// the SIGKILL (counters), terminations with traffic still arriving at the exit, and the
    /// histogram of the last connection after the stop signal (one observation per
    /// termination that had one: the record's seconds).
    fn metrics(&mut self, after: u64, cut: u64, at_exit: bool) {
        let l = [("namespace", self.ns), ("workload", "web"), ("container", "main")];
        let text = self.d.metrics();
        let (last_count, last_sum) = (format!("{LAST}_count"), format!("{LAST}_sum"));
        let last = self.r["traffic"]["last_accepted_after_stop_signal_seconds"].as_f64();
        let want = [
            (AFTER_STOP, after as f64),
            (CUT, cut as f64),
            (AT_EXIT, f64::from(u8::from(at_exit))),
            (last_count.as_str(), f64::from(u8::from(after > 0))),
            (last_sum.as_str(), if after > 0 { last.unwrap_or(f64::NAN) } else { 0.0 }),
        ];
        let ns = self.ns;
        for (name, want) in want {
            let got = observer_tests::metric_value(&text, name, &l);
            let series = || {
                let ours = text.lines().filter(|s| s.contains(ns) && s.contains(name));
                ours.collect::<Vec<_>>().join("\n")
            };
            let ok = (got - want).abs() <= EPS;
            self.that(ok, || format!("{name}{l:?}: {got}, expected {want}: {}", series()));
        }
    }

    /// `observer report` for the namespace names its traffic: the connections still made
    /// after the stop signal, whether they were still arriving at the exit, and those cut by
    /// the SIGKILL, with the numbers the clients saw (words as the report puts them, its line
    /// breaks aside).
    fn report(&mut self, after: Option<u64>, at_exit: bool, cut: u64) {
        let text = self.d.report(&["--namespace", self.ns]);
        eprintln!("observer report --namespace {}:\n{text}", self.ns);
        let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut says = |phrase: String, want: bool| {
            let got = words.contains(&phrase);
            self.that(got == want, || {
                format!("report {} {phrase:?}:\n{text}", if want { "lacks" } else { "says" })
            });
        };
        if let Some(n) = after.filter(|n| *n > 0) {
            let s = if n == 1 { "" } else { "s" };
            says(format!(" {n} new connection{s} after the stop signal"), true);
        }
        says("still arriving at exit".into(), at_exit);
        if cut > 0 {
            let s = if cut == 1 { "" } else { "s" };
            says(format!(" {cut} connection{s} cut by SIGKILL"), true);
        }
    }

    fn done(self) {
        assert!(
            self.failed.is_empty(),
            "{} mismatches:\n  {}\nrecord: {:#}",
            self.failed.len(),
            self.failed.join("\n  "),
            self.r
        );
    }
}

const AFTER_STOP: &str = "container_termination_connections_after_stop_signal_total";
const CUT: &str = "container_termination_connections_cut_total";
const AT_EXIT: &str = "container_terminations_traffic_at_exit_total";
const LAST: &str = "container_termination_last_connection_after_stop_signal_seconds";

/// What the clients saw of a drain server's stop, from its stop signal on.
struct Drained {
    /// The connections accepted after the stop signal.
    after: Vec<Connect>,
    /// Connections refused once the listener had closed.
    refused: usize,
    /// When the server closed its listener (just before and after its close(2)).
    close: (f64, f64),
}

/// After the stop signal `term` of a drain server: a connection every 100 ms for 2 s, paused
/// while the listener closes (`closing` to `closed`); once it has, each of `held` asks once
/// more (answered and closed: the drain). `each_round` runs first in every round.
fn through_the_drain(
    c: &Clients,
    pid: u32,
    mut held: Vec<TcpStream>,
    term: Window,
    mut each_round: impl FnMut(),
) -> Drained {
    let (mut after, mut refused, mut drained) = (Vec::new(), 0, false);
    while monotonic() < term.after + 2.0 {
        each_round();
        let closing = marker(pid, "closing").is_some();
        let closed = marker(pid, "closed").is_some();
        if closed && !drained {
            held.drain(..).for_each(|s| finish(s, "ping"));
            drained = true;
        }
        if closing && !closed {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        match c.ping() {
            Ok(connect) => after.push(connect),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && closed => refused += 1,
            Err(e) => panic!("connect after the stop signal (listener closed: {closed}): {e}"),
        }
        std::thread::sleep(EVERY);
    }
    assert!(drained, "the server never closed its listener");
    let m = wait_marker(pid, "closed");
    let (a, b) = m.split_once(' ').unwrap();
    let close = (a.parse::<f64>().unwrap(), b.parse::<f64>().unwrap());
    assert!(!after.is_empty() && refused > 0, "{} accepted, {refused} refused", after.len());
    // The pause held: no connection was under way when the listener closed.
    assert!(after.iter().all(|a| a.returned < close.0), "{after:?} vs close at {close:?}");
    Drained { after, refused, close }
}

/// What a drain server's record says of it, against what the clients saw (`d`): it kept
/// accepting after the stop signal, closed its listener 1 s after it saw SIGTERM, drained its
/// held connections and exited 0 1.5 s later, its last accept long before.
fn drained(e: &mut Expect, d: &Drained, term: Window) {
    e.field("outcome", "graceful");
    e.field("exit_code", 0);
    e.traffic("counted_from", "container_start");
    e.traffic("established_at_stop_signal", HELD);
    e.traffic("listening_at_stop_signal", 1);
    e.traffic("accepted_after_stop_signal", d.after.len());
    // None from the node's addresses: the clients' are the client namespace's, or loopback
    // (a pod's own, never the node's).
    e.traffic("from_node_after_stop_signal", 0);
    e.last_accept(&d.after, term);
    // Inside its close(2), and no earlier than 1 s after the stop signal: the server counts
    // its second from its handler, which runs after the kernel's stamp.
    let field = "listeners_closed_after_stop_signal_seconds";
    e.seconds(field, d.close.0, d.close.1, term);
    let closed = e.r["traffic"][field].as_f64().unwrap_or(f64::NAN);
    e.that(closed >= 1.0 - EPS, || format!("traffic.{field}: {closed}, expected >= 1 s"));
    e.traffic("stopped_accepting_before_exit", true);
    e.traffic("listening_at_exit", 0);
    e.traffic("established_at_exit", 0);
    e.traffic("established_at_sigkill", Value::Null);
    e.traffic("cut_by_sigkill", 0);
    // Its listener closed 1.5 s before the exit: a connection after that is refused with no
    // state change the kernel counts, so whether traffic still arrived is unknown (null).
    e.traffic("still_arriving_at_exit", Value::Null);
    e.traffic("from_pod_after_stop_signal", 0);
    e.metrics(d.after.len() as u64, 0, false);
    e.report(Some(d.after.len() as u64), false, 0);
}

/// A server that drains: it keeps accepting for 1 s after SIGTERM, closes its listener,
/// answers what its open connections still ask, and exits 0 1.5 s later.
#[test]
fn a_server_that_drains_on_sigterm_stops_accepting_and_cuts_nothing() {
    let d = Daemon::start();
    let ns = unique("drain");
    let srv = Server::in_pod(&d, &ns, "drain");
    let c = srv.clients();
    let held = c.before_stop(5, HELD);

    let term = send(&srv.runc, "TERM");
    wait_marker(srv.pid(), "term");
    let seen = through_the_drain(&c, srv.pid(), held, term, || {});
    srv.pidfd.wait_exit(WAIT).unwrap();
    eprintln!(
        "clients: {} accepted after the stop signal, {} refused",
        seen.after.len(),
        seen.refused
    );

    let mut e = Expect::record(&d, &ns, &srv.cid);
    e.traffic("scope", "pod_network");
    e.traffic("ports", Value::Null);
    drained(&mut e, &seen, term);
    e.done();
}

/// What the record of a pod-network server that kept accepting until its SIGKILL (`kill`,
/// after the stop signal `term`) says: killed, [`HELD`] connections open at the stop signal,
/// `cut` at the SIGKILL and at the exit, all of them cut, its listener never closed.
fn killed_accepting(e: &mut Expect, term: Window, kill: Window, cut: usize) {
    e.field("outcome", "killed");
    e.field("exit_signal", "SIGKILL");
    let t2k = e.r["term_to_kill_seconds"].as_f64().unwrap_or(f64::NAN);
    let (lo, hi) = (kill.before - term.after - EPS, kill.after - term.before + EPS);
    e.that((lo..=hi).contains(&t2k), || format!("term_to_kill_seconds {t2k}: {lo}..{hi}"));
    e.traffic("scope", "pod_network");
    e.traffic("counted_from", "container_start");
    e.traffic("established_at_stop_signal", HELD);
    e.traffic("established_at_sigkill", cut);
    e.traffic("established_at_exit", cut);
    e.traffic("cut_by_sigkill", cut);
    // It never closed its listener.
    e.traffic("listening_at_stop_signal", 1);
    e.traffic("listening_at_exit", 1);
    e.traffic("listeners_closed_after_stop_signal_seconds", Value::Null);
    e.traffic("stopped_accepting_before_exit", false);
}

/// A server that ignores SIGTERM and keeps accepting; clients keep connecting and holding
/// connections; SIGKILL 2 s after the stop signal, as kubelet's after a 2 s grace period.
#[test]
fn a_server_killed_while_accepting_had_traffic_arriving_and_its_connections_cut() {
    let d = Daemon::start();
    let ns = unique("cut");
    let srv = Server::in_pod(&d, &ns, "ignore");
    let c = srv.clients();
    let mut held = c.before_stop(3, HELD);

    let term = send(&srv.runc, "TERM");
    wait_marker(srv.pid(), "term");
    // Every 100 ms until the SIGKILL: a held connection, then a short one, in turn.
    let mut after = Vec::new();
    while monotonic() < term.after + 1.9 {
        let connect = if after.len() % 2 == 0 {
            let (connect, s) = c.hold();
            held.push(s);
            connect
        } else {
            c.ping().expect("the server keeps accepting")
        };
        after.push(connect);
        std::thread::sleep(EVERY);
    }
    let kill = send(&srv.runc, "KILL");
    srv.pidfd.wait_exit(WAIT).unwrap();
    assert!(held.iter_mut().all(was_cut), "every held connection was cut");
    let cut = held.len();
    eprintln!("clients: {} connections after the stop signal, {cut} held and cut", after.len());

    let mut e = Expect::record(&d, &ns, &srv.cid);
    killed_accepting(&mut e, term, kill, cut);
    e.traffic("accepted_after_stop_signal", after.len());
    e.traffic("from_node_after_stop_signal", 0);
    e.last_accept(&after, term);
    // The last connection came ~0.1 s before the SIGKILL, and the exit right after it.
    e.traffic("still_arriving_at_exit", true);
    e.metrics(after.len() as u64, cut as u64, true);
    e.report(Some(after.len() as u64), true, cut as u64);
    e.done();
}

/// SIGKILL with no stop signal, connections open: all of them cut, nothing "after".
#[test]
fn a_sigkill_without_stop_signal_cuts_the_open_connections() {
    const OPEN: usize = 4;
    let d = Daemon::start();
    let ns = unique("force");
    let srv = Server::in_pod(&d, &ns, "ignore");
    let mut held = srv.clients().before_stop(2, OPEN);
    send(&srv.runc, "KILL");
    srv.pidfd.wait_exit(WAIT).unwrap();
    assert!(held.iter_mut().all(was_cut), "every held connection was cut");

    let mut e = Expect::record(&d, &ns, &srv.cid);
    e.field("outcome", "killed_without_stop_signal");
    e.traffic("scope", "pod_network");
    e.traffic("counted_from", "container_start");
    e.traffic("established_at_sigkill", OPEN);
    e.traffic("established_at_exit", OPEN);
    e.traffic("cut_by_sigkill", OPEN);
    e.traffic("listening_at_exit", 1);
    // No stop signal: nothing is "after" it.
    for none in [
        "accepted_after_stop_signal",
        "from_node_after_stop_signal",
        "last_accepted_after_stop_signal_seconds",
        "still_arriving_at_exit",
        "established_at_stop_signal",
        "listening_at_stop_signal",
        "listeners_closed_after_stop_signal_seconds",
        "stopped_accepting_before_exit",
    ] {
        e.traffic(none, Value::Null);
    }
    e.metrics(0, OPEN as u64, false);
    e.report(None, false, OPEN as u64);
    e.done();
}

/// Loopback traffic of the host's own, outside any container, on a port of its own: a
/// listener that keeps what it accepts, until dropped.
struct Unrelated {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Unrelated {
    fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut kept = Vec::new();
            // Until told to stop and nothing is left to accept.
            loop {
                match l.accept() {
                    Ok((s, _)) => kept.push(s),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if flag.load(Ordering::Relaxed) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(e) => panic!("unrelated accept: {e}"),
                }
            }
            kept.len()
        });
        Self { addr, stop, thread: Some(thread) }
    }

    /// Ends the listener; how many connections it accepted.
    fn accepted(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Unrelated {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A host-network container: only the connections to the port it listens on are its.
#[test]
fn a_host_network_server_counts_its_own_port_only() {
    let d = Daemon::start();
    let ns = unique("hostnet");
    let port = free_port();
    let unrelated = Unrelated::start();
    let mut other = Vec::new();
    let srv = Server::on_host(&d, &ns, "drain", port);
    let c = srv.clients();
    let o = Clients { netns: None, addr: unrelated.addr, from: None };
    other.extend((0..5).map(|_| o.connect().1.unwrap()));
    let held = c.before_stop(5, HELD);

    let term = send(&srv.runc, "TERM");
    wait_marker(srv.pid(), "term");
    // The host's own traffic goes on throughout, two connections a round.
    let seen = through_the_drain(&c, srv.pid(), held, term, || {
        for _ in 0..2 {
            other.push(o.connect().1.unwrap());
        }
    });
    srv.pidfd.wait_exit(WAIT).unwrap();
    let unrelated_port = unrelated.addr.port();
    let unrelated_accepted = unrelated.accepted();
    assert_eq!(unrelated_accepted, other.len(), "the host's own connections, all accepted");
    drop(other);

    eprintln!(
        "clients: {} accepted after the stop signal on port {port}, {} refused; \
         {unrelated_accepted} unrelated connections on port {unrelated_port}",
        seen.after.len(),
        seen.refused,
    );

    let mut e = Expect::record(&d, &ns, &srv.cid);
    e.traffic("scope", "host_ports");
    e.traffic("ports", serde_json::json!([port]));
    // Exactly the container's port's clients (`drained`): none of the host's other loopback
    // traffic, which went on throughout.
    drained(&mut e, &seen, term);
    e.done();
}

/// An address of the host's own on its `lo`, until dropped (also on a panic): one of the
/// node's local addresses (a `/32 host LOCAL` entry of `/proc/1/net/fib_trie`), as the node
/// address kubelet's probes come from. Labelled `lo:observer-it`, so one left by a test killed
/// outright is told by `ip addr show dev lo label lo:observer-it`.
struct HostAddress {
    ip: Ipv4Addr,
}

impl HostAddress {
    const LABEL: &'static str = "lo:observer-it";

    /// The first of 10.213.0.5 ..= 10.213.0.254 (past [`VethPair`]'s /30) not on the host yet,
    /// added to its `lo` (the test's network namespace: the host's, whose /proc/1/net the
    /// daemon reads). The add is the claim: a concurrent run's address is refused and the
    /// next one tried.
    fn claim() -> Self {
        for last in 5..=254 {
            let ip = Ipv4Addr::new(10, 213, 0, last);
            let out = Self::ip("add", ip);
            if out.status.success() {
                return Self { ip };
            }
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("already assigned"), "ip addr add {ip}/32 dev lo: {err}");
        }
        panic!("10.213.0.5-254 all on the host's lo: `ip addr show dev lo label {}`", Self::LABEL);
    }

    /// `ip addr <verb> <ip>/32 dev lo label lo:observer-it` in the host's namespace.
    fn ip(verb: &str, ip: Ipv4Addr) -> Output {
        Command::new("ip")
            .args(["addr", verb, &format!("{ip}/32"), "dev", "lo", "label", Self::LABEL])
            .stdin(Stdio::null())
            .output()
            .expect("ip (iproute2) is needed: apt-get install iproute2")
    }
}

impl Drop for HostAddress {
    fn drop(&mut self) {
        let out = Self::ip("del", self.ip);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            eprintln!("ip addr del {}/32 dev lo: {err}", self.ip);
        }
    }
}

/// How often kubelet probes (a readiness probe's `periodSeconds` is 1 s at the least: faster
/// here, so that several come within the last second).
const PROBE_EVERY: Duration = Duration::from_millis(200);
/// What kubelet's httpGet probe asks first: its request line (answered `pong` and closed, as
/// any line: the kernel sees the connection only).
const HTTP_GET: &str = "GET /healthz HTTP/1.1\r";

/// kubelet's readiness probe through a pod's termination (it goes on until the pod is gone):
/// an httpGet every [`PROBE_EVERY`], each made holding `gate`, until the gate says `true` (or
/// [`WAIT`] has passed: a test that failed elsewhere is not held up). The test holds the gate
/// around a signal, so no probe is under way when the kernel copies its counts. The probes made.
fn probe_until_stopped(kubelet: &Clients, gate: &Mutex<bool>) -> Vec<Connect> {
    let (mut made, deadline) = (Vec::new(), Instant::now() + WAIT);
    while Instant::now() < deadline {
        {
            let stop = gate.lock().unwrap();
            if *stop {
                break;
            }
            made.push(kubelet.short(HTTP_GET).expect("the server accepts kubelet's probes"));
        }
        std::thread::sleep(PROBE_EVERY);
    }
    made
}

/// kubelet's readiness probes, from an address of the node's own (the host's side of the pod
/// network), go on through the whole termination, within its last second too: counted apart
/// (`from_node_after_stop_signal`), they are no clients: `accepted_after_stop_signal`, its last
/// one's time, `still_arriving_at_exit` and the metrics are the clients' alone, who stop 1 s
/// after the stop signal. The server ignores SIGTERM and keeps accepting; SIGKILL 2.5 s after
/// the stop signal.
#[test]
fn kubelets_probes_from_a_node_address_are_no_clients_arriving_at_exit() {
    // Before the daemon starts: it reads the node's addresses at its start (then every 10 s).
    let node = HostAddress::claim();
    let d = Daemon::start();
    let log = d.log();
    let told = log.lines().rfind(|l| l.contains("the node's addresses (told apart from clients):"));
    let listed = told.and_then(|l| l.rsplit_once("):")).map(|(_, a)| a.split(", "));
    assert!(
        listed.is_some_and(|mut a| a.any(|a| a.trim() == node.ip.to_string())),
        "the daemon's log names {} among the node's addresses:\n{log}\n/proc/1/net/fib_trie:\n{}",
        node.ip,
        std::fs::read_to_string("/proc/1/net/fib_trie").unwrap_or_default()
    );
    let ns = unique("probes");
    let srv = Server::in_pod(&d, &ns, "ignore");
    let (c, kubelet, sidecar) = (srv.clients(), srv.kubelet_at(node.ip), srv.sidecar());
    let mut held = c.before_stop(3, HELD);

    let gate = Mutex::new(false);
    let (term, kill, after, probes, inside) = std::thread::scope(|s| {
        let probing = s.spawn(|| probe_until_stopped(&kubelet, &gate));
        // And a sidecar of the pod's, over loopback, as long (its connections are the pod's own).
        let proxying = s.spawn(|| probe_until_stopped(&sidecar, &gate));
        // A few probes before the stop signal: not "after" it.
        std::thread::sleep(PROBE_EVERY * 3);
        let term = {
            let _paused = gate.lock().unwrap();
            send(&srv.runc, "TERM")
        };
        wait_marker(srv.pid(), "term");
        // The clients: every 100 ms for 1 s, then no more (the endpoint removal reached them).
        let mut after = Vec::new();
        while monotonic() < term.after + 1.0 {
            after.push(c.ping().expect("the server keeps accepting"));
            std::thread::sleep(EVERY);
        }
        // kubelet goes on probing until the SIGKILL, which it does not outlive.
        std::thread::sleep(Duration::from_secs_f64((term.after + 2.5 - monotonic()).max(0.0)));
        let kill = {
            let mut stop = gate.lock().unwrap();
            *stop = true;
            send(&srv.runc, "KILL")
        };
        (term, kill, after, probing.join().unwrap(), proxying.join().unwrap())
    });
    let inside: Vec<Connect> = inside.into_iter().filter(|p| p.called > term.after).collect();
    assert!(!inside.is_empty(), "the sidecar connected after the stop signal");
    srv.pidfd.wait_exit(WAIT).unwrap();
    assert!(held.iter_mut().all(was_cut), "every held connection was cut");
    // The gate holds no probe across a signal: each came wholly before or after the stop.
    let (before, probes): (Vec<Connect>, Vec<Connect>) =
        probes.into_iter().partition(|p| p.returned < term.before);
    assert!(probes.iter().all(|p| p.called > term.after), "{probes:?} vs the stop in {term:?}");
    assert!(probes.last().is_some_and(|p| p.returned < kill.before), "{probes:?} vs {kill:?}");
    assert!(!before.is_empty() && !after.is_empty(), "{before:?}, {after:?}");
    eprintln!(
        "clients: {} connections after the stop signal; kubelet at {}: {} probes before it, {} \
         after",
        after.len(),
        node.ip,
        before.len(),
        probes.len()
    );

    let mut e = Expect::record(&d, &ns, &srv.cid);
    // Only the held connections open at the SIGKILL: every probe was closed by then.
    killed_accepting(&mut e, term, kill, HELD);
    e.traffic("from_node_after_stop_signal", probes.len());
    // The sidecar's, in on loopback: the pod's own, neither clients' nor the node's.
    e.traffic("from_pod_after_stop_signal", inside.len());
    e.traffic("accepted_after_stop_signal", after.len());
    // The clients' last, 1.5 s before the probes' last.
    e.last_accept(&after, term);
    // The exit on the test's clock, from the kernel's stop signal -> exit: kubelet's last
    // probe came within its last second (its kernel stamp no earlier than its connect()
    // call), the clients' last more than a second before it.
    let t2e = e.r["term_to_exit_seconds"].as_f64().unwrap_or(f64::NAN);
    let (exit_lo, exit_hi) = (term.before + t2e - EPS, term.after + t2e + EPS);
    let (probe, client) = (probes.last().unwrap(), after.last().unwrap());
    let probe_before_exit = exit_hi - probe.called;
    e.that(probe_before_exit < 1.0, || {
        format!("kubelet's last probe {probe_before_exit:.6} s before the exit, expected < 1 s")
    });
    let client_before_exit = exit_lo - (client.returned + SOFTIRQ_SLACK);
    e.that(client_before_exit > 1.0, || {
        format!("the clients' last {client_before_exit:.6} s before the exit, expected > 1 s")
    });
    e.traffic("still_arriving_at_exit", false);
    // The clients' connections only, in the counters as in the histogram of the last one.
    e.metrics(after.len() as u64, HELD as u64, false);
    e.report(Some(after.len() as u64), false, HELD as u64);
    e.done();
}
