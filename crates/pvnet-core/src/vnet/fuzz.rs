//! Fuzz bodies, shared by the cargo-fuzz target `vnet_validate` (fuzz/) and the proptest in
//! tests/vnet_fuzz.rs, so that CI exercises exactly what the fuzzer does. Not a stable API.

use super::{validate, Endian, HdrLen, Validated, VnetHdr};
use crate::frame::CsumState;
use crate::wire::Start;

/// Read the selector byte that starts every fuzz input: bit 0 picks a 12-byte header, bit 1
/// big-endian, bit 2 a frame that starts at the IP header. Returns those and the bytes
/// after the selector (the header, then the frame).
pub fn split_selector(data: &[u8]) -> Option<(HdrLen, Endian, Start, &[u8])> {
    let (&sel, rest) = data.split_first()?;
    let len = if sel & 1 != 0 {
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

/// Input layout: byte 0 selects the form (bit 0: 12-byte header, bit 1: big-endian, bit 2:
/// frame starts at the IP header), then the header, then the frame.
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

    let mut buf = [0u8; 12];
    let n = hdr
        .encode(&mut buf, len, endian)
        .expect("12-byte buffer fits every header");
    assert_eq!(buf.get(..n), rest.get(..n), "encode(decode(x)) != x");

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
    if v.meta.gso.is_some() {
        assert!(
            v.layers.l4.is_some(),
            "GSO accepted without a transport header"
        );
        assert!(!v.layers.fragment, "GSO accepted on a fragment");
    }

    let back = VnetHdr::from_meta_rx(&v.meta, &v.layers);
    let mut wire = [0u8; 12];
    let n = back
        .encode(&mut wire, len, endian)
        .expect("12-byte buffer fits every header");
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
