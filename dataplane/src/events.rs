//! Learning and port-security events, passed from the workers to the control side without a
//! lock, an allocation or a syscall on the worker.
//!
//! Each worker owns one [`EventRing`]: a fixed array of slots it overwrites in a circle (a
//! single writer), with a sequence number per slot so that a reader can tell an entry it read
//! whole from one overwritten meanwhile. The control side reads all rings a few times a second
//! and logs what happened (rate-limited there, not here). When more events arrive between two
//! reads than a ring holds, the oldest are lost and counted as lost; the counters in
//! [`crate::counters`] stay exact either way.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::PortId;
use crate::wire::MacAddr;

/// Slots per worker ring. A new MAC is an event too ([`EventKind::Learned`]), so a burst of new
/// sources fills a ring fastest: 1024 slots, read a few times a second, hold some thousands of
/// them per second per worker before the oldest are lost (and counted).
pub const RING_SLOTS: usize = 1024;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `mac` was learned on `port` (a new entry in the MAC table).
    Learned,
    /// `mac` moved from `other` to `port`.
    Moved,
    /// `mac` moved from `other` to `port` and now counts as flapping.
    Flapping,
    /// `mac` is flapping and damped: a frame from it on `port` did not move it from `other`.
    Damped,
    /// `port` has reached its MAC limit: `mac` was not learned.
    PortLimit,
    /// The VLAN has reached its MAC limit: `mac` (on `port`) was not learned.
    VlanLimit,
    /// A frame from `mac`, not in `port`'s allowed MACs, was dropped.
    NotAllowed,
    /// `port` was shut down by port security because of a frame from `mac`.
    Shutdown,
}

impl EventKind {
    const ALL: [EventKind; 8] = [
        EventKind::Learned,
        EventKind::Moved,
        EventKind::Flapping,
        EventKind::Damped,
        EventKind::PortLimit,
        EventKind::VlanLimit,
        EventKind::NotAllowed,
        EventKind::Shutdown,
    ];
}

/// One event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The VLAN.
    pub vlan: u16,
    /// The source MAC of the frame.
    pub mac: MacAddr,
    /// The port the frame came in on.
    pub port: PortId,
    /// The port the MAC was (or stays) on, for moves; else equal to `port`.
    pub other: PortId,
    /// When, in the switch's seconds.
    pub at: u32,
}

impl Event {
    fn encode(&self) -> (u64, u64) {
        let a = (u64::from(self.vlan) << 48) | self.mac.to_u64();
        let b = (self.kind as u64)
            | (u64::from(self.port) << 8)
            | (u64::from(self.other) << 24)
            | (u64::from(self.at) << 40);
        (a, b)
    }

    fn decode(a: u64, b: u64) -> Option<Event> {
        Some(Event {
            kind: *EventKind::ALL.get((b & 0xff) as usize)?,
            vlan: (a >> 48) as u16,
            mac: MacAddr::from_u64(a),
            port: ((b >> 8) & 0xffff) as PortId,
            other: ((b >> 24) & 0xffff) as PortId,
            // 24 bits of seconds: enough to order events read a few times a second.
            at: (b >> 40) as u32,
        })
    }
}

#[derive(Debug, Default)]
struct Slot {
    /// Sequence number of the event in this slot, plus one (0: never written).
    seq: AtomicU64,
    a: AtomicU64,
    b: AtomicU64,
}

/// A worker's event ring: one writer (the worker), any number of readers.
#[derive(Debug)]
pub struct EventRing {
    slots: Box<[Slot]>,
    /// Events written so far.
    head: AtomicU64,
}

impl Default for EventRing {
    fn default() -> Self {
        EventRing {
            slots: (0..RING_SLOTS).map(|_| Slot::default()).collect(),
            head: AtomicU64::new(0),
        }
    }
}

impl EventRing {
    /// Records `e`. Only the owning worker may call this.
    #[inline]
    pub fn push(&self, e: Event) {
        let n = self.head.load(Ordering::Relaxed);
        let slot = &self.slots[(n % RING_SLOTS as u64) as usize];
        let (a, b) = e.encode();
        // Invalidate the slot first, so that a reader never pairs old and new halves.
        slot.seq.store(0, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        slot.a.store(a, Ordering::Relaxed);
        slot.b.store(b, Ordering::Relaxed);
        slot.seq.store(n + 1, Ordering::Release);
        self.head.store(n + 1, Ordering::Release);
    }

    /// Calls `f` with every event written since `*cursor` that is still in the ring, in
    /// order, and moves the cursor past them. Returns how many were lost (overwritten before
    /// they were read).
    pub fn read(&self, cursor: &mut u64, mut f: impl FnMut(Event)) -> u64 {
        let head = self.head.load(Ordering::Acquire);
        let mut lost = 0;
        let oldest = head.saturating_sub(RING_SLOTS as u64);
        if *cursor < oldest {
            lost += oldest - *cursor;
            *cursor = oldest;
        }
        while *cursor < head {
            let n = *cursor;
            let slot = &self.slots[(n % RING_SLOTS as u64) as usize];
            let before = slot.seq.load(Ordering::Acquire);
            let (a, b) = (
                slot.a.load(Ordering::Relaxed),
                slot.b.load(Ordering::Relaxed),
            );
            std::sync::atomic::fence(Ordering::Acquire);
            let after = slot.seq.load(Ordering::Relaxed);
            match (before == n + 1 && after == n + 1, Event::decode(a, b)) {
                (true, Some(e)) => f(e),
                _ => lost += 1,
            }
            *cursor += 1;
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(i: u16) -> Event {
        Event {
            kind: EventKind::Moved,
            vlan: 10,
            mac: MacAddr::from_u64(0x0200_0000_0000 | u64::from(i)),
            port: i,
            other: i + 1,
            at: u32::from(i),
        }
    }

    #[test]
    fn events_round_trip_in_order() {
        let r = EventRing::default();
        for i in 0..10 {
            r.push(ev(i));
        }
        let mut cursor = 0;
        let mut seen = Vec::new();
        assert_eq!(r.read(&mut cursor, |e| seen.push(e)), 0);
        assert_eq!(seen, (0..10).map(ev).collect::<Vec<_>>());
        assert_eq!(cursor, 10);
        // nothing new
        assert_eq!(r.read(&mut cursor, |_| panic!("no new event")), 0);
        let shut = Event {
            kind: EventKind::Shutdown,
            ..ev(3)
        };
        r.push(shut);
        let mut got = None;
        r.read(&mut cursor, |e| got = Some(e));
        assert_eq!(got, Some(shut));
    }

    #[test]
    fn a_slow_reader_loses_the_oldest_and_says_how_many() {
        let r = EventRing::default();
        let n = RING_SLOTS as u16 + 44;
        for i in 0..n {
            r.push(ev(i));
        }
        let mut cursor = 0;
        let mut seen = Vec::new();
        assert_eq!(r.read(&mut cursor, |e| seen.push(e.port)), 44);
        assert_eq!(seen.len(), RING_SLOTS);
        assert_eq!(seen[0], 44);
        assert_eq!(*seen.last().unwrap(), n - 1);
    }
}
