//! AF_PACKET ports against the real kernel, in a namespace of their own: a veth pair
//! va (10.77.0.1) — vb (10.77.0.2). Needs root; fails, not skips, without it.

use std::io::{self, IoSlice};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use pvnet_core::csum;
use pvnet_core::frame::{Frame, OffloadMeta};
use pvnet_linux::netns::Netns;
use pvnet_linux::packet_socket::{PacketOptions, PacketSocket, VNET_HDR_LEN};
use pvnet_linux::port::{Port, RecvBufs, SendError, DEFAULT_SLOT_LEN};
use pvnet_linux::testing::require_root;

const MAC_A: [u8; 6] = [0x06, 0x70, 0x76, 0, 0, 0xa];
const MAC_B: [u8; 6] = [0x06, 0x70, 0x76, 0, 0, 0xb];
const IP_A: [u8; 4] = [10, 77, 0, 1];
const IP_B: [u8; 4] = [10, 77, 0, 2];

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Two namespaces joined by a veth pair: `va` (10.77.0.1) in the first, `vb` (10.77.0.2)
/// in the second. Two namespaces, not one: with both addresses local, the kernel would
/// route between them over `lo` and drop frames from the wire with a local source.
fn veth_pair() -> (Netns, Netns) {
    let a = Netns::create_unique("pvps").expect("namespace");
    let b = Netns::create_unique("pvps").expect("namespace");
    for ns in [&a, &b] {
        ns.disable_ipv6().expect("sysctl");
        ns.run(&["link", "set", "dev", "lo", "up"]).expect("lo");
    }
    a.run(&[
        "link",
        "add",
        "va",
        "type",
        "veth",
        "peer",
        "name",
        "vb",
        "netns",
        b.name(),
    ])
    .expect("veth");
    for (ns, dev, mac, ip, peer_ip, peer_mac) in [
        (&a, "va", MAC_A, "10.77.0.1/24", "10.77.0.2", MAC_B),
        (&b, "vb", MAC_B, "10.77.0.2/24", "10.77.0.1", MAC_A),
    ] {
        ns.run(&["link", "set", "dev", dev, "address", &mac_str(mac)])
            .expect("mac");
        ns.run(&["addr", "add", ip, "dev", dev]).expect("addr");
        ns.run(&["link", "set", "dev", dev, "up"]).expect("up");
        // No ARP: both sides know each other.
        ns.run(&[
            "neigh",
            "add",
            peer_ip,
            "lladdr",
            &mac_str(peer_mac),
            "dev",
            dev,
            "nud",
            "permanent",
        ])
        .expect("neigh");
    }
    (a, b)
}

/// A 10-byte little-endian virtio_net_hdr.
fn vnet(flags: u8, gso_type: u8, hdr_len: u16, gso_size: u16, start: u16, offset: u16) -> [u8; 10] {
    let mut h = [0u8; 10];
    h[0] = flags;
    h[1] = gso_type;
    h[2..4].copy_from_slice(&hdr_len.to_le_bytes());
    h[4..6].copy_from_slice(&gso_size.to_le_bytes());
    h[6..8].copy_from_slice(&start.to_le_bytes());
    h[8..10].copy_from_slice(&offset.to_le_bytes());
    h
}

fn eth_ipv4(proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + l4.len()) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&IP_A);
    ip[16..20].copy_from_slice(&IP_B);
    let c = csum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(l4);
    f
}

/// Read frames from `sock` until `pred` accepts one (vnet header, frame) or 2 s pass.
fn wait_for(sock: &PacketSocket, mut pred: impl FnMut(&[u8], &[u8]) -> bool) -> bool {
    let mut bufs = RecvBufs::new(8, DEFAULT_SLOT_LEN);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let n = sock.recv_batch(&mut bufs).expect("recv_batch");
        for i in 0..n {
            if let Some((h, f)) = bufs.get(i) {
                if pred(h, f) {
                    return true;
                }
            }
        }
        if n == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    false
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn receives_a_udp_datagram_with_a_vnet_header() {
    require_root("this test (network namespaces and veth devices)");
    let (a, b) = veth_pair();
    let sock = b
        .enter_and(|| PacketSocket::open("vb", &PacketOptions::default()))
        .expect("enter")
        .expect("open");
    let udp = a
        .enter_and(|| UdpSocket::bind("10.77.0.1:0"))
        .expect("enter")
        .expect("bind");
    assert!(sock.ifindex() > 0);
    assert_eq!(Port::vnet_hdr_len(&sock), VNET_HDR_LEN);
    let payload = b"pvnet packet socket rx test";
    udp.send_to(payload, "10.77.0.2:5000").expect("send");
    let mut hdr_seen = Vec::new();
    let got = wait_for(&sock, |h, f| {
        if contains(f, payload) {
            hdr_seen = h.to_vec();
            true
        } else {
            false
        }
    });
    assert!(got, "datagram not seen on vb");
    assert_eq!(hdr_seen.len(), VNET_HDR_LEN);
    assert_eq!(hdr_seen[1], 0, "not GSO: {hdr_seen:02x?}");
    // A locally generated datagram over veth keeps its partial checksum (NEEDS_CSUM) or is
    // marked valid; either way the flags are within the known ones.
    assert_eq!(hdr_seen[0] & !0x03, 0, "flags {:#x}", hdr_seen[0]);
}

#[test]
fn sends_frames_with_vnet_headers_to_a_udp_socket() {
    require_root("this test (network namespaces and veth devices)");
    let (a, b) = veth_pair();
    let mut sock = a
        .enter_and(|| PacketSocket::open("va", &PacketOptions::default()))
        .expect("enter")
        .expect("open");
    let udp = b
        .enter_and(|| -> io::Result<_> {
            let udp = UdpSocket::bind("10.77.0.2:6000")?;
            udp.set_read_timeout(Some(Duration::from_secs(2)))?;
            Ok(udp)
        })
        .expect("enter")
        .expect("bind");

    // 1. Plain frame (no offload), UDP checksum 0 = none.
    let payload = b"hello through AF_PACKET";
    let mut l4 = Vec::new();
    l4.extend_from_slice(&40000u16.to_be_bytes());
    l4.extend_from_slice(&6000u16.to_be_bytes());
    l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    l4.extend_from_slice(&[0, 0]);
    l4.extend_from_slice(payload);
    let frame = eth_ipv4(17, &l4);
    let hdr = vnet(0, 0, 0, 0, 0, 0);
    // Gathered from two slices: headers and payload.
    let split = 14 + 20 + 8;
    Port::send(
        &mut sock,
        &hdr,
        &Frame::new(&frame[..split], &[&frame[split..]], OffloadMeta::default()),
    )
    .expect("send plain");
    let mut buf = [0u8; 256];
    let (n, from) = udp.recv_from(&mut buf).expect("plain datagram arrives");
    assert_eq!(&buf[..n], payload);
    assert_eq!(from.to_string(), "10.77.0.1:40000");

    // 2. Partial checksum (NEEDS_CSUM, csum_start 34, csum_offset 6) in a batch of two.
    let mut l4p = l4.clone();
    let len = l4p.len() as u32;
    let pseudo = csum::pseudo_header_v4(IP_A, IP_B, 17, len).fold();
    l4p[6..8].copy_from_slice(&pseudo.to_be_bytes());
    let frame_p = eth_ipv4(17, &l4p);
    let hdr_p = vnet(1, 0, 0, 0, 34, 6);
    let a = [IoSlice::new(&hdr_p), IoSlice::new(&frame_p)];
    let b = [IoSlice::new(&hdr), IoSlice::new(&frame)];
    let sent = sock.send_batch(&[&a, &b]).expect("send_batch");
    assert_eq!(sent, 2);
    for _ in 0..2 {
        let (n, _) = udp.recv_from(&mut buf).expect("batched datagram arrives");
        assert_eq!(&buf[..n], payload);
    }
}

fn tcp_superframe(payload_len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..payload_len).map(|i| i as u8).collect();
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&40001u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&7u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
    tcp[8..12].copy_from_slice(&1u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // ACK|PSH
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    let len = (20 + payload.len()) as u32;
    let pseudo = csum::pseudo_header_v4(IP_A, IP_B, 6, len).fold();
    tcp[16..18].copy_from_slice(&pseudo.to_be_bytes());
    tcp.extend_from_slice(&payload);
    eth_ipv4(6, &tcp)
}

#[test]
fn gso_superframe_is_accepted_and_mismatch_is_reported_as_gso_rejected() {
    require_root("this test (network namespaces and veth devices)");
    let (a, b) = veth_pair();
    let mut tx = a
        .enter_and(|| PacketSocket::open("va", &PacketOptions::default()))
        .expect("enter")
        .expect("open");
    let rx = b
        .enter_and(|| PacketSocket::open("vb", &PacketOptions::default()))
        .expect("enter")
        .expect("open");
    let frame = tcp_superframe(3000);
    // TCPV4, gso_size 1000, NEEDS_CSUM at the TCP checksum.
    let hdr = vnet(1, 1, 54, 1000, 34, 16);
    Port::send(
        &mut tx,
        &hdr,
        &Frame::linear(&frame, OffloadMeta::default()),
    )
    .expect("GSO frame accepted by packet_snd");
    // Whatever vb's side makes of it (one super-frame or segments), the payload arrives.
    let mut bytes = 0usize;
    let mut gso_seen = false;
    wait_for(&rx, |h, f| {
        if f.len() > 54 && f[23] == 6 && f[34..36] == 40001u16.to_be_bytes() {
            bytes += f.len() - 54;
            gso_seen |= h[1] != 0;
        }
        bytes >= 3000
    });
    assert_eq!(
        bytes, 3000,
        "TCP payload bytes seen on vb (gso header seen: {gso_seen})"
    );

    // TCPV6 on an IPv4 frame: the kernel refuses it with EINVAL → GsoRejected.
    let bad = vnet(1, 4, 54, 1000, 34, 16);
    match Port::send(
        &mut tx,
        &bad,
        &Frame::linear(&frame, OffloadMeta::default()),
    ) {
        Err(SendError::GsoRejected { gso_type: 4, .. }) => {}
        other => panic!("expected GsoRejected, got {other:?}"),
    }
    // The same frame without GSO but a bad csum_offset beyond the packet: Invalid.
    let bad_csum = vnet(1, 0, 0, 0, 34, 60000);
    match Port::send(
        &mut tx,
        &bad_csum,
        &Frame::linear(&frame, OffloadMeta::default()),
    ) {
        Err(SendError::Invalid(_)) => {}
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn missing_interface_is_an_error_naming_it() {
    require_root("this test (network namespaces and veth devices)");
    let ns = Netns::create_unique("pvps").expect("namespace");
    let err = ns
        .enter_and(|| PacketSocket::open("nope0", &PacketOptions::default()))
        .expect("enter")
        .expect_err("no such interface");
    assert!(err.to_string().contains("nope0"), "{err}");
}
