//! The `gso_segment` fuzz body (shared with fuzz/fuzz_targets/gso_segment.rs) run by
//! proptest, so CI exercises it without a fuzzer: once on raw bytes, once on real
//! super-frames with valid-or-mutated headers (raw bytes almost never validate).

mod vnet_frames;

use proptest::prelude::*;
use pvnet_core::offload::gso::fuzz::gso_segment;
use pvnet_core::vnet::{gso, Endian, HdrLen};
use pvnet_core::wire::Start;
use vnet_frames::Spec;

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<bool>(),
        any::<bool>(),
        0usize..3,
        any::<bool>(),
        prop_oneof![Just(None), (0usize..=10).prop_map(|w| Some(w * 4))],
        prop_oneof![1usize..64, 1usize..3000, 1usize..20_000, Just(60_000)],
        prop_oneof![4 => Just(0usize), 1 => 0usize..20],
    )
        .prop_map(|(ipv6, ip_start, vlans, ext, tcp, payload, pad)| {
            let mut s = match (ipv6, tcp) {
                (false, Some(_)) => Spec::tcp4(payload),
                (true, Some(_)) => Spec::tcp6(payload),
                (false, None) => Spec::udp4(payload),
                (true, None) => Spec::udp6(payload),
            };
            if let Some(opts) = tcp {
                s = s.tcp_opts(opts);
            }
            s = if ip_start {
                s.ip_start()
            } else {
                s.vlans(vlans)
            };
            if ipv6 && ext {
                s = s.ext();
            }
            s.padding(pad)
        })
}

/// A super-frame with a header that matches it (any GSO type, so mismatches are covered
/// too), an optional flipped byte anywhere, in one of the four header forms.
fn input() -> impl Strategy<Value = Vec<u8>> {
    (
        spec(),
        prop_oneof![
            Just(gso::TCPV4),
            Just(gso::TCPV6),
            Just(gso::UDP),
            Just(gso::UDP_L4),
            Just(gso::TCPV4 | gso::ECN),
            any::<u8>()
        ],
        prop_oneof![1u16..100, 100u16..3000, Just(1448), any::<u16>()],
        0u8..4,
        prop::option::of((any::<prop::sample::Index>(), any::<u8>())),
    )
        .prop_map(|(s, gso_type, size, form, flip)| {
            let mut f = s.build();
            let hdr = f.gso_hdr(gso_type, size);
            if let Some((i, b)) = flip {
                let i = i.index(f.bytes.len());
                f.bytes[i] ^= b;
            }
            let len = if form & 1 != 0 {
                HdrLen::V12
            } else {
                HdrLen::V10
            };
            let endian = if form & 2 != 0 {
                Endian::Big
            } else {
                Endian::Little
            };
            let mut out = vec![form | if f.start == Start::Ip { 4 } else { 0 }];
            let mut h = [0u8; 12];
            let n = hdr.encode(&mut h, len, endian).expect("12 bytes");
            out.extend_from_slice(&h[..n]);
            out.extend_from_slice(&f.bytes);
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn gso_fuzz_raw_bytes(data in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = gso_segment(&data);
    }

    #[test]
    fn gso_fuzz_structured(data in input()) {
        let _ = gso_segment(&data);
    }
}

/// The structured generator must actually reach segmentation, with several segments.
#[test]
fn gso_fuzz_structured_reaches_segmentation() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let strategy = input();
    let (mut segmented, mut many) = (0, 0);
    for _ in 0..2000 {
        let data = strategy.new_tree(&mut runner).expect("tree").current();
        if let Some(n) = gso_segment(&data) {
            segmented += 1;
            if n > 2 {
                many += 1;
            }
        }
    }
    assert!(
        segmented > 200 && many > 100,
        "segmented {segmented}, many {many}"
    );
}
