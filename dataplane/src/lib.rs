//! The vlanswitch dataplane: 802.1Q frames, the forwarding decision, the MAC table (FDB), port
//! I/O and the worker threads.
//!
//! Guarantees:
//! - A frame never leaves on its ingress port and never crosses VLANs; frames leave each port
//!   tagged or untagged exactly as the port's mode says ([`forward`], property-tested).
//! - The per-frame path takes no lock and makes no heap allocation: configuration is an
//!   immutable [`config::Snapshot`] loaded atomically once per batch, the [`fdb::Fdb`] is a
//!   lock-free table, counters are atomics.
//! - [`wire`], [`config`], [`fdb`] and [`forward`] are pure: no syscalls, no clock (time is an
//!   argument). All syscalls and `unsafe` live in [`port`].
//! - GSO super-frames and partial checksums pass through with their `virtio_net_hdr`, adjusted
//!   when a tag is pushed or popped ([`wire::VnetHdr::shifted`]).

pub mod config;
pub mod counters;
pub mod events;
pub mod fdb;
pub mod forward;
pub mod port;
pub mod reaper;
pub mod switch;
pub mod wire;
mod worker;

pub use config::{PortEntry, PortId, PortMode, Snapshot};
pub use port::Port;
pub use switch::{Switch, SwitchOptions};
