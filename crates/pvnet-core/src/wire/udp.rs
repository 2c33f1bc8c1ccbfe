//! UDP header view (RFC 768).

use super::ParseErrorKind;
use crate::csum::Sum;

/// Source port, destination port, length, checksum.
pub const HEADER_LEN: usize = 8;

/// Offset of the checksum field in the header (virtio `csum_offset` for UDP).
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// Byte positions of the header fields, from the start of the UDP header: for code that
/// reads or writes a field in a frame without building a [`Packet`] view.
pub mod field {
    use core::ops::Range;
    /// Source port (big-endian).
    pub const SRC_PORT: Range<usize> = 0..2;
    /// Destination port (big-endian).
    pub const DST_PORT: Range<usize> = 2..4;
    /// Length of header plus payload (big-endian).
    pub const LENGTH: Range<usize> = 4..6;
    /// Checksum over pseudo-header, header and payload; 0 means none over IPv4
    /// (big-endian).
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// A view of a UDP datagram. The buffer may be longer than the length field says.
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

    /// Make sure the header is there and the length field covers it and fits in the buffer.
    /// A first IP fragment holds only part of its datagram: check the header with
    /// `new_unchecked` + a length test instead.
    pub fn check_len(&self) -> Result<(), ParseErrorKind> {
        let available = self.buffer.as_ref().len();
        if available < HEADER_LEN {
            return Err(ParseErrorKind::Truncated {
                needed: HEADER_LEN,
                available,
            });
        }
        let claimed = usize::from(self.len());
        if claimed < HEADER_LEN {
            return Err(ParseErrorKind::BadUdpLength {
                claimed,
                expected: available,
            });
        }
        if claimed > available {
            return Err(ParseErrorKind::Truncated {
                needed: claimed,
                available,
            });
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.read_u16(field::SRC_PORT.start)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.read_u16(field::DST_PORT.start)
    }

    /// Length field: header plus payload.
    pub fn len(&self) -> u16 {
        self.read_u16(field::LENGTH.start)
    }

    /// Never true for a datagram that passed `check_len`; here to pair with `len`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checksum field (0: no checksum, allowed over IPv4 only).
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM.start)
    }

    /// The payload up to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// Whether the datagram (to its length field) checksums right with the pseudo-header
    /// sum. A zero checksum means "not computed", allowed over IPv4 only; the caller knows
    /// which IP version it has, so it is reported as a mismatch here.
    pub fn verify_checksum(&self, pseudo: Sum) -> bool {
        let mut s = pseudo;
        s.add(&self.buffer.as_ref()[..usize::from(self.len())]);
        s.fold() == 0xffff
    }

    #[inline]
    fn read_u16(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the source port.
    pub fn set_src_port(&mut self, port: u16) {
        self.write_u16(field::SRC_PORT.start, port);
    }

    /// Set the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        self.write_u16(field::DST_PORT.start, port);
    }

    /// Set the length field (header plus payload).
    pub fn set_len(&mut self, len: u16) {
        self.write_u16(field::LENGTH.start, len);
    }

    /// Set the checksum field (see [`Packet::fill_checksum`]).
    pub fn set_checksum(&mut self, checksum: u16) {
        self.write_u16(field::CHECKSUM.start, checksum);
    }

    /// Compute and store the checksum over the datagram (to its length field). A computed
    /// 0 is sent as 0xFFFF because 0 on the wire means "no checksum".
    pub fn fill_checksum(&mut self, pseudo: Sum) {
        self.set_checksum(0);
        let mut s = pseudo;
        s.add(&self.buffer.as_ref()[..usize::from(self.len())]);
        let c = match s.checksum() {
            0 => 0xffff,
            c => c,
        };
        self.set_checksum(c);
    }

    /// The payload up to the length field, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    fn write_u16(&mut self, at: usize, v: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csum;

    // 53 → 40000, length 12, checksum 0, payload "ping", 2 bytes beyond the datagram.
    const DATAGRAM: [u8; 14] = [
        0x00, 0x35, 0x9c, 0x40, 0x00, 0x0c, 0x00, 0x00, b'p', b'i', b'n', b'g', 0xee, 0xee,
    ];

    #[test]
    fn getters() {
        let p = Packet::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (53, 40000));
        assert_eq!(p.len(), 12);
        assert!(!p.is_empty());
        assert_eq!(p.checksum(), 0);
        assert_eq!(p.payload(), b"ping");
    }

    #[test]
    fn setters_round_trip() {
        let mut p = Packet::new_unchecked([0u8; 14]);
        p.set_src_port(53);
        p.set_dst_port(40000);
        p.set_len(12);
        p.set_checksum(0);
        p.payload_mut().copy_from_slice(b"ping");
        let mut want = DATAGRAM;
        want[12..].fill(0);
        assert_eq!(p.into_inner(), want);
    }

    #[test]
    fn checksum_round_trip() {
        let src = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let pseudo = csum::pseudo_header_v6(&src, &src, 17, 12);
        let mut p = Packet::new_unchecked(DATAGRAM);
        p.fill_checksum(pseudo);
        assert!(p.verify_checksum(pseudo));
        // Bytes past the length field are not covered.
        let mut bytes = p.into_inner();
        bytes[13] = 0;
        assert!(Packet::new_unchecked(&bytes[..]).verify_checksum(pseudo));
    }

    #[test]
    fn checksum_zero_is_sent_as_ffff() {
        // Find a payload word that makes the sum come out as 0 and check the substitution.
        let pseudo = csum::Sum::new();
        let mut p = Packet::new_unchecked([0u8; 10]);
        p.set_len(10);
        let mut probe = Sum::new();
        probe.add(&[0, 0, 0, 0, 0, 10, 0, 0]);
        let fill = !probe.fold();
        p.payload_mut().copy_from_slice(&fill.to_be_bytes());
        p.fill_checksum(pseudo);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(pseudo));
    }

    #[test]
    fn impossible_lengths_rejected() {
        assert_eq!(
            Packet::new_checked(&DATAGRAM[..7]),
            Err(ParseErrorKind::Truncated {
                needed: 8,
                available: 7
            })
        );
        assert_eq!(
            Packet::new_checked(&DATAGRAM[..11]),
            Err(ParseErrorKind::Truncated {
                needed: 12,
                available: 11
            })
        );
        let mut bad = DATAGRAM;
        bad[5] = 7;
        assert_eq!(
            Packet::new_checked(&bad[..]),
            Err(ParseErrorKind::BadUdpLength {
                claimed: 7,
                expected: 14
            })
        );
    }
}
