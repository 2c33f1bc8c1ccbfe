//! TCP and UDP, IPv4 and IPv6, through the switch between two namespaces, for every
//! pairing of {full offloads, checksum only, none}: everything arrives intact and the
//! receivers count no checksum errors.

mod switch_util;

use pvnet::switch::lab::{Lab, LabOptions};

const KINDS: [(&str, Option<&str>); 3] = [
    ("full", None),
    ("csum-only", Some("csum+sg")),
    ("none", Some("none")),
];

fn pairings_from(a: usize) {
    switch_util::require_root();
    for (bname, boff) in KINDS {
        let (aname, aoff) = KINDS[a];
        let what = format!("{aname} <-> {bname}");
        let lab = Lab::start(LabOptions {
            offload: [aoff.map(str::to_owned), boff.map(str::to_owned)],
            ..LabOptions::default()
        })
        .unwrap_or_else(|e| panic!("{what}: lab: {e}"));
        switch_util::traffic_both_ways(&lab, &what, 2 << 20);
    }
}

#[test]
fn full_offloads_with_each_kind() {
    pairings_from(0);
}

#[test]
fn csum_only_with_each_kind() {
    pairings_from(1);
}

#[test]
fn no_offloads_with_each_kind() {
    pairings_from(2);
}
