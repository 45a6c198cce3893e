//! Command line: `observer run | check | drill | report | cleanup | install-seccomp`. Only the
//! composition lives here: each subcommand owns its arguments and their parsers ([`RunArgs`],
//! [`CheckArgs`], [`DrillArgs`], [`ReportArgs`]), shared groups live with their concern
//! (`kernel::loader::ProbeArgs`, `metadata::resolver::MetadataArgs`), and every duration is
//! read by [`crate::duration`].

use clap::{Parser, Subcommand};

use crate::{
    check::CheckArgs, daemon::args::RunArgs, drill::args::DrillArgs, report::args::ReportArgs,
};

/// observer's command line.
#[derive(Debug, Parser)]
#[command(
    name = "observer",
    version,
    about = "Watches how Kubernetes containers die",
    long_about = "observer attaches eBPF probes to signal generation, signal delivery and process \
        exit, and records for every container the runtime stops: stop signal -> exit time, \
        whether the stop signal was ignored or handled, whether SIGKILL was needed, and why. \
        It exports Prometheus metrics and keeps a JSON-lines journal."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands, each with its own arguments.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node daemon: probes, correlation, metrics, journal.
    Run(RunArgs),
    /// Preflight: can this node run observer? Exit status 0 when every check passes.
    ///
    /// One line per requirement, PASS or FAIL with the remedy: kernel version, kernel BTF,
    /// tracefs (mounted when missing and root), each tracepoint and the record fields the
    /// probes read, cgroup v2, privileges, and that every BPF program loads.
    Check(CheckArgs),
    /// Stop a workload the way kubelet stops a container, and report what the kernel saw.
    ///
    /// Runs CMD as PID 1 of a fresh pid and mount namespace in a kubepods cgroup of its own,
    /// then carries out kubelet's sequence: preStop (with the grace period as its budget),
    /// the stop signal, SIGKILL when the remaining window (at least 2 s) runs out. Prints a
    /// timeline and a verdict with the fix, or with --json one journal record. Exit status:
    /// 0 exited gracefully, 3 SIGKILL was needed, 4 preStop overran (no SIGKILL), 1 error,
    /// 2 usage.
    Drill(DrillArgs),
    /// Post-incident analysis of the journal: which pods were SIGKILLed, and why.
    ///
    /// A summary per workload (terminations, graceful/killed/OOM, p50/p95/max stop signal ->
    /// exit, stop signals ignored, preStop overruns), then the forced kills, newest first, with
    /// the reason in words. Reads rotated files (FILE.N .. FILE.1, FILE) in time order; corrupt
    /// or truncated lines are skipped and counted in a closing warning.
    Report(ReportArgs),
    /// Detach the probes and remove their pins: the step when the DaemonSet is removed.
    ///
    /// `observer run` leaves its maps and program links pinned under --pin-dir so the kernel
    /// keeps recording while no daemon runs (a restart, a rollout). This removes every layout's
    /// links (their programs stop) and maps, then the directory. Refused while a daemon holds
    /// the directory's lock.
    Cleanup(CleanupArgs),
    /// Install the daemon's seccomp profile for kubelet: the DaemonSet's init container.
    ///
    /// Checks that --profile is a seccomp profile, then writes it to --to atomically (a
    /// temporary file beside it, synced, renamed over it), so the runtime that creates the
    /// daemon's container with it never reads half a file.
    InstallSeccomp(crate::privileges::InstallArgs),
    /// Attach an empty program at each of observer's hooks until stdin closes (the cost floor
    /// `cargo xtask bench` compares observer's programs with), and a one-load reference where
    /// observer's filter is one array load; prints them as JSON first.
    #[command(hide = true)]
    Floor {
        /// The empty programs alone.
        #[arg(long)]
        empty_only: bool,
    },
}

/// `observer cleanup`'s arguments.
#[derive(Debug, clap::Args)]
pub struct CleanupArgs {
    /// The pin directory `observer run` was given.
    #[arg(long, default_value = "/sys/fs/bpf/observer", env = "OBSERVER_PIN_DIR")]
    pub pin_dir: std::path::PathBuf,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::{error::ErrorKind, CommandFactory as _};

    use super::*;
    use crate::duration::GRAMMAR;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("observer").chain(args.iter().copied()))
            .map(|c| c.command)
    }

    fn drill(args: &[&str]) -> DrillArgs {
        let all: Vec<&str> = ["drill"].iter().chain(args).chain(&["--", "true"]).copied().collect();
        match parse(&all).unwrap() {
            Command::Drill(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_duration_flag_states_the_one_grammar_once() {
        let mut flags = Vec::new();
        for sub in Cli::command().get_subcommands() {
            for arg in sub.get_arguments() {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                let is_duration =
                    arg.get_value_names().is_some_and(|v| v.iter().any(|n| n == "DURATION"));
                let name = format!("{} --{}", sub.get_name(), arg.get_long().unwrap_or("?"));
                if is_duration {
                    assert_eq!(help.matches(GRAMMAR).count(), 1, "{name}: {help}");
                    flags.push(name);
                } else {
                    assert!(!help.contains(GRAMMAR), "{name}");
                }
            }
        }
        flags.sort();
        assert_eq!(
            flags,
            [
                "drill --grace-period",
                "drill --prestop-sleep",
                "drill --start-after",
                "report --since",
                "run --cri-timeout",
            ]
        );
    }

    #[test]
    fn duration_flags_keep_their_defaults_and_take_the_grammar() {
        let d = drill(&[]);
        assert_eq!((d.grace_period, d.start_after), (30, Duration::from_secs(1)));
        let d = drill(&["--grace-period", "1m", "--start-after", "1h30m", "--prestop-sleep", "5"]);
        assert_eq!(d.grace_period, 60);
        assert_eq!(d.start_after, Duration::from_secs(5400));
        assert_eq!(d.prestop_sleep, Some(5));
        assert_eq!(drill(&["--start-after", "0.5s"]).start_after, Duration::from_millis(500));
        match parse(&["run", "--cri-timeout", "300ms"]).unwrap() {
            Command::Run(r) => assert_eq!(r.metadata.cri_timeout, Duration::from_millis(300)),
            other => panic!("{other:?}"),
        }
        match parse(&["run"]).unwrap() {
            Command::Run(r) => assert_eq!(r.metadata.cri_timeout, Duration::from_secs(2)),
            other => panic!("{other:?}"),
        }
        match parse(&["report", "--since", "500ms"]).unwrap() {
            Command::Report(r) => assert_eq!(r.since, Some(chrono::Duration::milliseconds(500))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn out_of_bounds_durations_are_usage_errors_that_say_why() {
        for (args, says) in [
            (&["run", "--cri-timeout", "25h"][..], "bad duration \"25h\": at most 24h"),
            (&["drill", "--start-after", "2d", "--", "true"], "at most 24h"),
            (&["drill", "--grace-period", "1.5s", "--", "true"], "whole seconds only"),
            (&["drill", "--prestop-sleep", "500ms", "--", "true"], "whole seconds only"),
            (&["report", "--since", "yesterday"], GRAMMAR),
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "{args:?}");
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains(says), "{args:?}: {e}");
        }
    }
}
