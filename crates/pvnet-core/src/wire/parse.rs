use super::{
    ethernet, ethertype, ip_proto, ipv4, ipv6, tcp, udp, vlan, Layer, Layers, ParseError,
    ParseErrorKind, L3, L4,
};

/// Where parsing starts: at an Ethernet header (tap, AF_PACKET, pcap) or at the IP header
/// (tun).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At an Ethernet header (tap, AF_PACKET, pcap).
    Ethernet,
    /// At the IP header, IPv4 or IPv6 by the version nibble (tun).
    Ip,
}

/// Most VLAN tags pvnet strips (an S-tag and a C-tag).
pub const MAX_VLAN_TAGS: u8 = 2;

fn err(layer: Layer, offset: usize, kind: ParseErrorKind) -> ParseError {
    ParseError {
        layer,
        offset,
        kind,
    }
}

/// Parse a frame and return the offsets of its layers.
///
/// Every length field is checked against the buffer and against the enclosing layer, so the
/// offsets returned can be used to slice `buf` without further checks:
/// `l3_offset ≤ l4_offset ≤ payload_offset ≤ ip_end ≤ buf.len()`. Checksums are not
/// verified. For a non-IP EtherType all of `l3_offset`, `l4_offset`, `payload_offset` and
/// `ip_end` are `l2_len`.
pub fn parse(buf: &[u8], start: Start) -> Result<Layers, ParseError> {
    let mut l = Layers::default();
    l.ethertype = match start {
        Start::Ethernet => parse_l2(buf, &mut l)?,
        Start::Ip => match buf.first().map(|b| b >> 4) {
            Some(4) => ethertype::IPV4,
            Some(6) => ethertype::IPV6,
            Some(v) => return Err(err(Layer::Ipv4, 0, ParseErrorKind::BadVersion(v))),
            None => {
                return Err(err(
                    Layer::Ipv4,
                    0,
                    ParseErrorKind::Truncated {
                        needed: ipv4::MIN_HEADER_LEN,
                        available: 0,
                    },
                ))
            }
        },
    };
    l.l3_offset = l.l2_len;
    let upper = match l.ethertype {
        ethertype::IPV4 => parse_ipv4(buf, &mut l)?,
        ethertype::IPV6 => parse_ipv6(buf, &mut l)?,
        _ => {
            l.l4_offset = l.l2_len;
            l.payload_offset = l.l2_len;
            l.ip_end = l.l2_len;
            return Ok(l);
        }
    };
    l.l4_offset = l.l3_offset + l.l3_len;
    l.payload_offset = l.l4_offset;
    if let Some(upper) = upper {
        parse_l4(buf, &mut l, upper)?;
    }
    Ok(l)
}

/// Fill `l2_len` and `vlans`; return the innermost EtherType.
fn parse_l2(buf: &[u8], l: &mut Layers) -> Result<u16, ParseError> {
    let eth = ethernet::Frame::new_checked(buf).map_err(|k| err(Layer::Ethernet, 0, k))?;
    let mut et = eth.ethertype();
    l.l2_len = ethernet::HEADER_LEN;
    while vlan::is_tpid(et) {
        let at = l.l2_len;
        if l.vlans == MAX_VLAN_TAGS {
            return Err(err(Layer::Vlan, at, ParseErrorKind::TooManyVlanTags));
        }
        let rest = buf.get(at..).unwrap_or_default();
        let tag = vlan::Tag::new_checked(rest).map_err(|k| err(Layer::Vlan, at, k))?;
        et = tag.ethertype();
        l.vlans += 1;
        l.l2_len += vlan::HEADER_LEN;
    }
    Ok(et)
}

/// The upper layer as the IP layer announces it.
#[derive(Clone, Copy)]
struct Upper {
    proto: u8,
    /// First fragment of several: the transport header is here, the rest of the datagram
    /// is in later fragments.
    partial: bool,
}

/// Fill the L3 fields for IPv4; return the upper layer unless this is a non-first
/// fragment.
fn parse_ipv4(buf: &[u8], l: &mut Layers) -> Result<Option<Upper>, ParseError> {
    let at = l.l3_offset;
    let fail = |k| err(Layer::Ipv4, at, k);
    let rest = buf.get(at..).unwrap_or_default();
    // Version first: a tun packet that is not IPv4 should not be reported as "truncated".
    if let Some(v) = rest.first().map(|b| b >> 4).filter(|&v| v != 4) {
        return Err(fail(ParseErrorKind::BadVersion(v)));
    }
    let ip = ipv4::Packet::new_checked(rest).map_err(fail)?;
    l.l3 = Some(L3::Ipv4);
    l.l3_len = ip.header_len();
    l.ip_end = at + usize::from(ip.total_len());
    l.pseudo_dst_offset = at + ipv4::DST_ADDR_OFFSET;
    l.fragment = ip.is_fragment();
    Ok((ip.frag_offset() == 0).then_some(Upper {
        proto: ip.protocol(),
        partial: ip.more_frags(),
    }))
}

/// Fill the L3 fields for IPv6, extension headers included; return the upper layer unless
/// this is a non-first fragment.
fn parse_ipv6(buf: &[u8], l: &mut Layers) -> Result<Option<Upper>, ParseError> {
    let at = l.l3_offset;
    let fail = |k| err(Layer::Ipv6, at, k);
    let rest = buf.get(at..).unwrap_or_default();
    if let Some(v) = rest.first().map(|b| b >> 4).filter(|&v| v != 6) {
        return Err(fail(ParseErrorKind::BadVersion(v)));
    }
    let ip = ipv6::Packet::new_checked(rest).map_err(fail)?;
    // Payload length 0 with a Hop-by-Hop header may announce a jumbogram (RFC 2675), whose
    // real length is in a Hop-by-Hop option; pvnet does not take them, and guessing the
    // length from the buffer would let link padding into the payload. Without Hop-by-Hop,
    // 0 is simply an empty payload (e.g. next header 59).
    if ip.payload_len() == 0 && ip.next_header() == ip_proto::HOPOPT {
        return Err(fail(ParseErrorKind::BadTotalLength {
            claimed: ip.total_len(),
            available: rest.len(),
        }));
    }
    let exts_at = at + ipv6::HEADER_LEN;
    let chain = ipv6::walk_ext_headers(ip.next_header(), ip.payload())
        .map_err(|e| err(Layer::Ipv6Ext, exts_at + e.offset, e.kind))?;
    l.l3 = Some(L3::Ipv6);
    l.l3_len = ipv6::HEADER_LEN + chain.len;
    l.ip_end = at + ip.total_len();
    l.pseudo_dst_offset = match chain.final_dst {
        Some(o) => exts_at + o,
        None => at + ipv6::DST_ADDR_OFFSET,
    };
    l.fragment = chain.fragment.is_some();
    match chain.fragment {
        Some(f) if f.offset != 0 => Ok(None),
        f => Ok(Some(Upper {
            proto: chain.upper,
            // An atomic fragment (offset 0, no more) is a whole datagram.
            partial: f.is_some_and(|f| f.more),
        })),
    }
}

/// Fill the L4 fields from `l4_offset`, inside the IP packet (`..ip_end`).
fn parse_l4(buf: &[u8], l: &mut Layers, upper: Upper) -> Result<(), ParseError> {
    let at = l.l4_offset;
    let seg = buf.get(at..l.ip_end).unwrap_or_default();
    let (l4, len) = match upper.proto {
        ip_proto::TCP => {
            let tcp = tcp::Packet::new_checked(seg).map_err(|k| err(Layer::Tcp, at, k))?;
            (L4::Tcp, tcp.header_len())
        }
        ip_proto::UDP => {
            let fail = |k| err(Layer::Udp, at, k);
            if seg.len() < udp::HEADER_LEN {
                return Err(fail(ParseErrorKind::Truncated {
                    needed: udp::HEADER_LEN,
                    available: seg.len(),
                }));
            }
            let claimed = usize::from(udp::Packet::new_unchecked(seg).len());
            // The first fragment of a datagram holds only its start: its UDP length covers
            // the later fragments too.
            if claimed < udp::HEADER_LEN || (!upper.partial && claimed != seg.len()) {
                return Err(fail(ParseErrorKind::BadUdpLength {
                    claimed,
                    expected: seg.len(),
                }));
            }
            (L4::Udp, udp::HEADER_LEN)
        }
        other => (L4::Other(other), 0),
    };
    l.l4 = Some(l4);
    l.l4_len = len;
    l.payload_offset = at + len;
    Ok(())
}
