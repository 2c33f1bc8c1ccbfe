//! Checksum engine: known vectors, kernel equivalence, scatter-gather, incremental update,
//! pseudo-headers (cross-checked with etherparse).

// Tests live in a module named so that `cargo test -p pvnet-core csum` selects them.
mod csum_tests {
    use etherparse::{TcpHeaderSlice, UdpHeader};
    use proptest::prelude::*;
    use pvnet_core::csum::{self, fold64, Sum};

    /// The definition, as plainly as possible: big-endian 16-bit words, a trailing odd byte is
    /// the high byte of a zero-padded word, end-around carry.
    fn reference_fold(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for (i, b) in data.iter().enumerate() {
            acc += if i % 2 == 0 {
                (*b as u32) << 8
            } else {
                *b as u32
            };
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// Deterministic pseudo-random bytes (xorshift64).
    fn rand_bytes(n: usize, mut seed: u64) -> Vec<u8> {
        seed |= 1;
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn rfc1071_section3_example() {
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold64(csum::sum_slice(&d)), 0xddf2);
        assert_eq!(fold64(csum::scalar_sum(&d)), 0xddf2);
        assert_eq!(csum::checksum(&d), !0xddf2);
        assert_eq!(csum::sum_sg([&d[..3], &d[3..]]).fold(), 0xddf2);
        // RFC 1071 §2(B): byte order independence — the swapped input gives the swapped sum.
        let swapped = [0x01, 0x00, 0x03, 0xf2, 0xf5, 0xf4, 0xf7, 0xf6];
        assert_eq!(fold64(csum::sum_slice(&swapped)), 0xf2dd);
    }

    #[test]
    fn ipv4_header_vectors() {
        // (header with checksum field, checksum value)
        let vectors: [(&[u8], u16); 2] = [
            (
                &[
                    0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0,
                    0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
                ],
                0xb861,
            ),
            (
                &[
                    0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0xb1, 0xe6, 0xac,
                    0x10, 0x0a, 0x63, 0xac, 0x10, 0x0a, 0x0c,
                ],
                0xb1e6,
            ),
        ];
        for (hdr, expect) in vectors {
            // Verification: the sum over a correct header including its checksum is 0xffff.
            assert_eq!(fold64(csum::sum_slice(hdr)), 0xffff);
            let mut zeroed = hdr.to_vec();
            zeroed[10..12].copy_from_slice(&[0, 0]);
            assert_eq!(csum::checksum(&zeroed), expect);
            let h = etherparse::Ipv4HeaderSlice::from_slice(hdr).unwrap();
            assert_eq!(h.to_header().calc_header_checksum(), expect);
        }
    }

    #[test]
    fn fold_edge_cases() {
        assert_eq!(fold64(0), 0);
        assert_eq!(fold64(0xffff), 0xffff);
        assert_eq!(fold64(0x1_0000), 1);
        assert_eq!(fold64(0x1_fffe), 0xffff);
        assert_eq!(fold64(0x1_ffff), 1);
        assert_eq!(fold64(0xffff_ffff), 0xffff);
        assert_eq!(fold64(0x1_0000_0000), 1);
        assert_eq!(fold64(u64::MAX), 0xffff);
        assert_eq!(fold64(u64::MAX - 1), 0xfffe);
        assert_eq!(fold64(0x8000_0000_0000_0000), 0x8000);
        for n in [0usize, 1, 2, 63, 64, 1500, 70_000] {
            let z = vec![0u8; n];
            assert_eq!(fold64(csum::sum_slice(&z)), 0, "zero {n}");
            assert_eq!(csum::checksum(&z), 0xffff, "zero {n}");
            let ff = vec![0xffu8; n];
            assert_eq!(fold64(csum::sum_slice(&ff)), reference_fold(&ff), "ff {n}");
        }
        // A nonzero sum that is a multiple of 0xffff is 0xffff ("negative zero"), not 0.
        assert_eq!(fold64(csum::sum_slice(&[0xff, 0xff])), 0xffff);
        assert_eq!(csum::checksum(&[0xff, 0xff]), 0);
        assert_eq!(fold64(csum::sum_slice(&[0x80, 0x00, 0x7f, 0xff])), 0xffff);
        // Carries: 0xffff + 0x0001 wraps to 0x0001.
        assert_eq!(fold64(csum::sum_slice(&[0xff, 0xff, 0x00, 0x01])), 0x0001);
        assert_eq!(Sum::default().fold(), 0);
        assert_eq!(Sum::new().checksum(), 0xffff);
    }

    #[test]
    fn dispatch_matches_scalar_every_length_and_alignment() {
        let buf = rand_bytes(4096 + 64, 0x5eed);
        for start in 0..64 {
            for len in 0..=4096 {
                let d = &buf[start..start + len];
                let s = fold64(csum::scalar_sum(d));
                assert_eq!(fold64(csum::sum_slice(d)), s, "start {start} len {len}");
                if let Some(v) = csum::simd_sum(d) {
                    assert_eq!(fold64(v), s, "simd start {start} len {len}");
                }
            }
        }
    }

    /// Every length 0..=300 at every start offset 0..8, through every public entry point,
    /// against the definition. Covers each path of the short kernel (below 8 bytes; every
    /// combination of its 64/32/16/8-byte blocks; every tail length of the one-load tail, at
    /// every alignment of that load) and the remainders of the long kernels.
    #[test]
    fn every_short_length_and_offset_matches_reference() {
        let random = rand_bytes(308, 0x64);
        let ff = vec![0xffu8; 308];
        let zero = vec![0u8; 308];
        for (name, buf) in [("random", &random), ("ff", &ff), ("zero", &zero)] {
            for start in 0..8 {
                for len in 0..=300 {
                    let d = &buf[start..start + len];
                    let r = reference_fold(d);
                    let at = format!("{name} start {start} len {len}");
                    assert_eq!(csum::checksum(d), !r, "checksum, {at}");
                    assert_eq!(fold64(csum::sum_slice(d)), r, "sum_slice, {at}");
                    assert_eq!(fold64(csum::scalar_sum(d)), r, "scalar_sum, {at}");
                    if let Some(v) = csum::simd_sum(d) {
                        assert_eq!(fold64(v), r, "simd_sum, {at}");
                    }
                    let mut s = Sum::new();
                    s.add(d);
                    assert_eq!(s.fold(), r, "Sum::add, {at}");
                    // After an odd byte, the slice's bytes pair up the other way round.
                    let mut s = Sum::new();
                    s.add(&[0xa5]);
                    s.add(d);
                    let mut cat = vec![0xa5];
                    cat.extend_from_slice(d);
                    assert_eq!(s.fold(), reference_fold(&cat), "Sum::add after 1, {at}");
                }
            }
        }
    }

    #[test]
    fn scalar_matches_reference() {
        let buf = rand_bytes(2100, 42);
        for start in 0..16 {
            for len in 0..=2048 {
                let d = &buf[start..start + len];
                assert_eq!(
                    fold64(csum::scalar_sum(d)),
                    reference_fold(d),
                    "{start} {len}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn random_lengths_up_to_70000(len in 0usize..=70_000, start in 0usize..64, seed: u64) {
            let buf = rand_bytes(len + start, seed);
            let d = &buf[start..];
            let r = reference_fold(d);
            prop_assert_eq!(fold64(csum::sum_slice(d)), r);
            prop_assert_eq!(fold64(csum::scalar_sum(d)), r);
        }

        #[test]
        fn sg_equals_concatenation(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
            at.push(0);
            at.push(data.len());
            at.sort_unstable();
            let frags: Vec<&[u8]> = at.windows(2).map(|w| &data[w[0]..w[1]]).collect();
            let whole = reference_fold(&data);
            prop_assert_eq!(csum::sum_sg(frags.iter().copied()).fold(), whole);

            // The same fragments summed independently and appended with add_sum.
            let mut acc = Sum::new();
            for f in &frags {
                let mut s = Sum::new();
                s.add(f);
                acc.add_sum(s);
            }
            prop_assert_eq!(acc.fold(), whole);
            prop_assert_eq!(acc.is_odd(), data.len() % 2 == 1);
        }

        #[test]
        fn update16_equals_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 4..2000),
            word in any::<prop::sample::Index>(),
            new: u16,
        ) {
            // Checksum field at offset 0 (computed with it zeroed), edited word elsewhere.
            let words = data.len() / 2;
            let i = 2 * (1 + word.index(words - 1));
            data[0..2].copy_from_slice(&[0, 0]);
            let c = csum::checksum(&data);
            let old = u16::from_be_bytes([data[i], data[i + 1]]);
            data[i..i + 2].copy_from_slice(&new.to_be_bytes());
            let full = csum::checksum(&data);
            let inc = csum::update16(c, old, new);
            // Equal, except for the all-zero corner case where both are one's-complement zero.
            if data.iter().any(|&b| b != 0) {
                prop_assert_eq!(inc, full);
            } else {
                prop_assert!(inc == 0 || inc == 0xffff);
            }
            // Verifying the updated packet: the sum including the field folds to 0xffff.
            data[0..2].copy_from_slice(&inc.to_be_bytes());
            let v = fold64(csum::sum_slice(&data));
            prop_assert!(v == 0xffff || (v == 0 && inc == 0));
        }

        #[test]
        fn update32_equals_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 6..2000),
            word in any::<prop::sample::Index>(),
            new: u32,
        ) {
            let words = data.len() / 2;
            let i = 2 * (1 + word.index(words - 2));
            data[0..2].copy_from_slice(&[0, 0]);
            let c = csum::checksum(&data);
            let old = u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
            data[i..i + 4].copy_from_slice(&new.to_be_bytes());
            let full = csum::checksum(&data);
            let inc = csum::update32(c, old, new);
            if data.iter().any(|&b| b != 0) {
                prop_assert_eq!(inc, full);
            } else {
                prop_assert!(inc == 0 || inc == 0xffff);
            }
        }

        #[test]
        fn pseudo_headers_match_etherparse(
            src in any::<[u8; 16]>(),
            dst in any::<[u8; 16]>(),
            payload in proptest::collection::vec(any::<u8>(), 0..1500),
        ) {
            let mut udp = UdpHeader { source_port: 1, destination_port: 2, length: 0, checksum: 0 };
            udp.length = (8 + payload.len()) as u16;
            let hdr = udp.to_bytes();
            let l4_len = (8 + payload.len()) as u32;

            let v4 = |sum: Sum| {
                let mut s = sum;
                s.add(&hdr);
                s.add(&payload);
                // RFC 768: a computed 0 is transmitted as 0xffff.
                match s.checksum() { 0 => 0xffff, c => c }
            };
            let (s4, d4) = ([src[0], src[1], src[2], src[3]], [dst[0], dst[1], dst[2], dst[3]]);
            let ours = v4(csum::pseudo_header_v4(s4, d4, 17, l4_len));
            prop_assert_eq!(ours, udp.calc_checksum_ipv4_raw(s4, d4, &payload).unwrap());
            let ours6 = v4(csum::pseudo_header_v6(&src, &dst, 17, l4_len));
            prop_assert_eq!(ours6, udp.calc_checksum_ipv6_raw(src, dst, &payload).unwrap());
        }
    }

    /// A TCP SYN (with MSS, SACK-permitted, timestamps, window scale) and 5 bytes of data,
    /// 10.0.0.1:40000 -> 10.0.0.2:80, checksum field filled in.
    const TCP4_SRC: [u8; 4] = [10, 0, 0, 1];
    const TCP4_DST: [u8; 4] = [10, 0, 0, 2];
    #[rustfmt::skip]
    const TCP_SEGMENT: [u8; 45] = [
        0x9c, 0x40, 0x00, 0x50, // ports 40000 -> 80
        0x12, 0x34, 0x56, 0x78, // seq
        0x00, 0x00, 0x00, 0x00, // ack
        0xa0, 0x02, 0xfa, 0xf0, // data offset 10 (40 bytes), SYN, window 64240
        0x00, 0x00, 0x00, 0x00, // checksum (filled in by the tests), urgent pointer
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        0x04, 0x02, 0x08, 0x0a, // SACK permitted, timestamps
        0x00, 0x01, 0x02, 0x03, // TSval
        0x00, 0x00, 0x00, 0x00, // TSecr
        0x01, 0x03, 0x03, 0x07, // NOP, window scale 7
        b'h', b'e', b'l', b'l', b'o', // odd-length payload
    ];

    fn tcp_checksum(pseudo: Sum, seg: &[u8]) -> u16 {
        let mut s = pseudo;
        s.add(seg);
        s.checksum()
    }

    #[test]
    fn tcp_ipv4_segment() {
        let len = TCP_SEGMENT.len() as u32;
        let pseudo = csum::pseudo_header_v4(TCP4_SRC, TCP4_DST, 6, len);
        // Pseudo-header by hand: 0a00 + 0001 + 0a00 + 0002 + 0006 + 002d.
        assert_eq!(
            pseudo.fold(),
            0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 0x0006 + 0x002d
        );
        let c = tcp_checksum(pseudo, &TCP_SEGMENT);
        let hdr = TcpHeaderSlice::from_slice(&TCP_SEGMENT[..40]).unwrap();
        assert_eq!(
            c,
            hdr.calc_checksum_ipv4_raw(TCP4_SRC, TCP4_DST, &TCP_SEGMENT[40..])
                .unwrap()
        );
        // Also computed independently (Python one-liner over pseudo-header + segment).
        assert_eq!(c, 0xedf4);

        // Receiver side: pseudo-header + segment with the checksum in place verifies to 0xffff,
        // also when the segment arrives as odd-length scatter-gather fragments.
        let mut seg = TCP_SEGMENT;
        seg[16..18].copy_from_slice(&c.to_be_bytes());
        let mut s = pseudo;
        s.add_sum(csum::sum_sg([
            &seg[..7],
            &seg[7..20],
            &seg[20..41],
            &seg[41..],
        ]));
        assert_eq!(s.fold(), 0xffff);
    }

    #[test]
    fn tcp_ipv6_segment() {
        let src: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let len = TCP_SEGMENT.len() as u32;
        let pseudo = csum::pseudo_header_v6(&src, &dst, 6, len);
        // 2001 + 0db8 + 0001 + 2001 + 0db8 + 0002 + 002d (length) + 0006 (next header).
        assert_eq!(
            pseudo.fold(),
            0x2001 + 0x0db8 + 0x0001 + 0x2001 + 0x0db8 + 0x0002 + 0x002d + 0x0006
        );
        let c = tcp_checksum(pseudo, &TCP_SEGMENT);
        let hdr = TcpHeaderSlice::from_slice(&TCP_SEGMENT[..40]).unwrap();
        assert_eq!(
            c,
            hdr.calc_checksum_ipv6_raw(src, dst, &TCP_SEGMENT[40..])
                .unwrap()
        );
        let mut seg = TCP_SEGMENT;
        seg[16..18].copy_from_slice(&c.to_be_bytes());
        let mut s = pseudo;
        s.add(&seg);
        assert_eq!(s.fold(), 0xffff);
    }

    #[test]
    fn add_u16_is_position_independent() {
        // An odd-length payload sum plus a pseudo-header mixed in as a folded word equals the
        // pseudo-header-first order.
        let payload = rand_bytes(101, 9);
        let pseudo = csum::pseudo_header_v4([192, 168, 0, 1], [192, 168, 0, 2], 17, 101);
        let mut a = pseudo;
        a.add(&payload);
        let mut b = Sum::new();
        b.add(&payload);
        b.add_u16(pseudo.fold());
        assert_eq!(a.fold(), b.fold());
    }

    #[test]
    fn implementation_name() {
        let name = csum::implementation();
        assert!(name == "avx2" || name == "scalar");
        assert_eq!(csum::simd_sum(&[1, 2]).is_some(), name != "scalar");
    }
}
