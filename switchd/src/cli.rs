//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// A userspace 802.1Q VLAN switch: plugs taps into isolated VLANs, learns MACs per VLAN.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
pub struct Args {
    /// Topology file (YAML) with the switch's VLANs and ports.
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
    /// Worker threads [default: number of cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: Option<u16>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate topology files; exits non-zero naming each problem.
    Check {
        /// Files to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Bring up the two-tenant demo: one network namespace per VM tap, addressed, until Ctrl-C.
    Demo {
        /// Worker threads [default: number of cores].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
        workers: Option<u16>,
    },
}

/// One worker per core.
pub fn default_workers() -> u16 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(256) as u16)
}
