//! The kernel matrix's machinery (`tests/tests/kernels.rs`): one scenario script,
//! `tests/vm/scenarios.sh`, run inside a VM booting one of Debian's cloud kernels, or natively
//! on this host; what it prints parsed into a [`Report`].
//!
//! A VM is qemu with the kernel `cargo xtask setup` cached (`xtask/src/vm.rs`) and an
//! initramfs written here ([`Cpio`]): busybox, the static observer, `tests/vm/init.sh` as
//! `/init` and the scenario script. The guest's console (ttyS0, qemu's stdout) carries the
//! kernel's messages and the script's progress; the script writes its marker lines to a file,
//! which init copies at the end to a second serial port (ttyS1, a file on the host) that the
//! kernel never writes to.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

/// What starts every line the scenario script means for the host.
pub const MARK: &str = "@@observer-vm ";

/// The scenario script and the guest's init.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vm").join(name)
}

/// The static daemon (`cargo xtask test` builds it and passes it as `OBSERVER_STATIC_BIN`):
/// an initramfs has no libc for the dynamic one.
pub fn static_observer() -> Result<PathBuf> {
    let bin = std::env::var_os("OBSERVER_STATIC_BIN").map(PathBuf::from).context(
        "OBSERVER_STATIC_BIN is not set: run `cargo xtask test` (it builds the static daemon, \
         target/<host>/release/observer, and passes it)",
    )?;
    if !bin.is_file() {
        bail!("OBSERVER_STATIC_BIN={} does not exist: run `cargo xtask image`", bin.display());
    }
    Ok(bin)
}

/// busybox-static (`cargo xtask setup` installs it).
pub fn busybox() -> Result<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .context("busybox-static is not installed: run `cargo xtask setup`")
}

/// `tests/progs/<name>.c` linked statically (glibc's libc.a, from libc6-dev) into
/// `target/test-progs/static/<name>` (the same name, so the same comm, in the VM and here),
/// rebuilt when the source is newer: the guest has no libc for the dynamic build the other
/// tests use (`crate::trigger_program`).
pub fn static_trigger_program(name: &str) -> Result<PathBuf> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("progs").join(format!("{name}.c"));
    let out_dir = root.join("../target/test-progs/static");
    let out = out_dir.join(name);
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if matches!((modified(&out), modified(&src)), (Some(o), Some(s)) if o >= s) {
        return Ok(out);
    }
    std::fs::create_dir_all(&out_dir)?;
    let tmp = out_dir.join(format!("{name}.{}", std::process::id()));
    let status = Command::new("cc")
        .args(["-O2", "-Wall", "-Werror", "-static", "-pthread", "-o"])
        .arg(&tmp)
        .arg(&src)
        .status()
        .context("cc (gcc) builds the trigger programs: apt-get install gcc")?;
    if !status.success() {
        bail!("cc -static {}: {status}", src.display());
    }
    std::fs::rename(&tmp, &out)?;
    Ok(out)
}

/// A kernel of the matrix as `cargo xtask setup` caches it: `<dir>/<release>/vmlinuz`, with
/// `package` naming the Debian package and version it came from.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `uname -r` of the kernel (the directory's name).
    pub release: String,
    pub vmlinuz: PathBuf,
    /// "<package> <version>" (the version is the upstream one, e.g. 6.1.192-3).
    pub package: String,
}

/// Where `cargo xtask setup` caches the kernels (`OBSERVER_VM_KERNELS`, else the workspace's
/// `target/vm/kernels`).
pub fn kernels_dir() -> PathBuf {
    std::env::var_os("OBSERVER_VM_KERNELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/vm/kernels"))
}

/// The cached kernel of `series` ("6.1"): `cargo xtask setup` links `<dir>/<series>` to the
/// release directory it chose.
pub fn kernel(series: &str) -> Result<Kernel> {
    let link = kernels_dir().join(series);
    let missing = || {
        format!(
            "no {series} kernel at {}: run `cargo xtask setup` (it fetches Debian's cloud kernels \
             with apt-get download)",
            link.display()
        )
    };
    let release = std::fs::read_link(&link).with_context(missing)?;
    let vmlinuz = link.join("vmlinuz");
    let package = std::fs::read_to_string(link.join("package")).with_context(missing)?;
    if !vmlinuz.is_file() {
        bail!(missing());
    }
    Ok(Kernel {
        release: release.to_string_lossy().into_owned(),
        vmlinuz,
        package: package.trim().to_string(),
    })
}

/// A cpio archive in the "newc" format, the one the kernel unpacks as an initramfs
/// (Documentation/driver-api/early-userspace/buffer-format.rst; init/initramfs.c). It is left
/// uncompressed, which the kernel takes as well: nothing to inflate in an emulated CPU.
pub struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Default for Cpio {
    fn default() -> Self {
        Self::new()
    }
}

impl Cpio {
    pub fn new() -> Self {
        Self { buf: Vec::new(), ino: 0 }
    }

    /// A directory (`path` without a leading `/`, parents first).
    pub fn dir(&mut self, path: &str) {
        self.entry(path, 0o040_755, &[], (0, 0));
    }

    /// A regular file with permission bits `perm`.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) {
        self.entry(path, 0o100_000 | perm, data, (0, 0));
    }

    /// A character device node.
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) {
        self.entry(path, 0o020_000 | perm, &[], (major, minor));
    }

    /// The archive, with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.ino = 0;
        self.header("TRAILER!!!", 0, 0, (0, 0));
        self.buf
    }

    fn entry(&mut self, path: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        self.header(path, mode, data.len(), rdev);
        self.buf.extend_from_slice(data);
        self.pad();
    }

    /// "070701", then 13 fields of 8 hex digits: ino, mode, uid, gid, nlink, mtime, filesize,
    /// devmajor, devminor, rdevmajor, rdevminor, namesize (with its NUL), check; the name,
    /// NUL-terminated; header + name and the data are each padded to 4 bytes.
    fn header(&mut self, name: &str, mode: u32, size: usize, rdev: (u32, u32)) {
        let nlink = if mode & 0o170_000 == 0o040_000 { 2 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0,
            0,
            nlink,
            0,
            size as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

/// The guest's root: busybox (its applet links are made by /init), the static observer,
/// threads_exit and tcp_hold, the init and the scenario script, the mount points, and
/// /dev/console (5, 1), which the kernel opens for init's stdio before anything is mounted.
pub fn initramfs(observer: &Path) -> Result<Vec<u8>> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let mut cpio = Cpio::new();
    for d in ["bin", "dev", "proc", "sys", "tmp", "run"] {
        cpio.dir(d);
    }
    cpio.char_dev("dev/console", 0o600, 5, 1);
    cpio.file("bin/busybox", 0o755, &read(&busybox()?)?);
    cpio.file("bin/observer", 0o755, &read(observer)?);
    cpio.file("bin/threads_exit", 0o755, &read(&static_trigger_program("threads_exit")?)?);
    cpio.file("bin/tcp_hold", 0o755, &read(&static_trigger_program("tcp_hold")?)?);
    cpio.file("init", 0o755, &read(&script("init.sh"))?);
    cpio.file("scenarios.sh", 0o755, &read(&script("scenarios.sh"))?);
    Ok(cpio.finish())
}

/// One VM run: what the guest printed and how long it took.
#[derive(Debug)]
pub struct Boot {
    /// The console (ttyS0): kernel messages, init's and the script's progress.
    pub console: String,
    /// The marker lines (ttyS1).
    pub data: String,
    /// qemu's own stderr.
    pub qemu_stderr: String,
    /// qemu start to the script's first line on the console (kernel boot + init's mounts).
    pub boot: Option<Duration>,
    /// qemu start to qemu's exit.
    pub wall: Duration,
}

impl Boot {
    /// The console's last `n` lines.
    pub fn console_tail(&self, n: usize) -> String {
        tail(&self.console, n)
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// qemu's accelerator: TCG. KVM does not boot these kernels on this project's machines (a
/// nested VM: with the default CPU model the guest hangs after "Probing EDD", `-cpu host` and
/// `-cpu max` abort qemu in kvm_buf_set_msrs); `OBSERVER_VM_ACCEL=kvm` where it works.
pub fn accel() -> String {
    std::env::var("OBSERVER_VM_ACCEL").unwrap_or_else(|_| "tcg".into())
}

/// Boots `kernel` with `initrd` (2 CPUs, 1 GiB, no network) and waits until the guest powers
/// off, at most `timeout`; `out_dir` gets the data port's file. qemu is ended by its PID when
/// the time is up; a kernel panic ends the run at once (`panic=-1` reboots, `-no-reboot`
/// exits). Either is an error carrying the console's tail.
pub fn boot(kernel: &Kernel, initrd: &Path, out_dir: &Path, timeout: Duration) -> Result<Boot> {
    let data_path = out_dir.join("ttyS1.log");
    let _ = std::fs::remove_file(&data_path);
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", &accel(), "-m", "1024", "-smp", "2", "-nic", "none", "-no-reboot"])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio", "-serial"])
        .arg(format!("file:{}", data_path.display()))
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: prctl is async-signal-safe. qemu dies with the thread that started it (the
    // test's), should the test process be killed before it ends qemu itself.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let mut child = cmd.spawn().context(
        "spawning qemu-system-x86_64: install qemu-system-x86 (`cargo xtask setup` does)",
    )?;
    let console = Arc::new(Mutex::new(String::new()));
    let booted = Arc::new(Mutex::new(None));
    let out = child.stdout.take().expect("piped stdout");
    let reader = {
        let (console, booted) = (console.clone(), booted.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).split(b'\n').map_while(|l| l.ok()) {
                let line = String::from_utf8_lossy(&line).replace('\r', "");
                if line.contains("scenarios: kernel") {
                    booted.lock().unwrap().get_or_insert(start.elapsed());
                }
                let mut c = console.lock().unwrap();
                c.push_str(&line);
                c.push('\n');
            }
        })
    };
    let errs = read_all(child.stderr.take().expect("piped stderr"));
    let status = wait_until(&mut child, start + timeout, || {
        console.lock().unwrap().contains("Kernel panic")
    });
    let _ = reader.join();
    let boot = Boot {
        console: console.lock().unwrap().clone(),
        data: std::fs::read_to_string(&data_path).unwrap_or_default(),
        qemu_stderr: errs.join().unwrap_or_default(),
        boot: *booted.lock().unwrap(),
        wall: start.elapsed(),
    };
    std::fs::write(out_dir.join("console.log"), &boot.console)?;
    match status {
        _ if boot.console.contains("Kernel panic") => bail!(
            "kernel {} panicked after {:.1} s:\n{}",
            kernel.release,
            boot.wall.as_secs_f64(),
            boot.console_tail(40)
        ),
        Waited::Exited(s) if s.success() => Ok(boot),
        Waited::Exited(s) => bail!(
            "qemu exited with {s}:\n{}\nconsole:\n{}",
            boot.qemu_stderr,
            boot.console_tail(40)
        ),
        Waited::Killed => bail!(
            "kernel {}: the guest did not power off within {timeout:?}; qemu (pid {}) was killed. \
             Console:\n{}\nmarker lines:\n{}",
            kernel.release,
            child.id(),
            boot.console_tail(40),
            tail(&boot.data, 20)
        ),
    }
}

/// How a child ended under [`wait_until`].
pub enum Waited {
    Exited(std::process::ExitStatus),
    /// Killed by its PID at the deadline (or when `give_up` said so).
    Killed,
}

/// Waits for `child` until `deadline`, or until `give_up()` has held for 2 s; then SIGKILLs
/// it (by its PID: it is our own child) and reaps it.
pub fn wait_until(child: &mut Child, deadline: Instant, give_up: impl Fn() -> bool) -> Waited {
    let mut gave_up: Option<Instant> = None;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Waited::Exited(status);
        }
        if gave_up.is_none() && give_up() {
            gave_up = Some(Instant::now());
        }
        let now = Instant::now();
        if now > deadline || gave_up.is_some_and(|t| now > t + Duration::from_secs(2)) {
            let _ = child.kill();
            let _ = child.wait();
            return Waited::Killed;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads a pipe to its end on a thread of its own.
pub fn read_all(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// What one run of the scenario script reported (its marker lines).
#[derive(Debug, Default)]
pub struct Report {
    /// `uname -r`.
    pub kernel: Option<String>,
    /// `/proc/version`.
    pub version: Option<String>,
    /// `observer check`'s output, line by line, and its exit status.
    pub check: Vec<String>,
    pub check_exit: Option<i32>,
    /// Per scenario: what the script did (pids, ids, times before and after each kill(2)).
    pub facts: BTreeMap<String, BTreeMap<String, String>>,
    /// The script's own failures.
    pub errors: Vec<String>,
    /// The daemon's journal, one record per line.
    pub journal: Vec<Value>,
    /// Marker lines that did not parse (a journal line that is not JSON, an unknown key).
    pub garbled: Vec<String>,
    pub daemon_log: Vec<String>,
    /// The script's exit status (it always prints one, from its EXIT trap).
    pub end: Option<i32>,
}

impl Report {
    /// Parses marker lines, skipping everything else (carriage returns are dropped).
    pub fn parse(text: &str) -> Self {
        let mut r = Self::default();
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            let Some(at) = line.find(MARK) else { continue };
            let rest = &line[at + MARK.len()..];
            let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
            match key {
                "kernel" => r.kernel = Some(value.into()),
                "version" => r.version = Some(value.into()),
                "check" => r.check.push(value.into()),
                "check-exit" => r.check_exit = value.trim().parse().ok(),
                "error" => r.errors.push(value.into()),
                "daemon-log" => r.daemon_log.push(value.into()),
                "end" => r.end = value.trim().parse().ok(),
                "journal" => match serde_json::from_str(value) {
                    Ok(v) => r.journal.push(v),
                    Err(e) => r.garbled.push(format!("{line} ({e})")),
                },
                "fact" => {
                    let mut words = value.split_whitespace();
                    let Some(scenario) = words.next() else {
                        r.garbled.push(line.into());
                        continue;
                    };
                    let facts = r.facts.entry(scenario.into()).or_default();
                    for w in words {
                        match w.split_once('=') {
                            Some((k, v)) => {
                                facts.insert(k.into(), v.into());
                            }
                            None => r.garbled.push(line.into()),
                        }
                    }
                }
                _ => r.garbled.push(line.into()),
            }
        }
        r
    }

    /// One fact of a scenario.
    pub fn fact(&self, scenario: &str, key: &str) -> Option<&str> {
        self.facts.get(scenario)?.get(key).map(String::as_str)
    }
}

/// One native run of the scenario script: its marker lines (a file) and progress.
#[derive(Debug)]
pub struct Native {
    pub markers: String,
    pub stdout: String,
    pub stderr: String,
    pub status: Option<std::process::ExitStatus>,
    pub wall: Duration,
}

/// Runs the scenario script on this host with busybox's applets only (a directory of applet
/// links in `work`, as PATH), against `observer`; at most `timeout`, after which the script
/// gets SIGTERM (its trap ends what it started and removes what it made) and, 20 s later,
/// SIGKILL, by its PID.
pub fn run_native(
    observer: &Path,
    cgroup_v2: &Path,
    work: &Path,
    tag: &str,
    listen: &str,
    timeout: Duration,
) -> Result<Native> {
    let applets = work.join("bin");
    std::fs::create_dir_all(&applets)?;
    let status = Command::new(busybox()?).arg("--install").arg("-s").arg(&applets).status()?;
    if !status.success() {
        bail!("busybox --install -s {}: {status}", applets.display());
    }
    let markers = work.join("markers");
    let start = Instant::now();
    let mut child = Command::new(applets.join("sh"))
        .arg(script("scenarios.sh"))
        .env_clear()
        .env("PATH", &applets)
        .env("OBS_APPLETS", &applets)
        .env("OBS_BIN", observer)
        .env("OBS_THREADS_EXIT", static_trigger_program("threads_exit")?)
        .env("OBS_TCP_HOLD", static_trigger_program("tcp_hold")?)
        .env("OBS_V2", cgroup_v2)
        .env("OBS_WORK", work)
        .env("OBS_TAG", tag)
        .env("OBS_LISTEN", listen)
        .env("OBS_NODE", "observer-matrix-host")
        .env("OBS_OUT", &markers)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning busybox sh tests/vm/scenarios.sh")?;
    let out = read_all(child.stdout.take().expect("piped stdout"));
    let err = read_all(child.stderr.take().expect("piped stderr"));
    let mut status = None;
    let deadline = start + timeout;
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait()? {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if status.is_none() {
        // SAFETY: signals our own child, by its pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        if let Waited::Exited(s) =
            wait_until(&mut child, Instant::now() + Duration::from_secs(20), || false)
        {
            eprintln!("scenarios.sh timed out after {timeout:?}; it exited on SIGTERM: {s}");
        }
    }
    Ok(Native {
        markers: std::fs::read_to_string(&markers).unwrap_or_default(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        status,
        wall: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_entries_are_aligned_and_end_with_the_trailer() {
        let mut c = Cpio::new();
        c.dir("bin");
        c.file("bin/x", 0o755, b"hello");
        c.char_dev("dev/console", 0o600, 5, 1);
        let a = c.finish();
        assert_eq!(a.len() % 4, 0);
        assert_eq!(&a[..6], b"070701");
        // The first header: ino 1, a directory 0755, nlink 2, namesize 4 ("bin\0").
        let field = |at: usize, i: usize| {
            u32::from_str_radix(
                std::str::from_utf8(&a[at + 6 + 8 * i..at + 14 + 8 * i]).unwrap(),
                16,
            )
            .unwrap()
        };
        assert_eq!((field(0, 0), field(0, 1), field(0, 4), field(0, 11)), (1, 0o40755, 2, 4));
        // header (110) + "bin\0" = 114, padded to 116: the file's header.
        assert_eq!(&a[116..122], b"070701");
        assert_eq!((field(116, 1), field(116, 6)), (0o100755, 5));
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("bin/x\0") && text.contains("hello"));
        // Its header (110) + "TRAILER!!!\0" (11), padded to 124.
        assert!(text.ends_with("TRAILER!!!\0\0\0\0"), "{:?}", &text[text.len() - 20..]);
    }

    #[test]
    fn the_archive_unpacks_with_busybox_cpio() {
        let Ok(bb) = busybox() else { return };
        let dir = std::env::temp_dir().join(crate::unique("observer-cpio-"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = Cpio::new();
        c.dir("d");
        c.file("d/f", 0o644, b"0123456789");
        std::fs::write(dir.join("a.cpio"), c.finish()).unwrap();
        let out = Command::new(bb)
            .args(["cpio", "-i", "-d", "-F", "a.cpio"])
            .current_dir(&dir)
            .output()
            .unwrap();
        let f = std::fs::read(dir.join("d/f"));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(f.unwrap(), b"0123456789");
    }

    #[test]
    fn markers_are_found_among_console_noise() {
        let text = "[    1.0] random kernel line\r\n\
            @@observer-vm kernel 6.1.0-57-cloud-amd64\r\n\
            @@observer-vm check PASS  kernel BTF   x\n\
            @@observer-vm check-exit 0\n\
            @@observer-vm fact noh cid=abc pid=12\n\
            noise @@observer-vm fact noh term_a=1.5\n\
            @@observer-vm journal {\"pid\": 12}\n\
            @@observer-vm journal {\"pid\": 1[    2.0] oops\n\
            @@observer-vm end 0\n";
        let r = Report::parse(text);
        assert_eq!(r.kernel.as_deref(), Some("6.1.0-57-cloud-amd64"));
        assert_eq!(r.check, ["PASS  kernel BTF   x"]);
        assert_eq!(r.check_exit, Some(0));
        assert_eq!(r.fact("noh", "pid"), Some("12"));
        assert_eq!(r.fact("noh", "term_a"), Some("1.5"));
        assert_eq!(r.journal.len(), 1);
        assert_eq!(r.garbled.len(), 1);
        assert_eq!(r.end, Some(0));
    }
}
