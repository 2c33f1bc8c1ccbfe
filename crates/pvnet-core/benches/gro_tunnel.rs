//! The cost of tunnel GRO: the same inner TCPv4 flows (MSS 1398, the MSS of VXLAN over a
//! 1500-byte IPv4 underlay) coalesced by pvnet's `Coalescer` in gather mode as plain
//! Ethernet frames, and inside VXLAN (tunnel GRO on) without and with the outer UDP
//! checksum (which is verified too: a second pass over every frame). A batch is 128
//! frames, 4 flows of 32 segments interleaved; the segments are the tunnel segmenter's,
//! and the plain frames are the same segments without their outer headers. The difference
//! per frame is what the outer checks cost.
//!
//! Run: `cargo bench -p pvnet-core --bench gro_tunnel -- --warm-up-time 1
//! --measurement-time 3`. Criterion reports time per batch; the throughput line counts
//! frames.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pvnet_core::offload::gro::{Coalesced, Coalescer, GroConfig};
use pvnet_core::offload::gso::fuzz::TunnelSpec;
use pvnet_core::offload::gso::{segment_linear, CsumMode, GsoOptions, SegmentBuf};
use pvnet_core::vnet::validate;
use pvnet_core::wire::Start;

const MSS: u16 = 1398;
const FLOWS: usize = 4;
const SEGMENTS: usize = 32;
/// Outer Ethernet, IPv4, UDP and VXLAN: where the inner Ethernet frame starts.
const OUTER: usize = 14 + 20 + 8 + 8;

/// The segments of flow `flow` in VXLAN, with or without the outer checksum.
fn flow(flow: usize, csum: bool) -> Vec<Vec<u8>> {
    let spec = TunnelSpec {
        outer_v6: false,
        inner_v6: false,
        geneve: None,
        inner_vlan: false,
        tcp_opts: Some(12),
        csum,
        payload: SEGMENTS * usize::from(MSS),
        gso_size: MSS,
        // TunnelSpec ORs the seed with 1: odd seeds, distinct flows.
        seed: 7 + 2 * flow as u64,
    };
    let (mut frame, hdr) = spec.build();
    // ACK only: PSH, FIN or CWR would end or split the flow.
    frame[usize::from(hdr.csum_start) + 13] = 0x10;
    let v = validate(&hdr, &frame, Start::Ethernet).expect("valid super-frame");
    let mut segs = Vec::new();
    let opts = GsoOptions {
        csum: CsumMode::Full,
        ..GsoOptions::default()
    };
    segment_linear(
        &frame,
        &v,
        opts,
        &mut SegmentBuf::with_capacity(SEGMENTS),
        &mut Vec::new(),
        |s, _| segs.push(s.to_vec()),
    )
    .expect("segments");
    segs
}

/// The flows' segments interleaved, one batch.
fn batch(csum: bool) -> Vec<Vec<u8>> {
    let flows: Vec<_> = (0..FLOWS).map(|f| flow(f, csum)).collect();
    (0..SEGMENTS)
        .flat_map(|i| flows.iter().map(move |f| f[i].clone()))
        .collect()
}

fn run(gro: &mut Coalescer, frames: &[Vec<u8>]) -> usize {
    let mut n = 0;
    gro.coalesce_batch(frames, Start::Ethernet, &mut |e: Coalesced<'_>| {
        black_box(&e);
        n += 1;
    });
    n
}

fn bench(c: &mut Criterion) {
    let vxlan = batch(false);
    let vxlan_csum = batch(true);
    let plain: Vec<Vec<u8>> = vxlan.iter().map(|f| f[OUTER..].to_vec()).collect();
    let tunnels = GroConfig {
        tunnels: true,
        ..GroConfig::default()
    };
    let mut g = c.benchmark_group("gro_tunnel");
    g.throughput(Throughput::Elements(plain.len() as u64));
    for (name, cfg, frames) in [
        ("plain_tcp4", GroConfig::default(), &plain),
        ("vxlan_tcp4", tunnels, &vxlan),
        ("vxlan_csum_tcp4", tunnels, &vxlan_csum),
    ] {
        let mut gro = Coalescer::new(cfg);
        // Each flow becomes one super-frame: nothing is measured that does not coalesce.
        assert_eq!(run(&mut gro, frames), FLOWS, "{name}");
        g.bench_function(name, |b| b.iter(|| run(&mut gro, frames)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
