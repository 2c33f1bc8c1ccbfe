//! The cost of the UDP tunnel fix-ups: the same inner TCPv4 super-frame (64000 bytes of
//! payload, MSS 1398, the MSS of VXLAN over a 1500-byte IPv4 underlay) segmented by
//! pvnet's `Segmenter` as a plain Ethernet frame (TSO) and inside a VXLAN tunnel, without
//! and with the outer UDP checksum (SKB_GSO_UDP_TUNNEL and _CSUM), in Partial and Full
//! checksum modes; every segment exported as iovecs. The difference per segment is what
//! the outer IP/UDP headers cost.
//!
//! Run: `cargo bench -p pvnet-core --bench gso_tunnel -- --warm-up-time 1
//! --measurement-time 3`. Criterion reports time per super-frame; the throughput line
//! counts segments.

use std::hint::black_box;
use std::io::IoSlice;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pvnet_core::frame::{Gso, GsoKind};
use pvnet_core::offload::gso::fuzz::TunnelSpec;
use pvnet_core::offload::gso::{CsumMode, GsoOptions, SegmentBuf, Segmenter};
use pvnet_core::vnet::{validate, validate_gso, Validated};
use pvnet_core::wire::Start;

const MSS: u16 = 1398;
const PAYLOAD: usize = 64_000;

/// Segment the whole super-frame and touch every iovec; return the segment count.
fn segment(frame: &[u8], v: &Validated, mode: CsumMode, buf: &mut SegmentBuf) -> usize {
    let opts = GsoOptions {
        csum: mode,
        ..Default::default()
    };
    let Ok(mut seg) = Segmenter::from_linear(frame, v, opts) else {
        return 0;
    };
    let mut n = 0;
    while !seg.is_done() {
        let batch = seg.next_batch(buf);
        for s in batch.iter() {
            let mut io = [IoSlice::new(&[]); 4];
            let k = s.fill_iovecs(&mut io).unwrap_or(0);
            black_box(&io[..k]);
            n += 1;
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    let spec = |csum| TunnelSpec {
        outer_v6: false,
        inner_v6: false,
        geneve: None,
        inner_vlan: false,
        tcp_opts: Some(0),
        csum,
        payload: PAYLOAD,
        gso_size: MSS,
        seed: 42,
    };
    let (vxlan, hdr) = spec(false).build();
    let (vxlan_csum, hdr_csum) = spec(true).build();
    let v_vxlan = validate(&hdr, &vxlan, Start::Ethernet).expect("VXLAN frame validates");
    let v_vxlan_csum =
        validate(&hdr_csum, &vxlan_csum, Start::Ethernet).expect("VXLAN frame validates");
    // The same inner packet on its own: from the inner Ethernet header on.
    let inner_eth = usize::from(hdr.tunnel.expect("24-byte header").inner_nh_offset) - 14;
    let plain = vxlan[inner_eth..].to_vec();
    let v_plain = validate_gso(
        &plain,
        Start::Ethernet,
        Gso::plain(GsoKind::Tcpv4, MSS, false),
    )
    .expect("plain frame validates");
    let mut buf = SegmentBuf::with_capacity(64);
    let n = segment(&plain, &v_plain, CsumMode::Full, &mut buf);
    assert_eq!(n, segment(&vxlan, &v_vxlan, CsumMode::Full, &mut buf));
    assert_eq!(n, PAYLOAD.div_ceil(usize::from(MSS)));

    for (mode, name) in [(CsumMode::Partial, "partial"), (CsumMode::Full, "full")] {
        let mut g = c.benchmark_group(format!("gso-tunnel-tcp4-64k-mss{MSS}-{name}"));
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function("plain-tso", |b| {
            b.iter(|| segment(black_box(&plain), &v_plain, mode, &mut buf))
        });
        g.bench_function("vxlan", |b| {
            b.iter(|| segment(black_box(&vxlan), &v_vxlan, mode, &mut buf))
        });
        g.bench_function("vxlan-csum", |b| {
            b.iter(|| segment(black_box(&vxlan_csum), &v_vxlan_csum, mode, &mut buf))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
