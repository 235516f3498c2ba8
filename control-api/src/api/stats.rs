//! `/api/v1/stats` and `/metrics`: the counters as JSON and in Prometheus text format.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiResult;
use super::views::{Counters, FdbStats, Metric, Sample, Stats, VlanStats};
use super::AppState;
use crate::controller::Controller;

fn collect_stats(ctl: &Controller) -> Stats {
    let sw = ctl.switch();
    let snap = sw.snapshot();
    let mut macs_per_vlan = std::collections::HashMap::<u16, usize>::new();
    for e in sw.fdb().entries(sw.now(), snap.aging_secs) {
        *macs_per_vlan.entry(e.vlan).or_default() += 1;
    }
    let c = &sw.fdb().counters;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    Stats {
        ports: ctl
            .port_counters()
            .into_iter()
            .map(|(n, v)| (n, v.into()))
            .collect(),
        vlans: ctl
            .topology()
            .vlan_ids()
            .into_iter()
            .map(|id| {
                let v = sw.vlan_counters(id);
                VlanStats {
                    id,
                    packets: v.packets,
                    bytes: v.bytes,
                    flooded: v.flooded,
                    learned_macs: macs_per_vlan.get(&id).copied().unwrap_or(0),
                }
            })
            .collect(),
        fdb: FdbStats {
            entries: sw.fdb().len(),
            max_entries: sw.fdb().max_entries(),
            learned: load(&c.learned),
            moves: load(&c.moves),
            no_room: load(&c.no_room),
            aged: load(&c.aged),
            limited: load(&c.limited),
            flaps: load(&c.flaps),
            damped: load(&c.damped),
        },
    }
}

/// Per-port and per-VLAN counters, with drops by reason.
#[utoipa::path(get, path = "/api/v1/stats", tag = "stats",
    responses((status = 200, body = Stats)))]
pub(super) async fn stats(State(st): State<AppState>) -> ApiResult<Json<Stats>> {
    st.with_ctl(|ctl| Ok(collect_stats(ctl))).await.map(Json)
}

/// The same counters in Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "stats",
    responses((status = 200, content_type = "text/plain", body = String)))]
pub(super) async fn metrics(State(st): State<AppState>) -> ApiResult<Response> {
    let s = st.with_ctl(|ctl| Ok(collect_stats(ctl))).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus_text(&s),
    )
        .into_response())
}

/// Every metric of `s`, from the declarations next to the fields (`Counters::METRICS`,
/// `VlanStats::METRICS`, `FdbStats::METRICS`): per port with a `port` label, per VLAN with a
/// `vlan` label, the MAC table's without labels.
pub fn prometheus_text(s: &Stats) -> String {
    let mut out = String::new();
    let ports: Vec<_> = s
        .ports
        .iter()
        .map(|(n, c)| (format!("port=\"{}\"", label(n)), c))
        .collect();
    family(&mut out, Counters::METRICS, &ports);
    let vlans: Vec<_> = s
        .vlans
        .iter()
        .map(|v| (format!("vlan=\"{}\"", v.id), v))
        .collect();
    family(&mut out, VlanStats::METRICS, &vlans);
    family(&mut out, FdbStats::METRICS, &[(String::new(), &s.fdb)]);
    out
}

/// The lines of `metrics`, each for every `(labels, value)` of `items`.
fn family<T>(out: &mut String, metrics: &[Metric<T>], items: &[(String, &T)]) {
    for m in metrics {
        let name = m.name;
        let _ = writeln!(
            out,
            "# HELP vlanswitch_{name} {}\n# TYPE vlanswitch_{name} {}",
            m.help,
            m.kind.as_str()
        );
        for (labels, item) in items {
            match (m.read)(item) {
                Sample::Value(v) => {
                    let labels = if labels.is_empty() {
                        String::new()
                    } else {
                        format!("{{{labels}}}")
                    };
                    let _ = writeln!(out, "vlanswitch_{name}{labels} {v}");
                }
                Sample::ByLabel(key, values) => {
                    let sep = if labels.is_empty() { "" } else { "," };
                    for (k, v) in values {
                        let _ = writeln!(
                            out,
                            "vlanswitch_{name}{{{labels}{sep}{key}=\"{}\"}} {v}",
                            label(k)
                        );
                    }
                }
            }
        }
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn every_metric_with_its_labels() {
        let port = Counters {
            rx_packets: 1,
            rx_bytes: 2,
            tx_packets: 3,
            tx_bytes: 4,
            drops: BTreeMap::from([("bad_frame".into(), 5), ("mac_limit".into(), 6)]),
            mac_events: BTreeMap::from([("mac_moves".into(), 7)]),
        };
        let s = Stats {
            ports: BTreeMap::from([("p\"1".into(), port)]),
            vlans: vec![VlanStats {
                id: 10,
                packets: 8,
                bytes: 9,
                flooded: 10,
                learned_macs: 11,
            }],
            fdb: FdbStats {
                entries: 12,
                max_entries: 13,
                learned: 14,
                moves: 15,
                no_room: 16,
                aged: 17,
                limited: 18,
                flaps: 19,
                damped: 20,
            },
        };
        let text = prometheus_text(&s);
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let p = r#"port="p\"1""#;
        let expected = [
            format!("vlanswitch_port_rx_packets_total{{{p}}} 1"),
            format!("vlanswitch_port_rx_bytes_total{{{p}}} 2"),
            format!("vlanswitch_port_tx_packets_total{{{p}}} 3"),
            format!("vlanswitch_port_tx_bytes_total{{{p}}} 4"),
            format!("vlanswitch_port_drops_total{{{p},reason=\"bad_frame\"}} 5"),
            format!("vlanswitch_port_drops_total{{{p},reason=\"mac_limit\"}} 6"),
            format!("vlanswitch_port_mac_events_total{{{p},event=\"mac_moves\"}} 7"),
            "vlanswitch_vlan_packets_total{vlan=\"10\"} 8".into(),
            "vlanswitch_vlan_bytes_total{vlan=\"10\"} 9".into(),
            "vlanswitch_vlan_flooded_total{vlan=\"10\"} 10".into(),
            "vlanswitch_vlan_learned_macs{vlan=\"10\"} 11".into(),
            "vlanswitch_fdb_entries 12".into(),
            "vlanswitch_fdb_max_entries 13".into(),
            "vlanswitch_fdb_learned_total 14".into(),
            "vlanswitch_fdb_moves_total 15".into(),
            "vlanswitch_fdb_no_room_total 16".into(),
            "vlanswitch_fdb_aged_total 17".into(),
            "vlanswitch_fdb_limited_total 18".into(),
            "vlanswitch_fdb_flaps_total 19".into(),
            "vlanswitch_fdb_damped_total 20".into(),
        ];
        assert_eq!(samples, expected);
        // every family has its help and type, gauges where the value goes down
        assert_eq!(text.lines().filter(|l| l.starts_with("# HELP")).count(), 19);
        assert!(text.contains("# HELP vlanswitch_port_drops_total Frames dropped, by reason.\n"));
        assert!(text.contains("# TYPE vlanswitch_vlan_learned_macs gauge\n"));
        assert!(text.contains("# TYPE vlanswitch_fdb_entries gauge\n"));
        assert!(text.contains("# TYPE vlanswitch_fdb_max_entries gauge\n"));
        assert!(text.contains("# TYPE vlanswitch_fdb_aged_total counter\n"));
    }
}
