//! IEEE 802.1Q / 802.1ad tag view.
//!
//! A tag is the 4 bytes that follow a VLAN TPID: the TCI and the EtherType of what comes
//! next. The TPID itself is the previous header's EtherType, so it is not part of the view;
//! that lets the same view serve the outer S-tag (0x88A8) and the inner C-tag (0x8100).

use super::{ethertype, ParseErrorKind};

/// TCI + inner EtherType.
pub const HEADER_LEN: usize = 4;

/// True for the TPIDs pvnet strips as VLAN tags.
pub const fn is_tpid(ethertype: u16) -> bool {
    ethertype == ethertype::VLAN || ethertype == ethertype::QINQ
}

/// Byte positions of the tag fields, from the end of the TPID (the start of a [`Tag`]
/// view): for code that reads or writes a field in a frame without building a view.
pub mod field {
    use core::ops::Range;
    /// Tag Control Information: PCP (3 bits), DEI (1 bit), VID (12 bits), big-endian.
    pub const TCI: Range<usize> = 0..2;
    /// EtherType of what follows the tag (big-endian).
    pub const ETHERTYPE: Range<usize> = 2..4;
}

/// A view of one VLAN tag (without its TPID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Tag<T> {
    /// Wrap a buffer without checking it; getters may panic until `check_len` passed.
    pub const fn new_unchecked(buffer: T) -> Self {
        Tag { buffer }
    }

    /// Wrap a buffer after `check_len`: no getter panics on the result.
    pub fn new_checked(buffer: T) -> Result<Self, ParseErrorKind> {
        let tag = Self::new_unchecked(buffer);
        tag.check_len()?;
        Ok(tag)
    }

    /// Make sure the buffer holds the whole header, so that no getter can panic.
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

    /// Always [`HEADER_LEN`].
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// The whole Tag Control Information word.
    pub fn tci(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::TCI];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Priority Code Point (802.1p class, 0–7).
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop Eligible Indicator.
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN identifier (12 bits).
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// EtherType of the next header (another TPID for a stacked tag).
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Everything after the tag (another tag, or the network header).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Tag<T> {
    /// Set the whole Tag Control Information word.
    pub fn set_tci(&mut self, tci: u16) {
        self.buffer.as_mut()[field::TCI].copy_from_slice(&tci.to_be_bytes());
    }

    /// Out-of-range bits are dropped so that one field can never spill into another.
    pub fn set_pcp(&mut self, pcp: u8) {
        let tci = (self.tci() & 0x1fff) | (u16::from(pcp & 0x7) << 13);
        self.set_tci(tci);
    }

    /// Set the Drop Eligible Indicator.
    pub fn set_dei(&mut self, dei: bool) {
        let tci = (self.tci() & !0x1000) | if dei { 0x1000 } else { 0 };
        self.set_tci(tci);
    }

    /// Set the VLAN identifier; bits above the 12 of a VID are dropped.
    pub fn set_vid(&mut self, vid: u16) {
        let tci = (self.tci() & 0xf000) | (vid & 0x0fff);
        self.set_tci(tci);
    }

    /// Set the EtherType of the next header.
    pub fn set_ethertype(&mut self, ethertype: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
    }

    /// Everything after the tag, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // PCP 5, DEI 1, VID 0x123, inner IPv6.
    const TAG: [u8; 4] = [0xb1, 0x23, 0x86, 0xdd];

    #[test]
    fn getters() {
        let t = Tag::new_checked(&TAG[..]).unwrap();
        assert_eq!(t.tci(), 0xb123);
        assert_eq!(t.pcp(), 5);
        assert!(t.dei());
        assert_eq!(t.vid(), 0x123);
        assert_eq!(t.ethertype(), ethertype::IPV6);
        assert!(t.payload().is_empty());
    }

    #[test]
    fn setters_round_trip() {
        let mut t = Tag::new_unchecked([0u8; 4]);
        t.set_vid(0x123);
        t.set_pcp(5);
        t.set_dei(true);
        t.set_ethertype(ethertype::IPV6);
        assert_eq!(t.into_inner(), TAG);
    }

    #[test]
    fn setters_do_not_spill() {
        let mut t = Tag::new_unchecked([0u8; 4]);
        t.set_vid(0xffff);
        assert_eq!(t.tci(), 0x0fff);
        t.set_pcp(0xff);
        assert_eq!(t.tci(), 0xefff);
        t.set_dei(false);
        assert_eq!(t.tci(), 0xefff);
        t.set_vid(0);
        assert_eq!((t.pcp(), t.dei(), t.vid()), (7, false, 0));
    }

    #[test]
    fn tpids() {
        assert!(is_tpid(0x8100));
        assert!(is_tpid(0x88a8));
        assert!(!is_tpid(0x0800));
    }

    #[test]
    fn short_buffer_rejected() {
        assert_eq!(
            Tag::new_checked(&TAG[..3]),
            Err(ParseErrorKind::Truncated {
                needed: 4,
                available: 3
            })
        );
    }
}
