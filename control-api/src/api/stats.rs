//! `/api/v1/stats` and `/metrics`: the counters as JSON and in Prometheus text format.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiResult;
use super::views::{Counters, FdbStats, Stats, VlanStats};
use super::AppState;
use crate::controller::Controller;

fn collect_stats(ctl: &Controller) -> Stats {
    let sw = ctl.switch();
    let snap = sw.snapshot();
    let entries = sw.fdb().entries(sw.now(), snap.aging_secs);
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
                    learned_macs: entries.iter().filter(|e| e.vlan == id).count(),
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
#[utoipa::path(get, path = "/api/v1/stats", tag = "stats", responses((status = 200, body = Stats)))]
pub(super) async fn stats(State(st): State<AppState>) -> ApiResult<Json<Stats>> {
    st.with_ctl(|ctl| Ok(collect_stats(ctl))).await.map(Json)
}

/// The same counters in Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "stats",
    responses((status = 200, content_type = "text/plain", body = String)))]
pub(super) async fn metrics(State(st): State<AppState>) -> ApiResult<Response> {
    let s = st.with_ctl(|ctl| Ok(collect_stats(ctl))).await?;
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, rows: Vec<(String, u64)>| {
        let _ = writeln!(
            out,
            "# HELP vlanswitch_{name} {help}\n# TYPE vlanswitch_{name} {kind}"
        );
        for (labels, v) in rows {
            let _ = writeln!(out, "vlanswitch_{name}{labels} {v}");
        }
    };
    let per_port = |f: &dyn Fn(&Counters) -> u64| {
        s.ports
            .iter()
            .map(|(n, c)| (format!("{{port=\"{}\"}}", label(n)), f(c)))
            .collect::<Vec<_>>()
    };
    metric(
        "port_rx_packets_total",
        "Frames received.",
        "counter",
        per_port(&|c| c.rx_packets),
    );
    metric(
        "port_rx_bytes_total",
        "Bytes received.",
        "counter",
        per_port(&|c| c.rx_bytes),
    );
    metric(
        "port_tx_packets_total",
        "Frames sent.",
        "counter",
        per_port(&|c| c.tx_packets),
    );
    metric(
        "port_tx_bytes_total",
        "Bytes sent.",
        "counter",
        per_port(&|c| c.tx_bytes),
    );
    let drops = s
        .ports
        .iter()
        .flat_map(|(n, c)| {
            c.drops
                .iter()
                .map(move |(r, v)| (format!("{{port=\"{}\",reason=\"{r}\"}}", label(n)), *v))
        })
        .collect();
    metric(
        "port_drops_total",
        "Frames dropped, by reason.",
        "counter",
        drops,
    );
    let per_vlan = |f: &dyn Fn(&VlanStats) -> u64| {
        s.vlans
            .iter()
            .map(|v| (format!("{{vlan=\"{}\"}}", v.id), f(v)))
            .collect::<Vec<_>>()
    };
    metric(
        "vlan_packets_total",
        "Frames classified into the VLAN.",
        "counter",
        per_vlan(&|v| v.packets),
    );
    metric(
        "vlan_flooded_total",
        "Frames flooded in the VLAN.",
        "counter",
        per_vlan(&|v| v.flooded),
    );
    metric(
        "vlan_bytes_total",
        "Bytes of the frames classified into the VLAN.",
        "counter",
        per_vlan(&|v| v.bytes),
    );
    metric(
        "vlan_learned_macs",
        "MAC table entries in the VLAN.",
        "gauge",
        per_vlan(&|v| v.learned_macs as u64),
    );
    let events = s
        .ports
        .iter()
        .flat_map(|(n, c)| {
            c.mac_events
                .iter()
                .map(move |(e, v)| (format!("{{port=\"{}\",event=\"{e}\"}}", label(n)), *v))
        })
        .collect();
    metric(
        "port_mac_events_total",
        "Learning events on the port: mac_moves, mac_flaps, mac_damped.",
        "counter",
        events,
    );
    let f = &s.fdb;
    for (name, help, kind, v) in [
        (
            "fdb_entries",
            "MAC table entries.",
            "gauge",
            f.entries as u64,
        ),
        (
            "fdb_max_entries",
            "MAC table capacity.",
            "gauge",
            f.max_entries as u64,
        ),
        (
            "fdb_learned_total",
            "MAC table entries learned.",
            "counter",
            f.learned,
        ),
        (
            "fdb_aged_total",
            "MAC table entries aged out.",
            "counter",
            f.aged,
        ),
        (
            "fdb_moves_total",
            "MAC moves between ports.",
            "counter",
            f.moves,
        ),
        (
            "fdb_no_room_total",
            "Source MACs not learned: table full.",
            "counter",
            f.no_room,
        ),
        (
            "fdb_limited_total",
            "Source MACs not learned: a port or VLAN MAC limit.",
            "counter",
            f.limited,
        ),
        (
            "fdb_flaps_total",
            "Moves that made a MAC flap.",
            "counter",
            f.flaps,
        ),
        (
            "fdb_damped_total",
            "Moves refused by flap damping.",
            "counter",
            f.damped,
        ),
    ] {
        metric(name, help, kind, vec![(String::new(), v)]);
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
