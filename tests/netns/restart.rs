//! Restarts keep tap-port hosts connected: with a state file, the taps switchd makes outlive it
//! (persistent and marked), so a host in its own namespace keeps its interface, MAC and
//! addresses across a stop and across kill -9, and the next switchd re-attaches them where
//! they are. Removing the port still removes the interface.

use std::time::{Duration, Instant};

use crate::harness::{eventually, mac_string, udp_stream_during, unique_id, Host, Netns, Switchd};

/// A state file path, removed on drop.
struct StateFile(std::path::PathBuf);

impl Drop for StateFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `ip -o link show NAME` and `ip -o addr show NAME` in `ns`: what the host's interface looks
/// like (empty if it is gone).
fn interface(ns: &Netns, name: &str) -> String {
    let out = |args: &[&str]| {
        let o = std::process::Command::new("ip")
            .args(["-n", &ns.name, "-o"])
            .args(args)
            .output()
            .expect("run ip");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    out(&["link", "show", name]) + &out(&["-4", "addr", "show", name])
}

/// How long after `switch ready` `from` reaches `to` again (one ping every 50 ms, each
/// waiting 200 ms at most), or `None` after 10 s.
fn time_to_reach(from: &Host, to: &str) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if from.ns.exec_ok(&["ping", "-c", "1", "-W", "0.2", to]) {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// How soon after `switch ready` a host must reach its peer again (the bound). The
/// taps are attached before that line, and their frames wait in the tap's queue until the
/// workers run (milliseconds). The host's own ARP could take longer: its kernel flushed its
/// neighbour entries when the carrier went, and an entry it was resolving while switchd was
/// away would wait for its next retry (up to 1 s); switchd removes such entries when it
/// re-attaches the tap.
const RESUME: Duration = Duration::from_secs(1);

#[test]
fn tap_hosts_keep_their_interface_mac_and_address_across_stop_and_kill_9() {
    let id = unique_id();
    let state = StateFile(std::env::temp_dir().join(format!("vlanswitch-state-{id}.yaml")));
    let st = state.0.to_str().unwrap().to_string();
    let (pa, pb, pc) = (format!("{id}a"), format!("{id}b"), format!("{id}c"));
    // c is a netdev port on a veth (its interface outlives any switchd anyway), for the loss
    // of a netdev host across the same restart.
    let yaml = format!(
        "vlans: [{{ id: 10 }}]\nports:\n\
         \x20 - {{ name: {pa}, kind: tap, mode: access, vlan: 10 }}\n\
         \x20 - {{ name: {pb}, kind: tap, mode: access, vlan: 10 }}\n\
         \x20 - {{ name: {pc}, kind: netdev, mode: access, vlan: 10, admin_up: true }}\n"
    );
    let c = Host::veth(&pc, "198.18.0.44");
    let sw = Switchd::start_with(&yaml, 1, &["--state", &st]);
    assert!(
        sw.log().contains("created tap (kept across restarts)"),
        "{}",
        sw.log()
    );
    let a = Host::attach(&pa, "198.18.0.41");
    let b = Host::attach(&pb, "198.18.0.42");
    assert!(a.reaches(&b.addr), "a -> b before any restart");
    let mac = mac_string(a.mac());
    let before = interface(&a.ns, &pa);
    assert!(
        before.contains(&mac) && before.contains("198.18.0.41/24"),
        "{before}"
    );

    // 1. A clean stop: the hosts keep their interfaces (no carrier while nothing is attached),
    //    and the next switchd re-attaches them in the hosts' namespaces.
    assert!(
        eventually(Duration::from_secs(10), || c.reaches(&b.addr)),
        "c -> b before any restart"
    );
    let mut sw = Some(sw);
    let ((resumed, stream), from_c) = udp_stream_during(&c, &b, 5002, || {
        udp_stream_during(&a, &b, 5001, || {
            sw.take().unwrap().stop();
            let between = interface(&a.ns, &pa);
            assert!(
                between.contains(&mac) && between.contains("198.18.0.41/24"),
                "a's interface changed while switchd was stopped: {between}"
            );
            let sw = Switchd::start_with(&yaml, 1, &["--state", &st]);
            let t = time_to_reach(&a, &b.addr);
            // Let the streams run on after the restart.
            std::thread::sleep(Duration::from_millis(500));
            (sw, t)
        })
    });
    let (sw, t) = resumed;
    let log = sw.log();
    let (first_lost, lost) = stream.lost();
    let (_, lost_c) = from_c.lost();
    eprintln!(
        "stop + start: a reached b {t:?} after `switch ready`; UDP stream from the tap host: {} \
         sent, {lost} lost (first: {first_lost:?}); from the netdev host: {} sent, {lost_c} lost \
         (about 0.5 ms each)",
        stream.sent, from_c.sent
    );
    assert!(
        from_c.received.last() >= Some(&from_c.sent.saturating_sub(100)),
        "the netdev host's stream did not resume: last received {:?} of {}",
        from_c.received.last(),
        from_c.sent
    );
    assert!(
        log.matches("re-attached the tap an earlier run kept, where its host moved it")
            .count()
            == 2,
        "{log}"
    );
    let t = t.unwrap_or_else(|| panic!("a never reached b after the restart:\n{log}"));
    assert!(t < RESUME, "traffic resumed {t:?} after `switch ready`");
    assert!(
        stream.received.last() >= Some(&stream.sent.saturating_sub(100)),
        "the stream did not resume: last received {:?} of {}",
        stream.received.last(),
        stream.sent
    );
    let after = interface(&a.ns, &pa);
    assert!(
        after.contains(&mac) && after.contains("198.18.0.41/24") && after.contains("LOWER_UP"),
        "a's interface after the restart: {after}"
    );

    // 2. kill -9: nothing runs at exit, the taps are persistent anyway.
    sw.kill9();
    let between = interface(&a.ns, &pa);
    assert!(
        between.contains(&mac) && between.contains("198.18.0.41/24"),
        "a's interface changed when switchd was killed: {between}"
    );
    let sw = Switchd::start_with(&yaml, 1, &["--state", &st]);
    let t = time_to_reach(&a, &b.addr);
    eprintln!("kill -9 + start: a reached b {t:?} after `switch ready`");
    let t = t.unwrap_or_else(|| panic!("a never reached b after kill -9:\n{}", sw.log()));
    assert!(t < RESUME, "traffic resumed {t:?} after `switch ready`");
    let after = interface(&a.ns, &pa);
    assert!(
        after.contains(&mac) && after.contains("198.18.0.41/24"),
        "a's interface changed: {after}"
    );
    assert!(b.reaches(&a.addr), "b -> a after kill -9");

    // 3. Removing the port removes the interface, from wherever it is.
    sw.ctl_ok(&["port", "del", &pa]);
    assert_eq!(
        interface(&a.ns, &pa),
        "",
        "the removed port's tap is still there"
    );
    sw.stop();
    // b's tap is kept (a state file): it goes with b's namespace.
    assert!(!interface(&b.ns, &pb).is_empty(), "b's tap was kept");
}

#[test]
fn without_a_state_file_a_stop_removes_the_taps_switchd_made() {
    let id = unique_id();
    let p = format!("{id}t");
    let yaml = format!(
        "vlans: [{{ id: 10 }}]\nports: [{{ name: {p}, kind: tap, mode: access, vlan: 10 }}]\n"
    );
    let sw = Switchd::start(&yaml, 1);
    let h = Host::attach(&p, "198.18.0.43");
    assert!(!interface(&h.ns, &p).is_empty());
    let log = sw.stop();
    assert!(log.contains("created tap"), "{log}");
    assert!(!log.contains("kept across restarts"), "{log}");
    assert_eq!(interface(&h.ns, &p), "", "the tap outlived switchd");
}

#[test]
fn a_start_that_fails_half_way_leaves_the_kept_taps_in_place() {
    // With a state file, the second start fails on its second port (its name is now a veth's);
    // the first port's tap, already re-attached by then, must not be removed on the way out.
    let id = unique_id();
    let state = StateFile(std::env::temp_dir().join(format!("vlanswitch-state-{id}.yaml")));
    let st = state.0.to_str().unwrap().to_string();
    let (pa, px) = (format!("{id}a"), format!("{id}x"));
    let yaml = format!(
        "vlans: [{{ id: 10 }}]\nports:\n\
         \x20 - {{ name: {pa}, kind: tap, mode: access, vlan: 10 }}\n\
         \x20 - {{ name: {px}, kind: tap, mode: access, vlan: 10 }}\n"
    );
    let sw = Switchd::start_with(&yaml, 1, &["--state", &st]);
    let a = Host::attach(&pa, "198.18.0.45");
    let mac = mac_string(a.mac());
    sw.stop();
    crate::harness::ip(&["link", "del", &px]);
    crate::harness::veth_pair(&px, &format!("{id}y"));
    let out = std::process::Command::new(crate::harness::SWITCHD)
        .args(["--state", &st, "--listen", "127.0.0.1:0", "--workers", "1"])
        .output()
        .expect("run switchd");
    crate::harness::ip(&["link", "del", &px]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains("exists and is not a tap"), "{err}");
    let still = interface(&a.ns, &pa);
    assert!(
        still.contains(&mac) && still.contains("198.18.0.45/24"),
        "the failed start removed a's tap: {still:?}\n{err}"
    );
    // With the clash gone, the next start re-attaches it.
    let sw = Switchd::start_with(&yaml, 1, &["--state", &st]);
    assert!(
        sw.log()
            .contains("re-attached the tap an earlier run kept, where its host moved it"),
        "{}",
        sw.log()
    );
    sw.ctl_ok(&["port", "del", &pa]);
    sw.ctl_ok(&["port", "del", &px]);
    sw.stop();
}
