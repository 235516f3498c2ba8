//! netdev ports: an existing interface (a VM's tap held by QEMU, a veth, a NIC) attached through
//! an AF_PACKET socket with `PACKET_VNET_HDR`, so GSO super-frames and partial checksums pass
//! intact in both directions.
//!
//! The socket is bound to the interface's ifindex, joins promiscuous mode as a membership (the
//! kernel drops it when the socket closes; the interface's own flags are never flipped), and
//! ignores outgoing frames, so it sees only what the interface receives.
//!
//! Frames arrive through a `TPACKET_V2` receive ring shared with the kernel, so reading costs
//! no syscall while frames are waiting; frames too big for a ring slot (GSO super-frames) come
//! whole through the socket's queue, in order. Frames leave with `sendmmsg` (see
//! [`super::batch`]).
//!
//! The kernel strips the outer VLAN tag of a received frame (into the ring slot's header, or
//! `PACKET_AUXDATA` on the queue) before packet sockets see it; the receive path puts it back
//! in front of the payload (the frame goes 4 bytes into its buffer to leave room) and moves
//! the vnet header's offsets with it.
//!
//! Why not `pnet_datalink`: it has no `PACKET_VNET_HDR` (so every TCP frame would be segmented
//! and checksummed in software before we see it) and no auxdata, so tags would be lost.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use super::batch::{RxBatch, RxGuard, RX_HEADROOM};
use super::{PortError, Result};
use crate::sys::cvt;
use crate::wire::{VnetHdr, ADDRS_LEN, VLAN_HLEN};

// From <linux/if_packet.h> and <linux/if_ether.h>.
const SOL_PACKET: libc::c_int = 263;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_COPY_THRESH: libc::c_int = 7;
const PACKET_AUXDATA: libc::c_int = 8;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_VERSION: libc::c_int = 10;
const TPACKET_V2: libc::c_int = 1;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1 << 0;
const TP_STATUS_COPY: u32 = 1 << 1;
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

/// The ifindex of interface `name`, if it exists in this namespace.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// Interface `name`'s MTU (`SIOCGIFMTU`, in the calling thread's namespace).
pub fn mtu(name: &str) -> io::Result<u32> {
    crate::config::check_ifname(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: socket takes no pointers; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU fills `ifr_ifru.ifru_mtu` of the ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the union member was just written by SIOCGIFMTU.
    Ok(unsafe { ifr.ifr_ifru.ifru_mtu } as u32)
}

/// Sets `IFF_UP` on interface `name` (other flags unchanged).
pub fn set_link_up(name: &str) -> Result<()> {
    let err = |op: &'static str| PortError::Ioctl {
        port: name.to_string(),
        op,
        source: io::Error::last_os_error(),
    };
    crate::config::check_ifname(name).map_err(|_| PortError::BadName(name.to_string()))?;
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

/// One frame slot of the receive ring: the `tpacket2_hdr`, then the vnet header and the frame
/// at `tp_mac`. 2 KiB holds any frame up to a 1500-byte MTU with a tag; bigger frames (GSO
/// super-frames, jumbo frames) wait whole in the socket's queue (see [`RxRing`]).
const RING_FRAME: usize = 2048;
/// Bytes per ring block (a block is contiguous kernel memory holding 32 slots).
const RING_BLOCK: usize = 64 * 1024;
/// Frames in a port's receive ring: 2 MiB per port.
const RING_FRAMES: usize = 1024;

/// The socket's `PACKET_RX_RING` (`TPACKET_V2`), mapped into our memory.
///
/// The kernel copies each received frame into the next slot and flips its status to
/// `TP_STATUS_USER`; the reader copies it out and hands the slot back (`TP_STATUS_KERNEL`), no
/// syscall per frame or per batch. A frame too big for a slot (a 64 KiB GSO frame) is cloned
/// whole onto the socket's ordinary queue (`PACKET_COPY_THRESH`) and its slot is marked
/// `TP_STATUS_COPY`: the reader takes it from there with `recvmsg`, in ring order. If that
/// queue is full (8 MiB of frames waiting), the slot keeps only the frame's first bytes; the
/// reader counts it as a bad frame.
#[derive(Debug)]
struct RxRing {
    base: *mut u8,
    /// The slot the reader looks at next.
    next: AtomicUsize,
}

// SAFETY: the mapping is owned by this struct for its whole life. Slots are read and written
// only by `PacketSocket::recv_batch`, which takes the guard of its port's one reader lock
// (`Port::try_rx`; the socket is reachable only through its port), so one thread at a time
// touches them; the kernel touches a slot only while its status says `TP_STATUS_KERNEL`.
unsafe impl Send for RxRing {}
// SAFETY: as above.
unsafe impl Sync for RxRing {}

impl RxRing {
    const LEN: usize = RING_FRAME * RING_FRAMES;

    /// Sets up and maps the ring on `fd` (after `PACKET_VNET_HDR`, before `bind`).
    fn new(fd: RawFd) -> io::Result<RxRing> {
        setsockopt(fd, SOL_PACKET, PACKET_VERSION, &TPACKET_V2)?;
        // Any frame that does not fit a slot goes to the socket queue whole.
        let on: libc::c_int = 1;
        setsockopt(fd, SOL_PACKET, PACKET_COPY_THRESH, &on)?;
        let req = TpacketReq {
            tp_block_size: RING_BLOCK as u32,
            tp_block_nr: (Self::LEN / RING_BLOCK) as u32,
            tp_frame_size: RING_FRAME as u32,
            tp_frame_nr: RING_FRAMES as u32,
        };
        setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req)?;
        // SAFETY: maps the ring the kernel just made for `fd`, at its true size; the result is
        // checked. The mapping is unmapped in Drop.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(RxRing {
            base: base.cast(),
            next: AtomicUsize::new(0),
        })
    }

    /// The status word of slot `i`.
    fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: slot i starts inside the mapping at a 2 KiB boundary (aligned for u32);
        // tp_status is the slot's first field, shared with the kernel, so it is accessed
        // atomically only.
        unsafe { AtomicU32::from_ptr(self.base.add(i * RING_FRAME).cast()) }
    }

    /// The bytes of slot `i`. Only while its status is `TP_STATUS_USER` (the kernel does not
    /// write it then).
    fn slot(&self, i: usize) -> &[u8] {
        // SAFETY: slot i lies inside the mapping; the caller saw TP_STATUS_USER with Acquire,
        // so the kernel finished writing it and leaves it alone until we hand it back.
        unsafe { std::slice::from_raw_parts(self.base.add(i * RING_FRAME), RING_FRAME) }
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; nothing borrows it any more (slot
        // borrows end within recv_batch).
        unsafe { libc::munmap(self.base.cast(), Self::LEN) };
    }
}

#[repr(C)]
struct TpacketReq {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
}

/// An AF_PACKET socket attached to one interface.
#[derive(Debug)]
pub struct PacketSocket {
    // Field order: the ring is unmapped before the socket closes.
    ring: RxRing,
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
        // Protocol 0: the socket receives nothing until `bind` names the protocol and the
        // interface. A socket opened with ETH_P_ALL would take frames from every interface
        // while its options and ring are set up, and they would count as this port's.
        // SAFETY: socket takes no pointers; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
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
        let ring = RxRing::new(raw).map_err(|_| err("PACKET_RX_RING"))?;
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
        Ok(PacketSocket { ring, fd, ifindex })
    }

    /// The interface's ifindex at attach time.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Reads one frame from the socket's queue (where frames too big for the ring wait): its
    /// vnet header into `hdr`, the frame into `buf`, with any VLAN tag the kernel had stripped
    /// put back. Returns the frame's (start, length) within `buf`.
    fn recv(&self, hdr: &mut [u8; VnetHdr::LEN], buf: &mut [u8]) -> io::Result<(usize, usize)> {
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

    /// Takes up to [`RX_BATCH`](super::batch::RX_BATCH) frames from the receive ring, each
    /// copied into its own slot of `batch` (4 bytes in, so that a VLAN tag the kernel stripped
    /// can be put back in front of the payload; the vnet header's offsets move with it). A
    /// frame the kernel queued whole (too big for a ring slot) is read with `recvmsg`. Returns
    /// how many; `WouldBlock` when none is waiting. `_reader` is the port's reader guard:
    /// one thread at a time reads the ring.
    pub(super) fn recv_batch(
        &self,
        _reader: &RxGuard<'_>,
        batch: &mut RxBatch,
    ) -> io::Result<usize> {
        let ring = &self.ring;
        let mut i = ring.next.load(Ordering::Relaxed);
        let got = batch.fill(|hdr, slot| {
            let status = ring.status(i).load(Ordering::Acquire);
            if status & TP_STATUS_USER == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let f = if status & TP_STATUS_COPY != 0 {
                match self.recv(hdr, slot) {
                    Ok(f) => f,
                    // Cut short (it was taken off the queue): a bad frame.
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => (RX_HEADROOM, 0),
                    // A pending socket error (the link went down meanwhile) is reported
                    // before the queue is looked at, and cleared: the frame is still queued,
                    // and must be taken now or every later copied frame would be off by one.
                    Err(_) => self.recv(hdr, slot).unwrap_or((RX_HEADROOM, 0)),
                }
            } else {
                ring_frame(status, ring.slot(i), hdr, slot)
            };
            ring.status(i).store(TP_STATUS_KERNEL, Ordering::Release);
            i = (i + 1) % RING_FRAMES;
            Ok(f)
        });
        ring.next.store(i, Ordering::Relaxed);
        got
    }

    /// Frames the kernel dropped for this socket since the last call (its receive ring or
    /// buffer was full), from `PACKET_STATISTICS`, which resets on each read.
    pub fn take_kernel_drops(&self) -> io::Result<u64> {
        // struct tpacket_stats { tp_packets, tp_drops } (the first fields of the V3 form).
        let mut st = [0u32; 3];
        let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `st`, which we own.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                SOL_PACKET,
                PACKET_STATISTICS,
                st.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(u64::from(st[1]))
    }

    /// Reads and clears the socket's pending error (`SO_ERROR`): the kernel sets one when the
    /// interface goes down (`ENETDOWN`) or away, and epoll keeps reporting it until it is read.
    pub fn take_error(&self) -> Option<io::Error> {
        let mut err: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `err`, which we own.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if r < 0 {
            return Some(io::Error::last_os_error());
        }
        (err != 0).then(|| io::Error::from_raw_os_error(err))
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Copies the frame in ring slot `ring` (status `status`) into `slot` after the headroom and
/// its vnet header into `hdr`, puts back a stripped tag, and returns the frame's (start,
/// length) in `slot`; length 0 if the ring slot does not hold a whole frame.
fn ring_frame(
    status: u32,
    ring: &[u8],
    hdr: &mut [u8; VnetHdr::LEN],
    slot: &mut [u8],
) -> (usize, usize) {
    // struct tpacket2_hdr: status, len, snaplen (u32), mac, net (u16), sec, nsec (u32),
    // vlan_tci, vlan_tpid (u16).
    let u32_at = |o: usize| u32::from_ne_bytes([ring[o], ring[o + 1], ring[o + 2], ring[o + 3]]);
    let u16_at = |o: usize| u16::from_ne_bytes([ring[o], ring[o + 1]]);
    let (len, snaplen, mac) = (u32_at(4) as usize, u32_at(8) as usize, u16_at(12) as usize);
    let whole = snaplen == len
        && mac >= 32 + VnetHdr::LEN
        && mac + snaplen <= ring.len()
        && RX_HEADROOM + snaplen <= slot.len();
    if !whole {
        return (RX_HEADROOM, 0);
    }
    hdr.copy_from_slice(&ring[mac - VnetHdr::LEN..mac]);
    slot[RX_HEADROOM..RX_HEADROOM + snaplen].copy_from_slice(&ring[mac..mac + snaplen]);
    let aux = TpacketAuxdata {
        tp_status: status,
        tp_len: len as u32,
        tp_snaplen: snaplen as u32,
        tp_mac: 0,
        tp_net: 0,
        tp_vlan_tci: u16_at(24),
        tp_vlan_tpid: u16_at(26),
    };
    restore_tag(Some(aux), hdr, slot, snaplen)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring slot as the kernel fills it: tpacket2_hdr, the vnet header right before the
    /// frame at `mac`.
    fn ring_slot(status: u32, frame: &[u8], len: usize, mac: usize, tci: u16) -> Vec<u8> {
        let mut r = vec![0u8; RING_FRAME];
        r[0..4].copy_from_slice(&status.to_ne_bytes());
        r[4..8].copy_from_slice(&(len as u32).to_ne_bytes());
        r[8..12].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        r[12..14].copy_from_slice(&(mac as u16).to_ne_bytes());
        r[24..26].copy_from_slice(&tci.to_ne_bytes());
        // vnet header: NEEDS_CSUM, csum_start 34 (after an untagged IPv4 header), offset 16
        let v = VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            gso_type: VnetHdr::GSO_NONE,
            hdr_len: 0,
            gso_size: 0,
            csum_start: 34,
            csum_offset: 16,
        };
        r[mac - VnetHdr::LEN..mac].copy_from_slice(&v.to_bytes());
        r[mac..mac + frame.len()].copy_from_slice(frame);
        r
    }

    fn frame() -> Vec<u8> {
        let mut f = vec![0xaa; 6];
        f.extend_from_slice(&[0xbb; 6]);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0x45; 46]);
        f
    }

    #[test]
    fn an_untagged_ring_frame_is_copied_after_the_headroom() {
        let f = frame();
        let ring = ring_slot(TP_STATUS_USER, &f, f.len(), 90, 0);
        let mut hdr = [0u8; VnetHdr::LEN];
        let mut slot = vec![0u8; 256];
        let (start, len) = ring_frame(TP_STATUS_USER, &ring, &mut hdr, &mut slot);
        assert_eq!((start, len), (RX_HEADROOM, f.len()));
        assert_eq!(&slot[start..start + len], &f[..]);
        assert_eq!(VnetHdr::from_bytes(&hdr).csum_start, 34);
    }

    #[test]
    fn a_stripped_tag_is_put_back_and_the_vnet_offsets_move() {
        let f = frame();
        let status = TP_STATUS_USER | TP_STATUS_VLAN_VALID;
        let ring = ring_slot(status, &f, f.len(), 90, 0x200a); // PCP 1, VID 10
        let mut hdr = [0u8; VnetHdr::LEN];
        let mut slot = vec![0u8; 256];
        let (start, len) = ring_frame(status, &ring, &mut hdr, &mut slot);
        assert_eq!((start, len), (0, f.len() + 4));
        let out = &slot[start..start + len];
        assert_eq!(&out[..12], &f[..12]);
        assert_eq!(&out[12..16], &[0x81, 0x00, 0x20, 0x0a]);
        assert_eq!(&out[16..], &f[12..]);
        assert_eq!(VnetHdr::from_bytes(&hdr).csum_start, 38);
    }

    #[test]
    fn a_cut_or_misplaced_ring_frame_is_not_forwarded() {
        let f = frame();
        let mut hdr = [0u8; VnetHdr::LEN];
        let mut slot = vec![0u8; 256];
        // The kernel kept fewer bytes than the frame had.
        let cut = ring_slot(TP_STATUS_USER, &f, f.len() + 100, 90, 0);
        assert_eq!(ring_frame(TP_STATUS_USER, &cut, &mut hdr, &mut slot).1, 0);
        // The frame would start inside the slot header.
        let low = ring_slot(TP_STATUS_USER, &f, f.len(), 20, 0);
        assert_eq!(ring_frame(TP_STATUS_USER, &low, &mut hdr, &mut slot).1, 0);
        // The destination slot is too small for it.
        let ok = ring_slot(TP_STATUS_USER, &f, f.len(), 90, 0);
        let mut small = vec![0u8; 32];
        assert_eq!(ring_frame(TP_STATUS_USER, &ok, &mut hdr, &mut small).1, 0);
    }
}
