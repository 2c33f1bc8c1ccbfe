//! The test guest (`pvnet::guest`, scripts/guest/build) under QEMU: its control channel,
//! and its virtio-net NIC on a plain QEMU tap in a test namespace, the reference the
//! vhost-user port is measured against: offloads on, TCP both ways, no checksum errors.
//!
//! Both tests need root (QEMU creates the tap; the namespace) and QEMU, which
//! scripts/guest/build installs when missing.

mod guest_util;

use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

use guest_util::{bytes_both_ways, feature, iperf3_both_ways, no_csum_errors};
use pvnet::guest::{tap_net_args, unique_mac, Guest, GuestOptions};
use pvnet_linux::netns::Netns;
use pvnet_linux::testing::require_root;

/// The control channel returns each script's own output and exit status, whatever the
/// script prints, and recovers after a command that outlived its time limit.
#[test]
fn guest_control_channel() {
    require_root("the guest tests (QEMU, and apt-get installing it when missing)");
    let start = std::time::Instant::now();
    let guest = Guest::boot(GuestOptions::default()).expect("boot the guest");
    eprintln!(
        "the guest answered {:?} after QEMU started",
        start.elapsed()
    );

    assert_eq!(
        guest.run("echo out; echo err >&2; exit 3").expect("run"),
        (3, "out\nerr\n".to_owned())
    );
    assert_eq!(guest.run("printf abc").expect("run"), (0, "abc".to_owned()));
    // Several lines, quotes, and text that looks like the channel's own markers.
    let script = "cat <<'EOF'\nPVNET-END-x 0\n\"double\" 'single' $HOME\nEOF\necho \"$HOME\"";
    assert_eq!(
        guest.run(script).expect("run"),
        (
            0,
            "PVNET-END-x 0\n\"double\" 'single' $HOME\n/root\n".to_owned()
        )
    );
    // More output than any buffer on the way holds.
    let (rc, out) = guest.run("seq 1 20000").expect("run");
    assert_eq!(rc, 0);
    let numbers: Vec<u32> = out.lines().map(|l| l.parse().expect("a number")).collect();
    assert_eq!(numbers, (1..=20000).collect::<Vec<u32>>());

    let err = guest
        .run_timeout("sleep 3; echo late", Duration::from_millis(500))
        .expect_err("a command longer than its limit");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    // The late answer is skipped; the next command gets its own.
    assert_eq!(
        guest.run("echo next").expect("run"),
        (0, "next\n".to_owned())
    );
    assert!(
        guest.console_log().contains("pvnet-guest: ready"),
        "{}",
        guest.console_log()
    );
    let dir = guest.dir().to_owned();
    drop(guest);
    assert!(!dir.exists(), "{} left behind", dir.display());
}

/// The guest's NIC on a QEMU tap (with virtio-net headers) whose host side is in a test
/// namespace: the guest sees checksum and segmentation offloads on, TCP runs both ways
/// with every byte intact, and neither side counts a checksum error.
#[test]
fn guest_on_tap_offloads_and_tcp_both_ways() {
    require_root("the guest tests (a namespace, and QEMU creating a tap in it)");
    let ns = Netns::create_unique("pvguest").expect("namespace");
    ns.disable_ipv6().expect("disable IPv6");
    let net = std::process::id() % 250;
    let host = Ipv4Addr::new(10, 198, net as u8, 1);
    let addr = Ipv4Addr::new(10, 198, net as u8, 2);
    let tap = format!("pvg{}", std::process::id() % 100_000);
    // Declared after the namespace, so it drops first: QEMU and its tap go, then the
    // namespace.
    let guest = Guest::boot(GuestOptions {
        net_args: tap_net_args(&tap, &unique_mac()),
        ip: Some(format!("{addr}/24")),
        netns: Some(ns.name().to_owned()),
        ..GuestOptions::default()
    })
    .expect("boot the guest");
    ns.run(&["link", "set", "dev", "lo", "up"]).expect("lo up");
    ns.run(&["addr", "add", &format!("{host}/24"), "dev", &tap])
        .expect("address on the tap");
    ns.run(&["link", "set", "dev", &tap, "up"]).expect("tap up");

    let features = guest.run_ok("ethtool -k eth0").expect("ethtool -k");
    for f in [
        "tx-checksumming",
        "tcp-segmentation-offload",
        "rx-checksumming",
    ] {
        assert_eq!(
            feature(&features, f),
            Some(true),
            "{f} is not on in the guest:\n{features}"
        );
    }
    guest
        .run_ok(&format!("ping -c 1 -W 5 {host}"))
        .expect("the guest reaches the namespace");

    // iperf3 server in the guest, client in the namespace: both directions.
    iperf3_both_ways(&guest, &ns, addr);

    // Every byte intact: random bytes to the guest (busybox nc), and the same file back.
    bytes_both_ways(&guest, &ns, addr, host, 7000);

    no_csum_errors(&guest, &ns);
}

/// A QEMU that cannot start, and a guest whose control channel never answers, fail the
/// boot with a message that shows why: QEMU's own words, the guest's console.
#[test]
fn guest_boot_errors_say_why() {
    require_root("the guest tests (QEMU, and apt-get installing it when missing)");
    let err = Guest::boot(GuestOptions {
        net_args: vec!["-device".into(), "pvnet-no-such-device".into()],
        ..GuestOptions::default()
    })
    .expect_err("QEMU refuses an unknown device");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(msg.contains("QEMU exited"), "{msg}");
    assert!(msg.contains("pvnet-no-such-device"), "{msg}");

    // The guest serves its control channel on a tty that does not exist.
    let err = Guest::boot(GuestOptions {
        append: vec!["pvnet.ctl=ttyS9".into()],
        boot_timeout: Duration::from_secs(15),
        ..GuestOptions::default()
    })
    .expect_err("no control channel");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(msg.contains("did not answer within 15s"), "{msg}");
    assert!(msg.contains("no /dev/ttyS9: no control channel"), "{msg}");
}
