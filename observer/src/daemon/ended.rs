//! Terminations the kernel keeps until this daemon has recorded them: the `ENDED` map.
//!
//! At a container main process's exit, if it had a stop signal or a SIGKILL, the exit probe
//! puts the whole termination in `ENDED` besides the ring buffer: the exit event with the
//! signals the kernel kept for it, and the container cgroup's path (`observer-ebpf`'s
//! `probes/exit.rs`). The entry stays until a daemon deletes it, which this one does once the
//! record is journaled and synced; so a daemon killed with records closed but not yet written
//! (waiting for their container's metadata, or still in the event queue), and a ring buffer
//! that overflowed while no daemon read it, lose nothing:
//!
//! - **Settled.** A termination the pipeline handed to its sink (queued for the journal, or
//!   deliberately not recorded) waits for the journal's writer thread to have written and
//!   synced everything queued by then (`sinks::writer`, [`Ended::handed`]); its entry is
//!   deleted once that is durable ([`Ended::durable`]), however long a hung disk makes that. One whose exit this daemon has but that made no record (a signal
//!   the pipeline drops) is deleted [`Ended::new`]'s `settle_ns` after (the correlator's linger
//!   and the metadata hold: past that no record can come). A daemon killed between the write
//!   and the delete has it offered again to the next, whose journal already holds its
//!   `record_id` and writes it once (`sinks::journal`).
//! - **Recovered.** An entry whose exit the ring has not delivered [`RING_GRACE_NS`] after the
//!   kernel saw it (it ended while no daemon read, or the daemon that read it was killed
//!   before recording it, or the ring overflowed) is taken from the map: its cgroup is learnt
//!   from the kept path where the metadata does not know it, and its exit is ingested, carrying
//!   its signals. Counted in `observer_terminations_recovered_total`.
//!
//! The map is swept once a second; it holds the last few seconds' terminations while a daemon
//! runs, and what ended while none did.

use std::{
    collections::{HashMap, VecDeque},
    path::{Path, PathBuf},
};

use aya::maps::{HashMap as BpfHashMap, MapData, MapError};
use observer_ebpf::EndedKey;

use crate::events::{self, CgroupChange, Event, ProcKey};

const SEC: u64 = 1_000_000_000;
/// `Ended::had`'s time for a termination handed to the sink: never settled by time.
const HANDED: u64 = u64::MAX;
/// How often the map is swept.
pub const SWEEP_EVERY_NS: u64 = SEC;
/// An exit the ring has not delivered this long after the kernel saw it is taken from the map.
pub const RING_GRACE_NS: u64 = 2 * SEC;
/// At most this many terminations are taken per sweep (the rest at the next): each may need a
/// metadata lookup, whose queue holds `daemon::LOOKUP_QUEUE`.
pub const RECOVER_PER_SWEEP: usize = 1024;

/// A termination taken from the map: its exit, and its cgroup as the kernel kept it.
#[derive(Debug)]
pub struct Recovered {
    pub exit: Event,
    /// The cgroup's id and path (None: the kernel did not know the path).
    pub cgroup: Option<CgroupChange>,
    /// The cgroup is gone from the hierarchy (its removal happened while no daemon read).
    pub cgroup_gone: bool,
}

pub struct Ended {
    map: BpfHashMap<MapData, EndedKey, observer_ebpf::Ended>,
    /// Terminations whose exit this daemon has, with when it got it (kernel ns; [`HANDED`]:
    /// handed to the sink, waiting in `handed` for the journal).
    had: HashMap<ProcKey, u64>,
    /// Terminations handed to the sink, with the journal sequence number their records are
    /// durable at, in order.
    handed: VecDeque<(u64, ProcKey)>,
    settle_ns: u64,
    next_sweep_ns: u64,
    /// Where the cgroup v2 hierarchy is mounted (a kept path is relative to it).
    v2_root: PathBuf,
}

impl Ended {
    /// `settle_ns`: how long after the pipeline has an exit its record is surely journaled.
    /// The first sweep is [`SWEEP_EVERY_NS`] after `now_ns`, once the ring has been drained.
    pub fn new(
        map: BpfHashMap<MapData, EndedKey, observer_ebpf::Ended>,
        settle_ns: u64,
        v2_root: &Path,
        now_ns: u64,
    ) -> Self {
        Self {
            map,
            had: HashMap::new(),
            handed: VecDeque::new(),
            settle_ns,
            next_sweep_ns: now_ns + SWEEP_EVERY_NS,
            v2_root: v2_root.to_path_buf(),
        }
    }

    /// An event read from the ring: a termination's exit is had (its key returned).
    pub fn saw(&mut self, ev: &Event, now_ns: u64) -> Option<ProcKey> {
        let key = termination_exit(ev)?;
        self.had.entry(key).or_insert(now_ns);
        Some(key)
    }

    /// The cgroup the kernel kept with a termination, and whether it is gone: for an exit read
    /// from the ring whose container this daemon never learnt (its mkdir was read by a daemon
    /// killed since, and the cgroup was removed before this one's start-up walk).
    pub fn cgroup_of(&self, key: ProcKey) -> Option<(CgroupChange, bool)> {
        let k = EndedKey { tgid: key.tgid, _pad0: 0, start_ticks: key.start_ticks };
        let v = self.map.get(&k, 0).ok()?;
        let c = events::ended(&v).1?;
        let gone = !self.exists(&c.path);
        Some((c, gone))
    }

    /// Terminations whose records were handed to the sink, durable once the journal's writer
    /// has made line `seq` durable: kept (neither settled by time nor recovered) until then.
    pub fn handed(&mut self, keys: impl IntoIterator<Item = ProcKey>, seq: u64) {
        for key in keys {
            if let Some(at) = self.had.get_mut(&key) {
                *at = HANDED;
                self.handed.push_back((seq, key));
            }
        }
    }

    /// The journal is durable up to line `seq`: the entries of terminations handed by then go.
    pub fn durable(&mut self, seq: u64) {
        while let Some(&(s, key)) = self.handed.front() {
            if s > seq {
                break;
            }
            self.handed.pop_front();
            if self.had.remove(&key).is_some() {
                self.delete(key);
            }
        }
    }

    /// Terminations handed to the sink whose records are not durable yet.
    pub fn awaiting(&self) -> usize {
        self.handed.len()
    }

    /// Terminations this daemon has and has not settled yet.
    pub fn unsettled(&self) -> usize {
        self.had.len()
    }

    /// Once every [`SWEEP_EVERY_NS`]: deletes the entries of settled terminations, and returns
    /// those the ring never delivered (now had).
    pub fn sweep(&mut self, now_ns: u64) -> Vec<Recovered> {
        if now_ns < self.next_sweep_ns {
            return Vec::new();
        }
        self.next_sweep_ns = now_ns + SWEEP_EVERY_NS;
        let settled: Vec<ProcKey> = self
            .had
            .iter()
            .filter(|(_, &at)| at != HANDED && at.saturating_add(self.settle_ns) <= now_ns)
            .map(|(k, _)| *k)
            .collect();
        for key in settled {
            self.had.remove(&key);
            self.delete(key);
        }
        let mut out = Vec::new();
        for entry in self.map.iter() {
            if out.len() >= RECOVER_PER_SWEEP {
                break;
            }
            let (k, v) = match entry {
                Ok(kv) => kv,
                Err(e) => {
                    log::warn!("reading ENDED: {e}");
                    break;
                }
            };
            let key = ProcKey { tgid: k.tgid, start_ticks: k.start_ticks };
            if self.had.contains_key(&key)
                || v.exit.header.ktime_ns.saturating_add(RING_GRACE_NS) > now_ns
            {
                continue;
            }
            self.had.insert(key, now_ns);
            let (exit, cgroup) = events::ended(&v);
            let cgroup_gone = cgroup.as_ref().is_some_and(|c| !self.exists(&c.path));
            out.push(Recovered { exit, cgroup, cgroup_gone });
        }
        out
    }

    /// Shutdown, after the journal's writer was closed and [`Ended::durable`] told how far it
    /// got: every termination this daemon had is settled, except those whose records the
    /// journal did not make durable (a hung disk): they stay for the next daemon.
    pub fn settle_all(&mut self) {
        let left: std::collections::HashSet<ProcKey> =
            self.handed.iter().map(|(_, k)| *k).collect();
        for key in std::mem::take(&mut self.had).into_keys() {
            if !left.contains(&key) {
                self.delete(key);
            }
        }
        if !left.is_empty() {
            log::warn!(
                "{} terminations left in the kernel's ENDED map: their records were not                  journaled; the next daemon records them",
                left.len()
            );
        }
    }

    fn delete(&mut self, key: ProcKey) {
        let k = EndedKey { tgid: key.tgid, _pad0: 0, start_ticks: key.start_ticks };
        match self.map.remove(&k) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => log::warn!("deleting ENDED entry of pid {}: {e}", key.tgid),
        }
    }

    fn exists(&self, path: &str) -> bool {
        self.v2_root.join(path.trim_start_matches('/')).is_dir()
    }
}

/// The process key of an exit the kernel also keeps in `ENDED`: a main process's, with a stop
/// signal or a SIGKILL kept (the exit probe's own condition).
fn termination_exit(ev: &Event) -> Option<ProcKey> {
    match ev {
        Event::ProcessExit(x) if x.main && !x.kept.is_empty() => Some(x.key),
        _ => None,
    }
}
