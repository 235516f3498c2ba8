//! Microbenchmarks of the per-frame work: the forwarding decision (parse, classify, learn,
//! look up, egress selection, tag render, vnet header shift) and the FDB alone, at 4k and 1M
//! learned MACs, on one thread and on two threads sharing one FDB; and the software GSO
//! fallback (`dataplane::gso`): a 64 KB TCPv4 super-frame cut into 1448-byte segments, and a
//! partial checksum completed on a 1514-byte frame.
//!
//! `cargo bench -p dataplane` for figures; `cargo bench -p dataplane -- --test` runs each once
//! (CI's smoke mode).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dataplane::config::{PortEntry, Snapshot};
use dataplane::fdb::Fdb;
use dataplane::forward::{decide, egress_ports, prefetch};
use dataplane::gso::{complete_checksum, segment, GSO_TCPV4};
use dataplane::wire::{EgressFrame, EthernetFrame, MacAddr, VnetHdr};
use dataplane::PortMode;

const PORTS: u16 = 8;

/// 8 ports: 0-5 access VLAN 10, 6-7 trunks carrying VLAN 10 tagged.
fn snapshot() -> Snapshot {
    let ports = (0..PORTS)
        .map(|i| {
            let mode = if i < 6 {
                PortMode::Access { vlan: 10 }
            } else {
                PortMode::trunk([10], None)
            };
            Some(PortEntry::new(format!("p{i}"), mode, ()))
        })
        .collect();
    Snapshot::new(ports, 300)
}

fn mac(i: u64) -> MacAddr {
    // Locally administered unicast, spread like real NIC addresses.
    MacAddr::from_u64(0x0200_0000_0000 | (i.wrapping_mul(0x9e37_79b9) & 0xff_ffff_ffff))
}

/// Untagged 64-byte frames between `macs` known hosts, arriving on their learned ports.
fn frames(macs: u64, n: usize) -> Vec<([u8; 64], u16)> {
    (0..n as u64)
        .map(|i| {
            let src = (i * 7919) % macs;
            let dst = (i * 104_729 + 1) % macs;
            let mut f = [0u8; 64];
            f[..6].copy_from_slice(&mac(dst).0);
            f[6..12].copy_from_slice(&mac(src).0);
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            (f, (src % 6) as u16)
        })
        .collect()
}

fn learned_fdb(macs: u64) -> Fdb {
    let fdb = Fdb::new((macs as usize * 5 / 4).max(4096));
    for i in 0..macs {
        fdb.learn(10, mac(i), (i % 6) as u16, 0, 300);
    }
    fdb
}

/// The whole per-frame decision and rendering, as a worker does it minus the syscalls.
#[inline]
fn forward(snap: &Snapshot, fdb: &Fdb, bytes: &[u8], ingress: u16) -> usize {
    let f = EthernetFrame::parse(bytes).expect("valid frame");
    let d = decide(snap, fdb, &f, ingress, 1).expect("forwarded");
    let vh = VnetHdr::default();
    let mut out = 0;
    for (_, how) in egress_ports(snap, &d, ingress) {
        let e = EgressFrame::render(&f, d.vlan, how);
        let h = vh.shifted(e.len_delta(&f));
        out += e.len() + h.csum_start as usize;
    }
    out
}

fn bench_decision(c: &mut Criterion) {
    let snap = snapshot();
    let mut g = c.benchmark_group("decision");
    g.throughput(Throughput::Elements(1));
    for macs in [4096u64, 1 << 20] {
        let fdb = learned_fdb(macs);
        let fs = frames(macs, 1 << 16);
        let label = if macs == 4096 { "4k" } else { "1M" };
        g.bench_with_input(BenchmarkId::new("1 thread", label), &fs, |b, fs| {
            let mut i = 0;
            b.iter(|| {
                let (f, port) = &fs[i & (fs.len() - 1)];
                i += 1;
                black_box(forward(&snap, &fdb, f, *port))
            })
        });
        // As the worker does it: a batch of 16 frames, whose FDB slots are all prefetched
        // before the first decision. The figure is per frame.
        g.bench_with_input(
            BenchmarkId::new("1 thread, batch of 16", label),
            &fs,
            |b, fs| {
                let mut i = 0;
                b.iter_custom(|iters| {
                    let batches = iters.div_ceil(16);
                    let start = Instant::now();
                    for _ in 0..batches {
                        let batch = &fs[i & (fs.len() - 1)..][..16];
                        i += 16;
                        for (f, port) in batch {
                            let f = EthernetFrame::parse(f).expect("valid frame");
                            prefetch(&snap, &fdb, &f, *port);
                        }
                        for (f, port) in batch {
                            black_box(forward(&snap, &fdb, f, *port));
                        }
                    }
                    start
                        .elapsed()
                        .mul_f64(iters as f64 / (batches * 16) as f64)
                })
            },
        );
        // Two threads on one shared FDB: each measures its own frames; the figure is the
        // time per frame of the pair (total frames / wall time), comparable to 1 thread.
        g.bench_with_input(BenchmarkId::new("2 threads", label), &fs, |b, fs| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..2u64 {
                        let (snap, fdb) = (&snap, &fdb);
                        s.spawn(move || {
                            let half = iters / 2 + t * (iters % 2);
                            let off = (t as usize) * fs.len() / 2;
                            for i in 0..half as usize {
                                let (f, port) = &fs[(i + off) & (fs.len() - 1)];
                                black_box(forward(snap, fdb, f, *port));
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }
    g.finish();
}

fn bench_fdb(c: &mut Criterion) {
    let mut g = c.benchmark_group("fdb");
    g.throughput(Throughput::Elements(1));
    for macs in [4096u64, 1 << 20] {
        let fdb = learned_fdb(macs);
        let label = if macs == 4096 { "4k" } else { "1M" };
        // (MAC, the port it was learned on)
        let keys: Vec<(MacAddr, u16)> = (0..1u64 << 16)
            .map(|i| {
                let m = (i * 104_729) % macs;
                (mac(m), (m % 6) as u16)
            })
            .collect();
        g.bench_function(BenchmarkId::new("lookup", label), |b| {
            let mut i = 0;
            b.iter(|| {
                i += 1;
                black_box(fdb.lookup(10, keys[i & 0xffff].0, 1, 300))
            })
        });
        g.bench_function(BenchmarkId::new("learn (refresh)", label), |b| {
            let mut i = 0;
            b.iter(|| {
                i += 1;
                let (m, port) = keys[i & 0xffff];
                black_box(fdb.learn(10, m, port, 0, 300))
            })
        });
    }
    g.finish();
}

/// An untagged TCPv4 frame with `payload` bytes of payload, as the kernel hands it over with
/// `gso_type` TCPV4 and `gso_size` `mss`, with its vnet header.
fn tcp4_frame(payload: usize, mss: u16, gso_type: u8) -> (Vec<u8>, VnetHdr) {
    let data: Vec<u8> = (0..payload).map(|i| i as u8).collect();
    let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 80, 1, 512)
        .ack(1);
    let mut frame = Vec::with_capacity(builder.size(payload));
    builder.write(&mut frame, &data).expect("frame fits");
    let hdr = VnetHdr {
        flags: VnetHdr::F_NEEDS_CSUM,
        gso_type,
        hdr_len: 54,
        gso_size: mss,
        csum_start: 34,
        csum_offset: 16,
    };
    (frame, hdr)
}

fn bench_gso(c: &mut Criterion) {
    let mut g = c.benchmark_group("gso");
    g.throughput(Throughput::Elements(1));
    // 45 segments of 1448 bytes: what Linux sends as one 64 KB super-frame at a 1500 MTU.
    let (frame, hdr) = tcp4_frame(45 * 1448, 1448, GSO_TCPV4);
    let mut seg = vec![0u8; 54 + 1448];
    g.bench_function(
        "segment 64 KB TCPv4 into 1448-byte segments (per super-frame)",
        |b| {
            b.iter(|| {
                let mut bytes = 0;
                let n = segment(&hdr, black_box(&frame), &mut seg, |s| {
                    bytes += black_box(s).len();
                    Ok::<(), ()>(())
                })
                .expect("segmented");
                black_box((n, bytes))
            })
        },
    );
    let (mut frame, hdr) = tcp4_frame(1460, 0, VnetHdr::GSO_NONE);
    g.bench_function("complete_checksum 1514-byte TCPv4", |b| {
        b.iter(|| complete_checksum(&hdr, black_box(&mut frame)).expect("in frame"))
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_decision, bench_fdb, bench_gso
}
criterion_main!(benches);
