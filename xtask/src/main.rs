//! `cargo xtask`: what cargo alone cannot do. Setup of the eBPF toolchain and the Debian
//! packages the tests need (idempotent, saying what it does), the release build, running the
//! daemon as root, and the full test suite as CI runs it.
mod bench;
mod bench_load;
mod bench_metrics;
mod bench_report;
mod bench_stats;
mod fuzz;
mod image;
mod setup;
mod vm;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing: nightly rust-src, bpf-linker, Debian packages for the tests.
    Setup,
    /// Setup, then build target/release/observer (static, the eBPF object embedded).
    Build,
    /// Setup, build, and run the daemon as root with working defaults.
    Run {
        /// Extra arguments for `observer run` (after --).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Setup, build, then measure observer: each program's ns per run against an empty one at
    /// its hook (the kernel's bpf_stats), throughput A/B, load (stops, watched containers),
    /// `observer report` on a 100,000-record journal, and the metrics of 100,000 uniquely named
    /// pods. Writes target/bench/bench.json.
    Bench {
        /// Only the report and metrics benchmarks (no root needed).
        #[arg(long)]
        report_only: bool,
        /// Only the kernel's per-program figures (a minute).
        #[arg(long, conflicts_with = "report_only")]
        kernel_only: bool,
        /// Only the load runs (stops, watched containers, the signal storm; a few minutes).
        #[arg(long, conflicts_with_all = ["report_only", "kernel_only"])]
        load_only: bool,
    },
    /// Setup, then the daemon's OCI image (static binary on scratch, umoci): prints digest and size.
    Image,
    /// Setup, build, then every test: formatting, clippy, unit tests and fuzzing (the unit
    /// tier, no root), then the root integration tests (the root tier). CI runs both.
    Test {
        /// Only tests whose name contains this (passed to the test harness).
        filter: Option<String>,
        /// unit (no root), root, or all.
        #[arg(long, value_enum, default_value = "all")]
        tier: Tier,
    },
    /// Setup, then the fuzz step's `never_panic` properties far longer than `cargo xtask
    /// test` runs them, a seed printed per round to replay it (see xtask/src/fuzz.rs).
    Fuzz(fuzz::Args),
}

/// Generated inputs per property in `cargo xtask test`'s fuzz step (26 properties: the node
/// input parsers, kernel BTF, durations; and in observer/src/fuzz.rs ring-buffer records and
/// `ENDED` entries, event streams through the correlator and the record path, the journal's
/// repair at open, `/terminations` query strings and filters, loader-shaped BTF, the costlier
/// of those on a quarter or half of the cases; about 65 s on two cores once built).
/// `cargo xtask fuzz` runs the same properties longer.
const FUZZ_CASES: &str = "200000";

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Setup => setup::all(),
        Cmd::Build => {
            setup::all()?;
            build_release()
        }
        Cmd::Run { args } => {
            setup::all()?;
            build_release()?;
            run_daemon(&args)
        }
        Cmd::Bench { report_only, kernel_only, load_only } => {
            setup::all()?;
            build_release()?;
            if load_only {
                require_root("cargo xtask bench")?;
                return bench::run_load();
            }
            if !kernel_only {
                bench_report::run()?;
                bench_metrics::run()?;
            }
            if report_only {
                return Ok(());
            }
            require_root("cargo xtask bench")?;
            bench::run(kernel_only)
        }
        Cmd::Image => {
            setup::all()?;
            image::print(&image::build()?);
            Ok(())
        }
        Cmd::Test { filter, tier } => {
            if tier == Tier::Unit {
                setup::toolchain()?;
            } else {
                setup::all()?;
            }
            test(filter.as_deref(), tier)
        }
        Cmd::Fuzz(args) => {
            setup::toolchain()?;
            fuzz::run(&args)
        }
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").into()
}

/// Runs a command in the workspace root, echoing it; fails with its status.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: $ {}", display(cmd));
    let status = cmd
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("spawning {}", display(cmd)))?;
    if !status.success() {
        bail!("{} failed: {status}", display(cmd));
    }
    Ok(())
}

pub fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Builds the release daemon: statically linked (the image's and the kernel matrix's binary
/// too, so one release build serves all), and placed at `target/release/observer` as well,
/// where the README, the tests and the benches look for it.
fn build_release() -> Result<()> {
    let built = image::static_binary(&image::host_triple()?)?;
    let bin = workspace_root().join("target/release/observer");
    std::fs::create_dir_all(bin.parent().expect("a directory"))?;
    let tmp = bin.with_extension("new");
    std::fs::copy(&built, &tmp).with_context(|| format!("copying {}", built.display()))?;
    std::fs::rename(&tmp, &bin)?;
    eprintln!("xtask: built {} (static, eBPF object embedded)", bin.display());
    Ok(())
}

fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} needs root (eBPF, tracefs, cgroups, runc): run it with sudo or as root");
    }
    Ok(())
}

fn run_daemon(extra: &[String]) -> Result<()> {
    require_root("cargo xtask run")?;
    let bin = workspace_root().join("target/release/observer");
    let listen = "127.0.0.1:9464";
    let journal = "/var/lib/observer/terminations.jsonl";
    eprintln!("xtask: observer starts now; look at:");
    eprintln!("  metrics:  curl -s http://{listen}/metrics | grep container_termination");
    eprintln!("  health:   curl -s http://{listen}/healthz");
    eprintln!("  journal:  tail -f {journal}");
    eprintln!("  Ctrl-C stops it; its probes stay pinned (the kernel keeps recording for the");
    eprintln!("  next run): `target/release/observer cleanup` detaches them.");
    let mut cmd = Command::new(bin);
    cmd.args(["run", "--listen", listen, "--journal", journal]).args(extra);
    run(&mut cmd)
}

/// Which tests `cargo xtask test` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Tier {
    /// Formatting, clippy, unit tests and the bounded fuzz step: no root needed.
    Unit,
    /// The release build, the image, and the root integration tests (kernel matrix included).
    Root,
    /// Both, in that order (what CI runs).
    All,
}

fn test(filter: Option<&str>, tier: Tier) -> Result<()> {
    if tier != Tier::Unit {
        require_root("cargo xtask test (the root tier; `--tier unit` needs no root)")?;
    }
    if tier != Tier::Root {
        unit_tier(filter)?;
    }
    if tier != Tier::Unit {
        root_tier(filter)?;
    }
    Ok(())
}

fn unit_tier(filter: Option<&str>) -> Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--package",
        "observer",
        "--package",
        "xtask",
        "--package",
        "observer-tests",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // Unit tests (pure logic, plus a few that read this kernel's BTF and mounts).
    let mut unit = cargo();
    unit.args([
        "test",
        "--package",
        "observer",
        "--package",
        "observer-ebpf",
        "--package",
        "xtask",
    ]);
    if let Some(f) = filter {
        unit.args(["--", f]);
    }
    run(&mut unit)?;
    // Fuzzing, bounded: what the node hands us (cgroup paths, kubelet's log layout, pod names,
    // kubelet's annotations and preStop JSON, kernel BTF, ring-buffer records, event streams
    // into the correlator and the record path, a journal's torn tail, /terminations queries)
    // under many more generated inputs than the unit run's default, in release mode. Any panic
    // or broken property fails the run. Built in the release configuration of the daemon
    // itself, so the two share their compiled dependencies. Nothing is stepped around: the
    // bugs the properties found are fixed (`cargo xtask fuzz --skip-known` is for those that
    // are not yet, each marked `KNOWN` in observer/src/fuzz.rs).
    if filter.is_none() {
        let host = image::host_triple()?;
        let mut fuzz = image::static_cargo(&host, &["test", "--package", "observer", "--lib"]);
        fuzz.args(["--", "never_panic"]).env("PROPTEST_CASES", FUZZ_CASES);
        run(&mut fuzz)?;
    }
    Ok(())
}

fn root_tier(filter: Option<&str>) -> Result<()> {
    // Root integration tests drive the release binary, as a node would run it, and the image.
    build_release()?;
    image::print(&image::build()?);
    let mut it = cargo();
    it.args(["test", "--package", "observer-tests"])
        .env("OBSERVER_BIN", workspace_root().join("target/release/observer"))
        // The kernel matrix (tests/tests/kernels.rs): the static daemon in its VMs and natively,
        // and the kernels `setup::all` fetched.
        .env("OBSERVER_STATIC_BIN", vm::static_binary()?)
        .env("OBSERVER_VM_KERNELS", vm::kernels_dir());
    it.arg("--");
    if let Some(f) = filter {
        it.arg(f);
    }
    run(&mut it)
}
