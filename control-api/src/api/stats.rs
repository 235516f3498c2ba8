//! `/api/v1/stats` and `/metrics`: the counters as JSON and in Prometheus text format.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiResult;
use super::views::{Counters, FdbStats, Link, Metric, PortLink, Sample, Stats, VlanStats};
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
        links: ctl
            .running()
            .ports
            .iter()
            .map(|p| {
                let port = snap.port_id(&p.name).and_then(|id| snap.port(id));
                let (link, _) = super::ports::link_of(port.map(|e| &*e.port));
                (
                    p.name.clone(),
                    PortLink {
                        up: u64::from(link == Link::Up),
                    },
                )
            })
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
    let mut text = prometheus_text(&s);
    text.push_str(&build_info_text(env!("CARGO_PKG_VERSION")));
    text.push_str(&process_text(&Process::read()));
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// `vlanswitch_build_info`: 1, with the version as a label (the usual way to export it).
fn build_info_text(version: &str) -> String {
    format!(
        "# HELP vlanswitch_build_info The running switchd's version, as a label.\n\
         # TYPE vlanswitch_build_info gauge\n\
         vlanswitch_build_info{{version=\"{}\"}} 1\n",
        label(version)
    )
}

/// The process, as Prometheus' client libraries export it (`process_*`), read from
/// `/proc/self`.
#[derive(Debug, Default, Clone, PartialEq)]
struct Process {
    /// User and system CPU time, seconds.
    cpu_seconds: f64,
    /// Resident memory, bytes.
    resident_bytes: u64,
    /// Open file descriptors.
    open_fds: u64,
    /// The file descriptor limit (soft).
    max_fds: u64,
    /// Start time since the Unix epoch, seconds.
    start_time_seconds: f64,
}

impl Process {
    /// Reads `/proc/self` (what cannot be read stays 0).
    fn read() -> Process {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let boot = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        Process::parse(&stat, &status, &boot, &limits, open_fds, CLOCK_TICKS)
    }

    /// From the text of `/proc/self/stat`, `/proc/self/status`, `/proc/stat` and
    /// `/proc/self/limits` (pure; tested below).
    fn parse(
        stat: &str,
        status: &str,
        boot: &str,
        limits: &str,
        open_fds: u64,
        ticks: f64,
    ) -> Process {
        // Fields after the command name (in parentheses, which may hold spaces): utime and
        // stime are the 12th and 13th, starttime the 20th.
        let rest = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let btime = boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let max_fds = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Process {
            cpu_seconds: (num(11) + num(12)) / ticks,
            resident_bytes: kib * 1024,
            open_fds,
            max_fds,
            start_time_seconds: btime + num(19) / ticks,
        }
    }
}

/// Clock ticks per second of `/proc/self/stat`'s times (`USER_HZ`, 100 on Linux).
const CLOCK_TICKS: f64 = 100.0;

fn process_text(p: &Process) -> String {
    let mut out = String::new();
    for (name, kind, help, value) in [
        (
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time, seconds.",
            p.cpu_seconds.to_string(),
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory, bytes.",
            p.resident_bytes.to_string(),
        ),
        (
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            p.open_fds.to_string(),
        ),
        (
            "process_max_fds",
            "gauge",
            "The open file descriptor limit.",
            p.max_fds.to_string(),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time since the Unix epoch, seconds.",
            p.start_time_seconds.to_string(),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    out
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
    let links: Vec<_> = s
        .links
        .iter()
        .map(|(n, l)| (format!("port=\"{}\"", label(n)), l))
        .collect();
    family(&mut out, PortLink::METRICS, &links);
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
            links: BTreeMap::from([("p\"1".into(), PortLink { up: 1 })]),
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
            format!("vlanswitch_port_up{{{p}}} 1"),
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
        assert_eq!(text.lines().filter(|l| l.starts_with("# HELP")).count(), 20);
        assert!(text.contains("# TYPE vlanswitch_port_up gauge\n"));
        assert!(text.contains("# HELP vlanswitch_port_drops_total Frames dropped, by reason.\n"));
        assert!(text.contains("# TYPE vlanswitch_vlan_learned_macs gauge\n"));
        assert!(text.contains("# TYPE vlanswitch_fdb_entries gauge\n"));
        assert!(text.contains("# TYPE vlanswitch_fdb_max_entries gauge\n"));
        assert!(text.contains("# TYPE vlanswitch_fdb_aged_total counter\n"));
    }

    #[test]
    fn process_metrics_from_proc() {
        let stat = "4242 (switchd (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 5 0 1000 123 456";
        let status = "Name:\tswitchd\nVmRSS:\t   5120 kB\n";
        let boot = "cpu  1 2 3\nbtime 1700000000\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        let p = Process::parse(stat, status, boot, limits, 17, 100.0);
        assert_eq!(
            p,
            Process {
                cpu_seconds: 3.0,
                resident_bytes: 5120 * 1024,
                open_fds: 17,
                max_fds: 1024,
                start_time_seconds: 1_700_000_010.0,
            }
        );
        let text = process_text(&p);
        assert!(text.contains("process_cpu_seconds_total 3\n"), "{text}");
        assert!(text.contains("# TYPE process_open_fds gauge\n"), "{text}");
        assert!(build_info_text("0.1.0").contains("vlanswitch_build_info{version=\"0.1.0\"} 1\n"));
    }
}
