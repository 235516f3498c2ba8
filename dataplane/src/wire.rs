//! Frames on the wire: Ethernet II with an optional 802.1Q tag, and the `virtio_net_hdr` that
//! carries offload metadata (GSO, partial checksums) beside each frame.
//!
//! Everything here is pure and allocation-free. [`EthernetFrame::parse`] is the only entry point
//! for untrusted bytes: once it returns `Ok`, no accessor of the returned view panics.
//!
//! Tags are never moved in memory. A frame leaves the switch as up to three borrowed pieces
//! (addresses, an optional freshly built tag, the rest) written with one gather write, so a tag is
//! pushed, popped or rewritten without copying the payload; see [`EgressFrame`]. A frame that
//! would leave shorter than [`MIN_FRAME_LEN`] gets a fourth piece, zeros
//! ([`EgressFrame::pad_len`]).
#![forbid(unsafe_code)]

use core::fmt;

/// EtherType of an 802.1Q customer VLAN tag (the only TPID this switch treats as a tag).
pub const TPID_8021Q: u16 = 0x8100;
/// Length of an Ethernet II header without a tag.
pub const ETH_HLEN: usize = 14;
/// Length of an 802.1Q tag (TPID + TCI).
pub const VLAN_HLEN: usize = 4;
/// Length of the two MAC addresses at the start of every frame.
pub const ADDRS_LEN: usize = 12;
/// The shortest frame the switch sends, in bytes: Ethernet's minimum of 64 less the 4-byte FCS
/// (which taps and packet sockets do not carry). A shorter frame is padded with zeros after
/// its last byte, as hardware switches do; receivers discard runts.
pub const MIN_FRAME_LEN: usize = 60;

/// Byte ranges of the fields, as in smoltcp's `wire` modules.
mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const TCI: Range<usize> = 14..16;
}

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The broadcast address ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// The all-zero address (a VXLAN interface's flood list entry).
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// True for group (multicast and broadcast) addresses: the I/G bit is set.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True for 00:00:00:00:00:00.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// The address as the low 48 bits of a `u64`.
    pub fn to_u64(self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The address held in the low 48 bits of `v`.
    pub fn from_u64(v: u64) -> MacAddr {
        let b = v.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a MAC address string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address (expected six hex octets like 02:00:00:00:00:01)")]
pub struct MacParseError(pub String);

/// A MAC address is written as its text (`02:00:00:00:00:01`), and read from text in either
/// form [`MacAddr::from_str`](core::str::FromStr) takes.
#[cfg(feature = "serde")]
impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = MacAddr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a MAC address like 02:00:00:00:00:01")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MacAddr, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Text)
    }
}

impl core::str::FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in out.iter_mut() {
            let p = parts.next().ok_or_else(err)?;
            if p.len() != 2 {
                return Err(err());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

/// A frame that is too short to be Ethernet II (or to hold the tag it announces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("truncated frame: {len} bytes, need {need}")]
pub struct Truncated {
    /// Bytes received.
    pub len: usize,
    /// Bytes the header needs.
    pub need: usize,
}

/// A parsed, read-only view of an Ethernet II frame with at most one (outer) 802.1Q tag.
///
/// Inner tags (QinQ) are payload to this switch and pass through unchanged.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<'a> {
    bytes: &'a [u8],
    /// The TCI of the outer 802.1Q tag, if the frame carries one.
    tci: Option<u16>,
}

impl<'a> EthernetFrame<'a> {
    /// Checks that `bytes` holds a whole Ethernet II header (and the whole tag, if the EtherType
    /// announces one). After `Ok`, no accessor panics.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Truncated> {
        if bytes.len() < ETH_HLEN {
            return Err(Truncated {
                len: bytes.len(),
                need: ETH_HLEN,
            });
        }
        let ethertype = u16::from_be_bytes([
            bytes[field::ETHERTYPE.start],
            bytes[field::ETHERTYPE.start + 1],
        ]);
        let tci = if ethertype == TPID_8021Q {
            if bytes.len() < ETH_HLEN + VLAN_HLEN {
                return Err(Truncated {
                    len: bytes.len(),
                    need: ETH_HLEN + VLAN_HLEN,
                });
            }
            Some(u16::from_be_bytes([
                bytes[field::TCI.start],
                bytes[field::TCI.start + 1],
            ]))
        } else {
            None
        };
        Ok(EthernetFrame { bytes, tci })
    }

    /// The whole frame.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Destination address.
    pub fn dst(&self) -> MacAddr {
        let mut m = [0; 6];
        m.copy_from_slice(&self.bytes[field::DST]);
        MacAddr(m)
    }

    /// Source address.
    pub fn src(&self) -> MacAddr {
        let mut m = [0; 6];
        m.copy_from_slice(&self.bytes[field::SRC]);
        MacAddr(m)
    }

    /// The TCI of the outer 802.1Q tag, if any (priority tags have VID 0).
    pub fn tci(&self) -> Option<u16> {
        self.tci
    }

    /// The VID of the outer tag: `None` when untagged, `Some(0)` for a priority tag.
    pub fn vid(&self) -> Option<u16> {
        self.tci.map(|t| t & 0x0fff)
    }

    /// Length of the tag this frame carries (0 or 4).
    pub fn tag_len(&self) -> usize {
        if self.tci.is_some() {
            VLAN_HLEN
        } else {
            0
        }
    }

    /// The EtherType after the tag (or the only EtherType, when untagged).
    pub fn inner_ethertype(&self) -> u16 {
        let at = field::ETHERTYPE.start + self.tag_len();
        u16::from_be_bytes([self.bytes[at], self.bytes[at + 1]])
    }

    /// The destination and source addresses (the first 12 bytes).
    pub fn addrs(&self) -> &'a [u8] {
        &self.bytes[..ADDRS_LEN]
    }

    /// Everything after the tag: the inner EtherType and the payload.
    pub fn after_tag(&self) -> &'a [u8] {
        &self.bytes[ADDRS_LEN + self.tag_len()..]
    }
}

/// How a frame leaves an egress port: with an 802.1Q tag for its VLAN, or without a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressTag {
    /// Carried untagged (access port, or the native VLAN of a trunk).
    Untagged,
    /// Carried with a tag whose VID is the frame's VLAN.
    Tagged,
}

/// An 802.1Q tag with `tci`.
fn tag_bytes(tci: u16) -> [u8; VLAN_HLEN] {
    let (t, c) = (TPID_8021Q.to_be_bytes(), tci.to_be_bytes());
    [t[0], t[1], c[0], c[1]]
}

/// A frame ready for one egress port, as borrowed pieces: `addrs`, then `tag` (if any), then
/// `rest`. Building one copies 4 bytes at most, whatever the frame size.
#[derive(Debug, Clone, Copy)]
pub struct EgressFrame<'a> {
    /// Destination and source MAC addresses.
    pub addrs: &'a [u8],
    /// The 802.1Q tag to insert, if the port carries the VLAN tagged.
    pub tag: Option<[u8; VLAN_HLEN]>,
    /// The inner EtherType and the payload.
    pub rest: &'a [u8],
}

impl<'a> EgressFrame<'a> {
    /// Renders `frame`, classified into `vlan`, for a port that carries `vlan` as `how`.
    ///
    /// A tag already on the frame (possibly a priority tag, VID 0) is replaced; its PCP and DEI
    /// bits are kept. An untagged frame gets PCP 0.
    pub fn render(frame: &EthernetFrame<'a>, vlan: u16, how: EgressTag) -> Self {
        let tag = match how {
            EgressTag::Untagged => None,
            EgressTag::Tagged => {
                let tci = (frame.tci().unwrap_or(0) & 0xf000) | (vlan & 0x0fff);
                let t = TPID_8021Q.to_be_bytes();
                let c = tci.to_be_bytes();
                Some([t[0], t[1], c[0], c[1]])
            }
        };
        EgressFrame {
            addrs: frame.addrs(),
            tag,
            rest: frame.after_tag(),
        }
    }

    /// A mirror's copy of `frame` as it was received: the same bytes, or, with `tag`, its tag
    /// (pushed if it had none) carrying VID `tag`, its PCP and DEI kept.
    pub fn mirrored(frame: &EthernetFrame<'a>, tag: Option<u16>) -> Self {
        let tci = match tag {
            None => frame.tci(),
            Some(v) => Some((frame.tci().unwrap_or(0) & 0xf000) | (v & 0x0fff)),
        };
        EgressFrame {
            addrs: frame.addrs(),
            tag: tci.map(tag_bytes),
            rest: frame.after_tag(),
        }
    }

    /// A mirror's copy of this frame as sent: itself, or, with `tag`, with its tag (pushed if
    /// it had none) carrying VID `tag`, its PCP and DEI kept.
    pub fn remirrored(&self, tag: Option<u16>) -> Self {
        let Some(v) = tag else {
            return *self;
        };
        let pcp = self
            .tag
            .map_or(0, |t| u16::from_be_bytes([t[2], t[3]]) & 0xf000);
        EgressFrame {
            tag: Some(tag_bytes(pcp | (v & 0x0fff))),
            ..*self
        }
    }

    /// Length of the three pieces: the frame as rendered, without the pad that
    /// [`EgressFrame::wire_len`] adds to a short one.
    pub fn len(&self) -> usize {
        self.addrs.len() + self.tag.map_or(0, |t| t.len()) + self.rest.len()
    }

    /// Never true for a parsed frame; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Zero bytes to send after the frame so that it leaves [`MIN_FRAME_LEN`] bytes long: 0 for
    /// a frame that long already. The pad is counted after the tag is pushed or popped, so a
    /// 14-byte frame leaves 60 bytes long whether it is tagged on this port (18 bytes, then 42
    /// of pad) or not (46 of pad).
    ///
    /// A GSO frame (`hdr.gso_type` is not [`VnetHdr::GSO_NONE`]) is never padded: the kernel
    /// would take the pad for payload to segment. (A real one is far longer than 60 bytes.)
    #[inline]
    pub fn pad_len(&self, hdr: &VnetHdr) -> usize {
        if hdr.gso_type != VnetHdr::GSO_NONE {
            return 0;
        }
        MIN_FRAME_LEN.saturating_sub(self.len())
    }

    /// The bytes sent for this frame behind `hdr`: [`EgressFrame::len`] and the pad
    /// ([`EgressFrame::pad_len`]); the vnet header is not counted.
    #[inline]
    pub fn wire_len(&self, hdr: &VnetHdr) -> usize {
        self.len() + self.pad_len(hdr)
    }

    /// How many bytes longer (+4), shorter (-4) or equal (0) than the ingress frame.
    pub fn len_delta(&self, ingress: &EthernetFrame<'_>) -> isize {
        self.len() as isize - ingress.bytes().len() as isize
    }

    /// Copies the frame into `out` (tests and tools; the dataplane writes the pieces directly).
    /// Returns the length, or `None` if `out` is too small.
    pub fn copy_to(&self, out: &mut [u8]) -> Option<usize> {
        let n = self.len();
        if out.len() < n {
            return None;
        }
        let mut at = 0;
        out[..self.addrs.len()].copy_from_slice(self.addrs);
        at += self.addrs.len();
        if let Some(t) = self.tag {
            out[at..at + VLAN_HLEN].copy_from_slice(&t);
            at += VLAN_HLEN;
        }
        out[at..n].copy_from_slice(self.rest);
        Some(n)
    }
}

/// The `virtio_net_hdr` (legacy layout, 10 bytes, native endian as the tap and AF_PACKET use it)
/// that travels in front of each frame on vnet_hdr-enabled ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct VnetHdr {
    /// `VIRTIO_NET_HDR_F_*` flags.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*` type.
    pub gso_type: u8,
    /// Length of the headers to replicate per segment (a hint).
    pub hdr_len: u16,
    /// Segment payload size for GSO.
    pub gso_size: u16,
    /// Where checksumming starts, counted from the start of the Ethernet frame.
    pub csum_start: u16,
    /// Where to store the checksum, counted from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Size of the header on the wire.
    pub const LEN: usize = 10;
    /// The checksum is partial: the receiver completes it from `csum_start`.
    pub const F_NEEDS_CSUM: u8 = 1;
    /// No segmentation offload.
    pub const GSO_NONE: u8 = 0;

    /// Decodes the 10 bytes read in front of a frame.
    pub fn from_bytes(b: &[u8; Self::LEN]) -> Self {
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        }
    }

    /// Encodes the header for writing in front of a frame.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// The header for the same frame after a tag was pushed (`delta` = +4) or popped (-4):
    /// offsets that count from the start of the frame move with the payload.
    pub fn shifted(&self, delta: isize) -> Self {
        if delta == 0 {
            return *self;
        }
        let shift = |v: u16| (v as isize + delta).clamp(0, u16::MAX as isize) as u16;
        let mut h = *self;
        if h.flags & Self::F_NEEDS_CSUM != 0 {
            h.csum_start = shift(h.csum_start);
        }
        if h.gso_type != Self::GSO_NONE && h.hdr_len != 0 {
            h.hdr_len = shift(h.hdr_len);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An untagged ARP request from 02:00:00:00:00:01 (padded to 60 bytes).
    static UNTAGGED: [u8; 60] = {
        let mut f = [0u8; 60];
        let head: [u8; 22] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
            0x08, 0x06, // ARP
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
        ];
        let mut i = 0;
        while i < head.len() {
            f[i] = head[i];
            i += 1;
        }
        f
    };

    /// The same request tagged with PCP 5, VID 10.
    static TAGGED: [u8; 64] = {
        let mut f = [0u8; 64];
        let head: [u8; 26] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
            0x81, 0x00, 0xa0, 0x0a, // TPID, PCP 5 VID 10
            0x08, 0x06, // ARP
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
        ];
        let mut i = 0;
        while i < head.len() {
            f[i] = head[i];
            i += 1;
        }
        f
    };

    #[test]
    fn deconstruct_untagged() {
        let f = EthernetFrame::parse(&UNTAGGED).unwrap();
        assert_eq!(f.dst(), MacAddr::BROADCAST);
        assert_eq!(f.src(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(f.vid(), None);
        assert_eq!(f.inner_ethertype(), 0x0806);
        assert_eq!(f.after_tag().len(), 48);
    }

    #[test]
    fn deconstruct_tagged() {
        let f = EthernetFrame::parse(&TAGGED).unwrap();
        assert_eq!(f.vid(), Some(10));
        assert_eq!(f.tci(), Some(0xa00a));
        assert_eq!(f.inner_ethertype(), 0x0806);
        assert_eq!(f.after_tag(), &UNTAGGED[12..]);
    }

    #[test]
    fn truncated_frames_are_rejected() {
        assert_eq!(
            EthernetFrame::parse(&UNTAGGED[..13]).unwrap_err(),
            Truncated { len: 13, need: 14 }
        );
        assert_eq!(
            EthernetFrame::parse(&TAGGED[..17]).unwrap_err(),
            Truncated { len: 17, need: 18 }
        );
        assert!(EthernetFrame::parse(&TAGGED[..18]).is_ok());
        assert!(EthernetFrame::parse(&[]).is_err());
    }

    fn render(bytes: &[u8], vlan: u16, how: EgressTag) -> Vec<u8> {
        let f = EthernetFrame::parse(bytes).unwrap();
        let e = EgressFrame::render(&f, vlan, how);
        let mut out = vec![0u8; e.len()];
        assert_eq!(e.copy_to(&mut out), Some(e.len()));
        out
    }

    #[test]
    fn push_pop_keep() {
        // push onto an untagged frame: PCP 0
        let pushed = render(&UNTAGGED, 10, EgressTag::Tagged);
        let mut expect = TAGGED.to_vec();
        expect[14] = 0x00; // PCP 0, VID 10
        assert_eq!(pushed, expect[..64].to_vec());
        // pop
        assert_eq!(render(&TAGGED, 10, EgressTag::Untagged), UNTAGGED.to_vec());
        // keep: same bytes, PCP kept
        assert_eq!(render(&TAGGED, 10, EgressTag::Tagged), TAGGED.to_vec());
        // untagged stays untagged
        assert_eq!(
            render(&UNTAGGED, 10, EgressTag::Untagged),
            UNTAGGED.to_vec()
        );
    }

    #[test]
    fn priority_tag_is_rewritten_with_the_vlan() {
        let mut prio = TAGGED;
        prio[14] = 0xa0; // PCP 5
        prio[15] = 0x00; // VID 0
        let f = EthernetFrame::parse(&prio).unwrap();
        assert_eq!(f.vid(), Some(0));
        let out = render(&prio, 20, EgressTag::Tagged);
        assert_eq!(&out[12..16], &[0x81, 0x00, 0xa0, 20]);
        let out = render(&prio, 20, EgressTag::Untagged);
        assert_eq!(out, UNTAGGED.to_vec());
    }

    #[test]
    fn copy_to_refuses_short_buffers() {
        let f = EthernetFrame::parse(&UNTAGGED).unwrap();
        let e = EgressFrame::render(&f, 10, EgressTag::Tagged);
        assert_eq!(e.len(), 64);
        assert_eq!(e.len_delta(&f), 4);
        assert_eq!(e.copy_to(&mut [0u8; 63]), None);
    }

    #[test]
    fn short_frames_are_padded_to_60_bytes_after_tagging() {
        // The shortest frame there is: addresses and an EtherType, no payload.
        let runt = &UNTAGGED[..ETH_HLEN];
        let plain = VnetHdr::default();
        let cases: &[(&[u8], EgressTag, usize, usize)] = &[
            (runt, EgressTag::Untagged, 14, 46),
            (runt, EgressTag::Tagged, 18, 42),
            (&UNTAGGED[..59], EgressTag::Untagged, 59, 1),
            (&UNTAGGED, EgressTag::Untagged, 60, 0),
            (&UNTAGGED, EgressTag::Tagged, 64, 0),
            // A 60-byte tagged frame whose tag is popped leaves 56 bytes long: padded again.
            (&TAGGED[..60], EgressTag::Untagged, 56, 4),
            (&TAGGED[..60], EgressTag::Tagged, 60, 0),
        ];
        for &(bytes, how, len, pad) in cases {
            let f = EthernetFrame::parse(bytes).unwrap();
            let e = EgressFrame::render(&f, 10, how);
            assert_eq!(
                (e.len(), e.pad_len(&plain)),
                (len, pad),
                "{} {how:?}",
                bytes.len()
            );
            assert_eq!(e.wire_len(&plain), len.max(MIN_FRAME_LEN));
        }
        // A large frame is never touched, and neither is a GSO frame, whatever its length.
        let big = [0u8; 1514];
        let e = EgressFrame::render(&EthernetFrame::parse(&big).unwrap(), 10, EgressTag::Tagged);
        assert_eq!((e.pad_len(&plain), e.wire_len(&plain)), (0, 1518));
        let gso = VnetHdr {
            gso_type: 1, // TCPV4
            gso_size: 2,
            ..plain
        };
        let e = EgressFrame::render(
            &EthernetFrame::parse(runt).unwrap(),
            10,
            EgressTag::Untagged,
        );
        assert_eq!((e.pad_len(&gso), e.wire_len(&gso)), (0, 14));
    }

    #[test]
    fn vnet_hdr_round_trip_and_shift() {
        let h = VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            gso_type: 1, // TCPV4
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::from_bytes(&h.to_bytes()), h);
        let pushed = h.shifted(4);
        assert_eq!((pushed.csum_start, pushed.hdr_len), (38, 70));
        assert_eq!(pushed.csum_offset, 16);
        assert_eq!(pushed.shifted(-4), h);
        // no partial checksum, no GSO: nothing to move
        let plain = VnetHdr::default();
        assert_eq!(plain.shifted(4), plain);
    }

    #[test]
    fn mac_parse_and_display() {
        let m: MacAddr = "02:00:5e:10:00:0a".parse().unwrap();
        assert_eq!(m.to_string(), "02:00:5e:10:00:0a");
        assert_eq!(MacAddr::from_u64(m.to_u64()), m);
        assert!("02:00:5e:10:00".parse::<MacAddr>().is_err());
        assert!("02:00:5e:10:00:0a:0b".parse::<MacAddr>().is_err());
        assert!("zz:00:5e:10:00:0a".parse::<MacAddr>().is_err());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(!m.is_multicast());
    }

    fn bytes_of(e: &EgressFrame<'_>) -> Vec<u8> {
        let mut out = vec![0; e.len()];
        e.copy_to(&mut out).unwrap();
        out
    }

    #[test]
    fn mirror_copies_are_as_carried_or_retagged_keeping_pcp() {
        let untagged = EthernetFrame::parse(&UNTAGGED).unwrap();
        let tagged = EthernetFrame::parse(&TAGGED).unwrap();
        assert_eq!(bytes_of(&EgressFrame::mirrored(&untagged, None)), UNTAGGED);
        assert_eq!(bytes_of(&EgressFrame::mirrored(&tagged, None)), TAGGED);
        // VID 99 pushed onto the untagged frame; put in place of VID 10, PCP 5 kept.
        let pushed = bytes_of(&EgressFrame::mirrored(&untagged, Some(99)));
        assert_eq!(&pushed[12..16], &[0x81, 0x00, 0x00, 99]);
        assert_eq!(&pushed[16..], &UNTAGGED[12..]);
        let swapped = bytes_of(&EgressFrame::mirrored(&tagged, Some(99)));
        assert_eq!(&swapped[12..16], &[0x81, 0x00, 0xa0, 99]);
        assert_eq!(&swapped[16..], &TAGGED[16..]);
        // A copy of what a trunk sent (tagged 10, PCP 5) and of what an access port sent.
        let sent = EgressFrame::render(&tagged, 10, EgressTag::Tagged);
        assert_eq!(bytes_of(&sent.remirrored(None)), TAGGED);
        assert_eq!(
            &bytes_of(&sent.remirrored(Some(99)))[12..16],
            &[0x81, 0x00, 0xa0, 99]
        );
        let sent = EgressFrame::render(&tagged, 10, EgressTag::Untagged);
        assert_eq!(
            &bytes_of(&sent.remirrored(Some(99)))[12..16],
            &[0x81, 0x00, 0x00, 99]
        );
    }
}
