//! Running the switch from a topology: attach ports, start workers, age the FDB, stop cleanly.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use control_api::{PortKind, Topology};
use dataplane::{Port, Switch, SwitchOptions};
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
    let switch = start(&topo, workers)?;
    wait_for_stop(&switch, &stop);
    shutdown(switch);
    Ok(ExitCode::SUCCESS)
}

/// Attaches every port of `topo` and starts the workers.
pub fn start(topo: &Topology, workers: u16) -> Result<Switch> {
    let snapshot = control_api::build_snapshot(topo, |p| -> Result<Arc<Port>> {
        let mode = control_api::port_mode(p).describe();
        let port = match p.kind {
            PortKind::Tap => {
                let port = Port::tap(&p.name).with_context(|| format!("port {}", p.name))?;
                let how = match port.io() {
                    dataplane::port::PortIo::Tap(t) if !t.created() => "opened existing tap",
                    _ => "created tap",
                };
                tracing::info!(port = %p.name, kind = "tap", %mode, "{how}");
                port
            }
            PortKind::Netdev => {
                tracing::warn!(
                    port = %p.name, kind = "netdev", %mode,
                    "netdev ports are not supported yet; port is configured but not attached"
                );
                Port::detached(&p.name, "netdev ports are not supported yet")
            }
        };
        Ok(Arc::new(port))
    })?;
    let opts = SwitchOptions {
        workers: workers as usize,
        fdb_max_entries: topo.fdb_max_entries,
    };
    let switch = Switch::start(opts, snapshot).context("starting the switch")?;
    tracing::info!(
        ports = topo.ports.len(),
        workers = switch.workers(),
        fdb_max_entries = topo.fdb_max_entries,
        mac_aging_secs = topo.mac_aging_secs,
        "switch ready"
    );
    Ok(switch)
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

/// Blocks until `stop` is set (by SIGINT or SIGTERM), aging the FDB once a second meanwhile.
pub fn wait_for_stop(switch: &Switch, stop: &AtomicBool) {
    let mut last_age = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        if last_age.elapsed() >= Duration::from_secs(1) {
            last_age = Instant::now();
            let n = switch.age();
            if n > 0 {
                tracing::debug!(entries = n, "aged out FDB entries");
            }
        }
    }
    tracing::info!("stopping");
}

/// Stops the workers, logs the final counters and closes the ports (taps the switch created
/// disappear with them).
pub fn shutdown(switch: Switch) {
    let snap = switch.snapshot();
    let fdb = switch.fdb();
    let c = &fdb.counters;
    tracing::info!(
        entries = fdb.len(),
        learned = c.learned.load(Ordering::Relaxed),
        moves = c.moves.load(Ordering::Relaxed),
        no_room = c.no_room.load(Ordering::Relaxed),
        "fdb stats"
    );
    switch.stop();
    for entry in snap.ports().iter().flatten() {
        if let Some(p) = &entry.port {
            tracing::info!(port = %entry.name, "stats {}", p.counters.values());
        }
    }
    drop(snap);
    tracing::info!("stopped");
}
