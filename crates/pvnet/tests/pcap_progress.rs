//! The progress bar of `pvnet pcap segment`/`coalesce`: drawn on a terminal for inputs of
//! 100 MB or more and erased before the summary; never seen through a pipe.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::*;

/// A classic pcap file of two 50 MB frames of zeros (not IP: copied unchanged), sparse so
/// that it takes no disk space.
fn big_capture(dir: &Path) -> PathBuf {
    const FRAME: u32 = 50_000_000;
    let file = dir.join("big.pcap");
    let mut f = std::fs::File::create(&file).unwrap();
    let mut header = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    header.extend_from_slice(&[0; 8]);
    header.extend_from_slice(&262_144u32.to_le_bytes());
    header.extend_from_slice(&1u32.to_le_bytes());
    f.write_all(&header).unwrap();
    for i in 0..2u32 {
        for field in [1_700_000_000 + i, 0, FRAME, FRAME] {
            f.write_all(&field.to_le_bytes()).unwrap();
        }
        f.seek(SeekFrom::Current(i64::from(FRAME))).unwrap();
    }
    let end = f.stream_position().unwrap();
    f.set_len(end).unwrap();
    assert!(end >= 100_000_000);
    file
}

fn tool_args<'a>(tool: &'a str, input: &'a Path) -> Vec<&'a str> {
    let mut args = vec!["pcap", tool, path(input), "/dev/null"];
    if tool == "segment" {
        args.extend(["--mss", "1448"]);
    }
    args
}

#[test]
fn a_pipe_sees_only_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let input = big_capture(dir.path());
    for tool in ["segment", "coalesce"] {
        let o = pvnet(&tool_args(tool, &input));
        ok(&o);
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{tool}: {err:?}");
        assert!(err.starts_with("/dev/null: 2 frames in"), "{tool}: {err:?}");
        assert!(
            !err.contains('\r') && !err.contains('\x1b'),
            "{tool}: {err:?}"
        );
    }
}

#[test]
fn a_terminal_sees_a_bar_erased_before_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let input = big_capture(dir.path());
    // script(1) runs the command on a pseudo-terminal and copies what it writes.
    let command = format!(
        "{} {}",
        env!("CARGO_BIN_EXE_pvnet"),
        tool_args("segment", &input).join(" ")
    );
    let o = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("script(1) (util-linux) is required for this test: {e}"));
    assert!(o.status.success(), "{}", stderr(&o));
    let seen = stdout(&o);
    assert!(
        seen.contains("segmenting [") && seen.contains("100.00 MB"),
        "no bar: {seen:?}"
    );
    // The bar's last drawing is erased (ESC [2K: erase the line) before the summary.
    let (before, summary) = seen
        .split_once("/dev/null: 2 frames in")
        .unwrap_or_else(|| panic!("no summary: {seen:?}"));
    let last_bar = before.rfind("segmenting [").unwrap_or(0);
    assert!(
        before[last_bar..].contains("\x1b[2K"),
        "the bar is not erased before the summary: {seen:?}"
    );
    assert!(!summary.contains("segmenting ["), "{seen:?}");
}
