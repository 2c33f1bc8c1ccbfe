//! VLAN access ports through the switch, between real namespaces: two access ports of one
//! VLAN carry traffic (with offloads and without), two of different VLANs are isolated.
//! Tagging for a trunk is checked in `switch_forward` (this kernel may lack 8021q, so a
//! namespace cannot speak tagged frames here).

mod switch_util;

use pvnet::switch::lab::{Lab, LabOptions};

#[test]
fn access_ports_of_one_vlan_carry_traffic() {
    switch_util::require_root();
    for offload in [[None, None], [Some("none"), None]] {
        let what = format!("access VLAN 10 both sides, offload {offload:?}");
        let mut lab = Lab::start(LabOptions {
            offload: offload.map(|o| o.map(str::to_owned)),
            access_vlan: [Some(10), Some(10)],
            ..LabOptions::default()
        })
        .unwrap_or_else(|e| panic!("{what}: lab: {e}"));
        switch_util::traffic_both_ways(&lab, &what, 2 << 20);
        let stats = lab.stop().expect("stop");
        for (i, (_, p)) in stats.iter().enumerate() {
            let drops: u64 = p.drops.iter().sum();
            assert_eq!(drops, 0, "{what}: port {i} dropped: {stats:?}");
        }
    }
}

/// Two access ports of different VLANs: nothing gets through (the same setup with the same
/// VLAN on both is the control).
#[test]
fn access_ports_of_different_vlans_are_isolated() {
    switch_util::require_root();
    for (vids, reachable) in [([10, 10], true), ([10, 20], false)] {
        let lab = Lab::start(LabOptions {
            access_vlan: vids.map(Some),
            ..LabOptions::default()
        })
        .expect("lab");
        let ok = lab.udp_echo(0, false, 2, &[200]).expect("udp");
        assert_eq!(
            ok,
            if reachable { 2 } else { 0 },
            "VLANs {vids:?}: {ok} echoed"
        );
    }
}
