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
//! [`xmit_action`] returns the same decision as an [`XmitPlan`]; the switch carries it out
//! with the GSO segmenter ([`crate::offload`]`::gso`, plugged in by the caller), the
//! checksum engine ([`crate::offload::checksum::complete_partial`]) and
//! [`crate::packet::Packet::linearize`].

use crate::frame::{CsumState, GsoKind};
use crate::offload::features::{Feature, Features};
use crate::vnet::Validated;
use crate::wire::{ipv6, tcp, udp, Layers, L3};

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
    let segs = layers.payload_len().div_ceil(usize::from(gso.size));
    let too_big = u64::try_from(layers.ip_end).unwrap_or(u64::MAX) > u64::from(limits.max_size);
    if too_big || u64::try_from(segs).unwrap_or(u64::MAX) > u64::from(limits.max_segs) {
        features.remove(Features::GSO_MASK);
    }

    // netif_needs_gso: segment unless skb_gso_ok, or when the checksum state is neither
    // PARTIAL nor UNNECESSARY (a super-frame with unknown checksums is never passed on).
    // net_gso_ok: the type's feature, plus TSO_ECN for an ECN super-frame. pvnet also asks
    // for SG, which fixed() guarantees with any GSO feature.
    let gso_ok = features.has(gso_feature(gso.kind))
        && (!gso.ecn || features.has(Feature::TsoEcn))
        && features.has(Feature::Sg);
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
    let partial_ok = gso.kind != GsoKind::Ufo
        && features.can_checksum(ipv6)
        && (features.has(Feature::Csum) || !(ipv6 && layers.l3_len != ipv6::HEADER_LEN));
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
