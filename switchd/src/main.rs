//! `switchd`: the vlanswitch daemon. Parses arguments and hands over to [`daemon`], [`lab`] or
//! [`demo`].

mod cli;
mod daemon;
mod demo;
mod docs;
mod exit;
mod lab;
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
    let poll_window = std::time::Duration::from_micros(args.poll_us.into());
    let lab_options = |a: cli::LabArgs| lab::Options {
        check: a.check,
        name: a.name,
        listen: a.listen,
        state: a.state,
        workers: dataplane::switch::Workers {
            count: workers(a.workers).into(),
            poll_window,
        },
    };
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
        Some(cli::Command::Lab { file, lab: a }) => {
            lab::run(lab::Source::File(file), lab_options(a))
        }
        Some(cli::Command::Demo { lab: a }) => demo::run(lab_options(a)),
        None => daemon::run(daemon::RunOptions {
            topology: args.topology,
            initial: None,
            state: args.state,
            workers: dataplane::switch::Workers {
                count: workers(args.workers).into(),
                poll_window,
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
