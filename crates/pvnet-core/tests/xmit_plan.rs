//! validate_xmit_skb as a table: packet kind × offload state × destination features.

use pvnet_core::frame::{CsumState, Gso, GsoKind, OffloadMeta};
use pvnet_core::offload::features::Features;
use pvnet_core::offload::xmit::{gso_feature, xmit_action_limited, CsumMode, GsoLimits, XmitPlan};
use pvnet_core::vnet::Validated;
use pvnet_core::wire::{Layers, L3, L4};

const PAYLOAD: usize = 4000;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    V4Tcp,
    V6Tcp,
    V6ExtTcp,
    V4Udp,
    V6Udp,
    V4Frag,
    Arp,
    V4Icmp,
}
use Kind::*;

fn layers(kind: Kind) -> Layers {
    let (l3, l3_len, l4, l4_len, fragment) = match kind {
        V4Tcp => (Some(L3::Ipv4), 20, Some(L4::Tcp), 20, false),
        V6Tcp => (Some(L3::Ipv6), 40, Some(L4::Tcp), 20, false),
        V6ExtTcp => (Some(L3::Ipv6), 48, Some(L4::Tcp), 20, false),
        V4Udp => (Some(L3::Ipv4), 20, Some(L4::Udp), 8, false),
        V6Udp => (Some(L3::Ipv6), 40, Some(L4::Udp), 8, false),
        V4Frag => (Some(L3::Ipv4), 20, None, 0, true),
        Arp => (None, 0, None, 0, false),
        V4Icmp => (Some(L3::Ipv4), 20, Some(L4::Other(1)), 0, false),
    };
    let l4_offset = 14 + l3_len;
    Layers {
        l2_len: 14,
        vlans: 0,
        ethertype: if l3 == Some(L3::Ipv6) { 0x86dd } else { 0x0800 },
        l3,
        l3_offset: 14,
        l3_len,
        ip_end: l4_offset + l4_len + PAYLOAD,
        pseudo_dst_offset: 30,
        fragment,
        l4,
        l4_offset,
        l4_len,
        payload_offset: l4_offset + l4_len,
    }
}

#[derive(Clone, Copy, Debug)]
enum M {
    Plain,
    Valid,
    PartTcp,
    PartUdp,
    PartOdd,
    Gso(GsoKind, bool),
    GsoNoCsum(GsoKind),
}
use M::*;

fn meta(kind: Kind, m: M) -> OffloadMeta {
    let l = layers(kind);
    let start = l.l4_offset as u16;
    let part = |offset| CsumState::Partial { start, offset };
    let gso = |kind, ecn| {
        Some(Gso {
            kind,
            size: 1448,
            ecn,
            tunnel: None,
        })
    };
    let tcp_or_udp = if l.l4 == Some(L4::Udp) { 6 } else { 16 };
    match m {
        Plain => OffloadMeta::default(),
        Valid => OffloadMeta {
            csum: CsumState::Unnecessary,
            gso: None,
        },
        PartTcp => OffloadMeta {
            csum: part(16),
            gso: None,
        },
        PartUdp => OffloadMeta {
            csum: part(6),
            gso: None,
        },
        PartOdd => OffloadMeta {
            csum: part(2),
            gso: None,
        },
        Gso(k, ecn) => OffloadMeta {
            csum: part(tcp_or_udp),
            gso: gso(k, ecn),
        },
        GsoNoCsum(k) => OffloadMeta {
            csum: CsumState::None,
            gso: gso(k, false),
        },
    }
}

fn f(s: &str) -> Features {
    s.parse().expect("feature list")
}

const PASS: XmitPlan = XmitPlan::PASS;
const COMPLETE: XmitPlan = XmitPlan {
    segment: None,
    complete_csum: true,
    linearize: false,
};
const LIN: XmitPlan = XmitPlan {
    segment: None,
    complete_csum: false,
    linearize: true,
};
const LIN_COMPLETE: XmitPlan = XmitPlan {
    segment: None,
    complete_csum: true,
    linearize: true,
};
const SEG_PARTIAL: XmitPlan = XmitPlan {
    segment: Some(CsumMode::Partial),
    complete_csum: false,
    linearize: false,
};
const SEG_FULL: XmitPlan = XmitPlan {
    segment: Some(CsumMode::Full),
    complete_csum: true,
    linearize: false,
};
const SEG_FULL_LIN: XmitPlan = XmitPlan {
    segment: Some(CsumMode::Full),
    complete_csum: true,
    linearize: true,
};

/// (what / kernel rule, kind, meta, linear, dst, expected)
type Row = (&'static str, Kind, M, bool, &'static str, XmitPlan);

#[test]
fn non_gso_table() {
    let rows: &[Row] = &[
        // skb_csum_hwoffload_help
        ("plain to nothing", V4Tcp, Plain, true, "none", PASS),
        ("validated to nothing", V4Tcp, Valid, true, "none", PASS),
        (
            "partial to generic csum",
            V4Tcp,
            PartTcp,
            true,
            "csum",
            PASS,
        ),
        ("partial to no csum", V4Tcp, PartTcp, true, "sg", COMPLETE),
        ("partial to nothing", V6Udp, PartUdp, true, "none", COMPLETE),
        ("v4 partial to csum4", V4Tcp, PartTcp, true, "csum4", PASS),
        (
            "v4 udp partial to csum4",
            V4Udp,
            PartUdp,
            true,
            "csum4",
            PASS,
        ),
        (
            "v4 partial to csum6 (harmonize)",
            V4Tcp,
            PartTcp,
            true,
            "csum6",
            COMPLETE,
        ),
        ("v6 partial to csum6", V6Tcp, PartTcp, true, "csum6", PASS),
        (
            "v6 partial to csum4 (harmonize)",
            V6Tcp,
            PartTcp,
            true,
            "csum4",
            COMPLETE,
        ),
        (
            "v6 ext hdrs to csum6",
            V6ExtTcp,
            PartTcp,
            true,
            "csum6",
            COMPLETE,
        ),
        (
            "v6 ext hdrs to generic",
            V6ExtTcp,
            PartTcp,
            true,
            "csum",
            PASS,
        ),
        (
            "odd csum_offset to csum4",
            V4Tcp,
            PartOdd,
            true,
            "csum4",
            COMPLETE,
        ),
        (
            "odd csum_offset to generic",
            V4Tcp,
            PartOdd,
            true,
            "csum",
            PASS,
        ),
        (
            "icmp partial to generic",
            V4Icmp,
            PartOdd,
            true,
            "csum",
            PASS,
        ),
        (
            "non-IP partial to generic",
            Arp,
            PartOdd,
            true,
            "csum",
            PASS,
        ),
        (
            "non-IP partial to csum4",
            Arp,
            PartOdd,
            true,
            "csum4+csum6",
            COMPLETE,
        ),
        // skb_needs_linearize
        ("fragmented to sg", V4Tcp, Plain, false, "sg", PASS),
        ("fragmented to no sg", V4Tcp, Plain, false, "csum", LIN),
        ("fragmented arp to nothing", Arp, Plain, false, "none", LIN),
        ("linear to no sg", V4Tcp, Plain, true, "none", PASS),
        (
            "fragmented partial to nothing",
            V4Tcp,
            PartTcp,
            false,
            "none",
            LIN_COMPLETE,
        ),
        (
            "fragmented partial to sg",
            V4Tcp,
            PartTcp,
            false,
            "sg",
            COMPLETE,
        ),
        (
            "fragmented partial to all",
            V4Tcp,
            PartTcp,
            false,
            "all",
            PASS,
        ),
        ("ip fragment, not gso", V4Frag, Plain, false, "sg", PASS),
    ];
    run(rows);
}

#[test]
fn gso_table() {
    use GsoKind::*;
    let rows: &[Row] = &[
        // net_gso_ok: matching feature → pass through
        (
            "tso4 to tso4",
            V4Tcp,
            Gso(Tcpv4, false),
            true,
            "csum+sg+tso4",
            PASS,
        ),
        (
            "tso4 fragmented to tso4",
            V4Tcp,
            Gso(Tcpv4, false),
            false,
            "csum+sg+tso4",
            PASS,
        ),
        (
            "tso6 to tso6",
            V6Tcp,
            Gso(Tcpv6, false),
            true,
            "csum+sg+tso6",
            PASS,
        ),
        (
            "uso v4 to uso",
            V4Udp,
            Gso(UdpL4, false),
            true,
            "csum+sg+uso",
            PASS,
        ),
        (
            "uso v6 to uso",
            V6Udp,
            Gso(UdpL4, false),
            true,
            "csum+sg+uso",
            PASS,
        ),
        (
            "ufo to ufo",
            V4Udp,
            Gso(Ufo, false),
            true,
            "csum+sg+ufo",
            PASS,
        ),
        ("tso4 to all", V4Tcp, Gso(Tcpv4, false), false, "all", PASS),
        (
            "tso4 via csum4",
            V4Tcp,
            Gso(Tcpv4, false),
            true,
            "csum4+sg+tso4",
            PASS,
        ),
        (
            "tso6 via csum6",
            V6Tcp,
            Gso(Tcpv6, false),
            true,
            "csum6+sg+tso6",
            PASS,
        ),
        // wrong type → segment, partial when the destination checksums
        (
            "tso4 to tso6 only",
            V4Tcp,
            Gso(Tcpv4, false),
            true,
            "csum+sg+tso6",
            SEG_PARTIAL,
        ),
        (
            "tso6 to tso4 only",
            V6Tcp,
            Gso(Tcpv6, false),
            true,
            "csum+sg+tso4",
            SEG_PARTIAL,
        ),
        (
            "uso to tso",
            V4Udp,
            Gso(UdpL4, false),
            true,
            "csum+sg+tso4+tso6",
            SEG_PARTIAL,
        ),
        (
            "tso4 to csum+sg",
            V4Tcp,
            Gso(Tcpv4, false),
            true,
            "csum+sg",
            SEG_PARTIAL,
        ),
        // ECN needs tso-ecn
        (
            "ecn to tso4",
            V4Tcp,
            Gso(Tcpv4, true),
            true,
            "csum+sg+tso4",
            SEG_PARTIAL,
        ),
        (
            "ecn to tso4+ecn",
            V4Tcp,
            Gso(Tcpv4, true),
            true,
            "csum+sg+tso4+tso-ecn",
            PASS,
        ),
        (
            "ecn v6 to tso6+ecn",
            V6Tcp,
            Gso(Tcpv6, true),
            true,
            "csum+sg+tso6+tso-ecn",
            PASS,
        ),
        // netdev_fix_features: TSO without SG does not count; segments then need copying
        (
            "tso4 to tso4 w/o sg",
            V4Tcp,
            Gso(Tcpv4, false),
            true,
            "csum+tso4",
            XmitPlan {
                segment: Some(CsumMode::Partial),
                complete_csum: false,
                linearize: true,
            },
        ),
        // … and TSO without csum does not count either
        (
            "tso4 to sg+tso4",
            V4Tcp,
            Gso(Tcpv4, false),
            true,
            "sg+tso4",
            SEG_FULL,
        ),
        (
            "tso4 to nothing",
            V4Tcp,
            Gso(Tcpv4, false),
            true,
            "none",
            SEG_FULL_LIN,
        ),
        (
            "uso to nothing",
            V6Udp,
            Gso(UdpL4, false),
            false,
            "none",
            SEG_FULL_LIN,
        ),
        ("uso to sg", V6Udp, Gso(UdpL4, false), false, "sg", SEG_FULL),
        // harmonize_features: protocol the destination cannot checksum drops its GSO too
        (
            "tso6 to csum4+tso6",
            V6Tcp,
            Gso(Tcpv6, false),
            true,
            "csum4+sg+tso6",
            SEG_FULL,
        ),
        (
            "tso4 to csum6+tso4",
            V4Tcp,
            Gso(Tcpv4, false),
            true,
            "csum6+sg+tso4",
            SEG_FULL,
        ),
        (
            "uso v4 to csum4 (no generic)",
            V4Udp,
            Gso(UdpL4, false),
            true,
            "csum4+sg+uso",
            SEG_PARTIAL,
        ),
        (
            "tso6 ext hdrs to csum6",
            V6ExtTcp,
            Gso(Tcpv6, false),
            true,
            "csum6+sg",
            SEG_FULL,
        ),
        (
            "tso6 ext hdrs to generic",
            V6ExtTcp,
            Gso(Tcpv6, false),
            true,
            "csum+sg",
            SEG_PARTIAL,
        ),
        // UFO fragments always carry full checksums
        (
            "ufo to csum+sg",
            V4Udp,
            Gso(Ufo, false),
            true,
            "csum+sg",
            SEG_FULL,
        ),
        (
            "ufo v6 to uso",
            V6Udp,
            Gso(Ufo, false),
            true,
            "csum+sg+uso",
            SEG_FULL,
        ),
        // netif_needs_gso: unknown checksum state is never passed as a super-frame
        (
            "gso with csum none",
            V4Tcp,
            GsoNoCsum(Tcpv4),
            true,
            "all",
            SEG_PARTIAL,
        ),
        (
            "gso with csum none to sg",
            V4Tcp,
            GsoNoCsum(Tcpv4),
            true,
            "sg",
            SEG_FULL,
        ),
    ];
    run(rows);
}

#[test]
fn gso_validated_is_passed() {
    let mut m = meta(V4Tcp, Gso(GsoKind::Tcpv4, false));
    m.csum = CsumState::Unnecessary;
    let plan = xmit_action(&m, &layers(V4Tcp), true, f("csum+sg+tso4"));
    assert!(plan.is_pass());
}

/// The plan of a frame described by hand (see `Validated::assume_valid`).
fn xmit_action(m: &OffloadMeta, l: &Layers, linear: bool, dst: Features) -> XmitPlan {
    pvnet_core::offload::xmit::xmit_action(&Validated::assume_valid(*l, *m), linear, dst)
}

/// Whether `vnet::validate` lets a super-frame of GSO type `g` be a packet of `kind`.
fn gso_fits(g: GsoKind, kind: Kind) -> bool {
    matches!(
        (g, kind),
        (GsoKind::Tcpv4, V4Tcp)
            | (GsoKind::Tcpv6, V6Tcp | V6ExtTcp)
            | (GsoKind::UdpL4 | GsoKind::Ufo, V4Udp | V6Udp)
    )
}

fn run(rows: &[Row]) {
    for (what, kind, m, linear, dst, want) in rows {
        let got = xmit_action(&meta(*kind, *m), &layers(*kind), *linear, f(dst));
        assert_eq!(
            got, *want,
            "{what}: {kind:?} {m:?} linear={linear} dst={dst}"
        );
        // Invariant: full-checksum segmentation always says so in complete_csum.
        if got.segment == Some(CsumMode::Full) {
            assert!(got.complete_csum, "{what}");
        }
    }
}

// A GSO type that does not match the packet, gso_size 0, a super-frame that is a
// fragment and ECN on UDP never reach the plan: vnet::validate refuses them (see
// tests/vnet_validate.rs: EcnWithoutTcp, GsoSizeZero, GsoNotIp, GsoOnFragment,
// GsoProtoMismatch), and the plan takes only a Validated.

/// gso_features_check: gso_max_segs and gso_max_size.
#[test]
fn gso_limits() {
    let m = meta(V4Tcp, Gso(GsoKind::Tcpv4, false));
    let l = layers(V4Tcp);
    let dst = f("csum+sg+tso4");
    let segs = PAYLOAD.div_ceil(1448) as u32; // 3
    let lim = |max_size, max_segs| GsoLimits { max_size, max_segs };
    let cases = [
        (lim(65_536, segs), PASS),
        (lim(65_536, segs - 1), SEG_PARTIAL),
        (lim(l.ip_end as u32, 64), PASS),
        (lim(l.ip_end as u32 - 1, 64), SEG_PARTIAL),
    ];
    for (limits, want) in cases {
        assert_eq!(
            xmit_action_limited(&Validated::assume_valid(l, m), true, dst, limits),
            want,
            "{limits:?}"
        );
    }
}

/// Every combination of destination features: the plan is consistent with the features.
#[test]
fn exhaustive_consistency() {
    let kinds = [V4Tcp, V6Tcp, V6ExtTcp, V4Udp, V6Udp];
    let metas = [
        Plain,
        Valid,
        PartTcp,
        Gso(GsoKind::Tcpv4, false),
        Gso(GsoKind::Tcpv4, true),
        Gso(GsoKind::Tcpv6, false),
        Gso(GsoKind::UdpL4, false),
        Gso(GsoKind::Ufo, false),
    ];
    for bits in 0..=Features::ALL.bits() {
        let dst = Features::from_bits(bits).expect("in range");
        let eff = dst.fixed();
        for kind in kinds {
            for m in metas {
                for linear in [true, false] {
                    let md = meta(kind, m);
                    if md.gso.is_some_and(|g| !gso_fits(g.kind, kind)) {
                        // validate() refuses these; the plan never sees them.
                        continue;
                    }
                    let plan = xmit_action(&md, &layers(kind), linear, dst);
                    if let (Some(g), None) = (md.gso, plan.segment) {
                        // Passed through: the destination really has the type (and SG).
                        assert!(eff.has(gso_feature(g.kind)), "{dst} {kind:?} {m:?}");
                        assert!(eff.has(pvnet_core::offload::features::Feature::Sg));
                        assert!(!plan.complete_csum && !plan.linearize);
                    }
                    if plan.linearize {
                        assert!(!eff.has(pvnet_core::offload::features::Feature::Sg));
                    }
                    if linear && md.gso.is_none() && !matches!(md.csum, CsumState::Partial { .. }) {
                        // Asks for nothing and needs no gathering: nothing to do, whatever
                        // the destination (the plan's shortcut for small frames).
                        assert!(plan.is_pass(), "{dst} {kind:?} {m:?}");
                    }
                    if md.gso.is_none() && matches!(md.csum, CsumState::Partial { .. }) {
                        assert_eq!(
                            plan.complete_csum,
                            !eff.can_checksum(layers(kind).l3 == Some(L3::Ipv6))
                                || (kind == V6ExtTcp
                                    && !eff.has(pvnet_core::offload::features::Feature::Csum)),
                            "{dst} {kind:?} {m:?}"
                        );
                    }
                }
            }
        }
    }
}

/// UDP tunnel super-frames: passed through only to a port with the inner type's feature
/// and the tunnel feature of the outer checksum variant, else segmented, with partial
/// inner checksums only for generic checksumming.
#[test]
fn tunnel_table() {
    use pvnet_core::offload::gso::fuzz::TunnelSpec;
    use pvnet_core::offload::xmit::gso_features;
    use pvnet_core::vnet::validate;
    use pvnet_core::wire::Start;

    let partial = XmitPlan {
        segment: Some(CsumMode::Partial),
        complete_csum: false,
        linearize: false,
    };
    let full = XmitPlan {
        segment: Some(CsumMode::Full),
        complete_csum: true,
        linearize: false,
    };
    // (inner TCP, outer checksum, destination, plan)
    let rows: &[(bool, bool, &str, XmitPlan)] = &[
        (true, false, "csum+sg+tso4+tnl", XmitPlan::PASS),
        (true, true, "csum+sg+tso4+tnl", partial),
        (true, true, "csum+sg+tso4+tnl+tnl-csum", XmitPlan::PASS),
        (true, false, "csum+sg+tso4+tnl+tnl-csum", XmitPlan::PASS),
        (true, false, "csum+sg+tso6+tnl", partial),
        (true, false, "csum+sg+tso4+tso6+uso", partial),
        (true, false, "csum4+csum6+sg+tso4", full),
        (true, true, "sg", full),
        (
            true,
            false,
            "none",
            XmitPlan {
                linearize: true,
                ..full
            },
        ),
        (false, false, "csum+sg+uso+tnl", XmitPlan::PASS),
        (false, true, "csum+sg+uso+tnl+tnl-csum", XmitPlan::PASS),
        (false, false, "csum+sg+tso4+tnl", partial),
    ];
    for &(tcp, csum, dst, want) in rows {
        let spec = TunnelSpec {
            outer_v6: false,
            inner_v6: false,
            geneve: None,
            inner_vlan: false,
            tcp_opts: tcp.then_some(0),
            csum,
            payload: 6000,
            gso_size: 1398,
            seed: 7,
        };
        let (frame, hdr) = spec.build();
        let v = validate(&hdr, &frame, Start::Ethernet).expect("valid");
        let gso = v.meta().gso.expect("a super-frame");
        let need = gso_features(&gso);
        assert!(need.intersects(Features::ALL_TNL), "{need}");
        assert_eq!(
            pvnet_core::offload::xmit::xmit_action(&v, true, f(dst)),
            want,
            "tcp={tcp} csum={csum} to {dst}"
        );
    }
}

/// A destination that refused a super-frame loses the feature `refused_feature` names:
/// the next plan for that super-frame segments, and a plain TSO super-frame still
/// passes when only a tunnel variant was refused.
#[test]
fn refused_feature_makes_the_next_plan_segment() {
    use pvnet_core::offload::gso::fuzz::TunnelSpec;
    use pvnet_core::offload::xmit::{gso_features, refused_feature, xmit_action};
    use pvnet_core::vnet::validate;
    use pvnet_core::wire::Start;

    let all = f("csum+sg+tso4+tso6+tso-ecn+uso+tnl+tnl-csum");
    let plain = Validated::assume_valid(layers(V4Tcp), meta(V4Tcp, Gso(GsoKind::Tcpv4, false)));
    for (tcp, csum) in [(true, false), (true, true), (false, false), (false, true)] {
        let spec = TunnelSpec {
            outer_v6: false,
            inner_v6: false,
            geneve: None,
            inner_vlan: false,
            tcp_opts: tcp.then_some(0),
            csum,
            payload: 6000,
            gso_size: 1398,
            seed: 11,
        };
        let (frame, hdr) = spec.build();
        let v = validate(&hdr, &frame, Start::Ethernet).expect("valid");
        let gso = v.meta().gso.expect("a super-frame");
        assert!(xmit_action(&v, true, all).is_pass());
        let off = refused_feature(&gso);
        assert!(gso_features(&gso).contains(off), "{off}");
        let left = all.difference(off);
        let plan = xmit_action(&v, true, left);
        assert!(plan.segment.is_some(), "tcp={tcp} csum={csum}: {plan:?}");
        assert!(xmit_action(&plain, true, left).is_pass(), "{left}");
    }
    let g = pvnet_core::frame::Gso::plain(GsoKind::Tcpv4, 1448, false);
    assert_eq!(refused_feature(&g), Features::TSO4);
    assert!(!xmit_action(&plain, true, all.difference(refused_feature(&g))).is_pass());
}
