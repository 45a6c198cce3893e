//! The runtimes' own state on the node, read when the CRI socket is unavailable.
//!
//! - containerd writes each task's OCI bundle under its state directory,
//!   `<state>/io.containerd.runtime.v2.task/<namespace>/<id>/config.json`; the CRI plugin's
//!   namespace is `k8s.io`. Its annotations carry only `io.kubernetes.cri.{sandbox-name,
//!   sandbox-namespace, sandbox-uid, container-name, container-type, image-name}`: kubelet's
//!   grace period and preStop annotations reach it only through the CRI.
//! - CRI-O keeps `<storage>/overlay-containers/<id>/userdata/config.json`, into which it copies
//!   every kubelet label and annotation (grace period and preStop included) and the image's
//!   `org.opencontainers.image.stopSignal`. A container's names its sandbox
//!   (`io.kubernetes.cri-o.SandboxID`), whose own config.json holds the pod's labels and
//!   annotations as JSON (`io.kubernetes.cri-o.Labels`, `.Annotations`): the workload.
//!   containerd keeps a sandbox's labels in its metadata database only: through the CRI.
//!
//! The bundle exists before the task starts (`runc create` reads it), so it is there when the
//! container's cgroup appears.

use std::{
    collections::HashMap,
    fs,
    io::{self, Read},
    path::{Path, PathBuf},
};

use serde::Deserialize;

use super::{
    annotations::{self, AnnotationError, Facts, CRIO_ANNOTATIONS, CRIO_LABELS, CRIO_SANDBOX_ID},
    cgroup_path::{container_id_is_valid, Runtime},
    workload,
};

/// config.json files are a few KiB; refuse to read anything absurd.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Where the runtimes keep their state (`--containerd-state`, `--crio-storage`).
#[derive(Debug, Clone)]
pub struct StateFiles {
    pub containerd_state: PathBuf,
    pub containerd_namespace: String,
    pub crio_storage: PathBuf,
}

impl Default for StateFiles {
    fn default() -> Self {
        Self {
            containerd_state: "/run/containerd".into(),
            containerd_namespace: "k8s.io".into(),
            crio_storage: "/run/containers/storage".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: not an OCI config: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{path}: {source}")]
    Annotation { path: PathBuf, source: AnnotationError },
    #[error("{path}: {key} is not a JSON object of strings: {source}")]
    Labels { path: PathBuf, key: &'static str, source: serde_json::Error },
}

impl StateFiles {
    fn containerd_config(&self, id: &str) -> PathBuf {
        self.containerd_state
            .join("io.containerd.runtime.v2.task")
            .join(&self.containerd_namespace)
            .join(id)
            .join("config.json")
    }

    fn crio_config(&self, id: &str) -> PathBuf {
        self.crio_storage.join("overlay-containers").join(id).join("userdata/config.json")
    }

    /// Facts about container `id` from whichever runtime has its bundle; `Ok(None)` when
    /// neither does. Annotation errors are returned beside the facts that did parse.
    pub fn lookup(
        &self,
        id: &str,
    ) -> Result<Option<(Runtime, Facts, Vec<StateFileError>)>, StateFileError> {
        if !container_id_is_valid(id) {
            // Never build a path from something that is not a container id.
            return Ok(None);
        }
        for (runtime, path) in [
            (Runtime::Containerd, self.containerd_config(id)),
            (Runtime::Crio, self.crio_config(id)),
        ] {
            let Some(map) = read_annotations(&path)? else { continue };
            let (mut facts, errors) = annotations::read(&HashMap::new(), &map);
            let mut errors: Vec<_> = errors
                .into_iter()
                .map(|source| StateFileError::Annotation { path: path.clone(), source })
                .collect();
            if runtime == Runtime::Crio {
                match self.crio_owner(id, &map, facts.pod.as_deref().unwrap_or("")) {
                    Ok(owner) => facts.workload = owner,
                    Err(e) => errors.push(e),
                }
            }
            return Ok(Some((runtime, facts, errors)));
        }
        Ok(None)
    }
}

impl StateFiles {
    /// The owner CRI-O's copy of the pod's sandbox config names: container `id`'s sandbox (or
    /// `id` itself, a sandbox, when it names none), whose config.json holds the pod's labels.
    fn crio_owner(
        &self,
        id: &str,
        own: &HashMap<String, String>,
        pod: &str,
    ) -> Result<Option<workload::Workload>, StateFileError> {
        let sandbox = own.get(CRIO_SANDBOX_ID).map_or(id, String::as_str);
        if !container_id_is_valid(sandbox) {
            return Ok(None);
        }
        let path = self.crio_config(sandbox);
        let read;
        let map = if sandbox == id {
            own
        } else {
            match read_annotations(&path)? {
                Some(m) => {
                    read = m;
                    &read
                }
                None => return Ok(None),
            }
        };
        let json =
            |key: &'static str| -> Result<HashMap<String, String>, StateFileError> {
                match map.get(key) {
                    Some(text) => serde_json::from_str(text).map_err(|source| {
                        StateFileError::Labels { path: path.clone(), key, source }
                    }),
                    None => Ok(HashMap::new()),
                }
            };
        let (labels, pod_annotations) = (json(CRIO_LABELS)?, json(CRIO_ANNOTATIONS)?);
        Ok(workload::from_sandbox(pod, &labels, &pod_annotations))
    }
}

/// The `annotations` of an OCI runtime config; `Ok(None)` when the file does not exist.
pub fn read_annotations(path: &Path) -> Result<Option<HashMap<String, String>>, StateFileError> {
    #[derive(Deserialize)]
    struct OciConfig {
        #[serde(default)]
        annotations: HashMap<String, String>,
    }
    let io_err = |source| StateFileError::Io { path: path.to_owned(), source };
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text).map_err(io_err)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(StateFileError::TooLarge { path: path.to_owned() });
    }
    let config: OciConfig = serde_json::from_str(&text)
        .map_err(|source| StateFileError::Json { path: path.to_owned(), source })?;
    Ok(Some(config.annotations))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a";

    fn root(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("observer-state-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn containerd_bundle_names_the_container() {
        let r = root("containerd");
        let files = StateFiles { containerd_state: r.clone(), ..Default::default() };
        write(
            &files.containerd_config(CID),
            r#"{"ociVersion":"1.0.2","process":{"args":["sleep","1"]},"annotations":{
                "io.kubernetes.cri.container-type":"container",
                "io.kubernetes.cri.sandbox-name":"web-0","io.kubernetes.cri.sandbox-namespace":"shop",
                "io.kubernetes.cri.sandbox-uid":"0f2c9a4e-1b7d-4c3e-9a51-2d8e7f6a5b4c",
                "io.kubernetes.cri.container-name":"nginx"}}"#,
        );
        let (runtime, facts, errors) = files.lookup(CID).unwrap().unwrap();
        assert_eq!(runtime, Runtime::Containerd);
        assert!(errors.is_empty());
        assert_eq!(facts.pod.as_deref(), Some("web-0"));
        assert_eq!(facts.container.as_deref(), Some("nginx"));
        assert_eq!(facts.grace_period_seconds(), None);
        fs::remove_dir_all(&r).unwrap();
    }

    #[test]
    fn crio_config_has_kubelets_annotations_and_the_stop_signal() {
        let r = root("crio");
        let files = StateFiles { crio_storage: r.clone(), ..Default::default() };
        write(
            &files.crio_config(CID),
            r#"{"annotations":{"io.kubernetes.pod.name":"api-5f7d8b9c4-abcde",
                "io.kubernetes.pod.namespace":"prod","io.kubernetes.container.name":"api",
                "io.kubernetes.pod.terminationGracePeriod":"60",
                "io.kubernetes.container.preStopHandler":"{\"sleep\":{\"seconds\":10}}",
                "org.opencontainers.image.stopSignal":"SIGQUIT"}}"#,
        );
        let (runtime, facts, _) = files.lookup(CID).unwrap().unwrap();
        assert_eq!(runtime, Runtime::Crio);
        assert_eq!(facts.grace_period_seconds(), Some(60));
        assert_eq!(facts.prestop.map(|p| p.kind()), Some("sleep"));
        assert_eq!(facts.stop_signal.as_deref(), Some("SIGQUIT"));
        fs::remove_dir_all(&r).unwrap();
    }

    #[test]
    fn crio_names_the_workload_from_its_copy_of_the_sandbox_config() {
        const SANDBOX: &str = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d";
        let r = root("crio-owner");
        let files = StateFiles { crio_storage: r.clone(), ..Default::default() };
        write(
            &files.crio_config(CID),
            &format!(
                r#"{{"annotations":{{"io.kubernetes.pod.name":"build-run-x7k2p-compile-pod",
                "io.kubernetes.pod.namespace":"ci","io.kubernetes.container.name":"step-compile",
                "io.kubernetes.cri-o.SandboxID":"{SANDBOX}"}}}}"#
            ),
        );
        let labels = r#"{\"tekton.dev/pipeline\":\"build\",\"io.kubernetes.pod.uid\":\"u\"}"#;
        write(
            &files.crio_config(SANDBOX),
            &format!(r#"{{"annotations":{{"io.kubernetes.cri-o.Labels":"{labels}"}}}}"#),
        );
        let (_, facts, errors) = files.lookup(CID).unwrap().unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            facts.workload.map(|w| (w.name, w.kind)),
            Some(("build".into(), workload::WorkloadKind::Tekton))
        );
        // Labels that are no JSON object: an error beside the facts, no workload.
        write(
            &files.crio_config(SANDBOX),
            r#"{"annotations":{"io.kubernetes.cri-o.Labels":"[1"}}"#,
        );
        let (_, facts, errors) = files.lookup(CID).unwrap().unwrap();
        assert_eq!((facts.workload, facts.container.as_deref()), (None, Some("step-compile")));
        assert!(matches!(errors[..], [StateFileError::Labels { .. }]), "{errors:?}");
        fs::remove_dir_all(&r).unwrap();
    }

    #[test]
    fn missing_malformed_and_hostile_inputs() {
        let r = root("bad");
        let files = StateFiles {
            containerd_state: r.clone(),
            crio_storage: r.join("crio"),
            ..Default::default()
        };
        assert!(files.lookup(CID).unwrap().is_none());
        assert!(files.lookup("../../etc").unwrap().is_none());
        write(&files.containerd_config(CID), "{truncated");
        assert!(matches!(files.lookup(CID), Err(StateFileError::Json { .. })));
        write(
            &files.containerd_config(CID),
            r#"{"annotations":{"io.kubernetes.cri.sandbox-name":7}}"#,
        );
        assert!(files.lookup(CID).is_err());
        fs::remove_dir_all(&r).unwrap();
    }
}
