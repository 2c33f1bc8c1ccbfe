//! VLAN access/trunk helpers and the per-port counters' Prometheus rendering.

use pvnet_core::packet::{CsumState, Frag, Packet};
use pvnet_core::switch::counters::{render_prometheus, DropCause, PortCounters};
use pvnet_core::switch::vlan::{
    egress, frame_vid, ingress, pop_tag, push_tag, VlanError, VlanMode,
};

fn untagged() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(b"ip packet here");
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

fn flat(p: &Packet) -> Vec<u8> {
    let mut v = Vec::new();
    p.copy_to_vec(&mut v);
    v
}

#[test]
fn push_and_pop_round_trip_without_touching_payload() {
    let frame = untagged();
    // Headers in the head, payload in a borrowed fragment.
    let mut p = Packet::from_slice(&frame[..14], 16);
    p.push_frag(Frag::Borrowed(&frame[14..]));
    p.meta.csum = CsumState::Partial {
        start: 34,
        offset: 16,
    };
    push_tag(&mut p, 10).expect("push");
    let want = {
        let mut t = tagged(10);
        t[14] &= 0x0f; // pushed tags have priority 0
        t
    };
    assert_eq!(flat(&p), want);
    assert_eq!(frame_vid(&flat(&p)), Some(10));
    assert_eq!(
        p.meta.csum,
        CsumState::Partial {
            start: 38,
            offset: 16
        }
    );
    assert!(
        matches!(p.frags()[0], Frag::Borrowed(_)),
        "payload stays borrowed"
    );
    assert_eq!(pop_tag(&mut p), Ok(Some(10)));
    assert_eq!(flat(&p), frame);
    assert_eq!(
        p.meta.csum,
        CsumState::Partial {
            start: 34,
            offset: 16
        }
    );
    assert_eq!(pop_tag(&mut p), Ok(None), "untagged: nothing to pop");
    assert_eq!(flat(&p), frame);
}

#[test]
fn push_rejects_bad_vids_and_short_frames() {
    let mut p = Packet::from_slice(&untagged(), 0);
    for vid in [0, 4095, 5000] {
        assert_eq!(push_tag(&mut p, vid), Err(VlanError::BadVid(vid)));
    }
    let mut short = Packet::from_slice(&[1, 2, 3], 0);
    assert_eq!(push_tag(&mut short, 5), Err(VlanError::Truncated));
    assert_eq!(pop_tag(&mut short), Ok(None));
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
        let mut p = Packet::from_slice(frame, 8);
        assert_eq!(ingress(*mode, &mut p), *want, "{mode:?} {frame:02x?}");
        if want.is_ok() {
            assert_eq!(
                flat(&p),
                untagged(),
                "inside the switch frames are untagged"
            );
        }
    }
}

#[test]
fn egress_table() {
    let cases: &[(VlanMode, u16, bool, Option<u16>)] = &[
        (VlanMode::Access(10), 10, true, None),
        (VlanMode::Access(10), 11, false, None),
        (VlanMode::Access(10), 0, false, None),
        (VlanMode::Trunk, 0, true, None),
        (VlanMode::Trunk, 10, true, Some(10)),
    ];
    for (mode, vid, send, tag) in cases {
        let mut p = Packet::from_slice(&untagged(), 8);
        assert_eq!(egress(*mode, *vid, &mut p), Ok(*send), "{mode:?} {vid}");
        assert_eq!(frame_vid(&flat(&p)), *tag, "{mode:?} {vid}");
    }
}

#[test]
fn prometheus_rendering() {
    let mut a = PortCounters::default();
    a.rx(100);
    a.rx(50);
    a.tx(60);
    a.segments = 44;
    a.drop(DropCause::Parse);
    a.drop(DropCause::Parse);
    a.drop(DropCause::TxBusy);
    let b = PortCounters::default();
    let mut out = String::new();
    render_prometheus([("tap0", &a), ("we\"ird\\\n", &b)], &mut out);
    for line in [
        "# TYPE pvnet_port_rx_packets_total counter",
        "pvnet_port_rx_packets_total{port=\"tap0\"} 2",
        "pvnet_port_rx_bytes_total{port=\"tap0\"} 150",
        "pvnet_port_tx_bytes_total{port=\"tap0\"} 60",
        "pvnet_port_segments_total{port=\"tap0\"} 44",
        "pvnet_port_drops_total{port=\"tap0\",cause=\"parse\"} 2",
        "pvnet_port_drops_total{port=\"tap0\",cause=\"tx_busy\"} 1",
        "pvnet_port_drops_total{port=\"tap0\",cause=\"gso\"} 0",
        "pvnet_port_rx_packets_total{port=\"we\\\"ird\\\\\\n\"} 0",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
    }
    // Every sample line is `name{labels} value` with a number.
    for l in out.lines().filter(|l| !l.starts_with('#')) {
        let value = l.rsplit(' ').next().expect("value");
        assert!(value.parse::<u64>().is_ok(), "{l}");
    }
    assert_eq!(a.drops_of(DropCause::Parse), 2);
    let distinct: std::collections::HashSet<_> =
        DropCause::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(distinct.len(), DropCause::COUNT);
    for (i, c) in DropCause::ALL.iter().enumerate() {
        assert_eq!(*c as usize, i);
    }
}
