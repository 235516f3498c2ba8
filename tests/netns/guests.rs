//! Real QEMU guests (TCG) on the switch, through the VM harness in `vm.rs`: a guest whose tap
//! QEMU creates and holds, attached as a `netdev` port, as a VM host would plug one in. And a
//! check of the vhost-user QEMU command line against DPDK testpmd, with no switchd at all.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{eventually, testpmd_turn, unique_id, Host, Switchd};
use crate::vm::{tcp_guest_to_host, tcp_host_to_guest, Guest, GuestConfig};

/// How much TCP each direction carries (TCG moves a few MB/s).
const TCP_LEN: usize = 16 << 20;

/// A switch with VLANs 10 and 20: the QEMU tap `{id}vm` as a netdev port on VLAN 10, a netns
/// host on a tap port on VLAN 10 (198.18.0.1) and one on VLAN 20 (198.18.0.2); and the guest
/// (198.18.0.11) booted on that tap. With `trunk`, the guest's port is a trunk carrying VLAN 10
/// tagged and the guest tags its traffic itself (`eth0.10`).
struct VmLab {
    // Field order is drop order: the switch stops first, then QEMU, then the namespaces.
    sw: Switchd,
    guest: Guest,
    vm_port: String,
    red: Host,
    blue: Host,
}

impl VmLab {
    fn new(offloads: bool, trunk: bool) -> VmLab {
        let id = unique_id();
        let (vm, r, b) = (format!("{id}vm"), format!("{id}r"), format!("{id}b"));
        let mode = if trunk {
            "mode: trunk, vlans: [10]"
        } else {
            "mode: access, vlan: 10"
        };
        let sw = Switchd::start(
            &format!(
                "vlans: [{{ id: 10 }}, {{ id: 20 }}]\nports:\n\
                 \x20 - {{ name: {vm}, kind: netdev, {mode}, admin_up: true }}\n\
                 \x20 - {{ name: {r}, kind: tap, mode: access, vlan: 10 }}\n\
                 \x20 - {{ name: {b}, kind: tap, mode: access, vlan: 20 }}\n"
            ),
            2,
        );
        let red = Host::attach(&r, "198.18.0.1");
        let blue = Host::attach(&b, "198.18.0.2");
        let mut cfg = GuestConfig::tap(
            &format!("g{id}"),
            &vm,
            [0x02, 0x00, 0x00, 0x00, 0x0a, 0x0b],
            "198.18.0.11/24",
        );
        cfg.offloads = offloads;
        cfg.vlan = trunk.then_some(10);
        let guest = Guest::boot(cfg).unwrap_or_else(|e| panic!("{e:#}"));
        eprintln!("guest {} booted in {:?}", guest.name, guest.boot_time);
        // QEMU created the tap when it started; switchd attaches it when it appears.
        assert!(
            eventually(Duration::from_secs(10), || sw
                .log()
                .contains("attached interface")
                && sw.log().contains(&vm)),
            "switchd did not attach QEMU's tap {vm}:\n{}",
            sw.log()
        );
        VmLab {
            sw,
            guest,
            vm_port: vm,
            red,
            blue,
        }
    }
}

#[test]
fn a_guest_on_a_qemu_tap_reaches_its_vlan_and_nothing_else() {
    let lab = VmLab::new(true, false);
    let g = &lab.guest;
    assert!(g.reaches(&lab.red.addr), "guest -> VLAN 10 host");
    assert!(lab.red.reaches(&g.addr), "VLAN 10 host -> guest");
    assert!(g.cannot_reach(&lab.blue.addr), "guest reached VLAN 20");
    assert!(
        lab.blue.cannot_reach(&g.addr),
        "VLAN 20 host reached the guest"
    );
    // Known unicast still works after the failed attempts.
    assert!(g.reaches(&lab.red.addr), "guest -> VLAN 10 host, again");
    let s = lab.sw.port_counters(&lab.vm_port);
    lab.sw.stop();
    assert!(s["rx_packets"] > 0 && s["tx_packets"] > 0, "{s:?}");
}

#[test]
fn a_guest_tagging_vlan_10_itself_on_a_trunk_port_reaches_vlan_10_only() {
    let lab = VmLab::new(true, true);
    let g = &lab.guest;
    // 8021q in the guest: eth0.10 on eth0, VID 10 (busybox's `ip` has no `-d`).
    let vlan = g.run_ok("cat /proc/net/vlan/config");
    assert!(
        vlan.lines()
            .any(|l| l.split('|').map(str::trim).eq(["eth0.10", "10", "eth0"])),
        "{vlan}"
    );
    assert!(g.reaches(&lab.red.addr), "tagged guest -> VLAN 10 host");
    assert!(lab.red.reaches(&g.addr), "VLAN 10 host -> tagged guest");
    assert!(g.cannot_reach(&lab.blue.addr), "guest reached VLAN 20");
    // The console channel survives a command the guest had to kill.
    let out = g
        .exec("echo started; sleep 30", Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("{e:#}"));
    // The guest's shell reports the kill ("Killed") after what the script printed.
    assert!(
        out.status == 137 && out.output.starts_with("started\n"),
        "not killed after 1 s: {out:?}"
    );
    assert_eq!(g.run_ok("echo still here"), "still here\n");
    let s = lab.sw.port_counters(&lab.vm_port);
    lab.sw.stop();
    assert!(s["rx_packets"] > 0 && s["tx_packets"] > 0, "{s:?}");
    assert_eq!(s["drop_vlan_not_allowed"], 0, "{s:?}");
}

/// TCP both ways between the guest and the VLAN 10 host; returns the guest port's counters.
fn tcp_both_ways(offloads: bool) -> std::collections::HashMap<String, u64> {
    let lab = VmLab::new(offloads, false);
    let g = &lab.guest;
    // What the guest's driver negotiated (bit n of the string is feature n): GUEST_CSUM (1),
    // GUEST_TSO4 (7), GUEST_TSO6 (8), MRG_RXBUF (15).
    let f = g.virtio_features();
    let bit = |n: usize| f.as_bytes().get(n) == Some(&b'1');
    let want = if offloads { "on" } else { "off" };
    for (n, name) in [
        (1, "GUEST_CSUM"),
        (7, "GUEST_TSO4"),
        (8, "GUEST_TSO6"),
        (15, "MRG_RXBUF"),
    ] {
        assert_eq!(bit(n), offloads, "{name} should be {want}: features {f}");
    }
    assert!(g.reaches(&lab.red.addr), "guest -> VLAN 10 host");

    let t = Instant::now();
    let (sent, got) = tcp_host_to_guest(&lab.red, g, TCP_LEN).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("host -> guest {} MiB: {:?}", TCP_LEN >> 20, t.elapsed());
    assert_eq!(sent, got, "host -> guest TCP data differs");
    let t = Instant::now();
    let (sent, got) = tcp_guest_to_host(g, &lab.red, TCP_LEN).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("guest -> host {} MiB: {:?}", TCP_LEN >> 20, t.elapsed());
    assert_eq!(sent, got, "guest -> host TCP data differs");

    let s = lab.sw.port_counters(&lab.vm_port);
    lab.sw.stop();
    assert_eq!(s["drop_tx_error"], 0, "{s:?}");
    s
}

#[test]
fn tcp_between_a_guest_and_a_netns_host_is_intact_with_guest_offloads_on() {
    let s = tcp_both_ways(true);
    let avg = s["rx_bytes"] / s["rx_packets"].max(1);
    eprintln!("frames from the guest average {avg} bytes ({s:?})");
}

#[test]
fn tcp_between_a_guest_and_a_netns_host_is_intact_with_guest_offloads_off() {
    let s = tcp_both_ways(false);
    let avg = s["rx_bytes"] / s["rx_packets"].max(1);
    eprintln!("frames from the guest average {avg} bytes ({s:?})");
}

/// DPDK testpmd with two vhost-user ports in io forwarding: what one port receives leaves on
/// the other. Port 0 listens on `a.sock` (QEMU connects); port 1 connects to `b.sock` (QEMU
/// listens; DPDK retries until it can). Stopped on drop.
struct Testpmd {
    child: Option<Child>,
    dir: PathBuf,
    prefix: String,
}

impl Testpmd {
    fn start(dir: &std::path::Path, prefix: &str) -> Testpmd {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("testpmd.log"))
            .expect("testpmd log");
        let vdev = |n: u8, sock: &str, client: u8| {
            format!(
                "net_vhost{n},iface={},client={client}",
                dir.join(sock).display()
            )
        };
        let child = Command::new("dpdk-testpmd")
            .args([
                "--no-huge",
                "-m",
                "512",
                "--no-shconf",
                "--no-pci",
                "-l",
                "0,1",
            ])
            .args(["--file-prefix", prefix])
            .args([
                "--vdev",
                &vdev(0, "a.sock", 0),
                "--vdev",
                &vdev(1, "b.sock", 1),
            ])
            // The default pool (155 456 mbufs) does not fit in 512 MB without hugepages.
            .args([
                "--",
                "--forward-mode=io",
                "--auto-start",
                "--total-num-mbufs=8192",
            ])
            // Without -i it runs until a line arrives on stdin: keep the pipe open.
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start dpdk-testpmd (apt-get install dpdk-dev librte-net-vhost23)");
        let mut tp = Testpmd {
            child: Some(child),
            dir: dir.to_path_buf(),
            prefix: prefix.to_string(),
        };
        let sock = dir.join("a.sock");
        let up = eventually(Duration::from_secs(30), || sock.exists() || !tp.running());
        assert!(
            up && tp.running(),
            "testpmd did not create {}:\n{}",
            sock.display(),
            tp.log()
        );
        tp
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("testpmd.log")).unwrap_or_default()
    }

    /// SIGTERM (testpmd closes its ports and removes its socket), SIGKILL after 10 s.
    fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // SAFETY: kill with the pid of a child we spawned and have not reaped.
        unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        if !eventually(Duration::from_secs(10), || {
            c.try_wait().ok().flatten().is_some()
        }) {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("a.sock"));
        // --no-shconf still makes an (empty) runtime directory.
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A directory, removed with what is in it on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn two_guests_on_vhost_user_ping_each_other_through_dpdk_testpmd() {
    let _turn = testpmd_turn();
    let id = unique_id();
    let dir = TempDir(std::env::temp_dir().join(format!("vlanswitch-vhost-{id}")));
    std::fs::create_dir_all(&dir.0).expect("socket directory");
    let mut tp = Testpmd::start(&dir.0, &format!("vs{id}"));
    // Guest 1 connects to testpmd's socket (and reconnects: reconnect=1); guest 2 listens
    // (server=on,wait=off) and testpmd connects to it.
    let boot = |n: u8, sock: &str, server: bool| {
        Guest::boot(GuestConfig::vhost_user(
            &format!("g{id}v{n}"),
            dir.0.join(sock),
            server,
            [0x02, 0x00, 0x00, 0x00, 0x0b, n],
            &format!("198.18.1.{n}/24"),
        ))
        .unwrap_or_else(|e| panic!("{e:#}\ntestpmd log:\n{}", tp.log()))
    };
    let t = Instant::now();
    let (g1, g2) = std::thread::scope(|s| {
        let a = s.spawn(|| boot(1, "a.sock", false));
        let b = s.spawn(|| boot(2, "b.sock", true));
        (a.join().unwrap(), b.join().unwrap())
    });
    eprintln!(
        "two vhost-user guests booted in {:?} ({:?}, {:?})",
        t.elapsed(),
        g1.boot_time,
        g2.boot_time
    );
    let pings = |what: &str, tp: &Testpmd| {
        let t = Instant::now();
        assert!(
            eventually(Duration::from_secs(20), || g1.reaches(&g2.addr)),
            "{what}: guest 1 -> guest 2 through testpmd; testpmd log:\n{}",
            tp.log()
        );
        eprintln!("{what}: guest 1 reached guest 2 after {:?}", t.elapsed());
        let out = g2.run_ok(&format!("ping -c 5 -i 0.2 {}", g1.addr));
        assert!(out.contains("5 packets received"), "{what}: {out}");
    };
    pings("first start", &tp);
    // The backend goes away and comes back: QEMU reconnects to the new server socket (guest
    // 1), the new testpmd connects to QEMU's (guest 2), and the guests talk again.
    tp.stop();
    assert!(
        g1.cannot_reach(&g2.addr),
        "frames passed with testpmd stopped"
    );
    let tp = Testpmd::start(&dir.0, &format!("vs{id}b"));
    pings("after a testpmd restart", &tp);
}
