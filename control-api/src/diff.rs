//! The difference between two topologies, as the list of changes that turns one into the
//! other. Pure: no switch, no I/O. The controller applies these changes; `dry_run` returns them.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::topology::{MacAddr, Port, Topology};

/// One change, named after what a user would do to get it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// `mac_aging_secs` changed.
    SetMacAging {
        /// Old value.
        from: u64,
        /// New value.
        to: u64,
    },
    /// `fdb_max_entries` changed (needs a restart; refused while running).
    SetFdbMaxEntries {
        /// Old value.
        from: usize,
        /// New value.
        to: usize,
    },
    /// A VLAN was declared.
    AddVlan {
        /// VLAN id.
        id: u16,
    },
    /// A VLAN declaration was removed.
    RemoveVlan {
        /// VLAN id.
        id: u16,
    },
    /// A VLAN's name changed.
    RenameVlan {
        /// VLAN id.
        id: u16,
    },
    /// A VLAN's own MAC limit (`max_macs`) changed.
    SetVlanMaxMacs {
        /// VLAN id.
        id: u16,
    },
    /// A VLAN's VXLAN settings (`vni`, `remotes`) changed.
    SetVlanTunnel {
        /// VLAN id.
        id: u16,
    },
    /// The VTEP settings (the `vxlan` section) changed. A new `local`, `dstport` or
    /// `underlay` replaces every tunnel port; new remotes or static remote MACs are given to
    /// the running tunnels.
    SetVxlan,
    /// A switch-wide learning setting changed: `port_max_macs`, `vlan_max_macs` or
    /// `mac_flap`.
    SetLearning {
        /// The settings that changed.
        fields: Vec<LearningField>,
    },
    /// A port was added.
    AddPort {
        /// Port name.
        name: String,
    },
    /// A port was removed.
    RemovePort {
        /// Port name.
        name: String,
    },
    /// A port's kind (or a vhost-user port's socket) changed: it is detached and attached anew.
    ReplacePort {
        /// Port name.
        name: String,
    },
    /// A port's mode, VLANs, admin state or port security changed; it stays attached.
    UpdatePort {
        /// Port name.
        name: String,
        /// The fields that changed.
        fields: Vec<PortField>,
    },
    /// A static MAC entry was added.
    AddStaticMac {
        /// VLAN.
        vlan: u16,
        /// MAC address.
        #[schema(value_type = String)]
        mac: MacAddr,
        /// Port.
        port: String,
    },
    /// A mirror was added, removed or changed.
    SetMirror {
        /// The mirror's name.
        name: String,
    },
    /// A static MAC entry was removed.
    RemoveStaticMac {
        /// VLAN.
        vlan: u16,
        /// MAC address.
        #[schema(value_type = String)]
        mac: MacAddr,
        /// Port.
        port: String,
    },
}

/// A switch-wide learning setting, as [`Change::SetLearning`] names it (in JSON, the
/// topology field's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LearningField {
    /// `port_max_macs`.
    PortMaxMacs,
    /// `vlan_max_macs`.
    VlanMaxMacs,
    /// `mac_flap`.
    MacFlap,
}

/// A port field, as [`Change::UpdatePort`] names it (in JSON, the topology field's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PortField {
    /// `mode`.
    Mode,
    /// `vlan`.
    Vlan,
    /// `vlans`.
    Vlans,
    /// `native_vlan`.
    NativeVlan,
    /// `admin_up`.
    AdminUp,
    /// `max_macs`.
    MaxMacs,
    /// `mac_limit_action`.
    MacLimitAction,
    /// `allowed_macs`.
    AllowedMacs,
}

/// The changes from `old` to `new`, in a stable order: settings, VLANs, ports, static MACs.
/// Empty when the two configure the same switch.
pub fn diff(old: &Topology, new: &Topology) -> Vec<Change> {
    let mut out = Vec::new();
    if old.mac_aging_secs != new.mac_aging_secs {
        out.push(Change::SetMacAging {
            from: old.mac_aging_secs,
            to: new.mac_aging_secs,
        });
    }
    if old.fdb_max_entries != new.fdb_max_entries {
        out.push(Change::SetFdbMaxEntries {
            from: old.fdb_max_entries,
            to: new.fdb_max_entries,
        });
    }
    let mut learning = Vec::new();
    if old.port_max_macs != new.port_max_macs {
        learning.push(LearningField::PortMaxMacs);
    }
    if old.vlan_max_macs != new.vlan_max_macs {
        learning.push(LearningField::VlanMaxMacs);
    }
    if old.mac_flap() != new.mac_flap() {
        learning.push(LearningField::MacFlap);
    }
    if !learning.is_empty() {
        out.push(Change::SetLearning { fields: learning });
    }
    for v in &new.vlans {
        match old.vlans.iter().find(|o| o.id == v.id) {
            None => out.push(Change::AddVlan { id: v.id }),
            Some(o) => {
                if o.name != v.name {
                    out.push(Change::RenameVlan { id: v.id });
                }
                if o.max_macs != v.max_macs {
                    out.push(Change::SetVlanMaxMacs { id: v.id });
                }
                if (o.vni, &o.remotes) != (v.vni, &v.remotes) {
                    out.push(Change::SetVlanTunnel { id: v.id });
                }
            }
        }
    }
    for o in &old.vlans {
        if !new.vlans.iter().any(|v| v.id == o.id) {
            out.push(Change::RemoveVlan { id: o.id });
        }
    }
    if old.vxlan != new.vxlan {
        out.push(Change::SetVxlan);
    }
    // Where tunnels start and end: a tunnel made for other ones is made anew.
    let endpoint = |t: &Topology| {
        t.vxlan
            .as_ref()
            .map(|x| (x.local, x.dstport(), x.underlay.clone()))
    };
    let new_endpoint = endpoint(old) != endpoint(new);
    for o in &old.ports {
        if new.port(&o.name).is_none() {
            out.push(Change::RemovePort {
                name: o.name.clone(),
            });
        }
    }
    for p in &new.ports {
        match old.port(&p.name) {
            None => out.push(Change::AddPort {
                name: p.name.clone(),
            }),
            // A new kind, or a vhost-user port's new socket: detached and attached anew.
            Some(o)
                if o.kind != p.kind
                    || (p.kind == crate::topology::PortKind::Vxlan && new_endpoint)
                    || o.socket != p.socket
                    || o.socket_mode.unwrap_or_default() != p.socket_mode.unwrap_or_default() =>
            {
                out.push(Change::ReplacePort {
                    name: p.name.clone(),
                })
            }
            Some(o) => {
                let fields = changed_fields(o, p);
                if !fields.is_empty() {
                    out.push(Change::UpdatePort {
                        name: p.name.clone(),
                        fields,
                    });
                }
            }
        }
    }
    let key = |m: &crate::topology::StaticMac| (m.vlan, m.mac, m.port.clone());
    let old_macs: BTreeSet<_> = old.fdb.iter().map(key).collect();
    let new_macs: BTreeSet<_> = new.fdb.iter().map(key).collect();
    for (vlan, mac, port) in old_macs.difference(&new_macs) {
        out.push(Change::RemoveStaticMac {
            vlan: *vlan,
            mac: *mac,
            port: port.clone(),
        });
    }
    for (vlan, mac, port) in new_macs.difference(&old_macs) {
        out.push(Change::AddStaticMac {
            vlan: *vlan,
            mac: *mac,
            port: port.clone(),
        });
    }
    let names: BTreeSet<&str> = old
        .mirrors
        .iter()
        .chain(&new.mirrors)
        .map(|m| m.name.as_str())
        .collect();
    for name in names {
        if mirror(old, name) != mirror(new, name) {
            out.push(Change::SetMirror { name: name.into() });
        }
    }
    out
}

/// The mirror `name` of `t`.
fn mirror<'t>(t: &'t Topology, name: &str) -> Option<&'t crate::topology::Mirror> {
    t.mirrors.iter().find(|m| m.name == name)
}

/// Fields of a port that differ in a way that changes forwarding or link state. Listing the
/// same VLANs in another order is no change.
fn changed_fields(o: &Port, p: &Port) -> Vec<PortField> {
    let mut f = Vec::new();
    if o.mode != p.mode {
        f.push(PortField::Mode);
    }
    if o.vlan != p.vlan {
        f.push(PortField::Vlan);
    }
    let set = |v: &Option<Vec<u16>>| v.iter().flatten().copied().collect::<BTreeSet<u16>>();
    if set(&o.vlans) != set(&p.vlans) {
        f.push(PortField::Vlans);
    }
    if o.native_vlan != p.native_vlan {
        f.push(PortField::NativeVlan);
    }
    if o.admin_up != p.admin_up {
        f.push(PortField::AdminUp);
    }
    if o.max_macs != p.max_macs {
        f.push(PortField::MaxMacs);
    }
    if o.mac_limit_action.unwrap_or_default() != p.mac_limit_action.unwrap_or_default() {
        f.push(PortField::MacLimitAction);
    }
    let macs = |v: &Option<Vec<MacAddr>>| {
        v.as_ref()
            .map(|m| m.iter().copied().collect::<BTreeSet<MacAddr>>())
    };
    if macs(&o.allowed_macs) != macs(&p.allowed_macs) {
        f.push(PortField::AllowedMacs);
    }
    f
}

/// One value a change touched, for the log: which port or VLAN (if any), which field, and its
/// value before and after (`-` for none), as the topology file writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched {
    /// The port, for port changes.
    pub port: Option<String>,
    /// The VLAN, for VLAN and static-MAC changes.
    pub vlan: Option<u16>,
    /// The field (`vlan`, `name`, `mac_aging_secs`, ...), or what happened to the whole
    /// thing (`added`, `removed`, `replaced`).
    pub field: String,
    /// The value before.
    pub from: String,
    /// The value after.
    pub to: String,
}

/// What `c`, one of the changes from `old` to `new`, touched: a line per value, with the old
/// and the new value read from the two topologies (by the same field names the files use).
pub fn touched(c: &Change, old: &Topology, new: &Topology) -> Vec<Touched> {
    let field_of = |v: &serde_json::Value, f: &str| match v.get(f) {
        None | Some(serde_json::Value::Null) => "-".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let name_of = |f: serde_json::Value| match f {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    let port = |t: &Topology, name: &str| t.port(name).map(json).unwrap_or_default();
    let vlan = |t: &Topology, id: u16| {
        t.vlans
            .iter()
            .find(|v| v.id == id)
            .map(json)
            .unwrap_or_default()
    };
    let one = |port: Option<&str>, vlan: Option<u16>, field: &str, from: String, to: String| {
        vec![Touched {
            port: port.map(str::to_string),
            vlan,
            field: field.to_string(),
            from,
            to,
        }]
    };
    match c {
        Change::SetMacAging { from, to } => one(
            None,
            None,
            "mac_aging_secs",
            from.to_string(),
            to.to_string(),
        ),
        Change::SetFdbMaxEntries { from, to } => one(
            None,
            None,
            "fdb_max_entries",
            from.to_string(),
            to.to_string(),
        ),
        Change::AddVlan { id } => {
            let name = field_of(&vlan(new, *id), "name");
            one(None, Some(*id), "added", "-".into(), format!("name {name}"))
        }
        Change::RemoveVlan { id } => one(None, Some(*id), "removed", "-".into(), "-".into()),
        Change::RenameVlan { id } => one(
            None,
            Some(*id),
            "name",
            field_of(&vlan(old, *id), "name"),
            field_of(&vlan(new, *id), "name"),
        ),
        Change::SetVlanMaxMacs { id } => one(
            None,
            Some(*id),
            "max_macs",
            field_of(&vlan(old, *id), "max_macs"),
            field_of(&vlan(new, *id), "max_macs"),
        ),
        Change::SetVlanTunnel { id } => {
            let (o, n) = (vlan(old, *id), vlan(new, *id));
            ["vni", "remotes"]
                .iter()
                .filter(|f| field_of(&o, f) != field_of(&n, f))
                .flat_map(|f| one(None, Some(*id), f, field_of(&o, f), field_of(&n, f)))
                .collect()
        }
        Change::SetVxlan => {
            let (o, n) = (json(old), json(new));
            let (o, n) = (
                o.get("vxlan").cloned().unwrap_or_default(),
                n.get("vxlan").cloned().unwrap_or_default(),
            );
            // Every field either side has: the section's own fields, named once, in its type.
            let fields: BTreeSet<String> = [&o, &n]
                .iter()
                .filter_map(|v| v.as_object())
                .flat_map(|m| m.keys().cloned())
                .collect();
            fields
                .iter()
                .filter(|f| field_of(&o, f) != field_of(&n, f))
                .flat_map(|f| {
                    one(
                        None,
                        None,
                        &format!("vxlan.{f}"),
                        field_of(&o, f),
                        field_of(&n, f),
                    )
                })
                .collect()
        }
        Change::SetLearning { fields } => {
            let (o, n) = (json(old), json(new));
            fields
                .iter()
                .flat_map(|f| {
                    let f = name_of(json(f));
                    one(None, None, &f, field_of(&o, &f), field_of(&n, &f))
                })
                .collect()
        }
        Change::AddPort { name } => {
            let p = port(new, name);
            let what = format!("{} {}", field_of(&p, "kind"), field_of(&p, "mode"));
            one(Some(name), None, "added", "-".into(), what)
        }
        Change::RemovePort { name } => one(Some(name), None, "removed", "-".into(), "-".into()),
        Change::ReplacePort { name } => {
            let (o, n) = (port(old, name), port(new, name));
            let what = |p: &serde_json::Value| {
                let socket = field_of(p, "socket");
                if socket == "-" {
                    field_of(p, "kind")
                } else {
                    format!("{} {socket}", field_of(p, "kind"))
                }
            };
            one(Some(name), None, "replaced", what(&o), what(&n))
        }
        Change::UpdatePort { name, fields } => {
            let (o, n) = (port(old, name), port(new, name));
            fields
                .iter()
                .flat_map(|f| {
                    let f = name_of(json(f));
                    one(Some(name), None, &f, field_of(&o, &f), field_of(&n, &f))
                })
                .collect()
        }
        Change::AddStaticMac { vlan, mac, port } => one(
            Some(port),
            Some(*vlan),
            "static_mac",
            "-".into(),
            mac.to_string(),
        ),
        Change::RemoveStaticMac { vlan, mac, port } => one(
            Some(port),
            Some(*vlan),
            "static_mac",
            mac.to_string(),
            "-".into(),
        ),
        Change::SetMirror { name } => {
            let text = |t: &Topology| mirror(t, name).map_or("-".into(), |m| json(m).to_string());
            one(None, None, &format!("mirror {name}"), text(old), text(new))
        }
    }
}

/// A value of the model as JSON, as the topology file writes it (`Null` if it cannot be
/// written, which the model's types always can).
fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(yaml: &str) -> Topology {
        Topology::from_yaml(yaml).unwrap()
    }

    const BASE: &str = "vlans: [{id: 10, name: a}, {id: 20}]\nports:\n  - {name: p1, kind: tap, mode: access, vlan: 10}\n  - {name: p2, kind: tap, mode: trunk, vlans: [10, 20]}\n";

    #[test]
    fn same_topology_is_no_change() {
        assert!(diff(&topo(BASE), &topo(BASE)).is_empty());
        // VLAN order in a trunk does not matter
        let reordered = BASE.replace("[10, 20]}", "[20, 10]}");
        assert!(diff(&topo(BASE), &topo(&reordered)).is_empty());
    }

    #[test]
    fn each_kind_of_change() {
        let new = topo(
            "mac_aging_secs: 60\nvlans: [{id: 10, name: b}, {id: 30}]\nports:\n  - {name: p1, kind: netdev, mode: access, vlan: 10}\n  - {name: p3, kind: tap, mode: access, vlan: 30}\nfdb: [{vlan: 30, mac: '02:00:00:00:00:01', port: p3}]\n",
        );
        assert_eq!(
            diff(&topo(BASE), &new),
            vec![
                Change::SetMacAging { from: 300, to: 60 },
                Change::RenameVlan { id: 10 },
                Change::AddVlan { id: 30 },
                Change::RemoveVlan { id: 20 },
                Change::RemovePort { name: "p2".into() },
                Change::ReplacePort { name: "p1".into() },
                Change::AddPort { name: "p3".into() },
                Change::AddStaticMac {
                    vlan: 30,
                    mac: "02:00:00:00:00:01".parse().unwrap(),
                    port: "p3".into()
                },
            ]
        );
    }

    #[test]
    fn a_mac_written_another_way_is_no_change() {
        let with = |mac: &str| {
            topo(&format!(
                "vlans: [{{id: 10}}]\nports:\n  - {{name: p1, kind: tap, mode: access, vlan: 10, allowed_macs: ['{mac}']}}\nfdb: [{{vlan: 10, mac: '{mac}', port: p1}}]\n"
            ))
        };
        assert!(diff(&with("02:00:00:00:00:0a"), &with("02-00-00-00-00-0A")).is_empty());
        assert_eq!(
            diff(&with("02:00:00:00:00:0a"), &with("02:00:00:00:00:0b")).len(),
            3,
            "allowed_macs, and the static entry removed and added"
        );
    }

    #[test]
    fn learning_settings_and_port_security_are_changes() {
        let new = BASE
            .replace("{id: 20}", "{id: 20, max_macs: 100}")
            .replace(
                "{name: p1, kind: tap, mode: access, vlan: 10}",
                "{name: p1, kind: tap, mode: access, vlan: 10, max_macs: 3, mac_limit_action: drop, allowed_macs: ['02:00:00:00:00:01']}",
            );
        let new = format!("port_max_macs: 50\nmac_flap: {{ moves: 3 }}\n{new}");
        assert_eq!(
            diff(&topo(BASE), &topo(&new)),
            vec![
                Change::SetLearning {
                    fields: vec![LearningField::PortMaxMacs, LearningField::MacFlap]
                },
                Change::SetVlanMaxMacs { id: 20 },
                Change::UpdatePort {
                    name: "p1".into(),
                    fields: vec![
                        PortField::MaxMacs,
                        PortField::MacLimitAction,
                        PortField::AllowedMacs
                    ]
                },
            ]
        );
        // the default action written out is no change
        let same = BASE.replace(
            "{name: p1, kind: tap, mode: access, vlan: 10}",
            "{name: p1, kind: tap, mode: access, vlan: 10, mac_limit_action: flood}",
        );
        assert!(diff(&topo(BASE), &topo(&same)).is_empty());
    }

    #[test]
    fn fields_are_named_as_in_the_topology_in_json() {
        let c = Change::UpdatePort {
            name: "p1".into(),
            fields: vec![PortField::NativeVlan, PortField::MacLimitAction],
        };
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"op": "update_port", "name": "p1",
                "fields": ["native_vlan", "mac_limit_action"]})
        );
        assert_eq!(serde_json::from_value::<Change>(json).unwrap(), c);
        let c = Change::SetLearning {
            fields: vec![
                LearningField::PortMaxMacs,
                LearningField::VlanMaxMacs,
                LearningField::MacFlap,
            ],
        };
        assert_eq!(
            serde_json::to_value(&c).unwrap()["fields"],
            serde_json::json!(["port_max_macs", "vlan_max_macs", "mac_flap"])
        );
    }

    #[test]
    fn port_updates_name_the_fields() {
        let new = BASE.replace(
            "{name: p1, kind: tap, mode: access, vlan: 10}",
            "{name: p1, kind: tap, mode: trunk, vlans: [10], native_vlan: 20, admin_up: true}",
        );
        assert_eq!(
            diff(&topo(BASE), &topo(&new)),
            vec![Change::UpdatePort {
                name: "p1".into(),
                fields: vec![
                    PortField::Mode,
                    PortField::Vlan,
                    PortField::Vlans,
                    PortField::NativeVlan,
                    PortField::AdminUp
                ]
            }]
        );
    }

    #[test]
    fn touched_values_come_from_both_topologies() {
        let old = Topology::from_yaml(
            "vlans: [{ id: 10, name: red }, { id: 20 }]\n\
             ports:\n  - { name: vm1, kind: tap, mode: access, vlan: 10 }\n\
             \x20 - { name: vm2, kind: tap, mode: access, vlan: 10 }\n",
        )
        .unwrap();
        let new = Topology::from_yaml(
            "mac_aging_secs: 60\nvlans: [{ id: 10, name: blue }, { id: 30 }]\n\
             ports:\n  - { name: vm1, kind: tap, mode: access, vlan: 30, max_macs: 4 }\n\
             \x20 - { name: vm3, kind: netdev, mode: trunk, vlans: [10] }\n",
        )
        .unwrap();
        let lines: Vec<String> = diff(&old, &new)
            .iter()
            .flat_map(|c| touched(c, &old, &new))
            .map(|t| {
                format!(
                    "{} {} {}: {} -> {}",
                    t.port.as_deref().unwrap_or("*"),
                    t.vlan.map_or("*".to_string(), |v| v.to_string()),
                    t.field,
                    t.from,
                    t.to
                )
            })
            .collect();
        for want in [
            "* * mac_aging_secs: 300 -> 60",
            "* 30 added: - -> name -",
            "* 20 removed: - -> -",
            "* 10 name: red -> blue",
            "vm3 * added: - -> netdev trunk",
            "vm2 * removed: - -> -",
            "vm1 * vlan: 10 -> 30",
            "vm1 * max_macs: - -> 4",
        ] {
            assert!(
                lines.iter().any(|l| l == want),
                "{want:?} not in {lines:#?}"
            );
        }
    }

    #[test]
    fn vxlan_changes_name_the_fields_that_changed() {
        let old = Topology::from_yaml(
            "vxlan: { local: 192.0.2.1, remotes: [192.0.2.2] }\nvlans: [{ id: 10, vni: 1010 }]\n",
        )
        .unwrap();
        let new = Topology::from_yaml(
            "vxlan: { local: 192.0.2.1, remotes: [192.0.2.2, 192.0.2.3], dstport: 4790 }\n\
             vlans: [{ id: 10, vni: 1011 }]\n",
        )
        .unwrap();
        let (o, n) = (old.running(), new.running());
        let changes = diff(&o, &n);
        assert!(changes.contains(&Change::SetVxlan));
        assert!(changes.contains(&Change::SetVlanTunnel { id: 10 }));
        let lines: Vec<String> = changes
            .iter()
            .flat_map(|c| touched(c, &o, &n))
            .map(|t| format!("{}: {} -> {}", t.field, t.from, t.to))
            .collect();
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("vxlan.") || l.starts_with("vni"))
                .collect::<Vec<_>>(),
            [
                "vni: 1010 -> 1011",
                "vxlan.dstport: - -> 4790",
                "vxlan.remotes: [\"192.0.2.2\"] -> [\"192.0.2.2\",\"192.0.2.3\"]",
            ],
            "{lines:#?}"
        );
    }
}
