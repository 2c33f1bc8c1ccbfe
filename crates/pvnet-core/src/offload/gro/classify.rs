//! Per-frame checks: the fast fixed-offset path and the full classification, and the
//! flow key a frame belongs to.
//!
//! Every header field the flow code needs is read here, once, into the [`Candidate`]:
//! merging and flushing never read a header field of an input frame again, so they have no
//! lookup that could fail and no default to fall back on. Offsets come from the wire views'
//! `field` constants; the fast path reads each header as a fixed-size array, so its field
//! reads need no bounds checks.

use core::ops::Range;

use super::stats::{MalformedCause, PassCause};
use super::tunnel::Tunnel;
use super::Coalescer;
use crate::csum::{self, Sum};
use crate::offload::checksum::pseudo_header;
use crate::wire::tcp::flags::{RST, SYN, URG};
use crate::wire::{
    ethernet, ethertype, ip_proto, ipv4, ipv6, parse, tcp, udp, vlan, Layers, Start, L3, L4,
};

/// The IPv4 Don't Fragment bit in the flags and fragment offset word (RFC 791; the IPv4
/// view keeps its flag bits to itself).
const IPV4_DF: u16 = 0x4000;
/// The first byte of an IPv4 header without options: version 4, 20 bytes.
const IPV4_NO_OPTIONS: u8 = 4 << 4 | (ipv4::MIN_HEADER_LEN / 4) as u8;
/// Source and destination port: the first four bytes of a TCP header and of a UDP header.
const PORTS: Range<usize> = tcp::field::SRC_PORT.start..tcp::field::DST_PORT.end;
const _: () =
    assert!(udp::field::SRC_PORT.start == PORTS.start && udp::field::DST_PORT.end == PORTS.end);

/// One's-complement sum of `data` as big-endian 16-bit words, folded to 16 bits (not
/// inverted). The coalescer verifies every checksum, so this is its hottest loop: it goes
/// straight to the checksum engine's dispatching kernel (AVX2 where available).
#[inline(always)]
pub(super) fn fold_sum(data: &[u8]) -> u16 {
    csum::fold64(csum::sum_slice(data))
}

/// Field range `r` of a header that starts at `base`.
#[inline(always)]
const fn at(base: usize, r: Range<usize>) -> Range<usize> {
    base + r.start..base + r.end
}

/// The big-endian u16 in field `r` of `b`, when `b` holds it.
#[inline(always)]
fn get16(b: &[u8], r: Range<usize>) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(r)?.try_into().ok()?))
}

/// The `N`-byte header that starts at `at` in `frame`, when the frame holds it.
#[inline(always)]
fn header<const N: usize>(frame: &[u8], at: usize) -> Option<&[u8; N]> {
    frame.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// The big-endian u16 of field `r` (a field constant of the header's view) of header `h`.
#[inline(always)]
fn be16<const N: usize>(h: &[u8; N], r: Range<usize>) -> u16 {
    u16::from_be_bytes(bytes(h, r.start))
}

/// The big-endian u32 of field `r` (a field constant of the header's view) of header `h`.
#[inline(always)]
fn be32<const N: usize>(h: &[u8; N], r: Range<usize>) -> u32 {
    u32::from_be_bytes(bytes(h, r.start))
}

/// The `M` bytes of header `h` from `start` (a field constant of the header's view).
#[inline(always)]
fn bytes<const M: usize, const N: usize>(h: &[u8; N], start: usize) -> [u8; M] {
    let mut out = [0u8; M];
    out.copy_from_slice(&h[start..start + M]);
    out
}

/// The IPv4 header fields a segment must share with the first one of its flow, packed:
/// TOS (DSCP and ECN), TTL and DF.
#[inline(always)]
fn ip_sig_v4(h: &[u8; ipv4::MIN_HEADER_LEN]) -> u64 {
    u64::from(h[ipv4::field::DSCP_ECN])
        | u64::from(h[ipv4::field::TTL]) << 8
        | u64::from(be16(h, ipv4::field::FLAGS_FRAG) & IPV4_DF) << 16
}

/// The IPv6 header fields a segment must share with the first one of its flow, packed:
/// the first word (version, traffic class, flow label), next header and hop limit.
#[inline(always)]
fn ip_sig_v6(h: &[u8; ipv6::HEADER_LEN]) -> u64 {
    u64::from(be32(h, ipv6::field::VER_TC_FLOW))
        | u64::from(h[ipv6::field::NEXT_HEADER]) << 32
        | u64::from(h[ipv6::field::HOP_LIMIT]) << 40
}

/// TCP option blocks of equal length byte-equal; the usual timestamp block (12 bytes)
/// without a call.
#[inline]
pub(super) fn same_options(a: &[u8], b: &[u8]) -> bool {
    match (<&[u8; 12]>::try_from(a), <&[u8; 12]>::try_from(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Flow identity apart from the link-layer header (compared byte-wise separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct FlowKey {
    /// Addresses as their wire bytes in native order (IPv4 in the first four bytes, the
    /// rest zero): equal keys are equal bytes, compared as two u128.
    pub(super) src: u128,
    pub(super) dst: u128,
    /// Source and destination port, as on the wire (native order).
    pub(super) ports: u32,
    pub(super) proto: u8,
    pub(super) v6: bool,
    pub(super) l2_len: u8,
    /// 0 for a plain flow; for one inside a UDP tunnel, non-zero and derived from the
    /// outer headers (which are compared in full when merging).
    pub(super) tunnel: u32,
}

/// An IPv4 address as a [`FlowKey`] address.
#[inline(always)]
fn addr4(b: [u8; 4]) -> u128 {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&b);
    u128::from_ne_bytes(a)
}

/// An IPv6 address as a [`FlowKey`] address.
#[inline(always)]
fn addr6(b: [u8; 16]) -> u128 {
    u128::from_ne_bytes(b)
}

impl FlowKey {
    /// The key of a parsed frame whose transport protocol is `proto`; `None` when the frame
    /// does not hold the addresses or ports `l` points at.
    pub(super) fn of(frame: &[u8], l: &Layers, proto: u8) -> Option<FlowKey> {
        let l3 = l.l3_offset;
        let mut k = FlowKey {
            proto,
            l2_len: u8::try_from(l.l2_len).ok()?,
            ..FlowKey::default()
        };
        match l.l3? {
            L3::Ipv4 => {
                let h = header::<{ ipv4::MIN_HEADER_LEN }>(frame, l3)?;
                k.src = addr4(bytes(h, ipv4::field::SRC.start));
                k.dst = addr4(bytes(h, ipv4::field::DST.start));
            }
            L3::Ipv6 => {
                let h = header::<{ ipv6::HEADER_LEN }>(frame, l3)?;
                k.v6 = true;
                k.src = addr6(bytes(h, ipv6::field::SRC.start));
                k.dst = addr6(bytes(h, ipv6::field::DST.start));
            }
        }
        let p = header::<4>(frame, l.l4_offset + PORTS.start)?;
        k.ports = u32::from_ne_bytes(*p);
        Some(k)
    }

    /// Cheap 32-bit digest, compared before the full key (one multiply).
    #[inline]
    pub(super) fn digest(&self) -> u32 {
        let a = self.src ^ self.dst.rotate_left(32);
        let x = (a as u64)
            ^ ((a >> 64) as u64)
            ^ (u64::from(self.ports) << 16)
            ^ u64::from(self.proto)
            ^ (u64::from(self.v6) << 8)
            ^ (u64::from(self.tunnel) << 32);
        (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
    }
}

/// A frame that passed every per-frame check and may join or start a flow, with every
/// header field the flow code needs.
///
/// Invariants (both classifications establish them): `l3 < l4 < payload < frame.len()`,
/// and `payload` fits in a u16 (so does every offset of a super-frame's headers). The
/// frame holds the IP header from `l3`, and the TCP header (options included) or the UDP
/// header from `l4`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Candidate<'f> {
    pub(super) frame: &'f [u8],
    pub(super) key: FlowKey,
    pub(super) digest: u32,
    /// Offset of the IP header.
    pub(super) l3: usize,
    /// Offset of the transport header.
    pub(super) l4: usize,
    /// Offset of the transport payload (the end of every header).
    pub(super) payload: usize,
    pub(super) v6: bool,
    pub(super) tcp: bool,
    /// TCP flags (0 for UDP).
    pub(super) flags: u8,
    /// The pseudo-header's addresses (source and final destination), summed and folded.
    pub(super) addr_sum: u16,
    /// [`ip_sig_v4`] / [`ip_sig_v6`] of the IP header.
    pub(super) ip_sig: u64,
    /// IPv4: the identification (IPv6 has none: 0).
    pub(super) ip_id: u16,
    /// TCP: the sequence and acknowledgment numbers (UDP: 0).
    pub(super) seq: u32,
    pub(super) ack: u32,
    /// The outer headers of a frame inside a UDP tunnel (the fields above are the inner
    /// packet's, offsets from the start of the whole frame).
    pub(super) tunnel: Option<Tunnel>,
}

impl Candidate<'_> {
    pub(super) fn payload_len(&self) -> usize {
        self.frame.len() - self.payload
    }
}

impl Coalescer {
    /// Fixed-offset classification of the common case: no or one VLAN tag, IPv4 with a
    /// 20-byte header or IPv6 without extension headers, TCP or UDP, no padding, and every
    /// per-frame check passing. Returns exactly the candidate [`Coalescer::classify`] would,
    /// or `None` whenever the frame is anything else (then `classify` decides). One checksum
    /// pass per frame: the IPv4 header is summed from its five words inline, the transport
    /// segment by the checksum engine.
    #[inline(always)]
    pub(super) fn fast_classify<'f>(&self, frame: &'f [u8], start: Start) -> Option<Candidate<'f>> {
        let (ip, v6) = match start {
            Start::Ip => (0, frame.first()? >> 4 == 6),
            Start::Ethernet => {
                let et = get16(frame, ethernet::field::ETHERTYPE)?;
                let (ip, et) = if vlan::is_tpid(et) {
                    const TAG: usize = ethernet::HEADER_LEN;
                    let inner = get16(frame, at(TAG, vlan::field::ETHERTYPE))?;
                    (TAG + vlan::HEADER_LEN, inner)
                } else {
                    (ethernet::HEADER_LEN, et)
                };
                match et {
                    ethertype::IPV4 => (ip, false),
                    ethertype::IPV6 => (ip, true),
                    _ => return None,
                }
            }
        };
        let mut key = FlowKey {
            l2_len: ip as u8,
            v6,
            ..FlowKey::default()
        };
        let (l4, addrs, ip_sig, ip_id) = if v6 {
            let h = header::<{ ipv6::HEADER_LEN }>(frame, ip)?;
            let end = ip + ipv6::HEADER_LEN + usize::from(be16(h, ipv6::field::PAYLOAD_LEN));
            if h[ipv6::field::VER_TC_FLOW.start] >> 4 != 6 || end != frame.len() {
                return None;
            }
            key.proto = h[ipv6::field::NEXT_HEADER];
            key.src = addr6(bytes(h, ipv6::field::SRC.start));
            key.dst = addr6(bytes(h, ipv6::field::DST.start));
            // Without extension headers the final destination is the header's own.
            let mut p = Sum::new();
            for w in h[ipv6::field::SRC.start..ipv6::field::DST.end].chunks_exact(4) {
                p.add_u32(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
            }
            (ip + ipv6::HEADER_LEN, p, ip_sig_v6(h), 0)
        } else {
            let h = header::<{ ipv4::MIN_HEADER_LEN }>(frame, ip)?;
            let end = ip + usize::from(be16(h, ipv4::field::TOTAL_LEN));
            // Any flag but DF, or an offset: a fragment (or the reserved bit).
            if h[ipv4::field::VER_IHL] != IPV4_NO_OPTIONS
                || end != frame.len()
                || be16(h, ipv4::field::FLAGS_FRAG) & !IPV4_DF != 0
            {
                return None;
            }
            let words: u64 = h
                .chunks_exact(4)
                .map(|w| u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]])))
                .sum();
            if csum::fold64(words) != 0xFFFF {
                return None;
            }
            key.proto = h[ipv4::field::PROTOCOL];
            key.src = addr4(bytes(h, ipv4::field::SRC.start));
            key.dst = addr4(bytes(h, ipv4::field::DST.start));
            let mut p = Sum::new();
            p.add_u32(be32(h, ipv4::field::SRC));
            p.add_u32(be32(h, ipv4::field::DST));
            let id = be16(h, ipv4::field::IDENT);
            (ip + ipv4::MIN_HEADER_LEN, p, ip_sig_v4(h), id)
        };
        let seg = frame.get(l4..)?;
        let tcp = match key.proto {
            ip_proto::TCP if self.cfg.tcp => true,
            ip_proto::UDP if self.cfg.udp => false,
            _ => return None,
        };
        let (hdr, flags, seq, ack, ports) = if tcp {
            let h = header::<{ tcp::MIN_HEADER_LEN }>(seg, 0)?;
            let t = tcp::Packet::new_unchecked(&h[..]);
            let (hl, flags) = (t.header_len(), t.flags());
            if hl < tcp::MIN_HEADER_LEN || flags & (SYN | RST | URG) != 0 {
                return None;
            }
            let (seq, ack) = (be32(h, tcp::field::SEQ), be32(h, tcp::field::ACK));
            (hl, flags, seq, ack, bytes(h, PORTS.start))
        } else {
            let h = header::<{ udp::HEADER_LEN }>(seg, 0)?;
            if usize::from(be16(h, udp::field::LENGTH)) != seg.len()
                || be16(h, udp::field::CHECKSUM) == 0
            {
                return None;
            }
            (udp::HEADER_LEN, 0, 0, 0, bytes(h, PORTS.start))
        };
        if hdr >= seg.len() {
            return None;
        }
        key.ports = u32::from_ne_bytes(ports);
        if self.cfg.verify_checksums {
            let mut p = addrs;
            p.add_u16(u16::from(key.proto));
            p.add_u32(seg.len() as u32);
            p.add_u16(fold_sum(seg));
            if p.fold() != 0xFFFF {
                return None;
            }
        }
        Some(Candidate {
            frame,
            digest: key.digest(),
            key,
            l3: ip,
            l4,
            payload: l4 + hdr,
            v6,
            tcp,
            flags,
            addr_sum: addrs.fold(),
            ip_sig,
            ip_id,
            seq,
            ack,
            tunnel: None,
        })
    }

    /// Count a frame whose headers are not where its parse said (a bug were it to happen:
    /// parse checked them) as malformed and truncated.
    #[cold]
    fn truncated(&mut self) -> PassCause {
        self.stats.malformed[MalformedCause::Truncated.index()] += 1;
        PassCause::Malformed
    }

    /// Per-frame checks. On refusal, the cause and (when the frame has ports) its flow key,
    /// so that its held flow can be flushed before it.
    pub(super) fn classify<'f>(
        &mut self,
        frame: &'f [u8],
        start: Start,
    ) -> Result<Candidate<'f>, (PassCause, Option<FlowKey>)> {
        let l = match parse(frame, start) {
            Ok(l) => l,
            Err(e) => {
                self.stats.malformed[MalformedCause::of(e.kind).index()] += 1;
                return Err((PassCause::Malformed, None));
            }
        };
        let Some(l3) = l.l3 else {
            return Err((PassCause::NotIp, None));
        };
        let (proto, tcp) = match l.l4 {
            Some(L4::Tcp) if self.cfg.tcp => (ip_proto::TCP, true),
            Some(L4::Udp) if self.cfg.udp => (ip_proto::UDP, false),
            None => return Err((PassCause::Fragment, None)),
            _ => return Err((PassCause::NotTcpUdp, None)),
        };
        let Some(key) = FlowKey::of(frame, &l, proto) else {
            return Err((self.truncated(), None));
        };
        let fail = |c| Err((c, Some(key)));
        if l.fragment {
            return fail(PassCause::Fragment);
        }
        let ip = l.l3_offset;
        let (ip_sig, ip_id) = match l3 {
            L3::Ipv4 => {
                if l.l3_len != ipv4::MIN_HEADER_LEN {
                    return fail(PassCause::Ipv4Options);
                }
                let Some(h) = header::<{ ipv4::MIN_HEADER_LEN }>(frame, ip) else {
                    return fail(self.truncated());
                };
                // Any flag but DF, or an offset: the kernel flushes these (reserved bit too).
                if be16(h, ipv4::field::FLAGS_FRAG) & !IPV4_DF != 0 {
                    return fail(PassCause::Fragment);
                }
                if fold_sum(h) != 0xFFFF {
                    return fail(PassCause::BadIpChecksum);
                }
                (ip_sig_v4(h), be16(h, ipv4::field::IDENT))
            }
            L3::Ipv6 => match header::<{ ipv6::HEADER_LEN }>(frame, ip) {
                Some(h) => (ip_sig_v6(h), 0),
                None => return fail(self.truncated()),
            },
        };
        if l.ip_end != frame.len() {
            return fail(PassCause::Padded);
        }
        if l.payload_offset >= l.ip_end {
            return fail(PassCause::NoPayload);
        }
        let (flags, seq, ack) = if tcp {
            let Some(h) = header::<{ tcp::MIN_HEADER_LEN }>(frame, l.l4_offset) else {
                return fail(self.truncated());
            };
            let t = tcp::Packet::new_unchecked(&h[..]);
            (t.flags(), t.seq_number(), t.ack_number())
        } else {
            (0, 0, 0)
        };
        if flags & (SYN | RST | URG) != 0 {
            return fail(PassCause::Flags);
        }
        if !tcp && get16(frame, at(l.l4_offset, udp::field::CHECKSUM)) == Some(0) {
            // Zero is "no checksum" over IPv4 and invalid over IPv6.
            return fail(if l3 == L3::Ipv4 {
                PassCause::UdpNoChecksum
            } else {
                PassCause::BadChecksum
            });
        }
        // A virtio hdr_len is 16 bits; parse's limits on extension headers keep every
        // header far below that.
        if u16::try_from(l.payload_offset).is_err() {
            return fail(self.truncated());
        }
        let (Some(addrs), Some(seg)) = (
            pseudo_header(frame, &l, 0, 0),
            frame.get(l.l4_offset..l.ip_end),
        ) else {
            return fail(self.truncated());
        };
        if self.cfg.verify_checksums {
            let mut s = addrs;
            s.add_u16(u16::from(proto));
            s.add_u32(seg.len() as u32);
            s.add_u16(fold_sum(seg));
            if s.fold() != 0xFFFF {
                return fail(PassCause::BadChecksum);
            }
        }
        Ok(Candidate {
            frame,
            digest: key.digest(),
            key,
            l3: ip,
            l4: l.l4_offset,
            payload: l.payload_offset,
            v6: l3 == L3::Ipv6,
            tcp,
            flags,
            addr_sum: addrs.fold(),
            ip_sig,
            ip_id,
            seq,
            ack,
            tunnel: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::gro::GroConfig;
    use proptest::prelude::*;

    /// A valid frame: `l2` 0 (tun), 14 or 18 (one VLAN tag); checksums right.
    fn frame(l2: usize, v6: bool, tcp: bool, payload: usize, opts: usize) -> Vec<u8> {
        let mut f = vec![0u8; l2];
        if l2 >= 14 {
            f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
            let et: u16 = if v6 { 0x86DD } else { 0x0800 };
            if l2 == 18 {
                f[12..14].copy_from_slice(&[0x81, 0]);
                f[14..16].copy_from_slice(&[0, 7]);
            }
            f[l2 - 2..l2].copy_from_slice(&et.to_be_bytes());
        }
        let l4_len = if tcp { 20 + opts } else { 8 } + payload;
        let proto = if tcp { ip_proto::TCP } else { ip_proto::UDP };
        let ip = f.len();
        if v6 {
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4_len as u16).to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
            f.extend((0..32).map(|i| i as u8 ^ 0xa5));
        } else {
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 9, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
            let c = csum::checksum(&f[ip..ip + 20]);
            f[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
        }
        let l4 = f.len();
        f.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
        if tcp {
            f.extend_from_slice(&[0, 0, 1, 0, 0, 0, 0, 7, ((5 + opts / 4) << 4) as u8, 0x10]);
            f.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
            f.extend((0..opts).map(|_| 1u8));
        } else {
            f.extend_from_slice(&(l4_len as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0]);
        }
        f.extend((0..payload).map(|i| (i * 7) as u8));
        fix_l4(&mut f, ip, l4, v6, tcp);
        f
    }

    fn fix_l4(f: &mut [u8], ip: usize, l4: usize, v6: bool, tcp: bool) {
        let at = l4 + if tcp { 16 } else { 6 };
        if at + 2 > f.len() {
            return;
        }
        f[at..at + 2].fill(0);
        let proto = if tcp { ip_proto::TCP } else { ip_proto::UDP };
        let len = (f.len() - l4) as u32;
        let mut s = if v6 {
            let a: [u8; 16] = f[ip + 8..ip + 24].try_into().unwrap();
            let b: [u8; 16] = f[ip + 24..ip + 40].try_into().unwrap();
            csum::pseudo_header_v6(&a, &b, proto, len)
        } else {
            let a: [u8; 4] = f[ip + 12..ip + 16].try_into().unwrap();
            let b: [u8; 4] = f[ip + 16..ip + 20].try_into().unwrap();
            csum::pseudo_header_v4(a, b, proto, len)
        };
        s.add(&f[l4..]);
        let c = s.checksum();
        f[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn fast_path_takes_the_common_frames() {
        let gro = Coalescer::default();
        for l2 in [0, 14, 18] {
            for (v6, tcp) in [(false, true), (true, true), (false, false), (true, false)] {
                let f = frame(l2, v6, tcp, 100, 12);
                let start = if l2 == 0 { Start::Ip } else { Start::Ethernet };
                let fast = gro.fast_classify(&f, start);
                assert!(fast.is_some(), "l2 {l2} v6 {v6} tcp {tcp}");
                let mut slow = Coalescer::default();
                assert_eq!(fast, slow.classify(&f, start).ok());
            }
        }
    }

    proptest! {
        /// Whatever the fast path accepts, the full classification accepts identically.
        #[test]
        fn fast_path_agrees_with_classify(
            l2 in prop_oneof![Just(0usize), Just(14), Just(18)],
            v6 in any::<bool>(),
            tcp in any::<bool>(),
            payload in 0usize..64,
            opts in prop_oneof![Just(0usize), Just(12)],
            edits in proptest::collection::vec((0usize..96, any::<u8>()), 0..4),
            truncate in proptest::option::of(0usize..160),
            refix in any::<bool>(),
            cfg_tcp in any::<bool>(),
            cfg_udp in any::<bool>(),
            verify in any::<bool>(),
        ) {
            let mut f = frame(l2, v6, tcp, payload, opts);
            for (at, b) in edits {
                if let Some(x) = f.get_mut(at) {
                    *x = b;
                }
            }
            let ip = l2;
            let l4 = ip + if v6 { 40 } else { 20 };
            if refix && f.len() >= l4 {
                if !v6 {
                    f[ip + 10..ip + 12].fill(0);
                    let c = csum::checksum(&f[ip..ip + 20]);
                    f[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
                }
                fix_l4(&mut f, ip, l4, v6, tcp);
            }
            if let Some(n) = truncate {
                f.truncate(n);
            }
            let cfg = GroConfig {
                tcp: cfg_tcp,
                udp: cfg_udp,
                verify_checksums: verify,
                ..GroConfig::default()
            };
            let start = if l2 == 0 { Start::Ip } else { Start::Ethernet };
            let mut gro = Coalescer::new(cfg);
            if let Some(c) = gro.fast_classify(&f, start) {
                prop_assert_eq!(Some(c), gro.classify(&f, start).ok());
            }
        }

        #[test]
        fn fold_sum_matches_reference(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let mut s = Sum::new();
            s.add(&data);
            prop_assert_eq!(fold_sum(&data), s.fold());
        }
    }
}
