//! vhost-user ports: a VM (or a DPDK application) shares its memory over a unix socket and the
//! workers copy frames between its virtio rings and their batches themselves; no kernel is on
//! the path per frame. The protocol, guest memory and the rings are the `vhost-port` crate's;
//! this module fits them to the port interface (one receive path, one send path, epoll).
//!
//! - Receive: `VhostUser::recv_batch` ([`super::PortRx::recv_batch`]) claims the guest's TX ring for one batch and fills the
//!   [`RxBatch`] from it; ending the batch gives the buffers back and signals the guest at most
//!   once. While a worker is busy the guest is asked not to kick; `VhostUser::rearm` ([`super::PortRx::rearm`]) asks for
//!   kicks again before the worker sleeps and says whether frames arrived meanwhile.
//! - Send: `VhostUser::send` ([`super::Port::send`]) claims the guest's RX ring once per transmit batch (the claim
//!   lives in the [`TxBatch`] until its flush, so the used index is published and the guest
//!   signalled once per batch, not per frame) and copies the frame's pieces into guest buffers.
//! - The kick eventfd the guest signals changes with every (re)connection; the device's control
//!   thread reports it through [`KickHook`], and `Watch` keeps it registered, edge-triggered,
//!   in the epoll of the worker the port belongs to.

use std::io;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use vhost_port::{
    ClaimError, DataPath, DeviceConfig, KickHook, LinkState, QueueId, SendError, VhostUserDevice,
};

pub use vhost_port::SocketMode;

use super::batch::{RxBatch, RxGuard, TxBatch, PAD};
use super::{PortError, Result, Sent};
use crate::counters::DropReason;
use crate::gso;
use crate::sys::Epoll;
use crate::wire::{EgressFrame, VnetHdr, MIN_FRAME_LEN};

/// A vhost-user port: the device (its socket and control thread) and the workers' handle.
pub struct VhostUser {
    device: VhostUserDevice,
    dp: DataPath,
    watch: Arc<Watch>,
}

impl std::fmt::Debug for VhostUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VhostUser")
            .field("socket", &self.device.config().socket)
            .field("mode", &self.device.config().mode)
            .finish_non_exhaustive()
    }
}

impl VhostUser {
    /// Starts the device for port `name` on `socket`: in server mode the socket is created
    /// now (a stale socket file is replaced; any other file is refused), in client mode the
    /// device connects in the background and retries every second.
    pub fn start(name: &str, socket: PathBuf, mode: SocketMode) -> Result<VhostUser> {
        let watch = Arc::new(Watch::default());
        let config = DeviceConfig::new(name, socket, mode);
        let device = VhostUserDevice::start(config, watch.clone()).map_err(|source| {
            PortError::VhostUser {
                port: name.to_string(),
                source,
            }
        })?;
        let dp = device.data_path();
        Ok(VhostUser { device, dp, watch })
    }

    /// The socket path and mode.
    pub fn socket(&self) -> (&std::path::Path, SocketMode) {
        let c = self.device.config();
        (&c.socket, c.mode)
    }

    /// The device's link, features and counters.
    pub fn status(&self) -> vhost_port::DeviceStatus {
        self.device.status()
    }

    /// Why the port is down, if it is: no frontend, socket closed, a protocol error or ring
    /// fault, or a frontend whose rings are not running (not yet, or not any more: no frame
    /// passes until they are).
    pub fn down_reason(&self) -> Option<String> {
        match self.device.status().link {
            LinkState::Up => None,
            link @ LinkState::Connected => Some(link.to_string()),
            LinkState::Down(why) => Some(why.to_string()),
        }
    }

    /// Makes the worker waiting on `epoll` the one woken, with `token`, when the guest kicks.
    pub(super) fn watch(&self, epoll: &Arc<Epoll>, token: u64) -> io::Result<()> {
        self.watch.set(Some((epoll.clone(), token)))
    }

    /// Stops waking any worker for this port.
    pub(super) fn unwatch(&self) {
        let _ = self.watch.set(None);
    }

    /// Fills `batch` from the guest's TX ring. `WouldBlock` when it is empty, or not ready
    /// (no frontend, or the control thread is changing it), or another thread holds it. A
    /// broken ring is the device's to handle (it disconnects the frontend and logs why); for
    /// the worker it is an empty ring.
    pub(super) fn recv_batch(
        &self,
        _reader: &RxGuard<'_>,
        batch: &mut RxBatch,
    ) -> io::Result<usize> {
        let mut ring = self
            .dp
            .recv_batch()
            .map_err(|_| io::ErrorKind::WouldBlock)?;
        batch.fill(|hdr, slot| match ring.recv(hdr, slot) {
            Ok(Some(len)) => Ok((0, len)),
            Ok(None) | Err(_) => Err(io::ErrorKind::WouldBlock.into()),
        })
    }

    /// Asks the guest to kick again, before the worker sleeps. True if frames arrived while
    /// kicks were off (read again instead of sleeping: no kick is coming for them).
    pub(super) fn rearm(&self, _reader: &RxGuard<'_>) -> bool {
        match self.dp.recv_batch() {
            Ok(mut ring) => ring.enable_notifications().unwrap_or(false),
            // Another thread holds the ring (it re-arms when it is done), or there is none.
            Err(ClaimError::Busy | ClaimError::NotReady) => false,
        }
    }

    /// Copies `frame` behind `hdr` into the guest's RX ring, claiming the ring for the rest of
    /// the transmit batch `tx` (under `key`) if this batch has not yet.
    pub(super) fn send<'a>(
        &'a self,
        tx: &mut TxBatch<'a>,
        key: u32,
        hdr: &VnetHdr,
        frame: &EgressFrame<'_>,
    ) -> std::result::Result<Sent, DropReason> {
        let (ring, soft) = tx.guest_ring(key, || self.dp.send_batch())?;
        let pad = &PAD[..frame.pad_len(hdr)];
        let tag: &[u8] = match &frame.tag {
            Some(t) => t,
            None => &[],
        };
        match ring.send(&hdr.to_bytes(), &[frame.addrs, tag, frame.rest, pad]) {
            Ok(()) => Ok(Sent::Now(frame.wire_len(hdr))),
            // The guest did not negotiate the offload this frame needs: segment it (or
            // complete its checksum) here, and send the pieces as plain frames.
            Err(SendError::NeedsSoftwareOffload(_)) => {
                let n =
                    gso::linearize(frame, &mut soft.frame).map_err(|_| DropReason::NoOffload)?;
                let plain = VnetHdr::default().to_bytes();
                let mut bytes = 0;
                let sent = gso::segment(hdr, &soft.frame[..n], &mut soft.seg, |s| {
                    let pad = &PAD[..MIN_FRAME_LEN.saturating_sub(s.len())];
                    bytes += s.len() + pad.len();
                    ring.send(&plain, &[s, pad])
                });
                match sent {
                    Ok(_) => Ok(Sent::Now(bytes)),
                    Err(gso::SegmentError::Emit { source, .. }) => Err(send_drop(&source)),
                    Err(gso::SegmentError::Frame(_)) => Err(DropReason::NoOffload),
                }
            }
            Err(e) => Err(send_drop(&e)),
        }
    }
}

/// Why a frame could not be put into a guest's RX ring, as a drop reason.
fn send_drop(e: &SendError) -> DropReason {
    match e {
        SendError::RingFull => DropReason::GuestRingFull,
        // Only if software segmentation failed too (a frame it cannot parse).
        SendError::NeedsSoftwareOffload(_) => DropReason::NoOffload,
        SendError::FrameTooLarge { .. } => DropReason::TxError,
        SendError::Ring(_) => DropReason::LinkDown,
    }
}

/// Where the guest's current kick eventfd is registered: the epoll and token of the worker
/// that owns the port (set when the switch places the port), and the fd (set by the device's
/// control thread). Both sides change rarely (placement, reconnect), so a mutex is fine here;
/// the workers never touch it.
#[derive(Default)]
struct Watch(Mutex<WatchState>);

#[derive(Default)]
struct WatchState {
    epoll: Option<(Arc<Epoll>, u64)>,
    kick: Option<RawFd>,
}

impl Watch {
    fn set(&self, to: Option<(Arc<Epoll>, u64)>) -> io::Result<()> {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some((ep, _)), Some(fd)) = (&s.epoll, s.kick) {
            let _ = ep.delete(fd);
        }
        s.epoll = to;
        match (&s.epoll, s.kick) {
            // Edge-triggered: the worker never reads the eventfd; a kick already pending
            // when it is added is reported once.
            (Some((ep, token)), Some(fd)) => ep.add_edge(fd, *token),
            _ => Ok(()),
        }
    }
}

impl KickHook for Watch {
    fn register(&self, queue: QueueId, fd: RawFd) {
        if queue != QueueId::GuestTx {
            return;
        }
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some((ep, _)), Some(old)) = (&s.epoll, s.kick) {
            let _ = ep.delete(old);
        }
        s.kick = Some(fd);
        if let Some((ep, token)) = &s.epoll {
            if let Err(e) = ep.add_edge(fd, *token) {
                tracing::error!(error = %e, "cannot wait on a vhost-user guest's kicks");
            }
        }
    }

    fn unregister(&self, queue: QueueId, fd: RawFd) {
        if queue != QueueId::GuestTx {
            return;
        }
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if s.kick == Some(fd) {
            s.kick = None;
            if let Some((ep, _)) = &s.epoll {
                let _ = ep.delete(fd);
            }
        }
    }
}
