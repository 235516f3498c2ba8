//! Running the switch: choose the configuration (state file or topology file), start the
//! controller and the REST API, follow link events, age the FDB, stop cleanly on SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use control_api::{state, Controller, Topology};
use dataplane::port::netlink::LinkMonitor;
use dataplane::switch::Workers;
use tracing_subscriber::EnvFilter;

use crate::server;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// `switchd check FILE...`
pub fn check(files: &[PathBuf]) -> Result<ExitCode> {
    let mut ok = true;
    for f in files {
        match Topology::from_path(f) {
            Ok(t) => println!(
                "{}: ok ({} VLANs, {} ports)",
                f.display(),
                t.vlan_ids().len(),
                t.ports.len()
            ),
            Err(e) => {
                ok = false;
                println!("{}: {e}", f.display());
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What `switchd` runs with.
pub struct RunOptions {
    pub topology: Option<PathBuf>,
    pub state: Option<PathBuf>,
    pub workers: Workers,
    pub listen: String,
    pub token_file: Option<PathBuf>,
}

/// The configuration to start with: the state file if it exists, else the topology file, else
/// an empty switch. A state file that exists but is empty, corrupt or unreadable is an error
/// ([`state::load`]): switchd does not start, and neither the file nor any port is touched.
fn initial_topology(o: &RunOptions) -> Result<Topology> {
    let state = match &o.state {
        Some(p) => p
            .try_exists()
            .with_context(|| format!("cannot check whether state file {} exists", p.display()))?
            .then_some(p),
        None => None,
    };
    if let Some(state) = state {
        let t = state::load(state)?;
        tracing::info!(state = %state.display(), "configuration restored from the state file");
        if let Some(topo) = &o.topology {
            tracing::info!(topology = %topo.display(), "topology file not used: the state file wins");
        }
        return Ok(t);
    }
    if let Some(path) = &o.topology {
        let t = Topology::from_path(path).with_context(|| format!("{}", path.display()))?;
        tracing::info!(topology = %path.display(), "configuration loaded from the topology file");
        return Ok(t);
    }
    tracing::info!("no topology or state file: starting with no ports");
    Ok(Topology::default())
}

/// `switchd [--topology FILE] [--state FILE] [--listen ADDR] ...`
pub fn run(o: RunOptions) -> Result<ExitCode> {
    let token = match &o.token_file {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read token file {}", p.display()))?;
            let t = t.trim().to_string();
            anyhow::ensure!(!t.is_empty(), "token file {} is empty", p.display());
            Some(t)
        }
        None => None,
    };
    let topo = initial_topology(&o)?;
    let listener = server::bind(&o.listen, token.as_deref())?;
    let stop = install_stop_handlers()?;
    let ctl = Controller::start(topo, o.workers, o.state.clone())?;
    let ctl = Arc::new(Mutex::new(ctl));
    let api_addr = listener.describe();
    let api = server::spawn(listener, ctl.clone(), token)?;
    log_ready(&ctl.lock().unwrap_or_else(|e| e.into_inner()), &api_addr);
    let waited = wait_for_stop(&ctl, &stop);
    api.stop();
    let ctl = Arc::try_unwrap(ctl)
        .map_err(|_| anyhow::anyhow!("API still holds the controller"))?
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    shutdown(ctl);
    waited?;
    Ok(ExitCode::SUCCESS)
}

fn log_ready(ctl: &Controller, api: &str) {
    let t = ctl.topology();
    tracing::info!(
        ports = t.ports.len(),
        workers = ctl.switch().workers(),
        poll_us = ctl.switch().poll_window().as_micros(),
        fdb_max_entries = t.fdb_max_entries,
        mac_aging_secs = t.mac_aging_secs,
        api = %api,
        "switch ready"
    );
}

/// Starts a controller for `topo` without API or state (the demo).
pub fn start(topo: Topology, workers: u16) -> Result<Controller> {
    let ctl = Controller::start(topo, usize::from(workers), None)?;
    log_ready(&ctl, "none");
    Ok(ctl)
}

/// Makes SIGINT and SIGTERM set the returned flag instead of killing the process. Installed
/// before any port exists, so that a signal never leaves a half-started switch behind.
pub fn install_stop_handlers() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    Ok(stop)
}

/// Blocks until `stop` is set (by SIGINT or SIGTERM). Meanwhile follows link events (netdev
/// ports re-attach as interfaces come and go) and ages the FDB once a second.
pub fn wait_for_stop(ctl: &Mutex<Controller>, stop: &AtomicBool) -> Result<()> {
    let lock = || ctl.lock().unwrap_or_else(|e| e.into_inner());
    let mut links = LinkMonitor::open().context("subscribing to link events (rtnetlink)")?;
    // An interface may have appeared between attaching the ports and subscribing.
    lock().on_link_events(&[Default::default()]);
    let mut last_age = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let events = links.wait(200).context("reading link events")?;
        if !events.is_empty() {
            lock().on_link_events(&events);
        }
        lock().log_events(Instant::now());
        if last_age.elapsed() >= Duration::from_secs(1) {
            last_age = Instant::now();
            let n = lock().switch().age();
            if n > 0 {
                tracing::debug!(entries = n, "aged out FDB entries");
            }
        }
    }
    tracing::info!("stopping");
    Ok(())
}

/// Stops the workers, logs the final counters and closes the ports (taps the switch created
/// disappear with them).
pub fn shutdown(ctl: Controller) {
    let fdb = ctl.switch().fdb();
    let c = &fdb.counters;
    tracing::info!(
        entries = fdb.len(),
        learned = c.learned.load(Ordering::Relaxed),
        moves = c.moves.load(Ordering::Relaxed),
        no_room = c.no_room.load(Ordering::Relaxed),
        limited = c.limited.load(Ordering::Relaxed),
        flaps = c.flaps.load(Ordering::Relaxed),
        damped = c.damped.load(Ordering::Relaxed),
        "fdb stats"
    );
    for (port, values) in ctl.shutdown() {
        tracing::info!(port = %port, "stats {values}");
    }
    tracing::info!("stopped");
}
