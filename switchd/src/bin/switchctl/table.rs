//! The tables `switchctl` prints, from the API's response types. A missing value is `-`.

use control_api::api::{FdbEntryView, PortView, Stats, VlanView, VxlanView};
use control_api::PortMode;

/// Prints rows as aligned columns under `header`.
pub fn print(header: &[&str], rows: Vec<Vec<String>>) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r);
    }
}

/// An optional value, `-` when absent.
fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// A list, comma-separated.
fn list<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

/// `port list` and the answers of `port add`, `port set` and `port enable`.
pub fn ports(ports: &[PortView]) {
    let rows = ports
        .iter()
        .map(|p| {
            let c = &p.config;
            let vlans = match c.mode {
                PortMode::Access => opt(c.vlan),
                PortMode::Trunk => {
                    let t = c.vlans.as_deref().map(list);
                    let t = t.unwrap_or_else(|| "-".into());
                    match c.native_vlan {
                        Some(n) => format!("{t} native {n}"),
                        None => t,
                    }
                }
            };
            let s = &p.state;
            vec![
                c.name.clone(),
                c.kind.to_string(),
                c.mode.to_string(),
                vlans,
                s.link.as_str().to_string(),
                s.learned_macs.to_string(),
                s.counters.rx_packets.to_string(),
                s.counters.tx_packets.to_string(),
            ]
        })
        .collect();
    print(
        &["NAME", "KIND", "MODE", "VLANS", "LINK", "MACS", "RX", "TX"],
        rows,
    );
}

/// `vlan list` and the answer of `vlan set`; a VNI column when any VLAN has a VNI.
pub fn vlans(vlans: &[VlanView]) {
    let (header, rows) = vlan_rows(vlans);
    print(&header, rows);
}

fn vlan_rows(vlans: &[VlanView]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let tunnels = vlans.iter().any(|v| v.vni.is_some());
    let rows = vlans
        .iter()
        .map(|v| {
            let mut row = vec![v.id.to_string(), opt(v.name.as_ref()), list(&v.ports)];
            if tunnels {
                row.push(opt(v.vni));
            }
            row
        })
        .collect();
    let mut header = vec!["VLAN", "NAME", "PORTS"];
    if tunnels {
        header.push("VNI");
    }
    (header, rows)
}

/// `fdb show`; a VTEP column (the remote VTEP behind a MAC on a tunnel port) when any entry
/// has one.
pub fn fdb(entries: &[FdbEntryView]) {
    let (header, rows) = fdb_rows(entries);
    print(&header, rows);
}

fn fdb_rows(entries: &[FdbEntryView]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let vteps = entries.iter().any(|e| e.remote_vtep.is_some());
    let rows = entries
        .iter()
        .map(|e| {
            let mut row = vec![
                e.vlan.to_string(),
                e.mac.to_string(),
                e.port.clone(),
                e.kind.as_str().to_string(),
                e.age_secs.to_string(),
            ];
            if vteps {
                row.push(opt(e.remote_vtep));
            }
            row
        })
        .collect();
    let mut header = vec!["VLAN", "MAC", "PORT", "TYPE", "AGE"];
    if vteps {
        header.push("VTEP");
    }
    (header, rows)
}

/// `vxlan show`: the VTEP line, then one row per tunnel.
pub fn vxlan(x: &VxlanView) {
    let (vtep, rows) = vxlan_rows(x);
    println!("{vtep}");
    if !rows.is_empty() {
        print(&["PORT", "VLAN", "VNI", "MTU", "REMOTES", "LINK"], rows);
    }
}

fn vxlan_rows(x: &VxlanView) -> (String, Vec<Vec<String>>) {
    let vtep = match &x.vxlan {
        None => "not a VXLAN tunnel endpoint (no vxlan section)".to_string(),
        Some(v) => {
            let remotes = if v.remotes.is_empty() {
                "-".to_string()
            } else {
                list(&v.remotes)
            };
            format!(
                "VTEP {} dstport {} underlay {} remotes {remotes}",
                v.local,
                v.dstport(),
                v.underlay
                    .as_deref()
                    .unwrap_or("(the interface holding it)"),
            )
        }
    };
    let rows = x
        .tunnels
        .iter()
        .map(|t| {
            let link = match &t.reason {
                Some(r) => format!("{} ({r})", t.link.as_str()),
                None => t.link.as_str().to_string(),
            };
            let remotes = if t.remotes.is_empty() {
                "-".to_string()
            } else {
                list(&t.remotes)
            };
            vec![
                t.port.clone(),
                t.vlan.to_string(),
                t.vni.to_string(),
                opt(t.mtu),
                remotes,
                link,
            ]
        })
        .collect();
    (vtep, rows)
}

/// `stats`: one table per port, then one per VLAN.
pub fn stats(s: &Stats) {
    let rows = s
        .ports
        .iter()
        .map(|(n, c)| {
            vec![
                n.clone(),
                c.rx_packets.to_string(),
                c.rx_bytes.to_string(),
                c.tx_packets.to_string(),
                c.tx_bytes.to_string(),
                c.drops.values().sum::<u64>().to_string(),
            ]
        })
        .collect();
    print(
        &[
            "PORT", "RX_PKTS", "RX_BYTES", "TX_PKTS", "TX_BYTES", "DROPS",
        ],
        rows,
    );
    println!();
    let rows = s
        .vlans
        .iter()
        .map(|v| {
            vec![
                v.id.to_string(),
                v.packets.to_string(),
                v.bytes.to_string(),
                v.flooded.to_string(),
                v.learned_macs.to_string(),
            ]
        })
        .collect();
    print(&["VLAN", "PACKETS", "BYTES", "FLOODED", "MACS"], rows);
}

/// One object as `FIELD VALUE` rows, nested fields with dotted names (`state.counters.rx_packets`)
/// and lists joined with commas: every field the server sends, named as in its JSON.
pub fn detail(v: &serde_json::Value) {
    fn walk(prefix: &str, v: &serde_json::Value, rows: &mut Vec<Vec<String>>) {
        use serde_json::Value;
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, rows);
                }
            }
            Value::Array(a) => {
                let items: Vec<String> = a
                    .iter()
                    .map(|i| match i {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                rows.push(vec![prefix.to_string(), items.join(",")]);
            }
            Value::String(s) => rows.push(vec![prefix.to_string(), s.clone()]),
            Value::Null => rows.push(vec![prefix.to_string(), "-".to_string()]),
            other => rows.push(vec![prefix.to_string(), other.to_string()]),
        }
    }
    let mut rows = Vec::new();
    walk("", v, &mut rows);
    print(&["FIELD", "VALUE"], rows);
}

/// The whole switch (`switchctl show`): a summary line, then each VLAN with its MAC count and
/// its ports (kind, mode, link, and why a link is down), like `ovs-vsctl show`.
pub fn switch(server: &str, vlans: &[VlanView], ports: &[PortView], stats: &Stats) {
    let up = ports
        .iter()
        .filter(|p| p.state.link.as_str() == "up")
        .count();
    println!(
        "switchd at {server}: {} ports ({up} up), {} VLANs, MAC table {} of {}",
        ports.len(),
        vlans.len(),
        stats.fdb.entries,
        stats.fdb.max_entries
    );
    for v in vlans {
        let macs = stats
            .vlans
            .iter()
            .find(|s| s.id == v.id)
            .map_or(0, |s| s.learned_macs);
        let name = v
            .name
            .as_deref()
            .map(|n| format!(" {n}"))
            .unwrap_or_default();
        println!("  VLAN {}{name}, MACs: {macs}", v.id);
        for name in &v.ports {
            let Some(p) = ports.iter().find(|p| &p.config.name == name) else {
                continue;
            };
            let how = match (p.config.mode, p.config.native_vlan) {
                (PortMode::Trunk, Some(n)) if n == v.id => "native",
                (PortMode::Trunk, _) => "tagged",
                (PortMode::Access, _) => "access",
            };
            let link = match &p.state.reason {
                Some(r) => format!("{} ({r})", p.state.link.as_str()),
                None => p.state.link.as_str().to_string(),
            };
            println!(
                "    {:<16} {:<10} {:<7} {link}",
                name,
                p.config.kind.to_string(),
                how
            );
        }
    }
}

/// A trace (`POST /api/v1/trace`): each step as stage, rule and words, then the verdict.
pub fn trace(t: &dataplane::trace::Trace) {
    use dataplane::trace::{TagAction, Verdict};
    let stage = |s: &dataplane::trace::Step| format!("{:?}", s.stage).to_lowercase();
    print(
        &["STAGE", "RULE", "WHAT"],
        t.steps
            .iter()
            .map(|s| vec![stage(s), s.rule.to_string(), s.detail.clone()])
            .collect(),
    );
    let vlan = t.vlan.map(|n| format!(" in VLAN {n}")).unwrap_or_default();
    let verdict = match t.verdict {
        Verdict::Dropped => format!(
            "dropped{vlan}: counted as drops {} on {}",
            t.drop_reason.as_deref().unwrap_or("-"),
            t.ingress
        ),
        Verdict::Filtered => format!("filtered{vlan}: sent nowhere"),
        Verdict::Forwarded => {
            let copies: Vec<String> = t
                .egress
                .iter()
                .map(|e| {
                    let tag = match e.tag {
                        TagAction::None => "untagged",
                        TagAction::Push => "tag pushed",
                        TagAction::Pop => "tag popped",
                        TagAction::Keep => "tagged",
                        TagAction::Rewrite => "tag rewritten",
                    };
                    format!("{} ({tag})", e.port)
                })
                .collect();
            let how = if t.flooded { "flooded" } else { "forwarded" };
            if copies.is_empty() {
                format!("{how}{vlan}, but every copy was dropped (see the egress steps)")
            } else {
                format!("{how}{vlan} to {}", copies.join(", "))
            }
        }
    };
    let learned = if t.learned { "" } else { " (nothing learned)" };
    println!("verdict: {verdict}{learned}");
}

/// Port mirrors: name, output, sources and the copies' tag.
pub fn mirrors(mirrors: &[control_api::Mirror]) {
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    print(
        &["NAME", "OUTPUT", "PORTS", "DIRECTION", "VLANS", "TAG"],
        mirrors
            .iter()
            .map(|m| {
                vec![
                    m.name.clone(),
                    m.output.clone(),
                    list(m.ports.clone()),
                    format!("{:?}", m.direction.unwrap_or_default()).to_lowercase(),
                    list(m.vlans.iter().map(u16::to_string).collect()),
                    m.vlan.map_or("-".into(), |v| v.to_string()),
                ]
            })
            .collect(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use control_api::api::{FdbType, Link, TunnelView};

    fn entry(remote_vtep: Option<&str>) -> FdbEntryView {
        FdbEntryView {
            vlan: 10,
            mac: "02:00:00:00:00:01".parse().unwrap(),
            port: "vxlan1010".into(),
            kind: FdbType::Dynamic,
            age_secs: 3,
            remote_vtep: remote_vtep.map(|a| a.parse().unwrap()),
        }
    }

    #[test]
    fn fdb_has_a_vtep_column_only_when_an_entry_has_a_vtep() {
        let (header, rows) = fdb_rows(&[entry(None)]);
        assert_eq!((header.len(), rows[0].len()), (5, 5));
        let (header, rows) = fdb_rows(&[entry(Some("192.0.2.2")), entry(None)]);
        assert_eq!(header.last(), Some(&"VTEP"));
        assert_eq!(
            (rows[0][5].as_str(), rows[1][5].as_str()),
            ("192.0.2.2", "-")
        );
    }

    #[test]
    fn vxlan_show_has_the_vtep_line_and_a_row_per_tunnel() {
        let x = VxlanView {
            vxlan: Some(
                serde_json::from_str(r#"{"local":"192.0.2.1","remotes":["192.0.2.2"]}"#).unwrap(),
            ),
            tunnels: vec![TunnelView {
                port: "vxlan1010".into(),
                vlan: 10,
                vni: 1010,
                remotes: vec!["192.0.2.2".parse().unwrap(), "192.0.2.3".parse().unwrap()],
                mtu: None,
                link: Link::Down,
                reason: Some("not attached".into()),
            }],
        };
        let (vtep, rows) = vxlan_rows(&x);
        assert_eq!(
            vtep,
            "VTEP 192.0.2.1 dstport 4789 underlay (the interface holding it) remotes 192.0.2.2"
        );
        assert_eq!(
            rows,
            [[
                "vxlan1010",
                "10",
                "1010",
                "-",
                "192.0.2.2,192.0.2.3",
                "down (not attached)"
            ]]
        );
        let none = VxlanView {
            vxlan: None,
            tunnels: vec![],
        };
        assert!(vxlan_rows(&none)
            .0
            .starts_with("not a VXLAN tunnel endpoint"));
    }
}
