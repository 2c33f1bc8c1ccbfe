//! vhost-user ports in the switch, driven by in-process fake guests (rust-vmm's frontend,
//! guest memory in a memfd): a guest's TSO super-frame with a partial checksum reaches an
//! offload-capable tap whole and an `offload=none` tap segmented, both kernels verify
//! the checksums (their RSTs come back to the guest); a TSO super-frame from a namespace
//! reaches a guest that acked GUEST_TSO4 whole through merged buffers, and one that did
//! not as segments with complete checksums; what a guest does wrong is counted by cause
//! where `pvnet ctl stats` and the metrics show it.

mod switch_util;

use std::time::{Duration, Instant};

use pvnet::switch::lab::{Lab, LabOptions};
use pvnet_core::csum;
use pvnet_core::frame::{Frame, OffloadMeta};
use pvnet_core::offload::checksum::{verify_frame, Verdict};
use pvnet_core::offload::features::{virtio_net, Features};
use pvnet_core::wire::Start;
use pvnet_linux::netns::{in_netns, Netns};
use pvnet_linux::packet_socket::{PacketOptions, PacketSocket};
use pvnet_linux::portspec::PortSpec;
use pvnet_linux::vhost_user::guest::{Desc, FakeGuest, MEM_SIZE};

const MSS: u16 = 1448;

fn sock(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("pvnet-swvu-{}-{tag}.sock", std::process::id()))
}

fn mac_of(ns: &Netns, dev: &str) -> [u8; 6] {
    let out = ns
        .run(&["-o", "link", "show", "dev", dev])
        .expect("ip link");
    let s = out
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("link/ether in ip link output");
    let mut m = [0u8; 6];
    for (b, h) in m.iter_mut().zip(s.split(':')) {
        *b = u8::from_str_radix(h, 16).expect("hex");
    }
    m
}

/// Ethernet + IPv4 + TCP (ACK|PSH) with `payload`; the TCP checksum is partial (pseudo
/// header only) when `partial`, complete otherwise.
#[allow(clippy::too_many_arguments)]
fn tcp4(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
    partial: bool,
) -> Vec<u8> {
    let tcp_len = 20 + payload.len();
    let mut f = Vec::with_capacity(34 + tcp_len);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + tcp_len) as u16;
    let mut ip = [
        0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let c = csum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
    tcp[8..12].copy_from_slice(&2000u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // PSH|ACK
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    f.extend_from_slice(&tcp);
    f.extend_from_slice(payload);
    let pseudo = csum::pseudo_header_v4(src, dst, 6, tcp_len as u32);
    let c = if partial {
        // The folded pseudo-header sum, not inverted: what a driver leaves for the device.
        !pseudo.checksum()
    } else {
        let mut s = pseudo;
        s.add(&f[34..]);
        s.checksum()
    };
    f[50..52].copy_from_slice(&c.to_be_bytes());
    f
}

/// A v1 header for a TCPv4 super-frame with a partial checksum.
fn tso_hdr(hdr_len: u16) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = 1; // NEEDS_CSUM
    h[1] = 1; // TCPV4
    h[2..4].copy_from_slice(&hdr_len.to_le_bytes());
    h[4..6].copy_from_slice(&MSS.to_le_bytes());
    h[6..8].copy_from_slice(&34u16.to_le_bytes());
    h[8..10].copy_from_slice(&16u16.to_le_bytes());
    h
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn is_rst_from(f: &[u8], src: [u8; 4]) -> bool {
    f.len() >= 54
        && f[12..14] == [0x08, 0x00]
        && f[23] == 6
        && f[26..30] == src
        && f[47] & 0x04 != 0
}

fn counters(lab: &Lab, name: &str) -> pvnet_core::switch::counters::PortCounters {
    lab.stats()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, c)| c)
        .unwrap_or_else(|| panic!("no port {name} in the stats"))
}

fn add_vhost_port(lab: &Lab, spec: &str) -> String {
    let spec: PortSpec = spec.parse().expect("spec");
    lab.control
        .add_spec(&spec)
        .expect("add vhost-user port")
        .name
}

/// Wait until `f` holds (a second at most).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_guest_super_frame_reaches_taps_whole_or_segmented_and_verified() {
    switch_util::require_root();
    let lab = Lab::start(LabOptions {
        offload: [None, Some("none".into())],
        ..LabOptions::default()
    })
    .expect("lab");
    let path = sock("tx");
    let name = add_vhost_port(&lab, &format!("vhost-user:{}", path.display()));
    let mut g = FakeGuest::connect(&path, u64::MAX, 1, 256).expect("guest");
    g.post_rx(200, 2048);
    let guest_mac = [0x02, 0, 0, 0, 0, 0x99];
    let a = lab.addr4;
    let guest_ip = [a[0].octets()[0], a[0].octets()[1], a[0].octets()[2], 3];
    for i in 0..2 {
        lab.ns[i]
            .run(&[
                "neigh",
                "replace",
                &std::net::Ipv4Addr::from(guest_ip).to_string(),
                "lladdr",
                "02:00:00:00:00:99",
                "dev",
                &lab.taps[i],
                "nud",
                "permanent",
            ])
            .expect("neigh");
    }
    let data = payload(64_000, 7);
    let segs = data.len().div_ceil(usize::from(MSS)) as u64;
    for (side, addr) in a.iter().enumerate() {
        let tap_mac = mac_of(&lab.ns[side], &lab.taps[side]);
        let f = tcp4(
            tap_mac,
            guest_mac,
            guest_ip,
            addr.octets(),
            40000 + side as u16,
            9,
            &data,
            true,
        );
        let before = counters(&lab, &lab.taps[side]);
        // The switch takes the guest's transmit ring once its first kick arrived.
        g.send_frame(&tso_hdr(54), &f, 4096);
        eventually("the super-frame to cross", || {
            let c = counters(&lab, &lab.taps[side]);
            c.gso_tx > before.gso_tx || c.segments > before.segments
        });
        let c = counters(&lab, &lab.taps[side]);
        if side == 0 {
            assert_eq!(
                c.gso_tx,
                before.gso_tx + 1,
                "passed through as one super-frame"
            );
            assert_eq!(c.segments, before.segments, "not segmented");
        } else {
            assert_eq!(
                c.gso_segmented,
                before.gso_segmented + 1,
                "segmented for offload=none"
            );
            assert_eq!(c.segments, before.segments + segs);
        }
        // The namespace's TCP answers with RSTs (the port is closed) once it verified the
        // checksum: they come back to the guest through the switch.
        // Other frames (IPv6 neighbour discovery, …) may come first.
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut rst = false;
        while !rst && Instant::now() < deadline {
            rst = g
                .recv_frames(1, Duration::from_millis(200))
                .iter()
                .any(|(_, f)| is_rst_from(f, addr.octets()));
        }
        assert!(rst, "side {side}: a RST came back to the guest");
        let (tcp_err, _) = lab.csum_errors(side).expect("nstat");
        assert_eq!(tcp_err, 0, "side {side}: TCP checksum errors");
    }
    let vc = counters(&lab, &name);
    assert_eq!(vc.rx_packets, 2, "two super-frames from the guest");
}

#[test]
fn namespace_super_frames_reach_guests_as_each_negotiated() {
    switch_util::require_root();
    let lab = Lab::start(LabOptions::default()).expect("lab");
    // Guest A takes everything; guest B acked neither GUEST_CSUM nor GUEST_TSO4.
    let (pa, pb) = (sock("rxa"), sock("rxb"));
    let na = add_vhost_port(&lab, &format!("vhost-user:{}", pa.display()));
    let nb = add_vhost_port(&lab, &format!("vhost-user:{}", pb.display()));
    let mut ga = FakeGuest::connect(&pa, u64::MAX, 1, 256).expect("guest a");
    let want_b = !(virtio_net::GUEST_CSUM
        | virtio_net::GUEST_TSO4
        | virtio_net::GUEST_TSO6
        | virtio_net::GUEST_ECN
        | virtio_net::GUEST_UFO
        | virtio_net::GUEST_USO4
        | virtio_net::GUEST_USO6);
    let mut gb = FakeGuest::connect(&pb, want_b, 1, 256).expect("guest b");
    ga.post_rx(200, 2048);
    gb.post_rx(200, 2048);
    let rec = lab.control.port(&nb).expect("record");
    eventually("guest b's features to apply", || {
        !rec.features().intersects(Features::CSUM | Features::TSO4)
    });
    let rec_a = lab.control.port(&na).expect("record");
    assert!(rec_a.features().contains(Features::TSO4 | Features::CSUM));

    // A packet socket with virtio headers on side 0's tap sends a TSO super-frame out of
    // it: the tap hands it to the switch whole.
    let tap = lab.taps[0].clone();
    let sender = in_netns(lab.ns[0].name(), move || {
        PacketSocket::open(
            &tap,
            &PacketOptions {
                features: Features::ALL,
                ..PacketOptions::default()
            },
        )
    })
    .expect("packet socket in side 0");
    let tap_mac = mac_of(&lab.ns[0], &lab.taps[0]);
    let src = lab.addr4[0].octets();
    let dst = [src[0], src[1], src[2], 50];
    let data = payload(60_000, 3);
    for (i, g_mac) in [[0x02, 0, 0, 0, 0, 0xa1], [0x02, 0, 0, 0, 0, 0xb1]]
        .iter()
        .enumerate()
    {
        // Teach the switch where the guest is: a frame from the guest first.
        let g = if i == 0 { &mut ga } else { &mut gb };
        let hello = tcp4([0xff; 6], *g_mac, dst, src, 1, 1, b"hello", false);
        g.send_frame(&[0u8; 12], &hello, 4096);
        let f = tcp4(
            *g_mac,
            tap_mac,
            src,
            dst,
            5000,
            6000 + i as u16,
            &data,
            true,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while got.is_empty() && Instant::now() < deadline {
            sender
                .send(
                    &tso_hdr(54)[..10],
                    &Frame::linear(&f, OffloadMeta::default()),
                )
                .expect("send super-frame into the tap");
            got = g
                .recv_frames(1, Duration::from_millis(300))
                .into_iter()
                .filter(|(_, fr)| fr.len() > 54 && fr[36..38] == (6000 + i as u16).to_be_bytes())
                .collect();
        }
        assert!(!got.is_empty(), "guest {i} received the flow");
        if i == 0 {
            // Whole, through merged buffers: the GSO header as sent, num_buffers counted.
            let (h, fr) = &got[0];
            assert_eq!(h[1], 1, "gso_type TCPV4");
            assert_eq!(u16::from_le_bytes([h[4], h[5]]), MSS, "gso_size");
            assert_eq!(h[0] & 1, 1, "NEEDS_CSUM");
            let nbufs = u16::from_le_bytes([h[10], h[11]]);
            assert_eq!(
                usize::from(nbufs),
                (12 + f.len()).div_ceil(2048),
                "num_buffers"
            );
            assert!(fr == &f, "every byte");
        } else {
            // Segments with complete checksums, no GSO, the bytes in order.
            let flow = |fr: &[u8]| fr.len() > 54 && fr[36..38] == 6001u16.to_be_bytes();
            let mut joined = Vec::new();
            let mut pending = got;
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                for (h, fr) in pending.iter().filter(|(_, fr)| flow(fr)) {
                    assert_eq!(h[1], 0, "no GSO for guest b");
                    assert_eq!(h[0] & 1, 0, "no partial checksum for guest b");
                    let v = verify_frame(fr, Start::Ethernet);
                    assert_eq!(
                        (v.ip, v.l4),
                        (Verdict::Good, Verdict::Good),
                        "segment checksums"
                    );
                    assert!(
                        fr.len() - 54 <= usize::from(MSS),
                        "segment of at most one MSS"
                    );
                    joined.extend_from_slice(&fr[54..]);
                }
                if joined.len() >= data.len() || Instant::now() > deadline {
                    break;
                }
                pending = gb.recv_frames(1, Duration::from_millis(200));
            }
            if joined.len() != data.len() {
                eprintln!("{:#?}", lab.stats());
            }
            assert_eq!(joined.len(), data.len(), "all segments arrived");
            assert!(joined == data, "every byte, in order");
        }
    }
}

#[test]
fn a_guest_chain_outside_its_memory_shows_in_stats_and_metrics() {
    switch_util::require_root();
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let path = sock("bad");
    let name = add_vhost_port(&lab, &format!("vhost-user:{}", path.display()));
    let mut g = FakeGuest::connect(&path, u64::MAX, 1, 256).expect("guest");
    g.offer(
        1,
        7,
        &[Desc {
            addr: MEM_SIZE - 10,
            len: 100,
            flags: 0,
            next: 0,
        }],
    );
    g.kick(1);
    assert_eq!(g.wait_used(1, 1, Duration::from_secs(5)), vec![(7, 0)]);
    let guest_errors = |cause: &str| {
        lab.control
            .switch_metrics()
            .guest_errors
            .iter()
            .find(|(p, _)| *p == name)
            .and_then(|(_, e)| e.iter().find(|(c, _)| *c == cause).map(|(_, n)| *n))
    };
    assert_eq!(guest_errors("outside_memory"), Some(1));
    assert_eq!(guest_errors("broken_chain"), Some(0));
    let line =
        format!("pvnet_port_guest_errors_total{{port=\"{name}\",cause=\"outside_memory\"}} 1");
    let text = lab.control.render_metrics();
    assert!(text.contains(&line), "{line} not in:\n{text}");
    // Counted as a frame dropped on receive too, once the thread published.
    eventually("the drop to be published", || {
        counters(&lab, &name).drops_of(pvnet_core::switch::counters::DropCause::Parse) == 1
    });
    // Taps have no guest: no series for them.
    assert!(!text.contains(&format!("guest_errors_total{{port=\"{}\"", lab.taps[0])));
}
