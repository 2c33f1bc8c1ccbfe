//! From a validated frame to its destinations: learn its source, ask the core where it
//! goes ([`pvnet_core::switch::forward::destinations`]), and per destination carry out what
//! the core decides: the VLAN tag ([`pvnet_core::switch::vlan`]), then the transmit plan
//! ([`xmit_action`]): pass through, segment, or complete the checksum. The decisions are
//! the core's; this module only calls them and sends. Nothing here allocates once the
//! scratch buffers have grown.

use std::sync::{Arc, Mutex, MutexGuard};

use pvnet_core::frame::Frame;
use pvnet_core::offload::checksum::complete_partial;
use pvnet_core::offload::xmit::{refused_feature, xmit_action, XmitPlan};
use pvnet_core::switch::counters::DropCause;
use pvnet_core::switch::forward::destinations;
use pvnet_core::switch::mac_table::{Forward, Mac, MacTable, PortId};
use pvnet_core::switch::vlan::{self, Egress, Ingress};
use pvnet_core::vnet::Validated;
use pvnet_core::wire::ethernet;
use pvnet_linux::port::SendError;

use super::offload::{SegError, Segmenting};
use super::pcap::PcapSink;
use super::port::PortState;

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
    /// The MAC learning table all threads share.
    pub mac: SharedMac,
    /// Milliseconds of the runtime's monotonic clock, set by the loop.
    pub now_ms: u64,
    /// Where every frame sent is captured (`--pcap`).
    pub pcap: Option<PcapSink>,
    seg: Segmenting,
    dsts: Vec<PortId>,
    /// The head of a frame with its VLAN tag pushed, popped or rewritten.
    vlan_buf: Vec<u8>,
    /// The head of a frame with its checksum completed.
    csum_buf: Vec<u8>,
    /// A frame made one buffer (too many pieces for one send).
    flat: Vec<u8>,
    /// The last frame's learning and lookup, reused for the frames of the same flow in
    /// the same millisecond: taking the shared table's lock for each of them costs more
    /// than the rest of the lookup, and a known source seen again in the same
    /// millisecond refreshes nothing.
    last: Option<Lookup>,
    /// The last frame's whole decision when it went to one port as it was: the frames of
    /// its flow that follow it in the same millisecond go the same way without it being
    /// worked out again ([`Forwarder::forward`]).
    repeat: Option<Repeat>,
}

/// How many of a frame's first bytes decide where it goes: the MAC addresses, then the
/// EtherType or the outer tag's TPID and TCI (all that [`vlan::ingress`] reads).
const REPEAT_KEY: usize = 16;

/// A switching decision that the next frames of a flow repeat: a frame that entered
/// through `ingress` in millisecond `now`, whose first bytes are `key`, that asked for no
/// offload, went to port `dst` alone, unchanged.
#[derive(Clone, Copy)]
struct Repeat {
    key: [u8; REPEAT_KEY],
    ingress: usize,
    now: u64,
    dst: usize,
}

/// One learning and lookup: its key and what the table said.
#[derive(Clone, Copy)]
struct Lookup {
    src: Mac,
    dst: Mac,
    vid: u16,
    port: PortId,
    now: u64,
    fwd: Forward,
}

impl Forwarder {
    /// A forwarder on the shared table, capturing to `pcap` if given.
    pub fn new(mac: SharedMac, pcap: Option<PcapSink>) -> Forwarder {
        Forwarder {
            mac,
            now_ms: 0,
            pcap,
            seg: Segmenting::new(),
            dsts: Vec::with_capacity(64),
            vlan_buf: Vec::with_capacity(256),
            csum_buf: Vec::with_capacity(256),
            flat: Vec::with_capacity(65_600),
            last: None,
            repeat: None,
        }
    }

    /// Forget the decision the next frames of a flow would repeat: ports were added or
    /// removed.
    pub fn ports_changed(&mut self) {
        self.repeat = None;
    }

    /// Switch one frame that arrived on port `ingress` and was validated (`v`). `ports`
    /// is by slot; an empty slot (a port removed) receives nothing.
    pub fn forward(
        &mut self,
        ports: &mut [Option<PortState>],
        ingress: usize,
        frame: Frame<'_>,
        v: &Validated,
    ) {
        // The same flow as the last frame, in the same millisecond: everything below
        // would come to the same answer (the ports change only between batches, and a
        // frame that asks for no offload passes whatever its destination takes). Whether
        // the destination is still up is asked again: another thread may take it down.
        let plain = !v.meta().is_offloaded();
        if let (Some(r), Some(key)) = (self.repeat, frame.head().first_chunk::<REPEAT_KEY>()) {
            if r.ingress == ingress && r.now == self.now_ms && plain && *key == r.key {
                if let Some(Some(dst)) = ports.get_mut(r.dst) {
                    if !dst.is_down() {
                        self.send_as_is(dst, frame, v);
                        return;
                    }
                }
            }
        }
        self.repeat = None;
        let Some(port) = ports.get_mut(ingress).and_then(Option::as_mut) else {
            return;
        };
        let ing = match vlan::ingress(port.vlan, frame.head()) {
            Ok(i) => i,
            Err(e) => {
                port.drop_noted(
                    DropCause::from(&e),
                    format_args!("dropping received frame: {e}"),
                );
                return;
            }
        };
        // `vlan::ingress` made sure the Ethernet header is there.
        let eth = ethernet::Frame::new_unchecked(frame.head());
        let (dst, src) = (eth.dst_addr(), eth.src_addr());
        let Ok(in_id) = PortId::try_from(ingress) else {
            return;
        };
        let now = self.now_ms;
        let fwd = match self.last {
            Some(l)
                if l.src == src
                    && l.dst == dst
                    && l.vid == ing.vid
                    && l.port == in_id
                    && l.now == now =>
            {
                l.fwd
            }
            _ => {
                let fwd = {
                    let mut mac = lock_mac(&self.mac);
                    mac.learn(&src, ing.vid, in_id, now);
                    mac.forward(&dst, ing.vid, in_id, now)
                };
                self.last = Some(Lookup {
                    src,
                    dst,
                    vid: ing.vid,
                    port: in_id,
                    now,
                    fwd,
                });
                fwd
            }
        };
        let modes = ports
            .iter()
            .map(|p| p.as_ref().filter(|p| !p.is_down()).map(|p| p.vlan));
        if let Err(cause) = destinations(fwd, in_id, ing.vid, modes, &mut self.dsts) {
            if let Some(port) = ports.get_mut(ingress).and_then(Option::as_mut) {
                port.count_drop(cause);
            }
            return;
        }
        for k in 0..self.dsts.len() {
            match ports.get_mut(usize::from(self.dsts[k])) {
                Some(Some(dst)) if !dst.is_down() => self.deliver(dst, frame, v, ing),
                _ => {}
            }
        }
        if let ([d], true, Some(&key)) = (
            self.dsts.as_slice(),
            plain,
            frame.head().first_chunk::<REPEAT_KEY>(),
        ) {
            let d = usize::from(*d);
            if let Some(Some(dst)) = ports.get(d) {
                if vlan::egress(dst.vlan, ing) == Egress::AsIs {
                    self.repeat = Some(Repeat {
                        key,
                        ingress,
                        now,
                        dst: d,
                    });
                }
            }
        }
    }

    /// Send a frame that asks for no offload to `dst` as it is: what [`Forwarder::xmit`]
    /// does with such a frame, whose plan is always to pass it.
    fn send_as_is(&mut self, dst: &mut PortState, frame: Frame<'_>, v: &Validated) {
        match dst.send_or_linearize(&frame, v.layers(), &mut self.pcap, &mut self.flat) {
            Ok(()) => {}
            // Refused as a super-frame, which it is not: `xmit` drops it so too.
            Err(SendError::GsoRejected { .. }) => dst.count_drop(DropCause::TxError),
            Err(e) => dst.count_send_error(&e),
        }
    }

    /// Deliver to one destination with the VLAN tag its mode needs.
    fn deliver(&mut self, dst: &mut PortState, frame: Frame<'_>, v: &Validated, ing: Ingress) {
        match vlan::egress(dst.vlan, ing) {
            Egress::Skip => {}
            Egress::AsIs => self.xmit(dst, frame, v),
            op => {
                let mut buf = std::mem::take(&mut self.vlan_buf);
                match vlan::retag(&frame, v, op, &mut buf) {
                    Ok((tagged, tv)) => self.xmit(dst, tagged, &tv),
                    Err(e) => {
                        dst.drop_noted(
                            DropCause::from(&e),
                            format_args!("cannot retag frame: {e}"),
                        );
                    }
                }
                self.vlan_buf = buf;
            }
        }
    }

    /// Adapt one frame to `dst`'s features and send it. A super-frame the port refuses at
    /// run time disables that offload type on the port and is resent segmented.
    fn xmit(&mut self, dst: &mut PortState, frame: Frame<'_>, v: &Validated) {
        loop {
            // A switch port takes frames in pieces whatever its features: they are
            // gathered by one writev, so the plan never asks to linearize them.
            let plan = xmit_action(v, true, dst.current_features());
            match self.execute(dst, frame, v, plan) {
                Ok(()) => return,
                Err(SendError::GsoRejected { gso_type, source }) if plan.segment.is_none() => {
                    let Some(gso) = v.meta().gso else {
                        dst.count_drop(DropCause::TxError);
                        return;
                    };
                    dst.counters.gso_rejected += 1;
                    // A refused tunnel super-frame costs the port its tunnel feature only:
                    // plain super-frames of the inner kind still pass.
                    let off = refused_feature(&gso);
                    if !dst.warned.contains(off) {
                        tracing::warn!(
                            port = %dst.name,
                            "port refused a {:?}{} super-frame (gso_type {gso_type:#x}: {source}); \
                             disabling {off} on it and segmenting in software",
                            gso.kind,
                            if gso.tunnel.is_some() { " UDP tunnel" } else { "" }
                        );
                        dst.warned.insert(off);
                    }
                    // The type is gone from the port's features, so the next plan
                    // segments: this loop runs at most twice.
                    dst.disable(off);
                }
                Err(e) => {
                    dst.count_send_error(&e);
                    return;
                }
            }
        }
    }

    /// Carry out `plan` for one frame and destination.
    fn execute(
        &mut self,
        dst: &mut PortState,
        frame: Frame<'_>,
        v: &Validated,
        plan: XmitPlan,
    ) -> Result<(), SendError> {
        let layers = v.layers();
        if let Some(mode) = plan.segment {
            let Forwarder { seg, pcap, .. } = self;
            // Segments are sent as they are made, each with one writev; a gathered
            // super-frame is segmented where its payloads lie.
            let mut send = |s: &Frame<'_>| dst.send(s, layers, pcap);
            let res = seg.segment(&frame, v, mode, &mut send);
            return match res {
                Ok(n) => {
                    dst.counters.gso_segmented += 1;
                    dst.counters.segments += n as u64;
                    if plan.complete_csum {
                        dst.counters.csum_completed += n as u64;
                    }
                    Ok(())
                }
                Err(SegError::Invalid(why)) => {
                    dst.drop_noted(DropCause::Gso, format_args!("cannot segment: {why}"));
                    Ok(())
                }
                Err(SegError::Send(e, sent)) => {
                    dst.counters.segments += sent as u64;
                    Err(e)
                }
            };
        }
        if plan.complete_csum {
            let mut buf = std::mem::take(&mut self.csum_buf);
            let r = match complete_partial(&frame, &mut buf) {
                Ok(done) => {
                    dst.counters.csum_completed += 1;
                    dst.send_or_linearize(&done, layers, &mut self.pcap, &mut self.flat)
                }
                Err(e) => {
                    dst.drop_noted(
                        DropCause::Checksum,
                        format_args!("cannot complete checksum: {e}"),
                    );
                    Ok(())
                }
            };
            self.csum_buf = buf;
            return r;
        }
        dst.send_or_linearize(&frame, layers, &mut self.pcap, &mut self.flat)
    }
}
