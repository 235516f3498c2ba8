//! `switchd demo`: the lab ([`crate::lab`]) of the embedded two-tenant topology, whose
//! `hosts:` put each VM tap in a network namespace and whose `expect:` list is the isolation
//! the demo shows.

use std::process::ExitCode;

use crate::exit::Failure;
use crate::lab;

/// The demo topology, embedded so that the demo needs no file.
pub const TOPOLOGY: &str = include_str!("../../topologies/two-tenants.yaml");

/// The demo's lab id: its namespaces are `vslab-demo-vm1` and so on.
pub const LAB_ID: &str = "demo";

/// Runs the demo lab until SIGINT/SIGTERM (or, with `--check`, checks it), then removes
/// everything it made.
pub fn run(o: lab::Options) -> Result<ExitCode, Failure> {
    lab::run(
        lab::Source::Embedded {
            id: LAB_ID,
            text: TOPOLOGY,
        },
        o,
    )
}
