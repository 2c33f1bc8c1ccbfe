//! Plug points of the data path for the GSO segmenter and the GRO coalescer.
//!
//! The runtime only talks to [`Segmenting`] and [`IngressGro`]; they adapt the core's
//! `offload::gso` and `offload::gro` to the loop (reusable buffers, iovecs, one sink).

use std::io::IoSlice;

use pvnet_core::offload::gro::{Coalescer, Emitted, GroConfig};
use pvnet_core::offload::xmit::CsumMode;
use pvnet_core::packet::{Gso, OffloadMeta};
use pvnet_core::wire::{Layers, Start};
use pvnet_linux::port::SendError;

/// Why a super-frame could not be segmented.
#[derive(Debug)]
pub enum SegError {
    /// The segmenter refused the super-frame (counted as a GSO drop).
    Invalid(&'static str),
    /// Sending one of the segments failed.
    Send(SendError),
}

/// Where segments go: the frame as iovecs and its metadata.
pub type SendSegment<'s> = dyn FnMut(&[IoSlice<'_>], OffloadMeta) -> Result<(), SendError> + 's;

/// Reusable state of the software segmenter: one per switch thread.
#[derive(Debug, Default)]
pub struct Segmenting {}

impl Segmenting {
    pub fn new() -> Segmenting {
        Segmenting {}
    }

    /// Split the linear super-frame `frame` (layers `layers`, GSO metadata `gso`) into
    /// segments with checksums left as `mode` says and hand each one, as iovecs with its
    /// offload metadata, to `send`. Returns the number of segments sent.
    ///
    /// TEMPORARY (until `offload::gso` is merged): always fails, so the frame is dropped
    /// and counted as a GSO drop.
    pub fn segment(
        &mut self,
        _frame: &[u8],
        _layers: &Layers,
        _gso: Gso,
        _mode: CsumMode,
        _send: &mut SendSegment<'_>,
    ) -> Result<usize, SegError> {
        Err(SegError::Invalid("software GSO not available yet"))
    }
}

/// One frame out of the coalescer: the frame, its metadata, and how many received frames
/// it stands for.
#[derive(Debug, Clone, Copy)]
pub struct Coalesced<'a> {
    pub frame: &'a [u8],
    pub meta: OffloadMeta,
    pub segments: u16,
}

/// Per-ingress-port receive coalescing: the core's GRO [`Coalescer`], fed plain frames of
/// one receive batch and flushed at its end.
#[derive(Debug)]
pub struct IngressGro {
    inner: Coalescer,
}

fn emitted(e: Emitted<'_>) -> Coalesced<'_> {
    Coalesced {
        frame: e.frame,
        meta: e.meta,
        segments: e.segments,
    }
}

impl IngressGro {
    /// A coalescer for TCP, and for UDP when `udp` (some destination takes USO).
    pub fn new(udp: bool) -> IngressGro {
        IngressGro {
            inner: Coalescer::new(GroConfig {
                udp,
                ..GroConfig::default()
            }),
        }
    }

    /// Feed one plain frame (no offload metadata: its checksums are verified before it
    /// is merged). What leaves the coalescer goes to `sink`.
    pub fn push(&mut self, frame: &[u8], start: Start, sink: &mut dyn FnMut(Coalesced<'_>)) {
        self.inner
            .push(frame, start, &mut |e: Emitted<'_>| sink(emitted(e)));
    }

    /// Emit the held flow `frame` belongs to (before a frame of that flow that bypasses
    /// the coalescer), keeping the flow in order.
    pub fn flush_flow_of(
        &mut self,
        frame: &[u8],
        start: Start,
        sink: &mut dyn FnMut(Coalesced<'_>),
    ) {
        self.inner
            .flush_flow_of(frame, start, &mut |e: Emitted<'_>| sink(emitted(e)));
    }

    /// Emit every held flow (end of a receive batch).
    pub fn flush(&mut self, sink: &mut dyn FnMut(Coalesced<'_>)) {
        self.inner.flush(&mut |e: Emitted<'_>| sink(emitted(e)));
    }
}
