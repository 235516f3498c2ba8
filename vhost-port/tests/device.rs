//! The device against an in-process frontend: frames both ways under each feature set, the
//! protocol's ring lifecycle, and hostile frontends (each disconnects only its own device).

mod driver;

use driver::*;
use vhost::VhostBackend;
use vhost_port::features::*;
use vhost_port::{ClaimError, LinkState, Offload, QueueId, SendError, VnetHdr};

const ALL: u64 = u64::MAX;
const ETH: [u8; 14] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 2, 0x08, 0x00,
];

fn frame(len: usize) -> Vec<u8> {
    let mut f: Vec<u8> = ETH.to_vec();
    f.extend((0..len - ETH.len()).map(|i| i as u8));
    f
}

fn up(name: &str, want: u64) -> (vhost_port::VhostUserDevice, Guest) {
    let (dev, _) = device(name);
    let mut g = Guest::new(&dev.config().socket, want);
    g.setup_rings();
    wait_up(&dev);
    (dev, g)
}

/// Guest TX → switch, then switch → guest RX, checking header form, bytes and used lengths.
fn exchange(want: u64, expect_hdr_len: usize) {
    let (dev, mut g) = up(&format!("x{want:x}"), want);
    assert_eq!(g.hdr_len(), expect_hdr_len);
    let dp = dev.data_path();
    let f = frame(100);
    let gso = VnetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 16,
        ..Default::default()
    };
    let mut vnet = vec![0u8; expect_hdr_len];
    vnet[..10].copy_from_slice(&[1, 0, 0, 0, 0, 0, 34, 0, 16, 0]);
    g.send(&vnet, &f);
    g.send(&vnet, &f);
    {
        let mut rx = dp.recv_batch().unwrap();
        let (mut hdr, mut buf) = ([0u8; 10], vec![0u8; 2048]);
        for _ in 0..2 {
            let n = rx.recv(&mut hdr, &mut buf).unwrap().unwrap();
            assert_eq!(&buf[..n], &f[..]);
            assert_eq!(VnetHdr::from_ne_bytes(&hdr), gso);
        }
        assert_eq!(rx.recv(&mut hdr, &mut buf).unwrap(), None);
    }
    assert_eq!(g.pop_used(1), Some((0, 0)));
    assert_eq!(g.pop_used(1), Some((1, 0)));
    assert!(g.called(1), "guest asked for TX interrupts");

    // Switch → guest, gathered from three pieces.
    g.post_rx(4, 2048);
    {
        let mut tx = dp.send_batch().unwrap();
        let plain = VnetHdr::default().to_ne_bytes();
        tx.send(&plain, &[&f[..12], &[0x81, 0, 0, 10], &f[12..]])
            .unwrap();
        tx.send(&plain, &[&f]).unwrap();
    }
    let (id, len) = g.pop_used(0).unwrap();
    assert_eq!(len as usize, expect_hdr_len + f.len() + 4);
    let got = g.read(buf_addr(0, id), len as usize);
    if expect_hdr_len == 12 {
        assert_eq!(&got[10..12], &1u16.to_le_bytes(), "num_buffers");
    }
    assert_eq!(&got[expect_hdr_len..expect_hdr_len + 12], &f[..12]);
    assert_eq!(
        &got[expect_hdr_len + 12..expect_hdr_len + 16],
        &[0x81, 0, 0, 10]
    );
    assert_eq!(&got[expect_hdr_len + 16..], &f[12..]);
    assert_eq!(g.pop_used(0).unwrap().1 as usize, expect_hdr_len + f.len());
    assert!(g.called(0));
    let st = dev.status();
    assert_eq!(st.counters.to_guest_frames, 2);
    assert_eq!(st.counters.from_guest_frames, 2);
    assert_eq!(st.features, g.features);
    assert_eq!(st.mac, Some([2, 0, 0, 0, 0, 1]));
}

#[test]
fn frames_both_ways_with_all_features() {
    exchange(ALL, 12);
}

#[test]
fn frames_both_ways_legacy_10_byte_header_no_protocol_features() {
    exchange(F_CSUM | F_GUEST_CSUM, 10);
}

#[test]
fn frames_both_ways_version_1_without_mrg_rxbuf_or_event_idx() {
    exchange(
        F_VERSION_1 | F_CSUM | F_GUEST_CSUM | F_PROTOCOL_FEATURES,
        12,
    );
}

#[test]
fn frames_both_ways_mrg_rxbuf_legacy_has_12_byte_header() {
    exchange(F_MRG_RXBUF | F_CSUM | F_GUEST_CSUM | F_EVENT_IDX, 12);
}

#[test]
fn mrg_rxbuf_spreads_a_frame_over_buffers_and_counts_them() {
    let (dev, mut g) = up("mrg", ALL);
    g.post_rx(8, 64);
    let f = frame(200);
    dev.data_path()
        .send_batch()
        .unwrap()
        .send(&[0; 10], &[&f])
        .unwrap();
    let mut got = Vec::new();
    let mut lens = Vec::new();
    while let Some((id, len)) = g.pop_used(0) {
        got.extend(g.read(buf_addr(0, id), len as usize));
        lens.push(len);
    }
    assert_eq!(lens, [64, 64, 64, 20]);
    assert_eq!(&got[10..12], &4u16.to_le_bytes());
    assert_eq!(&got[12..], &f[..]);
}

#[test]
fn without_mrg_rxbuf_a_frame_larger_than_the_buffer_is_refused_and_kept_out() {
    let (dev, mut g) = up("nomrg", F_VERSION_1);
    g.post_rx(2, 64);
    let dp = dev.data_path();
    let mut tx = dp.send_batch().unwrap();
    let e = tx.send(&[0; 10], &[&frame(200)]).unwrap_err();
    assert_eq!(e, SendError::FrameTooLarge { len: 212, room: 64 });
    tx.send(&[0; 10], &[&frame(40)]).unwrap();
    drop(tx);
    assert_eq!(g.pop_used(0), Some((0, 52)));
}

#[test]
fn full_guest_ring_is_a_drop_not_a_wait() {
    let (dev, mut g) = up("full", ALL);
    let dp = dev.data_path();
    let mut tx = dp.send_batch().unwrap();
    assert_eq!(tx.send(&[0; 10], &[&frame(60)]), Err(SendError::RingFull));
    drop(tx);
    g.post_rx(1, 2048);
    let mut tx = dp.send_batch().unwrap();
    tx.send(&[0; 10], &[&frame(60)]).unwrap();
    assert_eq!(tx.send(&[0; 10], &[&frame(60)]), Err(SendError::RingFull));
    drop(tx);
    assert_eq!(dev.status().counters.to_guest_ring_full, 2);
}

#[test]
fn offloads_the_guest_lacks_ask_for_software_segmentation() {
    let (dev, mut g) = up("nooffload", F_VERSION_1 | F_MRG_RXBUF);
    g.post_rx(4, 2048);
    let dp = dev.data_path();
    let mut tx = dp.send_batch().unwrap();
    let tso = VnetHdr {
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        gso_size: 1448,
        hdr_len: 54,
        ..Default::default()
    };
    assert_eq!(
        tx.send(&tso.to_ne_bytes(), &[&frame(60)]),
        Err(SendError::NeedsSoftwareOffload(Offload::Tso4))
    );
    let tso6 = VnetHdr {
        gso_type: VIRTIO_NET_HDR_GSO_TCPV6,
        ..Default::default()
    };
    assert_eq!(
        tx.send(&tso6.to_ne_bytes(), &[&frame(60)]),
        Err(SendError::NeedsSoftwareOffload(Offload::Tso6))
    );
    let csum = VnetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        ..Default::default()
    };
    assert_eq!(
        tx.send(&csum.to_ne_bytes(), &[&frame(60)]),
        Err(SendError::NeedsSoftwareOffload(Offload::Checksum))
    );
    drop(tx);
    assert_eq!(g.pop_used(0), None, "nothing consumed");
}

#[test]
fn gso_frame_reaches_a_tso_guest_as_one_frame_with_its_header() {
    let (dev, mut g) = up("tso", ALL);
    g.post_rx(64, 2048);
    let big = frame(64_000);
    let h = VnetHdr {
        flags: 1,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
    };
    dev.data_path()
        .send_batch()
        .unwrap()
        .send(&h.to_ne_bytes(), &[&big])
        .unwrap();
    let (id, _) = g.pop_used(0).unwrap();
    let first = g.read(buf_addr(0, id), 12);
    assert_eq!(VnetHdr::from_ne_bytes(&first[..10].try_into().unwrap()), h);
    assert_eq!(
        u16::from_le_bytes([first[10], first[11]]),
        32,
        "64012 bytes in 2 KiB buffers"
    );
}

#[test]
fn kicks_are_suppressed_while_busy_and_the_race_check_sees_late_frames() {
    // Without EVENT_IDX: VRING_USED_F_NO_NOTIFY.
    let (dev, mut g) = up("kick", F_VERSION_1 | F_PROTOCOL_FEATURES);
    let dp = dev.data_path();
    assert_eq!(g.used_flags(1), 0, "kicks wanted while idle");
    let mut rx = dp.recv_batch().unwrap();
    assert_eq!(g.used_flags(1), 1, "no kicks while a batch runs");
    assert!(!rx.enable_notifications().unwrap());
    assert_eq!(g.used_flags(1), 0);
    drop(rx);
    let mut rx = dp.recv_batch().unwrap();
    g.send(&[0; 12], &frame(60));
    assert!(
        rx.enable_notifications().unwrap(),
        "frame arrived before the worker slept"
    );
    drop(rx);

    // With EVENT_IDX: avail_event follows what we took.
    let (dev, mut g) = up("kickev", ALL);
    let dp = dev.data_path();
    for _ in 0..3 {
        g.send(&[0; 12], &frame(60));
    }
    let mut rx = dp.recv_batch().unwrap();
    let (mut h, mut b) = ([0u8; 10], [0u8; 2048]);
    while rx.recv(&mut h, &mut b).unwrap().is_some() {}
    assert!(!rx.enable_notifications().unwrap());
    drop(rx);
    assert_eq!(g.avail_event(1), 3);
}

#[test]
fn one_claim_at_a_time_and_busy_never_waits() {
    let (dev, _g) = up("claim", ALL);
    let dp = dev.data_path();
    let a = dp.send_batch().unwrap();
    assert!(matches!(dp.send_batch(), Err(ClaimError::Busy)));
    let r = dp.recv_batch().unwrap();
    assert!(matches!(dp.recv_batch(), Err(ClaimError::Busy)));
    drop((a, r));
    assert!(dp.send_batch().is_ok());
    assert_eq!(dev.status().counters.to_guest_busy, 1);
}

#[test]
fn get_vring_base_reports_where_the_worker_stopped_and_rings_restart() {
    let (dev, mut g) = up("base", ALL);
    let dp = dev.data_path();
    for _ in 0..3 {
        g.send(&[0; 12], &frame(60));
    }
    {
        let mut rx = dp.recv_batch().unwrap();
        let (mut h, mut b) = ([0u8; 10], [0u8; 2048]);
        while rx.recv(&mut h, &mut b).unwrap().is_some() {}
    }
    assert_eq!(g.fe.get_vring_base(1).unwrap(), 3);
    assert!(matches!(dp.recv_batch(), Err(ClaimError::NotReady)));
    assert_eq!(dev.status().link, LinkState::Connected);
    // Restart from the reported base, as QEMU does after a stop.
    g.fe.set_vring_base(1, 3).unwrap();
    g.fe.set_vring_kick(1, &g.kick[1]).unwrap();
    wait_up(&dev);
    g.send(&[0; 12], &frame(60));
    let mut rx = dp.recv_batch().unwrap();
    let (mut h, mut b) = ([0u8; 10], [0u8; 2048]);
    assert_eq!(rx.recv(&mut h, &mut b).unwrap(), Some(60));
}

#[test]
fn kick_fds_are_registered_and_unregistered_and_reconnect_works() {
    let (dev, rec) = device("hook");
    {
        let mut g = Guest::new(&dev.config().socket, ALL);
        g.setup_rings();
        wait_up(&dev);
        let ev = rec.events.lock().unwrap().clone();
        assert!(ev.iter().any(|e| e.0 == QueueId::GuestTx && e.1));
        assert!(ev.iter().any(|e| e.0 == QueueId::GuestRx && e.1));
    }
    assert_eq!(wait_down(&dev), "down: socket closed");
    {
        let ev = rec.events.lock().unwrap().clone();
        let regs = ev.iter().filter(|e| e.1).count();
        let unregs = ev.iter().filter(|e| !e.1).count();
        assert_eq!(regs, unregs, "every registered fd unregistered: {ev:?}");
    }
    // A new frontend on the same socket.
    let mut g = Guest::new(&dev.config().socket, F_VERSION_1);
    g.setup_rings();
    wait_up(&dev);
    g.send(&[0; 12], &frame(60));
    let dp = dev.data_path();
    let mut rx = dp.recv_batch().unwrap();
    let (mut h, mut b) = ([0u8; 10], [0u8; 2048]);
    assert_eq!(rx.recv(&mut h, &mut b).unwrap(), Some(60));
    assert_eq!(dev.status().counters.connections, 2);
}

#[test]
fn config_space_has_mac_status_and_mtu() {
    use vhost::vhost_user::message::VhostUserConfigFlags;
    use vhost::vhost_user::VhostUserFrontend;
    let (dev, _) = device("config");
    let mut g = Guest::new(&dev.config().socket, ALL);
    let (_, buf) =
        g.fe.get_config(0, 12, VhostUserConfigFlags::WRITABLE, &[0; 12])
            .unwrap();
    assert_eq!(&buf[..6], &[2, 0, 0, 0, 0, 1]);
    assert_eq!(&buf[6..8], &1u16.to_le_bytes(), "link up");
    assert_eq!(&buf[10..12], &1500u16.to_le_bytes());
    assert!(g.features & F_MAC != 0 && g.features & F_MTU != 0);
}

#[test]
fn memory_slots_added_and_removed_while_rings_run() {
    use vhost::vhost_user::VhostUserFrontend;
    use vhost::VhostUserMemoryRegionInfo;
    let (dev, _) = device("slots");
    let mut g = Guest::new(&dev.config().socket, ALL);
    assert_eq!(
        g.fe.get_max_mem_slots().unwrap(),
        vhost_port::MAX_MEM_SLOTS as u64
    );
    // QEMU with CONFIGURE_MEM_SLOTS: ADD_MEM_REG instead of SET_MEM_TABLE.
    g.fe.add_mem_region(&g.region()).unwrap();
    for q in 0..2 {
        g.fe.set_vring_num(q, QSIZE).unwrap();
        g.fe.set_vring_addr(q, &Guest::ring_config(q)).unwrap();
        g.fe.set_vring_base(q, 0).unwrap();
        g.fe.set_vring_call(q, &g.call[q]).unwrap();
        g.fe.set_vring_kick(q, &g.kick[q]).unwrap();
        g.fe.set_vring_enable(q, true).unwrap();
    }
    wait_up(&dev);
    let extra_file = memfd(1 << 20);
    let extra = VhostUserMemoryRegionInfo {
        guest_phys_addr: 1 << 32,
        memory_size: 1 << 20,
        userspace_addr: UA + (1 << 32),
        mmap_offset: 0,
        mmap_handle: std::os::fd::AsRawFd::as_raw_fd(&extra_file),
    };
    g.fe.add_mem_region(&extra).unwrap();
    let dp = dev.data_path();
    g.send(&[0; 12], &frame(60));
    assert_eq!(
        dp.recv_batch()
            .unwrap()
            .recv(&mut [0; 10], &mut [0; 2048])
            .unwrap(),
        Some(60)
    );
    g.fe.remove_mem_region(&extra).unwrap();
    g.send(&[0; 12], &frame(70));
    assert_eq!(
        dp.recv_batch()
            .unwrap()
            .recv(&mut [0; 10], &mut [0; 2048])
            .unwrap(),
        Some(70)
    );
    assert_eq!(dev.status().link, LinkState::Up);
}

#[test]
fn a_new_memory_table_waits_for_the_batch_that_uses_the_old_one() {
    let (dev, mut g) = up("remap", ALL);
    let dp = dev.data_path();
    g.send(&[0; 12], &frame(60));
    let mut rx = dp.recv_batch().unwrap();
    assert_eq!(rx.recv(&mut [0; 10], &mut [0; 2048]).unwrap(), Some(60));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let t = {
        let done = done.clone();
        std::thread::spawn(move || {
            // With REPLY_ACK and NEED_REPLY this returns when the device applied the table.
            g.fe.set_hdr_flags(vhost::vhost_user::message::VhostUserHeaderFlag::NEED_REPLY);
            g.set_mem();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            g
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        !done.load(std::sync::atomic::Ordering::SeqCst),
        "memory changed under a running batch"
    );
    drop(rx);
    let mut g = t.join().unwrap();
    assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    // The ring continues where the batch left it, on the new mapping.
    g.send(&[0; 12], &frame(80));
    assert_eq!(
        dp.recv_batch()
            .unwrap()
            .recv(&mut [0; 10], &mut [0; 2048])
            .unwrap(),
        Some(80)
    );
    assert_eq!(g.pop_used(1), Some((0, 0)));
    assert_eq!(g.pop_used(1), Some((1, 0)));
}

#[test]
fn concurrent_senders_to_one_guest_never_share_a_buffer() {
    let (dev, mut g) = up("senders", ALL);
    g.post_rx(QSIZE, 2048);
    let dp = dev.data_path();
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let dp = dp.clone();
            std::thread::spawn(move || {
                let mut sent = 0u8;
                while sent < 64 {
                    // Busy: serve "other ports" and try again, as a worker would.
                    let Ok(mut tx) = dp.send_batch() else {
                        std::thread::yield_now();
                        continue;
                    };
                    for _ in 0..8 {
                        let mut f = frame(64);
                        f[20] = t;
                        f[21] = sent;
                        tx.send(&[0; 10], &[&f]).unwrap();
                        sent += 1;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    let mut ids = std::collections::HashSet::new();
    while let Some((id, len)) = g.pop_used(0) {
        assert_eq!(len, 12 + 64);
        let b = g.read(buf_addr(0, id), len as usize);
        assert_eq!(&b[12..32], &frame(64)[..20]);
        assert_eq!(&b[34..], &frame(64)[22..]);
        assert!(seen.insert((b[32], b[33])), "frame written twice");
        assert!(ids.insert(id), "buffer used twice");
    }
    assert_eq!(seen.len(), 256);
}

#[test]
fn server_mode_replaces_a_stale_socket_but_not_a_regular_file() {
    use vhost_port::{DeviceConfig, DeviceError, NoHook, SocketMode, VhostUserDevice};
    let path = tmp_sock("stale");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let dev = VhostUserDevice::start(
        DeviceConfig::new("stale", &path, SocketMode::Server),
        std::sync::Arc::new(NoHook),
    )
    .unwrap();
    let mut g = Guest::new(&path, ALL);
    g.setup_rings();
    wait_up(&dev);
    drop((g, dev));
    assert!(!path.exists(), "socket removed at shutdown");
    std::fs::write(&path, b"not a socket").unwrap();
    let e = VhostUserDevice::start(
        DeviceConfig::new("stale", &path, SocketMode::Server),
        std::sync::Arc::new(NoHook),
    );
    assert!(matches!(e, Err(DeviceError::PathNotSocket(_))));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn client_mode_retries_until_the_frontend_listens_and_again_after_it_leaves() {
    use std::os::unix::net::UnixListener;
    use vhost::vhost_user::Frontend;
    use vhost_port::{DeviceConfig, NoHook, SocketMode, VhostUserDevice};
    let path = tmp_sock("client");
    let _ = std::fs::remove_file(&path);
    let mut cfg = DeviceConfig::new("client", &path, SocketMode::Client);
    cfg.reconnect_interval = std::time::Duration::from_millis(100);
    let dev = VhostUserDevice::start(cfg, std::sync::Arc::new(NoHook)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(250));
    assert!(
        dev.status().link.to_string().contains("connecting"),
        "{}",
        dev.status().link
    );
    let listener = UnixListener::bind(&path).unwrap();
    for round in 1..=2u64 {
        let (s, _) = listener.accept().unwrap();
        let raw = s.try_clone().unwrap();
        let mut g = Guest::with_frontend(Frontend::from_stream(s, 2), raw, ALL);
        g.setup_rings();
        wait_up(&dev);
        g.send(&[0; 12], &frame(60));
        let dp = dev.data_path();
        assert_eq!(
            dp.recv_batch()
                .unwrap()
                .recv(&mut [0; 10], &mut [0; 2048])
                .unwrap(),
            Some(60)
        );
        assert_eq!(dev.status().counters.connections, round);
        drop(g);
        assert_eq!(wait_down(&dev), "down: socket closed");
    }
}
