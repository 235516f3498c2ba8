//! The pcapng blocks a capture stream is made of (the pcapng draft, IETF opsawg): a section
//! header, one interface per captured direction, enhanced packet blocks, and interface
//! statistics at the end carrying the frames the capture lost. tcpdump, tshark and Wireshark
//! read it, also from a pipe while it streams. Pure byte layout, little-endian.

/// LINKTYPE_ETHERNET.
const LINKTYPE_ETHERNET: u16 = 1;

/// Appends a block of `kind` with `body` (padded to 32 bits) and its two length fields.
fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
    let pad = (4 - body.len() % 4) % 4;
    let total = (12 + body.len() + pad) as u32;
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&[0; 3][..pad]);
    out.extend_from_slice(&total.to_le_bytes());
}

/// Appends option `code` with `value` (padded), to an options list.
fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    out.extend_from_slice(&[0; 3][..(4 - value.len() % 4) % 4]);
}

/// Ends an options list (opt_endofopt).
fn end_of_options(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0; 4]);
}

/// The section header block, with `app` as the writing application (shb_userappl).
pub fn section_header(out: &mut Vec<u8>, app: &str) {
    let mut b = Vec::new();
    b.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&u64::MAX.to_le_bytes()); // section length: not known
    option(&mut b, 4, app.as_bytes());
    end_of_options(&mut b);
    block(out, 0x0A0D_0D0A, &b);
}

/// An interface description block: Ethernet, `snaplen`, named `name`, nanosecond timestamps.
pub fn interface(out: &mut Vec<u8>, name: &str, snaplen: u32) {
    let mut b = Vec::new();
    b.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&snaplen.to_le_bytes());
    option(&mut b, 2, name.as_bytes()); // if_name
    option(&mut b, 9, &[9]); // if_tsresol: 10^-9 s
    end_of_options(&mut b);
    block(out, 1, &b);
}

/// An enhanced packet block: `data` (the first bytes of a frame `len` long) seen on
/// interface `iface` at `at_ns` nanoseconds since the epoch.
pub fn packet(out: &mut Vec<u8>, iface: u32, at_ns: u64, len: u32, data: &[u8]) {
    let mut b = Vec::with_capacity(20 + data.len() + 3);
    b.extend_from_slice(&iface.to_le_bytes());
    b.extend_from_slice(&((at_ns >> 32) as u32).to_le_bytes());
    b.extend_from_slice(&(at_ns as u32).to_le_bytes());
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(data);
    block(out, 6, &b);
}

/// An interface statistics block for `iface` at `at_ns`: `received` frames captured,
/// `dropped` not captured (isb_ifrecv, isb_ifdrop), with `comment`.
pub fn statistics(
    out: &mut Vec<u8>,
    iface: u32,
    at_ns: u64,
    received: u64,
    dropped: u64,
    comment: &str,
) {
    let mut b = Vec::new();
    b.extend_from_slice(&iface.to_le_bytes());
    b.extend_from_slice(&((at_ns >> 32) as u32).to_le_bytes());
    b.extend_from_slice(&(at_ns as u32).to_le_bytes());
    option(&mut b, 1, comment.as_bytes()); // opt_comment
    option(&mut b, 4, &received.to_le_bytes()); // isb_ifrecv
    option(&mut b, 5, &dropped.to_le_bytes()); // isb_ifdrop
    end_of_options(&mut b);
    block(out, 5, &b);
}

/// Walks whole blocks at the start of `buf`: calls `f(kind, body)` for each and returns how
/// many bytes they took (a partial block at the end is left). A length that cannot be a block
/// is an error. For readers of a stream, such as `switchctl capture`.
pub fn blocks(buf: &[u8], mut f: impl FnMut(u32, &[u8])) -> Result<usize, String> {
    let mut at = 0;
    while buf.len() - at >= 12 {
        let word = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let (kind, total) = (word(at), word(at + 4) as usize);
        if total < 12 || total % 4 != 0 {
            return Err(format!("a pcapng block of {total} bytes at offset {at}"));
        }
        if buf.len() - at < total {
            break;
        }
        f(kind, &buf[at + 8..at + total - 4]);
        at += total;
    }
    Ok(at)
}

/// The isb_ifdrop of an interface statistics block's body, if it has one.
pub fn dropped_of(body: &[u8]) -> Option<u64> {
    let mut at = 12;
    while at + 4 <= body.len() {
        let code = u16::from_le_bytes([body[at], body[at + 1]]);
        let len = usize::from(u16::from_le_bytes([body[at + 2], body[at + 3]]));
        let value = body.get(at + 4..at + 4 + len)?;
        if code == 5 && len == 8 {
            return Some(u64::from_le_bytes(value.try_into().ok()?));
        }
        if code == 0 {
            return None;
        }
        at += 4 + len + (4 - len % 4) % 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_framed_padded_and_walk_back() {
        let mut out = Vec::new();
        section_header(&mut out, "vlanswitch");
        interface(&mut out, "vm1 rx", 65535);
        packet(&mut out, 0, 0x1_0000_0002, 61, &[0xab; 61]);
        statistics(&mut out, 0, 5, 1, 7, "1 frame lost");
        assert_eq!(out.len() % 4, 0);
        // The section header starts with its type and byte-order magic.
        assert_eq!(&out[..4], &[0x0a, 0x0d, 0x0d, 0x0a]);
        assert_eq!(&out[8..12], &[0x4d, 0x3c, 0x2b, 0x1a]);
        let mut kinds = Vec::new();
        let mut dropped = None;
        let mut packet_body = Vec::new();
        let used = blocks(&out[..out.len() - 3], |k, b| {
            kinds.push(k);
            if k == 6 {
                packet_body = b.to_vec();
            }
        })
        .unwrap();
        assert_eq!(kinds, [0x0A0D_0D0A, 1, 6], "the partial last block is left");
        assert!(used < out.len());
        blocks(&out[used..], |k, b| {
            assert_eq!(k, 5);
            dropped = dropped_of(b);
        })
        .unwrap();
        assert_eq!(dropped, Some(7));
        // timestamp high and low words, captured and original length, the bytes, padded
        assert_eq!(&packet_body[4..8], &1u32.to_le_bytes());
        assert_eq!(&packet_body[8..12], &2u32.to_le_bytes());
        assert_eq!(&packet_body[12..20], &[61, 0, 0, 0, 61, 0, 0, 0]);
        assert_eq!(packet_body.len(), 20 + 64);
        assert!(blocks(&[0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0], |_, _| {}).is_err());
    }
}
