//! Port I/O. All syscalls and all `unsafe` of the dataplane live below this module.
//!
//! - [`tap::Tap`]: a tap the switch creates and holds, with vnet headers.
//! - netdev ports (existing interfaces over AF_PACKET) are not built yet: such a port is
//!   configured but [`PortIo::Detached`].

pub mod sys;
pub mod tap;

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use crate::counters::PortCounters;
use crate::wire::{EgressFrame, VnetHdr};

/// Errors opening or configuring a port.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The name cannot be an interface name.
    #[error("{0:?} is not a valid interface name (1-15 bytes, no '/')")]
    BadName(String),
    /// `/dev/net/tun` could not be opened.
    #[error("cannot open /dev/net/tun (is the tun module loaded, and are we root?)")]
    TunDevice {
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
    /// Traffic and drop counters.
    pub counters: PortCounters,
}

impl Port {
    /// Opens (or creates) the tap `name`.
    pub fn tap(name: &str) -> Result<Port> {
        Ok(Port {
            name: name.to_string(),
            io: PortIo::Tap(tap::Tap::open(name)?),
            counters: PortCounters::default(),
        })
    }

    /// A port with no interface behind it.
    pub fn detached(name: &str, reason: impl Into<String>) -> Port {
        Port {
            name: name.to_string(),
            io: PortIo::Detached {
                reason: reason.into(),
            },
            counters: PortCounters::default(),
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
            PortIo::Detached { .. } => None,
        }
    }

    /// True if frames can be sent and received.
    pub fn is_attached(&self) -> bool {
        self.fd().is_some()
    }

    /// Reads one frame (see [`tap::Tap::recv`]).
    #[inline]
    pub fn recv(&self, hdr: &mut [u8; VnetHdr::LEN], buf: &mut [u8]) -> io::Result<usize> {
        match &self.io {
            PortIo::Tap(t) => t.recv(hdr, buf),
            PortIo::Detached { .. } => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Writes one frame (see [`tap::Tap::send`]).
    #[inline]
    pub fn send(&self, hdr: &VnetHdr, frame: &EgressFrame<'_>) -> io::Result<()> {
        match &self.io {
            PortIo::Tap(t) => t.send(hdr, frame),
            PortIo::Detached { .. } => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}
