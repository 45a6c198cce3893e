//! Real runc containers: a busybox-static bundle in a kubepods cgroup, and one in a fresh pod
//! of kubelet's log layout.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::{Daemon, Pod};

/// A runc container from a busybox-static root filesystem, in a kubepods cgroup.
pub struct Runc {
    /// The container id runc knows it by.
    pub id: String,
    bundle: PathBuf,
    created: bool,
}

impl Runc {
    /// Creates the bundle and starts the container detached; `cgroups_path` is
    /// hierarchy-relative (`/kubepods/besteffort/pod<uid>/<id>`).
    pub fn run(id: &str, cgroups_path: &str, args: &[&str]) -> Result<Self> {
        let bundle = std::env::temp_dir().join(format!("observer-bundle-{id}"));
        let rootfs = bundle.join("rootfs");
        for d in ["bin", "proc", "dev", "sys", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d))?;
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .context("busybox-static is not installed (cargo xtask setup installs it)")?;
        std::fs::copy(busybox, rootfs.join("bin/busybox"))?;
        for applet in ["sh", "sleep", "true", "kill"] {
            let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
        }
        let mut me = Self { id: id.into(), bundle: bundle.clone(), created: false };
        run_ok(Command::new("runc").args(["spec", "--rootless=false", "--bundle"]).arg(&bundle))
            .or_else(|_| run_ok(Command::new("runc").args(["spec", "--bundle"]).arg(&bundle)))?;
        let spec_path = bundle.join("config.json");
        let mut spec: Value = serde_json::from_str(&std::fs::read_to_string(&spec_path)?)?;
        spec["process"]["terminal"] = Value::Bool(false);
        spec["process"]["args"] = args.iter().map(|a| Value::String((*a).into())).collect();
        spec["root"]["readonly"] = Value::Bool(true);
        spec["linux"]["cgroupsPath"] = Value::String(cgroups_path.into());
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
        if !status.success() {
            bail!(
                "runc run {id}: {status}: {}",
                std::fs::read_to_string(&errlog).unwrap_or_default()
            );
        }
        me.created = true;
        Ok(me)
    }

    /// Host pid of the container's PID 1.
    pub fn pid(&self) -> Result<u32> {
        let out = Command::new("runc").args(["state", &self.id]).output()?;
        let v: Value = serde_json::from_slice(&out.stdout)?;
        v["pid"].as_u64().map(|p| p as u32).context("runc state has no pid")
    }

    /// `runc kill ID SIG` (`sig` as runc takes it: "TERM", "KILL", …).
    pub fn kill(&self, sig: &str) -> Result<()> {
        run_ok(Command::new("runc").args(["kill", &self.id, sig]))
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
}

impl Drop for Runc {
    fn drop(&mut self) {
        if self.created {
            let _ = Command::new("runc").args(["delete", "--force", &self.id]).output();
        }
        let _ = std::fs::remove_dir_all(&self.bundle);
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
    let mut pod = Pod::new(log_root, ns, pod_name);
    let (cid, _) = pod.container("main");
    let runc = Runc::run(&cid, &format!("{}/{cid}", pod.cgroup_parent()), args).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while runc.status() != "running" {
        assert!(Instant::now() < deadline, "runc container not running");
        std::thread::sleep(Duration::from_millis(20));
    }
    (pod, cid, runc)
}

/// [`runc_in_pod`] in `d`'s kubelet log root, so that `d` names the container: returns the
/// pod, the container id and the running container. Callers end the container before the pod
/// (`drop(runc); drop(pod)`): the pod's cgroups can only be removed once the container's are.
pub fn runc_container(d: &Daemon, ns: &str, pod_name: &str, args: &[&str]) -> (Pod, String, Runc) {
    runc_in_pod(&d.log_root, ns, pod_name, args)
}
