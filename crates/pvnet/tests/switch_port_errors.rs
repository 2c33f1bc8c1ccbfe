//! What `pvnet switch` says when a port cannot be had: each message names the cause.

mod switch_util;

use std::process::{Command, Output};

use pvnet_linux::netns::Netns;
use pvnet_linux::tap::{Tap, TapOptions};

fn pvnet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pvnet"))
}

fn switch(args: &[&str]) -> Output {
    pvnet()
        .arg("switch")
        .args(args)
        .output()
        .expect("run pvnet switch")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unknown_kind_lists_the_kinds_a_switch_takes() {
    let out = switch(&["vhost:x"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("unknown port kind \"vhost\"") && err.contains("valid kinds: tap, packet"),
        "{err}"
    );
    for refused in ["tun", "pcap"] {
        assert!(!err.contains(refused), "{refused} offered: {err}");
    }
}

/// `pvnet switch PORTS… --print-config`: the switch exits after opening its ports, so a
/// port that opens when it should not cannot leave a switch running.
fn open_ports(ports: &[String]) -> Output {
    let mut args: Vec<&str> = ports.iter().map(String::as_str).collect();
    args.push("--print-config");
    switch(&args)
}

/// A device name unique to this test process.
fn dev(tag: &str) -> String {
    format!("pve{}{tag}", std::process::id() % 100_000)
}

#[track_caller]
fn assert_fails_with(out: &Output, needles: &[&str]) {
    assert_exits_with(out, 1, needles);
}

#[track_caller]
fn assert_exits_with(out: &Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} missing from: {err}");
    }
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn a_tap_named_twice_is_called_so() {
    switch_util::require_root();
    let ns = Netns::create_unique("pverr").expect("netns");
    let pa = dev("a");
    let spec = format!("tap:{pa},netns={}", ns.name());
    // Refused as a usage error before any device is touched.
    let out = open_ports(&[spec.clone(), spec]);
    assert_exits_with(
        &out,
        2,
        &[&format!("have the same name {pa}"), "must be unique"],
    );
    assert!(!switch_util::tap_exists(&ns, &pa));
    // The same name in two namespaces: two identical metric series, refused too.
    let other = Netns::create_unique("pverr").expect("netns");
    let out = open_ports(&[
        format!("tap:{pa},netns={}", ns.name()),
        format!("tap:{pa},netns={}", other.name()),
    ]);
    assert_exits_with(&out, 2, &["must be unique, also across network namespaces"]);
}

#[test]
fn a_tap_another_process_holds_names_the_process() {
    switch_util::require_root();
    let ns = Netns::create_unique("pverr").expect("netns");
    let pb = dev("b");
    let opts = TapOptions {
        name: pb.clone(),
        ..TapOptions::default()
    };
    let _held = ns
        .enter_and(|| Tap::open(&opts))
        .expect("enter netns")
        .expect("hold the tap");
    let out = open_ports(&[format!("tap:{pb},netns={}", ns.name())]);
    assert_fails_with(
        &out,
        &[
            &format!("tap \"{pb}\" is busy"),
            "another process holds it",
            &format!("pid {}", std::process::id()),
        ],
    );
    assert!(!stderr(&out).contains("named twice"), "{}", stderr(&out));
}

#[test]
fn a_device_that_is_not_a_tap_is_named_with_its_kind() {
    switch_util::require_root();
    let ns = Netns::create_unique("pverr").expect("netns");
    let out = open_ports(&[format!("tap:lo,netns={}", ns.name())]);
    assert_fails_with(
        &out,
        &["\"lo\" exists and is not a tap but the loopback device"],
    );

    let (v0, v1) = (dev("v0"), dev("v1"));
    ns.run(&["link", "add", &v0, "type", "veth", "peer", "name", &v1])
        .expect("veth pair");
    let out = open_ports(&[format!("tap:{v0},netns={}", ns.name())]);
    assert_fails_with(
        &out,
        &[&format!(
            "\"{v0}\" exists and is not a tap but a veth device"
        )],
    );

    let tun = dev("t");
    ns.run(&["tuntap", "add", "dev", &tun, "mode", "tun"])
        .expect("persistent tun");
    let out = open_ports(&[format!("tap:{tun},netns={}", ns.name())]);
    assert_fails_with(&out, &[&format!("\"{tun}\" exists"), "a tun device"]);
}

#[test]
fn a_tap_of_the_other_queue_kind_says_which_it_is() {
    switch_util::require_root();
    let ns = Netns::create_unique("pverr").expect("netns");
    let (single, multi) = (dev("s"), dev("m"));
    ns.run(&["tuntap", "add", "dev", &single, "mode", "tap"])
        .expect("persistent single-queue tap");
    ns.run(&["tuntap", "add", "dev", &multi, "mode", "tap", "multi_queue"])
        .expect("persistent multi-queue tap");
    let out = open_ports(&[format!("tap:{single},netns={},queues=2", ns.name())]);
    assert_fails_with(
        &out,
        &[&format!("tap \"{single}\" exists as a single-queue device")],
    );
    let out = open_ports(&[format!("tap:{multi},netns={}", ns.name())]);
    assert_fails_with(
        &out,
        &[&format!("tap \"{multi}\" exists as a multi-queue device")],
    );
}
