//! From a topology to the dataplane's configuration snapshot.

use std::sync::Arc;

use dataplane::{PortEntry, Snapshot};

use crate::topology::{self, Topology};

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

/// Builds the snapshot for `topo`; `attach` gives each port its I/O handle, in file order
/// (port ids follow the file's order).
pub fn build_snapshot<E>(
    topo: &Topology,
    mut attach: impl FnMut(&topology::Port) -> Result<Arc<dataplane::Port>, E>,
) -> Result<Snapshot, E> {
    let mut ports = Vec::with_capacity(topo.ports.len());
    for p in &topo.ports {
        ports.push(Some(PortEntry {
            name: p.name.clone(),
            mode: port_mode(p),
            port: Some(attach(p)?),
        }));
    }
    let aging = u32::try_from(topo.mac_aging_secs).unwrap_or(u32::MAX);
    Ok(Snapshot::new(ports, aging))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::wire::EgressTag;

    #[test]
    fn modes_follow_the_file() {
        let t = Topology::from_yaml(
            "vlans: [{id: 10}, {id: 20}]\nports:\n  - {name: a, kind: tap, mode: access, vlan: 10}\n  - {name: up, kind: netdev, mode: trunk, vlans: [10, 20], native_vlan: 1}\n",
        )
        .unwrap();
        let s = build_snapshot(&t, |p| {
            Ok::<_, ()>(Arc::new(dataplane::Port::detached(
                &p.name,
                "test",
                Arc::default(),
            )))
        })
        .unwrap();
        assert_eq!(s.egress(0, 10), Some(EgressTag::Untagged));
        assert_eq!(s.egress(0, 20), None);
        assert_eq!(s.egress(1, 20), Some(EgressTag::Tagged));
        assert_eq!(s.egress(1, 1), Some(EgressTag::Untagged));
        assert_eq!(s.members(10), &[0, 1]);
        assert_eq!(s.aging_secs, 300);
    }
}
