//! The transmit plan of an overlay port: where a frame goes and in what shape.
//!
//! Every datagram must fit the underlay's MTU (`mtu` is the IP MTU: outer IP header, UDP
//! header, tunnel header and inner Ethernet frame). A frame that fits goes out whole. A
//! TCP or USO super-frame goes out as inner segments (the segmenter's, exactly as for any
//! port without TSO), gathered into UDP GSO buffers: one `sendmsg` sends up to
//! [`MAX_GSO_SEGMENTS`] datagrams, every one but the last of `seg_len` bytes of UDP
//! payload, which is what the kernel's `UDP_SEGMENT` requires. A TCP super-frame whose
//! segments would not fit is cut smaller (its MSS was chosen for a larger MTU); a USO one
//! cannot be (each segment is a datagram of the sender's choosing) and, like any other
//! frame that cannot fit, is dropped and counted, never truncated.

use super::fdb::{Fdb, Targets};
use super::HEADER_LEN;
use crate::frame::{CsumState, GsoKind, OffloadMeta};
use crate::switch::mac_table::Mac;
use crate::vnet::Validated;
use crate::wire::{ipv4, ipv6, udp};

/// Most datagrams one UDP GSO send may carry (`UDP_MAX_SEGMENTS` is 64 on older
/// kernels, 128 on newer ones: the smaller works everywhere).
pub const MAX_GSO_SEGMENTS: usize = 64;

/// The underlay a port sends over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Underlay {
    /// IP MTU of the path (1500 on a plain Ethernet underlay).
    pub mtu: u16,
    /// The outer IP is IPv6 (40-byte header) rather than IPv4 (20).
    pub ipv6: bool,
}

impl Underlay {
    /// Outer IP header.
    const fn ip_header(&self) -> usize {
        if self.ipv6 {
            ipv6::HEADER_LEN
        } else {
            ipv4::MIN_HEADER_LEN
        }
    }

    /// Bytes every frame costs on the underlay: outer IP, UDP and tunnel headers (50 for
    /// VXLAN over IPv4 with the inner Ethernet header counted as part of the frame: 20 +
    /// 8 + 8 + 14).
    pub const fn overhead(&self) -> usize {
        self.ip_header() + udp::HEADER_LEN + HEADER_LEN
    }

    /// Longest inner Ethernet frame (headers included) one datagram carries.
    pub const fn max_inner_frame(&self) -> usize {
        (self.mtu as usize).saturating_sub(self.overhead())
    }

    /// Most UDP payload bytes one send may carry: the outer IP length field bounds the
    /// whole buffer, UDP GSO or not.
    pub const fn max_udp_payload(&self) -> usize {
        if self.ipv6 {
            // The payload length counts the UDP header, not the IPv6 header.
            u16::MAX as usize - udp::HEADER_LEN
        } else {
            u16::MAX as usize - ipv4::MIN_HEADER_LEN - udp::HEADER_LEN
        }
    }
}

/// The shape a frame goes out in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One datagram carrying the frame; its partial checksum, if any, must be completed
    /// first (nothing after the tunnel will).
    Whole {
        /// The frame has a partial checksum to complete.
        complete_csum: bool,
    },
    /// Inner segments of `v`'s (possibly smaller) gso_size, checksums complete, sent in
    /// UDP GSO buffers.
    Segments {
        /// The super-frame's [`Validated`] to segment with: its own, or one with a
        /// smaller TCP gso_size that fits the underlay.
        v: Validated,
        /// Segments the super-frame makes.
        count: usize,
        /// UDP payload bytes (tunnel header + inner segment) of every datagram but the
        /// last: the `UDP_SEGMENT` size.
        seg_len: usize,
        /// Most segments per send.
        per_send: usize,
    },
    /// Cannot be sent.
    Drop(TxDrop),
}

/// Why a frame cannot be sent on the overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxDrop {
    /// A frame (or a USO segment) longer than one datagram carries.
    TooBig {
        /// Inner frame bytes that would have to go in one datagram.
        len: usize,
        /// Bytes one datagram carries.
        room: usize,
    },
    /// A super-frame of a kind the port does not take (UFO, one already in a tunnel):
    /// the switch segments those before they reach an overlay port.
    Unsupported,
}

/// Where a frame goes and in what shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// One remote or all of them.
    pub targets: Targets,
    /// Whole, segmented, or dropped.
    pub shape: Shape,
}

/// The shape of a frame of `frame_len` bytes validated as `v` on `underlay`.
pub fn shape(v: &Validated, frame_len: usize, underlay: Underlay) -> Shape {
    let room = underlay.max_inner_frame();
    let meta = v.meta();
    let Some(gso) = meta.gso else {
        return shape_plain(meta, frame_len, underlay);
    };
    if gso.tunnel.is_some() || gso.kind == GsoKind::Ufo {
        return Shape::Drop(TxDrop::Unsupported);
    }
    let hdr_len = v.layers().payload_offset;
    let want = hdr_len + usize::from(gso.size);
    let v = if want <= room {
        *v
    } else {
        let smaller = room
            .checked_sub(hdr_len)
            .and_then(|s| u16::try_from(s).ok())
            .and_then(|s| v.with_tcp_gso_size(s));
        match smaller {
            Some(s) => s,
            None => return Shape::Drop(TxDrop::TooBig { len: want, room }),
        }
    };
    let size = v.meta().gso.map_or(gso.size, |g| g.size);
    let payload = frame_len.saturating_sub(hdr_len);
    let count = payload.div_ceil(usize::from(size)).max(1);
    let seg_len = HEADER_LEN + hdr_len + usize::from(size);
    let per_send = (underlay.max_udp_payload() / seg_len).clamp(1, MAX_GSO_SEGMENTS);
    Shape::Segments {
        v,
        count,
        seg_len,
        per_send,
    }
}

/// The shape of a frame that is not a super-frame (`meta` without GSO): [`shape`]
/// without the layers, which only segmentation needs.
pub fn shape_plain(meta: &OffloadMeta, frame_len: usize, underlay: Underlay) -> Shape {
    let room = underlay.max_inner_frame();
    if meta.gso.is_some() {
        return Shape::Drop(TxDrop::Unsupported);
    }
    if frame_len > room {
        return Shape::Drop(TxDrop::TooBig {
            len: frame_len,
            room,
        });
    }
    Shape::Whole {
        complete_csum: matches!(meta.csum, CsumState::Partial { .. }),
    }
}

/// The plan for a frame to inner destination `dst` at `now` (milliseconds).
pub fn plan_tx(
    fdb: &Fdb,
    dst: &Mac,
    now: u64,
    v: &Validated,
    frame_len: usize,
    underlay: Underlay,
) -> Plan {
    Plan {
        targets: fdb.targets(dst, now),
        shape: shape(v, frame_len, underlay),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Gso;
    use crate::vnet::validate_gso;
    use crate::wire::{parse, Start};

    const V4: Underlay = Underlay {
        mtu: 1500,
        ipv6: false,
    };

    /// Ethernet + IPv4 + TCP (20 bytes) + `payload` bytes, lengths right.
    fn tcp4(payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20 + payload];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        let total = u16::try_from(40 + payload).unwrap();
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[46] = 0x50;
        f
    }

    fn plain(f: &[u8]) -> Validated {
        let l = parse(f, Start::Ethernet).unwrap();
        Validated::assume_valid(l, Default::default())
    }

    #[test]
    fn vxlan_over_ipv4_costs_50_bytes() {
        assert_eq!(V4.overhead() + 14, 50);
        assert_eq!(V4.max_inner_frame(), 1500 - 36);
        let v6 = Underlay {
            mtu: 1500,
            ipv6: true,
        };
        assert_eq!(v6.overhead() + 14, 70);
    }

    #[test]
    fn plain_frames_fit_or_are_dropped_never_cut() {
        // 1450-byte inner IP packet: 1464-byte frame, exactly what 1500 carries.
        let f = tcp4(1410);
        assert_eq!(
            shape(&plain(&f), f.len(), V4),
            Shape::Whole {
                complete_csum: false
            }
        );
        let f = tcp4(1411);
        assert_eq!(
            shape_plain(&Default::default(), f.len(), V4),
            Shape::Drop(TxDrop::TooBig {
                len: 1465,
                room: 1464
            })
        );
        assert_eq!(
            shape(&plain(&f), f.len(), V4),
            Shape::Drop(TxDrop::TooBig {
                len: 1465,
                room: 1464
            })
        );
    }

    #[test]
    fn a_tso_super_frame_is_segments_in_udp_gso_sends() {
        // MSS 1398 (an inner MTU of 1450 with 12 bytes of TCP options would be 1398 too;
        // here no options): 6000 bytes → 5 segments.
        let f = tcp4(6000);
        let v = validate_gso(&f, Start::Ethernet, Gso::plain(GsoKind::Tcpv4, 1398, false)).unwrap();
        match shape(&v, f.len(), V4) {
            Shape::Segments {
                v: sv,
                count,
                seg_len,
                per_send,
            } => {
                assert_eq!(sv, v);
                assert_eq!(count, 5);
                assert_eq!(seg_len, 8 + 54 + 1398);
                assert_eq!(per_send, 65507 / 1460);
            }
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn an_mss_too_large_for_the_underlay_is_cut_to_fit() {
        // MSS 1460 from a 1500-byte inner MTU: 1460 + 54 > 1464.
        let f = tcp4(64_000);
        let v = validate_gso(&f, Start::Ethernet, Gso::plain(GsoKind::Tcpv4, 1460, false)).unwrap();
        let Shape::Segments {
            v: sv,
            count,
            seg_len,
            per_send,
        } = shape(&v, f.len(), V4)
        else {
            panic!("not segmented");
        };
        let size = sv.meta().gso.unwrap().size;
        assert_eq!(size, 1464 - 54);
        assert_eq!(count, 64_000usize.div_ceil(1410));
        // Every datagram fits the MTU with its outer headers.
        assert_eq!(seg_len + 20 + 8, 1500);
        // The IP length field bounds one send.
        assert!(per_send * seg_len <= 65507);
        assert!((per_send + 1) * seg_len > 65507);
    }

    #[test]
    fn uso_segments_that_do_not_fit_are_dropped() {
        let mut f = tcp4(0);
        // Make it UDP with 6000 bytes of payload.
        f.truncate(34);
        f[23] = 17;
        f.extend(std::iter::repeat_n(0u8, 8 + 6000));
        f[16..18].copy_from_slice(&(20u16 + 8 + 6000).to_be_bytes());
        f[38..40].copy_from_slice(&(8u16 + 6000).to_be_bytes());
        let v = validate_gso(&f, Start::Ethernet, Gso::plain(GsoKind::UdpL4, 1472, false)).unwrap();
        assert_eq!(
            shape(&v, f.len(), V4),
            Shape::Drop(TxDrop::TooBig {
                len: 42 + 1472,
                room: 1464
            })
        );
        let v = validate_gso(&f, Start::Ethernet, Gso::plain(GsoKind::UdpL4, 1400, false)).unwrap();
        assert!(matches!(
            shape(&v, f.len(), V4),
            Shape::Segments { count: 5, .. }
        ));
    }

    #[test]
    fn targets_come_from_the_fdb() {
        let mut fdb = Fdb::new(8, 1000, 1, 2);
        let f = tcp4(10);
        let v = plain(&f);
        let mac = [2, 0, 0, 0, 0, 9];
        assert_eq!(
            plan_tx(&fdb, &mac, 0, &v, f.len(), V4).targets,
            Targets::All
        );
        fdb.learn(&mac, 1, 0);
        assert_eq!(
            plan_tx(&fdb, &mac, 0, &v, f.len(), V4).targets,
            Targets::One(1)
        );
    }
}
