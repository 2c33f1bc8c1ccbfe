//! Checksum throughput: pvnet (dispatching and scalar) against the internet-checksum and
//! s2n-quic-core crates and a plain memcpy of the same buffer, cache-hot.
//!
//! `cargo bench -p pvnet-core --bench csum -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pvnet_core::csum;

const SIZES: [usize; 4] = [64, 1500, 9000, 65536];

fn data(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

fn bench_csum(c: &mut Criterion) {
    for size in SIZES {
        let buf = data(size);
        let mut dst = vec![0u8; size];
        let mut g = c.benchmark_group(format!("csum/{size}"));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(
            BenchmarkId::new(format!("pvnet-{}", csum::implementation()), size),
            &buf,
            |b, d| b.iter(|| csum::checksum(black_box(d))),
        );
        g.bench_with_input(BenchmarkId::new("pvnet-scalar", size), &buf, |b, d| {
            b.iter(|| !csum::fold64(csum::scalar_sum(black_box(d))))
        });
        g.bench_with_input(BenchmarkId::new("internet-checksum", size), &buf, |b, d| {
            b.iter(|| internet_checksum::checksum(black_box(d)))
        });
        g.bench_with_input(BenchmarkId::new("s2n-quic-core", size), &buf, |b, d| {
            b.iter(|| s2n_quic_core::inet::checksum::checksum(black_box(d)))
        });
        g.bench_with_input(BenchmarkId::new("memcpy", size), &buf, |b, d| {
            b.iter(|| {
                dst.copy_from_slice(black_box(d));
                black_box(&mut dst);
            })
        });
        g.finish();
    }
}

/// Header-sized inputs (an IPv4 header, an IPv6 header, Ethernet + IPv4 + TCP, odd and
/// just-over-64 lengths), where only the fixed cost of a call counts: the public
/// `csum::checksum` against the two crates.
fn bench_small(c: &mut Criterion) {
    let mut g = c.benchmark_group("csum-small");
    for size in [20, 40, 54, 63, 128] {
        let buf = data(size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("pvnet", size), &buf, |b, d| {
            b.iter(|| csum::checksum(black_box(d)))
        });
        g.bench_with_input(BenchmarkId::new("internet-checksum", size), &buf, |b, d| {
            b.iter(|| internet_checksum::checksum(black_box(d)))
        });
        g.bench_with_input(BenchmarkId::new("s2n-quic-core", size), &buf, |b, d| {
            b.iter(|| s2n_quic_core::inet::checksum::checksum(black_box(d)))
        });
    }
    g.finish();
}

/// Where the SIMD kernel starts to beat the scalar one (chooses `csum::SIMD_THRESHOLD`).
fn bench_threshold(c: &mut Criterion) {
    if csum::simd_sum(&[]).is_none() {
        return;
    }
    let mut g = c.benchmark_group("csum-threshold");
    for size in [64, 128, 192, 256, 320, 512] {
        let buf = data(size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("scalar", size), &buf, |b, d| {
            b.iter(|| csum::scalar_sum(black_box(d)))
        });
        g.bench_with_input(BenchmarkId::new("simd", size), &buf, |b, d| {
            b.iter(|| csum::simd_sum(black_box(d)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_csum, bench_small, bench_threshold);
criterion_main!(benches);
