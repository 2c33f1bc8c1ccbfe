//! Fuzz body shared by the cargo-fuzz target `gso_segment` (fuzz/) and the proptest in
//! tests/gso_fuzz.rs, so CI runs exactly what the fuzzer does. Not a stable API.

use super::{CsumMode, GsoOptions, SegmentBuf, Segmenter};
use crate::frame::{CsumState, GsoKind};
use crate::offload::checksum::{verify_frame, Verdict};
use crate::vnet::fuzz::split_selector;
use crate::vnet::{validate, VnetHdr};
use crate::wire::{parse, udp};

/// Input layout as for `vnet_validate`: byte 0 selects the form (bit 0: 12-byte header,
/// bit 1: big-endian, bit 2: frame starts at the IP header), then the header, then the
/// frame. A frame the vnet header validation accepts as a super-frame is segmented in
/// both checksum modes, in batches of 3, and every segment must:
/// - re-parse with `wire::parse`;
/// - in Full mode have a good IPv4 header checksum and a good TCP/UDP checksum (UFO
///   fragments: checked after reassembly);
/// - in Partial mode carry `CsumState::Partial` whose field sits inside the segment.
///
/// The segments' payloads must concatenate to the super-frame's.
///
/// Returns the number of segments made in Full mode (`None`: not a valid super-frame).
pub fn gso_segment(data: &[u8]) -> Option<usize> {
    let (len, endian, start, rest) = split_selector(data)?;
    let hdr = VnetHdr::decode(rest, len, endian).ok()?;
    let frame = rest.get(len.size()..)?;
    let v = validate(&hdr, frame, start).ok()?;
    let gso = v.meta().gso?;
    // Link padding is not part of the packet (and the layers stay those of the frame).
    let frame = frame.get(..v.layers().ip_end)?;
    let ly = *v.layers();
    let mut made = None;
    for mode in [CsumMode::Full, CsumMode::Partial] {
        let opts = GsoOptions {
            csum: mode,
            fixed_id: false,
            ipv6_frag_id: 0x0102_0304,
        };
        let mut seg = match Segmenter::from_linear(frame, &v, opts) {
            Ok(s) => s,
            // Validation and segmentation agree on what a super-frame is except for
            // the causes below (stricter or different limits here).
            Err(e) => {
                assert!(
                    matches!(e.cause(), "unsupported_ext_header" | "ufo_size_too_small"),
                    "validated super-frame refused: {e}"
                );
                return None;
            }
        };
        let count = seg.segment_count();
        let mut buf = SegmentBuf::with_capacity(3);
        let mut joined = Vec::with_capacity(frame.len());
        let mut line = Vec::new();
        let mut n = 0;
        while !seg.is_done() {
            let batch = seg.next_batch(&mut buf);
            assert!(!batch.is_empty());
            for s in batch.iter() {
                s.copy_to(&mut line);
                let sl = parse(&line, start).expect("segment re-parses");
                assert_eq!(sl.ip_end, line.len());
                let ufo = gso.kind == GsoKind::Ufo && count > 1;
                if ufo {
                    // Fragments: the IP payload, UDP header included in the first.
                    joined.extend_from_slice(&line[sl.l3_offset + sl.l3_len..]);
                } else {
                    joined.extend_from_slice(&line[sl.payload_offset..]);
                }
                let verdict = verify_frame(&line, start);
                assert_ne!(verdict.ip, Verdict::Bad, "IPv4 header checksum");
                match (mode, s.meta.csum) {
                    (_, CsumState::Unnecessary) => assert!(ufo),
                    (CsumMode::Full, CsumState::None) => {
                        assert_eq!(verdict.l4, Verdict::Good, "segment {n}")
                    }
                    (CsumMode::Partial, CsumState::Partial { start, offset }) => {
                        assert!(usize::from(start) + usize::from(offset) + 2 <= line.len());
                        assert_ne!(verdict.l4, Verdict::Bad);
                    }
                    (m, c) => panic!("mode {m:?} gave checksum state {c:?}"),
                }
                n += 1;
            }
        }
        assert_eq!(n, count);
        let payload = &frame[ly.payload_offset..];
        if gso.kind == GsoKind::Ufo && count > 1 {
            // The datagram: UDP header (checksum now filled) then the payload.
            assert_eq!(&joined[udp::HEADER_LEN..], payload);
            let mut sum = crate::offload::checksum::pseudo_header(
                frame,
                &ly,
                crate::wire::ip_proto::UDP,
                joined.len() as u32,
            )
            .expect("addresses in the frame");
            sum.add(&joined);
            assert_eq!(sum.fold(), 0xFFFF, "UFO datagram checksum");
        } else {
            assert_eq!(joined, payload);
        }
        if mode == CsumMode::Full {
            made = Some(n);
        }
    }
    made
}
