//! The API's response types. They derive `Deserialize` too, so that `switchctl` reads the
//! server's answers into the same types the server writes.

use std::collections::BTreeMap;
use std::net::IpAddr;

use dataplane::counters::{DropReason, MacEvent};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::RefBuilder;
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::diff::Change;
use crate::topology::{LimitAction, MacAddr, Port, Vxlan};

/// Whether a metric only grows or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only grows (a Prometheus `counter`).
    Counter,
    /// Goes up and down (a Prometheus `gauge`).
    Gauge,
}

impl MetricKind {
    /// The Prometheus `# TYPE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
        }
    }
}

/// What a metric reads from one value: a number, or one number per label value.
#[derive(Debug, Clone, Copy)]
pub enum Sample<'a> {
    /// One number.
    Value(u64),
    /// One number per value of the label.
    ByLabel(&'static str, &'a BTreeMap<String, u64>),
}

/// One metric of a stats type `T`: declared once, next to the field it reads (see
/// `metrics!`), so that the JSON field and the `/metrics` line cannot drift apart.
pub struct Metric<T> {
    /// Its Prometheus name, without the `vlanswitch_` prefix.
    pub name: &'static str,
    /// Its `# HELP`.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// How to read it from a `T`.
    pub read: fn(&T) -> Sample<'_>,
}

/// A field a metric reads.
trait MetricField {
    fn sample(&self, label: Option<&'static str>) -> Sample<'_>;
}

impl MetricField for u64 {
    fn sample(&self, _: Option<&'static str>) -> Sample<'_> {
        Sample::Value(*self)
    }
}

impl MetricField for usize {
    fn sample(&self, _: Option<&'static str>) -> Sample<'_> {
        Sample::Value(u64::try_from(*self).unwrap_or(u64::MAX))
    }
}

impl MetricField for BTreeMap<String, u64> {
    fn sample(&self, label: Option<&'static str>) -> Sample<'_> {
        Sample::ByLabel(label.unwrap_or("key"), self)
    }
}

/// A stats struct whose `metrics { ... }` fields are each declared with their metric: the
/// field (its doc comment is the JSON schema's description) `=> Kind "name" [by "label"],
/// "help";`. Generates the struct and its `METRICS` table, in field order.
macro_rules! metrics {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$kmeta:meta])* pub $key:ident: $kty:ty,)*
        }
        metrics {
            $(
                $(#[$fmeta:meta])*
                pub $field:ident: $fty:ty =>
                    $kind:ident $metric:literal $(by $label:literal)?, $help:literal;
            )*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$kmeta])* pub $key: $kty,)*
            $($(#[$fmeta])* pub $field: $fty,)*
        }

        impl $name {
            /// Its metrics, one per counter field, in field order.
            pub const METRICS: &'static [Metric<$name>] = &[$(
                Metric {
                    name: $metric,
                    help: $help,
                    kind: MetricKind::$kind,
                    read: |s| MetricField::sample(&s.$field, metrics!(@label $($label)?)),
                },
            )*];
        }
    };
    (@label) => { None };
    (@label $label:literal) => { Some($label) };
}

/// A port's link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Link {
    /// Attached to its interface, and not shut down.
    Up,
    /// Not attached, its interface gone, or shut down by port security.
    Down,
}

impl Link {
    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

/// Live state of a port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PortState {
    /// `up` when attached to its interface, `down` otherwise.
    pub link: Link,
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
///
/// Its schema is written by hand (below), not derived: a derived one would be
/// `allOf: [Port, {state}]`, and since `Port` admits no other properties (it is
/// `deny_unknown_fields`), no port with a `state` could match it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortView {
    /// Configuration.
    #[serde(flatten)]
    pub config: Port,
    /// Live state (read-only).
    pub state: PortState,
}

/// `Port`'s own schema, each field as `Port` declares it, plus `state`: one closed object.
impl utoipa::PartialSchema for PortView {
    fn schema() -> RefOr<Schema> {
        let mut port = match <Port as utoipa::PartialSchema>::schema() {
            RefOr::T(Schema::Object(o)) => o,
            _ => unreachable!("Port's derived schema is an object"),
        };
        port.description =
            Some("A port: its configuration (the topology-file fields) and its live state.".into());
        port.properties.insert(
            "state".into(),
            RefOr::Ref(
                RefBuilder::new()
                    .ref_location_from_schema_name(PortState::name())
                    .description(Some("Live state (read-only)."))
                    .build(),
            ),
        );
        port.required.push("state".into());
        RefOr::T(Schema::Object(port))
    }
}

impl ToSchema for PortView {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <Port as ToSchema>::schemas(schemas);
        schemas.push((PortState::name().into(), PortState::schema()));
        <PortState as ToSchema>::schemas(schemas);
    }
}

metrics! {
    /// Port counters.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
    pub struct Counters {}
    metrics {
        /// Frames received.
        pub rx_packets: u64 => Counter "port_rx_packets_total", "Frames received.";
        /// Bytes received.
        pub rx_bytes: u64 => Counter "port_rx_bytes_total", "Bytes received.";
        /// Frames sent.
        pub tx_packets: u64 => Counter "port_tx_packets_total", "Frames sent.";
        /// Bytes sent.
        pub tx_bytes: u64 => Counter "port_tx_bytes_total", "Bytes sent.";
        /// Drops, one key per reason of the dataplane's `DropReason` (each reason's meaning is in
        /// the README's counter table). A frame that was forwarded is never a drop: sources
        /// that were not learned are counted under `mac_events`.
        pub drops: BTreeMap<String, u64> =>
            Counter "port_drops_total" by "reason", "Frames dropped, by reason.";
        /// Learning events on this port: mac_moves (MACs that moved here), mac_flaps (of those,
        /// moves that made the MAC flap), mac_damped (moves here refused by damping),
        /// fdb_no_room (sources not learned because the table was full) and
        /// mac_limit_not_learned (sources not learned because of a MAC limit, with the limit
        /// action flood); the frames of the last two were still forwarded.
        pub mac_events: BTreeMap<String, u64> => Counter "port_mac_events_total" by "event",
            "Learning events on the port: mac_moves, mac_flaps, mac_damped, fdb_no_room, mac_limit_not_learned.";
    }
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
    /// The VXLAN network identifier that carries it to other hosts, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// With a `vni`: the remote VTEPs its tunnel floods to (its own list, else the
    /// switch-wide one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub remotes: Option<Vec<IpAddr>>,
}

/// The switch as a VXLAN tunnel endpoint: its `vxlan` section and its tunnels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VxlanView {
    /// The `vxlan` section as configured; `null` when the switch is no VTEP.
    pub vxlan: Option<Vxlan>,
    /// One tunnel port per VLAN with a `vni`.
    pub tunnels: Vec<TunnelView>,
}

/// A VLAN's tunnel port, as it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TunnelView {
    /// The port (and kernel interface) name, `vxlan<vni>`.
    pub port: String,
    /// The VLAN it carries.
    pub vlan: u16,
    /// Its VXLAN network identifier.
    pub vni: u32,
    /// The remote VTEPs it floods to: the VLAN's own `remotes`, else `vxlan.remotes`.
    #[schema(value_type = Vec<String>)]
    pub remotes: Vec<IpAddr>,
    /// The tunnel interface's MTU; `null` when it cannot be read (no interface).
    pub mtu: Option<u32>,
    /// `up` when the port is attached to its interface.
    pub link: Link,
    /// Why the link is down, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One MAC table entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FdbEntryView {
    /// VLAN id.
    pub vlan: u16,
    /// MAC address.
    #[schema(value_type = String, example = "02:00:00:00:00:01")]
    pub mac: MacAddr,
    /// Port name.
    pub port: String,
    /// `dynamic` (learned) or `static` (configured).
    #[serde(rename = "type")]
    pub kind: FdbType,
    /// Seconds since last seen (0 for static entries).
    pub age_secs: u32,
    /// On a tunnel port: the remote VTEP the MAC is behind, as the kernel learned it (or as
    /// `vxlan.fdb` configures it). Absent on other ports, or when the kernel does not know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "192.0.2.2")]
    pub remote_vtep: Option<IpAddr>,
}

/// A MAC table entry's type (and the `type` filter of `/api/v1/fdb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FdbType {
    /// Learned.
    Dynamic,
    /// Configured.
    Static,
}

impl FdbType {
    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dynamic => "dynamic",
            Self::Static => "static",
        }
    }
}

metrics! {
    /// Per-VLAN traffic.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
    pub struct VlanStats {
        /// VLAN id.
        pub id: u16,
    }
    metrics {
        /// Frames classified into the VLAN.
        pub packets: u64 => Counter "vlan_packets_total", "Frames classified into the VLAN.";
        /// Their bytes.
        pub bytes: u64 =>
            Counter "vlan_bytes_total", "Bytes of the frames classified into the VLAN.";
        /// Frames flooded (unknown unicast, broadcast, multicast).
        pub flooded: u64 => Counter "vlan_flooded_total", "Frames flooded in the VLAN.";
        /// MAC addresses in the table for this VLAN.
        pub learned_macs: usize => Gauge "vlan_learned_macs", "MAC table entries in the VLAN.";
    }
}

metrics! {
    /// MAC table totals.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
    pub struct FdbStats {}
    metrics {
        /// Entries now.
        pub entries: usize => Gauge "fdb_entries", "MAC table entries.";
        /// Capacity.
        pub max_entries: usize => Gauge "fdb_max_entries", "MAC table capacity.";
        /// New entries learned since start.
        pub learned: u64 => Counter "fdb_learned_total", "MAC table entries learned.";
        /// MAC moves between ports.
        pub moves: u64 => Counter "fdb_moves_total", "MAC moves between ports.";
        /// Source MACs not learned because the table was full.
        pub no_room: u64 => Counter "fdb_no_room_total", "Source MACs not learned: table full.";
        /// Entries removed by aging.
        pub aged: u64 => Counter "fdb_aged_total", "MAC table entries aged out.";
        /// Source MACs not learned (or not moved) because of a port or VLAN MAC limit.
        pub limited: u64 => Counter "fdb_limited_total",
            "Source MACs not learned: a port or VLAN MAC limit.";
        /// Moves that made a MAC count as flapping.
        pub flaps: u64 => Counter "fdb_flaps_total", "Moves that made a MAC flap.";
        /// Moves refused because the MAC was flapping and damped.
        pub damped: u64 => Counter "fdb_damped_total", "Moves refused by flap damping.";
    }
}

metrics! {
    /// A port's link, as a number for `/metrics`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
    pub struct PortLink {}
    metrics {
        /// 1 while the port's link is up (attached to its interface or frontend, not shut
        /// down by port security), else 0: the `link` of the port's view.
        pub up: u64 => Gauge "port_up", "1 while the port's link is up, else 0.";
    }
}

/// All counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Stats {
    /// Per port, by name.
    pub ports: BTreeMap<String, Counters>,
    /// Each port's link, by name.
    pub links: BTreeMap<String, PortLink>,
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
