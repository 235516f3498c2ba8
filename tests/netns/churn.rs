//! Live changes never stall the ports they do not touch: ports are closed by the reaper, off
//! the workers and off the API thread.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{eventually, ip, link_exists, udp_stream_during, unique_id, Host, Switchd};

/// Taps added and removed per round of churn.
const CHURN_PORTS: usize = 25;

#[test]
fn churning_ports_and_a_netdev_link_loses_nothing_between_untouched_ports() {
    let id = unique_id();
    let (s1, s2, nd) = (format!("{id}s1"), format!("{id}s2"), format!("{id}nd"));
    let sw = Switchd::start(
        &format!(
            "vlans: [{{ id: 10 }}]\nports:\n\
             \x20 - {{ name: {s1}, kind: tap, mode: access, vlan: 10 }}\n\
             \x20 - {{ name: {s2}, kind: tap, mode: access, vlan: 10 }}\n\
             \x20 - {{ name: {nd}, kind: netdev, mode: access, vlan: 10, admin_up: true }}\n"
        ),
        2,
    );
    let a = Host::attach(&s1, "198.18.0.1");
    let b = Host::attach(&s2, "198.18.0.2");
    assert!(a.reaches(&b.addr));
    let peer = format!("{id}np");
    crate::harness::veth_pair(&nd, &peer);

    let mut rounds = 0;
    let mut failures = Vec::new();
    let ((), stream) = udp_stream_during(&a, &b, 5003, || {
        let names: Vec<String> = (0..CHURN_PORTS).map(|i| format!("{id}c{i}")).collect();
        let start = Instant::now();
        while failures.len() < 5 && (rounds < 6 || start.elapsed() < Duration::from_secs(4)) {
            // Add a batch of taps, remove them, and add the same names again at once: a
            // removed tap's name must be free when the removal is acknowledged.
            for _ in 0..2 {
                for n in &names {
                    let (ok, out, err) =
                        sw.ctl(&["port", "add", n, "--kind", "tap", "--access", "10"]);
                    if !ok {
                        failures.push(format!("port add {n}: {err}{out}"));
                    }
                }
                for n in &names {
                    let (ok, out, err) = sw.ctl(&["port", "del", n]);
                    if !ok {
                        failures.push(format!("port del {n}: {err}{out}"));
                    }
                }
            }
            // The netdev port's interface goes away and comes back.
            ip(&["link", "del", &nd]);
            crate::harness::veth_pair(&nd, &peer);
            rounds += 1;
        }
    });
    let _ = std::process::Command::new("ip")
        .args(["link", "del", &nd])
        .status();
    assert!(failures.is_empty(), "changes refused: {failures:#?}");
    let sent = stream.sent;
    assert!(sent > 2000, "the stream ran ({sent} datagrams)");
    let (first, n) = stream.lost();
    let log = sw.stop();
    assert!(
        first.is_empty(),
        "{n} of {sent} datagrams lost during {rounds} rounds of {} port changes and a netdev \
         link deleted and re-created, first: {first:?}\n{log}",
        CHURN_PORTS * 4
    );
}

/// `GET /healthz` on `api`; returns how long the answer took.
fn healthz(api: &str) -> Duration {
    let start = Instant::now();
    let mut s = TcpStream::connect(api).expect("connect to the API");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200"), "healthz answered {out:?}");
    start.elapsed()
}

#[test]
fn healthz_answers_at_once_while_a_thousand_taps_are_torn_down() {
    const N: usize = 1000;
    let id = unique_id();
    let sw = Switchd::start("vlans: [{ id: 10 }]\n", 1);
    let names: Vec<String> = (0..N).map(|i| format!("{id}k{i}")).collect();
    let mut big = String::from("vlans: [{ id: 10 }]\nports:\n");
    for n in &names {
        big.push_str(&format!(
            "  - {{ name: {n}, kind: tap, mode: access, vlan: 10 }}\n"
        ));
    }
    let file = std::env::temp_dir().join(format!("vlanswitch-test-{id}-big.yaml"));
    std::fs::write(&file, &big).unwrap();
    let small = std::env::temp_dir().join(format!("vlanswitch-test-{id}-small.yaml"));
    std::fs::write(&small, "vlans: [{ id: 10 }]\n").unwrap();
    sw.ctl_ok(&["topology", "apply", file.to_str().unwrap()]);
    assert!(names.iter().all(|n| link_exists(n)), "1000 taps made");

    let done = AtomicBool::new(false);
    let (worst, answers, acked_after) = std::thread::scope(|s| {
        let probe = s.spawn(|| {
            let mut worst = Duration::ZERO;
            let mut answers = 0;
            while !done.load(Ordering::Relaxed) {
                worst = worst.max(healthz(&sw.api));
                answers += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            (worst, answers)
        });
        std::thread::sleep(Duration::from_millis(100));
        let start = Instant::now();
        sw.ctl_ok(&["topology", "apply", small.to_str().unwrap()]);
        let acked_after = start.elapsed();
        // Keep probing until the last tap is really gone.
        let gone = eventually(Duration::from_secs(120), || {
            !names.iter().any(|n| link_exists(n))
        });
        done.store(true, Ordering::Relaxed);
        assert!(gone, "the removed taps were never closed");
        let (worst, answers) = probe.join().unwrap();
        (worst, answers, acked_after)
    });
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&small);
    sw.stop();
    assert!(answers > 5, "healthz was probed {answers} times");
    assert!(
        worst < Duration::from_millis(100),
        "healthz took {worst:?} at worst while 1000 taps were torn down (apply acknowledged \
         after {acked_after:?})"
    );
}
