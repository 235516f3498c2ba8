//! The controller: owns the running switch and the topology it runs, attaches ports, and keeps
//! netdev ports attached as their interfaces come and go.

use std::sync::Arc;

use dataplane::counters::{CounterValues, PortCounters};
use dataplane::fdb::FlushFilter;
use dataplane::port::netlink::LinkEvent;
use dataplane::port::{packet, Port, PortError, PortIo};
use dataplane::{PortId, Switch, SwitchOptions};

use crate::topology::{self, PortKind, Topology};

/// Errors starting the switch from a topology.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A port could not be attached.
    #[error("port {port}")]
    Port {
        /// The port.
        port: String,
        /// Why.
        #[source]
        source: PortError,
    },
    /// The switch could not start.
    #[error("cannot start the switch")]
    Switch(#[from] dataplane::switch::SwitchError),
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, ControlError>;

/// The running switch with its topology.
#[derive(Debug)]
pub struct Controller {
    switch: Switch,
    topo: Topology,
}

impl Controller {
    /// Attaches every port of `topo` and starts `workers` worker threads.
    ///
    /// A tap port that cannot be created is an error. A netdev port whose interface does not
    /// exist yet is not: it waits, detached, and attaches when the interface appears
    /// ([`Controller::on_link_events`]).
    pub fn start(topo: Topology, workers: usize) -> Result<Controller> {
        let snapshot = crate::build_snapshot(&topo, |p| attach(p, Arc::default()))?;
        let opts = SwitchOptions {
            workers,
            fdb_max_entries: topo.fdb_max_entries,
        };
        let switch = Switch::start(opts, snapshot)?;
        Ok(Controller { switch, topo })
    }

    /// The running switch.
    pub fn switch(&self) -> &Switch {
        &self.switch
    }

    /// The topology being run.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// Re-checks the netdev ports named in `events` (all of them if an event has no name, as
    /// after lost events): a port whose interface vanished goes down, one whose interface
    /// appeared (again) attaches. Either way its learned MACs are flushed.
    pub fn on_link_events(&self, events: &[LinkEvent]) {
        let recheck_all = events.iter().any(|e| e.name.is_empty());
        for p in self
            .topo
            .ports
            .iter()
            .filter(|p| p.kind == PortKind::Netdev)
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
        let Some(current) = snap.port(id).and_then(|e| e.port.clone()) else {
            return;
        };
        let attached_to = match current.io() {
            PortIo::Packet(s) => Some(s.ifindex()),
            _ => None,
        };
        let present = packet::ifindex(&p.name);
        if attached_to == present {
            return;
        }
        let new = if present.is_some() {
            attach(p, current.counters.clone()).unwrap_or_else(|e| {
                let reason = ErrorChain(&e).to_string();
                tracing::warn!(port = %p.name, error = %reason, "cannot attach");
                Arc::new(Port::detached(&p.name, reason, current.counters.clone()))
            })
        } else {
            tracing::warn!(port = %p.name, "interface vanished; port is down until it returns");
            Arc::new(Port::detached(
                &p.name,
                format!("interface {} does not exist", p.name),
                current.counters.clone(),
            ))
        };
        if let Err(e) = self.switch.update(|s| s.with_port(id, new)) {
            tracing::error!(port = %p.name, error = %e, "cannot apply port change");
        }
        self.flush_port(id);
    }

    fn flush_port(&self, id: PortId) {
        self.switch.fdb().flush(FlushFilter {
            port: Some(id),
            ..Default::default()
        });
    }

    /// Counters of every port, by name, in topology order.
    pub fn port_counters(&self) -> Vec<(String, CounterValues)> {
        let snap = self.switch.snapshot();
        snap.ports()
            .iter()
            .flatten()
            .filter_map(|e| Some((e.name.clone(), e.port.as_ref()?.counters.values())))
            .collect()
    }

    /// Stops the workers and closes the ports; returns the final counters.
    pub fn shutdown(self) -> Vec<(String, CounterValues)> {
        let snap = self.switch.snapshot();
        self.switch.stop();
        let counters = snap
            .ports()
            .iter()
            .flatten()
            .filter_map(|e| Some((e.name.clone(), e.port.as_ref()?.counters.values())))
            .collect();
        drop(snap);
        counters
    }
}

/// Formats an error with its sources, `a: b: c`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

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

/// Opens the I/O for port `p`, logging one line with its kind and mode.
fn attach(p: &topology::Port, counters: Arc<PortCounters>) -> Result<Arc<Port>> {
    let mode = crate::port_mode(p).describe();
    let err = |source| ControlError::Port {
        port: p.name.clone(),
        source,
    };
    let port = match p.kind {
        PortKind::Tap => {
            let port = Port::tap(&p.name).map_err(err)?;
            let how = match port.io() {
                PortIo::Tap(t) if !t.created() => "opened existing tap",
                _ => "created tap",
            };
            tracing::info!(port = %p.name, kind = "tap", %mode, "{how}");
            port
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
