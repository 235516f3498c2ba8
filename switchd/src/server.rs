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
        let path = Path::new(path);
        if path.exists() {
            // A socket left by an earlier run; refuse to remove anything else.
            let meta = std::fs::symlink_metadata(path)?;
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                bail!("{} exists and is not a socket", path.display());
            }
            std::fs::remove_file(path)?;
        }
        let l = std::os::unix::net::UnixListener::bind(path)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        l.set_nonblocking(true)?;
        return Ok(Listener::Unix(l, path.to_path_buf()));
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
}

/// Serves the API on `listener` in its own thread.
pub fn spawn(
    listener: Listener,
    ctl: Arc<Mutex<Controller>>,
    token: Option<String>,
) -> Result<Server> {
    let (tx, rx) = oneshot::channel::<()>();
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
    }
}
