//! The vlanswitch control plane.
//!
//! Today this crate provides the topology model ([`topology`]): the types of a topology file
//! (VLANs and ports), reading them from YAML or JSON, writing them back as YAML, and their
//! validation. What it guarantees:
//!
//! - A [`Topology`] returned by [`Topology::from_yaml`] or [`Topology::from_path`] has passed
//!   [`Topology::validate`]: every VLAN id is in 1-4094, every VLAN a port uses is declared
//!   (or is VLAN 1, which always exists), port names are unique valid Linux interface names,
//!   and each port has exactly the fields its mode calls for.
//! - Unknown fields are rejected, never ignored; parse errors name the field path and line.
//! - Validation reports every problem at once, each as a [`FieldError`] naming the field
//!   (`ports[2].vlan`) and the reason.
//! - [`Topology::to_yaml`] produces a file that reads back to an equal topology.
//!
//! - [`build_snapshot`] turns a validated topology into the dataplane's configuration.
//! - [`Controller`] runs a topology: attaches its ports, starts the switch, and re-attaches
//!   netdev ports when their interfaces vanish and return.
//!
//! The REST API (and the topology's diff/apply) will be added to this crate later.

pub mod api;
pub mod build;
pub mod controller;
pub mod diff;
pub mod topology;

pub use build::{build_snapshot, port_mode};
pub use controller::{ControlError, Controller};

pub use topology::{
    FieldError, Port, PortKind, PortMode, StaticMac, Topology, TopologyError, Vlan,
};
