//! The flow table: held flows, merging a frame into its flow, and flushing.

use super::classify::{same_options, Candidate, FlowKey};
use super::output::{EmitCause, Raw};
use super::stats::{FlushCause, PassCause};
use super::tunnel::{self, Tunnel};
use super::{hint_bucket, Coalescer, Dest, MAX_L2_LEN};
use crate::csum::Sum;
use crate::frame::{CsumState, Gso, GsoKind, OffloadMeta, UdpTunnel};
use crate::wire::tcp::flags::{CWR, FIN, PSH};
use crate::wire::{ip_proto, ipv4, ipv6, tcp, udp, Layers};

/// virtio `csum_offset` of a TCP super-frame: where the checksum field is in the header.
const TCP_CSUM_OFFSET: u16 = tcp::CHECKSUM_OFFSET as u16;
/// virtio `csum_offset` of a UDP super-frame.
const UDP_CSUM_OFFSET: u16 = udp::CHECKSUM_OFFSET as u16;

/// A held flow: the first frame's headers followed by every merged payload.
///
/// Everything the flow needs of its first segment's headers is copied from its
/// [`Candidate`] when it starts, and the offsets hold the candidate's invariants: `buf`
/// holds at least `payload` bytes, every header of the first segment.
#[derive(Debug, Default)]
pub(super) struct Slot {
    pub(super) active: bool,
    pub(super) key: FlowKey,
    pub(super) digest: u32,
    /// Order in which flows were opened (for "oldest").
    pub(super) age: u64,
    /// Number of the frame that opened the flow (`GroStats::frames_in` at that push).
    pub(super) first_frame: u64,
    /// The first frame's headers, rewritten at flush; in linear mode followed by every
    /// merged payload.
    pub(super) buf: Vec<u8>,
    /// Gather mode ([`Coalescer::coalesce_batch`]): every segment's payload, where it lies
    /// in the caller's batch. Empty in linear mode.
    pub(super) segs: Vec<Seg>,
    /// Bytes of the super-frame so far (`buf` plus the gathered payloads).
    pub(super) len: usize,
    pub(super) l3: usize,
    pub(super) l4: usize,
    pub(super) payload: usize,
    /// The pseudo-header's addresses, summed and folded ([`Candidate::addr_sum`]).
    pub(super) addr_sum: u16,
    pub(super) v6: bool,
    pub(super) tcp: bool,
    pub(super) gso_size: usize,
    pub(super) count: u16,
    pub(super) next_seq: u32,
    /// IPv4 only: the ID repeats (decided at the second segment).
    pub(super) fixed_id: bool,
    /// The first segment's [`Candidate::ip_sig`].
    pub(super) ip_sig: u64,
    /// IPv4: the first segment's IP ID.
    pub(super) ip_id: u16,
    /// TCP: the first segment's flags and ACK number.
    pub(super) tcp_flags: u8,
    pub(super) ack: u32,
    /// TCP: PSH and FIN of the merged segments, set in the super-frame's header at flush.
    pub(super) push_fin: u8,
    /// The first segment's outer headers, for a flow inside a UDP tunnel.
    pub(super) tunnel: Option<Tunnel>,
    /// Inside a tunnel: the inner packet's layers (offsets from the frame's start), for
    /// the super-frame's `Validated`.
    pub(super) inner: Layers,
}

impl Slot {
    /// The length of the outermost IP packet so far (the one `max_size` limits).
    pub(super) fn ip_len(&self) -> usize {
        self.len - self.tunnel.map_or(self.l3, |t| t.l3)
    }
}

/// A gathered payload: frame `frame` of the caller's batch from byte `start` to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seg {
    pub(super) frame: usize,
    pub(super) start: usize,
}

/// Gathered payloads a slot has room for before it grows: a 64 KiB super-frame of
/// 1448-byte segments has 46.
const GATHER_RESERVE: usize = 64;

/// Outcome of trying a candidate against its held flow.
pub(super) enum Merge {
    /// Appended; the flow stays held.
    Held,
    /// Appended; the flow must go now.
    Flush(FlushCause),
    /// Not appended: flush the flow for this cause, then treat the frame as new.
    Refused(FlushCause),
}

impl Coalescer {
    #[inline(always)]
    pub(super) fn find(&self, key: &FlowKey, digest: u32, frame: &[u8]) -> Option<usize> {
        if self.active == 0 {
            return None;
        }
        let l2 = usize::from(key.l2_len);
        let hit = |s: &Slot| {
            s.active
                && s.digest == digest
                && s.key == *key
                && (l2 == 0 || s.buf.get(..l2).is_some_and(|h| Some(h) == frame.get(..l2)))
        };
        // The slot that last opened a flow with this hash bucket, then every slot.
        let hint = usize::from(self.hint[hint_bucket(digest)]);
        if self.slots.get(hint).is_some_and(hit) {
            return Some(hint);
        }
        self.slots.iter().position(hit)
    }

    pub(super) fn oldest(&self) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active)
            .min_by_key(|(_, s)| s.age)
            .map(|(i, _)| i)
    }

    /// The IP-layer rules of `gro_receive_network_flush`: `Some(fixed_id)` when `c` may
    /// follow the held segments, `None` on mismatch. The slot is not changed.
    #[inline(always)]
    fn ip_matches(slot: &Slot, c: &Candidate<'_>) -> Option<bool> {
        if c.ip_sig != slot.ip_sig {
            return None;
        }
        if c.v6 {
            // Extension headers byte-equal (the first word, next header and hop limit are
            // in the signature).
            let hdr_len = c.l4 - c.l3;
            if slot.l4 - slot.l3 != hdr_len {
                return None;
            }
            let (a, b) = (slot.l3 + ipv6::HEADER_LEN, c.l3 + ipv6::HEADER_LEN);
            let same = hdr_len == ipv6::HEADER_LEN
                || matches!(
                    (slot.buf.get(a..slot.l4), c.frame.get(b..c.l4)),
                    (Some(x), Some(y)) if x == y
                );
            same.then_some(false)
        } else {
            // TOS, TTL and DF are in the signature; protocol and addresses in the key.
            let delta = c.ip_id.wrapping_sub(slot.ip_id);
            let fixed = slot.fixed_id || (slot.count == 1 && delta == 0);
            let ok = if fixed {
                delta == 0
            } else {
                delta == slot.count
            };
            ok.then_some(fixed)
        }
    }

    #[inline(always)]
    pub(super) fn try_merge(&mut self, i: usize, c: &Candidate<'_>, dest: Dest) -> Merge {
        let max_size = self.cfg.max_size;
        let max_udp = self.cfg.max_udp_segments;
        let slot = &mut self.slots[i];
        let len = c.payload_len();
        // Header geometry must match for the byte comparisons below.
        if slot.l3 != c.l3 || slot.tcp != c.tcp || slot.v6 != c.v6 {
            return Merge::Refused(FlushCause::Mismatch);
        }
        let Some(fixed_id) = Self::ip_matches(slot, c) else {
            return Merge::Refused(FlushCause::Mismatch);
        };
        match (&slot.tunnel, &c.tunnel) {
            (None, None) => {}
            // Inside a tunnel the inner IPv4 ID must increment too (see `tunnel`).
            (Some(a), Some(b))
                if (c.v6 || !fixed_id) && tunnel::same_outer(&slot.buf, a, c, b, slot.count) => {}
            _ => return Merge::Refused(FlushCause::Mismatch),
        }
        if c.tcp {
            // Options follow the fixed header; both candidates hold their headers.
            let (o2, o) = (slot.l4 + tcp::MIN_HEADER_LEN, c.l4 + tcp::MIN_HEADER_LEN);
            let hl = slot.payload - slot.l4;
            let ok = hl == c.payload - c.l4
                && c.flags & CWR == 0
                && (c.flags ^ slot.tcp_flags) & !(CWR | FIN | PSH) == 0
                && c.ack == slot.ack
                && len <= slot.gso_size
                && c.seq == slot.next_seq
                && (hl == tcp::MIN_HEADER_LEN
                    || same_options(&slot.buf[o2..slot.payload], &c.frame[o..c.payload]));
            if !ok {
                return Merge::Refused(FlushCause::Mismatch);
            }
        } else if len > slot.gso_size {
            return Merge::Refused(FlushCause::Mismatch);
        }
        if slot.ip_len() + len > max_size {
            return Merge::Refused(FlushCause::SizeLimit);
        }
        slot.fixed_id = fixed_id;
        match dest {
            Dest::Linear => slot.buf.extend_from_slice(&c.frame[c.payload..]),
            Dest::Gather(n) => slot.segs.push(Seg {
                frame: n,
                start: c.payload,
            }),
        }
        slot.len += len;
        slot.count += 1;
        slot.next_seq = slot.next_seq.wrapping_add(len as u32);
        self.stats.merged += 1;
        if c.tcp && c.flags & (PSH | FIN) != 0 {
            slot.push_fin |= c.flags & (PSH | FIN);
            return Merge::Flush(FlushCause::Flags);
        }
        if len < slot.gso_size {
            return Merge::Flush(FlushCause::ShortSegment);
        }
        if !c.tcp && slot.count >= max_udp {
            return Merge::Flush(FlushCause::SegmentLimit);
        }
        Merge::Held
    }

    /// Hold `c` as the first segment of a new flow (or pass it when it ends a super-frame
    /// by itself: PSH/FIN).
    pub(super) fn start_flow<F: FnMut(Raw<'_>)>(
        &mut self,
        c: &Candidate<'_>,
        dest: Dest,
        sink: &mut F,
    ) {
        if c.tcp && c.flags & (PSH | FIN) != 0 {
            self.pass(c.frame, PassCause::Flags, sink);
            return;
        }
        // A flow inside a tunnel keeps its inner layers for the super-frame's `Validated`:
        // parsed here, once per flow (the per-frame checks passed, so this parses).
        let inner = match c.tunnel {
            Some(_) => match crate::vnet::inner_layers(c.frame, c.l3, c.frame.len()) {
                Ok(inner) => inner,
                Err(_) => {
                    self.pass(c.frame, PassCause::Malformed, sink);
                    return;
                }
            },
            None => Layers::default(),
        };
        let i = match self.slots.iter().position(|s| !s.active) {
            Some(i) => i,
            None => match self.oldest() {
                Some(i) => {
                    self.flush_slot(i, FlushCause::TableFull, sink);
                    i
                }
                None => {
                    self.pass(c.frame, PassCause::NotTcpUdp, sink);
                    return;
                }
            },
        };
        let max_frame = self.cfg.max_size + MAX_L2_LEN;
        let slot = &mut self.slots[i];
        slot.buf.clear();
        slot.segs.clear();
        match dest {
            Dest::Linear => {
                if slot.buf.capacity() < max_frame {
                    // Once per slot: afterwards merging never reallocates.
                    slot.buf.reserve_exact(max_frame);
                }
                slot.buf.extend_from_slice(c.frame);
            }
            Dest::Gather(n) => {
                if slot.segs.capacity() < GATHER_RESERVE {
                    // Once per slot; a flow of tiny segments may still grow it (amortized).
                    slot.segs.reserve(GATHER_RESERVE);
                }
                slot.buf.extend_from_slice(&c.frame[..c.payload]);
                slot.segs.push(Seg {
                    frame: n,
                    start: c.payload,
                });
            }
        }
        slot.len = c.frame.len();
        slot.active = true;
        slot.key = c.key;
        slot.digest = c.digest;
        if let Ok(h) = u16::try_from(i) {
            self.hint[hint_bucket(c.digest)] = h;
        }
        slot.age = self.next_age;
        slot.first_frame = self.stats.frames_in;
        slot.l3 = c.l3;
        slot.l4 = c.l4;
        slot.payload = c.payload;
        slot.addr_sum = c.addr_sum;
        slot.v6 = c.v6;
        slot.tcp = c.tcp;
        slot.gso_size = c.payload_len();
        slot.count = 1;
        slot.fixed_id = false;
        slot.ip_sig = c.ip_sig;
        slot.ip_id = c.ip_id;
        slot.tcp_flags = c.flags;
        slot.push_fin = 0;
        slot.ack = c.ack;
        slot.next_seq = c.seq.wrapping_add(c.payload_len() as u32);
        slot.tunnel = c.tunnel;
        slot.inner = inner;
        self.next_age += 1;
        self.active += 1;
    }

    pub(super) fn pass<F: FnMut(Raw<'_>)>(&mut self, frame: &[u8], cause: PassCause, sink: &mut F) {
        self.stats.passed[cause.index()] += 1;
        sink(Raw {
            head: frame,
            segs: &[],
            meta: OffloadMeta::default(),
            segments: 1,
            hdr_len: 0,
            fixed_id: false,
            cause: EmitCause::Passed(cause),
            first_frame: self.stats.frames_in,
            inner: None,
        });
    }

    /// Finish the super-frame held in slot `i` (lengths, IPv4 header checksum, partial L4
    /// checksum, as `inet_gro_complete` + `tcp4_gro_complete`/`udp_gro_complete`) and emit it.
    pub(super) fn flush_slot<F: FnMut(Raw<'_>)>(
        &mut self,
        i: usize,
        cause: FlushCause,
        sink: &mut F,
    ) {
        let slot = &mut self.slots[i];
        if !slot.active {
            return;
        }
        slot.active = false;
        self.active -= 1;
        self.stats.flushed[cause.index()] += 1;
        // Fits: a candidate's header offsets fit in 16 bits (see Candidate).
        let hdr_len = slot.payload as u16;
        if slot.count == 1 {
            // Not coalesced: give the frame back exactly as it came, without metadata.
            self.stats.singles += 1;
            // A frame given back is a plain one: in a tunnel, its headers end with the
            // outer UDP header.
            let hdr_len = slot
                .tunnel
                .map_or(hdr_len, |t| (t.th + udp::HEADER_LEN) as u16);
            sink(Raw {
                head: &slot.buf,
                segs: &slot.segs,
                meta: OffloadMeta::default(),
                segments: 1,
                hdr_len,
                fixed_id: false,
                cause: EmitCause::Flushed(cause),
                first_frame: slot.first_frame,
                inner: None,
            });
            return;
        }
        self.stats.super_frames += 1;
        // The lengths fit in 16 bits: merging keeps the IP length within max_size (at most
        // 65535), and the transport segment and the first payload are parts of it.
        let (l3, l4) = (slot.l3, slot.l4);
        let ip_len = (slot.len - l3) as u16;
        let l4_len = (slot.len - l4) as u16;
        // `buf` holds every header of the first segment (see Slot): the views' setters
        // index within them.
        let buf = &mut slot.buf[..];
        if slot.v6 {
            let mut ip = ipv6::Packet::new_unchecked(&mut buf[l3..]);
            ip.set_payload_len(ip_len - ipv6::HEADER_LEN as u16);
        } else {
            let mut ip = ipv4::Packet::new_unchecked(&mut buf[l3..]);
            ip.set_total_len(ip_len);
            ip.fill_checksum();
        }
        let proto = if slot.tcp {
            ip_proto::TCP
        } else {
            ip_proto::UDP
        };
        // The addresses (the final destination of an IPv6 Routing header when there is
        // one) were summed when the flow started.
        let mut pseudo = Sum::new();
        pseudo.add_u16(slot.addr_sum);
        pseudo.add_u16(u16::from(proto));
        pseudo.add_u32(u32::from(l4_len));
        let (csum_offset, kind) = if slot.tcp {
            let mut t = tcp::Packet::new_unchecked(&mut buf[l4..]);
            t.set_flags(t.flags() | slot.push_fin);
            t.set_checksum(pseudo.fold());
            let kind = if slot.v6 {
                GsoKind::Tcpv6
            } else {
                GsoKind::Tcpv4
            };
            (TCP_CSUM_OFFSET, kind)
        } else {
            let mut u = udp::Packet::new_unchecked(&mut buf[l4..]);
            u.set_len(l4_len);
            u.set_checksum(pseudo.fold());
            (UDP_CSUM_OFFSET, GsoKind::UdpL4)
        };
        let ecn = slot.tcp && slot.tcp_flags & CWR != 0;
        let meta = OffloadMeta {
            csum: CsumState::Partial {
                start: l4 as u16,
                offset: csum_offset,
            },
            gso: Some(Gso {
                kind,
                size: slot.gso_size as u16,
                ecn,
                tunnel: slot.tunnel.map(|t| UdpTunnel {
                    // A candidate's offsets fit 16 bits.
                    inner_nh: l3 as u16,
                    csum: t.csum,
                }),
            }),
        };
        let inner = slot.tunnel.map(|t| {
            tunnel::finish_outer(buf, &t, slot.len);
            Layers {
                ip_end: slot.len,
                ..slot.inner
            }
        });
        sink(Raw {
            head: &slot.buf,
            segs: &slot.segs,
            meta,
            segments: slot.count,
            hdr_len,
            fixed_id: slot.tcp && !slot.v6 && slot.fixed_id,
            cause: EmitCause::Flushed(cause),
            first_frame: slot.first_frame,
            inner,
        });
    }
}
