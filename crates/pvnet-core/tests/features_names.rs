//! Feature sets: names, parsing, display, dependency rules and the tap mapping.

use pvnet_core::offload::features::{Feature, Features, FeaturesError};

fn f(s: &str) -> Features {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

#[test]
fn parse_table() {
    let cases: &[(&str, Features)] = &[
        ("none", Features::NONE),
        ("csum", Features::CSUM),
        ("CSUM", Features::CSUM),
        ("csum+sg", Features::CSUM | Features::SG),
        (" csum + sg ", Features::CSUM | Features::SG),
        (
            "csum+sg+tso4+tso6+uso",
            Features::CSUM | Features::SG | Features::TSO4 | Features::TSO6 | Features::USO,
        ),
        ("tx-checksum-ip-generic", Features::CSUM),
        (
            "tx-checksum-ipv4+tx-checksum-ipv6",
            Features::CSUM4 | Features::CSUM6,
        ),
        ("scatter-gather", Features::SG),
        ("tx-tcp-segmentation", Features::TSO4),
        ("tx-tcp6-segmentation", Features::TSO6),
        ("tx-tcp-ecn-segmentation", Features::TSO_ECN),
        ("tso-ecn", Features::TSO_ECN),
        ("tx-udp-segmentation", Features::USO),
        ("tx-udp-fragmentation", Features::UFO),
        ("ufo", Features::UFO),
        ("generic-receive-offload", Features::GRO),
        ("rx-gro", Features::GRO),
        ("gro", Features::GRO),
        ("tso", Features::TSO4 | Features::TSO6),
        ("tx-udp_tnl-segmentation", Features::TNL),
        ("tx-udp_tnl-csum-segmentation", Features::TNL_CSUM),
        ("tnl+tnl-csum", Features::ALL_TNL),
        ("all", Features::ALL),
        ("none+csum", Features::CSUM),
        ("csum+csum", Features::CSUM),
    ];
    for (s, want) in cases {
        assert_eq!(f(s), *want, "{s}");
    }
}

#[test]
fn parse_errors_list_valid_names() {
    for (s, want) in [
        ("", FeaturesError::Empty),
        ("csum++sg", FeaturesError::Empty),
        ("csum+tso9", FeaturesError::Unknown("tso9".into())),
        ("csum,sg", FeaturesError::Unknown("csum,sg".into())),
    ] {
        let err = s.parse::<Features>().expect_err(s);
        assert_eq!(err, want, "{s}");
        let msg = err.to_string();
        for name in [
            "csum", "sg", "tso4", "tso6", "tso-ecn", "uso", "ufo", "gro", "none", "all",
        ] {
            assert!(msg.contains(name), "{msg} lacks {name}");
        }
        assert!(msg.contains("tx-checksum-ip-generic"), "{msg}");
    }
}

#[test]
fn display_is_canonical_and_round_trips() {
    assert_eq!(Features::NONE.to_string(), "none");
    assert_eq!(
        f("uso+tso6+sg+csum+tso4").to_string(),
        "csum+sg+tso4+tso6+uso"
    );
    assert_eq!(
        Features::ALL.to_string(),
        "csum+csum4+csum6+sg+tso4+tso6+tso-ecn+uso+ufo+gro+tnl+tnl-csum"
    );
    for bits in 0..=Features::ALL.bits() {
        let set = Features::from_bits(bits).expect("in range");
        assert_eq!(f(&set.to_string()), set);
        assert_eq!(f(&set.ethtool_string()), set);
    }
    assert_eq!(Features::from_bits(1 << 15), None);
    assert_eq!(
        f("csum+sg").ethtool_string(),
        "tx-checksum-ip-generic+scatter-gather"
    );
    assert_eq!(format!("{:?}", f("csum")), "Features(csum)");
}

#[test]
fn every_feature_has_distinct_names() {
    let mut seen = std::collections::HashSet::new();
    for feat in Feature::ALL {
        assert!(seen.insert(feat.short_name()));
        assert!(seen.insert(feat.ethtool_name()));
        assert_eq!(f(feat.short_name()), Features::from(feat));
    }
}

/// netdev_fix_features and tun set_offload rules, one row each.
#[test]
fn fixed_table() {
    let cases: &[(&str, &str, &str)] = &[
        ("mixed HW and IP csum", "csum+csum4+csum6", "csum"),
        ("TSO without SG", "csum+tso4+tso6+tso-ecn", "csum"),
        ("USO without SG", "csum+uso", "csum"),
        ("UFO without SG", "csum+ufo", "csum"),
        ("TSO4 without csum", "sg+tso4+tso-ecn", "sg"),
        ("TSO6 without csum", "sg+tso6", "sg"),
        ("TSO4 with IPv4 csum", "csum4+sg+tso4", "csum4+sg+tso4"),
        (
            "TSO4 with IPv6 csum only",
            "csum6+sg+tso4+tso-ecn",
            "csum6+sg",
        ),
        ("TSO6 with IPv4 csum only", "csum4+sg+tso6", "csum4+sg"),
        ("TSO6 with IPv6 csum", "csum6+sg+tso6", "csum6+sg+tso6"),
        ("ECN without TSO", "csum+sg+tso-ecn", "csum+sg"),
        (
            "ECN with TSO6 only",
            "csum+sg+tso6+tso-ecn",
            "csum+sg+tso6+tso-ecn",
        ),
        (
            "USO needs generic csum",
            "csum4+csum6+sg+uso+ufo",
            "csum4+csum6+sg",
        ),
        ("SG without csum is kept", "sg", "sg"),
        ("GRO alone", "gro", "gro"),
        (
            "full set",
            "csum+sg+tso4+tso6+tso-ecn+uso+ufo+gro",
            "csum+sg+tso4+tso6+tso-ecn+uso+ufo+gro",
        ),
        (
            "all",
            "all",
            "csum+sg+tso4+tso6+tso-ecn+uso+ufo+gro+tnl+tnl-csum",
        ),
        (
            "tunnel without plain GSO",
            "csum+sg+ufo+tnl+tnl-csum",
            "csum+sg+ufo",
        ),
        ("tunnel without csum", "sg+tso4+tnl", "sg"),
        ("tunnel csum alone", "csum+sg+tso6+tnl-csum", "csum+sg+tso6"),
        ("tunnel over USO", "csum+sg+uso+tnl", "csum+sg+uso+tnl"),
        ("none", "none", "none"),
    ];
    for (what, input, want) in cases {
        assert_eq!(f(input).fixed(), f(want), "{what}");
    }
}

#[test]
fn fixed_is_idempotent_and_never_adds() {
    for bits in 0..=Features::ALL.bits() {
        let set = Features::from_bits(bits).expect("in range");
        let fx = set.fixed();
        assert_eq!(fx.fixed(), fx, "{set}");
        assert!(set.contains(fx), "{set} -> {fx}");
        if fx.intersects(Features::GSO_MASK) {
            assert!(fx.has(Feature::Sg), "{fx}");
            assert!(fx.intersects(Features::CSUM_MASK), "{fx}");
        }
    }
}

#[test]
fn tun_offload_table() {
    let cases: &[(&str, u32)] = &[
        ("none", 0),
        ("sg", 0),
        ("csum", 0x01),
        ("csum4+csum6", 0),
        ("csum+sg", 0x01),
        ("csum+sg+tso4", 0x03),
        ("csum+sg+tso4+tso6+tso-ecn", 0x0f),
        ("csum+sg+uso", 0x61),
        ("csum+sg+ufo", 0x11),
        ("csum+sg+tso4+tso6+tso-ecn+uso+ufo+gro", 0x7f),
        // The tunnel bits need the 24-byte header: not in the plain mapping.
        ("csum+sg+tso4+tnl+tnl-csum", 0x03),
        // Not fixable into tun bits: dropped, never EINVAL-provoking.
        ("csum+tso4", 0x01),
        ("sg+tso4+uso", 0),
    ];
    for (set, bits) in cases {
        assert_eq!(f(set).to_tun_offload(), *bits, "{set}");
    }
    let long: &[(&str, u32)] = &[
        ("csum+sg+tso4+tnl", 0x83),
        ("csum+sg+tso4+tnl+tnl-csum", 0x183),
        ("csum+sg+uso+tnl-csum", 0x61),
        ("csum+sg+ufo+tnl", 0x11),
        ("all", 0x1ff),
    ];
    for (set, bits) in long {
        assert_eq!(f(set).to_tun_offload_for_hdr(24), *bits, "{set}");
        assert_eq!(
            f(set).to_tun_offload_for_hdr(12),
            bits & !0x180,
            "{set} with a 12-byte header"
        );
    }
}

#[test]
fn from_tun_offload_table() {
    let cases: &[(u32, &str)] = &[
        (0, "sg"),
        (0x02, "sg"), // no CSUM: tun refuses, nothing is on
        (0x01, "csum+sg"),
        (0x03, "csum+sg+tso4"),
        (0x09, "csum+sg"), // ECN without TSO
        (0x0d, "csum+sg+tso6+tso-ecn"),
        (0x21, "csum+sg"), // USO4 alone
        (0x61, "csum+sg+uso"),
        (0x11, "csum+sg+ufo"),
        (0x7f, "csum+sg+tso4+tso6+tso-ecn+uso+ufo"),
        (0xff, "csum+sg+tso4+tso6+tso-ecn+uso+ufo+tnl"),
        (0x1ff, "csum+sg+tso4+tso6+tso-ecn+uso+ufo+tnl+tnl-csum"),
        (0x181, "csum+sg"),      // tunnel without a plain GSO bit
        (0x103, "csum+sg+tso4"), // the checksummed tunnel bit alone
    ];
    for (bits, set) in cases {
        assert_eq!(Features::from_tun_offload(*bits), f(set), "{bits:#x}");
    }
    // Round trip through the tap bits for every fixed set with SG and without GRO.
    for bits in 0..=Features::ALL.bits() {
        let set = Features::from_bits(bits).expect("in range").fixed();
        for hdr in [12, 24] {
            let tun = set.to_tun_offload_for_hdr(hdr);
            let back = Features::from_tun_offload(tun);
            assert_eq!(back.to_tun_offload_for_hdr(hdr), tun, "{set}");
        }
    }
}

#[test]
fn set_operations() {
    let a = f("csum+sg");
    let b = f("sg+tso4");
    assert_eq!(a | b, f("csum+sg+tso4"));
    assert_eq!(a & b, f("sg"));
    assert_eq!(a - b, f("csum"));
    assert!(a.contains(Features::SG));
    assert!(!a.contains(b));
    assert!(a.intersects(b));
    let mut c = a;
    c.insert(Features::GRO);
    c.remove(Features::CSUM);
    assert_eq!(c, f("sg+gro"));
    assert_eq!(
        c.iter().collect::<Vec<_>>(),
        vec![Feature::Sg, Feature::Gro]
    );
    assert!(f("csum").can_checksum(true) && f("csum").can_checksum(false));
    assert!(f("csum4").can_checksum(false) && !f("csum4").can_checksum(true));
    assert!(!f("csum6").can_checksum(false) && f("csum6").can_checksum(true));
}
