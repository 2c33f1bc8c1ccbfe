//! Per-super-frame setup: check the headers once and work out everything the segment
//! loops need.

use super::fast::Fast;
use super::source::{Cursor, Source};
use super::*;
use crate::frame::Frame;
use crate::frame::GsoKind;
use crate::vnet::Validated;
use crate::wire::{ip_proto, ipv4, ipv6, tcp, udp};

/// IPv6 UFO: where the Fragment header goes.
#[derive(Debug, Clone, Copy)]
pub(super) struct FragInsert {
    /// Frame offset at which the Fragment header is inserted.
    pub(super) at: usize,
    /// Frame offset of the Next Header field that must now name the Fragment header.
    pub(super) nh_field: usize,
    /// What that field names in the super-frame: the Fragment header's Next Header.
    pub(super) next_header: u8,
}

impl<'p> Segmenter<'p> {
    /// Prepare to segment `frame`, whose headers (through the transport header) must be in
    /// its head, validated as `v` (by [`crate::vnet::validate`] or
    /// [`crate::vnet::validate_gso`]). The payload is read where the frame has it (the rest
    /// of its head, then its payload slices) and never copied. The frame's length must be
    /// exactly the IP packet's (no link padding). A frame without GSO metadata goes out
    /// whole, as one segment.
    pub fn new(frame: &Frame<'p>, v: &Validated, opts: GsoOptions) -> Result<Self, GsoError> {
        let (first, rest, _) = frame.window_parts();
        let (v, outer) = tunnel::inner_view(frame.head(), frame.len(), v)?;
        let src = Source {
            head: frame.head(),
            payload_offset: v.layers().payload_offset,
            first,
            rest,
        };
        let mut s = Self::build(src, frame.len(), &v, opts)?;
        s.outer = outer;
        Ok(s)
    }

    /// Prepare to segment one linear frame (a pcap record, a tap read), validated as `v`.
    #[inline]
    pub fn from_linear(frame: &'p [u8], v: &Validated, opts: GsoOptions) -> Result<Self, GsoError> {
        let (v, outer) = tunnel::inner_view(frame, frame.len(), v)?;
        let src = Source::linear(frame, v.layers().payload_offset);
        let mut s = Self::build(src, frame.len(), &v, opts)?;
        s.outer = outer;
        Ok(s)
    }

    fn build(
        src: Source<'p>,
        total_len: usize,
        v: &Validated,
        opts: GsoOptions,
    ) -> Result<Self, GsoError> {
        let head = src.head;
        let ly = v.layers();
        let gso = v.meta().gso;
        // `Validated` proves what follows of a super-frame; a frame without GSO metadata
        // passes through and must still be a whole TCP or UDP packet over IP.
        if ly.fragment {
            return Err(GsoError::Fragment {
                offset: ly.l3_offset,
            });
        }
        let (Some(l3), Some(l4 @ (L4::Tcp | L4::Udp))) = (ly.l3, ly.l4) else {
            return Err(GsoError::NotTcpUdp {
                l3: ly.l3,
                l4: ly.l4,
            });
        };
        // Every offset must be in order and every header in the head, at least as long as its
        // fixed part: the views below then read inside their slices.
        let (l3o, l4o, po) = (ly.l3_offset, ly.l4_offset, ly.payload_offset);
        let bad_layers = GsoError::BadLayers {
            offset: po,
            len: head.len(),
        };
        let (Some(ip_hdr), Some(l4_hdr)) = (head.get(l3o..l4o), head.get(l4o..po)) else {
            return Err(bad_layers);
        };
        let min_l3 = match l3 {
            L3::Ipv4 => ipv4::MIN_HEADER_LEN,
            L3::Ipv6 => ipv6::HEADER_LEN,
        };
        let min_l4 = match l4 {
            L4::Tcp => tcp::MIN_HEADER_LEN,
            _ => udp::HEADER_LEN,
        };
        if ip_hdr.len() != ly.l3_len
            || ip_hdr.len() < min_l3
            || l4_hdr.len() != ly.l4_len
            || l4_hdr.len() < min_l4
            || po > ly.ip_end
        {
            return Err(bad_layers);
        }
        if total_len != ly.ip_end {
            return Err(GsoError::IpLengthMismatch {
                offset: l3o,
                claimed: ly.ip_end - l3o,
                actual: total_len.saturating_sub(l3o),
            });
        }
        let ip_len = total_len - l3o;

        // Re-read from the bytes what the layers claim: the memory may have changed since
        // validation, or the layers may be another frame's.
        let proto = match l4 {
            L4::Tcp => ip_proto::TCP,
            _ => ip_proto::UDP,
        };
        let mut frag6 = None;
        // Pseudo-header without its length (the per-segment length is added later); IPv4
        // header sum without the per-segment words, total length, ID and checksum.
        let (pseudo, ip4, ip4_id) = match l3 {
            L3::Ipv4 => {
                let ip = ipv4::Packet::new_unchecked(ip_hdr);
                if ip.version() != 4 || ip.header_len() != ip_hdr.len() || ip.protocol() != proto {
                    return Err(GsoError::BadIpv4Header { offset: l3o });
                }
                let claimed = usize::from(ip.total_len());
                if claimed != ip_len {
                    return Err(GsoError::IpLengthMismatch {
                        offset: l3o,
                        claimed,
                        actual: ip_len,
                    });
                }
                if ip.is_fragment() {
                    return Err(GsoError::Fragment { offset: l3o });
                }
                let mut pseudo = Sum::new();
                pseudo.add_u32(words(&ip.src_addr()) + words(&ip.dst_addr()) + u32::from(proto));
                use ipv4::field::{CHECKSUM, FLAGS_FRAG, SRC, TOTAL_LEN, TTL};
                let mut ip4 = Sum::new();
                ip4.add_u32(
                    words(&ip_hdr[..TOTAL_LEN.start])
                        + words(&ip_hdr[FLAGS_FRAG])
                        + words(&ip_hdr[TTL..CHECKSUM.start])
                        + words(&ip_hdr[SRC.start..]),
                );
                (pseudo, ip4, ip.ident())
            }
            L3::Ipv6 => {
                let ip = ipv6::Packet::new_unchecked(ip_hdr);
                if ip.version() != 6 {
                    return Err(GsoError::BadIpv6Header { offset: l3o });
                }
                let claimed = ip.total_len();
                if claimed != ip_len {
                    return Err(GsoError::IpLengthMismatch {
                        offset: l3o,
                        claimed,
                        actual: ip_len,
                    });
                }
                let (insert, fragmentable) = walk_v6(ip_hdr, l3o, proto)?;
                // UFO with extension headers in the fragmentable part would need them in the
                // first fragment only (the kernel copies them into every fragment, which
                // corrupts the reassembled datagram): refuse rather than emit either.
                if fragmentable && gso.is_some_and(|g| g.kind == GsoKind::Ufo) {
                    return Err(GsoError::UnsupportedExtHeader {
                        offset: insert.at,
                        next_header: insert.next_header,
                    });
                }
                frag6 = Some(insert);
                // The destination may be the final one inside a Routing header.
                let dst = ly.pseudo_dst_offset;
                let Some(d) = head.get(dst..dst + 16).filter(|_| dst + 16 <= po) else {
                    return Err(GsoError::BadIpv6Header { offset: l3o });
                };
                let mut pseudo = Sum::new();
                pseudo.add_u32(words(&ip.src_addr()) + words(d) + u32::from(proto));
                (pseudo, Sum::new(), 0)
            }
        };
        let l4_total = total_len - l4o;
        let tcp_seq = match l4 {
            L4::Tcp => {
                let th = tcp::Packet::new_unchecked(l4_hdr);
                let thlen = th.header_len();
                if thlen != l4_hdr.len() || thlen > l4_total {
                    return Err(GsoError::BadTcpDataOffset {
                        offset: l4o,
                        data_offset: (thlen / 4) as u8,
                    });
                }
                th.seq_number()
            }
            _ => {
                let claimed = usize::from(udp::Packet::new_unchecked(l4_hdr).len());
                if claimed != l4_total {
                    return Err(GsoError::UdpLengthMismatch {
                        offset: l4o,
                        claimed,
                        actual: l4_total,
                    });
                }
                0
            }
        };

        let payload_len = total_len - po;
        let size = gso.map_or(0, |g| usize::from(g.size));
        let mut mode = match gso.map(|g| g.kind) {
            None => Mode::PassThrough,
            Some(GsoKind::Tcpv4 | GsoKind::Tcpv6) => Mode::Tcp,
            Some(GsoKind::UdpL4) => Mode::Uso,
            Some(GsoKind::Ufo) => Mode::Ufo,
        };
        // Not a super-frame after all when the data fits in one segment; for UFO the UDP
        // header counts (virtio_net_hdr_to_skb compares the same quantities). Validation
        // already says so with `gso == None`, for the frame it saw. A zero size, which
        // `Validated` never carries, would make no segments at all.
        let fits = match mode {
            Mode::Ufo => l4_total <= size,
            _ => payload_len <= size,
        };
        if fits || size == 0 {
            mode = Mode::PassThrough;
        }
        let (seg_size, total, hdr_end) = match mode {
            Mode::PassThrough => (payload_len, 1, po),
            Mode::Tcp | Mode::Uso => (size, payload_len.div_ceil(size), po),
            Mode::Ufo => {
                // Fragment offsets count 8-byte units: every fragment but the last must carry
                // a multiple of 8 bytes. The kernel uses gso_size as is, so a guest handing
                // it a size that is not a multiple of 8 gets overlapping fragments; this
                // rounds down instead.
                let fs = size & !7;
                if fs < 8 {
                    return Err(GsoError::UfoSizeTooSmall { size: size as u16 });
                }
                (fs, l4_total.div_ceil(fs), l4o)
            }
        };
        let hdr_block = po + if frag6.is_some() { FRAG_HDR_LEN } else { 0 };
        if hdr_block > MAX_HEADER_LEN {
            return Err(GsoError::HeaderTooLong { len: hdr_block });
        }
        if mode != Mode::Ufo {
            // Only UFO inserts a Fragment header.
            frag6 = None;
        }

        let mut ufo_csum = 0;
        if mode == Mode::Ufo {
            // The checksum covers the whole datagram, so it is computed once, up front; it
            // is complete in both modes (no device completes a checksum across fragments).
            let mut sum = pseudo;
            sum.add_u32(l4_total as u32);
            sum.add(&l4_hdr[..udp::field::CHECKSUM.start]);
            for p in src.slices(Cursor::default(), payload_len) {
                sum.add(p);
            }
            ufo_csum = mangle0(sum.checksum());
        }
        let fast = if matches!(mode, Mode::Tcp | Mode::Uso) && head.len() == total_len {
            Some(Fast::new(head, l4_hdr, l4, po, pseudo, ip4))
        } else {
            None
        };
        // Built in place as the return value: the struct is a few hundred bytes.
        Ok(Segmenter {
            src,
            mode,
            opts,
            l3,
            l4,
            l3_offset: l3o,
            l4_offset: l4o,
            hdr_end,
            seg_size,
            payload_len,
            total,
            next: 0,
            cursor: Cursor::default(),
            pseudo,
            ip4_id,
            tcp_seq,
            ufo_csum,
            frag6,
            fast,
            outer: None,
        })
    }
}

/// Walk the IPv6 header chain `hdrs` (the fixed header at frame offset `l3o`, then the
/// extension headers up to the transport header), checking it leads to `proto`. Return where
/// a UFO Fragment header would be inserted, and whether any extension header belongs to the
/// fragmentable part.
pub(super) fn walk_v6(hdrs: &[u8], l3o: usize, proto: u8) -> Result<(FragInsert, bool), GsoError> {
    let mut nh = ipv6::Packet::new_unchecked(hdrs).next_header();
    let mut at = ipv6::HEADER_LEN;
    // End of the unfragmentable part: after Hop-by-Hop, Routing and Destination options
    // that precede a Routing header (RFC 8200 4.5).
    let mut insert = FragInsert {
        at: l3o + at,
        nh_field: l3o + ipv6::field::NEXT_HEADER,
        next_header: nh,
    };
    let mut fragmentable = false;
    while at < hdrs.len() {
        match nh {
            ip_proto::HOPOPT | ip_proto::IPV6_ROUTE | ip_proto::IPV6_OPTS => {
                let ext = match hdrs.get(at..) {
                    Some(b) if b.len() >= ipv6::EXT_MIN_LEN => ipv6::ExtHeader::new_unchecked(b),
                    _ => return Err(GsoError::BadIpv6Header { offset: l3o + at }),
                };
                let len = ext.header_len();
                if at + len > hdrs.len() {
                    return Err(GsoError::BadIpv6Header { offset: l3o + at });
                }
                // Destination options count as unfragmentable only before a Routing header.
                let next = ext.next_header();
                let unfrag = nh == ip_proto::HOPOPT
                    || nh == ip_proto::IPV6_ROUTE
                    || (nh == ip_proto::IPV6_OPTS && next == ip_proto::IPV6_ROUTE);
                if unfrag && !fragmentable {
                    // An extension header starts with its Next Header field.
                    insert = FragInsert {
                        at: l3o + at + len,
                        nh_field: l3o + at,
                        next_header: next,
                    };
                } else {
                    fragmentable = true;
                }
                nh = next;
                at += len;
            }
            ip_proto::IPV6_FRAG => return Err(GsoError::Fragment { offset: l3o + at }),
            other => {
                return Err(GsoError::UnsupportedExtHeader {
                    offset: l3o + at,
                    next_header: other,
                })
            }
        }
    }
    if at != hdrs.len() || nh != proto {
        return Err(GsoError::BadIpv6Header { offset: l3o });
    }
    Ok((insert, fragmentable))
}
