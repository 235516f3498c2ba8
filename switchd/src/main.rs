//! `switchd`: the vlanswitch daemon. Parses arguments and hands over to [`daemon`] or [`demo`].

mod cli;
mod daemon;
mod demo;
mod docs;
mod exit;
mod notify;
mod server;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = match cli::Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::Exit::Usage.into()
            } else {
                // --help, --version
                ExitCode::SUCCESS
            };
        }
    };
    daemon::init_logging(args.log_format);
    let workers = |w: Option<u16>| w.unwrap_or_else(cli::default_workers);
    let result = match args.command {
        Some(cli::Command::Check { files }) => daemon::check(&files),
        Some(cli::Command::GenerateDocs { dir }) => {
            use clap::CommandFactory;
            docs::write(cli::Args::command(), "8", &dir)
                .map(|()| ExitCode::SUCCESS)
                .map_err(|e| {
                    exit::Failure::new(
                        exit::Exit::IoError,
                        anyhow::Error::new(e).context(format!("writing into {}", dir.display())),
                    )
                })
        }
        Some(cli::Command::Demo { workers: w }) => demo::run(workers(w)).map_err(Into::into),
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
        Err(f) => {
            eprintln!("switchd: {:#}", f.error);
            f.code.into()
        }
    }
}
