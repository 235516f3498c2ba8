//! `/api/v1/trace`: why a frame goes where it goes, from the decision the workers run
//! ([`dataplane::trace`]).

use std::net::IpAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use dataplane::trace::Trace;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, Problem, PROBLEM_JSON};
use super::extract::Payload;
use super::AppState;
use crate::edit::EditError;
use crate::topology::MacAddr;

/// Longest frame a trace takes: a GSO super-frame's 64 KiB and its headers.
pub const MAX_FRAME: usize = 65_600;

/// A frame to trace, arriving on `port`: given as `hex` bytes or as `frame` fields.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceRequest {
    /// The ingress port.
    pub port: String,
    /// The whole frame from its destination MAC on, in hex; spaces, `:` and `-` between bytes
    /// are ignored. Either this or `frame`.
    #[serde(default)]
    pub hex: Option<String>,
    /// The frame as fields. Either this or `hex`.
    #[serde(default)]
    pub frame: Option<FrameFields>,
    /// Learn the source MAC as a worker would. Default: the MAC table is only read, and the
    /// learning step says what learning would do.
    #[serde(default)]
    pub learn: bool,
}

/// A frame described by its fields; the rest is filled in (a minimal IP header when addresses
/// are given, zero padding to `len`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FrameFields {
    /// Source MAC.
    #[schema(value_type = String, example = "02:00:00:00:00:01")]
    pub src: MacAddr,
    /// Destination MAC.
    #[schema(value_type = String, example = "ff:ff:ff:ff:ff:ff")]
    pub dst: MacAddr,
    /// 802.1Q tags, outermost first: VIDs 0-4095 (0 is a priority tag). None: untagged.
    #[serde(default)]
    pub vlans: Vec<u16>,
    /// The EtherType after the tags. Default: IPv4 or IPv6 when addresses are given, else
    /// 0x88b5 (local experimental).
    #[serde(default)]
    pub ethertype: Option<u16>,
    /// Source IP address (IPv4 or IPv6, the same family as `dst_ip`).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub src_ip: Option<IpAddr>,
    /// Destination IP address.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub dst_ip: Option<IpAddr>,
    /// Frame length without FCS; shorter frames are padded to it with zeros. Default 60.
    #[serde(default)]
    pub len: Option<usize>,
}

impl TraceRequest {
    /// The frame's bytes, or which field is wrong and why.
    fn bytes(&self) -> Result<Vec<u8>, (&'static str, String)> {
        match (&self.hex, &self.frame) {
            (Some(h), None) => parse_hex(h).map_err(|e| ("hex", e)),
            (None, Some(f)) => build(f),
            _ => Err((
                "hex",
                "give the frame as exactly one of `hex` or `frame`".into(),
            )),
        }
    }
}

/// The bytes of a hex string; whitespace, `:` and `-` between bytes are ignored.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b':' && *c != b'-')
        .collect();
    if digits.len() % 2 != 0 {
        return Err(format!(
            "{} hex digits: not a whole number of bytes",
            digits.len()
        ));
    }
    if digits.len() / 2 > MAX_FRAME {
        return Err(format!(
            "{} bytes: longer than {MAX_FRAME}",
            digits.len() / 2
        ));
    }
    digits
        .chunks(2)
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .ok_or_else(|| format!("{:?} is not a hex byte", String::from_utf8_lossy(p)))
        })
        .collect()
}

/// Builds the frame `f` describes, or says which field is wrong.
pub fn build(f: &FrameFields) -> Result<Vec<u8>, (&'static str, String)> {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(&f.dst.0);
    b.extend_from_slice(&f.src.0);
    for (i, v) in f.vlans.iter().enumerate() {
        if *v > 4095 {
            return Err(("frame.vlans", format!("vlans[{i}] = {v}: a VID is 0-4095")));
        }
        b.extend_from_slice(&[0x81, 0x00]);
        b.extend_from_slice(&v.to_be_bytes());
    }
    let ip = match (f.src_ip, f.dst_ip) {
        (None, None) => None,
        (Some(IpAddr::V4(s)), Some(IpAddr::V4(d))) => Some(ipv4(s.octets(), d.octets())),
        (Some(IpAddr::V6(s)), Some(IpAddr::V6(d))) => Some(ipv6(s.octets(), d.octets())),
        (Some(_), Some(_)) => {
            return Err((
                "frame.dst_ip",
                "src_ip and dst_ip are of different families".into(),
            ))
        }
        (None, Some(_)) => return Err(("frame.src_ip", "dst_ip needs src_ip too".into())),
        (Some(_), None) => return Err(("frame.dst_ip", "src_ip needs dst_ip too".into())),
    };
    let ethertype = f.ethertype.unwrap_or(match (&ip, f.src_ip) {
        (Some(_), Some(IpAddr::V4(_))) => 0x0800,
        (Some(_), _) => 0x86dd,
        (None, _) => 0x88b5,
    });
    b.extend_from_slice(&ethertype.to_be_bytes());
    b.extend_from_slice(&ip.unwrap_or_default());
    let len = f.len.unwrap_or(60);
    if len > MAX_FRAME {
        return Err(("frame.len", format!("{len}: longer than {MAX_FRAME}")));
    }
    if len < b.len() {
        let need = b.len();
        return Err((
            "frame.len",
            format!("{len}: the headers alone take {need} bytes"),
        ));
    }
    b.resize(len, 0);
    Ok(b)
}

/// A minimal IPv4 header (protocol 253, experimental) with its checksum.
fn ipv4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut h = vec![0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 253, 0, 0];
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let sum = h
        .chunks(2)
        .fold(0u32, |s, w| s + u32::from(u16::from_be_bytes([w[0], w[1]])));
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h
}

/// A minimal IPv6 header (no next header).
fn ipv6(src: [u8; 16], dst: [u8; 16]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0, 0, 0, 59, 64];
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h
}

/// Trace a frame's forwarding decision.
///
/// The steps (parse, the ingress port, VLAN classification, port security, learning, lookup,
/// each egress port) and the verdict, from the decision the workers run, against the running
/// configuration and MAC table. Nothing is learned and no counter moves unless `learn` is set.
#[utoipa::path(post, path = "/api/v1/trace", tag = "troubleshooting", request_body = TraceRequest,
    responses(
        (status = 200, body = Trace),
        (status = 404, body = Problem, content_type = PROBLEM_JSON,
            description = "`port` names no port"),
        (status = 422, body = Problem, content_type = PROBLEM_JSON,
            description = "the frame cannot be made: bad hex, a VID over 4095, mixed IP families"),
    ))]
pub(super) async fn trace(
    State(st): State<AppState>,
    Payload(req): Payload<TraceRequest>,
) -> ApiResult<Json<Trace>> {
    let bytes = req
        .bytes()
        .map_err(|(field, e)| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e).field(field))?;
    st.with_ctl(move |ctl| {
        let sw = ctl.switch();
        let snap = sw.snapshot();
        let id = snap
            .port_id(&req.port)
            .ok_or_else(|| ApiError::from(EditError::NoSuchPort(req.port.clone())).field("port"))?;
        Ok(dataplane::trace::trace(
            &snap,
            sw.fdb(),
            &bytes,
            id,
            sw.now(),
            req.learn,
        ))
    })
    .await
    .map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(vlans: Vec<u16>, src_ip: Option<&str>, dst_ip: Option<&str>) -> FrameFields {
        FrameFields {
            src: MacAddr([2, 0, 0, 0, 0, 1]),
            dst: MacAddr([0xff; 6]),
            vlans,
            ethertype: None,
            src_ip: src_ip.map(|a| a.parse().unwrap()),
            dst_ip: dst_ip.map(|a| a.parse().unwrap()),
            len: None,
        }
    }

    #[test]
    fn frames_from_fields_parse_back() {
        let b = build(&fields(
            vec![20, 30],
            Some("198.18.0.1"),
            Some("198.18.0.2"),
        ))
        .unwrap();
        let p = etherparse::SlicedPacket::from_ethernet(&b).unwrap();
        assert_eq!(p.link_exts.len(), 2, "two tags");
        match p.net {
            Some(etherparse::NetSlice::Ipv4(ip)) => {
                assert_eq!(ip.header().source(), [198, 18, 0, 1]);
                assert_eq!(ip.header().destination(), [198, 18, 0, 2]);
                let h = ip.header().to_header();
                assert_eq!(h.header_checksum, h.calc_header_checksum());
            }
            other => panic!("not IPv4: {other:?}"),
        }
        assert_eq!(b.len(), 60);
        let b = build(&fields(vec![], Some("2001:db8::1"), Some("2001:db8::2"))).unwrap();
        assert_eq!(&b[12..14], &[0x86, 0xdd]);
        assert_eq!(b.len(), 60);
        assert_eq!(
            build(&fields(vec![], None, None)).unwrap()[12..14],
            [0x88, 0xb5]
        );
    }

    #[test]
    fn bad_fields_name_the_field() {
        let e = |f: FrameFields| build(&f).unwrap_err();
        assert_eq!(e(fields(vec![4096], None, None)).0, "frame.vlans");
        assert_eq!(
            e(fields(vec![], Some("198.18.0.1"), Some("2001:db8::2"))).0,
            "frame.dst_ip"
        );
        assert_eq!(
            e(fields(vec![], None, Some("198.18.0.2"))).0,
            "frame.src_ip"
        );
        let mut f = fields(vec![], Some("198.18.0.1"), Some("198.18.0.2"));
        f.len = Some(20);
        assert!(e(f).1.contains("headers alone take 34 bytes"));
    }

    #[test]
    fn hex_with_separators() {
        assert_eq!(
            parse_hex("ff:ff-0a 0B\n").unwrap(),
            [0xff, 0xff, 0x0a, 0x0b]
        );
        assert!(parse_hex("fff").unwrap_err().contains("3 hex digits"));
        assert!(parse_hex("zz").unwrap_err().contains("\"zz\""));
        assert!(parse_hex(&"00".repeat(MAX_FRAME + 1))
            .unwrap_err()
            .contains("longer than"));
    }
}
