//! virtio_net_hdr validation against real frames: one test per rejection cause, named after
//! it, then the accepted shapes and the from_meta round trip.

mod vnet_frames;

/// Test paths read `vnet::<cause>` so that `cargo test -p pvnet-core vnet` selects them.
mod vnet {

    use crate::vnet_frames::{arp, Frame, Spec};
    use pvnet_core::frame::{CsumState, Gso, GsoKind, OffloadMeta};
    use pvnet_core::vnet::{
        flags, gso, validate, validate_gso, Validated, VnetError, VnetHdr, USO_MAX_SEGMENTS,
    };
    use pvnet_core::wire::{Layer, Start, L3, L4};

    fn check(h: &VnetHdr, f: &Frame) -> Result<Validated, VnetError> {
        validate(h, &f.bytes, f.start)
    }

    fn accept(h: &VnetHdr, f: &Frame) -> Validated {
        match check(h, f) {
            Ok(v) => {
                round_trip(&v, f);
                v
            }
            Err(e) => panic!("rejected {h:?}: {e}"),
        }
    }

    /// from_meta_rx → validate gives back the same metadata and layers.
    fn round_trip(v: &Validated, f: &Frame) {
        let h = VnetHdr::from_meta_rx(v.meta(), v.layers());
        let again = check(&h, f).unwrap_or_else(|e| panic!("from_meta_rx {h:?} rejected: {e}"));
        assert_eq!(again, *v, "round trip through {h:?}");
    }

    fn partial(start: usize, offset: u16) -> CsumState {
        CsumState::Partial {
            start: start as u16,
            offset,
        }
    }

    fn gso_meta(kind: GsoKind, size: u16, ecn: bool) -> Option<Gso> {
        Some(Gso {
            kind,
            size,
            ecn,
            tunnel: None,
        })
    }

    // ---------------------------------------------------------------------------------------
    // Rejections, one per cause.

    #[test]
    fn unknown_gso_type() {
        let f = Spec::tcp4(4000).build();
        // 2 and 6 are unused, 0x11 has an unknown bit, 0x80 is ECN alone.
        for t in [2u8, 6, 0x11, 0x80] {
            let h = f.gso_hdr(t, 1448);
            assert_eq!(
                check(&h, &f),
                Err(VnetError::UnknownGsoType { gso_type: t })
            );
        }
        // The UDP tunnel bits need the 24-byte header, which this one is not.
        for t in [0x21u8, 0x41, 0x61] {
            let h = f.gso_hdr(t, 1448);
            assert_eq!(
                check(&h, &f),
                Err(VnetError::TunnelNotNegotiated { gso_type: t })
            );
        }
    }

    #[test]
    fn ecn_without_tcp() {
        let f = Spec::udp4(4000).build();
        for t in [gso::UDP_L4 | gso::ECN, gso::UDP | gso::ECN] {
            let h = f.gso_hdr(t, 1400);
            assert_eq!(check(&h, &f), Err(VnetError::EcnWithoutTcp { gso_type: t }));
        }
    }

    #[test]
    fn gso_size_zero() {
        let f = Spec::tcp4(4000).build();
        let h = f.gso_hdr(gso::TCPV4, 0);
        assert_eq!(
            check(&h, &f),
            Err(VnetError::GsoSizeZero {
                gso_type: gso::TCPV4
            })
        );
    }

    #[test]
    fn gso_size_by_frags() {
        let f = Spec::udp6(4000).build();
        let h = f.gso_hdr(gso::UDP_L4, 0xffff);
        assert_eq!(
            check(&h, &f),
            Err(VnetError::GsoSizeByFrags {
                gso_type: gso::UDP_L4
            })
        );
    }

    #[test]
    fn hdr_len_beyond_data() {
        let f = Spec::tcp4(100).build();
        let mut h = f.gso_hdr(gso::TCPV4, 50);
        h.hdr_len = f.len() as u16 + 1;
        assert_eq!(
            check(&h, &f),
            Err(VnetError::HdrLenBeyondData {
                hdr_len: h.hdr_len,
                len: f.len()
            })
        );
        // Exactly the frame length is fine (a hint that everything is header).
        h.hdr_len = f.len() as u16;
        accept(&h, &f);
    }

    #[test]
    fn hdr_len_below_ethernet() {
        let f = Spec::tcp4(3000).build();
        let mut h = f.gso_hdr(gso::TCPV4, 1448);
        h.hdr_len = 13;
        assert_eq!(
            check(&h, &f),
            Err(VnetError::HdrLenBelowEthernet { hdr_len: 13 })
        );
        // A bare IP packet has no Ethernet header to cover.
        let f = Spec::tcp4(3000).ip_start().build();
        let mut h = f.gso_hdr(gso::TCPV4, 1448);
        h.hdr_len = 13;
        accept(&h, &f);
    }

    #[test]
    fn parse_error() {
        let mut f = Spec::tcp4(100).build();
        f.bytes.truncate(f.len() - 10); // IPv4 total length now beyond the buffer
        let h = f.csum_hdr();
        match check(&h, &f) {
            Err(VnetError::Parse(e)) => {
                assert_eq!(e.layer, Layer::Ipv4);
                assert_eq!(e.offset, 14);
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn csum_beyond_data() {
        let f = Spec::udp4(20).build();
        let mut h = f.csum_hdr();
        h.csum_offset = 30; // 34 + 32 > 62
        assert_eq!(
            check(&h, &f),
            Err(VnetError::CsumBeyondData {
                csum_start: 34,
                csum_offset: 30,
                needed: 66,
                len: 62
            })
        );
        // The checksum field must be inside the IP packet, not in Ethernet padding.
        let f = Spec::udp4(0).padding(18).build();
        let mut h = f.csum_hdr();
        h.csum_start = 36;
        h.csum_offset = 6; // 36 + 8 = 44 > ip_end 42, though the frame is 60 bytes
        assert_eq!(
            check(&h, &f),
            Err(VnetError::CsumBeyondData {
                csum_start: 36,
                csum_offset: 6,
                needed: 44,
                len: 42
            })
        );
    }

    #[test]
    fn csum_beyond_data_min_transport_header() {
        // The needed length includes the GSO type's minimal transport header (TCP: 20) even when
        // csum_offset + 2 is smaller: this is the kernel's max(thlen, csum_offset + 2).
        let f = Spec::udp4(30).build();
        let mut h = f.gso_hdr(gso::TCPV4, 1);
        h.csum_offset = 0;
        h.csum_start = (f.ip_end - 19) as u16;
        assert_eq!(
            check(&h, &f),
            Err(VnetError::CsumBeyondData {
                csum_start: h.csum_start,
                csum_offset: 0,
                needed: f.ip_end + 1,
                len: f.ip_end
            })
        );
    }

    #[test]
    fn csum_start_overflow() {
        // A 64 KiB IPv4 packet on a tun: csum_start 65530 + 14 bytes of Ethernet headroom.
        let f = Spec::udp4(65535 - 28).ip_start().build();
        let mut h = f.csum_hdr();
        h.csum_start = 65530;
        h.csum_offset = 0;
        assert_eq!(
            check(&h, &f),
            Err(VnetError::CsumStartOverflow {
                csum_start: 65530,
                headroom: 14
            })
        );
        // With the Ethernet header already there, no headroom is reserved.
        let f = Spec::udp4(65535 - 28 - 14).build();
        let mut h = f.csum_hdr();
        h.csum_start = 65530;
        h.csum_offset = 0;
        accept(&h, &f);
    }

    #[test]
    fn csum_start_below_network_min() {
        let f = Spec::udp4(100).vlans(1).build();
        let mut h = f.csum_hdr();
        h.csum_start = 18 + 19;
        h.csum_offset = 0;
        assert_eq!(
            check(&h, &f),
            Err(VnetError::CsumStartBelowNetworkMin {
                csum_start: 37,
                min: 38
            })
        );
        let f = Spec::udp6(100).build();
        let mut h = f.csum_hdr();
        h.csum_start = 14 + 39;
        assert_eq!(
            check(&h, &f),
            Err(VnetError::CsumStartBelowNetworkMin {
                csum_start: 53,
                min: 54
            })
        );
    }

    #[test]
    fn gso_not_ip() {
        let frame = arp();
        let h = VnetHdr {
            gso_type: gso::TCPV4,
            gso_size: 10,
            ..VnetHdr::default()
        };
        assert_eq!(
            validate(&h, &frame, Start::Ethernet),
            Err(VnetError::GsoNotIp {
                gso_type: gso::TCPV4,
                ethertype: 0x0806
            })
        );
    }

    #[test]
    fn gso_on_fragment() {
        let f = Spec::udp4(4000).fragment().build();
        let h = f.gso_hdr(gso::UDP, 1400);
        assert_eq!(
            check(&h, &f),
            Err(VnetError::GsoOnFragment { gso_type: gso::UDP })
        );
    }

    #[test]
    fn gso_proto_mismatch() {
        let cases: [(Frame, u8, L3, L4); 5] = [
            (Spec::tcp6(4000).build(), gso::TCPV4, L3::Ipv6, L4::Tcp),
            (Spec::udp4(4000).build(), gso::TCPV4, L3::Ipv4, L4::Udp),
            (Spec::tcp4(4000).build(), gso::TCPV6, L3::Ipv4, L4::Tcp),
            (Spec::tcp4(4000).build(), gso::UDP_L4, L3::Ipv4, L4::Tcp),
            (Spec::tcp6(4000).build(), gso::UDP, L3::Ipv6, L4::Tcp),
        ];
        for (f, t, l3, l4) in cases {
            let mut h = f.gso_hdr(t, 1000);
            h.flags = 0;
            assert_eq!(
                check(&h, &f),
                Err(VnetError::GsoProtoMismatch {
                    gso_type: t,
                    l3,
                    l4: Some(l4)
                }),
                "{t:#x} on {l3:?}/{l4:?}"
            );
        }
    }

    #[test]
    fn csum_start_not_l4() {
        let f = Spec::tcp4(4000).build();
        let mut h = f.gso_hdr(gso::TCPV4, 1448);
        h.csum_start += 4;
        assert_eq!(
            check(&h, &f),
            Err(VnetError::CsumStartNotL4 {
                csum_start: 38,
                l4_offset: 34
            })
        );
    }

    #[test]
    fn tso_csum_offset() {
        let f = Spec::tcp6(4000).build();
        let mut h = f.gso_hdr(gso::TCPV6, 1440);
        h.csum_offset = 6;
        assert_eq!(
            check(&h, &f),
            Err(VnetError::TsoCsumOffset { csum_offset: 6 })
        );
    }

    #[test]
    fn uso_without_csum() {
        let f = Spec::udp4(4000).build();
        let mut h = f.gso_hdr(gso::UDP_L4, 1400);
        h.flags = flags::DATA_VALID;
        assert_eq!(check(&h, &f), Err(VnetError::UsoWithoutCsum));
    }

    #[test]
    fn uso_csum_offset() {
        let f = Spec::udp6(4000).build();
        let mut h = f.gso_hdr(gso::UDP_L4, 1400);
        h.csum_offset = 16;
        assert_eq!(
            check(&h, &f),
            Err(VnetError::UsoCsumOffset { csum_offset: 16 })
        );
    }

    #[test]
    fn uso_too_many_segments() {
        let f = Spec::udp4(100 * USO_MAX_SEGMENTS + 1).build();
        let h = f.gso_hdr(gso::UDP_L4, 100);
        assert_eq!(
            check(&h, &f),
            Err(VnetError::UsoTooManySegments {
                payload_len: 6401,
                gso_size: 100,
                max_segments: 64
            })
        );
        // Exactly 64 full segments is accepted.
        let f = Spec::udp4(100 * USO_MAX_SEGMENTS).build();
        let v = accept(&f.gso_hdr(gso::UDP_L4, 100), &f);
        assert_eq!(v.meta().gso, gso_meta(GsoKind::UdpL4, 100, false));
    }

    #[test]
    fn every_error_displays() {
        let f = Spec::udp4(20).build();
        let mut h = f.csum_hdr();
        h.csum_offset = 30;
        let e = check(&h, &f).unwrap_err();
        assert_eq!(
            e.to_string(),
            "partial checksum (csum_start 34, csum_offset 30) needs 66 bytes of data, packet has 62"
        );
        let mut bad = f.clone();
        bad.bytes.truncate(30);
        let e = check(&f.csum_hdr(), &bad).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("frame does not parse: Ipv4 header at offset 14"));
        assert!(std::error::Error::source(&e).is_some());
    }

    // ---------------------------------------------------------------------------------------
    // Accepted shapes.

    #[test]
    fn accept_tso4() {
        let f = Spec::tcp4(3 * 1448 + 100).build();
        let v = accept(&f.gso_hdr(gso::TCPV4, 1448), &f);
        assert_eq!(v.meta().csum, partial(34, 16));
        assert_eq!(v.meta().gso, gso_meta(GsoKind::Tcpv4, 1448, false));
        assert_eq!((v.layers().l4_offset, v.layers().payload_offset), (34, 54));
    }

    #[test]
    fn accept_tso4_ecn_with_options() {
        let f = Spec::tcp4(5000).tcp_opts(12).build();
        let v = accept(&f.gso_hdr(gso::TCPV4 | gso::ECN, 1436), &f);
        assert_eq!(v.meta().gso, gso_meta(GsoKind::Tcpv4, 1436, true));
        let h = VnetHdr::from_meta(v.meta(), v.layers());
        assert_eq!(h.hdr_len, 14 + 20 + 32);
        assert_eq!(h.gso_type, gso::TCPV4 | gso::ECN);
    }

    #[test]
    fn accept_tso6_with_extension_header() {
        let f = Spec::tcp6(4000).ext().build();
        assert_eq!(f.l4, 14 + 40 + 8);
        let v = accept(&f.gso_hdr(gso::TCPV6, 1420), &f);
        assert_eq!(v.meta().csum, partial(62, 16));
        assert_eq!(v.meta().gso, gso_meta(GsoKind::Tcpv6, 1420, false));
        assert_eq!(v.layers().l4_offset, 62);
    }

    #[test]
    fn accept_uso() {
        for f in [Spec::udp4(5000).build(), Spec::udp6(5000).ext().build()] {
            let v = accept(&f.gso_hdr(gso::UDP_L4, 1200), &f);
            assert_eq!(v.meta().csum, partial(f.l4, 6));
            assert_eq!(v.meta().gso, gso_meta(GsoKind::UdpL4, 1200, false));
        }
    }

    #[test]
    fn accept_ufo() {
        let f = Spec::udp4(5000).build();
        let v = accept(&f.gso_hdr(gso::UDP, 1480), &f);
        assert_eq!(v.meta().gso, gso_meta(GsoKind::Ufo, 1480, false));
        // UFO without NEEDS_CSUM is accepted too.
        let mut h = f.gso_hdr(gso::UDP, 1480);
        h.flags = 0;
        let v = accept(&h, &f);
        assert_eq!(v.meta().csum, CsumState::None);
        assert_eq!(v.meta().gso, gso_meta(GsoKind::Ufo, 1480, false));
    }

    #[test]
    fn accept_vlan_tagged_tso() {
        for tags in [1, 2] {
            let f = Spec::tcp4(4000).vlans(tags).build();
            let v = accept(&f.gso_hdr(gso::TCPV4, 1448), &f);
            assert_eq!(v.layers().vlans as usize, tags);
            assert_eq!(v.meta().csum, partial(14 + 4 * tags + 20, 16));
            assert_eq!(v.meta().gso, gso_meta(GsoKind::Tcpv4, 1448, false));
        }
    }

    #[test]
    fn accept_tso_on_tun() {
        let f = Spec::tcp6(4000).ip_start().build();
        let v = accept(&f.gso_hdr(gso::TCPV6, 1440), &f);
        assert_eq!(v.meta().csum, partial(40, 16));
        assert_eq!(v.layers().l2_len, 0);
    }

    #[test]
    fn accept_partial_csum_not_gso() {
        let f = Spec::udp4(300).build();
        let v = accept(&f.csum_hdr(), &f);
        assert_eq!(
            *v.meta(),
            OffloadMeta {
                csum: partial(34, 6),
                gso: None
            }
        );
        // Any start at or past the minimal IP header is allowed without GSO.
        let mut h = f.csum_hdr();
        h.csum_start = 40;
        h.csum_offset = 100;
        assert_eq!(accept(&h, &f).meta().csum, partial(40, 100));
        // Ethernet padding after the packet is fine when the field is inside the packet.
        let f = Spec::udp4(0).padding(18).build();
        assert_eq!(accept(&f.csum_hdr(), &f).meta().csum, partial(34, 6));
    }

    #[test]
    fn accept_payload_not_above_gso_size_is_not_gso() {
        let f = Spec::tcp4(1448).build();
        let v = accept(&f.gso_hdr(gso::TCPV4, 1448), &f);
        assert_eq!(v.meta().gso, None);
        assert_eq!(v.meta().csum, partial(34, 16));
        // One more byte and it is a super-frame.
        let f = Spec::tcp4(1449).build();
        let v = accept(&f.gso_hdr(gso::TCPV4, 1448), &f);
        assert_eq!(v.meta().gso, gso_meta(GsoKind::Tcpv4, 1448, false));
        // UFO counts the UDP header as payload: 1472 + 8 = 1480.
        let f = Spec::udp4(1472).build();
        assert_eq!(accept(&f.gso_hdr(gso::UDP, 1480), &f).meta().gso, None);
        let f = Spec::udp4(1473).build();
        assert!(accept(&f.gso_hdr(gso::UDP, 1480), &f).meta().gso.is_some());
    }

    #[test]
    fn accept_tso_without_needs_csum() {
        let f = Spec::tcp4(4000).build();
        let mut h = f.gso_hdr(gso::TCPV4, 1448);
        h.flags = 0;
        h.csum_start = 0xdead; // ignored without NEEDS_CSUM
        h.csum_offset = 0xbeef;
        let v = accept(&h, &f);
        assert_eq!(v.meta().csum, CsumState::None);
        assert_eq!(v.meta().gso, gso_meta(GsoKind::Tcpv4, 1448, false));
    }

    #[test]
    fn accept_data_valid() {
        let f = Spec::tcp4(4000).build();
        let mut h = f.gso_hdr(gso::TCPV4, 1448);
        h.flags = flags::DATA_VALID;
        let v = accept(&h, &f);
        assert_eq!(v.meta().csum, CsumState::Unnecessary);
        // Transmit direction drops DATA_VALID, receive direction keeps it.
        assert_eq!(VnetHdr::from_meta(v.meta(), v.layers()).flags, 0);
        assert_eq!(
            VnetHdr::from_meta_rx(v.meta(), v.layers()).flags,
            flags::DATA_VALID
        );
        // NEEDS_CSUM wins over DATA_VALID.
        h.flags = flags::NEEDS_CSUM | flags::DATA_VALID;
        assert_eq!(accept(&h, &f).meta().csum, partial(34, 16));
    }

    #[test]
    fn accept_unknown_flag_bits_ignored() {
        let f = Spec::udp6(3000).build();
        let mut h = f.gso_hdr(gso::UDP_L4, 1000);
        h.flags |= flags::RSC_INFO | 0xf0;
        let v = accept(&h, &f);
        assert_eq!(v.meta().csum, partial(54, 6));
        let mut h = f.csum_hdr();
        h.flags = 0xfe; // everything but NEEDS_CSUM: DATA_VALID + unknown bits
        assert_eq!(accept(&h, &f).meta().csum, CsumState::Unnecessary);
    }

    #[test]
    fn accept_non_ip_without_offload() {
        let frame = arp();
        let v = validate(&VnetHdr::default(), &frame, Start::Ethernet).unwrap();
        assert_eq!(*v.meta(), OffloadMeta::default());
        assert_eq!(v.layers().l3, None);
    }

    // ---------------------------------------------------------------------------------------
    // Inverse mapping.

    #[test]
    fn from_meta_exact_fields() {
        let f = Spec::udp6(5000).ext().vlans(1).build();
        let v = accept(&f.gso_hdr(gso::UDP_L4, 1200), &f);
        let h = VnetHdr::from_meta(v.meta(), v.layers());
        assert_eq!(
            h,
            VnetHdr {
                flags: flags::NEEDS_CSUM,
                gso_type: gso::UDP_L4,
                hdr_len: (18 + 48 + 8) as u16,
                gso_size: 1200,
                csum_start: 18 + 48,
                csum_offset: 6,
                num_buffers: 0,
                tunnel: None,
            }
        );
        // Not GSO: hdr_len and gso fields stay zero.
        let f = Spec::udp4(100).build();
        let v = accept(&f.csum_hdr(), &f);
        let h = VnetHdr::from_meta(v.meta(), v.layers());
        assert_eq!((h.gso_type, h.gso_size, h.hdr_len), (0, 0, 0));
    }

    #[test]
    fn from_meta_round_trip_sloppy_hint() {
        // A sender's sloppy hdr_len (a hint) is replaced by the exact one and still round-trips.
        let f = Spec::tcp4(9000).tcp_opts(20).build();
        let mut h = f.gso_hdr(gso::TCPV4 | gso::ECN, 1428);
        h.hdr_len = 14;
        h.num_buffers = 9;
        let v = accept(&h, &f);
        assert_eq!(VnetHdr::from_meta(v.meta(), v.layers()).hdr_len, 74);
    }

    // ---------------------------------------------------------------------------------------
    // validate_gso: validate with the header a sender writes for a GSO frame.

    #[test]
    fn validate_gso_agrees_with_validate() {
        let kinds = [
            (gso::TCPV4, GsoKind::Tcpv4, false),
            (gso::TCPV4 | gso::ECN, GsoKind::Tcpv4, true),
            (gso::TCPV6, GsoKind::Tcpv6, false),
            (gso::UDP, GsoKind::Ufo, false),
            (gso::UDP_L4, GsoKind::UdpL4, false),
            (gso::UDP_L4 | gso::ECN, GsoKind::UdpL4, true),
        ];
        let frames = [
            Spec::tcp4(4000).build(),
            Spec::tcp4(4000).vlans(2).tcp_opts(12).build(),
            Spec::tcp6(4000).ext().build(),
            Spec::udp4(4000).ip_start().build(),
            Spec::udp6(4000).build(),
            Spec::udp4(4000).fragment().build(),
            Spec::tcp4(100).build(),
            Spec::udp4(100 * USO_MAX_SEGMENTS + 1).build(),
        ];
        for f in &frames {
            for (t, kind, ecn) in kinds {
                for size in [0, 100, 1448, 0xffff] {
                    let g = Gso {
                        kind,
                        size,
                        ecn,
                        tunnel: None,
                    };
                    let mut h = f.gso_hdr(t, size);
                    h.hdr_len = 0;
                    assert_eq!(
                        validate_gso(&f.bytes, f.start, g),
                        check(&h, f),
                        "{g:?} on {:?}",
                        f.start
                    );
                }
            }
        }
        // Not IP at all: refused, whatever the rule that says so.
        assert!(validate_gso(
            &arp(),
            Start::Ethernet,
            Gso {
                kind: GsoKind::Tcpv4,
                size: 1448,
                ecn: false,
                tunnel: None,
            }
        )
        .is_err());
    }
}
