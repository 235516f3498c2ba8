//! The REST API's listener thread: a single-threaded tokio runtime, so that the control plane
//! never competes with the workers for more than one core.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{bail, Context, Result};
use control_api::api::{router, AppState};
use control_api::Controller;
use tokio::sync::oneshot;

/// A bound listener, before the server runs.
pub enum Listener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener, PathBuf),
}

/// Binds `addr` (`HOST:PORT` or `unix:/PATH`). A non-loopback TCP address needs a token.
pub fn bind(addr: &str, token: Option<&str>) -> Result<Listener> {
    if let Some(path) = addr.strip_prefix("unix:") {
        return bind_unix(Path::new(path));
    }
    let sa: SocketAddr = addr
        .parse()
        .with_context(|| format!("--listen {addr:?}: expected HOST:PORT or unix:/PATH"))?;
    if !sa.ip().is_loopback() && token.is_none() {
        bail!("--listen {addr} is not a loopback address: give --token-file so requests need a bearer token");
    }
    let l = std::net::TcpListener::bind(sa).with_context(|| format!("cannot listen on {sa}"))?;
    l.set_nonblocking(true)?;
    Ok(Listener::Tcp(l))
}

/// Binds a unix socket that is never reachable by others: it is created with mode 0600 inside
/// a fresh 0700 directory and then renamed into place. A socket left by a dead switchd is
/// replaced; one that a live process still serves is not.
fn bind_unix(path: &Path) -> Result<Listener> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!("{} exists and is not a socket", path.display());
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("{} is in use by another process", path.display());
        }
        std::fs::remove_file(path)?;
    }
    let dir = path.with_file_name(format!(
        ".{}.{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("api"),
        std::process::id()
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join("sock");
    let bound = std::os::unix::net::UnixListener::bind(&tmp)
        .and_then(|l| {
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(&tmp, path)?;
            Ok(l)
        })
        .with_context(|| format!("cannot listen on {}", path.display()));
    let _ = std::fs::remove_dir(&dir);
    let l = bound?;
    l.set_nonblocking(true)?;
    Ok(Listener::Unix(l, path.to_path_buf()))
}

impl Listener {
    /// Where clients connect, for the log.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string()),
            Listener::Unix(_, p) => format!("unix:{}", p.display()),
        }
    }
}

/// The running server; [`Server::stop`] shuts it down gracefully.
pub struct Server {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    socket: Option<PathBuf>,
}

/// Serves the API on `listener` in its own thread.
pub fn spawn(
    listener: Listener,
    ctl: Arc<Mutex<Controller>>,
    token: Option<String>,
) -> Result<Server> {
    let (tx, rx) = oneshot::channel::<()>();
    let socket = match &listener {
        Listener::Unix(_, p) => Some(p.clone()),
        Listener::Tcp(_) => None,
    };
    let state = AppState {
        ctl,
        token: token.map(Arc::from),
    };
    let app = router(state);
    let thread = std::thread::Builder::new()
        .name("api".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the API runtime");
                    return;
                }
            };
            rt.block_on(async move {
                let shutdown = async {
                    let _ = rx.await;
                };
                let r = match listener {
                    Listener::Tcp(l) => match tokio::net::TcpListener::from_std(l) {
                        Ok(l) => axum::serve(l, app).with_graceful_shutdown(shutdown).await,
                        Err(e) => Err(e),
                    },
                    Listener::Unix(l, _) => match tokio::net::UnixListener::from_std(l) {
                        Ok(l) => axum::serve(l, app).with_graceful_shutdown(shutdown).await,
                        Err(e) => Err(e),
                    },
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "API server failed");
                }
            });
        })
        .context("cannot start the API thread")?;
    Ok(Server {
        stop: Some(tx),
        thread: Some(thread),
        socket,
    })
}

impl Server {
    /// Stops accepting requests, lets running ones finish, and joins the thread.
    pub fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(p) = self.socket.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}
