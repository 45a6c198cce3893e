//! Containers older than the daemon: which process of each is its main process.
//!
//! For a container made while the probes run, the kernel learns the main process itself: the
//! first exec into a watched cgroup by a process whose parent is outside it (runc/crun init
//! exec'ing the entrypoint, `probes/exec.rs`). A container that was already running when the
//! daemon started made that exec unseen, so the start-up walk finds its main process from what
//! the node still shows, in two steps:
//!
//! 1. **The runtime's word, where it keeps one.** runc writes `state.json` under its root
//!    (`/run/containerd/runc/<namespace>/<id>` under containerd's shim, `/run/runc/<id>` by
//!    default and under CRI-O) with `init_process_pid` and `init_process_start`, the pid's
//!    `/proc/<pid>/stat` start time (libcontainer `BaseState`); crun writes
//!    `/run/crun/<id>/status` with its `pid`; containerd's shim writes `init.pid` into the task
//!    bundle (`<state>/io.containerd.runtime.v2.task/<namespace>/<id>/init.pid`) and CRI-O
//!    `userdata/pidfile` beside its config.json. The pid is taken only if it is still a process
//!    of the container's cgroups (and, where the runtime recorded it, started when it says): a
//!    stale file never names a stranger.
//! 2. **The cgroup's own shape, otherwise.** Of the processes in the container's cgroups
//!    (`cgroup.procs` of the container cgroup and of every cgroup below it: crun's `container`
//!    sub-cgroup, a docker-in-docker's moved init), the candidates are those whose parent is
//!    outside all of them, as the runtime's init is (its parent is the shim or conmon) and as
//!    no child, thread or nested sandbox init is. `kubectl exec` sessions also have a parent
//!    outside, but start later: the earliest candidate is the main process.
//!
//! A process still called `runc:[2:INIT]` is a container created but not started (runc waits
//! on its exec fifo): it is not the main process yet, and the kernel learns it at its exec.
//! Any cgroup under a container cgroup belongs to that container (`metadata::cgroup_path`), so
//! nested sandboxes never get a main process of their own; a cgroup the paths cannot place is
//! its own unit, and is skipped if one of its ancestors has a main process, as the kernel skips
//! (and flags) such cgroups.
//!
//! Everything here is pure but [`read_cgroups`] and [`RuntimeFiles`], which only read files.

use std::{
    collections::{HashMap, HashSet},
    io::Read as _,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::{
    cgroup::CgroupV2,
    events::ProcKey,
    metadata::{
        cgroup_path::{self, CgroupKind},
        state_files::StateFiles,
    },
};

/// The comm of runc's init before it execs the container's process (libcontainer's
/// `nsexec` names its stages `runc:[0:PARENT]`, `runc:[1:CHILD]`, `runc:[2:INIT]`).
const RUNC_INIT: &str = "runc:[2:INIT]";
/// Runtime state files are a few KiB; refuse to read anything absurd.
const MAX_STATE_BYTES: u64 = 1 << 20;

/// One process of a cgroup, as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub key: ProcKey,
    pub ppid: u32,
    pub comm: String,
}

/// A cgroup under the daemon's prefix and the processes in it (`cgroup.procs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    /// The v2 id (the directory's inode).
    pub id: u64,
    /// Hierarchy-relative path.
    pub path: String,
    pub procs: Vec<Proc>,
}

/// What a runtime's state says the container's init is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeInit {
    pub pid: u32,
    /// `/proc/<pid>/stat` start time, where the runtime recorded it (runc does).
    pub start_ticks: Option<u64>,
}

/// How a main process was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The runtime's state named it.
    Runtime,
    /// The earliest process whose parent is outside the container's cgroups.
    Shape,
}

/// A cgroup the walk found, with the main process it is to be watched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub cgroup_id: u64,
    pub path: String,
    /// Set on one cgroup per container: the container's own (topmost) cgroup, whichever of its
    /// cgroups the process is in, so sessions and nested cgroups below are never mains.
    pub main: Option<(ProcKey, Found)>,
}

/// Parses `/proc/<pid>/stat` (proc(5)): comm is in parentheses and may hold spaces and
/// parentheses itself, so the fields are counted from the last `)`.
pub fn parse_stat(stat: &str) -> Option<Proc> {
    let (head, tail) = stat.rsplit_once(')')?;
    let (pid, comm) = head.split_once(" (")?;
    let fields: Vec<&str> = tail.split_whitespace().collect();
    // fields[0] is field 3 (state): ppid is field 4, starttime field 22.
    Some(Proc {
        key: ProcKey { tgid: pid.trim().parse().ok()?, start_ticks: fields.get(19)?.parse().ok()? },
        ppid: fields.get(1)?.parse().ok()?,
        comm: comm.to_string(),
    })
}

/// The container a cgroup path belongs to, or the path itself where none can be read from it.
fn unit_of(path: &str) -> String {
    match cgroup_path::parse(path) {
        Ok(CgroupKind::Container { container_id, .. }) => container_id,
        _ => path.to_string(),
    }
}

/// Strict ancestors of a hierarchy-relative path, nearest first.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut p = path;
    std::iter::from_fn(move || {
        let (parent, _) = p.rsplit_once('/')?;
        p = parent;
        (!parent.is_empty()).then_some(parent)
    })
}

/// Chooses each container's main process. `cgroups` come parents first (as
/// [`CgroupV2::walk`] gives them); `runtime` answers for a container id. Every cgroup comes
/// back, in the same order, with `main` set on at most one per container.
pub fn choose(cgroups: &[Cgroup], runtime: impl Fn(&str) -> Option<RuntimeInit>) -> Vec<Existing> {
    // Units (containers, or lone cgroups) in order of their topmost cgroup.
    let mut units: Vec<(String, Vec<&Cgroup>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for cg in cgroups {
        let unit = unit_of(&cg.path);
        let i = *index.entry(unit.clone()).or_insert_with(|| {
            units.push((unit, Vec::new()));
            units.len() - 1
        });
        units[i].1.push(cg);
    }
    let mut mains: HashMap<u64, (ProcKey, Found)> = HashMap::new();
    let mut with_main: HashSet<&str> = HashSet::new();
    for (unit, members) in &units {
        let top = members[0];
        // A cgroup under one whose container has a main process is nested: never a container.
        if ancestors(&top.path).any(|a| with_main.contains(a)) {
            continue;
        }
        if let Some(main) = main_of(unit, members, &runtime) {
            mains.insert(top.id, main);
            with_main.extend(members.iter().map(|c| c.path.as_str()));
        }
    }
    cgroups
        .iter()
        .map(|c| Existing {
            cgroup_id: c.id,
            path: c.path.clone(),
            main: mains.get(&c.id).copied(),
        })
        .collect()
}

fn main_of(
    unit: &str,
    members: &[&Cgroup],
    runtime: &impl Fn(&str) -> Option<RuntimeInit>,
) -> Option<(ProcKey, Found)> {
    let procs: Vec<&Proc> = members.iter().flat_map(|c| &c.procs).collect();
    let inside: HashSet<u32> = procs.iter().map(|p| p.key.tgid).collect();
    if cgroup_path::container_id_is_valid(unit) {
        if let Some(init) = runtime(unit) {
            let named = procs.iter().find(|p| {
                p.key.tgid == init.pid && init.start_ticks.is_none_or(|s| s == p.key.start_ticks)
            });
            if let Some(p) = named {
                // Created, not started: the kernel will see its exec.
                return (p.comm != RUNC_INIT).then_some((p.key, Found::Runtime));
            }
        }
    }
    procs
        .iter()
        .filter(|p| !inside.contains(&p.ppid) && p.comm != RUNC_INIT)
        .min_by_key(|p| (p.key.start_ticks, p.key.tgid))
        .map(|p| (p.key, Found::Shape))
}

/// `/proc/<pid>/stat` of one process, if it is there.
pub fn proc_of(pid: u32) -> Option<Proc> {
    // A comm need not be UTF-8 (prctl(PR_SET_NAME) takes any bytes): read it lossily, or the
    // process would vanish from the walk and its children look parentless.
    parse_stat(&String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/stat")).ok()?))
}

/// Reads the processes of every cgroup (`cgroup.procs`, then each one's `/proc/<pid>/stat`).
/// A cgroup or process that is gone by the time it is read is read as empty or skipped:
/// containers come and go during the walk.
pub fn read_cgroups(v2: &CgroupV2, walked: &[(u64, String)]) -> Vec<Cgroup> {
    walked
        .iter()
        .map(|(id, path)| {
            let procs = std::fs::read_to_string(v2.dir_of(path).join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse::<u32>().ok())
                .filter_map(proc_of)
                .collect();
            Cgroup { id: *id, path: path.clone(), procs }
        })
        .collect()
}

/// The runtimes' state directories that name a container's init (see the module doc).
#[derive(Debug, Clone)]
pub struct RuntimeFiles {
    /// runc roots: `<root>/<id>/state.json`.
    pub runc_roots: Vec<PathBuf>,
    /// crun root: `<root>/<id>/status`.
    pub crun_root: PathBuf,
    /// containerd's task bundles: `<dir>/<id>/init.pid`.
    pub containerd_tasks: PathBuf,
    /// CRI-O's containers: `<dir>/<id>/userdata/pidfile`.
    pub crio_containers: PathBuf,
}

#[derive(Deserialize)]
struct RuncState {
    init_process_pid: u32,
    init_process_start: u64,
}

#[derive(Deserialize)]
struct CrunStatus {
    pid: u32,
}

impl RuntimeFiles {
    /// The runtimes' default places, with containerd's and CRI-O's as the daemon is told.
    pub fn new(state: &StateFiles) -> Self {
        let ns = &state.containerd_namespace;
        Self {
            runc_roots: vec![PathBuf::from("/run/containerd/runc").join(ns), "/run/runc".into()],
            crun_root: "/run/crun".into(),
            containerd_tasks: state.containerd_state.join("io.containerd.runtime.v2.task").join(ns),
            crio_containers: state.crio_storage.join("overlay-containers"),
        }
    }

    /// What the runtimes' files say container `id` (64 hex digits) runs as its init.
    pub fn init_of(&self, id: &str) -> Option<RuntimeInit> {
        if !cgroup_path::container_id_is_valid(id) {
            return None;
        }
        for root in &self.runc_roots {
            if let Some(s) = read_small(&root.join(id).join("state.json"))
                .and_then(|b| serde_json::from_slice::<RuncState>(&b).ok())
            {
                return Some(RuntimeInit {
                    pid: s.init_process_pid,
                    start_ticks: Some(s.init_process_start),
                });
            }
        }
        if let Some(s) = read_small(&self.crun_root.join(id).join("status"))
            .and_then(|b| serde_json::from_slice::<CrunStatus>(&b).ok())
        {
            return Some(RuntimeInit { pid: s.pid, start_ticks: None });
        }
        [
            self.containerd_tasks.join(id).join("init.pid"),
            self.crio_containers.join(id).join("userdata/pidfile"),
        ]
        .iter()
        .find_map(|f| {
            let pid = String::from_utf8(read_small(f)?).ok()?.trim().parse().ok()?;
            Some(RuntimeInit { pid, start_ticks: None })
        })
    }
}

fn read_small(path: &Path) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path).ok()?.take(MAX_STATE_BYTES).read_to_end(&mut buf).ok()?;
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const POD: &str = "/kubepods/besteffort/pod0123abcd-0000-1111-2222-333344445555";

    fn p(tgid: u32, ppid: u32, start: u64, comm: &str) -> Proc {
        Proc { key: ProcKey { tgid, start_ticks: start }, ppid, comm: comm.into() }
    }

    fn cg(id: u64, path: &str, procs: Vec<Proc>) -> Cgroup {
        Cgroup { id, path: path.into(), procs }
    }

    fn mains(out: &[Existing]) -> Vec<(u64, u32, Found)> {
        out.iter().filter_map(|e| e.main.map(|(k, f)| (e.cgroup_id, k.tgid, f))).collect()
    }

    fn no_runtime(_: &str) -> Option<RuntimeInit> {
        None
    }

    #[test]
    fn parses_stat_with_awkward_comms() {
        let s = "4242 (a) b (c)) S 17 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 \
                 1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(parse_stat(s), Some(p(4242, 17, 98765, "a) b (c)")));
        assert_eq!(
            parse_stat("7 (runc:[2:INIT]) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0"),
            Some(p(7, 1, 5, RUNC_INIT))
        );
        for bad in ["", "12 (x", "12 (x) S", "x (y) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5"] {
            assert_eq!(parse_stat(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_main_process_is_the_earliest_with_a_parent_outside() {
        let c = format!("{POD}/{A}");
        // 100: PID 1 (parent: the shim); 101, 102: its children and a worker; 300: a later
        // kubectl exec session (its parent, runc, is outside too, but it started later).
        let out = choose(
            &[cg(
                1,
                &c,
                vec![
                    p(101, 100, 60, "worker"),
                    p(300, 299, 90, "sh"),
                    p(100, 50, 50, "nginx"),
                    p(102, 101, 70, "child"),
                ],
            )],
            no_runtime,
        );
        assert_eq!(mains(&out), [(1, 100, Found::Shape)]);
    }

    #[test]
    fn the_runtime_names_the_main_process_when_its_pid_is_still_the_same_process() {
        let c = format!("{POD}/{A}");
        let procs = vec![p(100, 50, 50, "tini"), p(300, 299, 40, "odd")];
        let said = |pid, start| {
            move |id: &str| (id == A).then_some(RuntimeInit { pid, start_ticks: start })
        };
        let run = |rt: &dyn Fn(&str) -> Option<RuntimeInit>| {
            mains(&choose(&[cg(1, &c, procs.clone())], rt))
        };
        // The runtime's pid wins over an earlier-looking candidate.
        assert_eq!(run(&said(100, Some(50))), [(1, 100, Found::Runtime)]);
        assert_eq!(run(&said(100, None)), [(1, 100, Found::Runtime)]);
        // A reused pid (other start time) or a pid not in the container: the shape decides.
        assert_eq!(run(&said(100, Some(51))), [(1, 300, Found::Shape)]);
        assert_eq!(run(&said(999, None)), [(1, 300, Found::Shape)]);
    }

    #[test]
    fn a_created_container_not_yet_started_has_no_main_process() {
        let c = format!("{POD}/{A}");
        let procs = vec![p(100, 50, 50, RUNC_INIT)];
        assert_eq!(mains(&choose(&[cg(1, &c, procs.clone())], no_runtime)), []);
        let rt = |_: &str| Some(RuntimeInit { pid: 100, start_ticks: Some(50) });
        assert_eq!(mains(&choose(&[cg(1, &c, procs)], rt)), []);
    }

    #[test]
    fn cgroups_below_a_container_are_the_containers_and_never_mains() {
        let c = format!("{POD}/{A}");
        // docker-in-docker: the outer init moved to init.scope, a nested container below
        // (its init's parent, containerd-shim, is inside the outer container).
        let out = choose(
            &[
                cg(1, POD, vec![]),
                cg(2, &c, vec![]),
                cg(3, &format!("{c}/init.scope"), vec![p(100, 50, 50, "dockerd-entrypoint")]),
                cg(4, &format!("{c}/docker"), vec![p(200, 100, 80, "containerd-shim")]),
                cg(5, &format!("{c}/docker/{B}"), vec![p(210, 200, 90, "sleep")]),
            ],
            no_runtime,
        );
        // The main process is set on the container's own cgroup, where sessions also go.
        assert_eq!(mains(&out), [(2, 100, Found::Shape)]);
        assert_eq!(out.len(), 5);
    }

    #[test]
    fn crun_sub_cgroup_and_shared_pid_namespace_containers() {
        let (a, b) = (format!("{POD}/{A}"), format!("{POD}/{B}"));
        // crun: the process lives in `<id>/container`. B joined A's pid namespace
        // (shareProcessNamespace): its parent, as the host sees it, is its own shim.
        let out = choose(
            &[
                cg(2, &a, vec![]),
                cg(3, &format!("{a}/container"), vec![p(100, 50, 50, "pause")]),
                cg(4, &b, vec![p(120, 60, 55, "redis-server"), p(121, 120, 56, "bio")]),
            ],
            no_runtime,
        );
        assert_eq!(mains(&out), [(2, 100, Found::Shape), (4, 120, Found::Shape)]);
    }

    #[test]
    fn a_cgroup_the_paths_cannot_place_is_skipped_under_a_main() {
        let out = choose(
            &[
                cg(1, "/kubepods/custom", vec![p(100, 1, 50, "init")]),
                cg(2, "/kubepods/custom/inner", vec![p(200, 100, 60, "sandbox")]),
                cg(3, "/kubepods/other", vec![p(300, 1, 70, "init")]),
            ],
            no_runtime,
        );
        assert_eq!(mains(&out), [(1, 100, Found::Shape), (3, 300, Found::Shape)]);
    }

    #[test]
    fn runtime_files_are_read_where_each_runtime_keeps_them() {
        let dir = std::env::temp_dir().join(format!("observer-existing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = RuntimeFiles {
            runc_roots: vec![dir.join("runc-a"), dir.join("runc-b")],
            crun_root: dir.join("crun"),
            containerd_tasks: dir.join("tasks"),
            crio_containers: dir.join("crio"),
        };
        let write = |p: PathBuf, s: &str| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, s).unwrap();
        };
        let ids: Vec<String> = (0..5).map(|i| format!("{i}").repeat(64)).collect();
        write(
            dir.join("runc-b").join(&ids[0]).join("state.json"),
            r#"{"id":"x","init_process_pid":4242,"init_process_start":98765,"created":"2026-12-02T00:00:00Z"}"#,
        );
        write(dir.join("crun").join(&ids[1]).join("status"), r#"{"pid": 77, "bundle": "/b"}"#);
        write(dir.join("tasks").join(&ids[2]).join("init.pid"), "123\n");
        write(dir.join("crio").join(&ids[3]).join("userdata/pidfile"), "321");
        write(dir.join("runc-a").join(&ids[4]).join("state.json"), "{ not json");
        assert_eq!(
            files.init_of(&ids[0]),
            Some(RuntimeInit { pid: 4242, start_ticks: Some(98765) })
        );
        assert_eq!(files.init_of(&ids[1]), Some(RuntimeInit { pid: 77, start_ticks: None }));
        assert_eq!(files.init_of(&ids[2]), Some(RuntimeInit { pid: 123, start_ticks: None }));
        assert_eq!(files.init_of(&ids[3]), Some(RuntimeInit { pid: 321, start_ticks: None }));
        assert_eq!(files.init_of(&ids[4]), None, "a damaged state file names no one");
        assert_eq!(files.init_of("../../etc"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reads_this_process_from_its_own_cgroup() {
        let v2 = CgroupV2::discover().expect("cgroup v2");
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let path = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap().to_string();
        let read = read_cgroups(&v2, &[(1, path)]);
        let me = std::process::id();
        let p = read[0].procs.iter().find(|p| p.key.tgid == me).expect("this process");
        assert_eq!(p.ppid, std::os::unix::process::parent_id());
        assert!(p.key.start_ticks > 0);
    }
}
