//! `pvnet ctl` against a running `pvnet switch`, and against none; the control socket
//! under malformed requests; ports added and removed while a transfer runs; SIGHUP.

mod switch_util;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pvnet::ctl::server::CtlServer;
use pvnet::logging::LogRing;
use pvnet::switch::control::CtlService;
use pvnet::switch::lab::{Lab, LabOptions};
use pvnet::switch::Removal;
use pvnet_linux::netns::Netns;
use rustix::process::{kill_process, Pid, Signal};
use switch_util::{ctl_at, tap_exists, Daemon};

/// A tap name unique to this test process and `tag`.
fn tap(tag: &str) -> String {
    format!("pc{}{tag}", std::process::id() % 100_000)
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_verb_with_and_without_json_against_a_running_switch() {
    switch_util::require_root();
    let ns = [
        Netns::create_unique("pvctl").expect("netns"),
        Netns::create_unique("pvctl").expect("netns"),
        Netns::create_unique("pvctl").expect("netns"),
    ];
    let (a, b, c) = (tap("a"), tap("b"), tap("c"));
    let d = Daemon::start(&[
        &format!("tap:{a},netns={}", ns[0].name()),
        &format!("tap:{b},netns={},offload=none,vlan=7", ns[1].name()),
    ]);

    // port list
    let text = d.ctl_ok(&["port", "list"]);
    assert!(text.starts_with("NAME"), "{text}");
    assert!(text.contains(&a) && text.contains(&b), "{text}");
    let list = d.ctl_json(&["port", "list"]);
    assert_eq!(list[1]["name"], b.as_str());
    assert_eq!(list[1]["kind"], "tap");
    assert_eq!(list[1]["netns"], ns[1].name());
    assert_eq!(list[1]["vlan"], 7);
    assert_eq!(list[1]["offload_in_effect"], "sg");
    assert_eq!(
        list[1]["gro"], true,
        "a legacy port next to a TSO one coalesces"
    );
    assert_eq!(list[0]["state"], "up");

    // port add, with and without --json, and the errors
    let spec_c = format!("tap:{c},netns={}", ns[2].name());
    let text = d.ctl_ok(&["port", "add", &spec_c]);
    assert!(text.contains(&format!("added port {c}")), "{text}");
    assert!(tap_exists(&ns[2], &c), "the tap was created");
    assert_eq!(d.port_names(), vec![a.clone(), b.clone(), c.clone()]);
    let dup = d.ctl(&["port", "add", &format!("tap:{c},netns={}", ns[0].name())]);
    assert_eq!(dup.status.code(), Some(1));
    let err = String::from_utf8_lossy(&dup.stderr);
    assert!(err.contains("already in the switch"), "{err}");
    let bad = d.ctl(&["port", "add", "tap:x,netns=pvnet-no-such-ns"]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("does not exist"),
        "same message as at start-up: {err}"
    );
    let bad = d.ctl(&["port", "add", "carrier-pigeon:x"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("port spec"));

    // stats: table, one port, JSON
    let text = d.ctl_ok(&["stats"]);
    assert!(
        text.starts_with("PORT") && text.contains("MAC table"),
        "{text}"
    );
    let text = d.ctl_ok(&["stats", &a]);
    assert!(text.contains("rx_packets"), "{text}");
    let s = d.ctl_json(&["stats"]);
    assert_eq!(s["ports"].as_array().map(Vec::len), Some(3));
    assert_eq!(s["ports_removed"]["deleted"], 0);
    assert_eq!(s["mac_capacity"], 4096);
    let s = d.ctl_json(&["stats", &b]);
    assert_eq!(s["ports"][0]["port"], b.as_str());
    assert!(s["ports"][0]["drops"]["vlan"].is_u64());
    let no = d.ctl(&["stats", "nope"]);
    assert_eq!(no.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no.stderr).contains("no port named nope"));

    // stats --watch: a table a second until interrupted
    let mut w = switch_util::pvnet()
        .args(["ctl", "--ctl"])
        .arg(&d.ctl)
        .args(["stats", "--watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("watch");
    std::thread::sleep(Duration::from_millis(2500));
    let _ = w.kill();
    let mut out = String::new();
    w.stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    let _ = w.wait();
    assert!(
        out.matches("PORT").count() >= 2,
        "two tables or more: {out}"
    );
    assert!(
        out.contains("RX/s"),
        "rates from the second table on: {out}"
    );

    // mac list: the kernel's own IPv6 chatter (MLD, DAD, router solicitations) teaches
    // the switch the taps' addresses.
    wait_until("an address learned", || {
        d.ctl_json(&["mac", "list"])["entries"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
    });
    let m = d.ctl_json(&["mac", "list"]);
    let e = &m["entries"][0];
    assert_eq!(e["mac"].as_str().map(str::len), Some(17), "{m}");
    assert!(e["age_secs"].as_f64().is_some_and(|a| a >= 0.0));
    let text = d.ctl_ok(&["mac", "list"]);
    assert!(
        text.starts_with("MAC") && text.contains("entries"),
        "{text}"
    );

    // offload show: ethtool -k form, with reasons
    let text = d.ctl_ok(&["offload", "show", &b]);
    assert!(text.contains(&format!("Features for {b}:")), "{text}");
    assert!(text.contains("scatter-gather: on"), "{text}");
    assert!(
        text.contains("tx-tcp-segmentation: off\t# not asked for (offload=none)"),
        "{text}"
    );
    let o = d.ctl_json(&["offload", "show", &a]);
    let tso = o["features"]
        .as_array()
        .and_then(|f| f.iter().find(|l| l["name"] == "tx-tcp-segmentation"))
        .expect("tso line");
    assert_eq!(tso["on"], true);
    assert_eq!(d.ctl(&["offload", "show", "nope"]).status.code(), Some(1));

    // config, log, version
    let text = d.ctl_ok(&["config"]);
    let doc: toml::Table = toml::from_str(&text).expect("config is TOML");
    assert_eq!(doc["port"].as_array().map(Vec::len), Some(3));
    let v = d.ctl_json(&["config"]);
    assert!(v["toml"].as_str().is_some_and(|t| t.contains(&c)));
    let text = d.ctl_ok(&["log", "-n", "500"]);
    assert!(text.contains("port added"), "{text}");
    let v = d.ctl_json(&["log"]);
    assert!(v["lines"].as_array().is_some_and(|l| !l.is_empty()));
    let text = d.ctl_ok(&["version"]);
    assert!(text.contains("pvnet switch"), "{text}");
    let v = d.ctl_json(&["version"]);
    assert_eq!(v["pid"], d.child.0.id());

    // port del, with and without --json
    let text = d.ctl_ok(&["port", "del", &c]);
    assert_eq!(text, format!("removed port {c}\n"));
    assert!(!tap_exists(&ns[2], &c), "the tap it created is gone");
    assert_eq!(d.ctl_json(&["port", "del", &b]), serde_json::Value::Null);
    assert_eq!(d.port_names(), vec![a.clone()]);
    let s = d.ctl_json(&["stats"]);
    assert_eq!(s["ports_removed"]["deleted"], 2);
    let no = d.ctl(&["port", "del", &c]);
    assert_eq!(no.status.code(), Some(1));
    let err = String::from_utf8_lossy(&no.stderr);
    assert!(
        err.contains(&format!("no port named {c} (ports: {a})")),
        "{err}"
    );
}

#[test]
fn every_verb_without_a_switch_says_which_socket_it_tried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("nobody.sock");
    let verbs: &[&[&str]] = &[
        &["port", "list"],
        &["port", "add", "tap:x"],
        &["port", "del", "x"],
        &["stats"],
        &["stats", "x"],
        &["mac", "list"],
        &["offload", "show", "x"],
        &["config"],
        &["log"],
        &["version"],
    ];
    for verb in verbs {
        for json in [false, true] {
            let mut args: Vec<&str> = Vec::new();
            if json {
                args.push("--json");
            }
            args.extend_from_slice(verb);
            let out = ctl_at(&sock, &args);
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("no switch is running on") && err.contains("nobody.sock"),
                "{args:?}: {err}"
            );
            assert_eq!(err.lines().count(), 1, "one line: {err}");
            assert!(out.stdout.is_empty());
        }
    }
}

/// One request line, one answer line, on a fresh connection.
fn raw(sock: &std::path::Path, line: &[u8]) -> String {
    let mut s = UnixStream::connect(sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    s.write_all(line).expect("write");
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).expect("answer");
    answer
}

#[test]
fn malformed_requests_get_errors_and_forwarding_goes_on() {
    switch_util::require_root();
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("ctl.sock");
    let service = CtlService {
        control: lab.control.clone(),
        log: LogRing::default(),
        config_file: None,
        started: Instant::now(),
    };
    let server = CtlServer::start(&sock, Arc::new(service)).expect("serve");
    let mode = std::fs::metadata(&sock).expect("socket").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let transfer = s.spawn(|| lab.tcp(0, false, 0, Duration::from_secs(4), Some(&stop)));
        std::thread::sleep(Duration::from_millis(300));

        // Garbage, an unknown command, a missing field, an extra one.
        for bad in [
            &b"hello\n"[..],
            b"{\"cmd\":\"reboot\"}\n",
            b"{\"cmd\":\"port_del\"}\n",
            b"{\"cmd\":\"port_list\",\"x\":1}\n",
            b"\xff\xfe\n",
        ] {
            let a = raw(&sock, bad);
            assert!(
                a.starts_with("{\"ok\":false,\"error\":\"not a request"),
                "{a}"
            );
        }
        // Longer than 64 KiB: an error, and the connection is closed.
        let mut s1 = UnixStream::connect(&sock).expect("connect");
        s1.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let _ = s1.write_all(&vec![b'x'; 100 * 1024]);
        let mut a = String::new();
        let mut r = BufReader::new(s1);
        r.read_line(&mut a).expect("answer");
        assert!(a.contains("longer than 65536 bytes"), "{a}");
        // Half a line, then the client hangs up.
        let mut s2 = UnixStream::connect(&sock).expect("connect");
        s2.write_all(b"{\"cmd\":\"por").expect("write");
        drop(s2);
        // A client that asks a lot and never reads.
        let mut s3 = UnixStream::connect(&sock).expect("connect");
        s3.set_write_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        for _ in 0..20_000 {
            if s3.write_all(b"{\"cmd\":\"mac_list\"}\n").is_err() {
                break;
            }
        }
        // Several requests on one connection still work, and a good one after all that.
        let mut s4 = UnixStream::connect(&sock).expect("connect");
        s4.write_all(b"{\"cmd\":\"version\"}\n{\"cmd\":\"port_list\"}\n")
            .expect("write");
        let mut r4 = BufReader::new(s4);
        let (mut l1, mut l2) = (String::new(), String::new());
        r4.read_line(&mut l1).expect("first");
        r4.read_line(&mut l2).expect("second");
        assert!(
            l1.starts_with("{\"ok\":true") && l1.contains("uptime_secs"),
            "{l1}"
        );
        assert!(l2.contains(&lab.taps[1]), "{l2}");
        drop(s3);

        let t = transfer.join().expect("transfer thread").expect("transfer");
        assert!(
            t.intact && t.received > 0,
            "transfer during the abuse: {t:?}"
        );
        assert!(
            t.max_gap < Duration::from_secs(1),
            "the transfer stalled for {:?}",
            t.max_gap
        );
    });
    stop.store(true, Ordering::Relaxed);
    let a = raw(&sock, b"{\"cmd\":\"stats\"}\n");
    assert!(a.starts_with("{\"ok\":true"), "{a}");
    drop(server);
    assert!(
        !sock.exists(),
        "the socket is removed when the server stops"
    );
}

#[test]
fn ports_added_and_removed_while_a_transfer_runs() {
    switch_util::require_root();
    let mut lab = Lab::start(LabOptions::default()).expect("lab");
    let extra = [
        Netns::create_unique("pvctl").expect("netns"),
        Netns::create_unique("pvctl").expect("netns"),
    ];
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let transfer = s.spawn(|| lab.tcp(0, false, 0, Duration::from_secs(5), Some(&stop)));
        std::thread::sleep(Duration::from_millis(300));
        for round in 0..4 {
            let names: Vec<String> = (0..2).map(|i| tap(&format!("r{round}{i}"))).collect();
            for (i, n) in names.iter().enumerate() {
                let spec = format!("tap:{n},netns={},offload=none", extra[i].name());
                let r = lab
                    .control
                    .add_spec(&spec.parse().expect("spec"))
                    .expect("port add");
                assert_eq!(&r.name, n);
            }
            assert_eq!(lab.control.ports().len(), 4);
            std::thread::sleep(Duration::from_millis(200));
            for n in &names {
                lab.control.del(n).expect("port del");
            }
            assert_eq!(lab.control.ports().len(), 2);
        }
        let t = transfer.join().expect("transfer thread").expect("transfer");
        assert!(t.intact && t.received > 0, "transfer: {t:?}");
        assert!(
            t.max_gap < Duration::from_secs(1),
            "the transfer stalled for {:?} while ports came and went",
            t.max_gap
        );
    });
    assert_eq!(
        lab.removed(),
        vec![(Removal::DeviceGone, 0), (Removal::Deleted, 8)]
    );
    // The slots were reused: the two original ports are still 0 and 1.
    let stats = lab.stop().expect("stop");
    assert_eq!(stats.len(), 2);
    assert_eq!(stats[0].0, lab.taps[0]);
}

#[test]
fn sighup_adds_and_removes_exactly_the_changed_ports() {
    switch_util::require_root();
    let ns = Netns::create_unique("pvhup").expect("netns");
    let (a, b, c, d_) = (tap("ha"), tap("hb"), tap("hc"), tap("hd"));
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("sw.toml");
    let write = |ports: &[&str]| {
        let mut t = String::from("[switch]\nageing_secs = 60\n");
        for p in ports {
            t.push_str(&format!(
                "[[port]]\nspec = \"tap:{p},netns={}\"\n",
                ns.name()
            ));
        }
        std::fs::write(&cfg, t).expect("write config");
    };
    write(&[&a, &b]);
    let cfg_s = cfg.display().to_string();
    let d = Daemon::start(&["--config", &cfg_s, &format!("tap:{d_},netns={}", ns.name())]);
    assert_eq!(d.port_names(), vec![a.clone(), b.clone(), d_.clone()]);
    let ifindex = |n: &str| ns.run(&["-o", "link", "show", "dev", n]).expect("link");
    let b_before = ifindex(&b);

    // b stays, a goes, c comes; d (command line) is not the file's.
    write(&[&b, &c]);
    kill_process(Pid::from_child(&d.child.0), Signal::HUP).expect("SIGHUP");
    wait_until("the reload", || {
        let mut names = d.port_names();
        names.sort();
        let mut want = vec![b.clone(), c.clone(), d_.clone()];
        want.sort();
        names == want
    });
    assert!(!tap_exists(&ns, &a), "a's tap is gone");
    assert!(tap_exists(&ns, &c), "c's tap is there");
    assert_eq!(ifindex(&b), b_before, "b was left alone");
    let s = d.ctl_json(&["stats"]);
    assert_eq!(s["ports_removed"]["deleted"], 1);

    // A broken file changes nothing and says so.
    std::fs::write(&cfg, "[[port]]\nspec = 5\n").expect("write");
    kill_process(Pid::from_child(&d.child.0), Signal::HUP).expect("SIGHUP");
    wait_until("the error logged", || {
        d.log_text().contains("keeping the running configuration")
    });
    assert_eq!(d.port_names().len(), 3);
}

#[test]
fn systemd_hears_ready_and_the_log_is_json() {
    switch_util::require_root();
    let ns = Netns::create_unique("pvsd").expect("netns");
    let dir = tempfile::tempdir().expect("tempdir");
    let notify = dir.path().join("notify.sock");
    let sd = std::os::unix::net::UnixDatagram::bind(&notify).expect("notify socket");
    sd.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let ctl = dir.path().join("ctl.sock");
    let a = tap("sd");
    let mut child = switch_util::Reap(
        switch_util::pvnet()
            .args(["switch", &format!("tap:{a},netns={}", ns.name()), "--ctl"])
            .arg(&ctl)
            .args(["--log-format", "json", "-v"])
            .env("NOTIFY_SOCKET", &notify)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    let mut buf = [0u8; 512];
    let n = sd.recv(&mut buf).expect("a notification");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.contains("READY=1"), "{msg}");
    // Ready means ready: the socket answers and the port is open.
    assert!(ctl_at(&ctl, &["version"]).status.success());
    assert!(tap_exists(&ns, &a));
    kill_process(Pid::from_child(&child.0), Signal::TERM).expect("SIGTERM");
    let n = sd.recv(&mut buf).expect("a notification");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    let mut err = String::new();
    child
        .0
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    assert!(child.0.wait().expect("wait").success());
    let lines: Vec<&str> = err.lines().collect();
    assert!(!lines.is_empty());
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{l}");
    }
    assert!(
        lines.iter().any(|l| l.contains("the switch has one port")),
        "a one-port switch warns: {err}"
    );
}
