//! The `gro_batch` fuzz body (shared with fuzz/fuzz_targets/gro_batch.rs) run by proptest,
//! so CI exercises it without a fuzzer: on raw bytes, and on interleaved flows of valid
//! frames (raw bytes almost never parse) with bytes overwritten and frames cut.

#[path = "gro_util.rs"]
mod util;

use proptest::prelude::*;
use pvnet_core::offload::gro::fuzz::{gro_batch, join, split};
use util::*;

/// Frames of a few TCP and UDP flows, over IPv4 or IPv6, interleaved.
fn flows() -> impl Strategy<Value = (bool, Vec<Vec<u8>>)> {
    (
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec((1usize..12, 1usize..1500, any::<u32>()), 1..4),
    )
        .prop_map(|(v6, ethernet, flows)| {
            let mut per_flow: Vec<Vec<Vec<u8>>> = Vec::new();
            for (k, (count, size, seq)) in flows.into_iter().enumerate() {
                let mut frames = Vec::new();
                for i in 0..count {
                    let mut f = if k % 2 == 0 {
                        Frame::tcp(v6, seq.wrapping_add((i * size) as u32), size)
                    } else {
                        Frame::udp(v6, pattern(i * size, size))
                    };
                    f.ethernet = ethernet;
                    f.sport = 4000 + k as u16;
                    f.id = i as u16;
                    frames.push(f.build());
                }
                per_flow.push(frames);
            }
            let mut out = Vec::new();
            let longest = per_flow.iter().map(Vec::len).max().unwrap_or(0);
            for i in 0..longest {
                for flow in &per_flow {
                    if let Some(f) = flow.get(i) {
                        out.push(f.clone());
                    }
                }
            }
            (ethernet, out)
        })
}

#[test]
fn split_and_join_are_inverse() {
    let frames = vec![vec![1u8, 2, 3], vec![], vec![9u8; 300]];
    let data = join(0b1011, &frames);
    let (cfg, start, got) = split(&data).expect("input");
    assert_eq!(got, frames.iter().map(Vec::as_slice).collect::<Vec<_>>());
    assert_eq!(start, pvnet_core::wire::Start::Ip);
    assert_eq!(
        (cfg.max_flows, cfg.verify_checksums, cfg.udp),
        (2, false, true)
    );
}

#[test]
fn valid_flows_coalesce() {
    let frames: Vec<Vec<u8>> = (0..6u32)
        .map(|i| Frame::tcp(false, 1 + i * 1000, 1000).build())
        .collect();
    // One super-frame out of six frames.
    assert_eq!(gro_batch(&join(0, &frames)), Some(1));
}

#[test]
fn valid_tunnel_flow_coalesces() {
    let frames = proptest::strategy::ValueTree::current(
        &tunnel_flows()
            .new_tree(&mut proptest::test_runner::TestRunner::deterministic())
            .expect("tree"),
    );
    let many = frames.len();
    let n = gro_batch(&join(0x20, &frames)).expect("input");
    assert!(n <= many);
    // One GENEVE flow of six segments: one tunnel super-frame.
    let segs = tunnel_segments(&geneve_spec());
    assert_eq!(segs.len(), 6);
    assert_eq!(gro_batch(&join(0x20, &segs)), Some(1));
}

fn geneve_spec() -> pvnet_core::offload::gso::fuzz::TunnelSpec {
    pvnet_core::offload::gso::fuzz::TunnelSpec {
        outer_v6: false,
        inner_v6: true,
        geneve: Some(8),
        inner_vlan: false,
        tcp_opts: Some(12),
        csum: true,
        payload: 6000,
        gso_size: 1000,
        seed: 1,
    }
}

/// The segments the tunnel segmenter cuts from `spec`'s super-frame (ACK only, so that
/// they form one flow), checksums complete.
fn tunnel_segments(spec: &pvnet_core::offload::gso::fuzz::TunnelSpec) -> Vec<Vec<u8>> {
    use pvnet_core::offload::gso::{segment_linear, CsumMode, GsoOptions, SegmentBuf};
    let (mut frame, hdr) = spec.build();
    if spec.tcp_opts.is_some() {
        frame[usize::from(hdr.csum_start) + 13] = 0x10;
    }
    let v =
        pvnet_core::vnet::validate(&hdr, &frame, pvnet_core::wire::Start::Ethernet).expect("valid");
    let mut segs = Vec::new();
    let opts = GsoOptions {
        csum: CsumMode::Full,
        ..GsoOptions::default()
    };
    segment_linear(
        &frame,
        &v,
        opts,
        &mut SegmentBuf::with_capacity(8),
        &mut Vec::new(),
        |s, _| segs.push(s.to_vec()),
    )
    .expect("segments");
    segs
}

/// The tunnel seeds of fuzz/seeds/gro_batch (`tunnel_*`): VXLAN and GENEVE flows with
/// the tunnel bit set, each flow coalescing into one super-frame.
fn tunnel_seeds() -> Vec<(&'static str, Vec<u8>, usize)> {
    use pvnet_core::offload::gso::fuzz::TunnelSpec;
    let vxlan = TunnelSpec {
        outer_v6: true,
        inner_v6: false,
        geneve: None,
        csum: false,
        seed: 2,
        ..geneve_spec()
    };
    let a = tunnel_segments(&geneve_spec());
    let b = tunnel_segments(&vxlan);
    let both: Vec<Vec<u8>> = a
        .iter()
        .zip(&b)
        .flat_map(|(x, y)| [x.clone(), y.clone()])
        .collect();
    vec![
        ("tunnel_geneve", join(0x20, &a), 1),
        // Selector: tunnels on, room for 2 flows.
        ("tunnel_vxlan6_geneve_2flows", join(0x22, &both), 2),
    ]
}

#[test]
fn tunnel_seeds_coalesce() {
    for (name, data, items) in tunnel_seeds() {
        assert_eq!(gro_batch(&data), Some(items), "{name}");
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/gro_batch");
        let stored = std::fs::read(dir.join(name)).expect("the seed is in fuzz/seeds/gro_batch");
        assert_eq!(stored, data, "{name}: stored seed differs; regenerate it");
    }
}

/// Regenerate the tunnel seeds with `GRO_FUZZ_SEEDS=$PWD/fuzz/seeds/gro_batch cargo test
/// -p pvnet-core --test gro_fuzz -- --ignored gro_fuzz_write_tunnel_seeds`.
#[test]
#[ignore = "writes files; run by hand to regenerate fuzz/seeds"]
fn gro_fuzz_write_tunnel_seeds() {
    let dir = std::env::var("GRO_FUZZ_SEEDS").expect("GRO_FUZZ_SEEDS=<dir>");
    for (name, data, _) in tunnel_seeds() {
        std::fs::write(std::path::Path::new(&dir).join(name), data).expect("write seed");
    }
}

/// Segments of a few VXLAN and GENEVE flows (the tunnel segmenter's, from random
/// super-frames), interleaved.
fn tunnel_flows() -> impl Strategy<Value = Vec<Vec<u8>>> {
    use pvnet_core::offload::gso::fuzz::TunnelSpec;
    use pvnet_core::offload::gso::{segment_linear, CsumMode, GsoOptions, SegmentBuf};
    use pvnet_core::vnet::validate;
    use pvnet_core::wire::Start;
    proptest::collection::vec(
        (
            any::<[bool; 5]>(),
            prop_oneof![Just(None), (0usize..8).prop_map(|w| Some(w * 4))],
            200u16..1500,
            1usize..6000,
            any::<u64>(),
        ),
        1..4,
    )
    .prop_map(|flows| {
        let mut per_flow = Vec::new();
        for (b, geneve, gso_size, payload, seed) in flows {
            let spec = TunnelSpec {
                outer_v6: b[0],
                inner_v6: b[1],
                geneve,
                inner_vlan: b[2],
                tcp_opts: b[3].then_some(12),
                csum: b[4],
                payload,
                gso_size,
                seed,
            };
            let (frame, hdr) = spec.build();
            let Ok(v) = validate(&hdr, &frame, Start::Ethernet) else {
                continue;
            };
            let opts = GsoOptions {
                csum: CsumMode::Full,
                ..GsoOptions::default()
            };
            let (mut buf, mut line, mut segs) = (SegmentBuf::with_capacity(8), Vec::new(), vec![]);
            let r = segment_linear(&frame, &v, opts, &mut buf, &mut line, |s, _| {
                segs.push(s.to_vec())
            });
            match r {
                Ok(_) => per_flow.push(segs),
                // A super-frame of one segment is no super-frame.
                Err(_) => per_flow.push(vec![frame]),
            }
        }
        let mut out = Vec::new();
        let longest = per_flow.iter().map(Vec::len).max().unwrap_or(0);
        for i in 0..longest {
            for flow in &per_flow {
                if let Some(f) = flow.get(i) {
                    out.push(f.clone());
                }
            }
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn damaged_tunnel_flows(
        frames in tunnel_flows(),
        selector in any::<u8>(),
        hurt in damages(8),
    ) {
        let mut frames = frames;
        damage(&mut frames, &hurt);
        // Ethernet frames, tunnels coalesced.
        let selector = (selector & !1) | 0x20;
        prop_assert!(gro_batch(&join(selector, &frames)).is_some());
    }

    #[test]
    fn raw_bytes(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = gro_batch(&data);
    }

    #[test]
    fn damaged_flows(
        (ethernet, frames) in flows(),
        selector in any::<u8>(),
        hurt in damages(8),
    ) {
        let mut frames = frames;
        damage(&mut frames, &hurt);
        // The start bit of the selector says where the frames start.
        let selector = (selector & !1) | u8::from(!ethernet);
        prop_assert!(gro_batch(&join(selector, &frames)).is_some());
    }
}
