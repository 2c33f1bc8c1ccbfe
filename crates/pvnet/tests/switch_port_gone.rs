//! A port whose device disappears under the running switch (`ip link del` of its tap, as
//! when a VM is destroyed): the port is removed and counted once by its cause, its thread
//! ends instead of spinning on the dead fd, and the switch stops cleanly. Before, the thread looped at
//! 100 % CPU on `EBADFD`, logging every failed read.

mod switch_util;

use std::time::Duration;

use pvnet::switch::lab::{Lab, LabOptions};
use pvnet::switch::Removal;

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
