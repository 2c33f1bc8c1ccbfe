//! UDP tunnel segmentation (VXLAN, GENEVE): every combination of outer and inner family,
//! tunnel, inner protocol and outer checksum variant, checked against the RFC arithmetic
//! ([`check_tunnel_segments`]); the frame in pieces gives the same bytes as the linear one;
//! and the fuzz body run by proptest.

use proptest::prelude::*;
use pvnet_core::frame::{CsumState, Frame, OffloadMeta};
use pvnet_core::offload::gso::fuzz::{
    check_tunnel_segments, gso_tunnel, tunnel_segments, TunnelSpec,
};
use pvnet_core::offload::gso::{CsumMode, GsoOptions, SegmentBuf, Segmenter};
use pvnet_core::vnet::validate;
use pvnet_core::wire::Start;

fn specs() -> Vec<TunnelSpec> {
    let mut out = Vec::new();
    let mut seed = 1u64;
    for outer_v6 in [false, true] {
        for inner_v6 in [false, true] {
            for geneve in [None, Some(0), Some(12), Some(128)] {
                for tcp_opts in [Some(0), Some(12), None] {
                    for csum in [false, true] {
                        seed += 1;
                        out.push(TunnelSpec {
                            outer_v6,
                            inner_v6,
                            geneve,
                            inner_vlan: seed % 3 == 0,
                            tcp_opts,
                            csum,
                            payload: 1 + (seed as usize * 7919) % 30_000,
                            gso_size: [1398, 1448, 536, 8000][seed as usize % 4],
                            seed,
                        });
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_shape_segments_by_the_rules() {
    let mut checked = 0;
    for spec in specs() {
        let (frame, hdr) = spec.build();
        let v = validate(&hdr, &frame, Start::Ethernet).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
        let Some(gso) = v.meta().gso else {
            // A payload that fits one segment is not a super-frame.
            assert!(spec.payload <= usize::from(spec.gso_size), "{spec:?}");
            continue;
        };
        assert!(gso.tunnel.is_some());
        for mode in [CsumMode::Full, CsumMode::Partial] {
            for batch in [1, 3, 64] {
                let segs = tunnel_segments(&frame, &v, mode, batch)
                    .unwrap_or_else(|e| panic!("{spec:?}: {e}"));
                let want = spec.payload.div_ceil(usize::from(spec.gso_size));
                assert_eq!(segs.len(), want, "{spec:?}");
                check_tunnel_segments(&frame, &v, mode, &segs);
                checked += 1;
            }
        }
    }
    assert!(checked > 300, "only {checked} cases checked");
}

/// A tunnel super-frame on a tun device starts at its outer IP header: the same rules,
/// the offsets 14 bytes smaller.
#[test]
fn from_the_outer_ip_header() {
    let mut checked = 0;
    for spec in specs().into_iter().step_by(3) {
        let (eth, hdr) = spec.build();
        let frame = &eth[14..];
        let mut h = hdr;
        h.hdr_len -= 14;
        h.csum_start -= 14;
        let mut t = h.tunnel.expect("24 bytes");
        t.outer_th_offset -= 14;
        t.inner_nh_offset -= 14;
        h.tunnel = Some(t);
        let v = validate(&h, frame, Start::Ip).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
        let Some(gso) = v.meta().gso else {
            continue;
        };
        assert_eq!(gso.tunnel.map(|t| t.inner_nh), Some(t.inner_nh_offset));
        for mode in [CsumMode::Full, CsumMode::Partial] {
            let segs = tunnel_segments(frame, &v, mode, 8).expect("segments");
            check_tunnel_segments(frame, &v, mode, &segs);
            // The same bytes as from the Ethernet frame, less its Ethernet header.
            let ve = validate(&hdr, &eth, Start::Ethernet).expect("valid");
            let with_eth = tunnel_segments(&eth, &ve, mode, 8).expect("segments");
            for ((a, ca), (b, cb)) in segs.iter().zip(&with_eth) {
                assert_eq!(a[..], b[14..], "{spec:?}");
                let shift = |c: &CsumState| match *c {
                    CsumState::Partial { start, offset } => CsumState::Partial {
                        start: start + 14,
                        offset,
                    },
                    c => c,
                };
                assert_eq!(shift(ca), *cb);
            }
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} cases");
}

/// The same super-frame with its payload in pieces (a gathered frame, a guest's chain)
/// gives the same segments as in one buffer.
#[test]
fn pieces_give_the_same_bytes() {
    for spec in specs().into_iter().step_by(5) {
        let (frame, hdr) = spec.build();
        let v = validate(&hdr, &frame, Start::Ethernet).expect("valid");
        if v.meta().gso.is_none() {
            continue;
        }
        let hdr_end = usize::from(hdr.hdr_len);
        let rest = &frame[hdr_end..];
        let cut = rest.len() / 3;
        let pieces: [&[u8]; 3] = [&rest[..cut], &rest[cut..2 * cut], &rest[2 * cut..]];
        let gathered = Frame::new(&frame[..hdr_end], &pieces, OffloadMeta::default());
        for mode in [CsumMode::Full, CsumMode::Partial] {
            let linear = tunnel_segments(&frame, &v, mode, 64).expect("segments");
            let opts = GsoOptions {
                csum: mode,
                ..GsoOptions::default()
            };
            let mut seg = Segmenter::new(&gathered, &v, opts).expect("segmenter");
            let mut buf = SegmentBuf::with_capacity(4);
            let mut got: Vec<(Vec<u8>, CsumState)> = Vec::new();
            while !seg.is_done() {
                for s in seg.next_batch(&mut buf).iter() {
                    let mut line = Vec::new();
                    s.copy_to(&mut line);
                    got.push((line, s.meta.csum));
                }
            }
            assert_eq!(got, linear, "{spec:?} {mode:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The `gso_tunnel` fuzz body on structured inputs.
    #[test]
    fn gso_tunnel_fuzz_body(
        shape in any::<u8>(),
        opts in any::<u8>(),
        payload in prop_oneof![1u16..200, 1u16..20_000, 30_000u16..62_000],
        size in prop_oneof![Just(1398u16), 1u16..3000, any::<u16>()],
        poke in prop_oneof![4 => Just((255u8, 0u8)), 1 => (0u8..24, any::<u8>())],
        seed in any::<u64>(),
    ) {
        let mut data = vec![shape, opts];
        data.extend_from_slice(&payload.to_be_bytes());
        data.extend_from_slice(&size.to_be_bytes());
        data.extend_from_slice(&[poke.0, poke.1]);
        data.extend_from_slice(&seed.to_le_bytes());
        let _ = gso_tunnel(&data);
    }
}

/// A tunnel super-frame as the raw fuzz input of `vnet_validate` and `gso_segment`
/// (selector bit 3: a 24-byte header), its header valid or with one byte changed.
fn raw_input() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u8>(),
        any::<u8>(),
        prop_oneof![1usize..3000, 1usize..40_000],
        prop_oneof![Just(1398u16), 1u16..3000],
        prop::option::weighted(0.25, (0usize..24, any::<u8>())),
        any::<u64>(),
    )
        .prop_map(|(shape, opts, payload, gso_size, poke, seed)| {
            let spec = TunnelSpec {
                outer_v6: shape & 1 != 0,
                inner_v6: shape & 2 != 0,
                geneve: (shape & 4 != 0).then_some(usize::from(opts & 0x1f) * 4),
                inner_vlan: shape & 8 != 0,
                tcp_opts: (shape & 16 == 0).then_some(usize::from(opts >> 5) * 4),
                csum: shape & 32 != 0,
                payload,
                gso_size,
                seed,
            };
            let (frame, hdr) = spec.build();
            let mut wire = hdr.to_array(pvnet_core::vnet::Endian::Little);
            if let Some((at, b)) = poke {
                wire[at] = b;
            }
            let mut data = vec![8u8];
            data.extend_from_slice(&wire);
            data.extend_from_slice(&frame);
            data
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The header codec, validation and its inverse on tunnel super-frames: the
    /// `vnet_validate` fuzz body; then `gso_segment`, which hands them to the tunnel checks.
    #[test]
    fn vnet_and_gso_fuzz_bodies_on_tunnel_frames(data in raw_input()) {
        let v = pvnet_core::vnet::fuzz::vnet_validate(&data);
        let made = pvnet_core::offload::gso::fuzz::gso_segment(&data);
        if v.and_then(|v| v.meta().gso).is_some() {
            prop_assert!(made.is_some());
        }
    }
}

#[test]
fn gso_tunnel_fuzz_body_edges() {
    assert_eq!(gso_tunnel(&[]), None);
    assert_eq!(gso_tunnel(&[0; 7]), None);
    // VXLAN over IPv4, inner TCPv4, 3000 bytes at 1000 per segment: 3 segments.
    let data = [0u8, 0, 0x0b, 0xb8, 0x03, 0xe8, 0xff, 0, 1, 2, 3];
    assert_eq!(gso_tunnel(&data), Some(3));
}

/// Every seed of the `gso_tunnel` fuzz target is a tunnel super-frame the body segments.
#[test]
fn gso_tunnel_seeds_are_super_frames() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/gso_tunnel");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/seeds/gso_tunnel") {
        let path = entry.expect("seed").path();
        let data = std::fs::read(&path).expect("read seed");
        let segs = gso_tunnel(&data);
        assert!(segs.is_some_and(|s| s > 1), "{}: {segs:?}", path.display());
        n += 1;
    }
    assert!(n >= 6, "{n} seeds");
}
