//! UDP tunnel super-frames (VXLAN, GENEVE: SKB_GSO_UDP_TUNNEL and _CSUM).
//!
//! As in the kernel (`__skb_udp_tunnel_segment`, then `inet_gso_segment` /
//! `ipv6_gso_segment` for the outer IP header), the packet inside the tunnel is segmented by
//! the ordinary loops, with everything in front of the inner IP header (outer Ethernet, IP
//! and UDP, the tunnel header, the inner Ethernet header) riding in every header block as
//! if it were a link-layer header; then each segment's outer headers are fixed:
//!
//! - outer IPv4: total length, ID + i (the first segment keeps the super-frame's; unless
//!   [`GsoOptions::fixed_id`](super::GsoOptions)), header checksum; outer IPv6: payload
//!   length;
//! - outer UDP: length; checksum 0 (SKB_GSO_UDP_TUNNEL), or (SKB_GSO_UDP_TUNNEL_CSUM)
//!   complete, a 0 result sent as 0xFFFF. The checksum covers the inner packet, whose own
//!   transport checksum is complete (Full) or will be completed by whoever takes the
//!   partial one (Partial): either way that part sums to the complement of its
//!   pseudo-header sum (local checksum offload, Documentation/networking/checksum-offloads),
//!   so only the header bytes are summed, never the payload again. Of those, the outer
//!   UDP ports, the tunnel header and the inner Ethernet header are the same in every
//!   segment, an inner IPv4 header sums to zero (its own checksum is right), and an inner
//!   IPv6 header differs only in its payload length: the per-segment work is a few
//!   additions, as for the outer IPv4 header checksum.
//!
//! The super-frame's outer checksum field is ignored: the kernel adjusts what the sender
//! left there (the pseudo-header sum, for a sender that follows the rules), pvnet computes
//! it from scratch, and writes 0 for the variant without checksum, where the kernel would
//! copy whatever was there.

use super::buf::SegmentBuf;
use super::setup::walk_v6;
use super::{mangle0, words, GsoError};
use crate::csum::Sum;
use crate::frame::{Gso, OffloadMeta};
use crate::vnet::Validated;
use crate::wire::{ip_proto, ipv4, ipv6, udp, Layers, L3, L4};

/// What every segment's outer headers need, worked out once per super-frame.
#[derive(Debug, Clone, Copy)]
pub(super) struct Outer {
    l3: L3,
    l3_offset: usize,
    /// The outer UDP header.
    th: usize,
    /// The inner transport header: the outer checksum sums the header bytes up to it.
    inner_l4: usize,
    /// Compute the outer UDP checksum.
    csum: bool,
    /// The super-frame's outer IPv4 identification.
    ip4_id: u16,
    /// Outer pseudo-header sum without the length.
    pseudo: Sum,
    /// Outer IPv4 header sum without total length, ID and checksum.
    ip4: u64,
    /// What the outer UDP checksum of every segment shares, when the headers between the
    /// outer UDP header and the inner IP header are of even length (else `None`, and the
    /// header bytes are summed per segment): the pseudo-header without its length, the
    /// ports, the tunnel and inner Ethernet headers, and an inner IPv6 header without its
    /// payload length.
    shared: Option<u64>,
    /// The inner packet is IPv6 (its payload length enters the outer checksum).
    inner_v6: bool,
    /// The inner IP header.
    inner_nh: usize,
}

/// The frame as the inner segmentation sees it (the inner layers, the metadata without the
/// tunnel) and the outer fix-up, for a tunnel super-frame; `v` itself and `None` otherwise.
/// `head` must hold every header, inner transport header included; `total_len` is the
/// frame's length.
pub(super) fn inner_view(
    head: &[u8],
    total_len: usize,
    v: &Validated,
) -> Result<(Validated, Option<Outer>), GsoError> {
    let Some(
        g @ Gso {
            tunnel: Some(t), ..
        },
    ) = v.meta().gso
    else {
        return Ok((*v, None));
    };
    let ly = v.layers();
    let inner_nh = usize::from(t.inner_nh);
    let Some(inner) = v.inner_layers().filter(|i| i.l3_offset == inner_nh) else {
        return Err(GsoError::BadTunnel { offset: inner_nh });
    };
    let outer = Outer::new(head, total_len, ly, inner, t.csum)?;
    let meta = OffloadMeta {
        csum: v.meta().csum,
        gso: Some(Gso { tunnel: None, ..g }),
    };
    Ok((Validated::new_unchecked(*inner, meta), Some(outer)))
}

impl Outer {
    /// Check the outer headers of `head` against the outer layers `ly` and the inner ones,
    /// as [`Segmenter`](super::Segmenter) checks the inner ones: the bytes may have changed
    /// since validation.
    fn new(
        head: &[u8],
        total_len: usize,
        ly: &Layers,
        inner: &Layers,
        csum: bool,
    ) -> Result<Outer, GsoError> {
        let (l3o, th) = (ly.l3_offset, ly.l4_offset);
        let bad = GsoError::BadTunnel { offset: th };
        let (Some(l3), Some(L4::Udp)) = (ly.l3, ly.l4) else {
            return Err(bad);
        };
        if ly.fragment {
            return Err(GsoError::Fragment { offset: l3o });
        }
        // The inner packet starts after the outer UDP header and its transport header is
        // in the head (the inner segmentation checks the rest of it).
        if th + udp::HEADER_LEN > inner.l3_offset
            || inner.l3_offset > inner.l4_offset
            || inner.l4_offset > head.len()
        {
            return Err(bad);
        }
        let Some(ip_hdr) = head.get(l3o..th) else {
            return Err(bad);
        };
        let ip_len = total_len.saturating_sub(l3o);
        if total_len != ly.ip_end || total_len != inner.ip_end {
            return Err(GsoError::IpLengthMismatch {
                offset: l3o,
                claimed: ly.ip_end.saturating_sub(l3o),
                actual: ip_len,
            });
        }
        let mut pseudo = Sum::new();
        let mut ip4_id = 0;
        let mut ip4 = 0;
        match l3 {
            L3::Ipv4 => {
                let ip = ipv4::Packet::new_unchecked(ip_hdr);
                if ip_hdr.len() < ipv4::MIN_HEADER_LEN
                    || ip.version() != 4
                    || ip.header_len() != ip_hdr.len()
                    || ip.protocol() != ip_proto::UDP
                {
                    return Err(GsoError::BadIpv4Header { offset: l3o });
                }
                if usize::from(ip.total_len()) != ip_len {
                    return Err(GsoError::IpLengthMismatch {
                        offset: l3o,
                        claimed: usize::from(ip.total_len()),
                        actual: ip_len,
                    });
                }
                if ip.is_fragment() {
                    return Err(GsoError::Fragment { offset: l3o });
                }
                ip4_id = ip.ident();
                use ipv4::field::{CHECKSUM, FLAGS_FRAG, TOTAL_LEN};
                ip4 = u64::from(
                    words(&ip_hdr[..TOTAL_LEN.start])
                        + words(&ip_hdr[FLAGS_FRAG.start..CHECKSUM.start])
                        + words(&ip_hdr[CHECKSUM.end..]),
                );
                pseudo.add_u32(
                    words(&ip.src_addr()) + words(&ip.dst_addr()) + u32::from(ip_proto::UDP),
                );
            }
            L3::Ipv6 => {
                let ip = ipv6::Packet::new_unchecked(ip_hdr);
                if ip_hdr.len() < ipv6::HEADER_LEN || ip.version() != 6 {
                    return Err(GsoError::BadIpv6Header { offset: l3o });
                }
                if ip.total_len() != ip_len {
                    return Err(GsoError::IpLengthMismatch {
                        offset: l3o,
                        claimed: ip.total_len(),
                        actual: ip_len,
                    });
                }
                walk_v6(ip_hdr, l3o, ip_proto::UDP)?;
                let dst = ly.pseudo_dst_offset;
                let Some(d) = head.get(dst..dst + 16).filter(|_| dst + 16 <= th) else {
                    return Err(GsoError::BadIpv6Header { offset: l3o });
                };
                pseudo.add_u32(words(&ip.src_addr()) + words(d) + u32::from(ip_proto::UDP));
            }
        }
        let Some(uh) = head.get(th..th + udp::HEADER_LEN) else {
            return Err(bad);
        };
        let claimed = usize::from(udp::Packet::new_unchecked(uh).len());
        if claimed != total_len - th {
            return Err(GsoError::UdpLengthMismatch {
                offset: th,
                claimed,
                actual: total_len - th,
            });
        }
        let inner_nh = inner.l3_offset;
        let inner_v6 = inner.l3 == Some(L3::Ipv6);
        // Between the outer UDP header and the inner IP header; the inner IP header
        // itself is a whole number of 32-bit words.
        let shared = ((inner_nh - th) % 2 == 0).then(|| {
            let mut s = u64::from(pseudo.fold());
            s += u64::from(words(&uh[..udp::field::LENGTH.start]));
            s += crate::csum::sum_slice(&head[th + udp::HEADER_LEN..inner_nh]);
            if inner_v6 {
                let plen = ipv6::field::PAYLOAD_LEN;
                s += u64::from(words(&head[inner_nh..inner_nh + plen.start]));
                s += crate::csum::sum_slice(&head[inner_nh + plen.end..inner.l4_offset]);
            }
            u64::from(crate::csum::fold64(s))
        });
        Ok(Outer {
            l3,
            l3_offset: l3o,
            th,
            inner_l4: inner.l4_offset,
            csum,
            ip4_id,
            pseudo,
            ip4,
            shared,
            inner_v6,
            inner_nh,
        })
    }

    /// Fix the outer headers of the `seg_len`-byte segment `index` whose header block is
    /// `hdr`; `inner_pseudo` is the inner pseudo-header sum without its length.
    #[inline]
    fn fix(&self, hdr: &mut [u8], seg_len: usize, index: usize, fixed_id: bool, inner_pseudo: Sum) {
        use crate::csum::fold64;
        let (l3o, th) = (self.l3_offset, self.th);
        match self.l3 {
            L3::Ipv4 => {
                let tot = (seg_len - l3o) as u16;
                let id = if fixed_id {
                    self.ip4_id
                } else {
                    self.ip4_id.wrapping_add(index as u16)
                };
                let mut ip = ipv4::Packet::new_unchecked(&mut hdr[l3o..th]);
                ip.set_total_len(tot);
                ip.set_ident(id);
                ip.set_checksum(!fold64(self.ip4 + u64::from(tot) + u64::from(id)));
            }
            L3::Ipv6 => {
                let plen = (seg_len - l3o - ipv6::HEADER_LEN) as u16;
                ipv6::Packet::new_unchecked(&mut hdr[l3o..th]).set_payload_len(plen);
            }
        }
        let udp_len = seg_len - th;
        let mut u = udp::Packet::new_unchecked(&mut hdr[th..th + udp::HEADER_LEN]);
        u.set_len(udp_len as u16);
        u.set_checksum(0);
        if !self.csum {
            return;
        }
        // The inner transport segment, its checksum complete, sums to the complement of its
        // pseudo-header sum.
        let inner_len = seg_len - self.inner_l4;
        if let Some(shared) = self.shared {
            let mut p = inner_pseudo;
            p.add_u32(inner_len as u32);
            let mut sum = shared + 2 * udp_len as u64 + u64::from(!p.fold());
            if self.inner_v6 {
                sum += (seg_len - self.inner_nh - ipv6::HEADER_LEN) as u64;
            }
            udp::Packet::new_unchecked(&mut hdr[th..th + udp::HEADER_LEN])
                .set_checksum(mangle0(!fold64(sum)));
            return;
        }
        // Headers from the outer UDP header to the inner transport header, as written.
        let mut sum = Sum::new();
        sum.add(&hdr[th..self.inner_l4]);
        // The inner transport segment, its checksum complete, sums to the complement of its
        // pseudo-header sum; at an odd offset its bytes swap roles.
        let mut p = inner_pseudo;
        p.add_u32((seg_len - self.inner_l4) as u32);
        let lco = !p.fold();
        sum.add_u16(if sum.is_odd() { lco.swap_bytes() } else { lco });
        sum.add_sum(self.pseudo);
        sum.add_u32(udp_len as u32);
        udp::Packet::new_unchecked(&mut hdr[th..th + udp::HEADER_LEN])
            .set_checksum(mangle0(sum.checksum()));
    }

    /// Fix every segment of the batch just made in `buf`, whose first segment is segment
    /// `first` of the super-frame.
    pub(super) fn fix_batch(
        &self,
        buf: &mut SegmentBuf,
        first: usize,
        fixed_id: bool,
        inner_pseudo: Sum,
    ) {
        let SegmentBuf {
            hdrs,
            segs,
            uniform,
            ..
        } = buf;
        if let Some(u) = uniform {
            for k in 0..u.count {
                let hs = (k + 1) * u.stride;
                let start = u.payload_off + k * u.size;
                let payload = u.size.min(u.payload_end.saturating_sub(start));
                if let Some(h) = hdrs.get_mut(hs..hs + u.hdr_len) {
                    self.fix(h, u.hdr_len + payload, first + k, fixed_id, inner_pseudo);
                }
            }
            return;
        }
        for (k, d) in segs.iter().enumerate() {
            let (hs, hl) = (d.hdr_start as usize, d.hdr_len as usize);
            if let Some(h) = hdrs.get_mut(hs..hs + hl) {
                let seg_len = hl + d.payload_len as usize;
                self.fix(h, seg_len, first + k, fixed_id, inner_pseudo);
            }
        }
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::offload::gso::fuzz::TunnelSpec;
    use crate::vnet::validate;
    use crate::wire::Start;

    /// The per-segment arithmetic (`shared`) gives the outer headers that summing the
    /// header bytes gives, for every family, tunnel and inner protocol.
    #[test]
    fn shared_sums_equal_summing_the_headers() {
        let mut seed = 0;
        for outer_v6 in [false, true] {
            for inner_v6 in [false, true] {
                for geneve in [None, Some(4), Some(36)] {
                    for tcp_opts in [Some(0), Some(8), None] {
                        seed += 1;
                        let spec = TunnelSpec {
                            outer_v6,
                            inner_v6,
                            geneve,
                            inner_vlan: seed % 2 == 0,
                            tcp_opts,
                            csum: true,
                            payload: 3000 + seed,
                            gso_size: 1000,
                            seed: seed as u64,
                        };
                        let (frame, hdr) = spec.build();
                        let v = validate(&hdr, &frame, Start::Ethernet).expect("valid");
                        let (inner, outer) = inner_view(&frame, frame.len(), &v).expect("view");
                        let fast = outer.expect("a tunnel");
                        assert!(fast.shared.is_some());
                        let slow = Outer {
                            shared: None,
                            ..fast
                        };
                        let il = inner.layers();
                        let mut p = Sum::new();
                        let (s, d) = if inner_v6 { (8, 24) } else { (12, 16) };
                        let n = if inner_v6 { 16 } else { 4 };
                        p.add(&frame[il.l3_offset + s..il.l3_offset + s + n]);
                        p.add(&frame[il.l3_offset + d..il.l3_offset + d + n]);
                        p.add_u16(u16::from(if tcp_opts.is_some() { 6u8 } else { 17 }));
                        for seg_len in [il.payload_offset + 1, il.payload_offset + 1000] {
                            let mut a = frame[..il.payload_offset].to_vec();
                            if inner_v6 {
                                // As the inner segmentation leaves it.
                                let plen = (seg_len - il.l3_offset - 40) as u16;
                                ipv6::Packet::new_unchecked(&mut a[il.l3_offset..])
                                    .set_payload_len(plen);
                            }
                            let mut b = a.clone();
                            fast.fix(&mut a, seg_len, 3, false, p);
                            slow.fix(&mut b, seg_len, 3, false, p);
                            assert_eq!(a, b, "{spec:?} {seg_len}");
                        }
                    }
                }
            }
        }
    }
}
