//! Port spec strings: every form, defaults, round trips and error messages.

use std::path::PathBuf;

use pvnet_core::offload::features::Features;
use pvnet_core::overlay::{Encap, Vni};
use pvnet_linux::portspec::{PcapMode, PortKind, PortSpec};

fn overlay(
    encap: Encap,
    local: &str,
    remotes: &[&str],
    vni: u32,
    dstport: u16,
    mtu: u16,
) -> PortKind {
    PortKind::Overlay {
        encap,
        local: local.parse().expect("local"),
        remotes: remotes.iter().map(|r| r.parse().expect("remote")).collect(),
        vni: Vni::new(vni).expect("vni"),
        dstport,
        mtu,
        queues: 1,
    }
}

fn f(s: &str) -> Features {
    s.parse().expect("features")
}

#[test]
fn parses_every_form() {
    let tap = |name: &str, tun, queues| PortKind::Tap {
        name: name.into(),
        tun,
        queues,
    };
    let cases: Vec<(&str, PortSpec)> = vec![
        (
            "tap:tap0,netns=blue,offload=csum+sg+tso4+tso6+uso,queues=2,vlan=10",
            PortSpec {
                kind: tap("tap0", false, 2),
                netns: Some("blue".into()),
                offload: Some(f("csum+sg+tso4+tso6+uso")),
                vlan: Some(10),
            },
        ),
        (
            "tap:tap1",
            PortSpec {
                kind: tap("tap1", false, 1),
                netns: None,
                offload: None,
                vlan: None,
            },
        ),
        (
            "tun:tun0,offload=none",
            PortSpec {
                kind: tap("tun0", true, 1),
                netns: None,
                offload: Some(Features::NONE),
                vlan: None,
            },
        ),
        (
            "packet:veth0,netns=red,offload=all",
            PortSpec {
                kind: PortKind::Packet {
                    ifname: "veth0".into(),
                },
                netns: Some("red".into()),
                offload: Some(Features::ALL),
                vlan: None,
            },
        ),
        (
            "pcap:/tmp/out.pcapng",
            PortSpec {
                kind: PortKind::Pcap {
                    path: PathBuf::from("/tmp/out.pcapng"),
                    mode: PcapMode::Write,
                },
                netns: None,
                offload: None,
                vlan: None,
            },
        ),
        (
            "vxlan:10.0.0.1,remote=10.0.0.2+10.0.0.3,vni=42,netns=h1",
            PortSpec {
                kind: overlay(
                    Encap::Vxlan,
                    "10.0.0.1",
                    &["10.0.0.2", "10.0.0.3"],
                    42,
                    4789,
                    1500,
                ),
                netns: Some("h1".into()),
                offload: None,
                vlan: None,
            },
        ),
        (
            "geneve:fd00::1,remote=fd00::2,dstport=7000,mtu=9000,offload=none,vlan=5",
            PortSpec {
                kind: overlay(Encap::Geneve, "fd00::1", &["fd00::2"], 1, 7000, 9000),
                netns: None,
                offload: Some(Features::NONE),
                vlan: Some(5),
            },
        ),
        (
            "vxlan:10.0.0.1,remote=10.0.0.2,queues=4",
            PortSpec {
                kind: PortKind::Overlay {
                    encap: Encap::Vxlan,
                    local: "10.0.0.1".parse().expect("local"),
                    remotes: vec!["10.0.0.2".parse().expect("remote")],
                    vni: Vni::new(1).expect("vni"),
                    dstport: 4789,
                    mtu: 1500,
                    queues: 4,
                },
                netns: None,
                offload: None,
                vlan: None,
            },
        ),
        (
            "geneve:10.1.1.1,remote=10.1.1.2",
            PortSpec {
                kind: overlay(Encap::Geneve, "10.1.1.1", &["10.1.1.2"], 1, 6081, 1500),
                netns: None,
                offload: None,
                vlan: None,
            },
        ),
        (
            "vhost-user:/run/pvnet/vm1.sock",
            PortSpec {
                kind: PortKind::VhostUser {
                    path: PathBuf::from("/run/pvnet/vm1.sock"),
                    client: false,
                    queues: 1,
                    mac: None,
                    mtu: None,
                    poll: false,
                },
                netns: None,
                offload: None,
                vlan: None,
            },
        ),
        (
            "vhost-user:vm2.sock,queues=4,client,offload=csum+tso4,mac=52:54:00:AB:cd:01,mtu=9000,poll=on,vlan=7",
            PortSpec {
                kind: PortKind::VhostUser {
                    path: PathBuf::from("vm2.sock"),
                    client: true,
                    queues: 4,
                    mac: Some([0x52, 0x54, 0, 0xab, 0xcd, 1]),
                    mtu: Some(9000),
                    poll: true,
                },
                netns: None,
                offload: Some(f("csum+tso4")),
                vlan: Some(7),
            },
        ),
        (
            "pcap:in.pcap,mode=replay",
            PortSpec {
                kind: PortKind::Pcap {
                    path: PathBuf::from("in.pcap"),
                    mode: PcapMode::Replay,
                },
                netns: None,
                offload: None,
                vlan: None,
            },
        ),
    ];
    for (s, want) in cases {
        let got: PortSpec = s.parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, want, "{s}");
        let again: PortSpec = got.to_string().parse().expect("display parses");
        assert_eq!(again, got, "{s} -> {got}");
    }
    let canon: PortSpec = "tap:t,vlan=3,offload=uso+csum+sg".parse().expect("spec");
    let canon_overlay: PortSpec = "vxlan:10.0.0.1,dstport=4789,vni=1,remote=10.0.0.2"
        .parse()
        .expect("spec");
    assert_eq!(canon_overlay.to_string(), "vxlan:10.0.0.1,remote=10.0.0.2");
    assert_eq!(canon_overlay.name(), "vxlan:10.0.0.1");
    assert_eq!(canon.to_string(), "tap:t,offload=csum+sg+uso,vlan=3");
    assert_eq!(canon.name(), "t");
}

#[test]
fn errors_name_the_problem_and_the_valid_choices() {
    let cases: &[(&str, &[&str])] = &[
        ("tap0", &["KIND:NAME", "tap, packet, vxlan, geneve"]),
        (
            "vhost:x",
            &[
                "unknown port kind \"vhost\"",
                "valid kinds: tap, packet, vxlan, geneve",
            ],
        ),
        ("tap:", &["missing interface name"]),
        ("tap:abcdefghijklmnopq", &["longer than 15"]),
        ("tap:a/b", &["'/'"]),
        (
            "tap:t,colour=red",
            &["unknown key \"colour\"", "netns, offload, queues, vlan"],
        ),
        (
            "packet:e,queues=2",
            &["unknown key \"queues\"", "netns, offload, vlan"],
        ),
        ("pcap:f,netns=x", &["unknown key \"netns\"", "mode"]),
        (
            "tap:t,vlan",
            &["expected key=value", "netns, offload, queues, vlan"],
        ),
        ("tap:t,vlan=0", &["bad value \"0\" for vlan", "1..=4094"]),
        ("tap:t,vlan=4095", &["bad value \"4095\" for vlan"]),
        ("tap:t,vlan=ten", &["bad value \"ten\" for vlan"]),
        ("tap:t,queues=0", &["bad value \"0\" for queues"]),
        (
            "tap:t,offload=csum+turbo",
            &[
                "bad value \"csum+turbo\" for offload",
                "unknown offload feature \"turbo\"",
                "tso4",
            ],
        ),
        ("tap:t,netns=../x", &["bad value \"../x\" for netns"]),
        ("tap:t,vlan=1,vlan=2", &["given twice"]),
        (
            "pcap:f,mode=read",
            &["bad value \"read\" for mode", "write or replay"],
        ),
        ("pcap:", &["missing pcap file path"]),
        ("vxlan:10.0.0.1", &["needs remote=IP"]),
        (
            "vxlan:host1,remote=10.0.0.2",
            &["\"host1\" is not an IP address"],
        ),
        (
            "vxlan:10.0.0.1,remote=10.0.0.2+fd00::2",
            &["different IP versions"],
        ),
        (
            "geneve:10.0.0.1,remote=10.0.0.2+bogus",
            &["bad value \"10.0.0.2+bogus\" for remote"],
        ),
        (
            "vxlan:10.0.0.1,remote=10.0.0.2+10.0.0.2",
            &["remote 10.0.0.2 given twice"],
        ),
        (
            "vxlan:10.0.0.1,remote=10.0.0.2,vni=16777216",
            &["0..=16777215"],
        ),
        ("vxlan:10.0.0.1,remote=10.0.0.2,dstport=0", &["1..=65535"]),
        ("vxlan:10.0.0.1,remote=10.0.0.2,mtu=100", &["at least 576"]),
        (
            "vxlan:10.0.0.1,remote=10.0.0.2,mode=replay",
            &["unknown key \"mode\"", "remote, vni, dstport"],
        ),
        (
            "geneve:10.0.0.1,remote=10.0.0.2,queues=0",
            &["a queue count in 1..=256"],
        ),
        ("vhost-user:", &["missing vhost-user socket path"]),
        (
            "vhost-user:a.sock,netns=red",
            &[
                "unknown key \"netns\"",
                "queues, client, offload, mac, mtu, poll, vlan",
            ],
        ),
        ("vhost-user:a.sock,client=yes", &["client takes no value"]),
        ("vhost-user:a.sock,client,client", &["given twice"]),
        (
            "vhost-user:a.sock,mac=52:54:00:12:34",
            &["a MAC address like"],
        ),
        ("vhost-user:a.sock,mac=01:00:5e:00:00:01", &["unicast"]),
        ("vhost-user:a.sock,mtu=20", &["68..=65535"]),
        ("vhost-user:a.sock,poll=yes", &["on or off"]),
    ];
    for (s, needles) in cases {
        let err = s.parse::<PortSpec>().expect_err(s).to_string();
        assert!(err.contains(&format!("{s:?}")), "{err}");
        for n in *needles {
            assert!(err.contains(n), "{s}: {err:?} lacks {n:?}");
        }
    }
}

#[test]
fn kinds_the_switch_refuses_are_not_offered_as_valid() {
    // tun: and pcap: parse (the switch names why it refuses them when opening), but an
    // unknown kind's error must not send the user to them.
    for s in ["vhost:x", "tap0"] {
        let err = s.parse::<PortSpec>().expect_err(s).to_string();
        for refused in ["tun", "pcap"] {
            assert!(!err.contains(refused), "{s}: {err:?} offers {refused}");
        }
    }
    assert!("tun:t0".parse::<PortSpec>().is_ok());
    assert!("pcap:f.pcap".parse::<PortSpec>().is_ok());
}
