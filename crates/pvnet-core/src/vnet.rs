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
//! | 12..16| `hash_value` (24-byte header only, [`HashTunnel`])    |
//! | 16..18| `hash_report`                                          |
//! | 18..20| padding                                                |
//! | 20..22| `outer_th_offset`: the outer UDP header of a tunnel super-frame |
//! | 22..24| `inner_nh_offset`: the inner IP header                 |
//!
//! The 16-bit fields are little-endian for virtio 1.0 and for tap with `TUNSETVNETLE`;
//! legacy headers are guest-native, hence [`Endian`]. The 24-byte form
//! (`virtio_net_hdr_v1_hash_tunnel`, Linux 6.17+) is a virtio 1.0 header and always
//! little-endian: [`Endian`] does not apply to it.
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
//!    alone, 0x80) are rejected. The UDP tunnel bits (0x20, 0x40) are the exception: their
//!    rules come first (see "UDP tunnel super-frames" below), and the type they are OR-ed
//!    with is then checked here.
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
//! # UDP tunnel super-frames (24-byte header only)
//!
//! A `gso_type` with `UDP_TUNNEL_IPV4` or `UDP_TUNNEL_IPV6` describes a super-frame
//! encapsulated in a UDP tunnel (VXLAN, GENEVE): the outer IP/UDP headers at the frame's
//! transport offset `outer_th_offset`, the packet inside from `inner_nh_offset`, and the
//! inner GSO type in the low bits. The reference is `virtio_net_hdr_tnl_to_skb()`
//! (include/linux/virtio_net.h), which tun calls for every write when its header is 24
//! bytes. Its rules come first, in its order, then the rules above apply to the inner
//! packet:
//!
//! - [`VnetError::TunnelNotNegotiated`]: tunnel bits in a 10- or 12-byte header, which has
//!   no room for the offsets (tun: `tnl_hdr_negotiated` is false below 24 bytes).
//! - [`VnetError::TunnelBothFamilies`]: both UDP_TUNNEL_IPV4 and UDP_TUNNEL_IPV6.
//! - [`VnetError::TunnelInnerType`]: no inner GSO type, or UFO inside the tunnel; an
//!   inner type that is not TCPV4, TCPV6 or UDP_L4 is [`VnetError::UnknownGsoType`].
//! - [`VnetError::TunnelWithoutCsum`]: no NEEDS_CSUM (`csum_start` is how the kernel finds
//!   the inner transport header). [`VnetError::TunnelDataValid`]: DATA_VALID with a tunnel
//!   type (`virtio_net_handle_csum_offload`: the two are mutually exclusive).
//! - [`VnetError::TunnelOffsets`]: the offsets out of order: `outer_th_offset` below the
//!   outer network header plus the minimal IP header of the tunnel's family,
//!   `inner_nh_offset` less than 8 bytes (a UDP header) after it, `csum_start` less than
//!   the minimal inner IP header (40 bytes for TCPV6, else 20) after `inner_nh_offset`.
//!   The kernel measures the outer bound from the frame start plus 14 bytes because it has
//!   not parsed the frame; pvnet measures from the parsed network header.
//!
//! Then, with the frame parsed, pvnet checks what the kernel trusts (it segments whatever
//! the offsets point at):
//!
//! - [`VnetError::TunnelOuterMismatch`]: the outer packet is not UDP over the tunnel's IP
//!   family, or `outer_th_offset` is not its UDP header.
//! - [`VnetError::TunnelInner`]: the inner IP packet does not parse.
//!   [`VnetError::TunnelInnerLength`]: it does not end exactly where the outer one does
//!   (segmentation rewrites its length from the outer packet's).
//! - The rules of group 8 on the inner packet: its protocols against the inner GSO type,
//!   no inner fragment, `csum_start` at the inner transport header, the TCP/UDP checksum
//!   offsets, the USO segment limit, and the "too small" rule on the inner payload.
//!
//! The bytes between the outer UDP header and the inner IP header (the tunnel header and
//! the inner Ethernet header) are not interpreted. The flag `UDP_TUNNEL_CSUM` asks for the
//! outer UDP checksum of every segment ([`UdpTunnel::csum`]). A tunnel super-frame too small
//! to be one becomes a plain packet with a partial inner checksum, as in the kernel (which
//! then leaves the outer UDP checksum as it is).
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

use crate::frame::{CsumState, Gso, GsoKind, OffloadMeta, UdpTunnel};
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
    /// With a UDP tunnel `gso_type`: the outer UDP checksum of every segment is wanted.
    pub const UDP_TUNNEL_CSUM: u8 = 8;
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
    /// Flag bit: the super-frame is in a UDP tunnel over IPv4 (24-byte header only).
    pub const UDP_TUNNEL_IPV4: u8 = 0x20;
    /// Flag bit: the super-frame is in a UDP tunnel over IPv6 (24-byte header only).
    pub const UDP_TUNNEL_IPV6: u8 = 0x40;
    /// Both tunnel bits.
    pub const UDP_TUNNEL: u8 = UDP_TUNNEL_IPV4 | UDP_TUNNEL_IPV6;
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
    /// 24 bytes: `virtio_net_hdr_v1_hash_tunnel` (virtio 1.0, little-endian), the 12-byte
    /// header then the hash report and the UDP tunnel offsets ([`HashTunnel`]).
    V24,
}

impl HdrLen {
    /// The form of a header of `size` bytes, `None` for a size that is neither.
    pub const fn from_size(size: usize) -> Option<HdrLen> {
        match size {
            10 => Some(HdrLen::V10),
            12 => Some(HdrLen::V12),
            24 => Some(HdrLen::V24),
            _ => None,
        }
    }

    /// Number of bytes.
    pub const fn size(self) -> usize {
        match self {
            HdrLen::V10 => 10,
            HdrLen::V12 => 12,
            HdrLen::V24 => 24,
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
    /// Only carried by the 12- and 24-byte headers; 0 when decoded from 10 bytes.
    pub num_buffers: u16,
    /// The fields of the 24-byte header after the first 12; `None` when decoded from a
    /// shorter one, which cannot describe a UDP tunnel super-frame.
    pub tunnel: Option<HashTunnel>,
}

/// Bytes 12..24 of the 24-byte `virtio_net_hdr_v1_hash_tunnel`, little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HashTunnel {
    /// RSS hash of the packet (receive direction, VIRTIO_NET_F_HASH_REPORT); not used.
    pub hash_value: u32,
    /// Kind of that hash; not used.
    pub hash_report: u16,
    /// Offset of the outer UDP header of a tunnel super-frame (its transport header).
    pub outer_th_offset: u16,
    /// Offset of the inner IP header of a tunnel super-frame.
    pub inner_nh_offset: u16,
}

/// Byte offsets of the 24-byte header's fields.
mod field24 {
    use core::ops::Range;
    pub const HASH_VALUE: Range<usize> = 12..16;
    pub const HASH_REPORT: Range<usize> = 16..18;
    pub const OUTER_TH: Range<usize> = 20..22;
    pub const INNER_NH: Range<usize> = 22..24;
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
        // The 24-byte form is virtio 1.0: little-endian whatever the caller says.
        let endian = if len == HdrLen::V24 {
            Endian::Little
        } else {
            endian
        };
        let word = |i: usize| endian.read([b[i], b[i + 1]]);
        let le16 = |r: core::ops::Range<usize>| u16::from_le_bytes([b[r.start], b[r.start + 1]]);
        let tunnel = (len == HdrLen::V24).then(|| HashTunnel {
            hash_value: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
            hash_report: le16(field24::HASH_REPORT),
            outer_th_offset: le16(field24::OUTER_TH),
            inner_nh_offset: le16(field24::INNER_NH),
        });
        Ok(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: word(2),
            gso_size: word(4),
            csum_start: word(6),
            csum_offset: word(8),
            num_buffers: if n >= 12 { word(10) } else { 0 },
            tunnel,
        })
    }

    /// Encode the header into the start of `out`, returning the number of bytes written.
    /// `num_buffers` is dropped by the 10-byte form, [`VnetHdr::tunnel`] by the 10- and
    /// 12-byte forms (and written as zeros by the 24-byte form when `None`).
    pub fn encode(&self, out: &mut [u8], len: HdrLen, endian: Endian) -> Result<usize, VnetError> {
        let n = len.size();
        let available = out.len();
        let Some(b) = out.get_mut(..n) else {
            return Err(VnetError::OutputTooShort {
                needed: n,
                available,
            });
        };
        let endian = if len == HdrLen::V24 {
            Endian::Little
        } else {
            endian
        };
        b.copy_from_slice(&self.to_array(endian)[..n]);
        Ok(n)
    }

    /// The header as the 24 bytes of its longest form: its first `len.size()` bytes are
    /// the header of size `len` (the 10-byte form drops `num_buffers`, the 10- and 12-byte
    /// forms [`VnetHdr::tunnel`]). Cannot fail, for a writer that keeps its header on the
    /// stack. The tunnel fields are always little-endian; for a 24-byte header, pass
    /// [`Endian::Little`].
    #[inline]
    pub fn to_array(&self, endian: Endian) -> [u8; 24] {
        // Put together in registers and stored as whole words, never field by field: the
        // reader (a port copying the header on) loads it in words, and a load that spans
        // several smaller stores waits until they, and every store before them, are
        // written to the cache, which behind a batch's stores into guest memory is long.
        let w = |v: u16| u16::from_le_bytes(endian.write(v));
        let lo = u64::from(self.flags)
            | u64::from(self.gso_type) << 8
            | u64::from(w(self.hdr_len)) << 16
            | u64::from(w(self.gso_size)) << 32
            | u64::from(w(self.csum_start)) << 48;
        let mid = u32::from(w(self.csum_offset)) | u32::from(w(self.num_buffers)) << 16;
        let (hash, rest) = match self.tunnel {
            Some(t) => (
                t.hash_value,
                u64::from(t.hash_report)
                    | u64::from(t.outer_th_offset) << 32
                    | u64::from(t.inner_nh_offset) << 48,
            ),
            None => (0, 0),
        };
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&lo.to_le_bytes());
        b[8..12].copy_from_slice(&mid.to_le_bytes());
        b[field24::HASH_VALUE].copy_from_slice(&hash.to_le_bytes());
        b[field24::HASH_REPORT.start..].copy_from_slice(&rest.to_le_bytes());
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
    ///
    /// A UDP tunnel super-frame also gets the tunnel bit of its outer family (from `layers`,
    /// the outer packet's), UDP_TUNNEL_CSUM when its outer checksum is wanted, and
    /// [`VnetHdr::tunnel`] with the outer UDP and inner IP offsets: only the 24-byte form
    /// carries it, so such a header must be written as [`HdrLen::V24`]. Its `hdr_len` is
    /// where the inner checksum field ends (`csum_start + csum_offset + 2`, what tun
    /// computes anyway), since the inner transport header's length is not in `layers`.
    #[inline]
    pub fn from_meta(meta: &OffloadMeta, layers: &Layers) -> VnetHdr {
        Self::from_meta_inner(meta, layers, false)
    }

    /// As [`VnetHdr::from_meta`] for the receive direction (device → driver, or what tun and
    /// AF_PACKET hand to userspace, both of which pass `has_data_valid = true` in the kernel):
    /// `CsumState::Unnecessary` becomes DATA_VALID.
    pub fn from_meta_rx(meta: &OffloadMeta, layers: &Layers) -> VnetHdr {
        Self::from_meta_inner(meta, layers, true)
    }

    #[inline]
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
            if let Some(t) = g.tunnel {
                h.gso_type |= match layers.l3 {
                    Some(L3::Ipv6) => gso::UDP_TUNNEL_IPV6,
                    _ => gso::UDP_TUNNEL_IPV4,
                };
                if t.csum {
                    h.flags |= flags::UDP_TUNNEL_CSUM;
                }
                h.hdr_len = h.csum_start.saturating_add(h.csum_offset).saturating_add(2);
                h.tunnel = Some(HashTunnel {
                    outer_th_offset: u16::try_from(layers.l4_offset).unwrap_or(u16::MAX),
                    inner_nh_offset: t.inner_nh,
                    ..HashTunnel::default()
                });
            }
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
    /// UDP tunnel bits in a header without the tunnel offsets (10 or 12 bytes).
    TunnelNotNegotiated {
        /// The header's `gso_type`.
        gso_type: u8,
    },
    /// Both UDP_TUNNEL_IPV4 and UDP_TUNNEL_IPV6.
    TunnelBothFamilies {
        /// The header's `gso_type`.
        gso_type: u8,
    },
    /// A UDP tunnel type without an inner GSO type, or with UFO inside.
    TunnelInnerType {
        /// The header's `gso_type`.
        gso_type: u8,
    },
    /// A UDP tunnel type without NEEDS_CSUM.
    TunnelWithoutCsum {
        /// The header's `gso_type`.
        gso_type: u8,
    },
    /// A UDP tunnel type with DATA_VALID.
    TunnelDataValid {
        /// The header's `gso_type`.
        gso_type: u8,
    },
    /// The tunnel offsets are out of order: the outer UDP header inside the outer IP
    /// header, less than a UDP header between it and the inner IP header, or less than a
    /// minimal inner IP header between that and `csum_start`.
    TunnelOffsets {
        /// The header's `outer_th_offset`.
        outer_th: u16,
        /// The header's `inner_nh_offset`.
        inner_nh: u16,
        /// The header's `csum_start` (the inner transport header).
        csum_start: u16,
    },
    /// The outer packet is not UDP over the IP family the tunnel bit names.
    TunnelOuterMismatch {
        /// The header's `gso_type`.
        gso_type: u8,
        /// The outer network layer.
        l3: L3,
        /// The outer transport layer.
        l4: Option<L4>,
    },
    /// `outer_th_offset` is not the outer UDP header.
    TunnelOuterThOffset {
        /// The header's `outer_th_offset`.
        outer_th: usize,
        /// Where the outer UDP header really is.
        l4_offset: usize,
    },
    /// The packet inside the tunnel does not parse (offsets from the frame start).
    TunnelInner(ParseError),
    /// The packet inside the tunnel does not end where the outer packet does.
    TunnelInnerLength {
        /// Where the inner IP packet ends by its own length field.
        inner_end: usize,
        /// Where the outer IP packet ends.
        outer_end: usize,
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
            TunnelNotNegotiated { gso_type } => write!(
                f,
                "gso_type {gso_type:#04x}: UDP tunnel GSO needs the 24-byte virtio_net_hdr"
            ),
            TunnelBothFamilies { gso_type } => write!(
                f,
                "gso_type {gso_type:#04x}: both UDP_TUNNEL_IPV4 and UDP_TUNNEL_IPV6"
            ),
            TunnelInnerType { gso_type } => write!(
                f,
                "gso_type {gso_type:#04x}: UDP tunnel GSO needs an inner TCPV4, TCPV6 or \
                 UDP_L4 type"
            ),
            TunnelWithoutCsum { gso_type } => {
                write!(
                    f,
                    "gso_type {gso_type:#04x}: UDP tunnel GSO without NEEDS_CSUM"
                )
            }
            TunnelDataValid { gso_type } => {
                write!(
                    f,
                    "gso_type {gso_type:#04x}: UDP tunnel GSO with DATA_VALID"
                )
            }
            TunnelOffsets {
                outer_th,
                inner_nh,
                csum_start,
            } => write!(
                f,
                "UDP tunnel offsets out of order: outer_th_offset {outer_th}, inner_nh_offset \
                 {inner_nh}, csum_start {csum_start}"
            ),
            TunnelOuterMismatch { gso_type, l3, l4 } => write!(
                f,
                "gso_type {gso_type:#04x}: the outer packet ({l3:?}, {l4:?}) is not UDP over \
                 the tunnel's IP family"
            ),
            TunnelOuterThOffset {
                outer_th,
                l4_offset,
            } => write!(
                f,
                "outer_th_offset {outer_th} is not the outer UDP header offset {l4_offset}"
            ),
            TunnelInner(e) => write!(f, "packet inside the UDP tunnel does not parse: {e}"),
            TunnelInnerLength {
                inner_end,
                outer_end,
            } => write!(
                f,
                "packet inside the UDP tunnel ends at {inner_end}, the outer packet at \
                 {outer_end}"
            ),
        }
    }
}

impl std::error::Error for VnetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            VnetError::Parse(e) | VnetError::TunnelInner(e) => Some(e),
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
///
/// A UDP tunnel super-frame (`meta().gso` with a tunnel) also carries the layers of the
/// packet inside the tunnel ([`Validated::inner_layers`]), found when the whole frame was
/// at hand: the segmenter, which may only have the frame's headers in one piece, needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validated {
    layers: Layers,
    meta: OffloadMeta,
    /// The inner packet's layers (offsets from the frame start), exactly when
    /// `meta.gso` has a tunnel.
    inner: Option<Layers>,
}

impl Validated {
    /// For frames the core built itself by the rules [`validate`] checks.
    pub(crate) const fn new_unchecked(layers: Layers, meta: OffloadMeta) -> Validated {
        Validated {
            layers,
            meta,
            inner: None,
        }
    }

    /// The same with the inner packet's layers of a tunnel super-frame.
    pub(crate) const fn with_inner(self, inner: Option<Layers>) -> Validated {
        Validated { inner, ..self }
    }

    /// Layers and metadata taken on trust, for tests of what comes after validation
    /// (the transmit plan's tables) that describe frames by hand. Test-only API.
    #[cfg(feature = "testing")]
    pub const fn assume_valid(layers: Layers, meta: OffloadMeta) -> Validated {
        Validated::new_unchecked(layers, meta)
    }

    /// Offsets of every layer of the frame.
    pub const fn layers(&self) -> &Layers {
        &self.layers
    }

    /// The checked offload metadata.
    pub const fn meta(&self) -> &OffloadMeta {
        &self.meta
    }

    /// The layers of the packet inside the UDP tunnel of a tunnel super-frame, with
    /// offsets from the start of the frame (its `l2_len` and `l3_offset` are the inner IP
    /// header's offset); `None` for any other frame.
    pub const fn inner_layers(&self) -> Option<&Layers> {
        self.inner.as_ref()
    }

    /// The same TCP super-frame cut into segments of `size` payload bytes instead of its
    /// own gso_size, for a path whose MTU is smaller than the sender assumed (an overlay
    /// port's underlay). `None` unless it is a TCP super-frame and `0 < size <= gso_size`:
    /// a USO segment is a datagram of the sender's choosing and cannot be cut smaller.
    /// Every invariant of a validated super-frame holds for a smaller size.
    pub fn with_tcp_gso_size(&self, size: u16) -> Option<Validated> {
        let gso = self.meta.gso?;
        if !gso.kind.is_tcp() || size == 0 || size > gso.size {
            return None;
        }
        let mut v = *self;
        v.meta.gso = Some(Gso { size, ..gso });
        Some(v)
    }
}

/// Check `hdr` against `frame` (which starts at `start`) the way the kernel checks a header
/// written to a tap/tun, and return the frame's layers with the checked metadata. See the
/// module docs for every rule. Does not allocate and never panics.
pub fn validate(hdr: &VnetHdr, frame: &[u8], start: Start) -> Result<Validated, VnetError> {
    // 1-5: the header alone, and hdr_len against the frame.
    let ty = check_header(hdr, frame.len(), start)?;
    // 6: everything below needs the layer offsets. Borrowed where `parse` left them and
    // copied once, into the result: each move of a struct that was written field by
    // field reloads it in words no single store wrote, and waits for them all.
    let parsed = parse(frame, start);
    let layers = match &parsed {
        Ok(l) => l,
        Err(e) => return Err(VnetError::Parse(*e)),
    };
    // 7-8.
    check_frame(hdr, ty, frame, start, layers)
}

/// The [`Validated`] form of a super-frame that came without a vnet header (a capture, a
/// test, a frame built here) but with GSO metadata `gso`: [`validate`] with the header a
/// Linux sender writes for such a frame (`virtio_net_hdr_from_skb` of a CHECKSUM_PARTIAL GSO
/// skb): `gso`'s type, ECN bit and size, NEEDS_CSUM with `csum_start` at the transport header
/// and `csum_offset` at the type's checksum field, `hdr_len` 0. For a super-frame in a UDP
/// tunnel (`gso.tunnel`), the 24-byte header `virtio_net_hdr_tnl_from_skb` writes: the
/// tunnel bit of the outer family, UDP_TUNNEL_CSUM when asked for, the outer UDP header as
/// `outer_th_offset` and `csum_start` at the inner transport header.
///
/// Every rule of [`validate`] applies, in the same order except that the frame is parsed
/// first (the header's `csum_start` is the parsed transport offset): a GSO type on a frame it
/// does not match, an IP fragment, a zero `gso_size` or too many USO segments are refused
/// with the same [`VnetError`]. As with [`validate`], a frame whose payload fits in one
/// segment comes back with `meta().gso == None` and a partial checksum. Does not allocate
/// and never panics.
pub fn validate_gso(frame: &[u8], start: Start, gso: Gso) -> Result<Validated, VnetError> {
    let layers = parse(frame, start)?;
    let mut gso_type = gso_code(gso.kind) | if gso.ecn { gso::ECN } else { 0 };
    let mut flags = flags::NEEDS_CSUM;
    let mut tunnel = None;
    // The transport header the partial checksum starts at: the inner one in a tunnel.
    let mut l4_offset = layers.l4_offset;
    if let Some(t) = gso.tunnel {
        gso_type |= match layers.l3 {
            Some(L3::Ipv6) => gso::UDP_TUNNEL_IPV6,
            _ => gso::UDP_TUNNEL_IPV4,
        };
        if t.csum {
            flags |= flags::UDP_TUNNEL_CSUM;
        }
        tunnel = Some(HashTunnel {
            outer_th_offset: u16::try_from(layers.l4_offset).unwrap_or(u16::MAX),
            inner_nh_offset: t.inner_nh,
            ..HashTunnel::default()
        });
        l4_offset = inner_layers(frame, usize::from(t.inner_nh), layers.ip_end)?.l4_offset;
    }
    let hdr = VnetHdr {
        flags,
        gso_type,
        hdr_len: 0,
        gso_size: gso.size,
        // An offset beyond 16 bits is refused by rule 7 (CsumBeyondData).
        csum_start: u16::try_from(l4_offset).unwrap_or(u16::MAX),
        // Both offsets are below 20: they fit a u16.
        csum_offset: if gso.kind.is_tcp() {
            tcp::CHECKSUM_OFFSET as u16
        } else {
            udp::CHECKSUM_OFFSET as u16
        },
        num_buffers: 0,
        tunnel,
    };
    let ty = check_header(&hdr, frame.len(), start)?;
    check_frame(&hdr, ty, frame, start, &layers)
}

/// What the header alone says about the frame: rules 1-5 passed.
#[derive(Debug, Clone, Copy)]
struct HdrType {
    /// The GSO kind (of the inner packet in a tunnel), `None` for GSO_NONE.
    kind: Option<GsoKind>,
    ecn: bool,
    /// A UDP tunnel super-frame: the outer family, and the offsets in order.
    tunnel: Option<TunnelHdr>,
}

#[derive(Debug, Clone, Copy)]
struct TunnelHdr {
    outer: L3,
    outer_th: usize,
    inner_nh: usize,
    csum: bool,
}

/// Rules 1-5: the GSO type and size from the header alone, and `hdr_len` against the
/// frame's length; first the tunnel rules when the type has a tunnel bit.
fn check_header(hdr: &VnetHdr, frame_len: usize, start: Start) -> Result<HdrType, VnetError> {
    let gso_type = hdr.gso_type;

    // 1-3: the GSO type and size, from the header alone.
    let tunnel = check_tunnel_header(hdr)?;
    let kind = gso_kind(gso_type & !gso::UDP_TUNNEL)
        .map_err(|_| VnetError::UnknownGsoType { gso_type })?;
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
    Ok(HdrType { kind, ecn, tunnel })
}

/// The tunnel rules of `virtio_net_hdr_tnl_to_skb` that need no parsing, in its order
/// (the outer offset bound waits for the parsed network header). `None` without a tunnel
/// bit.
fn check_tunnel_header(hdr: &VnetHdr) -> Result<Option<TunnelHdr>, VnetError> {
    let gso_type = hdr.gso_type;
    let bits = gso_type & gso::UDP_TUNNEL;
    if bits == 0 {
        return Ok(None);
    }
    let Some(t) = hdr.tunnel else {
        return Err(VnetError::TunnelNotNegotiated { gso_type });
    };
    if bits == gso::UDP_TUNNEL {
        return Err(VnetError::TunnelBothFamilies { gso_type });
    }
    let inner = gso_type & !(gso::ECN | gso::UDP_TUNNEL);
    if inner == gso::NONE || inner == gso::UDP {
        return Err(VnetError::TunnelInnerType { gso_type });
    }
    if hdr.flags & flags::NEEDS_CSUM == 0 {
        return Err(VnetError::TunnelWithoutCsum { gso_type });
    }
    if hdr.flags & flags::DATA_VALID != 0 {
        return Err(VnetError::TunnelDataValid { gso_type });
    }
    let (outer_th, inner_nh) = (
        usize::from(t.outer_th_offset),
        usize::from(t.inner_nh_offset),
    );
    let inner_min = if inner == gso::TCPV6 {
        ipv6::HEADER_LEN
    } else {
        ipv4::MIN_HEADER_LEN
    };
    if inner_nh < outer_th + udp::HEADER_LEN || usize::from(hdr.csum_start) < inner_nh + inner_min {
        return Err(VnetError::TunnelOffsets {
            outer_th: t.outer_th_offset,
            inner_nh: t.inner_nh_offset,
            csum_start: hdr.csum_start,
        });
    }
    Ok(Some(TunnelHdr {
        outer: if bits == gso::UDP_TUNNEL_IPV6 {
            L3::Ipv6
        } else {
            L3::Ipv4
        },
        outer_th,
        inner_nh,
        csum: hdr.flags & flags::UDP_TUNNEL_CSUM != 0,
    }))
}

/// Rules 7-8: the partial checksum and the GSO type against the parsed frame.
fn check_frame(
    hdr: &VnetHdr,
    ty: HdrType,
    frame: &[u8],
    start: Start,
    layers: &Layers,
) -> Result<Validated, VnetError> {
    let frame_len = frame.len();
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
        let thlen = match ty.kind {
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
    let (gso, inner) = match (ty.kind, ty.tunnel) {
        (None, _) => (None, None),
        (Some(kind), None) => (check_gso(hdr, kind, ty.ecn, layers, data_len)?, None),
        (Some(kind), Some(t)) => match check_tunnel_gso(hdr, kind, ty.ecn, t, frame, layers)? {
            Some((gso, inner)) => (Some(gso), Some(inner)),
            None => (None, None),
        },
    };

    Ok(Validated {
        layers: *layers,
        meta: OffloadMeta { csum, gso },
        inner,
    })
}

/// Decode and [`validate`] a frame as a port hands it over: `hdr` is the raw
/// little-endian virtio_net_hdr that preceded it (0 bytes: the port carries none, and the
/// frame has no offload metadata; 10 bytes: the legacy header; 24 bytes or more: the
/// virtio 1.0 header with the UDP tunnel fields, whose first 24 bytes are read; otherwise
/// the virtio 1.0 header, whose first 12 bytes are read: a shorter one is
/// [`VnetError::HeaderTruncated`]).
pub fn validate_received(hdr: &[u8], frame: &[u8], start: Start) -> Result<Validated, VnetError> {
    let h = match hdr.len() {
        0 => VnetHdr::default(),
        10 => VnetHdr::decode(hdr, HdrLen::V10, Endian::Little)?,
        n if n >= HdrLen::V24.size() => VnetHdr::decode(hdr, HdrLen::V24, Endian::Little)?,
        _ => VnetHdr::decode(hdr, HdrLen::V12, Endian::Little)?,
    };
    validate(&h, frame, start)
}

/// The GSO kind of a `gso_type` byte without tunnel bits, `None` for GSO_NONE.
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
    let Some(l3) = layers.l3 else {
        return Err(VnetError::GsoNotIp {
            gso_type,
            ethertype: layers.ethertype,
        });
    };
    if layers.fragment {
        return Err(VnetError::GsoOnFragment { gso_type });
    }
    check_l4_gso(hdr, kind, ecn, l3, layers, data_len)
}

/// Rule group 8 from the protocol match on, for a packet of network layer `l3` with
/// `layers` (the inner ones, for a tunnel super-frame) that is not a fragment.
fn check_l4_gso(
    hdr: &VnetHdr,
    kind: GsoKind,
    ecn: bool,
    l3: L3,
    layers: &Layers,
    data_len: usize,
) -> Result<Option<Gso>, VnetError> {
    let gso_type = hdr.gso_type;
    let needs_csum = hdr.flags & flags::NEEDS_CSUM != 0;
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
        tunnel: None,
    }))
}

/// Rule group 8 for a UDP tunnel super-frame: the outer packet against the tunnel bits and
/// `outer_th_offset`, then the inner packet, parsed from `inner_nh_offset`, against the
/// inner GSO type. Returns the GSO metadata and the inner layers, `None` when the inner
/// packet is too small to be a super-frame.
fn check_tunnel_gso(
    hdr: &VnetHdr,
    kind: GsoKind,
    ecn: bool,
    t: TunnelHdr,
    frame: &[u8],
    layers: &Layers,
) -> Result<Option<(Gso, Layers)>, VnetError> {
    let gso_type = hdr.gso_type;
    let Some(l3) = layers.l3 else {
        return Err(VnetError::GsoNotIp {
            gso_type,
            ethertype: layers.ethertype,
        });
    };
    if layers.fragment {
        return Err(VnetError::GsoOnFragment { gso_type });
    }
    if l3 != t.outer || layers.l4 != Some(L4::Udp) {
        return Err(VnetError::TunnelOuterMismatch {
            gso_type,
            l3,
            l4: layers.l4,
        });
    }
    let outer_min = layers.l3_offset
        + match t.outer {
            L3::Ipv4 => ipv4::MIN_HEADER_LEN,
            L3::Ipv6 => ipv6::HEADER_LEN,
        };
    if t.outer_th < outer_min {
        return Err(VnetError::TunnelOffsets {
            outer_th: hdr.tunnel.map_or(0, |h| h.outer_th_offset),
            inner_nh: hdr.tunnel.map_or(0, |h| h.inner_nh_offset),
            csum_start: hdr.csum_start,
        });
    }
    if t.outer_th != layers.l4_offset {
        return Err(VnetError::TunnelOuterThOffset {
            outer_th: t.outer_th,
            l4_offset: layers.l4_offset,
        });
    }
    let inner = inner_layers(frame, t.inner_nh, layers.ip_end)?;
    let Some(inner_l3) = inner.l3 else {
        // A packet that parses from an IP start is IP; keep the error total anyway.
        return Err(VnetError::GsoNotIp {
            gso_type,
            ethertype: inner.ethertype,
        });
    };
    if inner.fragment {
        return Err(VnetError::GsoOnFragment { gso_type });
    }
    let Some(mut gso) = check_l4_gso(hdr, kind, ecn, inner_l3, &inner, layers.ip_end)? else {
        return Ok(None);
    };
    gso.tunnel = Some(UdpTunnel {
        // `inner_nh` came from a u16 field.
        inner_nh: t.inner_nh as u16,
        csum: t.csum,
    });
    Ok(Some((gso, inner)))
}

/// The layers of the IP packet inside a tunnel super-frame, which starts at `inner_nh`
/// and must end exactly at `outer_end` (the end of the outer IP packet), with offsets
/// counted from the start of the frame.
pub(crate) fn inner_layers(
    frame: &[u8],
    inner_nh: usize,
    outer_end: usize,
) -> Result<Layers, VnetError> {
    let bytes = frame.get(inner_nh..outer_end).unwrap_or_default();
    let mut l = parse(bytes, Start::Ip).map_err(|e| {
        VnetError::TunnelInner(ParseError {
            offset: e.offset + inner_nh,
            ..e
        })
    })?;
    if l.ip_end != bytes.len() {
        return Err(VnetError::TunnelInnerLength {
            inner_end: inner_nh + l.ip_end,
            outer_end,
        });
    }
    for o in [
        &mut l.l3_offset,
        &mut l.ip_end,
        &mut l.pseudo_dst_offset,
        &mut l.l4_offset,
        &mut l.payload_offset,
    ] {
        *o += inner_nh;
    }
    // The bytes before the inner IP header (outer headers, tunnel header, inner
    // Ethernet) count as its link layer.
    l.l2_len = inner_nh;
    Ok(l)
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
            tunnel: None,
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

    /// A 24-byte header: NEEDS_CSUM | UDP_TUNNEL_CSUM, TCPV4 in a UDP tunnel over IPv6,
    /// hdr_len 0x0076, gso_size 1398, csum_start 0x0062, csum_offset 16, num_buffers 1,
    /// hash 0x11223344 report 7, outer_th 0x0036, inner_nh 0x004e.
    const LE24: [u8; 24] = [
        0x09, 0x41, 0x76, 0x00, 0x76, 0x05, 0x62, 0x00, 0x10, 0x00, 0x01, 0x00, // v1
        0x44, 0x33, 0x22, 0x11, 0x07, 0x00, 0x00, 0x00, // hash value, report, padding
        0x36, 0x00, 0x4e, 0x00, // outer_th_offset, inner_nh_offset
    ];

    fn sample24() -> VnetHdr {
        VnetHdr {
            flags: flags::NEEDS_CSUM | flags::UDP_TUNNEL_CSUM,
            gso_type: gso::UDP_TUNNEL_IPV6 | gso::TCPV4,
            hdr_len: 0x76,
            gso_size: 1398,
            csum_start: 0x62,
            csum_offset: 16,
            num_buffers: 1,
            tunnel: Some(HashTunnel {
                hash_value: 0x1122_3344,
                hash_report: 7,
                outer_th_offset: 0x36,
                inner_nh_offset: 0x4e,
            }),
        }
    }

    #[test]
    fn vnet_decode_encode_24() {
        assert_eq!(HdrLen::from_size(24), Some(HdrLen::V24));
        let h = VnetHdr::decode(&LE24, HdrLen::V24, Endian::Little).unwrap();
        assert_eq!(h, sample24());
        // Always little-endian: the endian argument does not apply.
        assert_eq!(VnetHdr::decode(&LE24, HdrLen::V24, Endian::Big), Ok(h));
        let mut out = [0xaa_u8; 26];
        assert_eq!(h.encode(&mut out, HdrLen::V24, Endian::Big), Ok(24));
        assert_eq!(out[..24], LE24);
        assert_eq!(out[24..], [0xaa, 0xaa]);
        // The shorter forms drop the tunnel fields; decoding them says there were none.
        let v12 = VnetHdr::decode(&LE24[..12], HdrLen::V12, Endian::Little).unwrap();
        assert_eq!(v12.tunnel, None);
        assert_eq!(v12.csum_start, 0x62);
        // A header without tunnel fields is written with zeros there.
        let mut plain = sample24();
        plain.tunnel = None;
        assert_eq!(plain.to_array(Endian::Little)[12..], [0; 12]);
        assert_eq!(
            VnetHdr::decode(&LE24[..23], HdrLen::V24, Endian::Little),
            Err(VnetError::HeaderTruncated {
                needed: 24,
                available: 23
            })
        );
    }

    /// Ethernet + IPv4 + UDP (to 4789) + VXLAN + inner Ethernet + IPv4 + TCP + `payload`
    /// bytes: outer UDP at 34, inner IP at 64, inner TCP at 84. Checksums are not filled.
    fn vxlan_tcp4(payload: usize) -> Vec<u8> {
        let inner_ip = 20 + 20 + payload;
        let udp = 8 + 8 + 14 + inner_ip;
        let mut f = vec![
            2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, // outer Ethernet
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // IPv4
            0xc0, 0x00, 0x12, 0xb5, 0, 0, 0, 0, // UDP to 4789
            0x08, 0, 0, 0, 0, 0, 0x2a, 0, // VXLAN, VNI 42
            2, 0, 0, 0, 0, 4, 2, 0, 0, 0, 0, 3, 0x08, 0x00, // inner Ethernet
            0x45, 0, 0, 0, 0, 7, 0x40, 0, 64, 6, 0, 0, 192, 168, 0, 1, 192, 168, 0, 2, // IPv4
            0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0,
        ];
        f[16..18].copy_from_slice(&((20 + udp) as u16).to_be_bytes());
        f[38..40].copy_from_slice(&(udp as u16).to_be_bytes());
        f[66..68].copy_from_slice(&(inner_ip as u16).to_be_bytes());
        f.resize(f.len() + payload, 0x5a);
        f
    }

    fn tunnel_hdr(gso_type: u8, flags_: u8) -> VnetHdr {
        VnetHdr {
            flags: flags_,
            gso_type,
            hdr_len: 0,
            gso_size: 1000,
            csum_start: 84,
            csum_offset: 16,
            num_buffers: 0,
            tunnel: Some(HashTunnel {
                outer_th_offset: 34,
                inner_nh_offset: 64,
                ..HashTunnel::default()
            }),
        }
    }

    #[test]
    fn vnet_tunnel_validates_and_maps_back() {
        let f = vxlan_tcp4(3000);
        let t = gso::UDP_TUNNEL_IPV4 | gso::TCPV4;
        for (fl, csum) in [
            (flags::NEEDS_CSUM, false),
            (flags::NEEDS_CSUM | flags::UDP_TUNNEL_CSUM, true),
        ] {
            let h = tunnel_hdr(t, fl);
            let v = validate(&h, &f, Start::Ethernet).unwrap();
            let want = Gso {
                kind: GsoKind::Tcpv4,
                size: 1000,
                ecn: false,
                tunnel: Some(UdpTunnel { inner_nh: 64, csum }),
            };
            assert_eq!(v.meta().gso, Some(want));
            assert_eq!(
                v.meta().csum,
                CsumState::Partial {
                    start: 84,
                    offset: 16
                }
            );
            assert_eq!(
                v.layers().l4_offset,
                34,
                "the layers are the outer packet's"
            );
            // from_meta gives the header back (hdr_len: the end of the inner csum field).
            let back = VnetHdr::from_meta(v.meta(), v.layers());
            assert_eq!(
                back,
                VnetHdr {
                    hdr_len: 84 + 18,
                    ..h
                }
            );
            // validate_gso builds the same from the GSO metadata alone.
            assert_eq!(validate_gso(&f, Start::Ethernet, want), Ok(v));
        }
        // Too small to be a super-frame: a plain packet with its inner partial checksum.
        let small = vxlan_tcp4(1000);
        let v = validate(&tunnel_hdr(t, flags::NEEDS_CSUM), &small, Start::Ethernet).unwrap();
        assert_eq!(v.meta().gso, None);
        assert_eq!(
            v.meta().csum,
            CsumState::Partial {
                start: 84,
                offset: 16
            }
        );
    }

    #[test]
    fn vnet_tunnel_rejections() {
        let f = vxlan_tcp4(3000);
        let v4 = gso::UDP_TUNNEL_IPV4;
        let nc = flags::NEEDS_CSUM;
        let check = |h: VnetHdr| validate(&h, &f, Start::Ethernet).map(|_| ());
        let mut h = tunnel_hdr(v4 | gso::TCPV4, nc);
        h.tunnel = None;
        assert_eq!(
            check(h),
            Err(VnetError::TunnelNotNegotiated { gso_type: 0x21 })
        );
        assert_eq!(
            check(tunnel_hdr(0x61, nc)),
            Err(VnetError::TunnelBothFamilies { gso_type: 0x61 })
        );
        for t in [0x20, 0xa0, 0x23] {
            assert_eq!(
                check(tunnel_hdr(t, nc)),
                Err(VnetError::TunnelInnerType { gso_type: t })
            );
        }
        assert_eq!(
            check(tunnel_hdr(0x22, nc)),
            Err(VnetError::UnknownGsoType { gso_type: 0x22 })
        );
        assert_eq!(
            check(tunnel_hdr(0x21, flags::UDP_TUNNEL_CSUM)),
            Err(VnetError::TunnelWithoutCsum { gso_type: 0x21 })
        );
        assert_eq!(
            check(tunnel_hdr(0x21, nc | flags::DATA_VALID)),
            Err(VnetError::TunnelDataValid { gso_type: 0x21 })
        );
        // Offsets out of order: inner IP inside the outer UDP header, inner transport
        // inside the inner IP header, outer UDP inside the outer IP header.
        let offs = |o: u16, i: u16, c: u16| {
            let mut h = tunnel_hdr(0x21, nc);
            h.csum_start = c;
            h.tunnel = Some(HashTunnel {
                outer_th_offset: o,
                inner_nh_offset: i,
                ..HashTunnel::default()
            });
            check(h)
        };
        let bad = |o, i, c| {
            Err(VnetError::TunnelOffsets {
                outer_th: o,
                inner_nh: i,
                csum_start: c,
            })
        };
        assert_eq!(offs(34, 41, 84), bad(34, 41, 84));
        assert_eq!(offs(34, 64, 83), bad(34, 64, 83));
        assert_eq!(offs(30, 64, 84), bad(30, 64, 84));
        // In order but pointing elsewhere than the parsed headers.
        assert_eq!(
            offs(36, 64, 84),
            Err(VnetError::TunnelOuterThOffset {
                outer_th: 36,
                l4_offset: 34
            })
        );
        assert!(matches!(offs(34, 50, 84), Err(VnetError::TunnelInner(e)) if e.offset == 50));
        assert_eq!(
            offs(34, 64, 86),
            Err(VnetError::CsumStartNotL4 {
                csum_start: 86,
                l4_offset: 84
            })
        );
        // The tunnel's family against the outer packet, the inner type against the inner.
        assert_eq!(
            check(tunnel_hdr(0x41, nc)),
            Err(VnetError::TunnelOuterMismatch {
                gso_type: 0x41,
                l3: L3::Ipv4,
                l4: Some(L4::Udp)
            })
        );
        let mut h = tunnel_hdr(0x24, nc);
        h.csum_start = 104;
        assert_eq!(
            check(h),
            Err(VnetError::GsoProtoMismatch {
                gso_type: 0x24,
                l3: L3::Ipv4,
                l4: Some(L4::Tcp)
            })
        );
        // An inner packet shorter than what the outer one carries.
        let mut g = f.clone();
        g[66..68].copy_from_slice(&(40u16 + 2999).to_be_bytes());
        assert_eq!(
            validate(&tunnel_hdr(0x21, nc), &g, Start::Ethernet).map(|_| ()),
            Err(VnetError::TunnelInnerLength {
                inner_end: g.len() - 1,
                outer_end: g.len()
            })
        );
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
