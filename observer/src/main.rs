use clap::Parser as _;
use observer::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => {
            let report = observer::check::run(&args.probes.options(), true);
            println!("{report}");
            if report.passed() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Command::Run(_args) => std::process::ExitCode::FAILURE,
    }
}
