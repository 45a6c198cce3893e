//! The deploy path's test tools: Debian's Prometheus on loopback (own port, own TSDB in a
//! directory of its own, ended by PID), a minimal HTTP/1.0 client for its API, the
//! Prometheus text format as observer serves it, and the README's metrics reference.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::unique;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").into()
}

/// A Prometheus server scraping one target, with observer's rules loaded.
pub struct Prometheus {
    child: Child,
    pub addr: String,
    pub dir: PathBuf,
}

impl Prometheus {
    /// Starts `prometheus` scraping `target` (host:port) every second as job "observer", with
    /// `rule_files` evaluated every second; returns once it answers /-/ready.
    pub fn start(target: &str, rule_files: &[PathBuf]) -> Self {
        let bin = which("prometheus")
            .expect("prometheus is not installed: `cargo xtask setup` installs Debian's");
        let dir = std::env::temp_dir().join(unique("observer-prom-"));
        std::fs::create_dir_all(dir.join("data")).expect("prometheus dir");
        let rules: Vec<String> =
            rule_files.iter().map(|p| format!("  - {}", p.display())).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n{}\nscrape_configs:\n  - job_name: observer\n    static_configs:\n      \
             - targets: ['{target}']\n",
            rules.join("\n")
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("prometheus.yml");
        let addr = format!("127.0.0.1:{}", crate::free_port());
        let child = Command::new(bin)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("log file"))
            .spawn()
            .expect("spawn prometheus");
        let p = Self { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while p.get("/-/ready").map(|(s, _)| s != 200).unwrap_or(true) {
            assert!(Instant::now() < deadline, "prometheus not ready in 30 s:\n{}", p.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    pub fn get(&self, path_and_query: &str) -> Result<(u16, String)> {
        http_get(&self.addr, path_and_query)
    }

    /// An API call; fails unless Prometheus answers `"status": "success"`.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value> {
        let query: Vec<String> =
            params.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
        let (status, body) = self.get(&format!("{path}?{}", query.join("&")))?;
        let v: Value = serde_json::from_str(&body)
            .with_context(|| format!("{path} answered {status}: {body}"))?;
        if v["status"] != "success" {
            bail!("{path} {params:?}: {status} {}: {}", v["errorType"], v["error"]);
        }
        Ok(v["data"].clone())
    }

    /// Instant query: the result vector (or scalar) as Prometheus returns it.
    pub fn query(&self, expr: &str) -> Result<Value> {
        self.api("/api/v1/query", &[("query", expr)])
    }

    /// Range query over the last `minutes` at 1 s steps, up to the next whole second (a
    /// sample written this second is included).
    pub fn query_range(&self, expr: &str, minutes: u64) -> Result<Value> {
        let end = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
            + 1;
        let (start, end) = ((end - minutes * 60).to_string(), end.to_string());
        self.api(
            "/api/v1/query_range",
            &[("query", expr), ("start", &start), ("end", &end), ("step", "1")],
        )
    }

    /// Polls `expr` until it returns at least one series, or fails after `timeout`.
    pub fn wait_for(&self, expr: &str, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.query(expr).unwrap_or_else(|e| panic!("{expr}: {e:#}"));
            let series = r["result"].as_array().cloned().unwrap_or_default();
            let real = series.iter().any(|s| s["value"][1].as_str().is_some_and(|v| v != "NaN"));
            if real {
                return series;
            }
            assert!(
                Instant::now() < deadline,
                "{expr} returned nothing but NaN or no series in {timeout:?}: {r}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        crate::stop_child(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// HTTP/1.0 GET on loopback: (status, body). No chunked encoding: the server closes the
/// connection after the body.
pub fn http_get(addr: &str, path_and_query: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let resp = String::from_utf8_lossy(&resp);
    let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// Finds an executable on PATH or in /usr/bin, /usr/sbin.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/bin", "/usr/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// Percent-encodes a query component (RFC 3986 unreserved characters pass).
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A metric family as exposed: its type, help and the label names its samples carry
/// (without `le`/`quantile`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Family {
    pub kind: String,
    pub help: String,
    pub labels: BTreeSet<String>,
}

/// Parses Prometheus text exposition into families by name.
pub fn parse_exposition(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            families.entry(name.into()).or_default().help = help.into();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            families.entry(name.into()).or_default().kind = kind.into();
        } else if !line.starts_with('#') && !line.is_empty() {
            let series = line.rsplit_once(' ').map_or(line, |(s, _)| s);
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|suffix| name.strip_suffix(suffix))
                .find(|base| families.get(*base).is_some_and(|f| f.kind == "histogram"))
                .unwrap_or(name);
            let entry = families.entry(family.into()).or_default();
            for pair in split_labels(labels.trim_end_matches('}')) {
                if pair != "le" && pair != "quantile" {
                    entry.labels.insert(pair);
                }
            }
        }
    }
    families
}

/// Label names of `a="x",b="y"` (values may hold escaped quotes and commas).
fn split_labels(s: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = s;
    while let Some((name, after)) = rest.split_once("=\"") {
        names.push(name.trim_start_matches(',').trim().to_string());
        let mut escaped = false;
        let end = after
            .char_indices()
            .find(|&(_, c)| {
                let close = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                close
            })
            .map_or(after.len(), |(i, _)| i + 1);
        rest = &after[end..];
    }
    names
}

/// One row of the README's metrics reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentedMetric {
    pub kind: String,
    pub labels: BTreeSet<String>,
    pub meaning: String,
}

/// The table under the README's "### Metrics reference" heading:
/// `| \`name\` | type | label, label | meaning |`.
pub fn readme_metrics(readme: &str) -> Result<BTreeMap<String, DocumentedMetric>> {
    let start = readme
        .find("### Metrics reference")
        .context("README has no \"### Metrics reference\" section")?;
    let mut out = BTreeMap::new();
    for line in readme[start..].lines().skip(1).skip_while(|l| !l.starts_with('|')) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() != 4 || cells[0] == "name" || cells[0].starts_with("---") {
            continue;
        }
        let name = cells[0].trim_matches('`').to_string();
        let labels = cells[2]
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_string())
            .filter(|l| !l.is_empty())
            .collect();
        out.insert(
            name,
            DocumentedMetric { kind: cells[1].into(), labels, meaning: cells[3].into() },
        );
    }
    if out.is_empty() {
        bail!("the README's metrics reference has no rows");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_families_types_and_labels() {
        let text = "# HELP h_seconds H\n# TYPE h_seconds histogram\n\
            h_seconds_bucket{namespace=\"a,\\\"b\",le=\"1\"} 1\nh_seconds_sum{namespace=\"x\"} 1\n\
            h_seconds_count{namespace=\"x\"} 1\n# HELP c_total C\n# TYPE c_total counter\nc_total 3\n";
        let f = parse_exposition(text);
        assert_eq!(f.len(), 2);
        assert_eq!(f["h_seconds"].kind, "histogram");
        assert_eq!(f["h_seconds"].labels, BTreeSet::from(["namespace".to_string()]));
        assert_eq!(f["c_total"].help, "C");
        assert!(f["c_total"].labels.is_empty());
    }

    #[test]
    fn readme_table_rows() {
        let md = "x\n### Metrics reference\n\ntext\n\n| name | type | labels | meaning |\n\
            |---|---|---|---|\n| `a_total` | counter | x, `y` | what |\n| `g` | gauge | | g |\n\nafter\n";
        let m = readme_metrics(md).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m["a_total"].labels, BTreeSet::from(["x".to_string(), "y".to_string()]));
        assert!(m["g"].labels.is_empty());
        assert!(readme_metrics("no table").is_err());
    }

    #[test]
    fn query_components_are_encoded() {
        assert_eq!(encode("up{job=\"o\"} > 0"), "up%7Bjob%3D%22o%22%7D%20%3E%200");
    }
}
