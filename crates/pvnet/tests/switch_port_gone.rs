//! A port whose device disappears under the running switch (`ip link del` of its tap, as
//! when a VM is destroyed): the port is removed and counted once by its cause, its thread
//! ends instead of spinning on the dead fd, and the switch stops cleanly. Before, the thread looped at
//! 100 % CPU on `EBADFD`, logging every failed read.

mod switch_util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pvnet::switch::lab::{Lab, LabOptions};
use pvnet::switch::Removal;
use pvnet_linux::netns::{in_netns, Netns};

/// The tests measure this process's CPU time: they must not run at the same time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// CPU time (user + system, in clock ticks) this process has used so far.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The command name is in parentheses and may contain spaces: fields follow the ')'.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the ')'.
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    utime + stime
}

#[test]
fn deleted_tap_takes_its_port_down_and_the_switch_goes_idle() {
    switch_util::require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut lab = Lab::start(LabOptions::default()).expect("lab");
    // Both sides work before.
    let t = lab
        .tcp(0, false, 2_000_000, Duration::ZERO, None)
        .expect("tcp before");
    assert!(
        t.intact && t.received == 2_000_000,
        "transfer before: {t:?}"
    );

    // The device of port 1 disappears.
    lab.ns[1]
        .run(&["link", "del", &lab.taps[1]])
        .expect("delete the tap");
    std::thread::sleep(Duration::from_millis(500));

    // The switch's threads are idle now: over one second this process (the switch's
    // threads; the test thread sleeps) uses a small fraction of a core. A thread
    // spinning on the dead fd would use all of one (100 ticks of 10 ms).
    let before = cpu_ticks();
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks() - before;
    assert!(
        used < 30,
        "the switch used {used} ticks in 1 s after the tap was deleted"
    );

    // The port left the switch, counted once by its cause; the other one stays.
    let names: Vec<String> = lab.control.ports().into_iter().map(|r| r.name).collect();
    assert_eq!(names, vec![lab.taps[0].clone()], "ports left");
    assert_eq!(
        lab.removed(),
        vec![(Removal::DeviceGone, 1), (Removal::Deleted, 0)]
    );
    let stats = lab.stop().expect("the switch stops cleanly");
    assert_eq!(stats.len(), 1, "{stats:?}");
    assert_eq!(stats[0].0, lab.taps[0]);
}

/// Three ports; the third one's device is deleted while it sends and while a TCP
/// transfer runs between the other two: the transfer is intact and does not stall, the
/// switch goes idle, and its log grows by a few lines, not one per frame.
#[test]
fn deleting_a_device_under_traffic_spares_the_other_ports() {
    switch_util::require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let log = pvnet::logging::init(1, pvnet::logging::LogFormat::Text);
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let ns = Netns::create_unique("pvgone").expect("netns");
    let tap = format!("pg{}c", std::process::id() % 100_000);
    let spec = format!("tap:{tap},netns={}", ns.name());
    lab.control
        .add_spec(&spec.parse().expect("spec"))
        .expect("add the third port");
    // The third namespace joins the lab's subnet and sends UDP to side 0 non-stop.
    let [a, b, c, _] = lab.addr4[0].octets();
    let mine = std::net::Ipv4Addr::new(a, b, c, 3);
    ns.run(&["addr", "add", &format!("{mine}/24"), "dev", &tap])
        .expect("address");
    let sock = in_netns(ns.name(), move || {
        std::net::UdpSocket::bind(std::net::SocketAddr::from((mine, 0)))
    })
    .expect("udp socket");
    let to = std::net::SocketAddr::from((lab.addr4[0], 9));
    let stop = AtomicBool::new(false);
    let (lines_before, lines_after) = std::thread::scope(|s| {
        let transfer = s.spawn(|| lab.tcp(0, false, 0, Duration::from_secs(3), None));
        let blaster = s.spawn(|| {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if sock.send_to(&[0u8; 1000], to).is_ok() {
                    sent += 1;
                }
            }
            sent
        });
        std::thread::sleep(Duration::from_millis(800));
        let before = log.last(usize::MAX).len();
        ns.run(&["link", "del", &tap])
            .expect("delete the third tap");
        let t = transfer.join().expect("transfer thread").expect("transfer");
        stop.store(true, Ordering::Relaxed);
        let sent = blaster.join().expect("blaster");
        assert!(sent > 100, "the third port sent {sent} datagrams");
        assert!(t.intact && t.received > 0, "transfer: {t:?}");
        assert!(
            t.max_gap < Duration::from_secs(1),
            "the transfer between the other ports stalled for {:?}",
            t.max_gap
        );
        (before, log.last(usize::MAX).len())
    });
    wait_removed(&lab);
    let before = cpu_ticks();
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks() - before;
    assert!(used < 30, "the switch used {used} ticks in 1 s afterwards");
    let grown = lines_after - lines_before;
    assert!(
        grown <= 10,
        "the log grew by {grown} lines: {:?}",
        log.last(grown)
    );
    assert!(
        log.last(usize::MAX)
            .iter()
            .any(|l| l.contains("device gone") && l.contains(&tap)),
        "the cause is logged once"
    );
}

fn wait_removed(lab: &Lab) {
    let start = std::time::Instant::now();
    while lab.removed()[0].1 == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "port never removed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lab.control.ports().len(), 2);
}
