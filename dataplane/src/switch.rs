//! The running switch: the published snapshot, the FDB, the worker threads.
//!
//! The control side changes the configuration with [`Switch::update`]: it builds a whole new
//! [`Snapshot`], publishes it atomically and then adjusts which worker waits on which port fd.
//! Workers never wait for the control side.
#![forbid(unsafe_code)]

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::config::PortId;
use crate::counters::{VlanCounters, VlanValues};
use crate::events::{Event, EventRing};
use crate::fdb::Fdb;
use crate::port::Port;
use crate::reaper::Reaper;
use crate::shared::Shared;
use crate::sys::{Epoll, EventFd};
use crate::watch::Watching;
use crate::wire::MacAddr;
use crate::worker;
use crate::Snapshot;

/// Errors starting or changing the switch.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// An epoll or eventfd could not be made.
    #[error("cannot set up worker wakeups")]
    Wakeup(#[source] std::io::Error),
    /// A port's fd could not be watched.
    #[error("cannot watch port {port}")]
    Watch {
        /// The port.
        port: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A worker (or the reaper) thread could not be started.
    #[error("cannot start worker thread")]
    Spawn(#[source] std::io::Error),
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, SwitchError>;

/// Switch-wide settings.
#[derive(Debug, Clone, Copy)]
pub struct SwitchOptions {
    /// The worker threads.
    pub workers: Workers,
    /// FDB capacity in entries.
    pub fdb_max_entries: usize,
}

/// How many worker threads forward frames, and how they wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workers {
    /// Worker threads (at least 1).
    pub count: usize,
    /// Adaptive polling: how long a worker keeps reading the vhost-user guests it has just
    /// read or sent to, with their kicks off, after the last such traffic before it turns the
    /// kicks back on and sleeps in epoll (taps and packet sockets are never polled). Zero
    /// turns polling off.
    pub poll_window: Duration,
}

impl From<usize> for Workers {
    /// `count` workers with the default polling window.
    fn from(count: usize) -> Self {
        Workers {
            count,
            poll_window: DEFAULT_POLL_WINDOW,
        }
    }
}

/// The default [`Workers::poll_window`] (see docs/performance.md for the measurement
/// behind it).
pub const DEFAULT_POLL_WINDOW: Duration = Duration::from_micros(50);

/// A port fd some worker waits on.
#[derive(Debug)]
struct Watched {
    port: Arc<Port>,
    worker: usize,
}

/// A running switch. Dropping it without [`Switch::stop`] leaves the workers running.
#[derive(Debug)]
pub struct Switch {
    shared: Arc<Shared>,
    stop: EventFd,
    epolls: Vec<Arc<Epoll>>,
    threads: Vec<JoinHandle<()>>,
    /// Control side only: serializes updates and remembers fd placement.
    watched: Mutex<Vec<Watched>>,
    /// Closes removed ports and frees replaced snapshots, off the workers and the caller.
    reaper: Reaper,
}

impl Switch {
    /// Starts the workers with `snapshot`. Ports go to the worker with the fewest ports.
    pub fn start(opts: SwitchOptions, snapshot: Snapshot) -> Result<Switch> {
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(Snapshot::new(Vec::new(), snapshot.aging_secs)),
            fdb: Fdb::new(opts.fdb_max_entries),
            epoch: Instant::now(),
            vlan_stats: (0..opts.workers.count.max(1))
                .map(|_| VlanCounters::default())
                .collect(),
            events: (0..opts.workers.count.max(1))
                .map(|_| EventRing::default())
                .collect(),
            poll_window: opts.workers.poll_window,
            watching: Watching::default(),
        });
        let stop = EventFd::new().map_err(SwitchError::Wakeup)?;
        let reaper = Reaper::start().map_err(SwitchError::Spawn)?;
        let n = opts.workers.count.max(1);
        let mut epolls = Vec::with_capacity(n);
        for _ in 0..n {
            let ep = Epoll::new().map_err(SwitchError::Wakeup)?;
            ep.add(stop.as_raw_fd(), worker::STOP_TOKEN)
                .map_err(SwitchError::Wakeup)?;
            epolls.push(Arc::new(ep));
        }
        let mut threads = Vec::with_capacity(n);
        for (i, ep) in epolls.iter().enumerate() {
            let (shared, ep) = (shared.clone(), ep.clone());
            let t = std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || worker::run(shared, ep, i))
                .map_err(SwitchError::Spawn)?;
            threads.push(t);
        }
        let switch = Switch {
            shared,
            stop,
            epolls,
            threads,
            watched: Mutex::new(Vec::new()),
            reaper,
        };
        switch.update(|_| snapshot)?;
        Ok(switch)
    }

    /// Replaces the configuration with `f(current)`: makes the workers wait on the fds of
    /// ports that are new, publishes the snapshot atomically, then stops waiting on the fds of
    /// ports that are gone. On an error nothing is published. Ports that stay (the same
    /// `Arc<Port>`) are not touched, so their traffic never pauses. Ports that are gone and the
    /// replaced snapshot go to the [`Reaper`], which closes and frees them once no worker holds
    /// them: neither a worker nor the caller ever waits for a close.
    pub fn update(&self, f: impl FnOnce(&Snapshot) -> Snapshot) -> Result<()> {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.shared.snapshot.load_full();
        let new = Arc::new(f(&old));
        // Watch the new ports first, so that a failure publishes nothing: the update either
        // happens whole or not at all.
        let before = watched.len();
        for (id, entry) in new.ports().iter().enumerate() {
            let Some(port) = entry.as_ref().map(|e| &e.port) else {
                continue;
            };
            if !port.is_attached() {
                continue;
            }
            if watched.iter().any(|w| Arc::ptr_eq(&w.port, port)) {
                continue;
            }
            let worker = (0..self.epolls.len())
                .min_by_key(|i| watched.iter().filter(|w| w.worker == *i).count())
                .unwrap_or(0);
            if let Err(source) = port.watch(&self.epolls[worker], id as u64) {
                for w in watched.drain(before..) {
                    w.port.unwatch(&self.epolls[w.worker]);
                }
                return Err(SwitchError::Watch {
                    port: port.name().to_string(),
                    source,
                });
            }
            watched.push(Watched {
                port: port.clone(),
                worker,
            });
        }
        self.shared.snapshot.store(new.clone());
        self.reaper.retire_snapshot(old);
        // Stop watching fds of ports no longer present. Their fds are still open: `watched`
        // holds the ports until after the delete, then the reaper holds them.
        watched.retain(|w| {
            let keep = new
                .ports()
                .iter()
                .flatten()
                .any(|e| Arc::ptr_eq(&e.port, &w.port));
            if !keep {
                w.port.unwatch(&self.epolls[w.worker]);
                self.reaper.retire_port(w.port.clone());
            }
            keep
        });
        Ok(())
    }

    /// The reaper that closes removed ports (see [`Reaper::reap_now`] before creating an
    /// interface whose name a removed port may still hold).
    pub fn reaper(&self) -> &Reaper {
        &self.reaper
    }

    /// The current configuration.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    /// The MAC table.
    pub fn fdb(&self) -> &Fdb {
        &self.shared.fdb
    }

    /// The FDB's clock: seconds since start.
    pub fn now(&self) -> u32 {
        self.shared.now()
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.epolls.len()
    }

    /// The workers' adaptive polling window.
    pub fn poll_window(&self) -> Duration {
        self.shared.poll_window
    }

    /// Removes FDB entries older than the configured aging time; returns how many. Call about
    /// once a second from the control side.
    pub fn age(&self) -> usize {
        self.age_with(|_, _, _| {})
    }

    /// [`Switch::age`], calling `aged(vlan, mac, port)` for each entry aged out.
    pub fn age_with(&self, aged: impl FnMut(u16, MacAddr, PortId)) -> usize {
        let aging = self.shared.snapshot.load().aging_secs;
        self.shared.fdb.age_with(self.now(), aging, aged)
    }

    /// Traffic counters of `vlan`, summed over the workers.
    pub fn vlan_counters(&self, vlan: u16) -> VlanValues {
        let mut t = VlanValues::default();
        for w in &self.shared.vlan_stats {
            let v = w.values(vlan);
            t.packets += v.packets;
            t.bytes += v.bytes;
            t.flooded += v.flooded;
        }
        t
    }

    /// Calls `f` with every learning and port-security event since the last call with the same
    /// `cursors` (one per worker; start with an empty vector). Returns how many events were
    /// lost because they were overwritten before being read.
    pub fn read_events(&self, cursors: &mut Vec<u64>, mut f: impl FnMut(Event)) -> u64 {
        cursors.resize(self.shared.events.len(), 0);
        let mut lost = 0;
        for (ring, cursor) in self.shared.events.iter().zip(cursors.iter_mut()) {
            lost += ring.read(cursor, &mut f);
        }
        lost
    }

    /// Arms `watch` on port `name` (`None`: no such port) until the returned guard is dropped.
    pub fn arm(&self, name: &str, watch: crate::watch::Watch) -> Option<crate::watch::Armed> {
        let snap = self.shared.snapshot.load();
        let port = &snap.port(snap.port_id(name)?)?.port;
        Some(crate::watch::Armed::new(port, watch, self.shared.clone()))
    }

    /// The id of port `name`, if configured.
    pub fn port_id(&self, name: &str) -> Option<PortId> {
        self.shared.snapshot.load().port_id(name)
    }

    /// Stops the workers and waits for them. The ports close when the last snapshot holding
    /// them is dropped (taps the switch created disappear then).
    pub fn stop(self) {
        if let Err(e) = self.stop.signal() {
            tracing::error!(error = %e, "cannot signal workers to stop");
        }
        for t in self.threads {
            let _ = t.join();
        }
        self.reaper.stop();
    }
}
