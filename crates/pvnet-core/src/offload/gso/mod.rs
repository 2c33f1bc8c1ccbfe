//! Generic segmentation offload in software: split a TCP/UDP super-frame into wire-sized
//! segments exactly as the Linux kernel does for a device that lacks TSO/USO/UFO.
//!
//! Input: the super-frame as a [`Frame`](crate::frame::Frame) (or one linear buffer) and
//! its [`Validated`] form, from [`vnet::validate`] or, for a super-frame that came without a
//! vnet header, [`vnet::validate_gso`]. The GSO metadata is `v.meta().gso` and the layers
//! `v.layers()`; what validation proves (a GSO kind matching the packet, a non-zero size, no
//! IP fragment, at most [`UDP_MAX_SEGMENTS`] USO segments) is not checked again, the header
//! bytes the segmenter relies on are (see [`GsoError`]).
//!
//! Output, zero-copy: every segment is a [`Frame`](crate::frame::Frame) whose head is a
//! freshly built header block (L2 through L4, copied from the super-frame and patched) and
//! whose payload is a window of the super-frame's own slices, never copied. Headers are
//! written into a caller-owned [`SegmentBuf`] (a header arena plus segment descriptors) that
//! is reused from one super-frame to the next, so after warm-up segmentation performs no
//! heap allocation at all.
//!
//! ```text
//!   Frame / &[u8] + Validated ──► Segmenter ──next_batch(&mut SegmentBuf)──► Batch
//!                                   ▲  (cursor: continues where the      │ Frame:
//!                                   └── previous batch stopped)          │ header block +
//!                                                                        ▼ payload slices
//! ```
//!
//! A batch holds at most the buffer's capacity; [`Segmenter::next_batch`] is called until
//! [`Segmenter::is_done`]. More segments than the capacity is never an error.
//!
//! # What the output looks like (Linux 6.x, checked byte for byte against the kernel)
//!
//! - TCP (`tcp_gso_segment`): segment *i* has `seq + i × gso_size`; FIN and PSH only on the
//!   last segment; CWR only on the first — whether or not the virtio ECN bit was set (the
//!   kernel clears CWR after the first segment unless the skb is AccECN, which a
//!   virtio_net_hdr cannot express). All other flags and options are copied.
//! - IPv4: total length and header checksum per segment; ID + i per segment (TCP and USO)
//!   unless [`GsoOptions::fixed_id`]; the first segment keeps the super-frame's ID.
//! - IPv6: payload length per segment, extension headers included.
//! - USO (`__udp_gso_segment`): every segment is a UDP datagram with its own length and
//!   checksum; at most [`UDP_MAX_SEGMENTS`] segments (validation refuses more).
//! - UFO: one UDP datagram fragmented at the IP layer. The fragment payload is `gso_size`
//!   bytes rounded down to a multiple of 8 (the UDP header counts in the first fragment);
//!   only the first fragment has the UDP header; the UDP checksum is computed over the whole
//!   datagram and is always complete (no device can finish a checksum across fragments).
//!   IPv4 fragments share the super-frame's ID. IPv6 gets a Fragment header after the
//!   unfragmentable part (Hop-by-Hop, Routing and any Destination options before a Routing
//!   header); its identification is [`GsoOptions::ipv6_frag_id`] because the kernel's
//!   choice (`ipv6_proxy_select_ident`: a keyed hash of the addresses with a per-boot secret)
//!   cannot be reproduced.
//! - Checksums, [`CsumMode::Full`]: complete. A TCP segment's checksum that computes to 0 is
//!   written as 0x0000 (the kernel's `gso_make_checksum` does not mangle it), a UDP one as
//!   0xFFFF (`__udp_gso_segment`, UFO: CSUM_MANGLED_0, since 0 means "no checksum"), and the
//!   pass-through case as 0xFFFF for both (`skb_checksum_help`).
//! - Checksums, [`CsumMode::Partial`]: the L4 checksum field holds the folded pseudo-header
//!   sum for the segment's length and the segment's meta says
//!   `CsumState::Partial { start: l4 offset, offset: 16 | 6 }`, as the kernel hands segments
//!   to a device with tx-checksumming.
//! - Checksums are computed from scratch: the super-frame's checksum field is ignored
//!   (the kernel instead adjusts whatever the sender left there, so a sender that put
//!   garbage in a NEEDS_CSUM field gets garbage from the kernel and correct checksums here).
//! - A frame without GSO metadata, which is what validation makes of a super-frame whose
//!   payload fits in one segment (virtio_net_hdr_to_skb treats it as not GSO), is passed
//!   through as one segment, its checksum finished as requested and its IPv4 header checksum
//!   recomputed. It must still be TCP or UDP over IP and not a fragment.

use crate::csum::Sum;
use crate::frame::OffloadMeta;
use crate::wire::{ipv6, tcp, udp, L3, L4};

mod buf;
mod error;
mod fast;
mod generic;
mod setup;
mod source;
mod tunnel;

/// Fuzz body of the `gso_segment` target, test-only (feature `testing`).
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod fuzz;

pub use buf::{Batch, SegmentBuf};
pub use error::GsoError;

use crate::vnet::{self, Validated};
use fast::Fast;
use setup::FragInsert;
use source::{Cursor, Source};

/// Most segments one USO super-frame makes: [`vnet::USO_MAX_SEGMENTS`], which validation
/// enforces (the kernel's `UDP_MAX_SEGMENTS` is 128 in mainline 6.x but 64 on older kernels;
/// pvnet takes and makes at most 64 so that every kernel accepts what it passes on).
pub const UDP_MAX_SEGMENTS: usize = vnet::USO_MAX_SEGMENTS;

/// Longest header block (L2 + L3 + L4, plus an inserted IPv6 Fragment header) a segment may
/// have. Two VLAN tags, an IPv6 header with a few extension headers and a full TCP header
/// fit with room to spare; a longer chain is refused rather than grown without bound.
pub const MAX_HEADER_LEN: usize = 512;

/// How the segments' transport checksums are left (the transmit plan's decision).
pub use super::CsumMode;

/// Segmentation options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GsoOptions {
    /// How the segments' transport checksums are left.
    pub csum: CsumMode,
    /// Keep the IPv4 ID of the super-frame on every segment (the sender negotiated
    /// TSO_MANGLEID / SKB_GSO_TCP_FIXEDID) instead of incrementing it.
    pub fixed_id: bool,
    /// Identification of the Fragment header inserted by IPv6 UFO (choose it as RFC 7739
    /// says: unpredictable, e.g. random per datagram). Unused otherwise.
    pub ipv6_frag_id: u32,
}

/// What is being done to the super-frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Payload fits in one segment: the frame goes out whole.
    PassThrough,
    Tcp,
    Uso,
    Ufo,
}

/// Splits one super-frame into segments, a batch at a time.
#[derive(Debug, Clone)]
pub struct Segmenter<'p> {
    src: Source<'p>,
    mode: Mode,
    opts: GsoOptions,
    l3: L3,
    l4: L4,
    l3_offset: usize,
    l4_offset: usize,
    /// End of the header block copied into every segment (TCP/USO/pass-through: payload
    /// offset; UFO: the L4 offset, as later fragments carry no UDP header).
    hdr_end: usize,
    /// Payload bytes per segment (UFO: per fragment, the UDP header included).
    seg_size: usize,
    payload_len: usize,
    total: usize,
    next: usize,
    cursor: Cursor,
    /// Sum of the pseudo-header without its length.
    pseudo: Sum,
    /// The super-frame's IPv4 identification.
    ip4_id: u16,
    /// The super-frame's TCP sequence number.
    tcp_seq: u32,
    /// UFO: the complete UDP checksum of the whole datagram.
    ufo_csum: u16,
    frag6: Option<FragInsert>,
    /// TCP/USO with the whole payload in the head: the per-super-frame constants of the
    /// specialised loop ([`Segmenter::fast_batch`]).
    fast: Option<Fast<'p>>,
    /// A UDP tunnel super-frame: the fix-up of every segment's outer headers (the fields
    /// above describe the inner packet).
    outer: Option<tunnel::Outer>,
}

/// Length of the Fragment header IPv6 UFO inserts: exactly the minimal extension header.
const FRAG_HDR_LEN: usize = ipv6::EXT_MIN_LEN;

/// Offset of the TCP (`tcp`) or UDP checksum field in its header, as
/// `CsumState::Partial::offset` carries it.
const fn csum_offset(tcp: bool) -> u16 {
    if tcp {
        tcp::CHECKSUM_OFFSET as u16
    } else {
        udp::CHECKSUM_OFFSET as u16
    }
}

impl<'p> Segmenter<'p> {
    /// Number of segments the super-frame makes.
    pub fn segment_count(&self) -> usize {
        self.total
    }

    /// Segments not yet produced.
    pub fn remaining(&self) -> usize {
        self.total - self.next
    }

    /// Every segment has been produced.
    pub fn is_done(&self) -> bool {
        self.next == self.total
    }

    /// Transport payload length of the super-frame.
    pub fn payload_len(&self) -> usize {
        self.payload_len
    }

    /// Produce the next segments, up to the buffer's capacity, replacing what the buffer
    /// held. Returns an empty batch once done.
    pub fn next_batch<'b>(&mut self, buf: &'b mut SegmentBuf) -> Batch<'b>
    where
        'p: 'b,
    {
        buf.segs.clear();
        let n = self.remaining().min(buf.capacity);
        let first = self.next;
        if let Some(f) = self.fast {
            match (self.l3, self.l4) {
                (L3::Ipv4, L4::Tcp) => self.fast_batch::<true, true>(&f, buf, n),
                (L3::Ipv6, L4::Tcp) => self.fast_batch::<false, true>(&f, buf, n),
                (L3::Ipv4, _) => self.fast_batch::<true, false>(&f, buf, n),
                (L3::Ipv6, _) => self.fast_batch::<false, false>(&f, buf, n),
            }
        } else {
            buf.uniform = None;
            buf.hdrs.clear();
            // One reservation per batch instead of a capacity check per header.
            buf.hdrs
                .reserve(n * (self.src.payload_offset + FRAG_HDR_LEN));
            for _ in 0..n {
                self.emit(buf);
            }
        }
        if let Some(o) = &self.outer {
            o.fix_batch(buf, first, self.opts.fixed_id, self.pseudo);
        }
        Batch { src: self.src, buf }
    }
}

/// Plain sum of the big-endian 16-bit words of a header-sized slice of even length (at
/// most 128 KiB, so it cannot overflow): what `Sum::add` computes, without the general
/// engine's setup, for the few short slices summed per super-frame.
#[inline]
fn words(b: &[u8]) -> u32 {
    b.chunks_exact(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum()
}

/// 0 is "no checksum" for UDP: write the other representation of zero.
fn mangle0(c: u16) -> u16 {
    if c == 0 {
        0xFFFF
    } else {
        c
    }
}

/// Segment one linear frame and hand every segment, linearized, to `f` with its metadata:
/// the convenience path for pcap tools. `scratch` and `line` are reused between calls.
pub fn segment_linear(
    frame: &[u8],
    v: &Validated,
    opts: GsoOptions,
    scratch: &mut SegmentBuf,
    line: &mut Vec<u8>,
    mut f: impl FnMut(&[u8], OffloadMeta),
) -> Result<usize, GsoError> {
    let mut seg = Segmenter::from_linear(frame, v, opts)?;
    let mut n = 0;
    while !seg.is_done() {
        let batch = seg.next_batch(scratch);
        for s in batch.iter() {
            s.copy_to(line);
            f(line, s.meta);
            n += 1;
        }
    }
    Ok(n)
}
