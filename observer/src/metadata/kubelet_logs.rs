//! Parses and looks up the kubelet's container log layout under a log root
//! (default `/var/log`):
//!
//! * `pods/<namespace>_<pod-name>_<pod-uid>/<container-name>/<restart>.log`:
//!   one directory per pod, one sub-directory per container (kubelet
//!   `pkg/kubelet/kuberuntime/helpers.go`, `BuildPodLogsDirectory` and
//!   `BuildContainerLogsDirectory`).
//! * `containers/<pod-name>_<namespace>_<container-name>-<container-id>.log`:
//!   symlinks into the above (`logSymlink` in the same package).
//!
//! Namespaces and container names are DNS-1123 labels and pod names DNS-1123
//! subdomains, none of which can contain `_`, so `_` separates the fields
//! unambiguously; the container id (64 hex) is split off at the last `-`.
//! Static pods use their 32-hex config hash as uid, so uids are validated as
//! loosely as [`super::cgroup_path::pod_uid_is_valid`] does.
//!
//! `logSymlink` truncates names longer than ext4's 255-byte limit, cutting
//! into the container id; such symlinks are not recognized.

use std::ffi::OsStr;
use std::fs::{self, DirEntry, ReadDir};
use std::io;
use std::path::{Path, PathBuf};

use super::cgroup_path::{container_id_is_valid, pod_uid_is_valid};

/// Sub-directory of the log root holding one directory per pod.
const PODS_DIR: &str = "pods";
/// Sub-directory of the log root holding one symlink per container.
const CONTAINERS_DIR: &str = "containers";
/// `validation.DNS1123LabelMaxLength`.
const DNS1123_LABEL_MAX_LEN: usize = 63;
/// `validation.DNS1123SubdomainMaxLength`.
const DNS1123_SUBDOMAIN_MAX_LEN: usize = 253;

/// The fields of a pod log directory name, `<namespace>_<pod-name>_<pod-uid>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDirName {
    /// The pod's namespace (a DNS-1123 label).
    pub namespace: String,
    /// The pod's name (a DNS-1123 subdomain).
    pub pod: String,
    /// The pod's uid: a UUID, or the config hash for static pods.
    pub pod_uid: String,
}

/// Parses a pod log directory name such as `default_web-0_0f2c6a1e-9b4d-4c3e-8a7f-1d2e3f4a5b6c`.
///
/// Returns `None` unless there are exactly three `_`-separated fields, each
/// valid for what it holds.
pub fn parse_pod_dir(name: &str) -> Option<PodDirName> {
    let (namespace, pod, pod_uid) = split3(name)?;
    let parsed = PodDirName {
        namespace: namespace.to_owned(),
        pod: pod.to_owned(),
        pod_uid: pod_uid.to_owned(),
    };
    pod_dir_is_valid(&parsed).then_some(parsed)
}

/// The fields of a container log symlink name,
/// `<pod-name>_<namespace>_<container-name>-<container-id>.log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerLogName {
    /// The pod's name (a DNS-1123 subdomain).
    pub pod: String,
    /// The pod's namespace (a DNS-1123 label).
    pub namespace: String,
    /// The container's name (a DNS-1123 label).
    pub container: String,
    /// The runtime's container id, 64 lowercase hex digits.
    pub container_id: String,
}

/// Parses a container log symlink name such as `web-0_default_nginx-<64 hex>.log`.
///
/// Returns `None` unless the name has the `.log` suffix, exactly three
/// `_`-separated fields and a valid container id after the last `-`.
pub fn parse_container_log(file_name: &str) -> Option<ContainerLogName> {
    let stem = file_name.strip_suffix(".log")?;
    let (pod, namespace, rest) = split3(stem)?;
    // Container names may contain '-', ids never do: the last '-' is the split.
    let (container, container_id) = rest.rsplit_once('-')?;
    let valid = is_dns1123_subdomain(pod)
        && is_dns1123_label(namespace)
        && is_dns1123_label(container)
        && container_id_is_valid(container_id);
    valid.then(|| ContainerLogName {
        pod: pod.to_owned(),
        namespace: namespace.to_owned(),
        container: container.to_owned(),
        container_id: container_id.to_owned(),
    })
}

/// Reads the layout (this is the only I/O): for a pod uid, find its pod dir under `<root>/pods`;
/// for a container id, find its log symlink under `<root>/containers`. Missing dirs => `Ok(None)`;
/// other I/O errors => `Err`. Never follows anything outside `<root>`.
///
/// Directory entries are matched by name only: the `containers/` symlinks
/// are never followed, and only real directories count as pod or container
/// directories. `pods/`, `containers/` and a pod directory may themselves be
/// symlinks as long as they resolve inside the root; one that resolves
/// outside it is reported as a `PermissionDenied` error.
#[derive(Debug, Clone)]
pub struct KubeletLogs {
    root: PathBuf,
}

impl KubeletLogs {
    /// A reader of the layout under `root` (the kubelet's default is `/var/log`).
    /// Nothing is read until a lookup.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Finds the pod log directory of the pod with this uid.
    ///
    /// `Ok(None)` when the uid is not a valid pod uid, when the root or
    /// `pods/` is missing, or when no directory matches.
    pub fn pod_by_uid(&self, pod_uid: &str) -> io::Result<Option<PodDirName>> {
        if !pod_uid_is_valid(pod_uid) {
            return Ok(None);
        }
        let Some(entries) = self.read_dir_within_root(Path::new(PODS_DIR))? else {
            return Ok(None);
        };
        for entry in entries {
            let entry = entry?;
            let Some(parsed) = parse_entry_name(&entry.file_name(), parse_pod_dir) else {
                continue;
            };
            if parsed.pod_uid == pod_uid && is_real_dir(&entry)? {
                return Ok(Some(parsed));
            }
        }
        Ok(None)
    }

    /// Finds the log symlink of the container with this id.
    ///
    /// `Ok(None)` when the id is not a full 64-hex container id, when the
    /// root or `containers/` is missing, or when no symlink matches.
    pub fn container_by_id(&self, container_id: &str) -> io::Result<Option<ContainerLogName>> {
        if !container_id_is_valid(container_id) {
            return Ok(None);
        }
        let Some(entries) = self.read_dir_within_root(Path::new(CONTAINERS_DIR))? else {
            return Ok(None);
        };
        for entry in entries {
            let entry = entry?;
            if let Some(parsed) = parse_entry_name(&entry.file_name(), parse_container_log) {
                if parsed.container_id == container_id {
                    return Ok(Some(parsed));
                }
            }
        }
        Ok(None)
    }

    /// Container names found under the pod's dir (sub-directory names).
    ///
    /// Sorted, so callers get a stable order. Empty when the pod directory is
    /// missing; `InvalidInput` when `pod` holds fields [`parse_pod_dir`]
    /// would reject, since they are joined into a path.
    pub fn containers_of_pod(&self, pod: &PodDirName) -> io::Result<Vec<String>> {
        // The fields are public, so `pod` may not come from parse_pod_dir;
        // re-validating keeps `..` or `/` from steering the path.
        if !pod_dir_is_valid(pod) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a valid pod log directory name: {pod:?}"),
            ));
        }
        let dir_name = format!("{}_{}_{}", pod.namespace, pod.pod, pod.pod_uid);
        let Some(entries) = self.read_dir_within_root(&Path::new(PODS_DIR).join(dir_name))? else {
            return Ok(Vec::new());
        };
        let mut containers = Vec::new();
        for entry in entries {
            let entry = entry?;
            let Some(name) =
                parse_entry_name(&entry.file_name(), |n| is_dns1123_label(n).then(|| n.to_owned()))
            else {
                continue;
            };
            if is_real_dir(&entry)? {
                containers.push(name);
            }
        }
        containers.sort();
        Ok(containers)
    }

    /// Opens `<root>/<relative>` after resolving every symlink on the way and
    /// checking the result is still inside the (resolved) root.
    ///
    /// There is a window between the check and the open; the log root is
    /// owned by root, so this guards against misconfiguration (a symlinked
    /// log directory pointing elsewhere), not against an attacker.
    fn read_dir_within_root(&self, relative: &Path) -> io::Result<Option<ReadDir>> {
        let Some(root) = not_found_as_none(fs::canonicalize(&self.root))? else {
            return Ok(None);
        };
        let Some(dir) = not_found_as_none(fs::canonicalize(root.join(relative)))? else {
            return Ok(None);
        };
        if !dir.starts_with(&root) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} resolves to {}, outside the log root {}",
                    relative.display(),
                    dir.display(),
                    root.display()
                ),
            ));
        }
        not_found_as_none(fs::read_dir(&dir))
    }
}

/// Pods and containers come and go while the directory is listed, so an
/// entry vanishing is not an error.
fn not_found_as_none<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// True for a directory that is not a symlink (`DirEntry::file_type` does
/// not follow links); false if it vanished meanwhile.
fn is_real_dir(entry: &DirEntry) -> io::Result<bool> {
    Ok(not_found_as_none(entry.file_type())?.is_some_and(|t| t.is_dir()))
}

/// Kubernetes names are ASCII, so a non-UTF-8 entry cannot be one of ours.
fn parse_entry_name<T>(name: &OsStr, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
    name.to_str().and_then(parse)
}

fn pod_dir_is_valid(pod: &PodDirName) -> bool {
    is_dns1123_label(&pod.namespace)
        && is_dns1123_subdomain(&pod.pod)
        && pod_uid_is_valid(&pod.pod_uid)
}

/// Splits into exactly three `_`-separated fields.
fn split3(s: &str) -> Option<(&str, &str, &str)> {
    let mut fields = s.split('_');
    let parts = (fields.next()?, fields.next()?, fields.next()?);
    fields.next().is_none().then_some(parts)
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` without a length limit: the shape of
/// both a label and each dot-separated part of a subdomain.
fn is_label_shaped(s: &str) -> bool {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            alnum(first) && alnum(last) && bytes.iter().all(|b| alnum(b) || *b == b'-')
        }
        _ => false,
    }
}

/// Kubernetes `IsDNS1123Label`.
fn is_dns1123_label(s: &str) -> bool {
    s.len() <= DNS1123_LABEL_MAX_LEN && is_label_shaped(s)
}

/// Kubernetes `IsDNS1123Subdomain`.
fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= DNS1123_SUBDOMAIN_MAX_LEN && s.split('.').all(is_label_shaped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const ID: &str = "3f2a9c1b7d8e4f60a1b2c3d4e5f60718293a4b5c6d7e8f9012345678abcdef01";
    const ID2: &str = "9e8d7c6b5a4f30211203948576afbecd00112233445566778899aabbccddeeff";
    const UID: &str = "0f2c6a1e-9b4d-4c3e-8a7f-1d2e3f4a5b6c";
    const UID2: &str = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d";
    const STATIC_UID: &str = "5c1f0e9a8b7d6c5e4f3a2b1c0d9e8f7a";

    fn pod_dir(namespace: &str, pod: &str, pod_uid: &str) -> Option<PodDirName> {
        Some(PodDirName {
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            pod_uid: pod_uid.to_owned(),
        })
    }

    fn container_log(
        pod: &str,
        namespace: &str,
        container: &str,
        container_id: &str,
    ) -> Option<ContainerLogName> {
        Some(ContainerLogName {
            pod: pod.to_owned(),
            namespace: namespace.to_owned(),
            container: container.to_owned(),
            container_id: container_id.to_owned(),
        })
    }

    #[test]
    fn pod_dir_names() {
        let ns63 = "n".repeat(63);
        let pod253 = format!("{}.{}", "p".repeat(126), "q".repeat(126));
        let cases: Vec<(String, Option<PodDirName>)> = vec![
            (format!("default_web-0_{UID}"), pod_dir("default", "web-0", UID)),
            (
                format!("kube-system_coredns-5d78c9869d-8xkqh_{UID}"),
                pod_dir("kube-system", "coredns-5d78c9869d-8xkqh", UID),
            ),
            (
                format!("kube-system_kube-apiserver-kind-control-plane_{STATIC_UID}"),
                pod_dir("kube-system", "kube-apiserver-kind-control-plane", STATIC_UID),
            ),
            (
                format!("monitoring_node-exporter.v1_{UID}"),
                pod_dir("monitoring", "node-exporter.v1", UID),
            ),
            (format!("0_1_{UID}"), pod_dir("0", "1", UID)),
            (format!("{ns63}_web_{UID}"), pod_dir(&ns63, "web", UID)),
            (format!("default_{pod253}_{UID}"), pod_dir("default", &pod253, UID)),
            // missing parts
            (String::new(), None),
            ("default".to_owned(), None),
            ("default_web-0".to_owned(), None),
            ("default_web-0_".to_owned(), None),
            (format!("_web-0_{UID}"), None),
            (format!("default__{UID}"), None),
            ("__".to_owned(), None),
            // extra underscores
            (format!("default_web_0_{UID}"), None),
            (format!("default_web-0_{UID}_"), None),
            (format!("default_web-0_{UID}_extra"), None),
            // invalid fields
            (format!("Default_web-0_{UID}"), None),
            (format!("default_Web-0_{UID}"), None),
            (format!("default_web-0_{}", UID.to_uppercase()), None),
            (format!("default_web-0_{UID}x"), None),
            (format!("default_-web_{UID}"), None),
            (format!("default_web-_{UID}"), None),
            (format!("default_web..x_{UID}"), None),
            (format!("default_.web_{UID}"), None),
            (format!("my.ns_web_{UID}"), None),
            (format!("{}_web_{UID}", "n".repeat(64)), None),
            (format!("default_{pod253}a_{UID}"), None),
            (format!("default_web-0_{}", "a".repeat(65)), None),
            (format!("default_web/0_{UID}"), None),
            (format!("default_.._{UID}"), None),
            // unicode
            (format!("défault_web-0_{UID}"), None),
            (format!("default_wéb-0_{UID}"), None),
            ("default_web-0_é".to_owned(), None),
        ];
        for (name, expected) in cases {
            assert_eq!(parse_pod_dir(&name), expected, "name {name:?}");
        }
    }

    #[test]
    fn container_log_names() {
        let cases: Vec<(String, Option<ContainerLogName>)> = vec![
            (
                format!("web-0_default_nginx-{ID}.log"),
                container_log("web-0", "default", "nginx", ID),
            ),
            (
                format!("coredns-5d78c9869d-8xkqh_kube-system_coredns-{ID}.log"),
                container_log("coredns-5d78c9869d-8xkqh", "kube-system", "coredns", ID),
            ),
            (
                format!("reviews-v1-7bd8b6c9f4-x7k2p_bookinfo_istio-proxy-{ID}.log"),
                container_log("reviews-v1-7bd8b6c9f4-x7k2p", "bookinfo", "istio-proxy", ID),
            ),
            (format!("my.pod_ns_c-{ID}.log"), container_log("my.pod", "ns", "c", ID)),
            (format!("p_n_0-{ID}.log"), container_log("p", "n", "0", ID)),
            // missing parts
            (String::new(), None),
            (".log".to_owned(), None),
            (format!("web-0_default_nginx-{ID}"), None),
            (format!("web-0_default_nginx-{ID}.log.1"), None),
            (format!("web-0_default_{ID}.log"), None),
            (format!("web-0_default_-{ID}.log"), None),
            ("web-0_default_nginx-.log".to_owned(), None),
            (format!("web-0_nginx-{ID}.log"), None),
            (format!("web-0__nginx-{ID}.log"), None),
            (format!("_default_nginx-{ID}.log"), None),
            // extra underscores
            (format!("web_0_default_nginx-{ID}.log"), None),
            (format!("web-0_default_nginx_x-{ID}.log"), None),
            // invalid fields
            (format!("web-0_default_nginx-{}.log", &ID[..63]), None),
            (format!("web-0_default_nginx-{ID}0.log"), None),
            (format!("web-0_default_nginx-{}.log", ID.to_uppercase()), None),
            (format!("web-0_default_Nginx-{ID}.log"), None),
            (format!("web-0_default_nginx--{ID}.log"), None),
            (format!("web-0_default.ns_nginx-{ID}.log"), None),
            (format!("web-0_default_{}-{ID}.log", "c".repeat(64)), None),
            (format!("web-0_default_ngi.nx-{ID}.log"), None),
            // kubelet truncated an over-long name into the id
            (format!("{}_default_nginx-{}.log", "p".repeat(180), &ID[..50]), None),
            // unicode
            (format!("wéb-0_default_nginx-{ID}.log"), None),
            (format!("web-0_default_nginx-{ID}.lög"), None),
            (format!("web-0_default_nginx-{}é.log", &ID[..63]), None),
        ];
        for (name, expected) in cases {
            assert_eq!(parse_container_log(&name), expected, "name {name:?}");
        }
    }

    /// A scratch directory removed on drop, even when an assertion fails.
    struct TempTree {
        root: PathBuf,
    }

    impl TempTree {
        fn new(test: &str) -> io::Result<Self> {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let root = std::env::temp_dir().join(format!(
                "observer-kubelet-logs-{test}-{}-{}-{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&root)?;
            Ok(Self { root })
        }

        fn path(&self, relative: &str) -> PathBuf {
            self.root.join(relative)
        }

        fn dir(&self, relative: &str) -> io::Result<()> {
            fs::create_dir_all(self.path(relative))
        }

        fn file(&self, relative: &str) -> io::Result<()> {
            let path = self.path(relative);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(path, b"2024-01-01T00:00:00.000000000Z stdout F hello\n")
        }

        fn symlink(&self, target: impl AsRef<Path>, relative: &str) -> io::Result<()> {
            std::os::unix::fs::symlink(target, self.path(relative))
        }
    }

    impl Drop for TempTree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    /// The layout a node running two pods would have, plus debris.
    fn node_layout(test: &str) -> io::Result<TempTree> {
        let t = TempTree::new(test)?;
        let web = format!("pods/default_web-0_{UID}");
        t.file(&format!("{web}/nginx/0.log"))?;
        t.file(&format!("{web}/nginx/1.log"))?;
        t.file(&format!("{web}/sidecar/0.log"))?;
        t.file(&format!("{web}/stray-file"))?;
        t.dir(&format!("{web}/Not_A_Container"))?;
        t.file(&format!("pods/kube-system_coredns-5d78c9869d-8xkqh_{UID2}/coredns/0.log"))?;
        t.dir("pods/garbage")?;
        t.file(&format!("pods/default_file-not-dir_{STATIC_UID}"))?;
        t.dir("containers")?;
        t.symlink(
            t.path(&format!("{web}/nginx/1.log")),
            &format!("containers/web-0_default_nginx-{ID}.log"),
        )?;
        // Dangling: the pod is gone but the symlink is not yet collected.
        t.symlink(
            "/nonexistent/pods/x/0.log",
            &format!("containers/coredns-5d78c9869d-8xkqh_kube-system_coredns-{ID2}.log"),
        )?;
        t.file("containers/README")?;
        {
            use std::os::unix::ffi::OsStrExt;
            let bad = OsStr::from_bytes(b"web-0_default_nginx-\xff.log");
            fs::write(t.path("containers").join(bad), b"")?;
        }
        Ok(t)
    }

    #[test]
    fn finds_pods_by_uid() -> io::Result<()> {
        let t = node_layout("pods")?;
        let logs = KubeletLogs::new(&t.root);
        assert_eq!(logs.pod_by_uid(UID)?, pod_dir("default", "web-0", UID));
        assert_eq!(
            logs.pod_by_uid(UID2)?,
            pod_dir("kube-system", "coredns-5d78c9869d-8xkqh", UID2)
        );
        assert_eq!(logs.pod_by_uid("00000000-0000-0000-0000-000000000000")?, None);
        // A regular file with a pod directory's name is not a pod directory.
        assert_eq!(logs.pod_by_uid(STATIC_UID)?, None);
        assert_eq!(logs.pod_by_uid("")?, None);
        assert_eq!(logs.pod_by_uid("../..")?, None);
        Ok(())
    }

    #[test]
    fn finds_containers_by_id() -> io::Result<()> {
        let t = node_layout("containers")?;
        let logs = KubeletLogs::new(&t.root);
        assert_eq!(logs.container_by_id(ID)?, container_log("web-0", "default", "nginx", ID));
        assert_eq!(
            logs.container_by_id(ID2)?,
            container_log("coredns-5d78c9869d-8xkqh", "kube-system", "coredns", ID2)
        );
        assert_eq!(logs.container_by_id(&"0".repeat(64))?, None);
        assert_eq!(logs.container_by_id(&ID[..12])?, None);
        assert_eq!(logs.container_by_id("")?, None);
        Ok(())
    }

    #[test]
    fn lists_containers_of_pod() -> io::Result<()> {
        let t = node_layout("list")?;
        let logs = KubeletLogs::new(&t.root);
        let web = logs.pod_by_uid(UID)?.ok_or(io::ErrorKind::NotFound)?;
        assert_eq!(logs.containers_of_pod(&web)?, vec!["nginx", "sidecar"]);
        let gone = PodDirName { pod: "web-1".to_owned(), ..web.clone() };
        assert_eq!(logs.containers_of_pod(&gone)?, Vec::<String>::new());
        for bad in [
            PodDirName { namespace: "..".to_owned(), ..web.clone() },
            PodDirName { pod: "../../etc".to_owned(), ..web.clone() },
            PodDirName { pod_uid: "x/y".to_owned(), ..web.clone() },
            PodDirName { namespace: String::new(), ..web.clone() },
        ] {
            let err = logs.containers_of_pod(&bad).err().map(|e| e.kind());
            assert_eq!(err, Some(io::ErrorKind::InvalidInput), "{bad:?}");
        }
        Ok(())
    }

    #[test]
    fn missing_directories_are_not_errors() -> io::Result<()> {
        let t = TempTree::new("missing")?;
        let pod = PodDirName {
            namespace: "default".to_owned(),
            pod: "web-0".to_owned(),
            pod_uid: UID.to_owned(),
        };
        for root in [t.path("does-not-exist"), t.root.clone()] {
            let logs = KubeletLogs::new(root);
            assert_eq!(logs.pod_by_uid(UID)?, None);
            assert_eq!(logs.container_by_id(ID)?, None);
            assert_eq!(logs.containers_of_pod(&pod)?, Vec::<String>::new());
        }
        Ok(())
    }

    #[test]
    fn other_io_errors_are_reported() -> io::Result<()> {
        let t = TempTree::new("errors")?;
        t.file("pods")?;
        t.file("containers")?;
        let logs = KubeletLogs::new(&t.root);
        assert!(logs.pod_by_uid(UID).is_err());
        assert!(logs.container_by_id(ID).is_err());
        Ok(())
    }

    #[test]
    fn never_follows_symlinks_out_of_root() -> io::Result<()> {
        let outside = node_layout("outside")?;
        let t = TempTree::new("escape")?;
        t.dir(&format!("pods/default_web-0_{UID2}/app"))?;
        // A pod directory symlinked to outside the root.
        t.symlink(
            outside.path(&format!("pods/default_web-0_{UID}")),
            &format!("pods/default_web-0_{UID}"),
        )?;
        t.symlink(outside.path("containers"), "containers")?;
        let logs = KubeletLogs::new(&t.root);
        // Found by name, but not treated as a directory: it is a symlink.
        assert_eq!(logs.pod_by_uid(UID)?, None);
        let escaping = PodDirName {
            namespace: "default".to_owned(),
            pod: "web-0".to_owned(),
            pod_uid: UID.to_owned(),
        };
        let err = logs.containers_of_pod(&escaping).err().map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::PermissionDenied));
        let err = logs.container_by_id(ID).err().map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::PermissionDenied));
        // The real directory next to them is still served.
        let inside = logs.pod_by_uid(UID2)?.ok_or(io::ErrorKind::NotFound)?;
        assert_eq!(logs.containers_of_pod(&inside)?, vec!["app"]);
        Ok(())
    }

    #[test]
    fn follows_symlinks_that_stay_inside_root() -> io::Result<()> {
        let t = TempTree::new("inside")?;
        t.file(&format!("real-pods/default_web-0_{UID}/nginx/0.log"))?;
        t.dir("real-containers")?;
        t.symlink(
            t.path(&format!("real-pods/default_web-0_{UID}/nginx/0.log")),
            &format!("real-containers/web-0_default_nginx-{ID}.log"),
        )?;
        t.symlink("real-pods", "pods")?;
        t.symlink(t.path("real-containers"), "containers")?;
        let logs = KubeletLogs::new(&t.root);
        let pod = logs.pod_by_uid(UID)?.ok_or(io::ErrorKind::NotFound)?;
        assert_eq!(logs.containers_of_pod(&pod)?, vec!["nginx"]);
        assert_eq!(logs.container_by_id(ID)?, container_log("web-0", "default", "nginx", ID));
        // The root itself may be reached through a symlink.
        let alias = TempTree::new("alias")?;
        fs::remove_dir(&alias.root)?;
        std::os::unix::fs::symlink(&t.root, &alias.root)?;
        assert_eq!(KubeletLogs::new(&alias.root).pod_by_uid(UID)?, Some(pod));
        fs::remove_file(&alias.root)?;
        Ok(())
    }

    #[test]
    fn validators() {
        assert!(is_dns1123_label("a"));
        assert!(is_dns1123_label("a-0"));
        assert!(!is_dns1123_label(""));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label("a-"));
        assert!(!is_dns1123_label("a.b"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(!is_dns1123_subdomain(".a"));
        assert!(!is_dns1123_subdomain("a."));
        assert!(!is_dns1123_subdomain("a_b"));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in ".*") {
            let _ = parse_pod_dir(&s);
            let _ = parse_container_log(&s);
        }

        #[test]
        fn parsers_never_panic_on_namelike(s in "[a-z0-9._-]{0,120}(\\.log)?") {
            if let Some(p) = parse_pod_dir(&s) {
                prop_assert_eq!(format!("{}_{}_{}", p.namespace, p.pod, p.pod_uid), s.clone());
            }
            if let Some(c) = parse_container_log(&s) {
                prop_assert_eq!(
                    format!("{}_{}_{}-{}.log", c.pod, c.namespace, c.container, c.container_id),
                    s
                );
            }
        }

        #[test]
        fn valid_names_round_trip(
            namespace in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?",
            pod in "[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?){0,3}",
            container in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?",
            uid in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}",
            id in "[0-9a-f]{64}",
        ) {
            prop_assert_eq!(
                parse_pod_dir(&format!("{namespace}_{pod}_{uid}")),
                pod_dir(&namespace, &pod, &uid)
            );
            prop_assert_eq!(
                parse_container_log(&format!("{pod}_{namespace}_{container}-{id}.log")),
                container_log(&pod, &namespace, &container, &id)
            );
        }
    }
}
