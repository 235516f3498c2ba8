//! virtio-net feature bits, what a negotiation means for the data path, the virtio-net header
//! in both its forms, and the device config space.

use virtio_bindings::virtio_config::{VIRTIO_F_NOTIFY_ON_EMPTY, VIRTIO_F_VERSION_1};
use virtio_bindings::virtio_net as vn;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};

use crate::error::Offload;

const fn bit(n: u32) -> u64 {
    1u64 << n
}

/// `VIRTIO_F_VERSION_1`.
pub const F_VERSION_1: u64 = bit(VIRTIO_F_VERSION_1);
/// `VIRTIO_NET_F_CSUM`: the guest may send partial checksums.
pub const F_CSUM: u64 = bit(vn::VIRTIO_NET_F_CSUM);
/// `VIRTIO_NET_F_GUEST_CSUM`: the guest takes partial checksums.
pub const F_GUEST_CSUM: u64 = bit(vn::VIRTIO_NET_F_GUEST_CSUM);
/// `VIRTIO_NET_F_MTU`: the config space has an MTU.
pub const F_MTU: u64 = bit(vn::VIRTIO_NET_F_MTU);
/// `VIRTIO_NET_F_MAC`: the config space has a MAC.
pub const F_MAC: u64 = bit(vn::VIRTIO_NET_F_MAC);
/// `VIRTIO_NET_F_GUEST_TSO4`.
pub const F_GUEST_TSO4: u64 = bit(vn::VIRTIO_NET_F_GUEST_TSO4);
/// `VIRTIO_NET_F_GUEST_TSO6`.
pub const F_GUEST_TSO6: u64 = bit(vn::VIRTIO_NET_F_GUEST_TSO6);
/// `VIRTIO_NET_F_GUEST_ECN`.
pub const F_GUEST_ECN: u64 = bit(vn::VIRTIO_NET_F_GUEST_ECN);
/// `VIRTIO_NET_F_GUEST_UFO` (never offered).
pub const F_GUEST_UFO: u64 = bit(vn::VIRTIO_NET_F_GUEST_UFO);
/// `VIRTIO_NET_F_HOST_TSO4`.
pub const F_HOST_TSO4: u64 = bit(vn::VIRTIO_NET_F_HOST_TSO4);
/// `VIRTIO_NET_F_HOST_TSO6`.
pub const F_HOST_TSO6: u64 = bit(vn::VIRTIO_NET_F_HOST_TSO6);
/// `VIRTIO_NET_F_HOST_ECN`.
pub const F_HOST_ECN: u64 = bit(vn::VIRTIO_NET_F_HOST_ECN);
/// `VIRTIO_NET_F_MRG_RXBUF`: a received frame may span several buffers.
pub const F_MRG_RXBUF: u64 = bit(vn::VIRTIO_NET_F_MRG_RXBUF);
/// `VIRTIO_NET_F_STATUS`: the config space has a link status.
pub const F_STATUS: u64 = bit(vn::VIRTIO_NET_F_STATUS);
/// `VIRTIO_F_ANY_LAYOUT` (legacy): any split of header and data over descriptors.
pub const F_ANY_LAYOUT: u64 = bit(27);
/// `VIRTIO_F_NOTIFY_ON_EMPTY` (legacy).
pub const F_NOTIFY_ON_EMPTY: u64 = bit(VIRTIO_F_NOTIFY_ON_EMPTY);
/// `VIRTIO_RING_F_INDIRECT_DESC`.
pub const F_INDIRECT_DESC: u64 = bit(VIRTIO_RING_F_INDIRECT_DESC);
/// `VIRTIO_RING_F_EVENT_IDX`.
pub const F_EVENT_IDX: u64 = bit(VIRTIO_RING_F_EVENT_IDX);
/// `VHOST_USER_F_PROTOCOL_FEATURES`.
pub const F_PROTOCOL_FEATURES: u64 = bit(30);

/// Features every device offers; [`F_MAC`] and [`F_MTU`] are added when configured.
pub const OFFERED_FEATURES: u64 = F_VERSION_1
    | F_CSUM
    | F_GUEST_CSUM
    | F_GUEST_TSO4
    | F_GUEST_TSO6
    | F_GUEST_ECN
    | F_HOST_TSO4
    | F_HOST_TSO6
    | F_HOST_ECN
    | F_MRG_RXBUF
    | F_STATUS
    | F_ANY_LAYOUT
    | F_NOTIFY_ON_EMPTY
    | F_INDIRECT_DESC
    | F_EVENT_IDX
    | F_PROTOCOL_FEATURES;

/// What a set of acknowledged features means for the data path, computed once per snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Negotiated {
    pub features: u64,
    /// Bytes of virtio-net header in front of every frame in the rings: 12 or 10.
    pub hdr_len: usize,
    pub version_1: bool,
    pub mrg_rxbuf: bool,
    pub event_idx: bool,
    pub indirect: bool,
    pub notify_on_empty: bool,
    pub guest_csum: bool,
    pub guest_tso4: bool,
    pub guest_tso6: bool,
    pub guest_ecn: bool,
    pub guest_ufo: bool,
}

impl Negotiated {
    pub fn new(features: u64) -> Self {
        let has = |f: u64| features & f != 0;
        let version_1 = has(F_VERSION_1);
        let mrg_rxbuf = has(F_MRG_RXBUF);
        Negotiated {
            features,
            hdr_len: if version_1 || mrg_rxbuf { 12 } else { 10 },
            version_1,
            mrg_rxbuf,
            event_idx: has(F_EVENT_IDX),
            indirect: has(F_INDIRECT_DESC),
            notify_on_empty: has(F_NOTIFY_ON_EMPTY),
            guest_csum: has(F_GUEST_CSUM),
            guest_tso4: has(F_GUEST_TSO4),
            guest_tso6: has(F_GUEST_TSO6),
            guest_ecn: has(F_GUEST_ECN),
            guest_ufo: has(F_GUEST_UFO),
        }
    }

    /// Whether the guest can take a frame with this (native-endian) header as it is.
    pub fn check_offloads(&self, hdr: &VnetHdr) -> Result<(), Offload> {
        if hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 && !self.guest_csum {
            return Err(Offload::Checksum);
        }
        let gso = hdr.gso_type & !VIRTIO_NET_HDR_GSO_ECN;
        match gso {
            VIRTIO_NET_HDR_GSO_NONE => {}
            VIRTIO_NET_HDR_GSO_TCPV4 if !self.guest_tso4 => return Err(Offload::Tso4),
            VIRTIO_NET_HDR_GSO_TCPV6 if !self.guest_tso6 => return Err(Offload::Tso6),
            VIRTIO_NET_HDR_GSO_UDP if !self.guest_ufo => return Err(Offload::Ufo),
            VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_TCPV6 | VIRTIO_NET_HDR_GSO_UDP => {}
            other => return Err(Offload::UnknownGso(other)),
        }
        if hdr.gso_type & VIRTIO_NET_HDR_GSO_ECN != 0 && !self.guest_ecn {
            return Err(Offload::Ecn);
        }
        Ok(())
    }
}

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: `csum_start`/`csum_offset` name a partial checksum.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = vn::VIRTIO_NET_HDR_F_NEEDS_CSUM as u8;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was verified.
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = vn::VIRTIO_NET_HDR_F_DATA_VALID as u8;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = vn::VIRTIO_NET_HDR_GSO_NONE as u8;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = vn::VIRTIO_NET_HDR_GSO_TCPV4 as u8;
/// `VIRTIO_NET_HDR_GSO_UDP`.
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = vn::VIRTIO_NET_HDR_GSO_UDP as u8;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = vn::VIRTIO_NET_HDR_GSO_TCPV6 as u8;
/// `VIRTIO_NET_HDR_GSO_ECN` (a flag on top of the type).
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = vn::VIRTIO_NET_HDR_GSO_ECN as u8;

/// The 10-byte `virtio_net_hdr` as fields. The switch's internal form is these fields in
/// native byte order, packed as in the C struct; the guest's form is little endian (legacy
/// guests: guest-native, which on the hosts this runs on is little endian too) followed, in the
/// 12-byte form, by `num_buffers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`.
    pub gso_type: u8,
    /// Length of the headers to copy into each segment.
    pub hdr_len: u16,
    /// Maximum segment payload.
    pub gso_size: u16,
    /// Where checksumming starts.
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Fields of the switch's internal, native-endian 10-byte header.
    pub fn from_ne_bytes(b: &[u8; 10]) -> Self {
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

    /// The switch's internal, native-endian 10-byte header.
    pub fn to_ne_bytes(&self) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// The fields of the guest's header (its first 10 bytes, little endian).
    pub(crate) fn from_guest(b: &[u8; 12]) -> Self {
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        }
    }

    /// The guest's 12-byte form with `num_buffers`; the 10-byte form is its prefix.
    pub(crate) fn to_guest(self, num_buffers: u16) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b[10..12].copy_from_slice(&num_buffers.to_le_bytes());
        b
    }
}

/// `VIRTIO_NET_S_LINK_UP`.
const VIRTIO_NET_S_LINK_UP: u16 = 1;

/// The virtio-net config space (`struct virtio_net_config`) as this device shows it: MAC at 0,
/// status at 6, max_virtqueue_pairs (1) at 8, MTU at 10; the rest of the 256 bytes reads zero.
pub(crate) fn config_space(mac: Option<[u8; 6]>, mtu: Option<u16>) -> [u8; 256] {
    let mut c = [0u8; 256];
    if let Some(mac) = mac {
        c[0..6].copy_from_slice(&mac);
    }
    c[6..8].copy_from_slice(&VIRTIO_NET_S_LINK_UP.to_le_bytes());
    c[8..10].copy_from_slice(&1u16.to_le_bytes());
    c[10..12].copy_from_slice(&mtu.unwrap_or(0).to_le_bytes());
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_length_follows_version_1_and_mrg_rxbuf() {
        assert_eq!(Negotiated::new(0).hdr_len, 10);
        assert_eq!(Negotiated::new(F_MRG_RXBUF).hdr_len, 12);
        assert_eq!(Negotiated::new(F_VERSION_1).hdr_len, 12);
    }

    #[test]
    fn offload_checks_name_the_missing_feature() {
        let none = Negotiated::new(F_VERSION_1);
        let tso = VnetHdr {
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            ..Default::default()
        };
        assert_eq!(none.check_offloads(&tso), Err(Offload::Tso4));
        let csum = VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            ..Default::default()
        };
        assert_eq!(none.check_offloads(&csum), Err(Offload::Checksum));
        let all = Negotiated::new(OFFERED_FEATURES);
        assert_eq!(all.check_offloads(&tso), Ok(()));
        assert_eq!(all.check_offloads(&csum), Ok(()));
        let ufo = VnetHdr {
            gso_type: VIRTIO_NET_HDR_GSO_UDP,
            ..Default::default()
        };
        assert_eq!(all.check_offloads(&ufo), Err(Offload::Ufo));
    }

    #[test]
    fn header_round_trips_through_both_forms() {
        let h = VnetHdr {
            flags: 1,
            gso_type: 4,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::from_ne_bytes(&h.to_ne_bytes()), h);
        let g = h.to_guest(3);
        assert_eq!(VnetHdr::from_guest(&g), h);
        assert_eq!(&g[10..12], &3u16.to_le_bytes());
    }
}
