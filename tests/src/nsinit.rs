//! A process as PID 1 of a fresh pid namespace in a container cgroup, as a runtime starts
//! one, and the workloads tests run there.

use std::{
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::Pod;

/// A process that is PID 1 of a fresh pid namespace inside a container cgroup, as a runtime
/// would start it: `unshare --pid --fork` makes the child PID 1, which joins the cgroup and
/// execs the workload.
pub struct NsInit {
    unshare: Child,
    /// Host pid of the namespace's PID 1.
    pub pid: u32,
    pidfd: OwnedFd,
    cgroup: PathBuf,
}

impl NsInit {
    /// Starts `argv` as PID 1 of a new pid namespace in `cgroup` (created if need be).
    pub fn spawn(cgroup: &Path, argv: &[&str]) -> Result<Self> {
        Self::spawn_in(cgroup, &[], argv)
    }

    /// Like [`NsInit::spawn`], also joining `extra` cgroups (v1 controllers: hybrid hosts).
    pub fn spawn_in(cgroup: &Path, extra: &[&Path], argv: &[&str]) -> Result<Self> {
        let mut join = String::new();
        for dir in std::iter::once(cgroup).chain(extra.iter().copied()) {
            std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
            // `0`: the writing task itself (kernel/cgroup/cgroup.c, cgroup_procs_write_start()).
            join.push_str(&format!("echo 0 > {}/cgroup.procs && ", dir.display()));
        }
        // PID 1 joins the container's cgroups itself, then execs the workload, as a runtime's
        // init does: `unshare` stays outside the container. (Had unshare joined first and
        // exec'd there, the kernel would rightly report it as an exec session entering the
        // container, and every record would carry it as a preStop hook.)
        let mut cmd = Command::new("unshare");
        cmd.args(["--pid", "--fork", "sh", "-c"])
            .arg(format!("{join}exec \"$@\""))
            .arg("sh")
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let unshare = cmd.spawn().context("spawning unshare")?;
        let upid = unshare.id();
        let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain(std::iter::once(0))).collect();
        // The namespace's PID 1 is unshare's only child.
        let deadline = Instant::now() + Duration::from_secs(5);
        let pid = loop {
            let children = std::fs::read_to_string(format!("/proc/{upid}/task/{upid}/children"))
                .unwrap_or_default();
            if let Some(p) = children.split_whitespace().next().and_then(|p| p.parse::<u32>().ok())
            {
                // Wait until it has joined the cgroups and exec'd the workload.
                let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                if cmdline == want {
                    break p;
                }
            }
            if Instant::now() > deadline {
                bail!("unshare did not start PID 1 in 5 s");
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        // SAFETY: plain syscall; the fd is owned below.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
        if fd < 0 {
            bail!("pidfd_open({pid}): {}", std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, owned pidfd.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(Self { unshare, pid, pidfd, cgroup: cgroup.into() })
    }

    /// Sends `sig` to PID 1 (from the host, as runc does) and returns the time it was sent.
    pub fn signal(&self, sig: i32) -> Instant {
        let t = Instant::now();
        // SAFETY: a pidfd we own keeps the target identity stable.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                sig,
                std::ptr::null::<u8>(),
                0,
            )
        };
        assert_eq!(rc, 0, "pidfd_send_signal: {}", std::io::Error::last_os_error());
        t
    }

    /// Waits (poll on the pidfd) until PID 1 has exited; returns when it was seen gone.
    pub fn wait_exit(&self, timeout: Duration) -> Result<Instant> {
        let mut pfd = libc::pollfd { fd: self.pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        let t = Instant::now();
        if rc != 1 {
            bail!("PID 1 ({}) did not exit within {timeout:?}", self.pid);
        }
        Ok(t)
    }

    /// Waits until PID 1 has a handler for `sig` or ignores it (a shell runs `trap` only
    /// after exec: a signal sent before that meets SIG_DFL, which an init drops).
    pub fn wait_handler(&self, sig: i32) -> Result<()> {
        wait_handler(self.pid, sig)
    }

    /// Whether PID 1 is still running (its pidfd is not yet readable).
    pub fn alive(&self) -> bool {
        let mut pfd = libc::pollfd { fd: self.pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, no wait.
        unsafe { libc::poll(&mut pfd, 1, 0) == 0 }
    }

    /// The status PID 1's parent reaped, as a runtime would: `unshare --fork` waits for its
    /// child and exits with the same code (util-linux sys-utils/unshare.c). It means to kill
    /// itself with a fatal signal too, but 2.38 fails to for SIGKILL and exits 1.
    pub fn reaped_status(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.unshare.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("unshare (parent of PID {}) did not exit within {timeout:?}", self.pid);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for NsInit {
    fn drop(&mut self) {
        if self.alive() {
            self.signal(libc::SIGKILL);
            let _ = self.wait_exit(Duration::from_secs(5));
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        // The cgroup is empty once PID 1 and unshare are gone.
        for _ in 0..100 {
            if std::fs::remove_dir(&self.cgroup).is_ok() || !self.cgroup.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Waits until `pid` catches or ignores `sig` (`SigCgt` / `SigIgn` in `/proc/<pid>/status`).
pub fn wait_handler(pid: u32, sig: i32) -> Result<()> {
    let bit = 1u64 << (sig - 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let mask = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or(0)
        };
        if (mask("SigCgt:") | mask("SigIgn:")) & bit != 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("pid {pid} installed no disposition for signal {sig} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A PID 1 (the host's busybox) whose SIGTERM handler exits at once with `code` (`wait`
/// returns as soon as a trapped signal arrives, so there is no polling delay).
pub fn handler_exits(code: u32) -> Vec<String> {
    vec![
        "busybox".into(),
        "sh".into(),
        "-c".into(),
        format!("trap 'exit {code}' TERM; busybox sleep 1000 & wait"),
    ]
}

/// `n` containers `c0`…`c{n-1}` of `pod`, each a PID 1 of [`handler_exits`]`(0)` with its
/// SIGTERM handler installed: (container id, PID 1), in order.
pub fn graceful_inits(pod: &mut Pod, n: usize) -> Vec<(String, NsInit)> {
    let mut procs = Vec::new();
    for i in 0..n {
        let (cid, cg) = pod.container(&format!("c{i}"));
        let p = NsInit::spawn(&cg, &args(&handler_exits(0))).unwrap();
        p.wait_handler(libc::SIGTERM).unwrap();
        procs.push((cid, p));
    }
    procs
}

/// `v` as the `&str`s [`NsInit::spawn`] takes.
pub fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
