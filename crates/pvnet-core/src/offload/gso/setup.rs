//! Per-super-frame setup: check the headers once and work out everything the segment
//! loops need.

use super::fast::Fast;
use super::source::{Cursor, Source};
use super::*;
use crate::frame::Frame;
use crate::packet::GsoKind;
use crate::vnet::Validated;
use crate::wire::ip_proto;

/// IPv6 UFO: where the Fragment header goes.
#[derive(Debug, Clone, Copy)]
pub(super) struct FragInsert {
    /// Frame offset at which the Fragment header is inserted.
    pub(super) at: usize,
    /// Frame offset of the Next Header field that must now name the Fragment header.
    pub(super) nh_field: usize,
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
        let src = Source {
            head: frame.head(),
            payload_offset: v.layers().payload_offset,
            first,
            rest,
        };
        Self::build(src, frame.len(), v, opts)
    }

    /// Prepare to segment one linear frame (a pcap record, a tap read), validated as `v`.
    #[inline]
    pub fn from_linear(frame: &'p [u8], v: &Validated, opts: GsoOptions) -> Result<Self, GsoError> {
        let src = Source::linear(frame, v.layers().payload_offset);
        Self::build(src, frame.len(), v, opts)
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
        // Every offset must be in order and every header in the head: what follows only
        // slices `head` below `payload_offset`.
        let min_l3 = match l3 {
            L3::Ipv4 => 20,
            L3::Ipv6 => IPV6_HDR,
        };
        let min_l4 = match ly.l4 {
            Some(L4::Tcp) => 20,
            _ => 8,
        };
        let ordered = ly.l3_len >= min_l3
            && ly.l4_len >= min_l4
            && ly.l3_offset <= ly.l4_offset
            && ly.l4_offset + ly.l4_len == ly.payload_offset
            && ly.l3_offset + ly.l3_len == ly.l4_offset
            && ly.payload_offset <= ly.ip_end
            && ly.payload_offset <= head.len();
        if !ordered {
            return Err(GsoError::BadLayers {
                offset: ly.payload_offset,
                len: head.len(),
            });
        }
        if total_len != ly.ip_end {
            return Err(GsoError::IpLengthMismatch {
                offset: ly.l3_offset,
                claimed: ly.ip_end - ly.l3_offset,
                actual: total_len.saturating_sub(ly.l3_offset),
            });
        }
        let (l3o, l4o) = (ly.l3_offset, ly.l4_offset);
        let ip_len = total_len - l3o;

        // Re-read from the bytes what the layers claim: they may come from elsewhere.
        let proto = match l4 {
            L4::Tcp => ip_proto::TCP,
            _ => ip_proto::UDP,
        };
        let mut frag6 = None;
        match l3 {
            L3::Ipv4 => {
                let vihl = head[l3o];
                let ihl = usize::from(vihl & 0x0f) * 4;
                if vihl >> 4 != 4 || ihl < 20 || ihl != ly.l3_len || head[l3o + 9] != proto {
                    return Err(GsoError::BadIpv4Header { offset: l3o });
                }
                let claimed = usize::from(be16(head, l3o + IPV4_TOTAL_LEN));
                if claimed != ip_len {
                    return Err(GsoError::IpLengthMismatch {
                        offset: l3o,
                        claimed,
                        actual: ip_len,
                    });
                }
                if be16(head, l3o + IPV4_FRAG) & 0x3fff != 0 {
                    return Err(GsoError::Fragment { offset: l3o });
                }
            }
            L3::Ipv6 => {
                if head[l3o] >> 4 != 6 || ly.l3_len < IPV6_HDR {
                    return Err(GsoError::BadIpv6Header { offset: l3o });
                }
                let claimed = usize::from(be16(head, l3o + IPV6_PAYLOAD_LEN)) + IPV6_HDR;
                if claimed != ip_len {
                    return Err(GsoError::IpLengthMismatch {
                        offset: l3o,
                        claimed,
                        actual: ip_len,
                    });
                }
                let (insert, fragmentable) = walk_v6(head, l3o, l4o, proto)?;
                // UFO with extension headers in the fragmentable part would need them in the
                // first fragment only (the kernel copies them into every fragment, which
                // corrupts the reassembled datagram): refuse rather than emit either.
                if fragmentable && gso.is_some_and(|g| g.kind == GsoKind::Ufo) {
                    return Err(GsoError::UnsupportedExtHeader {
                        offset: insert.at,
                        next_header: head[insert.nh_field],
                    });
                }
                frag6 = Some(insert);
            }
        }
        let l4_total = total_len - l4o;
        match l4 {
            L4::Tcp => {
                let doff = head[l4o + 12] >> 4;
                let thlen = usize::from(doff) * 4;
                if doff < 5 || thlen != ly.l4_len || thlen > l4_total {
                    return Err(GsoError::BadTcpDataOffset {
                        offset: l4o,
                        data_offset: doff,
                    });
                }
            }
            _ => {
                let claimed = usize::from(be16(head, l4o + UDP_LEN));
                if ly.l4_len != 8 || claimed != l4_total {
                    return Err(GsoError::UdpLengthMismatch {
                        offset: l4o,
                        claimed,
                        actual: l4_total,
                    });
                }
            }
        }

        let payload_len = total_len - ly.payload_offset;
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
            Mode::PassThrough => (payload_len, 1, ly.payload_offset),
            Mode::Tcp | Mode::Uso => (size, payload_len.div_ceil(size), ly.payload_offset),
            Mode::Ufo => {
                // Fragment offsets count 8-byte units: every fragment but the last must carry
                // a multiple of 8 bytes. The kernel uses gso_size as is, so a guest handing
                // it a size that is not a multiple of 8 gets overlapping fragments; this
                // rounds down instead.
                let fs = size & !7;
                if fs < 8 {
                    return Err(GsoError::UfoSizeTooSmall { size: size as u16 });
                }
                (fs, (l4_total).div_ceil(fs), l4o)
            }
        };
        let hdr_block = ly.payload_offset + if frag6.is_some() { FRAG_HDR_LEN } else { 0 };
        if hdr_block > MAX_HEADER_LEN {
            return Err(GsoError::HeaderTooLong { len: hdr_block });
        }
        if mode != Mode::Ufo {
            // Only UFO inserts a Fragment header.
            frag6 = None;
        }

        // Pseudo-header without its length: the per-segment length is added later.
        let pseudo = {
            let dst = ly.pseudo_dst_offset;
            match l3 {
                L3::Ipv4 => {
                    let s = head.get(l3o + 12..l3o + 16);
                    let d = head.get(dst..dst + 4);
                    match (s, d) {
                        (Some(s), Some(d)) if dst < ly.payload_offset => {
                            let mut sum = Sum::new();
                            sum.add_u32(words(s) + words(d) + u32::from(proto));
                            sum
                        }
                        _ => return Err(GsoError::BadIpv4Header { offset: l3o }),
                    }
                }
                L3::Ipv6 => {
                    let s = head.get(l3o + 8..l3o + 24);
                    let d = head.get(dst..dst + 16);
                    match (s, d) {
                        (Some(s), Some(d)) if dst + 16 <= ly.payload_offset => {
                            let mut sum = Sum::new();
                            sum.add_u32(words(s) + words(d) + u32::from(proto));
                            sum
                        }
                        _ => return Err(GsoError::BadIpv6Header { offset: l3o }),
                    }
                }
            }
        };

        let mut ip4_base = Sum::new();
        let (mut ip4_id, mut ip4_frag) = (0, 0);
        if l3 == L3::Ipv4 {
            let hdr = &head[l3o..l4o];
            // Words 0, 8.. of the header; total length (2), ID (4), flags (6) and
            // checksum (10) change per segment and are added then.
            ip4_base.add_u32(words(&hdr[0..2]) + words(&hdr[8..10]) + words(&hdr[12..]));
            ip4_id = be16(hdr, IPV4_ID);
            ip4_frag = be16(hdr, IPV4_FRAG);
        }

        let tcp_seq = if l4 == L4::Tcp {
            u32::from_be_bytes([head[l4o + 4], head[l4o + 5], head[l4o + 6], head[l4o + 7]])
        } else {
            0
        };
        let mut ufo_csum = 0;
        if mode == Mode::Ufo {
            // The checksum covers the whole datagram, so it is computed once, up front; it
            // is complete in both modes (no device completes a checksum across fragments).
            let mut sum = pseudo;
            sum.add_u32(l4_total as u32);
            sum.add(&head[l4o..l4o + 6]);
            for p in src.slices(Cursor::default(), payload_len) {
                sum.add(p);
            }
            ufo_csum = mangle0(sum.checksum());
        }
        let fast = if matches!(mode, Mode::Tcp | Mode::Uso) && head.len() == total_len {
            let mut ip4 = ip4_base;
            ip4.add_u16(ip4_frag);
            Some(Fast::new(head, l4, l4o, ly.payload_offset, pseudo, ip4))
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
            ip4_base,
            ip4_id,
            ip4_frag,
            tcp_seq,
            ufo_csum,
            frag6,
            fast,
        })
    }
}

/// Walk the IPv6 extension headers between `l3o + 40` and `l4o`, checking they lead to
/// `proto`. Return where a UFO Fragment header would be inserted.
fn walk_v6(head: &[u8], l3o: usize, l4o: usize, proto: u8) -> Result<(FragInsert, bool), GsoError> {
    let nh_field = l3o + 6;
    let mut nh = head[nh_field];
    let mut at = l3o + IPV6_HDR;
    // End of the unfragmentable part: after Hop-by-Hop, Routing and Destination options
    // that precede a Routing header (RFC 8200 4.5).
    let mut insert = FragInsert { at, nh_field };
    let mut fragmentable = false;
    while at < l4o {
        match nh {
            ip_proto::HOPOPT | ip_proto::IPV6_ROUTE | ip_proto::IPV6_OPTS => {
                let len = match head.get(at + 1) {
                    Some(&l) => (usize::from(l) + 1) * 8,
                    None => return Err(GsoError::BadIpv6Header { offset: at }),
                };
                if at + len > l4o {
                    return Err(GsoError::BadIpv6Header { offset: at });
                }
                // Destination options count as unfragmentable only before a Routing header.
                let followed_by_routing = head[at] == ip_proto::IPV6_ROUTE;
                let unfrag = nh == ip_proto::HOPOPT
                    || nh == ip_proto::IPV6_ROUTE
                    || (nh == ip_proto::IPV6_OPTS && followed_by_routing);
                if unfrag && !fragmentable {
                    insert = FragInsert {
                        at: at + len,
                        nh_field: at,
                    };
                } else {
                    fragmentable = true;
                }
                nh = head[at];
                at += len;
            }
            ip_proto::IPV6_FRAG => return Err(GsoError::Fragment { offset: at }),
            other => {
                return Err(GsoError::UnsupportedExtHeader {
                    offset: at,
                    next_header: other,
                })
            }
        }
    }
    if at != l4o || nh != proto {
        return Err(GsoError::BadIpv6Header { offset: l3o });
    }
    Ok((insert, fragmentable))
}
