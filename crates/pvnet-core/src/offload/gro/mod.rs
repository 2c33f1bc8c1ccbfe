//! Receive coalescing (GRO): merge consecutive TCP segments, or same-size UDP datagrams, of
//! one flow into a super-frame that carries a partial checksum and GSO metadata, exactly
//! what Linux GRO hands to a virtio guest or writes to a tap with `IFF_VNET_HDR`.
//!
//! # Model
//!
//! A [`Coalescer`] is fed linear frames one at a time ([`Coalescer::push`]) or as a batch
//! ([`Coalescer::push_batch`]). It holds at most `max_flows` flows; the caller decides when
//! held flows leave ([`Coalescer::flush`], [`Coalescer::flush_flow_of`]) — there is no clock
//! in the core. Everything that comes out goes to a caller-provided sink as a [`Coalesced`]
//! item whose [`Frame`] borrows the bytes: a frame passed through, a flow of one segment
//! (given back byte-for-byte as it came in, no offload metadata), or a super-frame.
//!
//! Order: a frame of a held flow that cannot be merged first flushes that flow, so frames of
//! one flow never overtake each other. Frames of different flows may be reordered relative
//! to each other (a held flow is emitted later than a pass-through frame of another flow),
//! as in the kernel.
//!
//! Memory: every flow slot owns one buffer, reserved for a full super-frame the first time
//! the slot is used and reused afterwards, so the hot path copies each payload once (into
//! the slot) and allocates nothing.
//!
//! Gather mode ([`Coalescer::coalesce_batch`]) copies no payload at all: when the caller
//! has the whole batch in memory (a `recvmmsg` batch, a ring of descriptors), a flow keeps
//! only its first segment's headers and, per segment, where its payload lies in the batch.
//! A super-frame then comes out as the same [`Coalesced`] item, its frame made of the
//! rewritten headers and the list of payload slices, ready for `writev` or a descriptor
//! chain, byte-for-byte the frame [`Coalescer::push_batch`] would have built. The copy that remains is the one the writer
//! makes anyway (the kernel copies a `writev` into its own buffers).
//!
//! # Merge rules (Linux 6.x `inet_gro_receive`/`ipv6_gro_receive`, `tcp_gro_receive`,
//! `udp_gro_receive_segment`, `gro_receive_network_flush`)
//!
//! A flow is identified by the link-layer header (MAC addresses and VLAN tags, byte-equal),
//! the IP version, addresses and protocol, and the ports. A frame joins the held flow only if
//! - its TCP/UDP checksum verifies (a bad *or partial* checksum is not merged: the kernel
//!   validates before merging; see [`GroConfig::verify_checksums`]); a UDP datagram with a
//!   zero checksum is not merged ("requires non zero csum, for symmetry with GSO");
//! - IPv4: the header is exactly 20 bytes (`0x45`), its checksum is right, it is not a
//!   fragment (no MF, offset 0, reserved bit clear), TOS (DSCP and ECN), TTL and DF equal
//!   the first segment's, and the IP ID is either the first segment's + n for the n-th
//!   segment or, decided at the second segment, fixed (equal to the first one's, with or
//!   without DF, as since Linux 6.18);
//! - IPv6: the first word (version, traffic class, flow label) and the hop limit are equal,
//!   and the extension headers are byte-equal (a Fragment header is never merged);
//! - the IP packet fills the frame (Ethernet padding after it is not merged: the kernel
//!   compares the length fields with what it received);
//! - TCP: CWR is not set, the flags equal the first segment's except FIN and PSH, the ACK
//!   number and the whole option block (timestamps included) are byte-equal, the sequence
//!   number continues the flow exactly, and the payload is 1..=gso_size bytes, gso_size
//!   being the first segment's payload size;
//! - UDP: the payload is 1..=gso_size bytes, and fewer than [`GroConfig::max_udp_segments`]
//!   datagrams are held;
//! - the super-frame's IP length stays ≤ [`GroConfig::max_size`] (65535).
//!
//! Flushes: after merging a segment shorter than gso_size (it is the last one), after
//! merging a TCP segment with PSH or FIN (they are OR-ed into the super-frame's header, the
//! only header field that changes besides lengths and checksums), when a UDP flow reaches
//! its segment limit, and before a frame of the flow that cannot join it. A TCP segment
//! with SYN, RST or URG, or without payload (a pure ACK), is never merged nor held: it
//! flushes its flow and passes. A first segment with PSH or FIN is passed, not held.
//!
//! The super-frame keeps the first segment's headers: like the kernel, the TCP window of
//! later segments is not compared and the first one's stays (only the last segment's
//! window update is lost, as with Linux GRO).
//!
//! UDP tunnels ([`GroConfig::tunnels`]): a VXLAN or GENEVE frame (UDP to 4789 or 6081)
//! is coalesced by its inner packet under the rules above, and its outer headers must agree
//! with the flow's first segment as the kernel's tunnel GRO requires; the super-frame
//! carries UDP tunnel GSO metadata (see the `tunnel` module for the outer rules and what
//! pvnet refuses that the kernel would merge).
//!
//! Where pvnet is stricter than the kernel (never looser): a frame whose IPv6 flow label or
//! extension headers differ from the held flow's is a different flow to the kernel (both
//! are held); here it flushes the held flow first. A frame with a bad checksum flushes its
//! flow before passing (the kernel lets it overtake the held flow).

#![deny(missing_docs)]

mod classify;
mod flow;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod fuzz;
mod output;
mod stats;
mod tunnel;

use crate::wire::{ethernet, ip_proto, parse, vlan, Start, L4, MAX_VLAN_TAGS};

pub use output::{complete_checksum, Coalesced, EmitCause, FrameBatch};
pub use stats::{FlushCause, GroStats, MalformedCause, PassCause};
pub use tunnel::{GENEVE_PORT, VXLAN_PORT};

use crate::frame::Frame;
use classify::{Candidate, FlowKey};
use flow::{Merge, Seg, Slot};
use output::{recycle, Raw};

/// Largest IP packet a super-frame may become (the kernel's GRO_LEGACY_MAX_SIZE - 1).
pub const MAX_SIZE: usize = 65_535;
/// Most datagrams in one UDP super-frame (the kernel's UDP_GRO_CNT_MAX).
pub const MAX_UDP_SEGMENTS: u16 = 64;
/// Longest link-layer header parse accepts: Ethernet + two VLAN tags.
const MAX_L2_LEN: usize = ethernet::HEADER_LEN + MAX_VLAN_TAGS as usize * vlan::HEADER_LEN;

/// Coalescer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroConfig {
    /// Flows held at once (at least 1). When a new flow arrives and the table is full, the
    /// oldest held flow is flushed.
    pub max_flows: usize,
    /// Largest IP length (header included) of a super-frame, at most 65535.
    pub max_size: usize,
    /// Most datagrams per UDP super-frame (at most 64: some 2024 stable kernels refuse
    /// more than 64 USO segments from a virtio header).
    pub max_udp_segments: u16,
    /// Coalesce TCP (TSO super-frames).
    pub tcp: bool,
    /// Coalesce UDP (USO / UDP_L4 super-frames); the receiver must accept USO.
    pub udp: bool,
    /// Verify every frame's TCP/UDP checksum before merging it (as the kernel does). Turn
    /// off only when the source already vouches for them (virtio DATA_VALID): frames are
    /// then merged even with a partial or bad checksum, and the super-frame gets a fresh
    /// partial checksum over all of them.
    pub verify_checksums: bool,
    /// Coalesce TCP and UDP inside VXLAN and GENEVE (UDP to ports 4789 and 6081, Ethernet
    /// frames only) into UDP tunnel super-frames, with the outer rules of the kernel's
    /// tunnel GRO (see the `tunnel` module); the receiver must take UDP tunnel GSO
    /// (`tx-udp_tnl-segmentation`, and `tx-udp_tnl-csum-segmentation` for tunnels with
    /// outer checksums). Off: such frames are plain UDP to the coalescer.
    pub tunnels: bool,
}

impl Default for GroConfig {
    fn default() -> Self {
        GroConfig {
            max_flows: 32,
            max_size: MAX_SIZE,
            max_udp_segments: MAX_UDP_SEGMENTS,
            tcp: true,
            udp: true,
            verify_checksums: true,
            tunnels: false,
        }
    }
}

/// Where a merged payload goes: appended to the slot's buffer (linear mode), or noted as
/// the payload of frame `n` of the caller's batch (gather mode).
#[derive(Debug, Clone, Copy)]
enum Dest {
    Linear,
    Gather(usize),
}

/// Adapt a public sink to the internal one in copy mode, where every item is linear.
/// `batch_base` is `GroStats::frames_in` before the batch, outside a batch `None`.
fn linear<F: FnMut(Coalesced<'_>)>(
    sink: &mut F,
    batch_base: Option<u64>,
) -> impl FnMut(Raw<'_>) + '_ {
    move |r| sink(r.linear(batch_base))
}

/// The coalescer. See the module documentation.
#[derive(Debug)]
pub struct Coalescer {
    cfg: GroConfig,
    slots: Vec<Slot>,
    active: usize,
    next_age: u64,
    stats: GroStats,
    /// Flow-hash bucket -> slot that last opened a flow in it (a hint, checked in full).
    hint: [u16; HINT_BUCKETS],
    /// Gather mode: the allocation for the payload slices of the item being emitted,
    /// kept empty between batches (see [`output::recycle`]).
    pieces: Vec<&'static [u8]>,
}

/// Buckets of [`Coalescer::find`]'s direct-mapped hint table.
const HINT_BUCKETS: usize = 64;

#[inline]
fn hint_bucket(digest: u32) -> usize {
    (digest >> 26) as usize
}

impl Coalescer {
    /// A coalescer with settings `cfg`, brought within their limits (at least one flow,
    /// `max_size` at most [`MAX_SIZE`], `max_udp_segments` 1 to [`MAX_UDP_SEGMENTS`]). The
    /// flow buffers are allocated when a flow first uses them.
    pub fn new(cfg: GroConfig) -> Coalescer {
        let cfg = GroConfig {
            max_flows: cfg.max_flows.max(1),
            max_size: cfg.max_size.min(MAX_SIZE),
            max_udp_segments: cfg.max_udp_segments.clamp(1, MAX_UDP_SEGMENTS),
            ..cfg
        };
        let slots = (0..cfg.max_flows).map(|_| Slot::default()).collect();
        Coalescer {
            cfg,
            slots,
            active: 0,
            next_age: 0,
            stats: GroStats::default(),
            hint: [0; HINT_BUCKETS],
            pieces: Vec::new(),
        }
    }

    /// The settings in effect (after [`Coalescer::new`] brought them within limits).
    pub fn config(&self) -> &GroConfig {
        &self.cfg
    }

    /// The counters since the coalescer was made.
    pub fn stats(&self) -> &GroStats {
        &self.stats
    }

    /// Flows currently held.
    pub fn held_flows(&self) -> usize {
        self.active
    }

    /// Feed one frame. Whatever it causes to leave (flushed flows, the frame itself when it
    /// is not held) goes to `sink`, in an order that keeps every flow's frames in order.
    pub fn push<F: FnMut(Coalesced<'_>)>(&mut self, frame: &[u8], start: Start, sink: &mut F) {
        self.push_frame(frame, start, Dest::Linear, &mut linear(sink, None));
    }

    #[inline(always)]
    fn push_frame<F: FnMut(Raw<'_>)>(
        &mut self,
        frame: &[u8],
        start: Start,
        dest: Dest,
        sink: &mut F,
    ) {
        self.stats.frames_in += 1;
        if self.cfg.tunnels {
            if let Some(r) = self.tunnel_classify(frame, start) {
                match r {
                    Ok(c) => self.coalesce(c, dest, sink),
                    Err((cause, key)) => self.refuse(frame, cause, key, sink),
                }
                return;
            }
        }
        match self.fast_classify(frame, start) {
            Some(c) => self.coalesce(c, dest, sink),
            None => self.push_slow(frame, start, dest, sink),
        }
    }

    /// Merge a candidate into its held flow or start a flow with it.
    #[inline(always)]
    fn coalesce<F: FnMut(Raw<'_>)>(&mut self, cand: Candidate<'_>, dest: Dest, sink: &mut F) {
        if let Some(i) = self.find(&cand.key, cand.digest, cand.frame) {
            match self.try_merge(i, &cand, dest) {
                Merge::Held => return,
                Merge::Flush(cause) => {
                    self.flush_slot(i, cause, sink);
                    return;
                }
                Merge::Refused(cause) => self.flush_slot(i, cause, sink),
            }
        }
        self.start_flow(&cand, dest, sink);
    }

    /// The general path: full parse and classification. A refused frame flushes its held
    /// flow and passes.
    #[inline(never)]
    fn push_slow<F: FnMut(Raw<'_>)>(
        &mut self,
        frame: &[u8],
        start: Start,
        dest: Dest,
        sink: &mut F,
    ) {
        match self.classify(frame, start) {
            Ok(c) => self.coalesce(c, dest, sink),
            Err((cause, key)) => self.refuse(frame, cause, key, sink),
        }
    }

    /// Pass a frame that may not be held; a held flow of its (`key`) goes first.
    fn refuse<F: FnMut(Raw<'_>)>(
        &mut self,
        frame: &[u8],
        cause: PassCause,
        key: Option<FlowKey>,
        sink: &mut F,
    ) {
        if let Some(key) = key {
            let digest = key.digest();
            if let Some(i) = self.find(&key, digest, frame) {
                self.flush_slot(i, FlushCause::Mismatch, sink);
            }
        }
        self.pass(frame, cause, sink);
    }

    /// Feed a batch, then flush every held flow (what a NAPI poll does at its end).
    pub fn push_batch<'f, I, F>(&mut self, frames: I, start: Start, sink: &mut F)
    where
        I: IntoIterator<Item = &'f [u8]>,
        F: FnMut(Coalesced<'_>),
    {
        let mut sink = linear(sink, Some(self.stats.frames_in));
        for f in frames {
            self.push_frame(f, start, Dest::Linear, &mut sink);
        }
        self.flush_all(&mut sink);
    }

    /// Coalesce a whole batch without copying payloads: a flow comes out as its headers
    /// (rewritten for a super-frame) followed by its payloads where they lie in `frames`,
    /// ready for `writev`/`sendmsg` or a virtio descriptor chain. Same merge rules, order
    /// and counters as [`Coalescer::push_batch`] and byte-for-byte the same frames; the
    /// only copies are the headers of each flow's first segment, and the list of payload
    /// slices reuses one allocation of the coalescer.
    ///
    /// The batch is one unit, as a NAPI poll: flows still held from [`Coalescer::push`]
    /// leave first (whole, as linear frames), and every flow opened here is flushed before
    /// this returns, since its payloads borrow `frames`.
    pub fn coalesce_batch<T, F>(&mut self, frames: &T, start: Start, sink: &mut F)
    where
        T: FrameBatch + ?Sized,
        F: FnMut(Coalesced<'_>),
    {
        let base = Some(self.stats.frames_in);
        let mut pieces = recycle(core::mem::take(&mut self.pieces));
        let mut emit = |r: Raw<'_>| {
            pieces.clear();
            // The segments' frames are those this call merged (FrameBatch's contract).
            pieces.extend(r.segs.iter().map(|s| &frames.frame(s.frame)[s.start..]));
            sink(r.with_frame(Frame::new(r.head, &pieces, r.meta), base));
        };
        self.flush_all(&mut emit);
        for n in 0..frames.frame_count() {
            self.push_frame(frames.frame(n), start, Dest::Gather(n), &mut emit);
        }
        self.flush_all(&mut emit);
        self.pieces = recycle(pieces);
    }

    /// Emit every held flow, oldest first.
    pub fn flush<F: FnMut(Coalesced<'_>)>(&mut self, sink: &mut F) {
        self.flush_all(&mut linear(sink, None));
    }

    fn flush_all<F: FnMut(Raw<'_>)>(&mut self, sink: &mut F) {
        while self.active > 0 {
            match self.oldest() {
                Some(i) => self.flush_slot(i, FlushCause::Explicit, sink),
                None => break,
            }
        }
    }

    /// Emit every held flow opened by a frame numbered below `frame` (frames count from 1,
    /// as `GroStats::frames_in`), oldest first. The sans-IO way to bound how long a flow is
    /// held: in frames seen rather than in time.
    pub fn flush_started_before<F: FnMut(Coalesced<'_>)>(&mut self, frame: u64, sink: &mut F) {
        let mut sink = linear(sink, None);
        while let Some(i) = self.oldest() {
            if self.slots[i].first_frame >= frame {
                break;
            }
            self.flush_slot(i, FlushCause::Explicit, &mut sink);
        }
    }

    /// Number of the frame that opened the oldest held flow, if any flow is held: nothing
    /// emitted later can have started before it.
    pub fn oldest_held_frame(&self) -> Option<u64> {
        self.oldest().map(|i| self.slots[i].first_frame)
    }

    /// Emit the held flow `frame` would belong to, if any; returns whether one was held.
    /// `frame` itself is not consumed. Flows inside a UDP tunnel are not looked up here
    /// (their key needs the per-frame checks of [`GroConfig::tunnels`]).
    pub fn flush_flow_of<F: FnMut(Coalesced<'_>)>(
        &mut self,
        frame: &[u8],
        start: Start,
        sink: &mut F,
    ) -> bool {
        let Ok(l) = parse(frame, start) else {
            return false;
        };
        let proto = match l.l4 {
            Some(L4::Tcp) => ip_proto::TCP,
            Some(L4::Udp) => ip_proto::UDP,
            _ => return false,
        };
        let Some(key) = FlowKey::of(frame, &l, proto) else {
            return false;
        };
        match self.find(&key, key.digest(), frame) {
            Some(i) => {
                self.flush_slot(i, FlushCause::Explicit, &mut linear(sink, None));
                true
            }
            None => false,
        }
    }
}

impl Default for Coalescer {
    fn default() -> Self {
        Coalescer::new(GroConfig::default())
    }
}
