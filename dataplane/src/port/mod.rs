//! Port I/O: the ports' own syscalls and `unsafe` (the rest of the dataplane's live in
//! [`crate::sys`]).
//!
//! - [`tap::Tap`]: a tap the switch creates and holds, with vnet headers.
//! - [`packet::PacketSocket`]: an existing interface (netdev port) over AF_PACKET, with a
//!   receive ring.
//! - [`vhost::VhostUser`]: a VM's virtio rings over vhost-user, served from guest memory.
//! - [`batch`]: the per-worker receive and transmit batches.
//! - [`vxlan`]: the VXLAN tunnel interfaces the switch makes (a tunnel port is a netdev port
//!   on one of them, removed with the port).
//! - [`PortIo::Detached`]: configured, but no interface behind it right now (a netdev whose
//!   interface does not exist yet or vanished).

pub mod batch;
pub mod netlink;
pub mod packet;
pub mod tap;
pub mod vhost;
pub mod vxlan;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use crate::counters::{DropReason, PortCounters};
use crate::wire::{EgressFrame, VnetHdr};

impl crate::trace::PortState for Arc<Port> {
    fn is_disabled(&self) -> bool {
        Port::is_disabled(self)
    }
}

/// Errors opening or configuring a port.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The name cannot be an interface name ([`crate::config::check_ifname`]).
    #[error("{0:?} is not a valid interface name (1-15 bytes, no '/', ':', whitespace or NUL)")]
    BadName(String),
    /// `/dev/net/tun` could not be opened.
    #[error("cannot open /dev/net/tun (is the tun module loaded, and are we root?)")]
    TunDevice {
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A netdev port's interface does not exist.
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
    /// A tap port's name is an existing interface the switch cannot open as its tap.
    #[error("{name} exists and {why}: to switch it, attach it as a netdev port (kind netdev)")]
    NotATap {
        /// The interface.
        name: String,
        /// What it is instead.
        why: &'static str,
    },
    /// A vhost-user port's device could not be started (its socket, its thread).
    #[error("port {port}: cannot start the vhost-user device")]
    VhostUser {
        /// The port name.
        port: String,
        /// Why.
        #[source]
        source: vhost_port::DeviceError,
    },
    /// A VXLAN tunnel port's interface could not be made or set up.
    #[error("{op}")]
    Tunnel {
        /// The port name.
        port: String,
        /// What failed.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An ioctl on the port failed.
    #[error("port {port}: {op} failed")]
    Ioctl {
        /// The port name.
        port: String,
        /// The ioctl.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, PortError>;

/// How a port moves frames.
#[derive(Debug)]
pub enum PortIo {
    /// A tap with vnet headers.
    Tap(tap::Tap),
    /// An existing interface over AF_PACKET with vnet headers.
    Packet(packet::PacketSocket),
    /// A VM's (or DPDK application's) virtio rings, over a vhost-user socket.
    VhostUser(vhost::VhostUser),
    /// Configured but not attached to any interface; frames to it are not sent.
    Detached {
        /// Why, for logs and state.
        reason: String,
    },
}

/// A port's I/O handle and counters. Shared (`Arc`) by every snapshot that contains the port.
#[derive(Debug)]
pub struct Port {
    name: String,
    io: PortIo,
    /// Traffic and drop counters; kept when a port is re-attached.
    pub counters: Arc<PortCounters>,
    /// The right to read this port: one reader at a time, so frames keep their order.
    rx: batch::RxLock,
    /// The errno of a receive error that stopped the port (0: none).
    rx_failed: AtomicI32,
    /// Shut down by port security: frames from and to it are dropped.
    disabled: AtomicBool,
    /// Captures and live traces armed on this port ([`crate::watch`]).
    pub watches: crate::watch::PortWatches,
    /// A tunnel port's interface, removed when the port closes (after `io`, declared before
    /// it, let go of it).
    tunnel: Option<vxlan::Tunnel>,
}

impl Port {
    /// Opens (or creates) the tap `name` ([`tap::Tap::open`]).
    pub fn tap(name: &str, lifetime: tap::Lifetime) -> Result<Port> {
        Ok(Self::of_tap(name, tap::Tap::open(name, lifetime)?))
    }

    /// Re-attaches the kept tap of port `name`, now `ifname` in the network namespace at
    /// `netns` ([`tap::Tap::reopen_in`]).
    pub fn kept_tap(name: &str, netns: &std::path::Path, ifname: &str) -> Result<Port> {
        Ok(Self::of_tap(
            name,
            tap::Tap::reopen_in(name, netns, ifname)?,
        ))
    }

    fn of_tap(name: &str, tap: tap::Tap) -> Port {
        Self::with_io(name, PortIo::Tap(tap), Arc::default())
    }

    fn with_io(name: &str, io: PortIo, counters: Arc<PortCounters>) -> Port {
        Port {
            name: name.to_string(),
            io,
            counters,
            rx: batch::RxLock::default(),
            rx_failed: AtomicI32::new(0),
            disabled: AtomicBool::new(false),
            watches: Default::default(),
            tunnel: None,
        }
    }

    /// The switch is stopping and will be back: a kept tap stays when this port closes.
    pub fn keep_interface(&self) {
        if let PortIo::Tap(t) = &self.io {
            t.keep();
        }
    }

    /// Attaches to the existing interface `name` (a netdev port), keeping `counters`.
    pub fn netdev(name: &str, counters: Arc<PortCounters>) -> Result<Port> {
        let io = PortIo::Packet(packet::PacketSocket::open(name)?);
        Ok(Self::with_io(name, io, counters))
    }

    /// Makes the VXLAN interface `spec` describes (replacing one an earlier run left), sets it
    /// up and attaches to it as a netdev port, keeping `counters`. The interface is removed
    /// when the port closes.
    pub fn vxlan(spec: &vxlan::TunnelSpec, counters: Arc<PortCounters>) -> Result<Port> {
        let err = |op| {
            move |source| PortError::Tunnel {
                port: spec.name.clone(),
                op,
                source,
            }
        };
        let tunnel = vxlan::Tunnel::create(spec).map_err(err("cannot make the VXLAN interface"))?;
        packet::set_link_up(&spec.name)?;
        let io = PortIo::Packet(packet::PacketSocket::open(&spec.name)?);
        let mut port = Self::with_io(&spec.name, io, counters);
        port.tunnel = Some(tunnel);
        Ok(port)
    }

    /// Whether this port is a tunnel the switch made.
    pub fn is_tunnel(&self) -> bool {
        self.tunnel.is_some()
    }

    /// Starts a vhost-user port on `socket` (server: created now; client: connected in the
    /// background), keeping `counters`.
    pub fn vhost_user(
        name: &str,
        socket: std::path::PathBuf,
        mode: vhost_port::SocketMode,
        counters: Arc<PortCounters>,
    ) -> Result<Port> {
        let io = PortIo::VhostUser(vhost::VhostUser::start(name, socket, mode)?);
        Ok(Self::with_io(name, io, counters))
    }

    /// A port with no interface behind it.
    pub fn detached(name: &str, reason: impl Into<String>, counters: Arc<PortCounters>) -> Port {
        let io = PortIo::Detached {
            reason: reason.into(),
        };
        Self::with_io(name, io, counters)
    }

    /// The port name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The I/O kind.
    pub fn io(&self) -> &PortIo {
        &self.io
    }

    /// The fd a worker waits on, for kinds with one fixed fd (a vhost-user guest's kick fd
    /// changes with each connection; [`Port::watch`] follows it).
    fn fd(&self) -> Option<RawFd> {
        match &self.io {
            PortIo::Tap(t) => Some(t.as_raw_fd()),
            PortIo::Packet(p) => Some(p.as_raw_fd()),
            PortIo::VhostUser(_) | PortIo::Detached { .. } => None,
        }
    }

    /// True if the port has something behind it to send to and receive from (an interface,
    /// or a vhost-user device, connected or waiting for its frontend).
    pub fn is_attached(&self) -> bool {
        !matches!(self.io, PortIo::Detached { .. })
    }

    /// Whether reading the port turns its wakeups off until [`PortRx::rearm`] turns them on
    /// again (a vhost-user guest is asked not to kick while its ring is being read). Such a
    /// port is the one a worker polls after traffic instead of waiting for its next wakeup
    /// (adaptive polling); taps and packet sockets are reported by epoll whenever frames
    /// wait, so polling epoll covers them.
    pub fn rearms(&self) -> bool {
        matches!(self.io, PortIo::VhostUser(_))
    }

    /// Makes the worker that waits on `epoll` the one woken, with `token`, when frames
    /// arrive on this port. Nothing for a detached port.
    pub fn watch(&self, epoll: &Arc<crate::sys::Epoll>, token: u64) -> io::Result<()> {
        match &self.io {
            PortIo::VhostUser(v) => v.watch(epoll, token),
            _ => match self.fd() {
                Some(fd) => epoll.add(fd, token),
                None => Ok(()),
            },
        }
    }

    /// Stops waking the worker that waits on `epoll` for this port.
    pub fn unwatch(&self, epoll: &crate::sys::Epoll) {
        match &self.io {
            PortIo::VhostUser(v) => v.unwatch(),
            _ => {
                if let Some(fd) = self.fd() {
                    let _ = epoll.delete(fd);
                }
            }
        }
    }

    /// Why the port cannot carry frames now, for people (`None`: its link is up): a netdev
    /// whose interface is missing, a receive that failed for good, a vhost-user port without
    /// its frontend (and why it left).
    pub fn down_reason(&self) -> Option<String> {
        match &self.io {
            PortIo::Detached { reason } => Some(reason.clone()),
            PortIo::VhostUser(v) => v.down_reason(),
            PortIo::Tap(_) | PortIo::Packet(_) => self
                .rx_failure()
                .map(|e| format!("receive failed ({e}); the interface was probably deleted")),
        }
    }

    /// True while port security has shut the port down.
    #[inline]
    pub fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }

    /// Shuts the port down (`true`) or enables it again; returns whether it was shut down.
    pub fn set_disabled(&self, disabled: bool) -> bool {
        self.disabled.swap(disabled, Ordering::Relaxed)
    }

    /// The right to read this port, with which its frames are read ([`PortRx::recv_batch`]);
    /// `None` if another worker reads it now, or if it has no interface. Never waits; the
    /// right ends when the returned value is dropped.
    #[inline]
    pub fn try_rx(&self) -> Option<PortRx<'_>> {
        if !self.is_attached() {
            return None;
        }
        let guard = self.rx.try_lock()?;
        Some(PortRx {
            port: self,
            reader: guard,
        })
    }

    /// Records that receiving failed for good (the interface was deleted, say). Returns true
    /// the first time, so the caller logs once.
    pub fn mark_rx_failed(&self, e: &io::Error) -> bool {
        let code = e.raw_os_error().unwrap_or(libc::EIO);
        self.rx_failed.swap(code, Ordering::Relaxed) == 0
    }

    /// The receive error that stopped this port, if one did.
    pub fn rx_failure(&self) -> Option<io::Error> {
        match self.rx_failed.load(Ordering::Relaxed) {
            0 => None,
            code => Some(io::Error::from_raw_os_error(code)),
        }
    }

    /// The port's counters, after adding the frames the kernel dropped for a netdev port
    /// since the last read (`rx_overrun`; only the kernel counts those). Use this, not
    /// `counters.values()`, to report a port's counters.
    pub fn counter_values(&self) -> crate::counters::CounterValues {
        if let PortIo::Packet(p) = &self.io {
            if let Ok(n) = p.take_kernel_drops() {
                if n > 0 {
                    self.counters
                        .count_drops(crate::counters::DropReason::RxOverrun, n);
                }
            }
        }
        self.counters.values()
    }

    /// Reads and clears a pending socket error (a netdev port's interface went down or away);
    /// `None` if there is none, and always for taps.
    pub fn take_error(&self) -> Option<io::Error> {
        match &self.io {
            PortIo::Packet(p) => p.take_error(),
            PortIo::Tap(_) | PortIo::VhostUser(_) | PortIo::Detached { .. } => None,
        }
    }

    /// Sends `frame` behind `hdr`, the way this port's kind does: a tap writes it at once
    /// (`Sent::Now`, with its bytes on the wire), a packet socket queues it in `tx` for one
    /// `sendmmsg` per port at the flush (`Sent::Queued`; the flush reports it under `key`), a
    /// vhost-user guest gets it copied into its RX ring at once (`Sent::Now`; the ring is
    /// published and the guest signalled at the flush). The caller flushes `tx` when it is
    /// full before calling this. A refused frame comes back as the reason to count it under;
    /// a port without an interface refuses with `LinkDown`.
    #[inline]
    pub fn send<'a>(
        &'a self,
        tx: &mut batch::TxBatch<'a>,
        key: u32,
        hdr: &VnetHdr,
        frame: &EgressFrame<'a>,
    ) -> std::result::Result<Sent, DropReason> {
        match &self.io {
            PortIo::Tap(t) => match t.send(hdr, frame) {
                Ok(()) => Ok(Sent::Now(frame.wire_len(hdr))),
                Err(e) => Err(tx_drop(&e)),
            },
            PortIo::Packet(p) => {
                if tx.push(p, key, hdr, frame) {
                    Ok(Sent::Queued)
                } else {
                    Err(DropReason::TxError)
                }
            }
            PortIo::VhostUser(v) => v.send(tx, key, hdr, frame),
            PortIo::Detached { .. } => Err(DropReason::LinkDown),
        }
    }
}

/// Why a write to an egress port failed, as a drop reason.
pub fn tx_drop(e: &io::Error) -> DropReason {
    match e.raw_os_error() {
        // The interface is not up and running (not yet, or no longer), or is gone (the
        // control side detaches the port soon after). A tap whose interface is down refuses
        // writes with EIO; a packet socket says ENETDOWN.
        Some(libc::ENETDOWN | libc::EIO | libc::ENXIO | libc::ENODEV) => DropReason::LinkDown,
        _ => DropReason::TxError,
    }
}

/// What [`Port::send`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Sent now: this many bytes on the wire.
    Now(usize),
    /// Queued in the transmit batch; counted when it is flushed.
    Queued,
}

/// The right to read one port (from [`Port::try_rx`]); dropping it gives the right back.
#[derive(Debug)]
pub struct PortRx<'a> {
    port: &'a Port,
    reader: batch::RxGuard<'a>,
}

impl PortRx<'_> {
    /// Reads up to [`batch::RX_BATCH`] frames into `batch`: from a packet socket's receive
    /// ring (no syscall), one read per frame on a tap, from a vhost-user guest's TX ring (no
    /// syscall; the guest is signalled once at the end if it asked). Returns how many;
    /// `WouldBlock` when none is queued.
    #[inline]
    pub fn recv_batch(&mut self, batch: &mut batch::RxBatch) -> io::Result<usize> {
        match &self.port.io {
            PortIo::Tap(t) => batch.fill(|hdr, buf| t.recv(hdr, buf)),
            PortIo::Packet(p) => p.recv_batch(&self.reader, batch),
            PortIo::VhostUser(v) => v.recv_batch(&self.reader, batch),
            PortIo::Detached { .. } => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Call when the port's queue was found empty, before the worker sleeps: a kind that
    /// turned its wakeups off while it was being read (a vhost-user guest's kicks) turns them
    /// back on. True if frames arrived meanwhile, which no wakeup will announce: read again
    /// before sleeping. Always false for taps and packet sockets (epoll reports them while
    /// frames wait).
    #[inline]
    pub fn rearm(&mut self) -> bool {
        match &self.port.io {
            PortIo::VhostUser(v) => v.rearm(&self.reader),
            _ => false,
        }
    }
}

/// Writes `hdr` and `frame`, padded if it is short, to `fd` with one `writev` (taps and
/// packet sockets take a vnet header in front of each frame the same way); the layout is
/// [`batch::layout_frame`]'s.
#[inline]
pub(crate) fn writev_frame(fd: RawFd, hdr: &VnetHdr, frame: &EgressFrame<'_>) -> io::Result<()> {
    let mut h = [0u8; VnetHdr::LEN];
    let mut tag = [0u8; crate::wire::VLAN_HLEN];
    let mut iov = [batch::NO_IOV; batch::FRAME_IOVS];
    batch::layout_frame(&mut iov, &mut h, &mut tag, hdr, frame);
    // SAFETY: every iovec points at memory alive for the whole call (`h`, `tag`, the frame's
    // borrowed bytes, a static pad) with its true length; writev only reads through them
    // despite the `*mut` in the type.
    let n = unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as libc::c_int) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_refused_for_a_down_or_missing_link_is_link_down() {
        for errno in [libc::ENETDOWN, libc::EIO, libc::ENXIO, libc::ENODEV] {
            let e = io::Error::from_raw_os_error(errno);
            assert_eq!(tx_drop(&e), DropReason::LinkDown, "{e}");
        }
        for errno in [libc::EAGAIN, libc::ENOBUFS, libc::EINVAL] {
            let e = io::Error::from_raw_os_error(errno);
            assert_eq!(tx_drop(&e), DropReason::TxError, "{e}");
        }
    }
}
