//! Seeing what the switch does, against real traffic: the dry trace (`switchctl trace`), the
//! live trace of what the workers actually did, and captures read back with tcpdump.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{frame, http, unique_id, Host, Switchd, BROADCAST, SWITCHCTL};

fn mac(n: u8) -> [u8; 6] {
    [2, 0x5e, 0x10, 0, 0, n]
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Ports: `a`, `b` access 10, `c` access 20, `t` trunk [10, 20] without a native VLAN.
fn topology(id: &str) -> String {
    format!(
        "vlans: [{{ id: 10 }}, {{ id: 20 }}]\nports:\n\
         \x20 - {{ name: {id}a, kind: tap, mode: access, vlan: 10 }}\n\
         \x20 - {{ name: {id}b, kind: tap, mode: access, vlan: 10 }}\n\
         \x20 - {{ name: {id}c, kind: tap, mode: access, vlan: 20 }}\n\
         \x20 - {{ name: {id}t, kind: tap, mode: trunk, vlans: [10, 20] }}\n"
    )
}

/// What a trace says happened, in the terms both traces share: the rules in order, the
/// verdict, the VLAN, the drop counter and the copies.
fn outcome(t: &Value) -> (Vec<String>, String, Value, Value, Vec<(String, String)>) {
    let rules = t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rule"].as_str().unwrap().to_string())
        .collect();
    let egress = t["egress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_string();
            (s("port"), s("tag"))
        })
        .collect();
    (
        rules,
        t["verdict"].as_str().unwrap().to_string(),
        t["vlan"].clone(),
        t["drop_reason"].clone(),
        egress,
    )
}

/// For frames that exercise each rule: the dry trace made before the frame is sent, the live
/// trace of what the worker did with it, and where it was actually delivered all agree.
#[test]
fn the_trace_agrees_with_what_the_workers_do() {
    let id = unique_id();
    let sw = Switchd::start(&topology(&id), 2);
    let port = |p: &str| format!("{id}{p}");
    let hosts: Vec<Host> = ["a", "b", "c", "t"]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Host::attach_quiet(&port(p), &format!("198.18.9.{}", i + 1), mac(100 + i as u8))
        })
        .collect();
    let mut raws: Vec<_> = hosts.iter().map(|h| h.raw()).collect();
    // (what, ingress host, frame): each source MAC is new, so its live trace matches it alone.
    let cases: Vec<(&str, usize, Vec<u8>)> = vec![
        (
            "broadcast on an access port",
            0,
            frame(BROADCAST, mac(1), &[], b"w-bcast"),
        ),
        (
            "tagged on an access port",
            0,
            frame(BROADCAST, mac(2), &[20], b"w-tagacc"),
        ),
        (
            "VLAN 20 on the trunk",
            3,
            frame(BROADCAST, mac(3), &[20], b"w-trunk20"),
        ),
        (
            "VID not allowed on the trunk",
            3,
            frame(BROADCAST, mac(4), &[30], b"w-vid30"),
        ),
        (
            "untagged on a trunk without native",
            3,
            frame(BROADCAST, mac(5), &[], b"w-untag"),
        ),
        (
            "unknown unicast",
            1,
            frame(mac(77), mac(6), &[], b"w-unknown"),
        ),
        (
            "known unicast (mac 1 on a)",
            1,
            frame(mac(1), mac(7), &[], b"w-known"),
        ),
        (
            "known unicast from the trunk",
            3,
            frame(mac(7), mac(8), &[10], b"w-fromtrunk"),
        ),
        (
            "to a MAC behind the ingress port",
            0,
            frame(mac(1), mac(9), &[], b"w-behind"),
        ),
    ];
    for (what, from, bytes) in cases {
        let ingress = port(["a", "b", "c", "t"][from]);
        let src = crate::harness::mac_string(bytes[6..12].try_into().unwrap());
        let dry = sw.ctl_ok(&["--json", "trace", &ingress, "--hex", &hex(&bytes)]);
        let dry: Value = serde_json::from_str(&dry).unwrap();
        let path = format!("/api/v1/ports/{ingress}/trace");
        api(&sw, "POST", &format!("{path}?count=1&src={src}"));
        raws[from].send(&bytes);
        let live = api(&sw, "GET", &format!("{path}?wait_secs=5"));
        let records = live["records"].as_array().unwrap();
        assert_eq!(records.len(), 1, "{what}: {live}");
        let live = &records[0]["trace"];
        let (dry_o, live_o) = (outcome(&dry), outcome(live));
        assert_eq!(dry_o, live_o, "{what}:\ndry {dry}\nlive {live}");
        // Delivery: exactly the ports the trace names got the frame.
        let want: BTreeSet<String> = live_o.4.iter().map(|(p, _)| p.clone()).collect();
        let mut got = BTreeSet::new();
        for (i, p) in ["a", "b", "c", "t"].iter().enumerate() {
            if i != from
                && !raws[i]
                    .capture(marker_of(&bytes), Duration::from_millis(300))
                    .is_empty()
            {
                got.insert(port(p));
            }
        }
        assert_eq!(
            got, want,
            "{what}: delivered to {got:?}, the trace says {want:?}"
        );
    }
    // switchctl's live trace, for people: the next frame from mac(20) on b.
    let live = std::thread::scope(|s| {
        let run = s.spawn(|| {
            sw.ctl_ok(&[
                "trace",
                &port("b"),
                "--live",
                "1",
                "--src",
                &mac_text(20),
                "--wait",
                "8",
            ])
        });
        std::thread::sleep(Duration::from_millis(700));
        raws[1].send(&frame(mac(1), mac(20), &[], b"w-ctl"));
        run.join().unwrap()
    });
    assert!(live.contains("1 of 1 frames recorded"), "{live}");
    assert!(
        live.contains("dst_hit") && live.contains("learn_new"),
        "{live}"
    );
    assert!(
        live.contains(&format!("forwarded in VLAN 10 to {} (untagged)", port("a"))),
        "{live}"
    );
    sw.stop();
}

/// The payload marker of a harness frame (after the addresses, tags and EtherType).
fn marker_of(f: &[u8]) -> &[u8] {
    let mut at = 12;
    while f[at..at + 2] == [0x81, 0x00] {
        at += 4;
    }
    let m = &f[at + 2..];
    let end = m.iter().position(|&b| b == 0).unwrap_or(m.len());
    &m[..end]
}

/// One API call; the answer as JSON (panics on an error answer).
fn api(sw: &Switchd, method: &str, path: &str) -> Value {
    let (status, answer) = http(&sw.api, method, path);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!((200..300).contains(&status), "{method} {path}: {answer}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"))
}

/// A capture of the trunk port, both ways, read back with tcpdump: the frames it sent carry
/// the tag of their VLAN, the frames it received theirs, and the count and lengths are right.
#[test]
fn a_capture_reads_back_with_tcpdump() {
    let id = unique_id();
    let sw = Switchd::start(&topology(&id), 2);
    let port = |p: &str| format!("{id}{p}");
    let a = Host::attach_quiet(&port("a"), "198.18.9.1", mac(110));
    let t = Host::attach_quiet(&port("t"), "198.18.9.4", mac(113));
    let (mut ra, mut rt) = (a.raw(), t.raw());
    let file = Removed(std::env::temp_dir().join(format!("vlanswitch-{id}.pcapng")));
    let file = &file.0;
    let cap = Command::new(SWITCHCTL)
        .args([
            "--server",
            &sw.api,
            "capture",
            &port("t"),
            "-c",
            "5",
            "--seconds",
            "20",
            "-w",
        ])
        .arg(file)
        .stderr(Stdio::piped())
        .spawn()
        .expect("switchctl capture");
    // Armed once the stream's header is there.
    assert!(crate::harness::eventually(Duration::from_secs(5), || {
        std::fs::metadata(file).is_ok_and(|m| m.len() > 0)
    }));
    for i in 0..3u8 {
        ra.send(&frame(BROADCAST, mac(110), &[], &[b'c', b'a', i]));
    }
    let long = {
        let mut f = frame(BROADCAST, mac(113), &[20], b"ct-long");
        f.resize(1000, 0x55);
        f
    };
    rt.send(&frame(BROADCAST, mac(113), &[10], b"ct-short"));
    rt.send(&long);
    let out = cap.wait_with_output().expect("capture ends after 5 frames");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("5 frames captured on {}, 0 lost", port("t"))),
        "{err}"
    );
    let td = Command::new("tcpdump")
        .args(["-nn", "-e", "-r"])
        .arg(file)
        .output()
        .expect("tcpdump (installed by .ci/run)");
    let text = String::from_utf8_lossy(&td.stdout);
    assert!(
        td.status.success(),
        "{}",
        String::from_utf8_lossy(&td.stderr)
    );
    // One line per frame (tcpdump adds indented hex lines for an unknown EtherType).
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(char::is_whitespace))
        .collect();
    assert_eq!(lines.len(), 5, "{text}");
    // Sent by the trunk: the access port's untagged frames, with VLAN 10's tag pushed (60 + 4).
    let sent = lines
        .iter()
        .filter(|l| l.contains(&mac_text(110)))
        .collect::<Vec<_>>();
    assert_eq!(sent.len(), 3, "{text}");
    assert!(
        sent.iter()
            .all(|l| l.contains("vlan 10") && l.contains("length 64")),
        "{text}"
    );
    // Received by the trunk, tags as they came: VLAN 10 short, VLAN 20 at 1000 bytes.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("vlan 10") && l.contains(&mac_text(113))),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("vlan 20") && l.contains("length 1000")),
        "{text}"
    );

    // Streamed into tcpdump through a pipe while it runs.
    let mut cap = Command::new(SWITCHCTL)
        .args([
            "--server",
            &sw.api,
            "capture",
            &port("a"),
            "--direction",
            "rx",
            "-c",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let td = Command::new("tcpdump")
        .args(["-nn", "-r", "-"])
        .stdin(cap.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..2u8 {
        ra.send(&frame(BROADCAST, mac(110), &[], &[b'p', i]));
    }
    let out = td.wait_with_output().unwrap();
    let _ = cap.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines()
            .filter(|l| !l.starts_with(char::is_whitespace))
            .count(),
        2,
        "{text}"
    );
    sw.stop();
}

/// A file removed when the test ends, passed or failed.
struct Removed(std::path::PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn mac_text(n: u8) -> String {
    crate::harness::mac_string(mac(n))
}

/// A mirror of port `a` (both ways) to `mon`: `mon` gets a copy of what `a` receives and sends,
/// nothing of other traffic, and what it sends itself is dropped. Changed live to mirror VLAN
/// 20 with tag 99, then removed: `mon` is back in its VLAN.
#[test]
fn a_mirror_copies_its_sources_and_its_output_carries_nothing_else() {
    let id = unique_id();
    let yaml = format!(
        "{}\x20 - {{ name: {id}m, kind: tap, mode: access, vlan: 10 }}\n\
         mirrors: [{{ name: span, output: {id}m, ports: [{id}a] }}]\n",
        topology(&id)
    );
    let sw = Switchd::start(&yaml, 2);
    let port = |p: &str| format!("{id}{p}");
    let hosts: Vec<Host> = ["a", "b", "c", "t", "m"]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Host::attach_quiet(&port(p), &format!("198.18.9.{}", i + 1), mac(120 + i as u8))
        })
        .collect();
    let mut raws: Vec<_> = hosts.iter().map(|h| h.raw()).collect();
    let (a, b, c, m) = (0, 1, 2, 4);
    let gets = |raws: &mut Vec<crate::harness::Raw>, i: usize, marker: &[u8]| {
        raws[i].capture(marker, Duration::from_millis(300)).len()
    };
    // What a receives: copied as received.
    raws[a].send(&frame(BROADCAST, mac(120), &[], b"m-rx"));
    assert_eq!(gets(&mut raws, m, b"m-rx"), 1, "a's received frame on mon");
    // What a sends: b's reply to a, copied as sent.
    raws[b].send(&frame(mac(120), mac(121), &[], b"m-tx"));
    assert_eq!(gets(&mut raws, a, b"m-tx"), 1);
    assert_eq!(gets(&mut raws, m, b"m-tx"), 1, "a's sent frame on mon");
    // Other traffic never reaches mon; what mon sends is dropped.
    raws[c].send(&frame(BROADCAST, mac(122), &[], b"m-other"));
    assert_eq!(gets(&mut raws, m, b"m-other"), 0, "VLAN 20 traffic on mon");
    raws[m].send(&frame(BROADCAST, mac(124), &[], b"m-in"));
    assert_eq!(gets(&mut raws, b, b"m-in"), 0, "mon's own frame forwarded");
    assert!(sw.port_counters(&port("m"))["drop_mirror_output"] >= 1);
    let shown = sw.ctl_ok(&["mirror", "list"]);
    assert!(
        shown.contains("span") && shown.contains(&port("m")),
        "{shown}"
    );

    // Live: VLAN 20 instead, its copies tagged 99.
    sw.ctl_ok(&["mirror", "del", "span"]);
    sw.ctl_ok(&[
        "mirror",
        "add",
        "span",
        "--output",
        &port("m"),
        "--vlan",
        "20",
        "--tag",
        "99",
    ]);
    let mut tagged = hosts[m].tagged_capture();
    raws[c].send(&frame(BROADCAST, mac(122), &[], b"m-v20"));
    let copies = tagged.capture(b"m-v20", Duration::from_millis(400));
    assert_eq!(copies.len(), 1, "VLAN 20's frame on mon");
    assert_eq!(
        &copies[0][12..16],
        &[0x81, 0x00, 0x00, 99],
        "tagged 99 on mon"
    );
    drop(tagged);
    // Removed: mon is a VLAN 10 port again.
    sw.ctl_ok(&["mirror", "del", "span"]);
    raws[a].send(&frame(BROADCAST, mac(120), &[], b"m-back"));
    assert_eq!(gets(&mut raws, m, b"m-back"), 1, "mon back in VLAN 10");
    raws[m].send(&frame(BROADCAST, mac(124), &[], b"m-back-in"));
    assert_eq!(gets(&mut raws, b, b"m-back-in"), 1, "mon forwards again");
    sw.stop();
}
