//! Why a super-frame cannot be segmented.

use super::MAX_HEADER_LEN;
use crate::packet::GsoKind;
use crate::wire::{L3, L4};

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
