//! The source cursor: where the payload of each segment lies in the super-frame's head
//! and payload pieces.

/// Where a segment's payload starts: a piece of the payload (0 = rest of the head, 1 = the
/// first slice of the frame's payload window, k = slice k - 2 after it) and an offset inside
/// it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Cursor {
    pub(super) piece: usize,
    pub(super) off: usize,
}

/// The super-frame's bytes: the head (holding every header and maybe payload) and the
/// frame's payload window that follows it (`first`, then the slices of `rest`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Source<'p> {
    pub(super) head: &'p [u8],
    /// Where the payload starts in the head.
    pub(super) payload_offset: usize,
    /// The window's first slice (it may hold more than the window takes).
    pub(super) first: &'p [u8],
    /// The window's slices after `first`.
    pub(super) rest: &'p [&'p [u8]],
}

impl<'p> Source<'p> {
    /// A frame in one buffer.
    pub(super) const fn linear(frame: &'p [u8], payload_offset: usize) -> Source<'p> {
        Source {
            head: frame,
            payload_offset,
            first: &[],
            rest: &[],
        }
    }

    pub(super) fn piece(&self, i: usize) -> &'p [u8] {
        match i {
            0 => self.head.get(self.payload_offset..).unwrap_or_default(),
            1 => self.first,
            _ => self.rest.get(i - 2).copied().unwrap_or_default(),
        }
    }

    pub(super) fn pieces(&self) -> usize {
        2 + self.rest.len()
    }

    /// Piece `i` as stored: the whole head for 0 (offsets in a [`SegDesc`](super::buf::SegDesc)
    /// count from the start of the frame), the piece itself otherwise.
    #[inline]
    pub(super) fn raw_piece(&self, i: usize) -> &'p [u8] {
        if i == 0 {
            self.head
        } else {
            self.piece(i)
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

    /// A payload starting at byte `off` of raw piece `piece`, as a window: the bytes from
    /// there in that piece, and the slices after it. A payload starting in the head continues
    /// into `rest` only when `first` is empty: [`Segmenter::emit`](super::Segmenter) never
    /// leaves a segment running from the head into a non-empty `first`.
    #[inline]
    pub(super) fn window(&self, piece: usize, off: usize) -> (&'p [u8], &'p [&'p [u8]]) {
        let here = self.raw_piece(piece).get(off..).unwrap_or_default();
        let after = match piece {
            0 if !self.first.is_empty() => &[],
            0 | 1 => self.rest,
            _ => self.rest.get(piece - 1..).unwrap_or_default(),
        };
        (here, after)
    }

    /// Whether a payload of `len` bytes at `at` starts in the head and runs on into a
    /// non-empty `first`: a window cannot say that, so the part in the head is copied.
    #[inline]
    pub(super) fn straddles(&self, at: Cursor, len: usize) -> bool {
        at.piece == 0 && at.off + len > self.piece(0).len() && !self.first.is_empty()
    }

    /// The slices of `len` payload bytes from `at`, in order.
    pub(super) fn slices(&self, at: Cursor, len: usize) -> impl Iterator<Item = &'p [u8]> {
        let src = *self;
        let (mut piece, mut off, mut left) = (at.piece, at.off, len);
        core::iter::from_fn(move || {
            while left > 0 && piece < src.pieces() {
                let p = src.piece(piece).get(off..).unwrap_or_default();
                let take = p.len().min(left);
                piece += 1;
                off = 0;
                if take > 0 {
                    left -= take;
                    return Some(&p[..take]);
                }
            }
            None
        })
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
