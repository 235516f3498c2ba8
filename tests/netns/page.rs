//! The status page (`GET /`) in a real browser: headless Chromium (Debian `chromium`) loads it
//! from a running switchd with two VLANs, a trunk and traffic, and the tests assert on the DOM
//! the page rendered: VLANs, member ports with mode, tag handling, link and learned MACs, a
//! receive rate that rises under a stream and falls after it, drops, the event stream, and the
//! token prompt; and, against a stand-in API that sends what a switchd cannot be made to, the
//! event stream's parsing, escaping, cap and reconnection. The browser is driven over the
//! DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON messages ended by NUL on fds 3
//! and 4), so the test needs no WebSocket client and no port. Without `chromium` the tests
//! fail, naming the package.
//!
//! A screenshot of the live page is saved as `target/page-screenshot.png` (and one of the token
//! prompt as `target/page-token-screenshot.png`), for CI to keep.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{frame, mac_string, udp_stream_during, unique_id, Switchd, SWITCHD};
use crate::lab::Lab;

/// The browser: Debian's package `chromium`, on `PATH`.
const CHROMIUM: &str = "chromium";

/// The workspace's target directory (the release `switchd` is `target/release/switchd`).
fn target_dir() -> PathBuf {
    let exe = PathBuf::from(SWITCHD);
    exe.parent()
        .and_then(|release| release.parent())
        .expect("switchd lives in target/release")
        .to_path_buf()
}

/// A pipe whose two ends close on exec (`O_CLOEXEC`): (read end, write end).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new fds into the array, which lives across the call.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just created by pipe2 and nothing else owns them.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Headless Chromium driven over the DevTools protocol, with one page (a session attached to
/// one target). Killed, with its process group, and its profile removed on drop.
struct Browser {
    child: Option<Child>,
    to: File,
    from: mpsc::Receiver<Value>,
    next: u64,
    session: String,
    profile: PathBuf,
    /// Exceptions the page threw and errors it logged (events of the protocol), for messages.
    problems: Vec<String>,
}

impl Browser {
    /// Starts Chromium with a fresh profile and a 1280x900 window and attaches to a new page.
    fn start() -> Browser {
        let profile = std::env::temp_dir().join(format!("vlanswitch-chromium-{}", unique_id()));
        std::fs::create_dir_all(&profile).expect("profile directory");
        let (cmd_r, cmd_w) = pipe();
        let (resp_r, resp_w) = pipe();
        let (read_fd, write_fd) = (cmd_r.as_raw_fd(), resp_w.as_raw_fd());
        let stderr = File::create(profile.join("stderr.log")).expect("stderr log");
        let mut cmd = Command::new(CHROMIUM);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-pipe",
            "--window-size=1280,900",
            "--hide-scrollbars",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0);
        // SAFETY: the closure runs in the child between fork and exec and calls only fcntl and
        // dup2, which are async-signal-safe, and allocates nothing. It moves the two pipe ends
        // above fd 4 first (closed again on exec) so that the two dup2 calls cannot overwrite
        // each other, then puts them where Chromium expects the protocol: it reads commands on
        // fd 3 and writes answers on fd 4 (dup2 leaves those without close-on-exec).
        unsafe {
            cmd.pre_exec(move || {
                let r = libc::fcntl(read_fd, libc::F_DUPFD_CLOEXEC, 10);
                let w = libc::fcntl(write_fd, libc::F_DUPFD_CLOEXEC, 10);
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start `{CHROMIUM}` ({e}): the page tests need headless Chromium \
                 (Debian package chromium; .ci/run installs it)"
            )
        });
        drop((cmd_r, resp_w));
        let (tx, from) = mpsc::channel();
        let mut reader = BufReader::new(File::from(resp_r));
        std::thread::spawn(move || loop {
            let mut msg = Vec::new();
            match reader.read_until(0, &mut msg) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    msg.pop();
                    let Ok(v) = serde_json::from_slice::<Value>(&msg) else {
                        continue;
                    };
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        let mut b = Browser {
            child: Some(child),
            to: File::from(cmd_w),
            from,
            next: 0,
            session: String::new(),
            profile,
            problems: Vec::new(),
        };
        let target = b.call("Target.createTarget", json!({ "url": "about:blank" }));
        let target = target["targetId"].as_str().expect("targetId").to_string();
        let attached = b.call(
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        );
        b.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        b.call("Runtime.enable", json!({}));
        b.call("Log.enable", json!({}));
        b
    }

    /// What Chromium printed on stderr so far.
    fn stderr(&self) -> String {
        std::fs::read_to_string(self.profile.join("stderr.log")).unwrap_or_default()
    }

    /// Sends one command (to the page's session once attached) and waits up to 30 s for its
    /// answer; panics with the error or Chromium's stderr.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        if let Err(e) = self.to.write_all(&bytes) {
            panic!(
                "{method}: cannot write to Chromium ({e}); its stderr:\n{}",
                self.stderr()
            );
        }
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let v = match self.from.recv_timeout(left) {
                Ok(v) => v,
                Err(e) => panic!(
                    "{method}: no answer from Chromium ({e}); its stderr:\n{}",
                    self.stderr()
                ),
            };
            if v["id"] == id {
                if let Some(err) = v.get("error") {
                    panic!("{method}: {err}");
                }
                return v["result"].clone();
            }
            self.note(&v);
        }
    }

    /// Keeps the page's exceptions and logged errors (protocol events) for failure messages.
    fn note(&mut self, event: &Value) {
        match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => self.problems.push(format!(
                "exception: {}",
                event["params"]["exceptionDetails"]
            )),
            Some("Log.entryAdded") if event["params"]["entry"]["level"] == "error" => self
                .problems
                .push(format!("log: {}", event["params"]["entry"]["text"])),
            _ => {}
        }
    }

    fn navigate(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({ "url": url }));
        assert!(r.get("errorText").is_none(), "navigate to {url}: {r}");
    }

    /// Evaluates a JavaScript expression in the page and returns its value as JSON.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": format!("JSON.stringify({expr})"), "returnByValue": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expr}: {e}");
        }
        let text = r["result"]["value"].as_str().unwrap_or("null").to_string();
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// What the page shows, read from its DOM (see [`DOM`]).
    fn dom(&mut self) -> Value {
        self.eval(DOM)
    }

    /// Reads the DOM every 200 ms until `cond` holds (up to `limit`); panics with `what`, the
    /// last DOM read and the page's errors otherwise.
    fn wait(&mut self, what: &str, limit: Duration, cond: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + limit;
        loop {
            let dom = self.dom();
            if cond(&dom) {
                return dom;
            }
            if Instant::now() >= end {
                panic!(
                    "the page did not show {what} within {limit:?}; its DOM:\n{dom:#}\n\
                     page errors: {:#?}",
                    self.problems
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Saves a PNG of the page as `target/NAME` (for CI to keep) and returns its path.
    fn screenshot(&mut self, name: &str) -> PathBuf {
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64_decode(r["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        let path = target_dir().join(name);
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The launcher script runs the browser as its child, which has its own children:
            // the whole process group goes (the group we made for it).
            // SAFETY: kill with the negated pid of the process group we created for the child.
            unsafe { libc::kill(-(c.id() as libc::pid_t), libc::SIGKILL) };
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A JavaScript expression that reads what the page shows from the attributes it sets for
/// this (README, "The status page").
const DOM: &str = r##"(() => {
  const byId = (id) => document.getElementById(id);
  // Navigation commits before the page's body is parsed.
  if (!byId("app") || !byId("events")) return { state: "not loaded yet" };
  const vlans = {};
  for (const s of document.querySelectorAll("section[data-vlan]")) {
    vlans[s.dataset.vlan] = {};
    for (const r of s.querySelectorAll("tr[data-port]")) {
      vlans[s.dataset.vlan][r.dataset.port] = {
        mode: r.dataset.mode, tagging: r.dataset.tagging, link: r.dataset.link,
        macs: [...r.querySelectorAll("li[data-mac]")].map((l) => l.dataset.mac),
      };
    }
  }
  const ports = {};
  for (const r of document.querySelectorAll("#ports tr[data-port]")) {
    ports[r.dataset.port] = Object.assign({ text: r.textContent }, r.dataset);
  }
  return {
    state: byId("app").dataset.state,
    samples: Number(byId("app").dataset.samples),
    status: byId("status").textContent,
    token_form_hidden: byId("token-form").hidden,
    vlans, ports,
    events: byId("events").dataset.state,
    events_text: byId("events").textContent,
    event_types: [...document.querySelectorAll("#event-list li")].map((l) => l.dataset.type),
    event_texts: [...document.querySelectorAll("#event-list li")].map((l) => l.textContent),
  };
})()"##;

/// A number the page wrote into a `data-*` attribute of port `port`'s row (NaN if absent).
fn rate(dom: &Value, port: &str, key: &str) -> f64 {
    dom["ports"][port][key]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Standard base64 (RFC 4648) to bytes; what DevTools sends binary data as.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?}"),
        }
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | value(c) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// The status line of `GET path` on the API, without a token (the page's events may be there
/// or not: the other part of issue 13 adds them).
fn status_of(api: &str, path: &str) -> u16 {
    let mut s = std::net::TcpStream::connect(api).expect("connect to the API");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).expect("status line");
    String::from_utf8_lossy(&head[9..12])
        .parse()
        .expect("status code")
}

#[test]
fn base64_decodes_rfc_4648_vectors() {
    for (text, bytes) in [
        ("", ""),
        ("Zg==", "f"),
        ("Zm8=", "fo"),
        ("Zm9v", "foo"),
        ("Zm9vYmFy", "foobar"),
    ] {
        assert_eq!(base64_decode(text), bytes.as_bytes(), "{text}");
    }
}

#[test]
fn the_page_shows_both_vlans_their_ports_live_rates_and_drops() {
    let lab = Lab::new();
    let sw = &lab.sw;
    let (ha1, ha2, hb1, hb2) = (&lab.a1, &lab.a2, &lab.b1, &lab.b2);
    let [a1, a2, b1, b2] = [ha1, ha2, hb1, hb2].map(|h| h.ifname.clone());
    // A trunk in both VLANs, native in 20: VLAN 10 leaves it tagged, VLAN 20 untagged.
    let t1 = format!("{}t1", unique_id());
    sw.ctl_ok(&[
        "port", "add", &t1, "--kind", "tap", "--trunk", "10,20", "--native", "20",
    ]);
    assert!(ha1.reaches(&ha2.addr), "a1 -> a2 in VLAN 10");
    assert!(hb1.reaches(&hb2.addr), "b1 -> b2 in VLAN 20");
    // Five frames tagged with a VLAN on an access port: dropped, counted as tagged_on_access.
    let mut raw = hb2.raw();
    for _ in 0..5 {
        raw.send(&frame([0xff; 6], hb2.mac(), &[99], b"vlanswitch-page"));
    }
    let events = status_of(&sw.api, "/api/v1/events");

    let mut web = Browser::start();
    web.navigate(&format!("http://{}/", sw.api));
    let dom = web.wait("two samples of the switch", Duration::from_secs(20), |d| {
        d["state"] == "ok" && d["samples"].as_u64() >= Some(2)
    });

    // Both VLANs with all their ports, each with its mode and how the VLAN leaves it.
    let expect = [
        ("10", &a1, "access", "untagged"),
        ("10", &a2, "access", "untagged"),
        ("10", &t1, "trunk", "tagged"),
        ("20", &b1, "access", "untagged"),
        ("20", &b2, "access", "untagged"),
        ("20", &t1, "trunk", "untagged"),
    ];
    for (vlan, port, mode, tagging) in expect {
        let row = &dom["vlans"][vlan][port.as_str()];
        assert_eq!(row["mode"], mode, "VLAN {vlan} port {port}: {dom:#}");
        assert_eq!(row["tagging"], tagging, "VLAN {vlan} port {port}: {dom:#}");
        assert_eq!(row["link"], "up", "VLAN {vlan} port {port}: {dom:#}");
    }
    for vlan in ["10", "20"] {
        let shown = dom["vlans"][vlan].as_object().map(|o| o.len());
        assert_eq!(shown, Some(3), "VLAN {vlan} has three ports: {dom:#}");
    }
    // The MACs learned from the pings, on their ports and VLANs.
    let dom = web.wait("the learned MACs", Duration::from_secs(10), |d| {
        [("10", &a1, &ha1), ("10", &a2, &ha2), ("20", &b1, &hb1)]
            .iter()
            .all(|(vlan, port, host)| {
                d["vlans"][vlan][port.as_str()]["macs"]
                    .as_array()
                    .is_some_and(|m| m.contains(&json!(mac_string(host.mac()))))
            })
    });
    // Drops, with their reason.
    let b2_row = &dom["ports"][b2.as_str()];
    let drops: u64 = b2_row["drops"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(drops >= 5, "b2 dropped the 5 tagged frames: {b2_row}");
    assert!(
        b2_row["text"]
            .as_str()
            .is_some_and(|t| t.contains("tagged_on_access 5")),
        "{b2_row}"
    );

    // A rate that changes: a1's receive rate rises under a stream of about 2000 frames/s,
    // and falls back once it stops.
    let (under_load, stream) = udp_stream_during(ha1, ha2, 5003, || {
        let dom = web.wait(
            "a1 receiving over 200 frames/s",
            Duration::from_secs(20),
            |d| rate(d, &a1, "rxFps") > 200.0 && rate(d, &a2, "txFps") > 200.0,
        );
        web.screenshot("page-screenshot.png");
        dom
    });
    assert!(
        stream.sent > 200,
        "the stream ran ({} datagrams)",
        stream.sent
    );
    let (busy_fps, busy_bps) = (
        rate(&under_load, &a1, "rxFps"),
        rate(&under_load, &a1, "rxBps"),
    );
    assert!(
        busy_bps >= busy_fps * 8.0 * 42.0,
        "bits/s of frames of at least 42 bytes: {busy_fps} frames/s, {busy_bps} bits/s"
    );
    let samples = under_load["samples"].as_u64().unwrap_or(0);
    let idle = web.wait("a1's rate falling", Duration::from_secs(20), |d| {
        d["samples"].as_u64() > Some(samples) && rate(d, &a1, "rxFps") < 50.0
    });
    let idle_fps = rate(&idle, &a1, "rxFps");
    assert_ne!(busy_fps, idle_fps, "the rate changed between two reads");

    // The event stream: shown live when switchd has it, "events unavailable" when it has not.
    match events {
        404 => {
            let dom = web.wait("events unavailable", Duration::from_secs(10), |d| {
                d["events"] == "unavailable"
            });
            assert!(
                dom["events_text"]
                    .as_str()
                    .is_some_and(|t| t.contains("events unavailable")),
                "{dom:#}"
            );
        }
        200 => {
            web.wait("the event stream live", Duration::from_secs(10), |d| {
                d["events"] == "live"
            });
            sw.ctl_ok(&["vlan", "add", "30"]);
            web.wait("a config_applied event", Duration::from_secs(10), |d| {
                d["event_types"]
                    .as_array()
                    .is_some_and(|t| t.contains(&json!("config_applied")))
            });
        }
        other => panic!("GET /api/v1/events answered {other}"),
    }
    let errors: Vec<_> = web
        .problems
        .iter()
        .filter(|p| p.starts_with("exception"))
        .collect();
    assert!(errors.is_empty(), "the page threw: {errors:#?}");
    drop(web);
    lab.sw.stop();
}

#[test]
fn with_a_token_the_page_asks_for_it_and_keeps_it_in_the_tab() {
    let id = unique_id();
    let port = format!("{id}k1");
    let token = std::env::temp_dir().join(format!("vlanswitch-token-{id}"));
    std::fs::write(&token, "s3cret\n").unwrap();
    // A port name is user input: this one is markup, and its interface does not exist (down).
    let odd = format!("<i>{id}");
    let yaml = format!(
        "vlans: [{{ id: 10 }}]\nports:\n  - {{ name: {port}, kind: tap, mode: access, vlan: 10 }}\n\
         \x20 - {{ name: '{odd}', kind: netdev, mode: access, vlan: 10 }}\n"
    );
    let sw = Switchd::start_with(&yaml, 1, &["--token-file", token.to_str().unwrap()]);
    let mut web = Browser::start();
    let url = format!("http://{}/", sw.api);
    web.navigate(&url);

    // The prompt, and no data.
    let dom = web.wait("the token prompt", Duration::from_secs(20), |d| {
        d["state"] == "auth"
    });
    assert_eq!(dom["token_form_hidden"], false, "{dom:#}");
    assert_eq!(dom["vlans"], json!({}), "no VLAN shown without the token");
    assert_eq!(dom["ports"], json!({}), "no port shown without the token");
    assert_eq!(dom["samples"], 0);
    web.screenshot("page-token-screenshot.png");

    let submit = |web: &mut Browser, t: &str| {
        web.eval(&format!(
            "(() => {{ document.getElementById('token').value = {}; \
             document.getElementById('token-form').requestSubmit(); return true; }})()",
            json!(t)
        ));
    };
    // A wrong token is refused and asked for again, and not kept.
    submit(&mut web, "wrong");
    let dom = web.wait("the wrong token refused", Duration::from_secs(10), |d| {
        d["state"] == "auth" && d["status"] == "the token was refused"
    });
    assert_eq!(dom["token_form_hidden"], false, "{dom:#}");
    assert_eq!(web.eval("sessionStorage.length"), 0);

    // The right one: data, and the token in this tab's sessionStorage only.
    submit(&mut web, "s3cret");
    let dom = web.wait("the switch with the token", Duration::from_secs(20), |d| {
        d["state"] == "ok" && d["samples"].as_u64() >= Some(1)
    });
    assert_eq!(dom["token_form_hidden"], true, "{dom:#}");
    assert_eq!(
        dom["vlans"]["10"][port.as_str()]["mode"],
        "access",
        "{dom:#}"
    );
    assert_eq!(dom["vlans"]["10"][odd.as_str()]["link"], "down", "{dom:#}");
    assert_eq!(
        web.eval("document.querySelectorAll('main i').length"),
        0,
        "a port name became markup"
    );
    let kept = web.eval(
        "({ session: sessionStorage.getItem('vlanswitch-token'), local: localStorage.length, \
         cookie: document.cookie, url: location.href })",
    );
    assert_eq!(kept["session"], "s3cret", "{kept}");
    assert_eq!(kept["local"], 0, "{kept}");
    assert_eq!(kept["cookie"], "", "{kept}");
    assert_eq!(kept["url"], url.as_str(), "{kept}");
    drop(web);
    sw.stop();
    let _ = std::fs::remove_file(&token);
}

/// The page's own file, for [`FakeApi`].
const PAGE: &str = include_str!("../../control-api/src/api/page.html");

/// A port name that is markup, as the fake API's only port.
const EVIL_PORT: &str = "<img src=x onerror=window.pwned=1>";

/// A stand-in for switchd's API on loopback, for what a running switchd cannot be made to
/// send: the page, one VLAN with one port whose name is markup, and a scripted event stream
/// in the format of `GET /api/v1/events` (issue 13: `id:`, `event:`, one-line JSON `data:`).
/// Every request gets its own connection (`Connection: close`).
struct FakeApi {
    addr: String,
    /// The `Last-Event-ID` of each request for the event stream, in order.
    resumed_from: std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
    /// Set by the test: the first stream may go on past its first four events.
    go: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FakeApi {
    fn start() -> FakeApi {
        use std::sync::atomic::AtomicBool;
        use std::sync::{Arc, Mutex};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let api = FakeApi {
            addr: listener.local_addr().unwrap().to_string(),
            resumed_from: Arc::new(Mutex::new(Vec::new())),
            go: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (resumed_from, go, stop) = (api.resumed_from.clone(), api.go.clone(), api.stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { break };
                let (resumed_from, go, stop) = (resumed_from.clone(), go.clone(), stop.clone());
                std::thread::spawn(move || {
                    let _ = FakeApi::answer(conn, &resumed_from, &go, &stop);
                });
            }
        });
        api
    }

    fn answer(
        mut conn: std::net::TcpStream,
        resumed_from: &std::sync::Mutex<Vec<Option<String>>>,
        go: &std::sync::atomic::AtomicBool,
        stop: &std::sync::atomic::AtomicBool,
    ) -> std::io::Result<()> {
        use std::sync::atomic::Ordering;
        let mut reader = BufReader::new(conn.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let path = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let mut last_id = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("last-event-id") {
                    last_id = Some(v.trim().to_string());
                }
            }
        }
        let counters = json!({"rx_packets": 0, "rx_bytes": 0, "tx_packets": 0, "tx_bytes": 0,
            "drops": {}, "mac_events": {}});
        let body = match path.as_str() {
            "/" => PAGE.to_string(),
            "/api/v1/vlans" => {
                json!([{"id": 10, "name": "<i>red</i>", "ports": [EVIL_PORT]}]).to_string()
            }
            "/api/v1/ports" => json!([{"name": EVIL_PORT, "kind": "tap", "mode": "access",
                "vlan": 10, "state": {"link": "up", "learned_macs": 1, "security": {
                "max_macs": 8192, "dynamic_macs": 1, "mac_limit_action": "flood",
                "shutdown": false}, "counters": counters}}])
            .to_string(),
            "/api/v1/stats" => json!({"ports": {EVIL_PORT: counters}, "links": {},
                "vlans": [], "fdb": {"entries": 1, "max_entries": 10}})
            .to_string(),
            "/api/v1/fdb" => json!([{"vlan": 10, "mac": "02:00:00:00:00:01", "port": EVIL_PORT,
                "type": "dynamic", "age_secs": 1}])
            .to_string(),
            "/api/v1/events" => {
                let n = {
                    let mut r = resumed_from.lock().unwrap();
                    r.push(last_id);
                    r.len()
                };
                write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                     Cache-Control: no-store\r\nConnection: close\r\n\r\n"
                )?;
                let mut send = |piece: &str| -> std::io::Result<()> {
                    conn.write_all(piece.as_bytes())?;
                    conn.flush()?;
                    std::thread::sleep(Duration::from_millis(50));
                    Ok(())
                };
                if n == 1 {
                    // A comment; an event cut in the middle of its data line; one with CRLF
                    // line ends cut between CR and LF; JSON over two data lines; a summary.
                    send(": a comment, ignored\n\n")?;
                    send("id: 1\nevent: mac_learned\ndata: {\"vlan\":10,\"mac\":\"02:00")?;
                    send(&format!(
                        ":00:00:00:01\",\"port\":{}}}\n\n",
                        json!(EVIL_PORT)
                    ))?;
                    send("id: 2\r\nevent: link\r\ndata: {\"port\":\"p1\",\"up\":false}\r")?;
                    send("\n\r\n")?;
                    send("id: 3\nevent: mac_moved\ndata: {\"vlan\":10,\"mac\":\"02:00:00:00:00:01\",\ndata: \"from\":\"p1\",\"to\":\"p2\",\"flapping\":true}\n\n")?;
                    send("id: 4\nevent: summary\ndata: {\"suppressed\":{\"mac_learned\":120},\"lost\":3}\n\n")?;
                    while !go.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let mut many = String::new();
                    for i in 5..60 {
                        many.push_str(&format!(
                            "id: {i}\nevent: drops\ndata: {{\"port\":\"p1\",\"reason\":\"tagged_on_access\",\"frames\":{i}}}\n\n"
                        ));
                    }
                    send(&many)?;
                    // The stream ends: the page must come back, resuming after id 59.
                    return Ok(());
                }
                send("id: 60\nevent: config_applied\ndata: {\"changes\":[{\"add_vlan\":30}]}\n\n")?;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                return Ok(());
            }
            _ => {
                return write!(
                    conn,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        };
        let ctype = if path == "/" {
            "text/html; charset=utf-8"
        } else {
            "application/json"
        };
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Wake the accept loop so that it sees the flag.
        let _ = std::net::TcpStream::connect(&self.addr);
    }
}

#[test]
fn the_event_stream_is_parsed_escaped_capped_and_resumed() {
    let api = FakeApi::start();
    let mut web = Browser::start();
    web.navigate(&format!("http://{}/", api.addr));

    // The first four events, newest first, whatever the chunks and line ends.
    let dom = web.wait("the first four events", Duration::from_secs(20), |d| {
        d["event_types"] == json!(["summary", "mac_moved", "link", "mac_learned"])
    });
    assert_eq!(dom["events"], "live", "{dom:#}");
    let texts: Vec<&str> = dom["event_texts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for (i, want) in [
        "suppressed: mac_learned ×120; lost 3",
        "02:00:00:00:00:01 moved p1 → p2 (VLAN 10), flapping",
        "p1 link down",
        &format!("02:00:00:00:00:01 learned on {EVIL_PORT} (VLAN 10)"),
    ]
    .iter()
    .enumerate()
    {
        assert!(
            texts[i].contains(want),
            "event {i}: {:?} lacks {want:?}",
            texts[i]
        );
    }
    // Markup from the API is text: in events, port names and VLAN names alike.
    let dom = web.wait("the fake port", Duration::from_secs(10), |d| {
        d["vlans"]["10"][EVIL_PORT]["mode"] == "access"
    });
    assert!(dom["ports"][EVIL_PORT].is_object(), "{dom:#}");
    let markup = web.eval(
        "({ img: document.querySelectorAll('img').length, i: document.querySelectorAll('main i').length, \
         pwned: window.pwned === undefined ? null : window.pwned })",
    );
    assert_eq!(
        markup,
        json!({"img": 0, "i": 0, "pwned": null}),
        "markup from the API ran"
    );

    // 55 more events, then the stream ends: the page keeps the last 50, comes back on its own
    // with Last-Event-ID, and shows what the new stream sends first.
    api.go.store(true, std::sync::atomic::Ordering::Relaxed);
    let dom = web.wait("the resumed stream", Duration::from_secs(20), |d| {
        d["event_types"][0] == "config_applied" && d["events"] == "live"
    });
    let types = dom["event_types"].as_array().unwrap();
    assert_eq!(types.len(), 50, "the last 50 events: {dom:#}");
    assert!(types[1..].iter().all(|t| t == "drops"), "{dom:#}");
    assert!(
        dom["event_texts"][1]
            .as_str()
            .is_some_and(|t| t.contains("59 frames dropped on p1: tagged_on_access")),
        "{dom:#}"
    );
    let resumed = api.resumed_from.lock().unwrap().clone();
    assert_eq!(
        resumed,
        [None, Some("59".to_string())],
        "the second request resumes after the last id"
    );
    let errors: Vec<_> = web
        .problems
        .iter()
        .filter(|p| p.starts_with("exception"))
        .collect();
    assert!(errors.is_empty(), "the page threw: {errors:#?}");
}
