//! Classic libpcap format: a 24-byte file header, then records of a 16-byte header and
//! the captured bytes, all in the byte order of the magic number.

use std::io::{Read, Write};

use super::{
    read_full, ClassicTs, Endian, FileHeader, Interface, PcapError, PcapHeader, PcapReader, Record,
    State, Timestamp, WriteError, MAX_CAPLEN,
};

const FILE_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;

/// Read the rest of the file header after the four `magic` bytes.
pub(super) fn open<R: Read>(mut inner: R, magic: [u8; 4]) -> Result<PcapReader<R>, PcapError> {
    let mut raw = [0u8; FILE_HEADER_LEN];
    raw[..4].copy_from_slice(&magic);
    let got = read_full(&mut inner, &mut raw[4..])?;
    if got < FILE_HEADER_LEN - 4 {
        return Err(PcapError::TruncatedHeader {
            got: (got + 4) as u64,
            needed: FILE_HEADER_LEN as u64,
        });
    }
    // The magic reads as a1b2xxxx in the writer's byte order.
    let big_endian = magic[0] == 0xa1;
    let endian = Endian { big: big_endian };
    let nanos = endian.u32_at(&raw, 0) == MAGIC_NANOS;
    let header = PcapHeader {
        big_endian,
        nanos,
        version_major: endian.u16_at(&raw, 4),
        version_minor: endian.u16_at(&raw, 6),
        thiszone: endian.u32_at(&raw, 8) as i32,
        sigfigs: endian.u32_at(&raw, 12),
        snaplen: endian.u32_at(&raw, 16),
        link_type_field: endian.u32_at(&raw, 20),
    };
    if header.version_major != 2 {
        return Err(PcapError::BadHeader(format!(
            "unsupported pcap version {}.{} (expected 2.4)",
            header.version_major, header.version_minor
        )));
    }
    Ok(PcapReader {
        inner,
        buf: Vec::new(),
        pos: FILE_HEADER_LEN as u64,
        records: 0,
        header: FileHeader::Pcap(header),
        interfaces: vec![header.interface()],
        state: State::Classic {
            endian,
            interface: header.interface(),
        },
    })
}

impl<R: Read> PcapReader<R> {
    pub(super) fn next_classic(
        &mut self,
        endian: Endian,
        interface: Interface,
    ) -> Result<Option<Record<'_>>, PcapError> {
        let start = self.pos;
        let mut raw = [0u8; RECORD_HEADER_LEN];
        let got = self.fill(&mut raw)?;
        if got == 0 {
            return Ok(None);
        }
        let needed_header = RECORD_HEADER_LEN as u64;
        if got < RECORD_HEADER_LEN {
            return Err(self.truncated(start, "record header", got as u64, needed_header));
        }
        let secs = endian.u32_at(&raw, 0);
        let frac = endian.u32_at(&raw, 4);
        let caplen = endian.u32_at(&raw, 8);
        let orig_len = endian.u32_at(&raw, 12);
        if caplen > MAX_CAPLEN {
            return Err(self.corrupt(
                start,
                format!("captured length {caplen} is over the {MAX_CAPLEN}-byte limit"),
            ));
        }
        let got = self.fill_buf(caplen as usize)?;
        if got < caplen as usize {
            return Err(self.truncated(
                start,
                "record",
                needed_header + got as u64,
                needed_header + u64::from(caplen),
            ));
        }
        // A sub-second field of a second or more (malformed, but seen) is kept as it is,
        // so that the record is written back byte for byte.
        let Some(ts) = Timestamp::from_classic(secs, frac, interface.resolution) else {
            // Unreachable: 32-bit fields of micro- or nanoseconds always fit in 64 bits.
            return Err(self.corrupt(start, format!("timestamp {secs}.{frac} is out of range")));
        };
        self.records += 1;
        Ok(Some(Record {
            interface_id: 0,
            interface,
            ts,
            orig_len,
            data: &self.buf[..caplen as usize],
        }))
    }
}

pub(super) fn write_header<W: Write>(w: &mut W, h: &PcapHeader) -> std::io::Result<()> {
    let e = Endian { big: h.big_endian };
    let magic = if h.nanos { MAGIC_NANOS } else { MAGIC_MICROS };
    let mut raw = [0u8; FILE_HEADER_LEN];
    raw[0..4].copy_from_slice(&e.put_u32(magic));
    raw[4..6].copy_from_slice(&e.put_u16(h.version_major));
    raw[6..8].copy_from_slice(&e.put_u16(h.version_minor));
    raw[8..12].copy_from_slice(&e.put_u32(h.thiszone as u32));
    raw[12..16].copy_from_slice(&e.put_u32(h.sigfigs));
    raw[16..20].copy_from_slice(&e.put_u32(h.snaplen));
    raw[20..24].copy_from_slice(&e.put_u32(h.link_type_field));
    w.write_all(&raw)
}

pub(super) fn write_record<W: Write>(
    w: &mut W,
    h: &PcapHeader,
    record: &Record<'_>,
) -> Result<(), WriteError> {
    if record.interface.link_type != h.link_type() {
        return Err(WriteError::Unwritable(format!(
            "link type {} differs from the file's link type {} (classic pcap has one)",
            record.interface.link_type,
            h.link_type()
        )));
    }
    let ts = record.ts.to_resolution(h.resolution()).ok_or_else(|| {
        WriteError::Unwritable(format!("timestamp {:?} is out of range", record.ts))
    })?;
    let ClassicTs { secs, frac } = ts.classic_fields().ok_or_else(|| {
        WriteError::Unwritable(format!(
            "timestamp {} s is past the 32-bit seconds of classic pcap",
            ts.secs()
        ))
    })?;
    // The caller checked the length against MAX_CAPLEN.
    let caplen = record.data.len() as u32;
    let e = Endian { big: h.big_endian };
    let mut raw = [0u8; RECORD_HEADER_LEN];
    raw[0..4].copy_from_slice(&e.put_u32(secs));
    raw[4..8].copy_from_slice(&e.put_u32(frac));
    raw[8..12].copy_from_slice(&e.put_u32(caplen));
    raw[12..16].copy_from_slice(&e.put_u32(record.orig_len));
    w.write_all(&raw)?;
    w.write_all(record.data)?;
    Ok(())
}
