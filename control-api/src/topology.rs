//! The topology file: the switch's whole desired configuration (VLANs and ports) as a
//! YAML document, its parsing and its validation.
//!
//! [`Topology::from_yaml`] and [`Topology::from_path`] return only topologies that passed
//! [`Topology::validate`]; a value built in code can be checked with the same function.
//! The file format is described in `topologies/README.md`. The lab sections (`hosts:`,
//! `expect:`) are [`crate::lab`]'s; they are validated here with the rest.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use dataplane::wire::MacAddr;

/// The lowest VLAN id that may appear in a configuration.
pub const VLAN_MIN: u16 = dataplane::config::VID_MIN;
/// The highest VLAN id that may appear in a configuration (4095 is reserved).
pub const VLAN_MAX: u16 = dataplane::config::VID_MAX;
/// The default VLAN. It always exists, whether or not `vlans` declares it.
pub const DEFAULT_VLAN: u16 = 1;
/// Longest port name, in bytes: a Linux interface name (`IFNAMSIZ` - 1).
pub const MAX_PORT_NAME_LEN: usize = dataplane::config::IFNAME_MAX;
/// Default for [`Topology::mac_aging_secs`].
pub const DEFAULT_MAC_AGING_SECS: u64 = 300;
/// Largest accepted [`Topology::mac_aging_secs`] (about 11.5 days, as on common hardware).
pub const MAX_MAC_AGING_SECS: u64 = 1_000_000;
/// Longest vhost-user socket path (a unix socket address holds 108 bytes with its NUL).
pub const MAX_SOCKET_PATH: usize = 107;
/// Default for [`Topology::fdb_max_entries`].
pub const DEFAULT_FDB_MAX_ENTRIES: usize = 65_536;
/// Largest accepted [`Topology::fdb_max_entries`] (2^24).
pub const MAX_FDB_ENTRIES: usize = 1 << 24;
/// Without `port_max_macs`, a port may learn at most this fraction of the table
/// (`fdb_max_entries / 8`), so that no single port can fill it for everyone.
pub const DEFAULT_PORT_SHARE: usize = 8;
/// Without `vlan_max_macs`, a VLAN may learn at most this fraction of the table
/// (`fdb_max_entries / 2`), so that no single VLAN can fill it for the others.
pub const DEFAULT_VLAN_SHARE: usize = 2;

/// The whole configuration of one switch instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Topology {
    /// Seconds after which a learned MAC address that has not been seen is forgotten.
    pub mac_aging_secs: u64,
    /// Capacity of the MAC table (FDB), all VLANs together.
    pub fdb_max_entries: usize,
    /// Declared VLANs. VLAN 1 exists implicitly and need not be listed.
    pub vlans: Vec<Vlan>,
    /// The switch ports, in file order.
    pub ports: Vec<Port>,
    /// Static MAC table entries: they never age and never move.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fdb: Vec<StaticMac>,
    /// The MAC limit of every port that sets no `max_macs` of its own. Absent:
    /// `fdb_max_entries / 8`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_max_macs: Option<u32>,
    /// The MAC limit of every VLAN that sets no `max_macs` of its own. Absent:
    /// `fdb_max_entries / 2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan_max_macs: Option<u32>,
    /// When a MAC that keeps moving between ports counts as flapping, and whether it is then
    /// held on its port (damped). Absent: 5 moves in 10 s, no damping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_flap: Option<MacFlap>,
    /// Port mirrors (SPAN): copies of frames of some ports or VLANs sent to an output port.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<Mirror>,
    /// This switch as a VXLAN tunnel endpoint (VTEP): the VLANs that name a `vni` reach
    /// other hosts through it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vxlan: Option<Vxlan>,
    /// Lab hosts (`switchd lab`): network namespaces on tap ports. The switch ignores them,
    /// and they are never written out (export, state file): see [`crate::lab`].
    #[serde(skip_serializing)]
    pub hosts: Vec<crate::lab::Host>,
    /// Lab expectations (`switchd lab --check`). Ignored by the switch and never written out,
    /// like `hosts`.
    #[serde(skip_serializing)]
    pub expect: Vec<crate::lab::Expect>,
}

/// A port mirror: copies of the frames its sources carry go to its output port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// The mirror's name (unique).
    pub name: String,
    /// The port the copies go to. While it is a mirror's output it is in no VLAN, receives
    /// nothing but the copies, and what it receives is dropped (`mirror_output`).
    pub output: String,
    /// Source ports: the frames they receive and/or send (`direction`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// Source VLANs: every frame that enters one of them, copied once, as received.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vlans: Vec<u16>,
    /// Which frames of the source ports: `rx` (received), `tx` (sent) or `both` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<MirrorDirection>,
    /// The copies leave the output port tagged with this VID (in place of any tag they had,
    /// its priority kept). Absent: as their source carried them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
}

/// The switch as a VXLAN tunnel endpoint (RFC 7348). Each VLAN with a `vni` gets a tunnel
/// port of kind `vxlan` named `vxlan<vni>`, made by the switch as a kernel VXLAN interface
/// and removed when the VLAN loses its VNI or the switch stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Vxlan {
    /// This host's tunnel address (IPv4 or IPv6): the outer source address.
    #[schema(value_type = String, example = "192.0.2.1")]
    pub local: IpAddr,
    /// The UDP port tunnels use, on both ends. Absent: 4789.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dstport: Option<u16>,
    /// The remote VTEPs every VNI floods to (broadcast, multicast and unknown unicast are
    /// sent to each: head-end replication), unless its VLAN lists its own `remotes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub remotes: Vec<IpAddr>,
    /// The underlay interface. Absent: the one that holds `local`. The tunnels' MTU is its
    /// MTU less 50 bytes (IPv4) or 70 (IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay: Option<String>,
    /// Static remote MACs: frames for `mac` in `vlan` go to VTEP `remote`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fdb: Vec<RemoteMac>,
}

impl Vxlan {
    /// The UDP port in force.
    pub fn dstport(&self) -> u16 {
        self.dstport
            .unwrap_or(dataplane::port::vxlan::DEFAULT_DSTPORT)
    }
}

/// A static remote MAC: frames for `mac` in `vlan` go through the VLAN's tunnel to VTEP
/// `remote`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoteMac {
    /// The VLAN; it must have a `vni`.
    pub vlan: u16,
    /// A unicast MAC address.
    #[schema(value_type = String, example = "02:00:00:00:00:01")]
    pub mac: MacAddr,
    /// The VTEP the MAC is behind.
    #[schema(value_type = String, example = "192.0.2.2")]
    pub remote: IpAddr,
}

/// The name of the tunnel port (and kernel interface) of VNI `vni`.
pub fn tunnel_name(vni: u32) -> String {
    format!("vxlan{vni}")
}

/// Which frames of a mirror's source ports it copies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MirrorDirection {
    /// Frames the ports receive.
    Rx,
    /// Frames the ports send.
    Tx,
    /// Both.
    #[default]
    Both,
}

impl Topology {
    /// The mirror whose output port is `port`, if any.
    pub fn mirror_output(&self, port: &str) -> Option<&Mirror> {
        self.mirrors.iter().find(|m| m.output == port)
    }
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            mac_aging_secs: DEFAULT_MAC_AGING_SECS,
            fdb_max_entries: DEFAULT_FDB_MAX_ENTRIES,
            vlans: Vec::new(),
            ports: Vec::new(),
            fdb: Vec::new(),
            port_max_macs: None,
            vlan_max_macs: None,
            mac_flap: None,
            mirrors: Vec::new(),
            vxlan: None,
            hosts: Vec::new(),
            expect: Vec::new(),
        }
    }
}

/// Flap detection and damping: a MAC that moves `moves` times within `window_secs` is
/// flapping (logged at warn, counted); with `damp_secs`, it then stays on the port it is on
/// until it has not moved for that long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MacFlap {
    /// Moves within the window that make a MAC flap (2-15).
    pub moves: u8,
    /// The window in seconds (1-1000).
    pub window_secs: u16,
    /// Seconds a flapping MAC is held on its port (0-1000; 0: never held).
    pub damp_secs: u16,
}

impl Default for MacFlap {
    fn default() -> Self {
        let d = dataplane::config::FlapPolicy::default();
        MacFlap {
            moves: d.moves,
            window_secs: d.window_secs,
            damp_secs: d.damp_secs,
        }
    }
}

/// What a port does with a frame whose new source MAC would go beyond the port's or its
/// VLAN's MAC limit.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LimitAction {
    /// Forward the frame but do not learn the source (frames to it are flooded in its VLAN).
    #[default]
    Flood,
    /// Drop the frame.
    Drop,
    /// Drop the frame and shut the port down until it is enabled again
    /// (`POST /api/v1/ports/{name}/enable`).
    Shutdown,
}

impl LimitAction {
    /// The name used in topology files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Flood => "flood",
            Self::Drop => "drop",
            Self::Shutdown => "shutdown",
        }
    }
}

/// A static MAC table entry: frames for `mac` in `vlan` always go to `port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticMac {
    /// The VLAN.
    pub vlan: u16,
    /// A unicast MAC address, `02:00:00:00:00:01`.
    #[schema(value_type = String, example = "02:00:00:00:00:01")]
    pub mac: MacAddr,
    /// The port; it must be a member of `vlan`.
    pub port: String,
}

/// A declared VLAN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Vlan {
    /// The VLAN id (VID), 1-4094.
    pub id: u16,
    /// A label for people; not used for forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Most MACs learned in this VLAN at once (all ports together). Absent: the switch's
    /// `vlan_max_macs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_macs: Option<u32>,
    /// The VXLAN network identifier (1-16777215) that carries this VLAN to other hosts
    /// (needs the `vxlan` section).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// This VLAN's flood list, in place of `vxlan.remotes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub remotes: Option<Vec<IpAddr>>,
}

/// A switch port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// The port's name, which is also the Linux interface name (at most 15 bytes).
    pub name: String,
    /// What the port is attached to.
    pub kind: PortKind,
    /// How VLANs are carried on the wire.
    pub mode: PortMode,
    /// Access ports only: the port's VLAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// Trunk ports only: the VLANs carried tagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlans: Option<Vec<u16>>,
    /// Trunk ports only: the VLAN carried untagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_vlan: Option<u16>,
    /// `true`: the switch sets the interface up when it attaches the port (and logs that it
    /// did). Absent or `false`: the interface's own state is left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_up: Option<bool>,
    /// Most MACs learned on this port at once. Absent: the switch's `port_max_macs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_macs: Option<u32>,
    /// What a frame from a new source beyond the port's or its VLAN's limit gets. Absent:
    /// `flood`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_limit_action: Option<LimitAction>,
    /// Only frames from these source MACs enter the port; others are dropped and counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub allowed_macs: Option<Vec<MacAddr>>,
    /// vhost-user ports only (required): the unix socket's absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// vhost-user ports only: `server` (default; switchd creates the socket and the VM
    /// connects to it) or `client` (the VM listens; switchd connects and retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_mode: Option<SocketMode>,
}

/// Who listens on a vhost-user port's socket.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SocketMode {
    /// switchd creates the socket and listens; QEMU connects (`reconnect=1`).
    #[default]
    Server,
    /// The VM's side listens (QEMU `server=on,wait=off`); switchd connects and retries.
    Client,
}

impl SocketMode {
    /// The name used in topology files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
        }
    }
}

/// What a port is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PortKind {
    /// A tap the switch creates (or opens, if a persistent tap of that name exists) and holds.
    Tap,
    /// An existing interface (a VM's tap, a veth, a NIC), attached with AF_PACKET.
    Netdev,
    /// A VM (QEMU, cloud-hypervisor) or DPDK application that shares its memory over a
    /// vhost-user unix socket: the switch serves its virtio rings itself.
    #[serde(rename = "vhost-user")]
    VhostUser,
    /// A VXLAN tunnel the switch makes for a VLAN with a `vni` (never declared in `ports`).
    Vxlan,
}

/// How VLANs are carried on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PortMode {
    /// One VLAN, untagged on the wire.
    Access,
    /// Several VLANs tagged (802.1Q), optionally one native VLAN untagged.
    Trunk,
}

impl PortKind {
    /// The name used in topology files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tap => "tap",
            Self::Netdev => "netdev",
            Self::VhostUser => "vhost-user",
            Self::Vxlan => "vxlan",
        }
    }
}

impl PortMode {
    /// The name used in topology files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Trunk => "trunk",
        }
    }
}

impl fmt::Display for PortKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for PortMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem in a topology: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error, utoipa::ToSchema)]
#[error("{path}: {reason}")]
pub struct FieldError {
    /// The field, written like `ports[2].vlans[0]`; `ports[2]` for the port as a whole.
    pub path: String,
    /// What is wrong with it, for people.
    pub reason: String,
}

/// Why a topology could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The file could not be read.
    #[error("cannot read topology file {}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// Why reading it failed.
        source: io::Error,
    },
    /// The text is not YAML of the topology's shape. The message names the field and the
    /// line, e.g. ``ports[2]: unknown field `foo`, expected one of ... at line 9 column 5``.
    #[error("cannot parse topology: {0}")]
    Parse(String),
    /// The topology has the right shape but breaks one or more rules; all are listed.
    #[error("invalid topology:{}", one_per_line(.0))]
    Invalid(Vec<FieldError>),
}

fn one_per_line(errors: &[FieldError]) -> String {
    errors.iter().map(|e| format!("\n  {e}")).collect()
}

impl Topology {
    /// Parses a topology from YAML (or JSON, which is YAML too) and validates it.
    ///
    /// ```
    /// use control_api::Topology;
    ///
    /// let topology = Topology::from_yaml(
    ///     "vlans: [{ id: 10 }]\nports: [{ name: vm1, kind: tap, mode: access, vlan: 10 }]",
    /// )?;
    /// assert_eq!(topology.ports[0].member_vlans(), [10]);
    /// assert_eq!(topology.mac_aging_secs, 300);
    /// # Ok::<(), control_api::TopologyError>(())
    /// ```
    pub fn from_yaml(text: &str) -> Result<Self, TopologyError> {
        // Strict: a struct (the topology, a port, ...) is a map, never serde's sequence form.
        let de = crate::strict::Strict(serde_yaml_ng::Deserializer::from_str(text));
        let topology = Self::deserialize(de).map_err(|e| TopologyError::Parse(e.to_string()))?;
        topology.validate()?;
        Ok(topology)
    }

    /// Reads, parses and validates a topology file. Only a read error names the path.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, TopologyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml(&text)
    }

    /// The topology as YAML that [`Topology::from_yaml`] reads back unchanged. Absent
    /// optional fields are left out.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self)
            .expect("a topology has only strings, integers, booleans, sequences and maps")
    }

    /// Checks every rule and reports every broken one, in file order, as
    /// [`TopologyError::Invalid`].
    pub fn validate(&self) -> Result<(), TopologyError> {
        let mut problems = Problems::default();
        problems.check_vxlan(self);
        // The rest is checked on the ports the switch runs, tunnels included, so that a
        // mirror or a static MAC may name a tunnel port.
        self.with_tunnel_ports().check(problems)
    }

    /// Every rule but the VXLAN ones, added to `problems`.
    fn check(&self, mut problems: Problems) -> Result<(), TopologyError> {
        if self.mac_aging_secs == 0 {
            problems.push("mac_aging_secs", "must be at least 1");
        } else if self.mac_aging_secs > MAX_MAC_AGING_SECS {
            problems.push(
                "mac_aging_secs",
                format!("must be at most {MAX_MAC_AGING_SECS}"),
            );
        }
        if !(1..=MAX_FDB_ENTRIES).contains(&self.fdb_max_entries) {
            problems.push(
                "fdb_max_entries",
                format!("must be between 1 and {MAX_FDB_ENTRIES}"),
            );
        }

        problems.check_max_macs("port_max_macs", self.port_max_macs);
        problems.check_max_macs("vlan_max_macs", self.vlan_max_macs);
        if let Some(f) = &self.mac_flap {
            if !(2..=15).contains(&f.moves) {
                problems.push("mac_flap.moves", "must be between 2 and 15");
            }
            let most = dataplane::fdb::MAX_FLAP_SECS;
            if !(1..=most).contains(&f.window_secs) {
                problems.push(
                    "mac_flap.window_secs",
                    format!("must be between 1 and {most}"),
                );
            }
            if f.damp_secs > most {
                problems.push("mac_flap.damp_secs", format!("must be at most {most}"));
            }
        }

        // The VLANs ports may use: the valid declared ones, and the default VLAN.
        let mut declared = BTreeSet::new();
        for (i, vlan) in self.vlans.iter().enumerate() {
            let path = format!("vlans[{i}].id");
            if let Some(reason) = vid_problem(vlan.id) {
                problems.push(path, reason);
            } else if !declared.insert(vlan.id) {
                problems.push(path, format!("{} is declared twice", vlan.id));
            }
            problems.check_max_macs(format!("vlans[{i}].max_macs"), vlan.max_macs);
        }
        declared.insert(DEFAULT_VLAN);

        let mut first_use: HashMap<&str, usize> = HashMap::new();
        let mut sockets: HashMap<String, usize> = HashMap::new();
        for (i, port) in self.ports.iter().enumerate() {
            let path = format!("ports[{i}].name");
            if let Some(reason) = interface_name_problem(&port.name) {
                problems.push(path.clone(), reason);
            }
            match first_use.get(port.name.as_str()) {
                Some(first) => problems.push(
                    path,
                    format!("{:?} is already used by ports[{first}]", port.name),
                ),
                None => {
                    first_use.insert(&port.name, i);
                }
            }
            problems.check_port_vlans(i, port, &declared);
            problems.check_socket(i, port, &mut sockets);
            problems.check_max_macs(format!("ports[{i}].max_macs"), port.max_macs);
            if let Some(macs) = &port.allowed_macs {
                if macs.is_empty() {
                    problems.push(
                        format!("ports[{i}].allowed_macs"),
                        "must list at least one MAC (leave it out to allow any)",
                    );
                }
                let mut seen = HashMap::new();
                for (j, &mac) in macs.iter().enumerate() {
                    let path = format!("ports[{i}].allowed_macs[{j}]");
                    if let Err(reason) = check_unicast(mac) {
                        problems.push(path, reason);
                    } else if let Some(first) = seen.insert(mac, j) {
                        problems.push(path, format!("{mac} is already listed at [{first}]"));
                    }
                }
            }
        }

        let mut seen_macs: HashMap<(u16, MacAddr), usize> = HashMap::new();
        for (i, entry) in self.fdb.iter().enumerate() {
            let mac = match check_unicast(entry.mac) {
                Ok(()) => Some(entry.mac),
                Err(reason) => {
                    problems.push(format!("fdb[{i}].mac"), reason);
                    None
                }
            };
            match self.port(&entry.port) {
                None => problems.push(
                    format!("fdb[{i}].port"),
                    format!("no port named {:?}", entry.port),
                ),
                Some(p) if !p.member_vlans().contains(&entry.vlan) => problems.push(
                    format!("fdb[{i}].vlan"),
                    format!(
                        "port {:?} is not a member of VLAN {}",
                        entry.port, entry.vlan
                    ),
                ),
                Some(_) => {}
            }
            if let Some(m) = mac {
                if let Some(first) = seen_macs.insert((entry.vlan, m), i) {
                    problems.push(
                        format!("fdb[{i}].mac"),
                        format!(
                            "{m} in VLAN {} is already listed at fdb[{first}]",
                            entry.vlan
                        ),
                    );
                }
            }
        }

        problems.check_mirrors(self);
        crate::lab::check(self, &mut problems);
        problems.into_result()
    }

    /// The topology without its lab sections (`hosts`, `expect`): what the switch runs. The
    /// controller keeps only this, so that a host never makes a later change (a port removed
    /// through the API) invalid.
    pub fn without_lab(mut self) -> Topology {
        self.hosts.clear();
        self.expect.clear();
        self
    }

    /// What the switch runs: this topology with a tunnel port (kind `vxlan`, access, set up)
    /// for every VLAN with a `vni`, after the declared ports, and the static remote MACs
    /// (`vxlan.fdb`) as static MAC entries on those ports.
    pub fn running(&self) -> Topology {
        let mut t = self.with_tunnel_ports();
        for m in self.vxlan.iter().flat_map(|x| &x.fdb) {
            if let Some(vni) = self.vni_of(m.vlan) {
                t.fdb.push(StaticMac {
                    vlan: m.vlan,
                    mac: m.mac,
                    port: tunnel_name(vni),
                });
            }
        }
        t
    }

    /// This topology with the tunnel ports of its VLANs' VNIs added.
    fn with_tunnel_ports(&self) -> Topology {
        let mut t = self.clone();
        if self.vxlan.is_some() {
            // One port per valid VNI, first VLAN wins; a VNI whose name a declared port took
            // has none (validation names those problems).
            let mut seen = BTreeSet::new();
            for v in &self.vlans {
                let Some(vni) = v
                    .vni
                    .filter(|n| (1..=dataplane::port::vxlan::VNI_MAX).contains(n))
                else {
                    continue;
                };
                if seen.insert(vni) && self.port(&tunnel_name(vni)).is_none() {
                    t.ports.push(Port {
                        name: tunnel_name(vni),
                        kind: PortKind::Vxlan,
                        mode: PortMode::Access,
                        vlan: Some(v.id),
                        vlans: None,
                        native_vlan: None,
                        admin_up: Some(true),
                        max_macs: None,
                        mac_limit_action: None,
                        allowed_macs: None,
                        socket: None,
                        socket_mode: None,
                    });
                }
            }
        }
        t
    }

    /// The VNI of VLAN `vid`, if it has one.
    pub fn vni_of(&self, vid: u16) -> Option<u32> {
        self.vlans.iter().find(|v| v.id == vid).and_then(|v| v.vni)
    }

    /// The flood list of VLAN `vid`'s tunnel: its own `remotes`, else `vxlan.remotes`.
    pub fn remotes_of(&self, vid: u16) -> Vec<IpAddr> {
        let own = self
            .vlans
            .iter()
            .find(|v| v.id == vid)
            .and_then(|v| v.remotes.clone());
        own.or_else(|| self.vxlan.as_ref().map(|x| x.remotes.clone()))
            .unwrap_or_default()
    }

    /// The VLANs that exist: VLAN 1 and every declared id, sorted.
    pub fn vlan_ids(&self) -> Vec<u16> {
        let ids: BTreeSet<u16> = self
            .vlans
            .iter()
            .map(|v| v.id)
            .chain([DEFAULT_VLAN])
            .collect();
        ids.into_iter().collect()
    }

    /// The port with this name, if any.
    pub fn port(&self, name: &str) -> Option<&Port> {
        self.ports.iter().find(|p| p.name == name)
    }

    /// The MAC limit that applies to port `p`: its own, else `port_max_macs`, else
    /// `fdb_max_entries / 8`.
    pub fn port_max_macs(&self, p: &Port) -> u32 {
        p.max_macs
            .or(self.port_max_macs)
            .unwrap_or_else(|| share(self.fdb_max_entries, DEFAULT_PORT_SHARE))
    }

    /// The MAC limit that applies to VLAN `vid`: its own, else `vlan_max_macs`, else
    /// `fdb_max_entries / 2`.
    pub fn vlan_max_macs(&self, vid: u16) -> u32 {
        self.vlans
            .iter()
            .find(|v| v.id == vid)
            .and_then(|v| v.max_macs)
            .or(self.vlan_max_macs)
            .unwrap_or_else(|| share(self.fdb_max_entries, DEFAULT_VLAN_SHARE))
    }

    /// The flap policy in force.
    pub fn mac_flap(&self) -> MacFlap {
        self.mac_flap.unwrap_or_default()
    }
}

/// `1/n` of a table of `entries`, at least 1.
fn share(entries: usize, n: usize) -> u32 {
    u32::try_from((entries / n).max(1)).unwrap_or(u32::MAX)
}

/// Why `m` is not a unicast address, if it is not (a static entry or an allowed source must
/// name one host).
fn check_unicast(m: MacAddr) -> Result<(), String> {
    if m.is_multicast() || m.is_zero() {
        return Err(format!("{m} is not a unicast address"));
    }
    Ok(())
}

impl Port {
    /// The VLANs this port is a member of, sorted and without duplicates: the access VLAN,
    /// or a trunk's tagged VLANs together with its native VLAN.
    pub fn member_vlans(&self) -> Vec<u16> {
        let mut vids: Vec<u16> = match self.mode {
            PortMode::Access => self.vlan.into_iter().collect(),
            PortMode::Trunk => self
                .vlans
                .iter()
                .flatten()
                .copied()
                .chain(self.native_vlan)
                .collect(),
        };
        vids.sort_unstable();
        vids.dedup();
        vids
    }

    /// The VLAN that untagged (and priority-tagged) frames on this port belong to: the
    /// access VLAN, or a trunk's native VLAN. `None` for a trunk without one, which drops
    /// untagged frames.
    pub fn untagged_vlan(&self) -> Option<u16> {
        match self.mode {
            PortMode::Access => self.vlan,
            PortMode::Trunk => self.native_vlan,
        }
    }

    /// Whether the switch should set the interface up when attaching it.
    pub fn brings_link_up(&self) -> bool {
        self.admin_up == Some(true)
    }
}

/// Why `vid` cannot be a VLAN id in a configuration, if it cannot.
fn vid_problem(vid: u16) -> Option<String> {
    // One rule for the whole project: the dataplane's.
    dataplane::config::check_vid(u32::from(vid))
        .err()
        .map(|e| e.to_string())
}

/// Why `a` cannot be a tunnel address (of the family `v4` says, if given), if it cannot.
pub(crate) fn address_problem(a: IpAddr, v4: Option<bool>) -> Option<String> {
    if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
        return Some(format!("{a} is not a unicast address"));
    }
    if v4.is_some_and(|v4| v4 != a.is_ipv4()) {
        return Some(format!(
            "{a} is not of vxlan.local's family (one underlay: all IPv4 or all IPv6)"
        ));
    }
    None
}

/// Why `name` cannot be a Linux interface name, if it cannot.
fn interface_name_problem(name: &str) -> Option<String> {
    // One rule for the whole project: the dataplane's.
    dataplane::config::check_ifname(name)
        .err()
        .map(|e| e.to_string())
}

/// The problems found so far.
#[derive(Default)]
pub(crate) struct Problems(Vec<FieldError>);

impl Problems {
    /// The VTEP and the VNIs: a VNI needs the `vxlan` section, is 1-16777215 and used once;
    /// addresses are unicast and of `local`'s family; no declared port is of kind `vxlan` or
    /// takes a tunnel's name; static remote MACs are unicast, once each, in VLANs with a VNI.
    fn check_vxlan(&mut self, t: &Topology) {
        let family = t.vxlan.as_ref().map(|x| x.local.is_ipv4());
        let check_remotes = |me: &mut Self, path: String, remotes: &[IpAddr]| {
            let mut seen = BTreeSet::new();
            for (j, r) in remotes.iter().enumerate() {
                let at = format!("{path}[{j}]");
                if let Some(why) = address_problem(*r, family) {
                    me.push(at, why);
                } else if t.vxlan.as_ref().is_some_and(|x| x.local == *r) {
                    me.push(
                        at,
                        format!("{r} is this switch's own address (vxlan.local)"),
                    );
                } else if !seen.insert(*r) {
                    me.push(at, format!("{r} is listed twice"));
                }
            }
        };
        if let Some(x) = &t.vxlan {
            if let Some(why) = address_problem(x.local, None) {
                self.push("vxlan.local", why);
            }
            if x.dstport == Some(0) {
                self.push("vxlan.dstport", "must be between 1 and 65535");
            }
            if let Some(u) = &x.underlay {
                if let Some(reason) = interface_name_problem(u) {
                    self.push("vxlan.underlay", reason);
                } else if t
                    .vlans
                    .iter()
                    .filter_map(|v| v.vni)
                    .any(|n| tunnel_name(n) == *u)
                    || t.port(u).is_some()
                {
                    self.push(
                        "vxlan.underlay",
                        format!(
                            "{u:?} is a port of this switch; name the interface toward the remotes"
                        ),
                    );
                }
            }
            check_remotes(self, "vxlan.remotes".into(), &x.remotes);
            let mut seen = HashMap::new();
            for (i, m) in x.fdb.iter().enumerate() {
                let at = |f: &str| format!("vxlan.fdb[{i}].{f}");
                if t.vni_of(m.vlan).is_none() {
                    self.push(at("vlan"), format!("VLAN {} has no vni", m.vlan));
                }
                if let Err(why) = check_unicast(m.mac) {
                    self.push(at("mac"), why);
                } else if let Some(first) = seen.insert((m.vlan, m.mac), i) {
                    self.push(
                        at("mac"),
                        format!(
                            "{} in VLAN {} is already listed at [{first}]",
                            m.mac, m.vlan
                        ),
                    );
                } else if t.fdb.iter().any(|f| f.vlan == m.vlan && f.mac == m.mac) {
                    self.push(
                        at("mac"),
                        format!("{} in VLAN {} is also in fdb", m.mac, m.vlan),
                    );
                }
                if let Some(why) = address_problem(m.remote, family) {
                    self.push(at("remote"), why);
                } else if m.remote == x.local {
                    self.push(
                        at("remote"),
                        format!("{} is this switch's own address (vxlan.local)", m.remote),
                    );
                }
            }
        }
        let mut vnis = HashMap::new();
        for (i, v) in t.vlans.iter().enumerate() {
            if let Some(vni) = v.vni {
                let at = format!("vlans[{i}].vni");
                let max = dataplane::port::vxlan::VNI_MAX;
                if t.vxlan.is_none() {
                    self.push(at, "needs the vxlan section (at least vxlan.local)");
                } else if !(1..=max).contains(&vni) {
                    self.push(at, format!("must be between 1 and {max}"));
                } else if let Some(first) = vnis.insert(vni, i) {
                    self.push(at, format!("{vni} is already the VNI of vlans[{first}]"));
                }
            }
            if let Some(r) = &v.remotes {
                if v.vni.is_none() {
                    self.push(
                        format!("vlans[{i}].remotes"),
                        "only a VLAN with a vni has remotes",
                    );
                }
                check_remotes(self, format!("vlans[{i}].remotes"), r);
            }
        }
        for (i, p) in t.ports.iter().enumerate() {
            if p.kind == PortKind::Vxlan {
                self.push(
                    format!("ports[{i}].kind"),
                    "vxlan ports are made by the switch: give the VLAN a vni instead",
                );
            } else if let Some(vni) = vnis.keys().find(|v| tunnel_name(**v) == p.name) {
                self.push(
                    format!("ports[{i}].name"),
                    format!("{:?} is the name of VNI {vni}'s tunnel port", p.name),
                );
            }
        }
    }

    /// Each mirror: a unique name; an output port that exists, is no source of any mirror and
    /// the output of this mirror only; source ports that exist (at least one source); VLANs
    /// and the copies' tag 1-4094.
    fn check_mirrors(&mut self, t: &Topology) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut outputs: HashMap<&str, usize> = HashMap::new();
        let sources: BTreeSet<&str> = t
            .mirrors
            .iter()
            .flat_map(|m| m.ports.iter().map(String::as_str))
            .collect();
        for (i, m) in t.mirrors.iter().enumerate() {
            let at = |f: &str| format!("mirrors[{i}].{f}");
            if m.name.is_empty() {
                self.push(at("name"), "must not be empty");
            } else if let Some(first) = names.insert(&m.name, i) {
                self.push(
                    at("name"),
                    format!("{:?} is already used by mirrors[{first}]", m.name),
                );
            }
            if t.port(&m.output).is_none() {
                self.push(at("output"), format!("no port named {:?}", m.output));
            } else if sources.contains(m.output.as_str()) {
                self.push(
                    at("output"),
                    format!(
                        "port {:?} is a mirror's source; an output cannot be one",
                        m.output
                    ),
                );
            } else if let Some(first) = outputs.insert(&m.output, i) {
                self.push(
                    at("output"),
                    format!(
                        "port {:?} is already the output of mirrors[{first}]",
                        m.output
                    ),
                );
            }
            if m.ports.is_empty() && m.vlans.is_empty() {
                self.push(
                    at("ports"),
                    "a mirror needs a source: ports, vlans, or both",
                );
            }
            for (j, p) in m.ports.iter().enumerate() {
                if t.port(p).is_none() {
                    self.push(at(&format!("ports[{j}]")), format!("no port named {p:?}"));
                }
            }
            for (j, &v) in m.vlans.iter().enumerate() {
                if let Some(reason) = vid_problem(v) {
                    self.push(at(&format!("vlans[{j}]")), reason);
                }
            }
            if let Some(reason) = m.vlan.and_then(vid_problem) {
                self.push(at("vlan"), reason);
            }
        }
        for (i, e) in t.fdb.iter().enumerate() {
            if outputs.contains_key(e.port.as_str()) {
                self.push(
                    format!("fdb[{i}].port"),
                    format!("port {:?} is a mirror's output: it is in no VLAN", e.port),
                );
            }
        }
    }

    pub(crate) fn push(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            reason: reason.into(),
        });
    }

    /// Checks a MAC limit: at least 1, at most the largest table.
    fn check_max_macs(&mut self, path: impl Into<String>, max: Option<u32>) {
        if let Some(n) = max {
            if n == 0 || n as usize > MAX_FDB_ENTRIES {
                self.push(path, format!("must be between 1 and {MAX_FDB_ENTRIES}"));
            }
        }
    }

    /// Checks a VLAN id a port refers to: valid, and declared (or VLAN 1).
    fn check_member(&mut self, path: String, vid: u16, declared: &BTreeSet<u16>) {
        if let Some(reason) = vid_problem(vid) {
            self.push(path, reason);
        } else if !declared.contains(&vid) {
            self.push(path, format!("VLAN {vid} is not declared in vlans"));
        }
    }

    /// Checks that a port has the VLAN fields its mode calls for, and that the VLANs are valid.
    /// A vhost-user port has an absolute socket path of its own; other kinds have none.
    fn check_socket(&mut self, i: usize, port: &Port, sockets: &mut HashMap<String, usize>) {
        let path = format!("ports[{i}].socket");
        if port.kind != PortKind::VhostUser {
            if port.socket.is_some() {
                self.push(path, "only vhost-user ports have a socket");
            }
            if port.socket_mode.is_some() {
                self.push(
                    format!("ports[{i}].socket_mode"),
                    "only vhost-user ports have a socket mode",
                );
            }
            return;
        }
        let Some(socket) = &port.socket else {
            self.push(path, "a vhost-user port needs its socket path");
            return;
        };
        if !socket.starts_with('/') {
            self.push(path, format!("{socket:?} must be an absolute path"));
        } else if socket.len() > MAX_SOCKET_PATH {
            self.push(
                path,
                format!("{socket:?} is longer than {MAX_SOCKET_PATH} bytes (a unix socket limit)"),
            );
        } else if socket.contains('\0') {
            self.push(path, "must not contain NUL");
        } else if let Some(first) = sockets.insert(socket.clone(), i) {
            self.push(
                path,
                format!("{socket:?} is already used by ports[{first}]"),
            );
        }
    }

    fn check_port_vlans(&mut self, i: usize, port: &Port, declared: &BTreeSet<u16>) {
        let at = |field: &str| format!("ports[{i}].{field}");
        match port.mode {
            PortMode::Access => {
                match port.vlan {
                    Some(vid) => self.check_member(at("vlan"), vid, declared),
                    None => self.push(at("vlan"), "required for mode access"),
                }
                if port.vlans.is_some() {
                    self.push(at("vlans"), "not allowed for mode access");
                }
                if port.native_vlan.is_some() {
                    self.push(at("native_vlan"), "not allowed for mode access");
                }
            }
            PortMode::Trunk => {
                if port.vlan.is_some() {
                    self.push(
                        at("vlan"),
                        "not allowed for mode trunk (use vlans and native_vlan)",
                    );
                }
                let tagged = port.vlans.as_deref().unwrap_or_default();
                let mut seen = BTreeSet::new();
                for (j, &vid) in tagged.iter().enumerate() {
                    let path = format!("ports[{i}].vlans[{j}]");
                    if vid_problem(vid).is_none() && !seen.insert(vid) {
                        self.push(path, format!("VLAN {vid} is listed twice"));
                    } else {
                        self.check_member(path, vid, declared);
                    }
                }
                if let Some(vid) = port.native_vlan {
                    self.check_member(at("native_vlan"), vid, declared);
                }
                if tagged.is_empty() && port.native_vlan.is_none() {
                    self.push(format!("ports[{i}]"), "a trunk needs vlans or native_vlan");
                }
            }
        }
    }

    fn into_result(self) -> Result<(), TopologyError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(TopologyError::Invalid(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_are_checked_with_field_paths() {
        let Err(TopologyError::Invalid(errors)) = Topology::from_yaml(
            "vlans: [{id: 10}]\nports:\n  - {name: a, kind: tap, mode: access, vlan: 10}\n  - {name: b, kind: tap, mode: access, vlan: 10}\nfdb: [{vlan: 10, mac: '02:00:00:00:00:01', port: b}]\nmirrors:\n  - {name: m, output: b, ports: [a, ghost], vlans: [4095], vlan: 0}\n  - {name: m, output: a}\n",
        ) else {
            panic!("accepted");
        };
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "mirrors[0].ports[1]",
                "mirrors[0].vlans[0]",
                "mirrors[0].vlan",
                "mirrors[1].name",
                "mirrors[1].output",
                "mirrors[1].ports",
                "fdb[0].port",
            ],
            "{errors:?}"
        );
    }

    const TRUNK_UPLINK: &str = "\
mac_aging_secs: 300
vlans:
  - { id: 10, name: tenant-a }
  - { id: 20, name: tenant-b }
ports:
  - { name: vm1, kind: tap, mode: access, vlan: 10 }
  - { name: vm3, kind: tap, mode: access, vlan: 20 }
  - { name: up0, kind: netdev, mode: trunk, vlans: [10, 20], native_vlan: 1 }
";

    fn access(name: &str, vlan: u16) -> Port {
        Port {
            name: name.to_owned(),
            kind: PortKind::Tap,
            mode: PortMode::Access,
            vlan: Some(vlan),
            vlans: None,
            native_vlan: None,
            admin_up: None,
            socket: None,
            socket_mode: None,
            max_macs: None,
            mac_limit_action: None,
            allowed_macs: None,
        }
    }

    fn trunk(name: &str, vlans: Option<Vec<u16>>, native_vlan: Option<u16>) -> Port {
        Port {
            name: name.to_owned(),
            kind: PortKind::Netdev,
            mode: PortMode::Trunk,
            vlan: None,
            vlans,
            native_vlan,
            admin_up: None,
            socket: None,
            socket_mode: None,
            max_macs: None,
            mac_limit_action: None,
            allowed_macs: None,
        }
    }

    fn vlan(id: u16) -> Vlan {
        Vlan {
            id,
            name: None,
            max_macs: None,
            vni: None,
            remotes: None,
        }
    }

    /// A valid topology to break: VLANs 10 and 20, one access port in each.
    fn base() -> Topology {
        Topology {
            vlans: vec![vlan(10), vlan(20)],
            ports: vec![access("vm1", 10), access("vm2", 20)],
            ..Topology::default()
        }
    }

    fn problems(topology: &Topology) -> Vec<String> {
        match topology.validate() {
            Ok(()) => Vec::new(),
            Err(TopologyError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
            Err(other) => panic!("validate returned {other:?}"),
        }
    }

    /// The problems of the YAML `text` (parsed without validation).
    fn problems_of(text: &str) -> Vec<String> {
        let t: Topology = serde_yaml_ng::from_str(text).expect("parses");
        problems(&t)
    }

    #[test]
    fn vxlan_rules_name_their_fields() {
        assert_eq!(
            problems_of("vlans: [{ id: 10, vni: 1010 }]"),
            ["vlans[0].vni: needs the vxlan section (at least vxlan.local)"]
        );
        let bad = "\
vxlan:
  local: 192.0.2.1
  dstport: 0
  underlay: vxlan1010
  remotes: [2001:db8::2, 192.0.2.1, 192.0.2.3, 192.0.2.3, 224.0.0.1]
  fdb:
    - { vlan: 30, mac: '02:00:00:00:00:01', remote: 192.0.2.2 }
    - { vlan: 10, mac: '01:00:00:00:00:01', remote: 192.0.2.2 }
    - { vlan: 10, mac: '02:00:00:00:00:05', remote: 192.0.2.2 }
    - { vlan: 10, mac: '02:00:00:00:00:06', remote: 192.0.2.1 }
vlans:
  - { id: 10, vni: 1010 }
  - { id: 20, vni: 1010 }
  - { id: 30, remotes: [192.0.2.2] }
  - { id: 40, vni: 16777216 }
ports:
  - { name: vxlan1010, kind: tap, mode: access, vlan: 10 }
  - { name: t, kind: vxlan, mode: access, vlan: 10 }
fdb:
  - { vlan: 10, mac: '02:00:00:00:00:05', port: vxlan1010 }
";
        assert_eq!(
            problems_of(bad),
            [
                "vxlan.dstport: must be between 1 and 65535",
                "vxlan.underlay: \"vxlan1010\" is a port of this switch; name the interface toward the remotes",
                "vxlan.remotes[0]: 2001:db8::2 is not of vxlan.local's family (one underlay: all IPv4 or all IPv6)",
                "vxlan.remotes[1]: 192.0.2.1 is this switch's own address (vxlan.local)",
                "vxlan.remotes[3]: 192.0.2.3 is listed twice",
                "vxlan.remotes[4]: 224.0.0.1 is not a unicast address",
                "vxlan.fdb[0].vlan: VLAN 30 has no vni",
                "vxlan.fdb[1].mac: 01:00:00:00:00:01 is not a unicast address",
                "vxlan.fdb[2].mac: 02:00:00:00:00:05 in VLAN 10 is also in fdb",
                "vxlan.fdb[3].remote: 192.0.2.1 is this switch's own address (vxlan.local)",
                "vlans[1].vni: 1010 is already the VNI of vlans[0]",
                "vlans[2].remotes: only a VLAN with a vni has remotes",
                "vlans[3].vni: must be between 1 and 16777215",
                "ports[0].name: \"vxlan1010\" is the name of VNI 1010's tunnel port",
                "ports[1].kind: vxlan ports are made by the switch: give the VLAN a vni instead",
            ]
        );
    }

    #[test]
    fn a_static_mac_and_a_mirror_may_name_a_tunnel_port() {
        let t = "\
vxlan: { local: 192.0.2.1, remotes: [192.0.2.2] }
vlans: [{ id: 10, vni: 1010 }]
ports: [{ name: mon, kind: tap, mode: access, vlan: 10 }]
fdb: [{ vlan: 10, mac: '02:00:00:00:00:05', port: vxlan1010 }]
mirrors: [{ name: m, output: mon, ports: [vxlan1010] }]
";
        assert_eq!(problems_of(t), Vec::<String>::new());
        assert_eq!(
            Topology::from_yaml(t).unwrap().to_yaml(),
            Topology::from_yaml(t).unwrap().to_yaml()
        );
    }

    fn parse_error(text: &str) -> String {
        match Topology::from_yaml(text) {
            Err(TopologyError::Parse(message)) => message,
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn trunk_uplink_example_loads() {
        let t = Topology::from_yaml(TRUNK_UPLINK).expect("valid");
        assert_eq!(t.mac_aging_secs, 300);
        assert_eq!(t.fdb_max_entries, DEFAULT_FDB_MAX_ENTRIES);
        assert_eq!(
            t.vlans,
            [
                Vlan {
                    name: Some("tenant-a".into()),
                    ..vlan(10)
                },
                Vlan {
                    name: Some("tenant-b".into()),
                    ..vlan(20)
                },
            ]
        );
        assert_eq!(t.ports.len(), 3);
        assert_eq!(
            t.ports[0],
            Port {
                kind: PortKind::Tap,
                ..access("vm1", 10)
            }
        );
        let up0 = t.port("up0").expect("up0");
        assert_eq!(*up0, trunk("up0", Some(vec![10, 20]), Some(1)));
        assert_eq!(up0.member_vlans(), [1, 10, 20]);
        assert_eq!(up0.untagged_vlan(), Some(1));
        assert!(!up0.brings_link_up());
        assert_eq!(t.vlan_ids(), [1, 10, 20]);
    }

    #[test]
    fn defaults_apply_to_missing_fields() {
        let t = Topology::from_yaml("{}").expect("valid");
        assert_eq!(t, Topology::default());
        assert_eq!(t.mac_aging_secs, 300);
        assert_eq!(t.fdb_max_entries, 65536);
    }

    #[test]
    fn json_is_accepted() {
        let json = r#"{"vlans": [{"id": 10}],
            "ports": [{"name": "vm1", "kind": "tap", "mode": "access", "vlan": 10}]}"#;
        let t = Topology::from_yaml(json).expect("valid");
        assert_eq!(t.ports, [access("vm1", 10)]);
    }

    #[test]
    fn vlan_1_is_implicit_and_may_be_declared() {
        let mut t = base();
        t.ports.push(access("vm3", 1));
        t.ports.push(trunk("up0", Some(vec![1, 10]), Some(1)));
        assert_eq!(problems(&t), Vec::<String>::new());
        t.vlans.push(vlan(1));
        assert_eq!(problems(&t), Vec::<String>::new());
    }

    #[test]
    fn native_vlan_may_also_be_listed_in_vlans() {
        let mut t = base();
        t.ports.push(trunk("up0", Some(vec![10, 20]), Some(10)));
        assert_eq!(problems(&t), Vec::<String>::new());
        assert_eq!(t.ports[2].member_vlans(), [10, 20]);
    }

    #[test]
    fn each_rule_reports_its_message() {
        type Breakage = fn(&mut Topology);
        let cases: &[(Breakage, &str)] = &[
            (
                |t| t.ports[1].vlan = Some(4095),
                "ports[1].vlan: 4095 is reserved (valid 1-4094)",
            ),
            (
                |t| t.ports[1].vlan = Some(0),
                "ports[1].vlan: 0 is the priority tag, not a VLAN (valid 1-4094)",
            ),
            (
                |t| t.ports[1].vlan = Some(5000),
                "ports[1].vlan: 5000 is out of range (valid 1-4094)",
            ),
            (
                |t| t.ports[1].vlan = Some(30),
                "ports[1].vlan: VLAN 30 is not declared in vlans",
            ),
            (
                |t| t.ports[1].name = "vm1".into(),
                r#"ports[1].name: "vm1" is already used by ports[0]"#,
            ),
            (
                |t| t.ports[0] = trunk("up0", Some(vec![10, 30]), None),
                "ports[0].vlans[1]: VLAN 30 is not declared in vlans",
            ),
            (
                |t| t.ports[0] = trunk("up0", Some(vec![10, 20, 10]), None),
                "ports[0].vlans[2]: VLAN 10 is listed twice",
            ),
            (
                |t| t.ports[0] = trunk("up0", Some(vec![10, 0]), None),
                "ports[0].vlans[1]: 0 is the priority tag, not a VLAN (valid 1-4094)",
            ),
            (
                |t| t.ports[0] = trunk("up0", None, Some(4095)),
                "ports[0].native_vlan: 4095 is reserved (valid 1-4094)",
            ),
            (
                |t| t.ports[0] = trunk("up0", None, Some(30)),
                "ports[0].native_vlan: VLAN 30 is not declared in vlans",
            ),
            (
                |t| t.vlans.extend([vlan(30), vlan(10)]),
                "vlans[3].id: 10 is declared twice",
            ),
            (
                |t| t.vlans.push(vlan(0)),
                "vlans[2].id: 0 is the priority tag, not a VLAN (valid 1-4094)",
            ),
            (
                |t| t.vlans.push(vlan(4095)),
                "vlans[2].id: 4095 is reserved (valid 1-4094)",
            ),
            (
                |t| t.vlans.push(vlan(4096)),
                "vlans[2].id: 4096 is out of range (valid 1-4094)",
            ),
            (
                |t| t.ports[0].name = "a-name-longer-than-15".into(),
                r#"ports[0].name: "a-name-longer-than-15" is 21 bytes; interface names are at most 15 bytes"#,
            ),
            (
                |t| t.ports[0].name = String::new(),
                "ports[0].name: must not be empty",
            ),
            (
                |t| t.ports[0].name = ".".into(),
                r#"ports[0].name: "." is not allowed as an interface name"#,
            ),
            (
                |t| t.ports[0].name = "..".into(),
                r#"ports[0].name: ".." is not allowed as an interface name"#,
            ),
            (
                |t| t.ports[0].name = "vm/1".into(),
                r#"ports[0].name: "vm/1" contains '/'; interface names cannot contain '/', ':', whitespace or NUL"#,
            ),
            (
                |t| t.ports[0].name = "vm 1".into(),
                r#"ports[0].name: "vm 1" contains whitespace; interface names cannot contain '/', ':', whitespace or NUL"#,
            ),
            (
                |t| t.ports[0].name = "vm\t1".into(),
                r#"ports[0].name: "vm\t1" contains whitespace; interface names cannot contain '/', ':', whitespace or NUL"#,
            ),
            (
                |t| t.ports[0].name = "vm\0x".into(),
                r#"ports[0].name: "vm\0x" contains a NUL byte; interface names cannot contain '/', ':', whitespace or NUL"#,
            ),
            (
                |t| t.ports[0].name = "eth0:1".into(),
                r#"ports[0].name: "eth0:1" contains ':'; interface names cannot contain '/', ':', whitespace or NUL"#,
            ),
            (
                |t| t.ports[0].vlan = None,
                "ports[0].vlan: required for mode access",
            ),
            (
                |t| t.ports[0].vlans = Some(vec![10]),
                "ports[0].vlans: not allowed for mode access",
            ),
            (
                |t| t.ports[0].native_vlan = Some(10),
                "ports[0].native_vlan: not allowed for mode access",
            ),
            (
                |t| {
                    t.ports[0] = Port {
                        vlan: Some(10),
                        ..trunk("up0", Some(vec![20]), None)
                    }
                },
                "ports[0].vlan: not allowed for mode trunk (use vlans and native_vlan)",
            ),
            (
                |t| t.ports[0] = trunk("up0", None, None),
                "ports[0]: a trunk needs vlans or native_vlan",
            ),
            (
                |t| t.ports[0] = trunk("up0", Some(Vec::new()), None),
                "ports[0]: a trunk needs vlans or native_vlan",
            ),
            (
                |t| t.mac_aging_secs = 0,
                "mac_aging_secs: must be at least 1",
            ),
            (
                |t| t.mac_aging_secs = MAX_MAC_AGING_SECS + 1,
                "mac_aging_secs: must be at most 1000000",
            ),
            (
                |t| t.fdb_max_entries = 0,
                "fdb_max_entries: must be between 1 and 16777216",
            ),
            (
                |t| t.fdb_max_entries = 16_777_217,
                "fdb_max_entries: must be between 1 and 16777216",
            ),
            (
                |t| t.port_max_macs = Some(0),
                "port_max_macs: must be between 1 and 16777216",
            ),
            (
                |t| t.vlans[1].max_macs = Some(16_777_217),
                "vlans[1].max_macs: must be between 1 and 16777216",
            ),
            (
                |t| t.ports[0].max_macs = Some(0),
                "ports[0].max_macs: must be between 1 and 16777216",
            ),
            (
                |t| t.ports[1].allowed_macs = Some(Vec::new()),
                "ports[1].allowed_macs: must list at least one MAC (leave it out to allow any)",
            ),
            (
                |t| {
                    t.ports[1].allowed_macs = Some(vec![
                        "02:00:00:00:00:01".parse().unwrap(),
                        "02:00:00:00:00:01".parse().unwrap(),
                    ])
                },
                "ports[1].allowed_macs[1]: 02:00:00:00:00:01 is already listed at [0]",
            ),
            (
                |t| t.ports[1].allowed_macs = Some(vec!["ff:ff:ff:ff:ff:ff".parse().unwrap()]),
                "ports[1].allowed_macs[0]: ff:ff:ff:ff:ff:ff is not a unicast address",
            ),
            (
                |t| {
                    t.mac_flap = Some(MacFlap {
                        moves: 1,
                        ..MacFlap::default()
                    })
                },
                "mac_flap.moves: must be between 2 and 15",
            ),
            (
                |t| {
                    t.mac_flap = Some(MacFlap {
                        window_secs: 0,
                        ..MacFlap::default()
                    })
                },
                "mac_flap.window_secs: must be between 1 and 1000",
            ),
            (
                |t| {
                    t.mac_flap = Some(MacFlap {
                        damp_secs: 1001,
                        ..MacFlap::default()
                    })
                },
                "mac_flap.damp_secs: must be at most 1000",
            ),
        ];
        assert_eq!(problems(&base()), Vec::<String>::new());
        for (break_it, expected) in cases {
            let mut t = base();
            break_it(&mut t);
            assert_eq!(problems(&t), [*expected], "for {t:#?}");
        }
    }

    #[test]
    fn mac_limits_default_to_shares_of_the_table() {
        let mut t = Topology::from_yaml(
            "fdb_max_entries: 1024\nvlans: [{ id: 10, max_macs: 30 }, { id: 20 }]\nports:\n\
             \x20 - { name: a, kind: tap, mode: access, vlan: 10 }\n\
             \x20 - { name: b, kind: tap, mode: access, vlan: 20, max_macs: 2, \
             mac_limit_action: shutdown, allowed_macs: ['02:00:00:00:00:01'] }\n",
        )
        .expect("valid");
        assert_eq!(t.port_max_macs(&t.ports[0]), 128);
        assert_eq!(t.port_max_macs(&t.ports[1]), 2);
        assert_eq!(t.ports[1].mac_limit_action, Some(LimitAction::Shutdown));
        assert_eq!((t.vlan_max_macs(10), t.vlan_max_macs(20)), (30, 512));
        t.port_max_macs = Some(7);
        t.vlan_max_macs = Some(9);
        assert_eq!(t.port_max_macs(&t.ports[0]), 7);
        assert_eq!((t.vlan_max_macs(10), t.vlan_max_macs(20)), (30, 9));
        assert_eq!(t.mac_flap(), MacFlap::default());
        assert_eq!(Topology::from_yaml(&t.to_yaml()).expect("round trip"), t);
        let err = Topology::from_yaml(
            "ports: [{ name: a, kind: tap, mode: access, vlan: 1, mac_limit_action: block }]",
        )
        .expect_err("unknown action");
        assert!(err.to_string().contains("unknown variant `block`"), "{err}");
    }

    #[test]
    fn limits_themselves_are_valid() {
        let mut t = base();
        t.mac_aging_secs = 1;
        t.fdb_max_entries = 1;
        t.vlans.push(vlan(4094));
        t.ports[0].name = "a-15-byte-name!".into();
        t.ports[1].vlan = Some(4094);
        assert_eq!(problems(&t), Vec::<String>::new());
        t.mac_aging_secs = MAX_MAC_AGING_SECS;
        t.fdb_max_entries = MAX_FDB_ENTRIES;
        assert_eq!(problems(&t), Vec::<String>::new());
    }

    #[test]
    fn all_problems_are_reported_in_file_order() {
        let text = "\
mac_aging_secs: 0
vlans: [{ id: 10 }, { id: 10 }]
ports:
  - { name: vm1, kind: tap, mode: access }
  - { name: vm1, kind: tap, mode: access, vlan: 4095 }
  - { name: up0, kind: netdev, mode: trunk }
";
        let err = Topology::from_yaml(text).expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "invalid topology:
  mac_aging_secs: must be at least 1
  vlans[1].id: 10 is declared twice
  ports[0].vlan: required for mode access
  ports[1].name: \"vm1\" is already used by ports[0]
  ports[1].vlan: 4095 is reserved (valid 1-4094)
  ports[2]: a trunk needs vlans or native_vlan"
        );
    }

    #[test]
    fn unknown_top_level_field_is_rejected() {
        let message = parse_error("mac_aging_secs: 300\nvlan_list: []\n");
        assert!(
            message.starts_with("unknown field `vlan_list`, expected one of `mac_aging_secs`"),
            "{message}"
        );
        assert!(message.contains("at line 2"), "{message}");
    }

    #[test]
    fn unknown_port_field_names_its_path() {
        let text = "\
ports:
  - { name: vm1, kind: tap, mode: access, vlan: 1 }
  - { name: vm2, kind: tap, mode: access, vlan: 1 }
  - { name: vm3, kind: tap, mode: access, vlan: 1, foo: 1 }
";
        let message = parse_error(text);
        assert!(
            message.starts_with("ports[2]: unknown field `foo`, expected one of"),
            "{message}"
        );
        assert!(message.contains("at line 4"), "{message}");
        assert_eq!(
            TopologyError::Parse(message.clone()).to_string(),
            format!("cannot parse topology: {message}")
        );
    }

    #[test]
    fn unknown_vlan_field_and_bad_enum_values_name_their_path() {
        let message = parse_error("vlans: [{ id: 10, tagged: true }]");
        assert!(
            message.starts_with("vlans[0]: unknown field `tagged`"),
            "{message}"
        );
        let message = parse_error("ports: [{ name: vm1, kind: veth, mode: access, vlan: 1 }]");
        assert!(
            message.starts_with("ports[0].kind: unknown variant `veth`"),
            "{message}"
        );
        let message = parse_error("ports: [{ name: vm1, kind: tap, mode: Access, vlan: 1 }]");
        assert!(
            message.starts_with("ports[0].mode: unknown variant `Access`"),
            "{message}"
        );
        let message = parse_error("ports: [{ name: vm1, kind: tap, mode: access, vlan: 70000 }]");
        assert!(
            message.starts_with("ports[0].vlan: invalid value"),
            "{message}"
        );
    }

    #[test]
    fn missing_required_port_field_is_rejected() {
        let message = parse_error("ports: [{ name: vm1, mode: access, vlan: 1 }]");
        assert!(
            message.starts_with("ports[0]: missing field `kind`"),
            "{message}"
        );
    }

    #[test]
    fn round_trip_preserves_everything() {
        let mut t = Topology::from_yaml(TRUNK_UPLINK).expect("valid");
        t.mac_aging_secs = 60;
        t.fdb_max_entries = 1024;
        t.ports[0].admin_up = Some(false);
        // Names that YAML would read as other types unless quoted.
        t.ports[1].name = "true".into();
        t.ports.push(access("10", 10));
        t.ports.push(access("null", 20));
        t.ports.push(trunk("tr0", None, Some(20)));
        assert_eq!(problems(&t), Vec::<String>::new());
        let yaml = t.to_yaml();
        assert_eq!(Topology::from_yaml(&yaml).expect("valid"), t, "{yaml}");
    }

    #[test]
    fn export_omits_absent_fields() {
        let yaml = Topology::from_yaml(TRUNK_UPLINK).expect("valid").to_yaml();
        assert!(!yaml.contains("null"), "{yaml}");
        assert!(!yaml.contains("admin_up"), "{yaml}");
        assert!(yaml.contains("fdb_max_entries: 65536"), "{yaml}");
        assert!(yaml.contains("native_vlan: 1"), "{yaml}");
    }

    #[test]
    fn read_error_names_the_path() {
        let path = Path::new("/nonexistent/vlanswitch/topology.yaml");
        let err = Topology::from_path(path).expect_err("missing file");
        assert!(matches!(&err, TopologyError::Read { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "cannot read topology file /nonexistent/vlanswitch/topology.yaml"
        );
    }

    #[test]
    fn member_vlans_of_access_port_is_its_vlan() {
        assert_eq!(access("vm1", 10).member_vlans(), [10]);
        assert_eq!(access("vm1", 10).untagged_vlan(), Some(10));
        assert_eq!(
            trunk("t", Some(vec![30, 10, 30]), None).member_vlans(),
            [10, 30]
        );
        assert_eq!(trunk("t", Some(vec![30]), None).untagged_vlan(), None);
    }

    #[test]
    fn static_mac_rules() {
        let base = "vlans: [{id: 10}, {id: 20}]\nports:\n  - {name: a, kind: tap, mode: access, vlan: 10}\nfdb:\n";
        let ok = format!("{base}  - {{vlan: 10, mac: '02:00:00:00:00:01', port: a}}\n");
        assert_eq!(Topology::from_yaml(&ok).unwrap().fdb.len(), 1);
        for (entries, expect) in [
            (
                "  - {vlan: 10, mac: '02:00:00:00:00:01', port: a}\n  - {vlan: 10, mac: '02:00:00:00:00:01', port: a}\n",
                "fdb[1].mac: 02:00:00:00:00:01 in VLAN 10 is already listed at fdb[0]",
            ),
            (
                "  - {vlan: 10, mac: 'ff:ff:ff:ff:ff:ff', port: a}\n",
                "fdb[0].mac: ff:ff:ff:ff:ff:ff is not a unicast address",
            ),
            (
                "  - {vlan: 10, mac: '02:00:00', port: a}\n",
                "fdb[0].mac: \"02:00:00\" is not a MAC address",
            ),
            (
                "  - {vlan: 10, mac: '02:00:00:00:00:01', port: b}\n",
                "fdb[0].port: no port named \"b\"",
            ),
            (
                "  - {vlan: 20, mac: '02:00:00:00:00:01', port: a}\n",
                "fdb[0].vlan: port \"a\" is not a member of VLAN 20",
            ),
        ] {
            let err = Topology::from_yaml(&format!("{base}{entries}")).unwrap_err();
            assert!(err.to_string().contains(expect), "{err} lacks {expect}");
        }
    }
}
