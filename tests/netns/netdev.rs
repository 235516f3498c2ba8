//! netdev ports: existing interfaces (veths here, as a VM's tap held by QEMU would be) attached
//! over AF_PACKET with vnet headers.

use std::time::Duration;

use crate::harness::{eventually, frame, ip, unique_id, Host, Switchd, BROADCAST};
use crate::lab::tcp_transfer;

#[test]
fn netdev_ports_carry_tcp_with_default_offloads() {
    let id = unique_id();
    let (n1, n2, t1) = (format!("{id}n1"), format!("{id}n2"), format!("{id}t1"));
    let h1 = Host::veth(&n1, "198.18.0.1");
    let h2 = Host::veth(&n2, "198.18.0.2");
    ip(&["link", "set", &n2, "up"]);
    let sw = Switchd::start(
        &format!(
            "vlans: [{{ id: 10 }}]\nports:\n\
             \x20 - {{ name: {n1}, kind: netdev, mode: access, vlan: 10, admin_up: true }}\n\
             \x20 - {{ name: {n2}, kind: netdev, mode: access, vlan: 10 }}\n\
             \x20 - {{ name: {t1}, kind: tap, mode: access, vlan: 10 }}\n"
        ),
        2,
    );
    let ht = Host::attach(&t1, "198.18.0.3");
    assert!(
        sw.log()
            .contains(&format!("set the interface up (admin_up: true) port={n1}")),
        "admin_up is applied and logged:\n{}",
        sw.log()
    );
    assert!(h1.reaches(&h2.addr), "netdev -> netdev");
    assert!(h1.reaches(&ht.addr), "netdev -> tap");

    let (sent, got) = tcp_transfer(&h1, &h2, 64 << 20);
    assert_eq!(sent, got, "netdev -> netdev TCP data differs");
    let (sent, got) = tcp_transfer(&ht, &h1, 32 << 20);
    assert_eq!(sent, got, "tap -> netdev TCP data differs");
    let (sent, got) = tcp_transfer(&h2, &ht, 32 << 20);
    assert_eq!(sent, got, "netdev -> tap TCP data differs");

    let s = sw.port_counters(&n1);
    sw.stop();
    let avg = s["rx_bytes"] / s["rx_packets"].max(1);
    assert!(
        avg > 3000,
        "frames from {n1} average {avg} bytes: GSO not carried ({s:?})"
    );
    assert_eq!(s["drop_tx_error"], 0, "{s:?}");
}

#[test]
fn netdev_port_waits_for_its_interface_and_follows_it_away_and_back() {
    let id = unique_id();
    let (n1, t1, t2) = (format!("{id}n1"), format!("{id}t1"), format!("{id}t2"));
    let sw = Switchd::start(
        &format!(
            "ports:\n\
             \x20 - {{ name: {n1}, kind: netdev, mode: access, vlan: 1, admin_up: true }}\n\
             \x20 - {{ name: {t1}, kind: tap, mode: access, vlan: 1 }}\n\
             \x20 - {{ name: {t2}, kind: tap, mode: access, vlan: 1 }}\n"
        ),
        2,
    );
    assert!(sw.log().contains("does not exist yet"), "{}", sw.log());
    let a = Host::attach(&t1, "198.18.0.1");
    let b = Host::attach(&t2, "198.18.0.2");

    // The interface appears: the port attaches by itself (rtnetlink, no polling).
    let vm = Host::veth(&n1, "198.18.0.3");
    let attached = |sw: &Switchd, n: usize| sw.log().matches("attached interface").count() >= n;
    assert!(
        eventually(Duration::from_secs(5), || attached(&sw, 1)),
        "port did not attach after its interface appeared:\n{}",
        sw.log()
    );
    assert!(a.reaches(&vm.addr), "tap -> netdev after attach");

    // The interface vanishes (VM shut down): the port goes down, the others keep forwarding.
    drop(vm);
    assert!(
        eventually(Duration::from_secs(5), || sw
            .log()
            .contains("interface vanished")),
        "{}",
        sw.log()
    );
    assert!(a.reaches(&b.addr), "other ports keep forwarding");

    // It comes back (VM restarted, new MAC): the port re-attaches and learns afresh.
    let vm = Host::veth(&n1, "198.18.0.3");
    assert!(
        eventually(Duration::from_secs(5), || attached(&sw, 2)),
        "port did not re-attach:\n{}",
        sw.log()
    );
    a.flush_neighbours();
    assert!(
        a.reaches(&vm.addr),
        "tap -> netdev after the interface returned"
    );
    assert!(
        vm.reaches(&b.addr),
        "netdev -> tap after the interface returned"
    );
    // The broadcasts flooded while the interface was gone (a's ARP for b, at least) were
    // counted on the port as dropped for its link being down.
    let s = sw.port_counters(&n1);
    sw.stop();
    assert!(s["drop_link_down"] > 0, "{s:?}");
}

#[test]
fn a_netdev_port_whose_link_is_down_leaves_the_worker_asleep() {
    let id = unique_id();
    let (n1, p1) = (format!("{id}n1"), format!("{id}p1"));
    crate::harness::veth_pair(&n1, &p1);
    let _cleanup = DelLink(n1.clone());
    // Attached while the interface is down: the kernel leaves ENETDOWN pending on the socket,
    // and epoll reports it until it is read.
    let sw = Switchd::start(
        &format!("ports:\n  - {{ name: {n1}, kind: netdev, mode: access, vlan: 1 }}\n"),
        1,
    );
    // A worker that kept waking for the error would burn a whole core (1 s per second).
    let cpu_over_a_second = |sw: &Switchd| {
        let t0 = sw.cpu_seconds();
        std::thread::sleep(Duration::from_secs(1));
        sw.cpu_seconds() - t0
    };
    let down_at_start = cpu_over_a_second(&sw);
    assert!(down_at_start < 0.3, "{down_at_start} s of CPU in 1 s");
    // Up, then down again while attached.
    ip(&["link", "set", &p1, "up"]);
    ip(&["link", "set", &n1, "up"]);
    std::thread::sleep(Duration::from_millis(200));
    ip(&["link", "set", &n1, "down"]);
    std::thread::sleep(Duration::from_millis(200));
    let down_later = cpu_over_a_second(&sw);
    assert!(down_later < 0.3, "{down_later} s of CPU in 1 s");
    sw.stop();
}

#[test]
fn frames_the_kernel_drops_while_switchd_is_stalled_count_as_rx_overrun() {
    let id = unique_id();
    let (n1, t1) = (format!("{id}n1"), format!("{id}t1"));
    let h1 = Host::veth(&n1, "198.18.0.1");
    let sw = Switchd::start(
        &format!(
            "ports:\n\
             \x20 - {{ name: {n1}, kind: netdev, mode: access, vlan: 1, admin_up: true }}\n\
             \x20 - {{ name: {t1}, kind: tap, mode: access, vlan: 1 }}\n"
        ),
        1,
    );
    let mut raw = h1.raw();
    // While switchd is stopped, the kernel keeps filling the port's receive ring (1024
    // slots); what does not fit is dropped by the kernel, and only its socket counts it.
    const SENT: u64 = 3000;
    const RING: u64 = 1024;
    sw.pause(true);
    let f = frame(BROADCAST, h1.mac(), &[], b"overrun");
    for _ in 0..SENT {
        raw.send(&f);
    }
    sw.pause(false);
    // Reading the counters through the API collects the kernel's count; wait until the
    // worker has also read what the ring kept.
    let counters = |sw: &Switchd| -> serde_json::Value {
        let out = sw.ctl_ok(&["--json", "port", "show", &n1]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("port show --json");
        v["state"]["counters"].clone()
    };
    let mut last = serde_json::Value::Null;
    let done = eventually(Duration::from_secs(5), || {
        last = counters(&sw);
        let rx = last["rx_packets"].as_u64().unwrap_or(0);
        let overrun = last["drops"]["rx_overrun"].as_u64().unwrap_or(0);
        overrun >= SENT - RING && overrun + rx >= SENT
    });
    assert!(done, "{last}");
    sw.stop();
}

#[test]
fn two_switches_joined_by_a_veth_trunk() {
    let id = unique_id();
    let (xt, yt) = (format!("{id}xt"), format!("{id}yt"));
    crate::harness::veth_pair(&xt, &yt);
    let _cleanup = DelLink(xt.clone());
    let topo = |side: &str, trunk: &str| {
        format!(
            "vlans: [{{ id: 10 }}, {{ id: 20 }}]\nports:\n\
             \x20 - {{ name: {id}{side}r, kind: tap, mode: access, vlan: 10 }}\n\
             \x20 - {{ name: {id}{side}b, kind: tap, mode: access, vlan: 20 }}\n\
             \x20 - {{ name: {trunk}, kind: netdev, mode: trunk, vlans: [10, 20], admin_up: true }}\n"
        )
    };
    let sx = Switchd::start(&topo("x", &xt), 1);
    let sy = Switchd::start(&topo("y", &yt), 1);
    let xr = Host::attach(&format!("{id}xr"), "198.18.0.1");
    let yr = Host::attach(&format!("{id}yr"), "198.18.0.2");
    let xb = Host::attach(&format!("{id}xb"), "198.18.0.3");
    let yb = Host::attach(&format!("{id}yb"), "198.18.0.4");
    assert!(xr.reaches(&yr.addr), "VLAN 10 across the veth trunk");
    assert!(yb.reaches(&xb.addr), "VLAN 20 across the veth trunk");
    assert!(xr.cannot_reach(&yb.addr), "VLAN 10 reached VLAN 20");
    assert!(xb.cannot_reach(&yr.addr), "VLAN 20 reached VLAN 10");
    let (sent, got) = tcp_transfer(&xr, &yr, 32 << 20);
    assert_eq!(sent, got, "TCP across the veth trunk differs");
    let (sent, got) = tcp_transfer(&yb, &xb, 32 << 20);
    assert_eq!(sent, got, "TCP across the veth trunk differs (VLAN 20)");
    sx.stop();
    sy.stop();
}

/// Deletes a link on drop.
struct DelLink(String);

impl Drop for DelLink {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .status();
    }
}

#[test]
fn hand_built_tagged_and_double_tagged_frames() {
    let id = unique_id();
    let (tr, ac, up, r, b) = (
        format!("{id}tr"),
        format!("{id}ac"),
        format!("{id}up"),
        format!("{id}r"),
        format!("{id}b"),
    );
    // tr: trunk 10,20 (frames injected here); ac: access 10 (netdev); up: trunk 10 only;
    // r: access 10 (tap); b: access 20 (tap).
    let h_tr = Host::veth(&tr, "198.18.0.1");
    let h_ac = Host::veth(&ac, "198.18.0.2");
    let h_up = Host::veth(&up, "198.18.0.3");
    let sw = Switchd::start(
        &format!(
            "vlans: [{{ id: 10 }}, {{ id: 20 }}, {{ id: 30 }}]\nports:\n\
             \x20 - {{ name: {tr}, kind: netdev, mode: trunk, vlans: [10, 20], admin_up: true }}\n\
             \x20 - {{ name: {ac}, kind: netdev, mode: access, vlan: 10, admin_up: true }}\n\
             \x20 - {{ name: {up}, kind: netdev, mode: trunk, vlans: [10], admin_up: true }}\n\
             \x20 - {{ name: {r}, kind: tap, mode: access, vlan: 10 }}\n\
             \x20 - {{ name: {b}, kind: tap, mode: access, vlan: 20 }}\n"
        ),
        2,
    );
    let h_r = Host::attach(&r, "198.18.0.4");
    let h_b = Host::attach(&b, "198.18.0.5");
    let src = [0x02, 0, 0, 0, 0x77, 0x01];
    let mut inject_tr = h_tr.raw();
    let mut inject_ac = h_ac.raw();

    // (frame, where it is injected, what each observer must see: Some(tags) or None)
    struct Case {
        what: &'static str,
        marker: &'static [u8],
        tags: Vec<u16>,
        on_trunk: bool,
        // expected outer tags seen at ac, up, r, b
        expect: [Option<Vec<u16>>; 4],
    }
    let cases = [
        Case {
            what: "VLAN 10 tagged on the trunk",
            marker: b"case-t10",
            tags: vec![10],
            on_trunk: true,
            expect: [Some(vec![]), Some(vec![10]), Some(vec![]), None],
        },
        Case {
            what: "VLAN 20 tagged on the trunk",
            marker: b"case-t20",
            tags: vec![20],
            on_trunk: true,
            expect: [None, None, None, Some(vec![])],
        },
        Case {
            what: "VLAN 30 is not allowed on the trunk",
            marker: b"case-t30",
            tags: vec![30],
            on_trunk: true,
            expect: [None, None, None, None],
        },
        Case {
            what: "double tag 10/20: the outer tag decides, the inner one is payload",
            marker: b"case-q1020",
            tags: vec![10, 20],
            on_trunk: true,
            expect: [Some(vec![20]), Some(vec![10, 20]), Some(vec![20]), None],
        },
        Case {
            what: "untagged on a trunk without native VLAN",
            marker: b"case-u",
            tags: vec![],
            on_trunk: true,
            expect: [None, None, None, None],
        },
        Case {
            what: "VLAN 20 tag forged on the access port",
            marker: b"case-a20",
            tags: vec![20],
            on_trunk: false,
            expect: [None, None, None, None],
        },
        Case {
            what: "double tag 20/20 forged on the access port",
            marker: b"case-a2020",
            tags: vec![20, 20],
            on_trunk: false,
            expect: [None, None, None, None],
        },
    ];
    let mut caps = [
        h_ac.tagged_capture(),
        h_up.tagged_capture(),
        h_r.tagged_capture(),
        h_b.tagged_capture(),
    ];
    let names = [
        "ac (access 10)",
        "up (trunk 10)",
        "r (access 10)",
        "b (access 20)",
    ];
    for c in &cases {
        let f = frame(BROADCAST, src, &c.tags, c.marker);
        let seen: Vec<Vec<Vec<u8>>> = std::thread::scope(|s| {
            let handles: Vec<_> = caps
                .iter_mut()
                .map(|cap| s.spawn(|| cap.capture(c.marker, Duration::from_millis(700))))
                .collect();
            std::thread::sleep(Duration::from_millis(100));
            for _ in 0..3 {
                if c.on_trunk {
                    inject_tr.send(&f);
                } else {
                    inject_ac.send(&f);
                }
            }
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, frames) in seen.iter().enumerate() {
            match &c.expect[i] {
                None => assert!(
                    frames.is_empty(),
                    "{}: {} must see nothing, saw {frames:02x?}",
                    c.what,
                    names[i]
                ),
                Some(tags) => {
                    assert_eq!(
                        frames.len(),
                        3,
                        "{}: {} must see all 3 copies",
                        c.what,
                        names[i]
                    );
                    for fr in frames {
                        assert_eq!(outer_tags(fr), *tags, "{}: tags at {}", c.what, names[i]);
                        assert_eq!(&fr[..12], &f[..12], "{}: addresses kept", c.what);
                    }
                }
            }
        }
    }
    let s_tr = sw.port_counters(&tr);
    let s_ac = sw.port_counters(&ac);
    sw.stop();
    assert!(s_tr["drop_vlan_not_allowed"] >= 6, "{s_tr:?}");
    assert!(s_ac["drop_tagged_on_access"] >= 6, "{s_ac:?}");
}

/// The VIDs of the 802.1Q tags at the front of `f`, outermost first.
fn outer_tags(f: &[u8]) -> Vec<u16> {
    let mut tags = Vec::new();
    let mut at = 12;
    while f.len() >= at + 4 && f[at..at + 2] == [0x81, 0x00] {
        tags.push(u16::from_be_bytes([f[at + 2], f[at + 3]]) & 0x0fff);
        at += 4;
    }
    tags
}
