//! What applying a list of changes does to the running port table, worked out before anything
//! is touched. Pure: no switch, no I/O; [`crate::Controller::apply`] carries it out (attaches,
//! persists, publishes, flushes, sets links up).

use dataplane::fdb::FlushFilter;
use dataplane::PortId;

use crate::diff::{Change, PortField};
use crate::topology::Topology;

/// The port-table side of one change of topology.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Ids of the ports that leave the table: removed ones, and replaced ones (their kind
    /// changes) in their old slot.
    pub detach: Vec<PortId>,
    /// Of those, the replaced ports with their old id: they must let go of their interface
    /// (a table without them is published first) before they are attached anew.
    pub replaced: Vec<(String, PortId)>,
    /// Ports to attach (added and replaced), in change order, each with the slot it goes into:
    /// first the slots that were free before this change, then new ones at the end. A slot
    /// freed by this change is not reused by it, so the flushes of its old port cannot hit
    /// the new one.
    pub attach: Vec<(String, usize)>,
    /// MAC table entries to flush once the new table is published: everything of a port that
    /// leaves; of an updated port, its entries in VLANs it leaves, and its learned entries
    /// when its MAC limit or allow list changes (it learns afresh under the new rules).
    pub flush: Vec<FlushFilter>,
    /// Interfaces to set up once published: updated ports whose `admin_up` became true.
    pub link_up: Vec<String>,
}

/// The plan for `changes` (from [`crate::diff::diff`]`(old, desired)`), given the running
/// table's port names by id (`None` for a free slot).
pub fn plan(
    changes: &[Change],
    old: &Topology,
    desired: &Topology,
    slots: &[Option<&str>],
) -> Plan {
    let id_of = |name: &str| {
        slots
            .iter()
            .position(|n| *n == Some(name))
            .map(|i| i as PortId)
    };
    let mut out = Plan::default();
    for c in changes {
        if let Change::RemovePort { name } | Change::ReplacePort { name } = c {
            if let Some(id) = id_of(name) {
                out.detach.push(id);
                out.flush.push(FlushFilter {
                    port: Some(id),
                    include_static: true,
                    ..Default::default()
                });
                if matches!(c, Change::ReplacePort { .. }) {
                    out.replaced.push((name.clone(), id));
                }
            }
        }
    }
    let mut free = (0..slots.len()).filter(|i| slots[*i].is_none());
    let mut end = slots.len();
    for c in changes {
        match c {
            Change::AddPort { name } | Change::ReplacePort { name } => {
                let slot = free.next().unwrap_or_else(|| {
                    end += 1;
                    end - 1
                });
                out.attach.push((name.clone(), slot));
            }
            Change::UpdatePort { name, fields } => {
                let (Some(p), Some(o), Some(id)) =
                    (desired.port(name), old.port(name), id_of(name))
                else {
                    continue;
                };
                let new_members = p.member_vlans();
                for vlan in o.member_vlans() {
                    if !new_members.contains(&vlan) {
                        out.flush.push(FlushFilter {
                            vlan: Some(vlan),
                            port: Some(id),
                            include_static: true,
                        });
                    }
                }
                if fields.contains(&PortField::AdminUp) && p.brings_link_up() {
                    out.link_up.push(p.name.clone());
                }
                if fields
                    .iter()
                    .any(|f| matches!(f, PortField::MaxMacs | PortField::AllowedMacs))
                {
                    out.flush.push(FlushFilter {
                        port: Some(id),
                        ..Default::default()
                    });
                }
            }
            // A port that becomes a mirror's output leaves its VLANs: what it learned goes.
            Change::SetMirror { name } => {
                let output = |t: &Topology| {
                    t.mirrors
                        .iter()
                        .find(|m| &m.name == name)
                        .map(|m| m.output.clone())
                };
                if let Some(out_port) = output(desired) {
                    let was = old.mirror_output(&out_port).is_some();
                    if let (false, Some(id)) = (was, id_of(&out_port)) {
                        out.flush.push(FlushFilter {
                            port: Some(id),
                            include_static: true,
                            ..Default::default()
                        });
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::diff;

    const BASE: &str = "vlans: [{id: 10}, {id: 20}]\nports:\n  - {name: a, kind: tap, mode: access, vlan: 10}\n  - {name: b, kind: tap, mode: trunk, vlans: [10, 20]}\n  - {name: c, kind: tap, mode: access, vlan: 20}\n";

    fn topo(yaml: &str) -> Topology {
        Topology::from_yaml(yaml).unwrap()
    }

    fn plan_of(old: &str, new: &str, slots: &[Option<&str>]) -> Plan {
        let (old, new) = (topo(old), topo(new));
        plan(&diff(&old, &new), &old, &new, slots)
    }

    fn all_of(id: PortId) -> FlushFilter {
        FlushFilter {
            port: Some(id),
            include_static: true,
            ..Default::default()
        }
    }

    #[test]
    fn no_change_no_plan() {
        assert_eq!(
            plan_of(BASE, BASE, &[Some("a"), Some("b"), Some("c")]),
            Plan::default()
        );
    }

    #[test]
    fn removed_ports_leave_and_are_flushed_and_new_ones_fill_old_free_slots_first() {
        let new = BASE
            .replace("  - {name: a, kind: tap, mode: access, vlan: 10}\n", "")
            + "  - {name: d, kind: tap, mode: access, vlan: 10}\n  - {name: e, kind: tap, mode: access, vlan: 10}\n";
        // slot 1 was free before the change; a's slot 0 is freed by it and not reused
        let p = plan_of(BASE, &new, &[Some("a"), None, Some("b"), Some("c")]);
        assert_eq!(p.detach, [0]);
        assert!(p.replaced.is_empty());
        assert_eq!(p.flush, [all_of(0)]);
        assert_eq!(p.attach, [("d".to_string(), 1), ("e".to_string(), 4)]);
    }

    #[test]
    fn a_kind_change_detaches_first_and_attaches_anew() {
        let new = BASE.replace("{name: b, kind: tap", "{name: b, kind: netdev");
        let p = plan_of(BASE, &new, &[Some("a"), Some("b"), Some("c")]);
        assert_eq!(p.detach, [1]);
        assert_eq!(p.replaced, [("b".to_string(), 1)]);
        assert_eq!(p.flush, [all_of(1)]);
        assert_eq!(p.attach, [("b".to_string(), 3)]);
    }

    #[test]
    fn an_update_flushes_the_vlans_left_and_relearns_under_new_limits() {
        let new = BASE
            .replace("vlans: [10, 20]}", "vlans: [20], max_macs: 4}")
            .replace(
                "{name: c, kind: tap, mode: access, vlan: 20}",
                "{name: c, kind: tap, mode: access, vlan: 20, admin_up: true}",
            );
        let p = plan_of(BASE, &new, &[Some("a"), Some("b"), Some("c")]);
        assert!(p.detach.is_empty() && p.attach.is_empty());
        assert_eq!(
            p.flush,
            [
                FlushFilter {
                    vlan: Some(10),
                    port: Some(1),
                    include_static: true
                },
                FlushFilter {
                    port: Some(1),
                    ..Default::default()
                },
            ]
        );
        assert_eq!(p.link_up, ["c"]);
        // admin_up going away sets nothing
        let p = plan_of(&new, BASE, &[Some("a"), Some("b"), Some("c")]);
        assert!(p.link_up.is_empty());
    }
}
