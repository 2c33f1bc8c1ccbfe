//! The TCP/USO fast path: fixed-stride header slots, per-segment fields only.

use super::buf::Uniform;
use super::*;
use crate::frame::CsumState;
use crate::wire::{ipv4, ipv6, tcp, udp};

/// Everything about a TCP/USO segment's header that does not depend on the segment, worked
/// out once per super-frame. Sums are 16-bit one's-complement sums (folded, as `u64` so that
/// a few may be added without overflow); only the per-segment fields are added to them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fast<'p> {
    /// What is copied into every header slot: the header block, padded with the bytes that
    /// follow it in the head up to 64 or 128 bytes when the head has them, so that the copy
    /// has a fixed size. Its length is the slot stride in the header arena.
    pub(super) tmpl: &'p [u8],
    /// Pseudo-header sum without the length.
    pub(super) pseudo: u64,
    /// IPv4 header sum without total length, ID and checksum (the flags word included).
    pub(super) ip4: u64,
    /// Transport header sum without the per-segment words (TCP: sequence number,
    /// offset/flags and checksum; UDP: length and checksum).
    pub(super) l4: u64,
    /// TCP: the data offset byte and the super-frame's flags.
    pub(super) tcp_doff: u8,
    pub(super) tcp_flags: u8,
}

impl<'p> Segmenter<'p> {
    /// Build the next `n` TCP (`TCP`) or USO segments of an IPv4 (`V4`) or IPv6 super-frame
    /// whose payload lies in the head: the same bytes as [`Segmenter::emit`], with the
    /// header block copied into fixed-stride slots and only the per-segment fields written,
    /// their checksums added from precomputed sums.
    ///
    /// Every segment but the first and the last is full-size and has the same lengths,
    /// TCP flags and partial checksum, so slot 0 of the arena gets a second template with
    /// those already written, and a middle segment only needs its IPv4 ID and header
    /// checksum, its TCP sequence number and (Full mode) its transport checksum.
    #[inline(always)]
    pub(super) fn fast_batch<const V4: bool, const TCP: bool>(
        &mut self,
        f: &Fast<'p>,
        buf: &mut SegmentBuf,
        n: usize,
    ) {
        use crate::csum::{fold64, sum_slice};
        use crate::wire::tcp::{CWR, FIN, PSH};

        let stride = f.tmpl.len();
        let need = (n + 1) * stride;
        // The arena only grows; slots are overwritten whole.
        if buf.hdrs.len() < need {
            buf.hdrs.resize(need, 0);
        }
        let (l3o, l4o, hdr_len) = (self.l3_offset, self.l4_offset, self.src.payload_offset);
        let l4_hdr = hdr_len - l4o;
        let l3_to_l4 = l4o - l3o;
        let size = self.seg_size;
        let first = self.next;
        let start = hdr_len + first * size;
        let payload = self.src.head.get(start..).unwrap_or_default();
        let partial = self.opts.csum == CsumMode::Partial;
        let csum = if partial {
            CsumState::Partial {
                start: l4o as u16,
                offset: csum_offset(TCP),
            }
        } else {
            CsumState::None
        };
        let (ip4_id, fixed_id, seq0, total) =
            (self.ip4_id, self.opts.fixed_id, self.tcp_seq, self.total);
        let id_of = |i: usize| {
            if fixed_id {
                ip4_id
            } else {
                ip4_id.wrapping_add(i as u16)
            }
        };
        let seq_of = |i: usize| seq0.wrapping_add((i * size) as u32);
        let seq_sum = |seq: u32| u64::from(seq >> 16) + u64::from(seq & 0xffff);

        // Every slot holds a copy of the super-frame's header block, whose layout `build`
        // checked: the IP header at `l3o..l4o`, the transport header (at least its fixed part)
        // at `l4o..hdr_len`, and a slot is at least `hdr_len` long. The per-segment fields
        // are written through the wire views over those ranges.

        // Write every per-segment field of segment `i` with payload `p` into `slot`.
        let edge = |slot: &mut [u8], i: usize, p: &[u8]| {
            let l4_len = l4_hdr + p.len();
            if V4 {
                let tot = (l3_to_l4 + l4_len) as u16;
                let id = id_of(i);
                let mut ip = ipv4::Packet::new_unchecked(&mut slot[l3o..l4o]);
                ip.set_total_len(tot);
                ip.set_ident(id);
                ip.set_checksum(!fold64(f.ip4 + u64::from(tot) + u64::from(id)));
            } else {
                let plen = (l3_to_l4 - ipv6::HEADER_LEN + l4_len) as u16;
                ipv6::Packet::new_unchecked(&mut slot[l3o..l4o]).set_payload_len(plen);
            }
            // Pseudo-header with this segment's length.
            let mut sum = f.pseudo + l4_len as u64;
            let th = &mut slot[l4o..hdr_len];
            if TCP {
                let seq = seq_of(i);
                let mut flags = f.tcp_flags;
                if i + 1 != total {
                    flags &= !(FIN | PSH);
                }
                if i > 0 {
                    flags &= !CWR;
                }
                let mut t = tcp::Packet::new_unchecked(th);
                t.set_seq_number(seq);
                t.set_flags(flags);
                if !partial {
                    sum += f.l4
                        + seq_sum(seq)
                        + u64::from(u16::from_be_bytes([f.tcp_doff, flags]))
                        + sum_slice(p);
                }
                let folded = fold64(sum);
                // tcp_gso_segment keeps a 0 result (gso_make_checksum).
                t.set_checksum(if partial { folded } else { !folded });
            } else {
                let mut u = udp::Packet::new_unchecked(th);
                u.set_len(l4_len as u16);
                if !partial {
                    sum += f.l4 + l4_len as u64 + sum_slice(p);
                }
                let folded = fold64(sum);
                // UDP: 0 means "no checksum".
                u.set_checksum(if partial { folded } else { mangle0(!folded) });
            }
        };

        // The middle segments' constants and template (slot 0).
        let mid_l4_len = l4_hdr + size;
        let mid_tot = (l3_to_l4 + mid_l4_len) as u16;
        let mid_flags = f.tcp_flags & !(FIN | PSH | CWR);
        let mid_ip4 = f.ip4 + u64::from(mid_tot);
        // Transport checksum of a middle segment without its sequence number and payload.
        let mid_l4 = f.pseudo
            + mid_l4_len as u64
            + f.l4
            + if TCP {
                u64::from(u16::from_be_bytes([f.tcp_doff, mid_flags]))
            } else {
                mid_l4_len as u64
            };
        let mid_partial = fold64(f.pseudo + mid_l4_len as u64);
        buf.csum = csum;
        let SegmentBuf { hdrs, uniform, .. } = buf;
        let (mid, slots) = hdrs[..need].split_at_mut(stride);
        copy_hdr(mid, f.tmpl);
        if V4 {
            ipv4::Packet::new_unchecked(&mut mid[l3o..l4o]).set_total_len(mid_tot);
        } else {
            let plen = (l3_to_l4 - ipv6::HEADER_LEN + mid_l4_len) as u16;
            ipv6::Packet::new_unchecked(&mut mid[l3o..l4o]).set_payload_len(plen);
        }
        if TCP {
            let mut t = tcp::Packet::new_unchecked(&mut mid[l4o..hdr_len]);
            t.set_flags(mid_flags);
            if partial {
                t.set_checksum(mid_partial);
            }
        } else {
            let mut u = udp::Packet::new_unchecked(&mut mid[l4o..hdr_len]);
            u.set_len(mid_l4_len as u16);
            if partial {
                u.set_checksum(mid_partial);
            }
        }
        let mid: &[u8] = mid;

        for (k, (slot, p)) in slots
            .chunks_exact_mut(stride)
            .zip(payload.chunks(size))
            .enumerate()
        {
            let i = first + k;
            if i == 0 || i + 1 == total {
                copy_hdr(slot, f.tmpl);
                edge(slot, i, p);
            } else {
                copy_hdr(slot, mid);
                if V4 {
                    let id = id_of(i);
                    let mut ip = ipv4::Packet::new_unchecked(&mut slot[l3o..l4o]);
                    ip.set_ident(id);
                    ip.set_checksum(!fold64(mid_ip4 + u64::from(id)));
                }
                let mut sum = mid_l4;
                let th = &mut slot[l4o..hdr_len];
                if TCP {
                    let seq = seq_of(i);
                    let mut t = tcp::Packet::new_unchecked(th);
                    t.set_seq_number(seq);
                    sum += seq_sum(seq);
                    if !partial {
                        t.set_checksum(!fold64(sum + sum_slice(p)));
                    }
                } else if !partial {
                    let c = !fold64(sum + sum_slice(p));
                    udp::Packet::new_unchecked(th).set_checksum(mangle0(c));
                }
            }
        }
        *uniform = Some(Uniform {
            count: n,
            stride,
            hdr_len,
            payload_off: start,
            size,
            payload_end: hdr_len + self.payload_len,
        });
        self.next += n;
    }
}

impl<'p> Fast<'p> {
    /// The constants of the TCP/USO loop for the checked headers `head[..hdr_len]` whose
    /// transport header (of protocol `l4`) is `th`; `ip4` is the IPv4 header's constant sum.
    pub(super) fn new(
        head: &'p [u8],
        th: &[u8],
        l4: L4,
        hdr_len: usize,
        pseudo: Sum,
        ip4: Sum,
    ) -> Self {
        let (l4, tcp_doff, tcp_flags) = if l4 == L4::Tcp {
            // Everything but the sequence number, data offset and flags, and checksum.
            use tcp::field::{CHECKSUM, DATA_OFF, FLAGS, SEQ};
            let w = words(&th[..SEQ.start])
                + words(&th[SEQ.end..DATA_OFF])
                + words(&th[FLAGS + 1..CHECKSUM.start])
                + words(&th[CHECKSUM.end..]);
            (w, th[DATA_OFF], tcp::Packet::new_unchecked(th).flags())
        } else {
            // The ports: length and checksum are per segment.
            (words(&th[..udp::field::LENGTH.start]), 0, 0)
        };
        // A fixed-size copy is a few vector moves; a variable one is a call to memcpy.
        let copy = match hdr_len {
            0..=64 if head.len() >= 64 => 64,
            65..=128 if head.len() >= 128 => 128,
            n => n,
        };
        Fast {
            tmpl: &head[..copy],
            pseudo: u64::from(pseudo.fold()),
            ip4: u64::from(ip4.fold()),
            l4: u64::from(l4),
            tcp_doff,
            tcp_flags,
        }
    }
}

/// Copy the header template into a slot of the same length; the usual lengths are fixed-size
/// copies.
#[inline(always)]
fn copy_hdr(dst: &mut [u8], src: &[u8]) {
    if let (Ok(d), Ok(s)) = (
        <&mut [u8; 64]>::try_from(&mut *dst),
        <&[u8; 64]>::try_from(src),
    ) {
        *d = *s;
    } else if let (Ok(d), Ok(s)) = (
        <&mut [u8; 128]>::try_from(&mut *dst),
        <&[u8; 128]>::try_from(src),
    ) {
        *d = *s;
    } else {
        dst.copy_from_slice(src);
    }
}
