//! IPv4 header view (RFC 791), options included.

use super::ParseErrorKind;
use crate::csum;

/// Header length without options.
pub const MIN_HEADER_LEN: usize = 20;
/// IHL is 4 bits of 32-bit words.
pub const MAX_HEADER_LEN: usize = 60;

/// Byte positions of the fixed header fields, from the start of the IPv4 header: for code
/// that reads or writes a field in a frame without building a [`Packet`] view.
pub mod field {
    use core::ops::Range;
    /// Version (high nibble) and IHL, the header length in 32-bit words (low nibble).
    pub const VER_IHL: usize = 0;
    /// DSCP (high 6 bits) and ECN (low 2 bits).
    pub const DSCP_ECN: usize = 1;
    /// Total length of the packet, header included (big-endian).
    pub const TOTAL_LEN: Range<usize> = 2..4;
    /// Identification, shared by the fragments of one datagram (big-endian).
    pub const IDENT: Range<usize> = 4..6;
    /// Flags (reserved, DF, MF) and the fragment offset in 8-byte units (big-endian).
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    /// Time to live.
    pub const TTL: usize = 8;
    /// Protocol of the payload (see [`ip_proto`](crate::wire::ip_proto)).
    pub const PROTOCOL: usize = 9;
    /// Header checksum (big-endian).
    pub const CHECKSUM: Range<usize> = 10..12;
    /// Source address.
    pub const SRC: Range<usize> = 12..16;
    /// Destination address.
    pub const DST: Range<usize> = 16..20;
}

/// Offset of the destination address in the header, which the transport pseudo-header uses.
pub const DST_ADDR_OFFSET: usize = field::DST.start;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
///
/// The buffer may be longer than the packet (Ethernet padding); [`Packet::payload`] stops at
/// the total length.
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

    /// Make sure the header, its options and the whole packet (per total length) are in the
    /// buffer, so that no getter can panic. The version is not checked: a view is also used
    /// to build a header into a zeroed buffer.
    pub fn check_len(&self) -> Result<(), ParseErrorKind> {
        let available = self.buffer.as_ref().len();
        if available < MIN_HEADER_LEN {
            return Err(ParseErrorKind::Truncated {
                needed: MIN_HEADER_LEN,
                available,
            });
        }
        let header_len = self.header_len();
        if header_len < MIN_HEADER_LEN {
            return Err(ParseErrorKind::BadHeaderLength(header_len));
        }
        if available < header_len {
            return Err(ParseErrorKind::Truncated {
                needed: header_len,
                available,
            });
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len || total_len > available {
            return Err(ParseErrorKind::BadTotalLength {
                claimed: total_len,
                available,
            });
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version field (4 for a valid packet; not checked by `check_len`).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Differentiated Services Code Point (6 bits).
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Explicit Congestion Notification (2 bits).
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Length of the packet, header included.
    pub fn total_len(&self) -> u16 {
        self.read_u16(field::TOTAL_LEN.start)
    }

    /// Identification, shared by the fragments of one datagram.
    pub fn ident(&self) -> u16 {
        self.read_u16(field::IDENT.start)
    }

    /// The Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.read_u16(field::FLAGS_FRAG.start) & FLAG_DF != 0
    }

    /// The More Fragments flag.
    pub fn more_frags(&self) -> bool {
        self.read_u16(field::FLAGS_FRAG.start) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    pub fn frag_offset(&self) -> u16 {
        (self.read_u16(field::FLAGS_FRAG.start) & FRAG_OFFSET_MASK) << 3
    }

    /// MF set or a non-zero offset: the payload is only part of a datagram.
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload (see [`ip_proto`](crate::wire::ip_proto)).
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM.start)
    }

    /// Source address.
    pub fn src_addr(&self) -> [u8; 4] {
        let mut a = [0; 4];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        a
    }

    /// Destination address.
    pub fn dst_addr(&self) -> [u8; 4] {
        let mut a = [0; 4];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        a
    }

    /// The header, options included.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The options between the fixed header and IHL × 4 (raw bytes, not interpreted).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[MIN_HEADER_LEN..self.header_len()]
    }

    /// The payload up to the total length: Ethernet padding is excluded.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    /// Whether the header checksum is right (the header sums to 0xFFFF).
    pub fn verify_checksum(&self) -> bool {
        csum::checksum(self.header()) == 0
    }

    fn read_u16(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the version nibble.
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Set IHL from a length in bytes; it must be a multiple of 4 between 20 and 60 for the
    /// packet to be valid, the extra bits are dropped.
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    /// Set the DSCP (6 bits; higher bits are dropped).
    pub fn set_dscp(&mut self, dscp: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (dscp << 2);
    }

    /// Set the ECN bits (2 bits; higher bits are dropped).
    pub fn set_ecn(&mut self, ecn: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0xfc) | (ecn & 0x03);
    }

    /// Set the total length, header included.
    pub fn set_total_len(&mut self, len: u16) {
        self.write_u16(field::TOTAL_LEN.start, len);
    }

    /// Set the identification.
    pub fn set_ident(&mut self, ident: u16) {
        self.write_u16(field::IDENT.start, ident);
    }

    /// Set or clear the Don't Fragment flag.
    pub fn set_dont_frag(&mut self, df: bool) {
        self.set_flag(FLAG_DF, df);
    }

    /// Set or clear the More Fragments flag.
    pub fn set_more_frags(&mut self, mf: bool) {
        self.set_flag(FLAG_MF, mf);
    }

    /// Set the fragment offset from a byte count (a multiple of 8; the low bits are dropped).
    pub fn set_frag_offset(&mut self, offset: u16) {
        let v = self.read_u16(field::FLAGS_FRAG.start);
        self.write_u16(
            field::FLAGS_FRAG.start,
            (v & !FRAG_OFFSET_MASK) | (offset >> 3),
        );
    }

    /// Set the time to live.
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Set the protocol of the payload.
    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    /// Set the header checksum field (see [`Packet::fill_checksum`]).
    pub fn set_checksum(&mut self, checksum: u16) {
        self.write_u16(field::CHECKSUM.start, checksum);
    }

    /// Set the source address.
    pub fn set_src_addr(&mut self, addr: [u8; 4]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr);
    }

    /// Set the destination address.
    pub fn set_dst_addr(&mut self, addr: [u8; 4]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr);
    }

    /// Recompute the header checksum over IHL × 4 bytes and store it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = csum::checksum(self.header());
        self.set_checksum(c);
    }

    /// The options between the fixed header and IHL × 4, mutable.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[MIN_HEADER_LEN..end]
    }

    /// The payload up to the total length, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[start..end]
    }

    fn set_flag(&mut self, flag: u16, on: bool) {
        let v = self.read_u16(field::FLAGS_FRAG.start);
        let v = if on { v | flag } else { v & !flag };
        self.write_u16(field::FLAGS_FRAG.start, v);
    }

    fn write_u16(&mut self, at: usize, v: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 24-byte header (one NOP ×3 + EOL option word), 4 bytes of payload, 2 bytes of padding.
    const PACKET: [u8; 30] = [
        0x46, 0xb8, 0x00, 0x1c, // v4, IHL 6, DSCP 46 ECN 0, total 28
        0x12, 0x34, 0x40, 0x00, // id, DF
        0x40, 0x06, 0x00, 0x00, // ttl 64, TCP, checksum (filled in by the test)
        0x0a, 0x00, 0x00, 0x01, // src
        0x0a, 0x00, 0x00, 0x02, // dst
        0x01, 0x01, 0x01, 0x00, // options
        0xde, 0xad, 0xbe, 0xef, // payload
        0x00, 0x00, // Ethernet padding
    ];

    fn packet() -> [u8; 30] {
        let mut p = PACKET;
        let c = csum::checksum(&p[..24]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn getters() {
        let bytes = packet();
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.dscp(), 46);
        assert_eq!(p.ecn(), 0);
        assert_eq!(p.total_len(), 28);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), 6);
        assert_eq!(p.src_addr(), [10, 0, 0, 1]);
        assert_eq!(p.dst_addr(), [10, 0, 0, 2]);
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(p.verify_checksum());
    }

    #[test]
    fn setters_round_trip() {
        let mut p = Packet::new_unchecked([0u8; 30]);
        p.set_version(4);
        p.set_header_len(24);
        p.set_dscp(46);
        p.set_ecn(0);
        p.set_total_len(28);
        p.set_ident(0x1234);
        p.set_dont_frag(true);
        p.set_ttl(64);
        p.set_protocol(6);
        p.set_src_addr([10, 0, 0, 1]);
        p.set_dst_addr([10, 0, 0, 2]);
        p.options_mut().copy_from_slice(&[1, 1, 1, 0]);
        p.payload_mut().copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.into_inner(), packet());
    }

    #[test]
    fn fragment_fields() {
        let mut p = Packet::new_unchecked(packet());
        p.set_dont_frag(false);
        p.set_more_frags(true);
        p.set_frag_offset(1480);
        assert!(p.more_frags() && !p.dont_frag());
        assert_eq!(p.frag_offset(), 1480);
        assert!(p.is_fragment());
        p.set_more_frags(false);
        assert!(p.is_fragment());
        p.set_frag_offset(0);
        assert!(!p.is_fragment());
        // Only the fragment bits moved: the checksum is now stale.
        assert!(!p.verify_checksum());
        p.set_ecn(3);
        assert_eq!((p.dscp(), p.ecn()), (46, 3));
    }

    #[test]
    fn impossible_lengths_rejected() {
        let ok = packet();
        assert_eq!(
            Packet::new_checked(&ok[..19]),
            Err(ParseErrorKind::Truncated {
                needed: 20,
                available: 19
            })
        );
        // Header announced longer than the buffer.
        assert_eq!(
            Packet::new_checked(&ok[..22]),
            Err(ParseErrorKind::Truncated {
                needed: 24,
                available: 22
            })
        );
        let mut bad = ok;
        bad[0] = 0x44;
        assert_eq!(
            Packet::new_checked(&bad[..]),
            Err(ParseErrorKind::BadHeaderLength(16))
        );
        let mut bad = ok;
        bad[0] = 0x4f;
        assert_eq!(
            Packet::new_checked(&bad[..]),
            Err(ParseErrorKind::Truncated {
                needed: 60,
                available: 30
            })
        );
        let mut bad = ok;
        bad[3] = 20;
        assert_eq!(
            Packet::new_checked(&bad[..]),
            Err(ParseErrorKind::BadTotalLength {
                claimed: 20,
                available: 30
            })
        );
        let mut bad = ok;
        bad[3] = 31;
        assert_eq!(
            Packet::new_checked(&bad[..]),
            Err(ParseErrorKind::BadTotalLength {
                claimed: 31,
                available: 30
            })
        );
        // Total length exactly the buffer, and exactly the header, are both fine.
        assert!(Packet::new_checked(&ok[..28]).is_ok());
        let mut hdr_only = ok;
        hdr_only[3] = 24;
        let p = Packet::new_checked(&hdr_only[..]).unwrap();
        assert!(p.payload().is_empty());
    }
}
