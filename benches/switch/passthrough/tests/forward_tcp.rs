//! vnet-passthrough against the real kernel: a TCP connection between two namespaces whose
//! only link is the forwarder moves 1 MB each way intact. Needs root (namespaces and taps);
//! fails, not skips, without it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pvnet_linux::netns::Netns;
use pvnet_linux::testing::require_root;
use rustix::process::{kill_process, Pid, Signal};

const PAYLOAD_LEN: usize = 1 << 20;
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Kills the forwarder if the test ends early (a panic), so no tap outlives the test.
struct Forwarder(Child);

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Deterministic bytes that differ at every offset (a shifted copy would not compare equal).
fn payload() -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..PAYLOAD_LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn configure(ns: &Netns, dev: &str, addr: &str) {
    ns.run(&["link", "set", "lo", "up"]).unwrap();
    ns.run(&["addr", "add", addr, "dev", dev]).unwrap();
    ns.run(&["link", "set", dev, "mtu", "1500", "up"]).unwrap();
}

#[test]
fn forwards_tcp_bytes_between_namespaces() {
    require_root("vnet-passthrough against the kernel (network namespaces and taps)");
    let ns_a = Netns::create_unique("pvpt-a").unwrap();
    let ns_b = Netns::create_unique("pvpt-b").unwrap();

    // Declared after the namespaces, so it is dropped (killed) before they are deleted.
    let mut fwd = Forwarder(
        Command::new(env!("CARGO_BIN_EXE_vnet-passthrough"))
            .arg(format!("tap:pta0,netns={}", ns_a.name()))
            .arg(format!("tap:ptb0,netns={}", ns_b.name()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vnet-passthrough"),
    );

    // Wait (bounded) for the "ready" line: both taps exist and have their offloads.
    let stdout = fwd.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let ready = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("vnet-passthrough did not get ready within 10 s");
    assert!(ready.starts_with("ready pta0 <-> ptb0"), "got {ready:?}");

    configure(&ns_a, "pta0", "10.213.0.1/24");
    configure(&ns_b, "ptb0", "10.213.0.2/24");

    let data = payload();
    let listener = ns_b
        .enter_and(|| TcpListener::bind("10.213.0.2:0"))
        .unwrap()
        .unwrap();
    let server_addr = listener.local_addr().unwrap();

    // Server: take everything until the client's FIN, then send it all back.
    let server = std::thread::spawn(move || -> std::io::Result<usize> {
        let (mut conn, _) = listener.accept()?;
        conn.set_read_timeout(Some(IO_TIMEOUT))?;
        conn.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut got = Vec::with_capacity(PAYLOAD_LEN);
        conn.read_to_end(&mut got)?;
        conn.write_all(&got)?;
        Ok(got.len())
    });

    let started = Instant::now();
    let mut client = ns_a
        .enter_and(|| TcpStream::connect_timeout(&server_addr, Duration::from_secs(10)))
        .unwrap()
        .expect("connect through the forwarder");
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    client.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    client.write_all(&data).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut echoed = Vec::with_capacity(PAYLOAD_LEN);
    client.read_to_end(&mut echoed).unwrap();
    let received = server.join().unwrap().unwrap();
    eprintln!("1 MiB each way in {:?}", started.elapsed());

    assert_eq!(received, PAYLOAD_LEN, "server got a different byte count");
    assert_eq!(
        echoed.len(),
        PAYLOAD_LEN,
        "client got a different byte count"
    );
    assert!(
        echoed == data,
        "bytes changed on the way through the forwarder"
    );

    // SIGTERM must end it cleanly (status 0) with its counters on stderr.
    kill_process(Pid::from_child(&fwd.0), Signal::TERM).expect("SIGTERM to the forwarder");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = fwd.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit within 5 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    fwd.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    eprint!("{stderr}");
    assert!(status.success(), "exit {status}, stderr:\n{stderr}");
    assert!(
        stderr.contains("pta0 -> ptb0: ") && stderr.contains("ptb0 -> pta0: "),
        "no counters in stderr:\n{stderr}"
    );
}
