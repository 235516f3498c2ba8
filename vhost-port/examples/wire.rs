//! Two vhost-user devices joined like a wire: every frame one guest sends, the other receives.
//!
//! ```text
//! cargo run --release -p vhost-port --example wire -- server /tmp/a.sock /tmp/b.sock [SECONDS]
//! ```
//! (`client` instead of `server` connects to sockets a frontend listens on.) Runs until killed,
//! or for SECONDS, then prints the devices' counters. One thread forwards both directions: it
//! polls while there is traffic and for a short window after, then re-enables guest kicks and
//! sleeps in epoll on the two kick eventfds, which the devices hand it through a `KickHook`.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vhost_port::{DataPath, DeviceConfig, KickHook, QueueId, SocketMode, VhostUserDevice};

/// Registers guest TX kick fds in an epoll set (edge-triggered, so no read is needed).
pub struct EpollHook {
    pub epfd: RawFd,
    pub token: u64,
}

impl KickHook for EpollHook {
    fn register(&self, queue: QueueId, fd: RawFd) {
        if queue != QueueId::GuestTx {
            return;
        }
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: self.token,
        };
        // SAFETY: `epfd` is an epoll fd owned by the wire for its lifetime; `ev` is valid.
        unsafe { libc::epoll_ctl(self.epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) };
    }
    fn unregister(&self, queue: QueueId, fd: RawFd) {
        if queue != QueueId::GuestTx {
            return;
        }
        // SAFETY: as above; a null event is allowed for EPOLL_CTL_DEL.
        unsafe { libc::epoll_ctl(self.epfd, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
    }
}

/// Moves up to `budget` frames from `src`'s guest TX ring to `dst`'s guest RX ring.
pub fn forward(src: &DataPath, dst: &DataPath, buf: &mut [u8], budget: usize) -> usize {
    let Ok(mut rx) = src.recv_batch() else {
        return 0;
    };
    let mut tx = dst.send_batch().ok();
    let mut hdr = [0u8; 10];
    let mut n = 0;
    while n < budget {
        match rx.recv(&mut hdr, buf) {
            Ok(Some(len)) => {
                if let Some(tx) = tx.as_mut() {
                    let _ = tx.send(&hdr, &[&buf[..len]]);
                }
                n += 1;
            }
            Ok(None) | Err(_) => break,
        }
    }
    n
}

/// Forwards between `a` and `b` until `stop` is set.
pub fn run_wire(a: &DataPath, b: &DataPath, epfd: RawFd, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65536 + 4096];
    let mut idle = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let n = forward(a, b, &mut buf, 64) + forward(b, a, &mut buf, 64);
        if n > 0 {
            idle = 0;
            continue;
        }
        idle += 1;
        if idle < 2000 {
            std::hint::spin_loop();
            continue;
        }
        // Before sleeping: ask for kicks, and look once more (the race check).
        let more = [a, b].iter().any(|d| match d.recv_batch() {
            Ok(mut rx) => rx.enable_notifications().unwrap_or(false),
            Err(vhost_port::ClaimError::Busy) => true,
            Err(_) => false,
        });
        if more {
            idle = 0;
            continue;
        }
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: `evs` is a valid buffer of 4 events; `epfd` is an epoll fd.
        unsafe { libc::epoll_wait(epfd, evs.as_mut_ptr(), 4, 100) };
        idle = 0;
    }
}

/// An epoll fd.
pub fn epoll() -> RawFd {
    // SAFETY: plain syscall without pointers.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(
        fd >= 0,
        "epoll_create1: {}",
        std::io::Error::last_os_error()
    );
    fd
}

#[allow(dead_code)]
fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, pa, pb) = match args.as_slice() {
        [m, a, b, ..] => (m.as_str(), a, b),
        _ => anyhow::bail!("usage: wire server|client SOCK_A SOCK_B [SECONDS]"),
    };
    let mode = match mode {
        "server" => SocketMode::Server,
        "client" => SocketMode::Client,
        other => anyhow::bail!("mode must be server or client, not {other}"),
    };
    let seconds: Option<u64> = args.get(3).map(|s| s.parse()).transpose()?;
    let epfd = epoll();
    let hook = Arc::new(EpollHook { epfd, token: 0 });
    let da = VhostUserDevice::start(DeviceConfig::new("a", pa, mode), hook.clone())?;
    let db = VhostUserDevice::start(DeviceConfig::new("b", pb, mode), hook)?;
    println!("wire: ready");
    let stop = Arc::new(AtomicBool::new(false));
    if let Some(s) = seconds {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(s));
            stop.store(true, Ordering::Relaxed);
        });
    }
    let t0 = Instant::now();
    run_wire(&da.data_path(), &db.data_path(), epfd, &stop);
    let secs = t0.elapsed().as_secs_f64();
    for d in [&da, &db] {
        let st = d.status();
        println!(
            "wire: {}: {} features {:#x} counters {:?} ({:.2} Mpps to guest)",
            d.config().name,
            st.link,
            st.features,
            st.counters,
            st.counters.to_guest_frames as f64 / secs / 1e6
        );
    }
    Ok(())
}
