//! Live traces armed through the API: one per port at most, armed on the switch
//! ([`dataplane::watch`]), drained and explained ([`dataplane::trace::explain`]) when read.

use std::collections::HashMap;
use std::sync::Arc;

use dataplane::trace::Trace;
use dataplane::watch::{Armed, Filter, LiveTrace, Record, Watch};
use dataplane::Switch;

/// Most frames one live trace records.
pub const MAX_COUNT: usize = 1000;

/// A frame a live trace recorded: when, and what the worker did with it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Recorded {
    /// When the worker read the receive batch it came in, in nanoseconds since the Unix epoch.
    pub at_unix_ns: u64,
    /// The decision the worker took, explained.
    pub trace: Trace,
}

/// One port's live trace.
#[derive(Debug)]
pub struct Live {
    /// Armed while frames are still to be recorded; `None` once done (or the port went).
    armed: Option<Armed>,
    trace: Arc<LiveTrace>,
    /// How many frames were asked for.
    pub count: usize,
    /// What was recorded so far, oldest first.
    pub records: Vec<Recorded>,
}

impl Live {
    /// Frames still to record (0 once disarmed).
    pub fn remaining(&self) -> u64 {
        if self.armed.is_some() {
            self.trace.remaining()
        } else {
            0
        }
    }

    /// Whether it still records.
    pub fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// Its filter.
    pub fn filter(&self) -> Filter {
        *self.trace.filter()
    }
}

/// The live traces, by port name.
#[derive(Debug, Default)]
pub struct LiveTraces(HashMap<String, Live>);

impl LiveTraces {
    /// Arms a live trace of the next `count` frames matching `filter` on port `name`, in place
    /// of any earlier one. False if there is no such port.
    pub fn arm(&mut self, sw: &Switch, name: &str, count: usize, filter: Filter) -> bool {
        let trace = Arc::new(LiveTrace::new(count, filter));
        let Some(armed) = sw.arm(name, Watch::Trace(trace.clone())) else {
            return false;
        };
        let live = Live {
            armed: Some(armed),
            trace,
            count,
            records: Vec::new(),
        };
        self.0.insert(name.to_string(), live);
        true
    }

    /// Port `name`'s live trace with what the workers recorded since the last read added
    /// (explained against the running configuration); disarmed once complete.
    pub fn read(&mut self, sw: &Switch, name: &str) -> Option<&Live> {
        let live = self.0.get_mut(name)?;
        // Asked before draining: once complete, every record is queued, so this drain reads
        // the last of them.
        let done = live.trace.is_complete() || live.armed.as_ref().is_some_and(|a| a.is_gone());
        let snap = sw.snapshot();
        let now = sw.now();
        while let Some(r) = live.trace.next() {
            let Some(id) = snap.port_id(name) else {
                break;
            };
            live.records.push(Recorded {
                at_unix_ns: r.at_ns,
                trace: explain(sw, &snap, &r, id, now),
            });
        }
        if done {
            live.armed = None;
        }
        Some(live)
    }

    /// Disarms and forgets port `name`'s live trace, returning it as last read.
    pub fn remove(&mut self, sw: &Switch, name: &str) -> Option<Live> {
        self.read(sw, name)?;
        self.0.remove(name)
    }
}

fn explain(sw: &Switch, snap: &dataplane::Snapshot, r: &Record, id: u16, now: u32) -> Trace {
    let sent: Vec<_> = r.sent.iter().flatten().copied().collect();
    dataplane::trace::explain(
        snap,
        sw.fdb(),
        r.head(),
        r.len as usize,
        id,
        now,
        r.decision,
        &sent,
        r.more,
    )
}
