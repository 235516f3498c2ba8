//! The test harness: network namespaces as hosts, the real `switchd` binary, raw frames.
//!
//! Everything made here is removed in `Drop`, also when a test panics. Names carry the test
//! process id and a counter, so tests run in parallel and never meet each other's leftovers.
//! These tests need root; without it (or without `ip netns`) they fail loudly, never skip.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of the switchd binary cargo built for this test run.
pub const SWITCHD: &str = env!("CARGO_BIN_EXE_switchd");
/// Path of the switchctl binary.
pub const SWITCHCTL: &str = env!("CARGO_BIN_EXE_switchctl");

/// A short id unique to this test process and call: `{pid:04x}{n}`.
pub fn unique_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{:04x}{}",
        std::process::id() & 0xffff,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Panics with a clear message unless we are root and can make namespaces and taps.
pub fn require_privileges() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the network-namespace tests need root (they create namespaces and taps); run them as root"
    );
    assert!(
        std::path::Path::new("/dev/net/tun").exists(),
        "/dev/net/tun is missing: the tun module is needed for tap ports"
    );
}

/// Runs `ip args...`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("cannot run `ip` (install iproute2)");
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Makes the veth pair `name` / `peer` in the test's namespace (removing either end removes
/// both).
pub fn veth_pair(name: &str, peer: &str) {
    ip(&["link", "add", name, "type", "veth", "peer", "name", peer]);
}

/// A network namespace; deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Netns {
        require_privileges();
        ip(&["netns", "add", name]);
        let ns = Netns {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME args...`
    pub fn ip(&self, args: &[&str]) {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        ip(&a);
    }

    /// Runs a command inside the namespace; returns whether it exited 0.
    pub fn exec_ok(&self, cmd: &[&str]) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("cannot run `ip netns exec`")
            .success()
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it opens live there
    /// (`dataplane::sys::in_netns`, which switchd's own namespace code uses too).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        dataplane::sys::in_netns(&ns, f).unwrap_or_else(|e| panic!("in {path}: {e}"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Held by every test that runs DPDK's `dpdk-testpmd`, so that two never run at once. Two
/// testpmds (each spinning on both cores) next to a switch on this 2-core machine stalled in
/// about one run of five: a testpmd stopped taking frames from its receive ring after its
/// first burst, though the switch had published them all (tests/README.md, "testpmd under
/// load"). Taken poisoned or not: a failed test must not fail the next.
pub fn testpmd_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Held by every test that runs a lab of a file in `topologies/` (`switchd lab`, `switchd
/// demo`): those labs' port names and tap names come from the files (`vm1` ... `vm4`), not
/// from [`unique_id`], so two at once would fight over the same taps. Taken poisoned or not.
pub fn lab_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// A host: a namespace whose NIC is the kernel side of one of the switch's taps.
pub struct Host {
    pub ns: Netns,
    pub ifname: String,
    pub addr: String,
}

impl Host {
    /// Moves interface `ifname` into a new namespace and gives it `addr`/24.
    pub fn attach(ifname: &str, addr: &str) -> Host {
        let ns = Netns::new(&format!("vs-{ifname}"));
        ip(&["link", "set", ifname, "netns", &ns.name]);
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", ifname]);
        ns.ip(&["link", "set", ifname, "up"]);
        Host {
            ns,
            ifname: ifname.to_string(),
            addr: addr.to_string(),
        }
    }

    /// A host behind a veth pair: `port` stays in the test's namespace (for a netdev port), its
    /// peer `{port}p` goes into the host's namespace with `addr`/24. `port` is left down.
    pub fn veth(port: &str, addr: &str) -> Host {
        let ns = Netns::new(&format!("vs-{port}"));
        let peer = format!("{port}p");
        ip(&[
            "link", "add", port, "type", "veth", "peer", "name", &peer, "netns", &ns.name,
        ]);
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", &peer]);
        ns.ip(&["link", "set", &peer, "up"]);
        Host {
            ns,
            ifname: peer,
            addr: addr.to_string(),
        }
    }

    /// Like [`Host::attach`], but the host sends nothing on its own and has the MAC `mac`.
    /// IPv6 is off in its namespace (no duplicate address detection, router solicitation or
    /// MLD report), so the only source MACs the switch sees from it are the frames a test
    /// sends, and ARP when it pings. For tests that count the sources of a port.
    pub fn attach_quiet(ifname: &str, addr: &str, mac: [u8; 6]) -> Host {
        let ns = Netns::new(&format!("vs-{ifname}"));
        // Set before the interface arrives: it takes the namespace's defaults.
        ns.run(|| {
            for conf in ["all", "default"] {
                let path = format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6");
                std::fs::write(&path, "1").unwrap_or_else(|e| panic!("write {path}: {e}"));
            }
        });
        ip(&["link", "set", ifname, "netns", &ns.name]);
        ns.ip(&["link", "set", ifname, "address", &mac_string(mac)]);
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", ifname]);
        ns.ip(&["link", "set", ifname, "up"]);
        let off = ns.run(|| {
            std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"))
                .unwrap_or_default()
        });
        assert_eq!(off.trim(), "1", "IPv6 still on for {ifname}");
        Host {
            ns,
            ifname: ifname.to_string(),
            addr: addr.to_string(),
        }
    }

    /// Forgets learned neighbours (after a peer changed its MAC).
    pub fn flush_neighbours(&self) {
        self.ns.ip(&["neigh", "flush", "all"]);
    }

    /// A tag-aware capture on the host's NIC: the project's own packet socket, which puts back
    /// the VLAN tag the kernel strips on receive (pnet cannot).
    pub fn tagged_capture(&self) -> TaggedCapture {
        let name = self.ifname.clone();
        let sock = self.ns.run(move || {
            dataplane::Port::netdev(&name, Default::default()).expect("packet socket")
        });
        TaggedCapture { port: sock }
    }

    /// True if `addr` answers a ping within a few tries.
    pub fn reaches(&self, addr: &str) -> bool {
        (0..3).any(|_| self.ns.exec_ok(&["ping", "-c", "1", "-W", "1", addr]))
    }

    /// True if `addr` answers none of 3 pings.
    pub fn cannot_reach(&self, addr: &str) -> bool {
        !self
            .ns
            .exec_ok(&["ping", "-c", "3", "-i", "0.2", "-W", "1", addr])
    }

    /// A raw layer-2 socket on the host's NIC.
    pub fn raw(&self) -> Raw {
        let name = self.ifname.clone();
        let (tx, rx) = self.ns.run(move || {
            let iface = pnet_datalink::interfaces()
                .into_iter()
                .find(|i| i.name == name)
                .unwrap_or_else(|| panic!("no interface {name} in the namespace"));
            let cfg = pnet_datalink::Config {
                read_timeout: Some(Duration::from_millis(50)),
                read_buffer_size: 65536,
                ..Default::default()
            };
            match pnet_datalink::channel(&iface, cfg).expect("raw socket") {
                pnet_datalink::Channel::Ethernet(tx, rx) => (tx, rx),
                _ => panic!("unexpected channel type"),
            }
        });
        Raw { tx, rx }
    }

    /// The host NIC's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        let name = self.ifname.clone();
        let mac = self.ns.run(move || {
            pnet_datalink::interfaces()
                .into_iter()
                .find(|i| i.name == name)
                .and_then(|i| i.mac)
                .expect("interface MAC")
        });
        mac.octets()
    }
}

/// A raw AF_PACKET socket bound to one host NIC (pnet).
pub struct Raw {
    tx: Box<dyn pnet_datalink::DataLinkSender>,
    rx: Box<dyn pnet_datalink::DataLinkReceiver>,
}

impl Raw {
    pub fn send(&mut self, frame: &[u8]) {
        self.tx
            .send_to(frame, None)
            .expect("send_to returned None")
            .expect("raw send");
    }

    /// Sends `frame`; an error (such as `ENOBUFS` when the interface's queue is full) is
    /// returned, not a panic.
    pub fn try_send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.tx
            .send_to(frame, None)
            .unwrap_or_else(|| Err(std::io::Error::other("send_to returned None")))
    }

    /// Frames received within `window` that contain `marker`.
    pub fn capture(&mut self, marker: &[u8], window: Duration) -> Vec<Vec<u8>> {
        let end = Instant::now() + window;
        let mut seen = Vec::new();
        while Instant::now() < end {
            if let Ok(f) = self.rx.next() {
                if f.windows(marker.len()).any(|w| w == marker) {
                    seen.push(f.to_vec());
                }
            }
        }
        seen
    }
}

/// A test frame: `dst`, `src`, optional 802.1Q tags (outermost first), the local experimental
/// EtherType 0x88b5 and `marker` as payload, padded to 60 bytes.
pub fn frame(dst: [u8; 6], src: [u8; 6], tags: &[u16], marker: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    for vid in tags {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(marker);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

pub const BROADCAST: [u8; 6] = [0xff; 6];

/// `02:00:5e:00:00:01`, as `ip` and the switch write MACs.
pub fn mac_string(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// Frames as they were on the wire, tags included.
pub struct TaggedCapture {
    port: dataplane::Port,
}

impl TaggedCapture {
    /// Frames received within `window` that contain `marker`.
    pub fn capture(&mut self, marker: &[u8], window: Duration) -> Vec<Vec<u8>> {
        let mut batch = dataplane::port::batch::RxBatch::default();
        let end = Instant::now() + window;
        let mut seen = Vec::new();
        while Instant::now() < end {
            let mut rx = self
                .port
                .try_rx()
                .expect("the capture is the port's only reader");
            match rx.recv_batch(&mut batch) {
                Ok(n) => {
                    for i in 0..n {
                        let (_, f) = batch.frame(i);
                        if f.windows(marker.len()).any(|w| w == marker) {
                            seen.push(f.to_vec());
                        }
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        seen
    }
}

/// Polls `cond` every 20 ms for up to `limit`; true once it holds.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `switchd` with a topology; stopped (SIGTERM) on drop.
pub struct Switchd {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    /// The `--topology` file it was started with, if any.
    pub topology: Option<PathBuf>,
    /// Where its REST API listens (`127.0.0.1:PORT`).
    pub api: String,
}

impl Switchd {
    /// Starts switchd on `yaml` and waits for its "switch ready" line.
    pub fn start(yaml: &str, workers: u16) -> Switchd {
        Self::start_with(yaml, workers, &[])
    }

    /// Like [`Switchd::start`], with extra arguments (`--state`, `--listen`, ...). The API
    /// listens on a free loopback port unless `extra` has `--listen`.
    pub fn start_with(yaml: &str, workers: u16, extra: &[&str]) -> Switchd {
        Self::launch(Some(yaml), workers, extra, &[])
    }

    /// Like [`Switchd::start_with`], with no `--topology` at all.
    pub fn start_without_topology(workers: u16, extra: &[&str]) -> Switchd {
        Self::launch(None, workers, extra, &[])
    }

    /// Like [`Switchd::start_with`], with environment variables set for switchd.
    pub fn start_with_env(
        yaml: &str,
        workers: u16,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Switchd {
        Self::launch(Some(yaml), workers, extra, env)
    }

    fn launch(yaml: Option<&str>, workers: u16, extra: &[&str], env: &[(&str, &str)]) -> Switchd {
        require_privileges();
        let mut cmd = Command::new(SWITCHD);
        cmd.envs(env.iter().copied());
        let topology = yaml.map(|yaml| {
            let path = std::env::temp_dir().join(format!("vlanswitch-test-{}.yaml", unique_id()));
            std::fs::write(&path, yaml).expect("write topology");
            cmd.arg("--topology").arg(&path);
            path
        });
        cmd.args(["--workers", &workers.to_string()]).args(extra);
        if !extra.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = cmd
            // VLANSWITCH_TEST_LOG: another filter for switchd's log, e.g. info,vhost_port=debug
            .env(
                "RUST_LOG",
                std::env::var("VLANSWITCH_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {SWITCHD}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                {
                    let mut l = l.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
                if line.contains("switch ready") {
                    let _ = ready_tx.send(());
                }
            }
        });
        let mut sw = Switchd {
            child: Some(child),
            log,
            topology,
            api: String::new(),
        };
        if ready_rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let status = sw.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            panic!(
                "switchd did not become ready (exit: {status:?}); its log:\n{}",
                sw.log()
            );
        }
        let log = sw.log();
        sw.api = log
            .lines()
            .find(|l| l.contains("switch ready"))
            .and_then(|l| l.split_whitespace().find_map(|kv| kv.strip_prefix("api=")))
            .unwrap_or_default()
            .to_string();
        sw
    }

    /// Runs `switchctl --server API args...`; returns (success, stdout, stderr).
    pub fn ctl(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(SWITCHCTL)
            .args(["--server", &self.api])
            .args(args)
            .output()
            .expect("run switchctl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs switchctl and panics unless it succeeds; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.ctl(args);
        assert!(ok, "switchctl {args:?} failed: {err}{out}");
        out
    }

    /// `port`'s counters as the API has them now (`GET /api/v1/ports/{port}` through
    /// `switchctl --json port show`, `state.counters`), under the keys of the `stats` line
    /// switchd logs at shutdown (see [`port_stats`]): `rx_packets`, `rx_bytes`, `tx_packets`,
    /// `tx_bytes`, each drop reason as `drop_{reason}` (`drop_tagged_on_access`) and the
    /// learning events as they are (`mac_moves`, `mac_flaps`, `mac_damped`). Panics if the port
    /// is unknown or the answer has another shape.
    pub fn port_counters(&self, port: &str) -> HashMap<String, u64> {
        let out = self.ctl_ok(&["--json", "port", "show", port]);
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("port {port}: the answer is not JSON ({e}): {out}"));
        let counters = v["state"]["counters"]
            .as_object()
            .unwrap_or_else(|| panic!("port {port}: no state.counters in {out}"));
        let num = |k: &str, v: &serde_json::Value| {
            v.as_u64()
                .unwrap_or_else(|| panic!("port {port}: counter {k} is not a number: {out}"))
        };
        let mut m = HashMap::new();
        for (k, v) in counters {
            match (k.as_str(), v.as_object()) {
                (_, None) => {
                    m.insert(k.clone(), num(k, v));
                }
                ("drops", Some(drops)) => {
                    for (r, n) in drops {
                        m.insert(format!("drop_{r}"), num(r, n));
                    }
                }
                ("mac_events", Some(events)) => {
                    for (e, n) in events {
                        m.insert(e.clone(), num(e, n));
                    }
                }
                (_, Some(_)) => panic!("port {port}: unexpected counter group {k}: {out}"),
            }
        }
        m
    }

    /// Sends SIGKILL now, from any thread (no cleanup, as a crash would).
    pub fn kill9_now(&self) {
        if let Some(c) = &self.child {
            // SAFETY: kill with the pid of a child we spawned and have not reaped.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGKILL) };
        }
    }

    /// Stops (SIGSTOP) or continues (SIGCONT) switchd, as a stalled process would be.
    pub fn pause(&self, stopped: bool) {
        let sig = if stopped {
            libc::SIGSTOP
        } else {
            libc::SIGCONT
        };
        if let Some(c) = &self.child {
            // SAFETY: kill with the pid of a child we spawned and have not reaped.
            unsafe { libc::kill(c.id() as libc::pid_t, sig) };
            // A stop takes effect thread by thread, when each is next scheduled (later on a
            // loaded machine): wait until every thread is stopped, so that the caller's
            // traffic really meets a stalled switch.
            if stopped {
                let all_stopped = || {
                    let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", c.id())) else {
                        return false;
                    };
                    tasks.flatten().all(|t| {
                        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|s| {
                            s.rsplit_once(") ")
                                .is_some_and(|(_, rest)| rest.starts_with('T'))
                        })
                    })
                };
                assert!(
                    eventually(Duration::from_secs(5), all_stopped),
                    "switchd's threads did not all stop within 5 s"
                );
            }
        }
    }

    /// Kills switchd with SIGKILL (no cleanup, as a crash would) and reaps it.
    pub fn kill9(mut self) -> String {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        std::thread::sleep(Duration::from_millis(100));
        self.log()
    }

    /// Sends `signal` to switchd.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill with a pid we spawned and have not reaped yet.
        unsafe { libc::kill(self.pid() as libc::pid_t, signal) };
    }

    /// Whether switchd is still running (it has not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().is_ok_and(|s| s.is_none()))
    }

    /// switchd's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// CPU time switchd has used so far (user + system), in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let pid = self.child.as_ref().expect("running").id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
        // Fields after the command name (which is in parentheses): utime and stime are the
        // 12th and 13th of those.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let f: Vec<u64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|v| v.parse().expect("tick count"))
            .collect();
        // SAFETY: sysconf takes no pointers.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        (f[0] + f[1]) as f64 / hz
    }

    /// What switchd logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Stops switchd with SIGTERM and returns its whole log; panics if it does not exit 0.
    pub fn stop(mut self) -> String {
        let status = self.terminate();
        let log = self.log();
        assert!(
            status.is_some_and(|s| s.success()),
            "switchd did not exit cleanly ({status:?}); log:\n{log}"
        );
        log
    }

    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill with a pid we spawned and have not reaped yet.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(st)) = child.try_wait() {
                // let the reader thread drain the last lines
                std::thread::sleep(Duration::from_millis(100));
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Switchd {
    fn drop(&mut self) {
        self.terminate();
        if let Some(t) = &self.topology {
            let _ = std::fs::remove_file(t);
        }
    }
}

/// Counters switchd logged for `port` at shutdown (its `stats` line), as `key -> value`. For
/// the counters of a running switch use [`Switchd::port_counters`], which has the same keys;
/// this is for checking the shutdown log line itself.
pub fn port_stats(log: &str, port: &str) -> HashMap<String, u64> {
    let line = log
        .lines()
        .find(|l| l.contains(" stats ") && l.ends_with(&format!("port={port}")))
        .unwrap_or_else(|| panic!("no stats line for port {port} in log:\n{log}"));
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| v.parse().ok().map(|v| (k.to_string(), v)))
        .collect()
}

/// True once `/sys/class/net/NAME` exists in the test's own namespace.
pub fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Sets a flag when dropped, also when a panic unwinds through it.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What [`udp_stream_during`] saw.
pub struct Stream {
    /// Datagrams sent, numbered 0 to `sent - 1`.
    pub sent: u64,
    /// The numbers that arrived.
    pub received: std::collections::BTreeSet<u64>,
}

impl Stream {
    /// The first (at most 10) numbers that did not arrive, and how many did not.
    pub fn lost(&self) -> (Vec<u64>, u64) {
        let first = (0..self.sent)
            .filter(|s| !self.received.contains(s))
            .take(10)
            .collect();
        (first, self.sent - self.received.len() as u64)
    }
}

/// Runs `body` while `from` sends a numbered UDP stream (about 2000 datagrams a second) to
/// `to` on `port`; returns what `body` returned and what arrived. The stream stops when `body`
/// returns or panics.
pub fn udp_stream_during<T>(
    from: &Host,
    to: &Host,
    port: u16,
    body: impl FnOnce() -> T,
) -> (T, Stream) {
    use std::net::UdpSocket;
    let done = AtomicBool::new(false);
    let dst = format!("{}:{port}", to.addr);
    std::thread::scope(|s| {
        let rx = s.spawn(|| {
            to.ns.run(|| {
                let sock = UdpSocket::bind(&dst).expect("bind");
                sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                let mut seen = std::collections::BTreeSet::new();
                let mut buf = [0u8; 64];
                while let Ok(n) = sock.recv(&mut buf) {
                    if n >= 8 {
                        seen.insert(u64::from_le_bytes(buf[..8].try_into().unwrap()));
                    }
                }
                seen
            })
        });
        std::thread::sleep(Duration::from_millis(200));
        let tx = s.spawn(|| {
            from.ns.run(|| {
                let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
                let mut seq = 0u64;
                while !done.load(Ordering::Relaxed) {
                    sock.send_to(&seq.to_le_bytes(), &dst).expect("send");
                    seq += 1;
                    std::thread::sleep(Duration::from_micros(500));
                }
                seq
            })
        });
        let out = {
            let _stop = SetOnDrop(&done);
            body()
        };
        let sent = tx.join().unwrap();
        (
            out,
            Stream {
                sent,
                received: rx.join().unwrap(),
            },
        )
    })
}

/// `METHOD PATH` with an empty body on a new connection: (status, whole answer).
pub fn http(api: &str, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(api).expect("connect to the API");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: switchd\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, answer)
}
