//! Watching ports while they forward: capture (the frames a port receives and sends, as it
//! carries them) and live trace (the decisions the workers actually take for a port's
//! frames). The control side arms a watch on a port; the workers fill it; a reader on the
//! control side drains it.
//!
//! Cost: with nothing armed anywhere, a worker pays one relaxed atomic load per receive batch
//! ([`Watching::any`]) and runs the same code as before (the per-frame hooks are a type
//! parameter that compiles to nothing). With a watch armed, each frame of a batch also loads
//! its ports' watches (lock-free, [`arc_swap`]). Records go through bounded lock-free queues
//! ([`crossbeam_queue::ArrayQueue`]) into buffers allocated when the watch is armed, so a
//! worker never allocates, locks or waits for a reader: when a reader falls behind, frames
//! are not captured and are counted as lost ([`Capture::lost`]), and forwarding goes on at
//! full speed.
#![forbid(unsafe_code)]

use std::sync::atomic::{
    AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use crossbeam_queue::ArrayQueue;

use crate::config::PortId;
use crate::counters::DropReason;
use crate::forward::Decision;
use crate::wire::{EgressTag, MacAddr};

/// How many watches are armed in the whole switch. Workers read it once per batch.
#[derive(Debug, Default)]
pub struct Watching(AtomicUsize);

impl Watching {
    /// Whether any watch is armed.
    #[inline]
    pub fn any(&self) -> bool {
        self.0.load(Relaxed) != 0
    }

    pub(crate) fn add(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    pub(crate) fn remove(&self) {
        let _ = self.0.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
    }
}

/// Which way a frame crossed the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received from the port's wire.
    Rx = 0,
    /// Sent to the port's wire.
    Tx = 1,
}

/// One captured frame.
#[derive(Debug)]
pub struct Captured {
    /// Which way.
    pub dir: Direction,
    /// When, in nanoseconds since the Unix epoch.
    pub at_ns: u64,
    /// The frame's length on the port (a GSO super-frame's whole length).
    pub len: u32,
    /// The first `snaplen` bytes of it.
    pub data: Vec<u8>,
}

/// A capture on one port: bounded, lossy when its reader is slow.
#[derive(Debug)]
pub struct Capture {
    rx: bool,
    tx: bool,
    snaplen: usize,
    /// Buffers for the workers to fill.
    free: ArrayQueue<Vec<u8>>,
    /// Filled buffers for the reader.
    full: ArrayQueue<Captured>,
    /// Frames still to capture.
    countdown: Countdown,
    /// Frames not captured for want of a free buffer, received and sent.
    lost: [AtomicU64; 2],
}

impl Capture {
    /// A capture of up to `count` frames (`None`: until disarmed) in the directions asked for,
    /// `snaplen` bytes of each, with `depth` frames of room between the workers and the reader.
    pub fn new(rx: bool, tx: bool, snaplen: usize, count: Option<u64>, depth: usize) -> Self {
        let depth = depth.max(1);
        let free = ArrayQueue::new(depth);
        for _ in 0..depth {
            let _ = free.push(Vec::with_capacity(snaplen));
        }
        Capture {
            rx,
            tx,
            snaplen,
            free,
            full: ArrayQueue::new(depth),
            countdown: Countdown::new(count.unwrap_or(u64::MAX)),
            lost: Default::default(),
        }
    }

    /// Whether frames going `dir` are captured.
    #[inline]
    pub fn wants(&self, dir: Direction) -> bool {
        match dir {
            Direction::Rx => self.rx,
            Direction::Tx => self.tx,
        }
    }

    /// Records a frame of `len` bytes given as `pieces` (a worker). Never waits and never
    /// allocates: without a free buffer the frame is counted as lost.
    pub fn record(&self, dir: Direction, at_ns: u64, len: usize, pieces: &[&[u8]]) {
        if !self.wants(dir) || !self.countdown.take() {
            return;
        }
        let Some(mut data) = self.free.pop() else {
            self.lost[dir as usize].fetch_add(1, Relaxed);
            self.countdown.settle();
            return;
        };
        data.clear();
        for p in pieces {
            let room = self.snaplen - data.len();
            data.extend_from_slice(&p[..p.len().min(room)]);
        }
        let c = Captured {
            dir,
            at_ns,
            len: len.min(u32::MAX as usize) as u32,
            data,
        };
        // There are as many places in `full` as buffers: a buffer taken from `free` has one.
        if self.full.push(c).is_err() {
            self.lost[dir as usize].fetch_add(1, Relaxed);
        }
        self.countdown.settle();
    }

    /// The next captured frame, if any (the reader). Give its buffer back with
    /// [`Capture::recycle`].
    pub fn next(&self) -> Option<Captured> {
        self.full.pop()
    }

    /// Returns a frame's buffer for the workers to fill again.
    pub fn recycle(&self, data: Vec<u8>) {
        let _ = self.free.push(data);
    }

    /// Frames going `dir` that were not captured because the reader was behind.
    pub fn lost(&self, dir: Direction) -> u64 {
        self.lost[dir as usize].load(Relaxed)
    }

    /// The frame count asked for has been captured (or lost): every captured frame is in the
    /// queue for [`Capture::next`], maybe not read yet.
    pub fn is_complete(&self) -> bool {
        self.countdown.is_complete()
    }

    /// The bytes kept of each frame.
    pub fn snaplen(&self) -> usize {
        self.snaplen
    }
}

/// A count of frames to watch, shared by the workers (who take places and settle them once
/// the frame is queued or lost) and the reader (who asks whether all are settled, so that
/// nothing taken is still on its way when it stops reading).
#[derive(Debug)]
struct Countdown {
    /// The count asked for; `u64::MAX` counts as endless.
    count: u64,
    /// Places not taken yet.
    left: AtomicU64,
    /// Places taken whose frame is queued (or lost).
    settled: AtomicU64,
}

impl Countdown {
    fn new(count: u64) -> Self {
        Countdown {
            count,
            left: AtomicU64::new(count),
            settled: AtomicU64::new(0),
        }
    }

    /// Takes a place; false when none is left.
    #[inline]
    fn take(&self) -> bool {
        self.left
            .fetch_update(Relaxed, Relaxed, |v| match v {
                u64::MAX => Some(v),
                0 => None,
                v => Some(v - 1),
            })
            .is_ok()
    }

    /// A taken place's frame is queued (or lost); its queueing happens before this.
    #[inline]
    fn settle(&self) {
        if self.count != u64::MAX {
            self.settled.fetch_add(1, Release);
        }
    }

    /// Places still to take.
    fn left(&self) -> u64 {
        self.left.load(Relaxed)
    }

    /// Every place is taken and settled: whatever was queued can be read.
    fn is_complete(&self) -> bool {
        self.count != u64::MAX && self.settled.load(Acquire) == self.count
    }
}

/// Which frames a live trace records; `None` fields match every frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    /// Source MAC.
    pub src: Option<MacAddr>,
    /// Destination MAC.
    pub dst: Option<MacAddr>,
    /// The frame's VLAN (as classified); frames dropped before they have one never match.
    pub vlan: Option<u16>,
}

impl Filter {
    /// Whether a frame from `src` to `dst` in `vlan` matches.
    pub fn matches(&self, src: MacAddr, dst: MacAddr, vlan: Option<u16>) -> bool {
        self.src.is_none_or(|m| m == src)
            && self.dst.is_none_or(|m| m == dst)
            && self.vlan.is_none_or(|v| Some(v) == vlan)
    }
}

/// Bytes of a frame's head kept in a live-trace record: headers enough to explain it.
pub const HEAD: usize = 96;
/// Egress ports listed in a live-trace record; a flood to more counts the rest.
pub const RECORD_EGRESS: usize = 16;

/// One copy a worker sent (or failed to send) for a traced frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The egress port.
    pub port: PortId,
    /// How the port carries the frame's VLAN.
    pub how: EgressTag,
    /// Why the copy was dropped on that port, if it was.
    pub dropped: Option<DropReason>,
}

/// What a worker did with one frame of a traced port.
#[derive(Debug, Clone, Copy)]
pub struct Record {
    /// When, in nanoseconds since the Unix epoch.
    pub at_ns: u64,
    /// The frame's length.
    pub len: u32,
    /// Its first [`HEAD`] bytes (`head_len` of them).
    pub head: [u8; HEAD],
    /// How many bytes of `head` hold the frame.
    pub head_len: u8,
    /// The decision, or why the frame was dropped on the ingress port.
    pub decision: Result<Decision, DropReason>,
    /// The copies, as many as fit.
    pub sent: [Option<Sent>; RECORD_EGRESS],
    /// Copies beyond those listed.
    pub more: u16,
}

impl Record {
    /// A record of a frame whose first bytes are `bytes`, `len` long in all, before its
    /// decision.
    pub fn new(at_ns: u64, bytes: &[u8]) -> Record {
        let mut head = [0; HEAD];
        let n = bytes.len().min(HEAD);
        head[..n].copy_from_slice(&bytes[..n]);
        Record {
            at_ns,
            len: bytes.len().min(u32::MAX as usize) as u32,
            head,
            head_len: n as u8,
            decision: Err(DropReason::BadFrame),
            sent: [None; RECORD_EGRESS],
            more: 0,
        }
    }

    /// Notes one copy.
    pub fn add(&mut self, s: Sent) {
        match self.sent.iter_mut().find(|x| x.is_none()) {
            Some(slot) => *slot = Some(s),
            None => self.more = self.more.saturating_add(1),
        }
    }

    /// The frame's head.
    pub fn head(&self) -> &[u8] {
        &self.head[..usize::from(self.head_len)]
    }
}

/// A live trace on one port: the next `count` frames that match its filter.
#[derive(Debug)]
pub struct LiveTrace {
    filter: Filter,
    countdown: Countdown,
    records: ArrayQueue<Record>,
}

impl LiveTrace {
    /// A trace of the next `count` (at least 1) frames that match `filter`.
    pub fn new(count: usize, filter: Filter) -> Self {
        let count = count.max(1);
        LiveTrace {
            filter,
            countdown: Countdown::new(count as u64),
            records: ArrayQueue::new(count),
        }
    }

    /// Its filter.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// Keeps `r` if it matches and the count is not reached (a worker).
    pub fn record(&self, r: &Record, src: MacAddr, dst: MacAddr) {
        let vlan = r.decision.as_ref().ok().map(|d| d.vlan);
        if self.filter.matches(src, dst, vlan) && self.countdown.take() {
            // There are `count` places in the queue and at most `count` are taken.
            let _ = self.records.push(*r);
            self.countdown.settle();
        }
    }

    /// The next record, if any (the reader).
    pub fn next(&self) -> Option<Record> {
        self.records.pop()
    }

    /// Frames still to record.
    pub fn remaining(&self) -> u64 {
        self.countdown.left()
    }

    /// Every frame asked for is recorded: all are in the queue for [`LiveTrace::next`].
    pub fn is_complete(&self) -> bool {
        self.countdown.is_complete()
    }
}

/// The watches armed on one port.
#[derive(Debug, Default, Clone)]
pub struct Watches {
    /// Captures.
    pub captures: Vec<Arc<Capture>>,
    /// Live traces.
    pub traces: Vec<Arc<LiveTrace>>,
}

impl Watches {
    /// Whether `dir` frames are captured by any capture here.
    pub fn captures(&self, dir: Direction) -> bool {
        self.captures.iter().any(|c| c.wants(dir))
    }
}

/// A port's watches, swapped as a whole by the control side, read by the workers.
#[derive(Debug, Default)]
pub struct PortWatches(ArcSwapOption<Watches>);

impl PortWatches {
    /// The watches now armed (a worker; lock-free).
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Option<Arc<Watches>>> {
        self.0.load()
    }

    /// The watches now armed, as an owned reference (once per batch).
    pub fn load_full(&self) -> Option<Arc<Watches>> {
        self.0.load_full()
    }

    /// Changes the set with `f` (the control side; concurrent changes are retried, none lost).
    pub(crate) fn update(&self, f: impl Fn(&mut Watches)) {
        self.0.rcu(|cur| {
            let mut w = cur.as_deref().cloned().unwrap_or_default();
            f(&mut w);
            let empty = w.captures.is_empty() && w.traces.is_empty();
            (!empty).then(|| Arc::new(w))
        });
    }
}

/// A capture or a live trace.
#[derive(Debug, Clone)]
pub enum Watch {
    /// A capture.
    Capture(Arc<Capture>),
    /// A live trace.
    Trace(Arc<LiveTrace>),
}

/// A watch armed on a port ([`crate::Switch::arm`]); dropping it disarms it. It does not keep
/// the port open: a port removed (or re-attached as a new port) while watched ends the watch
/// ([`Armed::is_gone`]).
pub struct Armed {
    port: std::sync::Weak<crate::Port>,
    watch: Watch,
    /// The switch's shared state, whose `watching` count this watch is in.
    shared: Arc<crate::shared::Shared>,
}

impl std::fmt::Debug for Armed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Armed")
            .field("port", &self.port)
            .field("watch", &self.watch)
            .finish_non_exhaustive()
    }
}

impl Armed {
    pub(crate) fn new(
        port: &Arc<crate::Port>,
        watch: Watch,
        shared: Arc<crate::shared::Shared>,
    ) -> Armed {
        port.watches.update(|w| match &watch {
            Watch::Capture(c) => w.captures.push(c.clone()),
            Watch::Trace(t) => w.traces.push(t.clone()),
        });
        shared.watching.add();
        Armed {
            port: Arc::downgrade(port),
            watch,
            shared,
        }
    }

    /// The watched port was removed from the switch: nothing more will come.
    pub fn is_gone(&self) -> bool {
        self.port.strong_count() == 0
    }

    /// What is armed.
    pub fn watch(&self) -> &Watch {
        &self.watch
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        if let Some(port) = self.port.upgrade() {
            port.watches.update(|w| match &self.watch {
                Watch::Capture(c) => w.captures.retain(|x| !Arc::ptr_eq(x, c)),
                Watch::Trace(t) => w.traces.retain(|x| !Arc::ptr_eq(x, t)),
            });
        }
        self.shared.watching.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::Out;

    #[test]
    fn a_capture_keeps_snaplen_bytes_counts_and_loses_when_full() {
        let c = Capture::new(true, false, 8, Some(3), 2);
        c.record(Direction::Tx, 1, 4, &[b"tx"]);
        assert!(c.next().is_none(), "tx not asked for");
        c.record(Direction::Rx, 1, 12, &[b"abcdef", b"ghijkl"]);
        c.record(Direction::Rx, 2, 2, &[b"mn"]);
        // Two buffers, both full: the third frame is lost, not waited for.
        c.record(Direction::Rx, 3, 2, &[b"op"]);
        assert_eq!((c.lost(Direction::Rx), c.lost(Direction::Tx)), (1, 0));
        assert!(c.is_complete(), "three frames taken from the count");
        let a = c.next().unwrap();
        assert_eq!((a.len, a.at_ns, &a.data[..]), (12, 1, &b"abcdefgh"[..]));
        c.recycle(a.data);
        assert_eq!(c.next().unwrap().data, b"mn");
        c.record(Direction::Rx, 4, 2, &[b"qr"]);
        assert!(c.next().is_none(), "the count is reached");
    }

    #[test]
    fn a_live_trace_keeps_the_matching_frames_up_to_its_count() {
        let m = |n| MacAddr([2, 0, 0, 0, 0, n]);
        let t = LiveTrace::new(
            2,
            Filter {
                src: Some(m(1)),
                dst: None,
                vlan: Some(10),
            },
        );
        let mut r = Record::new(5, &[0u8; 200]);
        assert_eq!((r.len, r.head().len()), (200, HEAD));
        t.record(&r, m(1), m(2)); // dropped, no VLAN: no match
        r.decision = Ok(Decision {
            vlan: 10,
            out: Out::Flood,
            learned: None,
        });
        t.record(&r, m(3), m(2)); // another source
        t.record(&r, m(1), m(2));
        t.record(&r, m(1), m(4));
        t.record(&r, m(1), m(5)); // beyond the count
        assert_eq!(t.remaining(), 0);
        assert!(t.next().is_some() && t.next().is_some() && t.next().is_none());
        for i in 0..RECORD_EGRESS + 3 {
            r.add(Sent {
                port: i as PortId,
                how: EgressTag::Untagged,
                dropped: None,
            });
        }
        assert_eq!(r.more, 3);
    }
}
