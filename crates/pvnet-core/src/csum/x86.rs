//! AVX2 kernel for the one's-complement sum (x86_64 only). The one module of pvnet-core
//! allowed to use `unsafe`: unaligned vector loads, and calling a `#[target_feature]`
//! function after run-time detection.
//!
//! # Method
//!
//! Each 32-byte vector is viewed as eight native-endian (little-endian) 32-bit lanes
//! `v = hi·2^16 + lo`. Per vector the kernel does two additions and one shift:
//!
//! ```text
//! a += v            (32-bit lanes, wrapping)      = Σhi·2^16 + Σlo   mod 2^32
//! h += v >> 16      (32-bit lanes, exact)         = Σhi
//! ```
//!
//! and recovers `Σlo = a - (h << 16) mod 2^32`, which is exact as long as `Σlo` and `Σhi`
//! fit 32 bits: at most 65537 additions per lane, so the loop flushes the lanes into a
//! 64-bit total every [`FLUSH_ITERS`] iterations. `Σlo + Σhi` is then the exact integer sum
//! of the little-endian 16-bit words of those bytes. That is three ALU operations per 32
//! bytes (versus four for widening to 64-bit lanes), with four independent accumulator
//! pairs (128 bytes per iteration) to hide the add latency.
//!
//! The `#[target_feature]` functions are `unsafe fn` because the MSRV (1.85) predates safe
//! target-feature functions (1.86); only pointer reads and the calls that rely on run-time
//! detection are wrapped in `unsafe` blocks.

use core::arch::x86_64::{
    __m256i, _mm256_add_epi32, _mm256_add_epi64, _mm256_and_si256, _mm256_castsi256_si128,
    _mm256_extracti128_si256, _mm256_loadu_si256, _mm256_set1_epi64x, _mm256_setzero_si256,
    _mm256_slli_epi32, _mm256_srli_epi32, _mm256_srli_epi64, _mm256_sub_epi32, _mm_add_epi64,
    _mm_cvtsi128_si64, _mm_unpackhi_epi64,
};
use std::sync::atomic::{AtomicU8, Ordering};

use super::{add_carry, scalar_native_sum, short_native_sum};

const UNKNOWN: u8 = 0;
const SCALAR: u8 = 1;
const AVX2: u8 = 2;

/// Cached result of CPU feature detection.
static LEVEL: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Iterations of the 128-byte loop between flushes (2 MiB). The four accumulator pairs are
/// merged before the flush and up to three 32-byte vectors are added after the last round,
/// so a 32-bit lane sums at most 4 * FLUSH_ITERS + 3 = 65535 words; the bound for exactness
/// is 65537 (see the module docs).
const FLUSH_ITERS: usize = (1 << 14) - 1;

/// Whether the AVX2 kernel can be used; detected on first call, then one relaxed load.
#[inline]
pub(super) fn has_avx2() -> bool {
    match LEVEL.load(Ordering::Relaxed) {
        AVX2 => true,
        SCALAR => false,
        _ => detect(),
    }
}

#[cold]
fn detect() -> bool {
    let avx2 = std::arch::is_x86_feature_detected!("avx2");
    LEVEL.store(if avx2 { AVX2 } else { SCALAR }, Ordering::Relaxed);
    avx2
}

/// Native-endian one's-complement sum of `data` with the best kernel for this CPU.
#[inline]
pub(super) fn native_sum(data: &[u8]) -> u64 {
    if has_avx2() {
        // SAFETY: `has_avx2` returned true only after `is_x86_feature_detected!("avx2")`
        // confirmed the running CPU supports AVX2, the sole requirement of `sum_avx2`.
        unsafe { sum_avx2(data) }
    } else {
        scalar_native_sum(data)
    }
}

/// The AVX2 kernel regardless of length, or `None` without AVX2.
pub(super) fn avx2_native_sum(data: &[u8]) -> Option<u64> {
    if has_avx2() {
        // SAFETY: AVX2 support was confirmed at run time by `has_avx2`.
        Some(unsafe { sum_avx2(data) })
    } else {
        None
    }
}

/// Exact sum of the sixteen 16-bit halves of an accumulator pair `(a, h)`, as four 64-bit
/// lanes. Exact when every lane of `a` and `h` summed at most 65537 words.
///
/// # Safety
/// The CPU must support AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn widen_pair(a: __m256i, h: __m256i) -> __m256i {
    let lo = _mm256_sub_epi32(a, _mm256_slli_epi32::<16>(h));
    let mask = _mm256_set1_epi64x(0xffff_ffff);
    let even = _mm256_add_epi64(_mm256_and_si256(lo, mask), _mm256_and_si256(h, mask));
    let odd = _mm256_add_epi64(_mm256_srli_epi64::<32>(lo), _mm256_srli_epi64::<32>(h));
    _mm256_add_epi64(even, odd)
}

/// Horizontal sum of four 64-bit lanes, each below 2^62.
///
/// # Safety
/// The CPU must support AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn hsum64(v: __m256i) -> u64 {
    let x = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let x = _mm_add_epi64(x, _mm_unpackhi_epi64(x, x));
    _mm_cvtsi128_si64(x) as u64
}

/// Load 32 bytes starting at `data[off]`.
///
/// # Safety
/// `off + 32 <= data.len()`, and the CPU supports AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load(data: &[u8], off: usize) -> __m256i {
    debug_assert!(off + 32 <= data.len());
    // SAFETY: the caller guarantees `off + 32 <= data.len()`, so the 32 bytes read are in
    // bounds of `data`; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(data.as_ptr().add(off).cast::<__m256i>()) }
}

/// AVX2 native-endian one's-complement sum; one's-complement equal to
/// [`scalar_native_sum`] and nonzero iff `data` has a nonzero byte.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
unsafe fn sum_avx2(data: &[u8]) -> u64 {
    let mut total: u64 = 0;
    let mut rest = data;
    loop {
        let iters = (rest.len() / 128).min(FLUSH_ITERS);
        let (chunk, tail) = rest.split_at(iters * 128);
        rest = tail;
        let z = _mm256_setzero_si256();
        let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
        let (mut h0, mut h1, mut h2, mut h3) = (z, z, z, z);
        let mut off = 0;
        while off < chunk.len() {
            // SAFETY: `chunk.len()` is a multiple of 128 and `off` steps by 128 from 0, so
            // `off + 128 <= chunk.len()` for all four loads; AVX2 is enabled here.
            let (v0, v1, v2, v3) = unsafe {
                (
                    load(chunk, off),
                    load(chunk, off + 32),
                    load(chunk, off + 64),
                    load(chunk, off + 96),
                )
            };
            a0 = _mm256_add_epi32(a0, v0);
            h0 = _mm256_add_epi32(h0, _mm256_srli_epi32::<16>(v0));
            a1 = _mm256_add_epi32(a1, v1);
            h1 = _mm256_add_epi32(h1, _mm256_srli_epi32::<16>(v1));
            a2 = _mm256_add_epi32(a2, v2);
            h2 = _mm256_add_epi32(h2, _mm256_srli_epi32::<16>(v2));
            a3 = _mm256_add_epi32(a3, v3);
            h3 = _mm256_add_epi32(h3, _mm256_srli_epi32::<16>(v3));
            off += 128;
        }
        // Merge the four pairs: a lane now holds up to 4 * FLUSH_ITERS words.
        let mut a = _mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3));
        let mut h = _mm256_add_epi32(_mm256_add_epi32(h0, h1), _mm256_add_epi32(h2, h3));
        let last = rest.len() < 128;
        if last {
            // At most three more 32-byte vectors (three more words per lane).
            let mut off = 0;
            while off + 32 <= rest.len() {
                // SAFETY: the loop condition guarantees `off + 32 <= rest.len()`.
                let v = unsafe { load(rest, off) };
                a = _mm256_add_epi32(a, v);
                h = _mm256_add_epi32(h, _mm256_srli_epi32::<16>(v));
                off += 32;
            }
            rest = &rest[off..];
        }
        // SAFETY: AVX2 is enabled in this function; each lane holds at most
        // 4 * FLUSH_ITERS + 3 <= 65535 words, within the exactness bound of `widen_pair`.
        total = add_carry(total, unsafe { hsum64(widen_pair(a, h)) });
        if last {
            break;
        }
    }
    // Fewer than 32 bytes left, at an offset that is a multiple of 32 (even).
    add_carry(total, short_native_sum(rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csum::fold64;

    fn bytes(n: usize, mut seed: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    fn avx2(d: &[u8]) -> Option<u16> {
        avx2_native_sum(d).map(fold64)
    }

    #[test]
    fn avx2_matches_scalar_every_length_and_alignment() {
        let buf = bytes(4096 + 64, 0x9e37_79b9_7f4a_7c15);
        for start in 0..64 {
            for len in 0..=4096 {
                let d = &buf[start..start + len];
                let Some(v) = avx2(d) else { return };
                assert_eq!(v, fold64(scalar_native_sum(d)), "start {start} len {len}");
            }
        }
    }

    #[test]
    fn avx2_extremes_and_flush() {
        // All-0xff maximises every lane; > FLUSH_ITERS * 128 bytes exercises the flush.
        let n = FLUSH_ITERS * 128 * 2 + 1000;
        let ff = vec![0xffu8; n];
        for len in [0, 1, 31, 32, 127, 128, 129, 4096, n - 1, n] {
            let Some(v) = avx2(&ff[..len]) else { return };
            assert_eq!(v, fold64(scalar_native_sum(&ff[..len])), "ff len {len}");
        }
        let zero = vec![0u8; n];
        assert_eq!(avx2(&zero).unwrap_or(0), 0);
        let big = bytes(n, 3);
        assert_eq!(avx2(&big), Some(fold64(scalar_native_sum(&big))));
    }
}
