//! vhost-user ports with real QEMU guests (TCG): the switch serves the guests' virtio rings
//! itself. Two guests in VLAN 10 reach each other and a netns host on a tap port in VLAN 10; a
//! guest in VLAN 20 reaches none of them; TCP between a guest and the host is intact; a guest
//! that stops takes its port's link down with a reason, and one that starts again attaches on
//! its own.

use std::path::PathBuf;
use std::time::Duration;

use crate::harness::{eventually, port_stats, unique_id, Host, Switchd};
use crate::vm::{tcp_guest_to_host, tcp_host_to_guest, Guest, GuestConfig};

/// How much TCP each direction carries (TCG moves a few MB/s).
const TCP_LEN: usize = 8 << 20;

/// A switch with VLANs 10 and 20: vhost-user ports `{id}a` and `{id}b` in VLAN 10 and `{id}c`
/// in VLAN 20 (switchd listens on their sockets), and a netns host on a tap port in VLAN 10
/// (198.18.0.1).
struct Lab {
    // Field order is drop order: the switch stops first, then QEMU, then the namespaces.
    sw: Switchd,
    host: Host,
    ports: [String; 3],
    dir: Dir,
}

impl Lab {
    fn new() -> Lab {
        let id = unique_id();
        let dir = std::env::temp_dir().join(format!("vs-vhost-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let ports = [format!("{id}a"), format!("{id}b"), format!("{id}c")];
        let h = format!("{id}h");
        let sock = |p: &str| dir.join(format!("{p}.sock")).display().to_string();
        let sw = Switchd::start(
            &format!(
                "vlans: [{{ id: 10 }}, {{ id: 20 }}]\nports:\n\
                 \x20 - {{ name: {a}, kind: vhost-user, socket: {sa}, mode: access, vlan: 10 }}\n\
                 \x20 - {{ name: {b}, kind: vhost-user, socket: {sb}, mode: access, vlan: 10 }}\n\
                 \x20 - {{ name: {c}, kind: vhost-user, socket: {sc}, mode: access, vlan: 20 }}\n\
                 \x20 - {{ name: {h}, kind: tap, mode: access, vlan: 10 }}\n",
                a = ports[0],
                b = ports[1],
                c = ports[2],
                sa = sock(&ports[0]),
                sb = sock(&ports[1]),
                sc = sock(&ports[2]),
            ),
            2,
        );
        let host = Host::attach(&h, "198.18.0.1");
        Lab {
            sw,
            host,
            ports,
            dir: Dir(dir),
        }
    }

    fn socket(&self, i: usize) -> PathBuf {
        self.dir.0.join(format!("{}.sock", self.ports[i]))
    }

    /// Boots a guest on port `i` (QEMU connects to switchd's socket, `reconnect=1`).
    fn guest(&self, i: usize, ip: &str, offloads: bool) -> Guest {
        let mut cfg = GuestConfig::vhost_user(
            &format!("{}g", self.ports[i]),
            self.socket(i),
            false,
            [0x02, 0x00, 0x00, 0x00, 0x0b, 0x10 + i as u8],
            ip,
        );
        cfg.offloads = offloads;
        let g = Guest::boot(cfg).unwrap_or_else(|e| panic!("{e:#}"));
        eprintln!("guest {} booted in {:?}", g.name, g.boot_time);
        g
    }

    /// The link and reason of port `name` as the API shows them.
    fn link(&self, name: &str) -> String {
        self.sw.ctl_ok(&["--json", "port", "show", name])
    }
}

/// A directory for the lab's sockets, removed with the lab.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn guests_on_vhost_user_ports_reach_their_vlan_and_nothing_else() {
    let lab = Lab::new();
    let a = lab.guest(0, "198.18.0.11/24", true);
    let b = lab.guest(1, "198.18.0.12/24", true);
    let c = lab.guest(2, "198.18.0.13/24", true);
    assert!(a.reaches(&b.addr), "guest a -> guest b (VLAN 10)");
    assert!(a.reaches(&lab.host.addr), "guest a -> tap host (VLAN 10)");
    assert!(lab.host.reaches(&b.addr), "tap host -> guest b");
    assert!(
        c.cannot_reach(&a.addr),
        "VLAN 20 guest reached VLAN 10 guest"
    );
    assert!(
        c.cannot_reach(&lab.host.addr),
        "VLAN 20 guest reached the VLAN 10 host"
    );
    assert!(
        lab.host.cannot_reach(&c.addr),
        "VLAN 10 host reached the VLAN 20 guest"
    );
    let show = lab.link(&lab.ports[0]);
    assert!(show.contains("\"link\": \"up\""), "{show}");
    let log = lab.sw.stop();
    let s = port_stats(&log, &lab.ports[0]);
    assert!(s["rx_packets"] > 0 && s["tx_packets"] > 0, "{s:?}");
}

/// TCP both ways between guest a and the tap host; returns the switch's log.
fn tcp_both_ways(offloads: bool) -> String {
    let lab = Lab::new();
    let a = lab.guest(0, "198.18.0.11/24", offloads);
    let (sent, got) = tcp_host_to_guest(&lab.host, &a, TCP_LEN).expect("host -> guest");
    assert_eq!(sent, got, "host -> guest TCP data differs");
    let (sent, got) = tcp_guest_to_host(&a, &lab.host, TCP_LEN).expect("guest -> host");
    assert_eq!(sent, got, "guest -> host TCP data differs");
    let port = lab.ports[0].clone();
    let log = lab.sw.stop();
    let s = port_stats(&log, &port);
    assert_eq!(s["drop_no_offload"], 0, "{s:?}");
    log
}

#[test]
fn tcp_between_a_vhost_user_guest_and_a_netns_host_is_intact_with_guest_offloads_on() {
    tcp_both_ways(true);
}

#[test]
fn tcp_to_a_vhost_user_guest_without_offloads_is_segmented_by_the_switch() {
    // The tap host's kernel sends 64 KB GSO frames; the guest (no GUEST_TSO, GUEST_CSUM or
    // MRG_RXBUF) gets them cut into plain frames with their checksums completed.
    tcp_both_ways(false);
}

#[test]
fn a_stopped_guest_takes_its_port_down_and_a_restarted_one_comes_back() {
    let lab = Lab::new();
    let a = lab.guest(0, "198.18.0.11/24", true);
    assert!(a.reaches(&lab.host.addr), "guest -> host before the stop");
    drop(a);
    assert!(
        eventually(Duration::from_secs(5), || lab
            .link(&lab.ports[0])
            .contains("\"link\": \"down\"")),
        "the port of a stopped guest stays up: {}",
        lab.link(&lab.ports[0])
    );
    let show = lab.link(&lab.ports[0]);
    assert!(show.contains("socket closed"), "no reason given: {show}");
    let a = lab.guest(0, "198.18.0.11/24", true);
    assert!(a.reaches(&lab.host.addr), "guest -> host after a restart");
}
