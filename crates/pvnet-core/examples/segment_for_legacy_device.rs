//! Segmenting a virtio-net frame for a device without TSO.
//!
//! A guest (or a tap with `IFF_VNET_HDR`) hands over a 64 KiB TCP super-frame: a
//! virtio_net_hdr asking for TSO with gso_size 1448, and a partial checksum (only the
//! pseudo-header sum is in the TCP checksum field). The destination is a device with no
//! offloads at all. This is what the host does at the last moment:
//!
//! 1. validate the header against the frame with the kernel's rules (`vnet::validate`);
//! 2. ask the transmit plan what this destination needs (`offload::xmit::xmit_action`);
//! 3. segment zero-copy (`offload::gso::Segmenter`): every segment is a small header block
//!    plus a slice of the super-frame's payload, ready for one `writev`.
//!
//! Run it with `cargo run -p pvnet-core --example segment_for_legacy_device`.

use std::io::IoSlice;

use pvnet_core::csum;
use pvnet_core::offload::checksum::{verify_frame, Verdict};
use pvnet_core::offload::features::Features;
use pvnet_core::offload::gso::{GsoOptions, SegmentBuf, Segmenter};
use pvnet_core::offload::xmit::xmit_action;
use pvnet_core::vnet::{self, Endian, HdrLen, VnetHdr};
use pvnet_core::wire::Start;

/// A TCP/IPv4 super-frame of `payload` bytes behind Ethernet, its TCP checksum field
/// holding the pseudo-header sum, as a guest with tx checksum offload writes it.
fn super_frame(payload: usize) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    let ip_len = (20 + 20 + payload) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&ip_len.to_be_bytes());
    f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    let c = csum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    // Ports 40000 -> 5201, seq 1, ack 1, ACK|PSH, window 502.
    f.extend_from_slice(&[
        0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0x01, 0xf6,
    ]);
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend((0..payload).map(|i| (i % 251) as u8));
    let pseudo = csum::pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], 6, (20 + payload) as u32);
    f[50..52].copy_from_slice(&pseudo.fold().to_be_bytes());
    f
}

fn main() {
    let frame = super_frame(64_000);
    // What the guest put in front of it: NEEDS_CSUM at the TCP header, TSO4 at 1448.
    let hdr = VnetHdr {
        flags: vnet::flags::NEEDS_CSUM,
        gso_type: vnet::gso::TCPV4,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
        tunnel: None,
    };
    let wire = hdr.to_array(Endian::Little);
    let hdr = VnetHdr::decode(&wire, HdrLen::V12, Endian::Little).expect("12 bytes");

    // 1. Validate once: from here on the layers and the GSO request are trusted.
    let v = match vnet::validate(&hdr, &frame, Start::Ethernet) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("the kernel would refuse this frame: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "validated: {:?}, {} bytes, TCP payload at {}",
        v.meta().gso,
        frame.len(),
        v.layers().payload_offset
    );

    // 2. The destination has no offloads: no TSO, no checksumming, no scatter-gather.
    let plan = xmit_action(&v, true, Features::NONE);
    let mode = plan.segment.expect("a device without TSO gets segments");
    println!("plan: {plan:?}");

    // 3. Segment. The buffer holds the headers of up to 64 segments and is reused from
    // one super-frame to the next: after warm-up, nothing is allocated.
    let opts = GsoOptions {
        csum: mode,
        ..GsoOptions::default()
    };
    let mut seg = Segmenter::from_linear(&frame, &v, opts).expect("valid super-frame");
    let mut buf = SegmentBuf::with_capacity(64);
    let (mut segments, mut bytes, mut good) = (0, 0, 0);
    let mut copy = Vec::new();
    while !seg.is_done() {
        let batch = seg.next_batch(&mut buf);
        // On the stack: its slices borrow this batch's headers.
        let mut iov = [IoSlice::new(&[]); 8];
        for s in batch.iter() {
            // What a driver hands to writev: the header block, then the payload slice.
            let n = s.fill_iovecs(&mut iov).expect("a segment is two slices");
            bytes += iov[..n].iter().map(|s| s.len()).sum::<usize>();
            segments += 1;
            // Check the segment as the receiver would.
            s.copy_to(&mut copy);
            let verdict = verify_frame(&copy, Start::Ethernet);
            if verdict.ip == Verdict::Good && verdict.l4 == Verdict::Good {
                good += 1;
            }
        }
    }
    println!(
        "{segments} segments, {bytes} bytes on the wire, {good} with good IPv4 and TCP \
         checksums; payload copied: 0 bytes"
    );
    assert_eq!(good, segments);
}
