//! Offload feature sets, named as `ethtool -k` names them.
//!
//! A [`Features`] value says what a port can take on transmit: partial checksums, gathered
//! buffers, super-frames of each GSO type. It is parsed from and printed as a `+`-joined
//! list of short aliases (`csum+sg+tso4+tso6+uso`), also accepts the ethtool names
//! (`tx-checksum-ip-generic+scatter-gather+…`), `none` and `all`.
//!
//! [`Features::fixed`] applies the dependency rules of Linux `netdev_fix_features`
//! (net/core/dev.c) so that a set never claims something the kernel would refuse to
//! combine, and [`Features::to_tun_offload`] / [`Features::from_tun_offload`] map to the
//! `TUN_F_*` bits of `TUNSETOFFLOAD` ([`tun_offload`]) as `tun.c`'s `set_offload` interprets
//! them.

use core::fmt;
use core::str::FromStr;

/// The `TUN_F_*` offload bits of `TUNSETOFFLOAD`, with the names and values of Linux
/// `include/uapi/linux/if_tun.h`.
///
/// They say what the *reader* of a tap/tun device can take: with `CSUM` the kernel may hand
/// it partial checksums, with `TSO4` unsegmented TCP super-frames, and so on. Writing a GSO
/// frame into the device does not depend on them. The kernel rejects bits it does not know
/// with `EINVAL`.
pub mod tun_offload {
    /// `TUN_F_CSUM`: packets whose checksum is partial (NEEDS_CSUM). Every other
    /// bit needs it.
    pub const CSUM: u32 = 1 << 0;
    /// `TUN_F_TSO4`: TCP/IPv4 super-frames (gso_type TCPV4).
    pub const TSO4: u32 = 1 << 1;
    /// `TUN_F_TSO6`: TCP/IPv6 super-frames (gso_type TCPV6).
    pub const TSO6: u32 = 1 << 2;
    /// `TUN_F_TSO_ECN`: TSO super-frames with ECN (CWR) set; needs TSO4 or TSO6.
    pub const TSO_ECN: u32 = 1 << 3;
    /// `TUN_F_UFO`: UDP fragmentation offload; accepted and ignored by current
    /// kernels.
    pub const UFO: u32 = 1 << 4;
    /// `TUN_F_USO4`: UDP segmentation (gso_type UDP_L4) for IPv4; since Linux 6.2,
    /// only together with USO6.
    pub const USO4: u32 = 1 << 5;
    /// `TUN_F_USO6`: UDP segmentation (gso_type UDP_L4) for IPv6; since Linux 6.2,
    /// only together with USO4.
    pub const USO6: u32 = 1 << 6;
    /// `TUN_F_UDP_TUNNEL_GSO`: super-frames encapsulated in a UDP tunnel (VXLAN, GENEVE:
    /// gso_type UDP_TUNNEL_IPV4/IPV6 with an inner TCPV4/TCPV6/UDP_L4); since Linux 6.17,
    /// only with CSUM and a plain GSO bit (TSO4, TSO6 or USO), and only meaningful with a
    /// 24-byte vnet header (`TUNSETVNETHDRSZ` 24), the only one that carries the tunnel
    /// offsets.
    pub const UDP_TUNNEL_GSO: u32 = 1 << 7;
    /// `TUN_F_UDP_TUNNEL_GSO_CSUM`: tunnel super-frames whose outer UDP checksum is
    /// wanted (flag UDP_TUNNEL_CSUM); only together with UDP_TUNNEL_GSO.
    pub const UDP_TUNNEL_GSO_CSUM: u32 = 1 << 8;
    /// Both tunnel bits.
    pub const UDP_TUNNEL: u32 = UDP_TUNNEL_GSO | UDP_TUNNEL_GSO_CSUM;
    /// Every bit this module knows.
    pub const ALL: u32 = CSUM | TSO4 | TSO6 | TSO_ECN | UFO | USO4 | USO6 | UDP_TUNNEL;
    /// The smallest vnet header that carries the tunnel offsets
    /// (`virtio_net_hdr_v1_hash_tunnel`): a tap given a shorter one must not get the
    /// tunnel bits.
    pub const TUNNEL_HDR_LEN: usize = 24;
}

/// One offload feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Feature {
    /// `tx-checksum-ip-generic` (NETIF_F_HW_CSUM): completes any partial checksum given by
    /// csum_start/csum_offset, whatever the protocol.
    Csum = 0,
    /// `tx-checksum-ipv4` (NETIF_F_IP_CSUM): TCP/UDP over IPv4 only.
    Csum4 = 1,
    /// `tx-checksum-ipv6` (NETIF_F_IPV6_CSUM): TCP/UDP over IPv6 without extension headers.
    Csum6 = 2,
    /// `scatter-gather` (NETIF_F_SG): takes a packet as several buffers.
    Sg = 3,
    /// `tx-tcp-segmentation` (NETIF_F_TSO): TCP/IPv4 super-frames.
    Tso4 = 4,
    /// `tx-tcp6-segmentation` (NETIF_F_TSO6): TCP/IPv6 super-frames.
    Tso6 = 5,
    /// `tx-tcp-ecn-segmentation` (NETIF_F_TSO_ECN): TSO super-frames with CWR set.
    TsoEcn = 6,
    /// `tx-udp-segmentation` (NETIF_F_GSO_UDP_L4): USO super-frames.
    Uso = 7,
    /// `tx-udp-fragmentation` (NETIF_F_UFO, legacy): UDP datagrams to be IP-fragmented.
    Ufo = 8,
    /// `generic-receive-offload` (NETIF_F_GRO): coalesce what is received from this port.
    Gro = 9,
    /// `tx-udp_tnl-segmentation` (NETIF_F_GSO_UDP_TUNNEL): super-frames encapsulated in a
    /// UDP tunnel (VXLAN, GENEVE), outer UDP checksum zero. Needs the inner type's feature
    /// too.
    TnlGso = 10,
    /// `tx-udp_tnl-csum-segmentation` (NETIF_F_GSO_UDP_TUNNEL_CSUM): the same with the
    /// outer UDP checksum computed per segment.
    TnlCsum = 11,
}

impl Feature {
    /// Every feature, in canonical (display) order.
    pub const ALL: [Feature; 12] = [
        Feature::Csum,
        Feature::Csum4,
        Feature::Csum6,
        Feature::Sg,
        Feature::Tso4,
        Feature::Tso6,
        Feature::TsoEcn,
        Feature::Uso,
        Feature::Ufo,
        Feature::Gro,
        Feature::TnlGso,
        Feature::TnlCsum,
    ];

    /// The name `ethtool -k` prints.
    pub const fn ethtool_name(self) -> &'static str {
        match self {
            Feature::Csum => "tx-checksum-ip-generic",
            Feature::Csum4 => "tx-checksum-ipv4",
            Feature::Csum6 => "tx-checksum-ipv6",
            Feature::Sg => "scatter-gather",
            Feature::Tso4 => "tx-tcp-segmentation",
            Feature::Tso6 => "tx-tcp6-segmentation",
            Feature::TsoEcn => "tx-tcp-ecn-segmentation",
            Feature::Uso => "tx-udp-segmentation",
            Feature::Ufo => "tx-udp-fragmentation",
            Feature::Gro => "generic-receive-offload",
            Feature::TnlGso => "tx-udp_tnl-segmentation",
            Feature::TnlCsum => "tx-udp_tnl-csum-segmentation",
        }
    }

    /// The short alias used in port specs and in [`Features`]' display.
    pub const fn short_name(self) -> &'static str {
        match self {
            Feature::Csum => "csum",
            Feature::Csum4 => "csum4",
            Feature::Csum6 => "csum6",
            Feature::Sg => "sg",
            Feature::Tso4 => "tso4",
            Feature::Tso6 => "tso6",
            Feature::TsoEcn => "tso-ecn",
            Feature::Uso => "uso",
            Feature::Ufo => "ufo",
            Feature::Gro => "gro",
            Feature::TnlGso => "tnl",
            Feature::TnlCsum => "tnl-csum",
        }
    }

    const fn bit(self) -> u16 {
        1 << self as u8
    }
}

/// Names accepted in addition to the short and ethtool names: more ethtool spellings and
/// group aliases.
const EXTRA_NAMES: &[(&str, Features)] = &[
    ("rx-gro", Features::GRO),
    ("tx-checksumming", Features::CSUM),
    ("tx", Features::CSUM),
    ("tso", Features::TSO4.union(Features::TSO6)),
    (
        "tcp-segmentation-offload",
        Features::TSO4.union(Features::TSO6),
    ),
];

/// virtio-net feature bits (virtio 1.2, 5.1.3) that carry offloads, and the ones a
/// vhost-user backend offers beside them. `HOST_*`: what the driver may send the device;
/// `GUEST_*`: what the device may send the driver.
pub mod virtio_net {
    /// The driver may send frames with a partial checksum.
    pub const CSUM: u64 = 1 << 0;
    /// The device may send frames with a partial checksum.
    pub const GUEST_CSUM: u64 = 1 << 1;
    /// The device reports its MTU in the config space.
    pub const MTU: u64 = 1 << 3;
    /// The device has a MAC address in the config space.
    pub const MAC: u64 = 1 << 5;
    /// The device may send TCP/IPv4 super-frames.
    pub const GUEST_TSO4: u64 = 1 << 7;
    /// The device may send TCP/IPv6 super-frames.
    pub const GUEST_TSO6: u64 = 1 << 8;
    /// The device may send TCP super-frames with ECN (CWR).
    pub const GUEST_ECN: u64 = 1 << 9;
    /// The device may send UDP fragmentation-offload super-frames.
    pub const GUEST_UFO: u64 = 1 << 10;
    /// The driver may send TCP/IPv4 super-frames.
    pub const HOST_TSO4: u64 = 1 << 11;
    /// The driver may send TCP/IPv6 super-frames.
    pub const HOST_TSO6: u64 = 1 << 12;
    /// The driver may send TCP super-frames with ECN (CWR).
    pub const HOST_ECN: u64 = 1 << 13;
    /// The driver may send UDP fragmentation-offload super-frames.
    pub const HOST_UFO: u64 = 1 << 14;
    /// Receive buffers may be merged: a frame spans `num_buffers` descriptor chains.
    pub const MRG_RXBUF: u64 = 1 << 15;
    /// The config space has a link status.
    pub const STATUS: u64 = 1 << 16;
    /// Multiqueue: the config space says how many queue pairs.
    pub const MQ: u64 = 1 << 22;
    /// Indirect descriptor tables.
    pub const RING_F_INDIRECT_DESC: u64 = 1 << 28;
    /// `used_event`/`avail_event` notification suppression.
    pub const RING_F_EVENT_IDX: u64 = 1 << 29;
    /// vhost-user: the protocol-feature negotiation is offered.
    pub const PROTOCOL_FEATURES: u64 = 1 << 30;
    /// Virtio 1.0 or later (little-endian, the 12-byte header always).
    pub const VERSION_1: u64 = 1 << 32;
    /// The device uses buffers in the order the driver made them available, and may
    /// return a batch of them with one used element, the last one's.
    pub const IN_ORDER: u64 = 1 << 35;
    /// The device may send UDP/IPv4 segmentation super-frames.
    pub const GUEST_USO4: u64 = 1 << 54;
    /// The device may send UDP/IPv6 segmentation super-frames.
    pub const GUEST_USO6: u64 = 1 << 55;
    /// The driver may send UDP segmentation super-frames (both families).
    pub const HOST_USO: u64 = 1 << 56;
}

/// A set of [`Feature`]s.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Features(u16);

impl Features {
    /// The empty set.
    pub const NONE: Features = Features(0);
    /// [`Feature::Csum`] alone.
    pub const CSUM: Features = Features(Feature::Csum.bit());
    /// [`Feature::Csum4`] alone.
    pub const CSUM4: Features = Features(Feature::Csum4.bit());
    /// [`Feature::Csum6`] alone.
    pub const CSUM6: Features = Features(Feature::Csum6.bit());
    /// [`Feature::Sg`] alone.
    pub const SG: Features = Features(Feature::Sg.bit());
    /// [`Feature::Tso4`] alone.
    pub const TSO4: Features = Features(Feature::Tso4.bit());
    /// [`Feature::Tso6`] alone.
    pub const TSO6: Features = Features(Feature::Tso6.bit());
    /// [`Feature::TsoEcn`] alone.
    pub const TSO_ECN: Features = Features(Feature::TsoEcn.bit());
    /// [`Feature::Uso`] alone.
    pub const USO: Features = Features(Feature::Uso.bit());
    /// [`Feature::Ufo`] alone.
    pub const UFO: Features = Features(Feature::Ufo.bit());
    /// [`Feature::Gro`] alone.
    pub const GRO: Features = Features(Feature::Gro.bit());
    /// [`Feature::TnlGso`] alone.
    pub const TNL: Features = Features(Feature::TnlGso.bit());
    /// [`Feature::TnlCsum`] alone.
    pub const TNL_CSUM: Features = Features(Feature::TnlCsum.bit());
    /// Both UDP tunnel segmentation features.
    pub const ALL_TNL: Features = Features(Feature::TnlGso.bit() | Feature::TnlCsum.bit());
    /// Every feature pvnet knows.
    pub const ALL: Features = Features((1 << Feature::ALL.len()) - 1);
    /// Any transmit checksum feature (NETIF_F_CSUM_MASK).
    pub const CSUM_MASK: Features =
        Features(Feature::Csum.bit() | Feature::Csum4.bit() | Feature::Csum6.bit());
    /// All TCP segmentation features (NETIF_F_ALL_TSO).
    pub const ALL_TSO: Features =
        Features(Feature::Tso4.bit() | Feature::Tso6.bit() | Feature::TsoEcn.bit());
    /// Every segmentation feature (NETIF_F_GSO_MASK, restricted to what pvnet knows).
    pub const GSO_MASK: Features = Features(
        Feature::Tso4.bit()
            | Feature::Tso6.bit()
            | Feature::TsoEcn.bit()
            | Feature::Uso.bit()
            | Feature::Ufo.bit()
            | Feature::TnlGso.bit()
            | Feature::TnlCsum.bit(),
    );
    /// The segmentation features a UDP tunnel super-frame's inner packet may use
    /// (tun's `PLAIN_GSO`): tunnel offload is only taken together with one of them.
    pub const PLAIN_GSO: Features =
        Features(Feature::Tso4.bit() | Feature::Tso6.bit() | Feature::Uso.bit());

    /// The set of one feature.
    pub const fn from_feature(f: Feature) -> Features {
        Features(f.bit())
    }

    /// The set as bits, one per feature at its [`Feature`] discriminant.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// `None` when `bits` has a bit no feature uses.
    pub const fn from_bits(bits: u16) -> Option<Features> {
        if bits & !Features::ALL.0 != 0 {
            None
        } else {
            Some(Features(bits))
        }
    }

    /// Features in either set.
    pub const fn union(self, other: Features) -> Features {
        Features(self.0 | other.0)
    }

    /// Features in both sets.
    pub const fn intersection(self, other: Features) -> Features {
        Features(self.0 & other.0)
    }

    /// Features of `self` not in `other`.
    pub const fn difference(self, other: Features) -> Features {
        Features(self.0 & !other.0)
    }

    /// Every feature of `other` is in `self`.
    pub const fn contains(self, other: Features) -> bool {
        self.0 & other.0 == other.0
    }

    /// `f` is in the set.
    pub const fn has(self, f: Feature) -> bool {
        self.0 & f.bit() != 0
    }

    /// At least one feature of `other` is in `self`.
    pub const fn intersects(self, other: Features) -> bool {
        self.0 & other.0 != 0
    }

    /// No feature at all.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Add every feature of `other`.
    pub fn insert(&mut self, other: Features) {
        self.0 |= other.0;
    }

    /// Remove every feature of `other`.
    pub fn remove(&mut self, other: Features) {
        self.0 &= !other.0;
    }

    /// The features in the set, in canonical order.
    pub fn iter(self) -> impl Iterator<Item = Feature> {
        Feature::ALL.into_iter().filter(move |f| self.has(*f))
    }

    /// Can a partial checksum of this L3 protocol be left to the port? The kernel's
    /// `can_checksum_protocol`: generic checksumming takes anything, the IPv4/IPv6
    /// features only their own protocol.
    pub const fn can_checksum(self, ipv6: bool) -> bool {
        self.has(Feature::Csum)
            || (!ipv6 && self.has(Feature::Csum4))
            || (ipv6 && self.has(Feature::Csum6))
    }

    /// The set with the combinations the kernel refuses removed, mirroring
    /// `netdev_fix_features` (Linux 6.x, net/core/dev.c), plus the rules `tun.c`'s
    /// `set_offload` enforces for every segmentation type. Idempotent.
    ///
    /// 1. Generic checksumming with IPv4/IPv6 checksumming: the specific ones are dropped
    ///    ("mixed HW and IP checksum settings").
    /// 2. Any TSO without scatter-gather: all of TSO is dropped ("Dropping TSO features
    ///    since no SG feature"). pvnet extends this to USO and UFO: a super-frame is one
    ///    header followed by the payload in another buffer, and a port that cannot gather
    ///    cannot take it without a copy (the pre-4.14 kernel had the same rule for UFO).
    /// 3. TSO4 without a checksum feature covering IPv4 is dropped together with TSO-ECN;
    ///    TSO6 without one covering IPv6 is dropped ("… since no CSUM feature").
    /// 4. TSO-ECN without TSO4 or TSO6 is dropped ("TSO ECN requires that TSO is present").
    /// 5. USO and UFO without generic checksumming are dropped: tun's `set_offload` takes
    ///    them only with TUN_F_CSUM, and at transmit time `harmonize_features` removes every
    ///    GSO feature whose protocol the device cannot checksum anyway.
    /// 6. UDP tunnel segmentation without generic checksumming or without a plain GSO
    ///    feature (TSO4, TSO6, USO) is dropped (tun's `set_offload`: "Tunnel offload is
    ///    allowed only if some plain offload is available, too"), and the checksummed
    ///    variant without the plain one (`TUN_F_UDP_TUNNEL_GSO_CSUM` alone is refused).
    ///
    /// Scatter-gather without checksumming is kept: Linux dropped it until 2.6
    /// ("Dropping NETIF_F_SG since no checksum feature") but no longer does, and a port
    /// that takes gathered buffers but not partial checksums is common in userspace.
    /// GRO is a receive-side feature and never depends on the others.
    pub const fn fixed(self) -> Features {
        let mut f = self;
        if f.has(Feature::Csum) {
            f = f.difference(Features::CSUM4.union(Features::CSUM6));
        }
        if f.intersects(Features::GSO_MASK) && !f.has(Feature::Sg) {
            f = f.difference(Features::GSO_MASK);
        }
        if f.has(Feature::Tso4) && !f.can_checksum(false) {
            f = f.difference(Features::TSO4.union(Features::TSO_ECN));
        }
        if f.has(Feature::Tso6) && !f.can_checksum(true) {
            f = f.difference(Features::TSO6);
        }
        if f.has(Feature::TsoEcn) && !f.intersects(Features::TSO4.union(Features::TSO6)) {
            f = f.difference(Features::TSO_ECN);
        }
        if !f.has(Feature::Csum) {
            f = f.difference(Features::USO.union(Features::UFO));
        }
        if !f.has(Feature::Csum) || !f.intersects(Features::PLAIN_GSO) {
            f = f.difference(Features::ALL_TNL);
        }
        if !f.has(Feature::TnlGso) {
            f = f.difference(Features::TNL_CSUM);
        }
        f
    }

    /// The [`tun_offload`] bits (`TUNSETOFFLOAD`) for a tap that should hand us what this
    /// set accepts: CSUM for generic checksumming, TSO4, TSO6, TSO_ECN and UFO for their
    /// features, USO4 and USO6 together for USO.
    ///
    /// The set is [`fixed`](Features::fixed) first, so the result is always a combination
    /// tun's `set_offload` accepts (every bit needs CSUM, TSO_ECN needs a TSO bit, USO4 and
    /// USO6 go together). Only generic checksumming maps to TUN_F_CSUM: a tap given CSUM
    /// hands out partial checksums of any protocol (it sets NETIF_F_HW_CSUM). Scatter-gather
    /// and GRO have no bit (a tap always gathers).
    ///
    /// The UDP tunnel bits are left out: they are only valid on a tap whose vnet header is
    /// [`tun_offload::TUNNEL_HDR_LEN`] bytes, which
    /// [`to_tun_offload_for_hdr`](Features::to_tun_offload_for_hdr) takes into account.
    pub const fn to_tun_offload(self) -> u32 {
        self.to_tun_offload_for_hdr(0)
    }

    /// [`to_tun_offload`](Features::to_tun_offload) for a tap whose vnet header is
    /// `hdr_len` bytes: with [`tun_offload::TUNNEL_HDR_LEN`] or more, the tunnel features
    /// map to `TUN_F_UDP_TUNNEL_GSO` and `TUN_F_UDP_TUNNEL_GSO_CSUM`.
    pub const fn to_tun_offload_for_hdr(self, hdr_len: usize) -> u32 {
        let f = self.fixed();
        if !f.has(Feature::Csum) {
            return 0;
        }
        let mut bits = tun_offload::CSUM;
        if f.has(Feature::Tso4) {
            bits |= tun_offload::TSO4;
        }
        if f.has(Feature::Tso6) {
            bits |= tun_offload::TSO6;
        }
        if f.has(Feature::TsoEcn) {
            bits |= tun_offload::TSO_ECN;
        }
        if f.has(Feature::Ufo) {
            bits |= tun_offload::UFO;
        }
        if f.has(Feature::Uso) {
            bits |= tun_offload::USO4 | tun_offload::USO6;
        }
        if hdr_len >= tun_offload::TUNNEL_HDR_LEN {
            if f.has(Feature::TnlGso) {
                bits |= tun_offload::UDP_TUNNEL_GSO;
            }
            if f.has(Feature::TnlCsum) {
                bits |= tun_offload::UDP_TUNNEL_GSO_CSUM;
            }
        }
        bits
    }

    /// What a tap whose `TUNSETOFFLOAD` mask is `bits` takes, as tun's `set_offload` reads
    /// the mask: nothing is enabled without CSUM, TSO_ECN counts only with a TSO bit, USO
    /// only with both USO4 and USO6, the tunnel bits only with a plain GSO one (and the
    /// checksummed tunnel bit only with the plain tunnel bit). Scatter-gather is always
    /// included: tun devices have NETIF_F_SG regardless of the mask. Unknown bits are
    /// ignored.
    pub const fn from_tun_offload(bits: u32) -> Features {
        use tun_offload::{
            CSUM, TSO4, TSO6, TSO_ECN, UDP_TUNNEL_GSO, UDP_TUNNEL_GSO_CSUM, UFO, USO4, USO6,
        };
        let mut f = Features::SG;
        if bits & CSUM == 0 {
            return f;
        }
        f = f.union(Features::CSUM);
        if bits & TSO4 != 0 {
            f = f.union(Features::TSO4);
        }
        if bits & TSO6 != 0 {
            f = f.union(Features::TSO6);
        }
        if bits & TSO_ECN != 0 && bits & (TSO4 | TSO6) != 0 {
            f = f.union(Features::TSO_ECN);
        }
        if bits & UFO != 0 {
            f = f.union(Features::UFO);
        }
        if bits & (USO4 | USO6) == USO4 | USO6 {
            f = f.union(Features::USO);
        }
        if f.intersects(Features::PLAIN_GSO) && bits & UDP_TUNNEL_GSO != 0 {
            f = f.union(Features::TNL);
            if bits & UDP_TUNNEL_GSO_CSUM != 0 {
                f = f.union(Features::TNL_CSUM);
            }
        }
        f
    }

    /// The virtio-net device feature bits that offer a VM's driver the offloads of this
    /// set in both directions, as a tap's mask does: checksum (`CSUM`, `GUEST_CSUM`), TSO,
    /// TSO-ECN, UFO and USO for what the guest sends (`HOST_*`) and what it receives
    /// (`GUEST_*`). The set is [`Features::fixed`] first, so no segmentation is offered
    /// without checksumming. UDP tunnel segmentation has no bit in vhost-user's 64-bit
    /// feature word (virtio bits 65–68), so it is never offered.
    pub const fn to_virtio_net(self) -> u64 {
        use virtio_net::*;
        let f = self.fixed();
        let mut bits = 0;
        if !f.has(Feature::Csum) {
            return bits;
        }
        bits |= CSUM | GUEST_CSUM;
        if f.has(Feature::Tso4) {
            bits |= HOST_TSO4 | GUEST_TSO4;
        }
        if f.has(Feature::Tso6) {
            bits |= HOST_TSO6 | GUEST_TSO6;
        }
        if f.has(Feature::TsoEcn) {
            bits |= HOST_ECN | GUEST_ECN;
        }
        if f.has(Feature::Ufo) {
            bits |= HOST_UFO | GUEST_UFO;
        }
        if f.has(Feature::Uso) {
            bits |= HOST_USO | GUEST_USO4 | GUEST_USO6;
        }
        bits
    }

    /// What the switch may send a VM whose driver acknowledged the virtio-net features
    /// `acked`: the `GUEST_*` bits, by the virtio spec's dependencies (every segmentation
    /// bit needs `GUEST_CSUM`, ECN needs a TSO bit, USO both `GUEST_USO4` and
    /// `GUEST_USO6`). Scatter-gather is always in: frames are copied into the guest's
    /// buffers piece by piece.
    pub const fn from_virtio_guest(acked: u64) -> Features {
        use virtio_net::*;
        Features::from_virtio_bits(
            acked,
            [GUEST_CSUM, GUEST_TSO4, GUEST_TSO6, GUEST_ECN, GUEST_UFO],
            GUEST_USO4 | GUEST_USO6,
        )
    }

    /// What a VM whose driver acknowledged `acked` may send the switch: the `HOST_*` bits
    /// (and `CSUM`), with the same dependencies as [`Features::from_virtio_guest`].
    pub const fn from_virtio_host(acked: u64) -> Features {
        use virtio_net::*;
        Features::from_virtio_bits(
            acked,
            [CSUM, HOST_TSO4, HOST_TSO6, HOST_ECN, HOST_UFO],
            HOST_USO,
        )
    }

    /// One direction of the virtio-net bits: `[csum, tso4, tso6, ecn, ufo]` and the USO
    /// bits (all of which must be there).
    const fn from_virtio_bits(acked: u64, dir: [u64; 5], uso: u64) -> Features {
        let [csum, tso4, tso6, ecn, ufo] = dir;
        let mut f = Features::SG;
        if acked & csum == 0 {
            return f;
        }
        f = f.union(Features::CSUM);
        if acked & tso4 != 0 {
            f = f.union(Features::TSO4);
        }
        if acked & tso6 != 0 {
            f = f.union(Features::TSO6);
        }
        if acked & ecn != 0 && acked & (tso4 | tso6) != 0 {
            f = f.union(Features::TSO_ECN);
        }
        if acked & ufo != 0 {
            f = f.union(Features::UFO);
        }
        if acked & uso == uso {
            f = f.union(Features::USO);
        }
        f
    }

    /// The set written with ethtool names, `+`-joined (`none` when empty).
    pub fn ethtool_string(self) -> String {
        if self.is_empty() {
            return "none".to_owned();
        }
        let mut s = String::new();
        for f in self.iter() {
            if !s.is_empty() {
                s.push('+');
            }
            s.push_str(f.ethtool_name());
        }
        s
    }

    /// Look up one name: short alias, ethtool name or extra alias (case-insensitive).
    fn lookup(name: &str) -> Option<Features> {
        if name.eq_ignore_ascii_case("none") {
            return Some(Features::NONE);
        }
        if name.eq_ignore_ascii_case("all") {
            return Some(Features::ALL);
        }
        Feature::ALL
            .iter()
            .find(|f| {
                name.eq_ignore_ascii_case(f.short_name())
                    || name.eq_ignore_ascii_case(f.ethtool_name())
            })
            .map(|f| Features::from_feature(*f))
            .or_else(|| {
                EXTRA_NAMES
                    .iter()
                    .find(|(n, _)| name.eq_ignore_ascii_case(n))
                    .map(|(_, f)| *f)
            })
    }

    /// Every accepted name, for error messages and help texts.
    pub fn valid_names() -> String {
        let mut s = String::from("none, all");
        for f in Feature::ALL {
            s.push_str(&format!(", {} ({})", f.short_name(), f.ethtool_name()));
        }
        for (n, _) in EXTRA_NAMES {
            s.push_str(", ");
            s.push_str(n);
        }
        s
    }
}

/// A feature list that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeaturesError {
    /// The list is empty, or has an empty element (`csum++sg`).
    Empty,
    /// A name no feature has.
    Unknown(String),
}

impl fmt::Display for FeaturesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeaturesError::Empty => write!(
                f,
                "empty offload feature name; valid names: {}",
                Features::valid_names()
            ),
            FeaturesError::Unknown(name) => write!(
                f,
                "unknown offload feature {name:?}; valid names: {}",
                Features::valid_names()
            ),
        }
    }
}

impl std::error::Error for FeaturesError {}

impl FromStr for Features {
    type Err = FeaturesError;

    /// Parse `name+name+…` (`,` is not a separator because port specs use it). Names are
    /// short aliases, ethtool names, `none` or `all`; the result is the union, not fixed.
    fn from_str(s: &str) -> Result<Features, FeaturesError> {
        let mut set = Features::NONE;
        for name in s.split('+') {
            let name = name.trim();
            if name.is_empty() {
                return Err(FeaturesError::Empty);
            }
            let f =
                Features::lookup(name).ok_or_else(|| FeaturesError::Unknown(name.to_owned()))?;
            set.insert(f);
        }
        Ok(set)
    }
}

impl fmt::Display for Features {
    /// Canonical form: short aliases `+`-joined in [`Feature::ALL`] order, `none` when
    /// empty. Parsing it gives the same set back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        for (i, feat) in self.iter().enumerate() {
            if i > 0 {
                f.write_str("+")?;
            }
            f.write_str(feat.short_name())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Features({self})")
    }
}

impl core::ops::BitOr for Features {
    type Output = Features;
    fn bitor(self, rhs: Features) -> Features {
        self.union(rhs)
    }
}

impl core::ops::BitAnd for Features {
    type Output = Features;
    fn bitand(self, rhs: Features) -> Features {
        self.intersection(rhs)
    }
}

impl core::ops::Sub for Features {
    type Output = Features;
    fn sub(self, rhs: Features) -> Features {
        self.difference(rhs)
    }
}

impl From<Feature> for Features {
    fn from(f: Feature) -> Features {
        Features::from_feature(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtio_net_bits_are_the_spec_s() {
        use virtio_net::*;
        // virtio 1.2 5.1.3 and linux/virtio_net.h.
        let want: [(u64, u32); 21] = [
            (CSUM, 0),
            (GUEST_CSUM, 1),
            (MTU, 3),
            (MAC, 5),
            (GUEST_TSO4, 7),
            (GUEST_TSO6, 8),
            (GUEST_ECN, 9),
            (GUEST_UFO, 10),
            (HOST_TSO4, 11),
            (HOST_TSO6, 12),
            (HOST_ECN, 13),
            (HOST_UFO, 14),
            (MRG_RXBUF, 15),
            (STATUS, 16),
            (MQ, 22),
            (RING_F_INDIRECT_DESC, 28),
            (RING_F_EVENT_IDX, 29),
            (VERSION_1, 32),
            (GUEST_USO4, 54),
            (GUEST_USO6, 55),
            (HOST_USO, 56),
        ];
        for (bit, n) in want {
            assert_eq!(bit, 1u64 << n, "bit {n}");
        }
    }

    #[test]
    fn a_port_offers_a_vm_its_offloads_both_ways() {
        use virtio_net::*;
        let all = "csum+sg+tso4+tso6+tso-ecn+ufo+uso"
            .parse::<Features>()
            .unwrap();
        let bits = all.to_virtio_net();
        assert_eq!(
            bits,
            CSUM | GUEST_CSUM
                | HOST_TSO4
                | GUEST_TSO4
                | HOST_TSO6
                | GUEST_TSO6
                | HOST_ECN
                | GUEST_ECN
                | HOST_UFO
                | GUEST_UFO
                | HOST_USO
                | GUEST_USO4
                | GUEST_USO6
        );
        assert_eq!(Features::from_virtio_guest(bits), all);
        assert_eq!(Features::from_virtio_host(bits), all);
        // Nothing without checksumming, and no tunnel bit at all.
        assert_eq!("tso4".parse::<Features>().unwrap().to_virtio_net(), 0);
        assert_eq!(
            Features::ALL_TNL.union(Features::CSUM).to_virtio_net(),
            CSUM | GUEST_CSUM
        );
    }

    #[test]
    fn what_a_guest_acks_is_what_it_gets() {
        use virtio_net::*;
        // A guest without GUEST_CSUM gets complete checksums and no super-frame, whatever
        // else it acked.
        assert_eq!(
            Features::from_virtio_guest(GUEST_TSO4 | GUEST_TSO6 | CSUM | HOST_TSO4),
            Features::SG
        );
        // Directions do not mix.
        assert_eq!(
            Features::from_virtio_guest(CSUM | HOST_TSO4 | GUEST_CSUM),
            Features::SG.union(Features::CSUM)
        );
        assert_eq!(
            Features::from_virtio_host(CSUM | HOST_TSO4 | GUEST_TSO6),
            "sg+csum+tso4".parse::<Features>().unwrap()
        );
        // ECN without a TSO bit, USO with one of the two bits: neither.
        assert_eq!(
            Features::from_virtio_guest(GUEST_CSUM | GUEST_ECN | GUEST_USO4),
            Features::SG.union(Features::CSUM)
        );
    }

    #[test]
    fn tun_offload_bits_are_if_tun_h() {
        use tun_offload::*;
        // TUN_F_CSUM 1, TSO4 2, TSO6 4, TSO_ECN 8, UFO 16, USO4 32, USO6 64,
        // UDP_TUNNEL_GSO 0x80, UDP_TUNNEL_GSO_CSUM 0x100.
        assert_eq!(
            [CSUM, TSO4, TSO6, TSO_ECN, UFO, USO4, USO6],
            [1, 2, 4, 8, 16, 32, 64]
        );
        assert_eq!([UDP_TUNNEL_GSO, UDP_TUNNEL_GSO_CSUM], [0x080, 0x100]);
        assert_eq!(ALL, 0x1ff);
    }

    #[test]
    fn tunnel_bits_need_the_long_header_and_a_plain_gso_bit() {
        use tun_offload::*;
        let tnl = Features::CSUM | Features::SG | Features::TSO4 | Features::ALL_TNL;
        assert_eq!(
            tnl.to_tun_offload(),
            CSUM | TSO4,
            "no tunnel bits for 12 bytes"
        );
        assert_eq!(tnl.to_tun_offload_for_hdr(12), CSUM | TSO4);
        assert_eq!(
            tnl.to_tun_offload_for_hdr(24),
            CSUM | TSO4 | UDP_TUNNEL_GSO | UDP_TUNNEL_GSO_CSUM
        );
        assert_eq!(Features::from_tun_offload(CSUM | TSO4 | UDP_TUNNEL), tnl);
        // No plain GSO bit, no CSUM, or the checksummed bit alone: no tunnel feature.
        assert_eq!(
            Features::from_tun_offload(CSUM | UDP_TUNNEL),
            Features::SG | Features::CSUM
        );
        assert_eq!(Features::from_tun_offload(TSO4 | UDP_TUNNEL), Features::SG);
        assert_eq!(
            Features::from_tun_offload(CSUM | TSO6 | UDP_TUNNEL_GSO_CSUM),
            Features::SG | Features::CSUM | Features::TSO6
        );
        // fixed(): the same rules on a feature set.
        assert_eq!(
            (Features::CSUM | Features::SG | Features::ALL_TNL).fixed(),
            Features::CSUM | Features::SG
        );
        assert_eq!(
            (Features::CSUM | Features::SG | Features::USO | Features::TNL_CSUM).fixed(),
            Features::CSUM | Features::SG | Features::USO
        );
    }

    #[test]
    fn tun_offload_round_trip_by_name() {
        use tun_offload::*;
        let all = Features::CSUM | Features::SG | Features::TSO4 | Features::TSO6;
        let all = all | Features::TSO_ECN | Features::UFO | Features::USO;
        assert_eq!(all.to_tun_offload(), ALL & !UDP_TUNNEL);
        assert_eq!(Features::from_tun_offload(ALL & !UDP_TUNNEL), all);
        // USO needs both halves, TSO_ECN a TSO bit, everything CSUM.
        assert_eq!(
            Features::from_tun_offload(CSUM | USO4 | TSO_ECN),
            Features::SG | Features::CSUM
        );
        assert_eq!(Features::from_tun_offload(TSO4 | TSO6), Features::SG);
    }
}
