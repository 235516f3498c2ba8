//! The worker side: batches over the guest's rings, with no lock, allocation or syscall per
//! frame. A batch claims one queue of the current snapshot (never waiting), keeps a copy of
//! our ring state, and at its end publishes the used index, signals the guest at most once if
//! it asked for it, writes the state back and releases the claim.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{ClaimError, RingError, SendError};
use crate::features::{VnetHdr, VIRTIO_NET_HDR_F_DATA_VALID};
use crate::memory::GuestMem;
use crate::ring::{Ring, RingLayout, RingState};
use crate::shared::{Claim, Shared, Snapshot};
use crate::QueueId;

/// Most receive buffers one frame may span with `VIRTIO_NET_F_MRG_RXBUF` (a 64 KiB frame in
/// 256-byte buffers), which bounds the work a guest's buffer layout can cause per frame.
const MAX_MERGED_BUFFERS: u16 = 256;

/// How far ahead in a ring a frame's descriptor is prefetched; the next frame's buffer is
/// prefetched one frame ahead ([`Ring::prefetch`]).
const PREFETCH_AHEAD: u16 = 3;

/// Frames of fewer pieces than this (the header counted) into one receive buffer are written
/// with one bounds check ([`GuestMem::write_gather`]); others piece by piece.
const MAX_PARTS: usize = 8;

/// The data-path handle of one device: cheap to clone, `Send + Sync`, one per worker or
/// shared; it stays valid across frontend reconnects.
#[derive(Clone)]
pub struct DataPath {
    pub(crate) shared: Arc<Shared>,
}

impl DataPath {
    /// Claims the guest TX ring (queue 1) for a batch of [`RecvBatch::recv`] calls.
    /// Never waits: [`ClaimError::Busy`] if another worker holds it, [`ClaimError::NotReady`]
    /// if there is no started, enabled ring.
    pub fn recv_batch(&self) -> Result<RecvBatch<'_>, ClaimError> {
        Ok(RecvBatch {
            core: Core::claim(&self.shared, QueueId::GuestTx)?,
        })
    }

    /// Claims the guest RX ring (queue 0) for a batch of [`SendBatch::send`] calls.
    /// Never waits; a failed claim is counted as `to_guest_busy` when it is `Busy`.
    pub fn send_batch(&self) -> Result<SendBatch<'_>, ClaimError> {
        let core = Core::claim(&self.shared, QueueId::GuestRx);
        if let Err(ClaimError::Busy) = core {
            self.shared
                .counters
                .to_guest_busy
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(SendBatch { core: core? })
    }

    /// Resets the counter of a queue's kick eventfd after a wakeup (one `read`), for owners
    /// that registered it level-triggered. With `EPOLLET` this is not needed.
    pub fn clear_kick(&self, queue: QueueId) {
        let snap = self.shared.snap.load();
        if let Some(kick) = snap
            .as_ref()
            .and_then(|s| s.queues[queue as usize].as_ref())
            .and_then(|q| q.kick.as_ref())
        {
            let mut buf = [0u8; 8];
            // SAFETY: `kick` is an open eventfd (held alive by the snapshot guard) set to
            // O_NONBLOCK when it was received; `buf` is 8 writable bytes.
            let _ = unsafe { libc::read(kick.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        }
    }

    /// Whether both rings are started and enabled.
    pub fn is_ready(&self) -> bool {
        self.shared
            .snap
            .load()
            .as_ref()
            .is_some_and(|s| s.queues.iter().all(Option::is_some))
    }
}

/// Per-batch counts, added to the shared counters once at the end.
#[derive(Default)]
struct Tally {
    frames: u64,
    bytes: u64,
    ring_full: u64,
    too_large: u64,
    oversize: u64,
    runt: u64,
}

/// A claimed queue.
struct Core<'a> {
    shared: &'a Shared,
    snap: Arc<Snapshot>,
    queue: QueueId,
    layout: RingLayout,
    st: RingState,
    used_at_start: u16,
    fault: Option<RingError>,
    tally: Tally,
}

impl<'a> Core<'a> {
    fn claim(shared: &'a Shared, queue: QueueId) -> Result<Self, ClaimError> {
        // A RETIRED queue means the control thread is publishing a newer snapshot: look once
        // more, then give up for now.
        for _ in 0..2 {
            let Some(snap) = shared.snap.load_full() else {
                return Err(ClaimError::NotReady);
            };
            let Some(q) = snap.queues[queue as usize].as_ref() else {
                return Err(ClaimError::NotReady);
            };
            match q.try_claim() {
                Claim::Got => {}
                Claim::Busy => return Err(ClaimError::Busy),
                Claim::Retired => continue,
            }
            // SAFETY: `try_claim` returned `Got`; the claim is released in `Drop`.
            let st = unsafe { q.load_state() };
            let layout = q.layout;
            let mut core = Core {
                shared,
                snap,
                queue,
                layout,
                st,
                used_at_start: st.next_used,
                fault: None,
                tally: Tally::default(),
            };
            // While the worker is busy the guest need not kick.
            if let Err(e) = core.ring().disable_notify() {
                core.fail(e);
            }
            return Ok(core);
        }
        Err(ClaimError::NotReady)
    }

    fn ring(&mut self) -> Ring<'_> {
        Ring {
            mem: &self.snap.mem,
            layout: self.layout,
            st: &mut self.st,
            event_idx: self.snap.neg.event_idx,
            indirect: self.snap.neg.indirect,
        }
    }

    fn fail(&mut self, e: RingError) -> RingError {
        if self.fault.is_none() {
            self.fault = Some(e.clone());
            self.shared.report_fault(self.queue as usize, e.clone());
        }
        e
    }

    fn check(&self) -> Result<(), RingError> {
        match &self.fault {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn call_fd(&self) -> Option<&File> {
        self.snap.queues[self.queue as usize]
            .as_ref()
            .and_then(|q| q.call.as_deref())
    }

    /// Publishes the used index and signals the guest if it asked; at most one eventfd write.
    fn flush(&mut self) {
        if self.fault.is_some() || self.st.next_used == self.used_at_start {
            return;
        }
        self.used_at_start = self.st.next_used;
        let noe = self.snap.neg.notify_on_empty;
        let mut ring = self.ring();
        let res = ring.publish_used().and_then(|()| ring.needs_signal(noe));
        match res {
            Ok(true) => {
                if let Some(mut call) = self.call_fd() {
                    let _ = call.write(&1u64.to_ne_bytes());
                    self.shared
                        .counters
                        .guest_interrupts
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(false) => {}
            Err(e) => {
                self.fail(e);
            }
        }
    }

    fn enable_notifications(&mut self) -> Result<bool, RingError> {
        self.check()?;
        self.flush();
        self.check()?;
        match self.ring().enable_notify() {
            Ok(more) => Ok(more),
            Err(e) => Err(self.fail(e)),
        }
    }
}

impl Drop for Core<'_> {
    fn drop(&mut self) {
        self.flush();
        let c = &self.shared.counters;
        let t = &self.tally;
        let add = |a: &std::sync::atomic::AtomicU64, v: u64| {
            if v != 0 {
                a.fetch_add(v, Ordering::Relaxed);
            }
        };
        match self.queue {
            QueueId::GuestRx => {
                add(&c.to_guest_frames, t.frames);
                add(&c.to_guest_bytes, t.bytes);
                add(&c.to_guest_ring_full, t.ring_full);
                add(&c.to_guest_too_large, t.too_large);
            }
            QueueId::GuestTx => {
                add(&c.from_guest_frames, t.frames);
                add(&c.from_guest_bytes, t.bytes);
                add(&c.from_guest_oversize, t.oversize);
                add(&c.from_guest_runt, t.runt);
            }
        }
        if let Some(q) = self.snap.queues[self.queue as usize].as_ref() {
            // SAFETY: this `Core` was created by a successful `try_claim` on `q` and releases
            // it exactly once, here.
            unsafe { q.release(self.st, self.fault.is_some()) };
        }
    }
}

/// A batch over the guest TX ring (queue 1): frames the guest sends, which the switch
/// receives. Dropping it (or [`RecvBatch::finish`]) returns the buffers to the guest.
pub struct RecvBatch<'a> {
    core: Core<'a>,
}

impl RecvBatch<'_> {
    /// Takes the next frame: its virtio-net header, converted to the switch's native-endian
    /// 10-byte form, goes to `hdr`, the frame to `frame`. Returns the frame length, or `None`
    /// when the ring is empty. A frame longer than `frame` or shorter than the header is
    /// dropped and counted (`from_guest_oversize`, `from_guest_runt`), and the next one is
    /// taken. An error means the ring is broken: the device is being disconnected and every
    /// later call on this batch returns the same error.
    pub fn recv(
        &mut self,
        hdr: &mut [u8; 10],
        frame: &mut [u8],
    ) -> Result<Option<usize>, RingError> {
        self.core.check()?;
        match self.recv_inner(hdr, frame) {
            Ok(v) => Ok(v),
            Err(e) => Err(self.core.fail(e)),
        }
    }

    fn recv_inner(
        &mut self,
        hdr: &mut [u8; 10],
        frame: &mut [u8],
    ) -> Result<Option<usize>, RingError> {
        let hdr_len = self.core.snap.neg.hdr_len;
        loop {
            let mut ring = self.core.ring();
            if ring.avail_count()? == 0 {
                return Ok(None);
            }
            ring.prefetch(PREFETCH_AHEAD, false);
            ring.prefetch(1, true);
            let head = ring.avail_head(0)?;
            let mut gh = [0u8; 12];
            let (mut hpos, mut fpos, mut oversize) = (0usize, 0usize, false);
            let mut chain = ring.chain(head);
            while let Some(d) = chain.next_desc()? {
                if d.is_write() {
                    return Err(RingError::WrongDirection(
                        "device-writable descriptor in a guest transmit chain",
                    ));
                }
                let mut addr = d.addr;
                let mut len = d.len as usize;
                // The common case, the whole header in the first descriptor, in one fixed-size
                // read (a 10-byte header's two extra bytes are ignored).
                if hpos == 0 && len >= gh.len() {
                    gh = ring
                        .mem
                        .read_array(addr)
                        .map_err(|()| oob(addr, gh.len()))?;
                    hpos = hdr_len;
                    len -= hdr_len;
                    addr += hdr_len as u64;
                }
                if hpos < hdr_len {
                    let n = len.min(hdr_len - hpos);
                    read(ring.mem, &mut gh[hpos..hpos + n], addr)?;
                    hpos += n;
                    len -= n;
                    addr = addr.checked_add(n as u64).ok_or(oob(addr, n))?;
                }
                if len == 0 {
                    continue;
                }
                if oversize || fpos + len > frame.len() {
                    oversize = true;
                    if !ring.mem.contains(addr, len) {
                        return Err(oob(addr, len));
                    }
                } else {
                    read(ring.mem, &mut frame[fpos..fpos + len], addr)?;
                }
                fpos += len;
            }
            ring.st.next_avail = ring.st.next_avail.wrapping_add(1);
            ring.push_used(head, 0)?;
            let t = &mut self.core.tally;
            if hpos < hdr_len {
                t.runt += 1;
                continue;
            }
            if oversize {
                t.oversize += 1;
                continue;
            }
            *hdr = VnetHdr::from_guest(&gh).to_ne_bytes();
            t.frames += 1;
            t.bytes += fpos as u64;
            return Ok(Some(fpos));
        }
    }

    /// Returns the buffers taken so far to the guest now (and signals it if it asked).
    pub fn flush(&mut self) {
        self.core.flush();
    }

    /// Asks the guest to kick again before the worker sleeps. Returns `true` if frames
    /// arrived meanwhile: the worker must not sleep but run another batch.
    pub fn enable_notifications(&mut self) -> Result<bool, RingError> {
        self.core.enable_notifications()
    }

    /// Ends the batch (the same as dropping it).
    pub fn finish(self) {}
}

/// A batch over the guest RX ring (queue 0): frames the switch sends to the guest.
/// Dropping it (or [`SendBatch::finish`]) publishes them and signals the guest at most once.
pub struct SendBatch<'a> {
    core: Core<'a>,
}

impl SendBatch<'_> {
    /// Copies one frame into the guest's receive buffers: `hdr` is the switch's native-endian
    /// 10-byte virtio-net header, `parts` the frame's bytes in order (gathered). The header is
    /// written in the negotiated form (10 or 12 bytes, `num_buffers` set); with
    /// `VIRTIO_NET_F_MRG_RXBUF` the frame may span several buffers. Never waits.
    ///
    /// [`SendError::NeedsSoftwareOffload`] is returned before anything is touched when the
    /// guest cannot take a GSO frame or a partial checksum; the other errors are drops.
    pub fn send(&mut self, hdr: &[u8; 10], parts: &[&[u8]]) -> Result<(), SendError> {
        self.core.check()?;
        let neg = self.core.snap.neg;
        let mut h = VnetHdr::from_ne_bytes(hdr);
        neg.check_offloads(&h)
            .map_err(SendError::NeedsSoftwareOffload)?;
        if !neg.guest_csum {
            h.flags &= !VIRTIO_NET_HDR_F_DATA_VALID;
        }
        let payload: usize = parts.iter().map(|p| p.len()).sum();
        let total = neg.hdr_len + payload;
        match self.send_inner(h, parts, total) {
            Ok(()) => {
                self.core.tally.frames += 1;
                self.core.tally.bytes += payload as u64;
                Ok(())
            }
            Err(SendError::Ring(e)) => Err(SendError::Ring(self.core.fail(e))),
            Err(e) => {
                match e {
                    SendError::RingFull => self.core.tally.ring_full += 1,
                    SendError::FrameTooLarge { .. } => self.core.tally.too_large += 1,
                    _ => {}
                }
                Err(e)
            }
        }
    }

    fn send_inner(&mut self, h: VnetHdr, parts: &[&[u8]], total: usize) -> Result<(), SendError> {
        let neg = self.core.snap.neg;
        let mut ring = self.core.ring();
        let avail = ring.avail_count()?;
        if avail == 0 {
            return Err(SendError::RingFull);
        }
        ring.prefetch(PREFETCH_AHEAD, false);
        ring.prefetch(1, true);
        let max_chains = if neg.mrg_rxbuf {
            avail.min(MAX_MERGED_BUFFERS)
        } else {
            1
        };
        // Pass 1: how many buffers the frame needs. The common case, one chain of one
        // descriptor that fits the frame, is written right away.
        let (mut room, mut n) = (0usize, 0u16);
        let mut single = None;
        while room < total && n < max_chains {
            let head = ring.avail_head(n)?;
            let mut chain = ring.chain(head);
            let mut descs = 0;
            while let Some(d) = chain.next_desc()? {
                if !d.is_write() {
                    return Err(RingError::WrongDirection(
                        "device-readable descriptor in a guest receive chain",
                    )
                    .into());
                }
                room += d.len as usize;
                descs += 1;
                if n == 0 && descs == 1 {
                    single = Some((head, d));
                }
            }
            if descs != 1 {
                single = None;
            }
            n += 1;
        }
        if let (1, Some((head, d))) = (n, single) {
            if room >= total && parts.len() < MAX_PARTS {
                let gh = h.to_guest(1);
                let mut pieces: [&[u8]; MAX_PARTS] = [&[]; MAX_PARTS];
                pieces[0] = &gh[..neg.hdr_len];
                pieces[1..=parts.len()].copy_from_slice(parts);
                ring.mem
                    .write_gather(d.addr, room, &pieces[..=parts.len()])
                    .map_err(|()| oob(d.addr, total))?;
                ring.push_used(head, total as u32)?;
                ring.st.next_avail = ring.st.next_avail.wrapping_add(1);
                return Ok(());
            }
        }
        if room < total {
            return Err(if neg.mrg_rxbuf {
                SendError::RingFull
            } else {
                SendError::FrameTooLarge { len: total, room }
            });
        }
        // Pass 2: write header and frame.
        let gh = h.to_guest(if neg.mrg_rxbuf { n } else { 1 });
        let mut src = Source {
            hdr: &gh[..neg.hdr_len],
            parts,
            piece: 0,
            off: 0,
        };
        for i in 0..n {
            let head = ring.avail_head(i)?;
            let mut written = 0u32;
            let mut chain = ring.chain(head);
            while let Some(d) = chain.next_desc()? {
                if !d.is_write() {
                    return Err(RingError::WrongDirection(
                        "device-readable descriptor in a guest receive chain",
                    )
                    .into());
                }
                if src.done() {
                    break;
                }
                written += src.write_to(ring.mem, d.addr, d.len as usize)?;
            }
            ring.push_used(head, written)?;
        }
        ring.st.next_avail = ring.st.next_avail.wrapping_add(n);
        Ok(())
    }

    /// Publishes the frames sent so far now (and signals the guest if it asked).
    pub fn flush(&mut self) {
        self.core.flush();
    }

    /// Asks the guest to kick when it posts receive buffers (useful when the ring was full and
    /// the worker wants to know when it has room). Returns `true` if buffers arrived meanwhile.
    pub fn enable_notifications(&mut self) -> Result<bool, RingError> {
        self.core.enable_notifications()
    }

    /// Ends the batch (the same as dropping it).
    pub fn finish(self) {}
}

fn oob(addr: u64, len: usize) -> RingError {
    RingError::OutsideMemory {
        what: "buffer",
        addr,
        len: len as u64,
    }
}

fn read(mem: &GuestMem, buf: &mut [u8], addr: u64) -> Result<(), RingError> {
    mem.read(addr, buf).map_err(|()| oob(addr, buf.len()))
}

/// The bytes of one outgoing frame: the guest-form header, then the caller's parts.
struct Source<'p> {
    hdr: &'p [u8],
    parts: &'p [&'p [u8]],
    piece: usize,
    off: usize,
}

impl Source<'_> {
    fn current(&self) -> Option<&[u8]> {
        if self.piece == 0 {
            Some(self.hdr)
        } else {
            self.parts.get(self.piece - 1).copied()
        }
    }

    fn done(&mut self) -> bool {
        while let Some(p) = self.current() {
            if self.off < p.len() {
                return false;
            }
            self.piece += 1;
            self.off = 0;
        }
        true
    }

    /// Writes up to `len` bytes at `addr`; returns how many.
    fn write_to(
        &mut self,
        mem: &GuestMem,
        mut addr: u64,
        mut len: usize,
    ) -> Result<u32, RingError> {
        let mut written = 0usize;
        while len > 0 && !self.done() {
            let Some(p) = self.current() else { break };
            let n = len.min(p.len() - self.off);
            mem.write(addr, &p[self.off..self.off + n])
                .map_err(|()| oob(addr, n))?;
            self.off += n;
            len -= n;
            written += n;
            addr = addr.checked_add(n as u64).ok_or(oob(addr, n))?;
        }
        Ok(written as u32)
    }
}
