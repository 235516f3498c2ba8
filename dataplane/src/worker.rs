//! Worker threads: each waits on its share of the ports with epoll, reads frames in batches and
//! forwards them. Idle workers sleep in `epoll_wait`; they never spin.
//!
//! Per frame: no lock, no allocation. The receive buffer is allocated once per worker, the
//! configuration is one atomic snapshot load per wakeup, the FDB is lock-free, counters are
//! atomics.

use std::io;
use std::sync::Arc;

use crate::config::{PortId, Snapshot};
use crate::counters::DropReason;
use crate::fdb::Learned;
use crate::forward::{decide, egress_ports, Out};
use crate::port::packet::RxBatch;
use crate::port::sys::{Epoll, Event};
use crate::port::{Port, PortIo};
use crate::switch::Shared;
use crate::wire::{EgressFrame, EthernetFrame, VnetHdr};

/// Epoll token of the stop eventfd.
pub(crate) const STOP_TOKEN: u64 = u64::MAX;
/// Frames read from one port before the worker looks at the next ready port.
pub const BATCH: usize = 64;
/// Receive buffer: a 64 KiB GSO frame plus Ethernet and VLAN headers, with room to spare, and
/// headroom for a VLAN tag that a packet socket hands over separately.
pub const RX_BUF_LEN: usize = 65536 + 1024 + crate::port::packet::RX_HEADROOM;

/// Egress ports remembered per wakeup for the opportunistic drain (more are not drained).
const TOUCHED_MAX: usize = 8;

/// One worker's reusable state: allocated once, reused for every frame.
struct Worker {
    shared: Arc<Shared>,
    epoll: Arc<Epoll>,
    index: usize,
    hdr: [u8; VnetHdr::LEN],
    buf: Vec<u8>,
    /// Receive slots for packet sockets, read many frames per syscall.
    batch: RxBatch,
    /// Ports this wakeup sent frames to (deduplicated, at most [`TOUCHED_MAX`]).
    touched: [PortId; TOUCHED_MAX],
    n_touched: usize,
}

pub(crate) fn run(shared: Arc<Shared>, epoll: Arc<Epoll>, index: usize) {
    let mut events: [Event; 64] = [Event { events: 0, u64: 0 }; 64];
    let mut w = Worker {
        shared,
        epoll,
        index,
        hdr: [0u8; VnetHdr::LEN],
        buf: vec![0u8; RX_BUF_LEN],
        batch: RxBatch::default(),
        touched: [0; TOUCHED_MAX],
        n_touched: 0,
    };
    tracing::debug!(worker = index, "worker started");
    loop {
        let n = match w.epoll.wait(&mut events, -1) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(worker = index, error = %e, "epoll_wait failed; worker stops");
                return;
            }
        };
        let snap = w.shared.snapshot.load();
        let now = w.shared.now();
        w.n_touched = 0;
        for ev in &events[..n] {
            let token = ev.u64;
            if token == STOP_TOKEN {
                tracing::debug!(worker = index, "worker stopped");
                return;
            }
            w.drain(&snap, token as PortId, now);
        }
        // Opportunistic drain: a frame written to a local endpoint (tap, veth) is often
        // answered within the write itself (the receiving stack runs in our syscall), so the
        // reply already waits on the egress port. Reading it here, instead of waking the
        // worker that owns that port, saves a cross-core wakeup per round trip.
        let mut i = 0;
        while i < w.n_touched {
            let id = w.touched[i];
            w.drain(&snap, id, now);
            i += 1;
        }
    }
}

impl Worker {
    /// Reads and forwards up to [`BATCH`] frames from port `id`, unless another worker is
    /// reading it right now (then that worker drains it; frames of one port are never read by
    /// two workers at once, so their order is kept).
    fn drain(&mut self, snap: &Snapshot, id: PortId, now: u32) {
        let Some(port) = snap.port(id).and_then(|p| p.port.as_ref()) else {
            return;
        };
        if !port.is_attached() || !port.try_begin_rx() {
            return;
        }
        let mut read = 0;
        while read < BATCH {
            let got = match port.io() {
                PortIo::Packet(sock) => sock.recv_batch(&mut self.batch).inspect(|&n| {
                    for i in 0..n {
                        let (hdr, frame) = self.batch.frame(i);
                        let sent =
                            forward_one(&self.shared, self.index, snap, id, port, hdr, frame, now);
                        if let Some(out) = sent {
                            touch(&mut self.touched, &mut self.n_touched, out);
                        }
                    }
                }),
                _ => port.recv(&mut self.hdr, &mut self.buf).map(|(start, len)| {
                    let frame = &self.buf[start..start + len];
                    let sent = forward_one(
                        &self.shared,
                        self.index,
                        snap,
                        id,
                        port,
                        &self.hdr,
                        frame,
                        now,
                    );
                    if let Some(out) = sent {
                        touch(&mut self.touched, &mut self.n_touched, out);
                    }
                    1
                }),
            };
            match got {
                Ok(0) => break,
                Ok(n) => read += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // A read without a whole vnet header, or a frame too big for the buffer: drop
                // that frame, keep reading.
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    port.counters.count_drop(DropReason::BadFrame);
                    read += 1;
                }
                // A packet socket reports its interface going down once; it keeps working
                // when the link comes back, so this is not fatal.
                Err(e) if e.raw_os_error() == Some(libc::ENETDOWN) => {
                    tracing::debug!(port = port.name(), "link went down");
                    break;
                }
                Err(e) => {
                    // The interface is gone or broken: stop waiting on it so that a
                    // level-triggered error does not spin this worker.
                    if port.mark_rx_failed(&e) {
                        tracing::warn!(port = port.name(), error = %e, "receive failed; port stops receiving");
                    }
                    if let Some(fd) = port.fd() {
                        let _ = self.epoll.delete(fd);
                    }
                    break;
                }
            }
        }
        port.end_rx();
    }
}

/// Remembers `id` among the ports written to in this wakeup.
#[inline]
fn touch(touched: &mut [PortId; TOUCHED_MAX], n: &mut usize, id: PortId) {
    if touched[..*n].contains(&id) || *n == TOUCHED_MAX {
        return;
    }
    touched[*n] = id;
    *n += 1;
}

/// Forwards one received frame to its egress ports. Returns the port it went to when it was
/// sent as known unicast (a candidate for the opportunistic drain).
#[inline]
#[allow(clippy::too_many_arguments)]
fn forward_one(
    shared: &Shared,
    worker: usize,
    snap: &Snapshot,
    ingress: PortId,
    port: &Port,
    hdr: &[u8; VnetHdr::LEN],
    bytes: &[u8],
    now: u32,
) -> Option<PortId> {
    port.counters.rx(bytes.len());
    let Ok(frame) = EthernetFrame::parse(bytes) else {
        port.counters.count_drop(DropReason::BadFrame);
        return None;
    };
    let d = match decide(snap, &shared.fdb, &frame, ingress, now) {
        Ok(d) => d,
        Err(r) => {
            port.counters.count_drop(r);
            return None;
        }
    };
    if d.learned == Some(Learned::NoRoom) {
        port.counters.count_drop(DropReason::NoRoom);
    }
    shared.vlan_stats[worker].count(d.vlan, bytes.len(), d.out == Out::Flood);
    let vh = VnetHdr::from_bytes(hdr);
    let mut sent_to = None;
    for (p, how) in egress_ports(snap, &d, ingress) {
        let Some(out) = snap.port(p).and_then(|e| e.port.as_ref()) else {
            continue;
        };
        if !out.is_attached() {
            continue;
        }
        let e = EgressFrame::render(&frame, d.vlan, how);
        match out.send(&vh.shifted(e.len_delta(&frame)), &e) {
            Ok(()) => {
                out.counters.tx(e.len());
                if d.out == Out::Unicast(p) {
                    sent_to = Some(p);
                }
            }
            Err(_) => out.counters.count_drop(DropReason::TxError),
        }
    }
    sent_to
}
