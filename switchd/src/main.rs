//! `switchd`: the vlanswitch daemon. Parses arguments and hands over to [`daemon`] or [`demo`].

mod cli;
mod daemon;
mod demo;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    daemon::init_logging();
    let result = match args.command {
        Some(cli::Command::Check { files }) => daemon::check(&files),
        Some(cli::Command::Demo { workers }) => {
            demo::run(workers.unwrap_or_else(cli::default_workers))
        }
        None => match args.topology {
            Some(path) => daemon::run(&path, args.workers.unwrap_or_else(cli::default_workers)),
            None => Err(anyhow::anyhow!(
                "nothing to run: give --topology FILE, or try `switchd demo` (see --help)"
            )),
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("switchd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
