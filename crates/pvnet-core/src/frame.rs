//! The one thing every stage hands on: a [`Frame`], header bytes followed by payload
//! slices, with the offload metadata ([`OffloadMeta`]) that travels with it.
//!
//! ```text
//!   receive buffer ─┐                      ┌─► writev (tap, AF_PACKET): one call,
//!   guest memory  ──┼─► Frame { head,      ├─► copy into a guest's buffers
//!   GRO gather    ──┤     payload slices,  ├─► segmenter input
//!   GSO segment   ──┘     meta }           └─► checksum completion, VLAN retag
//! ```
//!
//! A frame owns nothing: its head and its payload slices borrow memory somebody else keeps
//! (a receive ring, a guest's descriptor chain mapped into this process, the super-frame a
//! segment was cut from, a header arena). That is what lets a super-frame go from a guest
//! to a tap, or a segment from the segmenter to a socket, without its payload being copied.
//! The model is quinn-proto's `Transmit`: one value that describes what to send, produced
//! by whoever built it and consumed by whoever sends it.
//!
//! The head holds at least every header the frame has (for a frame received into one
//! buffer, the whole frame); the payload is a window of `payload_len` bytes over a list of
//! slices. Operations that must change header bytes (completing a checksum, pushing or
//! popping a VLAN tag) copy the head into a caller's scratch buffer
//! ([`Frame::pull_up_into`]) and leave the payload where it is.

use std::io::IoSlice;

/// Checksum state of a frame, as the kernel's `skb->ip_summed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CsumState {
    /// Nothing is known (CHECKSUM_NONE): the checksums in the frame are what they are.
    #[default]
    None,
    /// The checksums were verified (CHECKSUM_UNNECESSARY, virtio DATA_VALID).
    Unnecessary,
    /// The L4 checksum is partial (CHECKSUM_PARTIAL, virtio NEEDS_CSUM): the field at
    /// `start + offset` holds the folded pseudo-header sum and whoever needs the real
    /// checksum sums from `start` to the end of the packet into it.
    Partial {
        /// Where the sum starts (the transport header), from the start of the frame.
        start: u16,
        /// Where the checksum field is, from `start`.
        offset: u16,
    },
}

/// Segmentation offload type (virtio_net_hdr gso_type without the ECN bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoKind {
    /// TSO over IPv4 (VIRTIO_NET_HDR_GSO_TCPV4).
    Tcpv4,
    /// TSO over IPv6 (VIRTIO_NET_HDR_GSO_TCPV6).
    Tcpv6,
    /// UFO: one UDP datagram split into IP fragments (VIRTIO_NET_HDR_GSO_UDP).
    Ufo,
    /// USO: every segment its own UDP datagram (VIRTIO_NET_HDR_GSO_UDP_L4).
    UdpL4,
}

impl GsoKind {
    /// Whether the kind segments TCP (TSO over IPv4 or IPv6).
    pub const fn is_tcp(self) -> bool {
        matches!(self, GsoKind::Tcpv4 | GsoKind::Tcpv6)
    }
}

/// Segmentation metadata of a super-frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    /// What kind of segmentation the super-frame asks for (of the inner packet, for a
    /// super-frame in a UDP tunnel: TSO or USO, never UFO).
    pub kind: GsoKind,
    /// Payload bytes per segment (MSS for TCP).
    pub size: u16,
    /// The sender set CWR on the super-frame and expects it on the first segment only
    /// (VIRTIO_NET_HDR_GSO_ECN).
    pub ecn: bool,
    /// The super-frame is encapsulated in a UDP tunnel (VXLAN, GENEVE, …): its transport
    /// header is the outer UDP header and `kind` segments the packet inside
    /// (SKB_GSO_UDP_TUNNEL, virtio gso_type UDP_TUNNEL_IPV4/IPV6).
    pub tunnel: Option<UdpTunnel>,
}

impl Gso {
    /// Segmentation of a packet that is not in a tunnel.
    pub const fn plain(kind: GsoKind, size: u16, ecn: bool) -> Gso {
        Gso {
            kind,
            size,
            ecn,
            tunnel: None,
        }
    }
}

/// Where the packet inside a UDP tunnel super-frame starts, and what its outer UDP
/// checksum should be.
///
/// Everything between the outer UDP header and `inner_nh` (a VXLAN header, a GENEVE header
/// with its options, the inner Ethernet header with its VLAN tags) is the tunnel header:
/// it is copied into every segment as it is, as the kernel does (`__skb_udp_tunnel_segment`
/// treats it as opaque).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpTunnel {
    /// Offset of the inner IP header from the start of the frame (virtio
    /// `inner_nh_offset`). The outer UDP header is the frame's own transport header.
    pub inner_nh: u16,
    /// Every segment's outer UDP checksum is computed (SKB_GSO_UDP_TUNNEL_CSUM, virtio
    /// flag UDP_TUNNEL_CSUM); otherwise it is 0, "no checksum".
    pub csum: bool,
}

/// Offload metadata travelling with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OffloadMeta {
    /// What is known of the transport checksum.
    pub csum: CsumState,
    /// `None` for a frame that is not a super-frame.
    pub gso: Option<Gso>,
}

impl OffloadMeta {
    /// Whether the frame carries a partial checksum or GSO metadata (a plain frame carries
    /// neither, and its checksums are complete or unknown).
    pub fn is_offloaded(&self) -> bool {
        self.gso.is_some() || matches!(self.csum, CsumState::Partial { .. })
    }
}

/// Why a [`Frame`] operation could not be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// An offset + length range lies beyond the frame.
    OutOfRange {
        /// Start of the range.
        offset: usize,
        /// Length of the range.
        len: usize,
        /// Length of the frame.
        frame_len: usize,
    },
    /// The iovec array given to [`Frame::fill_iovecs`] has fewer entries than the frame
    /// has slices.
    TooManySlices {
        /// Slices the frame has.
        needed: usize,
        /// Entries the array has.
        capacity: usize,
    },
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            FrameError::OutOfRange {
                offset,
                len,
                frame_len,
            } => write!(
                f,
                "range {offset}..{} beyond a frame of {frame_len} bytes",
                offset.saturating_add(len)
            ),
            FrameError::TooManySlices { needed, capacity } => {
                write!(f, "frame has {needed} slices, iovec array holds {capacity}")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// A frame: `head` (at least all its headers, contiguous), then `payload_len` payload bytes
/// taken from `first` and, when that is not enough, from the slices of `rest` in order.
/// See the [module documentation](self).
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    head: &'a [u8],
    first: &'a [u8],
    rest: &'a [&'a [u8]],
    payload_len: usize,
    /// Offload metadata (partial checksum, GSO).
    pub meta: OffloadMeta,
}

impl<'a> Frame<'a> {
    /// A frame in one buffer.
    pub const fn linear(bytes: &'a [u8], meta: OffloadMeta) -> Frame<'a> {
        Frame {
            head: bytes,
            first: &[],
            rest: &[],
            payload_len: 0,
            meta,
        }
    }

    /// Headers `head`, then every slice of `payload` in order.
    pub fn new(head: &'a [u8], payload: &'a [&'a [u8]], meta: OffloadMeta) -> Frame<'a> {
        let payload_len = payload.iter().map(|s| s.len()).sum();
        Frame {
            head,
            first: &[],
            rest: payload,
            payload_len,
            meta,
        }
    }

    /// Headers `head`, then `payload_len` bytes from `first` and the slices of `rest`
    /// (a window over them: the last slice touched may be longer than needed). A
    /// `payload_len` longer than the slices hold is cut to what they hold.
    pub fn from_window(
        head: &'a [u8],
        first: &'a [u8],
        rest: &'a [&'a [u8]],
        payload_len: usize,
        meta: OffloadMeta,
    ) -> Frame<'a> {
        let mut avail = first.len();
        for s in rest {
            if avail >= payload_len {
                break;
            }
            avail += s.len();
        }
        Frame::window_unchecked(head, first, rest, payload_len.min(avail), meta)
    }

    /// [`Frame::from_window`] for a caller that knows the slices hold `payload_len` bytes
    /// (the segmenter, which cut the window from a frame itself). Were they shorter, the
    /// frame would only be shorter than [`Frame::len`] says, never read out of bounds.
    #[inline(always)]
    pub(crate) const fn window_unchecked(
        head: &'a [u8],
        first: &'a [u8],
        rest: &'a [&'a [u8]],
        payload_len: usize,
        meta: OffloadMeta,
    ) -> Frame<'a> {
        Frame {
            head,
            first,
            rest,
            payload_len,
            meta,
        }
    }

    /// The same payload behind another head (a rewritten copy of this one's headers), for
    /// the core's header rewrites (VLAN retag, checksum completion).
    pub(crate) const fn with_head<'s>(&self, head: &'s [u8]) -> Frame<'s>
    where
        'a: 's,
    {
        Frame {
            head,
            first: self.first,
            rest: self.rest,
            payload_len: self.payload_len,
            meta: self.meta,
        }
    }

    /// The raw parts of the payload window: its first slice (which may hold more than the
    /// window takes), the slices after it, and the payload length. For the segmenter, which
    /// reads a super-frame's payload where it lies and cuts windows of its own from it.
    #[inline]
    pub(crate) const fn window_parts(&self) -> (&'a [u8], &'a [&'a [u8]], usize) {
        (self.first, self.rest, self.payload_len)
    }

    /// The same bytes with other metadata.
    pub const fn with_meta(self, meta: OffloadMeta) -> Frame<'a> {
        Frame { meta, ..self }
    }

    /// The contiguous first part: every header, and the payload too for a linear frame.
    #[inline]
    pub const fn head(&self) -> &'a [u8] {
        self.head
    }

    /// Length of the whole frame.
    #[inline]
    pub const fn len(&self) -> usize {
        self.head.len() + self.payload_len
    }

    /// Whether the frame has no bytes at all.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes after the head.
    #[inline]
    pub const fn payload_len(&self) -> usize {
        self.payload_len
    }

    /// The frame is one contiguous buffer (its head).
    pub const fn is_linear(&self) -> bool {
        self.payload_len == 0
    }

    /// The whole frame, when it is one buffer.
    pub const fn as_linear(&self) -> Option<&'a [u8]> {
        if self.payload_len == 0 {
            Some(self.head)
        } else {
            None
        }
    }

    /// The payload slices after the head, in order, none empty.
    #[inline]
    pub fn payload(&self) -> PayloadSlices<'a> {
        let first = &self.first[..self.first.len().min(self.payload_len)];
        PayloadSlices {
            first,
            rest: self.rest,
            left: self.payload_len - first.len(),
        }
    }

    /// Every slice of the frame in order: the head, then the payload; none empty.
    pub fn slices(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let head = (!self.head.is_empty()).then_some(self.head);
        head.into_iter().chain(self.payload())
    }

    /// Number of (non-empty) slices: what [`Frame::fill_iovecs`] needs room for.
    pub fn slice_count(&self) -> usize {
        usize::from(!self.head.is_empty()) + self.payload().count()
    }

    /// Fill `out` with one `IoSlice` per slice (for writev / sendmsg) and return how many
    /// were written; an error, with `out` partly written, when they do not fit.
    #[inline]
    pub fn fill_iovecs(&self, out: &mut [IoSlice<'a>]) -> Result<usize, FrameError> {
        // Fast path: a head and at most one payload slice (a linear frame, a segment cut from
        // a linear super-frame), the common case on a hot path.
        if let (false, Some(p), [h, rest @ ..]) = (
            self.head.is_empty(),
            self.first.get(..self.payload_len),
            &mut *out,
        ) {
            *h = IoSlice::new(self.head);
            if p.is_empty() {
                return Ok(1);
            }
            if let [b, ..] = rest {
                *b = IoSlice::new(p);
                return Ok(2);
            }
        }
        // By value: the frame is copied to memory only on this path.
        Frame::fill_iovecs_slow(*self, out)
    }

    /// [`Frame::fill_iovecs`] for a payload in several slices, or too few entries.
    #[cold]
    #[inline(never)]
    fn fill_iovecs_slow(self, out: &mut [IoSlice<'a>]) -> Result<usize, FrameError> {
        let mut n = 0;
        for s in self.slices() {
            let Some(slot) = out.get_mut(n) else {
                return Err(FrameError::TooManySlices {
                    needed: self.slice_count(),
                    capacity: out.len(),
                });
            };
            *slot = IoSlice::new(s);
            n += 1;
        }
        Ok(n)
    }

    /// The slices covering `offset..offset + len`, for checksumming or copying a range
    /// without making the frame linear.
    pub fn range(
        &self,
        offset: usize,
        len: usize,
    ) -> Result<impl Iterator<Item = &'a [u8]> + 'a, FrameError> {
        let frame_len = self.len();
        if offset.checked_add(len).is_none_or(|end| end > frame_len) {
            return Err(FrameError::OutOfRange {
                offset,
                len,
                frame_len,
            });
        }
        let mut skip = offset;
        let mut left = len;
        Ok(self.slices().filter_map(move |s| {
            if left == 0 {
                return None;
            }
            if skip >= s.len() {
                skip -= s.len();
                return None;
            }
            let part = &s[skip..];
            skip = 0;
            let part = &part[..part.len().min(left)];
            left -= part.len();
            Some(part)
        }))
    }

    /// Copy `out.len()` bytes starting at `offset` into `out`.
    pub fn copy_out(&self, offset: usize, out: &mut [u8]) -> Result<(), FrameError> {
        let mut pos = 0;
        for s in self.range(offset, out.len())? {
            out[pos..pos + s.len()].copy_from_slice(s);
            pos += s.len();
        }
        Ok(())
    }

    /// Append the whole frame to `out`.
    #[inline]
    pub fn append_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.len());
        for s in self.slices() {
            out.extend_from_slice(s);
        }
    }

    /// Replace the contents of `out` with the whole frame, as one buffer.
    pub fn copy_to(&self, out: &mut Vec<u8>) {
        out.clear();
        self.append_to(out);
    }

    /// The same frame with its first `n` bytes (at least the head) copied into `scratch`,
    /// which becomes the new head, and the rest of the payload left where it is: the
    /// kernel's `pskb_may_pull`, for a caller that must rewrite header bytes (or bytes just
    /// past them) of a frame it cannot write to. `scratch` is cleared first.
    pub fn pull_up_into<'s>(
        &self,
        n: usize,
        scratch: &'s mut Vec<u8>,
    ) -> Result<Frame<'s>, FrameError>
    where
        'a: 's,
    {
        let tail = self.split_head_into(n, scratch)?;
        Ok(tail.with_head(scratch))
    }

    /// The first `n` bytes of the frame (at least the head) copied into `scratch` (cleared
    /// first), and the bytes after them as a frame with an empty head: the payload window
    /// a rewritten head goes in front of ([`Frame::with_head`]). What
    /// [`Frame::pull_up_into`] does, for the core's header rewrites (checksum completion,
    /// VLAN retag), which change `scratch` before they put it in front.
    pub(crate) fn split_head_into(
        &self,
        n: usize,
        scratch: &mut Vec<u8>,
    ) -> Result<Frame<'a>, FrameError> {
        let n = n.max(self.head.len());
        let tail = self.tail_after(n)?;
        scratch.clear();
        for s in self.range(0, n)? {
            scratch.extend_from_slice(s);
        }
        Ok(tail)
    }

    /// The bytes after the first `n` (at least the head) as a frame with an empty head:
    /// the payload window a rewritten head of `n` bytes goes in front of.
    fn tail_after(&self, n: usize) -> Result<Frame<'a>, FrameError> {
        let n = n.max(self.head.len());
        let frame_len = self.len();
        if n > frame_len {
            return Err(FrameError::OutOfRange {
                offset: 0,
                len: n,
                frame_len,
            });
        }
        let mut skip = n - self.head.len();
        let mut first: &'a [u8] = &self.first[..self.first.len().min(self.payload_len)];
        let mut rest: &'a [&'a [u8]] = self.rest;
        while skip > 0 {
            if first.is_empty() {
                // `n <= len` guarantees the slices hold the bytes.
                let Some((f, r)) = rest.split_first() else {
                    break;
                };
                first = f;
                rest = r;
                continue;
            }
            let t = skip.min(first.len());
            first = &first[t..];
            skip -= t;
        }
        Ok(Frame {
            head: &[],
            first,
            rest,
            payload_len: frame_len - n,
            meta: self.meta,
        })
    }
}

/// Iterator over the payload slices of a [`Frame`].
#[derive(Debug, Clone)]
pub struct PayloadSlices<'a> {
    /// The payload's bytes in the slice where it starts (not yet returned).
    first: &'a [u8],
    /// The slices after that one.
    rest: &'a [&'a [u8]],
    /// Bytes to take from `rest`.
    left: usize,
}

impl<'a> Iterator for PayloadSlices<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        if !self.first.is_empty() {
            return Some(core::mem::take(&mut self.first));
        }
        while self.left > 0 {
            let (piece, rest) = self.rest.split_first()?;
            self.rest = rest;
            if piece.is_empty() {
                continue;
            }
            let take = piece.len().min(self.left);
            self.left -= take;
            return Some(&piece[..take]);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOAD: [&[u8]; 3] = [b"ab", b"cde", b"fgh"];

    fn sample() -> Frame<'static> {
        Frame::new(b"HDR", &PAYLOAD, OffloadMeta::default())
    }

    fn flat(f: &Frame<'_>) -> Vec<u8> {
        let mut v = Vec::new();
        f.copy_to(&mut v);
        v
    }

    #[test]
    fn lengths_and_slices() {
        let f = sample();
        assert_eq!(f.len(), 11);
        assert_eq!(f.head().len(), 3);
        assert_eq!(f.payload_len(), 8);
        assert!(!f.is_linear());
        assert_eq!(flat(&f), b"HDRabcdefgh");
        assert_eq!(f.slices().count(), 4);
        assert_eq!(f.slice_count(), 4);
        let lin = Frame::linear(b"xyz", OffloadMeta::default());
        assert_eq!(lin.as_linear(), Some(&b"xyz"[..]));
        assert_eq!(lin.slice_count(), 1);
    }

    #[test]
    fn window_takes_only_what_it_covers() {
        let rest: [&[u8]; 2] = [b"cde", b"fghij"];
        let f = Frame::from_window(b"H", b"ab", &rest, 6, OffloadMeta::default());
        assert_eq!(flat(&f), b"Habcdef");
        let parts: Vec<&[u8]> = f.payload().collect();
        assert_eq!(parts, vec![&b"ab"[..], b"cde", b"f"]);
        // A claimed length beyond the slices is cut to them.
        let f = Frame::from_window(b"H", b"ab", &rest, 100, OffloadMeta::default());
        assert_eq!(f.len(), 11);
        // A window inside the first slice.
        let f = Frame::from_window(b"H", b"abcdef", &rest, 2, OffloadMeta::default());
        assert_eq!(flat(&f), b"Hab");
    }

    #[test]
    fn empty_slices_are_skipped() {
        let payload: [&[u8]; 3] = [b"", b"ab", b""];
        let f = Frame::new(b"", &payload, OffloadMeta::default());
        assert_eq!(f.slices().collect::<Vec<_>>(), vec![&b"ab"[..]]);
        assert_eq!(f.slice_count(), 1);
    }

    #[test]
    fn range_spans_slices() {
        let f = sample();
        let parts: Vec<&[u8]> = f.range(2, 6).unwrap().collect();
        assert_eq!(parts, vec![&b"R"[..], b"ab", b"cde"]);
        let mut out = [0u8; 4];
        f.copy_out(7, &mut out).unwrap();
        assert_eq!(&out, b"efgh");
        assert!(f.range(8, 4).is_err());
        assert!(f.range(usize::MAX, 2).is_err());
        assert_eq!(f.range(11, 0).unwrap().count(), 0);
    }

    #[test]
    fn iovecs_match_slices() {
        let f = sample();
        let mut io = [IoSlice::new(&[]); 8];
        let n = f.fill_iovecs(&mut io).unwrap();
        assert_eq!(n, 4);
        let joined: Vec<u8> = io[..n].iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(joined, b"HDRabcdefgh");
        let mut small = [IoSlice::new(&[]); 2];
        assert_eq!(
            f.fill_iovecs(&mut small),
            Err(FrameError::TooManySlices {
                needed: 4,
                capacity: 2
            })
        );
    }

    #[test]
    fn pull_up_copies_exactly_the_needed_bytes() {
        let f = sample();
        for n in 0..=11 {
            let mut scratch = Vec::new();
            let g = f.pull_up_into(n, &mut scratch).unwrap();
            assert_eq!(g.head().len(), n.max(3), "n = {n}");
            assert_eq!(flat(&g), b"HDRabcdefgh", "n = {n}");
            assert_eq!(g.len(), 11);
        }
        let mut scratch = Vec::new();
        assert_eq!(
            f.pull_up_into(12, &mut scratch).map(|g| g.len()),
            Err(FrameError::OutOfRange {
                offset: 0,
                len: 12,
                frame_len: 11
            })
        );
        let rest: [&[u8]; 2] = [b"cde", b"fghij"];
        let w = Frame::from_window(b"H", b"ab", &rest, 6, OffloadMeta::default());
        for n in 1..=7 {
            let mut scratch = Vec::new();
            let g = w.pull_up_into(n, &mut scratch).unwrap();
            assert_eq!(flat(&g), b"Habcdef", "n = {n}");
        }
    }

    #[test]
    fn meta_says_when_it_asks_for_work() {
        let mut m = OffloadMeta::default();
        assert!(!m.is_offloaded());
        m.csum = CsumState::Unnecessary;
        assert!(!m.is_offloaded());
        m.csum = CsumState::Partial {
            start: 34,
            offset: 16,
        };
        assert!(m.is_offloaded());
    }
}
