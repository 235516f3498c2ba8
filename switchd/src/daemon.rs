//! Running the switch from a topology: start the controller, follow link events, age the FDB,
//! stop cleanly on SIGINT/SIGTERM.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use control_api::{Controller, Topology};
use dataplane::port::netlink::LinkMonitor;
use tracing_subscriber::EnvFilter;

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

/// `switchd --topology FILE`
pub fn run(path: &Path, workers: u16) -> Result<ExitCode> {
    let topo = Topology::from_path(path).with_context(|| format!("{}", path.display()))?;
    tracing::info!(topology = %path.display(), "loaded topology");
    let stop = install_stop_handlers()?;
    let ctl = start(topo, workers)?;
    wait_for_stop(&ctl, &stop)?;
    shutdown(ctl);
    Ok(ExitCode::SUCCESS)
}

/// Attaches every port of `topo` and starts the workers.
pub fn start(topo: Topology, workers: u16) -> Result<Controller> {
    let (ports, fdb_max, aging) = (topo.ports.len(), topo.fdb_max_entries, topo.mac_aging_secs);
    let ctl = Controller::start(topo, workers as usize)?;
    tracing::info!(
        ports,
        workers = ctl.switch().workers(),
        fdb_max_entries = fdb_max,
        mac_aging_secs = aging,
        "switch ready"
    );
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
pub fn wait_for_stop(ctl: &Controller, stop: &AtomicBool) -> Result<()> {
    let mut links = LinkMonitor::open().context("subscribing to link events (rtnetlink)")?;
    // An interface may have appeared between attaching the ports and subscribing.
    ctl.on_link_events(&[Default::default()]);
    let mut last_age = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let events = links.wait(200).context("reading link events")?;
        if !events.is_empty() {
            ctl.on_link_events(&events);
        }
        if last_age.elapsed() >= Duration::from_secs(1) {
            last_age = Instant::now();
            let n = ctl.switch().age();
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
        "fdb stats"
    );
    for (port, values) in ctl.shutdown() {
        tracing::info!(port = %port, "stats {values}");
    }
    tracing::info!("stopped");
}
