//! One's-complement Internet checksum (RFC 1071) engine.
//!
//! CONTRACT (filled in by the checksum work; signatures are fixed, other modules use them):
//! - `Sum` accumulates 16-bit big-endian words over any number of slices; a slice of odd
//!   length leaves the next slice starting at an odd offset, handled correctly, so a
//!   scatter-gather list sums exactly like its concatenation.
//! - `Sum::fold()` is the folded 16-bit sum (not inverted), `Sum::checksum()` its complement:
//!   the value to store in a checksum field, written with `to_be_bytes()`.
//! - pseudo-header helpers return a `Sum` to which the transport header + payload is added.
//! - `update16`/`update32`: RFC 1624 eqn. 3 incremental update of a stored checksum field.

/// Running one's-complement sum over big-endian 16-bit words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sum {
    acc: u64,
    /// An odd number of bytes has been added so far.
    odd: bool,
}

impl Sum {
    pub const fn new() -> Self {
        Sum { acc: 0, odd: false }
    }

    /// Add the bytes of `data`, continuing at the current (possibly odd) byte offset.
    pub fn add(&mut self, data: &[u8]) {
        let mut s = fold64(sum_slice(data)) as u64;
        if self.odd {
            s = (s as u16).swap_bytes() as u64;
        }
        self.acc += s;
        self.odd ^= data.len() & 1 == 1;
    }

    /// Add one 16-bit word given as a host integer (as if its big-endian bytes were added at
    /// an even offset).
    pub fn add_u16(&mut self, v: u16) {
        self.acc += v as u64;
    }

    /// Add a 32-bit value as two 16-bit words.
    pub fn add_u32(&mut self, v: u32) {
        self.acc += (v >> 16) as u64 + (v & 0xffff) as u64;
    }

    /// Add another sum computed over bytes that follow at an even offset.
    pub fn add_sum(&mut self, other: Sum) {
        self.acc += fold64(other.acc) as u64;
    }

    /// Folded 16-bit one's-complement sum (not inverted).
    pub fn fold(self) -> u16 {
        fold64(self.acc)
    }

    /// The checksum field value: complement of the folded sum.
    pub fn checksum(self) -> u16 {
        !self.fold()
    }
}

/// Fold a 64-bit accumulator of 16-bit words to 16 bits with end-around carry.
#[inline]
pub fn fold64(mut acc: u64) -> u16 {
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    let mut a = acc as u32;
    a = (a & 0xffff) + (a >> 16);
    a = (a & 0xffff) + (a >> 16);
    a as u16
}

/// Unfolded sum of `data` as big-endian 16-bit words (a trailing odd byte is the high byte
/// of a last word padded with zero).
pub fn sum_slice(data: &[u8]) -> u64 {
    scalar_sum(data)
}

/// Portable reference implementation.
pub fn scalar_sum(data: &[u8]) -> u64 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [b] = chunks.remainder() {
        acc += (*b as u64) << 8;
    }
    acc
}

/// Internet checksum (complement of the folded sum) of one slice.
pub fn checksum(data: &[u8]) -> u16 {
    let mut s = Sum::new();
    s.add(data);
    s.checksum()
}

/// Sum over a scatter-gather list, equal to the sum of the concatenation.
pub fn sum_sg<'a>(frags: impl IntoIterator<Item = &'a [u8]>) -> Sum {
    let mut s = Sum::new();
    for f in frags {
        s.add(f);
    }
    s
}

/// IPv4 pseudo-header sum: source, destination, zero+protocol, L4 length.
pub fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], proto: u8, l4_len: u32) -> Sum {
    let mut s = Sum::new();
    s.add(&src);
    s.add(&dst);
    s.add_u16(proto as u16);
    s.add_u32(l4_len);
    s
}

/// IPv6 pseudo-header sum (RFC 8200 8.1): source, final destination, upper-layer length,
/// next header.
pub fn pseudo_header_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, l4_len: u32) -> Sum {
    let mut s = Sum::new();
    s.add(src);
    s.add(dst);
    s.add_u32(l4_len);
    s.add_u16(proto as u16);
    s
}

/// RFC 1624 eqn. 3: new checksum field after a 16-bit word changed from `old` to `new`.
pub fn update16(csum: u16, old: u16, new: u16) -> u16 {
    let acc = (!csum) as u64 + (!old) as u64 + new as u64;
    !fold64(acc)
}

/// RFC 1624 eqn. 3 for a 32-bit field (two adjacent words at an even offset).
pub fn update32(csum: u16, old: u32, new: u32) -> u16 {
    let acc = (!csum) as u64
        + (!(old >> 16) & 0xffff) as u64
        + (!old & 0xffff) as u64
        + (new >> 16) as u64
        + (new & 0xffff) as u64;
    !fold64(acc)
}
