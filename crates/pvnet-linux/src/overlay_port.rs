//! An overlay port: the switch's Ethernet frames carried to other hosts in VXLAN or
//! GENEVE over UDP (`vxlan:LOCAL_IP,remote=IP[+IP…]`, `geneve:…`).
//!
//! The decisions are the core's ([`pvnet_core::overlay`]): decapsulation and its drop
//! causes, the FDB of inner MACs per remote, the outer source port's flow hash, and the
//! transmit plan. This driver moves the bytes:
//!
//! - receive: one `recvmsg` per buffer on the socket bound to `LOCAL_IP:dstport`; with
//!   `UDP_GRO` a buffer holds a run of datagrams of one size, cut apart here, each one
//!   decapsulated and its inner frame copied into a receive slot. A buffer can hold more
//!   datagrams than a batch has slots; the rest waits in the port, which keeps its own fd
//!   readable (an epoll set over the socket and a [`Waker`]) until it is handed over.
//! - send: a plain frame is one datagram (tunnel header + frame, gathered by an iovec);
//!   a TCP or USO super-frame is cut by the core's zero-copy segmenter and every batch of
//!   segments goes out as one `sendmsg` with `UDP_SEGMENT`, to one remote or, for
//!   broadcast and unknown destinations, to each (head-end replication). The sending
//!   socket is one of a small pool bound to distinct source ports, picked by the inner
//!   flow's hash, so that the underlay spreads flows as it does the kernel's.
//!
//! Hostile underlay input is counted by cause ([`OverlayStats`]), never logged.

use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pvnet_core::frame::Frame;
use pvnet_core::offload::checksum::complete_partial;
use pvnet_core::offload::features::Features;
use pvnet_core::offload::gso::{GsoOptions, SegmentBuf, Segmenter};
use pvnet_core::offload::CsumMode;
use pvnet_core::overlay::fdb::{Fdb, RemoteId, Targets};
use pvnet_core::overlay::plan::{self, Shape, TxDrop, Underlay};
use pvnet_core::overlay::{complete_partial_inner, decap, flow, DecapCause, Encap, Vni};
use pvnet_core::switch::mac_table::DEFAULT_AGEING_MS;
use pvnet_core::vnet;
use pvnet_core::wire::{ethernet, Start};

use rustix::event::epoll;

use crate::epoll::Waker;
use crate::port::{Port, RecvBufs, SendError};
use crate::udp_tunnel::UdpTunnelSocket;

/// Sending sockets per port (distinct outer source ports).
pub const DEFAULT_SENDERS: usize = 4;

/// Inner MACs the FDB learns per port.
const FDB_CAPACITY: usize = 4096;

/// Receive buffer of the underlay socket.
const RCV_BUF: usize = 8 << 20;
/// Send buffer of every underlay socket.
const SND_BUF: usize = 4 << 20;

/// Largest buffer `UDP_GRO` hands over (one IP packet's worth).
const RX_BUF_LEN: usize = 65_536;

/// Frames per receive batch: every datagram of a full `UDP_GRO` buffer (64 KiB of
/// 1.5 KB datagrams is about 45; the kernel coalesces at most 64), so that the switch
/// rebuilds one super-frame per buffer instead of cutting it at each batch.
const RX_BATCH: usize = 64;

/// Most iovecs one send gathers here: a batch of segments is a tunnel header, a header
/// block and a few payload slices each.
const SEND_IOV: usize = 512;

/// How an overlay port is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayConfig {
    /// VXLAN or GENEVE.
    pub encap: Encap,
    /// Underlay address to receive on and send from.
    pub local: IpAddr,
    /// The other tunnel endpoints.
    pub remotes: Vec<IpAddr>,
    /// The virtual network.
    pub vni: Vni,
    /// UDP destination port (received on, sent to).
    pub dstport: u16,
    /// IP MTU of the underlay.
    pub mtu: u16,
    /// UDP GSO and GRO (off: one system call per datagram, and the switch segments).
    pub offload: bool,
}

/// What an overlay port counts besides the switch's per-port counters.
#[derive(Debug, Default)]
pub struct OverlayStats {
    /// Received datagrams dropped, by [`DecapCause`].
    pub decap_drops: [AtomicU64; DecapCause::COUNT],
    /// Received buffers cut because they did not fit (never expected).
    pub rx_truncated: AtomicU64,
    /// Datagrams received (after cutting `UDP_GRO` buffers apart).
    pub rx_datagrams: AtomicU64,
    /// `UDP_GRO` buffers that held more than one datagram.
    pub rx_gro_buffers: AtomicU64,
    /// Inner checksums a peer left partial (a kernel behind a veth), completed here.
    pub rx_csum_completed: AtomicU64,
    /// Datagrams sent (each remote counts).
    pub tx_datagrams: AtomicU64,
    /// `sendmsg` calls with `UDP_SEGMENT` (each carrying several datagrams).
    pub tx_gso_sends: AtomicU64,
    /// Frames dropped because they cannot fit the underlay MTU.
    pub tx_too_big: AtomicU64,
}

impl OverlayStats {
    /// Datagrams dropped for `cause`.
    pub fn decap_drops_of(&self, cause: DecapCause) -> u64 {
        self.decap_drops[cause as usize].load(Ordering::Relaxed)
    }

    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The state shared by the port and the senders cloned from it.
#[derive(Debug)]
struct Shared {
    fdb: Mutex<Fdb>,
    stats: Arc<OverlayStats>,
    /// Receive drops already handed to the switch ([`Port::take_rx_drops`]), by whichever
    /// queue asked.
    rx_drops_reported: AtomicU64,
    epoch: Instant,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A run of datagrams of one `UDP_GRO` buffer not yet handed over.
#[derive(Debug, Clone, Copy, Default)]
struct Pending {
    pos: usize,
    end: usize,
    size: usize,
    remote: RemoteId,
}

/// An overlay port (see the module documentation).
pub struct OverlayPort {
    name: String,
    cfg: OverlayConfig,
    header: [u8; pvnet_core::overlay::HEADER_LEN],
    remotes: Vec<SocketAddr>,
    underlay: Underlay,
    features: Features,
    rx: Arc<UdpTunnelSocket>,
    senders: Arc<Vec<UdpTunnelSocket>>,
    shared: Arc<Shared>,
    seed: u64,
    // Receive side (the port's own thread only).
    poll: Option<(OwnedFd, Waker)>,
    /// The waker is signalled: a buffer's datagrams wait here. Tracked so that a burst
    /// of batches costs one eventfd write and one read, not two system calls a batch.
    woken: bool,
    rx_buf: Vec<u8>,
    pending: Pending,
    /// The clock for learning, read once per receive batch (milliseconds).
    rx_now: u64,
    /// The last (inner source, remote, time) learned: a run of datagrams of one flow
    /// takes the FDB's lock once, not once per datagram.
    rx_learned: Option<([u8; 6], RemoteId, u64)>,
    // Send side.
    seg: SegmentBuf,
    csum_buf: Vec<u8>,
    flat: Vec<u8>,
}

impl std::fmt::Debug for OverlayPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlayPort")
            .field("name", &self.name)
            .field("cfg", &self.cfg)
            .finish()
    }
}

/// What the port takes: super-frames it segments itself, with UDP GSO; nothing with
/// offloads off.
fn offload_features(on: bool) -> Features {
    if on {
        Features::CSUM | Features::SG | Features::TSO4 | Features::TSO6 | Features::USO
    } else {
        Features::NONE
    }
}

impl OverlayPort {
    /// Open the sockets of an overlay port called `name` in the current network
    /// namespace.
    pub fn open(name: &str, cfg: OverlayConfig) -> io::Result<OverlayPort> {
        let mut queues = OverlayPort::open_queues(name, cfg, 1)?;
        queues
            .pop()
            .ok_or_else(|| io::Error::other("no queue opened"))
    }

    /// [`OverlayPort::open`] with `queues` receive queues (at least one): as many sockets
    /// on the local address with `SO_REUSEPORT`, among which the kernel spreads the
    /// datagrams by a hash of their addresses and ports. A peer sends each inner flow from
    /// a source port of its own (the flow hash), so flows spread over the queues and
    /// each stays on one: the switch runs a thread per queue, as for a multi-queue tap.
    /// The queues share the FDB, the counters and the sending sockets.
    pub fn open_queues(
        name: &str,
        cfg: OverlayConfig,
        queues: usize,
    ) -> io::Result<Vec<OverlayPort>> {
        if cfg.remotes.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an overlay port needs at least one remote",
            ));
        }
        if let Some(r) = cfg
            .remotes
            .iter()
            .find(|r| r.is_ipv4() != cfg.local.is_ipv4())
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "remote {r} is not of the local address {}'s family",
                    cfg.local
                ),
            ));
        }
        let rxs = bind_receivers(SocketAddr::new(cfg.local, cfg.dstport), queues.max(1))?;
        for rx in &rxs {
            if cfg.offload {
                rx.set_gro(true)?;
            }
            // The kernel's own tunnel device decapsulates in softirq; this socket is read
            // by a thread that also writes to the taps, so it needs room for a burst (the
            // default 208 KiB overflows at a few Gbit/s and TCP inside backs off).
            rx.set_buffers(Some(RCV_BUF), Some(SND_BUF))?;
        }
        let senders = (0..DEFAULT_SENDERS)
            .map(|_| {
                let s = UdpTunnelSocket::bind(SocketAddr::new(cfg.local, 0))?;
                s.set_buffers(None, Some(SND_BUF))?;
                Ok(s)
            })
            .collect::<io::Result<Vec<_>>>()?;
        let remotes: Vec<SocketAddr> = cfg
            .remotes
            .iter()
            .map(|ip| SocketAddr::new(*ip, cfg.dstport))
            .collect();
        let seed = random_seed();
        let shared = Arc::new(Shared {
            fdb: Mutex::new(Fdb::new(
                FDB_CAPACITY,
                DEFAULT_AGEING_MS,
                seed,
                remotes.len(),
            )),
            stats: Arc::new(OverlayStats::default()),
            rx_drops_reported: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        let senders = Arc::new(senders);
        rxs.into_iter()
            .map(|rx| {
                // The fd the queue lends out: readable while its socket is, or while a
                // buffer's datagrams wait here (the waker). Only ever polled, never
                // waited on.
                let poll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
                let waker = Waker::new()?;
                for (fd, token) in [(rx.as_fd(), 0), (waker.as_fd(), 1)] {
                    epoll::add(
                        &poll,
                        fd,
                        epoll::EventData::new_u64(token),
                        epoll::EventFlags::IN,
                    )?;
                }
                Ok(OverlayPort {
                    name: name.to_string(),
                    header: cfg.encap.header(cfg.vni),
                    underlay: Underlay {
                        mtu: cfg.mtu,
                        ipv6: cfg.local.is_ipv6(),
                    },
                    features: offload_features(cfg.offload),
                    remotes: remotes.clone(),
                    rx: Arc::new(rx),
                    senders: senders.clone(),
                    shared: shared.clone(),
                    seed,
                    poll: Some((poll, waker)),
                    woken: false,
                    rx_buf: vec![0; RX_BUF_LEN],
                    pending: Pending::default(),
                    rx_now: 0,
                    rx_learned: None,
                    seg: SegmentBuf::with_capacity(plan::MAX_GSO_SEGMENTS),
                    csum_buf: Vec::with_capacity(256),
                    flat: Vec::new(),
                    cfg: cfg.clone(),
                })
            })
            .collect()
    }

    /// The port's own counters.
    pub fn stats(&self) -> Arc<OverlayStats> {
        self.shared.stats.clone()
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &OverlayConfig {
        &self.cfg
    }

    /// The address it receives on.
    pub fn local_addr(&self) -> SocketAddr {
        self.rx.local_addr()
    }

    /// Index of the remote `src` came from (the source port does not matter: peers send
    /// from a port of their own flow hash).
    fn remote_of(&self, src: SocketAddr) -> Option<RemoteId> {
        let ip = match src.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let i = self.remotes.iter().position(|r| r.ip() == ip)?;
        RemoteId::try_from(i).ok()
    }

    /// Hand the next datagram of the pending buffer to slot `n`: `None` when none is
    /// left, `Some(true)` when it filled the slot, `Some(false)` when it was dropped.
    fn take_pending(&mut self, bufs: &mut RecvBufs, n: usize) -> Option<bool> {
        let p = self.pending;
        if p.pos >= p.end {
            return None;
        }
        let end = (p.pos + p.size).min(p.end);
        self.pending.pos = end;
        let stats = &self.shared.stats;
        OverlayStats::bump(&stats.rx_datagrams);
        let dgram = &self.rx_buf[p.pos..end];
        let off = match decap(self.cfg.encap, self.cfg.vni, dgram) {
            Ok(off) => off,
            Err(e) => {
                OverlayStats::bump(&stats.decap_drops[DecapCause::from(&e) as usize]);
                return Some(false);
            }
        };
        let inner = &dgram[off..];
        if let Some(src) = inner.get(ethernet::field::SRC) {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(src);
            let seen = (mac, p.remote, self.rx_now);
            if self.rx_learned != Some(seen) {
                if let Ok(mut fdb) = self.shared.fdb.lock() {
                    fdb.learn(&mac, p.remote, self.rx_now);
                }
                self.rx_learned = Some(seen);
            }
        }
        let slot = bufs.slot_mut(n);
        let len = inner.len().min(slot.len());
        slot[..len].copy_from_slice(&inner[..len]);
        if complete_partial_inner(&mut slot[..len]) {
            OverlayStats::bump(&stats.rx_csum_completed);
        }
        // A frame cut to the slot is marked so, and RecvBufs never hands it over.
        bufs.set_len(n, len, len < inner.len());
        Some(true)
    }
}

/// The receiving sockets of a port of `queues` queues on `addr`: one plain socket, or
/// `queues` sockets sharing the address with `SO_REUSEPORT`.
fn bind_receivers(addr: SocketAddr, queues: usize) -> io::Result<Vec<UdpTunnelSocket>> {
    if queues == 1 {
        return Ok(vec![UdpTunnelSocket::bind(addr)?]);
    }
    if addr.port() != 0 {
        // Sockets with SO_REUSEPORT would join another process's group on this address
        // and take a share of its traffic: a plain bind fails instead when it is served.
        drop(UdpTunnelSocket::bind(addr)?);
    }
    let first = UdpTunnelSocket::bind_shared(addr)?;
    // Port 0: the others go where the kernel put the first.
    let at = first.local_addr();
    let mut rxs = vec![first];
    for _ in 1..queues {
        rxs.push(UdpTunnelSocket::bind_shared(at)?);
    }
    Ok(rxs)
}

/// A hash seed that differs from run to run (the FDB and the flow hash are keyed so a
/// remote sender cannot aim at one bucket), from the standard library's random keys.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9);
    h.finish()
}

impl AsFd for OverlayPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.poll {
            Some((ep, _)) => ep.as_fd(),
            None => self.rx.as_fd(),
        }
    }
}

impl OverlayPort {
    /// Send `iov` (one datagram, or with `gso` a UDP GSO buffer of `count` datagrams) to
    /// every target, with the sender the flow hash picks. The first error is returned
    /// after every remote was tried.
    fn send_to_targets(
        &self,
        targets: Targets,
        hash: u32,
        iov: &[IoSlice<'_>],
        gso: Option<u16>,
        count: usize,
    ) -> Result<(), SendError> {
        let sock = &self.senders[hash as usize % self.senders.len()];
        let stats = &self.shared.stats;
        let mut first_err = None;
        let mut one = |dst: SocketAddr| match sock.send(dst, iov, gso) {
            Ok(_) => {
                stats
                    .tx_datagrams
                    .fetch_add(count as u64, Ordering::Relaxed);
                if gso.is_some() {
                    OverlayStats::bump(&stats.tx_gso_sends);
                }
            }
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(SendError::classify(e, &[]));
                }
            }
        };
        match targets {
            Targets::One(r) => {
                if let Some(dst) = self.remotes.get(usize::from(r)) {
                    one(*dst);
                }
            }
            Targets::All => {
                for dst in &self.remotes {
                    one(*dst);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Segment a super-frame (`frame`, validated as `v`) and send its segments in UDP GSO
    /// buffers of at most `per_send` datagrams of `seg_len` bytes.
    fn send_segments(
        &mut self,
        frame: &Frame<'_>,
        v: &vnet::Validated,
        per_send: usize,
        seg_len: usize,
        targets: Targets,
        hash: u32,
    ) -> Result<(), SendError> {
        let opts = GsoOptions {
            csum: CsumMode::Full,
            ..GsoOptions::default()
        };
        let mut seg = Segmenter::new(frame, v, opts).map_err(|e| {
            SendError::Invalid(io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
        })?;
        let mut buf = std::mem::replace(&mut self.seg, SegmentBuf::with_capacity(0));
        let gso = u16::try_from(seg_len).ok();
        let mut result = Ok(());
        while !seg.is_done() && result.is_ok() {
            // Every datagram but the super-frame's last is seg_len bytes, so any run of
            // them makes a valid UDP GSO buffer: a send goes out when it holds per_send
            // datagrams or its iovecs are full, and the batch's rest starts the next.
            let batch = seg.next_batch(&mut buf);
            let mut iov = [IoSlice::new(&[]); SEND_IOV];
            let mut n = 0;
            let mut count = 0;
            for s in batch.iter() {
                let need = 1 + s.slice_count();
                if count == per_send || n + need > SEND_IOV {
                    let gso = if count > 1 { gso } else { None };
                    result = self.send_to_targets(targets, hash, &iov[..n], gso, count);
                    if result.is_err() {
                        break;
                    }
                    n = 0;
                    count = 0;
                }
                iov[n] = IoSlice::new(&self.header);
                match s.fill_iovecs(&mut iov[n + 1..]) {
                    Ok(k) => n += 1 + k,
                    Err(e) => {
                        result = Err(SendError::Invalid(io::Error::other(e.to_string())));
                        break;
                    }
                }
                count += 1;
            }
            if result.is_ok() && count > 0 {
                let gso = if count > 1 { gso } else { None };
                result = self.send_to_targets(targets, hash, &iov[..n], gso, count);
            }
        }
        self.seg = buf;
        result
    }
}

impl Port for OverlayPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn features(&self) -> Features {
        self.features
    }

    fn set_features(&mut self, features: Features) -> io::Result<()> {
        // GRO is the switch's; the rest only as far as the port does it.
        self.features =
            (features & offload_features(self.cfg.offload)) | (features & Features::GRO);
        Ok(())
    }

    fn start(&self) -> Start {
        Start::Ethernet
    }

    fn take_rx_drops(&mut self) -> u64 {
        let stats = &self.shared.stats;
        let total: u64 = stats
            .decap_drops
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum::<u64>()
            + stats.rx_truncated.load(Ordering::Relaxed);
        // The counters are the port's, every queue asks: each drop is handed over once.
        let before = self
            .shared
            .rx_drops_reported
            .fetch_max(total, Ordering::Relaxed);
        total.saturating_sub(before)
    }

    fn rx_super_frames(&self) -> bool {
        // Datagrams come off the underlay one wire-sized frame each.
        false
    }

    fn vnet_hdr_len(&self) -> usize {
        0
    }

    fn rx_batch(&self) -> usize {
        RX_BATCH
    }

    fn recv_batch(&mut self, bufs: &mut RecvBufs) -> io::Result<usize> {
        let mut n = 0;
        bufs.set_filled(0, 0);
        self.rx_now = self.shared.now_ms();
        while n < bufs.capacity() {
            match self.take_pending(bufs, n) {
                Some(true) => {
                    n += 1;
                    continue;
                }
                Some(false) => continue,
                None => {}
            }
            let r = match self.rx.recv(&mut self.rx_buf) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) if n == 0 => return Err(e),
                Err(_) => break,
            };
            let stats = &self.shared.stats;
            if r.truncated {
                OverlayStats::bump(&stats.rx_truncated);
                continue;
            }
            let Some(remote) = self.remote_of(r.src) else {
                OverlayStats::bump(&stats.decap_drops[DecapCause::UnknownRemote as usize]);
                continue;
            };
            let size = r.gso_size.map_or(r.len, usize::from).max(1);
            if r.len > size {
                OverlayStats::bump(&stats.rx_gro_buffers);
            }
            self.pending = Pending {
                pos: 0,
                end: r.len,
                size,
                remote,
            };
        }
        bufs.set_filled(0, n);
        if let Some((_, waker)) = &self.poll {
            let pending = self.pending.pos < self.pending.end;
            if pending != self.woken {
                if pending {
                    waker.wake();
                } else {
                    waker.drain();
                }
                self.woken = pending;
            }
        }
        Ok(n)
    }

    fn send(&mut self, _vnet_hdr: &[u8], frame: &Frame<'_>) -> Result<(), SendError> {
        let head = frame.head();
        let Some(dst) = head.get(ethernet::field::DST) else {
            return Err(SendError::Invalid(io::Error::other(
                "frame without Ethernet header",
            )));
        };
        let mut mac = [0u8; 6];
        mac.copy_from_slice(dst);
        let now = self.shared.now_ms();
        let targets = match self.shared.fdb.lock() {
            Ok(f) => f.targets(&mac, now),
            Err(_) => Targets::All,
        };
        let hash = flow::flow_hash_head(head, self.seed);
        let shape = match frame.meta.gso {
            None => plan::shape_plain(&frame.meta, frame.len(), self.underlay),
            Some(gso) => {
                // The segmenter needs the super-frame's layers, found in one buffer.
                let linear = head.len() == frame.len();
                let bytes: &[u8] = if linear {
                    head
                } else {
                    frame.copy_to(&mut self.flat);
                    &self.flat
                };
                match vnet::validate_gso(bytes, Start::Ethernet, gso) {
                    Ok(v) => plan::shape(&v, frame.len(), self.underlay),
                    Err(e) => {
                        return Err(SendError::Invalid(io::Error::other(format!(
                            "super-frame refused: {e}"
                        ))))
                    }
                }
            }
        };
        match shape {
            Shape::Whole { complete_csum } => {
                let mut csum = std::mem::take(&mut self.csum_buf);
                let r = (|| {
                    let done;
                    let f = if complete_csum {
                        done = complete_partial(frame, &mut csum)
                            .map_err(|e| SendError::Invalid(io::Error::other(e.to_string())))?;
                        &done
                    } else {
                        frame
                    };
                    let mut iov = [IoSlice::new(&[]); crate::port::MAX_IOV];
                    iov[0] = IoSlice::new(&self.header);
                    let k = f
                        .fill_iovecs(&mut iov[1..])
                        .map_err(|_| SendError::TooManySlices {
                            slices: f.slice_count(),
                        })?;
                    self.send_to_targets(targets, hash, &iov[..1 + k], None, 1)
                })();
                self.csum_buf = csum;
                r
            }
            Shape::Segments {
                v,
                per_send,
                seg_len,
                ..
            } => {
                let flat = std::mem::take(&mut self.flat);
                let r = if head.len() == frame.len() {
                    self.send_segments(frame, &v, per_send, seg_len, targets, hash)
                } else {
                    let lin = Frame::linear(&flat, frame.meta);
                    self.send_segments(&lin, &v, per_send, seg_len, targets, hash)
                };
                self.flat = flat;
                r
            }
            Shape::Drop(TxDrop::TooBig { len, room }) => {
                OverlayStats::bump(&self.shared.stats.tx_too_big);
                Err(SendError::TooBig(io::Error::other(format!(
                    "inner frame of {len} bytes, the underlay carries {room}"
                ))))
            }
            Shape::Drop(TxDrop::Unsupported) => Err(SendError::Invalid(io::Error::other(
                "super-frame kind an overlay port does not take",
            ))),
        }
    }

    fn try_clone_sender(&self) -> io::Result<Option<Box<dyn Port + Send>>> {
        Ok(Some(Box::new(OverlayPort {
            name: self.name.clone(),
            cfg: self.cfg.clone(),
            header: self.header,
            remotes: self.remotes.clone(),
            underlay: self.underlay,
            features: self.features,
            rx: self.rx.clone(),
            senders: self.senders.clone(),
            shared: self.shared.clone(),
            seed: self.seed,
            // A sender never receives: no poll set of its own.
            poll: None,
            woken: false,
            rx_buf: Vec::new(),
            pending: Pending::default(),
            rx_now: 0,
            rx_learned: None,
            seg: SegmentBuf::with_capacity(plan::MAX_GSO_SEGMENTS),
            csum_buf: Vec::with_capacity(256),
            flat: Vec::new(),
        })))
    }
}
