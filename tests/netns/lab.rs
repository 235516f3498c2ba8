//! The common lab: one switchd, VLAN 10 hosts a1 and a2, VLAN 20 hosts b1 and b2, all four on
//! one IP subnet so that only the VLAN decides who reaches whom.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::harness::{unique_id, Host, Switchd};

pub struct Lab {
    // Field order is drop order: the switch stops before the namespaces go.
    pub sw: Switchd,
    pub a1: Host,
    pub a2: Host,
    pub b1: Host,
    pub b2: Host,
}

/// Port names for a lab with id `id`.
pub fn names(id: &str) -> [String; 4] {
    ["a1", "a2", "b1", "b2"].map(|h| format!("{id}{h}"))
}

impl Lab {
    pub fn new() -> Lab {
        let id = unique_id();
        let [a1, a2, b1, b2] = names(&id);
        let yaml = format!(
            "vlans:\n  - {{ id: 10, name: red }}\n  - {{ id: 20, name: blue }}\nports:\n\
             \x20 - {{ name: {a1}, kind: tap, mode: access, vlan: 10 }}\n\
             \x20 - {{ name: {a2}, kind: tap, mode: access, vlan: 10 }}\n\
             \x20 - {{ name: {b1}, kind: tap, mode: access, vlan: 20 }}\n\
             \x20 - {{ name: {b2}, kind: tap, mode: access, vlan: 20 }}\n"
        );
        let sw = Switchd::start(&yaml, 2);
        Lab {
            sw,
            a1: Host::attach(&a1, "198.18.0.1"),
            a2: Host::attach(&a2, "198.18.0.2"),
            b1: Host::attach(&b1, "198.18.0.3"),
            b2: Host::attach(&b2, "198.18.0.4"),
        }
    }
}

/// How long a transfer may make no progress before the test fails.
const STALL: Duration = Duration::from_secs(20);

/// Upper bound for a whole transfer, far beyond what a working path needs (a guard against
/// hangs, not a performance check).
const DEADLINE: Duration = Duration::from_secs(120);

/// Sends `len` bytes of a deterministic pseudo-random stream over TCP from `from` to `to`
/// (port 5001) and returns the SHA-256 of what was sent and of what arrived.
pub fn tcp_transfer(from: &Host, to: &Host, len: usize) -> ([u8; 32], [u8; 32]) {
    let listen_addr = format!("{}:5001", to.addr);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            to.ns.run(|| {
                let l = TcpListener::bind(&listen_addr).expect("bind");
                ready_tx.send(()).unwrap();
                l.set_nonblocking(true).unwrap();
                let deadline = Instant::now() + STALL;
                let mut c = loop {
                    match l.accept() {
                        Ok((c, _)) => break c,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            assert!(Instant::now() < deadline, "no connection within {STALL:?}");
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(e) => panic!("accept: {e}"),
                    }
                };
                c.set_nonblocking(false).unwrap();
                // A broken path stalls TCP: fail the test instead of hanging it.
                c.set_read_timeout(Some(STALL)).unwrap();
                let mut h = Sha256::new();
                let mut buf = vec![0u8; 1 << 16];
                let mut total = 0;
                loop {
                    let n = c.read(&mut buf).expect("read (stalled?)");
                    if n == 0 {
                        break;
                    }
                    total += n;
                    h.update(&buf[..n]);
                }
                (total, <[u8; 32]>::from(h.finalize()))
            })
        });
        ready_rx.recv().expect("server ready");
        let sent = from.ns.run(|| {
            let mut c =
                TcpStream::connect_timeout(&listen_addr.parse().unwrap(), STALL).expect("connect");
            c.set_write_timeout(Some(STALL)).unwrap();
            let mut h = Sha256::new();
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            let mut buf = vec![0u8; 1 << 16];
            let mut left = len;
            let deadline = Instant::now() + DEADLINE;
            while left > 0 {
                // A path that corrupts some frames (bad checksums) still trickles data through
                // TCP retransmits: bound the whole transfer, not only each write.
                assert!(
                    Instant::now() < deadline,
                    "transfer not done within {DEADLINE:?}: {left} of {len} bytes left"
                );
                for w in buf.chunks_mut(8) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    w.copy_from_slice(&x.to_le_bytes()[..w.len()]);
                }
                let n = left.min(buf.len());
                c.write_all(&buf[..n]).expect("write (stalled?)");
                h.update(&buf[..n]);
                left -= n;
            }
            <[u8; 32]>::from(h.finalize())
        });
        let (total, got) = server.join().expect("server");
        assert_eq!(total, len, "bytes received");
        (sent, got)
    })
}
