//! Process mode: the workload as a container without a runtime.
//!
//! PID 1 is created the way runtimes create it: `clone3(CLONE_NEWPID | CLONE_NEWNS |
//! CLONE_INTO_CGROUP)` puts it, from birth, at pid 1 of a fresh pid namespace, in a mount
//! namespace of its own (with its own /proc) and in a kubepods-style cgroup of its own
//! (`<root>/besteffort/pod<uid>/<64 hex>`). An exec preStop hook is started as `runc exec`
//! starts one: a helper joins PID 1's pid and mount namespaces (`setns` on its pidfd) and forks
//! the session, which moves itself into the container's cgroup and execs `sh -c CMD`; the
//! helper exits, so the session's parent is observer (a child subreaper), outside the container.
//! Signals go to PID 1 from the host through its pidfd, as runc sends them.
//!
//! Between fork and exec the children make raw system calls only: the parent may have threads.

use std::{
    ffi::{CString, OsStr},
    fs::File,
    io::Read as _,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::{ffi::OsStrExt as _, fs::MetadataExt as _},
    },
    path::{Path, PathBuf},
    time::Duration,
};

use crate::cgroup::CgroupV2;

use super::{Container, DrillError, Executor};

/// `CLONE_INTO_CGROUP` (include/uapi/linux/sched.h, Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The process-mode executor. Ends and removes everything it made on drop.
pub struct ProcessExecutor {
    container: Container,
    cgroup_dir: PathBuf,
    pod_dir: PathBuf,
    pid1_fd: OwnedFd,
    pid1_status: Option<i32>,
    session: Option<(i32, OwnedFd)>,
    session_status: Option<i32>,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DrillError {
    let what = what.into();
    move |source| DrillError::Io { what, source }
}

fn last_os_error(what: &str) -> DrillError {
    DrillError::Io { what: what.into(), source: std::io::Error::last_os_error() }
}

fn cstring(s: &[u8], what: &str) -> Result<CString, DrillError> {
    CString::new(s).map_err(|_| DrillError::Usage(format!("{what} contains a NUL byte")))
}

/// A 64-hex container id and a pod uid, unique per drill.
pub(crate) fn ids() -> (String, String) {
    let mut seed = [0u8; 32];
    let read = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut seed));
    if read.is_err() {
        // Unique enough for a drill: pid and time.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        seed[..16].copy_from_slice(&t.to_le_bytes());
        seed[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    }
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    let uid = format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    );
    (hex, uid)
}

/// `program` as execv wants it: a path, searched in $PATH when it has no slash.
fn resolve(program: &str) -> Result<CString, DrillError> {
    if program.contains('/') {
        return cstring(program.as_bytes(), "the command");
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if candidate.metadata().is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0) {
            return cstring(candidate.as_os_str().as_bytes(), "the command");
        }
    }
    Err(DrillError::Usage(format!("{program}: command not found in $PATH")))
}

fn open_path(path: &Path, flags: i32) -> Result<OwnedFd, DrillError> {
    let c = cstring(path.as_os_str().as_bytes(), "a path")?;
    // SAFETY: valid C string; the fd is owned below.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(last_os_error(&format!("open {}", path.display())));
    }
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// In a child between fork and exec: default dispositions, nothing blocked (the drill
/// itself may ignore or block signals), stdin from /dev/null, stdout to the drill's stderr
/// (the drill's stdout is its report).
///
/// # Safety
/// Raw syscalls only.
unsafe fn child_stdio_and_signals(devnull: i32, die_with_parent: bool) {
    unsafe {
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::dup2(devnull, 0);
        libc::dup2(2, 1);
        // If the drill dies, its workload dies with it rather than linger.
        if die_with_parent {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        }
    }
}

/// In a child: report errno on the CLOEXEC pipe and leave.
unsafe fn child_fail(pipe: i32) -> ! {
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    unsafe {
        libc::write(pipe, (&errno as *const i32).cast(), 4);
        libc::_exit(127)
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), DrillError> {
    let mut fds = [0; 2];
    // SAFETY: two-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(last_os_error("pipe2"));
    }
    // SAFETY: fresh fds.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reads what a child wrote on its CLOEXEC pipe: nothing (exec succeeded) or an errno.
fn read_exec_result(read: OwnedFd, what: &str) -> Result<(), DrillError> {
    let mut f = File::from(read);
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(io(format!("reading {what}'s start")))?;
    if buf.len() >= 4 {
        let errno = i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        return Err(DrillError::Io {
            what: format!("starting {what}"),
            source: std::io::Error::from_raw_os_error(errno),
        });
    }
    Ok(())
}

pub(crate) fn pidfd_open(pid: i32) -> Result<OwnedFd, DrillError> {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(last_os_error(&format!("pidfd_open({pid})")));
    }
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Non-blocking reap: the wait status once `pid` has exited.
fn try_reap(pid: i32) -> Option<i32> {
    let mut status = 0;
    // SAFETY: our own child.
    let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    (rc == pid).then_some(status)
}

fn pidfd_signal(fd: &OwnedFd, sig: u32) -> std::io::Result<()> {
    // SAFETY: a pidfd we own.
    let rc = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), sig as i32, 0usize, 0u32)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl ProcessExecutor {
    /// Creates the container's cgroup under `cgroup_root` (hierarchy-relative, `/kubepods`)
    /// and starts `argv` as its PID 1.
    pub fn start(cgroup_root: &str, argv: &[String]) -> Result<Self, DrillError> {
        let program = argv.first().ok_or_else(|| DrillError::Usage("no command given".into()))?;
        let exe = resolve(program)?;
        let args: Vec<CString> =
            argv.iter().map(|a| cstring(a.as_bytes(), "an argument")).collect::<Result<_, _>>()?;
        let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        arg_ptrs.push(std::ptr::null());

        let v2 = CgroupV2::discover().map_err(|e| DrillError::Setup(e.to_string()))?;
        let (id, uid) = ids();
        let pod_path = format!("{}/besteffort/pod{uid}", cgroup_root.trim_end_matches('/'));
        let path = format!("{pod_path}/{id}");
        let pod_dir = v2.dir_of(&pod_path);
        let cgroup_dir = v2.dir_of(&path);
        std::fs::create_dir_all(&cgroup_dir)
            .map_err(io(format!("mkdir {}", cgroup_dir.display())))?;
        let cgroup_id = std::fs::metadata(&cgroup_dir)
            .map_err(io(format!("stat {}", cgroup_dir.display())))?
            .ino();
        let cleanup_dirs = |e| {
            let _ = std::fs::remove_dir(&cgroup_dir);
            let _ = std::fs::remove_dir(&pod_dir);
            e
        };
        let cg_fd =
            open_path(&cgroup_dir, libc::O_RDONLY | libc::O_DIRECTORY).map_err(cleanup_dirs)?;
        let devnull = open_path(Path::new("/dev/null"), libc::O_RDWR).map_err(cleanup_dirs)?;
        let proc_src = c"proc";
        let proc_dir = c"/proc";
        let root = c"/";
        let (read, write) = pipe().map_err(cleanup_dirs)?;
        let mut pidfd: libc::c_int = -1;
        // SAFETY: zeroed clone_args is valid (all integers).
        let mut ca: libc::clone_args = unsafe { std::mem::zeroed() };
        ca.flags =
            (libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_PIDFD) as u64 | CLONE_INTO_CGROUP;
        ca.pidfd = &mut pidfd as *mut libc::c_int as u64;
        ca.exit_signal = libc::SIGCHLD as u64;
        ca.cgroup = cg_fd.as_raw_fd() as u64;
        // SAFETY: clone3 without CLONE_VM is a fork; the child below makes raw syscalls only
        // and execs or exits.
        let pid = unsafe {
            libc::syscall(libc::SYS_clone3, &ca as *const libc::clone_args, size_of_val(&ca))
        };
        if pid == 0 {
            // Child: PID 1 of the new namespace.
            unsafe {
                let w = write.as_raw_fd();
                // Our mounts stay ours; a /proc that shows our pid namespace.
                libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                );
                libc::mount(
                    proc_src.as_ptr(),
                    proc_dir.as_ptr(),
                    proc_src.as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    std::ptr::null(),
                );
                child_stdio_and_signals(devnull.as_raw_fd(), true);
                libc::execv(exe.as_ptr(), arg_ptrs.as_ptr());
                child_fail(w)
            }
        }
        if pid < 0 {
            return Err(cleanup_dirs(last_os_error("clone3 (pid and mount namespaces, cgroup)")));
        }
        drop(write);
        // SAFETY: the kernel wrote a fresh pidfd for the child.
        let pid1_fd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        let mut me = Self {
            container: Container { cgroup_path: path, cgroup_id, pid: pid as u32 },
            cgroup_dir,
            pod_dir,
            pid1_fd,
            pid1_status: None,
            session: None,
            session_status: None,
        };
        drop(cg_fd);
        read_exec_result(read, program)?;
        me.reap();
        Ok(me)
    }

    fn reap(&mut self) {
        if self.pid1_status.is_none() {
            self.pid1_status = try_reap(self.container.pid as i32);
        }
        if let Some((pid, _)) = &self.session {
            if self.session_status.is_none() {
                self.session_status = try_reap(*pid);
            }
        }
    }
}

impl Executor for ProcessExecutor {
    fn container(&self) -> &Container {
        &self.container
    }

    fn start_prestop_exec(&mut self, command: &str) -> Result<(), DrillError> {
        let sh = c"/bin/sh";
        let args =
            [c"sh".to_owned(), c"-c".to_owned(), cstring(command.as_bytes(), "--prestop-exec")?];
        let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        arg_ptrs.push(std::ptr::null());
        let procs = open_path(&self.cgroup_dir.join("cgroup.procs"), libc::O_WRONLY)?;
        let devnull = open_path(Path::new("/dev/null"), libc::O_RDWR)?;
        let (pid_read, pid_write) = pipe()?;
        let (err_read, err_write) = pipe()?;
        let pid1_fd = self.pid1_fd.as_raw_fd();
        // SAFETY: the helper and the session make raw syscalls only, then exec or exit.
        let helper = unsafe { libc::fork() };
        if helper == 0 {
            unsafe {
                let ew = err_write.as_raw_fd();
                if libc::setns(pid1_fd, libc::CLONE_NEWPID | libc::CLONE_NEWNS) != 0 {
                    child_fail(ew);
                }
                let session = libc::fork();
                if session == 0 {
                    if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                        child_fail(ew);
                    }
                    // Not tied to its parent, the helper, which exits now: the session dies
                    // with the container, like a runtime's exec session.
                    child_stdio_and_signals(devnull.as_raw_fd(), false);
                    libc::execv(sh.as_ptr(), arg_ptrs.as_ptr());
                    child_fail(ew);
                }
                if session < 0 {
                    child_fail(ew);
                }
                libc::write(pid_write.as_raw_fd(), (&session as *const i32).cast(), 4);
                libc::_exit(0);
            }
        }
        if helper < 0 {
            return Err(last_os_error("fork (preStop exec)"));
        }
        drop((pid_write, err_write, procs, devnull));
        let mut buf = [0u8; 4];
        let got = File::from(pid_read).read_exact(&mut buf);
        let mut status = 0;
        // SAFETY: our own child; it exits right after writing.
        unsafe { libc::waitpid(helper, &mut status, 0) };
        read_exec_result(err_read, "the preStop exec hook")?;
        got.map_err(io("reading the preStop session's pid"))?;
        let pid = i32::from_le_bytes(buf);
        self.session = Some((pid, pidfd_open(pid)?));
        Ok(())
    }

    fn prestop_exec_running(&mut self) -> bool {
        self.reap();
        self.session.is_some() && self.session_status.is_none()
    }

    fn send_signal(&mut self, sig: u32) -> Result<(), DrillError> {
        match pidfd_signal(&self.pid1_fd, sig) {
            Ok(()) => Ok(()),
            // Already gone: nothing to stop.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(DrillError::Io { what: format!("signal {sig} to PID 1"), source: e }),
        }
    }

    fn pid1_exited(&mut self) -> bool {
        self.reap();
        self.pid1_status.is_some()
    }

    fn finished(&mut self) -> bool {
        self.reap();
        self.pid1_status.is_some() && (self.session.is_none() || self.session_status.is_some())
    }
}

impl Drop for ProcessExecutor {
    fn drop(&mut self) {
        self.reap();
        if self.pid1_status.is_none() {
            let _ = pidfd_signal(&self.pid1_fd, libc::SIGKILL as u32);
        }
        if let (Some((_, fd)), None) = (&self.session, self.session_status) {
            let _ = pidfd_signal(fd, libc::SIGKILL as u32);
        }
        for _ in 0..500 {
            self.reap();
            let session_done = self.session.is_none() || self.session_status.is_some();
            if self.pid1_status.is_some() && session_done {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for dir in [&self.cgroup_dir, &self.pod_dir] {
            for _ in 0..100 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if dir.exists() {
                log::warn!("could not remove {}", dir.display());
            }
        }
    }
}

/// For messages: the command line as typed.
pub fn display_command(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let s = OsStr::new(a).to_string_lossy();
            if s.contains(char::is_whitespace) {
                format!("'{s}'")
            } else {
                s.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
