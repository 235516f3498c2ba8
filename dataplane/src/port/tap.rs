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
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
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

/// The alias a tap carries when the switch made it persistent for port `port`: how a later
/// run finds it again, wherever its host moved it (another network namespace, another name),
/// and knows it is the switch's to remove.
pub fn marker(port: &str) -> String {
    format!("vlanswitch:{port}")
}

/// How a tap port treats its interface across switchd restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// The interface lives as long as the port: it goes when the port is removed or the
    /// switch stops (the switch runs without a state file).
    Port,
    /// A tap the switch creates is made persistent and marked ([`marker`]): it stays when the
    /// switch stops or dies, with its host's addresses and MAC, and the next run re-attaches
    /// it. It goes when the port is removed.
    Kept,
}

/// An open tap queue. Reads and writes carry a [`VnetHdr`] in front of each frame.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    created: bool,
    /// The switch made the interface persistent: it is removed when the port is (unless
    /// [`Tap::keep`] was called), by clearing the flag before the file closes.
    persistent: bool,
    keep: std::sync::atomic::AtomicBool,
}

impl Tap {
    /// Creates the tap `name`, or attaches to an existing persistent tap of that name, in
    /// non-blocking mode with vnet headers and checksum/TSO offloads enabled. With
    /// [`Lifetime::Kept`] a tap it creates is made persistent and marked, and an existing one
    /// that carries the port's marker (left by an earlier run) is the switch's again.
    pub fn open(name: &str, lifetime: Lifetime) -> Result<Tap> {
        crate::config::check_ifname(name).map_err(|_| PortError::BadName(name.to_string()))?;
        let existed = std::path::Path::new("/sys/class/net").join(name).exists();
        let mut tap = Self::attach(name, name, !existed).map_err(|e| match e {
            PortError::Ioctl {
                op: "TUNSETIFF",
                ref source,
                ..
            } if existed => match source.raw_os_error() {
                Some(libc::EINVAL) => PortError::NotATap {
                    name: name.to_string(),
                    why: "is not a tap (a veth, a NIC, a bridge, a tun?)",
                },
                Some(libc::EBUSY) => PortError::NotATap {
                    name: name.to_string(),
                    why: "is a tap another process holds (a VM's?)",
                },
                _ => e,
            },
            e => e,
        })?;
        if lifetime == Lifetime::Kept {
            let sys = std::path::Path::new("/sys/class/net").join(name);
            let ours = std::fs::read_to_string(sys.join("ifalias"))
                .is_ok_and(|a| a.trim_end() == marker(name));
            if !existed {
                // Marked first: a tap made persistent but not marked would be left forever if
                // the switch died right here.
                std::fs::write(sys.join("ifalias"), marker(name)).map_err(|source| {
                    PortError::Ioctl {
                        port: name.to_string(),
                        op: "writing ifalias",
                        source,
                    }
                })?;
            }
            if !existed || ours {
                tap.set_persist(true)?;
            }
        }
        Ok(tap)
    }

    /// Re-attaches the kept tap of port `port`, now named `ifname` in the network namespace
    /// at `netns` (a file such as `/run/netns/NAME` or `/proc/PID/ns/net`), where its host
    /// moved it: the interface, its MAC and addresses stay as they are.
    pub fn reopen_in(port: &str, netns: &std::path::Path, ifname: &str) -> Result<Tap> {
        crate::config::check_ifname(ifname).map_err(|_| PortError::BadName(ifname.to_string()))?;
        let ns = File::open(netns).map_err(|source| PortError::Ioctl {
            port: port.to_string(),
            op: "opening the network namespace",
            source,
        })?;
        // The thread that enters the namespace ends right after: the switch's own threads
        // never leave theirs. The tap's fd works from any namespace.
        let entered = crate::sys::in_netns(&ns, || {
            let tap = Self::attach(port, ifname, false)?;
            // The host's kernel dropped its neighbour entries with the carrier; the ones
            // it was resolving meanwhile would wait for their next retry.
            let c = std::ffi::CString::new(ifname)
                .map_err(|_| PortError::BadName(ifname.to_string()))?;
            // SAFETY: a NUL-terminated name; the call reads it only.
            let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
            if ifindex != 0 {
                match super::netlink::flush_unresolved_neighbours(ifindex) {
                    Ok(n) if n > 0 => tracing::debug!(
                        port,
                        removed = n,
                        "removed the host's unresolved neighbour entries"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(port, error = %e, "cannot read the host's neighbour entries")
                    }
                }
            }
            Ok(tap)
        });
        let mut tap = entered.map_err(|source| PortError::Ioctl {
            port: port.to_string(),
            op: "entering the network namespace",
            source,
        })??;
        tap.name = port.to_string();
        tap.set_persist(true)?;
        Ok(tap)
    }

    /// Leave the interface in place when this port closes (the switch is stopping and will
    /// re-attach it). Only a persistent tap can stay; others go with their file anyway.
    pub fn keep(&self) {
        self.keep.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the interface outlives the port's file ([`Lifetime::Kept`]).
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    fn set_persist(&mut self, on: bool) -> Result<()> {
        // SAFETY: TUNSETPERSIST takes its flag by value; no memory is shared.
        if unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                TUNSETPERSIST,
                libc::c_ulong::from(on),
            )
        } < 0
        {
            return Err(PortError::Ioctl {
                port: self.name.clone(),
                op: "TUNSETPERSIST",
                source: io::Error::last_os_error(),
            });
        }
        self.persistent = on;
        Ok(())
    }

    /// Opens /dev/net/tun and attaches to (or creates) the tap `ifname` in the calling
    /// thread's network namespace, for port `port`.
    fn attach(port: &str, ifname: &str, created: bool) -> Result<Tap> {
        let name = ifname;
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
                port: port.to_string(),
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
            created,
            persistent: false,
            keep: std::sync::atomic::AtomicBool::new(false),
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

impl Drop for Tap {
    fn drop(&mut self) {
        if self.persistent && !self.keep.load(std::sync::atomic::Ordering::Relaxed) {
            // The port is removed: the interface goes with the file, as a non-persistent
            // tap's would.
            if let Err(e) = self.set_persist(false) {
                tracing::warn!(port = %self.name, error = %e, "cannot remove the tap");
            }
        }
    }
}

/// Where the kept taps of an earlier run are now: for each port name (from the [`marker`] a
/// tap carries), the network namespace it is in and its name there. Looks in every named
/// namespace (`/run/netns`) and every process's (`/proc/PID/ns/net`), each once, and not in
/// the switch's own (a tap still there is re-attached by name). Only namespaces owned by the
/// switch's own user namespace count: in one an unprivileged user made (`unshare -Urn`),
/// anyone could mark a tap of their own and have it put into a port's VLANs.
pub fn find_kept() -> std::collections::HashMap<String, (std::path::PathBuf, String)> {
    use std::os::unix::fs::MetadataExt;
    let mut found = std::collections::HashMap::new();
    let id = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let mut seen: std::collections::HashSet<(u64, u64)> =
        id(std::path::Path::new("/proc/self/ns/net"))
            .into_iter()
            .collect();
    let mut candidates: Vec<std::path::PathBuf> = Vec::new();
    for dir in ["/run/netns", "/var/run/netns"] {
        if let Ok(rd) = std::fs::read_dir(dir) {
            candidates.extend(rd.flatten().map(|e| e.path()));
        }
    }
    if let Ok(rd) = std::fs::read_dir("/proc") {
        candidates.extend(
            rd.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|c| c.is_ascii_digit())
                })
                .map(|e| e.path().join("ns/net")),
        );
    }
    for ns in candidates {
        let Some(key) = id(&ns) else { continue };
        if !seen.insert(key) {
            continue;
        }
        let Ok(file) = File::open(&ns) else { continue };
        if !owned_by_our_user_namespace(&file) {
            continue;
        }
        let links =
            crate::sys::in_netns(&file, || super::netlink::dump_links().unwrap_or_default())
                .unwrap_or_default();
        for l in links {
            if let Some(port) = l
                .alias
                .as_deref()
                .and_then(|a| a.strip_prefix("vlanswitch:"))
            {
                found
                    .entry(port.to_string())
                    .or_insert_with(|| (ns.clone(), l.name.clone()));
            }
        }
    }
    found
}

/// Whether the namespace behind `ns` (an open namespace file) is owned by the user namespace
/// this process runs in (`NS_GET_USERNS`).
fn owned_by_our_user_namespace(ns: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    // NS_GET_USERNS = _IO(0xb7, 0x1), from <linux/nsfs.h>.
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    let Ok(ours) = std::fs::metadata("/proc/self/ns/user") else {
        return false;
    };
    // SAFETY: NS_GET_USERNS takes no argument and returns a new fd (or -1); `ns` is an open
    // namespace file.
    let fd = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_USERNS) };
    if fd < 0 {
        return false;
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let owner = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    owner
        .metadata()
        .is_ok_and(|m| (m.dev(), m.ino()) == (ours.dev(), ours.ino()))
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
