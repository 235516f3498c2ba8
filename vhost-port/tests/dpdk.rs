//! Interop with DPDK's real frontend: `dpdk-testpmd` with two `net_virtio_user` ports, joined by
//! the `wire` example's forwarding loop in this process, in `io` forward mode after
//! `start tx_first 32`: every frame testpmd sends must come back on the other port.
//!
//! Needs (Debian 12): `apt-get install -y dpdk-dev librte-net-virtio23` (dpdk-dev ships
//! `dpdk-testpmd`) and root (testpmd maps 1 GiB with `--no-huge -m 1024`). Fails, never skips,
//! when testpmd is missing. The two cases run one after the other (they share the cores).

#[allow(dead_code)]
#[path = "../examples/wire.rs"]
mod wire;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vhost_port::{DeviceConfig, LinkState, SocketMode, VhostUserDevice};

static SERIAL: Mutex<()> = Mutex::new(());

fn testpmd() -> PathBuf {
    let p = Path::new("/usr/bin/dpdk-testpmd");
    assert!(
        p.exists(),
        "dpdk-testpmd is missing: apt-get install -y dpdk-dev librte-net-virtio23"
    );
    p.to_path_buf()
}

/// `RX-packets:` of each port's "Forward statistics" block.
fn forward_rx(out: &str) -> Vec<u64> {
    out.split("Forward statistics for port")
        .skip(1)
        .filter_map(|blk| {
            let i = blk.find("RX-packets:")? + "RX-packets:".len();
            blk[i..].split_whitespace().next()?.parse().ok()
        })
        .collect()
}

fn run(mode: SocketMode) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let bin = testpmd();
    let dir = std::env::temp_dir().join(format!("vhost-port-dpdk-{}-{mode:?}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (pa, pb) = (dir.join("a.sock"), dir.join("b.sock"));
    let epfd = wire::epoll();
    let hook = Arc::new(wire::EpollHook { epfd, token: 0 });
    let da = VhostUserDevice::start(DeviceConfig::new("dpdk-a", &pa, mode), hook.clone()).unwrap();
    let db = VhostUserDevice::start(DeviceConfig::new("dpdk-b", &pb, mode), hook).unwrap();
    // testpmd is the client when we are the server (`server=0`) and the other way round.
    let server = match mode {
        SocketMode::Server => 0,
        SocketMode::Client => 1,
    };
    let vdev = |i: u32, p: &Path| {
        format!(
            "net_virtio_user{i},path={},queues=1,server={server}",
            p.display()
        )
    };
    let mut child = Command::new(bin)
        .args([
            "-l",
            "0,1",
            "--no-huge",
            "-m",
            "1024",
            "--no-pci",
            "--log-level",
            "user1,8",
        ])
        .arg(format!("--file-prefix=vhp{}{server}", std::process::id()))
        .args(["--vdev", &vdev(0, &pa), "--vdev", &vdev(1, &pb)])
        .args(["--", "-i", "--forward-mode=io", "--nb-cores=1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn dpdk-testpmd");
    let stop = Arc::new(AtomicBool::new(false));
    let (a, b) = (da.data_path(), db.data_path());
    let fwd = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || wire::run_wire(&a, &b, epfd, &stop))
    };
    // Both links up (testpmd started its ports).
    let t0 = Instant::now();
    while !(da.status().link == LinkState::Up && db.status().link == LinkState::Up) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "links not up: {} / {}",
            da.status().link,
            db.status().link
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "start tx_first 32").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    writeln!(stdin, "stop").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    writeln!(stdin, "quit").unwrap();
    drop(stdin);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    fwd.join().unwrap();
    let rx = forward_rx(&out);
    let (sa, sb) = (da.status(), db.status());
    eprintln!(
        "testpmd rx per port {rx:?}; a {:?}; b {:?}",
        sa.counters, sb.counters
    );
    assert!(status.success(), "testpmd failed: {status}\n{out}");
    assert_eq!(rx.len(), 2, "no forward statistics from testpmd:\n{out}");
    for (port, n) in rx.iter().enumerate() {
        assert!(*n >= 10_000, "port {port} received only {n} frames:\n{out}");
    }
    // What testpmd received is what we wrote into its rings.
    assert!(sa.counters.to_guest_frames >= rx[0] && sb.counters.to_guest_frames >= rx[1]);
    assert!(sa.counters.from_guest_frames > 0 && sb.counters.from_guest_frames > 0);
    drop((da, db));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn testpmd_frames_round_trip_with_our_sockets_in_server_mode() {
    run(SocketMode::Server);
}

#[test]
fn testpmd_frames_round_trip_with_testpmd_listening_and_us_connecting() {
    run(SocketMode::Client);
}
