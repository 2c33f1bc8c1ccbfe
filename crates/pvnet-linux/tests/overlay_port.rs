//! Overlay ports over loopback (127.0.0.1 and 127.0.0.2 stand for two hosts): frames
//! cross whole, a TCP super-frame leaves as one UDP GSO send and arrives as intact
//! segments, broadcasts reach every remote, and hostile datagrams are counted by cause.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use pvnet_core::frame::{CsumState, Frame, Gso, GsoKind, OffloadMeta};
use pvnet_core::offload::checksum::{verify_frame, Verdict};
use pvnet_core::overlay::{DecapCause, Encap, Vni};
use pvnet_core::wire::Start;
use pvnet_linux::overlay_port::{OverlayConfig, OverlayPort};
use pvnet_linux::port::{Port, RecvBufs, SendError, DEFAULT_SLOT_LEN};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// A port on `local` to `remotes`, VNI 42, underlay MTU 1500, UDP GSO and GRO on.
fn config(encap: Encap, local: &str, remotes: Vec<IpAddr>, dstport: u16) -> OverlayConfig {
    OverlayConfig {
        encap,
        local: ip(local),
        remotes,
        vni: Vni::new(42).expect("vni"),
        dstport,
        mtu: 1500,
        offload: true,
    }
}

/// Two ports, A on 127.0.0.1 and B on 127.0.0.2 (plus `extra` remotes on A), on a free
/// destination port.
fn pair(encap: Encap, extra: &[&str]) -> (OverlayPort, OverlayPort) {
    for attempt in 0..50u16 {
        let dstport = 20000 + (std::process::id() as u16 % 20000) + attempt * 7;
        let mut remotes = vec![ip("127.0.0.2")];
        remotes.extend(extra.iter().map(|s| ip(s)));
        let Ok(a) = OverlayPort::open("a", config(encap, "127.0.0.1", remotes, dstport)) else {
            continue;
        };
        let b_cfg = config(encap, "127.0.0.2", vec![ip("127.0.0.1")], dstport);
        let Ok(b) = OverlayPort::open("b", b_cfg) else {
            continue;
        };
        return (a, b);
    }
    panic!("no free UDP port pair");
}

/// Ethernet + IPv4 + TCP (20 bytes) + `payload` bytes of a counting pattern.
fn tcp4(dst_mac: [u8; 6], payload: usize) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 20];
    f[..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    let total = u16::try_from(40 + payload).expect("fits");
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[34..36].copy_from_slice(&1234u16.to_be_bytes());
    f[36..38].copy_from_slice(&80u16.to_be_bytes());
    f[46] = 0x50;
    f[47] = 0x18;
    f.extend((0..payload).map(|i| (i * 7 % 251) as u8));
    f
}

/// Receive on `p` until `want` frames came or a second passed.
fn recv_frames(p: &mut OverlayPort, want: usize) -> Vec<Vec<u8>> {
    let mut bufs = RecvBufs::new(16, DEFAULT_SLOT_LEN);
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(1);
    while out.len() < want && Instant::now() < deadline {
        let n = p.recv_batch(&mut bufs).expect("recv");
        if n == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        for i in 0..n {
            if let Some((_, f)) = bufs.get(i) {
                out.push(f.to_vec());
            }
        }
    }
    out
}

#[test]
fn plain_frames_cross_both_ways_and_teach_the_fdb() {
    for encap in [Encap::Vxlan, Encap::Geneve] {
        let (mut a, mut b) = pair(encap, &[]);
        let f = tcp4([0xff; 6], 100);
        a.send(&[], &Frame::linear(&f, OffloadMeta::default()))
            .expect("send");
        assert_eq!(recv_frames(&mut b, 1), vec![f.clone()], "{encap:?}");
        let mut back = tcp4([2, 0, 0, 0, 0, 1], 10);
        back[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        b.send(&[], &Frame::linear(&back, OffloadMeta::default()))
            .expect("send back");
        assert_eq!(recv_frames(&mut a, 1), vec![back], "{encap:?}");
        assert_eq!(
            b.stats()
                .tx_datagrams
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }
}

#[test]
fn a_tso_super_frame_is_one_udp_gso_send_and_arrives_intact() {
    use std::sync::atomic::Ordering::Relaxed;
    // 20 000 bytes: 15 segments, one send. 64 000 bytes: 46 segments of 1472 bytes of UDP
    // payload, of which one IP packet carries 44: two sends.
    for (encap, payload, sends) in [
        (Encap::Vxlan, 20_000, 1),
        (Encap::Geneve, 20_000, 1),
        (Encap::Vxlan, 64_000, 2),
    ] {
        let (mut a, mut b) = pair(encap, &[]);
        let f = tcp4([2, 0, 0, 0, 0, 2], payload);
        let meta = OffloadMeta {
            csum: CsumState::Partial {
                start: 34,
                offset: 16,
            },
            gso: Some(Gso::plain(GsoKind::Tcpv4, 1420, false)),
        };
        a.send(&[], &Frame::linear(&f, meta)).expect("send");
        let stats = a.stats();
        assert_eq!(
            stats.tx_gso_sends.load(Relaxed),
            sends,
            "{encap:?} {payload}"
        );
        // 1420 + 54 + 36 > 1500: the MSS was cut to 1464 - 54 = 1410.
        let segs = payload.div_ceil(1410);
        assert_eq!(stats.tx_datagrams.load(Relaxed), segs as u64);
        let got = recv_frames(&mut b, segs);
        assert_eq!(got.len(), segs, "{encap:?} {payload}");
        let mut data = Vec::new();
        for s in &got {
            assert!(s.len() <= 1464, "segment of {} bytes", s.len());
            let c = verify_frame(s, Start::Ethernet);
            assert_eq!((c.ip, c.l4), (Verdict::Good, Verdict::Good), "{encap:?}");
            data.extend_from_slice(&s[54..]);
        }
        assert_eq!(data, f[54..].to_vec(), "{encap:?} {payload}");
        // Over loopback the GSO buffer reached B in one UDP GRO buffer, cut apart there.
        assert!(b.stats().rx_gro_buffers.load(Relaxed) >= 1);
    }
}

#[test]
fn a_full_udp_gro_buffer_fits_one_receive_batch() {
    // 44 segments of 1410 bytes: one UDP GSO send of 44 datagrams, which loopback hands
    // to B as one GRO buffer. A batch of the size the port asks for takes all of it, so
    // that the switch can coalesce the buffer into one super-frame.
    let (mut a, mut b) = pair(Encap::Vxlan, &[]);
    let segs = 44;
    let f = tcp4([2, 0, 0, 0, 0, 2], segs * 1410);
    let meta = OffloadMeta {
        csum: CsumState::Partial {
            start: 34,
            offset: 16,
        },
        gso: Some(Gso::plain(GsoKind::Tcpv4, 1410, false)),
    };
    a.send(&[], &Frame::linear(&f, meta)).expect("send");
    assert_eq!(
        a.stats()
            .tx_gso_sends
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let mut bufs = RecvBufs::new(b.rx_batch(), DEFAULT_SLOT_LEN);
    let deadline = Instant::now() + Duration::from_secs(1);
    let n = loop {
        let n = b.recv_batch(&mut bufs).expect("recv");
        if n > 0 || Instant::now() >= deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(n, segs, "datagrams in the first batch");
}

#[test]
fn broadcasts_reach_every_remote_unicast_only_its_own() {
    let (mut a, mut b) = pair(Encap::Vxlan, &["127.0.0.3"]);
    // A third host: a plain socket on 127.0.0.3 at the tunnel port.
    let c = UdpSocket::bind(SocketAddr::new(ip("127.0.0.3"), a.local_addr().port()))
        .expect("bind third host");
    c.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let bcast = tcp4([0xff; 6], 50);
    a.send(&[], &Frame::linear(&bcast, OffloadMeta::default()))
        .expect("send");
    assert_eq!(recv_frames(&mut b, 1), vec![bcast.clone()]);
    let mut buf = [0u8; 2048];
    let n = c.recv(&mut buf).expect("third host got the broadcast");
    assert_eq!(&buf[8..n], &bcast[..]);
    // B answers from MAC 2:0:0:0:0:2: A learns it behind 127.0.0.2 ...
    let mut reply = tcp4([2, 0, 0, 0, 0, 1], 5);
    reply[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    b.send(&[], &Frame::linear(&reply, OffloadMeta::default()))
        .expect("reply");
    assert_eq!(recv_frames(&mut a, 1).len(), 1);
    // ... and unicast to it goes to B only.
    let uni = tcp4([2, 0, 0, 0, 0, 2], 60);
    a.send(&[], &Frame::linear(&uni, OffloadMeta::default()))
        .expect("unicast");
    assert_eq!(recv_frames(&mut b, 1), vec![uni]);
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    assert!(c.recv(&mut buf).is_err(), "the third host got a unicast");
}

#[test]
fn hostile_datagrams_are_counted_by_cause() {
    let (a, mut b) = pair(Encap::Geneve, &[]);
    let to = b.local_addr();
    let from_a = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let stranger = UdpSocket::bind("127.0.0.3:0").expect("bind");
    let inner = tcp4([2, 0, 0, 0, 0, 2], 20);
    let good = |vni: u8, opts: &[u8], inner: &[u8]| {
        let mut d = vec![(opts.len() / 4) as u8, 0, 0x65, 0x58, 0, 0, vni, 0];
        d.extend_from_slice(opts);
        d.extend_from_slice(inner);
        d
    };
    let mut long = inner.clone();
    long[16..18].copy_from_slice(&1500u16.to_be_bytes());
    let cases: [(&UdpSocket, Vec<u8>, DecapCause); 5] = [
        (&from_a, vec![0, 0, 0x65], DecapCause::Truncated),
        (&from_a, good(43, &[], &inner), DecapCause::WrongVni),
        (
            &from_a,
            good(42, &[0, 1, 2, 5], &inner),
            DecapCause::OptionLength,
        ),
        (&from_a, good(42, &[], &long), DecapCause::InnerLength),
        (&stranger, good(42, &[], &inner), DecapCause::UnknownRemote),
    ];
    for (s, d, _) in &cases {
        s.send_to(d, to).expect("send");
    }
    // A good one after them arrives.
    from_a.send_to(&good(42, &[], &inner), to).expect("send");
    assert_eq!(recv_frames(&mut b, 1), vec![inner]);
    let st = b.stats();
    for (_, _, cause) in &cases {
        assert_eq!(st.decap_drops_of(*cause), 1, "{cause:?}");
    }
    drop(a);
}

#[test]
fn frames_that_cannot_fit_are_refused_not_cut() {
    let (mut a, mut b) = pair(Encap::Vxlan, &[]);
    // 54 bytes of headers + 1410 = 1464, what 1500 carries after 20 + 8 + 8.
    let f = tcp4([0xff; 6], 1411);
    let r = a.send(&[], &Frame::linear(&f, OffloadMeta::default()));
    assert!(matches!(r, Err(SendError::TooBig(_))), "{r:?}");
    assert_eq!(
        a.stats()
            .tx_too_big
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let f = tcp4([0xff; 6], 1410);
    a.send(&[], &Frame::linear(&f, OffloadMeta::default()))
        .expect("the largest frame that fits");
    assert_eq!(recv_frames(&mut b, 1), vec![f]);
}

/// A GENEVE datagram of VNI 42 around `inner`.
fn geneve42(inner: &[u8]) -> Vec<u8> {
    let mut d = vec![0, 0, 0x65, 0x58, 0, 0, 42, 0];
    d.extend_from_slice(inner);
    d
}

#[test]
fn queues_share_the_address_and_keep_each_flow_on_one() {
    let cfg = config(Encap::Geneve, "127.0.0.2", vec![ip("127.0.0.1")], 0);
    let mut queues = OverlayPort::open_queues("b", cfg, 2).expect("two queues");
    assert_eq!(queues.len(), 2);
    let to = queues[0].local_addr();
    assert_eq!(queues[1].local_addr(), to, "one address, two sockets");

    // 16 flows (source ports), 4 frames each, the flow's number in the payload.
    let senders: Vec<UdpSocket> = (0..16)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
        .collect();
    for round in 0..4u8 {
        for (flow, s) in senders.iter().enumerate() {
            let mut inner = tcp4([2, 0, 0, 0, 0, 2], 8);
            let n = inner.len();
            inner[n - 2] = flow as u8;
            inner[n - 1] = round;
            s.send_to(&geneve42(&inner), to).expect("send");
        }
    }
    let mut flows_of = [Vec::new(), Vec::new()];
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut bufs = RecvBufs::new(64, DEFAULT_SLOT_LEN);
    while flows_of.iter().map(Vec::len).sum::<usize>() < 64 && Instant::now() < deadline {
        for (q, port) in queues.iter_mut().enumerate() {
            let n = port.recv_batch(&mut bufs).expect("recv");
            for i in 0..n {
                let (_, f) = bufs.get(i).expect("frame");
                flows_of[q].push((f[f.len() - 2], f[f.len() - 1]));
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        flows_of.iter().map(Vec::len).sum::<usize>(),
        64,
        "every frame came"
    );
    for q in 0..2 {
        assert!(!flows_of[q].is_empty(), "queue {q} got flows: {flows_of:?}");
        for &(flow, round) in &flows_of[q] {
            assert!(
                !flows_of[1 - q].iter().any(|&(f, _)| f == flow),
                "flow {flow} on both queues"
            );
            // In order within the flow.
            let earlier = flows_of[q]
                .iter()
                .take_while(|&&(f, r)| (f, r) != (flow, round))
                .filter(|&&(f, _)| f == flow)
                .count();
            assert_eq!(earlier, usize::from(round), "flow {flow} in order");
        }
    }

    // Drops are the port's: counted once, whichever queue hands them over.
    let stranger = UdpSocket::bind("127.0.0.3:0").expect("bind");
    stranger
        .send_to(&geneve42(&tcp4([2, 0, 0, 0, 0, 2], 8)), to)
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut reported = 0;
    while reported == 0 && Instant::now() < deadline {
        for port in queues.iter_mut() {
            port.recv_batch(&mut bufs).expect("recv");
        }
        reported = queues.iter_mut().map(|p| p.take_rx_drops()).sum::<u64>();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(reported, 1);
    assert_eq!(queues.iter_mut().map(|p| p.take_rx_drops()).sum::<u64>(), 0);
    assert_eq!(
        queues[1].stats().decap_drops_of(DecapCause::UnknownRemote),
        1
    );
}

#[test]
fn queues_do_not_join_an_address_someone_else_serves() {
    let taken = UdpSocket::bind("127.0.0.2:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let cfg = config(Encap::Vxlan, "127.0.0.2", vec![ip("127.0.0.1")], port);
    let err = OverlayPort::open_queues("b", cfg, 2).expect_err("address in use");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
}

#[test]
fn queues_work_on_an_ipv6_underlay_too() {
    let cfg = config(Encap::Geneve, "::1", vec![ip("::1")], 0);
    let mut queues = OverlayPort::open_queues("b6", cfg, 2).expect("two queues on ::1");
    let to = queues[0].local_addr();
    assert_eq!(queues[1].local_addr(), to);
    let senders: Vec<UdpSocket> = (0..8)
        .map(|_| UdpSocket::bind("[::1]:0").expect("bind"))
        .collect();
    for (flow, s) in senders.iter().enumerate() {
        let mut inner = tcp4([2, 0, 0, 0, 0, 2], 8);
        let n = inner.len();
        inner[n - 1] = flow as u8;
        s.send_to(&geneve42(&inner), to).expect("send");
    }
    let mut got = Vec::new();
    let mut bufs = RecvBufs::new(16, DEFAULT_SLOT_LEN);
    let deadline = Instant::now() + Duration::from_secs(2);
    while got.len() < senders.len() && Instant::now() < deadline {
        for port in queues.iter_mut() {
            let n = port.recv_batch(&mut bufs).expect("recv");
            for i in 0..n {
                let (_, f) = bufs.get(i).expect("frame");
                got.push(f[f.len() - 1]);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    got.sort_unstable();
    assert_eq!(got, (0..senders.len() as u8).collect::<Vec<_>>());
}
