//! Typed zero-copy views over wire formats (smoltcp style) and a one-shot `parse` that
//! returns the offsets of every layer of a frame.
//!
//! Every view is `Packet<T: AsRef<[u8]>>`: `new_unchecked` wraps a buffer, `new_checked`
//! runs `check_len`, after which no getter panics. Setters need `T: AsMut<[u8]>`.
//! `check_len` reports a [`ParseErrorKind`]; [`parse`] adds the layer and offset.

pub mod ethernet;
pub mod geneve;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod vlan;
pub mod vxlan;

mod parse;

pub use parse::{parse, Start, MAX_VLAN_TAGS};

/// EtherType values pvnet understands.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// IPv6.
    pub const IPV6: u16 = 0x86DD;
    /// 802.1Q C-tag TPID.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad S-tag TPID (QinQ).
    pub const QINQ: u16 = 0x88A8;
    /// ARP.
    pub const ARP: u16 = 0x0806;
}

/// IP protocol numbers (IPv4 protocol / IPv6 next header).
pub mod ip_proto {
    /// IPv6 Hop-by-Hop options header.
    pub const HOPOPT: u8 = 0;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 Routing header.
    pub const IPV6_ROUTE: u8 = 43;
    /// IPv6 Fragment header.
    pub const IPV6_FRAG: u8 = 44;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 No Next Header: nothing follows.
    pub const IPV6_NONXT: u8 = 59;
    /// IPv6 Destination options header.
    pub const IPV6_OPTS: u8 = 60;
    /// ICMP (for IPv4).
    pub const ICMP: u8 = 1;
}

/// The network layer found by [`parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3 {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

/// The transport layer found by [`parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// Another upper-layer protocol (ICMP, …): its number, header not parsed.
    Other(u8),
}

/// Offsets of every layer of a frame, as found by [`parse`]. All offsets are from the start
/// of the buffer given to `parse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layers {
    /// Length of the link-layer header including VLAN tags (0 when parsing started at L3).
    pub l2_len: usize,
    /// Number of 802.1Q/802.1ad tags (0, 1 or 2).
    pub vlans: u8,
    /// Innermost EtherType (for `Start::Ip`, 0x0800 or 0x86DD derived from the version nibble).
    pub ethertype: u16,
    /// `None` when the EtherType is neither IPv4 nor IPv6 (ARP, …): nothing past L2 is parsed
    /// and `l4_offset`, `payload_offset` and `ip_end` all equal `l3_offset`.
    pub l3: Option<L3>,
    /// Offset of the IP header (== l2_len).
    pub l3_offset: usize,
    /// Length of the IP header: IHL×4 for IPv4, 40 + all extension headers for IPv6.
    pub l3_len: usize,
    /// End of the IP packet according to its own length field (total length / payload
    /// length); anything after it (Ethernet padding) is not part of the packet.
    pub ip_end: usize,
    /// Offset of the 4- or 16-byte destination address that the TCP/UDP pseudo-header uses:
    /// the IP header's own destination, or for IPv6 with a Routing header whose
    /// segments-left is non-zero, the final destination inside that Routing header.
    pub pseudo_dst_offset: usize,
    /// The packet is an IP fragment (IPv4 MF or offset != 0, or an IPv6 Fragment header).
    /// For a non-first fragment `l4` is `None`.
    pub fragment: bool,
    /// Upper-layer protocol, `None` for non-IP frames and non-first fragments.
    pub l4: Option<L4>,
    /// Offset of the transport header (== l3_offset + l3_len).
    pub l4_offset: usize,
    /// Transport header length (TCP: data offset × 4; UDP: 8; other: 0).
    pub l4_len: usize,
    /// Offset of the transport payload (== l4_offset + l4_len).
    pub payload_offset: usize,
}

impl Layers {
    /// Length of the transport payload (to `ip_end`).
    pub fn payload_len(&self) -> usize {
        self.ip_end.saturating_sub(self.payload_offset)
    }
}

/// Which layer a parse error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// The Ethernet header.
    Ethernet,
    /// An 802.1Q/802.1ad tag.
    Vlan,
    /// The IPv4 header.
    Ipv4,
    /// The fixed IPv6 header.
    Ipv6,
    /// An IPv6 extension header.
    Ipv6Ext,
    /// The TCP header.
    Tcp,
    /// The UDP header.
    Udp,
}

/// Why a frame could not be parsed: the layer, the offset of that layer's header in the
/// buffer and the cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError {
    /// The layer whose header is wrong.
    pub layer: Layer,
    /// Offset of that header in the buffer.
    pub offset: usize,
    /// What is wrong with it.
    pub kind: ParseErrorKind,
}

/// Why a header could not be parsed: the cause alone, as a view's `check_len` reports it
/// ([`ParseError`] adds the layer and the offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The buffer ends before the header does: `needed` bytes from `offset`, `available` there.
    Truncated {
        /// Bytes the header needs from its offset.
        needed: usize,
        /// Bytes the buffer has there.
        available: usize,
    },
    /// IP version nibble is not 4 (IPv4) / 6 (IPv6).
    BadVersion(u8),
    /// IPv4 IHL < 5.
    BadHeaderLength(usize),
    /// IPv4 total length < IHL×4, or IP length beyond the buffer.
    BadTotalLength {
        /// Length the header claims.
        claimed: usize,
        /// Bytes the buffer has from the start of the header.
        available: usize,
    },
    /// TCP data offset < 5.
    BadDataOffset(usize),
    /// UDP length < 8 or different from the IP payload length.
    BadUdpLength {
        /// The UDP length field.
        claimed: usize,
        /// The IP payload length it should equal.
        expected: usize,
    },
    /// More IPv6 extension headers than pvnet walks (bounded chain).
    TooManyExtensionHeaders,
    /// More than two VLAN tags.
    TooManyVlanTags,
}

impl core::fmt::Display for ParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?} header at offset {}: ", self.layer, self.offset)?;
        match self.kind {
            ParseErrorKind::Truncated { needed, available } => {
                write!(f, "truncated (needs {needed} bytes, {available} available)")
            }
            ParseErrorKind::BadVersion(v) => write!(f, "bad IP version {v}"),
            ParseErrorKind::BadHeaderLength(l) => write!(f, "bad header length {l}"),
            ParseErrorKind::BadTotalLength { claimed, available } => {
                write!(
                    f,
                    "length field says {claimed} bytes, {available} available"
                )
            }
            ParseErrorKind::BadDataOffset(d) => write!(f, "TCP data offset {d} words < 5"),
            ParseErrorKind::BadUdpLength { claimed, expected } => {
                write!(f, "UDP length {claimed}, IP payload is {expected}")
            }
            ParseErrorKind::TooManyExtensionHeaders => {
                write!(f, "IPv6 extension header chain too long")
            }
            ParseErrorKind::TooManyVlanTags => write!(f, "more than two VLAN tags"),
        }
    }
}

impl std::error::Error for ParseError {}
