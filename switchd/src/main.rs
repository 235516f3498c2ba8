//! `switchd`: the vlanswitch daemon. Parses arguments and hands over to [`daemon`] or [`demo`].

mod cli;
mod daemon;
mod demo;
mod server;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    daemon::init_logging();
    let workers = |w: Option<u16>| w.unwrap_or_else(cli::default_workers);
    let result = match args.command {
        Some(cli::Command::Check { files }) => daemon::check(&files),
        Some(cli::Command::Demo { workers: w }) => demo::run(workers(w)),
        None => daemon::run(daemon::RunOptions {
            topology: args.topology,
            state: args.state,
            workers: dataplane::switch::Workers {
                count: workers(args.workers).into(),
                poll_window: std::time::Duration::from_micros(args.poll_us.into()),
            },
            listen: args.listen,
            token_file: args.token_file,
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("switchd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
