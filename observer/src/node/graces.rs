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

use std::path::{Path, PathBuf};

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
    #[error("{setting}: bad duration {value:?}: {reason}")]
    Duration { setting: &'static str, value: String, reason: String },
}

/// The fields of KubeletConfiguration (kubelet.config.k8s.io/v1beta1) that shorten a grace.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fields {
    eviction_max_pod_grace_period: Option<i64>,
    eviction_soft: Option<std::collections::BTreeMap<String, String>>,
    shutdown_grace_period: Option<String>,
    shutdown_grace_period_critical_pods: Option<String>,
    shutdown_grace_period_by_pod_priority: Option<Vec<ByPriority>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ByPriority {
    priority: i64,
    shutdown_grace_period_seconds: i64,
}

impl Fields {
    /// `over` on top of `self`: the fields `over` sets win (a drop-in, or the flags).
    fn merge(self, over: Fields) -> Fields {
        Fields {
            eviction_max_pod_grace_period: over
                .eviction_max_pod_grace_period
                .or(self.eviction_max_pod_grace_period),
            eviction_soft: over.eviction_soft.or(self.eviction_soft),
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

/// A Go `metav1.Duration` (`30s`, `1m30s`, `0s`) in whole seconds.
fn seconds_of(setting: &'static str, value: &str) -> Result<u64, GracesError> {
    crate::duration::parse(value).map(|d| d.as_secs()).map_err(|e| GracesError::Duration {
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
        .map(|v| v.split(',').filter(|t| !t.is_empty()).map(|t| (t.to_string(), String::new())))
        .map(|m| m.collect());
    Ok(Fields { eviction_max_pod_grace_period, eviction_soft, ..Fields::default() })
}

/// The graces `fields` give, each with its setting.
fn graces_of(f: &Fields) -> Result<Vec<Grace>, GracesError> {
    let mut graces = Vec::new();
    let soft = f.eviction_soft.as_ref().is_some_and(|m| !m.is_empty());
    if let (true, Some(max)) = (soft, f.eviction_max_pod_grace_period) {
        // 0 (the default) and anything up to 2 end in kubelet's floor: `kubelet_floor`.
        if max > 0 {
            graces.push(Grace {
                rule: Rule::SoftEviction,
                seconds: max as u64,
                setting: format!("evictionMaxPodGracePeriod: {max}"),
            });
        }
    }
    match &f.shutdown_grace_period_by_pod_priority {
        Some(groups) if !groups.is_empty() => {
            for g in groups.iter().filter(|g| g.shutdown_grace_period_seconds > 0) {
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
            let total = f
                .shutdown_grace_period
                .as_deref()
                .map(|v| seconds_of("shutdownGracePeriod", v))
                .transpose()?
                .unwrap_or(0);
            let critical = f
                .shutdown_grace_period_critical_pods
                .as_deref()
                .map(|v| seconds_of("shutdownGracePeriodCriticalPods", v))
                .transpose()?
                .unwrap_or(0);
            if total > 0 {
                let setting = format!(
                    "shutdownGracePeriod: {total}s, shutdownGracePeriodCriticalPods: {critical}s"
                );
                let regular = total.saturating_sub(critical);
                if regular > 0 {
                    graces.push(Grace {
                        rule: Rule::NodeShutdown,
                        seconds: regular,
                        setting: format!("{setting} (regular pods get {regular} s)"),
                    });
                }
                if critical > 0 {
                    graces.push(Grace {
                        rule: Rule::NodeShutdown,
                        seconds: critical,
                        setting: format!("{setting} (critical pods get {critical} s)"),
                    });
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

fn read_to_string(path: &Path) -> Result<String, GracesError> {
    std::fs::read_to_string(path)
        .map_err(|source| GracesError::Read { path: path.to_path_buf(), source })
}

/// Reads the configuration of the kubelet at `proc_pid` (`/proc/<pid>`): its cmdline, its
/// `--config` (or `config`, the file as this process reads it: a mount) and `--config-dir`.
/// Through /proc/<pid>/root the kernel checks ptrace access (fs/proc/base.c
/// `proc_root_link()`): another root process with more capabilities than ours takes
/// CAP_SYS_PTRACE (security/commoncap.c `cap_ptrace_access_check()`); the cmdline is
/// world-readable.
pub fn of_kubelet(proc_pid: &Path, config: Option<&Path>) -> NodeGraces {
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
        let config = match (config, flag(&argv, "config")) {
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
            let path = through(proc_pid, dir);
            let mut names: Vec<PathBuf> = std::fs::read_dir(&path)
                .map_err(|source| GracesError::Read { path: path.clone(), source })?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "conf"))
                .collect();
            names.sort();
            for p in names {
                let text = read_to_string(&p)?;
                drop_ins.push((p, text));
            }
            from.push(format!("{dir}/*.conf"));
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
        // A process whose argv is a kubelet's: `sh -c 'read x' kubelet --config=PATH` waits on
        // its stdin with those arguments in /proc/<pid>/cmdline.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read x", "kubelet"])
            .arg(format!("--config={}", config.display()))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let proc_pid = PathBuf::from(format!("/proc/{}", child.id()));
        // spawn() returns once the parent is released by the child's execve, before the new
        // image's arguments are in place: wait for them.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !std::fs::read_to_string(proc_pid.join("cmdline")).unwrap().contains("--config") {
            assert!(std::time::Instant::now() < deadline, "no --config in the cmdline");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let got = of_kubelet(&proc_pid, None);
        // A mounted copy named instead: read from there, the flags still from the cmdline.
        let mounted = dir.join("mounted.yaml");
        std::fs::write(
            &mounted,
            "evictionSoft: {memory.available: 1Gi}\nevictionMaxPodGracePeriod: 9\n",
        )
        .unwrap();
        let other = of_kubelet(&proc_pid, Some(&mounted));
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
        assert!(matches!(of_kubelet(&fake, None), NodeGraces::Starting(_)));
        std::fs::remove_dir_all(&fake).unwrap();
        let missing = of_kubelet(Path::new("/proc/nonexistent"), None);
        assert!(
            matches!(missing, NodeGraces::Unknown(ref w) if w.contains("cmdline")),
            "{missing:?}"
        );
    }
}
