//! TCP through the switch with the kernel's default offloads left on: GSO super-frames and
//! partial checksums must pass intact.

use crate::lab::Lab;

#[test]
fn tcp_64mib_within_a_vlan_arrives_intact_with_offloads_on() {
    let lab = Lab::new();
    assert!(lab.a1.reaches(&lab.a2.addr));
    let (sent, got) = crate::lab::tcp_transfer(&lab.a1, &lab.a2, 64 << 20);
    assert_eq!(sent, got, "SHA-256 of sent and received data differ");
    let s = lab.sw.port_counters(&lab.a1.ifname);
    lab.sw.stop();
    // With offloads carried through, the sender's frames are GSO super-frames: far larger than
    // the 1514-byte MTU frames a switch without vnet headers would see.
    let avg = s["rx_bytes"] / s["rx_packets"].max(1);
    assert!(
        avg > 3000,
        "average frame from the sender is {avg} bytes: GSO frames were not carried ({s:?})"
    );
    assert_eq!(s["drop_tx_error"], 0, "{s:?}");
}
