//! `pvnet pcap segment` end to end on the shipped super-frame sample: tshark validates every
//! checksum of the output, sizes respect the MSS/MTU, payloads survive byte for byte.

use std::path::{Path, PathBuf};

mod common;
use common::*;

use pvnet_core::offload::checksum::{verify_frame, Verdict};
use pvnet_core::wire::{parse, Start, L4};

fn frames(file: &Path) -> Vec<Vec<u8>> {
    records(file).into_iter().map(|(_, f)| f).collect()
}

/// The TCP and UDP payload bytes of a capture, in frame order: segmentation must keep
/// every byte and its order, so this is the same before and after (for USO every segment
/// is a datagram; UFO fragments are not parsed as UDP past the first and are left out).
fn l4_bytes(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        let Ok(l) = parse(f, Start::Ethernet) else {
            continue;
        };
        if matches!(l.l4, Some(L4::Tcp) | Some(L4::Udp)) && !l.fragment {
            out.extend_from_slice(&f[l.payload_offset..l.ip_end]);
        }
    }
    out
}

/// Run `pvnet pcap segment` on the super-frame sample with `args` and assert success;
/// returns the output file (inside the returned temporary directory, kept alive by it).
fn segment_sample(args: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.pcap");
    let input = sample("superframes.pcap");
    let mut all = vec!["pcap", "segment", path(&input), path(&out)];
    all.extend_from_slice(args);
    ok(&pvnet(&all));
    (dir, out)
}

#[test]
fn segmented_output_is_valid_for_tshark_and_keeps_every_payload_byte() {
    let dir = tempfile::tempdir().unwrap();
    for input in ["superframes.pcap", "superframes.pcapng"] {
        let out = dir.path().join(format!("wire-{input}"));
        let o = pvnet(&[
            "pcap",
            "segment",
            sample(input).to_str().unwrap(),
            out.to_str().unwrap(),
            "--mss",
            "1448",
            "--json",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let summary = stderr(&o);
        assert!(summary.contains("\"frames_in\":13"), "{summary}");
        // 30000, 4000, 20000, 7777, 12000, 5000 TCP + 5000, 4000 UDP bytes at 1448 each.
        assert!(summary.contains("\"superframes_segmented\":8"), "{summary}");
        assert!(summary.contains("\"segments_out\":64"), "{summary}");
        assert!(summary.contains("\"malformed_skipped\":0"), "{summary}");

        let input_frames = frames(&sample(input));
        let output_frames = frames(&out);
        assert_eq!(output_frames.len(), 13 - 8 + 64);
        for f in &output_frames {
            let l = parse(f, Start::Ethernet).unwrap();
            assert!(
                l.payload_len() <= 1448,
                "segment payload {}",
                l.payload_len()
            );
            let v = verify_frame(f, Start::Ethernet);
            assert!(
                matches!(v.l4, Verdict::Good | Verdict::NotApplicable),
                "{v:?}"
            );
            assert!(v.ip != Verdict::Bad);
        }
        let (before, after) = (l4_bytes(&input_frames), l4_bytes(&output_frames));
        assert!(before.len() > 80_000, "{} payload bytes", before.len());
        assert!(before == after, "payload bytes differ after segmentation");

        assert_tshark_all_good(&out);
    }
}

#[test]
fn partial_mode_leaves_pseudo_header_sums() {
    let (dir, out) = segment_sample(&["--mss", "1000", "--csum", "partial"]);
    for f in frames(&out) {
        let v = verify_frame(&f, Start::Ethernet);
        let l = parse(&f, Start::Ethernet).unwrap();
        if matches!(l.l4, Some(L4::Tcp) | Some(L4::Udp)) {
            assert_eq!(v.l4, Verdict::Partial, "{v:?}");
        }
    }
    // And `pcap csum --fix` completes them all: the two tools agree on what partial means.
    let fixed = dir.path().join("fixed.pcap");
    let o = pvnet(&[
        "pcap",
        "csum",
        out.to_str().unwrap(),
        "--fix",
        fixed.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let o = pvnet(&["pcap", "csum", fixed.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn mtu_derives_the_mss_per_frame() {
    let (_dir, out) = segment_sample(&["--mtu", "1500"]);
    let mut full_sized = 0;
    for f in frames(&out) {
        let l = parse(&f, Start::Ethernet).unwrap();
        let ip_len = l.ip_end - l.l3_offset;
        assert!(ip_len <= 1500, "IP packet of {ip_len} bytes");
        full_sized += usize::from(ip_len == 1500);
    }
    assert!(
        full_sized > 20,
        "segments should fill the MTU, {full_sized} did"
    );
}

#[test]
fn ufo_fragments_reassemble_to_valid_datagrams() {
    let (_dir, out) = segment_sample(&["--mtu", "1500", "--udp", "ufo"]);
    let fr = frames(&out);
    let fragments = fr
        .iter()
        .filter(|f| parse(f, Start::Ethernet).is_ok_and(|l| l.fragment))
        .count();
    assert!(fragments >= 7, "{fragments} fragments");
    // tshark reassembles the fragments and verifies the UDP checksum of each datagram.
    let statuses = tshark_checksums(&out);
    let udp_good = statuses.iter().filter(|(_, _, udp)| udp == "1").count();
    assert_eq!(
        udp_good, 3,
        "two reassembled UFO datagrams and the small one: {statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|(ip, tcp, udp)| ip != "0" && tcp != "0" && udp != "0"),
        "{statuses:?}"
    );
}

#[test]
fn bad_input_gives_exit_2_and_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.pcap");
    let o = pvnet(&[
        "pcap",
        "segment",
        "/nonexistent.pcap",
        out.to_str().unwrap(),
        "--mss",
        "1448",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot open /nonexistent.pcap"),
        "{}",
        stderr(&o)
    );
    // Neither --mss nor --mtu: clap explains.
    let o = pvnet(&["pcap", "segment", "a", "b"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--mss"), "{}", stderr(&o));
}
