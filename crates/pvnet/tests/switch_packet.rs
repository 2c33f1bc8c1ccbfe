//! `packet:` ports in the switch: an AF_PACKET socket with vnet headers on one end of a
//! veth pair, the namespace's stack on the other. Traffic both ways between a packet port
//! and a tap, and between two packet ports, with offloads and with `offload=none`.

mod switch_util;

use pvnet::switch::lab::{Lab, LabOptions};

#[test]
fn packet_ports_carry_traffic() {
    switch_util::require_root();
    let cases: [([bool; 2], [Option<&str>; 2]); 4] = [
        ([true, false], [None, None]),
        ([true, true], [None, None]),
        ([true, false], [Some("none"), None]),
        ([false, true], [None, Some("none")]),
    ];
    for (packet, offload) in cases {
        let what = format!("packet {packet:?}, offload {offload:?}");
        let mut lab = Lab::start(LabOptions {
            packet,
            offload: offload.map(|o| o.map(str::to_owned)),
            ..LabOptions::default()
        })
        .unwrap_or_else(|e| panic!("{what}: lab: {e}"));
        switch_util::traffic_both_ways(&lab, &what, 2 << 20);
        let stats = lab.stop().expect("stop");
        for (i, (_, p)) in stats.iter().enumerate() {
            let c = &p;
            let drops: u64 = c.drops.iter().sum();
            assert_eq!(drops, 0, "{what}: port {i} dropped: {stats:?}");
            if packet[i] {
                // The veth hands its stack's super-frames to the packet socket as they are.
                assert!(c.gso_rx > 0, "{what}: no super-frame read from port {i}");
            }
            if offload[i].is_some() {
                // offload= is what the switch sends the port: segments only.
                assert!(c.segments > 0, "{what}: nothing segmented for port {i}");
                assert_eq!(c.gso_tx, 0, "{what}: super-frame sent to port {i}");
            }
        }
    }
}
