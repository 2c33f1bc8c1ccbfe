//! The `overlay_decap` fuzz body (shared with fuzz/fuzz_targets/overlay_decap.rs) run by
//! proptest: on raw bytes, and on well-formed VXLAN and GENEVE datagrams with one field
//! made to lie (raw bytes rarely get past the tunnel header).

use proptest::prelude::*;
use pvnet_core::overlay::fuzz::decap_body;
use pvnet_core::overlay::{decap, DecapError, Encap, Vni};

/// VNI bytes for the body, then the tunnel header, options, and an inner Ethernet +
/// IPv4 frame of `ip_have` IP bytes whose length field says `ip_len`.
fn datagram(geneve: bool, opt_words: &[u8], ip_len: u16, ip_have: usize) -> Vec<u8> {
    let mut d = vec![0, 0, 42];
    if geneve {
        let opts: usize = opt_words.iter().map(|w| 1 + usize::from(*w)).sum();
        d.extend_from_slice(&[
            u8::try_from(opts).unwrap_or(63) & 0x3f,
            0,
            0x65,
            0x58,
            0,
            0,
            42,
            0,
        ]);
        for &w in opt_words {
            d.extend_from_slice(&[0, 1, 2, w & 0x1f]);
            d.extend(std::iter::repeat_n(0xa5u8, usize::from(w) * 4));
        }
    } else {
        d.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 42, 0]);
    }
    let mut inner = vec![0u8; 14 + ip_have];
    inner[12..14].copy_from_slice(&[0x08, 0x00]);
    if ip_have >= 4 {
        inner[14] = 0x45;
        inner[16..18].copy_from_slice(&ip_len.to_be_bytes());
    }
    d.extend_from_slice(&inner);
    d
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn raw_bytes(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        decap_body(&data);
    }

    #[test]
    fn well_formed_datagrams_are_taken(
        geneve in any::<bool>(),
        opts in proptest::collection::vec(0u8..4, 0..4),
        ip_have in 20usize..200,
        pad in 0usize..20,
    ) {
        let ip_len = u16::try_from(ip_have - pad.min(ip_have - 20)).unwrap();
        let d = datagram(geneve, &opts, ip_len, ip_have);
        prop_assert!(decap_body(&d) >= 1);
        let encap = if geneve { Encap::Geneve } else { Encap::Vxlan };
        let off = decap(encap, Vni::new(42).unwrap(), &d[3..]).unwrap();
        prop_assert_eq!(d.len() - 3 - off, 14 + ip_have);
    }

    #[test]
    fn lying_datagrams_are_refused(
        geneve in any::<bool>(),
        opts in proptest::collection::vec(0u8..4, 1..4),
        extra in 1u16..2000,
        cut in 0usize..60,
        which in 0u8..3,
    ) {
        let encap = if geneve { Encap::Geneve } else { Encap::Vxlan };
        let vni = Vni::new(42).unwrap();
        let mut d = datagram(geneve, &opts, 40, 40);
        match which {
            // The inner IP packet claims more than is there.
            0 => {
                let at = d.len() - 40 + 2;
                d[at..at + 2].copy_from_slice(&(40 + extra).to_be_bytes());
                let r = decap(encap, vni, &d[3..]);
                prop_assert!(matches!(r, Err(DecapError::InnerTooLong { .. })), "{:?}", r);
            }
            // Cut inside the tunnel header or its options.
            1 => {
                let hdr = if geneve { 8 + opts.iter().map(|w| 4 + 4 * usize::from(*w)).sum::<usize>() } else { 8 };
                let keep = cut % hdr;
                let r = decap(encap, vni, &d[3..3 + keep]);
                prop_assert!(matches!(r, Err(DecapError::Truncated { .. })), "{:?}", r);
            }
            // A GENEVE option claims more words than Opt Len leaves it (VXLAN: wrong VNI).
            _ => {
                if geneve {
                    // The last option's length byte.
                    let last = opts.iter().take(opts.len() - 1).map(|w| 4 + 4 * usize::from(*w)).sum::<usize>();
                    let at = 3 + 8 + last + 3;
                    d[at] = d[at].wrapping_add(1 + (extra % 8) as u8) & 0x1f;
                    let r = decap(encap, vni, &d[3..]);
                    prop_assert!(matches!(r, Err(DecapError::GeneveOptionLength(_))), "{:?}", r);
                } else {
                    d[3 + 6] = 43;
                    let r = decap(encap, vni, &d[3..]);
                    prop_assert_eq!(r, Err(DecapError::WrongVni { got: 43, want: 42 }));
                }
            }
        }
        decap_body(&d);
    }
}
