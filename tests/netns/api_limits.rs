//! The API server's limits against the real switchd (no namespaces, no ports): a bounded
//! number of connections that a slowloris burst cannot exhaust, memory that comes back after
//! the burst, and request heads and bodies refused before they are read.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{eventually, Switchd};

/// `switchd/src/server.rs`: MAX_CONNECTIONS, HEADER_READ_TIMEOUT.
const MAX_CONNECTIONS: usize = 128;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("proc status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().starts_with("socket:"))
        .count()
}

/// The first line of the answer to `request` on a new connection.
fn first_line(api: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(api).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).expect("send");
    let mut line = String::new();
    let _ = BufReader::new(s).read_line(&mut line);
    line
}

/// The test process needs more descriptors than a default soft limit of 1024 allows.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct we pass, nothing else.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max.min(8192).max(lim.rlim_cur);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

#[test]
fn a_slowloris_burst_holds_no_more_than_the_bound_and_healthz_still_answers() {
    raise_fd_limit();
    let sw = Switchd::start("vlans: []\n", 1);
    let pid = sw.pid();
    let healthz = b"GET /healthz HTTP/1.1\r\nHost: switchd\r\nConnection: close\r\n\r\n";
    assert!(first_line(&sw.api, healthz).starts_with("HTTP/1.1 200"));
    let sockets_before = sockets(pid);
    let rss_before = rss_kib(pid);

    // 1000 connections that each send part of a request head and then nothing.
    let mut slow: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let mut s = TcpStream::connect(&sw.api).expect("connect");
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: switchd\r\nX-Slow: ")
                .expect("send");
            s
        })
        .collect();
    // The held ones become idle long enough to give way (EVICT_AFTER_IDLE, 1 s).
    std::thread::sleep(Duration::from_millis(1500));
    let held = sockets(pid).saturating_sub(sockets_before);
    assert!(
        held <= MAX_CONNECTIONS,
        "switchd holds {held} connections (bound {MAX_CONNECTIONS})"
    );
    let rss_during = rss_kib(pid);
    for _ in 0..3 {
        let start = Instant::now();
        let line = first_line(&sw.api, healthz);
        assert!(
            line.starts_with("HTTP/1.1 200"),
            "/healthz during the burst: {line:?}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }
    let out = sw.ctl_ok(&["vlan", "list"]);
    assert!(out.contains('1'), "{out}");

    // The server closes the held connections when their head has not come in time.
    let mut closed = 0;
    let deadline = Instant::now() + HEADER_READ_TIMEOUT + Duration::from_secs(3);
    for s in &mut slow {
        let left = deadline.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = [0u8; 64];
        if matches!(s.read(&mut buf), Ok(0) | Err(_)) && Instant::now() < deadline {
            closed += 1;
        }
    }
    assert_eq!(closed, slow.len(), "connections left open by the server");
    drop(slow);
    assert!(
        eventually(Duration::from_secs(5), || sockets(pid) <= sockets_before),
        "{} sockets after the burst, {sockets_before} before",
        sockets(pid)
    );
    // And the memory they took is given back.
    let mut rss_after = rss_kib(pid);
    assert!(
        eventually(Duration::from_secs(5), || {
            rss_after = rss_kib(pid);
            rss_after <= rss_before + 2048
        }),
        "RSS {rss_before} KiB before the burst, {rss_during} during, {rss_after} after"
    );
    eprintln!("RSS {rss_before} KiB before the burst, {rss_during} during, {rss_after} after");
    sw.stop();
}

#[test]
fn oversized_heads_and_announced_bodies_are_refused_before_they_are_read() {
    let sw = Switchd::start("vlans: []\n", 1);
    // A head over 16 KiB.
    let mut big = b"GET /healthz HTTP/1.1\r\nHost: switchd\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 20 * 1024));
    big.extend(b"\r\n\r\n");
    let line = first_line(&sw.api, &big);
    assert!(line.starts_with("HTTP/1.1 431"), "{line:?}");
    // A 2 MiB body announced with `Expect: 100-continue`: 413, never `100 Continue`.
    let line = first_line(
        &sw.api,
        b"PUT /api/v1/topology HTTP/1.1\r\nHost: switchd\r\nContent-Type: application/json\r\n\
          Content-Length: 2097152\r\nExpect: 100-continue\r\n\r\n",
    );
    assert!(line.starts_with("HTTP/1.1 413"), "{line:?}");
    // JSON sent as text/plain.
    let line = first_line(
        &sw.api,
        b"POST /api/v1/vlans HTTP/1.1\r\nHost: switchd\r\nContent-Type: text/plain\r\n\
          Content-Length: 9\r\n\r\n{\"id\":30}",
    );
    assert!(line.starts_with("HTTP/1.1 415"), "{line:?}");
    sw.stop();
}
