//! Output storage (header arena, segment descriptors), batches and their segments.

use super::source::Source;
use crate::frame::Frame;
use crate::frame::{CsumState, OffloadMeta};

/// One segment's descriptor in a [`SegmentBuf`]. The payload is resolved when the segment
/// is built: it starts at byte `payload_off` of piece `payload_piece` (0: the head, counted
/// from the start of the frame; k: fragment k - 1).
///
/// 32-bit fields keep it to 20 bytes: a super-frame is at most 64 KiB of IP packet behind
/// at most [`MAX_HEADER_LEN`](super::MAX_HEADER_LEN) bytes of headers, so it has at most 65535 segments, and the
/// header arena of one batch stays far below 4 GiB.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SegDesc {
    pub(super) hdr_start: u32,
    pub(super) hdr_len: u32,
    pub(super) payload_piece: u32,
    pub(super) payload_off: u32,
    pub(super) payload_len: u32,
}

/// Reusable output storage: a header arena and segment descriptors, with a capacity in
/// segments. Allocates only while growing to the largest header block seen (warm-up).
#[derive(Debug, Clone)]
pub struct SegmentBuf {
    pub(super) hdrs: Vec<u8>,
    pub(super) segs: Vec<SegDesc>,
    /// Checksum state of every segment of the batch (the same for all segments of a
    /// super-frame).
    pub(super) csum: CsumState,
    /// A batch from the TCP/USO loop, described arithmetically instead of by `segs`.
    pub(super) uniform: Option<Uniform>,
    pub(super) capacity: usize,
}

/// The segments of a batch made by [`Segmenter::fast_batch`]: segment `k` has its header at
/// `(k + 1) * stride` in the arena and the `size` payload bytes of the head from
/// `payload_off + k * size` (fewer for the last, which ends at `payload_end`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Uniform {
    pub(super) count: usize,
    pub(super) stride: usize,
    pub(super) hdr_len: usize,
    pub(super) payload_off: usize,
    pub(super) size: usize,
    pub(super) payload_end: usize,
}

impl SegmentBuf {
    /// Storage for up to `capacity` segments per batch (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        SegmentBuf {
            // Typical TCPv4 headers are 54..86 bytes; 128 per segment avoids growth.
            hdrs: Vec::with_capacity(capacity * 128),
            segs: Vec::with_capacity(capacity),
            csum: CsumState::None,
            uniform: None,
            capacity,
        }
    }

    /// Segments per batch.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl Default for SegmentBuf {
    fn default() -> Self {
        Self::with_capacity(64)
    }
}

/// The segments of one batch, each a [`Frame`]: its header block in the buffer's arena, its
/// payload a window of slices of the super-frame, its metadata the segment's (never GSO; a
/// partial checksum in [`CsumMode::Partial`](super::CsumMode::Partial)).
#[derive(Debug, Clone, Copy)]
pub struct Batch<'b> {
    pub(super) src: Source<'b>,
    pub(super) buf: &'b SegmentBuf,
}

impl<'b> Batch<'b> {
    /// Number of segments in the batch.
    pub fn len(&self) -> usize {
        match self.buf.uniform {
            Some(u) => u.count,
            None => self.buf.segs.len(),
        }
    }

    /// Whether the batch has no segment (the segmenter was done).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Segment `i` of the batch.
    pub fn get(&self, i: usize) -> Option<Frame<'b>> {
        match self.buf.uniform {
            Some(u) if i < u.count => self.uniform_segment(&u, i),
            Some(_) => None,
            None => self.segment(self.buf.segs.get(i)?),
        }
    }

    /// The segments of the batch, in order.
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = Frame<'b>> + '_ {
        Segments {
            batch: *self,
            descs: self.buf.segs.iter(),
            next: 0,
        }
    }

    /// The metadata of every segment of the batch.
    #[inline(always)]
    fn meta(&self) -> OffloadMeta {
        OffloadMeta {
            csum: self.buf.csum,
            gso: None,
        }
    }

    /// Segment `k` of a uniform batch.
    #[inline(always)]
    fn uniform_segment(&self, u: &Uniform, k: usize) -> Option<Frame<'b>> {
        let hs = (k + 1) * u.stride;
        let header = self.buf.hdrs.get(hs..hs + u.hdr_len)?;
        let payload = self
            .src
            .head
            .get(u.payload_off + k * u.size..u.payload_end)?;
        let len = payload.len().min(u.size);
        Some(Frame::window_unchecked(
            header,
            payload,
            &[],
            len,
            self.meta(),
        ))
    }

    #[inline(always)]
    fn segment(&self, d: &SegDesc) -> Option<Frame<'b>> {
        let (hdr_start, hdr_len) = (d.hdr_start as usize, d.hdr_len as usize);
        let header = self.buf.hdrs.get(hdr_start..hdr_start + hdr_len)?;
        // Cut by the segmenter from the super-frame: the window holds `payload_len` bytes.
        let (first, rest) = self
            .src
            .window(d.payload_piece as usize, d.payload_off as usize);
        Some(Frame::window_unchecked(
            header,
            first,
            rest,
            d.payload_len as usize,
            self.meta(),
        ))
    }
}

/// Iterator over the segments of a batch.
struct Segments<'b> {
    batch: Batch<'b>,
    descs: core::slice::Iter<'b, SegDesc>,
    /// Next segment of a uniform batch.
    next: usize,
}

impl<'b> Iterator for Segments<'b> {
    type Item = Frame<'b>;

    #[inline]
    fn next(&mut self) -> Option<Frame<'b>> {
        if let Some(u) = &self.batch.buf.uniform {
            while self.next < u.count {
                let k = self.next;
                self.next += 1;
                if let Some(s) = self.batch.uniform_segment(u, k) {
                    return Some(s);
                }
            }
            return None;
        }
        for d in self.descs.by_ref() {
            if let Some(s) = self.batch.segment(d) {
                return Some(s);
            }
        }
        None
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.batch.buf.uniform {
            Some(u) => (0, Some(u.count - self.next.min(u.count))),
            None => (0, Some(self.descs.len())),
        }
    }
}
