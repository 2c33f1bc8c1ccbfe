//! `wire::parse` against frames built with the wire views' setters: hand-picked cases for
//! every layer and error, then proptests for robustness and agreement with etherparse.

use proptest::prelude::*;
use pvnet_core::wire::{
    ethernet, ethertype, ip_proto, ipv4, ipv6, parse, tcp, udp, vlan, Layer, Layers, ParseError,
    ParseErrorKind, Start, L3, L4,
};

#[derive(Debug, Clone)]
enum Ext {
    /// Hop-by-Hop options of `8 × (n + 1)` bytes.
    Hop(u8),
    /// Destination options of `8 × (n + 1)` bytes.
    Dest(u8),
    Routing {
        rtype: u8,
        segs_left: u8,
        naddrs: u8,
    },
    Frag {
        offset: u16,
        more: bool,
    },
}

#[derive(Debug, Clone)]
enum Ip {
    V4 { options: Vec<u8>, frag: (u16, bool) },
    V6 { exts: Vec<Ext> },
}

#[derive(Debug, Clone)]
enum Transport {
    Tcp { options: Vec<u8> },
    Udp,
    Other(u8),
}

#[derive(Debug, Clone)]
struct Spec {
    /// `(TPID, TCI)` per tag, outermost first.
    vlans: Vec<(u16, u16)>,
    ip: Ip,
    l4: Transport,
    payload: Vec<u8>,
    /// Link padding after the IP packet.
    padding: usize,
}

/// A built frame and the layers parse must find in it.
struct Built {
    bytes: Vec<u8>,
    want: Layers,
}

const SRC6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const DST6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn ext_len(e: &Ext) -> usize {
    match *e {
        Ext::Hop(n) | Ext::Dest(n) => 8 * (usize::from(n) + 1),
        Ext::Routing { naddrs, .. } => 8 + 16 * usize::from(naddrs),
        Ext::Frag { .. } => 8,
    }
}

fn ext_proto(e: &Ext) -> u8 {
    match e {
        Ext::Hop(_) => ip_proto::HOPOPT,
        Ext::Dest(_) => ip_proto::IPV6_OPTS,
        Ext::Routing { .. } => ip_proto::IPV6_ROUTE,
        Ext::Frag { .. } => ip_proto::IPV6_FRAG,
    }
}

fn l4_proto(t: &Transport) -> u8 {
    match *t {
        Transport::Tcp { .. } => ip_proto::TCP,
        Transport::Udp => ip_proto::UDP,
        Transport::Other(p) => p,
    }
}

fn build(spec: &Spec, start: Start) -> Built {
    let l2_len = match start {
        Start::Ethernet => ethernet::HEADER_LEN + vlan::HEADER_LEN * spec.vlans.len(),
        Start::Ip => 0,
    };
    let (l3_len, ip_et) = match &spec.ip {
        Ip::V4 { options, .. } => (ipv4::MIN_HEADER_LEN + options.len(), ethertype::IPV4),
        Ip::V6 { exts } => (
            ipv6::HEADER_LEN + exts.iter().map(ext_len).sum::<usize>(),
            ethertype::IPV6,
        ),
    };
    let l4_len = match &spec.l4 {
        Transport::Tcp { options } => tcp::MIN_HEADER_LEN + options.len(),
        Transport::Udp => udp::HEADER_LEN,
        Transport::Other(_) => 0,
    };
    let l4_offset = l2_len + l3_len;
    let payload_offset = l4_offset + l4_len;
    let ip_end = payload_offset + spec.payload.len();
    let mut bytes = vec![0u8; ip_end + spec.padding];
    bytes[ip_end..].fill(0xee);

    if start == Start::Ethernet {
        let mut eth = ethernet::Frame::new_unchecked(&mut bytes[..]);
        eth.set_dst_addr([2, 0, 0, 0, 0, 2]);
        eth.set_src_addr([2, 0, 0, 0, 0, 1]);
        let mut next_at = 12;
        for (i, &(tpid, tci)) in spec.vlans.iter().enumerate() {
            bytes[next_at..next_at + 2].copy_from_slice(&tpid.to_be_bytes());
            let at = ethernet::HEADER_LEN + i * vlan::HEADER_LEN;
            vlan::Tag::new_unchecked(&mut bytes[at..]).set_tci(tci);
            next_at = at + 2;
        }
        bytes[next_at..next_at + 2].copy_from_slice(&ip_et.to_be_bytes());
    }

    let proto = l4_proto(&spec.l4);
    let mut pseudo_dst_offset;
    let mut fragment = false;
    let mut l4_parsed = true;
    let mut partial = false;
    match &spec.ip {
        Ip::V4 { options, frag } => {
            let mut ip = ipv4::Packet::new_unchecked(&mut bytes[l2_len..]);
            ip.set_version(4);
            ip.set_header_len(l3_len);
            ip.set_total_len((ip_end - l2_len) as u16);
            ip.set_ident(0x4242);
            ip.set_frag_offset(frag.0);
            ip.set_more_frags(frag.1);
            ip.set_ttl(64);
            ip.set_protocol(proto);
            ip.set_src_addr([192, 0, 2, 1]);
            ip.set_dst_addr([192, 0, 2, 2]);
            ip.options_mut().copy_from_slice(options);
            ip.fill_checksum();
            pseudo_dst_offset = l2_len + 16;
            fragment = frag.0 != 0 || frag.1;
            l4_parsed = frag.0 == 0;
            partial = frag.1;
        }
        Ip::V6 { exts } => {
            let mut ip = ipv6::Packet::new_unchecked(&mut bytes[l2_len..]);
            ip.set_version(6);
            ip.set_payload_len((ip_end - l2_len - ipv6::HEADER_LEN) as u16);
            ip.set_next_header(exts.first().map_or(proto, ext_proto));
            ip.set_hop_limit(64);
            ip.set_src_addr(SRC6);
            ip.set_dst_addr(DST6);
            pseudo_dst_offset = l2_len + 24;
            let mut at = l2_len + ipv6::HEADER_LEN;
            for (i, e) in exts.iter().enumerate() {
                let next = exts.get(i + 1).map_or(proto, ext_proto);
                let len = ext_len(e);
                let hdr = &mut bytes[at..at + len];
                match *e {
                    Ext::Hop(_) | Ext::Dest(_) => {
                        let mut h = ipv6::ExtHeader::new_unchecked(hdr);
                        h.set_next_header(next);
                        h.set_header_len(len);
                        // PadN over the whole option area.
                        let d = h.data_mut();
                        d[0] = 1;
                        d[1] = (len - 4) as u8;
                    }
                    Ext::Routing {
                        rtype,
                        segs_left,
                        naddrs,
                    } => {
                        let mut r = ipv6::RoutingHeader::new_unchecked(&mut *hdr);
                        r.set_next_header(next);
                        r.set_header_len(len);
                        r.set_routing_type(rtype);
                        r.set_segments_left(segs_left);
                        for (k, a) in hdr[8..].chunks_exact_mut(16).enumerate() {
                            a.fill(0xa0 + k as u8);
                        }
                        let final_at = match rtype {
                            0 if naddrs > 0 => Some(8 + 16 * (usize::from(naddrs) - 1)),
                            2 | 4 if naddrs > 0 => Some(8),
                            _ => None,
                        };
                        if segs_left > 0 && pseudo_dst_offset == l2_len + 24 {
                            if let Some(o) = final_at {
                                pseudo_dst_offset = at + o;
                            }
                        }
                    }
                    Ext::Frag { offset, more } => {
                        let mut f = ipv6::FragmentHeader::new_unchecked(hdr);
                        f.set_next_header(next);
                        f.set_frag_offset(offset);
                        f.set_more_frags(more);
                        f.set_ident(7);
                        fragment = true;
                        l4_parsed &= offset == 0;
                        partial = offset == 0 && more;
                    }
                }
                at += len;
            }
        }
    }

    let l4_at = l4_offset;
    match &spec.l4 {
        Transport::Tcp { options } => {
            let mut t = tcp::Packet::new_unchecked(&mut bytes[l4_at..ip_end]);
            t.set_src_port(40000);
            t.set_dst_port(443);
            t.set_seq_number(1);
            t.set_header_len(l4_len);
            t.set_flags(tcp::ACK);
            t.set_window_len(512);
            t.options_mut().copy_from_slice(options);
        }
        Transport::Udp => {
            let mut u = udp::Packet::new_unchecked(&mut bytes[l4_at..ip_end]);
            u.set_src_port(5353);
            u.set_dst_port(53);
            // A first fragment's UDP length covers fragments still to come.
            let more = if partial { 1000 } else { 0 };
            u.set_len((ip_end - l4_at + more) as u16);
        }
        Transport::Other(_) => {}
    }
    bytes[payload_offset..ip_end].copy_from_slice(&spec.payload);

    let (l4, l4_len, payload_offset) = if l4_parsed {
        let l4 = match spec.l4 {
            Transport::Tcp { .. } => L4::Tcp,
            Transport::Udp => L4::Udp,
            Transport::Other(p) => L4::Other(p),
        };
        (Some(l4), l4_len, payload_offset)
    } else {
        (None, 0, l4_offset)
    };
    let want = Layers {
        l2_len,
        vlans: if start == Start::Ethernet {
            spec.vlans.len() as u8
        } else {
            0
        },
        ethertype: ip_et,
        l3: Some(if ip_et == ethertype::IPV4 {
            L3::Ipv4
        } else {
            L3::Ipv6
        }),
        l3_offset: l2_len,
        l3_len,
        ip_end,
        pseudo_dst_offset,
        fragment,
        l4,
        l4_offset,
        l4_len,
        payload_offset,
    };
    Built { bytes, want }
}

fn spec(ip: Ip, l4: Transport) -> Spec {
    Spec {
        vlans: vec![],
        ip,
        l4,
        payload: b"payload!".to_vec(),
        padding: 0,
    }
}

fn v4() -> Ip {
    Ip::V4 {
        options: vec![],
        frag: (0, false),
    }
}

fn v6(exts: Vec<Ext>) -> Ip {
    Ip::V6 { exts }
}

fn tcp() -> Transport {
    Transport::Tcp { options: vec![] }
}

/// Parse from both starts and compare with what the builder laid out.
fn check(s: &Spec) -> Layers {
    for start in [Start::Ip, Start::Ethernet] {
        let b = build(s, start);
        assert_eq!(parse(&b.bytes, start), Ok(b.want), "{start:?} {s:?}");
    }
    build(s, Start::Ethernet).want
}

fn parse_err(bytes: &[u8], start: Start) -> ParseError {
    match parse(bytes, start) {
        Err(e) => e,
        Ok(l) => panic!("parsed {l:?}"),
    }
}

#[test]
fn plain_tcp_udp_v4_v6() {
    let l = check(&spec(v4(), tcp()));
    assert_eq!((l.l2_len, l.l3_len, l.l4_len), (14, 20, 20));
    assert_eq!((l.l4_offset, l.payload_offset, l.ip_end), (34, 54, 62));
    assert_eq!(l.pseudo_dst_offset, 30);
    assert_eq!(l.payload_len(), 8);
    let l = check(&spec(v4(), Transport::Udp));
    assert_eq!((l.l4, l.l4_len, l.payload_offset), (Some(L4::Udp), 8, 42));
    let l = check(&spec(v6(vec![]), tcp()));
    assert_eq!(
        (l.l3, l.l3_len, l.pseudo_dst_offset),
        (Some(L3::Ipv6), 40, 38)
    );
    let l = check(&spec(v6(vec![]), Transport::Udp));
    assert_eq!((l.l4_offset, l.payload_offset), (54, 62));
    let l = check(&spec(v4(), Transport::Other(ip_proto::ICMP)));
    assert_eq!((l.l4, l.l4_len), (Some(L4::Other(1)), 0));
    let l = check(&spec(v6(vec![]), Transport::Other(ip_proto::IPV6_NONXT)));
    assert_eq!(l.l4, Some(L4::Other(59)));
}

#[test]
fn tcp_options_and_empty_payload() {
    let mut s = spec(
        v4(),
        Transport::Tcp {
            options: vec![2, 4, 5, 0xb4, 1, 3, 3, 7],
        },
    );
    s.payload.clear();
    let l = check(&s);
    assert_eq!((l.l4_len, l.payload_len()), (28, 0));
}

#[test]
fn ethernet_padding_is_not_payload() {
    let mut s = spec(v4(), Transport::Udp);
    s.payload = vec![1, 2];
    s.padding = 16;
    let l = check(&s);
    assert_eq!(l.ip_end, 14 + 20 + 8 + 2);
    assert_eq!(l.payload_len(), 2);
}

#[test]
fn vlan_tags() {
    let mut s = spec(v4(), tcp());
    s.vlans = vec![(ethertype::VLAN, 0x2064)];
    let l = check(&s);
    assert_eq!((l.l2_len, l.vlans, l.ethertype), (18, 1, ethertype::IPV4));
    s.vlans = vec![(ethertype::QINQ, 100), (ethertype::VLAN, 200)];
    s.ip = v6(vec![]);
    let l = check(&s);
    assert_eq!((l.l2_len, l.vlans, l.l3_offset), (22, 2, 22));

    s.vlans.push((ethertype::VLAN, 300));
    let b = build(&s, Start::Ethernet);
    assert_eq!(
        parse_err(&b.bytes, Start::Ethernet),
        ParseError {
            layer: Layer::Vlan,
            offset: 22,
            kind: ParseErrorKind::TooManyVlanTags
        }
    );
    // A tag cut short.
    let b = build(&spec(v4(), tcp()), Start::Ethernet);
    let mut short = b.bytes[..16].to_vec();
    short[12..14].copy_from_slice(&ethertype::VLAN.to_be_bytes());
    assert_eq!(
        parse_err(&short, Start::Ethernet),
        ParseError {
            layer: Layer::Vlan,
            offset: 14,
            kind: ParseErrorKind::Truncated {
                needed: 4,
                available: 2
            }
        }
    );
}

#[test]
fn non_ip_ethertype_stops_at_l2() {
    let mut f = [0u8; 60];
    f[12..14].copy_from_slice(&ethertype::VLAN.to_be_bytes());
    f[16..18].copy_from_slice(&ethertype::ARP.to_be_bytes());
    let l = parse(&f, Start::Ethernet).unwrap();
    assert_eq!(
        l,
        Layers {
            l2_len: 18,
            vlans: 1,
            ethertype: ethertype::ARP,
            l3_offset: 18,
            l4_offset: 18,
            payload_offset: 18,
            ip_end: 18,
            ..Layers::default()
        }
    );
}

#[test]
fn ipv4_options() {
    let s = spec(
        Ip::V4 {
            options: vec![0x94, 4, 0, 0, 1, 1, 1, 0], // router alert, NOPs, EOL
            frag: (0, false),
        },
        tcp(),
    );
    let l = check(&s);
    assert_eq!((l.l3_len, l.l4_offset, l.pseudo_dst_offset), (28, 42, 30));
    let b = build(&s, Start::Ip);
    let ip = ipv4::Packet::new_checked(&b.bytes[..]).unwrap();
    assert_eq!(ip.options(), &[0x94, 4, 0, 0, 1, 1, 1, 0]);
    assert!(ip.verify_checksum());
}

#[test]
fn ipv6_ext_headers_and_final_destination() {
    let exts = vec![
        Ext::Hop(0),
        Ext::Routing {
            rtype: 0,
            segs_left: 2,
            naddrs: 2,
        },
        Ext::Dest(1),
    ];
    let l = check(&spec(v6(exts), tcp()));
    // 14 + 40 | hop 8 | routing 40 (addresses at +8, +24) | dest 16
    assert_eq!(l.l3_len, 40 + 8 + 40 + 16);
    assert_eq!(l.pseudo_dst_offset, 14 + 40 + 8 + 24);
    assert_eq!(l.l4_offset, 14 + 104);

    // Segment Routing Header: segment list[0] is the final destination.
    let exts = vec![Ext::Routing {
        rtype: 4,
        segs_left: 1,
        naddrs: 3,
    }];
    let l = check(&spec(v6(exts), Transport::Udp));
    assert_eq!(l.pseudo_dst_offset, 14 + 40 + 8);

    // Type 2 (mobile IPv6 home address).
    let exts = vec![Ext::Routing {
        rtype: 2,
        segs_left: 1,
        naddrs: 1,
    }];
    assert_eq!(check(&spec(v6(exts), tcp())).pseudo_dst_offset, 14 + 48);

    // No segments left, or an unknown type: the header's own destination.
    for (rtype, segs_left) in [(0, 0), (4, 0), (3, 1)] {
        let exts = vec![Ext::Routing {
            rtype,
            segs_left,
            naddrs: 2,
        }];
        assert_eq!(check(&spec(v6(exts), tcp())).pseudo_dst_offset, 14 + 24);
    }
}

#[test]
fn ipv4_fragments() {
    let first = spec(
        Ip::V4 {
            options: vec![],
            frag: (0, true),
        },
        Transport::Udp,
    );
    let l = check(&first);
    assert!(l.fragment);
    assert_eq!((l.l4, l.l4_len), (Some(L4::Udp), 8));

    let later = spec(
        Ip::V4 {
            options: vec![],
            frag: (1480, true),
        },
        Transport::Udp,
    );
    let l = check(&later);
    assert!(l.fragment);
    assert_eq!(l.l4, None);
    assert_eq!((l.l4_offset, l.payload_offset, l.l4_len), (34, 34, 0));

    let last = spec(
        Ip::V4 {
            options: vec![],
            frag: (2960, false),
        },
        tcp(),
    );
    let l = check(&last);
    assert!(l.fragment && l.l4.is_none());
}

#[test]
fn ipv6_fragments() {
    let frag = |offset, more| v6(vec![Ext::Dest(0), Ext::Frag { offset, more }]);
    let l = check(&spec(frag(0, true), Transport::Udp));
    assert!(l.fragment);
    assert_eq!((l.l4, l.l3_len), (Some(L4::Udp), 56));

    let l = check(&spec(frag(1448, true), tcp()));
    assert!(l.fragment);
    assert_eq!((l.l4, l.l4_offset, l.payload_offset), (None, 70, 70));

    // Atomic fragment: a whole datagram, so the UDP length must match.
    let l = check(&spec(frag(0, false), Transport::Udp));
    assert!(l.fragment);
    assert_eq!(l.l4, Some(L4::Udp));
}

fn truncated(layer: Layer, offset: usize, needed: usize, available: usize) -> ParseError {
    ParseError {
        layer,
        offset,
        kind: ParseErrorKind::Truncated { needed, available },
    }
}

#[test]
fn truncation_errors() {
    assert_eq!(
        parse_err(&[0; 13], Start::Ethernet),
        truncated(Layer::Ethernet, 0, 14, 13)
    );
    assert_eq!(parse_err(&[], Start::Ip), truncated(Layer::Ipv4, 0, 20, 0));

    let b = build(&spec(v4(), tcp()), Start::Ethernet);
    assert_eq!(
        parse_err(&b.bytes[..30], Start::Ethernet),
        truncated(Layer::Ipv4, 14, 20, 16)
    );
    let b = build(&spec(v6(vec![]), tcp()), Start::Ethernet);
    assert_eq!(
        parse_err(&b.bytes[..50], Start::Ethernet),
        truncated(Layer::Ipv6, 14, 40, 36)
    );

    // TCP header cut by the IP length (not by the buffer: padding must not be read).
    let mut s = spec(v4(), tcp());
    s.payload.clear();
    let mut b = build(&s, Start::Ip);
    b.bytes.extend_from_slice(&[0; 30]);
    ipv4::Packet::new_unchecked(&mut b.bytes[..]).set_total_len(20 + 12);
    assert_eq!(
        parse_err(&b.bytes, Start::Ip),
        truncated(Layer::Tcp, 20, 20, 12)
    );
    // Options announced past the end of the IP packet.
    let mut b = build(&s, Start::Ip);
    tcp::Packet::new_unchecked(&mut b.bytes[20..]).set_header_len(24);
    assert_eq!(
        parse_err(&b.bytes, Start::Ip),
        truncated(Layer::Tcp, 20, 24, 20)
    );

    let mut s = spec(v4(), Transport::Udp);
    s.payload.clear();
    let mut b = build(&s, Start::Ip);
    ipv4::Packet::new_unchecked(&mut b.bytes[..]).set_total_len(24);
    assert_eq!(
        parse_err(&b.bytes, Start::Ip),
        truncated(Layer::Udp, 20, 8, 4)
    );

    // An extension header running past the payload length.
    let mut b = build(&spec(v6(vec![Ext::Hop(0), Ext::Dest(3)]), tcp()), Start::Ip);
    ipv6::Packet::new_unchecked(&mut b.bytes[..]).set_payload_len(8 + 16);
    assert_eq!(
        parse_err(&b.bytes, Start::Ip),
        truncated(Layer::Ipv6Ext, 48, 32, 16)
    );
}

#[test]
fn version_errors() {
    let b = build(&spec(v4(), tcp()), Start::Ethernet);
    let mut bad = b.bytes.clone();
    bad[14] = 0x65;
    assert_eq!(
        parse_err(&bad, Start::Ethernet),
        ParseError {
            layer: Layer::Ipv4,
            offset: 14,
            kind: ParseErrorKind::BadVersion(6)
        }
    );
    let mut bad = b.bytes[14..].to_vec();
    bad[0] = 0x55;
    assert_eq!(
        parse_err(&bad, Start::Ip),
        ParseError {
            layer: Layer::Ipv4,
            offset: 0,
            kind: ParseErrorKind::BadVersion(5)
        }
    );
    let b = build(&spec(v6(vec![]), tcp()), Start::Ethernet);
    let mut bad = b.bytes.clone();
    bad[14] = 0x40;
    assert_eq!(
        parse_err(&bad, Start::Ethernet),
        ParseError {
            layer: Layer::Ipv6,
            offset: 14,
            kind: ParseErrorKind::BadVersion(4)
        }
    );
}

#[test]
fn length_field_errors() {
    let b = build(&spec(v4(), tcp()), Start::Ip);
    let mut bad = b.bytes.clone();
    bad[0] = 0x44;
    assert_eq!(
        parse_err(&bad, Start::Ip).kind,
        ParseErrorKind::BadHeaderLength(16)
    );
    let mut bad = b.bytes.clone();
    ipv4::Packet::new_unchecked(&mut bad[..]).set_total_len(19);
    assert_eq!(
        parse_err(&bad, Start::Ip).kind,
        ParseErrorKind::BadTotalLength {
            claimed: 19,
            available: 48
        }
    );
    let mut bad = b.bytes.clone();
    ipv4::Packet::new_unchecked(&mut bad[..]).set_total_len(49);
    assert_eq!(
        parse_err(&bad, Start::Ip),
        ParseError {
            layer: Layer::Ipv4,
            offset: 0,
            kind: ParseErrorKind::BadTotalLength {
                claimed: 49,
                available: 48
            }
        }
    );

    let b = build(&spec(v6(vec![]), tcp()), Start::Ethernet);
    let mut bad = b.bytes.clone();
    ipv6::Packet::new_unchecked(&mut bad[14..]).set_payload_len(29);
    assert_eq!(
        parse_err(&bad, Start::Ethernet),
        ParseError {
            layer: Layer::Ipv6,
            offset: 14,
            kind: ParseErrorKind::BadTotalLength {
                claimed: 69,
                available: 68
            }
        }
    );
    // Jumbogram announcement: payload length 0 before a Hop-by-Hop header.
    ipv6::Packet::new_unchecked(&mut bad[14..]).set_payload_len(0);
    ipv6::Packet::new_unchecked(&mut bad[14..]).set_next_header(ip_proto::HOPOPT);
    assert_eq!(
        parse_err(&bad, Start::Ethernet).kind,
        ParseErrorKind::BadTotalLength {
            claimed: 40,
            available: 68
        }
    );
    // Without Hop-by-Hop, payload length 0 is an empty packet: next header 59 parses, and
    // a TCP header that would start past the packet's end is truncated.
    ipv6::Packet::new_unchecked(&mut bad[14..]).set_next_header(ip_proto::IPV6_NONXT);
    let l = parse(&bad, Start::Ethernet).unwrap();
    assert_eq!(
        (l.ip_end, l.l4, l.payload_len()),
        (54, Some(L4::Other(59)), 0)
    );
    ipv6::Packet::new_unchecked(&mut bad[14..]).set_next_header(ip_proto::TCP);
    assert_eq!(parse_err(&bad, Start::Ethernet).layer, Layer::Tcp);

    let mut bad = b.bytes.clone();
    tcp::Packet::new_unchecked(&mut bad[54..]).set_header_len(16);
    assert_eq!(
        parse_err(&bad, Start::Ethernet),
        ParseError {
            layer: Layer::Tcp,
            offset: 54,
            kind: ParseErrorKind::BadDataOffset(4)
        }
    );

    let b = build(&spec(v4(), Transport::Udp), Start::Ethernet);
    for (len, claimed) in [(7u16, 7), (15, 15), (17, 17)] {
        let mut bad = b.bytes.clone();
        udp::Packet::new_unchecked(&mut bad[34..]).set_len(len);
        assert_eq!(
            parse_err(&bad, Start::Ethernet),
            ParseError {
                layer: Layer::Udp,
                offset: 34,
                kind: ParseErrorKind::BadUdpLength {
                    claimed,
                    expected: 16
                }
            }
        );
    }
    // Even in a first fragment the UDP length must cover the header.
    let s = spec(
        Ip::V4 {
            options: vec![],
            frag: (0, true),
        },
        Transport::Udp,
    );
    let mut bad = build(&s, Start::Ip).bytes;
    udp::Packet::new_unchecked(&mut bad[20..]).set_len(4);
    assert_eq!(
        parse_err(&bad, Start::Ip).kind,
        ParseErrorKind::BadUdpLength {
            claimed: 4,
            expected: 16
        }
    );
}

#[test]
fn too_many_extension_headers() {
    let exts = vec![Ext::Dest(0); ipv6::MAX_EXT_HEADERS];
    check(&spec(v6(exts), tcp()));
    let exts = vec![Ext::Dest(0); ipv6::MAX_EXT_HEADERS + 1];
    let b = build(&spec(v6(exts), tcp()), Start::Ethernet);
    assert_eq!(
        parse_err(&b.bytes, Start::Ethernet),
        ParseError {
            layer: Layer::Ipv6Ext,
            offset: 14 + 40 + 8 * ipv6::MAX_EXT_HEADERS,
            kind: ParseErrorKind::TooManyExtensionHeaders
        }
    );
}

// ---------------------------------------------------------------------------------------
// proptest

/// Offsets of a successful parse must be usable to slice the buffer without checks.
fn assert_sane(buf: &[u8], l: &Layers) {
    assert!(l.l2_len <= buf.len());
    assert_eq!(l.l3_offset, l.l2_len);
    assert!(l.l3_offset <= l.l4_offset);
    assert!(l.l4_offset <= l.payload_offset);
    assert!(l.payload_offset <= l.ip_end);
    assert!(l.ip_end <= buf.len());
    assert!(l.vlans <= 2);
    match l.l3 {
        Some(L3::Ipv4) => {
            assert_eq!(l.l4_offset, l.l3_offset + l.l3_len);
            assert!(l.pseudo_dst_offset + 4 <= l.l4_offset);
        }
        Some(L3::Ipv6) => {
            assert_eq!(l.l4_offset, l.l3_offset + l.l3_len);
            assert!(l.pseudo_dst_offset + 16 <= l.l4_offset);
        }
        None => assert!(l.l4.is_none()),
    }
    assert_eq!(l.payload_offset, l.l4_offset + l.l4_len);
    if l.l4.is_none() {
        assert_eq!(l.l4_len, 0);
    }
}

fn arb_ext() -> impl Strategy<Value = Ext> {
    prop_oneof![
        (0u8..3).prop_map(Ext::Dest),
        (0u8..5, 0u8..3, 0u8..4).prop_map(|(rtype, segs_left, naddrs)| Ext::Routing {
            rtype,
            segs_left,
            naddrs
        }),
        // Atomic fragments only: etherparse skips transport for real fragments.
        Just(Ext::Frag {
            offset: 0,
            more: false
        }),
    ]
}

fn arb_ip() -> impl Strategy<Value = Ip> {
    prop_oneof![
        (0usize..=10)
            .prop_flat_map(|words| proptest::collection::vec(any::<u8>(), words * 4))
            .prop_map(|options| Ip::V4 {
                options,
                frag: (0, false)
            }),
        (
            proptest::option::of(0u8..3),
            proptest::collection::vec(arb_ext(), 0..4)
        )
            .prop_map(|(hop, rest)| {
                let mut exts: Vec<Ext> = hop.map(Ext::Hop).into_iter().collect();
                exts.extend(rest);
                Ip::V6 { exts }
            }),
    ]
}

fn arb_l4() -> impl Strategy<Value = Transport> {
    prop_oneof![
        (0usize..=10)
            .prop_flat_map(|words| proptest::collection::vec(any::<u8>(), words * 4))
            .prop_map(|options| Transport::Tcp { options }),
        Just(Transport::Udp),
        // Protocols etherparse does not decode as transport.
        prop_oneof![Just(47u8), Just(50), Just(132)].prop_map(Transport::Other),
    ]
}

fn arb_spec() -> impl Strategy<Value = Spec> {
    let tag = (
        prop_oneof![Just(ethertype::VLAN), Just(ethertype::QINQ)],
        any::<u16>(),
    );
    (
        proptest::collection::vec(tag, 0..=2),
        arb_ip(),
        arb_l4(),
        proptest::collection::vec(any::<u8>(), 0..200),
        0usize..20,
    )
        .prop_map(|(vlans, ip, l4, payload, padding)| Spec {
            vlans,
            ip,
            l4,
            payload,
            padding,
        })
}

fn offset_in(buf: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - buf.as_ptr() as usize
}

/// What etherparse sees: l3 offset, l3 length, l4 offset, protocol, l4 length, payload
/// length, vlan count.
fn etherparse_view(buf: &[u8], start: Start) -> (usize, usize, usize, L4, usize, usize, u8) {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let p = match start {
        Start::Ethernet => SlicedPacket::from_ethernet(buf),
        Start::Ip => SlicedPacket::from_ip(buf),
    }
    .expect("etherparse rejects a valid frame");
    let (l3_at, l3_len, ip_payload) = match p.net.as_ref().expect("no IP layer") {
        NetSlice::Ipv4(ip) => {
            let h = ip.header();
            (offset_in(buf, h.slice()), h.slice().len(), ip.payload())
        }
        NetSlice::Ipv6(ip) => (
            offset_in(buf, ip.header().slice()),
            ip.header().slice().len() + ip.extensions().slice().len(),
            ip.payload(),
        ),
        NetSlice::Arp(_) => panic!("ARP"),
    };
    let (l4_at, l4, l4_len, payload_len) = match &p.transport {
        Some(TransportSlice::Tcp(t)) => (
            offset_in(buf, t.slice()),
            L4::Tcp,
            t.header_slice().len(),
            t.payload().len(),
        ),
        Some(TransportSlice::Udp(u)) => (
            offset_in(buf, u.slice()),
            L4::Udp,
            u.header_slice().len(),
            u.payload().len(),
        ),
        Some(other) => panic!("unexpected transport {other:?}"),
        None => (
            offset_in(buf, ip_payload.payload),
            L4::Other(ip_payload.ip_number.0),
            0,
            ip_payload.payload.len(),
        ),
    };
    (
        l3_at,
        l3_len,
        l4_at,
        l4,
        l4_len,
        payload_len,
        p.link_exts.len() as u8,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_on_arbitrary_bytes(buf in proptest::collection::vec(any::<u8>(), 0..160)) {
        for start in [Start::Ethernet, Start::Ip] {
            if let Ok(l) = parse(&buf, start) {
                assert_sane(&buf, &l);
            }
        }
    }

    /// Mostly-valid frames with a few bytes flipped reach much deeper than random bytes.
    #[test]
    fn never_panics_on_mutated_frames(
        s in arb_spec(),
        eth in any::<bool>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let start = if eth { Start::Ethernet } else { Start::Ip };
        let mut buf = build(&s, start).bytes;
        for (i, v) in flips {
            let i = i.index(buf.len());
            buf[i] = v;
        }
        for len in [buf.len(), cut.index(buf.len() + 1)] {
            if let Ok(l) = parse(&buf[..len], start) {
                assert_sane(&buf[..len], &l);
            }
        }
    }

    #[test]
    fn agrees_with_builder_and_etherparse(s in arb_spec(), eth in any::<bool>()) {
        let start = if eth { Start::Ethernet } else { Start::Ip };
        let b = build(&s, start);
        let l = parse(&b.bytes, start).expect("valid frame rejected");
        prop_assert_eq!(l, b.want);
        assert_sane(&b.bytes, &l);
        let (l3_at, l3_len, l4_at, l4, l4_len, payload_len, vlans) =
            etherparse_view(&b.bytes, start);
        prop_assert_eq!(l.l3_offset, l3_at);
        prop_assert_eq!(l.l3_len, l3_len);
        prop_assert_eq!(l.l4_offset, l4_at);
        prop_assert_eq!(l.l4, Some(l4));
        prop_assert_eq!(l.l4_len, l4_len);
        // etherparse reads an IPv6 payload length of 0 as "to the end of the slice"
        // (its jumbogram leniency), so with Ethernet padding it counts the padding as
        // payload; pvnet takes 0 as an empty payload (RFC 8200) and the builder agrees.
        let empty_v6 = l.l3 == Some(L3::Ipv6) && l.ip_end == l.l3_offset + 40;
        if !empty_v6 {
            prop_assert_eq!(l.payload_len(), payload_len);
        }
        prop_assert_eq!(l.vlans, vlans);
    }
}
