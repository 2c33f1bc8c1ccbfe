//! Helpers shared by the `pvnet pcap …` end-to-end tests: run the binary, find the shipped
//! samples, read captures back, ask tshark for its checksum verdicts.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pvnet_linux::pcap::{PcapReader, Timestamp};

pub fn pvnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pvnet"))
        .args(args)
        .output()
        .expect("run pvnet")
}

pub fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../samples")
        .join(name)
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Assert exit status 0, showing stderr otherwise.
pub fn ok(o: &Output) {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
}

/// Every record of a capture: timestamp and bytes. Also checks that no record was cut
/// (what pvnet writes always has its original length).
pub fn records(file: &Path) -> Vec<(Timestamp, Vec<u8>)> {
    let bytes = std::fs::read(file).unwrap();
    let mut r = PcapReader::new(&bytes[..]).unwrap();
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        assert_eq!(rec.orig_len as usize, rec.data.len(), "{}", file.display());
        out.push((rec.ts, rec.data.to_vec()));
    }
    out
}

/// tshark's checksum status per frame as (ip, tcp, udp), each "" when the frame has no
/// such layer. Status codes: 0 bad, 1 good, 2 unverified, 3 not present, 4 illegal.
pub fn tshark_checksums(file: &Path) -> Vec<(String, String, String)> {
    let out = Command::new("tshark")
        .args([
            "-n",
            "-r",
            path(file),
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-T",
            "fields",
            "-E",
            "occurrence=f",
            "-e",
            "ip.checksum.status",
            "-e",
            "tcp.checksum.status",
            "-e",
            "udp.checksum.status",
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "tshark is required for this test and could not be run ({e}); install it: \
                 apt-get install tshark (scripts/test does)"
            )
        });
    assert!(out.status.success(), "tshark failed: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| {
            let mut f = l.split('\t').map(str::to_owned);
            (
                f.next().unwrap_or_default(),
                f.next().unwrap_or_default(),
                f.next().unwrap_or_default(),
            )
        })
        .collect()
}

/// Assert that tshark finds every checksum it verifies in `file` good.
pub fn assert_tshark_all_good(file: &Path) {
    for (i, (ip, tcp, udp)) in tshark_checksums(file).iter().enumerate() {
        for s in [ip, tcp, udp] {
            assert!(
                s.is_empty() || s == "1",
                "{} frame {}: tshark checksum status ip {ip:?} tcp {tcp:?} udp {udp:?}",
                file.display(),
                i + 1
            );
        }
    }
}
