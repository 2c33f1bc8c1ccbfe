//! Helpers shared by the switch integration tests.
#![allow(dead_code)]

use pvnet::switch::lab::Lab;
use pvnet_core::switch::counters::PortCounters;

/// The switch tests create namespaces and taps: without root they fail and say why.
#[track_caller]
pub fn require_root() {
    pvnet_linux::testing::require_root("the switch tests (network namespaces and taps)");
}

/// Counters of port `i`.
pub fn port(stats: &[(String, PortCounters)], i: usize) -> PortCounters {
    stats[i].1
}

/// TCP both ways over IPv4 and IPv6, UDP echo both ways over IPv4 and IPv6; panics with
/// the pairing name on any loss or corruption, or a checksum error in either namespace.
pub fn traffic_both_ways(lab: &Lab, what: &str, tcp_bytes: u64) {
    for v6 in [false, true] {
        for from in 0..2 {
            let t = lab
                .tcp(from, v6, tcp_bytes, std::time::Duration::ZERO, None)
                .unwrap_or_else(|e| panic!("{what}: tcp from {from} v6={v6}: {e}"));
            assert!(
                t.intact && t.received == tcp_bytes,
                "{what}: tcp from {from} v6={v6}: sent {}, received {}, intact {}",
                t.sent,
                t.received,
                t.intact
            );
            let sizes = [64, 700, 1400, 3000, 9000];
            let ok = lab
                .udp_echo(from, v6, 20, &sizes)
                .unwrap_or_else(|e| panic!("{what}: udp from {from} v6={v6}: {e}"));
            assert_eq!(
                ok, 20,
                "{what}: udp from {from} v6={v6}: {ok}/20 echoed intact"
            );
        }
    }
    for side in 0..2 {
        let (tcp, udp) = lab.csum_errors(side).expect("nstat");
        assert_eq!(
            (tcp, udp),
            (0, 0),
            "{what}: checksum errors in namespace {side} (TcpInCsumErrors, UdpInCsumErrors)"
        );
    }
}
