//! IPv6 header view (RFC 8200) and the extension headers pvnet walks: Hop-by-Hop options,
//! Routing, Fragment and Destination options.

use super::{ip_proto, ParseErrorKind};

/// Length of the fixed header (extension headers not included).
pub const HEADER_LEN: usize = 40;

/// Longest extension header chain walked. Real traffic has at most a few; an attacker can
/// chain hundreds of 8-byte headers in one packet, so the walk is bounded.
pub const MAX_EXT_HEADERS: usize = 8;

/// Byte positions of the fixed header fields, from the start of the IPv6 header: for code
/// that reads or writes a field in a frame without building a [`Packet`] view.
pub mod field {
    use core::ops::Range;
    /// Version (4 bits), traffic class (8 bits) and flow label (20 bits), big-endian.
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    /// Length of everything after the fixed header, extension headers included
    /// (big-endian).
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    /// Next Header: the first extension header or the upper-layer protocol.
    pub const NEXT_HEADER: usize = 6;
    /// Hop limit.
    pub const HOP_LIMIT: usize = 7;
    /// Source address.
    pub const SRC: Range<usize> = 8..24;
    /// Destination address (not the final one when a Routing header has segments left).
    pub const DST: Range<usize> = 24..40;
}

/// Offset of the destination address in the fixed header.
pub const DST_ADDR_OFFSET: usize = field::DST.start;

/// A view of an IPv6 packet: fixed header, then `payload_len` bytes (extension headers
/// included). The buffer may be longer (Ethernet padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap a buffer without checking it; getters may panic until `check_len` passed.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap a buffer after `check_len`: no getter panics on the result.
    pub fn new_checked(buffer: T) -> Result<Self, ParseErrorKind> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Make sure the fixed header and the payload length fit in the buffer. A payload length
    /// of 0 passes (a header-only packet); [`super::parse`] refuses it only in front of a
    /// Hop-by-Hop header, where it may announce a jumbogram.
    pub fn check_len(&self) -> Result<(), ParseErrorKind> {
        let available = self.buffer.as_ref().len();
        if available < HEADER_LEN {
            return Err(ParseErrorKind::Truncated {
                needed: HEADER_LEN,
                available,
            });
        }
        let claimed = self.total_len();
        if claimed > available {
            return Err(ParseErrorKind::BadTotalLength { claimed, available });
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn first_word(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Version field (6 for a valid packet; not checked by `check_len`).
    pub fn version(&self) -> u8 {
        (self.first_word() >> 28) as u8
    }

    /// Traffic class (DSCP and ECN).
    pub fn traffic_class(&self) -> u8 {
        (self.first_word() >> 20) as u8
    }

    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        self.first_word() & 0x000f_ffff
    }

    /// Everything after the fixed header, extension headers included.
    pub fn payload_len(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::PAYLOAD_LEN];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Fixed header plus payload length.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// Next Header: the protocol of what follows this header.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    pub fn src_addr(&self) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        a
    }

    /// Destination address (the next hop's, with a Routing header).
    pub fn dst_addr(&self) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        a
    }

    /// The payload up to the payload length: extension headers first, padding excluded.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_first_word(&mut self, w: u32) {
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&w.to_be_bytes());
    }

    /// Set the version nibble.
    pub fn set_version(&mut self, version: u8) {
        let w = (self.first_word() & 0x0fff_ffff) | (u32::from(version & 0x0f) << 28);
        self.set_first_word(w);
    }

    /// Set the traffic class.
    pub fn set_traffic_class(&mut self, tc: u8) {
        let w = (self.first_word() & 0xf00f_ffff) | (u32::from(tc) << 20);
        self.set_first_word(w);
    }

    /// Set the flow label (20 bits; higher bits are dropped).
    pub fn set_flow_label(&mut self, label: u32) {
        let w = (self.first_word() & 0xfff0_0000) | (label & 0x000f_ffff);
        self.set_first_word(w);
    }

    /// Set the payload length (everything after the fixed header).
    pub fn set_payload_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::PAYLOAD_LEN].copy_from_slice(&len.to_be_bytes());
    }

    /// Set the Next Header field.
    pub fn set_next_header(&mut self, next_header: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = next_header;
    }

    /// Set the hop limit.
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hop_limit;
    }

    /// Set the source address.
    pub fn set_src_addr(&mut self, addr: [u8; 16]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr);
    }

    /// Set the destination address.
    pub fn set_dst_addr(&mut self, addr: [u8; 16]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr);
    }

    /// The payload up to the payload length, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// True for the extension headers pvnet walks past to find the upper layer.
///
/// AH and ESP are deliberately not in the list: what follows them is not something an
/// offload can touch, so they are reported as the upper layer.
pub const fn is_ext_header(next_header: u8) -> bool {
    matches!(
        next_header,
        ip_proto::HOPOPT | ip_proto::IPV6_ROUTE | ip_proto::IPV6_FRAG | ip_proto::IPV6_OPTS
    )
}

/// Every extension header is at least 8 bytes (and a Fragment header exactly 8).
pub const EXT_MIN_LEN: usize = 8;

/// A view of a generic "next header, length in 8-byte units beyond the first 8" extension
/// header: Hop-by-Hop, Routing and Destination options share this shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ExtHeader<T> {
    /// Wrap a buffer without checking it; getters may panic until `check_len` passed.
    pub const fn new_unchecked(buffer: T) -> Self {
        ExtHeader { buffer }
    }

    /// Wrap a buffer after `check_len`: no getter panics on the result.
    pub fn new_checked(buffer: T) -> Result<Self, ParseErrorKind> {
        let h = Self::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// Make sure the buffer holds the whole header, so that no getter can panic.
    pub fn check_len(&self) -> Result<(), ParseErrorKind> {
        let available = self.buffer.as_ref().len();
        if available < EXT_MIN_LEN {
            return Err(ParseErrorKind::Truncated {
                needed: EXT_MIN_LEN,
                available,
            });
        }
        let needed = self.header_len();
        if available < needed {
            return Err(ParseErrorKind::Truncated { needed, available });
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Next Header: the protocol of what follows this header.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// Length in bytes, the 2-byte prefix included.
    pub fn header_len(&self) -> usize {
        (usize::from(self.buffer.as_ref()[1]) + 1) * 8
    }

    /// The options (or routing data) after the 2-byte prefix.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[2..self.header_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ExtHeader<T> {
    /// Set the Next Header field.
    pub fn set_next_header(&mut self, next_header: u8) {
        self.buffer.as_mut()[0] = next_header;
    }

    /// Set the length from a byte count, which must be a non-zero multiple of 8.
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[1] = (len / 8).saturating_sub(1) as u8;
    }

    /// The data after the header's fixed prefix, mutable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[2..end]
    }
}

/// Routing types whose final destination pvnet knows how to find.
pub mod routing_type {
    /// RFC 2460 type 0 (deprecated by RFC 5095 but still parseable).
    pub const TYPE0: u8 = 0;
    /// Mobile IPv6 type 2 (one home address).
    pub const TYPE2: u8 = 2;
    /// Segment Routing Header (RFC 8754).
    pub const SRH: u8 = 4;
}

/// A view of a Routing header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingHeader<T: AsRef<[u8]>> {
    buffer: T,
}

/// Where the address list starts in type 0, 2 and 4 headers (after the reserved / last
/// entry + flags + tag word).
const ROUTING_ADDRS: usize = 8;

impl<T: AsRef<[u8]>> RoutingHeader<T> {
    /// Wrap a buffer without checking it; getters may panic until `check_len` passed.
    pub const fn new_unchecked(buffer: T) -> Self {
        RoutingHeader { buffer }
    }

    /// Wrap a buffer after `check_len`: no getter panics on the result.
    pub fn new_checked(buffer: T) -> Result<Self, ParseErrorKind> {
        let h = Self::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// Make sure the buffer holds the whole header, so that no getter can panic.
    pub fn check_len(&self) -> Result<(), ParseErrorKind> {
        ExtHeader::new_unchecked(self.buffer.as_ref()).check_len()
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Next Header: the protocol of what follows this header.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// Length in bytes, the fixed prefix included.
    pub fn header_len(&self) -> usize {
        (usize::from(self.buffer.as_ref()[1]) + 1) * 8
    }

    /// Routing type (see [`routing_type`]).
    pub fn routing_type(&self) -> u8 {
        self.buffer.as_ref()[2]
    }

    /// Route segments still to visit before the final destination.
    pub fn segments_left(&self) -> u8 {
        self.buffer.as_ref()[3]
    }

    /// Type-specific data after the 4-byte prefix.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[4..self.header_len()]
    }

    /// Offset within this header of the 16-byte address the transport pseudo-header must
    /// use (RFC 8200 8.1: the final destination), when segments are left and the type is
    /// one pvnet knows. `None` means the IPv6 header's destination already is the final one
    /// or cannot be found here.
    pub fn final_dst_offset(&self) -> Option<usize> {
        if self.segments_left() == 0 {
            return None;
        }
        let addrs = self.header_len() - ROUTING_ADDRS;
        let at = match self.routing_type() {
            routing_type::TYPE0 => {
                let n = addrs / 16;
                ROUTING_ADDRS + n.checked_sub(1)? * 16
            }
            // The SRH segment list is stored in reverse: entry 0 is the last segment.
            routing_type::TYPE2 | routing_type::SRH => ROUTING_ADDRS,
            _ => return None,
        };
        (at + 16 <= self.header_len()).then_some(at)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RoutingHeader<T> {
    /// Set the Next Header field.
    pub fn set_next_header(&mut self, next_header: u8) {
        self.buffer.as_mut()[0] = next_header;
    }

    /// Set the length from a byte count, which must be a non-zero multiple of 8.
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[1] = (len / 8).saturating_sub(1) as u8;
    }

    /// Set the routing type.
    pub fn set_routing_type(&mut self, t: u8) {
        self.buffer.as_mut()[2] = t;
    }

    /// Set the number of segments left.
    pub fn set_segments_left(&mut self, n: u8) {
        self.buffer.as_mut()[3] = n;
    }

    /// The data after the header's fixed prefix, mutable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[4..end]
    }
}

/// A view of a Fragment header (always 8 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FragmentHeader<T> {
    /// Wrap a buffer without checking it; getters may panic until `check_len` passed.
    pub const fn new_unchecked(buffer: T) -> Self {
        FragmentHeader { buffer }
    }

    /// Wrap a buffer after `check_len`: no getter panics on the result.
    pub fn new_checked(buffer: T) -> Result<Self, ParseErrorKind> {
        let h = Self::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// Make sure the buffer holds the whole header, so that no getter can panic.
    pub fn check_len(&self) -> Result<(), ParseErrorKind> {
        let available = self.buffer.as_ref().len();
        if available < EXT_MIN_LEN {
            return Err(ParseErrorKind::Truncated {
                needed: EXT_MIN_LEN,
                available,
            });
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Always [`EXT_MIN_LEN`]: a Fragment header is 8 bytes.
    pub const fn header_len(&self) -> usize {
        EXT_MIN_LEN
    }

    /// Next Header: the protocol of what follows this header.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[2], b[3]]) & 0xfff8
    }

    /// The M flag: more fragments follow.
    pub fn more_frags(&self) -> bool {
        self.buffer.as_ref()[3] & 1 != 0
    }

    /// Identification, shared by the fragments of one datagram.
    pub fn ident(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[4], b[5], b[6], b[7]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FragmentHeader<T> {
    /// Set the Next Header field.
    pub fn set_next_header(&mut self, next_header: u8) {
        self.buffer.as_mut()[0] = next_header;
    }

    /// Offset in bytes (a multiple of 8; the low bits are dropped). Keeps the M flag.
    pub fn set_frag_offset(&mut self, offset: u16) {
        let b = self.buffer.as_mut();
        let m = b[3] & 1;
        let v = (offset & 0xfff8) | u16::from(m);
        b[2..4].copy_from_slice(&v.to_be_bytes());
    }

    /// Set or clear the M flag.
    pub fn set_more_frags(&mut self, more: bool) {
        let b = &mut self.buffer.as_mut()[3];
        *b = (*b & !1) | u8::from(more);
    }

    /// Set the identification.
    pub fn set_ident(&mut self, ident: u32) {
        self.buffer.as_mut()[4..8].copy_from_slice(&ident.to_be_bytes());
    }
}

/// What the Fragment header of a chain says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragInfo {
    /// Offset of the Fragment header from the start of the chain.
    pub header_offset: usize,
    /// Fragment offset in bytes.
    pub offset: u16,
    /// More fragments follow (the M flag).
    pub more: bool,
    /// Identification of the datagram.
    pub ident: u32,
}

impl FragInfo {
    /// Offset 0 with more to come: the upper-layer header is here but the datagram is not.
    pub fn is_first_of_many(&self) -> bool {
        self.offset == 0 && self.more
    }
}

/// The result of walking an extension header chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtChain {
    /// The first Next Header value that is not an extension header (for a non-first
    /// fragment: the Fragment header's Next Header, whose header is in another fragment).
    pub upper: u8,
    /// Bytes of extension headers; the upper layer starts here.
    pub len: usize,
    /// How many extension headers were walked.
    pub count: usize,
    /// The Fragment header of the chain, if it has one.
    pub fragment: Option<FragInfo>,
    /// Offset from the start of the chain of the final destination found in a Routing
    /// header with segments left.
    pub final_dst: Option<usize>,
}

/// Why a chain could not be walked: the offset of the failing header from the start of the
/// chain and the cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtError {
    /// Offset of the failing header from the start of the chain.
    pub offset: usize,
    /// What is wrong with it.
    pub kind: ParseErrorKind,
}

/// Walk the extension headers in `chain` (the IPv6 payload, up to the payload length),
/// starting with the fixed header's Next Header `first`.
///
/// The walk stops at the first non-extension header or at a non-first fragment, whose
/// following bytes are payload, not headers.
pub fn walk_ext_headers(first: u8, chain: &[u8]) -> Result<ExtChain, ExtError> {
    let mut out = ExtChain {
        upper: first,
        len: 0,
        count: 0,
        fragment: None,
        final_dst: None,
    };
    while is_ext_header(out.upper) {
        let at = out.len;
        if out.count == MAX_EXT_HEADERS {
            return Err(ExtError {
                offset: at,
                kind: ParseErrorKind::TooManyExtensionHeaders,
            });
        }
        let rest = chain.get(at..).unwrap_or_default();
        let fail = |kind| ExtError { offset: at, kind };
        out.count += 1;
        if out.upper == ip_proto::IPV6_FRAG {
            let frag = FragmentHeader::new_checked(rest).map_err(fail)?;
            out.len += EXT_MIN_LEN;
            out.upper = frag.next_header();
            let info = FragInfo {
                header_offset: at,
                offset: frag.frag_offset(),
                more: frag.more_frags(),
                ident: frag.ident(),
            };
            out.fragment = Some(info);
            if info.offset != 0 {
                break;
            }
            continue;
        }
        let ext = ExtHeader::new_checked(rest).map_err(fail)?;
        let len = ext.header_len();
        if out.upper == ip_proto::IPV6_ROUTE && out.final_dst.is_none() {
            let rh = RoutingHeader::new_unchecked(&rest[..len]);
            out.final_dst = rh.final_dst_offset().map(|o| at + o);
        }
        out.upper = ext.next_header();
        out.len += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const DST: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    // TC 0xb8, flow 0x12345, 4 bytes of payload, UDP, hop limit 64, 2 bytes of padding.
    fn packet() -> [u8; 46] {
        let mut p = [0u8; 46];
        p[..8].copy_from_slice(&[0x6b, 0x81, 0x23, 0x45, 0x00, 0x04, 17, 64]);
        p[8..24].copy_from_slice(&SRC);
        p[24..40].copy_from_slice(&DST);
        p[40..44].copy_from_slice(&[1, 2, 3, 4]);
        p
    }

    #[test]
    fn getters() {
        let bytes = packet();
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 4);
        assert_eq!(p.next_header(), 17);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), SRC);
        assert_eq!(p.dst_addr(), DST);
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
    }

    #[test]
    fn setters_round_trip() {
        let mut p = Packet::new_unchecked([0u8; 46]);
        p.set_version(6);
        p.set_traffic_class(0xb8);
        p.set_flow_label(0x12345);
        p.set_payload_len(4);
        p.set_next_header(17);
        p.set_hop_limit(64);
        p.set_src_addr(SRC);
        p.set_dst_addr(DST);
        p.payload_mut().copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(p.into_inner(), packet());
    }

    #[test]
    fn first_word_fields_do_not_spill() {
        let mut p = Packet::new_unchecked(packet());
        p.set_flow_label(0xffff_ffff);
        assert_eq!((p.version(), p.traffic_class()), (6, 0xb8));
        p.set_traffic_class(0);
        assert_eq!((p.version(), p.flow_label()), (6, 0xfffff));
        p.set_version(0xff);
        assert_eq!((p.version(), p.traffic_class()), (0xf, 0));
    }

    #[test]
    fn impossible_lengths_rejected() {
        let ok = packet();
        assert_eq!(
            Packet::new_checked(&ok[..39]),
            Err(ParseErrorKind::Truncated {
                needed: 40,
                available: 39
            })
        );
        assert_eq!(
            Packet::new_checked(&ok[..43]),
            Err(ParseErrorKind::BadTotalLength {
                claimed: 44,
                available: 43
            })
        );
        assert!(Packet::new_checked(&ok[..44]).is_ok());
    }

    #[test]
    fn ext_header_views() {
        let mut buf = [0u8; 16];
        let mut h = ExtHeader::new_unchecked(&mut buf[..]);
        h.set_next_header(ip_proto::TCP);
        h.set_header_len(16);
        h.data_mut()[0] = 0x01; // PadN
        assert_eq!(h.header_len(), 16);
        assert_eq!(buf[..3], [6, 1, 1]);
        let h = ExtHeader::new_checked(&buf[..]).unwrap();
        assert_eq!((h.next_header(), h.data().len()), (6, 14));
        assert_eq!(
            ExtHeader::new_checked(&buf[..15]),
            Err(ParseErrorKind::Truncated {
                needed: 16,
                available: 15
            })
        );
        assert_eq!(
            ExtHeader::new_checked(&buf[..7]),
            Err(ParseErrorKind::Truncated {
                needed: 8,
                available: 7
            })
        );

        let mut buf = [0u8; 8];
        let mut f = FragmentHeader::new_unchecked(&mut buf[..]);
        f.set_next_header(ip_proto::UDP);
        f.set_more_frags(true);
        f.set_frag_offset(1448);
        f.set_ident(0xdead_beef);
        assert_eq!(buf, [17, 0, 0x05, 0xa9, 0xde, 0xad, 0xbe, 0xef]);
        let f = FragmentHeader::new_checked(&buf[..]).unwrap();
        assert_eq!(
            (f.frag_offset(), f.more_frags(), f.ident()),
            (1448, true, 0xdead_beef)
        );
        assert!(FragmentHeader::new_checked(&buf[..7]).is_err());
    }

    fn routing(rtype: u8, segs_left: u8, naddrs: usize) -> [u8; 56] {
        let mut buf = [0u8; 56];
        let len = 8 + 16 * naddrs;
        let mut r = RoutingHeader::new_unchecked(&mut buf[..]);
        r.set_next_header(ip_proto::TCP);
        r.set_header_len(len);
        r.set_routing_type(rtype);
        r.set_segments_left(segs_left);
        for i in 0..naddrs {
            let at = 4 + i * 16;
            r.data_mut()[at..at + 16].fill(i as u8 + 1);
        }
        buf
    }

    #[test]
    fn routing_final_destination() {
        let b = routing(routing_type::TYPE0, 2, 3);
        let r = RoutingHeader::new_checked(&b[..]).unwrap();
        assert_eq!((r.routing_type(), r.segments_left()), (0, 2));
        assert_eq!(r.final_dst_offset(), Some(40));
        assert_eq!(b[40], 3);

        let b = routing(routing_type::TYPE2, 1, 1);
        let r = RoutingHeader::new_checked(&b[..24]).unwrap();
        assert_eq!(r.final_dst_offset(), Some(8));

        let b = routing(routing_type::SRH, 1, 3);
        let r = RoutingHeader::new_checked(&b[..]).unwrap();
        assert_eq!(r.final_dst_offset(), Some(8));

        // Nothing left to visit: the IPv6 destination is final.
        let b = routing(routing_type::SRH, 0, 3);
        let r = RoutingHeader::new_checked(&b[..]).unwrap();
        assert_eq!(r.final_dst_offset(), None);

        // Unknown type, or no room for an address.
        let b = routing(3, 1, 1);
        assert_eq!(
            RoutingHeader::new_unchecked(&b[..24]).final_dst_offset(),
            None
        );
        let b = routing(routing_type::TYPE0, 1, 0);
        assert_eq!(
            RoutingHeader::new_unchecked(&b[..8]).final_dst_offset(),
            None
        );
        let b = routing(routing_type::SRH, 1, 0);
        assert_eq!(
            RoutingHeader::new_unchecked(&b[..8]).final_dst_offset(),
            None
        );
    }

    #[test]
    fn walk_chain() {
        // Hop-by-hop (8) → routing type 0 with 2 addresses (40) → fragment (8) → TCP.
        let mut chain = [0u8; 56];
        chain[..8].copy_from_slice(&[ip_proto::IPV6_ROUTE, 0, 1, 4, 0, 0, 0, 0]);
        chain[8..12].copy_from_slice(&[ip_proto::IPV6_FRAG, 4, 0, 1]);
        chain[48..56].copy_from_slice(&[ip_proto::TCP, 0, 0, 1, 0, 0, 0, 7]);
        let c = walk_ext_headers(ip_proto::HOPOPT, &chain).unwrap();
        assert_eq!((c.upper, c.len, c.count), (ip_proto::TCP, 56, 3));
        assert_eq!(c.final_dst, Some(8 + 8 + 16));
        let f = c.fragment.unwrap();
        assert_eq!(
            (f.header_offset, f.offset, f.more, f.ident),
            (48, 0, true, 7)
        );
        assert!(f.is_first_of_many());

        // A non-first fragment ends the walk even if its "next header" is an extension.
        chain[48..56].copy_from_slice(&[ip_proto::IPV6_OPTS, 0, 0, 8, 0, 0, 0, 7]);
        let c = walk_ext_headers(ip_proto::HOPOPT, &chain).unwrap();
        assert_eq!((c.upper, c.len), (ip_proto::IPV6_OPTS, 56));

        // Truncated routing header: reported at its own offset.
        assert_eq!(
            walk_ext_headers(ip_proto::HOPOPT, &chain[..47]),
            Err(ExtError {
                offset: 8,
                kind: ParseErrorKind::Truncated {
                    needed: 40,
                    available: 39
                }
            })
        );

        // No extension header at all.
        let c = walk_ext_headers(ip_proto::UDP, &[]).unwrap();
        assert_eq!((c.upper, c.len, c.count, c.fragment), (17, 0, 0, None));
    }

    #[test]
    fn walk_is_bounded() {
        let mut chain = [0u8; 8 * (MAX_EXT_HEADERS + 1)];
        for h in chain.chunks_exact_mut(8) {
            h[0] = ip_proto::IPV6_OPTS;
        }
        assert_eq!(
            walk_ext_headers(ip_proto::IPV6_OPTS, &chain),
            Err(ExtError {
                offset: 8 * MAX_EXT_HEADERS,
                kind: ParseErrorKind::TooManyExtensionHeaders
            })
        );
        chain[8 * (MAX_EXT_HEADERS - 1)] = ip_proto::UDP;
        let c = walk_ext_headers(ip_proto::IPV6_OPTS, &chain).unwrap();
        assert_eq!((c.count, c.len), (MAX_EXT_HEADERS, 8 * MAX_EXT_HEADERS));
    }
}
