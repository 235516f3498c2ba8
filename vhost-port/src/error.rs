//! Error types of the crate, one enum per concern.

use std::io;
use std::path::PathBuf;

/// A ring or a descriptor chain that a frontend laid out badly. Each one disconnects the
/// frontend: the rings cannot be trusted any more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// `SET_VRING_NUM` gave a size that is zero, not a power of two or above 32768.
    #[error("queue size {0} is not a power of two in 1..=32768")]
    BadQueueSize(u32),
    /// A ring address given by `SET_VRING_ADDR` is not inside one guest memory region.
    #[error("{part} ring at frontend address {addr:#x} ({len} bytes) is outside guest memory")]
    RingOutsideMemory {
        /// "descriptor", "available" or "used".
        part: &'static str,
        /// The frontend's (virtual) address.
        addr: u64,
        /// Bytes the part needs at this queue size.
        len: u64,
    },
    /// A ring address is not aligned as the virtio spec requires.
    #[error("{part} ring address {addr:#x} is not {align}-byte aligned")]
    Misaligned {
        /// "descriptor", "available" or "used".
        part: &'static str,
        /// The guest physical address.
        addr: u64,
        /// The alignment required.
        align: u64,
    },
    /// The available index moved further ahead of us than the queue is long.
    #[error("available index {avail} is more than the queue size {size} ahead of {next}")]
    AvailIndexRunaway {
        /// The index the guest published.
        avail: u16,
        /// The next index we would process.
        next: u16,
        /// The queue size.
        size: u16,
    },
    /// A chain head in the available ring is not a descriptor index.
    #[error("descriptor head {head} is out of range for queue size {size}")]
    HeadOutOfRange {
        /// The head index read from the available ring.
        head: u16,
        /// The queue size.
        size: u16,
    },
    /// A `next` field points past the end of its (direct or indirect) table.
    #[error("descriptor next index {next} is out of range for a table of {len}")]
    NextOutOfRange {
        /// The `next` field.
        next: u16,
        /// Entries in the table.
        len: u32,
    },
    /// The chain has more descriptors than its table: a loop.
    #[error("descriptor chain is longer than its table of {0} entries (a loop)")]
    ChainLoop(u32),
    /// An indirect descriptor although `VIRTIO_RING_F_INDIRECT_DESC` was not negotiated.
    #[error("indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC")]
    IndirectNotNegotiated,
    /// An indirect descriptor inside an indirect table, in the middle of a chain, or with
    /// `VRING_DESC_F_NEXT` set.
    #[error("indirect descriptor {0}")]
    IndirectMisplaced(&'static str),
    /// An indirect table whose length is zero, not a multiple of 16 or above 1 MiB.
    #[error("indirect table length {0} is not a non-zero multiple of 16 up to 1 MiB")]
    IndirectBadLength(u32),
    /// A device-readable buffer in a chain we must write, or the other way round.
    #[error("{0}")]
    WrongDirection(&'static str),
    /// A ring element or a buffer is outside guest memory.
    #[error("{what} at guest address {addr:#x} ({len} bytes) is outside guest memory")]
    OutsideMemory {
        /// What was being accessed: "descriptor", "buffer", "available ring", "used ring".
        what: &'static str,
        /// Guest physical address.
        addr: u64,
        /// Length of the access.
        len: u64,
    },
}

/// Why the switch could not hand a frame to the guest. Every variant is a drop for the caller
/// except [`SendError::NeedsSoftwareOffload`], which asks the caller to segment or checksum the
/// frame in software and send the pieces again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The guest has not posted enough receive buffers for this frame.
    #[error("guest receive ring is full")]
    RingFull,
    /// Without `VIRTIO_NET_F_MRG_RXBUF` the frame must fit one buffer chain, and it does not.
    #[error("frame of {len} bytes does not fit the guest's {room}-byte receive buffer")]
    FrameTooLarge {
        /// Header plus frame bytes.
        len: usize,
        /// Bytes the chain offered.
        room: usize,
    },
    /// The guest did not negotiate the offload this frame needs.
    #[error("guest did not negotiate {0}; segment or checksum the frame in software")]
    NeedsSoftwareOffload(Offload),
    /// The ring turned out to be broken; the device is being disconnected.
    #[error("guest receive ring fault")]
    Ring(#[from] RingError),
}

/// The guest offload a frame needs, named by the virtio feature the guest lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offload {
    /// A partial checksum (`VIRTIO_NET_HDR_F_NEEDS_CSUM`) needs `VIRTIO_NET_F_GUEST_CSUM`.
    Checksum,
    /// `VIRTIO_NET_HDR_GSO_TCPV4` needs `VIRTIO_NET_F_GUEST_TSO4`.
    Tso4,
    /// `VIRTIO_NET_HDR_GSO_TCPV6` needs `VIRTIO_NET_F_GUEST_TSO6`.
    Tso6,
    /// `VIRTIO_NET_HDR_GSO_UDP` needs `VIRTIO_NET_F_GUEST_UFO` (never offered by this crate).
    Ufo,
    /// `VIRTIO_NET_HDR_GSO_ECN` needs `VIRTIO_NET_F_GUEST_ECN`.
    Ecn,
    /// A GSO type this crate does not know.
    UnknownGso(u8),
}

impl std::fmt::Display for Offload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Offload::Checksum => f.write_str("VIRTIO_NET_F_GUEST_CSUM"),
            Offload::Tso4 => f.write_str("VIRTIO_NET_F_GUEST_TSO4"),
            Offload::Tso6 => f.write_str("VIRTIO_NET_F_GUEST_TSO6"),
            Offload::Ufo => f.write_str("VIRTIO_NET_F_GUEST_UFO"),
            Offload::Ecn => f.write_str("VIRTIO_NET_F_GUEST_ECN"),
            Offload::UnknownGso(t) => write!(f, "a feature for GSO type {t}"),
        }
    }
}

/// Why a worker could not claim a queue for a batch. Neither waits: the caller retries later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// No frontend, the queue is not set up, started and enabled, or the control thread is
    /// republishing it right now (a transient window of one reconfiguration). Read the link
    /// from [`crate::VhostUserDevice::status`] or [`crate::KickHook::link_changed`], not from this.
    #[error("queue is not ready")]
    NotReady,
    /// Another worker holds the queue for its batch right now.
    #[error("queue is busy with another worker's batch")]
    Busy,
}

/// A frontend message that this device refuses; it disconnects the frontend.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A queue index other than 0 (guest RX) and 1 (guest TX).
    #[error("{msg}: queue index {index} is not 0 or 1")]
    BadQueueIndex {
        /// The message.
        msg: &'static str,
        /// The index it named.
        index: u32,
    },
    /// Features acknowledged that were never offered.
    #[error("SET_FEATURES acknowledged features {0:#x} that were not offered")]
    UnofferedFeatures(u64),
    /// Protocol features acknowledged that were never offered.
    #[error("SET_PROTOCOL_FEATURES acknowledged {0:#x} that were not offered")]
    UnofferedProtocolFeatures(u64),
    /// A memory region that is empty, wraps around, overlaps another or is too large.
    #[error("memory region {index} (guest {gpa:#x}, {size} bytes, frontend {uaddr:#x}): {reason}")]
    BadMemoryRegion {
        /// Position in the message, or the slot for `ADD_MEM_REG`.
        index: usize,
        /// Guest physical address.
        gpa: u64,
        /// Size in bytes.
        size: u64,
        /// Frontend virtual address.
        uaddr: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// The region's file could not be mapped.
    #[error("memory region {index}: mapping its file failed")]
    Mmap {
        /// Position in the message.
        index: usize,
        /// The mmap error.
        #[source]
        source: io::Error,
    },
    /// More memory regions than [`crate::MAX_MEM_SLOTS`].
    #[error("{0} memory regions exceed the limit of {max}", max = crate::MAX_MEM_SLOTS)]
    TooManyRegions(usize),
    /// `REM_MEM_REG` for a region that is not mapped.
    #[error("REM_MEM_REG: no region at guest {0:#x}")]
    NoSuchRegion(u64),
    /// A ring message that is not allowed while the ring runs (`SET_VRING_NUM`, `SET_VRING_BASE`).
    #[error("{0} on a started ring")]
    RingStarted(&'static str),
    /// The ring configuration is unusable.
    #[error("queue {queue}")]
    Ring {
        /// Queue index.
        queue: usize,
        /// What is wrong.
        #[source]
        source: RingError,
    },
    /// `GET_CONFIG`/`SET_CONFIG` outside the virtio-net config space.
    #[error("config access at {offset} for {size} bytes is outside the 256-byte config space")]
    BadConfigAccess {
        /// Offset.
        offset: u32,
        /// Size.
        size: u32,
    },
    /// A request this device does not implement.
    #[error("{0} is not supported")]
    Unsupported(&'static str),
}

/// Errors of [`crate::VhostUserDevice::start`].
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The socket path exists and is not a socket, so it is not removed.
    #[error("{0}: exists and is not a socket")]
    PathNotSocket(PathBuf),
    /// Removing a stale socket file failed.
    #[error("{path}: removing the stale socket failed")]
    RemoveStale {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Binding or listening on the server socket failed.
    #[error("{path}: binding the vhost-user socket failed")]
    Bind {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Creating an eventfd failed.
    #[error("creating an eventfd failed")]
    EventFd(#[source] io::Error),
    /// Spawning the control thread failed.
    #[error("spawning the control thread failed")]
    Spawn(#[source] io::Error),
}
