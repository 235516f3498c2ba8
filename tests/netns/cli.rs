//! The daemon's command line: `check`, clean shutdown, errors.

use std::process::Command;

use crate::harness::{link_exists, unique_id, Switchd, SWITCHD};

#[test]
fn every_topology_file_checks_ok() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .expect("topologies/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    assert!(!files.is_empty(), "no topology files in {}", dir.display());
    let out = Command::new(SWITCHD)
        .arg("check")
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(stdout.matches(": ok").count(), files.len(), "{stdout}");
}

#[test]
fn check_names_the_field_and_the_reason() {
    let path = std::env::temp_dir().join(format!("vlanswitch-bad-{}.yaml", unique_id()));
    std::fs::write(
        &path,
        "vlans: [{ id: 10 }]\nports:\n  - { name: a, kind: tap, mode: access, vlan: 10 }\n  - { name: b, kind: tap, mode: access, vlan: 10 }\n  - { name: c, kind: tap, mode: access, vlan: 4095 }\n",
    )
    .unwrap();
    let out = Command::new(SWITCHD)
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("ports[2].vlan: 4095 is reserved (valid 1-4094)"),
        "{stdout}"
    );
}

#[test]
fn bad_topology_fails_startup_with_the_reason() {
    let path = std::env::temp_dir().join(format!("vlanswitch-bad-{}.yaml", unique_id()));
    std::fs::write(
        &path,
        "ports:\n  - { name: a, kind: tap, mode: access, vlan: 10, colour: red }\n",
    )
    .unwrap();
    let out = Command::new(SWITCHD)
        .arg("--topology")
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("unknown field `colour`"), "{stderr}");
}

#[test]
fn sigterm_stops_cleanly_and_removes_the_taps() {
    let id = unique_id();
    let (p, q) = (format!("{id}p"), format!("{id}q"));
    let sw = Switchd::start(
        &format!(
            "ports:\n  - {{ name: {p}, kind: tap, mode: access, vlan: 1 }}\n  - {{ name: {q}, kind: tap, mode: trunk, vlans: [1] }}\n"
        ),
        1,
    );
    assert!(
        link_exists(&p) && link_exists(&q),
        "taps exist while running"
    );
    let log = sw.stop();
    assert!(
        log.contains("mode=access vlan 1"),
        "startup logs each port's mode:\n{log}"
    );
    assert!(!link_exists(&p) && !link_exists(&q), "taps removed on exit");
}

#[test]
fn demo_isolates_its_tenants_and_cleans_up() {
    crate::harness::require_privileges();
    let _turn = crate::harness::lab_turn();
    let mut child = Command::new(SWITCHD)
        .args(["demo", "--workers", "2", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The demo prints its instructions once everything is up.
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut text = String::new();
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0 {
        text.push_str(&line);
        if line.contains("Press Ctrl-C") {
            break;
        }
        line.clear();
    }
    assert!(
        text.contains("ip netns exec vslab-demo-vm1 ping -c 3 198.18.0.2"),
        "{text}"
    );
    let ping = |host: &str, addr: &str| {
        Command::new("ip")
            .args(["netns", "exec", &format!("vslab-demo-{host}")])
            .args(["ping", "-c", "2", "-W", "1", addr])
            .output()
            .unwrap()
            .status
            .success()
    };
    let same_vlan = ping("vm1", "198.18.0.2") && ping("vm3", "198.18.0.4");
    let across = ping("vm1", "198.18.0.3") || ping("vm4", "198.18.0.2");
    // SIGINT, as Ctrl-C would.
    // SAFETY: kill with the pid of a child we spawned and have not reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = child.wait().unwrap();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    assert!(same_vlan, "demo hosts in one VLAN must reach each other");
    assert!(!across, "demo hosts reached across VLANs");
    assert!(status.success(), "demo exit: {status:?}");
    assert!(
        rest.contains("lab demo: removed the namespaces vslab-demo-vm1, vslab-demo-vm2"),
        "{rest}"
    );
    for host in ["vm1", "vm2", "vm3", "vm4"] {
        let ns = format!("vslab-demo-{host}");
        assert!(
            !std::path::Path::new("/run/netns").join(&ns).exists(),
            "namespace {ns} left behind"
        );
        assert!(!link_exists(host), "tap {host} left behind");
    }
}

#[test]
fn a_tap_deleted_under_the_switch_shows_down_and_others_keep_forwarding() {
    let lab = crate::lab::Lab::new();
    // Delete b1's tap (its kernel side, in b1's namespace) under the running switch.
    let b1 = lab.b1.ifname.clone();
    lab.b1.ns.ip(&["link", "del", &b1]);
    let down = crate::harness::eventually(std::time::Duration::from_secs(5), || {
        let v: serde_json::Value =
            serde_json::from_str(&lab.sw.ctl_ok(&["--json", "port", "show", &b1])).unwrap();
        v["state"]["link"] == "down"
    });
    assert!(down, "deleted tap still shows up:\n{}", lab.sw.log());
    let v = lab.sw.ctl_ok(&["--json", "port", "show", &b1]);
    assert!(v.contains("receive failed"), "{v}");
    assert!(lab.a1.reaches(&lab.a2.addr), "other ports keep forwarding");
    lab.sw.stop();
}

#[test]
fn switchctl_takes_urls_and_speaks_json_errors_with_json() {
    let id = unique_id();
    let p = format!("{id}s");
    let sw = Switchd::start(
        &format!("vlans: [{{ id: 10 }}]\nports: [{{ name: {p}, kind: netdev, mode: access, vlan: 10 }}]\n"),
        1,
    );
    let ctl = |server: &str, args: &[&str]| {
        Command::new(crate::harness::SWITCHCTL)
            .args(["--server", server])
            .args(args)
            .output()
            .expect("run switchctl")
    };
    // --server as a URL, with or without the trailing slash.
    for server in [format!("http://{}", sw.api), format!("http://{}/", sw.api)] {
        let out = ctl(&server, &["vlan", "list"]);
        assert!(
            out.status.success(),
            "--server {server}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = ctl("https://127.0.0.1:1", &["vlan", "list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no TLS"));
    let v = Command::new(crate::harness::SWITCHCTL)
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("switchctl "));

    // With --json, an error is the problem document, on stderr.
    let out = ctl(&sw.api, &["--json", "port", "del", "nope"]);
    assert!(!out.status.success());
    let problem: serde_json::Value = serde_json::from_slice(&out.stderr)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(problem["status"], 404, "{problem}");
    assert!(out.stdout.is_empty());

    // port set --admin-up, and port show as a table of every field.
    sw.ctl_ok(&["port", "set", &p, "--admin-up", "true"]);
    let show = sw.ctl_ok(&["port", "show", &p]);
    assert!(show.starts_with("FIELD"), "{show}");
    assert!(
        show.lines()
            .any(|l| l.split_whitespace().eq(["admin_up", "true"])),
        "{show}"
    );
    assert!(show.contains("state.link"), "{show}");
    let (ok, _, err) = sw.ctl(&["port", "set", &p, "--admin-up", "maybe"]);
    assert!(!ok && err.contains("--admin-up \"maybe\""), "{err}");

    // fdb show --mac and --type learned.
    sw.ctl_ok(&[
        "fdb",
        "add",
        "02:00:00:00:00:aa",
        "--vlan",
        "10",
        "--port",
        &p,
    ]);
    sw.ctl_ok(&[
        "fdb",
        "add",
        "02:00:00:00:00:bb",
        "--vlan",
        "10",
        "--port",
        &p,
    ]);
    let one = sw.ctl_ok(&["fdb", "show", "--mac", "02-00-00-00-00-AA"]);
    assert!(
        one.contains("02:00:00:00:00:aa") && !one.contains("bb"),
        "{one}"
    );
    let learned = sw.ctl_ok(&["fdb", "show", "--type", "learned"]);
    assert!(!learned.contains("02:00:00:00:00:aa"), "{learned}");
    let (ok, _, err) = sw.ctl(&["fdb", "show", "--type", "sticky"]);
    assert!(!ok && err.contains("possible values"), "{err}");
    let flushed = sw.ctl_ok(&["fdb", "flush", "--static", "--vlan", "10"]);
    assert!(flushed.contains("removed 2 entries"), "{flushed}");

    // show: the whole switch at a glance.
    let show = sw.ctl_ok(&["show"]);
    assert!(
        show.starts_with(&format!(
            "switchd at {}: 1 ports (0 up), 2 VLANs, MAC table 0 of 65536",
            sw.api
        )),
        "{show}"
    );
    assert!(show.contains("  VLAN 10, MACs: 0\n"), "{show}");
    assert!(
        show.lines().any(|l| l.split_whitespace().take(4).eq([
            p.as_str(),
            "netdev",
            "access",
            "down"
        ]) && l.contains(&format!("interface {p} does not exist"))),
        "{show}"
    );
    let json: serde_json::Value = serde_json::from_str(&sw.ctl_ok(&["--json", "show"])).unwrap();
    assert_eq!(json["ports"][0]["name"], p.as_str(), "{json}");

    // A tap port under the name of an existing veth: the hint says what to do.
    let veth = format!("{id}v");
    crate::harness::veth_pair(&veth, &format!("{id}y"));
    let (ok, _, err) = sw.ctl(&["port", "add", &veth, "--access", "10"]);
    crate::harness::ip(&["link", "del", &veth]);
    assert!(!ok, "{err}");
    assert!(
        err.contains(&format!("{veth} exists and is not a tap"))
            && err.contains("attach it as a netdev port (kind netdev)"),
        "{err}"
    );
    sw.stop();
}
