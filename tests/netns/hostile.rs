//! Hostile vhost-user frontends against the running `switchd` (issue #11): a frontend that
//! breaks the rings or the protocol takes only its own port down, with the fault as the
//! reason, and the switch goes on forwarding between the other ports.
//!
//! No QEMU: the frontends are the test frontend of `vhost-port`'s own tests
//! (`vhost-port/tests/driver`), which speaks vhost-user with the `vhost` crate, shares a memfd
//! as guest memory and lays out and drives the split rings by hand. Here it connects to the
//! sockets `switchd` listens on, so each fault goes through the whole daemon: the port's
//! device and control thread, the worker that reads the guest's rings when kicked, and the
//! API that shows the link. `vhost-port/tests/hostile.rs` has the same faults against a device
//! driven directly.

#[path = "../../vhost-port/tests/driver/mod.rs"]
mod driver;

use std::path::PathBuf;
use std::time::Duration;

use driver::{
    buf_addr, desc_base, mem_table_body, raw, Guest, BUF, F_INDIRECT, F_NEXT, F_WRITE, MEM_SIZE,
    QSIZE, UA,
};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};

use crate::harness::{eventually, frame, unique_id, Switchd, BROADCAST};
use crate::vhost::Dir;

/// Every feature the port offers.
const ALL: u64 = u64::MAX;
/// How long a fault may take to show, or a frame to cross (switchd runs under load in CI).
const LIMIT: Duration = Duration::from_secs(10);

const MAC_A: [u8; 6] = [0x02, 0x00, 0x00, 0x0b, 0x0a, 0x01];
const MAC_B: [u8; 6] = [0x02, 0x00, 0x00, 0x0b, 0x0a, 0x02];
const MAC_V: [u8; 6] = [0x02, 0x00, 0x00, 0x0b, 0x0a, 0x03];

/// The reason for a one-region `SET_MEM_TABLE` that the `vhost` crate's request handler
/// refuses itself (missing or extra fds, a region of size 0): the device names the message,
/// the crate says no more than "invalid message".
const MEM_TABLE_INVALID: &str =
    "protocol error: SET_MEM_TABLE (5), body of 40 bytes: invalid message";

/// How a hostile frontend breaks its port.
enum Attack {
    /// The frontend sets both rings up properly first (so the port is up and a worker serves
    /// them); this then breaks the rings, and the frontend kicks its transmit queue.
    Rings(fn(&mut Guest)),
    /// Right after connecting (features negotiated, nothing else), this sends a message the
    /// port must refuse.
    Message(fn(&mut Guest)),
}

struct Case {
    what: &'static str,
    attack: Attack,
    /// The port's reason in the API afterwards, exactly; a `*` stands for any text.
    reason: &'static str,
}

fn cases() -> Vec<Case> {
    use Attack::{Message, Rings};
    vec![
        Case {
            what: "a descriptor pointing outside guest memory",
            attack: Rings(|g| {
                g.write_desc(desc_base(1), 0, MEM_SIZE - 16, 64, 0, 0);
                g.make_avail(1, 0);
            }),
            reason: "ring fault: queue 1: buffer at guest address 0x3ffffc (52 bytes) is \
                     outside guest memory",
        },
        Case {
            what: "a loop in a descriptor chain",
            attack: Rings(|g| {
                g.write_desc(desc_base(1), 0, buf_addr(1, 0), 64, F_NEXT, 1);
                g.write_desc(desc_base(1), 1, buf_addr(1, 1), 64, F_NEXT, 0);
                g.make_avail(1, 0);
            }),
            reason: "ring fault: queue 1: descriptor chain is longer than its table of 256 \
                     entries (a loop)",
        },
        Case {
            what: "a next index out of range",
            attack: Rings(|g| {
                g.write_desc(desc_base(1), 0, buf_addr(1, 0), 64, F_NEXT, 999);
                g.make_avail(1, 0);
            }),
            reason: "ring fault: queue 1: descriptor next index 999 is out of range for a table \
                     of 256",
        },
        Case {
            what: "a chain head out of range",
            attack: Rings(|g| g.make_avail(1, 300)),
            reason: "ring fault: queue 1: descriptor head 300 is out of range for queue size 256",
        },
        Case {
            what: "the available index running ahead of the ring",
            attack: Rings(|g| g.publish_avail(1, QSIZE + 1)),
            reason: "ring fault: queue 1: available index 257 is more than the queue size 256 \
                     ahead of 0",
        },
        Case {
            what: "a device-writable descriptor in a transmit chain",
            attack: Rings(|g| {
                g.write_desc(desc_base(1), 0, buf_addr(1, 0), 64, F_WRITE, 0);
                g.make_avail(1, 0);
            }),
            reason: "ring fault: queue 1: device-writable descriptor in a guest transmit chain",
        },
        Case {
            what: "an indirect table whose length is not a multiple of 16",
            attack: Rings(|g| {
                g.write_desc(desc_base(1), 0, buf_addr(1, 0), 17, F_INDIRECT, 0);
                g.make_avail(1, 0);
            }),
            reason: "ring fault: queue 1: indirect table length 17 is not a non-zero multiple \
                     of 16 up to 1 MiB",
        },
        Case {
            // Found by the switch when it forwards the bystanders' broadcast to this port.
            what: "a receive buffer outside guest memory",
            attack: Rings(|g| {
                g.write_desc(desc_base(0), 0, MEM_SIZE + 4096, 2048, F_WRITE, 0);
                g.make_avail(0, 0);
            }),
            // The length is that of the write that failed: how the header and the frame's
            // pieces are written is the device's business.
            reason: "ring fault: queue 0: buffer at guest address 0x401000 (* bytes) is outside \
                     guest memory",
        },
        Case {
            what: "a queue size that is not a power of two",
            attack: Message(|g| {
                g.set_mem();
                let _ = g.fe.set_vring_num(0, 100);
            }),
            reason: "protocol error: queue 0: queue size 100 is not a power of two in 1..=32768",
        },
        Case {
            what: "a queue size above 32768",
            attack: Message(|g| {
                // SET_VRING_NUM (8), queue 0, 65536 (the frontend's u16 cannot say it).
                let body = [0u32.to_le_bytes(), 65536u32.to_le_bytes()].concat();
                raw(g, 8, &body, &[]);
            }),
            reason: "protocol error: queue 0: queue size 65536 is not a power of two in \
                     1..=32768",
        },
        Case {
            what: "overlapping memory regions",
            attack: Message(|g| {
                let a = g.region();
                let b = VhostUserMemoryRegionInfo {
                    guest_phys_addr: MEM_SIZE / 2,
                    memory_size: MEM_SIZE / 2,
                    userspace_addr: UA + MEM_SIZE,
                    ..a
                };
                let _ = g.fe.set_mem_table(&[a, b]);
            }),
            reason: "protocol error: memory region 1 (guest 0x200000, 2097152 bytes, frontend \
                     0x7f0000400000): overlaps another region's guest addresses",
        },
        Case {
            what: "a memory region larger than its file",
            attack: Message(|g| {
                let r = VhostUserMemoryRegionInfo {
                    memory_size: MEM_SIZE * 2,
                    ..g.region()
                };
                let _ = g.fe.set_mem_table(&[r]);
            }),
            reason: "protocol error: memory region 0 (guest 0x0, 8388608 bytes, frontend \
                     0x7f0000000000): extends past the end of its file",
        },
        Case {
            what: "a ring address outside guest memory",
            attack: Message(|g| {
                g.set_mem();
                let _ = g.fe.set_vring_num(0, QSIZE);
                let bad = VringConfigData {
                    desc_table_addr: UA + MEM_SIZE - 16,
                    ..Guest::ring_config(0)
                };
                let _ = g.fe.set_vring_addr(0, &bad);
            }),
            reason: "protocol error: queue 0: descriptor ring at frontend address \
                     0x7f00003ffff0 (4096 bytes) is outside guest memory",
        },
        Case {
            what: "features that were not offered",
            attack: Message(|g| {
                let _ = g.fe.set_features(1 << 22);
            }),
            reason: "protocol error: SET_FEATURES acknowledged features 0x400000 that were not \
                     offered",
        },
        Case {
            what: "a queue index out of range",
            attack: Message(|g| {
                let body = [7u32.to_le_bytes(), 256u32.to_le_bytes()].concat();
                raw(g, 8, &body, &[]);
            }),
            reason: "protocol error: SET_VRING_NUM: queue index 7 is not 0 or 1",
        },
        Case {
            what: "a message with the wrong size",
            // SET_VRING_NUM (8) with a 4-byte body instead of 8.
            attack: Message(|g| raw(g, 8, &[0, 0, 0, 0], &[])),
            reason: "protocol error: SET_VRING_NUM (8), body of 4 bytes: invalid message",
        },
        Case {
            what: "a memory table without its fd",
            // SET_MEM_TABLE (5).
            attack: Message(|g| raw(g, 5, &mem_table_body(&[(0, MEM_SIZE, UA, 0)]), &[])),
            reason: MEM_TABLE_INVALID,
        },
        Case {
            what: "a memory table with more fds than regions",
            attack: Message(|g| {
                use std::os::fd::AsRawFd;
                let fd = g.file.as_raw_fd();
                raw(g, 5, &mem_table_body(&[(0, MEM_SIZE, UA, 0)]), &[fd, fd]);
            }),
            reason: MEM_TABLE_INVALID,
        },
        Case {
            what: "a memory region of size 0",
            attack: Message(|g| {
                use std::os::fd::AsRawFd;
                raw(
                    g,
                    5,
                    &mem_table_body(&[(0, 0, UA, 0)]),
                    &[g.file.as_raw_fd()],
                );
            }),
            reason: MEM_TABLE_INVALID,
        },
        Case {
            what: "a kick message without the fd it announces",
            // SET_VRING_KICK (12), queue 1, "fd attached" (bit 8 clear) but none sent.
            attack: Message(|g| raw(g, 12, &1u64.to_le_bytes(), &[])),
            reason: "protocol error: SET_VRING_KICK (12), body of 8 bytes: invalid message",
        },
    ]
}

/// Whether `reason` is `pattern`, where one `*` in `pattern` stands for any text.
fn matches(pattern: &str, reason: &str) -> bool {
    match pattern.split_once('*') {
        Some((head, tail)) => {
            reason.len() >= head.len() + tail.len()
                && reason.starts_with(head)
                && reason.ends_with(tail)
        }
        None => reason == pattern,
    }
}

/// `switchd` with three vhost-user ports in VLAN 10: bystanders `{id}a` and `{id}b`, each
/// with a well-behaved frontend, and the victim `{id}v`, where the hostile frontends connect.
struct Lab {
    // Field order is drop order: the switch stops before its sockets' directory goes.
    sw: Switchd,
    a: Guest,
    b: Guest,
    ports: [String; 3],
    dir: Dir,
    /// Frames sent between the bystanders so far (their markers are numbered).
    crossed: u32,
}

const A: usize = 0;
const B: usize = 1;
const V: usize = 2;

impl Lab {
    fn new() -> Lab {
        let id = unique_id();
        let dir = std::env::temp_dir().join(format!("vs-hostile-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let ports = [format!("{id}a"), format!("{id}b"), format!("{id}v")];
        let sock = |p: &str| dir.join(format!("{p}.sock")).display().to_string();
        let yaml = format!(
            "vlans: [{{ id: 10 }}]\nports:\n{}",
            ports
                .iter()
                .map(|p| format!(
                    "  - {{ name: {p}, kind: vhost-user, socket: {}, mode: access, vlan: 10 }}\n",
                    sock(p)
                ))
                .collect::<String>()
        );
        let dir = Dir(dir);
        let sw = Switchd::start(&yaml, 2);
        let socket = |i: usize| dir.0.join(format!("{}.sock", ports[i]));
        let a = attach(&socket(A));
        let b = attach(&socket(B));
        Lab {
            sw,
            a,
            b,
            ports,
            dir,
            crossed: 0,
        }
    }

    fn socket(&self, i: usize) -> PathBuf {
        self.dir.0.join(format!("{}.sock", self.ports[i]))
    }

    /// `switchctl --json port show` of port `i`.
    fn show(&self, i: usize) -> String {
        self.sw.ctl_ok(&["--json", "port", "show", &self.ports[i]])
    }

    /// The link and the reason of port `i` as the API shows them.
    fn link(&self, i: usize) -> (String, Option<String>) {
        let out = self.show(i);
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("port show is not JSON ({e}): {out}"));
        let link = v["state"]["link"].as_str().unwrap_or_default().to_string();
        let reason = v["state"]["reason"].as_str().map(str::to_string);
        (link, reason)
    }

    fn assert_up(&self, i: usize, when: &str) {
        let (link, reason) = self.link(i);
        assert!(
            link == "up" && reason.is_none(),
            "{when}: port {} is not up: {}",
            self.ports[i],
            self.show(i)
        );
    }

    /// The bystanders' link is up, and a frame crosses the switch from a to b unchanged.
    fn bystanders_pass(&mut self, when: &str) {
        self.assert_up(A, when);
        self.assert_up(B, when);
        self.crossed += 1;
        let marker = format!("hostile-{}", self.crossed);
        let when = format!("{when}: frame {marker} from a to b");
        let (a, b) = (&mut self.a, &mut self.b);
        pass(a, b, [MAC_A, BROADCAST], marker.as_bytes(), &when);
    }

    /// switchd is still running (not a zombie) and its API answers.
    fn assert_alive(&self, when: &str) {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.sw.pid()))
            .unwrap_or_else(|e| panic!("{when}: switchd is gone ({e}); log:\n{}", self.sw.log()));
        let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
        assert!(
            !matches!(state, Some("Z" | "X")),
            "{when}: switchd has exited; log:\n{}",
            self.sw.log()
        );
        self.sw.ctl_ok(&["port", "list"]);
    }
}

/// Connects a frontend to `socket`, sets up both rings and returns once switchd has handled
/// every message, so the port is up and a worker waits for its kicks.
fn attach(socket: &std::path::Path) -> Guest {
    let mut g = Guest::new(socket, ALL);
    g.setup_rings();
    g.sync();
    g
}

/// `from` sends a frame `src` to `dst` carrying `marker`; `to`, which posts one receive buffer
/// for it first, gets exactly that frame.
fn pass(from: &mut Guest, to: &mut Guest, [src, dst]: [[u8; 6]; 2], marker: &[u8], what: &str) {
    to.post_rx(1, BUF as u32);
    let sent = frame(dst, src, &[], marker);
    from.send(&vec![0; from.hdr_len()], &sent);
    from.kick(1);
    let mut used = None;
    let arrived = eventually(LIMIT, || {
        used = to.pop_used(0);
        used.is_some()
    });
    assert!(arrived, "{what}: nothing arrived within {LIMIT:?}");
    let (id, len) = used.unwrap();
    let h = to.hdr_len();
    assert_eq!(len as usize, h + sent.len(), "{what}: length written");
    let got = to.read(buf_addr(0, id) + h as u64, sent.len());
    assert_eq!(got, sent, "{what}: the frame changed on its way");
}

#[test]
fn hostile_frontends_take_down_only_their_own_port() {
    let mut lab = Lab::new();
    lab.bystanders_pass("before any attack");
    let cases = cases();
    for case in &cases {
        let what = case.what;
        // A fresh frontend. Its GET_FEATURES was answered, so switchd has accepted it: the
        // reason of the case before is gone, and the port waits for its rings.
        let mut g = Guest::new(&lab.socket(V), ALL);
        assert_eq!(
            lab.link(V),
            ("down".into(), Some("connected, rings not running".into())),
            "{what}: a fresh frontend"
        );
        match case.attack {
            Attack::Rings(attack) => {
                g.setup_rings();
                g.sync();
                lab.assert_up(V, &format!("{what}: rings set up"));
                attack(&mut g);
                g.kick(1);
            }
            Attack::Message(attack) => attack(&mut g),
        }
        // While the fault is being handled (and, for a receive ring, because of this frame).
        lab.bystanders_pass(&format!("{what}: at the attack"));
        let down = eventually(LIMIT, || {
            let (link, reason) = lab.link(V);
            link == "down" && reason.is_some_and(|r| matches(case.reason, &r))
        });
        assert!(
            down,
            "{what}: the victim's port is not down with the reason {:?} within {LIMIT:?}:\n{}",
            case.reason,
            lab.show(V)
        );
        lab.assert_alive(what);
        lab.bystanders_pass(&format!("{what}: after the fault"));
        drop(g);
    }

    // A well-behaved frontend on the victim's socket comes up and trades frames with both
    // bystanders: unicast to a (learned from its broadcasts), then from b back to it (learned
    // from that frame), so no flooded copy lands in a receive buffer posted for another frame.
    let mut v = attach(&lab.socket(V));
    lab.assert_up(V, "a good frontend after the attacks");
    pass(
        &mut v,
        &mut lab.a,
        [MAC_V, MAC_A],
        b"hostile-from-v",
        "the good frontend on the victim's port to a",
    );
    pass(
        &mut lab.b,
        &mut v,
        [MAC_B, MAC_V],
        b"hostile-to-v",
        "b to the good frontend on the victim's port",
    );
    lab.bystanders_pass("at the end");

    let victim = lab.ports[V].clone();
    let log = lab.sw.log();
    let faults = log
        .lines()
        .filter(|l| l.contains("vhost-user frontend disconnected"))
        .filter(|l| l.contains(&format!("device={victim}")))
        .count();
    assert_eq!(
        faults,
        cases.len(),
        "one error line per hostile frontend expected; log:\n{log}"
    );
    let Lab { sw, a, b, dir, .. } = lab;
    drop((a, b, v));
    sw.stop();
    drop(dir);
}
