//! netdev ports: an existing interface (a VM's tap held by QEMU, a veth, a NIC) attached through
//! an AF_PACKET socket with `PACKET_VNET_HDR`, so GSO super-frames and partial checksums pass
//! intact in both directions.
//!
//! The socket is bound to the interface's ifindex, joins promiscuous mode as a membership (the
//! kernel drops it when the socket closes; the interface's own flags are never flipped), and
//! ignores outgoing frames, so it sees only what the interface receives.
//!
//! The kernel strips the outer VLAN tag of a received frame into `PACKET_AUXDATA` before packet
//! sockets see it; [`PacketSocket::recv`] puts it back in front of the payload (reading the frame
//! 4 bytes into the buffer leaves room), and moves the vnet header's offsets with it.
//!
//! Why not `pnet_datalink`: it has no `PACKET_VNET_HDR` (so every TCP frame would be segmented
//! and checksummed in software before we see it) and no auxdata, so tags would be lost.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::batch::{RxBatch, RX_BATCH, RX_SLOT};
use super::sys::cvt;
use super::{PortError, Result};
use crate::wire::{EgressFrame, VnetHdr, ADDRS_LEN, VLAN_HLEN};

// From <linux/if_packet.h> and <linux/if_ether.h>.
const SOL_PACKET: libc::c_int = 263;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_AUXDATA: libc::c_int = 8;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const ETH_P_ALL: u16 = 0x0003;
const ETH_P_8021Q: u16 = 0x8100;
/// Socket buffer we ask for: room for dozens of 64 KiB GSO frames.
const SOCK_BUF: libc::c_int = 8 << 20;

#[repr(C)]
struct PacketMreq {
    mr_ifindex: libc::c_int,
    mr_type: libc::c_ushort,
    mr_alen: libc::c_ushort,
    mr_address: [u8; 8],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

/// Bytes before the frame in the receive buffer, where a stripped tag is put back.
pub const RX_HEADROOM: usize = VLAN_HLEN;

/// The ifindex of interface `name`, if it exists in this namespace.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// Sets `IFF_UP` on interface `name` (other flags unchanged).
pub fn set_link_up(name: &str) -> Result<()> {
    let err = |op: &'static str| PortError::Ioctl {
        port: name.to_string(),
        op,
        source: io::Error::last_os_error(),
    };
    if name.len() > 15 {
        return Err(PortError::BadName(name.to_string()));
    }
    // SAFETY: socket takes no pointers; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(err("socket"));
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills `ifr_ifru.ifru_flags` of the ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) } < 0 {
        return Err(err("SIOCGIFFLAGS"));
    }
    // SAFETY: the union member was just written by SIOCGIFFLAGS.
    unsafe { ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) } < 0 {
        return Err(err("SIOCSIFFLAGS"));
    }
    Ok(())
}

/// An AF_PACKET socket attached to one interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: u32,
}

impl PacketSocket {
    /// Attaches to the existing interface `name`.
    pub fn open(name: &str) -> Result<PacketSocket> {
        let ifindex = ifindex(name).ok_or_else(|| PortError::NoSuchInterface(name.to_string()))?;
        let err = |op: &'static str| PortError::Ioctl {
            port: name.to_string(),
            op,
            source: io::Error::last_os_error(),
        };
        // SAFETY: socket takes no pointers; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                ETH_P_ALL.to_be() as libc::c_int,
            )
        };
        if fd < 0 {
            return Err(err("socket(AF_PACKET)"));
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        let on: libc::c_int = 1;
        for (opt, op) in [
            (PACKET_VNET_HDR, "PACKET_VNET_HDR"),
            (PACKET_AUXDATA, "PACKET_AUXDATA"),
            (PACKET_IGNORE_OUTGOING, "PACKET_IGNORE_OUTGOING"),
        ] {
            setsockopt(raw, SOL_PACKET, opt, &on).map_err(|_| err(op))?;
        }
        // Bigger buffers so that bursts of 64 KiB GSO frames are not dropped; FORCE works as
        // root past rmem_max, the plain option is the fallback.
        for (force, plain) in [
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        ] {
            if setsockopt(raw, libc::SOL_SOCKET, force, &SOCK_BUF).is_err() {
                let _ = setsockopt(raw, libc::SOL_SOCKET, plain, &SOCK_BUF);
            }
        }
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: binds to a sockaddr_ll we own, passing its true size.
        let r = unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            return Err(err("bind"));
        }
        let mreq = PacketMreq {
            mr_ifindex: ifindex as i32,
            mr_type: PACKET_MR_PROMISC,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        setsockopt(raw, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq)
            .map_err(|_| err("PACKET_ADD_MEMBERSHIP"))?;
        Ok(PacketSocket { fd, ifindex })
    }

    /// The interface's ifindex at attach time.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Reads one frame: its vnet header into `hdr`, the frame into `buf`, with any VLAN tag the
    /// kernel had stripped put back. Returns the frame's (start, length) within `buf`.
    #[inline]
    pub fn recv(&self, hdr: &mut [u8; VnetHdr::LEN], buf: &mut [u8]) -> io::Result<(usize, usize)> {
        let mut iov = [
            libc::iovec {
                iov_base: hdr.as_mut_ptr().cast(),
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: buf[RX_HEADROOM..].as_mut_ptr().cast(),
                iov_len: buf.len() - RX_HEADROOM,
            },
        ];
        let mut cmsg_buf = [0u64; 8];
        // SAFETY: msghdr is plain data; all-zero is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len();
        msg.msg_control = cmsg_buf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cmsg_buf);
        // SAFETY: every pointer in `msg` refers to buffers we hold mutably for the whole call,
        // with their true lengths.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n < VnetHdr::LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "short read: no vnet header",
            ));
        }
        if msg.msg_flags & libc::MSG_TRUNC != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "frame larger than the receive buffer",
            ));
        }
        let len = n - VnetHdr::LEN;
        Ok(restore_tag(auxdata(&msg), hdr, buf, len))
    }

    /// Reads up to [`RX_BATCH`] frames with one `recvmmsg`, each into its own slot of
    /// `batch`, with stripped tags put back as in [`PacketSocket::recv`]. Returns how many;
    /// `WouldBlock` when none is queued.
    pub fn recv_batch(&self, batch: &mut RxBatch) -> io::Result<usize> {
        let base = batch.bufs.as_mut_ptr();
        for i in 0..RX_BATCH {
            batch.iovs[i] = [
                libc::iovec {
                    iov_base: batch.hdrs[i].as_mut_ptr().cast(),
                    iov_len: VnetHdr::LEN,
                },
                libc::iovec {
                    // SAFETY: slot i lies within `bufs` (RX_BATCH * RX_SLOT bytes).
                    iov_base: unsafe { base.add(i * RX_SLOT + RX_HEADROOM) }.cast(),
                    iov_len: RX_SLOT - RX_HEADROOM,
                },
            ];
            // SAFETY: msghdr is plain data; all-zero is a valid value.
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_iov = batch.iovs[i].as_mut_ptr();
            h.msg_iovlen = 2;
            h.msg_control = batch.cmsgs[i].as_mut_ptr().cast();
            h.msg_controllen = std::mem::size_of_val(&batch.cmsgs[i]);
            batch.msgs[i] = libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            };
        }
        // SAFETY: every mmsghdr points at iovecs, buffers and control space owned by `batch`,
        // which is borrowed mutably for the whole call.
        let n = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                batch.msgs.as_mut_ptr(),
                RX_BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            let got = batch.msgs[i].msg_len as usize;
            let slot = &mut batch.bufs[i * RX_SLOT..(i + 1) * RX_SLOT];
            let truncated = batch.msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            // A short read or a frame cut to fit has length 0: the worker counts it as a bad
            // frame and never forwards it.
            batch.frames[i] = if got < VnetHdr::LEN || truncated {
                (RX_HEADROOM, 0)
            } else {
                let aux = auxdata(&batch.msgs[i].msg_hdr);
                restore_tag(aux, &mut batch.hdrs[i], slot, got - VnetHdr::LEN)
            };
        }
        batch.n = n;
        Ok(n)
    }

    /// Sends one frame, given as pieces, behind `hdr`.
    #[inline]
    pub fn send(&self, hdr: &VnetHdr, frame: &EgressFrame<'_>) -> io::Result<()> {
        super::writev_frame(self.fd.as_raw_fd(), hdr, frame)
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Puts back the outer VLAN tag the kernel reported in `aux` in front of the frame that sits
/// `RX_HEADROOM` bytes into `buf` (`len` bytes), and moves the vnet header's offsets with it.
/// Returns the frame's (start, length) in `buf`.
fn restore_tag(
    aux: Option<TpacketAuxdata>,
    hdr: &mut [u8; VnetHdr::LEN],
    buf: &mut [u8],
    len: usize,
) -> (usize, usize) {
    let Some(aux) = aux else {
        return (RX_HEADROOM, len);
    };
    if aux.tp_status & TP_STATUS_VLAN_VALID == 0 || len < ADDRS_LEN {
        return (RX_HEADROOM, len);
    }
    let tpid = if aux.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 {
        aux.tp_vlan_tpid
    } else {
        ETH_P_8021Q
    };
    // Addresses move 4 bytes forward into the headroom; the tag goes between them and the
    // EtherType.
    buf.copy_within(RX_HEADROOM..RX_HEADROOM + ADDRS_LEN, 0);
    buf[ADDRS_LEN..ADDRS_LEN + 2].copy_from_slice(&tpid.to_be_bytes());
    buf[ADDRS_LEN + 2..ADDRS_LEN + 4].copy_from_slice(&aux.tp_vlan_tci.to_be_bytes());
    *hdr = VnetHdr::from_bytes(hdr)
        .shifted(VLAN_HLEN as isize)
        .to_bytes();
    (0, len + VLAN_HLEN)
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, opt: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: passes a pointer to a live `T` with its true size; the kernel only reads it.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

fn auxdata(msg: &libc::msghdr) -> Option<TpacketAuxdata> {
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR stay within msg_control.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !c.is_null() {
        // SAFETY: `c` is non-null and points at a cmsghdr inside msg_control.
        let h = unsafe { &*c };
        if h.cmsg_level == SOL_PACKET && h.cmsg_type == PACKET_AUXDATA {
            // SAFETY: an PACKET_AUXDATA message carries a tpacket_auxdata; read_unaligned
            // because cmsg data has no alignment promise for our struct.
            return Some(unsafe {
                std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const TpacketAuxdata)
            });
        }
        // SAFETY: as above; NXTHDR returns null past the end.
        c = unsafe { libc::CMSG_NXTHDR(msg, c) };
    }
    None
}
