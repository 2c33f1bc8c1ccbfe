//! GENEVE header view (RFC 8926), with its variable-length options.
//!
//! ```text
//!  0                   1                   2                   3
//! |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
//! |        Virtual Network Identifier (VNI)       |    Reserved   |
//! |                    Variable-Length Options                    |
//! ```
//!
//! Each option is a TLV: class (16 bits), type (8 bits, high bit "critical"), three
//! reserved bits and a 5-bit length in 4-byte words that excludes the 4-byte option
//! header. `Opt Len` counts the options in 4-byte words.

use super::ParseErrorKind;

/// The fixed part of the header (without options).
pub const HEADER_LEN: usize = 8;

/// The IANA-assigned UDP destination port.
pub const PORT: u16 = 6081;

/// The only version defined.
pub const VERSION: u8 = 0;

/// Protocol Type of an Ethernet payload (Transparent Ethernet Bridging).
pub const PROTO_ETHERNET: u16 = 0x6558;

/// Length of an option's own header (class, type, length).
pub const OPTION_HEADER_LEN: usize = 4;

/// Byte positions of the header fields, from the start of the GENEVE header.
pub mod field {
    use core::ops::Range;
    /// Version (top 2 bits) and options length in 4-byte words (low 6 bits).
    pub const VER_OPT_LEN: usize = 0;
    /// Flags O (0x80) and C (0x40).
    pub const FLAGS: usize = 1;
    /// Protocol Type of the payload (an EtherType, big-endian).
    pub const PROTOCOL: Range<usize> = 2..4;
    /// The 24-bit VNI (big-endian).
    pub const VNI: Range<usize> = 4..7;
    /// Option length byte, from the start of an option: reserved (3 bits), length in
    /// 4-byte words (5 bits).
    pub const OPTION_LEN: usize = 3;
    /// Option type byte, from the start of an option (high bit: critical).
    pub const OPTION_TYPE: usize = 2;
}

/// Flag bits of [`field::FLAGS`].
pub mod flags {
    /// OAM: a control message, not data.
    pub const O: u8 = 0x80;
    /// Critical options are present.
    pub const C: u8 = 0x40;
}

/// An option whose length runs past the end of the options (`Opt Len`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionOverrun {
    /// Offset of the option from the start of the GENEVE header.
    pub offset: usize,
    /// Bytes the option claims (its header included).
    pub claimed: usize,
    /// Bytes left in the options from its offset.
    pub available: usize,
}

/// A view of a GENEVE header (and the inner frame after it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wrap a buffer without checking it; getters may panic until `check_len` passed.
    pub const fn new_unchecked(buffer: T) -> Self {
        Header { buffer }
    }

    /// Wrap a buffer after `check_len`: no getter panics on the result.
    pub fn new_checked(buffer: T) -> Result<Self, ParseErrorKind> {
        let h = Self::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// Make sure the buffer holds the fixed header and every option byte `Opt Len` claims.
    /// The options' own lengths are checked by [`Header::check_options`].
    pub fn check_len(&self) -> Result<(), ParseErrorKind> {
        let available = self.buffer.as_ref().len();
        if available < HEADER_LEN {
            return Err(ParseErrorKind::Truncated {
                needed: HEADER_LEN,
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

    /// Version (0).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_OPT_LEN] >> 6
    }

    /// Options length in bytes.
    pub fn options_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_OPT_LEN] & 0x3f) * 4
    }

    /// Header length with its options: where the payload starts.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// The flags byte ([`flags`]).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Protocol Type of the payload.
    pub fn protocol(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::PROTOCOL];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The 24-bit Virtual Network Identifier.
    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// The options, as `Opt Len` delimits them.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// Walk the options and make sure each one's length stays inside `Opt Len`; returns
    /// whether any option is critical (type's high bit).
    pub fn check_options(&self) -> Result<bool, OptionOverrun> {
        let opts = self.options();
        let mut at = 0;
        let mut critical = false;
        while at < opts.len() {
            let available = opts.len() - at;
            let claimed = match opts.get(at + field::OPTION_LEN) {
                Some(l) => OPTION_HEADER_LEN + usize::from(l & 0x1f) * 4,
                None => OPTION_HEADER_LEN,
            };
            if claimed > available {
                return Err(OptionOverrun {
                    offset: HEADER_LEN + at,
                    claimed,
                    available,
                });
            }
            critical |= opts[at + field::OPTION_TYPE] & 0x80 != 0;
            at += claimed;
        }
        Ok(critical)
    }

    /// What follows the header and its options: the inner frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Write a header without options: version 0, no flags, Ethernet payload, the VNI
    /// (its low 24 bits).
    pub fn fill(&mut self, vni: u32) {
        let b = &mut self.buffer.as_mut()[..HEADER_LEN];
        b.fill(0);
        b[field::PROTOCOL].copy_from_slice(&PROTO_ETHERNET.to_be_bytes());
        b[field::VNI].copy_from_slice(&vni.to_be_bytes()[1..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Opt Len 3 words (12 bytes), C flag, Ethernet, VNI 0x0a0b0c; one option class
    // 0x0102, type 0x83 (critical), length 2 words; then 2 bytes of payload.
    const HDR: [u8; 22] = [
        0x03, 0x40, 0x65, 0x58, 0x0a, 0x0b, 0x0c, 0x00, //
        0x01, 0x02, 0x83, 0x02, 1, 2, 3, 4, 5, 6, 7, 8, //
        0xaa, 0xbb,
    ];

    #[test]
    fn getters() {
        let h = Header::new_checked(&HDR[..]).unwrap();
        assert_eq!(h.version(), 0);
        assert_eq!(h.options_len(), 12);
        assert_eq!(h.header_len(), 20);
        assert_eq!(h.flags(), flags::C);
        assert_eq!(h.protocol(), PROTO_ETHERNET);
        assert_eq!(h.vni(), 0x0a_0b0c);
        assert_eq!(h.options().len(), 12);
        assert_eq!(h.check_options(), Ok(true));
        assert_eq!(h.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn options_len_beyond_the_buffer_is_truncated() {
        assert_eq!(
            Header::new_checked(&HDR[..19]),
            Err(ParseErrorKind::Truncated {
                needed: 20,
                available: 19
            })
        );
        assert_eq!(
            Header::new_checked(&HDR[..5]),
            Err(ParseErrorKind::Truncated {
                needed: 8,
                available: 5
            })
        );
    }

    #[test]
    fn an_option_that_lies_about_its_length_is_caught() {
        let mut b = HDR;
        b[11] = 0x03; // 4 + 12 bytes claimed, 12 in the options
        let h = Header::new_checked(&b[..]).unwrap();
        assert_eq!(
            h.check_options(),
            Err(OptionOverrun {
                offset: 8,
                claimed: 16,
                available: 12
            })
        );
        // Reserved bits above the 5-bit length are not part of it.
        b[11] = 0xe2;
        assert_eq!(Header::new_unchecked(&b[..]).check_options(), Ok(true));
    }

    #[test]
    fn a_second_option_cut_short_is_caught() {
        // Opt Len 2 words: a 4-byte option, then 4 bytes claiming 4 + 4.
        let b = [
            0x02, 0, 0x65, 0x58, 0, 0, 1, 0, //
            0, 1, 0x01, 0x00, //
            0, 1, 0x02, 0x01,
        ];
        let h = Header::new_checked(&b[..]).unwrap();
        assert_eq!(
            h.check_options(),
            Err(OptionOverrun {
                offset: 12,
                claimed: 8,
                available: 4
            })
        );
    }

    #[test]
    fn fill_writes_the_rfc_layout() {
        let mut h = Header::new_unchecked([0xffu8; 8]);
        h.fill(0x12_3456);
        assert_eq!(h.into_inner(), [0, 0, 0x65, 0x58, 0x12, 0x34, 0x56, 0]);
    }
}
