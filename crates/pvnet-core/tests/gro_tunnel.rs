//! GRO of VXLAN and GENEVE flows: the segments the tunnel segmenter cuts from a super-frame
//! coalesce back into that super-frame, with metadata that validates as a 24-byte virtio
//! header would and segments into the same frames again; the outer rules keep apart what
//! the kernel keeps apart.

#[path = "gro_util.rs"]
mod util;

use proptest::prelude::*;
use pvnet_core::frame::{CsumState, GsoKind};
use pvnet_core::offload::gro::{GroConfig, PassCause};
use pvnet_core::offload::gso::fuzz::TunnelSpec;
use pvnet_core::offload::gso::{segment_linear, CsumMode, GsoOptions, SegmentBuf};
use pvnet_core::vnet::{validate, Endian, VnetHdr};
use pvnet_core::wire::{parse, Start};
use util::{run, Out};

const TCP_CWR: u8 = 0x80;

fn cfg() -> GroConfig {
    GroConfig {
        tunnels: true,
        ..GroConfig::default()
    }
}

/// The super-frame of `spec` (without CWR, which a super-frame without the ECN bit would
/// put on every segment) and its segments, checksums complete.
fn segments(spec: &TunnelSpec) -> (Vec<u8>, Vec<Vec<u8>>) {
    let (mut frame, hdr) = spec.build();
    if spec.tcp_opts.is_some() {
        let flags = usize::from(hdr.csum_start) + 13;
        frame[flags] &= !TCP_CWR;
    }
    let v = validate(&hdr, &frame, Start::Ethernet).expect("the spec validates");
    (frame.clone(), segment(&frame, &v))
}

fn segment(frame: &[u8], v: &pvnet_core::vnet::Validated) -> Vec<Vec<u8>> {
    let mut buf = SegmentBuf::with_capacity(16);
    let mut line = Vec::new();
    let mut out = Vec::new();
    let opts = GsoOptions {
        csum: CsumMode::Full,
        ..GsoOptions::default()
    };
    segment_linear(frame, v, opts, &mut buf, &mut line, |s, _| {
        out.push(s.to_vec())
    })
    .expect("segments");
    out
}

/// Segment what the coalescer emitted, each item by the virtio header its metadata makes
/// (so the metadata must pass the kernel's rules for a 24-byte header).
fn resegment(outs: &[Out]) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for o in outs {
        if o.meta.gso.is_none() {
            all.push(o.frame.clone());
            continue;
        }
        let layers = parse(&o.frame, Start::Ethernet).expect("outer parses");
        let hdr = VnetHdr::from_meta(&o.meta, &layers);
        let v = validate(&hdr, &o.frame, Start::Ethernet)
            .unwrap_or_else(|e| panic!("coalescer output is refused: {e} ({hdr:?})"));
        all.extend(segment(&o.frame, &v));
    }
    all
}

fn spec_strategy() -> impl Strategy<Value = TunnelSpec> {
    (
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(None), (0usize..=32).prop_map(|w| Some(w * 4))],
        any::<bool>(),
        prop_oneof![Just(None), (0usize..=10).prop_map(|w| Some(w * 4))],
        any::<bool>(),
        (600u16..1600, 2usize..30, 1usize..1600, any::<u64>()),
    )
        .prop_map(
            |(
                outer_v6,
                inner_v6,
                geneve,
                inner_vlan,
                tcp_opts,
                csum,
                (gso_size, n, last, seed),
            )| {
                let last = last.min(usize::from(gso_size));
                TunnelSpec {
                    outer_v6,
                    inner_v6,
                    geneve,
                    inner_vlan,
                    tcp_opts,
                    csum,
                    payload: (n - 1) * usize::from(gso_size) + last,
                    gso_size,
                    seed,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// GSO then GRO gives back the super-frame, byte for byte, with its metadata; GSO of
    /// that gives back the same segments.
    #[test]
    fn gso_gro_gso_round_trip(spec in spec_strategy()) {
        let (sup, segs) = segments(&spec);
        prop_assert!(segs.len() >= 2);
        let (outs, gro) = run(cfg(), &segs, Start::Ethernet);
        prop_assert_eq!(outs.len(), 1, "{:?}", gro.stats());
        let o = &outs[0];
        prop_assert_eq!(usize::from(o.segments), segs.len());
        prop_assert_eq!(&o.frame, &sup);
        let gso = o.meta.gso.expect("a super-frame");
        let t = gso.tunnel.expect("a tunnel super-frame");
        prop_assert_eq!(t.csum, spec.csum);
        prop_assert_eq!(gso.size, spec.gso_size);
        prop_assert_eq!(gso.kind, match (spec.tcp_opts.is_some(), spec.inner_v6) {
            (true, false) => GsoKind::Tcpv4,
            (true, true) => GsoKind::Tcpv6,
            (false, _) => GsoKind::UdpL4,
        });
        prop_assert_eq!(resegment(&outs), segs);
    }

    /// Whatever the flows and their interleaving, segmenting what GRO emits gives back
    /// the frames it was fed, in each flow's order.
    #[test]
    fn interleaved_flows_round_trip(
        a in spec_strategy(),
        b in spec_strategy(),
        picks in proptest::collection::vec(any::<bool>(), 0..64),
    ) {
        let (_, sa) = segments(&a);
        let (_, sb) = segments(&b);
        let (mut ia, mut ib) = (sa.iter(), sb.iter());
        let mut input = Vec::new();
        for p in picks.iter().chain(std::iter::repeat_n(&true, sa.len() + sb.len())) {
            let next = if *p { ia.next().or_else(|| ib.next()) } else { ib.next().or_else(|| ia.next()) };
            match next {
                Some(f) => input.push(f.clone()),
                None => break,
            }
        }
        let (outs, _) = run(cfg(), &input, Start::Ethernet);
        let back = resegment(&outs);
        let only = |v: &[Vec<u8>], of: &[Vec<u8>]| -> Vec<Vec<u8>> {
            v.iter().filter(|f| of.contains(f)).cloned().collect()
        };
        prop_assert_eq!(back.len(), input.len());
        prop_assert_eq!(only(&back, &sa), only(&input, &sa));
        prop_assert_eq!(only(&back, &sb), only(&input, &sb));
    }
}

fn vxlan(csum: bool, seed: u64) -> TunnelSpec {
    TunnelSpec {
        outer_v6: false,
        inner_v6: false,
        geneve: None,
        inner_vlan: false,
        tcp_opts: Some(12),
        csum,
        payload: 3 * 1000,
        gso_size: 1000,
        seed,
    }
}

/// The 24-byte header of a coalesced VXLAN super-frame, written out by hand.
#[test]
fn vxlan_superframe_header_bytes() {
    let (sup, segs) = segments(&vxlan(true, 5));
    let (outs, _) = run(cfg(), &segs, Start::Ethernet);
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0].frame, sup);
    let layers = parse(&outs[0].frame, Start::Ethernet).expect("parse");
    let hdr = VnetHdr::from_meta(&outs[0].meta, &layers).to_array(Endian::Little);
    // Outer Ethernet 14, IPv4 20, UDP 8, VXLAN 8, inner Ethernet 14 = 64: inner IPv4 at
    // 64, TCP at 84 with 12 bytes of options (32 bytes), payload at 116.
    let want: [u8; 24] = [
        0x01 | 0x08, // NEEDS_CSUM | UDP_TUNNEL_CSUM
        0x20 | 0x01, // UDP_TUNNEL_IPV4 | TCPV4
        102,
        0, // hdr_len: csum_start + csum_offset + 2
        0xe8,
        0x03, // gso_size 1000
        84,
        0, // csum_start: the inner TCP header
        16,
        0, // csum_offset
        0,
        0, // num_buffers
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0, // hash report
        34,
        0, // outer_th_offset
        64,
        0, // inner_nh_offset
    ];
    assert_eq!(hdr, want);
    // Outer lengths: IPv4 total length and UDP length of the whole.
    let f = &outs[0].frame;
    assert_eq!(
        usize::from(u16::from_be_bytes([f[16], f[17]])),
        f.len() - 14
    );
    assert_eq!(
        usize::from(u16::from_be_bytes([f[38], f[39]])),
        f.len() - 34
    );
    assert_eq!(
        outs[0].meta.csum,
        CsumState::Partial {
            start: 84,
            offset: 16
        }
    );
}

/// Without the outer checksum the super-frame says so and its field is 0.
#[test]
fn vxlan_without_outer_checksum() {
    let (sup, segs) = segments(&vxlan(false, 9));
    let (outs, _) = run(cfg(), &segs, Start::Ethernet);
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0].frame, sup);
    assert_eq!(&outs[0].frame[40..42], &[0, 0]);
    let t = outs[0].meta.gso.and_then(|g| g.tunnel).expect("tunnel");
    assert!(!t.csum);
    assert_eq!(t.inner_nh, 64);
}

fn edited(segs: &[Vec<u8>], i: usize, at: usize, f: impl Fn(&mut u8)) -> Vec<Vec<u8>> {
    let mut s = segs.to_vec();
    f(&mut s[i][at]);
    s
}

/// Fix the outer IPv4 header checksum of segment frame `f` after an edit.
fn fix_outer_ip(f: &mut [u8]) {
    f[24..26].fill(0);
    let c = pvnet_core::csum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

/// What the outer rules keep apart: another VNI, outer checksum on one segment only, an
/// outer ID that does not increment, another outer TTL; and a frame with a broken outer
/// checksum passes without being merged.
#[test]
fn outer_mismatches_are_not_merged() {
    let (_, segs) = segments(&vxlan(false, 3));
    assert_eq!(segs.len(), 3);
    let count = |frames: &[Vec<u8>]| {
        let (outs, _) = run(cfg(), frames, Start::Ethernet);
        outs.len()
    };
    assert_eq!(count(&segs), 1);
    // VNI of the middle segment (the UDP checksum is 0, nothing else to fix).
    assert_eq!(count(&edited(&segs, 1, 48, |b| *b ^= 1)), 3);
    // Outer TTL.
    let mut s = edited(&segs, 1, 22, |b| *b -= 1);
    fix_outer_ip(&mut s[1]);
    assert_eq!(count(&s), 3);
    // Outer ID repeated.
    let mut s = segs.clone();
    let id = [s[0][18], s[0][19]];
    s[1][18..20].copy_from_slice(&id);
    fix_outer_ip(&mut s[1]);
    assert_eq!(count(&s), 3);
    // A broken outer IPv4 checksum passes, counted.
    let s = edited(&segs, 2, 24, |b| *b ^= 0x55);
    let (outs, gro) = run(cfg(), &s, Start::Ethernet);
    assert_eq!(outs.len(), 2);
    assert_eq!(gro.stats().passed(PassCause::BadIpChecksum), 1);
}

/// Outer checksums: one segment with, the others without, is not a flow; a wrong one
/// passes.
#[test]
fn outer_checksum_rules() {
    let (_, segs) = segments(&vxlan(true, 4));
    let mut s = segs.clone();
    s[1][40..42].fill(0);
    let (outs, _) = run(cfg(), &s, Start::Ethernet);
    assert_eq!(outs.len(), 3);
    let s = edited(&segs, 1, 41, |b| *b ^= 0x10);
    let (outs, gro) = run(cfg(), &s, Start::Ethernet);
    assert_eq!(outs.len(), 3);
    assert_eq!(gro.stats().passed(PassCause::BadChecksum), 1);
}

/// With `tunnels` off nothing becomes a tunnel super-frame.
#[test]
fn tunnels_off_makes_no_tunnel_superframe() {
    let (_, segs) = segments(&vxlan(true, 6));
    let (outs, _) = run(GroConfig::default(), &segs, Start::Ethernet);
    assert!(outs
        .iter()
        .all(|o| o.meta.gso.is_none_or(|g| g.tunnel.is_none())));
}

/// A super-frame whose sender set CWR with the ECN bit: the segmenter puts CWR on the
/// first segment only, and GRO makes an ECN tunnel super-frame of them again.
#[test]
fn ecn_tunnel_superframe_round_trip() {
    let spec = vxlan(true, 8);
    let (mut frame, mut hdr) = spec.build();
    frame[usize::from(hdr.csum_start) + 13] = 0x10 | TCP_CWR;
    hdr.gso_type |= pvnet_core::vnet::gso::ECN;
    let v = validate(&hdr, &frame, Start::Ethernet).expect("valid");
    let segs = segment(&frame, &v);
    assert_eq!(segs.len(), 3);
    let (outs, _) = run(cfg(), &segs, Start::Ethernet);
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0].frame, frame);
    let gso = outs[0].meta.gso.expect("super-frame");
    assert!(gso.ecn && gso.tunnel.is_some());
    assert_eq!(resegment(&outs), segs);
}

/// GENEVE options are part of the flow: segments whose options differ are not merged,
/// and a control (O bit) packet is left to the ordinary path.
#[test]
fn geneve_options_and_control_packets() {
    let spec = TunnelSpec {
        geneve: Some(8),
        ..vxlan(false, 12)
    };
    let (sup, segs) = segments(&spec);
    assert_eq!(segs.len(), 3);
    let (outs, _) = run(cfg(), &segs, Start::Ethernet);
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0].frame, sup);
    // Outer Ethernet, IPv4 and UDP: GENEVE at 42, its options at 50..58.
    assert_eq!(count_items(&edited(&segs, 1, 55, |b| *b ^= 0x20)), 3);
    let control = edited(&segs, 0, 43, |b| *b |= 0x80);
    let (outs, _) = run(cfg(), &control, Start::Ethernet);
    assert_eq!(outs.len(), 2);
    assert_eq!(
        outs[0].frame, control[0],
        "a control packet is never merged"
    );
    assert!(outs[0].meta.gso.is_none());
    // The two after it are a flow of their own.
    assert_eq!(outs[1].segments, 2);
    assert!(outs[1].meta.gso.is_some_and(|g| g.tunnel.is_some()));
}

fn count_items(frames: &[Vec<u8>]) -> usize {
    run(cfg(), frames, Start::Ethernet).0.len()
}
