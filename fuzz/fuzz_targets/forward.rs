//! Fuzzes the frame parser, the forwarding decision and egress rendering together.
//!
//! The input's first bytes pick a small switch configuration; the rest is a sequence of
//! frames, each prefixed by its ingress port and length. For every frame: nothing panics, no
//! copy leaves on the ingress port or on a port outside the frame's VLAN, and every copy carries
//! exactly the tag its egress port expects.
//!
//! Run: `cargo fuzz run forward` (in this directory; see tests/README.md).
#![no_main]

use dataplane::config::{PortEntry, Snapshot};
use dataplane::fdb::Fdb;
use dataplane::forward::{decide, egress_ports};
use dataplane::wire::{EgressFrame, EgressTag, EthernetFrame};
use dataplane::PortMode;
use libfuzzer_sys::fuzz_target;

fn mode(b: u8) -> PortMode {
    let v = |x: u8| u16::from(x % 4) + 1;
    if b & 0x80 == 0 {
        PortMode::Access { vlan: v(b) }
    } else {
        let native = (b & 0x40 != 0).then(|| v(b >> 2));
        PortMode::trunk([v(b), v(b >> 1), v(b >> 3)], native)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 6) + 2;
    if rest.len() < n {
        return;
    }
    let (modes, mut frames) = rest.split_at(n);
    let modes: Vec<PortMode> = modes.iter().map(|b| mode(*b)).collect();
    let snap: Snapshot = Snapshot::new(
        modes
            .iter()
            .enumerate()
            .map(|(i, m)| Some(PortEntry::new(format!("p{i}"), m.clone(), ())))
            .collect(),
        300,
    );
    let fdb = Fdb::new(64);
    let mut now = 0u32;
    while frames.len() >= 2 {
        let ingress = u16::from(frames[0]) % n as u16;
        let len = usize::from(frames[1]).min(frames.len() - 2);
        let bytes = &frames[2..2 + len];
        frames = &frames[2 + len..];
        now += 1;
        let Ok(f) = EthernetFrame::parse(bytes) else {
            continue;
        };
        let Ok(d) = decide(&snap, &fdb, &f, ingress, now) else {
            continue;
        };
        for (p, how) in egress_ports(&snap, &d, ingress) {
            assert_ne!(p, ingress, "frame sent back out of its ingress port");
            assert_eq!(
                modes[p as usize].egress(d.vlan),
                Some(how),
                "port outside the VLAN"
            );
            let e = EgressFrame::render(&f, d.vlan, how);
            let mut out = vec![0u8; e.len()];
            e.copy_to(&mut out).expect("sized buffer");
            match how {
                EgressTag::Tagged => {
                    assert_eq!(out[12..14], [0x81, 0x00]);
                    assert_eq!(u16::from_be_bytes([out[14], out[15]]) & 0x0fff, d.vlan);
                    assert_eq!(&out[16..], f.after_tag());
                }
                // Popped (or never tagged): what follows the addresses is the frame after its
                // outer tag, inner tags included.
                EgressTag::Untagged => assert_eq!(&out[12..], f.after_tag()),
            }
        }
    }
});
