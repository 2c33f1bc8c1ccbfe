//! The forwarder on its own, between ports that record what they are sent: a super-frame
//! that GRO gathered (headers plus payload slices of the receive batch) leaves every kind
//! of destination exactly as the same super-frame built linearly would: passed with its
//! vnet header, segmented, or tagged for a trunk.
//!
//! And its shortcut for the frames of one flow: a frame that repeats the last one's first
//! bytes, from the same port in the same millisecond, asking for no offload, goes where
//! the last one went without the decision being worked out again. The tests hold it to
//! the decision the long way would make whenever anything it relies on changes: the
//! frame's metadata, its addresses, the destination going down, the ports being replaced,
//! the clock. No root needed.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex};

use pvnet::switch::forward::Forwarder;
use pvnet::switch::port::PortState;
use pvnet_core::csum;
use pvnet_core::frame::Frame;
use pvnet_core::offload::features::Features;
use pvnet_core::offload::gro::Coalescer;
use pvnet_core::switch::mac_table::MacTable;
use pvnet_core::vnet::{flags, validate_received, Endian, HdrLen, VnetHdr};
use pvnet_core::wire::{parse, Start};
use pvnet_linux::port::{Port, RecvBufs, SendError};

type Sent = Arc<Mutex<Vec<(VnetHdr, Vec<u8>)>>>;

/// A port that keeps every frame it is sent (12-byte little-endian vnet headers).
struct Recorder {
    features: Features,
    sent: Sent,
    fd: File,
}

impl AsFd for Recorder {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Port for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn features(&self) -> Features {
        self.features
    }
    fn set_features(&mut self, f: Features) -> io::Result<()> {
        self.features = f;
        Ok(())
    }
    fn start(&self) -> Start {
        Start::Ethernet
    }
    fn vnet_hdr_len(&self) -> usize {
        12
    }
    fn recv_batch(&mut self, _: &mut RecvBufs) -> io::Result<usize> {
        Ok(0)
    }
    fn send(&mut self, hdr: &[u8], frame: &Frame<'_>) -> Result<(), SendError> {
        let h = VnetHdr::decode(hdr, HdrLen::V12, Endian::Little).expect("vnet header");
        let mut bytes = Vec::new();
        frame.copy_to(&mut bytes);
        self.sent.lock().expect("lock").push((h, bytes));
        Ok(())
    }
}

fn port(features: Features, vlan: Option<u16>) -> (PortState, Sent) {
    let sent = Sent::default();
    let q = Recorder {
        features,
        sent: sent.clone(),
        fd: File::open("/dev/null").expect("/dev/null"),
    };
    let p = PortState::new("p".into(), vec![Box::new(q)], vlan).expect("port");
    (p, sent)
}

/// Segment `i` of one TCP/IPv4 flow: `len` payload bytes, IP ID and sequence continuing,
/// correct checksums.
fn segment(i: u16, len: usize) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0xb, 0x02, 0, 0, 0, 0, 0xa, 0x08, 0x00];
    let ip_len = (20 + 20 + len) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&ip_len.to_be_bytes());
    f.extend_from_slice(&(100 + i).to_be_bytes());
    f.extend_from_slice(&[0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    let c = csum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let seq = 1_000 + u32::from(i) * len as u32;
    f.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 7, 0x50, 0x10, 0x10, 0, 0, 0, 0, 0]);
    f.extend((0..len).map(|k| (k * 7 + usize::from(i) * 13) as u8));
    let mut s = csum::pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], 6, (20 + len) as u32);
    s.add(&f[34..]);
    let c = s.checksum();
    f[50..52].copy_from_slice(&c.to_be_bytes());
    f
}

/// Forward `frames` gathered by GRO, once as the gathered pieces and once made linear,
/// to a destination with `features` (and VLAN `dst_vlan`, ingress in access VLAN
/// `src_vlan`); both must send the same. Returns what was sent.
fn forward_both_ways(
    frames: &[Vec<u8>],
    features: Features,
    src_vlan: Option<u16>,
) -> Vec<(VnetHdr, Vec<u8>)> {
    let mut results = Vec::new();
    for gathered in [true, false] {
        let (ingress, _) = port(Features::ALL, src_vlan);
        let (egress, sent) = port(features, None);
        let mut ports = [Some(ingress), Some(egress)];
        let mac = Arc::new(Mutex::new(MacTable::new(64, 300_000, 1)));
        let mut fwd = Forwarder::new(mac, None);
        let mut gro = Coalescer::default();
        let mut items = 0;
        gro.coalesce_batch(frames, Start::Ethernet, &mut |g| {
            items += 1;
            assert!(g.is_super(), "one super-frame");
            let mut linear = Vec::new();
            g.frame.copy_to(&mut linear);
            // The super-frame validated as a port would hand it over, with its header.
            let layers = parse(&linear, Start::Ethernet).expect("parses");
            let hdr = VnetHdr::from_meta(&g.frame.meta, &layers).to_array(Endian::Little);
            let v = validate_received(&hdr, &linear, Start::Ethernet).expect("valid");
            let frame = if gathered {
                g.frame
            } else {
                Frame::linear(&linear, g.frame.meta)
            };
            fwd.forward(&mut ports, 0, frame, &v);
        });
        assert_eq!(items, 1);
        let sent = sent.lock().expect("lock").clone();
        results.push(sent);
    }
    assert_eq!(
        results[0], results[1],
        "gathered and linear frames sent differently"
    );
    results.swap_remove(0)
}

fn flow() -> Vec<Vec<u8>> {
    (0..8).map(|i| segment(i, 1000)).collect()
}

#[test]
fn gathered_super_frame_to_a_port_that_takes_it() {
    let frames = flow();
    let sent = forward_both_ways(&frames, Features::ALL, None);
    assert_eq!(sent.len(), 1);
    let (h, f) = &sent[0];
    assert_eq!(
        (h.gso_type, h.gso_size, h.csum_start, h.csum_offset),
        (1, 1000, 34, 16)
    );
    assert_eq!(f.len(), 54 + 8 * 1000);
    // The payloads in order, behind the first segment's headers.
    let payload: Vec<u8> = frames.iter().flat_map(|s| s[54..].to_vec()).collect();
    assert_eq!(&f[54..], &payload[..]);
}

#[test]
fn gathered_super_frame_to_a_port_without_offloads_is_segmented_back() {
    let frames = flow();
    let sent = forward_both_ways(&frames, Features::NONE, None);
    let got: Vec<&Vec<u8>> = sent.iter().map(|(_, f)| f).collect();
    let want: Vec<&Vec<u8>> = frames.iter().collect();
    assert_eq!(got, want, "the segments are the frames that were coalesced");
    assert!(sent.iter().all(|(h, _)| h.gso_type == 0 && h.flags == 0));
}

#[test]
fn gathered_super_frame_from_an_access_port_is_tagged_for_a_trunk() {
    let frames = flow();
    for (features, segments) in [(Features::ALL, 1), (Features::NONE, 8)] {
        let sent = forward_both_ways(&frames, features, Some(10));
        assert_eq!(sent.len(), segments);
        for (h, f) in &sent {
            assert_eq!(&f[12..16], &[0x81, 0x00, 0, 10], "802.1Q tag, VLAN 10");
            let l = parse(f, Start::Ethernet).expect("tagged frame parses");
            assert_eq!((l.vlans, l.l3_offset), (1, 18));
            if segments == 1 {
                assert_eq!(h.csum_start, 38, "csum_start moved by the tag");
            }
        }
        if segments == 8 {
            for (i, (_, f)) in sent.iter().enumerate() {
                let mut untagged = f[..12].to_vec();
                untagged.extend_from_slice(&f[16..]);
                assert_eq!(untagged, frames[i], "segment {i}");
            }
        }
    }
}

const A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa];
const B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb];
const C: [u8; 6] = [0x02, 0, 0, 0, 0, 0xc];

/// A TCP/IPv4 frame from `src` to `dst` with 20 payload bytes (byte `i` among them) and
/// its checksum field holding the pseudo-header sum, as a sender that asks for a partial
/// checksum leaves it.
fn tcp_frame(dst: [u8; 6], src: [u8; 6], i: u8) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 60, 0, 1, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    let c = csum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 0]);
    f.extend_from_slice(&[0x50, 0x18, 0x10, 0, 0, 0, 0, 0]);
    f.extend((0..20u8).map(|k| k.wrapping_mul(7) ^ i));
    let pseudo = csum::pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], 6, 40);
    f[50..52].copy_from_slice(&pseudo.fold().to_be_bytes());
    f
}

/// The vnet header of a frame that asks for nothing.
fn plain() -> [u8; 12] {
    VnetHdr::default().to_array(Endian::Little)[..12]
        .try_into()
        .expect("12 bytes")
}

/// The vnet header of a TCP/IPv4 frame with a partial checksum.
fn partial() -> [u8; 12] {
    let h = VnetHdr {
        flags: flags::NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 16,
        ..VnetHdr::default()
    };
    h.to_array(Endian::Little)[..12]
        .try_into()
        .expect("12 bytes")
}

fn forward(
    fwd: &mut Forwarder,
    ports: &mut [Option<PortState>],
    from: usize,
    hdr: &[u8],
    f: &[u8],
) {
    let v = validate_received(hdr, f, Start::Ethernet).expect("valid frame");
    fwd.forward(ports, from, Frame::linear(f, *v.meta()), &v);
}

fn taken(sent: &Sent) -> Vec<(VnetHdr, Vec<u8>)> {
    std::mem::take(&mut *sent.lock().expect("lock"))
}

/// Ports 0 (where the flow comes from), 1 (where B was learned: no checksum offload) and
/// 2 (where C was learned), and a forwarder that has learned them.
fn switch() -> (Forwarder, Vec<Option<PortState>>, [Sent; 3]) {
    let (p0, s0) = port(Features::ALL, None);
    let (p1, s1) = port(Features::NONE, None);
    let (p2, s2) = port(Features::ALL, None);
    let mut ports = vec![Some(p0), Some(p1), Some(p2)];
    let mac = Arc::new(Mutex::new(MacTable::new(64, 300_000, 1)));
    let mut fwd = Forwarder::new(mac, None);
    fwd.now_ms = 5;
    forward(&mut fwd, &mut ports, 1, &plain(), &tcp_frame(A, B, 0));
    forward(&mut fwd, &mut ports, 2, &plain(), &tcp_frame(A, C, 0));
    let sent = [s0, s1, s2];
    for s in &sent {
        taken(s);
    }
    (fwd, ports, sent)
}

#[test]
fn a_flow_goes_where_its_first_frame_went_and_is_counted() {
    let (mut fwd, mut ports, [s0, s1, s2]) = switch();
    let before = ports[1].as_ref().expect("port 1").counters;
    let frames: Vec<Vec<u8>> = (0..5).map(|i| tcp_frame(B, A, i)).collect();
    for f in &frames {
        forward(&mut fwd, &mut ports, 0, &plain(), f);
    }
    let got = taken(&s1);
    assert_eq!(got.len(), 5, "every frame of the flow reaches B's port");
    for ((h, bytes), f) in got.iter().zip(&frames) {
        assert_eq!(bytes, f, "sent as it came, in order");
        assert_eq!(
            *h,
            VnetHdr::default(),
            "with a header that asks for nothing"
        );
    }
    assert!(taken(&s0).is_empty() && taken(&s2).is_empty());
    let c = &ports[1].as_ref().expect("port 1").counters;
    assert_eq!(c.tx_packets - before.tx_packets, 5);
    assert_eq!(c.tx_bytes - before.tx_bytes, 5 * frames[0].len() as u64);
    // Another flow from the same port, in the same millisecond, goes its own way.
    forward(&mut fwd, &mut ports, 0, &plain(), &tcp_frame(C, A, 9));
    assert_eq!(taken(&s2).len(), 1, "C's frame reaches C's port");
    assert!(taken(&s1).is_empty(), "and not B's");
}

#[test]
fn a_frame_of_the_flow_that_asks_for_offload_gets_it() {
    let (mut fwd, mut ports, [_, s1, _]) = switch();
    forward(&mut fwd, &mut ports, 0, &plain(), &tcp_frame(B, A, 0));
    // Same first bytes, same millisecond, but a partial checksum: B's port cannot finish
    // it, so the switch must.
    let f = tcp_frame(B, A, 1);
    forward(&mut fwd, &mut ports, 0, &partial(), &f);
    let got = taken(&s1);
    assert_eq!(got.len(), 2);
    let (h, done) = &got[1];
    assert_eq!(
        h.flags & flags::NEEDS_CSUM,
        0,
        "sent without a partial checksum"
    );
    assert_ne!(done[50..52], f[50..52], "the checksum was completed");
    let mut s = csum::pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], 6, 40);
    s.add(&done[34..]);
    assert_eq!(s.fold(), 0xffff, "and is right");
    let c = &ports[1].as_ref().expect("port 1").counters;
    assert_eq!(c.csum_completed, 1);
}

#[test]
fn a_destination_taken_down_gets_nothing_more() {
    let (mut fwd, mut ports, [_, s1, s2]) = switch();
    forward(&mut fwd, &mut ports, 0, &plain(), &tcp_frame(B, A, 0));
    assert_eq!(taken(&s1).len(), 1);
    // Another thread may take it down between two frames of a batch.
    assert!(ports[1].as_ref().expect("port 1").set_down());
    forward(&mut fwd, &mut ports, 0, &plain(), &tcp_frame(B, A, 1));
    assert!(taken(&s1).is_empty(), "a port that is down is sent nothing");
    assert!(taken(&s2).is_empty(), "and its frames go nowhere else");
}

#[test]
fn replaced_ports_are_asked_again() {
    let (mut fwd, mut ports, [_, s1, _]) = switch();
    forward(&mut fwd, &mut ports, 0, &plain(), &tcp_frame(B, A, 0));
    assert_eq!(taken(&s1).len(), 1);
    // Port 1 is replaced, between two batches, by a port in access VLAN 10, which the
    // flow (untagged, VLAN 0) does not reach.
    let (p1, s1_new) = port(Features::ALL, Some(10));
    ports[1] = Some(p1);
    fwd.ports_changed();
    forward(&mut fwd, &mut ports, 0, &plain(), &tcp_frame(B, A, 1));
    assert!(
        taken(&s1_new).is_empty(),
        "the new port is not in the flow's VLAN"
    );
    assert!(taken(&s1).is_empty());
}

#[test]
fn the_next_millisecond_asks_the_table_again() {
    let (mut fwd, mut ports, [_, s1, s2]) = switch();
    forward(&mut fwd, &mut ports, 0, &plain(), &tcp_frame(B, A, 0));
    assert_eq!(taken(&s1).len(), 1);
    // Another switch thread learns that B moved to port 2; this one sees it from the
    // next millisecond on (as it sees any change of the table: a lookup per flow and
    // millisecond).
    let now = fwd.now_ms;
    fwd.mac.lock().expect("lock").learn(&B, 0, 2, now);
    forward(&mut fwd, &mut ports, 0, &plain(), &tcp_frame(B, A, 1));
    assert_eq!(taken(&s1).len(), 1, "the same millisecond: where it went");
    fwd.now_ms += 1;
    forward(&mut fwd, &mut ports, 0, &plain(), &tcp_frame(B, A, 2));
    assert_eq!(taken(&s2).len(), 1, "the next: where the table says now");
    assert!(taken(&s1).is_empty());
}
