//! Parses a cgroup v2 path into the Kubernetes identity it encodes.
//!
//! The input is a path relative to the cgroup hierarchy root, as found on the
//! `0::` line of `/proc/<pid>/cgroup` or in the `cgroup_mkdir` tracepoint. The
//! kubelet names pod-level cgroups and the container runtime names the
//! container cgroup below it; both layouts depend on the cgroup driver:
//!
//! * systemd driver:
//!   `/kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid>.slice/<scope>`,
//!   guaranteed pods directly as `/kubepods.slice/kubepods-pod<uid>.slice/<scope>`.
//!   The pod uid has its `-` escaped to `_` because systemd reads `-` in a
//!   slice name as a hierarchy separator (kubelet
//!   `pkg/kubelet/cm/cgroup_manager_linux.go`, `ConvertCgroupNameToSystemd` and
//!   `escapeSystemdCgroupName`). The scope is `cri-containerd-<id>.scope`
//!   (containerd's CRI plugin), `crio-<id>.scope` or `crio-conmon-<id>.scope`
//!   (CRI-O), or `docker-<id>.scope` (cri-dockerd), created through runc/crun's
//!   systemd cgroup manager as `<prefix>-<id>.scope`.
//! * cgroupfs driver: `/kubepods/<qos>/pod<uid>/<id>`, guaranteed pods as
//!   `/kubepods/pod<uid>/<id>` (kubelet `pkg/kubelet/cm/pod_container_manager_linux.go`
//!   and `qos_container_manager_linux.go`). containerd and dockershim use the
//!   bare container id, CRI-O uses `crio-<id>`.
//!
//! The QoS words are `burstable` and `besteffort`; guaranteed pods have no QoS
//! level. The kubepods root may sit below a `--cgroup-root` prefix, and with
//! the systemd driver that prefix is folded into every slice name (kind runs
//! its kubelet with `--cgroup-root=/kubelet`, giving `kubelet-kubepods.slice`).
//! crun adds a `container` child below the container cgroup; anything below
//! the container cgroup is attributed to that container.

use serde::Serialize;

/// Pod QoS class, as encoded in the kubelet's cgroup layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QosClass {
    /// No QoS level in the path: the pod cgroup sits directly under kubepods.
    Guaranteed,
    /// Pod cgroup under the `burstable` QoS cgroup.
    Burstable,
    /// Pod cgroup under the `besteffort` QoS cgroup.
    BestEffort,
}

impl QosClass {
    /// Only the two levels the kubelet actually creates; it never creates a
    /// `guaranteed` cgroup, so that word is rejected rather than guessed at.
    fn from_word(word: &str) -> Option<Self> {
        match word {
            "burstable" => Some(Self::Burstable),
            "besteffort" => Some(Self::BestEffort),
            _ => None,
        }
    }
}

/// Container runtime inferred from the container cgroup's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// `cri-containerd-<id>.scope`.
    Containerd,
    /// `crio-<id>.scope` or `crio-<id>`.
    Crio,
    /// `docker-<id>.scope`.
    Docker,
    /// A bare id: containerd and docker both use it with the cgroupfs driver,
    /// so the path alone cannot tell them apart.
    Unknown,
}

/// What a cgroup path under the kubepods root designates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupKind {
    /// A container's own cgroup (or a child of it, e.g. crun's `container` sub-cgroup).
    Container {
        /// Pod uid, with dashes (as in the API object), never with systemd's `_`.
        pod_uid: String,
        /// QoS class of the pod.
        qos: QosClass,
        /// 64 lowercase hex digits.
        container_id: String,
        /// Runtime inferred from the cgroup name.
        runtime: Runtime,
    },
    /// The pod-level cgroup (`pod<uid>` / `kubepods-...-pod<uid>.slice`).
    Pod {
        /// Pod uid, with dashes.
        pod_uid: String,
        /// QoS class of the pod.
        qos: QosClass,
    },
    /// Under the kubepods root but neither (e.g. `/kubepods/burstable`), or CRI-O's conmon scope.
    Other,
}

/// Why a cgroup path could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CgroupPathError {
    /// No kubepods root component anywhere in the path: not a pod's cgroup.
    #[error("cgroup path {0:?} is not under a kubepods hierarchy")]
    NotKubepods(String),
    /// Under a kubepods root, but not in a layout the kubelet and runtimes produce.
    #[error("malformed kubepods cgroup path {path:?}: {reason}")]
    Malformed {
        /// The path as given.
        path: String,
        /// What did not match.
        reason: &'static str,
    },
}

/// Length of a container id as runtimes generate it (a sha256 in hex).
const CONTAINER_ID_LEN: usize = 64;
/// Upper bound on a pod uid; real ones are 36 (UUID) or 32 (static pod hash).
const MAX_POD_UID_LEN: usize = 64;

/// True for a full container id: exactly 64 lowercase hex digits.
pub fn container_id_is_valid(id: &str) -> bool {
    id.len() == CONTAINER_ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// True for a pod uid in its API form: 1..=64 of `[0-9a-f-]`.
///
/// Deliberately looser than RFC 4122 because static pods use the config
/// hash (32 hex digits, no dashes) as their uid.
pub fn pod_uid_is_valid(uid: &str) -> bool {
    (1..=MAX_POD_UID_LEN).contains(&uid.len())
        && uid.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'-'))
}

/// Parses a cgroup path (relative to the cgroup v2 root) into a container identity.
///
/// Empty components are ignored, so leading, trailing and doubled slashes are
/// tolerated. The first kubepods root component found anchors the parse;
/// everything before it is taken as a `--cgroup-root` prefix.
pub fn parse(path: &str) -> Result<CgroupKind, CgroupPathError> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let Some((index, root)) =
        components.iter().enumerate().find_map(|(i, c)| kubepods_root(c).map(|root| (i, root)))
    else {
        return Err(CgroupPathError::NotKubepods(path.to_owned()));
    };
    let below = components.get(index + 1..).unwrap_or_default();
    let parsed = match root {
        Root::Systemd { stem } => parse_systemd(stem, below),
        Root::Cgroupfs => parse_cgroupfs(below),
    };
    parsed.map_err(|reason| CgroupPathError::Malformed { path: path.to_owned(), reason })
}

/// The kubepods root component and, for systemd, the slice stem every
/// descendant slice name must start with.
enum Root<'a> {
    Systemd { stem: &'a str },
    Cgroupfs,
}

#[derive(Clone, Copy)]
enum Driver {
    Systemd,
    Cgroupfs,
}

fn kubepods_root(component: &str) -> Option<Root<'_>> {
    if component == "kubepods" {
        return Some(Root::Cgroupfs);
    }
    let stem = component.strip_suffix(".slice")?;
    // A --cgroup-root under systemd is folded into the slice name
    // (`/kubelet` -> `kubelet-kubepods.slice`), hence the suffix match.
    (stem == "kubepods" || stem.ends_with("-kubepods")).then_some(Root::Systemd { stem })
}

/// Returns `<rest>` for a component `<parent_stem>-<rest>.slice`: systemd slice
/// names repeat their parent's name as a prefix.
fn child_slice<'a>(parent_stem: &str, component: &'a str) -> Option<&'a str> {
    component.strip_suffix(".slice")?.strip_prefix(parent_stem)?.strip_prefix('-')
}

fn parse_systemd(stem: &str, below: &[&str]) -> Result<CgroupKind, &'static str> {
    let Some((first, below)) = below.split_first() else {
        return Ok(CgroupKind::Other);
    };
    let level =
        child_slice(stem, first).ok_or("expected a QoS or pod slice under the kubepods slice")?;
    if let Some(qos) = QosClass::from_word(level) {
        let Some((pod, below)) = below.split_first() else {
            return Ok(CgroupKind::Other);
        };
        let escaped_uid = child_slice(stem, pod)
            .and_then(|rest| rest.strip_prefix(level))
            .and_then(|rest| rest.strip_prefix("-pod"))
            .ok_or("expected a pod slice of the same QoS class under the QoS slice")?;
        let pod_uid = unescape_systemd_uid(escaped_uid)?;
        return container_or_pod(pod_uid, qos, below, Driver::Systemd);
    }
    let escaped_uid =
        level.strip_prefix("pod").ok_or("expected a QoS or pod slice under the kubepods slice")?;
    let pod_uid = unescape_systemd_uid(escaped_uid)?;
    container_or_pod(pod_uid, QosClass::Guaranteed, below, Driver::Systemd)
}

/// Undoes the kubelet's `-` -> `_` escaping. A literal `-` here would have
/// been read by systemd as another slice level, so it is rejected.
fn unescape_systemd_uid(escaped: &str) -> Result<String, &'static str> {
    let valid = (1..=MAX_POD_UID_LEN).contains(&escaped.len())
        && escaped.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'_'));
    if valid {
        Ok(escaped.replace('_', "-"))
    } else {
        Err("pod uid in slice name is not 1..=64 of [0-9a-f_]")
    }
}

fn parse_cgroupfs(below: &[&str]) -> Result<CgroupKind, &'static str> {
    let Some((first, below)) = below.split_first() else {
        return Ok(CgroupKind::Other);
    };
    let (qos, pod, below) = match QosClass::from_word(first) {
        Some(qos) => match below.split_first() {
            Some((pod, below)) => (qos, *pod, below),
            None => return Ok(CgroupKind::Other),
        },
        None => (QosClass::Guaranteed, *first, below),
    };
    let pod_uid =
        pod.strip_prefix("pod").ok_or("expected a QoS class or pod<uid> cgroup under kubepods")?;
    if !pod_uid_is_valid(pod_uid) {
        return Err("pod uid is not 1..=64 of [0-9a-f-]");
    }
    container_or_pod(pod_uid.to_owned(), qos, below, Driver::Cgroupfs)
}

fn container_or_pod(
    pod_uid: String,
    qos: QosClass,
    below: &[&str],
    driver: Driver,
) -> Result<CgroupKind, &'static str> {
    // Only the first component below the pod names the container; deeper
    // ones (crun's `container`, a nested workload's own cgroups) belong to it.
    let Some(first) = below.first() else {
        return Ok(CgroupKind::Pod { pod_uid, qos });
    };
    Ok(match parse_container_component(first, driver)? {
        ContainerCgroup::Container { id, runtime } => {
            CgroupKind::Container { pod_uid, qos, container_id: id.to_owned(), runtime }
        }
        ContainerCgroup::Conmon => CgroupKind::Other,
    })
}

enum ContainerCgroup<'a> {
    Container {
        id: &'a str,
        runtime: Runtime,
    },
    /// CRI-O's monitor process: not a container of the pod spec.
    Conmon,
}

fn parse_container_component(
    component: &str,
    driver: Driver,
) -> Result<ContainerCgroup<'_>, &'static str> {
    let name = match driver {
        Driver::Systemd => component
            .strip_suffix(".scope")
            .ok_or("expected a container scope under the pod slice")?,
        Driver::Cgroupfs => component,
    };
    // `crio-conmon-` must be tried before `crio-`, which it also starts with.
    let (id, cgroup) = if let Some(id) = name.strip_prefix("cri-containerd-") {
        (id, Some(Runtime::Containerd))
    } else if let Some(id) = name.strip_prefix("crio-conmon-") {
        (id, None)
    } else if let Some(id) = name.strip_prefix("crio-") {
        (id, Some(Runtime::Crio))
    } else if let Some(id) = name.strip_prefix("docker-") {
        (id, Some(Runtime::Docker))
    } else {
        (name, Some(Runtime::Unknown))
    };
    if !container_id_is_valid(id) {
        return Err("container id is not 64 lowercase hex digits");
    }
    Ok(match cgroup {
        Some(runtime) => ContainerCgroup::Container { id, runtime },
        None => ContainerCgroup::Conmon,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = "3f2a9c1b7d8e4f60a1b2c3d4e5f60718293a4b5c6d7e8f9012345678abcdef01";
    const UID: &str = "0f2c6a1e-9b4d-4c3e-8a7f-1d2e3f4a5b6c";
    const UID_ESC: &str = "0f2c6a1e_9b4d_4c3e_8a7f_1d2e3f4a5b6c";
    const STATIC_UID: &str = "5c1f0e9a8b7d6c5e4f3a2b1c0d9e8f7a";

    fn container(qos: QosClass, runtime: Runtime) -> Result<CgroupKind, CgroupPathError> {
        container_uid(UID, qos, runtime)
    }

    fn container_uid(
        uid: &str,
        qos: QosClass,
        runtime: Runtime,
    ) -> Result<CgroupKind, CgroupPathError> {
        Ok(CgroupKind::Container {
            pod_uid: uid.to_owned(),
            qos,
            container_id: ID.to_owned(),
            runtime,
        })
    }

    fn pod(qos: QosClass) -> Result<CgroupKind, CgroupPathError> {
        Ok(CgroupKind::Pod { pod_uid: UID.to_owned(), qos })
    }

    fn sub(template: &str) -> String {
        template
            .replace("{id}", ID)
            .replace("{uid_}", UID_ESC)
            .replace("{uid}", UID)
            .replace("{static}", STATIC_UID)
    }

    #[test]
    fn valid_paths() {
        use QosClass::*;
        use Runtime::*;
        let cases: Vec<(&str, Result<CgroupKind, CgroupPathError>)> = vec![
            // systemd driver
            (
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{id}.scope",
                container(Burstable, Containerd),
            ),
            (
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/cri-containerd-{id}.scope",
                container(BestEffort, Containerd),
            ),
            (
                "/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{id}.scope",
                container(Guaranteed, Containerd),
            ),
            (
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/crio-{id}.scope",
                container(Burstable, Crio),
            ),
            (
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/crio-{id}.scope/container",
                container(Burstable, Crio),
            ),
            (
                "/kubepods.slice/kubepods-pod{uid_}.slice/crio-{id}.scope/container/",
                container(Guaranteed, Crio),
            ),
            (
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-conmon-{id}.scope",
                Ok(CgroupKind::Other),
            ),
            (
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/docker-{id}.scope",
                container(BestEffort, Docker),
            ),
            (
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/{id}.scope",
                container(Burstable, Unknown),
            ),
            (
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice",
                pod(Burstable),
            ),
            (
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/",
                pod(Burstable),
            ),
            ("/kubepods.slice/kubepods-pod{uid_}.slice", pod(Guaranteed)),
            ("/kubepods.slice", Ok(CgroupKind::Other)),
            ("/kubepods.slice/", Ok(CgroupKind::Other)),
            ("/kubepods.slice/kubepods-burstable.slice", Ok(CgroupKind::Other)),
            ("/kubepods.slice/kubepods-besteffort.slice/", Ok(CgroupKind::Other)),
            // kind / kubelet --cgroup-root=/kubelet
            (
                "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{uid_}.slice/cri-containerd-{id}.scope",
                container(BestEffort, Containerd),
            ),
            (
                "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{uid_}.slice/cri-containerd-{id}.scope",
                container(Guaranteed, Containerd),
            ),
            (
                "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod{uid_}.slice",
                pod(Burstable),
            ),
            (
                "/system.slice/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{id}.scope",
                container(Burstable, Containerd),
            ),
            // cgroupfs driver
            ("/kubepods/burstable/pod{uid}/{id}", container(Burstable, Unknown)),
            ("/kubepods/besteffort/pod{uid}/{id}", container(BestEffort, Unknown)),
            ("/kubepods/pod{uid}/{id}", container(Guaranteed, Unknown)),
            ("/kubepods/burstable/pod{uid}/crio-{id}", container(Burstable, Crio)),
            ("/kubepods/pod{uid}/crio-{id}/container", container(Guaranteed, Crio)),
            ("/kubepods/burstable/pod{uid}/crio-conmon-{id}", Ok(CgroupKind::Other)),
            ("/kubepods/burstable/pod{uid}/{id}/container/deeper", container(Burstable, Unknown)),
            ("/kubepods/burstable/pod{uid}", pod(Burstable)),
            ("/kubepods/pod{uid}/", pod(Guaranteed)),
            ("/kubepods", Ok(CgroupKind::Other)),
            ("/kubepods/burstable", Ok(CgroupKind::Other)),
            ("/kubepods/besteffort/", Ok(CgroupKind::Other)),
            ("/custom/kubepods/besteffort/pod{uid}/{id}", container(BestEffort, Unknown)),
            // tolerated spelling
            ("//kubepods//burstable///pod{uid}//{id}//", container(Burstable, Unknown)),
            ("kubepods/burstable/pod{uid}/{id}", container(Burstable, Unknown)),
            // static pods: the uid is the 32-hex config hash
            (
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{static}.slice/cri-containerd-{id}.scope",
                container_uid(STATIC_UID, Burstable, Containerd),
            ),
            ("/kubepods/burstable/pod{static}/{id}", container_uid(STATIC_UID, Burstable, Unknown)),
        ];
        for (template, expected) in cases {
            let path = sub(template);
            assert_eq!(parse(&path), expected, "path {path}");
        }
    }

    #[test]
    fn not_kubepods() {
        for path in [
            "",
            "/",
            "//",
            "/system.slice/containerd.service",
            "/user.slice/user-1000.slice/session-2.scope",
            "/init.scope",
            "/kubepodsx/burstable",
            "/kubepods.slicex/kubepods-burstable.slice",
            "/kubepods-burstable.slice",
            "/mykubepods.slice/mykubepods-burstable.slice",
            "/docker/3f2a9c1b7d8e4f60a1b2c3d4e5f60718293a4b5c6d7e8f9012345678abcdef01",
            "/kübepods/burstable",
        ] {
            assert_eq!(
                parse(path),
                Err(CgroupPathError::NotKubepods(path.to_owned())),
                "path {path:?}"
            );
        }
    }

    #[test]
    fn malformed_paths() {
        let short_id = &ID[..63];
        let long_id = format!("{ID}0");
        let upper_id = ID.to_uppercase();
        let bad_hex_id = format!("g{}", &ID[1..]);
        let long_uid = "a".repeat(65);
        let cases: Vec<String> = vec![
            // container ids
            sub("/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-.scope"),
            sub("/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{s}.scope").replace("{s}", short_id),
            sub("/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{s}.scope").replace("{s}", &long_id),
            sub("/kubepods.slice/kubepods-pod{uid_}.slice/crio-{s}.scope").replace("{s}", &upper_id),
            sub("/kubepods.slice/kubepods-pod{uid_}.slice/docker-{s}.scope").replace("{s}", &bad_hex_id),
            sub("/kubepods.slice/kubepods-pod{uid_}.slice/crio-conmon-{s}.scope").replace("{s}", short_id),
            sub("/kubepods.slice/kubepods-pod{uid_}.slice/containerd-{id}.scope"),
            sub("/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{id}"),
            sub("/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{id}.slice"),
            sub("/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{id}.scopé"),
            sub("/kubepods/burstable/pod{uid}/{s}").replace("{s}", short_id),
            sub("/kubepods/burstable/pod{uid}/{id}.scope"),
            sub("/kubepods/burstable/pod{uid}/cri-o-{id}"),
            sub("/kubepods/burstable/pod{uid}/{s}").replace("{s}", &"é".repeat(32)),
            // pod uids
            sub("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod.slice"),
            sub("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice"),
            format!("/kubepods.slice/kubepods-pod{}.slice", UID_ESC.to_uppercase()),
            format!("/kubepods.slice/kubepods-pod{long_uid}.slice"),
            "/kubepods.slice/kubepods-podxyz.slice".to_owned(),
            sub("/kubepods/burstable/pod"),
            sub("/kubepods/burstable/pod{uid_}/{id}"),
            format!("/kubepods/pod{long_uid}"),
            "/kubepods/burstable/podé".to_owned(),
            sub("/kubepods/burstable/{uid}/{id}"),
            // structure
            sub("/kubepods.slice/kubepods-burstable.slice/kubepods-besteffort-pod{uid_}.slice"),
            sub("/kubepods.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{id}.scope"),
            sub("/kubepods.slice/kubepods-guaranteed.slice"),
            sub("/kubepods.slice/burstable.slice"),
            sub("/kubepods.slice/kubepods-bürstable.slice"),
            sub("/kubepods.slice/kubepods-burstable.slice/pod{uid_}.slice"),
            sub("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}"),
            sub("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/extra.slice"),
            sub("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/x.scope"),
            sub("/kubelet.slice/kubelet-kubepods.slice/kubepods-burstable.slice"),
            sub("/kubepods/guaranteed/pod{uid}/{id}"),
            sub("/kubepods/burstable/besteffort/pod{uid}"),
            sub("/kubepods/notapod"),
        ];
        for path in cases {
            match parse(&path) {
                Err(CgroupPathError::Malformed { path: p, reason }) => {
                    assert_eq!(p, path);
                    assert!(!reason.is_empty());
                }
                other => panic!("path {path:?}: expected Malformed, got {other:?}"),
            }
        }
    }

    #[test]
    fn first_kubepods_root_wins() {
        // A kind node running as a pod: the outer pod's container owns it all.
        let path = sub(
            "/kubepods/burstable/pod{uid}/{id}/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod0000_1111.slice",
        );
        assert_eq!(parse(&path), container(QosClass::Burstable, Runtime::Unknown));
    }

    #[test]
    fn very_long_paths() {
        let long = format!("/kubepods/burstable/pod{UID}/{ID}/{}", "a/".repeat(100_000));
        assert_eq!(parse(&long), container(QosClass::Burstable, Runtime::Unknown));
        let junk = "x".repeat(1_000_000);
        assert!(matches!(parse(&junk), Err(CgroupPathError::NotKubepods(_))));
    }

    #[test]
    fn error_messages_name_the_path() {
        let err = parse("/kubepods/notapod").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "malformed kubepods cgroup path \"/kubepods/notapod\": expected a QoS class or pod<uid> cgroup under kubepods"
            )
        );
        let err = parse("/init.scope").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("cgroup path \"/init.scope\" is not under a kubepods hierarchy")
        );
    }

    #[test]
    fn validators() {
        assert!(container_id_is_valid(ID));
        assert!(!container_id_is_valid(""));
        assert!(!container_id_is_valid(&ID[..63]));
        assert!(!container_id_is_valid(&ID.to_uppercase()));
        assert!(pod_uid_is_valid(UID));
        assert!(pod_uid_is_valid(STATIC_UID));
        assert!(!pod_uid_is_valid(""));
        assert!(!pod_uid_is_valid(UID_ESC));
        assert!(!pod_uid_is_valid(&"a".repeat(65)));
    }

    #[test]
    fn serializes_lowercase() -> Result<(), serde_json::Error> {
        assert_eq!(serde_json::to_string(&QosClass::Guaranteed)?, "\"guaranteed\"");
        assert_eq!(serde_json::to_string(&QosClass::Burstable)?, "\"burstable\"");
        assert_eq!(serde_json::to_string(&QosClass::BestEffort)?, "\"besteffort\"");
        assert_eq!(serde_json::to_string(&Runtime::Containerd)?, "\"containerd\"");
        assert_eq!(serde_json::to_string(&Runtime::Crio)?, "\"crio\"");
        assert_eq!(serde_json::to_string(&Runtime::Docker)?, "\"docker\"");
        assert_eq!(serde_json::to_string(&Runtime::Unknown)?, "\"unknown\"");
        Ok(())
    }

    /// A valid path together with what it must parse to.
    fn valid_path() -> impl Strategy<Value = (String, CgroupKind)> {
        let uid = prop_oneof![
            "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "[0-9a-f]{32}",
        ];
        let qos = prop_oneof![
            Just(QosClass::Guaranteed),
            Just(QosClass::Burstable),
            Just(QosClass::BestEffort),
        ];
        let runtime = prop_oneof![
            Just(Runtime::Containerd),
            Just(Runtime::Crio),
            Just(Runtime::Docker),
            Just(Runtime::Unknown),
        ];
        (
            uid,
            qos,
            runtime,
            "[0-9a-f]{64}",
            any::<bool>(),
            prop::option::of("[a-z]{1,8}"),
            any::<bool>(),
        )
            .prop_map(|(uid, qos, runtime, id, systemd, prefix, crun_child)| {
                let word = match qos {
                    QosClass::Guaranteed => None,
                    QosClass::Burstable => Some("burstable"),
                    QosClass::BestEffort => Some("besteffort"),
                };
                let mut path = String::new();
                if systemd {
                    let mut stem = "kubepods".to_owned();
                    if let Some(p) = &prefix {
                        path.push_str(&format!("/{p}.slice"));
                        stem = format!("{p}-kubepods");
                    }
                    path.push_str(&format!("/{stem}.slice"));
                    if let Some(w) = word {
                        stem = format!("{stem}-{w}");
                        path.push_str(&format!("/{stem}.slice"));
                    }
                    path.push_str(&format!("/{stem}-pod{}.slice", uid.replace('-', "_")));
                    let scope = match runtime {
                        Runtime::Containerd => format!("cri-containerd-{id}"),
                        Runtime::Crio => format!("crio-{id}"),
                        Runtime::Docker => format!("docker-{id}"),
                        Runtime::Unknown => id.clone(),
                    };
                    path.push_str(&format!("/{scope}.scope"));
                } else {
                    if let Some(p) = &prefix {
                        path.push_str(&format!("/{p}"));
                    }
                    path.push_str("/kubepods");
                    if let Some(w) = word {
                        path.push_str(&format!("/{w}"));
                    }
                    path.push_str(&format!("/pod{uid}"));
                    let (name, runtime) = match runtime {
                        Runtime::Crio => (format!("crio-{id}"), Runtime::Crio),
                        _ => (id.clone(), Runtime::Unknown),
                    };
                    path.push_str(&format!("/{name}"));
                    if crun_child {
                        path.push_str("/container");
                    }
                    return (
                        path,
                        CgroupKind::Container { pod_uid: uid, qos, container_id: id, runtime },
                    );
                }
                if crun_child {
                    path.push_str("/container");
                }
                (path, CgroupKind::Container { pod_uid: uid, qos, container_id: id, runtime })
            })
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Delete(usize),
        Insert(usize, char),
        Replace(usize, char),
        Truncate(usize),
        DuplicateTail(usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let ch = prop_oneof![
            Just('/'),
            Just('-'),
            Just('_'),
            Just('.'),
            prop::char::range('0', 'z'),
            any::<char>(),
        ];
        prop_oneof![
            any::<usize>().prop_map(Mutation::Delete),
            (any::<usize>(), ch.clone()).prop_map(|(i, c)| Mutation::Insert(i, c)),
            (any::<usize>(), ch).prop_map(|(i, c)| Mutation::Replace(i, c)),
            any::<usize>().prop_map(Mutation::Truncate),
            any::<usize>().prop_map(Mutation::DuplicateTail),
        ]
    }

    fn apply(path: &str, mutations: &[Mutation]) -> String {
        let mut chars: Vec<char> = path.chars().collect();
        for m in mutations {
            let len = chars.len();
            match *m {
                Mutation::Delete(i) if len > 0 => {
                    chars.remove(i % len);
                }
                Mutation::Insert(i, c) => chars.insert(i % (len + 1), c),
                Mutation::Replace(i, c) if len > 0 => chars[i % len] = c,
                Mutation::Truncate(i) => chars.truncate(i % (len + 1)),
                Mutation::DuplicateTail(i) => {
                    let tail: Vec<char> = chars[i % (len + 1)..].to_vec();
                    chars.extend(tail);
                }
                _ => {}
            }
        }
        chars.into_iter().collect()
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_strings(s in ".*") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_pathlike_strings(s in "[/a-z0-9._-]{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn generated_valid_paths_parse((path, expected) in valid_path()) {
            prop_assert_eq!(parse(&path), Ok(expected));
        }

        #[test]
        fn never_panics_on_mutated_valid_paths(
            (path, _) in valid_path(),
            mutations in prop::collection::vec(mutation(), 1..6),
        ) {
            let mutated = apply(&path, &mutations);
            if let Ok(CgroupKind::Container { container_id, pod_uid, .. }) = parse(&mutated) {
                prop_assert!(container_id_is_valid(&container_id));
                prop_assert!(pod_uid_is_valid(&pod_uid));
            }
        }
    }
}
