//! Scatter-gather packet with offload metadata.
//!
//! A [`Packet`] is headroom + a linear head (the headers) + a list of payload fragments,
//! so headers can be pushed and pulled without touching the payload, and a segment can be
//! a fresh header block followed by slices of someone else's buffer. [`OffloadMeta`]
//! carries what a virtio_net_hdr carries, in checked form.

pub use crate::frame::{CsumState, Gso, GsoKind, OffloadMeta};

use std::io::IoSlice;

/// A payload fragment: a slice of somebody else's buffer (zero-copy) or a buffer the
/// packet owns. An owned fragment keeps a start offset so that pulling bytes from its
/// front (see [`Packet::pull_up`]) never moves the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frag<'a> {
    Borrowed(&'a [u8]),
    Owned { buf: Vec<u8>, start: usize },
}

impl<'a> Frag<'a> {
    /// An owned fragment of the whole of `buf`.
    pub fn owned(buf: Vec<u8>) -> Self {
        Frag::Owned { buf, start: 0 }
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            Frag::Borrowed(s) => s,
            // `start` never exceeds `buf.len()`: it only grows in `consume_front`, which
            // is bounded by the fragment length.
            Frag::Owned { buf, start } => buf.get(*start..).unwrap_or(&[]),
        }
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop the first `n` bytes (n ≤ len).
    fn consume_front(&mut self, n: usize) {
        match self {
            Frag::Borrowed(s) => *s = s.get(n..).unwrap_or(&[]),
            Frag::Owned { buf, start } => *start = (*start + n).min(buf.len()),
        }
    }
}

/// Why a [`Packet`] operation could not be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// Asked for `wanted` bytes but the packet (or its head, for `pull_head`) holds `len`.
    TooShort { wanted: usize, len: usize },
    /// An offset + length range lies beyond the packet.
    OutOfRange {
        offset: usize,
        len: usize,
        packet_len: usize,
    },
    /// The iovec array given to [`Packet::fill_iovecs`] has fewer entries than needed.
    TooManySlices { needed: usize, capacity: usize },
}

impl core::fmt::Display for PacketError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            PacketError::TooShort { wanted, len } => {
                write!(f, "packet too short: wanted {wanted} bytes, has {len}")
            }
            PacketError::OutOfRange {
                offset,
                len,
                packet_len,
            } => write!(
                f,
                "range {offset}..{} beyond a packet of {packet_len} bytes",
                offset + len
            ),
            PacketError::TooManySlices { needed, capacity } => {
                write!(
                    f,
                    "packet has {needed} slices, iovec array holds {capacity}"
                )
            }
        }
    }
}

impl std::error::Error for PacketError {}

/// Scatter-gather packet: `[headroom | head]` in one owned buffer, then payload fragments.
///
/// Headers live in the head so they can be read and rewritten in place; headers are
/// prepended from the headroom ([`Packet::push_head`]) and stripped by moving the start
/// ([`Packet::pull_head`]), neither of which touches the payload. A packet is reusable:
/// [`Packet::clear`] keeps every allocation, so a driver loop allocates only while warming up.
#[derive(Debug, Clone, Default)]
pub struct Packet<'a> {
    buf: Vec<u8>,
    data_start: usize,
    frags: Vec<Frag<'a>>,
    frags_len: usize,
    /// Offload metadata (partial checksum, GSO).
    pub meta: OffloadMeta,
}

impl<'a> Packet<'a> {
    /// An empty packet with `headroom` bytes reserved in front of the head.
    pub fn with_headroom(headroom: usize) -> Self {
        Packet {
            buf: vec![0; headroom],
            data_start: headroom,
            ..Default::default()
        }
    }

    /// A linear packet holding a copy of `data`, with `headroom` bytes in front.
    pub fn from_slice(data: &[u8], headroom: usize) -> Self {
        let mut p = Self::with_headroom(headroom);
        p.extend_head(data);
        p
    }

    /// Empty the packet, keeping its allocations, and reset the headroom to `headroom`.
    pub fn clear(&mut self, headroom: usize) {
        self.buf.clear();
        self.buf.resize(headroom, 0);
        self.data_start = headroom;
        self.frags.clear();
        self.frags_len = 0;
        self.meta = OffloadMeta::default();
    }

    /// Bytes available in front of the head for [`Packet::push_head`] without reallocating.
    pub fn headroom(&self) -> usize {
        self.data_start
    }

    /// The linear part: headers, and payload too for a linear packet.
    pub fn head(&self) -> &[u8] {
        &self.buf[self.data_start..]
    }

    pub fn head_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.data_start..]
    }

    pub fn head_len(&self) -> usize {
        self.buf.len() - self.data_start
    }

    /// Payload fragments after the head.
    pub fn frags(&self) -> &[Frag<'a>] {
        &self.frags
    }

    /// Total length: head plus all fragments.
    pub fn len(&self) -> usize {
        self.head_len() + self.frags_len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The packet is a single linear buffer (no fragments).
    pub fn is_linear(&self) -> bool {
        self.frags_len == 0
    }

    /// Append bytes to the end of the head (between the head and the first fragment).
    pub fn extend_head(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Prepend `n` bytes to the head and return them for the caller to fill. Uses the
    /// headroom; only when it is exhausted is the head moved into a bigger buffer.
    pub fn push_head(&mut self, n: usize) -> &mut [u8] {
        if n > self.data_start {
            // Out of headroom: make room for this header plus as much again, so a
            // sequence of pushes reallocates once.
            let grow = n - self.data_start + n;
            let old_len = self.buf.len();
            self.buf.resize(old_len + grow, 0);
            self.buf
                .copy_within(self.data_start..old_len, self.data_start + grow);
            self.data_start += grow;
        }
        self.data_start -= n;
        let start = self.data_start;
        &mut self.buf[start..start + n]
    }

    /// Strip `n` bytes from the front of the head (they become headroom).
    pub fn pull_head(&mut self, n: usize) -> Result<(), PacketError> {
        if n > self.head_len() {
            return Err(PacketError::TooShort {
                wanted: n,
                len: self.head_len(),
            });
        }
        self.data_start += n;
        Ok(())
    }

    /// Append a payload fragment.
    pub fn push_frag(&mut self, frag: Frag<'a>) {
        if frag.is_empty() {
            return;
        }
        self.frags_len += frag.len();
        self.frags.push(frag);
    }

    /// Make sure the first `n` bytes are in the head, copying them out of the fragments
    /// if needed (the kernel's pskb_may_pull): headers are then contiguous and writable.
    pub fn pull_up(&mut self, n: usize) -> Result<(), PacketError> {
        if n > self.len() {
            return Err(PacketError::TooShort {
                wanted: n,
                len: self.len(),
            });
        }
        let mut missing = n.saturating_sub(self.head_len());
        let mut emptied = 0;
        for frag in self.frags.iter_mut() {
            if missing == 0 {
                break;
            }
            let take = missing.min(frag.len());
            self.buf.extend_from_slice(&frag.as_slice()[..take]);
            frag.consume_front(take);
            self.frags_len -= take;
            missing -= take;
            if frag.is_empty() {
                emptied += 1;
            }
        }
        self.frags.drain(..emptied);
        Ok(())
    }

    /// Copy every fragment into the head: the packet becomes one linear buffer.
    pub fn linearize(&mut self) {
        let len = self.len();
        // Cannot fail: pulling up the whole length is always in range.
        let _ = self.pull_up(len);
    }

    /// Cut the packet to `len` bytes (e.g. to drop Ethernet padding after the IP packet).
    pub fn truncate(&mut self, len: usize) {
        if len <= self.head_len() {
            self.buf.truncate(self.data_start + len);
            self.frags.clear();
            self.frags_len = 0;
            return;
        }
        let mut keep = len - self.head_len();
        let mut nfrags = 0;
        for frag in self.frags.iter_mut() {
            if keep == 0 {
                break;
            }
            nfrags += 1;
            let flen = frag.len();
            if flen > keep {
                match frag {
                    Frag::Borrowed(s) => *s = &s[..keep],
                    Frag::Owned { buf, start } => buf.truncate(*start + keep),
                }
                keep = 0;
            } else {
                keep -= flen;
            }
        }
        self.frags.truncate(nfrags);
        self.frags_len = self.frags.iter().map(Frag::len).sum();
    }

    /// The packet as a sequence of non-empty slices: head, then fragments.
    pub fn slices(&self) -> impl Iterator<Item = &[u8]> + '_ {
        std::iter::once(self.head())
            .chain(self.frags.iter().map(Frag::as_slice))
            .filter(|s| !s.is_empty())
    }

    /// The slices covering `offset..offset + len`, for checksumming or copying a range
    /// without linearizing.
    pub fn range(
        &self,
        offset: usize,
        len: usize,
    ) -> Result<impl Iterator<Item = &[u8]> + '_, PacketError> {
        let packet_len = self.len();
        if offset.checked_add(len).is_none_or(|end| end > packet_len) {
            return Err(PacketError::OutOfRange {
                offset,
                len,
                packet_len,
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
    pub fn copy_out(&self, offset: usize, out: &mut [u8]) -> Result<(), PacketError> {
        let mut pos = 0;
        for s in self.range(offset, out.len())? {
            out[pos..pos + s.len()].copy_from_slice(s);
            pos += s.len();
        }
        Ok(())
    }

    /// Fill `out` with one `IoSlice` per non-empty slice (for writev / sendmmsg) and return
    /// how many were written.
    pub fn fill_iovecs<'s>(&'s self, out: &mut [IoSlice<'s>]) -> Result<usize, PacketError> {
        let needed = self.slices().count();
        if needed > out.len() {
            return Err(PacketError::TooManySlices {
                needed,
                capacity: out.len(),
            });
        }
        for (slot, s) in out.iter_mut().zip(self.slices()) {
            *slot = IoSlice::new(s);
        }
        Ok(needed)
    }

    /// The packet's slices as `IoSlice`s, for a caller that keeps its own reusable vector.
    pub fn iovecs(&self) -> impl Iterator<Item = IoSlice<'_>> + '_ {
        self.slices().map(IoSlice::new)
    }

    /// Copy the whole packet into `out` (cleared first), e.g. to write one linear buffer.
    pub fn copy_to_vec(&self, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(self.len());
        for s in self.slices() {
            out.extend_from_slice(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(payload: &'static [u8]) -> Packet<'static> {
        let mut p = Packet::from_slice(b"HDR", 8);
        p.push_frag(Frag::Borrowed(&payload[..2]));
        p.push_frag(Frag::owned(payload[2..5].to_vec()));
        p.push_frag(Frag::Borrowed(&payload[5..]));
        p
    }

    fn flat(p: &Packet) -> Vec<u8> {
        let mut v = Vec::new();
        p.copy_to_vec(&mut v);
        v
    }

    #[test]
    fn lengths_and_slices() {
        let p = sample(b"abcdefgh");
        assert_eq!(p.len(), 11);
        assert_eq!(p.head_len(), 3);
        assert_eq!(p.headroom(), 8);
        assert!(!p.is_linear());
        assert_eq!(flat(&p), b"HDRabcdefgh");
        assert_eq!(p.slices().count(), 4);
    }

    #[test]
    fn push_and_pull_head_leave_payload_alone() {
        let mut p = sample(b"abcdefgh");
        p.push_head(2).copy_from_slice(b"E2");
        assert_eq!(p.headroom(), 6);
        assert_eq!(flat(&p), b"E2HDRabcdefgh");
        p.pull_head(5).unwrap();
        assert_eq!(flat(&p), b"abcdefgh");
        assert_eq!(
            p.pull_head(1),
            Err(PacketError::TooShort { wanted: 1, len: 0 })
        );
    }

    #[test]
    fn push_head_beyond_headroom_grows() {
        let mut p = Packet::from_slice(b"xyz", 1);
        p.push_head(4).copy_from_slice(b"1234");
        assert_eq!(flat(&p), b"1234xyz");
        p.push_head(2).copy_from_slice(b"ab");
        assert_eq!(flat(&p), b"ab1234xyz");
    }

    #[test]
    fn pull_up_moves_exactly_the_needed_bytes() {
        let mut p = sample(b"abcdefgh");
        p.pull_up(6).unwrap();
        assert_eq!(p.head(), b"HDRabc");
        assert_eq!(p.frags().len(), 2);
        assert_eq!(p.frags()[0].as_slice(), b"de");
        assert_eq!(flat(&p), b"HDRabcdefgh");
        assert_eq!(p.len(), 11);
        assert_eq!(
            p.pull_up(12),
            Err(PacketError::TooShort {
                wanted: 12,
                len: 11
            })
        );
    }

    #[test]
    fn linearize_keeps_bytes() {
        let mut p = sample(b"abcdefgh");
        p.linearize();
        assert!(p.is_linear());
        assert_eq!(p.head(), b"HDRabcdefgh");
    }

    #[test]
    fn range_spans_fragments() {
        let p = sample(b"abcdefgh");
        let parts: Vec<&[u8]> = p.range(2, 6).unwrap().collect();
        assert_eq!(parts, vec![&b"R"[..], b"ab", b"cde"]);
        let mut out = [0u8; 4];
        p.copy_out(7, &mut out).unwrap();
        assert_eq!(&out, b"efgh");
        assert!(p.range(8, 4).is_err());
        assert!(p.range(usize::MAX, 2).is_err());
        assert_eq!(p.range(11, 0).unwrap().count(), 0);
    }

    #[test]
    fn truncate_inside_fragments() {
        let mut p = sample(b"abcdefgh");
        p.truncate(6);
        assert_eq!(flat(&p), b"HDRabc");
        assert_eq!(p.len(), 6);
        p.truncate(2);
        assert_eq!(flat(&p), b"HD");
        assert!(p.is_linear());
    }

    #[test]
    fn iovecs_match_slices() {
        let p = sample(b"abcdefgh");
        let mut io = [IoSlice::new(&[]); 8];
        let n = p.fill_iovecs(&mut io).unwrap();
        assert_eq!(n, 4);
        let joined: Vec<u8> = io[..n].iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(joined, b"HDRabcdefgh");
        let mut small = [IoSlice::new(&[]); 2];
        assert_eq!(
            p.fill_iovecs(&mut small),
            Err(PacketError::TooManySlices {
                needed: 4,
                capacity: 2
            })
        );
        assert_eq!(p.iovecs().count(), 4);
    }

    #[test]
    fn clear_reuses_the_packet() {
        let mut p = sample(b"abcdefgh");
        p.meta.gso = Some(Gso {
            kind: GsoKind::Tcpv4,
            size: 1448,
            ecn: false,
        });
        p.clear(16);
        assert_eq!(p.len(), 0);
        assert_eq!(p.headroom(), 16);
        assert_eq!(p.meta, OffloadMeta::default());
        p.extend_head(b"new");
        assert_eq!(flat(&p), b"new");
    }

    #[test]
    fn empty_fragments_are_not_kept() {
        let mut p = Packet::with_headroom(0);
        p.push_frag(Frag::Borrowed(&[]));
        assert_eq!(p.frags().len(), 0);
        assert!(p.is_empty());
    }
}
