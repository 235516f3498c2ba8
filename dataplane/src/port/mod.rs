//! Port I/O: the ports' own syscalls and `unsafe` (the rest of the dataplane's live in
//! [`crate::sys`]).
//!
//! - [`tap::Tap`]: a tap the switch creates and holds, with vnet headers.
//! - [`packet::PacketSocket`]: an existing interface (netdev port) over AF_PACKET, with a
//!   receive ring.
//! - [`batch`]: the per-worker receive and transmit batches.
//! - [`PortIo::Detached`]: configured, but no interface behind it right now (a netdev whose
//!   interface does not exist yet or vanished).

pub mod batch;
pub mod netlink;
pub mod packet;
pub mod tap;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use crate::counters::PortCounters;
use crate::wire::{EgressFrame, VnetHdr};

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
}

impl Port {
    /// Opens (or creates) the tap `name`.
    pub fn tap(name: &str) -> Result<Port> {
        Ok(Port {
            name: name.to_string(),
            io: PortIo::Tap(tap::Tap::open(name)?),
            counters: Arc::default(),
            rx: batch::RxLock::default(),
            rx_failed: AtomicI32::new(0),
            disabled: AtomicBool::new(false),
        })
    }

    /// Attaches to the existing interface `name` (a netdev port), keeping `counters`.
    pub fn netdev(name: &str, counters: Arc<PortCounters>) -> Result<Port> {
        Ok(Port {
            name: name.to_string(),
            io: PortIo::Packet(packet::PacketSocket::open(name)?),
            counters,
            rx: batch::RxLock::default(),
            rx_failed: AtomicI32::new(0),
            disabled: AtomicBool::new(false),
        })
    }

    /// A port with no interface behind it.
    pub fn detached(name: &str, reason: impl Into<String>, counters: Arc<PortCounters>) -> Port {
        Port {
            name: name.to_string(),
            io: PortIo::Detached {
                reason: reason.into(),
            },
            counters,
            rx: batch::RxLock::default(),
            rx_failed: AtomicI32::new(0),
            disabled: AtomicBool::new(false),
        }
    }

    /// The port name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The I/O kind.
    pub fn io(&self) -> &PortIo {
        &self.io
    }

    /// The fd to wait on, if attached.
    pub fn fd(&self) -> Option<RawFd> {
        match &self.io {
            PortIo::Tap(t) => Some(t.as_raw_fd()),
            PortIo::Packet(p) => Some(p.as_raw_fd()),
            PortIo::Detached { .. } => None,
        }
    }

    /// True if frames can be sent and received.
    pub fn is_attached(&self) -> bool {
        self.fd().is_some()
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
            PortIo::Tap(_) | PortIo::Detached { .. } => None,
        }
    }

    /// Sends `frame` behind `hdr`, the way this port's kind does: a tap writes it at once
    /// (`Sent::Now`, with its bytes on the wire), a packet socket queues it in `tx` for one
    /// `sendmmsg` per port at the flush (`Sent::Queued`; the flush reports it under `key`).
    /// The caller flushes `tx` when it is full before calling this. A port without an
    /// interface refuses with `ENETDOWN` (its link is down).
    #[inline]
    pub fn send<'a>(
        &'a self,
        tx: &mut batch::TxBatch<'a>,
        key: u32,
        hdr: &VnetHdr,
        frame: &EgressFrame<'a>,
    ) -> io::Result<Sent> {
        match &self.io {
            PortIo::Tap(t) => t.send(hdr, frame).map(|()| Sent::Now(frame.wire_len(hdr))),
            PortIo::Packet(p) => {
                if tx.push(p, key, hdr, frame) {
                    Ok(Sent::Queued)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                }
            }
            PortIo::Detached { .. } => Err(io::Error::from_raw_os_error(libc::ENETDOWN)),
        }
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
    /// ring (no syscall), or one read per frame on a tap. Returns how many; `WouldBlock` when
    /// none is queued.
    #[inline]
    pub fn recv_batch(&mut self, batch: &mut batch::RxBatch) -> io::Result<usize> {
        match &self.port.io {
            PortIo::Tap(t) => batch.fill(|hdr, buf| t.recv(hdr, buf)),
            PortIo::Packet(p) => p.recv_batch(&self.reader, batch),
            PortIo::Detached { .. } => Err(io::ErrorKind::NotConnected.into()),
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
