//! The event stream (`GET /api/v1/events`, `switchctl events`) and the drop log against the
//! real switchd: what learning, a move, a change, drops and a removed port send; a flood of
//! new MACs bounded per second and summed up, with nothing lost silently; a stream that keeps
//! its connection when all are taken, and that does not hold switchd's stop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{
    eventually, frame, mac_string, unique_id, Host, Switchd, BROADCAST, SWITCHCTL,
};

/// A MAC built for one test: `02:45:56:54:TAG:N` ("EVT").
fn mac(tag: u8, n: u8) -> [u8; 6] {
    [0x02, 0x45, 0x56, 0x54, tag, n]
}

/// One event as the test received it.
#[derive(Debug, Clone)]
struct Got {
    at: Instant,
    id: u64,
    event: String,
    data: Value,
}

/// An open event stream, read by a thread of its own.
struct Events {
    got: Arc<Mutex<Vec<Got>>>,
    keepalives: Arc<AtomicUsize>,
    ended: Arc<AtomicBool>,
}

impl Events {
    /// Opens `GET /api/v1/events{query}` as a plain HTTP/1.1 client; returns once the answer's
    /// head (200, `text/event-stream`) is in, so the stream is subscribed.
    fn open(api: &str, query: &str) -> Events {
        let mut s = TcpStream::connect(api).expect("connect to the API");
        write!(
            s,
            "GET /api/v1/events{query} HTTP/1.1\r\nHost: switchd\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut r = BufReader::new(s);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).expect("read the head");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("content-type: text/event-stream"), "{head}");
        assert!(lower.contains("transfer-encoding: chunked"), "{head}");
        let e = Events {
            got: Arc::default(),
            keepalives: Arc::default(),
            ended: Arc::default(),
        };
        let (got, keepalives, ended) = (e.got.clone(), e.keepalives.clone(), e.ended.clone());
        std::thread::spawn(move || {
            let mut pending = String::new();
            let (mut id, mut event) = (0, String::new());
            loop {
                let mut size = String::new();
                if r.read_line(&mut size).unwrap_or(0) == 0 {
                    break;
                }
                let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
                    break;
                };
                if size == 0 {
                    break;
                }
                let mut chunk = vec![0; size + 2];
                if r.read_exact(&mut chunk).is_err() {
                    break;
                }
                pending.push_str(&String::from_utf8_lossy(&chunk[..size]));
                while let Some(end) = pending.find('\n') {
                    let line: String = pending.drain(..=end).collect();
                    let line = line.trim_end_matches('\n');
                    if line == ": keepalive" {
                        keepalives.fetch_add(1, Ordering::Relaxed);
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().expect("a numeric id");
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        let data = serde_json::from_str(v).expect("data is one line of JSON");
                        got.lock().unwrap().push(Got {
                            at: Instant::now(),
                            id,
                            event: std::mem::take(&mut event),
                            data,
                        });
                    } else {
                        assert!(line.is_empty(), "unexpected stream line {line:?}");
                    }
                }
            }
            ended.store(true, Ordering::Relaxed);
        });
        e
    }

    fn all(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// The first event that `pred` accepts, waiting up to `limit` for it.
    fn wait_for(&self, limit: Duration, pred: impl Fn(&Got) -> bool) -> Got {
        let mut found = None;
        eventually(limit, || {
            found = self.all().into_iter().find(|g| pred(g));
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no such event within {limit:?}; got {:#?}", self.all()))
    }
}

/// Three quiet hosts on access ports: `a` and `b` in VLAN 10, `c` in VLAN 20.
struct Three {
    sw: Switchd,
    a: Host,
    b: Host,
    c: Host,
}

fn three() -> Three {
    let id = unique_id();
    let [a, b, c] = ["a", "b", "c"].map(|p| format!("{id}ev{p}"));
    let sw = Switchd::start(
        &format!(
            "vlans: [{{ id: 10 }}, {{ id: 20 }}]\nports:\n\
             \x20 - {{ name: {a}, kind: tap, mode: access, vlan: 10 }}\n\
             \x20 - {{ name: {b}, kind: tap, mode: access, vlan: 10 }}\n\
             \x20 - {{ name: {c}, kind: tap, mode: access, vlan: 20 }}\n"
        ),
        1,
    );
    Three {
        a: Host::attach_quiet(&a, "198.18.7.1", mac(1, 1)),
        b: Host::attach_quiet(&b, "198.18.7.2", mac(1, 2)),
        c: Host::attach_quiet(&c, "198.18.7.3", mac(1, 3)),
        sw,
    }
}

const FIRST_DROP: &str = "first drop of this reason on the port";
const DROP_SUMMARY: &str = "drops on the port since its last drop line";

#[test]
fn the_stream_tells_learning_moves_changes_drops_and_links_and_the_log_tells_drops() {
    let t = three();
    let (a, b, c) = (&t.a.ifname, &t.b.ifname, &t.c.ifname);
    let ev = Events::open(&t.sw.api, "");
    let (mut ra, mut rb) = (t.a.raw(), t.b.raw());

    // a new MAC, then the same MAC from another port
    let x = mac(2, 1);
    ra.send(&frame(BROADCAST, x, &[], b"vs-ev-learn"));
    let learned = ev.wait_for(Duration::from_secs(5), |g| {
        g.event == "mac_learned" && g.data["mac"] == mac_string(x)
    });
    assert_eq!(
        learned.data,
        json!({"vlan": 10, "mac": mac_string(x), "port": a})
    );
    rb.send(&frame(BROADCAST, x, &[], b"vs-ev-move"));
    let moved = ev.wait_for(Duration::from_secs(5), |g| g.event == "mac_moved");
    assert_eq!(
        moved.data,
        json!({"vlan": 10, "mac": mac_string(x), "from": a, "to": b, "flapping": false})
    );
    assert!(moved.id > learned.id);

    // a change, seen by the raw stream and by `switchctl events` (for people and as JSON)
    let follow = |json: bool| {
        let mut cmd = Command::new(SWITCHCTL);
        cmd.args(["--server", &t.sw.api]);
        if json {
            cmd.arg("--json");
        }
        cmd.args(["events", "--types", "config_applied", "-n", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run switchctl events")
    };
    let (people, machines) = (follow(false), follow(true));
    // Both have subscribed once they have sent their request (switchctl writes it right after
    // connecting); a second is plenty.
    std::thread::sleep(Duration::from_secs(1));
    t.sw.ctl_ok(&["port", "set", c, "--access", "10"]);
    let applied = ev.wait_for(Duration::from_secs(5), |g| g.event == "config_applied");
    let change = json!({"what": "port", "name": c, "field": "vlan", "old": "20", "new": "10"});
    assert!(
        applied.data["changes"]
            .as_array()
            .is_some_and(|ch| ch.contains(&change)),
        "{applied:?}"
    );
    let out = people.wait_with_output().expect("switchctl events");
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{line}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = format!("config_applied port {c} vlan: 20 -> 10");
    assert!(
        line.len() > 9 && line[9..].starts_with(&want) && line.as_bytes()[2] == b':',
        "switchctl events printed {line:?}, want HH:MM:SS {want}"
    );
    let out = machines
        .wait_with_output()
        .expect("switchctl --json events");
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(v["event"], "config_applied");
    assert!(v["data"]["changes"].as_array().unwrap().contains(&change));

    // tagged frames on an access port: the first drop is logged at once, the drops come as an
    // event (within 5 s), and drops kept up for a few seconds make no more than one summary
    // line a minute
    for _ in 0..5 {
        ra.send(&frame(BROADCAST, mac(1, 1), &[10], b"vs-ev-tagged"));
    }
    let dropped = |ev: &Events| -> u64 {
        ev.all()
            .iter()
            .filter(|g| {
                g.event == "drops" && g.data["port"] == *a && g.data["reason"] == "tagged_on_access"
            })
            .map(|g| g.data["frames"].as_u64().unwrap())
            .sum()
    };
    assert!(
        eventually(Duration::from_secs(8), || dropped(&ev) == 5),
        "drops events: {:#?}",
        ev.all()
    );
    let port_a = format!("port={a}");
    assert!(
        eventually(Duration::from_secs(2), || t
            .sw
            .log()
            .lines()
            .any(|l| l.contains(FIRST_DROP) && l.contains(&port_a))),
        "{}",
        t.sw.log()
    );
    for _ in 0..30 {
        ra.send(&frame(BROADCAST, mac(1, 1), &[10], b"vs-ev-tagged"));
        std::thread::sleep(Duration::from_millis(100));
    }

    // a removed port's link goes down
    t.sw.ctl_ok(&["port", "del", c]);
    let link = ev.wait_for(Duration::from_secs(5), |g| {
        g.event == "link" && g.data["port"] == *c
    });
    assert_eq!(link.data, json!({"port": c, "up": false}));

    // Every message so far was numbered in order, from 1.
    let ids: Vec<u64> = ev.all().iter().map(|g| g.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(ev.keepalives.load(Ordering::Relaxed) >= 1);

    // switchd stops at once with a stream open, and ends the stream
    let started = Instant::now();
    let log = t.sw.stop();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        started.elapsed()
    );
    assert!(eventually(Duration::from_secs(2), || ev
        .ended
        .load(Ordering::Relaxed)));

    let firsts: Vec<&str> = log.lines().filter(|l| l.contains(FIRST_DROP)).collect();
    assert_eq!(firsts.len(), 1, "{log}");
    let first = firsts[0];
    for field in [
        port_a.as_str(),
        "reason=\"tagged_on_access\"",
        "meaning=\"A tagged frame (VID 1-4095) on an access port.\"",
        "WARN",
    ] {
        assert!(first.contains(field), "{first}");
    }
    for p in [a, b, c] {
        let summaries = log
            .lines()
            .filter(|l| l.contains(DROP_SUMMARY) && l.contains(&format!("port={p} ")))
            .count();
        assert!(
            summaries <= 1,
            "{summaries} drop summaries for {p} within a minute:\n{log}"
        );
    }
}

/// 2000 new source MACs at once: the stream sends at most 100 events in each of its seconds,
/// and its `summary` events account for every other one (suppressed or lost): together they
/// are exactly the MACs the switch learned.
#[test]
fn a_flood_of_new_macs_is_bounded_per_second_and_summed_up() {
    const FLOOD: u16 = 2000;
    let t = three();
    let ev = Events::open(&t.sw.api, "?types=mac_learned");
    let learned_before = learned(&t.sw);
    let mut ra = t.a.raw();
    let start = Instant::now();
    for i in 0..FLOOD {
        let [hi, lo] = i.to_be_bytes();
        let f = frame(
            BROADCAST,
            [0x02, 0x46, 0x4c, 0x44, hi, lo],
            &[],
            b"vs-ev-flood",
        );
        while ra.try_send(&f).is_err() {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let sent_in = start.elapsed();
    // The switch may not have read every frame (the tap's queue): count what it learned,
    // once that stops growing.
    let mut learned_now = 0;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(300));
        let n = learned(&t.sw) - learned_before;
        if n == learned_now && n > 0 {
            break;
        }
        learned_now = n;
    }
    let accounted = |ev: &Events| -> (u64, u64, u64) {
        let all = ev.all();
        let sent = all.iter().filter(|g| g.event == "mac_learned").count() as u64;
        let summaries = all.iter().filter(|g| g.event == "summary");
        let suppressed = summaries
            .clone()
            .map(|g| g.data["suppressed"]["mac_learned"].as_u64().unwrap_or(0))
            .sum();
        let lost = summaries.map(|g| g.data["lost"].as_u64().unwrap()).sum();
        (sent, suppressed, lost)
    };
    let all_told = eventually(Duration::from_secs(5), || {
        let (s, p, l) = accounted(&ev);
        s + p + l >= learned_now
    });
    let (sent, suppressed, lost) = accounted(&ev);
    assert!(
        all_told && sent + suppressed + lost == learned_now,
        "learned {learned_now}, streamed {sent}, suppressed {suppressed}, lost {lost} \
         (flood sent in {sent_in:?})"
    );
    assert!(
        learned_now > 500,
        "the switch learned only {learned_now} MACs"
    );
    assert!(suppressed + lost > 0, "nothing summed up");
    // At most 100 in each second of the stream: over the span the events came in, at most 100
    // per second it touches.
    let all = ev.all();
    let times: Vec<Instant> = all
        .iter()
        .filter(|g| g.event == "mac_learned")
        .map(|g| g.at)
        .collect();
    let span = times.last().unwrap().duration_since(times[0]);
    let seconds = span.as_secs() + 2;
    assert!(
        sent <= 100 * seconds,
        "{sent} events in {span:?} (at most 100 in each of {seconds} seconds)"
    );
    // and never more than 100 within a second of each other, but for a second's end
    let most_in_a_second = times
        .iter()
        .map(|t0| {
            times
                .iter()
                .filter(|t| **t >= *t0 && t.duration_since(*t0) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    assert!(
        most_in_a_second <= 200,
        "{most_in_a_second} events within a second"
    );
}

/// The MACs the switch has learned so far (`GET /api/v1/stats`, `fdb.learned`).
fn learned(sw: &Switchd) -> u64 {
    let out = sw.ctl_ok(&["--json", "stats"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("stats: {e}: {out}"));
    v["fdb"]["learned"].as_u64().expect("fdb.learned")
}

/// All connections taken: a stream is never the one closed to make room, since it is an answer
/// in progress, not an idle connection. Nor do the request timeout and the header read timeout
/// (10 s each) end it.
#[test]
fn a_stream_keeps_its_connection_when_all_are_taken_and_past_the_timeouts() {
    /// `switchd/src/server.rs`: MAX_CONNECTIONS.
    const MAX_CONNECTIONS: usize = 128;
    let t = three();
    let ev = Events::open(&t.sw.api, "?types=mac_learned");
    // The stream has waited for its next message longer than EVICT_AFTER_IDLE (1 s): before
    // the fix, the connection that had waited longest for a request.
    std::thread::sleep(Duration::from_millis(1500));
    // With the stream, all connections are taken.
    let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS - 1)
        .map(|_| TcpStream::connect(&t.sw.api).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    // One more: the oldest idle connection gives way.
    let mut s = TcpStream::connect(&t.sw.api).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: switchd\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let x = mac(3, 1);
    t.a.raw().send(&frame(BROADCAST, x, &[], b"vs-ev-still"));
    ev.wait_for(Duration::from_secs(5), |g| g.data["mac"] == mac_string(x));
    assert!(!ev.ended.load(Ordering::Relaxed));
    drop(idle);
    // Past the request timeout and the header read timeout (10 s each), the stream is still
    // open: its second keepalive comes 15 s after the first.
    assert!(
        eventually(Duration::from_secs(20), || ev
            .keepalives
            .load(Ordering::Relaxed)
            >= 2),
        "no second keepalive; stream ended: {}",
        ev.ended.load(Ordering::Relaxed)
    );
    assert!(!ev.ended.load(Ordering::Relaxed));
}
