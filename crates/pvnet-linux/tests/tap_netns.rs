//! tap devices and network namespaces against the real kernel. These tests need root (to
//! create namespaces and taps) and fail, not skip, without it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use pvnet_linux::netns::Netns;
use pvnet_linux::sys::errno;
use pvnet_linux::tap::{device_kind, offload, DeviceKind, Tap, TapOptions};
use pvnet_linux::testing::require_root;

fn tap_opts(name: &str, offloads: u32) -> TapOptions {
    TapOptions {
        name: name.to_owned(),
        offloads,
        ..TapOptions::default()
    }
}

fn netns_listed(name: &str) -> bool {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("run ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn tap_opened_in_namespace_lives_there() {
    require_root("this test (network namespaces and tap devices)");
    let ns = Netns::create_unique("pvt").expect("create namespace");
    let tap = ns
        .enter_and(|| Tap::open(&tap_opts("pvtap0", offload::CSUM)))
        .expect("enter namespace")
        .expect("open tap");
    assert_eq!(tap.name(), "pvtap0");
    assert_eq!(tap.vnet_hdr_len(), 12);
    assert_eq!(tap.offloads(), offload::CSUM);

    let shown = ns
        .run(&["-d", "link", "show", "pvtap0"])
        .expect("tap visible in its namespace");
    assert!(shown.contains("pvtap0"), "{shown}");
    assert!(shown.contains("tun type tap"), "{shown}");
    assert!(shown.contains("vnet_hdr on"), "{shown}");

    // Not in our own namespace.
    let here = Command::new("ip")
        .args(["link", "show", "pvtap0"])
        .output()
        .expect("run ip link show");
    assert!(
        !here.status.success(),
        "pvtap0 leaked into the caller's namespace"
    );

    // The fd is usable from this (other) thread: the kernel answers on it.
    let features = tap.kernel_features().expect("TUNGETFEATURES");
    assert_ne!(
        features & 0x4000,
        0,
        "IFF_VNET_HDR supported: {features:#x}"
    );
}

#[test]
fn errors_name_the_command_and_carry_stderr() {
    require_root("this test (network namespaces and tap devices)");
    let ns = Netns::create_unique("pvt").expect("create namespace");
    let err = ns
        .run(&["link", "show", "no-such-dev"])
        .expect_err("missing device");
    let text = err.to_string();
    assert!(text.contains("no-such-dev"), "{text}");
    assert!(text.contains("does not exist"), "{text}");
}

#[test]
fn device_kind_and_refusals_seen_from_the_namespace() {
    require_root("this test (network namespaces and tap devices)");
    let ns = Netns::create_unique("pvt").expect("create namespace");
    let (kinds, busy, not_tun) = ns
        .enter_and(|| {
            let tap = Tap::open(&tap_opts("pvk0", 0)).expect("open tap");
            let tun = Tap::open(&TapOptions {
                name: "pvk1".into(),
                tun: true,
                ..TapOptions::default()
            })
            .expect("open tun");
            let kinds = ["pvk0", "pvk1", "lo", "pvk2"].map(|n| device_kind(n).expect("query"));
            let busy = Tap::open(&tap_opts("pvk0", 0)).expect_err("held by `tap`");
            let not_tun = Tap::open(&TapOptions {
                name: "pvk0".into(),
                tun: true,
                ..TapOptions::default()
            })
            .expect_err("a tap is not a tun");
            drop((tap, tun));
            (kinds, busy, not_tun)
        })
        .expect("enter namespace");
    assert_eq!(
        kinds,
        [
            Some(DeviceKind::Tap),
            Some(DeviceKind::Tun),
            Some(DeviceKind::Loopback),
            None
        ]
    );
    // The namespace's view, not the host's: out here there is no pvk0.
    assert_eq!(device_kind("pvk0").expect("query"), None);

    assert_eq!(errno(&busy), Some(libc::EBUSY));
    let text = busy.to_string();
    assert!(
        text.contains("tap \"pvk0\" is busy: this process already holds"),
        "{text}"
    );
    assert_eq!(errno(&not_tun), Some(libc::EINVAL));
    let text = not_tun.to_string();
    assert!(
        text.contains("\"pvk0\" exists and is not a tun but a tap device"),
        "{text}"
    );
}

#[test]
fn tun_mode_and_multi_queue() {
    require_root("this test (network namespaces and tap devices)");
    let ns = Netns::create_unique("pvt").expect("create namespace");
    let tun = ns
        .enter_and(|| {
            Tap::open(&TapOptions {
                name: "pvtun0".into(),
                tun: true,
                ..TapOptions::default()
            })
        })
        .expect("enter")
        .expect("open tun");
    let shown = ns.run(&["-d", "link", "show", tun.name()]).expect("show");
    assert!(shown.contains("tun type tun"), "{shown}");

    let mq = |_: usize| {
        ns.enter_and(|| {
            Tap::open(&TapOptions {
                name: "pvmq0".into(),
                multi_queue: true,
                vnet_hdr_len: 10,
                ..TapOptions::default()
            })
        })
        .expect("enter")
        .expect("open queue")
    };
    let q0 = mq(0);
    let q1 = mq(1);
    assert_eq!(q0.name(), q1.name());
    let shown = ns.run(&["-d", "link", "show", "pvmq0"]).expect("show");
    assert!(shown.contains("multi_queue"), "{shown}");
}

#[test]
fn kernel_chooses_name_from_template() {
    require_root("this test (network namespaces and tap devices)");
    let ns = Netns::create_unique("pvt").expect("create namespace");
    let tap = ns
        .enter_and(|| Tap::open(&tap_opts("pvt%d", 0)))
        .expect("enter")
        .expect("open");
    assert_eq!(tap.name(), "pvt0");
    ns.run(&["link", "show", "pvt0"]).expect("device exists");
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
fn offload_probing() {
    require_root("this test (network namespaces and tap devices)");
    let ns = Netns::create_unique("pvt").expect("create namespace");
    let tap = ns
        .enter_and(|| Tap::open(&tap_opts("pvtap0", 0)))
        .expect("enter")
        .expect("open tap");

    let base = offload::CSUM | offload::TSO4 | offload::TSO6;
    tap.set_offload(base).expect("CSUM|TSO4|TSO6 accepted");
    assert_eq!(tap.probe_offloads(base).expect("probe"), base);

    let got = tap.probe_offloads(offload::ALL).expect("probe");
    let uso = offload::USO4 | offload::USO6;
    eprintln!(
        "kernel {} accepts offloads {got:#x}; USO {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        if got & uso == uso {
            "accepted"
        } else {
            "refused"
        }
    );
    assert_eq!(got & (base | offload::TSO_ECN), base | offload::TSO_ECN);
    assert_eq!(tap.offloads(), got);
    if kernel_at_least(6, 2) {
        assert_eq!(got & uso, uso, "USO must be accepted since Linux 6.2");
    }

    // Unknown bits are refused with EINVAL, and probing drops them.
    let err = tap
        .set_offload(offload::CSUM | 0x8000_0000)
        .expect_err("unknown bit");
    assert_eq!(errno(&err), Some(libc::EINVAL), "{err}");
    assert!(err.to_string().contains("TUNSETOFFLOAD"), "{err}");
    assert!(err.to_string().contains("pvtap0"), "{err}");
    assert_eq!(tap.probe_offloads(base | 0x8000_0000).expect("probe"), base);
    // Every flag needs CSUM; USO4 alone is not enough.
    let err = tap
        .set_offload(offload::TSO4)
        .expect_err("TSO4 without CSUM");
    assert_eq!(errno(&err), Some(libc::EINVAL));
    let err = tap
        .set_offload(offload::CSUM | offload::USO4)
        .expect_err("USO4 without USO6");
    assert_eq!(errno(&err), Some(libc::EINVAL));
    assert_eq!(
        tap.probe_offloads(offload::CSUM | offload::USO4)
            .expect("probe"),
        offload::CSUM
    );
    // A failed set leaves the previous mask in force and recorded.
    assert_eq!(tap.offloads(), offload::CSUM);
    assert_eq!(tap.probe_offloads(offload::TSO4).expect("probe"), 0);
}

#[test]
fn namespace_removed_on_drop() {
    require_root("this test (network namespaces and tap devices)");
    let ns = Netns::create_unique("pvt").expect("create namespace");
    let name = ns.name().to_owned();
    let path = ns.path();
    assert!(path.exists());
    assert!(netns_listed(&name));
    drop(ns);
    assert!(!path.exists(), "{} still there", path.display());
    assert!(!netns_listed(&name));
}

#[test]
fn namespace_removed_after_panic_in_enter_and() {
    require_root("this test (network namespaces and tap devices)");
    let mut name = String::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let ns = Netns::create_unique("pvt").expect("create namespace");
        name = ns.name().to_owned();
        let _ = ns.enter_and(|| -> () { panic!("deliberate panic inside the namespace") });
    }));
    assert!(result.is_err(), "the panic must reach the caller");
    assert!(!name.is_empty());
    assert!(!Path::new("/var/run/netns").join(&name).exists());
    assert!(!netns_listed(&name));
}

#[test]
fn enter_and_runs_in_the_namespace_only() {
    require_root("this test (network namespaces and tap devices)");
    let ns = Netns::create_unique("pvt").expect("create namespace");
    let ns_ino = std::fs::metadata(ns.path()).expect("ns file").ino();
    let inside = ns
        .enter_and(|| std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino()))
        .expect("enter")
        .expect("stat inside");
    let outside = std::fs::metadata("/proc/thread-self/ns/net")
        .expect("stat outside")
        .ino();
    assert_eq!(inside, ns_ino);
    assert_ne!(outside, ns_ino, "the calling thread must not have moved");
}
