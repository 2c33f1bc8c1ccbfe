//! TCP header view (RFC 9293) with an option iterator that never panics on malformed bytes.

use super::ParseErrorKind;
use crate::csum::Sum;

/// Header length without options.
pub const MIN_HEADER_LEN: usize = 20;
/// Data offset is 4 bits of 32-bit words.
pub const MAX_HEADER_LEN: usize = 60;

/// Offset of the checksum field in the header (virtio `csum_offset` for TCP).
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// Flag bits of header byte 13.
pub mod flags {
    /// No more data from the sender.
    pub const FIN: u8 = 0x01;
    /// Synchronize sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push: hand the data to the application.
    pub const PSH: u8 = 0x08;
    /// The acknowledgment number is valid.
    pub const ACK: u8 = 0x10;
    /// The urgent pointer is valid.
    pub const URG: u8 = 0x20;
    /// ECN-Echo (RFC 3168).
    pub const ECE: u8 = 0x40;
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: u8 = 0x80;
}
pub use flags::{ACK, CWR, ECE, FIN, PSH, RST, SYN, URG};

/// Byte positions of the fixed header fields, from the start of the TCP header: for code
/// that reads or writes a field in a frame without building a [`Packet`] view.
pub mod field {
    use core::ops::Range;
    /// Source port (big-endian).
    pub const SRC_PORT: Range<usize> = 0..2;
    /// Destination port (big-endian).
    pub const DST_PORT: Range<usize> = 2..4;
    /// Sequence number (big-endian).
    pub const SEQ: Range<usize> = 4..8;
    /// Acknowledgment number (big-endian).
    pub const ACK: Range<usize> = 8..12;
    /// Data offset, the header length in 32-bit words (high nibble), and reserved bits.
    pub const DATA_OFF: usize = 12;
    /// The 8 flag bits (see [`flags`](super::flags)).
    pub const FLAGS: usize = 13;
    /// Receive window (big-endian).
    pub const WINDOW: Range<usize> = 14..16;
    /// Checksum over pseudo-header, header and payload (big-endian).
    pub const CHECKSUM: Range<usize> = 16..18;
    /// Urgent pointer (big-endian).
    pub const URGENT: Range<usize> = 18..20;
}

/// A view of a TCP segment: header, options, payload to the end of the buffer. The buffer
/// must end where the IP packet ends, or payload() includes link padding.
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

    /// Make sure the fixed header and the options announced by the data offset are in the
    /// buffer.
    pub fn check_len(&self) -> Result<(), ParseErrorKind> {
        let available = self.buffer.as_ref().len();
        if available < MIN_HEADER_LEN {
            return Err(ParseErrorKind::Truncated {
                needed: MIN_HEADER_LEN,
                available,
            });
        }
        let needed = self.header_len();
        if needed < MIN_HEADER_LEN {
            return Err(ParseErrorKind::BadDataOffset(needed / 4));
        }
        if available < needed {
            return Err(ParseErrorKind::Truncated { needed, available });
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

    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        self.read_u32(field::SEQ.start)
    }

    /// Acknowledgment number.
    pub fn ack_number(&self) -> u32 {
        self.read_u32(field::ACK.start)
    }

    /// Header length in bytes (data offset × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The 8 classic flag bits (see [`flags`]); the former NS bit is not included.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// All bits of `mask` are set.
    pub fn has_flags(&self, mask: u8) -> bool {
        self.flags() & mask == mask
    }

    /// Receive window (unscaled).
    pub fn window_len(&self) -> u16 {
        self.read_u16(field::WINDOW.start)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM.start)
    }

    /// Urgent pointer.
    pub fn urgent_at(&self) -> u16 {
        self.read_u16(field::URGENT.start)
    }

    /// The header, options included.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// Raw option bytes between the fixed header and the data offset.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[MIN_HEADER_LEN..self.header_len()]
    }

    /// Parsed options; see [`OptionIter`].
    pub fn option_iter(&self) -> OptionIter<'_> {
        OptionIter::new(self.options())
    }

    /// Everything after the header, to the end of the buffer.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Whether the segment checksums right, given the pseudo-header sum (which must cover
    /// this whole buffer's length).
    pub fn verify_checksum(&self, pseudo: Sum) -> bool {
        let mut s = pseudo;
        s.add(self.buffer.as_ref());
        s.fold() == 0xffff
    }

    fn read_u16(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    fn read_u32(&self, at: usize) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the source port.
    pub fn set_src_port(&mut self, port: u16) {
        self.write(field::SRC_PORT.start, &port.to_be_bytes());
    }

    /// Set the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        self.write(field::DST_PORT.start, &port.to_be_bytes());
    }

    /// Set the sequence number.
    pub fn set_seq_number(&mut self, seq: u32) {
        self.write(field::SEQ.start, &seq.to_be_bytes());
    }

    /// Set the acknowledgment number.
    pub fn set_ack_number(&mut self, ack: u32) {
        self.write(field::ACK.start, &ack.to_be_bytes());
    }

    /// Set the data offset from a byte count (a multiple of 4 between 20 and 60 for a valid
    /// segment). The reserved bits and the former NS bit are kept.
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (*b & 0x0f) | (((len / 4) as u8) << 4);
    }

    /// Set the 8 classic flag bits (see [`flags`]).
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Set the receive window.
    pub fn set_window_len(&mut self, window: u16) {
        self.write(field::WINDOW.start, &window.to_be_bytes());
    }

    /// Set the checksum field (see [`Packet::fill_checksum`]).
    pub fn set_checksum(&mut self, checksum: u16) {
        self.write(field::CHECKSUM.start, &checksum.to_be_bytes());
    }

    /// Set the urgent pointer.
    pub fn set_urgent_at(&mut self, urgent: u16) {
        self.write(field::URGENT.start, &urgent.to_be_bytes());
    }

    /// Compute and store the checksum over the whole buffer, given the pseudo-header sum.
    pub fn fill_checksum(&mut self, pseudo: Sum) {
        self.set_checksum(0);
        let mut s = pseudo;
        s.add(self.buffer.as_ref());
        self.set_checksum(s.checksum());
    }

    /// Raw option bytes between the fixed header and the data offset, mutable.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[MIN_HEADER_LEN..end]
    }

    /// Everything after the header, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }

    fn write(&mut self, at: usize, bytes: &[u8]) {
        self.buffer.as_mut()[at..at + bytes.len()].copy_from_slice(bytes);
    }
}

/// Option kinds pvnet names.
pub mod option_kind {
    /// End of Option List.
    pub const EOL: u8 = 0;
    /// No-Operation (padding).
    pub const NOP: u8 = 1;
    /// Maximum Segment Size.
    pub const MSS: u8 = 2;
    /// Window Scale (RFC 7323).
    pub const WINDOW_SCALE: u8 = 3;
    /// SACK permitted (RFC 2018).
    pub const SACK_PERMITTED: u8 = 4;
    /// Selective acknowledgment blocks (RFC 2018).
    pub const SACK: u8 = 5;
    /// Timestamps (RFC 7323).
    pub const TIMESTAMPS: u8 = 8;
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// End of Option List: the options end here.
    EndOfList,
    /// No-Operation.
    Nop,
    /// Maximum Segment Size.
    Mss(u16),
    /// Window scale shift count.
    WindowScale(u8),
    /// SACK permitted.
    SackPermitted,
    /// Selective acknowledgment blocks.
    Sack(SackBlocks<'a>),
    /// Timestamps.
    Timestamps {
        /// Timestamp value.
        tsval: u32,
        /// Timestamp echo reply.
        tsecr: u32,
    },
    /// A well-formed option of a kind not listed above: its kind and data (after the
    /// kind and length bytes).
    Unknown {
        /// Option kind.
        kind: u8,
        /// Option data, after the kind and length bytes.
        data: &'a [u8],
    },
}

/// The blocks of a SACK option (1 to 4 left/right edge pairs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SackBlocks<'a>(&'a [u8]);

impl<'a> SackBlocks<'a> {
    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.0.len() / 8
    }

    /// No blocks (never true for a SACK option the iterator accepted).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(left edge, right edge)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + 'a {
        self.0.chunks_exact(8).map(|c| {
            (
                u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
            )
        })
    }
}

/// A malformed option: its offset in the option bytes and its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadOption {
    /// Offset of the option in the option bytes.
    pub offset: usize,
    /// Its kind byte.
    pub kind: u8,
}

/// Iterator over TCP options.
///
/// Yields `Err` once for a malformed option (length byte missing, below 2, past the end,
/// or wrong for a known kind) and then ends: after a bad length there is no way to know
/// where the next option starts. Ends after End of Option List.
#[derive(Debug, Clone)]
pub struct OptionIter<'a> {
    rest: &'a [u8],
    offset: usize,
}

impl<'a> OptionIter<'a> {
    /// Iterate over raw option bytes (see [`Packet::options`]).
    pub fn new(options: &'a [u8]) -> Self {
        OptionIter {
            rest: options,
            offset: 0,
        }
    }

    fn stop(&mut self) {
        self.rest = &[];
    }
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = Result<TcpOption<'a>, BadOption>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, after_kind) = self.rest.split_first()?;
        let at = self.offset;
        match kind {
            option_kind::EOL => {
                self.stop();
                return Some(Ok(TcpOption::EndOfList));
            }
            option_kind::NOP => {
                self.rest = after_kind;
                self.offset += 1;
                return Some(Ok(TcpOption::Nop));
            }
            _ => {}
        }
        let bad = BadOption { offset: at, kind };
        let len = match after_kind.first() {
            Some(&l) if l >= 2 && usize::from(l) <= self.rest.len() => usize::from(l),
            _ => {
                self.stop();
                return Some(Err(bad));
            }
        };
        let (opt, rest) = self.rest.split_at(len);
        let data = &opt[2..];
        self.rest = rest;
        self.offset += len;
        let parsed = match (kind, data) {
            (option_kind::MSS, &[a, b]) => TcpOption::Mss(u16::from_be_bytes([a, b])),
            (option_kind::WINDOW_SCALE, &[s]) => TcpOption::WindowScale(s),
            (option_kind::SACK_PERMITTED, &[]) => TcpOption::SackPermitted,
            (option_kind::SACK, d) if !d.is_empty() && d.len() % 8 == 0 && d.len() <= 32 => {
                TcpOption::Sack(SackBlocks(d))
            }
            (option_kind::TIMESTAMPS, &[a, b, c, d, e, f, g, h]) => TcpOption::Timestamps {
                tsval: u32::from_be_bytes([a, b, c, d]),
                tsecr: u32::from_be_bytes([e, f, g, h]),
            },
            (
                option_kind::MSS
                | option_kind::WINDOW_SCALE
                | option_kind::SACK_PERMITTED
                | option_kind::SACK
                | option_kind::TIMESTAMPS,
                _,
            ) => {
                self.stop();
                return Some(Err(bad));
            }
            (kind, data) => TcpOption::Unknown { kind, data },
        };
        Some(Ok(parsed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csum;

    // Ports 49152 → 80, seq 0x01020304, ack 0x0a0b0c0d, doff 8 (12 bytes of options),
    // PSH|ACK, window 0xfaf0, urgent 0, options NOP NOP TS(1, 2), payload "hi".
    const SEGMENT: [u8; 34] = [
        0xc0, 0x00, 0x00, 0x50, // ports
        0x01, 0x02, 0x03, 0x04, // seq
        0x0a, 0x0b, 0x0c, 0x0d, // ack
        0x80, 0x18, 0xfa, 0xf0, // doff 8, PSH|ACK, window
        0x00, 0x00, 0x00, 0x00, // checksum, urgent
        0x01, 0x01, 0x08, 0x0a, // NOP NOP TS len 10
        0x00, 0x00, 0x00, 0x01, // tsval
        0x00, 0x00, 0x00, 0x02, // tsecr
        b'h', b'i',
    ];

    #[test]
    fn getters() {
        let p = Packet::new_checked(&SEGMENT[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (49152, 80));
        assert_eq!(p.seq_number(), 0x0102_0304);
        assert_eq!(p.ack_number(), 0x0a0b_0c0d);
        assert_eq!(p.header_len(), 32);
        assert_eq!(p.flags(), PSH | ACK);
        assert!(p.has_flags(ACK) && !p.has_flags(SYN | ACK));
        assert_eq!(p.window_len(), 0xfaf0);
        assert_eq!((p.checksum(), p.urgent_at()), (0, 0));
        assert_eq!(p.options(), &SEGMENT[20..32]);
        assert_eq!(p.payload(), b"hi");
        let opts: Vec<_> = p.option_iter().collect();
        assert_eq!(
            opts,
            [
                Ok(TcpOption::Nop),
                Ok(TcpOption::Nop),
                Ok(TcpOption::Timestamps { tsval: 1, tsecr: 2 })
            ]
        );
    }

    #[test]
    fn setters_round_trip() {
        let mut p = Packet::new_unchecked([0u8; 34]);
        p.set_src_port(49152);
        p.set_dst_port(80);
        p.set_seq_number(0x0102_0304);
        p.set_ack_number(0x0a0b_0c0d);
        p.set_header_len(32);
        p.set_flags(PSH | ACK);
        p.set_window_len(0xfaf0);
        p.set_urgent_at(0);
        p.options_mut()
            .copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        p.payload_mut().copy_from_slice(b"hi");
        assert_eq!(p.into_inner(), SEGMENT);
    }

    #[test]
    fn checksum_round_trip() {
        let pseudo = csum::pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], 6, 34);
        let mut p = Packet::new_unchecked(SEGMENT);
        p.fill_checksum(pseudo);
        assert_ne!(p.checksum(), 0);
        assert!(p.verify_checksum(pseudo));
        p.set_seq_number(5);
        assert!(!p.verify_checksum(pseudo));
    }

    #[test]
    fn impossible_lengths_rejected() {
        assert_eq!(
            Packet::new_checked(&SEGMENT[..19]),
            Err(ParseErrorKind::Truncated {
                needed: 20,
                available: 19
            })
        );
        assert_eq!(
            Packet::new_checked(&SEGMENT[..31]),
            Err(ParseErrorKind::Truncated {
                needed: 32,
                available: 31
            })
        );
        let mut bad = SEGMENT;
        bad[12] = 0x40;
        assert_eq!(
            Packet::new_checked(&bad[..]),
            Err(ParseErrorKind::BadDataOffset(4))
        );
        bad[12] = 0xf0;
        assert_eq!(
            Packet::new_checked(&bad[..]),
            Err(ParseErrorKind::Truncated {
                needed: 60,
                available: 34
            })
        );
        // Header with no payload is fine.
        let p = Packet::new_checked(&SEGMENT[..32]).unwrap();
        assert!(p.payload().is_empty());
    }

    #[test]
    fn options_all_kinds() {
        let opts = [
            2, 4, 0x05, 0xb4, // MSS 1460
            3, 3, 7, // WS 7
            4, 2, // SACK permitted
            5, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, // SACK ×2
            8, 10, 0, 0, 0, 9, 0, 0, 0, 10, // TS
            30, 3, 0xaa, // unknown kind 30 (MPTCP)
            0, 0xff, 0xff, // EOL, then junk that must not be read
        ];
        let got: Vec<_> = OptionIter::new(&opts).collect();
        let sack = match got[3] {
            Ok(TcpOption::Sack(s)) => s,
            ref other => panic!("{other:?}"),
        };
        assert_eq!(sack.len(), 2);
        assert_eq!(sack.iter().collect::<Vec<_>>(), [(1, 2), (3, 4)]);
        assert_eq!(
            got,
            [
                Ok(TcpOption::Mss(1460)),
                Ok(TcpOption::WindowScale(7)),
                Ok(TcpOption::SackPermitted),
                Ok(TcpOption::Sack(sack)),
                Ok(TcpOption::Timestamps {
                    tsval: 9,
                    tsecr: 10
                }),
                Ok(TcpOption::Unknown {
                    kind: 30,
                    data: &[0xaa]
                }),
                Ok(TcpOption::EndOfList),
            ]
        );
    }

    #[test]
    fn options_malformed() {
        let cases: [(&[u8], BadOption); 7] = [
            (&[2], BadOption { offset: 0, kind: 2 }), // no length byte
            (&[1, 2, 4, 5], BadOption { offset: 1, kind: 2 }), // past the end
            (
                &[30, 1],
                BadOption {
                    offset: 0,
                    kind: 30,
                },
            ), // length < 2
            (
                &[30, 0, 1],
                BadOption {
                    offset: 0,
                    kind: 30,
                },
            ), // length 0: would loop
            (&[2, 3, 0], BadOption { offset: 0, kind: 2 }), // MSS of 1 byte
            (&[5, 2], BadOption { offset: 0, kind: 5 }), // empty SACK
            (&[8, 6, 0, 0, 0, 0], BadOption { offset: 0, kind: 8 }),
        ];
        for (bytes, bad) in cases {
            let got: Vec<_> = OptionIter::new(bytes).collect();
            assert_eq!(got.last(), Some(&Err(bad)), "{bytes:?}");
            assert_eq!(got.iter().filter(|o| o.is_err()).count(), 1);
        }
    }
}
