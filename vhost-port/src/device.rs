//! The device: its configuration, its control thread (socket, reconnects, protocol), and the
//! status the control plane reads.

use std::fmt;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use vhost::vhost_user::BackendReqHandler;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::control::{error_chain, DeviceBackend, Settings};
use crate::datapath::DataPath;
use crate::error::DeviceError;
use crate::shared::{AtomicCounters, Shared, StatusInner};

/// Who listens on the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketMode {
    /// We create the socket (removing a stale one) and accept one frontend at a time; QEMU
    /// connects with `-chardev socket,path=PATH,reconnect=1`, DPDK with `server=0`.
    Server,
    /// The frontend listens (QEMU `server=on,wait=off`, DPDK `server=1`); we connect, and retry
    /// every [`DeviceConfig::reconnect_interval`] until it works, again after a disconnect.
    Client,
}

/// How to run one vhost-user device.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Name for logs (the switch's port name).
    pub name: String,
    /// The unix socket path.
    pub socket: PathBuf,
    /// Server or client.
    pub mode: SocketMode,
    /// MAC shown in the config space (`VIRTIO_NET_F_MAC` is offered only with one).
    pub mac: Option<[u8; 6]>,
    /// MTU shown in the config space (`VIRTIO_NET_F_MTU` is offered only with one).
    pub mtu: Option<u16>,
    /// Client mode: pause between connection attempts.
    pub reconnect_interval: Duration,
}

impl DeviceConfig {
    /// A device without MAC or MTU in its config space, reconnecting every second.
    pub fn new(name: impl Into<String>, socket: impl Into<PathBuf>, mode: SocketMode) -> Self {
        DeviceConfig {
            name: name.into(),
            socket: socket.into(),
            mode,
            mac: None,
            mtu: None,
            reconnect_interval: Duration::from_secs(1),
        }
    }
}

/// Which of the two queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueId {
    /// Queue 0, the guest's receive queue: frames the switch sends ([`crate::SendBatch`]).
    GuestRx = 0,
    /// Queue 1, the guest's transmit queue: frames the switch receives ([`crate::RecvBatch`]).
    GuestTx = 1,
}

/// The link as the control plane shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Both rings started and enabled: frames flow.
    Up,
    /// A frontend is connected but its rings are not (all) running yet, or were stopped.
    Connected,
    /// No frontend, with the reason.
    Down(DownReason),
}

/// Why a device has no frontend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// Waiting for a frontend (server) or for the frontend's socket (client), since start.
    NotConnected(String),
    /// The frontend closed the socket.
    SocketClosed,
    /// The frontend sent something this device refuses; it was disconnected.
    ProtocolError(String),
    /// The frontend's rings were malformed; it was disconnected.
    RingFault(String),
    /// The device was shut down.
    Stopped,
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkState::Up => f.write_str("up"),
            LinkState::Connected => f.write_str("connected, rings not running"),
            LinkState::Down(r) => write!(f, "down: {r}"),
        }
    }
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownReason::NotConnected(why) => write!(f, "not connected ({why})"),
            DownReason::SocketClosed => f.write_str("socket closed"),
            DownReason::ProtocolError(e) => write!(f, "protocol error: {e}"),
            DownReason::RingFault(e) => write!(f, "ring fault: {e}"),
            DownReason::Stopped => f.write_str("stopped"),
        }
    }
}

/// Counters of one device since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames written to the guest.
    pub to_guest_frames: u64,
    /// Frame bytes (without virtio-net header) written to the guest.
    pub to_guest_bytes: u64,
    /// Frames not written because the guest had no receive buffers.
    pub to_guest_ring_full: u64,
    /// Frames not written because they did not fit a buffer (no `MRG_RXBUF`).
    pub to_guest_too_large: u64,
    /// Send-batch claims that failed because another worker held the ring.
    pub to_guest_busy: u64,
    /// Frames read from the guest.
    pub from_guest_frames: u64,
    /// Frame bytes read from the guest.
    pub from_guest_bytes: u64,
    /// Guest frames dropped because they were longer than the caller's buffer.
    pub from_guest_oversize: u64,
    /// Guest frames dropped because they were shorter than the virtio-net header.
    pub from_guest_runt: u64,
    /// Call eventfd writes (interrupts to the guest).
    pub guest_interrupts: u64,
    /// Frontend connections accepted or made.
    pub connections: u64,
}

/// What the control plane can read about a device.
#[derive(Debug, Clone)]
pub struct DeviceStatus {
    /// Up, connected, or down with a reason.
    pub link: LinkState,
    /// Whether a frontend is connected.
    pub connected: bool,
    /// virtio features the frontend acknowledged (0 when none is connected).
    pub features: u64,
    /// vhost-user protocol features acknowledged.
    pub protocol_features: u64,
    /// The guest's MAC: the configured one, or one the driver wrote to the config space.
    pub mac: Option<[u8; 6]>,
    /// Counters.
    pub counters: Counters,
}

/// Called from the device's control thread when a queue's kick eventfd (the fd a worker waits
/// on for guest kicks) appears or goes away: at `SET_VRING_KICK`, ring stop, reconnect and
/// disconnect. `unregister` is always called before the fd is closed, and an fd is registered
/// before any worker can see the ring. Register it with `EPOLLIN | EPOLLET` (or call
/// [`DataPath::clear_kick`] after each wakeup). Implementations must not block for long and
/// must not call back into the device.
pub trait KickHook: Send + Sync {
    /// `fd` is now the kick eventfd of `queue`.
    fn register(&self, queue: QueueId, fd: RawFd);
    /// `fd` is no longer the kick eventfd of `queue`; remove it from epoll now.
    fn unregister(&self, queue: QueueId, fd: RawFd);
    /// The link changed (default: nothing).
    fn link_changed(&self, _link: &LinkState) {}
}

/// A [`KickHook`] that does nothing, for owners that poll.
pub struct NoHook;

impl KickHook for NoHook {
    fn register(&self, _queue: QueueId, _fd: RawFd) {}
    fn unregister(&self, _queue: QueueId, _fd: RawFd) {}
}

/// One vhost-user virtio-net device with its control thread. Dropping it stops the thread,
/// disconnects the frontend and (server mode) removes the socket.
pub struct VhostUserDevice {
    shared: Arc<Shared>,
    stop: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
    config: DeviceConfig,
}

impl VhostUserDevice {
    /// Starts the device: binds the socket now in server mode (so errors are reported here),
    /// then runs the protocol on its own control thread.
    pub fn start(config: DeviceConfig, hook: Arc<dyn KickHook>) -> Result<Self, DeviceError> {
        let listener = match config.mode {
            SocketMode::Server => Some(bind(&config.socket)?),
            SocketMode::Client => None,
        };
        let why = match config.mode {
            SocketMode::Server => "listening",
            SocketMode::Client => "connecting",
        };
        let shared = Arc::new(Shared {
            name: config.name.clone(),
            snap: ArcSwapOption::empty(),
            fault: Mutex::new(None),
            fault_evt: EventFd::new(EFD_NONBLOCK).map_err(DeviceError::EventFd)?,
            faulted: AtomicBool::new(false),
            status: Mutex::new(StatusInner {
                link: LinkState::Down(DownReason::NotConnected(why.into())),
                connected: false,
                features: 0,
                protocol_features: 0,
                mac: config.mac,
            }),
            counters: AtomicCounters::default(),
        });
        let stop = Arc::new(EventFd::new(EFD_NONBLOCK).map_err(DeviceError::EventFd)?);
        let ctl = Control {
            shared: Arc::clone(&shared),
            settings: Arc::new(Settings {
                mac: config.mac,
                mtu: config.mtu,
            }),
            hook,
            stop: Arc::clone(&stop),
            listener,
            config: config.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("vhost-{}", config.name))
            .spawn(move || ctl.run())
            .map_err(DeviceError::Spawn)?;
        Ok(VhostUserDevice {
            shared,
            stop,
            thread: Some(thread),
            config,
        })
    }

    /// The handle workers use for batches.
    pub fn data_path(&self) -> DataPath {
        DataPath {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Link, negotiated features, MAC and counters.
    pub fn status(&self) -> DeviceStatus {
        let st = self
            .shared
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        DeviceStatus {
            link: st.link,
            connected: st.connected,
            features: st.features,
            protocol_features: st.protocol_features,
            mac: st.mac,
            counters: self.shared.counters.read(),
        }
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &DeviceConfig {
        &self.config
    }
}

impl Drop for VhostUserDevice {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if self.config.mode == SocketMode::Server {
            let _ = std::fs::remove_file(&self.config.socket);
        }
    }
}

fn bind(path: &PathBuf) -> Result<UnixListener, DeviceError> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(DeviceError::PathNotSocket(path.clone()));
        }
        std::fs::remove_file(path).map_err(|source| DeviceError::RemoveStale {
            path: path.clone(),
            source,
        })?;
    }
    UnixListener::bind(path).map_err(|source| DeviceError::Bind {
        path: path.clone(),
        source,
    })
}

struct Control {
    shared: Arc<Shared>,
    settings: Arc<Settings>,
    hook: Arc<dyn crate::KickHook>,
    stop: Arc<EventFd>,
    listener: Option<UnixListener>,
    config: DeviceConfig,
}

/// What woke the control thread.
struct Ready {
    conn: bool,
    fault: bool,
    stop: bool,
    listener: bool,
}

/// Waits for any of the fds (no timeout: `None`).
fn wait(
    conn: Option<RawFd>,
    fault: Option<RawFd>,
    stop: RawFd,
    listener: Option<RawFd>,
    timeout: Option<Duration>,
) -> Ready {
    let fds = [conn, fault, Some(stop), listener];
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 4];
    for (p, fd) in pfds.iter_mut().zip(fds) {
        if let Some(fd) = fd {
            p.fd = fd;
            p.events = libc::POLLIN;
        }
    }
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
    // SAFETY: `pfds` is a valid array of 4 pollfd structs; fds of -1 are ignored by poll.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    let hit = |i: usize| n > 0 && pfds[i].revents != 0;
    Ready {
        conn: hit(0),
        fault: hit(1),
        stop: hit(2),
        listener: hit(3),
    }
}

impl Control {
    fn set_status(&self, link: crate::LinkState, connected: bool) {
        let mut st = self.shared.status.lock().unwrap_or_else(|p| p.into_inner());
        st.link = link.clone();
        st.connected = connected;
        if !connected {
            st.features = 0;
            st.protocol_features = 0;
            st.mac = self.settings.mac;
        }
        drop(st);
        self.hook.link_changed(&link);
    }

    fn run(self) {
        let stop = self.stop.as_raw_fd();
        loop {
            let stream = match &self.listener {
                Some(l) => {
                    let r = wait(None, None, stop, Some(l.as_raw_fd()), None);
                    if r.stop {
                        return;
                    }
                    match l.accept() {
                        Ok((s, _)) => s,
                        Err(e) => {
                            tracing::warn!(device = %self.config.name, error = %e, "vhost-user accept failed");
                            continue;
                        }
                    }
                }
                None => match UnixStream::connect(&self.config.socket) {
                    Ok(s) => s,
                    Err(e) => {
                        self.set_status(
                            LinkState::Down(DownReason::NotConnected(format!("connecting: {e}"))),
                            false,
                        );
                        let r = wait(None, None, stop, None, Some(self.config.reconnect_interval));
                        if r.stop {
                            return;
                        }
                        continue;
                    }
                },
            };
            self.shared
                .counters
                .connections
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(device = %self.config.name, socket = %self.config.socket.display(), "vhost-user frontend connected");
            let reason = self.serve(stream);
            match &reason {
                DownReason::SocketClosed | DownReason::Stopped => {
                    tracing::info!(device = %self.config.name, reason = %reason, "vhost-user frontend gone")
                }
                _ => {
                    tracing::error!(device = %self.config.name, reason = %reason, "vhost-user frontend disconnected")
                }
            }
            let stopped = reason == DownReason::Stopped;
            self.set_status(LinkState::Down(reason), false);
            if stopped {
                return;
            }
            if self.listener.is_none() {
                let r = wait(None, None, stop, None, Some(self.config.reconnect_interval));
                if r.stop {
                    return;
                }
            }
        }
    }

    fn serve(&self, stream: UnixStream) -> DownReason {
        if let Err(e) = stream.set_nonblocking(false) {
            return DownReason::ProtocolError(format!("socket setup: {e}"));
        }
        // A new connection starts clean: no fault from a previous one.
        self.shared.faulted.store(false, Ordering::Release);
        let _ = self.shared.fault_evt.read();
        if let Ok(mut f) = self.shared.fault.lock() {
            *f = None;
        }
        self.set_status(LinkState::Connected, true);
        let backend = Arc::new(Mutex::new(DeviceBackend::new(
            Arc::clone(&self.shared),
            Arc::clone(&self.settings),
            Arc::clone(&self.hook),
        )));
        let mut handler = BackendReqHandler::from_stream(stream, Arc::clone(&backend));
        let reason = loop {
            let r = wait(
                Some(handler.as_raw_fd()),
                Some(self.shared.fault_evt.as_raw_fd()),
                self.stop.as_raw_fd(),
                self.listener.as_ref().map(|l| l.as_raw_fd()),
                None,
            );
            if r.stop {
                break DownReason::Stopped;
            }
            if r.fault {
                let fault = self.shared.fault.lock().ok().and_then(|mut f| f.take());
                if let Some((queue, e)) = fault {
                    break DownReason::RingFault(format!("queue {queue}: {e}"));
                }
                let _ = self.shared.fault_evt.read();
            }
            if r.listener {
                if let Some(Ok((extra, _))) = self.listener.as_ref().map(|l| l.accept()) {
                    tracing::warn!(device = %self.config.name, "second vhost-user frontend refused: one is connected");
                    drop(extra);
                }
            }
            if r.conn {
                let head = peek(handler.as_raw_fd());
                match early_vring_enable(handler.as_raw_fd(), &head, &backend) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(why) => break DownReason::ProtocolError(why),
                }
                match handler.handle_request() {
                    Ok(()) => {}
                    Err(vhost::vhost_user::Error::Disconnected)
                    | Err(vhost::vhost_user::Error::SocketBroken(_)) => {
                        break DownReason::SocketClosed
                    }
                    Err(e) => {
                        let fatal = backend
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .fatal
                            .take();
                        // The `vhost` crate refuses a malformed message (a wrong size, missing
                        // or extra fds) with a bare error: say which message it was.
                        break DownReason::ProtocolError(fatal.unwrap_or_else(|| {
                            format!("{}: {}", describe(&head), error_chain(&e))
                        }));
                    }
                }
            }
        };
        backend.lock().unwrap_or_else(|p| p.into_inner()).teardown();
        reason
    }
}

/// `VHOST_USER_SET_VRING_ENABLE`.
const SET_VRING_ENABLE: u32 = 18;
/// Header flags: the reply bit, protocol version 1, and the frontend's ask for an ack.
const FLAG_REPLY: u32 = 0x4;
const FLAG_VERSION: u32 = 0x1;
const FLAG_NEED_REPLY: u32 = 0x8;

/// Handles the next message itself if it is a `SET_VRING_ENABLE` before `SET_FEATURES`
/// (QEMU 7.2's virtio-net sends one; the `vhost` crate would refuse it and disconnect).
/// Returns whether it did. The message is looked at with `MSG_PEEK` first, so anything else
/// stays for the `vhost` crate's handler.
fn early_vring_enable(
    fd: RawFd,
    head: &Peeked,
    backend: &Mutex<DeviceBackend>,
) -> Result<bool, String> {
    if head.len < 20 || head.u32_at(0) != SET_VRING_ENABLE || head.u32_at(8) != 8 {
        return Ok(false);
    }
    let (flags, index, num) = (head.u32_at(4), head.u32_at(12), head.u32_at(16));
    let mut msg = head.bytes;
    let result = {
        let mut b = backend.lock().unwrap_or_else(|p| p.into_inner());
        match b.early_vring_enable(index, num) {
            None => return Ok(false),
            Some(r) => r,
        }
    };
    // SAFETY: reads the 20 bytes just peeked into `msg`, which we own.
    let got = unsafe { libc::recv(fd, msg.as_mut_ptr().cast(), msg.len(), 0) };
    if got != 20 {
        return Err("SET_VRING_ENABLE: short read".into());
    }
    if let Err(e) = result {
        return Err(format!("SET_VRING_ENABLE: {e}"));
    }
    if flags & FLAG_NEED_REPLY != 0 {
        let mut reply = [0u8; 20];
        reply[0..4].copy_from_slice(&SET_VRING_ENABLE.to_le_bytes());
        reply[4..8].copy_from_slice(&(FLAG_REPLY | FLAG_VERSION).to_le_bytes());
        reply[8..12].copy_from_slice(&8u32.to_le_bytes());
        // SAFETY: writes the 20 bytes of `reply`, which we own, to the connected socket.
        let sent =
            unsafe { libc::send(fd, reply.as_ptr().cast(), reply.len(), libc::MSG_NOSIGNAL) };
        if sent != 20 {
            return Err("SET_VRING_ENABLE: cannot send the ack".into());
        }
    }
    Ok(true)
}

/// The first bytes of the next message, left on the socket: the header (request, flags,
/// body size) and, for small messages, the body.
struct Peeked {
    bytes: [u8; 20],
    /// How many bytes were there (0 on an error).
    len: usize,
}

impl Peeked {
    fn u32_at(&self, o: usize) -> u32 {
        u32::from_le_bytes([
            self.bytes[o],
            self.bytes[o + 1],
            self.bytes[o + 2],
            self.bytes[o + 3],
        ])
    }
}

/// Looks at the next message without taking it (`MSG_PEEK`; no fds are received).
fn peek(fd: RawFd) -> Peeked {
    let mut bytes = [0u8; 20];
    // SAFETY: `bytes` is 20 writable bytes; MSG_PEEK leaves the message on the socket.
    let n = unsafe {
        libc::recv(
            fd,
            bytes.as_mut_ptr().cast(),
            bytes.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    Peeked {
        bytes,
        len: usize::try_from(n).unwrap_or(0),
    }
}

/// Names a message by its header, for the reason a frontend was disconnected.
fn describe(head: &Peeked) -> String {
    if head.len < 12 {
        return format!("a message of {} bytes, shorter than its header", head.len);
    }
    let (req, size) = (head.u32_at(0), head.u32_at(8));
    // From the vhost-user specification (front-end message types).
    const NAMES: [&str; 41] = [
        "NONE",
        "GET_FEATURES",
        "SET_FEATURES",
        "SET_OWNER",
        "RESET_OWNER",
        "SET_MEM_TABLE",
        "SET_LOG_BASE",
        "SET_LOG_FD",
        "SET_VRING_NUM",
        "SET_VRING_ADDR",
        "SET_VRING_BASE",
        "GET_VRING_BASE",
        "SET_VRING_KICK",
        "SET_VRING_CALL",
        "SET_VRING_ERR",
        "GET_PROTOCOL_FEATURES",
        "SET_PROTOCOL_FEATURES",
        "GET_QUEUE_NUM",
        "SET_VRING_ENABLE",
        "SEND_RARP",
        "NET_SET_MTU",
        "SET_BACKEND_REQ_FD",
        "IOTLB_MSG",
        "SET_VRING_ENDIAN",
        "GET_CONFIG",
        "SET_CONFIG",
        "CREATE_CRYPTO_SESSION",
        "CLOSE_CRYPTO_SESSION",
        "POSTCOPY_ADVISE",
        "POSTCOPY_LISTEN",
        "POSTCOPY_END",
        "GET_INFLIGHT_FD",
        "SET_INFLIGHT_FD",
        "GPU_SET_SOCKET",
        "RESET_DEVICE",
        "VRING_KICK",
        "GET_MAX_MEM_SLOTS",
        "ADD_MEM_REG",
        "REM_MEM_REG",
        "SET_STATUS",
        "GET_STATUS",
    ];
    let name = usize::try_from(req)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("an unknown request");
    format!("{name} ({req}), body of {size} bytes")
}

/// `DataPath` goes to worker threads.
const _: fn() = || {
    fn is<T: Send + Sync>() {}
    is::<DataPath>();
};
