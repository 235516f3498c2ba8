//! VXLAN tunnel interfaces (RFC 7348) that the switch makes in the kernel, over rtnetlink:
//! one per VNI, attached as a netdev port of its VLAN ([`crate::port::Port::vxlan`]). The
//! kernel does the encapsulation, with its UDP tunnel offloads (GSO super-frames stay whole
//! down to the underlay), learns which remote VTEP each remote MAC is behind, and replicates
//! floods to every remote of its flood list (the all-zero MAC entries of its forwarding
//! database, as `bridge fdb append 00:00:00:00:00:00 dev vxlan1010 dst 192.0.2.2` makes).
//!
//! What is pure (the messages, the diff of a flood list) is tested here without a kernel.

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;

use super::netlink::{
    attributes, dump_with, messages, u16_at, u32_at, Request, IFINFOMSG_LEN, IFLA_IFNAME, NDA_DST,
    NDMSG_LEN, NLMSG_HDRLEN, RTM_DELLINK, RTM_DELNEIGH, RTM_GETNEIGH, RTM_NEWLINK, RTM_NEWNEIGH,
};
use crate::wire::MacAddr;

/// The well-known VXLAN UDP port (IANA).
pub const DEFAULT_DSTPORT: u16 = 4789;
/// Highest VNI: 24 bits.
pub const VNI_MAX: u32 = (1 << 24) - 1;
/// Bytes a tunnel adds to each frame over an IPv4 underlay: outer IPv4 (20), UDP (8), VXLAN
/// (8) and the inner Ethernet header (14), which the inner MTU does not count.
pub const OVERHEAD_V4: u32 = 50;
/// The same over IPv6 (outer header 40 bytes).
pub const OVERHEAD_V6: u32 = 70;

const IFLA_MTU: u16 = 4;
const IFLA_IFALIAS: u16 = 20;
/// The alias of every tunnel interface the switch makes: a leftover of a killed switchd is
/// told from someone else's interface of the same name by it.
pub const ALIAS: &str = "vlanswitch:vxlan";
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_VXLAN_ID: u16 = 1;
const IFLA_VXLAN_LINK: u16 = 3;
const IFLA_VXLAN_LOCAL: u16 = 4;
const IFLA_VXLAN_LEARNING: u16 = 7;
const IFLA_VXLAN_PORT: u16 = 15;
const IFLA_VXLAN_LOCAL6: u16 = 17;
const NDA_LLADDR: u16 = 2;
const NUD_NOARP: u16 = 0x40;
const NUD_PERMANENT: u16 = 0x80;
const NTF_SELF: u8 = 0x02;
const NTF_EXT_LEARNED: u8 = 0x10;
const AF_BRIDGE: u8 = libc::AF_BRIDGE as u8;
const RTM_GETADDR: u16 = 22;
const RTM_NEWADDR: u16 = 20;
const IFADDRMSG_LEN: usize = 8;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

/// The tunnel overhead over an underlay of `local`'s family.
pub fn overhead(local: IpAddr) -> u32 {
    match local {
        IpAddr::V4(_) => OVERHEAD_V4,
        IpAddr::V6(_) => OVERHEAD_V6,
    }
}

/// A tunnel interface to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelSpec {
    /// Interface name.
    pub name: String,
    /// VXLAN network identifier (1 to [`VNI_MAX`]).
    pub vni: u32,
    /// This host's VTEP address (the outer source address).
    pub local: IpAddr,
    /// UDP destination port.
    pub dstport: u16,
    /// The underlay interface's index, if known: the kernel sends through it and the
    /// tunnel's MTU follows from it.
    pub underlay: Option<u32>,
    /// The tunnel interface's MTU.
    pub mtu: u32,
}

impl TunnelSpec {
    /// The `RTM_NEWLINK` request that makes it (pure).
    fn request(&self) -> Request {
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
        let mut r = Request::new(RTM_NEWLINK, flags, &[0u8; IFINFOMSG_LEN]);
        r.attr(IFLA_IFNAME, &nul_terminated(&self.name))
            .attr(IFLA_MTU, &self.mtu.to_ne_bytes())
            .begin(IFLA_LINKINFO)
            .attr(IFLA_INFO_KIND, b"vxlan")
            .begin(IFLA_INFO_DATA)
            .attr(IFLA_VXLAN_ID, &self.vni.to_ne_bytes())
            .attr(IFLA_VXLAN_PORT, &self.dstport.to_be_bytes())
            // Remote MACs are learned with the VTEP they came from: unicast to them goes
            // to that VTEP alone, and the switch's MAC table view names it.
            .attr(IFLA_VXLAN_LEARNING, &[1]);
        match self.local {
            IpAddr::V4(a) => r.attr(IFLA_VXLAN_LOCAL, &a.octets()),
            IpAddr::V6(a) => r.attr(IFLA_VXLAN_LOCAL6, &a.octets()),
        };
        if let Some(i) = self.underlay {
            r.attr(IFLA_VXLAN_LINK, &i.to_ne_bytes());
        }
        r.end().end();
        r
    }
}

fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// A tunnel interface the switch made; removed from the kernel when dropped.
#[derive(Debug)]
pub struct Tunnel {
    name: String,
    ifindex: u32,
}

impl Tunnel {
    /// Makes the tunnel interface `spec` describes in the calling thread's namespace (down;
    /// the port sets it up), with the alias [`ALIAS`]. An interface of that name with that
    /// alias, which an earlier run left (killed before it could remove it), is removed first;
    /// any other interface of that name is an error (`EEXIST`): it is not the switch's.
    pub fn create(spec: &TunnelSpec) -> io::Result<Tunnel> {
        match spec.request().run() {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && is_ours(&spec.name) => {
                delete(&spec.name)?;
                spec.request().run()?;
            }
            r => r?,
        }
        let ifindex = super::packet::ifindex(&spec.name).ok_or_else(|| {
            io::Error::other(format!("{} vanished right after it was made", spec.name))
        })?;
        let tunnel = Tunnel {
            name: spec.name.clone(),
            ifindex,
        };
        // The kernel takes an alias only on a link that exists (not in the request that
        // makes it). Should this fail, dropping `tunnel` removes the interface again.
        alias_request(ifindex).run()?;
        Ok(tunnel)
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        if let Err(e) = delete_link(self.ifindex) {
            if e.raw_os_error() != Some(libc::ENODEV) {
                tracing::warn!(interface = %self.name, error = %e, "cannot remove the tunnel interface");
            }
        }
    }
}

/// Removes interface `ifindex` (`RTM_DELLINK`).
fn delete_link(ifindex: u32) -> io::Result<()> {
    Request::new(RTM_DELLINK, 0, &ifinfomsg(ifindex)).run()
}

/// The request that gives interface `ifindex` the alias [`ALIAS`] (pure).
fn alias_request(ifindex: u32) -> Request {
    let mut r = Request::new(RTM_NEWLINK, 0, &ifinfomsg(ifindex));
    r.attr(IFLA_IFALIAS, ALIAS.as_bytes());
    r
}

fn ifinfomsg(ifindex: u32) -> [u8; IFINFOMSG_LEN] {
    let mut h = [0u8; IFINFOMSG_LEN];
    h[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    h
}

/// Whether interface `name` exists and carries the switch's tunnel alias ([`ALIAS`]).
fn is_ours(name: &str) -> bool {
    super::netlink::dump_links().is_ok_and(|links| {
        links
            .iter()
            .any(|l| l.name == name && l.alias.as_deref() == Some(ALIAS))
    })
}

/// Removes interface `name` (by name, as `ip link del` does).
pub fn delete(name: &str) -> io::Result<()> {
    let i =
        super::packet::ifindex(name).ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))?;
    delete_link(i)
}

/// One entry of a tunnel interface's forwarding database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FdbEntry {
    /// The MAC; all-zero for a flood list entry.
    pub mac: MacAddr,
    /// The remote VTEP frames to `mac` go to.
    pub remote: IpAddr,
    /// Configured (`NUD_PERMANENT` or `NUD_NOARP`) by the switch: not learned by the
    /// kernel, and not installed by another control plane (such as FRR's EVPN, which marks
    /// its entries `extern_learn`), whose entries the switch leaves alone.
    pub fixed: bool,
}

impl FdbEntry {
    /// Whether this is a flood list entry (all-zero MAC).
    pub fn is_flood(&self) -> bool {
        self.mac == MacAddr::ZERO
    }
}

/// Interface `name`'s forwarding database (one `RTM_GETNEIGH` dump of `AF_BRIDGE`).
pub fn fdb(name: &str) -> io::Result<Vec<FdbEntry>> {
    let Some(i) = super::packet::ifindex(name) else {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    };
    let mut nd = [0u8; NDMSG_LEN];
    nd[0] = AF_BRIDGE;
    let mut out = Vec::new();
    dump_with(RTM_GETNEIGH, &nd, |b| parse_fdb(b, i, &mut out))?;
    Ok(out)
}

/// The entries of interface `ifindex` in a datagram of `RTM_NEWNEIGH` messages (pure).
fn parse_fdb(b: &[u8], ifindex: u32, out: &mut Vec<FdbEntry>) {
    for (ty, msg) in messages(b) {
        if ty != RTM_NEWNEIGH || msg.len() < NLMSG_HDRLEN + NDMSG_LEN {
            continue;
        }
        let nd = &msg[NLMSG_HDRLEN..];
        if nd[0] != AF_BRIDGE || u32_at(nd, 4) != ifindex {
            continue;
        }
        let (state, flags) = (u16_at(nd, 8), nd[10]);
        let (mut mac, mut remote) = (None, None);
        for (aty, v) in attributes(&nd[NDMSG_LEN..]) {
            match (aty, v.len()) {
                (NDA_LLADDR, 6) => mac = Some(MacAddr(v.try_into().expect("six bytes"))),
                (NDA_DST, 4) => remote = <[u8; 4]>::try_from(v).ok().map(IpAddr::from),
                (NDA_DST, 16) => remote = <[u8; 16]>::try_from(v).ok().map(IpAddr::from),
                _ => {}
            }
        }
        if let (Some(mac), Some(remote)) = (mac, remote) {
            out.push(FdbEntry {
                mac,
                remote,
                fixed: state & (NUD_PERMANENT | NUD_NOARP) != 0 && flags & NTF_EXT_LEARNED == 0,
            });
        }
    }
}

/// The request that adds (`add`) or removes a configured entry `e` of interface `ifindex`
/// (pure). A flood entry is appended to the all-zero MAC's list of remotes, as `bridge fdb
/// append` does; any other replaces what was there for its MAC.
fn fdb_request(ifindex: u32, e: &FdbEntry, add: bool) -> Request {
    let mut nd = [0u8; NDMSG_LEN];
    nd[0] = AF_BRIDGE;
    nd[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    nd[8..10].copy_from_slice(&(NUD_NOARP | NUD_PERMANENT).to_ne_bytes());
    nd[10] = NTF_SELF;
    let (kind, flags) = match (add, e.is_flood()) {
        (false, _) => (RTM_DELNEIGH, 0),
        (true, true) => (RTM_NEWNEIGH, libc::NLM_F_CREATE | libc::NLM_F_APPEND),
        (true, false) => (RTM_NEWNEIGH, libc::NLM_F_CREATE | libc::NLM_F_REPLACE),
    };
    let dst = match e.remote {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let mut r = Request::new(kind, flags as u16, &nd);
    r.attr(NDA_LLADDR, &e.mac.0).attr(NDA_DST, &dst);
    r
}

/// What to add to and remove from a tunnel's configured entries (flood list and static
/// MACs) so that they are `want`, given what the kernel has (`have`, learned entries
/// included, which are left alone unless a static entry takes their MAC). Pure.
pub fn fdb_diff(have: &[FdbEntry], want: &[FdbEntry]) -> (Vec<FdbEntry>, Vec<FdbEntry>) {
    let fixed: BTreeSet<FdbEntry> = have.iter().filter(|e| e.fixed).copied().collect();
    let want: BTreeSet<FdbEntry> = want
        .iter()
        .map(|e| FdbEntry { fixed: true, ..*e })
        .collect();
    let add = want.difference(&fixed).copied().collect();
    let remove = fixed.difference(&want).copied().collect();
    (add, remove)
}

/// What [`sync_fdb`] changed.
#[derive(Debug, Default)]
pub struct Synced {
    /// Entries added.
    pub added: Vec<FdbEntry>,
    /// Entries removed.
    pub removed: Vec<FdbEntry>,
    /// Entries the kernel would not add or remove, with its answer.
    pub failed: Vec<(FdbEntry, io::Error)>,
}

/// Makes interface `name`'s configured entries (flood list and static MACs) exactly `want`,
/// adding the missing ones before removing the extra ones, so that a remote that stays is
/// never left out meanwhile. Every entry is tried; what the kernel refused is in
/// [`Synced::failed`].
pub fn sync_fdb(name: &str, want: &[FdbEntry]) -> io::Result<Synced> {
    let have = fdb(name)?;
    let (add, remove) = fdb_diff(&have, want);
    let Some(i) = super::packet::ifindex(name) else {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    };
    let mut done = Synced::default();
    for e in add {
        match fdb_request(i, &e, true).run() {
            Ok(()) => done.added.push(e),
            Err(err) => done.failed.push((e, err)),
        }
    }
    for e in remove {
        match fdb_request(i, &e, false).run() {
            Ok(()) => done.removed.push(e),
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => done.removed.push(e),
            Err(err) => done.failed.push((e, err)),
        }
    }
    Ok(done)
}

/// The interface that holds address `local` in the calling thread's namespace, as (index,
/// name), if any (one `RTM_GETADDR` dump).
pub fn interface_with(local: IpAddr) -> io::Result<Option<(u32, String)>> {
    let mut found = None;
    dump_with(RTM_GETADDR, &[0u8; IFADDRMSG_LEN], |b| {
        if found.is_none() {
            found = parse_addr(b, local);
        }
    })?;
    Ok(found.and_then(|i| {
        let mut buf = [0u8; libc::IF_NAMESIZE];
        // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes into our buffer.
        let p = unsafe { libc::if_indextoname(i, buf.as_mut_ptr().cast()) };
        if p.is_null() {
            return None;
        }
        let end = buf.iter().position(|c| *c == 0).unwrap_or(buf.len());
        Some((i, String::from_utf8_lossy(&buf[..end]).into_owned()))
    }))
}

/// The interface index of the `RTM_NEWADDR` message that carries `local` (pure).
fn parse_addr(b: &[u8], local: IpAddr) -> Option<u32> {
    let want = match local {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    messages(b)
        .filter(|(ty, msg)| *ty == RTM_NEWADDR && msg.len() >= NLMSG_HDRLEN + IFADDRMSG_LEN)
        .find_map(|(_, msg)| {
            let ifa = &msg[NLMSG_HDRLEN..];
            attributes(&ifa[IFADDRMSG_LEN..])
                .any(|(ty, v)| (ty == IFA_LOCAL || ty == IFA_ADDRESS) && v == want.as_slice())
                .then(|| u32_at(ifa, 4))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(local: &str) -> TunnelSpec {
        TunnelSpec {
            name: "vxlan1010".into(),
            vni: 1010,
            local: local.parse().unwrap(),
            dstport: 4789,
            underlay: Some(7),
            mtu: 1450,
        }
    }

    /// The attributes of a request, nested ones flattened with their path.
    fn attrs(m: &[u8], header: usize) -> Vec<(Vec<u16>, Vec<u8>)> {
        fn walk(b: &[u8], path: &[u16], out: &mut Vec<(Vec<u16>, Vec<u8>)>) {
            for (ty, v) in attributes(b) {
                let p: Vec<u16> = path.iter().copied().chain([ty]).collect();
                if matches!((path.len(), ty), (0, IFLA_LINKINFO) | (1, IFLA_INFO_DATA)) {
                    walk(v, &p, out);
                } else {
                    out.push((p, v.to_vec()));
                }
            }
        }
        let mut out = Vec::new();
        walk(&m[NLMSG_HDRLEN + header..], &[], &mut out);
        out
    }

    #[test]
    fn the_create_request_carries_vni_port_local_link_and_mtu() {
        let m = spec("192.0.2.1").request().finish(9);
        assert_eq!(u32_at(&m, 0) as usize, m.len());
        assert_eq!(u16_at(&m, 4), RTM_NEWLINK);
        let flags = u16_at(&m, 6);
        assert_ne!(
            flags & libc::NLM_F_EXCL as u16,
            0,
            "never takes over an interface"
        );
        let a = attrs(&m, IFINFOMSG_LEN);
        let get = |p: &[u16]| a.iter().find(|(q, _)| q == p).map(|(_, v)| v.clone());
        assert_eq!(get(&[IFLA_IFNAME]).unwrap(), b"vxlan1010\0");
        assert_eq!(get(&[IFLA_MTU]).unwrap(), 1450u32.to_ne_bytes());
        assert_eq!(get(&[IFLA_LINKINFO, IFLA_INFO_KIND]).unwrap(), b"vxlan");
        let data = |t| get(&[IFLA_LINKINFO, IFLA_INFO_DATA, t]);
        assert_eq!(data(IFLA_VXLAN_ID).unwrap(), 1010u32.to_ne_bytes());
        assert_eq!(
            data(IFLA_VXLAN_PORT).unwrap(),
            [0x12, 0xb5],
            "4789, network order"
        );
        assert_eq!(data(IFLA_VXLAN_LOCAL).unwrap(), [192, 0, 2, 1]);
        assert_eq!(data(IFLA_VXLAN_LINK).unwrap(), 7u32.to_ne_bytes());
        assert_eq!(data(IFLA_VXLAN_LOCAL6), None);
        let m = spec("2001:db8::1").request().finish(9);
        let a = attrs(&m, IFINFOMSG_LEN);
        let local6 = a
            .iter()
            .find(|(p, _)| p.last() == Some(&IFLA_VXLAN_LOCAL6))
            .unwrap();
        assert_eq!(local6.1.len(), 16);
        let v4 = [IFLA_LINKINFO, IFLA_INFO_DATA, IFLA_VXLAN_LOCAL];
        assert!(!a.iter().any(|(p, _)| p == &v4));
    }

    #[test]
    fn the_alias_is_set_on_the_link_that_exists() {
        let m = alias_request(9).finish(1);
        assert_eq!(u16_at(&m, 4), RTM_NEWLINK);
        assert_eq!(
            u16_at(&m, 6) & libc::NLM_F_CREATE as u16,
            0,
            "creates nothing"
        );
        assert_eq!(u32_at(&m, NLMSG_HDRLEN + 4), 9);
        let a = attrs(&m, IFINFOMSG_LEN);
        assert_eq!(a, [(vec![IFLA_IFALIAS], ALIAS.as_bytes().to_vec())]);
    }

    fn e(mac: u8, remote: &str, fixed: bool) -> FdbEntry {
        FdbEntry {
            mac: MacAddr(if mac == 0 {
                [0; 6]
            } else {
                [2, 0, 0, 0, 0, mac]
            }),
            remote: remote.parse().unwrap(),
            fixed,
        }
    }

    #[test]
    fn flood_entries_append_static_ones_replace_and_removal_names_the_remote() {
        let m = fdb_request(5, &e(0, "192.0.2.2", true), true).finish(1);
        assert_eq!(u16_at(&m, 4), RTM_NEWNEIGH);
        assert_ne!(u16_at(&m, 6) & libc::NLM_F_APPEND as u16, 0);
        let nd = &m[NLMSG_HDRLEN..];
        assert_eq!((nd[0], u32_at(nd, 4), nd[10]), (AF_BRIDGE, 5, NTF_SELF));
        let a = attrs(&m, NDMSG_LEN);
        assert_eq!(a[0], (vec![NDA_LLADDR], vec![0; 6]));
        assert_eq!(a[1], (vec![NDA_DST], vec![192, 0, 2, 2]));
        let m = fdb_request(5, &e(9, "2001:db8::2", true), true).finish(1);
        assert_ne!(u16_at(&m, 6) & libc::NLM_F_REPLACE as u16, 0);
        assert_eq!(attrs(&m, NDMSG_LEN)[1].1.len(), 16);
        let m = fdb_request(5, &e(0, "192.0.2.2", true), false).finish(1);
        assert_eq!(u16_at(&m, 4), RTM_DELNEIGH);
        assert_eq!(attrs(&m, NDMSG_LEN)[1], (vec![NDA_DST], vec![192, 0, 2, 2]));
    }

    #[test]
    fn the_diff_touches_configured_entries_only() {
        let have = [
            e(0, "192.0.2.2", true),
            e(0, "192.0.2.3", true),
            e(7, "192.0.2.2", false), // learned: left alone
            e(8, "192.0.2.3", true),  // a static MAC no longer configured
        ];
        let want = [
            e(0, "192.0.2.2", false),
            e(0, "192.0.2.4", false),
            e(9, "192.0.2.4", false),
        ];
        let (add, remove) = fdb_diff(&have, &want);
        assert_eq!(add, [e(0, "192.0.2.4", true), e(9, "192.0.2.4", true)]);
        assert_eq!(remove, [e(0, "192.0.2.3", true), e(8, "192.0.2.3", true)]);
        assert_eq!(fdb_diff(&have[..2], &have[..2]), (vec![], vec![]));
    }

    #[test]
    fn dumped_entries_of_other_interfaces_and_families_are_skipped() {
        let mut dump = Vec::new();
        for (family, ifindex, mac, state, flags) in [
            (AF_BRIDGE, 5, 0u8, NUD_NOARP | NUD_PERMANENT, NTF_SELF),
            (AF_BRIDGE, 5, 7, 0x02, NTF_SELF),
            (AF_BRIDGE, 5, 6, NUD_NOARP, NTF_SELF | NTF_EXT_LEARNED),
            (AF_BRIDGE, 6, 8, NUD_PERMANENT, NTF_SELF),
            (libc::AF_INET as u8, 5, 9, NUD_PERMANENT, 0),
        ] {
            let mut nd = [0u8; NDMSG_LEN];
            nd[0] = family;
            nd[4..8].copy_from_slice(&(ifindex as u32).to_ne_bytes());
            nd[8..10].copy_from_slice(&state.to_ne_bytes());
            nd[10] = flags;
            let mac = if mac == 0 {
                [0; 6]
            } else {
                [2, 0, 0, 0, 0, mac]
            };
            dump.extend(
                Request::new(RTM_NEWNEIGH, 0, &nd)
                    .attr(NDA_LLADDR, &mac)
                    .attr(NDA_DST, &[192, 0, 2, 2])
                    .finish(1),
            );
        }
        let mut out = Vec::new();
        parse_fdb(&dump, 5, &mut out);
        // Another control plane's entry (extern_learn) counts as not the switch's.
        assert_eq!(
            out,
            [
                e(0, "192.0.2.2", true),
                e(7, "192.0.2.2", false),
                e(6, "192.0.2.2", false)
            ]
        );
    }

    #[test]
    fn the_address_owner_is_found_by_local_or_address_attribute() {
        let mut dump = Vec::new();
        for (ifindex, ty, a) in [
            (2u32, IFA_ADDRESS, vec![198, 18, 0, 1]),
            (3, IFA_LOCAL, vec![192, 0, 2, 1]),
        ] {
            let mut ifa = [0u8; IFADDRMSG_LEN];
            ifa[4..8].copy_from_slice(&ifindex.to_ne_bytes());
            dump.extend(Request::new(RTM_NEWADDR, 0, &ifa).attr(ty, &a).finish(1));
        }
        assert_eq!(parse_addr(&dump, "192.0.2.1".parse().unwrap()), Some(3));
        assert_eq!(parse_addr(&dump, "192.0.2.9".parse().unwrap()), None);
    }
}
