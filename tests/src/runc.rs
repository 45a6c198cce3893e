//! Real runc containers: a bundle built from a [`Spec`] (a busybox-static root filesystem, or
//! one made of the host's own programs, bind-mounted read-only), in a kubepods cgroup, and one
//! in a fresh pod of kubelet's log layout.

use std::{
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use crate::{Daemon, Pod};

/// The capabilities containerd's CRI gives a Kubernetes container by default
/// (`oci.DefaultCapabilities`, docker's set): what real programs such as nginx (setuid to its
/// worker user) need, and no more.
pub const KUBERNETES_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The host directories a [`Spec::host`] root filesystem is made of, read-only.
const HOST_DIRS: &[&str] = &["/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rootfs {
    /// busybox-static and a few applet links, copied into the bundle.
    Busybox,
    /// The host's programs: [`HOST_DIRS`] bind-mounted read-only (a merged-/usr link such as
    /// `/bin -> usr/bin` is made as the same link), tmpfs `/tmp` and `/run`.
    Host,
}

/// What a runc container is made of, on top of `runc spec`'s defaults (own pid, network, ipc,
/// uts and mount namespaces; a read-only root): its root filesystem, its process, extra
/// mounts, namespaces it joins and capabilities it adds.
#[derive(Debug, Clone)]
pub struct Spec {
    args: Vec<String>,
    rootfs: Rootfs,
    mounts: Vec<Value>,
    namespaces: Vec<(String, String)>,
    /// Namespace kinds the container makes none of: it shares the runtime's (the host's).
    shared: Vec<String>,
    caps: Vec<String>,
    env: Vec<String>,
    files: Vec<(String, Vec<u8>)>,
}

impl Spec {
    fn new(rootfs: Rootfs, args: &[&str]) -> Self {
        Self {
            args: args.iter().map(|a| (*a).to_string()).collect(),
            rootfs,
            mounts: Vec::new(),
            namespaces: Vec::new(),
            shared: Vec::new(),
            caps: Vec::new(),
            env: Vec::new(),
            files: Vec::new(),
        }
    }

    /// `args` in a root filesystem of busybox-static (`sh`, `sleep`, `true`, `kill`), with
    /// runc's default capabilities: what [`Runc::run`] runs.
    pub fn busybox(args: &[&str]) -> Self {
        Self::new(Rootfs::Busybox, args)
    }

    /// `args` among the host's own programs: `/usr`, `/lib`, `/lib64`, `/bin`, `/sbin` and
    /// `/etc` of the host, read-only (binds, or the host's own merged-/usr links), tmpfs `/tmp`
    /// and `/run`, with Kubernetes' default capabilities ([`KUBERNETES_CAPS`]). Fails at
    /// [`Spec::run`] if `args[0]` is not installed, saying which package to install.
    pub fn host(args: &[&str]) -> Self {
        let mut s = Self::new(Rootfs::Host, args);
        s.caps = KUBERNETES_CAPS.iter().map(|c| (*c).to_string()).collect();
        s.env.push("HOME=/tmp".into());
        s
    }

    /// A tmpfs at `dest` (a directory the program must be able to write).
    pub fn tmpfs(mut self, dest: &str) -> Self {
        self.mounts.push(json!({
            "destination": dest, "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777"],
        }));
        self
    }

    /// `src` of the host at `dest`, read-only.
    pub fn bind_ro(mut self, src: &str, dest: &str) -> Self {
        self.mounts.push(json!({
            "destination": dest, "type": "bind", "source": src, "options": ["rbind", "ro"],
        }));
        self
    }

    /// A file of the test's (`content`) at `/config/<name>` in the container, read-only
    /// (the bundle's own `config` directory, bound at `/config`).
    pub fn file(mut self, name: &str, content: impl Into<Vec<u8>>) -> Self {
        self.files.push((name.into(), content.into()));
        self
    }

    /// Joins the namespace at `path` (`/proc/<pid>/ns/pid`) instead of making a new one of
    /// `kind` ("pid", "network", …), as runc does for a pod's shared namespaces.
    pub fn join_namespace(mut self, kind: &str, path: &str) -> Self {
        self.namespaces.push((kind.into(), path.into()));
        self
    }

    /// Makes no namespace of `kind` ("network", …): the container shares the runtime's, the
    /// host's, as kubelet asks for `hostNetwork: true` (`runc spec` makes a network namespace).
    pub fn without_namespace(mut self, kind: &str) -> Self {
        self.shared.push(kind.into());
        self
    }

    /// Adds capability `cap` ("CAP_SYS_ADMIN") to the bounding, effective and permitted sets.
    pub fn cap(mut self, cap: &str) -> Self {
        self.caps.push(cap.into());
        self
    }

    /// An environment variable `KEY=VALUE` for the process.
    pub fn env(mut self, kv: &str) -> Self {
        self.env.push(kv.into());
        self
    }

    /// Builds the bundle and starts the container detached as `id` in `cgroups_path`
    /// (hierarchy-relative, e.g. `/kubepods/besteffort/pod<uid>/<id>`).
    pub fn run(&self, id: &str, cgroups_path: &str) -> Result<Runc> {
        let bundle = std::env::temp_dir().join(format!("observer-bundle-{id}"));
        // Runc's Drop removes the bundle from here on, whatever fails.
        let mut me = Runc { id: id.into(), bundle: bundle.clone(), created: false };
        let rootfs = bundle.join("rootfs");
        for d in ["proc", "dev", "sys", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d))?;
        }
        match self.rootfs {
            Rootfs::Busybox => {
                std::fs::create_dir_all(rootfs.join("bin"))?;
                let busybox = ["/bin/busybox", "/usr/bin/busybox"]
                    .into_iter()
                    .find(|p| Path::new(p).exists())
                    .context("busybox-static is not installed (cargo xtask setup installs it)")?;
                std::fs::copy(busybox, rootfs.join("bin/busybox"))?;
                for applet in ["sh", "sleep", "true", "kill"] {
                    let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
                }
            }
            Rootfs::Host => {
                let prog = &self.args[0];
                if !prog.starts_with('/') && which(prog).is_none() {
                    bail!(
                        "{prog} is not installed on this host: apt-get install {}",
                        package(prog)
                    );
                }
                std::fs::create_dir_all(rootfs.join("run"))?;
            }
        }
        run_ok(Command::new("runc").args(["spec", "--rootless=false", "--bundle"]).arg(&bundle))
            .or_else(|_| run_ok(Command::new("runc").args(["spec", "--bundle"]).arg(&bundle)))?;
        let spec_path = bundle.join("config.json");
        let mut spec: Value = serde_json::from_str(&std::fs::read_to_string(&spec_path)?)?;
        spec["process"]["terminal"] = Value::Bool(false);
        spec["process"]["args"] = self.args.iter().map(|a| Value::String(a.clone())).collect();
        spec["root"]["readonly"] = Value::Bool(true);
        spec["linux"]["cgroupsPath"] = Value::String(cgroups_path.into());
        let mut mounts = Vec::new();
        if self.rootfs == Rootfs::Host {
            for dir in HOST_DIRS {
                let host = Path::new(dir);
                let inside = rootfs.join(dir.trim_start_matches('/'));
                match std::fs::read_link(host) {
                    // Merged /usr: the same link, into the bound /usr.
                    Ok(target) => std::os::unix::fs::symlink(target, &inside)?,
                    Err(_) if host.is_dir() => {
                        std::fs::create_dir_all(&inside)?;
                        mounts.push(json!({
                            "destination": dir, "type": "bind", "source": dir,
                            "options": ["rbind", "ro"],
                        }));
                    }
                    Err(_) => {}
                }
            }
            for dest in ["/tmp", "/run"] {
                mounts.push(json!({
                    "destination": dest, "type": "tmpfs", "source": "tmpfs",
                    "options": ["nosuid", "nodev", "mode=1777"],
                }));
            }
        }
        if !self.files.is_empty() {
            let dir = bundle.join("config");
            std::fs::create_dir_all(&dir)?;
            for (name, content) in &self.files {
                std::fs::write(dir.join(name), content)?;
            }
            std::fs::create_dir_all(rootfs.join("config"))?;
            mounts.push(json!({
                "destination": "/config", "type": "bind", "source": dir,
                "options": ["rbind", "ro"],
            }));
        }
        mounts.extend(self.mounts.iter().cloned());
        for m in &mounts {
            // Mount points are made in the bundle's own root filesystem (never on the host's
            // directories: those are bound read-only, and nothing is mounted below them).
            let dest = m["destination"].as_str().unwrap_or("/");
            let inside = rootfs.join(dest.trim_start_matches('/'));
            if !HOST_DIRS.iter().any(|h| dest.starts_with(&format!("{h}/"))) && !inside.exists() {
                std::fs::create_dir_all(&inside)?;
            }
        }
        spec["mounts"].as_array_mut().context("runc spec has mounts")?.extend(mounts);
        for (kind, path) in &self.namespaces {
            let ns = spec["linux"]["namespaces"].as_array_mut().context("namespaces")?;
            ns.retain(|n| n["type"] != kind.as_str());
            ns.push(json!({ "type": kind, "path": path }));
        }
        let ns = spec["linux"]["namespaces"].as_array_mut().context("namespaces")?;
        ns.retain(|n| !self.shared.iter().any(|kind| n["type"] == kind.as_str()));
        for set in ["bounding", "effective", "permitted"] {
            let caps = spec["process"]["capabilities"][set].as_array_mut().context("caps")?;
            for c in &self.caps {
                if !caps.iter().any(|v| v == c.as_str()) {
                    caps.push(Value::String(c.clone()));
                }
            }
        }
        let env = spec["process"]["env"].as_array_mut().context("env")?;
        env.extend(self.env.iter().map(|e| Value::String(e.clone())));
        std::fs::write(&spec_path, serde_json::to_vec_pretty(&spec)?)?;
        // Detached: the container keeps its stdio, so it must not be our pipes (output()
        // would wait for the container to exit).
        let errlog = bundle.join("runc-run.err");
        let status = Command::new("runc")
            .args(["run", "--detach", "--bundle"])
            .arg(&bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&errlog)?)
            .status()?;
        // runc may have made the container even when it failed to start it.
        me.created = true;
        if !status.success() {
            bail!(
                "runc run {id}: {status}: {}",
                std::fs::read_to_string(&errlog).unwrap_or_default()
            );
        }
        Ok(me)
    }
}

/// Where `prog` is on the host's PATH.
fn which(prog: &str) -> Option<PathBuf> {
    ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.exists())
}

/// The Debian package that installs `prog` (for the error that says what to install).
fn package(prog: &str) -> &str {
    match prog {
        "redis-server" => "redis-server",
        "nginx" => "nginx-light",
        "python3" => "python3",
        "tini" => "tini",
        "dumb-init" => "dumb-init",
        "busybox" => "busybox-static",
        "unshare" => "util-linux",
        other => other,
    }
}

/// A stop signal as `runc kill` sent it: the runc process and the wall-clock window it ran in
/// (the kernel's signal lies inside it).
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// The pid of the `runc kill` process (the sender the kernel sees).
    pub runc_pid: u32,
    /// Just before runc was started.
    pub before: SystemTime,
    /// Just after runc returned.
    pub after: SystemTime,
}

/// A running container.
pub struct Runc {
    /// The container id runc knows it by.
    pub id: String,
    bundle: PathBuf,
    created: bool,
}

impl Runc {
    /// Creates a busybox-static bundle ([`Spec::busybox`]) and starts the container detached;
    /// `cgroups_path` is hierarchy-relative (`/kubepods/besteffort/pod<uid>/<id>`).
    pub fn run(id: &str, cgroups_path: &str, args: &[&str]) -> Result<Self> {
        Spec::busybox(args).run(id, cgroups_path)
    }

    /// Host pid of the container's PID 1.
    pub fn pid(&self) -> Result<u32> {
        let out = Command::new("runc").args(["state", &self.id]).output()?;
        let v: Value = serde_json::from_slice(&out.stdout)?;
        v["pid"].as_u64().map(|p| p as u32).context("runc state has no pid")
    }

    /// `runc kill ID SIG` (`sig` as runc takes it: "TERM", "KILL", …).
    pub fn kill(&self, sig: &str) -> Result<()> {
        self.signal(sig).map(|_| ())
    }

    /// `runc kill ID SIG`, saying which runc process sent it and when.
    pub fn signal(&self, sig: &str) -> Result<Sent> {
        let before = SystemTime::now();
        let child = Command::new("runc")
            .args(["kill", &self.id, sig])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let runc_pid = child.id();
        let out = child.wait_with_output()?;
        let after = SystemTime::now();
        if !out.status.success() {
            bail!(
                "runc kill {} {sig}: {}: {}",
                self.id,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Sent { runc_pid, before, after })
    }

    /// The status `runc state` reports ("running", "stopped", …; empty if none).
    pub fn status(&self) -> String {
        Command::new("runc")
            .args(["state", &self.id])
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
            .and_then(|v| v["status"].as_str().map(String::from))
            .unwrap_or_default()
    }

    /// Waits until runc reports the container running.
    pub fn wait_running(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.status() != "running" {
            if Instant::now() > deadline {
                bail!("runc container {} not running after {timeout:?}", self.id);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        if self.created {
            let _ = Command::new("runc").args(["delete", "--force", &self.id]).output();
        }
        // The container's mounts live in its own mount namespace: here the root filesystem
        // is plain directories and links (remove_dir_all follows no link).
        let _ = std::fs::remove_dir_all(&self.bundle);
    }
}

/// A process of the host watched through a pidfd (any process, not only a child): when it
/// exits, on the wall clock.
pub struct Pidfd {
    /// The process watched.
    pub pid: u32,
    fd: OwnedFd,
}

impl Pidfd {
    /// Opens a pidfd on `pid`.
    pub fn open(pid: u32) -> Result<Self> {
        // SAFETY: plain syscall; the fd is owned below.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
        if fd < 0 {
            bail!("pidfd_open({pid}): {}", std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, owned pidfd.
        Ok(Self { pid, fd: unsafe { OwnedFd::from_raw_fd(fd as i32) } })
    }

    /// Whether the process is still running (its pidfd is not readable yet).
    pub fn alive(&self) -> bool {
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, no wait.
        unsafe { libc::poll(&mut pfd, 1, 0) == 0 }
    }

    /// Waits until the process has exited; returns when that was seen.
    pub fn wait_exit(&self, timeout: Duration) -> Result<SystemTime> {
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        let t = SystemTime::now();
        if rc != 1 {
            bail!("pid {} did not exit within {timeout:?}", self.pid);
        }
        Ok(t)
    }
}

fn run_ok(cmd: &mut Command) -> Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        bail!("{cmd:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A runc container named `main` in a fresh pod `pod_name` of namespace `ns` (kubelet's log
/// layout under `log_root`), running `args`; returns once runc reports it running.
pub fn runc_in_pod(
    log_root: &Path,
    ns: &str,
    pod_name: &str,
    args: &[&str],
) -> (Pod, String, Runc) {
    spec_in_pod(log_root, ns, pod_name, &Spec::busybox(args))
}

/// [`runc_in_pod`] of any [`Spec`]: a container named `main` made of `spec`.
pub fn spec_in_pod(log_root: &Path, ns: &str, pod_name: &str, spec: &Spec) -> (Pod, String, Runc) {
    let mut pod = Pod::new(log_root, ns, pod_name);
    let (cid, _) = pod.container("main");
    let runc = spec.run(&cid, &pod.container_cgroup(&cid)).unwrap();
    runc.wait_running(Duration::from_secs(15)).unwrap();
    (pod, cid, runc)
}

/// [`runc_in_pod`] in `d`'s kubelet log root, so that `d` names the container: returns the
/// pod, the container id and the running container. Callers end the container before the pod
/// (`drop(runc); drop(pod)`): the pod's cgroups can only be removed once the container's are.
pub fn runc_container(d: &Daemon, ns: &str, pod_name: &str, args: &[&str]) -> (Pod, String, Runc) {
    runc_in_pod(&d.log_root, ns, pod_name, args)
}

/// [`runc_container`] of any [`Spec`] (the host's programs, a joined or the host's network
/// namespace, files of the test's), named by `d`.
pub fn spec_container(d: &Daemon, ns: &str, pod_name: &str, spec: &Spec) -> (Pod, String, Runc) {
    spec_in_pod(&d.log_root, ns, pod_name, spec)
}
