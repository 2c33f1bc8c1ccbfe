//! `CaptureSocket` against the real kernel: a tap in a namespace of its own, frames written
//! into it (coming in) and a datagram the namespace sends out of it (going out). Needs
//! root; fails, not skips, without it.

use std::net::UdpSocket;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pvnet_linux::netns::Netns;
use pvnet_linux::packet_socket::CaptureSocket;
use pvnet_linux::tap::{Tap, TapOptions};
use pvnet_linux::testing::require_root;

const TAP: &str = "pvcap0";
/// A made-up neighbour behind the tap, so that the namespace sends to it without ARP.
const PEER_MAC: [u8; 6] = [0x06, 0x70, 0x76, 0, 0, 0x2];

/// A broadcast Ethernet frame of `len` bytes with a local experimental EtherType.
fn frame(len: usize) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.resize(len, 0xab);
    f
}

#[test]
fn capture_sees_both_directions_cut_to_the_buffer_with_real_lengths() {
    require_root("this test (a network namespace and a tap)");
    let ns = Netns::create_unique("pvcap").expect("namespace");
    ns.disable_ipv6().expect("sysctl");
    let tap = ns
        .enter_and(|| {
            Tap::open(&TapOptions {
                name: TAP.into(),
                vnet_hdr: false,
                ..TapOptions::default()
            })
        })
        .expect("enter namespace")
        .expect("open tap");
    ns.run(&["addr", "add", "10.79.0.1/24", "dev", TAP])
        .expect("addr");
    ns.run(&["link", "set", "dev", TAP, "up"]).expect("up");
    ns.run(&[
        "neigh",
        "add",
        "10.79.0.2",
        "lladdr",
        "06:70:76:00:00:02",
        "dev",
        TAP,
        "nud",
        "permanent",
    ])
    .expect("neigh");

    let cap = ns
        .enter_and(|| CaptureSocket::open(TAP))
        .expect("enter namespace")
        .expect("open capture");
    assert_eq!(cap.ifname(), TAP);
    let mut buf = [0u8; 64];

    // Nothing has been sent yet: the wait ends empty-handed after the timeout.
    let quiet = cap
        .recv(&mut buf, Duration::from_millis(200))
        .expect("recv");
    assert_eq!(quiet, None, "a frame in a silent namespace");

    // In: a 300-byte frame written into the tap reaches the namespace's stack.
    let before = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let sent = frame(300);
    tap.write(&sent).expect("write into the tap");
    let got = cap
        .recv(&mut buf, Duration::from_secs(2))
        .expect("recv")
        .expect("the frame written into the tap");
    assert_eq!(got.orig_len, 300);
    assert_eq!(got.len, 64, "cut to the buffer");
    assert_eq!(&buf[..], &sent[..64]);
    assert!(!got.outgoing);
    assert_eq!(got.hatype, libc::ARPHRD_ETHER);
    let ts = got.timestamp.expect("a kernel timestamp");
    assert!(
        ts + Duration::from_millis(10) >= before && ts < before + Duration::from_secs(5),
        "timestamp {ts:?}, sent at {before:?}"
    );

    // Out: a datagram the namespace sends to the neighbour behind the tap.
    let sock = ns
        .enter_and(|| UdpSocket::bind("10.79.0.1:0"))
        .expect("enter namespace")
        .expect("bind");
    sock.send_to(&[0x5a; 20], "10.79.0.2:9").expect("send");
    let got = cap
        .recv(&mut buf, Duration::from_secs(2))
        .expect("recv")
        .expect("the datagram sent out of the tap");
    assert!(got.outgoing);
    // Ethernet 14 + IPv4 20 + UDP 8 + 20 bytes: shorter than the buffer, captured whole.
    assert_eq!((got.orig_len, got.len), (62, 62));
    assert_eq!(&buf[..6], &PEER_MAC[..]);
    assert_eq!(&buf[12..14], &[0x08, 0x00], "IPv4");
    drop(cap);
    drop(tap);
}
