//! The switch's configuration as the dataplane sees it: port modes and VLAN membership.
//!
//! A [`Snapshot`] is immutable. The control side builds a new one and publishes it atomically
//! (see [`crate::switch::Switch`]); workers load it once per batch and never take a lock.
#![forbid(unsafe_code)]

use std::sync::Arc;

use crate::wire::{EgressTag, MacAddr};

/// Index of a port in the snapshot's port table.
pub type PortId = u16;

/// Lowest valid VLAN id.
pub const VID_MIN: u16 = 1;
/// Highest valid VLAN id (4095 is reserved, 0 is the priority tag).
pub const VID_MAX: u16 = 4094;

/// Why a VLAN id is not valid in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VidError {
    /// VID 0 marks a priority tag.
    #[error("0 is the priority tag, not a VLAN (valid 1-4094)")]
    Priority,
    /// VID 4095 is reserved by 802.1Q.
    #[error("4095 is reserved (valid 1-4094)")]
    Reserved,
    /// Larger than 12 bits.
    #[error("{0} is out of range (valid 1-4094)")]
    OutOfRange(u32),
}

/// Checks that `vid` may name a VLAN.
pub fn check_vid(vid: u32) -> Result<u16, VidError> {
    match vid {
        0 => Err(VidError::Priority),
        4095 => Err(VidError::Reserved),
        1..=4094 => Ok(vid as u16),
        _ => Err(VidError::OutOfRange(vid)),
    }
}

/// Longest interface name, in bytes (`IFNAMSIZ` - 1).
pub const IFNAME_MAX: usize = 15;

/// Why a name cannot be a Linux interface name (the kernel's `dev_valid_name` rules).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IfNameError {
    /// The empty name.
    #[error("must not be empty")]
    Empty,
    /// `.` or `..`.
    #[error("{0:?} is not allowed as an interface name")]
    Dot(String),
    /// Longer than [`IFNAME_MAX`] bytes.
    #[error("{0:?} is {1} bytes; interface names are at most {IFNAME_MAX} bytes")]
    TooLong(String, usize),
    /// A character the kernel refuses; the second field says which, for people.
    #[error("{0:?} contains {1}; interface names cannot contain '/', ':', whitespace or NUL")]
    BadChar(String, String),
}

/// Checks that `name` may name an interface: one rule for the whole project (topology
/// validation, taps, packet sockets).
pub fn check_ifname(name: &str) -> Result<(), IfNameError> {
    if name.is_empty() {
        return Err(IfNameError::Empty);
    }
    if name == "." || name == ".." {
        return Err(IfNameError::Dot(name.to_owned()));
    }
    if name.len() > IFNAME_MAX {
        return Err(IfNameError::TooLong(name.to_owned(), name.len()));
    }
    let bad = name
        .chars()
        .find(|&c| c == '/' || c == ':' || c == '\0' || c.is_whitespace());
    match bad {
        None => Ok(()),
        Some(c) => {
            let what = match c {
                '\0' => "a NUL byte".to_owned(),
                c if c.is_whitespace() => "whitespace".to_owned(),
                c => format!("{c:?}"),
            };
            Err(IfNameError::BadChar(name.to_owned(), what))
        }
    }
}

/// A set of VLAN ids as a 4096-bit bitmap.
#[derive(Clone, PartialEq, Eq)]
pub struct VlanSet([u64; 64]);

impl Default for VlanSet {
    fn default() -> Self {
        VlanSet([0; 64])
    }
}

impl VlanSet {
    /// The set holding `vids`.
    pub fn from_vids(vids: impl IntoIterator<Item = u16>) -> Self {
        let mut s = VlanSet::default();
        for v in vids {
            s.insert(v);
        }
        s
    }

    /// Adds `vid` (only the low 12 bits count).
    pub fn insert(&mut self, vid: u16) {
        let v = (vid & 0x0fff) as usize;
        self.0[v / 64] |= 1 << (v % 64);
    }

    /// True if `vid` is in the set.
    pub fn contains(&self, vid: u16) -> bool {
        let v = (vid & 0x0fff) as usize;
        self.0[v / 64] & (1 << (v % 64)) != 0
    }

    /// The ids in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0u16..4096).filter(|v| self.contains(*v))
    }
}

impl std::fmt::Debug for VlanSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// How a port carries VLANs.
// The trunk's 512-byte bitmap stays inline on purpose: modes live in the snapshot (never moved
// per frame) and an inline bitmap saves a pointer chase on every egress check.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMode {
    /// One VLAN, untagged on the wire. Tagged frames (other than priority tags) are dropped.
    Access {
        /// The port's VLAN.
        vlan: u16,
    },
    /// Several VLANs tagged, optionally one untagged (the native VLAN).
    Trunk {
        /// VLANs carried tagged.
        allowed: VlanSet,
        /// VLAN for untagged and priority-tagged frames, carried untagged on egress.
        native: Option<u16>,
    },
    /// A mirror's output port: in no VLAN; it receives the mirror's copies and nothing else,
    /// and what it receives is dropped ([`DropReason::MirrorOutput`](crate::counters::DropReason::MirrorOutput)).
    MirrorOutput,
}

impl PortMode {
    /// A trunk carrying `vlans` tagged and `native` untagged.
    pub fn trunk(vlans: impl IntoIterator<Item = u16>, native: Option<u16>) -> Self {
        PortMode::Trunk {
            allowed: VlanSet::from_vids(vlans),
            native,
        }
    }

    /// How frames of `vlan` leave this port, or `None` if the port is not a member of `vlan`.
    pub fn egress(&self, vlan: u16) -> Option<EgressTag> {
        match self {
            PortMode::Access { vlan: v } => (*v == vlan).then_some(EgressTag::Untagged),
            PortMode::Trunk { allowed, native } => {
                if *native == Some(vlan) {
                    Some(EgressTag::Untagged)
                } else if allowed.contains(vlan) {
                    Some(EgressTag::Tagged)
                } else {
                    None
                }
            }
            PortMode::MirrorOutput => None,
        }
    }

    /// The VLANs this port is a member of, ascending.
    pub fn member_vlans(&self) -> Vec<u16> {
        match self {
            PortMode::Access { vlan } => vec![*vlan],
            PortMode::Trunk { allowed, native } => {
                let mut v: Vec<u16> = allowed.iter().collect();
                if let Some(n) = native {
                    if !allowed.contains(*n) {
                        v.push(*n);
                        v.sort_unstable();
                    }
                }
                v
            }
            PortMode::MirrorOutput => Vec::new(),
        }
    }

    /// A short description for logs: `access vlan 10`, `trunk vlans [10, 20] native 1`.
    pub fn describe(&self) -> String {
        match self {
            PortMode::Access { vlan } => format!("access vlan {vlan}"),
            PortMode::Trunk { allowed, native } => {
                let vids: Vec<u16> = allowed.iter().collect();
                match native {
                    Some(n) => format!("trunk vlans {vids:?} native {n}"),
                    None => format!("trunk vlans {vids:?}"),
                }
            }
            PortMode::MirrorOutput => "mirror output".to_string(),
        }
    }
}

/// What a port does with a frame whose source MAC would exceed a MAC limit (of the port or
/// of the VLAN).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LimitAction {
    /// Forward the frame, but do not learn its source (frames to it are flooded).
    #[default]
    Flood,
    /// Drop the frame.
    Drop,
    /// Drop the frame and shut the port down until an operator enables it again.
    Shutdown,
}

/// Port security: which source MACs a port may bring in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSecurity {
    /// Most MACs learned on the port at once.
    pub max_macs: u32,
    /// What a frame from a new source beyond a limit gets.
    pub action: LimitAction,
    /// When set, only frames from these sources are accepted; others are dropped.
    pub allowed: Option<Arc<[MacAddr]>>,
}

impl Default for PortSecurity {
    fn default() -> Self {
        PortSecurity {
            max_macs: u32::MAX,
            action: LimitAction::Flood,
            allowed: None,
        }
    }
}

impl PortSecurity {
    /// True if a frame from `src` may enter the port.
    #[inline]
    pub fn admits(&self, src: MacAddr) -> bool {
        self.allowed.as_ref().is_none_or(|a| a.contains(&src))
    }
}

/// One port in a snapshot: its configuration and a handle `H` to its I/O. The running switch
/// uses `Arc<Port>` (shared between snapshots: see `crate::Snapshot`); the pure decision
/// never looks at the handle, and its tests use `()`.
#[derive(Debug, Clone)]
pub struct PortEntry<H = ()> {
    /// The port's name (the interface name).
    pub name: String,
    /// VLAN membership.
    pub mode: PortMode,
    /// Port security.
    pub security: PortSecurity,
    /// The port's I/O handle.
    pub port: H,
}

impl<H> PortEntry<H> {
    /// An entry with the default (unlimited) port security.
    pub fn new(name: impl Into<String>, mode: PortMode, port: H) -> Self {
        PortEntry {
            name: name.into(),
            mode,
            security: PortSecurity::default(),
            port,
        }
    }
}

/// Learning rules that are the same for all ports: per-VLAN MAC limits and the flap policy.
#[derive(Debug, Clone)]
pub struct Learning {
    /// `vlan_max_macs[vid]`: most dynamic MACs in that VLAN.
    vlan_max_macs: Arc<[u32]>,
    /// Flap detection and damping.
    pub flap: FlapPolicy,
}

impl Default for Learning {
    fn default() -> Self {
        Learning::new(|_| u32::MAX, FlapPolicy::default())
    }
}

impl Learning {
    /// Limits from `vlan_max(vid)` for every VLAN id, and `flap`.
    pub fn new(vlan_max: impl Fn(u16) -> u32, flap: FlapPolicy) -> Self {
        Learning {
            vlan_max_macs: (0u16..4096).map(vlan_max).collect(),
            flap,
        }
    }

    /// The MAC limit of `vlan`.
    #[inline]
    pub fn vlan_max_macs(&self, vlan: u16) -> u32 {
        self.vlan_max_macs[(vlan & 0x0fff) as usize]
    }
}

/// A port mirror (SPAN): copies of the frames of its sources go to its output port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mirror {
    /// The port the copies go to (its mode is [`PortMode::MirrorOutput`]).
    pub output: PortId,
    /// Frames these ports receive, copied as received.
    pub rx_ports: Vec<PortId>,
    /// Frames these ports send, copied as sent.
    pub tx_ports: Vec<PortId>,
    /// Frames that enter these VLANs (once each, as received).
    pub vlans: VlanSet,
    /// The copies carry this VID in their tag, in place of their own (PCP kept); `None`: as
    /// their source carried them.
    pub tag: Option<u16>,
}

/// An immutable view of the whole configuration, with flood lists precomputed per VLAN; `H`
/// is the ports' I/O handle type (see [`PortEntry`]).
#[derive(Debug, Clone)]
pub struct Snapshot<H = ()> {
    ports: Vec<Option<PortEntry<H>>>,
    /// `flood[vid]` = ports that are members of `vid`, ascending.
    flood: Vec<Vec<PortId>>,
    /// Aging time for dynamic FDB entries, in seconds.
    pub aging_secs: u32,
    /// Per-VLAN limits and the flap policy.
    pub learning: Learning,
    /// Port mirrors.
    pub mirrors: Arc<[Mirror]>,
}

impl<H> Default for Snapshot<H> {
    fn default() -> Self {
        Snapshot::new(Vec::new(), 300)
    }
}

impl<H> Snapshot<H> {
    /// Builds a snapshot; `ports[i]` becomes port id `i` (a `None` leaves a hole, so that ids of
    /// other ports stay stable when one is removed).
    pub fn new(ports: Vec<Option<PortEntry<H>>>, aging_secs: u32) -> Self {
        assert!(
            ports.len() <= PortId::MAX as usize,
            "at most {} ports",
            PortId::MAX
        );
        let mut flood = vec![Vec::new(); 4096];
        for (id, p) in ports.iter().enumerate() {
            if let Some(p) = p {
                for vid in p.mode.member_vlans() {
                    flood[vid as usize].push(id as PortId);
                }
            }
        }
        Snapshot {
            ports,
            flood,
            aging_secs,
            learning: Learning::default(),
            mirrors: Arc::new([]),
        }
    }

    /// This snapshot with `mirrors`.
    pub fn with_mirrors(mut self, mirrors: Vec<Mirror>) -> Self {
        self.mirrors = mirrors.into();
        self
    }

    /// This snapshot with `learning` as its per-VLAN limits and flap policy.
    pub fn with_learning(mut self, learning: Learning) -> Self {
        self.learning = learning;
        self
    }

    /// The rules for learning a source on port `entry` in `vlan`.
    #[inline]
    pub fn learn_rules(&self, entry: &PortEntry<H>, vlan: u16) -> LearnRules {
        LearnRules {
            aging: self.aging_secs,
            port_max: entry.security.max_macs,
            vlan_max: self.learning.vlan_max_macs(vlan),
            flap: self.learning.flap,
        }
    }

    /// The port with id `id`, if present.
    pub fn port(&self, id: PortId) -> Option<&PortEntry<H>> {
        self.ports.get(id as usize).and_then(|p| p.as_ref())
    }

    /// All port slots, indexed by id.
    pub fn ports(&self) -> &[Option<PortEntry<H>>] {
        &self.ports
    }

    /// The members of `vlan`, ascending.
    pub fn members(&self, vlan: u16) -> &[PortId] {
        &self.flood[(vlan & 0x0fff) as usize]
    }

    /// How frames of `vlan` leave port `id`, or `None` if it is not a member.
    pub fn egress(&self, id: PortId, vlan: u16) -> Option<EgressTag> {
        self.port(id).and_then(|p| p.mode.egress(vlan))
    }

    /// A copy of this snapshot with port `id`'s I/O handle replaced (its mode unchanged).
    pub fn with_port(&self, id: PortId, port: H) -> Snapshot<H>
    where
        H: Clone,
    {
        let mut ports = self.ports.clone();
        if let Some(Some(e)) = ports.get_mut(id as usize) {
            e.port = port;
        }
        let mut s = Snapshot::new(ports, self.aging_secs).with_learning(self.learning.clone());
        s.mirrors = self.mirrors.clone();
        s
    }

    /// The id of the port named `name`.
    pub fn port_id(&self, name: &str) -> Option<PortId> {
        self.ports
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.name == name))
            .map(|i| i as PortId)
    }
}

/// When a MAC that keeps moving between ports counts as flapping, and whether its moves are
/// then refused for a while (damping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlapPolicy {
    /// Moves within `window_secs` that make a MAC flap (2-15).
    pub moves: u8,
    /// The window, in seconds (1-1000).
    pub window_secs: u16,
    /// Once flapping, further moves are refused for this many seconds after the last one
    /// (0: never; the MAC keeps following its frames).
    pub damp_secs: u16,
}

impl Default for FlapPolicy {
    fn default() -> Self {
        FlapPolicy {
            moves: 5,
            window_secs: 10,
            damp_secs: 0,
        }
    }
}

/// What one learning call may do: the aging time, the MAC limits that apply to the learning
/// port and VLAN, and the flap policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnRules {
    /// Aging time in seconds.
    pub aging: u32,
    /// Most dynamic entries the learning port may have.
    pub port_max: u32,
    /// Most dynamic entries the VLAN may have.
    pub vlan_max: u32,
    /// Flap detection and damping.
    pub flap: FlapPolicy,
}

impl LearnRules {
    /// No limit but the table's size, the default flap policy.
    pub fn unlimited(aging: u32) -> Self {
        LearnRules {
            aging,
            port_max: u32::MAX,
            vlan_max: u32::MAX,
            flap: FlapPolicy::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vid_rules() {
        assert_eq!(check_vid(0), Err(VidError::Priority));
        assert_eq!(check_vid(4095), Err(VidError::Reserved));
        assert_eq!(check_vid(5000), Err(VidError::OutOfRange(5000)));
        assert_eq!(check_vid(1), Ok(1));
        assert_eq!(check_vid(4094), Ok(4094));
        assert_eq!(
            VidError::Reserved.to_string(),
            "4095 is reserved (valid 1-4094)"
        );
    }

    #[test]
    fn interface_name_rules() {
        assert_eq!(check_ifname("vm1"), Ok(()));
        assert_eq!(check_ifname("a-15-byte-name!"), Ok(()));
        assert_eq!(check_ifname(""), Err(IfNameError::Empty));
        assert!(matches!(check_ifname(".."), Err(IfNameError::Dot(_))));
        assert_eq!(
            check_ifname("a-name-longer-than-15")
                .unwrap_err()
                .to_string(),
            "\"a-name-longer-than-15\" is 21 bytes; interface names are at most 15 bytes"
        );
        assert_eq!(
            check_ifname("eth0:1").unwrap_err().to_string(),
            "\"eth0:1\" contains ':'; interface names cannot contain '/', ':', whitespace or NUL"
        );
        assert!(
            matches!(check_ifname("a\0b"), Err(IfNameError::BadChar(_, w)) if w == "a NUL byte")
        );
    }

    #[test]
    fn egress_by_mode() {
        let access = PortMode::Access { vlan: 10 };
        assert_eq!(access.egress(10), Some(EgressTag::Untagged));
        assert_eq!(access.egress(20), None);
        let trunk = PortMode::trunk([10, 20], Some(1));
        assert_eq!(trunk.egress(10), Some(EgressTag::Tagged));
        assert_eq!(trunk.egress(1), Some(EgressTag::Untagged));
        assert_eq!(trunk.egress(30), None);
        assert_eq!(trunk.member_vlans(), vec![1, 10, 20]);
        // native also listed as allowed: still untagged on egress
        let t2 = PortMode::trunk([10, 20], Some(10));
        assert_eq!(t2.egress(10), Some(EgressTag::Untagged));
        assert_eq!(t2.member_vlans(), vec![10, 20]);
    }

    #[test]
    fn flood_lists_follow_membership() {
        let e = |name: &str, mode| Some(PortEntry::new(name, mode, ()));
        let s: Snapshot = Snapshot::new(
            vec![
                e("a", PortMode::Access { vlan: 10 }),
                None,
                e("b", PortMode::trunk([10, 20], None)),
                e("c", PortMode::Access { vlan: 20 }),
            ],
            300,
        );
        assert_eq!(s.members(10), &[0, 2]);
        assert_eq!(s.members(20), &[2, 3]);
        assert!(s.members(30).is_empty());
        assert_eq!(s.port_id("c"), Some(3));
        assert!(s.port(1).is_none());
    }
}
