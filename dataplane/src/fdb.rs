//! The forwarding database: a bounded, lock-free MAC table keyed by (VLAN, MAC).
//!
//! An open-addressing table of `(key, value)` pairs of `AtomicU64`, linear probing, at most
//! [`MAX_PROBE`] slots from a key's home. Workers learn and look up concurrently without any lock:
//! a new key claims an empty (or deleted) slot with one compare-and-swap, an existing entry is
//! refreshed with one compare-and-swap, and only when something changed (port or second), so a steady flow
//! does not bounce the cache line between cores.
//!
//! Time is an argument everywhere (`now`, in seconds from any fixed origin); nothing here reads a
//! clock. Entries are removed by [`Fdb::age`] and the flush calls, which the control side runs
//! off the per-frame path.
//!
//! Races that are tolerated by design, each costing at most one extra flood:
//! two workers learning the same new key at the same instant may both insert it (lookups find the
//! first; the second ages out); an entry refreshed while the ager removes it is learned again by
//! the next frame. Removal invalidates the value (compare-and-swap) before it retires the key,
//! refreshes are compare-and-swaps too, and only valid entries are removed, so a retired slot
//! never gets a value back and a reused slot keeps its new value. (One window remains: a
//! worker that read a value, stalled across a removal and a reinsertion whose value happens to
//! have the very same bits, may refresh the new entry with its own port.) All accesses are `Relaxed`: on x86 (TSO) a
//! reader that sees a new key also sees its value; on weaker memory models the worst case is
//! one frame flooded, or sent to a stale port of the same VLAN (never across VLANs: the decision
//! checks the port is a member of the frame's VLAN).
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::config::LearnRules;
use crate::config::PortId;
use crate::sys::{prefetch, AtomicPair, LargeTable};
use crate::wire::MacAddr;

/// Longest probe sequence; a key that finds no slot within it is not learned.
pub const MAX_PROBE: usize = 64;
/// Default capacity in entries.
pub const DEFAULT_MAX_ENTRIES: usize = 65536;

const EMPTY: u64 = 0;
/// A deleted slot: probing continues past it, inserts may reuse it. VLAN bits 0xffff never
/// occur in a real key.
const TOMBSTONE: u64 = u64::MAX;

const VAL_VALID: u64 = 1 << 16;
const VAL_STATIC: u64 = 1 << 17;
/// Bits 18-21: moves of the entry within the flap window (saturating at 15).
const MOVES_SHIFT: u32 = 18;
const MOVES_MAX: u64 = 0xf;
/// Bits 22-31: the second of the entry's last move, modulo 1024.
const MOVED_SHIFT: u32 = 22;
const MOVED_MASK: u64 = 0x3ff;
/// Longest flap window or damping hold the 10-bit move time can measure.
pub const MAX_FLAP_SECS: u16 = 1000;

#[inline]
fn key(vlan: u16, mac: MacAddr) -> u64 {
    ((vlan as u64) << 48) | mac.to_u64()
}

#[inline]
fn value(port: PortId, is_static: bool, now: u32) -> u64 {
    port as u64 | VAL_VALID | if is_static { VAL_STATIC } else { 0 } | ((now as u64) << 32)
}

#[inline]
fn val_moves(v: u64) -> u8 {
    ((v >> MOVES_SHIFT) & MOVES_MAX) as u8
}

/// Seconds since the entry's last move (modulo 1024).
#[inline]
fn since_move(v: u64, now: u32) -> u16 {
    ((u64::from(now).wrapping_sub(v >> MOVED_SHIFT)) & MOVED_MASK) as u16
}

#[inline]
fn with_moves(v: u64, moves: u8, moved_at: u32) -> u64 {
    let clear = !((MOVES_MAX << MOVES_SHIFT) | (MOVED_MASK << MOVED_SHIFT));
    (v & clear)
        | ((u64::from(moves) & MOVES_MAX) << MOVES_SHIFT)
        | ((u64::from(moved_at) & MOVED_MASK) << MOVED_SHIFT)
}

#[inline]
fn val_port(v: u64) -> PortId {
    (v & 0xffff) as PortId
}

#[inline]
fn val_time(v: u64) -> u32 {
    (v >> 32) as u32
}

/// What [`Fdb::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// The entry already pointed at this port; at most its timestamp changed.
    Refreshed,
    /// A new entry.
    New,
    /// The MAC moved from `from` to the learning port.
    Moved {
        /// The port the MAC was on before.
        from: PortId,
        /// This move made the MAC count as flapping ([`FlapPolicy::moves`](crate::config::FlapPolicy::moves) moves within its
        /// window); later moves within the window report it again.
        flapping: bool,
    },
    /// The MAC is flapping and damped: it stays on `on`, the move was refused.
    Damped {
        /// The port the entry stays on.
        on: PortId,
    },
    /// A static entry points elsewhere; static entries never move.
    StaticConflict,
    /// The table is full (or the key's probe window is): not learned.
    NoRoom,
    /// The learning port has reached its MAC limit: not learned (nor moved there).
    PortLimit,
    /// The VLAN has reached its MAC limit: not learned.
    VlanLimit,
}

/// What learning does to an existing entry, decided before anything is claimed or written.
enum Step {
    /// Nothing to write.
    Keep(Learned),
    /// Same port: write this value if it differs.
    Refresh(u64),
    /// Flapping and damped: the entry stays on this port.
    Damped(PortId),
    /// To the learning port (room permitting): write `new`; `live`: a move from `from`, else
    /// an expired entry learned afresh.
    Move {
        new: u64,
        from: PortId,
        live: bool,
        flapping: bool,
    },
}

/// One entry, as listed by [`Fdb::entries`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbEntry {
    /// VLAN id.
    pub vlan: u16,
    /// MAC address.
    pub mac: MacAddr,
    /// Port the MAC was learned on (or configured on).
    pub port: PortId,
    /// Never ages, never moves.
    pub is_static: bool,
    /// When it was last seen, in the caller's seconds.
    pub last_seen: u32,
}

/// Which entries a flush removes; `None` fields match everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushFilter {
    /// Only this VLAN.
    pub vlan: Option<u16>,
    /// Only entries on this port.
    pub port: Option<PortId>,
    /// Also remove static entries (default: dynamic only).
    pub include_static: bool,
}

/// One slot: key and value words.
type Slot = AtomicPair;

/// Counters kept by the table itself.
#[derive(Debug, Default)]
pub struct FdbCounters {
    /// New entries learned.
    pub learned: AtomicU64,
    /// MAC moves between ports.
    pub moves: AtomicU64,
    /// Source MACs not learned because the table was full.
    pub no_room: AtomicU64,
    /// Entries removed by aging.
    pub aged: AtomicU64,
    /// Source MACs not learned (or not moved) because a port or VLAN MAC limit was reached.
    pub limited: AtomicU64,
    /// Moves that made a MAC count as flapping.
    pub flaps: AtomicU64,
    /// Moves refused because the MAC was flapping and damped.
    pub damped: AtomicU64,
}

/// Dynamic-entry counts per port id and per VLAN, for the MAC limits.
struct Occupancy {
    ports: Box<[AtomicU32]>,
    vlans: Box<[AtomicU32]>,
}

impl Occupancy {
    fn new() -> Self {
        Occupancy {
            ports: (0..=PortId::MAX as usize)
                .map(|_| AtomicU32::new(0))
                .collect(),
            vlans: (0..4096).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    #[inline]
    fn port(&self, p: PortId) -> &AtomicU32 {
        &self.ports[p as usize]
    }

    #[inline]
    fn vlan(&self, v: u16) -> &AtomicU32 {
        &self.vlans[(v & 0x0fff) as usize]
    }

    /// Takes one place for port `p`, unless it already holds `max`.
    #[inline]
    fn claim(a: &AtomicU32, max: u32) -> bool {
        if a.fetch_add(1, Relaxed) >= max {
            a.fetch_sub(1, Relaxed);
            return false;
        }
        true
    }

    /// Whether [`Occupancy::claim`] would take a place now.
    #[inline]
    fn has_room(a: &AtomicU32, max: u32) -> bool {
        a.load(Relaxed) < max
    }

    #[inline]
    fn release(a: &AtomicU32) {
        // Never below zero, even if a race counted one entry twice.
        let _ = a.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
    }
}

/// The MAC table. Shared by reference between all workers; every method takes `&self`.
pub struct Fdb {
    slots: LargeTable<Slot>,
    mask: usize,
    shift: u32,
    max_entries: usize,
    len: AtomicUsize,
    occupancy: Occupancy,
    /// Table counters.
    pub counters: FdbCounters,
}

impl std::fmt::Debug for Fdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fdb")
            .field("len", &self.len())
            .field("max_entries", &self.max_entries)
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl Fdb {
    /// A table that holds at most `max_entries` entries (at least 1), with twice as many slots
    /// so that probes stay short.
    pub fn new(max_entries: usize) -> Self {
        let max_entries = max_entries.max(1);
        let n = (max_entries * 2).next_power_of_two().max(MAX_PROBE);
        let slots = LargeTable::new(n);
        Fdb {
            slots,
            mask: n - 1,
            shift: 64 - n.trailing_zeros(),
            max_entries,
            len: AtomicUsize::new(0),
            occupancy: Occupancy::new(),
            counters: FdbCounters::default(),
        }
    }

    /// Number of entries (including ones that expired but were not swept yet).
    pub fn len(&self) -> usize {
        self.len.load(Relaxed)
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The configured capacity.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    #[inline]
    fn home(&self, k: u64) -> usize {
        // Fibonacci hashing: the multiply spreads the low (vendor-specific) MAC bytes and the
        // VLAN over the high bits, which pick the slot.
        (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    #[inline]
    fn is_live(v: u64, now: u32, aging: u32) -> bool {
        v & VAL_VALID != 0 && (v & VAL_STATIC != 0 || now.wrapping_sub(val_time(v)) < aging)
    }

    /// Finds the slot holding `k`, if any.
    #[inline]
    fn find(&self, k: u64) -> Option<&Slot> {
        let h = self.home(k);
        for i in 0..MAX_PROBE {
            let s = &self.slots[(h + i) & self.mask];
            match s.key.load(Relaxed) {
                x if x == k => return Some(s),
                EMPTY => return None,
                _ => {}
            }
        }
        None
    }

    /// Asks the CPU to start loading the slot where `(vlan, mac)` lives, or would be learned,
    /// so that a later [`Fdb::lookup`] or [`Fdb::learn`] finds it in cache. A hint only: the
    /// table is not read or changed. A worker calls it for a whole receive batch before
    /// deciding on any frame of it, so that the batch waits for memory once, not per frame.
    #[inline]
    pub fn prefetch(&self, vlan: u16, mac: MacAddr) {
        prefetch(&self.slots[self.home(key(vlan, mac))]);
    }

    /// The port `mac` was last seen on in `vlan`, unless the entry has aged out
    /// (`now - last_seen >= aging`).
    #[inline]
    pub fn lookup(&self, vlan: u16, mac: MacAddr, now: u32, aging: u32) -> Option<PortId> {
        let s = self.find(key(vlan, mac))?;
        let v = s.val.load(Relaxed);
        Self::is_live(v, now, aging).then(|| val_port(v))
    }

    /// The live entry of `mac` in `vlan`, as [`Fdb::entries`] lists it (for tracing a lookup).
    pub fn entry(&self, vlan: u16, mac: MacAddr, now: u32, aging: u32) -> Option<FdbEntry> {
        let v = self.find(key(vlan, mac))?.val.load(Relaxed);
        Self::is_live(v, now, aging).then(|| FdbEntry {
            vlan,
            mac,
            port: val_port(v),
            is_static: v & VAL_STATIC != 0,
            last_seen: val_time(v),
        })
    }

    /// Records that `mac` was seen in `vlan` on `port` at `now`, with no limit but the
    /// table's size and the default flap policy.
    #[inline]
    pub fn learn(&self, vlan: u16, mac: MacAddr, port: PortId, now: u32, aging: u32) -> Learned {
        self.learn_with(vlan, mac, port, now, &LearnRules::unlimited(aging))
    }

    /// Dynamic entries learned on port `port` now.
    pub fn port_macs(&self, port: PortId) -> u32 {
        self.occupancy.port(port).load(Relaxed)
    }

    /// Dynamic entries in `vlan` now.
    pub fn vlan_macs(&self, vlan: u16) -> u32 {
        self.occupancy.vlan(vlan).load(Relaxed)
    }

    /// Records that `mac` was seen in `vlan` on `port` at `now`, within `rules`: a new entry
    /// needs room under the port's and the VLAN's limits, a move needs room under the new
    /// port's; a MAC that keeps moving is reported as flapping and, if the policy says so,
    /// stays where it is for a while.
    #[inline]
    pub fn learn_with(
        &self,
        vlan: u16,
        mac: MacAddr,
        port: PortId,
        now: u32,
        rules: &LearnRules,
    ) -> Learned {
        let k = key(vlan, mac);
        let h = self.home(k);
        let mut reuse: Option<usize> = None;
        for i in 0..MAX_PROBE {
            let idx = (h + i) & self.mask;
            let s = &self.slots[idx];
            let sk = s.key.load(Relaxed);
            if sk == k {
                return self.update(s, port, now, rules);
            }
            if sk == TOMBSTONE {
                reuse.get_or_insert(idx);
                continue;
            }
            if sk == EMPTY {
                return self.insert(k, reuse.unwrap_or(idx), h, port, now, rules);
            }
        }
        match reuse {
            Some(idx) => self.insert(k, idx, h, port, now, rules),
            None => self.no_room(),
        }
    }

    /// What learning `(port, now)` does to an existing entry whose value is `old`, before any
    /// room is claimed or anything written: the one place the refresh, static, damping, move
    /// and flap rules are decided, for [`Fdb::learn_with`] and [`Fdb::would_learn`] alike.
    #[inline]
    fn step(old: u64, port: PortId, now: u32, rules: &LearnRules) -> Step {
        if old & VAL_VALID == 0 {
            // Being inserted by another worker right now; it will have the right port.
            return Step::Keep(Learned::Refreshed);
        }
        if old & VAL_STATIC != 0 {
            return Step::Keep(if val_port(old) == port {
                Learned::Refreshed
            } else {
                Learned::StaticConflict
            });
        }
        let from = val_port(old);
        let live = Self::is_live(old, now, rules.aging);
        let flap = rules.flap;
        let (moves, since) = (val_moves(old), since_move(old, now));
        if from == port {
            // A refresh. The move history is kept while it may still matter (within the flap
            // window or the damping hold) and forgotten after.
            let keep = moves > 0 && (since < flap.window_secs || since < flap.damp_secs);
            return Step::Refresh(if keep {
                with_moves(
                    value(port, false, now),
                    moves,
                    now.wrapping_sub(u32::from(since)),
                )
            } else {
                value(port, false, now)
            });
        }
        // Another port. A live entry moves, an expired one is learned afresh; either way the
        // new port needs room under its limit.
        if live && flap.damp_secs > 0 && moves >= flap.moves && since < flap.damp_secs {
            return Step::Damped(from);
        }
        let moves = if !live {
            0
        } else if moves > 0 && since < flap.window_secs {
            moves.saturating_add(1).min(MOVES_MAX as u8)
        } else {
            1
        };
        Step::Move {
            new: with_moves(value(port, false, now), moves, now),
            from,
            live,
            flapping: moves >= flap.moves,
        }
    }

    fn update(&self, s: &Slot, port: PortId, now: u32, rules: &LearnRules) -> Learned {
        let old = s.val.load(Relaxed);
        match Self::step(old, port, now, rules) {
            Step::Keep(l) => l,
            Step::Refresh(new) => {
                if old != new {
                    // Lost races leave the entry to the other writer.
                    let _ = s.val.compare_exchange(old, new, Relaxed, Relaxed);
                }
                Learned::Refreshed
            }
            Step::Damped(on) => {
                self.counters.damped.fetch_add(1, Relaxed);
                Learned::Damped { on }
            }
            Step::Move {
                new,
                from,
                live,
                flapping,
            } => {
                if !Occupancy::claim(self.occupancy.port(port), rules.port_max) {
                    self.counters.limited.fetch_add(1, Relaxed);
                    return Learned::PortLimit;
                }
                // Compare-and-swap, not a store: if the entry was removed (value zeroed) or
                // refreshed by another worker meanwhile, leave it; a removed slot must never
                // get a value back.
                if s.val.compare_exchange(old, new, Relaxed, Relaxed).is_err() {
                    Occupancy::release(self.occupancy.port(port));
                    return Learned::Refreshed;
                }
                Occupancy::release(self.occupancy.port(from));
                if live {
                    self.counters.moves.fetch_add(1, Relaxed);
                    if flapping {
                        self.counters.flaps.fetch_add(1, Relaxed);
                    }
                    Learned::Moved { from, flapping }
                } else {
                    // An expired entry not swept yet: a fresh learn, not a move.
                    self.counters.learned.fetch_add(1, Relaxed);
                    Learned::New
                }
            }
        }
    }

    /// What [`Fdb::learn_with`] would do now, without changing the table or its counters: for
    /// tracing a frame's decision. The entry's rules are `Fdb::step`, shared with learning;
    /// a new entry is checked against the same limits in the same order as an insert.
    pub fn would_learn(
        &self,
        vlan: u16,
        mac: MacAddr,
        port: PortId,
        now: u32,
        rules: &LearnRules,
    ) -> Learned {
        let k = key(vlan, mac);
        let h = self.home(k);
        let mut room = false;
        for i in 0..MAX_PROBE {
            let s = &self.slots[(h + i) & self.mask];
            match s.key.load(Relaxed) {
                x if x == k => {
                    return match Self::step(s.val.load(Relaxed), port, now, rules) {
                        Step::Keep(l) => l,
                        Step::Refresh(_) => Learned::Refreshed,
                        Step::Damped(on) => Learned::Damped { on },
                        Step::Move { .. }
                            if !Occupancy::has_room(self.occupancy.port(port), rules.port_max) =>
                        {
                            Learned::PortLimit
                        }
                        Step::Move {
                            from,
                            live: true,
                            flapping,
                            ..
                        } => Learned::Moved { from, flapping },
                        Step::Move { live: false, .. } => Learned::New,
                    };
                }
                TOMBSTONE => room = true,
                EMPTY => {
                    room = true;
                    break;
                }
                _ => {}
            }
        }
        if !room || self.len() >= self.max_entries {
            Learned::NoRoom
        } else if !Occupancy::has_room(self.occupancy.port(port), rules.port_max) {
            Learned::PortLimit
        } else if !Occupancy::has_room(self.occupancy.vlan(vlan), rules.vlan_max) {
            Learned::VlanLimit
        } else {
            Learned::New
        }
    }

    fn no_room(&self) -> Learned {
        self.counters.no_room.fetch_add(1, Relaxed);
        Learned::NoRoom
    }

    /// Claims slot `idx` (empty or tombstone) for `k`; on a lost race, probes again from `h`.
    fn insert(
        &self,
        k: u64,
        mut idx: usize,
        h: usize,
        port: PortId,
        now: u32,
        rules: &LearnRules,
    ) -> Learned {
        if self.len.fetch_add(1, Relaxed) >= self.max_entries {
            self.len.fetch_sub(1, Relaxed);
            return self.no_room();
        }
        let (pc, vc) = (
            self.occupancy.port(port),
            self.occupancy.vlan((k >> 48) as u16),
        );
        if !Occupancy::claim(pc, rules.port_max) {
            self.len.fetch_sub(1, Relaxed);
            self.counters.limited.fetch_add(1, Relaxed);
            return Learned::PortLimit;
        }
        if !Occupancy::claim(vc, rules.vlan_max) {
            Occupancy::release(pc);
            self.len.fetch_sub(1, Relaxed);
            self.counters.limited.fetch_add(1, Relaxed);
            return Learned::VlanLimit;
        }
        let undo = || {
            Occupancy::release(pc);
            Occupancy::release(vc);
            self.len.fetch_sub(1, Relaxed);
        };
        let val = value(port, false, now);
        let mut i = idx.wrapping_sub(h) & self.mask;
        loop {
            let s = &self.slots[idx];
            let cur = s.key.load(Relaxed);
            if (cur == EMPTY || cur == TOMBSTONE)
                && s.key.compare_exchange(cur, k, Relaxed, Relaxed).is_ok()
            {
                // Published key first, value second: a reader that sees the key with an
                // invalid value treats it as a miss until the store lands.
                s.val.store(val, Relaxed);
                self.counters.learned.fetch_add(1, Relaxed);
                return Learned::New;
            }
            if cur == k {
                // Someone inserted the same key meanwhile.
                undo();
                return Learned::Refreshed;
            }
            i += 1;
            if i >= MAX_PROBE {
                undo();
                return self.no_room();
            }
            idx = (h + i) & self.mask;
        }
    }

    /// Adds or replaces a static entry: it never ages and never moves. Returns false when the
    /// table has no room for it.
    ///
    /// Static entries do not count against port or VLAN MAC limits.
    pub fn add_static(&self, vlan: u16, mac: MacAddr, port: PortId) -> bool {
        let k = key(vlan, mac);
        let make_static = |s: &Slot| {
            let old = s.val.swap(value(port, true, 0), Relaxed);
            if old & VAL_VALID != 0 && old & VAL_STATIC == 0 {
                // It was a dynamic entry: it leaves the limits' counts.
                Occupancy::release(self.occupancy.port(val_port(old)));
                Occupancy::release(self.occupancy.vlan(vlan));
            }
        };
        if let Some(s) = self.find(k) {
            make_static(s);
            return true;
        }
        match self.learn(vlan, mac, port, 0, u32::MAX) {
            Learned::New | Learned::Refreshed | Learned::Moved { .. } => {
                if let Some(s) = self.find(k) {
                    make_static(s);
                }
                true
            }
            Learned::StaticConflict
            | Learned::NoRoom
            | Learned::PortLimit
            | Learned::VlanLimit
            | Learned::Damped { .. } => false,
        }
    }

    fn remove_where(&self, mut pred: impl FnMut(u64, u64) -> bool) -> usize {
        let mut n = 0;
        for s in self.slots.iter() {
            let k = s.key.load(Relaxed);
            if k == EMPTY || k == TOMBSTONE {
                continue;
            }
            let v = s.val.load(Relaxed);
            // Invalidate the value first (so a worker refreshing it meanwhile makes this fail
            // and the entry stays), then retire the key. Doing it the other way round could
            // wipe the value of a new entry inserted into the retired slot in between.
            if pred(k, v) && s.val.compare_exchange(v, 0, Relaxed, Relaxed).is_ok() {
                // Only the control side changes a live key, so this succeeds.
                let _ = s.key.compare_exchange(k, TOMBSTONE, Relaxed, Relaxed);
                self.len.fetch_sub(1, Relaxed);
                if v & VAL_VALID != 0 && v & VAL_STATIC == 0 {
                    Occupancy::release(self.occupancy.port(val_port(v)));
                    Occupancy::release(self.occupancy.vlan((k >> 48) as u16));
                }
                n += 1;
            }
        }
        n
    }

    /// Removes dynamic entries not seen for `aging` seconds. Returns how many.
    pub fn age(&self, now: u32, aging: u32) -> usize {
        let n = self.remove_where(|_, v| v & VAL_VALID != 0 && !Self::is_live(v, now, aging));
        self.counters.aged.fetch_add(n as u64, Relaxed);
        n
    }

    /// Removes the entries that match `f`. Returns how many.
    pub fn flush(&self, f: FlushFilter) -> usize {
        self.remove_where(|k, v| {
            v & VAL_VALID != 0
                && (f.include_static || v & VAL_STATIC == 0)
                && f.vlan.is_none_or(|vl| (k >> 48) as u16 == vl)
                && f.port.is_none_or(|p| val_port(v) == p)
        })
    }

    /// Removes one entry (static or dynamic). Returns whether it existed.
    pub fn remove(&self, vlan: u16, mac: MacAddr) -> bool {
        let k = key(vlan, mac);
        self.remove_where(|kk, v| kk == k && v & VAL_VALID != 0) > 0
    }

    /// A copy of all live entries (control plane; walks the whole table).
    pub fn entries(&self, now: u32, aging: u32) -> Vec<FdbEntry> {
        let mut out = Vec::new();
        for s in self.slots.iter() {
            let k = s.key.load(Relaxed);
            if k == EMPTY || k == TOMBSTONE {
                continue;
            }
            let v = s.val.load(Relaxed);
            if Self::is_live(v, now, aging) {
                out.push(FdbEntry {
                    vlan: (k >> 48) as u16,
                    mac: MacAddr::from_u64(k),
                    port: val_port(v),
                    is_static: v & VAL_STATIC != 0,
                    last_seen: val_time(v),
                });
            }
        }
        out.sort_by_key(|e| (e.vlan, e.mac));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FlapPolicy;

    fn mac(n: u64) -> MacAddr {
        MacAddr::from_u64(0x0200_0000_0000 | n)
    }

    /// `would_learn` names what `learn_with` then does, for every outcome: new, refresh,
    /// move, flapping, damped, static conflict, port and VLAN limits, a full table.
    #[test]
    fn would_learn_agrees_with_learning() {
        let f = Fdb::new(6);
        f.add_static(1, mac(50), 9);
        let flap = FlapPolicy {
            moves: 2,
            window_secs: 10,
            damp_secs: 5,
        };
        let rules = |port_max, vlan_max| LearnRules {
            aging: 300,
            port_max,
            vlan_max,
            flap,
        };
        // (vlan, mac, port, now, port limit, vlan limit)
        let steps: &[(u16, u64, PortId, u32, u32, u32)] = &[
            (1, 1, 1, 0, 9, 9),   // new
            (1, 1, 1, 1, 9, 9),   // refreshed
            (1, 1, 2, 2, 9, 9),   // moved
            (1, 1, 1, 3, 9, 9),   // moved, flapping
            (1, 1, 2, 4, 9, 9),   // damped
            (1, 50, 1, 4, 9, 9),  // static conflict
            (1, 2, 1, 5, 1, 9),   // port limit (port 1 holds mac 1)
            (1, 3, 3, 5, 9, 1),   // VLAN limit
            (2, 3, 3, 5, 9, 9),   // new
            (2, 4, 3, 5, 9, 9),   // new
            (2, 5, 3, 5, 9, 9),   // new
            (2, 6, 3, 5, 9, 9),   // new: six entries
            (2, 7, 3, 5, 9, 9),   // no room
            (1, 1, 2, 400, 9, 9), // expired: learned afresh
        ];
        let mut seen = Vec::new();
        for &(vlan, m, port, now, pmax, vmax) in steps {
            let r = rules(pmax, vmax);
            let before = (format!("{:?}", f.counters), f.len(), f.port_macs(port));
            let would = f.would_learn(vlan, mac(m), port, now, &r);
            let after = (format!("{:?}", f.counters), f.len(), f.port_macs(port));
            assert_eq!(after, before, "would_learn changes nothing");
            let did = f.learn_with(vlan, mac(m), port, now, &r);
            assert_eq!(would, did, "step {vlan} {m} {port} {now}");
            seen.push(did);
        }
        for l in [
            Learned::New,
            Learned::Refreshed,
            Learned::Moved {
                from: 1,
                flapping: false,
            },
            Learned::Moved {
                from: 2,
                flapping: true,
            },
            Learned::Damped { on: 1 },
            Learned::StaticConflict,
            Learned::PortLimit,
            Learned::VlanLimit,
            Learned::NoRoom,
        ] {
            assert!(seen.contains(&l), "{l:?} not exercised: {seen:?}");
        }
    }

    #[test]
    fn learn_then_lookup_per_vlan() {
        let f = Fdb::new(16);
        assert_eq!(f.learn(10, mac(1), 3, 100, 300), Learned::New);
        assert_eq!(f.lookup(10, mac(1), 100, 300), Some(3));
        // the same MAC in another VLAN is another entry
        assert_eq!(f.lookup(20, mac(1), 100, 300), None);
        assert_eq!(f.learn(20, mac(1), 4, 100, 300), Learned::New);
        assert_eq!(f.lookup(20, mac(1), 100, 300), Some(4));
        assert_eq!(f.lookup(10, mac(1), 100, 300), Some(3));
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn refresh_move_and_counters() {
        let f = Fdb::new(16);
        f.learn(10, mac(1), 3, 100, 300);
        assert_eq!(f.learn(10, mac(1), 3, 150, 300), Learned::Refreshed);
        assert_eq!(
            f.learn(10, mac(1), 5, 151, 300),
            Learned::Moved {
                from: 3,
                flapping: false
            }
        );
        assert_eq!(f.lookup(10, mac(1), 151, 300), Some(5));
        assert_eq!(f.counters.moves.load(Relaxed), 1);
        assert_eq!(f.counters.learned.load(Relaxed), 1);
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn aging_uses_the_time_passed_in() {
        let f = Fdb::new(16);
        f.learn(10, mac(1), 3, 1000, 300);
        assert_eq!(f.lookup(10, mac(1), 1299, 300), Some(3));
        assert_eq!(f.lookup(10, mac(1), 1300, 300), None);
        // learning an expired, unswept entry on another port is a new learn, not a move
        assert_eq!(f.learn(10, mac(1), 4, 1400, 300), Learned::New);
        assert_eq!(f.counters.moves.load(Relaxed), 0);
        assert_eq!(f.age(1699, 300), 0);
        assert_eq!(f.age(1700, 300), 1);
        assert!(f.is_empty());
        assert_eq!(f.lookup(10, mac(1), 1700, 300), None);
    }

    #[test]
    fn static_entries_never_age_or_move() {
        let f = Fdb::new(16);
        assert!(f.add_static(10, mac(9), 2));
        assert_eq!(f.learn(10, mac(9), 7, 5, 300), Learned::StaticConflict);
        assert_eq!(f.lookup(10, mac(9), 1_000_000, 300), Some(2));
        assert_eq!(f.age(1_000_000, 300), 0);
        assert_eq!(f.flush(FlushFilter::default()), 0);
        assert_eq!(
            f.flush(FlushFilter {
                include_static: true,
                ..Default::default()
            }),
            1
        );
    }

    #[test]
    fn full_table_stops_learning_and_counts() {
        let f = Fdb::new(4);
        for i in 0..4 {
            assert_eq!(f.learn(10, mac(i), 1, 0, 300), Learned::New);
        }
        assert_eq!(f.learn(10, mac(99), 1, 0, 300), Learned::NoRoom);
        assert_eq!(f.counters.no_room.load(Relaxed), 1);
        assert_eq!(f.lookup(10, mac(99), 0, 300), None);
        // known MACs still refresh and move when full
        assert_eq!(
            f.learn(10, mac(0), 2, 1, 300),
            Learned::Moved {
                from: 1,
                flapping: false
            }
        );
        // room again after a flush
        assert_eq!(
            f.flush(FlushFilter {
                port: Some(2),
                ..Default::default()
            }),
            1
        );
        assert_eq!(f.learn(10, mac(99), 1, 1, 300), Learned::New);
    }

    #[test]
    fn flush_by_vlan_and_port() {
        let f = Fdb::new(64);
        for i in 0..10 {
            f.learn(10, mac(i), (i % 2) as PortId, 0, 300);
            f.learn(20, mac(i), (i % 2) as PortId, 0, 300);
        }
        let n = f.flush(FlushFilter {
            vlan: Some(10),
            port: Some(1),
            include_static: false,
        });
        assert_eq!(n, 5);
        assert_eq!(f.len(), 15);
        assert_eq!(f.lookup(10, mac(1), 0, 300), None);
        assert_eq!(f.lookup(20, mac(1), 0, 300), Some(1));
        assert!(f.remove(20, mac(1)));
        assert!(!f.remove(20, mac(1)));
        assert_eq!(f.entries(0, 300).len(), 14);
    }

    #[test]
    fn tombstones_are_reused_and_probing_passes_them() {
        let f = Fdb::new(1000);
        for round in 0..20u32 {
            for i in 0..500 {
                f.learn(1, mac(i), 1, round * 1000, 300);
            }
            for i in 0..500 {
                assert_eq!(f.lookup(1, mac(i), round * 1000, 300), Some(1));
            }
            f.age(round * 1000 + 999, 300);
            assert!(f.is_empty());
        }
    }

    #[test]
    fn concurrent_learning_keeps_every_key_findable() {
        let f = Fdb::new(1 << 14);
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let f = &f;
                s.spawn(move || {
                    for i in 0..8000u64 {
                        f.learn(1, mac(i * 2 + t), t as PortId, 1, 300);
                    }
                });
            }
        });
        for i in 0..16000u64 {
            assert_eq!(f.lookup(1, mac(i), 1, 300), Some((i % 2) as PortId));
        }
        assert_eq!(f.len(), 16000);
    }

    fn rules(port_max: u32, vlan_max: u32) -> LearnRules {
        LearnRules {
            port_max,
            vlan_max,
            ..LearnRules::unlimited(300)
        }
    }

    #[test]
    fn a_port_limit_leaves_room_for_other_ports_and_vlans() {
        let f = Fdb::new(64);
        let r = rules(4, u32::MAX);
        for i in 0..4 {
            assert_eq!(f.learn_with(10, mac(i), 1, 0, &r), Learned::New);
        }
        // port 1 is full: a fifth source is not learned, known ones still refresh
        assert_eq!(f.learn_with(10, mac(99), 1, 0, &r), Learned::PortLimit);
        assert_eq!(f.learn_with(10, mac(0), 1, 1, &r), Learned::Refreshed);
        assert_eq!(f.port_macs(1), 4);
        // other ports and other VLANs learn as before
        assert_eq!(f.learn_with(10, mac(50), 2, 0, &r), Learned::New);
        assert_eq!(f.learn_with(20, mac(51), 1, 0, &r), Learned::PortLimit);
        assert_eq!(f.learn_with(20, mac(51), 3, 0, &r), Learned::New);
        // a MAC does not move onto a full port either
        assert_eq!(f.learn_with(10, mac(50), 1, 2, &r), Learned::PortLimit);
        assert_eq!(f.lookup(10, mac(50), 2, 300), Some(2));
        assert_eq!(f.counters.limited.load(Relaxed), 3);
        // aging and flushing give the places back
        assert_eq!(
            f.flush(FlushFilter {
                port: Some(1),
                ..Default::default()
            }),
            4
        );
        assert_eq!(f.port_macs(1), 0);
        assert_eq!(f.learn_with(10, mac(99), 1, 3, &r), Learned::New);
        f.age(1000, 300);
        assert_eq!((f.port_macs(1), f.port_macs(2), f.vlan_macs(10)), (0, 0, 0));
    }

    #[test]
    fn a_vlan_limit_counts_every_port_of_the_vlan() {
        let f = Fdb::new(64);
        let r = rules(u32::MAX, 3);
        assert_eq!(f.learn_with(10, mac(1), 1, 0, &r), Learned::New);
        assert_eq!(f.learn_with(10, mac(2), 2, 0, &r), Learned::New);
        assert_eq!(f.learn_with(10, mac(3), 3, 0, &r), Learned::New);
        assert_eq!(f.learn_with(10, mac(4), 4, 0, &r), Learned::VlanLimit);
        assert_eq!(f.learn_with(20, mac(4), 4, 0, &r), Learned::New);
        assert_eq!(f.vlan_macs(10), 3);
        // a move stays within the VLAN's count
        assert!(matches!(
            f.learn_with(10, mac(1), 2, 1, &r),
            Learned::Moved { from: 1, .. }
        ));
        assert_eq!((f.vlan_macs(10), f.port_macs(1), f.port_macs(2)), (3, 0, 2));
        // static entries do not count, and a dynamic entry made static leaves the count
        assert!(f.add_static(10, mac(2), 2));
        assert_eq!((f.vlan_macs(10), f.port_macs(2)), (2, 1));
        assert!(f.add_static(10, mac(9), 5));
        assert_eq!(f.vlan_macs(10), 2);
    }

    #[test]
    fn a_mac_moving_back_and_forth_flaps_and_can_be_damped() {
        let flap = FlapPolicy {
            moves: 3,
            window_secs: 10,
            damp_secs: 0,
        };
        let r = LearnRules {
            flap,
            ..LearnRules::unlimited(300)
        };
        let f = Fdb::new(64);
        assert_eq!(f.learn_with(10, mac(1), 1, 100, &r), Learned::New);
        let mut seen = Vec::new();
        for t in 0..4u32 {
            let port = if t % 2 == 0 { 2 } else { 1 };
            seen.push(f.learn_with(10, mac(1), port, 101 + t, &r));
        }
        assert_eq!(
            seen,
            [
                Learned::Moved {
                    from: 1,
                    flapping: false
                },
                Learned::Moved {
                    from: 2,
                    flapping: false
                },
                Learned::Moved {
                    from: 1,
                    flapping: true
                },
                Learned::Moved {
                    from: 2,
                    flapping: true
                },
            ]
        );
        assert_eq!(f.counters.flaps.load(Relaxed), 2);
        // moves far apart are no flap: the history is forgotten after the window
        assert_eq!(f.learn_with(10, mac(1), 1, 200, &r), Learned::Refreshed);
        assert_eq!(
            f.learn_with(10, mac(1), 2, 230, &r),
            Learned::Moved {
                from: 1,
                flapping: false
            }
        );

        // with damping, a flapping MAC stays where it is for the hold time
        let damped = LearnRules {
            flap: FlapPolicy {
                damp_secs: 30,
                ..flap
            },
            ..r
        };
        let g = Fdb::new(64);
        g.learn_with(10, mac(1), 1, 100, &damped);
        for t in 0..3u32 {
            let port = if t % 2 == 0 { 2 } else { 1 };
            assert!(matches!(
                g.learn_with(10, mac(1), port, 101 + t, &damped),
                Learned::Moved { .. }
            ));
        }
        // it flapped onto port 2 at 103: held there until 133
        assert_eq!(
            g.learn_with(10, mac(1), 1, 104, &damped),
            Learned::Damped { on: 2 }
        );
        assert_eq!(
            g.learn_with(10, mac(1), 1, 132, &damped),
            Learned::Damped { on: 2 }
        );
        assert_eq!(g.lookup(10, mac(1), 132, 300), Some(2));
        assert_eq!(g.counters.damped.load(Relaxed), 2);
        assert!(matches!(
            g.learn_with(10, mac(1), 1, 133, &damped),
            Learned::Moved { from: 2, .. }
        ));
    }
}
