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
//! Every decision (validation, VLANs, destinations, which ports coalesce, the transmit
//! plan, drop causes) is the core's; this module runs threads and moves frames.
//!
//! GRO runs in gather mode over the plain frames of a batch: a super-frame is its first
//! segment's headers plus the payloads where `recv_batch` put them, a `Frame`, and goes to
//! a destination that takes it as one writev of those pieces, never copied. A destination
//! that needs it segmented gets segments cut from those pieces; one that needs its
//! checksum completed or its VLAN tag changed gets a new head in front of the same
//! payloads. Only a frame in more pieces than one writev takes is copied.
//!
//! A [`Switch`] is built with [`Switch::new`], given ports with [`Switch::add_port`] (see
//! [`open::open_port`] for ports described by a `PortSpec`), and run by [`Switch::run`]
//! until a stop flag is raised. Counters are published to a [`StatsHandle`] about ten
//! times a second by every thread (summed when read, for `--metrics`) and returned when
//! the loop ends.

pub mod config;
pub mod forward;
mod ingress;
pub mod lab;
pub mod metrics;
pub mod offload;
pub mod open;
pub mod pcap;
pub mod port;
pub mod stats;
pub mod sys;
mod worker;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pvnet_core::offload::features::Features;
use pvnet_core::switch::counters::PortCounters;
use pvnet_core::switch::gro_plan::gro_plan;
use pvnet_core::switch::mac_table::MacTable;
use pvnet_core::wire::Start;
use pvnet_linux::port::{Port, RecvBufs, DEFAULT_SLOT_LEN};
use pvnet_linux::sched;

use forward::{Forwarder, SharedMac};
use offload::IngressGro;
use port::PortState;
pub use stats::StatsHandle;
use worker::Worker;

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
            .push(PortState::new(name.to_owned(), queues, vlan)?);
        self.stats.reset(
            self.ports.iter().map(|p| p.name.clone()).collect(),
            vec![self.ports.iter().map(|p| p.counters).collect()],
        );
        Ok(self.ports.len() - 1)
    }

    /// A handle to the counters the loop publishes.
    pub fn stats(&self) -> StatsHandle {
        self.stats.clone()
    }

    /// Names and transmit features of the ports, and whether GRO runs on their ingress.
    pub fn port_features(&self) -> Vec<(String, Features, bool)> {
        let gro = gro_plan(&self.features());
        self.ports
            .iter()
            .zip(gro)
            .map(|(p, g)| (p.name.clone(), p.features, g.is_some()))
            .collect()
    }

    fn features(&self) -> Vec<Features> {
        self.ports.iter().map(|p| p.features).collect()
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
    /// parallel); those threads run under `SCHED_BATCH` ([`sched::set_batch_scheduling`]).
    /// Ports that cannot give such a handle, and `--pcap`, run all ports on the calling
    /// thread, whose scheduling is left alone.
    pub fn run(&mut self, stop: &AtomicBool) -> io::Result<Vec<(String, PortCounters)>> {
        let mut gro: Vec<Option<IngressGro>> = gro_plan(&self.features())
            .into_iter()
            .enumerate()
            .map(|(i, g)| {
                g.map(|cfg| {
                    tracing::info!(port = %self.ports[i].name, udp = cfg.udp, "GRO on ingress");
                    IngressGro::new(cfg)
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
                owned: (0..n).collect(),
                part: 0,
                recv_errors: vec![Default::default(); n],
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
                        owned: vec![i],
                        part: i,
                        recv_errors: vec![Default::default(); n],
                    }
                })
                .collect(),
        };
        self.stats.reset(
            names.clone(),
            workers
                .iter()
                .map(|w| w.ports.iter().map(|p| p.counters).collect())
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
                                if let Err(e) = sched::set_batch_scheduling() {
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
        let mut totals = vec![PortCounters::default(); n];
        for w in &workers {
            for (t, p) in totals.iter_mut().zip(&w.ports) {
                t.add(&p.counters);
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
            p.counters = *t;
        }
        self.stats.reset(names, vec![totals]);
        for r in results {
            r?;
        }
        Ok(self.stats.snapshot())
    }
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
