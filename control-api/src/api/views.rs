//! The API's response types. They derive `Deserialize` too, so that `switchctl` reads the
//! server's answers into the same types the server writes.

use std::collections::BTreeMap;

use dataplane::counters::{DropReason, MacEvent};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::diff::Change;
use crate::topology::{LimitAction, Port};

/// Live state of a port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PortState {
    /// `up` when attached to its interface, `down` otherwise.
    pub link: String,
    /// Why the port is down, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// MAC addresses learned (or configured) on the port.
    pub learned_macs: usize,
    /// Port security as it applies now.
    pub security: SecurityState,
    /// Traffic and drops.
    pub counters: Counters,
}

/// Port security of a port as it applies now: the limits in force (the port's own or the
/// switch's default) and whether it has shut the port down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SecurityState {
    /// The MAC limit in force.
    pub max_macs: u32,
    /// Learned (dynamic) MACs that count against it.
    pub dynamic_macs: u32,
    /// What a frame from a new source beyond a limit gets.
    pub mac_limit_action: LimitAction,
    /// True while port security has shut the port down (`POST .../enable` ends it).
    pub shutdown: bool,
}

/// A port: its configuration (the topology-file fields) and its live state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PortView {
    /// Configuration.
    #[serde(flatten)]
    pub config: Port,
    /// Live state (read-only).
    pub state: PortState,
}

/// Port counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Counters {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Drops by reason: bad_frame, vlan_not_allowed, tagged_on_access, fdb_no_room (source not
    /// learned; frame still flooded), tx_error, no_such_port, link_down, rx_overrun, mac_limit
    /// (source not learned: a MAC limit; the frame is dropped unless the action is flood),
    /// mac_not_allowed, port_disabled.
    pub drops: BTreeMap<String, u64>,
    /// Learning events on this port: mac_moves (MACs that moved here), mac_flaps (of those,
    /// moves that made the MAC flap), mac_damped (moves here refused by damping).
    pub mac_events: BTreeMap<String, u64>,
}

impl From<dataplane::counters::CounterValues> for Counters {
    fn from(v: dataplane::counters::CounterValues) -> Self {
        Counters {
            rx_packets: v.rx_packets,
            rx_bytes: v.rx_bytes,
            tx_packets: v.tx_packets,
            tx_bytes: v.tx_bytes,
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.name().to_string(), v.drop_count(*r)))
                .collect(),
            mac_events: MacEvent::ALL
                .iter()
                .map(|e| (e.name().to_string(), v.event_count(*e)))
                .collect(),
        }
    }
}

/// A VLAN with its member ports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VlanView {
    /// VLAN id.
    pub id: u16,
    /// Label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Ports that carry it.
    pub ports: Vec<String>,
}

/// One MAC table entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FdbEntryView {
    /// VLAN id.
    pub vlan: u16,
    /// MAC address.
    pub mac: String,
    /// Port name.
    pub port: String,
    /// `dynamic` (learned) or `static` (configured).
    #[serde(rename = "type")]
    pub kind: String,
    /// Seconds since last seen (0 for static entries).
    pub age_secs: u32,
}

/// Per-VLAN traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VlanStats {
    /// VLAN id.
    pub id: u16,
    /// Frames classified into the VLAN.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Frames flooded (unknown unicast, broadcast, multicast).
    pub flooded: u64,
    /// MAC addresses in the table for this VLAN.
    pub learned_macs: usize,
}

/// MAC table totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FdbStats {
    /// Entries now.
    pub entries: usize,
    /// Capacity.
    pub max_entries: usize,
    /// New entries learned since start.
    pub learned: u64,
    /// MAC moves between ports.
    pub moves: u64,
    /// Source MACs not learned because the table was full.
    pub no_room: u64,
    /// Entries removed by aging.
    pub aged: u64,
    /// Source MACs not learned (or not moved) because of a port or VLAN MAC limit.
    pub limited: u64,
    /// Moves that made a MAC count as flapping.
    pub flaps: u64,
    /// Moves refused because the MAC was flapping and damped.
    pub damped: u64,
}

/// All counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Stats {
    /// Per port, by name.
    pub ports: BTreeMap<String, Counters>,
    /// Per VLAN (every VLAN that exists).
    pub vlans: Vec<VlanStats>,
    /// The MAC table.
    pub fdb: FdbStats,
}

/// What a topology apply did (or would do, on a dry run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApplyResult {
    /// True if nothing was changed because `dry_run` was set.
    pub dry_run: bool,
    /// The changes, in the order applied.
    pub changes: Vec<Change>,
}

/// How many MAC entries a flush or delete removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Removed {
    /// Entries removed.
    pub removed: usize,
}
