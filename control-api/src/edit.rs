//! What the API's changes do to the desired topology, as pure functions: each takes the running
//! topology and returns the one to apply (or why the request is refused). The handlers in
//! [`crate::api`] call them and then [`crate::Controller::apply`], which validates the result;
//! these functions only hold the rules that belong to the request itself (names in use, the
//! mode-change rule of PATCH, VLAN 1, what goes with a removed port or VLAN).

use std::net::IpAddr;

use dataplane::wire::{MacAddr, MacParseError};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::topology::{
    address_problem, LimitAction, Port, PortMode, StaticMac, Topology, Vlan, Vxlan, DEFAULT_VLAN,
};

/// Why a change is refused before the new topology is validated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// A port of that name exists.
    #[error("port name {0:?} is already in use")]
    PortExists(String),
    /// No port of that name.
    #[error("no port named {0:?}")]
    NoSuchPort(String),
    /// The port is a VLAN's tunnel: the switch makes it from the VLAN's `vni`.
    #[error(
        "port {0:?} is VLAN {1}'s VXLAN tunnel, made from the VLAN's vni: \
         change or remove the vni (PATCH /api/v1/vlans/{1}) instead"
    )]
    TunnelPort(String, u16),
    /// The VLAN is declared already.
    #[error("VLAN {0} is already declared")]
    VlanExists(u16),
    /// The VLAN is not declared.
    #[error("VLAN {0} is not declared")]
    NoSuchVlan(u16),
    /// VLAN 1 is not declared, so there is nothing to remove: it always exists.
    #[error(
        "VLAN {0} is the default VLAN and always exists; \
         only a declaration of it (with a name) can be removed"
    )]
    DefaultVlan(u16),
    /// Ports still carry the VLAN.
    #[error("VLAN {id} is used by ports {}", ports.join(", "))]
    VlanInUse {
        /// The VLAN.
        id: u16,
        /// The ports that carry it.
        ports: Vec<String>,
    },
    /// A static entry's MAC does not parse.
    #[error(transparent)]
    BadMac(#[from] MacParseError),
    /// A mirror of that name exists.
    #[error("mirror name {0:?} is already in use")]
    MirrorExists(String),
    /// No mirror of that name.
    #[error("no mirror named {0:?}")]
    NoSuchMirror(String),
    /// The topology has no `vxlan` section, so there are no remote VTEPs to change.
    #[error(
        "the switch is no VXLAN tunnel endpoint: set the vxlan section first (PUT /api/v1/vxlan)"
    )]
    NotVtep,
    /// The VLAN has no `vni`, so it has no tunnel and no flood list.
    #[error("VLAN {0} has no vni")]
    NoVni(u16),
    /// A remote VTEP address that does not parse, or cannot be a remote.
    #[error("{0}")]
    BadAddress(String),
    /// The remote is in the flood list already.
    #[error("{address} is already in {}", list_name(*.vlan))]
    RemoteExists {
        /// The remote.
        address: IpAddr,
        /// The VLAN whose flood list it is; `None`: the switch-wide one.
        vlan: Option<u16>,
    },
    /// The remote is not in the flood list.
    #[error("{address} is not in {}", list_name(*.vlan))]
    NoSuchRemote {
        /// The remote.
        address: IpAddr,
        /// The VLAN whose flood list it is; `None`: the switch-wide one.
        vlan: Option<u16>,
    },
}

/// The flood list a remote is added to or removed from, for people.
fn list_name(vlan: Option<u16>) -> String {
    match vlan {
        Some(v) => format!("VLAN {v}'s flood list"),
        None => "the switch-wide flood list (vxlan.remotes)".to_string(),
    }
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, EditError>;

/// Fields a PATCH may change; absent fields stay as they are, `null` clears. Changing `mode`
/// clears the fields of the old mode that are not given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortPatch {
    /// New mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<PortMode>,
    /// Access VLAN.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u16>)]
    pub vlan: Option<Option<u16>>,
    /// Trunk VLANs (tagged).
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Vec<u16>>)]
    pub vlans: Option<Option<Vec<u16>>>,
    /// Trunk native VLAN (untagged).
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u16>)]
    pub native_vlan: Option<Option<u16>>,
    /// Set the interface up when attaching.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<bool>)]
    pub admin_up: Option<Option<bool>>,
    /// The port's MAC limit (`null`: the switch's default).
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u32>)]
    pub max_macs: Option<Option<u32>>,
    /// What a frame from a new source beyond a limit gets (`null`: flood).
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<LimitAction>)]
    pub mac_limit_action: Option<Option<LimitAction>>,
    /// The only source MACs accepted (`null`: any).
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Vec<String>>)]
    pub allowed_macs: Option<Option<Vec<MacAddr>>>,
}

/// Fields of a VLAN a PATCH may change; absent fields stay as they are, `null` clears.
/// Clearing `vni` also clears the VLAN's `remotes` (unless the patch gives them) and its static
/// remote MACs (`vxlan.fdb`): they belong to its tunnel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VlanPatch {
    /// A label for people.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    /// The VLAN's MAC limit (`null`: the switch's `vlan_max_macs`).
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u32>)]
    pub max_macs: Option<Option<u32>>,
    /// The VXLAN network identifier, 1-16777215 (`null`: the VLAN stays on this host; its
    /// tunnel goes).
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u32>)]
    pub vni: Option<Option<u32>>,
    /// The VLAN's own flood list (`null`: the switch-wide `vxlan.remotes`).
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Vec<String>>)]
    pub remotes: Option<Option<Vec<IpAddr>>>,
}

/// `Some(None)` for an explicit `null`, `None` when absent.
fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> std::result::Result<Option<Option<T>>, D::Error> {
    Deserialize::deserialize(d).map(Some)
}

/// The index of port `name` in `t`.
pub fn port_index(t: &Topology, name: &str) -> Result<usize> {
    t.ports
        .iter()
        .position(|p| p.name == name)
        .ok_or_else(|| match t.running().port(name) {
            Some(p) => EditError::TunnelPort(name.to_string(), p.vlan.unwrap_or_default()),
            None => EditError::NoSuchPort(name.to_string()),
        })
}

/// Adds port `p` at the end; returns the topology and the new port's index.
pub fn add_port(t: &Topology, p: Port) -> Result<(Topology, usize)> {
    if t.port(&p.name).is_some() {
        return Err(EditError::PortExists(p.name));
    }
    let mut t = t.clone();
    t.ports.push(p);
    let at = t.ports.len() - 1;
    Ok((t, at))
}

/// Applies `patch` to port `name`; returns the topology and the port's index. Changing the
/// mode clears the VLAN fields of the old mode that the patch does not give. Static entries of
/// the port in VLANs it leaves go with them.
pub fn patch_port(t: &Topology, name: &str, patch: PortPatch) -> Result<(Topology, usize)> {
    let i = port_index(t, name)?;
    let mut t = t.clone();
    let p = &mut t.ports[i];
    if let Some(mode) = patch.mode {
        if mode != p.mode {
            p.mode = mode;
            p.vlan = None;
            p.vlans = None;
            p.native_vlan = None;
        }
    }
    if let Some(v) = patch.vlan {
        p.vlan = v;
    }
    if let Some(v) = patch.vlans {
        p.vlans = v;
    }
    if let Some(v) = patch.native_vlan {
        p.native_vlan = v;
    }
    if let Some(v) = patch.admin_up {
        p.admin_up = v;
    }
    if let Some(v) = patch.max_macs {
        p.max_macs = v;
    }
    if let Some(v) = patch.mac_limit_action {
        p.mac_limit_action = v;
    }
    if let Some(v) = patch.allowed_macs {
        p.allowed_macs = v;
    }
    let members = p.member_vlans();
    t.fdb
        .retain(|m| m.port != name || members.contains(&m.vlan));
    Ok((t, i))
}

/// Removes port `name` and its static MAC entries.
pub fn delete_port(t: &Topology, name: &str) -> Result<Topology> {
    let i = port_index(t, name)?;
    let mut t = t.clone();
    t.ports.remove(i);
    t.fdb.retain(|m| m.port != name);
    Ok(t)
}

/// Declares VLAN `v`, keeping `vlans` sorted by id; returns the topology and its index.
pub fn add_vlan(t: &Topology, v: Vlan) -> Result<(Topology, usize)> {
    if t.vlans.iter().any(|x| x.id == v.id) {
        return Err(EditError::VlanExists(v.id));
    }
    let id = v.id;
    let mut t = t.clone();
    t.vlans.push(v);
    t.vlans.sort_by_key(|v| v.id);
    let at = t.vlans.iter().position(|x| x.id == id).unwrap_or(0);
    Ok((t, at))
}

/// The ports that carry VLAN `id`, in port order.
pub fn vlan_users(t: &Topology, id: u16) -> Vec<String> {
    t.ports
        .iter()
        .filter(|p| p.member_vlans().contains(&id))
        .map(|p| p.name.clone())
        .collect()
}

/// Removes the declaration of VLAN `id`, refused while ports carry it; its static MAC
/// entries go with it. VLAN 1 always exists: removing its declaration (a name) leaves its
/// ports and static entries, and when it is not declared there is nothing to remove.
pub fn delete_vlan(t: &Topology, id: u16) -> Result<Topology> {
    let mut t = t.clone();
    let before = t.vlans.len();
    t.vlans.retain(|v| v.id != id);
    let declared = t.vlans.len() != before;
    if id == DEFAULT_VLAN {
        return if declared {
            Ok(t)
        } else {
            Err(EditError::DefaultVlan(id))
        };
    }
    let ports = vlan_users(&t, id);
    if !ports.is_empty() {
        return Err(EditError::VlanInUse { id, ports });
    }
    if !declared {
        return Err(EditError::NoSuchVlan(id));
    }
    t.fdb.retain(|m| m.vlan != id);
    if let Some(x) = &mut t.vxlan {
        x.fdb.retain(|m| m.vlan != id);
    }
    Ok(t)
}

/// Applies `patch` to VLAN `id`; returns the topology and the VLAN's index in `vlans`. VLAN 1
/// always exists: patching it when it is not declared declares it. Clearing the `vni` also
/// clears the VLAN's own `remotes` (unless the patch sets them) and its static remote MACs.
pub fn patch_vlan(t: &Topology, id: u16, patch: VlanPatch) -> Result<(Topology, usize)> {
    let mut t = t.clone();
    let i = match t.vlans.iter().position(|v| v.id == id) {
        Some(i) => i,
        None if id == DEFAULT_VLAN => {
            let v = Vlan {
                id,
                name: None,
                max_macs: None,
                vni: None,
                remotes: None,
            };
            let (with, at) = add_vlan(&t, v)?;
            t = with;
            at
        }
        None => return Err(EditError::NoSuchVlan(id)),
    };
    let v = &mut t.vlans[i];
    if let Some(name) = patch.name {
        v.name = name;
    }
    if let Some(max) = patch.max_macs {
        v.max_macs = max;
    }
    let old_vni = v.vni;
    if let Some(vni) = patch.vni {
        if vni.is_none() {
            v.remotes = None;
        }
        v.vni = vni;
    }
    if let Some(remotes) = patch.remotes {
        v.remotes = remotes;
    }
    let new_vni = v.vni;
    if new_vni.is_none() {
        if let Some(x) = &mut t.vxlan {
            x.fdb.retain(|m| m.vlan != id);
        }
    }
    // Static entries on the tunnel port go with it.
    if let Some(old) = old_vni.filter(|o| Some(*o) != new_vni) {
        let tunnel = crate::topology::tunnel_name(old);
        t.fdb.retain(|m| m.port != tunnel);
    }
    Ok((t, i))
}

/// Makes `x` the `vxlan` section.
pub fn set_vxlan(t: &Topology, x: Vxlan) -> Topology {
    let mut t = t.clone();
    t.vxlan = Some(x);
    t
}

/// Removes the `vxlan` section; `None` if there is none. Validation refuses the result while a
/// VLAN still has a `vni`.
pub fn remove_vxlan(t: &Topology) -> Option<Topology> {
    t.vxlan.as_ref()?;
    let mut t = t.clone();
    t.vxlan = None;
    Some(t)
}

/// Parses a remote VTEP address and checks that it can be one of `t`'s: unicast, of
/// `vxlan.local`'s family, not `vxlan.local` itself.
pub fn parse_remote(t: &Topology, address: &str) -> Result<IpAddr> {
    let x = t.vxlan.as_ref().ok_or(EditError::NotVtep)?;
    let a: IpAddr = address
        .trim()
        .parse()
        .map_err(|_| EditError::BadAddress(format!("{address:?} is not an IP address")))?;
    if let Some(why) = address_problem(a, Some(x.local.is_ipv4())) {
        return Err(EditError::BadAddress(why));
    }
    if a == x.local {
        return Err(EditError::BadAddress(format!(
            "{a} is this switch's own address (vxlan.local)"
        )));
    }
    Ok(a)
}

/// The flood list `vlan` asks to change: the VLAN's, which becomes its own list (a VLAN that
/// had none starts from the switch-wide one), or without a VLAN the switch-wide list.
fn flood_list(t: &mut Topology, vlan: Option<u16>) -> Result<&mut Vec<IpAddr>> {
    let Some(id) = vlan else {
        return Ok(&mut t.vxlan.as_mut().ok_or(EditError::NotVtep)?.remotes);
    };
    let switch_wide = t.vxlan.as_ref().ok_or(EditError::NotVtep)?.remotes.clone();
    let v = t
        .vlans
        .iter_mut()
        .find(|v| v.id == id)
        .ok_or(EditError::NoSuchVlan(id))?;
    if v.vni.is_none() {
        return Err(EditError::NoVni(id));
    }
    Ok(v.remotes.get_or_insert(switch_wide))
}

/// Adds remote VTEP `address` to the switch-wide flood list (`vxlan.remotes`), or with `vlan`
/// to that VLAN's flood list. A VLAN without a list of its own gets one: the switch-wide list
/// plus `address` (so it keeps flooding where it did). Refused when the address is in the
/// list already.
pub fn add_remote(t: &Topology, address: &str, vlan: Option<u16>) -> Result<(Topology, IpAddr)> {
    let a = parse_remote(t, address)?;
    let mut t = t.clone();
    let list = flood_list(&mut t, vlan)?;
    if list.contains(&a) {
        return Err(EditError::RemoteExists { address: a, vlan });
    }
    list.push(a);
    Ok((t, a))
}

/// Removes remote VTEP `address` from the switch-wide flood list, or with `vlan` from that
/// VLAN's flood list. A VLAN without a list of its own gets one: the switch-wide list less
/// `address`. An address that does not parse is [`EditError::BadAddress`].
pub fn remove_remote(t: &Topology, address: &str, vlan: Option<u16>) -> Result<Topology> {
    let a: IpAddr = address
        .trim()
        .parse()
        .map_err(|_| EditError::BadAddress(format!("{address:?} is not an IP address")))?;
    let mut t = t.clone();
    let list = match flood_list(&mut t, vlan) {
        Err(EditError::NotVtep) => return Err(EditError::NoSuchRemote { address: a, vlan }),
        other => other?,
    };
    let before = list.len();
    list.retain(|r| *r != a);
    if list.len() == before {
        return Err(EditError::NoSuchRemote { address: a, vlan });
    }
    Ok(t)
}

/// Adds static entry `m`, replacing one for the same MAC and VLAN; returns the topology, the
/// entry's index and the entry.
pub fn add_static_mac(t: &Topology, m: StaticMac) -> (Topology, usize, StaticMac) {
    let mut t = t.clone();
    t.fdb.retain(|x| !(x.vlan == m.vlan && x.mac == m.mac));
    t.fdb.push(m.clone());
    let at = t.fdb.len() - 1;
    (t, at, m)
}

/// Adds mirror `m`; returns the topology and its index.
pub fn add_mirror(t: &Topology, m: crate::topology::Mirror) -> Result<(Topology, usize)> {
    if t.mirrors.iter().any(|x| x.name == m.name) {
        return Err(EditError::MirrorExists(m.name));
    }
    let mut t = t.clone();
    t.mirrors.push(m);
    let at = t.mirrors.len() - 1;
    Ok((t, at))
}

/// Removes mirror `name`.
pub fn remove_mirror(t: &Topology, name: &str) -> Result<Topology> {
    if !t.mirrors.iter().any(|m| m.name == name) {
        return Err(EditError::NoSuchMirror(name.into()));
    }
    let mut t = t.clone();
    t.mirrors.retain(|m| m.name != name);
    Ok(t)
}

/// Removes the static entry for `mac` in `vlan`; `None` if there is none.
pub fn remove_static_mac(t: &Topology, vlan: u16, mac: MacAddr) -> Option<Topology> {
    let is_it = |m: &StaticMac| m.vlan == vlan && m.mac == mac;
    let is_remote = |m: &crate::topology::RemoteMac| m.vlan == vlan && m.mac == mac;
    let remote = t
        .vxlan
        .as_ref()
        .is_some_and(|x| x.fdb.iter().any(is_remote));
    if !t.fdb.iter().any(is_it) && !remote {
        return None;
    }
    let mut t = t.clone();
    t.fdb.retain(|m| !is_it(m));
    if let Some(x) = &mut t.vxlan {
        x.fdb.retain(|m| !is_remote(m));
    }
    Some(t)
}

/// Removes the static entries in `vlan` and on `port` (each filter only when given); returns
/// the topology and how many entries went.
pub fn flush_static(t: &Topology, vlan: Option<u16>, port: Option<&str>) -> (Topology, usize) {
    let mut t = t.clone();
    let before = t.fdb.len();
    t.fdb
        .retain(|m| !(vlan.is_none_or(|v| v == m.vlan) && port.is_none_or(|p| p == m.port)));
    let mut removed = before - t.fdb.len();
    // Static remote MACs, on their VLAN's tunnel port.
    let tunnels: Vec<(u16, String)> = t
        .vlans
        .iter()
        .filter_map(|v| Some((v.id, crate::topology::tunnel_name(v.vni?))))
        .collect();
    if let Some(x) = &mut t.vxlan {
        let before = x.fdb.len();
        x.fdb.retain(|m| {
            let on = tunnels
                .iter()
                .find(|(v, _)| *v == m.vlan)
                .map(|(_, n)| n.as_str());
            !(vlan.is_none_or(|v| v == m.vlan) && port.is_none_or(|p| Some(p) == on))
        });
        removed += before - x.fdb.len();
    }
    (t, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "vlans: [{id: 1, name: default}, {id: 10}, {id: 20}, {id: 30}]\nports:\n  - {name: a, kind: tap, mode: access, vlan: 10}\n  - {name: t, kind: tap, mode: trunk, vlans: [10, 20], native_vlan: 1}\nfdb:\n  - {vlan: 10, mac: '02:00:00:00:00:01', port: t}\n  - {vlan: 20, mac: '02:00:00:00:00:02', port: t}\n  - {vlan: 1, mac: '02:00:00:00:00:03', port: t}\n  - {vlan: 10, mac: '02:00:00:00:00:04', port: a}\n";

    fn base() -> Topology {
        Topology::from_yaml(BASE).unwrap()
    }

    const REMOTE_MACS: &str = "vxlan: {local: 192.0.2.1, remotes: [192.0.2.2], fdb: [{vlan: 10, mac: '02:00:00:00:00:09', remote: 192.0.2.2}, {vlan: 20, mac: '02:00:00:00:00:08', remote: 192.0.2.2}]}\nvlans: [{id: 10, vni: 1010}, {id: 20, vni: 1020}]\nfdb: [{vlan: 10, mac: '02:00:00:00:00:07', port: vxlan1010}]\n";

    #[test]
    fn static_remote_macs_are_removed_flushed_and_go_with_their_vlan_or_vni() {
        let t = Topology::from_yaml(REMOTE_MACS).unwrap();
        let mac = |s: &str| s.parse::<MacAddr>().unwrap();
        let r = remove_static_mac(&t, 10, mac("02:00:00:00:00:09")).unwrap();
        assert_eq!(r.vxlan.as_ref().unwrap().fdb.len(), 1);
        r.validate().unwrap();
        let (r, n) = flush_static(&t, None, Some("vxlan1010"));
        assert_eq!(n, 2, "the declared entry and the remote MAC on the tunnel");
        assert_eq!(r.vxlan.as_ref().unwrap().fdb[0].vlan, 20);
        let r = delete_vlan(&t, 20).unwrap();
        r.validate().unwrap();
        let patch = VlanPatch {
            vni: Some(None),
            ..Default::default()
        };
        let (r, _) = patch_vlan(&t, 10, patch).unwrap();
        assert!(
            r.fdb.is_empty(),
            "the tunnel port's static entry went with it"
        );
        r.validate().unwrap();
    }

    fn port(yaml: &str) -> Port {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn macs(t: &Topology) -> Vec<(u16, MacAddr, &str)> {
        t.fdb
            .iter()
            .map(|m| (m.vlan, m.mac, m.port.as_str()))
            .collect()
    }

    fn mac(text: &str) -> MacAddr {
        text.parse().unwrap()
    }

    #[test]
    fn add_port_appends_and_refuses_a_name_in_use() {
        let (t, at) = add_port(
            &base(),
            port("{name: b, kind: tap, mode: access, vlan: 20}"),
        )
        .unwrap();
        assert_eq!(at, 2);
        assert_eq!(t.ports[2].name, "b");
        assert_eq!(
            add_port(
                &base(),
                port("{name: a, kind: netdev, mode: access, vlan: 20}")
            ),
            Err(EditError::PortExists("a".into()))
        );
    }

    #[test]
    fn patch_changes_only_what_it_gives() {
        let patch = PortPatch {
            max_macs: Some(Some(5)),
            ..Default::default()
        };
        let (t, i) = patch_port(&base(), "t", patch).unwrap();
        assert_eq!(i, 1);
        assert_eq!(t.ports[1].max_macs, Some(5));
        assert_eq!(t.ports[1].vlans, Some(vec![10, 20]));
        assert_eq!(t.fdb, base().fdb);
        assert_eq!(
            patch_port(&base(), "x", PortPatch::default()),
            Err(EditError::NoSuchPort("x".into()))
        );
    }

    #[test]
    fn a_mode_change_clears_the_old_modes_fields_and_the_static_macs_left_behind() {
        let patch = PortPatch {
            mode: Some(PortMode::Access),
            vlan: Some(Some(20)),
            ..Default::default()
        };
        let (t, _) = patch_port(&base(), "t", patch).unwrap();
        let p = &t.ports[1];
        assert_eq!(
            (p.mode, p.vlan, &p.vlans, p.native_vlan),
            (PortMode::Access, Some(20), &None, None)
        );
        assert_eq!(
            macs(&t),
            [
                (20, mac("02:00:00:00:00:02"), "t"),
                (10, mac("02:00:00:00:00:04"), "a")
            ]
        );
        // the same mode again keeps the fields; null clears one
        let patch = PortPatch {
            mode: Some(PortMode::Trunk),
            native_vlan: Some(None),
            ..Default::default()
        };
        let (t, _) = patch_port(&base(), "t", patch).unwrap();
        assert_eq!(
            (&t.ports[1].vlans, t.ports[1].native_vlan),
            (&Some(vec![10, 20]), None)
        );
        assert_eq!(t.fdb.len(), 3, "the VLAN 1 entry went with the native VLAN");
    }

    #[test]
    fn delete_port_takes_its_static_macs() {
        let t = delete_port(&base(), "t").unwrap();
        assert_eq!(t.ports.len(), 1);
        assert_eq!(macs(&t), [(10, mac("02:00:00:00:00:04"), "a")]);
        assert_eq!(
            delete_port(&base(), "x"),
            Err(EditError::NoSuchPort("x".into()))
        );
    }

    #[test]
    fn add_vlan_keeps_them_sorted() {
        let v = Vlan {
            id: 15,
            name: None,
            max_macs: None,
            vni: None,
            remotes: None,
        };
        let (t, at) = add_vlan(&base(), v.clone()).unwrap();
        assert_eq!(at, 2);
        assert_eq!(
            t.vlans.iter().map(|v| v.id).collect::<Vec<_>>(),
            [1, 10, 15, 20, 30]
        );
        let v = Vlan { id: 10, ..v };
        assert_eq!(add_vlan(&base(), v), Err(EditError::VlanExists(10)));
    }

    #[test]
    fn delete_vlan_rules() {
        // unused: removed, with nothing else
        let t = delete_vlan(&base(), 30).unwrap();
        assert_eq!(
            t.vlans.iter().map(|v| v.id).collect::<Vec<_>>(),
            [1, 10, 20]
        );
        assert_eq!(
            delete_vlan(&base(), 20),
            Err(EditError::VlanInUse {
                id: 20,
                ports: vec!["t".into()]
            })
        );
        assert_eq!(
            delete_vlan(&base(), 10).unwrap_err().to_string(),
            "VLAN 10 is used by ports a, t"
        );
        assert_eq!(delete_vlan(&base(), 40), Err(EditError::NoSuchVlan(40)));
        // VLAN 1: its declaration goes, its ports and static MACs stay
        let t = delete_vlan(&base(), 1).unwrap();
        assert_eq!(t.vlans[0].id, 10);
        assert_eq!(t.fdb, base().fdb);
        assert_eq!(delete_vlan(&t, 1), Err(EditError::DefaultVlan(1)));
    }

    #[test]
    fn a_vlans_static_macs_go_with_it() {
        let mut t = base();
        t.fdb.clear();
        t.ports.truncate(1);
        t.fdb.push(StaticMac {
            vlan: 30,
            mac: mac("02:00:00:00:00:09"),
            port: "a".into(),
        });
        assert!(delete_vlan(&t, 30).unwrap().fdb.is_empty());
    }

    #[test]
    fn static_macs() {
        let m = StaticMac {
            vlan: 10,
            mac: mac("02:00:00:00:00:01"),
            port: "a".into(),
        };
        let (t, at, m) = add_static_mac(
            &base(),
            StaticMac {
                mac: mac("02:00:00:00:00:0A"),
                ..m
            },
        );
        assert_eq!((at, m.mac.to_string()), (4, "02:00:00:00:00:0a".into()));
        assert_eq!(t.fdb.len(), 5);
        // the same MAC and VLAN replaces the entry, whatever the port
        let again = StaticMac {
            port: "t".into(),
            ..m.clone()
        };
        let (t, at, _) = add_static_mac(&t, again);
        assert_eq!((at, t.fdb.len(), t.fdb[4].port.as_str()), (4, 5, "t"));
        // a MAC is parsed where it enters (a body, a file, a path), so an entry holds only
        // valid addresses
        assert!(
            serde_json::from_str::<StaticMac>(r#"{"vlan":10,"mac":"zz","port":"a"}"#)
                .unwrap_err()
                .to_string()
                .contains("\"zz\" is not a MAC address")
        );

        let mac = "02:00:00:00:00:02".parse().unwrap();
        let t = remove_static_mac(&base(), 20, mac).unwrap();
        assert_eq!(t.fdb.len(), 3);
        assert!(remove_static_mac(&base(), 10, mac).is_none());

        assert_eq!(flush_static(&base(), None, None).1, 4);
        assert_eq!(flush_static(&base(), Some(10), None).1, 2);
        let (t, n) = flush_static(&base(), Some(10), Some("t"));
        assert_eq!((n, t.fdb.len()), (1, 3));
    }

    const VTEP: &str = "vxlan: { local: 192.0.2.1, remotes: [192.0.2.2], fdb: [{ vlan: 20, mac: '02:00:00:00:00:09', remote: 192.0.2.4 }] }\nvlans:\n  - { id: 10, vni: 1010 }\n  - { id: 20, vni: 1020, remotes: [192.0.2.4] }\n  - { id: 30 }\n";

    fn vtep() -> Topology {
        Topology::from_yaml(VTEP).unwrap()
    }

    fn ips(list: &[IpAddr]) -> Vec<String> {
        list.iter().map(IpAddr::to_string).collect()
    }

    #[test]
    fn set_and_remove_the_vxlan_section() {
        let x = vtep().vxlan.unwrap();
        let t = set_vxlan(&base(), x.clone());
        assert_eq!(t.vxlan, Some(x));
        assert_eq!(remove_vxlan(&t).unwrap().vxlan, None);
        assert!(remove_vxlan(&base()).is_none());
        // removing it while VLANs have a vni is left to validation, which names them
        let errors = remove_vxlan(&vtep()).unwrap().validate().unwrap_err();
        assert!(errors.to_string().contains("vlans[0].vni"), "{errors}");
    }

    #[test]
    fn add_remote_to_the_switch_wide_list_or_a_vlans() {
        let (t, a) = add_remote(&vtep(), "192.0.2.3", None).unwrap();
        assert_eq!(a.to_string(), "192.0.2.3");
        assert_eq!(
            ips(&t.vxlan.as_ref().unwrap().remotes),
            ["192.0.2.2", "192.0.2.3"]
        );
        assert_eq!(ips(&t.remotes_of(10)), ["192.0.2.2", "192.0.2.3"]);
        assert_eq!(ips(&t.remotes_of(20)), ["192.0.2.4"], "its own list stays");
        // a VLAN without a list of its own gets the switch-wide one plus the address
        let (t, _) = add_remote(&vtep(), "192.0.2.5", Some(10)).unwrap();
        assert_eq!(ips(&t.remotes_of(10)), ["192.0.2.2", "192.0.2.5"]);
        assert_eq!(ips(&t.vxlan.as_ref().unwrap().remotes), ["192.0.2.2"]);
        let (t, _) = add_remote(&vtep(), "192.0.2.5", Some(20)).unwrap();
        assert_eq!(ips(&t.remotes_of(20)), ["192.0.2.4", "192.0.2.5"]);
        assert!(t.validate().is_ok());
    }

    #[test]
    fn add_remote_refusals() {
        let err = |a: &str, v| add_remote(&vtep(), a, v).unwrap_err();
        assert!(matches!(
            err("192.0.2.2", None),
            EditError::RemoteExists { vlan: None, .. }
        ));
        assert!(matches!(
            err("192.0.2.2", Some(10)),
            EditError::RemoteExists { vlan: Some(10), .. }
        ));
        for bad in ["nope", "224.0.0.1", "2001:db8::1", "0.0.0.0", "192.0.2.1"] {
            assert!(matches!(err(bad, None), EditError::BadAddress(_)), "{bad}");
        }
        assert_eq!(err("192.0.2.9", Some(30)), EditError::NoVni(30));
        assert_eq!(err("192.0.2.9", Some(40)), EditError::NoSuchVlan(40));
        assert_eq!(
            add_remote(&base(), "192.0.2.9", None),
            Err(EditError::NotVtep)
        );
    }

    #[test]
    fn remove_remote_from_the_switch_wide_list_or_a_vlans() {
        let t = remove_remote(&vtep(), "192.0.2.2", None).unwrap();
        assert!(t.vxlan.as_ref().unwrap().remotes.is_empty());
        assert!(t.remotes_of(10).is_empty());
        // a VLAN without a list of its own gets the switch-wide one less the address
        let (t, _) = add_remote(&vtep(), "192.0.2.3", None).unwrap();
        let t = remove_remote(&t, "192.0.2.2", Some(10)).unwrap();
        assert_eq!(ips(&t.remotes_of(10)), ["192.0.2.3"]);
        assert_eq!(
            ips(&t.vxlan.as_ref().unwrap().remotes),
            ["192.0.2.2", "192.0.2.3"]
        );
        let t = remove_remote(&vtep(), "192.0.2.4", Some(20)).unwrap();
        assert_eq!(t.vlans[1].remotes, Some(vec![]), "floods to no one");

        let gone = |a: &str, v| remove_remote(&vtep(), a, v).unwrap_err();
        assert!(matches!(
            gone("192.0.2.4", None),
            EditError::NoSuchRemote { vlan: None, .. }
        ));
        assert!(matches!(
            gone("192.0.2.2", Some(20)),
            EditError::NoSuchRemote { vlan: Some(20), .. }
        ));
        assert!(matches!(gone("nope", None), EditError::BadAddress(_)));
        assert_eq!(gone("192.0.2.2", Some(30)), EditError::NoVni(30));
        assert!(matches!(
            remove_remote(&base(), "192.0.2.2", None),
            Err(EditError::NoSuchRemote { .. })
        ));
    }

    #[test]
    fn patch_vlan_sets_and_clears_a_vni() {
        let patch = VlanPatch {
            vni: Some(Some(1030)),
            name: Some(Some("blue".into())),
            ..Default::default()
        };
        let (t, i) = patch_vlan(&vtep(), 30, patch).unwrap();
        assert_eq!(i, 2);
        let v = &t.vlans[2];
        assert_eq!((v.vni, v.name.as_deref()), (Some(1030), Some("blue")));
        assert!(t.validate().is_ok());
        // clearing the vni takes the VLAN's own flood list and static remote MACs with it
        let patch = VlanPatch {
            vni: Some(None),
            ..Default::default()
        };
        let (t, _) = patch_vlan(&vtep(), 20, patch).unwrap();
        assert_eq!((t.vlans[1].vni, &t.vlans[1].remotes), (None, &None));
        assert!(t.vxlan.as_ref().unwrap().fdb.is_empty());
        assert!(t.validate().is_ok());
        // absent fields stay; null clears
        let patch = VlanPatch {
            remotes: Some(None),
            ..Default::default()
        };
        let (t, _) = patch_vlan(&vtep(), 20, patch).unwrap();
        assert_eq!((t.vlans[1].vni, &t.vlans[1].remotes), (Some(1020), &None));
        assert_eq!(t.vxlan, vtep().vxlan);
        assert_eq!(
            patch_vlan(&vtep(), 40, VlanPatch::default()),
            Err(EditError::NoSuchVlan(40))
        );
        // VLAN 1 always exists: a patch declares it
        let patch = VlanPatch {
            name: Some(Some("default".into())),
            ..Default::default()
        };
        let (t, i) = patch_vlan(&vtep(), 1, patch).unwrap();
        assert_eq!((i, t.vlans[0].id, t.vlans.len()), (0, 1, 4));
        // the body: absent, null and a value are three things
        let p: VlanPatch = serde_json::from_str(r#"{"vni":null,"name":"x"}"#).unwrap();
        assert_eq!(
            (p.vni, p.name, p.remotes),
            (Some(None), Some(Some("x".into())), None)
        );
    }
}
