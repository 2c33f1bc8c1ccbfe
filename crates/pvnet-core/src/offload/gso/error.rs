//! Why a super-frame cannot be segmented.
//!
//! What [`crate::vnet::Validated`] proves of a super-frame (a GSO kind matching its
//! protocols, a non-zero `gso_size`, no IP fragment, at most
//! [`USO_MAX_SEGMENTS`](crate::vnet::USO_MAX_SEGMENTS) USO segments) has no variant here.
//! What is left: limits of this segmenter that validation does not know, and the cheap
//! re-reads of the header bytes the segmenter relies on, since the frame's memory may have
//! changed after it was validated (a guest can write to its buffers at any time) or the
//! `Validated` may be another frame's.

use super::MAX_HEADER_LEN;
use crate::wire::{L3, L4};

/// Why a super-frame cannot be segmented. Offsets are from the start of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoError {
    /// UFO with a `gso_size` below 8: no fragment could carry data.
    UfoSizeTooSmall {
        /// The `gso_size`.
        size: u16,
    },
    /// A frame without GSO metadata (passed through whole) that is not TCP or UDP over IP.
    NotTcpUdp {
        /// Its network layer.
        l3: Option<L3>,
        /// Its transport layer.
        l4: Option<L4>,
    },
    /// The packet is an IP fragment; fragments are never segmented.
    Fragment {
        /// Offset of the IP header (or IPv6 Fragment header) that says so.
        offset: usize,
    },
    /// The layer offsets do not describe this packet (out of order, beyond the data, or the
    /// headers are not all in the frame's head).
    BadLayers {
        /// The payload offset the layers give.
        offset: usize,
        /// Length of the frame's head.
        len: usize,
    },
    /// IPv4 version, header length or protocol field disagrees with the layers.
    BadIpv4Header {
        /// Offset of the IPv4 header.
        offset: usize,
    },
    /// IPv6 version field, or an extension header chain that does not lead to the transport
    /// header the layers name.
    BadIpv6Header {
        /// Offset of the header found wrong.
        offset: usize,
    },
    /// An IPv6 extension header the segmenter does not handle (AH, ESP, Mobility, …), or,
    /// for UFO, an extension header that would belong to the fragmentable part.
    UnsupportedExtHeader {
        /// Offset of the extension header.
        offset: usize,
        /// Its type (the Next Header value naming it).
        next_header: u8,
    },
    /// TCP data offset below 5 words, disagreeing with the layers, or a header reaching past
    /// the packet.
    BadTcpDataOffset {
        /// Offset of the TCP header.
        offset: usize,
        /// The data offset field, in 32-bit words.
        data_offset: u8,
    },
    /// The IP length field (IPv4 total length / IPv6 payload length) disagrees with the
    /// packet's length.
    IpLengthMismatch {
        /// Offset of the IP header.
        offset: usize,
        /// The IP packet length the header (or the layers) claim.
        claimed: usize,
        /// The IP packet length the frame has.
        actual: usize,
    },
    /// The UDP length field disagrees with the IP payload length.
    UdpLengthMismatch {
        /// Offset of the UDP header.
        offset: usize,
        /// The length field.
        claimed: usize,
        /// The UDP datagram length the frame has.
        actual: usize,
    },
    /// The header block is longer than [`MAX_HEADER_LEN`].
    HeaderTooLong {
        /// Its length, an inserted IPv6 Fragment header included.
        len: usize,
    },
    /// A UDP tunnel super-frame whose outer headers or tunnel offsets do not describe it:
    /// no outer UDP header, an inner packet that does not start after it, or no inner
    /// layers in its [`Validated`](crate::vnet::Validated).
    BadTunnel {
        /// Offset of the header found wrong (the outer UDP header, or the inner IP header).
        offset: usize,
    },
}

impl GsoError {
    /// A short fixed name for the cause, usable as a drop-counter key.
    pub fn cause(&self) -> &'static str {
        match self {
            GsoError::UfoSizeTooSmall { .. } => "ufo_size_too_small",
            GsoError::NotTcpUdp { .. } => "not_tcp_udp",
            GsoError::Fragment { .. } => "ip_fragment",
            GsoError::BadLayers { .. } => "bad_layers",
            GsoError::BadIpv4Header { .. } => "bad_ipv4_header",
            GsoError::BadIpv6Header { .. } => "bad_ipv6_header",
            GsoError::UnsupportedExtHeader { .. } => "unsupported_ext_header",
            GsoError::BadTcpDataOffset { .. } => "bad_tcp_data_offset",
            GsoError::IpLengthMismatch { .. } => "ip_length_mismatch",
            GsoError::UdpLengthMismatch { .. } => "udp_length_mismatch",
            GsoError::HeaderTooLong { .. } => "header_too_long",
            GsoError::BadTunnel { .. } => "bad_tunnel",
        }
    }
}

impl core::fmt::Display for GsoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            GsoError::UfoSizeTooSmall { size } => {
                write!(
                    f,
                    "UFO gso_size {size} leaves no room for 8-byte fragment units"
                )
            }
            GsoError::NotTcpUdp { l3, l4 } => {
                write!(f, "no TCP or UDP over IP to segment ({l3:?}, {l4:?})")
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
            GsoError::BadTunnel { offset } => write!(
                f,
                "UDP tunnel headers at offset {offset} disagree with the tunnel offsets"
            ),
        }
    }
}

impl std::error::Error for GsoError {}
