//! `pvnet pcap coalesce` end to end: segmenting the shipped super-frames and coalescing the
//! result gives back the super-frames byte for byte (with completed checksums), windows and
//! size limits are honoured, and tshark finds every checksum good.

mod common;
use common::*;

use pvnet_core::offload::checksum::{verify_frame, Verdict};
use pvnet_core::wire::{parse, Start, L4};

/// super-frames → segment → coalesce == super-frames with their checksums completed.
#[test]
fn coalescing_undoes_segmentation_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["superframes.pcap", "superframes.pcapng"] {
        let (fixed, wire, gro) = (
            dir.path().join(format!("fixed-{name}")),
            dir.path().join(format!("wire-{name}")),
            dir.path().join(format!("gro-{name}")),
        );
        let o = pvnet(&["pcap", "csum", path(&sample(name)), "--fix", path(&fixed)]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        ok(&pvnet(&[
            "pcap",
            "segment",
            path(&sample(name)),
            path(&wire),
            "--mss",
            "1448",
        ]));
        let o = pvnet(&["pcap", "coalesce", path(&wire), path(&gro), "--json"]);
        ok(&o);
        let summary = stderr(&o);
        assert!(summary.contains("\"frames_in\":69"), "{summary}");
        assert!(summary.contains("\"superframes_out\":8"), "{summary}");
        assert!(summary.contains("\"frames_out\":13"), "{summary}");

        let want = records(&fixed);
        let got = records(&gro);
        assert_eq!(got.len(), want.len());
        for (i, ((wts, w), (gts, g))) in want.iter().zip(&got).enumerate() {
            assert!(
                w == g,
                "{name} frame {}: coalesced frame differs from the original",
                i + 1
            );
            assert_eq!(
                wts,
                gts,
                "{name} frame {}: timestamp of the first merged frame",
                i + 1
            );
        }
    }
}

#[test]
fn window_and_max_size_bound_the_super_frames() {
    let dir = tempfile::tempdir().unwrap();
    let wire = dir.path().join("wire.pcap");
    ok(&pvnet(&[
        "pcap",
        "segment",
        path(&sample("superframes.pcap")),
        path(&wire),
        "--mss",
        "1000",
    ]));
    let wire_frames = records(&wire);

    let small = dir.path().join("window4.pcap");
    ok(&pvnet(&[
        "pcap",
        "coalesce",
        path(&wire),
        path(&small),
        "--window",
        "4",
    ]));
    let big = dir.path().join("sized.pcap");
    ok(&pvnet(&[
        "pcap",
        "coalesce",
        path(&wire),
        path(&big),
        "--max-size",
        "9000",
    ]));

    for (file, max_segments, max_ip) in [(&small, 4, 65535), (&big, 64, 9000)] {
        let frames = records(file);
        assert!(frames.len() < wire_frames.len(), "something was coalesced");
        let mut payload = Vec::new();
        for (_, f) in &frames {
            let l = parse(f, Start::Ethernet).unwrap();
            assert!(l.ip_end - l.l3_offset <= max_ip);
            if l.l4 == Some(L4::Tcp) {
                assert!(
                    l.payload_len() <= max_segments * 1000,
                    "{}",
                    l.payload_len()
                );
            }
            let v = verify_frame(f, Start::Ethernet);
            assert!(
                matches!(v.l4, Verdict::Good | Verdict::NotApplicable),
                "{v:?}"
            );
            if matches!(l.l4, Some(L4::Tcp) | Some(L4::Udp)) {
                payload.extend_from_slice(&f[l.payload_offset..l.ip_end]);
            }
        }
        let mut before = Vec::new();
        for (_, f) in &wire_frames {
            let l = parse(f, Start::Ethernet).unwrap();
            if matches!(l.l4, Some(L4::Tcp) | Some(L4::Udp)) {
                before.extend_from_slice(&f[l.payload_offset..l.ip_end]);
            }
        }
        assert!(
            payload == before,
            "{}: payload bytes or their order changed",
            file.display()
        );
    }

    // tshark agrees that every checksum of the coalesced output is good.
    assert_tshark_all_good(&big);
}

#[test]
fn frames_that_cannot_merge_are_copied_unchanged() {
    // The mixed sample: bad and partial checksums, ARP, ICMP... nothing merges, nothing
    // is lost or changed.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mixed.pcap");
    ok(&pvnet(&[
        "pcap",
        "coalesce",
        path(&sample("mixed.pcap")),
        path(&out),
    ]));
    assert_eq!(records(&out), records(&sample("mixed.pcap")));
}
