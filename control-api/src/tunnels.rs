//! The VXLAN tunnels of a topology ([`Topology::running`] makes their ports): what each
//! kernel interface is made with, and what its forwarding database must hold.

use std::net::IpAddr;

use dataplane::port::vxlan::{self, FdbEntry, TunnelSpec};
use dataplane::port::PortError;
use dataplane::wire::MacAddr;

use crate::topology::{self, PortKind, Topology};

/// What tunnel port `p` of `t` is made with: its VNI, the VTEP settings, the underlay (named,
/// or the interface that holds `vxlan.local`) and an MTU that fits in the underlay's.
pub fn spec(t: &Topology, p: &topology::Port) -> Result<TunnelSpec, PortError> {
    let err = |op, source| PortError::Tunnel {
        port: p.name.clone(),
        op,
        source,
    };
    let other = |op, why: String| err(op, std::io::Error::other(why));
    let x = t.vxlan.as_ref().ok_or_else(|| {
        other(
            "cannot configure the tunnel",
            "the topology has no vxlan section".into(),
        )
    })?;
    let vni = p.vlan.and_then(|v| t.vni_of(v)).ok_or_else(|| {
        other(
            "cannot configure the tunnel",
            format!("VLAN {:?} has no vni", p.vlan),
        )
    })?;
    let underlay = match &x.underlay {
        Some(name) => dataplane::port::packet::ifindex(name)
            .map(|i| (i, name.clone()))
            .ok_or_else(|| {
                other(
                    "cannot find the underlay",
                    format!("vxlan.underlay {name} does not exist"),
                )
            })?,
        None => vxlan::interface_with(x.local)
            .map_err(|e| err("cannot find the underlay", e))?
            .ok_or_else(|| {
                other(
                    "cannot find the underlay",
                    format!(
                        "no interface holds vxlan.local {}: add that address to the underlay \
                         interface (tunnels are sent from it)",
                        x.local
                    ),
                )
            })?,
    };
    if x.underlay.is_none() && underlay.1 == "lo" {
        return Err(other(
            "cannot find the underlay",
            format!(
                "vxlan.local {} is on lo: name the interface toward the remotes as \
                 vxlan.underlay (its MTU sets the tunnels')",
                x.local
            ),
        ));
    }
    let underlay_mtu = dataplane::port::packet::mtu(&underlay.1)
        .map_err(|e| err("cannot read the underlay's MTU", e))?;
    let mtu = underlay_mtu
        .saturating_sub(vxlan::overhead(x.local))
        .max(68);
    Ok(TunnelSpec {
        name: p.name.clone(),
        vni,
        local: x.local,
        dstport: x.dstport(),
        underlay: Some(underlay.0),
        mtu,
    })
}

/// The configured entries of VLAN `vlan`'s tunnel: one flood entry per remote of its flood
/// list and its static remote MACs (pure).
pub fn flood_and_static(t: &Topology, vlan: u16) -> Vec<FdbEntry> {
    let flood = t.remotes_of(vlan).into_iter().map(|remote| FdbEntry {
        mac: MacAddr::ZERO,
        remote,
        fixed: true,
    });
    let fixed = t
        .vxlan
        .iter()
        .flat_map(|x| &x.fdb)
        .filter(|m| m.vlan == vlan)
        .map(|m| FdbEntry {
            mac: m.mac,
            remote: m.remote,
            fixed: true,
        });
    flood.chain(fixed).collect()
}

/// The ports of VLAN `vlan` (tunnels and vhost-user ports aside) whose MTU, as `mtu_of`
/// reads it, is bigger than `tunnel_mtu`, with that MTU. A port whose MTU cannot be read
/// (its interface moved to another namespace) is not listed.
pub fn too_big_with(
    t: &Topology,
    vlan: u16,
    tunnel_mtu: u32,
    mtu_of: impl Fn(&str) -> Option<u32>,
) -> Vec<(String, u32)> {
    t.ports
        .iter()
        .filter(|p| matches!(p.kind, PortKind::Tap | PortKind::Netdev))
        .filter(|p| p.member_vlans().contains(&vlan))
        .filter_map(|p| Some((p.name.clone(), mtu_of(&p.name)?)))
        .filter(|(_, m)| *m > tunnel_mtu)
        .collect()
}

/// [`too_big_with`] the interfaces' MTUs in the calling thread's namespace.
pub fn too_big(t: &Topology, vlan: u16, tunnel_mtu: u32) -> Vec<(String, u32)> {
    too_big_with(t, vlan, tunnel_mtu, |name| {
        dataplane::port::packet::mtu(name).ok()
    })
}

/// The remote VTEP each MAC of tunnel `name` was learned behind, as the kernel has it.
pub fn learned_remotes(name: &str) -> Vec<(MacAddr, IpAddr)> {
    vxlan::fdb(name)
        .map(|all| {
            all.into_iter()
                .filter(|e| !e.is_flood())
                .map(|e| (e.mac, e.remote))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPO: &str = "\
vxlan: { local: 192.0.2.1, remotes: [192.0.2.2, 192.0.2.3], fdb: [{ vlan: 20, mac: '02:00:00:00:00:09', remote: 192.0.2.4 }] }
vlans:
  - { id: 10, vni: 1010 }
  - { id: 20, vni: 1020, remotes: [192.0.2.4] }
  - { id: 30 }
ports:
  - { name: a, kind: tap, mode: access, vlan: 10 }
  - { name: b, kind: tap, mode: trunk, vlans: [10, 20, 30] }
  - { name: c, kind: vhost-user, mode: access, vlan: 10, socket: /run/c.sock }
";

    fn topo() -> Topology {
        Topology::from_yaml(TOPO).unwrap()
    }

    #[test]
    fn each_vni_gets_an_access_tunnel_port_and_its_static_macs() {
        let r = topo().running();
        let tunnels: Vec<_> = r
            .ports
            .iter()
            .filter(|p| p.kind == PortKind::Vxlan)
            .map(|p| (p.name.as_str(), p.vlan, p.brings_link_up()))
            .collect();
        assert_eq!(
            tunnels,
            [("vxlan1010", Some(10), true), ("vxlan1020", Some(20), true)]
        );
        assert_eq!(r.fdb.len(), 1);
        assert_eq!(r.fdb[0].port, "vxlan1020");
        assert!(
            r.validate().is_err(),
            "the running form is not a declaration"
        );
        let mut t = topo();
        t.vxlan = None;
        t.vlans.iter_mut().for_each(|v| {
            v.vni = None;
            v.remotes = None
        });
        assert_eq!(t.running(), t, "no VTEP, no tunnels");
    }

    #[test]
    fn a_vlan_floods_to_its_own_remotes_or_the_switch_wide_ones() {
        let t = topo();
        let remotes = |v| {
            flood_and_static(&t, v)
                .iter()
                .map(|e| (e.is_flood(), e.remote.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            remotes(10),
            [(true, "192.0.2.2".into()), (true, "192.0.2.3".into())]
        );
        assert_eq!(
            remotes(20),
            [(true, "192.0.2.4".into()), (false, "192.0.2.4".into())]
        );
    }

    #[test]
    fn ports_too_big_for_the_tunnel_are_named_and_unreadable_ones_skipped() {
        let t = topo().running();
        let mtus = |name: &str| match name {
            "a" => Some(1500),
            "b" => Some(1450),
            _ => None,
        };
        assert_eq!(too_big_with(&t, 10, 1450, mtus), [("a".to_string(), 1500)]);
        assert!(too_big_with(&t, 10, 1500, mtus).is_empty());
    }
}
