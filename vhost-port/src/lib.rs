//! vhost-user backend for vlanswitch: a virtio-net device whose rings the switch's worker
//! threads serve directly, so a VM's frames cross no kernel on their way through the switch.
//!
//! # What it provides
//!
//! * [`VhostUserDevice`]: one virtio-net device with one queue pair (queue 0 = guest RX, the
//!   frames the switch writes; queue 1 = guest TX, the frames it reads) on a unix socket, in
//!   [`SocketMode::Server`] (we listen on the path, replacing a stale socket file, serve one
//!   frontend at a time and accept the next after it leaves) or [`SocketMode::Client`] (we
//!   connect, retrying every [`DeviceConfig::reconnect_interval`], again after a disconnect).
//! * [`DataPath`]: the workers' handle. [`DataPath::recv_batch`] and [`DataPath::send_batch`]
//!   claim a ring for one batch of [`RecvBatch::recv`] / [`SendBatch::send`] calls; ending the
//!   batch publishes the used index and signals the guest at most once.
//! * [`KickHook`]: tells the owner which kick eventfd to wait on in its epoll, whenever it
//!   changes (`SET_VRING_KICK`, ring stop, reconnect, disconnect).
//! * [`VhostUserDevice::status`]: link state with the reason when down, negotiated features,
//!   the guest's MAC, [`Counters`].
//!
//! # Threads
//!
//! Each device has one control thread. It owns the socket and runs the vhost-user protocol
//! through the `vhost` crate's [`vhost::vhost_user::BackendReqHandler`] (message framing, size
//! and fd-count checks, `REPLY_ACK`); our handler keeps a model of memory and rings and, after
//! every change that matters to the data path, publishes a new snapshot. It sleeps in `poll` on
//! the socket, a stop eventfd and a fault eventfd; it never runs per frame. Workers (the
//! switch's threads) call the data path; this crate starts no data-path threads.
//!
//! # Snapshots: what a worker may rely on
//!
//! A snapshot is immutable: the memory table (every region mapped with `vm-memory`, inside an
//! `Arc`), the negotiated features, and for each started and enabled queue its layout in guest
//! physical addresses, its call and kick fds, and a claim word guarding our ring state (next
//! available and used indices, notification state). It is published with `arc-swap`; a batch
//! holds an `Arc` to the snapshot it claimed from, so a mapping is unmapped only when the last
//! batch using it ends. No host pointer is kept anywhere: every access to guest memory goes
//! through the snapshot's bounds-checked `vm-memory` accessors, looked up afresh, so nothing
//! can outlive a memory-table change.
//!
//! Before it changes memory or rings (`SET_MEM_TABLE`, `ADD/REM_MEM_REG`, `SET_VRING_*`,
//! `GET_VRING_BASE`, `SET_FEATURES`, disconnect), the control thread *retires* the current
//! snapshot's queues: it moves each claim word from `FREE` to `RETIRED`, waiting while a worker
//! holds it `BUSY` (one batch: microseconds; only the control thread ever waits). A retired
//! queue can never be claimed again, and the state its last batch left is final: that is the
//! index `GET_VRING_BASE` returns, and the state a republished ring continues from.
//!
//! # Concurrency on the data path
//!
//! One worker at a time may hold a ring: claiming is a single compare-and-swap that either
//! succeeds or returns [`ClaimError::Busy`] at once; nothing on the data path waits, locks,
//! allocates or makes a syscall per frame (the one syscall is the guest's call eventfd, at
//! most once per batch and only if the guest asked: `used_event` under `EVENT_IDX`, otherwise
//! `VRING_AVAIL_F_NO_INTERRUPT`, with `NOTIFY_ON_EMPTY`). This is correct because our ring
//! state is touched only between a successful claim (acquire) and its release (release), so
//! batches on one ring are totally ordered, and the guest sees a batch's used entries only
//! through the used index published, with a release fence, at its end.
//!
//! * Guest TX (queue 1): the switch drains it from one worker (its owner). A second claimant
//!   gets `Busy` and simply serves its other ports.
//! * Guest RX (queue 0): several workers may send to one guest. Each claims the ring for a
//!   batch of the frames it has for that guest. A claimant that finds it `Busy` is the
//!   caller's to handle: the switch's workers give back every ring they hold, then try again a
//!   bounded number of times (the holder is inside one batch) and drop the frame if it stays
//!   busy (`to_guest_busy` counts failed claims). Frames for a full guest are dropped at once
//!   ([`SendError::RingFull`]), never waited for.
//!
//! Kicks: at the start of each batch the guest is asked not to kick (`VRING_USED_F_NO_NOTIFY`,
//! or under `EVENT_IDX` by not moving `avail_event`). Before sleeping, the worker calls
//! [`RecvBatch::enable_notifications`], which re-enables kicks, fences, and re-reads the
//! available index: `true` means frames arrived in the window and it must not sleep. Register
//! kick fds with `EPOLLET`, or call [`DataPath::clear_kick`] after a wakeup.
//!
//! # What is validated
//!
//! Everything from the frontend is untrusted. Refused, with the connection closed, the reason
//! logged (`tracing`) and kept in [`LinkState::Down`]:
//! * messages: wrong sizes, wrong fd counts, unknown or unnegotiated requests (the `vhost`
//!   crate); queue indices other than 0 and 1; features or protocol features never offered;
//!   queue sizes that are zero, not a power of two or above 32768; `SET_VRING_NUM`/`BASE` on a
//!   started ring;
//! * memory: empty regions, regions wrapping around, overlapping guest or frontend address
//!   ranges, more than [`MAX_MEM_SLOTS`], unaligned mmap offsets, regions extending past the
//!   end of their file (touching those pages would raise SIGBUS), fds that are not files;
//! * rings: parts not inside one region or misaligned (checked at `SET_VRING_ADDR` and at
//!   every republication).
//!
//! Found by a worker, which fails its batch with a [`RingError`] and wakes the control thread
//! to disconnect: the available index running more than the queue size ahead, chain heads or
//! `next` indices out of range, chains longer than their table (loops), indirect descriptors
//! when not negotiated, nested, in the middle of a chain, with `NEXT`, or with a length that
//! is zero, not a multiple of 16 or above 1 MiB, buffers or tables outside guest memory,
//! descriptors with the wrong direction. Frames longer than the caller's buffer or shorter
//! than the header are dropped and counted, not faults. Other devices are not affected.
//!
//! # Features
//!
//! Offered: `VERSION_1`, `MRG_RXBUF`, `RING_F_EVENT_IDX`, `RING_F_INDIRECT_DESC`,
//! `NOTIFY_ON_EMPTY`, `ANY_LAYOUT`, `CSUM`, `GUEST_CSUM`, `HOST_TSO4/6`, `GUEST_TSO4/6`,
//! `HOST_ECN`, `GUEST_ECN`, `STATUS`, `MAC` and `MTU` (when configured), and
//! `VHOST_USER_F_PROTOCOL_FEATURES` with `MQ` (one pair), `REPLY_ACK`, `CONFIG` and
//! `CONFIGURE_MEM_SLOTS`. Any subset works, legacy included: the ring header is 12 bytes with
//! `MRG_RXBUF` or `VERSION_1`, else 10. A frame the guest cannot take as it is (GSO without
//! `GUEST_TSO4/6`, a partial checksum without `GUEST_CSUM`) is refused with
//! [`SendError::NeedsSoftwareOffload`] before anything is written, so the switch can segment
//! or checksum it in software; this crate never does.
//!
//! # Limits
//!
//! Split rings only (no packed rings), no dirty logging (live migration), no in-flight
//! tracking: frames are completed within the batch that takes them, so the used index after a
//! stop is exact. Legacy (pre-`VERSION_1`) guests are assumed to be little endian, as guests
//! on x86 and arm64 hosts are. A frontend that shrinks a mapped memfd afterwards could still
//! make an access fault; QEMU seals its memfds against that.
//!
//! # Tests
//!
//! `tests/device.rs` and `tests/hostile.rs` drive the device from an in-process frontend (the
//! `vhost` crate's frontend side, a memfd, rings laid out by hand). `tests/dpdk.rs` runs
//! `dpdk-testpmd` with two `net_virtio_user` ports through the `wire` example in both socket
//! modes; it needs root and `apt-get install -y dpdk-dev librte-net-virtio23`, and fails when
//! `dpdk-testpmd` is missing.

mod control;
mod datapath;
mod device;
mod error;
pub mod features;
mod memory;
mod ring;
mod shared;

pub use datapath::{DataPath, RecvBatch, SendBatch};
pub use device::{
    Counters, DeviceConfig, DeviceStatus, DownReason, KickHook, LinkState, NoHook, QueueId,
    SocketMode, VhostUserDevice,
};
pub use error::{ClaimError, DeviceError, Offload, ProtocolError, RingError, SendError};
pub use features::VnetHdr;
pub use ring::MAX_QUEUE_SIZE;

/// Most memory regions a frontend may map (`GET_MAX_MEM_SLOTS`).
pub const MAX_MEM_SLOTS: usize = 32;
