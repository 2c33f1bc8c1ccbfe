//! What comes out of the coalescer: one [`Coalesced`] item per frame given back or flow
//! emitted, in copy mode and in gather mode alike.

use super::stats::{FlushCause, PassCause};
use super::Seg;
use crate::frame::Frame;
use crate::frame::{CsumState, GsoKind, OffloadMeta};
use crate::offload::checksum::{complete_partial_linear, CsumError};
use crate::vnet::Validated;
use crate::wire::{Layers, L3, L4};

/// Why a [`Coalesced`] item came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitCause {
    /// The frame was never held.
    Passed(PassCause),
    /// A held flow left.
    Flushed(FlushCause),
}

/// One item out of the coalescer: a frame given back as it came in, a flow of one segment
/// (given back byte for byte, without offload metadata), or a super-frame.
///
/// In copy mode ([`Coalescer::push`](super::Coalescer::push),
/// [`Coalescer::push_batch`](super::Coalescer::push_batch)) the frame is linear: the
/// input frame itself, or the flow's buffer in the coalescer. In gather mode
/// ([`Coalescer::coalesce_batch`](super::Coalescer::coalesce_batch)) a flow's frame is
/// its (rewritten) headers as the head followed by one payload slice per segment, each
/// borrowing the caller's batch: nothing is copied. Both modes emit the same bytes and
/// metadata for the same input.
#[derive(Debug, Clone, Copy)]
pub struct Coalesced<'a> {
    /// The frame, starting where the input frames started (L2 or L3), and its offload
    /// metadata: `OffloadMeta::default()` for a frame given back unchanged; for a
    /// super-frame `CsumState::Partial { start: transport header offset, offset: the
    /// checksum field's }` (the field holds the folded pseudo-header sum) and `Gso { kind:
    /// Tcpv4 | Tcpv6 | UdpL4, size: first segment's payload, ecn: CWR on the first
    /// segment }`; a super-frame of a flow inside a UDP tunnel has `start` at the inner
    /// transport header and `Gso::tunnel` set (its hdr_len below is the inner payload's
    /// offset).
    pub frame: Frame<'a>,
    /// Segments in the frame (1 unless a super-frame).
    pub segments: u16,
    /// Header bytes before the payload (L2 + L3 + L4) of a flow, the virtio `hdr_len`
    /// hint; 0 for a frame that was never held.
    pub hdr_len: u16,
    /// IPv4 TCP super-frame whose segments all carry the same IP ID (the kernel's
    /// SKB_GSO_TCP_FIXEDID, which a virtio header cannot express: a segmenter will
    /// increment the IDs).
    pub fixed_id: bool,
    /// Why the item came out.
    pub cause: EmitCause,
    /// Number of the pushed frame this item started with (frames count from 1, as
    /// `GroStats::frames_in`): the first merged segment of a super-frame, or the frame
    /// itself. Lets a caller keep its output in input order.
    pub first_frame: u64,
    /// `GroStats::frames_in` before the batch the item came out of; `None` outside a batch.
    pub(super) batch_base: Option<u64>,
    /// The inner packet's layers of a UDP tunnel super-frame (offsets from the frame's
    /// start, ending with it).
    pub(super) inner: Option<Layers>,
}

impl Coalesced<'_> {
    /// Whether this is a super-frame (carries GSO metadata and a partial checksum).
    pub fn is_super(&self) -> bool {
        self.frame.meta.gso.is_some()
    }

    /// Index in the batch of the frame this item began with (the frame itself, or a flow's
    /// first segment), for items of [`Coalescer::coalesce_batch`](super::Coalescer::coalesce_batch)
    /// and [`Coalescer::push_batch`](super::Coalescer::push_batch): from it a caller finds
    /// what it knows of that frame. `None` for an item of a single push or flush, and for a
    /// flow held since [`Coalescer::push`](super::Coalescer::push), which began before the
    /// batch.
    pub fn batch_index(&self) -> Option<usize> {
        let n = self
            .first_frame
            .checked_sub(self.batch_base?)?
            .checked_sub(1)?;
        usize::try_from(n).ok()
    }

    /// The item as a [`Validated`] frame, given `first`, what [`crate::vnet::validate`]
    /// returned for the frame the item began with (see [`Coalesced::batch_index`]).
    ///
    /// A frame given back (passed, or a flow of one segment) is that frame byte for byte:
    /// `first`'s layers, without offload metadata. A super-frame keeps its first segment's
    /// headers, only longer: `first`'s layers with the IP packet ending at the end of the
    /// frame, and the super-frame's metadata. That metadata satisfies every rule `validate`
    /// checks by construction, which is why the coalescer may vouch for it: the GSO kind
    /// matches the packet (TCPv4 only from IPv4 TCP, TCPv6 from IPv6 TCP, UDP_L4 from
    /// UDP), no fragment is ever merged, `gso_size` is the first segment's payload (at
    /// least 1 byte, and the super-frame of at least two segments has more than that), the
    /// partial checksum starts at the transport header at the TCP or UDP checksum field,
    /// a UDP super-frame holds at most 64 segments, and the IP length stays within 65535.
    ///
    /// `None` when `first` cannot describe the frame the item began with: its layers
    /// disagree with the headers the coalescer kept (a caller's bookkeeping error).
    pub fn validated(&self, first: &Validated) -> Option<Validated> {
        let mut layers = *first.layers();
        let meta = self.frame.meta;
        let Some(gso) = meta.gso else {
            let flow = matches!(self.cause, EmitCause::Flushed(_));
            let ok = layers.ip_end <= self.frame.len()
                && (!flow || usize::from(self.hdr_len) == layers.payload_offset);
            return ok.then(|| Validated::new_unchecked(layers, meta));
        };
        if let Some(t) = gso.tunnel {
            // The outer packet is UDP (the tunnel's), the rules above hold for the inner
            // one, whose layers the coalescer parsed itself.
            let inner = self.inner?;
            let protocols = layers.l4 == Some(L4::Udp)
                && matches!(
                    (gso.kind, inner.l3, inner.l4),
                    (GsoKind::Tcpv4, Some(L3::Ipv4), Some(L4::Tcp))
                        | (GsoKind::Tcpv6, Some(L3::Ipv6), Some(L4::Tcp))
                        | (GsoKind::UdpL4, Some(_), Some(L4::Udp))
                );
            let same_headers = matches!(meta.csum, CsumState::Partial { start, .. }
                if usize::from(start) == inner.l4_offset)
                && usize::from(t.inner_nh) == inner.l3_offset
                && layers.l4_offset < inner.l3_offset
                && usize::from(self.hdr_len) == inner.payload_offset
                && inner.ip_end == self.frame.len();
            if !protocols || !same_headers || layers.fragment || inner.fragment {
                return None;
            }
            layers.ip_end = self.frame.len();
            return Some(Validated::new_unchecked(layers, meta).with_inner(Some(inner)));
        }
        let protocols = matches!(
            (gso.kind, layers.l3, layers.l4),
            (GsoKind::Tcpv4, Some(L3::Ipv4), Some(L4::Tcp))
                | (GsoKind::Tcpv6, Some(L3::Ipv6), Some(L4::Tcp))
                | (GsoKind::UdpL4, Some(_), Some(L4::Udp))
        );
        let same_headers = matches!(meta.csum, CsumState::Partial { start, .. }
            if usize::from(start) == layers.l4_offset)
            && usize::from(self.hdr_len) == layers.payload_offset;
        if !protocols || !same_headers || layers.fragment {
            return None;
        }
        layers.ip_end = self.frame.len();
        Some(Validated::new_unchecked(layers, meta))
    }
}

/// Frames that [`Coalescer::coalesce_batch`](super::Coalescer::coalesce_batch) reads by
/// index: a slice of buffers (pass a `Vec` as `&v[..]`), or a caller's own receive ring.
///
/// For the whole of one `coalesce_batch` call, `frame(i)` must return the same bytes for
/// the same `i`: a super-frame's payloads are taken again from the frames its segments
/// were merged from when it is emitted (the coalescer panics if such a frame got
/// shorter).
pub trait FrameBatch {
    /// Number of frames.
    fn frame_count(&self) -> usize;
    /// Frame `i` (`i < frame_count()`), starting where the coalescer is told to start
    /// parsing (L2 or L3) and ending where the frame ends.
    fn frame(&self, i: usize) -> &[u8];
}

impl<B: AsRef<[u8]>> FrameBatch for [B] {
    fn frame_count(&self) -> usize {
        self.len()
    }
    fn frame(&self, i: usize) -> &[u8] {
        self.get(i).map_or(&[], AsRef::as_ref)
    }
}

/// Complete the partial checksum that `meta` announces in `frame` (no-op without one): for
/// a linear copy of a super-frame ([`Frame::copy_to`] of [`Coalesced::frame`]) that must
/// carry complete checksums, as in a pcap file or for a device without offloads.
pub fn complete_checksum(frame: &mut [u8], meta: &OffloadMeta) -> Result<(), CsumError> {
    match meta.csum {
        CsumState::Partial { start, offset } => {
            complete_partial_linear(frame, usize::from(start), usize::from(offset))
        }
        _ => Ok(()),
    }
}

/// What the flow code emits: a frame's head (the whole frame in copy mode; a flow's
/// headers in gather mode) and where its payloads lie in the caller's batch (gather mode
/// only), with the item's metadata. The public entry points turn it into a [`Coalesced`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Raw<'a> {
    pub(super) head: &'a [u8],
    pub(super) segs: &'a [Seg],
    pub(super) meta: OffloadMeta,
    pub(super) segments: u16,
    pub(super) hdr_len: u16,
    pub(super) fixed_id: bool,
    pub(super) cause: EmitCause,
    pub(super) first_frame: u64,
    /// A tunnel super-frame's inner layers.
    pub(super) inner: Option<Layers>,
}

impl<'a> Raw<'a> {
    /// The item with `frame` as its bytes.
    #[inline(always)]
    pub(super) fn with_frame<'b>(
        &self,
        frame: Frame<'b>,
        batch_base: Option<u64>,
    ) -> Coalesced<'b> {
        Coalesced {
            frame,
            segments: self.segments,
            hdr_len: self.hdr_len,
            fixed_id: self.fixed_id,
            cause: self.cause,
            first_frame: self.first_frame,
            batch_base,
            inner: self.inner,
        }
    }

    /// The item in copy mode, where the head is the whole frame.
    #[inline(always)]
    pub(super) fn linear(&self, batch_base: Option<u64>) -> Coalesced<'a> {
        debug_assert!(self.segs.is_empty(), "copy mode gathers nothing");
        self.with_frame(Frame::linear(self.head, self.meta), batch_base)
    }
}

/// An empty `Vec` for slices of another lifetime, on the allocation of `v`: how the
/// coalescer keeps one list of payload slices for gather mode from batch to batch (the
/// frames of each batch live for a different lifetime) without allocating per super-frame
/// nor per batch, and without unsafe code: the standard library collects a mapped
/// `vec::IntoIter` into an element type of the same size and alignment in place.
pub(super) fn recycle<'x, 'y>(mut v: Vec<&'x [u8]>) -> Vec<&'y [u8]> {
    v.clear();
    v.into_iter()
        .map(|_| -> &'y [u8] { unreachable!() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::recycle;

    #[test]
    fn recycle_keeps_the_allocation() {
        let data = vec![1u8, 2, 3];
        let mut v: Vec<&[u8]> = Vec::with_capacity(100);
        v.push(&data);
        let (ptr, cap) = (v.as_ptr() as usize, v.capacity());
        let w: Vec<&'static [u8]> = recycle(v);
        assert!(w.is_empty());
        assert_eq!((w.as_ptr() as usize, w.capacity()), (ptr, cap));
    }
}
