//! The daemon as a service: exit codes that tell usage, configuration and environment errors
//! apart (sysexits), and SIGHUP re-reading the topology file without ever exiting.

use std::process::Command;
use std::time::Duration;

use crate::harness::{eventually, ip, unique_id, Switchd, SWITCHD};

/// Runs `switchd args...` (the API on a free loopback port unless `args` say otherwise) and
/// returns its exit code and stderr. Each case fails before or while starting, so it exits
/// on its own; one that would run is stopped after 10 s and reported.
fn exit_code(args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(SWITCHD);
    cmd.args(args);
    if !args.contains(&"--listen") && !args.contains(&"check") && !args.contains(&"--help") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start switchd");
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < end {
        if child.try_wait().expect("wait").is_some() {
            let out = child.wait_with_output().expect("output");
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            return (out.status.code().expect("an exit code, not a signal"), err);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    panic!(
        "switchd {args:?} kept running:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A file in the temporary directory, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(what: &str, content: &str) -> TempFile {
        let p = std::env::temp_dir().join(format!("vlanswitch-{what}-{}", unique_id()));
        std::fs::write(&p, content).unwrap();
        TempFile(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn exit_codes_tell_usage_configuration_and_environment_apart() {
    crate::harness::require_privileges();
    let id = unique_id();
    let good = TempFile::new("good.yaml", "vlans: [{ id: 10 }]\n");
    let invalid = TempFile::new("invalid.yaml", "vlans: [{ id: 5000 }]\n");
    let unparsable = TempFile::new("unparsable.yaml", "vlans: [{ id: 10 }\n");
    let empty_token = TempFile::new("token", "  \n");
    let corrupt_state = TempFile::new("state.yaml", "ports: [\n");
    let missing = format!("/nonexistent/vlanswitch-{id}.yaml");
    // A port the host cannot give: a tap whose name an existing veth has.
    let clash = format!("{id}x");
    crate::harness::veth_pair(&clash, &format!("{id}y"));
    let clash_topo = TempFile::new(
        "clash.yaml",
        &format!("ports: [{{ name: {clash}, kind: tap, mode: access, vlan: 1 }}]\n"),
    );
    // An API address that is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let plain = TempFile::new("plain", "");
    let not_a_socket = format!("unix:{}", plain.path());

    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["--help"], 0, ""),
        (vec!["--no-such-option"], 64, "unexpected argument"),
        (vec!["--workers", "0"], 64, "--workers"),
        (vec!["--listen", "nonsense"], 64, "expected HOST:PORT"),
        (vec!["--listen", &taken], 69, "cannot listen"),
        (
            vec!["--listen", &not_a_socket],
            69,
            "exists and is not a socket",
        ),
        (
            vec!["--topology", &missing],
            66,
            "cannot read topology file",
        ),
        (vec!["--topology", invalid.path()], 78, "5000"),
        (
            vec!["--topology", unparsable.path()],
            78,
            "cannot parse topology",
        ),
        (vec!["--token-file", &missing], 66, "cannot read token file"),
        (vec!["--token-file", empty_token.path()], 78, "is empty"),
        (
            vec!["--state", corrupt_state.path()],
            78,
            corrupt_state.path(),
        ),
        (vec!["--topology", clash_topo.path()], 69, &clash),
        (vec!["check", good.path()], 0, ""),
        (vec!["check", invalid.path()], 78, ""),
    ];
    let mut wrong = Vec::new();
    for (args, want, says) in &cases {
        let (code, err) = exit_code(args);
        if code != *want || !err.contains(says) {
            wrong.push(format!(
                "switchd {args:?}: exit {code} (want {want}), stderr must mention {says:?}:\n{err}"
            ));
        }
    }
    ip(&["link", "del", &clash]);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn sighup_re_reads_the_topology_file_and_never_exits() {
    let mut sw = Switchd::start("vlans: [{ id: 10 }]\n", 1);
    let topology = sw.topology.clone().expect("started with --topology");
    let vlans = |sw: &Switchd| sw.ctl_ok(&["--json", "vlan", "list"]);
    let has_vlan_20 = |sw: &Switchd| vlans(sw).contains("\"id\": 20");
    assert!(!has_vlan_20(&sw));

    // A changed file is applied declaratively, like PUT /api/v1/topology.
    std::fs::write(&topology, "vlans: [{ id: 10 }, { id: 20, name: blue }]\n").unwrap();
    sw.signal(libc::SIGHUP);
    assert!(
        eventually(Duration::from_secs(5), || has_vlan_20(&sw)),
        "VLAN 20 not added after SIGHUP:\n{}",
        sw.log()
    );
    assert!(
        eventually(Duration::from_secs(2), || sw
            .log()
            .contains("SIGHUP: topology file applied")),
        "{}",
        sw.log()
    );
    // Each value the change touched, old and new, as fields.
    assert!(
        sw.log()
            .contains("applied vlan=20 field=added change=-->name blue"),
        "{}",
        sw.log()
    );

    // A file that does not parse changes nothing, and says why.
    std::fs::write(&topology, "vlans: [{ id: 10 }\n").unwrap();
    sw.signal(libc::SIGHUP);
    assert!(
        eventually(Duration::from_secs(5), || sw
            .log()
            .contains("SIGHUP: topology file not applied; nothing changed")),
        "{}",
        sw.log()
    );
    assert!(sw.log().contains("cannot parse topology"), "{}", sw.log());
    assert!(sw.is_running(), "switchd exited on SIGHUP:\n{}", sw.log());
    assert!(has_vlan_20(&sw), "a bad file changed the running VLANs");

    // The same file again: nothing to do.
    std::fs::write(&topology, "vlans: [{ id: 10 }, { id: 20, name: blue }]\n").unwrap();
    sw.signal(libc::SIGHUP);
    assert!(
        eventually(Duration::from_secs(5), || sw
            .log()
            .contains("it is what runs")),
        "{}",
        sw.log()
    );
    let log = sw.stop();
    assert!(log.contains("stopping"), "{log}");
}

#[test]
fn sighup_without_a_topology_file_says_so_and_keeps_running() {
    let mut sw = Switchd::start_without_topology(1, &[]);
    sw.signal(libc::SIGHUP);
    assert!(
        eventually(Duration::from_secs(5), || sw
            .log()
            .contains("SIGHUP: no --topology file to re-read; nothing changed")),
        "{}",
        sw.log()
    );
    assert!(sw.is_running());
    sw.ctl_ok(&["vlan", "list"]);
    sw.stop();
}

/// A notify socket of the test's own, as systemd would give `Type=notify` services.
struct NotifySocket {
    sock: std::os::unix::net::UnixDatagram,
    path: std::path::PathBuf,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let path = std::env::temp_dir().join(format!("vlanswitch-notify-{}", unique_id()));
        let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        NotifySocket { sock, path }
    }

    /// The next message, or a panic naming what was expected.
    fn next(&self, expecting: &str) -> String {
        let mut buf = [0u8; 4096];
        let n = self
            .sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification while waiting for {expecting}: {e}"));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn systemd_readiness_ready_reloading_and_stopping_on_the_notify_socket() {
    let n = NotifySocket::new();
    let sock = n.path.to_str().unwrap().to_string();
    let sw = Switchd::start_with_env(
        "vlans: [{ id: 10 }, { id: 20 }]\n",
        1,
        &[],
        &[("NOTIFY_SOCKET", &sock)],
    );
    let ready = n.next("READY=1");
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(
        ready.contains(&format!("MAINPID={}", sw.pid())),
        "{ready:?}"
    );
    assert!(
        ready.contains("STATUS=switching: 0 ports, 3 VLANs; API on 127.0.0.1:"),
        "{ready:?}"
    );
    // READY comes after the API is bound: it answers at once.
    sw.ctl_ok(&["vlan", "list"]);
    sw.signal(libc::SIGHUP);
    let reloading = n.next("RELOADING=1");
    assert!(reloading.starts_with("RELOADING=1"), "{reloading:?}");
    let again = n.next("READY=1 after the reload");
    assert!(again.starts_with("READY=1"), "{again:?}");
    sw.signal(libc::SIGTERM);
    let stopping = n.next("STOPPING=1");
    assert!(stopping.starts_with("STOPPING=1"), "{stopping:?}");
    sw.stop();
}

#[test]
fn the_systemd_unit_verifies() {
    // The unit as shipped, with ExecStart pointing at the binary under test (systemd-analyze
    // checks that the command exists).
    let unit =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/systemd/vlanswitch.service");
    let text = std::fs::read_to_string(&unit).expect("dist/systemd/vlanswitch.service");
    assert!(text.contains("ExecStart=/usr/bin/switchd "), "{text}");
    assert!(text.contains("Type=notify"), "{text}");
    let dir = std::env::temp_dir().join(format!("vlanswitch-unit-{}", unique_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("vlanswitch.service");
    std::fs::write(&copy, text.replace("/usr/bin/switchd", SWITCHD)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (package systemd)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts switchd (no ports, API on a free port) with `args` and `env` (a value `@stderr`
/// becomes the `DEVICE:INODE` of switchd's stderr pipe), sends it SIGHUP once it logged
/// `switch ready` (with no `--topology`, a warning) and then SIGTERM, and returns its exit
/// status and every line it wrote to stderr.
fn run_and_collect(args: &[&str], env: &[(&str, String)]) -> (i32, Vec<String>) {
    use std::io::{BufRead, BufReader};
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two fds into the array we own; the result is checked.
    let made = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(made, 0, "pipe2");
    // SAFETY: both fds are fresh and owned by nothing else.
    let (reader, writer) = unsafe {
        (
            std::fs::File::from(OwnedFd::from_raw_fd(fds[0])),
            OwnedFd::from_raw_fd(fds[1]),
        )
    };
    let mut cmd = Command::new(SWITCHD);
    cmd.args(args)
        .args(["--listen", "127.0.0.1:0", "--workers", "1"]);
    for (k, v) in env {
        if v == "@stderr" {
            // The device and inode of the pipe switchd gets as stderr, as journald sets them.
            use std::os::fd::AsFd;
            use std::os::unix::fs::MetadataExt;
            let fd = writer.as_fd().try_clone_to_owned().expect("dup");
            let m = std::fs::File::from(fd).metadata().expect("fstat");
            cmd.env(k, format!("{}:{}", m.dev(), m.ino()));
        } else {
            cmd.env(k, v);
        }
    }
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(writer)
        .spawn()
        .expect("start switchd");
    drop(cmd);
    let mut lines = Vec::new();
    let mut r = BufReader::new(reader);
    let mut line = String::new();
    let mut signalled = false;
    while r.read_line(&mut line).unwrap_or(0) > 0 {
        let l = line.trim_end().to_string();
        line.clear();
        if !signalled && l.contains("switch ready") {
            signalled = true;
            // SAFETY: signals to a child we spawned and have not reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGHUP) };
        }
        if l.contains("no --topology file to re-read") {
            // SAFETY: as above.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
        lines.push(l);
    }
    let status = child.wait().expect("wait");
    (status.code().unwrap_or(-1), lines)
}

#[test]
fn json_logs_are_one_object_per_line_with_fields_as_values() {
    crate::harness::require_privileges();
    let (code, lines) = run_and_collect(&["--log-format", "json"], &[]);
    assert_eq!(code, 0, "{lines:#?}");
    assert!(lines.len() >= 4, "{lines:#?}");
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let ready = events
        .iter()
        .find(|e| e["message"] == "switch ready")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(ready["level"], "INFO");
    assert_eq!(ready["ports"], 0, "fields are values, not text: {ready}");
    assert!(
        ready["api"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{ready}"
    );
    assert!(ready["timestamp"].is_string(), "{ready}");
    let warn = events
        .iter()
        .find(|e| e["level"] == "WARN")
        .unwrap_or_else(|| panic!("no warning: {lines:#?}"));
    assert!(
        warn["message"]
            .as_str()
            .is_some_and(|m| m.contains("no --topology file")),
        "{warn}"
    );
}

#[test]
fn under_journald_text_lines_carry_their_syslog_priority() {
    crate::harness::require_privileges();
    // JOURNAL_STREAM names switchd's stderr by device and inode; a pipe of the test's own
    // stands in for journald's socket. A value that names something else changes nothing.
    let (code, plain) = run_and_collect(&[], &[("JOURNAL_STREAM", "0:0".to_string())]);
    assert_eq!(code, 0, "{plain:#?}");
    assert!(
        plain.iter().all(|l| !l.starts_with('<')),
        "a JOURNAL_STREAM that is not our stderr must not change the format: {plain:#?}"
    );
    let (code, lines) = run_and_collect(&[], &[("JOURNAL_STREAM", "@stderr".to_string())]);
    assert_eq!(code, 0, "{lines:#?}");
    let ready = lines
        .iter()
        .find(|l| l.contains("switch ready"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(ready.starts_with("<6>"), "{ready}");
    let warn = lines
        .iter()
        .find(|l| l.contains("no --topology file"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(warn.starts_with("<4>"), "{warn}");
    // journald stamps entries itself.
    assert!(!ready.contains("Z "), "a timestamp under journald: {ready}");
}

/// `GET path` on switchd's API (plain HTTP/1.0 over TCP); the body.
fn http_get(api: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).expect("connect to the API");
    write!(s, "GET {path} HTTP/1.0\r\nHost: switchd\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_string()
}

#[test]
fn metrics_pass_promtool_with_link_build_and_process_gauges() {
    let id = unique_id();
    let (up, waiting) = (format!("{id}u"), format!("{id}w"));
    let sw = Switchd::start(
        &format!(
            "vlans: [{{ id: 10 }}]\nports:\n\
             \x20 - {{ name: {up}, kind: tap, mode: access, vlan: 10 }}\n\
             \x20 - {{ name: {waiting}, kind: netdev, mode: access, vlan: 10 }}\n"
        ),
        1,
    );
    let text = http_get(&sw.api, "/metrics");
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (package prometheus; .ci/run installs it)");
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(
        has(&format!("vlanswitch_port_up{{port=\"{up}\"}} 1")),
        "{text}"
    );
    assert!(
        has(&format!("vlanswitch_port_up{{port=\"{waiting}\"}} 0")),
        "{text}"
    );
    assert!(
        has(&format!(
            "vlanswitch_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    assert!(has("vlanswitch_fdb_max_entries 65536"), "{text}");
    for family in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "vlanswitch_vlan_bytes_total",
        "vlanswitch_fdb_learned_total",
        "vlanswitch_fdb_aged_total",
        "vlanswitch_fdb_moves_total",
    ] {
        assert!(
            text.contains(&format!("\n{family}")),
            "no {family}:\n{text}"
        );
    }
    let rss: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .and_then(|v| v.parse().ok())
        .expect("resident memory");
    assert!(rss > 1 << 20, "switchd's RSS read as {rss} bytes");
    // A learning failure is a learning event, not a drop.
    assert!(!text.contains("reason=\"fdb_no_room\""), "{text}");
    assert!(
        text.contains(&format!(
            "vlanswitch_port_mac_events_total{{port=\"{up}\",event=\"fdb_no_room\"}} 0"
        )),
        "{text}"
    );
    sw.stop();
}
