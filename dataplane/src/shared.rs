//! The state the workers and the control side share: the published snapshot, the FDB, the
//! clock, and the per-worker counters and event rings. [`crate::switch`] owns it and
//! [`crate::worker`] reads it; neither module depends on the other for it.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::counters::VlanCounters;
use crate::events::EventRing;
use crate::fdb::Fdb;
use crate::watch::Watching;
use crate::Snapshot;

/// State shared by the workers and the control side.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) snapshot: ArcSwap<Snapshot>,
    pub(crate) fdb: Fdb,
    pub(crate) epoch: Instant,
    /// Per-VLAN counters, one table per worker.
    pub(crate) vlan_stats: Vec<VlanCounters>,
    /// Learning and port-security events, one ring per worker.
    pub(crate) events: Vec<EventRing>,
    /// How long a worker keeps polling after its last frame before it sleeps (zero: it
    /// sleeps at once).
    pub(crate) poll_window: Duration,
    /// How many captures and live traces are armed (read once per receive batch).
    pub(crate) watching: Watching,
}

impl Shared {
    /// Seconds since the switch started: the FDB's clock.
    pub(crate) fn now(&self) -> u32 {
        self.epoch.elapsed().as_secs() as u32
    }
}
