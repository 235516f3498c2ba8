//! The VM plug-in hooks as QEMU and libvirt run them: the shipped scripts in `dist/hooks/`,
//! with `switchctl` on the PATH. libvirt is not needed: its qemu hook gets the domain XML on
//! stdin, so the test feeds it one. Veths stand in for the VMs' taps (a netdev port does not
//! care who made its interface), with hosts in namespaces behind them.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{eventually, unique_id, Host, Switchd, SWITCHCTL};

/// Runs the shipped hook `name` with `args`, `env`, and `stdin`, as its caller would; returns
/// (success, stdout + stderr).
fn run_hook(
    sw: &Switchd,
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &str,
) -> (bool, String) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dist/hooks")
        .join(name);
    let bin_dir = std::path::Path::new(SWITCHCTL).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new(&script)
        .args(args)
        .env("PATH", path)
        .env("SWITCHCTL_SERVER", &sw.api)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    // A hook that has nothing to do with an operation exits without reading its stdin, as
    // libvirt allows: the pipe is then closed under the writer.
    match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.unwrap(),
    }
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The port `name` as the API shows it (`None` if there is none).
fn port(sw: &Switchd, name: &str) -> Option<serde_json::Value> {
    let (ok, out, _) = sw.ctl(&["--json", "port", "show", name]);
    ok.then(|| serde_json::from_str(&out).unwrap())
}

#[test]
fn the_libvirt_hook_plugs_a_domain_in_when_it_starts_and_out_when_it_stops() {
    let id = unique_id();
    let (v0, v1) = (format!("{id}v0"), format!("{id}v1"));
    let a = Host::veth(&v0, "198.18.0.51");
    let b = Host::veth(&v1, "198.18.0.52");
    let sw = Switchd::start("vlans: [{ id: 10 }, { id: 20 }]\n", 1);
    // A port left from an earlier VM under the first tap's name, in another VLAN.
    sw.ctl_ok(&["port", "add", &v0, "--kind", "netdev", "--access", "20"]);
    let xml = format!(
        "<domain type='kvm'><name>{id}</name>\
         <metadata><vlanswitch:interfaces xmlns:vlanswitch='https://vlanswitch.invalid/xmlns/libvirt/1'>\
         <vlanswitch:interface mac='52:54:00:00:05:01' vlan='10'/>\
         <vlanswitch:interface mac='52:54:00:00:05:02' vlan='10'/>\
         </vlanswitch:interfaces></metadata><devices>\
         <interface type='ethernet'><mac address='52:54:00:00:05:01'/><target dev='{v0}'/><model type='virtio'/></interface>\
         <interface type='ethernet'><mac address='52:54:00:00:05:02'/><target dev='{v1}'/><model type='virtio'/></interface>\
         <interface type='network'><mac address='52:54:00:00:05:03'/><target dev='other0'/></interface>\
         </devices></domain>"
    );
    let hook = |op: &str| run_hook(&sw, "libvirt-qemu", &[&id, op, "begin", "-"], &[], &xml);

    let (ok, out) = hook("prepare");
    assert!(ok, "{out}");
    assert!(
        port(&sw, &v0).is_none(),
        "the stale port is still there: {out}"
    );
    let (ok, out) = hook("started");
    assert!(ok, "{out}");
    for v in [&v0, &v1] {
        let p = port(&sw, v).unwrap_or_else(|| panic!("{v} not plugged: {out}"));
        assert_eq!(p["kind"], "netdev", "{p}");
        assert_eq!(p["mode"], "access", "{p}");
        assert_eq!(p["vlan"], 10, "{p}");
        assert_eq!(p["admin_up"], true, "{p}");
    }
    assert!(
        port(&sw, "other0").is_none(),
        "an interface the metadata does not name"
    );
    assert!(
        eventually(Duration::from_secs(10), || a.reaches(&b.addr)),
        "a -> b through the plugged ports"
    );
    // libvirtd restarted (reconnect): ports that are already right are left alone, with their
    // counters.
    let rx = |v: &str| {
        port(&sw, v).unwrap()["state"]["counters"]["rx_packets"]
            .as_u64()
            .unwrap()
    };
    let before = rx(&v0);
    assert!(before > 0, "no traffic counted on {v0}");
    let (ok, out) = hook("reconnect");
    assert!(ok && !out.contains("plugged"), "{out}");
    assert!(
        rx(&v0) >= before,
        "reconnect replaced the port (its counters restarted)"
    );
    // Operations that are not the hook's business change nothing.
    let (ok, out) = hook("migrate");
    assert!(ok && port(&sw, &v0).is_some(), "{out}");
    let (ok, out) = hook("stopped");
    assert!(ok, "{out}");
    assert!(
        port(&sw, &v0).is_none() && port(&sw, &v1).is_none(),
        "not unplugged: {out}"
    );
    assert!(
        a.cannot_reach(&b.addr),
        "a still reaches b after the domain stopped"
    );
    // release after stopped: nothing left to remove, and no error.
    let (ok, out) = hook("release");
    assert!(ok, "{out}");

    // Bad metadata is refused, naming what is wrong, and plugs nothing.
    let bad = xml.replacen("vlan='10'", "vlan='ten'", 1);
    let (ok, out) = run_hook(
        &sw,
        "libvirt-qemu",
        &[&id, "started", "begin", "-"],
        &[],
        &bad,
    );
    assert!(
        !ok && out.contains("vlan=\"ten\" is not a VLAN id"),
        "{out}"
    );
    assert!(
        port(&sw, &v0).is_none() && port(&sw, &v1).is_none(),
        "bad metadata plugged something"
    );
    sw.stop();
}

#[test]
fn the_qemu_scripts_plug_a_tap_in_the_vlans_of_the_environment() {
    let id = unique_id();
    let (t0, t1) = (format!("{id}q0"), format!("{id}q1"));
    let a = Host::veth(&t0, "198.18.0.53");
    let b = Host::veth(&t1, "198.18.0.54");
    let sw = Switchd::start("vlans: [{ id: 10 }, { id: 20 }]\n", 1);
    let (ok, out) = run_hook(&sw, "qemu-ifup", &[&t0], &[], "");
    assert!(
        !ok && out.contains("VLANSWITCH_VLAN"),
        "no VLAN given: {out}"
    );
    let (ok, out) = run_hook(&sw, "qemu-ifup", &[&t0], &[("VLANSWITCH_VLAN", "20")], "");
    assert!(ok, "{out}");
    let (ok, out) = run_hook(
        &sw,
        "qemu-ifup",
        &[&t1],
        &[("VLANSWITCH_TRUNK", "10,20"), ("VLANSWITCH_NATIVE", "20")],
        "",
    );
    assert!(ok, "{out}");
    let p = port(&sw, &t1).expect("t1 plugged");
    assert_eq!(p["mode"], "trunk", "{p}");
    assert_eq!(p["vlans"], serde_json::json!([10, 20]), "{p}");
    assert_eq!(p["native_vlan"], 20, "{p}");
    assert_eq!(port(&sw, &t0).expect("t0 plugged")["vlan"], 20);
    // VLAN 20 is t0's access VLAN and t1's native one: untagged traffic passes.
    assert!(
        eventually(Duration::from_secs(10), || a.reaches(&b.addr)),
        "a -> b"
    );
    for t in [&t0, &t1] {
        let (ok, out) = run_hook(&sw, "qemu-ifdown", &[t], &[], "");
        assert!(ok, "{out}");
        assert!(port(&sw, t).is_none(), "{t} still a port: {out}");
    }
    sw.stop();
}
