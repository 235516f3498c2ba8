//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// A userspace 802.1Q VLAN switch: plugs taps and existing interfaces into isolated VLANs,
/// learns MACs per VLAN, and is configured by topology files or its REST API.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
pub struct Args {
    /// Topology file (YAML) with the switch's VLANs and ports. A state file that exists wins.
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
    /// Worker threads [default: number of cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: Option<u16>,
    /// Adaptive polling: microseconds a worker keeps polling its ports after its last frame
    /// before it sleeps (0: sleep at once). Saves wakeups under back-to-back traffic; an idle
    /// switch still sleeps.
    #[arg(long, value_name = "US", default_value_t = default_poll_us(),
          value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub poll_us: u32,
    /// Where the REST API listens: HOST:PORT, or unix:/PATH (mode 0600). A non-loopback
    /// address needs --token-file.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7380")]
    pub listen: String,
    /// File holding the bearer token the REST API requires.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// State file: every change is written here atomically, and restored from here on start.
    /// An empty or corrupt state file is refused: switchd does not start, and leaves it as is.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Log format on stderr: text lines with `key=value` fields (with syslog priorities in
    /// front under journald), or one JSON object per line. The level comes from `RUST_LOG`
    /// (default `info`).
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event, `key=value` fields.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the man page and shell completions into DIR (for packaging).
    #[command(hide = true)]
    GenerateDocs {
        /// Where to write them.
        dir: PathBuf,
    },
    /// Validate topology files; exits non-zero naming each problem.
    Check {
        /// Files to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Bring up a lab from a topology file: the switch, and a network namespace for each host
    /// of its `hosts:` section, until Ctrl-C or SIGTERM; then remove everything it made. With
    /// --check, run the file's `expect:` list instead, print the results and tear down.
    Lab {
        /// The topology file, with `hosts:` (and for --check, `expect:`).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        lab: LabArgs,
    },
    /// Bring up the two-tenant demo: the lab of the built-in topologies/two-tenants.yaml.
    Demo {
        #[command(flatten)]
        lab: LabArgs,
    },
}

/// The options of `switchd lab` and `switchd demo`.
#[derive(Debug, clap::Args)]
pub struct LabArgs {
    /// Build the lab, run the file's `expect:` list, print a table of the results, tear down;
    /// exits 65 if an expectation does not hold.
    #[arg(long)]
    pub check: bool,
    /// The lab's id, in its namespaces' names (`vslab-ID-HOST`): 1-24 of a-z, 0-9 and _
    /// [default: the file's name; the demo: demo].
    #[arg(long, value_name = "ID")]
    pub name: Option<String>,
    /// Where the REST API listens: HOST:PORT, or unix:/PATH. Loopback only.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7380")]
    pub listen: String,
    /// State file, as for the daemon (the hosts come from the file all the same).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Worker threads [default: number of cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: Option<u16>,
}

/// The switch's default polling window, in microseconds.
fn default_poll_us() -> u32 {
    dataplane::switch::DEFAULT_POLL_WINDOW.as_micros() as u32
}

/// One worker per core.
pub fn default_workers() -> u16 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(256) as u16)
}
