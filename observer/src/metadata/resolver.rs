//! The metadata task: resolves a container when its cgroup appears, off the event path.
//!
//! Sources, best first, merged per container (earlier sources win a field):
//! 1. the CRI runtime (`cri`): kubelet's labels and annotations, the image, and the pod's own
//!    labels from its sandbox (the workload; asked once per pod, beside the container's call);
//! 2. the runtime's state files (`state_files`): containerd's bundle annotations, CRI-O's copy
//!    of kubelet's;
//! 3. kubelet's log layout (`kubelet_logs`): namespace, pod and container names;
//! 4. the cgroup path, which the pipeline already parsed (pod uid, QoS, container id).
//!
//! Lookups run concurrently (bounded), each CRI call under a deadline, so a hung runtime
//! delays only the records that wait for it, by at most the deadline. Each source's failures
//! are reported back and counted in `observer_metadata_errors_total{source}`.

use std::{
    collections::{HashMap, VecDeque},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, Mutex, Semaphore};

use super::{
    annotations::Facts,
    cgroup_path::Runtime,
    cri::{Cri, CriError, Found, PodOwner, DEFAULT_ENDPOINTS},
    kubelet_logs::KubeletLogs,
    state_files::StateFiles,
};

/// Lookups in flight at once.
pub const CONCURRENT_LOOKUPS: usize = 32;
/// How long after a failed connection the CRI is tried again.
pub const RECONNECT_AFTER: Duration = Duration::from_secs(10);
/// Pods whose owner is remembered: the node's pods (kubelet's default `maxPods` is 110) and
/// many more gone; a pod forgotten is asked for again, never misnamed.
pub const MAX_OWNERS: usize = 4_096;

/// Ask for a container's metadata.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub cgroup_id: u64,
    pub container_id: String,
    pub pod_uid: Option<String>,
}

/// The answer, merged from every source that knew something.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub cgroup_id: u64,
    pub facts: Facts,
    pub runtime: Option<Runtime>,
    /// Sources that contributed, best first (for logs).
    pub sources: Vec<&'static str>,
    /// One entry per failure, by source (`cri`, `state_files`, `kubelet_logs`, `annotations`).
    pub errors: Vec<&'static str>,
}

/// Configuration of the sources.
#[derive(Debug, Clone)]
pub struct Sources {
    /// CRI sockets, tried in order; empty disables the CRI.
    pub cri_endpoints: Vec<PathBuf>,
    pub cri_timeout: Duration,
    pub state_files: StateFiles,
    pub kubelet_log_root: PathBuf,
}

/// Where container metadata comes from, on the command line: the [`Sources`] of `observer run`.
#[derive(Debug, clap::Args)]
pub struct MetadataArgs {
    /// CRI runtime socket(s), tried in order (repeat or comma-separate; "none" disables the
    /// CRI). Default: /run/containerd/containerd.sock, /var/run/crio/crio.sock,
    /// /var/run/cri-dockerd.sock.
    #[arg(long, value_delimiter = ',', env = "OBSERVER_CRI_ENDPOINT")]
    pub cri_endpoint: Vec<String>,

    /// Deadline of each CRI call; a runtime slower than this is skipped, never waited on. At
    /// most 24h. DURATION: a number and a unit (ms, s, m, h, d, w) or several, e.g. 500ms,
    /// 1.5s, 15m, 1h30m, 2d; a number alone is seconds.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_cri_timeout)]
    pub cri_timeout: Duration,

    /// containerd's state directory (bundles with config.json, read when the CRI is unavailable).
    #[arg(long, default_value = "/run/containerd")]
    pub containerd_state: PathBuf,

    /// CRI-O's container storage run root (userdata/config.json per container).
    #[arg(long, default_value = "/run/containers/storage")]
    pub crio_storage: PathBuf,

    /// Where kubelet keeps `pods/` and `containers/` logs (names pods when the runtime cannot).
    #[arg(long, default_value = "/var/log")]
    pub kubelet_log_root: PathBuf,
}

/// The longest `--cri-timeout`.
pub const MAX_CRI_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

fn parse_cri_timeout(s: &str) -> Result<Duration, crate::duration::DurationError> {
    crate::duration::parse_at_most(s, MAX_CRI_TIMEOUT)
}

impl MetadataArgs {
    /// The sources these arguments ask for.
    pub fn sources(&self) -> Sources {
        let cri_endpoints = if self.cri_endpoint.is_empty() {
            DEFAULT_ENDPOINTS.iter().map(PathBuf::from).collect()
        } else if self.cri_endpoint.iter().any(|e| e == "none") {
            Vec::new()
        } else {
            // Accept kubelet's spelling too: unix:///run/containerd/containerd.sock.
            self.cri_endpoint
                .iter()
                .map(|e| PathBuf::from(e.strip_prefix("unix://").unwrap_or(e)))
                .collect()
        };
        Sources {
            cri_endpoints,
            cri_timeout: self.cri_timeout,
            state_files: StateFiles {
                containerd_state: self.containerd_state.clone(),
                crio_storage: self.crio_storage.clone(),
                ..Default::default()
            },
            kubelet_log_root: self.kubelet_log_root.clone(),
        }
    }
}

struct CriState {
    cri: Option<Cri>,
    last_attempt: Option<Instant>,
    /// `ListContainers` at connection: answers for containers that predate us.
    listed: HashMap<String, Found>,
    /// Each pod's owner by pod uid (`ListPodSandbox` at connection, then per new pod), oldest
    /// first in `owner_order`, at most [`MAX_OWNERS`].
    owners: HashMap<String, PodOwner>,
    owner_order: VecDeque<String>,
}

impl CriState {
    fn remember(&mut self, uid: String, owner: PodOwner) {
        if self.owners.insert(uid.clone(), owner).is_none() {
            self.owner_order.push_back(uid);
        }
        while self.owner_order.len() > MAX_OWNERS {
            if let Some(old) = self.owner_order.pop_front() {
                self.owners.remove(&old);
            }
        }
    }

    /// A call timed out or the connection went: stop asking until the reconnect delay has
    /// passed, so later lookups do not each pay the deadline.
    fn failed(&mut self, e: &CriError) {
        if matches!(e, CriError::Timeout { .. } | CriError::Connect { .. }) {
            self.cri = None;
            self.last_attempt = Some(Instant::now());
            log::warn!("{e}; CRI lookups paused for {RECONNECT_AFTER:?}");
        }
    }
}

/// Spawns the metadata task; returns its request and answer channels.
pub fn spawn(
    sources: Sources,
    queue: usize,
) -> (mpsc::Sender<Lookup>, mpsc::UnboundedReceiver<Resolved>) {
    let (req_tx, mut req_rx) = mpsc::channel::<Lookup>(queue);
    let (res_tx, res_rx) = mpsc::unbounded_channel();
    let sources = Arc::new(sources);
    let cri = Arc::new(Mutex::new(CriState {
        cri: None,
        last_attempt: None,
        listed: HashMap::new(),
        owners: HashMap::new(),
        owner_order: VecDeque::new(),
    }));
    let limit = Arc::new(Semaphore::new(CONCURRENT_LOOKUPS));
    tokio::spawn(async move {
        while let Some(lookup) = req_rx.recv().await {
            let Ok(permit) = limit.clone().acquire_owned().await else { break };
            let (sources, cri, res_tx) = (sources.clone(), cri.clone(), res_tx.clone());
            tokio::spawn(async move {
                let resolved = resolve(&sources, &cri, lookup).await;
                let _ = res_tx.send(resolved);
                drop(permit);
            });
        }
    });
    (req_tx, res_rx)
}

/// The connected CRI (connecting, with `ListContainers`, when due), or `None`.
async fn cri_client(
    sources: &Sources,
    state: &Mutex<CriState>,
    errors: &mut Vec<&'static str>,
) -> Option<Cri> {
    if sources.cri_endpoints.is_empty() {
        return None;
    }
    let mut s = state.lock().await;
    if let Some(cri) = &s.cri {
        return Some(cri.clone());
    }
    if s.last_attempt.is_some_and(|t| t.elapsed() < RECONNECT_AFTER) {
        return None;
    }
    s.last_attempt = Some(Instant::now());
    match Cri::connect(&sources.cri_endpoints, sources.cri_timeout).await {
        Ok(cri) => {
            log::info!(
                "CRI: {} {} at {}",
                cri.runtime_name,
                cri.runtime_version,
                cri.endpoint().display()
            );
            // Side by side: the two lists cost one deadline, as the lookups' two calls do.
            let (containers, owners) = tokio::join!(cri.list(), cri.owners());
            match containers {
                Ok(listed) => s.listed = listed,
                Err(e) => {
                    log::warn!("{e}");
                    errors.push("cri");
                }
            }
            match owners {
                Ok(owners) => owners.into_iter().for_each(|(uid, o)| s.remember(uid, o)),
                Err(e) => {
                    log::warn!("{e}");
                    errors.push("cri");
                }
            }
            s.cri = Some(cri.clone());
            Some(cri)
        }
        Err(e) => {
            log::warn!("{e}; names come from runtime state files and kubelet's log layout");
            errors.push("cri");
            None
        }
    }
}

async fn resolve(sources: &Sources, cri_state: &Mutex<CriState>, lookup: Lookup) -> Resolved {
    let mut r = Resolved { cgroup_id: lookup.cgroup_id, ..Default::default() };
    let id = lookup.container_id.as_str();

    // 1. CRI.
    if let Some(cri) = cri_client(sources, cri_state, &mut r.errors).await {
        let (listed, known) = {
            let mut s = cri_state.lock().await;
            let known = lookup.pod_uid.as_ref().and_then(|u| s.owners.get(u).cloned());
            (s.listed.remove(id), known)
        };
        let container = async {
            match listed {
                Some(found) => Ok(Some(found)),
                None => cri.lookup(id).await,
            }
        };
        // The pod's labels are on its sandbox only: asked beside the container's call, so a
        // lookup still costs one deadline.
        let owner = async {
            match (known, &lookup.pod_uid) {
                (Some(o), _) => Ok(Some((o, true))),
                (None, Some(uid)) => cri.owner(uid).await.map(|o| o.map(|o| (o, false))),
                (None, None) => Ok(None),
            }
        };
        let (found, owner) = tokio::join!(container, owner);
        match owner {
            Ok(Some((o, known))) => {
                if let (false, Some(uid)) = (known, &lookup.pod_uid) {
                    cri_state.lock().await.remember(uid.clone(), o.clone());
                }
                r.facts.workload = o.workload;
            }
            Ok(None) => {}
            Err(e) => {
                log::debug!("{e}");
                r.errors.push("cri");
                cri_state.lock().await.failed(&e);
            }
        }
        match found {
            Ok(Some(found)) => {
                r.errors.extend(found.errors.iter().map(|_| "annotations"));
                r.facts.merge(found.facts);
                r.runtime = Some(cri.runtime()).filter(|rt| *rt != Runtime::Unknown);
                r.sources.push("cri");
            }
            Ok(None) => {}
            Err(e) => {
                log::debug!("{e}");
                r.errors.push("cri");
                cri_state.lock().await.failed(&e);
            }
        }
    }

    // 2. Runtime state files (blocking file reads: off the runtime's worker threads).
    if !r.facts.is_named() || r.facts.grace_period_seconds().is_none() {
        let (files, cid) = (sources.state_files.clone(), id.to_owned());
        match tokio::task::spawn_blocking(move || files.lookup(&cid)).await {
            Ok(Ok(Some((runtime, facts, errors)))) => {
                r.errors.extend(errors.iter().map(|e| {
                    log::debug!("{e}");
                    "state_files"
                }));
                r.facts.merge(facts);
                r.runtime.get_or_insert(runtime);
                r.sources.push("state_files");
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                log::debug!("{e}");
                r.errors.push("state_files");
            }
            Err(_) => r.errors.push("state_files"),
        }
    }

    // 3. kubelet's log layout.
    if !r.facts.is_named() {
        let logs = KubeletLogs::new(&sources.kubelet_log_root);
        let (uid, cid) = (lookup.pod_uid.clone(), id.to_owned());
        let found = tokio::task::spawn_blocking(move || {
            let pod = uid.map(|u| logs.pod_by_uid(&u)).transpose();
            let container = logs.container_by_id(&cid);
            (pod, container)
        })
        .await;
        match found {
            Ok((pod, container)) => {
                let mut facts = Facts::default();
                match pod {
                    Ok(Some(Some(p))) => {
                        facts.namespace = Some(p.namespace);
                        facts.pod = Some(p.pod);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        log::debug!("kubelet log layout: {e}");
                        r.errors.push("kubelet_logs");
                    }
                }
                match container {
                    Ok(Some(c)) => {
                        facts.container = Some(c.container);
                        facts.pod.get_or_insert(c.pod);
                        facts.namespace.get_or_insert(c.namespace);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        log::debug!("kubelet log layout: {e}");
                        r.errors.push("kubelet_logs");
                    }
                }
                if facts != Facts::default() {
                    r.facts.merge(facts);
                    r.sources.push("kubelet_logs");
                }
            }
            Err(_) => r.errors.push("kubelet_logs"),
        }
    }
    r
}
