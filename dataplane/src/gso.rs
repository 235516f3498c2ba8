//! Software segmentation and checksum completion, for egress ports that cannot take a frame as
//! the kernel gave it to us.
//!
//! Linux hands the switch TCP as GSO super-frames of up to 64 KiB and frames whose transport
//! checksum is partial (`VIRTIO_NET_HDR_F_NEEDS_CSUM`), each with its `virtio_net_hdr`
//! ([`VnetHdr`]). A port that did not negotiate those offloads (a vhost-user guest without
//! `GUEST_TSO4`/`GUEST_TSO6`/`GUEST_CSUM`) must get wire frames with complete checksums. This
//! module turns one into the other, so that such frames are never silently corrupted or dropped:
//!
//! - [`linearize`] copies an [`EgressFrame`] (addresses, optional tag, rest) into one buffer;
//! - [`complete_checksum`] finishes a partial checksum in place, as the kernel's
//!   `skb_checksum_help` does;
//! - [`segment`] splits a GSO frame into wire frames with every header fixed, as the kernel's
//!   software GSO does, and completes the checksum of a frame that needs no segmentation.
//!
//! Guarantees:
//! - Pure: no syscall, no clock, no I/O type, no heap allocation. The caller passes the buffers;
//!   each segment is built in the caller's `seg` buffer and handed to a callback.
//! - The input is peer-controlled. Every field read is bounds-checked; nothing here panics or
//!   indexes out of bounds, whatever the bytes and the header say (property-tested and fuzzed:
//!   `fuzz/fuzz_targets/gso.rs`). The headers are found by parsing the frame ([`headers`]);
//!   `hdr_len` is only a hint and is never trusted, and neither are the IP and UDP length fields
//!   or the checksum fields of the input, all of which are rewritten per segment.
//! - [`segment`] checks everything before it emits the first segment: an error other than
//!   [`SegmentError::Emit`] means nothing was emitted.
//!
//! Supported: Ethernet II with up to [`MAX_TAGS`] VLAN tags (TPID 0x8100 or 0x88a8), IPv4 with
//! options, IPv6 without extension headers, TCP with options (`GSO_TCPV4`, `GSO_TCPV6`) and UDP
//! segmentation (`GSO_UDP_L4`, USO). Not supported, each with its own error: UFO (`GSO_UDP`,
//! IPv4 fragmentation of one UDP datagram; Linux itself no longer produces it), IPv6 extension
//! headers, IPv4 fragments, unknown GSO types.
//!
//! Offsets: `csum_start` counts from the start of the Ethernet frame as it is passed in, so a
//! caller that pushed or popped a tag passes the header [`VnetHdr::shifted`] to match. Segments
//! are not padded; a segment shorter than [`crate::wire::MIN_FRAME_LEN`] is padded on the way
//! out like any other frame.
#![forbid(unsafe_code)]

use crate::wire::{EgressFrame, VnetHdr, TPID_8021Q};

/// `VIRTIO_NET_HDR_GSO_TCPV4`: TCP over IPv4, segmented at `gso_size` bytes of TCP payload.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP`: UFO, one UDP datagram to fragment at the IPv4 layer (unsupported).
pub const GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`: TCP over IPv6, segmented at `gso_size` bytes of TCP payload.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4`: USO, UDP payload cut into datagrams of `gso_size` bytes each.
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`: the sender uses ECN (CWR may be set). Or-ed into `gso_type`. The
/// ECN bits travel in the copied headers anyway, and CWR is kept on the first segment only, so
/// the flag changes nothing here.
pub const GSO_ECN: u8 = 0x80;
/// The most VLAN tags [`headers`] skips before the IP header (QinQ: an outer and an inner tag).
pub const MAX_TAGS: usize = 2;
/// TPID of an 802.1ad service tag (the outer tag of QinQ).
pub const TPID_8021AD: u16 = 0x88a8;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const IPV4_MIN_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const TCP_MIN_LEN: usize = 20;
const UDP_LEN: usize = 8;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Why a frame could not be linearized, checksummed or segmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GsoError {
    /// The frame ends inside a header.
    #[error("truncated {what}: the frame has {len} bytes, the header needs {need}")]
    Truncated {
        /// The header that does not fit.
        what: &'static str,
        /// Bytes in the frame.
        len: usize,
        /// Bytes needed up to the end of that header.
        need: usize,
    },
    /// More VLAN tags than [`MAX_TAGS`] before the IP header.
    #[error("more than {MAX_TAGS} VLAN tags before the IP header")]
    TooManyTags,
    /// The EtherType after the tags is neither IPv4 nor IPv6.
    #[error(
        "EtherType {ethertype:#06x} is neither IPv4 nor IPv6, so the frame cannot be segmented"
    )]
    NotIp {
        /// The EtherType found.
        ethertype: u16,
    },
    /// The IP version nibble does not match the EtherType.
    #[error("IP version {version} under EtherType {ethertype:#06x}")]
    IpVersion {
        /// The version nibble.
        version: u8,
        /// The EtherType that announced the header.
        ethertype: u16,
    },
    /// An IPv4 header length (IHL) below the 20-byte minimum.
    #[error("IPv4 header length {len} is shorter than the 20-byte minimum")]
    Ipv4HeaderLen {
        /// IHL times 4.
        len: usize,
    },
    /// An IPv4 fragment: a GSO frame is always a whole datagram.
    #[error("an IPv4 fragment (flags and offset {frag:#06x}) cannot be segmented")]
    Ipv4Fragment {
        /// The MF flag and fragment offset bits.
        frag: u16,
    },
    /// An IPv6 extension header follows the fixed header (not supported).
    #[error("IPv6 extension header {next_header} before the transport header is not supported")]
    Ipv6Extension {
        /// The next-header value of the extension.
        next_header: u8,
    },
    /// The transport protocol is neither TCP nor UDP.
    #[error("IP protocol {protocol} is neither TCP nor UDP")]
    NotTcpOrUdp {
        /// The IPv4 protocol or IPv6 next-header value.
        protocol: u8,
    },
    /// A TCP data offset below the 20-byte minimum.
    #[error("TCP header length {len} is shorter than the 20-byte minimum")]
    TcpHeaderLen {
        /// The data offset times 4.
        len: usize,
    },
    /// The frame's protocols are not the ones `gso_type` announces.
    #[error("gso_type {gso_type} announces {expected}, but the frame carries {found}")]
    ProtocolMismatch {
        /// `gso_type` without [`GSO_ECN`].
        gso_type: u8,
        /// What the type means.
        expected: &'static str,
        /// What the frame holds.
        found: &'static str,
    },
    /// `gso_type` is [`GSO_UDP`] (UFO), which is not supported.
    #[error("gso_type 3 (UFO: IPv4 fragmentation of one UDP datagram) is not supported")]
    UfoUnsupported,
    /// `gso_type` is no type virtio defines.
    #[error("gso_type {gso_type} is not a known GSO type")]
    UnknownGsoType {
        /// `gso_type` without [`GSO_ECN`].
        gso_type: u8,
    },
    /// A GSO frame with `gso_size` 0: no segment size to cut at.
    #[error("gso_size is 0: a GSO frame needs a segment size")]
    ZeroGsoSize,
    /// The output buffer cannot hold the frame or the segment.
    #[error("the output buffer holds {have} bytes, {need} are needed")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes in the buffer.
        have: usize,
    },
    /// A segment's IP or UDP length would not fit 16 bits.
    #[error("a segment of {len} bytes after the IP header does not fit a 16-bit length field")]
    SegmentTooLong {
        /// Bytes the length field would have to count.
        len: usize,
    },
    /// The partial checksum's field lies outside the frame.
    #[error(
        "partial checksum at csum_start {start} + csum_offset {offset} lies outside the \
         {len}-byte frame"
    )]
    ChecksumOutOfFrame {
        /// `csum_start`.
        start: u16,
        /// `csum_offset`.
        offset: u16,
        /// Bytes in the frame.
        len: usize,
    },
}

/// This module's result.
pub type Result<T> = core::result::Result<T, GsoError>;

/// Why [`segment`] stopped: the frame was refused before any segment left, or the callback
/// failed on one.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError<E> {
    /// The frame was refused; nothing was emitted.
    #[error(transparent)]
    Frame(#[from] GsoError),
    /// The callback failed on segment `index` (counting from 0); segments before it were
    /// emitted, none after it.
    #[error("emitting segment {index}")]
    Emit {
        /// The segment the callback failed on.
        index: usize,
        /// What the callback returned.
        #[source]
        source: E,
    },
}

/// The IP version of a parsed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ip {
    /// IPv4, options allowed.
    V4,
    /// IPv6 without extension headers.
    V6,
}

/// The transport protocol of a parsed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// TCP, options allowed.
    Tcp,
    /// UDP.
    Udp,
}

/// Where the headers of a frame are, found by [`headers`]. All offsets count from the start of
/// the Ethernet frame and are in bounds of the frame they were parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    /// Start of the IP header (after the Ethernet header and its tags).
    pub l3: usize,
    /// Start of the TCP or UDP header.
    pub l4: usize,
    /// Start of the transport payload: the length of all headers, what every segment repeats.
    pub payload: usize,
    /// IPv4 or IPv6.
    pub ip: Ip,
    /// TCP or UDP.
    pub l4_proto: L4,
}

impl Headers {
    fn describe(&self) -> &'static str {
        match (self.ip, self.l4_proto) {
            (Ip::V4, L4::Tcp) => "TCP over IPv4",
            (Ip::V6, L4::Tcp) => "TCP over IPv6",
            (Ip::V4, L4::Udp) => "UDP over IPv4",
            (Ip::V6, L4::Udp) => "UDP over IPv6",
        }
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn need(frame: &[u8], what: &'static str, need: usize) -> Result<()> {
    if frame.len() < need {
        Err(GsoError::Truncated {
            what,
            len: frame.len(),
            need,
        })
    } else {
        Ok(())
    }
}

/// Finds the IP and transport headers of `frame`: Ethernet II, up to [`MAX_TAGS`] VLAN tags,
/// IPv4 (with options) or IPv6 (no extension headers), TCP (with options) or UDP. Only the
/// headers are checked, not the lengths or checksums they hold.
pub fn headers(frame: &[u8]) -> Result<Headers> {
    let mut et_at = 12;
    let mut tags = 0;
    let ethertype = loop {
        need(frame, "Ethernet header", et_at + 2)?;
        let et = be16(frame, et_at).unwrap_or_default();
        if et != TPID_8021Q && et != TPID_8021AD {
            break et;
        }
        if tags == MAX_TAGS {
            return Err(GsoError::TooManyTags);
        }
        tags += 1;
        et_at += 4;
    };
    let l3 = et_at + 2;
    let (ip, l4, protocol) = match ethertype {
        ETHERTYPE_IPV4 => {
            need(frame, "IPv4 header", l3 + IPV4_MIN_LEN)?;
            let vihl = frame[l3];
            if vihl >> 4 != 4 {
                return Err(GsoError::IpVersion {
                    version: vihl >> 4,
                    ethertype,
                });
            }
            let ihl = usize::from(vihl & 0x0f) * 4;
            if ihl < IPV4_MIN_LEN {
                return Err(GsoError::Ipv4HeaderLen { len: ihl });
            }
            need(frame, "IPv4 options", l3 + ihl)?;
            let frag = be16(frame, l3 + 6).unwrap_or_default() & 0x3fff;
            if frag != 0 {
                return Err(GsoError::Ipv4Fragment { frag });
            }
            (Ip::V4, l3 + ihl, frame[l3 + 9])
        }
        ETHERTYPE_IPV6 => {
            need(frame, "IPv6 header", l3 + IPV6_LEN)?;
            let version = frame[l3] >> 4;
            if version != 6 {
                return Err(GsoError::IpVersion { version, ethertype });
            }
            let next_header = frame[l3 + 6];
            // Hop-by-hop, routing, fragment, ESP, AH, destination options, mobility, HIP, shim6.
            if matches!(next_header, 0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140) {
                return Err(GsoError::Ipv6Extension { next_header });
            }
            (Ip::V6, l3 + IPV6_LEN, next_header)
        }
        _ => return Err(GsoError::NotIp { ethertype }),
    };
    let (l4_proto, payload) = match protocol {
        PROTO_TCP => {
            need(frame, "TCP header", l4 + TCP_MIN_LEN)?;
            let len = usize::from(frame[l4 + 12] >> 4) * 4;
            if len < TCP_MIN_LEN {
                return Err(GsoError::TcpHeaderLen { len });
            }
            need(frame, "TCP options", l4 + len)?;
            (L4::Tcp, l4 + len)
        }
        PROTO_UDP => {
            need(frame, "UDP header", l4 + UDP_LEN)?;
            (L4::Udp, l4 + UDP_LEN)
        }
        _ => return Err(GsoError::NotTcpOrUdp { protocol }),
    };
    Ok(Headers {
        l3,
        l4,
        payload,
        ip,
        l4_proto,
    })
}

/// The one's-complement sum (RFC 1071) of `data` read as big-endian 16-bit words, an odd last
/// byte padded with zero; not folded. Summing 32-bit words is the same sum, since
/// 2^16 = 1 modulo 2^16 - 1.
fn sum(data: &[u8]) -> u64 {
    let mut acc = 0u64;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let mut tail = [0u8; 4];
    let rest = words.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    acc + u64::from(u32::from_be_bytes(tail))
}

/// Folds a sum to 16 bits with end-around carries.
fn fold(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The Internet checksum (RFC 1071) of `data`: the complement of its folded one's-complement
/// sum. A buffer that contains its own correct checksum gives 0.
pub fn internet_checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// Copies the pieces of `frame` (addresses, tag if any, rest) into `out`, so that the frame can
/// be checksummed or segmented as one slice. Returns the length written. The pad of a short
/// frame is not written.
pub fn linearize(frame: &EgressFrame<'_>, out: &mut [u8]) -> Result<usize> {
    frame.copy_to(out).ok_or(GsoError::BufferTooSmall {
        need: frame.len(),
        have: out.len(),
    })
}

/// Completes the partial checksum of `frame` in place, if `hdr` says it is partial
/// ([`VnetHdr::F_NEEDS_CSUM`]); otherwise does nothing.
///
/// As virtio and the kernel's `CHECKSUM_PARTIAL` define it: the 16-bit field at
/// `csum_start + csum_offset` holds the sum of the pseudo-header, the checksum covers
/// `csum_start` to the end of the frame, and the result is stored in that field, 0 written as
/// 0xffff (as `skb_checksum_help` does; both mean the same to TCP, and UDP needs it). Offsets
/// count from the start of `frame`. The flag is left in `hdr` for the caller to clear.
pub fn complete_checksum(hdr: &VnetHdr, frame: &mut [u8]) -> Result<()> {
    if hdr.flags & VnetHdr::F_NEEDS_CSUM == 0 {
        return Ok(());
    }
    let start = usize::from(hdr.csum_start);
    let at = start + usize::from(hdr.csum_offset);
    if at + 2 > frame.len() {
        return Err(GsoError::ChecksumOutOfFrame {
            start: hdr.csum_start,
            offset: hdr.csum_offset,
            len: frame.len(),
        });
    }
    let c = match internet_checksum(&frame[start..]) {
        0 => 0xffff,
        c => c,
    };
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// The unfolded sum of the pseudo-header for a transport segment of `len` bytes after the IP
/// header at `frame[h.l3..]`.
fn pseudo_sum(frame: &[u8], h: &Headers, proto: u8, len: usize) -> u64 {
    let addrs = match h.ip {
        Ip::V4 => &frame[h.l3 + 12..h.l3 + 20],
        Ip::V6 => &frame[h.l3 + 8..h.l3 + 40],
    };
    sum(addrs) + u64::from(proto) + len as u64
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Splits the GSO frame `frame` (as [`VnetHdr`] `hdr` describes it) into wire frames with
/// complete checksums, builds each in `seg` and hands it to `emit`. Returns how many were
/// emitted.
///
/// Each segment repeats the frame's headers (Ethernet, every VLAN tag, IP, TCP or UDP, found by
/// [`headers`], never from `hdr_len`) and carries the next `gso_size` bytes of the transport
/// payload, so it is at most headers + `gso_size` bytes long; the payload runs to the end of
/// `frame`. Per segment, as Linux's software GSO does:
/// - IPv4: the total length, the identification (incremented per segment) and a fresh header
///   checksum; IPv6: the payload length;
/// - TCP: the sequence number advanced by the payload before it, FIN and PSH on the last segment
///   only, CWR on the first only (ECN bits and all other fields as they came);
/// - UDP ([`GSO_UDP_L4`]): each segment its own datagram, with its own length;
/// - the full TCP or UDP checksum over the pseudo-header, header and payload (UDP's 0 sent as
///   0xffff).
///
/// A frame of `gso_type` [`VnetHdr::GSO_NONE`] is copied to `seg` and emitted once, its checksum
/// completed if it is partial ([`complete_checksum`]); it need not be IP. A GSO frame with no
/// payload is emitted once, headers fixed. `seg` must hold the first segment (or the whole
/// frame, for `GSO_NONE`). Every check is made before the first segment is emitted.
pub fn segment<E>(
    hdr: &VnetHdr,
    frame: &[u8],
    seg: &mut [u8],
    mut emit: impl FnMut(&[u8]) -> core::result::Result<(), E>,
) -> core::result::Result<usize, SegmentError<E>> {
    let kind = hdr.gso_type & !GSO_ECN;
    if kind == VnetHdr::GSO_NONE {
        if seg.len() < frame.len() {
            return Err(GsoError::BufferTooSmall {
                need: frame.len(),
                have: seg.len(),
            }
            .into());
        }
        let out = &mut seg[..frame.len()];
        out.copy_from_slice(frame);
        complete_checksum(hdr, out)?;
        emit(out).map_err(|source| SegmentError::Emit { index: 0, source })?;
        return Ok(1);
    }
    let (ip, l4_proto, expected) = match kind {
        GSO_TCPV4 => (Some(Ip::V4), L4::Tcp, "TCP over IPv4"),
        GSO_TCPV6 => (Some(Ip::V6), L4::Tcp, "TCP over IPv6"),
        GSO_UDP_L4 => (None, L4::Udp, "UDP"),
        GSO_UDP => return Err(GsoError::UfoUnsupported.into()),
        gso_type => return Err(GsoError::UnknownGsoType { gso_type }.into()),
    };
    if hdr.gso_size == 0 {
        return Err(GsoError::ZeroGsoSize.into());
    }
    let h = headers(frame)?;
    if h.l4_proto != l4_proto || ip.is_some_and(|ip| ip != h.ip) {
        return Err(GsoError::ProtocolMismatch {
            gso_type: kind,
            expected,
            found: h.describe(),
        }
        .into());
    }
    let payload = &frame[h.payload..];
    let mss = usize::from(hdr.gso_size);
    let largest = h.payload + mss.min(payload.len());
    if seg.len() < largest {
        return Err(GsoError::BufferTooSmall {
            need: largest,
            have: seg.len(),
        }
        .into());
    }
    // The IPv4 total length counts the IP header; IPv6's payload length and UDP's length do not.
    let counted = match h.ip {
        Ip::V4 => largest - h.l3,
        Ip::V6 => largest - h.l4,
    };
    if counted > usize::from(u16::MAX) {
        return Err(GsoError::SegmentTooLong { len: counted }.into());
    }

    let (l3, l4) = (h.l3, h.l4);
    seg[..h.payload].copy_from_slice(&frame[..h.payload]);
    let id0 = be16(frame, l3 + 4).unwrap_or_default();
    let (seq0, flags0) = match l4_proto {
        L4::Tcp => (
            u32::from_be_bytes([frame[l4 + 4], frame[l4 + 5], frame[l4 + 6], frame[l4 + 7]]),
            frame[l4 + 13],
        ),
        L4::Udp => (0, 0),
    };
    let count = payload.len().div_ceil(mss).max(1);
    for index in 0..count {
        let off = index * mss;
        let chunk = &payload[off..(off + mss).min(payload.len())];
        let end = h.payload + chunk.len();
        seg[h.payload..end].copy_from_slice(chunk);
        let s = &mut seg[..end];
        match h.ip {
            Ip::V4 => {
                put16(s, l3 + 2, (end - l3) as u16);
                put16(s, l3 + 4, id0.wrapping_add(index as u16));
                put16(s, l3 + 10, 0);
                let c = internet_checksum(&s[l3..l4]);
                put16(s, l3 + 10, c);
            }
            Ip::V6 => put16(s, l3 + 4, (end - l4) as u16),
        }
        let (proto, csum_at) = match l4_proto {
            L4::Tcp => {
                let seq = seq0.wrapping_add(off as u32);
                s[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
                let mut flags = flags0;
                if index + 1 != count {
                    flags &= !(TCP_FIN | TCP_PSH);
                }
                if index != 0 {
                    flags &= !TCP_CWR;
                }
                s[l4 + 13] = flags;
                (PROTO_TCP, l4 + 16)
            }
            L4::Udp => {
                put16(s, l4 + 4, (end - l4) as u16);
                (PROTO_UDP, l4 + 6)
            }
        };
        put16(s, csum_at, 0);
        let total = pseudo_sum(s, &h, proto, end - l4) + sum(&s[l4..]);
        let c = match (!fold(total), l4_proto) {
            (0, L4::Udp) => 0xffff,
            (c, _) => c,
        };
        put16(s, csum_at, c);
        emit(s).map_err(|source| SegmentError::Emit { index, source })?;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{EgressTag, EthernetFrame};
    use etherparse::{
        EtherType, Ethernet2Header, IpEcn, IpNumber, Ipv4Header, Ipv4Options, Ipv6FlowLabel,
        Ipv6Header, LinkExtHeader, NetHeaders, PacketHeaders, SingleVlanHeader, TcpHeader,
        TransportHeader, UdpHeader, VlanId, VlanPcp,
    };
    use proptest::prelude::*;

    const SRC4: [u8; 4] = [10, 0, 0, 1];
    const DST4: [u8; 4] = [10, 0, 0, 2];
    const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const DST6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    /// What a test frame holds.
    #[derive(Debug, Clone)]
    struct Spec {
        v6: bool,
        udp: bool,
        /// VIDs of the VLAN tags, outermost first.
        tags: Vec<u16>,
        /// IPv4 option words (4 bytes each, NOPs then an end-of-list).
        ip_opts: usize,
        /// TCP option words (NOPs).
        tcp_opts: usize,
        seq: u32,
        id: u16,
        fin: bool,
        psh: bool,
        cwr: bool,
        ecn: u8,
        payload: Vec<u8>,
    }

    impl Spec {
        fn tcp4(payload_len: usize) -> Spec {
            Spec {
                v6: false,
                udp: false,
                tags: vec![],
                ip_opts: 0,
                tcp_opts: 3,
                seq: 1_000_000,
                id: 0x4242,
                fin: true,
                psh: true,
                cwr: true,
                ecn: 2,
                payload: payload(payload_len, 7),
            }
        }

        fn gso_type(&self) -> u8 {
            match (self.udp, self.v6) {
                (true, _) => GSO_UDP_L4,
                (false, false) => GSO_TCPV4,
                (false, true) => GSO_TCPV6,
            }
        }

        fn hdr(&self, gso_size: u16) -> VnetHdr {
            let h = headers(&build(self)).unwrap();
            VnetHdr {
                flags: VnetHdr::F_NEEDS_CSUM,
                gso_type: self.gso_type(),
                hdr_len: h.payload as u16,
                gso_size,
                csum_start: h.l4 as u16,
                csum_offset: if self.udp { 6 } else { 16 },
            }
        }
    }

    fn payload(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
            .collect()
    }

    /// A naive RFC 1071 sum, word by word with a carry fold each step: independent of the
    /// module's.
    fn naive_sum(words: impl IntoIterator<Item = u16>) -> u16 {
        let mut s = 0u32;
        for w in words {
            s += u32::from(w);
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    fn words(b: &[u8]) -> Vec<u16> {
        b.chunks(2)
            .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
            .collect()
    }

    /// The folded pseudo-header sum a kernel leaves in a partial checksum field.
    fn pseudo(spec: &Spec, l4_len: usize) -> u16 {
        let proto = if spec.udp { 17u16 } else { 6 };
        let w = if spec.v6 {
            let mut w = words(&SRC6);
            w.extend(words(&DST6));
            w.extend([(l4_len >> 16) as u16, l4_len as u16, 0, proto]);
            w
        } else {
            let mut w = words(&SRC4);
            w.extend(words(&DST4));
            w.extend([proto, l4_len as u16]);
            w
        };
        naive_sum(w)
    }

    /// The frame as a kernel hands it over: lengths for the whole super-frame, the transport
    /// checksum partial (the pseudo-header sum).
    fn build(spec: &Spec) -> Vec<u8> {
        let l4_hdr = if spec.udp { 8 } else { 20 + 4 * spec.tcp_opts };
        let l4_len = l4_hdr + spec.payload.len();
        let ip_type = if spec.v6 {
            EtherType::IPV6
        } else {
            EtherType::IPV4
        };
        let mut out = Vec::new();
        let tpid = |i: usize| {
            if spec.tags.len() == 2 && i == 0 {
                EtherType::PROVIDER_BRIDGING
            } else {
                EtherType::VLAN_TAGGED_FRAME
            }
        };
        Ethernet2Header {
            source: [2, 0, 0, 0, 0, 1],
            destination: [2, 0, 0, 0, 0, 2],
            ether_type: if spec.tags.is_empty() {
                ip_type
            } else {
                tpid(0)
            },
        }
        .write(&mut out)
        .unwrap();
        for (i, vid) in spec.tags.iter().enumerate() {
            SingleVlanHeader {
                pcp: VlanPcp::try_new(5).unwrap(),
                drop_eligible_indicator: false,
                vlan_id: VlanId::try_new(*vid).unwrap(),
                ether_type: if i + 1 == spec.tags.len() {
                    ip_type
                } else {
                    tpid(i + 1)
                },
            }
            .write(&mut out)
            .unwrap();
        }
        let proto = if spec.udp {
            IpNumber::UDP
        } else {
            IpNumber::TCP
        };
        if spec.v6 {
            Ipv6Header {
                traffic_class: spec.ecn,
                flow_label: Ipv6FlowLabel::ZERO,
                payload_length: l4_len as u16,
                next_header: proto,
                hop_limit: 64,
                source: SRC6,
                destination: DST6,
            }
            .write(&mut out)
            .unwrap();
        } else {
            let mut ip = Ipv4Header::new(0, 64, proto, SRC4, DST4).unwrap();
            let mut opts = vec![1u8; 4 * spec.ip_opts];
            if let Some(last) = opts.last_mut() {
                *last = 0; // end of options list
            }
            ip.options = Ipv4Options::try_from(&opts[..]).unwrap();
            ip.set_payload_len(l4_len).unwrap();
            ip.identification = spec.id;
            ip.dont_fragment = true;
            ip.ecn = IpEcn::try_new(spec.ecn).unwrap();
            ip.header_checksum = ip.calc_header_checksum();
            ip.write(&mut out).unwrap();
        }
        if spec.udp {
            UdpHeader {
                source_port: 5000,
                destination_port: 53,
                length: l4_len as u16,
                checksum: pseudo(spec, l4_len),
            }
            .write(&mut out)
            .unwrap();
        } else {
            let mut tcp = TcpHeader::new(40000, 80, spec.seq, 512);
            tcp.ack = true;
            tcp.acknowledgment_number = 0x1234_5678;
            tcp.fin = spec.fin;
            tcp.psh = spec.psh;
            tcp.cwr = spec.cwr;
            tcp.ece = spec.ecn != 0;
            tcp.set_options_raw(&vec![1u8; 4 * spec.tcp_opts]).unwrap();
            tcp.checksum = pseudo(spec, l4_len);
            tcp.write(&mut out).unwrap();
        }
        out.extend_from_slice(&spec.payload);
        out
    }

    fn run(hdr: &VnetHdr, frame: &[u8], seg_len: usize) -> Result<Vec<Vec<u8>>> {
        let mut seg = vec![0u8; seg_len];
        let mut out = Vec::new();
        segment(hdr, frame, &mut seg, |s| {
            out.push(s.to_vec());
            Ok::<(), ()>(())
        })
        .map_err(|e| match e {
            SegmentError::Frame(e) => e,
            SegmentError::Emit { .. } => unreachable!("emit never fails here"),
        })?;
        Ok(out)
    }

    fn seg_all(spec: &Spec, gso_size: u16) -> Vec<Vec<u8>> {
        run(&spec.hdr(gso_size), &build(spec), 70_000).unwrap()
    }

    /// Checks `segs`, cut from `spec` at `gso_size`, with etherparse: they parse, keep their
    /// tags, carry fixed lengths and verifying checksums, consecutive sequence numbers, FIN and
    /// PSH on the last only, CWR on the first only, and their payloads make up the original.
    fn check(
        spec: &Spec,
        gso_size: u16,
        segs: &[Vec<u8>],
    ) -> core::result::Result<(), TestCaseError> {
        let mss = usize::from(gso_size);
        let count = spec.payload.len().div_ceil(mss).max(1);
        prop_assert_eq!(segs.len(), count);
        let hlen = headers(&build(spec)).unwrap().payload;
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let (first, last) = (i == 0, i + 1 == count);
            prop_assert!(s.len() <= hlen + mss, "segment {} is {} bytes", i, s.len());
            let p = PacketHeaders::from_ethernet_slice(s)
                .map_err(|e| TestCaseError::fail(format!("segment {i}: {e}")))?;
            let vids: Vec<u16> = p
                .link_exts
                .iter()
                .filter_map(|e| match e {
                    LinkExtHeader::Vlan(v) => Some(v.vlan_id.value()),
                    _ => None,
                })
                .collect();
            prop_assert_eq!(&vids, &spec.tags);
            let payload = p.payload.slice();
            let l3 = 14 + 4 * spec.tags.len();
            match (p.net, p.transport) {
                (Some(NetHeaders::Ipv4(ip, _)), Some(t)) => {
                    prop_assert!(!spec.v6);
                    prop_assert_eq!(usize::from(ip.total_len), s.len() - l3);
                    prop_assert_eq!(ip.header_checksum, ip.calc_header_checksum());
                    prop_assert_eq!(ip.identification, spec.id.wrapping_add(i as u16));
                    prop_assert_eq!(ip.ecn.value(), spec.ecn);
                    prop_assert_eq!(ip.options.len(), 4 * spec.ip_opts);
                    match t {
                        TransportHeader::Tcp(tcp) => {
                            prop_assert_eq!(
                                tcp.checksum,
                                tcp.calc_checksum_ipv4(&ip, payload).unwrap()
                            );
                            check_tcp(spec, &tcp, i, mss, first, last)?;
                        }
                        TransportHeader::Udp(udp) => {
                            prop_assert!(spec.udp);
                            prop_assert_eq!(usize::from(udp.length), 8 + payload.len());
                            prop_assert_eq!(
                                udp.checksum,
                                udp.calc_checksum_ipv4(&ip, payload).unwrap()
                            );
                        }
                        _ => prop_assert!(false, "not TCP or UDP"),
                    }
                }
                (Some(NetHeaders::Ipv6(ip, _)), Some(t)) => {
                    prop_assert!(spec.v6);
                    prop_assert_eq!(usize::from(ip.payload_length), s.len() - l3 - 40);
                    prop_assert_eq!(ip.traffic_class, spec.ecn);
                    match t {
                        TransportHeader::Tcp(tcp) => {
                            prop_assert_eq!(
                                tcp.checksum,
                                tcp.calc_checksum_ipv6(&ip, payload).unwrap()
                            );
                            check_tcp(spec, &tcp, i, mss, first, last)?;
                        }
                        TransportHeader::Udp(udp) => {
                            prop_assert!(spec.udp);
                            prop_assert_eq!(usize::from(udp.length), 8 + payload.len());
                            prop_assert_eq!(
                                udp.checksum,
                                udp.calc_checksum_ipv6(&ip, payload).unwrap()
                            );
                        }
                        _ => prop_assert!(false, "not TCP or UDP"),
                    }
                }
                _ => prop_assert!(false, "segment {} is not IP with a transport header", i),
            }
            if !last {
                prop_assert_eq!(payload.len(), mss);
            }
            joined.extend_from_slice(payload);
        }
        prop_assert!(joined == spec.payload, "payloads differ");
        Ok(())
    }

    fn check_tcp(
        spec: &Spec,
        tcp: &TcpHeader,
        i: usize,
        mss: usize,
        first: bool,
        last: bool,
    ) -> core::result::Result<(), TestCaseError> {
        prop_assert!(!spec.udp);
        prop_assert_eq!(tcp.sequence_number, spec.seq.wrapping_add((i * mss) as u32));
        prop_assert_eq!(tcp.acknowledgment_number, 0x1234_5678);
        prop_assert!(tcp.ack);
        prop_assert_eq!(tcp.fin, spec.fin && last);
        prop_assert_eq!(tcp.psh, spec.psh && last);
        prop_assert_eq!(tcp.cwr, spec.cwr && first);
        prop_assert_eq!(tcp.ece, spec.ecn != 0);
        prop_assert_eq!(tcp.options.len(), 4 * spec.tcp_opts);
        Ok(())
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2.
        let b = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&b)), 0xddf2);
        assert_eq!(internet_checksum(&b), !0xddf2);
        // An odd length pads with a zero byte.
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
        assert_eq!(internet_checksum(&[]), 0xffff);
    }

    #[test]
    fn tcpv4_segments() {
        let spec = Spec::tcp4(10_000);
        let segs = seg_all(&spec, 1448);
        assert_eq!(segs.len(), 7);
        check(&spec, 1448, &segs).unwrap();
    }

    #[test]
    fn tcpv6_segments() {
        let spec = Spec {
            v6: true,
            ..Spec::tcp4(65_000)
        };
        let segs = seg_all(&spec, 1428);
        assert_eq!(segs.len(), 46);
        check(&spec, 1428, &segs).unwrap();
    }

    #[test]
    fn sequence_numbers_wrap() {
        let spec = Spec {
            seq: u32::MAX - 100,
            ..Spec::tcp4(3000)
        };
        check(&spec, 1000, &seg_all(&spec, 1000)).unwrap();
    }

    #[test]
    fn tagged_frames_keep_their_tags() {
        for tags in [vec![10], vec![100, 10]] {
            for v6 in [false, true] {
                let spec = Spec {
                    tags: tags.clone(),
                    v6,
                    ..Spec::tcp4(5000)
                };
                let segs = seg_all(&spec, 1448);
                check(&spec, 1448, &segs).unwrap();
                let head = &build(&spec)[..12 + 4 * tags.len()];
                assert!(segs.iter().all(|s| s.starts_with(head)));
            }
        }
    }

    #[test]
    fn ipv4_and_tcp_options() {
        for (ip_opts, tcp_opts) in [(1, 0), (10, 10), (5, 3)] {
            let spec = Spec {
                ip_opts,
                tcp_opts,
                ..Spec::tcp4(4000)
            };
            check(&spec, 536, &seg_all(&spec, 536)).unwrap();
        }
    }

    #[test]
    fn udp_l4_segments_are_datagrams() {
        for v6 in [false, true] {
            let spec = Spec {
                udp: true,
                v6,
                tags: vec![20],
                ..Spec::tcp4(8000)
            };
            let segs = seg_all(&spec, 1400);
            assert_eq!(segs.len(), 6);
            check(&spec, 1400, &segs).unwrap();
        }
    }

    #[test]
    fn payload_that_fits_one_segment_and_no_payload() {
        for len in [0, 1, 1448] {
            let spec = Spec::tcp4(len);
            let segs = seg_all(&spec, 1448);
            assert_eq!(segs.len(), 1);
            check(&spec, 1448, &segs).unwrap();
        }
    }

    #[test]
    fn ecn_flag_changes_nothing() {
        let spec = Spec::tcp4(5000);
        let mut hdr = spec.hdr(1000);
        let plain = run(&hdr, &build(&spec), 2000).unwrap();
        hdr.gso_type |= GSO_ECN;
        assert_eq!(run(&hdr, &build(&spec), 2000).unwrap(), plain);
    }

    #[test]
    fn hdr_len_is_not_trusted() {
        let spec = Spec::tcp4(5000);
        let frame = build(&spec);
        let hdr = spec.hdr(1000);
        let truth = run(&hdr, &frame, 2000).unwrap();
        for hdr_len in [0, 1, 54, 1000, u16::MAX] {
            let lying = VnetHdr { hdr_len, ..hdr };
            assert_eq!(
                run(&lying, &frame, 2000).unwrap(),
                truth,
                "hdr_len {hdr_len}"
            );
        }
        // Nor are csum_start and csum_offset, nor the flag: GSO checksums are computed whole.
        let lying = VnetHdr {
            csum_start: 9999,
            csum_offset: 9999,
            flags: 0,
            ..hdr
        };
        assert_eq!(run(&lying, &frame, 2000).unwrap(), truth);
    }

    #[test]
    fn the_segment_buffer_may_be_exactly_one_segment_long() {
        let spec = Spec::tcp4(3000);
        let frame = build(&spec);
        let h = headers(&frame).unwrap();
        let hdr = spec.hdr(1000);
        check(&spec, 1000, &run(&hdr, &frame, h.payload + 1000).unwrap()).unwrap();
        assert_eq!(
            run(&hdr, &frame, h.payload + 999),
            Err(GsoError::BufferTooSmall {
                need: h.payload + 1000,
                have: h.payload + 999
            })
        );
        // A payload shorter than gso_size needs only itself.
        let small = Spec::tcp4(10);
        let f = build(&small);
        assert_eq!(run(&small.hdr(1000), &f, f.len()).unwrap().len(), 1);
    }

    /// Verifies a completed checksum with etherparse's own computation.
    fn etherparse_checksum(frame: &[u8]) -> u16 {
        let p = PacketHeaders::from_ethernet_slice(frame).unwrap();
        let payload = p.payload.slice();
        match (p.net.unwrap(), p.transport.unwrap()) {
            (NetHeaders::Ipv4(ip, _), TransportHeader::Tcp(t)) => {
                t.calc_checksum_ipv4(&ip, payload)
            }
            (NetHeaders::Ipv6(ip, _), TransportHeader::Tcp(t)) => {
                t.calc_checksum_ipv6(&ip, payload)
            }
            (NetHeaders::Ipv4(ip, _), TransportHeader::Udp(u)) => {
                u.calc_checksum_ipv4(&ip, payload)
            }
            (NetHeaders::Ipv6(ip, _), TransportHeader::Udp(u)) => {
                u.calc_checksum_ipv6(&ip, payload)
            }
            _ => unreachable!(),
        }
        .unwrap()
    }

    fn completed(spec: &Spec) -> (u16, u16) {
        let mut frame = build(spec);
        let hdr = VnetHdr {
            gso_type: VnetHdr::GSO_NONE,
            gso_size: 0,
            ..spec.hdr(1)
        };
        complete_checksum(&hdr, &mut frame).unwrap();
        let at = usize::from(hdr.csum_start + hdr.csum_offset);
        let got = u16::from_be_bytes([frame[at], frame[at + 1]]);
        // 0 and 0xffff are the same one's-complement number; we write 0xffff, as Linux does.
        let want = match etherparse_checksum(&frame) {
            0 => 0xffff,
            c => c,
        };
        (got, want)
    }

    #[test]
    fn complete_checksum_matches_etherparse() {
        for udp in [false, true] {
            for v6 in [false, true] {
                for len in [0, 1, 2, 3, 100, 1461] {
                    let spec = Spec {
                        udp,
                        v6,
                        tags: vec![7],
                        ..Spec::tcp4(len)
                    };
                    let (got, want) = completed(&spec);
                    assert_eq!(got, want, "udp {udp} v6 {v6} len {len}");
                }
            }
        }
    }

    #[test]
    fn complete_checksum_without_the_flag_does_nothing() {
        let spec = Spec::tcp4(100);
        let mut frame = build(&spec);
        let before = frame.clone();
        let hdr = VnetHdr {
            flags: 0,
            ..spec.hdr(1)
        };
        complete_checksum(&hdr, &mut frame).unwrap();
        assert_eq!(frame, before);
    }

    #[test]
    fn gso_none_is_emitted_once_with_its_checksum_completed() {
        let spec = Spec::tcp4(300);
        let frame = build(&spec);
        let hdr = VnetHdr {
            gso_type: VnetHdr::GSO_NONE,
            ..spec.hdr(0)
        };
        let out = run(&hdr, &frame, 2000).unwrap();
        assert_eq!(out.len(), 1);
        let mut want = frame.clone();
        complete_checksum(&hdr, &mut want).unwrap();
        assert_eq!(out[0], want);
        let p = PacketHeaders::from_ethernet_slice(&out[0]).unwrap();
        let Some(TransportHeader::Tcp(t)) = p.transport else {
            panic!("not TCP")
        };
        assert_eq!(t.checksum, etherparse_checksum(&out[0]));
        // Not IP at all, no partial checksum: passed through as it is.
        let arp = [0xffu8; 60];
        let out = run(&VnetHdr::default(), &arp, 60).unwrap();
        assert_eq!(out, vec![arp.to_vec()]);
        assert_eq!(
            run(&VnetHdr::default(), &arp, 59),
            Err(GsoError::BufferTooSmall { need: 60, have: 59 })
        );
    }

    #[test]
    fn emit_errors_stop_segmentation() {
        let spec = Spec::tcp4(5000);
        let mut seg = [0u8; 2000];
        let mut n = 0;
        let r = segment(&spec.hdr(1000), &build(&spec), &mut seg, |_| {
            n += 1;
            if n == 3 {
                Err("ring full")
            } else {
                Ok(())
            }
        });
        assert!(matches!(
            r,
            Err(SegmentError::Emit {
                index: 2,
                source: "ring full"
            })
        ));
        assert_eq!(n, 3);
    }

    #[test]
    fn linearize_copies_the_pieces() {
        let spec = Spec::tcp4(100);
        let frame = build(&spec);
        let f = EthernetFrame::parse(&frame).unwrap();
        let e = EgressFrame::render(&f, 30, EgressTag::Tagged);
        let mut out = vec![0u8; 2000];
        let n = linearize(&e, &mut out).unwrap();
        assert_eq!(n, frame.len() + 4);
        assert_eq!(&out[..12], &frame[..12]);
        assert_eq!(&out[12..16], &[0x81, 0x00, 0x00, 30]);
        assert_eq!(&out[16..n], &frame[12..]);
        // The linearized tagged frame segments with its tag on every segment, and completes its
        // checksum with the header shifted by the tag.
        let tagged = Spec {
            tags: vec![30],
            ..spec.clone()
        };
        let mut want = build(&tagged);
        want[14] = 0; // rendered with PCP 0, built with PCP 5
        assert_eq!(&out[..n], &want[..]);
        let hdr = spec.hdr(40).shifted(4);
        check(&tagged, 40, &run(&hdr, &out[..n], 2000).unwrap()).unwrap();
        assert_eq!(
            linearize(&e, &mut out[..n - 1]),
            Err(GsoError::BufferTooSmall {
                need: n,
                have: n - 1
            })
        );
    }

    /// One refusal per rule: (what is wrong, the frame, the header, the error).
    #[test]
    fn refusals() {
        let tcp4 = Spec::tcp4(3000);
        let good = build(&tcp4);
        let hdr = tcp4.hdr(1000);
        let tcp6 = Spec {
            v6: true,
            ..tcp4.clone()
        };
        let udp4 = Spec {
            udp: true,
            ..tcp4.clone()
        };
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            b
        };
        let mut three_tags = good[..12].to_vec();
        for _ in 0..3 {
            three_tags.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
        }
        three_tags.extend_from_slice(&good[12..]);
        let mut hop_by_hop = build(&tcp6);
        hop_by_hop[14 + 6] = 0;
        let mut huge = good.clone();
        huge.resize(14 + 20 + 32 + 65_500, 0);
        let cases: Vec<(&str, Vec<u8>, VnetHdr, GsoError)> = vec![
            (
                "gso_size 0",
                good.clone(),
                VnetHdr { gso_size: 0, ..hdr },
                GsoError::ZeroGsoSize,
            ),
            (
                "UFO",
                build(&udp4),
                VnetHdr {
                    gso_type: GSO_UDP,
                    ..hdr
                },
                GsoError::UfoUnsupported,
            ),
            (
                "unknown type",
                good.clone(),
                VnetHdr { gso_type: 2, ..hdr },
                GsoError::UnknownGsoType { gso_type: 2 },
            ),
            (
                "TCPV4 on an IPv6 frame",
                build(&tcp6),
                hdr,
                GsoError::ProtocolMismatch {
                    gso_type: GSO_TCPV4,
                    expected: "TCP over IPv4",
                    found: "TCP over IPv6",
                },
            ),
            (
                "TCPV6 on a UDP frame",
                build(&udp4),
                VnetHdr {
                    gso_type: GSO_TCPV6 | GSO_ECN,
                    ..hdr
                },
                GsoError::ProtocolMismatch {
                    gso_type: GSO_TCPV6,
                    expected: "TCP over IPv6",
                    found: "UDP over IPv4",
                },
            ),
            (
                "UDP_L4 on a TCP frame",
                good.clone(),
                VnetHdr {
                    gso_type: GSO_UDP_L4,
                    ..hdr
                },
                GsoError::ProtocolMismatch {
                    gso_type: GSO_UDP_L4,
                    expected: "UDP",
                    found: "TCP over IPv4",
                },
            ),
            (
                "cut inside the TCP options",
                good[..14 + 20 + 25].to_vec(),
                hdr,
                GsoError::Truncated {
                    what: "TCP options",
                    len: 59,
                    need: 66,
                },
            ),
            (
                "cut inside the IPv4 header",
                good[..20].to_vec(),
                hdr,
                GsoError::Truncated {
                    what: "IPv4 header",
                    len: 20,
                    need: 34,
                },
            ),
            (
                "cut inside the tag",
                build(&Spec {
                    tags: vec![10],
                    ..tcp4.clone()
                })[..17]
                    .to_vec(),
                hdr,
                GsoError::Truncated {
                    what: "Ethernet header",
                    len: 17,
                    need: 18,
                },
            ),
            (
                "ARP",
                with(&|b| b[12..14].copy_from_slice(&[0x08, 0x06])),
                hdr,
                GsoError::NotIp { ethertype: 0x0806 },
            ),
            ("three tags", three_tags, hdr, GsoError::TooManyTags),
            (
                "IPv6 hop-by-hop options",
                hop_by_hop,
                VnetHdr {
                    gso_type: GSO_TCPV6,
                    ..hdr
                },
                GsoError::Ipv6Extension { next_header: 0 },
            ),
            (
                "IPv4 more-fragments",
                with(&|b| b[20] |= 0x20),
                hdr,
                GsoError::Ipv4Fragment { frag: 0x2000 },
            ),
            (
                "IHL 4",
                with(&|b| b[14] = 0x44),
                hdr,
                GsoError::Ipv4HeaderLen { len: 16 },
            ),
            (
                "IPv6 version under the IPv4 EtherType",
                with(&|b| b[14] = 0x65),
                hdr,
                GsoError::IpVersion {
                    version: 6,
                    ethertype: 0x0800,
                },
            ),
            (
                "TCP data offset 4",
                with(&|b| b[14 + 20 + 12] = 0x40),
                hdr,
                GsoError::TcpHeaderLen { len: 16 },
            ),
            (
                "ICMP",
                with(&|b| b[14 + 9] = 1),
                hdr,
                GsoError::NotTcpOrUdp { protocol: 1 },
            ),
            (
                "segments whose IPv4 length overflows 16 bits",
                huge,
                VnetHdr {
                    gso_size: u16::MAX,
                    ..hdr
                },
                GsoError::SegmentTooLong {
                    len: 20 + 32 + 65_500,
                },
            ),
            (
                "partial checksum beyond the frame",
                good.clone(),
                VnetHdr {
                    gso_type: VnetHdr::GSO_NONE,
                    csum_start: good.len() as u16 - 1,
                    csum_offset: 0,
                    ..hdr
                },
                GsoError::ChecksumOutOfFrame {
                    start: good.len() as u16 - 1,
                    offset: 0,
                    len: good.len(),
                },
            ),
        ];
        for (what, frame, hdr, want) in cases {
            assert_eq!(run(&hdr, &frame, 70_000), Err(want), "{what}");
            // Every message names what is wrong.
            assert!(!want.to_string().is_empty());
        }
    }

    fn spec() -> impl Strategy<Value = Spec> {
        (
            (any::<bool>(), any::<bool>()),
            proptest::collection::vec(1u16..4095, 0..=2),
            (0usize..=10, 0usize..=10),
            (any::<u32>(), any::<u16>()),
            (any::<bool>(), any::<bool>(), any::<bool>(), 0u8..4),
            (1usize..=65_000, any::<u8>()),
        )
            .prop_map(
                |(
                    (v6, udp),
                    tags,
                    (ip_opts, tcp_opts),
                    (seq, id),
                    (fin, psh, cwr, ecn),
                    (len, seed),
                )| {
                    Spec {
                        v6,
                        udp,
                        tags,
                        ip_opts: if v6 { 0 } else { ip_opts },
                        tcp_opts: if udp { 0 } else { tcp_opts },
                        seq,
                        id,
                        fin: fin && !udp,
                        psh: psh && !udp,
                        cwr: cwr && !udp,
                        ecn,
                        payload: payload(len, seed),
                    }
                },
            )
    }

    fn gso_type() -> impl Strategy<Value = u8> {
        prop_oneof![
            Just(VnetHdr::GSO_NONE),
            Just(GSO_TCPV4),
            Just(GSO_UDP),
            Just(GSO_TCPV6),
            Just(GSO_UDP_L4),
            Just(GSO_TCPV4 | GSO_ECN),
            any::<u8>(),
        ]
    }

    fn vnet_hdr() -> impl Strategy<Value = VnetHdr> {
        (
            any::<u8>(),
            gso_type(),
            any::<u16>(),
            prop_oneof![0u16..3000, any::<u16>()],
            prop_oneof![0u16..200, any::<u16>()],
            prop_oneof![0u16..20, any::<u16>()],
        )
            .prop_map(
                |(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)| VnetHdr {
                    flags,
                    gso_type,
                    hdr_len,
                    gso_size,
                    csum_start,
                    csum_offset,
                },
            )
    }

    /// Whatever the input, `segment` and `complete_checksum` return, and what they emit fits
    /// the buffer, is no longer than headers + gso_size, and carries the whole payload.
    fn hostile(
        hdr: &VnetHdr,
        frame: &[u8],
        seg_len: usize,
    ) -> core::result::Result<(), TestCaseError> {
        let mut seg = vec![0u8; seg_len];
        let mut lens = Vec::new();
        let r = segment(hdr, frame, &mut seg, |s| {
            lens.push(s.len());
            Ok::<(), ()>(())
        });
        if let Ok(n) = r {
            prop_assert_eq!(n, lens.len());
            prop_assert!(lens.iter().all(|l| *l <= seg_len));
            if hdr.gso_type & !GSO_ECN != VnetHdr::GSO_NONE {
                let h = headers(frame).unwrap();
                let mss = usize::from(hdr.gso_size);
                prop_assert!(lens.iter().all(|l| *l <= h.payload + mss));
                let carried: usize = lens.iter().map(|l| l - h.payload).sum();
                prop_assert_eq!(carried, frame.len() - h.payload);
            }
        } else {
            prop_assert!(lens.is_empty(), "emitted before refusing");
        }
        let mut copy = frame.to_vec();
        let _ = complete_checksum(hdr, &mut copy);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// Random frames, options, tags and sizes: every property of `check`, and the segment
        /// count is ceil(payload / gso_size).
        #[test]
        fn segments_are_what_etherparse_expects(spec in spec(), gso_size in 1u16..=9000) {
            let frame = build(&spec);
            let segs = run(&spec.hdr(gso_size), &frame, 9000 + 200).unwrap();
            prop_assert_eq!(segs.len(), spec.payload.len().div_ceil(usize::from(gso_size)));
            check(&spec, gso_size, &segs)?;
        }

        /// `complete_checksum` gives what etherparse computes, for TCP and UDP on both IPs.
        #[test]
        fn completed_checksums_verify(mut spec in spec(), len in 0usize..3000) {
            spec.payload.truncate(len);
            let (got, want) = completed(&spec);
            prop_assert_eq!(got, want);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary bytes behind an arbitrary header: no panic, sane output.
        #[test]
        fn arbitrary_bytes_never_panic(
            hdr in vnet_hdr(),
            frame in proptest::collection::vec(any::<u8>(), 0..300),
            seg_len in 0usize..400,
        ) {
            hostile(&hdr, &frame, seg_len)?;
        }

        /// Valid frames cut short, with bytes flipped, and lying headers: no panic, sane output.
        #[test]
        fn damaged_frames_never_panic(
            spec in spec(),
            hdr in vnet_hdr(),
            cut in any::<prop::sample::Index>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            seg_len in 0usize..3000,
            true_type in any::<bool>(),
        ) {
            let mut frame = build(&spec);
            // Half the time the type matches the frame, so the damage meets the segmenter.
            let hdr = if true_type {
                VnetHdr { gso_type: spec.gso_type(), ..hdr }
            } else {
                hdr
            };
            frame.truncate(200.min(frame.len()));
            let keep = cut.index(frame.len() + 1);
            frame.truncate(keep);
            for (at, x) in flips {
                if !frame.is_empty() {
                    let i = at.index(frame.len());
                    frame[i] ^= x;
                }
            }
            hostile(&hdr, &frame, seg_len)?;
        }
    }
}
