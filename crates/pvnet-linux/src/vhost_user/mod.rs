//! vhost-user-net ports: pvnet as the host side of a VM's virtio-net device.
//!
//! A frontend (QEMU, cloud-hypervisor, crosvm, DPDK's `virtio_user`) connects on a unix
//! socket and hands over the guest's memory and, per queue, the ring addresses and the
//! kick/call eventfds. The protocol is rust-vmm's (`vhost`, `vhost-user-backend`); the
//! rings are `virtio-queue`'s, guest memory `vm-memory`'s, so every access to the guest
//! is bounds-checked by them. [`ring`] reads and fills descriptor chains.
//!
//! Threads: one serving thread per port accepts frontends one after the other (a guest
//! that shuts down, or a QEMU that is killed, leaves the socket ready for the next) and
//! runs the vhost-user protocol with it. The guest's kicks reach the switch's thread for
//! the queue pair directly: the fd the switch waits on is an epoll set of the pair's
//! transmit kick and a waker (see [`relay`] for why `vhost-user-backend`'s worker is kept
//! out of it). The switch's thread for each queue pair drains the pair's transmit queue
//! into its receive buffers ([`Port::recv_batch`]): a super-frame's headers are copied
//! there and its payload is left in guest memory ([`RecvBufs::external`]), its chain given
//! back to the guest once the switch has forwarded the batch. Any switch thread fills a
//! receive queue ([`Port::send`], under the ring's lock; each sender handle its own
//! pair's, the handles taking the pairs in turn), so a super-frame goes from one guest's
//! memory into another's with one copy.
//!
//! What the driver acknowledges is the port's feature set for the switch
//! ([`Features::from_virtio_guest`]): a guest without `GUEST_TSO4` is sent segments, one
//! without `GUEST_CSUM` complete checksums. Until a driver has acknowledged anything the
//! port takes what it offers, and frames sent while no frontend is there are refused with
//! [`SendError::NoCarrier`].

#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod fuzz;
#[cfg(feature = "testing")]
pub mod guest;
mod relay;
pub mod ring;

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use pvnet_core::offload::features::{virtio_net, Features};
use pvnet_core::wire::Start;
use rustix::event::epoll;
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::Listener;
use vhost_user_backend::{VhostUserBackend, VhostUserDaemon, VringMutex, VringState, VringT};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use crate::epoll::Waker;
use crate::port::{
    gather, Carrier, GuestErrors, Keep, LateDrops, Port, RecvBufs, SendError, MAX_IOV,
};

use ring::{ChainError, RxError, Used};

/// The virtio_net_hdr the switch reads and writes on this port: the 12-byte v1 header
/// (a driver without VERSION_1 and MRG_RXBUF uses 10 bytes; the port converts).
pub const HDR_LEN: usize = 12;

/// Largest ring a driver may set up (QEMU's `rx_queue_size`/`tx_queue_size` go to 1024).
pub const MAX_QUEUE_SIZE: usize = 1024;

/// Default MTU told to the guest (when `mtu=` is not given).
pub const DEFAULT_MTU: u16 = 1500;

/// Bytes of a guest's super-frame copied into the switch's slot, the rest left in guest
/// memory: room for every header a frame may carry (Ethernet, two VLAN tags, IPv6 with
/// extension headers, TCP with options), so the switch validates and forwards it from
/// the copy while its payload goes from guest memory to the destination.
pub const ZERO_COPY_HEAD: usize = 256;

/// Tokens in a pair's wait set (only its readability is used, never the tokens).
const WAKER: u64 = 0;
const KICK: u64 = 1;

/// An epoll set that is never waited on itself: it is readable while one of its fds is,
/// so it stands for them in the switch's own set.
struct WaitSet(OwnedFd);

impl WaitSet {
    fn new() -> io::Result<WaitSet> {
        Ok(WaitSet(epoll::create(epoll::CreateFlags::CLOEXEC)?))
    }

    fn add(&self, fd: impl AsFd, token: u64) -> io::Result<()> {
        let data = epoll::EventData::new_u64(token);
        Ok(epoll::add(&self.0, fd, data, epoll::EventFlags::IN)?)
    }

    fn delete(&self, fd: impl AsFd) -> io::Result<()> {
        Ok(epoll::delete(&self.0, fd)?)
    }
}

type Gm = GuestMemoryAtomic<GuestMemoryMmap>;
type Vring = VringMutex<Gm>;

/// How a vhost-user port is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhostUserConfig {
    /// The unix socket.
    pub path: PathBuf,
    /// Connect to a frontend that listens on `path`, instead of listening there.
    pub client: bool,
    /// Queue pairs (the guest enables them with `ethtool -L eth0 combined N`).
    pub pairs: u16,
    /// Offloads offered to the driver, both directions ([`Features::to_virtio_net`]).
    pub offload: Features,
    /// MAC address in the config space.
    pub mac: [u8; 6],
    /// MTU in the config space.
    pub mtu: u16,
    /// Busy-poll the guest's transmit rings instead of waiting for its kicks: the port's
    /// thread spins while a guest is connected (a core of its own), and the guest never
    /// needs to kick.
    pub poll: bool,
}

impl VhostUserConfig {
    /// The virtio-net feature bits offered to a driver.
    pub fn offered(&self) -> u64 {
        use virtio_net::*;
        let mut bits = self.offload.to_virtio_net()
            | VERSION_1
            | MRG_RXBUF
            | RING_F_EVENT_IDX
            | RING_F_INDIRECT_DESC
            | MTU
            | MAC
            | STATUS
            | IN_ORDER
            | PROTOCOL_FEATURES;
        if self.pairs > 1 {
            bits |= MQ;
        }
        bits
    }

    /// The `virtio_net_config` structure (mac, status, max_virtqueue_pairs, mtu).
    fn config_space(&self) -> [u8; 12] {
        let mut c = [0u8; 12];
        c[..6].copy_from_slice(&self.mac);
        // VIRTIO_NET_S_LINK_UP
        c[6..8].copy_from_slice(&1u16.to_le_bytes());
        c[8..10].copy_from_slice(&self.pairs.to_le_bytes());
        c[10..12].copy_from_slice(&self.mtu.to_le_bytes());
        c
    }
}

/// Chains and rings refused, by cause, since the port was opened.
#[derive(Debug, Default)]
pub struct ChainErrors {
    pub broken: AtomicU64,
    pub out_of_memory: AtomicU64,
    pub too_long: AtomicU64,
    pub wrong_direction: AtomicU64,
    pub short: AtomicU64,
    pub ring: AtomicU64,
}

impl ChainErrors {
    fn count(&self, e: &ChainError) {
        let c = match e {
            ChainError::Broken { .. } => &self.broken,
            ChainError::OutOfMemory { .. } => &self.out_of_memory,
            ChainError::TooLong { .. } => &self.too_long,
            ChainError::WrongDirection { .. } => &self.wrong_direction,
            ChainError::Short { .. } => &self.short,
            ChainError::Ring(_) => &self.ring,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Every cause with its count, for tests and reports.
    pub fn snapshot(&self) -> [(&'static str, u64); 6] {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("broken_chain", l(&self.broken)),
            ("outside_memory", l(&self.out_of_memory)),
            ("too_long", l(&self.too_long)),
            ("wrong_direction", l(&self.wrong_direction)),
            ("short", l(&self.short)),
            ("ring_broken", l(&self.ring)),
        ]
    }
}

impl GuestErrors for Shared {
    fn by_cause(&self) -> Vec<(&'static str, u64)> {
        self.errors.snapshot().to_vec()
    }
}

/// The connected frontend's rings and memory, as the switch's threads use them.
#[derive(Default)]
struct Link {
    mem: Option<Gm>,
    /// Every queue's ring (rx0, tx0, rx1, tx1, …), once the first kick showed them.
    vrings: Vec<Vring>,
    /// Every queue's kick eventfd, as the frontend gave it (non-blocking); a transmit
    /// queue's is in its pair's wait set.
    kicks: Vec<Option<OwnedFd>>,
}

/// What the serving thread, the backend and every handle on the port share.
struct Shared {
    name: String,
    cfg: VhostUserConfig,
    offered: u64,
    /// One per queue pair: the port has work without a kick (more frames than a batch
    /// took, polling, rings just handed over).
    ready: Vec<Waker>,
    /// One per queue pair: what the switch waits on, the pair's `ready` (token
    /// [`WAKER`]) and its transmit queue's kick ([`KICK`]).
    waits: Vec<WaitSet>,
    link: RwLock<Link>,
    /// Features the driver acknowledged (0: none yet).
    acked: AtomicU64,
    /// What the switch may send the guest now ([`Features`] bits).
    tx_features: AtomicU16,
    /// Queues found inconsistent; nothing more is done with them until the driver resets
    /// them (the frontend stops the ring) or the next connection.
    broken: Vec<AtomicBool>,
    /// Per queue, how often the frontend stopped the ring (`GET_VRING_BASE`, a driver
    /// reset): chains taken before a stop are not the restarted ring's to return.
    ring_gen: Vec<AtomicU32>,
    /// Per queue, changed under its ring's lock: used elements written but the used index
    /// not yet moved, and where the index stood before them.
    unpublished: Vec<AtomicBool>,
    published: Vec<AtomicU16>,
    errors: ChainErrors,
    /// Transmit chains refused since the switch last asked ([`Port::take_rx_drops`]).
    rx_refused: AtomicU64,
    /// Frontends that connected.
    connects: AtomicU64,
    /// Whether one is connected now, and how often one went away (shared with the
    /// switch's other threads).
    carrier: Arc<Carrier>,
    /// The queue pair the next sender handle fills ([`Port::try_clone_sender`]), modulo
    /// the pairs: the switch's threads spread over the guest's receive queues.
    next_pair: AtomicUsize,
}

impl Shared {
    fn read_link(&self) -> std::sync::RwLockReadGuard<'_, Link> {
        self.link.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_link(&self) -> std::sync::RwLockWriteGuard<'_, Link> {
        self.link.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_acked(&self, acked: u64) {
        self.acked.store(acked, Ordering::Relaxed);
        let f = if acked == 0 {
            Features::from_virtio_guest(self.offered)
        } else {
            Features::from_virtio_guest(acked & self.offered)
        };
        self.tx_features.store(f.bits(), Ordering::Relaxed);
    }

    fn attach(&self, mem: Gm) {
        let mut link = self.write_link();
        link.mem = Some(mem);
        link.vrings.clear();
        for b in self.broken.iter().chain(&self.unpublished) {
            b.store(false, Ordering::Relaxed);
        }
        self.connects.fetch_add(1, Ordering::Relaxed);
        self.carrier.set_up();
    }

    fn detach(&self) {
        let mut link = self.write_link();
        link.mem = None;
        link.vrings.clear();
        for (q, k) in link.kicks.iter_mut().enumerate() {
            if let (Some(fd), Some(w)) = (k.take(), self.tx_wait(q)) {
                let _ = w.delete(&fd);
            }
        }
        drop(link);
        self.set_acked(0);
        self.carrier.set_down();
    }

    /// The wait set a kick of queue `q` belongs in: its pair's, for a transmit queue.
    fn tx_wait(&self, q: usize) -> Option<&WaitSet> {
        if q % 2 == 1 {
            self.waits.get(q / 2)
        } else {
            None
        }
    }

    /// Keep queue `q`'s kick eventfd for the switch's thread and return the stand-in the
    /// handler gets (see [`relay`]): an eventfd nobody signals.
    fn take_kick(&self, q: usize, kick: OwnedFd) -> io::Result<OwnedFd> {
        use rustix::event::{eventfd, EventfdFlags};
        if q >= self.broken.len() {
            // The handler refuses the queue number.
            return Ok(kick);
        }
        let cannot = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("queue {q}'s kick fd cannot be waited on: {e}"),
            )
        };
        // The switch's thread reads it to clear it and must never block there.
        rustix::io::ioctl_fionbio(&kick, true).map_err(|e| cannot(e.into()))?;
        let mut link = self.write_link();
        if link.kicks.len() <= q {
            link.kicks.resize_with(q + 1, || None);
        }
        if let Some(w) = self.tx_wait(q) {
            if let Some(old) = link.kicks[q].take() {
                let _ = w.delete(&old);
            }
            w.add(&kick, KICK).map_err(cannot)?;
        }
        link.kicks[q] = Some(kick);
        drop(link);
        let stand_in = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(stand_in)
    }

    /// What a publish of queue `q`'s used ring found: interrupt the driver if it asked
    /// for it, mark the queue broken if the ring was unwritable.
    fn after_publish(&self, q: usize, st: &VringState<Gm>, r: Result<bool, ChainError>) {
        match r {
            Ok(true) => {
                let _ = st.signal_used_queue();
            }
            Ok(false) => {}
            Err(e) => self.break_queue(q, &e),
        }
    }

    /// Whether a transmit batch goes back to the driver as one used element: it acked
    /// VIRTIO_F_IN_ORDER ([`ring::write_used`]).
    fn tx_in_order(&self) -> bool {
        self.acked.load(Ordering::Relaxed) & virtio_net::IN_ORDER != 0
    }

    /// Before writing into receive queue `q` after a publish: note where its used index
    /// stands (the flush publishes from there), and ask the driver not to kick it, once
    /// per batch (nothing waits for those kicks: a frame that finds no buffer is dropped,
    /// as a tap does).
    fn begin_rx_writes(&self, q: usize, queue: &mut Queue, mem: &GuestMemoryMmap) {
        if !self.unpublished[q].load(Ordering::Relaxed) {
            self.published[q].store(queue.next_used(), Ordering::Relaxed);
            let _ = queue.disable_notification(mem);
        }
    }

    /// After writing frames into receive queue `q`: put `used` into its used ring, to be
    /// published at the next flush (once per batch). Returns whether there is something
    /// to publish; a used ring that cannot be written breaks the queue.
    fn end_rx_writes(
        &self,
        q: usize,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
        used: &mut Used,
    ) -> bool {
        if used.is_empty() {
            return false;
        }
        // Every element: a receive buffer's length is the frame's.
        match ring::write_used(queue, mem, used, false) {
            Ok(()) => {
                self.unpublished[q].store(true, Ordering::Relaxed);
                true
            }
            Err(e) => {
                self.break_queue(q, &e);
                false
            }
        }
    }

    /// Mark queue `q` broken after `e`, once.
    fn break_queue(&self, q: usize, e: &ChainError) {
        self.errors.count(e);
        if let Some(b) = self.broken.get(q) {
            if !b.swap(true, Ordering::Relaxed) {
                tracing::warn!(port = %self.name, queue = q, "{e}");
            }
        }
    }

    /// The frontend stopped ring `q` (the driver resets the device, e.g. a guest
    /// rebooting): it starts over clean when it is set up again.
    fn stop_ring(&self, q: usize) {
        if let Some(g) = self.ring_gen.get(q) {
            g.fetch_add(1, Ordering::AcqRel);
        }
        for f in [self.broken.get(q), self.unpublished.get(q)]
            .into_iter()
            .flatten()
        {
            f.store(false, Ordering::Relaxed);
        }
    }

    fn is_broken(&self, q: usize) -> bool {
        self.broken.get(q).is_none_or(|b| b.load(Ordering::Relaxed))
    }
}

/// A mutex's guard, poisoned or not: the state behind these locks stays consistent even if
/// a thread panicked while holding one.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The vhost-user backend of one connection: answers the protocol's questions from the
/// port's config and relays kicks. A new one is made for every frontend, so nothing of
/// the last connection (ownership, acked features, rings) carries over.
struct NetBackend {
    shared: Arc<Shared>,
    /// Tells `vhost-user-backend`'s worker thread to end when the frontend is gone.
    exit: Mutex<Option<EventNotifier>>,
    /// The rings were handed to the switch's threads.
    captured: AtomicBool,
}

impl NetBackend {
    fn stop_worker(&self) {
        if let Some(n) = lock(&self.exit).take() {
            let _ = n.notify();
        }
    }
}

impl VhostUserBackend for NetBackend {
    type Bitmap = ();
    type Vring = Vring;

    fn num_queues(&self) -> usize {
        2 * usize::from(self.shared.cfg.pairs)
    }

    fn max_queue_size(&self) -> usize {
        MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        self.shared.offered
    }

    fn acked_features(&self, features: u64) {
        self.shared.set_acked(features);
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        let mut p = VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
            | VhostUserProtocolFeatures::CONFIG;
        if self.shared.cfg.pairs > 1 {
            p |= VhostUserProtocolFeatures::MQ;
        }
        p
    }

    fn stop_vring(&self, queue_index: u32) -> io::Result<()> {
        self.shared.stop_ring(queue_index as usize);
        Ok(())
    }

    fn set_event_idx(&self, _enabled: bool) {
        // The handler sets it on every ring; `ring::publish_used` reads it from there.
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let c = self.shared.cfg.config_space();
        let start = (offset as usize).min(c.len());
        let end = start.saturating_add(size as usize).min(c.len());
        c[start..end].to_vec()
    }

    fn update_memory(&self, _mem: Gm) -> io::Result<()> {
        // The same atomic the port reads through: it sees the new table at once.
        Ok(())
    }

    fn queues_per_thread(&self) -> Vec<u64> {
        // One worker relays every queue's kick; it does nothing else.
        vec![u64::MAX >> (64 - 2 * usize::from(self.shared.cfg.pairs).min(32))]
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        let (c, n) =
            new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC).ok()?;
        let keep = n.try_clone().ok()?;
        *lock(&self.exit) = Some(keep);
        Some((c, n))
    }

    fn handle_event(
        &self,
        device_event: u16,
        _evset: EventSet,
        vrings: &[Vring],
        _thread_id: usize,
    ) -> io::Result<()> {
        if !self.captured.swap(true, Ordering::AcqRel) {
            self.shared.write_link().vrings = vrings.to_vec();
        }
        let q = usize::from(device_event);
        if q % 2 == 1 {
            if let Some(w) = self.shared.ready.get(q / 2) {
                w.wake();
            }
        } else if q < vrings.len() {
            // Receive buffers posted: a port that was short of them may send again; the
            // transmit queue may also have been kicked before the rings were handed over.
            for w in &self.shared.ready {
                w.wake();
            }
        }
        Ok(())
    }
}

/// Stops the serving thread when the last handle on the port goes.
struct Server {
    stop: Arc<Waker>,
    stopping: Arc<AtomicBool>,
    conn: Arc<Mutex<Option<vhost_user_backend::ShutdownHandle>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        self.stop.wake();
        if let Some(h) = lock(&self.conn).take() {
            h.shutdown();
        }
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

/// One queue pair of a vhost-user port, as the switch drives it.
pub struct VhostUserPort {
    shared: Arc<Shared>,
    server: Arc<Server>,
    pair: usize,
    used: Used,
    /// The receive queues (a bit each) this handle sent frames on whose used index is not
    /// published yet.
    unflushed: u32,
    /// This handle left its pair's `ready` signalled, to be called again without a kick.
    awake: bool,
    /// Transmit chains of the last batch whose payload the switch read in place, returned
    /// to the guest at the next batch.
    held: Used,
    /// The ring's generation ([`Shared::stop_ring`]) when `held` was taken.
    held_gen: u32,
    /// Wire-sized frames sent since the last flush, written into the guest at the flush.
    staged: Staged,
    /// Staged frames that could not be written when the area filled up or a big frame
    /// came, reported at the next flush.
    late: LateDrops,
}

/// Longest frame, virtio_net_hdr included, that [`VhostUserPort::send`] stages for the
/// next flush: wire-sized ones. Super-frames are written at once, from where they lie.
const STAGE_FRAME_MAX: usize = 2048;
/// Room of a handle's staging area: a receive batch of wire-sized frames.
const STAGE_BYTES: usize = 128 << 10;
/// Frames a staging area holds.
const STAGE_FRAMES: usize = 128;

/// Small frames (with the header the guest reads) copied here by [`Port::send`] and
/// written into the guest's receive queue together by [`Port::flush`]. Writing a frame
/// takes the ring's lock, and the lock's release waits for every store into guest memory
/// before it: a batch of 64-byte frames spent a fifth of its time there. A small frame
/// costs less to copy once more than to lock for on its own.
#[derive(Debug)]
struct Staged {
    bytes: Vec<u8>,
    /// Per frame: where its header ends and where it ends in `bytes` (it starts where the
    /// one before ended).
    frames: Vec<(usize, usize)>,
}

impl Staged {
    fn new() -> Staged {
        Staged {
            bytes: Vec::with_capacity(STAGE_BYTES),
            frames: Vec::with_capacity(STAGE_FRAMES),
        }
    }

    fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    fn has_room(&self, len: usize) -> bool {
        self.frames.len() < STAGE_FRAMES && self.bytes.len() + len <= STAGE_BYTES
    }

    /// Stage `frame` behind the first `hdr_len` bytes of the header `hdr` (12 or fewer).
    fn push(&mut self, hdr: GuestHdr, hdr_len: usize, frame: &pvnet_core::frame::Frame<'_>) {
        if hdr_len == HDR_LEN {
            // Two stores straight from the registers (see `GuestHdr`).
            self.bytes.extend_from_slice(&hdr.lo.to_le_bytes());
            self.bytes.extend_from_slice(&hdr.hi.to_le_bytes());
        } else {
            self.bytes
                .extend_from_slice(hdr.to_bytes().get(..hdr_len).unwrap_or_default());
        }
        let hdr_end = self.bytes.len();
        frame.append_to(&mut self.bytes);
        self.frames.push((hdr_end, self.bytes.len()));
    }

    /// The `j`th frame as (header, frame).
    fn get(&self, j: usize) -> (&[u8], &[u8]) {
        let start = j
            .checked_sub(1)
            .map_or(0, |i| self.frames.get(i).map_or(0, |f| f.1));
        let (hdr_end, end) = self.frames.get(j).copied().unwrap_or((start, start));
        (&self.bytes[start..hdr_end], &self.bytes[hdr_end..end])
    }

    /// Each frame as (header, frame).
    fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut start = 0;
        self.frames.iter().map(move |&(hdr_end, end)| {
            let f = (&self.bytes[start..hdr_end], &self.bytes[hdr_end..end]);
            start = end;
            f
        })
    }

    /// Count the frames from the `from`th on as dropped: in `cause` (one of a
    /// [`LateDrops`]' counts), their lengths in `bytes`.
    fn drop_from(&self, from: usize, cause: &mut u64, bytes: &mut u64) {
        for (_, f) in self.iter().skip(from) {
            *cause += 1;
            *bytes += f.len() as u64;
        }
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.frames.clear();
    }
}

/// The 12-byte virtio_net header a frame goes to the guest with, as its two
/// little-endian words: bytes 0..8 and 8..12. It travels in registers from the header the
/// switch wrote to its copy in the staging area. Copied as bytes, 12 bytes are loaded as
/// two overlapping 8-byte words, each spanning stores it cannot be forwarded from, and
/// each waits until those stores, and every store into guest memory before them, reach
/// the cache.
#[derive(Clone, Copy)]
struct GuestHdr {
    lo: u64,
    hi: u32,
}

impl GuestHdr {
    /// The first 12 bytes of `vnet_hdr` (zeros past its end) with `num_buffers` 1: a
    /// frame staged here fits one buffer, and merged buffers say so.
    fn new(vnet_hdr: &[u8]) -> GuestHdr {
        let one = 1u32 << 16;
        if let (Some(lo), Some(csum_offset)) = (
            vnet_hdr.first_chunk::<8>(),
            vnet_hdr.get(8..).and_then(|r| r.first_chunk::<2>()),
        ) {
            return GuestHdr {
                lo: u64::from_le_bytes(*lo),
                hi: u32::from(u16::from_le_bytes(*csum_offset)) | one,
            };
        }
        let mut b = [0u8; HDR_LEN];
        let l = vnet_hdr.len().min(HDR_LEN);
        b[..l].copy_from_slice(&vnet_hdr[..l]);
        let [b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, ..] = b;
        GuestHdr {
            lo: u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]),
            hi: u32::from(u16::from_le_bytes([b8, b9])) | one,
        }
    }

    fn to_bytes(self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[..8].copy_from_slice(&self.lo.to_le_bytes());
        b[8..].copy_from_slice(&self.hi.to_le_bytes());
        b
    }
}

impl std::fmt::Debug for VhostUserPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VhostUserPort")
            .field("name", &self.shared.name)
            .field("path", &self.shared.cfg.path)
            .field("pair", &self.pair)
            .finish()
    }
}

/// Why a vhost-user port could not be opened.
fn refuse(path: &Path, why: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("vhost-user socket {}: {why}", path.display()))
}

impl VhostUserPort {
    /// Open the port: listen on (or, with `client`, connect to) `cfg.path` from a serving
    /// thread, and return one handle per queue pair. A path where another backend is
    /// listening is refused; a stale socket left by a backend that died is replaced; a
    /// path that is not a socket is never touched.
    pub fn open(name: &str, cfg: VhostUserConfig) -> io::Result<Vec<VhostUserPort>> {
        if cfg.pairs == 0 || cfg.pairs > 16 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "vhost-user port {name}: queues={} (1 to 16 pairs)",
                    cfg.pairs
                ),
            ));
        }
        let listener = if cfg.client {
            None
        } else {
            Some(listen(&cfg.path)?)
        };
        let pairs = usize::from(cfg.pairs);
        let offered = cfg.offered();
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            offered,
            ready: (0..pairs)
                .map(|_| Waker::new())
                .collect::<io::Result<_>>()?,
            waits: (0..pairs)
                .map(|_| WaitSet::new())
                .collect::<io::Result<_>>()?,
            link: RwLock::new(Link::default()),
            acked: AtomicU64::new(0),
            tx_features: AtomicU16::new(Features::from_virtio_guest(offered).bits()),
            broken: (0..2 * pairs).map(|_| AtomicBool::new(false)).collect(),
            ring_gen: (0..2 * pairs).map(|_| AtomicU32::new(0)).collect(),
            unpublished: (0..2 * pairs).map(|_| AtomicBool::new(false)).collect(),
            published: (0..2 * pairs).map(|_| AtomicU16::new(0)).collect(),
            errors: ChainErrors::default(),
            rx_refused: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            carrier: Arc::new(Carrier::default()),
            next_pair: AtomicUsize::new(0),
            cfg,
        });
        for (w, r) in shared.waits.iter().zip(&shared.ready) {
            w.add(r, WAKER)?;
        }
        let stop = Arc::new(Waker::new()?);
        let stopping = Arc::new(AtomicBool::new(false));
        let conn = Arc::new(Mutex::new(None));
        let thread = {
            let (shared, stop, stopping, conn) =
                (shared.clone(), stop.clone(), stopping.clone(), conn.clone());
            std::thread::Builder::new()
                .name(format!("vhost-user {name}"))
                .spawn(move || serve(&shared, listener, &stop, &stopping, &conn))?
        };
        let server = Arc::new(Server {
            stop,
            stopping,
            conn,
            thread: Mutex::new(Some(thread)),
        });
        Ok((0..pairs)
            .map(|pair| VhostUserPort {
                shared: shared.clone(),
                server: server.clone(),
                pair,
                used: Used::with_capacity(MAX_QUEUE_SIZE),
                unflushed: 0,
                awake: false,
                held: Used::with_capacity(MAX_QUEUE_SIZE),
                held_gen: 0,
                staged: Staged::new(),
                late: LateDrops::default(),
            })
            .collect())
    }

    /// Whether a frontend is connected.
    pub fn is_connected(&self) -> bool {
        self.shared.carrier.is_up()
    }

    /// Frontends that connected and that went away since the port was opened.
    pub fn connections(&self) -> (u64, u64) {
        (
            self.shared.connects.load(Ordering::Relaxed),
            self.shared.carrier.losses(),
        )
    }

    /// The virtio-net features the driver acknowledged (0 before it did).
    pub fn acked_features(&self) -> u64 {
        self.shared.acked.load(Ordering::Relaxed)
    }

    /// Chains and rings refused, by cause.
    pub fn chain_errors(&self) -> &ChainErrors {
        &self.shared.errors
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.shared.cfg.path
    }

    /// Give the guest back the chains held while the switch read their payload in place.
    fn publish_held(&mut self, st: &mut VringState<Gm>, mem: &GuestMemoryMmap, q: usize) {
        if self.held.is_empty() {
            return;
        }
        let restarted = self.shared.ring_gen[q].load(Ordering::Acquire) != self.held_gen;
        if restarted || !usable(st) {
            // The driver reset the ring meanwhile: these chains are no longer its.
            self.held.clear();
            return;
        }
        let r = ring::publish_used(
            st.get_queue_mut(),
            mem,
            &mut self.held,
            self.shared.tx_in_order(),
        );
        self.shared.after_publish(q, st, r);
    }

    /// Write the staged frames now (the area is full, or a bigger frame must not overtake
    /// them); what cannot go is reported at the flush.
    fn spill_staged(&mut self) {
        let late = self.write_staged();
        self.late.add(late);
    }

    /// Write the staged frames into the guest's receive queue, under one lock of its ring,
    /// used elements written but not published (the flush does that). What cannot go is
    /// dropped and returned by cause.
    fn write_staged(&mut self) -> LateDrops {
        let mut late = LateDrops::default();
        if self.staged.is_empty() {
            return late;
        }
        let shared = self.shared.clone();
        let link = shared.read_link();
        let Some((q, gm, mut st)) = rx_ring(&shared, &link, self.pair) else {
            self.staged
                .drop_from(0, &mut late.no_carrier, &mut late.bytes);
            self.staged.clear();
            return late;
        };
        let mem = gm.memory();
        let queue = st.get_queue_mut();
        shared.begin_rx_writes(q, queue, &mem);
        let mergeable = shared.acked.load(Ordering::Relaxed) & virtio_net::MRG_RXBUF != 0;
        let staged = u16::try_from(self.staged.frames.len()).unwrap_or(u16::MAX);
        let map = ring::HostMap::of(&*mem);
        ring::prefetch_chains(queue, &map, staged, true);
        let mut avail = match ring::Avail::new(&mut *queue, &*mem, &map) {
            Ok(a) => a,
            Err(e) => {
                shared.break_queue(q, &e);
                self.staged
                    .drop_from(0, &mut late.no_carrier, &mut late.bytes);
                self.staged.clear();
                return late;
            }
        };
        let hdr_len = self.guest_hdr_len();
        // Frames that each fit the first buffer of their chain, and where: written
        // together once the chains are taken.
        let mut whole: [Option<(usize, ring::WholeBuffer<'_>)>; STAGE_FRAMES] =
            [None; STAGE_FRAMES];
        let mut n_whole = 0;
        for (i, (hdr, f)) in self.staged.iter().enumerate() {
            if hdr.len() != hdr_len {
                // Staged for a driver that negotiated another header (a new connection
                // came in between): not this one's to read.
                late.no_carrier += 1;
                late.bytes += f.len() as u64;
                continue;
            }
            let len = hdr.len() + f.len();
            if let Some(slot) = whole.get_mut(n_whole) {
                if let Some((head, buf)) = avail.as_mut().and_then(|a| a.take_whole(len)) {
                    *slot = Some((i, buf));
                    n_whole += 1;
                    self.used.push(head, len as u32);
                    continue;
                }
            }
            let mut res = Err(RxError::NoBuffers);
            // Once more with a fresh reading of the avail index when this one ran out.
            for fresh in [false, true] {
                if fresh {
                    avail = None;
                    avail = match ring::Avail::new(&mut *queue, &*mem, &map) {
                        Ok(a) => a,
                        Err(e) => {
                            res = Err(RxError::Chain(e));
                            break;
                        }
                    };
                }
                let Some(a) = avail.as_mut() else {
                    continue;
                };
                res = ring::write_frame_from(a, hdr, &[IoSlice::new(f)], mergeable, &mut self.used);
                if res != Err(RxError::NoBuffers) {
                    break;
                }
            }
            for e in self.used.take_refused() {
                shared.errors.count(&e);
            }
            match res {
                Ok(()) => {}
                Err(RxError::NoBuffers) => {
                    // The ring is empty: so it is for the frames after this one.
                    self.staged.drop_from(i, &mut late.busy, &mut late.bytes);
                    break;
                }
                Err(RxError::TooBig { .. }) => {
                    late.too_big += 1;
                    late.bytes += f.len() as u64;
                }
                Err(RxError::Chain(e)) => {
                    shared.break_queue(q, &e);
                    self.staged
                        .drop_from(i, &mut late.no_carrier, &mut late.bytes);
                    break;
                }
            }
        }
        for (i, buf) in whole[..n_whole].iter().flatten() {
            let (hdr, f) = self.staged.get(*i);
            buf.write(hdr, f);
        }
        self.staged.clear();
        if shared.end_rx_writes(q, st.get_queue_mut(), &mem, &mut self.used) {
            self.unflushed |= 1 << q;
        }
        late
    }

    /// Nothing to do on transmit queue `q` until the next kick or wake-up: clear both.
    fn sleep(&mut self, link: &Link, q: usize) {
        self.shared.ready[self.pair].drain();
        self.awake = false;
        if let Some(Some(kick)) = link.kicks.get(q) {
            let mut buf = [0u8; 8];
            let _ = rustix::io::read(kick, &mut buf);
        }
    }

    /// Bytes of header the driver uses: 12 with VERSION_1 or MRG_RXBUF, 10 for a legacy
    /// driver without merged buffers.
    fn guest_hdr_len(&self) -> usize {
        let acked = self.shared.acked.load(Ordering::Relaxed);
        if acked & (virtio_net::VERSION_1 | virtio_net::MRG_RXBUF) == 0 && acked != 0 {
            10
        } else {
            HDR_LEN
        }
    }
}

/// The listening socket and the file's identity (to remove it at the end only if it is
/// still ours).
struct Listening {
    listener: UnixListener,
    inode: (u64, u64),
}

/// Bind the listening socket, after checking nobody serves on it.
fn listen(path: &Path) -> io::Result<Listening> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(refuse(path, "exists and is not a socket; not replacing it"));
        }
        Ok(_) => {
            if UnixStream::connect(path).is_ok() {
                return Err(refuse(
                    path,
                    "another backend is listening on it (is a pvnet switch already running?)",
                ));
            }
            // A stale socket of a backend that died: replaced below.
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(refuse(path, e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(refuse(
                path,
                format_args!("directory {} does not exist", dir.display()),
            ));
        }
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(|e| refuse(path, e))?;
    let m = std::fs::metadata(path).map_err(|e| refuse(path, e))?;
    Ok(Listening {
        listener,
        inode: (m.dev(), m.ino()),
    })
}

/// Remove the socket file if it is still the one bound at `inode`.
fn unlink_if_ours(path: &Path, inode: (u64, u64)) {
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if (m.dev(), m.ino()) == inode {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Wait until `fd` is readable or `stop` fires (or `timeout` passes): true if `fd` is.
fn wait_readable(fd: BorrowedFd<'_>, stop: &Waker, timeout: Option<Duration>) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = [
        PollFd::new(&fd, PollFlags::IN),
        PollFd::new(stop, PollFlags::IN),
    ];
    let ts = timeout.map(|t| Timespec {
        tv_sec: t.as_secs() as _,
        tv_nsec: t.subsec_nanos() as _,
    });
    match poll(&mut fds, ts.as_ref()) {
        Ok(_) => {
            !fds[1].revents().contains(PollFlags::IN) && fds[0].revents().contains(PollFlags::IN)
        }
        Err(_) => false,
    }
}

/// The serving thread: one frontend after the other until the port is closed.
fn serve(
    shared: &Arc<Shared>,
    listener: Option<Listening>,
    stop: &Waker,
    stopping: &AtomicBool,
    conn: &Mutex<Option<vhost_user_backend::ShutdownHandle>>,
) {
    let path = shared.cfg.path.clone();
    let inode = listener.as_ref().map(|l| l.inode);
    serve_frontends(shared, listener.as_ref(), stop, stopping, conn);
    if let Some(inode) = inode {
        unlink_if_ours(&path, inode);
    }
}

/// The next frontend: accepted on the listener, or (client mode) connected to. `None`
/// when the port is being closed.
fn next_frontend(
    shared: &Shared,
    listener: Option<&Listening>,
    stop: &Waker,
    stopping: &AtomicBool,
) -> Option<UnixStream> {
    let path = &shared.cfg.path;
    let mut waiting_logged = false;
    while !stopping.load(Ordering::Acquire) {
        match listener {
            Some(l) => {
                if !wait_readable(l.listener.as_fd(), stop, None) {
                    continue;
                }
                match l.listener.accept() {
                    Ok((s, _)) => return Some(s),
                    Err(e) => {
                        tracing::warn!(port = %shared.name, "accept on {}: {e}", path.display());
                    }
                }
            }
            None => match UnixStream::connect(path) {
                Ok(s) => return Some(s),
                Err(e) => {
                    if !waiting_logged {
                        tracing::info!(
                            port = %shared.name,
                            "waiting for a vhost-user frontend to listen on {} ({e})",
                            path.display()
                        );
                        waiting_logged = true;
                    }
                    // Try again in a moment, unless the port is closed meanwhile.
                    let _ = wait_readable(stop.as_fd(), stop, Some(Duration::from_millis(500)));
                }
            },
        }
    }
    None
}

/// A private socket pair for the relay and rust-vmm's handler: the handler only takes a
/// connection from a `Listener`, so one is bound in a private directory, connected to
/// once and removed.
fn handler_pair() -> io::Result<(Listener, UnixStream, PathBuf)> {
    use std::os::unix::fs::DirBuilderExt;
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "pvnet-vhost-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    let sock = dir.join("s");
    let l = UnixListener::bind(&sock)?;
    let ours = UnixStream::connect(&sock)?;
    Ok((Listener::from(l), ours, dir))
}

fn serve_frontends(
    shared: &Arc<Shared>,
    listener: Option<&Listening>,
    stop: &Waker,
    stopping: &AtomicBool,
    conn: &Mutex<Option<vhost_user_backend::ShutdownHandle>>,
) {
    let path = shared.cfg.path.clone();
    while let Some(front) = next_frontend(shared, listener, stop, stopping) {
        let backend = Arc::new(NetBackend {
            shared: shared.clone(),
            exit: Mutex::new(None),
            captured: AtomicBool::new(false),
        });
        let mem: Gm = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        let mut daemon =
            match VhostUserDaemon::new(shared.name.clone(), backend.clone(), mem.clone()) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(port = %shared.name, "vhost-user port stopped: {e}");
                    return;
                }
            };
        let started = handler_pair().and_then(|(mut inner, back, dir)| {
            let r = daemon
                .start(&mut inner)
                .map_err(|e| io::Error::other(e.to_string()));
            let _ = std::fs::remove_dir_all(&dir);
            r?;
            std::thread::Builder::new()
                .name(format!("vhost-user relay {}", shared.name))
                .spawn({
                    let shared = shared.clone();
                    move || relay::run(front, back, &mut |q, fd| shared.take_kick(q, fd))
                })
        });
        let relay = match started {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(port = %shared.name, "vhost-user frontend refused: {e}");
                backend.stop_worker();
                continue;
            }
        };
        shared.attach(mem);
        *lock(conn) = daemon.shutdown_handle();
        tracing::info!(port = %shared.name, "vhost-user frontend connected on {}", path.display());
        if stopping.load(Ordering::Acquire) {
            daemon.request_shutdown();
        }
        // A frontend that hangs up (a guest shut down, a QEMU killed) is the normal end
        // of a connection, not an error.
        let r = match daemon.wait() {
            Err(vhost_user_backend::Error::HandleRequest(
                vhost::vhost_user::Error::Disconnected | vhost::vhost_user::Error::PartialMessage,
            )) => Ok(()),
            r => r,
        };
        lock(conn).take();
        backend.stop_worker();
        shared.detach();
        let relayed = relay.join();
        match (r, relayed) {
            (Ok(()), Ok(Ok(()))) => {
                tracing::info!(port = %shared.name, "vhost-user frontend went away; port down until the next one")
            }
            (Err(e), _) => {
                tracing::warn!(port = %shared.name, "vhost-user frontend dropped: {e}; port down until the next one")
            }
            (_, Ok(Err(e))) => {
                tracing::warn!(port = %shared.name, "vhost-user connection broke: {e}; port down until the next one")
            }
            (_, Err(_)) => {
                tracing::error!(port = %shared.name, "vhost-user relay thread panicked; port down until the next one")
            }
        }
    }
}

impl AsFd for VhostUserPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.shared.waits[self.pair].0.as_fd()
    }
}

impl AsRawFd for VhostUserPort {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// The ring state of queue `q`, if the frontend has set it up and enabled it.
fn ready_ring(link: &Link, q: usize) -> Option<(&Gm, &Vring)> {
    let mem = link.mem.as_ref()?;
    let v = link.vrings.get(q)?;
    Some((mem, v))
}

fn usable(st: &VringState<Gm>) -> bool {
    st.is_enabled() && st.get_queue().ready()
}

/// The receive queue a sender handle of `pair` fills, its number and ring locked: that
/// pair's, or pair 0's while the guest has not set up and enabled it (a driver that uses
/// fewer pairs than offered, before `ethtool -L eth0 combined N`) or it is broken. `None`
/// when neither is usable.
fn rx_ring<'l>(
    shared: &Shared,
    link: &'l Link,
    pair: usize,
) -> Option<(usize, &'l Gm, MutexGuard<'l, VringState<Gm>>)> {
    let try_queue = |q: usize| {
        let (gm, vring) = ready_ring(link, q)?;
        if shared.is_broken(q) {
            return None;
        }
        let st = vring.get_mut();
        usable(&st).then_some((q, gm, st))
    };
    try_queue(2 * pair).or_else(|| if pair == 0 { None } else { try_queue(0) })
}

impl Port for VhostUserPort {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn features(&self) -> Features {
        Features::from_bits(self.shared.tx_features.load(Ordering::Relaxed)).unwrap_or(Features::SG)
    }

    fn set_features(&mut self, _features: Features) -> io::Result<()> {
        // The driver decides what it takes; the switch never sees a refusal from a guest.
        Ok(())
    }

    fn features_may_change(&self) -> bool {
        true
    }

    fn start(&self) -> Start {
        Start::Ethernet
    }

    fn vnet_hdr_len(&self) -> usize {
        HDR_LEN
    }

    fn rx_batch(&self) -> usize {
        64
    }

    fn rx_super_frames(&self) -> bool {
        Features::from_virtio_host(self.shared.offered)
            .intersects(Features::TSO4 | Features::TSO6 | Features::USO)
    }

    fn recv_batch(&mut self, bufs: &mut RecvBufs) -> io::Result<usize> {
        bufs.set_filled(HDR_LEN, 0);
        let q = 2 * self.pair + 1;
        let shared = self.shared.clone();
        let link = shared.read_link();
        let Some((gm, vring)) = ready_ring(&link, q) else {
            // Chains held from a connection that is gone are no one's to return.
            self.held.clear();
            self.sleep(&link, q);
            return Ok(0);
        };
        if shared.is_broken(q) {
            self.held.clear();
            self.sleep(&link, q);
            return Ok(0);
        }
        let guest_hdr = self.guest_hdr_len();
        // A legacy header is read 2 bytes in and moved down, so the slot holds the v1 form.
        let shift = HDR_LEN - guest_hdr;
        let mem = gm.memory().into_inner();
        let mut st = vring.get_mut();
        if !usable(&st) {
            drop(st);
            self.held.clear();
            self.sleep(&link, q);
            return Ok(0);
        }
        // The last batch's chains, if the switch did not release them.
        self.publish_held(&mut st, &mem, q);
        let mut n = 0;
        let mut external = 0;
        let cap = bufs.capacity();
        let mut refused = 0u64;
        let map = ring::HostMap::of(&*mem);
        'drain: loop {
            let queue = st.get_queue_mut();
            let _ = queue.disable_notification(&*mem);
            let more = u16::try_from(cap - n).unwrap_or(u16::MAX);
            ring::prefetch_chains(queue, &map, more, false);
            let mut avail = match ring::Avail::new(&mut *queue, &*mem, &map) {
                Ok(a) => a,
                Err(e) => {
                    shared.break_queue(q, &e);
                    break 'drain;
                }
            };
            // Chains taken since the avail index was last read.
            let mut taken = 0;
            while n < cap {
                let mut chain = match avail.as_mut().and_then(Iterator::next) {
                    Some(c) => c,
                    None if taken > 0 => {
                        // This reading's chains are all taken: read the index again
                        // before going to sleep.
                        taken = 0;
                        avail = match ring::Avail::new(&mut *queue, &*mem, &map) {
                            Ok(a) => a,
                            Err(e) => {
                                shared.break_queue(q, &e);
                                break 'drain;
                            }
                        };
                        continue;
                    }
                    None => break,
                };
                taken += 1;
                let head = chain.head_index();
                let (slot, ext) = bufs.slot_and_external_mut(n);
                // A super-frame's payload stays in guest memory; its headers are copied.
                let res = ring::read_chain(
                    &mut chain,
                    &mut slot[shift..],
                    guest_hdr + ZERO_COPY_HEAD,
                    |h| h.get(1).is_some_and(|&gso_type| gso_type != 0),
                    ext,
                )
                .and_then(|len| {
                    if len < guest_hdr {
                        Err(ChainError::Short {
                            head,
                            len,
                            hdr: guest_hdr,
                        })
                    } else {
                        Ok(len)
                    }
                });
                let in_place = !ext.pieces().is_empty();
                ext.set_head(ZERO_COPY_HEAD);
                self.used.push(head, 0);
                match res {
                    Ok(len) => {
                        if shift > 0 {
                            slot.copy_within(shift..shift + guest_hdr, 0);
                            slot[guest_hdr..HDR_LEN].fill(0);
                        }
                        if in_place {
                            bufs.set_len_external(n, len + shift);
                            external += 1;
                        } else {
                            bufs.set_len(n, len + shift, false);
                        }
                        n += 1;
                    }
                    Err(e) => {
                        shared.errors.count(&e);
                        refused += 1;
                    }
                }
            }
            if n == cap || shared.cfg.poll {
                // More may be waiting (or the port polls): come back without a kick.
                break;
            }
            // Empty: clear the kick and the waker, then ask for a kick, unless frames
            // arrived in the meantime (a kick after this point stays in the fd).
            self.sleep(&link, q);
            match queue.enable_notification(&*mem) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(_) => {
                    shared.break_queue(q, &ChainError::Ring("avail ring unreadable"));
                    break;
                }
            }
        }
        if refused > 0 {
            shared.rx_refused.fetch_add(refused, Ordering::Relaxed);
        }
        if external > 0 {
            // Returned to the guest once the switch is done with their payload
            // ([`Port::release`], or the next call at the latest).
            std::mem::swap(&mut self.used, &mut self.held);
            self.held_gen = shared.ring_gen[q].load(Ordering::Acquire);
            bufs.set_keepalive(Some(Keep(mem.clone())));
        } else {
            bufs.set_keepalive(None);
            let r = ring::publish_used(
                st.get_queue_mut(),
                &*mem,
                &mut self.used,
                shared.tx_in_order(),
            );
            shared.after_publish(q, &st, r);
        }
        if (n == cap || shared.cfg.poll) && !self.awake {
            shared.ready[self.pair].wake();
            self.awake = true;
        }
        drop(st);
        drop(link);
        if n == 0 && shared.cfg.poll {
            // Nothing came: let another thread polling on this core have its turn.
            std::thread::yield_now();
        }
        bufs.set_filled(HDR_LEN, n);
        Ok(n)
    }

    fn send(
        &mut self,
        vnet_hdr: &[u8],
        frame: &pvnet_core::frame::Frame<'_>,
    ) -> Result<(), SendError> {
        let shared = &*self.shared;
        let acked = shared.acked.load(Ordering::Relaxed);
        let mergeable = acked & virtio_net::MRG_RXBUF != 0;
        let words = GuestHdr::new(vnet_hdr);
        let guest_hdr_len = self.guest_hdr_len();
        if guest_hdr_len + frame.len() <= STAGE_FRAME_MAX {
            if !shared.carrier.is_up() {
                return Err(SendError::NoCarrier);
            }
            if !self.staged.has_room(guest_hdr_len + frame.len()) {
                self.spill_staged();
            }
            self.staged.push(words, guest_hdr_len, frame);
            return Ok(());
        }
        let hdr = words.to_bytes();
        let guest_hdr = &hdr[..guest_hdr_len];
        // The staged frames go first, in the order the switch sent them.
        self.spill_staged();
        let shared = &*self.shared;
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let n = gather(&[], frame, &mut iov)?;
        let link = shared.read_link();
        let Some((q, gm, mut st)) = rx_ring(shared, &link, self.pair) else {
            return Err(SendError::NoCarrier);
        };
        let mem = gm.memory();
        let queue = st.get_queue_mut();
        shared.begin_rx_writes(q, queue, &mem);
        let res = ring::write_frame(
            queue,
            &*mem,
            guest_hdr,
            &iov[..n],
            mergeable,
            &mut self.used,
        );
        for e in self.used.take_refused() {
            shared.errors.count(&e);
        }
        let out = match res {
            Ok(()) => Ok(()),
            Err(RxError::NoBuffers) => Err(SendError::WouldBlock),
            Err(RxError::TooBig { len, room }) => Err(SendError::TooBig(io::Error::other(
                format!("{len}-byte frame, the guest's receive buffer holds {room}"),
            ))),
            Err(RxError::Chain(e)) => {
                shared.break_queue(q, &e);
                Err(SendError::NoCarrier)
            }
        };
        if shared.end_rx_writes(q, st.get_queue_mut(), &mem, &mut self.used) {
            self.unflushed |= 1 << q;
        }
        out
    }

    fn flush(&mut self) -> LateDrops {
        let staged = self.write_staged();
        let mut late = std::mem::take(&mut self.late);
        late.add(staged);
        let mut pending = std::mem::take(&mut self.unflushed);
        if pending == 0 {
            return late;
        }
        let shared = &*self.shared;
        let link = shared.read_link();
        while pending != 0 {
            let q = pending.trailing_zeros() as usize;
            pending &= pending - 1;
            let Some((gm, vring)) = ready_ring(&link, q) else {
                continue;
            };
            let mem = gm.memory();
            let st = vring.get_mut();
            if !shared.unpublished[q].swap(false, Ordering::Relaxed) {
                // Another handle's flush published these too.
                continue;
            }
            let old = shared.published[q].load(Ordering::Relaxed);
            shared.after_publish(q, &st, ring::publish(st.get_queue(), &*mem, old));
        }
        late
    }

    fn release(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        let q = 2 * self.pair + 1;
        let link = shared.read_link();
        let Some((gm, vring)) = ready_ring(&link, q) else {
            self.held.clear();
            return;
        };
        let mem = gm.memory();
        let mut st = vring.get_mut();
        self.publish_held(&mut st, &mem, q);
    }

    fn take_rx_drops(&mut self) -> u64 {
        self.shared.rx_refused.swap(0, Ordering::Relaxed)
    }

    fn carrier(&self) -> Option<Arc<Carrier>> {
        Some(self.shared.carrier.clone())
    }

    fn guest_errors(&self) -> Option<Arc<dyn GuestErrors>> {
        Some(self.shared.clone())
    }

    /// A handle that fills the receive queue of the next pair in turn (whichever handle it
    /// is cloned from), so that the switch's threads sending to the guest spread over its
    /// queues; pair 0's while the guest has not enabled that pair.
    fn try_clone_sender(&self) -> io::Result<Option<Box<dyn Port + Send>>> {
        let pairs = usize::from(self.shared.cfg.pairs).max(1);
        let pair = self.shared.next_pair.fetch_add(1, Ordering::Relaxed) % pairs;
        Ok(Some(Box::new(VhostUserPort {
            shared: self.shared.clone(),
            server: self.server.clone(),
            pair,
            used: Used::with_capacity(MAX_QUEUE_SIZE),
            unflushed: 0,
            awake: false,
            held: Used::default(),
            held_gen: 0,
            staged: Staged::new(),
            late: LateDrops::default(),
        })))
    }
}
