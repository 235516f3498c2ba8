//! Port security against the real switchd: a flood of random source MACs cannot fill the MAC
//! table for everyone (CAM overflow), ports limited to listed MACs or to the first N they learn
//! drop other sources, MAC moves and flapping are logged and counted and a damped MAC stays
//! where it belongs, and a port whose limit action is `shutdown` goes dark while the others
//! keep working.
//!
//! Hosts that count sources are attached with [`Host::attach_quiet`] (IPv6 off), so that the
//! only source MACs a port brings in are the frames the test sends.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::harness::{
    eventually, frame, http, mac_string, unique_id, Host, Raw, Switchd, BROADCAST,
};

/// The frames one flood sends.
const FLOOD: usize = 200_000;

/// A MAC built for one test: `02:53:45:43:TAG:N` ("SEC"), locally administered unicast.
fn mac(tag: u8, n: u8) -> [u8; 6] {
    [0x02, 0x53, 0x45, 0x43, tag, n]
}

/// xorshift64: random locally administered unicast MACs, no crate needed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn mac(&mut self) -> [u8; 6] {
        let x = &mut self.0;
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        let b = x.to_le_bytes();
        [(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]]
    }
}

/// `switchctl --json fdb show ARGS...` as (vlan, mac, port) triples.
fn fdb(sw: &Switchd, args: &[&str]) -> Vec<(u16, String, String)> {
    let mut a = vec!["--json", "fdb", "show"];
    a.extend_from_slice(args);
    let out = sw.ctl_ok(&a);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("fdb show: {e}: {out}"));
    v.as_array()
        .unwrap_or_else(|| panic!("fdb show is not an array: {out}"))
        .iter()
        .map(|e| {
            (
                e["vlan"].as_u64().expect("vlan") as u16,
                e["mac"].as_str().expect("mac").to_string(),
                e["port"].as_str().expect("port").to_string(),
            )
        })
        .collect()
}

/// The port `m` is learned on in `vlan`, if it is.
fn port_of(sw: &Switchd, vlan: u16, m: [u8; 6]) -> Option<String> {
    let m = mac_string(m);
    fdb(sw, &["--vlan", &vlan.to_string()])
        .into_iter()
        .find(|(_, mm, _)| *mm == m)
        .map(|(_, _, p)| p)
}

/// `port`'s counters from `GET /api/v1/stats` (through switchctl): a traffic counter such as
/// `rx_packets`, a drop reason such as `mac_limit`, or a learning event such as
/// `mac_limit_not_learned`.
fn counter(sw: &Switchd, port: &str, name: &str) -> u64 {
    let out = sw.ctl_ok(&["--json", "stats"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("stats JSON");
    let c = &v["ports"][port];
    c[name]
        .as_u64()
        .or_else(|| c["drops"][name].as_u64())
        .or_else(|| c["mac_events"][name].as_u64())
        .unwrap_or_else(|| panic!("no counter {name} for port {port}: {out}"))
}

/// Waits until switchd has read all that the kernel queued on `port`: its `rx_packets` has
/// not changed for half a second.
fn settle(sw: &Switchd, port: &str) -> u64 {
    let mut last = counter(sw, port, "rx_packets");
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = counter(sw, port, "rx_packets");
        if now == last || Instant::now() > end {
            return now;
        }
        last = now;
    }
}

/// The first line of `log` at `level` (`INFO`, `WARN`) that contains every one of `parts`.
fn line_with<'a>(log: &'a str, level: &str, parts: &[&str]) -> Option<&'a str> {
    log.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(level) && parts.iter().all(|p| l.contains(p)))
}

/// Sends each of `frames`, `gap` apart (so that a tap's queue never overflows).
fn send_all(raw: &mut Raw, frames: &[Vec<u8>], gap: Duration) {
    for f in frames {
        raw.send(f);
        std::thread::sleep(gap);
    }
}

fn count_with(frames: &[Vec<u8>], marker: &[u8]) -> usize {
    frames
        .iter()
        .filter(|f| f.windows(marker.len()).any(|w| w == marker))
        .count()
}

/// Finding 2 of issue 9. One host in VLAN 10 sends `FLOOD` frames from random source MACs
/// as fast as its raw socket takes them; then fresh hosts join in VLAN 10 and VLAN 20.
fn a_mac_flood_leaves_the_table_to_everyone_else(fdb_max_entries: Option<usize>) {
    let id = unique_id();
    let [att, v1, v2, w1, w2, w3] =
        ["att", "v1", "v2", "w1", "w2", "w3"].map(|p| format!("{id}{p}"));
    let table = fdb_max_entries.map_or(String::new(), |n| format!("fdb_max_entries: {n}\n"));
    let sw = Switchd::start(
        &format!(
            "{table}vlans: [{{ id: 10 }}, {{ id: 20 }}]\nports:\n\
             \x20 - {{ name: {att}, kind: tap, mode: access, vlan: 10 }}\n\
             \x20 - {{ name: {v1}, kind: tap, mode: access, vlan: 10 }}\n\
             \x20 - {{ name: {v2}, kind: tap, mode: access, vlan: 10 }}\n\
             \x20 - {{ name: {w1}, kind: tap, mode: access, vlan: 20 }}\n\
             \x20 - {{ name: {w2}, kind: tap, mode: access, vlan: 20 }}\n\
             \x20 - {{ name: {w3}, kind: tap, mode: access, vlan: 20 }}\n"
        ),
        2,
    );
    // The documented default: an eighth of the table per port.
    let limit = fdb_max_entries.unwrap_or(65_536) / 8;
    let attacker = Host::attach(&att, "198.18.0.1");
    let mut raw = attacker.raw();

    // The flood: unknown unicast destination, a new random source in every frame.
    let mut rng = Rng::new(0x5eed_0000 ^ u64::from(std::process::id()));
    let mut f = frame(
        [0x02, 0x00, 0x5e, 0xff, 0xff, 0xfe],
        [0; 6],
        &[],
        b"vs-cam-flood",
    );
    let start = Instant::now();
    let mut refused = 0;
    for _ in 0..FLOOD {
        f[6..12].copy_from_slice(&rng.mac());
        if raw.try_send(&f).is_err() {
            refused += 1;
        }
    }
    let took = start.elapsed();
    let read = settle(&sw, &att);
    eprintln!(
        "flood: {FLOOD} frames in {took:?} ({refused} refused by the socket), switchd read {read}"
    );
    assert!(
        read as usize > 2 * limit,
        "the flood hardly reached the switch ({read} frames read): it proves nothing"
    );

    // (a) The attacker's port holds its limit and not one MAC more; the rest is counted.
    let on_att = fdb(&sw, &["--port", &att]).len();
    assert!(
        on_att <= limit,
        "{att} holds {on_att} MACs after the flood, over its limit of {limit}"
    );
    assert_eq!(on_att, limit, "{att} should hold exactly its limit");
    // The limit action is flood: the frames were forwarded, so they are not drops.
    let limited = counter(&sw, &att, "mac_limit_not_learned");
    assert!(limited > 0, "no mac_limit_not_learned counted on {att}");
    assert_eq!(
        counter(&sw, &att, "mac_limit"),
        0,
        "a forwarded frame counted as a drop"
    );
    assert!(
        eventually(Duration::from_secs(3), || line_with(
            &sw.log(),
            "WARN",
            &[
                "port reached its MAC limit; new source not learned",
                &format!("port={att}")
            ]
        )
        .is_some()),
        "no warning about {att}'s MAC limit:\n{}",
        sw.log()
    );

    // (b), (c) Hosts that join after the flood learn, in VLAN 10 and in VLAN 20.
    let hv1 = Host::attach(&v1, "198.18.0.11");
    let hv2 = Host::attach(&v2, "198.18.0.12");
    let hw1 = Host::attach(&w1, "198.18.0.21");
    let hw2 = Host::attach(&w2, "198.18.0.22");
    let hw3 = Host::attach(&w3, "198.18.0.23");
    assert!(hv1.reaches(&hv2.addr), "v1 -> v2 after the flood");
    assert!(hw1.reaches(&hw2.addr), "w1 -> w2 after the flood");
    for (vlan, h, p) in [
        (10, &hv1, &v1),
        (10, &hv2, &v2),
        (20, &hw1, &w1),
        (20, &hw2, &w2),
    ] {
        assert_eq!(
            port_of(&sw, vlan, h.mac()).as_deref(),
            Some(p.as_str()),
            "{} was not learned in VLAN {vlan} after the flood",
            mac_string(h.mac())
        );
    }

    // 300 unicast frames each way between v1 and v2, and between w1 and w2; one broadcast in
    // each VLAN as a control that the eavesdroppers' captures work.
    let (m_v1, m_v2, m_w1, m_w2) = (hv1.mac(), hv2.mac(), hw1.mac(), hw2.mac());
    let uni = |dst, src| frame(dst, src, &[], b"vs-cam-uni");
    let ctl = |src| frame(BROADCAST, src, &[], b"vs-cam-ctl");
    let mut senders = [hv1.raw(), hv2.raw(), hw1.raw(), hw2.raw()];
    let mut caps = [raw, hv1.raw(), hv2.raw(), hw1.raw(), hw2.raw(), hw3.raw()];
    let seen: Vec<Vec<Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = caps
            .iter_mut()
            .map(|c| s.spawn(|| c.capture(b"vs-cam-", Duration::from_millis(2000))))
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..300 {
            senders[0].send(&uni(m_v2, m_v1));
            senders[1].send(&uni(m_v1, m_v2));
            senders[2].send(&uni(m_w2, m_w1));
            senders[3].send(&uni(m_w1, m_w2));
            std::thread::sleep(Duration::from_micros(300));
        }
        senders[0].send(&ctl(m_v1));
        senders[2].send(&ctl(m_w1));
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let n = |i: usize, m: &[u8]| count_with(&seen[i], m);
    // A host's capture also sees what it sent itself: count what came from its peer.
    let from = |i: usize, src: [u8; 6]| {
        seen[i]
            .iter()
            .filter(|f| f[6..12] == src && f.windows(10).any(|w| w == b"vs-cam-uni"))
            .count()
    };
    assert_eq!(from(1, m_v2), 300, "v1 must get v2's 300 frames");
    assert_eq!(from(2, m_v1), 300, "v2 must get v1's 300 frames");
    assert_eq!(from(3, m_w2), 300, "w1 must get w2's 300 frames");
    assert_eq!(from(4, m_w1), 300, "w2 must get w1's 300 frames");
    assert_eq!(
        n(0, b"vs-cam-ctl"),
        1,
        "the attacker's capture missed the control broadcast"
    );
    assert_eq!(
        n(5, b"vs-cam-ctl"),
        1,
        "w3's capture missed the control broadcast"
    );
    assert_eq!(
        n(0, b"vs-cam-uni"),
        0,
        "the attacker in VLAN 10 saw {} of the 600 unicast frames between v1 and v2",
        n(0, b"vs-cam-uni")
    );
    assert_eq!(
        n(5, b"vs-cam-uni"),
        0,
        "w3 in VLAN 20 saw {} of the 600 unicast frames between w1 and w2",
        n(5, b"vs-cam-uni")
    );
    drop(sw);
}

#[test]
fn a_200k_mac_flood_with_the_default_table_leaves_other_ports_and_vlans_learning() {
    a_mac_flood_leaves_the_table_to_everyone_else(None);
}

#[test]
fn a_200k_mac_flood_with_a_1024_entry_table_leaves_other_ports_and_vlans_learning() {
    a_mac_flood_leaves_the_table_to_everyone_else(Some(1024));
}

/// With `mac_limit_action: drop`, a source beyond the limit does not even get its frame
/// through.
#[test]
fn with_limit_action_drop_frames_from_sources_beyond_the_limit_are_dropped_and_counted() {
    let id = unique_id();
    let (att, lis) = (format!("{id}att"), format!("{id}lis"));
    let sw = Switchd::start(
        &format!(
            "fdb_max_entries: 1024\nvlans: [{{ id: 10 }}]\nports:\n\
             \x20 - {{ name: {att}, kind: tap, mode: access, vlan: 10, mac_limit_action: drop }}\n\
             \x20 - {{ name: {lis}, kind: tap, mode: access, vlan: 10 }}\n"
        ),
        2,
    );
    let limit = 1024 / 8;
    let attacker = Host::attach_quiet(&att, "198.18.0.1", mac(1, 1));
    let listener = Host::attach(&lis, "198.18.0.2");
    let mut raw = attacker.raw();
    let mut cap = listener.raw();
    let mut rng = Rng::new(0xd0d0 ^ u64::from(std::process::id()));
    let frames: Vec<Vec<u8>> = (0..2000)
        .map(|_| frame(BROADCAST, rng.mac(), &[], b"vs-drop-flood"))
        .collect();
    let seen = std::thread::scope(|s| {
        let h = s.spawn(|| cap.capture(b"vs-drop-flood", Duration::from_millis(2500)));
        std::thread::sleep(Duration::from_millis(200));
        for chunk in frames.chunks(100) {
            for f in chunk {
                raw.send(f);
            }
            std::thread::sleep(Duration::from_millis(3));
        }
        h.join().unwrap()
    });
    let read = settle(&sw, &att);
    let learned: BTreeSet<String> = fdb(&sw, &["--port", &att])
        .into_iter()
        .map(|(_, m, _)| m)
        .collect();
    let delivered: BTreeSet<String> = seen
        .iter()
        .map(|f| mac_string(f[6..12].try_into().unwrap()))
        .collect();
    let limited = counter(&sw, &att, "mac_limit");
    assert!(
        read >= 1000,
        "only {read} of 2000 frames reached the switch"
    );
    assert_eq!(learned.len(), limit, "{att} must hold exactly its limit");
    assert_eq!(
        seen.len(),
        limit,
        "the listener got {} flood frames: only the first {limit} sources may pass",
        seen.len()
    );
    assert_eq!(
        delivered, learned,
        "the frames that passed must be those of the learned sources"
    );
    assert_eq!(
        limited,
        read - limit as u64,
        "every frame beyond the limit counts as mac_limit ({read} read)"
    );
}

/// Finding 3 of issue 9, static and sticky port security.
#[test]
fn a_port_limited_to_listed_macs_or_to_its_first_n_drops_other_sources() {
    let id = unique_id();
    let [sta, stk, lis] = ["sta", "stk", "lis"].map(|p| format!("{id}{p}"));
    let allowed = mac(2, 1);
    let sw = Switchd::start(
        &format!(
            "vlans: [{{ id: 10 }}]\nports:\n\
             \x20 - {{ name: {sta}, kind: tap, mode: access, vlan: 10, allowed_macs: [\"{}\"] }}\n\
             \x20 - {{ name: {stk}, kind: tap, mode: access, vlan: 10, max_macs: 3, mac_limit_action: drop }}\n\
             \x20 - {{ name: {lis}, kind: tap, mode: access, vlan: 10 }}\n",
            mac_string(allowed)
        ),
        2,
    );
    let h_sta = Host::attach_quiet(&sta, "198.18.0.1", allowed);
    let h_stk = Host::attach_quiet(&stk, "198.18.0.2", mac(3, 1));
    let h_lis = Host::attach_quiet(&lis, "198.18.0.3", mac(4, 1));
    let (mut r_sta, mut r_stk, mut r_lis) = (h_sta.raw(), h_stk.raw(), h_lis.raw());
    let mut cap = h_lis.raw();
    let m_lis = mac(4, 1);
    let stranger = mac(2, 9);
    // The listener makes itself known first, so that a spoofer could try to take its MAC.
    r_lis.send(&frame(BROADCAST, m_lis, &[], b"vs-sec-hello"));
    assert!(eventually(Duration::from_secs(2), || port_of(
        &sw, 10, m_lis
    )
    .is_some_and(|p| p == lis)));

    let gap = Duration::from_millis(1);
    let seen = std::thread::scope(|s| {
        let h = s.spawn(|| cap.capture(b"vs-sec-", Duration::from_millis(2000)));
        std::thread::sleep(Duration::from_millis(200));
        // The allowed MAC passes; a stranger and the listener's own MAC do not.
        send_all(
            &mut r_sta,
            &vec![frame(BROADCAST, allowed, &[], b"vs-sec-ok"); 20],
            gap,
        );
        send_all(
            &mut r_sta,
            &vec![frame(BROADCAST, stranger, &[], b"vs-sec-spoof"); 25],
            gap,
        );
        send_all(
            &mut r_sta,
            &vec![frame(BROADCAST, m_lis, &[], b"vs-sec-spoof"); 25],
            gap,
        );
        // The sticky port learns its first three sources; the fourth is dropped, the first
        // still passes afterwards.
        for n in 1..=3 {
            send_all(
                &mut r_stk,
                &vec![frame(BROADCAST, mac(3, n), &[], b"vs-sec-n"); 5],
                gap,
            );
        }
        send_all(
            &mut r_stk,
            &vec![frame(BROADCAST, mac(3, 4), &[], b"vs-sec-4th"); 10],
            gap,
        );
        send_all(
            &mut r_stk,
            &vec![frame(BROADCAST, mac(3, 1), &[], b"vs-sec-n"); 5],
            gap,
        );
        h.join().unwrap()
    });
    settle(&sw, &sta);
    let n = |m: &[u8]| count_with(&seen, m);
    assert_eq!(n(b"vs-sec-ok"), 20, "frames from the allowed MAC must pass");
    assert_eq!(
        n(b"vs-sec-spoof"),
        0,
        "a spoofed source passed the allowed_macs port"
    );
    assert_eq!(
        n(b"vs-sec-n"),
        20,
        "the sticky port's first three sources must pass"
    );
    assert_eq!(
        n(b"vs-sec-4th"),
        0,
        "the sticky port's fourth source passed"
    );
    assert_eq!(
        port_of(&sw, 10, m_lis).as_deref(),
        Some(lis.as_str()),
        "the listener's MAC moved although the spoofer's frames were refused"
    );
    assert_eq!(port_of(&sw, 10, stranger), None, "the stranger was learned");
    assert_eq!(port_of(&sw, 10, allowed).as_deref(), Some(sta.as_str()));
    let sticky: BTreeSet<String> = fdb(&sw, &["--port", &stk])
        .into_iter()
        .map(|(_, m, _)| m)
        .collect();
    assert_eq!(
        sticky,
        (1..=3)
            .map(|n| mac_string(mac(3, n)))
            .collect::<BTreeSet<_>>(),
        "the sticky port must hold its first three sources"
    );
    assert!(
        eventually(Duration::from_secs(2), || {
            let log = sw.log();
            line_with(
                &log,
                "WARN",
                &[
                    "frame from a MAC not allowed on the port dropped",
                    &format!("port={sta}"),
                ],
            )
            .is_some()
                && line_with(
                    &log,
                    "WARN",
                    &["port reached its MAC limit", &format!("port={stk}")],
                )
                .is_some()
        }),
        "missing warnings:\n{}",
        sw.log()
    );
    let (st_sta, st_stk) = (sw.port_counters(&sta), sw.port_counters(&stk));
    sw.stop();
    assert_eq!(st_sta["drop_mac_not_allowed"], 50, "{sta}: {st_sta:?}");
    assert_eq!(st_stk["drop_mac_limit"], 10, "{stk}: {st_stk:?}");
    assert_eq!(st_stk["drop_mac_not_allowed"], 0, "{stk}: {st_stk:?}");
}

/// Three quiet hosts in VLAN 10: a victim, a spoofer and an observer.
struct Trio {
    sw: Switchd,
    vic: Host,
    spf: Host,
    obs: Host,
    names: [String; 3],
}

const VICTIM: [u8; 6] = [0x02, 0x53, 0x45, 0x43, 5, 1];

fn trio(extra: &str) -> Trio {
    let id = unique_id();
    let names = ["vic", "spf", "obs"].map(|p| format!("{id}{p}"));
    let [vic, spf, obs] = &names;
    let sw = Switchd::start(
        &format!(
            "{extra}vlans: [{{ id: 10 }}]\nports:\n\
             \x20 - {{ name: {vic}, kind: tap, mode: access, vlan: 10 }}\n\
             \x20 - {{ name: {spf}, kind: tap, mode: access, vlan: 10 }}\n\
             \x20 - {{ name: {obs}, kind: tap, mode: access, vlan: 10 }}\n"
        ),
        2,
    );
    Trio {
        vic: Host::attach_quiet(vic, "198.18.0.1", VICTIM),
        spf: Host::attach_quiet(spf, "198.18.0.2", mac(5, 2)),
        obs: Host::attach_quiet(obs, "198.18.0.3", mac(5, 3)),
        sw,
        names,
    }
}

/// Finding 3 of issue 9: a spoofed source moves the victim's MAC, which is logged at info;
/// a quick back and forth is flapping, logged at warn and counted.
#[test]
fn a_spoofed_mac_move_is_logged_and_flapping_is_warned_and_counted() {
    let t = trio("");
    let [vic, spf, _] = &t.names;
    let (mut rv, mut rs) = (t.vic.raw(), t.spf.raw());
    let from_victim = frame(BROADCAST, VICTIM, &[], b"vs-flap-v");
    rv.send(&from_victim);
    assert!(eventually(Duration::from_secs(2), || port_of(
        &t.sw, 10, VICTIM
    )
    .is_some_and(|p| p == *vic)));
    rs.send(&frame(BROADCAST, VICTIM, &[], b"vs-flap-s"));
    assert!(
        eventually(Duration::from_secs(2), || port_of(&t.sw, 10, VICTIM)
            .is_some_and(|p| p == *spf)),
        "the spoofed frame did not move the victim's MAC"
    );
    let (m, to, from) = (
        format!("mac={}", mac_string(VICTIM)),
        format!("to={spf}"),
        format!("from={vic}"),
    );
    let moved = [
        "MAC moved",
        "vlan=10",
        m.as_str(),
        from.as_str(),
        to.as_str(),
    ];
    let move_logged = eventually(Duration::from_secs(2), || {
        line_with(&t.sw.log(), "INFO", &moved).is_some()
    });
    // 20 frames from each within 2 s.
    for _ in 0..20 {
        rv.send(&from_victim);
        std::thread::sleep(Duration::from_millis(25));
        rs.send(&frame(BROADCAST, VICTIM, &[], b"vs-flap-s"));
        std::thread::sleep(Duration::from_millis(25));
    }
    let flapping = ["MAC is flapping between ports", "vlan=10", m.as_str()];
    let flap_logged = eventually(Duration::from_secs(2), || {
        line_with(&t.sw.log(), "WARN", &flapping).is_some()
    });
    let (sv, ss) = (t.sw.port_counters(vic), t.sw.port_counters(spf));
    let log = t.sw.stop();
    assert!(
        sv["mac_moves"] >= 20 && ss["mac_moves"] >= 21,
        "moves to {vic}: {sv:?}; to {spf}: {ss:?}"
    );
    assert!(
        sv["mac_flaps"] + ss["mac_flaps"] > 0,
        "no flap counted: {vic}: {sv:?}; {spf}: {ss:?}"
    );
    assert!(move_logged, "no INFO line {moved:?} in the log:\n{log}");
    assert!(
        flap_logged,
        "no WARN line {flapping:?} within 2 s of 40 moves in 2 s; the log:\n{log}"
    );
}

/// With damping, a flapping victim's MAC is held, and frames for it keep reaching the victim.
#[test]
/// Damping stops a flapping MAC from moving for `damp_secs`: it stays on one port, every
/// later frame from the other port counts as `mac_damped`, and frames to the MAC go to that
/// one port only. Which port that is depends on where the flapping move left it (damping is
/// not port security: against a spoofer, `allowed_macs` is, see the test above).
fn a_damped_mac_stops_moving_and_its_frames_go_to_one_port() {
    let t = trio("mac_flap: { moves: 3, window_secs: 10, damp_secs: 30 }\n");
    let [vic, spf, _] = &t.names;
    let (mut rv, mut rs, mut ro) = (t.vic.raw(), t.spf.raw(), t.obs.raw());
    let (mut cv, mut cs) = (t.vic.raw(), t.spf.raw());
    let from_victim = frame(BROADCAST, VICTIM, &[], b"vs-damp-v");
    let spoofed = frame(BROADCAST, VICTIM, &[], b"vs-damp-s");
    rv.send(&from_victim);
    assert!(eventually(Duration::from_secs(2), || port_of(
        &t.sw, 10, VICTIM
    )
    .is_some_and(|p| p == *vic)));
    let alternate = |rv: &mut crate::harness::Raw, rs: &mut crate::harness::Raw| {
        for _ in 0..10 {
            rs.send(&spoofed);
            std::thread::sleep(Duration::from_millis(25));
            rv.send(&from_victim);
            std::thread::sleep(Duration::from_millis(25));
        }
    };
    alternate(&mut rv, &mut rs);
    std::thread::sleep(Duration::from_millis(100));
    let held_on = port_of(&t.sw, 10, VICTIM).expect("the MAC is in the table");
    // More flapping changes nothing during the hold.
    alternate(&mut rv, &mut rs);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        port_of(&t.sw, 10, VICTIM).as_deref(),
        Some(held_on.as_str()),
        "a damped MAC moved during its hold"
    );
    // The observer sends 100 frames to the victim's MAC: all reach the port it is held on.
    let to_victim = frame(VICTIM, mac(5, 3), &[], b"vs-damp-to");
    let (at_vic, at_spf) = std::thread::scope(|s| {
        let a = s.spawn(|| cv.capture(b"vs-damp-to", Duration::from_millis(1500)));
        let b = s.spawn(|| cs.capture(b"vs-damp-to", Duration::from_millis(1500)));
        std::thread::sleep(Duration::from_millis(200));
        send_all(&mut ro, &vec![to_victim; 100], Duration::from_millis(1));
        (a.join().unwrap().len(), b.join().unwrap().len())
    });
    let (sv, ss) = (t.sw.port_counters(vic), t.sw.port_counters(spf));
    t.sw.stop();
    let damped_other = if held_on == *vic {
        ss["mac_damped"]
    } else {
        sv["mac_damped"]
    };
    assert!(
        damped_other >= 10,
        "frames from the other port were not all damped: {vic}: {sv:?}; {spf}: {ss:?}"
    );
    let expect = if held_on == *vic { (100, 0) } else { (0, 100) };
    assert_eq!(
        (at_vic, at_spf),
        expect,
        "frames to the damped MAC (held on {held_on}): (at the victim, at the spoofer)"
    );
}

/// A port with `max_macs: 2, mac_limit_action: shutdown` (h), another host in its VLAN (o)
/// and a third (p) to show the rest of the switch works.
struct Shut {
    sw: Switchd,
    h: Host,
    o: Host,
    p: Host,
    port: String,
}

const H: [u8; 6] = [0x02, 0x53, 0x45, 0x43, 6, 1];

/// Sends `n` marked frames from `src` to `dst` on `from`; returns how many reach `to`.
fn delivered(from: &Host, src: [u8; 6], dst: [u8; 6], to: &Host, marker: &[u8], n: usize) -> usize {
    let (mut tx, mut rx) = (from.raw(), to.raw());
    std::thread::scope(|s| {
        let h = s.spawn(|| rx.capture(marker, Duration::from_millis(800)));
        std::thread::sleep(Duration::from_millis(150));
        send_all(
            &mut tx,
            &vec![frame(dst, src, &[], marker); n],
            Duration::from_millis(1),
        );
        h.join().unwrap().len()
    })
}

/// Builds the lab and shuts h's port down with a third source.
fn shut_down() -> Shut {
    let id = unique_id();
    let [port, o, p] = ["shp", "o", "p"].map(|x| format!("{id}{x}"));
    let sw = Switchd::start(
        &format!(
            "vlans: [{{ id: 10 }}]\nports:\n\
             \x20 - {{ name: {port}, kind: tap, mode: access, vlan: 10, max_macs: 2, mac_limit_action: shutdown }}\n\
             \x20 - {{ name: {o}, kind: tap, mode: access, vlan: 10 }}\n\
             \x20 - {{ name: {p}, kind: tap, mode: access, vlan: 10 }}\n"
        ),
        2,
    );
    let s = Shut {
        h: Host::attach_quiet(&port, "198.18.0.1", H),
        o: Host::attach(&o, "198.18.0.2"),
        p: Host::attach(&p, "198.18.0.3"),
        sw,
        port,
    };
    let m_o = s.o.mac();
    // Before: h is reachable both ways (its one source, H, learned).
    assert!(s.o.reaches(&s.h.addr), "o -> h before the shutdown");
    assert_eq!(
        delivered(&s.h, H, BROADCAST, &s.o, b"vs-shut-pre-from", 5),
        5
    );
    assert_eq!(delivered(&s.o, m_o, H, &s.h, b"vs-shut-pre-to", 5), 5);
    let mut r = s.h.raw();
    r.send(&frame(BROADCAST, mac(6, 2), &[], b"vs-shut-second"));
    assert!(
        eventually(Duration::from_secs(2), || fdb(&s.sw, &["--port", &s.port])
            .len()
            == 2),
        "the second source was not learned: {:?}",
        fdb(&s.sw, &["--port", &s.port])
    );
    r.send(&frame(BROADCAST, mac(6, 3), &[], b"vs-shut-third"));
    assert!(
        eventually(Duration::from_secs(2), || shutdowns(&s.sw.log(), &s.port)
            == 1),
        "no WARN line about the port's shutdown:\n{}",
        s.sw.log()
    );
    s
}

/// Whether the API says port security has shut `port` down (`state.security.shutdown`).
fn is_shut_down(sw: &Switchd, port: &str) -> bool {
    let out = sw.ctl_ok(&["--json", "port", "show", port]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("port JSON");
    v["state"]["security"]["shutdown"]
        .as_bool()
        .unwrap_or_else(|| panic!("no state.security.shutdown: {out}"))
}

/// How many WARN lines say port `port` was shut down.
fn shutdowns(log: &str, port: &str) -> usize {
    let p = format!("port={port}");
    log.lines()
        .filter(|l| {
            l.split_whitespace().nth(1) == Some("WARN")
                && l.contains("port shut down by port security")
                && l.split_whitespace().any(|w| w == p)
        })
        .count()
}

#[test]
fn a_third_source_shuts_a_port_down_and_the_others_keep_working() {
    let s = shut_down();
    let m_o = s.o.mac();
    let api_says = is_shut_down(&s.sw, &s.port);
    let from = delivered(&s.h, H, BROADCAST, &s.o, b"vs-shut-from", 20);
    let to = delivered(&s.o, m_o, H, &s.h, b"vs-shut-to", 20);
    let ping = s.o.cannot_reach(&s.h.addr);
    let others = s.o.reaches(&s.p.addr) && s.p.reaches(&s.o.addr);
    let Shut {
        sw,
        h: _h,
        o: _o,
        p: _p,
        port,
    } = s;
    let st = sw.port_counters(&port);
    sw.stop();
    assert!(api_says, "the API does not show the port as shut down");
    assert_eq!(from, 0, "frames from the shut-down port were delivered");
    assert_eq!(to, 0, "frames to the shut-down port were delivered");
    assert!(ping, "o still reaches the shut-down port's host by ping");
    assert!(others, "o and p no longer reach each other");
    assert!(
        st["drop_port_disabled"] >= 40,
        "20 frames from and 20 to the port must count as port_disabled: {st:?}"
    );
    assert!(st["drop_mac_limit"] >= 1, "{st:?}");
}

/// A shut-down port comes back with `POST /api/v1/ports/{name}/enable` (sent as raw HTTP),
/// and, shut down again, with `switchctl port enable NAME`.
#[test]
fn a_shut_down_port_is_enabled_again() {
    let s = shut_down();
    let m_o = s.o.mac();
    assert!(s.o.cannot_reach(&s.h.addr), "the port is not shut down");
    assert!(
        is_shut_down(&s.sw, &s.port),
        "the API does not show the port shut down"
    );
    let (status, answer) = http(
        &s.sw.api,
        "POST",
        &format!("/api/v1/ports/{}/enable", s.port),
    );
    assert!(
        (200..300).contains(&status),
        "POST /api/v1/ports/{}/enable: {answer}",
        s.port
    );
    assert!(
        !is_shut_down(&s.sw, &s.port),
        "the API still shows the port shut down"
    );
    assert!(s.o.reaches(&s.h.addr), "o -> h after the port was enabled");
    assert_eq!(
        delivered(&s.h, H, BROADCAST, &s.o, b"vs-shut-again-from", 5),
        5
    );
    assert_eq!(delivered(&s.o, m_o, H, &s.h, b"vs-shut-again-to", 5), 5);

    // Shut down again by new sources, and enabled with switchctl this time.
    let mut r = s.h.raw();
    for n in 4..=6 {
        r.send(&frame(BROADCAST, mac(6, n), &[], b"vs-shut-more"));
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        eventually(Duration::from_secs(2), || shutdowns(&s.sw.log(), &s.port)
            == 2),
        "the port was not shut down a second time:\n{}",
        s.sw.log()
    );
    assert!(
        s.o.cannot_reach(&s.h.addr),
        "the port is not shut down again"
    );
    s.sw.ctl_ok(&["port", "enable", &s.port]);
    assert!(
        !is_shut_down(&s.sw, &s.port),
        "still shut down after switchctl port enable"
    );
    assert!(s.o.reaches(&s.h.addr), "o -> h after switchctl port enable");
}
