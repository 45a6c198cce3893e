//! The workload that owns a pod: named by the pod's labels where its sandbox carries them, else
//! derived from the pod name the way Kubernetes controllers name the pods they create, else
//! none (see [`resolve`]).
//!
//! **From the labels** ([`from_sandbox`]). kubelet puts the pod's own labels on its CRI
//! sandbox, beside its three (`pkg/kubelet/kuberuntime/labels.go` `newPodLabels`), and the
//! pod's annotations too (`newPodAnnotations`); the runtime returns them in `PodSandboxStatus`
//! and `ListPodSandbox` (containerd keeps the sandbox config it was given). The controllers
//! label what they make:
//! * Deployment: `pod-template-hash` (`DefaultDeploymentUniqueLabelKey`); the ReplicaSet is
//!   `<deployment>-<hash>` and its pods `<replicaset>-<random>`, so the Deployment is the pod
//!   name before `-<hash>-`.
//! * StatefulSet: `controller-revision-hash` and `statefulset.kubernetes.io/pod-name`
//!   (`pkg/controller/statefulset` `updateIdentity`), pods `<set>-<ordinal>`, the ordinal also
//!   in `apps.kubernetes.io/pod-index` (1.28+). DaemonSet: `controller-revision-hash` and
//!   `pod-template-generation`, pods `<daemonset>-<random>`.
//! * Job: `batch.kubernetes.io/job-name` (1.27+) and the older `job-name`; a CronJob's Job is
//!   `<cronjob>-<scheduled time in minutes since the epoch>` (`pkg/controller/cronjob/utils.go`
//!   `getJobName`).
//! * Tekton (`docs/labels.md`): `tekton.dev/pipeline` (the Pipeline a PipelineRun runs),
//!   `tekton.dev/task`/`clusterTask` (the Task a TaskRun runs), `tekton.dev/pipelineRun`,
//!   `tekton.dev/taskRun`. Argo Workflows: `workflows.argoproj.io/workflow`, a CronWorkflow's
//!   runs named `<cron workflow>-<scheduled time in seconds>` (`workflow/cron/operator.go`).
//!   Airflow's KubernetesPodOperator and KubernetesExecutor: `dag_id`. Prow: `prow.k8s.io/job`.
//!   Jenkins' kubernetes plugin: `jenkins/label`, the agent's pod template label
//!   (`PodTemplate.getLabelsMap`), which a pipeline's own template makes
//!   `<job>_<build number>-<random>`.
//! * Static pods: kubelet annotates every pod with its source, `kubernetes.io/config.source`
//!   (`pkg/kubelet/config/config.go`; `api` for pods from the API server, `file` or `http` for
//!   static pods, `kubetypes.IsStaticPod`). A static pod is its own workload: one per manifest
//!   on a node, named `<manifest name>-<node name>`.
//! * `app.kubernetes.io/name`, `app`, `k8s-app`: conventions, not a controller's; weaker than
//!   the pod name's shape.
//!
//! A run's name is folded to what its runs share ([`fold_run`]): without a `generateName`
//! suffix or a schedule's number, so a CI system's runs are one workload.
//!
//! **From the pod name** ([`derive`]), the fallback when the sandbox's labels are not to be
//! had (no CRI: runtime state files, kubelet's log layout) or name no owner. Sources of the
//! naming conventions:
//! * `generateName` suffixes: apiserver `pkg/storage/names` appends
//!   `k8s.io/apimachinery/pkg/util/rand.String(5)`, drawn from the alphabet
//!   `bcdfghjklmnpqrstvwxz2456789` (no vowels, no `0`, `1`, `3`, so generated
//!   suffixes cannot spell words).
//! * Deployments: the ReplicaSet is `<deployment>-<pod-template-hash>`
//!   (kube-controller-manager `pkg/controller/deployment`), the hash being
//!   `rand.SafeEncodeString` of a decimal uint32, so 1..=10 characters of the
//!   same alphabet; its pods then get a random suffix.
//! * CronJobs: the Job is `<cronjob>-<scheduled time in minutes since the
//!   epoch>` (`pkg/controller/cronjob/utils.go`), its pods get a random suffix.
//! * StatefulSets: `<set>-<ordinal>` (`pkg/controller/statefulset`).
//!
//! This is a heuristic: a name can only be matched against these shapes, not
//! traced to its owner. Static pods (`<name>-<node name>`) are the known
//! casualty when their labels are not to be had: `kube-apiserver-node-1` ends in
//! what looks like an ordinal and is reported as StatefulSet
//! `kube-apiserver-node`. The rule order is kept anyway: StatefulSet pods are far
//! more common than static pods on nodes whose name ends in `-<number>`, and the
//! name alone cannot tell them apart.
//!
//! **None** when neither names an owner: a pod name of no known shape (a bare pod, a
//! controller this does not know) is no workload. Taken as one, it made a metric series per
//! pod, without bound on a CI node; the record still names the pod.

use std::collections::HashMap;

use serde::Serialize;

/// The pod labels and annotations read here (see the module docs for who sets them).
pub mod labels {
    pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
    pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";
    pub const STATEFULSET_POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
    pub const POD_INDEX: &str = "apps.kubernetes.io/pod-index";
    pub const POD_TEMPLATE_GENERATION: &str = "pod-template-generation";
    pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";
    pub const LEGACY_JOB_NAME: &str = "job-name";
    pub const TEKTON_PIPELINE: &str = "tekton.dev/pipeline";
    pub const TEKTON_TASK: &str = "tekton.dev/task";
    pub const TEKTON_CLUSTER_TASK: &str = "tekton.dev/clusterTask";
    pub const TEKTON_PIPELINE_RUN: &str = "tekton.dev/pipelineRun";
    pub const TEKTON_TASK_RUN: &str = "tekton.dev/taskRun";
    pub const ARGO_WORKFLOW: &str = "workflows.argoproj.io/workflow";
    pub const AIRFLOW_DAG: &str = "dag_id";
    pub const PROW_JOB: &str = "prow.k8s.io/job";
    pub const JENKINS_LABEL: &str = "jenkins/label";
    /// Weaker: conventions, set by hand or by charts.
    pub const APP: [&str; 3] = ["app.kubernetes.io/name", "app", "k8s-app"];
    /// kubelet's annotation of where a pod came from (`kubetypes.ConfigSourceAnnotationKey`).
    pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
}

/// How the workload name was recognized: in the pod's labels, or in its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    /// `pod-template-hash`, or the name `<deployment>-<pod-template-hash>-<random>`.
    Deployment,
    /// `<owner>-<random>`: a ReplicaSet, DaemonSet or Job (or anything else
    /// using `generateName`); the shapes are indistinguishable.
    #[serde(rename = "generated")]
    ReplicaSetOrDaemonSetOrJob,
    /// A CronJob's Job (`job-name` `<cronjob>-<minutes>`), or the name
    /// `<cronjob>-<minutes>-<random>`.
    CronJob,
    /// `statefulset.kubernetes.io/pod-name`, or the name `<set>-<ordinal>`.
    StatefulSet,
    /// `controller-revision-hash` without a StatefulSet's labels.
    DaemonSet,
    /// `job-name`, not a CronJob's.
    Job,
    /// `kubernetes.io/config.source` `file` or `http`: the pod is its own workload.
    Static,
    /// A Tekton Pipeline, Task, or their run.
    Tekton,
    /// An Argo Workflow (a CronWorkflow for its runs).
    Argo,
    /// An Airflow DAG.
    Airflow,
    /// A Prow job.
    Prow,
    /// A Jenkins agent's pod template label (the job, for a pipeline's own template).
    Jenkins,
    /// `app.kubernetes.io/name`, `app` or `k8s-app`.
    App,
    /// No recognized shape: [`derive`] returns the pod name, [`resolve`] no workload.
    Pod,
}

/// A workload name derived from a pod name, or read from its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// The workload's name; from [`derive`], always a prefix of the pod name.
    pub name: String,
    /// Which label or naming shape gave it.
    pub kind: WorkloadKind,
}

/// `k8s.io/apimachinery/pkg/util/rand` alphanums.
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Length of the random suffix `generateName` appends.
const RANDOM_SUFFIX_LEN: usize = 5;
/// A uint32 printed in decimal has at most 10 digits, each encoded to one character.
const MAX_TEMPLATE_HASH_LEN: usize = 10;
/// Minutes since the epoch have 8 digits until the year 2160, seconds 10 until 2286 (Argo's
/// CronWorkflow runs); 10 leaves headroom without matching arbitrary long numbers.
const CRONJOB_MINUTES_LEN: std::ops::RangeInclusive<usize> = 8..=10;

/// The workload to report for pod `pod_name`: what its sandbox's labels name
/// ([`from_sandbox`], `labelled`) when that is a controller's label; else the shape of the
/// name ([`derive`]); else a conventional `app` label; else none. Never the bare pod name,
/// except a static pod's (one per manifest on a node).
pub fn resolve(pod_name: &str, labelled: Option<Workload>) -> Option<Workload> {
    if let Some(w) = labelled.as_ref().filter(|w| w.kind != WorkloadKind::App) {
        return Some(w.clone());
    }
    let derived = derive(pod_name);
    if derived.kind != WorkloadKind::Pod {
        return Some(derived);
    }
    labelled
}

/// The owner a pod's sandbox labels and annotations name, strongest evidence first:
/// Deployment, StatefulSet, DaemonSet, the CI systems, Job, a static pod, then the `app`
/// conventions. `None` when they name none, or name it in a shape that does not fit the pod
/// name (a generated name the apiserver truncated). Never panics; empty values are absent.
pub fn from_sandbox(
    pod_name: &str,
    labels: &HashMap<String, String>,
    annotations: &HashMap<String, String>,
) -> Option<Workload> {
    use self::labels as l;
    use WorkloadKind as K;
    let get = |k: &str| labels.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let found = |name: &str, kind| Some(Workload { name: name.to_owned(), kind });
    // The Deployment is the pod name before `-<hash>-<random>`.
    if let Some(hash) = get(l::POD_TEMPLATE_HASH) {
        if let Some((replica_set, _)) = pod_name.rsplit_once('-') {
            match replica_set.strip_suffix(hash).and_then(|d| d.strip_suffix('-')) {
                Some(d) if !d.is_empty() => return found(d, K::Deployment),
                _ => {}
            }
        }
    }
    if get(l::CONTROLLER_REVISION_HASH).is_some() {
        if get(l::STATEFULSET_POD_NAME).is_some() || get(l::POD_INDEX).is_some() {
            let set = match get(l::POD_INDEX) {
                Some(i) => pod_name.strip_suffix(i).and_then(|s| s.strip_suffix('-')),
                None => pod_name.rsplit_once('-').filter(|(_, n)| is_ordinal(n)).map(|(s, _)| s),
            };
            if let Some(set) = set.filter(|s| !s.is_empty()) {
                return found(set, K::StatefulSet);
            }
        } else if let Some((ds, _)) =
            pod_name.rsplit_once('-').filter(|(d, r)| !d.is_empty() && is_random_suffix(r))
        {
            return found(ds, K::DaemonSet);
        }
    }
    let tekton = [l::TEKTON_PIPELINE, l::TEKTON_TASK, l::TEKTON_CLUSTER_TASK];
    let tekton_runs = [l::TEKTON_PIPELINE_RUN, l::TEKTON_TASK_RUN];
    if let Some(name) = tekton.iter().chain(&tekton_runs).find_map(|k| get(k)) {
        return found(fold_run(name).0, K::Tekton);
    }
    if let Some(workflow) = get(l::ARGO_WORKFLOW) {
        return found(fold_run(workflow).0, K::Argo);
    }
    if let Some(dag) = get(l::AIRFLOW_DAG) {
        return found(dag, K::Airflow);
    }
    if let Some(job) = get(l::PROW_JOB) {
        return found(job, K::Prow);
    }
    if let Some(label) = get(l::JENKINS_LABEL) {
        return found(jenkins_job(label), K::Jenkins);
    }
    if let Some(job) = get(l::JOB_NAME).or_else(|| get(l::LEGACY_JOB_NAME)) {
        let (name, scheduled) = fold_run(job);
        return found(name, if scheduled { K::CronJob } else { K::Job });
    }
    let source = annotations.get(l::CONFIG_SOURCE).map(|s| s.trim());
    if matches!(source, Some("file" | "http")) && !pod_name.is_empty() {
        return found(pod_name, K::Static);
    }
    l::APP.iter().find_map(|k| get(k)).and_then(|app| found(app, K::App))
}

/// A run's name without what differs from run to run, and whether that was a schedule's
/// number: `<name>-<8..10 digits>` (a CronJob's Job, an Argo CronWorkflow's run) or
/// `<name>-<5 random>` (`generateName`); otherwise the name itself.
pub fn fold_run(name: &str) -> (&str, bool) {
    match name.rsplit_once('-') {
        Some((base, n)) if !base.is_empty() && is_cronjob_minutes(n) => (base, true),
        Some((base, r)) if !base.is_empty() && is_random_suffix(r) => (base, false),
        _ => (name, false),
    }
}

/// A Jenkins agent's label as a pipeline's own pod template makes it, `<job>_<build>-<random>`
/// (seen on nodes: `ghpr-unit-test_1413-x7k2p`), is its job; any other label is itself.
fn jenkins_job(label: &str) -> &str {
    let job = label.rsplit_once('_').and_then(|(job, rest)| {
        let (build, random) = rest.split_once('-')?;
        let digits = !build.is_empty() && build.bytes().all(|b| b.is_ascii_digit());
        (digits && !random.is_empty() && !job.is_empty()).then_some(job)
    });
    job.unwrap_or(label)
}

/// Derives the owning workload from a pod name.
///
/// Rules, first match wins, each requiring a non-empty base name:
/// CronJob, Deployment, generated (`<name>-<5 random>`), StatefulSet, and
/// otherwise the pod itself. Never panics; the returned name is always a
/// prefix of `pod_name`.
pub fn derive(pod_name: &str) -> Workload {
    let found = |name: &str, kind| Workload { name: name.to_owned(), kind };
    if let Some((rest, last)) = pod_name.rsplit_once('-') {
        if is_random_suffix(last) {
            if let Some((base, middle)) = rest.rsplit_once('-') {
                if !base.is_empty() {
                    // CronJob first: an all-digit middle made only of 2,4..9
                    // would also pass as a template hash.
                    if is_cronjob_minutes(middle) {
                        return found(base, WorkloadKind::CronJob);
                    }
                    if is_template_hash(middle) {
                        return found(base, WorkloadKind::Deployment);
                    }
                }
            }
            if !rest.is_empty() {
                return found(rest, WorkloadKind::ReplicaSetOrDaemonSetOrJob);
            }
        }
        if is_ordinal(last) && !rest.is_empty() {
            return found(rest, WorkloadKind::StatefulSet);
        }
    }
    found(pod_name, WorkloadKind::Pod)
}

fn in_alphabet(s: &str) -> bool {
    s.bytes().all(|b| ALPHABET.contains(&b))
}

fn is_random_suffix(s: &str) -> bool {
    s.len() == RANDOM_SUFFIX_LEN && in_alphabet(s)
}

fn is_template_hash(s: &str) -> bool {
    (1..=MAX_TEMPLATE_HASH_LEN).contains(&s.len()) && in_alphabet(s)
}

fn is_cronjob_minutes(s: &str) -> bool {
    CRONJOB_MINUTES_LEN.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// StatefulSet ordinals are printed with `%d`, so a leading zero means the
/// digits are part of a hand-written name (`web-01`), not an ordinal.
fn is_ordinal(s: &str) -> bool {
    match s.as_bytes() {
        [] => false,
        [b'0'] => true,
        [first, ..] => *first != b'0' && s.bytes().all(|b| b.is_ascii_digit()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use WorkloadKind::*;

    #[test]
    fn table() {
        let cases: &[(&str, &str, WorkloadKind)] = &[
            // Deployments
            ("coredns-5d78c9869d-8xkqh", "coredns", Deployment),
            ("nginx-deployment-7c5ddbdf54-2xk9v", "nginx-deployment", Deployment),
            ("metrics-server-6d94bc8694-p4x7m", "metrics-server", Deployment),
            ("local-path-provisioner-75f5b54ffd-kw9wd", "local-path-provisioner", Deployment),
            ("cert-manager-webhook-5f8c8d8b9c-zq2lm", "cert-manager-webhook", Deployment),
            ("api-6b-x7k2p", "api", Deployment),
            ("app-txt-x7k2p", "app", Deployment),
            // generated: DaemonSet / ReplicaSet / Job pods
            ("kube-proxy-x7k2p", "kube-proxy", ReplicaSetOrDaemonSetOrJob),
            ("kindnet-4dd5v", "kindnet", ReplicaSetOrDaemonSetOrJob),
            ("calico-node-9fq2w", "calico-node", ReplicaSetOrDaemonSetOrJob),
            ("nginx-bcdfg", "nginx", ReplicaSetOrDaemonSetOrJob),
            ("db-migrate-xkcd2", "db-migrate", ReplicaSetOrDaemonSetOrJob),
            // the middle is not a hash (vowel) so only the last segment is stripped
            ("web-xyz-bcdfg", "web-xyz", ReplicaSetOrDaemonSetOrJob),
            ("web-xyza-bcdfg", "web-xyza", ReplicaSetOrDaemonSetOrJob),
            // middle too long for a hash
            ("web-bcdfghjklmn-x7k2p", "web-bcdfghjklmn", ReplicaSetOrDaemonSetOrJob),
            // CronJobs
            ("backup-28340160-4sxv9", "backup", CronJob),
            ("nightly-report-29012345-b7x2q", "nightly-report", CronJob),
            ("gc-2834016099-4sxv9", "gc", CronJob),
            // digits only from the alphabet, 8 long: CronJob wins the tie
            ("gc-22445566-4sxv9", "gc", CronJob),
            // 7 digits: not CronJob; it contains 0/1/3, so not a hash either
            ("gc-2834016-4sxv9", "gc-2834016", ReplicaSetOrDaemonSetOrJob),
            // 7 alphabet digits: a hash
            ("gc-2445566-4sxv9", "gc", Deployment),
            // StatefulSets
            ("web-0", "web", StatefulSet),
            ("web-12", "web", StatefulSet),
            ("postgres-primary-3", "postgres-primary", StatefulSet),
            ("kafka-broker-100", "kafka-broker", StatefulSet),
            // documented limitation: static pod on node "node-1"
            ("kube-apiserver-node-1", "kube-apiserver-node", StatefulSet),
            // Pods
            ("web-01", "web-01", Pod),
            ("etcd-node1", "etcd-node1", Pod),
            ("kube-scheduler-control-plane", "kube-scheduler-control-plane", Pod),
            ("my-app-aeiou", "my-app-aeiou", Pod),
            ("api-v2", "api-v2", Pod),
            ("nginx", "nginx", Pod),
            ("web-x7k2", "web-x7k2", Pod),
            ("web-x7k2pq", "web-x7k2pq", Pod),
            ("web-X7K2P", "web-X7K2P", Pod),
            ("", "", Pod),
            ("-", "-", Pod),
            ("-0", "-0", Pod),
            ("-x7k2p", "-x7k2p", Pod),
            ("web-", "web-", Pod),
            ("web--", "web--", Pod),
            ("web-00", "web-00", Pod),
            ("web-+1", "web-+1", Pod),
            ("wéb-é", "wéb-é", Pod),
            ("ünïcödé-x7k2p", "ünïcödé", ReplicaSetOrDaemonSetOrJob),
            // an empty base before the hash falls through to the next rule
            ("-5d78c9869d-8xkqh", "-5d78c9869d", ReplicaSetOrDaemonSetOrJob),
            ("--8xkqh", "-", ReplicaSetOrDaemonSetOrJob),
        ];
        for &(pod, name, kind) in cases {
            assert_eq!(derive(pod), Workload { name: name.to_owned(), kind }, "pod name {pod:?}");
        }
    }

    #[test]
    fn very_long_name() {
        let long = format!("{}-0", "a".repeat(1_000_000));
        let w = derive(&long);
        assert_eq!((w.name.len(), w.kind), (1_000_000, StatefulSet));
    }

    #[test]
    fn kind_serializes() -> Result<(), serde_json::Error> {
        assert_eq!(serde_json::to_string(&Deployment)?, "\"deployment\"");
        assert_eq!(serde_json::to_string(&ReplicaSetOrDaemonSetOrJob)?, "\"generated\"");
        assert_eq!(serde_json::to_string(&CronJob)?, "\"cronjob\"");
        assert_eq!(serde_json::to_string(&StatefulSet)?, "\"statefulset\"");
        assert_eq!(serde_json::to_string(&Pod)?, "\"pod\"");
        assert_eq!(serde_json::to_string(&DaemonSet)?, "\"daemonset\"");
        Ok(())
    }

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// The workload of a pod whose sandbox has `labels` (and no annotation).
    fn labelled(pod: &str, labels: &[(&str, &str)]) -> Option<(String, WorkloadKind)> {
        let w = resolve(pod, from_sandbox(pod, &map(labels), &HashMap::new()));
        w.map(|w| (w.name, w.kind))
    }

    #[test]
    fn controllers_labels_name_the_owner() {
        let w = |name, kind| Some((name, kind));
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<(&'a str, WorkloadKind)>);
        let cases: &[Case] = &[
            // A hash of 1..10 characters: the label says which.
            ("web-7d4b9c6f8-x2k9p", &[("pod-template-hash", "7d4b9c6f8")], w("web", Deployment)),
            ("api-v2-5c-q8w2z", &[("pod-template-hash", "5c")], w("api-v2", Deployment)),
            // A name the apiserver truncated before the hash: the labels cannot place it; the
            // name's shape is next.
            (
                "averyverylongname-q8w2z",
                &[("pod-template-hash", "5c")],
                w("averyverylongname", ReplicaSetOrDaemonSetOrJob),
            ),
            (
                "kafka-12",
                &[
                    ("controller-revision-hash", "kafka-6c4b7d8f9"),
                    ("statefulset.kubernetes.io/pod-name", "kafka-12"),
                ],
                w("kafka", StatefulSet),
            ),
            (
                "web-01-3",
                &[
                    ("controller-revision-hash", "web-01-6c4b"),
                    ("apps.kubernetes.io/pod-index", "3"),
                ],
                w("web-01", StatefulSet),
            ),
            (
                "kube-proxy-x7k2p",
                &[("controller-revision-hash", "5d6f7b8c9"), ("pod-template-generation", "1")],
                w("kube-proxy", DaemonSet),
            ),
            // Jobs and CronJobs, by either label.
            (
                "backup-28340160-4sxv9",
                &[("batch.kubernetes.io/job-name", "backup-28340160")],
                w("backup", CronJob),
            ),
            ("migrate-db-q8w2z", &[("job-name", "migrate-db")], w("migrate-db", Job)),
            ("ci-x7k2p-abcde", &[("job-name", "ci-x7k2p")], w("ci", Job)),
            // CI systems: their pods' names have no controller's shape.
            (
                "build-run-x7k2p-compile-pod",
                &[
                    ("tekton.dev/pipeline", "build"),
                    ("tekton.dev/pipelineRun", "build-run-x7k2p"),
                    ("tekton.dev/taskRun", "build-run-x7k2p-compile"),
                ],
                w("build", Tekton),
            ),
            (
                "lint-run-q8w2z-pod",
                &[("tekton.dev/taskRun", "lint-run-q8w2z")],
                w("lint-run", Tekton),
            ),
            (
                "nightly-1785549600-1234567890",
                &[("workflows.argoproj.io/workflow", "nightly-1785549600")],
                w("nightly", Argo),
            ),
            (
                "etl-daily-load-a1b2c3d4",
                &[("dag_id", "etl_daily"), ("task_id", "load"), ("run_id", "scheduled__2026")],
                w("etl_daily", Airflow),
            ),
            (
                "4f6e1c2a-9b7d-11ef-a1b2",
                &[("prow.k8s.io/job", "pull-unit-test")],
                w("pull-unit-test", Prow),
            ),
            (
                "ghpr-unit-test-1413-abcd-x7k2p-q8w2z",
                &[("jenkins/label", "ghpr-unit-test_1413-abcd")],
                w("ghpr-unit-test", Jenkins),
            ),
            ("maven-agent-9h2tz", &[("jenkins/label", "maven")], w("maven", Jenkins)),
            // Conventions come after the name's shape.
            ("debug-shell", &[("app", "toolbox")], w("toolbox", App)),
            (
                "nginx-x7k2p",
                &[("app.kubernetes.io/name", "proxy")],
                w("nginx", ReplicaSetOrDaemonSetOrJob),
            ),
            // Nothing names an owner: no workload, not the pod name.
            ("ci-run-8f14e45f", &[("team", "infra")], None),
            ("nginx", &[], None),
            // Empty values are no labels.
            ("worker", &[("job-name", " "), ("app", "")], None),
        ];
        for (pod, labels, want) in cases {
            let got = labelled(pod, labels);
            let got = got.as_ref().map(|(name, kind)| (name.as_str(), *kind));
            assert_eq!(&got, want, "pod {pod:?} labels {labels:?}");
        }
    }

    #[test]
    fn a_static_pod_is_its_own_workload() {
        let static_pod = map(&[("kubernetes.io/config.source", "file")]);
        let labels = map(&[("component", "kube-apiserver"), ("tier", "control-plane")]);
        let w = resolve(
            "kube-apiserver-node-1",
            from_sandbox("kube-apiserver-node-1", &labels, &static_pod),
        );
        assert_eq!(w, Some(Workload { name: "kube-apiserver-node-1".into(), kind: Static }));
        // From the API server: no static pod; the name's shape (an ordinal) is all there is.
        let api = map(&[("kubernetes.io/config.source", "api")]);
        let w =
            resolve("kube-apiserver-node-1", from_sandbox("kube-apiserver-node-1", &labels, &api));
        assert_eq!(w.map(|w| w.kind), Some(StatefulSet));
    }

    #[test]
    fn without_labels_the_name_decides_and_a_bare_name_is_no_workload() {
        assert_eq!(resolve("web-7d4b9c6f8-x2k9p", None).map(|w| w.name), Some("web".into()));
        assert_eq!(resolve("api-0", None).map(|w| w.kind), Some(StatefulSet));
        assert_eq!(resolve("nginx", None), None);
        assert_eq!(resolve("tekton-run-abc-pod", None), None);
        assert_eq!(fold_run("nightly-28340160"), ("nightly", true));
        assert_eq!(fold_run("build-x7k2p"), ("build", false));
        assert_eq!(fold_run("db-migrate"), ("db-migrate", false));
        assert_eq!(fold_run("-28340160"), ("-28340160", false));
        assert_eq!(jenkins_job("_1-x"), "_1-x");
        assert_eq!(jenkins_job("job_12-"), "job_12-");
    }

    fn check(pod: &str) -> Result<(), TestCaseError> {
        let w = derive(pod);
        prop_assert!(pod.starts_with(&w.name), "{:?} is not a prefix of {:?}", w.name, pod);
        if w.kind == Pod {
            prop_assert_eq!(w.name.as_str(), pod);
        } else {
            prop_assert!(!w.name.is_empty());
            prop_assert_eq!(pod.as_bytes().get(w.name.len()), Some(&b'-'));
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn never_panics_and_returns_prefix(pod in ".*") {
            check(&pod)?;
        }

        #[test]
        fn label_reader_never_panics(
            pod in ".{0,40}",
            pairs in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "pod-template-hash", "controller-revision-hash",
                        "statefulset.kubernetes.io/pod-name", "apps.kubernetes.io/pod-index",
                        "job-name", "batch.kubernetes.io/job-name", "tekton.dev/taskRun",
                        "workflows.argoproj.io/workflow", "jenkins/label", "dag_id", "app",
                        "kubernetes.io/config.source",
                    ]),
                    ".{0,20}",
                ),
                0..6,
            ),
        ) {
            let labels: HashMap<String, String> =
                pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
            let w = resolve(&pod, from_sandbox(&pod, &labels, &labels));
            if let Some(w) = w {
                prop_assert!(w.kind != Pod);
            }
        }

        #[test]
        fn dns_like_names(pod in "[a-z0-9.-]{0,80}") {
            check(&pod)?;
        }

        #[test]
        fn generated_shapes_round_trip(
            base in "[a-z]([a-z0-9-]{0,20}[a-z0-9])?",
            hash in "[bcdfghjklmnpqrstvwxz2456789]{1,10}",
            suffix in "[bcdfghjklmnpqrstvwxz2456789]{5}",
            minutes in "[1-9][0-9]{7,9}",
            // Five-digit ordinals can be spelled from the suffix alphabet (`24567`),
            // so stay below them to keep the expectation unambiguous.
            ordinal in 0u32..10_000,
        ) {
            let deployment = derive(&format!("{base}-{hash}-{suffix}"));
            // An all-digit hash of CronJob length is claimed by the CronJob rule first.
            let expected = if is_cronjob_minutes(&hash) { CronJob } else { Deployment };
            prop_assert_eq!(deployment, Workload { name: base.clone(), kind: expected });
            prop_assert_eq!(
                derive(&format!("{base}-{minutes}-{suffix}")),
                Workload { name: base.clone(), kind: CronJob }
            );
            prop_assert_eq!(
                derive(&format!("{base}-{ordinal}")),
                Workload { name: base, kind: StatefulSet }
            );
        }
    }
}
