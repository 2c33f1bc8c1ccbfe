//! Plug points of the data path for the GSO segmenter and the GRO coalescer.
//!
//! The runtime only talks to [`Segmenting`] and [`IngressGro`]; they adapt the core's
//! `offload::gso` and `offload::gro` to the loop (reusable buffers, iovecs, one sink).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use pvnet_core::frame::Frame;
use pvnet_core::offload::gro::{Coalesced, Coalescer, FrameBatch, GroConfig};
use pvnet_core::offload::gso::{GsoOptions, SegmentBuf, Segmenter};
use pvnet_core::offload::CsumMode;
use pvnet_core::vnet::Validated;
use pvnet_core::wire::Start;
use pvnet_linux::port::SendError;

/// Why a super-frame could not be segmented.
#[derive(Debug)]
pub enum SegError {
    /// The segmenter refused the super-frame (counted as a GSO drop).
    Invalid(&'static str),
    /// Sending a segment failed after this many were sent.
    Send(SendError, usize),
}

/// Where segments go, one frame at a time.
pub type SendSegment<'s> = dyn FnMut(&Frame<'_>) -> Result<(), SendError> + 's;

/// Reusable state of the software segmenter: one per switch thread. The segment headers
/// live in a [`SegmentBuf`] reused from one super-frame to the next; payloads are slices
/// of the received frame (zero-copy), each segment sent with one writev.
#[derive(Debug)]
pub struct Segmenting {
    buf: SegmentBuf,
    /// Identification for the Fragment headers of IPv6 UFO, one per datagram.
    frag_id: u32,
}

impl Default for Segmenting {
    fn default() -> Self {
        Segmenting::new()
    }
}

impl Segmenting {
    /// A segmenter with room for 64 segments per batch.
    pub fn new() -> Segmenting {
        // Not predictable from outside (RFC 7739); any per-process seed will do.
        let seed = RandomState::new().hash_one(std::process::id());
        Segmenting {
            buf: SegmentBuf::with_capacity(64),
            frag_id: seed as u32,
        }
    }

    /// Split the super-frame `frame` (validated as `v`; one buffer, or headers plus
    /// payload slices) into segments with checksums left as `mode` says and hand each one
    /// to `send`. The payload is never copied. Returns the number of segments sent.
    pub fn segment(
        &mut self,
        frame: &Frame<'_>,
        v: &Validated,
        mode: CsumMode,
        send: &mut SendSegment<'_>,
    ) -> Result<usize, SegError> {
        self.frag_id = self.frag_id.wrapping_add(0x9e37_79b9);
        let opts = GsoOptions {
            csum: mode,
            fixed_id: false,
            ipv6_frag_id: self.frag_id,
        };
        let mut seg = Segmenter::new(frame, v, opts).map_err(|e| SegError::Invalid(e.cause()))?;
        let mut sent = 0;
        while !seg.is_done() {
            let batch = seg.next_batch(&mut self.buf);
            for s in batch.iter() {
                send(&s).map_err(|e| SegError::Send(e, sent))?;
                sent += 1;
            }
        }
        Ok(sent)
    }
}

/// Per-ingress-port receive coalescing: the core's GRO [`Coalescer`] in gather mode, fed
/// the plain frames of a receive batch and flushed at the end of each batch. Super-frames
/// come out as headers plus the payloads where they were received: the switch copies
/// nothing to coalesce, and a destination that takes the super-frame gets it with one
/// writev.
#[derive(Debug)]
pub struct IngressGro {
    inner: Coalescer,
}

impl IngressGro {
    /// A coalescer with the settings the core's GRO plan chose for the port.
    pub fn new(cfg: GroConfig) -> IngressGro {
        IngressGro {
            inner: Coalescer::new(cfg),
        }
    }

    /// Coalesce `frames`, plain frames (no offload metadata: their checksums are verified
    /// before they are merged) of one receive batch, in receive order. Everything leaves
    /// before this returns, in an order that keeps every flow's frames in order.
    pub fn coalesce<T, F>(&mut self, frames: &T, start: Start, sink: &mut F)
    where
        T: FrameBatch + ?Sized,
        F: FnMut(Coalesced<'_>),
    {
        self.inner.coalesce_batch(frames, start, sink);
    }
}
