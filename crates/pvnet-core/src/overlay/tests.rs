use super::*;

const VNI: Vni = match Vni::new(42) {
    Some(v) => v,
    None => panic!(),
};

/// An inner Ethernet + IPv4 frame whose IP length is `ip_len`, with `have` IP bytes.
fn inner4(ip_len: u16, have: usize) -> Vec<u8> {
    let mut f = vec![0u8; 14 + have];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f
}

fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut d = vec![0x08, 0, 0, 0];
    d.extend_from_slice(&vni.to_be_bytes()[1..]);
    d.push(0);
    d.extend_from_slice(inner);
    d
}

/// GENEVE with `opts` (whole 4-byte words) and flags.
fn geneve(flags: u8, proto: u16, opts: &[u8], inner: &[u8]) -> Vec<u8> {
    assert_eq!(opts.len() % 4, 0);
    let mut d = vec![u8::try_from(opts.len() / 4).unwrap(), flags];
    d.extend_from_slice(&proto.to_be_bytes());
    d.extend_from_slice(&[0, 0, 42, 0]);
    d.extend_from_slice(opts);
    d.extend_from_slice(inner);
    d
}

#[test]
fn headers_pvnet_sends() {
    assert_eq!(
        Encap::Vxlan.header(Vni::new(0x01_0203).unwrap()),
        [0x08, 0, 0, 0, 1, 2, 3, 0]
    );
    assert_eq!(
        Encap::Geneve.header(Vni::new(0x01_0203).unwrap()),
        [0, 0, 0x65, 0x58, 1, 2, 3, 0]
    );
    assert_eq!(Encap::Vxlan.default_port(), 4789);
    assert_eq!(Encap::Geneve.default_port(), 6081);
    assert_eq!(Vni::new(1 << 24), None);
    // What pvnet sends, it takes back.
    let inner = inner4(20, 20);
    for e in [Encap::Vxlan, Encap::Geneve] {
        let mut d = e.header(VNI).to_vec();
        d.extend_from_slice(&inner);
        assert_eq!(decap(e, VNI, &d), Ok(8), "{e:?}");
    }
}

#[test]
fn vxlan_good_and_bad() {
    let inner = inner4(28, 28);
    assert_eq!(decap(Encap::Vxlan, VNI, &vxlan(42, &inner)), Ok(8));
    assert_eq!(
        decap(Encap::Vxlan, VNI, &vxlan(43, &inner)),
        Err(DecapError::WrongVni { got: 43, want: 42 })
    );
    let mut d = vxlan(42, &inner);
    d[0] = 0x00;
    assert_eq!(decap(Encap::Vxlan, VNI, &d), Err(DecapError::VxlanFlags(0)));
    // Reserved bits are ignored on receipt (RFC 7348 section 5).
    d[0] = 0xff;
    d[7] = 0xff;
    assert_eq!(decap(Encap::Vxlan, VNI, &d), Ok(8));
    assert_eq!(
        decap(Encap::Vxlan, VNI, &d[..7]),
        Err(DecapError::Truncated {
            needed: 8,
            available: 7
        })
    );
}

#[test]
fn inner_frames_that_lie_about_their_length() {
    // IP says 1000 bytes, the datagram has 28.
    assert_eq!(
        decap(Encap::Vxlan, VNI, &vxlan(42, &inner4(1000, 28))),
        Err(DecapError::InnerTooLong {
            claimed: 1000,
            available: 28
        })
    );
    // Not even an Ethernet header.
    assert_eq!(
        decap(Encap::Vxlan, VNI, &vxlan(42, &[0u8; 13])),
        Err(DecapError::InnerTruncated {
            needed: 14,
            available: 13
        })
    );
    // IPv4 cut before its length field.
    assert_eq!(
        decap(Encap::Vxlan, VNI, &vxlan(42, &inner4(20, 4)[..17])),
        Err(DecapError::InnerTruncated {
            needed: 18,
            available: 17
        })
    );
    // IPv6 behind a VLAN tag: payload length 100, 40 + 10 bytes there.
    let mut f = vec![0u8; 18 + 50];
    f[12..14].copy_from_slice(&[0x81, 0x00]);
    f[16..18].copy_from_slice(&[0x86, 0xdd]);
    f[18] = 0x60;
    f[22..24].copy_from_slice(&100u16.to_be_bytes());
    assert_eq!(
        decap(Encap::Vxlan, VNI, &vxlan(42, &f)),
        Err(DecapError::InnerTooLong {
            claimed: 140,
            available: 50
        })
    );
    f[22..24].copy_from_slice(&10u16.to_be_bytes());
    assert_eq!(decap(Encap::Vxlan, VNI, &vxlan(42, &f)), Ok(8));
    // Link padding after the IP packet is fine; non-IP is not looked into.
    assert_eq!(decap(Encap::Vxlan, VNI, &vxlan(42, &inner4(20, 46))), Ok(8));
    let mut arp = inner4(0, 28);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(decap(Encap::Vxlan, VNI, &vxlan(42, &arp)), Ok(8));
}

#[test]
fn geneve_good_and_bad() {
    let inner = inner4(20, 20);
    // One non-critical option of 8 bytes (4 header + 1 word).
    let opt = [0x01, 0x02, 0x03, 0x01, 9, 9, 9, 9];
    assert_eq!(
        decap(Encap::Geneve, VNI, &geneve(0, 0x6558, &opt, &inner)),
        Ok(16)
    );
    assert_eq!(
        decap(Encap::Geneve, VNI, &geneve(0, 0x0800, &[], &inner)),
        Err(DecapError::Protocol(0x0800))
    );
    assert_eq!(
        decap(Encap::Geneve, VNI, &geneve(flags_o(), 0x6558, &[], &inner)),
        Err(DecapError::GeneveOam)
    );
    // Critical by the header's C flag or an option's type bit.
    assert_eq!(
        decap(Encap::Geneve, VNI, &geneve(0x40, 0x6558, &[], &inner)),
        Err(DecapError::GeneveCritical)
    );
    let crit = [0x01, 0x02, 0x83, 0x01, 9, 9, 9, 9];
    assert_eq!(
        decap(Encap::Geneve, VNI, &geneve(0, 0x6558, &crit, &inner)),
        Err(DecapError::GeneveCritical)
    );
    // The option claims 3 words, Opt Len gives it 1.
    let lying = [0x01, 0x02, 0x03, 0x03, 9, 9, 9, 9];
    assert_eq!(
        decap(Encap::Geneve, VNI, &geneve(0, 0x6558, &lying, &inner)),
        Err(DecapError::GeneveOptionLength(geneve::OptionOverrun {
            offset: 8,
            claimed: 16,
            available: 8
        }))
    );
    // Opt Len beyond the datagram.
    let mut d = geneve(0, 0x6558, &[], &[]);
    d[0] = 0x3f;
    assert_eq!(
        decap(Encap::Geneve, VNI, &d),
        Err(DecapError::Truncated {
            needed: 8 + 63 * 4,
            available: 8
        })
    );
    let mut d = geneve(0, 0x6558, &[], &inner);
    d[0] |= 0x40;
    assert_eq!(
        decap(Encap::Geneve, VNI, &d),
        Err(DecapError::GeneveVersion(1))
    );
    d[0] = 0;
    d[6] = 7;
    assert_eq!(
        decap(Encap::Geneve, VNI, &d),
        Err(DecapError::WrongVni { got: 7, want: 42 })
    );
}

fn flags_o() -> u8 {
    geneve::flags::O
}

#[test]
fn every_error_has_a_cause_and_a_message() {
    let errs = [
        DecapError::Truncated {
            needed: 8,
            available: 1,
        },
        DecapError::VxlanFlags(0),
        DecapError::GeneveOptionLength(geneve::OptionOverrun {
            offset: 8,
            claimed: 8,
            available: 4,
        }),
        DecapError::Protocol(1),
        DecapError::WrongVni { got: 1, want: 2 },
        DecapError::InnerTooLong {
            claimed: 9,
            available: 1,
        },
    ];
    let causes: Vec<_> = errs.iter().map(DecapCause::from).collect();
    assert_eq!(causes, DecapCause::ALL[..6].to_vec());
    for (i, c) in DecapCause::ALL.iter().enumerate() {
        assert_eq!(*c as usize, i);
    }
    assert!(errs.iter().all(|e| !e.to_string().is_empty()));
}

#[test]
fn a_partial_inner_checksum_is_completed_and_a_full_one_left_alone() {
    use crate::offload::checksum::{verify_frame, Verdict};
    use crate::wire::Start;
    // Ethernet + IPv4 + TCP + 100 bytes, its TCP checksum the folded pseudo-header sum
    // (what a kernel leaves for the NIC).
    let mut f = vec![0u8; 14 + 20 + 20 + 100];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&140u16.to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[46] = 0x50;
    for (i, b) in f[54..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let ip_sum = crate::csum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&ip_sum.to_be_bytes());
    let pseudo = crate::csum::pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], 6, 120).fold();
    f[50..52].copy_from_slice(&pseudo.to_be_bytes());
    assert_eq!(verify_frame(&f, Start::Ethernet).l4, Verdict::Partial);
    // Link padding after the IP packet is not summed.
    f.extend_from_slice(&[0xee; 6]);
    assert!(complete_partial_inner(&mut f));
    assert_eq!(verify_frame(&f, Start::Ethernet).l4, Verdict::Good);
    let done = f.clone();
    assert!(!complete_partial_inner(&mut f));
    assert_eq!(f, done);
    // A wrong checksum that is not the pseudo-header sum stays wrong (the receiver drops).
    f[51] ^= 1;
    assert!(!complete_partial_inner(&mut f));
    assert_eq!(verify_frame(&f, Start::Ethernet).l4, Verdict::Bad);
}
