//! `pvnet report`: the bundle is written, unpacked here with the `tar` crate, and each
//! part checked: with no switch (the switch's parts listed as skipped, and why), and with
//! a switch answering on the control socket for a real tap in a namespace of the test's
//! own, with traffic, so that the capture and its checksum verdicts are there.
//!
//! The switch here is the control socket's real server with canned answers: the parts of
//! the bundle that come over the socket are checked against what it was told to say.

mod common;
mod switch_util;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pvnet::ctl::proto::{
    ConfigReply, LogReply, MacEntry, MacReply, OffloadLine, OffloadReply, PortInfo, PortStats,
    Request, Response, StatsReply, VersionReply,
};
use pvnet::ctl::server::{CtlServer, Handler};
use pvnet_core::offload::checksum::fix_frame;
use pvnet_core::wire::Start;
use pvnet_linux::netns::Netns;
use pvnet_linux::pcap::{FileHeader, PcapReader};
use pvnet_linux::tap::{Tap, TapOptions};

use common::{path, stderr, stdout};

/// The parts of the bundle that do not depend on a switch.
const SYSTEM_PARTS: &[&str] = &[
    "pvnet/version.txt",
    "system/uname.txt",
    "system/kernel-config.txt",
    "system/sysctl.txt",
    "system/modules.txt",
    "system/kernel-log.txt",
];

/// The parts that come from the switch itself.
const SWITCH_PARTS: &[&str] = &[
    "switch/version.json",
    "switch/config.json",
    "switch/config.toml",
    "switch/port_list.json",
    "switch/stats.json",
    "switch/mac_list.json",
    "switch/log.txt",
];

/// The bundle's files by path below its top directory, and that directory's name.
fn unpack(file: &Path) -> (String, BTreeMap<String, Vec<u8>>) {
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(file).expect("open the bundle"));
    let mut archive = tar::Archive::new(gz);
    let mut top = None::<String>;
    let mut files = BTreeMap::new();
    for entry in archive.entries().expect("a tar file") {
        let mut entry = entry.expect("a tar entry");
        let p = entry
            .path()
            .expect("entry path")
            .to_string_lossy()
            .into_owned();
        let (dir, rest) = p
            .split_once('/')
            .expect("every entry is under the top directory");
        match &top {
            Some(t) => assert_eq!(t, dir, "one top directory"),
            None => top = Some(dir.to_owned()),
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("entry data");
        assert!(
            files.insert(rest.to_owned(), data).is_none(),
            "{rest} twice"
        );
    }
    (top.expect("a non-empty bundle"), files)
}

fn text(files: &BTreeMap<String, Vec<u8>>, p: &str) -> String {
    let data = files
        .get(p)
        .unwrap_or_else(|| panic!("{p} is not in the bundle: {:?}", files.keys()));
    String::from_utf8(data.clone()).unwrap_or_else(|_| panic!("{p} is not text"))
}

/// The reason the index gives for a part it lists as not collected, or `None` if the index
/// does not list it so.
fn why_skipped(index: &str, part: &str) -> Option<String> {
    let (_, missing) = index.split_once("\nNot collected (")?;
    let mut lines = missing.lines();
    while let Some(l) = lines.next() {
        if l.split_whitespace().next() == Some(part) {
            return lines
                .next()
                .and_then(|w| w.trim().strip_prefix("why: "))
                .map(str::to_owned);
        }
    }
    None
}

/// Whether the index lists `part` as collected.
fn listed_collected(index: &str, part: &str) -> bool {
    let collected = index
        .split_once("\nCollected (")
        .and_then(|(_, rest)| rest.split_once("\nNot collected ("))
        .map_or("", |(c, _)| c);
    collected
        .lines()
        .any(|l| l.split_whitespace().next() == Some(part))
}

fn run_report(args: &[&str]) -> Output {
    let out = common::pvnet(&[&["report"], args].concat());
    assert_eq!(
        out.status.code(),
        Some(0),
        "pvnet report failed:\n{}",
        stderr(&out)
    );
    out
}

/// Each part the host always has is in the bundle with plausible contents, or (for the
/// kernel configuration and modules, which a kernel may not expose) listed as not
/// collected with a reason.
fn check_system_parts(files: &BTreeMap<String, Vec<u8>>, index: &str) {
    let version = text(files, "pvnet/version.txt");
    assert!(
        version.starts_with(&format!("pvnet {}\n", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    assert!(version.contains("target: "), "{version}");

    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let uname = text(files, "system/uname.txt");
    assert!(uname.contains(release.trim()), "{uname}");

    let backlog = std::fs::read_to_string("/proc/sys/net/core/netdev_max_backlog")
        .expect("netdev_max_backlog");
    let sysctl = text(files, "system/sysctl.txt");
    assert!(
        sysctl.contains(&format!(
            "net.core.netdev_max_backlog = {}\n",
            backlog.trim()
        )),
        "{sysctl}"
    );

    let has_config = Path::new("/proc/config.gz").exists()
        || Path::new(&format!("/boot/config-{}", release.trim())).exists();
    if has_config {
        let config = text(files, "system/kernel-config.txt");
        assert!(config.contains("CONFIG_TUN"), "{config}");
        assert!(
            !config.contains("CONFIG_SMP="),
            "only the relevant options: {config}"
        );
    } else {
        let why = why_skipped(index, "system/kernel-config.txt").expect("why no config");
        assert!(why.contains("/proc/config.gz"), "{why}");
    }

    if Path::new("/proc/modules").exists() {
        text(files, "system/modules.txt");
    } else {
        let why = why_skipped(index, "system/modules.txt").expect("why no modules");
        assert!(why.contains("CONFIG_MODULES"), "{why}");
    }

    let klog = text(files, "system/kernel-log.txt");
    assert!(klog.starts_with("# From "), "{klog}");

    for p in SYSTEM_PARTS {
        assert_eq!(
            files.contains_key(*p),
            listed_collected(index, p),
            "{p}: the index and the bundle disagree:\n{index}"
        );
    }
}

#[test]
fn without_a_switch_the_bundle_has_the_system_parts_and_says_what_it_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("none.sock");
    let out_file = dir.path().join("bundle.tar.gz");
    let out = run_report(&[
        "--ctl",
        path(&sock),
        "-o",
        path(&out_file),
        "--capture-secs",
        "1",
    ]);
    assert!(
        stdout(&out).contains(path(&out_file)),
        "the summary names the file: {}",
        stdout(&out)
    );

    let (top, files) = unpack(&out_file);
    assert!(top.starts_with("pvnet-report-"), "{top}");
    let index = text(&files, "README.txt");
    check_system_parts(&files, &index);

    let expected = format!("no switch running on {} (no such socket)", path(&sock));
    for part in SWITCH_PARTS.iter().chain(&["ports/"]) {
        assert!(!files.contains_key(*part), "{part} without a switch");
        let why = why_skipped(&index, part)
            .unwrap_or_else(|| panic!("{part} not listed as skipped:\n{index}"));
        assert!(why.contains(&expected), "{part}: {why}");
    }
    assert!(!files.keys().any(|k| k.starts_with("ports/")), "{files:?}");
    // Every skipped part is also named on stderr, with the reason.
    let err = stderr(&out);
    for part in SWITCH_PARTS {
        assert!(err.contains(part), "{part} not on stderr: {err}");
    }
    assert!(err.contains(&expected), "{err}");
}

#[test]
fn a_socket_nobody_listens_on_is_connection_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("stale.sock");
    // A switch that died leaves its socket file behind.
    drop(UnixListener::bind(&sock).expect("bind"));
    let out_file = dir.path().join("bundle.tar.gz");
    let out = run_report(&["--ctl", path(&sock), "-o", path(&out_file), "--frames", "0"]);
    let (_, files) = unpack(&out_file);
    let index = text(&files, "README.txt");
    let why = why_skipped(&index, "switch/stats.json").expect("stats skipped");
    assert_eq!(
        why,
        format!("no switch running on {} (connection refused)", path(&sock)),
        "{}",
        stderr(&out)
    );
}

const TAP: &str = "rp0";
/// A port the switch lists whose device does not exist (removed under it).
const GONE: &str = "pvrgone0";
const TAP_MAC: [u8; 6] = [0x06, 0x70, 0x76, 0, 0, 0x1];
const PEER_MAC: [u8; 6] = [0x06, 0x70, 0x76, 0, 0, 0x2];
const LOG: [&str; 5] = [
    "INFO switch started",
    "INFO port rp0 up",
    "WARN port pvrgone0: device gone",
    "INFO port pvrgone0 removed",
    "INFO still running",
];

/// A switch as the control socket shows it: canned answers about two ports.
struct Canned {
    ns: String,
}

impl Canned {
    fn ports(&self) -> Vec<PortInfo> {
        [(TAP, Some(self.ns.clone())), (GONE, None)]
            .into_iter()
            .map(|(name, netns)| PortInfo {
                name: name.into(),
                kind: "tap".into(),
                spec: match &netns {
                    Some(ns) => format!("tap:{name},netns={ns}"),
                    None => format!("tap:{name}"),
                },
                netns,
                state: "up".into(),
                carrier_losses: None,
                offload_configured: "csum+tso".into(),
                offload_in_effect: "csum".into(),
                gro: true,
                queues: 1,
                vlan: None,
            })
            .collect()
    }

    fn offloads(port: &str) -> OffloadReply {
        OffloadReply {
            port: port.into(),
            features: vec![
                OffloadLine {
                    name: "tx-checksum-ip-generic".into(),
                    on: true,
                    fixed: false,
                    why_off: None,
                },
                OffloadLine {
                    name: "tx-tcp-segmentation".into(),
                    on: false,
                    fixed: true,
                    why_off: Some("the device refused TSO".into()),
                },
            ],
        }
    }

    fn stats() -> StatsReply {
        StatsReply {
            ports: vec![PortStats {
                port: TAP.into(),
                counters: [("rx_packets".to_owned(), 42), ("tx_packets".to_owned(), 7)].into(),
                drops: [("no_destination".to_owned(), 3)].into(),
                guest_errors: Default::default(),
            }],
            ports_removed: [("device_gone".to_owned(), 1)].into(),
            mac_entries: 1,
            mac_capacity: 4096,
        }
    }

    fn macs() -> MacReply {
        MacReply {
            entries: vec![MacEntry {
                mac: "06:70:76:00:00:02".into(),
                vlan: 0,
                port: TAP.into(),
                age_secs: 1.5,
            }],
            capacity: 4096,
            ageing_secs: 300,
        }
    }

    fn config() -> ConfigReply {
        ConfigReply {
            toml: "[[port]]\nspec = \"tap:rp0\"\n".into(),
            config_file: None,
        }
    }
}

fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("serialize")
}

impl Handler for Canned {
    fn handle(&self, req: Request) -> Response {
        match req {
            Request::Version {} => Response::ok(json(&VersionReply {
                version: "0.1.0".into(),
                pid: 4242,
                uptime_secs: 3600,
            })),
            Request::Config {} => Response::ok(json(&Canned::config())),
            Request::PortList {} => Response::ok(json(&self.ports())),
            Request::Stats { port: None } => Response::ok(json(&Canned::stats())),
            Request::MacList {} => Response::ok(json(&Canned::macs())),
            Request::OffloadShow { port } if port == TAP || port == GONE => {
                Response::ok(json(&Canned::offloads(&port)))
            }
            Request::Log { lines } => Response::ok(json(&LogReply {
                lines: LOG[LOG.len().saturating_sub(lines)..]
                    .iter()
                    .map(|l| l.to_string())
                    .collect(),
            })),
            other => Response::err(format!("not in this test: {other:?}")),
        }
    }
}

/// An IPv4/UDP frame from the peer to 10.78.0.1 of `len` bytes, checksums right. Port 9
/// is closed: the namespace answers with an ICMP port unreachable, out of the tap.
fn udp_frame(len: usize) -> Vec<u8> {
    let mut f = TAP_MAC.to_vec();
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let ip_len = (len - 14) as u16;
    f.extend_from_slice(&[0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0]);
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f.extend_from_slice(&[10, 78, 0, 2, 10, 78, 0, 1]);
    f.extend_from_slice(&[0x30, 0x39, 0, 9]);
    f.extend_from_slice(&(ip_len - 20).to_be_bytes());
    // Not zero, so that fix_frame computes it (a zero UDP checksum means "none").
    f.extend_from_slice(&[0x12, 0x34]);
    f.resize(len, 0x5a);
    assert!(
        fix_frame(&mut f, Start::Ethernet).any(),
        "checksums filled in"
    );
    f
}

#[test]
fn with_a_switch_every_part_is_in_the_bundle_with_a_capture_and_its_verdicts() {
    pvnet_linux::testing::require_root("pvnet report's capture (a namespace and a tap)");
    let ns = Netns::create_unique("pvrep").expect("namespace");
    ns.disable_ipv6().expect("sysctl");
    let tap = ns
        .enter_and(|| {
            Tap::open(&TapOptions {
                name: TAP.into(),
                vnet_hdr: false,
                ..TapOptions::default()
            })
        })
        .expect("enter namespace")
        .expect("open tap");
    ns.run(&["addr", "add", "10.78.0.1/24", "dev", TAP])
        .expect("addr");
    ns.run(&["link", "set", "dev", TAP, "address", "06:70:76:00:00:01"])
        .expect("mac");
    ns.run(&["link", "set", "dev", TAP, "up"]).expect("up");
    ns.run(&[
        "neigh",
        "add",
        "10.78.0.2",
        "lladdr",
        "06:70:76:00:00:02",
        "dev",
        TAP,
        "nud",
        "permanent",
    ])
    .expect("neigh");

    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("pvnet.sock");
    let server = CtlServer::start(
        &sock,
        Arc::new(Canned {
            ns: ns.name().to_owned(),
        }),
    )
    .expect("control socket");

    // 600-byte datagrams, good, and 100-byte ones whose UDP checksum is wrong: the
    // first are cut by the snap length, the second captured whole and found bad.
    let big = udp_frame(600);
    let mut bad = udp_frame(100);
    bad[40] ^= 0xff;
    let out_file = dir.path().join("bundle.tar.gz");
    let stop = AtomicBool::new(false);
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                for f in [&big, &bad] {
                    tap.write(f).expect("write into the tap");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let out = common::pvnet(&[
            "report",
            "--ctl",
            path(&sock),
            "-o",
            path(&out_file),
            "--frames",
            "40",
            "--capture-secs",
            "5",
            "--log-lines",
            "3",
        ]);
        stop.store(true, Ordering::Relaxed);
        out
    });
    drop(server);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let (_, files) = unpack(&out_file);
    let index = text(&files, "README.txt");
    check_system_parts(&files, &index);

    // What the switch said, as it said it.
    let parsed = |p: &str| -> serde_json::Value {
        serde_json::from_str(&text(&files, p)).unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    assert_eq!(parsed("switch/version.json")["pid"], 4242);
    assert_eq!(parsed("switch/config.json"), json(&Canned::config()));
    assert_eq!(text(&files, "switch/config.toml"), Canned::config().toml);
    let canned = Canned {
        ns: ns.name().to_owned(),
    };
    assert_eq!(parsed("switch/port_list.json"), json(&canned.ports()));
    assert_eq!(parsed("switch/stats.json"), json(&Canned::stats()));
    assert_eq!(parsed("switch/mac_list.json"), json(&Canned::macs()));
    assert_eq!(
        text(&files, "switch/log.txt"),
        format!("{}\n", LOG[2..].join("\n")),
        "the last 3 lines"
    );
    assert_eq!(
        parsed(&format!("ports/{TAP}/offload_show.json")),
        json(&Canned::offloads(TAP))
    );

    // The device, seen in its namespace.
    let link = text(&files, &format!("ports/{TAP}/ip-link.txt"));
    assert!(
        link.contains(TAP) && link.contains("tun type tap"),
        "{link}"
    );
    let ethtool = format!("ports/{TAP}/ethtool-k.txt");
    if files.contains_key(&ethtool) {
        assert!(text(&files, &ethtool).contains("tx-checksumming"));
    } else {
        let why = why_skipped(&index, &ethtool).expect("why no ethtool");
        assert!(why.contains("ethtool"), "{why}");
    }
    // The namespace's own sysctls: IPv6 is off there, whatever the host says.
    let sysctl = text(&files, &format!("ports/{TAP}/sysctl.txt"));
    assert!(
        sysctl.contains("net.ipv6.conf.all.disable_ipv6 = 1\n"),
        "{sysctl}"
    );

    // The capture: headers only, our frames, and the verdicts over it.
    let pcap = &files[&format!("ports/{TAP}/capture.pcap")];
    let mut reader = PcapReader::new(&pcap[..]).expect("a capture");
    match reader.header() {
        FileHeader::Pcap(h) => assert_eq!(h.snaplen, 128),
        other => panic!("classic pcap expected: {other:?}"),
    }
    let (mut frames, mut cut, mut whole_bad, mut icmp_out) = (0, 0, 0, 0);
    while let Some(r) = reader.next_record().expect("a record") {
        frames += 1;
        assert!(
            r.data.len() <= 128,
            "frame {frames}: {} bytes",
            r.data.len()
        );
        if r.orig_len == 600 && r.data == &big[..128] {
            cut += 1;
        }
        if r.data == &bad[..] {
            whole_bad += 1;
        }
        // Both ways: the namespace's answers to the peer (ICMP, from the tap's address).
        if r.data.len() > 34 && r.data[..12] == [PEER_MAC, TAP_MAC].concat() && r.data[23] == 1 {
            icmp_out += 1;
        }
    }
    assert!(frames > 0 && frames <= 40, "{frames} frames");
    assert!(cut > 0, "no 600-byte frame cut to 128 bytes");
    assert!(whole_bad > 0, "no 100-byte frame captured whole");
    assert!(icmp_out > 0, "no frame sent out of the tap captured");

    let csum = text(&files, &format!("ports/{TAP}/csum.txt"));
    let rows: Vec<Vec<&str>> = csum
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.first().is_some_and(|f| f.parse::<u64>().is_ok()))
        .collect();
    assert_eq!(rows.len(), frames, "one verdict per frame:\n{csum}");
    assert!(
        rows.iter().filter(|r| r[2..] == ["udp", "bad"]).count() >= whole_bad,
        "the bad UDP checksums are found:\n{csum}"
    );
    assert!(
        csum.contains(&format!("ports/{TAP}/capture.pcap: {frames} frames;")),
        "{csum}"
    );

    // The port whose device is gone: what could not be had, and why.
    let why = why_skipped(&index, &format!("ports/{GONE}/ip-link.txt")).expect("ip link");
    assert!(why.contains("does not exist"), "{why}");
    let why = why_skipped(&index, &format!("ports/{GONE}/capture.pcap")).expect("capture");
    assert!(why.contains(GONE), "{why}");
    assert!(
        files.contains_key(&format!("ports/{GONE}/offload_show.json")),
        "the switch's view of it is there"
    );

    // Every file is in the index, and every part the index lists as collected is a file.
    for p in files.keys().filter(|p| *p != "README.txt") {
        assert!(
            listed_collected(&index, p),
            "{p} not in the index:\n{index}"
        );
    }
    for p in SWITCH_PARTS {
        assert!(files.contains_key(*p), "{p} missing:\n{index}");
    }
    drop(tap);
}

/// The same bundle against a real `pvnet switch` with two taps: every part the switch
/// gives is there and says what the switch runs.
#[test]
fn against_a_real_switch_every_switch_part_is_there() {
    switch_util::require_root();
    let ns = Netns::create_unique("pvrep").expect("netns");
    let id = std::process::id() % 100_000;
    let (a, b) = (format!("pr{id}a"), format!("pr{id}b"));
    let d = switch_util::Daemon::start(&[
        &format!("tap:{a},netns={}", ns.name()),
        &format!("tap:{b},netns={},offload=none", ns.name()),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bundle.tar.gz");
    let out = run_report(&[
        "--ctl",
        &d.ctl.display().to_string(),
        "-o",
        &file.display().to_string(),
        "--capture-secs",
        "1",
    ]);
    assert!(stdout(&out).contains("bundle.tar.gz"), "{}", stdout(&out));
    let (_, files) = unpack(&file);
    let index = text(&files, "README.txt");
    for part in SWITCH_PARTS {
        assert!(
            listed_collected(&index, part),
            "{part} not collected:\n{index}"
        );
        assert!(files.contains_key(*part), "{part} missing");
    }
    let ports: serde_json::Value =
        serde_json::from_str(&text(&files, "switch/port_list.json")).expect("port list");
    assert_eq!(ports[0]["name"], a.as_str());
    assert_eq!(ports[1]["offload_in_effect"], "sg");
    assert!(text(&files, "switch/config.toml").contains(&format!("tap:{b}")));
    assert!(text(&files, "switch/log.txt").contains("switch running"));
    let v: serde_json::Value =
        serde_json::from_str(&text(&files, "switch/version.json")).expect("version");
    assert_eq!(v["pid"], d.child.0.id());
    for p in [&a, &b] {
        assert!(
            text(&files, &format!("ports/{p}/ip-link.txt")).contains(p.as_str()),
            "ip -d link of {p}"
        );
        assert!(files.contains_key(&format!("ports/{p}/capture.pcap")));
        assert!(files.contains_key(&format!("ports/{p}/offload_show.json")));
    }
}
