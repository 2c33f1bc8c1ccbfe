//! Output storage (header arena, segment descriptors), batches and their segments.

use std::io::IoSlice;

use super::source::{PayloadSlices, Source};
use crate::packet::{CsumState, OffloadMeta, PacketError};

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

/// The segments of one batch.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'b> {
    pub(super) src: Source<'b>,
    pub(super) buf: &'b SegmentBuf,
}

impl<'b> Batch<'b> {
    pub fn len(&self) -> usize {
        match self.buf.uniform {
            Some(u) => u.count,
            None => self.buf.segs.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Segment `i` of the batch.
    pub fn get(&self, i: usize) -> Option<Segment<'b>> {
        match self.buf.uniform {
            Some(u) if i < u.count => self.uniform_segment(&u, i),
            Some(_) => None,
            None => self.segment(self.buf.segs.get(i)?),
        }
    }

    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = Segment<'b>> + '_ {
        Segments {
            batch: *self,
            descs: self.buf.segs.iter(),
            next: 0,
        }
    }

    /// Segment `k` of a uniform batch.
    #[inline(always)]
    fn uniform_segment(&self, u: &Uniform, k: usize) -> Option<Segment<'b>> {
        let hs = (k + 1) * u.stride;
        let header = self.buf.hdrs.get(hs..hs + u.hdr_len)?;
        let rest = self
            .src
            .head
            .get(u.payload_off + k * u.size..u.payload_end)?;
        let first = rest.get(..u.size).unwrap_or(rest);
        Some(Segment {
            header,
            first,
            more: &[],
            payload_len: first.len(),
            csum: self.buf.csum,
        })
    }

    #[inline(always)]
    fn segment(&self, d: &SegDesc) -> Option<Segment<'b>> {
        let (hdr_start, hdr_len) = (d.hdr_start as usize, d.hdr_len as usize);
        let (piece, off, len) = (
            d.payload_piece as usize,
            d.payload_off as usize,
            d.payload_len as usize,
        );
        let header = self.buf.hdrs.get(hdr_start..hdr_start + hdr_len)?;
        let (here, more) = self.src.window(piece, off);
        let p = PayloadSlices {
            first: here.get(..len).unwrap_or(here),
            more,
            left: len.saturating_sub(here.len()),
        };
        Some(Segment {
            header,
            first: p.first,
            more: p.more,
            payload_len: len,
            csum: self.buf.csum,
        })
    }
}

/// Iterator over the segments of a batch.
struct Segments<'b> {
    pub(super) batch: Batch<'b>,
    pub(super) descs: core::slice::Iter<'b, SegDesc>,
    /// Next segment of a uniform batch.
    pub(super) next: usize,
}

impl<'b> Iterator for Segments<'b> {
    type Item = Segment<'b>;

    #[inline]
    fn next(&mut self) -> Option<Segment<'b>> {
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

/// One output segment: a header block and payload slices borrowed from the super-frame.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'b> {
    pub(super) header: &'b [u8],
    /// The payload, resolved: its bytes in the piece where it starts, and the fragments
    /// it continues into for `payload_len - first.len()` more bytes.
    pub(super) first: &'b [u8],
    pub(super) more: &'b [&'b [u8]],
    pub(super) payload_len: usize,
    pub(super) csum: CsumState,
}

impl<'b> Segment<'b> {
    /// The header block (L2 through L4).
    pub fn header(&self) -> &'b [u8] {
        self.header
    }

    pub fn payload_len(&self) -> usize {
        self.payload_len
    }

    /// Length of the whole frame.
    pub fn len(&self) -> usize {
        self.header.len() + self.payload_len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Offload metadata of the segment (never GSO; a partial checksum in Partial mode).
    pub fn meta(&self) -> OffloadMeta {
        OffloadMeta {
            csum: self.csum,
            gso: None,
        }
    }

    /// The payload as slices of the super-frame.
    pub fn payload(&self) -> PayloadSlices<'b> {
        PayloadSlices {
            first: self.first,
            more: self.more,
            left: self.payload_len - self.first.len(),
        }
    }

    /// Every slice of the frame: header then payload.
    pub fn slices(&self) -> impl Iterator<Item = &'b [u8]> + 'b {
        std::iter::once(self.header)
            .chain(self.payload())
            .filter(|s| !s.is_empty())
    }

    /// Fill `out` with the frame's slices as `IoSlice`s (for writev / sendmmsg); return how
    /// many were used. One header slice plus one slice per payload fragment touched.
    #[inline]
    pub fn fill_iovecs(&self, out: &mut [IoSlice<'b>]) -> Result<usize, PacketError> {
        // Fast path: the payload lies in one piece (always, for a linear frame).
        let p = self.first;
        if p.len() == self.payload_len {
            if let [h, rest @ ..] = &mut *out {
                *h = IoSlice::new(self.header);
                if p.is_empty() {
                    return Ok(1);
                }
                if let [b, ..] = rest {
                    *b = IoSlice::new(p);
                    return Ok(2);
                }
            }
        }
        // By value: the segment is copied to memory only on this path.
        Segment::fill_iovecs_slow(*self, out)
    }

    /// [`Segment::fill_iovecs`] for a payload spread over fragments, or too few slots.
    #[cold]
    #[inline(never)]
    fn fill_iovecs_slow(self, out: &mut [IoSlice<'b>]) -> Result<usize, PacketError> {
        let mut n = 0;
        for s in self.slices() {
            let Some(slot) = out.get_mut(n) else {
                return Err(PacketError::TooManySlices {
                    needed: self.slices().count(),
                    capacity: out.len(),
                });
            };
            *slot = IoSlice::new(s);
            n += 1;
        }
        Ok(n)
    }

    /// Append the whole frame to `out` (for pcap output or a destination without
    /// scatter-gather).
    pub fn append_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.len());
        for s in self.slices() {
            out.extend_from_slice(s);
        }
    }

    /// Replace the contents of `out` with the whole frame.
    pub fn write_linear(&self, out: &mut Vec<u8>) {
        out.clear();
        self.append_to(out);
    }
}
