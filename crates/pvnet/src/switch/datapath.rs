//! The per-frame path: validate the vnet header, learn and forward, and adapt every frame
//! to each destination's features (`xmit_action`): pass through, segment, complete the
//! checksum. Nothing here allocates once the scratch buffers have grown.

use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard};

use pvnet_core::offload::checksum::complete_partial_linear;
use pvnet_core::offload::features::Features;
use pvnet_core::offload::xmit::{gso_feature, xmit_action, XmitPlan};
use pvnet_core::packet::{CsumState, OffloadMeta};
use pvnet_core::switch::counters::{DropCause, PortCounters};
use pvnet_core::switch::mac_table::{Forward, Mac, MacTable, PortId};
use pvnet_core::switch::vlan::{frame_vid, VlanMode};
use pvnet_core::vnet::{self, Endian, HdrLen, VnetError, VnetHdr};
use pvnet_core::wire::{ethertype, parse, Layers, Start};
use pvnet_linux::port::{Port, SendError};

use super::offload::{SegError, Segmenting};
use super::pcap::PcapSink;

const ETH_HLEN: usize = 14;
const MACS: usize = 12;
const TAG_LEN: usize = 4;

/// Counters of one port: the core's [`PortCounters`] plus what the switch adds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub counters: PortCounters,
    /// Super-frames sent to the port as software segments.
    pub gso_segmented: u64,
}

impl PortStats {
    /// Add `o`'s counters to these (one port's counters kept by several threads).
    pub fn add(&mut self, o: &PortStats) {
        let (c, d) = (&mut self.counters, &o.counters);
        c.rx_packets += d.rx_packets;
        c.rx_bytes += d.rx_bytes;
        c.tx_packets += d.tx_packets;
        c.tx_bytes += d.tx_bytes;
        c.gso_rx += d.gso_rx;
        c.gso_tx += d.gso_tx;
        c.segments += d.segments;
        c.csum_completed += d.csum_completed;
        c.linearized += d.linearized;
        c.gro_coalesced += d.gro_coalesced;
        c.gso_rejected += d.gso_rejected;
        for (a, b) in c.drops.iter_mut().zip(d.drops.iter()) {
            *a += b;
        }
        self.gso_segmented += o.gso_segmented;
    }
}

/// One switch port: its queues (one fd each), features and counters.
pub struct PortState {
    pub name: String,
    pub queues: Vec<Box<dyn Port + Send>>,
    /// Transmit features (kept in sync with the queues' after a fallback).
    pub features: Features,
    pub vlan: VlanMode,
    pub start: Start,
    pub hdr_len: usize,
    pub stats: PortStats,
    /// Offload types already reported as rejected (warned once each).
    warned: Features,
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
    pub fn new(name: String, queues: Vec<Box<dyn Port + Send>>, vlan: Option<u16>) -> Self {
        let (features, start, hdr_len) = queues
            .first()
            .map(|q| (q.features(), q.start(), q.vnet_hdr_len()))
            .unwrap_or((Features::NONE, Start::Ethernet, 0));
        PortState {
            name,
            queues,
            features,
            vlan: vlan.map_or(VlanMode::Trunk, VlanMode::Access),
            start,
            hdr_len,
            stats: PortStats::default(),
            warned: Features::NONE,
        }
    }

    /// The port as another thread sends to it: a second handle on its first queue
    /// ([`Port::try_clone_sender`]), same features and VLAN mode, counters from zero.
    /// `Ok(None)` when the port cannot give one.
    pub fn sender(&self) -> io::Result<Option<PortState>> {
        let Some(q) = self.queues.first() else {
            return Ok(None);
        };
        Ok(q.try_clone_sender()?.map(|q| PortState {
            name: self.name.clone(),
            queues: vec![q],
            features: self.features,
            vlan: self.vlan,
            start: self.start,
            hdr_len: self.hdr_len,
            stats: PortStats::default(),
            warned: self.warned,
        }))
    }

    fn count_drop(&mut self, cause: DropCause) {
        self.stats.counters.drop(cause);
    }
}

/// Decode and check the vnet header of a received frame: the frame's layers and offload
/// metadata, or the drop cause.
pub fn decode(
    hdr: &[u8],
    frame: &[u8],
    start: Start,
) -> Result<vnet::Validated, (DropCause, VnetError)> {
    let h = match hdr.len() {
        0 => VnetHdr::default(),
        10 => VnetHdr::decode(hdr, HdrLen::V10, Endian::Little)
            .map_err(|e| (DropCause::VnetHeader, e))?,
        _ => VnetHdr::decode(hdr, HdrLen::V12, Endian::Little)
            .map_err(|e| (DropCause::VnetHeader, e))?,
    };
    vnet::validate(&h, frame, start).map_err(|e| match e {
        VnetError::Parse(_) => (DropCause::Parse, e),
        _ => (DropCause::VnetHeader, e),
    })
}

/// The MAC table, shared by the switch threads (locked once per frame, never across a
/// send).
pub type SharedMac = Arc<Mutex<MacTable>>;

/// Lock the MAC table; a thread that panicked holding it left it consistent enough.
pub fn lock_mac(mac: &SharedMac) -> MutexGuard<'_, MacTable> {
    match mac.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The forwarding state of one switch thread (the MAC table is shared).
pub struct Forwarder {
    pub mac: SharedMac,
    /// Milliseconds of the runtime's monotonic clock, set by the loop.
    pub now_ms: u64,
    pub pcap: Option<PcapSink>,
    seg: Segmenting,
    dsts: Vec<PortId>,
    /// A frame with its checksum completed (the received frame is read-only).
    lin: Vec<u8>,
    /// A frame with a VLAN tag pushed or popped.
    vlan_buf: Vec<u8>,
    /// A gathered frame made linear for a destination that needs it (segmenting,
    /// completing a checksum).
    flat: Vec<u8>,
}

/// A frame as the switch forwards it: a received frame, or a super-frame that GRO gathered
/// ([`pvnet_core::offload::gro::Gathered`]): its headers in the first part, then its
/// payloads where they were received, sent with one writev without being copied.
#[derive(Debug, Clone, Copy)]
pub enum Frame<'a> {
    Linear(&'a [u8]),
    Parts(&'a [IoSlice<'a>]),
}

impl<'a> Frame<'a> {
    /// The whole frame when it is linear, at least every header otherwise.
    fn head(&self) -> &'a [u8] {
        match *self {
            Frame::Linear(f) => f,
            Frame::Parts(p) => p.first().map_or(&[], |s: &'a IoSlice<'a>| &**s),
        }
    }

    fn is_linear(&self) -> bool {
        match self {
            Frame::Linear(_) => true,
            Frame::Parts(p) => p.len() <= 1,
        }
    }

    /// Append the bytes of the frame from `from` (an offset inside the head) on.
    fn extend_from(&self, from: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(self.head().get(from..).unwrap_or_default());
        if let Frame::Parts(p) = self {
            for part in p.iter().skip(1) {
                out.extend_from_slice(part);
            }
        }
    }
}

impl Forwarder {
    pub fn new(mac: SharedMac, pcap: Option<PcapSink>) -> Forwarder {
        Forwarder {
            mac,
            now_ms: 0,
            pcap,
            seg: Segmenting::new(),
            dsts: Vec::with_capacity(64),
            lin: Vec::with_capacity(65_600),
            vlan_buf: Vec::with_capacity(65_600),
            flat: Vec::with_capacity(65_600),
        }
    }

    /// Switch one frame that arrived on `ingress` (already validated: `meta`, `layers`).
    pub fn forward(
        &mut self,
        ports: &mut [PortState],
        ingress: usize,
        frame: Frame<'_>,
        meta: OffloadMeta,
        layers: &Layers,
    ) {
        let head = frame.head();
        if head.len() < ETH_HLEN {
            ports[ingress].count_drop(DropCause::Parse);
            return;
        }
        let mut dst: Mac = [0; 6];
        let mut src: Mac = [0; 6];
        dst.copy_from_slice(&head[..6]);
        src.copy_from_slice(&head[6..12]);
        let tagged = frame_vid(head);
        let vid = match (ports[ingress].vlan, tagged) {
            (VlanMode::Access(_), Some(_)) => {
                ports[ingress].count_drop(DropCause::Vlan);
                return;
            }
            (VlanMode::Access(n), None) => n,
            (VlanMode::Trunk, t) => t.unwrap_or(0),
        };
        let Ok(in_id) = PortId::try_from(ingress) else {
            return;
        };
        let now = self.now_ms;
        let fwd = {
            let mut mac = lock_mac(&self.mac);
            mac.learn(&src, vid, in_id, now);
            mac.forward(&dst, vid, in_id, now)
        };
        self.dsts.clear();
        match fwd {
            Forward::Unicast(p) => self.dsts.push(p),
            Forward::Filter => {
                ports[ingress].count_drop(DropCause::Hairpin);
                return;
            }
            Forward::Flood => {
                for (i, p) in ports.iter().enumerate() {
                    let member = match p.vlan {
                        VlanMode::Access(n) => n == vid,
                        VlanMode::Trunk => true,
                    };
                    if i != ingress && member {
                        if let Ok(id) = PortId::try_from(i) {
                            self.dsts.push(id);
                        }
                    }
                }
            }
        }
        for k in 0..self.dsts.len() {
            let d = usize::from(self.dsts[k]);
            if d >= ports.len() {
                continue;
            }
            self.deliver(&mut ports[d], frame, meta, layers, vid, tagged.is_some());
        }
    }

    /// Deliver to one destination, pushing or popping the VLAN tag its mode needs (the
    /// retagged frame is parsed again for its new layer offsets).
    fn deliver(
        &mut self,
        dst: &mut PortState,
        frame: Frame<'_>,
        meta: OffloadMeta,
        layers: &Layers,
        vid: u16,
        tagged: bool,
    ) {
        let want_tag = match dst.vlan {
            VlanMode::Access(n) if n != vid => return,
            VlanMode::Access(_) => false,
            VlanMode::Trunk => vid != 0,
        };
        if want_tag == tagged {
            self.xmit(dst, frame, meta, layers);
            return;
        }
        // Retag into the scratch buffer (one copy; it keeps its allocation).
        let mut buf = std::mem::take(&mut self.vlan_buf);
        buf.clear();
        let mut meta = meta;
        let head = frame.head();
        buf.extend_from_slice(&head[..MACS.min(head.len())]);
        if want_tag {
            buf.extend_from_slice(&ethertype::VLAN.to_be_bytes());
            buf.extend_from_slice(&vid.to_be_bytes());
            frame.extend_from(MACS, &mut buf);
            if let CsumState::Partial { start, offset } = meta.csum {
                meta.csum = CsumState::Partial {
                    start: start.saturating_add(TAG_LEN as u16),
                    offset,
                };
            }
        } else {
            frame.extend_from(MACS + TAG_LEN, &mut buf);
            if let CsumState::Partial { start, offset } = meta.csum {
                meta.csum = CsumState::Partial {
                    start: start.saturating_sub(TAG_LEN as u16),
                    offset,
                };
            }
        }
        match parse(&buf, Start::Ethernet) {
            Ok(l) => self.xmit(dst, Frame::Linear(&buf), meta, &l),
            Err(_) => dst.count_drop(DropCause::Vlan),
        }
        self.vlan_buf = buf;
    }

    /// Adapt one frame to `dst`'s features and send it. A super-frame the port refuses at
    /// run time disables that offload type on the port and is resent segmented.
    fn xmit(&mut self, dst: &mut PortState, frame: Frame<'_>, meta: OffloadMeta, layers: &Layers) {
        loop {
            let plan = match xmit_action(&meta, layers, true, dst.features) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(port = %dst.name, "dropping frame: {e}");
                    dst.count_drop(DropCause::Gso);
                    return;
                }
            };
            match self.execute(dst, frame, meta, layers, plan) {
                Ok(()) => return,
                Err(SendError::GsoRejected { gso_type, source }) if plan.segment.is_none() => {
                    let Some(gso) = meta.gso else {
                        dst.count_drop(DropCause::TxError);
                        return;
                    };
                    dst.stats.counters.gso_rejected += 1;
                    let off = Features::from_feature(gso_feature(gso.kind));
                    if !dst.warned.contains(off) {
                        tracing::warn!(
                            port = %dst.name,
                            "port refused a {:?} super-frame (gso_type {gso_type:#x}: {source}); \
                             disabling {off} on it and segmenting in software",
                            gso.kind
                        );
                        dst.warned.insert(off);
                    }
                    // The type is gone from the port's features, so the next plan
                    // segments: this loop runs at most twice.
                    disable(dst, off);
                }
                Err(e) => {
                    count_send_error(dst, &e);
                    return;
                }
            }
        }
    }

    fn execute(
        &mut self,
        dst: &mut PortState,
        frame: Frame<'_>,
        meta: OffloadMeta,
        layers: &Layers,
        plan: XmitPlan,
    ) -> Result<(), SendError> {
        if frame.is_linear() || !(plan.segment.is_some() || plan.complete_csum) {
            return self.execute_prepared(dst, frame, meta, layers, plan);
        }
        // Segmenting and completing a checksum read the frame as one buffer: a gathered
        // frame is copied once, here, for the destinations that need it.
        let mut flat = std::mem::take(&mut self.flat);
        flat.clear();
        frame.extend_from(0, &mut flat);
        let r = self.execute_prepared(dst, Frame::Linear(&flat), meta, layers, plan);
        self.flat = flat;
        r
    }

    /// [`Forwarder::execute`] once `frame` is linear wherever the plan reads it whole
    /// (segmenting, completing a checksum); a gathered frame only goes out as it is.
    fn execute_prepared(
        &mut self,
        dst: &mut PortState,
        frame: Frame<'_>,
        meta: OffloadMeta,
        layers: &Layers,
        plan: XmitPlan,
    ) -> Result<(), SendError> {
        let parts = frame;
        let frame = frame.head();
        if let (Some(mode), Some(gso)) = (plan.segment, meta.gso) {
            let pcap = &mut self.pcap;
            let full = plan.complete_csum;
            let mut send =
                |slices: &[IoSlice<'_>], m: OffloadMeta| send_frame(dst, pcap, slices, &m, layers);
            let res = self.seg.segment(frame, layers, gso, mode, &mut send);
            match res {
                Ok(n) => {
                    dst.stats.gso_segmented += 1;
                    dst.stats.counters.segments += n as u64;
                    if full {
                        dst.stats.counters.csum_completed += n as u64;
                    }
                    return Ok(());
                }
                Err(SegError::Invalid(why)) => {
                    tracing::debug!(port = %dst.name, "cannot segment: {why}");
                    dst.count_drop(DropCause::Gso);
                    return Ok(());
                }
                Err(SegError::Send(e, sent)) => {
                    dst.stats.counters.segments += sent as u64;
                    return Err(e);
                }
            }
        }
        if plan.complete_csum {
            if let CsumState::Partial { start, offset } = meta.csum {
                self.lin.clear();
                self.lin.extend_from_slice(frame);
                if complete_partial_linear(&mut self.lin, usize::from(start), usize::from(offset))
                    .is_err()
                {
                    dst.count_drop(DropCause::Checksum);
                    return Ok(());
                }
                dst.stats.counters.csum_completed += 1;
                let m = OffloadMeta {
                    csum: CsumState::None,
                    gso: meta.gso,
                };
                let lin = std::mem::take(&mut self.lin);
                let r = send_frame(dst, &mut self.pcap, &[IoSlice::new(&lin)], &m, layers);
                self.lin = lin;
                return r;
            }
        }
        // Sent as it is, gathered or not (`linearize` is never asked of a switch port).
        match parts {
            Frame::Linear(f) => send_frame(dst, &mut self.pcap, &[IoSlice::new(f)], &meta, layers),
            Frame::Parts(p) => send_frame(dst, &mut self.pcap, p, &meta, layers),
        }
    }
}

/// Drop offload `off` from the port's features (and its queues').
fn disable(dst: &mut PortState, off: Features) {
    let mut f = dst.features;
    f.remove(off);
    for q in dst.queues.iter_mut() {
        if let Err(e) = q.set_features(f) {
            tracing::warn!(port = %dst.name, "cannot change offloads: {e}");
        }
    }
    // Whatever the queue kept, the switch itself never sends this type again.
    let kept = dst.queues.first().map_or(f, |q| q.features());
    dst.features = kept.difference(off).intersection(f.union(Features::GRO));
}

fn count_send_error(dst: &mut PortState, e: &SendError) {
    let cause = match e {
        SendError::WouldBlock => DropCause::TxBusy,
        SendError::TooBig(_) => DropCause::TooBig,
        SendError::GsoRejected { .. } | SendError::Invalid(_) | SendError::Io(_) => {
            DropCause::TxError
        }
    };
    tracing::debug!(port = %dst.name, "send failed: {e}");
    dst.count_drop(cause);
}

/// Write one frame (slices) with the vnet header for `meta` to the port's first queue,
/// counting and capturing it.
fn send_frame(
    dst: &mut PortState,
    pcap: &mut Option<PcapSink>,
    slices: &[IoSlice<'_>],
    meta: &OffloadMeta,
    layers: &Layers,
) -> Result<(), SendError> {
    let mut hdr = [0u8; 12];
    let n = match dst.hdr_len {
        0 => 0,
        10 => encode(meta, layers, &mut hdr, HdrLen::V10),
        _ => encode(meta, layers, &mut hdr, HdrLen::V12),
    };
    let Some(q) = dst.queues.first_mut() else {
        return Err(SendError::Io(std::io::Error::other("port has no queue")));
    };
    q.send(&hdr[..n], slices)?;
    let len: usize = slices.iter().map(|s| s.len()).sum();
    dst.stats.counters.tx(len);
    if meta.gso.is_some() {
        dst.stats.counters.gso_tx += 1;
    }
    if let Some(p) = pcap {
        p.write(slices);
    }
    Ok(())
}

fn encode(meta: &OffloadMeta, layers: &Layers, out: &mut [u8; 12], len: HdrLen) -> usize {
    VnetHdr::from_meta(meta, layers)
        .encode(out, len, Endian::Little)
        .unwrap_or(0)
}
