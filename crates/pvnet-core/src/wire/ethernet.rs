//! Ethernet II header view.
//!
//! Only the 14-byte DIX header is modelled: pvnet never sees the FCS (taps, packet sockets
//! and pcap all strip it) and 802.3 length frames carry nothing pvnet offloads.

use super::ParseErrorKind;

/// Destination MAC, source MAC, EtherType.
pub const HEADER_LEN: usize = 14;

/// A MAC address.
pub type Address = [u8; 6];

/// Broadcast or multicast: the I/G (group) bit, the least significant bit of the first
/// byte, is set.
pub const fn is_multicast(addr: &Address) -> bool {
    addr[0] & 1 != 0
}

/// Byte positions of the header fields, from the start of the Ethernet header: for code
/// that reads or writes a field in a frame without building a [`Frame`] view.
pub mod field {
    use core::ops::Range;
    /// Destination MAC address.
    pub const DST: Range<usize> = 0..6;
    /// Source MAC address.
    pub const SRC: Range<usize> = 6..12;
    /// EtherType, or the TPID of the first VLAN tag (big-endian).
    pub const ETHERTYPE: Range<usize> = 12..14;
}

/// A view of an Ethernet II frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wrap a buffer without checking it; getters may panic until [`Frame::check_len`] passed.
    pub const fn new_unchecked(buffer: T) -> Self {
        Frame { buffer }
    }

    /// Wrap a buffer that is long enough for every getter.
    pub fn new_checked(buffer: T) -> Result<Self, ParseErrorKind> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Make sure the buffer holds a whole header.
    pub fn check_len(&self) -> Result<(), ParseErrorKind> {
        let available = self.buffer.as_ref().len();
        if available < HEADER_LEN {
            return Err(ParseErrorKind::Truncated {
                needed: HEADER_LEN,
                available,
            });
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Always [`HEADER_LEN`]: VLAN tags are the next header, not part of this one.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Destination MAC address.
    pub fn dst_addr(&self) -> [u8; 6] {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        a
    }

    /// Source MAC address.
    pub fn src_addr(&self) -> [u8; 6] {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        a
    }

    /// The outer EtherType (a VLAN TPID when the frame is tagged).
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Everything after the 14-byte header (VLAN tags included).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Set the destination MAC address.
    pub fn set_dst_addr(&mut self, addr: [u8; 6]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr);
    }

    /// Set the source MAC address.
    pub fn set_src_addr(&mut self, addr: [u8; 6]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr);
    }

    /// Set the outer EtherType (a VLAN TPID for a tagged frame).
    pub fn set_ethertype(&mut self, ethertype: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
    }

    /// Everything after the 14-byte header, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethertype;

    const FRAME: [u8; 16] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // src
        0x08, 0x00, // IPv4
        0xaa, 0xbb,
    ];

    #[test]
    fn getters() {
        let f = Frame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.src_addr(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.payload(), &[0xaa, 0xbb]);
        assert_eq!(f.header_len(), 14);
    }

    #[test]
    fn setters_round_trip() {
        let mut f = Frame::new_unchecked([0u8; 16]);
        f.set_dst_addr([2, 0, 0, 0, 0, 1]);
        f.set_src_addr([2, 0, 0, 0, 0, 2]);
        f.set_ethertype(ethertype::IPV4);
        f.payload_mut().copy_from_slice(&[0xaa, 0xbb]);
        assert_eq!(f.into_inner(), FRAME);
    }

    #[test]
    fn group_bit() {
        assert!(is_multicast(&[0xff; 6]));
        assert!(is_multicast(&[0x01, 0x00, 0x5e, 0, 0, 1]));
        assert!(is_multicast(&[0x33, 0x33, 0, 0, 0, 1]));
        assert!(!is_multicast(&[0x02, 0, 0, 0, 0, 1]));
        assert!(!is_multicast(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]));
    }

    #[test]
    fn short_buffer_rejected() {
        assert_eq!(
            Frame::new_checked(&FRAME[..13]),
            Err(ParseErrorKind::Truncated {
                needed: 14,
                available: 13
            })
        );
        // A bare header is a valid frame with an empty payload.
        let f = Frame::new_checked(&FRAME[..14]).unwrap();
        assert!(f.payload().is_empty());
    }
}
