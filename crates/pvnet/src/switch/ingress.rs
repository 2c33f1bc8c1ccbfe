//! What happens to a receive batch before forwarding: every frame's vnet header is
//! validated (a bad one is dropped and counted by the cause the core names), then runs of
//! plain frames go through GRO in gather mode and everything else is forwarded as it came.

use pvnet_core::frame::{CsumState, Frame};
use pvnet_core::offload::gro::{Coalesced, FrameBatch};
use pvnet_core::switch::counters::DropCause;
use pvnet_core::vnet::{validate_received, Validated};
use pvnet_core::wire::Start;
use pvnet_linux::port::{RecvBufs, MAX_EXTERNAL};

use super::forward::Forwarder;
use super::offload::IngressGro;
use super::port::PortState;

/// What the switch knows of a received frame after validating its vnet header.
#[derive(Debug, Clone, Copy)]
pub(super) enum Rx {
    /// Dropped (and counted): bad header, truncated, unparsable.
    Dropped,
    /// A frame to forward.
    Frame {
        /// Length without Ethernet padding after the IP packet.
        len: usize,
        /// Its layers and offload metadata.
        v: Validated,
        /// For a frame whose payload was left in the peer's memory
        /// ([`RecvBufs::external`]): how many of its first bytes its slot holds.
        external: Option<usize>,
    },
}

impl Rx {
    /// A frame without offload metadata, which GRO may merge.
    fn is_plain(&self) -> bool {
        matches!(self, Rx::Frame { v, external: None, .. } if !v.meta().is_offloaded())
    }
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

/// The ingress side of one receive batch of port `i`.
pub(super) struct Ingress<'a> {
    /// Every port by slot (this thread's handles).
    pub ports: &'a mut [Option<PortState>],
    pub fwd: &'a mut Forwarder,
    pub i: usize,
    pub start: Start,
}

impl Ingress<'_> {
    /// The ingress port (always there: its thread would not receive from it otherwise).
    fn port(&mut self) -> Option<&mut PortState> {
        self.ports.get_mut(self.i).and_then(Option::as_mut)
    }

    fn drop(&mut self, cause: DropCause) {
        if let Some(p) = self.port() {
            p.count_drop(cause);
        }
    }

    /// Validate frame `k` of the batch and count it received.
    pub fn validate(&mut self, bufs: &RecvBufs, k: usize) -> Rx {
        self.with_validated(bufs, k, |_, len, v, external| Rx::Frame {
            len,
            v: *v,
            external,
        })
        .unwrap_or(Rx::Dropped)
    }

    /// Validate frame `k` of the batch, count it received and forward it as it came (no
    /// coalescing), without moving what validation found out of the place it was made
    /// in.
    pub fn validate_and_forward(&mut self, bufs: &RecvBufs, k: usize) {
        self.with_validated(bufs, k, |ingress, len, v, external| {
            ingress.forward_frame(bufs, k, len, v, external);
        });
    }

    /// Validate frame `k`'s vnet header and headers, count it received and hand `then`
    /// its length without Ethernet padding, what was validated and, for a frame whose
    /// payload was left in the peer's memory, how many of its first bytes its slot holds.
    /// `None` when the frame is dropped (and counted).
    ///
    /// The validated layers are borrowed where validation made them: a struct written
    /// field by field and then moved is reloaded in words no single store wrote, which
    /// waits for every one of them, on every frame.
    fn with_validated<R>(
        &mut self,
        bufs: &RecvBufs,
        k: usize,
        then: impl FnOnce(&mut Self, usize, &Validated, Option<usize>) -> R,
    ) -> Option<R> {
        if bufs.is_truncated(k) {
            self.drop(DropCause::TooBig);
            return None;
        }
        let Some((hdr, frame)) = bufs.get(k) else {
            self.drop(DropCause::VnetHeader);
            return None;
        };
        let res = validate_received(hdr, frame, self.start);
        let v = match &res {
            Ok(v) => v,
            Err(e) => {
                if let Some(p) = self.port() {
                    p.drop_noted(
                        DropCause::from(e),
                        format_args!("dropping received frame: {e}"),
                    );
                }
                return None;
            }
        };
        // Ethernet padding after the IP packet is not part of it.
        let layers = v.layers();
        let len = if layers.l3.is_some() && layers.ip_end < frame.len() {
            layers.ip_end
        } else {
            frame.len()
        };
        let external = bufs.external(k);
        if let Some(head) = external {
            // Validated on the slot, whose bytes past `head` are stale: right only if
            // every header it read lies within `head`.
            if headers_end(v) > head.min(len) {
                if let Some(p) = self.port() {
                    p.drop_noted(
                        DropCause::Parse,
                        format_args!("dropping received frame: headers longer than {head} bytes"),
                    );
                }
                return None;
            }
        }
        if let Some(p) = self.port() {
            p.counters.rx(len);
            if v.meta().gso.is_some() {
                p.counters.gso_rx += 1;
            }
        }
        Some(then(self, len, v, external))
    }

    /// Forward a batch whose frames were validated into `rx`: runs of plain frames
    /// through `gro`, the rest as they came. `run` is scratch.
    pub fn forward_batch(
        &mut self,
        bufs: &RecvBufs,
        rx: &[Rx],
        gro: &mut IngressGro,
        run: &mut Vec<usize>,
    ) {
        let mut k = 0;
        while k < rx.len() {
            match &rx[k] {
                Rx::Dropped => k += 1,
                r if r.is_plain() => {
                    // The plain frames up to the next one that carries offload metadata
                    // (it must not overtake a held frame of its flow: the run is flushed
                    // before it goes).
                    run.clear();
                    while let Some(r) = rx.get(k) {
                        match r {
                            Rx::Frame { .. } if !r.is_plain() => break,
                            Rx::Frame { .. } => run.push(k),
                            Rx::Dropped => {}
                        }
                        k += 1;
                    }
                    let view = Run { bufs, rx, run };
                    gro.coalesce(&view, self.start, &mut |item| self.gathered(item, &view));
                }
                Rx::Frame { len, v, external } => {
                    self.forward_frame(bufs, k, *len, v, *external);
                    k += 1;
                }
            }
        }
    }

    /// Forward frame `k` of the batch, `len` bytes validated as `v`, as it came.
    fn forward_frame(
        &mut self,
        bufs: &RecvBufs,
        k: usize,
        len: usize,
        v: &Validated,
        external: Option<usize>,
    ) {
        let frame = bufs
            .get(k)
            .map_or(&[][..], |(_, f)| f.get(..len).unwrap_or(f));
        match external {
            None => {
                let frame = Frame::linear(frame, *v.meta());
                self.fwd.forward(self.ports, self.i, frame, v);
            }
            Some(head) => {
                // The headers from the slot, the payload from the peer's memory where it
                // lies: no copy on the way in.
                let mut pieces = [&[][..]; MAX_EXTERNAL];
                let n = bufs.external_slices(k, &mut pieces);
                let head = &frame[..head.min(frame.len())];
                let frame =
                    Frame::from_window(head, &[], &pieces[..n], len - head.len(), *v.meta());
                self.fwd.forward(self.ports, self.i, frame, v);
            }
        }
    }

    /// An item out of the coalescer: a frame given back whole, or a flow (one segment or
    /// a super-frame) as headers plus payloads, forwarded as it is. Its layers are those
    /// validated for the frame it began with: a super-frame keeps its first segment's
    /// headers, only longer.
    fn gathered(&mut self, item: Coalesced<'_>, run: &Run<'_>) {
        let v = item
            .batch_index()
            .and_then(|j| run.validated(j))
            .and_then(|first| item.validated(first));
        let Some(v) = v else {
            self.drop(DropCause::Parse);
            return;
        };
        if item.segments > 1 {
            if let Some(p) = self.port() {
                p.counters.gro_coalesced += u64::from(item.segments);
            }
        }
        self.fwd.forward(self.ports, self.i, item.frame, &v);
    }
}

/// Where the last header `v` describes ends: the (inner) transport header, or a partial
/// checksum's field if that lies further.
fn headers_end(v: &Validated) -> usize {
    let mut end = v.layers().payload_offset;
    if let Some(inner) = v.inner_layers() {
        end = end.max(inner.payload_offset);
    }
    if let CsumState::Partial { start, offset } = v.meta().csum {
        end = end.max(usize::from(start) + usize::from(offset) + 2);
    }
    end
}
