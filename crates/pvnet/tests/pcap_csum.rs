//! `pvnet pcap csum` end to end: verdicts cross-checked against tshark's own checksum
//! validation on the shipped samples, `--fix` output validated by tshark, exit statuses and
//! error reporting.

use std::path::Path;

mod common;
use common::*;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    frame: u64,
    ip: String,
    proto: String,
    l4: String,
}

/// Parse `--json` output with a deliberately strict reading of the documented format.
fn json_rows(out: &str) -> Vec<Row> {
    out.lines()
        .map(|line| {
            let rest = line
                .strip_prefix("{\"frame\":")
                .unwrap_or_else(|| panic!("bad JSON line {line:?}"));
            let (n, rest) = rest.split_once(",\"ip_checksum\":\"").expect("ip_checksum");
            let (ip, rest) = rest
                .split_once("\",\"l4_protocol\":\"")
                .expect("l4_protocol");
            let (proto, rest) = rest
                .split_once("\",\"l4_checksum\":\"")
                .expect("l4_checksum");
            let l4 = rest.strip_suffix("\"}").expect("closing brace");
            Row {
                frame: n.parse().expect("frame number"),
                ip: ip.into(),
                proto: proto.into(),
                l4: l4.into(),
            }
        })
        .collect()
}

/// Map tshark's status codes (0 bad, 1 good, 2 unverified, 3 not present, 4 illegal) onto
/// our verdicts. tshark has no notion of a partial checksum: to it, it is bad.
fn agrees(ours: &str, tshark: &str) -> bool {
    match ours {
        "good" => tshark == "1",
        "bad" => tshark == "0" || tshark == "4",
        "partial" => tshark == "0",
        "absent" => tshark == "3",
        "n/a" => tshark.is_empty() || tshark == "2",
        _ => false,
    }
}

fn cross_check(file: &Path) -> Vec<Row> {
    let out = pvnet(&["pcap", "csum", file.to_str().unwrap(), "--json"]);
    let rows = json_rows(&stdout(&out));
    let theirs = tshark_checksums(file);
    assert_eq!(
        rows.len(),
        theirs.len(),
        "frame count of {}",
        file.display()
    );
    for (i, (row, (ip, tcp, udp))) in rows.iter().zip(&theirs).enumerate() {
        assert_eq!(row.frame, i as u64 + 1);
        assert!(
            agrees(&row.ip, ip),
            "{} frame {}: ip checksum ours {} tshark {ip:?}",
            file.display(),
            row.frame,
            row.ip
        );
        // tshark also dissects the TCP/UDP header quoted inside ICMP errors; compare the
        // transport verdict only where the frame itself is TCP or UDP.
        let theirs_l4 = match row.proto.as_str() {
            "tcp" => tcp,
            "udp" => udp,
            _ => {
                assert_eq!(row.l4, "n/a", "frame {}: {row:?}", row.frame);
                continue;
            }
        };
        assert!(
            agrees(&row.l4, theirs_l4),
            "{} frame {}: {} checksum ours {} tshark {theirs_l4:?}",
            file.display(),
            row.frame,
            row.proto,
            row.l4
        );
    }
    rows
}

fn count(rows: &[Row], l4: &str) -> usize {
    rows.iter().filter(|r| r.l4 == l4).count()
}

#[test]
fn verdicts_agree_with_tshark_on_every_sample() {
    for name in [
        "clean.pcap",
        "mixed.pcap",
        "mixed.pcapng",
        "ipv6-routing.pcap",
        "tx-offload.pcapng",
    ] {
        cross_check(&sample(name));
    }
    // The samples really hold every verdict (the cross-check would be weak otherwise).
    let mixed = cross_check(&sample("mixed.pcapng"));
    for v in ["good", "bad", "partial", "absent", "n/a"] {
        assert!(count(&mixed, v) > 0, "mixed sample has no {v} checksum");
    }
    assert!(mixed.iter().any(|r| r.ip == "bad"));
    let offload = cross_check(&sample("tx-offload.pcapng"));
    assert!(count(&offload, "partial") >= 10);
}

#[test]
fn fix_writes_a_copy_tshark_finds_clean() {
    let dir = tempfile::tempdir().unwrap();
    for (name, ext) in [
        ("mixed.pcap", "pcap"),
        ("mixed.pcapng", "pcapng"),
        ("tx-offload.pcapng", "pcapng"),
    ] {
        let out = dir.path().join(format!("fixed-{name}"));
        let first = pvnet(&[
            "pcap",
            "csum",
            sample(name).to_str().unwrap(),
            "--fix",
            out.to_str().unwrap(),
        ]);
        assert_eq!(first.status.code(), Some(1), "{name}: {}", stderr(&first));
        assert!(
            stderr(&first).contains("frames fixed"),
            "{}",
            stderr(&first)
        );
        // Same format as the input.
        let magic = std::fs::read(&out).unwrap()[..4].to_vec();
        let want: &[u8] = if ext == "pcap" {
            &[0xd4, 0xc3, 0xb2, 0xa1]
        } else {
            &[0x0a, 0x0d, 0x0d, 0x0a]
        };
        assert_eq!(magic, want);
        let rows = cross_check(&out);
        assert_eq!(
            count(&rows, "bad") + count(&rows, "partial"),
            0,
            "{name}: {rows:?}"
        );
        assert!(rows.iter().all(|r| r.ip != "bad"));
        let second = pvnet(&["pcap", "csum", out.to_str().unwrap()]);
        assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    }
}

#[test]
fn exit_status_and_summary() {
    let clean = pvnet(&["pcap", "csum", sample("clean.pcap").to_str().unwrap()]);
    assert_eq!(clean.status.code(), Some(0));
    let summary = stderr(&clean);
    assert!(summary.contains("13 frames"), "{summary}");
    assert_eq!(
        stdout(&clean).lines().count(),
        14,
        "header + one line per frame"
    );

    let mixed = pvnet(&["pcap", "csum", sample("mixed.pcap").to_str().unwrap()]);
    assert_eq!(mixed.status.code(), Some(1));
    assert!(stderr(&mixed).contains("4 partial"), "{}", stderr(&mixed));
}

#[test]
fn truncated_file_reports_frames_before_the_damage_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(sample("clean.pcap")).unwrap();
    let cut = dir.path().join("cut.pcap");
    // 24-byte header, then records of 16 + len bytes: cut inside the 4th record.
    let mut off = 24;
    for _ in 0..3 {
        let len = u32::from_le_bytes(whole[off + 8..off + 12].try_into().unwrap()) as usize;
        off += 16 + len;
    }
    std::fs::write(&cut, &whole[..off + 20]).unwrap();
    let out = pvnet(&["pcap", "csum", cut.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json_rows(&stdout(&out)).len(), 3);
    let err = stderr(&out);
    assert!(
        err.contains("record 4") && err.contains("truncated"),
        "{err}"
    );
    assert!(err.contains("3 frames"), "{err}");
}

#[test]
fn unreadable_inputs_exit_2_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = pvnet(&["pcap", "csum", "/nonexistent/capture.pcap"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("cannot open /nonexistent/capture.pcap"));

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "hello, not a capture").unwrap();
    let not_cap = pvnet(&["pcap", "csum", text.to_str().unwrap()]);
    assert_eq!(not_cap.status.code(), Some(2));
    assert!(
        stderr(&not_cap).contains("not a pcap or pcapng file"),
        "{}",
        stderr(&not_cap)
    );

    // Link type 113 (Linux cooked capture) is not read: a clear error, exit 2.
    let mut sll = std::fs::read(sample("clean.pcap")).unwrap();
    sll[20..24].copy_from_slice(&113u32.to_le_bytes());
    let sll_path = dir.path().join("sll.pcap");
    std::fs::write(&sll_path, sll).unwrap();
    let out = pvnet(&["pcap", "csum", sll_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("frame 1: link type 113 is not supported"),
        "{}",
        stderr(&out)
    );

    // Refuses to overwrite its own input.
    let copy = dir.path().join("copy.pcap");
    std::fs::copy(sample("mixed.pcap"), &copy).unwrap();
    let out = pvnet(&[
        "pcap",
        "csum",
        copy.to_str().unwrap(),
        "--fix",
        copy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is the input file itself"));
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(sample("mixed.pcap")).unwrap()
    );
}

#[test]
fn raw_ip_captures_are_read() {
    // Strip the Ethernet headers of the IPv4/IPv6 frames of the clean sample into a
    // LINKTYPE_RAW capture: verdicts must not change.
    use pvnet_linux::pcap::{build_pcap, PcapReader, Timestamp, LINKTYPE_RAW};
    let bytes = std::fs::read(sample("clean.pcap")).unwrap();
    let mut reader = PcapReader::new(&bytes[..]).unwrap();
    let mut frames = Vec::new();
    while let Some(r) = reader.next_record().unwrap() {
        let et = u16::from_be_bytes([r.data[12], r.data[13]]);
        if et == 0x0800 || et == 0x86DD {
            frames.push(r.data[14..].to_vec());
        }
    }
    let list: Vec<(Timestamp, &[u8])> = frames
        .iter()
        .map(|f| (Timestamp::from_nanos(0), &f[..]))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw.pcap");
    std::fs::write(&raw, build_pcap(LINKTYPE_RAW, &list).unwrap()).unwrap();
    let out = pvnet(&["pcap", "csum", raw.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = json_rows(&stdout(&out));
    assert_eq!(rows.len(), frames.len());
    assert!(rows
        .iter()
        .all(|r| r.l4 == "good" || r.l4 == "absent" || r.proto == "other"));
}

#[test]
fn a_record_claiming_more_than_the_file_holds_is_reported_as_truncated() {
    // The file header of the clean sample, then a record header claiming 64 MiB and no
    // data: 40 bytes. (pvnet-linux's pcap_alloc test checks nothing near 64 MiB is
    // allocated for it.)
    let mut bytes = std::fs::read(sample("clean.pcap")).unwrap()[..24].to_vec();
    for field in [1_700_000_000u32, 0, 64 << 20, 64 << 20] {
        bytes.extend_from_slice(&field.to_le_bytes());
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("claims-64m.pcap");
    std::fs::write(&file, &bytes).unwrap();
    let out = pvnet(&["pcap", "csum", path(&file)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("truncated at byte offset 24 while reading record 1")
            && err.contains("ends after 16 of 67108880 bytes"),
        "{err}"
    );
    assert!(err.contains("0 frames"), "{err}");
}
