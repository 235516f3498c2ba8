//! Link events from the kernel (rtnetlink, `RTMGRP_LINK`): which interfaces appear and vanish,
//! so netdev ports re-attach when a VM restarts without any polling.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::sys::cvt;

const RTMGRP_LINK: u32 = 1;
pub(crate) const RTM_NEWLINK: u16 = 16;
pub(crate) const RTM_DELLINK: u16 = 17;
pub(crate) const IFLA_IFNAME: u16 = 3;
const IFLA_IFALIAS: u16 = 20;
const RTM_GETLINK: u16 = 18;
const NLMSG_DONE: u16 = 3;
const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_HDRLEN: usize = 16;
pub(crate) const IFINFOMSG_LEN: usize = 16;

/// One link change. The default value (empty name) means "events were lost; recheck all".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkEvent {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub ifindex: u32,
    /// True for RTM_DELLINK (the interface is gone), false for RTM_NEWLINK (appeared or
    /// changed).
    pub deleted: bool,
    /// The interface's alias (`ip link set NAME alias TEXT`), if it has one.
    pub alias: Option<String>,
}

/// A netlink socket subscribed to link changes (non-blocking).
#[derive(Debug)]
pub struct LinkMonitor {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl LinkMonitor {
    /// Subscribes to link events in the current network namespace.
    pub fn open() -> io::Result<LinkMonitor> {
        // SAFETY: socket takes no pointers; the result is checked.
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        })?;
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_groups = RTMGRP_LINK;
        // SAFETY: binds to a sockaddr_nl we own, passing its true size.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        })?;
        Ok(LinkMonitor {
            fd,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Waits up to `timeout_ms` for events and returns those that arrived (possibly none).
    pub fn wait(&mut self, timeout_ms: i32) -> io::Result<Vec<LinkEvent>> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd we own, for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(Vec::new())
            } else {
                Err(e)
            };
        }
        let mut events = Vec::new();
        loop {
            // SAFETY: reads into our buffer with its true length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => break,
                    // The kernel dropped events for us: report that the caller must recheck
                    // everything.
                    Some(libc::ENOBUFS) => {
                        events.push(LinkEvent::default());
                        continue;
                    }
                    _ => return Err(e),
                }
            }
            parse(&self.buf[..n as usize], &mut events);
        }
        Ok(events)
    }
}

impl AsRawFd for LinkMonitor {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Every interface of the calling thread's network namespace, with its alias (one
/// `RTM_GETLINK` dump).
pub fn dump_links() -> io::Result<Vec<LinkEvent>> {
    let mut out = Vec::new();
    dump(RTM_GETLINK, IFINFOMSG_LEN, |b| parse(b, &mut out))?;
    Ok(out)
}

/// Sends a dump request of `kind` (its family header `header_len` zero bytes: every family,
/// every interface) on a new socket in the calling thread's namespace, and hands each reply
/// datagram to `each` until the dump is done.
fn dump(kind: u16, header_len: usize, each: impl FnMut(&[u8])) -> io::Result<OwnedFd> {
    dump_with(kind, &vec![0u8; header_len], each)
}

/// [`dump`] with the family header `header` (e.g. an `ndmsg` naming `AF_BRIDGE`).
pub(crate) fn dump_with(
    kind: u16,
    header: &[u8],
    mut each: impl FnMut(&[u8]),
) -> io::Result<OwnedFd> {
    let fd = route_socket()?;
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    send_all(&fd, &Request::new(kind, flags, header).finish(1))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let b = recv_some(&fd, &mut buf)?;
        each(b);
        match last_type(b) {
            Some(NLMSG_DONE) | None => return Ok(fd),
            Some(NLMSG_ERROR) => {
                let errno = messages(b)
                    .filter(|(ty, m)| *ty == NLMSG_ERROR && m.len() >= NLMSG_HDRLEN + 4)
                    .map(|(_, m)| -(u32_at(m, NLMSG_HDRLEN) as i32))
                    .last()
                    .unwrap_or(libc::EIO);
                return Err(io::Error::from_raw_os_error(errno));
            }
            Some(_) => {}
        }
    }
}

pub(crate) const RTM_NEWNEIGH: u16 = 28;
pub(crate) const RTM_DELNEIGH: u16 = 29;
pub(crate) const RTM_GETNEIGH: u16 = 30;
pub(crate) const NDMSG_LEN: usize = 12;
pub(crate) const NDA_DST: u16 = 1;
const NUD_INCOMPLETE: u16 = 0x01;
const NUD_FAILED: u16 = 0x20;

/// Removes the neighbour (ARP, NDP) entries of interface `ifindex`, in the calling thread's
/// network namespace, that are still being resolved or have failed. After a kept tap is
/// attached again, its host's kernel would otherwise wait for its next retransmission (up to
/// `retrans_time_ms`, 1 s) before it asks again for a neighbour it tried to reach while no
/// switch held the tap; without the entry it asks at once. Returns how many were removed.
pub fn flush_unresolved_neighbours(ifindex: u32) -> io::Result<usize> {
    let mut doomed = Vec::new();
    let fd = dump(RTM_GETNEIGH, NDMSG_LEN, |b| {
        unresolved(b, ifindex, &mut doomed)
    })?;
    for (i, (family, dst)) in doomed.iter().enumerate() {
        let mut nd = [0u8; NDMSG_LEN];
        nd[0] = *family;
        nd[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        let m = Request::new(RTM_DELNEIGH, 0, &nd)
            .attr(NDA_DST, dst)
            .finish(i as u32 + 2);
        send_all(&fd, &m)?;
    }
    Ok(doomed.len())
}

/// The (family, destination address) of each neighbour entry of `ifindex` in a datagram of
/// `RTM_NEWNEIGH` messages that is incomplete or failed (pure; tested below).
fn unresolved(b: &[u8], ifindex: u32, out: &mut Vec<(u8, Vec<u8>)>) {
    for (ty, msg) in messages(b) {
        if ty != RTM_NEWNEIGH || msg.len() < NLMSG_HDRLEN + NDMSG_LEN {
            continue;
        }
        let nd = &msg[NLMSG_HDRLEN..];
        let (family, index, state) = (nd[0], u32_at(nd, 4), u16_at(nd, 8));
        if index != ifindex || state & (NUD_INCOMPLETE | NUD_FAILED) == 0 {
            continue;
        }
        out.extend(
            attributes(&nd[NDMSG_LEN..])
                .filter(|(aty, _)| *aty == NDA_DST)
                .map(|(_, dst)| (family, dst.to_vec())),
        );
    }
}

/// A netlink request being built: header, family header, attributes (nested ones with
/// [`Request::begin`] and [`Request::end`]). Pure; its bytes are tested below.
#[derive(Debug)]
pub(crate) struct Request {
    buf: Vec<u8>,
    open: Vec<usize>,
}

impl Request {
    /// A request of type `kind` with `flags` (`NLM_F_REQUEST` is added) and the family
    /// header `header`.
    pub(crate) fn new(kind: u16, flags: u16, header: &[u8]) -> Request {
        let mut buf = vec![0u8; NLMSG_HDRLEN];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
        buf.extend_from_slice(header);
        pad(&mut buf);
        Request {
            buf,
            open: Vec::new(),
        }
    }

    /// Adds attribute `ty` with value `v`.
    pub(crate) fn attr(&mut self, ty: u16, v: &[u8]) -> &mut Self {
        self.buf
            .extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(v);
        pad(&mut self.buf);
        self
    }

    /// Opens nested attribute `ty`; its members follow until [`Request::end`].
    pub(crate) fn begin(&mut self, ty: u16) -> &mut Self {
        self.open.push(self.buf.len());
        self.attr(ty, &[])
    }

    /// Closes the innermost nested attribute.
    pub(crate) fn end(&mut self) -> &mut Self {
        if let Some(at) = self.open.pop() {
            let len = (self.buf.len() - at) as u16;
            self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    /// The message's bytes, with sequence number `seq`.
    pub(crate) fn finish(&mut self, seq: u32) -> Vec<u8> {
        while !self.open.is_empty() {
            self.end();
        }
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf.clone()
    }

    /// Sends the request with `NLM_F_ACK` on a new socket in the calling thread's namespace
    /// and waits for the kernel's answer: `Ok` or the errno it refused with.
    pub(crate) fn run(&mut self) -> io::Result<()> {
        let flags = u16_at(&self.buf, 6) | libc::NLM_F_ACK as u16;
        self.buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        let fd = route_socket()?;
        send_all(&fd, &self.finish(1))?;
        let mut buf = vec![0u8; 8 * 1024];
        loop {
            let b = recv_some(&fd, &mut buf)?;
            for (ty, msg) in messages(b) {
                if ty == NLMSG_ERROR && msg.len() >= NLMSG_HDRLEN + 4 {
                    let errno = -(u32_at(msg, NLMSG_HDRLEN) as i32);
                    return match errno {
                        0 => Ok(()),
                        e => Err(io::Error::from_raw_os_error(e)),
                    };
                }
            }
            if b.is_empty() {
                return Err(io::Error::other("netlink socket closed without an answer"));
            }
        }
    }
}

/// Pads `b` to the 4-byte boundary netlink aligns messages and attributes on.
fn pad(b: &mut Vec<u8>) {
    b.resize((b.len() + 3) & !3, 0);
}

/// A blocking `NETLINK_ROUTE` socket whose reads give up after 5 s: the kernel always
/// answers at once, and a caller (the controller, under its lock) must not wait forever.
fn route_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers; the result is checked.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    })?;
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = libc::timeval {
        tv_sec: 5,
        tv_usec: 0,
    };
    // SAFETY: passes a timeval we own with its true size.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    })?;
    Ok(fd)
}

fn send_all(fd: &OwnedFd, m: &[u8]) -> io::Result<()> {
    // SAFETY: sends our buffer with its true length.
    let sent = unsafe { libc::send(fd.as_raw_fd(), m.as_ptr().cast(), m.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One datagram into `buf` (retried on EINTR).
fn recv_some<'b>(fd: &OwnedFd, buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
    loop {
        // SAFETY: reads into our buffer with its true length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            return Ok(&buf[..n as usize]);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The type of the last netlink message in a datagram (a dump ends with `NLMSG_DONE`).
fn last_type(b: &[u8]) -> Option<u16> {
    messages(b).last().map(|(ty, _)| ty)
}

pub(crate) fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_ne_bytes([b[i], b[i + 1]])
}

pub(crate) fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// The netlink messages of a datagram, as (type, whole message with its header); stops at
/// the first one whose length does not fit.
pub(crate) fn messages(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32_at(b, 0) as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            return None;
        }
        let msg = &b[..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((u16_at(msg, 4), msg))
    })
}

/// The attributes (rtattr) in `b`, as (type, value); stops at the first malformed one.
pub(crate) fn attributes(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16_at(b, 0) as usize;
        if len < 4 || len > b.len() {
            return None;
        }
        let attr = (u16_at(b, 2), &b[4..len]);
        b = &b[((len + 3) & !3).min(b.len())..];
        Some(attr)
    })
}

/// Parses a datagram of netlink messages into link events (pure; tested below).
pub fn parse(b: &[u8], out: &mut Vec<LinkEvent>) {
    let text = |v: &[u8]| {
        let v = v.split(|c| *c == 0).next().unwrap_or(v);
        String::from_utf8_lossy(v).into_owned()
    };
    for (ty, msg) in messages(b) {
        if !(ty == RTM_NEWLINK || ty == RTM_DELLINK) || msg.len() < NLMSG_HDRLEN + IFINFOMSG_LEN {
            continue;
        }
        let ifindex = u32_at(msg, NLMSG_HDRLEN + 4);
        let (mut name, mut alias) = (None, None);
        for (aty, v) in attributes(&msg[NLMSG_HDRLEN + IFINFOMSG_LEN..]) {
            match aty {
                IFLA_IFNAME => name = Some(text(v)),
                IFLA_IFALIAS => alias = Some(text(v)),
                _ => {}
            }
        }
        if let Some(name) = name {
            out.push(LinkEvent {
                name,
                ifindex,
                deleted: ty == RTM_DELLINK,
                alias: alias.filter(|a| !a.is_empty()),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u16, ifindex: u32, name: &str) -> Vec<u8> {
        msg_with(ty, ifindex, &[(IFLA_IFNAME, name)])
    }

    fn msg_with(ty: u16, ifindex: u32, attrs: &[(u16, &str)]) -> Vec<u8> {
        let mut attr = Vec::new();
        for (aty, v) in attrs {
            let alen = 4 + v.len() + 1;
            attr.extend_from_slice(&(alen as u16).to_ne_bytes());
            attr.extend_from_slice(&aty.to_ne_bytes());
            attr.extend_from_slice(v.as_bytes());
            attr.push(0);
            while attr.len() % 4 != 0 {
                attr.push(0);
            }
        }
        let mut ifi = vec![0u8; IFINFOMSG_LEN];
        ifi[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        let len = NLMSG_HDRLEN + ifi.len() + attr.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m.extend(ifi);
        m.extend(attr);
        m
    }

    #[test]
    fn parses_new_and_del_link() {
        let mut b = msg(RTM_NEWLINK, 7, "vm1");
        b.extend(msg(RTM_DELLINK, 8, "veth-a"));
        b.extend(msg(20, 9, "not-a-link")); // RTM_NEWADDR: ignored
        let mut out = Vec::new();
        parse(&b, &mut out);
        assert_eq!(
            out,
            vec![
                LinkEvent {
                    name: "vm1".into(),
                    ifindex: 7,
                    deleted: false,
                    alias: None,
                },
                LinkEvent {
                    name: "veth-a".into(),
                    ifindex: 8,
                    deleted: true,
                    alias: None,
                },
            ]
        );
    }

    #[test]
    fn reads_the_alias_whichever_comes_first() {
        let mut b = msg_with(
            RTM_NEWLINK,
            3,
            &[(IFLA_IFALIAS, "vlanswitch:vm1"), (IFLA_IFNAME, "eth0")],
        );
        b.extend(msg_with(
            RTM_NEWLINK,
            4,
            &[(IFLA_IFNAME, "lo"), (IFLA_IFALIAS, "")],
        ));
        b.extend(msg_with(NLMSG_DONE, 0, &[]));
        let mut out = Vec::new();
        parse(&b, &mut out);
        let got: Vec<_> = out
            .iter()
            .map(|e| (e.name.as_str(), e.alias.as_deref()))
            .collect();
        assert_eq!(got, [("eth0", Some("vlanswitch:vm1")), ("lo", None)]);
        assert_eq!(last_type(&b), Some(NLMSG_DONE));
    }

    #[test]
    fn unresolved_neighbours_of_one_interface() {
        // nlmsghdr + ndmsg (family, ifindex, state) + NDA_DST.
        let neigh = |ifindex: u32, state: u16, dst: &[u8]| {
            let mut m = vec![0u8; NLMSG_HDRLEN + NDMSG_LEN];
            m[4..6].copy_from_slice(&RTM_NEWNEIGH.to_ne_bytes());
            m[NLMSG_HDRLEN] = 2; // AF_INET
            m[NLMSG_HDRLEN + 4..NLMSG_HDRLEN + 8].copy_from_slice(&ifindex.to_ne_bytes());
            m[NLMSG_HDRLEN + 8..NLMSG_HDRLEN + 10].copy_from_slice(&state.to_ne_bytes());
            m.extend_from_slice(&((4 + dst.len()) as u16).to_ne_bytes());
            m.extend_from_slice(&NDA_DST.to_ne_bytes());
            m.extend_from_slice(dst);
            while m.len() % 4 != 0 {
                m.push(0);
            }
            let len = m.len() as u32;
            m[0..4].copy_from_slice(&len.to_ne_bytes());
            m
        };
        let mut b = neigh(7, NUD_INCOMPLETE, &[198, 18, 0, 2]);
        b.extend(neigh(7, 0x02, &[198, 18, 0, 3])); // NUD_REACHABLE: kept
        b.extend(neigh(8, NUD_FAILED, &[198, 18, 0, 4])); // another interface
        b.extend(neigh(7, NUD_FAILED, &[198, 18, 0, 5]));
        let mut out = Vec::new();
        unresolved(&b, 7, &mut out);
        assert_eq!(out, [(2, vec![198, 18, 0, 2]), (2, vec![198, 18, 0, 5])]);
        for cut in 0..b.len() {
            let mut o = Vec::new();
            unresolved(&b[..cut], 7, &mut o);
            assert!(o.len() <= 2);
        }
    }

    #[test]
    fn truncated_input_is_ignored() {
        let b = msg(RTM_NEWLINK, 7, "vm1");
        for cut in 0..b.len() {
            let mut out = Vec::new();
            parse(&b[..cut], &mut out);
            assert!(out.is_empty(), "cut at {cut}");
        }
    }
}
