//! The test guest (`pvnet::guest`, scripts/guest/build) under QEMU: its control channel,
//! and its virtio-net NIC on a plain QEMU tap in a test namespace, the reference the
//! vhost-user port is measured against: offloads on, TCP both ways, no checksum errors.
//!
//! Both tests need root (QEMU creates the tap; the namespace) and QEMU, which
//! scripts/guest/build installs when missing.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use pvnet::guest::{tap_net_args, unique_mac, Guest, GuestOptions};
use pvnet_linux::netns::{in_netns, Netns};
use pvnet_linux::testing::{env_seed, require_root, TestRng};

/// The control channel returns each script's own output and exit status, whatever the
/// script prints, and recovers after a command that outlived its time limit.
#[test]
fn guest_control_channel() {
    require_root("the guest tests (QEMU, and apt-get installing it when missing)");
    let start = std::time::Instant::now();
    let guest = Guest::boot(GuestOptions::default()).expect("boot the guest");
    eprintln!(
        "the guest answered {:?} after QEMU started",
        start.elapsed()
    );

    assert_eq!(
        guest.run("echo out; echo err >&2; exit 3").expect("run"),
        (3, "out\nerr\n".to_owned())
    );
    assert_eq!(guest.run("printf abc").expect("run"), (0, "abc".to_owned()));
    // Several lines, quotes, and text that looks like the channel's own markers.
    let script = "cat <<'EOF'\nPVNET-END-x 0\n\"double\" 'single' $HOME\nEOF\necho \"$HOME\"";
    assert_eq!(
        guest.run(script).expect("run"),
        (
            0,
            "PVNET-END-x 0\n\"double\" 'single' $HOME\n/root\n".to_owned()
        )
    );
    // More output than any buffer on the way holds.
    let (rc, out) = guest.run("seq 1 20000").expect("run");
    assert_eq!(rc, 0);
    let numbers: Vec<u32> = out.lines().map(|l| l.parse().expect("a number")).collect();
    assert_eq!(numbers, (1..=20000).collect::<Vec<u32>>());

    let err = guest
        .run_timeout("sleep 3; echo late", Duration::from_millis(500))
        .expect_err("a command longer than its limit");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    // The late answer is skipped; the next command gets its own.
    assert_eq!(
        guest.run("echo next").expect("run"),
        (0, "next\n".to_owned())
    );
    assert!(
        guest.console_log().contains("pvnet-guest: ready"),
        "{}",
        guest.console_log()
    );
    let dir = guest.dir().to_owned();
    drop(guest);
    assert!(!dir.exists(), "{} left behind", dir.display());
}

/// The guest's NIC on a QEMU tap (with virtio-net headers) whose host side is in a test
/// namespace: the guest sees checksum and segmentation offloads on, TCP runs both ways
/// with every byte intact, and neither side counts a checksum error.
#[test]
fn guest_on_tap_offloads_and_tcp_both_ways() {
    require_root("the guest tests (a namespace, and QEMU creating a tap in it)");
    let ns = Netns::create_unique("pvguest").expect("namespace");
    ns.disable_ipv6().expect("disable IPv6");
    let net = std::process::id() % 250;
    let host = Ipv4Addr::new(10, 198, net as u8, 1);
    let addr = Ipv4Addr::new(10, 198, net as u8, 2);
    let tap = format!("pvg{}", std::process::id() % 100_000);
    // Declared after the namespace, so it drops first: QEMU and its tap go, then the
    // namespace.
    let guest = Guest::boot(GuestOptions {
        net_args: tap_net_args(&tap, &unique_mac()),
        ip: Some(format!("{addr}/24")),
        netns: Some(ns.name().to_owned()),
        ..GuestOptions::default()
    })
    .expect("boot the guest");
    ns.run(&["link", "set", "dev", "lo", "up"]).expect("lo up");
    ns.run(&["addr", "add", &format!("{host}/24"), "dev", &tap])
        .expect("address on the tap");
    ns.run(&["link", "set", "dev", &tap, "up"]).expect("tap up");

    let features = guest.run_ok("ethtool -k eth0").expect("ethtool -k");
    for f in [
        "tx-checksumming",
        "tcp-segmentation-offload",
        "rx-checksumming",
    ] {
        assert_eq!(
            feature(&features, f),
            Some(true),
            "{f} is not on in the guest:\n{features}"
        );
    }
    guest
        .run_ok(&format!("ping -c 1 -W 5 {host}"))
        .expect("the guest reaches the namespace");

    // iperf3 server in the guest, client in the namespace: both directions.
    guest
        .run_ok(&format!(
            "iperf3 -s -D -B {addr} -p 5201 && {}",
            wait_listen(5201)
        ))
        .expect("iperf3 server in the guest");
    for reverse in [false, true] {
        let what = if reverse {
            "guest -> namespace"
        } else {
            "namespace -> guest"
        };
        let (bytes, secs) =
            iperf3(&ns, addr, reverse).unwrap_or_else(|e| panic!("iperf3 {what}: {e}"));
        eprintln!(
            "iperf3 {what}: {bytes} bytes, {:.2} Gbit/s",
            bytes as f64 * 8.0 / secs.max(0.001) / 1e9
        );
        assert!(bytes > 1 << 20, "iperf3 {what}: only {bytes} bytes");
    }

    // Every byte intact: random bytes to the guest (busybox nc), and the same file back.
    let seed = env_seed("PVNET_GUEST_SEED");
    eprintln!("PVNET_GUEST_SEED={seed}");
    let mut rng = TestRng(seed | 1);
    let data: Vec<u8> = (0..4 << 20).map(|_| rng.next_u64() as u8).collect();
    guest
        .run_ok(&format!(
            "nc -l -p 7000 >/tmp/in 2>/dev/null & {}",
            wait_listen(7000)
        ))
        .expect("nc listening in the guest");
    let to = SocketAddr::from((addr, 7000));
    let mut conn = in_netns(ns.name(), move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(10))
    })
    .expect("connect to the guest");
    conn.set_write_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    conn.write_all(&data).expect("send to the guest");
    drop(conn);
    let guest_sum = guest
        .run_ok("while pidof nc >/dev/null; do sleep 0.1; done; sha256sum </tmp/in")
        .expect("sha256sum in the guest");
    assert_eq!(
        guest_sum.split_whitespace().next(),
        Some(sha256(&data).as_str()),
        "the bytes sent to the guest arrived changed ({} bytes there)",
        guest.run_ok("wc -c </tmp/in").unwrap_or_default().trim()
    );
    let bind = SocketAddr::from((host, 7001));
    let listener = in_netns(ns.name(), move || TcpListener::bind(bind)).expect("listen");
    let len = data.len();
    let receiver = std::thread::spawn(move || -> io::Result<Vec<u8>> {
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut got = Vec::with_capacity(len);
        (&mut s).take(len as u64).read_to_end(&mut got)?;
        Ok(got)
    });
    guest
        .run_ok(&format!("timeout 60 nc {host} 7001 </tmp/in"))
        .expect("send from the guest");
    let got = receiver
        .join()
        .expect("receiver thread")
        .expect("receive from the guest");
    assert_eq!(got.len(), data.len(), "bytes from the guest");
    assert!(
        got == data,
        "the bytes sent back by the guest arrived changed"
    );

    assert_eq!(
        guest.csum_errors().expect("guest /proc/net/snmp"),
        (0, 0),
        "checksum errors in the guest (Tcp, Udp)"
    );
    let nstat = ns
        .exec("nstat", &["-azs", "TcpInCsumErrors", "UdpInCsumErrors"])
        .expect("nstat");
    for line in nstat.lines() {
        let mut w = line.split_whitespace();
        if let (Some(name), Some(v)) = (w.next(), w.next()) {
            assert_eq!(v, "0", "{name} in the namespace:\n{nstat}");
        }
    }
}

/// A guest script that waits until something listens on TCP `port` (up to 5 s).
fn wait_listen(port: u16) -> String {
    format!(
        "for i in $(seq 50); do netstat -ltn | grep -q ':{port} ' && exit 0; sleep 0.1; done; \
         echo 'nothing listens on {port}'; exit 1"
    )
}

/// Whether `name` is on in `ethtool -k` output (`name: on`, maybe `[fixed]`).
fn feature(ethtool_k: &str, name: &str) -> Option<bool> {
    ethtool_k.lines().find_map(|l| {
        let (n, v) = l.trim().split_once(':')?;
        (n == name).then(|| v.trim_start().starts_with("on"))
    })
}

/// Run a 3 s iperf3 client in `ns` against the guest at `addr` (`-R`: the guest sends);
/// the bytes the receiving side got, and in how many seconds.
fn iperf3(ns: &Netns, addr: Ipv4Addr, reverse: bool) -> Result<(u64, f64), String> {
    let addr = addr.to_string();
    let mut args = vec![
        "netns",
        "exec",
        ns.name(),
        "timeout",
        "60",
        "iperf3",
        "-c",
        &addr,
        "-p",
        "5201",
        "-t",
        "3",
        "-J",
        "--connect-timeout",
        "5000",
    ];
    if reverse {
        args.push("-R");
    }
    let out = Command::new("ip")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run iperf3 (Debian package iperf3): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{e}: {text}{}", String::from_utf8_lossy(&out.stderr)))?;
    if let Some(err) = json.get("error") {
        return Err(format!("{err}"));
    }
    let sum = &json["end"]["sum_received"];
    match (sum["bytes"].as_u64(), sum["seconds"].as_f64()) {
        (Some(bytes), Some(secs)) => Ok((bytes, secs)),
        _ => Err(format!("no end.sum_received bytes and seconds: {text}")),
    }
}

/// The sha256 of `data` in hex, by coreutils' `sha256sum`.
fn sha256(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("write to sha256sum");
    let out = child.wait_with_output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A QEMU that cannot start, and a guest whose control channel never answers, fail the
/// boot with a message that shows why: QEMU's own words, the guest's console.
#[test]
fn guest_boot_errors_say_why() {
    require_root("the guest tests (QEMU, and apt-get installing it when missing)");
    let err = Guest::boot(GuestOptions {
        net_args: vec!["-device".into(), "pvnet-no-such-device".into()],
        ..GuestOptions::default()
    })
    .expect_err("QEMU refuses an unknown device");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(msg.contains("QEMU exited"), "{msg}");
    assert!(msg.contains("pvnet-no-such-device"), "{msg}");

    // The guest serves its control channel on a tty that does not exist.
    let err = Guest::boot(GuestOptions {
        append: vec!["pvnet.ctl=ttyS9".into()],
        boot_timeout: Duration::from_secs(15),
        ..GuestOptions::default()
    })
    .expect_err("no control channel");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(msg.contains("did not answer within 15s"), "{msg}");
    assert!(msg.contains("no /dev/ttyS9: no control channel"), "{msg}");
}
