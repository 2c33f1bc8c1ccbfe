//! Counters of the coalescer and the causes they count.

#[cfg(doc)]
use super::Coalescer;
use crate::wire::ParseErrorKind;

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
    /// Every cause, in the order of the counters.
    pub const ALL: [FlushCause; 7] = [
        FlushCause::TableFull,
        FlushCause::Flags,
        FlushCause::ShortSegment,
        FlushCause::Mismatch,
        FlushCause::SizeLimit,
        FlushCause::SegmentLimit,
        FlushCause::Explicit,
    ];

    pub(super) fn index(self) -> usize {
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
    /// Every cause, in the order of the counters.
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

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// Parse error classes counted for malformed frames (one per [`ParseErrorKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MalformedCause {
    /// A header is cut short by the end of the frame ([`ParseErrorKind::Truncated`]).
    Truncated,
    /// The IP version nibble is not 4 / 6 ([`ParseErrorKind::BadVersion`]).
    BadVersion,
    /// IPv4 header length below 20 bytes ([`ParseErrorKind::BadHeaderLength`]).
    BadHeaderLength,
    /// The IP length field is shorter than the header or beyond the frame
    /// ([`ParseErrorKind::BadTotalLength`]).
    BadTotalLength,
    /// TCP data offset below 5 words ([`ParseErrorKind::BadDataOffset`]).
    BadDataOffset,
    /// UDP length below 8 or not the IP payload length ([`ParseErrorKind::BadUdpLength`]).
    BadUdpLength,
    /// More IPv6 extension headers than parse follows
    /// ([`ParseErrorKind::TooManyExtensionHeaders`]).
    TooManyExtensionHeaders,
    /// More VLAN tags than parse strips ([`ParseErrorKind::TooManyVlanTags`]).
    TooManyVlanTags,
}

impl MalformedCause {
    /// Every class, in the order of the counters.
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

    pub(super) fn of(kind: ParseErrorKind) -> Self {
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

    pub(super) fn index(self) -> usize {
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
    pub(super) flushed: [u64; FlushCause::ALL.len()],
    pub(super) passed: [u64; PassCause::ALL.len()],
    pub(super) malformed: [u64; MalformedCause::ALL.len()],
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
