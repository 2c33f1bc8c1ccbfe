//! tap queues with 24-byte vnet headers and the UDP tunnel offloads (Linux 6.17+): probing
//! with fallback, and a tunnel super-frame sent by one [`TapPort`] through a bridge and
//! received whole by another that takes tunnel super-frames. Needs root; fails without.

use std::time::{Duration, Instant};

use pvnet_core::offload::features::Features;
use pvnet_core::offload::gso::fuzz::TunnelSpec;
use pvnet_core::vnet::{validate, validate_received, Endian, HdrLen};
use pvnet_core::wire::Start;
use pvnet_linux::netns::Netns;
use pvnet_linux::port::{Port, RecvBufs, TapPort};
use pvnet_linux::sys::errno;
use pvnet_linux::tap::{offload, Tap, TapOptions};
use pvnet_linux::testing::require_root;

const PLAIN: u32 = offload::CSUM
    | offload::TSO4
    | offload::TSO6
    | offload::TSO_ECN
    | offload::USO4
    | offload::USO6;

fn opts(name: &str, hdr: usize, offloads: u32) -> TapOptions {
    TapOptions {
        name: name.to_owned(),
        vnet_hdr_len: hdr,
        offloads,
        ..TapOptions::default()
    }
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let have = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    have >= (major, minor)
}

#[test]
fn tunnel_offload_probing() {
    require_root("this test (network namespaces and tap devices)");
    let ns = Netns::create_unique("pvt").expect("create namespace");
    let (long, short) = ns
        .enter_and(|| {
            Ok::<_, std::io::Error>((
                Tap::open(&opts("pvtl0", 24, 0))?,
                Tap::open(&opts("pvts0", 12, 0))?,
            ))
        })
        .expect("enter")
        .expect("open taps");
    assert_eq!(long.vnet_hdr_len(), 24);

    let got = long.probe_offloads(offload::ALL).expect("probe");
    eprintln!("24-byte tap: the kernel accepts offloads {got:#x}");
    if kernel_at_least(6, 17) {
        assert_eq!(got & offload::UDP_TUNNEL, offload::UDP_TUNNEL, "{got:#x}");
    }
    assert_eq!(got & PLAIN, PLAIN);
    let f = Features::from_tun_offload(got);
    assert_eq!(
        f.contains(Features::ALL_TNL),
        got & offload::UDP_TUNNEL != 0
    );

    // Tunnel offload without a plain GSO bit, or the checksummed bit alone: EINVAL, and
    // probing falls back to what the kernel takes.
    for bits in [
        offload::CSUM | offload::UDP_TUNNEL,
        offload::CSUM | offload::TSO4 | offload::UDP_TUNNEL_GSO_CSUM,
    ] {
        let err = long.set_offload(bits).expect_err("refused");
        assert_eq!(errno(&err), Some(libc::EINVAL), "{bits:#x}: {err}");
    }
    assert_eq!(
        long.probe_offloads(offload::CSUM | offload::UDP_TUNNEL)
            .expect("probe"),
        offload::CSUM
    );
    assert_eq!(
        long.probe_offloads(offload::CSUM | offload::TSO4 | offload::UDP_TUNNEL_GSO_CSUM)
            .expect("probe"),
        offload::CSUM | offload::TSO4
    );

    // A 12-byte queue never gets the tunnel bits: refused before the kernel is asked,
    // left out when probing.
    let err = short
        .set_offload(offload::CSUM | offload::TSO4 | offload::UDP_TUNNEL_GSO)
        .expect_err("a 12-byte header cannot carry tunnel offsets");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    assert_eq!(
        short.probe_offloads(offload::ALL).expect("probe") & offload::UDP_TUNNEL,
        0
    );

    // The port's feature mapping sets the tunnel bits on the long queue only.
    let mut port = TapPort::new(long).expect("port");
    port.set_features(Features::ALL).expect("set features");
    if kernel_at_least(6, 17) {
        assert!(
            port.features().contains(Features::ALL_TNL),
            "{}",
            port.features()
        );
    }
    let mut port = TapPort::new(short).expect("port");
    port.set_features(Features::ALL).expect("set features");
    assert!(!port.features().intersects(Features::ALL_TNL));
}

/// A queue opened with 24 bytes to probe goes back to 12 once it holds no tunnel bits
/// (what `pvnet switch` does when the kernel refuses them); with them it is refused.
#[test]
fn header_shrinks_only_without_tunnel_bits() {
    require_root("this test (network namespaces and tap devices)");
    let ns = Netns::create_unique("pvt").expect("create namespace");
    let mut tap = ns
        .enter_and(|| Tap::open(&opts("pvth0", 24, 0)))
        .expect("enter")
        .expect("open tap");
    let got = tap.probe_offloads(offload::ALL).expect("probe");
    if got & offload::UDP_TUNNEL != 0 {
        let err = tap.set_vnet_hdr_len(12).expect_err("tunnel bits still set");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
        assert_eq!(tap.vnet_hdr_len(), 24);
    }
    tap.set_offload(got & !offload::UDP_TUNNEL)
        .expect("plain offloads");
    tap.set_vnet_hdr_len(12).expect("back to 12 bytes");
    assert_eq!(tap.vnet_hdr_len(), 12);
    let err = tap.set_vnet_hdr_len(16).expect_err("no such header");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    // The 12-byte queue reads and writes 12-byte headers: a port on it says so.
    let port = TapPort::new(tap).expect("port");
    assert_eq!(port.vnet_hdr_len(), 12);
    assert!(!port.features().intersects(Features::ALL_TNL));
}

/// One port writes a VXLAN super-frame with its 24-byte header; the bridge hands it to a
/// port that takes tunnel super-frames, which receives it whole with a header that
/// validates to the same metadata.
#[test]
fn tunnel_superframe_crosses_tap_ports() {
    require_root("this test (network namespaces, a bridge and tap devices)");
    assert!(
        kernel_at_least(6, 17),
        "UDP tunnel offload on taps needs Linux 6.17"
    );
    let ns = Netns::create_unique("pvt").expect("create namespace");
    ns.disable_ipv6().expect("no IPv6 noise");
    ns.run(&[
        "link",
        "add",
        "br0",
        "type",
        "bridge",
        "stp_state",
        "0",
        "mcast_snooping",
        "0",
    ])
    .expect("bridge");
    let all = PLAIN | offload::UDP_TUNNEL;
    let (a, b) = ns
        .enter_and(|| {
            Ok::<_, std::io::Error>((
                Tap::open(&opts("pva", 24, all))?,
                Tap::open(&opts("pvb", 24, all))?,
            ))
        })
        .expect("enter")
        .expect("open taps");
    for (dev, mac) in [
        ("br0", "06:70:76:00:01:01"),
        ("pva", "06:70:76:00:01:02"),
        ("pvb", "06:70:76:00:01:03"),
    ] {
        ns.run(&["link", "set", "dev", dev, "address", mac])
            .expect("mac");
    }
    for port in ["pva", "pvb"] {
        ns.run(&["link", "set", "dev", port, "master", "br0"])
            .expect("enslave");
        ns.run(&[
            "link",
            "set",
            "dev",
            port,
            "type",
            "bridge_slave",
            "learning",
            "off",
            "flood",
            "on",
        ])
        .expect("flood");
    }
    for dev in ["br0", "pva", "pvb"] {
        ns.run(&["link", "set", "dev", dev, "up"]).expect("up");
    }
    let mut tx = TapPort::new(a).expect("port a");
    let mut rx = TapPort::new(b).expect("port b");
    assert_eq!(rx.vnet_hdr_len(), 24);
    assert!(
        rx.features().contains(Features::ALL_TNL),
        "{}",
        rx.features()
    );

    for (i, spec) in [
        TunnelSpec {
            outer_v6: false,
            inner_v6: false,
            geneve: None,
            inner_vlan: false,
            tcp_opts: Some(12),
            csum: true,
            payload: 20_000,
            gso_size: 1398,
            seed: 1,
        },
        TunnelSpec {
            outer_v6: true,
            inner_v6: true,
            geneve: Some(8),
            inner_vlan: true,
            tcp_opts: None,
            csum: false,
            payload: 9000,
            gso_size: 1200,
            seed: 2,
        },
    ]
    .into_iter()
    .enumerate()
    {
        let (frame, hdr) = spec.build();
        let v = validate(&hdr, &frame, Start::Ethernet).expect("valid");
        let wire = hdr.to_array(Endian::Little);
        let sent = pvnet_core::frame::Frame::linear(&frame, *v.meta());
        tx.send(&wire[..HdrLen::V24.size()], &sent).expect("send");

        let mut bufs = RecvBufs::new(4, 65_536 + 64);
        let deadline = Instant::now() + Duration::from_secs(2);
        let got = loop {
            let n = rx.recv_batch(&mut bufs).expect("receive");
            let found = (0..n)
                .filter_map(|j| bufs.get(j))
                .find(|(_, f)| f.get(..12) == frame.get(..12));
            if let Some((h, f)) = found {
                break (h.to_vec(), f.to_vec());
            }
            assert!(Instant::now() < deadline, "frame {i} never arrived");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(got.0.len(), 24);
        assert_eq!(got.1, frame, "frame {i} changed on the way");
        let again = validate_received(&got.0, &got.1, Start::Ethernet).expect("valid header");
        assert_eq!(again.meta(), v.meta(), "frame {i}");
        assert_eq!(again.inner_layers(), v.inner_layers(), "frame {i}");
    }
}
