//! The reaper: the one thread that closes ports and frees old snapshots.
//!
//! Closing a tap waits in the kernel (`unregister_netdevice`, an RCU barrier) for up to seconds,
//! and a packet socket's close unmaps its ring. Whoever drops the last reference to a
//! [`Port`] pays that. Without the reaper that was a worker (its snapshot guard was the last
//! holder of a port just removed), which stalled every port the worker serves, or the API
//! thread. So the control side hands every port it removes, and every snapshot it replaces, to
//! the reaper, which keeps a reference until it is the only holder left and then drops it on
//! its own thread. Workers therefore never drop the last reference to anything that closes a
//! descriptor.
//!
//! A port name that is being reaped is not free yet (the old tap still exists). A caller that
//! wants to create an interface of that name first calls [`Reaper::reap_now`], which takes that
//! port out of the queue and closes it on the calling thread.
#![forbid(unsafe_code)]

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::port::Port;
use crate::Snapshot;

/// How often the reaper looks again at items that someone else still holds. Workers let go
/// of an old snapshot at their next wakeup, so this is short.
const RECHECK: Duration = Duration::from_millis(5);

#[derive(Debug, Default)]
struct Queue {
    snapshots: Vec<Arc<Snapshot>>,
    ports: Vec<Arc<Port>>,
    /// Names of the ports the reaper thread is closing right now (outside the lock).
    closing: Vec<String>,
    stopping: bool,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.snapshots.is_empty() && self.ports.is_empty() && self.closing.is_empty()
    }

    fn holds(&self, name: &str) -> bool {
        self.ports.iter().any(|p| p.name() == name) || self.closing.iter().any(|n| n == name)
    }
}

#[derive(Debug, Default)]
struct Inner {
    queue: Mutex<Queue>,
    /// Signalled when work arrives or stop is asked for.
    work: Condvar,
    /// Signalled whenever the reaper dropped something.
    done: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Handle to the reaper thread.
#[derive(Debug)]
pub struct Reaper {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Takes out of `v` every item nobody else holds.
fn take_sole<T>(v: &mut Vec<Arc<T>>) -> Vec<Arc<T>> {
    let mut free = Vec::new();
    let mut i = 0;
    while i < v.len() {
        if Arc::strong_count(&v[i]) == 1 {
            free.push(v.swap_remove(i));
        } else {
            i += 1;
        }
    }
    free
}

impl Reaper {
    /// Starts the reaper thread.
    pub fn start() -> std::io::Result<Reaper> {
        let inner = Arc::new(Inner::default());
        let i = inner.clone();
        let thread = std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || run(&i))?;
        Ok(Reaper {
            inner,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Hands `port` over; it is closed once nobody else holds it.
    pub fn retire_port(&self, port: Arc<Port>) {
        self.inner.lock().ports.push(port);
        self.inner.work.notify_one();
    }

    /// Hands `snapshot` over; it is freed once no worker holds it any more.
    pub fn retire_snapshot(&self, snapshot: Arc<Snapshot>) {
        self.inner.lock().snapshots.push(snapshot);
        self.inner.work.notify_one();
    }

    /// True if a port named `name` waits to be closed, or is being closed.
    pub fn is_pending(&self, name: &str) -> bool {
        self.inner.lock().holds(name)
    }

    /// Closes the ports named `name` that wait in the queue now, on this thread, so that the
    /// name is free when this returns `true`. Waits at most `limit` for workers (and old
    /// snapshots) to let go of them; `false` if they did not in time (they stay queued).
    pub fn reap_now(&self, name: &str, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        let mut q = self.inner.lock();
        loop {
            // Old snapshots may be the other holders: free the ones nobody uses first.
            let snaps = take_sole(&mut q.snapshots);
            let mine: Vec<Arc<Port>> = {
                let (mine, rest): (Vec<_>, Vec<_>) =
                    q.ports.drain(..).partition(|p| p.name() == name);
                q.ports = rest;
                mine
            };
            // The reaper thread may be closing one of that name right now: wait for it.
            let closing = q.closing.iter().any(|n| n == name);
            if mine.is_empty() && !closing {
                drop(q);
                drop(snaps);
                return true;
            }
            let held = mine.iter().any(|p| Arc::strong_count(p) > 1);
            if !held && !closing {
                drop(q);
                drop(snaps);
                drop(mine);
                self.inner.done.notify_all();
                return true;
            }
            q.ports.extend(mine);
            drop(snaps);
            match self.wait_done(q, end) {
                Some(next) => q = next,
                None => return false,
            }
        }
    }

    /// Waits until everything handed over so far is gone, at most `limit`; true if it is.
    pub fn drain(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        let mut q = self.inner.lock();
        while !q.is_empty() {
            match self.wait_done(q, end) {
                Some(next) => q = next,
                None => return false,
            }
        }
        true
    }

    /// Waits (at most until `end`, and at most [`RECHECK`]) for the reaper to drop something;
    /// `None` once `end` has passed.
    fn wait_done<'a>(
        &'a self,
        q: MutexGuard<'a, Queue>,
        end: Instant,
    ) -> Option<MutexGuard<'a, Queue>> {
        let left = end
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())?;
        Some(
            self.inner
                .done
                .wait_timeout(q, RECHECK.min(left))
                .unwrap_or_else(|e| e.into_inner())
                .0,
        )
    }

    /// Stops the thread after it has dropped everything (waiting for holders as long as it
    /// takes: call this after the workers are gone).
    pub fn stop(&self) {
        self.inner.lock().stopping = true;
        self.inner.work.notify_one();
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

fn run(inner: &Inner) {
    let mut q = inner.lock();
    loop {
        // Snapshots first: freeing one may leave a port with no other holder.
        let snaps = take_sole(&mut q.snapshots);
        let ports = take_sole(&mut q.ports);
        let progressed = !snaps.is_empty() || !ports.is_empty();
        if progressed {
            // Drop (close) outside the lock, so that retiring never waits for a close. The
            // names stay in `closing` until their close has returned: only then is the name
            // free for a new interface.
            q.closing = ports.iter().map(|p| p.name().to_string()).collect();
            drop(q);
            drop(snaps);
            for p in ports {
                let start = Instant::now();
                let name = p.name().to_string();
                drop(p);
                let took = start.elapsed();
                if took > Duration::from_millis(100) {
                    tracing::debug!(port = %name, ms = took.as_millis() as u64, "closing the port took long");
                }
                let mut q = inner.lock();
                if let Some(i) = q.closing.iter().position(|n| *n == name) {
                    q.closing.swap_remove(i);
                }
                drop(q);
                inner.done.notify_all();
            }
            q = inner.lock();
            continue;
        }
        if q.is_empty() && q.stopping {
            return;
        }
        q = if q.is_empty() {
            inner.work.wait(q).unwrap_or_else(|e| e.into_inner())
        } else {
            inner
                .work
                .wait_timeout(q, RECHECK)
                .unwrap_or_else(|e| e.into_inner())
                .0
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str) -> Arc<Port> {
        Arc::new(Port::detached(name, "test", Arc::default()))
    }

    #[test]
    fn drops_a_port_once_nobody_else_holds_it() {
        let r = Reaper::start().unwrap();
        let p = port("a");
        let held = p.clone();
        r.retire_port(p);
        std::thread::sleep(Duration::from_millis(30));
        assert!(r.is_pending("a"), "still held elsewhere: must wait");
        let weak = Arc::downgrade(&held);
        drop(held);
        assert!(r.drain(Duration::from_secs(5)));
        assert!(weak.upgrade().is_none(), "dropped by the reaper");
        assert!(!r.is_pending("a"));
        r.stop();
    }

    #[test]
    fn reap_now_frees_the_name_on_the_caller() {
        let r = Reaper::start().unwrap();
        let p = port("b");
        let held = p.clone();
        let weak = Arc::downgrade(&p);
        r.retire_port(p);
        // Someone still holds it: reap_now waits, then gives up.
        assert!(!r.reap_now("b", Duration::from_millis(20)));
        assert!(r.is_pending("b"));
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                drop(held);
            });
            assert!(r.reap_now("b", Duration::from_secs(5)));
        });
        assert!(weak.upgrade().is_none());
        assert!(r.reap_now("nothing-queued", Duration::ZERO));
        r.stop();
    }

    #[test]
    fn a_port_in_an_old_snapshot_goes_with_the_snapshot() {
        use crate::config::PortMode;
        use crate::PortEntry;
        let r = Reaper::start().unwrap();
        let p = port("c");
        let weak = Arc::downgrade(&p);
        let snap = Arc::new(Snapshot::new(
            vec![Some(PortEntry::new(
                "c",
                PortMode::Access { vlan: 1 },
                p.clone(),
            ))],
            300,
        ));
        let worker_guard = snap.clone();
        r.retire_snapshot(snap);
        r.retire_port(p);
        std::thread::sleep(Duration::from_millis(30));
        assert!(weak.upgrade().is_some(), "a worker still uses the snapshot");
        drop(worker_guard);
        assert!(r.drain(Duration::from_secs(5)));
        assert!(weak.upgrade().is_none());
        r.stop();
    }
}
