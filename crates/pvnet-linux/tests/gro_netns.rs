//! GRO end to end, with the kernel on both sides of pvnet's coalescer.
//!
//! ```text
//!   namespace S                     this test                      namespace R
//!   TcpStream ─► t_s (offloads 0) ─► read ─► Coalescer ─► write ─► t_r (CSUM|TSO4|TSO6)
//!   10.77.0.1                          ◄──────── as is ◄────────     TcpListener 10.77.0.2
//! ```
//!
//! S's kernel segments and checksums everything it sends through `t_s` (no offloads), so
//! the test reads wire-sized frames; the coalescer turns them into super-frames with
//! NEEDS_CSUM + TCPV4 vnet headers, which R's kernel *receives* on `t_r` (writing into a tap
//! is receiving on it). R → S traffic (ACKs, ARP) is copied back with its vnet header.
//! The payload must arrive intact, super-frames must have been written, and R's
//! TcpInCsumErrors must not move. Needs root; fails, not skips, without it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pvnet_core::frame::{CsumState, GsoKind};
use pvnet_core::offload::checksum::verify_frame;
use pvnet_core::offload::gro::{complete_checksum, Coalesced, Coalescer, GroConfig};
use pvnet_core::wire::Start;
use pvnet_linux::netns::Netns;
use pvnet_linux::tap::{offload, Tap, TapOptions};
use pvnet_linux::testing::require_root;

const VNET_HDR_LEN: usize = 12;
const BYTES: usize = 4 << 20;
const DEADLINE: Duration = Duration::from_secs(20);
const SOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// virtio_net_hdr (12 bytes, little-endian) for an emitted frame.
fn vnet_header(e: &Coalesced<'_>) -> [u8; VNET_HDR_LEN] {
    let mut h = [0u8; VNET_HDR_LEN];
    if let CsumState::Partial { start, offset } = e.frame.meta.csum {
        h[0] = 1; // NEEDS_CSUM
        h[6..8].copy_from_slice(&start.to_le_bytes());
        h[8..10].copy_from_slice(&offset.to_le_bytes());
    }
    if let Some(g) = e.frame.meta.gso {
        let t = match g.kind {
            GsoKind::Tcpv4 => 1,
            GsoKind::Ufo => 3,
            GsoKind::Tcpv6 => 4,
            GsoKind::UdpL4 => 5,
        };
        h[1] = t | if g.ecn { 0x80 } else { 0 };
        h[2..4].copy_from_slice(&e.hdr_len.to_le_bytes());
        h[4..6].copy_from_slice(&g.size.to_le_bytes());
    }
    h
}

/// A namespace with IPv6 off (no DAD/RS/MLD noise) and a tap with an IPv4 address.
fn setup(prefix: &str, tap: &str, offloads: u32, addr: &str) -> io::Result<(Netns, Tap)> {
    let ns = Netns::create_unique(prefix)?;
    ns.disable_ipv6()?;
    let opts = TapOptions {
        name: tap.to_owned(),
        tun: false,
        vnet_hdr: true,
        vnet_hdr_len: VNET_HDR_LEN,
        multi_queue: false,
        offloads,
    };
    let t = ns.enter_and(|| Tap::open(&opts))??;
    ns.run(&["addr", "add", addr, "dev", tap])?;
    ns.run(&["link", "set", "dev", tap, "up"])?;
    t.set_nonblocking(true)?;
    Ok((ns, t))
}

fn csum_errors(ns: &Netns) -> u64 {
    let out = ns
        .exec("nstat", &["-az", "TcpInCsumErrors"])
        .expect("nstat (iproute2) must be installed");
    out.lines()
        .find(|l| l.starts_with("TcpInCsumErrors"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no TcpInCsumErrors in nstat output {out:?}"))
}

/// Wait until one of `fds` is readable or `ms` passes.
fn wait_readable(fds: [i32; 2], ms: i32) {
    let mut p = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    // SAFETY: `p` is an array of two valid pollfd structs, borrowed mutably for the call.
    unsafe { libc::poll(p.as_mut_ptr(), 2, ms) };
}

#[derive(Debug, Default)]
struct Counters {
    frames_in: u64,
    super_frames: u64,
    super_bytes: u64,
    plain: u64,
    reverse: u64,
}

#[test]
fn tcp_stream_through_the_coalescer() {
    require_root("gro_netns (network namespaces and taps)");
    // Fields drop in reverse: taps close before their namespaces are deleted.
    let (ns_s, t_s) = setup("pvgro-s", "t_s", 0, "10.77.0.1/24").unwrap();
    let (ns_r, t_r) = setup(
        "pvgro-r",
        "t_r",
        offload::CSUM | offload::TSO4 | offload::TSO6 | offload::TSO_ECN,
        "10.77.0.2/24",
    )
    .unwrap();
    let errors_before = csum_errors(&ns_r);

    let addr: SocketAddr = "10.77.0.2:5201".parse().unwrap();
    let listener = ns_r.enter_and(|| TcpListener::bind(addr)).unwrap().unwrap();
    listener.set_nonblocking(true).unwrap();
    let data: Vec<u8> = (0..BYTES)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect();

    let done_tx = AtomicBool::new(false);
    let done_rx = AtomicBool::new(false);
    let start = Instant::now();
    let (received, sent, counters, stats) = std::thread::scope(|scope| {
        let rx = scope.spawn(|| -> io::Result<Vec<u8>> {
            let result = (|| {
                let mut conn = loop {
                    match listener.accept() {
                        Ok((c, _)) => break c,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            if start.elapsed() > DEADLINE {
                                return Err(io::Error::new(io::ErrorKind::TimedOut, "accept"));
                            }
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(e) => return Err(e),
                    }
                };
                conn.set_nonblocking(false)?;
                conn.set_read_timeout(Some(SOCK_TIMEOUT))?;
                let mut got = Vec::with_capacity(BYTES);
                conn.read_to_end(&mut got)?;
                Ok(got)
            })();
            done_rx.store(true, Ordering::SeqCst);
            result
        });
        let tx = scope.spawn(|| -> io::Result<()> {
            let result = ns_s
                .enter_and(|| -> io::Result<()> {
                    let mut s = TcpStream::connect_timeout(&addr, SOCK_TIMEOUT)?;
                    s.set_write_timeout(Some(SOCK_TIMEOUT))?;
                    s.write_all(&data)?;
                    s.shutdown(Shutdown::Write)
                })
                .and_then(|r| r);
            done_tx.store(true, Ordering::SeqCst);
            result
        });

        // The forwarder: read what S sends, coalesce each read burst (flush when t_s has
        // nothing more, like the end of a NAPI poll), write into t_r; copy R's frames back.
        let mut gro = Coalescer::new(GroConfig::default());
        let mut c = Counters::default();
        let mut buf = vec![0u8; 65536 + 4096];
        let mut write_err: Option<io::Error> = None;
        let mut bad_super = 0u64;
        let mut lin = Vec::new();
        while !(done_tx.load(Ordering::SeqCst) && done_rx.load(Ordering::SeqCst)) {
            assert!(
                start.elapsed() < DEADLINE + SOCK_TIMEOUT,
                "forwarder ran too long"
            );
            let mut idle = true;
            {
                let mut sink = |e: Coalesced<'_>| {
                    let hdr = vnet_header(&e);
                    if e.is_super() {
                        c.super_frames += 1;
                        c.super_bytes += e.frame.len() as u64;
                        e.frame.copy_to(&mut lin);
                        if complete_checksum(&mut lin, &e.frame.meta).is_err()
                            || !verify_frame(&lin, Start::Ethernet).is_ok()
                        {
                            bad_super += 1;
                        }
                    } else {
                        c.plain += 1;
                    }
                    let mut iov = vec![io::IoSlice::new(&hdr)];
                    iov.extend(e.frame.slices().map(io::IoSlice::new));
                    if let Err(err) = t_r.writev(&iov) {
                        write_err.get_or_insert(err);
                    }
                };
                for _ in 0..256 {
                    match t_s.read(&mut buf) {
                        Ok(n) if n > VNET_HDR_LEN => {
                            idle = false;
                            c.frames_in += 1;
                            let (hdr, frame) = buf[..n].split_at(VNET_HDR_LEN);
                            if hdr[0] != 0 && hdr[0] != 2 || hdr[1] != 0 {
                                // Not expected with offloads 0; forward untouched.
                                let _ = t_r.write(&buf[..n]);
                                continue;
                            }
                            gro.push(frame, Start::Ethernet, &mut sink);
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("read t_s: {e}"),
                    }
                }
                gro.flush(&mut sink);
            }
            for _ in 0..256 {
                match t_r.read(&mut buf) {
                    Ok(n) => {
                        idle = false;
                        c.reverse += 1;
                        // R → S: header and frame as they are (t_s accepts a partial
                        // checksum or a GSO frame on write whatever its own offloads).
                        let _ = t_s.write(&buf[..n]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("read t_r: {e}"),
                }
            }
            if idle {
                wait_readable([t_s.as_raw_fd(), t_r.as_raw_fd()], 10);
            }
        }
        if let Some(e) = write_err {
            panic!("write into t_r failed: {e}");
        }
        assert_eq!(
            bad_super, 0,
            "super-frames with wrong checksums once completed"
        );
        let received = rx.join().expect("receiver panicked");
        let sent = tx.join().expect("sender panicked");
        (received, sent, c, gro.stats().clone())
    });
    sent.expect("sender");
    let received = received.expect("receiver");
    assert_eq!(received.len(), data.len(), "byte count at R");
    assert!(received == data, "payload corrupted");
    let avg = counters.super_bytes / counters.super_frames.max(1);
    eprintln!(
        "gro_netns: {counters:?}, merged {}, average super-frame {avg} bytes, {:?}",
        stats.merged,
        start.elapsed()
    );
    assert!(counters.super_frames > 0, "no super-frame written");
    assert!(
        avg > 1514,
        "average super-frame {avg} bytes is not above the MTU"
    );
    assert_eq!(
        csum_errors(&ns_r),
        errors_before,
        "R saw TCP checksum errors"
    );
    drop((t_s, t_r));
    drop((ns_s, ns_r));
}
