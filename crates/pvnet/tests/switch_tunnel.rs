//! UDP tunnel super-frames through switch taps: each namespace of a lab gets its own
//! kernel `vxlan` device over its tap, and TCP runs across the overlay. The sending
//! namespace's tap takes the UDP tunnel offloads (24-byte vnet headers), so its kernel
//! hands pvnet whole VXLAN super-frames; the switch forwards them whole to a tap that
//! takes them too, and segments them for a tap without offloads. Every byte arrives and
//! neither kernel counts a checksum error. Needs root; fails without.

mod switch_util;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use pvnet::switch::lab::{Lab, LabOptions};
use pvnet_core::switch::counters::PortCounters;

const VNI: &str = "4242";
const BYTES: u64 = 8 << 20;

/// The overlay addresses of side `i`: 10.198.N.i+1 and fd00:198:N::i+1, N the lab's own
/// subnet number.
fn overlay(lab: &Lab, i: usize) -> (Ipv4Addr, Ipv6Addr) {
    let n = lab.addr4[0].octets()[2];
    let host = i as u8 + 1;
    (
        Ipv4Addr::new(10, 198, n, host),
        Ipv6Addr::new(0xfd00, 0x198, u16::from(n), 0, 0, 0, 0, u16::from(host)),
    )
}

/// A `vxlan` device in each namespace of `lab`, over its tap, to the other side's tap
/// address, with the outer UDP checksum on or off.
fn add_vxlan(lab: &Lab, udpcsum: bool) {
    for i in 0..2 {
        let (local, remote) = (lab.addr4[i].to_string(), lab.addr4[1 - i].to_string());
        let ns = &lab.ns[i];
        ns.run(&[
            "link",
            "add",
            "vx0",
            "type",
            "vxlan",
            "id",
            VNI,
            "local",
            &local,
            "remote",
            &remote,
            "dstport",
            "4789",
            "dev",
            &lab.taps[i],
            if udpcsum { "udpcsum" } else { "noudpcsum" },
        ])
        .unwrap_or_else(|e| panic!("vxlan device in namespace {i}: {e}"));
        let (a4, a6) = overlay(lab, i);
        ns.run(&["addr", "add", &format!("{a4}/24"), "dev", "vx0"])
            .expect("overlay IPv4 address");
        ns.run(&["addr", "add", &format!("{a6}/64"), "dev", "vx0", "nodad"])
            .expect("overlay IPv6 address");
        ns.run(&["link", "set", "dev", "vx0", "up"])
            .expect("vxlan up");
    }
}

/// TCP from side 0 to side 1 across the overlay, IPv4 and IPv6 inside; returns the final
/// counters of both ports.
fn transfer(near: Option<&str>, far: Option<&str>, udpcsum: bool) -> [PortCounters; 2] {
    switch_util::require_root();
    let what = format!(
        "near offload={}, far offload={}, udpcsum={udpcsum}",
        near.unwrap_or("all"),
        far.unwrap_or("all")
    );
    let mut lab = Lab::start(LabOptions {
        offload: [near.map(str::to_owned), far.map(str::to_owned)],
        ..LabOptions::default()
    })
    .unwrap_or_else(|e| panic!("{what}: lab: {e}"));
    add_vxlan(&lab, udpcsum);
    let (v4, v6) = overlay(&lab, 1);
    for to in [IpAddr::V4(v4), IpAddr::V6(v6)] {
        let t = lab
            .tcp_to(0, to, BYTES, Duration::ZERO, None)
            .unwrap_or_else(|e| panic!("{what}: tcp to {to}: {e}"));
        assert!(
            t.intact && t.received == BYTES,
            "{what}: tcp to {to}: sent {}, received {}, intact {}",
            t.sent,
            t.received,
            t.intact
        );
    }
    for side in 0..2 {
        let errs = lab.csum_errors(side).expect("nstat");
        assert_eq!(
            errs,
            (0, 0),
            "{what}: checksum errors in namespace {side} (TcpInCsumErrors, UdpInCsumErrors)"
        );
    }
    let stats = lab.stop().expect("stop switch");
    let c = [switch_util::port(&stats, 0), switch_util::port(&stats, 1)];
    eprintln!("{what}: near {:?}\nfar {:?}", c[0], c[1]);
    assert_eq!(c[0].drops_total(), 0, "{what}: near drops {:?}", c[0]);
    assert_eq!(c[1].drops_total(), 0, "{what}: far drops {:?}", c[1]);
    assert_eq!(c[1].gso_rejected, 0, "{what}: {:?}", c[1]);
    c
}

#[test]
fn vxlan_superframes_pass_whole_to_a_tunnel_tap() {
    for udpcsum in [false, true] {
        let [near, far] = transfer(None, None, udpcsum);
        // The only TCP the near side sends is inside the overlay: every super-frame its
        // tap hands over is a VXLAN one.
        assert!(near.gso_rx > 0, "no tunnel super-frame came in: {near:?}");
        assert!(
            far.gso_tx > 0,
            "udpcsum={udpcsum}: none sent whole: {far:?}"
        );
        assert_eq!(far.gso_segmented, 0, "udpcsum={udpcsum}: {far:?}");
        assert!(far.gso_tx >= near.gso_rx, "{near:?} {far:?}");
    }
}

#[test]
fn vxlan_superframes_are_segmented_for_a_plain_tap() {
    for udpcsum in [false, true] {
        let [near, far] = transfer(None, Some("none"), udpcsum);
        assert!(near.gso_rx > 0, "no tunnel super-frame came in: {near:?}");
        assert_eq!(far.gso_tx, 0, "udpcsum={udpcsum}: {far:?}");
        assert_eq!(
            far.gso_segmented, near.gso_rx,
            "udpcsum={udpcsum}: every super-frame segmented: {near:?} {far:?}"
        );
        assert!(far.segments > 2 * far.gso_segmented, "{far:?}");
    }
}

/// A near tap without offloads hands the switch wire-sized VXLAN frames (its kernel
/// segmented them); the switch's ingress GRO makes tunnel super-frames of them again for
/// the far tap, which takes tunnel GSO. Without an outer checksum the plain UDP
/// coalescer merges nothing, so super-frames reaching the far side are tunnel GRO's.
#[test]
fn vxlan_segments_are_coalesced_for_a_tunnel_tap() {
    for udpcsum in [false, true] {
        let [near, far] = transfer(Some("none"), None, udpcsum);
        assert_eq!(near.gso_rx, 0, "udpcsum={udpcsum}: {near:?}");
        assert!(
            near.gro_coalesced > 0,
            "udpcsum={udpcsum}: nothing coalesced: {near:?}"
        );
        assert!(far.gso_tx > 0, "udpcsum={udpcsum}: {far:?}");
        assert_eq!(far.gso_segmented, 0, "udpcsum={udpcsum}: {far:?}");
    }
}
