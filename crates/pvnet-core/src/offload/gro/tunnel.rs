//! GRO of UDP tunnels (VXLAN, GENEVE): the packet inside merges by the ordinary rules, and
//! the outer headers must agree as the kernel's `udp_gro_receive` → `vxlan_gro_receive` /
//! `geneve_gro_receive` → `eth_gro_receive` chain and `inet_gro_receive` /
//! `ipv6_gro_receive` on the outer IP header demand.
//!
//! The kernel knows a tunnel by the socket bound to the destination port; pvnet, which has
//! no sockets, by the IANA ports (VXLAN 4789, GENEVE 6081), when
//! [`GroConfig::tunnels`](super::GroConfig::tunnels) is on. A frame to one of them that
//! is no mergeable tunnel frame (outer IPv4 options or IPv6 extension headers, a tunnel
//! header pvnet does not merge: VXLAN without the I flag, GENEVE of another version, with
//! the O bit or not carrying Ethernet) goes the ordinary way.
//!
//! Outer rules, per segment against the flow's first one:
//! - every byte before the inner IP header is equal except the outer IP length, IPv4 ID
//!   and header checksum, and the outer UDP length and checksum: outer Ethernet and VLAN
//!   tags, outer TOS/TTL/DF/addresses (or the IPv6 first word, hop limit, addresses),
//!   UDP ports, the whole VXLAN header or GENEVE header with its options, and the inner
//!   Ethernet header (with its VLAN tag);
//! - the outer IPv4 header checksum is right, and its ID is the first segment's + n for the
//!   n-th (a fixed outer ID, which the kernel merges under DF, is not merged here: a virtio
//!   header cannot say which of outer and inner IDs are fixed);
//! - the outer UDP checksum is zero in every segment or in none (`!uh->check ^
//!   !uh2->check`), and when present it verifies (a zero one is accepted over IPv6 as
//!   well, as GRO's `skb_gro_checksum_validate_zero_check` does);
//! - the outer IP packet fills the frame and the UDP length matches it.
//!
//! The inner packet must also keep an incrementing IPv4 ID (same reason as the outer).
//!
//! At flush the super-frame gets, besides the inner header updates, the outer IP length
//! (IPv4 header checksum refilled) and UDP length, the outer UDP checksum field holding the
//! pseudo-header sum when the segments had one (`udp_gro_complete`:
//! SKB_GSO_UDP_TUNNEL_CSUM) or 0, and GSO metadata with
//! [`UdpTunnel`](crate::frame::UdpTunnel) `{ inner_nh, csum }`: what the tunnel segmenter
//! turns back into the same segments.

use super::classify::{fold_sum, Candidate, FlowKey};
use super::stats::PassCause;
use super::Coalescer;
use crate::csum::Sum;
use crate::wire::{ethernet, ipv4, ipv6, udp, Start};

/// UDP destination port of VXLAN (RFC 7348).
pub const VXLAN_PORT: u16 = 4789;
/// UDP destination port of GENEVE (RFC 8926).
pub const GENEVE_PORT: u16 = 6081;
/// VXLAN and the fixed part of GENEVE: 8 bytes.
const TUNNEL_HDR_LEN: usize = 8;
/// VXLAN flags: the VNI is valid (RFC 7348 "I" flag).
const VXLAN_FLAG_I: u8 = 0x08;
/// GENEVE: version (2 bits) and option length in 4-byte words (6 bits).
const GENEVE_VER_OPTLEN: usize = 0;
/// GENEVE: the O (control packet) and C (critical options) bits.
const GENEVE_FLAGS: usize = 1;
const GENEVE_OAM: u8 = 0x80;
/// GENEVE: the protocol of the payload; Ethernet (Transparent Ethernet Bridging).
const GENEVE_PROTO: core::ops::Range<usize> = 2..4;
const ETH_P_TEB: u16 = 0x6558;
/// The IPv4 Don't Fragment bit (any other flag or an offset: a fragment).
const IPV4_DF: u16 = 0x4000;

/// The outer headers of a tunnel candidate or flow, and the inner packet's layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tunnel {
    /// Offset of the outer IP header.
    pub(super) l3: usize,
    pub(super) v6: bool,
    /// Offset of the outer UDP header.
    pub(super) th: usize,
    /// The outer UDP checksum is present (non-zero).
    pub(super) csum: bool,
    /// Outer IPv4 identification (0 over IPv6).
    pub(super) ip_id: u16,
    /// The outer pseudo-header's addresses, summed and folded.
    pub(super) addr_sum: u16,
}

/// The outer headers of a tunnel frame, before the inner packet is looked at.
struct Outer {
    tunnel: Tunnel,
    /// Where the inner Ethernet header starts.
    inner_l2: usize,
    /// Tunnel identity for the flow key: the outer ports and the VNI.
    ident: u32,
}

impl Coalescer {
    /// A frame in a UDP tunnel as a candidate (its inner packet's, with the outer headers
    /// alongside), or why it passes (with its flow key, to flush its held flow first).
    /// `None`: not a tunnel frame this coalescer merges; the ordinary path decides.
    pub(super) fn tunnel_classify<'f>(
        &mut self,
        frame: &'f [u8],
        start: Start,
    ) -> Option<Result<Candidate<'f>, (PassCause, Option<FlowKey>)>> {
        if start != Start::Ethernet || !self.cfg.tunnels {
            return None;
        }
        let outer = outer_of(frame)?;
        let t = outer.tunnel;
        // Outer checksums before anything merges on them.
        let bad = if t.v6 {
            false
        } else {
            let h = frame.get(t.l3..t.l3 + ipv4::MIN_HEADER_LEN)?;
            fold_sum(h) != 0xFFFF
        };
        if bad {
            return Some(Err((PassCause::BadIpChecksum, None)));
        }
        if t.csum && self.cfg.verify_checksums {
            let mut s = Sum::new();
            s.add_u16(t.addr_sum);
            s.add_u16(u16::from(crate::wire::ip_proto::UDP));
            s.add_u32((frame.len() - t.th) as u32);
            s.add_u16(fold_sum(frame.get(t.th..)?));
            if s.fold() != 0xFFFF {
                return Some(Err((PassCause::BadChecksum, None)));
            }
        }
        let inner_frame = frame.get(outer.inner_l2..)?;
        let tag = |mut k: FlowKey| {
            // The inner header's link layer is compared with the outer headers, in
            // `same_outer`: the key only keeps tunnel and plain flows apart.
            k.l2_len = 0;
            k.tunnel = outer.ident.rotate_left(7) ^ u32::from(t.addr_sum) | 1;
            k
        };
        let base = outer.inner_l2;
        let fast = self.fast_classify(inner_frame, Start::Ethernet);
        let mut c = match fast.map_or_else(|| self.classify(inner_frame, Start::Ethernet), Ok) {
            Ok(c) => c,
            Err((cause, key)) => return Some(Err((cause, key.map(tag)))),
        };
        c.frame = frame;
        c.l3 += base;
        c.l4 += base;
        c.payload += base;
        c.key = tag(c.key);
        c.digest = c.key.digest();
        // Every offset of a super-frame's headers must fit a virtio u16.
        if u16::try_from(c.payload).is_err() {
            return Some(Err((PassCause::Malformed, Some(c.key))));
        }
        // The inner layers are parsed once per flow, when it starts (`start_flow`).
        c.tunnel = Some(t);
        Some(Ok(c))
    }
}

/// Where the outer IP and UDP headers are when `frame` may be UDP to a tunnel port, and
/// whether the IP is IPv6: a look at fixed offsets that keeps everything else off this
/// path. Outer headers without IPv4 options or IPv6 extension headers, under at most one
/// VLAN tag (the kernel's tunnel GRO sees no more on a switch port either).
#[inline(always)]
fn maybe_tunnel(frame: &[u8]) -> Option<(usize, usize, bool)> {
    let get = |i: usize| frame.get(i).copied().unwrap_or(0);
    let et = |i: usize| u16::from_be_bytes([get(i), get(i + 1)]);
    let mut ip = ethernet::HEADER_LEN;
    let mut t = et(ethernet::field::ETHERTYPE.start);
    if crate::wire::vlan::is_tpid(t) {
        t = et(ip + crate::wire::vlan::field::ETHERTYPE.start);
        ip += crate::wire::vlan::HEADER_LEN;
    }
    let (th, v6) = match t {
        crate::wire::ethertype::IPV4
            if get(ip + ipv4::field::PROTOCOL) == crate::wire::ip_proto::UDP =>
        {
            (ip + ipv4::MIN_HEADER_LEN, false)
        }
        crate::wire::ethertype::IPV6
            if get(ip + ipv6::field::NEXT_HEADER) == crate::wire::ip_proto::UDP =>
        {
            (ip + ipv6::HEADER_LEN, true)
        }
        _ => return None,
    };
    matches!(
        et(th + udp::field::DST_PORT.start),
        VXLAN_PORT | GENEVE_PORT
    )
    .then_some((ip, th, v6))
}

/// The outer headers of `frame` when it is a tunnel frame that may merge.
fn outer_of(frame: &[u8]) -> Option<Outer> {
    let (l3, th, v6) = maybe_tunnel(frame)?;
    // The IP packet fills the frame, is no fragment, and has no options (what parse
    // would find, read at the offsets `maybe_tunnel` found).
    let ip = frame.get(l3..th)?;
    let be16 =
        |b: &[u8], r: core::ops::Range<usize>| u16::from_be_bytes([b[r.start], b[r.start + 1]]);
    let mut addrs = Sum::new();
    let ip_id = if v6 {
        let fills = usize::from(be16(ip, ipv6::field::PAYLOAD_LEN)) == frame.len() - th;
        if ip[ipv6::field::VER_TC_FLOW.start] >> 4 != 6 || !fills {
            return None;
        }
        addrs.add(&ip[ipv6::field::SRC.start..ipv6::field::DST.end]);
        0
    } else {
        let fills = usize::from(be16(ip, ipv4::field::TOTAL_LEN)) == frame.len() - l3;
        let fragment = be16(ip, ipv4::field::FLAGS_FRAG) & !IPV4_DF != 0;
        if ip[ipv4::field::VER_IHL] != 0x45 || !fills || fragment {
            return None;
        }
        addrs.add(&ip[ipv4::field::SRC.start..ipv4::field::DST.end]);
        be16(ip, ipv4::field::IDENT)
    };
    let addr_sum = addrs.fold();
    let u = frame.get(th..th + udp::HEADER_LEN)?;
    let be = |r: core::ops::Range<usize>| u16::from_be_bytes([u[r.start], u[r.start + 1]]);
    if usize::from(be(udp::field::LENGTH)) != frame.len() - th {
        return None;
    }
    let hdr = th + udp::HEADER_LEN;
    let h = frame.get(hdr..hdr + TUNNEL_HDR_LEN)?;
    let vni = u32::from_be_bytes([0, h[4], h[5], h[6]]);
    let inner_l2 = match be(udp::field::DST_PORT) {
        VXLAN_PORT if h[0] & VXLAN_FLAG_I != 0 => hdr + TUNNEL_HDR_LEN,
        GENEVE_PORT => {
            let proto = u16::from_be_bytes([h[GENEVE_PROTO.start], h[GENEVE_PROTO.start + 1]]);
            if h[GENEVE_VER_OPTLEN] >> 6 != 0
                || h[GENEVE_FLAGS] & GENEVE_OAM != 0
                || proto != ETH_P_TEB
            {
                return None;
            }
            hdr + TUNNEL_HDR_LEN + usize::from(h[GENEVE_VER_OPTLEN] & 0x3f) * 4
        }
        _ => return None,
    };
    // Room for the inner Ethernet header at least; the inner parse checks the rest.
    if inner_l2 + ethernet::HEADER_LEN >= frame.len() {
        return None;
    }
    let ports = u32::from_ne_bytes([u[0], u[1], u[2], u[3]]);
    Some(Outer {
        tunnel: Tunnel {
            l3,
            v6,
            th,
            csum: be(udp::field::CHECKSUM) != 0,
            ip_id,
            addr_sum,
        },
        inner_l2,
        ident: ports ^ vni.rotate_left(16),
    })
}

/// Whether candidate `c` (tunnel `b`) may follow the `count` segments of the flow whose
/// first segment's headers are `held` (tunnel `a`), by the outer rules of the module
/// documentation. The inner geometry (`c.l3`) was already found equal.
pub(super) fn same_outer(
    held: &[u8],
    a: &Tunnel,
    c: &Candidate<'_>,
    b: &Tunnel,
    count: u16,
) -> bool {
    if a.l3 != b.l3 || a.v6 != b.v6 || a.th != b.th || a.csum != b.csum {
        return false;
    }
    if !a.v6 && b.ip_id.wrapping_sub(a.ip_id) != count {
        return false;
    }
    let (Some(x), Some(y)) = (held.get(..c.l3), c.frame.get(..c.l3)) else {
        return false;
    };
    // Byte-equal but for the fields that differ per segment.
    let skip: [core::ops::Range<usize>; 3] = if a.v6 {
        [
            at(a.l3, ipv6::field::PAYLOAD_LEN),
            at(a.th, udp::field::LENGTH),
            at(a.th, udp::field::CHECKSUM),
        ]
    } else {
        [
            a.l3 + ipv4::field::TOTAL_LEN.start..a.l3 + ipv4::field::IDENT.end,
            at(a.l3, ipv4::field::CHECKSUM),
            a.th + udp::field::LENGTH.start..a.th + udp::field::CHECKSUM.end,
        ]
    };
    let mut from = 0;
    for r in skip {
        if x.get(from..r.start) != y.get(from..r.start) {
            return false;
        }
        from = r.end;
    }
    x.get(from..) == y.get(from..)
}

fn at(base: usize, r: core::ops::Range<usize>) -> core::ops::Range<usize> {
    base + r.start..base + r.end
}

/// Finish the outer headers of a tunnel super-frame `len` bytes long whose headers are
/// `buf` (`udp_gro_complete` and the outer `inet_gro_complete` / `ipv6_gro_complete`).
pub(super) fn finish_outer(buf: &mut [u8], t: &Tunnel, len: usize) {
    // Lengths fit 16 bits: merging keeps the outer IP length within max_size
    // (`Slot::ip_len` counts from the outer header), and the UDP datagram is part of it.
    let ip_len = (len - t.l3) as u16;
    let udp_len = (len - t.th) as u16;
    if t.v6 {
        let mut ip = ipv6::Packet::new_unchecked(&mut buf[t.l3..]);
        ip.set_payload_len(ip_len - ipv6::HEADER_LEN as u16);
    } else {
        let mut ip = ipv4::Packet::new_unchecked(&mut buf[t.l3..]);
        ip.set_total_len(ip_len);
        ip.fill_checksum();
    }
    let mut u = udp::Packet::new_unchecked(&mut buf[t.th..]);
    u.set_len(udp_len);
    let check = if t.csum {
        let mut s = Sum::new();
        s.add_u16(t.addr_sum);
        s.add_u16(u16::from(crate::wire::ip_proto::UDP));
        s.add_u32(u32::from(udp_len));
        s.fold()
    } else {
        0
    };
    u.set_checksum(check);
}
