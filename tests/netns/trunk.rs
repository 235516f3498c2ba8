//! Two switchd instances joined by a trunk: each trunk tap's kernel side is a port of a plain
//! kernel bridge (no VLAN filtering), which passes the 802.1Q tags through untouched.

use crate::harness::{unique_id, Host, Netns, Switchd};

fn topology(id: &str, side: &str) -> String {
    format!(
        "vlans: [{{ id: 10 }}, {{ id: 20 }}]\nports:\n\
         \x20 - {{ name: {id}{side}r, kind: tap, mode: access, vlan: 10 }}\n\
         \x20 - {{ name: {id}{side}b, kind: tap, mode: access, vlan: 20 }}\n\
         \x20 - {{ name: {id}{side}t, kind: tap, mode: trunk, vlans: [10, 20] }}\n"
    )
}

#[test]
fn two_switches_over_a_trunk_carry_both_vlans_apart() {
    let id = unique_id();
    let sw_x = Switchd::start(&topology(&id, "x"), 1);
    let sw_y = Switchd::start(&topology(&id, "y"), 1);
    let wire = Netns::new(&format!("vs-{id}wire"));
    wire.ip(&["link", "add", "br0", "type", "bridge"]);
    for t in [format!("{id}xt"), format!("{id}yt")] {
        crate::harness::ip(&["link", "set", &t, "netns", &wire.name]);
        wire.ip(&["link", "set", &t, "master", "br0"]);
        wire.ip(&["link", "set", &t, "up"]);
    }
    wire.ip(&["link", "set", "br0", "up"]);
    let xr = Host::attach(&format!("{id}xr"), "198.18.0.1");
    let yr = Host::attach(&format!("{id}yr"), "198.18.0.2");
    let xb = Host::attach(&format!("{id}xb"), "198.18.0.3");
    let yb = Host::attach(&format!("{id}yb"), "198.18.0.4");

    assert!(xr.reaches(&yr.addr), "VLAN 10 across the trunk");
    assert!(xb.reaches(&yb.addr), "VLAN 20 across the trunk");
    assert!(
        xr.cannot_reach(&yb.addr),
        "VLAN 10 reached VLAN 20 across the trunk"
    );
    assert!(
        xb.cannot_reach(&yr.addr),
        "VLAN 20 reached VLAN 10 across the trunk"
    );

    // TCP across the trunk: tags are pushed onto and popped off GSO frames, whose checksum
    // offsets must move with them.
    let (sent, got) = crate::lab::tcp_transfer(&xr, &yr, 16 << 20);
    assert_eq!(sent, got, "SHA-256 of data sent across the trunk differs");

    let tx = sw_x.port_counters(&format!("{id}xt"));
    let ty = sw_y.port_counters(&format!("{id}yt"));
    sw_x.stop();
    sw_y.stop();
    assert!(
        tx["tx_packets"] > 0 && ty["rx_packets"] > 0,
        "{tx:?} {ty:?}"
    );
}
