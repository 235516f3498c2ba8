//! From a topology to the dataplane's configuration snapshot.

use std::sync::Arc;

use dataplane::config::FlapPolicy;
use dataplane::config::{Learning, PortSecurity};
use dataplane::{PortEntry, Snapshot};

use crate::topology::{self, LimitAction, Topology};

/// The dataplane mode of a validated topology port.
pub fn port_mode(p: &topology::Port) -> dataplane::PortMode {
    match p.mode {
        topology::PortMode::Access => dataplane::PortMode::Access {
            // validated: an access port has a vlan
            vlan: p.vlan.unwrap_or(topology::DEFAULT_VLAN),
        },
        topology::PortMode::Trunk => {
            dataplane::PortMode::trunk(p.vlans.iter().flatten().copied(), p.native_vlan)
        }
    }
}

/// The dataplane's port security for port `p` of `topo`: its limit (own or default), limit
/// action and allowed MACs.
pub fn port_security(topo: &Topology, p: &topology::Port) -> PortSecurity {
    PortSecurity {
        max_macs: topo.port_max_macs(p),
        action: match p.mac_limit_action.unwrap_or_default() {
            LimitAction::Flood => dataplane::config::LimitAction::Flood,
            LimitAction::Drop => dataplane::config::LimitAction::Drop,
            LimitAction::Shutdown => dataplane::config::LimitAction::Shutdown,
        },
        allowed: p
            .allowed_macs
            .as_ref()
            .map(|macs| macs.iter().copied().collect()),
    }
}

/// The dataplane mode of port `p` of `topo`: a mirror's output has no VLANs of its own while
/// it is one ([`dataplane::PortMode::MirrorOutput`]), every other port its file mode.
pub fn entry_mode(topo: &Topology, p: &topology::Port) -> dataplane::PortMode {
    if topo.mirror_output(&p.name).is_some() {
        dataplane::PortMode::MirrorOutput
    } else {
        port_mode(p)
    }
}

/// The snapshot entry of port `p` of `topo`, with its I/O handle.
pub fn port_entry(topo: &Topology, p: &topology::Port, port: Arc<dataplane::Port>) -> PortEntry {
    PortEntry {
        security: port_security(topo, p),
        ..PortEntry::new(p.name.clone(), entry_mode(topo, p), port)
    }
}

/// The dataplane's mirrors of `topo`, with the port ids of `ports` (a mirror whose output is
/// not among them is left out).
pub fn mirrors(topo: &Topology, ports: &[Option<PortEntry>]) -> Vec<dataplane::config::Mirror> {
    let id = |name: &str| {
        ports
            .iter()
            .position(|e| e.as_ref().is_some_and(|e| e.name == name))
            .map(|i| i as dataplane::PortId)
    };
    let ids = |names: &[String]| names.iter().filter_map(|n| id(n)).collect::<Vec<_>>();
    topo.mirrors
        .iter()
        .filter_map(|m| {
            let dir = m.direction.unwrap_or_default();
            let (rx, tx) = (
                dir != topology::MirrorDirection::Tx,
                dir != topology::MirrorDirection::Rx,
            );
            Some(dataplane::config::Mirror {
                output: id(&m.output)?,
                rx_ports: if rx { ids(&m.ports) } else { Vec::new() },
                tx_ports: if tx { ids(&m.ports) } else { Vec::new() },
                vlans: dataplane::config::VlanSet::from_vids(m.vlans.iter().copied()),
                tag: m.vlan,
            })
        })
        .collect()
}

/// The switch-wide learning rules of `topo`: per-VLAN limits and the flap policy.
pub fn learning(topo: &Topology) -> Learning {
    let flap = topo.mac_flap();
    Learning::new(
        |vid| topo.vlan_max_macs(vid),
        FlapPolicy {
            moves: flap.moves,
            window_secs: flap.window_secs,
            damp_secs: flap.damp_secs,
        },
    )
}

/// A snapshot of `ports` (indexed by port id) under the settings of `topo`, with every
/// entry's mode and port security taken from `topo`.
pub fn snapshot(topo: &Topology, mut ports: Vec<Option<PortEntry>>) -> Snapshot {
    for e in ports.iter_mut().flatten() {
        if let Some(p) = topo.port(&e.name) {
            e.mode = entry_mode(topo, p);
            e.security = port_security(topo, p);
        }
    }
    let aging = u32::try_from(topo.mac_aging_secs).unwrap_or(u32::MAX);
    let mirrors = mirrors(topo, &ports);
    Snapshot::new(ports, aging)
        .with_learning(learning(topo))
        .with_mirrors(mirrors)
}

/// Builds the snapshot for `topo`; `attach` gives each port its I/O handle, in file order
/// (port ids follow the file's order).
pub fn build_snapshot<E>(
    topo: &Topology,
    mut attach: impl FnMut(&topology::Port) -> Result<Arc<dataplane::Port>, E>,
) -> Result<Snapshot, E> {
    let mut ports = Vec::with_capacity(topo.ports.len());
    for p in &topo.ports {
        ports.push(Some(port_entry(topo, p, attach(p)?)));
    }
    Ok(snapshot(topo, ports))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::wire::EgressTag;

    /// The snapshot of `t` with every port detached (no interface needed).
    fn detached(t: &Topology) -> Snapshot {
        build_snapshot(t, |p| {
            let port = dataplane::Port::detached(&p.name, "test", Arc::default());
            Ok::<_, ()>(Arc::new(port))
        })
        .unwrap()
    }

    #[test]
    fn modes_follow_the_file() {
        let t = Topology::from_yaml(
            "vlans: [{id: 10}, {id: 20}]\nports:\n  - {name: a, kind: tap, mode: access, vlan: 10}\n  - {name: up, kind: netdev, mode: trunk, vlans: [10, 20], native_vlan: 1}\n",
        )
        .unwrap();
        let s = detached(&t);
        assert_eq!(s.egress(0, 10), Some(EgressTag::Untagged));
        assert_eq!(s.egress(0, 20), None);
        assert_eq!(s.egress(1, 20), Some(EgressTag::Tagged));
        assert_eq!(s.egress(1, 1), Some(EgressTag::Untagged));
        assert_eq!(s.members(10), &[0, 1]);
        assert_eq!(s.aging_secs, 300);
    }

    #[test]
    fn a_mirror_output_leaves_its_vlans_and_sources_become_ids() {
        let t = Topology::from_yaml(
            "vlans: [{id: 10}]\nports:\n  - {name: a, kind: tap, mode: access, vlan: 10}\n  - {name: b, kind: tap, mode: access, vlan: 10}\n  - {name: mon, kind: tap, mode: access, vlan: 10}\nmirrors:\n  - {name: m, output: mon, ports: [b], vlans: [10], direction: rx, vlan: 99}\n",
        )
        .unwrap();
        let s = detached(&t);
        assert_eq!(s.members(10), &[0, 1], "the output is in no VLAN");
        assert_eq!(s.egress(2, 10), None);
        let m = &s.mirrors[0];
        assert_eq!(
            (m.output, &m.rx_ports[..], &m.tx_ports[..], m.tag),
            (2, &[1][..], &[][..], Some(99))
        );
        assert!(m.vlans.contains(10));
    }
}
