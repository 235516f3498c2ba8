//! Fuzzes software segmentation and checksum completion with hostile headers and bytes.
//!
//! The input's first 10 bytes are a `virtio_net_hdr` (its GSO type nudged towards the types
//! `segment` handles, so the fuzzer reaches the segmenter), the next 2 the size of the segment
//! buffer; the rest is the frame. For every input: nothing panics; an error means nothing was
//! emitted; every segment fits the buffer and is no longer than the headers plus `gso_size`;
//! the segments carry the whole payload; a partial checksum is completed or refused.
//!
//! Run: `cargo fuzz run gso` (in this directory; see tests/README.md).
#![no_main]

use dataplane::gso::{complete_checksum, headers, segment, GSO_ECN};
use dataplane::wire::VnetHdr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < VnetHdr::LEN + 2 {
        return;
    }
    let (h, rest) = data.split_at(VnetHdr::LEN);
    let mut hdr = VnetHdr::from_bytes(h.try_into().expect("10 bytes"));
    // Mostly the types there are (NONE, TCPV4, UDP, TCPV6, UDP_L4), sometimes anything.
    if hdr.gso_type & 0x40 == 0 {
        hdr.gso_type =
            [0, 1, 3, 4, 5][usize::from(hdr.gso_type & 0x3f) % 5] | (hdr.gso_type & GSO_ECN);
    }
    let seg_len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
    let frame = &rest[2..];

    let mut seg = vec![0u8; seg_len];
    let mut lens = Vec::new();
    match segment(&hdr, frame, &mut seg, |s| {
        lens.push(s.len());
        Ok::<(), ()>(())
    }) {
        Ok(n) => {
            assert_eq!(n, lens.len());
            assert!(
                lens.iter().all(|l| *l <= seg_len),
                "segment beyond the buffer"
            );
            if hdr.gso_type & !GSO_ECN != VnetHdr::GSO_NONE {
                let h = headers(frame).expect("segmented, so the headers parse");
                let mss = usize::from(hdr.gso_size);
                assert!(
                    lens.iter().all(|l| *l <= h.payload + mss),
                    "segment too long"
                );
                let carried: usize = lens.iter().map(|l| l - h.payload).sum();
                assert_eq!(
                    carried,
                    frame.len() - h.payload,
                    "payload lost or duplicated"
                );
            } else {
                assert_eq!(lens, [frame.len()]);
            }
        }
        Err(_) => assert!(lens.is_empty(), "emitted before refusing"),
    }

    let mut copy = frame.to_vec();
    if complete_checksum(&hdr, &mut copy).is_ok() && hdr.flags & VnetHdr::F_NEEDS_CSUM == 0 {
        assert_eq!(copy, frame, "changed a frame without a partial checksum");
    }
});
