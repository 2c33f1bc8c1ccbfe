//! The Port abstraction: send-error classification (pure) and the tap/tun port (root).

use std::io;

use pvnet_core::offload::features::Features;
use pvnet_core::wire::Start;
use pvnet_linux::netns::Netns;
use pvnet_linux::port::{Port, RecvBufs, SendError, TapPort};
use pvnet_linux::sys::with_context;
use pvnet_linux::tap::{offload, Tap, TapOptions};
use pvnet_linux::testing::require_root;

fn hdr(gso_type: u8) -> [u8; 10] {
    [1, gso_type, 0, 0, 0, 0, 0, 0, 0, 0]
}

#[test]
fn classify_table() {
    let e = |errno| with_context(io::Error::from_raw_os_error(errno), "send");
    let cases: &[(i32, u8, &str)] = &[
        (libc::EINVAL, 1, "gso"),
        (libc::EINVAL, 4, "gso"),
        (libc::EINVAL, 0x81, "gso"),
        (libc::EINVAL, 5, "gso"),
        (libc::EINVAL, 0, "invalid"),
        (libc::EINVAL, 0x80, "invalid"), // ECN bit alone is not a GSO type
        (libc::EAGAIN, 1, "busy"),
        (libc::ENOBUFS, 0, "busy"),
        (libc::EMSGSIZE, 0, "big"),
        (libc::ENXIO, 0, "io"),
    ];
    for (errno, gso_type, want) in cases {
        let got = match SendError::classify(e(*errno), &hdr(*gso_type)) {
            SendError::GsoRejected { gso_type: g, .. } => {
                assert_eq!(g, *gso_type);
                "gso"
            }
            SendError::Invalid(_) => "invalid",
            SendError::WouldBlock => "busy",
            SendError::TooBig(_) => "big",
            SendError::Io(_) => "io",
            SendError::TooManySlices { .. } => "slices",
            SendError::NoCarrier => "no carrier",
        };
        assert_eq!(got, *want, "errno {errno} gso_type {gso_type:#x}");
    }
    // No header at all (a port without vnet headers): never GSO.
    assert!(matches!(
        SendError::classify(e(libc::EINVAL), &[]),
        SendError::Invalid(_)
    ));
}

#[test]
fn tap_and_tun_ports() {
    require_root("tap_and_tun_ports (a network namespace, taps and a tun)");
    let ns = Netns::create_unique("pvpt").expect("namespace");
    let open = |name: &str, tun: bool, offloads: u32| {
        let opts = TapOptions {
            name: name.into(),
            tun,
            offloads,
            ..TapOptions::default()
        };
        ns.enter_and(|| Tap::open(&opts))
            .expect("enter")
            .expect("open tap")
    };
    let mut tap = TapPort::new(open("pvtp0", false, offload::CSUM | offload::TSO4)).expect("port");
    assert_eq!(tap.name(), "pvtp0");
    assert_eq!(tap.start(), Start::Ethernet);
    assert_eq!(tap.vnet_hdr_len(), 12);
    assert_eq!(
        tap.features(),
        "csum+sg+tso4".parse::<Features>().expect("f")
    );
    // Fallback after GsoRejected: drop TSO4, keep the rest.
    let less = tap.features() - Features::TSO4;
    tap.set_features(less).expect("set");
    assert_eq!(tap.features(), "csum+sg".parse::<Features>().expect("f"));
    assert_eq!(tap.tap().offloads(), offload::CSUM);
    tap.set_features(Features::NONE).expect("legacy");
    assert_eq!(tap.tap().offloads(), 0);
    // Link down: nothing to read, and non-blocking.
    let mut bufs = RecvBufs::new(4, 2048);
    assert_eq!(tap.recv_batch(&mut bufs).expect("recv"), 0);
    assert!(bufs.is_empty() && bufs.get(0).is_none());

    let tun = TapPort::new(open("pvtn0", true, 0)).expect("port");
    assert_eq!(tun.start(), Start::Ip);
}
