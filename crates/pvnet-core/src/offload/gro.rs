//! Receive coalescing (GRO): merge consecutive TCP segments, or same-size UDP datagrams, of
//! one flow into a super-frame that carries a partial checksum and GSO metadata, exactly
//! what Linux GRO hands to a virtio guest or writes to a tap with `IFF_VNET_HDR`.
//!
//! # Model
//!
//! A [`Coalescer`] is fed linear frames one at a time ([`Coalescer::push`]) or as a batch
//! ([`Coalescer::push_batch`]). It holds at most `max_flows` flows; the caller decides when
//! held flows leave ([`Coalescer::flush`], [`Coalescer::flush_flow_of`]) — there is no clock
//! in the core. Everything that comes out goes to a caller-provided sink as an [`Emitted`]
//! that borrows the bytes: a frame passed through, a flow of one segment (given back
//! byte-for-byte as it came in, no offload metadata), or a super-frame.
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
//! A super-frame then comes out as a [`Gathered`]: the rewritten headers and the list of
//! payload slices, ready for `writev` or a descriptor chain, byte-for-byte the frame
//! [`Coalescer::push_batch`] would have built. The copy that remains is the one the writer
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
//! Where pvnet is stricter than the kernel (never looser): a frame whose IPv6 flow label or
//! extension headers differ from the held flow's is a different flow to the kernel (both
//! are held); here it flushes the held flow first. A frame with a bad checksum flushes its
//! flow before passing (the kernel lets it overtake the held flow).

use crate::csum::{self, Sum};
use crate::offload::checksum::{complete_partial_linear, pseudo_header, CsumError};
use crate::packet::{CsumState, Gso, GsoKind, OffloadMeta};
use crate::wire::{ethertype, ip_proto, parse, tcp, Layers, ParseErrorKind, Start, L3, L4};

/// Largest IP packet a super-frame may become (the kernel's GRO_LEGACY_MAX_SIZE - 1).
pub const MAX_SIZE: usize = 65_535;
/// Most datagrams in one UDP super-frame (the kernel's UDP_GRO_CNT_MAX).
pub const MAX_UDP_SEGMENTS: u16 = 64;
/// Longest link-layer header parse accepts: Ethernet + two VLAN tags.
const MAX_L2_LEN: usize = 14 + 2 * 4;

/// TCP checksum field offset in the TCP header (virtio csum_offset).
pub const TCP_CSUM_OFFSET: u16 = 16;
/// UDP checksum field offset in the UDP header (virtio csum_offset).
pub const UDP_CSUM_OFFSET: u16 = 6;

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
        }
    }
}

/// Why a held flow was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushCause {
    /// A new flow needed the slot of this, the oldest, flow.
    TableFull,
    /// PSH or FIN merged, or SYN/RST/URG arrived for the flow.
    Flags,
    /// A segment shorter than gso_size was merged: it ends the super-frame.
    ShortSegment,
    /// A frame of the flow could not join it (header mismatch, gap, bigger segment,
    /// bad checksum, pure ACK, …).
    Mismatch,
    /// The next segment would have made the IP length exceed `max_size`.
    SizeLimit,
    /// A UDP flow reached `max_udp_segments`.
    SegmentLimit,
    /// The caller asked ([`Coalescer::flush`], [`Coalescer::flush_flow_of`]).
    Explicit,
}

impl FlushCause {
    pub const ALL: [FlushCause; 7] = [
        FlushCause::TableFull,
        FlushCause::Flags,
        FlushCause::ShortSegment,
        FlushCause::Mismatch,
        FlushCause::SizeLimit,
        FlushCause::SegmentLimit,
        FlushCause::Explicit,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a frame went through without being held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassCause {
    /// `wire::parse` refused it (see [`GroStats::malformed`]).
    Malformed,
    /// Not IPv4/IPv6 (ARP, …).
    NotIp,
    /// Neither TCP nor UDP, or that protocol's coalescing is off.
    NotTcpUdp,
    /// An IP fragment (or an IPv4 header with the reserved flag).
    Fragment,
    /// IPv4 header longer than 20 bytes.
    Ipv4Options,
    /// IPv4 header checksum wrong.
    BadIpChecksum,
    /// Bytes after the end of the IP packet (Ethernet padding).
    Padded,
    /// TCP/UDP checksum wrong or partial.
    BadChecksum,
    /// UDP over IPv4 without a checksum.
    UdpNoChecksum,
    /// No transport payload (pure ACK, empty datagram).
    NoPayload,
    /// TCP SYN, RST or URG, or PSH/FIN on a segment that starts no super-frame.
    Flags,
}

impl PassCause {
    pub const ALL: [PassCause; 11] = [
        PassCause::Malformed,
        PassCause::NotIp,
        PassCause::NotTcpUdp,
        PassCause::Fragment,
        PassCause::Ipv4Options,
        PassCause::BadIpChecksum,
        PassCause::Padded,
        PassCause::BadChecksum,
        PassCause::UdpNoChecksum,
        PassCause::NoPayload,
        PassCause::Flags,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Parse error classes counted for malformed frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MalformedCause {
    Truncated,
    BadVersion,
    BadHeaderLength,
    BadTotalLength,
    BadDataOffset,
    BadUdpLength,
    TooManyExtensionHeaders,
    TooManyVlanTags,
}

impl MalformedCause {
    pub const ALL: [MalformedCause; 8] = [
        MalformedCause::Truncated,
        MalformedCause::BadVersion,
        MalformedCause::BadHeaderLength,
        MalformedCause::BadTotalLength,
        MalformedCause::BadDataOffset,
        MalformedCause::BadUdpLength,
        MalformedCause::TooManyExtensionHeaders,
        MalformedCause::TooManyVlanTags,
    ];

    fn of(kind: ParseErrorKind) -> Self {
        match kind {
            ParseErrorKind::Truncated { .. } => MalformedCause::Truncated,
            ParseErrorKind::BadVersion(_) => MalformedCause::BadVersion,
            ParseErrorKind::BadHeaderLength(_) => MalformedCause::BadHeaderLength,
            ParseErrorKind::BadTotalLength { .. } => MalformedCause::BadTotalLength,
            ParseErrorKind::BadDataOffset(_) => MalformedCause::BadDataOffset,
            ParseErrorKind::BadUdpLength { .. } => MalformedCause::BadUdpLength,
            ParseErrorKind::TooManyExtensionHeaders => MalformedCause::TooManyExtensionHeaders,
            ParseErrorKind::TooManyVlanTags => MalformedCause::TooManyVlanTags,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters of a [`Coalescer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroStats {
    /// Frames given to `push`.
    pub frames_in: u64,
    /// Frames appended to a held flow (a super-frame of n segments counts n - 1).
    pub merged: u64,
    /// Super-frames emitted (flows of two segments or more).
    pub super_frames: u64,
    /// Flows of one segment emitted unchanged.
    pub singles: u64,
    flushed: [u64; FlushCause::ALL.len()],
    passed: [u64; PassCause::ALL.len()],
    malformed: [u64; MalformedCause::ALL.len()],
}

impl GroStats {
    /// Flows emitted for this cause.
    pub fn flushed(&self, cause: FlushCause) -> u64 {
        self.flushed[cause.index()]
    }

    /// Frames passed through for this cause.
    pub fn passed(&self, cause: PassCause) -> u64 {
        self.passed[cause.index()]
    }

    /// Malformed frames of this class (their sum is `passed(PassCause::Malformed)`).
    pub fn malformed(&self, cause: MalformedCause) -> u64 {
        self.malformed[cause.index()]
    }

    /// Frames passed through, all causes.
    pub fn passed_total(&self) -> u64 {
        self.passed.iter().sum()
    }
}

/// Why an [`Emitted`] item came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitCause {
    /// The frame was never held.
    Passed(PassCause),
    /// A held flow left.
    Flushed(FlushCause),
}

/// One item out of the coalescer.
#[derive(Debug, Clone, Copy)]
pub struct Emitted<'a> {
    /// The frame, starting where the input frames started (L2 or L3). For a super-frame the
    /// L4 checksum field holds the folded pseudo-header sum (see `meta`).
    pub frame: &'a [u8],
    /// `OffloadMeta::default()` for a frame given back unchanged; for a super-frame
    /// `CsumState::Partial { start: transport header offset, offset: 16 or 6 }` and
    /// `Gso { kind: Tcpv4 | Tcpv6 | UdpL4, size: first segment's payload, ecn: CWR on the
    /// first segment }`.
    pub meta: OffloadMeta,
    /// Segments in the frame (1 unless a super-frame).
    pub segments: u16,
    /// Header bytes before the payload (L2 + L3 + L4): the virtio `hdr_len` hint.
    pub hdr_len: u16,
    /// IPv4 TCP super-frame whose segments all carry the same IP ID (the kernel's
    /// SKB_GSO_TCP_FIXEDID, which a virtio header cannot express: a segmenter will
    /// increment the IDs).
    pub fixed_id: bool,
    pub cause: EmitCause,
    /// Number of the pushed frame this item started with (frames count from 1, as
    /// `GroStats::frames_in`): the first merged segment of a super-frame, or the frame
    /// itself. Lets a caller keep its output in input order.
    pub first_frame: u64,
}

impl Emitted<'_> {
    /// Whether this is a super-frame (carries GSO metadata and a partial checksum).
    pub fn is_super(&self) -> bool {
        self.meta.gso.is_some()
    }

    /// Copy the frame into `out` (cleared first) as a plain linear frame with complete
    /// checksums: the partial checksum of a super-frame is finished, the rest is copied
    /// as is. For writing super-frames to a pcap file or a device without offloads.
    pub fn to_linear(&self, out: &mut Vec<u8>) -> Result<(), CsumError> {
        out.clear();
        out.extend_from_slice(self.frame);
        complete_checksum(out, &self.meta)
    }
}

/// Frames that [`Coalescer::coalesce_batch`] reads by index: a slice of buffers (pass a
/// `Vec` as `&v[..]`), or a caller's own receive ring.
pub trait FrameBatch {
    /// Number of frames.
    fn frame_count(&self) -> usize;
    /// Frame `i` (`i < frame_count()`), starting where the coalescer is told to start
    /// parsing (L2 or L3) and ending where the frame ends.
    fn frame(&self, i: usize) -> &[u8];
}

impl<B: AsRef<[u8]>> FrameBatch for [B] {
    fn frame_count(&self) -> usize {
        self.len()
    }
    fn frame(&self, i: usize) -> &[u8] {
        self.get(i).map_or(&[], AsRef::as_ref)
    }
}

/// One item out of [`Coalescer::coalesce_batch`]: the frame is [`Gathered::head`] followed
/// by [`Gathered::payloads`], which borrow the caller's batch. Same metadata as
/// [`Emitted`].
pub struct Gathered<'a, 'f, T: ?Sized> {
    /// The frame's first bytes: for a flow (super-frame or a single segment) its headers,
    /// rewritten for a super-frame as in [`Emitted::frame`]; for a frame that was never
    /// held (or a flow held since [`Coalescer::push`]) the whole frame.
    pub head: &'a [u8],
    segs: &'a [Seg],
    frames: &'f T,
    /// `GroStats::frames_in` when the batch started.
    base: u64,
    /// As [`Emitted::meta`].
    pub meta: OffloadMeta,
    /// As [`Emitted::segments`]: the number of payloads, or 1 for a frame given back whole.
    pub segments: u16,
    /// As [`Emitted::hdr_len`].
    pub hdr_len: u16,
    /// As [`Emitted::fixed_id`].
    pub fixed_id: bool,
    /// As [`Emitted::cause`].
    pub cause: EmitCause,
    /// As [`Emitted::first_frame`]; see also [`Gathered::batch_index`].
    pub first_frame: u64,
}

impl<T: ?Sized> Clone for Gathered<'_, '_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: ?Sized> Copy for Gathered<'_, '_, T> {}

impl<T: ?Sized> core::fmt::Debug for Gathered<'_, '_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Gathered")
            .field("head_len", &self.head.len())
            .field("payloads", &self.segs.len())
            .field("meta", &self.meta)
            .field("segments", &self.segments)
            .field("cause", &self.cause)
            .field("first_frame", &self.first_frame)
            .finish_non_exhaustive()
    }
}

impl<'a, 'f, T: FrameBatch + ?Sized> Gathered<'a, 'f, T> {
    /// The payloads that follow [`Gathered::head`], in order: one per segment of a flow,
    /// none for a frame given back whole.
    pub fn payloads(&self) -> impl ExactSizeIterator<Item = &'f [u8]> + use<'a, 'f, T> {
        let frames = self.frames;
        self.segs
            .iter()
            .map(move |s| frames.frame(s.frame).get(s.start..).unwrap_or_default())
    }

    /// The layers and metadata of this item, given what was validated of the frame it
    /// began with: a super-frame keeps its first segment's headers and only grows, and it
    /// is built by the rules `vnet::validate` checks (a TCP or UDP super-frame of the
    /// packet's own protocols, gso_size the first segment's payload, no fragment, a
    /// partial checksum at the transport header), so it is valid by construction.
    pub fn validated(&self, first: &crate::vnet::Validated) -> crate::vnet::Validated {
        let mut layers = *first.layers();
        layers.ip_end = self.len();
        crate::vnet::Validated::new_unchecked(layers, self.meta)
    }

    /// The batch the payloads are in.
    pub fn frames(&self) -> &'f T {
        self.frames
    }

    /// Index in the batch of the frame this item began with (the frame itself, or a flow's
    /// first segment), from which a caller can find what it knows of that frame. `None`
    /// for a flow held since [`Coalescer::push`], which began before the batch.
    pub fn batch_index(&self) -> Option<usize> {
        let n = self.first_frame.checked_sub(self.base)?.checked_sub(1)?;
        usize::try_from(n).ok()
    }

    /// Every piece of the frame in order: the head, then the payloads.
    pub fn parts(&self) -> impl Iterator<Item = &'a [u8]> + use<'a, 'f, T>
    where
        'f: 'a,
    {
        core::iter::once(self.head).chain(self.payloads())
    }

    /// Length of the whole frame.
    pub fn len(&self) -> usize {
        self.head.len() + self.payloads().map(<[u8]>::len).sum::<usize>()
    }

    /// Whether the frame is empty (never, for anything the coalescer emits).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is a super-frame (carries GSO metadata and a partial checksum).
    pub fn is_super(&self) -> bool {
        self.meta.gso.is_some()
    }

    /// Copy the frame into `out` (cleared first) exactly as it stands: the same bytes
    /// [`Coalescer::push_batch`] would have emitted.
    pub fn copy_to(&self, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(self.len());
        for p in self.parts() {
            out.extend_from_slice(p);
        }
    }

    /// Like [`Emitted::to_linear`]: the frame in one buffer with complete checksums.
    pub fn to_linear(&self, out: &mut Vec<u8>) -> Result<(), CsumError> {
        self.copy_to(out);
        complete_checksum(out, &self.meta)
    }
}

/// Complete the partial checksum that `meta` announces in `frame` (no-op without one).
pub fn complete_checksum(frame: &mut [u8], meta: &OffloadMeta) -> Result<(), CsumError> {
    match meta.csum {
        CsumState::Partial { start, offset } => {
            complete_partial_linear(frame, usize::from(start), usize::from(offset))
        }
        _ => Ok(()),
    }
}

/// One's-complement sum of `data` as big-endian 16-bit words, folded to 16 bits (not
/// inverted). The coalescer verifies every checksum, so this is its hottest loop: it goes
/// straight to the checksum engine's dispatching kernel (AVX2 where available).
#[inline(always)]
fn fold_sum(data: &[u8]) -> u16 {
    csum::fold64(csum::sum_slice(data))
}

/// Big-endian u16 at `at`.
#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|x| u16::from_be_bytes([x[0], x[1]]))
}

/// The IP header fields a segment must share with the first one of its flow, packed:
/// IPv4 TOS, TTL and DF; IPv6 the first word (version, traffic class, flow label), next
/// header and hop limit.
#[inline(always)]
fn ip_sig(f: &[u8], l3: usize, v6: bool) -> Option<u64> {
    let h = f.get(l3..l3 + 9)?;
    Some(if v6 {
        u64::from_ne_bytes([h[0], h[1], h[2], h[3], 0, 0, h[6], h[7]])
    } else {
        u64::from(h[1]) | u64::from(h[8]) << 8 | u64::from(h[6] & 0x40) << 16
    })
}

/// TCP option blocks of equal length byte-equal; the usual timestamp block (12 bytes)
/// without a call.
#[inline]
fn same_options(a: &[u8], b: &[u8]) -> bool {
    match (<&[u8; 12]>::try_from(a), <&[u8; 12]>::try_from(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Flow identity apart from the link-layer header (compared byte-wise separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct FlowKey {
    /// Addresses as their wire bytes in native order (IPv4 in the first four bytes, the
    /// rest zero): equal keys are equal bytes, compared as two u128.
    src: u128,
    dst: u128,
    /// Source and destination port, as on the wire (native order).
    ports: u32,
    proto: u8,
    v6: bool,
    l2_len: u8,
}

/// An IPv4 address as a [`FlowKey`] address.
#[inline]
fn addr4(b: &[u8]) -> Option<u128> {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(b.get(..4)?);
    Some(u128::from_ne_bytes(a))
}

/// An IPv6 address as a [`FlowKey`] address.
#[inline]
fn addr6(b: &[u8]) -> Option<u128> {
    Some(u128::from_ne_bytes(b.get(..16)?.try_into().ok()?))
}

impl FlowKey {
    fn of(frame: &[u8], l: &Layers, proto: u8) -> Option<FlowKey> {
        let l3 = l.l3_offset;
        let mut k = FlowKey {
            proto,
            l2_len: u8::try_from(l.l2_len).ok()?,
            ..FlowKey::default()
        };
        match l.l3? {
            L3::Ipv4 => {
                k.src = addr4(frame.get(l3 + 12..l3 + 16)?)?;
                k.dst = addr4(frame.get(l3 + 16..l3 + 20)?)?;
            }
            L3::Ipv6 => {
                k.v6 = true;
                k.src = addr6(frame.get(l3 + 8..l3 + 24)?)?;
                k.dst = addr6(frame.get(l3 + 24..l3 + 40)?)?;
            }
        }
        let p = frame.get(l.l4_offset..l.l4_offset + 4)?;
        k.ports = u32::from_ne_bytes([p[0], p[1], p[2], p[3]]);
        Some(k)
    }

    /// Cheap 32-bit digest, compared before the full key (one multiply).
    #[inline]
    fn digest(&self) -> u32 {
        let a = self.src ^ self.dst.rotate_left(32);
        let x = (a as u64)
            ^ ((a >> 64) as u64)
            ^ (u64::from(self.ports) << 16)
            ^ u64::from(self.proto)
            ^ (u64::from(self.v6) << 8);
        (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
    }
}

/// A frame that passed every per-frame check and may join or start a flow.
#[derive(Debug, PartialEq, Eq)]
struct Candidate<'f> {
    frame: &'f [u8],
    key: FlowKey,
    digest: u32,
    l3: usize,
    l4: usize,
    payload: usize,
    pseudo_dst: usize,
    v6: bool,
    tcp: bool,
    /// TCP flags (0 for UDP).
    flags: u8,
}

impl Candidate<'_> {
    fn payload_len(&self) -> usize {
        self.frame.len() - self.payload
    }
}

/// A held flow: the first frame's headers followed by every merged payload.
#[derive(Debug, Default)]
struct Slot {
    active: bool,
    key: FlowKey,
    digest: u32,
    /// Order in which flows were opened (for "oldest").
    age: u64,
    /// Number of the frame that opened the flow (`GroStats::frames_in` at that push).
    first_frame: u64,
    /// The first frame's headers, rewritten at flush; in linear mode followed by every
    /// merged payload.
    buf: Vec<u8>,
    /// Gather mode ([`Coalescer::coalesce_batch`]): every segment's payload, where it lies
    /// in the caller's batch. Empty in linear mode.
    segs: Vec<Seg>,
    /// Bytes of the super-frame so far (`buf` plus the gathered payloads).
    len: usize,
    l3: usize,
    l4: usize,
    payload: usize,
    /// Offset of the destination address the pseudo-header uses.
    pseudo_dst: usize,
    v6: bool,
    tcp: bool,
    gso_size: usize,
    count: u16,
    next_seq: u32,
    /// IPv4 only: the ID repeats (decided at the second segment).
    fixed_id: bool,
    /// The first segment's [`ip_sig`].
    ip_sig: u64,
    /// IPv4: the first segment's IP ID.
    ip_id: u16,
    /// TCP: the first segment's flags and ACK number.
    tcp_flags: u8,
    ack: u32,
}

impl Slot {
    fn ip_len(&self) -> usize {
        self.len - self.l3
    }
}

/// A gathered payload: frame `frame` of the caller's batch from byte `start` to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seg {
    frame: usize,
    start: usize,
}

/// Where a merged payload goes: appended to the slot's buffer (linear mode), or noted as
/// the payload of frame `n` of the caller's batch (gather mode).
#[derive(Debug, Clone, Copy)]
enum Dest {
    Linear,
    Gather(usize),
}

/// Adapt a public sink to the internal one, which also receives the gathered payloads
/// (always none in linear mode).
fn linear<F: FnMut(Emitted<'_>)>(sink: &mut F) -> impl FnMut(Emitted<'_>, &[Seg]) + '_ {
    move |e, _| sink(e)
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
}

/// Gathered payloads a slot has room for before it grows: a 64 KiB super-frame of
/// 1448-byte segments has 46.
const GATHER_RESERVE: usize = 64;

/// Buckets of [`Coalescer::find`]'s direct-mapped hint table.
const HINT_BUCKETS: usize = 64;

#[inline]
fn hint_bucket(digest: u32) -> usize {
    (digest >> 26) as usize
}

/// Outcome of trying a candidate against its held flow.
enum Merge {
    /// Appended; the flow stays held.
    Held,
    /// Appended; the flow must go now.
    Flush(FlushCause),
    /// Not appended: flush the flow for this cause, then treat the frame as new.
    Refused(FlushCause),
}

const TCP_FIN: u8 = tcp::flags::FIN;
const TCP_SYN: u8 = tcp::flags::SYN;
const TCP_RST: u8 = tcp::flags::RST;
const TCP_PSH: u8 = tcp::flags::PSH;
const TCP_URG: u8 = tcp::flags::URG;
const TCP_CWR: u8 = tcp::flags::CWR;

impl Coalescer {
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
        }
    }

    pub fn config(&self) -> &GroConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &GroStats {
        &self.stats
    }

    /// Flows currently held.
    pub fn held_flows(&self) -> usize {
        self.active
    }

    /// Feed one frame. Whatever it causes to leave (flushed flows, the frame itself when it
    /// is not held) goes to `sink`, in an order that keeps every flow's frames in order.
    pub fn push<F: FnMut(Emitted<'_>)>(&mut self, frame: &[u8], start: Start, sink: &mut F) {
        self.push_frame(frame, start, Dest::Linear, &mut linear(sink));
    }

    #[inline(always)]
    fn push_frame<F: FnMut(Emitted<'_>, &[Seg])>(
        &mut self,
        frame: &[u8],
        start: Start,
        dest: Dest,
        sink: &mut F,
    ) {
        self.stats.frames_in += 1;
        match self.fast_classify(frame, start) {
            Some(c) => self.coalesce(c, dest, sink),
            None => self.push_slow(frame, start, dest, sink),
        }
    }

    /// Merge a candidate into its held flow or start a flow with it.
    #[inline(always)]
    fn coalesce<F: FnMut(Emitted<'_>, &[Seg])>(
        &mut self,
        cand: Candidate<'_>,
        dest: Dest,
        sink: &mut F,
    ) {
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
    fn push_slow<F: FnMut(Emitted<'_>, &[Seg])>(
        &mut self,
        frame: &[u8],
        start: Start,
        dest: Dest,
        sink: &mut F,
    ) {
        match self.classify(frame, start) {
            Ok(c) => self.coalesce(c, dest, sink),
            Err((cause, key)) => {
                // A frame of a held flow that will not join it: the flow goes first.
                if let Some(key) = key {
                    let digest = key.digest();
                    if let Some(i) = self.find(&key, digest, frame) {
                        self.flush_slot(i, FlushCause::Mismatch, sink);
                    }
                }
                self.pass(frame, cause, sink);
            }
        }
    }

    /// Feed a batch, then flush every held flow (what a NAPI poll does at its end).
    pub fn push_batch<'f, I, F>(&mut self, frames: I, start: Start, sink: &mut F)
    where
        I: IntoIterator<Item = &'f [u8]>,
        F: FnMut(Emitted<'_>),
    {
        let mut sink = linear(sink);
        for f in frames {
            self.push_frame(f, start, Dest::Linear, &mut sink);
        }
        self.flush_all(&mut sink);
    }

    /// Coalesce a whole batch without copying payloads: a super-frame comes out as its
    /// rewritten headers plus the payloads where they lie in `frames` (a [`Gathered`]),
    /// ready for `writev`/`sendmsg` or a virtio descriptor chain. Same merge rules, order
    /// and counters as [`Coalescer::push_batch`] and byte-for-byte the same frames; the
    /// only copies are the headers of each flow's first segment.
    ///
    /// The batch is one unit, as a NAPI poll: flows still held from [`Coalescer::push`]
    /// leave first (whole, as [`Gathered`] without payloads), and every flow opened here is
    /// flushed before this returns, since its payloads borrow `frames`.
    pub fn coalesce_batch<'f, T, F>(&mut self, frames: &'f T, start: Start, sink: &mut F)
    where
        T: FrameBatch + ?Sized,
        F: FnMut(Gathered<'_, 'f, T>),
    {
        let base = self.stats.frames_in;
        let mut sink = |e: Emitted<'_>, segs: &[Seg]| {
            sink(Gathered {
                head: e.frame,
                segs,
                frames,
                base,
                meta: e.meta,
                segments: e.segments,
                hdr_len: e.hdr_len,
                fixed_id: e.fixed_id,
                cause: e.cause,
                first_frame: e.first_frame,
            })
        };
        self.flush_all(&mut sink);
        for n in 0..frames.frame_count() {
            self.push_frame(frames.frame(n), start, Dest::Gather(n), &mut sink);
        }
        self.flush_all(&mut sink);
    }

    /// Emit every held flow, oldest first.
    pub fn flush<F: FnMut(Emitted<'_>)>(&mut self, sink: &mut F) {
        self.flush_all(&mut linear(sink));
    }

    fn flush_all<F: FnMut(Emitted<'_>, &[Seg])>(&mut self, sink: &mut F) {
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
    pub fn flush_started_before<F: FnMut(Emitted<'_>)>(&mut self, frame: u64, sink: &mut F) {
        let mut sink = linear(sink);
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
    /// `frame` itself is not consumed.
    pub fn flush_flow_of<F: FnMut(Emitted<'_>)>(
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
                self.flush_slot(i, FlushCause::Explicit, &mut linear(sink));
                true
            }
            None => false,
        }
    }

    /// Fixed-offset classification of the common case: no or one VLAN tag, IPv4 with a
    /// 20-byte header or IPv6 without extension headers, TCP or UDP, no padding, and every
    /// per-frame check passing. Returns exactly the candidate [`Coalescer::classify`] would,
    /// or `None` whenever the frame is anything else (then `classify` decides). One checksum
    /// pass per frame: the IPv4 header is summed from its five words inline, the transport
    /// segment by the checksum engine.
    #[inline(always)]
    fn fast_classify<'f>(&self, frame: &'f [u8], start: Start) -> Option<Candidate<'f>> {
        let (ip, v6) = match start {
            Start::Ip => (0, frame.first()? >> 4 == 6),
            Start::Ethernet => {
                let et = be16(frame, 12)?;
                let (ip, et) = if et == ethertype::VLAN || et == ethertype::QINQ {
                    (18, be16(frame, 16)?)
                } else {
                    (14, et)
                };
                match et {
                    ethertype::IPV4 => (ip, false),
                    ethertype::IPV6 => (ip, true),
                    _ => return None,
                }
            }
        };
        let mut key = FlowKey {
            l2_len: ip as u8,
            v6,
            ..FlowKey::default()
        };
        let (l4, pseudo) = if v6 {
            let h: &[u8; 40] = frame.get(ip..ip + 40)?.try_into().ok()?;
            if h[0] >> 4 != 6
                || ip + 40 + usize::from(u16::from_be_bytes([h[4], h[5]])) != frame.len()
            {
                return None;
            }
            key.proto = h[6];
            key.src = addr6(&h[8..24])?;
            key.dst = addr6(&h[24..40])?;
            let mut p = Sum::new();
            for w in h[8..40].chunks_exact(4) {
                p.add_u32(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
            }
            (ip + 40, p)
        } else {
            let h: &[u8; 20] = frame.get(ip..ip + 20)?.try_into().ok()?;
            let frag = u16::from_be_bytes([h[6], h[7]]);
            if h[0] != 0x45
                || ip + usize::from(u16::from_be_bytes([h[2], h[3]])) != frame.len()
                || frag & !0x4000 != 0
            {
                return None;
            }
            let w = |i: usize| u64::from(u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
            if csum::fold64(w(0) + w(4) + w(8) + w(12) + w(16)) != 0xFFFF {
                return None;
            }
            key.proto = h[9];
            key.src = addr4(&h[12..16])?;
            key.dst = addr4(&h[16..20])?;
            let mut p = Sum::new();
            p.add_u32(w(12) as u32);
            p.add_u32(w(16) as u32);
            (ip + 20, p)
        };
        let seg = frame.get(l4..)?;
        let tcp = match key.proto {
            ip_proto::TCP if self.cfg.tcp => true,
            ip_proto::UDP if self.cfg.udp => false,
            _ => return None,
        };
        let (hdr, flags) = if tcp {
            let h = seg.get(..20)?;
            let (hl, flags) = (usize::from(h[12] >> 4) * 4, h[13]);
            if hl < 20 || flags & (TCP_SYN | TCP_RST | TCP_URG) != 0 {
                return None;
            }
            (hl, flags)
        } else {
            let h = seg.get(..8)?;
            if usize::from(u16::from_be_bytes([h[4], h[5]])) != seg.len() || h[6..8] == [0, 0] {
                return None;
            }
            (8, 0)
        };
        if hdr >= seg.len() {
            return None;
        }
        key.ports = u32::from_ne_bytes([seg[0], seg[1], seg[2], seg[3]]);
        if self.cfg.verify_checksums {
            let mut p = pseudo;
            p.add_u16(u16::from(key.proto));
            p.add_u32(seg.len() as u32);
            p.add_u16(fold_sum(seg));
            if p.fold() != 0xFFFF {
                return None;
            }
        }
        Some(Candidate {
            frame,
            digest: key.digest(),
            key,
            l3: ip,
            l4,
            payload: l4 + hdr,
            pseudo_dst: if v6 { ip + 24 } else { ip + 16 },
            v6,
            tcp,
            flags,
        })
    }

    /// Per-frame checks. On refusal, the cause and (when the frame has ports) its flow key,
    /// so that its held flow can be flushed before it.
    fn classify<'f>(
        &mut self,
        frame: &'f [u8],
        start: Start,
    ) -> Result<Candidate<'f>, (PassCause, Option<FlowKey>)> {
        let l = match parse(frame, start) {
            Ok(l) => l,
            Err(e) => {
                self.stats.malformed[MalformedCause::of(e.kind).index()] += 1;
                return Err((PassCause::Malformed, None));
            }
        };
        let Some(l3) = l.l3 else {
            return Err((PassCause::NotIp, None));
        };
        let (proto, tcp) = match l.l4 {
            Some(L4::Tcp) if self.cfg.tcp => (ip_proto::TCP, true),
            Some(L4::Udp) if self.cfg.udp => (ip_proto::UDP, false),
            None => return Err((PassCause::Fragment, None)),
            _ => return Err((PassCause::NotTcpUdp, None)),
        };
        let key = FlowKey::of(frame, &l, proto);
        let fail = |c| Err((c, key));
        let Some(key) = key else {
            return Err((PassCause::Malformed, None));
        };
        if l.fragment {
            return fail(PassCause::Fragment);
        }
        let ip = l.l3_offset;
        if l3 == L3::Ipv4 {
            if l.l3_len != 20 {
                return fail(PassCause::Ipv4Options);
            }
            // Any flag but DF, or an offset: the kernel flushes these (reserved bit too).
            let frag = frame
                .get(ip + 6..ip + 8)
                .map_or(0xFFFF, |b| u16::from_be_bytes([b[0], b[1]]));
            if frag & !0x4000 != 0 {
                return fail(PassCause::Fragment);
            }
            if frame.get(ip..ip + 20).is_none_or(|h| fold_sum(h) != 0xFFFF) {
                return fail(PassCause::BadIpChecksum);
            }
        }
        if l.ip_end != frame.len() {
            return fail(PassCause::Padded);
        }
        if l.payload_offset >= l.ip_end {
            return fail(PassCause::NoPayload);
        }
        let flags = if tcp {
            frame.get(l.l4_offset + 13).copied().unwrap_or(0)
        } else {
            0
        };
        if flags & (TCP_SYN | TCP_RST | TCP_URG) != 0 {
            return fail(PassCause::Flags);
        }
        if !tcp {
            let c = frame.get(l.l4_offset + 6..l.l4_offset + 8);
            if c == Some(&[0, 0]) {
                // Zero is "no checksum" over IPv4 and invalid over IPv6.
                return fail(if l3 == L3::Ipv4 {
                    PassCause::UdpNoChecksum
                } else {
                    PassCause::BadChecksum
                });
            }
        }
        if self.cfg.verify_checksums {
            let seg = frame.get(l.l4_offset..l.ip_end).unwrap_or_default();
            let ok = pseudo_header(frame, &l, proto, seg.len() as u32).is_some_and(|mut s| {
                s.add_u16(fold_sum(seg));
                s.fold() == 0xFFFF
            });
            if !ok {
                return fail(PassCause::BadChecksum);
            }
        }
        Ok(Candidate {
            frame,
            digest: key.digest(),
            key,
            l3: ip,
            l4: l.l4_offset,
            payload: l.payload_offset,
            pseudo_dst: l.pseudo_dst_offset,
            v6: l3 == L3::Ipv6,
            tcp,
            flags,
        })
    }

    #[inline(always)]
    fn find(&self, key: &FlowKey, digest: u32, frame: &[u8]) -> Option<usize> {
        if self.active == 0 {
            return None;
        }
        let l2 = usize::from(key.l2_len);
        let hit = |s: &Slot| {
            s.active
                && s.digest == digest
                && s.key == *key
                && (l2 == 0 || s.buf.get(..l2).is_some_and(|h| Some(h) == frame.get(..l2)))
        };
        // The slot that last opened a flow with this hash bucket, then every slot.
        let hint = usize::from(self.hint[hint_bucket(digest)]);
        if self.slots.get(hint).is_some_and(hit) {
            return Some(hint);
        }
        self.slots.iter().position(hit)
    }

    fn oldest(&self) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active)
            .min_by_key(|(_, s)| s.age)
            .map(|(i, _)| i)
    }

    /// The IP-layer rules of `gro_receive_network_flush`: `Some(fixed_id)` when `c` may
    /// follow the held segments, `None` on mismatch. The slot is not changed.
    #[inline(always)]
    fn ip_matches(slot: &Slot, c: &Candidate<'_>) -> Option<bool> {
        let sig = ip_sig(c.frame, c.l3, c.v6)?;
        if sig != slot.ip_sig {
            return None;
        }
        if c.v6 {
            // Extension headers byte-equal (the first word, next header and hop limit are
            // in the signature).
            let ext_len = c.l4 - c.l3;
            if slot.l4 - slot.l3 != ext_len {
                return None;
            }
            let (a, b) = (slot.l3, c.l3);
            (ext_len == 40 || slot.buf.get(a + 40..a + ext_len) == c.frame.get(b + 40..b + ext_len))
                .then_some(false)
        } else {
            // TOS, TTL and DF are in the signature; protocol and addresses in the key.
            let delta = be16(c.frame, c.l3 + 4)?.wrapping_sub(slot.ip_id);
            let fixed = slot.fixed_id || (slot.count == 1 && delta == 0);
            let ok = if fixed {
                delta == 0
            } else {
                delta == slot.count
            };
            ok.then_some(fixed)
        }
    }

    #[inline(always)]
    fn try_merge(&mut self, i: usize, c: &Candidate<'_>, dest: Dest) -> Merge {
        let max_size = self.cfg.max_size;
        let max_udp = self.cfg.max_udp_segments;
        let slot = &mut self.slots[i];
        let len = c.payload_len();
        // Header geometry must match for the byte comparisons below.
        if slot.l3 != c.l3 || slot.tcp != c.tcp || slot.v6 != c.v6 {
            return Merge::Refused(FlushCause::Mismatch);
        }
        let Some(fixed_id) = Self::ip_matches(slot, c) else {
            return Merge::Refused(FlushCause::Mismatch);
        };
        if c.tcp {
            let Some(t) = c.frame.get(c.l4..c.l4 + 20) else {
                return Merge::Refused(FlushCause::Mismatch);
            };
            let word = |at: usize| u32::from_be_bytes([t[at], t[at + 1], t[at + 2], t[at + 3]]);
            let (t2, t) = (slot.l4, c.l4);
            let hl = slot.payload - slot.l4;
            let ok = hl == c.payload - c.l4
                && c.flags & TCP_CWR == 0
                && (c.flags ^ slot.tcp_flags) & !(TCP_CWR | TCP_FIN | TCP_PSH) == 0
                && word(8) == slot.ack
                && len <= slot.gso_size
                && word(4) == slot.next_seq
                && (hl == 20
                    || same_options(
                        &slot.buf[t2 + 20..slot.payload],
                        &c.frame[t + 20..c.payload],
                    ));
            if !ok {
                return Merge::Refused(FlushCause::Mismatch);
            }
        } else if len > slot.gso_size {
            return Merge::Refused(FlushCause::Mismatch);
        }
        if slot.ip_len() + len > max_size {
            return Merge::Refused(FlushCause::SizeLimit);
        }
        slot.fixed_id = fixed_id;
        match dest {
            Dest::Linear => slot.buf.extend_from_slice(&c.frame[c.payload..]),
            Dest::Gather(n) => slot.segs.push(Seg {
                frame: n,
                start: c.payload,
            }),
        }
        slot.len += len;
        slot.count += 1;
        slot.next_seq = slot.next_seq.wrapping_add(len as u32);
        self.stats.merged += 1;
        if c.tcp && c.flags & (TCP_PSH | TCP_FIN) != 0 {
            if let Some(fl) = slot.buf.get_mut(slot.l4 + 13) {
                *fl |= c.flags & (TCP_PSH | TCP_FIN);
            }
            return Merge::Flush(FlushCause::Flags);
        }
        if len < slot.gso_size {
            return Merge::Flush(FlushCause::ShortSegment);
        }
        if !c.tcp && slot.count >= max_udp {
            return Merge::Flush(FlushCause::SegmentLimit);
        }
        Merge::Held
    }

    /// Hold `c` as the first segment of a new flow (or pass it when it ends a super-frame
    /// by itself: PSH/FIN).
    fn start_flow<F: FnMut(Emitted<'_>, &[Seg])>(
        &mut self,
        c: &Candidate<'_>,
        dest: Dest,
        sink: &mut F,
    ) {
        if c.tcp && c.flags & (TCP_PSH | TCP_FIN) != 0 {
            self.pass(c.frame, PassCause::Flags, sink);
            return;
        }
        let i = match self.slots.iter().position(|s| !s.active) {
            Some(i) => i,
            None => match self.oldest() {
                Some(i) => {
                    self.flush_slot(i, FlushCause::TableFull, sink);
                    i
                }
                None => {
                    self.pass(c.frame, PassCause::NotTcpUdp, sink);
                    return;
                }
            },
        };
        let max_frame = self.cfg.max_size + MAX_L2_LEN;
        let slot = &mut self.slots[i];
        slot.buf.clear();
        slot.segs.clear();
        match dest {
            Dest::Linear => {
                if slot.buf.capacity() < max_frame {
                    // Once per slot: afterwards merging never reallocates.
                    slot.buf.reserve_exact(max_frame);
                }
                slot.buf.extend_from_slice(c.frame);
            }
            Dest::Gather(n) => {
                if slot.segs.capacity() < GATHER_RESERVE {
                    // Once per slot; a flow of tiny segments may still grow it (amortized).
                    slot.segs.reserve(GATHER_RESERVE);
                }
                slot.buf.extend_from_slice(&c.frame[..c.payload]);
                slot.segs.push(Seg {
                    frame: n,
                    start: c.payload,
                });
            }
        }
        slot.len = c.frame.len();
        slot.active = true;
        slot.key = c.key;
        slot.digest = c.digest;
        if let Ok(h) = u16::try_from(i) {
            self.hint[hint_bucket(c.digest)] = h;
        }
        slot.age = self.next_age;
        slot.first_frame = self.stats.frames_in;
        slot.l3 = c.l3;
        slot.l4 = c.l4;
        slot.payload = c.payload;
        slot.pseudo_dst = c.pseudo_dst;
        slot.v6 = c.v6;
        slot.tcp = c.tcp;
        slot.gso_size = c.payload_len();
        slot.count = 1;
        slot.fixed_id = false;
        slot.ip_sig = ip_sig(c.frame, c.l3, c.v6).unwrap_or(0);
        slot.ip_id = be16(c.frame, c.l3 + 4).unwrap_or(0);
        slot.tcp_flags = c.flags;
        slot.ack = if c.tcp {
            c.frame
                .get(c.l4 + 8..c.l4 + 12)
                .map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        } else {
            0
        };
        slot.next_seq = if c.tcp {
            c.frame
                .get(c.l4 + 4..c.l4 + 8)
                .map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
                .wrapping_add(c.payload_len() as u32)
        } else {
            0
        };
        self.next_age += 1;
        self.active += 1;
    }

    fn pass<F: FnMut(Emitted<'_>, &[Seg])>(
        &mut self,
        frame: &[u8],
        cause: PassCause,
        sink: &mut F,
    ) {
        self.stats.passed[cause.index()] += 1;
        sink(
            Emitted {
                frame,
                meta: OffloadMeta::default(),
                segments: 1,
                hdr_len: 0,
                fixed_id: false,
                cause: EmitCause::Passed(cause),
                first_frame: self.stats.frames_in,
            },
            &[],
        );
    }

    /// Finish the super-frame held in slot `i` (lengths, IPv4 header checksum, partial L4
    /// checksum, as `inet_gro_complete` + `tcp4_gro_complete`/`udp_gro_complete`) and emit it.
    fn flush_slot<F: FnMut(Emitted<'_>, &[Seg])>(
        &mut self,
        i: usize,
        cause: FlushCause,
        sink: &mut F,
    ) {
        let slot = &mut self.slots[i];
        if !slot.active {
            return;
        }
        slot.active = false;
        self.active -= 1;
        self.stats.flushed[cause.index()] += 1;
        let hdr_len = u16::try_from(slot.payload).unwrap_or(u16::MAX);
        if slot.count == 1 {
            // Not coalesced: give the frame back exactly as it came, without metadata.
            self.stats.singles += 1;
            sink(
                Emitted {
                    frame: &slot.buf,
                    meta: OffloadMeta::default(),
                    segments: 1,
                    hdr_len,
                    fixed_id: false,
                    cause: EmitCause::Flushed(cause),
                    first_frame: slot.first_frame,
                },
                &slot.segs,
            );
            return;
        }
        self.stats.super_frames += 1;
        let (l3, l4) = (slot.l3, slot.l4);
        let ip_len = slot.ip_len();
        let l4_len = slot.len - l4;
        let buf = &mut slot.buf[..];
        let mut pseudo = Sum::new();
        if slot.v6 {
            buf[l3 + 4..l3 + 6].copy_from_slice(&((ip_len - 40) as u16).to_be_bytes());
        } else {
            buf[l3 + 2..l3 + 4].copy_from_slice(&(ip_len as u16).to_be_bytes());
            buf[l3 + 10..l3 + 12].fill(0);
            let c = csum::checksum(&buf[l3..l3 + 20]);
            buf[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        }
        let proto = if slot.tcp {
            ip_proto::TCP
        } else {
            ip_proto::UDP
        };
        // The destination is the final one of an IPv6 Routing header when there is one.
        let d = slot.pseudo_dst;
        if slot.v6 {
            if let (Some(src), Some(dst)) = (buf.get(l3 + 8..l3 + 24), buf.get(d..d + 16)) {
                if let (Ok(src), Ok(dst)) = (src.try_into(), dst.try_into()) {
                    pseudo = csum::pseudo_header_v6(src, dst, proto, l4_len as u32);
                }
            }
        } else if let (Some(src), Some(dst)) = (buf.get(l3 + 12..l3 + 16), buf.get(d..d + 4)) {
            if let (Ok(src), Ok(dst)) = (src.try_into(), dst.try_into()) {
                pseudo = csum::pseudo_header_v4(src, dst, proto, l4_len as u32);
            }
        }
        let (field, csum_offset, kind) = if slot.tcp {
            let kind = if slot.v6 {
                GsoKind::Tcpv6
            } else {
                GsoKind::Tcpv4
            };
            (l4 + 16, TCP_CSUM_OFFSET, kind)
        } else {
            buf[l4 + 4..l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            (l4 + 6, UDP_CSUM_OFFSET, GsoKind::UdpL4)
        };
        buf[field..field + 2].copy_from_slice(&pseudo.fold().to_be_bytes());
        let ecn = slot.tcp && buf[l4 + 13] & TCP_CWR != 0;
        let meta = OffloadMeta {
            csum: CsumState::Partial {
                start: l4 as u16,
                offset: csum_offset,
            },
            gso: Some(Gso {
                kind,
                size: slot.gso_size as u16,
                ecn,
            }),
        };
        sink(
            Emitted {
                frame: &slot.buf,
                meta,
                segments: slot.count,
                hdr_len,
                fixed_id: slot.tcp && !slot.v6 && slot.fixed_id,
                cause: EmitCause::Flushed(cause),
                first_frame: slot.first_frame,
            },
            &slot.segs,
        );
    }
}

impl Default for Coalescer {
    fn default() -> Self {
        Coalescer::new(GroConfig::default())
    }
}

/// Fuzz body shared by the cargo-fuzz target `gro_batch` (fuzz/) and the proptest in
/// tests/gro_fuzz.rs, so CI runs exactly what the fuzzer does. Not a stable API.
#[doc(hidden)]
pub mod fuzz {
    use super::{Coalescer, EmitCause, Emitted, GroConfig};
    use crate::offload::checksum::{verify_frame, Verdict};
    use crate::packet::{CsumState, OffloadMeta};
    use crate::wire::{parse, Start};

    /// Most frames taken from one input.
    pub const MAX_FRAMES: usize = 256;

    /// Split an input into its settings and frames: byte 0 selects the settings (bit 0:
    /// frames start at the IP header; bits 1-2: flow table size 1 to 4; bit 3: do not
    /// verify checksums; bit 4: no UDP), then frames, each a big-endian u16 length and
    /// that many bytes (a last frame cut short by the end of the input is kept as it is).
    pub fn split(data: &[u8]) -> Option<(GroConfig, Start, Vec<&[u8]>)> {
        let (&sel, mut rest) = data.split_first()?;
        let start = if sel & 1 != 0 {
            Start::Ip
        } else {
            Start::Ethernet
        };
        let cfg = GroConfig {
            max_flows: usize::from((sel >> 1) & 3) + 1,
            verify_checksums: sel & 8 == 0,
            udp: sel & 16 == 0,
            ..GroConfig::default()
        };
        let mut frames = Vec::new();
        while let [hi, lo, tail @ ..] = rest {
            if frames.len() == MAX_FRAMES {
                break;
            }
            let n = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
            let (frame, after) = tail.split_at(n);
            frames.push(frame);
            rest = after;
        }
        Some((cfg, start, frames))
    }

    /// The inverse of [`split`], for building inputs from frames.
    pub fn join(selector: u8, frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![selector];
        for f in frames {
            let n = f.len().min(usize::from(u16::MAX));
            out.extend_from_slice(&(n as u16).to_be_bytes());
            out.extend_from_slice(&f[..n]);
        }
        out
    }

    type Item = (Vec<u8>, OffloadMeta, u16, bool, EmitCause);

    /// Coalesce the frames of `data` (see [`split`]) frame by frame (`push`, then
    /// `flush`) and as one batch (`coalesce_batch`). Both must emit the same bytes,
    /// metadata and counters, and every frame must come out exactly once (the segment
    /// counts add up). A super-frame must re-parse, stay within the size limit, and when
    /// checksums were verified complete to a frame whose checksums verify; anything else
    /// is given back byte for byte. Returns the number of items emitted.
    pub fn gro_batch(data: &[u8]) -> Option<usize> {
        let (cfg, start, frames) = split(data)?;
        let item = |e: &Emitted<'_>, bytes: Vec<u8>| -> Item {
            (bytes, e.meta, e.segments, e.fixed_id, e.cause)
        };
        let mut linear: Vec<Item> = Vec::new();
        let mut gro = Coalescer::new(cfg);
        let mut sink = |e: Emitted<'_>| linear.push(item(&e, e.frame.to_vec()));
        for f in &frames {
            gro.push(f, start, &mut sink);
        }
        gro.flush(&mut sink);

        let mut gathered: Vec<Item> = Vec::new();
        let mut batch = Coalescer::new(cfg);
        batch.coalesce_batch(&frames[..], start, &mut |g| {
            let mut bytes = Vec::new();
            g.copy_to(&mut bytes);
            let e = Emitted {
                frame: &[],
                meta: g.meta,
                segments: g.segments,
                hdr_len: g.hdr_len,
                fixed_id: g.fixed_id,
                cause: g.cause,
                first_frame: g.first_frame,
            };
            gathered.push(item(&e, bytes));
        });
        assert_eq!(linear, gathered, "gather mode emitted something else");
        assert_eq!(gro.stats(), batch.stats(), "gather mode counted otherwise");
        let total: usize = linear.iter().map(|i| usize::from(i.2)).sum();
        assert_eq!(total, frames.len(), "every frame comes out once");

        for (bytes, meta, segments, _, _) in &linear {
            if meta.gso.is_none() {
                assert_eq!(*segments, 1);
                assert!(frames.contains(&&bytes[..]), "a frame given back changed");
                continue;
            }
            assert!(*segments >= 2);
            let l = parse(bytes, start).expect("super-frame re-parses");
            assert_eq!(l.ip_end, bytes.len());
            assert!(l.ip_end - l.l3_offset <= cfg.max_size);
            assert!(matches!(meta.csum, CsumState::Partial { .. }));
            let mut done = bytes.clone();
            super::complete_checksum(&mut done, meta).expect("partial checksum in range");
            let v = verify_frame(&done, start);
            assert!(v.ip.is_ok(), "super-frame IPv4 header checksum {v:?}");
            if cfg.verify_checksums {
                assert_eq!(v.l4, Verdict::Good, "super-frame L4 checksum {v:?}");
            }
        }
        Some(linear.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A valid frame: `l2` 0 (tun), 14 or 18 (one VLAN tag); checksums right.
    fn frame(l2: usize, v6: bool, tcp: bool, payload: usize, opts: usize) -> Vec<u8> {
        let mut f = vec![0u8; l2];
        if l2 >= 14 {
            f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
            let et: u16 = if v6 { 0x86DD } else { 0x0800 };
            if l2 == 18 {
                f[12..14].copy_from_slice(&[0x81, 0]);
                f[14..16].copy_from_slice(&[0, 7]);
            }
            f[l2 - 2..l2].copy_from_slice(&et.to_be_bytes());
        }
        let l4_len = if tcp { 20 + opts } else { 8 } + payload;
        let proto = if tcp { ip_proto::TCP } else { ip_proto::UDP };
        let ip = f.len();
        if v6 {
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4_len as u16).to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
            f.extend((0..32).map(|i| i as u8 ^ 0xa5));
        } else {
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 9, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
            let c = csum::checksum(&f[ip..ip + 20]);
            f[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
        }
        let l4 = f.len();
        f.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
        if tcp {
            f.extend_from_slice(&[0, 0, 1, 0, 0, 0, 0, 7, ((5 + opts / 4) << 4) as u8, 0x10]);
            f.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
            f.extend((0..opts).map(|_| 1u8));
        } else {
            f.extend_from_slice(&(l4_len as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0]);
        }
        f.extend((0..payload).map(|i| (i * 7) as u8));
        fix_l4(&mut f, ip, l4, v6, tcp);
        f
    }

    fn fix_l4(f: &mut [u8], ip: usize, l4: usize, v6: bool, tcp: bool) {
        let at = l4 + if tcp { 16 } else { 6 };
        if at + 2 > f.len() {
            return;
        }
        f[at..at + 2].fill(0);
        let proto = if tcp { ip_proto::TCP } else { ip_proto::UDP };
        let len = (f.len() - l4) as u32;
        let mut s = if v6 {
            let a: [u8; 16] = f[ip + 8..ip + 24].try_into().unwrap();
            let b: [u8; 16] = f[ip + 24..ip + 40].try_into().unwrap();
            csum::pseudo_header_v6(&a, &b, proto, len)
        } else {
            let a: [u8; 4] = f[ip + 12..ip + 16].try_into().unwrap();
            let b: [u8; 4] = f[ip + 16..ip + 20].try_into().unwrap();
            csum::pseudo_header_v4(a, b, proto, len)
        };
        s.add(&f[l4..]);
        let c = s.checksum();
        f[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn fast_path_takes_the_common_frames() {
        let gro = Coalescer::default();
        for l2 in [0, 14, 18] {
            for (v6, tcp) in [(false, true), (true, true), (false, false), (true, false)] {
                let f = frame(l2, v6, tcp, 100, 12);
                let start = if l2 == 0 { Start::Ip } else { Start::Ethernet };
                let fast = gro.fast_classify(&f, start);
                assert!(fast.is_some(), "l2 {l2} v6 {v6} tcp {tcp}");
                let mut slow = Coalescer::default();
                assert_eq!(fast, slow.classify(&f, start).ok());
            }
        }
    }

    proptest! {
        /// Whatever the fast path accepts, the full classification accepts identically.
        #[test]
        fn fast_path_agrees_with_classify(
            l2 in prop_oneof![Just(0usize), Just(14), Just(18)],
            v6 in any::<bool>(),
            tcp in any::<bool>(),
            payload in 0usize..64,
            opts in prop_oneof![Just(0usize), Just(12)],
            edits in proptest::collection::vec((0usize..96, any::<u8>()), 0..4),
            truncate in proptest::option::of(0usize..160),
            refix in any::<bool>(),
            cfg_tcp in any::<bool>(),
            cfg_udp in any::<bool>(),
            verify in any::<bool>(),
        ) {
            let mut f = frame(l2, v6, tcp, payload, opts);
            for (at, b) in edits {
                if let Some(x) = f.get_mut(at) {
                    *x = b;
                }
            }
            let ip = l2;
            let l4 = ip + if v6 { 40 } else { 20 };
            if refix && f.len() >= l4 {
                if !v6 {
                    f[ip + 10..ip + 12].fill(0);
                    let c = csum::checksum(&f[ip..ip + 20]);
                    f[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
                }
                fix_l4(&mut f, ip, l4, v6, tcp);
            }
            if let Some(n) = truncate {
                f.truncate(n);
            }
            let cfg = GroConfig {
                tcp: cfg_tcp,
                udp: cfg_udp,
                verify_checksums: verify,
                ..GroConfig::default()
            };
            let start = if l2 == 0 { Start::Ip } else { Start::Ethernet };
            let mut gro = Coalescer::new(cfg);
            if let Some(c) = gro.fast_classify(&f, start) {
                prop_assert_eq!(Some(c), gro.classify(&f, start).ok());
            }
        }

        #[test]
        fn fold_sum_matches_reference(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let mut s = Sum::new();
            s.add(&data);
            prop_assert_eq!(fold_sum(&data), s.fold());
        }
    }
}
