//! Per-frame checks: the fast fixed-offset path and the full classification, and the
//! flow key a frame belongs to.

use super::stats::{MalformedCause, PassCause};
use super::{Coalescer, TCP_RST, TCP_SYN, TCP_URG};
use crate::csum::{self, Sum};
use crate::offload::checksum::pseudo_header;
use crate::wire::{ethertype, ip_proto, parse, Layers, Start, L3, L4};

/// One's-complement sum of `data` as big-endian 16-bit words, folded to 16 bits (not
/// inverted). The coalescer verifies every checksum, so this is its hottest loop: it goes
/// straight to the checksum engine's dispatching kernel (AVX2 where available).
#[inline(always)]
pub(super) fn fold_sum(data: &[u8]) -> u16 {
    csum::fold64(csum::sum_slice(data))
}

/// Big-endian u16 at `at`.
#[inline]
pub(super) fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|x| u16::from_be_bytes([x[0], x[1]]))
}

/// The IP header fields a segment must share with the first one of its flow, packed:
/// IPv4 TOS, TTL and DF; IPv6 the first word (version, traffic class, flow label), next
/// header and hop limit.
#[inline(always)]
pub(super) fn ip_sig(f: &[u8], l3: usize, v6: bool) -> Option<u64> {
    let h = f.get(l3..l3 + 9)?;
    Some(if v6 {
        u64::from_ne_bytes([h[0], h[1], h[2], h[3], 0, 0, h[6], h[7]])
    } else {
        u64::from(h[1]) | u64::from(h[8]) << 8 | u64::from(h[6] & 0x40) << 16
    })
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
}

/// An IPv4 address as a [`FlowKey`] address.
#[inline]
pub(super) fn addr4(b: &[u8]) -> Option<u128> {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(b.get(..4)?);
    Some(u128::from_ne_bytes(a))
}

/// An IPv6 address as a [`FlowKey`] address.
#[inline]
pub(super) fn addr6(b: &[u8]) -> Option<u128> {
    Some(u128::from_ne_bytes(b.get(..16)?.try_into().ok()?))
}

impl FlowKey {
    pub(super) fn of(frame: &[u8], l: &Layers, proto: u8) -> Option<FlowKey> {
        let l3 = l.l3_offset;
        let mut k = FlowKey {
            proto,
            l2_len: u8::try_from(l.l2_len).ok()?,
            ..FlowKey::default()
        };
        match l.l3? {
            L3::Ipv4 => {
                k.src = addr4(frame.get(l3 + 12..l3 + 16)?)?;
                k.dst = addr4(frame.get(l3 + 16..l3 + 20)?)?;
            }
            L3::Ipv6 => {
                k.v6 = true;
                k.src = addr6(frame.get(l3 + 8..l3 + 24)?)?;
                k.dst = addr6(frame.get(l3 + 24..l3 + 40)?)?;
            }
        }
        let p = frame.get(l.l4_offset..l.l4_offset + 4)?;
        k.ports = u32::from_ne_bytes([p[0], p[1], p[2], p[3]]);
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
            ^ (u64::from(self.v6) << 8);
        (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
    }
}

/// A frame that passed every per-frame check and may join or start a flow.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Candidate<'f> {
    pub(super) frame: &'f [u8],
    pub(super) key: FlowKey,
    pub(super) digest: u32,
    pub(super) l3: usize,
    pub(super) l4: usize,
    pub(super) payload: usize,
    pub(super) pseudo_dst: usize,
    pub(super) v6: bool,
    pub(super) tcp: bool,
    /// TCP flags (0 for UDP).
    pub(super) flags: u8,
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
                let et = be16(frame, 12)?;
                let (ip, et) = if et == ethertype::VLAN || et == ethertype::QINQ {
                    (18, be16(frame, 16)?)
                } else {
                    (14, et)
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
        let (l4, pseudo) = if v6 {
            let h: &[u8; 40] = frame.get(ip..ip + 40)?.try_into().ok()?;
            if h[0] >> 4 != 6
                || ip + 40 + usize::from(u16::from_be_bytes([h[4], h[5]])) != frame.len()
            {
                return None;
            }
            key.proto = h[6];
            key.src = addr6(&h[8..24])?;
            key.dst = addr6(&h[24..40])?;
            let mut p = Sum::new();
            for w in h[8..40].chunks_exact(4) {
                p.add_u32(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
            }
            (ip + 40, p)
        } else {
            let h: &[u8; 20] = frame.get(ip..ip + 20)?.try_into().ok()?;
            let frag = u16::from_be_bytes([h[6], h[7]]);
            if h[0] != 0x45
                || ip + usize::from(u16::from_be_bytes([h[2], h[3]])) != frame.len()
                || frag & !0x4000 != 0
            {
                return None;
            }
            let w = |i: usize| u64::from(u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
            if csum::fold64(w(0) + w(4) + w(8) + w(12) + w(16)) != 0xFFFF {
                return None;
            }
            key.proto = h[9];
            key.src = addr4(&h[12..16])?;
            key.dst = addr4(&h[16..20])?;
            let mut p = Sum::new();
            p.add_u32(w(12) as u32);
            p.add_u32(w(16) as u32);
            (ip + 20, p)
        };
        let seg = frame.get(l4..)?;
        let tcp = match key.proto {
            ip_proto::TCP if self.cfg.tcp => true,
            ip_proto::UDP if self.cfg.udp => false,
            _ => return None,
        };
        let (hdr, flags) = if tcp {
            let h = seg.get(..20)?;
            let (hl, flags) = (usize::from(h[12] >> 4) * 4, h[13]);
            if hl < 20 || flags & (TCP_SYN | TCP_RST | TCP_URG) != 0 {
                return None;
            }
            (hl, flags)
        } else {
            let h = seg.get(..8)?;
            if usize::from(u16::from_be_bytes([h[4], h[5]])) != seg.len() || h[6..8] == [0, 0] {
                return None;
            }
            (8, 0)
        };
        if hdr >= seg.len() {
            return None;
        }
        key.ports = u32::from_ne_bytes([seg[0], seg[1], seg[2], seg[3]]);
        if self.cfg.verify_checksums {
            let mut p = pseudo;
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
            pseudo_dst: if v6 { ip + 24 } else { ip + 16 },
            v6,
            tcp,
            flags,
        })
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
        let key = FlowKey::of(frame, &l, proto);
        let fail = |c| Err((c, key));
        let Some(key) = key else {
            return Err((PassCause::Malformed, None));
        };
        if l.fragment {
            return fail(PassCause::Fragment);
        }
        let ip = l.l3_offset;
        if l3 == L3::Ipv4 {
            if l.l3_len != 20 {
                return fail(PassCause::Ipv4Options);
            }
            // Any flag but DF, or an offset: the kernel flushes these (reserved bit too).
            let frag = frame
                .get(ip + 6..ip + 8)
                .map_or(0xFFFF, |b| u16::from_be_bytes([b[0], b[1]]));
            if frag & !0x4000 != 0 {
                return fail(PassCause::Fragment);
            }
            if frame.get(ip..ip + 20).is_none_or(|h| fold_sum(h) != 0xFFFF) {
                return fail(PassCause::BadIpChecksum);
            }
        }
        if l.ip_end != frame.len() {
            return fail(PassCause::Padded);
        }
        if l.payload_offset >= l.ip_end {
            return fail(PassCause::NoPayload);
        }
        let flags = if tcp {
            frame.get(l.l4_offset + 13).copied().unwrap_or(0)
        } else {
            0
        };
        if flags & (TCP_SYN | TCP_RST | TCP_URG) != 0 {
            return fail(PassCause::Flags);
        }
        if !tcp {
            let c = frame.get(l.l4_offset + 6..l.l4_offset + 8);
            if c == Some(&[0, 0]) {
                // Zero is "no checksum" over IPv4 and invalid over IPv6.
                return fail(if l3 == L3::Ipv4 {
                    PassCause::UdpNoChecksum
                } else {
                    PassCause::BadChecksum
                });
            }
        }
        if self.cfg.verify_checksums {
            let seg = frame.get(l.l4_offset..l.ip_end).unwrap_or_default();
            let ok = pseudo_header(frame, &l, proto, seg.len() as u32).is_some_and(|mut s| {
                s.add_u16(fold_sum(seg));
                s.fold() == 0xFFFF
            });
            if !ok {
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
            pseudo_dst: l.pseudo_dst_offset,
            v6: l3 == L3::Ipv6,
            tcp,
            flags,
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
