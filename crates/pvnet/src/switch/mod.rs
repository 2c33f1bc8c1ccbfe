//! The switch runtime: ports opened from port specs, one epoll loop thread per ingress
//! port (each sending to the other ports through second handles on their queues), a
//! shared MAC table with ageing, flooding, VLAN access ports, offload adaptation per
//! destination and per-port counters.
//!
//! ```text
//!  port fds ──epoll──► recv_batch (RecvBufs, per port) ──► vnet validate ──► [GRO, per
//!  ingress port, flushed at the end of each batch] ──► MAC learn/forward ──► per
//!  destination: xmit_action → pass | segment (GSO) | complete checksum ──► writev
//! ```
//!
//! GRO runs in gather mode over the plain frames of a batch: a super-frame is its first
//! segment's headers plus the payloads where `recv_batch` put them, and goes to a
//! destination that takes it as one writev of those pieces, never copied. Only a
//! destination that needs it segmented or its checksum completed gets a linear copy.
//!
//! A [`Switch`] is built with [`Switch::new`], given ports with [`Switch::add_port`] (see
//! [`open::open_port`] for ports described by a `PortSpec`), and run by [`Switch::run`]
//! until a stop flag is raised. Counters are published to a [`StatsHandle`] about ten
//! times a second by every thread (summed when read, for `--metrics`) and returned when
//! the loop ends.

pub mod config;
pub mod datapath;
pub mod lab;
pub mod metrics;
pub mod offload;
pub mod open;
pub mod pcap;
pub mod sys;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{self, IoSlice};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pvnet_core::offload::features::Features;
use pvnet_core::offload::gro::{FrameBatch, Gathered};
use pvnet_core::packet::{CsumState, OffloadMeta};
use pvnet_core::switch::counters::{render_prometheus, DropCause};
use pvnet_core::switch::mac_table::MacTable;
use pvnet_core::vnet::Validated;
use pvnet_core::wire::{Layers, Start};
use pvnet_linux::port::{Port, RecvBufs, DEFAULT_SLOT_LEN, MAX_IOV};

pub use datapath::PortStats;
use datapath::{decode, lock_mac, Forwarder, Frame, PortState, SharedMac};
use offload::IngressGro;

/// Switch-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchConfig {
    /// MAC learning table capacity.
    pub mac_table_size: usize,
    /// Seconds after which a MAC address not seen again is forgotten.
    pub ageing_secs: u64,
    /// Capture every frame sent to this pcap file.
    pub pcap: Option<PathBuf>,
    /// Frames read per port per wake-up.
    pub batch: usize,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig {
            mac_table_size: 4096,
            ageing_secs: 300,
            pcap: None,
            batch: 16,
        }
    }
}

/// Counters of every port as last published by the switch threads, shared with other
/// threads.
#[derive(Debug, Clone, Default)]
pub struct StatsHandle {
    inner: Arc<Mutex<Published>>,
}

/// Port names, and each thread's counters of every port (summed when read).
#[derive(Debug, Default)]
struct Published {
    names: Vec<String>,
    parts: Vec<Vec<PortStats>>,
}

impl StatsHandle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Published> {
        match self.inner.lock() {
            Ok(v) => v,
            Err(p) => p.into_inner(),
        }
    }

    /// A copy of the last published counters, in port order.
    pub fn snapshot(&self) -> Vec<(String, PortStats)> {
        let p = self.lock();
        let mut out: Vec<(String, PortStats)> = p
            .names
            .iter()
            .map(|n| (n.clone(), PortStats::default()))
            .collect();
        for part in &p.parts {
            for (o, s) in out.iter_mut().zip(part) {
                o.1.add(s);
            }
        }
        out
    }

    /// Start over with these port names and one part per thread.
    fn reset(&self, names: Vec<String>, parts: Vec<Vec<PortStats>>) {
        let mut p = self.lock();
        p.names = names;
        p.parts = parts;
    }

    /// Publish thread `part`'s counters of every port.
    fn publish(&self, part: usize, ports: &[PortState]) {
        let mut p = self.lock();
        if let Some(v) = p.parts.get_mut(part) {
            v.clear();
            v.extend(ports.iter().map(|p| p.stats));
        }
    }

    /// The counters in the Prometheus text format (`port` label on every series).
    pub fn render_prometheus(&self) -> String {
        let snap = self.snapshot();
        let mut out = String::new();
        render_prometheus(
            snap.iter().map(|(n, s)| (n.as_str(), &s.counters)),
            &mut out,
        );
        out.push_str(
            "# HELP pvnet_port_gso_segmented_total Super-frames segmented in software for \
             the port.\n# TYPE pvnet_port_gso_segmented_total counter\n",
        );
        for (n, s) in &snap {
            let name = n.replace('\\', "\\\\").replace('"', "\\\"");
            out.push_str(&format!(
                "pvnet_port_gso_segmented_total{{port=\"{name}\"}} {}\n",
                s.gso_segmented
            ));
        }
        out
    }
}

/// Totals over all ports, as the demo prints them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub gso_passed: u64,
    pub gso_segmented: u64,
    pub segments: u64,
    pub csum_completed: u64,
    pub coalesced: u64,
    pub gso_rejected: u64,
    pub drops: u64,
}

impl Totals {
    pub fn of(stats: &[(String, PortStats)]) -> Totals {
        let mut t = Totals::default();
        for (_, s) in stats {
            let c = &s.counters;
            t.gso_passed += c.gso_tx;
            t.gso_segmented += s.gso_segmented;
            t.segments += c.segments;
            t.csum_completed += c.csum_completed;
            t.coalesced += c.gro_coalesced;
            t.gso_rejected += c.gso_rejected;
            t.drops += DropCause::ALL.iter().map(|d| c.drops_of(*d)).sum::<u64>();
        }
        t
    }
}

/// The switch: ports, the shared MAC table, and the capture file.
pub struct Switch {
    ports: Vec<PortState>,
    mac: SharedMac,
    pcap: Option<pcap::PcapSink>,
    cfg: SwitchConfig,
    stats: StatsHandle,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch")
            .field("ports", &self.ports)
            .field("cfg", &self.cfg)
            .finish()
    }
}

/// Features that make a port take super-frames.
const SUPER_FRAMES: Features = Features::TSO4.union(Features::TSO6).union(Features::USO);

impl Switch {
    /// A switch without ports. Opens the `--pcap` file, if any.
    pub fn new(cfg: SwitchConfig) -> io::Result<Switch> {
        let seed = RandomState::new().hash_one(std::process::id());
        let mac = MacTable::new(
            cfg.mac_table_size,
            cfg.ageing_secs.saturating_mul(1000),
            seed,
        );
        let pcap = match &cfg.pcap {
            Some(p) => Some(pcap::PcapSink::create(p)?),
            None => None,
        };
        Ok(Switch {
            ports: Vec::new(),
            mac: Arc::new(Mutex::new(mac)),
            pcap,
            cfg,
            stats: StatsHandle::default(),
        })
    }

    /// Add a port made of one or more queues (fds) of one device; `vlan`: access VLAN.
    /// Returns its index. Ports must deliver Ethernet frames.
    pub fn add_port(
        &mut self,
        name: &str,
        queues: Vec<Box<dyn Port + Send>>,
        vlan: Option<u16>,
    ) -> io::Result<usize> {
        if queues.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("port {name}: no queue"),
            ));
        }
        if queues.iter().any(|q| q.start() != Start::Ethernet) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "port {name}: the switch forwards Ethernet frames; tun (bare IP) ports \
                     are not supported, use a tap"
                ),
            ));
        }
        if self.ports.len() >= usize::from(u16::MAX) {
            return Err(io::Error::other("too many ports"));
        }
        self.ports
            .push(PortState::new(name.to_owned(), queues, vlan));
        self.stats.reset(
            self.ports.iter().map(|p| p.name.clone()).collect(),
            vec![self.ports.iter().map(|p| p.stats).collect()],
        );
        Ok(self.ports.len() - 1)
    }

    /// A handle to the counters the loop publishes.
    pub fn stats(&self) -> StatsHandle {
        self.stats.clone()
    }

    /// Names and transmit features of the ports, and whether GRO runs on their ingress.
    pub fn port_features(&self) -> Vec<(String, Features, bool)> {
        let gro = self.gro_plan();
        self.ports
            .iter()
            .zip(gro)
            .map(|(p, g)| (p.name.clone(), p.features, g.is_some()))
            .collect()
    }

    /// Which ingress ports coalesce (and whether UDP too): a port the kernel hands
    /// wire-sized frames (no TSO/USO in its features) when some other port takes
    /// super-frames.
    fn gro_plan(&self) -> Vec<Option<bool>> {
        (0..self.ports.len())
            .map(|i| {
                if self.ports[i].features.intersects(SUPER_FRAMES) {
                    return None;
                }
                let others = self
                    .ports
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| p.features.fixed());
                let mut tcp = false;
                let mut udp = false;
                for f in others {
                    tcp |= f.intersects(Features::TSO4.union(Features::TSO6));
                    udp |= f.intersects(Features::USO);
                }
                (tcp || udp).then_some(udp)
            })
            .collect()
    }

    /// For one thread per ingress port: thread `i`'s handles on every other port (in
    /// port order, `i` left out). `None` when some port cannot give one or a capture is
    /// on (the capture file is written by a single thread).
    fn senders(&self) -> io::Result<Option<Vec<Vec<PortState>>>> {
        if self.ports.len() < 2 || self.pcap.is_some() {
            return Ok(None);
        }
        let mut all = Vec::with_capacity(self.ports.len());
        for i in 0..self.ports.len() {
            let mut v = Vec::with_capacity(self.ports.len() - 1);
            for (d, p) in self.ports.iter().enumerate() {
                if d == i {
                    continue;
                }
                match p.sender()? {
                    Some(s) => v.push(s),
                    None => return Ok(None),
                }
            }
            all.push(v);
        }
        Ok(Some(all))
    }

    /// Run the loop until `stop` is set; returns the final counters. Ports are closed
    /// when the switch is dropped (taps that the switch created disappear then).
    ///
    /// Every port gets a thread of its own that receives from it and sends to the other
    /// ports through second handles on their queues (writing into a tap runs the
    /// receiving namespace's stack on the writer's thread, so the directions run in
    /// parallel); those threads run under `SCHED_BATCH` ([`sys::set_batch_scheduling`]).
    /// Ports that cannot give such a handle, and `--pcap`, run all ports on the calling
    /// thread, whose scheduling is left alone.
    pub fn run(&mut self, stop: &AtomicBool) -> io::Result<Vec<(String, PortStats)>> {
        let mut gro: Vec<Option<IngressGro>> = self
            .gro_plan()
            .into_iter()
            .enumerate()
            .map(|(i, g)| {
                g.map(|udp| {
                    tracing::info!(port = %self.ports[i].name, udp, "GRO on ingress");
                    IngressGro::new(udp)
                })
            })
            .collect();
        let senders = self.senders()?;
        let names: Vec<String> = self.ports.iter().map(|p| p.name.clone()).collect();
        let n = self.ports.len();
        let batch = self.cfg.batch;
        let ports = std::mem::take(&mut self.ports);
        let mut workers = match senders {
            None => vec![Worker {
                ports,
                bufs: (0..n)
                    .map(|_| Some(RecvBufs::new(batch, DEFAULT_SLOT_LEN)))
                    .collect(),
                gro,
                fwd: Forwarder::new(self.mac.clone(), self.pcap.take()),
                rx: Vec::with_capacity(batch),
                run: Vec::with_capacity(batch),
                flat: Vec::new(),
                owned: (0..n).collect(),
                part: 0,
            }],
            Some(senders) => ports
                .into_iter()
                .zip(senders)
                .enumerate()
                .map(|(i, (port, mut others))| {
                    others.insert(i, port);
                    Worker {
                        ports: others,
                        bufs: (0..n)
                            .map(|j| (j == i).then(|| RecvBufs::new(batch, DEFAULT_SLOT_LEN)))
                            .collect(),
                        gro: (0..n)
                            .map(|j| if j == i { gro[j].take() } else { None })
                            .collect(),
                        fwd: Forwarder::new(self.mac.clone(), None),
                        rx: Vec::with_capacity(batch),
                        run: Vec::with_capacity(batch),
                        flat: Vec::new(),
                        owned: vec![i],
                        part: i,
                    }
                })
                .collect(),
        };
        self.stats.reset(
            names.clone(),
            workers
                .iter()
                .map(|w| w.ports.iter().map(|p| p.stats).collect())
                .collect(),
        );
        let clock = Instant::now();
        let failed = AtomicBool::new(false);
        let stats = &self.stats;
        let results: Vec<io::Result<()>> = if let [w] = &mut workers[..] {
            vec![w.run(stop, &failed, clock, stats)]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = workers
                    .iter_mut()
                    .map(|w| {
                        let failed = &failed;
                        let name = format!("pvnet-{}", names[w.part]);
                        std::thread::Builder::new()
                            .name(name)
                            .spawn_scoped(scope, move || {
                                if let Err(e) = sys::set_batch_scheduling() {
                                    tracing::debug!("SCHED_BATCH refused: {e}");
                                }
                                w.run(stop, failed, clock, stats)
                            })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| match h {
                        Ok(h) => match h.join() {
                            Ok(r) => r,
                            Err(panic) => std::panic::resume_unwind(panic),
                        },
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            Err(e)
                        }
                    })
                    .collect()
            })
        };
        // Put the ports back, each with its counters summed over the threads.
        let mut totals = vec![PortStats::default(); n];
        for w in &workers {
            for (t, p) in totals.iter_mut().zip(&w.ports) {
                t.add(&p.stats);
            }
        }
        if workers.len() == 1 {
            if let Some(w) = workers.pop() {
                self.ports = w.ports;
                self.pcap = w.fwd.pcap;
            }
        } else {
            for (i, mut w) in workers.into_iter().enumerate() {
                self.ports.push(w.ports.swap_remove(i));
            }
        }
        for (p, t) in self.ports.iter_mut().zip(&totals) {
            p.stats = *t;
        }
        self.stats.reset(names, vec![totals]);
        for r in results {
            r?;
        }
        Ok(self.stats.snapshot())
    }
}

/// One switch thread: the ports it receives from (`owned`, with their receive buffers
/// and coalescers) and its handles on every port it sends to.
struct Worker {
    /// Every port, by index: the owned ones themselves, the others as senders.
    ports: Vec<PortState>,
    bufs: Vec<Option<RecvBufs>>,
    gro: Vec<Option<IngressGro>>,
    fwd: Forwarder,
    /// Per receive batch: what validation found of each frame.
    rx: Vec<Rx>,
    /// Per receive batch: the frames of the run GRO coalesces.
    run: Vec<usize>,
    /// See [`Ingress::flat`].
    flat: Vec<u8>,
    owned: Vec<usize>,
    /// Index of this thread's counters in the [`StatsHandle`].
    part: usize,
}

impl Worker {
    /// Service the owned ports until `stop` (or `failed`: another thread failed).
    fn run(
        &mut self,
        stop: &AtomicBool,
        failed: &AtomicBool,
        clock: Instant,
        stats: &StatsHandle,
    ) -> io::Result<()> {
        let r = self.run_loop(stop, failed, clock, stats);
        if r.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        if let Some(p) = &mut self.fwd.pcap {
            p.flush();
        }
        stats.publish(self.part, &self.ports);
        r
    }

    fn run_loop(
        &mut self,
        stop: &AtomicBool,
        failed: &AtomicBool,
        clock: Instant,
        stats: &StatsHandle,
    ) -> io::Result<()> {
        let nfds: usize = self.owned.iter().map(|&i| self.ports[i].queues.len()).sum();
        let mut epoll = sys::Epoll::new(nfds.max(1))?;
        for &i in &self.owned {
            for (q, queue) in self.ports[i].queues.iter().enumerate() {
                epoll.add(queue.as_raw_fd(), token(i, q))?;
            }
        }
        let mut last_publish = Duration::ZERO;
        let mut last_expire = Duration::ZERO;
        let mut ready: Vec<u64> = Vec::with_capacity(nfds.max(1));
        while !stop.load(Ordering::Relaxed) && !failed.load(Ordering::Relaxed) {
            ready.clear();
            ready.extend(epoll.wait(100)?);
            let now = clock.elapsed();
            self.fwd.now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
            for &t in &ready {
                let (i, q) = untoken(t);
                self.service(i, q);
            }
            if now.saturating_sub(last_expire) >= Duration::from_secs(1) {
                lock_mac(&self.fwd.mac).expire(self.fwd.now_ms);
                last_expire = now;
            }
            if now.saturating_sub(last_publish) >= Duration::from_millis(100) {
                stats.publish(self.part, &self.ports);
                last_publish = now;
            }
        }
        Ok(())
    }

    /// Drain one queue of port `i`: a few batches at most, so other ports get their turn
    /// (epoll is level-triggered and wakes us again).
    fn service(&mut self, i: usize, q: usize) {
        let Worker {
            ports,
            bufs,
            gro,
            fwd,
            rx,
            run,
            flat,
            ..
        } = self;
        let (Some(Some(bufs)), Some(gro)) = (bufs.get_mut(i), gro.get_mut(i)) else {
            return;
        };
        for _ in 0..4 {
            let Some(queue) = ports.get_mut(i).and_then(|p| p.queues.get_mut(q)) else {
                return;
            };
            let n = match queue.recv_batch(bufs) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(port = %ports[i].name, "receive failed: {e}");
                    return;
                }
            };
            if n == 0 {
                return;
            }
            let start = ports[i].start;
            let bufs: &RecvBufs = bufs;
            let mut ctx = Ingress {
                ports: &mut ports[..],
                fwd,
                i,
                start,
                flat,
            };
            // Validate every frame first, so that GRO sees whole runs of plain frames.
            rx.clear();
            for k in 0..n {
                rx.push(ctx.validate(bufs, k));
            }
            let mut k = 0;
            while k < n {
                match (&rx[k], gro.as_mut()) {
                    (Rx::Dropped, _) => k += 1,
                    (Rx::Frame { plain: true, .. }, Some(g)) => {
                        // The plain frames up to the next one that carries offload metadata
                        // (it must not overtake a held frame of its flow: the run is
                        // flushed before it goes).
                        run.clear();
                        while let Some(r) = rx.get(k) {
                            match r {
                                Rx::Frame { plain: false, .. } => break,
                                Rx::Frame { .. } => run.push(k),
                                Rx::Dropped => {}
                            }
                            k += 1;
                        }
                        let view = Run {
                            bufs,
                            rx: &rx[..],
                            run: &run[..],
                        };
                        g.coalesce(&view, start, &mut |item| ctx.gathered(item));
                    }
                    (Rx::Frame { len, v, .. }, _) => {
                        let frame = bufs
                            .get(k)
                            .map_or(&[][..], |(_, f)| f.get(..*len).unwrap_or(f));
                        ctx.forward(Frame::Linear(frame), *v.meta(), v.layers());
                        k += 1;
                    }
                }
            }
            if n < bufs.capacity() {
                return;
            }
        }
    }
}

/// What the switch knows of a received frame after validating its vnet header.
#[derive(Debug, Clone, Copy)]
enum Rx {
    /// Dropped (and counted): bad header, truncated, unparsable.
    Dropped,
    Frame {
        /// Length without Ethernet padding after the IP packet.
        len: usize,
        v: Validated,
        /// No offload metadata: GRO may merge it.
        plain: bool,
    },
}

/// The plain frames of a receive batch that GRO coalesces together: indices into the
/// batch, in receive order.
struct Run<'b> {
    bufs: &'b RecvBufs,
    rx: &'b [Rx],
    run: &'b [usize],
}

impl Run<'_> {
    /// What was validated of frame `i` of the run.
    fn validated(&self, i: usize) -> Option<&Validated> {
        match self.rx.get(*self.run.get(i)?)? {
            Rx::Frame { v, .. } => Some(v),
            Rx::Dropped => None,
        }
    }
}

impl FrameBatch for Run<'_> {
    fn frame_count(&self) -> usize {
        self.run.len()
    }

    fn frame(&self, i: usize) -> &[u8] {
        let Some(&k) = self.run.get(i) else {
            return &[];
        };
        match (self.rx.get(k), self.bufs.get(k)) {
            (Some(Rx::Frame { len, .. }), Some((_, f))) => f.get(..*len).unwrap_or(f),
            _ => &[],
        }
    }
}

/// The ingress side of one receive batch: the ports, the forwarder and the port index.
struct Ingress<'a> {
    ports: &'a mut [PortState],
    fwd: &'a mut Forwarder,
    i: usize,
    start: Start,
    /// A gathered frame in too many pieces for one writev, made linear.
    flat: &'a mut Vec<u8>,
}

impl Ingress<'_> {
    fn drop(&mut self, cause: DropCause) {
        self.ports[self.i].stats.counters.drop(cause);
    }

    fn rx(&mut self, len: usize, gso: bool) {
        let c = &mut self.ports[self.i].stats.counters;
        c.rx(len);
        if gso {
            c.gso_rx += 1;
        }
    }

    fn forward(&mut self, frame: Frame<'_>, meta: OffloadMeta, layers: &Layers) {
        self.fwd.forward(self.ports, self.i, frame, meta, layers);
    }

    /// Validate frame `k` of the batch and count it received.
    fn validate(&mut self, bufs: &RecvBufs, k: usize) -> Rx {
        if bufs.is_truncated(k) {
            self.drop(DropCause::TooBig);
            return Rx::Dropped;
        }
        let Some((hdr, frame)) = bufs.get(k) else {
            self.drop(DropCause::VnetHeader);
            return Rx::Dropped;
        };
        let v = match decode(hdr, frame, self.start) {
            Ok(v) => v,
            Err((cause, e)) => {
                tracing::debug!(port = %self.ports[self.i].name, "dropping received frame: {e}");
                self.drop(cause);
                return Rx::Dropped;
            }
        };
        // Ethernet padding after the IP packet is not part of it.
        let len = if v.layers().l3.is_some() && v.layers().ip_end < frame.len() {
            v.layers().ip_end
        } else {
            frame.len()
        };
        self.rx(len, v.meta().gso.is_some());
        let plain = v.meta().gso.is_none() && !matches!(v.meta().csum, CsumState::Partial { .. });
        Rx::Frame { len, v, plain }
    }

    /// An item out of the coalescer: a frame given back whole, or a flow (one segment or
    /// a super-frame) as headers plus payloads. Its layers are those validated for the
    /// frame it began with: a super-frame keeps its first segment's headers, only longer.
    fn gathered(&mut self, item: Gathered<'_, '_, Run<'_>>) {
        let Some(v) = item.batch_index().and_then(|j| item.frames().validated(j)) else {
            self.drop(DropCause::Parse);
            return;
        };
        let mut layers = *v.layers();
        if item.segments > 1 {
            self.ports[self.i].stats.counters.gro_coalesced += u64::from(item.segments);
        }
        let payloads = item.payloads();
        if payloads.len() == 0 {
            self.forward(Frame::Linear(item.head), item.meta, &layers);
            return;
        }
        layers.ip_end = item.len();
        // One iovec is the vnet header's.
        let mut iov = [IoSlice::new(&[]); MAX_IOV - 1];
        if payloads.len() < iov.len() {
            iov[0] = IoSlice::new(item.head);
            let mut m = 1;
            for (slot, p) in iov[1..].iter_mut().zip(payloads) {
                *slot = IoSlice::new(p);
                m += 1;
            }
            self.forward(Frame::Parts(&iov[..m]), item.meta, &layers);
        } else {
            item.copy_to(self.flat);
            self.fwd.forward(
                self.ports,
                self.i,
                Frame::Linear(self.flat),
                item.meta,
                &layers,
            );
        }
    }
}

fn token(port: usize, queue: usize) -> u64 {
    ((port as u64) << 16) | queue as u64
}

fn untoken(t: u64) -> (usize, usize) {
    ((t >> 16) as usize, (t & 0xffff) as usize)
}

/// Build a switch from port specs: open every port (see [`open::open_port`]).
pub fn build(
    cfg: SwitchConfig,
    specs: &[pvnet_linux::portspec::PortSpec],
) -> Result<Switch, open::OpenError> {
    let mut sw = Switch::new(cfg).map_err(open::OpenError::Io)?;
    for spec in specs {
        let port = open::open_port(spec)?;
        sw.add_port(&port.name, port.queues, spec.vlan)
            .map_err(open::OpenError::Io)?;
    }
    Ok(sw)
}

/// Stop flag plus a convenience to raise it.
pub fn stop_flag() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}
