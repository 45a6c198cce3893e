//! Post-incident analysis end to end: `observer report` on journals written by real runs of
//! the daemon (runc containers, pid-namespace inits in kubepods cgroups), rotation across
//! files, torn lines, a daemon SIGKILLed mid-burst, a full disk, a 100k-record journal, and
//! `GET /terminations` with good and bad parameters.
//!
//! Every daemon sees every container on the node, so each test asserts on its own namespace
//! (its own kubelet log root names its pods); tests that start daemons take `SERIAL` so that
//! bounds (the recent-terminations store) are not shared with a neighbour's containers.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::Mutex,
    time::{Duration, Instant},
};

use observer_tests::{
    args, graceful_inits, handler_exits, observer_bin, runc_container, unique, Daemon, Exit,
    NsInit, Pod,
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn report(journal: &Path, args: &[&str]) -> Output {
    Command::new(observer_bin())
        .arg("report")
        .arg("--journal")
        .arg(journal)
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .expect("running observer report")
}

/// stdout of a successful `observer report`, with its stderr.
fn report_ok(journal: &Path, args: &[&str]) -> (String, String) {
    let out = report(journal, args);
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).expect("UTF-8 report"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "report {args:?}: {}\n{stdout}\n{stderr}", out.status);
    (stdout, stderr)
}

fn json_lines(journal: &Path, args: &[&str]) -> Vec<String> {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    report_ok(journal, &a).0.lines().map(String::from).collect()
}

/// The summary row of `label` ("ns/workload"), split into its cells after the name.
fn row(text: &str, label: &str) -> Vec<String> {
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label))
        .unwrap_or_else(|| panic!("no row {label} in\n{text}"));
    line.split_whitespace().skip(1).map(String::from).collect()
}

/// The forced-kill lines of a report.
fn kills(text: &str) -> Vec<&str> {
    text.lines()
        .skip_while(|l| !l.starts_with("FORCED KILLS"))
        .skip(2)
        .take_while(|l| !l.is_empty())
        .collect()
}

fn by_ns(ns: &str) -> impl Fn(&Value) -> bool + '_ {
    move |r| r["namespace"] == ns
}

#[test]
fn report_on_a_real_runc_run() {
    let _serial = serial();
    let d = Daemon::start();
    let ns = unique("rpt");
    // shop: sleep as PID 1 has no handler, the kernel drops SIGTERM; SIGKILL ends it.
    let (shop_pod, shop_id, shop) =
        runc_container(&d, &ns, "shop-7d4b9c6f8-x2k9p", &["sleep", "1000"]);
    // cart: handles SIGTERM and carries on; SIGKILL ends it.
    let (cart_pod, cart_id, cart) = runc_container(
        &d,
        &ns,
        "cart-0",
        &["sh", "-c", "trap 'true' TERM; while :; do sleep 0.1; done"],
    );
    // api: handles SIGTERM by exiting.
    let (api_pod, api_id, api) = runc_container(
        &d,
        &ns,
        "api-5f6d7c8b9-x7kq2",
        &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
    );
    observer_tests::wait_handler(cart.pid().unwrap(), libc::SIGTERM).unwrap();
    observer_tests::wait_handler(api.pid().unwrap(), libc::SIGTERM).unwrap();
    api.kill("TERM").unwrap();
    shop.kill("TERM").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    shop.kill("KILL").unwrap();
    d.wait_records(1, WAIT, |r| r["container_id"] == shop_id.as_str());
    cart.kill("TERM").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(cart.status(), "running", "cart handles SIGTERM and keeps running");
    cart.kill("KILL").unwrap();
    let recs = d.wait_records(3, WAIT, by_ns(&ns));
    let by_id = |id: &str| recs.iter().find(|r| r["container_id"] == id).unwrap().clone();
    assert_eq!(by_id(&api_id)["outcome"], "graceful");
    assert_eq!(by_id(&shop_id)["outcome"], "killed");
    assert_eq!(by_id(&cart_id)["outcome"], "killed");
    let cart_t2k = by_id(&cart_id)["term_to_kill_seconds"].as_f64().unwrap();

    let (text, stderr) = report_ok(&d.journal, &["--namespace", &ns]);
    assert!(stderr.is_empty(), "{stderr}");
    assert!(text.starts_with("3 terminations from "), "{text}");
    // TOTAL GRACEFUL KILLED OOM p50 p95 max IGNORED OVERRUNS
    let shop_row = row(&text, &format!("{ns}/shop"));
    assert_eq!(shop_row[..4], ["1", "0", "1", "0"], "{text}");
    assert_eq!(shop_row[7..], ["1", "0"], "{text}");
    let cart_row = row(&text, &format!("{ns}/cart"));
    assert_eq!(cart_row[..4], ["1", "0", "1", "0"], "{text}");
    assert_eq!(cart_row[7], "0", "handled, not ignored: {text}");
    let t2e = by_id(&cart_id)["term_to_exit_seconds"].as_f64().unwrap();
    assert_eq!(cart_row[6], format!("{t2e:.2}"), "max term->exit from the record: {text}");
    let api_row = row(&text, &format!("{ns}/api"));
    assert_eq!(api_row[..4], ["1", "1", "0", "0"], "{text}");
    // Forced kills, newest first, with the reason in words.
    let k = kills(&text);
    assert_eq!(k.len(), 2, "{text}");
    assert!(text.contains(&format!("FORCED KILLS (2, newest first) in namespace {ns}\n")));
    assert!(k[0].contains("  cart-0  "), "{text}");
    let slow = format!("slow shutdown: still running {cart_t2k:.2} s after SIGTERM");
    assert!(k[0].ends_with(&slow), "{:?} vs {slow:?}", k[0]);
    assert!(k[1].contains("  shop-7d4b9c6f8-x2k9p  main  "), "{text}");
    assert!(k[1].ends_with("SIGTERM ignored by PID 1 (no handler)"), "{text}");
    assert!(!text.contains('\x1b'), "no colour when stdout is not a terminal");
    for l in text.lines() {
        assert!(l.chars().count() <= 100, "{} columns: {l}", l.chars().count());
    }
    assert!(report_ok(&d.journal, &["--namespace", &ns, "--color", "always"]).0.contains("\x1b["));

    // --json: the journal's own lines, unchanged.
    let journal_lines: Vec<String> = std::fs::read_to_string(&d.journal)
        .unwrap()
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).unwrap()["namespace"] == ns.as_str())
        .map(String::from)
        .collect();
    assert_eq!(json_lines(&d.journal, &["--namespace", &ns]), journal_lines);
    let ids = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["--namespace", ns.as_str()];
        a.extend_from_slice(args);
        json_lines(&d.journal, &a)
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["container_id"].to_string())
            .collect()
    };
    let q = |s: &str| format!("\"{s}\"");
    assert_eq!(ids(&["--outcome", "killed"]), [q(&shop_id), q(&cart_id)]);
    assert_eq!(ids(&["--outcome", "graceful"]), [q(&api_id)]);
    assert_eq!(ids(&["--workload", "api"]), [q(&api_id)]);
    assert_eq!(ids(&["--pod", "cart-0"]), [q(&cart_id)]);
    assert_eq!(ids(&["--since", "1h"]).len(), 3);
    assert_eq!(ids(&["--from", "2999-01-01"]), Vec::<String>::new());
    assert_eq!(ids(&["--to", "2000-01-01T00:00:00Z"]), Vec::<String>::new());
    let (none, _) = report_ok(&d.journal, &["--namespace", &ns, "--from", "2999-01-01"]);
    assert_eq!(none, "no terminations match\n");

    // Bad arguments: a clear message and clap's usage status, never a panic.
    for (args, says) in [
        (&["--outcome", "exploded"][..], "unknown outcome \"exploded\""),
        (&["--since", "yesterday"], "bad duration \"yesterday\""),
        (&["--from", "last tuesday"], "bad time \"last tuesday\""),
        (&["--since", "1h", "--from", "2026-01-01"], "cannot be used with"),
    ] {
        let out = report(&d.journal, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let missing = report(&d.dir.join("nope.jsonl"), &[]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no journal at"));

    drop((shop, cart, api));
    drop((shop_pod, cart_pod, api_pod));
}

#[test]
fn rotation_across_files_keeps_every_record_in_order() {
    const N: usize = 24;
    let _serial = serial();
    let d = Daemon::start_with(None, &["--journal-max-bytes", "4096", "--journal-files", "30"]);
    let ns = unique("rot");
    let mut pod = Pod::new(&d.log_root, &ns, "fleet-7d4b9c6f8-x2k9p");
    let procs = graceful_inits(&mut pod, N);
    for (_, p) in &procs {
        p.signal(libc::SIGTERM);
    }
    for (_, p) in &procs {
        p.wait_exit(WAIT).unwrap();
    }
    let deadline = Instant::now() + WAIT;
    let lines = loop {
        let lines = json_lines(&d.journal, &["--namespace", &ns]);
        if lines.len() >= N || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(lines.len(), N, "{}", d.log());
    let mut got: Vec<String> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["container_id"].as_str().unwrap().into())
        .collect();
    got.sort();
    let mut want: Vec<String> = procs.iter().map(|(c, _)| c.clone()).collect();
    want.sort();
    assert_eq!(got, want, "every record once, none dropped, none twice");

    // logrotate's names, each file within the bound and whole lines only; the report reads
    // them oldest first: FILE.N .. FILE.1, FILE.
    let mut files = Vec::new();
    for n in (1..=30).rev() {
        let f = PathBuf::from(format!("{}.{n}", d.journal.display()));
        if f.exists() {
            files.push(f);
        }
    }
    assert!(files.len() >= 4, "{N} records of ~800 bytes in 4 KiB files: {files:?}");
    files.push(d.journal.clone());
    let mut all = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.len() <= 4096, "{} is {} bytes", f.display(), text.len());
        assert!(text.is_empty() || text.ends_with('\n'));
        for l in text.lines() {
            serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
            all.push(l.to_string());
        }
    }
    let ours: Vec<String> = all
        .into_iter()
        .filter(|l| serde_json::from_str::<Value>(l).unwrap()["namespace"] == ns.as_str())
        .collect();
    assert_eq!(lines, ours, "report --json reads rotated files oldest first");
    assert_eq!(d.metric("observer_journal_errors_total", &[]), 0.0);
    assert!(d.metric("observer_journal_records_total", &[]) >= N as f64);
}

/// A journal torn mid-line (as a crash of the node mid-write leaves it): the report skips
/// and counts the line; the next daemon repairs the file and counts the lost record.
#[test]
fn a_torn_last_line_is_skipped_by_the_report_and_repaired_at_start() {
    let _serial = serial();
    let dir = std::env::temp_dir().join(unique("observer-it-torn-"));
    std::fs::create_dir_all(&dir).unwrap();
    let journal = dir.join("journal.jsonl");
    let ns = unique("torn");
    let log_root = dir.join("logs");
    let mut pod = Pod::new(&log_root, &ns, "web-7d4b9c6f8-x2k9p");
    let first = {
        let d = Daemon::start_with_journal(Some(&journal), Some(&log_root), &[]);
        let (_, cg) = pod.container("a");
        let p = NsInit::spawn(&cg, &["busybox", "sleep", "1000"]).unwrap();
        p.signal(libc::SIGKILL);
        p.wait_exit(WAIT).unwrap();
        d.wait_records(1, WAIT, by_ns(&ns)).remove(0)
    };
    let whole = std::fs::read_to_string(&journal).unwrap();
    let line = whole.lines().find(|l| l.contains(&ns)).unwrap().to_string();
    let mut f = std::fs::OpenOptions::new().append(true).open(&journal).unwrap();
    std::io::Write::write_all(&mut f, &line.as_bytes()[..line.len() / 2]).unwrap();
    drop(f);

    let (text, stderr) = report_ok(&journal, &["--namespace", &ns]);
    assert!(text.starts_with("1 termination from"), "{text}");
    let at = format!("{}:{}", journal.display(), whole.lines().count() + 1);
    assert!(
        stderr.contains("warning: skipped 1 corrupt or truncated journal line (first at ")
            && stderr.contains(&at),
        "{stderr}"
    );

    let d = Daemon::start_with_journal(Some(&journal), Some(&log_root), &[]);
    let repaired = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(repaired, whole, "the fragment is cut, every whole line kept");
    assert!(d.log().contains("cut a torn last line"), "{}", d.log());
    assert_eq!(d.metric("observer_journal_errors_total", &[]), 1.0);
    let (_, cg) = pod.container("b");
    let p = NsInit::spawn(&cg, &["busybox", "sleep", "1000"]).unwrap();
    p.signal(libc::SIGKILL);
    p.wait_exit(WAIT).unwrap();
    let recs = d.wait_records(2, WAIT, by_ns(&ns));
    assert_eq!(recs[0], first);
    let (_, stderr) = report_ok(&journal, &[]);
    assert!(stderr.is_empty(), "{stderr}");
    drop(p);
    drop(d);
    drop(pod);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A SIGKILL mid-write can tear the last line: the kernel checks for a fatal signal between
/// the page-sized chunks of one write(2) (mm/filemap.c `generic_perform_write()`), so a line
/// that crosses a page boundary can be cut there. What holds is the start after it: the
/// fragment is cut (and counted), and every record is on disk whole and once, the torn one
/// and the ones the killed daemon never wrote recovered from the kernel's `ENDED` map.
#[test]
fn a_daemon_killed_mid_burst_leaves_every_record_whole_once() {
    const N: usize = 100;
    let _serial = serial();
    let dir = std::env::temp_dir().join(unique("observer-it-kill9-"));
    std::fs::create_dir_all(&dir).unwrap();
    let journal = dir.join("journal.jsonl");
    let log_root = dir.join("logs");
    let ns = unique("kill9");
    let mut pod = Pod::new(&log_root, &ns, "fleet-7d4b9c6f8-x2k9p");
    let mut d = Daemon::start_with_journal(Some(&journal), Some(&log_root), &[]);
    let procs: Vec<NsInit> = graceful_inits(&mut pod, N).into_iter().map(|(_, p)| p).collect();
    for p in &procs {
        p.signal(libc::SIGTERM);
    }
    // SIGKILL once the first records are on disk, while the rest are still closing.
    let deadline = Instant::now() + WAIT;
    // (Not parsed here: a read racing a write may see part of a line.)
    while !std::fs::read_to_string(&journal).unwrap_or_default().contains(&ns) {
        assert!(Instant::now() < deadline, "no record in {WAIT:?}: {}", d.log());
        std::thread::sleep(Duration::from_millis(1));
    }
    d.stop(Exit::Kill);
    for p in &procs {
        p.wait_exit(WAIT).unwrap();
    }
    let text = std::fs::read_to_string(&journal).unwrap();
    let torn = !text.is_empty() && !text.ends_with('\n');
    let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    for l in whole.lines() {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("torn line {l:?}: {e}"));
    }
    let written = whole.lines().count();
    eprintln!("{written} whole records on disk when the daemon was SIGKILLed (torn tail: {torn})");
    assert!(written >= 1);

    // The next daemon, on the same pins: the journal repaired, then every record once.
    d.start_again();
    let log = d.log();
    if torn {
        assert!(
            log.contains("cut a torn last line") || log.contains("last record had no newline"),
            "{log}"
        );
        // A record whose only missing byte was its newline is kept and terminated.
        let cut = log.contains("cut a torn last line");
        assert_eq!(d.metric("observer_journal_errors_total", &[]), if cut { 1.0 } else { 0.0 });
    } else {
        assert!(!log.contains("torn"), "{log}");
        assert_eq!(d.metric("observer_journal_errors_total", &[]), 0.0);
    }
    let recs = d.wait_records(N, WAIT, by_ns(&ns));
    let mut ids: Vec<&str> = recs.iter().map(|r| r["record_id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), N, "each termination once");
    assert!(recs.iter().all(|r| r["outcome"] == "graceful"), "{recs:?}");
    drop(d);
    drop(procs);
    drop(pod);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A small tmpfs of our own, unmounted (and its directory removed) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "observer-it"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs on {}", dir.display());
        Self(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_full_disk_is_counted_and_the_daemon_keeps_serving() {
    let _serial = serial();
    let dir = std::env::temp_dir().join(unique("observer-it-full-"));
    let fs = Tmpfs::mount(&dir.join("fs"), "64k");
    let journal = fs.0.join("journal.jsonl");
    let log_root = dir.join("logs");
    let ns = unique("full");
    let mut pod = Pod::new(&log_root, &ns, "web-7d4b9c6f8-x2k9p");
    let d = Daemon::start_with_journal(Some(&journal), Some(&log_root), &[]);
    // Fill the file system.
    let filler = fs.0.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 4096];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    drop(f);
    let before = std::fs::read_to_string(&journal).unwrap();

    let mut stop = |container: &str| {
        let (cid, cg) = pod.container(container);
        let p = NsInit::spawn(&cg, &["busybox", "sleep", "1000"]).unwrap();
        p.signal(libc::SIGKILL);
        p.wait_exit(WAIT).unwrap();
        cid
    };
    let cid = stop("a");
    let deadline = Instant::now() + WAIT;
    while d.metric("container_terminations_total", &[("namespace", &ns)]) < 1.0 {
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(d.metric("observer_journal_errors_total", &[]) >= 1.0);
    assert!(d.log().contains("No space left on device"), "{}", d.log());
    assert_eq!(d.http_get("/healthz").unwrap(), (200, "ok\n".into()));
    let (status, body) = d.http_get(&format!("/terminations?namespace={ns}")).unwrap();
    assert_eq!(status, 200);
    let held: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["container_id"], cid.as_str(), "the record is still served");
    assert_eq!(std::fs::read_to_string(&journal).unwrap(), before, "no fragment left");

    // Space again: the next record is written whole.
    std::fs::remove_file(&filler).unwrap();
    let cid2 = stop("b");
    let recs = d.wait_records(1, WAIT, by_ns(&ns));
    assert_eq!(recs[0]["container_id"], cid2.as_str());
    assert!(d.log().contains("journal writable again"), "{}", d.log());
    drop(d);
    drop(pod);
    drop(fs);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn terminations_endpoint_with_good_and_bad_parameters() {
    let _serial = serial();
    let d = Daemon::start();
    let ns = unique("http");
    let mut web = Pod::new(&d.log_root, &ns, "web-7d4b9c6f8-x2k9p");
    let mut api = Pod::new(&d.log_root, &ns, "api-0");
    // Alternately: web killed (no handler), api graceful; in order, one record at a time.
    let mut ids = Vec::new();
    let graceful = handler_exits(0);
    for i in 0..6 {
        let (cid, cg, argv): (String, PathBuf, Vec<&str>) = if i % 2 == 0 {
            let (c, g) = web.container(&format!("w{i}"));
            (c, g, vec!["busybox", "sleep", "1000"])
        } else {
            let (c, g) = api.container(&format!("a{i}"));
            (c, g, args(&graceful))
        };
        let p = NsInit::spawn(&cg, &argv).unwrap();
        if i % 2 == 0 {
            p.signal(libc::SIGKILL);
        } else {
            p.wait_handler(libc::SIGTERM).unwrap();
            p.signal(libc::SIGTERM);
        }
        p.wait_exit(WAIT).unwrap();
        d.wait_records(i + 1, WAIT, by_ns(&ns));
        ids.push(cid);
    }
    let journal = d.records();
    let get = |q: &str| -> Vec<Value> {
        let (status, body) = d.http_get(&format!("/terminations?{q}")).unwrap();
        assert_eq!(status, 200, "{q}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{q}: {e}: {body}"))
    };
    let cids = |v: &[Value]| -> Vec<String> {
        v.iter().map(|r| r["container_id"].as_str().unwrap().to_string()).collect()
    };
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    let all = get(&format!("namespace={ns}"));
    assert_eq!(cids(&all), newest_first);
    for r in &all {
        assert!(journal.contains(r), "served what the journal holds: {r}");
    }
    // Even i were web: ids[4], ids[2], ids[0], newest first.
    let web_ids: Vec<String> = newest_first.iter().skip(1).step_by(2).cloned().collect();
    assert_eq!(cids(&get(&format!("namespace={ns}&workload=web"))), web_ids);
    assert_eq!(cids(&get(&format!("namespace={ns}&outcome=killed_without_stop_signal"))), web_ids);
    assert_eq!(get(&format!("namespace={ns}&outcome=graceful")).len(), 3);
    assert_eq!(cids(&get(&format!("namespace={ns}&limit=2"))), newest_first[..2]);
    assert_eq!(cids(&get(&format!("namespace={ns}&pod=api-0&limit=1"))), [ids[5].clone()]);
    assert_eq!(get(&format!("namespace={ns}&since=1h")).len(), 6);
    assert_eq!(get(&format!("namespace={ns}&since=2999-01-01T00:00:00Z")), Vec::<Value>::new());
    assert_eq!(get("namespace=nobody-has-this"), Vec::<Value>::new());

    for (q, says) in [
        ("limit=0", "at least 1"),
        ("limit=ten", "limit \"ten\""),
        ("outcome=exploded", "unknown outcome \"exploded\""),
        ("since=yesterday", "since: bad duration \"yesterday\""),
        ("namepsace=x", "unknown parameter \"namepsace\""),
        ("namespace=", "is empty"),
        ("limit=1&limit=2", "given twice"),
    ] {
        let (status, body) = d.http_get(&format!("/terminations?{q}")).unwrap();
        assert_eq!(status, 400, "{q}: {body}");
        assert!(body.contains(says), "{q}: {body}");
    }
    drop(d);

    // Bounded: a daemon holding 3 serves at most 3, however many it saw.
    let small = Daemon::start_with(None, &["--recent-terminations", "3"]);
    let mut pod = Pod::new(&small.log_root, &ns, "batch-28340160-4sxv9");
    for i in 0..5 {
        let (_, cg) = pod.container(&format!("b{i}"));
        let p = NsInit::spawn(&cg, &["busybox", "sleep", "1000"]).unwrap();
        p.signal(libc::SIGKILL);
        p.wait_exit(WAIT).unwrap();
    }
    small.wait_records(5, WAIT, by_ns(&ns));
    assert_eq!(get_from(&small, "").len(), 3);
    drop(web);
    drop(api);
}

fn get_from(d: &Daemon, q: &str) -> Vec<Value> {
    let (status, body) = d.http_get(&format!("/terminations?{q}")).unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// 100,000 records in three rotated files plus one corrupt line: every count in the summary
/// is the test's own; `--json` with a filter returns exactly the matching lines. (How fast
/// is a benchmark figure: `cargo xtask bench`, not a timed test.)
#[test]
fn a_100k_record_journal_is_summarised_exactly() {
    const N: usize = 100_000;
    let dir = std::env::temp_dir().join(unique("observer-it-100k-"));
    std::fs::create_dir_all(&dir).unwrap();
    let journal = dir.join("journal.jsonl");
    let outcomes =
        ["graceful", "graceful", "graceful", "killed", "oom_killed", "killed_without_stop_signal"];
    // Per workload: [total, graceful, killed, oom, ignored].
    let mut want = std::collections::BTreeMap::<String, [u64; 5]>::new();
    let mut files = [String::new(), String::new(), String::new()];
    let base = chrono_free_ts(0);
    assert_eq!(base, "2026-08-01T00:00:00.000000000Z");
    for i in 0..N {
        let ns = format!("ns{}", i % 7);
        let workload = format!("app{}", i % 13);
        let outcome = outcomes[i % outcomes.len()];
        let ignored = outcome == "killed" && i % 4 == 0;
        let r = json!({
            "ts": chrono_free_ts(i as u64),
            "node": "node-1",
            "namespace": ns,
            "pod": format!("{workload}-7d4b9c6f8-{:05}", i),
            "container": "main",
            "workload": workload,
            "pid": 1000 + i,
            "outcome": outcome,
            "stop_signal": if outcome.starts_with("killed_") || outcome == "oom_killed" { Value::Null } else { json!("SIGTERM") },
            "stop_signal_ignored": ignored,
            "stop_signal_handler": if ignored { json!("default") } else { Value::Null },
            "term_to_exit_seconds": if outcome == "graceful" { json!((i % 100) as f64 / 10.0) } else { Value::Null },
            "term_to_kill_seconds": if outcome == "killed" { json!(30.0) } else { Value::Null },
        });
        let w = want.entry(format!("{ns}/{workload}")).or_default();
        w[0] += 1;
        match outcome {
            "graceful" => w[1] += 1,
            "oom_killed" => w[3] += 1,
            _ => w[2] += 1,
        }
        w[4] += ignored as u64;
        files[i * 3 / N].push_str(&format!("{r}\n"));
        if i == N / 2 {
            files[1].push_str("{\"ts\":\"2026-08-01T00:00:00Z\",\"outc\n");
        }
    }
    std::fs::write(format!("{}.2", journal.display()), &files[0]).unwrap();
    std::fs::write(format!("{}.1", journal.display()), &files[1]).unwrap();
    std::fs::write(&journal, &files[2]).unwrap();

    let (text, stderr) = report_ok(&journal, &["--max-kills", "0"]);
    assert!(
        text.starts_with(&format!("{N} terminations from 2026-08-01 00:00:00 to ")),
        "{}",
        &text[..200]
    );
    assert!(stderr.contains("skipped 1 corrupt or truncated journal line"), "{stderr}");
    for (label, w) in &want {
        let r = row(&text, label);
        assert_eq!(r[..4], w[..4].iter().map(u64::to_string).collect::<Vec<_>>()[..], "{label}");
        assert_eq!(r[7], w[4].to_string(), "{label} ignored");
    }
    let forced: u64 = want.values().map(|w| w[2] + w[3]).sum();
    assert_eq!(kills(&text).len() as u64, forced);
    assert!(text.contains(&format!("FORCED KILLS ({forced}, newest first)")));

    let oom = json_lines(&journal, &["--outcome", "oom_killed", "--namespace", "ns3"]);
    let expected: Vec<&str> = files
        .iter()
        .flat_map(|f| f.lines())
        .filter(|l| l.contains("\"oom_killed\"") && l.contains("\"namespace\":\"ns3\""))
        .collect();
    assert_eq!(oom, expected);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// 2026-08-01T00:00:00Z plus `i` seconds, in the journal's format (no date crate here).
fn chrono_free_ts(i: u64) -> String {
    let (d, s) = (i / 86_400, i % 86_400);
    format!("2026-08-{:02}T{:02}:{:02}:{:02}.000000000Z", 1 + d, s / 3600, s % 3600 / 60, s % 60)
}
