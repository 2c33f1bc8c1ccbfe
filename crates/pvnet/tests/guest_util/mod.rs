//! Helpers shared by the tests that boot a guest: iperf3 from a namespace, ethtool -k,
//! waiting for a listener in the guest, sha256 of what was sent.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use pvnet::guest::Guest;
use pvnet_linux::netns::{in_netns, Netns};
use pvnet_linux::testing::{env_seed, TestRng};

/// A guest script that waits until something listens on TCP `port` (up to 5 s).
pub fn wait_listen(port: u16) -> String {
    format!(
        "for i in $(seq 50); do netstat -ltn | grep -q ':{port} ' && exit 0; sleep 0.1; done; \
         echo 'nothing listens on {port}'; exit 1"
    )
}

/// Whether `name` is on in `ethtool -k` output (`name: on`, maybe `[fixed]`).
pub fn feature(ethtool_k: &str, name: &str) -> Option<bool> {
    ethtool_k.lines().find_map(|l| {
        let (n, v) = l.trim().split_once(':')?;
        (n == name).then(|| v.trim_start().starts_with("on"))
    })
}

/// An iperf3 server in the guest at `addr`, and a 3 s client in `ns` against it in each
/// direction: each must move more than 1 MiB.
pub fn iperf3_both_ways(guest: &Guest, ns: &Netns, addr: Ipv4Addr) {
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
            iperf3(ns, addr, reverse).unwrap_or_else(|e| panic!("iperf3 {what}: {e}"));
        eprintln!(
            "iperf3 {what}: {bytes} bytes, {:.2} Gbit/s",
            bytes as f64 * 8.0 / secs.max(0.001) / 1e9
        );
        assert!(bytes > 1 << 20, "iperf3 {what}: only {bytes} bytes");
    }
}

/// Run a 3 s iperf3 client in `ns` against the guest at `addr` (`-R`: the guest sends);
/// the bytes the receiving side got, and in how many seconds.
pub fn iperf3(ns: &Netns, addr: Ipv4Addr, reverse: bool) -> Result<(u64, f64), String> {
    // The guest's iperf3 server takes a moment (long, under TCG) to listen again after a
    // test: a server that refuses, is busy or resets the control connection is asked
    // again, for up to 20 s.
    let mut tries = 0;
    loop {
        match iperf3_once(ns, addr, reverse) {
            Err(e) if tries < 40 && server_not_ready(&e) => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            r => return r,
        }
    }
}

/// iperf3's words for a server that is not ready for the next test yet.
fn server_not_ready(e: &str) -> bool {
    [
        "unable to connect",
        "busy",
        "control message",
        "Connection reset",
    ]
    .iter()
    .any(|w| e.contains(w))
}

fn iperf3_once(ns: &Netns, addr: Ipv4Addr, reverse: bool) -> Result<(u64, f64), String> {
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
pub fn sha256(data: &[u8]) -> String {
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

/// 4 MiB of random bytes (seed in PVNET_GUEST_SEED) from `ns` to the guest over TCP port
/// `port` and back to `ns` over `port + 1`, each checked by sha256 and byte compare.
pub fn bytes_both_ways(guest: &Guest, ns: &Netns, addr: Ipv4Addr, host: Ipv4Addr, port: u16) {
    let port1 = port + 1;
    let seed = env_seed("PVNET_GUEST_SEED");
    eprintln!("PVNET_GUEST_SEED={seed}");
    let mut rng = TestRng(seed | 1);
    let data: Vec<u8> = (0..4 << 20).map(|_| rng.next_u64() as u8).collect();
    guest
        .run_ok(&format!(
            "nc -l -p {port} >/tmp/in 2>/dev/null & {}",
            wait_listen(port)
        ))
        .expect("nc listening in the guest");
    let to = SocketAddr::from((addr, port));
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
    let bind = SocketAddr::from((host, port1));
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
        .run_ok(&format!("timeout 60 nc {host} {port1} </tmp/in"))
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
}

/// No TCP or UDP checksum error in the guest or in `ns`.
pub fn no_csum_errors(guest: &Guest, ns: &Netns) {
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
