//! The `check_len` promise: after it passes, no getter of any view panics, whatever the
//! bytes; and the TCP option iterator terminates on anything.

use proptest::prelude::*;
use pvnet_core::csum::Sum;
use pvnet_core::wire::{ethernet, ipv4, ipv6, tcp, udp, vlan};

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..128)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn getters_never_panic_after_check_len(mut buf in bytes(), ihl in 0u8..16) {
        // Steer the length fields into range often enough to get past check_len.
        if buf.len() > 20 {
            buf[0] = 0x40 | ihl;
            let total = (buf.len() as u16).saturating_sub(u16::from(buf[3] & 7));
            buf[2..4].copy_from_slice(&total.to_be_bytes());
        }
        if let Ok(p) = ethernet::Frame::new_checked(&buf[..]) {
            let _ = (p.dst_addr(), p.src_addr(), p.ethertype(), p.payload());
        }
        if let Ok(p) = vlan::Tag::new_checked(&buf[..]) {
            let _ = (p.pcp(), p.dei(), p.vid(), p.ethertype(), p.payload());
        }
        if let Ok(p) = ipv4::Packet::new_checked(&buf[..]) {
            let _ = (p.version(), p.dscp(), p.ecn(), p.ident(), p.is_fragment(), p.ttl());
            let _ = (p.protocol(), p.checksum(), p.src_addr(), p.dst_addr());
            let _ = (p.options(), p.payload(), p.verify_checksum());
            prop_assert!(p.header_len() + p.payload().len() == usize::from(p.total_len()));
        }
        if let Ok(p) = ipv6::Packet::new_checked(&buf[..]) {
            let _ = (p.version(), p.traffic_class(), p.flow_label(), p.next_header());
            let _ = (p.hop_limit(), p.src_addr(), p.dst_addr(), p.payload());
            let _ = ipv6::walk_ext_headers(p.next_header(), p.payload());
        }
        if let Ok(p) = ipv6::ExtHeader::new_checked(&buf[..]) {
            let _ = (p.next_header(), p.data());
        }
        if let Ok(p) = ipv6::RoutingHeader::new_checked(&buf[..]) {
            let _ = (p.routing_type(), p.segments_left(), p.data());
            if let Some(o) = p.final_dst_offset() {
                prop_assert!(o + 16 <= p.header_len());
            }
        }
        if let Ok(p) = ipv6::FragmentHeader::new_checked(&buf[..]) {
            let _ = (p.next_header(), p.frag_offset(), p.more_frags(), p.ident());
        }
        if let Ok(p) = tcp::Packet::new_checked(&buf[..]) {
            let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number());
            let _ = (p.flags(), p.window_len(), p.checksum(), p.urgent_at());
            let _ = (p.options(), p.payload(), p.verify_checksum(Sum::new()));
            let _ = p.option_iter().count();
        }
        if let Ok(p) = udp::Packet::new_checked(&buf[..]) {
            let _ = (p.src_port(), p.dst_port(), p.checksum(), p.payload());
            let _ = p.verify_checksum(Sum::new());
        }
        let _ = ipv6::walk_ext_headers(buf.first().copied().unwrap_or(0), &buf);
    }

    #[test]
    fn tcp_options_terminate(opts in proptest::collection::vec(any::<u8>(), 0..40)) {
        let got: Vec<_> = tcp::OptionIter::new(&opts).collect();
        // Every item consumes at least one byte, and an error is always the last item.
        prop_assert!(got.len() <= opts.len());
        if let Some(i) = got.iter().position(|o| o.is_err()) {
            prop_assert_eq!(i, got.len() - 1);
        }
    }
}
