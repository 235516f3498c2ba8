//! The vlanswitch dataplane: 802.1Q frames, the forwarding decision, the MAC table (FDB), port
//! I/O and the worker threads.
//!
//! Guarantees:
//! - A frame never leaves on its ingress port and never crosses VLANs; frames leave each port
//!   tagged or untagged exactly as the port's mode says ([`forward`], property-tested).
//! - The per-frame path takes no lock and makes no heap allocation: configuration is an
//!   immutable [`config::Snapshot`] loaded atomically once per worker wakeup, the
//!   [`fdb::Fdb`] is a lock-free table, counters are atomics, events go to a per-worker ring
//!   ([`events`]).
//! - The pure core, [`wire`], [`config`], [`fdb`], [`forward`], [`trace`], [`gso`],
//!   [`counters`] and [`events`], makes no syscall on the per-frame path and reads no clock (time is an
//!   argument; the FDB's table memory is mapped once, when it is made, by [`sys`]); it depends on no
//!   I/O type (a snapshot is generic over its ports' handle, [`config::Snapshot<H>`]). Each of
//!   these modules starts with `#![forbid(unsafe_code)]`, so the compiler holds them to it. The
//!   syscalls and `unsafe` live in [`sys`] (epoll, eventfd, table memory, prefetch) and
//!   [`port`] (taps, packet sockets, netlink); [`switch`], the workers and [`reaper`] put the
//!   two together and have no `unsafe` of their own either.
//! - GSO super-frames and partial checksums pass through with their `virtio_net_hdr`, adjusted
//!   when a tag is pushed or popped ([`wire::VnetHdr::shifted`]). For an egress port that
//!   cannot take them (a vhost-user guest that did not negotiate the offload), [`gso`]
//!   completes the checksum or segments in software, every header fixed; taps and packet
//!   sockets take both as they are.

pub mod config;
pub mod counters;
pub mod events;
pub mod fdb;
pub mod forward;
pub mod gso;
pub mod port;
pub mod reaper;
mod shared;
pub mod switch;
pub mod sys;
pub mod trace;
pub mod watch;
pub mod wire;
mod worker;

pub use config::{PortId, PortMode};

/// The running switch's snapshot: its ports' handles are the shared [`Port`]s.
pub type Snapshot = config::Snapshot<std::sync::Arc<Port>>;
/// A port of the running switch's snapshot.
pub type PortEntry = config::PortEntry<std::sync::Arc<Port>>;
pub use port::Port;
pub use switch::{Switch, SwitchOptions};
