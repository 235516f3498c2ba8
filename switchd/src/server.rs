//! The REST API's listener thread: a single-threaded tokio runtime, so that the control plane
//! never competes with the workers for more than one core (the controller's work runs on that
//! runtime's small blocking pool, see `control_api::api`).
//!
//! Connections are served by hyper's HTTP/1 server with limits that keep a slow or hostile
//! client from holding memory: at most [`MAX_CONNECTIONS`] at once, request heads of at most
//! [`MAX_HEADER_BYTES`], and [`HEADER_READ_TIMEOUT`] to send one. When all connections are
//! taken, a new one takes the place of the connection that has waited longest for a request
//! (at least [`EVICT_AFTER_IDLE`]); when none qualifies, the new one is closed at once.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use control_api::api::{router, AppState, REQUEST_TIMEOUT};
use control_api::Controller;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Notify};
use tokio::task::AbortHandle;

/// Most connections served at once (over TCP or the unix socket).
pub const MAX_CONNECTIONS: usize = 128;
/// Largest request head (request line and headers) read; a larger one is answered 431 and
/// the connection is closed.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Time a connection has to send a complete request head, from when it is accepted or its last
/// answer was sent; then it is closed (slowloris, idle keep-alive connections).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that has waited this long for a request, with none in progress, may be closed
/// to make room for a new one when all [`MAX_CONNECTIONS`] are taken.
pub const EVICT_AFTER_IDLE: Duration = Duration::from_secs(1);
/// How long [`Server::stop`] lets running requests finish before it closes their connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(REQUEST_TIMEOUT.as_secs() + 1);
/// After this many connections at once, the freed memory is handed back to the system once
/// they are all gone (see [`trim_heap`]).
const TRIM_AFTER_PEAK: usize = 32;

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
        // I/O errors (not usage ones): the host, not the command line, is in the way.
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            )
            .into());
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by another process", path.display()),
            )
            .into());
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
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
    socket: Option<PathBuf>,
    /// Closed first when stopping: an event stream never ends on its own.
    events: control_api::events::EventHub,
}

/// Serves the API on `listener` in its own thread.
pub fn spawn(
    listener: Listener,
    ctl: Arc<Mutex<Controller>>,
    token: Option<String>,
) -> Result<Server> {
    let (tx, rx) = watch::channel(false);
    let socket = match &listener {
        Listener::Unix(_, p) => Some(p.clone()),
        Listener::Tcp(_) => None,
    };
    let state = AppState::new(ctl, token.map(Arc::from));
    let events = state.events.clone();
    let app = router(state);
    let thread = std::thread::Builder::new()
        .name("api".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                // Controller work runs here (one request at a time holds the controller's
                // lock), so a few threads are plenty.
                .max_blocking_threads(8)
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the API runtime");
                    return;
                }
            };
            rt.block_on(async move {
                let r = match listener {
                    Listener::Tcp(l) => match tokio::net::TcpListener::from_std(l) {
                        Ok(l) => {
                            serve(l, app, rx).await;
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                    Listener::Unix(l, _) => match tokio::net::UnixListener::from_std(l) {
                        Ok(l) => {
                            serve(l, app, rx).await;
                            Ok(())
                        }
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
        events,
    })
}

impl Server {
    /// Ends the event streams, stops accepting connections, lets running requests finish (for
    /// at most [`SHUTDOWN_GRACE`]), and joins the thread.
    pub fn stop(mut self) {
        self.events.close();
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(p) = self.socket.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A listener the server accepts connections from.
trait Accept {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn next_conn(&self) -> impl Future<Output = std::io::Result<Self::Io>> + Send;
}

impl Accept for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn next_conn(&self) -> std::io::Result<Self::Io> {
        self.accept().await.map(|(s, _)| s)
    }
}

impl Accept for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    async fn next_conn(&self) -> std::io::Result<Self::Io> {
        self.accept().await.map(|(s, _)| s)
    }
}

/// One connection's state, shared by its task and the accept loop.
struct Conn {
    /// Requests being answered (hyper answers one at a time per connection).
    busy: AtomicUsize,
    /// Since when it has waited for a request: when it was accepted, or when its last
    /// request was answered.
    idle_since: Mutex<Instant>,
}

/// Marks a connection busy while a request on it is being answered: from the request until
/// the answer's body is sent or dropped (a streamed answer, such as `/api/v1/events`, keeps
/// its connection busy, so it is never closed as idle).
struct Busy(Arc<Conn>);

impl Busy {
    fn new(conn: &Arc<Conn>) -> Busy {
        conn.busy.fetch_add(1, Ordering::Relaxed);
        Busy(conn.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An answer's body that keeps its connection [`Busy`] until it is sent (or dropped).
struct BusyBody {
    body: axum::body::Body,
    _busy: Busy,
}

impl hyper::body::Body for BusyBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The open connections.
#[derive(Default)]
struct Table {
    conns: HashMap<u64, (Arc<Conn>, Option<AbortHandle>)>,
    next_id: u64,
    /// Most connections at once since the table was last empty.
    peak: usize,
}

#[derive(Default)]
struct Shared {
    table: Mutex<Table>,
    /// Notified when the last connection is gone.
    empty: Notify,
}

impl Shared {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes room for one more connection if all are taken: closes the connection that has
    /// waited longest for a request, if it has waited at least [`EVICT_AFTER_IDLE`] with no
    /// request in progress. False when there is no room.
    fn make_room(&self) -> bool {
        let mut t = self.table();
        if t.conns.len() < MAX_CONNECTIONS {
            return true;
        }
        let Some((&id, _)) = idle(&t, Instant::now()).min_by_key(|(_, since)| *since) else {
            return false;
        };
        if let Some((_, Some(abort))) = t.conns.remove(&id) {
            abort.abort();
        }
        tracing::debug!("all API connections taken: closed the one idle the longest");
        true
    }

    /// Closes every connection that has waited at least [`EVICT_AFTER_IDLE`] for a request, with
    /// none in progress (at shutdown: a connection that has sent part of a request head would
    /// otherwise be waited for until its header read timeout).
    fn close_idle(&self) {
        let mut t = self.table();
        let ids: Vec<u64> = idle(&t, Instant::now()).map(|(&id, _)| id).collect();
        for id in ids {
            if let Some((_, Some(abort))) = t.conns.remove(&id) {
                abort.abort();
            }
        }
    }

    fn insert(&self, conn: Arc<Conn>) -> u64 {
        let mut t = self.table();
        let id = t.next_id;
        t.next_id += 1;
        t.conns.insert(id, (conn, None));
        t.peak = t.peak.max(t.conns.len());
        id
    }

    fn set_abort(&self, id: u64, abort: AbortHandle) {
        if let Some(entry) = self.table().conns.get_mut(&id) {
            entry.1 = Some(abort);
        }
    }

    /// Forgets a connection that has ended (or was aborted).
    fn remove(&self, id: u64) {
        let mut t = self.table();
        t.conns.remove(&id);
        if t.conns.is_empty() {
            let peak = std::mem::take(&mut t.peak);
            drop(t);
            if peak >= TRIM_AFTER_PEAK {
                trim_heap();
            }
            self.empty.notify_waiters();
        }
    }
}

/// The connections that could be closed: no request in progress, waiting for one for at least
/// [`EVICT_AFTER_IDLE`], and started (with an abort handle); with when they started waiting.
fn idle(t: &Table, now: Instant) -> impl Iterator<Item = (&u64, Instant)> {
    t.conns
        .iter()
        .filter(|(_, (c, abort))| abort.is_some() && c.busy.load(Ordering::Relaxed) == 0)
        .map(|(id, (c, _))| (id, *c.idle_since.lock().unwrap_or_else(|e| e.into_inner())))
        .filter(move |(_, since)| now.duration_since(*since) >= EVICT_AFTER_IDLE)
}

/// Removes its connection from the table when the connection's task ends or is aborted.
struct Leave(Arc<Shared>, u64);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.remove(self.1);
    }
}

/// Accepts and serves connections until `stop` says so (or its sender is gone), then lets the
/// running requests finish for at most [`SHUTDOWN_GRACE`].
async fn serve<L: Accept>(listener: L, app: axum::Router, mut stop: watch::Receiver<bool>) {
    let shared = Arc::new(Shared::default());
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    let service = TowerToHyperService::new(app);
    loop {
        let io = tokio::select! {
            r = listener.next_conn() => match r {
                Ok(io) => io,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        if !shared.make_room() {
            tracing::debug!(
                max = MAX_CONNECTIONS,
                "all API connections are busy: new connection closed"
            );
            continue;
        }
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        });
        let id = shared.insert(conn.clone());
        let leave = Leave(shared.clone(), id);
        let service = service.clone();
        let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let busy = Busy::new(&conn);
            let answer = hyper::service::Service::call(&service, req);
            async move {
                let r = answer.await?;
                Ok::<_, std::convert::Infallible>(
                    r.map(|body| axum::body::Body::new(BusyBody { body, _busy: busy })),
                )
            }
        });
        let connection = http.serve_connection(TokioIo::new(io), svc);
        let mut stop = stop.clone();
        let task = tokio::spawn(async move {
            let _leave = leave;
            tokio::pin!(connection);
            let r = tokio::select! {
                r = connection.as_mut() => r,
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "API connection ended with an error");
            }
        });
        shared.set_abort(id, task.abort_handle());
    }
    drop(listener);
    // The connections saw `stop` too: hyper closes the idle ones, running requests finish.
    // Those that have sent part of a request head and then nothing are closed here.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    loop {
        let empty = shared.empty.notified();
        shared.close_idle();
        if shared.table().conns.is_empty() {
            break;
        }
        let wake = deadline.min(tokio::time::Instant::now() + EVICT_AFTER_IDLE);
        if tokio::time::timeout_at(wake, empty).await.is_ok() {
            continue;
        }
        if tokio::time::Instant::now() >= deadline {
            let t = shared.table();
            tracing::warn!(
                connections = t.conns.len(),
                "API requests still running at shutdown: closing their connections"
            );
            for (_, abort) in t.conns.values() {
                if let Some(a) = abort {
                    a.abort();
                }
            }
            break;
        }
    }
}

/// An accept error: one connection's (it is gone already) or the listener's, such as too many
/// open files, which would repeat at once; then wait a little.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept API connections");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Hands the memory freed by a burst of connections back to the system. glibc keeps freed
/// memory in its arenas, so after 1000 slow connections the process would stay at their peak
/// size; `malloc_trim` returns the free pages of every arena.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only releases memory that is free; it is safe
    // to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
