//! GRO and GSO are inverses: segmenting what the coalescer built gives back the frames it
//! was fed, and coalescing the segments of a super-frame gives back the super-frame.

#[path = "gro_util.rs"]
mod util;

use proptest::prelude::*;
use pvnet_core::frame::OffloadMeta;
use pvnet_core::offload::gro::{complete_checksum, GroConfig};
use pvnet_core::offload::gso::{segment_linear, CsumMode, GsoOptions, SegmentBuf};
use pvnet_core::vnet::validate_gso;
use pvnet_core::wire::{parse, Start};
use util::*;

/// Everything the coalescer emits, with its metadata (`run` also checks that gather mode
/// emits the same).
fn coalesce(frames: &[Vec<u8>], start: Start) -> Vec<(Vec<u8>, OffloadMeta)> {
    let cfg = GroConfig {
        max_flows: 8,
        ..GroConfig::default()
    };
    let (outs, _) = run(cfg, frames, start);
    outs.into_iter().map(|o| (o.frame, o.meta)).collect()
}

/// Segment every emitted item with its own metadata (complete checksums), passing
/// non-super-frames through.
fn segment(items: &[(Vec<u8>, OffloadMeta)], start: Start) -> Vec<Vec<u8>> {
    let mut buf = SegmentBuf::with_capacity(16);
    let mut line = Vec::new();
    let mut out = Vec::new();
    for (frame, meta) in items {
        let Some(gso) = meta.gso else {
            out.push(frame.clone());
            continue;
        };
        let v = validate_gso(frame, start, gso).expect("coalescer output validates");
        let opts = GsoOptions {
            csum: CsumMode::Full,
            ..GsoOptions::default()
        };
        segment_linear(frame, &v, opts, &mut buf, &mut line, |s, _| {
            out.push(s.to_vec())
        })
        .expect("coalescer output segments");
    }
    out
}

/// One flow's frames: a byte stream cut into `mss`-sized segments (the last shorter),
/// IPv4 ID +1 per segment, PSH on the last one as a sender does at the end of a write.
fn tcp_flow(v6: bool, sport: u16, seq0: u32, len: usize, mss: usize, id0: u16) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut off = 0;
    let mut i = 0u16;
    while off < len {
        let n = mss.min(len - off);
        let last = off + n == len;
        let mut f = Frame::tcp(v6, seq0.wrapping_add(off as u32), n).flags(if last {
            ACK | PSH
        } else {
            ACK
        });
        f.sport = sport;
        f.id = id0.wrapping_add(i);
        frames.push(f);
        off += n;
        i += 1;
    }
    frames
}

fn udp_flow(v6: bool, sport: u16, count: usize, size: usize, last: usize, id0: u16) -> Vec<Frame> {
    (0..count)
        .map(|i| {
            let n = if i + 1 == count { last } else { size };
            let mut f = Frame::udp(v6, pattern(i * size, n));
            f.sport = sport;
            f.id = id0.wrapping_add(i as u16);
            f
        })
        .collect()
}

/// Interleave flows round-robin, keeping each flow's own order.
fn interleave(flows: Vec<Vec<Frame>>) -> Vec<Vec<u8>> {
    let mut its: Vec<_> = flows.into_iter().map(|f| f.into_iter()).collect();
    let mut out = Vec::new();
    loop {
        let mut any = false;
        for it in its.iter_mut() {
            if let Some(f) = it.next() {
                out.push(f.build());
                any = true;
            }
        }
        if !any {
            return out;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// segment(coalesce(frames)) == frames for interleaved in-order TCP and UDP flows.
    #[test]
    fn segmenting_coalesced_flows_gives_the_frames_back(
        v6 in any::<bool>(),
        eth in any::<bool>(),
        tcp in proptest::collection::vec((1usize..20_000, 64usize..1500, any::<u32>(), any::<u16>()), 1..4),
        udp in proptest::collection::vec((1usize..10, 64usize..1400, 1usize..1400, any::<u16>()), 0..3),
    ) {
        let mut flows = Vec::new();
        for (k, (len, mss, seq, id)) in tcp.iter().enumerate() {
            flows.push(tcp_flow(v6, 2000 + k as u16, *seq, *len, *mss, *id));
        }
        for (k, (count, size, last, id)) in udp.iter().enumerate() {
            flows.push(udp_flow(v6, 3000 + k as u16, *count, *size, (*last).min(*size), *id));
        }
        for f in flows.iter_mut().flatten() {
            f.ethernet = eth;
        }
        let start = if eth { Start::Ethernet } else { Start::Ip };
        let frames = interleave(flows);
        let items = coalesce(&frames, start);
        prop_assert!(items.len() <= frames.len());
        let mut back = segment(&items, start);
        let mut want = frames.clone();
        // Coalescing reorders frames across flows (a flow leaves when flushed) but never
        // within one: compare per flow, in order.
        let key = |f: &Vec<u8>| {
            let l = parse(f, start).unwrap();
            f[l.l4_offset..l.l4_offset + 2].to_vec()
        };
        back.sort_by_key(key);
        want.sort_by_key(key);
        prop_assert_eq!(back.len(), want.len());
        for (b, w) in back.iter().zip(&want) {
            prop_assert!(b == w, "segment of a coalesced frame differs from the input frame");
        }
    }

    /// Gather mode and linear mode agree (`run` checks it) on damaged traffic too: flows
    /// with random bytes overwritten, truncated frames, a tiny flow table.
    #[test]
    fn gather_and_linear_modes_agree_on_damaged_frames(
        v6 in any::<bool>(),
        tcp in proptest::collection::vec((1usize..8_000, 64usize..1500, any::<u32>(), any::<u16>()), 1..4),
        udp in proptest::collection::vec((1usize..10, 64usize..1400, 1usize..1400, any::<u16>()), 0..3),
        hurt in damages(12),
        max_flows in 1usize..4,
    ) {
        let mut flows = Vec::new();
        for (k, (len, mss, seq, id)) in tcp.iter().enumerate() {
            flows.push(tcp_flow(v6, 2000 + k as u16, *seq, *len, *mss, *id));
        }
        for (k, (count, size, last, id)) in udp.iter().enumerate() {
            flows.push(udp_flow(v6, 3000 + k as u16, *count, *size, (*last).min(*size), *id));
        }
        let mut frames = interleave(flows);
        damage(&mut frames, &hurt);
        let cfg = GroConfig { max_flows, ..GroConfig::default() };
        let (outs, _) = run(cfg, &frames, Start::Ethernet);
        let total: usize = outs.iter().map(|o| o.segments as usize).sum();
        prop_assert_eq!(total, frames.len(), "every frame comes out once");
    }

    /// coalesce(segment(superframe)) == superframe (with its checksum completed).
    #[test]
    fn coalescing_segments_gives_the_super_frame_back(
        v6 in any::<bool>(),
        udp in any::<bool>(),
        len in 1usize..60_000,
        mss in 200usize..9000,
        seq in any::<u32>(),
        id in any::<u16>(),
    ) {
        let len = if udp { len.min(mss * 64) } else { len };
        let mut sf = if udp {
            Frame::udp(v6, pattern(0, len))
        } else {
            Frame::tcp(v6, seq, len).flags(ACK | PSH)
        };
        sf.id = id;
        let superframe = sf.build();
        let kind = match (udp, v6) {
            (true, _) => pvnet_core::frame::GsoKind::UdpL4,
            (false, false) => pvnet_core::frame::GsoKind::Tcpv4,
            (false, true) => pvnet_core::frame::GsoKind::Tcpv6,
        };
        let gso = pvnet_core::frame::Gso { kind, size: mss as u16, ecn: false , tunnel: None };
        let item = vec![(superframe.clone(), OffloadMeta { gso: Some(gso), ..OffloadMeta::default() })];
        let segments = segment(&item, Start::Ethernet);
        prop_assert_eq!(segments.len(), len.div_ceil(mss));
        let items = coalesce(&segments, Start::Ethernet);
        prop_assert_eq!(items.len(), 1, "one super-frame back");
        let (mut frame, meta) = items.into_iter().next().unwrap();
        if segments.len() > 1 {
            prop_assert_eq!(meta.gso.map(|g| (g.kind, g.size)), Some((kind, mss as u16)));
        }
        complete_checksum(&mut frame, &meta).unwrap();
        // A completed partial checksum that comes out as 0 is written as 0xFFFF (the
        // kernel's CSUM_MANGLED_0); the builder writes 0. Both are one's-complement zero.
        let mut want = superframe;
        if let pvnet_core::frame::CsumState::Partial { start, offset } = meta.csum {
            let at = usize::from(start + offset);
            if want[at..at + 2] == [0, 0] {
                want[at..at + 2].copy_from_slice(&[0xff, 0xff]);
            }
        }
        prop_assert!(frame == want, "coalesced segments differ from the super-frame");
    }
}
