//! Network-namespace integration tests: the real `switchd` binary, tap ports whose kernel sides
//! are hosts in their own namespaces, real traffic with the kernel's default offloads.
//!
//! Run as root: `cargo test --release --workspace` (see tests/README.md).

mod harness;
mod lab;
mod vhost;
mod vm;

mod api;
mod api_limits;
mod churn;
mod cli;
mod events;
mod guests;
mod hooks;
mod hostile;
mod isolation;
mod lab_files;
mod netdev;
mod page;
mod restart;
mod security;
mod service;
mod tcp;
mod trunk;
mod vxlan;
mod vxlan_api;
mod watch;
