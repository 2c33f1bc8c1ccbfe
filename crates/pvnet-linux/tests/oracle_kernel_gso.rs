//! The kernel segmentation oracle: hand-built super-frames go in, the kernel's segments
//! come out and are checked by hand. Needs root; fails, not skips, without it.

use pvnet_linux::oracle::{KernelGso, OracleFrame, IN_OFFLOADS, VNET_HDR_LEN};
use pvnet_linux::tap::offload;
use pvnet_linux::testing::require_root;

const NEEDS_CSUM: u8 = 1;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_UDP_L4: u8 = 5;

const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
// Documentation addresses (RFC 5737); the frames never leave the oracle's namespace.
const SRC_IP: [u8; 4] = [192, 0, 2, 1];
const DST_IP: [u8; 4] = [192, 0, 2, 2];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VnetHdr {
    flags: u8,
    gso_type: u8,
    hdr_len: u16,
    gso_size: u16,
    csum_start: u16,
    csum_offset: u16,
    num_buffers: u16,
}

impl VnetHdr {
    fn encode(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b[10..12].copy_from_slice(&self.num_buffers.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> VnetHdr {
        assert_eq!(b.len(), VNET_HDR_LEN);
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
            num_buffers: u16_at(10),
        }
    }
}

/// One's-complement sum of `data` added to `acc` (32-bit accumulator, not folded).
fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn pseudo_v4(src: &[u8], dst: &[u8], proto: u8, l4_len: usize) -> u32 {
    let acc = sum(0, src);
    let acc = sum(acc, dst);
    acc + u32::from(proto) + l4_len as u32
}

fn ipv4_header(proto: u8, payload_len: usize, id: u16) -> [u8; 20] {
    let total = (20 + payload_len) as u16;
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6] = 0x40; // DF
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&SRC_IP);
    h[16..20].copy_from_slice(&DST_IP);
    let c = !fold(sum(0, &h));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

fn ethernet() -> Vec<u8> {
    let mut f = Vec::with_capacity(1600);
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

const SEQ: u32 = 0x0102_0304;

/// Ethernet + IPv4 + TCP (ACK|PSH) super-frame whose checksum field holds the
/// pseudo-header sum, as a partial-checksum sender leaves it.
fn tcp4_superframe(data: &[u8]) -> Vec<u8> {
    let mut f = ethernet();
    f.extend_from_slice(&ipv4_header(6, 20 + data.len(), 0x1234));
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&5001u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&SEQ.to_be_bytes());
    tcp[8..12].copy_from_slice(&0x0a0b_0c0du32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // ACK | PSH
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    let partial = fold(pseudo_v4(&SRC_IP, &DST_IP, 6, 20 + data.len()));
    tcp[16..18].copy_from_slice(&partial.to_be_bytes());
    f.extend_from_slice(&tcp);
    f.extend_from_slice(data);
    f
}

fn udp4_superframe(data: &[u8]) -> Vec<u8> {
    let mut f = ethernet();
    f.extend_from_slice(&ipv4_header(17, 8 + data.len(), 0x4321));
    let mut udp = [0u8; 8];
    udp[0..2].copy_from_slice(&40001u16.to_be_bytes());
    udp[2..4].copy_from_slice(&5002u16.to_be_bytes());
    udp[4..6].copy_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    let partial = fold(pseudo_v4(&SRC_IP, &DST_IP, 17, 8 + data.len()));
    udp[6..8].copy_from_slice(&partial.to_be_bytes());
    f.extend_from_slice(&udp);
    f.extend_from_slice(data);
    f
}

fn tso4_hdr() -> [u8; VNET_HDR_LEN] {
    VnetHdr {
        flags: NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    }
    .encode()
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Check the IPv4 header of an output frame; return the L4 bytes it covers.
fn check_ipv4(frame: &[u8], proto: u8) -> &[u8] {
    assert_eq!(be16(frame, 12), 0x0800);
    let ip = &frame[14..];
    assert_eq!(ip[0], 0x45);
    assert_eq!(ip[9], proto);
    assert_eq!(fold(sum(0, &ip[..20])), 0xffff, "IPv4 header checksum");
    let total = usize::from(be16(ip, 2));
    assert_eq!(
        total,
        ip.len(),
        "IPv4 total length covers the frame exactly"
    );
    &ip[20..total]
}

fn l4_sum_ok(l4: &[u8], proto: u8) -> bool {
    fold(sum(pseudo_v4(&SRC_IP, &DST_IP, proto, l4.len()), l4)) == 0xffff
}

/// Complete a partial checksum (pseudo-header sum in the field) in a copy of `l4`.
fn complete(l4: &[u8], offset: usize) -> Vec<u8> {
    let mut l4 = l4.to_vec();
    let c = !fold(sum(0, &l4));
    l4[offset..offset + 2].copy_from_slice(&c.to_be_bytes());
    l4
}

fn check_tcp_segments(frames: &[OracleFrame], data: &[u8], partial: bool) {
    let sizes: Vec<usize> = frames.iter().map(|(_, f)| f.len() - 54).collect();
    assert_eq!(sizes, vec![1448, 1448, 1104]);
    let mut joined = Vec::new();
    for (i, (hdr, frame)) in frames.iter().enumerate() {
        assert!(frame.len() <= 1514, "segment {i} is {} bytes", frame.len());
        assert_eq!(&frame[..6], &DST_MAC);
        assert_eq!(&frame[6..12], &SRC_MAC);
        let h = VnetHdr::decode(hdr);
        assert_eq!(h.gso_type, GSO_NONE, "segment {i}: {h:?}");
        let l4 = check_ipv4(frame, 6);
        assert_eq!(be32(l4, 4), SEQ.wrapping_add(1448 * i as u32), "seq of {i}");
        let last = i == frames.len() - 1;
        assert_eq!(l4[13] & 0x08 != 0, last, "PSH only on the last segment");
        if partial {
            assert_eq!(h.flags & NEEDS_CSUM, NEEDS_CSUM, "segment {i}: {h:?}");
            assert_eq!((h.csum_start, h.csum_offset), (34, 16), "{h:?}");
            assert!(!l4_sum_ok(l4, 6), "a partial checksum is not complete");
            assert!(l4_sum_ok(&complete(l4, 16), 6), "segment {i}");
        } else {
            assert_eq!(h.flags & NEEDS_CSUM, 0, "segment {i}: {h:?}");
            assert!(l4_sum_ok(l4, 6), "TCP checksum of segment {i}");
        }
        joined.extend_from_slice(&l4[20..]);
    }
    assert_eq!(joined, data, "payload reassembles");
}

#[test]
fn tso4_segmented_and_checksummed_for_plain_port() {
    require_root("the kernel GSO oracle (a namespace, a bridge and taps)");
    let mut k = KernelGso::new(0).expect("build oracle");
    let data = payload(4000);
    let mut out = Vec::new();
    k.segment(&tso4_hdr(), &tcp4_superframe(&data), &mut out)
        .expect("segment");
    assert_eq!(
        out.len(),
        3,
        "frames: {:?}",
        out.iter().map(|f| f.1.len()).collect::<Vec<_>>()
    );
    eprintln!(
        "out_offloads=0: vnet headers {:?}",
        out.iter()
            .map(|(h, _)| VnetHdr::decode(h))
            .collect::<Vec<_>>()
    );
    check_tcp_segments(&out, &data, false);
}

#[test]
fn tso4_segmented_with_partial_checksums_for_csum_port() {
    require_root("the kernel GSO oracle (a namespace, a bridge and taps)");
    let mut k = KernelGso::new(offload::CSUM).expect("build oracle");
    assert_eq!(k.out_offloads(), offload::CSUM);
    let data = payload(4000);
    let mut out = Vec::new();
    k.segment_expect(&tso4_hdr(), &tcp4_superframe(&data), 3, &mut out)
        .expect("segment");
    assert_eq!(out.len(), 3);
    check_tcp_segments(&out, &data, true);
}

#[test]
fn tso4_passed_through_to_tso_port() {
    require_root("the kernel GSO oracle (a namespace, a bridge and taps)");
    let mut k = KernelGso::new(IN_OFFLOADS).expect("build oracle");
    let data = payload(4000);
    let frame = tcp4_superframe(&data);
    let mut out = Vec::new();
    k.segment(&tso4_hdr(), &frame, &mut out).expect("segment");
    assert_eq!(out.len(), 1, "super-frame passes through unsegmented");
    let h = VnetHdr::decode(&out[0].0);
    eprintln!("pass-through header: {h:?}");
    assert_eq!(h.gso_type, GSO_TCPV4);
    assert_eq!(h.gso_size, 1448);
    assert_eq!(h.flags & NEEDS_CSUM, NEEDS_CSUM);
    assert_eq!(out[0].1, frame);
}

#[test]
fn uso4_split_into_udp_datagrams() {
    require_root("the kernel GSO oracle (a namespace, a bridge and taps)");
    let mut k = KernelGso::new(0).expect("build oracle");
    let data = payload(2500);
    let hdr = VnetHdr {
        flags: NEEDS_CSUM,
        gso_type: GSO_UDP_L4,
        hdr_len: 42,
        gso_size: 1000,
        csum_start: 34,
        csum_offset: 6,
        num_buffers: 0,
    };
    let mut out = Vec::new();
    k.segment(&hdr.encode(), &udp4_superframe(&data), &mut out)
        .expect("segment");
    let sizes: Vec<usize> = out.iter().map(|(_, f)| f.len() - 42).collect();
    assert_eq!(sizes, vec![1000, 1000, 500]);
    let mut joined = Vec::new();
    for (i, (h, frame)) in out.iter().enumerate() {
        let h = VnetHdr::decode(h);
        assert_eq!((h.flags & NEEDS_CSUM, h.gso_type), (0, GSO_NONE), "{h:?}");
        let udp = check_ipv4(frame, 17);
        assert_eq!(usize::from(be16(udp, 4)), udp.len(), "UDP length of {i}");
        assert_ne!(be16(udp, 6), 0, "checksum present");
        assert!(l4_sum_ok(udp, 17), "UDP checksum of datagram {i}");
        joined.extend_from_slice(&udp[8..]);
    }
    assert_eq!(joined, data);
}

#[test]
fn kernel_rejects_tso_with_bad_csum_offset() {
    require_root("the kernel GSO oracle (a namespace, a bridge and taps)");
    let mut k = KernelGso::new(0).expect("build oracle");
    let mut hdr = VnetHdr::decode(&tso4_hdr());
    hdr.csum_offset = 6;
    let mut out = Vec::new();
    let err = k
        .segment(&hdr.encode(), &tcp4_superframe(&payload(4000)), &mut out)
        .expect_err("TSO with csum_offset 6");
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
    assert!(out.is_empty());
}

#[test]
fn segment_expect_is_fast_for_many_frames() {
    require_root("the kernel GSO oracle (a namespace, a bridge and taps)");
    let mut k = KernelGso::new(0).expect("build oracle");
    let data = payload(4000);
    let frame = tcp4_superframe(&data);
    let hdr = tso4_hdr();
    let start = std::time::Instant::now();
    let mut out = Vec::new();
    for _ in 0..300 {
        out.clear();
        k.segment_expect(&hdr, &frame, 3, &mut out)
            .expect("segment");
        check_tcp_segments(&out, &data, false);
    }
    let took = start.elapsed();
    eprintln!("300 super-frames through the kernel in {took:?}");
    assert!(took < std::time::Duration::from_secs(20), "{took:?}");

    // Give the namespace time to be noisy (IPv6 DAD/MLD would show up within a second),
    // then check that nothing but our frames, and no extra segment, ever came out.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    out.clear();
    k.segment(&hdr, &frame, &mut out).expect("segment");
    assert_eq!(out.len(), 3);
    assert_eq!(k.foreign_frames(), 0, "foreign frames seen on the out tap");
}

const SRC_IP6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const DST_IP6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn pseudo_v6(l4_len: usize) -> u32 {
    sum(sum(0, &SRC_IP6), &DST_IP6) + 6 + l4_len as u32
}

#[test]
fn tso6_segmented_although_ipv6_is_disabled_in_the_namespace() {
    require_root("the kernel GSO oracle (a namespace, a bridge and taps)");
    let mut k = KernelGso::new(0).expect("build oracle");
    let data = payload(3000);
    let mut f = Vec::new();
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&((20 + data.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[6, 64]);
    f.extend_from_slice(&SRC_IP6);
    f.extend_from_slice(&DST_IP6);
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&5001u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&SEQ.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x10; // ACK
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    let partial = fold(pseudo_v6(20 + data.len()));
    tcp[16..18].copy_from_slice(&partial.to_be_bytes());
    f.extend_from_slice(&tcp);
    f.extend_from_slice(&data);
    let hdr = VnetHdr {
        flags: NEEDS_CSUM,
        gso_type: 4, // TCPV6
        hdr_len: 74,
        gso_size: 1400,
        csum_start: 54,
        csum_offset: 16,
        num_buffers: 0,
    };
    let mut out = Vec::new();
    k.segment_expect(&hdr.encode(), &f, 3, &mut out)
        .expect("segment");
    let mut joined = Vec::new();
    for (i, (_, frame)) in out.iter().enumerate() {
        let ip6 = &frame[14..];
        let plen = usize::from(be16(ip6, 4));
        assert_eq!(plen, ip6.len() - 40, "payload length of {i}");
        let l4 = &ip6[40..];
        assert_eq!(be32(l4, 4), SEQ.wrapping_add(1400 * i as u32));
        assert_eq!(
            fold(sum(pseudo_v6(l4.len()), l4)),
            0xffff,
            "TCP checksum of {i}"
        );
        joined.extend_from_slice(&l4[20..]);
    }
    assert_eq!(joined, data);
}
