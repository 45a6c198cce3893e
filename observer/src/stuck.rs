//! Stuck terminations ("pod stuck in Terminating"): a container whose main process was
//! SIGKILLed and is still there `--stuck-after` later ([`crate::pipeline::Settings`]). What
//! holds it is read from /proc at that moment ([`inspect`]): the task's state (uninterruptible,
//! frozen, a zombie), where it waits (`wchan`, and the kernel stack where the kernel lets root
//! read it), its threads, the container's other processes, and the cgroup freezer.
//!
//! Two shapes, both seen here:
//! - the SIGKILL is pending and the task never runs to take it: uninterruptible sleep (a FUSE
//!   request already sent to a server that stops answering waits in `request_wait_answer()`,
//!   fs/fuse/dev.c, unkillably), or a cgroup v1 freezer that holds it (v1 does not thaw killed
//!   tasks; v2's freezer does). No exit event comes;
//! - the main process exited (its exit event came) but, being its pid namespace's init, it
//!   waits in `zap_pid_ns_processes()` (kernel/pid_namespace.c) until every other process of
//!   the namespace is gone: a child that cannot die holds it, and the runtime cannot reap it.
//!
//! Append-only semantics: while it is stuck the journal gets one record of outcome `stuck`
//! (record id `<id>:stuck`), carrying [`Stuck`]; when the process finally goes, its ordinary
//! record follows with the same `stuck` field and `released_at`, so a reader knows a stuck
//! record without a later record of its id is still stuck.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// A SIGKILLed main process still there this long after is reported (`--stuck-after`).
pub const DEFAULT_STUCK_AFTER_NS: u64 = 10 * 1_000_000_000;
/// Other processes of the container listed (the rest are counted).
pub const MAX_LISTED_TASKS: usize = 16;
/// Kernel stack frames kept per task.
pub const MAX_STACK_FRAMES: usize = 16;

/// Whether process `key` is still there and not a zombie: a main process whose exit the
/// kernel reported and which its pid namespace holds (it waits in `zap_pid_ns_processes()`),
/// not one exited and waiting for its parent to reap it.
pub fn held(roots: &Roots, key: crate::events::ProcKey) -> bool {
    let Ok(stat) = std::fs::read(roots.proc.join(key.tgid.to_string()).join("stat")) else {
        return false;
    };
    let stat = String::from_utf8_lossy(&stat);
    let same = crate::existing::parse_stat(&stat).is_some_and(|p| p.key == key);
    same && parse_stat(&stat).is_some_and(|(_, state)| state != 'Z' && state != 'X')
}

/// One task as /proc shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskState {
    pub pid: u32,
    pub comm: String,
    /// /proc/<pid>/stat's state letter: D, S, R, Z, T, t, X, I.
    pub state: String,
    /// In words: `uninterruptible`, `sleeping`, `running`, `zombie`, `stopped`, ...
    pub state_name: &'static str,
    /// Where it waits in the kernel (/proc/<pid>/wchan), null when not readable or running.
    pub wchan: Option<String>,
    /// /proc/<pid>/stack, the function names (null: the kernel does not let us read it).
    pub stack: Option<Vec<String>>,
    /// SIGKILL is pending for it (SigPnd or ShdPnd bit 9).
    pub sigkill_pending: bool,
}

/// What holds a stuck termination, read once when it is reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inspection {
    /// The main process (null: gone by the time it was read).
    pub main: Option<TaskState>,
    /// The main process exited (the kernel reported it) and waits for the rest of its pid
    /// namespace: its children hold it.
    pub held_by_children: bool,
    /// The container's other tasks (its other threads and processes), at most
    /// [`MAX_LISTED_TASKS`], uninterruptible ones first.
    pub tasks: Vec<TaskState>,
    /// How many other tasks there were in all.
    pub tasks_total: usize,
    /// The cgroup freezer's state where one is in use: v1 `freezer.state` (FROZEN, FREEZING)
    /// or v2's `frozen 1`.
    pub freezer: Option<String>,
    /// What to look at, in a sentence.
    pub look_at: String,
}

/// Where /proc and the cgroup hierarchies are (tests point nowhere else: real /proc).
#[derive(Debug, Clone)]
pub struct Roots {
    pub proc: PathBuf,
    pub cgroup: PathBuf,
    /// The v2 hierarchy's mount (`/sys/fs/cgroup` or `/sys/fs/cgroup/unified`).
    pub cgroup_v2: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        let v2 = crate::cgroup::CgroupV2::discover()
            .map(|c| c.mount)
            .unwrap_or_else(|_| PathBuf::from("/sys/fs/cgroup"));
        Self { proc: "/proc".into(), cgroup: "/sys/fs/cgroup".into(), cgroup_v2: v2 }
    }
}

fn state_name(state: char) -> &'static str {
    match state {
        'D' => "uninterruptible",
        'S' => "sleeping",
        'R' => "running",
        'Z' => "zombie",
        'T' => "stopped",
        't' => "traced",
        'X' => "dead",
        'I' => "idle",
        'P' => "parked",
        _ => "unknown",
    }
}

/// `(comm, state)` of a /proc/<pid>/stat line: the comm is between the first '(' and the last
/// ')' (it may hold either).
pub fn parse_stat(stat: &str) -> Option<(String, char)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let state = stat.get(close + 1..)?.trim_start().chars().next()?;
    Some((comm, state))
}

/// Whether SIGKILL is in a /proc/<pid>/status's SigPnd or ShdPnd mask.
fn sigkill_pending(status: &str) -> bool {
    status.lines().any(|l| {
        let Some(hex) = l.strip_prefix("SigPnd:").or_else(|| l.strip_prefix("ShdPnd:")) else {
            return false;
        };
        u64::from_str_radix(hex.trim(), 16).is_ok_and(|m| m & (1 << (9 - 1)) != 0)
    })
}

/// The function names of a /proc/<pid>/stack (`[<0>] do_wait+0x53/0x120`).
fn stack_frames(stack: &str) -> Vec<String> {
    stack
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|f| f.split('+').next().unwrap_or(f).to_string())
        .take(MAX_STACK_FRAMES)
        .collect()
}

/// One task's state; `dir` is /proc/<pid> or /proc/<pid>/task/<tid>.
fn task_state(dir: &Path, pid: u32) -> Option<TaskState> {
    let stat = std::fs::read(dir.join("stat")).ok()?;
    let (comm, state) = parse_stat(&String::from_utf8_lossy(&stat))?;
    let wchan = std::fs::read_to_string(dir.join("wchan"))
        .ok()
        .map(|w| w.trim().to_string())
        .filter(|w| !w.is_empty() && w != "0");
    let stack = std::fs::read_to_string(dir.join("stack"))
        .ok()
        .map(|s| stack_frames(&s))
        .filter(|s| !s.is_empty());
    let pending = std::fs::read_to_string(dir.join("status")).is_ok_and(|s| sigkill_pending(&s));
    Some(TaskState {
        pid,
        comm,
        state: state.to_string(),
        state_name: state_name(state),
        wchan,
        stack,
        sigkill_pending: pending,
    })
}

/// The path of `pid`'s cgroup in the v1 hierarchy of `controller`, or the v2 one ("").
fn cgroup_of(proc: &Path, pid: u32, controller: &str) -> Option<String> {
    let text = std::fs::read_to_string(proc.join(pid.to_string()).join("cgroup")).ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        hit.then(|| path.to_string())
    })
}

/// The freezer's state for `pid` (v1 freezer.state, else v2 cgroup.events `frozen 1`).
fn freezer(roots: &Roots, pid: u32, v2_path: Option<&str>) -> Option<String> {
    if let Some(path) = cgroup_of(&roots.proc, pid, "freezer") {
        let file = roots.cgroup.join("freezer").join(path.trim_start_matches('/'));
        if let Ok(s) = std::fs::read_to_string(file.join("freezer.state")) {
            let s = s.trim();
            if s != "THAWED" {
                return Some(s.to_string());
            }
        }
    }
    let path = v2_path?;
    let events = std::fs::read_to_string(
        roots.cgroup_v2.join(path.trim_start_matches('/')).join("cgroup.events"),
    )
    .ok()?;
    events.lines().any(|l| l.trim() == "frozen 1").then(|| "frozen".to_string())
}

/// Reads what holds the main process `pid` (of v2 cgroup `v2_path`, as the metadata knows it)
/// from /proc. `exited`: its exit event came (it waits for its pid namespace).
pub fn inspect(roots: &Roots, pid: u32, v2_path: Option<&str>, exited: bool) -> Inspection {
    let main_dir = roots.proc.join(pid.to_string());
    let main = task_state(&main_dir, pid);
    // Other threads of the main process, then the container's other processes.
    let mut others: Vec<TaskState> = Vec::new();
    if let Ok(dir) = std::fs::read_dir(main_dir.join("task")) {
        for e in dir.flatten() {
            let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if tid != pid {
                others.extend(task_state(&e.path(), tid));
            }
        }
    }
    let v2_path = v2_path.map(str::to_string).or_else(|| cgroup_of(&roots.proc, pid, ""));
    if let Some(path) = &v2_path {
        let procs = roots.cgroup_v2.join(path.trim_start_matches('/')).join("cgroup.procs");
        for p in std::fs::read_to_string(procs).unwrap_or_default().lines() {
            match p.trim().parse::<u32>() {
                Ok(p) if p != pid => others.extend(task_state(&roots.proc.join(p.to_string()), p)),
                _ => {}
            }
        }
    }
    // The ones that cannot die first: uninterruptible, then the rest.
    others.sort_by_key(|t| (t.state != "D", t.pid));
    let tasks_total = others.len();
    others.truncate(MAX_LISTED_TASKS);
    let freezer = freezer(roots, pid, v2_path.as_deref())
        .or_else(|| others.iter().find_map(|t| freezer(roots, t.pid, None)));
    let held_by_children = exited && main.as_ref().is_some_and(|m| m.state != "Z");
    let look_at =
        look_at(main.as_ref(), held_by_children, &others, tasks_total, freezer.as_deref());
    Inspection { main, held_by_children, tasks: others, tasks_total, freezer, look_at }
}

/// The sentence that tells the SRE what to look at.
fn look_at(
    main: Option<&TaskState>,
    held: bool,
    others: &[TaskState],
    total: usize,
    freezer: Option<&str>,
) -> String {
    let blocked = |t: &TaskState| {
        format!(
            "{} {} ({}{})",
            t.pid,
            t.comm,
            t.state_name,
            t.wchan.as_deref().map(|w| format!(" in {w}")).unwrap_or_default()
        )
    };
    let frozen = |f: &str| {
        format!(
            "the cgroup freezer is {f}: its tasks cannot run to die until it is thawed (who froze \
             it: a checkpoint, a backup or a debugging agent?)"
        )
    };
    let Some(main) = main else {
        return "the main process is gone by now: nothing holds it".into();
    };
    if held {
        let holders: Vec<String> = others.iter().take(3).map(blocked).collect();
        return format!(
            "the main process exited; as its pid namespace's init it waits until the other {total} \
             process(es) die: {}{}",
            if holders.is_empty() { "none listed".to_string() } else { holders.join(", ") },
            freezer.map(|f| format!("; {}", frozen(f))).unwrap_or_default()
        );
    }
    if let Some(f) = freezer {
        return format!("the container's {}", frozen(f));
    }
    match main.state.as_str() {
        "D" => format!(
            "the main process is {}: blocked in the kernel, where SIGKILL cannot reach it (a \
             hung FUSE server or NFS mount, a device); its stack shows where",
            blocked(main)
        ),
        "Z" => "the main process is a zombie its parent (the runtime's shim) has not reaped".into(),
        _ => match others.iter().find(|t| t.state == "D") {
            Some(t) => format!("a thread or process of the container is {}", blocked(t)),
            None => format!("the main process is {}, with SIGKILL pending", blocked(main)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_comms_parse() {
        assert_eq!(parse_stat("1906 (sh) S 1905 1906"), Some(("sh".into(), 'S')));
        assert_eq!(parse_stat("7 (a) b) (c) D 1"), Some(("a) b) (c".into(), 'D')));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x)"), None);
    }

    #[test]
    fn sigkill_pending_reads_either_mask() {
        assert!(sigkill_pending("SigPnd:\t0000000000000000\nShdPnd:\t0000000000000100\n"));
        assert!(!sigkill_pending("SigPnd:\t0000000000004000\nShdPnd:\t0000000000000000\n"));
        assert!(!sigkill_pending("ShdPnd:\tzz\n"));
    }

    #[test]
    fn stacks_keep_function_names() {
        let s = "[<0>] do_wait+0x53/0x120\n[<0>] kernel_wait4+0xe3/0x190\n";
        assert_eq!(stack_frames(s), ["do_wait", "kernel_wait4"]);
    }

    #[test]
    fn our_own_process_inspects_as_running_or_sleeping() {
        // Real /proc: this test process, which is neither frozen nor stuck.
        let me = std::process::id();
        let i = inspect(&Roots::default(), me, None, false);
        let main = i.main.clone().expect("this process is in /proc");
        assert!(matches!(main.state.as_str(), "R" | "S"), "{main:?}");
        assert!(!i.held_by_children);
        assert!(i.freezer.is_none(), "{i:?}");
        assert!(!main.sigkill_pending);
        // A pid that is not there reads as gone.
        let gone = inspect(&Roots::default(), u32::MAX - 1, None, true);
        assert!(gone.main.is_none() && !gone.held_by_children);
        assert!(gone.look_at.contains("gone"));
    }
}
