//! virtio_net_hdr: the header that carries offload metadata (partial checksum, GSO) in
//! front of every frame on a tap/tun with `IFF_VNET_HDR`, an AF_PACKET socket with
//! `PACKET_VNET_HDR` or a virtio-net queue.
//!
//! This module reads and writes it. The fields are unchecked input from a peer we do not
//! trust; nothing here interprets them.
//!
//! # Layout
//!
//! | bytes | field                                                  |
//! |-------|--------------------------------------------------------|
//! | 0     | `flags` ([`flags`])                                    |
//! | 1     | `gso_type` ([`gso`])                                   |
//! | 2..4  | `hdr_len`                                              |
//! | 4..6  | `gso_size`                                             |
//! | 6..8  | `csum_start`                                           |
//! | 8..10 | `csum_offset`                                          |
//! | 10..12| `num_buffers` (12-byte header only: mergeable rx / virtio 1.0) |
//!
//! The 16-bit fields are little-endian for virtio 1.0 and for tap with `TUNSETVNETLE`;
//! legacy headers are guest-native, hence [`Endian`].
//!

use core::fmt;

/// `flags` bits.
pub mod flags {
    /// The L4 checksum is partial: sum from `csum_start` to the end into `csum_start +
    /// csum_offset`.
    pub const NEEDS_CSUM: u8 = 1;
    /// The checksums were verified (receive direction).
    pub const DATA_VALID: u8 = 2;
    /// `csum_start`/`csum_offset` carry RSC coalescing counts (VIRTIO_NET_F_RSC_EXT).
    pub const RSC_INFO: u8 = 4;
}

/// `gso_type` values.
pub mod gso {
    pub const NONE: u8 = 0;
    pub const TCPV4: u8 = 1;
    /// UFO: IP fragmentation of one UDP datagram.
    pub const UDP: u8 = 3;
    pub const TCPV6: u8 = 4;
    /// USO: every segment its own UDP datagram.
    pub const UDP_L4: u8 = 5;
    /// Flag bit: the TCP super-frame carries CWR that must only go on the first segment.
    pub const ECN: u8 = 0x80;
}

/// Size of the header on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HdrLen {
    /// 10 bytes: legacy `struct virtio_net_hdr`.
    V10,
    /// 12 bytes: `virtio_net_hdr_mrg_rxbuf` / virtio 1.0, with `num_buffers`.
    V12,
}

impl HdrLen {
    /// Number of bytes.
    pub const fn size(self) -> usize {
        match self {
            HdrLen::V10 => 10,
            HdrLen::V12 => 12,
        }
    }
}

/// Byte order of the 16-bit fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    /// virtio 1.0, tap with TUNSETVNETLE, legacy on little-endian hosts.
    Little,
    /// Legacy header of a big-endian guest (TUNSETVNETBE).
    Big,
}

impl Endian {
    fn read(self, b: [u8; 2]) -> u16 {
        match self {
            Endian::Little => u16::from_le_bytes(b),
            Endian::Big => u16::from_be_bytes(b),
        }
    }

    fn write(self, v: u16) -> [u8; 2] {
        match self {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        }
    }
}

/// A virtio_net_hdr as found on the wire, unchecked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
    /// Only carried by the 12-byte header; 0 when decoded from 10 bytes.
    pub num_buffers: u16,
}

impl VnetHdr {
    /// Decode a header from the start of `buf`.
    pub fn decode(buf: &[u8], len: HdrLen, endian: Endian) -> Result<VnetHdr, VnetError> {
        let n = len.size();
        let Some(b) = buf.get(..n) else {
            return Err(VnetError::HeaderTruncated {
                needed: n,
                available: buf.len(),
            });
        };
        let word = |i: usize| endian.read([b[i], b[i + 1]]);
        Ok(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: word(2),
            gso_size: word(4),
            csum_start: word(6),
            csum_offset: word(8),
            num_buffers: if n == 12 { word(10) } else { 0 },
        })
    }

    /// Encode the header into the start of `out`, returning the number of bytes written.
    /// `num_buffers` is dropped by the 10-byte form.
    pub fn encode(&self, out: &mut [u8], len: HdrLen, endian: Endian) -> Result<usize, VnetError> {
        let n = len.size();
        let available = out.len();
        let Some(b) = out.get_mut(..n) else {
            return Err(VnetError::OutputTooShort {
                needed: n,
                available,
            });
        };
        b[0] = self.flags;
        b[1] = self.gso_type;
        let words = [
            self.hdr_len,
            self.gso_size,
            self.csum_start,
            self.csum_offset,
            self.num_buffers,
        ];
        for (chunk, w) in b[2..].chunks_exact_mut(2).zip(words) {
            chunk.copy_from_slice(&endian.write(w));
        }
        Ok(n)
    }
}

/// Why a header could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VnetError {
    /// The buffer is shorter than the header.
    HeaderTruncated { needed: usize, available: usize },
    /// The output buffer is shorter than the header.
    OutputTooShort { needed: usize, available: usize },
}

impl fmt::Display for VnetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use VnetError::*;
        match *self {
            HeaderTruncated { needed, available } => write!(
                f,
                "virtio_net_hdr truncated: needs {needed} bytes, {available} available"
            ),
            OutputTooShort { needed, available } => write!(
                f,
                "buffer too short for virtio_net_hdr: needs {needed} bytes, {available} available"
            ),
        }
    }
}

impl std::error::Error for VnetError {}

#[cfg(test)]
mod tests {
    use super::*;

    const LE10: [u8; 10] = [0x01, 0x81, 0x36, 0x00, 0xa8, 0x05, 0x22, 0x00, 0x10, 0x00];
    const BE12: [u8; 12] = [
        0x01, 0x81, 0x00, 0x36, 0x05, 0xa8, 0x00, 0x22, 0x00, 0x10, 0x00, 0x03,
    ];

    fn sample(num_buffers: u16) -> VnetHdr {
        VnetHdr {
            flags: flags::NEEDS_CSUM,
            gso_type: gso::TCPV4 | gso::ECN,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            num_buffers,
        }
    }

    #[test]
    fn vnet_decode_le_10() {
        let h = VnetHdr::decode(&LE10, HdrLen::V10, Endian::Little).unwrap();
        assert_eq!(h, sample(0));
    }

    #[test]
    fn vnet_decode_be_12() {
        let h = VnetHdr::decode(&BE12, HdrLen::V12, Endian::Big).unwrap();
        assert_eq!(h, sample(3));
    }

    #[test]
    fn vnet_decode_le_12_and_be_10() {
        let le12 = [1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 0x34, 0x12, 0xff];
        let h = VnetHdr::decode(&le12, HdrLen::V12, Endian::Little).unwrap();
        assert_eq!(
            (h.flags, h.gso_type, h.hdr_len, h.gso_size, h.csum_start),
            (1, 0, 2, 3, 4)
        );
        assert_eq!((h.csum_offset, h.num_buffers), (5, 0x1234));
        let be10 = [0, 0, 0, 2, 0, 3, 0, 4, 0x01, 0x02];
        let h = VnetHdr::decode(&be10, HdrLen::V10, Endian::Big).unwrap();
        assert_eq!((h.hdr_len, h.csum_offset, h.num_buffers), (2, 0x0102, 0));
    }

    #[test]
    fn vnet_decode_extra_bytes_ignored() {
        let mut buf = [0xee; 20];
        buf[..10].copy_from_slice(&LE10);
        assert_eq!(
            VnetHdr::decode(&buf, HdrLen::V10, Endian::Little),
            Ok(sample(0))
        );
    }

    #[test]
    fn vnet_decode_short_buffer() {
        assert_eq!(
            VnetHdr::decode(&BE12[..11], HdrLen::V12, Endian::Big),
            Err(VnetError::HeaderTruncated {
                needed: 12,
                available: 11
            })
        );
        assert_eq!(
            VnetHdr::decode(&[], HdrLen::V10, Endian::Little),
            Err(VnetError::HeaderTruncated {
                needed: 10,
                available: 0
            })
        );
    }

    #[test]
    fn vnet_encode_matches_hand_bytes() {
        let mut out = [0u8; 12];
        assert_eq!(sample(3).encode(&mut out, HdrLen::V12, Endian::Big), Ok(12));
        assert_eq!(out, BE12);
        let mut out = [0xaa_u8; 12];
        assert_eq!(
            sample(3).encode(&mut out, HdrLen::V10, Endian::Little),
            Ok(10)
        );
        assert_eq!(out[..10], LE10);
        assert_eq!(out[10..], [0xaa, 0xaa], "bytes past the header untouched");
    }

    #[test]
    fn vnet_encode_short_buffer() {
        let mut out = [0u8; 9];
        assert_eq!(
            sample(0).encode(&mut out, HdrLen::V10, Endian::Little),
            Err(VnetError::OutputTooShort {
                needed: 10,
                available: 9
            })
        );
    }

    #[test]
    fn vnet_codec_round_trip_all_forms() {
        for len in [HdrLen::V10, HdrLen::V12] {
            for endian in [Endian::Little, Endian::Big] {
                let h = sample(7);
                let mut out = [0u8; 12];
                let n = h.encode(&mut out, len, endian).unwrap();
                assert_eq!(n, len.size());
                let back = VnetHdr::decode(&out[..n], len, endian).unwrap();
                let want = if len == HdrLen::V12 { h } else { sample(0) };
                assert_eq!(back, want);
            }
        }
    }
}
