//! `cargo xtask bench` (also `--report-only`, no root needed): the daemon's metrics after
//! 100,000 uniquely named pods each ended once, before and after the bound on label sets.
//!
//! `observer/examples/metrics_cardinality.rs` does the work, in the release configuration of
//! the daemon itself, once per variant in a process of its own (so one variant's heap is not
//! the next one's): `unbounded` (every pod its own workload, nothing removed: the daemon before
//! the bound), `bounded` (the same records under it), `bare` (the workload the daemon gives a
//! bare pod now: none). It reports the heap the metrics hold (a counting allocator), the RSS
//! growth, the scrape's size and the best of three renders.

use anyhow::{Context as _, Result};

const VARIANTS: [&str; 3] = ["unbounded", "bounded", "bare"];

pub fn run() -> Result<()> {
    let host = crate::image::host_triple()?;
    let build = ["build", "--package", "observer", "--example", "metrics_cardinality"];
    crate::run(&mut crate::image::static_cargo(&host, &build))?;
    let bin = crate::workspace_root()
        .join("target")
        .join(&host)
        .join("release/examples/metrics_cardinality");
    println!("\nmetrics: 100,000 uniquely named pods, each ended once (a SIGKILL after an ignored SIGTERM)");
    println!(
        "{:<12} {:>10} {:>14} {:>12} {:>10} {:>11}",
        "variant", "heap MiB", "RSS growth MiB", "scrape MiB", "render s", "observe s"
    );
    let mib = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN) / 1048576.0;
    for variant in VARIANTS {
        let out = std::process::Command::new(&bin)
            .arg(variant)
            .output()
            .with_context(|| bin.display().to_string())?;
        if !out.status.success() {
            anyhow::bail!("{} {variant}: {}", bin.display(), String::from_utf8_lossy(&out.stderr));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("{variant}: {}", String::from_utf8_lossy(&out.stdout)))?;
        println!(
            "{variant:<12} {:>10.1} {:>14.1} {:>12.2} {:>10.3} {:>11.2}",
            mib(&v, "heap_bytes"),
            mib(&v, "rss_growth_bytes"),
            mib(&v, "scrape_bytes"),
            v["render_seconds"].as_f64().unwrap_or(f64::NAN),
            v["observe_seconds"].as_f64().unwrap_or(f64::NAN),
        );
    }
    Ok(())
}
