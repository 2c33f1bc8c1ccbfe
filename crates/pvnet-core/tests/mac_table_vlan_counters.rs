//! VLAN access/trunk helpers and the per-port counters' Prometheus rendering.

use pvnet_core::frame::{CsumState, Frame, OffloadMeta};
use pvnet_core::switch::counters::{PortCounters, COUNTERS};
use pvnet_core::switch::vlan::{
    egress, frame_vid, ingress, retag, Egress, Ingress, VlanError, VlanMode,
};
use pvnet_core::vnet::{flags, validate, Validated, VnetHdr};
use pvnet_core::wire::Start;

fn untagged() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend_from_slice(b"arp packet here");
    f
}

fn tagged(vid: u16) -> Vec<u8> {
    let u = untagged();
    let mut f = u[..12].to_vec();
    f.extend_from_slice(&[0x81, 0x00]);
    f.extend_from_slice(&(0x2000 | vid).to_be_bytes()); // PCP 1: the VID mask must hold
    f.extend_from_slice(&u[12..]);
    f
}

fn flat(f: &Frame<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    f.copy_to(&mut v);
    v
}

/// A frame's validated layers, with a partial checksum at `csum_start` when given.
fn validated(frame: &[u8], csum_start: Option<u16>) -> Validated {
    let hdr = match csum_start {
        None => VnetHdr::default(),
        Some(start) => VnetHdr {
            flags: flags::NEEDS_CSUM,
            csum_start: start,
            csum_offset: 16,
            ..VnetHdr::default()
        },
    };
    validate(&hdr, frame, Start::Ethernet).expect("valid frame")
}

/// A TCP/IPv4 frame long enough for a partial checksum at 34 + 16.
fn tcp_frame() -> Vec<u8> {
    let mut f = untagged()[..12].to_vec();
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[0x45, 0, 0, 44, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    f.extend_from_slice(&[0, 1, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 1, 0]);
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(b"data");
    f
}

#[test]
fn push_and_pop_round_trip_without_touching_payload() {
    let frame = tcp_frame();
    // Headers in the head, payload in a slice of its own.
    let payload: [&[u8]; 1] = [&frame[54..]];
    let v = validated(&frame, Some(34));
    let f = Frame::new(&frame[..54], &payload, *v.meta());
    let mut scratch = Vec::new();
    let (t, tv) = retag(&f, &v, Egress::Push(10), &mut scratch).expect("push");
    let want = {
        let mut w = frame[..12].to_vec();
        w.extend_from_slice(&[0x81, 0x00, 0, 10]); // pushed tags have priority 0
        w.extend_from_slice(&frame[12..]);
        w
    };
    assert_eq!(flat(&t), want);
    assert_eq!(frame_vid(&flat(&t)), Some(10));
    let partial = |start| CsumState::Partial { start, offset: 16 };
    assert_eq!(t.meta.csum, partial(38));
    assert_eq!(tv.meta().csum, partial(38));
    assert_eq!(tv.layers().l4_offset, 38);
    assert_eq!(tv.layers().vlans, 1);
    assert_eq!(
        *tv.layers(),
        *validated(&want, Some(38)).layers(),
        "layers move with the tag"
    );
    assert!(
        t.payload()
            .next()
            .is_some_and(|p| p.as_ptr() == frame[54..].as_ptr()),
        "payload stays where it was"
    );
    let mut scratch2 = Vec::new();
    let (p, pv) = retag(&t, &tv, Egress::Pop, &mut scratch2).expect("pop");
    assert_eq!(flat(&p), frame);
    assert_eq!(p.meta.csum, partial(34));
    assert_eq!(*pv.layers(), *v.layers());
    let mut scratch3 = Vec::new();
    assert_eq!(
        retag(&p, &pv, Egress::Pop, &mut scratch3).map(|_| ()),
        Err(VlanError::Truncated),
        "untagged: nothing to pop"
    );
}

#[test]
fn push_rejects_bad_vids_and_short_frames() {
    let frame = untagged();
    let v = validated(&frame, None);
    let f = Frame::linear(&frame, OffloadMeta::default());
    let mut scratch = Vec::new();
    for vid in [0, 4095, 5000] {
        assert_eq!(
            retag(&f, &v, Egress::Push(vid), &mut scratch).map(|_| ()),
            Err(VlanError::BadVid(vid))
        );
    }
    let short = Frame::linear(&[1, 2, 3], OffloadMeta::default());
    assert_eq!(
        retag(&short, &v, Egress::Push(5), &mut scratch).map(|_| ()),
        Err(VlanError::Truncated)
    );
    assert_eq!(
        ingress(VlanMode::Trunk, &[1, 2, 3]),
        Err(VlanError::Truncated)
    );
    assert_eq!(frame_vid(&[0; 13]), None);
}

#[test]
fn ingress_table() {
    let cases: &[(VlanMode, Vec<u8>, Result<u16, VlanError>)] = &[
        (VlanMode::Trunk, untagged(), Ok(0)),
        (VlanMode::Trunk, tagged(7), Ok(7)),
        (VlanMode::Access(10), untagged(), Ok(10)),
        (VlanMode::Access(10), tagged(0), Ok(10)),
        (
            VlanMode::Access(10),
            tagged(10),
            Err(VlanError::TaggedOnAccess),
        ),
        (
            VlanMode::Access(10),
            tagged(7),
            Err(VlanError::TaggedOnAccess),
        ),
    ];
    for (mode, frame, want) in cases {
        let got = ingress(*mode, frame);
        assert_eq!(got.map(|i| i.vid), *want, "{mode:?} {frame:02x?}");
        if let Ok(i) = got {
            // Inside the switch the frame keeps its tag; every port that sends it
            // untagged pops it, so what leaves an access port is the untagged frame.
            assert_eq!(i.tag, frame_vid(frame));
            let out = egress(
                VlanMode::Access(i.vid.max(1)),
                Ingress {
                    vid: i.vid.max(1),
                    ..i
                },
            );
            let v = validated(frame, None);
            let f = Frame::linear(frame, OffloadMeta::default());
            let mut scratch = Vec::new();
            let (t, _) = retag(&f, &v, out, &mut scratch).expect("retag");
            assert_eq!(flat(&t), untagged(), "{mode:?} {frame:02x?}: sent untagged");
        }
    }
}

#[test]
fn egress_table() {
    // (port, frame's VLAN, sent?, tag on the wire)
    let cases: &[(VlanMode, u16, bool, Option<u16>)] = &[
        (VlanMode::Access(10), 10, true, None),
        (VlanMode::Access(10), 11, false, None),
        (VlanMode::Access(10), 0, false, None),
        (VlanMode::Trunk, 0, true, None),
        (VlanMode::Trunk, 10, true, Some(10)),
    ];
    for (mode, vid, send, tag) in cases {
        // The same answer whatever tag the frame arrived with.
        for arrived in [untagged(), tagged(*vid), tagged(0)] {
            let ing = Ingress {
                vid: *vid,
                tag: frame_vid(&arrived),
            };
            let op = egress(*mode, ing);
            assert_eq!(op != Egress::Skip, *send, "{mode:?} {vid}");
            if !send {
                continue;
            }
            let v = validated(&arrived, None);
            let f = Frame::linear(&arrived, OffloadMeta::default());
            let mut scratch = Vec::new();
            let (t, _) = retag(&f, &v, op, &mut scratch).expect("retag");
            let out = flat(&t);
            assert_eq!(frame_vid(&out), *tag, "{mode:?} {vid} {arrived:02x?}");
            if tag.is_none() {
                assert_eq!(out, untagged());
            }
        }
    }
    // A priority-tagged frame to a trunk gets its VLAN written into the tag it has,
    // keeping its priority.
    let ing = Ingress {
        vid: 10,
        tag: Some(0),
    };
    assert_eq!(egress(VlanMode::Trunk, ing), Egress::SetVid(10));
    let arrived = tagged(0);
    let v = validated(&arrived, None);
    let f = Frame::linear(&arrived, OffloadMeta::default());
    let mut scratch = Vec::new();
    let (t, _) = retag(&f, &v, Egress::SetVid(10), &mut scratch).expect("set vid");
    assert_eq!(flat(&t), tagged(10));
}

#[test]
fn the_counter_list_reads_every_counter_once() {
    let mut c = PortCounters::default();
    c.rx(100);
    c.rx(50);
    c.tx(60);
    c.segments = 44;
    c.gso_segmented = 3;
    let got: Vec<(&str, u64)> = COUNTERS.iter().map(|(n, _, get)| (*n, get(&c))).collect();
    assert!(got.contains(&("rx_packets", 2)));
    assert!(got.contains(&("rx_bytes", 150)));
    assert!(got.contains(&("tx_bytes", 60)));
    assert!(got.contains(&("segments", 44)));
    assert!(got.contains(&("gso_segmented", 3)));
    let mut names: Vec<&str> = COUNTERS.iter().map(|(n, _, _)| *n).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), COUNTERS.len(), "a name twice");
    // Every field but the drops is listed: a counter added to PortCounters and not
    // here would be invisible in the metrics and in `pvnet ctl stats`.
    let total: u64 = COUNTERS.iter().map(|(_, _, get)| get(&c)).sum();
    assert_eq!(total, 2 + 150 + 1 + 60 + 44 + 3);
}
