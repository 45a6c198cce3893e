//! The drill through a real CRI runtime: the workload is a container of a host-network pod
//! sandbox, created with kubelet's labels and annotations; the sequence is carried out with
//! kubelet's calls: `ExecSync` (no timeout, as kubelet's hook runner) for an exec hook, then
//! `StopContainer` with the grace left, after which the runtime sends the image's stop signal
//! and, when the timeout passes, SIGKILL. The drill never signals the container itself.

use std::{
    collections::HashMap,
    os::fd::{AsRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    time::Duration,
};

use k8s_cri::v1::{
    runtime_service_client::RuntimeServiceClient, ContainerConfig, ContainerMetadata,
    ContainerStatusRequest, CreateContainerRequest, ExecSyncRequest, ImageSpec,
    LinuxContainerConfig, LinuxContainerSecurityContext, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
    StopContainerRequest, StopPodSandboxRequest, VersionRequest,
};
use tokio::{runtime::Runtime, task::JoinHandle};
use tonic::transport::Channel;

use super::{args::DrillArgs, process, Container, DrillError, Executor, Hook};
use crate::{
    cgroup::CgroupV2,
    metadata::{
        annotations as kubelet, cgroup_path::Runtime as ContainerRuntime, cri, workload, Identity,
    },
};

/// Deadline of the CRI calls that are not the stop itself.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The drill's pods, so an SRE can tell them apart on a node.
pub const DRILL_NAMESPACE: &str = "observer-drill";

pub struct CriExecutor {
    rt: Runtime,
    client: RuntimeServiceClient<Channel>,
    sandbox: String,
    container_id: String,
    container: Container,
    pod_cgroup: String,
    pid1: OwnedFd,
    exec: Option<JoinHandle<Result<(), String>>>,
    stop: Option<JoinHandle<Result<(), String>>>,
    identity: Identity,
}

fn cri_error(what: &str) -> impl FnOnce(tonic::Status) -> DrillError + '_ {
    move |s| DrillError::Setup(format!("CRI {what}: {}", s.message()))
}

/// kubelet's `preStopHandler` annotation: `json.Marshal(Lifecycle.PreStop)`.
fn prestop_annotation(hook: &Hook) -> String {
    let v = match hook {
        Hook::Exec(cmd) => serde_json::json!({"exec": {"command": ["sh", "-c", cmd]}}),
        Hook::Http(t) => serde_json::json!({"httpGet": {
            "path": t.path, "port": t.port, "host": t.host, "scheme": "HTTP"}}),
        Hook::Sleep(d) => serde_json::json!({"sleep": {"seconds": d.as_secs()}}),
    };
    v.to_string()
}

impl CriExecutor {
    pub fn start(endpoint: &Path, image: &str, args: &DrillArgs) -> Result<Self, DrillError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| DrillError::Io { what: "tokio runtime".into(), source: e })?;
        let channel = rt
            .block_on(cri::channel(endpoint, CALL_TIMEOUT))
            .map_err(|e| DrillError::Setup(e.to_string()))?;
        let mut client = RuntimeServiceClient::new(channel);
        let version = rt
            .block_on(client.version(VersionRequest { version: "v1".into() }))
            .map_err(cri_error("Version"))?
            .into_inner();

        let (hex, uid) = process::ids();
        let pod = format!("drill-{}", &hex[..10]);
        let container_name = "workload".to_string();
        let pod_cgroup = format!("{}/besteffort/pod{uid}", args.cgroup_root.trim_end_matches('/'));
        let labels: HashMap<String, String> = [
            (kubelet::POD_NAME, pod.as_str()),
            (kubelet::POD_NAMESPACE, DRILL_NAMESPACE),
            (kubelet::POD_UID, uid.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        // As the daemon names it: from the sandbox's labels, else the name's shape (a bare
        // pod's, as the drill's is: none).
        let workload =
            workload::resolve(&pod, workload::from_sandbox(&pod, &labels, &HashMap::new()))
                .map(|w| w.name);
        // kubelet for hostNetwork pods: network NODE, a pid namespace per container.
        let namespaces = Some(NamespaceOption {
            network: NamespaceMode::Node as i32,
            pid: NamespaceMode::Container as i32,
            ipc: NamespaceMode::Pod as i32,
            ..Default::default()
        });
        let sandbox_config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: pod.clone(),
                uid: uid.clone(),
                namespace: DRILL_NAMESPACE.into(),
                attempt: 0,
            }),
            hostname: String::new(),
            labels: labels.clone(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: pod_cgroup.clone(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: namespaces.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sandbox = rt
            .block_on(client.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(sandbox_config.clone()),
                runtime_handler: String::new(),
            }))
            .map_err(cri_error("RunPodSandbox"))?
            .into_inner()
            .pod_sandbox_id;

        let mut labels = labels;
        labels.insert(kubelet::CONTAINER_NAME.into(), container_name.clone());
        let mut annotations = HashMap::new();
        annotations.insert(kubelet::TERMINATION_GRACE_PERIOD.into(), args.grace_period.to_string());
        if let Some(hook) = args.hook() {
            annotations.insert(kubelet::PRESTOP_HANDLER.into(), prestop_annotation(&hook));
        }
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata { name: container_name, attempt: 0 }),
            image: Some(ImageSpec { image: image.into(), ..Default::default() }),
            command: args.command.clone(),
            labels,
            annotations,
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: namespaces,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut me = Self {
            rt,
            client,
            sandbox,
            container_id: String::new(),
            container: Container { cgroup_path: String::new(), cgroup_id: 0, pid: 0 },
            pod_cgroup,
            // Replaced below; a pidfd of ourselves until then (never signalled).
            pid1: process::pidfd_open(std::process::id() as i32)?,
            exec: None,
            stop: None,
            identity: Identity {
                namespace: Some(DRILL_NAMESPACE.into()),
                workload,
                pod: Some(pod.clone()),
                pod_uid: Some(uid.clone()),
                container: Some("workload".into()),
                image: Some(image.into()),
                runtime: Some(cri::runtime_from_name(&version.runtime_name))
                    .filter(|r| *r != ContainerRuntime::Unknown),
                container_type: Some("container".into()),
                ..Default::default()
            },
        };
        // From here on, Drop removes the sandbox whatever fails.
        let mut client = me.client.clone();
        me.container_id = me
            .rt
            .block_on(client.create_container(CreateContainerRequest {
                pod_sandbox_id: me.sandbox.clone(),
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            }))
            .map_err(cri_error("CreateContainer"))?
            .into_inner()
            .container_id;
        me.rt
            .block_on(
                client.start_container(StartContainerRequest {
                    container_id: me.container_id.clone(),
                }),
            )
            .map_err(cri_error("StartContainer"))?;
        let status = me
            .rt
            .block_on(client.container_status(ContainerStatusRequest {
                container_id: me.container_id.clone(),
                verbose: true,
            }))
            .map_err(cri_error("ContainerStatus"))?
            .into_inner();
        let pid = status
            .info
            .get("info")
            .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
            .and_then(|v| v["pid"].as_u64())
            .ok_or_else(|| {
                DrillError::Setup("the runtime's verbose ContainerStatus has no info.pid".into())
            })? as u32;
        me.pid1 = process::pidfd_open(pid as i32)?;
        let (cgroup_path, cgroup_id) = v2_cgroup_of(pid)?;
        me.identity.cgroup = cgroup_path.clone();
        me.identity.container_id = Some(me.container_id.clone());
        me.container = Container { cgroup_path, cgroup_id, pid };
        Ok(me)
    }

    fn spawn_call<F>(&self, what: &'static str, f: F) -> JoinHandle<Result<(), String>>
    where
        F: std::future::Future<Output = Result<(), tonic::Status>> + Send + 'static,
    {
        self.rt.spawn(async move { f.await.map_err(|s| format!("{what}: {}", s.message())) })
    }
}

/// PID `pid`'s cgroup v2 path (the `0::` line) and id (the directory's inode).
fn v2_cgroup_of(pid: u32) -> Result<(String, u64), DrillError> {
    use std::os::unix::fs::MetadataExt as _;
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| DrillError::Io { what: format!("/proc/{pid}/cgroup"), source: e })?;
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| DrillError::Setup(format!("PID {pid} has no cgroup v2 path")))?
        .to_string();
    let v2 = CgroupV2::discover().map_err(|e| DrillError::Setup(e.to_string()))?;
    let dir: PathBuf = v2.dir_of(&path);
    let id = std::fs::metadata(&dir)
        .map_err(|e| DrillError::Io { what: format!("stat {}", dir.display()), source: e })?
        .ino();
    Ok((path, id))
}

impl Executor for CriExecutor {
    fn container(&self) -> &Container {
        &self.container
    }

    fn start_prestop_exec(&mut self, command: &str) -> Result<(), DrillError> {
        let mut client = self.client.clone();
        let req = ExecSyncRequest {
            container_id: self.container_id.clone(),
            cmd: vec!["sh".into(), "-c".into(), command.into()],
            // kubelet's hook runner: no timeout; it is not cancelled when the grace runs out.
            timeout: 0,
        };
        self.exec = Some(self.spawn_call("ExecSync", async move {
            let r = client.exec_sync(req).await?.into_inner();
            if r.exit_code != 0 {
                log::warn!("preStop exec hook exited {}", r.exit_code);
            }
            Ok(())
        }));
        Ok(())
    }

    fn prestop_exec_running(&mut self) -> bool {
        self.exec.as_ref().is_some_and(|h| !h.is_finished())
    }

    fn send_signal(&mut self, sig: u32) -> Result<(), DrillError> {
        // SAFETY: a pidfd we own.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pid1.as_raw_fd(),
                sig as i32,
                0usize,
                0u32,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(DrillError::Io { what: format!("signal {sig} to PID 1"), source: e });
            }
        }
        Ok(())
    }

    fn stop(&mut self, _sig: u32, window_seconds: u64) -> Result<(), DrillError> {
        let mut client = self.client.clone();
        let req = StopContainerRequest {
            container_id: self.container_id.clone(),
            timeout: window_seconds as i64,
        };
        self.stop = Some(self.spawn_call("StopContainer", async move {
            client.stop_container(req).await?;
            Ok(())
        }));
        Ok(())
    }

    fn identity(&self) -> Option<Identity> {
        Some(self.identity.clone())
    }

    fn kill(&mut self) -> Result<(), DrillError> {
        // The runtime was given the window with StopContainer and kills on its own.
        Ok(())
    }

    fn pid1_exited(&mut self) -> bool {
        let mut p = libc::pollfd { fd: self.pid1.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, no wait.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    fn finished(&mut self) -> bool {
        let done =
            |h: &Option<JoinHandle<Result<(), String>>>| h.as_ref().is_none_or(|h| h.is_finished());
        self.pid1_exited() && done(&self.exec) && done(&self.stop)
    }
}

impl Drop for CriExecutor {
    fn drop(&mut self) {
        let mut client = self.client.clone();
        let id = self.sandbox.clone();
        let cleanup = async move {
            client.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id.clone() }).await?;
            client.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id }).await?;
            Ok::<_, tonic::Status>(())
        };
        // The timer must be made inside the runtime.
        match self.rt.block_on(async { tokio::time::timeout(CALL_TIMEOUT, cleanup).await }) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::warn!("removing drill sandbox {}: {}", self.sandbox, e.message()),
            Err(_) => log::warn!("removing drill sandbox {}: timed out", self.sandbox),
        }
        // runc removes the container's cgroups but leaves the pod's, in every hierarchy.
        let rel = self.pod_cgroup.trim_start_matches('/');
        let mut roots: Vec<PathBuf> =
            CgroupV2::discover().map(|v2| vec![v2.dir_of("/")]).unwrap_or_default();
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            roots.extend(entries.flatten().map(|e| e.path()));
        }
        for root in roots {
            let _ = std::fs::remove_dir(root.join(rel));
        }
    }
}
