//! What the control thread publishes to the workers: immutable snapshots of memory and ring
//! configuration, with one claim word per queue guarding our mutable ring state.
//!
//! Claim states: `FREE` → (worker CAS) `BUSY` → (worker, end of batch) `FREE`;
//! `FREE` → (control thread CAS) `RETIRED`, final. A worker that finds a ring broken releases
//! it as `RETIRED` itself. Only the `BUSY` holder touches the `RingState`; after `RETIRED` the
//! control thread reads it once (the worker's release store and the control thread's acquire
//! CAS order the accesses), so `GET_VRING_BASE` reports the index the last batch really
//! reached, and no worker can move the ring after that.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use std::fs::File;

use vmm_sys_util::eventfd::EventFd;

use crate::error::RingError;
use crate::features::Negotiated;
use crate::memory::GuestMem;
use crate::ring::{RingLayout, RingState};
use crate::{Counters, LinkState};

const FREE: u8 = 0;
const BUSY: u8 = 1;
const RETIRED: u8 = 2;

/// One started, enabled queue in a snapshot.
pub(crate) struct ActiveQueue {
    claim: AtomicU8,
    state: UnsafeCell<RingState>,
    pub layout: RingLayout,
    pub call: Option<Arc<File>>,
    pub kick: Option<Arc<File>>,
}

// SAFETY: the only non-`Sync` field is `state`, and it is accessed only by the thread that
// moved `claim` from FREE to BUSY (until it stores FREE or RETIRED with release ordering), or
// by the control thread after it observed RETIRED with acquire ordering, after which no thread
// can claim the queue. So accesses to `state` never overlap.
unsafe impl Sync for ActiveQueue {}

pub(crate) enum Claim {
    Got,
    Busy,
    Retired,
}

impl ActiveQueue {
    pub fn new(
        layout: RingLayout,
        state: RingState,
        call: Option<Arc<File>>,
        kick: Option<Arc<File>>,
    ) -> Self {
        ActiveQueue {
            claim: AtomicU8::new(FREE),
            state: UnsafeCell::new(state),
            layout,
            call,
            kick,
        }
    }

    /// Never waits.
    pub fn try_claim(&self) -> Claim {
        match self
            .claim
            .compare_exchange(FREE, BUSY, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => Claim::Got,
            Err(RETIRED) => Claim::Retired,
            Err(_) => Claim::Busy,
        }
    }

    /// Copies the ring state out; only for the claim holder.
    ///
    /// # Safety
    /// The caller holds the claim (its `try_claim` returned `Got` and it has not released).
    pub unsafe fn load_state(&self) -> RingState {
        // SAFETY: the caller holds the claim, so no other thread accesses `state` now.
        unsafe { *self.state.get() }
    }

    /// Writes the state back and releases the claim (as RETIRED if the ring is broken).
    ///
    /// # Safety
    /// The caller holds the claim.
    pub unsafe fn release(&self, st: RingState, broken: bool) {
        // SAFETY: the caller holds the claim, so no other thread accesses `state` now.
        unsafe { *self.state.get() = st };
        let to = if broken { RETIRED } else { FREE };
        self.claim.store(to, Ordering::Release);
    }

    /// Control thread: stops workers from claiming the queue again, waiting (briefly: a batch)
    /// for the current holder, and returns the state the last batch left.
    pub fn retire(&self) -> RingState {
        loop {
            match self
                .claim
                .compare_exchange(FREE, RETIRED, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) | Err(RETIRED) => break,
                Err(_) => std::thread::sleep(Duration::from_micros(20)),
            }
        }
        // SAFETY: the claim is RETIRED and was observed with acquire ordering after the last
        // holder's release store, so no worker accesses `state` now or later.
        unsafe { *self.state.get() }
    }
}

/// Everything a batch needs, immutable once published.
pub(crate) struct Snapshot {
    pub mem: Arc<GuestMem>,
    pub neg: Negotiated,
    /// Index 0: guest RX (we write), 1: guest TX (we read).
    pub queues: [Option<ActiveQueue>; 2],
}

/// Counters kept as atomics, added to once per batch (or on rare events).
#[derive(Default)]
pub(crate) struct AtomicCounters {
    pub to_guest_frames: AtomicU64,
    pub to_guest_bytes: AtomicU64,
    pub to_guest_ring_full: AtomicU64,
    pub to_guest_too_large: AtomicU64,
    pub to_guest_busy: AtomicU64,
    pub from_guest_frames: AtomicU64,
    pub from_guest_bytes: AtomicU64,
    pub from_guest_oversize: AtomicU64,
    pub from_guest_runt: AtomicU64,
    pub guest_interrupts: AtomicU64,
    pub connections: AtomicU64,
}

impl AtomicCounters {
    pub fn read(&self) -> Counters {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counters {
            to_guest_frames: r(&self.to_guest_frames),
            to_guest_bytes: r(&self.to_guest_bytes),
            to_guest_ring_full: r(&self.to_guest_ring_full),
            to_guest_too_large: r(&self.to_guest_too_large),
            to_guest_busy: r(&self.to_guest_busy),
            from_guest_frames: r(&self.from_guest_frames),
            from_guest_bytes: r(&self.from_guest_bytes),
            from_guest_oversize: r(&self.from_guest_oversize),
            from_guest_runt: r(&self.from_guest_runt),
            guest_interrupts: r(&self.guest_interrupts),
            connections: r(&self.connections),
        }
    }
}

/// What the control side reports; written by the control thread only.
#[derive(Debug, Clone)]
pub(crate) struct StatusInner {
    pub link: LinkState,
    pub connected: bool,
    pub features: u64,
    pub protocol_features: u64,
    pub mac: Option<[u8; 6]>,
}

/// State shared by the device handle, the control thread and the workers.
pub(crate) struct Shared {
    pub name: String,
    pub snap: ArcSwapOption<Snapshot>,
    /// The first ring fault a worker found; the control thread disconnects on it. A lock on the
    /// error path only: a worker takes it once before the device goes down.
    pub fault: Mutex<Option<(usize, RingError)>>,
    pub fault_evt: EventFd,
    pub faulted: AtomicBool,
    pub status: Mutex<StatusInner>,
    pub counters: AtomicCounters,
}

impl Shared {
    /// Worker: records a ring fault and wakes the control thread.
    pub fn report_fault(&self, queue: usize, err: RingError) {
        if self.faulted.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Ok(mut f) = self.fault.lock() {
            *f = Some((queue, err));
        }
        let _ = self.fault_evt.write(1);
    }
}
