//! A two-namespace lab around one switch, for `pvnet demo` and the integration tests.
//!
//! [`Lab::start`] creates two network namespaces (unique names), a tap port inside each
//! (addresses 10.199.N.1-2/24 and fd00:199:N::1-2/64, on those taps only) or a veth pair
//! with a `packet:` port on one end, and runs the switch on its own thread. Dropping the
//! lab stops the switch (closing its taps) and deletes both namespaces, on every path.
//!
//! The lab is not test-only: `pvnet demo` runs its transfers through it
//! ([`Lab::tcp`]). What only tests use is behind the `testing` cargo feature: wrapping a
//! port to simulate a misbehaving kernel (`LabOptions::wrap`), the UDP echo and
//! checksum-error checks, and scratch file paths.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pvnet_linux::netns::{in_netns, Netns};
use pvnet_linux::portspec::PortSpec;

use pvnet_core::switch::counters::PortCounters;

use super::{open, NewPort, Removal, StatsHandle, Switch, SwitchConfig, SwitchControl};

#[cfg(feature = "testing")]
use {pvnet_linux::port::Port, std::net::UdpSocket, std::path::PathBuf};

/// Final counters returned by the switch thread.
type Finished = io::Result<Vec<(String, PortCounters)>>;

/// Wraps each queue of port `index` (0 or 1) before it joins the switch: tests use it to
/// simulate a kernel that misbehaves.
#[cfg(feature = "testing")]
pub type PortWrapper = Box<dyn Fn(usize, Box<dyn Port + Send>) -> Box<dyn Port + Send>>;

/// How to build a lab.
#[derive(Default)]
pub struct LabOptions {
    /// `offload=` value of each side (`None`: the tap's default, every offload).
    pub offload: [Option<String>; 2],
    /// Make a side's port an access port of this VLAN (`vlan=VID`); `None`: a trunk, whose
    /// untagged frames are VLAN 0. The namespaces always send untagged frames.
    pub access_vlan: [Option<u16>; 2],
    /// Attach a side with a `packet:` port instead of a tap: a veth pair inside that
    /// side's namespace, the switch's packet socket on one end (`NAMEs`), the namespace's
    /// addresses on the other (`NAME`, the name a tap would have had).
    pub packet: [bool; 2],
    /// Switch settings (`--pcap` included).
    pub config: SwitchConfig,
    /// Wrap every queue of both ports before the switch gets them (see [`PortWrapper`]).
    #[cfg(feature = "testing")]
    pub wrap: Option<PortWrapper>,
}

static SUBNET: AtomicU32 = AtomicU32::new(0);

/// The running lab. Fields drop in order: the switch thread is stopped and joined in
/// `Drop`, then the namespaces go.
pub struct Lab {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Finished>>,
    stats: StatsHandle,
    final_stats: Option<Vec<(String, PortCounters)>>,
    /// Adds and removes ports of the running switch.
    pub control: SwitchControl,
    /// Tap device names (inside `ns[0]`, `ns[1]`).
    pub taps: [String; 2],
    /// IPv4 address of each side, on its tap.
    pub addr4: [Ipv4Addr; 2],
    /// IPv6 address of each side, on its tap.
    pub addr6: [Ipv6Addr; 2],
    /// The two namespaces, deleted when the lab drops.
    pub ns: [Netns; 2],
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("ns", &self.ns)
            .field("taps", &self.taps)
            .finish()
    }
}

impl Lab {
    /// Create the namespaces and taps and start the switch.
    pub fn start(opts: LabOptions) -> io::Result<Lab> {
        let ns = [
            Netns::create_unique("pvlab")?,
            Netns::create_unique("pvlab")?,
        ];
        // Distinct subnets per lab so that concurrent labs never mix (they are in
        // different namespaces anyway; this keeps captures readable).
        let n = SUBNET.fetch_add(1, Ordering::Relaxed) % 250;
        let pid = std::process::id() % 100_000;
        let taps = [format!("pv{pid}a{n}"), format!("pv{pid}b{n}")];
        let mut sw = Switch::new(opts.config.clone())?;
        for i in 0..2 {
            let mut spec = if opts.packet[i] {
                let sw_end = format!("{}s", taps[i]);
                ns[i].run(&[
                    "link", "add", &taps[i], "type", "veth", "peer", "name", &sw_end,
                ])?;
                ns[i].run(&["link", "set", "dev", &sw_end, "up"])?;
                format!("packet:{sw_end},netns={}", ns[i].name())
            } else {
                format!("tap:{},netns={}", taps[i], ns[i].name())
            };
            if let Some(o) = &opts.offload[i] {
                spec.push_str(",offload=");
                spec.push_str(o);
            }
            let spec: PortSpec = spec
                .parse()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e}")))?;
            let port = open::open_port(&spec).map_err(|e| io::Error::other(e.to_string()))?;
            #[cfg(feature = "testing")]
            let queues = match &opts.wrap {
                Some(w) => port.queues.into_iter().map(|q| w(i, q)).collect(),
                None => port.queues,
            };
            #[cfg(not(feature = "testing"))]
            let queues = port.queues;
            let mut new = NewPort::opened(&spec, open::OpenedPort { queues, ..port });
            new.vlan = opts.access_vlan[i];
            sw.add_opened(new)?;
        }
        let addr4 = [
            Ipv4Addr::new(10, 199, n as u8, 1),
            Ipv4Addr::new(10, 199, n as u8, 2),
        ];
        let addr6 = [
            Ipv6Addr::new(0xfd00, 0x199, n as u16, 0, 0, 0, 0, 1),
            Ipv6Addr::new(0xfd00, 0x199, n as u16, 0, 0, 0, 0, 2),
        ];
        for i in 0..2 {
            ns[i].run(&["link", "set", "dev", "lo", "up"])?;
            ns[i].run(&["addr", "add", &format!("{}/24", addr4[i]), "dev", &taps[i]])?;
            ns[i].run(&[
                "addr",
                "add",
                &format!("{}/64", addr6[i]),
                "dev",
                &taps[i],
                "nodad",
            ])?;
            ns[i].run(&["link", "set", "dev", &taps[i], "up"])?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stats = sw.stats();
        let control = sw.control();
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("pvnet-switch".into())
            .spawn(move || {
                let r = sw.run(&flag);
                drop(sw);
                r
            })?;
        Ok(Lab {
            stop,
            handle: Some(handle),
            stats,
            final_stats: None,
            control,
            taps,
            addr4,
            addr6,
            ns,
        })
    }

    /// Counters published so far (about every 100 ms).
    pub fn stats(&self) -> Vec<(String, PortCounters)> {
        match &self.final_stats {
            Some(s) => s.clone(),
            None => self.stats.snapshot(),
        }
    }

    /// Ports removed since the switch started, by cause.
    pub fn removed(&self) -> Vec<(Removal, u64)> {
        self.stats.removed()
    }

    /// Stop the switch (its taps disappear) and return the final counters.
    pub fn stop(&mut self) -> io::Result<Vec<(String, PortCounters)>> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let r = h
                .join()
                .map_err(|_| io::Error::other("switch thread panicked"))??;
            self.final_stats = Some(r);
        }
        Ok(self.stats())
    }

    fn addr(&self, side: usize, v6: bool, port: u16) -> SocketAddr {
        if v6 {
            SocketAddr::new(IpAddr::V6(self.addr6[side]), port)
        } else {
            SocketAddr::new(IpAddr::V4(self.addr4[side]), port)
        }
    }

    /// TCP from side `from` to the other: send `bytes` bytes (a position-dependent
    /// pattern), or for `duration` when `bytes` is 0; the receiver checks every byte.
    /// `stop` ends a timed transfer early.
    pub fn tcp(
        &self,
        from: usize,
        v6: bool,
        bytes: u64,
        duration: Duration,
        stop: Option<&AtomicBool>,
    ) -> io::Result<Transfer> {
        let to = self.addr(1 - from, v6, 0).ip();
        self.tcp_to(from, to, bytes, duration, stop)
    }

    /// [`Lab::tcp`] to address `to` of the other side, one the test gave that namespace
    /// (an overlay device's, say) rather than its tap's.
    pub fn tcp_to(
        &self,
        from: usize,
        to_addr: IpAddr,
        bytes: u64,
        duration: Duration,
        stop: Option<&AtomicBool>,
    ) -> io::Result<Transfer> {
        let to = 1 - from;
        // One port per direction, so both directions can run at once.
        let port = 5201 + from as u16;
        let bind = SocketAddr::new(to_addr, port);
        let listener = in_netns(self.ns[to].name(), move || TcpListener::bind(bind))?;
        let server = std::thread::spawn(move || -> io::Result<(u64, Duration, bool, Duration)> {
            listener.set_nonblocking(false)?;
            let (mut s, _) = accept_timeout(&listener, Duration::from_secs(10))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            let mut intact = true;
            let mut first: Option<Instant> = None;
            let mut last: Option<Instant> = None;
            let mut max_gap = Duration::ZERO;
            loop {
                let n = s.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                let now = Instant::now();
                first.get_or_insert(now);
                if let Some(l) = last.replace(now) {
                    max_gap = max_gap.max(now - l);
                }
                intact &= check_pattern(total, &buf[..n]);
                total += n as u64;
            }
            let elapsed = first.map_or(Duration::ZERO, |t| t.elapsed());
            Ok((total, elapsed, intact, max_gap))
        });
        let dst = bind;
        let client = in_netns(self.ns[from].name(), move || {
            TcpStream::connect_timeout(&dst, Duration::from_secs(5))
        });
        let sent = client.and_then(|mut c| {
            c.set_write_timeout(Some(Duration::from_secs(10)))?;
            let mut buf = vec![0u8; 256 * 1024];
            let mut sent = 0u64;
            let start = Instant::now();
            loop {
                if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                    break;
                }
                let chunk = if bytes > 0 {
                    let left = bytes - sent;
                    if left == 0 {
                        break;
                    }
                    left.min(buf.len() as u64) as usize
                } else {
                    if start.elapsed() >= duration {
                        break;
                    }
                    buf.len()
                };
                fill_pattern(sent, &mut buf[..chunk]);
                c.write_all(&buf[..chunk])?;
                sent += chunk as u64;
            }
            c.shutdown(std::net::Shutdown::Write)?;
            Ok(sent)
        });
        let received = server
            .join()
            .map_err(|_| io::Error::other("receiver panicked"))?;
        let sent = sent?;
        let (received, elapsed, intact, max_gap) = received?;
        Ok(Transfer {
            sent,
            received,
            elapsed,
            intact: intact && sent == received,
            max_gap,
        })
    }
}

/// What only the integration tests use.
#[cfg(feature = "testing")]
impl Lab {
    /// UDP from side `from` to an echo server on the other side: `count` datagrams of
    /// sizes cycling through `sizes` (sizes above the MTU get fragmented), each echoed
    /// back and checked. Returns the datagrams that came back intact.
    pub fn udp_echo(
        &self,
        from: usize,
        v6: bool,
        count: usize,
        sizes: &[usize],
    ) -> io::Result<usize> {
        let to = 1 - from;
        let bind = self.addr(to, v6, 5202);
        let server = in_netns(self.ns[to].name(), move || UdpSocket::bind(bind))?;
        server.set_read_timeout(Some(Duration::from_millis(200)))?;
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let echo = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = server.recv_from(&mut buf) {
                    let _ = server.send_to(&buf[..n], peer);
                }
            }
        });
        let any = if v6 {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)
        } else {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
        };
        let result = in_netns(self.ns[from].name(), move || UdpSocket::bind(any)).and_then(|c| {
            c.set_read_timeout(Some(Duration::from_millis(300)))?;
            let dst = self.addr(to, v6, 5202);
            let mut out = vec![0u8; 65_536];
            let mut back = vec![0u8; 65_536];
            let mut ok = 0;
            for i in 0..count {
                let size = sizes.get(i % sizes.len().max(1)).copied().unwrap_or(100);
                let msg = &mut out[..size];
                fill_pattern(i as u64 * 7919, msg);
                // Retry a lost datagram (ARP/ND not resolved yet, a full queue).
                for _ in 0..10 {
                    c.send_to(msg, dst)?;
                    match c.recv_from(&mut back) {
                        Ok((n, _)) if back[..n] == *msg => {
                            ok += 1;
                            break;
                        }
                        _ => continue,
                    }
                }
            }
            Ok(ok)
        });
        done.store(true, Ordering::Relaxed);
        let _ = echo.join();
        result
    }

    /// `(TcpInCsumErrors, UdpInCsumErrors)` of side `side`'s namespace (`nstat -az`).
    pub fn csum_errors(&self, side: usize) -> io::Result<(u64, u64)> {
        let out = self.ns[side].exec(
            "nstat",
            &[
                "-azs",
                "TcpInCsumErrors",
                "UdpInCsumErrors",
                "Udp6InCsumErrors",
            ],
        )?;
        let mut tcp = 0;
        let mut udp = 0;
        for line in out.lines() {
            let mut w = line.split_whitespace();
            let (Some(name), Some(v)) = (w.next(), w.next()) else {
                continue;
            };
            let v: u64 = v.parse().unwrap_or(0);
            match name {
                "TcpInCsumErrors" => tcp += v,
                "UdpInCsumErrors" | "Udp6InCsumErrors" => udp += v,
                _ => {}
            }
        }
        Ok((tcp, udp))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        // `ns` drops after this: `ip netns del` for both.
    }
}

/// Result of one TCP transfer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transfer {
    /// Bytes the sender wrote.
    pub sent: u64,
    /// Bytes the receiver read.
    pub received: u64,
    /// From the first byte received to the end of the stream.
    pub elapsed: Duration,
    /// Every byte arrived, in order, unchanged.
    pub intact: bool,
    /// The longest wait between two reads of the receiver: how long the transfer
    /// stalled at worst.
    pub max_gap: Duration,
}

impl Transfer {
    /// Throughput of what arrived, in Gbit/s (0 when nothing did).
    pub fn gbit_per_sec(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s <= 0.0 {
            return 0.0;
        }
        self.received as f64 * 8.0 / s / 1e9
    }
}

fn accept_timeout(l: &TcpListener, limit: Duration) -> io::Result<(TcpStream, SocketAddr)> {
    l.set_nonblocking(true)?;
    let start = Instant::now();
    loop {
        match l.accept() {
            Ok((s, a)) => {
                s.set_nonblocking(false)?;
                return Ok((s, a));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if start.elapsed() > limit {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "no connection"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The byte at stream offset `pos`.
fn pattern_byte(pos: u64) -> u8 {
    (pos ^ (pos >> 8) ^ (pos >> 16)).wrapping_mul(31) as u8
}

/// Fill `buf` with the pattern for stream offsets `pos..`.
fn fill_pattern(pos: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(pos + i as u64);
    }
}

fn check_pattern(pos: u64, buf: &[u8]) -> bool {
    buf.iter()
        .enumerate()
        .all(|(i, &b)| b == pattern_byte(pos + i as u64))
}

/// A scratch file path for captures made by a lab: `pvnet-PID-NAME` in the temporary
/// directory.
#[cfg(feature = "testing")]
pub fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pvnet-{}-{name}", std::process::id()))
}
