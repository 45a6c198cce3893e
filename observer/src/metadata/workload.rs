//! Derives the owning workload's name from a pod name, the way Kubernetes
//! controllers name the pods they create.
//!
//! Sources of the naming conventions:
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
//! casualty: `kube-apiserver-node-1` ends in what looks like an ordinal and is
//! reported as StatefulSet `kube-apiserver-node`. The rule order is kept
//! anyway: StatefulSet pods are far more common than static pods on nodes
//! whose name ends in `-<number>`, and the name alone cannot tell them apart.

use serde::Serialize;

/// How the workload name was recognized in the pod name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    /// `<deployment>-<pod-template-hash>-<random>`.
    Deployment,
    /// `<owner>-<random>`: a ReplicaSet, DaemonSet or Job (or anything else
    /// using `generateName`); the shapes are indistinguishable.
    #[serde(rename = "generated")]
    ReplicaSetOrDaemonSetOrJob,
    /// `<cronjob>-<minutes>-<random>`.
    CronJob,
    /// `<set>-<ordinal>`.
    StatefulSet,
    /// No recognized shape: the pod name is the workload name.
    Pod,
}

/// A workload name derived from a pod name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// The workload's name; always a prefix of the pod name.
    pub name: String,
    /// Which naming shape matched.
    pub kind: WorkloadKind,
}

/// `k8s.io/apimachinery/pkg/util/rand` alphanums.
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Length of the random suffix `generateName` appends.
const RANDOM_SUFFIX_LEN: usize = 5;
/// A uint32 printed in decimal has at most 10 digits, each encoded to one character.
const MAX_TEMPLATE_HASH_LEN: usize = 10;
/// Minutes since the epoch have 8 digits until the year 2160; 10 leaves
/// headroom without matching arbitrary long numbers.
const CRONJOB_MINUTES_LEN: std::ops::RangeInclusive<usize> = 8..=10;

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
        Ok(())
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
