//! 802.1Q through the running switch: untagged, priority-tagged (VID 0) and tagged frames
//! sent from one namespace over an AF_PACKET socket (no 8021q module needed) into access
//! and trunk ports, and what the switch sends out of the other port, as its `--pcap`
//! capture records it. Every frame must leave exactly as the core's VLAN rules say
//! (`switch::vlan::{ingress, egress, retag}`), and the cases the rules spell out are also
//! asserted by name: a priority-tagged frame joins an access port's VLAN, a tagged one is
//! dropped there and counted.

mod switch_util;

use std::time::Duration;

use pvnet::switch::lab::{Lab, LabOptions};
use pvnet::switch::SwitchConfig;
use pvnet_core::frame::{Frame, OffloadMeta};
use pvnet_core::switch::counters::DropCause;
use pvnet_core::switch::vlan::{egress, frame_vid, ingress, retag, Egress, VlanMode};
use pvnet_core::vnet::validate_received;
use pvnet_core::wire::Start;
use pvnet_linux::netns::in_netns;
use pvnet_linux::packet_socket::RawSender;
use pvnet_linux::pcap::PcapReader;

/// A local experimental EtherType, so the test's frames stand out among the namespaces'
/// own traffic.
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];

/// A broadcast frame (flooded to every port of its VLAN) carrying `marker`, with an
/// 802.1Q tag of `pcp`/`vid` when `tag` is given.
fn frame(tag: Option<(u8, u16)>, marker: u8) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0x0a, 0x0b, 0x0c, 0x0d, marker]);
    if let Some((pcp, vid)) = tag {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&(u16::from(pcp) << 13 | vid).to_be_bytes());
    }
    f.extend_from_slice(&ETHERTYPE);
    f.extend_from_slice(&[marker; 46]);
    f
}

/// The marker of one of the test's frames as the switch sent it, `None` for other frames.
fn marker_of(f: &[u8]) -> Option<u8> {
    let et = if frame_vid(f).is_some() { 16 } else { 12 };
    (f.get(et..et + 2) == Some(&ETHERTYPE[..])).then(|| f[f.len() - 1])
}

/// What the core's rules say leaves a port of `out_mode` for `sent` entering a port of
/// `in_mode`: `None` when nothing does.
fn expected(in_mode: VlanMode, out_mode: VlanMode, sent: &[u8]) -> Option<Vec<u8>> {
    let ing = ingress(in_mode, sent).ok()?;
    let op = egress(out_mode, ing);
    if op == Egress::Skip {
        return None;
    }
    let v = validate_received(&[], sent, Start::Ethernet).expect("valid frame");
    let f = Frame::linear(sent, OffloadMeta::default());
    let mut scratch = Vec::new();
    let (out, _) = retag(&f, &v, op, &mut scratch).expect("retag");
    let mut bytes = Vec::new();
    out.copy_to(&mut bytes);
    Some(bytes)
}

/// Send every kind of frame from side 0 into a switch whose ports are `modes`, and check
/// side 1's port sends exactly what the rules say. Returns the drops counted on side 0.
fn run(modes: [VlanMode; 2]) -> u64 {
    switch_util::require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("sent.pcap");
    let access = |m: VlanMode| match m {
        VlanMode::Access(n) => Some(n),
        VlanMode::Trunk => None,
    };
    let mut lab = Lab::start(LabOptions {
        access_vlan: [access(modes[0]), access(modes[1])],
        config: SwitchConfig {
            pcap: Some(pcap.clone()),
            ..SwitchConfig::default()
        },
        ..LabOptions::default()
    })
    .expect("lab");
    let tap = lab.taps[0].clone();
    let tx = in_netns(lab.ns[0].name(), move || RawSender::open(&tap)).expect("raw socket");
    let sent: Vec<Vec<u8>> = [
        None,
        Some((5, 0)),
        Some((0, 0)),
        Some((3, 10)),
        Some((0, 7)),
        Some((0, 4094)),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, tag)| frame(tag, i as u8 + 1))
    .collect();
    for f in &sent {
        tx.send(f).expect("send");
    }
    std::thread::sleep(Duration::from_millis(300));
    let stats = lab.stop().expect("stop");
    let bytes = std::fs::read(&pcap).expect("capture");
    let mut reader = PcapReader::new(&bytes[..]).expect("pcap");
    let mut got: Vec<Vec<u8>> = Vec::new();
    while let Some(rec) = reader.next_record().expect("record") {
        if marker_of(rec.data).is_some() {
            got.push(rec.data.to_vec());
        }
    }
    for f in &sent {
        let marker = marker_of(f).expect("own frame");
        let out: Vec<&Vec<u8>> = got
            .iter()
            .filter(|g| marker_of(g) == Some(marker))
            .collect();
        match expected(modes[0], modes[1], f) {
            Some(want) => assert_eq!(
                out,
                vec![&want],
                "{modes:?}: frame tagged {:?} sent as",
                frame_vid(f)
            ),
            None => assert!(
                out.is_empty(),
                "{modes:?}: frame tagged {:?} must not leave, sent {out:02x?}",
                frame_vid(f)
            ),
        }
    }
    switch_util::port(&stats, 0).drops_of(DropCause::Vlan)
}

#[test]
fn access_to_trunk_tags_with_the_port_vlan() {
    let drops = run([VlanMode::Access(10), VlanMode::Trunk]);
    // Tagged frames of a real VLAN (10, 7, 4094) are refused on an access port.
    assert_eq!(drops, 3);
    // Untagged and priority-tagged frames join VLAN 10; a priority tag keeps its PCP.
    assert_eq!(
        expected(
            VlanMode::Access(10),
            VlanMode::Trunk,
            &frame(Some((5, 0)), 2)
        ),
        Some(frame(Some((5, 10)), 2))
    );
    assert_eq!(
        expected(VlanMode::Access(10), VlanMode::Trunk, &frame(None, 1)),
        Some(frame(Some((0, 10)), 1))
    );
}

#[test]
fn trunk_to_access_delivers_only_the_port_vlan_untagged() {
    let drops = run([VlanMode::Trunk, VlanMode::Access(10)]);
    assert_eq!(drops, 0);
    assert_eq!(
        expected(
            VlanMode::Trunk,
            VlanMode::Access(10),
            &frame(Some((3, 10)), 4)
        ),
        Some(frame(None, 4))
    );
    assert_eq!(
        expected(VlanMode::Trunk, VlanMode::Access(10), &frame(None, 1)),
        None
    );
}

#[test]
fn trunk_to_trunk_keeps_tags_and_pops_priority_tags() {
    let drops = run([VlanMode::Trunk, VlanMode::Trunk]);
    assert_eq!(drops, 0);
    assert_eq!(
        expected(VlanMode::Trunk, VlanMode::Trunk, &frame(Some((0, 7)), 5)),
        Some(frame(Some((0, 7)), 5))
    );
    assert_eq!(
        expected(VlanMode::Trunk, VlanMode::Trunk, &frame(Some((5, 0)), 2)),
        Some(frame(None, 2))
    );
}

#[test]
fn access_to_access_sends_untagged() {
    let drops = run([VlanMode::Access(10), VlanMode::Access(10)]);
    assert_eq!(drops, 3);
    assert_eq!(
        expected(
            VlanMode::Access(10),
            VlanMode::Access(10),
            &frame(Some((5, 0)), 2)
        ),
        Some(frame(None, 2))
    );
}
