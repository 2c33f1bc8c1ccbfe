//! Overlay ports: Ethernet frames carried between hosts in UDP tunnels, VXLAN (RFC 7348)
//! and GENEVE (RFC 8926), as the kernel's `vxlan` device and Open vSwitch speak them.
//!
//! Everything an overlay port decides, without the socket:
//!
//! - [`decap`]: a received UDP payload to its inner Ethernet frame, or a [`DecapError`]
//!   naming what is wrong (counted by [`DecapCause`], never logged per packet);
//! - [`Encap::header`]: the tunnel header every sent frame is prefixed with;
//! - [`fdb::Fdb`]: which remote endpoint an inner MAC lives behind, learned from the
//!   outer source of received frames;
//! - [`flow`]: the hash of the inner flow that picks the outer UDP source port, so that
//!   the underlay's ECMP and RSS spread the flows as they do the kernel's;
//! - [`plan`]: what a transmitted frame becomes: to which remotes, whole or as inner
//!   segments sent as one UDP GSO buffer, or dropped because it cannot fit the underlay.
//!
//! ```text
//!   UDP payload ──decap──► inner frame ──► switch          (fdb.learn(src MAC, remote))
//!   switch ──► plan::plan_tx ──► Whole | Segments { per UDP-GSO send } | Drop
//!                  └─ fdb.lookup(dst MAC): one remote, else every remote (head-end
//!                     replication)
//! ```

pub mod fdb;
pub mod flow;
pub mod plan;

/// Fuzz body of the `overlay_decap` target, test-only (feature `testing`).
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod fuzz;

use core::fmt;

use crate::wire::{ethernet, ethertype, geneve, ipv4, ipv6, vlan, vxlan};

/// The tunnel a port speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encap {
    /// VXLAN (RFC 7348), UDP port 4789.
    Vxlan,
    /// GENEVE (RFC 8926), UDP port 6081; sent without options.
    Geneve,
}

/// Length of the tunnel header pvnet sends (both kinds, GENEVE without options).
pub const HEADER_LEN: usize = 8;

impl Encap {
    /// The IANA-assigned UDP destination port.
    pub const fn default_port(self) -> u16 {
        match self {
            Encap::Vxlan => vxlan::PORT,
            Encap::Geneve => geneve::PORT,
        }
    }

    /// `vxlan` or `geneve`.
    pub const fn name(self) -> &'static str {
        match self {
            Encap::Vxlan => "vxlan",
            Encap::Geneve => "geneve",
        }
    }

    /// The header in front of every frame sent with this VNI.
    pub fn header(self, vni: Vni) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        match self {
            Encap::Vxlan => vxlan::Header::new_unchecked(&mut b[..]).fill(vni.get()),
            Encap::Geneve => geneve::Header::new_unchecked(&mut b[..]).fill(vni.get()),
        }
        b
    }
}

/// A 24-bit virtual network identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Vni(u32);

impl Vni {
    /// `None` above 2^24 - 1.
    pub const fn new(vni: u32) -> Option<Vni> {
        if vni <= vxlan::VNI_MAX {
            Some(Vni(vni))
        } else {
            None
        }
    }

    /// The identifier.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a received datagram was not taken. Every variant is one [`DecapCause`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecapError {
    /// The tunnel header (with its options) does not fit in the datagram.
    Truncated {
        /// Bytes the header needs.
        needed: usize,
        /// Bytes the datagram has.
        available: usize,
    },
    /// VXLAN without the I flag (the VNI is not valid).
    VxlanFlags(u8),
    /// GENEVE version other than 0.
    GeneveVersion(u8),
    /// A GENEVE OAM (control) message: not data.
    GeneveOam,
    /// GENEVE critical options, which pvnet does not understand (RFC 8926 3.5: drop).
    GeneveCritical,
    /// A GENEVE option whose length runs past the options.
    GeneveOptionLength(geneve::OptionOverrun),
    /// The payload is not Ethernet (GENEVE protocol type).
    Protocol(u16),
    /// A VNI other than the port's.
    WrongVni {
        /// The datagram's VNI.
        got: u32,
        /// The port's.
        want: u32,
    },
    /// The inner Ethernet header (with its VLAN tags) is cut short.
    InnerTruncated {
        /// Bytes the inner headers need.
        needed: usize,
        /// Bytes the inner frame has.
        available: usize,
    },
    /// The inner IP packet claims more bytes than the datagram carries.
    InnerTooLong {
        /// Bytes the inner IP length field claims, from the inner IP header.
        claimed: usize,
        /// Bytes the datagram has from there.
        available: usize,
    },
}

/// The cause a [`DecapError`] is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum DecapCause {
    /// [`DecapError::Truncated`].
    Truncated,
    /// [`DecapError::VxlanFlags`], [`DecapError::GeneveVersion`],
    /// [`DecapError::GeneveOam`], [`DecapError::GeneveCritical`].
    Header,
    /// [`DecapError::GeneveOptionLength`].
    OptionLength,
    /// [`DecapError::Protocol`].
    Protocol,
    /// [`DecapError::WrongVni`].
    WrongVni,
    /// [`DecapError::InnerTruncated`], [`DecapError::InnerTooLong`].
    InnerLength,
    /// From an address that is not one of the port's remotes.
    UnknownRemote,
}

impl DecapCause {
    /// Number of causes.
    pub const COUNT: usize = 7;

    /// Every cause, in index order.
    pub const ALL: [DecapCause; DecapCause::COUNT] = [
        DecapCause::Truncated,
        DecapCause::Header,
        DecapCause::OptionLength,
        DecapCause::Protocol,
        DecapCause::WrongVni,
        DecapCause::InnerLength,
        DecapCause::UnknownRemote,
    ];

    /// A label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            DecapCause::Truncated => "truncated",
            DecapCause::Header => "header",
            DecapCause::OptionLength => "option_length",
            DecapCause::Protocol => "protocol",
            DecapCause::WrongVni => "wrong_vni",
            DecapCause::InnerLength => "inner_length",
            DecapCause::UnknownRemote => "unknown_remote",
        }
    }
}

impl From<&DecapError> for DecapCause {
    fn from(e: &DecapError) -> DecapCause {
        match e {
            DecapError::Truncated { .. } => DecapCause::Truncated,
            DecapError::VxlanFlags(_)
            | DecapError::GeneveVersion(_)
            | DecapError::GeneveOam
            | DecapError::GeneveCritical => DecapCause::Header,
            DecapError::GeneveOptionLength(_) => DecapCause::OptionLength,
            DecapError::Protocol(_) => DecapCause::Protocol,
            DecapError::WrongVni { .. } => DecapCause::WrongVni,
            DecapError::InnerTruncated { .. } | DecapError::InnerTooLong { .. } => {
                DecapCause::InnerLength
            }
        }
    }
}

impl fmt::Display for DecapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecapError::Truncated { needed, available } => write!(
                f,
                "tunnel header truncated (needs {needed} bytes, {available} available)"
            ),
            DecapError::VxlanFlags(b) => write!(f, "VXLAN flags {b:#04x} without the I flag"),
            DecapError::GeneveVersion(v) => write!(f, "GENEVE version {v}"),
            DecapError::GeneveOam => write!(f, "GENEVE OAM message"),
            DecapError::GeneveCritical => write!(f, "GENEVE critical options not understood"),
            DecapError::GeneveOptionLength(o) => write!(
                f,
                "GENEVE option at offset {} claims {} bytes, {} left in the options",
                o.offset, o.claimed, o.available
            ),
            DecapError::Protocol(p) => write!(f, "payload protocol {p:#06x} is not Ethernet"),
            DecapError::WrongVni { got, want } => write!(f, "VNI {got}, the port's is {want}"),
            DecapError::InnerTruncated { needed, available } => write!(
                f,
                "inner Ethernet header truncated (needs {needed} bytes, {available} available)"
            ),
            DecapError::InnerTooLong { claimed, available } => write!(
                f,
                "inner IP packet claims {claimed} bytes, the datagram has {available}"
            ),
        }
    }
}

impl std::error::Error for DecapError {}

/// Most VLAN tags looked through in an inner frame (as [`crate::wire::MAX_VLAN_TAGS`]).
const MAX_INNER_TAGS: usize = crate::wire::MAX_VLAN_TAGS as usize;

/// Check a received UDP payload `datagram` of a port speaking `encap` with VNI `want`,
/// and return the offset of its inner Ethernet frame (which runs to the end of the
/// datagram). The inner IP length, when the inner frame is IPv4 or IPv6, must fit in the
/// datagram: a frame that claims more is refused rather than passed on for someone else
/// to read beyond. Never panics.
pub fn decap(encap: Encap, want: Vni, datagram: &[u8]) -> Result<usize, DecapError> {
    let truncated = |e| match e {
        crate::wire::ParseErrorKind::Truncated { needed, available } => {
            DecapError::Truncated { needed, available }
        }
        // check_len of these views reports nothing else.
        _ => DecapError::Truncated {
            needed: HEADER_LEN,
            available: datagram.len(),
        },
    };
    let (vni, offset) = match encap {
        Encap::Vxlan => {
            let h = vxlan::Header::new_checked(datagram).map_err(truncated)?;
            if h.flags() & vxlan::flags::I == 0 {
                return Err(DecapError::VxlanFlags(h.flags()));
            }
            (h.vni(), vxlan::HEADER_LEN)
        }
        Encap::Geneve => {
            let h = geneve::Header::new_checked(datagram).map_err(truncated)?;
            if h.version() != geneve::VERSION {
                return Err(DecapError::GeneveVersion(h.version()));
            }
            let critical = h.check_options().map_err(DecapError::GeneveOptionLength)?;
            if h.flags() & geneve::flags::O != 0 {
                return Err(DecapError::GeneveOam);
            }
            if critical || h.flags() & geneve::flags::C != 0 {
                return Err(DecapError::GeneveCritical);
            }
            if h.protocol() != geneve::PROTO_ETHERNET {
                return Err(DecapError::Protocol(h.protocol()));
            }
            (h.vni(), h.header_len())
        }
    };
    if vni != want.get() {
        return Err(DecapError::WrongVni {
            got: vni,
            want: want.get(),
        });
    }
    check_inner(&datagram[offset..])?;
    Ok(offset)
}

/// The inner frame's Ethernet header and VLAN tags are there, and its IP packet, if it is
/// one, ends inside the frame.
fn check_inner(inner: &[u8]) -> Result<(), DecapError> {
    let cut = |needed| DecapError::InnerTruncated {
        needed,
        available: inner.len(),
    };
    let mut at = ethernet::HEADER_LEN;
    let mut ty = match inner.get(ethernet::field::ETHERTYPE) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => return Err(cut(ethernet::HEADER_LEN)),
    };
    for _ in 0..MAX_INNER_TAGS {
        if ty != ethertype::VLAN && ty != ethertype::QINQ {
            break;
        }
        // The tag's TCI, then the EtherType it carries.
        let next = at + vlan::HEADER_LEN;
        ty = match inner.get(next - 2..next) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]),
            None => return Err(cut(next)),
        };
        at = next;
    }
    let ip = &inner[at..];
    let claimed = match ty {
        ethertype::IPV4 => match ip.get(ipv4::field::TOTAL_LEN) {
            Some(b) => usize::from(u16::from_be_bytes([b[0], b[1]])),
            None => return Err(cut(at + ipv4::field::TOTAL_LEN.end)),
        },
        ethertype::IPV6 => match ip.get(ipv6::field::PAYLOAD_LEN) {
            Some(b) => ipv6::HEADER_LEN + usize::from(u16::from_be_bytes([b[0], b[1]])),
            None => return Err(cut(at + ipv6::field::PAYLOAD_LEN.end)),
        },
        _ => return Ok(()),
    };
    if claimed > ip.len() {
        return Err(DecapError::InnerTooLong {
            claimed,
            available: ip.len(),
        });
    }
    Ok(())
}

/// Complete the transport checksum of a received inner frame (linear, Ethernet) when it
/// is left partial: its field holds the folded pseudo-header sum and nothing more.
/// Returns whether it did.
///
/// A kernel that sends through a tunnel device with checksum offload leaves the inner
/// checksum to the NIC. A real NIC fills it in; a veth passes the packet on as it is (the
/// kernel on the other side trusts its CHECKSUM_PARTIAL state), and a UDP socket there
/// hands out the bytes with no word of that state. So the field is compared with the
/// pseudo-header sum, which costs no pass over the payload, and only a match is summed.
/// Completing a checksum that was already right and merely equal to that value by chance
/// (one in 65536) writes the same value back: the completion is idempotent.
pub fn complete_partial_inner(frame: &mut [u8]) -> bool {
    use crate::offload::checksum::{complete_partial_linear, pseudo_header};
    use crate::wire::{ip_proto, parse, tcp, udp, Start, L4};
    let Ok(layers) = parse(frame, Start::Ethernet) else {
        return false;
    };
    if layers.fragment {
        return false;
    }
    let (proto, offset) = match layers.l4 {
        Some(L4::Tcp) => (ip_proto::TCP, tcp::CHECKSUM_OFFSET),
        Some(L4::Udp) => (ip_proto::UDP, udp::CHECKSUM_OFFSET),
        _ => return false,
    };
    let start = layers.l4_offset;
    let end = layers.ip_end;
    let Some(field) = frame.get(start + offset..start + offset + 2) else {
        return false;
    };
    let stored = u16::from_be_bytes([field[0], field[1]]);
    let Ok(l4_len) = u32::try_from(end.saturating_sub(start)) else {
        return false;
    };
    let Some(pseudo) = pseudo_header(frame, &layers, proto, l4_len) else {
        return false;
    };
    // UDP over IPv4 without a checksum is complete as it is.
    if proto == ip_proto::UDP && stored == 0 {
        return false;
    }
    if stored != pseudo.fold() {
        return false;
    }
    frame
        .get_mut(..end)
        .is_some_and(|f| complete_partial_linear(f, start, offset).is_ok())
}

#[cfg(test)]
mod tests;
