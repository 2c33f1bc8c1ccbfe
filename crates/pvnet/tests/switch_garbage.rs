//! Garbage from inside a namespace (raw frames with truncated IP headers and lying
//! lengths) and bad vnet headers from a port are counted as drops while a concurrent
//! transfer goes through intact.

mod switch_util;

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pvnet::switch::lab::{Lab, LabOptions};
use pvnet_core::frame::Frame;
use pvnet_core::offload::features::Features;
use pvnet_core::switch::counters::DropCause;
use pvnet_core::wire::Start;
use pvnet_linux::netns::in_netns;
use pvnet_linux::packet_socket::RawSender;
use pvnet_linux::port::{Port, RecvBufs, SendError};

/// Ethernet broadcast header with `ethertype`.
fn eth(ethertype: u16) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0x0b, 0xad]);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// Frames whose IP layer does not parse.
fn garbage() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    // IPv4 cut after 10 bytes.
    let mut f = eth(0x0800);
    f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6]);
    out.push(f);
    // IPv4 whose total length claims 1000 bytes of a 48-byte packet.
    let mut f = eth(0x0800);
    f.extend_from_slice(&[0x45, 0, 0x03, 0xe8, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&[10, 199, 0, 1, 10, 199, 0, 2]);
    f.extend_from_slice(&[0u8; 28]);
    out.push(f);
    // IPv4 with IHL 3.
    let mut f = eth(0x0800);
    f.extend_from_slice(&[0x43, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&[0u8; 28]);
    out.push(f);
    // IPv6 whose payload length claims 5000 bytes of 20.
    let mut f = eth(0x86dd);
    f.extend_from_slice(&[0x60, 0, 0, 0, 0x13, 0x88, 6, 64]);
    f.extend_from_slice(&[0u8; 32]);
    f.extend_from_slice(&[0u8; 20]);
    out.push(f);
    // TCP whose data offset (15 words) runs past the packet.
    let mut f = eth(0x0800);
    f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&[10, 199, 0, 1, 10, 199, 0, 2]);
    f.extend_from_slice(&[
        0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0x10, 0, 0, 0, 0, 0, 0,
    ]);
    out.push(f);
    out
}

/// A well-formed IPv4/UDP frame (broadcast) for vnet headers to lie about.
fn udp_frame() -> Vec<u8> {
    let mut f = eth(0x0800);
    f.extend_from_slice(&[0x45, 0, 0, 48, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&[10, 199, 0, 1, 10, 199, 0, 255]);
    f.extend_from_slice(&[0x30, 0x39, 0x30, 0x39, 0, 28, 0, 0]);
    f.extend_from_slice(&[0x55; 20]);
    f
}

/// 12-byte vnet headers each rejected by validation, followed by the frame.
fn bad_vnet_frames() -> Vec<Vec<u8>> {
    let hdrs: [[u8; 12]; 5] = [
        // Unknown gso_type.
        [0, 7, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0],
        // TCPV4 on a UDP packet.
        [1, 1, 42, 0, 0x10, 0, 34, 0, 16, 0, 0, 0],
        // NEEDS_CSUM with csum_start beyond the data.
        [1, 0, 0, 0, 0, 0, 0xf0, 0x0f, 6, 0, 0, 0],
        // UDP_L4 with gso_size 0.
        [1, 5, 42, 0, 0, 0, 34, 0, 6, 0, 0, 0],
        // hdr_len beyond the frame.
        [0, 0, 0xff, 0x0f, 0, 0, 0, 0, 0, 0, 0, 0],
    ];
    hdrs.iter()
        .map(|h| {
            let mut v = h.to_vec();
            v.extend_from_slice(&udp_frame());
            v
        })
        .collect()
}

/// The real tap port, except that every 20th receive hands the switch a batch of frames
/// with bad vnet headers instead (the real frames wait in the tap for the next call).
struct BadHeaders {
    inner: Box<dyn Port + Send>,
    calls: u64,
    injected: Arc<std::sync::atomic::AtomicU64>,
    frames: Vec<Vec<u8>>,
}

impl AsFd for BadHeaders {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl Port for BadHeaders {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn features(&self) -> Features {
        self.inner.features()
    }
    fn set_features(&mut self, f: Features) -> io::Result<()> {
        self.inner.set_features(f)
    }
    fn start(&self) -> Start {
        self.inner.start()
    }
    fn vnet_hdr_len(&self) -> usize {
        self.inner.vnet_hdr_len()
    }
    fn recv_batch(&mut self, bufs: &mut RecvBufs) -> io::Result<usize> {
        self.calls += 1;
        if self.calls % 20 == 0 && self.inner.vnet_hdr_len() == 12 {
            let n = bufs.fill_from(12, self.frames.iter().map(Vec::as_slice));
            self.injected.fetch_add(n as u64, Ordering::Relaxed);
            return Ok(n);
        }
        self.inner.recv_batch(bufs)
    }
    fn send(&mut self, hdr: &[u8], frame: &Frame<'_>) -> Result<(), SendError> {
        self.inner.send(hdr, frame)
    }
}

#[test]
fn garbage_is_dropped_and_counted_while_traffic_flows() {
    switch_util::require_root();
    // Debug logging on: every drop is a reason to log, and the log must stay small.
    let log = pvnet::logging::init(2, pvnet::logging::LogFormat::Text);
    let injected = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = injected.clone();
    let mut lab = Lab::start(LabOptions {
        offload: [None, Some("none".into())],
        wrap: Some(Box::new(move |i, q| {
            if i == 1 {
                Box::new(BadHeaders {
                    inner: q,
                    calls: 0,
                    injected: counter.clone(),
                    frames: bad_vnet_frames(),
                })
            } else {
                q
            }
        })),
        ..LabOptions::default()
    })
    .expect("lab");

    let tap = lab.taps[0].clone();
    let raw = in_netns(lab.ns[0].name(), move || RawSender::open(&tap)).expect("raw sender");
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let frames = garbage();
    let sender = std::thread::spawn(move || -> io::Result<u64> {
        let mut sent = 0;
        while !flag.load(Ordering::Relaxed) {
            for f in &frames {
                raw.send(f)?;
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(sent)
    });
    let mut results = Vec::new();
    for (from, v6) in [(0, false), (1, false), (0, true), (1, true)] {
        results.push(lab.tcp(from, v6, 2 << 20, Duration::ZERO, None));
    }
    done.store(true, Ordering::Relaxed);
    let sent = sender.join().expect("sender").expect("raw send");
    let stats = lab.stop().expect("stop");
    for r in results {
        let t = r.expect("tcp");
        assert!(t.intact && t.received == 2 << 20, "transfer damaged: {t:?}");
    }
    let a = switch_util::port(&stats, 0);
    let b = switch_util::port(&stats, 1);
    assert!(sent > 0);
    assert!(
        a.drops_of(DropCause::Parse) >= sent,
        "sent {sent} garbage frames, {} parse drops: {a:?}",
        a.drops_of(DropCause::Parse)
    );
    let inj = injected.load(Ordering::Relaxed);
    assert!(inj > 0, "no bad vnet header injected");
    assert_eq!(
        b.drops_of(DropCause::VnetHeader),
        inj,
        "injected {inj} bad vnet headers: {b:?}"
    );
    // One line per port, cause and 10 s at most, not one per dropped frame.
    let drops: Vec<String> = log
        .last(usize::MAX)
        .into_iter()
        .filter(|l| l.contains("such drops since the last line"))
        .collect();
    assert!(!drops.is_empty(), "the drops are explained");
    assert!(
        drops.len() <= 8,
        "{} drop lines for {} drops: {drops:#?}",
        drops.len(),
        a.drops_total() + b.drops_total()
    );
}
