//! observer's entry point: parse the command line, set up logging, dispatch.
use std::process::ExitCode;

use clap::Parser as _;
use observer::cli::{Cli, Command};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match Cli::parse().command {
        Command::Check(args) => {
            let mut report = observer::check::run(&args.probes.options(), true);
            report.checks.push(observer::check::pins(&args.pin_dir));
            println!("{report}");
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Drill(args) => observer::drill::main(args),
        Command::Cleanup(args) => match observer::kernel::pins::cleanup(&args.pin_dir) {
            Ok(r) => {
                println!(
                    "{}: {} program links detached, {} maps unpinned",
                    args.pin_dir.display(),
                    r.links,
                    r.maps
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("observer: {e}");
                ExitCode::FAILURE
            }
        },
        Command::InstallSeccomp(args) => match observer::privileges::install_profile(&args) {
            Ok(done) => {
                println!("{done}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("observer: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Floor { empty_only } => match observer::kernel::floor::attach(empty_only) {
            Ok(_ebpf) => {
                println!("{}", observer::kernel::floor::describe(empty_only));
                // Attached until stdin closes (the bench holds it), or a signal ends us.
                let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("observer: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Report(args) => match observer::report::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("observer: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            let runtime = match observer::daemon::runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("observer: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(observer::daemon::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("observer: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
