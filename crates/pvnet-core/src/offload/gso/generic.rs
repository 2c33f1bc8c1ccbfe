//! The general segment path ([`Segmenter::emit`]): pass-through, UFO, and TCP/USO
//! super-frames whose payload is not all in the head.

use super::buf::SegDesc;
use super::source::Cursor;
use super::*;
use crate::frame::CsumState;
use crate::wire::{ip_proto, ipv4, ipv6, tcp, udp};

impl<'p> Segmenter<'p> {
    /// Build segment `self.next` into `buf`.
    pub(super) fn emit(&mut self, buf: &mut SegmentBuf) {
        let i = self.next;
        let last = i + 1 == self.total;
        let head = self.src.head;
        let l3o = self.l3_offset;
        let l4o = self.l4_offset;

        // Payload of this segment; for UFO the first fragment's unit includes the UDP
        // header, which is part of the header block instead.
        let (payload_len, hdr_src_end) = match self.mode {
            Mode::Ufo => {
                let l4_total = self.payload_len + udp::HEADER_LEN;
                let start = i * self.seg_size;
                let unit = self.seg_size.min(l4_total - start);
                if i == 0 {
                    (unit - udp::HEADER_LEN, self.src.payload_offset)
                } else {
                    (unit, self.hdr_end)
                }
            }
            _ => {
                let start = i * self.seg_size;
                (self.seg_size.min(self.payload_len - start), self.hdr_end)
            }
        };
        let insert = self.frag6.map_or(0, |_| FRAG_HDR_LEN);
        let hdr_len = hdr_src_end + insert;
        let hdr_start = buf.hdrs.len();
        // `build` checked that the header block, with the IP header at `l3o..l4o` and
        // (TCP/USO/pass-through) the transport header at `l4o..hdr_end`, is in the head; the
        // views below write inside those ranges of the copy.
        match self.frag6 {
            None => buf.hdrs.extend_from_slice(&head[..hdr_src_end]),
            Some(f) => {
                buf.hdrs.extend_from_slice(&head[..f.at]);
                buf.hdrs.extend_from_slice(&[0; FRAG_HDR_LEN]);
                buf.hdrs.extend_from_slice(&head[f.at..hdr_src_end]);
            }
        }
        let hdr = &mut buf.hdrs[hdr_start..];
        let seg_len = hdr_len + payload_len;
        // Length of the segment from the transport header on (TCP/UDP length).
        let l4_len = seg_len - l4o;

        // Network layer.
        match self.l3 {
            L3::Ipv4 => {
                let id = match self.mode {
                    Mode::Ufo | Mode::PassThrough => self.ip4_id,
                    _ if self.opts.fixed_id => self.ip4_id,
                    _ => self.ip4_id.wrapping_add(i as u16),
                };
                let ip_hdr = &mut hdr[l3o..l4o];
                if self.mode == Mode::Ufo {
                    // The whole flags and fragment offset field is rewritten: DF is cleared
                    // in fragments, as the kernel does (inet_gso_segment), since they are
                    // fragments already.
                    ip_hdr[ipv4::field::FLAGS_FRAG].fill(0);
                }
                let mut ip = ipv4::Packet::new_unchecked(ip_hdr);
                ip.set_total_len((seg_len - l3o) as u16);
                ip.set_ident(id);
                if self.mode == Mode::Ufo {
                    ip.set_more_frags(!last);
                    ip.set_frag_offset((i * self.seg_size) as u16);
                }
                ip.fill_checksum();
            }
            L3::Ipv6 => {
                let plen = (seg_len - l3o - ipv6::HEADER_LEN) as u16;
                ipv6::Packet::new_unchecked(&mut hdr[l3o..l4o]).set_payload_len(plen);
                if let Some(f) = self.frag6 {
                    // The field naming what followed the unfragmentable part now names the
                    // Fragment header, which names what it named.
                    hdr[f.nh_field] = ip_proto::IPV6_FRAG;
                    let mut fh =
                        ipv6::FragmentHeader::new_unchecked(&mut hdr[f.at..f.at + FRAG_HDR_LEN]);
                    fh.set_next_header(f.next_header);
                    fh.set_frag_offset((i * self.seg_size) as u16);
                    fh.set_more_frags(!last);
                    fh.set_ident(self.opts.ipv6_frag_id);
                }
            }
        }

        let payload = self.cursor;
        self.cursor = self.src.advance(self.cursor, payload_len);
        let (payload_piece, payload_off) = self.src.locate(payload);
        // Transport layer.
        let csum_state = match (self.mode, self.l4) {
            (Mode::Ufo, _) => {
                if i == 0 {
                    // The UDP header follows the inserted Fragment header.
                    let uh = &mut hdr[l4o + insert..];
                    udp::Packet::new_unchecked(uh).set_checksum(self.ufo_csum);
                }
                // Complete and verified by construction: the kernel marks UFO fragments
                // CHECKSUM_UNNECESSARY (DATA_VALID on a tap).
                CsumState::Unnecessary
            }
            (mode, L4::Tcp) => {
                if mode == Mode::Tcp {
                    let mut th = tcp::Packet::new_unchecked(&mut hdr[l4o..]);
                    th.set_seq_number(self.tcp_seq.wrapping_add((i * self.seg_size) as u32));
                    let mut flags = th.flags();
                    if !last {
                        flags &= !(tcp::FIN | tcp::PSH);
                    }
                    if i > 0 {
                        flags &= !tcp::CWR;
                    }
                    th.set_flags(flags);
                }
                // tcp_gso_segment completes with gso_make_checksum, which keeps a 0 result;
                // skb_checksum_help (the pass-through path) writes 0xFFFF instead.
                let mangle = mode == Mode::PassThrough;
                self.l4_checksum(hdr, true, l4_len, payload, payload_len, mangle)
            }
            (_, _) => {
                udp::Packet::new_unchecked(&mut hdr[l4o..]).set_len(l4_len as u16);
                // UDP: 0 means "no checksum", so a computed 0 is always sent as 0xFFFF.
                self.l4_checksum(hdr, false, l4_len, payload, payload_len, true)
            }
        };

        // A payload running from the head into the frame's first payload slice cannot be
        // one window: its part in the head (less than a segment, in at most one segment)
        // joins the header block.
        let (mut hdr_len, mut payload_piece, mut payload_off, mut payload_len) =
            (hdr_len, payload_piece, payload_off, payload_len);
        if self.src.straddles(payload, payload_len) {
            let part = head.get(payload_off..).unwrap_or_default();
            buf.hdrs.extend_from_slice(part);
            hdr_len += part.len();
            payload_len -= part.len();
            (payload_piece, payload_off) = (1, 0);
        }

        buf.csum = csum_state;
        buf.segs.push(SegDesc {
            hdr_start: hdr_start as u32,
            hdr_len: hdr_len as u32,
            payload_piece: payload_piece as u32,
            payload_off: payload_off as u32,
            payload_len: payload_len as u32,
        });
        self.next += 1;
    }

    /// Fill the TCP (`tcp`) or UDP checksum field of the header block `hdr` for a segment
    /// whose transport part is `l4_len` bytes: the pseudo-header sum (Partial) or the complete
    /// checksum, a 0 result written as 0xFFFF when `mangle`.
    fn l4_checksum(
        &self,
        hdr: &mut [u8],
        tcp: bool,
        l4_len: usize,
        payload: Cursor,
        payload_len: usize,
        mangle: bool,
    ) -> CsumState {
        let l4o = self.l4_offset;
        let th = &mut hdr[l4o..];
        let set = |th: &mut [u8], v: u16| {
            if tcp {
                tcp::Packet::new_unchecked(th).set_checksum(v);
            } else {
                udp::Packet::new_unchecked(th).set_checksum(v);
            }
        };
        let mut sum = self.pseudo;
        sum.add_u32(l4_len as u32);
        if self.opts.csum == CsumMode::Partial {
            set(th, sum.fold());
            return CsumState::Partial {
                start: l4o as u16,
                offset: csum_offset(tcp),
            };
        }
        set(th, 0);
        sum.add(th);
        for p in self.src.slices(payload, payload_len) {
            sum.add(p);
        }
        let c = sum.checksum();
        set(th, if mangle { mangle0(c) } else { c });
        CsumState::None
    }
}
