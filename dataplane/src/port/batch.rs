//! Per-worker batches, allocated once and reused: frames read from one port ([`RxBatch`]) and
//! frames waiting to go out to packet sockets, one `sendmmsg` per socket ([`TxQueue`]).
//!
//! A worker reads up to [`RX_BATCH`] frames from a port, forwards them all, then flushes the
//! transmit batch. Frames for a packet socket (netdev port) are queued and sent with one
//! `sendmmsg` per socket per flush; frames for a tap are written at once (a tap has no batched
//! write). Frames of one egress port keep their order either way.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use vhost_port::{ClaimError, SendBatch};

use crate::counters::DropReason;
use crate::wire::{EgressFrame, VnetHdr, MIN_FRAME_LEN, VLAN_HLEN};

/// Frames read from a port in one go (taken from a packet socket's receive ring, or up to this
/// many reads on a tap).
pub const RX_BATCH: usize = 16;
/// Bytes before the frame in a receive slot, where a packet socket puts back the tag the
/// kernel stripped.
pub const RX_HEADROOM: usize = VLAN_HLEN;
/// One frame's slot in an [`RxBatch`]: headroom, a 64 KiB GSO frame, and spare.
pub const RX_SLOT: usize = RX_HEADROOM + 65536 + 1024;

/// Reusable receive state: [`RX_BATCH`] frame slots with their vnet headers.
pub struct RxBatch {
    bufs: Box<[u8]>,
    hdrs: [[u8; VnetHdr::LEN]; RX_BATCH],
    /// (start, length) of each frame in its slot; length 0 marks a frame that was cut short
    /// or had no whole vnet header (counted as a bad frame, never forwarded).
    frames: [(usize, usize); RX_BATCH],
}

impl Default for RxBatch {
    fn default() -> Self {
        RxBatch {
            bufs: vec![0u8; RX_BATCH * RX_SLOT].into_boxed_slice(),
            hdrs: [[0; VnetHdr::LEN]; RX_BATCH],
            frames: [(0, 0); RX_BATCH],
        }
    }
}

impl std::fmt::Debug for RxBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxBatch").finish_non_exhaustive()
    }
}

/// The right to read one port: only one thread at a time reads a port, so that its frames
/// keep their order (and a packet socket's receive ring has one reader). Tried, never waited
/// on.
#[derive(Debug, Default)]
pub struct RxLock(AtomicBool);

impl RxLock {
    /// The right to read, unless another thread holds it now.
    #[inline]
    pub fn try_lock(&self) -> Option<RxGuard<'_>> {
        // The guard is made only when the swap won: a guard made (and dropped) on a lost try
        // would release the holder's right, and two readers of one packet ring lose their
        // place in it (the netdev port stops receiving).
        if self.0.swap(true, Ordering::Acquire) {
            return None;
        }
        Some(RxGuard(&self.0))
    }
}

/// Holds an [`RxLock`]; gives it back when dropped, on every path.
#[derive(Debug)]
pub struct RxGuard<'a>(&'a AtomicBool);

impl Drop for RxGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl RxBatch {
    /// Frame `i` of the last batch: its vnet header and bytes.
    pub fn frame(&self, i: usize) -> (&[u8; VnetHdr::LEN], &[u8]) {
        let (start, len) = self.frames[i];
        let slot = &self.bufs[i * RX_SLOT..(i + 1) * RX_SLOT];
        (&self.hdrs[i], &slot[start..start + len])
    }

    /// Fills the batch, the one way every port kind does it: one `read` per slot until `read`
    /// fails (`WouldBlock`: nothing more waiting) or the batch is full. `read` gets a header
    /// and a slot and returns the frame's (start, length) in the slot; `InvalidData` marks a
    /// frame that was cut short (kept as a bad frame). Returns how many frames; the error of
    /// the first read when there are none.
    pub(super) fn fill(
        &mut self,
        mut read: impl FnMut(&mut [u8; VnetHdr::LEN], &mut [u8]) -> io::Result<(usize, usize)>,
    ) -> io::Result<usize> {
        let mut n = 0;
        while n < RX_BATCH {
            let slot = &mut self.bufs[n * RX_SLOT..(n + 1) * RX_SLOT];
            match read(&mut self.hdrs[n], slot) {
                Ok(f) => self.frames[n] = f,
                Err(e) if e.kind() == io::ErrorKind::InvalidData => self.frames[n] = (0, 0),
                // Whatever stopped this read (nothing queued, or an error that the next read
                // will report again) ends the batch; the frames read so far go on.
                Err(_) if n > 0 => break,
                Err(e) => return Err(e),
            }
            n += 1;
        }
        Ok(n)
    }
}

/// iovecs per frame in a gather write: vnet header, addresses, tag, rest, pad.
pub(crate) const FRAME_IOVS: usize = 5;

/// The zeros that pad a short frame (at most [`MIN_FRAME_LEN`] of them are ever needed).
pub(super) static PAD: [u8; MIN_FRAME_LEN] = [0; MIN_FRAME_LEN];

/// An empty iovec, to initialise arrays of them.
pub(crate) const NO_IOV: libc::iovec = libc::iovec {
    iov_base: std::ptr::null_mut(),
    iov_len: 0,
};

/// Lays out `frame` behind `hdr` for one gather write, the way taps and packet sockets with
/// vnet headers take a frame: the header (encoded into `hdr_buf`), the addresses, the tag
/// (copied into `tag_buf`; length 0 when there is none), the rest, and the pad
/// ([`EgressFrame::pad_len`], read from a static array of zeros; length 0 when there is none).
/// Returns the bytes of the frame on the wire, pad included ([`EgressFrame::wire_len`]).
///
/// The one layout of every frame the switch sends: `writev_frame` (taps) and
/// [`TxBatch::push`] (packet sockets) both use it. No allocation, no syscall.
///
/// The iovecs point into `hdr_buf`, `tag_buf`, the frame's bytes and a static: they may be
/// handed to the kernel only while those are alive and not moved. The kernel only reads
/// through them.
#[inline]
pub(crate) fn layout_frame(
    iov: &mut [libc::iovec; FRAME_IOVS],
    hdr_buf: &mut [u8; VnetHdr::LEN],
    tag_buf: &mut [u8; VLAN_HLEN],
    hdr: &VnetHdr,
    frame: &EgressFrame<'_>,
) -> usize {
    *hdr_buf = hdr.to_bytes();
    let tag_len = match frame.tag {
        Some(t) => {
            *tag_buf = t;
            VLAN_HLEN
        }
        None => 0,
    };
    let pad = frame.pad_len(hdr);
    debug_assert!(pad <= PAD.len());
    let piece = |base: *const u8, len: usize| libc::iovec {
        iov_base: base as *mut libc::c_void,
        iov_len: len,
    };
    *iov = [
        piece(hdr_buf.as_ptr(), VnetHdr::LEN),
        piece(frame.addrs.as_ptr(), frame.addrs.len()),
        piece(tag_buf.as_ptr(), tag_len),
        piece(frame.rest.as_ptr(), frame.rest.len()),
        piece(PAD.as_ptr(), pad),
    ];
    frame.len() + pad
}

/// Frames queued for packet sockets at most (a flush happens when it is full).
pub const TX_BATCH: usize = 32;
const _: () = assert!(
    TX_BATCH <= 64,
    "the flush keeps a 64-bit mask of sent entries"
);

/// Reusable transmit state; frames are queued through a [`TxBatch`].
pub struct TxQueue {
    hdrs: [[u8; VnetHdr::LEN]; TX_BATCH],
    tags: [[u8; VLAN_HLEN]; TX_BATCH],
    iovs: [[libc::iovec; FRAME_IOVS]; TX_BATCH],
    fds: [RawFd; TX_BATCH],
    keys: [u32; TX_BATCH],
    lens: [usize; TX_BATCH],
    /// Scratch for one `sendmmsg`: the entries of one socket, in queue order.
    msgs: [libc::mmsghdr; TX_BATCH],
    n: usize,
    /// Scratch for software segmentation ([`crate::gso`]): one egress frame made contiguous,
    /// and the segment being cut from it. Allocated once per worker.
    soft: SoftBufs,
}

/// The two buffers software segmentation works in.
pub(super) struct SoftBufs {
    /// The whole egress frame (a 64 KiB super-frame, its tag, spare).
    pub(super) frame: Box<[u8]>,
    /// One segment (at most the frame).
    pub(super) seg: Box<[u8]>,
}

impl Default for SoftBufs {
    fn default() -> Self {
        SoftBufs {
            frame: vec![0u8; RX_SLOT].into_boxed_slice(),
            seg: vec![0u8; RX_SLOT].into_boxed_slice(),
        }
    }
}

impl Default for TxQueue {
    fn default() -> Self {
        TxQueue {
            hdrs: [[0; VnetHdr::LEN]; TX_BATCH],
            tags: [[0; VLAN_HLEN]; TX_BATCH],
            iovs: [[NO_IOV; FRAME_IOVS]; TX_BATCH],
            fds: [-1; TX_BATCH],
            keys: [0; TX_BATCH],
            lens: [0; TX_BATCH],
            // SAFETY: mmsghdr is plain data; all-zero (null pointers, zero lengths) is valid.
            msgs: unsafe { std::mem::zeroed() },
            n: 0,
            soft: SoftBufs::default(),
        }
    }
}

impl std::fmt::Debug for TxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxQueue").field("n", &self.n).finish()
    }
}

impl TxQueue {
    /// Starts a batch whose frames borrow buffers (and sockets) that live for `'a`. The queue
    /// keeps raw pointers to them only while the returned batch lives: it starts empty and
    /// the kernel reads the pointers only in [`TxBatch::flush`].
    pub fn begin<'a>(&'a mut self) -> TxBatch<'a> {
        self.n = 0;
        TxBatch {
            q: self,
            _frames: PhantomData,
            guests: Default::default(),
        }
    }
}

/// Frames queued for packet sockets; the borrow checker keeps their bytes and sockets alive
/// until the batch is flushed or dropped. Also holds the vhost-user guest RX rings this batch
/// has claimed (at most [`GUEST_RINGS`]), so that each is published and its guest signalled
/// once per batch.
pub struct TxBatch<'a> {
    q: &'a mut TxQueue,
    _frames: PhantomData<&'a [u8]>,
    guests: [Option<(u32, SendBatch<'a>)>; GUEST_RINGS],
}

/// Guest RX rings one transmit batch holds at once (one more releases them all first).
pub const GUEST_RINGS: usize = 8;

/// Claims of a busy guest RX ring tried before a frame for it is dropped. The holder is
/// another worker inside one batch (microseconds); the waiter first gives back every ring it
/// holds itself, so two workers never wait on each other.
const BUSY_TRIES: u32 = 4096;

impl<'a> TxBatch<'a> {
    /// The guest RX ring this batch holds under `key`, claimed with `claim` if it holds none
    /// yet. A ring another worker holds is tried again, a bounded number of times, after this
    /// batch gave back its own rings (published, guests signalled): `GuestBusy` if it stays
    /// busy, `LinkDown` if the guest has no ring ready. Comes with the worker's
    /// software-segmentation buffers.
    pub(super) fn guest_ring(
        &mut self,
        key: u32,
        claim: impl Fn() -> Result<SendBatch<'a>, ClaimError>,
    ) -> Result<(&mut SendBatch<'a>, &mut SoftBufs), DropReason> {
        let i = self.guest_slot(key, claim)?;
        let ring = &mut self.guests[i].as_mut().expect("claimed").1;
        Ok((ring, &mut self.q.soft))
    }

    /// The index in `guests` of the ring held under `key`, claimed first if need be.
    fn guest_slot(
        &mut self,
        key: u32,
        claim: impl Fn() -> Result<SendBatch<'a>, ClaimError>,
    ) -> Result<usize, DropReason> {
        if let Some(i) = self
            .guests
            .iter()
            .position(|g| g.as_ref().is_some_and(|(k, _)| *k == key))
        {
            return Ok(i);
        }
        let mut tries = 0;
        let ring = loop {
            match claim() {
                Ok(r) => break r,
                Err(ClaimError::NotReady) => return Err(DropReason::LinkDown),
                Err(ClaimError::Busy) if tries < BUSY_TRIES => {
                    if tries == 0 {
                        self.release_guests();
                    }
                    tries += 1;
                    std::hint::spin_loop();
                }
                Err(ClaimError::Busy) => return Err(DropReason::GuestBusy),
            }
        };
        let i = match self.guests.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.release_guests();
                0
            }
        };
        self.guests[i] = Some((key, ring));
        Ok(i)
    }

    /// Gives back every guest RX ring this batch holds: their used indices are published and
    /// each guest is signalled if it asked to be.
    fn release_guests(&mut self) {
        for g in &mut self.guests {
            *g = None;
        }
    }

    /// True when [`TxBatch::push`] has no room: flush first.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.q.n == TX_BATCH
    }

    /// Frames queued and not yet flushed.
    #[inline]
    pub fn len(&self) -> usize {
        self.q.n
    }

    /// True when nothing is queued.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.q.n == 0 && self.guests.iter().all(Option::is_none)
    }

    /// Queues `frame` behind `hdr` for `sock` (a [`super::packet::PacketSocket`]; any
    /// datagram socket works), padded if it is short ([`EgressFrame::pad_len`]); `key` comes
    /// back in the flush's report (the worker passes the port id). Returns false, queueing
    /// nothing, when the batch is full.
    #[inline]
    pub fn push<S: AsRawFd>(
        &mut self,
        sock: &'a S,
        key: u32,
        hdr: &VnetHdr,
        frame: &EgressFrame<'a>,
    ) -> bool {
        let q = &mut *self.q;
        let i = q.n;
        if i == TX_BATCH {
            return false;
        }
        q.lens[i] = layout_frame(&mut q.iovs[i], &mut q.hdrs[i], &mut q.tags[i], hdr, frame);
        q.fds[i] = sock.as_raw_fd();
        q.keys[i] = key;
        q.n = i + 1;
        true
    }

    /// Sends every queued frame: one `sendmmsg` per socket (more only when the kernel takes
    /// part of a batch or a frame fails). Calls `done(key, bytes, result)` once per frame, in
    /// queue order per socket, where `bytes` is the frame's length on the wire, pad included
    /// ([`EgressFrame::wire_len`]). The batch is empty afterwards.
    pub fn flush(&mut self, mut done: impl FnMut(u32, usize, io::Result<()>)) {
        self.release_guests();
        let q = &mut *self.q;
        let n = q.n;
        let mut taken: u64 = 0;
        for first in 0..n {
            if taken & (1 << first) != 0 {
                continue;
            }
            let fd = q.fds[first];
            // This socket's entries, in order, into the scratch headers.
            let mut idx = [0u8; TX_BATCH];
            let mut m = 0;
            for j in first..n {
                if q.fds[j] != fd {
                    continue;
                }
                taken |= 1 << j;
                idx[m] = j as u8;
                // SAFETY: msghdr is plain data; all-zero is a valid value.
                let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
                h.msg_iov = q.iovs[j].as_mut_ptr();
                h.msg_iovlen = q.iovs[j].len();
                q.msgs[m] = libc::mmsghdr {
                    msg_hdr: h,
                    msg_len: 0,
                };
                m += 1;
            }
            let mut k = 0;
            while k < m {
                // SAFETY: each mmsghdr in msgs[k..m] points at iovecs in this queue, which
                // point at the queue's own header and tag arrays and at frame bytes borrowed
                // for 'a (alive: `self` is a TxBatch<'a>); `fd` belongs to a socket borrowed
                // for 'a by `push`, so it is open. sendmmsg only reads through them.
                let r = unsafe {
                    libc::sendmmsg(
                        fd,
                        q.msgs[k..m].as_mut_ptr(),
                        (m - k) as libc::c_uint,
                        libc::MSG_DONTWAIT,
                    )
                };
                if r <= 0 {
                    // The first frame failed (a full socket buffer, the link down): report it
                    // and go on with the next.
                    let err = if r < 0 {
                        io::Error::last_os_error()
                    } else {
                        io::ErrorKind::WriteZero.into()
                    };
                    // A full socket buffer stays full for the rest of this flush: drop the
                    // socket's remaining frames without a syscall each.
                    let last = if err.kind() == io::ErrorKind::WouldBlock {
                        m
                    } else {
                        k + 1
                    };
                    // io::Error is not Clone: each frame gets its own, made from the errno.
                    let (errno, kind) = (err.raw_os_error(), err.kind());
                    for &j in &idx[k..last] {
                        let e = errno.map_or_else(|| kind.into(), io::Error::from_raw_os_error);
                        done(q.keys[j as usize], q.lens[j as usize], Err(e));
                    }
                    k = last;
                } else {
                    for &j in &idx[k..k + r as usize] {
                        done(q.keys[j as usize], q.lens[j as usize], Ok(()));
                    }
                    k += r as usize;
                }
            }
        }
        q.n = 0;
    }
}

impl Drop for TxBatch<'_> {
    fn drop(&mut self) {
        debug_assert!(self.q.n == 0, "a transmit batch was dropped unflushed");
        self.q.n = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_try_leaves_the_reader_lock_with_its_holder() {
        let lock = RxLock::default();
        let held = lock.try_lock().expect("a free lock is taken");
        assert!(lock.try_lock().is_none(), "a held lock refuses");
        assert!(
            lock.try_lock().is_none(),
            "and still refuses after a lost try"
        );
        drop(held);
        assert!(lock.try_lock().is_some(), "a released lock is free again");
    }
    use std::os::unix::net::UnixDatagram;

    fn hdr(flags: u8) -> VnetHdr {
        VnetHdr {
            flags,
            gso_type: VnetHdr::GSO_NONE,
            hdr_len: 0,
            gso_size: 0,
            csum_start: 0,
            csum_offset: 0,
        }
    }

    fn recv_all(s: &UnixDatagram) -> Vec<Vec<u8>> {
        s.set_nonblocking(true).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = s.recv(&mut buf) {
            out.push(buf[..n].to_vec());
        }
        out
    }

    #[test]
    fn flush_sends_each_sockets_frames_in_order_as_one_datagram_each() {
        let (a_tx, a_rx) = UnixDatagram::pair().unwrap();
        let (b_tx, b_rx) = UnixDatagram::pair().unwrap();
        let addrs = [0xaau8; 12];
        let bodies: Vec<[u8; 4]> = (0u8..5).map(|i| [0x08, 0x00, i, i]).collect();
        let mut q = TxQueue::default();
        let mut tx = q.begin();
        // Interleaved: a0 b1 a2 b3 a4; frame 1 carries a tag.
        for (i, body) in bodies.iter().enumerate() {
            let tag = (i == 1).then_some([0x81, 0x00, 0x00, 0x0a]);
            let f = EgressFrame {
                addrs: &addrs,
                tag,
                rest: body,
            };
            let sock = if i % 2 == 0 { &a_tx } else { &b_tx };
            assert!(tx.push(sock, i as u32, &hdr(i as u8), &f));
        }
        assert_eq!(tx.len(), 5);
        let mut reports = Vec::new();
        tx.flush(|key, len, sent| reports.push((key, len, sent.is_ok())));
        assert!(tx.is_empty());
        drop(tx);
        // Every frame is short (16 bytes, 20 with the tag): each leaves padded to 60 bytes,
        // and is reported with its pad.
        assert_eq!(
            reports,
            vec![
                (0, 60, true),
                (2, 60, true),
                (4, 60, true),
                (1, 60, true),
                (3, 60, true)
            ]
        );
        let expect = |i: usize| {
            let mut d = hdr(i as u8).to_bytes().to_vec();
            d.extend_from_slice(&addrs);
            if i == 1 {
                d.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
            }
            d.extend_from_slice(&bodies[i]);
            d.resize(VnetHdr::LEN + MIN_FRAME_LEN, 0);
            d
        };
        assert_eq!(recv_all(&a_rx), vec![expect(0), expect(2), expect(4)]);
        assert_eq!(recv_all(&b_rx), vec![expect(1), expect(3)]);
    }

    /// The bytes the kernel would read through `iov`.
    fn gather(iov: &[libc::iovec]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in iov {
            if v.iov_len == 0 {
                continue;
            }
            // SAFETY: the caller's iovecs point at buffers still alive in its scope, each
            // with its true length.
            out.extend_from_slice(unsafe {
                std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len)
            });
        }
        out
    }

    #[test]
    fn layout_pads_short_frames_with_zeros_after_the_tag() {
        let addrs: [u8; 12] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1];
        let ethertype = [0x88, 0xb5];
        let payload_46 = [0xabu8; 48]; // EtherType 0x88b5 and 46 bytes: 60 in all
        let big = [0xcdu8; 1500];
        let tag = Some([0x81, 0x00, 0x00, 0x0a]);
        let plain = hdr(0);
        let gso = VnetHdr {
            gso_type: 1, // TCPV4
            gso_size: 2,
            ..plain
        };
        // (rest, tag, header, expected pad)
        type Case<'a> = (&'a [u8], Option<[u8; 4]>, VnetHdr, usize);
        let cases: &[Case] = &[
            (&ethertype, None, plain, 46),
            (&ethertype, tag, plain, 42),
            (&payload_46[..47], None, plain, 1),
            (&payload_46, None, plain, 0),
            (&payload_46, tag, plain, 0),
            (&big, tag, plain, 0),
            (&ethertype, None, gso, 0),
        ];
        for &(rest, tag, h, pad) in cases {
            let f = EgressFrame {
                addrs: &addrs,
                tag,
                rest,
            };
            let mut iov = [NO_IOV; FRAME_IOVS];
            let (mut hb, mut tb) = ([0xee; VnetHdr::LEN], [0xee; VLAN_HLEN]);
            let sent = layout_frame(&mut iov, &mut hb, &mut tb, &h, &f);
            assert_eq!(sent, f.len() + pad, "{} bytes, tag {tag:?}", f.len());
            assert_eq!(sent, f.wire_len(&h));
            assert_eq!(iov[2].iov_len, if tag.is_some() { 4 } else { 0 });
            assert_eq!(iov[4].iov_len, pad);
            let mut expect = h.to_bytes().to_vec();
            expect.extend_from_slice(&addrs);
            expect.extend_from_slice(tag.as_ref().map_or(&[][..], |t| &t[..]));
            expect.extend_from_slice(rest);
            expect.extend(std::iter::repeat_n(0u8, pad));
            assert_eq!(gather(&iov), expect);
            if h.gso_type == VnetHdr::GSO_NONE {
                assert!(sent >= MIN_FRAME_LEN);
            }
        }
    }

    #[test]
    fn taps_and_packet_sockets_send_the_same_padded_bytes() {
        // writev_frame (taps) and TxBatch (packet sockets)
        // lay frames out with the same function; check what each puts on a socket.
        let addrs = [0x11u8; 12];
        let body = [0x88, 0xb5];
        let tag = Some([0x81, 0x00, 0x00, 0x14]);
        for tag in [None, tag] {
            let f = EgressFrame {
                addrs: &addrs,
                tag,
                rest: &body,
            };
            let (w_tx, w_rx) = UnixDatagram::pair().unwrap();
            super::super::writev_frame(w_tx.as_raw_fd(), &hdr(3), &f).unwrap();
            let (b_tx, b_rx) = UnixDatagram::pair().unwrap();
            let mut q = TxQueue::default();
            let mut tx = q.begin();
            assert!(tx.push(&b_tx, 0, &hdr(3), &f));
            let mut lens = Vec::new();
            tx.flush(|_, len, sent| lens.push((len, sent.is_ok())));
            drop(tx);
            assert_eq!(lens, [(60, true)]);
            let by_writev = recv_all(&w_rx);
            assert_eq!(by_writev, recv_all(&b_rx));
            let d = &by_writev[0];
            assert_eq!(d.len(), VnetHdr::LEN + MIN_FRAME_LEN, "tag {tag:?}");
            let frame_end = VnetHdr::LEN + f.len();
            assert_eq!(&d[VnetHdr::LEN..VnetHdr::LEN + 12], &addrs);
            assert_eq!(&d[frame_end - 2..frame_end], &body);
            assert!(
                d[frame_end..].iter().all(|&b| b == 0),
                "pad not zero: {d:?}"
            );
        }
    }

    #[test]
    fn a_full_batch_refuses_more_and_a_failed_send_is_reported() {
        let (tx_sock, rx_sock) = UnixDatagram::pair().unwrap();
        drop(rx_sock); // every send now fails with ECONNREFUSED
        let addrs = [0u8; 12];
        let body = [0x08, 0x00];
        let f = EgressFrame {
            addrs: &addrs,
            tag: None,
            rest: &body,
        };
        let mut q = TxQueue::default();
        let mut tx = q.begin();
        for i in 0..TX_BATCH {
            assert!(tx.push(&tx_sock, i as u32, &hdr(0), &f));
        }
        assert!(tx.is_full());
        assert!(!tx.push(&tx_sock, 99, &hdr(0), &f));
        let mut reports = Vec::new();
        tx.flush(|key, _, sent| reports.push((key, sent.map_err(|e| e.raw_os_error()))));
        // Every frame is reported once, in order, with the OS error (the first send learns
        // that the peer is gone, the later ones that the socket is no longer connected).
        let keys: Vec<u32> = reports.iter().map(|r| r.0).collect();
        assert_eq!(keys, (0..TX_BATCH as u32).collect::<Vec<_>>());
        assert_eq!(reports[0].1, Err(Some(libc::ECONNREFUSED)));
        assert!(
            reports.iter().all(|r| matches!(r.1, Err(Some(_)))),
            "{reports:?}"
        );
    }

    #[test]
    fn fill_reads_until_it_would_block_and_marks_bad_reads_empty() {
        let mut batch = RxBatch::default();
        let mut calls = 0;
        let n = batch
            .fill(|hdr, buf| {
                calls += 1;
                match calls {
                    1 | 3 => {
                        hdr[0] = calls as u8;
                        buf[..3].copy_from_slice(&[calls as u8; 3]);
                        Ok((0, 3))
                    }
                    2 => Err(io::Error::new(io::ErrorKind::InvalidData, "cut short")),
                    _ => Err(io::ErrorKind::WouldBlock.into()),
                }
            })
            .unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            batch.frame(0),
            (&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[1u8; 3][..])
        );
        assert_eq!(batch.frame(1).1.len(), 0);
        assert_eq!(batch.frame(2).1, &[3u8; 3][..]);
        let none = batch.fill(|_, _| Err(io::ErrorKind::WouldBlock.into()));
        assert_eq!(none.unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn fill_stops_at_a_full_batch() {
        let mut batch = RxBatch::default();
        let n = batch.fill(|_, _| Ok((0, 60))).unwrap();
        assert_eq!(n, RX_BATCH);
    }
}
