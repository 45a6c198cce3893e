//! Never-panic properties of what the node hands the daemon and no module's own tests fuzz:
//! ring-buffer records ([`ring`]), the event streams the correlator and the record path see
//! ([`stream`]), a journal's tail at start ([`journal`]), `GET /terminations` query strings
//! ([`query`]), and BTF shaped like the kernel structs the loader reads ([`btf`]).
//!
//! Every property's name contains `never_panic`: `cargo xtask test` runs them bounded with the
//! other parsers' (`PROPTEST_CASES=200000`, release), `cargo xtask fuzz` as long as it is asked
//! to, with a seed it prints. A property that costs more per case (file I/O, two pipelines)
//! runs a share of the cases ([`scaled`]). Failures are persisted by proptest in
//! `observer/proptest-regressions/fuzz.txt` and replayed first by every later run. What the
//! properties found and is not fixed yet is marked `KNOWN`: a `known_*` test with the smallest
//! input each, and a step the generators skip under `FUZZ_SKIP_KNOWN` ([`skip_known`]).

use proptest::prelude::*;

/// Runs property `name` as `proptest!` does (`PROPTEST_*` from the environment, failures
/// persisted beside this file and replayed first), on a `divisor`th of the cases, at least 32:
/// for a property that costs more per case. (`proptest!`'s own `proptest_config` cannot scale:
/// the macro lets `PROPTEST_CASES` override it.)
fn scaled<S: Strategy>(
    name: &'static str,
    divisor: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut config = proptest::test_runner::contextualize_config(ProptestConfig::default());
    config.cases = (config.cases / divisor).max(32);
    config.test_name = Some(name);
    config.source_file = Some(file!());
    let mut runner = proptest::test_runner::TestRunner::new(config);
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}\n{runner}");
    }
}

/// `FUZZ_SKIP_KNOWN` set: the generators step around the bugs this file has found and not yet
/// seen fixed (each marked `KNOWN` where it is skipped), so that a long run looks for new ones.
/// Unset (`cargo xtask test`), the properties fail on them.
fn skip_known() -> bool {
    std::env::var_os("FUZZ_SKIP_KNOWN").is_some()
}

/// NUL-terminated kernel text, lossy: what a record's `comm` or path says (written apart from
/// `events.rs`'s own, as the properties' reference).
fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Ring-buffer records ([`crate::events::decode`]), as the reader hands them over, and the
/// kernel's `ENDED` values ([`crate::events::ended`]): arbitrary bytes, valid records of every
/// kind cut at every length, extended, and mutated. Each decode is compared with a reference
/// decode written from the record layouts: a record is an event exactly when it is long enough
/// for its kind, and then the event its fields say; anything else is the error the reader
/// counts as a `decode` loss.
mod ring {
    use std::mem::size_of;

    use observer_ebpf::{
        disposition, process_flags, role, CgroupEvent, Ended, EventHeader, EventKind,
        ExecSessionEvent, MainProcessEvent, OomVictimEvent, ProcessExitEvent, SignalDeliverEvent,
        SignalFact, SignalGenerateEvent, CGROUP_PATH_LEN, SI_KERNEL,
    };
    use proptest::prelude::*;

    use super::text;
    use crate::events::{
        self, CgroupChange, DecodeError, Disposition, Event, ExecSession, Kept, MainProcess,
        OomVictim, Origin, Proc, ProcKey, ProcessExit, Sender, SignalDeliver, SignalGenerate,
        SignalResult,
    };

    const HEADER: usize = size_of::<EventHeader>();
    /// The longest record (`ProcessExitEvent` or `CgroupEvent`), and some.
    const LONGEST: usize = {
        let (a, b) = (size_of::<ProcessExitEvent>(), size_of::<CgroupEvent>());
        (if a > b { a } else { b }) + 64
    };

    fn record_len(kind: EventKind) -> usize {
        match kind {
            EventKind::SignalGenerate => size_of::<SignalGenerateEvent>(),
            EventKind::SignalDeliver => size_of::<SignalDeliverEvent>(),
            EventKind::ProcessExit => size_of::<ProcessExitEvent>(),
            EventKind::CgroupMkdir | EventKind::CgroupRmdir => size_of::<CgroupEvent>(),
            EventKind::OomVictim => size_of::<OomVictimEvent>(),
            EventKind::ExecSession => size_of::<ExecSessionEvent>(),
            EventKind::MainProcess => size_of::<MainProcessEvent>(),
        }
    }

    /// The `T` at the start of `bytes`, which holds at least `size_of::<T>()`.
    fn view<T: Copy>(bytes: &[u8]) -> T {
        assert!(bytes.len() >= size_of::<T>());
        // SAFETY: length checked; every T here is a #[repr(C)] struct of integers and byte
        // arrays from observer-ebpf, valid for any bit pattern; read_unaligned for any address.
        unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
    }

    /// `v`'s bytes.
    fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: T is one of observer-ebpf's records, padding-free (explicit `_pad` fields,
        // sizes asserted at compile time there), so every byte is initialised.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    fn disposition_of(v: u32) -> Option<Disposition> {
        match v {
            disposition::DEFAULT => Some(Disposition::Default),
            disposition::IGNORED => Some(Disposition::Ignored),
            disposition::HANDLED => Some(Disposition::Handled),
            disposition::BLOCKED => Some(Disposition::Blocked),
            _ => None,
        }
    }

    fn sender(tgid: u32, comm: &[u8], si_code: i32) -> Sender {
        let from = if si_code == SI_KERNEL { Origin::Kernel } else { Origin::Host };
        Sender { pid: tgid, comm: text(comm), from }
    }

    /// A kept signal as the event it was (`SignalFact::at_ns` 0: none).
    fn kept_signal(
        f: &SignalFact,
        key: ProcKey,
        comm: &str,
        cgroup: u64,
    ) -> Option<SignalGenerate> {
        (f.at_ns != 0).then(|| SignalGenerate {
            ktime_ns: f.at_ns,
            sig: f.sig,
            result: SignalResult::from(f.result),
            target_handler: disposition_of(f.handler),
            target: Proc { pid: key.tgid, comm: comm.into() },
            target_key: key,
            target_cgroup_id: cgroup,
            sender: sender(f.sender_tgid, &f.sender_comm, f.si_code),
            sender_cgroup_id: f.sender_cgroup_id,
        })
    }

    fn exit_of(e: &ProcessExitEvent) -> Event {
        let key = ProcKey { tgid: e.tgid, start_ticks: e.start_ticks };
        let comm = text(&e.comm);
        // The wait(2) status: the signal in the low 7 bits, else the code in the next 8.
        let (exit_code, exit_signal) = match e.exit_code & 0x7f {
            0 => (Some((e.exit_code >> 8) & 0xff), None),
            sig => (None, Some(sig)),
        };
        let stop = kept_signal(&e.stop, key, &comm, e.cgroup_id);
        let stop_delivered = (e.stop.at_ns != 0 && e.stop.delivered != 0).then(|| SignalDeliver {
            ktime_ns: e.stop.at_ns,
            sig: e.stop.sig,
            disposition: disposition_of(e.stop.delivered - 1).unwrap_or(Disposition::Handled),
            key,
            cgroup_id: e.cgroup_id,
        });
        let oom = (e.flags & process_flags::OOM_VICTIM != 0 && e.kill.at_ns != 0)
            .then_some(OomVictim { ktime_ns: e.kill.at_ns, pid: e.tgid });
        let kill = kept_signal(&e.kill, key, &comm, e.cgroup_id);
        Event::ProcessExit(ProcessExit {
            ktime_ns: e.header.ktime_ns,
            key,
            main: e.role == role::MAIN,
            kept: Box::new(Kept { stop, stop_delivered, kill, oom, traffic: traffic_of(e) }),
            comm,
            exit_code,
            exit_signal,
            cgroup_id: e.cgroup_id,
        })
    }

    /// A main process's connections as the record's fields say (observer-ebpf's `NetOf` and
    /// `Traffic`): none without a namespace cookie, or for a host-network one with no port.
    fn traffic_of(e: &ProcessExitEvent) -> Option<crate::traffic::Seen> {
        use crate::traffic::{CountedFrom, Counts, Scope, Seen};
        if e.role != role::MAIN || e.net.cookie == 0 {
            return None;
        }
        let host = e.net.flags & observer_ebpf::net_flags::HOST_NETWORK != 0;
        let ports: std::collections::BTreeSet<u16> =
            e.net.ports.iter().copied().filter(|p| *p != 0).collect();
        if host && ports.is_empty() {
            return None;
        }
        let at = |t: &observer_ebpf::Traffic| {
            (t.since_ns != 0).then(|| Counts {
                since_ns: t.since_ns,
                established: t.established as i64,
                accepted: t.accepted,
                last_accept_ns: Some(t.last_accept_ns).filter(|n| *n != 0),
                node_accepted: t.node_accepted,
                inside_accepted: t.inside_accepted,
                listening: t.listening as i64,
                listen_closed: t.listen_closed,
                last_listen_close_ns: Some(t.last_listen_close_ns).filter(|n| *n != 0),
            })
        };
        Some(Seen {
            scope: if host { Scope::HostPorts } else { Scope::PodNetwork },
            ports: ports.into_iter().collect(),
            counted_from: if e.net.flags & observer_ebpf::net_flags::FROM_STOP != 0 {
                CountedFrom::StopSignal
            } else if (e.traffic_stop.flags | e.traffic_kill.flags | e.traffic_exit.flags)
                & observer_ebpf::traffic_flags::POD_PREDATES
                != 0
            {
                CountedFrom::PodOlderThanProbes
            } else {
                CountedFrom::ContainerStart
            },
            at_stop: at(&e.traffic_stop),
            at_kill: at(&e.traffic_kill),
            at_exit: at(&e.traffic_exit),
        })
    }

    /// What `bytes` must decode to.
    fn reference(bytes: &[u8]) -> Result<Event, DecodeError> {
        if bytes.len() < HEADER {
            return Err(DecodeError::Short(bytes.len()));
        }
        let raw_kind = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
        let kind = EventKind::from_u32(raw_kind).ok_or(DecodeError::UnknownKind(raw_kind))?;
        let expected = record_len(kind);
        if bytes.len() < expected {
            return Err(DecodeError::Size { kind, len: bytes.len(), expected });
        }
        let ktime_ns = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        Ok(match kind {
            EventKind::SignalGenerate => {
                let e: SignalGenerateEvent = view(bytes);
                Event::SignalGenerate(SignalGenerate {
                    ktime_ns,
                    sig: e.sig,
                    result: SignalResult::from(e.result),
                    target_handler: disposition_of(e.target_handler),
                    target: Proc { pid: e.target_tgid, comm: text(&e.target_comm) },
                    target_key: ProcKey { tgid: e.target_tgid, start_ticks: e.target_start_ticks },
                    target_cgroup_id: e.target_cgroup_id,
                    sender: sender(e.sender_tgid, &e.sender_comm, e.si_code),
                    sender_cgroup_id: e.sender_cgroup_id,
                })
            }
            EventKind::SignalDeliver => {
                let e: SignalDeliverEvent = view(bytes);
                Event::SignalDeliver(SignalDeliver {
                    ktime_ns,
                    sig: e.sig,
                    disposition: disposition_of(e.disposition).unwrap_or(Disposition::Handled),
                    key: ProcKey { tgid: e.tgid, start_ticks: e.start_ticks },
                    cgroup_id: e.cgroup_id,
                })
            }
            EventKind::ProcessExit => exit_of(&view(bytes)),
            EventKind::CgroupMkdir | EventKind::CgroupRmdir => {
                let e: CgroupEvent = view(bytes);
                let used = (e.path_len as usize).min(CGROUP_PATH_LEN);
                let c = CgroupChange {
                    ktime_ns,
                    id: e.id,
                    level: e.level,
                    path: text(&e.path[..used]),
                };
                if kind == EventKind::CgroupMkdir {
                    Event::CgroupMkdir(c)
                } else {
                    Event::CgroupRmdir(c)
                }
            }
            EventKind::OomVictim => {
                let e: OomVictimEvent = view(bytes);
                Event::OomVictim(OomVictim { ktime_ns, pid: e.pid })
            }
            EventKind::ExecSession => {
                let e: ExecSessionEvent = view(bytes);
                Event::ExecSession(ExecSession {
                    ktime_ns,
                    session: Proc { pid: e.tgid, comm: text(&e.comm) },
                    parent: Proc { pid: e.parent_tgid, comm: text(&e.parent_comm) },
                    cgroup_id: e.cgroup_id,
                })
            }
            EventKind::MainProcess => {
                let e: MainProcessEvent = view(bytes);
                Event::MainProcess(MainProcess {
                    ktime_ns,
                    main: Proc { pid: e.tgid, comm: text(&e.comm) },
                    key: ProcKey { tgid: e.tgid, start_ticks: e.start_ticks },
                    parent: Proc { pid: e.parent_tgid, comm: text(&e.parent_comm) },
                    cgroup_id: e.cgroup_id,
                })
            }
        })
    }

    /// Decodes `bytes` and checks the answer against [`reference`].
    fn decodes_as_its_fields_say(bytes: &[u8]) -> Result<(), TestCaseError> {
        let got = events::decode(bytes);
        prop_assert_eq!(&got, &reference(bytes), "{} bytes: {:02x?}", bytes.len(), bytes);
        match &got {
            Ok(ev) => {
                prop_assert_eq!(
                    ev.kind() as u32,
                    u32::from_le_bytes(bytes[..4].try_into().unwrap())
                );
                prop_assert!(bytes.len() >= record_len(ev.kind()));
            }
            // What the reader counts: every error has its label.
            Err(e) => prop_assert!(!e.metric_label().is_empty() && !e.to_string().is_empty()),
        }
        Ok(())
    }

    /// Where the text of a record of `kind` lies (comms, paths): made NUL-terminated, or given a
    /// path length that fits, where the case says, so that decoding reads real strings too.
    fn plausible(kind: EventKind, mut raw: Vec<u8>, tidy: u8) -> Vec<u8> {
        let comm = |raw: &mut Vec<u8>, at: usize| {
            if tidy & 1 != 0 {
                let n = (tidy as usize >> 1) % 16;
                raw[at + n..at + 16].fill(0);
            }
        };
        match kind {
            EventKind::CgroupMkdir | EventKind::CgroupRmdir => {
                let mut e: CgroupEvent = view(&raw);
                if tidy & 1 != 0 {
                    e.path_len = u32::from(tidy) * 2 % (CGROUP_PATH_LEN as u32 + 8);
                }
                raw = bytes_of(&e);
            }
            EventKind::ProcessExit => {
                let mut e: ProcessExitEvent = view(&raw);
                if tidy & 2 != 0 {
                    e.stop.at_ns = 0;
                }
                if tidy & 4 != 0 {
                    e.kill.at_ns = 0;
                }
                if tidy & 8 != 0 {
                    e.role = role::MAIN;
                    e.flags &= process_flags::OOM_VICTIM;
                    e.stop.delivered %= 6;
                }
                raw = bytes_of(&e);
                let at = std::mem::offset_of!(ProcessExitEvent, comm);
                comm(&mut raw, at);
            }
            EventKind::SignalGenerate => {
                comm(&mut raw, std::mem::offset_of!(SignalGenerateEvent, target_comm));
                comm(&mut raw, std::mem::offset_of!(SignalGenerateEvent, sender_comm));
            }
            EventKind::ExecSession => comm(&mut raw, std::mem::offset_of!(ExecSessionEvent, comm)),
            EventKind::MainProcess => comm(&mut raw, std::mem::offset_of!(MainProcessEvent, comm)),
            EventKind::SignalDeliver | EventKind::OomVictim => {}
        }
        raw
    }

    /// A valid record of some kind: random fields, the kind's number, the kind's length.
    fn record() -> impl Strategy<Value = (EventKind, Vec<u8>)> {
        (0..EventKind::ALL.len(), prop::collection::vec(any::<u8>(), LONGEST), any::<u8>())
            .prop_map(|(i, mut raw, tidy)| {
                let kind = EventKind::ALL[i];
                raw.truncate(record_len(kind));
                raw[..4].copy_from_slice(&(kind as u32).to_le_bytes());
                (kind, plausible(kind, raw, tidy))
            })
    }

    proptest! {
        #[test]
        fn decode_never_panics_on_arbitrary_bytes(
            mut bytes in prop::collection::vec(any::<u8>(), 0..LONGEST),
            kind in prop::option::of(0u32..12),
        ) {
            // Mostly a kind that exists, so that the length checks are reached.
            if let (Some(k), true) = (kind, bytes.len() >= 4) {
                bytes[..4].copy_from_slice(&k.to_le_bytes());
            }
            decodes_as_its_fields_say(&bytes)?;
        }

        #[test]
        fn decode_never_panics_on_cut_extended_or_mutated_records(
            (kind, raw) in record(),
            extra in prop::collection::vec(any::<u8>(), 1..24),
            flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        ) {
            let whole = events::decode(&raw);
            prop_assert!(matches!(&whole, Ok(ev) if ev.kind() == kind), "{whole:?}");
            let whole = whole.ok();
            decodes_as_its_fields_say(&raw)?;
            // Cut anywhere short of its length: an error, never an event.
            for n in 0..raw.len() {
                let expected = if n < HEADER {
                    DecodeError::Short(n)
                } else {
                    DecodeError::Size { kind, len: n, expected: raw.len() }
                };
                prop_assert_eq!(events::decode(&raw[..n]), Err(expected));
            }
            // Longer than its kind (no record the probes write): the same event or an error,
            // never another event.
            let mut longer = raw.clone();
            longer.extend_from_slice(&extra);
            match events::decode(&longer) {
                Ok(ev) => prop_assert_eq!(Some(ev), whole),
                Err(e) => prop_assert!(matches!(e, DecodeError::Size { .. }), "{e}"),
            }
            // Bytes changed anywhere, the kind too: what the changed fields say.
            let mut mutated = raw;
            for (at, xor) in flips {
                let at = at % mutated.len();
                mutated[at] ^= xor.max(1);
            }
            decodes_as_its_fields_say(&mutated)?;
        }

        #[test]
        fn ended_never_panics_on_arbitrary_entries(
            raw in prop::collection::vec(any::<u8>(), size_of::<Ended>()),
            path_len in prop_oneof![any::<u32>(), 0u32..300],
        ) {
            let mut e: Ended = view(&raw);
            e.path_len = path_len;
            let (exit, cgroup) = events::ended(&e);
            prop_assert_eq!(exit, exit_of(&e.exit));
            let used = (path_len as usize).min(CGROUP_PATH_LEN);
            prop_assert_eq!(cgroup.is_some(), used > 0);
            if let Some(c) = cgroup {
                prop_assert_eq!((c.id, c.ktime_ns), (e.cgroup_id, e.exit.header.ktime_ns));
                prop_assert_eq!(c.path, text(&e.path[..used]));
            }
        }
    }
}

/// Event streams into the correlator and the record path ([`crate::pipeline::Pipeline`], driven
/// as its own tests drive it: synthetic events, a real lookup channel, a collecting sink).
///
/// [`World`] plays the kernel: three tgids, each used by two processes one after the other (a
/// reused pid, told apart by start time), in three containers, signalled by the runtime, the
/// kernel (the OOM killer) or a sidecar; stop signals delivered, ignored or repeated, SIGKILLs,
/// OOM marks, exec sessions, exits, cgroup removals, events lost in a full ring (the kernel's
/// summary then rides on the exit; a lost exit is recovered from `ENDED` 2 to 3 s later, as
/// `daemon/ended.rs` does), and events read twice. It keeps what the kernel guarantees: a
/// process is signalled only while alive and not yet SIGKILLed (the probe drops signals to an
/// exiting process), a delivery is read after its generation and an exit after the process's
/// signals (both are ordered by the target's siglock), a cgroup's removal after everything
/// about it, and a pid is reused only long after (pids wrap far slower than any window of the
/// correlator). Within that, events are read out of order inside a tick's batch, and
/// duplicates come up to 0.9 s after the original.
///
/// Checked: no panic; every record's intervals are non-negative and agree with its timestamps;
/// one record per process that was signalled and whose exit or cgroup removal was read (none
/// for a pod's sandbox, which is counted instead), with record ids unique; the exit it carries
/// is the kernel's; what stays open is exactly what has not ended; and the same events read in
/// kernel-time order, without the duplicates, give the same records.
mod stream {
    use std::collections::HashSet;

    use chrono::DateTime;
    use proptest::prelude::*;
    use tokio::sync::mpsc;

    use super::skip_known;

    use crate::{
        clock::WallClock,
        correlate::{self, Correlator, Outcome, StuckSeen, Termination},
        events::{
            CgroupChange, Disposition, Event, ExecSession, Kept, MainProcess, OomVictim, Origin,
            Proc, ProcKey, ProcessExit, Sender, SignalDeliver, SignalGenerate, SignalResult,
        },
        metadata::{
            annotations::Facts,
            resolver::{Lookup, Resolved},
        },
        pipeline::{Pipeline, Settings, Sink},
        record::{self, Record},
        signals::{self, SIGKILL},
        stuck::{self, Inspection},
    };

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000 * MS;
    /// Above `PID_MAX_LIMIT` (4,194,304 on 64-bit, include/linux/threads.h): no process on any
    /// machine has these tgids, so what a tick reads of /proc (alive? held? stuck?) finds
    /// nothing, as for a process gone.
    const TGID: u32 = 4_200_000;
    /// Processes `p` and `p + 3` share a tgid.
    const PROCS: usize = 6;
    const CONTAINERS: usize = 3;
    /// The cgroup (index) of another container, whose process signals ours.
    const SIDECAR: usize = 3;
    const HOST_CGROUP: u64 = 1;
    const STOPS: [u32; 3] = [15, 1, 3];
    /// Exec sessions (preStop hooks, probes) into the containers.
    const SESSIONS: usize = 3;
    /// The pipeline's tick here: slower than the daemon's 50 ms, as a busy daemon's.
    const TICK_NS: u64 = 200 * MS;
    /// The probe's de-duplication window (`--dedupe-window`'s default): the same signal to the
    /// same process again within it is neither emitted nor kept.
    const DEDUPE_NS: u64 = SEC;
    /// A pid is used again at least this long after its process's exit.
    const REUSE_NS: u64 = 6 * SEC;
    const POD_UID: &str = "6e1f3a52-9c0d-4c55-8a3b-1f2e3d4c5b6a";

    fn key(p: usize) -> ProcKey {
        ProcKey { tgid: TGID + (p % 3) as u32, start_ticks: 100 + (p / 3) as u64 * 10_000 }
    }

    fn cgroup_of(p: usize) -> usize {
        (p % 3 + p / 3) % CONTAINERS
    }

    fn cgroup_id(c: usize) -> u64 {
        9_000 + c as u64
    }

    fn cgroup_path(c: usize) -> String {
        format!("/kubepods/besteffort/pod{POD_UID}/{:064x}", c + 1)
    }

    fn session_pid(s: usize) -> u32 {
        TGID + 20 + s as u32
    }

    /// What the metadata learns of a container.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Role {
        /// Not learnt (no start-up walk entry, no mkdir read): no lookup.
        Unknown,
        /// Learnt, but no source names it.
        Unnamed,
        Container,
        /// A pod's pause container: its termination is counted, not recorded.
        Sandbox,
    }

    fn role() -> impl Strategy<Value = Role> {
        prop_oneof![
            1 => Just(Role::Unknown),
            1 => Just(Role::Unnamed),
            3 => Just(Role::Container),
            1 => Just(Role::Sandbox),
        ]
    }

    fn answer(c: usize, role: Role) -> Resolved {
        let mut facts = Facts::default();
        if matches!(role, Role::Container | Role::Sandbox) {
            facts.namespace = Some("shop".into());
            facts.pod = Some(format!("web-{c}"));
            facts.container = Some(format!("app-{c}"));
            let kind = if role == Role::Sandbox { "sandbox" } else { "container" };
            facts.container_type = Some(kind.into());
            facts.termination_grace_period_seconds = Some(5);
        }
        Resolved { cgroup_id: cgroup_id(c), facts, sources: vec!["fuzz"], ..Default::default() }
    }

    /// Collects what the pipeline emits.
    #[derive(Default)]
    struct Collect {
        records: Vec<Record>,
        ignored: Vec<&'static str>,
    }

    impl Sink for Collect {
        fn emit(&mut self, record: &Record, _delay_ns: u64) {
            self.records.push(record.clone());
        }
        fn ignored(&mut self, reason: &'static str) {
            self.ignored.push(reason);
        }
        fn pod(&mut self, _record: &crate::pod::PodRecord) {}
        fn flush(&mut self) {}
    }

    /// One step of the kernel's (or the clock's) story. Processes, containers and sessions are
    /// indexes; a step that does not apply at that point (a signal to a dead process) is
    /// skipped.
    #[derive(Debug, Clone)]
    enum Op {
        /// Time passes (ms).
        Wait(u64),
        Stop {
            p: usize,
            sig: usize,
            ignored: bool,
            handler: u8,
            from: u8,
        },
        Kill {
            p: usize,
            from: u8,
        },
        /// The process's pending stop signal is delivered.
        Deliver {
            p: usize,
            disposition: u8,
        },
        /// The OOM killer marks its victim (after its own SIGKILL).
        Oom {
            p: usize,
        },
        Session {
            s: usize,
            cg: usize,
        },
        SessionExit {
            s: usize,
        },
        Exit {
            p: usize,
            status: u8,
        },
        /// The runtime removes a container's cgroup; its processes exit first.
        Rmdir {
            cg: usize,
        },
        Main {
            p: usize,
        },
        /// The next event is lost (a full ring).
        Lose,
        /// An event read again, `late` ms from now.
        Dup {
            back: usize,
            late: u64,
        },
    }

    fn op() -> BoxedStrategy<Op> {
        let p = || 0..PROCS;
        prop_oneof![
            4 => prop_oneof![8 => 0u64..60, 3 => 60u64..1200, 1 => 1200u64..7000]
                .prop_map(Op::Wait)
                .boxed(),
            4 => (p(), 0..STOPS.len(), any::<bool>(), 0u8..5, 0u8..3).prop_map(
                |(p, sig, ignored, handler, from)| Op::Stop { p, sig, ignored, handler, from }
            ).boxed(),
            2 => (p(), 0u8..3).prop_map(|(p, from)| Op::Kill { p, from }).boxed(),
            2 => (p(), 0u8..3).prop_map(|(p, disposition)| Op::Deliver { p, disposition }).boxed(),
            1 => p().prop_map(|p| Op::Oom { p }).boxed(),
            1 => (0..SESSIONS, 0..CONTAINERS).prop_map(|(s, cg)| Op::Session { s, cg }).boxed(),
            1 => (0..SESSIONS).prop_map(|s| Op::SessionExit { s }).boxed(),
            3 => (p(), any::<u8>()).prop_map(|(p, status)| Op::Exit { p, status }).boxed(),
            1 => (0..CONTAINERS).prop_map(|cg| Op::Rmdir { cg }).boxed(),
            1 => p().prop_map(|p| Op::Main { p }).boxed(),
            1 => Just(Op::Lose).boxed(),
            2 => (any::<usize>(), 0u64..100)
                .prop_map(|(back, late)| Op::Dup { back, late })
                .boxed(),
        ]
        .boxed()
    }

    /// Containers' roles, and the story with each step's read delay (ms, within its batch).
    fn story() -> impl Strategy<Value = ([Role; CONTAINERS], Vec<(Op, u64)>)> {
        (prop::array::uniform3(role()), prop::collection::vec((op(), 0u64..=40), 1..48))
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Life {
        /// The second process of a tgid, before the pid is reused.
        Unborn,
        Alive,
        /// SIGKILLed: no signal reaches it any more.
        Killed,
        Dead(u64),
    }

    /// What the kernel keeps of a main process (`observer_ebpf::SignalFact`, the OOM flag).
    #[derive(Debug, Clone, Default)]
    struct Summary {
        stop: Option<SignalGenerate>,
        delivered: Option<Disposition>,
        kill: Option<SignalGenerate>,
        oom: bool,
        /// The probe's de-duplication: window start, and the signals emitted in it.
        window: u64,
        seen: u64,
    }

    /// What happened to a process, for the checks.
    #[derive(Debug, Clone, Default)]
    struct Truth {
        stops: Vec<(u64, u32)>,
        kills: Vec<u64>,
        /// Signal events the pipeline read.
        signals_read: usize,
        exit: Option<(u64, Option<u32>, Option<u32>)>,
        exit_read: bool,
        oom: bool,
    }

    impl Truth {
        /// The kernel kept something for its exit to carry.
        fn kept(&self) -> bool {
            !self.stops.is_empty() || !self.kills.is_empty()
        }
    }

    #[derive(Debug, Clone)]
    enum Item {
        Event {
            ev: Event,
            ktime: u64,
            dup: bool,
            recovered: bool,
        },
        /// The pipeline's tick, with the events lost so far.
        Tick {
            lost: u64,
        },
    }

    #[derive(Debug, Clone)]
    struct Arrival {
        at: u64,
        seq: usize,
        item: Item,
    }

    impl Arrival {
        /// Events read by a tick's time come before it.
        fn order(&self) -> (u64, bool, usize) {
            (self.at, matches!(self.item, Item::Tick { .. }), self.seq)
        }
    }

    #[derive(Debug, Clone, Copy)]
    enum SessionLife {
        Unborn,
        Running { cg: usize, read: u64 },
        Ended,
    }

    /// The kernel's side of a story, and what the pipeline reads of it, when.
    struct World {
        roles: [Role; CONTAINERS],
        t: u64,
        arrivals: Vec<Arrival>,
        life: [Life; PROCS],
        summary: [Summary; PROCS],
        truth: [Truth; PROCS],
        announced: [bool; PROCS],
        /// The pending stop signal (sig, when its generation is read).
        pending: [Option<(u32, u64)>; PROCS],
        /// When the latest signal (or delivery) of the process is read: its exit comes after.
        signal_read: [u64; PROCS],
        /// When its latest stop signal is read.
        stop_read: [u64; PROCS],
        oom_killed: [bool; PROCS],
        removed: [bool; CONTAINERS],
        /// When each container's removal is read, and when it happened.
        rmdir_read: [Option<u64>; CONTAINERS],
        rmdir_at: [Option<u64>; CONTAINERS],
        /// When the latest event about each container is read: its removal comes after.
        cgroup_read: [u64; CONTAINERS],
        sessions: [SessionLife; SESSIONS],
        lose_next: bool,
        losses: Vec<u64>,
        /// Events read (kernel time, when read, event), for duplicates.
        history: Vec<(u64, u64, Event)>,
    }

    fn next_tick(t: u64) -> u64 {
        t.div_ceil(TICK_NS) * TICK_NS
    }

    impl World {
        fn new(roles: [Role; CONTAINERS]) -> Self {
            use Life::*;
            Self {
                roles,
                t: SEC,
                arrivals: Vec::new(),
                life: [Alive, Alive, Alive, Unborn, Unborn, Unborn],
                summary: Default::default(),
                truth: Default::default(),
                announced: [false; PROCS],
                pending: [None; PROCS],
                signal_read: [0; PROCS],
                stop_read: [0; PROCS],
                oom_killed: [false; PROCS],
                removed: [false; CONTAINERS],
                rmdir_read: [None; CONTAINERS],
                rmdir_at: [None; CONTAINERS],
                cgroup_read: [0; CONTAINERS],
                sessions: [SessionLife::Unborn; SESSIONS],
                lose_next: false,
                losses: Vec::new(),
                history: Vec::new(),
            }
        }

        fn push(&mut self, at: u64, item: Item) {
            let seq = self.arrivals.len();
            self.arrivals.push(Arrival { at, seq, item });
        }

        /// An event of now about container `cg`, read `delay` later but within this tick's
        /// batch and not before `after`; None when the ring lost it.
        fn emit(&mut self, ev: Event, cg: usize, delay: u64, after: u64) -> Option<u64> {
            if std::mem::take(&mut self.lose_next) {
                self.losses.push(self.t);
                return None;
            }
            let at = (self.t + delay).min(next_tick(self.t)).max(after);
            self.cgroup_read[cg] = self.cgroup_read[cg].max(at);
            self.history.push((self.t, at, ev.clone()));
            self.push(at, Item::Event { ev, ktime: self.t, dup: false, recovered: false });
            Some(at)
        }

        /// Whether process `p` is there to be signalled or to exit (the second of a tgid is
        /// born at its first step, long after the first's exit).
        fn can_act(&mut self, p: usize) -> bool {
            if self.removed[cgroup_of(p)] {
                return false;
            }
            match self.life[p] {
                Life::Alive | Life::Killed => true,
                Life::Dead(_) => false,
                Life::Unborn => {
                    let reusable =
                        matches!(self.life[p - 3], Life::Dead(at) if self.t >= at + REUSE_NS);
                    if reusable {
                        self.life[p] = Life::Alive;
                    }
                    reusable
                }
            }
        }

        fn signal(
            &self,
            p: usize,
            sig: u32,
            result: SignalResult,
            handler: u8,
            from: u8,
        ) -> SignalGenerate {
            let cg = cgroup_id(cgroup_of(p));
            let (sender, sender_cgroup_id) = match from {
                0 => (Sender { pid: 7, comm: "runc".into(), from: Origin::Host }, HOST_CGROUP),
                // SEND_SIG_PRIV, from whichever task allocated: the container's own, here.
                1 => (Sender { pid: key(p).tgid, comm: "app".into(), from: Origin::Kernel }, cg),
                _ => (
                    Sender { pid: TGID + 40, comm: "sidecar".into(), from: Origin::Host },
                    cgroup_id(SIDECAR),
                ),
            };
            let handler = [
                Some(Disposition::Default),
                Some(Disposition::Ignored),
                Some(Disposition::Handled),
                Some(Disposition::Blocked),
                None,
            ][handler as usize % 5];
            SignalGenerate {
                ktime_ns: self.t,
                sig,
                result,
                target_handler: handler,
                target: Proc { pid: key(p).tgid, comm: "app".into() },
                target_key: key(p),
                target_cgroup_id: cg,
                sender,
                sender_cgroup_id,
            }
        }

        /// The probe's window: false when `sig` was already emitted for `p` in it.
        fn first_in_window(&mut self, p: usize, sig: u32) -> bool {
            let s = &mut self.summary[p];
            if self.t - s.window > DEDUPE_NS {
                s.window = self.t;
                s.seen = 0;
            }
            let bit = 1u64 << sig;
            let first = s.seen & bit == 0;
            s.seen |= bit;
            first
        }

        fn generate(&mut self, p: usize, g: SignalGenerate, delay: u64, after: u64) -> Option<u64> {
            let at = self.emit(Event::SignalGenerate(g), cgroup_of(p), delay, after);
            if let Some(at) = at {
                self.truth[p].signals_read += 1;
                self.signal_read[p] = self.signal_read[p].max(at);
            }
            at
        }

        fn exit(&mut self, p: usize, status: u8, delay: u64) {
            let (code, signal) = if self.life[p] == Life::Killed {
                (None, Some(SIGKILL))
            } else {
                [(Some(0), None), (Some(1), None), (None, Some(15)), (Some(143), None)]
                    [status as usize % 4]
            };
            let (k, cg) = (key(p), cgroup_of(p));
            let s = &self.summary[p];
            let kept = Kept {
                stop_delivered: s.stop.as_ref().zip(s.delivered).map(|(g, disposition)| {
                    SignalDeliver {
                        ktime_ns: g.ktime_ns,
                        sig: g.sig,
                        disposition,
                        key: k,
                        cgroup_id: g.target_cgroup_id,
                    }
                }),
                oom: s
                    .kill
                    .as_ref()
                    .filter(|_| s.oom)
                    .map(|g| OomVictim { ktime_ns: g.ktime_ns, pid: k.tgid }),
                stop: s.stop.clone(),
                kill: s.kill.clone(),
                traffic: None,
            };
            let ev = Event::ProcessExit(ProcessExit {
                ktime_ns: self.t,
                key: k,
                main: true,
                kept: Box::new(kept),
                comm: "app".into(),
                exit_code: code,
                exit_signal: signal,
                cgroup_id: cgroup_id(cg),
            });
            let mut read = self.emit(ev.clone(), cg, delay, self.signal_read[p]).is_some();
            if !read && self.truth[p].kept() {
                // Kept in ENDED: a sweep takes it 2 to 3 s after the kernel saw it.
                let at = self.t + 2 * SEC + u64::from(status) * 4 * MS;
                self.push(at, Item::Event { ev, ktime: self.t, dup: false, recovered: true });
                read = true;
            }
            self.truth[p].exit = Some((self.t, code, signal));
            self.truth[p].exit_read = read;
            self.life[p] = Life::Dead(self.t);
        }

        fn session_exit(&mut self, s: usize, delay: u64) {
            let SessionLife::Running { cg, read } = self.sessions[s] else { return };
            let ev = Event::ProcessExit(ProcessExit {
                ktime_ns: self.t,
                key: ProcKey { tgid: session_pid(s), start_ticks: 5 },
                main: false,
                kept: Box::default(),
                comm: "sh".into(),
                exit_code: Some(0),
                exit_signal: None,
                cgroup_id: cgroup_id(cg),
            });
            self.emit(ev, cg, delay, read);
            self.sessions[s] = SessionLife::Ended;
        }

        fn step(&mut self, op: &Op, delay: u64) {
            match *op {
                Op::Wait(ms) => self.t += ms * MS,
                Op::Stop { p, sig, ignored, handler, from } => {
                    let sig = STOPS[sig];
                    if !self.can_act(p)
                        || self.life[p] == Life::Killed
                        || !self.first_in_window(p, sig)
                    {
                        return;
                    }
                    let result =
                        if ignored { SignalResult::Ignored } else { SignalResult::Delivered };
                    let g = self.signal(p, sig, result, handler, from);
                    let s = &mut self.summary[p];
                    let supersedes = |old: &SignalGenerate| {
                        old.sig != sig
                            && self.t - old.ktime_ns > correlate::STOP_SIGNAL_SUPERSEDE_NS
                    };
                    if s.stop.as_ref().is_none_or(supersedes) {
                        s.stop = Some(g.clone());
                        s.delivered = None;
                    }
                    self.truth[p].stops.push((self.t, sig));
                    // Fixed, found here: stop signals of one process read out of order chose
                    // another stop signal than read in order (now chosen in time order).
                    let after = if skip_known() { self.stop_read[p] } else { 0 };
                    let at = self.generate(p, g, delay, after);
                    self.stop_read[p] = self.stop_read[p].max(at.unwrap_or(0));
                    if !ignored {
                        self.pending[p] = Some((sig, at.unwrap_or(0)));
                    }
                }
                Op::Kill { p, from } => {
                    if !self.can_act(p)
                        || self.life[p] == Life::Killed
                        || !self.first_in_window(p, SIGKILL)
                    {
                        return;
                    }
                    let g = self.signal(p, SIGKILL, SignalResult::Delivered, 0, from);
                    self.summary[p].kill.get_or_insert(g.clone());
                    self.truth[p].kills.push(self.t);
                    self.oom_killed[p] = from == 1;
                    self.life[p] = Life::Killed;
                    self.pending[p] = None;
                    self.generate(p, g, delay, 0);
                }
                Op::Deliver { p, disposition } => {
                    if !self.can_act(p) {
                        return;
                    }
                    let Some((sig, generated)) = self.pending[p].take() else { return };
                    let disposition =
                        [Disposition::Default, Disposition::Ignored, Disposition::Handled]
                            [disposition as usize % 3];
                    let s = &mut self.summary[p];
                    if s.stop.as_ref().is_some_and(|g| g.sig == sig) && s.delivered.is_none() {
                        s.delivered = Some(disposition);
                    }
                    let (k, cg) = (key(p), cgroup_of(p));
                    let d = SignalDeliver {
                        ktime_ns: self.t,
                        sig,
                        disposition,
                        key: k,
                        cgroup_id: cgroup_id(cg),
                    };
                    // After every generation before it, not only its own: each takes the
                    // target's siglock, as the delivery does.
                    let after = generated.max(self.signal_read[p]);
                    if let Some(at) = self.emit(Event::SignalDeliver(d), cg, delay, after) {
                        self.signal_read[p] = self.signal_read[p].max(at);
                    }
                }
                Op::Oom { p } => {
                    // Marked right after its SIGKILL, before it is gone (oom_kill.c
                    // `__oom_kill_process()`: the SIGKILL, then `mark_oom_victim()`).
                    if !self.can_act(p) || !std::mem::take(&mut self.oom_killed[p]) {
                        return;
                    }
                    self.summary[p].oom = true;
                    self.truth[p].oom = true;
                    let ev = Event::OomVictim(OomVictim { ktime_ns: self.t, pid: key(p).tgid });
                    self.emit(ev, cgroup_of(p), delay, 0);
                }
                Op::Session { s, cg } => {
                    if !matches!(self.sessions[s], SessionLife::Unborn) || self.removed[cg] {
                        return;
                    }
                    let ev = Event::ExecSession(ExecSession {
                        ktime_ns: self.t,
                        session: Proc { pid: session_pid(s), comm: "sh".into() },
                        parent: Proc { pid: 7, comm: "runc".into() },
                        cgroup_id: cgroup_id(cg),
                    });
                    let read = self.emit(ev, cg, delay, 0).unwrap_or(0);
                    self.sessions[s] = SessionLife::Running { cg, read };
                }
                Op::SessionExit { s } => self.session_exit(s, delay),
                Op::Exit { p, status } => {
                    if self.can_act(p) {
                        self.exit(p, status, delay);
                    }
                }
                Op::Rmdir { cg } => {
                    if self.removed[cg] {
                        return;
                    }
                    for p in (0..PROCS).filter(|&p| cgroup_of(p) == cg) {
                        if matches!(self.life[p], Life::Alive | Life::Killed) {
                            self.exit(p, 0, delay);
                        }
                    }
                    for s in 0..SESSIONS {
                        if matches!(self.sessions[s], SessionLife::Running { cg: c, .. } if c == cg)
                        {
                            self.session_exit(s, delay);
                        }
                    }
                    self.removed[cg] = true;
                    let c = CgroupChange {
                        ktime_ns: self.t,
                        id: cgroup_id(cg),
                        level: 4,
                        path: cgroup_path(cg),
                    };
                    let after = self.cgroup_read[cg];
                    self.rmdir_read[cg] = self.emit(Event::CgroupRmdir(c), cg, delay, after);
                    self.rmdir_at[cg] = Some(self.t);
                }
                Op::Main { p } => {
                    if !self.can_act(p) || std::mem::replace(&mut self.announced[p], true) {
                        return;
                    }
                    let ev = Event::MainProcess(MainProcess {
                        ktime_ns: self.t,
                        main: Proc { pid: key(p).tgid, comm: "app".into() },
                        key: key(p),
                        parent: Proc { pid: 7, comm: "runc".into() },
                        cgroup_id: cgroup_id(cgroup_of(p)),
                    });
                    self.emit(ev, cgroup_of(p), delay, 0);
                }
                Op::Lose => self.lose_next = true,
                Op::Dup { back, late } => {
                    let Some(i) =
                        self.history.len().checked_sub(1 + back % self.history.len().max(1))
                    else {
                        return;
                    };
                    let (ktime, read, ev) = self.history[i].clone();
                    // Fixed, as for stop signals read out of order: a stop signal read again
                    // after a later one changed the choice.
                    let stop = matches!(&ev, Event::SignalGenerate(g) if g.sig != SIGKILL);
                    if ktime + 800 * MS >= self.t && !(stop && skip_known()) {
                        // Read after the original: both copies follow what orders the first.
                        let at = (self.t + late * MS).max(read);
                        self.push(at, Item::Event { ev, ktime, dup: true, recovered: false });
                    }
                }
            }
        }

        /// The story, then ticks through the last read.
        fn play(roles: [Role; CONTAINERS], ops: &[(Op, u64)]) -> Self {
            let mut w = Self::new(roles);
            for (op, delay) in ops {
                w.step(op, delay * MS);
                // No two kernel events share a nanosecond (a tie would leave the choice
                // between two stop signals to arrival order).
                w.t += 1_000;
            }
            // Fixed, found here: an exit recovered from ENDED after its cgroup's removal was
            // read is the record's (`correlate::EXIT_RECOVERY_WAIT_NS`); an exec read again
            // after its session's exit starts no session (`prestop::ExecSessions::ingest`).
            let last = w.arrivals.iter().map(|a| a.at).max().unwrap_or(w.t).max(w.t);
            let mut tick = next_tick(SEC);
            while tick <= last + TICK_NS {
                let lost = w.losses.iter().filter(|&&at| at <= tick).count() as u64;
                w.push(tick, Item::Tick { lost });
                tick += TICK_NS;
            }
            w.arrivals.sort_by_key(Arrival::order);
            w
        }

        /// The same events read in kernel-time order, once each (a recovered exit still when
        /// the sweep takes it).
        fn in_order(&self) -> Vec<Arrival> {
            let mut out: Vec<Arrival> = self
                .arrivals
                .iter()
                .filter(|a| !matches!(a.item, Item::Event { dup: true, .. }))
                .map(|a| match a.item {
                    Item::Event { ktime, recovered: false, .. } => {
                        Arrival { at: ktime, ..a.clone() }
                    }
                    _ => a.clone(),
                })
                .collect();
            out.sort_by_key(Arrival::order);
            out
        }
    }

    /// Feeds `arrivals` to a pipeline whose lookups are answered as the roles say, then shuts
    /// it down (every termination whose exit was seen is emitted).
    fn run(roles: [Role; CONTAINERS], arrivals: &[Arrival]) -> Pipeline<Collect> {
        let (tx, mut rx) = mpsc::channel::<Lookup>(1024);
        let settings = Settings {
            node: "node-a".into(),
            hold_ns: SEC,
            stuck_after_ns: stuck::DEFAULT_STUCK_AFTER_NS,
        };
        let mut p = Pipeline::new(settings, WallClock::measure(), tx, Collect::default());
        let role = |c: usize| roles.get(c).copied().unwrap_or(Role::Container);
        let answer_all = |p: &mut Pipeline<Collect>, rx: &mut mpsc::Receiver<Lookup>| {
            while let Ok(l) = rx.try_recv() {
                let c = (l.cgroup_id - cgroup_id(0)) as usize;
                p.resolved(answer(c, role(c)));
            }
        };
        for c in (0..=SIDECAR).filter(|&c| role(c) != Role::Unknown) {
            p.learn(cgroup_id(c), &cgroup_path(c));
        }
        answer_all(&mut p, &mut rx);
        for a in arrivals {
            match &a.item {
                Item::Event { ev, .. } => p.ingest(ev.clone()),
                Item::Tick { lost } => {
                    answer_all(&mut p, &mut rx);
                    p.losses(*lost, a.at);
                    p.tick(a.at);
                }
            }
        }
        answer_all(&mut p, &mut rx);
        p.finish();
        p
    }

    /// Nanoseconds since the epoch of an RFC 3339 field (i128: kernel times past 2262 too).
    fn ns(field: &Option<String>) -> Result<Option<i128>, TestCaseError> {
        field
            .as_deref()
            .map(|s| {
                DateTime::parse_from_rfc3339(s)
                    .map(|t| {
                        i128::from(t.timestamp()) * 1_000_000_000
                            + i128::from(t.timestamp_subsec_nanos())
                    })
                    .map_err(|e| TestCaseError::fail(format!("not RFC 3339: {s:?}: {e}")))
            })
            .transpose()
    }

    /// What holds of any record: its intervals are non-negative and are the differences of
    /// its timestamps; its repeats lie between its stop signal and its exit, in order.
    fn consistent(r: &Record) -> Result<(), TestCaseError> {
        let (stop, kill, exit) = (ns(&r.stop_signal_at)?, ns(&r.sigkill_at)?, ns(&r.exit_at)?);
        // Wall-clock times are kernel times plus an interpolated offset: equal to the ns for
        // kernel times on one side of the clock's samples, within a few ppm across them.
        let near =
            |secs: f64, ns: i128| (secs * 1e9 - ns as f64).abs() <= 1e3 + ns.abs() as f64 * 1e-4;
        match (stop, kill) {
            (Some(s), Some(k)) => {
                let t =
                    r.term_to_kill_seconds.ok_or_else(|| TestCaseError::fail("no term_to_kill"))?;
                prop_assert!(t >= 0.0 && near(t, k - s), "term_to_kill {t} for {s} -> {k}: {r:?}");
            }
            _ => prop_assert_eq!(r.term_to_kill_seconds, None, "{:?}", r),
        }
        match (stop, exit, r.term_to_exit_seconds) {
            (Some(s), Some(x), Some(t)) => {
                prop_assert!(t >= 0.0 && near(t, x - s), "term_to_exit {t} for {s} -> {x}: {r:?}")
            }
            (None, _, t) => prop_assert_eq!(t, None, "{:?}", r),
            (Some(_), _, t) => prop_assert!(t.is_none() && r.outcome == Outcome::Stuck, "{r:?}"),
        }
        if r.outcome != Outcome::Stuck {
            prop_assert_eq!(Some(&r.ts), r.exit_at.as_ref(), "{:?}", r);
        }
        if matches!(
            r.outcome,
            Outcome::Killed | Outcome::KilledWithoutStopSignal | Outcome::OomKilled
        ) {
            prop_assert_eq!(r.exit_signal.as_deref(), Some("SIGKILL"), "{:?}", r);
        }
        prop_assert_eq!(
            r.outcome == Outcome::KilledWithoutStopSignal,
            r.outcome != Outcome::OomKilled
                && stop.is_none()
                && r.exit_signal.as_deref() == Some("SIGKILL")
                && r.outcome != Outcome::ExitNotObserved
                && r.outcome != Outcome::Stuck,
            "{:?}",
            r
        );
        let mut last = stop;
        for rep in r.stop_signal_repeats.iter().flatten() {
            let at = ns(&Some(rep.at.clone()))?;
            prop_assert!(at > last && (exit.is_none() || at <= exit), "repeat at {at:?}: {r:?}");
            last = at;
        }
        prop_assert!(r
            .stop_signal_repeats
            .as_ref()
            .is_none_or(|v| !v.is_empty() && v.len() <= correlate::MAX_REPEATED_STOPS));
        if let Some(gaps) = &r.incomplete {
            prop_assert!(!gaps.is_empty() && gaps.windows(2).all(|w| w[0] < w[1]), "{r:?}");
        }
        Ok(())
    }

    /// A record as JSON with its wall-clock times left out (each pipeline measures its own
    /// clock): what two runs over the same events must agree on.
    fn without_times(r: &Record) -> serde_json::Value {
        fn strip(v: &mut serde_json::Value) {
            match v {
                serde_json::Value::String(s) if DateTime::parse_from_rfc3339(s).is_ok() => {
                    *s = "<time>".into()
                }
                serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
                serde_json::Value::Object(o) => o.values_mut().for_each(strip),
                _ => {}
            }
        }
        let mut v = serde_json::to_value(r).expect("a record serializes");
        strip(&mut v);
        v
    }

    fn check(w: &World, p: &Pipeline<Collect>) -> Result<(), TestCaseError> {
        let records = &p.sink().records;
        let mut ids = HashSet::new();
        for r in records {
            consistent(r)?;
            prop_assert_ne!(r.outcome, Outcome::Stuck, "no process here is in /proc: {:?}", r);
            prop_assert!(
                ids.insert(r.record_id.as_str()),
                "two records {}: {:#?}",
                r.record_id,
                records
            );
        }
        let (mut open, mut sandboxes) = (0, 0);
        for proc in 0..PROCS {
            let (k, f, cg) = (key(proc), &w.truth[proc], cgroup_of(proc));
            let opened = f.signals_read > 0 || (f.exit_read && f.kept());
            let closed = f.exit_read || w.rmdir_read[cg].is_some();
            let sandbox = w.roles[cg] == Role::Sandbox;
            open += usize::from(opened && !closed);
            sandboxes += usize::from(opened && closed && sandbox);
            let id = record::record_id(k.tgid, k.start_ticks);
            let mine: Vec<&Record> = records.iter().filter(|r| r.record_id == id).collect();
            let want = usize::from(opened && closed && !sandbox);
            prop_assert_eq!(mine.len(), want, "process {:?} ({:?}): {:#?}", k, f, records);
            let Some(r) = mine.first() else { continue };
            match f.exit.filter(|_| f.exit_read) {
                Some((_, code, sig)) => {
                    prop_assert_ne!(r.outcome, Outcome::ExitNotObserved, "{:?}", r);
                    prop_assert_eq!(r.exit_code, code);
                    prop_assert_eq!(r.exit_signal.clone(), sig.map(signals::name));
                }
                None => prop_assert_eq!(r.outcome, Outcome::ExitNotObserved),
            }
            if let Some(s) = &r.stop_signal {
                prop_assert!(
                    f.stops.iter().any(|(_, sig)| signals::name(*sig) == *s),
                    "{s}: {f:?}"
                );
            }
            prop_assert!(r.sigkill_at.is_none() || !f.kills.is_empty());
            prop_assert!(r.outcome != Outcome::OomKilled || f.oom);
        }
        prop_assert_eq!(p.open_terminations(), open, "open: {:?}", w.truth);
        let ignored = &p.sink().ignored;
        prop_assert_eq!(ignored.iter().filter(|r| **r == "pod_sandbox").count(), sandboxes);
        prop_assert!(!ignored.contains(&"self_signal"));
        prop_assert_eq!(p.stats().evicted, 0);
        Ok(())
    }

    // ---- Any event, in any order, at any time ----

    const DISPOSITIONS: [Disposition; 4] =
        [Disposition::Default, Disposition::Ignored, Disposition::Handled, Disposition::Blocked];

    fn deliver((ktime_ns, sig, d, key, cgroup_id): (u64, u32, u32, ProcKey, u64)) -> Option<Event> {
        let disposition = DISPOSITIONS[d as usize % 4];
        Some(Event::SignalDeliver(SignalDeliver { ktime_ns, sig, disposition, key, cgroup_id }))
    }

    fn session((ktime_ns, s, cgroup_id): (u64, usize, u64)) -> Option<Event> {
        Some(Event::ExecSession(ExecSession {
            ktime_ns,
            session: Proc { pid: session_pid(s), comm: "sh".into() },
            parent: Proc { pid: 7, comm: "runc".into() },
            cgroup_id,
        }))
    }

    fn main_process((ktime_ns, key, cgroup_id): (u64, ProcKey, u64)) -> Option<Event> {
        Some(Event::MainProcess(MainProcess {
            ktime_ns,
            main: Proc { pid: key.tgid, comm: "app".into() },
            key,
            parent: Proc { pid: 7, comm: "runc".into() },
            cgroup_id,
        }))
    }

    /// An arbitrary event about the same processes and containers, with arbitrary times, or a
    /// tick (`None`) at a time that only moves forward.
    fn chaos_event() -> BoxedStrategy<Option<Event>> {
        // Boxed throughout: a union of unboxed tuples is a value tree of kilobytes, and
        // moving it dominated the cost of a case.
        let k = || (0..PROCS).prop_map(key).boxed();
        let at = || prop_oneof![4 => 0u64..30_000_000_000, 1 => any::<u64>()].boxed();
        let cg = || {
            prop_oneof![(0..=SIDECAR).prop_map(cgroup_id), Just(HOST_CGROUP), any::<u64>()].boxed()
        };
        let generate =
            (at(), 0u32..70, 0u32..7, prop::option::of(0u32..4), k(), cg(), any::<bool>(), cg())
                .prop_map(|(ktime_ns, sig, result, handler, key, target_cg, kernel, sender_cg)| {
                    let handler = handler.map(|h| DISPOSITIONS[h as usize]);
                    let from = if kernel { Origin::Kernel } else { Origin::Host };
                    SignalGenerate {
                        ktime_ns,
                        sig: if sig >= 64 { SIGKILL } else { sig },
                        result: SignalResult::from(result),
                        target_handler: handler,
                        target: Proc { pid: key.tgid, comm: "app".into() },
                        target_key: key,
                        target_cgroup_id: target_cg,
                        sender: Sender { pid: 7, comm: "runc".into(), from },
                        sender_cgroup_id: sender_cg,
                    }
                })
                .boxed();
        let kept = (
            prop::option::of(generate.clone()),
            prop::option::of(generate.clone()),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(stop, kill, delivered, oom)| Kept {
                stop_delivered: stop.as_ref().filter(|_| delivered).map(|g| SignalDeliver {
                    ktime_ns: g.ktime_ns,
                    sig: g.sig,
                    disposition: Disposition::Handled,
                    key: g.target_key,
                    cgroup_id: g.target_cgroup_id,
                }),
                oom: kill
                    .as_ref()
                    .filter(|_| oom)
                    .map(|g| OomVictim { ktime_ns: g.ktime_ns, pid: g.target_key.tgid }),
                stop,
                kill,
                traffic: None,
            })
            .boxed();
        let exit = (
            at(),
            k(),
            any::<bool>(),
            kept,
            prop::option::of(0u32..256),
            prop::option::of(1u32..65),
            cg(),
        )
            .prop_map(|(ktime_ns, key, main, kept, exit_code, exit_signal, cgroup_id)| {
                ProcessExit {
                    ktime_ns,
                    key,
                    main,
                    kept: Box::new(kept),
                    comm: "app".into(),
                    exit_code,
                    exit_signal: exit_signal.filter(|_| exit_code.is_none()),
                    cgroup_id,
                }
            })
            .boxed();
        let cgroup = (at(), 0..=SIDECAR + 1)
            .prop_map(|(ktime_ns, c)| CgroupChange {
                ktime_ns,
                id: cgroup_id(c),
                level: 4,
                path: if c <= SIDECAR { cgroup_path(c) } else { "/system.slice/x".into() },
            })
            .boxed();
        prop_oneof![
            2 => Just(None).boxed(),
            4 => generate.prop_map(|g| Some(Event::SignalGenerate(g))).boxed(),
            2 => (at(), 0u32..70, 0u32..4, k(), cg()).prop_map(deliver).boxed(),
            3 => exit.prop_map(|x| Some(Event::ProcessExit(x))).boxed(),
            1 => cgroup.clone().prop_map(|c| Some(Event::CgroupMkdir(c))).boxed(),
            1 => cgroup.prop_map(|c| Some(Event::CgroupRmdir(c))).boxed(),
            1 => (at(), k()).prop_map(|(ktime_ns, k)| {
                Some(Event::OomVictim(OomVictim { ktime_ns, pid: k.tgid }))
            }).boxed(),
            1 => (at(), 0..SESSIONS, cg()).prop_map(session).boxed(),
            1 => (at(), k(), cg()).prop_map(main_process).boxed(),
        ]
        .boxed()
    }

    /// What the correlator must keep of any termination it closes.
    fn sound(t: &Termination) -> Result<(), TestCaseError> {
        if let Some(s) = &t.stop_signal {
            prop_assert!(t.sigkill.as_ref().is_none_or(|k| s.at_ns <= k.at_ns), "{t:?}");
            prop_assert!(s.at_ns <= t.exit.at_ns || t.outcome == Outcome::Stuck, "{t:?}");
            prop_assert_eq!(t.term_to_kill_ns(), t.sigkill.as_ref().map(|k| k.at_ns - s.at_ns));
        } else {
            prop_assert!(t.repeated_stops.is_empty() && t.term_to_exit_ns().is_none(), "{t:?}");
        }
        prop_assert!(t.repeated_stops.len() <= correlate::MAX_REPEATED_STOPS);
        let stop = t.stop_signal.as_ref();
        for w in t.repeated_stops.windows(2) {
            prop_assert!(w[0].at_ns < w[1].at_ns, "{t:?}");
        }
        for r in &t.repeated_stops {
            prop_assert!(
                stop.is_some_and(|s| s.sig == r.sig
                    && s.at_ns < r.at_ns
                    && r.at_ns <= t.exit.at_ns),
                "{t:?}"
            );
        }
        prop_assert!(t.incomplete.windows(2).all(|w| w[0] < w[1]), "{t:?}");
        let killed = t.exit.signal == Some(SIGKILL);
        match t.outcome {
            Outcome::OomKilled => prop_assert!(t.oom && killed),
            Outcome::Killed => prop_assert!(killed && stop.is_some()),
            Outcome::KilledWithoutStopSignal => prop_assert!(killed && stop.is_none()),
            Outcome::Graceful => prop_assert!(!killed),
            Outcome::ExitNotObserved => prop_assert!(!t.exit_seen()),
            Outcome::Stuck => {}
        }
        Ok(())
    }

    /// Plays a story, feeds what it reads to a pipeline as read and to another in kernel-time
    /// order once each, and checks both and that they agree.
    fn replay(roles: [Role; CONTAINERS], ops: &[(Op, u64)]) -> Result<(), TestCaseError> {
        let w = World::play(roles, ops);
        let got = run(roles, &w.arrivals);
        check(&w, &got)?;
        let want = run(roles, &w.in_order());
        check(&w, &want)?;
        let mut a: Vec<_> = got.sink().records.iter().map(without_times).collect();
        let mut b: Vec<_> = want.sink().records.iter().map(without_times).collect();
        let id = |v: &serde_json::Value| v["record_id"].as_str().unwrap_or_default().to_string();
        a.sort_by_key(id);
        b.sort_by_key(id);
        prop_assert_eq!(a, b, "read out of order and twice, then in kernel-time order once");
        Ok(())
    }

    // Each `Pipeline::new` reads /proc/self/mountinfo (`stuck::Roots::default`), about a third
    // of a case's cost: the pipeline properties (this one runs two a case) take a quarter of the
    // cases, the correlator's (its events cost more to generate than to correlate) a half.

    /// The record path on realistic streams (see the module docs).
    #[test]
    fn pipeline_never_panics_and_keeps_one_record_per_termination() {
        super::scaled(
            concat!(module_path!(), "::pipeline_never_panics_and_keeps_one_record_per_termination"),
            4,
            story(),
            |(roles, ops)| replay(roles, &ops),
        );
    }

    // ---- KNOWN: what the properties found, each as its smallest story; they fail until
    // fixed (and pass vacuously under FUZZ_SKIP_KNOWN, which steps around them) ----

    fn known(ops: &[(Op, u64)]) {
        if let Err(e) = replay([Role::Unknown; CONTAINERS], ops) {
            panic!("{e}");
        }
    }

    const TERM: usize = 0;
    const HUP: usize = 1;

    fn stop(p: usize, sig: usize) -> Op {
        Op::Stop { p, sig, ignored: false, handler: 0, from: 0 }
    }

    /// The exit is lost in a full ring, the cgroup's removal is read: the record closes as
    /// exit_not_observed. 2 s later `daemon/ended.rs` recovers the exit from ENDED (the first
    /// record's key was never `had`, so `handed` did not delete it) and the correlator, whose
    /// `recently_closed` forgot the key after 1 s, opens a second record with the same
    /// record_id from the exit's kept signals; the sink drops it as a duplicate, so the
    /// journal keeps exit_not_observed though the kernel had the exit. (When the recovered exit
    /// comes while the record is still open, `attach_exit` keeps the exit made up at the
    /// removal over it.)
    #[test]
    fn an_exit_recovered_after_its_cgroups_removal_makes_one_record_with_the_exit() {
        known(&[(stop(0, TERM), 0), (Op::Lose, 0), (Op::Rmdir { cg: 0 }, 0)]);
    }

    /// A session's exec read again (a copy from the programs' handover, or a straggler) after
    /// the session's exit: `ExecSessions::ingest` finds the session ended and starts it anew,
    /// running, from the old exec's time, so a stop 0.6 s later names it the preStop hook,
    /// still running.
    #[test]
    fn an_exec_read_again_after_its_sessions_exit_is_no_new_session() {
        known(&[
            (Op::Session { s: 0, cg: 0 }, 0),
            (Op::Wait(100), 0),
            (Op::SessionExit { s: 0 }, 0),
            (Op::Dup { back: 1, late: 0 }, 0),
            (Op::Wait(600), 0),
            (stop(0, TERM), 0),
            (Op::Exit { p: 0, status: 0 }, 0),
        ]);
    }

    /// SIGTERM, SIGTERM again 5 s later, SIGHUP 1 us after that; the second SIGTERM is read
    /// 7 ms late, after the SIGHUP. In kernel order (and in the kernel's own summary) the
    /// SIGHUP is the stop signal (another number, more than 5 s after the first); read so,
    /// `choose_stop_signal(SIGHUP, SIGTERM 2)` keeps the earlier, SIGTERM 2: the choice is a
    /// pairwise fold, which does not commute with the 5 s supersede rule.
    #[test]
    fn stop_signals_read_out_of_order_choose_as_in_kernel_order() {
        known(&[
            (stop(2, TERM), 0),
            (Op::Wait(5000), 0),
            (stop(2, TERM), 7),
            (stop(2, HUP), 0),
            (Op::Exit { p: 2, status: 0 }, 0),
        ]);
    }

    /// Whether no count of what was dropped went down.
    fn only_grew(before: &correlate::Stats, after: &correlate::Stats) -> bool {
        let (a, b) = (before, after);
        b.evicted >= a.evicted
            && b.late >= a.late
            && b.orphan_exits >= a.orphan_exits
            && b.exit_not_observed >= a.exit_not_observed
            && b.kept_used >= a.kept_used
            && b.repeats_dropped >= a.repeats_dropped
            && b.survived >= a.survived
    }

    /// Events into a pipeline, `None` a tick `step_ms` on.
    fn pipeline_on(
        events: Vec<Option<Event>>,
        roles: [Role; CONTAINERS],
        step_ms: u64,
    ) -> Result<(), TestCaseError> {
        let (tx, mut rx) = mpsc::channel::<Lookup>(4);
        let settings = Settings {
            node: "n".into(),
            hold_ns: SEC,
            stuck_after_ns: stuck::DEFAULT_STUCK_AFTER_NS,
        };
        let mut p = Pipeline::new(settings, WallClock::measure(), tx, Collect::default());
        let mut now = 0u64;
        let mut keys = HashSet::new();
        let mut before = correlate::Stats::default();
        for ev in events {
            match ev {
                Some(ev) => {
                    if let Event::SignalGenerate(g) = &ev {
                        keys.insert(g.target_key);
                    }
                    if let Event::ProcessExit(x) = &ev {
                        let kept = x.kept.stop.iter().chain(&x.kept.kill);
                        keys.extend(kept.map(|g| g.target_key));
                    }
                    p.ingest(ev);
                }
                None => {
                    while let Ok(l) = rx.try_recv() {
                        let c = l.cgroup_id.wrapping_sub(cgroup_id(0)) as usize;
                        p.resolved(answer(c, roles.get(c).copied().unwrap_or(Role::Container)));
                    }
                    now += step_ms * MS;
                    p.losses(now / SEC, now);
                    p.tick(now);
                }
            }
            // Counted drops only grow; nothing is open that was never signalled.
            let s = p.stats().clone();
            prop_assert!(only_grew(&before, &s), "{before:?} -> {s:?}");
            before = s;
            prop_assert!(p.open_terminations() <= keys.len().min(correlate::MAX_OPEN));
        }
        p.finish();
        for r in &p.sink().records {
            consistent(r)?;
        }
        Ok(())
    }

    /// Events into the correlator, `None` a tick `step_ms` on where `answers` says what /proc
    /// shows: alive at expiry, held by its pid namespace, stuck or not.
    fn correlator_on(events: Vec<(Option<Event>, u8)>, step_ms: u64) -> Result<(), TestCaseError> {
        let mut c = Correlator::new();
        let mut now = 0u64;
        let mut keys = HashSet::new();
        let mut before = correlate::Stats::default();
        for (ev, answers) in events {
            match ev {
                Some(ev) => {
                    if let Event::SignalGenerate(g) = &ev {
                        keys.insert(g.target_key);
                    }
                    c.ingest(&ev);
                }
                None => {
                    now = now.saturating_add(step_ms * MS);
                    c.losses(u64::from(answers / 16), now);
                    c.expire(now, |k| (k.tgid + u32::from(answers)) % 3 == 0);
                    c.hold_exited(now, |k| (k.start_ticks + u64::from(answers)) % 2 == 0);
                    for due in c.stuck_due(now, 10 * SEC) {
                        prop_assert_eq!(due.termination.outcome, Outcome::Stuck);
                        prop_assert!(due.since_ns.saturating_add(10 * SEC) <= now);
                        sound(&due.termination)?;
                        if answers % 5 == 0 {
                            c.not_stuck(due.key);
                            continue;
                        }
                        let inspection = Inspection {
                            main: None,
                            held_by_children: due.exited,
                            tasks: Vec::new(),
                            tasks_total: 0,
                            freezer: None,
                            look_at: String::new(),
                        };
                        let (since_ns, reported_ns) = (due.since_ns, now);
                        let seen = StuckSeen {
                            since_ns,
                            reported_ns,
                            inspection,
                            released_ns: None,
                            written: None,
                        };
                        c.note_stuck(due.key, seen);
                    }
                    let closed = c.drain_closed(now);
                    prop_assert!(closed.windows(2).all(|w| w[0].exit.at_ns <= w[1].exit.at_ns));
                    let mut once = HashSet::new();
                    for t in &closed {
                        sound(t)?;
                        let first = once.insert((t.pid, t.start_ticks));
                        prop_assert!(first, "closed twice at once: {closed:?}");
                    }
                }
            }
            prop_assert!(only_grew(&before, &c.stats), "{before:?} -> {:?}", c.stats);
            before = c.stats.clone();
            prop_assert!(c.open_len() <= keys.len().min(correlate::MAX_OPEN));
            prop_assert!(c.stuck_len() <= c.open_len());
        }
        for t in c.drain_closed(u64::MAX) {
            sound(&t)?;
        }
        Ok(())
    }

    /// The record path on any events in any order: no panic, and what holds of every
    /// record, every count and every bound.
    #[test]
    fn pipeline_never_panics_on_any_events() {
        super::scaled(
            concat!(module_path!(), "::pipeline_never_panics_on_any_events"),
            4,
            (
                prop::collection::vec(chaos_event(), 0..64),
                prop::array::uniform3(role()),
                1u64..3_000,
            ),
            |(events, roles, step)| pipeline_on(events, roles, step),
        );
    }

    /// The correlator alone, on any events, with what the pipeline asks of /proc answered
    /// at random (alive at expiry, held by its pid namespace, stuck and then released):
    /// every termination it closes is sound, each once per close, and its bounds hold.
    #[test]
    fn correlator_never_panics_on_any_events() {
        super::scaled(
            concat!(module_path!(), "::correlator_never_panics_on_any_events"),
            2,
            (prop::collection::vec((chaos_event(), any::<u8>()), 0..64), 1u64..600_000),
            |(events, step)| correlator_on(events, step),
        );
    }
}

/// The journal's repair at start ([`crate::sinks::journal::Journal::open`]) on whole journals
/// followed by what a crash, a full disk or a bad disk leaves: a record cut at every offset
/// (inside a multi-byte character too), one whole but without its newline, NULs (a file
/// extended but not written), invalid UTF-8, objects that are no records, anything. After the
/// open the file is the whole lines it had, byte for byte, and the tail's last line only if it
/// is a complete JSON object (then with its newline); `repair` says which; the ids of the kept
/// records are known; the next append is one parseable line; a second open repairs nothing.
/// File I/O on tmpfs (`/dev/shm` where there is one): a quarter of the cases.
mod journal {
    use std::{
        io::Write as _,
        os::unix::fs::OpenOptionsExt as _,
        path::{Path, PathBuf},
        sync::OnceLock,
    };

    use proptest::prelude::*;

    use crate::{
        record::Record,
        sinks::journal::{Journal, JournalOptions, Repair},
    };

    /// This thread's journal directory, removed when the thread ends (each test runs on its own).
    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    thread_local! {
        static DIR: Dir = {
            let base = Path::new("/dev/shm");
            let base = if base.is_dir() { base.to_path_buf() } else { std::env::temp_dir() };
            let id = format!("{:?}", std::thread::current().id());
            let id = id.replace(|c: char| !c.is_ascii_alphanumeric(), "");
            let dir = base.join(format!("observer-fuzz-journal-{}-{id}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("a directory for the journal");
            Dir(dir)
        };
    }

    /// A record with its own id and names (any text: multi-byte characters, quotes, escapes).
    fn record(i: u32, name: &str) -> Record {
        static TEMPLATE: OnceLock<Record> = OnceLock::new();
        let mut r = TEMPLATE.get_or_init(|| Record::example().build()).clone();
        r.pid = i;
        r.record_id = crate::record::record_id(i, 77);
        r.pod = Some(name.to_string());
        r.comm = name.chars().take(15).collect();
        r
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..max)
    }

    fn line(r: &Record) -> Vec<u8> {
        let mut l = serde_json::to_vec(r).expect("a record serializes");
        l.push(b'\n');
        l
    }

    /// What follows the whole lines.
    #[derive(Debug, Clone)]
    enum Tail {
        Bytes(Vec<u8>),
        /// A record's line cut after this many bytes (modulo its length + 1: its whole line
        /// without the newline too).
        Cut(String, usize),
        /// Whole lines of garbage, then a fragment.
        Garbage(Vec<u8>, Vec<u8>),
        Nuls(usize, bool),
        /// JSON that is no record, or no object.
        Json(&'static str),
    }

    fn tail() -> impl Strategy<Value = Tail> {
        prop_oneof![
            2 => prop::collection::vec(any::<u8>(), 0..96).prop_map(Tail::Bytes),
            4 => ("\\PC{0,12}", any::<usize>()).prop_map(|(s, n)| Tail::Cut(s, n)),
            1 => (bytes(24), bytes(24))
                .prop_map(|(a, b)| Tail::Garbage(a, b)),
            1 => (0usize..64, any::<bool>()).prop_map(|(n, nl)| Tail::Nuls(n, nl)),
            1 => prop::sample::select(vec![
                "{}", "{\"record_id\":\"x\"}", "[1,2]", "3", "\"s\"", "null", " {} ", "{}\0",
                "{\"a\":\"\u{0}\"}", "{\"a\":1}{", "{\"a\":\"\\ud800\"}", "\r", "{}\r",
            ])
            .prop_map(Tail::Json),
        ]
    }

    /// The tail's bytes, and what the repair must say when the cut of a record is all there is.
    fn bytes_of(t: &Tail) -> (Vec<u8>, Option<Option<Repair>>) {
        match t {
            Tail::Bytes(b) => (b.clone(), None),
            Tail::Cut(name, n) => {
                let mut l = line(&record(9_999, name));
                l.pop();
                let n = n % (l.len() + 1);
                let expected = match n {
                    0 => None,
                    n if n == l.len() => Some(Repair::Terminated),
                    n => Some(Repair::Truncated { bytes: n as u64 }),
                };
                l.truncate(n);
                (l, Some(expected))
            }
            Tail::Garbage(a, b) => {
                let mut v = a.clone();
                v.push(b'\n');
                v.extend(b.iter().filter(|&&c| c != b'\n'));
                (v, None)
            }
            Tail::Nuls(n, nl) => {
                let mut v = vec![0; *n];
                if *nl {
                    v.push(b'\n');
                }
                (v, None)
            }
            Tail::Json(s) => (s.as_bytes().to_vec(), None),
        }
    }

    /// What the file must hold after the open, and the repair.
    fn repaired(original: &[u8]) -> (Vec<u8>, Option<Repair>) {
        let start = original.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let fragment = &original[start..];
        if fragment.is_empty() {
            return (original.to_vec(), None);
        }
        if serde_json::from_slice::<serde_json::Value>(fragment).is_ok_and(|v| v.is_object()) {
            let mut v = original.to_vec();
            v.push(b'\n');
            return (v, Some(Repair::Terminated));
        }
        (original[..start].to_vec(), Some(Repair::Truncated { bytes: fragment.len() as u64 }))
    }

    fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(bytes)
    }

    fn open_and_check(path: &Path, names: &[String], tail: &Tail) -> Result<(), TestCaseError> {
        let records: Vec<Record> =
            names.iter().enumerate().map(|(i, n)| record(i as u32, n)).collect();
        let mut original: Vec<u8> = records.iter().flat_map(line).collect();
        let whole = original.len();
        let (tail_bytes, cut) = bytes_of(tail);
        original.extend_from_slice(&tail_bytes);
        write(path, &original).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (want, repair) = repaired(&original);
        if let Some(expected) = cut {
            prop_assert_eq!(repair, expected, "a cut record");
        }

        let mut j = Journal::open(path, JournalOptions::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(j.repair, repair);
        let got = std::fs::read(path).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(
            got == want,
            "after open: {:?}\nwanted: {:?}",
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
        prop_assert!(got.starts_with(&original[..whole]), "a whole record was changed");
        prop_assert!(got.is_empty() || got.ends_with(b"\n"), "not whole lines");
        for r in &records {
            prop_assert!(j.holds(&r.record_id), "{} not known after open", r.record_id);
        }

        let next = record(10_000, "next");
        j.append(&next).map_err(|e| TestCaseError::fail(e.to_string()))?;
        drop(j);
        let after = std::fs::read(path).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&after[..got.len()], &got[..]);
        let last = &after[got.len()..];
        prop_assert!(last.ends_with(b"\n") && !last[..last.len() - 1].contains(&b'\n'));
        let parsed: serde_json::Value =
            serde_json::from_slice(last).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed, serde_json::to_value(&next).expect("serializes"));
        let again = Journal::open(path, JournalOptions::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again.repair, None, "repaired twice");
        Ok(())
    }

    #[test]
    fn journal_open_never_panics_on_torn_tails() {
        super::scaled(
            concat!(module_path!(), "::journal_open_never_panics_on_torn_tails"),
            4,
            (prop::collection::vec("\\PC{0,8}", 0..4), tail()),
            |(names, tail)| {
                DIR.with(|d| open_and_check(&d.0.join("terminations.jsonl"), &names, &tail))
            },
        );
    }
}

/// `GET /terminations` and `GET /pods` query strings, decoded as the handlers' extractor
/// decodes them (axum's `Query<Vec<(String, String)>>`, serde_urlencoded), into
/// [`crate::sinks::http::parse_query`] and the filter parsers it uses
/// ([`crate::record::filter`], shared with `observer report`): no panic; an error is the
/// [`QueryError`] its input calls for; an answer is the filter its parameters say, with a limit
/// in `1..=max`.
mod query {
    use axum::{extract::Query, http::Uri};
    use chrono::{DateTime, TimeDelta, Utc};
    use proptest::prelude::*;

    use crate::{
        duration,
        record::filter::{self, OUTCOMES, VERDICTS},
        sinks::http::{parse_query, QueryError},
    };

    const KNOWN: [&str; 7] =
        ["since", "namespace", "workload", "pod", "outcome", "verdict", "limit"];

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => prop::sample::select(KNOWN.to_vec()).prop_map(String::from),
            1 => "[a-zA-Z_]{0,9}",
            1 => Just("lim%69t".to_string()),
            1 => Just("Since".to_string()),
        ]
    }

    fn since_value() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "1h",
            "15m",
            "1.5s",
            ".5s",
            "5.s",
            "+3",
            "0",
            "2d",
            "1h30m",
            "9999999999999w",
            "1ns",
            "0.0000000001s",
            "5000000000000000000000000s",
            "18446744073709551615s",
            "2026-08-01",
            "2026-08-01T02:00:00Z",
            "2026-08-01T02:00:00+14:00",
            "2026-08-01 02:00:00.5",
            "0000-01-01",
            "9999-12-31T23:59:59.999999999Z",
            "-262143-01-01",
            "2026-02-30",
            "yesterday",
            "1 h",
            "1h-1m",
        ])
        .prop_map(String::from)
    }

    fn limit_value() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => (1u64..5_000).prop_map(|n| n.to_string()),
            1 => any::<u64>().prop_map(|n| n.to_string()),
            1 => prop::sample::select(vec!["0", "18446744073709551616", "-3", "+5", "007", " 5"])
                .prop_map(String::from),
        ]
    }

    fn name_value() -> impl Strategy<Value = String> {
        prop_oneof![3 => "\\PC{1,16}", 1 => Just(String::new())]
    }

    /// A value of any kind.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            since_value(),
            limit_value(),
            name_value(),
            prop::sample::select(
                OUTCOMES
                    .iter()
                    .chain(VERDICTS)
                    .copied()
                    .chain(["KILLED", "Kill_Late", " kept "])
                    .collect::<Vec<_>>()
            )
            .prop_map(String::from),
        ]
    }

    /// A parameter, mostly with a value of the kind its key takes.
    fn pair() -> impl Strategy<Value = (String, String)> {
        let named = |k: &'static str, v: BoxedStrategy<String>| {
            v.prop_map(move |v| (k.to_string(), v)).boxed()
        };
        let pick = |all: &'static [&'static str], wrong: &'static [&'static str]| {
            let (all, wrong) =
                (prop::sample::select(all.to_vec()), prop::sample::select(wrong.to_vec()));
            prop_oneof![4 => all, 1 => wrong].prop_map(String::from).boxed()
        };
        prop_oneof![
            2 => named("since", since_value().boxed()),
            2 => named("limit", limit_value().boxed()),
            1 => named("namespace", name_value().boxed()),
            1 => named("workload", name_value().boxed()),
            1 => named("pod", name_value().boxed()),
            2 => named("outcome", pick(OUTCOMES, &["KILLED", "exploded", " killed"])),
            2 => named("verdict", pick(VERDICTS, &["Kill_Late", " kept ", "late"])),
            1 => (key(), value()).boxed(),
        ]
    }

    /// `s` in a query string: some characters as they are where the URI grammar allows,
    /// the others percent-encoded (in upper or lower case), a space as `+` or `%20`.
    fn encoded(s: &str, style: u8) -> String {
        let mut out = String::new();
        for (i, b) in s.bytes().enumerate() {
            let plain = b.is_ascii_alphanumeric() || b"-._~!$'()*,:@/?".contains(&b);
            match b {
                b' ' if style & 1 == 0 => out.push('+'),
                _ if plain && (style >> (i % 8)) & 1 == 0 => out.push(b as char),
                _ if style & 2 == 0 => out.push_str(&format!("%{b:02X}")),
                _ => out.push_str(&format!("%{b:02x}")),
            }
        }
        out
    }

    /// A raw query string: pairs encoded as a client would, or characters the URI grammar
    /// allows in a query (broken escapes, stray `=` and `&`), in any order.
    fn raw_query() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => prop::collection::vec((pair(), any::<u8>(), 0u8..8), 0..5).prop_map(|pairs| {
                pairs
                    .iter()
                    .map(|((k, v), style, form)| match form {
                        0 => encoded(k, *style),
                        _ => format!("{}={}", encoded(k, *style), encoded(v, style.rotate_left(3))),
                    })
                    .collect::<Vec<_>>()
                    .join("&")
            }),
            1 => "[A-Za-z0-9=&%+._~!$'()*,;:@/?-]{0,40}",
        ]
    }

    fn now() -> impl Strategy<Value = DateTime<Utc>> {
        prop_oneof![
            4 => (1_500_000_000i64..2_500_000_000)
                .prop_map(|s| DateTime::from_timestamp(s, 0).expect("in range")),
            1 => Just(DateTime::<Utc>::MIN_UTC),
            1 => Just(DateTime::<Utc>::MAX_UTC),
        ]
    }

    /// What `since=v` must give at `now`: a duration before it (the beginning of time when
    /// that is before chrono's), or a time.
    fn since(v: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match duration::parse(v) {
            Ok(d) => Some(
                TimeDelta::from_std(d)
                    .ok()
                    .and_then(|d| now.checked_sub_signed(d))
                    .unwrap_or(DateTime::<Utc>::MIN_UTC),
            ),
            Err(_) => filter::parse_time(v).ok(),
        }
    }

    fn check(
        params: &[(String, String)],
        now: DateTime<Utc>,
        max: usize,
    ) -> Result<(), TestCaseError> {
        let count = |k: &str| params.iter().filter(|(key, _)| key == k).count();
        let value = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        match parse_query(params, now, max) {
            Ok((f, limit)) => {
                prop_assert!((1..=max).contains(&limit), "limit {limit} of {max}");
                for (k, _) in params {
                    prop_assert!(
                        KNOWN.contains(&k.as_str()) && count(k) == 1,
                        "{k:?} accepted: {params:?}"
                    );
                }
                let given = value("limit").map(|v| v.parse::<usize>().expect("accepted"));
                prop_assert_eq!(limit, given.unwrap_or(max).min(max));
                prop_assert_eq!(f.namespace.as_deref(), value("namespace"));
                prop_assert_eq!(f.workload.as_deref(), value("workload"));
                prop_assert_eq!(f.pod.as_deref(), value("pod"));
                prop_assert!(f.outcome.as_deref().is_none_or(|o| OUTCOMES.contains(&o)));
                prop_assert!(f.verdict.as_deref().is_none_or(|v| VERDICTS.contains(&v)));
                prop_assert_eq!(f.outcome.is_some(), value("outcome").is_some());
                prop_assert_eq!(f.verdict.is_some(), value("verdict").is_some());
                prop_assert_eq!(f.from, value("since").and_then(|v| since(v, now)));
                prop_assert_eq!(f.to, None);
            }
            Err(e) => {
                prop_assert!(!e.to_string().is_empty());
                match &e {
                    QueryError::Unknown(k) => prop_assert!(!KNOWN.contains(&k.as_str())),
                    QueryError::Repeated(k) => prop_assert!(count(k) >= 2),
                    QueryError::Empty(k) => {
                        prop_assert!(params.iter().any(|(key, v)| key == k && v.is_empty()))
                    }
                    QueryError::Since(_) => {
                        prop_assert!(value("since").is_some_and(|v| since(v, now).is_none()))
                    }
                    QueryError::Outcome(_) => {
                        prop_assert!(value("outcome").is_some_and(|v| !OUTCOMES.contains(&v)))
                    }
                    QueryError::Verdict(_) => prop_assert!(
                        value("verdict").is_some_and(|v| filter::parse_verdict(v).is_err())
                    ),
                    QueryError::Limit(v) => {
                        prop_assert!(v.parse::<usize>().map_or(true, |n| n == 0))
                    }
                    #[allow(unreachable_patterns)]
                    _ => {}
                }
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn query_parser_never_panics_on_raw_query_strings(
            raw in raw_query(),
            now in now(),
            max in prop_oneof![1usize..2_000, Just(1), Just(usize::MAX)],
        ) {
            let Ok(uri) = format!("/terminations?{raw}").parse::<Uri>() else {
                // A request line hyper refuses never reaches the handler.
                return Ok(());
            };
            let Ok(Query(params)) = Query::<Vec<(String, String)>>::try_from_uri(&uri) else {
                return Ok(());
            };
            check(&params, now, max)?;
        }

        #[test]
        fn filter_parsers_never_panic(
            s in "\\PC{0,40}",
            now in now(),
            secs in any::<i64>(),
            nanos in 0u32..1_000_000_000,
        ) {
            let _ = filter::parse_time(&s);
            let _ = filter::parse_outcome(&s);
            prop_assert_eq!(filter::parse_since(&s, now).ok(), since(&s, now));
            if let Ok(v) = filter::parse_verdict(&s) {
                prop_assert!(VERDICTS.contains(&v.as_str()) && v.eq_ignore_ascii_case(s.trim()));
            }
            // A time as the journal writes it reads back as itself.
            if let Some(t) = DateTime::from_timestamp(secs.rem_euclid(253_402_300_800), nanos) {
                let written = t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
                prop_assert_eq!(filter::parse_time(&written), Ok(t), "{}", written);
            }
        }
    }
}

/// The BTF reader ([`crate::kernel::btf`]) on blobs shaped like what the loader reads: every
/// struct and member [`Btf::kernel_offsets`] asks for (through anonymous members, typedefs,
/// arrays, a bitfield, a flexible array at a struct's end) and the `btf_trace_*` prototypes of
/// every tp_btf program ([`loader::PROBES`], [`Support::detect`]). btf.rs's own properties
/// damage a small sample and this kernel's first types, where `kernel_offsets` stops at its
/// first missing struct; here it gets to every lookup.
///
/// Damage to the string section alone (names merged, split, renamed into each other,
/// colliding) keeps the types, so each answer is checked against a reference lookup over the
/// model with the damaged names: exactly the answers the names say, or the parse's refusal.
/// Damage to the type section is checked for what any answer must be: no panic, offsets within
/// their struct, `kernel_offsets` agreeing with `member_offset`, the exit path agreeing with
/// the prototype.
mod btf {
    use proptest::prelude::*;

    use crate::kernel::{
        btf::{Btf, BtfError},
        compat::{FeatureId, Support},
        loader::{self, ProgramKind},
    };

    // `BTF_KIND_*` (Documentation/bpf/btf.rst 2.2).
    const INT: u32 = 1;
    const PTR: u32 = 2;
    const ARRAY: u32 = 3;
    const STRUCT: u32 = 4;
    const UNION: u32 = 5;
    const TYPEDEF: u32 = 8;
    const CONST: u32 = 10;
    const FUNC_PROTO: u32 = 13;
    /// `KSYM_NAME_LEN`: a name needs its NUL within this many bytes.
    const NAME_MAX: usize = 512;

    /// (name offset, type id, bit offset, bitfield size).
    type Member = (u32, u32, u32, u32);

    #[derive(Debug, Clone)]
    enum Ty {
        Int { name: u32, size: u32 },
        Ptr(u32),
        Array { elem: u32, len: u32 },
        Composite { union: bool, name: u32, size: u32, flag: bool, members: Vec<Member> },
        Typedef { name: u32, to: u32 },
        Const(u32),
        Proto { params: u32 },
    }

    /// A BTF blob as types (id = index + 1) and strings, and where each record lands.
    #[derive(Debug, Clone)]
    struct Model {
        types: Vec<Ty>,
        strings: Vec<u8>,
    }

    /// Where the type section starts.
    const TYPES_AT: usize = 24;

    impl Model {
        fn str(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        fn add(&mut self, t: Ty) -> u32 {
            self.types.push(t);
            self.types.len() as u32
        }

        fn composite(
            &mut self,
            union: bool,
            name: &str,
            size: u32,
            ms: &[(&str, u32, u32)],
        ) -> u32 {
            let name = self.str(name);
            let members = ms.iter().map(|&(n, ty, byte)| (self.str(n), ty, byte * 8, 0)).collect();
            self.add(Ty::Composite { union, name, size, flag: false, members })
        }

        fn typedef(&mut self, name: &str, to: u32) -> u32 {
            let name = self.str(name);
            self.add(Ty::Typedef { name, to })
        }

        /// The type section, and the offsets in the blob of each type record and member record.
        fn type_section(&self) -> (Vec<u8>, Vec<usize>, Vec<usize>) {
            let (mut out, mut records, mut members) = (Vec::new(), Vec::new(), Vec::new());
            let words = |out: &mut Vec<u8>, ws: &[u32]| {
                for w in ws {
                    out.extend_from_slice(&w.to_le_bytes());
                }
            };
            for t in &self.types {
                records.push(TYPES_AT + out.len());
                match t {
                    Ty::Int { name, size } => words(&mut out, &[*name, INT << 24, *size, size * 8]),
                    Ty::Ptr(to) => words(&mut out, &[0, PTR << 24, *to]),
                    Ty::Array { elem, len } => {
                        words(&mut out, &[0, ARRAY << 24, 0, *elem, 1, *len])
                    }
                    Ty::Composite { union, name, size, flag, members: ms } => {
                        let kind = if *union { UNION } else { STRUCT };
                        let info = (u32::from(*flag) << 31) | (kind << 24) | ms.len() as u32;
                        words(&mut out, &[*name, info, *size]);
                        for &(n, ty, bits, bitfield) in ms {
                            members.push(TYPES_AT + out.len());
                            let offset = if *flag { (bitfield << 24) | bits } else { bits };
                            words(&mut out, &[n, ty, offset]);
                        }
                    }
                    Ty::Typedef { name, to } => words(&mut out, &[*name, TYPEDEF << 24, *to]),
                    Ty::Const(to) => words(&mut out, &[0, CONST << 24, *to]),
                    Ty::Proto { params } => {
                        words(&mut out, &[0, (FUNC_PROTO << 24) | params, 0]);
                        for _ in 0..*params {
                            words(&mut out, &[0, 1]);
                        }
                    }
                }
            }
            (out, records, members)
        }

        fn blob(&self) -> Vec<u8> {
            let (types, _, _) = self.type_section();
            let mut blob = vec![0x9f, 0xeb, 1, 0];
            let (t, s) = (types.len() as u32, self.strings.len() as u32);
            for w in [TYPES_AT as u32, 0, t, t, s] {
                blob.extend_from_slice(&w.to_le_bytes());
            }
            blob.extend(types);
            blob.extend_from_slice(&self.strings);
            blob
        }

        /// Every name offset the blob's types and members use.
        fn names(&self) -> Vec<u32> {
            let mut out = Vec::new();
            for t in &self.types {
                match t {
                    Ty::Int { name, .. } | Ty::Typedef { name, .. } => out.push(*name),
                    Ty::Composite { name, members, .. } => {
                        out.push(*name);
                        out.extend(members.iter().map(|m| m.0));
                    }
                    _ => out.push(0),
                }
            }
            out
        }
    }

    /// The structs and members the loader reads, laid out as a 6.x x86_64 kernel has them
    /// (offsets of our choosing), with the shapes C gives them: members inside an anonymous
    /// struct and an anonymous union, an embedded struct, arrays, a bitfield (`kind_flag`), a
    /// flexible array at the end of `struct pid`, typedef'd scalars.
    fn loader_shaped() -> Model {
        let mut m = Model { types: Vec::new(), strings: vec![0] };
        let name = m.str("int");
        let int = m.add(Ty::Int { name, size: 4 });
        let name = m.str("long unsigned int");
        let ulong = m.add(Ty::Int { name, size: 8 });
        let name = m.str("char");
        let char_ = m.add(Ty::Int { name, size: 1 });
        let pid_t = m.typedef("pid_t", int);
        let u64_ = m.typedef("u64", ulong);
        let atomic = m.composite(false, "", 4, &[("counter", int, 0)]);
        let atomic_t = m.typedef("atomic_t", atomic);
        let void_ptr = m.add(Ty::Ptr(0));
        let kernfs_node = m.composite(
            false,
            "kernfs_node",
            128,
            &[("count", atomic_t, 0), ("parent", void_ptr, 8), ("id", u64_, 96)],
        );
        let css = m.composite(
            false,
            "cgroup_subsys_state",
            200,
            &[("cgroup", void_ptr, 0), ("parent", void_ptr, 24)],
        );
        let kn_ptr = m.add(Ty::Ptr(kernfs_node));
        let cgroup = m.composite(
            false,
            "cgroup",
            2000,
            &[("self", css, 0), ("flags", ulong, 200), ("kn", kn_ptr, 288)],
        );
        let cgroup_ptr = m.add(Ty::Ptr(cgroup));
        let css_arr = m.add(Ty::Array { elem: void_ptr, len: 14 });
        m.composite(
            false,
            "css_set",
            700,
            &[("subsys", css_arr, 0), ("dfl_cgrp", cgroup_ptr, 112)],
        );
        let sig_arr = m.add(Ty::Array { elem: ulong, len: 1 });
        let sigset = m.composite(false, "", 8, &[("sig", sig_arr, 0)]);
        let sigset_t = m.typedef("sigset_t", sigset);
        let sigaction = m.composite(
            false,
            "sigaction",
            32,
            &[
                ("sa_handler", void_ptr, 0),
                ("sa_flags", ulong, 8),
                ("sa_restorer", void_ptr, 16),
                ("sa_mask", sigset_t, 24),
            ],
        );
        let k_sigaction = m.composite(false, "k_sigaction", 32, &[("sa", sigaction, 0)]);
        let actions = m.add(Ty::Array { elem: k_sigaction, len: 64 });
        m.composite(
            false,
            "sighand_struct",
            24 + 64 * 32,
            &[("count", atomic_t, 0), ("action", actions, 24)],
        );
        let upid = m.composite(false, "upid", 16, &[("nr", int, 0), ("ns", void_ptr, 8)]);
        let numbers = m.add(Ty::Array { elem: upid, len: 0 });
        let uint = m.typedef("unsigned int", int);
        m.composite(
            false,
            "pid",
            96,
            &[("count", atomic_t, 0), ("level", uint, 4), ("numbers", numbers, 96)],
        );
        m.composite(
            false,
            "signal_struct",
            1000,
            &[
                ("sigcnt", atomic_t, 0),
                ("live", atomic_t, 4),
                ("nr_threads", int, 8),
                ("flags", uint, 76),
                ("group_exit_code", int, 80),
            ],
        );
        let comm = m.add(Ty::Array { elem: char_, len: 16 });
        let ids = m.composite(false, "", 8, &[("pid", pid_t, 0), ("tgid", pid_t, 4)]);
        let cpid = m.add(Ty::Const(pid_t));
        let anon_u =
            m.composite(true, "", 8, &[("exit_code", int, 0), ("exit_state_alias", cpid, 0)]);
        let task_ptr = m.add(Ty::Ptr(0)); // retargeted below: struct task_struct *
        let (n_state, n_bits, n_ids, n_u, n_parent, n_leader) = (
            m.str("__state"),
            m.str("sched_reset_on_fork"),
            m.str(""),
            m.str(""),
            m.str("real_parent"),
            m.str("group_leader"),
        );
        let mut more = vec![
            (n_state, uint, 24 * 8, 0),
            (n_bits, uint, 1000 * 8 + 3, 1),
            (n_ids, ids, 1200 * 8, 0),
            (n_u, anon_u, 1180 * 8, 0),
            (n_parent, task_ptr, 1300 * 8, 0),
            (n_leader, task_ptr, 1360 * 8, 0),
        ];
        for (n, ty, byte) in [
            ("thread_pid", void_ptr, 1420),
            ("start_boottime", u64_, 1600),
            ("comm", comm, 1900),
            ("signal", void_ptr, 2000),
            ("sighand", void_ptr, 2008),
            ("blocked", sigset_t, 2016),
            ("real_blocked", sigset_t, 2024),
            ("cgroups", void_ptr, 2400),
            ("nsproxy", void_ptr, 2440),
        ] {
            more.push((m.str(n), ty, byte * 8, 0));
        }
        // The network side: `sock` embeds `sock_common`, whose `skc_net` is a typedef'd
        // one-pointer struct (possible_net_t); `net` holds its `ns` and `net_cookie`.
        let possible = m.composite(false, "", 8, &[("net", void_ptr, 0)]);
        let possible_net_t = m.typedef("possible_net_t", possible);
        let u16_ = m.typedef("u16", char_);
        let in6 = m.add(Ty::Array { elem: char_, len: 16 });
        let ports = m.composite(false, "", 4, &[("skc_dport", u16_, 0), ("skc_num", u16_, 2)]);
        let sock_common = m.composite(
            false,
            "sock_common",
            136,
            &[
                ("skc_daddr", uint, 0),
                ("", ports, 12),
                ("skc_family", u16_, 16),
                ("skc_net", possible_net_t, 48),
                ("skc_v6_daddr", in6, 56),
            ],
        );
        m.composite(
            false,
            "sock",
            760,
            &[
                ("__sk_common", sock_common, 0),
                ("sk_lock", int, 136),
                ("sk_rx_dst_ifindex", int, 224),
                ("sk_protocol", u16_, 532),
            ],
        );
        m.composite(false, "net", 4200, &[("ns", ulong, 152), ("net_cookie", u64_, 4096)]);
        m.composite(false, "inet_sock", 960, &[("sk", int, 0), ("inet_sport", u16_, 782)]);
        m.composite(false, "nsproxy", 64, &[("count", atomic_t, 0), ("net_ns", void_ptr, 40)]);
        let name = m.str("task_struct");
        let task =
            m.add(Ty::Composite { union: false, name, size: 9000, flag: true, members: more });
        m.types[task_ptr as usize - 1] = Ty::Ptr(task);
        for (event, args) in [
            ("signal_generate", 5),
            ("signal_deliver", 3),
            ("sched_process_exec", 3),
            ("sched_process_exit", 2),
        ] {
            let proto = m.add(Ty::Proto { params: args + 1 });
            let ptr = m.add(Ty::Ptr(proto));
            m.typedef(&format!("btf_trace_{event}"), ptr);
        }
        m
    }

    /// The name at `off`, as the parser must read it: up to its NUL, which must come within
    /// `NAME_MAX` bytes.
    fn name_at(strings: &[u8], off: u32) -> Option<&[u8]> {
        let s = strings.get(off as usize..)?;
        let len = s.iter().take(NAME_MAX).position(|&b| b == 0)?;
        Some(&s[..len])
    }

    /// Whether the name at `off` is `want` (an empty name names nothing).
    fn named(strings: &[u8], off: u32, want: &str) -> bool {
        name_at(strings, off).is_some_and(|s| !s.is_empty() && s == want.as_bytes())
    }

    /// Whether the blob parses: the string section's framing and every name used.
    fn parses(m: &Model) -> bool {
        m.strings.first() == Some(&0)
            && m.strings.last() == Some(&0)
            && m.names().into_iter().all(|n| name_at(&m.strings, n).is_some())
    }

    fn resolve(m: &Model, mut id: u32) -> Option<&Ty> {
        loop {
            match m.types.get((id as usize).checked_sub(1)?)? {
                Ty::Typedef { to, .. } | Ty::Const(to) => id = *to,
                t => return Some(t),
            }
        }
    }

    /// The struct `name` names: the first one of that name and a non-zero size.
    fn find_struct(m: &Model, name: &str) -> Option<u32> {
        (1..=m.types.len() as u32).find(|&id| {
            matches!(&m.types[id as usize - 1], Ty::Composite { union: false, name: n, size, .. }
                if *size > 0 && named(&m.strings, *n, name))
        })
    }

    /// C's lookup: the first member of that name, through anonymous members, depth first.
    fn find_member(
        m: &Model,
        id: u32,
        member: &[u8],
        searched: bool,
        base: u64,
    ) -> Option<(u64, u32)> {
        let Some(Ty::Composite { members, .. }) = m.types.get(id as usize - 1) else { return None };
        for &(n, ty, bits, bitfield) in members {
            let name = name_at(&m.strings, n).unwrap_or_default();
            if searched && !name.is_empty() && name == member {
                return Some((base + u64::from(bits), bitfield));
            }
            let mut inner = ty;
            while let Some(Ty::Typedef { to, .. } | Ty::Const(to)) =
                m.types.get((inner as usize).wrapping_sub(1))
            {
                inner = *to;
            }
            if name.is_empty()
                && matches!(
                    m.types.get((inner as usize).wrapping_sub(1)),
                    Some(Ty::Composite { .. })
                )
            {
                if let Some(found) = find_member(m, inner, member, searched, base + u64::from(bits))
                {
                    return Some(found);
                }
            }
        }
        None
    }

    /// What `member_offset(strukt, member)` must answer.
    fn reference_offset(m: &Model, strukt: &str, member: &str) -> Result<u32, &'static str> {
        let id = find_struct(m, strukt).ok_or("no struct")?;
        let (bits, bitfield) = find_member(m, id, member.as_bytes(), true, 0).ok_or("no member")?;
        if bitfield != 0 || bits % 8 != 0 {
            return Err("bitfield");
        }
        Ok((bits / 8) as u32)
    }

    fn reference_size(m: &Model, strukt: &str) -> Result<u32, &'static str> {
        match find_struct(m, strukt).map(|id| &m.types[id as usize - 1]) {
            Some(Ty::Composite { size, .. }) => Ok(*size),
            _ => Err("no struct"),
        }
    }

    fn reference_args(m: &Model, event: &str) -> Result<u32, &'static str> {
        let want = format!("btf_trace_{event}");
        let id = (1..=m.types.len() as u32)
            .find(|&id| {
                matches!(&m.types[id as usize - 1], Ty::Typedef { name, .. }
                if named(&m.strings, *name, &want))
            })
            .ok_or("no typedef")?;
        let Some(Ty::Ptr(to)) = resolve(m, id) else { return Err("not a pointer") };
        match resolve(m, *to) {
            Some(Ty::Proto { params }) if *params > 0 => Ok(params - 1),
            _ => Err("not a prototype"),
        }
    }

    fn kind(r: &Result<u32, BtfError>) -> Result<u32, &'static str> {
        match r {
            Ok(v) => Ok(*v),
            Err(BtfError::NoStruct(_)) => Err("no struct"),
            Err(BtfError::NoMember { .. }) => Err("no member"),
            Err(BtfError::Bitfield { .. }) => Err("bitfield"),
            Err(BtfError::NoTracepoint(_)) => Err("no tracepoint"),
            Err(_) => Err("other"),
        }
    }

    /// Every (struct, member) `kernel_offsets` reads, and a few it does not.
    const LOOKUPS: &[(&str, &str)] = &[
        ("task_struct", "tgid"),
        ("task_struct", "pid"),
        ("task_struct", "cgroups"),
        ("task_struct", "exit_code"),
        ("task_struct", "comm"),
        ("css_set", "dfl_cgrp"),
        ("cgroup", "kn"),
        ("kernfs_node", "id"),
        ("task_struct", "sighand"),
        ("sighand_struct", "action"),
        ("task_struct", "thread_pid"),
        ("pid", "level"),
        ("pid", "numbers"),
        ("task_struct", "real_parent"),
        ("task_struct", "group_leader"),
        ("task_struct", "signal"),
        ("signal_struct", "live"),
        ("signal_struct", "flags"),
        ("signal_struct", "group_exit_code"),
        ("task_struct", "blocked"),
        ("task_struct", "real_blocked"),
        ("task_struct", "start_boottime"),
        ("cgroup", "self"),
        ("cgroup_subsys_state", "parent"),
        ("sock", "__sk_common"),
        ("sock_common", "skc_net"),
        ("inet_sock", "inet_sport"),
        ("sock", "sk_protocol"),
        ("net", "net_cookie"),
        ("task_struct", "nsproxy"),
        ("nsproxy", "net_ns"),
        ("task_struct", "sched_reset_on_fork"),
        ("task_struct", "counter"),
        ("k_sigaction", "sa"),
        ("task_struct", ""),
        ("upid", "nr"),
    ];
    const SIZES: &[&str] = &["k_sigaction", "upid", "task_struct", "sigaction", ""];

    /// The tracepoints the tp_btf programs attach to.
    fn events() -> Vec<&'static str> {
        let mut v: Vec<&str> = loader::PROBES
            .iter()
            .filter(|s| s.kind == ProgramKind::BtfTracePoint)
            .map(|s| s.event)
            .collect();
        v.dedup();
        v
    }

    /// What must hold of any answer from `btf`.
    fn consistent(btf: &Btf) -> Result<(), TestCaseError> {
        for (s, mbr) in LOOKUPS {
            if let (Ok(off), size) = (btf.member_offset(s, mbr), btf.struct_size(s)) {
                let size = size
                    .map_err(|e| TestCaseError::fail(format!("{s}.{mbr} found, {s} not: {e}")))?;
                prop_assert!(off <= size, "{}.{} at {} of {}", s, mbr, off, size);
            }
        }
        if let Ok(o) = btf.kernel_offsets() {
            let get = |s, m| btf.member_offset(s, m).ok();
            prop_assert_eq!(Some(o.task_tgid), get("task_struct", "tgid"));
            prop_assert_eq!(Some(o.task_comm), get("task_struct", "comm"));
            prop_assert_eq!(Some(o.kernfs_node_id), get("kernfs_node", "id"));
            prop_assert_eq!(Some(o.pid_numbers), get("pid", "numbers"));
            prop_assert_eq!(Some(o.k_sigaction_size), btf.struct_size("k_sigaction").ok());
            prop_assert_eq!(Some(o.upid_size), btf.struct_size("upid").ok());
            prop_assert_eq!(
                Some(o.cgroup_parent_css),
                get("cgroup", "self").zip(get("cgroup_subsys_state", "parent")).map(|(a, b)| a + b)
            );
            // The traffic probe's offsets: all of them where every one resolves, else none.
            match btf.traffic_offsets() {
                Ok(_) => {
                    prop_assert_eq!(
                        Some(o.net.sock_net),
                        get("sock", "__sk_common")
                            .zip(get("sock_common", "skc_net"))
                            .map(|(a, b)| a + b)
                    );
                    prop_assert_eq!(Some(o.net.net_cookie), get("net", "net_cookie"));
                }
                Err(_) => {
                    prop_assert_eq!(crate::kernel::btf::without_traffic(o), o);
                }
            }
        }
        for e in events() {
            if let Ok(n) = btf.tracepoint_args(e) {
                prop_assert!(n < 0xffff);
            }
        }
        let exit = btf.tracepoint_args("sched_process_exit");
        let native = Support::detect(btf, &[]).exit_group_dead.is_native();
        prop_assert_eq!(native, matches!(exit, Ok(n) if n >= 2));
        prop_assert!(!Support::detect(btf, &[FeatureId::ExitGroupDead])
            .exit_group_dead
            .is_native());
        Ok(())
    }

    /// Damage to the string section, its length kept.
    #[derive(Debug, Clone)]
    enum StrDamage {
        /// A byte set (a NUL where a name was, a letter where a NUL was: names split, merged).
        Set(usize, u8),
        /// Name `a` written over name `b` (as much as fits, NULs after): a rename, a collision.
        Copy(usize, usize),
        /// A letter's case changed.
        Case(usize),
    }

    fn str_damage() -> impl Strategy<Value = StrDamage> {
        prop_oneof![
            2 => (any::<usize>(), prop_oneof![Just(0u8), Just(b'_'), b'a'..=b'z', any::<u8>()])
                .prop_map(|(i, b)| StrDamage::Set(i, b)),
            3 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| StrDamage::Copy(a, b)),
            1 => any::<usize>().prop_map(StrDamage::Case),
        ]
    }

    fn damage_strings(m: &mut Model, damage: &[StrDamage]) {
        let names: Vec<u32> = m.names().into_iter().filter(|&n| n != 0).collect();
        let len = m.strings.len();
        for d in damage {
            match *d {
                StrDamage::Set(i, b) => m.strings[i % len] = b,
                StrDamage::Copy(a, b) => {
                    let (from, to) =
                        (names[a % names.len()] as usize, names[b % names.len()] as usize);
                    let src: Vec<u8> =
                        m.strings[from..].iter().take_while(|&&c| c != 0).copied().collect();
                    let room = m.strings[to..].iter().take_while(|&&c| c != 0).count();
                    for k in 0..room {
                        m.strings[to + k] = src.get(k).copied().unwrap_or(0);
                    }
                }
                StrDamage::Case(i) => {
                    m.strings[i % len] ^= 0x20 * u8::from(m.strings[i % len].is_ascii_alphabetic())
                }
            }
        }
    }

    /// Damage to the type section, at the records the loader's lookups walk.
    #[derive(Debug, Clone)]
    enum TypeDamage {
        Word(usize, u32),
        MemberType(usize, u32),
        MemberOffset(usize, u32),
        MemberName(usize, u32),
        Ref(usize, u32),
        Info(usize, u32),
        Truncate(usize),
    }

    fn edgy() -> impl Strategy<Value = u32> {
        prop_oneof![
            4 => 0u32..64,
            1 => Just(u32::MAX),
            1 => Just(0x8000_0000),
            1 => Just(0xff_ffff),
            1 => any::<u32>(),
        ]
    }

    fn type_damage() -> impl Strategy<Value = TypeDamage> {
        prop_oneof![
            1 => (any::<usize>(), edgy()).prop_map(|(i, v)| TypeDamage::Word(i, v)),
            2 => (any::<usize>(), edgy()).prop_map(|(i, v)| TypeDamage::MemberType(i, v)),
            2 => (any::<usize>(), prop_oneof![edgy(), (0u32..80_000).prop_map(|b| b * 8)])
                .prop_map(|(i, v)| TypeDamage::MemberOffset(i, v)),
            1 => (any::<usize>(), edgy()).prop_map(|(i, v)| TypeDamage::MemberName(i, v)),
            2 => (any::<usize>(), edgy()).prop_map(|(i, v)| TypeDamage::Ref(i, v)),
            1 => (any::<usize>(), 0u32..20, 0u32..8, any::<bool>())
                .prop_map(|(i, k, n, f)| TypeDamage::Info(i, (u32::from(f) << 31) | (k << 24) | n)),
            1 => any::<usize>().prop_map(TypeDamage::Truncate),
        ]
    }

    fn set(blob: &mut [u8], at: usize, v: u32) {
        if let Some(b) = blob.get_mut(at..at + 4) {
            b.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// Names damaged: each answer as the reference over the damaged names says (about 30
    /// lookups a case: half the cases).
    fn mangled_names(damage: &[StrDamage]) -> Result<(), TestCaseError> {
        let mut m = loader_shaped();
        damage_strings(&mut m, damage);
        let parsed = Btf::parse(&m.blob());
        prop_assert_eq!(parsed.is_ok(), parses(&m), "{:?}", parsed.err());
        let Ok(btf) = parsed else { return Ok(()) };
        for (s, mbr) in LOOKUPS {
            let got = kind(&btf.member_offset(s, mbr));
            prop_assert_eq!(got, reference_offset(&m, s, mbr), "{}.{}", s, mbr);
        }
        for s in SIZES {
            prop_assert_eq!(kind(&btf.struct_size(s)), reference_size(&m, s), "sizeof {}", s);
        }
        for e in events() {
            let want = reference_args(&m, e).map_err(|_| "no tracepoint");
            prop_assert_eq!(kind(&btf.tracepoint_args(e)), want, "{}", e);
        }
        if damage.is_empty() {
            // The model is what the loader needs: every offset resolves.
            let o = btf.kernel_offsets().map_err(|e| {
                TestCaseError::fail(format!(
                    "kernel_offsets asks for what fuzz::btf's model lacks: {e}"
                ))
            })?;
            prop_assert_eq!((o.task_tgid, o.task_pid, o.task_exit_code), (1204, 1200, 1180));
            prop_assert_eq!((o.pid_numbers, o.upid_size, o.k_sigaction_size), (96, 16, 32));
            prop_assert_eq!(o.cgroup_parent_css, 24);
            prop_assert_eq!(btf.tracepoint_args("sched_process_exit").ok(), Some(2));
        }
        consistent(&btf)?;
        Ok(())
    }

    /// Types damaged: whatever parses answers consistently.
    fn mangled_types(damage: &[TypeDamage]) -> Result<(), TestCaseError> {
        let m = loader_shaped();
        let (_, records, members) = m.type_section();
        let mut blob = m.blob();
        for d in damage {
            let record = |i: usize| records[i % records.len()];
            let member = |i: usize| members[i % members.len()];
            match *d {
                TypeDamage::Word(i, v) => {
                    let n = (blob.len() / 4).max(1);
                    set(&mut blob, i % n * 4, v)
                }
                TypeDamage::MemberType(i, v) => set(&mut blob, member(i) + 4, v),
                TypeDamage::MemberOffset(i, v) => set(&mut blob, member(i) + 8, v),
                TypeDamage::MemberName(i, v) => set(&mut blob, member(i), v),
                TypeDamage::Ref(i, v) => set(&mut blob, record(i) + 8, v),
                TypeDamage::Info(i, v) => set(&mut blob, record(i) + 4, v),
                TypeDamage::Truncate(n) => {
                    let len = blob.len();
                    blob.truncate(n % (len + 1))
                }
            }
        }
        if let Ok(btf) = Btf::parse(&blob) {
            consistent(&btf)?;
        }
        Ok(())
    }

    #[test]
    fn btf_never_panics_on_mangled_names() {
        super::scaled(
            concat!(module_path!(), "::btf_never_panics_on_mangled_names"),
            2,
            prop::collection::vec(str_damage(), 0..5),
            |damage| mangled_names(&damage),
        );
    }

    #[test]
    fn btf_never_panics_on_mangled_loader_types() {
        super::scaled(
            concat!(module_path!(), "::btf_never_panics_on_mangled_loader_types"),
            2,
            prop::collection::vec(type_damage(), 1..5),
            |damage| mangled_types(&damage),
        );
    }
}
