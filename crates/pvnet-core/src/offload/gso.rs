//! Generic segmentation offload in software: split a TCP/UDP super-frame into wire-sized
//! segments exactly as the Linux kernel does for a device that lacks TSO/USO/UFO.
//!
//! Zero-copy: a segment is a freshly built header block (L2 through L4, copied from the
//! super-frame and patched) followed by slices of the super-frame's own payload, which is
//! never copied. Headers are written into a caller-owned [`SegmentBuf`] (a header arena plus
//! segment descriptors) that is reused from one super-frame to the next, so after warm-up
//! segmentation performs no heap allocation at all.
//!
//! ```text
//!   Packet / &[u8] + Layers + Gso ──► Segmenter ──next_batch(&mut SegmentBuf)──► Batch
//!                                        ▲  (cursor: continues where the      │ Segment:
//!                                        └── previous batch stopped)          │ header + payload
//!                                                                             ▼ slices → iovecs
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
//!   checksum; at most [`UDP_MAX_SEGMENTS`] segments (the kernel refuses more).
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
//! - A super-frame whose payload fits in one segment is passed through as one segment
//!   (as virtio_net_hdr_to_skb treats it as not GSO), its checksum finished as requested and
//!   its IPv4 header checksum recomputed.

use std::io::IoSlice;

use crate::csum::Sum;
use crate::packet::{CsumState, Frag, Gso, GsoKind, OffloadMeta, Packet, PacketError};
use crate::wire::{ip_proto, Layers, L3, L4};

/// Most segments the kernel makes of one USO super-frame (`UDP_MAX_SEGMENTS`, Linux ≥ 6.x);
/// a larger one is refused by the kernel and by [`Segmenter::new`].
pub const UDP_MAX_SEGMENTS: usize = 128;

/// Longest header block (L2 + L3 + L4, plus an inserted IPv6 Fragment header) a segment may
/// have. Two VLAN tags, an IPv6 header with a few extension headers and a full TCP header
/// fit with room to spare; a longer chain is refused rather than grown without bound.
pub const MAX_HEADER_LEN: usize = 512;

pub use super::CsumMode;

/// Segmentation options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GsoOptions {
    pub csum: CsumMode,
    /// Keep the IPv4 ID of the super-frame on every segment (the sender negotiated
    /// TSO_MANGLEID / SKB_GSO_TCP_FIXEDID) instead of incrementing it.
    pub fixed_id: bool,
    /// Identification of the Fragment header inserted by IPv6 UFO (choose it as RFC 7739
    /// says: unpredictable, e.g. random per datagram). Unused otherwise.
    pub ipv6_frag_id: u32,
}

/// Why a super-frame cannot be segmented. Offsets are from the start of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoError {
    /// `gso_size` is 0.
    ZeroGsoSize,
    /// UFO with a `gso_size` below 8: no fragment could carry data.
    UfoSizeTooSmall { size: u16 },
    /// The frame has no IPv4/IPv6 layer.
    NotIp,
    /// The GSO kind does not match the packet (TCPV4 on IPv6, a TCP kind on UDP, …).
    KindMismatch {
        kind: GsoKind,
        l3: L3,
        l4: Option<L4>,
    },
    /// The packet is an IP fragment; fragments are never segmented.
    Fragment { offset: usize },
    /// The layer offsets given do not describe this packet (out of order, beyond the data,
    /// or the headers are not all in the packet's head).
    BadLayers { offset: usize, len: usize },
    /// IPv4 version or header length field disagrees with the layers (IHL < 5, …).
    BadIpv4Header { offset: usize },
    /// IPv6 version field, or an extension header chain that does not lead to the transport
    /// header the layers name.
    BadIpv6Header { offset: usize },
    /// An IPv6 extension header the segmenter does not handle (AH, ESP, Mobility, …), or,
    /// for UFO, an extension header that would belong to the fragmentable part.
    UnsupportedExtHeader { offset: usize, next_header: u8 },
    /// TCP data offset below 5 words, or a header reaching past the packet.
    BadTcpDataOffset { offset: usize, data_offset: u8 },
    /// The IP length field (IPv4 total length / IPv6 payload length) disagrees with the
    /// packet's length.
    IpLengthMismatch {
        offset: usize,
        claimed: usize,
        actual: usize,
    },
    /// The UDP length field disagrees with the IP payload length.
    UdpLengthMismatch {
        offset: usize,
        claimed: usize,
        actual: usize,
    },
    /// The header block is longer than [`MAX_HEADER_LEN`].
    HeaderTooLong { len: usize },
    /// More USO segments than [`UDP_MAX_SEGMENTS`].
    TooManySegments { segments: usize, max: usize },
}

impl GsoError {
    /// A short fixed name for the cause, usable as a drop-counter key.
    pub fn cause(&self) -> &'static str {
        match self {
            GsoError::ZeroGsoSize => "gso_size_zero",
            GsoError::UfoSizeTooSmall { .. } => "ufo_size_too_small",
            GsoError::NotIp => "not_ip",
            GsoError::KindMismatch { .. } => "gso_kind_mismatch",
            GsoError::Fragment { .. } => "ip_fragment",
            GsoError::BadLayers { .. } => "bad_layers",
            GsoError::BadIpv4Header { .. } => "bad_ipv4_header",
            GsoError::BadIpv6Header { .. } => "bad_ipv6_header",
            GsoError::UnsupportedExtHeader { .. } => "unsupported_ext_header",
            GsoError::BadTcpDataOffset { .. } => "bad_tcp_data_offset",
            GsoError::IpLengthMismatch { .. } => "ip_length_mismatch",
            GsoError::UdpLengthMismatch { .. } => "udp_length_mismatch",
            GsoError::HeaderTooLong { .. } => "header_too_long",
            GsoError::TooManySegments { .. } => "too_many_segments",
        }
    }
}

impl core::fmt::Display for GsoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            GsoError::ZeroGsoSize => write!(f, "gso_size is 0"),
            GsoError::UfoSizeTooSmall { size } => {
                write!(
                    f,
                    "UFO gso_size {size} leaves no room for 8-byte fragment units"
                )
            }
            GsoError::NotIp => write!(f, "no IP layer to segment"),
            GsoError::KindMismatch { kind, l3, l4 } => {
                write!(f, "GSO kind {kind:?} does not match a {l3:?}/{l4:?} packet")
            }
            GsoError::Fragment { offset } => {
                write!(f, "IP header at offset {offset} is a fragment")
            }
            GsoError::BadLayers { offset, len } => write!(
                f,
                "layer offsets ({offset}) do not fit the packet's head ({len} bytes)"
            ),
            GsoError::BadIpv4Header { offset } => {
                write!(
                    f,
                    "IPv4 header at offset {offset} disagrees with the layers"
                )
            }
            GsoError::BadIpv6Header { offset } => {
                write!(
                    f,
                    "IPv6 header chain at offset {offset} disagrees with the layers"
                )
            }
            GsoError::UnsupportedExtHeader {
                offset,
                next_header,
            } => write!(
                f,
                "IPv6 extension header {next_header} at offset {offset} is not supported here"
            ),
            GsoError::BadTcpDataOffset {
                offset,
                data_offset,
            } => write!(
                f,
                "TCP header at offset {offset}: data offset {data_offset} words is invalid"
            ),
            GsoError::IpLengthMismatch {
                offset,
                claimed,
                actual,
            } => write!(
                f,
                "IP header at offset {offset} claims {claimed} bytes, packet has {actual}"
            ),
            GsoError::UdpLengthMismatch {
                offset,
                claimed,
                actual,
            } => write!(
                f,
                "UDP header at offset {offset} claims {claimed} bytes, IP payload is {actual}"
            ),
            GsoError::HeaderTooLong { len } => {
                write!(f, "header block of {len} bytes exceeds {MAX_HEADER_LEN}")
            }
            GsoError::TooManySegments { segments, max } => {
                write!(f, "{segments} UDP segments, at most {max} allowed")
            }
        }
    }
}

impl std::error::Error for GsoError {}

/// What is being done to the super-frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Payload fits in one segment: the frame goes out whole.
    PassThrough,
    Tcp,
    Uso,
    Ufo,
}

/// IPv6 UFO: where the Fragment header goes.
#[derive(Debug, Clone, Copy)]
struct FragInsert {
    /// Frame offset at which the Fragment header is inserted.
    at: usize,
    /// Frame offset of the Next Header field that must now name the Fragment header.
    nh_field: usize,
}

/// Where a segment's payload starts: a piece of the payload (0 = rest of the head, k =
/// fragment k - 1) and an offset inside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cursor {
    piece: usize,
    off: usize,
}

/// The super-frame's bytes: the head (holding every header and maybe payload) and the
/// payload fragments that follow it.
#[derive(Debug, Clone, Copy)]
struct Source<'p> {
    head: &'p [u8],
    frags: &'p [Frag<'p>],
    /// Where the payload starts in the head.
    payload_offset: usize,
}

impl<'p> Source<'p> {
    fn piece(&self, i: usize) -> &'p [u8] {
        if i == 0 {
            self.head.get(self.payload_offset..).unwrap_or_default()
        } else {
            self.frags
                .get(i - 1)
                .map(Frag::as_slice)
                .unwrap_or_default()
        }
    }

    fn pieces(&self) -> usize {
        1 + self.frags.len()
    }

    /// Piece `i` as stored: the whole head for 0 (offsets in a [`SegDesc`] count from the
    /// start of the frame), fragment `i - 1` otherwise.
    #[inline]
    fn raw_piece(&self, i: usize) -> &'p [u8] {
        if i == 0 {
            self.head
        } else {
            self.frags
                .get(i - 1)
                .map(Frag::as_slice)
                .unwrap_or_default()
        }
    }

    /// Where the payload byte at `at` is stored: piece and offset inside [`Source::raw_piece`].
    #[inline]
    fn locate(&self, at: Cursor) -> (usize, usize) {
        if at.piece == 0 {
            (0, self.payload_offset + at.off)
        } else {
            (at.piece, at.off)
        }
    }

    /// The slices of `len` payload bytes starting at offset `off` of raw piece `piece`.
    #[inline]
    fn slices_at(&self, piece: usize, off: usize, len: usize) -> PayloadSlices<'p> {
        let rest = self.raw_piece(piece).get(off..).unwrap_or_default();
        let first = rest.get(..len).unwrap_or(rest);
        PayloadSlices {
            first,
            more: self.frags.get(piece..).unwrap_or_default(),
            left: len - first.len(),
        }
    }

    /// The slices of `len` payload bytes from `at`.
    fn slices(&self, at: Cursor, len: usize) -> PayloadSlices<'p> {
        let (piece, off) = self.locate(at);
        self.slices_at(piece, off, len)
    }

    /// Advance a cursor by `n` bytes.
    #[inline]
    fn advance(&self, c: Cursor, n: usize) -> Cursor {
        // Fast path: still inside the same piece (always, for a linear frame).
        if c.off + n < self.piece(c.piece).len() {
            return Cursor {
                piece: c.piece,
                off: c.off + n,
            };
        }
        self.advance_slow(c, n)
    }

    fn advance_slow(&self, mut c: Cursor, mut n: usize) -> Cursor {
        while c.piece < self.pieces() {
            let avail = self.piece(c.piece).len() - c.off.min(self.piece(c.piece).len());
            if n < avail {
                c.off += n;
                return c;
            }
            n -= avail;
            c.piece += 1;
            c.off = 0;
            if n == 0 {
                return c;
            }
        }
        c
    }
}

/// Iterator over the payload slices of one segment.
#[derive(Debug, Clone)]
pub struct PayloadSlices<'p> {
    /// The payload's bytes in the piece where it starts (not yet returned).
    first: &'p [u8],
    /// The pieces after that one.
    more: &'p [Frag<'p>],
    /// Bytes to take from `more`.
    left: usize,
}

impl<'p> Iterator for PayloadSlices<'p> {
    type Item = &'p [u8];

    fn next(&mut self) -> Option<&'p [u8]> {
        if !self.first.is_empty() {
            return Some(core::mem::take(&mut self.first));
        }
        while self.left > 0 {
            let (f, more) = self.more.split_first()?;
            self.more = more;
            let piece = f.as_slice();
            if piece.is_empty() {
                continue;
            }
            let take = piece.len().min(self.left);
            self.left -= take;
            return Some(&piece[..take]);
        }
        None
    }
}

/// One segment's descriptor in a [`SegmentBuf`]. The payload is resolved when the segment
/// is built: it starts at byte `payload_off` of piece `payload_piece` (0: the head, counted
/// from the start of the frame; k: fragment k - 1).
///
/// 32-bit fields keep it to 20 bytes: a super-frame is at most 64 KiB of IP packet behind
/// at most [`MAX_HEADER_LEN`] bytes of headers, so it has at most 65535 segments, and the
/// header arena of one batch stays far below 4 GiB.
#[derive(Debug, Clone, Copy, Default)]
struct SegDesc {
    hdr_start: u32,
    hdr_len: u32,
    payload_piece: u32,
    payload_off: u32,
    payload_len: u32,
}

/// Reusable output storage: a header arena and segment descriptors, with a capacity in
/// segments. Allocates only while growing to the largest header block seen (warm-up).
#[derive(Debug, Clone)]
pub struct SegmentBuf {
    hdrs: Vec<u8>,
    segs: Vec<SegDesc>,
    /// Checksum state of every segment of the batch (the same for all segments of a
    /// super-frame).
    csum: CsumState,
    /// A batch from the TCP/USO loop, described arithmetically instead of by `segs`.
    uniform: Option<Uniform>,
    capacity: usize,
}

/// The segments of a batch made by [`Segmenter::fast_batch`]: segment `k` has its header at
/// `(k + 1) * stride` in the arena and the `size` payload bytes of the head from
/// `payload_off + k * size` (fewer for the last, which ends at `payload_end`).
#[derive(Debug, Clone, Copy)]
struct Uniform {
    count: usize,
    stride: usize,
    hdr_len: usize,
    payload_off: usize,
    size: usize,
    payload_end: usize,
}

impl SegmentBuf {
    /// Storage for up to `capacity` segments per batch (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        SegmentBuf {
            // Typical TCPv4 headers are 54..86 bytes; 128 per segment avoids growth.
            hdrs: Vec::with_capacity(capacity * 128),
            segs: Vec::with_capacity(capacity),
            csum: CsumState::None,
            uniform: None,
            capacity,
        }
    }

    /// Segments per batch.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl Default for SegmentBuf {
    fn default() -> Self {
        Self::with_capacity(64)
    }
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
    /// IPv4 header sum without total length, ID, flags/fragment offset and checksum.
    ip4_base: Sum,
    ip4_id: u16,
    ip4_frag: u16,
    tcp_seq: u32,
    /// UFO: the complete UDP checksum of the whole datagram.
    ufo_csum: u16,
    frag6: Option<FragInsert>,
    /// TCP/USO with the whole payload in the head: the per-super-frame constants of the
    /// specialised loop ([`Segmenter::fast_batch`]).
    fast: Option<Fast<'p>>,
}

/// Everything about a TCP/USO segment's header that does not depend on the segment, worked
/// out once per super-frame. Sums are 16-bit one's-complement sums (folded, as `u64` so that
/// a few may be added without overflow); only the per-segment fields are added to them.
#[derive(Debug, Clone, Copy)]
struct Fast<'p> {
    /// What is copied into every header slot: the header block, padded with the bytes that
    /// follow it in the head up to 64 or 128 bytes when the head has them, so that the copy
    /// has a fixed size. Its length is the slot stride in the header arena.
    tmpl: &'p [u8],
    /// Pseudo-header sum without the length.
    pseudo: u64,
    /// IPv4 header sum without total length, ID and checksum (the flags word included).
    ip4: u64,
    /// Transport header sum without the per-segment words (TCP: sequence number,
    /// offset/flags and checksum; UDP: length and checksum).
    l4: u64,
    /// TCP: the data offset byte and the super-frame's flags.
    tcp_doff: u8,
    tcp_flags: u8,
}

fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(s) => u16::from_be_bytes([s[0], s[1]]),
        None => 0,
    }
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

const IPV4_ID: usize = 4;
const IPV4_TOTAL_LEN: usize = 2;
const IPV4_FRAG: usize = 6;
const IPV4_CSUM: usize = 10;
const IPV4_MF: u16 = 0x2000;
const IPV6_PAYLOAD_LEN: usize = 4;
const IPV6_HDR: usize = 40;
const FRAG_HDR_LEN: usize = 8;
const TCP_SEQ: usize = 4;
const TCP_FLAGS: usize = 13;
const TCP_CSUM: u16 = 16;
const UDP_LEN: usize = 4;
const UDP_CSUM: u16 = 6;

impl<'p> Segmenter<'p> {
    /// Prepare to segment `pkt`, whose headers (through the transport header) must be in its
    /// head, described by `layers` (from [`crate::wire::parse`] or vnet validation). The
    /// packet's length must be exactly the IP packet's (no link padding).
    pub fn new(
        pkt: &'p Packet<'_>,
        layers: &Layers,
        gso: Gso,
        opts: GsoOptions,
    ) -> Result<Self, GsoError> {
        let src = Source {
            head: pkt.head(),
            frags: pkt.frags(),
            payload_offset: layers.payload_offset,
        };
        Self::build(src, pkt.len(), layers, gso, opts)
    }

    /// Prepare to segment one linear frame (a pcap record, a tap read).
    #[inline]
    pub fn from_linear(
        frame: &'p [u8],
        layers: &Layers,
        gso: Gso,
        opts: GsoOptions,
    ) -> Result<Self, GsoError> {
        let src = Source {
            head: frame,
            frags: &[],
            payload_offset: layers.payload_offset,
        };
        Self::build(src, frame.len(), layers, gso, opts)
    }

    fn build(
        src: Source<'p>,
        total_len: usize,
        ly: &Layers,
        gso: Gso,
        opts: GsoOptions,
    ) -> Result<Self, GsoError> {
        let head = src.head;
        if gso.size == 0 {
            return Err(GsoError::ZeroGsoSize);
        }
        let l3 = ly.l3.ok_or(GsoError::NotIp)?;
        // Every offset must be in order and every header in the head: what follows only
        // slices `head` below `payload_offset`.
        if ly.fragment {
            return Err(GsoError::Fragment {
                offset: ly.l3_offset,
            });
        }
        let min_l3 = match l3 {
            L3::Ipv4 => 20,
            L3::Ipv6 => IPV6_HDR,
        };
        let min_l4 = match ly.l4 {
            Some(L4::Tcp) => 20,
            _ => 8,
        };
        let ordered = ly.l3_len >= min_l3
            && ly.l4_len >= min_l4
            && ly.l3_offset <= ly.l4_offset
            && ly.l4_offset + ly.l4_len == ly.payload_offset
            && ly.l3_offset + ly.l3_len == ly.l4_offset
            && ly.payload_offset <= ly.ip_end
            && ly.payload_offset <= head.len();
        if !ordered {
            return Err(GsoError::BadLayers {
                offset: ly.payload_offset,
                len: head.len(),
            });
        }
        let l4 = ly.l4.ok_or(GsoError::Fragment {
            offset: ly.l3_offset,
        })?;
        let kind_ok = matches!(
            (gso.kind, l3, l4),
            (GsoKind::Tcpv4, L3::Ipv4, L4::Tcp)
                | (GsoKind::Tcpv6, L3::Ipv6, L4::Tcp)
                | (GsoKind::UdpL4 | GsoKind::Ufo, _, L4::Udp)
        );
        if !kind_ok {
            return Err(GsoError::KindMismatch {
                kind: gso.kind,
                l3,
                l4: Some(l4),
            });
        }
        if total_len != ly.ip_end {
            return Err(GsoError::IpLengthMismatch {
                offset: ly.l3_offset,
                claimed: ly.ip_end - ly.l3_offset,
                actual: total_len.saturating_sub(ly.l3_offset),
            });
        }
        let (l3o, l4o) = (ly.l3_offset, ly.l4_offset);
        let ip_len = total_len - l3o;

        // Re-read from the bytes what the layers claim: they may come from elsewhere.
        let proto = match l4 {
            L4::Tcp => ip_proto::TCP,
            _ => ip_proto::UDP,
        };
        let mut frag6 = None;
        match l3 {
            L3::Ipv4 => {
                let vihl = head[l3o];
                let ihl = usize::from(vihl & 0x0f) * 4;
                if vihl >> 4 != 4 || ihl < 20 || ihl != ly.l3_len || head[l3o + 9] != proto {
                    return Err(GsoError::BadIpv4Header { offset: l3o });
                }
                let claimed = usize::from(be16(head, l3o + IPV4_TOTAL_LEN));
                if claimed != ip_len {
                    return Err(GsoError::IpLengthMismatch {
                        offset: l3o,
                        claimed,
                        actual: ip_len,
                    });
                }
                if be16(head, l3o + IPV4_FRAG) & 0x3fff != 0 {
                    return Err(GsoError::Fragment { offset: l3o });
                }
            }
            L3::Ipv6 => {
                if head[l3o] >> 4 != 6 || ly.l3_len < IPV6_HDR {
                    return Err(GsoError::BadIpv6Header { offset: l3o });
                }
                let claimed = usize::from(be16(head, l3o + IPV6_PAYLOAD_LEN)) + IPV6_HDR;
                if claimed != ip_len {
                    return Err(GsoError::IpLengthMismatch {
                        offset: l3o,
                        claimed,
                        actual: ip_len,
                    });
                }
                let (insert, fragmentable) = walk_v6(head, l3o, l4o, proto)?;
                // UFO with extension headers in the fragmentable part would need them in the
                // first fragment only (the kernel copies them into every fragment, which
                // corrupts the reassembled datagram): refuse rather than emit either.
                if fragmentable && gso.kind == GsoKind::Ufo {
                    return Err(GsoError::UnsupportedExtHeader {
                        offset: insert.at,
                        next_header: head[insert.nh_field],
                    });
                }
                frag6 = Some(insert);
            }
        }
        let l4_total = total_len - l4o;
        match l4 {
            L4::Tcp => {
                let doff = head[l4o + 12] >> 4;
                let thlen = usize::from(doff) * 4;
                if doff < 5 || thlen != ly.l4_len || thlen > l4_total {
                    return Err(GsoError::BadTcpDataOffset {
                        offset: l4o,
                        data_offset: doff,
                    });
                }
            }
            _ => {
                let claimed = usize::from(be16(head, l4o + UDP_LEN));
                if ly.l4_len != 8 || claimed != l4_total {
                    return Err(GsoError::UdpLengthMismatch {
                        offset: l4o,
                        claimed,
                        actual: l4_total,
                    });
                }
            }
        }

        let payload_len = total_len - ly.payload_offset;
        let size = usize::from(gso.size);
        let mut mode = match gso.kind {
            GsoKind::Tcpv4 | GsoKind::Tcpv6 => Mode::Tcp,
            GsoKind::UdpL4 => Mode::Uso,
            GsoKind::Ufo => Mode::Ufo,
        };
        // Not a super-frame after all when the data fits in one segment; for UFO the UDP
        // header counts (virtio_net_hdr_to_skb compares the same quantities).
        let fits = match mode {
            Mode::Ufo => l4_total <= size,
            _ => payload_len <= size,
        };
        if fits {
            mode = Mode::PassThrough;
        }
        let (seg_size, total, hdr_end) = match mode {
            Mode::PassThrough => (payload_len, 1, ly.payload_offset),
            Mode::Tcp | Mode::Uso => (size, payload_len.div_ceil(size), ly.payload_offset),
            Mode::Ufo => {
                // Fragment offsets count 8-byte units: every fragment but the last must carry
                // a multiple of 8 bytes. The kernel uses gso_size as is, so a guest handing
                // it a size that is not a multiple of 8 gets overlapping fragments; this
                // rounds down instead.
                let fs = size & !7;
                if fs < 8 {
                    return Err(GsoError::UfoSizeTooSmall { size: gso.size });
                }
                (fs, (l4_total).div_ceil(fs), l4o)
            }
        };
        if mode == Mode::Uso && total > UDP_MAX_SEGMENTS {
            return Err(GsoError::TooManySegments {
                segments: total,
                max: UDP_MAX_SEGMENTS,
            });
        }
        let hdr_block = ly.payload_offset + if frag6.is_some() { FRAG_HDR_LEN } else { 0 };
        if hdr_block > MAX_HEADER_LEN {
            return Err(GsoError::HeaderTooLong { len: hdr_block });
        }
        if mode != Mode::Ufo {
            // Only UFO inserts a Fragment header.
            frag6 = None;
        }

        // Pseudo-header without its length: the per-segment length is added later.
        let pseudo = {
            let dst = ly.pseudo_dst_offset;
            match l3 {
                L3::Ipv4 => {
                    let s = head.get(l3o + 12..l3o + 16);
                    let d = head.get(dst..dst + 4);
                    match (s, d) {
                        (Some(s), Some(d)) if dst < ly.payload_offset => {
                            let mut sum = Sum::new();
                            sum.add_u32(words(s) + words(d) + u32::from(proto));
                            sum
                        }
                        _ => return Err(GsoError::BadIpv4Header { offset: l3o }),
                    }
                }
                L3::Ipv6 => {
                    let s = head.get(l3o + 8..l3o + 24);
                    let d = head.get(dst..dst + 16);
                    match (s, d) {
                        (Some(s), Some(d)) if dst + 16 <= ly.payload_offset => {
                            let mut sum = Sum::new();
                            sum.add_u32(words(s) + words(d) + u32::from(proto));
                            sum
                        }
                        _ => return Err(GsoError::BadIpv6Header { offset: l3o }),
                    }
                }
            }
        };

        let mut ip4_base = Sum::new();
        let (mut ip4_id, mut ip4_frag) = (0, 0);
        if l3 == L3::Ipv4 {
            let hdr = &head[l3o..l4o];
            // Words 0, 8.. of the header; total length (2), ID (4), flags (6) and
            // checksum (10) change per segment and are added then.
            ip4_base.add_u32(words(&hdr[0..2]) + words(&hdr[8..10]) + words(&hdr[12..]));
            ip4_id = be16(hdr, IPV4_ID);
            ip4_frag = be16(hdr, IPV4_FRAG);
        }

        let tcp_seq = if l4 == L4::Tcp {
            u32::from_be_bytes([head[l4o + 4], head[l4o + 5], head[l4o + 6], head[l4o + 7]])
        } else {
            0
        };
        let mut ufo_csum = 0;
        if mode == Mode::Ufo {
            // The checksum covers the whole datagram, so it is computed once, up front; it
            // is complete in both modes (no device completes a checksum across fragments).
            let mut sum = pseudo;
            sum.add_u32(l4_total as u32);
            sum.add(&head[l4o..l4o + 6]);
            for p in src.slices(Cursor::default(), payload_len) {
                sum.add(p);
            }
            ufo_csum = mangle0(sum.checksum());
        }
        let fast = if matches!(mode, Mode::Tcp | Mode::Uso) && head.len() == total_len {
            let mut ip4 = ip4_base;
            ip4.add_u16(ip4_frag);
            Some(Fast::new(head, l4, l4o, ly.payload_offset, pseudo, ip4))
        } else {
            None
        };
        // Built in place as the return value: the struct is a few hundred bytes.
        Ok(Segmenter {
            src,
            mode,
            opts,
            l3,
            l4,
            l3_offset: l3o,
            l4_offset: l4o,
            hdr_end,
            seg_size,
            payload_len,
            total,
            next: 0,
            cursor: Cursor::default(),
            pseudo,
            ip4_base,
            ip4_id,
            ip4_frag,
            tcp_seq,
            ufo_csum,
            frag6,
            fast,
        })
    }

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
        if let Some(f) = self.fast {
            match (self.l3, self.l4) {
                (L3::Ipv4, L4::Tcp) => self.fast_batch::<true, true>(&f, buf, n),
                (L3::Ipv6, L4::Tcp) => self.fast_batch::<false, true>(&f, buf, n),
                (L3::Ipv4, _) => self.fast_batch::<true, false>(&f, buf, n),
                (L3::Ipv6, _) => self.fast_batch::<false, false>(&f, buf, n),
            }
            return Batch { src: self.src, buf };
        }
        buf.uniform = None;
        buf.hdrs.clear();
        // One reservation per batch instead of a capacity check per header.
        buf.hdrs
            .reserve(n * (self.src.payload_offset + FRAG_HDR_LEN));
        for _ in 0..n {
            self.emit(buf);
        }
        Batch { src: self.src, buf }
    }

    /// Build the next `n` TCP (`TCP`) or USO segments of an IPv4 (`V4`) or IPv6 super-frame
    /// whose payload lies in the head: the same bytes as [`Segmenter::emit`], with the
    /// header block copied into fixed-stride slots and only the per-segment fields written,
    /// their checksums added from precomputed sums.
    ///
    /// Every segment but the first and the last is full-size and has the same lengths,
    /// TCP flags and partial checksum, so slot 0 of the arena gets a second template with
    /// those already written, and a middle segment only needs its IPv4 ID and header
    /// checksum, its TCP sequence number and (Full mode) its transport checksum.
    #[inline(always)]
    fn fast_batch<const V4: bool, const TCP: bool>(
        &mut self,
        f: &Fast<'p>,
        buf: &mut SegmentBuf,
        n: usize,
    ) {
        use crate::csum::{fold64, sum_slice};
        use crate::wire::tcp::{CWR, FIN, PSH};

        let stride = f.tmpl.len();
        let need = (n + 1) * stride;
        // The arena only grows; slots are overwritten whole.
        if buf.hdrs.len() < need {
            buf.hdrs.resize(need, 0);
        }
        let (l3o, l4o, hdr_len) = (self.l3_offset, self.l4_offset, self.src.payload_offset);
        let l4_hdr = hdr_len - l4o;
        let l3_to_l4 = l4o - l3o;
        let size = self.seg_size;
        let first = self.next;
        let start = hdr_len + first * size;
        let payload = self.src.head.get(start..).unwrap_or_default();
        let partial = self.opts.csum == CsumMode::Partial;
        let field = l4o + usize::from(if TCP { TCP_CSUM } else { UDP_CSUM });
        let csum = if partial {
            CsumState::Partial {
                start: l4o as u16,
                offset: if TCP { TCP_CSUM } else { UDP_CSUM },
            }
        } else {
            CsumState::None
        };
        let (ip4_id, fixed_id, seq0, total) =
            (self.ip4_id, self.opts.fixed_id, self.tcp_seq, self.total);
        let id_of = |i: usize| {
            if fixed_id {
                ip4_id
            } else {
                ip4_id.wrapping_add(i as u16)
            }
        };
        let seq_of = |i: usize| seq0.wrapping_add((i * size) as u32);
        let seq_sum = |seq: u32| u64::from(seq >> 16) + u64::from(seq & 0xffff);

        // Write every per-segment field of segment `i` with payload `p` into `slot`, which
        // holds a copy of the super-frame's header block.
        let edge = |slot: &mut [u8], i: usize, p: &[u8]| {
            let l4_len = l4_hdr + p.len();
            if V4 {
                let tot = (l3_to_l4 + l4_len) as u16;
                let id = id_of(i);
                put16(slot, l3o + IPV4_TOTAL_LEN, tot);
                put16(slot, l3o + IPV4_ID, id);
                let c = !fold64(f.ip4 + u64::from(tot) + u64::from(id));
                put16(slot, l3o + IPV4_CSUM, c);
            } else {
                let plen = (l3_to_l4 - IPV6_HDR + l4_len) as u16;
                put16(slot, l3o + IPV6_PAYLOAD_LEN, plen);
            }
            // Pseudo-header with this segment's length.
            let mut sum = f.pseudo + l4_len as u64;
            if TCP {
                let seq = seq_of(i);
                let mut flags = f.tcp_flags;
                if i + 1 != total {
                    flags &= !(FIN | PSH);
                }
                if i > 0 {
                    flags &= !CWR;
                }
                put32(slot, l4o + TCP_SEQ, seq);
                if let Some(b) = slot.get_mut(l4o + TCP_FLAGS) {
                    *b = flags;
                }
                if !partial {
                    sum += f.l4
                        + seq_sum(seq)
                        + u64::from(u16::from_be_bytes([f.tcp_doff, flags]))
                        + sum_slice(p);
                }
            } else {
                put16(slot, l4o + UDP_LEN, l4_len as u16);
                if !partial {
                    sum += f.l4 + l4_len as u64 + sum_slice(p);
                }
            }
            let folded = fold64(sum);
            let value = match (partial, TCP) {
                (true, _) => folded,
                // tcp_gso_segment keeps a 0 result (gso_make_checksum).
                (false, true) => !folded,
                // UDP: 0 means "no checksum".
                (false, false) => mangle0(!folded),
            };
            put16(slot, field, value);
        };

        // The middle segments' constants and template (slot 0).
        let mid_l4_len = l4_hdr + size;
        let mid_tot = (l3_to_l4 + mid_l4_len) as u16;
        let mid_flags = f.tcp_flags & !(FIN | PSH | CWR);
        let mid_ip4 = f.ip4 + u64::from(mid_tot);
        // Transport checksum of a middle segment without its sequence number and payload.
        let mid_l4 = f.pseudo
            + mid_l4_len as u64
            + f.l4
            + if TCP {
                u64::from(u16::from_be_bytes([f.tcp_doff, mid_flags]))
            } else {
                mid_l4_len as u64
            };
        buf.csum = csum;
        let SegmentBuf { hdrs, uniform, .. } = buf;
        let (mid, slots) = hdrs[..need].split_at_mut(stride);
        copy_hdr(mid, f.tmpl);
        if V4 {
            put16(mid, l3o + IPV4_TOTAL_LEN, mid_tot);
        } else {
            let plen = (l3_to_l4 - IPV6_HDR + mid_l4_len) as u16;
            put16(mid, l3o + IPV6_PAYLOAD_LEN, plen);
        }
        if TCP {
            if let Some(b) = mid.get_mut(l4o + TCP_FLAGS) {
                *b = mid_flags;
            }
        } else {
            put16(mid, l4o + UDP_LEN, mid_l4_len as u16);
        }
        if partial {
            put16(mid, field, fold64(f.pseudo + mid_l4_len as u64));
        }
        let mid: &[u8] = mid;

        for (k, (slot, p)) in slots
            .chunks_exact_mut(stride)
            .zip(payload.chunks(size))
            .enumerate()
        {
            let i = first + k;
            if i == 0 || i + 1 == total {
                copy_hdr(slot, f.tmpl);
                edge(slot, i, p);
            } else {
                copy_hdr(slot, mid);
                if V4 {
                    let id = id_of(i);
                    put16(slot, l3o + IPV4_ID, id);
                    put16(slot, l3o + IPV4_CSUM, !fold64(mid_ip4 + u64::from(id)));
                }
                let mut sum = mid_l4;
                if TCP {
                    let seq = seq_of(i);
                    put32(slot, l4o + TCP_SEQ, seq);
                    sum += seq_sum(seq);
                }
                if !partial {
                    let c = !fold64(sum + sum_slice(p));
                    put16(slot, field, if TCP { c } else { mangle0(c) });
                }
            }
        }
        *uniform = Some(Uniform {
            count: n,
            stride,
            hdr_len,
            payload_off: start,
            size,
            payload_end: hdr_len + self.payload_len,
        });
        self.next += n;
    }

    /// Build segment `self.next` into `buf`.
    fn emit(&mut self, buf: &mut SegmentBuf) {
        let i = self.next;
        let last = i + 1 == self.total;
        let head = self.src.head;
        let l3o = self.l3_offset;
        let l4o = self.l4_offset;

        // Payload of this segment; for UFO the first fragment's unit includes the UDP
        // header, which is part of the header block instead.
        let (payload_len, hdr_src_end) = match self.mode {
            Mode::Ufo => {
                let l4_total = self.payload_len + 8;
                let start = i * self.seg_size;
                let unit = self.seg_size.min(l4_total - start);
                if i == 0 {
                    (unit - 8, self.src.payload_offset)
                } else {
                    (unit, self.hdr_end)
                }
            }
            _ => {
                let start = i * self.seg_size;
                (self.seg_size.min(self.payload_len - start), self.hdr_end)
            }
        };
        let insert = self.frag6.map_or(0, |_| FRAG_HDR_LEN);
        let hdr_len = hdr_src_end + insert;
        let hdr_start = buf.hdrs.len();
        match self.frag6 {
            None => buf.hdrs.extend_from_slice(&head[..hdr_src_end]),
            Some(f) => {
                buf.hdrs.extend_from_slice(&head[..f.at]);
                buf.hdrs.extend_from_slice(&[0; FRAG_HDR_LEN]);
                buf.hdrs.extend_from_slice(&head[f.at..hdr_src_end]);
            }
        }
        let hdr = &mut buf.hdrs[hdr_start..];
        let seg_len = hdr_len + payload_len;
        // Length of the segment from the transport header on (TCP/UDP length).
        let l4_len = seg_len - l4o;

        // Network layer.
        match self.l3 {
            L3::Ipv4 => {
                let id = match self.mode {
                    Mode::Ufo | Mode::PassThrough => self.ip4_id,
                    _ if self.opts.fixed_id => self.ip4_id,
                    _ => self.ip4_id.wrapping_add(i as u16),
                };
                let frag = if self.mode == Mode::Ufo {
                    let off = (i * self.seg_size / 8) as u16;
                    let mf = if last { 0 } else { IPV4_MF };
                    // The whole field is rewritten: DF is cleared in fragments, as the kernel
                    // does (inet_gso_segment), since they are fragments already.
                    mf | off
                } else {
                    self.ip4_frag
                };
                let tot = (seg_len - l3o) as u16;
                let mut sum = self.ip4_base;
                sum.add_u16(tot);
                sum.add_u16(id);
                sum.add_u16(frag);
                put16(hdr, l3o + IPV4_TOTAL_LEN, tot);
                put16(hdr, l3o + IPV4_ID, id);
                put16(hdr, l3o + IPV4_FRAG, frag);
                put16(hdr, l3o + IPV4_CSUM, sum.checksum());
            }
            L3::Ipv6 => {
                put16(
                    hdr,
                    l3o + IPV6_PAYLOAD_LEN,
                    (seg_len - l3o - IPV6_HDR) as u16,
                );
                if let Some(f) = self.frag6 {
                    let nh = hdr[f.nh_field];
                    hdr[f.nh_field] = ip_proto::IPV6_FRAG;
                    let off = (i * self.seg_size) as u16 & !7;
                    let m = u16::from(!last);
                    let fh = &mut hdr[f.at..f.at + FRAG_HDR_LEN];
                    fh[0] = nh;
                    fh[1] = 0;
                    fh[2..4].copy_from_slice(&(off | m).to_be_bytes());
                    fh[4..8].copy_from_slice(&self.opts.ipv6_frag_id.to_be_bytes());
                }
            }
        }

        let payload = self.cursor;
        self.cursor = self.src.advance(self.cursor, payload_len);
        let (payload_piece, payload_off) = self.src.locate(payload);
        let l4_hdr_at = l4o + insert;
        // Transport layer.
        let csum_state = match (self.mode, self.l4) {
            (Mode::Ufo, _) => {
                if i == 0 {
                    put16(hdr, l4_hdr_at + UDP_CSUM as usize, self.ufo_csum);
                }
                // Complete and verified by construction: the kernel marks UFO fragments
                // CHECKSUM_UNNECESSARY (DATA_VALID on a tap).
                CsumState::Unnecessary
            }
            (mode, L4::Tcp) => {
                if mode == Mode::Tcp {
                    let seq = self.tcp_seq.wrapping_add((i * self.seg_size) as u32);
                    put32(hdr, l4o + TCP_SEQ, seq);
                    let mut flags = hdr[l4o + TCP_FLAGS];
                    if !last {
                        flags &= !(crate::wire::tcp::FIN | crate::wire::tcp::PSH);
                    }
                    if i > 0 {
                        flags &= !crate::wire::tcp::CWR;
                    }
                    hdr[l4o + TCP_FLAGS] = flags;
                }
                // tcp_gso_segment completes with gso_make_checksum, which keeps a 0 result;
                // skb_checksum_help (the pass-through path) writes 0xFFFF instead.
                let mangle = mode == Mode::PassThrough;
                self.l4_checksum(hdr, TCP_CSUM, l4_len, payload, payload_len, mangle)
            }
            (_, _) => {
                put16(hdr, l4o + UDP_LEN, l4_len as u16);
                // UDP: 0 means "no checksum", so a computed 0 is always sent as 0xFFFF.
                self.l4_checksum(hdr, UDP_CSUM, l4_len, payload, payload_len, true)
            }
        };

        buf.csum = csum_state;
        buf.segs.push(SegDesc {
            hdr_start: hdr_start as u32,
            hdr_len: hdr_len as u32,
            payload_piece: payload_piece as u32,
            payload_off: payload_off as u32,
            payload_len: payload_len as u32,
        });
        self.next += 1;
    }

    /// Fill the checksum field at `field` past the transport header for a segment whose L4 part is `l4_len`
    /// bytes: the pseudo-header sum (Partial) or the complete checksum, a 0 result written
    /// as 0xFFFF when `mangle`.
    fn l4_checksum(
        &self,
        hdr: &mut [u8],
        field: u16,
        l4_len: usize,
        payload: Cursor,
        payload_len: usize,
        mangle: bool,
    ) -> CsumState {
        let l4o = self.l4_offset;
        let at = l4o + usize::from(field);
        let mut sum = self.pseudo;
        sum.add_u32(l4_len as u32);
        if self.opts.csum == CsumMode::Partial {
            put16(hdr, at, sum.fold());
            return CsumState::Partial {
                start: l4o as u16,
                offset: field,
            };
        }
        put16(hdr, at, 0);
        sum.add(&hdr[l4o..]);
        for p in self.src.slices(payload, payload_len) {
            sum.add(p);
        }
        let c = sum.checksum();
        put16(hdr, at, if mangle { mangle0(c) } else { c });
        CsumState::None
    }
}

impl<'p> Fast<'p> {
    /// The constants of the TCP/USO loop for the validated headers `head[..hdr_len]` with
    /// the transport header at `l4o`; `ip4` is the IPv4 header's constant sum.
    fn new(head: &'p [u8], l4: L4, l4o: usize, hdr_len: usize, pseudo: Sum, ip4: Sum) -> Self {
        let th = &head[l4o..hdr_len];
        let (l4, tcp_doff, tcp_flags) = if l4 == L4::Tcp {
            let csum = usize::from(TCP_CSUM);
            let w = words(&th[..TCP_SEQ])
                + words(&th[TCP_SEQ + 4..TCP_FLAGS - 1])
                + words(&th[TCP_FLAGS + 1..csum])
                + words(&th[csum + 2..]);
            (w, th[TCP_FLAGS - 1], th[TCP_FLAGS])
        } else {
            (words(&th[..UDP_LEN]), 0, 0)
        };
        // A fixed-size copy is a few vector moves; a variable one is a call to memcpy.
        let copy = match hdr_len {
            0..=64 if head.len() >= 64 => 64,
            65..=128 if head.len() >= 128 => 128,
            n => n,
        };
        Fast {
            tmpl: &head[..copy],
            pseudo: u64::from(pseudo.fold()),
            ip4: u64::from(ip4.fold()),
            l4: u64::from(l4),
            tcp_doff,
            tcp_flags,
        }
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

/// Copy the header template into a slot of the same length; the usual lengths are fixed-size
/// copies.
#[inline(always)]
fn copy_hdr(dst: &mut [u8], src: &[u8]) {
    if let (Ok(d), Ok(s)) = (
        <&mut [u8; 64]>::try_from(&mut *dst),
        <&[u8; 64]>::try_from(src),
    ) {
        *d = *s;
    } else if let (Ok(d), Ok(s)) = (
        <&mut [u8; 128]>::try_from(&mut *dst),
        <&[u8; 128]>::try_from(src),
    ) {
        *d = *s;
    } else {
        dst.copy_from_slice(src);
    }
}

/// 0 is "no checksum" for UDP: write the other representation of zero.
fn mangle0(c: u16) -> u16 {
    if c == 0 {
        0xFFFF
    } else {
        c
    }
}

/// Walk the IPv6 extension headers between `l3o + 40` and `l4o`, checking they lead to
/// `proto`. Return where a UFO Fragment header would be inserted.
fn walk_v6(head: &[u8], l3o: usize, l4o: usize, proto: u8) -> Result<(FragInsert, bool), GsoError> {
    let nh_field = l3o + 6;
    let mut nh = head[nh_field];
    let mut at = l3o + IPV6_HDR;
    // End of the unfragmentable part: after Hop-by-Hop, Routing and Destination options
    // that precede a Routing header (RFC 8200 4.5).
    let mut insert = FragInsert { at, nh_field };
    let mut fragmentable = false;
    while at < l4o {
        match nh {
            ip_proto::HOPOPT | ip_proto::IPV6_ROUTE | ip_proto::IPV6_OPTS => {
                let len = match head.get(at + 1) {
                    Some(&l) => (usize::from(l) + 1) * 8,
                    None => return Err(GsoError::BadIpv6Header { offset: at }),
                };
                if at + len > l4o {
                    return Err(GsoError::BadIpv6Header { offset: at });
                }
                // Destination options count as unfragmentable only before a Routing header.
                let followed_by_routing = head[at] == ip_proto::IPV6_ROUTE;
                let unfrag = nh == ip_proto::HOPOPT
                    || nh == ip_proto::IPV6_ROUTE
                    || (nh == ip_proto::IPV6_OPTS && followed_by_routing);
                if unfrag && !fragmentable {
                    insert = FragInsert {
                        at: at + len,
                        nh_field: at,
                    };
                } else {
                    fragmentable = true;
                }
                nh = head[at];
                at += len;
            }
            ip_proto::IPV6_FRAG => return Err(GsoError::Fragment { offset: at }),
            other => {
                return Err(GsoError::UnsupportedExtHeader {
                    offset: at,
                    next_header: other,
                })
            }
        }
    }
    if at != l4o || nh != proto {
        return Err(GsoError::BadIpv6Header { offset: l3o });
    }
    Ok((insert, fragmentable))
}

/// The segments of one batch.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'b> {
    src: Source<'b>,
    buf: &'b SegmentBuf,
}

impl<'b> Batch<'b> {
    pub fn len(&self) -> usize {
        match self.buf.uniform {
            Some(u) => u.count,
            None => self.buf.segs.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Segment `i` of the batch.
    pub fn get(&self, i: usize) -> Option<Segment<'b>> {
        match self.buf.uniform {
            Some(u) if i < u.count => self.uniform_segment(&u, i),
            Some(_) => None,
            None => self.segment(self.buf.segs.get(i)?),
        }
    }

    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = Segment<'b>> + '_ {
        Segments {
            batch: *self,
            descs: self.buf.segs.iter(),
            next: 0,
        }
    }

    /// Segment `k` of a uniform batch.
    #[inline(always)]
    fn uniform_segment(&self, u: &Uniform, k: usize) -> Option<Segment<'b>> {
        let hs = (k + 1) * u.stride;
        let header = self.buf.hdrs.get(hs..hs + u.hdr_len)?;
        let rest = self
            .src
            .head
            .get(u.payload_off + k * u.size..u.payload_end)?;
        let first = rest.get(..u.size).unwrap_or(rest);
        Some(Segment {
            header,
            first,
            more: &[],
            payload_len: first.len(),
            csum: self.buf.csum,
        })
    }

    #[inline(always)]
    fn segment(&self, d: &SegDesc) -> Option<Segment<'b>> {
        let (hdr_start, hdr_len) = (d.hdr_start as usize, d.hdr_len as usize);
        let (piece, off, len) = (
            d.payload_piece as usize,
            d.payload_off as usize,
            d.payload_len as usize,
        );
        let header = self.buf.hdrs.get(hdr_start..hdr_start + hdr_len)?;
        let p = match self.src.head.get(off..off + len) {
            // The payload lies in the head (always, for a linear frame).
            Some(first) if piece == 0 => PayloadSlices {
                first,
                more: &[],
                left: 0,
            },
            _ => self.src.slices_at(piece, off, len),
        };
        Some(Segment {
            header,
            first: p.first,
            more: p.more,
            payload_len: len,
            csum: self.buf.csum,
        })
    }
}

/// Iterator over the segments of a batch.
struct Segments<'b> {
    batch: Batch<'b>,
    descs: core::slice::Iter<'b, SegDesc>,
    /// Next segment of a uniform batch.
    next: usize,
}

impl<'b> Iterator for Segments<'b> {
    type Item = Segment<'b>;

    #[inline]
    fn next(&mut self) -> Option<Segment<'b>> {
        if let Some(u) = &self.batch.buf.uniform {
            while self.next < u.count {
                let k = self.next;
                self.next += 1;
                if let Some(s) = self.batch.uniform_segment(u, k) {
                    return Some(s);
                }
            }
            return None;
        }
        for d in self.descs.by_ref() {
            if let Some(s) = self.batch.segment(d) {
                return Some(s);
            }
        }
        None
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.batch.buf.uniform {
            Some(u) => (0, Some(u.count - self.next.min(u.count))),
            None => (0, Some(self.descs.len())),
        }
    }
}

/// One output segment: a header block and payload slices borrowed from the super-frame.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'b> {
    header: &'b [u8],
    /// The payload, resolved: its bytes in the piece where it starts, and the fragments
    /// it continues into for `payload_len - first.len()` more bytes.
    first: &'b [u8],
    more: &'b [Frag<'b>],
    payload_len: usize,
    csum: CsumState,
}

impl<'b> Segment<'b> {
    /// The header block (L2 through L4).
    pub fn header(&self) -> &'b [u8] {
        self.header
    }

    pub fn payload_len(&self) -> usize {
        self.payload_len
    }

    /// Length of the whole frame.
    pub fn len(&self) -> usize {
        self.header.len() + self.payload_len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Offload metadata of the segment (never GSO; a partial checksum in Partial mode).
    pub fn meta(&self) -> OffloadMeta {
        OffloadMeta {
            csum: self.csum,
            gso: None,
        }
    }

    /// The payload as slices of the super-frame.
    pub fn payload(&self) -> PayloadSlices<'b> {
        PayloadSlices {
            first: self.first,
            more: self.more,
            left: self.payload_len - self.first.len(),
        }
    }

    /// Every slice of the frame: header then payload.
    pub fn slices(&self) -> impl Iterator<Item = &'b [u8]> + 'b {
        std::iter::once(self.header)
            .chain(self.payload())
            .filter(|s| !s.is_empty())
    }

    /// Fill `out` with the frame's slices as `IoSlice`s (for writev / sendmmsg); return how
    /// many were used. One header slice plus one slice per payload fragment touched.
    #[inline]
    pub fn fill_iovecs(&self, out: &mut [IoSlice<'b>]) -> Result<usize, PacketError> {
        // Fast path: the payload lies in one piece (always, for a linear frame).
        let p = self.first;
        if p.len() == self.payload_len {
            if let [h, rest @ ..] = &mut *out {
                *h = IoSlice::new(self.header);
                if p.is_empty() {
                    return Ok(1);
                }
                if let [b, ..] = rest {
                    *b = IoSlice::new(p);
                    return Ok(2);
                }
            }
        }
        // By value: the segment is copied to memory only on this path.
        Segment::fill_iovecs_slow(*self, out)
    }

    /// [`Segment::fill_iovecs`] for a payload spread over fragments, or too few slots.
    #[cold]
    #[inline(never)]
    fn fill_iovecs_slow(self, out: &mut [IoSlice<'b>]) -> Result<usize, PacketError> {
        let mut n = 0;
        for s in self.slices() {
            let Some(slot) = out.get_mut(n) else {
                return Err(PacketError::TooManySlices {
                    needed: self.slices().count(),
                    capacity: out.len(),
                });
            };
            *slot = IoSlice::new(s);
            n += 1;
        }
        Ok(n)
    }

    /// Append the whole frame to `out` (for pcap output or a destination without
    /// scatter-gather).
    pub fn append_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.len());
        for s in self.slices() {
            out.extend_from_slice(s);
        }
    }

    /// Replace the contents of `out` with the whole frame.
    pub fn write_linear(&self, out: &mut Vec<u8>) {
        out.clear();
        self.append_to(out);
    }
}

/// Segment one linear frame and hand every segment, linearized, to `f` with its metadata:
/// the convenience path for pcap tools. `scratch` and `line` are reused between calls.
pub fn segment_linear(
    frame: &[u8],
    layers: &Layers,
    gso: Gso,
    opts: GsoOptions,
    scratch: &mut SegmentBuf,
    line: &mut Vec<u8>,
    mut f: impl FnMut(&[u8], OffloadMeta),
) -> Result<usize, GsoError> {
    let mut seg = Segmenter::from_linear(frame, layers, gso, opts)?;
    let mut n = 0;
    while !seg.is_done() {
        let batch = seg.next_batch(scratch);
        for s in batch.iter() {
            s.write_linear(line);
            f(line, s.meta());
            n += 1;
        }
    }
    Ok(n)
}

/// Fuzz body shared by the cargo-fuzz target `gso_segment` (fuzz/) and the proptest in
/// tests/gso_fuzz.rs, so CI runs exactly what the fuzzer does. Not a stable API.
#[doc(hidden)]
pub mod fuzz {
    use super::{CsumMode, GsoOptions, SegmentBuf, Segmenter};
    use crate::offload::checksum::{verify_frame, Verdict};
    use crate::packet::{CsumState, GsoKind};
    use crate::vnet::fuzz::split_selector;
    use crate::vnet::{validate, VnetHdr};
    use crate::wire::parse;

    /// Input layout as for `vnet_validate`: byte 0 selects the form (bit 0: 12-byte header,
    /// bit 1: big-endian, bit 2: frame starts at the IP header), then the header, then the
    /// frame. A frame the vnet header validation accepts as a super-frame is segmented in
    /// both checksum modes, in batches of 3, and every segment must:
    /// - re-parse with `wire::parse`;
    /// - in Full mode have a good IPv4 header checksum and a good TCP/UDP checksum (UFO
    ///   fragments: checked after reassembly);
    /// - in Partial mode carry `CsumState::Partial` whose field sits inside the segment.
    ///
    /// The segments' payloads must concatenate to the super-frame's.
    ///
    /// Returns the number of segments made in Full mode (`None`: not a valid super-frame).
    pub fn gso_segment(data: &[u8]) -> Option<usize> {
        let (len, endian, start, rest) = split_selector(data)?;
        let hdr = VnetHdr::decode(rest, len, endian).ok()?;
        let frame = rest.get(len.size()..)?;
        let v = validate(&hdr, frame, start).ok()?;
        let gso = v.meta().gso?;
        // Link padding is not part of the packet.
        let frame = frame.get(..v.layers().ip_end)?;
        let ly = *v.layers();
        let mut made = None;
        for mode in [CsumMode::Full, CsumMode::Partial] {
            let opts = GsoOptions {
                csum: mode,
                fixed_id: false,
                ipv6_frag_id: 0x0102_0304,
            };
            let mut seg = match Segmenter::from_linear(frame, &ly, gso, opts) {
                Ok(s) => s,
                // Validation and segmentation agree on what a super-frame is except for
                // the causes below (stricter or different limits here).
                Err(e) => {
                    assert!(
                        matches!(e.cause(), "unsupported_ext_header" | "ufo_size_too_small"),
                        "validated super-frame refused: {e}"
                    );
                    return None;
                }
            };
            let count = seg.segment_count();
            let mut buf = SegmentBuf::with_capacity(3);
            let mut joined = Vec::with_capacity(frame.len());
            let mut line = Vec::new();
            let mut n = 0;
            while !seg.is_done() {
                let batch = seg.next_batch(&mut buf);
                assert!(!batch.is_empty());
                for s in batch.iter() {
                    s.write_linear(&mut line);
                    let sl = parse(&line, start).expect("segment re-parses");
                    assert_eq!(sl.ip_end, line.len());
                    let ufo = gso.kind == GsoKind::Ufo && count > 1;
                    if ufo {
                        // Fragments: the IP payload, UDP header included in the first.
                        joined.extend_from_slice(&line[sl.l3_offset + sl.l3_len..]);
                    } else {
                        joined.extend_from_slice(&line[sl.payload_offset..]);
                    }
                    let verdict = verify_frame(&line, start);
                    assert_ne!(verdict.ip, Verdict::Bad, "IPv4 header checksum");
                    match (mode, s.meta().csum) {
                        (_, CsumState::Unnecessary) => assert!(ufo),
                        (CsumMode::Full, CsumState::None) => {
                            assert_eq!(verdict.l4, Verdict::Good, "segment {n}")
                        }
                        (CsumMode::Partial, CsumState::Partial { start, offset }) => {
                            assert!(usize::from(start) + usize::from(offset) + 2 <= line.len());
                            assert_ne!(verdict.l4, Verdict::Bad);
                        }
                        (m, c) => panic!("mode {m:?} gave checksum state {c:?}"),
                    }
                    n += 1;
                }
            }
            assert_eq!(n, count);
            let payload = &frame[ly.payload_offset..];
            if gso.kind == GsoKind::Ufo && count > 1 {
                // The datagram: UDP header (checksum now filled) then the payload.
                assert_eq!(&joined[8..], payload);
                let mut sum = crate::offload::checksum::pseudo_header(
                    frame,
                    &ly,
                    crate::wire::ip_proto::UDP,
                    joined.len() as u32,
                )
                .expect("addresses in the frame");
                sum.add(&joined);
                assert_eq!(sum.fold(), 0xFFFF, "UFO datagram checksum");
            } else {
                assert_eq!(joined, payload);
            }
            if mode == CsumMode::Full {
                made = Some(n);
            }
        }
        made
    }
}
