//! The `vnet_validate` fuzz body (shared with fuzz/fuzz_targets/vnet_validate.rs) run by
//! proptest, so CI exercises it without a fuzzer: once on raw bytes, once on real frames with
//! plausible-but-hostile headers (raw bytes almost never parse as a frame).

mod vnet_frames;

use proptest::prelude::*;
use pvnet_core::vnet::fuzz::vnet_validate;
use pvnet_core::vnet::{Endian, HdrLen, VnetHdr};
use pvnet_core::wire::Start;
use vnet_frames::Spec;

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<bool>(),
        any::<bool>(),
        0usize..3,
        any::<bool>(),
        prop_oneof![Just(None), (0usize..=10).prop_map(|w| Some(w * 4))],
        prop_oneof![0usize..64, 0usize..3000, Just(6400), Just(6401)],
        any::<bool>(),
        prop_oneof![Just(0usize), 0usize..20],
    )
        .prop_map(|(ipv6, ip_start, vlans, ext, tcp, payload, frag, pad)| {
            let mut s = match (ipv6, tcp) {
                (false, Some(_)) => Spec::tcp4(payload),
                (true, Some(_)) => Spec::tcp6(payload),
                (false, None) => Spec::udp4(payload),
                (true, None) => Spec::udp6(payload),
            };
            if let Some(opts) = tcp {
                s = s.tcp_opts(opts);
            }
            if ip_start {
                s = s.ip_start();
            } else {
                s = s.vlans(vlans);
            }
            if ipv6 && ext {
                s = s.ext();
            }
            if !ipv6 && frag {
                s = s.fragment();
            }
            s.padding(pad)
        })
}

/// Header fields near the values that matter, with some fully random ones mixed in.
fn header(l4: u16, payload: u16, len: u16) -> impl Strategy<Value = VnetHdr> {
    (
        prop_oneof![Just(0u8), Just(1), Just(2), Just(3), any::<u8>()],
        prop_oneof![
            Just(0u8),
            Just(1),
            Just(3),
            Just(4),
            Just(5),
            Just(0x81),
            Just(0x84),
            Just(0x85),
            any::<u8>()
        ],
        prop_oneof![
            Just(0u16),
            Just(payload),
            0..=len.saturating_add(2),
            any::<u16>()
        ],
        prop_oneof![
            Just(0u16),
            Just(100),
            Just(1448),
            Just(0xffff),
            1u16..3000,
            any::<u16>()
        ],
        prop_oneof![
            Just(l4),
            l4.saturating_sub(8)..=l4.saturating_add(8),
            0..=len,
            any::<u16>()
        ],
        prop_oneof![Just(6u16), Just(16), 0u16..64, any::<u16>()],
        any::<u16>(),
    )
        .prop_map(
            |(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers)| VnetHdr {
                flags,
                gso_type,
                hdr_len,
                gso_size,
                csum_start,
                csum_offset,
                num_buffers,
                tunnel: None,
            },
        )
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    (
        spec(),
        0u8..4,
        prop::option::of((any::<prop::sample::Index>(), any::<u8>())),
    )
        .prop_flat_map(|(s, form, flip)| {
            let f = s.build();
            let hdr = header(f.l4 as u16, f.payload as u16, f.len() as u16);
            (Just(f), Just(form), Just(flip), hdr)
        })
        .prop_map(|(mut f, form, flip, hdr)| {
            if let Some((i, b)) = flip {
                let i = i.index(f.bytes.len());
                f.bytes[i] ^= b;
            }
            fuzz_input(form, &hdr, &f)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn vnet_fuzz_raw_bytes(data in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = vnet_validate(&data);
    }

    #[test]
    fn vnet_fuzz_structured(data in input()) {
        let _ = vnet_validate(&data);
    }
}

/// The structured generator is only useful if it reaches every outcome: rejections, plain
/// accepted packets and accepted super-frames of every kind.
#[test]
fn vnet_fuzz_structured_reaches_acceptance() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use pvnet_core::frame::GsoKind;

    let mut runner = TestRunner::deterministic();
    let strategy = input();
    let (mut rejected, mut plain) = (0, 0);
    let mut kinds = Vec::new();
    for _ in 0..5000 {
        let data = strategy.new_tree(&mut runner).unwrap().current();
        match vnet_validate(&data) {
            None => rejected += 1,
            Some(v) => match v.meta().gso {
                None => plain += 1,
                Some(g) => kinds.push(g.kind),
            },
        }
    }
    assert!(
        rejected > 500 && plain > 100,
        "rejected {rejected}, plain {plain}"
    );
    for k in [GsoKind::Tcpv4, GsoKind::Tcpv6, GsoKind::Ufo, GsoKind::UdpL4] {
        assert!(kinds.contains(&k), "no accepted {k:?} super-frame");
    }
}

#[test]
fn vnet_fuzz_edge_inputs() {
    assert!(vnet_validate(&[]).is_none());
    assert!(vnet_validate(&[0]).is_none());
    assert!(vnet_validate(&[1; 11]).is_none());
    assert!(vnet_validate(&[7; 13]).is_none());
}

/// Fuzz input for `hdr` + `frame` in the form selected by `form` (bits 0-1 of the selector).
fn fuzz_input(form: u8, hdr: &VnetHdr, f: &vnet_frames::Frame) -> Vec<u8> {
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
    let n = hdr.encode(&mut h, len, endian).unwrap();
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(&f.bytes);
    out
}

/// Seeds for the fuzzer: one accepted input per offload shape. Regenerate with
/// `VNET_FUZZ_SEEDS=$PWD/fuzz/seeds/vnet_validate cargo test -p pvnet-core --test vnet_fuzz
/// -- --ignored vnet_fuzz_write_seeds`.
#[test]
#[ignore = "writes files; run by hand to regenerate fuzz/seeds"]
fn vnet_fuzz_write_seeds() {
    use pvnet_core::vnet::gso;
    let dir = std::env::var("VNET_FUZZ_SEEDS").expect("VNET_FUZZ_SEEDS=<dir>");
    let seeds = [
        ("tso4", 0, Spec::tcp4(400).build(), gso::TCPV4, 128),
        (
            "tso4_ecn_opts_v12",
            1,
            Spec::tcp4(400).tcp_opts(12).build(),
            gso::TCPV4 | gso::ECN,
            128,
        ),
        (
            "tso6_ext_be",
            2,
            Spec::tcp6(400).ext().build(),
            gso::TCPV6,
            128,
        ),
        (
            "tso6_tun",
            0,
            Spec::tcp6(400).ip_start().build(),
            gso::TCPV6,
            128,
        ),
        (
            "tso4_qinq",
            3,
            Spec::tcp4(400).vlans(2).build(),
            gso::TCPV4,
            128,
        ),
        ("uso4", 0, Spec::udp4(400).build(), gso::UDP_L4, 128),
        (
            "uso6_tun_v12",
            1,
            Spec::udp6(400).ip_start().build(),
            gso::UDP_L4,
            128,
        ),
        ("ufo4", 0, Spec::udp4(400).build(), gso::UDP, 128),
        (
            "csum_udp4_padded",
            0,
            Spec::udp4(4).padding(14).build(),
            gso::NONE,
            0,
        ),
    ];
    std::fs::create_dir_all(&dir).unwrap();
    for (name, form, f, t, size) in seeds {
        let mut h = f.gso_hdr(t, size);
        if t == gso::NONE {
            h = f.csum_hdr();
        }
        let data = fuzz_input(form, &h, &f);
        assert!(vnet_validate(&data).is_some(), "seed {name} rejected");
        std::fs::write(format!("{dir}/{name}"), data).unwrap();
    }
}
