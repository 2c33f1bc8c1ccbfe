//! VXLAN header view (RFC 7348).
//!
//! ```text
//!  0               1               2               3
//! |R|R|R|R|I|R|R|R|           Reserved (24 bits)                  |
//! |        VXLAN Network Identifier (VNI, 24 bits)  | Reserved (8)|
//! ```
//!
//! The I flag must be set; every other bit is reserved, sent as zero and ignored on
//! receipt (RFC 7348 section 5).

use super::ParseErrorKind;

/// Flags, reserved, VNI, reserved.
pub const HEADER_LEN: usize = 8;

/// The IANA-assigned UDP destination port.
pub const PORT: u16 = 4789;

/// Largest VNI (24 bits).
pub const VNI_MAX: u32 = 0x00ff_ffff;

/// Byte positions of the header fields, from the start of the VXLAN header.
pub mod field {
    use core::ops::Range;
    /// The flags byte (`I` = 0x08).
    pub const FLAGS: usize = 0;
    /// The 24-bit VNI (big-endian).
    pub const VNI: Range<usize> = 4..7;
}

/// Flag bits of [`field::FLAGS`].
pub mod flags {
    /// The VNI is valid: must be set.
    pub const I: u8 = 0x08;
}

/// A view of a VXLAN header (and the inner frame after it).
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

    /// The flags byte.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The 24-bit VXLAN Network Identifier.
    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// What follows the header: the inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Write a whole header: flag I, the VNI (its low 24 bits), reserved fields zero.
    pub fn fill(&mut self, vni: u32) {
        let b = &mut self.buffer.as_mut()[..HEADER_LEN];
        b.fill(0);
        b[field::FLAGS] = flags::I;
        b[field::VNI].copy_from_slice(&vni.to_be_bytes()[1..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // I flag, VNI 0x123456, then two bytes of inner frame.
    const HDR: [u8; 10] = [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0, 0xaa, 0xbb];

    #[test]
    fn getters() {
        let h = Header::new_checked(&HDR[..]).unwrap();
        assert_eq!(h.flags(), flags::I);
        assert_eq!(h.vni(), 0x12_3456);
        assert_eq!(h.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn fill_writes_the_rfc_layout() {
        let mut h = Header::new_unchecked([0xffu8; 10]);
        h.fill(0xab_cdef);
        assert_eq!(
            h.into_inner(),
            [0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0, 0xff, 0xff]
        );
        // Bits above 24 never leak into the flags or reserved bytes.
        let mut h = Header::new_unchecked([0u8; 8]);
        h.fill(0xff00_0001);
        assert_eq!(h.into_inner(), [0x08, 0, 0, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn short_buffer_is_truncated() {
        assert_eq!(
            Header::new_checked(&HDR[..7]),
            Err(ParseErrorKind::Truncated {
                needed: 8,
                available: 7
            })
        );
    }
}
