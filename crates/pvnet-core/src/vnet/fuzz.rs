//! Fuzz bodies, shared by the cargo-fuzz target `vnet_validate` (fuzz/) and the proptest in
//! tests/vnet_fuzz.rs, so that CI exercises exactly what the fuzzer does. Not a stable API.

use super::{validate, Endian, HdrLen, Validated, VnetHdr};
use crate::frame::CsumState;
use crate::wire::Start;

/// Read the selector byte that starts every fuzz input: bit 0 picks a 12-byte header, bit 1
/// big-endian, bit 2 a frame that starts at the IP header, bit 3 a 24-byte header (with
/// the UDP tunnel fields; always little-endian). Returns those and the bytes after the
/// selector (the header, then the frame).
pub fn split_selector(data: &[u8]) -> Option<(HdrLen, Endian, Start, &[u8])> {
    let (&sel, rest) = data.split_first()?;
    let len = if sel & 8 != 0 {
        HdrLen::V24
    } else if sel & 1 != 0 {
        HdrLen::V12
    } else {
        HdrLen::V10
    };
    let endian = if sel & 2 != 0 {
        Endian::Big
    } else {
        Endian::Little
    };
    let start = if sel & 4 != 0 {
        Start::Ip
    } else {
        Start::Ethernet
    };
    Some((len, endian, start, rest))
}

/// Input layout: byte 0 selects the form (see [`split_selector`]), then the header, then the
/// frame.
///
/// Checks that decoding and validation never panic and, when validation succeeds, that:
/// - the header survives an encode/decode round trip;
/// - a partial checksum field lies within the frame (`csum_start + csum_offset + 2 ≤ len`);
/// - the parsed transport header lies within the frame;
/// - the inverse mapping ([`VnetHdr::from_meta_rx`]) re-validates to the same layers and
///   metadata, also after its own encode/decode round trip.
///
/// Returns the validation result when the input got that far (for coverage checks).
pub fn vnet_validate(data: &[u8]) -> Option<Validated> {
    let (len, endian, start, rest) = split_selector(data)?;
    let Ok(hdr) = VnetHdr::decode(rest, len, endian) else {
        assert!(
            rest.len() < len.size(),
            "decode failed on a long enough buffer"
        );
        return None;
    };
    let frame = rest.get(len.size()..).unwrap_or_default();

    let mut buf = [0u8; 24];
    let n = hdr
        .encode(&mut buf, len, endian)
        .expect("24-byte buffer fits every header");
    let mut input = [0u8; 24];
    input[..n].copy_from_slice(rest.get(..n).unwrap_or_default());
    if len == HdrLen::V24 {
        // The padding after hash_report is not kept.
        input[18..20].fill(0);
    }
    assert_eq!(buf.get(..n), input.get(..n), "encode(decode(x)) != x");

    let v = validate(&hdr, frame, start).ok()?;

    if let CsumState::Partial { start, offset } = v.meta.csum {
        let end = usize::from(start) + usize::from(offset) + 2;
        assert!(
            end <= frame.len(),
            "csum field {end} beyond frame {}",
            frame.len()
        );
    }
    if v.layers.l4.is_some() {
        assert!(v.layers.l4_offset + v.layers.l4_len <= frame.len());
        assert_eq!(
            v.layers.payload_offset,
            v.layers.l4_offset + v.layers.l4_len
        );
    }
    if let Some(g) = v.meta.gso {
        assert!(
            v.layers.l4.is_some(),
            "GSO accepted without a transport header"
        );
        assert!(!v.layers.fragment, "GSO accepted on a fragment");
        if let Some(t) = g.tunnel {
            assert_eq!(len, HdrLen::V24, "a tunnel from a short header");
            let CsumState::Partial { start, .. } = v.meta.csum else {
                panic!("a tunnel super-frame without a partial checksum");
            };
            assert!(v.layers.l4_offset + 8 <= usize::from(t.inner_nh));
            assert!(usize::from(t.inner_nh) + 20 <= usize::from(start));
        }
    }

    let back = VnetHdr::from_meta_rx(&v.meta, &v.layers);
    let mut wire = [0u8; 24];
    let n = back
        .encode(&mut wire, len, endian)
        .expect("24-byte buffer fits every header");
    let back2 = VnetHdr::decode(wire.get(..n).unwrap_or_default(), len, endian)
        .expect("decode of an encoded header");
    match validate(&back2, frame, start) {
        Ok(again) => {
            assert_eq!(
                again.meta, v.meta,
                "from_meta_rx does not round-trip: {back2:?}"
            );
            assert_eq!(again.layers, v.layers);
        }
        Err(e) => panic!("from_meta_rx header {back2:?} rejected: {e}; original {hdr:?}"),
    }
    Some(v)
}
