//! The controller: owns the running switch and the topology it runs. Every change, whether from
//! a topology file, the REST API or a link event, goes through here.
//!
//! A change is a whole desired [`Topology`]: it is validated, compared with the running one
//! ([`crate::diff`]), new ports are attached, the result is persisted (when a state file is
//! configured) and only then published to the workers as one new snapshot. A failure before
//! publishing leaves the running switch and the state file as they were.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use dataplane::counters::{CounterValues, PortCounters};
use dataplane::fdb::FlushFilter;
use dataplane::port::netlink::LinkEvent;
use dataplane::port::tap::{self, Lifetime};
use dataplane::port::{packet, Port, PortError, PortIo};
use dataplane::switch::Workers;
use dataplane::{PortEntry, PortId, Snapshot, Switch, SwitchOptions};

use crate::diff::{diff, Change, Touched};
use crate::droplog::DropWatch;
use crate::events::{Event, EventHub};
use crate::plan::plan;
use crate::state::persist;
use crate::topology::{self, PortKind, Topology, TopologyError};

/// Errors starting the switch or changing its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The desired topology breaks a rule.
    #[error(transparent)]
    Invalid(#[from] TopologyError),
    /// The change cannot be made while running.
    #[error("{0}")]
    Conflict(String),
    /// A port could not be attached.
    #[error("port {port}")]
    Port {
        /// The port.
        port: String,
        /// Why.
        #[source]
        source: PortError,
    },
    /// The state file could not be written; nothing was changed.
    #[error("cannot write state file {path}")]
    Persist {
        /// The state file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The switch could not start or take the new configuration.
    #[error("switch")]
    Switch(#[from] dataplane::switch::SwitchError),
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, ControlError>;

/// How long adding a port waits for a removed port of the same name to be closed. Workers let
/// go of a removed port at their next wakeup, so this is only reached if one is stuck.
const NAME_FREE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The running switch with its topology.
#[derive(Debug)]
pub struct Controller {
    switch: Switch,
    /// The configuration as declared (what is exported and persisted).
    topo: Topology,
    /// What runs: `topo` with its tunnel ports ([`Topology::running`]).
    running: Topology,
    state: Option<PathBuf>,
    /// Whether the taps the switch makes outlive it (with a state file) or not.
    taps: Lifetime,
    /// Where [`Controller::log_events`] left off in each worker's event ring.
    event_cursors: Vec<u64>,
    event_log: crate::eventlog::EventLog,
    /// Live traces armed through the API.
    live: crate::watch::LiveTraces,
    /// Where the events of `GET /api/v1/events` go.
    events: EventHub,
    /// Each port's link and down reason at the last look ([`Controller::observe`]).
    links: HashMap<String, (bool, Option<String>)>,
    /// The drop log's memory.
    drops: DropWatch,
    /// The MTU mismatches warned about, as (port, its MTU, tunnel, the tunnel's MTU): each is
    /// logged once, not again at every change.
    mtu_warned: std::sync::Mutex<std::collections::HashSet<(String, u32, String, u32)>>,
}

impl Controller {
    /// Attaches every port of `topo` and starts `workers` worker threads. With `state`, every
    /// later change is persisted there (and `topo` is written once at start).
    ///
    /// A tap port that cannot be created is an error. A netdev port whose interface does not
    /// exist yet is not: it waits, detached, and attaches when the interface appears
    /// ([`Controller::on_link_events`]).
    pub fn start(
        topo: Topology,
        workers: impl Into<Workers>,
        state: Option<PathBuf>,
    ) -> Result<Controller> {
        topo.validate()?;
        // The lab sections are checked with the rest and then left out: the running
        // configuration has none, so an API change is never refused for a host's sake.
        let topo = topo.without_lab();
        let running = topo.running();
        // With a state file the switch will be back: the taps it makes outlive it, and the
        // ones an earlier run left (kill -9 included) are found where their hosts moved them.
        let taps = if state.is_some() {
            Lifetime::Kept
        } else {
            Lifetime::Port
        };
        let kept = match taps {
            Lifetime::Kept => tap::find_kept(),
            Lifetime::Port => Default::default(),
        };
        // Every port attached so far, so that a start that fails half way leaves the kept taps
        // in place (their hosts keep their interfaces, and the next start finds them) rather
        // than removing them as it drops the ports.
        let mut attached: Vec<Arc<Port>> = Vec::new();
        let started = (|| {
            let snapshot = crate::build_snapshot(&running, |p| {
                let port = match attach(&running, p, Arc::default(), taps, kept.get(&p.name)) {
                    // A tunnel that cannot be made yet (its address not configured, say, at
                    // boot) waits, down, and is tried again every second (`retry_tunnels`).
                    Err(e) if p.kind == PortKind::Vxlan => {
                        let reason = ErrorChain(&e).to_string();
                        tracing::warn!(port = %p.name, error = %reason, "cannot make the tunnel yet; trying again every second");
                        Arc::new(Port::detached(&p.name, reason, Arc::default()))
                    }
                    r => r?,
                };
                attached.push(Arc::clone(&port));
                Ok::<_, ControlError>(port)
            })?;
            if let Some(path) = &state {
                persist(path, &topo)?;
            }
            let opts = SwitchOptions {
                workers: workers.into(),
                fdb_max_entries: topo.fdb_max_entries,
            };
            Ok::<_, ControlError>(Switch::start(opts, snapshot)?)
        })();
        let switch = match started {
            Ok(s) => s,
            Err(e) => {
                if taps == Lifetime::Kept {
                    attached.iter().for_each(|p| p.keep_interface());
                }
                return Err(e);
            }
        };
        let ctl = Controller {
            switch,
            topo,
            running,
            state,
            taps,
            event_cursors: Vec::new(),
            event_log: Default::default(),
            live: Default::default(),
            events: EventHub::default(),
            links: HashMap::new(),
            drops: DropWatch::default(),
            mtu_warned: Default::default(),
        };
        ctl.sync_static_macs(&[]);
        ctl.sync_tunnels();
        Ok(ctl)
    }

    /// The running switch and the live traces armed on it.
    pub fn live_traces(&mut self) -> (&Switch, &mut crate::watch::LiveTraces) {
        (&self.switch, &mut self.live)
    }

    /// The running switch.
    pub fn switch(&self) -> &Switch {
        &self.switch
    }

    /// The topology being run, as declared.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// What runs: the topology with its tunnel ports ([`Topology::running`]).
    pub fn running(&self) -> &Topology {
        &self.running
    }

    /// Gives each tunnel its flood list and static remote MACs (adding before removing, so a
    /// remote that stays never misses a frame), and warns about ports of its VLAN whose MTU
    /// is bigger than the tunnel's: their big frames cannot cross.
    fn sync_tunnels(&self) {
        for (p, attached) in self.tunnels() {
            let Some(vlan) = p.vlan else { continue };
            // A tunnel waiting to be made has no interface yet: it is synced once made.
            if !attached {
                continue;
            }
            let want = crate::tunnels::flood_and_static(&self.running, vlan);
            let entry = |e: &dataplane::port::vxlan::FdbEntry| {
                if e.is_flood() {
                    "flood list".to_string()
                } else {
                    format!("static MAC {}", e.mac)
                }
            };
            let mut failed = Vec::new();
            match dataplane::port::vxlan::sync_fdb(&p.name, &want) {
                Ok(done) => {
                    for (what, list) in [("added", &done.added), ("removed", &done.removed)] {
                        for e in list {
                            tracing::info!(port = %p.name, vlan, remote = %e.remote, "{what}: {}", entry(e));
                        }
                    }
                    for (e, err) in &done.failed {
                        failed.push(format!("{} {}: {err}", entry(e), e.remote));
                    }
                }
                Err(e) => failed.push(format!("cannot read its FDB: {e}")),
            }
            for reason in failed {
                tracing::error!(port = %p.name, vlan, "tunnel FDB not as configured: {reason}");
                self.events.publish(&Event::PortError {
                    port: p.name.clone(),
                    reason: format!("tunnel FDB not as configured: {reason}"),
                });
            }
            let Ok(mtu) = dataplane::port::packet::mtu(&p.name) else {
                continue;
            };
            for (name, port_mtu) in crate::tunnels::too_big(&self.running, vlan, mtu) {
                let key = (name.clone(), port_mtu, p.name.clone(), mtu);
                let mut warned = self.mtu_warned.lock().unwrap_or_else(|e| e.into_inner());
                if !warned.insert(key) {
                    continue;
                }
                tracing::warn!(
                    port = %name, vlan, mtu = port_mtu, tunnel = %p.name, tunnel_mtu = mtu,
                    "the port's MTU is bigger than its VLAN's tunnel's: frames over {mtu} bytes \
                     will not reach other hosts; give the guest an MTU of {mtu} or raise the \
                     underlay's MTU by {}", port_mtu - mtu
                );
            }
        }
    }

    /// The hub the controller publishes its events to (`GET /api/v1/events` subscribes).
    pub fn events(&self) -> &EventHub {
        &self.events
    }

    /// Makes `desired` the running configuration, touching only what differs, and returns
    /// the changes. With `dry_run`, only computes them.
    pub fn apply(&mut self, desired: Topology, dry_run: bool) -> Result<Vec<Change>> {
        desired.validate()?;
        let declared = desired.without_lab();
        let desired = declared.running();
        let changes = diff(&self.running, &desired);
        if let Some(Change::SetFdbMaxEntries { from, to }) = changes
            .iter()
            .find(|c| matches!(c, Change::SetFdbMaxEntries { .. }))
        {
            return Err(ControlError::Conflict(format!(
                "fdb_max_entries cannot change while the switch runs ({from} -> {to}); \
                 restart switchd with the new value"
            )));
        }
        if dry_run || changes.is_empty() {
            return Ok(changes);
        }
        let snap = self.switch.snapshot();
        let names: Vec<Option<&str>> = snap
            .ports()
            .iter()
            .map(|e| e.as_ref().map(|e| e.name.as_str()))
            .collect();
        let plan = plan(&changes, &self.running, &desired, &names);
        // The running port table, kept whole so that a failure can put it back. Only ports
        // whose kind changes must let go of their interface first (see below); all others
        // stay open in `before` until this change is done.
        let mut before: Vec<Option<PortEntry>> = snap.ports().to_vec();
        drop(names);
        drop(snap);
        let mut slots = before.clone();
        for &id in &plan.detach {
            slots[id as usize] = None;
        }
        for (_, id) in &plan.replaced {
            before[*id as usize] = None;
        }
        if !plan.replaced.is_empty() {
            // A port whose kind changes must let go of its interface before it is attached
            // anew under the same name: publish the table without it first. If anything
            // below fails, `restore` attaches it again and puts `before` back.
            let without = crate::snapshot::snapshot(&self.running, before.clone());
            if let Err(e) = self.switch.update(|_| without) {
                self.restore(before, &plan.replaced);
                return Err(e.into());
            }
        }
        let staged = self
            .attach_planned(&plan.attach, &desired, slots)
            .and_then(|slots| {
                if let Some(path) = &self.state {
                    persist(path, &declared)?;
                }
                Ok(slots)
            });
        let slots = match staged {
            Ok(slots) => slots,
            Err(e) => {
                self.restore(before, &plan.replaced);
                return Err(e);
            }
        };
        // Every entry takes its mode and port security from `desired` here.
        let next = crate::snapshot::snapshot(&desired, slots);
        // `update` publishes nothing when it fails.
        if let Err(e) = self.switch.update(|_| next) {
            if let Some(path) = &self.state {
                // Best effort: the state file goes back to what still runs.
                let _ = persist(path, &self.topo);
            }
            self.restore(before, &plan.replaced);
            return Err(e.into());
        }
        drop(before);
        self.free_names(&changes);
        for f in plan.flush {
            self.switch.fdb().flush(f);
        }
        for name in plan.link_up {
            match packet::set_link_up(&name) {
                Ok(()) => tracing::info!(port = %name, "set the interface up (admin_up: true)"),
                Err(e) => {
                    tracing::warn!(port = %name, error = %ErrorChain(&e), "cannot set link up")
                }
            }
        }
        self.topo = declared;
        let old_topo = std::mem::replace(&mut self.running, desired);
        self.sync_static_macs(&old_topo.fdb);
        self.sync_tunnels();
        let touched: Vec<Touched> = changes
            .iter()
            .flat_map(|c| crate::diff::touched(c, &old_topo, &self.running))
            .collect();
        for t in &touched {
            tracing::info!(
                port = t.port.as_deref().map(tracing::field::display),
                vlan = t.vlan,
                field = %t.field,
                change = %format_args!("{}->{}", t.from, t.to),
                "applied"
            );
        }
        self.events
            .publish(&Event::ConfigApplied { changes: touched });
        Ok(changes)
    }

    /// Attaches the planned ports of `desired` into their slots of `slots`.
    fn attach_planned(
        &self,
        attach: &[(String, usize)],
        desired: &Topology,
        mut slots: Vec<Option<PortEntry>>,
    ) -> Result<Vec<Option<PortEntry>>> {
        for (name, slot) in attach {
            let p = desired.port(name).expect("the plan names ports of desired");
            let port = self.attach(desired, p, Arc::default())?;
            if *slot >= slots.len() {
                slots.resize_with(slot + 1, || None);
            }
            slots[*slot] = Some(crate::port_entry(desired, p, port));
        }
        Ok(slots)
    }

    /// After a failed apply: attach the `replaced` ports again (their kind change had made
    /// them let go of their interfaces) into `before`, the port table as it ran, and publish
    /// it.
    fn restore(&self, mut before: Vec<Option<PortEntry>>, replaced: &[(String, PortId)]) {
        if replaced.is_empty() {
            return;
        }
        for (name, id) in replaced {
            let Some(p) = self.running.port(name) else {
                continue;
            };
            match self.attach(&self.running, p, Arc::default()) {
                Ok(port) => before[*id as usize] = Some(crate::port_entry(&self.running, p, port)),
                Err(e) => {
                    tracing::error!(port = %name, error = %ErrorChain(&e), "cannot restore port")
                }
            }
        }
        let snapshot = crate::snapshot::snapshot(&self.running, before);
        if let Err(e) = self.switch.update(|_| snapshot) {
            tracing::error!(error = %e, "cannot restore the previous configuration");
        }
        // A tunnel made again has an empty FDB: give it its flood list back.
        self.sync_tunnels();
    }

    /// Closes the ports this change removed, here and now, so that a removed tap's name is
    /// free when the change is acknowledged. At most [`NAME_FREE_WAIT`] in all: a teardown of
    /// hundreds of taps answers after that, and the reaper closes the rest in the background
    /// (a port added again under such a name waits for its own close, see
    /// [`Controller::attach`]).
    fn free_names(&self, changes: &[Change]) {
        let end = std::time::Instant::now() + NAME_FREE_WAIT;
        for c in changes {
            if let Change::RemovePort { name } = c {
                let left = end.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() || !self.switch.reaper().reap_now(name, left) {
                    return;
                }
            }
        }
    }

    /// Attaches `p` (see [`attach`]) once every removed port of the same name is closed: a tap
    /// that was just removed still exists until the reaper closes it, and creating one of the
    /// same name meanwhile would fail with `EBUSY`. So the old one is closed here first.
    fn attach(
        &self,
        t: &Topology,
        p: &topology::Port,
        counters: Arc<PortCounters>,
    ) -> Result<Arc<Port>> {
        if !self.switch.reaper().reap_now(&p.name, NAME_FREE_WAIT) {
            return Err(ControlError::Conflict(format!(
                "port {}: a removed port of that name is still in use by a worker after {:?}; \
                 try again",
                p.name, NAME_FREE_WAIT
            )));
        }
        attach(t, p, counters, self.taps, None)
    }

    /// Removes static MAC entries that are in `old` but no longer configured and installs
    /// every configured one.
    fn sync_static_macs(&self, old: &[topology::StaticMac]) {
        let snap = self.switch.snapshot();
        let fdb = self.switch.fdb();
        for m in old {
            if !self.running.fdb.contains(m) {
                fdb.remove(m.vlan, m.mac);
            }
        }
        for m in &self.running.fdb {
            let Some(id) = snap.port_id(&m.port) else {
                continue;
            };
            if !fdb.add_static(m.vlan, m.mac, id) {
                tracing::warn!(vlan = m.vlan, mac = %m.mac, "no room in the FDB for a static entry");
            }
        }
    }

    /// Re-checks the netdev and tunnel ports named in `events` (all of them if an event has
    /// no name, as after lost events): a netdev port whose interface vanished goes down, one
    /// whose interface appeared (again) attaches; a tunnel whose interface someone removed is
    /// made again. Either way the port's learned MACs are flushed.
    pub fn on_link_events(&self, events: &[LinkEvent]) {
        let recheck_all = events.iter().any(|e| e.name.is_empty());
        for p in self
            .running
            .ports
            .iter()
            .filter(|p| matches!(p.kind, PortKind::Netdev | PortKind::Vxlan))
        {
            if recheck_all || events.iter().any(|e| e.name == p.name) {
                self.reconcile_netdev(p);
            }
        }
    }

    fn reconcile_netdev(&self, p: &topology::Port) {
        let snap = self.switch.snapshot();
        let Some(id) = snap.port_id(&p.name) else {
            return;
        };
        let Some(current) = snap.port(id).map(|e| e.port.clone()) else {
            return;
        };
        let attached_to = match current.io() {
            PortIo::Packet(s) => Some(s.ifindex()),
            _ => None,
        };
        let present = packet::ifindex(&p.name);
        let tunnel = p.kind == PortKind::Vxlan;
        // A detached tunnel is tried again whatever the interfaces do.
        if attached_to == present && (attached_to.is_some() || !tunnel) {
            return;
        }
        if tunnel && present.is_none() {
            tracing::warn!(port = %p.name, "the tunnel interface was removed; making it again");
        }
        let new = if present.is_some() || tunnel {
            match self.attach(&self.running, p, current.counters.clone()) {
                Ok(port) => port,
                Err(e) => {
                    let reason = ErrorChain(&e).to_string();
                    if current.down_reason().as_deref() == Some(reason.as_str()) {
                        // Tried again, failed again for the same reason: nothing changes.
                        return;
                    }
                    tracing::warn!(port = %p.name, error = %reason, "cannot attach");
                    Arc::new(Port::detached(&p.name, reason, current.counters.clone()))
                }
            }
        } else {
            tracing::warn!(port = %p.name, "interface vanished; port is down until it returns");
            Arc::new(Port::detached(
                &p.name,
                format!("interface {} does not exist", p.name),
                current.counters.clone(),
            ))
        };
        // A port shut down by port security stays shut down across re-attaching.
        new.set_disabled(current.is_disabled());
        if let Err(e) = self.switch.update(|s| s.with_port(id, new)) {
            tracing::error!(port = %p.name, error = %e, "cannot apply port change");
        }
        self.switch.fdb().flush(FlushFilter {
            port: Some(id),
            ..Default::default()
        });
        self.sync_static_macs(&[]);
        if tunnel {
            self.sync_tunnels();
        }
    }

    /// Tries again to make the tunnels that could not be made (the daemon calls it once a
    /// second): an address or underlay configured after switchd started brings them up.
    pub fn retry_tunnels(&self) {
        for (p, attached) in self.tunnels() {
            if !attached {
                self.reconcile_netdev(p);
            }
        }
    }

    /// The tunnel ports of the running topology, each with whether it is attached now.
    fn tunnels(&self) -> Vec<(&topology::Port, bool)> {
        let snap = self.switch.snapshot();
        self.running
            .ports
            .iter()
            .filter(|p| p.kind == PortKind::Vxlan)
            .map(|p| {
                let attached = snap
                    .port_id(&p.name)
                    .and_then(|id| snap.port(id))
                    .is_some_and(|e| e.port.is_attached());
                (p, attached)
            })
            .collect()
    }

    /// Enables port `name` again after port security shut it down; its learned MACs are
    /// flushed first. Returns whether it was shut down; `None` if there is no such port.
    pub fn enable_port(&self, name: &str) -> Option<bool> {
        let snap = self.switch.snapshot();
        let id = snap.port_id(name)?;
        let port = &snap.port(id)?.port;
        if !port.is_disabled() {
            return Some(false);
        }
        // Forget what it learned first, then let frames in: it starts afresh under its limit.
        self.switch.fdb().flush(FlushFilter {
            port: Some(id),
            ..Default::default()
        });
        port.set_disabled(false);
        tracing::info!(port = %name, "port enabled again after a port-security shutdown");
        Some(true)
    }

    /// What the control loop does a few times a second: reads the workers' events
    /// ([`Controller::log_events`]), looks at every port's link and at the drop counters, and
    /// logs and publishes what changed (see [`crate::droplog`] and [`crate::events`]).
    pub fn observe(&mut self, now: Instant) {
        self.log_events(now);
        self.watch_links();
        let counters = self.port_counters();
        let seen = self.drops.observe(now, &counters);
        DropWatch::log(&seen.lines);
        for e in &seen.events {
            self.events.publish(e);
        }
    }

    /// Logs the learning and port-security events the workers recorded since the last call
    /// (MAC moves at info; flaps, damping, limits and shutdowns at warn), rate-limited, and
    /// publishes them to the event streams (with the count of those lost in the rings).
    pub fn log_events(&mut self, now: Instant) {
        let snap = self.switch.snapshot();
        let mut events = Vec::new();
        let lost = self
            .switch
            .read_events(&mut self.event_cursors, |e| events.push(e));
        self.event_log.log(&events, lost, now, &snap, &self.running);
        if self.events.has_streams() {
            let name = |id: PortId| {
                snap.port(id)
                    .map_or_else(|| format!("#{id}"), |p| p.name.clone())
            };
            for e in &events {
                if let Some(e) = crate::events::from_worker(e, name) {
                    self.events.publish(&e);
                }
            }
            self.events.lost(lost);
        }
    }

    /// Publishes `link` for every port whose link went up or down since the last look (added
    /// ports included; a removed port goes down), and `port_error` for every port with a new
    /// reason to be down (the one its view shows).
    fn watch_links(&mut self) {
        let snap = self.switch.snapshot();
        let now: HashMap<String, (bool, Option<String>)> = snap
            .ports()
            .iter()
            .flatten()
            .map(|e| {
                let (link, _) = crate::api::link_of(Some(&e.port));
                let error = (!e.port.is_disabled())
                    .then(|| e.port.down_reason())
                    .flatten();
                (e.name.clone(), (link == crate::api::Link::Up, error))
            })
            .collect();
        for (name, (up, error)) in &now {
            let before = self.links.get(name);
            if before.map(|b| b.0) != Some(*up) {
                self.events.publish(&Event::Link {
                    port: name.clone(),
                    up: *up,
                });
            }
            if let Some(reason) = error {
                if before.and_then(|b| b.1.as_ref()) != Some(reason) {
                    self.events.publish(&Event::PortError {
                        port: name.clone(),
                        reason: reason.clone(),
                    });
                }
            }
        }
        for (name, (up, _)) in &self.links {
            if *up && !now.contains_key(name) {
                self.events.publish(&Event::Link {
                    port: name.clone(),
                    up: false,
                });
            }
        }
        self.links = now;
    }

    /// Removes the learned MACs not seen for the aging time (call about once a second), and
    /// publishes a `mac_aged` for each. Returns how many.
    pub fn age(&self) -> usize {
        if !self.events.has_streams() {
            return self.switch.age();
        }
        let mut aged = Vec::new();
        let n = self
            .switch
            .age_with(|vlan, mac, port| aged.push((vlan, mac, port)));
        let snap = self.switch.snapshot();
        for (vlan, mac, id) in aged {
            self.events.publish(&Event::MacAged {
                vlan,
                mac,
                port: snap
                    .port(id)
                    .map_or_else(|| format!("#{id}"), |p| p.name.clone()),
            });
        }
        n
    }

    /// Counters of every port, by name, in port order.
    pub fn port_counters(&self) -> Vec<(String, CounterValues)> {
        counters_of(&self.switch.snapshot())
    }

    /// Stops the workers and closes the ports; returns the final counters. With a state
    /// file, the taps the switch made stay, for the next run to re-attach
    /// ([`Lifetime::Kept`]).
    pub fn shutdown(self) -> Vec<(String, CounterValues)> {
        let snap = self.switch.snapshot();
        if self.taps == Lifetime::Kept {
            for e in snap.ports().iter().flatten() {
                e.port.keep_interface();
            }
        }
        self.switch.stop();
        counters_of(&snap)
    }
}

fn counters_of(snap: &Snapshot) -> Vec<(String, CounterValues)> {
    snap.ports()
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.port.counter_values()))
        .collect()
}

/// Formats an error with its sources, `a: b: c`.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut s = self.0.source();
        while let Some(e) = s {
            write!(f, ": {e}")?;
            s = e.source();
        }
        Ok(())
    }
}

/// Opens the I/O for port `p`, logging one line with its kind and mode. A tap port is made
/// with `taps` as its lifetime, or, if `kept` says where an earlier run's tap for it is now
/// (another namespace, maybe another name), re-attached there.
fn attach(
    t: &Topology,
    p: &topology::Port,
    counters: Arc<PortCounters>,
    taps: Lifetime,
    kept: Option<&(PathBuf, String)>,
) -> Result<Arc<Port>> {
    let mode = crate::port_mode(p).describe();
    let err = |source| ControlError::Port {
        port: p.name.clone(),
        source,
    };
    let port = match p.kind {
        PortKind::Tap => {
            // A tap of the port's name in the switch's own namespace is the port's: a marked
            // tap elsewhere does not take its place.
            let here = std::path::Path::new("/sys/class/net")
                .join(&p.name)
                .exists();
            if let Some((netns, ifname)) = kept.filter(|_| !here) {
                match Port::kept_tap(&p.name, netns, ifname) {
                    Ok(port) => {
                        tracing::info!(
                            port = %p.name, kind = "tap", %mode, netns = %netns.display(), ifname = %ifname,
                            "re-attached the tap an earlier run kept, where its host moved it"
                        );
                        // Its link state is its host's now.
                        return Ok(Arc::new(port));
                    }
                    // The namespace went away meanwhile, say: the port gets a tap here.
                    Err(e) => tracing::warn!(
                        port = %p.name, netns = %netns.display(), error = %ErrorChain(&e),
                        "cannot re-attach the tap an earlier run kept; making one here"
                    ),
                }
            }
            let port = Port::tap(&p.name, taps).map_err(err)?;
            let how = match port.io() {
                PortIo::Tap(t) if !t.created() && t.is_persistent() => {
                    "re-attached the tap an earlier run kept"
                }
                PortIo::Tap(t) if !t.created() => "opened existing tap",
                PortIo::Tap(t) if t.is_persistent() => "created tap (kept across restarts)",
                _ => "created tap",
            };
            tracing::info!(port = %p.name, kind = "tap", %mode, "{how}");
            port
        }
        PortKind::VhostUser => {
            let socket = p.socket.clone().unwrap_or_default();
            let sm = p.socket_mode.unwrap_or_default();
            let mode_of_socket = match sm {
                crate::topology::SocketMode::Server => dataplane::port::vhost::SocketMode::Server,
                crate::topology::SocketMode::Client => dataplane::port::vhost::SocketMode::Client,
            };
            let port = Port::vhost_user(&p.name, socket.clone().into(), mode_of_socket, counters)
                .map_err(err)?;
            let how = match sm {
                crate::topology::SocketMode::Server => "listening for the VM on",
                crate::topology::SocketMode::Client => "connecting to the VM at",
            };
            tracing::info!(port = %p.name, kind = "vhost-user", %mode, socket = %socket, "{how} its socket");
            port
        }
        PortKind::Vxlan => {
            let spec = crate::tunnels::spec(t, p).map_err(|e| ControlError::Port {
                port: p.name.clone(),
                source: e,
            })?;
            let port = Port::vxlan(&spec, counters).map_err(err)?;
            tracing::info!(
                port = %p.name, kind = "vxlan", %mode, vni = spec.vni, local = %spec.local,
                dstport = spec.dstport, mtu = spec.mtu, "made the tunnel interface"
            );
            return Ok(Arc::new(port));
        }
        PortKind::Netdev => match Port::netdev(&p.name, counters.clone()) {
            Ok(port) => {
                tracing::info!(port = %p.name, kind = "netdev", %mode, "attached interface");
                port
            }
            Err(PortError::NoSuchInterface(_)) => {
                tracing::warn!(
                    port = %p.name, kind = "netdev", %mode,
                    "interface does not exist yet; the port attaches when it appears"
                );
                Port::detached(
                    &p.name,
                    format!("interface {} does not exist", p.name),
                    counters,
                )
            }
            Err(e) => return Err(err(e)),
        },
    };
    if p.brings_link_up() && port.is_attached() {
        packet::set_link_up(&p.name).map_err(err)?;
        tracing::info!(port = %p.name, "set the interface up (admin_up: true)");
    }
    Ok(Arc::new(port))
}
