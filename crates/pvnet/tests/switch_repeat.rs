//! The forwarder's shortcut for the frames of one flow: a frame that repeats the last
//! one's first bytes, from the same port in the same millisecond, asking for no offload,
//! goes where the last one went without the decision being worked out again. These tests
//! hold it to the decision the long way would make whenever anything it relies on
//! changes: the frame's metadata, its addresses, the destination going down, the ports
//! being replaced, the clock. No root needed.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex};

use pvnet::switch::forward::Forwarder;
use pvnet::switch::port::PortState;
use pvnet_core::csum;
use pvnet_core::frame::Frame;
use pvnet_core::offload::features::Features;
use pvnet_core::switch::mac_table::MacTable;
use pvnet_core::vnet::{flags, validate_received, Endian, HdrLen, VnetHdr};
use pvnet_core::wire::Start;
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
