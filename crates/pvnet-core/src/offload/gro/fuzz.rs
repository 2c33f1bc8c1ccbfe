//! Fuzz body shared by the cargo-fuzz target `gro_batch` (fuzz/) and the proptest in
//! tests/gro_fuzz.rs, so CI runs exactly what the fuzzer does. Not a stable API.

use super::{Coalesced, Coalescer, EmitCause, GroConfig};
use crate::frame::{CsumState, OffloadMeta};
use crate::offload::checksum::{verify_frame, Verdict};
use crate::offload::gso::{segment_linear, CsumMode, GsoOptions, SegmentBuf};
use crate::vnet::{validate, VnetHdr};
use crate::wire::{parse, Start};

/// Most frames taken from one input.
pub const MAX_FRAMES: usize = 256;

/// Split an input into its settings and frames: byte 0 selects the settings (bit 0:
/// frames start at the IP header; bits 1-2: flow table size 1 to 4; bit 3: do not
/// verify checksums; bit 4: no UDP; bit 5: coalesce VXLAN and GENEVE flows into tunnel
/// super-frames), then frames, each a big-endian u16 length and
/// that many bytes (a last frame cut short by the end of the input is kept as it is).
pub fn split(data: &[u8]) -> Option<(GroConfig, Start, Vec<&[u8]>)> {
    let (&sel, mut rest) = data.split_first()?;
    let start = if sel & 1 != 0 {
        Start::Ip
    } else {
        Start::Ethernet
    };
    let cfg = GroConfig {
        max_flows: usize::from((sel >> 1) & 3) + 1,
        verify_checksums: sel & 8 == 0,
        udp: sel & 16 == 0,
        tunnels: sel & 32 != 0,
        ..GroConfig::default()
    };
    let mut frames = Vec::new();
    while let [hi, lo, tail @ ..] = rest {
        if frames.len() == MAX_FRAMES {
            break;
        }
        let n = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (frame, after) = tail.split_at(n);
        frames.push(frame);
        rest = after;
    }
    Some((cfg, start, frames))
}

/// The inverse of [`split`], for building inputs from frames.
pub fn join(selector: u8, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![selector];
    for f in frames {
        let n = f.len().min(usize::from(u16::MAX));
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&f[..n]);
    }
    out
}

type Item = (Vec<u8>, OffloadMeta, u16, bool, EmitCause);

/// Coalesce the frames of `data` (see [`split`]) frame by frame (`push`, then
/// `flush`) and as one batch (`coalesce_batch`). Both must emit the same bytes,
/// metadata and counters, and every frame must come out exactly once (the segment
/// counts add up). A super-frame must re-parse, stay within the size limit, and when
/// checksums were verified complete to a frame whose checksums verify; anything else
/// is given back byte for byte. Returns the number of items emitted.
pub fn gro_batch(data: &[u8]) -> Option<usize> {
    let (cfg, start, frames) = split(data)?;
    let item = |e: &Coalesced<'_>| -> Item {
        let mut bytes = Vec::new();
        e.frame.copy_to(&mut bytes);
        (bytes, e.frame.meta, e.segments, e.fixed_id, e.cause)
    };
    let mut linear: Vec<Item> = Vec::new();
    let mut gro = Coalescer::new(cfg);
    let mut sink = |e: Coalesced<'_>| {
        assert!(e.frame.is_linear(), "copy mode emits linear frames");
        linear.push(item(&e));
    };
    for f in &frames {
        gro.push(f, start, &mut sink);
    }
    gro.flush(&mut sink);

    let mut gathered: Vec<Item> = Vec::new();
    let mut batch = Coalescer::new(cfg);
    batch.coalesce_batch(&frames[..], start, &mut |g| gathered.push(item(&g)));
    assert_eq!(linear, gathered, "gather mode emitted something else");
    assert_eq!(gro.stats(), batch.stats(), "gather mode counted otherwise");
    let total: usize = linear.iter().map(|i| usize::from(i.2)).sum();
    assert_eq!(total, frames.len(), "every frame comes out once");

    for (bytes, meta, segments, _, _) in &linear {
        if meta.gso.is_none() {
            assert_eq!(*segments, 1);
            assert!(frames.contains(&&bytes[..]), "a frame given back changed");
            continue;
        }
        assert!(*segments >= 2);
        let l = parse(bytes, start).expect("super-frame re-parses");
        if let Some(t) = meta.gso.and_then(|g| g.tunnel) {
            tunnel_superframe(bytes, meta, &l, t, *segments, &cfg, start);
            continue;
        }
        assert_eq!(l.ip_end, bytes.len());
        assert!(l.ip_end - l.l3_offset <= cfg.max_size);
        assert!(matches!(meta.csum, CsumState::Partial { .. }));
        let mut done = bytes.clone();
        super::complete_checksum(&mut done, meta).expect("partial checksum in range");
        let v = verify_frame(&done, start);
        assert!(v.ip.is_ok(), "super-frame IPv4 header checksum {v:?}");
        if cfg.verify_checksums {
            assert_eq!(v.l4, Verdict::Good, "super-frame L4 checksum {v:?}");
        }
    }
    Some(linear.len())
}

/// A tunnel super-frame must pass the kernel's rules for a 24-byte virtio header and
/// segment into `segments` frames whose IPv4 headers are right and whose inner (and,
/// when present, outer UDP) checksums verify when the inputs' were verified.
fn tunnel_superframe(
    bytes: &[u8],
    meta: &OffloadMeta,
    l: &crate::wire::Layers,
    t: crate::frame::UdpTunnel,
    segments: u16,
    cfg: &GroConfig,
    start: Start,
) {
    assert!(cfg.tunnels, "a tunnel super-frame only when asked for");
    assert!(l.ip_end - l.l3_offset <= cfg.max_size);
    let hdr = VnetHdr::from_meta(meta, l);
    let v = validate(&hdr, bytes, start)
        .unwrap_or_else(|e| panic!("tunnel super-frame refused: {e} ({hdr:?})"));
    let opts = GsoOptions {
        csum: CsumMode::Full,
        ..GsoOptions::default()
    };
    let (mut buf, mut line) = (SegmentBuf::with_capacity(8), Vec::new());
    let inner_nh = usize::from(t.inner_nh);
    let mut n = 0u16;
    segment_linear(bytes, &v, opts, &mut buf, &mut line, |s, _| {
        n += 1;
        let outer = verify_frame(s, start);
        let inner = verify_frame(s.get(inner_nh..).unwrap_or_default(), Start::Ip);
        assert!(outer.ip.is_ok() && inner.ip.is_ok(), "{outer:?} {inner:?}");
        if cfg.verify_checksums {
            assert_eq!(inner.l4, Verdict::Good, "inner checksum of a segment");
            if t.csum {
                assert_eq!(outer.l4, Verdict::Good, "outer checksum of a segment");
            }
        }
    })
    .expect("a tunnel super-frame segments");
    assert_eq!(n, segments, "segments back from a tunnel super-frame");
}
