//! Fuzz body of the `overlay_decap` target, shared with the proptest twin in
//! `tests/overlay_props.rs`.

use super::{decap, DecapCause, Encap, Vni};
use crate::wire::{ethertype, ipv4, ipv6};

/// Decapsulate `data` as both tunnel kinds with the VNI in its first 3 bytes: never
/// panics, and what it accepts holds: the inner frame starts after a header that fits,
/// has a whole Ethernet header, and an inner IP length, when there is one, within it.
pub fn decap_body(data: &[u8]) -> u32 {
    let (vni_bytes, datagram) = data.split_at(data.len().min(3));
    let mut v = [0u8; 4];
    v[1..1 + vni_bytes.len()].copy_from_slice(vni_bytes);
    let Some(vni) = Vni::new(u32::from_be_bytes(v)) else {
        return 0;
    };
    let mut accepted = 0;
    for encap in [Encap::Vxlan, Encap::Geneve] {
        match decap(encap, vni, datagram) {
            Ok(off) => {
                assert!(off >= super::HEADER_LEN && off <= datagram.len());
                let inner = &datagram[off..];
                assert!(inner.len() >= 14, "inner frame without Ethernet header");
                check_ip_fits(inner);
                accepted += 1;
            }
            Err(e) => {
                // Every error has a cause and a message.
                let _ = DecapCause::from(&e).as_str();
                assert!(!e.to_string().is_empty());
            }
        }
    }
    accepted
}

/// An accepted inner frame's IP packet (without VLAN tags here) ends inside it.
fn check_ip_fits(inner: &[u8]) {
    let ty = u16::from_be_bytes([inner[12], inner[13]]);
    let ip = &inner[14..];
    let claimed = match ty {
        ethertype::IPV4 => {
            let b = &ip[ipv4::field::TOTAL_LEN];
            usize::from(u16::from_be_bytes([b[0], b[1]]))
        }
        ethertype::IPV6 => {
            let b = &ip[ipv6::field::PAYLOAD_LEN];
            40 + usize::from(u16::from_be_bytes([b[0], b[1]]))
        }
        _ => 0,
    };
    assert!(
        claimed <= ip.len(),
        "inner IP claims {claimed} of {}",
        ip.len()
    );
}
