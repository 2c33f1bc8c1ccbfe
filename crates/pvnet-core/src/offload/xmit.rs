//! What to do to a packet before handing it to a destination port: the decision half of
//! Linux `validate_xmit_skb` (net/core/dev.c), as a pure function.
//!
//! The kernel, before giving a packet to a device, computes the features that apply to this
//! packet (`netif_skb_features` → `harmonize_features`, `gso_features_check`), then
//!
//! 1. segments a super-frame in software when the device cannot take it
//!    (`netif_needs_gso` / `skb_gso_ok` / `net_gso_ok`), producing segments whose checksums
//!    are left partial when the device can checksum them and completed otherwise
//!    (`skb_segment` looks at the checksum features), linear when the device has no
//!    scatter-gather;
//! 2. otherwise linearizes a fragmented packet for a device without scatter-gather
//!    (`skb_needs_linearize`), and completes a partial checksum that the device cannot
//!    (`skb_csum_hwoffload_help` → `skb_checksum_help`).
//!
//! [`xmit_action`] returns the same decision as an [`XmitPlan`]; the caller carries it out
//! with the GSO segmenter ([`crate::offload::gso::Segmenter`]), the checksum engine
//! ([`crate::offload::checksum::complete_partial`]) and, for a destination that needs one
//! buffer, [`crate::frame::Frame::copy_to`].

use crate::frame::{CsumState, Gso, GsoKind};
use crate::offload::features::{Feature, Features};
use crate::vnet::Validated;
use crate::wire::{ipv6, tcp, udp, Layers, L3, L4};

pub use super::CsumMode;

/// What to do to one packet for one destination. Every flag may combine with the others.
///
/// Order of execution: segment first (and then `complete_csum` / `linearize` apply to each
/// segment, which the segmenter does itself: `segment == Some(CsumMode::Full)` always comes
/// with `complete_csum`), else linearize and complete the checksum, in either order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XmitPlan {
    /// Split the super-frame into segments, with this checksum state; `None`: send it as
    /// one packet (a super-frame passes through with its GSO metadata).
    pub segment: Option<CsumMode>,
    /// Complete the partial checksum (of the packet, or of every segment).
    pub complete_csum: bool,
    /// The destination needs one linear buffer per packet (of the packet, or of every
    /// segment: zero-copy segments are a header block plus payload slices).
    pub linearize: bool,
}

impl XmitPlan {
    /// Send as is.
    pub const PASS: XmitPlan = XmitPlan {
        segment: None,
        complete_csum: false,
        linearize: false,
    };

    /// Nothing to do: the packet goes out unchanged, GSO metadata included.
    pub fn is_pass(&self) -> bool {
        *self == XmitPlan::PASS
    }
}

/// A destination's limits on super-frames (`dev->gso_max_size`, `dev->gso_max_segs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GsoLimits {
    /// Largest super-frame (whole frame, bytes) the destination takes.
    pub max_size: u32,
    /// Most segments one super-frame may make.
    pub max_segs: u32,
}

impl Default for GsoLimits {
    /// The kernel defaults: `GSO_LEGACY_MAX_SIZE` (65536) and `GSO_MAX_SEGS` (65535).
    fn default() -> Self {
        GsoLimits {
            max_size: 65_536,
            max_segs: 65_535,
        }
    }
}

/// The feature a GSO type needs (`net_gso_ok`: SKB_GSO_* → NETIF_F_GSO_*).
pub fn gso_feature(kind: GsoKind) -> Feature {
    match kind {
        GsoKind::Tcpv4 => Feature::Tso4,
        GsoKind::Tcpv6 => Feature::Tso6,
        GsoKind::UdpL4 => Feature::Uso,
        GsoKind::Ufo => Feature::Ufo,
    }
}

/// Every feature a destination needs to take `gso` unsegmented (`net_gso_ok` over all of
/// its SKB_GSO_* bits): the kind's, TSO-ECN for an ECN super-frame, and for one in a UDP
/// tunnel the tunnel feature of its outer checksum variant (`tx-udp_tnl-csum-segmentation`
/// when the outer UDP checksum is wanted, `tx-udp_tnl-segmentation` otherwise).
pub fn gso_features(gso: &Gso) -> Features {
    let mut f = Features::from_feature(gso_feature(gso.kind));
    if gso.ecn {
        f.insert(Features::TSO_ECN);
    }
    match gso.tunnel {
        Some(t) if t.csum => f.insert(Features::TNL_CSUM),
        Some(_) => f.insert(Features::TNL),
        None => {}
    }
    f
}

/// The feature to take away from a destination that refused `gso` at run time (a device
/// whose declared offloads turned out wrong), so that the next plan segments such
/// super-frames: the tunnel feature of the outer checksum variant for one in a UDP tunnel
/// (the inner kind may well pass outside a tunnel, and a refused checksummed variant
/// leaves the plain one), the kind's feature otherwise. It is always one of
/// [`gso_features`]`(gso)`.
pub fn refused_feature(gso: &Gso) -> Features {
    match gso.tunnel {
        Some(t) if t.csum => Features::TNL_CSUM,
        Some(_) => Features::TNL,
        None => Features::from_feature(gso_feature(gso.kind)),
    }
}

/// Which of the two UDP GSO kinds to use for a UDP packet whose sender did not say (a
/// packet from a capture, say: see [`gso_kind_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UdpGso {
    /// USO ([`GsoKind::UdpL4`]): every segment is a UDP datagram of its own.
    #[default]
    Uso,
    /// UFO ([`GsoKind::Ufo`]): one UDP datagram split into IP fragments.
    Ufo,
}

/// The GSO kind a packet is segmented with, from its own layers (as parsed by
/// [`crate::wire::parse`]): TSO over IPv4 or IPv6 for TCP, `udp`'s kind for UDP. `None`
/// for an IP fragment or a packet that is neither TCP nor UDP over IP: those cannot be
/// segmented.
pub fn gso_kind_of(layers: &Layers, udp: UdpGso) -> Option<GsoKind> {
    if layers.fragment {
        return None;
    }
    match (layers.l3?, layers.l4?) {
        (L3::Ipv4, L4::Tcp) => Some(GsoKind::Tcpv4),
        (L3::Ipv6, L4::Tcp) => Some(GsoKind::Tcpv6),
        (_, L4::Udp) => Some(match udp {
            UdpGso::Uso => GsoKind::UdpL4,
            UdpGso::Ufo => GsoKind::Ufo,
        }),
        (_, L4::Other(_)) => None,
    }
}

/// The bytes of a packet that segmentation of `kind` cuts into gso_size pieces: the
/// transport payload for TSO and USO, UDP header and payload for UFO (which fragments the
/// whole datagram). Link-layer padding after the IP packet is not counted.
pub fn segmentable_len(layers: &Layers, kind: GsoKind) -> usize {
    match kind {
        GsoKind::Ufo => layers.ip_end.saturating_sub(layers.l4_offset),
        GsoKind::Tcpv4 | GsoKind::Tcpv6 | GsoKind::UdpL4 => layers.payload_len(),
    }
}

/// The largest gso_size (the MSS, for TCP) whose segments fit an IP MTU of `mtu` bytes,
/// given this packet's own header lengths: every segment repeats the IP header (options
/// and extension headers included) and, for TSO and USO, the TCP or UDP header. UFO
/// fragments carry the UDP header in the first fragment's data instead, and over IPv6 each
/// fragment gets an 8-byte Fragment header. `None` when the headers leave no room.
pub fn gso_size_for_mtu(layers: &Layers, kind: GsoKind, mtu: u16) -> Option<u16> {
    let headers = match (kind, layers.l3) {
        (GsoKind::Ufo, Some(L3::Ipv6)) => layers.l3_len + ipv6::EXT_MIN_LEN,
        (GsoKind::Ufo, _) => layers.l3_len,
        (GsoKind::Tcpv4 | GsoKind::Tcpv6 | GsoKind::UdpL4, _) => layers.l3_len + layers.l4_len,
    };
    let size = usize::from(mtu).checked_sub(headers)?;
    u16::try_from(size).ok().filter(|&s| s > 0)
}

/// The GSO metadata under which `frame` (layers `layers`) is a super-frame of `kind` with
/// segments of `size` bytes, or `None` when it is no longer than one segment (or `size`
/// is 0). The ECN flag is set for a TCP packet with CWR: the segmenter then puts CWR on
/// the first segment only, as the kernel does for a super-frame with SKB_GSO_TCP_ECN.
pub fn superframe_gso(frame: &[u8], layers: &Layers, kind: GsoKind, size: u16) -> Option<Gso> {
    if size == 0 || segmentable_len(layers, kind) <= usize::from(size) {
        return None;
    }
    let ecn = kind.is_tcp()
        && frame
            .get(layers.l4_offset + tcp::field::FLAGS)
            .is_some_and(|f| f & tcp::flags::CWR != 0);
    Some(Gso {
        kind,
        size,
        ecn,
        tunnel: None,
    })
}

/// Decide what to do to a validated frame (`v`: its layers and offload metadata;
/// `linear` when it is one buffer) for a destination taking `dst`, with the kernel's
/// default GSO limits. Cannot fail: what `skb_gso_segment` / `virtio_net_hdr_to_skb` would
/// refuse (a GSO type that does not match the packet, gso_size 0, a fragment, ECN on UDP)
/// was refused by [`crate::vnet::validate`] already.
pub fn xmit_action(v: &Validated, linear: bool, dst: Features) -> XmitPlan {
    xmit_action_limited(v, linear, dst, GsoLimits::default())
}

/// [`xmit_action`] with the destination's own GSO limits.
pub fn xmit_action_limited(
    v: &Validated,
    linear: bool,
    dst: Features,
    limits: GsoLimits,
) -> XmitPlan {
    let (meta, layers) = (v.meta(), v.layers());
    // A frame that asks for nothing (no GSO, no partial checksum) and needs no gathering
    // passes whatever the destination has: what the rules below conclude for it, without
    // working out the destination's effective features for every small frame.
    if linear && meta.gso.is_none() && !matches!(meta.csum, CsumState::Partial { .. }) {
        return XmitPlan::PASS;
    }
    // netdev_fix_features: a destination never effectively has a feature whose
    // prerequisites are missing (TSO without SG, …), whatever it declared.
    let mut features = dst.fixed();
    let ipv6 = layers.l3 == Some(L3::Ipv6);

    // harmonize_features: a packet with checksum state whose L3 protocol the destination
    // cannot checksum gets neither checksum nor GSO offload from it.
    if meta.csum != CsumState::None && !features.can_checksum(ipv6) {
        features.remove(Features::CSUM_MASK | Features::GSO_MASK);
    }

    let Some(gso) = meta.gso else {
        return XmitPlan {
            segment: None,
            // skb_csum_hwoffload_help: CHECKSUM_PARTIAL to a device that cannot do it.
            complete_csum: matches!(meta.csum, CsumState::Partial { .. })
                && !csum_offload_ok(&meta.csum, layers, features),
            // skb_needs_linearize: fragments (nr_frags) without NETIF_F_SG.
            linearize: !linear && !features.has(Feature::Sg),
        };
    };

    // gso_features_check: too many segments or too big for the destination: it gets
    // segments, not the super-frame.
    let payload = match v.inner_layers() {
        Some(inner) => inner.payload_len(),
        None => layers.payload_len(),
    };
    let segs = payload.div_ceil(usize::from(gso.size));
    let too_big = u64::try_from(layers.ip_end).unwrap_or(u64::MAX) > u64::from(limits.max_size);
    if too_big || u64::try_from(segs).unwrap_or(u64::MAX) > u64::from(limits.max_segs) {
        features.remove(Features::GSO_MASK);
    }

    // netif_needs_gso: segment unless skb_gso_ok, or when the checksum state is neither
    // PARTIAL nor UNNECESSARY (a super-frame with unknown checksums is never passed on).
    // net_gso_ok: the type's feature, plus TSO_ECN for an ECN super-frame and the tunnel
    // feature for one in a UDP tunnel. pvnet also asks for SG, which fixed() guarantees
    // with any GSO feature.
    let gso_ok = features.contains(gso_features(&gso)) && features.has(Feature::Sg);
    let csum_ok = matches!(
        meta.csum,
        CsumState::Partial { .. } | CsumState::Unnecessary
    );
    if gso_ok && csum_ok {
        return XmitPlan::PASS;
    }

    // skb_segment: segments keep partial checksums when the destination can checksum them
    // (can_checksum_protocol); UFO fragments cannot carry a partial checksum (only the
    // first has the UDP header and the checksum covers the whole datagram:
    // udp4_ufo_fragment completes it before fragmenting). Segments are linear without SG.
    // The partial checksum of a tunnel segment is the inner one, at an offset only
    // generic checksumming takes (the IPv4/IPv6 features know the outer protocol only).
    let partial_ok = gso.kind != GsoKind::Ufo
        && features.can_checksum(ipv6)
        && (features.has(Feature::Csum)
            || (gso.tunnel.is_none() && !(ipv6 && layers.l3_len != ipv6::HEADER_LEN)));
    let mode = if partial_ok {
        CsumMode::Partial
    } else {
        CsumMode::Full
    };
    XmitPlan {
        segment: Some(mode),
        complete_csum: mode == CsumMode::Full,
        linearize: !features.has(Feature::Sg),
    }
}

/// Can the destination complete this partial checksum? (`skb_csum_hwoffload_help`.)
/// Generic checksumming takes any csum_start/csum_offset. The IPv4/IPv6 features only take
/// a TCP or UDP checksum field, and IPv6 only without extension headers; their protocol
/// match was already checked by `harmonize_features`.
fn csum_offload_ok(csum: &CsumState, layers: &Layers, features: Features) -> bool {
    if features.has(Feature::Csum) {
        return true;
    }
    let CsumState::Partial { offset, .. } = *csum else {
        return true;
    };
    if !features.intersects(Features::CSUM4 | Features::CSUM6) {
        return false;
    }
    let ipv6 = layers.l3 == Some(L3::Ipv6);
    if ipv6 && layers.l3_len != ipv6::HEADER_LEN {
        return false;
    }
    matches!(
        usize::from(offset),
        tcp::CHECKSUM_OFFSET | udp::CHECKSUM_OFFSET
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{parse, Start};

    /// Ethernet, IPv4 with 4 bytes of options (IHL 6), TCP with 12 bytes of options
    /// (doff 8) and flags `flags`, 100 bytes of payload, 4 bytes of Ethernet padding.
    fn tcp4(flags: u8) -> Vec<u8> {
        let mut f = vec![
            0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, // Ethernet
            0x46, 0x00, 0x00, 0x9c, 0x00, 0x01, 0x40, 0x00, // IHL 6, total 156, DF
            0x40, 0x06, 0x00, 0x00, 10, 0, 0, 1, 10, 0, 0, 2, // TTL, TCP, csum, addrs
            0x01, 0x01, 0x01, 0x00, // IP options: NOP NOP NOP EOL
            0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, // ports, seq, ack
            0x80, flags, 0xff, 0xff, 0, 0, 0, 0, // doff 8, flags, window, csum, urg
            1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, // NOP NOP timestamps
        ];
        f.extend((0..100u8).map(|i| i.wrapping_mul(7)));
        f.extend([0xee; 4]);
        f
    }

    /// Ethernet, IPv6, UDP with 1000 bytes of payload.
    fn udp6() -> Vec<u8> {
        let mut f = vec![
            0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x86, 0xdd, // Ethernet
            0x60, 0, 0, 0, 0x03, 0xf0, 0x11, 0x40, // payload length 1008, UDP
            0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // src
            0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, // dst
            0x9c, 0x40, 0x00, 0x35, 0x03, 0xf0, 0x00, 0x00, // ports, length 1008
        ];
        f.extend([0x55; 1000]);
        f
    }

    fn layers(frame: &[u8]) -> Layers {
        parse(frame, Start::Ethernet).unwrap()
    }

    #[test]
    fn gso_kind_from_the_layers() {
        let t = layers(&tcp4(tcp::flags::ACK));
        assert_eq!(gso_kind_of(&t, UdpGso::Uso), Some(GsoKind::Tcpv4));
        assert_eq!(gso_kind_of(&t, UdpGso::Ufo), Some(GsoKind::Tcpv4));
        let u = layers(&udp6());
        assert_eq!(gso_kind_of(&u, UdpGso::Uso), Some(GsoKind::UdpL4));
        assert_eq!(gso_kind_of(&u, UdpGso::Ufo), Some(GsoKind::Ufo));
        let mut v6tcp = udp6();
        v6tcp[14 + 6] = 6;
        v6tcp[14 + 40 + 12] = 0x50; // a 20-byte TCP header where the payload starts
        assert_eq!(
            gso_kind_of(&layers(&v6tcp), UdpGso::Uso),
            Some(GsoKind::Tcpv6)
        );
        // ICMP, a fragment, no IP: nothing to segment.
        let mut icmp = tcp4(0);
        icmp[14 + 9] = 1;
        let mut frag = tcp4(0);
        frag[14 + 6] = 0x20; // MF
        let mut arp = vec![0u8; 60];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        for f in [icmp, frag, arp] {
            assert_eq!(gso_kind_of(&layers(&f), UdpGso::Uso), None);
        }
    }

    #[test]
    fn segmentable_bytes_per_kind() {
        let t = layers(&tcp4(0));
        assert_eq!(
            segmentable_len(&t, GsoKind::Tcpv4),
            100,
            "padding not counted"
        );
        let u = layers(&udp6());
        assert_eq!(segmentable_len(&u, GsoKind::UdpL4), 1000);
        assert_eq!(segmentable_len(&u, GsoKind::Ufo), 1008);
    }

    #[test]
    fn gso_size_from_the_mtu() {
        // 24 bytes of IPv4 header, 32 of TCP.
        let t = layers(&tcp4(0));
        assert_eq!(gso_size_for_mtu(&t, GsoKind::Tcpv4, 1500), Some(1500 - 56));
        assert_eq!(gso_size_for_mtu(&t, GsoKind::Tcpv4, 57), Some(1));
        assert_eq!(gso_size_for_mtu(&t, GsoKind::Tcpv4, 56), None);
        assert_eq!(gso_size_for_mtu(&t, GsoKind::Tcpv4, 40), None);
        // IPv6 + UDP: 40 + 8 for USO, 40 + the 8-byte Fragment header for UFO.
        let u = layers(&udp6());
        assert_eq!(gso_size_for_mtu(&u, GsoKind::UdpL4, 1280), Some(1232));
        assert_eq!(gso_size_for_mtu(&u, GsoKind::Ufo, 1280), Some(1232));
        // UFO over IPv4: only the IP header repeats.
        assert_eq!(gso_size_for_mtu(&t, GsoKind::Ufo, 1500), Some(1476));
    }

    #[test]
    fn superframe_only_above_one_segment() {
        let f = tcp4(tcp::flags::ACK);
        let t = layers(&f);
        assert_eq!(superframe_gso(&f, &t, GsoKind::Tcpv4, 100), None);
        assert_eq!(superframe_gso(&f, &t, GsoKind::Tcpv4, 0), None);
        assert_eq!(
            superframe_gso(&f, &t, GsoKind::Tcpv4, 99),
            Some(Gso {
                kind: GsoKind::Tcpv4,
                size: 99,
                ecn: false,
                tunnel: None,
            })
        );
        let f = tcp4(tcp::flags::CWR | tcp::flags::ACK);
        let gso = superframe_gso(&f, &layers(&f), GsoKind::Tcpv4, 40).unwrap();
        assert!(gso.ecn, "CWR makes an ECN super-frame");
        // UFO counts the UDP header, USO does not; ECN is never set for UDP.
        let f = udp6();
        let u = layers(&f);
        assert_eq!(superframe_gso(&f, &u, GsoKind::UdpL4, 1000), None);
        assert_eq!(
            superframe_gso(&f, &u, GsoKind::Ufo, 1000),
            Some(Gso {
                kind: GsoKind::Ufo,
                size: 1000,
                ecn: false,
                tunnel: None,
            })
        );
    }
}
