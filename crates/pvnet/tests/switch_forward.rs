//! The forwarder on its own, between ports that record what they are sent: a super-frame
//! that GRO gathered (headers plus payload slices of the receive batch) leaves every kind
//! of destination exactly as the same super-frame built linearly would: passed with its
//! vnet header, segmented, or tagged for a trunk. No root needed.

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
use pvnet_core::vnet::{validate_received, Endian, HdrLen, VnetHdr};
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
