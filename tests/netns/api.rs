//! The REST control plane and switchctl against a running switchd: live reconfiguration,
//! persistence across a crash, listeners and tokens.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::harness::{udp_stream_during, unique_id, Switchd, SWITCHD};
use crate::lab::Lab;

#[test]
fn patch_moves_a_host_to_another_vlan() {
    let lab = Lab::new();
    assert!(lab.a2.reaches(&lab.a1.addr));
    assert!(lab.a2.cannot_reach(&lab.b1.addr));
    let a2 = lab.a2.ifname.clone();
    let out = lab.sw.ctl_ok(&["port", "set", &a2, "--access", "20"]);
    assert!(out.contains("access  20"), "{out}");
    // The MACs a2 had learned in VLAN 10 are gone.
    let fdb = lab
        .sw
        .ctl_ok(&["--json", "fdb", "show", "--vlan", "10", "--port", &a2]);
    assert_eq!(fdb.trim(), "[]", "entries of {a2} left in VLAN 10: {fdb}");
    lab.a2.flush_neighbours();
    lab.b1.flush_neighbours();
    assert!(lab.a2.reaches(&lab.b1.addr), "a2 (now VLAN 20) -> b1");
    assert!(
        lab.a2.cannot_reach(&lab.a1.addr),
        "a2 (now VLAN 20) still reached VLAN 10"
    );
}

#[test]
fn hundreds_of_changes_to_other_ports_lose_no_packet_of_a_stream() {
    let lab = Lab::new();
    assert!(lab.a1.reaches(&lab.a2.addr));
    lab.sw.ctl_ok(&["vlan", "add", "30"]);
    let (changes, stream) = udp_stream_during(&lab.a1, &lab.a2, 5002, || {
        let b1 = lab.b1.ifname.clone();
        let extra = format!("{}x", unique_id());
        let mut changes = 0;
        for i in 0..60 {
            let vid = if i % 2 == 0 { "30" } else { "20" };
            lab.sw.ctl_ok(&["port", "set", &b1, "--access", vid]);
            lab.sw
                .ctl_ok(&["port", "add", &extra, "--kind", "tap", "--access", "10"]);
            lab.sw
                .ctl_ok(&["port", "set", &extra, "--trunk", "10,20,30"]);
            lab.sw.ctl_ok(&["fdb", "flush", "--port", &b1]);
            lab.sw.ctl_ok(&["port", "del", &extra]);
            changes += 5;
        }
        changes
    });
    assert!(changes >= 300);
    let sent = stream.sent;
    assert!(sent > 500, "the stream ran ({sent} datagrams)");
    let (first, n) = stream.lost();
    assert!(
        first.is_empty(),
        "{n} of {sent} datagrams lost during reconfiguration, first: {first:?}"
    );
}

#[test]
fn state_file_survives_kill_9_in_a_burst_of_changes() {
    let id = unique_id();
    let state = std::env::temp_dir().join(format!("vlanswitch-state-{id}.yaml"));
    let st = state.to_str().unwrap().to_string();
    let sw = Switchd::start_with("vlans: [{ id: 10 }]\n", 1, &["--state", &st]);
    // A burst of changes on one thread; SIGKILL lands in the middle of it.
    let last_acked = std::sync::Mutex::new(None::<String>);
    let attempts = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..1000 {
                let name = format!("{id}p{i}");
                attempts.store(i + 1, Ordering::Relaxed);
                let (ok, _, _) =
                    sw.ctl(&["port", "add", &name, "--kind", "netdev", "--access", "10"]);
                if !ok {
                    break;
                }
                *last_acked.lock().unwrap() = Some(name);
            }
        });
        let start = Instant::now();
        while attempts.load(Ordering::Relaxed) < 30 && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(1));
        }
        sw.kill9_now();
    });
    let attempted = attempts.load(Ordering::Relaxed);
    assert!(
        attempted < 1000,
        "the kill landed after the burst had ended"
    );
    sw.kill9();
    let acked = last_acked
        .into_inner()
        .unwrap()
        .expect("some changes were acknowledged");
    let n_acked: usize = acked.rsplit('p').next().unwrap().parse::<usize>().unwrap() + 1;

    // The file parses (never torn) and restarts the switch; it holds every acknowledged change,
    // and at most the one in flight when the kill landed.
    let text = std::fs::read_to_string(&state).expect("state file exists");
    let restored = control_api::Topology::from_yaml(&text).expect("state file loads");
    let n = restored.ports.len();
    assert!(
        n == n_acked || n == n_acked + 1,
        "state has {n} ports, {n_acked} were acknowledged"
    );
    let sw = Switchd::start_with("vlans: []\n", 1, &["--state", &st]);
    assert!(
        sw.log().contains("restored from the state file"),
        "{}",
        sw.log()
    );
    let exported = sw.ctl_ok(&["topology", "export"]);
    assert_eq!(
        control_api::Topology::from_yaml(&exported).unwrap(),
        restored
    );
    sw.stop();
    let _ = std::fs::remove_file(&state);
}

#[test]
fn an_empty_state_file_is_refused_at_start_and_left_untouched() {
    crate::harness::require_privileges();
    let id = unique_id();
    let state = std::env::temp_dir().join(format!("vlanswitch-state-{id}.yaml"));
    let st = state.to_str().unwrap().to_string();
    // The topology names a netdev port whose interface does not exist: starting from it
    // touches nothing on the host.
    let topology = std::env::temp_dir().join(format!("vlanswitch-test-{id}t.yaml"));
    let yaml = format!(
        "vlans: [{{ id: 10 }}]\nports: [{{ name: {id}gone, kind: netdev, mode: access, vlan: 10 }}]\n"
    );
    std::fs::write(&topology, &yaml).unwrap();
    let cases: [(&[u8], &str); 4] = [
        (b"", "is empty (0 bytes)"),
        (b"  \n\n", "is empty (4 bytes, only whitespace)"),
        (
            b"# vlanswitch state\n# nothing else\n",
            "is empty (34 bytes, only comments)",
        ),
        (b"~\n", "is empty (2 bytes, a document with no value)"),
    ];
    for (content, reason) in cases {
        std::fs::write(&state, content).unwrap();
        let mut child = std::process::Command::new(SWITCHD)
            .arg("--topology")
            .arg(&topology)
            .args(["--state", &st, "--listen", "127.0.0.1:0", "--workers", "1"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start switchd");
        let end = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                panic!("switchd started from a state file holding {content:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(!status.success(), "{content:?}: exit {status}");
        assert!(
            stderr.contains(&format!("state file {st} {reason}"))
                && stderr.contains("refusing to start from it")
                && stderr
                    .contains("restore it from a backup, or delete it to start from --topology"),
            "{content:?}: {stderr}"
        );
        assert_eq!(
            std::fs::read(&state).unwrap(),
            content,
            "the state file was changed"
        );
    }
    // As the message says: without the state file, switchd starts from --topology and writes
    // it; a change keeps the file's mode and leaves no temporary file.
    std::fs::remove_file(&state).unwrap();
    let sw = Switchd::start_with(&yaml, 1, &["--state", &st]);
    assert!(
        sw.log()
            .contains("configuration loaded from the topology file"),
        "{}",
        sw.log()
    );
    let written = control_api::state::load(&state).expect("state file written at start");
    assert_eq!(written.ports.len(), 1);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o640)).unwrap();
    sw.ctl_ok(&["vlan", "add", "20"]);
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o640, "the state file's mode was not kept");
    assert_eq!(
        control_api::state::load(&state).unwrap().vlan_ids(),
        [1, 10, 20]
    );
    let tmp = state.with_file_name(format!(".vlanswitch-state-{id}.yaml.tmp"));
    assert!(!tmp.exists(), "{} left behind", tmp.display());
    sw.stop();
    let _ = std::fs::remove_file(&state);
    let _ = std::fs::remove_file(&topology);
}

#[test]
fn switchctl_speaks_for_people_and_scripts() {
    let id = unique_id();
    let (p, q) = (format!("{id}p"), format!("{id}q"));
    let sw = Switchd::start("vlans: [{ id: 10, name: red }]\n", 1);
    // The README's API examples.
    sw.ctl_ok(&["vlan", "add", "20", "--name", "blue"]);
    sw.ctl_ok(&["port", "add", &p, "--kind", "tap", "--access", "10"]);
    sw.ctl_ok(&[
        "port", "add", &q, "--kind", "netdev", "--trunk", "10,20", "--native", "1",
    ]);
    sw.ctl_ok(&["port", "set", &q, "--trunk", "20", "--native", "none"]);
    let list = sw.ctl_ok(&["port", "list"]);
    assert!(list.starts_with("NAME"), "{list}");
    assert!(list.contains(&p) && list.contains(&q), "{list}");
    let json: serde_json::Value =
        serde_json::from_str(&sw.ctl_ok(&["--json", "port", "list"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!(json[1]["vlans"], serde_json::json!([20]));
    assert!(json[1].get("native_vlan").is_none(), "{json}");
    sw.ctl_ok(&[
        "fdb",
        "add",
        "02:00:00:00:00:aa",
        "--vlan",
        "10",
        "--port",
        &p,
    ]);
    let fdb = sw.ctl_ok(&["fdb", "show", "--vlan", "10"]);
    assert!(
        fdb.contains("02:00:00:00:00:aa") && fdb.contains("static"),
        "{fdb}"
    );
    let vlans = sw.ctl_ok(&["vlan", "list"]);
    assert!(vlans.contains("blue"), "{vlans}");
    let stats = sw.ctl_ok(&["stats"]);
    assert!(stats.contains("PORT") && stats.contains("VLAN"), "{stats}");

    // export -> apply changes nothing; a dry run reports without changing.
    let exported = sw.ctl_ok(&["topology", "export"]);
    let file = std::env::temp_dir().join(format!("vlanswitch-export-{id}.yaml"));
    std::fs::write(&file, &exported).unwrap();
    let f = file.to_str().unwrap();
    assert_eq!(sw.ctl_ok(&["topology", "apply", f]).trim(), "no changes");
    std::fs::write(&file, exported.replace("name: blue", "name: green")).unwrap();
    let dry = sw.ctl_ok(&["topology", "apply", f, "--dry-run"]);
    assert!(dry.contains("would rename_vlan vlan="), "{dry}");
    assert!(
        dry.contains(" name: blue -> green"),
        "old and new values: {dry}"
    );
    assert!(
        sw.ctl_ok(&["vlan", "list"]).contains("blue"),
        "dry run changed nothing"
    );
    assert!(sw
        .ctl_ok(&["topology", "apply", f])
        .contains("did rename_vlan"));
    assert!(sw.ctl_ok(&["vlan", "list"]).contains("green"));
    let _ = std::fs::remove_file(&file);

    // Errors: non-zero exit and the server's reason.
    let (ok, _, err) = sw.ctl(&["vlan", "del", "10"]);
    assert!(!ok);
    assert!(
        err.contains(&format!("VLAN 10 is used by ports {p}")),
        "{err}"
    );
    let (ok, _, err) = sw.ctl(&["port", "add", "x", "--access", "4095"]);
    assert!(!ok);
    assert!(
        err.contains("vlan: 4095 is reserved (valid 1-4094)"),
        "{err}"
    );
    let (ok, _, err) = sw.ctl(&["port", "del", "nope"]);
    assert!(!ok && err.contains("no port named \"nope\""), "{err}");
    sw.ctl_ok(&["port", "del", &p]);
    assert!(
        !crate::harness::link_exists(&p),
        "deleting a tap port removes the tap"
    );
    sw.stop();
}

#[test]
fn unix_socket_and_bearer_token() {
    let id = unique_id();
    let sock = std::env::temp_dir().join(format!("vlanswitch-{id}.sock"));
    let sock_arg = format!("unix:{}", sock.display());
    let sw = Switchd::start_with("", 1, &["--listen", &sock_arg]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "API socket mode");
    assert!(sw.ctl_ok(&["vlan", "list"]).contains("VLAN"));
    sw.stop();

    // A non-loopback listener without a token is refused at startup.
    let out = std::process::Command::new(SWITCHD)
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token-file"));

    // With a token, requests without it get 401.
    let token = std::env::temp_dir().join(format!("vlanswitch-token-{id}"));
    std::fs::write(&token, "s3cret\n").unwrap();
    let t = token.to_str().unwrap();
    let sw = Switchd::start_with("", 1, &["--listen", "0.0.0.0:0", "--token-file", t]);
    let port = sw.api.rsplit(':').next().unwrap().to_string();
    let local = format!("127.0.0.1:{port}");
    let run = |extra: &[&str]| {
        std::process::Command::new(crate::harness::SWITCHCTL)
            .args(["--server", &local])
            .args(extra)
            .args(["vlan", "list"])
            .output()
            .unwrap()
    };
    let denied = run(&[]);
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("HTTP 401"));
    assert!(run(&["--token-file", t]).status.success());
    sw.stop();
    let _ = std::fs::remove_file(&token);
}

#[test]
fn a_failed_apply_changes_nothing() {
    let id = unique_id();
    let (p, q, clash) = (format!("{id}p"), format!("{id}q"), format!("{id}c"));
    // An interface that is not a tap: a tap port of that name cannot be made.
    crate::harness::veth_pair(&clash, &format!("{clash}x"));
    let sw = Switchd::start(
        &format!(
            "ports:\n  - {{ name: {p}, kind: tap, mode: access, vlan: 1 }}\n  - {{ name: {q}, kind: tap, mode: access, vlan: 1 }}\n"
        ),
        1,
    );
    let original = sw.ctl_ok(&["topology", "export"]);
    // One change that removes q, turns p into a netdev port and adds a tap that cannot be made.
    let desired = format!(
        "ports:\n  - {{ name: {p}, kind: netdev, mode: access, vlan: 1 }}\n  - {{ name: {clash}, kind: tap, mode: access, vlan: 1 }}\n"
    );
    let file = std::env::temp_dir().join(format!("vlanswitch-fail-{id}.yaml"));
    std::fs::write(&file, desired).unwrap();
    let (ok, _, err) = sw.ctl(&["topology", "apply", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    let _ = std::process::Command::new("ip")
        .args(["link", "del", &clash])
        .status();
    assert!(!ok, "apply must fail");
    assert!(err.contains(&format!("port {clash}")), "{err}");
    assert_eq!(
        sw.ctl_ok(&["topology", "export"]),
        original,
        "topology unchanged"
    );
    let ports: serde_json::Value =
        serde_json::from_str(&sw.ctl_ok(&["--json", "port", "list"])).unwrap();
    for (i, name) in [&p, &q].into_iter().enumerate() {
        assert_eq!(ports[i]["name"], name.as_str());
        assert_eq!(ports[i]["kind"], "tap");
        assert_eq!(ports[i]["state"]["link"], "up", "{ports}");
        assert!(crate::harness::link_exists(name), "tap {name} exists again");
    }
    sw.stop();
}
