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
use crate::port::sys::{Epoll, Event};
use crate::port::Port;
use crate::switch::Shared;
use crate::wire::{EgressFrame, EthernetFrame, VnetHdr};

/// Epoll token of the stop eventfd.
pub(crate) const STOP_TOKEN: u64 = u64::MAX;
/// Frames read from one port before the worker looks at the next ready port.
pub const BATCH: usize = 64;
/// Receive buffer: a 64 KiB GSO frame plus Ethernet and VLAN headers, with room to spare, and
/// headroom for a VLAN tag that a packet socket hands over separately.
pub const RX_BUF_LEN: usize = 65536 + 1024 + crate::port::packet::RX_HEADROOM;

pub(crate) fn run(shared: Arc<Shared>, epoll: Arc<Epoll>, index: usize) {
    let mut events: [Event; 64] = [Event { events: 0, u64: 0 }; 64];
    let mut hdr = [0u8; VnetHdr::LEN];
    let mut buf = vec![0u8; RX_BUF_LEN];
    tracing::debug!(worker = index, "worker started");
    loop {
        let n = match epoll.wait(&mut events, -1) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(worker = index, error = %e, "epoll_wait failed; worker stops");
                return;
            }
        };
        let snap = shared.snapshot.load();
        let now = shared.now();
        for ev in &events[..n] {
            let token = ev.u64;
            if token == STOP_TOKEN {
                tracing::debug!(worker = index, "worker stopped");
                return;
            }
            let id = token as PortId;
            let Some(port) = snap.port(id).and_then(|p| p.port.as_ref()) else {
                continue;
            };
            for _ in 0..BATCH {
                match port.recv(&mut hdr, &mut buf) {
                    Ok((start, len)) => {
                        let frame = &buf[start..start + len];
                        forward_one(&shared, index, &snap, id, port, &hdr, frame, now)
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // A packet socket reports its interface going down once; it keeps working
                    // when the link comes back, so this is not fatal.
                    Err(e) if e.raw_os_error() == Some(libc::ENETDOWN) => {
                        tracing::debug!(port = port.name(), "link went down");
                        break;
                    }
                    Err(e) => {
                        // The interface is gone or broken: stop waiting on it so that a
                        // level-triggered error does not spin this worker.
                        tracing::warn!(port = port.name(), error = %e, "receive failed; port stops receiving");
                        if let Some(fd) = port.fd() {
                            let _ = epoll.delete(fd);
                        }
                        break;
                    }
                }
            }
        }
    }
}

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
) {
    port.counters.rx(bytes.len());
    let Ok(frame) = EthernetFrame::parse(bytes) else {
        port.counters.count_drop(DropReason::BadFrame);
        return;
    };
    let d = match decide(snap, &shared.fdb, &frame, ingress, now) {
        Ok(d) => d,
        Err(r) => {
            port.counters.count_drop(r);
            return;
        }
    };
    if d.learned == Some(Learned::NoRoom) {
        port.counters.count_drop(DropReason::NoRoom);
    }
    shared.vlan_stats[worker].count(d.vlan, bytes.len(), d.out == Out::Flood);
    let vh = VnetHdr::from_bytes(hdr);
    for (p, how) in egress_ports(snap, &d, ingress) {
        let Some(out) = snap.port(p).and_then(|e| e.port.as_ref()) else {
            continue;
        };
        if !out.is_attached() {
            continue;
        }
        let e = EgressFrame::render(&frame, d.vlan, how);
        match out.send(&vh.shifted(e.len_delta(&frame)), &e) {
            Ok(()) => out.counters.tx(e.len()),
            Err(_) => out.counters.count_drop(DropReason::TxError),
        }
    }
}
