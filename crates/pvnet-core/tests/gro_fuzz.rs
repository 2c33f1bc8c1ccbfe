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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

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
