//! The outer UDP source port: a hash of the inner flow, so that every packet of a flow
//! takes the same underlay path (ECMP, RSS) and different flows spread, as RFC 7348
//! section 5 and RFC 8926 section 3.3 ask. The kernel computes it the same way
//! (`udp_flow_src_port`: the flow hash scaled into the local port range).

use crate::wire::{ethernet, ipv4, ipv6, Layers, L3, L4};

/// Low end of the kernel's default local port range (`ip_local_port_range`).
pub const PORT_MIN: u16 = 32768;
/// One past the high end of that range (60999).
pub const PORT_MAX: u16 = 61000;

/// Fold 8 bytes into the running hash (splitmix64's finalizer: every input bit reaches
/// every output bit).
fn mix(h: u64, v: u64) -> u64 {
    let mut z = h ^ v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn mix_bytes(mut h: u64, b: &[u8]) -> u64 {
    for c in b.chunks(8) {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        h = mix(h, u64::from_le_bytes(w));
    }
    h
}

/// Hash of the inner frame's flow: IP addresses, protocol and (for TCP and UDP that are
/// not fragments) ports; the MAC addresses and EtherType for anything that is not IP.
/// `head` holds the frame's headers as `layers` describes them; `seed` keys the hash.
pub fn flow_hash(head: &[u8], layers: &Layers, seed: u64) -> u32 {
    let mut h = seed;
    let l3 = layers.l3_offset;
    let addrs = match layers.l3 {
        Some(L3::Ipv4) => head.get(l3 + ipv4::field::SRC.start..l3 + ipv4::field::DST.end),
        Some(L3::Ipv6) => head.get(l3 + ipv6::field::SRC.start..l3 + ipv6::field::DST.end),
        None => None,
    };
    match addrs {
        Some(a) => {
            h = mix_bytes(h, a);
            let (proto, ports) = match layers.l4 {
                Some(L4::Tcp) => (6u64, true),
                Some(L4::Udp) => (17, true),
                Some(L4::Other(p)) => (u64::from(p), false),
                None => (0, false),
            };
            h = mix(h, proto);
            if ports && !layers.fragment {
                if let Some(p) = head.get(layers.l4_offset..layers.l4_offset + 4) {
                    h = mix_bytes(h, p);
                }
            }
        }
        None => {
            let eth = head.get(..ethernet::HEADER_LEN).unwrap_or(head);
            h = mix_bytes(h, eth);
        }
    }
    // The high half: the best-mixed bits.
    (h >> 32) as u32
}

/// [`flow_hash`] from a frame's head alone, for a sender that has no parsed layers (an
/// overlay port's transmit side): the same fields, found by a short walk that stops at
/// whatever is missing (VLAN tags skipped, IPv6 extension headers not walked: their ports
/// are then not hashed). Never panics.
pub fn flow_hash_head(head: &[u8], seed: u64) -> u32 {
    let mut layers = Layers::default();
    let mut at = ethernet::HEADER_LEN;
    let Some(mut ty) = head.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
        return flow_hash(head, &layers, seed);
    };
    for _ in 0..crate::wire::MAX_VLAN_TAGS {
        if ty != crate::wire::ethertype::VLAN && ty != crate::wire::ethertype::QINQ {
            break;
        }
        match head.get(at + 2..at + 4) {
            Some(b) => ty = u16::from_be_bytes([b[0], b[1]]),
            None => return flow_hash(head, &layers, seed),
        }
        at += crate::wire::vlan::HEADER_LEN;
    }
    let ip = &head[at.min(head.len())..];
    let (l3, proto, l4) = match ty {
        crate::wire::ethertype::IPV4 if ip.len() >= ipv4::MIN_HEADER_LEN => {
            let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
            layers.fragment = frag;
            (
                L3::Ipv4,
                ip[ipv4::field::PROTOCOL],
                at + usize::from(ip[0] & 0x0f) * 4,
            )
        }
        crate::wire::ethertype::IPV6 if ip.len() >= ipv6::HEADER_LEN => {
            (L3::Ipv6, ip[6], at + ipv6::HEADER_LEN)
        }
        _ => return flow_hash(head, &layers, seed),
    };
    layers.l3 = Some(l3);
    layers.l3_offset = at;
    layers.l4_offset = l4;
    layers.l4 = Some(match proto {
        crate::wire::ip_proto::TCP => L4::Tcp,
        crate::wire::ip_proto::UDP => L4::Udp,
        p => L4::Other(p),
    });
    flow_hash(head, &layers, seed)
}

/// The source port for a flow hash, in `[min, max)` (the kernel's scaling: the hash as
/// a fraction of the range, so every port is equally likely).
pub fn src_port(hash: u32, min: u16, max: u16) -> u16 {
    if max <= min {
        return min;
    }
    let span = u64::from(max - min);
    // < span ≤ 65535: the sum stays below max.
    min + ((u64::from(hash) * span) >> 32) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{parse, Start};

    fn tcp4(src_port: u16, dst: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&40u16.to_be_bytes());
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&dst);
        f[34..36].copy_from_slice(&src_port.to_be_bytes());
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f[46] = 0x50;
        f
    }

    fn hash(f: &[u8]) -> u32 {
        flow_hash(f, &parse(f, Start::Ethernet).unwrap(), 42)
    }

    #[test]
    fn same_flow_same_hash_other_flows_differ() {
        let a = tcp4(1000, [10, 0, 0, 2]);
        let mut a2 = a.clone();
        a2[38] = 0x77; // sequence number: not part of the flow
        assert_eq!(hash(&a), hash(&a2));
        assert_ne!(hash(&a), hash(&tcp4(1001, [10, 0, 0, 2])));
        assert_ne!(hash(&a), hash(&tcp4(1000, [10, 0, 0, 3])));
        let l = parse(&a, Start::Ethernet).unwrap();
        assert_ne!(flow_hash(&a, &l, 1), flow_hash(&a, &l, 2));
    }

    #[test]
    fn the_head_alone_hashes_as_the_parsed_frame() {
        for f in [tcp4(1000, [10, 0, 0, 2]), tcp4(7, [10, 9, 0, 2])] {
            assert_eq!(flow_hash_head(&f, 42), hash(&f));
            // Only the headers are needed, and a cut head never panics.
            assert_eq!(flow_hash_head(&f[..38], 42), hash(&f));
            for n in 0..f.len() {
                flow_hash_head(&f[..n], 42);
            }
        }
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let l = parse(&arp, Start::Ethernet).unwrap();
        assert_eq!(flow_hash_head(&arp, 5), flow_hash(&arp, &l, 5));
    }

    #[test]
    fn non_ip_hashes_the_ethernet_header() {
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        arp[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        let l = parse(&arp, Start::Ethernet).unwrap();
        let h1 = flow_hash(&arp, &l, 3);
        arp[11] = 2;
        assert_ne!(h1, flow_hash(&arp, &l, 3));
    }

    #[test]
    fn source_ports_fill_the_range() {
        assert_eq!(src_port(0, PORT_MIN, PORT_MAX), PORT_MIN);
        assert_eq!(src_port(u32::MAX, PORT_MIN, PORT_MAX), PORT_MAX - 1);
        assert_eq!(src_port(1 << 31, 0, 100), 50);
        assert_eq!(src_port(5, 7, 7), 7);
        // Many flows spread over many ports.
        let ports: std::collections::HashSet<u16> = (0..2000u16)
            .map(|p| src_port(hash(&tcp4(p, [10, 0, 0, 2])), PORT_MIN, PORT_MAX))
            .collect();
        assert!(ports.len() > 1900, "{} distinct ports", ports.len());
    }
}
