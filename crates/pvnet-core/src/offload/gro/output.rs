//! What comes out of the coalescer.

use super::stats::{FlushCause, PassCause};
use super::Seg;
use crate::offload::checksum::{complete_partial_linear, CsumError};
use crate::packet::{CsumState, OffloadMeta};

/// Why an [`Emitted`] item came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitCause {
    /// The frame was never held.
    Passed(PassCause),
    /// A held flow left.
    Flushed(FlushCause),
}

/// One item out of the coalescer.
#[derive(Debug, Clone, Copy)]
pub struct Emitted<'a> {
    /// The frame, starting where the input frames started (L2 or L3). For a super-frame the
    /// L4 checksum field holds the folded pseudo-header sum (see `meta`).
    pub frame: &'a [u8],
    /// `OffloadMeta::default()` for a frame given back unchanged; for a super-frame
    /// `CsumState::Partial { start: transport header offset, offset: 16 or 6 }` and
    /// `Gso { kind: Tcpv4 | Tcpv6 | UdpL4, size: first segment's payload, ecn: CWR on the
    /// first segment }`.
    pub meta: OffloadMeta,
    /// Segments in the frame (1 unless a super-frame).
    pub segments: u16,
    /// Header bytes before the payload (L2 + L3 + L4): the virtio `hdr_len` hint.
    pub hdr_len: u16,
    /// IPv4 TCP super-frame whose segments all carry the same IP ID (the kernel's
    /// SKB_GSO_TCP_FIXEDID, which a virtio header cannot express: a segmenter will
    /// increment the IDs).
    pub fixed_id: bool,
    pub cause: EmitCause,
    /// Number of the pushed frame this item started with (frames count from 1, as
    /// `GroStats::frames_in`): the first merged segment of a super-frame, or the frame
    /// itself. Lets a caller keep its output in input order.
    pub first_frame: u64,
}

impl Emitted<'_> {
    /// Whether this is a super-frame (carries GSO metadata and a partial checksum).
    pub fn is_super(&self) -> bool {
        self.meta.gso.is_some()
    }

    /// Copy the frame into `out` (cleared first) as a plain linear frame with complete
    /// checksums: the partial checksum of a super-frame is finished, the rest is copied
    /// as is. For writing super-frames to a pcap file or a device without offloads.
    pub fn to_linear(&self, out: &mut Vec<u8>) -> Result<(), CsumError> {
        out.clear();
        out.extend_from_slice(self.frame);
        complete_checksum(out, &self.meta)
    }
}

/// Frames that [`Coalescer::coalesce_batch`] reads by index: a slice of buffers (pass a
/// `Vec` as `&v[..]`), or a caller's own receive ring.
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

/// One item out of [`Coalescer::coalesce_batch`]: the frame is [`Gathered::head`] followed
/// by [`Gathered::payloads`], which borrow the caller's batch. Same metadata as
/// [`Emitted`].
pub struct Gathered<'a, 'f, T: ?Sized> {
    /// The frame's first bytes: for a flow (super-frame or a single segment) its headers,
    /// rewritten for a super-frame as in [`Emitted::frame`]; for a frame that was never
    /// held (or a flow held since [`Coalescer::push`]) the whole frame.
    pub head: &'a [u8],
    pub(super) segs: &'a [Seg],
    pub(super) frames: &'f T,
    /// `GroStats::frames_in` when the batch started.
    pub(super) base: u64,
    /// As [`Emitted::meta`].
    pub meta: OffloadMeta,
    /// As [`Emitted::segments`]: the number of payloads, or 1 for a frame given back whole.
    pub segments: u16,
    /// As [`Emitted::hdr_len`].
    pub hdr_len: u16,
    /// As [`Emitted::fixed_id`].
    pub fixed_id: bool,
    /// As [`Emitted::cause`].
    pub cause: EmitCause,
    /// As [`Emitted::first_frame`]; see also [`Gathered::batch_index`].
    pub first_frame: u64,
}

impl<T: ?Sized> Clone for Gathered<'_, '_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: ?Sized> Copy for Gathered<'_, '_, T> {}

impl<T: ?Sized> core::fmt::Debug for Gathered<'_, '_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Gathered")
            .field("head_len", &self.head.len())
            .field("payloads", &self.segs.len())
            .field("meta", &self.meta)
            .field("segments", &self.segments)
            .field("cause", &self.cause)
            .field("first_frame", &self.first_frame)
            .finish_non_exhaustive()
    }
}

impl<'a, 'f, T: FrameBatch + ?Sized> Gathered<'a, 'f, T> {
    /// The payloads that follow [`Gathered::head`], in order: one per segment of a flow,
    /// none for a frame given back whole.
    pub fn payloads(&self) -> impl ExactSizeIterator<Item = &'f [u8]> + use<'a, 'f, T> {
        let frames = self.frames;
        self.segs
            .iter()
            .map(move |s| frames.frame(s.frame).get(s.start..).unwrap_or_default())
    }

    /// The layers and metadata of this item, given what was validated of the frame it
    /// began with: a super-frame keeps its first segment's headers and only grows, and it
    /// is built by the rules `vnet::validate` checks (a TCP or UDP super-frame of the
    /// packet's own protocols, gso_size the first segment's payload, no fragment, a
    /// partial checksum at the transport header), so it is valid by construction.
    pub fn validated(&self, first: &crate::vnet::Validated) -> crate::vnet::Validated {
        let mut layers = *first.layers();
        layers.ip_end = self.len();
        crate::vnet::Validated::new_unchecked(layers, self.meta)
    }

    /// The batch the payloads are in.
    pub fn frames(&self) -> &'f T {
        self.frames
    }

    /// Index in the batch of the frame this item began with (the frame itself, or a flow's
    /// first segment), from which a caller can find what it knows of that frame. `None`
    /// for a flow held since [`Coalescer::push`], which began before the batch.
    pub fn batch_index(&self) -> Option<usize> {
        let n = self.first_frame.checked_sub(self.base)?.checked_sub(1)?;
        usize::try_from(n).ok()
    }

    /// Every piece of the frame in order: the head, then the payloads.
    pub fn parts(&self) -> impl Iterator<Item = &'a [u8]> + use<'a, 'f, T>
    where
        'f: 'a,
    {
        core::iter::once(self.head).chain(self.payloads())
    }

    /// Length of the whole frame.
    pub fn len(&self) -> usize {
        self.head.len() + self.payloads().map(<[u8]>::len).sum::<usize>()
    }

    /// Whether the frame is empty (never, for anything the coalescer emits).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is a super-frame (carries GSO metadata and a partial checksum).
    pub fn is_super(&self) -> bool {
        self.meta.gso.is_some()
    }

    /// Copy the frame into `out` (cleared first) exactly as it stands: the same bytes
    /// [`Coalescer::push_batch`] would have emitted.
    pub fn copy_to(&self, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(self.len());
        for p in self.parts() {
            out.extend_from_slice(p);
        }
    }

    /// Like [`Emitted::to_linear`]: the frame in one buffer with complete checksums.
    pub fn to_linear(&self, out: &mut Vec<u8>) -> Result<(), CsumError> {
        self.copy_to(out);
        complete_checksum(out, &self.meta)
    }
}

/// Complete the partial checksum that `meta` announces in `frame` (no-op without one).
pub fn complete_checksum(frame: &mut [u8], meta: &OffloadMeta) -> Result<(), CsumError> {
    match meta.csum {
        CsumState::Partial { start, offset } => {
            complete_partial_linear(frame, usize::from(start), usize::from(offset))
        }
        _ => Ok(()),
    }
}
