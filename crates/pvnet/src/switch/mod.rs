//! The switch runtime: ports opened from port specs, one epoll loop thread per queue of
//! every ingress port (each sending to the other ports through second handles on their
//! queues), a shared MAC table with ageing, flooding, VLAN access ports, offload
//! adaptation per destination and per-port counters.
//!
//! ```text
//!  queue fd ──epoll──► recv_batch (RecvBufs, per queue) ──► vnet validate ──► [GRO, per
//!  ingress queue, flushed at the end of each batch] ──► MAC learn/forward ──► per
//!  destination: xmit_action → pass | segment (GSO) | complete checksum ──► writev
//! ```
//!
//! A port of several queues (`tap:NAME,queues=N`, `vhost-user:PATH,queues=N`) is one
//! port to the switch (one slot, MAC addresses, counters, `pvnet ctl port list` entry)
//! served by N threads, one per queue, as the kernel serves a multi-queue NIC with a CPU
//! per queue: each receives from its queue and coalesces what that queue brings.
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
//! [`open::open_port`] for ports described by a `PortSpec`, and [`Switch::add_opened`]),
//! and run by [`Switch::run`] until a stop flag is raised. Counters are published to a
//! [`StatsHandle`] about ten times a second by every thread (summed when read, for
//! `--metrics`, so a port's threads add up to the port) and returned when the loop ends.
//!
//! Ports come and go while it runs: a [`SwitchControl`] (from [`Switch::control`]) adds
//! and removes them, and a port whose device disappears is removed by the switch itself.
//! The thread that called [`Switch::run`] is the supervisor: it starts the threads of a
//! new port, tells every other thread about it, and on removal stops all the port's
//! threads, has every other one forget it, clears its MAC addresses and counts it. A
//! port is known by its slot (its number in the MAC table); the slot of a removed port is
//! given to the next port added.

pub mod config;
pub mod control;
pub mod forward;
mod ingress;
pub mod lab;
pub mod metrics;
pub mod offload;
pub mod open;
pub mod pcap;
pub mod port;
mod quiet;
pub mod stats;
pub mod sys;
mod worker;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use pvnet_core::offload::features::Features;
use pvnet_core::offload::gro::GroConfig;
use pvnet_core::switch::counters::PortCounters;
use pvnet_core::switch::gro_plan::{gro_plan_ports, GroPort};
use pvnet_core::switch::mac_table::{MacTable, PortId};
use pvnet_core::switch::vlan::VlanMode;
use pvnet_core::wire::Start;
use pvnet_linux::epoll::Waker;
use pvnet_linux::port::{Port, RecvBufs, DEFAULT_SLOT_LEN};
use pvnet_linux::portspec::PortSpec;
use pvnet_linux::sched;

pub use control::SwitchControl;
use forward::{lock_mac, Forwarder, SharedMac};
use offload::IngressGro;
use port::{PortState, PortView};
pub use stats::{Removal, StatsHandle};
use worker::{Command, Letter, Mailbox, Receive, Worker};

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

/// What the switch knows of a port besides its data path: for `pvnet ctl`, the
/// configuration it runs, and for finding a port by name.
#[derive(Debug, Clone)]
pub struct PortRecord {
    /// Port (device) name, unique in the switch.
    pub name: String,
    /// The spec it was opened from, if it was opened from one.
    pub spec: Option<PortSpec>,
    /// The offloads the spec asked for.
    pub configured: Features,
    /// The offloads the device accepted when the port was opened.
    pub opened: Features,
    /// Access VLAN, `None` for a trunk.
    pub vlan: Option<u16>,
    /// Number of queues (fds).
    pub queues: usize,
    /// Whether the switch coalesces what this port receives.
    pub gro: bool,
    view: PortView,
}

impl PortRecord {
    /// The record of a port about to run as `state`, opened from `spec` with `configured`
    /// offloads asked for.
    fn new(
        name: String,
        spec: Option<PortSpec>,
        configured: Features,
        state: &PortState,
    ) -> PortRecord {
        PortRecord {
            name,
            spec,
            configured,
            opened: state.features,
            vlan: match state.vlan {
                VlanMode::Access(vid) => Some(vid),
                VlanMode::Trunk => None,
            },
            queues: state.queues.len(),
            gro: false,
            view: state.view(),
        }
    }

    /// The transmit features in effect now (after any offload the device refused at run
    /// time was turned off).
    pub fn features(&self) -> Features {
        self.view.features()
    }

    /// Whether the port is being removed.
    pub fn is_down(&self) -> bool {
        self.view.is_down()
    }

    /// For a port whose peer comes and goes (a VM on a vhost-user port): whether the peer
    /// is there, and how often it went away.
    pub fn carrier(&self) -> Option<(bool, u64)> {
        self.view.carrier()
    }

    /// What the guest on a vhost-user port did wrong, by cause; empty for other ports.
    pub fn guest_errors(&self) -> Vec<(&'static str, u64)> {
        self.view.guest_errors()
    }

    /// Whether the port hands over super-frames on receive.
    pub fn rx_super_frames(&self) -> bool {
        self.view.rx_super_frames()
    }
}

/// Every port's [`PortRecord`] by slot, shared with the control socket.
pub type Registry = Arc<Mutex<Vec<Option<PortRecord>>>>;

fn lock_registry(r: &Registry) -> MutexGuard<'_, Vec<Option<PortRecord>>> {
    match r.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// A port ready to join a running switch: opened, not yet switched.
pub struct NewPort {
    /// Its name (unique in the switch).
    pub name: String,
    /// Its queues, Ethernet frames each.
    pub queues: Vec<Box<dyn Port + Send>>,
    /// Access VLAN, `None` for a trunk.
    pub vlan: Option<u16>,
    /// The spec it was opened from, if any.
    pub spec: Option<PortSpec>,
    /// The offloads asked for.
    pub configured: Features,
}

impl NewPort {
    /// A port opened from `spec` (by [`open::open_port`]).
    pub fn opened(spec: &PortSpec, port: open::OpenedPort) -> NewPort {
        NewPort {
            name: port.name,
            queues: port.queues,
            vlan: spec.vlan,
            spec: Some(spec.clone()),
            configured: open::configured_features(spec),
        }
    }
}

impl std::fmt::Debug for NewPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewPort")
            .field("name", &self.name)
            .field("queues", &self.queues.len())
            .field("vlan", &self.vlan)
            .finish()
    }
}

/// What the supervisor is asked to do, by the control side or by a switch thread.
pub(crate) enum Supervise {
    /// Add a port; the answer is its slot.
    Add {
        port: NewPort,
        reply: mpsc::Sender<Result<usize, String>>,
    },
    /// Remove the port of this name.
    Del {
        name: String,
        reply: mpsc::Sender<Result<(), String>>,
    },
    /// The device of the port `name` in `slot` disappeared.
    Gone {
        slot: usize,
        name: String,
        why: String,
    },
}

/// The switch: ports, the shared MAC table, and the capture file.
pub struct Switch {
    /// Ports by slot, while the switch does not run.
    ports: Vec<Option<PortState>>,
    registry: Registry,
    mac: SharedMac,
    pcap: Option<pcap::PcapSink>,
    cfg: SwitchConfig,
    stats: StatsHandle,
    supervise_tx: mpsc::Sender<Supervise>,
    supervise_rx: mpsc::Receiver<Supervise>,
    /// The runtime's clock (MAC ages are in its milliseconds).
    clock: Instant,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch")
            .field("ports", &self.ports)
            .field("cfg", &self.cfg)
            .finish()
    }
}

/// The smallest free slot of `registry`, or a new one.
fn free_slot(registry: &[Option<PortRecord>]) -> io::Result<usize> {
    let slot = registry
        .iter()
        .position(Option::is_none)
        .unwrap_or(registry.len());
    if slot >= usize::from(u16::MAX) {
        return Err(io::Error::other("too many ports"));
    }
    Ok(slot)
}

fn check_port(name: &str, queues: &[Box<dyn Port + Send>]) -> io::Result<()> {
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
    Ok(())
}

/// A port of this name is already in the switch: the error says where.
fn duplicate(registry: &[Option<PortRecord>], name: &str) -> Option<String> {
    let other = registry.iter().flatten().find(|r| r.name == name)?;
    let spec = other
        .spec
        .as_ref()
        .map_or_else(String::new, |s| format!(" ({s})"));
    Some(format!(
        "a port named {name} is already in the switch{spec}: port names must be unique, \
         also across network namespaces (they name the counters and `pvnet ctl` requests)"
    ))
}

/// Enter a port in the registry and the counters, in the smallest free slot: the
/// checks (Ethernet queues, a name not taken) and its state, the same before and while
/// the switch runs. Returns the slot and the port's state, for the caller to run.
fn register(
    registry: &Registry,
    stats: &StatsHandle,
    port: NewPort,
) -> io::Result<(usize, PortState)> {
    check_port(&port.name, &port.queues)?;
    let mut reg = lock_registry(registry);
    if let Some(why) = duplicate(&reg, &port.name) {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, why));
    }
    let slot = free_slot(&reg)?;
    let state = PortState::new(port.name.clone(), port.queues, port.vlan)?;
    if reg.len() <= slot {
        reg.resize_with(slot + 1, || None);
    }
    stats.set_slot(slot, Some(port.name.clone()));
    reg[slot] = Some(PortRecord::new(
        port.name,
        port.spec,
        port.configured,
        &state,
    ));
    Ok((slot, state))
}

/// Write into the registry which ports coalesce, from a GRO plan by slot.
fn record_gro(registry: &Registry, plan: &[Option<GroConfig>]) {
    for (slot, r) in lock_registry(registry).iter_mut().enumerate() {
        if let Some(r) = r {
            r.gro = plan.get(slot).is_some_and(Option::is_some);
        }
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
        let (supervise_tx, supervise_rx) = mpsc::channel();
        Ok(Switch {
            ports: Vec::new(),
            registry: Arc::default(),
            mac: Arc::new(Mutex::new(mac)),
            pcap,
            cfg,
            stats: StatsHandle::default(),
            supervise_tx,
            supervise_rx,
            clock: Instant::now(),
        })
    }

    /// Add a port made of one or more queues (fds) of one device; `vlan`: access VLAN.
    /// Returns its slot. Ports must deliver Ethernet frames.
    pub fn add_port(
        &mut self,
        name: &str,
        queues: Vec<Box<dyn Port + Send>>,
        vlan: Option<u16>,
    ) -> io::Result<usize> {
        let configured = queues.first().map_or(Features::NONE, |q| q.features());
        self.add_opened(NewPort {
            name: name.to_owned(),
            queues,
            vlan,
            spec: None,
            configured,
        })
    }

    /// Add a port before the switch runs (see [`SwitchControl::add`] for a running one).
    pub fn add_opened(&mut self, port: NewPort) -> io::Result<usize> {
        let (slot, state) = register(&self.registry, &self.stats, port)?;
        if self.ports.len() <= slot {
            self.ports.resize_with(slot + 1, || None);
        }
        self.ports[slot] = Some(state);
        record_gro(&self.registry, &plan_gro(&self.registry));
        Ok(slot)
    }

    /// A handle to the counters the loop publishes.
    pub fn stats(&self) -> StatsHandle {
        self.stats.clone()
    }

    /// A handle that adds and removes ports while the switch runs, and reads its ports,
    /// counters and MAC table (what the control socket serves).
    pub fn control(&self) -> SwitchControl {
        SwitchControl::new(
            self.supervise_tx.clone(),
            self.registry.clone(),
            self.stats.clone(),
            self.mac.clone(),
            self.cfg.clone(),
            self.clock,
        )
    }

    /// Names and transmit features of the ports, and whether GRO runs on their ingress.
    pub fn port_features(&self) -> Vec<(String, Features, bool)> {
        lock_registry(&self.registry)
            .iter()
            .flatten()
            .map(|r| (r.name.clone(), r.features(), r.gro))
            .collect()
    }

    /// Run the loop until `stop` is set; returns the final counters. Ports are closed
    /// when the switch is dropped (taps that the switch created disappear then).
    ///
    /// Every queue of every port gets a thread of its own, named `pvnet-PORT` (or
    /// `pvnet-PORT:QUEUE` for a port of several queues), that receives from it and sends
    /// to the other ports through second handles on their queues (writing into a tap runs
    /// the receiving namespace's stack on the writer's thread, so the directions run in
    /// parallel): on each, the queue of its own queue's number ([`PortState::sender`];
    /// a vhost-user port's handles go round its queue pairs); those threads run under
    /// `SCHED_BATCH` ([`sched::set_batch_scheduling`]). Ports that cannot give such a
    /// handle, and `--pcap`, run all ports on one thread, whose scheduling is left alone.
    /// The calling thread supervises: it adds and removes ports as [`SwitchControl`] and
    /// the threads ask.
    pub fn run(&mut self, stop: &AtomicBool) -> io::Result<Vec<(String, PortCounters)>> {
        let shared = self.pcap.is_none()
            && self
                .ports
                .iter()
                .flatten()
                .all(|p| p.sender(0).is_ok_and(|s| s.is_some()));
        let failed = AtomicBool::new(false);
        let clock = self.clock;
        let ports = std::mem::take(&mut self.ports);
        let pcap = self.pcap.take();
        let Switch {
            registry,
            mac,
            cfg,
            stats,
            supervise_rx,
            ..
        } = &*self;
        let env = Env {
            stop,
            failed: &failed,
            clock,
            stats,
            registry,
            mac,
            batch: cfg.batch,
            events: self.supervise_tx.clone(),
        };
        let (ports, pcap, result) = std::thread::scope(|scope| {
            let mut sup = Supervisor {
                scope,
                env: &env,
                threads: Vec::new(),
                templates: Vec::new(),
                plan: Vec::new(),
                shared,
                next_id: 0,
            };
            let started = sup.start(ports, pcap);
            if started.is_ok() {
                while !stop.load(Ordering::Relaxed) && !failed.load(Ordering::Relaxed) {
                    match supervise_rx.recv_timeout(Duration::from_millis(100)) {
                        Ok(msg) => sup.handle(msg),
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
            }
            let (ports, pcap, r) = sup.finish();
            (ports, pcap, started.and(r))
        });
        self.ports = ports;
        self.pcap = pcap;
        result?;
        Ok(self.stats.snapshot())
    }
}

/// The GRO plan for the ports in the registry, by slot.
fn plan_gro(registry: &Registry) -> Vec<Option<GroConfig>> {
    let reg = lock_registry(registry);
    let present: Vec<(usize, GroPort)> = reg
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            r.as_ref().filter(|r| !r.is_down()).map(|r| {
                let port = GroPort {
                    features: r.features(),
                    rx_super_frames: r.rx_super_frames(),
                };
                (i, port)
            })
        })
        .collect();
    let ports: Vec<GroPort> = present.iter().map(|&(_, p)| p).collect();
    let mut plan = vec![None; reg.len()];
    for ((slot, _), g) in present.iter().zip(gro_plan_ports(&ports)) {
        plan[*slot] = g;
    }
    plan
}

/// What every switch thread and the supervisor share.
struct Env<'a> {
    stop: &'a AtomicBool,
    failed: &'a AtomicBool,
    clock: Instant,
    stats: &'a StatsHandle,
    registry: &'a Registry,
    mac: &'a SharedMac,
    batch: usize,
    events: mpsc::Sender<Supervise>,
}

/// A running switch thread, as the supervisor holds it.
struct Thread<'scope> {
    id: usize,
    /// The number of the queue it receives from, in shared mode (its port's).
    queue: usize,
    letters: mpsc::Sender<Letter>,
    waker: Arc<Waker>,
    /// The slots it receives from.
    owned: Vec<usize>,
    handle: ScopedJoinHandle<'scope, (Worker, io::Result<()>)>,
}

impl Thread<'_> {
    /// Give the thread a command and wait until it is carried out. `false` when the
    /// thread has ended or does not answer within a few seconds.
    fn tell(&self, cmd: Command) -> bool {
        let (ack, done) = mpsc::channel();
        if self.letters.send((cmd, ack)).is_err() {
            return false;
        }
        self.waker.wake();
        done.recv_timeout(Duration::from_secs(5)).is_ok()
    }
}

/// The bytes of a thread's name the kernel keeps (`top -H`, `/proc/PID/task/TID/comm`).
const COMM_LEN: usize = 15;

/// The name of the thread that receives from `queue` of the port `port`, which has
/// `queues` queues: `pvnet-PORT`, or `pvnet-PORT:QUEUE` for one of several, the port's
/// name shortened so that the queue still shows in what the kernel keeps of it. A port
/// named by a path (a vhost-user socket) goes by the path's last part.
fn thread_name(port: &str, queue: usize, queues: usize) -> String {
    let port = port.rsplit('/').next().unwrap_or(port);
    if queues <= 1 {
        return format!("pvnet-{port}");
    }
    let suffix = format!(":{queue}");
    let mut end = port
        .len()
        .min(COMM_LEN.saturating_sub("pvnet-".len() + suffix.len()));
    while !port.is_char_boundary(end) {
        end -= 1;
    }
    format!("pvnet-{}{suffix}", &port[..end])
}

/// How long a port's addresses are remembered is the table's business; a removed port's
/// are forgotten at once.
pub(super) fn flush_mac(mac: &SharedMac, slot: usize) {
    if let Ok(id) = PortId::try_from(slot) {
        lock_mac(mac).flush_port(id);
    }
}

/// The supervisor: the switch threads and what is needed to add and remove ports.
struct Supervisor<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    env: &'env Env<'env>,
    threads: Vec<Thread<'scope>>,
    /// In shared mode, sending handles on every queue of every port, cloned for each new
    /// thread (and never sent with themselves).
    templates: Vec<Option<PortState>>,
    /// The GRO settings each slot's ingress runs with now.
    plan: Vec<Option<GroConfig>>,
    /// One thread per queue of every port, each sending to every other port through its
    /// own handle; else one thread for every port.
    shared: bool,
    next_id: usize,
}

impl<'scope, 'env> Supervisor<'scope, 'env> {
    /// A thread's state with `ports` (by slot) to send to and nothing to receive from yet.
    fn new_worker(
        &mut self,
        ports: Vec<Option<PortState>>,
        pcap: Option<pcap::PcapSink>,
    ) -> io::Result<(Worker, Arc<Waker>, mpsc::Sender<Letter>)> {
        let n = ports.len();
        let (letters_tx, letters) = mpsc::channel();
        let waker = Arc::new(Waker::new()?);
        let id = self.next_id;
        self.next_id += 1;
        let worker = Worker {
            ports,
            bufs: (0..n).map(|_| None).collect(),
            gro: (0..n).map(|_| None).collect(),
            fwd: Forwarder::new(self.env.mac.clone(), pcap),
            rx: Vec::with_capacity(self.env.batch),
            run: Vec::with_capacity(self.env.batch),
            owned: Vec::new(),
            part: id,
            recv_errors: vec![Default::default(); n],
            mailbox: Mailbox {
                letters,
                waker: waker.clone(),
                events: self.env.events.clone(),
            },
        };
        Ok((worker, waker, letters_tx))
    }

    /// Start a thread, named and numbered as the queue it receives from, that receives
    /// from `owned` (already in `worker.ports`).
    fn spawn(
        &mut self,
        mut worker: Worker,
        waker: Arc<Waker>,
        letters: mpsc::Sender<Letter>,
        owned: Vec<usize>,
        (name, queue): (String, usize),
    ) -> io::Result<()> {
        for &slot in &owned {
            let batch = worker
                .ports
                .get(slot)
                .and_then(Option::as_ref)
                .map_or(self.env.batch, |p| p.rx_batch(self.env.batch));
            worker.rx.reserve(batch);
            worker.run.reserve(batch);
            if let Some(b) = worker.bufs.get_mut(slot) {
                *b = Some(RecvBufs::new(batch, DEFAULT_SLOT_LEN));
            }
            if let Some(g) = worker.gro.get_mut(slot) {
                *g = self.plan.get(slot).copied().flatten().map(IngressGro::new);
            }
        }
        worker.owned = owned.clone();
        let id = worker.part;
        let env = self.env;
        let batch_sched = self.shared;
        env.stats.add_part(id);
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn_scoped(self.scope, move || {
                if batch_sched {
                    if let Err(e) = sched::set_batch_scheduling() {
                        tracing::debug!("SCHED_BATCH refused: {e}");
                    }
                }
                let r = worker.run(env.stop, env.failed, env.clock, env.stats);
                (worker, r)
            });
        match handle {
            Ok(handle) => {
                self.threads.push(Thread {
                    id,
                    queue,
                    letters,
                    waker,
                    owned,
                    handle,
                });
                Ok(())
            }
            Err(e) => {
                env.stats.remove_part(id);
                Err(e)
            }
        }
    }

    /// Start the threads for the ports the switch was built with.
    fn start(
        &mut self,
        ports: Vec<Option<PortState>>,
        pcap: Option<pcap::PcapSink>,
    ) -> io::Result<()> {
        self.plan = plan_gro(self.env.registry);
        record_gro(self.env.registry, &self.plan);
        for (slot, g) in self.plan.iter().enumerate() {
            if let (Some(g), Some(Some(p))) = (g, ports.get(slot)) {
                tracing::info!(port = %p.name, udp = g.udp, "GRO on ingress");
            }
        }
        if !self.shared {
            let owned: Vec<usize> = (0..ports.len()).filter(|&i| ports[i].is_some()).collect();
            let (w, waker, letters) = self.new_worker(ports, pcap)?;
            return self.spawn(w, waker, letters, owned, ("pvnet-switch".to_owned(), 0));
        }
        self.templates = ports
            .iter()
            .map(|p| p.as_ref().and_then(|p| p.sender_template().ok().flatten()))
            .collect();
        for (slot, port) in ports.into_iter().enumerate() {
            if let Some(port) = port {
                self.spawn_queues(slot, port)?;
            }
        }
        Ok(())
    }

    /// Shared mode: start a thread for every queue of `port`, in `slot`, each with a
    /// sending handle on every other port.
    fn spawn_queues(&mut self, slot: usize, port: PortState) -> io::Result<()> {
        let queues = port.queues.len();
        for part in port.split() {
            let (name, queue) = (thread_name(&part.name, part.queue, queues), part.queue);
            let mut mine = self.senders(slot, queue)?;
            if mine.len() <= slot {
                mine.resize_with(slot + 1, || None);
            }
            mine[slot] = Some(part);
            let (w, waker, letters) = self.new_worker(mine, None)?;
            self.spawn(w, waker, letters, vec![slot], (name, queue))?;
        }
        Ok(())
    }

    /// For the thread of `queue` of the port in `except`: a sending handle on every other
    /// port (it never sends to its own), by slot (shared mode), made from the ports'
    /// templates ([`PortState::sender`]).
    fn senders(&self, except: usize, queue: usize) -> io::Result<Vec<Option<PortState>>> {
        self.templates
            .iter()
            .enumerate()
            .map(|(slot, t)| match t {
                Some(t) if slot != except => t.sender(queue),
                _ => Ok(None),
            })
            .collect()
    }

    /// The threads that receive from `slot` (one per queue in shared mode), by index.
    fn owners(&self, slot: usize) -> Vec<usize> {
        (0..self.threads.len())
            .filter(|&t| self.threads[t].owned.contains(&slot))
            .collect()
    }

    /// Recompute which ports coalesce after the port set changed, and tell the threads
    /// whose ports changed.
    fn replan_gro(&mut self) {
        let new = plan_gro(self.env.registry);
        for (slot, g) in new.iter().enumerate() {
            let old = self.plan.get(slot).copied().flatten();
            if old == *g {
                continue;
            }
            let owners = self.owners(slot);
            let mut told = !owners.is_empty();
            for t in owners {
                let gro = g.map(IngressGro::new);
                told &= self.threads[t].tell(Command::SetGro { slot, gro });
            }
            if told {
                let name = lock_registry(self.env.registry)
                    .get(slot)
                    .and_then(|r| r.as_ref().map(|r| r.name.clone()))
                    .unwrap_or_default();
                match g {
                    Some(g) => tracing::info!(port = %name, udp = g.udp, "GRO on ingress"),
                    None => tracing::info!(port = %name, "GRO off on ingress"),
                }
            }
        }
        self.plan = new;
        record_gro(self.env.registry, &self.plan);
    }

    fn handle(&mut self, msg: Supervise) {
        match msg {
            Supervise::Add { port, reply } => {
                let r = self.add(port).map_err(|e| e.to_string());
                let _ = reply.send(r);
            }
            Supervise::Del { name, reply } => {
                let slot = lock_registry(self.env.registry)
                    .iter()
                    .position(|r| r.as_ref().is_some_and(|r| r.name == name));
                let r = match slot {
                    Some(slot) => {
                        self.remove(slot, Removal::Deleted);
                        Ok(())
                    }
                    None => Err(no_such_port(self.env.registry, &name)),
                };
                let _ = reply.send(r);
            }
            Supervise::Gone { slot, name, why } => {
                // The slot may have been emptied (and even reused) since it was sent.
                let same = lock_registry(self.env.registry)
                    .get(slot)
                    .is_some_and(|r| r.as_ref().is_some_and(|r| r.name == name));
                if same {
                    tracing::debug!(port = %name, "removing the port: {why}");
                    self.remove(slot, Removal::DeviceGone);
                }
            }
        }
    }

    /// Add a port while the switch runs.
    fn add(&mut self, port: NewPort) -> io::Result<usize> {
        let name = port.name.clone();
        let (slot, state) = register(self.env.registry, self.env.stats, port)?;
        if self.plan.len() <= slot {
            self.plan.resize(slot + 1, None);
        }
        let attached = match self.attach(slot, &name, state) {
            Ok(a) => a,
            Err(e) => {
                // Half attached (a thread could not be started, a handle not cloned) or
                // not at all (the device gives no second handle):
                // take it out again, so that no thread keeps a port the switch forgot.
                self.take_out(slot, &name);
                self.replan_gro();
                return Err(e);
            }
        };
        if !attached {
            tracing::warn!(port = %name, "a switch thread did not acknowledge the new port");
        }
        self.replan_gro();
        tracing::info!(port = %name, slot, "port added");
        Ok(slot)
    }

    /// Hand a new port in `slot` to the threads: in shared mode every thread gets a
    /// sending handle first, then the port's own threads (one per queue) start; else the
    /// one thread receives from it too. `Ok(false)` when a thread did not acknowledge.
    fn attach(&mut self, slot: usize, name: &str, state: PortState) -> io::Result<bool> {
        if self.shared {
            let template = state.sender_template()?.ok_or_else(|| {
                io::Error::other(format!(
                    "port {name}: its device gives no second handle for the other switch \
                     threads to send with, so it cannot join a running switch"
                ))
            })?;
            // Every thread learns to send to it first, then its own threads start.
            let mut ok = true;
            for t in &self.threads {
                let sender = template.sender(t.queue)?;
                ok &= t.tell(Command::Attach {
                    slot,
                    port: Box::new(sender.ok_or_else(|| io::Error::other("no sender"))?),
                    rx: None,
                });
            }
            if self.templates.len() <= slot {
                self.templates.resize_with(slot + 1, || None);
            }
            self.templates[slot] = Some(template);
            self.spawn_queues(slot, state)?;
            Ok(ok)
        } else {
            let batch = state.rx_batch(self.env.batch);
            let ack = match self.threads.first_mut() {
                Some(t) => {
                    t.owned.push(slot);
                    t.tell(Command::Attach {
                        slot,
                        port: Box::new(state),
                        rx: Some(Receive {
                            bufs: RecvBufs::new(batch, DEFAULT_SLOT_LEN),
                            gro: None,
                        }),
                    })
                }
                None => false,
            };
            Ok(ack)
        }
    }

    /// Remove the port in `slot`: nobody sends to it any more, its threads end (or its
    /// queues leave the one thread), every handle on it is closed, its addresses are
    /// forgotten and it is counted.
    fn remove(&mut self, slot: usize, cause: Removal) {
        let Some(record) = lock_registry(self.env.registry)
            .get(slot)
            .cloned()
            .flatten()
        else {
            return;
        };
        let final_counts = self
            .env
            .stats
            .snapshot()
            .into_iter()
            .find(|(n, _)| *n == record.name)
            .map(|(_, c)| c)
            .unwrap_or_default();
        self.take_out(slot, &record.name);
        self.env.stats.count_removed(cause);
        tracing::info!(
            port = %record.name,
            cause = cause.as_str(),
            rx = final_counts.rx_packets,
            tx = final_counts.tx_packets,
            drops = final_counts.drops_total(),
            "port removed"
        );
        self.replan_gro();
    }

    /// Take the port in `slot` out of every thread, the MAC table, the registry and the
    /// counters: its threads end (shared mode) or its queues leave the one thread, and
    /// every handle on it is closed.
    fn take_out(&mut self, slot: usize, name: &str) {
        if let Some(Some(r)) = lock_registry(self.env.registry).get(slot) {
            r.view.set_down();
        }
        if self.shared {
            let (gone, kept) = std::mem::take(&mut self.threads)
                .into_iter()
                .partition::<Vec<_>, _>(|t| t.owned.contains(&slot));
            self.threads = kept;
            // All of them stop at once; then each is waited for.
            for t in &gone {
                let (ack, _) = mpsc::channel();
                let _ = t.letters.send((Command::Stop, ack));
                t.waker.wake();
            }
            for t in gone {
                match t.handle.join() {
                    Ok((_, Err(e))) => tracing::warn!(port = %name, "port thread: {e}"),
                    Ok(_) => {}
                    Err(panic) => std::panic::resume_unwind(panic),
                }
                self.env.stats.remove_part(t.id);
            }
        } else if let Some(t) = self.threads.first_mut() {
            t.owned.retain(|&s| s != slot);
        }
        for t in &self.threads {
            t.tell(Command::Detach { slot });
        }
        if let Some(t) = self.templates.get_mut(slot) {
            *t = None;
        }
        flush_mac(self.env.mac, slot);
        if let Some(r) = lock_registry(self.env.registry).get_mut(slot) {
            *r = None;
        }
        if let Some(g) = self.plan.get_mut(slot) {
            *g = None;
        }
        self.env.stats.set_slot(slot, None);
    }

    /// Stop every thread and give back the ports (by slot, each with its counters summed
    /// over the threads), the capture, and the first error a thread met.
    fn finish(
        self,
    ) -> (
        Vec<Option<PortState>>,
        Option<pcap::PcapSink>,
        io::Result<()>,
    ) {
        for t in &self.threads {
            let (ack, _) = mpsc::channel();
            let _ = t.letters.send((Command::Stop, ack));
            t.waker.wake();
        }
        let mut workers = Vec::with_capacity(self.threads.len());
        let mut result = Ok(());
        for t in self.threads {
            match t.handle.join() {
                Ok((w, r)) => {
                    if let (Err(e), Ok(())) = (r, &result) {
                        result = Err(e);
                    }
                    workers.push(w);
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        let n = workers.iter().map(|w| w.ports.len()).max().unwrap_or(0);
        let mut totals = vec![PortCounters::default(); n];
        for w in &workers {
            for (t, p) in totals.iter_mut().zip(&w.ports) {
                if let Some(p) = p {
                    t.add(&p.counters);
                }
            }
        }
        // And what the threads of ports removed meanwhile sent to these.
        for (t, r) in totals.iter_mut().zip(self.env.stats.retired()) {
            t.add(&r);
        }
        // A port's queues, each from the thread that received from it (shared mode).
        let mut parts: Vec<Vec<PortState>> = (0..n).map(|_| Vec::new()).collect();
        let mut pcap = None;
        for mut w in workers {
            for &slot in &w.owned {
                if let Some(p) = w.ports.get_mut(slot).and_then(Option::take) {
                    parts[slot].push(p);
                }
            }
            if w.fwd.pcap.is_some() {
                pcap = w.fwd.pcap.take();
            }
        }
        let mut ports: Vec<Option<PortState>> = parts.into_iter().map(PortState::join).collect();
        let names = lock_registry(self.env.registry)
            .iter()
            .map(|r| r.as_ref().map(|r| r.name.clone()))
            .collect();
        for (p, t) in ports.iter_mut().zip(&totals) {
            if let Some(p) = p {
                p.counters = *t;
            }
        }
        self.env.stats.reset(names, vec![totals]);
        (ports, pcap, result)
    }
}

/// The error for a port name that is not in the switch: lists the ones that are.
fn no_such_port(registry: &Registry, name: &str) -> String {
    let names: Vec<String> = lock_registry(registry)
        .iter()
        .flatten()
        .map(|r| r.name.clone())
        .collect();
    if names.is_empty() {
        format!("no port named {name} (the switch has no ports)")
    } else {
        format!("no port named {name} (ports: {})", names.join(", "))
    }
}

/// Build a switch from port specs: open every port (see [`open::open_port`]).
pub fn build(cfg: SwitchConfig, specs: &[PortSpec]) -> Result<Switch, open::OpenError> {
    let mut sw = Switch::new(cfg).map_err(open::OpenError::Io)?;
    for spec in specs {
        let port = open::open_port(spec)?;
        sw.add_opened(NewPort::opened(spec, port))
            .map_err(open::OpenError::Io)?;
    }
    Ok(sw)
}

/// Stop flag plus a convenience to raise it.
pub fn stop_flag() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

#[cfg(test)]
mod tests {
    use super::thread_name;

    #[test]
    fn thread_names_say_port_and_queue_within_what_the_kernel_keeps() {
        assert_eq!(thread_name("tap0", 0, 1), "pvnet-tap0");
        assert_eq!(thread_name("tap0", 3, 4), "pvnet-tap0:3");
        assert_eq!(thread_name("/run/vm/net0.sock", 1, 2), "pvnet-net0.so:1");
        assert_eq!(thread_name("/run/vm/net0.sock", 0, 1), "pvnet-net0.sock");
        // Six bytes of the port's name fit, which would cut "é" (bytes 5 and 6) in two.
        assert_eq!(thread_name("abcdeéfgh", 12, 16), "pvnet-abcde:12");
        for q in [0, 9, 15] {
            let name = thread_name("a-very-long-port-name", q, 16);
            assert!(name.len() <= 15, "{name}");
            assert!(name.ends_with(&format!(":{q}")), "{name}");
        }
    }
}
