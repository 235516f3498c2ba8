//! A test frontend: the `vhost` crate's frontend side for the protocol, guest memory from a
//! memfd mapped here too, and split rings laid out and driven by hand as a guest driver would.

#![allow(dead_code)]

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vhost_port::{DeviceStatus, KickHook, LinkState, QueueId, VhostUserDevice};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

pub const MEM_SIZE: u64 = 4 << 20;
/// The frontend's "virtual" address of guest address 0 (any consistent value works).
pub const UA: u64 = 0x7f00_0000_0000;
pub const QSIZE: u16 = 256;
pub const BUF: u64 = 2048;

pub const F_NEXT: u16 = 1;
pub const F_WRITE: u16 = 2;
pub const F_INDIRECT: u16 = 4;

/// Ring bases: queue 0 at 0x0, queue 1 at 0x8000; buffers from 0x100000.
pub fn desc_base(q: usize) -> u64 {
    q as u64 * 0x8000
}
pub fn avail_base(q: usize) -> u64 {
    desc_base(q) + 0x1000
}
pub fn used_base(q: usize) -> u64 {
    desc_base(q) + 0x2000
}
pub fn buf_addr(q: usize, id: u16) -> u64 {
    0x10_0000 + q as u64 * 0x10_0000 + u64::from(id) * BUF
}

pub fn memfd(size: u64) -> File {
    // SAFETY: a valid NUL-terminated name; the returned fd is checked and owned by the File.
    let fd = unsafe { libc::memfd_create(c"guest".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let f = unsafe { File::from_raw_fd(fd) };
    f.set_len(size).unwrap();
    f
}

/// Records kick fd registrations.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<(QueueId, bool, i32)>>,
}

impl KickHook for Recorder {
    fn register(&self, q: QueueId, fd: i32) {
        self.events.lock().unwrap().push((q, true, fd));
    }
    fn unregister(&self, q: QueueId, fd: i32) {
        self.events.lock().unwrap().push((q, false, fd));
    }
}

pub struct Guest {
    pub fe: Frontend,
    pub raw: UnixStream,
    pub file: File,
    pub mem: GuestMemoryMmap,
    pub kick: [EventFd; 2],
    pub call: [EventFd; 2],
    pub features: u64,
    pub avail_idx: [u16; 2],
    pub used_seen: [u16; 2],
}

pub fn connect(path: &Path) -> (Frontend, UnixStream) {
    let t0 = Instant::now();
    let s = loop {
        match UnixStream::connect(path) {
            Ok(s) => break s,
            Err(e) if t0.elapsed() < Duration::from_secs(5) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("connect {}: {e}", path.display()),
        }
    };
    let raw = s.try_clone().unwrap();
    (Frontend::from_stream(s, 2), raw)
}

impl Guest {
    /// Connects and negotiates `features` (masked by what the device offers), maps memory;
    /// rings are set up by `setup_rings`.
    pub fn new(path: &Path, want: u64) -> Guest {
        let (fe, raw) = connect(path);
        Self::with_frontend(fe, raw, want)
    }

    /// As `new`, on a connection made elsewhere (client-mode tests listen themselves).
    pub fn with_frontend(mut fe: Frontend, raw: UnixStream, want: u64) -> Guest {
        fe.set_owner().unwrap();
        let offered = fe.get_features().unwrap();
        let features = offered & want;
        fe.set_features(features).unwrap();
        if features & (1 << 30) != 0 {
            let pf = fe.get_protocol_features().unwrap();
            fe.set_protocol_features(
                pf & (VhostUserProtocolFeatures::REPLY_ACK
                    | VhostUserProtocolFeatures::CONFIG
                    | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS),
            )
            .unwrap();
        }
        let file = memfd(MEM_SIZE);
        let region = MmapRegion::from_file(
            FileOffset::new(file.try_clone().unwrap(), 0),
            MEM_SIZE as usize,
        )
        .unwrap();
        let mem =
            GuestMemoryMmap::from_regions(vec![
                GuestRegionMmap::new(region, GuestAddress(0)).unwrap()
            ])
            .unwrap();
        Guest {
            fe,
            raw,
            file,
            mem,
            kick: [
                EventFd::new(EFD_NONBLOCK).unwrap(),
                EventFd::new(EFD_NONBLOCK).unwrap(),
            ],
            call: [
                EventFd::new(EFD_NONBLOCK).unwrap(),
                EventFd::new(EFD_NONBLOCK).unwrap(),
            ],
            features,
            avail_idx: [0; 2],
            used_seen: [0; 2],
        }
    }

    pub fn region(&self) -> VhostUserMemoryRegionInfo {
        VhostUserMemoryRegionInfo {
            guest_phys_addr: 0,
            memory_size: MEM_SIZE,
            userspace_addr: UA,
            mmap_offset: 0,
            mmap_handle: self.file.as_raw_fd(),
        }
    }

    pub fn set_mem(&mut self) {
        self.fe.set_mem_table(&[self.region()]).unwrap();
    }

    pub fn ring_config(q: usize) -> VringConfigData {
        VringConfigData {
            queue_max_size: QSIZE,
            queue_size: QSIZE,
            flags: 0,
            desc_table_addr: UA + desc_base(q),
            used_ring_addr: UA + used_base(q),
            avail_ring_addr: UA + avail_base(q),
            log_addr: None,
        }
    }

    /// QEMU's order: memory table, then per ring num, addr, base, call, kick (, enable).
    pub fn setup_rings(&mut self) {
        self.set_mem();
        for q in 0..2 {
            self.fe.set_vring_num(q, QSIZE).unwrap();
            self.fe.set_vring_addr(q, &Self::ring_config(q)).unwrap();
            self.fe.set_vring_base(q, 0).unwrap();
            self.fe.set_vring_call(q, &self.call[q]).unwrap();
            self.fe.set_vring_kick(q, &self.kick[q]).unwrap();
            if self.features & (1 << 30) != 0 {
                self.fe.set_vring_enable(q, true).unwrap();
            }
        }
    }

    pub fn hdr_len(&self) -> usize {
        if self.features & (1 << 32 | 1 << 15) != 0 {
            12
        } else {
            10
        }
    }

    pub fn write_desc(&self, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let a = table + 16 * u64::from(i);
        self.mem.write_obj(addr.to_le(), GuestAddress(a)).unwrap();
        self.mem
            .write_obj(len.to_le(), GuestAddress(a + 8))
            .unwrap();
        self.mem
            .write_obj(flags.to_le(), GuestAddress(a + 12))
            .unwrap();
        self.mem
            .write_obj(next.to_le(), GuestAddress(a + 14))
            .unwrap();
    }

    /// Puts chain head `head` in the available ring and publishes it.
    pub fn make_avail(&mut self, q: usize, head: u16) {
        let slot = self.avail_idx[q] % QSIZE;
        self.mem
            .write_obj(
                head.to_le(),
                GuestAddress(avail_base(q) + 4 + 2 * u64::from(slot)),
            )
            .unwrap();
        self.avail_idx[q] = self.avail_idx[q].wrapping_add(1);
        self.publish_avail(q, self.avail_idx[q]);
    }

    pub fn publish_avail(&self, q: usize, idx: u16) {
        self.mem
            .store(
                idx.to_le(),
                GuestAddress(avail_base(q) + 2),
                Ordering::Release,
            )
            .unwrap();
    }

    /// Guest TX: one frame (with its virtio-net header) in one descriptor.
    pub fn send(&mut self, vnet: &[u8], frame: &[u8]) -> u16 {
        let id = self.avail_idx[1] % QSIZE;
        let addr = buf_addr(1, id);
        self.mem.write_slice(vnet, GuestAddress(addr)).unwrap();
        self.mem
            .write_slice(frame, GuestAddress(addr + vnet.len() as u64))
            .unwrap();
        let d = desc_base(1);
        self.write_desc(d, id, addr, (vnet.len() + frame.len()) as u32, 0, 0);
        self.make_avail(1, id);
        id
    }

    /// Guest RX: `n` writable buffers of `len` bytes.
    pub fn post_rx(&mut self, n: u16, len: u32) {
        for _ in 0..n {
            let id = self.avail_idx[0] % QSIZE;
            self.write_desc(desc_base(0), id, buf_addr(0, id), len, F_WRITE, 0);
            self.make_avail(0, id);
        }
    }

    pub fn used_idx(&self, q: usize) -> u16 {
        u16::from_le(
            self.mem
                .load(GuestAddress(used_base(q) + 2), Ordering::Acquire)
                .unwrap(),
        )
    }

    pub fn used_flags(&self, q: usize) -> u16 {
        u16::from_le(self.mem.read_obj(GuestAddress(used_base(q))).unwrap())
    }

    pub fn avail_event(&self, q: usize) -> u16 {
        u16::from_le(
            self.mem
                .read_obj(GuestAddress(used_base(q) + 4 + 8 * u64::from(QSIZE)))
                .unwrap(),
        )
    }

    /// The next used element not yet seen: (id, len).
    pub fn pop_used(&mut self, q: usize) -> Option<(u16, u32)> {
        if self.used_idx(q) == self.used_seen[q] {
            return None;
        }
        let slot = self.used_seen[q] % QSIZE;
        let a = used_base(q) + 4 + 8 * u64::from(slot);
        let id: u32 = self.mem.read_obj(GuestAddress(a)).unwrap();
        let len: u32 = self.mem.read_obj(GuestAddress(a + 4)).unwrap();
        self.used_seen[q] = self.used_seen[q].wrapping_add(1);
        Some((u32::from_le(id) as u16, u32::from_le(len)))
    }

    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    /// Whether the call eventfd of `q` was signalled (and resets it).
    pub fn called(&self, q: usize) -> bool {
        self.call[q].read().is_ok()
    }

    /// Kicks queue `q` (writes its kick eventfd), as a guest driver does after making buffers
    /// available. `send`, `post_rx` and `make_avail` do not kick: a device polled directly
    /// needs none, a switch's worker sleeps until it comes.
    pub fn kick(&self, q: usize) {
        self.kick[q].write(1).unwrap();
    }

    /// Returns once the backend has handled every message sent so far: a request with a reply
    /// (`GET_FEATURES`) is answered only after those before it.
    pub fn sync(&self) {
        self.fe.get_features().unwrap();
    }
}

/// Sends one raw vhost-user message (request code, body, fds).
pub fn raw(g: &Guest, request: u32, body: &[u8], fds: &[i32]) {
    let mut msg = Vec::new();
    msg.extend(request.to_le_bytes());
    msg.extend(1u32.to_le_bytes());
    msg.extend((body.len() as u32).to_le_bytes());
    msg.extend(body);
    g.raw.send_with_fds(&[&msg[..]], fds).unwrap();
}

/// The body of a `SET_MEM_TABLE` with `regions` as (guest address, size, frontend address,
/// mmap offset).
pub fn mem_table_body(regions: &[(u64, u64, u64, u64)]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend((regions.len() as u32).to_le_bytes());
    b.extend(0u32.to_le_bytes());
    for &(gpa, size, ua, off) in regions {
        for v in [gpa, size, ua, off] {
            b.extend(v.to_le_bytes());
        }
    }
    b
}

pub fn wait_for(
    dev: &VhostUserDevice,
    what: &str,
    f: impl Fn(&DeviceStatus) -> bool,
) -> DeviceStatus {
    let t0 = Instant::now();
    loop {
        let st = dev.status();
        if f(&st) {
            return st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}: {}",
            st.link
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn wait_up(dev: &VhostUserDevice) {
    wait_for(dev, "link up", |s| s.link == LinkState::Up);
}

/// Waits for the device to go down and returns the reason's text.
pub fn wait_down(dev: &VhostUserDevice) -> String {
    let st = wait_for(
        dev,
        "link down",
        |s| matches!(&s.link, LinkState::Down(r) if !matches!(r, vhost_port::DownReason::NotConnected(_))),
    );
    st.link.to_string()
}

pub fn tmp_sock(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("vhost-port-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(format!("{name}.sock"))
}

pub fn device(name: &str) -> (VhostUserDevice, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let cfg = vhost_port::DeviceConfig::new(name, tmp_sock(name), vhost_port::SocketMode::Server);
    let mut cfg = cfg;
    cfg.mac = Some([2, 0, 0, 0, 0, 1]);
    cfg.mtu = Some(1500);
    (VhostUserDevice::start(cfg, rec.clone()).unwrap(), rec)
}
