//! A tun-style receive loop that coalesces with GRO and hands super-frames to a writev.
//!
//! This is what a VPN written against a tun device with `IFF_VNET_HDR` (tun-rs,
//! wireguard-go's TUN offload) does on its way in: it decrypts a batch of wire-sized IP
//! packets, and instead of writing them to the tun one by one it coalesces each flow's
//! segments into a super-frame and writes that once, with a virtio_net_hdr saying
//! "TSO, gso_size N, partial checksum". The kernel then takes a 64 KiB packet per write.
//!
//! In gather mode the coalescer copies no payload: a super-frame comes out as its
//! rewritten headers plus the payloads where they lie in the batch, so the writev below
//! gathers them straight from the receive buffers. Here the tun is a `Vec<u8>` (anything
//! `std::io::Write`); with a real tun it is the device's file.
//!
//! Run it with `cargo run -p pvnet-core --example tun_gro_writev`.

use std::io::{IoSlice, Write};

use pvnet_core::csum;
use pvnet_core::offload::gro::{Coalescer, GroConfig};
use pvnet_core::vnet::{validate_received, Endian, HdrLen, VnetHdr};
use pvnet_core::wire::Start;

/// Segment `i` of TCP flow `flow`: an IPv4 packet (a tun carries no Ethernet header) with
/// `len` payload bytes and correct checksums, as a tunnel decrypts them.
fn segment(flow: u8, i: u32, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40 + len);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&((40 + len) as u16).to_be_bytes());
    p.extend_from_slice(&(i as u16).to_be_bytes());
    p.extend_from_slice(&[0x40, 0, 64, 6, 0, 0, 10, 9, 0, 1, 10, 9, 0, 2]);
    let c = csum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&[0xc0, flow, 0x01, 0xbb]);
    p.extend_from_slice(&(1 + i * len as u32).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0x50, 0x10, 0x01, 0xf6, 0, 0, 0, 0]);
    p.extend((0..len).map(|k| (k as u8).wrapping_mul(flow)));
    let mut s = csum::pseudo_header_v4([10, 9, 0, 1], [10, 9, 0, 2], 6, (20 + len) as u32);
    s.add(&p[20..]);
    let c = s.checksum();
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

fn main() -> std::io::Result<()> {
    // One receive batch: two interleaved flows of 1400-byte segments, as they came out of
    // the tunnel. The buffers stay where they are; GRO borrows them.
    let batch: Vec<Vec<u8>> = (0..32)
        .map(|k| segment(1 + (k % 2) as u8, k / 2, 1400))
        .collect();

    // One coalescer per receive queue, reused for every batch.
    let mut gro = Coalescer::new(GroConfig::default());
    let mut tun = Vec::new(); // stands in for the tun device's fd
    let (mut writes, mut packets) = (0, 0);
    let mut failed = None;
    gro.coalesce_batch(&batch[..], Start::Ip, &mut |item| {
        packets += usize::from(item.segments);
        // The layers of the frame this item began with tell the header where the TCP
        // header ends (the virtio hdr_len); a super-frame keeps its first segment's
        // headers. A real loop validates every packet once on arrival and keeps that.
        let first = item
            .batch_index()
            .and_then(|i| validate_received(&[], &batch[i], Start::Ip).ok())
            .and_then(|first| item.validated(&first));
        let Some(v) = first else {
            failed = Some("a coalesced frame that does not validate");
            return;
        };
        let hdr = VnetHdr::from_meta(&item.frame.meta, v.layers()).to_array(Endian::Little);
        let mut iov = [IoSlice::new(&[]); 64];
        iov[0] = IoSlice::new(&hdr[..HdrLen::V12.size()]);
        let n = match item.frame.fill_iovecs(&mut iov[1..]) {
            Ok(n) => n,
            Err(e) => {
                // More pieces than one writev takes: copy into one buffer instead.
                eprintln!("{e}");
                failed = Some("too many pieces");
                return;
            }
        };
        // One write per super-frame, gathered from the receive buffers. A tun takes a
        // packet per write, whole or not at all.
        let len: usize = iov[..1 + n].iter().map(|s| s.len()).sum();
        match tun.write_vectored(&iov[..1 + n]) {
            Ok(written) if written == len => writes += 1,
            Ok(_) => failed = Some("short write"),
            Err(_) => failed = Some("write failed"),
        }
    });
    if let Some(why) = failed {
        return Err(std::io::Error::other(why));
    }
    let stats = gro.stats();
    println!(
        "{} packets in, {writes} writes to the tun ({} super-frames), {} bytes written",
        packets,
        stats.super_frames,
        tun.len()
    );
    assert_eq!(packets, batch.len());
    assert_eq!(writes, 2, "one super-frame per flow");
    tun.flush()
}
