//! pcapng: a sequence of blocks `type, total length, body, total length`, grouped in
//! sections that each start with a Section Header Block fixing the byte order and
//! numbering their own interfaces from 0.

use std::io::{self, Read, Write};
use std::ops::Range;

use super::{
    read_full, read_up_to, Endian, FileHeader, Interface, PcapError, PcapNgHeader, PcapReader,
    Record, State, Timestamp, TsResolution, WriteError, MAX_CAPLEN,
};

const BT_SECTION_HEADER: u32 = 0x0a0d_0d0a;
const BT_INTERFACE: u32 = 0x0000_0001;
const BT_PACKET_OBSOLETE: u32 = 0x0000_0002;
const BT_SIMPLE_PACKET: u32 = 0x0000_0003;
const BT_ENHANCED_PACKET: u32 = 0x0000_0006;

const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;

const OPT_END: u16 = 0;
const IF_TSRESOL: u16 = 9;
const IF_TSOFFSET: u16 = 14;

/// Smallest block: type, two lengths, empty body.
const MIN_BLOCK_LEN: u32 = 12;
/// Smallest Section Header Block: 12 plus byte-order magic, version, section length.
const MIN_SHB_LEN: u32 = 28;
/// Largest block read into memory: a maximal packet plus room for options.
const MAX_BUFFERED_BLOCK_LEN: u32 = MAX_CAPLEN + 0x1_0000;

/// The section being read.
#[derive(Clone, Copy, Debug)]
pub(super) struct Section {
    endian: Endian,
    /// Reader-wide index of this section's interface 0.
    first_interface: usize,
}

/// Problem with a block, before it is tied to a position in the file.
enum BlockError {
    Io(io::Error),
    Truncated {
        what: &'static str,
        got: u64,
        needed: u64,
    },
    Bad(String),
}

impl From<io::Error> for BlockError {
    fn from(e: io::Error) -> BlockError {
        BlockError::Io(e)
    }
}

/// A packet found in the record buffer.
struct Packet {
    interface_id: u32,
    interface: Interface,
    ts: Timestamp,
    orig_len: u32,
    data: Range<usize>,
}

/// Read the first section header; its four type bytes are already consumed.
pub(super) fn open<R: Read>(mut inner: R) -> Result<PcapReader<R>, PcapError> {
    let mut pos = 4u64;
    let mut buf = Vec::new();
    let mut len_raw = [0u8; 4];
    let got = read_full(&mut inner, &mut len_raw)?;
    pos += got as u64;
    if got < len_raw.len() {
        return Err(PcapError::TruncatedHeader {
            got: pos,
            needed: u64::from(MIN_SHB_LEN),
        });
    }
    let endian = match read_section_header(&mut inner, &mut pos, &mut buf, len_raw) {
        Ok(endian) => endian,
        Err(BlockError::Io(e)) => return Err(PcapError::Io(e)),
        Err(BlockError::Truncated { got, needed, .. }) => {
            return Err(PcapError::TruncatedHeader { got, needed })
        }
        Err(BlockError::Bad(reason)) => return Err(PcapError::BadHeader(reason)),
    };
    Ok(PcapReader {
        inner,
        buf,
        pos,
        records: 0,
        header: FileHeader::PcapNg(PcapNgHeader {
            big_endian: endian.big,
        }),
        interfaces: Vec::new(),
        state: State::Ng(Section {
            endian,
            first_interface: 0,
        }),
    })
}

/// Check a block's total length; `min` is the smallest length for its type.
fn check_len(len: u32, min: u32) -> Result<(), BlockError> {
    if len < min.max(MIN_BLOCK_LEN) || len % 4 != 0 {
        return Err(BlockError::Bad(format!(
            "block total length {len} is invalid (must be a multiple of 4, at least {})",
            min.max(MIN_BLOCK_LEN)
        )));
    }
    Ok(())
}

/// Read the rest of a Section Header Block whose type and `len_raw` are consumed. Leaves
/// the body after the byte-order magic, and the trailing length, in `buf`.
fn read_section_header<R: Read>(
    r: &mut R,
    pos: &mut u64,
    buf: &mut Vec<u8>,
    len_raw: [u8; 4],
) -> Result<Endian, BlockError> {
    let mut bom = [0u8; 4];
    let got = read_full(r, &mut bom)?;
    *pos += got as u64;
    if got < bom.len() {
        return Err(BlockError::Truncated {
            what: "section header block",
            got: 8 + got as u64,
            needed: u64::from(MIN_SHB_LEN),
        });
    }
    let endian = match u32::from_be_bytes(bom) {
        BYTE_ORDER_MAGIC => Endian { big: true },
        m if m.swap_bytes() == BYTE_ORDER_MAGIC => Endian { big: false },
        _ => {
            return Err(BlockError::Bad(format!(
                "section header byte-order magic is {:02x} {:02x} {:02x} {:02x}, \
                 expected 1a2b3c4d in either byte order",
                bom[0], bom[1], bom[2], bom[3]
            )))
        }
    };
    let len = endian.u32(len_raw);
    check_len(len, MIN_SHB_LEN)?;
    if len > MAX_BUFFERED_BLOCK_LEN {
        return Err(BlockError::Bad(format!(
            "section header block length {len} is implausibly large"
        )));
    }
    let rest = (len - 12) as usize;
    let got = read_up_to(r, buf, rest)?;
    *pos += got as u64;
    if got < rest {
        return Err(BlockError::Truncated {
            what: "section header block",
            got: 12 + got as u64,
            needed: u64::from(len),
        });
    }
    let rest = &buf[..rest];
    check_trailer(endian, rest, len)?;
    let major = endian.u16_at(rest, 0);
    let minor = endian.u16_at(rest, 2);
    if major != 1 {
        return Err(BlockError::Bad(format!(
            "unsupported pcapng version {major}.{minor} (expected 1.0)"
        )));
    }
    Ok(endian)
}

/// Compare the trailing length (last four bytes of `rest`) with the leading one.
fn check_trailer(endian: Endian, rest: &[u8], len: u32) -> Result<(), BlockError> {
    let trailer = endian.u32_at(rest, rest.len() - 4);
    if trailer != len {
        return Err(BlockError::Bad(format!(
            "trailing block length {trailer} does not match leading block length {len}"
        )));
    }
    Ok(())
}

fn block_name(block_type: u32) -> &'static str {
    match block_type {
        BT_INTERFACE => "interface description block",
        BT_PACKET_OBSOLETE => "packet block",
        BT_SIMPLE_PACKET => "simple packet block",
        BT_ENHANCED_PACKET => "enhanced packet block",
        BT_SECTION_HEADER => "section header block",
        _ => "block",
    }
}

impl<R: Read> PcapReader<R> {
    pub(super) fn next_ng(&mut self) -> Result<Option<Record<'_>>, PcapError> {
        let packet = loop {
            let start = self.pos;
            match self.next_block() {
                Ok(None) => return Ok(None),
                Ok(Some(Some(packet))) => break packet,
                Ok(Some(None)) => {}
                Err(BlockError::Io(e)) => return Err(PcapError::Io(e)),
                Err(BlockError::Truncated { what, got, needed }) => {
                    return Err(self.truncated(start, what, got, needed))
                }
                Err(BlockError::Bad(reason)) => return Err(self.corrupt(start, reason)),
            }
        };
        self.records += 1;
        Ok(Some(Record {
            interface_id: packet.interface_id,
            interface: packet.interface,
            ts: packet.ts,
            orig_len: packet.orig_len,
            data: self.buf.get(packet.data).unwrap_or_default(),
        }))
    }

    fn section(&self) -> Section {
        match self.state {
            State::Ng(section) => section,
            // Only pcapng readers get here, and they always have a section.
            State::Classic { endian, .. } => Section {
                endian,
                first_interface: 0,
            },
        }
    }

    /// Consume one block: `None` at a clean end of file, `Some(None)` for a block that is
    /// not a packet, `Some(Some(packet))` with the packet's bytes in the record buffer.
    fn next_block(&mut self) -> Result<Option<Option<Packet>>, BlockError> {
        let mut head = [0u8; 8];
        let got = self.fill(&mut head)?;
        if got == 0 {
            return Ok(None);
        }
        if got < head.len() {
            return Err(BlockError::Truncated {
                what: "block header",
                got: got as u64,
                needed: u64::from(MIN_BLOCK_LEN),
            });
        }
        let [t0, t1, t2, t3, l0, l1, l2, l3] = head;
        if u32::from_be_bytes([t0, t1, t2, t3]) == BT_SECTION_HEADER {
            let endian = read_section_header(
                &mut self.inner,
                &mut self.pos,
                &mut self.buf,
                [l0, l1, l2, l3],
            )?;
            self.state = State::Ng(Section {
                endian,
                first_interface: self.interfaces.len(),
            });
            return Ok(Some(None));
        }
        let section = self.section();
        let endian = section.endian;
        let block_type = endian.u32([t0, t1, t2, t3]);
        let len = endian.u32([l0, l1, l2, l3]);
        let what = block_name(block_type);
        let min = match block_type {
            BT_INTERFACE => 20,
            BT_PACKET_OBSOLETE | BT_ENHANCED_PACKET => 32,
            BT_SIMPLE_PACKET => 16,
            _ => {
                check_len(len, MIN_BLOCK_LEN)?;
                self.skip_block(len)?;
                return Ok(Some(None));
            }
        };
        check_len(len, min)?;
        if len > MAX_BUFFERED_BLOCK_LEN {
            return Err(BlockError::Bad(format!(
                "{what} length {len} is over the {MAX_BUFFERED_BLOCK_LEN}-byte limit"
            )));
        }
        let rest = (len - 8) as usize;
        let got = self.fill_buf(rest)?;
        if got < rest {
            return Err(BlockError::Truncated {
                what,
                got: 8 + got as u64,
                needed: u64::from(len),
            });
        }
        check_trailer(endian, &self.buf[..rest], len)?;
        let body_len = rest - 4;
        match block_type {
            BT_INTERFACE => {
                let interface = parse_interface(endian, &self.buf[..body_len])?;
                self.interfaces.push(interface);
                Ok(Some(None))
            }
            BT_SIMPLE_PACKET => self.simple_packet(section, body_len).map(Some),
            _ => self.packet(section, block_type, body_len).map(Some),
        }
    }

    /// Skip a block of total length `len` whose first 8 bytes are consumed.
    fn skip_block(&mut self, len: u32) -> Result<(), BlockError> {
        let body = u64::from(len - 12);
        let skipped = io::copy(&mut (&mut self.inner).take(body), &mut io::sink())?;
        self.pos += skipped;
        if skipped < body {
            return Err(BlockError::Truncated {
                what: "block",
                got: 8 + skipped,
                needed: u64::from(len),
            });
        }
        let mut trailer = [0u8; 4];
        let got = self.fill(&mut trailer)?;
        if got < trailer.len() {
            return Err(BlockError::Truncated {
                what: "block",
                got: 8 + skipped + got as u64,
                needed: u64::from(len),
            });
        }
        check_trailer(self.section().endian, &trailer, len)
    }

    /// Look up a section-local interface id.
    fn interface(&self, section: Section, local_id: u32) -> Result<(u32, Interface), BlockError> {
        let defined = self.interfaces.len() - section.first_interface;
        let found = usize::try_from(local_id)
            .ok()
            .filter(|&id| id < defined)
            .and_then(|id| {
                let global = section.first_interface + id;
                Some((u32::try_from(global).ok()?, *self.interfaces.get(global)?))
            });
        found.ok_or_else(|| {
            BlockError::Bad(format!(
                "packet refers to interface {local_id}, but its section defines {defined} \
                 interface(s)"
            ))
        })
    }

    /// Enhanced Packet Block, or the obsolete Packet Block with the same layout except a
    /// 16-bit interface id (followed by a drop count).
    fn packet(
        &self,
        section: Section,
        block_type: u32,
        body_len: usize,
    ) -> Result<Option<Packet>, BlockError> {
        let e = section.endian;
        let body = &self.buf[..body_len];
        let local_id = if block_type == BT_PACKET_OBSOLETE {
            u32::from(e.u16_at(body, 0))
        } else {
            e.u32_at(body, 0)
        };
        let ts_high = e.u32_at(body, 4);
        let ts_low = e.u32_at(body, 8);
        let caplen = e.u32_at(body, 12);
        let orig_len = e.u32_at(body, 16);
        if caplen > MAX_CAPLEN {
            return Err(BlockError::Bad(format!(
                "captured length {caplen} is over the {MAX_CAPLEN}-byte limit"
            )));
        }
        let data = 20..20 + caplen as usize;
        if data.end > body_len {
            return Err(BlockError::Bad(format!(
                "captured length {caplen} overruns the {} bytes of the {}",
                body_len - 20,
                block_name(block_type)
            )));
        }
        let (interface_id, interface) = self.interface(section, local_id)?;
        let ticks = (u64::from(ts_high) << 32) | u64::from(ts_low);
        Ok(Some(Packet {
            interface_id,
            interface,
            ts: Timestamp::new(ticks, interface.resolution),
            orig_len,
            data,
        }))
    }

    /// Simple Packet Block: original length, then data captured up to the snapshot length
    /// of the section's first interface; no timestamp.
    fn simple_packet(
        &self,
        section: Section,
        body_len: usize,
    ) -> Result<Option<Packet>, BlockError> {
        let orig_len = section.endian.u32_at(&self.buf, 0);
        let (interface_id, interface) = self.interface(section, 0)?;
        let mut caplen = (body_len - 4).min(orig_len as usize);
        if interface.snaplen != 0 {
            caplen = caplen.min(interface.snaplen as usize);
        }
        Ok(Some(Packet {
            interface_id,
            interface,
            ts: Timestamp::new(0, interface.resolution),
            orig_len,
            data: 4..4 + caplen,
        }))
    }
}

/// Interface Description Block body: link type, reserved, snaplen, options.
fn parse_interface(e: Endian, body: &[u8]) -> Result<Interface, BlockError> {
    let mut interface = Interface::new(e.u16_at(body, 0), e.u32_at(body, 4));
    let mut opts = body.get(8..).unwrap_or_default();
    while opts.len() >= 4 {
        let code = e.u16_at(opts, 0);
        let len = usize::from(e.u16_at(opts, 2));
        if code == OPT_END {
            break;
        }
        let value = opts.get(4..4 + len).ok_or_else(|| {
            BlockError::Bad(format!(
                "interface option {code} of {len} bytes overruns its block"
            ))
        })?;
        match (code, value) {
            (IF_TSRESOL, &[byte]) => {
                interface.resolution = TsResolution::from_if_tsresol(byte).ok_or_else(|| {
                    BlockError::Bad(format!(
                        "interface timestamp resolution if_tsresol={byte:#04x} is too fine \
                         for 64-bit timestamps"
                    ))
                })?;
            }
            (IF_TSOFFSET, &[b0, b1, b2, b3, b4, b5, b6, b7]) => {
                interface.ts_offset = e.u64([b0, b1, b2, b3, b4, b5, b6, b7]) as i64;
            }
            (IF_TSRESOL | IF_TSOFFSET, _) => {
                return Err(BlockError::Bad(format!(
                    "interface option {code} has a bad length {len}"
                )))
            }
            _ => {}
        }
        let padded = (4 + len + 3) & !3;
        opts = opts.get(padded..).unwrap_or_default();
    }
    Ok(interface)
}

pub(super) fn write_section_header<W: Write>(w: &mut W, e: Endian) -> io::Result<()> {
    let mut raw = [0u8; MIN_SHB_LEN as usize];
    raw[0..4].copy_from_slice(&e.put_u32(BT_SECTION_HEADER));
    raw[4..8].copy_from_slice(&e.put_u32(MIN_SHB_LEN));
    raw[8..12].copy_from_slice(&e.put_u32(BYTE_ORDER_MAGIC));
    raw[12..14].copy_from_slice(&e.put_u16(1));
    raw[14..16].copy_from_slice(&e.put_u16(0));
    // Section length unknown: -1.
    raw[16..24].copy_from_slice(&e.put_u64(u64::MAX));
    raw[24..28].copy_from_slice(&e.put_u32(MIN_SHB_LEN));
    w.write_all(&raw)
}

fn write_interface<W: Write>(w: &mut W, e: Endian, interface: &Interface) -> io::Result<()> {
    // Header (8) + link type, reserved, snaplen (8) + options (up to 4+4, 4+8, 4) + trailer.
    let mut raw = [0u8; 48];
    let mut at = 16;
    let mut option = |raw: &mut [u8; 48], code: u16, value: &[u8]| {
        raw[at..at + 2].copy_from_slice(&e.put_u16(code));
        raw[at + 2..at + 4].copy_from_slice(&e.put_u16(value.len() as u16));
        raw[at + 4..at + 4 + value.len()].copy_from_slice(value);
        at += 4 + ((value.len() + 3) & !3);
    };
    let mut any = false;
    if interface.resolution != TsResolution::MICROS {
        option(&mut raw, IF_TSRESOL, &[interface.resolution.if_tsresol()]);
        any = true;
    }
    if interface.ts_offset != 0 {
        option(
            &mut raw,
            IF_TSOFFSET,
            &e.put_u64(interface.ts_offset as u64),
        );
        any = true;
    }
    if any {
        option(&mut raw, OPT_END, &[]);
    }
    let len = at + 4;
    raw[0..4].copy_from_slice(&e.put_u32(BT_INTERFACE));
    raw[4..8].copy_from_slice(&e.put_u32(len as u32));
    raw[8..10].copy_from_slice(&e.put_u16(interface.link_type));
    raw[12..16].copy_from_slice(&e.put_u32(interface.snaplen));
    raw[at..len].copy_from_slice(&e.put_u32(len as u32));
    w.write_all(&raw[..len])
}

pub(super) fn write_record<W: Write>(
    w: &mut W,
    e: Endian,
    interfaces: &mut Vec<(u32, Interface)>,
    record: &Record<'_>,
) -> Result<(), WriteError> {
    let key = (record.interface_id, record.interface);
    let out_id = match interfaces.iter().position(|k| *k == key) {
        Some(id) => id,
        None => {
            write_interface(w, e, &record.interface)?;
            interfaces.push(key);
            interfaces.len() - 1
        }
    };
    let out_id =
        u32::try_from(out_id).map_err(|_| WriteError::Unwritable("too many interfaces".into()))?;
    let ts = record
        .ts
        .to_resolution(record.interface.resolution)
        .ok_or_else(|| {
            WriteError::Unwritable(format!(
                "timestamp {:?} does not fit in 64 bits of {:?}",
                record.ts, record.interface.resolution
            ))
        })?;
    // The caller checked the length against MAX_CAPLEN.
    let caplen = record.data.len() as u32;
    let pad = (4 - caplen % 4) % 4;
    let len = 32 + caplen + pad;
    let mut raw = [0u8; 28];
    raw[0..4].copy_from_slice(&e.put_u32(BT_ENHANCED_PACKET));
    raw[4..8].copy_from_slice(&e.put_u32(len));
    raw[8..12].copy_from_slice(&e.put_u32(out_id));
    raw[12..16].copy_from_slice(&e.put_u32((ts.ticks >> 32) as u32));
    raw[16..20].copy_from_slice(&e.put_u32(ts.ticks as u32));
    raw[20..24].copy_from_slice(&e.put_u32(caplen));
    raw[24..28].copy_from_slice(&e.put_u32(record.orig_len));
    w.write_all(&raw)?;
    w.write_all(record.data)?;
    w.write_all(&[0u8; 3][..pad as usize])?;
    w.write_all(&e.put_u32(len))?;
    Ok(())
}
