//! Helpers shared by the switch integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pvnet::switch::lab::Lab;
use pvnet_core::switch::counters::PortCounters;
use pvnet_linux::netns::Netns;

/// The `pvnet` binary under test.
pub fn pvnet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pvnet"))
}

/// Kills the child switch if the test fails half-way.
pub struct Reap(pub Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Whether the device `name` exists in `ns`.
pub fn tap_exists(ns: &Netns, name: &str) -> bool {
    ns.run(&["link", "show", "dev", name]).is_ok()
}

/// A `pvnet switch` process with its control socket in a directory of its own; killed
/// when dropped.
pub struct Daemon {
    pub child: Reap,
    pub ctl: PathBuf,
    /// Where its stderr goes.
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Start `pvnet switch ARGS --ctl DIR/ctl.sock -v` and wait until it answers.
    pub fn start(args: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctl = dir.path().join("ctl.sock");
        let log = dir.path().join("switch.log");
        let child = pvnet()
            .arg("switch")
            .args(args)
            .arg("--ctl")
            .arg(&ctl)
            .arg("-v")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn pvnet switch");
        let mut d = Daemon {
            child: Reap(child),
            ctl,
            log,
            _dir: dir,
        };
        let start = Instant::now();
        while d.ctl(&["version"]).status.code() != Some(0) {
            if let Ok(Some(st)) = d.child.0.try_wait() {
                panic!("switch exited with {st}: {}", d.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the switch never answered: {}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    /// Run `pvnet ctl --ctl SOCKET ARGS`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        ctl_at(&self.ctl, args)
    }

    /// `pvnet ctl … ARGS` that must succeed: its stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "pvnet ctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `pvnet ctl --json … ARGS`, parsed.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let text = self.ctl_ok(&a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    }

    /// The names in `port list`, in order.
    pub fn port_names(&self) -> Vec<String> {
        let v = self.ctl_json(&["port", "list"]);
        v.as_array()
            .expect("array")
            .iter()
            .map(|p| p["name"].as_str().expect("name").to_owned())
            .collect()
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Run `pvnet ctl --ctl SOCKET ARGS`.
pub fn ctl_at(sock: &Path, args: &[&str]) -> Output {
    pvnet()
        .arg("ctl")
        .arg("--ctl")
        .arg(sock)
        .args(args)
        .output()
        .expect("run pvnet ctl")
}

/// The switch tests create namespaces and taps: without root they fail and say why.
#[track_caller]
pub fn require_root() {
    pvnet_linux::testing::require_root("the switch tests (network namespaces and taps)");
}

/// Counters of port `i`.
pub fn port(stats: &[(String, PortCounters)], i: usize) -> PortCounters {
    stats[i].1
}

/// TCP both ways over IPv4 and IPv6, UDP echo both ways over IPv4 and IPv6; panics with
/// the pairing name on any loss or corruption, or a checksum error in either namespace.
pub fn traffic_both_ways(lab: &Lab, what: &str, tcp_bytes: u64) {
    for v6 in [false, true] {
        for from in 0..2 {
            let t = lab
                .tcp(from, v6, tcp_bytes, std::time::Duration::ZERO, None)
                .unwrap_or_else(|e| panic!("{what}: tcp from {from} v6={v6}: {e}"));
            assert!(
                t.intact && t.received == tcp_bytes,
                "{what}: tcp from {from} v6={v6}: sent {}, received {}, intact {}",
                t.sent,
                t.received,
                t.intact
            );
            let sizes = [64, 700, 1400, 3000, 9000];
            let ok = lab
                .udp_echo(from, v6, 20, &sizes)
                .unwrap_or_else(|e| panic!("{what}: udp from {from} v6={v6}: {e}"));
            assert_eq!(
                ok, 20,
                "{what}: udp from {from} v6={v6}: {ok}/20 echoed intact"
            );
        }
    }
    for side in 0..2 {
        let (tcp, udp) = lab.csum_errors(side).expect("nstat");
        assert_eq!(
            (tcp, udp),
            (0, 0),
            "{what}: checksum errors in namespace {side} (TcpInCsumErrors, UdpInCsumErrors)"
        );
    }
}
