//! `observer drill`'s arguments, and the parsers of its values.

use std::{path::PathBuf, time::Duration};

use clap::{ArgGroup, Args};

use crate::duration::{self, DurationError};

/// `observer drill`: kubelet's side of the stop (grace period, preStop hook, stop signal), the
/// workload, and where it runs.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("prestop").args(["prestop_exec", "prestop_http", "prestop_sleep"])))]
pub struct DrillArgs {
    /// terminationGracePeriodSeconds (or the deletion's grace): the budget of preStop and stop,
    /// in whole seconds. DURATION: a number and a unit (ms, s, m, h, d, w) or several, e.g.
    /// 500ms, 1.5s, 15m, 1h30m, 2d; a number alone is seconds.
    #[arg(
        long,
        value_name = "DURATION",
        default_value_t = crate::kubelet::DEFAULT_GRACE_PERIOD_SECONDS,
        value_parser = duration::parse_whole_seconds
    )]
    pub grace_period: u64,

    /// preStop exec hook: `sh -c CMD` inside the workload's namespaces and cgroup.
    #[arg(long, value_name = "CMD")]
    pub prestop_exec: Option<String>,

    /// preStop HTTP hook: GET this http:// URL.
    #[arg(long, value_name = "URL", value_parser = parse_http_url)]
    pub prestop_http: Option<HttpTarget>,

    /// preStop sleep hook of this long, in whole seconds. DURATION: a number and a unit (ms, s,
    /// m, h, d, w) or several, e.g. 500ms, 1.5s, 15m, 1h30m, 2d; a number alone is seconds.
    #[arg(long, value_name = "DURATION", value_parser = duration::parse_whole_seconds)]
    pub prestop_sleep: Option<u64>,

    /// The image's STOPSIGNAL.
    #[arg(long, value_name = "SIG", default_value = "SIGTERM", value_parser = crate::signals::parse)]
    pub stop_signal: u32,

    /// How long the workload runs before the stop begins, at most 24h. DURATION: a number and
    /// a unit (ms, s, m, h, d, w) or several, e.g. 500ms, 1.5s, 15m, 1h30m, 2d; a number alone
    /// is seconds.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_start_after)]
    pub start_after: Duration,

    /// Print one record in the journal schema instead of the timeline.
    #[arg(long)]
    pub json: bool,

    /// Cgroup path prefix the container's cgroup is made under (as for `observer run`).
    #[arg(long, default_value = "/kubepods")]
    pub cgroup_root: String,

    /// CRI mode: run the workload as a container of this CRI runtime (e.g.
    /// /run/containerd/containerd.sock) in a host-network pod sandbox, and carry the sequence
    /// out as kubelet does: ExecSync for an exec hook, StopContainer with the grace left.
    /// The runtime then picks the stop signal (the image's STOPSIGNAL); --stop-signal is not
    /// used.
    #[arg(long, value_name = "SOCKET", requires = "image")]
    pub cri_endpoint: Option<PathBuf>,

    /// CRI mode: the image to run (already pulled or imported on the node); CMD overrides
    /// its command.
    #[arg(long, value_name = "IMAGE", requires = "cri_endpoint")]
    pub image: Option<String>,

    /// The workload and its arguments. Its stdout and stderr go to the drill's stderr.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// The longest `--start-after`.
pub const MAX_START_AFTER: Duration = Duration::from_secs(24 * 3600);

fn parse_start_after(s: &str) -> Result<Duration, DurationError> {
    duration::parse_at_most(s, MAX_START_AFTER)
}

/// `http://host:port/path`, what kubelet's HTTP hook GETs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// Parses an `http://` URL for `--prestop-http` (https needs kubelet's client: not here).
pub fn parse_http_url(url: &str) -> Result<HttpTarget, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("{url:?}: bad port {p:?}"))?),
        None => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    Ok(HttpTarget { host: host.into(), port, path: path.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_after_takes_the_one_grammar_up_to_a_day() {
        assert_eq!(parse_start_after("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_start_after("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_start_after("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_start_after("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_start_after("24h"), Ok(MAX_START_AFTER));
        for bad in ["", "ms", "-1s", "abc", "NaNs"] {
            assert!(matches!(parse_start_after(bad), Err(DurationError::Syntax(_))), "{bad}");
        }
        let e = parse_start_after("100000m").unwrap_err().to_string();
        assert_eq!(e, "bad duration \"100000m\": at most 24h");
    }

    #[test]
    fn http_urls_parse_or_say_why_not() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:8080/shutdown?now=1"),
            Ok(HttpTarget { host: "127.0.0.1".into(), port: 8080, path: "/shutdown?now=1".into() })
        );
        assert_eq!(
            parse_http_url("http://localhost"),
            Ok(HttpTarget { host: "localhost".into(), port: 80, path: "/".into() })
        );
        assert!(parse_http_url("https://x/").is_err());
        assert!(parse_http_url("http://:80/").is_err());
        assert!(parse_http_url("http://x:99999/").is_err());
    }
}
