//! A private containerd (Debian's 1.6, CRI plugin included) driven over the CRI exactly as
//! kubelet drives it: RunPodSandbox with kubelet's labels and `cgroup_parent`, CreateContainer
//! with kubelet's labels and annotations, StartContainer, StopContainer with a timeout.
//!
//! Its root, state, sockets and config are its own (under a temporary directory); it runs
//! host-network sandboxes (no CNI here) with runc and the cgroupfs driver. Images are built
//! locally from busybox-static (no registry is reachable) and imported with `ctr`. On drop,
//! every sandbox it made is stopped and removed, containerd is ended by PID, and its mounts,
//! directories and pod cgroups are removed.

use std::{
    collections::HashMap,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient,
    ContainerConfig, ContainerMetadata, ContainerStatusRequest, CreateContainerRequest,
    ExecSyncRequest, ImageSpec, ImageStatusRequest, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
    VersionRequest,
};
use sha2::{Digest as _, Sha256};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{remove_cgroup_everywhere, require_root, unique, uuid};

/// The image every test container runs (busybox-static, `sleep` as its command).
pub const BUSYBOX: &str = "observer.test/busybox:1";
/// The same root filesystem with `STOPSIGNAL SIGQUIT`.
pub const BUSYBOX_SIGQUIT: &str = "observer.test/busybox-sigquit:1";
/// The sandbox image containerd 1.6 expects (`sandbox_image`), built locally.
pub const PAUSE: &str = "registry.k8s.io/pause:3.6";

/// kubelet's labels and annotations (pkg/kubelet/kuberuntime/labels.go).
pub mod kubelet {
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    pub const TERMINATION_GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
    pub const PRESTOP_HANDLER: &str = "io.kubernetes.container.preStopHandler";
    pub const CONTAINER_TYPE: &str = "io.kubernetes.container.type";
}

pub struct PrivateContainerd {
    child: Option<Child>,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub state: PathBuf,
    /// kubelet's log root for the pods made here (`pods/`, `containers/`).
    pub log_root: PathBuf,
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    sandboxes: Vec<String>,
    pod_cgroups: Vec<String>,
}

/// A pod as kubelet would create it.
#[derive(Debug, Clone)]
pub struct PodSpec {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub qos: &'static str,
    /// Whether to set kubelet's pod labels on the sandbox (false: a sandbox made by something
    /// other than kubelet, or by a buggy one).
    pub labels: bool,
    /// The pod's own labels (`metadata.labels`), which kubelet puts on the sandbox beside its
    /// three (labels.go `newPodLabels`): a controller's `pod-template-hash`, `job-name`, ...
    pub pod_labels: HashMap<String, String>,
}

impl PodSpec {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            uid: uuid(&unique(name)),
            qos: "besteffort",
            labels: true,
            pod_labels: HashMap::new(),
        }
    }

    pub fn cgroup_parent(&self) -> String {
        format!("/kubepods/{}/pod{}", self.qos, self.uid)
    }

    fn log_dir(&self, root: &Path) -> PathBuf {
        root.join("pods").join(format!("{}_{}_{}", self.namespace, self.name, self.uid))
    }
}

/// A container as kubelet would create it.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub grace_period_seconds: Option<u64>,
    /// kubelet's `preStopHandler` annotation (JSON of Lifecycle.PreStop).
    pub prestop_json: Option<String>,
    /// Whether to set kubelet's container labels.
    pub labels: bool,
    /// kubelet's `io.kubernetes.container.type`: `container` (the default), or `init` for an
    /// init container (a native sidecar when it keeps running).
    pub spec_list: &'static str,
}

impl ContainerSpec {
    pub fn new(name: &str, command: &[&str]) -> Self {
        Self {
            name: name.into(),
            image: BUSYBOX.into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            grace_period_seconds: Some(30),
            prestop_json: None,
            labels: true,
            spec_list: "container",
        }
    }
}

fn host_network() -> Option<NamespaceOption> {
    // kubelet for hostNetwork pods: network NODE, own pid namespace per container, pod IPC.
    Some(NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    })
}

impl PrivateContainerd {
    /// Starts containerd with a config of its own and imports the test images.
    pub fn start() -> Result<Self> {
        require_root();
        for bin in ["containerd", "containerd-shim-runc-v2", "ctr", "runc"] {
            if which(bin).is_none() {
                bail!("{bin} not found: run `cargo xtask setup` (installs containerd and runc)");
            }
        }
        let dir = std::env::temp_dir().join(unique("observer-containerd-"));
        std::fs::create_dir_all(&dir)?;
        let socket = dir.join("containerd.sock");
        let state = dir.join("state");
        let log_root = dir.join("log");
        std::fs::create_dir_all(&log_root)?;
        let config = dir.join("config.toml");
        std::fs::write(&config, config_toml(&dir))?;
        let log = std::fs::File::create(dir.join("containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn containerd")?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let channel = {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if socket.exists() {
                    if let Ok(c) = rt.block_on(connect(&socket)) {
                        let mut client = RuntimeServiceClient::new(c.clone());
                        let v = rt.block_on(client.version(VersionRequest::default()));
                        if v.is_ok() {
                            break c;
                        }
                    }
                }
                if Instant::now() > deadline {
                    let log =
                        std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default();
                    bail!("containerd's CRI did not answer in 30 s:\n{log}");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        let mut me = Self {
            child: Some(child),
            runtime: RuntimeServiceClient::new(channel),
            dir,
            socket,
            state,
            log_root,
            rt,
            sandboxes: Vec::new(),
            pod_cgroups: Vec::new(),
        };
        me.import(PAUSE, None)?;
        me.import(BUSYBOX, None)?;
        me.import(BUSYBOX_SIGQUIT, Some("SIGQUIT"))?;
        Ok(me)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// Builds a busybox-static image tarball (docker-archive) and imports it into the CRI's
    /// `k8s.io` namespace; waits until the CRI sees it.
    fn import(&mut self, name: &str, stop_signal: Option<&str>) -> Result<()> {
        let tarball = self.dir.join(format!("{}.tar", unique("image-")));
        build_image(&tarball, name, stop_signal)?;
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "k8s.io", "images", "import"])
            .arg(&tarball)
            .output()?;
        if !out.status.success() {
            bail!("ctr images import {name}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let _ = std::fs::remove_file(&tarball);
        let deadline = Instant::now() + Duration::from_secs(20);
        let sock = self.socket.clone();
        loop {
            let found = self.rt.block_on(async {
                let mut images = ImageServiceClient::new(connect(&sock).await?);
                let r = images
                    .image_status(ImageStatusRequest {
                        image: Some(ImageSpec { image: name.into(), ..Default::default() }),
                        verbose: false,
                    })
                    .await?;
                anyhow::Ok(r.into_inner().image.is_some())
            })?;
            if found {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the CRI does not see image {name} 20 s after import");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// RunPodSandbox as kubelet does for a hostNetwork pod (cgroupfs driver).
    pub fn run_pod(&mut self, pod: &PodSpec) -> Result<String> {
        let log_dir = pod.log_dir(&self.log_root);
        std::fs::create_dir_all(&log_dir)?;
        // The pod's labels, then kubelet's over them (newPodLabels).
        let mut labels = pod.pod_labels.clone();
        if pod.labels {
            labels.extend(
                [
                    (kubelet::POD_NAME, pod.name.as_str()),
                    (kubelet::POD_NAMESPACE, &pod.namespace),
                    (kubelet::POD_UID, &pod.uid),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
            );
        }
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: pod.name.clone(),
                uid: pod.uid.clone(),
                namespace: pod.namespace.clone(),
                attempt: 0,
            }),
            // kubelet leaves the hostname empty for host-network pods.
            hostname: String::new(),
            log_directory: log_dir.display().to_string(),
            labels,
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: pod.cgroup_parent(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: host_network(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.pod_cgroups.push(pod.cgroup_parent());
        let mut client = self.runtime.clone();
        let r = self
            .rt
            .block_on(client.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            }))
            .with_context(|| format!("RunPodSandbox:\n{}", self.log()))?;
        let id = r.into_inner().pod_sandbox_id;
        self.sandboxes.push(id.clone());
        Ok(id)
    }

    /// CreateContainer + StartContainer as kubelet does (labels, annotations, log path, and
    /// kubelet's `containers/` log symlink); returns the container id.
    pub fn start_container(
        &mut self,
        sandbox: &str,
        pod: &PodSpec,
        spec: &ContainerSpec,
    ) -> Result<String> {
        let mut labels = HashMap::new();
        let mut annotations = HashMap::new();
        if spec.labels {
            labels.insert(kubelet::POD_NAME.into(), pod.name.clone());
            labels.insert(kubelet::POD_NAMESPACE.into(), pod.namespace.clone());
            labels.insert(kubelet::POD_UID.into(), pod.uid.clone());
            labels.insert(kubelet::CONTAINER_NAME.into(), spec.name.clone());
        }
        if let Some(g) = spec.grace_period_seconds {
            annotations.insert(kubelet::TERMINATION_GRACE_PERIOD.into(), g.to_string());
        }
        if let Some(p) = &spec.prestop_json {
            annotations.insert(kubelet::PRESTOP_HANDLER.into(), p.clone());
        }
        annotations.insert(kubelet::CONTAINER_TYPE.into(), spec.spec_list.into());
        let sandbox_config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: pod.name.clone(),
                uid: pod.uid.clone(),
                namespace: pod.namespace.clone(),
                attempt: 0,
            }),
            log_directory: pod.log_dir(&self.log_root).display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: pod.cgroup_parent(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: host_network(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata { name: spec.name.clone(), attempt: 0 }),
            image: Some(ImageSpec { image: spec.image.clone(), ..Default::default() }),
            command: spec.command.clone(),
            labels,
            annotations,
            log_path: format!("{}/0.log", spec.name),
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: host_network(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut client = self.runtime.clone();
        let id = self
            .rt
            .block_on(client.create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox.into(),
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            }))
            .with_context(|| format!("CreateContainer:\n{}", self.log()))?
            .into_inner()
            .container_id;
        // kubelet's symlink, made between CreateContainer and StartContainer.
        let containers = self.log_root.join("containers");
        std::fs::create_dir_all(&containers)?;
        let target = pod.log_dir(&self.log_root).join(&spec.name).join("0.log");
        let link =
            containers.join(format!("{}_{}_{}-{id}.log", pod.name, pod.namespace, spec.name));
        let _ = std::os::unix::fs::symlink(target, link);
        self.rt
            .block_on(client.start_container(StartContainerRequest { container_id: id.clone() }))
            .with_context(|| format!("StartContainer:\n{}", self.log()))?;
        Ok(id)
    }

    /// The host PID of the container's PID 1 (containerd's verbose status `info.pid`).
    pub fn pid(&self, container: &str) -> Result<u32> {
        let mut client = self.runtime.clone();
        let r = self.rt.block_on(client.container_status(ContainerStatusRequest {
            container_id: container.into(),
            verbose: true,
        }))?;
        let info = r.into_inner().info;
        let v: serde_json::Value = serde_json::from_str(info.get("info").context("no info")?)?;
        let pid = v["pid"].as_u64().context("no pid in verbose info")?;
        Ok(pid as u32)
    }

    /// StopContainer with kubelet's timeout (the grace left after preStop); returns when the
    /// runtime reports the container stopped.
    pub fn stop_container(&self, container: &str, timeout_seconds: i64) -> Result<()> {
        let mut client = self.runtime.clone();
        self.rt
            .block_on(client.stop_container(StopContainerRequest {
                container_id: container.into(),
                timeout: timeout_seconds,
            }))
            .with_context(|| format!("StopContainer:\n{}", self.log()))?;
        Ok(())
    }

    /// An observer daemon on this containerd: its CRI socket, its state directory and its
    /// kubelet log root, with `extra` arguments.
    pub fn daemon(&self, extra: &[&str]) -> crate::Daemon {
        let socket = self.socket.display().to_string();
        let state = self.state.display().to_string();
        let mut args = vec!["--cri-endpoint", &socket, "--containerd-state", &state];
        args.extend_from_slice(extra);
        crate::Daemon::start_with(Some(&self.log_root), &args)
    }

    /// ExecSync as kubelet runs an exec preStop hook (`timeout` 0: none, as kubelet passes);
    /// returns the command's exit code.
    pub fn exec_sync(&self, container: &str, cmd: &[&str]) -> Result<i32> {
        let mut client = self.runtime.clone();
        let r = self
            .rt
            .block_on(client.exec_sync(ExecSyncRequest {
                container_id: container.into(),
                cmd: cmd.iter().map(|c| c.to_string()).collect(),
                timeout: 0,
            }))
            .with_context(|| format!("ExecSync:\n{}", self.log()))?;
        Ok(r.into_inner().exit_code)
    }

    /// Stops and removes a sandbox (SIGKILL to whatever still runs in it).
    pub fn remove_pod(&mut self, sandbox: &str) -> Result<()> {
        let mut client = self.runtime.clone();
        self.rt.block_on(
            client.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: sandbox.into() }),
        )?;
        self.rt.block_on(
            client.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: sandbox.into() }),
        )?;
        self.sandboxes.retain(|s| s != sandbox);
        Ok(())
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) containerd itself: a CRI that accepts connections
    /// and never answers.
    pub fn freeze(&self, frozen: bool) {
        let Some(child) = &self.child else { return };
        let sig = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(child.id() as i32, sig) };
        // Returns once the kernel has it stopped (state T) or running again.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let stat =
                std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
            let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
            if (state == Some('T')) == frozen {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("containerd did not {} in 5 s", if frozen { "stop" } else { "continue" });
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        self.freeze(false);
        for sandbox in self.sandboxes.clone() {
            if let Err(e) = self.remove_pod(&sandbox) {
                eprintln!("warning: removing sandbox {sandbox}: {e}");
            }
        }
        if let Some(mut child) = self.child.take() {
            crate::stop_child(&mut child);
        }
        unmount_under(&self.dir);
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("warning: removing {}: {e}", self.dir.display());
        }
        for cg in &self.pod_cgroups {
            remove_cgroup_everywhere(cg);
        }
    }
}

/// One StopContainer on the CRI at `socket`, from this process (see `src/bin/cri-stop.rs`).
pub fn stop_once(socket: &Path, container: &str, timeout_seconds: i64) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut client = RuntimeServiceClient::new(connect(socket).await?);
        client
            .stop_container(StopContainerRequest {
                container_id: container.into(),
                timeout: timeout_seconds,
            })
            .await?;
        Ok(())
    })
}

async fn connect(socket: &Path) -> Result<Channel> {
    let socket = socket.to_owned();
    let c = Endpoint::from_static("http://[::]:0")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await?;
    Ok(c)
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .chain([Path::new("/usr/sbin").join(bin), Path::new("/sbin").join(bin)])
        .find(|p| p.is_file())
}

/// Mounts below `dir` (snapshots, netns), deepest first, lazily.
fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let Ok(c) = std::ffi::CString::new(p) else { continue };
        // SAFETY: a valid C string; MNT_DETACH on a mount we made.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// containerd 1.6 config (version 2): everything private, the settings this VM needs.
fn config_toml(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  # The VM's bounding set lacks CAP_SYS_RESOURCE: negative oom_score_adj would kill runc init.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  systemd_cgroup = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/conf"
"#
    )
}

/// A docker-archive tarball (`manifest.json` with RepoTags, config, one layer) of a root
/// filesystem made of busybox-static and its applet links.
pub fn build_image(out: &Path, name: &str, stop_signal: Option<&str>) -> Result<()> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        bail!("/bin/busybox missing: run `cargo xtask setup` (installs busybox-static)");
    }
    let applets = Command::new(busybox).arg("--list").output()?;
    let applets = String::from_utf8(applets.stdout)?;

    let mut layer = tar::Builder::new(Vec::new());
    let mut dir = |path: &str, mode: u32| -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        h.set_mtime(0);
        layer.append_data(&mut h, path, std::io::empty())?;
        Ok(())
    };
    for (d, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("etc", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
    ] {
        dir(d, mode)?;
    }
    let bytes = std::fs::read(busybox)?;
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(bytes.len() as u64);
    h.set_mtime(0);
    layer.append_data(&mut h, "bin/busybox", bytes.as_slice())?;
    for applet in applets.lines().map(str::trim).filter(|a| !a.is_empty() && *a != "busybox") {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(0);
        layer.append_link(&mut h, format!("bin/{applet}"), "busybox")?;
    }
    let passwd = b"root:x:0:0:root:/root:/bin/sh\n";
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(passwd.len() as u64);
    h.set_mtime(0);
    layer.append_data(&mut h, "etc/passwd", &passwd[..])?;
    let layer = layer.into_inner()?;
    let layer_sha = format!("{:x}", Sha256::digest(&layer));

    let mut cfg = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/bin"],
            "Cmd": ["sleep", "2147483647"],
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_sha}")]},
    });
    if let Some(sig) = stop_signal {
        cfg["config"]["StopSignal"] = sig.into();
    }
    let cfg = serde_json::to_vec(&cfg)?;
    let cfg_sha = format!("{:x}", Sha256::digest(&cfg));
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": format!("{cfg_sha}.json"),
        "RepoTags": [name],
        "Layers": [format!("{layer_sha}/layer.tar")],
    }]))?;

    let mut archive = tar::Builder::new(std::fs::File::create(out)?);
    for (path, data) in [
        (format!("{layer_sha}/layer.tar"), layer.as_slice()),
        (format!("{cfg_sha}.json"), cfg.as_slice()),
        ("manifest.json".to_string(), manifest.as_slice()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        archive.append_data(&mut h, path, data)?;
    }
    archive.into_inner()?.flush()?;
    Ok(())
}
