//! Offload adaptation seen from outside: super-frames from a namespace with tap offloads
//! reach an `offload=none` port as wire-sized segments with complete checksums; the
//! wire-sized frames coming back are coalesced for the port that takes super-frames.

mod switch_util;

use std::fs::File;
use std::io::BufReader;
use std::time::Duration;

use pvnet::switch::lab::{temp_path, Lab, LabOptions};
use pvnet::switch::SwitchConfig;
use pvnet_core::offload::checksum::{verify_frame, Verdict};
use pvnet_core::wire::{parse, Start, L3};
use pvnet_linux::pcap::PcapReader;

const MTU: usize = 1500;

#[test]
fn super_frames_are_segmented_for_a_port_without_offloads() {
    switch_util::require_root();
    let pcap = temp_path("adapt-seg.pcap");
    let mut lab = Lab::start(LabOptions {
        offload: [None, Some("none".into())],
        config: SwitchConfig {
            pcap: Some(pcap.clone()),
            ..SwitchConfig::default()
        },
        ..LabOptions::default()
    })
    .expect("lab");
    let t = lab
        .tcp(0, false, 4 << 20, Duration::ZERO, None)
        .expect("tcp");
    assert!(t.intact, "transfer not intact: {t:?}");
    let stats = lab.stop().expect("stop");
    let to_none = switch_util::port(&stats, 1);
    assert!(to_none.segments > 0, "no segments made: {stats:?}");
    assert!(
        to_none.gso_segmented > 0,
        "no super-frame segmented: {stats:?}"
    );
    assert_eq!(to_none.gso_tx, 0, "super-frame sent to offload=none");
    assert_eq!(lab.csum_errors(1).expect("nstat"), (0, 0));

    // Every frame sent towards the offload=none side is wire-sized with good checksums.
    let dst = lab.addr4[1].octets();
    let mut reader =
        PcapReader::new(BufReader::new(File::open(&pcap).expect("pcap"))).expect("pcap header");
    let mut checked = 0;
    while let Some(rec) = reader.next_record().expect("record") {
        let Ok(l) = parse(rec.data, Start::Ethernet) else {
            continue;
        };
        if l.l3 != Some(L3::Ipv4) || rec.data[l.l3_offset + 16..l.l3_offset + 20] != dst {
            continue;
        }
        assert!(
            rec.data.len() <= MTU + 14,
            "frame of {} bytes",
            rec.data.len()
        );
        let v = verify_frame(rec.data, Start::Ethernet);
        assert_eq!(v.ip, Verdict::Good, "bad IPv4 header checksum");
        assert_eq!(v.l4, Verdict::Good, "L4 checksum {:?}", v.l4);
        checked += 1;
    }
    assert!(checked > 1000, "only {checked} frames captured");
    let _ = std::fs::remove_file(&pcap);
}

#[test]
fn wire_sized_frames_are_coalesced_for_a_port_with_offloads() {
    switch_util::require_root();
    let mut lab = Lab::start(LabOptions {
        offload: [None, Some("none".into())],
        ..LabOptions::default()
    })
    .expect("lab");
    for v6 in [false, true] {
        let t = lab.tcp(1, v6, 4 << 20, Duration::ZERO, None).expect("tcp");
        assert!(t.intact, "transfer not intact: {t:?}");
    }
    let stats = lab.stop().expect("stop");
    let from_none = switch_util::port(&stats, 1);
    let to_full = switch_util::port(&stats, 0);
    assert!(from_none.gro_coalesced > 0, "nothing coalesced: {stats:?}");
    assert!(to_full.gso_tx > 0, "no super-frame sent: {stats:?}");
    assert_eq!(lab.csum_errors(0).expect("nstat"), (0, 0));
}
