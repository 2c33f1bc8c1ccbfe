//! virtio_net_hdr: codec, validation and the inverse mapping to offload metadata.
//!
//! Every frame that crosses a tap/tun with `IFF_VNET_HDR`, an AF_PACKET socket with
//! `PACKET_VNET_HDR` or a virtio-net queue is prefixed by a [`VnetHdr`]. The header is input
//! from a peer we do not trust (a guest, another process), so it is only ever used in its
//! checked form: [`validate`] parses the frame and turns header + frame into
//! [`OffloadMeta`] or a [`VnetError`] naming exactly one cause. [`VnetHdr::from_meta`] is the
//! inverse (the kernel's `virtio_net_hdr_from_skb`). [`validate_gso`] gives a super-frame
//! that came without a header (a capture, a test) the same checks, for the header a sender
//! would have written.
//!
//! # Layout
//!
//! | bytes | field                                                  |
//! |-------|--------------------------------------------------------|
//! | 0     | `flags` ([`flags`])                                    |
//! | 1     | `gso_type` ([`gso`])                                   |
//! | 2..4  | `hdr_len`                                              |
//! | 4..6  | `gso_size`                                             |
//! | 6..8  | `csum_start`                                           |
//! | 8..10 | `csum_offset`                                          |
//! | 10..12| `num_buffers` (12-byte header only: mergeable rx / virtio 1.0) |
//!
//! The 16-bit fields are little-endian for virtio 1.0 and for tap with `TUNSETVNETLE`;
//! legacy headers are guest-native, hence [`Endian`].
//!
//! # What [`validate`] rejects, and the kernel behaviour behind each rule
//!
//! The reference is Linux 6.x `virtio_net_hdr_to_skb()` (include/linux/virtio_net.h) plus
//! the checks `tun_get_user()` (drivers/net/tun.c) does around it. Rules are checked in the
//! order listed; the first failing one is reported.
//!
//! 1. [`VnetError::UnknownGsoType`]: `gso_type` without the ECN bit is not NONE, TCPV4,
//!    UDP, TCPV6 or UDP_L4, or has any other bit set. The kernel switches on
//!    `gso_type & ~ECN` and returns `-EINVAL` in the default case, so unknown bits (and ECN
//!    alone, 0x80) are rejected. (Kernels with tunnel/AccECN support know more bits; pvnet
//!    does not negotiate those features, so they are unknown here.)
//! 2. [`VnetError::EcnWithoutTcp`]: ECN bit with UDP_L4 or UDP. The kernel rejects
//!    USO + ECN (`gso_type != SKB_GSO_UDP_L4` after the USO checks). It accepts UFO + ECN,
//!    where the bit means nothing (it tags CWR handling of TCP); pvnet is stricter and rejects
//!    it too, so `Gso::ecn` is only ever set for TCP.
//! 3. [`VnetError::GsoSizeZero`] / [`VnetError::GsoSizeByFrags`]: a GSO type with
//!    `gso_size` 0 or 0xFFFF (`GSO_BY_FRAGS`, a kernel-internal marker); both `-EINVAL`.
//! 4. [`VnetError::HdrLenBeyondData`]: `hdr_len` larger than the frame (tun: `hdr_len > len`
//!    → `-EINVAL`). Otherwise `hdr_len` is only a hint for how much to copy linearly; pvnet
//!    recomputes every header length from the packet itself.
//! 5. [`VnetError::HdrLenBelowEthernet`]: for an Ethernet frame, a non-zero `hdr_len`
//!    shorter than the Ethernet header (tap: `hdr_len && hdr_len < ETH_HLEN` → `-EINVAL`).
//! 6. [`VnetError::Parse`]: the frame does not parse (pvnet needs the layer offsets to
//!    check anything below; the kernel would drop such a frame later in the stack).
//! 7. With NEEDS_CSUM:
//!    - [`VnetError::CsumBeyondData`]: `csum_start + max(thlen, csum_offset + 2)` is beyond
//!      the data, where `thlen` is the minimum transport header of the GSO type (TCP 20,
//!      UDP 8, none 0). The kernel does `pskb_may_pull(skb, needed)`. "The data" is the IP
//!      packet up to its own length field (`Layers::ip_end`), or the whole frame for non-IP:
//!      trailing Ethernet padding is not part of what a checksum covers, so pvnet is
//!      stricter than `skb->len` here.
//!    - [`VnetError::CsumStartOverflow`]: `csum_start` plus the headroom a driver may need
//!      to push does not fit 16 bits (`skb_partial_csum_set` stores `headroom + start` in a
//!      u16 and fails otherwise). For a bare IP packet (tun) pvnet reserves an Ethernet
//!      header (14 bytes) so the packet can be forwarded to an L2 port with its vnet header.
//!    - [`VnetError::CsumStartBelowNetworkMin`]: `csum_start` below the network header
//!      plus 20 (IPv4, non-IP) / 40 (IPv6) bytes. The kernel compares the transport offset
//!      with `nh_min_len` (`sizeof(struct iphdr)`, or ipv6hdr for TCPV6) from the frame
//!      start, because it has not parsed the frame yet; pvnet knows the real L3, so it
//!      measures from the IP header and uses the parsed IP version.
//! 8. With a GSO type:
//!    - [`VnetError::GsoNotIp`]: the frame is not IPv4/IPv6 (kernel: the flow dissector
//!      finds no transport header / `virtio_net_hdr_match_proto` fails).
//!    - [`VnetError::GsoOnFragment`]: the packet is an IP fragment. A super-frame must be
//!      one whole transport packet (the kernel's dissector reports no TCP/UDP for
//!      non-first fragments, and segmenting a fragment corrupts the datagram).
//!    - [`VnetError::GsoProtoMismatch`]: TCPV4 not on IPv4/TCP, TCPV6 not on IPv6/TCP,
//!      UDP/UDP_L4 not on UDP (kernel: `virtio_net_hdr_match_proto` and
//!      `keys.basic.ip_proto != ip_proto`).
//!    - [`VnetError::CsumStartNotL4`]: NEEDS_CSUM with `csum_start` not at the parsed
//!      transport header. The kernel takes `csum_start` as the transport header for
//!      segmentation; a value pointing elsewhere makes it segment garbage.
//!    - [`VnetError::TsoCsumOffset`]: TCP GSO with NEEDS_CSUM and `csum_offset != 16`
//!      (the TCP checksum field). TCP GSO *without* NEEDS_CSUM is accepted, as in the
//!      kernel (it probes the headers with the flow dissector and `tcp4_gso_segment`
//!      computes full checksums): the metadata then has a GSO type and `CsumState::None`
//!      (or `Unnecessary`), meaning the checksum field content is not to be trusted.
//!      UFO without NEEDS_CSUM is accepted for the same reason.
//!    - [`VnetError::UsoWithoutCsum`], [`VnetError::UsoCsumOffset`]: UDP_L4 requires
//!      NEEDS_CSUM with `csum_offset == 6` (the UDP checksum field); both `-EINVAL`.
//!    - [`VnetError::UsoTooManySegments`]: UDP_L4 payload above `gso_size ×
//!      [USO_MAX_SEGMENTS]`. The kernel uses `UDP_MAX_SEGMENTS`, 128 in mainline 6.x but 64 on
//!      older and some 2024 stable kernels; pvnet accepts (and emits) at most 64 so that
//!      whatever it passes on is accepted by every kernel.
//!
//! A GSO frame whose segmentable payload is no longer than `gso_size` is accepted as a plain
//! packet (`meta.gso = None`, the partial checksum kept), like the kernel's "too small
//! packets are not really GSO ones". The segmentable payload is the transport payload for
//! TCP and USO, and UDP header + payload for UFO (which fragments the whole datagram).
//!
//! # Flags
//!
//! NEEDS_CSUM → `CsumState::Partial { start, offset }`. DATA_VALID → `CsumState::Unnecessary`
//! (virtio-net receive path). When both are set NEEDS_CSUM wins, as in the kernel's virtio-net
//! receive path, where `virtio_net_hdr_to_skb` overrides the `CHECKSUM_UNNECESSARY` set for
//! DATA_VALID. Other flag bits, RSC_INFO included, are ignored: the kernel never inspects
//! them on this path, and RSC_INFO (coalescing counts in the csum fields) is only defined
//! for a device that negotiated `VIRTIO_NET_F_RSC_EXT`, which pvnet does not offer.

use core::fmt;

use crate::frame::{CsumState, Gso, GsoKind, OffloadMeta};
use crate::wire::{ethernet, ipv4, ipv6, parse, tcp, udp, Layers, ParseError, Start, L3, L4};

/// Fuzz body of the `vnet_validate` target, test-only (feature `testing`).
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod fuzz;

/// `flags` bits.
pub mod flags {
    /// The L4 checksum is partial: sum from `csum_start` to the end into `csum_start +
    /// csum_offset`.
    pub const NEEDS_CSUM: u8 = 1;
    /// The checksums were verified (receive direction).
    pub const DATA_VALID: u8 = 2;
    /// `csum_start`/`csum_offset` carry RSC coalescing counts (VIRTIO_NET_F_RSC_EXT).
    pub const RSC_INFO: u8 = 4;
}

/// `gso_type` values.
pub mod gso {
    /// Not a super-frame.
    pub const NONE: u8 = 0;
    /// TSO over IPv4.
    pub const TCPV4: u8 = 1;
    /// UFO: IP fragmentation of one UDP datagram.
    pub const UDP: u8 = 3;
    /// TSO over IPv6.
    pub const TCPV6: u8 = 4;
    /// USO: every segment its own UDP datagram.
    pub const UDP_L4: u8 = 5;
    /// Flag bit: the TCP super-frame carries CWR that must only go on the first segment.
    pub const ECN: u8 = 0x80;
}

/// Largest number of USO segments pvnet accepts or emits (see module docs).
pub const USO_MAX_SEGMENTS: usize = 64;

/// `GSO_BY_FRAGS`: kernel-internal gso_size marker, never valid from outside.
const GSO_BY_FRAGS: u16 = 0xFFFF;

/// Size of the header on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HdrLen {
    /// 10 bytes: legacy `struct virtio_net_hdr`.
    V10,
    /// 12 bytes: `virtio_net_hdr_mrg_rxbuf` / virtio 1.0, with `num_buffers`.
    V12,
}

impl HdrLen {
    /// The form of a header of `size` bytes, `None` for a size that is neither.
    pub const fn from_size(size: usize) -> Option<HdrLen> {
        match size {
            10 => Some(HdrLen::V10),
            12 => Some(HdrLen::V12),
            _ => None,
        }
    }

    /// Number of bytes.
    pub const fn size(self) -> usize {
        match self {
            HdrLen::V10 => 10,
            HdrLen::V12 => 12,
        }
    }
}

/// Byte order of the 16-bit fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    /// virtio 1.0, tap with TUNSETVNETLE, legacy on little-endian hosts.
    Little,
    /// Legacy header of a big-endian guest (TUNSETVNETBE).
    Big,
}

impl Endian {
    fn read(self, b: [u8; 2]) -> u16 {
        match self {
            Endian::Little => u16::from_le_bytes(b),
            Endian::Big => u16::from_be_bytes(b),
        }
    }

    fn write(self, v: u16) -> [u8; 2] {
        match self {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        }
    }
}

/// A virtio_net_hdr as found on the wire, unchecked. Use [`validate`] before trusting any
/// field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    /// [`flags`] bits.
    pub flags: u8,
    /// [`gso`] type, with [`gso::ECN`] possibly or-ed in.
    pub gso_type: u8,
    /// Length of the headers (a hint for how much to copy linearly).
    pub hdr_len: u16,
    /// Payload bytes per segment of a super-frame.
    pub gso_size: u16,
    /// Where the partial checksum's sum starts (with NEEDS_CSUM).
    pub csum_start: u16,
    /// Where the checksum field is, from `csum_start` (with NEEDS_CSUM).
    pub csum_offset: u16,
    /// Only carried by the 12-byte header; 0 when decoded from 10 bytes.
    pub num_buffers: u16,
}

impl VnetHdr {
    /// Decode a header from the start of `buf`.
    pub fn decode(buf: &[u8], len: HdrLen, endian: Endian) -> Result<VnetHdr, VnetError> {
        let n = len.size();
        let Some(b) = buf.get(..n) else {
            return Err(VnetError::HeaderTruncated {
                needed: n,
                available: buf.len(),
            });
        };
        let word = |i: usize| endian.read([b[i], b[i + 1]]);
        Ok(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: word(2),
            gso_size: word(4),
            csum_start: word(6),
            csum_offset: word(8),
            num_buffers: if n == 12 { word(10) } else { 0 },
        })
    }

    /// Encode the header into the start of `out`, returning the number of bytes written.
    /// `num_buffers` is dropped by the 10-byte form.
    pub fn encode(&self, out: &mut [u8], len: HdrLen, endian: Endian) -> Result<usize, VnetError> {
        let n = len.size();
        let available = out.len();
        let Some(b) = out.get_mut(..n) else {
            return Err(VnetError::OutputTooShort {
                needed: n,
                available,
            });
        };
        b.copy_from_slice(&self.to_array(endian)[..n]);
        Ok(n)
    }

    /// The header as the 12 bytes of its longest form: its first `len.size()` bytes are
    /// the header of size `len` (the 10-byte form drops `num_buffers`). Cannot fail, for
    /// a writer that keeps its header on the stack.
    pub fn to_array(&self, endian: Endian) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0] = self.flags;
        b[1] = self.gso_type;
        let words = [
            self.hdr_len,
            self.gso_size,
            self.csum_start,
            self.csum_offset,
            self.num_buffers,
        ];
        for (chunk, w) in b[2..].chunks_exact_mut(2).zip(words) {
            chunk.copy_from_slice(&endian.write(w));
        }
        b
    }

    /// The header for a packet with metadata `meta` and layers `layers`, for the transmit
    /// direction (driver → device): like the kernel's `virtio_net_hdr_from_skb` with
    /// `has_data_valid = false`, `CsumState::Unnecessary` is not expressed.
    ///
    /// NEEDS_CSUM carries the partial checksum's start and offset; a GSO super-frame gets its
    /// type (with the ECN bit), `gso_size` and the exact `hdr_len`: the end of the transport
    /// header (`l4_offset + l4_len`). `num_buffers` is 0: the caller fills it in for mergeable
    /// receive buffers.
    pub fn from_meta(meta: &OffloadMeta, layers: &Layers) -> VnetHdr {
        Self::from_meta_inner(meta, layers, false)
    }

    /// As [`VnetHdr::from_meta`] for the receive direction (device → driver, or what tun and
    /// AF_PACKET hand to userspace, both of which pass `has_data_valid = true` in the kernel):
    /// `CsumState::Unnecessary` becomes DATA_VALID.
    pub fn from_meta_rx(meta: &OffloadMeta, layers: &Layers) -> VnetHdr {
        Self::from_meta_inner(meta, layers, true)
    }

    fn from_meta_inner(meta: &OffloadMeta, layers: &Layers, has_data_valid: bool) -> VnetHdr {
        let mut h = VnetHdr::default();
        match meta.csum {
            CsumState::Partial { start, offset } => {
                h.flags = flags::NEEDS_CSUM;
                h.csum_start = start;
                h.csum_offset = offset;
            }
            CsumState::Unnecessary if has_data_valid => h.flags = flags::DATA_VALID,
            CsumState::Unnecessary | CsumState::None => {}
        }
        if let Some(g) = meta.gso {
            h.gso_type = gso_code(g.kind) | if g.ecn { gso::ECN } else { 0 };
            h.gso_size = g.size;
            let end = layers.l4_offset.saturating_add(layers.l4_len);
            h.hdr_len = u16::try_from(end).unwrap_or(u16::MAX);
        }
        h
    }
}

fn gso_code(kind: GsoKind) -> u8 {
    match kind {
        GsoKind::Tcpv4 => gso::TCPV4,
        GsoKind::Tcpv6 => gso::TCPV6,
        GsoKind::Ufo => gso::UDP,
        GsoKind::UdpL4 => gso::UDP_L4,
    }
}

/// Why a header (or the frame it describes) was rejected. One variant per cause, carrying
/// the offending values. See the module docs for the kernel behaviour behind each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VnetError {
    /// The buffer is shorter than the header.
    HeaderTruncated {
        /// Header size (10 or 12).
        needed: usize,
        /// Bytes in the buffer.
        available: usize,
    },
    /// The output buffer is shorter than the header.
    OutputTooShort {
        /// Header size (10 or 12).
        needed: usize,
        /// Bytes in the output buffer.
        available: usize,
    },
    /// `gso_type` (without ECN) is not a known type, or has unknown bits.
    UnknownGsoType {
        /// The header's `gso_type`.
        gso_type: u8,
    },
    /// ECN bit with a UDP GSO type.
    EcnWithoutTcp {
        /// The header's `gso_type`.
        gso_type: u8,
    },
    /// GSO type with `gso_size` 0.
    GsoSizeZero {
        /// The header's `gso_type`.
        gso_type: u8,
    },
    /// GSO type with `gso_size` 0xFFFF (GSO_BY_FRAGS).
    GsoSizeByFrags {
        /// The header's `gso_type`.
        gso_type: u8,
    },
    /// `hdr_len` is beyond the frame.
    HdrLenBeyondData {
        /// The header's `hdr_len`.
        hdr_len: u16,
        /// Length of the frame.
        len: usize,
    },
    /// Non-zero `hdr_len` shorter than the Ethernet header of an Ethernet frame.
    HdrLenBelowEthernet {
        /// The header's `hdr_len`.
        hdr_len: u16,
    },
    /// The frame does not parse.
    Parse(ParseError),
    /// NEEDS_CSUM: `csum_start + max(thlen, csum_offset + 2)` (= `needed`) is beyond the
    /// data (`len` bytes).
    CsumBeyondData {
        /// The header's `csum_start`.
        csum_start: u16,
        /// The header's `csum_offset`.
        csum_offset: u16,
        /// Bytes of data the checksum needs.
        needed: usize,
        /// Bytes of data there are: the IP packet, or the whole frame for non-IP.
        len: usize,
    },
    /// NEEDS_CSUM: `csum_start` plus reserved `headroom` does not fit 16 bits.
    CsumStartOverflow {
        /// The header's `csum_start`.
        csum_start: u16,
        /// Headroom reserved in front of the frame (an Ethernet header for tun).
        headroom: usize,
    },
    /// NEEDS_CSUM: `csum_start` is below the network header + minimal IP header (`min`).
    CsumStartBelowNetworkMin {
        /// The header's `csum_start`.
        csum_start: u16,
        /// Network header offset plus the minimal IP header.
        min: usize,
    },
    /// GSO type on a frame that is not IPv4/IPv6.
    GsoNotIp {
        /// The header's `gso_type`.
        gso_type: u8,
        /// The frame's innermost EtherType.
        ethertype: u16,
    },
    /// GSO type on an IP fragment.
    GsoOnFragment {
        /// The header's `gso_type`.
        gso_type: u8,
    },
    /// GSO type does not match the packet's network/transport protocols.
    GsoProtoMismatch {
        /// The header's `gso_type`.
        gso_type: u8,
        /// The packet's network layer.
        l3: L3,
        /// The packet's transport layer (`None` for a non-first fragment).
        l4: Option<L4>,
    },
    /// GSO with NEEDS_CSUM whose `csum_start` is not the transport header.
    CsumStartNotL4 {
        /// The header's `csum_start`.
        csum_start: u16,
        /// Where the transport header really is.
        l4_offset: usize,
    },
    /// TCP GSO with NEEDS_CSUM whose `csum_offset` is not the TCP checksum field (16).
    TsoCsumOffset {
        /// The header's `csum_offset`.
        csum_offset: u16,
    },
    /// UDP_L4 GSO without NEEDS_CSUM.
    UsoWithoutCsum,
    /// UDP_L4 GSO whose `csum_offset` is not the UDP checksum field (6).
    UsoCsumOffset {
        /// The header's `csum_offset`.
        csum_offset: u16,
    },
    /// UDP_L4 GSO with more than `gso_size × max_segments` payload bytes.
    UsoTooManySegments {
        /// Bytes of UDP payload.
        payload_len: usize,
        /// The header's `gso_size`.
        gso_size: u16,
        /// [`USO_MAX_SEGMENTS`].
        max_segments: usize,
    },
}

impl fmt::Display for VnetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use VnetError::*;
        match *self {
            HeaderTruncated { needed, available } => write!(
                f,
                "virtio_net_hdr truncated: needs {needed} bytes, {available} available"
            ),
            OutputTooShort { needed, available } => write!(
                f,
                "buffer too short for virtio_net_hdr: needs {needed} bytes, {available} available"
            ),
            UnknownGsoType { gso_type } => write!(f, "unknown gso_type {gso_type:#04x}"),
            EcnWithoutTcp { gso_type } => {
                write!(f, "gso_type {gso_type:#04x}: ECN bit on a UDP GSO type")
            }
            GsoSizeZero { gso_type } => write!(f, "gso_type {gso_type:#04x} with gso_size 0"),
            GsoSizeByFrags { gso_type } => write!(
                f,
                "gso_type {gso_type:#04x} with gso_size 0xffff (GSO_BY_FRAGS)"
            ),
            HdrLenBeyondData { hdr_len, len } => {
                write!(f, "hdr_len {hdr_len} beyond the {len}-byte frame")
            }
            HdrLenBelowEthernet { hdr_len } => write!(
                f,
                "hdr_len {hdr_len} shorter than the {}-byte Ethernet header",
                ethernet::HEADER_LEN
            ),
            Parse(e) => write!(f, "frame does not parse: {e}"),
            CsumBeyondData {
                csum_start,
                csum_offset,
                needed,
                len,
            } => write!(
                f,
                "partial checksum (csum_start {csum_start}, csum_offset {csum_offset}) needs \
                 {needed} bytes of data, packet has {len}"
            ),
            CsumStartOverflow {
                csum_start,
                headroom,
            } => write!(
                f,
                "csum_start {csum_start} plus {headroom} bytes of headroom exceeds 65535"
            ),
            CsumStartBelowNetworkMin { csum_start, min } => write!(
                f,
                "csum_start {csum_start} below the minimal transport offset {min}"
            ),
            GsoNotIp {
                gso_type,
                ethertype,
            } => write!(
                f,
                "gso_type {gso_type:#04x} on a non-IP frame (ethertype {ethertype:#06x})"
            ),
            GsoOnFragment { gso_type } => {
                write!(f, "gso_type {gso_type:#04x} on an IP fragment")
            }
            GsoProtoMismatch { gso_type, l3, l4 } => write!(
                f,
                "gso_type {gso_type:#04x} does not match the packet ({l3:?}, {l4:?})"
            ),
            CsumStartNotL4 {
                csum_start,
                l4_offset,
            } => write!(
                f,
                "GSO csum_start {csum_start} is not the transport header offset {l4_offset}"
            ),
            TsoCsumOffset { csum_offset } => write!(
                f,
                "TCP GSO with csum_offset {csum_offset}, not {}",
                tcp::CHECKSUM_OFFSET
            ),
            UsoWithoutCsum => write!(f, "UDP_L4 GSO without NEEDS_CSUM"),
            UsoCsumOffset { csum_offset } => write!(
                f,
                "UDP_L4 GSO with csum_offset {csum_offset}, not {}",
                udp::CHECKSUM_OFFSET
            ),
            UsoTooManySegments {
                payload_len,
                gso_size,
                max_segments,
            } => write!(
                f,
                "UDP_L4 GSO payload {payload_len} exceeds gso_size {gso_size} x {max_segments} \
                 segments"
            ),
        }
    }
}

impl std::error::Error for VnetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            VnetError::Parse(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ParseError> for VnetError {
    fn from(e: ParseError) -> Self {
        VnetError::Parse(e)
    }
}

/// A frame whose header passed [`validate`]: its layers and the checked offload metadata.
///
/// Only the core makes one (by validating a header, or for frames it built itself by the
/// same rules, as GRO's super-frames), so holding a `Validated` proves the GSO invariants:
/// a known kind that matches the packet's protocols, a non-zero size, no IP fragment, a
/// partial checksum at the transport header. The segmenter and the transmit plan take it
/// instead of checking again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validated {
    layers: Layers,
    meta: OffloadMeta,
}

impl Validated {
    /// For frames the core built itself by the rules [`validate`] checks.
    pub(crate) const fn new_unchecked(layers: Layers, meta: OffloadMeta) -> Validated {
        Validated { layers, meta }
    }

    /// Layers and metadata taken on trust, for tests of what comes after validation
    /// (the transmit plan's tables) that describe frames by hand. Test-only API.
    #[cfg(feature = "testing")]
    pub const fn assume_valid(layers: Layers, meta: OffloadMeta) -> Validated {
        Validated { layers, meta }
    }

    /// Offsets of every layer of the frame.
    pub const fn layers(&self) -> &Layers {
        &self.layers
    }

    /// The checked offload metadata.
    pub const fn meta(&self) -> &OffloadMeta {
        &self.meta
    }
}

/// Check `hdr` against `frame` (which starts at `start`) the way the kernel checks a header
/// written to a tap/tun, and return the frame's layers with the checked metadata. See the
/// module docs for every rule. Does not allocate and never panics.
pub fn validate(hdr: &VnetHdr, frame: &[u8], start: Start) -> Result<Validated, VnetError> {
    // 1-5: the header alone, and hdr_len against the frame.
    let (kind, ecn) = check_header(hdr, frame.len(), start)?;
    // 6: everything below needs the layer offsets.
    let layers = parse(frame, start)?;
    // 7-8.
    check_frame(hdr, kind, ecn, frame.len(), start, layers)
}

/// The [`Validated`] form of a super-frame that came without a vnet header (a capture, a
/// test, a frame built here) but with GSO metadata `gso`: [`validate`] with the header a
/// Linux sender writes for such a frame (`virtio_net_hdr_from_skb` of a CHECKSUM_PARTIAL GSO
/// skb): `gso`'s type, ECN bit and size, NEEDS_CSUM with `csum_start` at the transport header
/// and `csum_offset` at the type's checksum field, `hdr_len` 0.
///
/// Every rule of [`validate`] applies, in the same order except that the frame is parsed
/// first (the header's `csum_start` is the parsed transport offset): a GSO type on a frame it
/// does not match, an IP fragment, a zero `gso_size` or too many USO segments are refused
/// with the same [`VnetError`]. As with [`validate`], a frame whose payload fits in one
/// segment comes back with `meta().gso == None` and a partial checksum. Does not allocate
/// and never panics.
pub fn validate_gso(frame: &[u8], start: Start, gso: Gso) -> Result<Validated, VnetError> {
    let layers = parse(frame, start)?;
    let hdr = VnetHdr {
        flags: flags::NEEDS_CSUM,
        gso_type: gso_code(gso.kind) | if gso.ecn { gso::ECN } else { 0 },
        hdr_len: 0,
        gso_size: gso.size,
        // An offset beyond 16 bits is refused by rule 7 (CsumBeyondData).
        csum_start: u16::try_from(layers.l4_offset).unwrap_or(u16::MAX),
        // Both offsets are below 20: they fit a u16.
        csum_offset: if gso.kind.is_tcp() {
            tcp::CHECKSUM_OFFSET as u16
        } else {
            udp::CHECKSUM_OFFSET as u16
        },
        num_buffers: 0,
    };
    let (kind, ecn) = check_header(&hdr, frame.len(), start)?;
    check_frame(&hdr, kind, ecn, frame.len(), start, layers)
}

/// Rules 1-5: the GSO type and size from the header alone, and `hdr_len` against the
/// frame's length. Returns the GSO kind (`None` for GSO_NONE) and the ECN bit.
fn check_header(
    hdr: &VnetHdr,
    frame_len: usize,
    start: Start,
) -> Result<(Option<GsoKind>, bool), VnetError> {
    let gso_type = hdr.gso_type;

    // 1-3: the GSO type and size, from the header alone.
    let kind = gso_kind(gso_type)?;
    let ecn = gso_type & gso::ECN != 0;
    if let Some(kind) = kind {
        if ecn && matches!(kind, GsoKind::Ufo | GsoKind::UdpL4) {
            return Err(VnetError::EcnWithoutTcp { gso_type });
        }
        if hdr.gso_size == 0 {
            return Err(VnetError::GsoSizeZero { gso_type });
        }
        if hdr.gso_size == GSO_BY_FRAGS {
            return Err(VnetError::GsoSizeByFrags { gso_type });
        }
    }

    // 4-5: hdr_len, a hint, but one that must stay within the frame.
    if usize::from(hdr.hdr_len) > frame_len {
        return Err(VnetError::HdrLenBeyondData {
            hdr_len: hdr.hdr_len,
            len: frame_len,
        });
    }
    if start == Start::Ethernet
        && hdr.hdr_len != 0
        && usize::from(hdr.hdr_len) < ethernet::HEADER_LEN
    {
        return Err(VnetError::HdrLenBelowEthernet {
            hdr_len: hdr.hdr_len,
        });
    }
    Ok((kind, ecn))
}

/// Rules 7-8: the partial checksum and the GSO type against the parsed frame.
fn check_frame(
    hdr: &VnetHdr,
    kind: Option<GsoKind>,
    ecn: bool,
    frame_len: usize,
    start: Start,
    layers: Layers,
) -> Result<Validated, VnetError> {
    let needs_csum = hdr.flags & flags::NEEDS_CSUM != 0;
    let data_len = if layers.l3.is_some() {
        layers.ip_end.min(frame_len)
    } else {
        frame_len
    };
    // 7: the partial checksum.
    let csum = if needs_csum {
        let csum_start = usize::from(hdr.csum_start);
        let csum_offset = usize::from(hdr.csum_offset);
        let thlen = match kind {
            Some(GsoKind::Tcpv4 | GsoKind::Tcpv6) => tcp::MIN_HEADER_LEN,
            Some(GsoKind::Ufo | GsoKind::UdpL4) => udp::HEADER_LEN,
            None => 0,
        };
        let needed = csum_start + thlen.max(csum_offset + 2);
        if needed > data_len {
            return Err(VnetError::CsumBeyondData {
                csum_start: hdr.csum_start,
                csum_offset: hdr.csum_offset,
                needed,
                len: data_len,
            });
        }
        let headroom = match start {
            Start::Ip => ethernet::HEADER_LEN,
            Start::Ethernet => 0,
        };
        if csum_start + headroom > usize::from(u16::MAX) {
            return Err(VnetError::CsumStartOverflow {
                csum_start: hdr.csum_start,
                headroom,
            });
        }
        let min = layers.l3_offset
            + match layers.l3 {
                Some(L3::Ipv6) => ipv6::HEADER_LEN,
                Some(L3::Ipv4) | None => ipv4::MIN_HEADER_LEN,
            };
        if csum_start < min {
            return Err(VnetError::CsumStartBelowNetworkMin {
                csum_start: hdr.csum_start,
                min,
            });
        }
        CsumState::Partial {
            start: hdr.csum_start,
            offset: hdr.csum_offset,
        }
    } else if hdr.flags & flags::DATA_VALID != 0 {
        CsumState::Unnecessary
    } else {
        CsumState::None
    };

    // 8: segmentation.
    let gso = match kind {
        None => None,
        Some(kind) => check_gso(hdr, kind, ecn, &layers, data_len)?,
    };

    Ok(Validated::new_unchecked(layers, OffloadMeta { csum, gso }))
}

/// Decode and [`validate`] a frame as a port hands it over: `hdr` is the raw
/// little-endian virtio_net_hdr that preceded it (0 bytes: the port carries none, and the
/// frame has no offload metadata; 10 bytes: the legacy header; otherwise the virtio 1.0
/// header, whose first 12 bytes are read: a shorter one is [`VnetError::HeaderTruncated`]).
pub fn validate_received(hdr: &[u8], frame: &[u8], start: Start) -> Result<Validated, VnetError> {
    let h = match hdr.len() {
        0 => VnetHdr::default(),
        10 => VnetHdr::decode(hdr, HdrLen::V10, Endian::Little)?,
        _ => VnetHdr::decode(hdr, HdrLen::V12, Endian::Little)?,
    };
    validate(&h, frame, start)
}

/// The GSO kind of a `gso_type` byte, `None` for GSO_NONE.
fn gso_kind(gso_type: u8) -> Result<Option<GsoKind>, VnetError> {
    if gso_type == gso::NONE {
        return Ok(None);
    }
    match gso_type & !gso::ECN {
        gso::TCPV4 => Ok(Some(GsoKind::Tcpv4)),
        gso::TCPV6 => Ok(Some(GsoKind::Tcpv6)),
        gso::UDP => Ok(Some(GsoKind::Ufo)),
        gso::UDP_L4 => Ok(Some(GsoKind::UdpL4)),
        _ => Err(VnetError::UnknownGsoType { gso_type }),
    }
}

/// Rule group 8: a GSO type against the parsed packet. Returns `None` when the packet is too
/// small to be a super-frame.
fn check_gso(
    hdr: &VnetHdr,
    kind: GsoKind,
    ecn: bool,
    layers: &Layers,
    data_len: usize,
) -> Result<Option<Gso>, VnetError> {
    let gso_type = hdr.gso_type;
    let needs_csum = hdr.flags & flags::NEEDS_CSUM != 0;
    let Some(l3) = layers.l3 else {
        return Err(VnetError::GsoNotIp {
            gso_type,
            ethertype: layers.ethertype,
        });
    };
    if layers.fragment {
        return Err(VnetError::GsoOnFragment { gso_type });
    }
    let matches = match kind {
        GsoKind::Tcpv4 => l3 == L3::Ipv4 && layers.l4 == Some(L4::Tcp),
        GsoKind::Tcpv6 => l3 == L3::Ipv6 && layers.l4 == Some(L4::Tcp),
        GsoKind::Ufo | GsoKind::UdpL4 => layers.l4 == Some(L4::Udp),
    };
    if !matches {
        return Err(VnetError::GsoProtoMismatch {
            gso_type,
            l3,
            l4: layers.l4,
        });
    }
    if needs_csum && usize::from(hdr.csum_start) != layers.l4_offset {
        return Err(VnetError::CsumStartNotL4 {
            csum_start: hdr.csum_start,
            l4_offset: layers.l4_offset,
        });
    }
    let payload_len = data_len.saturating_sub(layers.payload_offset);
    let segmentable = match kind {
        GsoKind::Tcpv4 | GsoKind::Tcpv6 => {
            if needs_csum && usize::from(hdr.csum_offset) != tcp::CHECKSUM_OFFSET {
                return Err(VnetError::TsoCsumOffset {
                    csum_offset: hdr.csum_offset,
                });
            }
            payload_len
        }
        GsoKind::UdpL4 => {
            if !needs_csum {
                return Err(VnetError::UsoWithoutCsum);
            }
            if usize::from(hdr.csum_offset) != udp::CHECKSUM_OFFSET {
                return Err(VnetError::UsoCsumOffset {
                    csum_offset: hdr.csum_offset,
                });
            }
            if payload_len > usize::from(hdr.gso_size) * USO_MAX_SEGMENTS {
                return Err(VnetError::UsoTooManySegments {
                    payload_len,
                    gso_size: hdr.gso_size,
                    max_segments: USO_MAX_SEGMENTS,
                });
            }
            payload_len
        }
        // UFO fragments the whole datagram, UDP header included.
        GsoKind::Ufo => data_len.saturating_sub(layers.l4_offset),
    };
    if segmentable <= usize::from(hdr.gso_size) {
        return Ok(None);
    }
    Ok(Some(Gso {
        kind,
        size: hdr.gso_size,
        ecn,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LE10: [u8; 10] = [0x01, 0x81, 0x36, 0x00, 0xa8, 0x05, 0x22, 0x00, 0x10, 0x00];
    const BE12: [u8; 12] = [
        0x01, 0x81, 0x00, 0x36, 0x05, 0xa8, 0x00, 0x22, 0x00, 0x10, 0x00, 0x03,
    ];

    fn sample(num_buffers: u16) -> VnetHdr {
        VnetHdr {
            flags: flags::NEEDS_CSUM,
            gso_type: gso::TCPV4 | gso::ECN,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            num_buffers,
        }
    }

    #[test]
    fn vnet_decode_le_10() {
        let h = VnetHdr::decode(&LE10, HdrLen::V10, Endian::Little).unwrap();
        assert_eq!(h, sample(0));
    }

    #[test]
    fn vnet_decode_be_12() {
        let h = VnetHdr::decode(&BE12, HdrLen::V12, Endian::Big).unwrap();
        assert_eq!(h, sample(3));
    }

    #[test]
    fn vnet_decode_le_12_and_be_10() {
        let le12 = [1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 0x34, 0x12, 0xff];
        let h = VnetHdr::decode(&le12, HdrLen::V12, Endian::Little).unwrap();
        assert_eq!(
            (h.flags, h.gso_type, h.hdr_len, h.gso_size, h.csum_start),
            (1, 0, 2, 3, 4)
        );
        assert_eq!((h.csum_offset, h.num_buffers), (5, 0x1234));
        let be10 = [0, 0, 0, 2, 0, 3, 0, 4, 0x01, 0x02];
        let h = VnetHdr::decode(&be10, HdrLen::V10, Endian::Big).unwrap();
        assert_eq!((h.hdr_len, h.csum_offset, h.num_buffers), (2, 0x0102, 0));
    }

    #[test]
    fn vnet_decode_extra_bytes_ignored() {
        let mut buf = [0xee; 20];
        buf[..10].copy_from_slice(&LE10);
        assert_eq!(
            VnetHdr::decode(&buf, HdrLen::V10, Endian::Little),
            Ok(sample(0))
        );
    }

    #[test]
    fn vnet_decode_short_buffer() {
        assert_eq!(
            VnetHdr::decode(&BE12[..11], HdrLen::V12, Endian::Big),
            Err(VnetError::HeaderTruncated {
                needed: 12,
                available: 11
            })
        );
        assert_eq!(
            VnetHdr::decode(&[], HdrLen::V10, Endian::Little),
            Err(VnetError::HeaderTruncated {
                needed: 10,
                available: 0
            })
        );
    }

    #[test]
    fn vnet_encode_matches_hand_bytes() {
        let mut out = [0u8; 12];
        assert_eq!(sample(3).encode(&mut out, HdrLen::V12, Endian::Big), Ok(12));
        assert_eq!(out, BE12);
        let mut out = [0xaa_u8; 12];
        assert_eq!(
            sample(3).encode(&mut out, HdrLen::V10, Endian::Little),
            Ok(10)
        );
        assert_eq!(out[..10], LE10);
        assert_eq!(out[10..], [0xaa, 0xaa], "bytes past the header untouched");
    }

    #[test]
    fn vnet_encode_short_buffer() {
        let mut out = [0u8; 9];
        assert_eq!(
            sample(0).encode(&mut out, HdrLen::V10, Endian::Little),
            Err(VnetError::OutputTooShort {
                needed: 10,
                available: 9
            })
        );
    }

    #[test]
    fn vnet_codec_round_trip_all_forms() {
        for len in [HdrLen::V10, HdrLen::V12] {
            for endian in [Endian::Little, Endian::Big] {
                let h = sample(7);
                let mut out = [0u8; 12];
                let n = h.encode(&mut out, len, endian).unwrap();
                assert_eq!(n, len.size());
                let back = VnetHdr::decode(&out[..n], len, endian).unwrap();
                let want = if len == HdrLen::V12 { h } else { sample(0) };
                assert_eq!(back, want);
            }
        }
    }

    #[test]
    fn vnet_gso_kind_table() {
        assert_eq!(gso_kind(0), Ok(None));
        assert_eq!(gso_kind(1), Ok(Some(GsoKind::Tcpv4)));
        assert_eq!(gso_kind(0x84), Ok(Some(GsoKind::Tcpv6)));
        assert_eq!(gso_kind(3), Ok(Some(GsoKind::Ufo)));
        assert_eq!(gso_kind(5), Ok(Some(GsoKind::UdpL4)));
        for bad in [0x80, 2, 6, 0x11, 0x21, 0x41, 0xff] {
            assert_eq!(
                gso_kind(bad),
                Err(VnetError::UnknownGsoType { gso_type: bad })
            );
        }
    }

    #[test]
    fn vnet_error_display_names_values() {
        let e = VnetError::CsumBeyondData {
            csum_start: 34,
            csum_offset: 16,
            needed: 54,
            len: 40,
        };
        let s = e.to_string();
        assert!(s.contains("34") && s.contains("16") && s.contains("54") && s.contains("40"));
    }
}
