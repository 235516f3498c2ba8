//! The VXLAN endpoint through `switchctl` and the REST API: a real tunnel interface over a
//! veth underlay, made, changed and removed while the switch runs.

use std::process::Command;

use serde_json::Value;

use crate::harness::{unique_id, Netns, Switchd};

/// `bridge fdb show dev DEV` in namespace `ns` (the tunnel's kernel FDB).
fn kernel_fdb(ns: &Netns, dev: &str) -> String {
    let out = Command::new("bridge")
        .args(["-n", &ns.name, "fdb", "show", "dev", dev])
        .output()
        .expect("run bridge");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_vtep_is_set_up_changed_and_removed_through_switchctl() {
    let id = unique_id();
    // The switch's host: a namespace with a veth underlay (its peer in a second one).
    let host = Netns::new(&format!("vs-{id}vh"));
    let far = Netns::new(&format!("vs-{id}vf"));
    let under = "ul".to_string();
    host.ip(&[
        "link", "add", &under, "type", "veth", "peer", "name", "ul", "netns", &far.name,
    ]);
    host.ip(&["addr", "add", "198.51.100.1/24", "dev", &under]);
    host.ip(&["link", "set", &under, "up"]);
    far.ip(&["link", "set", "ul", "up"]);
    let vni = "1010".to_string();
    let tunnel = format!("vxlan{vni}");
    let port = format!("{id}a");
    let ports = format!("ports: [{{ name: {port}, kind: netdev, mode: access, vlan: 10 }}]\n");
    let sock = format!("unix:/run/vlanswitch-test-{id}-vxlan-api.sock");
    let topo = format!("vlans: [{{ id: 10 }}]\n{ports}");
    let sw = host.run(|| Switchd::start_with(&topo, 1, &["--listen", &sock]));

    let show = sw.ctl_ok(&["vxlan", "show"]);
    assert!(show.starts_with("not a VXLAN tunnel endpoint"), "{show}");
    let set = [
        "vxlan",
        "set",
        "--local",
        "198.51.100.1",
        "--remote",
        "198.51.100.2",
        "--underlay",
        &under,
    ];
    let show = sw.ctl_ok(&set);
    assert!(
        show.starts_with(&format!(
            "VTEP 198.51.100.1 dstport 4789 underlay {under} remotes 198.51.100.2"
        )),
        "{show}"
    );
    let vlans = sw.ctl_ok(&["vlan", "set", "10", "--vni", &vni, "--name", "red"]);
    assert!(vlans.lines().next().unwrap().ends_with("VNI"), "{vlans}");
    assert!(vlans.contains(&vni), "{vlans}");

    // The tunnel runs: its port, the flood list in force, the MTU of the underlay less 50.
    let v: Value = serde_json::from_str(&sw.ctl_ok(&["--json", "vxlan", "show"])).unwrap();
    let t = &v["tunnels"][0];
    assert_eq!(t["port"], tunnel.as_str(), "{v}");
    assert_eq!(
        (t["vlan"].as_u64(), t["mtu"].as_u64()),
        (Some(10), Some(1450))
    );
    assert_eq!(t["remotes"], serde_json::json!(["198.51.100.2"]), "{v}");
    assert_eq!(t["link"], "up", "{v}");
    let table = sw.ctl_ok(&["vxlan", "show"]);
    assert!(
        table.lines().any(|l| l.split_whitespace().eq([
            tunnel.as_str(),
            "10",
            &vni,
            "1450",
            "198.51.100.2",
            "up"
        ])),
        "{table}"
    );

    // A VLAN's own flood list starts from the switch-wide one; the kernel FDB follows.
    sw.ctl_ok(&["vxlan", "remote", "add", "198.51.100.3", "--vlan", "10"]);
    let (ok, _, err) = sw.ctl(&["vxlan", "remote", "add", "198.51.100.3", "--vlan", "10"]);
    assert!(
        !ok && err.contains("already in VLAN 10's flood list"),
        "{err}"
    );
    let fdb = kernel_fdb(&host, &tunnel);
    assert!(
        fdb.contains("dst 198.51.100.2") && fdb.contains("dst 198.51.100.3"),
        "{fdb}"
    );
    sw.ctl_ok(&["vxlan", "remote", "del", "198.51.100.2", "--vlan", "10"]);
    assert!(!kernel_fdb(&host, &tunnel).contains("dst 198.51.100.2"));
    let (ok, _, err) = sw.ctl(&["vxlan", "remote", "del", "198.51.100.9"]);
    assert!(!ok && err.contains("HTTP 404"), "{err}");

    // A static remote MAC shows its VTEP in the MAC table.
    let file = std::env::temp_dir().join(format!("vlanswitch-test-{id}-vxlan.yaml"));
    std::fs::write(
        &file,
        format!(
            "vxlan: {{ local: 198.51.100.1, remotes: [198.51.100.2], underlay: {under}, \
             fdb: [{{ vlan: 10, mac: '02:00:00:00:00:77', remote: 198.51.100.4 }}] }}\n\
             vlans: [{{ id: 10, name: red, vni: {vni}, remotes: [198.51.100.3] }}]\n{ports}"
        ),
    )
    .unwrap();
    sw.ctl_ok(&["topology", "apply", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    let fdb = sw.ctl_ok(&["fdb", "show", "--port", &tunnel]);
    assert!(fdb.lines().next().unwrap().ends_with("VTEP"), "{fdb}");
    assert!(
        fdb.lines()
            .any(|l| l.contains("02:00:00:00:00:77") && l.ends_with("198.51.100.4")),
        "{fdb}"
    );

    // The section cannot go while a VLAN has a vni; without it, the tunnel goes too.
    let (ok, _, err) = sw.ctl(&["vxlan", "del"]);
    assert!(!ok && err.contains("vlans[0].vni"), "{err}");
    sw.ctl_ok(&["vlan", "set", "10", "--no-vni"]);
    sw.ctl_ok(&["vxlan", "del"]);
    assert!(sw.ctl_ok(&["vxlan", "show"]).starts_with("not a VXLAN"));
    assert!(
        !host.exec_ok(&["ip", "link", "show", &tunnel]),
        "the tunnel interface is gone"
    );

    // An interface of the tunnel's name that the switch did not make is not taken over.
    host.ip(&[
        "link", "add", &tunnel, "type", "vxlan", "id", "42", "dstport", "4789", "dev", &under,
    ]);
    sw.ctl_ok(&set);
    let (ok, _, err) = sw.ctl(&["vlan", "set", "10", "--vni", &vni]);
    assert!(!ok && err.contains("File exists"), "{err}");
    let details = Command::new("ip")
        .args(["-n", &host.name, "-d", "link", "show", &tunnel])
        .output()
        .expect("ip");
    assert!(
        String::from_utf8_lossy(&details.stdout).contains("vxlan id 42 "),
        "the other interface was replaced"
    );
}
