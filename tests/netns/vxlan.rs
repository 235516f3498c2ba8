//! VLANs across hosts over VXLAN. Each "host" is a network namespace with its own switchd
//! (API on a unix socket, reachable from the test's namespace), joined to the others by a
//! veth underlay; each VM is a further namespace on one of its host's taps. Peers: other
//! switchds, a Linux bridge with a kernel VXLAN interface, and Open vSwitch's userspace
//! datapath (`tests/netns/ovs-vtep.sh`).

use std::process::Command;
use std::time::Duration;

use crate::harness::{
    eventually, frame, mac_string, udp_stream_during, unique_id, Host, Netns, Switchd, BROADCAST,
};

/// A host: its namespace, its underlay address, and its switchd (if it runs one).
struct Vtep {
    ns: Netns,
    addr: String,
    sw: Option<Switchd>,
}

impl Vtep {
    fn sw(&self) -> &Switchd {
        self.sw.as_ref().expect("this host runs switchd")
    }

    /// Starts switchd in the host on `yaml`, its API on a unix socket.
    fn start(&mut self, id: &str, yaml: &str) {
        let sock = format!("unix:/run/vlanswitch-test-{id}-{}.sock", self.ns.name);
        let yaml = yaml.to_string();
        self.sw = Some(
            self.ns
                .run(|| Switchd::start_with(&yaml, 1, &["--listen", &sock])),
        );
    }

    /// A VM on tap `tap` of this host's switchd: the tap moves into a namespace of its own
    /// with `addr`/24 and MTU `mtu`.
    fn vm(&self, tap: &str, addr: &str, mtu: u32) -> Host {
        let ns = Netns::new(&format!("vs-{tap}"));
        self.ns.ip(&["link", "set", tap, "netns", &ns.name]);
        ns.ip(&["link", "set", tap, "mtu", &mtu.to_string(), "up"]);
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", tap]);
        Host {
            ns,
            ifname: tap.to_string(),
            addr: addr.to_string(),
        }
    }

    /// The kernel's VXLAN FDB of interface `dev` in this host (`bridge fdb show`).
    fn kernel_fdb(&self, dev: &str) -> String {
        let out = Command::new("bridge")
            .args(["-n", &self.ns.name, "fdb", "show", "dev", dev])
            .output()
            .expect("run bridge");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn has_link(&self, dev: &str) -> bool {
        self.ns.exec_ok(&["ip", "link", "show", dev])
    }

    /// Interface `dev`'s index in this host.
    fn ifindex(&self, dev: &str) -> u32 {
        let dev = dev.to_string();
        self.ns
            .run(move || dataplane::port::packet::ifindex(&dev))
            .unwrap_or_else(|| panic!("no interface in {}", self.ns.name))
    }
}

/// Hosts `names` on one underlay: a bridge in a namespace of its own with a veth to each
/// host. IPv4 192.0.2.0/24 or IPv6 2001:db8::/64, host `i` at `.i+1` / `::i+1`.
struct Underlay {
    _ns: Netns,
    hosts: Vec<Vtep>,
}

fn underlay(id: &str, n: usize, v6: bool) -> Underlay {
    let ul = Netns::new(&format!("vs-{id}ul"));
    ul.ip(&["link", "add", "br0", "type", "bridge"]);
    ul.ip(&["link", "set", "br0", "up"]);
    let hosts = (0..n)
        .map(|i| {
            let ns = Netns::new(&format!("vs-{id}h{}", i + 1));
            let (port, nic) = (format!("p{i}"), "ul".to_string());
            ul.ip(&[
                "link", "add", &port, "type", "veth", "peer", "name", &nic, "netns", &ns.name,
            ]);
            ul.ip(&["link", "set", &port, "master", "br0", "up"]);
            let (addr, cidr) = if v6 {
                let a = format!("2001:db8::{}", i + 1);
                (a.clone(), format!("{a}/64"))
            } else {
                let a = format!("192.0.2.{}", i + 1);
                (a.clone(), format!("{a}/24"))
            };
            let mut args = vec!["addr", "add", &cidr, "dev", "ul"];
            if v6 {
                args.push("nodad");
            }
            ns.ip(&args);
            ns.ip(&["link", "set", "ul", "up"]);
            Vtep { ns, addr, sw: None }
        })
        .collect();
    Underlay { _ns: ul, hosts }
}

/// A switchd topology for host `me` of `all`: VLAN 10 as VNI 1010 and VLAN 20 as VNI 1020,
/// with a tap in each (`{id}a{n}`, `{id}b{n}`), flooding to every other host.
fn two_vlans(id: &str, all: &[&str], me: usize) -> String {
    let remotes: Vec<&str> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != me)
        .map(|(_, a)| *a)
        .collect();
    format!(
        "vxlan: {{ local: '{}', remotes: [{}] }}\n\
         vlans: [{{ id: 10, vni: 1010 }}, {{ id: 20, vni: 1020 }}]\n\
         ports:\n\
         - {{ name: {id}a{n}, kind: tap, mode: access, vlan: 10 }}\n\
         - {{ name: {id}b{n}, kind: tap, mode: access, vlan: 20 }}\n",
        all[me],
        remotes
            .iter()
            .map(|r| format!("'{r}'"))
            .collect::<Vec<_>>()
            .join(", "),
        n = me + 1,
    )
}

/// Two hosts, each its own switchd, VLAN 10 and VLAN 20 each over its own VNI: every VM
/// reaches the VM of its VLAN on the other host and never the other VLAN's, though all four
/// share one IP subnet; a broadcast stays in its VNI; TCP arrives intact with offloads on;
/// the MAC tables name the remote side; and stopping switchd removes its tunnels.
fn two_switchds_carry_each_vlan_over_its_own_vni(v6: bool) {
    let id = unique_id();
    let mut ul = underlay(&id, 2, v6);
    let addrs: Vec<String> = ul.hosts.iter().map(|h| h.addr.clone()).collect();
    let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    for (i, h) in ul.hosts.iter_mut().enumerate() {
        h.start(&id, &two_vlans(&id, &addrs, i));
    }
    // The underlay's MTU is 1500: the tunnels get 1450 (1430 over IPv6) and so do the VMs.
    let mtu = if v6 { 1430 } else { 1450 };
    let [h1, h2] = &ul.hosts[..] else {
        unreachable!()
    };
    let warnings = || {
        h1.sw()
            .log()
            .matches("the port's MTU is bigger than its VLAN's tunnel's")
            .count()
    };
    assert_eq!(
        warnings(),
        2,
        "one MTU warning for each 1500-byte tap:\n{}",
        h1.sw().log()
    );
    // A later change (the taps are still here, their MTU as it was) warns no more.
    h1.sw().ctl_ok(&["vlan", "set", "10", "--name", "red"]);
    assert_eq!(warnings(), 2, "{}", h1.sw().log());
    let a1 = h1.vm(&format!("{id}a1"), "198.18.5.1", mtu);
    let b1 = h1.vm(&format!("{id}b1"), "198.18.5.11", mtu);
    let a2 = h2.vm(&format!("{id}a2"), "198.18.5.2", mtu);
    let b2 = h2.vm(&format!("{id}b2"), "198.18.5.12", mtu);
    assert!(
        eventually(Duration::from_secs(10), || a1.reaches(&a2.addr)),
        "VLAN 10 across hosts; host 1's log:\n{}",
        h1.sw().log()
    );
    assert!(b1.reaches(&b2.addr), "VLAN 20 across hosts");
    assert!(a1.cannot_reach(&b2.addr), "VLAN 10 reached VLAN 20's VM");
    assert!(b2.cannot_reach(&a1.addr), "VLAN 20 reached VLAN 10's VM");

    // A broadcast from a1 reaches a2 through VNI 1010 only.
    let marker = format!("vx-bcast-{id}");
    let (mut ra1, mut ra2, mut rb1, mut rb2) = (a1.raw(), a2.raw(), b1.raw(), b2.raw());
    ra1.send(&frame(BROADCAST, a1.mac(), &[], marker.as_bytes()));
    assert_eq!(
        ra2.capture(marker.as_bytes(), Duration::from_millis(500))
            .len(),
        1,
        "the broadcast did not cross in VNI 1010"
    );
    for (what, r) in [("b1", &mut rb1), ("b2", &mut rb2)] {
        assert!(
            r.capture(marker.as_bytes(), Duration::from_millis(300))
                .is_empty(),
            "VLAN 10's broadcast reached {what} in VLAN 20"
        );
    }

    let (sent, got) = crate::lab::tcp_transfer(&a1, &a2, 16 << 20);
    assert_eq!(sent, got, "SHA-256 of the data sent and received differ");
    let c = h1.sw().port_counters("vxlan1010");
    assert!(
        c["tx_bytes"] / c["tx_packets"].max(1) > 3000,
        "GSO frames did not stay whole into the tunnel: {c:?}"
    );
    assert_eq!(c["drop_tx_error"], 0, "{c:?}");

    // The MAC table: a2's MAC on the tunnel port, in VLAN 10; the kernel has it behind h2.
    let a2_mac = mac_string(a2.mac());
    let fdb = h1.sw().ctl_ok(&["fdb", "show", "--vlan", "10"]);
    assert!(
        fdb.lines()
            .any(|l| l.contains(&a2_mac) && l.contains("vxlan1010") && l.contains(&h2.addr)),
        "the remote MAC with its VTEP:\n{fdb}"
    );
    assert!(
        h1.kernel_fdb("vxlan1010")
            .lines()
            .any(|l| l.starts_with(&a2_mac) && l.contains(&format!("dst {}", h2.addr))),
        "{}",
        h1.kernel_fdb("vxlan1010")
    );

    // A switchd killed with -9 leaves its tunnels; the next one replaces them, and stopping
    // it removes them.
    let before = ul.hosts[0].ifindex("vxlan1010");
    ul.hosts[0].sw.take().unwrap().kill9();
    assert!(ul.hosts[0].has_link("vxlan1010"));
    ul.hosts[0].start(&id, &two_vlans(&id, &addrs, 0));
    assert_ne!(
        ul.hosts[0].ifindex("vxlan1010"),
        before,
        "the leftover was not replaced"
    );
    let fdb = ul.hosts[0].kernel_fdb("vxlan1010");
    assert!(
        fdb.contains(&format!("00:00:00:00:00:00 dst {}", addrs[1])),
        "{fdb}"
    );
    ul.hosts[0].sw.take().unwrap().stop();
    assert!(
        !ul.hosts[0].has_link("vxlan1010") && !ul.hosts[0].has_link("vxlan1020"),
        "tunnels left behind"
    );
}

#[test]
fn two_switchds_carry_each_vlan_over_its_own_vni_on_an_ipv4_underlay() {
    two_switchds_carry_each_vlan_over_its_own_vni(false);
}

#[test]
fn two_switchds_carry_each_vlan_over_its_own_vni_on_an_ipv6_underlay() {
    two_switchds_carry_each_vlan_over_its_own_vni(true);
}

/// Host 1's switchd topology in the one-VNI tests: VLAN 10 as VNI 1010 flooding to host 2,
/// with the tap `{id}a1`.
fn one_vni(id: &str) -> String {
    format!(
        "vxlan: {{ local: 192.0.2.1, remotes: [192.0.2.2] }}\n\
         vlans: [{{ id: 10, vni: 1010 }}]\n\
         ports: [{{ name: {id}a1, kind: tap, mode: access, vlan: 10 }}]\n"
    )
}

/// Host `h` as a Linux bridge with a kernel VXLAN interface for VNI `vni` (flooding to
/// `remotes`) and a VM at `vm_addr` on a veth: the reference VTEP.
fn kernel_vtep(h: &Vtep, id: &str, vni: u32, remotes: &[&str], vm_addr: &str) -> Host {
    let vx = format!("vx{vni}");
    let ns = &h.ns;
    ns.ip(&[
        "link",
        "add",
        &vx,
        "type",
        "vxlan",
        "id",
        &vni.to_string(),
        "local",
        &h.addr,
        "dstport",
        "4789",
        "dev",
        "ul",
    ]);
    for r in remotes {
        assert!(
            Command::new("bridge")
                .args([
                    "-n",
                    &ns.name,
                    "fdb",
                    "append",
                    "00:00:00:00:00:00",
                    "dev",
                    &vx,
                    "dst",
                    r
                ])
                .status()
                .unwrap()
                .success(),
            "bridge fdb append"
        );
    }
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    ns.ip(&["link", "set", &vx, "master", "br0", "up"]);
    let vm = Netns::new(&format!("{}vm", ns.name));
    let nic = format!("{id}k");
    ns.ip(&[
        "link", "add", "vmp", "type", "veth", "peer", "name", &nic, "netns", &vm.name,
    ]);
    ns.ip(&["link", "set", "vmp", "master", "br0", "up"]);
    ns.ip(&["link", "set", "br0", "up"]);
    vm.ip(&["link", "set", &nic, "mtu", "1450", "up"]);
    vm.ip(&["addr", "add", &format!("{vm_addr}/24"), "dev", &nic]);
    Host {
        ns: vm,
        ifname: nic,
        addr: vm_addr.to_string(),
    }
}

/// switchd against Linux bridges with kernel VXLAN interfaces: traffic and learning both
/// ways; then a third host's VTEP is added by REST while a stream flows to the second,
/// which loses nothing, and the third is reached; removing it again stops the flooding to it.
#[test]
fn a_kernel_bridge_vtep_interoperates_and_a_third_is_added_live_without_loss() {
    let id = unique_id();
    let mut ul = underlay(&id, 3, false);
    let yaml = one_vni(&id);
    ul.hosts[0].start(&id, &yaml);
    let [h1, h2, h3] = &ul.hosts[..] else {
        unreachable!()
    };
    let a1 = h1.vm(&format!("{id}a1"), "198.18.6.1", 1450);
    let a2 = kernel_vtep(h2, &id, 1010, &["192.0.2.1"], "198.18.6.2");
    let a3 = kernel_vtep(h3, &id, 1010, &["192.0.2.1"], "198.18.6.3");
    assert!(
        eventually(Duration::from_secs(10), || a1.reaches(&a2.addr)),
        "switchd -> kernel bridge VTEP; log:\n{}",
        h1.sw().log()
    );
    assert!(a2.reaches(&a1.addr), "kernel bridge VTEP -> switchd");
    let (sent, got) = crate::lab::tcp_transfer(&a2, &a1, 8 << 20);
    assert_eq!(sent, got, "TCP from the kernel VTEP to switchd's VM");
    // Learning both ways: each kernel FDB names the other VTEP.
    assert!(h2
        .kernel_fdb("vx1010")
        .contains(&format!("{} dst 192.0.2.1", mac_string(a1.mac()))));
    assert!(h1
        .kernel_fdb("vxlan1010")
        .contains(&format!("{} dst 192.0.2.2", mac_string(a2.mac()))));
    assert!(a1.cannot_reach(&a3.addr), "host 3 is on no flood list yet");

    // Host 3 joins (REST, through switchctl) while a stream flows to host 2: not one
    // datagram of it is lost.
    let (_, stream) = udp_stream_during(&a1, &a2, 5010, || {
        std::thread::sleep(Duration::from_millis(500));
        h1.sw().ctl_ok(&["vxlan", "remote", "add", "192.0.2.3"]);
        std::thread::sleep(Duration::from_millis(500));
    });
    let (first, lost) = stream.lost();
    assert!(stream.sent > 500, "the stream hardly ran ({})", stream.sent);
    assert_eq!(lost, 0, "lost {lost} of {} (first: {first:?})", stream.sent);
    assert!(
        h1.kernel_fdb("vxlan1010")
            .contains("00:00:00:00:00:00 dst 192.0.2.3"),
        "{}",
        h1.kernel_fdb("vxlan1010")
    );
    assert!(
        eventually(Duration::from_secs(5), || a1.reaches(&a3.addr)),
        "host 3 after it was added"
    );
    // Removed again, declaratively this time: no flood entry for it is left.
    let path = std::env::temp_dir().join(format!("vlanswitch-test-{id}-2.yaml"));
    std::fs::write(&path, &yaml).unwrap();
    h1.sw()
        .ctl_ok(&["topology", "apply", path.to_str().unwrap()]);
    assert!(!h1
        .kernel_fdb("vxlan1010")
        .contains("00:00:00:00:00:00 dst 192.0.2.3"));
    assert!(a2.reaches(&a1.addr), "host 2 after host 3 left");
    // The tunnel interface removed by hand: switchd makes it again, with its flood list.
    h1.ns.ip(&["link", "del", "vxlan1010"]);
    assert!(
        eventually(Duration::from_secs(5), || a1.reaches(&a2.addr)),
        "host 2 after the tunnel was removed by hand; log:\n{}",
        h1.sw().log()
    );
    assert!(h1
        .kernel_fdb("vxlan1010")
        .contains("00:00:00:00:00:00 dst 192.0.2.2"));
    assert!(h1.sw().log().contains("making it again"));
}

/// Open vSwitch as a remote VTEP (its userspace datapath with a `vxlan` port, the tunnel
/// address on its `br-phy` bridge, as in its userspace-tunneling how-to), run by
/// `tests/netns/ovs-vtep.sh` in host 2 with a VM behind it.
struct OvsVtep {
    script: std::path::PathBuf,
    ns: String,
    dir: String,
}

impl OvsVtep {
    fn up(h: &Vtep, remote: &str, vni: u32, vm: &Netns, vm_addr: &str, id: &str) -> OvsVtep {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/netns/ovs-vtep.sh");
        let dir = std::env::temp_dir()
            .join(format!("vlanswitch-ovs-{id}"))
            .display()
            .to_string();
        let ovs = OvsVtep {
            script,
            ns: h.ns.name.clone(),
            dir,
        };
        let out = ovs
            .cmd(&[
                "up",
                &h.ns.name,
                &h.addr,
                remote,
                &vni.to_string(),
                &vm.name,
                &format!("{vm_addr}/24"),
                "ul",
            ])
            .output()
            .expect("run ovs-vtep.sh");
        assert!(
            out.status.success(),
            "ovs-vtep.sh up: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ovs
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.arg(&self.script)
            .args(args)
            .env("OVS_VTEP_DIR", &self.dir);
        c
    }

    /// `ovs-appctl fdb/show br-int`.
    fn fdb(&self) -> String {
        let out = self
            .cmd(&["ctl", &self.ns, "ovs-appctl", "fdb/show", "br-int"])
            .output()
            .expect("ovs-appctl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for OvsVtep {
    fn drop(&mut self) {
        let _ = self.cmd(&["down", &self.ns]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// switchd against Open vSwitch as the remote VTEP: ping and TCP both ways, and each side
/// learns the other's VM behind the other's VTEP.
#[test]
fn open_vswitch_as_the_remote_vtep_interoperates_both_ways() {
    let id = unique_id();
    let mut ul = underlay(&id, 2, false);
    let yaml = one_vni(&id);
    ul.hosts[0].start(&id, &yaml);
    let [h1, h2] = &ul.hosts[..] else {
        unreachable!()
    };
    // Open vSwitch reads its underlay with AF_PACKET and drops tunnel packets whose UDP
    // checksum the sending veth left for an offload to fill: the switch's host sends them
    // complete (docs/multi-host.md).
    assert!(
        h1.ns.exec_ok(&["ethtool", "-K", "ul", "tx", "off"]),
        "ethtool -K ul tx off"
    );
    let vm2 = Netns::new(&format!("vs-{id}ovsvm"));
    let ovs = OvsVtep::up(h2, "192.0.2.1", 1010, &vm2, "198.18.7.2", &id);
    let a2 = Host {
        ns: vm2,
        ifname: "eth0".into(),
        addr: "198.18.7.2".into(),
    };
    let a1 = h1.vm(&format!("{id}a1"), "198.18.7.1", 1450);
    assert!(
        eventually(Duration::from_secs(10), || a1.reaches(&a2.addr)),
        "switchd -> Open vSwitch; switchd's log:\n{}",
        h1.sw().log()
    );
    assert!(a2.reaches(&a1.addr), "Open vSwitch -> switchd");
    let (sent, got) = crate::lab::tcp_transfer(&a1, &a2, 8 << 20);
    assert_eq!(
        sent, got,
        "TCP from switchd's VM to the one behind Open vSwitch"
    );
    let (sent, got) = crate::lab::tcp_transfer(&a2, &a1, 8 << 20);
    assert_eq!(
        sent, got,
        "TCP from the VM behind Open vSwitch to switchd's"
    );
    let a1_mac = mac_string(a1.mac());
    assert!(
        ovs.fdb().contains(&a1_mac),
        "Open vSwitch did not learn {a1_mac}:\n{}",
        ovs.fdb()
    );
    let a2_mac = mac_string(a2.mac());
    assert!(
        h1.kernel_fdb("vxlan1010")
            .contains(&format!("{a2_mac} dst 192.0.2.2")),
        "{}",
        h1.kernel_fdb("vxlan1010")
    );
    let fdb = h1.sw().ctl_ok(&["fdb", "show", "--vlan", "10"]);
    assert!(fdb.contains(&a2_mac) && fdb.contains("vxlan1010"), "{fdb}");
    drop(ovs);
}

/// A tunnel whose address is not configured yet when switchd starts waits, down with the
/// reason, and comes up when the address appears; a change of endpoint that fails (an
/// underlay that does not exist) is refused and leaves the tunnel as it was, flood list
/// included.
#[test]
fn a_tunnel_waits_for_its_address_and_a_failed_endpoint_change_leaves_it_whole() {
    let id = unique_id();
    let mut ul = underlay(&id, 2, false);
    // Host 1's address is not there yet.
    ul.hosts[0].ns.ip(&["addr", "flush", "dev", "ul"]);
    let yaml = one_vni(&id);
    ul.hosts[0].start(&id, &yaml);
    let [h1, h2] = &ul.hosts[..] else {
        unreachable!()
    };
    let port = |sw: &Switchd| -> serde_json::Value {
        serde_json::from_str(&sw.ctl_ok(&["--json", "port", "show", "vxlan1010"])).unwrap()
    };
    let p = port(h1.sw());
    assert_eq!(p["state"]["link"], "down", "{p}");
    assert!(
        p["state"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no interface holds vxlan.local 192.0.2.1")),
        "{p}"
    );
    h1.ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "ul"]);
    assert!(
        eventually(Duration::from_secs(5), || port(h1.sw())["state"]["link"]
            == "up"),
        "the tunnel did not come up once its address was there; log:\n{}",
        h1.sw().log()
    );
    let a1 = h1.vm(&format!("{id}a1"), "198.18.8.1", 1450);
    let a2 = kernel_vtep(h2, &id, 1010, &["192.0.2.1"], "198.18.8.2");
    assert!(
        eventually(Duration::from_secs(10), || a1.reaches(&a2.addr)),
        "across once the tunnel is up"
    );

    // A new endpoint whose underlay does not exist: refused, and nothing lost.
    let (ok, _, err) = h1.sw().ctl(&[
        "vxlan",
        "set",
        "--local",
        "192.0.2.1",
        "--remote",
        "192.0.2.2",
        "--underlay",
        "nosuch0",
    ]);
    assert!(
        !ok && err.contains("nosuch0") && err.contains("HTTP 409"),
        "{err}"
    );
    assert!(
        h1.kernel_fdb("vxlan1010")
            .contains("00:00:00:00:00:00 dst 192.0.2.2"),
        "the flood list is gone after the failed change: {}",
        h1.kernel_fdb("vxlan1010")
    );
    let x: serde_json::Value =
        serde_json::from_str(&h1.sw().ctl_ok(&["--json", "vxlan", "show"])).unwrap();
    assert!(x["vxlan"]["underlay"].is_null(), "{x}");
    h2.ns.ip(&["neigh", "flush", "all"]);
    assert!(a2.reaches(&a1.addr), "after the failed change");
}
