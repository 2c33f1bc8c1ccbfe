//! Overlay ports between "hosts": namespaces joined by an underlay (veths bridged in a
//! fabric namespace, MTU 1500), each host with a workload namespace behind a pvnet tap,
//! or with a kernel vxlan device as the peer.
//!
//! - pvnet `vxlan:` ↔ a kernel `vxlan` device: TCP and UDP both ways, IPv4 and IPv6
//!   inner traffic, bytes intact, no checksum errors on either end;
//! - pvnet ↔ pvnet over `vxlan:` and `geneve:` (this kernel has no geneve driver);
//! - a TSO super-frame from the tap reaches the vxlan: port whole (it leaves as UDP GSO
//!   sends) and arrives intact;
//! - ARP and broadcast reach every remote (a remote list of two kernel peers);
//! - hostile datagrams on the underlay while a transfer runs intact.

mod switch_util;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pvnet_linux::netns::{in_netns, Netns};
use switch_util::Daemon;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run(ns: &Netns, args: &[&str]) {
    ns.run(args)
        .unwrap_or_else(|e| panic!("ip -n {} {args:?}: {e}", ns.name()));
}

/// Underlay address of host `i` (0-based).
fn under4(i: usize) -> String {
    format!("10.200.0.{}", i + 1)
}
fn under6(i: usize) -> String {
    format!("fd20::{}", i + 1)
}
/// Workload (inner) address of host `i`.
fn inner4(i: usize) -> String {
    format!("10.1.0.{}", i + 1)
}
fn inner6(i: usize) -> String {
    format!("fd01::{}", i + 1)
}

/// `n` hosts on one underlay (a bridge in a fabric namespace), each with a workload
/// namespace; everything is removed when dropped.
struct Hosts {
    hosts: Vec<Netns>,
    work: Vec<Netns>,
    _fabric: Netns,
}

impl Hosts {
    fn new(n: usize) -> Hosts {
        let fabric = Netns::create_unique("pvov-fab").expect("netns");
        run(&fabric, &["link", "add", "br0", "type", "bridge"]);
        run(&fabric, &["link", "set", "br0", "up"]);
        let mut hosts = Vec::new();
        let mut work = Vec::new();
        for i in 0..n {
            let h = Netns::create_unique("pvov-h").expect("netns");
            let w = Netns::create_unique("pvov-w").expect("netns");
            let port = format!("f{i}");
            ip(&[
                "link",
                "add",
                "u0",
                "netns",
                h.name(),
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                fabric.name(),
            ]);
            run(&fabric, &["link", "set", &port, "master", "br0", "up"]);
            run(
                &h,
                &["addr", "add", &format!("{}/24", under4(i)), "dev", "u0"],
            );
            run(
                &h,
                &[
                    "addr",
                    "add",
                    &format!("{}/64", under6(i)),
                    "dev",
                    "u0",
                    "nodad",
                ],
            );
            run(&h, &["link", "set", "u0", "up"]);
            run(&h, &["link", "set", "lo", "up"]);
            run(&w, &["link", "set", "lo", "up"]);
            hosts.push(h);
            work.push(w);
        }
        Hosts {
            hosts,
            work,
            _fabric: fabric,
        }
    }

    /// Address and bring up the tap `tap` pvnet created in workload `i`, with the MTU
    /// the underlay leaves (1500 - 50 over IPv4, 1500 - 70 over IPv6).
    fn workload_tap(&self, i: usize, tap: &str, v6: bool) {
        let w = &self.work[i];
        run(
            w,
            &["link", "set", tap, "mtu", if v6 { "1430" } else { "1450" }],
        );
        run(
            w,
            &["addr", "add", &format!("{}/24", inner4(i)), "dev", tap],
        );
        run(
            w,
            &[
                "addr",
                "add",
                &format!("{}/64", inner6(i)),
                "dev",
                tap,
                "nodad",
            ],
        );
        run(w, &["link", "set", tap, "up"]);
    }

    /// A kernel vxlan device in host `i` towards host 0, with the workload addresses on
    /// it: the host itself is the workload.
    fn kernel_vxlan(&self, i: usize, v6: bool) {
        let h = &self.hosts[i];
        let (local, remote) = if v6 {
            (under6(i), under6(0))
        } else {
            (under4(i), under4(0))
        };
        run(
            h,
            &[
                "link", "add", "vx0", "type", "vxlan", "id", "42", "local", &local, "remote",
                &remote, "dstport", "4789", "dev", "u0",
            ],
        );
        run(
            h,
            &[
                "link",
                "set",
                "vx0",
                "mtu",
                if v6 { "1430" } else { "1450" },
            ],
        );
        run(
            h,
            &["addr", "add", &format!("{}/24", inner4(i)), "dev", "vx0"],
        );
        run(
            h,
            &[
                "addr",
                "add",
                &format!("{}/64", inner6(i)),
                "dev",
                "vx0",
                "nodad",
            ],
        );
        run(h, &["link", "set", "vx0", "up"]);
    }

    /// A pvnet switch for host `i`: a tap in its workload and an overlay port `kind` to
    /// `remotes`.
    fn pvnet(&self, i: usize, kind: &str, remotes: &[usize], v6: bool, extra: &str) -> Daemon {
        let addr = |j: usize| if v6 { under6(j) } else { under4(j) };
        let r: Vec<String> = remotes.iter().map(|&j| addr(j)).collect();
        let tap = format!("tap:pvo{i},netns={}", self.work[i].name());
        let ov = format!(
            "{kind}:{},remote={},vni=42,netns={}{extra}",
            addr(i),
            r.join("+"),
            self.hosts[i].name()
        );
        let d = Daemon::start(&[&tap, &ov]);
        self.workload_tap(i, &format!("pvo{i}"), v6);
        d
    }
}

fn pattern(pos: u64) -> u8 {
    (pos.wrapping_mul(7) % 251) as u8
}

/// TCP of `bytes` from namespace `from` to `to_ns` at `to`: (received, intact).
fn tcp(from: &Netns, to_ns: &Netns, to: IpAddr, port: u16, bytes: u64) -> (u64, bool) {
    let bind = SocketAddr::new(to, port);
    let listener = in_netns(to_ns.name(), move || TcpListener::bind(bind)).expect("listen");
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let mut buf = vec![0u8; 256 * 1024];
        let (mut total, mut intact) = (0u64, true);
        loop {
            let n = match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            intact &= buf[..n]
                .iter()
                .enumerate()
                .all(|(i, b)| *b == pattern(total + i as u64));
            total += n as u64;
        }
        (total, intact)
    });
    let mut c = in_netns(from.name(), move || {
        TcpStream::connect_timeout(&bind, Duration::from_secs(10))
    })
    .expect("connect");
    c.set_write_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let mut sent = 0u64;
    let mut buf = vec![0u8; 128 * 1024];
    while sent < bytes {
        let n = (bytes - sent).min(buf.len() as u64) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern(sent + i as u64);
        }
        c.write_all(&buf[..n]).expect("write");
        sent += n as u64;
    }
    drop(c);
    server.join().expect("receiver")
}

/// UDP datagrams of several sizes from `from` to an echo server in `to_ns` at `to`:
/// how many came back intact.
fn udp_echo(from: &Netns, to_ns: &Netns, to: IpAddr, count: usize) -> usize {
    let bind = SocketAddr::new(to, 7007);
    let server = in_netns(to_ns.name(), move || UdpSocket::bind(bind)).expect("bind");
    server
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let echo = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while !flag.load(Ordering::Relaxed) {
            if let Ok((n, peer)) = server.recv_from(&mut buf) {
                let _ = server.send_to(&buf[..n], peer);
            }
        }
    });
    let any: SocketAddr = if to.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }
        .parse()
        .expect("any");
    let c = in_netns(from.name(), move || UdpSocket::bind(any)).expect("bind");
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let sizes = [64usize, 700, 1400, 3000, 9000];
    let mut back = vec![0u8; 65536];
    let mut ok = 0;
    for i in 0..count {
        let msg: Vec<u8> = (0..sizes[i % sizes.len()])
            .map(|k| pattern((i * 31 + k) as u64))
            .collect();
        for _ in 0..10 {
            c.send_to(&msg, bind).expect("send");
            if let Ok((n, _)) = c.recv_from(&mut back) {
                if back[..n] == msg[..] {
                    ok += 1;
                    break;
                }
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = echo.join();
    ok
}

/// TcpInCsumErrors + UdpInCsumErrors + Udp6InCsumErrors of a namespace.
fn csum_errors(ns: &Netns) -> u64 {
    let out = ns
        .exec(
            "nstat",
            &[
                "-azs",
                "TcpInCsumErrors",
                "UdpInCsumErrors",
                "Udp6InCsumErrors",
            ],
        )
        .expect("nstat");
    out.lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// Both ways between workload `a` (namespace `na`) and `b` (`nb`): TCP and UDP over
/// IPv4 and IPv6, then no checksum errors on either end.
fn traffic_both_ways(what: &str, na: &Netns, nb: &Netns) {
    for v6 in [false, true] {
        let addr = |i: usize| -> IpAddr {
            if v6 { inner6(i) } else { inner4(i) }
                .parse()
                .expect("addr")
        };
        for (from, to, i_to, port) in [(na, nb, 1, 5301), (nb, na, 0, 5302)] {
            let bytes = 8 << 20;
            let (got, intact) = tcp(from, to, addr(i_to), port + u16::from(v6) * 10, bytes);
            assert!(
                got == bytes && intact,
                "{what}: tcp to {} v6={v6}: {got} of {bytes} bytes, intact {intact}",
                addr(i_to)
            );
            let ok = udp_echo(from, to, addr(i_to), 20);
            assert_eq!(ok, 20, "{what}: udp to {} v6={v6}: {ok}/20", addr(i_to));
        }
    }
    for ns in [na, nb] {
        assert_eq!(
            csum_errors(ns),
            0,
            "{what}: checksum errors in {}",
            ns.name()
        );
    }
}

/// The `pvnet ctl --json stats` counters of the port whose name starts with `prefix`.
fn port_stats(d: &Daemon, prefix: &str) -> serde_json::Value {
    let s = d.ctl_json(&["stats"]);
    s["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["port"].as_str().is_some_and(|n| n.starts_with(prefix)))
        .cloned()
        .unwrap_or_else(|| panic!("no port {prefix}: {s}"))
}

#[test]
fn pvnet_vxlan_interoperates_with_the_kernel() {
    switch_util::require_root();
    for v6 in [false, true] {
        let what = format!("pvnet vxlan <-> kernel vxlan, underlay v6={v6}");
        let hosts = Hosts::new(2);
        hosts.kernel_vxlan(1, v6);
        let d = hosts.pvnet(0, "vxlan", &[1], v6, "");
        traffic_both_ways(&what, &hosts.work[0], &hosts.hosts[1]);
        // The tap hands TSO super-frames over; they reach the vxlan: port whole (it
        // sends each as UDP GSO buffers), and nothing is segmented by the switch for it.
        let p = port_stats(&d, "vxlan:");
        assert!(p["counters"]["gso_tx"].as_u64() > Some(0), "{what}: {p}");
        assert_eq!(p["counters"]["segments"].as_u64(), Some(0), "{what}: {p}");
        let drops: u64 = p["drops"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum());
        assert_eq!(drops, 0, "{what}: {p}");
    }
}

#[test]
fn pvnet_to_pvnet_over_vxlan_and_geneve() {
    switch_util::require_root();
    for kind in ["vxlan", "geneve"] {
        let what = format!("pvnet {kind} <-> pvnet {kind}");
        let hosts = Hosts::new(2);
        let d0 = hosts.pvnet(0, kind, &[1], false, "");
        let d1 = hosts.pvnet(1, kind, &[0], false, "");
        traffic_both_ways(&what, &hosts.work[0], &hosts.work[1]);
        for d in [&d0, &d1] {
            let p = port_stats(d, kind);
            assert!(p["counters"]["gso_tx"].as_u64() > Some(0), "{what}: {p}");
        }
    }
}

#[test]
fn pvnet_to_pvnet_over_vxlan_with_two_queues_a_side() {
    switch_util::require_root();
    let what = "pvnet vxlan,queues=2 <-> pvnet vxlan,queues=2";
    let hosts = Hosts::new(2);
    let d0 = hosts.pvnet(0, "vxlan", &[1], false, ",queues=2");
    let d1 = hosts.pvnet(1, "vxlan", &[0], false, ",queues=2");
    traffic_both_ways(what, &hosts.work[0], &hosts.work[1]);
    for d in [&d0, &d1] {
        let p = port_stats(d, "vxlan");
        assert!(p["counters"]["gso_tx"].as_u64() > Some(0), "{what}: {p}");
        // The spec the switch runs keeps the queues.
        let list = d.ctl_json(&["port", "list"]);
        assert!(list.to_string().contains("queues=2"), "{what}: {list}");
    }
}

#[test]
fn broadcast_and_arp_reach_every_remote() {
    switch_util::require_root();
    let hosts = Hosts::new(3);
    hosts.kernel_vxlan(1, false);
    hosts.kernel_vxlan(2, false);
    let _d = hosts.pvnet(0, "vxlan", &[1, 2], false, "");
    // Each exchange needs an ARP broadcast answered by one remote: both must get it.
    for target in [1, 2] {
        let to: IpAddr = inner4(target).parse().expect("addr");
        let ok = udp_echo(&hosts.work[0], &hosts.hosts[target], to, 5);
        assert_eq!(ok, 5, "udp echo with host {target}");
    }
    // A broadcast datagram reaches both kernel hosts.
    let before: Vec<u64> = (1..3).map(|h| rx_packets(&hosts.hosts[h])).collect();
    let s = in_netns(hosts.work[0].name(), || UdpSocket::bind("10.1.0.1:0")).expect("bind");
    s.set_broadcast(true).expect("broadcast");
    for _ in 0..3 {
        s.send_to(b"to everyone", "10.1.0.255:9").expect("send");
    }
    std::thread::sleep(Duration::from_millis(300));
    for (k, h) in (1..3).enumerate() {
        let after = rx_packets(&hosts.hosts[h]);
        assert!(after >= before[k] + 3, "host {h}: {} -> {after}", before[k]);
    }
}

/// Packets received on the kernel vxlan device of a host.
fn rx_packets(h: &Netns) -> u64 {
    let out = h
        .exec("cat", &["/sys/class/net/vx0/statistics/rx_packets"])
        .expect("rx_packets");
    out.trim().parse().expect("number")
}

#[test]
fn hostile_underlay_input_is_dropped_while_a_transfer_runs() {
    switch_util::require_root();
    for kind in ["vxlan", "geneve"] {
        let hosts = Hosts::new(2);
        let d0 = hosts.pvnet(0, kind, &[1], false, "");
        let _d1 = hosts.pvnet(1, kind, &[0], false, "");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let port = if kind == "vxlan" { 4789 } else { 6081 };
        let to: SocketAddr = format!("{}:{port}", under4(0)).parse().expect("addr");
        let h1 = hosts.hosts[1].name().to_owned();
        // From the remote's own address, so the datagrams get past the remote check.
        let attacker = std::thread::spawn(move || {
            let s = in_netns(&h1, || UdpSocket::bind("10.200.0.2:0")).expect("bind");
            let mut eth = vec![0u8; 14 + 20];
            eth[..6].copy_from_slice(&[0xff; 6]);
            eth[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x66]);
            eth[12..14].copy_from_slice(&[0x08, 0x00]);
            eth[14] = 0x45;
            eth[16..18].copy_from_slice(&1500u16.to_be_bytes()); // longer than sent
            let hdr = |vni: u8| -> Vec<u8> {
                if kind == "vxlan" {
                    vec![0x08, 0, 0, 0, 0, 0, vni, 0]
                } else {
                    vec![0, 0, 0x65, 0x58, 0, 0, vni, 0]
                }
            };
            let cases: Vec<Vec<u8>> = vec![
                vec![0x08, 0],                   // truncated outer header
                [hdr(43), eth.clone()].concat(), // wrong VNI
                [hdr(42), eth.clone()].concat(), // inner longer than datagram
                [vec![1, 0, 0x65, 0x58, 0, 0, 42, 0, 0, 1, 2, 7], eth.clone()].concat(), // lying option
                [hdr(42), vec![0u8; 5]].concat(), // no inner Ethernet header
            ];
            let mut sent = 0u64;
            while !flag.load(Ordering::Relaxed) {
                for c in &cases {
                    let _ = s.send_to(c, to);
                    sent += 1;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            sent
        });
        let start = Instant::now();
        let bytes = 32 << 20;
        let a: IpAddr = inner4(0).parse().expect("addr");
        let (got, intact) = tcp(&hosts.work[1], &hosts.work[0], a, 5400, bytes);
        stop.store(true, Ordering::Relaxed);
        let sent = attacker.join().expect("attacker");
        assert!(sent > 100, "{kind}: only {sent} hostile datagrams");
        assert!(
            got == bytes && intact,
            "{kind}: {got} of {bytes} bytes, intact {intact} under attack ({:?})",
            start.elapsed()
        );
        assert_eq!(csum_errors(&hosts.work[0]), 0, "{kind}");
        // Every refused datagram is counted (as a parse drop; the port keeps the causes),
        // whichever arrived before the switch stopped reading. The switch's threads
        // publish their counters every 100 ms, so the last ones may take that long.
        let deadline = Instant::now() + Duration::from_secs(5);
        let (p, parse) = loop {
            let p = port_stats(&d0, kind);
            let parse = p["drops"]["parse"].as_u64().unwrap_or(0);
            if parse >= sent.min(100) || Instant::now() >= deadline {
                break (p, parse);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            parse >= sent.min(100),
            "{kind}: {sent} sent, {parse} counted: {p}"
        );
        assert!(parse <= sent, "{kind}: {sent} sent, {parse} counted: {p}");
    }
}
