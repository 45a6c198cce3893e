//! What kubelet and the runtimes write on a container, read back: CRI labels and annotations
//! (kubelet `pkg/kubelet/kuberuntime/labels.go`), containerd's `io.kubernetes.cri.*` bundle
//! annotations and CRI-O's copies of kubelet's, and the preStop handler JSON.
//!
//! Everything here is pure: maps of strings in, [`Facts`] out. Malformed values (a grace
//! period that is not a number, preStop JSON that does not parse) are reported as
//! [`AnnotationError`]s next to the facts that did parse, never a panic.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::workload::Workload;

/// kubelet's CRI labels (labels.go).
pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const POD_UID: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// kubelet's CRI annotations, written at creation (they hold the spec, not an override).
pub const TERMINATION_GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
pub const DELETION_GRACE_PERIOD: &str = "io.kubernetes.pod.deletionGracePeriod";
pub const PRESTOP_HANDLER: &str = "io.kubernetes.container.preStopHandler";
/// Which list of the pod spec the container is in: `init` (initContainers, native sidecars
/// included), `container` or `ephemeral` (labels.go `newContainerAnnotations`).
pub const KUBELET_CONTAINER_TYPE: &str = "io.kubernetes.container.type";
/// containerd's CRI plugin, in the OCI bundle's config.json
/// (`internal/cri/annotations`; sandbox-uid since 1.6.11 / 1.7.0).
pub const CRI_SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
pub const CRI_SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
pub const CRI_SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
pub const CRI_CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
pub const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
pub const CRI_IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
/// CRI-O's own annotations in config.json.
pub const CRIO_CONTAINER_TYPE: &str = "io.kubernetes.cri-o.ContainerType";
pub const CRIO_IMAGE_NAME: &str = "io.kubernetes.cri-o.ImageName";
/// CRI-O's (`pkg/annotations`): a container's sandbox, and on the sandbox's own config.json the
/// pod's labels and annotations as JSON objects (the sandbox config kubelet gave it).
pub const CRIO_SANDBOX_ID: &str = "io.kubernetes.cri-o.SandboxID";
pub const CRIO_LABELS: &str = "io.kubernetes.cri-o.Labels";
pub const CRIO_ANNOTATIONS: &str = "io.kubernetes.cri-o.Annotations";
/// The image's STOPSIGNAL, copied by CRI-O.
pub const OCI_STOP_SIGNAL: &str = "org.opencontainers.image.stopSignal";

/// A container's preStop hook as kubelet serialised it (`json.Marshal(Lifecycle.PreStop)`,
/// a `LifecycleHandler`: exactly one of exec, httpGet, sleep, or the deprecated tcpSocket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PreStopHandler {
    Exec { command: Vec<String> },
    HttpGet { scheme: String, host: Option<String>, port: String, path: String },
    Sleep { seconds: i64 },
    TcpSocket { port: String },
}

impl PreStopHandler {
    /// The hook's kind in kubelet's words.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Exec { .. } => "exec",
            Self::HttpGet { .. } => "http_get",
            Self::Sleep { .. } => "sleep",
            Self::TcpSocket { .. } => "tcp_socket",
        }
    }
}

/// Facts about one container from one source; `None` is "this source does not say".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub pod_uid: Option<String>,
    pub container: Option<String>,
    pub image: Option<String>,
    /// "container", "sandbox" (or "init"/"ephemeral" where the runtime says so).
    pub container_type: Option<String>,
    pub termination_grace_period_seconds: Option<i64>,
    pub deletion_grace_period_seconds: Option<i64>,
    pub prestop: Option<PreStopHandler>,
    pub stop_signal: Option<String>,
    /// kubelet's `io.kubernetes.container.type`: init, container or ephemeral.
    pub spec_list: Option<String>,
    /// The owner the pod's sandbox labels name ([`super::workload::from_sandbox`]); a container's
    /// own labels never carry the pod's (labels.go `newContainerLabels`).
    pub workload: Option<Workload>,
}

impl Facts {
    /// Fills what `self` does not know from `other` (earlier sources win).
    pub fn merge(&mut self, other: Facts) {
        fn fill<T>(a: &mut Option<T>, b: Option<T>) {
            if a.is_none() {
                *a = b;
            }
        }
        fill(&mut self.namespace, other.namespace);
        fill(&mut self.pod, other.pod);
        fill(&mut self.pod_uid, other.pod_uid);
        fill(&mut self.container, other.container);
        fill(&mut self.image, other.image);
        fill(&mut self.container_type, other.container_type);
        fill(&mut self.termination_grace_period_seconds, other.termination_grace_period_seconds);
        fill(&mut self.deletion_grace_period_seconds, other.deletion_grace_period_seconds);
        fill(&mut self.prestop, other.prestop);
        fill(&mut self.stop_signal, other.stop_signal);
        fill(&mut self.spec_list, other.spec_list);
        fill(&mut self.workload, other.workload);
    }

    /// Whether the names an SRE needs are all known.
    pub fn is_named(&self) -> bool {
        self.namespace.is_some() && self.pod.is_some() && self.container.is_some()
    }

    /// kubelet's grace for this container: the deletion grace period when one was set at
    /// creation, else the pod's terminationGracePeriodSeconds (kubelet `killContainer`).
    pub fn grace_period_seconds(&self) -> Option<i64> {
        self.deletion_grace_period_seconds.or(self.termination_grace_period_seconds)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    #[error("{key}: {value:?} is not a whole number of seconds")]
    BadGracePeriod { key: &'static str, value: String },
    #[error("{PRESTOP_HANDLER}: {0}")]
    BadPreStop(String),
}

/// Reads kubelet's labels and annotations (as the CRI returns them, or as CRI-O copies them
/// into config.json, where both live in one map) plus the runtimes' own annotations.
pub fn read(
    labels: &HashMap<String, String>,
    annotations: &HashMap<String, String>,
) -> (Facts, Vec<AnnotationError>) {
    let get = |k: &str| {
        labels
            .get(k)
            .or_else(|| annotations.get(k))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let mut errors = Vec::new();
    let mut grace = |key: &'static str| {
        let v = get(key)?;
        match v.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => {
                errors.push(AnnotationError::BadGracePeriod { key, value: v });
                None
            }
        }
    };
    let termination_grace_period_seconds = grace(TERMINATION_GRACE_PERIOD);
    let deletion_grace_period_seconds = grace(DELETION_GRACE_PERIOD);
    let prestop = get(PRESTOP_HANDLER).and_then(|json| match parse_prestop(&json) {
        Ok(h) => h,
        Err(e) => {
            errors.push(e);
            None
        }
    });
    let facts = Facts {
        namespace: get(POD_NAMESPACE).or_else(|| get(CRI_SANDBOX_NAMESPACE)),
        pod: get(POD_NAME).or_else(|| get(CRI_SANDBOX_NAME)),
        pod_uid: get(POD_UID).or_else(|| get(CRI_SANDBOX_UID)),
        container: get(CONTAINER_NAME).or_else(|| get(CRI_CONTAINER_NAME)),
        image: get(CRI_IMAGE_NAME).or_else(|| get(CRIO_IMAGE_NAME)),
        container_type: get(CRI_CONTAINER_TYPE).or_else(|| get(CRIO_CONTAINER_TYPE)),
        termination_grace_period_seconds,
        deletion_grace_period_seconds,
        prestop,
        stop_signal: get(OCI_STOP_SIGNAL),
        spec_list: get(KUBELET_CONTAINER_TYPE),
        workload: None,
    };
    (facts, errors)
}

/// kubelet's `LifecycleHandler` JSON. `null` / `{}` mean no hook.
pub fn parse_prestop(json: &str) -> Result<Option<PreStopHandler>, AnnotationError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Handler {
        exec: Option<Exec>,
        http_get: Option<HttpGet>,
        sleep: Option<Sleep>,
        tcp_socket: Option<TcpSocket>,
    }
    #[derive(Deserialize)]
    struct Exec {
        #[serde(default)]
        command: Vec<String>,
    }
    #[derive(Deserialize)]
    struct HttpGet {
        #[serde(default)]
        path: String,
        port: IntOrString,
        host: Option<String>,
        scheme: Option<String>,
    }
    #[derive(Deserialize)]
    struct Sleep {
        seconds: i64,
    }
    #[derive(Deserialize)]
    struct TcpSocket {
        port: IntOrString,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IntOrString {
        Int(i64),
        Str(String),
    }
    impl IntOrString {
        fn into_string(self) -> String {
            match self {
                Self::Int(n) => n.to_string(),
                Self::Str(s) => s,
            }
        }
    }

    let bad = |e: String| AnnotationError::BadPreStop(e);
    let handler: Option<Handler> = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    let Some(h) = handler else { return Ok(None) };
    let mut found = Vec::with_capacity(1);
    if let Some(e) = h.exec {
        found.push(PreStopHandler::Exec { command: e.command });
    }
    if let Some(g) = h.http_get {
        found.push(PreStopHandler::HttpGet {
            scheme: g.scheme.unwrap_or_else(|| "HTTP".into()),
            host: g.host.filter(|h| !h.is_empty()),
            port: g.port.into_string(),
            path: g.path,
        });
    }
    if let Some(s) = h.sleep {
        if s.seconds < 0 {
            return Err(bad(format!("sleep.seconds {} is negative", s.seconds)));
        }
        found.push(PreStopHandler::Sleep { seconds: s.seconds });
    }
    if let Some(t) = h.tcp_socket {
        found.push(PreStopHandler::TcpSocket { port: t.port.into_string() });
    }
    match found.len() {
        0 | 1 => Ok(found.pop()),
        n => Err(bad(format!("{n} handlers set; the API allows exactly one"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn reads_kubelet_labels_and_annotations_from_the_cri() {
        let labels = map(&[
            (POD_NAME, "web-7d4b9c6f8-x2k9p"),
            (POD_NAMESPACE, "shop"),
            (POD_UID, "0f2c9a4e-1b7d-4c3e-9a51-2d8e7f6a5b4c"),
            (CONTAINER_NAME, "nginx"),
        ]);
        let annotations = map(&[
            (TERMINATION_GRACE_PERIOD, "45"),
            (PRESTOP_HANDLER, r#"{"exec":{"command":["sh","-c","sleep 5"]}}"#),
            (KUBELET_CONTAINER_TYPE, "init"),
        ]);
        let (f, errors) = read(&labels, &annotations);
        assert!(errors.is_empty());
        assert_eq!(f.spec_list.as_deref(), Some("init"));
        assert_eq!(f.pod.as_deref(), Some("web-7d4b9c6f8-x2k9p"));
        assert_eq!(f.namespace.as_deref(), Some("shop"));
        assert_eq!(f.container.as_deref(), Some("nginx"));
        assert_eq!(f.termination_grace_period_seconds, Some(45));
        assert_eq!(f.grace_period_seconds(), Some(45));
        assert_eq!(
            f.prestop,
            Some(PreStopHandler::Exec {
                command: vec!["sh".into(), "-c".into(), "sleep 5".into()]
            })
        );
        assert!(f.is_named());
    }

    #[test]
    fn deletion_grace_period_wins_over_the_spec() {
        let a = map(&[(TERMINATION_GRACE_PERIOD, "30"), (DELETION_GRACE_PERIOD, "0")]);
        let (f, _) = read(&HashMap::new(), &a);
        assert_eq!(f.grace_period_seconds(), Some(0));
    }

    #[test]
    fn reads_containerd_bundle_annotations() {
        let a = map(&[
            (CRI_SANDBOX_NAME, "db-0"),
            (CRI_SANDBOX_NAMESPACE, "data"),
            (CRI_SANDBOX_UID, "5c1f0e9a8b7d6c5e4f3a2b1c0d9e8f7a"),
            (CRI_CONTAINER_NAME, "postgres"),
            (CRI_CONTAINER_TYPE, "container"),
            (CRI_IMAGE_NAME, "docker.io/library/postgres:16"),
        ]);
        let (f, errors) = read(&HashMap::new(), &a);
        assert!(errors.is_empty());
        assert_eq!(
            (f.namespace.as_deref(), f.pod.as_deref(), f.container.as_deref()),
            (Some("data"), Some("db-0"), Some("postgres"))
        );
        assert_eq!(f.image.as_deref(), Some("docker.io/library/postgres:16"));
        assert_eq!(f.container_type.as_deref(), Some("container"));
        assert_eq!(f.grace_period_seconds(), None);
    }

    #[test]
    fn malformed_values_are_errors_next_to_the_facts_that_parsed() {
        let a = map(&[
            (POD_NAME, "web-0"),
            (TERMINATION_GRACE_PERIOD, "thirty"),
            (DELETION_GRACE_PERIOD, "-5"),
            (PRESTOP_HANDLER, "{not json"),
        ]);
        let (f, errors) = read(&HashMap::new(), &a);
        assert_eq!(f.pod.as_deref(), Some("web-0"));
        assert_eq!(f.grace_period_seconds(), None);
        assert_eq!(errors.len(), 3, "{errors:?}");
    }

    #[test]
    fn prestop_handlers_of_every_kind() {
        let cases = [
            ("null", None),
            ("{}", None),
            (
                r#"{"httpGet":{"path":"/drain","port":8080,"scheme":"HTTP"}}"#,
                Some(PreStopHandler::HttpGet {
                    scheme: "HTTP".into(),
                    host: None,
                    port: "8080".into(),
                    path: "/drain".into(),
                }),
            ),
            (
                r#"{"httpGet":{"port":"admin","host":"10.0.0.1"}}"#,
                Some(PreStopHandler::HttpGet {
                    scheme: "HTTP".into(),
                    host: Some("10.0.0.1".into()),
                    port: "admin".into(),
                    path: String::new(),
                }),
            ),
            (r#"{"sleep":{"seconds":20}}"#, Some(PreStopHandler::Sleep { seconds: 20 })),
            (
                r#"{"tcpSocket":{"port":9000}}"#,
                Some(PreStopHandler::TcpSocket { port: "9000".into() }),
            ),
            (r#"{"exec":{}}"#, Some(PreStopHandler::Exec { command: vec![] })),
        ];
        for (json, want) in cases {
            assert_eq!(parse_prestop(json), Ok(want), "{json}");
        }
        for bad in [
            r#"{"sleep":{"seconds":-1}}"#,
            r#"{"exec":{"command":["x"]},"sleep":{"seconds":1}}"#,
            r#"{"httpGet":{"path":"/"}}"#,
            "[]",
            "",
        ] {
            assert!(parse_prestop(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn earlier_sources_win_a_merge() {
        let mut a = Facts { pod: Some("from-cri".into()), ..Default::default() };
        a.merge(Facts {
            pod: Some("from-state".into()),
            container: Some("app".into()),
            ..Default::default()
        });
        assert_eq!((a.pod.as_deref(), a.container.as_deref()), (Some("from-cri"), Some("app")));
    }

    proptest! {
        #[test]
        fn prestop_reader_never_panics(s in ".*") {
            let _ = parse_prestop(&s);
        }

        #[test]
        fn prestop_reader_never_panics_on_jsonish_input(
            s in r#"\{"(exec|httpGet|sleep|tcpSocket)":\{"(command|port|path|seconds|host)":(-?[0-9]{1,20}|"[a-z/]{0,8}"|\[("[a-z ]{0,5}",?){0,3}\]|null|\{\})\}\}"#
        ) {
            let _ = parse_prestop(&s);
        }

        #[test]
        fn annotation_reader_never_panics(
            pairs in proptest::collection::vec(
                (prop_oneof![
                    Just(TERMINATION_GRACE_PERIOD.to_string()),
                    Just(DELETION_GRACE_PERIOD.to_string()),
                    Just(PRESTOP_HANDLER.to_string()),
                    Just(POD_NAME.to_string()),
                    ".*",
                ], ".*"),
                0..8,
            )
        ) {
            let m: HashMap<String, String> = pairs.into_iter().collect();
            let _ = read(&m, &m);
        }
    }
}
