//! Running the switch: choose the configuration (state file or topology file), start the
//! controller and the REST API, follow link events, age the FDB, re-read the topology file on
//! SIGHUP, stop cleanly on SIGINT/SIGTERM.

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

use crate::exit::{is_io, Exit, Failure, OrExit};
use crate::notify::Notifier;
use crate::server;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
///
/// Text (the default) is one line per event with its fields as `key=value`; under journald
/// (`$JOURNAL_STREAM` names our stderr) each line starts with its syslog priority (`<3>` for
/// errors, `<4>` warnings, `<6>` info, `<7>` debug), which journald takes as the entry's
/// priority, and carries no timestamp (journald adds its own). JSON is one object per line:
/// `timestamp`, `level`, `target`, and the event's fields (`message` among them) at the top
/// level.
pub fn init_logging(format: crate::cli::LogFormat) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        crate::cli::LogFormat::Json => builder.json().flatten_event(true).init(),
        crate::cli::LogFormat::Text if stderr_is_journal() => builder
            .with_ansi(false)
            .event_format(Journald(tracing_subscriber::fmt::format().without_time()))
            .init(),
        crate::cli::LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// Whether stderr is journald's stream: `$JOURNAL_STREAM` is `DEVICE:INODE` of it.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(want) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    want.to_string_lossy() == format!("{}:{}", meta.dev(), meta.ino())
}

/// Text lines with their syslog priority in front (`<N>`), for journald.
struct Journald<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for Journald<F>
where
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            tracing::Level::DEBUG | tracing::Level::TRACE => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

/// `switchd check FILE...`: 0 if every file is valid, [`Exit::Config`] if one is not.
pub fn check(files: &[PathBuf]) -> Result<ExitCode, Failure> {
    let mut ok = true;
    for f in files {
        match Topology::from_path(f) {
            // The VLANs the file declares; VLAN 1 exists in every switch and is not counted
            // unless the file declares it.
            Ok(t) => {
                let lab = if t.hosts.is_empty() && t.expect.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", a lab of {} hosts and {} expectations",
                        t.hosts.len(),
                        t.expect.len()
                    )
                };
                println!(
                    "{}: ok ({} VLANs, {} ports{lab})",
                    f.display(),
                    t.vlans.len(),
                    t.ports.len()
                )
            }
            Err(e) => {
                ok = false;
                println!("{}: {e}", f.display());
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        Exit::Config.into()
    })
}

/// What `switchd` runs with.
pub struct RunOptions {
    /// The topology file: read at start (unless `initial` is given) and on SIGHUP.
    pub topology: Option<PathBuf>,
    /// The configuration to start from without a state file, already read (a lab's file, the
    /// demo's embedded one); `None`: read `topology`.
    pub initial: Option<Topology>,
    pub state: Option<PathBuf>,
    pub workers: Workers,
    pub listen: String,
    pub token_file: Option<PathBuf>,
}

/// The configuration to start with: the state file if it exists, else the topology file, else
/// an empty switch. A state file that exists but is empty, corrupt or unreadable is an error
/// ([`state::load`]): switchd does not start, and neither the file nor any port is touched.
fn initial_topology(o: &RunOptions) -> Result<Topology, Failure> {
    let state = match &o.state {
        Some(p) => p
            .try_exists()
            .with_context(|| format!("cannot check whether state file {} exists", p.display()))
            .or_exit(Exit::NoInput)?
            .then_some(p),
        None => None,
    };
    if let Some(state) = state {
        let t = state::load(state).or_exit(Exit::Config)?;
        tracing::info!(state = %state.display(), "configuration restored from the state file");
        if let Some(topo) = &o.topology {
            tracing::info!(topology = %topo.display(), "topology file not used: the state file wins");
        }
        return Ok(t);
    }
    if let Some(t) = &o.initial {
        let source = o
            .topology
            .as_deref()
            .map_or_else(|| "(built in)".to_string(), |p| p.display().to_string());
        tracing::info!(topology = %source, "configuration loaded from the topology file");
        return Ok(t.clone());
    }
    if let Some(path) = &o.topology {
        let t = read_topology(path)?;
        tracing::info!(topology = %path.display(), "configuration loaded from the topology file");
        return Ok(t);
    }
    tracing::info!("no topology or state file: starting with no ports");
    Ok(Topology::default())
}

/// The topology file at `path`: [`Exit::NoInput`] if it cannot be read, [`Exit::Config`] if
/// it is not a valid topology.
pub fn read_topology(path: &std::path::Path) -> Result<Topology, Failure> {
    Topology::from_path(path).map_err(|e| {
        let code = match e {
            control_api::TopologyError::Read { .. } => Exit::NoInput,
            _ => Exit::Config,
        };
        Failure::new(
            code,
            anyhow::Error::new(e).context(path.display().to_string()),
        )
    })
}

/// What runs beside the switch once it is up: a lab's hosts and checks.
pub trait Beside {
    /// The switch is ready and its API listens on `api`. `Ok(None)`: run until SIGINT or
    /// SIGTERM; `Ok(Some(code))`: stop now and exit with `code`. On an error the switch stops
    /// and `switchd` exits with it.
    fn ready(&mut self, api: &str) -> Result<Option<ExitCode>, Failure>;
}

/// `switchd [--topology FILE] [--state FILE] [--listen ADDR] ...`
pub fn run(o: RunOptions) -> Result<ExitCode, Failure> {
    run_with(o, None)
}

/// [`run`], with `beside` told when the switch is ready (`switchd lab`, `switchd demo`).
/// Everything else is the daemon's own path: the state file, the API, SIGHUP, the shutdown.
pub fn run_with(o: RunOptions, beside: Option<&mut dyn Beside>) -> Result<ExitCode, Failure> {
    let token = match &o.token_file {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read token file {}", p.display()))
                .or_exit(Exit::NoInput)?;
            let t = t.trim().to_string();
            if t.is_empty() {
                return Err(Failure::new(
                    Exit::Config,
                    anyhow::anyhow!("token file {} is empty", p.display()),
                ));
            }
            Some(t)
        }
        None => None,
    };
    let topo = initial_topology(&o)?;
    // A --listen that cannot be used as given is a usage error; one the host refuses (in use,
    // no such address) is not.
    let listener = server::bind(&o.listen, token.as_deref()).map_err(|e| {
        let code = if is_io(&e) {
            Exit::Unavailable
        } else {
            Exit::Usage
        };
        Failure::new(code, e)
    })?;
    let signals = install_signal_handlers().or_exit(Exit::OsError)?;
    let ctl = Controller::start(topo, o.workers, o.state.clone()).map_err(|e| {
        let code = match e {
            control_api::ControlError::Invalid(_) | control_api::ControlError::Conflict(_) => {
                Exit::Config
            }
            control_api::ControlError::Persist { .. } => Exit::IoError,
            _ => Exit::Unavailable,
        };
        Failure::new(code, e.into())
    })?;
    let ctl = Arc::new(Mutex::new(ctl));
    let api_addr = listener.describe();
    let api = match server::spawn(listener, ctl.clone(), token) {
        Ok(api) => api,
        Err(e) => {
            // Stopped as on SIGTERM, so that kept taps stay for the next start.
            if let Ok(ctl) = Arc::try_unwrap(ctl) {
                shutdown(ctl.into_inner().unwrap_or_else(|e| e.into_inner()));
            }
            return Err(Failure::new(Exit::OsError, e));
        }
    };
    log_ready(&ctl.lock().unwrap_or_else(|e| e.into_inner()), &api_addr);
    let notifier = Notifier::from_env();
    notifier.ready(&format!("{}; API on {api_addr}", status(&ctl)));
    let verdict = match beside {
        Some(b) => b.ready(&api_addr),
        None => Ok(None),
    };
    let waited = match verdict {
        Ok(None) => wait_for_stop(&ctl, &signals, o.topology.as_deref(), &notifier),
        _ => Ok(()),
    };
    notifier.stopping();
    api.stop();
    let ctl = Arc::try_unwrap(ctl)
        .map_err(|_| anyhow::anyhow!("API still holds the controller"))?
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    shutdown(ctl);
    let code = verdict?;
    waited.or_exit(Exit::OsError)?;
    Ok(code.unwrap_or(ExitCode::SUCCESS))
}

/// The one-line status systemd shows (`systemctl status`).
fn status(ctl: &Mutex<Controller>) -> String {
    let ctl = ctl.lock().unwrap_or_else(|e| e.into_inner());
    let t = ctl.running();
    format!(
        "switching: {} ports, {} VLANs",
        t.ports.len(),
        t.vlan_ids().len()
    )
}

fn log_ready(ctl: &Controller, api: &str) {
    let t = ctl.running();
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

/// The signals `switchd` handles, as flags its main loop looks at.
#[derive(Default)]
pub struct Signals {
    /// SIGINT or SIGTERM: stop.
    pub stop: Arc<AtomicBool>,
    /// SIGHUP: re-read the topology file.
    pub reload: Arc<AtomicBool>,
}

/// Makes SIGINT and SIGTERM set the stop flag, and SIGHUP the reload flag, instead of killing
/// the process. Installed before any port exists, so that a signal never leaves a
/// half-started switch behind.
fn install_signal_handlers() -> Result<Signals> {
    let s = Signals::default();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, s.stop.clone()).context("installing signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, s.reload.clone())
        .context("installing signal handlers")?;
    Ok(s)
}

/// SIGHUP: makes the topology file the running configuration, as `PUT /api/v1/topology`
/// would (the changes are logged, and written to the state file), or logs why nothing
/// changed. Never stops the switch.
fn reload(ctl: &Mutex<Controller>, topology: Option<&std::path::Path>) {
    let Some(path) = topology else {
        tracing::warn!("SIGHUP: no --topology file to re-read; nothing changed");
        return;
    };
    let desired = match read_topology(path) {
        Ok(t) => t,
        Err(f) => {
            tracing::error!(topology = %path.display(), error = %format!("{:#}", f.error), "SIGHUP: topology file not applied; nothing changed");
            return;
        }
    };
    let mut ctl = ctl.lock().unwrap_or_else(|e| e.into_inner());
    match ctl.apply(desired, false) {
        Ok(changes) if changes.is_empty() => {
            tracing::info!(topology = %path.display(), "SIGHUP: topology file re-read; it is what runs, nothing changed")
        }
        Ok(changes) => {
            tracing::info!(topology = %path.display(), changes = changes.len(), "SIGHUP: topology file applied")
        }
        Err(e) => {
            tracing::error!(topology = %path.display(), error = %control_api::controller::ErrorChain(&e), "SIGHUP: topology file not applied; nothing changed")
        }
    }
}

/// Blocks until the stop flag is set (by SIGINT or SIGTERM). Meanwhile follows link events
/// (netdev ports re-attach as interfaces come and go), reads the workers' events, the links
/// and the drop counters five times a second (logged, and published to the event streams:
/// `Controller::observe`), ages the FDB once a second, and re-reads `topology` on SIGHUP.
fn wait_for_stop(
    ctl: &Mutex<Controller>,
    signals: &Signals,
    topology: Option<&std::path::Path>,
    notifier: &Notifier,
) -> Result<()> {
    let lock = || ctl.lock().unwrap_or_else(|e| e.into_inner());
    let mut links = LinkMonitor::open().context("subscribing to link events (rtnetlink)")?;
    // An interface may have appeared between attaching the ports and subscribing.
    lock().on_link_events(&[Default::default()]);
    let mut last_age = Instant::now();
    while !signals.stop.load(Ordering::Relaxed) {
        if signals.reload.swap(false, Ordering::Relaxed) {
            notifier.reloading();
            reload(ctl, topology);
            notifier.notify(&format!("READY=1\nSTATUS={}", status(ctl)));
        }
        let events = links.wait(200).context("reading link events")?;
        if !events.is_empty() {
            lock().on_link_events(&events);
        }
        lock().observe(Instant::now());
        if last_age.elapsed() >= Duration::from_secs(1) {
            last_age = Instant::now();
            lock().retry_tunnels();
            let n = lock().age();
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
