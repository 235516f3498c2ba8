//! Tap ports: a tap interface the switch creates (or an existing persistent one it opens),
//! with `IFF_VNET_HDR` so that GSO super-frames and partial checksums pass through intact.
//!
//! Why not the `tun-tap` crate: it cannot set `IFF_VNET_HDR` (nor `IFF_MULTI_QUEUE`), and without
//! the vnet header the kernel must segment and checksum every TCP frame before handing it to us,
//! which costs an order of magnitude in throughput. The ioctls are few, so they live here.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use super::{PortError, Result};
use crate::wire::{EgressFrame, VnetHdr};

// From <linux/if_tun.h>.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;

/// `struct ifreq` with the `ifr_flags` member of its union.
#[repr(C)]
struct IfReqFlags {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An open tap queue. Reads and writes carry a [`VnetHdr`] in front of each frame.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    created: bool,
}

impl Tap {
    /// Creates the tap `name`, or attaches to an existing persistent tap of that name, in
    /// non-blocking mode with vnet headers and checksum/TSO offloads enabled.
    pub fn open(name: &str) -> Result<Tap> {
        crate::config::check_ifname(name).map_err(|_| PortError::BadName(name.to_string()))?;
        let existed = std::path::Path::new("/sys/class/net").join(name).exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|source| PortError::TunDevice { source })?;
        let mut ifr = IfReqFlags {
            name: [0; 16],
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
            _pad: [0; 22],
        };
        ifr.name[..name.len()].copy_from_slice(name.as_bytes());
        let fd = file.as_raw_fd();
        let ioctl_err = |op: &'static str| {
            let source = io::Error::last_os_error();
            PortError::Ioctl {
                port: name.to_string(),
                op,
                source,
            }
        };
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `ifr` has its size and layout
        // and lives across the call.
        if unsafe { libc::ioctl(fd, TUNSETIFF, &mut ifr as *mut IfReqFlags) } < 0 {
            return Err(ioctl_err("TUNSETIFF"));
        }
        let hdr_len = VnetHdr::LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which outlives the call.
        if unsafe { libc::ioctl(fd, TUNSETVNETHDRSZ, &hdr_len as *const libc::c_int) } < 0 {
            return Err(ioctl_err("TUNSETVNETHDRSZ"));
        }
        let offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
        // SAFETY: TUNSETOFFLOAD takes its flags by value; no memory is shared.
        if unsafe { libc::ioctl(fd, TUNSETOFFLOAD, offloads as libc::c_ulong) } < 0 {
            return Err(ioctl_err("TUNSETOFFLOAD"));
        }
        Ok(Tap {
            file,
            name: name.to_string(),
            created: !existed,
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True if this call created the interface (it disappears when the switch closes it);
    /// false if it opened an existing persistent tap (which stays).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Reads one frame: its vnet header into `hdr`, the frame into `buf`. Returns the frame's
    /// (start, length) in `buf`; the start is always 0. `WouldBlock` when nothing is queued.
    #[inline]
    pub fn recv(&self, hdr: &mut [u8; VnetHdr::LEN], buf: &mut [u8]) -> io::Result<(usize, usize)> {
        let iov = [
            libc::iovec {
                iov_base: hdr.as_mut_ptr().cast(),
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            },
        ];
        // SAFETY: both iovecs point into buffers we hold mutably for the whole call, with their
        // true lengths.
        let n = unsafe { libc::readv(self.file.as_raw_fd(), iov.as_ptr(), iov.len() as i32) };
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
        if n - VnetHdr::LEN >= buf.len() {
            // The kernel cut the frame to fit: never forward a truncated frame.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "frame larger than the receive buffer",
            ));
        }
        Ok((0, n - VnetHdr::LEN))
    }

    /// Writes one frame, given as pieces, behind `hdr`, with one `writev`.
    #[inline]
    pub fn send(&self, hdr: &VnetHdr, frame: &EgressFrame<'_>) -> io::Result<()> {
        super::writev_frame(self.file.as_raw_fd(), hdr, frame)
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
