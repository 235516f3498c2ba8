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
    ip(&[
        "link",
        "add",
        &clash,
        "type",
        "veth",
        "peer",
        "name",
        &format!("{id}y"),
    ]);
    let clash_topo = TempFile::new(
        "clash.yaml",
        &format!("ports: [{{ name: {clash}, kind: tap, mode: access, vlan: 1 }}]\n"),
    );
    // An API address that is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();

    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["--help"], 0, ""),
        (vec!["--no-such-option"], 64, "unexpected argument"),
        (vec!["--workers", "0"], 64, "--workers"),
        (vec!["--listen", "nonsense"], 64, "expected HOST:PORT"),
        (vec!["--listen", &taken], 69, "cannot listen"),
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
