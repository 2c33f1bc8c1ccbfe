//! The general segment path ([`Segmenter::emit`]): pass-through, UFO, and TCP/USO
//! super-frames whose payload is not all in the head.

use super::buf::SegDesc;
use super::source::Cursor;
use super::*;
use crate::packet::CsumState;
use crate::wire::ip_proto;

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
                let l4_total = self.payload_len + 8;
                let start = i * self.seg_size;
                let unit = self.seg_size.min(l4_total - start);
                if i == 0 {
                    (unit - 8, self.src.payload_offset)
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
                let frag = if self.mode == Mode::Ufo {
                    let off = (i * self.seg_size / 8) as u16;
                    let mf = if last { 0 } else { IPV4_MF };
                    // The whole field is rewritten: DF is cleared in fragments, as the kernel
                    // does (inet_gso_segment), since they are fragments already.
                    mf | off
                } else {
                    self.ip4_frag
                };
                let tot = (seg_len - l3o) as u16;
                let mut sum = self.ip4_base;
                sum.add_u16(tot);
                sum.add_u16(id);
                sum.add_u16(frag);
                put16(hdr, l3o + IPV4_TOTAL_LEN, tot);
                put16(hdr, l3o + IPV4_ID, id);
                put16(hdr, l3o + IPV4_FRAG, frag);
                put16(hdr, l3o + IPV4_CSUM, sum.checksum());
            }
            L3::Ipv6 => {
                put16(
                    hdr,
                    l3o + IPV6_PAYLOAD_LEN,
                    (seg_len - l3o - IPV6_HDR) as u16,
                );
                if let Some(f) = self.frag6 {
                    let nh = hdr[f.nh_field];
                    hdr[f.nh_field] = ip_proto::IPV6_FRAG;
                    let off = (i * self.seg_size) as u16 & !7;
                    let m = u16::from(!last);
                    let fh = &mut hdr[f.at..f.at + FRAG_HDR_LEN];
                    fh[0] = nh;
                    fh[1] = 0;
                    fh[2..4].copy_from_slice(&(off | m).to_be_bytes());
                    fh[4..8].copy_from_slice(&self.opts.ipv6_frag_id.to_be_bytes());
                }
            }
        }

        let payload = self.cursor;
        self.cursor = self.src.advance(self.cursor, payload_len);
        let (payload_piece, payload_off) = self.src.locate(payload);
        let l4_hdr_at = l4o + insert;
        // Transport layer.
        let csum_state = match (self.mode, self.l4) {
            (Mode::Ufo, _) => {
                if i == 0 {
                    put16(hdr, l4_hdr_at + UDP_CSUM as usize, self.ufo_csum);
                }
                // Complete and verified by construction: the kernel marks UFO fragments
                // CHECKSUM_UNNECESSARY (DATA_VALID on a tap).
                CsumState::Unnecessary
            }
            (mode, L4::Tcp) => {
                if mode == Mode::Tcp {
                    let seq = self.tcp_seq.wrapping_add((i * self.seg_size) as u32);
                    put32(hdr, l4o + TCP_SEQ, seq);
                    let mut flags = hdr[l4o + TCP_FLAGS];
                    if !last {
                        flags &= !(crate::wire::tcp::FIN | crate::wire::tcp::PSH);
                    }
                    if i > 0 {
                        flags &= !crate::wire::tcp::CWR;
                    }
                    hdr[l4o + TCP_FLAGS] = flags;
                }
                // tcp_gso_segment completes with gso_make_checksum, which keeps a 0 result;
                // skb_checksum_help (the pass-through path) writes 0xFFFF instead.
                let mangle = mode == Mode::PassThrough;
                self.l4_checksum(hdr, TCP_CSUM, l4_len, payload, payload_len, mangle)
            }
            (_, _) => {
                put16(hdr, l4o + UDP_LEN, l4_len as u16);
                // UDP: 0 means "no checksum", so a computed 0 is always sent as 0xFFFF.
                self.l4_checksum(hdr, UDP_CSUM, l4_len, payload, payload_len, true)
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

    /// Fill the checksum field at `field` past the transport header for a segment whose L4 part is `l4_len`
    /// bytes: the pseudo-header sum (Partial) or the complete checksum, a 0 result written
    /// as 0xFFFF when `mangle`.
    fn l4_checksum(
        &self,
        hdr: &mut [u8],
        field: u16,
        l4_len: usize,
        payload: Cursor,
        payload_len: usize,
        mangle: bool,
    ) -> CsumState {
        let l4o = self.l4_offset;
        let at = l4o + usize::from(field);
        let mut sum = self.pseudo;
        sum.add_u32(l4_len as u32);
        if self.opts.csum == CsumMode::Partial {
            put16(hdr, at, sum.fold());
            return CsumState::Partial {
                start: l4o as u16,
                offset: field,
            };
        }
        put16(hdr, at, 0);
        sum.add(&hdr[l4o..]);
        for p in self.src.slices(payload, payload_len) {
            sum.add(p);
        }
        let c = sum.checksum();
        put16(hdr, at, if mangle { mangle0(c) } else { c });
        CsumState::None
    }
}
