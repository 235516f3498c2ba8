//! The forwarding decision: a pure function of (snapshot, FDB, frame, ingress port, now).
//!
//! It classifies the frame into a VLAN by the ingress port's mode, learns the source MAC, looks
//! the destination up and names the egress set. Rendering the frame for each egress port (tag
//! push, pop or rewrite) is [`crate::wire::EgressFrame::render`]. No sockets, threads or clocks:
//! the tests below drive it with plain bytes and chosen times.
#![forbid(unsafe_code)]

use crate::config::{LearnRules, LimitAction, PortEntry, PortId, PortMode, Snapshot};
use crate::counters::DropReason;
use crate::fdb::{Fdb, Learned};
use crate::wire::{EgressTag, EthernetFrame, MacAddr};

/// Where a classified frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// To one known port.
    Unicast(PortId),
    /// To every other member port of the VLAN (unknown unicast, broadcast, multicast).
    Flood,
    /// The destination sits behind the ingress port: nothing to send.
    Filtered,
}

/// The outcome for one frame that is not dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The VLAN the frame belongs to.
    pub vlan: u16,
    /// Where it goes.
    pub out: Out,
    /// What learning the source MAC did (`None`: a group or zero source, not learned).
    pub learned: Option<Learned>,
}

/// The MAC table as the decision uses it: learn the source, look the destination up.
///
/// [`Fdb`] learns; [`DryRun`] answers what learning would do and changes nothing, so that a
/// trace runs the very decision the workers run (`crate::trace`).
pub trait MacTable {
    /// Learns (or, dry, says what learning would do): [`Fdb::learn_with`].
    fn learn(&self, vlan: u16, mac: MacAddr, port: PortId, now: u32, rules: &LearnRules)
        -> Learned;
    /// The port `mac` lives on in `vlan`: [`Fdb::lookup`].
    fn lookup(&self, vlan: u16, mac: MacAddr, now: u32, aging: u32) -> Option<PortId>;
}

impl MacTable for Fdb {
    #[inline]
    fn learn(
        &self,
        vlan: u16,
        mac: MacAddr,
        port: PortId,
        now: u32,
        rules: &LearnRules,
    ) -> Learned {
        self.learn_with(vlan, mac, port, now, rules)
    }

    #[inline]
    fn lookup(&self, vlan: u16, mac: MacAddr, now: u32, aging: u32) -> Option<PortId> {
        Fdb::lookup(self, vlan, mac, now, aging)
    }
}

/// A table that only says what learning would do ([`Fdb::would_learn`]).
#[derive(Debug, Clone, Copy)]
pub struct DryRun<'a>(pub &'a Fdb);

impl MacTable for DryRun<'_> {
    fn learn(
        &self,
        vlan: u16,
        mac: MacAddr,
        port: PortId,
        now: u32,
        rules: &LearnRules,
    ) -> Learned {
        self.0.would_learn(vlan, mac, port, now, rules)
    }

    fn lookup(&self, vlan: u16, mac: MacAddr, now: u32, aging: u32) -> Option<PortId> {
        self.0.lookup(vlan, mac, now, aging)
    }
}

/// The VLAN a frame with outer VID `vid` (`None`: untagged, `Some(0)`: priority tag) belongs to
/// when it arrives on a port in `mode`.
pub fn classify(mode: &PortMode, vid: Option<u16>) -> Result<u16, DropReason> {
    let vid = vid.filter(|v| *v != 0); // priority-tagged counts as untagged
    match (mode, vid) {
        (PortMode::MirrorOutput, _) => Err(DropReason::MirrorOutput),
        (PortMode::Access { vlan }, None) => Ok(*vlan),
        (PortMode::Access { .. }, Some(_)) => Err(DropReason::TaggedOnAccess),
        (PortMode::Trunk { native, .. }, None) => native.ok_or(DropReason::VlanNotAllowed),
        (PortMode::Trunk { allowed, native }, Some(v)) => {
            if allowed.contains(v) || *native == Some(v) {
                Ok(v)
            } else {
                Err(DropReason::VlanNotAllowed)
            }
        }
    }
}

/// Decides what happens to `frame`, received on port `ingress` at `now` (seconds).
///
/// Learning happens here, so the FDB is updated as a side effect; nothing else is. Port
/// security is part of the decision: a source outside the port's allowed MACs is dropped
/// ([`DropReason::MacNotAllowed`]), and a new source beyond the port's or the VLAN's MAC limit
/// is not learned; the frame is then still forwarded if the port's limit action is `Flood`,
/// else dropped ([`DropReason::MacLimit`]).
#[inline]
pub fn decide<H, T: MacTable>(
    snap: &Snapshot<H>,
    fdb: &T,
    frame: &EthernetFrame<'_>,
    ingress: PortId,
    now: u32,
) -> Result<Decision, DropReason> {
    let port = snap.port(ingress).ok_or(DropReason::NoSuchPort)?;
    let vlan = classify(&port.mode, frame.vid())?;
    decide_classified(snap, fdb, frame, ingress, port, vlan, now)
}

/// [`decide`] for a frame already classified into `vlan` on port `ingress`, whose entry is
/// `port`: the worker classifies each frame once, for the prefetch and the decision alike.
#[inline]
pub fn decide_classified<H, T: MacTable>(
    snap: &Snapshot<H>,
    fdb: &T,
    frame: &EthernetFrame<'_>,
    ingress: PortId,
    port: &PortEntry<H>,
    vlan: u16,
    now: u32,
) -> Result<Decision, DropReason> {
    let src = frame.src();
    if !port.security.admits(src) {
        return Err(DropReason::MacNotAllowed);
    }
    let learned = if src.is_multicast() || src.is_zero() {
        None
    } else {
        let l = fdb.learn(vlan, src, ingress, now, &snap.learn_rules(port, vlan));
        if matches!(l, Learned::PortLimit | Learned::VlanLimit)
            && port.security.action != LimitAction::Flood
        {
            return Err(DropReason::MacLimit);
        }
        Some(l)
    };
    let dst = frame.dst();
    let out = if dst.is_multicast() {
        Out::Flood
    } else {
        match fdb.lookup(vlan, dst, now, snap.aging_secs) {
            Some(p) if p == ingress => Out::Filtered,
            // A stale entry for a port no longer in the VLAN: flood rather than misdeliver.
            Some(p) if snap.egress(p, vlan).is_some() => Out::Unicast(p),
            _ => Out::Flood,
        }
    };
    Ok(Decision { vlan, out, learned })
}

/// Starts loading the FDB slots that [`decide`] will touch for `frame` from `ingress` (its
/// source and, unless it is multicast, its destination), without deciding anything. A worker
/// calls it for every frame of a receive batch first, so that the cache misses of a large
/// table overlap instead of coming one after another.
#[inline]
pub fn prefetch<H>(snap: &Snapshot<H>, fdb: &Fdb, frame: &EthernetFrame<'_>, ingress: PortId) {
    let Some(port) = snap.port(ingress) else {
        return;
    };
    if let Ok(vlan) = classify(&port.mode, frame.vid()) {
        prefetch_classified(fdb, frame, vlan);
    }
}

/// [`prefetch`] for a frame already classified into `vlan`.
#[inline]
pub fn prefetch_classified(fdb: &Fdb, frame: &EthernetFrame<'_>, vlan: u16) {
    fdb.prefetch(vlan, frame.src());
    let dst = frame.dst();
    if !dst.is_multicast() {
        fdb.prefetch(vlan, dst);
    }
}

/// The egress ports of a decision with how each carries the frame. Never yields the ingress
/// port, nor a port outside the VLAN.
pub fn egress_ports<'s, H>(
    snap: &'s Snapshot<H>,
    d: &Decision,
    ingress: PortId,
) -> EgressPorts<'s, H> {
    let (single, list): (Option<PortId>, &[PortId]) = match d.out {
        Out::Unicast(p) => (Some(p), &[]),
        Out::Flood => (None, snap.members(d.vlan)),
        Out::Filtered => (None, &[]),
    };
    EgressPorts {
        snap,
        vlan: d.vlan,
        ingress,
        single,
        list: list.iter(),
    }
}

/// Iterator returned by [`egress_ports`].
#[derive(Debug)]
pub struct EgressPorts<'s, H> {
    snap: &'s Snapshot<H>,
    vlan: u16,
    ingress: PortId,
    single: Option<PortId>,
    list: std::slice::Iter<'s, PortId>,
}

impl<H> Iterator for EgressPorts<'_, H> {
    type Item = (PortId, EgressTag);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let p = match self.single.take() {
                Some(p) => p,
                None => *self.list.next()?,
            };
            if p == self.ingress {
                continue;
            }
            if let Some(tag) = self.snap.egress(p, self.vlan) {
                return Some((p, tag));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PortEntry;
    use crate::wire::EgressFrame;

    fn snap(modes: Vec<PortMode>) -> Snapshot {
        let ports = modes
            .into_iter()
            .enumerate()
            .map(|(i, mode)| Some(PortEntry::new(format!("p{i}"), mode, ())))
            .collect();
        Snapshot::new(ports, 300)
    }

    fn mac(n: u8) -> [u8; 6] {
        [2, 0, 0, 0, 0, n]
    }

    /// A 60-byte frame; `vid` adds an 802.1Q tag (`Some(0)`: priority tag).
    fn frame(dst: [u8; 6], src: [u8; 6], vid: Option<u16>) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        if let Some(v) = vid {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&v.to_be_bytes());
        }
        f.extend_from_slice(&[0x88, 0xb5]); // local experimental EtherType
        f.resize(60, 0xab);
        f
    }

    const BCAST: [u8; 6] = [0xff; 6];

    /// Ports: 0 access 10, 1 access 10, 2 access 20, 3 trunk [10, 20] native 1, 4 access 1.
    fn lab() -> Snapshot {
        snap(vec![
            PortMode::Access { vlan: 10 },
            PortMode::Access { vlan: 10 },
            PortMode::Access { vlan: 20 },
            PortMode::trunk([10, 20], Some(1)),
            PortMode::Access { vlan: 1 },
        ])
    }

    fn run(
        s: &Snapshot,
        fdb: &Fdb,
        bytes: &[u8],
        ingress: PortId,
    ) -> Result<Vec<(PortId, EgressTag)>, DropReason> {
        let f = EthernetFrame::parse(bytes).map_err(|_| DropReason::BadFrame)?;
        let d = decide(s, fdb, &f, ingress, 0)?;
        Ok(egress_ports(s, &d, ingress).collect())
    }

    #[test]
    fn table_of_rules() {
        use EgressTag::*;
        struct Case {
            what: &'static str,
            ingress: PortId,
            bytes: Vec<u8>,
            expect: Result<Vec<(PortId, EgressTag)>, DropReason>,
        }
        let cases = [
            Case {
                what: "broadcast on access floods its VLAN only, tagged on the trunk",
                ingress: 0,
                bytes: frame(BCAST, mac(1), None),
                expect: Ok(vec![(1, Untagged), (3, Tagged)]),
            },
            Case {
                what: "priority-tagged frame on access counts as untagged",
                ingress: 0,
                bytes: frame(BCAST, mac(1), Some(0)),
                expect: Ok(vec![(1, Untagged), (3, Tagged)]),
            },
            Case {
                what: "tagged frame on access is dropped (no VLAN hopping)",
                ingress: 0,
                bytes: frame(BCAST, mac(1), Some(20)),
                expect: Err(DropReason::TaggedOnAccess),
            },
            Case {
                what: "tagged frame with the access port's own VID is dropped too",
                ingress: 0,
                bytes: frame(BCAST, mac(1), Some(10)),
                expect: Err(DropReason::TaggedOnAccess),
            },
            Case {
                what: "tagged VLAN 20 on the trunk reaches VLAN 20 untagged",
                ingress: 3,
                bytes: frame(BCAST, mac(7), Some(20)),
                expect: Ok(vec![(2, Untagged)]),
            },
            Case {
                what: "VID not allowed on the trunk is dropped",
                ingress: 3,
                bytes: frame(BCAST, mac(7), Some(30)),
                expect: Err(DropReason::VlanNotAllowed),
            },
            Case {
                what: "untagged on the trunk goes to the native VLAN",
                ingress: 3,
                bytes: frame(BCAST, mac(7), None),
                expect: Ok(vec![(4, Untagged)]),
            },
            Case {
                what: "tagged with the native VID is accepted",
                ingress: 3,
                bytes: frame(BCAST, mac(7), Some(1)),
                expect: Ok(vec![(4, Untagged)]),
            },
            Case {
                what: "multicast floods like broadcast",
                ingress: 2,
                bytes: frame([0x01, 0x00, 0x5e, 0, 0, 1], mac(3), None),
                expect: Ok(vec![(3, Tagged)]),
            },
            Case {
                what: "unknown unicast floods within the VLAN",
                ingress: 1,
                bytes: frame(mac(99), mac(2), None),
                expect: Ok(vec![(0, Untagged), (3, Tagged)]),
            },
        ];
        for c in cases {
            let fdb = Fdb::new(64);
            assert_eq!(
                run(&lab(), &fdb, &c.bytes, c.ingress),
                c.expect,
                "{}",
                c.what
            );
        }
    }

    #[test]
    fn untagged_on_trunk_without_native_is_dropped() {
        let s = snap(vec![
            PortMode::trunk([10], None),
            PortMode::Access { vlan: 10 },
        ]);
        let fdb = Fdb::new(8);
        assert_eq!(
            run(&s, &fdb, &frame(BCAST, mac(1), None), 0),
            Err(DropReason::VlanNotAllowed)
        );
    }

    #[test]
    fn truncated_frame_is_a_bad_frame() {
        let s = lab();
        let fdb = Fdb::new(8);
        assert_eq!(run(&s, &fdb, &[0u8; 13], 0), Err(DropReason::BadFrame));
    }

    #[test]
    fn learned_unicast_goes_to_one_port_and_never_back() {
        let s = lab();
        let fdb = Fdb::new(64);
        // mac(2) speaks from port 1
        run(&s, &fdb, &frame(BCAST, mac(2), None), 1).unwrap();
        assert_eq!(
            run(&s, &fdb, &frame(mac(2), mac(1), None), 0),
            Ok(vec![(1, EgressTag::Untagged)])
        );
        // the reply to mac(1), learned on port 0 by the frame above
        assert_eq!(
            run(&s, &fdb, &frame(mac(1), mac(2), None), 1),
            Ok(vec![(0, EgressTag::Untagged)])
        );
        // a frame for a MAC behind the ingress port is filtered
        assert_eq!(run(&s, &fdb, &frame(mac(2), mac(5), None), 1), Ok(vec![]));
    }

    #[test]
    fn learning_is_per_vlan() {
        let s = lab();
        let fdb = Fdb::new(64);
        // mac(2) is known in VLAN 10 on port 1 ...
        run(&s, &fdb, &frame(BCAST, mac(2), None), 1).unwrap();
        // ... but a VLAN 20 frame for it floods VLAN 20 and never reaches port 1
        assert_eq!(
            run(&s, &fdb, &frame(mac(2), mac(8), Some(20)), 3),
            Ok(vec![(2, EgressTag::Untagged)])
        );
    }

    #[test]
    fn moves_are_reported_and_group_sources_not_learned() {
        let s = lab();
        let fdb = Fdb::new(64);
        let f1 = frame(BCAST, mac(1), None);
        let d = decide(&s, &fdb, &EthernetFrame::parse(&f1).unwrap(), 0, 0).unwrap();
        assert_eq!(d.learned, Some(Learned::New));
        let d = decide(&s, &fdb, &EthernetFrame::parse(&f1).unwrap(), 1, 1).unwrap();
        assert_eq!(
            d.learned,
            Some(Learned::Moved {
                from: 0,
                flapping: false
            })
        );
        let group_src = frame(BCAST, [0x03, 0, 0, 0, 0, 1], None);
        let d = decide(&s, &fdb, &EthernetFrame::parse(&group_src).unwrap(), 0, 1).unwrap();
        assert_eq!(d.learned, None);
        assert_eq!(fdb.len(), 1);
    }

    #[test]
    fn stale_entry_for_a_port_that_left_the_vlan_floods() {
        let fdb = Fdb::new(64);
        // mac(2) learned on port 1 while it was in VLAN 10 ...
        run(&lab(), &fdb, &frame(BCAST, mac(2), None), 1).unwrap();
        // ... then port 1 moved to VLAN 20 before the FDB was flushed
        let s = snap(vec![
            PortMode::Access { vlan: 10 },
            PortMode::Access { vlan: 20 },
            PortMode::trunk([10], None),
        ]);
        assert_eq!(
            run(&s, &fdb, &frame(mac(2), mac(1), None), 0),
            Ok(vec![(2, EgressTag::Tagged)])
        );
    }

    #[test]
    fn full_fdb_floods_instead_of_learning() {
        let s = lab();
        let fdb = Fdb::new(1);
        run(&s, &fdb, &frame(BCAST, mac(1), None), 0).unwrap();
        let f = frame(BCAST, mac(2), None);
        let d = decide(&s, &fdb, &EthernetFrame::parse(&f).unwrap(), 1, 0).unwrap();
        assert_eq!(d.learned, Some(Learned::NoRoom));
        // mac(2) was not learned: frames to it flood
        assert_eq!(
            run(&s, &fdb, &frame(mac(2), mac(1), None), 0),
            Ok(vec![(1, EgressTag::Untagged), (3, EgressTag::Tagged)])
        );
    }

    #[test]
    fn port_security_allowed_macs_and_limits() {
        use crate::config::{LimitAction, PortSecurity};
        let mut s = lab();
        let secure = |max_macs, action, allowed: Option<Vec<[u8; 6]>>| PortSecurity {
            max_macs,
            action,
            allowed: allowed.map(|a| a.into_iter().map(crate::wire::MacAddr).collect()),
        };
        let fdb = Fdb::new(64);
        // port 0 accepts only mac(1)
        let mut ports = s.ports().to_vec();
        ports[0].as_mut().unwrap().security =
            secure(u32::MAX, LimitAction::Flood, Some(vec![mac(1)]));
        // port 1 learns at most one MAC and drops frames from others
        ports[1].as_mut().unwrap().security = secure(1, LimitAction::Drop, None);
        // port 2 learns at most one MAC and still forwards frames from others
        ports[2].as_mut().unwrap().security = secure(1, LimitAction::Flood, None);
        s = Snapshot::new(ports, 300);
        assert_eq!(
            run(&s, &fdb, &frame(BCAST, mac(9), None), 0),
            Err(DropReason::MacNotAllowed)
        );
        assert!(run(&s, &fdb, &frame(BCAST, mac(1), None), 0).is_ok());
        assert!(run(&s, &fdb, &frame(BCAST, mac(2), None), 1).is_ok());
        assert_eq!(
            run(&s, &fdb, &frame(BCAST, mac(3), None), 1),
            Err(DropReason::MacLimit)
        );
        // the known source still passes
        assert!(run(&s, &fdb, &frame(BCAST, mac(2), None), 1).is_ok());
        assert!(run(&s, &fdb, &frame(BCAST, mac(4), None), 2).is_ok());
        let f = frame(BCAST, mac(5), None);
        let d = decide(&s, &fdb, &EthernetFrame::parse(&f).unwrap(), 2, 0).unwrap();
        assert_eq!(d.learned, Some(Learned::PortLimit));
        assert_eq!(d.out, Out::Flood);
        assert_eq!(fdb.lookup(20, crate::wire::MacAddr(mac(5)), 0, 300), None);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn mode() -> impl Strategy<Value = PortMode> {
            prop_oneof![
                (1u16..=4).prop_map(|vlan| PortMode::Access { vlan }),
                (
                    proptest::collection::vec(1u16..=4, 0..4),
                    proptest::option::of(1u16..=4)
                )
                    .prop_map(|(v, n)| PortMode::trunk(v, n)),
            ]
        }

        #[derive(Debug, Clone)]
        struct In {
            ingress: u16,
            dst: u8,
            src: u8,
            vid: Option<u16>,
            len: usize,
        }

        fn input() -> impl Strategy<Value = In> {
            (
                0u16..6,
                0u8..8,
                0u8..8,
                proptest::option::of(prop_oneof![0u16..=5, Just(4095)]),
                prop_oneof![60usize..64, 0usize..20],
            )
                .prop_map(|(ingress, dst, src, vid, len)| In {
                    ingress,
                    dst,
                    src,
                    vid,
                    len,
                })
        }

        /// The VLAN a port in `mode` considers a frame as seen on its wire to belong to.
        fn vlan_on_wire(mode: &PortMode, bytes: &[u8]) -> Option<u16> {
            let f = etherparse::SlicedPacket::from_ethernet(bytes).ok()?;
            let vid = f.link_exts.iter().find_map(|e| match e {
                etherparse::LinkExtSlice::Vlan(v) => Some(v.vlan_identifier().value()),
                _ => None,
            });
            classify(mode, vid).ok()
        }

        proptest! {
            /// For random configs and frames: nothing leaves on the ingress port, nothing leaves
            /// on a port outside the frame's VLAN, every copy carries the tag its port expects
            /// (checked by an independent parser), and the payload is untouched.
            #[test]
            fn never_leaks_across_vlans(
                modes in proptest::collection::vec(mode(), 2..6),
                inputs in proptest::collection::vec(input(), 1..40),
            ) {
                let s = snap(modes.clone());
                let fdb = Fdb::new(16);
                for (t, i) in inputs.iter().enumerate() {
                    let ingress = i.ingress % modes.len() as u16;
                    let dst = if i.dst == 7 { BCAST } else { mac(i.dst) };
                    let mut bytes = frame(dst, mac(i.src), i.vid);
                    if i.len < 20 {
                        bytes.truncate(i.len);
                    }
                    let Ok(f) = EthernetFrame::parse(&bytes) else {
                        prop_assert!(bytes.len() < 18);
                        continue;
                    };
                    let in_mode = &modes[ingress as usize];
                    let Ok(d) = decide(&s, &fdb, &f, ingress, t as u32) else {
                        prop_assert!(classify(in_mode, f.vid()).is_err());
                        continue;
                    };
                    prop_assert_eq!(Some(d.vlan), vlan_on_wire(in_mode, &bytes));
                    for (p, how) in egress_ports(&s, &d, ingress) {
                        prop_assert_ne!(p, ingress);
                        let out_mode = &modes[p as usize];
                        prop_assert_eq!(out_mode.egress(d.vlan), Some(how));
                        let e = EgressFrame::render(&f, d.vlan, how);
                        let mut out = vec![0u8; e.len()];
                        e.copy_to(&mut out).unwrap();
                        let tagged = out[12..14] == [0x81, 0x00];
                        prop_assert_eq!(tagged, how == EgressTag::Tagged);
                        if len_ok(&out) {
                            prop_assert_eq!(vlan_on_wire(out_mode, &out), Some(d.vlan));
                        }
                        prop_assert_eq!(&out[out.len() - f.after_tag().len()..], f.after_tag());
                    }
                }
            }
        }

        fn len_ok(b: &[u8]) -> bool {
            b.len() >= 18
        }
    }
}
