//! Real guests (QEMU under TCG, the guest of scripts/guest/build) on `vhost-user:` ports:
//! every offload negotiated, TCP both ways with every byte intact and no checksum error,
//! super-frames from the guest passed to an offload-capable tap unsegmented, two guests
//! talking to each other in super-frames.

mod guest_util;
mod switch_util;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use guest_util::{bytes_both_ways, feature, iperf3_both_ways, no_csum_errors, wait_listen};
use pvnet::guest::{unique_mac, vhost_user_net_args, Guest, GuestOptions};
use pvnet::switch::lab::{Lab, LabOptions};
use pvnet_core::switch::counters::PortCounters;
use pvnet_linux::portspec::PortSpec;
use pvnet_linux::testing::require_root;

fn sock(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pvnet-gvu-{}-{tag}.sock", std::process::id()))
}

/// Removes a path when dropped, also when the test fails.
struct Unlink(PathBuf);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn counters(lab: &Lab, name: &str) -> PortCounters {
    lab.stats()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, c)| c)
        .unwrap_or_else(|| panic!("no port {name} in the stats"))
}

fn add_vhost_port(lab: &Lab, path: &std::path::Path) -> String {
    let spec: PortSpec = format!("vhost-user:{}", path.display())
        .parse()
        .expect("spec");
    lab.control
        .add_spec(&spec)
        .expect("add vhost-user port")
        .name
}

/// Boot a guest on the vhost-user socket `path` with address `addr`/24.
fn boot(path: &std::path::Path, addr: Ipv4Addr) -> Guest {
    Guest::boot(GuestOptions {
        net_args: vhost_user_net_args(path, &unique_mac()),
        ip: Some(format!("{addr}/24")),
        ..GuestOptions::default()
    })
    .expect("boot the guest")
}

/// Wait until the published counters of `name` satisfy `f` (they are published about
/// every 100 ms).
fn eventually(lab: &Lab, name: &str, what: &str, f: impl Fn(&PortCounters) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let c = counters(lab, name);
        if f(&c) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {c:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_guest_on_vhost_user_takes_every_offload_both_ways() {
    require_root("the guest tests (namespaces, taps, QEMU)");
    let lab = Lab::start(LabOptions::default()).expect("lab");
    lab.ns[0].disable_ipv6().expect("disable IPv6");
    let path = sock("one");
    let port = add_vhost_port(&lab, &path);
    let o = lab.addr4[0].octets();
    let addr = Ipv4Addr::new(o[0], o[1], o[2], 3);
    let host = lab.addr4[0];
    let guest = boot(&path, addr);

    let features = guest.run_ok("ethtool -k eth0").expect("ethtool -k");
    for f in [
        "tx-checksumming",
        "tcp-segmentation-offload",
        "rx-checksumming",
        "scatter-gather",
    ] {
        assert_eq!(
            feature(&features, f),
            Some(true),
            "{f} is not on in the guest:\n{features}"
        );
    }
    if let Err(e) = guest.run_ok(&format!("ping -c 1 -W 5 {host}")) {
        eprintln!("stats: {:#?}", lab.stats());
        eprintln!(
            "{}",
            guest
                .run("ip -s link show eth0; cat /proc/interrupts | grep -i virt; ip neigh")
                .map(|x| x.1)
                .unwrap_or_default()
        );
        eprintln!("console: {}", guest.console_log());
        panic!("the guest does not reach the namespace: {e}");
    }
    iperf3_both_ways(&guest, &lab.ns[0], addr);
    bytes_both_ways(&guest, &lab.ns[0], addr, host, 7000);
    no_csum_errors(&guest, &lab.ns[0]);

    // The guest sent super-frames, and the tap (which takes TSO) got them unsegmented;
    // the namespace's super-frames reached the guest whole too.
    eventually(&lab, &port, "super-frames from the guest", |c| c.gso_rx > 0);
    let v = counters(&lab, &port);
    let t = counters(&lab, &lab.taps[0]);
    eprintln!("vhost-user port: {v:?}\ntap: {t:?}");
    assert!(t.gso_tx > 0, "super-frames passed to the tap whole: {t:?}");
    assert_eq!(t.gso_segmented, 0, "nothing segmented for the tap: {t:?}");
    assert!(v.gso_tx > 0, "super-frames to the guest: {v:?}");
    assert_eq!(v.gso_segmented, 0, "nothing segmented for the guest: {v:?}");
}

#[test]
fn two_guests_talk_in_super_frames() {
    require_root("the guest tests (namespaces, taps, QEMU)");
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let (pa, pb) = (sock("a"), sock("b"));
    let (na, nb) = (add_vhost_port(&lab, &pa), add_vhost_port(&lab, &pb));
    let o = lab.addr4[0].octets();
    let (aa, ab) = (
        Ipv4Addr::new(o[0], o[1], o[2], 10),
        Ipv4Addr::new(o[0], o[1], o[2], 11),
    );
    let (ga, gb) = std::thread::scope(|s| {
        let a = s.spawn(|| boot(&pa, aa));
        let b = s.spawn(|| boot(&pb, ab));
        (a.join().expect("boot a"), b.join().expect("boot b"))
    });
    gb.run_ok(&format!(
        "iperf3 -s -D -B {ab} -p 5201 && {}",
        wait_listen(5201)
    ))
    .expect("iperf3 server in guest b");
    let out = ga
        .run_ok(&format!("iperf3 -c {ab} -p 5201 -t 3 -f m"))
        .expect("iperf3 from guest a to guest b");
    eprintln!("guest a -> guest b:\n{out}");
    // Every byte, both ways, checked in the guests: each serves 4 MiB of its own random
    // bytes over HTTP (busybox httpd) and fetches the other's (wget); the sha256 of what
    // was fetched must be the server's.
    let mut sums = Vec::new();
    for (g, a) in [(&ga, aa), (&gb, ab)] {
        let sum = g
            .run_ok(
                "mkdir -p /srv && head -c 4194304 /dev/urandom >/srv/x && \
                 httpd -p 8080 -h /srv && sha256sum </srv/x",
            )
            .expect("serve 4 MiB");
        sums.push((a, sum));
    }
    for (g, (peer, want)) in [(&ga, &sums[1]), (&gb, &sums[0])] {
        let got = g
            .run_ok(&format!(
                "wget -q -O /tmp/y http://{peer}:8080/x && sha256sum </tmp/y"
            ))
            .expect("fetch the other guest's 4 MiB");
        assert_eq!(
            &got,
            want,
            "4 MiB from {peer} arrived changed ({} bytes)",
            g.run_ok("wc -c </tmp/y").unwrap_or_default().trim()
        );
    }
    for g in [&ga, &gb] {
        assert_eq!(
            g.csum_errors().expect("snmp"),
            (0, 0),
            "checksum errors in a guest"
        );
    }
    eventually(&lab, &nb, "super-frames to guest b", |c| c.gso_tx > 0);
    let (ca, cb) = (counters(&lab, &na), counters(&lab, &nb));
    eprintln!("port a: {ca:?}\nport b: {cb:?}");
    assert!(ca.gso_rx > 0, "guest a sent super-frames: {ca:?}");
    assert_eq!(cb.gso_segmented, 0, "nothing segmented for guest b: {cb:?}");
}

/// `kill -9` the switch while the guest sends, start it again with the same command: the
/// guest's QEMU (reconnect=1) connects again and its transfer goes on, the guest never
/// knew. Then kill QEMU: the port shows no carrier, counts the loss, and a new QEMU on the
/// same socket works.
#[test]
fn the_switch_restarts_under_a_running_guest_and_guests_come_and_go() {
    require_root("the guest tests (namespaces, veths, QEMU)");
    let ns = pvnet_linux::netns::Netns::create_unique("pvgvr").expect("namespace");
    ns.disable_ipv6().expect("disable IPv6");
    let tag = std::process::id() % 100_000;
    let (host_if, sw_if) = (format!("pvh{tag}"), format!("pvs{tag}"));
    ns.run(&[
        "link", "add", &host_if, "type", "veth", "peer", "name", &sw_if,
    ])
    .expect("veth");
    let net = (tag % 200) as u8 + 20;
    let host = Ipv4Addr::new(10, 197, net, 1);
    let addr = Ipv4Addr::new(10, 197, net, 2);
    ns.run(&["addr", "add", &format!("{host}/24"), "dev", &host_if])
        .expect("address");
    for dev in ["lo", host_if.as_str(), sw_if.as_str()] {
        ns.run(&["link", "set", "dev", dev, "up"]).expect("link up");
    }
    let path = sock("restart");
    // The switch is killed (SIGKILL) at the end too, so its socket stays behind.
    let _unlink = Unlink(path.clone());
    let port_arg = format!("vhost-user:{}", path.display());
    let packet_arg = format!("packet:{sw_if},netns={}", ns.name());
    let args = [port_arg.as_str(), packet_arg.as_str()];
    let mut sw = switch_util::Daemon::start(&args);
    let guest = boot(&path, addr);
    guest
        .run_ok(&format!("ping -c 1 -W 5 {host}"))
        .expect("the guest reaches the namespace");
    let _server = IperfServer::start(&ns, host, 5202).expect("iperf3 server in the namespace");
    // A 12 s transfer from the guest, in the background of its shell.
    guest
        .run_ok(&format!(
            "iperf3 -c {host} -p 5202 -t 12 -f m >/tmp/iperf.out 2>&1 & echo $! >/tmp/iperf.pid"
        ))
        .expect("iperf3 from the guest");
    std::thread::sleep(Duration::from_secs(3));
    let boot_id = guest
        .run_ok("cat /proc/sys/kernel/random/boot_id")
        .expect("boot id");
    // kill -9: no goodbye to QEMU, the socket file stays behind.
    sw.child.0.kill().expect("kill -9 the switch");
    let _ = sw.child.0.wait();
    std::thread::sleep(Duration::from_secs(1));
    drop(sw);
    let sw = switch_util::Daemon::start(&args);
    // QEMU reconnects within a second or two; the transfer finishes.
    let out = guest
        .run_timeout(
            "while kill -0 $(cat /tmp/iperf.pid) 2>/dev/null; do sleep 0.5; done; cat /tmp/iperf.out",
            Duration::from_secs(60),
        )
        .expect("the guest's transfer ends");
    eprintln!("{}", out.1);
    assert!(
        out.1.contains("receiver"),
        "iperf3 finished its transfer:\n{}",
        out.1
    );
    assert_eq!(
        guest
            .run_ok("cat /proc/sys/kernel/random/boot_id")
            .expect("boot id"),
        boot_id,
        "the guest did not reboot"
    );
    // Up to three echo requests: under TCG, with the machine's two cores shared by QEMU,
    // the switch and the namespace, a single one was lost once in many runs. A switch
    // whose traffic did not resume loses all three.
    if let Err(e) = guest.run_ok(&format!("ping -c 3 -W 5 {host}")) {
        let stats = sw.ctl_ok(&["stats"]);
        let inside = guest
            .run("ip -s link show eth0; ip neigh")
            .map(|x| x.1)
            .unwrap_or_default();
        panic!(
            "traffic did not resume after the restart: {e}\n{stats}\n{inside}\n{}",
            sw.log_text()
        );
    }
    let ports = sw.ctl_json(&["port", "list"]);
    let vu = ports
        .as_array()
        .and_then(|a| a.iter().find(|p| p["kind"] == "vhost-user"))
        .cloned()
        .expect("the vhost-user port");
    assert_eq!(vu["state"], "up", "{vu}");

    // Kill QEMU: the port loses its carrier and counts it; a new guest takes its place.
    drop(guest);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ports = sw.ctl_json(&["port", "list"]);
        let vu = ports
            .as_array()
            .and_then(|a| a.iter().find(|p| p["kind"] == "vhost-user"))
            .cloned()
            .expect("the vhost-user port");
        if vu["state"] == "no-carrier" {
            assert_eq!(vu["carrier_losses"], 1, "{vu}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the port never lost its carrier: {vu}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let again = boot(&path, addr);
    again
        .run_ok(&format!("ping -c 1 -W 5 {host}"))
        .expect("a new guest on the same socket");
    let log = sw.log_text();
    assert!(log.contains("frontend went away"), "{log}");
}

/// `queues=2`: the guest turns on both pairs (`ethtool -L eth0 combined 2`) and sends on
/// both transmit queues; everything it sends arrives.
#[test]
fn a_guest_uses_two_queue_pairs() {
    require_root("the guest tests (namespaces, taps, QEMU)");
    let lab = Lab::start(LabOptions::default()).expect("lab");
    lab.ns[0].disable_ipv6().expect("disable IPv6");
    let path = sock("mq");
    let spec: PortSpec = format!("vhost-user:{},queues=2", path.display())
        .parse()
        .expect("spec");
    let port = lab.control.add_spec(&spec).expect("add port").name;
    let o = lab.addr4[0].octets();
    let addr = Ipv4Addr::new(o[0], o[1], o[2], 4);
    let host = lab.addr4[0];
    let guest = Guest::boot(GuestOptions {
        net_args: vec![
            "-chardev".into(),
            format!("socket,id=c0,path={},reconnect=1", path.display()),
            "-netdev".into(),
            "vhost-user,id=n0,chardev=c0,queues=2".into(),
            "-device".into(),
            format!(
                "virtio-net-pci,netdev=n0,mac={},vectors=0,mrg_rxbuf=on,mq=on",
                unique_mac()
            ),
        ],
        ip: Some(format!("{addr}/24")),
        ..GuestOptions::default()
    })
    .expect("boot the guest");
    guest
        .run_ok("ethtool -L eth0 combined 2 && ethtool -l eth0")
        .expect("two queue pairs in the guest");
    guest
        .run_ok(&format!("ping -c 1 -W 5 {host}"))
        .expect("the guest reaches the namespace");
    let _server =
        IperfServer::start(&lab.ns[0], host, 5203).expect("iperf3 server in the namespace");
    // Several flows, so the guest's transmit queue selection uses both queues.
    let out = guest
        .run_timeout(
            &format!("iperf3 -c {host} -p 5203 -t 3 -P 8 -f m | tail -3"),
            Duration::from_secs(60),
        )
        .expect("iperf3 from the guest");
    assert_eq!(out.0, 0, "iperf3 from the guest: {}", out.1);
    let stats = guest.run_ok("ethtool -S eth0").expect("ethtool -S");
    let per_queue = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| {
                let (k, v) = l.trim().split_once(':')?;
                (k.trim() == name).then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0)
    };
    let (q0, q1) = (
        per_queue("tx_queue_0_packets"),
        per_queue("tx_queue_1_packets"),
    );
    eprintln!("guest transmit queues: {q0} and {q1} packets\n{}", out.1);
    assert!(
        q0 > 0 && q1 > 0,
        "both transmit queues carried frames:\n{stats}"
    );
    // The published counters lag by up to 100 ms.
    eventually(
        &lab,
        &port,
        "the port received what both queues sent",
        |c| c.rx_packets >= q0 + q1,
    );
    no_csum_errors(&guest, &lab.ns[0]);
}

/// An iperf3 server in a namespace for one client (`-1`), stopped when dropped: a
/// daemonized server would outlive the test, and keep its deleted namespace alive.
pub struct IperfServer {
    pidfile: std::path::PathBuf,
}

impl IperfServer {
    /// Listen on `host`:`port` in `ns`.
    pub fn start(
        ns: &pvnet_linux::netns::Netns,
        host: Ipv4Addr,
        port: u16,
    ) -> std::io::Result<IperfServer> {
        let pidfile = std::env::temp_dir().join(format!(
            "pvnet-iperf3-{}-{}-{port}.pid",
            std::process::id(),
            ns.name()
        ));
        let pid = pidfile.to_string_lossy().into_owned();
        let host = host.to_string();
        let port = port.to_string();
        ns.exec(
            "iperf3",
            &["-s", "-1", "-D", "-I", &pid, "-B", &host, "-p", &port],
        )?;
        Ok(IperfServer { pidfile })
    }
}

impl Drop for IperfServer {
    fn drop(&mut self) {
        // Gone already when its one client came and went.
        if let Ok(pid) = std::fs::read_to_string(&self.pidfile) {
            let pid = pid.trim_matches(char::from(0)).trim();
            if !pid.is_empty() {
                let _ = std::process::Command::new("kill").arg(pid).status();
            }
        }
        let _ = std::fs::remove_file(&self.pidfile);
    }
}
