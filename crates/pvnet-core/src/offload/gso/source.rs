//! The source cursor: where the payload of each segment lies in the super-frame's head
//! and payload pieces.

use crate::packet::Frag;

/// Where a segment's payload starts: a piece of the payload (0 = rest of the head, k =
/// fragment k - 1) and an offset inside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Cursor {
    pub(super) piece: usize,
    pub(super) off: usize,
}

/// The super-frame's bytes: the head (holding every header and maybe payload) and the
/// payload fragments that follow it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Source<'p> {
    pub(super) head: &'p [u8],
    pub(super) frags: &'p [Frag<'p>],
    /// Where the payload starts in the head.
    pub(super) payload_offset: usize,
}

impl<'p> Source<'p> {
    pub(super) fn piece(&self, i: usize) -> &'p [u8] {
        if i == 0 {
            self.head.get(self.payload_offset..).unwrap_or_default()
        } else {
            self.frags
                .get(i - 1)
                .map(Frag::as_slice)
                .unwrap_or_default()
        }
    }

    pub(super) fn pieces(&self) -> usize {
        1 + self.frags.len()
    }

    /// Piece `i` as stored: the whole head for 0 (offsets in a [`SegDesc`] count from the
    /// start of the frame), fragment `i - 1` otherwise.
    #[inline]
    pub(super) fn raw_piece(&self, i: usize) -> &'p [u8] {
        if i == 0 {
            self.head
        } else {
            self.frags
                .get(i - 1)
                .map(Frag::as_slice)
                .unwrap_or_default()
        }
    }

    /// Where the payload byte at `at` is stored: piece and offset inside [`Source::raw_piece`].
    #[inline]
    pub(super) fn locate(&self, at: Cursor) -> (usize, usize) {
        if at.piece == 0 {
            (0, self.payload_offset + at.off)
        } else {
            (at.piece, at.off)
        }
    }

    /// The slices of `len` payload bytes starting at offset `off` of raw piece `piece`.
    #[inline]
    pub(super) fn slices_at(&self, piece: usize, off: usize, len: usize) -> PayloadSlices<'p> {
        let rest = self.raw_piece(piece).get(off..).unwrap_or_default();
        let first = rest.get(..len).unwrap_or(rest);
        PayloadSlices {
            first,
            more: self.frags.get(piece..).unwrap_or_default(),
            left: len - first.len(),
        }
    }

    /// The slices of `len` payload bytes from `at`.
    pub(super) fn slices(&self, at: Cursor, len: usize) -> PayloadSlices<'p> {
        let (piece, off) = self.locate(at);
        self.slices_at(piece, off, len)
    }

    /// Advance a cursor by `n` bytes.
    #[inline]
    pub(super) fn advance(&self, c: Cursor, n: usize) -> Cursor {
        // Fast path: still inside the same piece (always, for a linear frame).
        if c.off + n < self.piece(c.piece).len() {
            return Cursor {
                piece: c.piece,
                off: c.off + n,
            };
        }
        self.advance_slow(c, n)
    }

    pub(super) fn advance_slow(&self, mut c: Cursor, mut n: usize) -> Cursor {
        while c.piece < self.pieces() {
            let avail = self.piece(c.piece).len() - c.off.min(self.piece(c.piece).len());
            if n < avail {
                c.off += n;
                return c;
            }
            n -= avail;
            c.piece += 1;
            c.off = 0;
            if n == 0 {
                return c;
            }
        }
        c
    }
}

/// Iterator over the payload slices of one segment.
#[derive(Debug, Clone)]
pub struct PayloadSlices<'p> {
    /// The payload's bytes in the piece where it starts (not yet returned).
    pub(super) first: &'p [u8],
    /// The pieces after that one.
    pub(super) more: &'p [Frag<'p>],
    /// Bytes to take from `more`.
    pub(super) left: usize,
}

impl<'p> Iterator for PayloadSlices<'p> {
    type Item = &'p [u8];

    fn next(&mut self) -> Option<&'p [u8]> {
        if !self.first.is_empty() {
            return Some(core::mem::take(&mut self.first));
        }
        while self.left > 0 {
            let (f, more) = self.more.split_first()?;
            self.more = more;
            let piece = f.as_slice();
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
