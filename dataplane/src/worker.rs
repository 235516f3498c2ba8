//! Worker threads: each waits on its share of the ports with epoll, reads frames in batches and
//! forwards them. Idle workers sleep in `epoll_wait`; they never spin.
//!
//! Per frame: no lock, no allocation. The receive and transmit batches are allocated once per
//! worker, the configuration is one atomic snapshot load per wakeup, the FDB is lock-free,
//! counters are atomics.
//!
//! A worker reads a batch of frames from a port (from a netdev port's receive ring, with no
//! syscall; one `readv` per frame from a tap), forwards each, and flushes the frames queued
//! for netdev ports with one `sendmmsg` per port; frames for taps are written as they are
//! forwarded.
#![forbid(unsafe_code)]

use std::io;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{LimitAction, PortId};
use crate::counters::{DropReason, MacEvent, PortCounters};
use crate::events::{Event as SwitchEvent, EventKind};
use crate::fdb::Learned;
use crate::forward::{
    classify, decide_classified, egress_ports, prefetch_classified, Decision, Out,
};
use crate::port::batch::{RxBatch, TxBatch, TxQueue, RX_BATCH};
use crate::port::{tx_drop, Port, Sent as PortSent};
use crate::shared::Shared;
use crate::sys::{Epoll, Event};
use crate::watch::{Direction, Record, Sent, Watches};
use crate::wire::{EgressFrame, EgressTag, EthernetFrame, MacAddr, VnetHdr, MIN_FRAME_LEN};
use crate::{PortEntry, Snapshot};

/// Epoll token of the stop eventfd.
pub(crate) const STOP_TOKEN: u64 = u64::MAX;
/// Frames read from one port before the worker looks at the next ready port.
pub const BATCH: usize = 64;

/// Egress ports remembered per wakeup for the opportunistic drain (more are not drained).
const TOUCHED_MAX: usize = 8;

/// One worker's state.
struct Worker {
    shared: Arc<Shared>,
    epoll: Arc<Epoll>,
    index: usize,
    bufs: Buffers,
}

/// A worker's reusable buffers: allocated once, reused for every frame.
struct Buffers {
    /// Frames read from one port, forwarded together.
    batch: RxBatch,
    /// Frames queued for netdev ports, flushed after each receive batch.
    txq: TxQueue,
    /// Ports this wakeup sent frames to (deduplicated, at most [`TOUCHED_MAX`]).
    touched: [PortId; TOUCHED_MAX],
    n_touched: usize,
}

pub(crate) fn run(shared: Arc<Shared>, epoll: Arc<Epoll>, index: usize) {
    let mut events: [Event; 64] = [Event { events: 0, u64: 0 }; 64];
    let window = shared.poll_window;
    let mut w = Worker {
        shared,
        epoll,
        index,
        bufs: Buffers {
            batch: RxBatch::default(),
            txq: TxQueue::default(),
            touched: [0; TOUCHED_MAX],
            n_touched: 0,
        },
    };
    // Ports to read again without waiting for epoll: their turn ended with frames left (the
    // per-port budget), or with frames that arrived while their wakeups were off.
    let mut again = Again::default();
    // Adaptive polling: after a round that read frames from a port whose wakeups reading
    // turns off (a vhost-user guest, `Port::rearms`), the worker leaves them off and does not
    // sleep until `window` has passed without such frames. Meanwhile it reads those ports
    // (`polled`) on every round and asks epoll without waiting; when the window ends it turns
    // their wakeups back on and sleeps. Taps and packet sockets alone never start a window:
    // a worker polling for them measured slower request/response (it takes the core their
    // endpoints run on), see docs/performance.md.
    let mut polled = Again::default();
    let mut poll_until: Option<Instant> = None;
    tracing::debug!(
        worker = index,
        poll_us = window.as_micros(),
        "worker started"
    );
    loop {
        let idle = again.is_empty() && polled.is_empty() && poll_until.is_none();
        let n = match w.epoll.wait(&mut events, if idle { -1 } else { 0 }) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(worker = index, error = %e, "epoll_wait failed; worker stops");
                return;
            }
        };
        let snap = w.shared.snapshot.load();
        let now = w.shared.now();
        w.bufs.n_touched = 0;
        let mut round = Round {
            snap: &snap,
            now,
            poll: !window.is_zero(),
            again: Again::default(),
            polled: &mut polled,
            polled_frames: 0,
        };
        for ev in &events[..n] {
            let token = ev.u64;
            if token == STOP_TOKEN {
                tracing::debug!(worker = index, "worker stopped");
                return;
            }
            // A socket error (a netdev's interface went down or away) keeps the fd readable
            // until it is read; the ring path makes no receive syscall that would read it.
            let error = ev.events & libc::EPOLLERR as u32 != 0;
            w.turn(&mut round, token as PortId, error, false);
        }
        for &id in again.ids() {
            w.turn(&mut round, id, false, false);
        }
        for i in 0..round.polled.n {
            let id = round.polled.ids[i];
            w.turn(&mut round, id, false, false);
        }
        // Opportunistic drain: a frame written to a local endpoint (tap, veth) is often
        // answered within the write itself (the receiving stack runs in our syscall), so the
        // reply already waits on the egress port. Reading it here, instead of waking the
        // worker that owns that port, saves a cross-core wakeup per round trip.
        let mut i = 0;
        while i < w.bufs.n_touched {
            let id = w.bufs.touched[i];
            w.turn(&mut round, id, false, true);
            i += 1;
        }
        let frames = round.polled_frames;
        again = round.again;
        if polled.is_empty() {
            poll_until = None;
            continue;
        }
        let clock = Instant::now();
        if frames > 0 {
            poll_until = Some(clock + window);
        } else if poll_until.is_none_or(|t| clock >= t) {
            // The window passed without a frame: wakeups back on, then sleep (unless one of
            // them says frames came meanwhile).
            poll_until = None;
            for &id in polled.ids() {
                if w.rearm(&snap, id) {
                    again.push(id);
                }
            }
            polled = Again::default();
        }
    }
}

/// One round of a worker's loop: the configuration and clock it reads with, and what its
/// port turns leave to do.
struct Round<'a> {
    snap: &'a Snapshot,
    now: u32,
    /// Adaptive polling is on: a port whose wakeups reading turned off stays unarmed and is
    /// polled.
    poll: bool,
    /// Ports to read again in the next round.
    again: Again,
    /// Ports read with their wakeups left off, polled until the window ends.
    polled: &'a mut Again,
    /// Traffic this round on ports left with their wakeups off: frames read from them, and
    /// one for each such port sent unicast frames.
    polled_frames: usize,
}

impl Worker {
    /// One turn of port `id` in `round`: drains it, then notes whether it is to be read
    /// again, or polled with its wakeups off. `sent_to`: this round sent the port unicast
    /// frames; for a polled port that counts as traffic (its guest's answer usually follows
    /// within microseconds, and is then read without a kick).
    fn turn(&mut self, round: &mut Round<'_>, id: PortId, error: bool, sent_to: bool) {
        let rearm = !round.poll || round.polled.is_full();
        let d = self.drain(round.snap, id, round.now, error, rearm);
        if d.again {
            round.again.push(id);
        }
        if d.unarmed {
            round.polled_frames += d.frames + usize::from(sent_to);
            round.polled.push(id);
        }
    }

    /// Turns port `id`'s wakeups back on before the worker sleeps. True if frames arrived
    /// while they were off, or another worker reads the port right now: read it again.
    fn rearm(&self, snap: &Snapshot, id: PortId) -> bool {
        let Some(entry) = snap.port(id) else {
            return false;
        };
        match entry.port.try_rx() {
            Some(mut rx) => rx.rearm(),
            None => entry.port.is_attached(),
        }
    }

    /// Reads and forwards up to [`BATCH`] frames from port `id`, unless another worker is
    /// reading it right now (then it is to be read again: frames of one port are never read
    /// by two workers at once, so their order is kept).
    /// `error`: epoll reported an error on the port's fd; it is read (and so cleared) first.
    /// `rearm`: when the queue is found empty, turn the port's wakeups back on
    /// ([`crate::port::PortRx::rearm`]); otherwise a port that has them off is left so
    /// ([`Drained::unarmed`]), to be polled.
    fn drain(
        &mut self,
        snap: &Snapshot,
        id: PortId,
        now: u32,
        error: bool,
        rearm: bool,
    ) -> Drained {
        let none = Drained::default();
        let Some(entry) = snap.port(id) else {
            return none;
        };
        let port = &entry.port;
        if !port.is_attached() {
            return none;
        }
        // Another worker reads the port right now. For a port whose wakeups are
        // edge-triggered (a guest's kick), come back to it soon rather than count on that
        // worker: a kick that arrived just as it was leaving (it had turned the kicks back on,
        // found nothing, and not yet let go of the port) would otherwise be lost, leaving the
        // guest's frames unread. Taps and packet sockets are level-triggered: epoll reports
        // them again while frames wait, and retrying at once would only spin against the
        // other reader.
        let Some(mut rx) = port.try_rx() else {
            return Drained {
                again: port.rearms(),
                ..none
            };
        };
        if error {
            if let Some(e) = port.take_error() {
                if !self.rx_error(port, e) {
                    return none;
                }
            }
        }
        let mut read = 0;
        while read < BATCH {
            match rx.recv_batch(&mut self.bufs.batch) {
                Ok(n) => {
                    let ctx = Ctx {
                        shared: &self.shared,
                        worker: self.index,
                        snap,
                        now,
                        id,
                        entry,
                    };
                    self.bufs.forward_batch(&ctx, n);
                    read += n;
                    // A short batch emptied the queue; epoll says when more arrives.
                    if n < RX_BATCH {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.rx_error(port, e);
                    return Drained {
                        frames: read,
                        ..none
                    };
                }
            }
        }
        let unarmed = !rearm && port.rearms();
        Drained {
            frames: read,
            again: read >= BATCH || (rearm && rx.rearm()),
            unarmed,
        }
    }

    /// Handles a receive error on `port`. Returns true if the port can still be read.
    fn rx_error(&self, port: &Port, e: io::Error) -> bool {
        // A packet socket reports its interface going down once; it keeps working when the
        // link comes back, so this is not fatal.
        if e.raw_os_error() == Some(libc::ENETDOWN) {
            tracing::debug!(port = port.name(), "link went down");
            return true;
        }
        // The interface is gone or broken: stop waiting on it so that a level-triggered error
        // does not spin this worker.
        if port.mark_rx_failed(&e) {
            tracing::warn!(port = port.name(), error = %e, "receive failed; port stops receiving");
        }
        port.unwatch(&self.epoll);
        false
    }
}

impl Buffers {
    /// Forwards the `n` frames of the last receive batch from the ingress port of `ctx`,
    /// then sends what was queued for netdev ports. With a capture or live trace armed
    /// anywhere (one relaxed load per batch tells), the frames go through the same code with
    /// the watch hooks compiled in ([`Watched`]); otherwise with none ([`Unwatched`]).
    fn forward_batch(&mut self, ctx: &Ctx<'_>, n: usize) {
        if ctx.shared.watching.any() || !ctx.snap.mirrors.is_empty() {
            self.forward_frames(ctx, n, &mut Watched::new(ctx));
        } else {
            self.forward_frames(ctx, n, &mut Unwatched);
        }
    }

    #[inline(always)]
    fn forward_frames<W: Watcher>(&mut self, ctx: &Ctx<'_>, n: usize, w: &mut W) {
        let Buffers {
            batch,
            txq,
            touched,
            n_touched,
        } = self;
        // Parse and classify the batch once, and start the FDB loads of all of it before the
        // first decision: with a large table each frame's slots are cache misses, and this way
        // they overlap.
        let mut frames: [Option<Classified<'_>>; RX_BATCH] = [None; RX_BATCH];
        for (i, f) in frames.iter_mut().enumerate().take(n) {
            let Ok(frame) = EthernetFrame::parse(batch.frame(i).1) else {
                continue;
            };
            let vlan = classify(&ctx.entry.mode, frame.vid());
            if let (Ok(vlan), true) = (vlan, n > 1) {
                prefetch_classified(&ctx.shared.fdb, &frame, vlan);
            }
            *f = Some((frame, vlan));
        }
        // Traffic counters are shared atomics: a locked add per frame would also wait for every
        // store before it (the frame's copy into a guest's memory, say), so the batch is added
        // up here and counted once per port.
        let mut rx_bytes = 0;
        let mut sent = SentTally::default();
        let mut tx = txq.begin();
        for (i, frame) in frames.into_iter().enumerate().take(n) {
            let (hdr, bytes) = batch.frame(i);
            rx_bytes += bytes.len() as u64;
            w.received(bytes);
            if let (true, Some((f, vlan))) = (W::ON, &frame) {
                mirror_received(ctx, hdr, f, vlan.ok(), &mut tx, &mut sent);
            }
            let out = forward_one(ctx, hdr, bytes.len(), frame, &mut tx, &mut sent, w);
            w.done();
            if let Some(out) = out {
                touch(touched, n_touched, out);
            }
        }
        ctx.entry.port.counters.rx_n(n as u64, rx_bytes);
        sent.count();
        flush(ctx.snap, &mut tx);
    }
}

/// The per-frame hooks of capture and live trace ([`crate::watch`]). [`Unwatched`]'s do
/// nothing and compile to nothing.
trait Watcher {
    /// Whether the hooks do anything (and port mirrors are served).
    const ON: bool;
    /// A frame was received on the ingress port.
    fn received(&mut self, bytes: &[u8]);
    /// The decision for it (or why it was dropped on the ingress port).
    fn decided(&mut self, d: Result<Decision, DropReason>);
    /// A copy for port `p`, carried `how`, rendered as `e`, was sent behind `hdr` (`Ok`), or
    /// dropped on `p` for the reason given.
    fn sent(
        &mut self,
        p: &Port,
        id: PortId,
        how: EgressTag,
        e: &EgressFrame<'_>,
        sent: Result<&VnetHdr, DropReason>,
    );
    /// The frame is done with.
    fn done(&mut self);
}

/// No watch armed.
struct Unwatched;

impl Watcher for Unwatched {
    const ON: bool = false;
    #[inline(always)]
    fn received(&mut self, _: &[u8]) {}
    #[inline(always)]
    fn decided(&mut self, _: Result<Decision, DropReason>) {}
    #[inline(always)]
    fn sent(
        &mut self,
        _: &Port,
        _: PortId,
        _: EgressTag,
        _: &EgressFrame<'_>,
        _: Result<&VnetHdr, DropReason>,
    ) {
    }
    #[inline(always)]
    fn done(&mut self) {}
}

/// A watch is armed somewhere: capture the frames of watched ports, record the decisions
/// of traced ones.
struct Watched {
    /// The batch's time, in nanoseconds since the Unix epoch (one clock read per batch).
    at_ns: u64,
    /// The ingress port's watches.
    ingress: Option<Arc<Watches>>,
    /// The frame being traced, if the ingress port has a live trace.
    record: Option<Record>,
}

impl Watched {
    fn new(ctx: &Ctx<'_>) -> Watched {
        let at_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Watched {
            at_ns,
            ingress: ctx.entry.port.watches.load_full(),
            record: None,
        }
    }
}

impl Watcher for Watched {
    const ON: bool = true;
    fn received(&mut self, bytes: &[u8]) {
        let Some(w) = &self.ingress else {
            return;
        };
        for c in &w.captures {
            c.record(Direction::Rx, self.at_ns, bytes.len(), &[bytes]);
        }
        if !w.traces.is_empty() {
            self.record = Some(Record::new(self.at_ns, bytes));
        }
    }

    fn decided(&mut self, d: Result<Decision, DropReason>) {
        if let Some(r) = &mut self.record {
            r.decision = d;
        }
    }

    fn sent(
        &mut self,
        p: &Port,
        id: PortId,
        how: EgressTag,
        e: &EgressFrame<'_>,
        sent: Result<&VnetHdr, DropReason>,
    ) {
        if let Some(r) = &mut self.record {
            r.add(Sent {
                port: id,
                how,
                dropped: sent.err(),
            });
        }
        let (Ok(hdr), Some(w)) = (sent, &*p.watches.load()) else {
            return;
        };
        // As it leaves: a short frame with the pad the port adds.
        const PAD: [u8; MIN_FRAME_LEN] = [0; MIN_FRAME_LEN];
        let tag: &[u8] = e.tag.as_ref().map_or(&[], |t| &t[..]);
        let pad = &PAD[..e.pad_len(hdr).min(MIN_FRAME_LEN)];
        for c in &w.captures {
            let pieces = [e.addrs, tag, e.rest, pad];
            c.record(Direction::Tx, self.at_ns, e.wire_len(hdr), &pieces);
        }
    }

    fn done(&mut self) {
        let (Some(r), Some(w)) = (self.record.take(), &self.ingress) else {
            return;
        };
        let mac = |at: usize| {
            let mut m = [0; 6];
            if let Some(b) = r.head().get(at..at + 6) {
                m.copy_from_slice(b);
            }
            MacAddr(m)
        };
        for t in &w.traces {
            t.record(&r, mac(6), mac(0));
        }
    }
}

/// Frames one receive batch sent at once (taps, vhost-user guests), added up per egress port
/// and counted when the batch ends.
#[derive(Default)]
struct SentTally<'a> {
    /// (counters, frames, bytes) of up to eight egress ports.
    ports: [Option<(&'a PortCounters, u64, u64)>; 8],
}

impl<'a> SentTally<'a> {
    /// Adds a frame of `bytes` sent to the port with `counters`; counts it at once if eight
    /// other ports already have a place.
    #[inline]
    fn add(&mut self, counters: &'a PortCounters, bytes: usize) {
        for slot in &mut self.ports {
            match slot {
                Some((c, frames, sum)) if std::ptr::eq(*c, counters) => {
                    *frames += 1;
                    *sum += bytes as u64;
                    return;
                }
                Some(_) => {}
                None => {
                    *slot = Some((counters, 1, bytes as u64));
                    return;
                }
            }
        }
        counters.tx(bytes);
    }

    /// Counts what was added on each port.
    fn count(&self) {
        for (c, frames, bytes) in self.ports.iter().flatten() {
            c.tx_n(*frames, *bytes);
        }
    }
}

/// A parsed frame with the VLAN its ingress port puts it in (or why it has none).
type Classified<'a> = (EthernetFrame<'a>, Result<u16, DropReason>);

/// What forwarding a frame needs besides the frame: the worker, the configuration and the
/// clock of this wakeup, and the port the frame came in on.
struct Ctx<'a> {
    shared: &'a Shared,
    worker: usize,
    snap: &'a Snapshot,
    now: u32,
    /// The ingress port's id and entry.
    id: PortId,
    entry: &'a PortEntry,
}

impl Ctx<'_> {
    /// Records an event about a frame from `mac` in `vlan` on the ingress port.
    #[inline]
    fn event(&self, kind: EventKind, vlan: u16, mac: MacAddr, other: PortId) {
        self.shared.events[self.worker].push(SwitchEvent {
            kind,
            vlan,
            mac,
            port: self.id,
            other,
            at: self.now,
        });
    }
}

/// Sends the frames queued in `tx` and counts them on their ports.
fn flush(snap: &Snapshot, tx: &mut TxBatch<'_>) {
    if tx.is_empty() {
        return;
    }
    tx.flush(|key, len, sent| {
        let Some(p) = snap.port(key as PortId).map(|e| &e.port) else {
            return;
        };
        match sent {
            Ok(()) => p.counters.tx(len),
            Err(e) => p.counters.count_drop(tx_drop(&e)),
        }
    });
}

/// What one port's turn did.
#[derive(Debug, Default, Clone, Copy)]
struct Drained {
    /// Frames read (and forwarded).
    frames: usize,
    /// Read the port again before sleeping: frames are left, or another worker held it.
    again: bool,
    /// The port's wakeups are off (reading turned them off and they were not turned back
    /// on): poll it, and re-arm it before sleeping.
    unarmed: bool,
}

/// Ports to read again before the worker sleeps (deduplicated; at most 64, more wait for
/// their next wakeup).
struct Again {
    ids: [PortId; 64],
    n: usize,
}

impl Default for Again {
    fn default() -> Self {
        Again { ids: [0; 64], n: 0 }
    }
}

impl Again {
    fn is_empty(&self) -> bool {
        self.n == 0
    }

    fn is_full(&self) -> bool {
        self.n == self.ids.len()
    }

    fn ids(&self) -> &[PortId] {
        &self.ids[..self.n]
    }

    fn push(&mut self, id: PortId) {
        if self.n < self.ids.len() && !self.ids().contains(&id) {
            self.ids[self.n] = id;
            self.n += 1;
        }
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

/// Forwards one received frame (`len` bytes; `None` if it did not parse) to its egress ports:
/// written at once to taps, queued in `tx` for netdev ports. Returns the port it went to when
/// it went as known unicast (a candidate for the opportunistic drain).
#[inline]
fn forward_one<'a, W: Watcher>(
    ctx: &Ctx<'a>,
    hdr: &[u8; VnetHdr::LEN],
    len: usize,
    frame: Option<Classified<'a>>,
    tx: &mut TxBatch<'a>,
    sent: &mut SentTally<'a>,
    w: &mut W,
) -> Option<PortId> {
    let (snap, port) = (ctx.snap, &ctx.entry.port);
    if port.is_disabled() {
        port.counters.count_drop(DropReason::PortDisabled);
        w.decided(Err(DropReason::PortDisabled));
        return None;
    }
    let Some((frame, vlan)) = frame else {
        port.counters.count_drop(DropReason::BadFrame);
        w.decided(Err(DropReason::BadFrame));
        return None;
    };
    let decided = vlan.and_then(|vlan| {
        decide_classified(
            snap,
            &ctx.shared.fdb,
            &frame,
            ctx.id,
            ctx.entry,
            vlan,
            ctx.now,
        )
    });
    let d = match decided {
        Ok(d) => d,
        Err(r) => {
            port.counters.count_drop(r);
            w.decided(Err(r));
            if matches!(r, DropReason::MacLimit | DropReason::MacNotAllowed) {
                security_drop(ctx, &frame, vlan.unwrap_or(0), r);
            }
            return None;
        }
    };
    w.decided(Ok(d));
    if let Some(l) = d.learned {
        learned(ctx, &frame, d.vlan, l);
    }
    ctx.shared.vlan_stats[ctx.worker].count(d.vlan, len, d.out == Out::Flood);
    let vh = VnetHdr::from_bytes(hdr);
    let mut sent_to = None;
    for (p, how) in egress_ports(snap, &d, ctx.id) {
        let Some(out) = snap.port(p).map(|e| &e.port) else {
            continue;
        };
        let e = EgressFrame::render(&frame, d.vlan, how);
        if out.is_disabled() {
            out.counters.count_drop(DropReason::PortDisabled);
            w.sent(out, p, how, &e, Err(DropReason::PortDisabled));
            continue;
        }
        let oh = vh.shifted(e.len_delta(&frame));
        if tx.is_full() {
            flush(snap, tx);
        }
        match out.send(tx, u32::from(p), &oh, &e) {
            Ok(PortSent::Now(bytes)) => sent.add(&out.counters, bytes),
            // Counted when the batch is flushed.
            Ok(PortSent::Queued) => {}
            Err(r) => {
                out.counters.count_drop(r);
                w.sent(out, p, how, &e, Err(r));
                continue;
            }
        }
        w.sent(out, p, how, &e, Ok(&oh));
        if W::ON {
            mirror_sent(ctx, p, &e, &oh, tx, sent);
        }
        if d.out == Out::Unicast(p) {
            sent_to = Some(p);
        }
    }
    sent_to
}

/// Copies a frame the ingress port received (in `vlan`, if it has one) to the mirrors that
/// take it: those with the port as an rx source, else those with its VLAN as a source.
#[cold]
fn mirror_received<'a>(
    ctx: &Ctx<'a>,
    hdr: &[u8; VnetHdr::LEN],
    frame: &EthernetFrame<'a>,
    vlan: Option<u16>,
    tx: &mut TxBatch<'a>,
    sent: &mut SentTally<'a>,
) {
    for m in ctx.snap.mirrors.iter() {
        let by_vlan = vlan.is_some_and(|v| m.vlans.contains(v));
        if m.rx_ports.contains(&ctx.id) || by_vlan {
            let copy = EgressFrame::mirrored(frame, m.tag);
            let vh = VnetHdr::from_bytes(hdr).shifted(copy.len_delta(frame));
            mirror_to(ctx.snap, m.output, &copy, &vh, tx, sent);
        }
    }
}

/// Copies a frame just sent to port `p` (as `e`, behind `hdr`) to the mirrors with `p` as a
/// tx source.
#[cold]
fn mirror_sent<'a>(
    ctx: &Ctx<'a>,
    p: PortId,
    e: &EgressFrame<'a>,
    hdr: &VnetHdr,
    tx: &mut TxBatch<'a>,
    sent: &mut SentTally<'a>,
) {
    for m in ctx.snap.mirrors.iter() {
        if m.tx_ports.contains(&p) {
            let copy = e.remirrored(m.tag);
            let vh = hdr.shifted(copy.len() as isize - e.len() as isize);
            mirror_to(ctx.snap, m.output, &copy, &vh, tx, sent);
        }
    }
}

/// Sends a mirror's copy to its output port, counted there like any frame it sends.
fn mirror_to<'a>(
    snap: &'a Snapshot,
    output: PortId,
    copy: &EgressFrame<'a>,
    hdr: &VnetHdr,
    tx: &mut TxBatch<'a>,
    sent: &mut SentTally<'a>,
) {
    let Some(out) = snap.port(output).map(|e| &e.port) else {
        return;
    };
    if out.is_disabled() {
        out.counters.count_drop(DropReason::PortDisabled);
        return;
    }
    if tx.is_full() {
        flush(snap, tx);
    }
    match out.send(tx, u32::from(output), hdr, copy) {
        Ok(PortSent::Now(bytes)) => sent.add(&out.counters, bytes),
        Ok(PortSent::Queued) => {}
        Err(r) => out.counters.count_drop(r),
    }
}

/// Counts what learning the source of `frame` did on the ingress port, and records new MACs,
/// moves, flaps, damping and limits as events for the control side to log and stream (a push
/// into the worker's ring: no lock, no allocation, no syscall).
#[inline]
fn learned(ctx: &Ctx<'_>, frame: &EthernetFrame<'_>, vlan: u16, l: Learned) {
    let counters = &ctx.entry.port.counters;
    let (kind, other) = match l {
        Learned::Refreshed | Learned::StaticConflict => return,
        Learned::New => (EventKind::Learned, ctx.id),
        Learned::NoRoom => {
            counters.count_event(MacEvent::NoRoom);
            return;
        }
        Learned::PortLimit | Learned::VlanLimit => {
            // The frame goes on (limit action flood): a learning failure, not a drop.
            counters.count_event(MacEvent::LimitNotLearned);
            let k = if l == Learned::PortLimit {
                EventKind::PortLimit
            } else {
                EventKind::VlanLimit
            };
            (k, ctx.id)
        }
        Learned::Moved { from, flapping } => {
            counters.count_event(MacEvent::Moved);
            if flapping {
                counters.count_event(MacEvent::Flapping);
                (EventKind::Flapping, from)
            } else {
                (EventKind::Moved, from)
            }
        }
        Learned::Damped { on } => {
            counters.count_event(MacEvent::Damped);
            (EventKind::Damped, on)
        }
    };
    ctx.event(kind, vlan, frame.src(), other);
}

/// A frame from the ingress port was dropped by port security (`r`): record it, and shut the
/// port down if its limit action says so.
#[cold]
fn security_drop(ctx: &Ctx<'_>, frame: &EthernetFrame<'_>, vlan: u16, r: DropReason) {
    let src = frame.src();
    if r == DropReason::MacNotAllowed {
        ctx.event(EventKind::NotAllowed, vlan, src, ctx.id);
        return;
    }
    let security = &ctx.entry.security;
    let kind = if ctx.shared.fdb.port_macs(ctx.id) >= security.max_macs {
        EventKind::PortLimit
    } else {
        EventKind::VlanLimit
    };
    ctx.event(kind, vlan, src, ctx.id);
    if security.action == LimitAction::Shutdown && !ctx.entry.port.set_disabled(true) {
        ctx.event(EventKind::Shutdown, vlan, src, ctx.id);
    }
}
