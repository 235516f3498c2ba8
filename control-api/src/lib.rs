//! The vlanswitch control plane: the topology model, the controller that runs it, and the
//! REST API.
//!
//! - [`topology`]: the types of a topology file (VLANs, ports, static MACs), read from YAML or
//!   JSON and written back as YAML. A [`Topology`] returned by [`Topology::from_yaml`] or
//!   [`Topology::from_path`] has passed [`Topology::validate`]: every VLAN id is in 1-4094,
//!   every VLAN a port uses is declared (or is VLAN 1, which always exists), port names are
//!   unique valid Linux interface names, each port has exactly the fields its mode calls for.
//!   Unknown fields are rejected, never ignored; every problem is reported at once, each as a
//!   [`FieldError`] naming the field (`ports[2].vlan`) and the reason. [`Topology::to_yaml`]
//!   reads back to an equal topology.
//! - [`lab`]: the lab sections of a topology file (`hosts:`, `expect:`), which the switch
//!   ignores but validates, and the pure part of `switchd lab`: namespace names, the plan of
//!   hosts and checks, the table of results.
//! - [`diff`]: the changes between two topologies (pure).
//! - [`edit`]: what the API's requests do to the desired topology (add a port, PATCH one,
//!   remove a VLAN, ...), as pure functions; the handlers then apply the result.
//! - [`Controller`]: runs a topology. Every change is a whole desired topology, validated,
//!   diffed, persisted atomically when a state file is set, and published to the dataplane as
//!   one snapshot; a failed change leaves the running switch as it was. It also re-attaches
//!   netdev ports when their interfaces vanish and return.
//! - [`state`]: the state file: [`state::persist`] writes it atomically after every change,
//!   [`state::load`] reads it at start and refuses a file with no configuration in it (empty,
//!   only whitespace or comments) like a corrupt one, so that a truncated file never wipes the
//!   configuration.
//! - [`api`]: the REST API (axum) over the controller, with its OpenAPI document. Client
//!   mistakes are 4xx `application/problem+json`; no request makes it panic.
//! - [`plan`]: what applying the changes does to the running port table (pure); the
//!   controller carries it out.
//! - [`snapshot`]: from a validated topology to the dataplane's configuration
//!   ([`build_snapshot`], [`port_entry`]).
//! - [`events`]: what `GET /api/v1/events` streams, the hub that fans it out and the
//!   per-stream rate bound (pure); [`eventlog`] and [`droplog`]: learning events and drops
//!   as log lines, rate-limited (pure).
//! - [`strict`]: a deserializer adapter under which structs accept maps only (not serde's
//!   sequence form), used for request bodies and topology files.

pub mod api;
pub mod controller;
pub mod diff;
pub mod droplog;
pub mod edit;
pub mod eventlog;
pub mod events;
pub mod lab;
pub mod pcapng;
pub mod plan;
pub mod snapshot;
pub mod state;
pub mod strict;
pub mod topology;
pub mod tunnels;
pub mod watch;

pub use controller::{ControlError, Controller};
pub use snapshot::{build_snapshot, port_entry, port_mode};

pub use topology::{
    FieldError, LimitAction, MacFlap, Mirror, MirrorDirection, Port, PortKind, PortMode, StaticMac,
    Topology, TopologyError, Vlan,
};
