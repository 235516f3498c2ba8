//! Hostile and buggy frontends: each malformed ring, memory table or message disconnects that
//! frontend with the reason in its status, never panics, never touches memory outside the
//! guest's, and leaves other devices running.

mod driver;

use driver::*;
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vhost_port::features::*;
use vhost_port::{RingError, SendError, VhostUserDevice};

const ALL: u64 = u64::MAX;

fn up(name: &str) -> (VhostUserDevice, Guest) {
    let (dev, _) = device(name);
    let mut g = Guest::new(&dev.config().socket, ALL);
    g.setup_rings();
    wait_up(&dev);
    (dev, g)
}

/// Runs a receive batch and returns its error.
fn recv_err(dev: &VhostUserDevice) -> RingError {
    let dp = dev.data_path();
    let mut rx = dp.recv_batch().unwrap();
    let (mut h, mut b) = ([0u8; 10], vec![0u8; 4096]);
    let e = rx.recv(&mut h, &mut b).unwrap_err();
    assert_eq!(
        rx.recv(&mut h, &mut b).unwrap_err(),
        e,
        "the batch stays failed"
    );
    e
}

fn assert_down(dev: &VhostUserDevice, expect: &str) {
    let reason = wait_down(dev);
    assert!(
        reason.contains(expect),
        "reason {reason:?} does not mention {expect:?}"
    );
}

/// A healthy device next to the attacked one still passes a frame after the attack.
fn check_bystander(dev: &VhostUserDevice, g: &mut Guest) {
    assert_eq!(dev.status().link, vhost_port::LinkState::Up);
    g.send(&[0; 12], &[0xab; 60]);
    let dp = dev.data_path();
    let mut rx = dp.recv_batch().unwrap();
    let (mut h, mut b) = ([0u8; 10], [0u8; 2048]);
    assert_eq!(rx.recv(&mut h, &mut b).unwrap(), Some(60));
}

#[test]
fn buffer_outside_guest_memory_disconnects_only_that_frontend() {
    let (bystander, mut bg) = up("bystander");
    let (dev, mut g) = up("oob");
    g.write_desc(desc_base(1), 0, MEM_SIZE - 16, 64, 0, 0);
    g.make_avail(1, 0);
    let e = recv_err(&dev);
    assert!(
        matches!(e, RingError::OutsideMemory { what: "buffer", .. }),
        "{e}"
    );
    assert_down(
        &dev,
        "ring fault: queue 1: buffer at guest address 0x3ffffc (52 bytes) is outside guest memory",
    );
    check_bystander(&bystander, &mut bg);
}

#[test]
fn receive_buffer_outside_guest_memory_fails_the_send() {
    let (dev, g) = up("rxoob");
    g.write_desc(desc_base(0), 0, MEM_SIZE + 4096, 2048, F_WRITE, 0);
    let mut g = g;
    g.make_avail(0, 0);
    let dp = dev.data_path();
    let mut tx = dp.send_batch().unwrap();
    let e = tx.send(&[0; 10], &[&[1u8; 60]]).unwrap_err();
    assert!(
        matches!(e, SendError::Ring(RingError::OutsideMemory { .. })),
        "{e}"
    );
    drop(tx);
    assert_down(
        &dev,
        "ring fault: queue 0: buffer at guest address 0x401000",
    );
}

#[test]
fn descriptor_loop_is_caught() {
    let (dev, mut g) = up("loop");
    g.write_desc(desc_base(1), 0, buf_addr(1, 0), 64, F_NEXT, 1);
    g.write_desc(desc_base(1), 1, buf_addr(1, 1), 64, F_NEXT, 0);
    g.make_avail(1, 0);
    assert_eq!(recv_err(&dev), RingError::ChainLoop(QSIZE as u32));
    assert_down(&dev, "a loop");
}

#[test]
fn next_index_out_of_range_is_caught() {
    let (dev, mut g) = up("next");
    g.write_desc(desc_base(1), 0, buf_addr(1, 0), 64, F_NEXT, 999);
    g.make_avail(1, 0);
    assert_eq!(
        recv_err(&dev),
        RingError::NextOutOfRange {
            next: 999,
            len: 256
        }
    );
    assert_down(&dev, "next index 999 is out of range");
}

#[test]
fn malformed_indirect_tables_are_caught() {
    // Length not a multiple of 16.
    let (dev, mut g) = up("ind1");
    g.write_desc(desc_base(1), 0, buf_addr(1, 0), 17, F_INDIRECT, 0);
    g.make_avail(1, 0);
    assert_eq!(recv_err(&dev), RingError::IndirectBadLength(17));
    assert_down(&dev, "indirect table length 17");

    // An indirect descriptor inside an indirect table.
    let (dev, mut g) = up("ind2");
    let table = buf_addr(1, 10);
    g.write_desc(table, 0, table, 16, F_INDIRECT, 0);
    g.write_desc(desc_base(1), 0, table, 16, F_INDIRECT, 0);
    g.make_avail(1, 0);
    assert_eq!(
        recv_err(&dev),
        RingError::IndirectMisplaced("inside an indirect table")
    );
    assert_down(&dev, "indirect descriptor inside an indirect table");

    // A loop inside an indirect table.
    let (dev, mut g) = up("ind3");
    g.write_desc(table, 0, buf_addr(1, 0), 16, F_NEXT, 1);
    g.write_desc(table, 1, buf_addr(1, 0), 16, F_NEXT, 0);
    g.write_desc(desc_base(1), 0, table, 32, F_INDIRECT, 0);
    g.make_avail(1, 0);
    assert_eq!(recv_err(&dev), RingError::ChainLoop(2));

    // An indirect table outside memory.
    let (dev, mut g) = up("ind4");
    g.write_desc(desc_base(1), 0, MEM_SIZE, 32, F_INDIRECT, 0);
    g.make_avail(1, 0);
    assert!(matches!(
        recv_err(&dev),
        RingError::OutsideMemory {
            what: "descriptor",
            ..
        }
    ));

    // Indirect without the feature.
    let (d2, _) = device("ind5");
    let mut g = Guest::new(&d2.config().socket, F_VERSION_1);
    g.setup_rings();
    wait_up(&d2);
    g.write_desc(desc_base(1), 0, table, 16, F_INDIRECT, 0);
    g.make_avail(1, 0);
    assert_eq!(recv_err(&d2), RingError::IndirectNotNegotiated);
    drop(dev);
}

#[test]
fn avail_index_running_ahead_of_the_ring_is_caught() {
    let (dev, g) = up("runaway");
    g.publish_avail(1, QSIZE + 1);
    assert_eq!(
        recv_err(&dev),
        RingError::AvailIndexRunaway {
            avail: QSIZE + 1,
            next: 0,
            size: QSIZE
        }
    );
    assert_down(
        &dev,
        "available index 257 is more than the queue size 256 ahead of 0",
    );
}

#[test]
fn chain_head_out_of_range_is_caught() {
    let (dev, mut g) = up("head");
    g.make_avail(1, 300);
    assert_eq!(
        recv_err(&dev),
        RingError::HeadOutOfRange {
            head: 300,
            size: QSIZE
        }
    );
}

#[test]
fn writable_descriptor_in_a_transmit_chain_is_caught() {
    let (dev, mut g) = up("dir");
    g.write_desc(desc_base(1), 0, buf_addr(1, 0), 64, F_WRITE, 0);
    g.make_avail(1, 0);
    assert!(matches!(recv_err(&dev), RingError::WrongDirection(_)));
    assert_down(&dev, "device-writable descriptor in a guest transmit chain");
}

#[test]
fn queue_size_not_a_power_of_two_is_refused() {
    let (dev, _) = device("qsize");
    let mut g = Guest::new(&dev.config().socket, ALL);
    g.set_mem();
    let _ = g.fe.set_vring_num(0, 100);
    assert_down(
        &dev,
        "protocol error: queue 0: queue size 100 is not a power of two in 1..=32768",
    );
}

#[test]
fn queue_size_above_32768_is_refused() {
    let (dev, _) = device("qbig");
    let g = Guest::new(&dev.config().socket, ALL);
    raw(
        &g,
        8,
        &[&0u32.to_le_bytes()[..], &65536u32.to_le_bytes()].concat(),
        &[],
    );
    assert_down(&dev, "queue size 65536");
}

#[test]
fn overlapping_memory_regions_are_refused() {
    let (dev, _) = device("overlap");
    let g = Guest::new(&dev.config().socket, ALL);
    let a = g.region();
    let b = VhostUserMemoryRegionInfo {
        guest_phys_addr: MEM_SIZE / 2,
        userspace_addr: UA + MEM_SIZE,
        ..a
    };
    let b = VhostUserMemoryRegionInfo {
        memory_size: MEM_SIZE / 2,
        ..b
    };
    let _ = g.fe.set_mem_table(&[a, b]);
    assert_down(&dev, "overlaps another region's guest addresses");
}

#[test]
fn region_larger_than_its_file_is_refused() {
    let (dev, _) = device("pastend");
    let g = Guest::new(&dev.config().socket, ALL);
    let r = VhostUserMemoryRegionInfo {
        memory_size: MEM_SIZE * 2,
        ..g.region()
    };
    let _ = g.fe.set_mem_table(&[r]);
    assert_down(&dev, "extends past the end of its file");
}

#[test]
fn ring_address_outside_guest_memory_is_refused() {
    let (dev, _) = device("ringaddr");
    let mut g = Guest::new(&dev.config().socket, ALL);
    g.set_mem();
    g.fe.set_vring_num(0, QSIZE).unwrap();
    let bad = VringConfigData {
        desc_table_addr: UA + MEM_SIZE - 16,
        ..Guest::ring_config(0)
    };
    let _ = g.fe.set_vring_addr(0, &bad);
    assert_down(
        &dev,
        "descriptor ring at frontend address 0x7f00003ffff0 (4096 bytes) is outside guest memory",
    );
}

#[test]
fn unoffered_features_are_refused() {
    let (dev, _) = device("feat");
    let (fe, _raw) = connect(&dev.config().socket);
    fe.set_owner().unwrap();
    let _ = fe.set_features(1 << 22);
    assert_down(
        &dev,
        "SET_FEATURES acknowledged features 0x400000 that were not offered",
    );
}

#[test]
fn message_with_the_wrong_size_is_refused() {
    let (dev, _) = device("size");
    let g = Guest::new(&dev.config().socket, ALL);
    // SET_VRING_NUM (8) with a 4-byte body instead of 8.
    raw(&g, 8, &[0, 0, 0, 0], &[]);
    assert_down(&dev, "protocol error");
}

#[test]
fn mem_table_without_its_fd_is_refused() {
    let (dev, _) = device("nofd");
    let g = Guest::new(&dev.config().socket, ALL);
    raw(&g, 5, &mem_table_body(&[(0, MEM_SIZE, UA, 0)]), &[]);
    assert_down(&dev, "protocol error");
}

#[test]
fn mem_table_with_extra_fds_is_refused() {
    use std::os::fd::AsRawFd;
    let (dev, _) = device("twofd");
    let g = Guest::new(&dev.config().socket, ALL);
    let fd = g.file.as_raw_fd();
    raw(&g, 5, &mem_table_body(&[(0, MEM_SIZE, UA, 0)]), &[fd, fd]);
    assert_down(&dev, "protocol error");
}

#[test]
fn zero_sized_memory_region_is_refused() {
    use std::os::fd::AsRawFd;
    let (dev, _) = device("zero");
    let g = Guest::new(&dev.config().socket, ALL);
    raw(
        &g,
        5,
        &mem_table_body(&[(0, 0, UA, 0)]),
        &[g.file.as_raw_fd()],
    );
    assert_down(&dev, "protocol error");
}

#[test]
fn vring_kick_without_the_fd_it_announces_is_refused() {
    let (dev, _) = device("kickfd");
    let g = Guest::new(&dev.config().socket, ALL);
    // SET_VRING_KICK (12), queue 1, "fd attached" (bit 8 clear) but none sent.
    raw(&g, 12, &1u64.to_le_bytes(), &[]);
    assert_down(&dev, "protocol error");
}

#[test]
fn queue_index_out_of_range_is_refused() {
    let (dev, _) = device("qidx");
    let g = Guest::new(&dev.config().socket, ALL);
    let _ = g.fe.set_vring_num(1, QSIZE);
    raw(
        &g,
        8,
        &[&7u32.to_le_bytes()[..], &256u32.to_le_bytes()].concat(),
        &[],
    );
    assert_down(&dev, "SET_VRING_NUM: queue index 7 is not 0 or 1");
}

#[test]
fn device_accepts_a_new_frontend_after_a_hostile_one() {
    let (dev, mut g) = up("after");
    g.make_avail(1, 300);
    let _ = recv_err(&dev);
    assert_down(&dev, "ring fault");
    drop(g);
    let mut g = Guest::new(&dev.config().socket, ALL);
    g.setup_rings();
    wait_up(&dev);
    check_bystander(&dev, &mut g);
}
