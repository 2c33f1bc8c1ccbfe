//! Coalescer behaviour beyond the kernel selftest: emitted metadata, UDP, VLANs, the flow
//! table, pass-through causes and counters, and properties over random interleaved flows
//! (payload preserved per flow, no reordering within a flow, valid checksums).

#[path = "gro_util.rs"]
mod util;

use proptest::prelude::*;
use pvnet_core::frame::{CsumState, Gso, GsoKind};
use pvnet_core::offload::checksum::verify_frame;
use pvnet_core::offload::gro::{
    Coalesced, Coalescer, EmitCause, FlushCause, GroConfig, MalformedCause, PassCause,
};
use pvnet_core::wire::{parse, Start};
use util::*;

fn b(f: Frame) -> Vec<u8> {
    f.build()
}

fn linear(o: &Out) -> Vec<u8> {
    let mut v = o.frame.clone();
    pvnet_core::offload::gro::complete_checksum(&mut v, &o.meta).unwrap();
    v
}

#[test]
fn tcp_super_frame_metadata_and_headers() {
    for v6 in [false, true] {
        let frames: Vec<_> = (0..4)
            .map(|i| {
                let mut f = Frame::tcp(v6, 1000 + i * 1448, 1448).window(500 + i as u16);
                f.id = 7 + i as u16;
                b(f)
            })
            .collect();
        let (outs, gro) = run(GroConfig::default(), &frames, Start::Ethernet);
        assert_eq!(outs.len(), 1);
        let o = &outs[0];
        let l = parse(&o.frame, Start::Ethernet).unwrap();
        assert_eq!(l.payload_len(), 4 * 1448);
        assert_eq!(o.segments, 4);
        assert_eq!(o.cause, EmitCause::Flushed(FlushCause::Explicit));
        assert_eq!(
            o.meta.csum,
            CsumState::Partial {
                start: l.l4_offset as u16,
                offset: 16
            }
        );
        let kind = if v6 { GsoKind::Tcpv6 } else { GsoKind::Tcpv4 };
        assert_eq!(
            o.meta.gso,
            Some(Gso {
                kind,
                size: 1448,
                ecn: false,
                tunnel: None,
            })
        );
        assert!(!o.fixed_id);
        // The first segment's headers stay: window of the first, ID of the first.
        let t = l.l4_offset;
        assert_eq!(&o.frame[t + 14..t + 16], &500u16.to_be_bytes());
        if !v6 {
            assert_eq!(
                &o.frame[l.l3_offset + 4..l.l3_offset + 6],
                &7u16.to_be_bytes()
            );
        }
        // The checksum field holds the folded pseudo-header sum over the whole L4 length.
        let pseudo = pvnet_core::offload::checksum::pseudo_header(
            &o.frame,
            &l,
            6,
            (l.ip_end - l.l4_offset) as u32,
        )
        .unwrap();
        assert_eq!(&o.frame[t + 16..t + 18], &pseudo.fold().to_be_bytes());
        assert!(verify_frame(&linear(o), Start::Ethernet).is_ok());
        assert_eq!(gro.stats().merged, 3);
        assert_eq!(gro.stats().super_frames, 1);
    }
}

#[test]
fn fin_is_merged_and_flushes_psh_first_segment_passes() {
    let frames = vec![
        b(Frame::tcp(false, 0, 100)),
        b(Frame::tcp(false, 100, 100).flags(ACK | FIN)),
        b(Frame::tcp(false, 200, 100).flags(ACK | PSH)),
    ];
    let (outs, gro) = run(GroConfig::default(), &frames, Start::Ethernet);
    assert_eq!(sizes(&outs, Start::Ethernet), vec![200, 100]);
    assert_eq!(outs[0].cause, EmitCause::Flushed(FlushCause::Flags));
    let l = parse(&outs[0].frame, Start::Ethernet).unwrap();
    assert_eq!(outs[0].frame[l.l4_offset + 13], ACK | FIN);
    assert_eq!(outs[1].cause, EmitCause::Passed(PassCause::Flags));
    assert_eq!(outs[1].frame, frames[2]);
    assert_eq!(gro.stats().flushed(FlushCause::Flags), 1);
}

#[test]
fn cwr_only_on_the_first_segment() {
    let frames = vec![
        b(Frame::tcp(false, 0, 100).flags(ACK | CWR)),
        b(Frame::tcp(false, 100, 100)),
        b(Frame::tcp(false, 200, 100).flags(ACK | CWR)),
    ];
    let (outs, _) = run(GroConfig::default(), &frames, Start::Ethernet);
    assert_eq!(sizes(&outs, Start::Ethernet), vec![200, 100]);
    assert!(outs[0].meta.gso.unwrap().ecn);
}

#[test]
fn fixed_ipv4_id_is_reported() {
    let frames: Vec<_> = (0..3)
        .map(|i| {
            let mut f = Frame::tcp(false, i * 100, 100);
            f.id = 42;
            b(f)
        })
        .collect();
    let (outs, _) = run(GroConfig::default(), &frames, Start::Ethernet);
    assert_eq!(outs.len(), 1);
    assert!(outs[0].fixed_id);
}

#[test]
fn vlan_tags_are_part_of_the_flow() {
    let tagged = |vid: u16, seq: u32| {
        let mut f = Frame::tcp(false, seq, 100);
        f.vlans = vec![vid];
        b(f)
    };
    let frames = vec![
        tagged(10, 0),
        tagged(20, 1000),
        tagged(10, 100),
        tagged(20, 1100),
    ];
    let (outs, _) = run(GroConfig::default(), &frames, Start::Ethernet);
    assert_eq!(sizes(&outs, Start::Ethernet), vec![200, 200]);
    for o in &outs {
        assert!(verify_frame(&linear(o), Start::Ethernet).is_ok());
    }
    // QinQ too.
    let qinq = |seq: u32| {
        let mut f = Frame::tcp(true, seq, 100);
        f.vlans = vec![5, 6];
        b(f)
    };
    let (outs, _) = run(GroConfig::default(), &[qinq(0), qinq(100)], Start::Ethernet);
    assert_eq!(sizes(&outs, Start::Ethernet), vec![200]);
}

#[test]
fn different_macs_are_different_flows() {
    let mut other = Frame::tcp(false, 100, 100);
    other.src_mac = [0xaa, 0, 0, 0, 0, 9];
    let frames = vec![b(Frame::tcp(false, 0, 100)), b(other)];
    let (outs, _) = run(GroConfig::default(), &frames, Start::Ethernet);
    assert_eq!(sizes(&outs, Start::Ethernet), vec![100, 100]);
    assert!(outs.iter().all(|o| o.meta.gso.is_none()));
}

#[test]
fn bare_ip_frames_from_tun() {
    for v6 in [false, true] {
        let frames: Vec<_> = (0..3)
            .map(|i| {
                let mut f = Frame::tcp(v6, i * 500, 500);
                f.ethernet = false;
                f.id = i as u16;
                b(f)
            })
            .collect();
        let (outs, _) = run(GroConfig::default(), &frames, Start::Ip);
        assert_eq!(sizes(&outs, Start::Ip), vec![1500]);
        assert!(verify_frame(&linear(&outs[0]), Start::Ip).is_ok());
    }
}

#[test]
fn udp_same_size_datagrams_last_shorter() {
    for v6 in [false, true] {
        let mut frames: Vec<_> = (0..5)
            .map(|i| b(Frame::udp(v6, pattern(i, 1200))))
            .collect();
        frames.push(b(Frame::udp(v6, pattern(9, 300))));
        frames.push(b(Frame::udp(v6, pattern(10, 1200))));
        let (outs, gro) = run(GroConfig::default(), &frames, Start::Ethernet);
        assert_eq!(sizes(&outs, Start::Ethernet), vec![6300, 1200]);
        let o = &outs[0];
        assert_eq!(o.cause, EmitCause::Flushed(FlushCause::ShortSegment));
        let l = parse(&o.frame, Start::Ethernet).unwrap();
        assert_eq!(
            o.meta.csum,
            CsumState::Partial {
                start: l.l4_offset as u16,
                offset: 6
            }
        );
        assert_eq!(
            o.meta.gso,
            Some(Gso {
                kind: GsoKind::UdpL4,
                size: 1200,
                ecn: false,
                tunnel: None,
            })
        );
        assert_eq!(o.segments, 6);
        assert!(verify_frame(&linear(o), Start::Ethernet).is_ok());
        assert_eq!(outs[1].frame, frames[6]);
        assert_eq!(gro.stats().singles, 1);
    }
}

#[test]
fn udp_bigger_datagram_starts_a_new_flow_and_64_segment_limit() {
    let frames = vec![
        b(Frame::udp(false, pattern(0, 500))),
        b(Frame::udp(false, pattern(1, 800))),
        b(Frame::udp(false, pattern(2, 800))),
    ];
    let (outs, _) = run(GroConfig::default(), &frames, Start::Ethernet);
    assert_eq!(sizes(&outs, Start::Ethernet), vec![500, 1600]);

    let frames: Vec<_> = (0..70)
        .map(|i| b(Frame::udp(false, pattern(i, 100))))
        .collect();
    let (outs, gro) = run(GroConfig::default(), &frames, Start::Ethernet);
    assert_eq!(sizes(&outs, Start::Ethernet), vec![6400, 600]);
    assert_eq!(gro.stats().flushed(FlushCause::SegmentLimit), 1);
}

#[test]
fn udp_zero_checksum_and_tcp_partial_checksum_pass() {
    let mut z = Frame::udp(false, pattern(0, 100)).build();
    let l = parse(&z, Start::Ethernet).unwrap();
    z[l.l4_offset + 6..l.l4_offset + 8].fill(0);
    let mut p = Frame::tcp(false, 100, 100);
    p.partial_csum = true;
    let frames = vec![z.clone(), z.clone(), b(Frame::tcp(false, 0, 100)), b(p)];
    let (outs, gro) = run(GroConfig::default(), &frames, Start::Ethernet);
    assert_eq!(outs.len(), 4);
    assert_eq!(gro.stats().passed(PassCause::UdpNoChecksum), 2);
    assert_eq!(gro.stats().passed(PassCause::BadChecksum), 1);
    // Order within the TCP flow: the held segment first, then the one passed.
    assert_eq!(outs[2].frame, frames[2]);
    assert_eq!(outs[3].frame, frames[3]);

    // Trusting checksums merges the partial one; the result is still right.
    let cfg = GroConfig {
        verify_checksums: false,
        ..GroConfig::default()
    };
    let (outs, _) = run(cfg, &frames[2..], Start::Ethernet);
    assert_eq!(sizes(&outs, Start::Ethernet), vec![200]);
    assert!(verify_frame(&linear(&outs[0]), Start::Ethernet).is_ok());
}

#[test]
fn padded_frames_pass() {
    let mut f = Frame::tcp(false, 100, 4);
    f.padding = 2;
    let frames = vec![b(Frame::tcp(false, 0, 100)), b(f)];
    let (outs, gro) = run(GroConfig::default(), &frames, Start::Ethernet);
    assert_eq!(outs.len(), 2);
    assert_eq!(outs[1].frame, frames[1]);
    assert_eq!(gro.stats().passed(PassCause::Padded), 1);
    assert_eq!(gro.stats().flushed(FlushCause::Mismatch), 1);
}

#[test]
fn table_full_flushes_the_oldest_flow() {
    let cfg = GroConfig {
        max_flows: 2,
        ..GroConfig::default()
    };
    let flow = |port: u16, seq: u32| {
        let mut f = Frame::tcp(false, seq, 100);
        f.sport = port;
        b(f)
    };
    let frames = vec![
        flow(1, 0),
        flow(2, 0),
        flow(1, 100),
        flow(3, 0),
        flow(2, 100),
    ];
    let (outs, gro) = run(cfg, &frames, Start::Ethernet);
    // Flow 1 (oldest) leaves when flow 3 arrives; flow 2 then merges its second segment.
    assert_eq!(sizes(&outs, Start::Ethernet), vec![200, 200, 100]);
    assert_eq!(gro.stats().flushed(FlushCause::TableFull), 1);
    assert_eq!(gro.stats().flushed(FlushCause::Explicit), 2);
}

#[test]
fn flush_flow_of_emits_only_that_flow() {
    let mut gro = Coalescer::default();
    let mut got = Vec::new();
    let mut sink = |e: Coalesced<'_>| got.push(e.frame.len());
    let a = b(Frame::tcp(false, 0, 100));
    let mut other = Frame::tcp(false, 0, 100);
    other.sport = 9;
    let other = b(other);
    gro.push(&a, Start::Ethernet, &mut sink);
    gro.push(&other, Start::Ethernet, &mut sink);
    assert!(gro.flush_flow_of(&a, Start::Ethernet, &mut sink));
    assert!(!gro.flush_flow_of(&a, Start::Ethernet, &mut sink));
    assert_eq!(gro.held_flows(), 1);
    assert_eq!(got, vec![a.len()]);
}

#[test]
fn malformed_and_other_frames_pass_untouched_and_are_counted() {
    let good = b(Frame::tcp(false, 0, 100));
    let mut arp = good.clone();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let mut bad_ver = good.clone();
    bad_ver[14] = 0x55;
    let mut bad_ipsum = good.clone();
    bad_ipsum[24] ^= 1;
    let mut icmp = Frame::tcp(false, 0, 8).build();
    icmp[23] = 1;
    let frames = vec![
        good[..30].to_vec(),
        bad_ver,
        arp,
        bad_ipsum,
        icmp,
        vec![],
        vec![0xff; 3],
    ];
    let (outs, gro) = run(GroConfig::default(), &frames, Start::Ethernet);
    assert_eq!(outs.len(), frames.len());
    for (o, f) in outs.iter().zip(&frames) {
        assert_eq!(&o.frame, f);
        assert!(o.meta.gso.is_none());
    }
    let s = gro.stats();
    assert_eq!(s.passed(PassCause::Malformed), 4);
    assert_eq!(s.malformed(MalformedCause::Truncated), 3);
    assert_eq!(s.malformed(MalformedCause::BadVersion), 1);
    assert_eq!(s.passed(PassCause::NotIp), 1);
    assert_eq!(s.passed(PassCause::BadIpChecksum), 1);
    assert_eq!(s.passed(PassCause::NotTcpUdp), 1);
    assert_eq!(s.frames_in, 7);
    assert_eq!(s.passed_total(), 7);
}

#[test]
fn push_batch_flushes_at_the_end() {
    let frames: Vec<_> = (0..3).map(|i| b(Frame::tcp(false, i * 100, 100))).collect();
    let mut gro = Coalescer::default();
    let mut n = 0;
    gro.push_batch(
        frames.iter().map(Vec::as_slice),
        Start::Ethernet,
        &mut |e: Coalesced<'_>| {
            assert_eq!(e.segments, 3);
            n += 1;
        },
    );
    assert_eq!(n, 1);
    assert_eq!(gro.held_flows(), 0);
}

#[test]
fn coalesce_batch_lets_flows_held_by_push_go_first_and_holds_nothing_after() {
    let frames: Vec<_> = (0..4).map(|i| b(Frame::tcp(false, i * 100, 100))).collect();
    let mut gro = Coalescer::default();
    gro.push(&frames[0], Start::Ethernet, &mut |_: Coalesced<'_>| {
        panic!("one segment is held, not emitted")
    });
    assert_eq!(gro.held_flows(), 1);
    let mut seen = Vec::new();
    let mut indices = Vec::new();
    gro.coalesce_batch(&frames[1..], Start::Ethernet, &mut |g| {
        let mut whole = Vec::new();
        g.frame.copy_to(&mut whole);
        seen.push((
            whole,
            g.frame.head().len(),
            g.frame.payload().count(),
            g.segments,
            g.cause,
        ));
        indices.push(g.batch_index());
    });
    // The held flow began before the batch; the super-frame with the batch's first frame.
    assert_eq!(indices, [None, Some(0)]);
    assert_eq!(gro.held_flows(), 0);
    assert_eq!(seen.len(), 2);
    // The flow held since `push` leaves first, whole, as the frame that opened it.
    assert_eq!(seen[0].0, frames[0]);
    assert_eq!((seen[0].1, seen[0].2), (frames[0].len(), 0));
    assert_eq!(seen[0].4, EmitCause::Flushed(FlushCause::Explicit));
    // The batch's three segments: headers in `head`, one payload slice per segment.
    let (whole, head, payloads, segments, _) = &seen[1];
    assert_eq!((*head, *payloads, *segments), (14 + 20 + 20, 3, 3));
    assert_eq!(whole.len(), 14 + 20 + 20 + 300);
    let (outs, _) = run(GroConfig::default(), &frames[1..], Start::Ethernet);
    assert_eq!(whole, &outs[0].frame);
}

#[test]
fn ipv6_routing_header_uses_final_destination() {
    // Type-2-like routing header with one address and segments left 1: the pseudo-header
    // uses the address inside it.
    let final_dst = [0xfd, 0xbb, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
    let mk = |seq: u32| {
        let mut f = Frame::tcp(true, seq, 100);
        let mut body = vec![2, 1, 0, 0, 0, 0];
        body.extend_from_slice(&final_dst);
        f.exts = vec![(43, body)];
        // The checksum of the input must use the final destination too.
        let mut g = f.clone();
        g.dst6 = final_dst;
        g.exts.clear();
        let l4_ref = g.build();
        let mut out = f.build();
        let n = out.len();
        let tcp_ref = &l4_ref[l4_ref.len() - 120..];
        out[n - 120 + 16..n - 120 + 18].copy_from_slice(&tcp_ref[16..18]);
        out
    };
    let frames = vec![mk(0), mk(100)];
    assert!(verify_frame(&frames[0], Start::Ethernet).is_ok());
    let (outs, _) = run(GroConfig::default(), &frames, Start::Ethernet);
    assert_eq!(sizes(&outs, Start::Ethernet), vec![200]);
    assert!(verify_frame(&linear(&outs[0]), Start::Ethernet).is_ok());
}

/// Random in-order flows, interleaved.
#[derive(Debug, Clone)]
struct FlowSpec {
    v6: bool,
    udp: bool,
    mss: usize,
    sizes: Vec<usize>,
}

fn flow_spec() -> impl Strategy<Value = FlowSpec> {
    (any::<bool>(), prop::bool::weighted(0.3), 1usize..=1460).prop_flat_map(|(v6, udp, mss)| {
        prop::collection::vec(
            prop_oneof![4 => Just(mss), 1 => 1usize..=mss, 1 => 0usize..=1460],
            1..30,
        )
        .prop_map(move |sizes| FlowSpec {
            v6,
            udp,
            mss,
            sizes,
        })
    })
}

/// Frames of flow `n` (its own port), in order, each tagged with its flow.
fn flow_frames(n: usize, spec: &FlowSpec) -> Vec<Vec<u8>> {
    let mut seq = 1000u32 * n as u32;
    let mut out = Vec::new();
    for (i, &len) in spec.sizes.iter().enumerate() {
        let mut f = if spec.udp {
            Frame::udp(spec.v6, pattern(i * 7 + n, len.max(1)))
        } else {
            Frame::tcp(spec.v6, seq, len)
        };
        f.sport = 2000 + n as u16;
        f.id = i as u16;
        seq = seq.wrapping_add(len as u32);
        out.push(f.build());
    }
    let _ = spec.mss;
    out
}

/// Flow number (from the source port) and transport payload of a frame.
fn flow_payload(frame: &[u8]) -> (usize, Vec<u8>) {
    let l = parse(frame, Start::Ethernet).unwrap();
    let port = u16::from_be_bytes([frame[l.l4_offset], frame[l.l4_offset + 1]]);
    (
        usize::from(port - 2000),
        frame[l.payload_offset..l.ip_end].to_vec(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn interleaved_flows_keep_payload_and_order(
        specs in prop::collection::vec(flow_spec(), 1..6),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 200),
        max_flows in 1usize..6,
    ) {
        let per_flow: Vec<Vec<Vec<u8>>> =
            specs.iter().enumerate().map(|(n, s)| flow_frames(n, s)).collect();
        // Interleave: repeatedly take the next frame of a randomly picked flow.
        let mut next = vec![0usize; per_flow.len()];
        let mut input = Vec::new();
        let mut p = picks.iter().cycle();
        while input.len() < per_flow.iter().map(Vec::len).sum::<usize>() {
            let live: Vec<usize> =
                (0..per_flow.len()).filter(|&f| next[f] < per_flow[f].len()).collect();
            let f = live[p.next().unwrap().index(live.len())];
            input.push(per_flow[f][next[f]].clone());
            next[f] += 1;
        }
        let cfg = GroConfig { max_flows, ..GroConfig::default() };
        let (outs, gro) = run(cfg, &input, Start::Ethernet);

        // Per flow: concatenated payloads equal, and each output covers a contiguous run
        // of that flow's input frames in order.
        let mut got: Vec<Vec<u8>> = vec![Vec::new(); per_flow.len()];
        let mut frames_seen = vec![0usize; per_flow.len()];
        for o in &outs {
            let lin = linear(o);
            prop_assert!(verify_frame(&lin, Start::Ethernet).is_ok());
            let (f, payload) = flow_payload(&lin);
            // The output starts with the next not yet emitted input of its flow.
            let (_, first) = flow_payload(&per_flow[f][frames_seen[f]]);
            prop_assert!(payload.starts_with(&first));
            frames_seen[f] += usize::from(o.segments);
            got[f].extend_from_slice(&payload);
            if o.meta.gso.is_none() {
                prop_assert!(input.contains(&o.frame));
            } else {
                let g = o.meta.gso.unwrap();
                prop_assert!(usize::from(g.size) * usize::from(o.segments) >= payload.len());
                prop_assert!(lin.len() - 14 <= 65535);
            }
        }
        for (f, frames) in per_flow.iter().enumerate() {
            let want: Vec<u8> = frames.iter().flat_map(|fr| flow_payload(fr).1).collect();
            prop_assert_eq!(&got[f], &want, "flow {}", f);
            prop_assert_eq!(frames_seen[f], frames.len());
        }
        let s = gro.stats();
        prop_assert_eq!(s.frames_in as usize, input.len());
        prop_assert_eq!(
            s.merged + s.super_frames + s.singles + s.passed_total(),
            input.len() as u64
        );
    }

    #[test]
    fn never_panics_on_garbage(frames in prop::collection::vec(
        prop::collection::vec(any::<u8>(), 0..200), 1..20)) {
        let mut gro = Coalescer::default();
        let mut n = 0usize;
        for f in &frames {
            gro.push(f, Start::Ethernet, &mut |_e: Coalesced<'_>| n += 1);
            gro.push(f, Start::Ip, &mut |_e: Coalesced<'_>| n += 1);
        }
        gro.flush(&mut |_e: Coalesced<'_>| n += 1);
        prop_assert!(n <= 2 * frames.len());
        prop_assert_eq!(gro.stats().frames_in as usize, 2 * frames.len());
    }
}

/// Flows are bounded in frames seen, not time: `flush_started_before` emits exactly the
/// flows opened before the given frame number, and every item says which frame started it.
#[test]
fn flows_age_out_by_frame_number() {
    let mut gro = Coalescer::new(GroConfig::default());
    let mut out: Vec<(u64, u16)> = Vec::new();
    let mut sink = |e: Coalesced<'_>| out.push((e.first_frame, e.segments));
    // Frames 1-3: flow A; frame 4: an ARP-like non-IP frame passes at once; 5-6: flow B.
    let a: Vec<Vec<u8>> = (0..3)
        .map(|i| b(Frame::tcp(false, 1000 + i * 1000, 1000)))
        .collect();
    let mut bflow = Frame::tcp(false, 50_000, 1000);
    bflow.sport = 1501;
    for f in &a {
        gro.push(f, Start::Ethernet, &mut sink);
    }
    let mut arp = vec![0xff; 12];
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.resize(60, 0);
    gro.push(&arp, Start::Ethernet, &mut sink);
    gro.push(&b(bflow.clone()), Start::Ethernet, &mut sink);
    bflow.l4 = match bflow.l4 {
        util::L4::Tcp {
            ack,
            flags,
            window,
            options,
            ..
        } => util::L4::Tcp {
            seq: 51_000,
            ack,
            flags,
            window,
            options,
        },
        other => other,
    };
    gro.push(&b(bflow), Start::Ethernet, &mut sink);
    assert_eq!(gro.oldest_held_frame(), Some(1));
    gro.flush_started_before(5, &mut sink);
    assert_eq!(gro.oldest_held_frame(), Some(5));
    gro.flush_started_before(5, &mut sink);
    gro.flush(&mut sink);
    assert_eq!(gro.oldest_held_frame(), None);
    assert_eq!(out, vec![(4, 1), (1, 3), (5, 2)]);
}
