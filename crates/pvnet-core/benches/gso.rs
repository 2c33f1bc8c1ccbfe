//! GSO throughput: one 64 KiB super-frame (IP length 65535) segmented at MSS 1448 by
//! pvnet's zero-copy `Segmenter` (Partial and Full checksum modes, every segment exported as
//! iovecs) and, on identical input, by tun-rs's `gso_split` (which copies each segment into
//! an output buffer and computes its checksum), for TCPv4, TCPv6 and USO over IPv4. Input is
//! a bare IP packet (tun style), as tun-rs expects.
//!
//! Run: `cargo bench -p pvnet-core --bench gso -- --warm-up-time 1 --measurement-time 3`.
//! Criterion reports time per super-frame; the throughput line counts segments.

use std::hint::black_box;
use std::io::IoSlice;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pvnet_core::csum;
use pvnet_core::frame::{Gso, GsoKind};
use pvnet_core::offload::gso::{CsumMode, GsoOptions, SegmentBuf, Segmenter};
use pvnet_core::vnet::{validate_gso, Validated};
use pvnet_core::wire::{parse, Layers, Start};

const MSS: u16 = 1448;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Tcp4,
    Tcp6,
    Uso4,
}

/// Bare IP super-frame with IP length 65535 and the pseudo-header sum in its checksum
/// field (what a sender using offloads hands over).
fn superframe(kind: Kind) -> Vec<u8> {
    let v6 = matches!(kind, Kind::Tcp6);
    let tcp = !matches!(kind, Kind::Uso4);
    let l3 = if v6 { 40 } else { 20 };
    let l4 = if tcp { 20 } else { 8 };
    let payload = if v6 { 65535 - l4 } else { 65535 - l3 - l4 };
    let proto: u8 = if tcp { 6 } else { 17 };
    let mut f = Vec::with_capacity(l3 + l4 + payload);
    let l4_len = (l4 + payload) as u32;
    let pseudo;
    if v6 {
        let mut src = [0u8; 16];
        src[0] = 0xfd;
        src[15] = 1;
        let mut dst = src;
        dst[15] = 2;
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(l4_len as u16).to_be_bytes());
        f.extend_from_slice(&[proto, 64]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        pseudo = csum::pseudo_header_v6(&src, &dst, proto, l4_len);
    } else {
        let (src, dst) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        f.extend_from_slice(&[0x45, 0, 0xff, 0xff, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        let c = csum::checksum(&f[..20]);
        f[10..12].copy_from_slice(&c.to_be_bytes());
        pseudo = csum::pseudo_header_v4(src, dst, proto, l4_len);
    }
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&5201u16.to_be_bytes());
    if tcp {
        f.extend_from_slice(&1u32.to_be_bytes());
        f.extend_from_slice(&7u32.to_be_bytes());
        f.extend_from_slice(&[5 << 4, 0x18, 0xff, 0xff]);
        f.extend_from_slice(&pseudo.fold().to_be_bytes());
        f.extend_from_slice(&[0, 0]);
    } else {
        f.extend_from_slice(&(l4_len as u16).to_be_bytes());
        f.extend_from_slice(&pseudo.fold().to_be_bytes());
    }
    f.extend((0..payload).map(|i| (i * 7 + i / 251) as u8));
    f
}

fn gso_of(kind: Kind) -> Gso {
    Gso {
        kind: match kind {
            Kind::Tcp4 => GsoKind::Tcpv4,
            Kind::Tcp6 => GsoKind::Tcpv6,
            Kind::Uso4 => GsoKind::UdpL4,
        },
        size: MSS,
        ecn: false,
        tunnel: None,
    }
}

/// Segment the whole super-frame with pvnet and touch every iovec; return the segment
/// count.
fn pvnet(frame: &[u8], v: &Validated, mode: CsumMode, buf: &mut SegmentBuf) -> usize {
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

struct TunRs {
    hdr: tun_rs::VirtioNetHdr,
    out: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    v6: bool,
}

impl TunRs {
    fn new(kind: Kind, frame: &[u8], layers: &Layers) -> TunRs {
        let tcp = !matches!(kind, Kind::Uso4);
        let hdr = tun_rs::VirtioNetHdr {
            flags: 1, // NEEDS_CSUM
            gso_type: match kind {
                Kind::Tcp4 => tun_rs::VIRTIO_NET_HDR_GSO_TCPV4,
                Kind::Tcp6 => tun_rs::VIRTIO_NET_HDR_GSO_TCPV6,
                Kind::Uso4 => tun_rs::VIRTIO_NET_HDR_GSO_UDP_L4,
            },
            hdr_len: layers.payload_offset as u16,
            gso_size: MSS,
            csum_start: layers.l4_offset as u16,
            csum_offset: if tcp { 16 } else { 6 },
        };
        let segs = (frame.len() - layers.payload_offset).div_ceil(usize::from(MSS));
        TunRs {
            hdr,
            out: vec![vec![0u8; layers.payload_offset + usize::from(MSS)]; segs],
            sizes: vec![0; segs],
            v6: matches!(kind, Kind::Tcp6),
        }
    }

    fn run(&mut self, input: &mut [u8]) -> usize {
        tun_rs::gso_split(input, self.hdr, &mut self.out, &mut self.sizes, 0, self.v6).unwrap_or(0)
    }
}

fn bench(c: &mut Criterion) {
    for kind in [Kind::Tcp4, Kind::Tcp6, Kind::Uso4] {
        let frame = superframe(kind);
        let layers = parse(&frame, Start::Ip).expect("bench frame parses");
        let v = validate_gso(&frame, Start::Ip, gso_of(kind)).expect("bench frame validates");
        let mut buf = SegmentBuf::with_capacity(64);
        let mut tun = TunRs::new(kind, &frame, &layers);
        let mut input = frame.clone();

        // Same segments from both (sanity, outside the timing).
        let ours = pvnet(&frame, &v, CsumMode::Full, &mut buf);
        let theirs = tun.run(&mut input);
        assert_eq!(ours, theirs, "{kind:?}: segment counts differ");

        let mut g = c.benchmark_group(format!("gso-{kind:?}-64k-mss{MSS}").to_lowercase());
        g.throughput(Throughput::Elements(ours as u64));
        g.bench_function("pvnet-partial", |b| {
            b.iter(|| pvnet(black_box(&frame), &v, CsumMode::Partial, &mut buf))
        });
        g.bench_function("pvnet-full", |b| {
            b.iter(|| pvnet(black_box(&frame), &v, CsumMode::Full, &mut buf))
        });
        g.bench_function("tun-rs-gso_split", |b| {
            b.iter(|| tun.run(black_box(&mut input)))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
