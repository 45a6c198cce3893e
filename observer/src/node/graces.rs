//! The graces kubelet on this node can impose below a pod's own, read from kubelet's own
//! configuration: what a `shortened_grace` verdict is held against ([`crate::verdict`]), so it
//! can say which of kubelet's rules gave that many seconds, or that none did.
//!
//! kubelet shortens a pod's grace on its own in two ways (termination-facts.md, "More of
//! kubelet"):
//! - a soft eviction (`eviction/eviction_manager.go`): `evictionMaxPodGracePeriod` (flag
//!   `--eviction-max-pod-grace-period`), only when soft thresholds (`evictionSoft`,
//!   `--eviction-soft`) are configured; a hard eviction uses kubelet's 2 s floor, already its own
//!   cause (`kubelet_floor`);
//! - a graceful node shutdown (`nodeshutdown/nodeshutdown_manager.go`): regular pods get
//!   `shutdownGracePeriod - shutdownGracePeriodCriticalPods`, critical pods the critical share;
//!   with `shutdownGracePeriodByPodPriority` set, each priority group its own seconds instead.
//!
//! Every other shortened grace comes from outside the node's configuration: the API's
//! `deletionGracePeriodSeconds` (`kubectl delete --grace-period`, `kubectl drain
//! --grace-period`, an API eviction's DeleteOptions) or a probe's `terminationGracePeriodSeconds`
//! on a liveness failure; the node cannot tell those apart.
//!
//! kubelet reads its configuration from `--config` (a KubeletConfiguration file) and
//! `--config-dir` (drop-ins, `*.conf` in lexical order, each overriding the fields it sets), and
//! its flags override both. The files are read through `/proc/<kubelet>/root`, so the daemon needs
//! no mount of /var/lib/kubelet (which holds pod secrets).

use std::{
    io::Read as _,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

/// Which of kubelet's rules gives a grace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// A soft eviction: `evictionMaxPodGracePeriod`.
    SoftEviction,
    /// A graceful node shutdown: a regular pod's share, a critical pod's, or a priority group's.
    NodeShutdown,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SoftEviction => "soft_eviction",
            Self::NodeShutdown => "node_shutdown",
        }
    }
}

/// One grace kubelet's configuration gives, seconds, and the setting that gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grace {
    pub rule: Rule,
    pub seconds: u64,
    /// The setting as the SRE finds it in kubelet's configuration, e.g.
    /// `evictionMaxPodGracePeriod: 3`.
    pub setting: String,
}

/// What kubelet's configuration says, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeGraces {
    /// Read: the graces it gives (possibly none) and where from.
    Read { graces: Vec<Grace>, from: String },
    /// Not known: no kubelet seen, or its configuration unreadable (the reason).
    Unknown(String),
    /// Not known yet: kubelet's arguments were not in place (read again at the next poll).
    Starting(String),
}

impl NodeGraces {
    /// The rules that give `seconds`.
    pub fn giving(&self, seconds: u64) -> Vec<&Grace> {
        match self {
            Self::Read { graces, .. } => graces.iter().filter(|g| g.seconds == seconds).collect(),
            Self::Unknown(_) | Self::Starting(_) => Vec::new(),
        }
    }
}

/// Why kubelet's configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GracesError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a KubeletConfiguration: {source}")]
    Parse { path: PathBuf, source: serde_norway::Error },
    #[error("{0}: empty: the process is starting (execve not done) or a zombie")]
    NoArguments(PathBuf),
    #[error("{0}: not a regular file")]
    NotAFile(PathBuf),
    #[error("{0}: larger than {MAX_FILE_BYTES} bytes")]
    TooLarge(PathBuf),
    #[error("{0}: not UTF-8")]
    NotUtf8(PathBuf),
    #[error("{0}: more than {MAX_DROP_INS} drop-in files")]
    TooManyDropIns(PathBuf),
    #[error("{setting}: bad duration {value:?}: {reason}")]
    Duration { setting: &'static str, value: String, reason: String },
}

/// The fields of KubeletConfiguration (kubelet.config.k8s.io/v1beta1) that shorten a grace.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fields {
    eviction_max_pod_grace_period: Option<i64>,
    /// A value of null (in a drop-in) deletes its key, as a JSON merge patch does.
    eviction_soft: Option<std::collections::BTreeMap<String, Option<String>>>,
    shutdown_grace_period: Option<String>,
    shutdown_grace_period_critical_pods: Option<String>,
    shutdown_grace_period_by_pod_priority: Option<Vec<ByPriority>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ByPriority {
    /// Go's zero values when left out (`- priority: 0` alone is valid).
    #[serde(default)]
    priority: i64,
    #[serde(default)]
    shutdown_grace_period_seconds: i64,
}

impl Fields {
    /// `over` on top of `self`, as kubelet applies a drop-in (a JSON merge patch,
    /// pkg/kubelet/kubeletconfig... `mergeKubeletConfigurations`) or its flags: the fields
    /// `over` sets win; maps merge key by key, a null value deleting its key; lists are
    /// replaced whole.
    fn merge(self, over: Fields) -> Fields {
        let eviction_soft = match (self.eviction_soft, over.eviction_soft) {
            (Some(mut base), Some(patch)) => {
                for (k, v) in patch {
                    match v {
                        Some(v) => base.insert(k, Some(v)),
                        None => base.remove(&k),
                    };
                }
                Some(base)
            }
            (base, patch) => patch.or(base),
        };
        Fields {
            eviction_soft,
            eviction_max_pod_grace_period: over
                .eviction_max_pod_grace_period
                .or(self.eviction_max_pod_grace_period),
            shutdown_grace_period: over.shutdown_grace_period.or(self.shutdown_grace_period),
            shutdown_grace_period_critical_pods: over
                .shutdown_grace_period_critical_pods
                .or(self.shutdown_grace_period_critical_pods),
            shutdown_grace_period_by_pod_priority: over
                .shutdown_grace_period_by_pod_priority
                .or(self.shutdown_grace_period_by_pod_priority),
        }
    }
}

/// A Go `metav1.Duration` (`30s`, `1m30s`, `0s`); unset is Go's zero value.
fn duration_of(setting: &'static str, value: Option<&str>) -> Result<Duration, GracesError> {
    let Some(value) = value else {
        return Ok(Duration::ZERO);
    };
    crate::duration::parse(value).map_err(|e| GracesError::Duration {
        setting,
        value: value.to_string(),
        reason: e.to_string(),
    })
}

/// The flag `name`'s value in kubelet's argv (`--name=value` or `--name value`; the last wins,
/// as Go's flag package takes it).
fn flag<'a>(argv: &'a [String], name: &str) -> Option<&'a str> {
    let long = format!("--{name}");
    let mut found = None;
    let mut args = argv.iter();
    while let Some(a) = args.next() {
        if let Some(v) = a.strip_prefix(&long).and_then(|r| r.strip_prefix('=')) {
            found = Some(v);
        } else if *a == long {
            found = args.next().map(String::as_str);
        }
    }
    found
}

/// The fields kubelet's flags set (the deprecated ones that still override the file).
fn flag_fields(argv: &[String]) -> Result<Fields, GracesError> {
    let eviction_max_pod_grace_period = flag(argv, "eviction-max-pod-grace-period")
        .map(|v| {
            v.parse::<i64>().map_err(|e| GracesError::Duration {
                setting: "--eviction-max-pod-grace-period",
                value: v.to_string(),
                reason: e.to_string(),
            })
        })
        .transpose()?;
    // `--eviction-soft=memory.available<1.5Gi,...`: only whether any is set matters here.
    let eviction_soft = flag(argv, "eviction-soft")
        .map(|v| {
            v.split(',').filter(|t| !t.is_empty()).map(|t| (t.to_string(), Some(String::new())))
        })
        .map(|m| m.collect());
    Ok(Fields { eviction_max_pod_grace_period, eviction_soft, ..Fields::default() })
}

/// The graces `fields` give, each with its setting.
fn graces_of(f: &Fields) -> Result<Vec<Grace>, GracesError> {
    let mut graces = Vec::new();
    let soft = f.eviction_soft.as_ref().is_some_and(|m| !m.is_empty());
    if let (true, Some(max)) = (soft, f.eviction_max_pod_grace_period) {
        // 0 (the default) leaves the pod's own grace (kubelet takes an override of 0 for none
        // set); 1 and 2 end in kubelet's 2 s floor, `kubelet_floor`'s; negative ones too.
        if max > 2 {
            graces.push(Grace {
                rule: Rule::SoftEviction,
                seconds: max as u64,
                setting: format!("evictionMaxPodGracePeriod: {max}"),
            });
        }
    }
    match &f.shutdown_grace_period_by_pod_priority {
        Some(groups) if !groups.is_empty() => {
            for g in groups.iter().filter(|g| g.shutdown_grace_period_seconds > 2) {
                graces.push(Grace {
                    rule: Rule::NodeShutdown,
                    seconds: g.shutdown_grace_period_seconds as u64,
                    setting: format!(
                        "shutdownGracePeriodByPodPriority: priority {} gets {} s",
                        g.priority, g.shutdown_grace_period_seconds
                    ),
                });
            }
        }
        _ => {
            let total = duration_of("shutdownGracePeriod", f.shutdown_grace_period.as_deref())?;
            let critical = duration_of(
                "shutdownGracePeriodCriticalPods",
                f.shutdown_grace_period_critical_pods.as_deref(),
            )?;
            // kubelet's `migrateConfig()` (pkg/kubelet/nodeshutdown): regular pods get
            // total - critical, critical pods total - that, each cut to whole seconds; nothing
            // when total is 0 or critical is more than total.
            if let Some(regular) = total.checked_sub(critical).filter(|_| !total.is_zero()) {
                let share = total - regular;
                let setting = format!(
                    "shutdownGracePeriod: {}, shutdownGracePeriodCriticalPods: {}",
                    f.shutdown_grace_period.as_deref().unwrap_or("0s"),
                    f.shutdown_grace_period_critical_pods.as_deref().unwrap_or("0s")
                );
                for (who, d) in [("regular", regular), ("critical", share)] {
                    // A share of 0 s gives kubelet's floor (`kubelet_floor`).
                    if d.as_secs() > 2 {
                        graces.push(Grace {
                            rule: Rule::NodeShutdown,
                            seconds: d.as_secs(),
                            setting: format!("{setting} ({who} pods get {} s)", d.as_secs()),
                        });
                    }
                }
            }
        }
    }
    Ok(graces)
}

/// Parses kubelet's configuration: the `--config` file's text, its drop-ins' (in order) and its
/// argv. Pure.
pub fn parse(
    config: Option<(&Path, &str)>,
    drop_ins: &[(PathBuf, String)],
    argv: &[String],
) -> Result<Vec<Grace>, GracesError> {
    let read = |path: &Path, text: &str| -> Result<Fields, GracesError> {
        if text.trim().is_empty() {
            return Ok(Fields::default());
        }
        serde_norway::from_str(text)
            .map_err(|source| GracesError::Parse { path: path.to_path_buf(), source })
    };
    let mut fields = match config {
        Some((path, text)) => read(path, text)?,
        None => Fields::default(),
    };
    for (path, text) in drop_ins {
        fields = fields.merge(read(path, text)?);
    }
    graces_of(&fields.merge(flag_fields(argv)?))
}

/// A path kubelet was given, as this process reaches it: through kubelet's root, relative paths
/// from kubelet's working directory.
fn through(proc_pid: &Path, path: &str) -> PathBuf {
    if Path::new(path).is_absolute() {
        proc_pid.join("root").join(path.trim_start_matches('/'))
    } else {
        proc_pid.join("cwd").join(path)
    }
}

/// Bytes read of one configuration file: kubelet's are a few KiB.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// Drop-in files read from a `--config-dir`.
pub const MAX_DROP_INS: usize = 64;

/// Reads a configuration file, which must be a regular file of at most [`MAX_FILE_BYTES`]:
/// opened non-blocking (a FIFO named by a process posing as kubelet would block the open).
fn read_to_string(path: &Path) -> Result<String, GracesError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let err = |source| GracesError::Read { path: path.to_path_buf(), source };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    if !meta.is_file() {
        return Err(GracesError::NotAFile(path.to_path_buf()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(GracesError::TooLarge(path.to_path_buf()));
    }
    String::from_utf8(bytes).map_err(|_| GracesError::NotUtf8(path.to_path_buf()))
}

/// The `*.conf` files below `dir`, as kubelet walks a `--config-dir` (`filepath.WalkDir`:
/// depth first, each directory's entries in lexical order), at most [`MAX_DROP_INS`].
fn drop_in_files(dir: &Path) -> Result<Vec<PathBuf>, GracesError> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<(), GracesError> {
        let mut entries: Vec<(PathBuf, std::fs::FileType)> = std::fs::read_dir(dir)
            .map_err(|source| GracesError::Read { path: dir.to_path_buf(), source })?
            .flatten()
            .filter_map(|e| Some((e.path(), e.file_type().ok()?)))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, kind) in entries {
            if kind.is_dir() && depth < 8 {
                walk(&path, out, depth + 1)?;
            } else if !kind.is_dir() && path.extension().is_some_and(|e| e == "conf") {
                if out.len() == MAX_DROP_INS {
                    return Err(GracesError::TooManyDropIns(dir.to_path_buf()));
                }
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, &mut out, 0)?;
    Ok(out)
}

/// kubelet's configuration as mounted for this process, instead of through kubelet's root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounted {
    /// The file kubelet's `--config` names.
    pub config: Option<PathBuf>,
    /// The directory kubelet's `--config-dir` names.
    pub config_dir: Option<PathBuf>,
}

/// Reads the configuration of the kubelet at `proc_pid` (`/proc/<pid>`): its cmdline, its
/// `--config` and `--config-dir` (or their [`Mounted`] copies).
/// Through /proc/<pid>/root the kernel checks ptrace access (fs/proc/base.c
/// `proc_root_link()`): another root process with more capabilities than ours takes
/// CAP_SYS_PTRACE (security/commoncap.c `cap_ptrace_access_check()`); the cmdline is
/// world-readable.
pub fn of_kubelet(proc_pid: &Path, mounted: &Mounted) -> NodeGraces {
    let read = || -> Result<(Vec<Grace>, String), GracesError> {
        let cmdline = std::fs::read(proc_pid.join("cmdline"))
            .map_err(|source| GracesError::Read { path: proc_pid.join("cmdline"), source })?;
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if argv.is_empty() {
            return Err(GracesError::NoArguments(proc_pid.join("cmdline")));
        }
        let mut from = vec![format!("kubelet's flags ({})", proc_pid.join("cmdline").display())];
        let config = match (&mounted.config, flag(&argv, "config")) {
            (Some(path), _) => {
                let text = read_to_string(path)?;
                from.push(path.display().to_string());
                Some((path.to_path_buf(), text))
            }
            (None, Some(p)) => {
                let path = through(proc_pid, p);
                let text = read_to_string(&path)?;
                from.push(p.to_string());
                Some((path, text))
            }
            (None, None) => None,
        };
        let mut drop_ins = Vec::new();
        if let Some(dir) = flag(&argv, "config-dir") {
            let path = match &mounted.config_dir {
                Some(m) => m.clone(),
                None => through(proc_pid, dir),
            };
            for p in drop_in_files(&path)? {
                let text = read_to_string(&p)?;
                drop_ins.push((p, text));
            }
            from.push(format!("{}/**/*.conf", path.display()));
        }
        let graces =
            parse(config.as_ref().map(|(p, t)| (p.as_path(), t.as_str())), &drop_ins, &argv)?;
        Ok((graces, from.join(", ")))
    };
    match read() {
        Ok((graces, from)) => NodeGraces::Read { graces, from },
        Err(e @ GracesError::NoArguments(_)) => NodeGraces::Starting(e.to_string()),
        Err(e) => NodeGraces::Unknown(format!("kubelet's configuration: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    /// A process whose argv is a kubelet's: `sh -c 'read x' kubelet FLAG` waits on its stdin
    /// with those arguments in /proc/<pid>/cmdline; its /proc directory beside it. spawn()
    /// returns once the child's execve released the parent, before the new image's arguments
    /// are in place: this waits for them.
    fn kubelet_with(flag: &str) -> (std::process::Child, PathBuf) {
        let child = std::process::Command::new("sh")
            .args(["-c", "read x", "kubelet", flag])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let proc_pid = PathBuf::from(format!("/proc/{}", child.id()));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !std::fs::read_to_string(proc_pid.join("cmdline")).unwrap().contains(flag) {
            assert!(std::time::Instant::now() < deadline, "no {flag} in the cmdline");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        (child, proc_pid)
    }

    const CONFIG: &str = "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
evictionSoft:
  memory.available: 1.5Gi
evictionSoftGracePeriod:
  memory.available: 1m30s
evictionMaxPodGracePeriod: 20
shutdownGracePeriod: 1m
shutdownGracePeriodCriticalPods: 10s
cgroupDriver: systemd
";

    #[test]
    fn a_kubelet_configuration_gives_its_soft_eviction_and_node_shutdown_graces() {
        let g = parse(Some((Path::new("/var/lib/kubelet/config.yaml"), CONFIG)), &[], &[]).unwrap();
        let got: Vec<(Rule, u64)> = g.iter().map(|g| (g.rule, g.seconds)).collect();
        assert_eq!(
            got,
            [(Rule::SoftEviction, 20), (Rule::NodeShutdown, 50), (Rule::NodeShutdown, 10)]
        );
        assert_eq!(g[0].setting, "evictionMaxPodGracePeriod: 20");
        assert!(g[1].setting.contains("regular pods get 50 s"), "{}", g[1].setting);
    }

    #[test]
    fn drop_ins_and_flags_override_the_file_and_no_soft_threshold_means_no_soft_eviction() {
        let drop_in = (PathBuf::from("10-shutdown.conf"), "shutdownGracePeriod: 30s\n".into());
        let flags = argv(&["/usr/bin/kubelet", "--eviction-max-pod-grace-period", "7"]);
        let g = parse(Some((Path::new("c"), CONFIG)), &[drop_in], &flags).unwrap();
        let got: Vec<(Rule, u64)> = g.iter().map(|g| (g.rule, g.seconds)).collect();
        assert_eq!(
            got,
            [(Rule::SoftEviction, 7), (Rule::NodeShutdown, 20), (Rule::NodeShutdown, 10)]
        );
        // No soft thresholds: kubelet never soft-evicts, whatever the maximum says.
        let g = parse(None, &[], &argv(&["kubelet", "--eviction-max-pod-grace-period=7"])).unwrap();
        assert!(g.is_empty(), "{g:?}");
        let g = parse(
            None,
            &[],
            &argv(&[
                "kubelet",
                "--eviction-soft=memory.available<1Gi",
                "--eviction-max-pod-grace-period=7",
            ]),
        )
        .unwrap();
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn priority_groups_replace_the_two_shares_and_the_defaults_give_nothing() {
        let text = "shutdownGracePeriodByPodPriority:
- priority: 100000
  shutdownGracePeriodSeconds: 10
- priority: 0
  shutdownGracePeriodSeconds: 60
";
        let g = parse(Some((Path::new("c"), text)), &[], &[]).unwrap();
        let got: Vec<u64> = g.iter().map(|g| g.seconds).collect();
        assert_eq!(got, [10, 60]);
        assert!(g[1].setting.contains("priority 0 gets 60 s"));
        let empty = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";
        assert!(parse(Some((Path::new("c"), empty)), &[], &[]).unwrap().is_empty());
    }

    #[test]
    fn kubelet_merges_drop_ins_key_by_key_and_shares_the_shutdown_as_migrate_config_does() {
        // A drop-in's `evictionSoft: {}` keeps the base's thresholds (a merge patch of
        // nothing); a null deletes one; the last one deleted, soft eviction is off.
        let keep = (PathBuf::from("a.conf"), "evictionSoft: {}\n".to_string());
        let g = parse(Some((Path::new("c"), CONFIG)), &[keep], &[]).unwrap();
        assert_eq!(g[0].rule, Rule::SoftEviction, "{g:?}");
        let delete = (PathBuf::from("b.conf"), "evictionSoft: {memory.available: null}\n".into());
        let g = parse(Some((Path::new("c"), CONFIG)), &[delete], &[]).unwrap();
        assert!(g.iter().all(|g| g.rule == Rule::NodeShutdown), "{g:?}");
        // total - critical on durations, then whole seconds: 10.5 s - 0.75 s gives 9 s and 1 s
        // (the floor's); critical past total gives nothing; a priority entry may leave out
        // its fields (Go's zero values), and the groups replace the two shares.
        let text = "shutdownGracePeriod: 10.5s\nshutdownGracePeriodCriticalPods: 750ms\n";
        let g = parse(Some((Path::new("c"), text)), &[], &[]).unwrap();
        assert_eq!(g.iter().map(|g| g.seconds).collect::<Vec<_>>(), [9]);
        let text = "shutdownGracePeriod: 10s\nshutdownGracePeriodCriticalPods: 20s\n";
        assert!(parse(Some((Path::new("c"), text)), &[], &[]).unwrap().is_empty());
        let text = "shutdownGracePeriod: 30s\nshutdownGracePeriodByPodPriority:\n- priority: 0\n- shutdownGracePeriodSeconds: 15\n";
        let g = parse(Some((Path::new("c"), text)), &[], &[]).unwrap();
        assert_eq!(g.iter().map(|g| g.seconds).collect::<Vec<_>>(), [15], "{g:?}");
        assert!(g[0].setting.contains("priority 0 gets 15 s"), "{}", g[0].setting);
    }

    #[test]
    fn a_config_dir_is_walked_as_kubelet_walks_it_and_what_is_read_is_bounded() {
        let dir = std::env::temp_dir().join(format!("observer-dropins-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("20-nested")).unwrap();
        std::fs::create_dir_all(dir.join("x.conf")).unwrap();
        std::fs::write(
            dir.join("10-soft.conf"),
            "evictionSoft: {memory.available: 1Gi}\nevictionMaxPodGracePeriod: 4\n",
        )
        .unwrap();
        std::fs::write(dir.join("20-nested/5-max.conf"), "evictionMaxPodGracePeriod: 6\n").unwrap();
        std::fs::write(dir.join("30-max.conf"), "evictionMaxPodGracePeriod: 8\n").unwrap();
        std::fs::write(dir.join("README"), "not a drop-in").unwrap();
        let files = drop_in_files(&dir).unwrap();
        let names: Vec<String> =
            files.iter().map(|p| p.strip_prefix(&dir).unwrap().display().to_string()).collect();
        assert_eq!(names, ["10-soft.conf", "20-nested/5-max.conf", "30-max.conf"]);
        // Through a real process whose argv names the directory: the last file wins.
        let (mut child, proc_pid) = kubelet_with(&format!("--config-dir={}", dir.display()));
        let got = of_kubelet(&proc_pid, &Mounted::default());
        drop(child.stdin.take());
        child.wait().unwrap();
        match got {
            NodeGraces::Read { graces, from } => {
                assert_eq!(graces.iter().map(|g| g.seconds).collect::<Vec<_>>(), [8]);
                assert!(from.contains("**/*.conf"), "{from}");
            }
            other => panic!("{other:?}"),
        }
        // A FIFO is refused without blocking; a file past the bound is refused.
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(read_to_string(&fifo), Err(GracesError::NotAFile(_))));
        let big = dir.join("big.yaml");
        std::fs::write(&big, vec![b'#'; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(matches!(read_to_string(&big), Err(GracesError::TooLarge(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest::proptest! {
        /// What a process posing as kubelet hands over (its argv, its files): an error or
        /// graces, never a panic.
        #[test]
        fn graces_never_panic_on_any_configuration(
            text in "(evictionSoft|evictionMaxPodGracePeriod|shutdownGracePeriod|shutdownGracePeriodCriticalPods|shutdownGracePeriodByPodPriority|priority|shutdownGracePeriodSeconds|[:{}\\[\\], \n-]|[0-9]{1,20}|[a-z.]{1,6}|null|\"){0,40}",
            argv in proptest::collection::vec("(--(config|config-dir|eviction-soft|eviction-max-pod-grace-period)=?)?.{0,12}", 0..6),
        ) {
            let _ = parse(Some((Path::new("c"), &text)), &[(PathBuf::from("d"), text.clone())], &argv);
            let _ = flag(&argv, "config");
        }
    }

    #[test]
    fn a_bad_configuration_is_a_clear_error_never_a_guess() {
        let e = parse(Some((Path::new("/c.yaml"), "shutdownGracePeriod: soon\n")), &[], &[]);
        assert!(e.unwrap_err().to_string().contains("shutdownGracePeriod"));
        let e = parse(Some((Path::new("/c.yaml"), "evictionMaxPodGracePeriod: [1]\n")), &[], &[]);
        assert!(e.unwrap_err().to_string().contains("/c.yaml"));
        let e = parse(None, &[], &argv(&["kubelet", "--eviction-max-pod-grace-period=x"]));
        assert!(e.is_err());
    }

    #[test]
    fn a_real_process_configuration_is_read_through_its_proc_root_and_cwd() {
        let dir = std::env::temp_dir().join(format!("observer-graces-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("config.yaml");
        std::fs::write(&config, CONFIG).unwrap();
        let (mut child, proc_pid) = kubelet_with(&format!("--config={}", config.display()));
        let got = of_kubelet(&proc_pid, &Mounted::default());
        // A mounted copy named instead: read from there, the flags still from the cmdline.
        let mounted = dir.join("mounted.yaml");
        std::fs::write(
            &mounted,
            "evictionSoft: {memory.available: 1Gi}\nevictionMaxPodGracePeriod: 9\n",
        )
        .unwrap();
        let other =
            of_kubelet(&proc_pid, &Mounted { config: Some(mounted.clone()), config_dir: None });
        drop(child.stdin.take());
        child.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        match got {
            NodeGraces::Read { graces, from } => {
                assert_eq!(graces.len(), 3, "{graces:?}");
                assert!(from.contains("config.yaml"), "{from}");
            }
            NodeGraces::Unknown(why) | NodeGraces::Starting(why) => panic!("{why}"),
        }
        match other {
            NodeGraces::Read { graces, from } => {
                assert_eq!(graces.iter().map(|g| g.seconds).collect::<Vec<_>>(), [9]);
                assert!(from.contains("mounted.yaml"), "{from}");
            }
            NodeGraces::Unknown(why) | NodeGraces::Starting(why) => panic!("{why}"),
        }
        // A process caught inside its execve (or a zombie) has an empty cmdline: not yet read.
        let fake = dir.with_extension("starting");
        std::fs::create_dir_all(&fake).unwrap();
        std::fs::write(fake.join("cmdline"), "").unwrap();
        assert!(matches!(of_kubelet(&fake, &Mounted::default()), NodeGraces::Starting(_)));
        std::fs::remove_dir_all(&fake).unwrap();
        let missing = of_kubelet(Path::new("/proc/nonexistent"), &Mounted::default());
        assert!(
            matches!(missing, NodeGraces::Unknown(ref w) if w.contains("cmdline")),
            "{missing:?}"
        );
    }
}
