//! GRO throughput: a batch of 128 MTU-sized segments from 4 interleaved flows, coalesced by
//! pvnet's `Coalescer` (copy mode, `push_batch`: every payload copied into one buffer per
//! flow; gather mode, `coalesce_batch`: headers plus payload slices of the batch) and, on
//! identical input, by tun-rs's GRO (`GROTable::apply_gro`,
//! which runs tun-rs's `handle_gro` over virtio-header-prefixed buffers), for TCPv4,
//! TCPv6 and UDP over IPv4. Input is bare IP packets (tun style), as tun-rs expects.
//!
//! Run: `cargo bench -p pvnet-core --bench gro -- --warm-up-time 1 --measurement-time 3`.
//! Criterion reports time per batch; divide by 128 for ns per input frame (the
//! throughput line gives frames/s).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pvnet_core::csum;
use pvnet_core::offload::gro::{Coalesced, Coalescer, GroConfig};
use pvnet_core::wire::Start;

const BATCH: usize = 128;
const FLOWS: usize = 4;
/// tun-rs's virtio_net_hdr (10 bytes, without num_buffers).
const TUN_RS_HDR: usize = 10;

#[derive(Clone, Copy)]
enum Kind {
    Tcp4,
    Tcp6,
    Udp4,
}

/// One IP packet of flow `flow`, segment `i`, with an MTU-sized (1500) IP length and
/// correct checksums.
fn packet(kind: Kind, flow: usize, i: usize) -> Vec<u8> {
    let v6 = matches!(kind, Kind::Tcp6);
    let tcp = !matches!(kind, Kind::Udp4);
    let l3_len = if v6 { 40 } else { 20 };
    let l4_len = if tcp { 20 } else { 8 };
    let payload = 1500 - l3_len - l4_len;
    let src4 = [10, 0, 0, 1];
    let dst4 = [10, 0, 0, 2];
    let mut src6 = [0u8; 16];
    src6[0] = 0xfd;
    src6[15] = 1;
    let mut dst6 = src6;
    dst6[15] = 2;
    let proto = if tcp { 6 } else { 17 };

    let mut seg = Vec::with_capacity(l4_len + payload);
    seg.extend_from_slice(&(40000 + flow as u16).to_be_bytes());
    seg.extend_from_slice(&5201u16.to_be_bytes());
    if tcp {
        let seq = 1_000_000u32 * flow as u32 + (i * payload) as u32;
        seg.extend_from_slice(&seq.to_be_bytes());
        seg.extend_from_slice(&7u32.to_be_bytes());
        seg.push(5 << 4);
        seg.push(0x10); // ACK
        seg.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    } else {
        seg.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        seg.extend_from_slice(&[0, 0]);
    }
    seg.extend((0..payload).map(|j| (j + i * 3 + flow) as u8));
    let mut sum = if v6 {
        csum::pseudo_header_v6(&src6, &dst6, proto, seg.len() as u32)
    } else {
        csum::pseudo_header_v4(src4, dst4, proto, seg.len() as u32)
    };
    sum.add(&seg);
    let c = sum.checksum();
    let at = if tcp { 16 } else { 6 };
    seg[at..at + 2].copy_from_slice(&c.to_be_bytes());

    let mut p = Vec::with_capacity(1500);
    if v6 {
        p.extend_from_slice(&[0x60, 0, 0, 0]);
        p.extend_from_slice(&(seg.len() as u16).to_be_bytes());
        p.push(proto);
        p.push(64);
        p.extend_from_slice(&src6);
        p.extend_from_slice(&dst6);
    } else {
        p.extend_from_slice(&[0x45, 0]);
        p.extend_from_slice(&1500u16.to_be_bytes());
        p.extend_from_slice(&(i as u16).to_be_bytes());
        p.extend_from_slice(&[0x40, 0, 64, proto, 0, 0]);
        p.extend_from_slice(&src4);
        p.extend_from_slice(&dst4);
        let c = csum::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    p.extend_from_slice(&seg);
    p
}

/// 128 packets, flows interleaved round-robin.
fn batch(kind: Kind) -> Vec<Vec<u8>> {
    (0..BATCH)
        .map(|n| packet(kind, n % FLOWS, n / FLOWS))
        .collect()
}

fn bench(c: &mut Criterion) {
    for (name, kind) in [
        ("tcp4", Kind::Tcp4),
        ("tcp6", Kind::Tcp6),
        ("udp4", Kind::Udp4),
    ] {
        let input = batch(kind);
        let mut group = c.benchmark_group(format!("gro/{name}"));
        group.throughput(Throughput::Elements(BATCH as u64));

        let mut gro = Coalescer::new(GroConfig::default());
        // Sanity: every flow becomes one super-frame (UDP: at most 64 segments each).
        let mut supers = 0;
        gro.push_batch(
            input.iter().map(Vec::as_slice),
            Start::Ip,
            &mut |e: Coalesced<'_>| supers += usize::from(e.is_super()),
        );
        assert_eq!(supers, FLOWS, "{name}: pvnet did not coalesce");
        group.bench_function("pvnet-copy", |b| {
            b.iter(|| {
                let mut bytes = 0usize;
                gro.push_batch(
                    input.iter().map(Vec::as_slice),
                    Start::Ip,
                    &mut |e: Coalesced<'_>| bytes += black_box(e.frame.head()).len(),
                );
                bytes
            })
        });

        // Gather mode: same frames out, as headers plus payload slices of `input`.
        let mut supers = 0;
        gro.coalesce_batch(&input[..], Start::Ip, &mut |g| {
            supers += usize::from(g.is_super())
        });
        assert_eq!(supers, FLOWS, "{name}: pvnet (gather) did not coalesce");
        group.bench_function("pvnet-gather", |b| {
            b.iter(|| {
                let mut bytes = 0usize;
                gro.coalesce_batch(black_box(&input[..]), Start::Ip, &mut |g| {
                    bytes += black_box(g.frame.head()).len()
                        + g.frame.payload().map(<[u8]>::len).sum::<usize>()
                });
                bytes
            })
        });

        // tun-rs works in place on buffers holding a virtio header then the packet, and only
        // appends into a buffer whose capacity already fits the super-frame. The buffers are
        // allocated and touched once, outside timing, and reused: before every timed call they
        // are refilled from `input` (untimed), so tun-rs, like pvnet, runs on identical
        // packets in cache-warm buffers and allocates nothing.
        let mut bufs: Vec<Vec<u8>> = input
            .iter()
            .map(|_| {
                // Touch the whole capacity here so that page faults do not land in the
                // timed part.
                let mut v = vec![0u8; 65536 + 2 * TUN_RS_HDR];
                v.truncate(0);
                v
            })
            .collect();
        let refill = |bufs: &mut Vec<Vec<u8>>| {
            for (b, p) in bufs.iter_mut().zip(&input) {
                b.clear();
                b.resize(TUN_RS_HDR, 0);
                b.extend_from_slice(p);
            }
        };
        let mut table = tun_rs::GROTable::new();
        {
            refill(&mut bufs);
            table.apply_gro(&mut bufs, TUN_RS_HDR, true).unwrap();
            let grown = bufs.iter().filter(|b| b.len() > 1500 + TUN_RS_HDR).count();
            assert_eq!(grown, FLOWS, "{name}: tun-rs did not coalesce");
            assert!(
                bufs.iter().all(|b| b.capacity() >= 65536),
                "{name}: reallocated"
            );
        }
        group.bench_function("tun-rs", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    refill(&mut bufs);
                    let t = Instant::now();
                    table
                        .apply_gro(black_box(&mut bufs), TUN_RS_HDR, true)
                        .unwrap();
                    total += t.elapsed();
                }
                total
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
