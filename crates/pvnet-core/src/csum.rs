//! One's-complement Internet checksum (RFC 1071) engine.
//!
//! CONTRACT (signatures are fixed, other modules use them):
//! - `Sum` accumulates 16-bit big-endian words over any number of slices; a slice of odd
//!   length leaves the next slice starting at an odd offset, handled correctly, so a
//!   scatter-gather list sums exactly like its concatenation.
//! - `Sum::fold()` is the folded 16-bit sum (not inverted), `Sum::checksum()` its complement:
//!   the value to store in a checksum field, written with `to_be_bytes()`.
//! - pseudo-header helpers return a `Sum` to which the transport header + payload is added.
//! - `update16`/`update32`: RFC 1624 eqn. 3 incremental update of a stored checksum field.
//!
//! # How the sum is computed
//!
//! The one's-complement sum of 16-bit words is the integer sum reduced modulo `0xffff`
//! (2^16 ≡ 1), so it may be computed over any wider native words: a 64-bit word is four
//! 16-bit words, and a carry out of bit 63 is worth 2^64 ≡ 1 and is added back ("end-around
//! carry"). Summing in native byte order instead of big-endian gives the byte-swapped result
//! (RFC 1071 §2(B)), so the engine sums native-endian words and swaps once at the end.
//!
//! Every internal accumulation is either an exact integer sum or an end-around-carry
//! addition; both keep the value nonzero whenever any input byte is nonzero. So the folded
//! result is bit-identical to the naive 16-bit loop, including the `0x0000` vs. `0xffff`
//! distinction (`0x0000` only for all-zero data).
//!
//! [`sum_slice`] dispatches at run time: on x86_64 with AVX2 (detected once, cached), slices
//! of at least [`SIMD_THRESHOLD`] bytes go to the vector kernel in `csum/x86.rs`, the only
//! module of the crate allowed to use `unsafe`. Everything else uses [`scalar_sum`].

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86;

/// Slices shorter than this many bytes are always summed by the scalar code: below it the
/// vector kernel's setup and horizontal reduction cost more than they save (measured with
/// `benches/csum.rs`, see BENCHMARKS.md).
pub const SIMD_THRESHOLD: usize = 256;

/// Running one's-complement sum over big-endian 16-bit words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sum {
    acc: u64,
    /// An odd number of bytes has been added so far.
    odd: bool,
}

impl Sum {
    /// An empty sum (zero, even length so far).
    pub const fn new() -> Self {
        Sum { acc: 0, odd: false }
    }

    /// Add the bytes of `data`, continuing at the current (possibly odd) byte offset.
    pub fn add(&mut self, data: &[u8]) {
        let native = fold64(native_sum(data));
        // `native` is the sum in host byte order; it is already big-endian-word order on a
        // big-endian host. Starting at an odd offset swaps the roles of the bytes once more.
        let swap = cfg!(target_endian = "little") != self.odd;
        let s = if swap { native.swap_bytes() } else { native };
        self.acc += s as u64;
        self.odd ^= data.len() & 1 == 1;
    }

    /// Add one 16-bit word given as a host integer (as if its big-endian bytes were added at
    /// an even offset). Does not change the byte offset: this is how position-independent
    /// quantities (a pseudo-header, a folded sum) are mixed in.
    pub fn add_u16(&mut self, v: u16) {
        self.acc += v as u64;
    }

    /// Add a 32-bit value as two 16-bit words (see [`Sum::add_u16`]).
    pub fn add_u32(&mut self, v: u32) {
        self.acc += (v >> 16) as u64 + (v & 0xffff) as u64;
    }

    /// Append another sum: the result equals the sum of the concatenation of the bytes that
    /// produced `self` followed by those that produced `other` (which must itself have been
    /// started with [`Sum::new`] at its own offset 0). When `self` covers an odd number of
    /// bytes, `other`'s words straddle byte pairs and are byte-swapped, and the odd/even
    /// state afterwards is that of the concatenation.
    ///
    /// For the usual pseudo-header pattern put the pseudo-header first
    /// (`pseudo_header_v4(..)` then `add_sum(l4)`): a pseudo-header has even length, so this
    /// is a plain addition. To add a position-independent sum to an odd-length one, use
    /// `add_u16(other.fold())` instead.
    pub fn add_sum(&mut self, other: Sum) {
        let o = fold64(other.acc);
        self.acc += if self.odd { o.swap_bytes() } else { o } as u64;
        self.odd ^= other.odd;
    }

    /// Whether an odd number of bytes has been added, i.e. the next byte lands in the low
    /// half of a 16-bit word.
    pub const fn is_odd(self) -> bool {
        self.odd
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
///
/// Returns `0` only for `acc == 0`; a nonzero multiple of `0xffff` folds to `0xffff`.
#[inline]
pub fn fold64(acc: u64) -> u16 {
    // Two end-around-carry additions: 64 -> 32 -> 16 bits. Each keeps the value congruent
    // modulo 0xffff and nonzero iff the input is nonzero; a carry-in can never overflow
    // because a wrapped sum is at most 2^n - 2.
    let (s, c) = (acc as u32).overflowing_add((acc >> 32) as u32);
    let s = s + c as u32;
    let (t, c) = (s as u16).overflowing_add((s >> 16) as u16);
    t + c as u16
}

/// Sum of `data` as big-endian 16-bit words (a trailing odd byte is the high byte of a last
/// word padded with zero), as a 64-bit value for [`fold64`].
///
/// The value is one's-complement equivalent to the plain integer sum of the words (equal
/// modulo `0xffff`, and zero only when the data is all zero), so `fold64(sum_slice(d))` is
/// exactly the folded RFC 1071 sum; the unfolded value itself is not the integer word sum.
/// Uses the fastest kernel the CPU supports.
#[inline]
pub fn sum_slice(data: &[u8]) -> u64 {
    native_to_be(native_sum(data))
}

/// Portable implementation of [`sum_slice`] (no SIMD, no run-time dispatch); same result.
pub fn scalar_sum(data: &[u8]) -> u64 {
    native_to_be(scalar_native_sum(data))
}

/// The SIMD kernel alone, whatever the length (for tests and benchmarks): same result as
/// [`sum_slice`], or `None` when this CPU/target has no SIMD kernel.
pub fn simd_sum(data: &[u8]) -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    if let Some(native) = x86::avx2_native_sum(data) {
        return Some(native_to_be(native));
    }
    let _ = data;
    None
}

/// Name of the kernel [`sum_slice`] uses for large slices on this machine: `"avx2"` or
/// `"scalar"`.
pub fn implementation() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if x86::has_avx2() {
        return "avx2";
    }
    "scalar"
}

/// Internet checksum (complement of the folded sum) of one slice.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !native_fold_be(native_sum(data))
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
    s.add_u32(u32::from_be_bytes(src));
    s.add_u32(u32::from_be_bytes(dst));
    s.add_u16(proto as u16);
    s.add_u32(l4_len);
    s
}

/// IPv6 pseudo-header sum (RFC 8200 8.1): source, final destination, upper-layer length,
/// next header.
pub fn pseudo_header_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, l4_len: u32) -> Sum {
    let mut s = Sum::new();
    for addr in [src, dst] {
        let a = u128::from_be_bytes(*addr);
        s.add_u32((a >> 96) as u32);
        s.add_u32((a >> 64) as u32);
        s.add_u32((a >> 32) as u32);
        s.add_u32(a as u32);
    }
    s.add_u32(l4_len);
    s.add_u16(proto as u16);
    s
}

/// RFC 1624 eqn. 3: new checksum field after a 16-bit word changed from `old` to `new`.
///
/// Equals a full recomputation except when the data becomes all zero (a full recomputation
/// gives `0xffff`, this `0x0000`; both are one's-complement zero). A UDP checksum of 0 means
/// "no checksum" and must not be updated: that is the caller's decision.
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

/// Convert a native-byte-order sum to a big-endian-word sum.
#[inline]
fn native_to_be(native: u64) -> u64 {
    if cfg!(target_endian = "little") {
        native_fold_be(native) as u64
    } else {
        native
    }
}

/// Fold a native-byte-order sum and return it in big-endian-word order.
#[inline]
fn native_fold_be(native: u64) -> u16 {
    let f = fold64(native);
    if cfg!(target_endian = "little") {
        f.swap_bytes()
    } else {
        f
    }
}

/// One's-complement sum of `data` as native-endian 16-bit words (see the module docs),
/// through the fastest available kernel.
///
/// Slices shorter than [`SHORT_LEN`] (headers, small frames) are summed right here, inlined
/// into the caller: for them a call, saved registers and a loop cost as much as the sum.
#[inline]
fn native_sum(data: &[u8]) -> u64 {
    if data.len() < SHORT_LEN {
        short_native_sum(data)
    } else {
        long_native_sum(data)
    }
}

/// [`native_sum`] for slices of at least [`SHORT_LEN`] bytes. Never inlined, so that
/// inlining [`native_sum`] brings only the short kernel into the caller.
#[inline(never)]
fn long_native_sum(data: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if data.len() >= SIMD_THRESHOLD {
        return x86::native_sum(data);
    }
    scalar_native_sum(data)
}

/// Slices shorter than this are summed by [`short_native_sum`], inlined at the call site;
/// longer ones by an out-of-line kernel with a loop.
const SHORT_LEN: usize = 128;

/// `a + b` with the carry out of bit 63 added back. The result is nonzero if either input
/// is nonzero.
#[inline(always)]
const fn add_carry(a: u64, b: u64) -> u64 {
    let (s, c) = a.overflowing_add(b);
    // With a carry, s = a + b - 2^64 <= 2^64 - 2, so adding 1 cannot overflow.
    s + c as u64
}

/// Reduce a 128-bit sum of 64-bit words to 64 bits (2^64 ≡ 1 modulo 0xffff).
#[inline(always)]
const fn fold128(x: u128) -> u64 {
    add_carry(x as u64, (x >> 64) as u64)
}

/// The first `N` bytes of `b`.
#[inline(always)]
fn first<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut w = [0u8; N];
    w.copy_from_slice(&b[..N]);
    w
}

#[inline(always)]
fn ne64(b: &[u8]) -> u64 {
    u64::from_ne_bytes(first(b))
}

/// Exact sum of the native-endian 64-bit words of a block (`N` a multiple of 8), unrolled:
/// one add/adc pair per word.
#[inline(always)]
fn sum_block<const N: usize>(block: &[u8; N]) -> u128 {
    let mut acc = 0u128;
    for w in block.chunks_exact(8) {
        acc += ne64(w) as u128;
    }
    acc
}

/// The last `data.len() % 8` bytes of `data` (at least 8 bytes long) as a native-endian
/// word, from one load of the last 8 bytes.
///
/// The load is little-endian, so that the first byte in memory is the least significant
/// on every host: a right shift drops the bytes before the tail, which are summed already,
/// and moves the tail to the start of the word. Converting back to native order puts each
/// byte where a native load would have: the tail starts at a multiple of 8, an even
/// offset, so each of its bytes keeps its place in its 16-bit pair (where the pairs sit in
/// the word does not matter, 2^16 ≡ 1).
#[inline(always)]
fn tail_word(data: &[u8]) -> u64 {
    let n = data.len();
    let w = u64::from_le_bytes(first(&data[n - 8..]));
    // 8..=64 bits, the whole word when the length is a multiple of 8; in two steps because
    // a shift by 64 would overflow.
    let drop = ((8 - n % 8) * 8) as u32;
    u64::from_le((w >> (drop - 1)) >> 1)
}

/// Sum of fewer than 8 bytes, with at most two loads. Exact (no carries to lose).
#[inline(always)]
fn tiny_native_sum(data: &[u8]) -> u64 {
    let n = data.len();
    if n >= 4 {
        // The first four bytes, then the last `n - 4` (they start at offset 4, even) from a
        // load of the last four without the `8 - n` already counted, as in `tail_word`.
        let head = u32::from_ne_bytes(first(data));
        let last = u32::from_le_bytes(first(&data[n - 4..])) as u64;
        let rest = u32::from_le((last >> ((8 - n) * 8)) as u32);
        head as u64 + rest as u64
    } else {
        let mut s = 0;
        if let [b0, b1, ..] = data {
            s += u16::from_ne_bytes([*b0, *b1]) as u64;
        }
        if n & 1 == 1 {
            if let Some(b) = data.last() {
                // A lone final byte is the first byte of a 16-bit word padded with zero.
                s += u16::from_ne_bytes([*b, 0]) as u64;
            }
        }
        s
    }
}

/// Kernel for slices shorter than [`SHORT_LEN`], without a loop: one straight-line block
/// per set bit of the length (64, 32, 16 and 8 bytes), the last 0..=7 bytes with one load,
/// one 128-bit accumulator (an add/adc pair per 8 bytes) and a single fold.
#[inline(always)]
fn short_native_sum(data: &[u8]) -> u64 {
    debug_assert!(data.len() < SHORT_LEN);
    if data.len() < 8 {
        return tiny_native_sum(data);
    }
    let mut acc = tail_word(data) as u128;
    let mut rest = data;
    if let Some((b, r)) = rest.split_first_chunk::<64>() {
        acc += sum_block(b);
        rest = r;
    }
    if let Some((b, r)) = rest.split_first_chunk::<32>() {
        acc += sum_block(b);
        rest = r;
    }
    if let Some((b, r)) = rest.split_first_chunk::<16>() {
        acc += sum_block(b);
        rest = r;
    }
    if let Some((b, _)) = rest.split_first_chunk::<8>() {
        acc += sum_block(b);
    }
    // An exact sum of at most 16 words: no overflow.
    fold128(acc)
}

/// Portable native-endian kernel for any length: 64-byte blocks into four independent
/// 128-bit accumulators (each addition is an add/adc pair), the rest by
/// [`short_native_sum`].
fn scalar_native_sum(data: &[u8]) -> u64 {
    let mut acc = [0u128; 4];
    let mut blocks = data.chunks_exact(64);
    for b in &mut blocks {
        for (i, w) in b.chunks_exact(8).enumerate() {
            acc[i % 4] += ne64(w) as u128;
        }
    }
    // Exact sums of fewer than 2^60 words each: adding them cannot overflow. The rest
    // (fewer than 64 bytes) starts at a multiple of 64, an even offset.
    let [a0, a1, a2, a3] = acc;
    add_carry(
        fold128(a0 + a1 + a2 + a3),
        short_native_sum(blocks.remainder()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dead-simple definition: big-endian 16-bit words, odd byte padded.
    fn reference(data: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        for (i, b) in data.iter().enumerate() {
            acc += if i % 2 == 0 {
                (*b as u64) << 8
            } else {
                *b as u64
            };
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    fn lcg_bytes(n: usize, mut seed: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn scalar_matches_reference_all_lengths_and_offsets() {
        let buf = lcg_bytes(600, 1);
        for start in 0..8 {
            for end in start..buf.len() {
                let d = &buf[start..end];
                assert_eq!(fold64(scalar_sum(d)), reference(d), "{start}..{end}");
            }
        }
    }

    #[test]
    fn scalar_extremes() {
        for n in 0..300 {
            let ff = vec![0xffu8; n];
            assert_eq!(fold64(scalar_sum(&ff)), reference(&ff), "ff {n}");
            let z = vec![0u8; n];
            assert_eq!(fold64(scalar_sum(&z)), 0, "zero {n}");
        }
    }

    #[test]
    fn short_kernel_matches_reference() {
        let buf = lcg_bytes(SHORT_LEN + 8, 3);
        let ff = vec![0xffu8; SHORT_LEN + 8];
        for start in 0..8 {
            for len in 0..SHORT_LEN {
                for src in [&buf, &ff] {
                    let d = &src[start..start + len];
                    let got = fold64(native_to_be(short_native_sum(d)));
                    assert_eq!(got, reference(d), "start {start} len {len}");
                }
            }
        }
    }

    #[test]
    fn tail_word_is_the_last_bytes() {
        // Only the last `len % 8` bytes count: the bytes before them are changed in a
        // copy and the word must not change.
        let buf = lcg_bytes(40, 5);
        for len in 8..=40 {
            let d = &buf[..len];
            let mut other = d.to_vec();
            let keep = len % 8;
            for b in &mut other[..len - keep] {
                *b ^= 0x5a;
            }
            assert_eq!(tail_word(d), tail_word(&other), "len {len}");
            assert_eq!(
                fold64(native_to_be(tail_word(d))),
                reference(&d[len - keep..]),
                "len {len}"
            );
        }
    }

    #[test]
    fn add_sum_concatenates() {
        let buf = lcg_bytes(64, 7);
        for cut in 0..buf.len() {
            for cut2 in cut..buf.len() {
                let mut a = Sum::new();
                a.add(&buf[..cut]);
                let mut b = Sum::new();
                b.add(&buf[cut..cut2]);
                a.add_sum(b);
                a.add(&buf[cut2..]);
                assert_eq!(a.fold(), reference(&buf), "{cut} {cut2}");
                assert_eq!(a.is_odd(), buf.len() % 2 == 1);
            }
        }
    }
}
