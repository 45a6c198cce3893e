//! `cargo xtask fuzz`: the `never_panic` properties of `cargo xtask test`'s bounded fuzz step
//! (every parser of node input, ring-buffer records, event streams through the correlator and
//! the record path, the journal's repair, `/terminations` queries, kernel BTF), run far longer.
//!
//! Each round is one `cargo test` of the properties, built as the bounded step builds them
//! (release, static), with `PROPTEST_CASES` cases per property (a property that does file I/O
//! or runs two pipelines per case takes its share of them, `observer/src/fuzz.rs` `scaled`) and
//! a fresh `PROPTEST_RNG_SEED`, printed before the round starts: proptest draws every case from
//! it, so `--seed` with the same `--cases` replays a round. A failure is also persisted by
//! proptest in `observer/proptest-regressions/<module>.txt`, which every later run (this one,
//! `cargo xtask test`, `cargo test`) tries first; commit the line with the fix.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

/// Cases per property in a round when only `--cases` bounds the run: ten times the bounded
/// step's (about 7 minutes on two cores).
pub const DEFAULT_CASES: u64 = 2_000_000;
/// Cases per property in each round of a `--minutes` run: the bounded step's, so that the run
/// ends within a round of its time and each round has a seed of its own.
pub const ROUND_CASES: u64 = 200_000;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Cases per property in a round [default: 2000000; 200000 per round with --minutes].
    #[arg(long)]
    cases: Option<u64>,
    /// Run rounds, each with a fresh seed, until this many minutes have passed (the round
    /// running then is finished).
    #[arg(long, conflicts_with = "seed")]
    minutes: Option<u64>,
    /// Replay one round: the seed a run printed (with the --cases it ran).
    #[arg(long)]
    seed: Option<u64>,
    /// Only properties whose name contains this (each property's name contains never_panic).
    #[arg(long, default_value = "never_panic")]
    filter: String,
    /// Step around the bugs the properties found that are not fixed yet (FUZZ_SKIP_KNOWN, each
    /// marked KNOWN in observer/src/fuzz.rs), to look for new ones.
    #[arg(long)]
    skip_known: bool,
}

/// A seed no earlier run chose: the kernel's randomness.
fn fresh_seed() -> Result<u64> {
    let mut b = [0u8; 8];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

pub fn run(args: &Args) -> Result<()> {
    let host = crate::image::host_triple()?;
    let cases =
        args.cases.unwrap_or(if args.minutes.is_some() { ROUND_CASES } else { DEFAULT_CASES });
    let deadline = args.minutes.map(|m| Instant::now() + Duration::from_secs(m * 60));
    let started = Instant::now();
    for round in 1.. {
        let seed = match args.seed {
            Some(s) => s,
            None => fresh_seed().context("reading /dev/urandom for a seed")?,
        };
        eprintln!(
            "xtask: fuzz round {round}: {cases} cases per property, PROPTEST_RNG_SEED={seed} \
             (replay: cargo xtask fuzz --seed {seed} --cases {cases})"
        );
        let mut cmd =
            crate::image::static_cargo(&host, &["test", "--package", "observer", "--lib"]);
        cmd.args(["--", &args.filter])
            .env("PROPTEST_CASES", cases.to_string())
            .env("PROPTEST_RNG_SEED", seed.to_string());
        if args.skip_known {
            cmd.env("FUZZ_SKIP_KNOWN", "1");
        }
        crate::run(&mut cmd).with_context(|| {
            format!(
                "fuzz round {round} (seed {seed}) found a failure: proptest printed the minimal \
                 input above and saved it in observer/proptest-regressions/; replay with \
                 `cargo xtask fuzz --seed {seed} --cases {cases}`"
            )
        })?;
        if deadline.is_none_or(|d| Instant::now() >= d) {
            eprintln!(
                "xtask: fuzz: {round} round(s) of {cases} cases per property passed in {} s",
                started.elapsed().as_secs()
            );
            return Ok(());
        }
    }
    unreachable!("the rounds end at the deadline")
}
