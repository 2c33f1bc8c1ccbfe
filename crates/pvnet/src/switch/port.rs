//! A switch port as the runtime holds it: its queues, what it takes, its VLAN mode and
//! counters, and the one way a frame is written to it (with the vnet header its metadata
//! asks for, one send, counted and captured).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;

use pvnet_core::frame::Frame;
use pvnet_core::offload::features::Features;
use pvnet_core::switch::counters::{DropCause, PortCounters};
use pvnet_core::switch::vlan::VlanMode;
use pvnet_core::vnet::{Endian, HdrLen, VnetHdr};
use pvnet_core::wire::{Layers, Start};
use pvnet_linux::port::{Carrier, GuestErrors, Port, SendError};

use super::pcap::PcapSink;
use super::quiet::Suppressed;

/// One switch port: its queues (one fd each), features and counters. In shared mode each
/// queue is a `PortState` of its own ([`PortState::split`]), one per switch thread.
pub struct PortState {
    /// Name for logs and counters.
    pub name: String,
    /// The device's queues (or one of them, after a split); frames are sent on the first.
    pub queues: Vec<Box<dyn Port + Send>>,
    /// The device's number of the first of `queues` (not 0 for a part of a split port).
    pub queue: usize,
    /// Transmit features (kept in sync with the queues' after a fallback).
    pub features: Features,
    /// How the port treats VLANs.
    pub vlan: VlanMode,
    /// Where its frames start (always Ethernet for a switch port).
    pub start: Start,
    /// The virtio_net_hdr form before every frame, `None` without one.
    pub hdr: Option<HdrLen>,
    /// The port's counters, as kept by the thread that holds this handle.
    pub counters: PortCounters,
    /// Offload types already reported as rejected (warned once each).
    pub(super) warned: Features,
    /// The port's features change while it runs ([`Port::features_may_change`]).
    live: bool,
    /// Frames were sent since the last [`PortState::flush`].
    unflushed: bool,
    /// Drop lines per cause, at most one per interval (this thread's handle).
    quiet: [Suppressed; DropCause::COUNT],
    /// What every thread's handle on the port shares.
    shared: Arc<Shared>,
}

/// A port's state as seen from outside its threads (the supervisor, the control socket).
#[derive(Debug, Clone)]
pub struct PortView(Arc<Shared>);

impl PortView {
    /// The transmit features in effect, whichever thread last changed them.
    pub fn features(&self) -> Features {
        Features::from_bits(self.0.features.load(Ordering::Relaxed)).unwrap_or(Features::NONE)
    }

    /// Whether the port is down (being removed).
    pub fn is_down(&self) -> bool {
        self.0.down.load(Ordering::Relaxed)
    }

    /// Whether the port hands over super-frames on receive (the GRO plan's input).
    pub fn rx_super_frames(&self) -> bool {
        self.0.rx_super_frames
    }

    /// The carrier of a port whose peer comes and goes (a VM's): whether it is there, and
    /// how often it went away. `None` for other ports.
    pub fn carrier(&self) -> Option<(bool, u64)> {
        self.0.carrier.as_ref().map(|c| (c.is_up(), c.losses()))
    }

    /// What the guest on a vhost-user port did wrong, by cause; empty for other ports.
    pub fn guest_errors(&self) -> Vec<(&'static str, u64)> {
        self.0
            .guest_errors
            .as_ref()
            .map_or_else(Vec::new, |g| g.by_cause())
    }

    /// Take the port down for every thread: nothing is sent to it any more.
    pub fn set_down(&self) {
        self.0.down.store(true, Ordering::Relaxed);
    }
}

/// The state of a port that every thread's handle on it sees.
struct Shared {
    /// The port is being removed (its device is gone, or it was deleted): no thread
    /// sends to it any more.
    down: AtomicBool,
    /// The transmit features in effect, as the last [`PortState::disable`] left them
    /// (for `pvnet ctl`; each thread plans with its own copy).
    features: AtomicU16,
    /// The port hands over super-frames on receive ([`Port::rx_super_frames`]).
    rx_super_frames: bool,
    /// [`Port::carrier`] of its first queue.
    carrier: Option<Arc<Carrier>>,
    /// [`Port::guest_errors`] of its first queue (the port's, whichever queue counts).
    guest_errors: Option<Arc<dyn GuestErrors>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("down", &self.down)
            .field("features", &self.features)
            .field("carrier", &self.carrier)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for PortState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortState")
            .field("name", &self.name)
            .field("queues", &self.queues.len())
            .field("features", &self.features)
            .field("vlan", &self.vlan)
            .finish()
    }
}

impl PortState {
    /// A port made of `queues` of one device; `vlan`: its access VLAN, `None` for a trunk.
    /// Fails when the queues carry a vnet header of a size the switch cannot write.
    pub fn new(
        name: String,
        queues: Vec<Box<dyn Port + Send>>,
        vlan: Option<u16>,
    ) -> io::Result<Self> {
        let (features, start, hdr_len) = queues
            .first()
            .map(|q| (q.features(), q.start(), q.vnet_hdr_len()))
            .unwrap_or((Features::NONE, Start::Ethernet, 0));
        let rx_super_frames = queues.first().is_some_and(|q| q.rx_super_frames());
        let live = queues.first().is_some_and(|q| q.features_may_change());
        let carrier = queues.first().and_then(|q| q.carrier());
        let guest_errors = queues.first().and_then(|q| q.guest_errors());
        let hdr = match hdr_len {
            0 => None,
            n => Some(HdrLen::from_size(n).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("port {name}: a {n}-byte virtio_net_hdr is not 10, 12 or 24 bytes"),
                )
            })?),
        };
        Ok(PortState {
            name,
            queues,
            queue: 0,
            features,
            vlan: vlan.map_or(VlanMode::Trunk, VlanMode::Access),
            start,
            hdr,
            counters: PortCounters::default(),
            warned: Features::NONE,
            live,
            unflushed: false,
            quiet: Default::default(),
            shared: Arc::new(Shared {
                down: AtomicBool::new(false),
                features: AtomicU16::new(features.bits()),
                rx_super_frames,
                carrier,
                guest_errors,
            }),
        })
    }

    /// Frames a receive batch of this port holds: `default`, or more if the port asks
    /// ([`Port::rx_batch`]).
    pub fn rx_batch(&self, default: usize) -> usize {
        self.queues
            .first()
            .map_or(default, |q| default.max(q.rx_batch()))
    }

    /// Whether the port was taken down (its device disappeared, or it is being removed).
    pub fn is_down(&self) -> bool {
        self.shared.down.load(Ordering::Relaxed)
    }

    /// Take the port down for every thread: nothing is sent to it any more. `false` when
    /// it was down already (another of its threads, or the supervisor, took it down).
    pub fn set_down(&self) -> bool {
        !self.shared.down.swap(true, Ordering::Relaxed)
    }

    /// The port cut into one state per queue, for a thread each: every part shares what
    /// all handles on the port share (down, features, carrier); the first keeps the
    /// counters and the others count from zero, so their sum is the port's.
    pub fn split(self) -> Vec<PortState> {
        if self.queues.len() <= 1 {
            return vec![self];
        }
        let PortState {
            name,
            queues,
            queue,
            features,
            vlan,
            start,
            hdr,
            mut counters,
            warned,
            live,
            unflushed,
            quiet: _,
            shared,
        } = self;
        queues
            .into_iter()
            .enumerate()
            .map(|(k, q)| PortState {
                name: name.clone(),
                queues: vec![q],
                queue: queue + k,
                features,
                vlan,
                start,
                hdr,
                counters: std::mem::take(&mut counters),
                warned,
                live,
                unflushed,
                quiet: Default::default(),
                shared: shared.clone(),
            })
            .collect()
    }

    /// The parts of a port ([`PortState::split`]) made one again: queues in the device's
    /// order, counters summed. `None` without parts.
    pub fn join(mut parts: Vec<PortState>) -> Option<PortState> {
        parts.sort_by_key(|p| p.queue);
        let mut parts = parts.into_iter();
        let mut port = parts.next()?;
        for p in parts {
            port.queues.extend(p.queues);
            port.counters.add(&p.counters);
            port.warned = port.warned.union(p.warned);
            port.unflushed |= p.unflushed;
        }
        Some(port)
    }

    /// What other threads may see of the port while it runs.
    pub fn view(&self) -> PortView {
        PortView(self.shared.clone())
    }

    /// The port as the thread that receives from queue `queue` (of its own port) sends to
    /// it: a second handle on this port's queue of the same number, modulo its queues
    /// ([`Port::try_clone_sender`]), same features and VLAN mode, counters from zero.
    /// `Ok(None)` when the port cannot give one.
    ///
    /// The same number, because a multi-queue tap steers a flow's packets to the queue
    /// the switch last wrote that flow on (the tun driver's flow table): the replies to
    /// what the thread of queue k sends come back on queue k of the other port, whose
    /// thread sends on queue k of this one, so every flow stays with one thread per port
    /// and the flows stay spread as the kernel hashed them. Handles on queue 0 alone
    /// would pull every flow onto the threads of queue 0. (A vhost-user port hands out
    /// its queue pairs in turn whichever handle is cloned.)
    pub fn sender(&self, queue: usize) -> io::Result<Option<PortState>> {
        let Some(q) = self.queues.get(queue % self.queues.len().max(1)) else {
            return Ok(None);
        };
        Ok(q.try_clone_sender()?.map(|q| self.with_queues(vec![q])))
    }

    /// Second handles on every queue of the port, for the handles of threads started
    /// later to be made from ([`PortState::sender`]). `Ok(None)` when a queue cannot give
    /// one.
    pub fn sender_template(&self) -> io::Result<Option<PortState>> {
        let mut queues = Vec::with_capacity(self.queues.len());
        for q in &self.queues {
            match q.try_clone_sender()? {
                Some(s) => queues.push(s),
                None => return Ok(None),
            }
        }
        Ok(Some(self.with_queues(queues)))
    }

    /// Another handle on the port made of `queues`: same features and VLAN mode,
    /// counters from zero.
    fn with_queues(&self, queues: Vec<Box<dyn Port + Send>>) -> PortState {
        PortState {
            name: self.name.clone(),
            queues,
            queue: self.queue,
            features: self.features,
            vlan: self.vlan,
            start: self.start,
            hdr: self.hdr,
            counters: PortCounters::default(),
            warned: self.warned,
            live: self.live,
            unflushed: false,
            quiet: Default::default(),
            shared: self.shared.clone(),
        }
    }

    /// The features to plan a frame with: for a port whose features change while it runs
    /// (a VM's driver negotiates them), what it takes now.
    pub fn current_features(&mut self) -> Features {
        if self.live {
            if let Some(q) = self.queues.first() {
                let f = q.features();
                if f != self.features {
                    self.features = f;
                    self.shared.features.store(f.bits(), Ordering::Relaxed);
                }
            }
        }
        self.features
    }

    /// Make the frames sent since the last flush visible to the port's peer
    /// ([`Port::flush`]): after each receive batch.
    pub fn flush(&mut self) {
        if !std::mem::take(&mut self.unflushed) {
            return;
        }
        let Some(q) = self.queues.first_mut() else {
            return;
        };
        let late = q.flush();
        if late.is_empty() {
            return;
        }
        // Counted as sent when the port took them; they never reached its peer.
        let c = &mut self.counters;
        c.tx_packets = c.tx_packets.saturating_sub(late.frames());
        c.tx_bytes = c.tx_bytes.saturating_sub(late.bytes);
        for (cause, n) in [
            (DropCause::TxBusy, late.busy),
            (DropCause::TooBig, late.too_big),
            (DropCause::NoCarrier, late.no_carrier),
        ] {
            c.drop_many(cause, n);
        }
    }

    /// Count one frame dropped for `cause`.
    pub fn count_drop(&mut self, cause: DropCause) {
        self.counters.drop(cause);
    }

    /// Count one frame dropped for `cause`, and say why at debug level: at most one line
    /// per cause and interval, with the number of drops left unsaid since.
    pub fn drop_noted(&mut self, cause: DropCause, why: std::fmt::Arguments<'_>) {
        self.counters.drop(cause);
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        if let Some(n) = self.quiet[cause as usize].hit() {
            tracing::debug!(
                port = %self.name,
                cause = cause.as_str(),
                "{why} ({n} more such drops since the last line)"
            );
        }
    }

    /// Write one frame with the vnet header its metadata asks for (`layers`: where its
    /// headers end, for a super-frame's `hdr_len`) to the port's first queue, counting and
    /// capturing it.
    pub fn send(
        &mut self,
        frame: &Frame<'_>,
        layers: &Layers,
        pcap: &mut Option<PcapSink>,
    ) -> Result<(), SendError> {
        let bytes = VnetHdr::from_meta(&frame.meta, layers).to_array(Endian::Little);
        let hdr = self.hdr.map_or(&[][..], |h| &bytes[..h.size()]);
        let Some(q) = self.queues.first_mut() else {
            return Err(SendError::Io(io::Error::other("port has no queue")));
        };
        q.send(hdr, frame)?;
        self.unflushed = true;
        self.counters.tx(frame.len());
        if frame.meta.gso.is_some() {
            self.counters.gso_tx += 1;
        }
        if let Some(p) = pcap {
            p.write(frame);
        }
        Ok(())
    }

    /// [`PortState::send`], and when the frame is in more pieces than one send can
    /// gather, again as one buffer (`flat`, reused), counted as linearized.
    pub fn send_or_linearize(
        &mut self,
        frame: &Frame<'_>,
        layers: &Layers,
        pcap: &mut Option<PcapSink>,
        flat: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        match self.send(frame, layers, pcap) {
            // Made anew, not moved: moving the whole result reloads it in one piece from
            // the smaller stores that wrote it, which stalls on every frame sent.
            Ok(()) => Ok(()),
            Err(SendError::TooManySlices { .. }) => {
                frame.copy_to(flat);
                self.counters.linearized += 1;
                self.send(&Frame::linear(flat, frame.meta), layers, pcap)
            }
            Err(e) => Err(e),
        }
    }

    /// Drop offload `off` from the port's features (and its queues'): after the kernel
    /// refused a super-frame of that type.
    pub fn disable(&mut self, off: Features) {
        let mut f = self.features;
        f.remove(off);
        for q in self.queues.iter_mut() {
            if let Err(e) = q.set_features(f) {
                tracing::warn!(port = %self.name, "cannot change offloads: {e}");
            }
        }
        // Whatever the queue kept, the switch itself never sends this type again.
        let kept = self.queues.first().map_or(f, |q| q.features());
        self.features = kept.difference(off).intersection(f.union(Features::GRO));
        self.shared
            .features
            .fetch_and(self.features.bits(), Ordering::Relaxed);
    }

    /// Count a failed send by its cause.
    pub fn count_send_error(&mut self, e: &SendError) {
        let cause = match e {
            SendError::WouldBlock => DropCause::TxBusy,
            SendError::NoCarrier => DropCause::NoCarrier,
            SendError::TooBig(_) => DropCause::TooBig,
            SendError::GsoRejected { .. }
            | SendError::Invalid(_)
            | SendError::Io(_)
            | SendError::TooManySlices { .. } => DropCause::TxError,
        };
        self.drop_noted(cause, format_args!("send failed: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvnet_core::frame::OffloadMeta;
    use pvnet_linux::port::{LateDrops, RecvBufs};
    use std::os::fd::{AsFd, BorrowedFd};

    /// A port that takes every frame and, at the flush, reports the last `drop` of them
    /// as found without a buffer (what a vhost-user port does with staged frames).
    struct Deferring {
        fd: std::fs::File,
        taken: Vec<usize>,
        drop: usize,
    }

    impl AsFd for Deferring {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.fd.as_fd()
        }
    }

    impl Port for Deferring {
        fn name(&self) -> &str {
            "deferring"
        }
        fn features(&self) -> Features {
            Features::NONE
        }
        fn set_features(&mut self, _: Features) -> io::Result<()> {
            Ok(())
        }
        fn start(&self) -> Start {
            Start::Ethernet
        }
        fn vnet_hdr_len(&self) -> usize {
            0
        }
        fn recv_batch(&mut self, _: &mut RecvBufs) -> io::Result<usize> {
            Ok(0)
        }
        fn send(&mut self, _: &[u8], frame: &Frame<'_>) -> Result<(), SendError> {
            self.taken.push(frame.len());
            Ok(())
        }
        fn flush(&mut self) -> LateDrops {
            let n = self.drop.min(self.taken.len());
            let dropped = self.taken.split_off(self.taken.len() - n);
            LateDrops {
                busy: n as u64,
                bytes: dropped.iter().map(|&l| l as u64).sum(),
                ..LateDrops::default()
            }
        }
    }

    #[test]
    fn frames_a_port_drops_at_the_flush_leave_the_tx_counts_for_the_drop_counts() {
        let fd = std::fs::File::open("/dev/null").expect("/dev/null");
        let port = Deferring {
            fd,
            taken: Vec::new(),
            drop: 2,
        };
        let mut p = PortState::new("d".into(), vec![Box::new(port)], None).expect("port");
        let mut pcap = None;
        for len in [60, 70, 80, 90] {
            let bytes = vec![0u8; len];
            p.send(
                &Frame::linear(&bytes, OffloadMeta::default()),
                &Layers::default(),
                &mut pcap,
            )
            .expect("taken");
        }
        assert_eq!((p.counters.tx_packets, p.counters.tx_bytes), (4, 300));
        p.flush();
        assert_eq!((p.counters.tx_packets, p.counters.tx_bytes), (2, 130));
        assert_eq!(p.counters.drops_of(DropCause::TxBusy), 2);
        // Nothing sent since: the next flush does not ask the port again.
        p.flush();
        assert_eq!(p.counters.drops_of(DropCause::TxBusy), 2);
    }
}
