//! What every capture-rewriting tool (`csum --fix`, `segment`, `coalesce`) must do alike,
//! whatever it does to the frames: keep odd but readable timestamps as they are.

use std::path::Path;

use pvnet_linux::pcap::{Format, PcapReader};

mod common;
use common::*;

/// Offsets of the record headers of a little-endian classic pcap file.
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    assert_eq!(
        bytes[..4],
        [0xd4, 0xc3, 0xb2, 0xa1],
        "little-endian microsecond pcap"
    );
    let mut at = 24;
    let mut out = Vec::new();
    while at < bytes.len() {
        out.push(at);
        let caplen = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
        at += 16 + caplen as usize;
    }
    assert_eq!(at, bytes.len(), "whole records");
    out
}

/// The (seconds, sub-second) fields of every record, as stored.
fn ts_fields(file: &Path) -> Vec<(u32, u32)> {
    let bytes = std::fs::read(file).unwrap();
    let field = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    record_offsets(&bytes)
        .into_iter()
        .map(|at| (field(at), field(at + 4)))
        .collect()
}

/// A copy of a shipped sample in `dir` whose record `i` has seconds 0xFFFFFFFF and a
/// microsecond field of 1,000,000 + 1000·i: malformed (libpcap and Wireshark read it as
/// 2^32 s and more), and past 32 bits of seconds once normalised.
fn with_overflowing_ts(dir: &Path, sample_name: &str) -> std::path::PathBuf {
    let mut bytes = std::fs::read(sample(sample_name)).unwrap();
    for (i, at) in record_offsets(&bytes).into_iter().enumerate() {
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        bytes[at + 4..at + 8].copy_from_slice(&(1_000_000 + 1000 * i as u32).to_le_bytes());
    }
    let file = dir.join(format!("odd-ts-{sample_name}"));
    std::fs::write(&file, bytes).unwrap();
    file
}

#[test]
fn sub_second_fields_of_a_second_or_more_are_carried_through_unchanged() {
    let dir = tempfile::tempdir().unwrap();

    // csum reads them, and --fix writes every record with its fields as they were.
    let mixed = with_overflowing_ts(dir.path(), "mixed.pcap");
    let fixed = dir.path().join("fixed.pcap");
    let o = pvnet(&["pcap", "csum", path(&mixed), "--fix", path(&fixed)]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "bad checksums found: {}",
        stderr(&o)
    );
    let n = ts_fields(&mixed).len();
    assert!(
        stderr(&o).contains(&format!("frames fixed, {n} written")),
        "{}",
        stderr(&o)
    );
    assert_eq!(ts_fields(&fixed), ts_fields(&mixed));
    ok(&pvnet(&["pcap", "csum", path(&fixed)]));

    // Nothing to fix: the copy is the input, byte for byte.
    let clean = with_overflowing_ts(dir.path(), "clean.pcap");
    let copy = dir.path().join("copy.pcap");
    ok(&pvnet(&[
        "pcap",
        "csum",
        path(&clean),
        "--fix",
        path(&copy),
    ]));
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(&clean).unwrap()
    );

    // segment: every segment keeps its super-frame's fields.
    let supers = with_overflowing_ts(dir.path(), "superframes.pcap");
    let wire = dir.path().join("wire.pcap");
    ok(&pvnet(&[
        "pcap",
        "segment",
        path(&supers),
        path(&wire),
        "--mss",
        "1448",
    ]));
    let mut segmented = ts_fields(&wire);
    assert!(segmented.len() > ts_fields(&supers).len());
    segmented.dedup();
    assert_eq!(segmented, ts_fields(&supers));

    // coalesce: every super-frame keeps the fields of its first frame.
    let gro = dir.path().join("gro.pcap");
    ok(&pvnet(&["pcap", "coalesce", path(&wire), path(&gro)]));
    let merged = ts_fields(&gro);
    assert!(merged.len() < ts_fields(&wire).len(), "something merged");
    let mut input = ts_fields(&wire).into_iter();
    for ts in &merged {
        assert!(
            input.any(|t| t == *ts),
            "{ts:?} is not an input timestamp, in order"
        );
    }
}

#[test]
fn no_frame_is_reported_written_that_did_not_reach_the_file() {
    // /dev/full takes the file header and every record into the 1 MiB output buffer, and
    // fails when it is flushed: nothing reached it, so no summary may say otherwise.
    let full = Path::new("/dev/full");
    let input = sample("superframes.pcap");
    for args in [
        vec!["pcap", "csum", path(&input), "--fix", path(full)],
        vec!["pcap", "segment", path(&input), path(full), "--mss", "1448"],
        vec!["pcap", "coalesce", path(&input), path(full)],
        vec!["pcap", "coalesce", path(&input), path(full), "--json"],
    ] {
        let o = pvnet(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("error: writing /dev/full") && err.contains("No space left on device"),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("written") && !err.contains("frames out") && !err.contains("frames_out"),
            "{args:?} claims frames were written: {err}"
        );
    }
    // csum still reports on the input it read.
    let o = pvnet(&["pcap", "csum", path(&input), "--fix", path(full)]);
    assert!(stderr(&o).contains("13 frames;"), "{}", stderr(&o));
}

#[test]
fn an_input_that_cannot_be_opened_gets_no_summary_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.pcap");
    for tool in [
        vec!["segment", "--mss", "536"],
        vec!["coalesce"],
        vec!["coalesce", "--json"],
    ] {
        let mut args = vec!["pcap", tool[0], "/nonexistent.pcap", path(&out)];
        args.extend_from_slice(&tool[1..]);
        let o = pvnet(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert_eq!(
            stderr(&o),
            "error: cannot open /nonexistent.pcap: No such file or directory (os error 2)\n",
            "{args:?}: only the error, no summary of an output that was never made"
        );
        assert!(!out.exists());
    }
}

/// Run every capture-writing tool on `input` into `out` and check it succeeds; returns
/// each run's stderr.
fn run_every_tool(input: &Path, out: &Path) -> Vec<String> {
    let runs: [&[&str]; 4] = [
        &["pcap", "segment", path(input), path(out), "--mss", "536"],
        &["pcap", "coalesce", path(input), path(out)],
        &["pcap", "coalesce", path(input), path(out), "--json"],
        &["pcap", "csum", path(input), "--fix", path(out)],
    ];
    runs.iter()
        .map(|args| {
            let _ = std::fs::remove_file(out);
            let o = pvnet(args);
            assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
            assert!(out.exists(), "{args:?} wrote no {}", out.display());
            stderr(&o)
        })
        .collect()
}

#[test]
fn captures_without_frames_give_captures_without_frames() {
    use pvnet_linux::pcap::{FileHeader, PcapHeader, PcapNgHeader, PcapWriter};
    let dir = tempfile::tempdir().unwrap();

    // Header only: the output is the same header, byte for byte.
    let mut be_nanos = PcapHeader::new(1, 65535, true);
    be_nanos.big_endian = true;
    for (name, header) in [
        (
            "le.pcap",
            FileHeader::Pcap(PcapHeader::new(1, 262_144, false)),
        ),
        ("be.pcap", FileHeader::Pcap(be_nanos)),
        (
            "le.pcapng",
            FileHeader::PcapNg(PcapNgHeader { big_endian: false }),
        ),
        (
            "be.pcapng",
            FileHeader::PcapNg(PcapNgHeader { big_endian: true }),
        ),
    ] {
        let input = dir.path().join(name);
        let bytes = PcapWriter::new(Vec::new(), header)
            .unwrap()
            .finish()
            .unwrap();
        std::fs::write(&input, &bytes).unwrap();
        let out = dir.path().join(format!("out-{name}"));
        for err in run_every_tool(&input, &out) {
            assert!(
                err.contains("0 frames") || err.contains("\"frames_out\":0"),
                "{err}"
            );
        }
        assert_eq!(std::fs::read(&out).unwrap(), bytes, "{name}");
    }

    // Empty (0 bytes, as `touch` leaves it): no format to keep, so the output's name
    // chooses one; the output is a capture others read.
    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    for (name, pcapng) in [("out.pcap", false), ("out.pcapng", true), ("out", false)] {
        let out = dir.path().join(name);
        for err in run_every_tool(&empty, &out) {
            assert!(
                err.contains("is empty (0 bytes): read as a capture with no frames"),
                "{err}"
            );
            assert!(
                err.contains("0 frames") || err.contains("\"frames_out\":0"),
                "{err}"
            );
            assert!(!err.contains("error"), "{err}");
        }
        let bytes = std::fs::read(&out).unwrap();
        let reader = PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(matches!(reader.format(), Format::PcapNg), pcapng, "{name}");
        assert!(records(&out).is_empty());
        let tshark = std::process::Command::new("tshark")
            .args(["-r", path(&out)])
            .output()
            .expect("tshark is required for this test");
        assert!(tshark.status.success(), "tshark: {}", stderr(&tshark));
        assert!(tshark.stdout.is_empty());
    }

    // csum alone reads it as fine: nothing in it is bad.
    let o = pvnet(&["pcap", "csum", path(&empty)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("0 frames"), "{}", stderr(&o));
}
