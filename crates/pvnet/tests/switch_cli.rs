//! The `pvnet switch` and `pvnet demo` command lines.

mod switch_util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use pvnet_linux::netns::Netns;
use rustix::process::{kill_process, Pid, Signal};

use switch_util::{pvnet, tap_exists, Reap};

#[test]
fn unknown_offload_name_lists_the_valid_ones() {
    let out = pvnet()
        .args(["switch", "tap:pvx0,offload=csum+turbo"])
        .output()
        .expect("run pvnet");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown offload feature \"turbo\""), "{err}");
    for name in ["csum", "tso4", "tx-tcp-segmentation", "none", "all"] {
        assert!(err.contains(name), "valid name {name} not listed: {err}");
    }
}

#[test]
fn missing_namespace_is_named() {
    switch_util::require_root();
    let out = pvnet()
        .args([
            "switch",
            "tap:pvx1,netns=pvnet-no-such-ns",
            "--print-config",
        ])
        .output()
        .expect("run pvnet");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pvnet-no-such-ns")
            && err.contains("does not exist")
            && err.contains("ip netns add"),
        "{err}"
    );
}

#[test]
fn print_config_shows_resolved_features() {
    switch_util::require_root();
    let ns = Netns::create_unique("pvcli").expect("netns");
    let a = format!(
        "tap:pvc{}a,netns={},offload=csum+sg+tso4",
        std::process::id() % 10000,
        ns.name()
    );
    let b = format!(
        "tap:pvc{}b,netns={},offload=none,vlan=7",
        std::process::id() % 10000,
        ns.name()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("sw.toml");
    std::fs::write(
        &cfg,
        format!("[switch]\nmac_table_size = 128\nageing_secs = 60\n\n[[port]]\nspec = \"{a}\"\n"),
    )
    .expect("write config");
    let out = pvnet()
        .args(["switch", "--config"])
        .arg(&cfg)
        .args([b.as_str(), "--print-config"])
        .output()
        .expect("run pvnet");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: toml::Table = toml::from_str(&text).expect("output is TOML");
    assert_eq!(doc["switch"]["mac_table_size"].as_integer(), Some(128));
    assert_eq!(doc["switch"]["ageing_secs"].as_integer(), Some(60));
    let ports = doc["port"].as_array().expect("ports");
    assert_eq!(ports.len(), 2);
    assert_eq!(ports[0]["features"].as_str(), Some("csum+sg+tso4"));
    assert!(ports[0]["features_ethtool"]
        .as_str()
        .is_some_and(|s| s.contains("tx-tcp-segmentation")));
    assert_eq!(ports[1]["features"].as_str(), Some("sg"));
    assert_eq!(ports[1]["vlan"].as_integer(), Some(7));
    assert_eq!(ports[1]["gro"].as_bool(), Some(true));
    assert_eq!(ports[0]["gro"].as_bool(), Some(false));
}

#[test]
fn switch_serves_metrics_and_exits_cleanly_on_sigterm() {
    switch_util::require_root();
    let ns = Netns::create_unique("pvcli").expect("netns");
    let id = std::process::id() % 10000;
    let (a, b) = (format!("pvm{id}a"), format!("pvm{id}b"));
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let addr = format!("127.0.0.1:{port}");
    let ctl = tempfile::tempdir().expect("tempdir");
    let child = pvnet()
        .args([
            "switch",
            &format!("tap:{a},netns={}", ns.name()),
            &format!("tap:{b},netns={},offload=none", ns.name()),
            "--metrics",
            &addr,
            "--ctl",
            &ctl.path().join("ctl.sock").display().to_string(),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pvnet switch");
    let mut child = Reap(child);
    // Wait for the metrics endpoint.
    let start = Instant::now();
    let body = loop {
        if let Ok(mut s) = TcpStream::connect(&addr) {
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
                .expect("request");
            let mut body = String::new();
            s.read_to_string(&mut body).expect("response");
            break body;
        }
        if start.elapsed() > Duration::from_secs(10) {
            panic!("metrics endpoint never came up");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(body.starts_with("HTTP/1.0 200"), "{body}");
    assert!(
        body.contains(&format!("pvnet_port_rx_packets_total{{port=\"{a}\"}}")),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "pvnet_port_drops_total{{port=\"{b}\",cause=\"parse\"}}"
        )),
        "{body}"
    );
    for series in [
        "pvnet_port_removed_total{cause=\"device_gone\"} 0",
        "pvnet_port_removed_total{cause=\"deleted\"} 0",
        "pvnet_mac_table_capacity 4096",
        "# TYPE pvnet_mac_table_entries gauge",
    ] {
        assert!(body.contains(series), "{series} in {body}");
    }
    let mut s = TcpStream::connect(&addr).expect("connect");
    s.write_all(b"GET /nothing HTTP/1.0\r\n\r\n")
        .expect("request");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("response");
    assert!(resp.starts_with("HTTP/1.0 404"), "{resp}");
    assert!(tap_exists(&ns, &a) && tap_exists(&ns, &b));

    kill_process(Pid::from_child(&child.0), Signal::TERM).expect("SIGTERM to the switch");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.0.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > Duration::from_secs(10) {
            panic!("switch did not exit on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    assert!(
        !tap_exists(&ns, &a) && !tap_exists(&ns, &b),
        "taps left behind"
    );
}

#[test]
fn demo_prints_its_table() {
    switch_util::require_root();
    let out = pvnet()
        .args(["demo", "--seconds", "1"])
        .output()
        .expect("run pvnet demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("configuration") && text.contains("Gbit/s"),
        "{text}"
    );
    for row in ["offloads both", "offload=none one", "offload=none both"] {
        assert!(text.contains(row), "row {row} missing: {text}");
    }
}
