//! The exit probe on both of its paths, on this kernel: the tracepoint's `group_dead` argument
//! (6.16 and later) and its fallback for older kernels, `signal->live`, forced here with
//! `--force-fallback exit-group-dead` (the kernel matrix runs it for real on 6.1 and 6.12).
//!
//! A process ends with its last thread, not with its group leader, and its status is the one
//! its parent reaps (kernel/exit.c `wait_task_zombie()`): each test checks the record against
//! the status `unshare`, PID 1's parent, reaped, and against the test's own clock. (For a
//! SIGKILLed PID 1, util-linux 2.38's unshare exits 1 instead of dying of SIGKILL itself, its
//! `sigprocmask` of SIGKILL fails with EINVAL, so there the record's SIGKILL is checked alone.)

use std::time::{Duration, Instant};

use observer_tests::{by_id, close_to, trigger_program, unique, Daemon, NsInit, Pod};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, Debug)]
enum ExitPath {
    /// sched_process_exit's own `group_dead` argument.
    Argument,
    /// group_dead read back from `task->signal->live`, as on kernels before 6.16.
    SignalLive,
}

fn daemon(path: ExitPath) -> Daemon {
    let d = match path {
        ExitPath::Argument => Daemon::start(),
        ExitPath::SignalLive => Daemon::start_with(None, &["--force-fallback", "exit-group-dead"]),
    };
    let want = match path {
        ExitPath::Argument => "sched_process_exit: group_dead argument",
        ExitPath::SignalLive => "sched_process_exit: group_dead from signal->live",
    };
    assert!(d.log().contains(want), "daemon log lacks {want:?}:\n{}", d.log());
    d
}

/// Waits until PID 1 runs `threads` threads (SIGTERM is blocked in all of them by then).
fn wait_threads(pid: u32, threads: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let want = format!("Threads:\t{threads}\n");
    while !std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .contains(&want)
    {
        assert!(Instant::now() < deadline, "pid {pid} never ran {threads} threads");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn container(d: &Daemon, what: &str) -> (Pod, String, std::path::PathBuf) {
    let ns = unique(what);
    let mut pod = Pod::new(&d.log_root, &ns, &format!("{what}-0"));
    let (cid, cg) = pod.container("app");
    (pod, cid, cg)
}

/// Exactly one record for `cid`, also after a pause in which a second would have come.
fn one_record(d: &Daemon, cid: &str) -> Value {
    let r = d.wait_records(1, WAIT, by_id(cid)).remove(0);
    std::thread::sleep(Duration::from_millis(300));
    let n = d.records().iter().filter(|r| r["container_id"] == cid).count();
    assert_eq!(n, 1, "one process, one record: {:#?}", d.records());
    r
}

/// The leader leaves at SIGTERM, the last thread 400 ms later with SYS_exit(7): the process
/// ends then, with the status its parent reaps. (In 6.1, 6.12 and 6.18 do_exit()'s
/// `synchronize_group_exit()` makes the last thread's code the group's: 7, where older
/// kernels reaped the leader's 0; the record follows the kernel's rule either way.)
fn leader_first_thread_exit(path: ExitPath) {
    let d = daemon(path);
    let (_pod, cid, cg) = container(&d, "leaderfirst");
    let prog = trigger_program("threads_exit");
    let prog = prog.to_str().unwrap();
    let mut p = NsInit::spawn(&cg, &[prog, "leader-first-thread-exit", "400", "7"]).unwrap();
    wait_threads(p.pid, 2);
    let t_term = p.signal(libc::SIGTERM);
    let t_exit = p.wait_exit(WAIT).unwrap();
    let reaped = p.reaped_status(WAIT).unwrap().code().expect("an exit code");
    let r = one_record(&d, &cid);
    assert_eq!(r["outcome"], "graceful", "{r:#}");
    assert_eq!(r["exit_code"], reaped, "the status the parent reaped: {r:#}");
    assert_eq!(r["exit_signal"], Value::Null);
    let term_to_exit = r["term_to_exit_seconds"].as_f64().unwrap();
    assert!(term_to_exit >= 0.4, "ended at the last thread's exit, not the leader's: {r:#}");
    close_to(term_to_exit, (t_exit - t_term).as_secs_f64(), "term->exit");
}

#[test]
fn leader_first_process_ends_with_its_last_thread_argument() {
    leader_first_thread_exit(ExitPath::Argument);
}

#[test]
fn leader_first_process_ends_with_its_last_thread_signal_live() {
    leader_first_thread_exit(ExitPath::SignalLive);
}

/// The leader leaves; the last thread calls exit(5): a group exit, reaped as 5.
fn leader_first_group_exit(path: ExitPath) {
    let d = daemon(path);
    let (_pod, cid, cg) = container(&d, "groupexit");
    let prog = trigger_program("threads_exit");
    let prog = prog.to_str().unwrap();
    let mut p = NsInit::spawn(&cg, &[prog, "leader-first-group-exit", "200", "5"]).unwrap();
    wait_threads(p.pid, 2);
    let t_term = p.signal(libc::SIGTERM);
    let t_exit = p.wait_exit(WAIT).unwrap();
    assert_eq!(p.reaped_status(WAIT).unwrap().code(), Some(5));
    let r = one_record(&d, &cid);
    assert_eq!(r["outcome"], "graceful", "{r:#}");
    assert_eq!(r["exit_code"], 5, "{r:#}");
    close_to(r["term_to_exit_seconds"].as_f64().unwrap(), (t_exit - t_term).as_secs_f64(), "t");
}

#[test]
fn group_exit_after_the_leader_left_keeps_its_code_argument() {
    leader_first_group_exit(ExitPath::Argument);
}

#[test]
fn group_exit_after_the_leader_left_keeps_its_code_signal_live() {
    leader_first_group_exit(ExitPath::SignalLive);
}

/// The leader leaves; the last thread hangs until SIGKILL: killed, reaped as SIGKILL.
fn leader_first_killed(path: ExitPath) {
    let d = daemon(path);
    let (_pod, cid, cg) = container(&d, "leaderkill");
    let prog = trigger_program("threads_exit");
    let prog = prog.to_str().unwrap();
    let p = NsInit::spawn(&cg, &[prog, "leader-first-hang", "0", "0"]).unwrap();
    wait_threads(p.pid, 2);
    let t_term = p.signal(libc::SIGTERM);
    // The leader is gone (a zombie) while its last thread runs on.
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(format!("/proc/{}/status", p.pid))
        .unwrap_or_default()
        .contains("State:\tZ")
    {
        assert!(Instant::now() < deadline, "leader never left");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(p.alive());
    let t_kill = p.signal(libc::SIGKILL);
    let t_exit = p.wait_exit(WAIT).unwrap();
    let r = one_record(&d, &cid);
    assert_eq!(r["outcome"], "killed", "{r:#}");
    assert_eq!(r["exit_signal"], "SIGKILL", "{r:#}");
    assert_eq!(r["exit_code"], Value::Null);
    close_to(r["term_to_kill_seconds"].as_f64().unwrap(), (t_kill - t_term).as_secs_f64(), "k");
    close_to(r["term_to_exit_seconds"].as_f64().unwrap(), (t_exit - t_term).as_secs_f64(), "e");
}

#[test]
fn leader_first_process_killed_at_its_last_thread_argument() {
    leader_first_killed(ExitPath::Argument);
}

#[test]
fn leader_first_process_killed_at_its_last_thread_signal_live() {
    leader_first_killed(ExitPath::SignalLive);
}

/// Ten PID 1s of 16 threads each, whose threads all die at once (exit_group, then SIGKILL):
/// where more than one thread can see `signal->live == 0`, still one record per process,
/// with the status the parent reaped.
fn threads_die_together(path: ExitPath) {
    const PODS: usize = 10;
    let d = daemon(path);
    let prog = trigger_program("threads_exit");
    let prog = prog.to_str().unwrap();
    let mut cases = Vec::new();
    for i in 0..PODS {
        let (pod, cid, cg) = container(&d, "together");
        let how = if i % 2 == 0 { "all-exit-group" } else { "all-hang" };
        let p = NsInit::spawn(&cg, &[prog, how, "50", "4", "16"]).unwrap();
        cases.push((pod, cid, p, how));
    }
    for (_, _, p, _) in &cases {
        wait_threads(p.pid, 16);
        p.signal(libc::SIGTERM);
    }
    std::thread::sleep(Duration::from_millis(300));
    for (_, _, p, how) in &cases {
        if *how == "all-hang" {
            p.signal(libc::SIGKILL);
        }
    }
    for (_, cid, p, how) in &mut cases {
        p.wait_exit(WAIT).unwrap();
        let status = p.reaped_status(WAIT).unwrap();
        let r = one_record(&d, cid);
        if *how == "all-exit-group" {
            assert_eq!(status.code(), Some(4));
            assert_eq!(r["outcome"], "graceful", "{r:#}");
            assert_eq!(r["exit_code"], 4, "{r:#}");
        } else {
            assert_eq!(r["outcome"], "killed", "{r:#}");
            assert_eq!(r["exit_signal"], "SIGKILL", "{r:#}");
        }
    }
    // Each container's process (and its cgroup) before its pod's cgroups: a tuple drops its
    // fields in order, which would leave every pod cgroup behind, busy.
    for (pod, _, p, _) in cases {
        drop(p);
        drop(pod);
    }
}

#[test]
fn threads_dying_together_make_one_record_argument() {
    threads_die_together(ExitPath::Argument);
}

#[test]
fn threads_dying_together_make_one_record_signal_live() {
    threads_die_together(ExitPath::SignalLive);
}
