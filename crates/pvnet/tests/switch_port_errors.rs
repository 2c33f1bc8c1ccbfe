//! What `pvnet switch` says when a port cannot be had: each message names the cause.

mod switch_util;

use std::process::{Command, Output};

fn pvnet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pvnet"))
}

fn switch(args: &[&str]) -> Output {
    pvnet()
        .arg("switch")
        .args(args)
        .output()
        .expect("run pvnet switch")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unknown_kind_lists_the_kinds_a_switch_takes() {
    let out = switch(&["vhost:x"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("unknown port kind \"vhost\"") && err.contains("valid kinds: tap, packet"),
        "{err}"
    );
    for refused in ["tun", "pcap"] {
        assert!(!err.contains(refused), "{refused} offered: {err}");
    }
}
