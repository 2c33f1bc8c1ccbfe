//! pcap and pcapng capture files: a streaming reader and a writer.
//!
//! [`PcapReader`] reads classic pcap (both byte orders, microsecond and nanosecond
//! variants) and pcapng (any number of sections and interfaces) from any [`Read`]. It keeps
//! one record buffer and hands out borrowed [`Record`]s, so the hot path does not allocate.
//! Wrap files in a [`std::io::BufReader`]; the reader issues small reads.
//!
//! [`PcapWriter`] writes the same format as an input, so a tool can read a capture,
//! transform packets and write a capture that opens exactly like the original:
//!
//! ```no_run
//! # fn main() -> Result<(), pvnet_linux::pcap::PcapError> {
//! use std::io::{BufReader, BufWriter};
//! use pvnet_linux::pcap::{PcapReader, PcapWriter};
//!
//! let input = BufReader::new(std::fs::File::open("in.pcapng")?);
//! let output = BufWriter::new(std::fs::File::create("out.pcapng")?);
//! let mut reader = PcapReader::new(input)?;
//! let mut writer = PcapWriter::like(&reader, output)?;
//! while let Some(record) = reader.next_record()? {
//!     writer.write_record(&record)?;
//! }
//! writer.finish()?;
//! # Ok(())
//! # }
//! ```
//!
//! Timestamps are kept in the units of the file (raw ticks plus a [`TsResolution`]), so
//! they round-trip bit-exactly through read and write; so do the malformed classic pcap
//! timestamps whose sub-second field holds a second or more ([`ClassicTs`]).

#![deny(unsafe_code)]

use std::io::{self, Read, Write};
use std::time::Duration;

mod classic;
mod ng;

/// Link type of Ethernet frames (`LINKTYPE_ETHERNET`).
pub const LINKTYPE_ETHERNET: u16 = 1;
/// Link type of raw IPv4/IPv6 packets without a link-layer header (`LINKTYPE_RAW`).
pub const LINKTYPE_RAW: u16 = 101;

/// Largest captured length accepted for one packet (64 MiB). Anything larger is treated as
/// a corrupt record rather than an allocation request.
pub const MAX_CAPLEN: u32 = 0x0400_0000;

/// Errors from reading or writing a capture file.
///
/// Record numbers count packets from 1, as a packet analyser numbers frames. Byte offsets
/// are from the start of the file.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// The underlying reader or writer failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The input holds no bytes at all, so not even a file header. Tools may treat this as
    /// a capture with no packets (Wireshark's do); it has no format of its own.
    #[error("the file is empty (0 bytes): it has no pcap or pcapng file header")]
    Empty,
    /// The first four bytes are neither a pcap nor a pcapng magic number.
    #[error("not a pcap or pcapng file: {found} (expected magic a1b2c3d4, a1b23c4d or 0a0d0d0a)")]
    NotACapture {
        /// What the file starts with, for the message.
        found: String,
    },
    /// The file header (pcap) or first section header (pcapng) is invalid.
    #[error("bad capture file header: {0}")]
    BadHeader(String),
    /// The file ends inside the file header.
    #[error("truncated capture file header: file ends after {got} of {needed} bytes")]
    TruncatedHeader {
        /// Bytes present.
        got: u64,
        /// Bytes the header needs.
        needed: u64,
    },
    /// The file ends inside a record or block.
    #[error(
        "capture truncated at byte offset {offset} while reading record {record}: \
         {what} ends after {got} of {needed} bytes"
    )]
    Truncated {
        /// Number of the record being read (previous ones were returned).
        record: u64,
        /// File offset of the start of the incomplete record or block.
        offset: u64,
        /// What is incomplete ("record", "enhanced packet block", ...).
        what: &'static str,
        /// Bytes of it present in the file.
        got: u64,
        /// Bytes it needs.
        needed: u64,
    },
    /// A record or block is malformed.
    #[error("corrupt capture at byte offset {offset} while reading record {record}: {reason}")]
    Corrupt {
        /// Number of the record being read (previous ones were returned).
        record: u64,
        /// File offset of the start of the bad record or block.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A record cannot be represented in the output format.
    #[error("cannot write record {record}: {reason}")]
    Unwritable {
        /// Number of the record being written, from 1.
        record: u64,
        /// Why.
        reason: String,
    },
}

/// Capture file format, as told by the first four bytes of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Classic libpcap format.
    Pcap {
        /// Nanosecond timestamps (magic a1b23c4d) instead of microseconds (a1b2c3d4).
        nanos: bool,
        /// Fields are big-endian.
        big_endian: bool,
    },
    /// pcapng (byte order is per section).
    PcapNg,
}

impl Format {
    /// Recognise a capture format from the first four bytes of a file.
    pub fn detect(magic: [u8; 4]) -> Option<Format> {
        let pcap = |nanos, big_endian| Some(Format::Pcap { nanos, big_endian });
        match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] => pcap(false, false),
            [0xa1, 0xb2, 0xc3, 0xd4] => pcap(false, true),
            [0x4d, 0x3c, 0xb2, 0xa1] => pcap(true, false),
            [0xa1, 0xb2, 0x3c, 0x4d] => pcap(true, true),
            [0x0a, 0x0d, 0x0d, 0x0a] => Some(Format::PcapNg),
            _ => None,
        }
    }
}

/// Classic pcap file header, kept whole so that a written file matches its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PcapHeader {
    /// Fields are big-endian.
    pub big_endian: bool,
    /// Nanosecond timestamps.
    pub nanos: bool,
    /// Format major version (2).
    pub version_major: u16,
    /// Format minor version (4).
    pub version_minor: u16,
    /// Historic time zone correction, normally 0.
    pub thiszone: i32,
    /// Historic timestamp accuracy, normally 0.
    pub sigfigs: u32,
    /// Largest captured length the capture was taken with.
    pub snaplen: u32,
    /// Link type field: link type in the low 16 bits, FCS information in the high bits.
    pub link_type_field: u32,
}

impl PcapHeader {
    /// A little-endian version 2.4 header.
    pub fn new(link_type: u16, snaplen: u32, nanos: bool) -> PcapHeader {
        PcapHeader {
            big_endian: false,
            nanos,
            version_major: 2,
            version_minor: 4,
            thiszone: 0,
            sigfigs: 0,
            snaplen,
            link_type_field: u32::from(link_type),
        }
    }

    /// The link type of every packet in the file.
    pub fn link_type(&self) -> u16 {
        // The low 16 bits; the rest carries FCS length information.
        (self.link_type_field & 0xffff) as u16
    }

    /// Timestamp resolution of the file.
    pub fn resolution(&self) -> TsResolution {
        if self.nanos {
            TsResolution::NANOS
        } else {
            TsResolution::MICROS
        }
    }

    /// The single interface every packet of a classic file belongs to.
    pub fn interface(&self) -> Interface {
        Interface {
            link_type: self.link_type(),
            snaplen: self.snaplen,
            resolution: self.resolution(),
            ts_offset: 0,
        }
    }
}

/// pcapng section header information used for writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PcapNgHeader {
    /// Fields of the (first) section are big-endian.
    pub big_endian: bool,
}

/// What a writer needs to produce a file in the same format as an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileHeader {
    /// Classic pcap.
    Pcap(PcapHeader),
    /// pcapng.
    PcapNg(PcapNgHeader),
}

impl FileHeader {
    /// The format this header describes.
    pub fn format(&self) -> Format {
        match self {
            FileHeader::Pcap(h) => Format::Pcap {
                nanos: h.nanos,
                big_endian: h.big_endian,
            },
            FileHeader::PcapNg(_) => Format::PcapNg,
        }
    }
}

/// Units of a timestamp: 10^-n or 2^-n seconds, encoded as the pcapng `if_tsresol` byte.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TsResolution(u8);

impl TsResolution {
    /// Microseconds, the pcapng default and classic pcap.
    pub const MICROS: TsResolution = TsResolution(6);
    /// Nanoseconds.
    pub const NANOS: TsResolution = TsResolution(9);

    /// Units of 10^-`exp` seconds; `None` if 10^`exp` does not fit in 64 bits.
    pub fn pow10(exp: u8) -> Option<TsResolution> {
        (exp <= 19).then_some(TsResolution(exp))
    }

    /// Units of 2^-`exp` seconds; `None` if 2^`exp` does not fit in 64 bits.
    pub fn pow2(exp: u8) -> Option<TsResolution> {
        (exp <= 63).then_some(TsResolution(0x80 | exp))
    }

    /// Decode a pcapng `if_tsresol` option value.
    pub fn from_if_tsresol(byte: u8) -> Option<TsResolution> {
        if byte & 0x80 == 0 {
            TsResolution::pow10(byte)
        } else {
            TsResolution::pow2(byte & 0x7f)
        }
    }

    /// The pcapng `if_tsresol` option value.
    pub fn if_tsresol(self) -> u8 {
        self.0
    }

    /// Timestamp units per second.
    pub fn units_per_sec(self) -> u64 {
        let exp = u32::from(self.0 & 0x7f);
        if self.0 & 0x80 == 0 {
            10u64.pow(exp)
        } else {
            1u64 << exp
        }
    }
}

impl std::fmt::Debug for TsResolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 & 0x80 == 0 {
            write!(f, "TsResolution(10^-{})", self.0)
        } else {
            write!(f, "TsResolution(2^-{})", self.0 & 0x7f)
        }
    }
}

/// A packet timestamp as stored in the file: a tick count since the Unix epoch (plus the
/// interface's `if_tsoffset`, see [`Interface::ts_offset`]) in units of `resolution`.
///
/// Equal timestamps are stored alike: one that keeps [`ClassicTs`] fields differs from
/// one of the same `ticks` without them. Compare `ticks` (in one resolution) to compare
/// instants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timestamp {
    /// Ticks since the epoch.
    pub ticks: u64,
    /// Length of a tick.
    pub resolution: TsResolution,
    /// The two fields of a classic pcap record whose sub-second field holds a second or
    /// more, as stored; `None` for every other timestamp. See [`Timestamp::from_classic`].
    pub classic: Option<ClassicTs>,
}

/// The seconds and sub-second fields of a classic pcap record header, kept as stored when
/// the sub-second field holds a second or more.
///
/// Such a record is malformed, but seen (and read by libpcap and Wireshark, which add
/// the fields up). Normalising it would change the bytes of every copy a tool writes, and
/// when the seconds field is already at its maximum the sum cannot be written back into
/// 32 bits at all; keeping the fields lets a classic pcap writer reproduce them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClassicTs {
    /// Seconds field.
    pub secs: u32,
    /// Sub-second field, in the file's units (microseconds or nanoseconds).
    pub frac: u32,
}

impl Timestamp {
    /// A timestamp of `ticks` units of `resolution`.
    pub const fn new(ticks: u64, resolution: TsResolution) -> Timestamp {
        Timestamp {
            ticks,
            resolution,
            classic: None,
        }
    }

    /// The timestamp held by the seconds and sub-second fields of a classic pcap record
    /// (the sub-second field counts units of `resolution`); `None` if the instant does not
    /// fit in 64 bits of `resolution`.
    ///
    /// `ticks` is always the instant the fields add up to. When the sub-second field
    /// holds a second or more, the fields are also kept as they are ([`ClassicTs`]), and
    /// a classic pcap writer with the same resolution writes them back unchanged.
    pub fn from_classic(secs: u32, frac: u32, resolution: TsResolution) -> Option<Timestamp> {
        let units = resolution.units_per_sec();
        let ticks = u64::from(secs)
            .checked_mul(units)?
            .checked_add(u64::from(frac))?;
        let classic = (u64::from(frac) >= units).then_some(ClassicTs { secs, frac });
        Some(Timestamp {
            ticks,
            resolution,
            classic,
        })
    }

    /// The seconds and sub-second fields a classic pcap record stores this timestamp in:
    /// the kept fields if they still add up to `ticks`, else the normalised split; `None`
    /// if either does not fit in 32 bits (seconds past 2106, or units finer than
    /// nanoseconds).
    pub fn classic_fields(&self) -> Option<ClassicTs> {
        let units = self.resolution.units_per_sec();
        if let Some(kept) = self.classic {
            // Kept fields are only valid for the instant they were read with; a tool that
            // shifted the timestamp gets the new instant, normalised.
            let sum = u64::from(kept.secs)
                .checked_mul(units)
                .and_then(|s| s.checked_add(u64::from(kept.frac)));
            if sum == Some(self.ticks) {
                return Some(kept);
            }
        }
        Some(ClassicTs {
            secs: u32::try_from(self.ticks / units).ok()?,
            frac: u32::try_from(self.ticks % units).ok()?,
        })
    }

    /// A timestamp in nanoseconds.
    pub const fn from_nanos(nanos: u64) -> Timestamp {
        Timestamp::new(nanos, TsResolution::NANOS)
    }

    /// A timestamp in microseconds.
    pub const fn from_micros(micros: u64) -> Timestamp {
        Timestamp::new(micros, TsResolution::MICROS)
    }

    /// Whole seconds.
    pub fn secs(&self) -> u64 {
        self.ticks / self.resolution.units_per_sec()
    }

    /// Fraction of a second in nanoseconds, rounded down.
    pub fn subsec_nanos(&self) -> u32 {
        let units = u128::from(self.resolution.units_per_sec());
        let frac = u128::from(self.ticks) % units;
        // frac < units, so the quotient is below 10^9.
        (frac * 1_000_000_000 / units) as u32
    }

    /// Time since the epoch, rounded down to nanoseconds.
    pub fn to_duration(&self) -> Duration {
        Duration::new(self.secs(), self.subsec_nanos())
    }

    /// The same instant in other units, rounded down; `None` if it does not fit in 64 bits.
    /// Kept [`ClassicTs`] fields belong to their units and are not carried over.
    pub fn to_resolution(self, resolution: TsResolution) -> Option<Timestamp> {
        if resolution == self.resolution {
            return Some(self);
        }
        let ticks = u128::from(self.ticks) * u128::from(resolution.units_per_sec())
            / u128::from(self.resolution.units_per_sec());
        Some(Timestamp::new(u64::try_from(ticks).ok()?, resolution))
    }
}

/// The capture interface a packet was seen on.
///
/// Classic pcap files have one interface, made from the file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Interface {
    /// Link type (`LINKTYPE_*`) of the packets.
    pub link_type: u16,
    /// Snapshot length; 0 means unlimited in pcapng.
    pub snaplen: u32,
    /// Units of packet timestamps (`if_tsresol`).
    pub resolution: TsResolution,
    /// Seconds to add to packet timestamps (`if_tsoffset`, pcapng only, almost always 0).
    /// Kept, not applied: [`Timestamp`]s are the values stored in the file.
    pub ts_offset: i64,
}

impl Interface {
    /// An interface with microsecond timestamps and no offset.
    pub fn new(link_type: u16, snaplen: u32) -> Interface {
        Interface {
            link_type,
            snaplen,
            resolution: TsResolution::MICROS,
            ts_offset: 0,
        }
    }
}

/// One packet: read from a capture (borrowing the reader's buffer) or to be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Index of the interface in [`PcapReader::interfaces`]: counted across all sections
    /// of a pcapng file, always 0 in classic pcap.
    pub interface_id: u32,
    /// The interface the packet was seen on, including its link type.
    pub interface: Interface,
    /// When the packet was seen. Zero for pcapng Simple Packet Blocks, which carry none.
    pub ts: Timestamp,
    /// Length of the packet on the wire; at least `data.len()` in a sane capture.
    pub orig_len: u32,
    /// Captured bytes.
    pub data: &'a [u8],
}

impl Record<'_> {
    /// Link type of the packet's interface.
    pub fn link_type(&self) -> u16 {
        self.interface.link_type
    }
}

/// Byte order of the fields of a file or section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Endian {
    big: bool,
}

impl Endian {
    fn u16(self, b: [u8; 2]) -> u16 {
        if self.big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn u32(self, b: [u8; 4]) -> u32 {
        if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    fn u64(self, b: [u8; 8]) -> u64 {
        if self.big {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        }
    }

    fn put_u16(self, v: u16) -> [u8; 2] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn put_u32(self, v: u32) -> [u8; 4] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn put_u64(self, v: u64) -> [u8; 8] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    /// Field at `at`; callers check the length of `buf` first, a short buffer reads zeros.
    fn u16_at(self, buf: &[u8], at: usize) -> u16 {
        self.u16(array_at(buf, at))
    }

    fn u32_at(self, buf: &[u8], at: usize) -> u32 {
        self.u32(array_at(buf, at))
    }
}

fn array_at<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = at.checked_add(N).and_then(|end| buf.get(at..end)) {
        out.copy_from_slice(src);
    }
    debug_assert!(buf.len() >= at + N, "field read past the checked length");
    out
}

/// Replace the contents of `buf` with up to `len` bytes from `r`; returns how many arrived
/// before EOF.
///
/// `len` comes from a length field in the file, which a damaged or hostile file sets to
/// anything up to the limit: the buffer grows only as bytes actually arrive, so such a
/// claim costs no more memory than the file holds. The capacity is kept, so steady state
/// neither allocates nor clears.
fn read_up_to<R: Read>(r: &mut R, buf: &mut Vec<u8>, len: usize) -> io::Result<usize> {
    buf.clear();
    r.take(len as u64).read_to_end(buf)
}

/// Read until `buf` is full or the input ends; returns the bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Failure of a format-specific record writer; the record number is added by the caller.
#[derive(Debug)]
enum WriteError {
    Io(io::Error),
    Unwritable(String),
}

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> WriteError {
        WriteError::Io(e)
    }
}

/// Per-format reading state.
#[derive(Debug)]
enum State {
    Classic {
        endian: Endian,
        interface: Interface,
    },
    Ng(ng::Section),
}

/// Streaming capture reader over classic pcap or pcapng.
#[derive(Debug)]
pub struct PcapReader<R> {
    inner: R,
    /// The one record buffer, reused for every record.
    buf: Vec<u8>,
    /// Bytes consumed from `inner`.
    pos: u64,
    /// Records returned so far.
    records: u64,
    header: FileHeader,
    interfaces: Vec<Interface>,
    state: State,
}

impl<R: Read> PcapReader<R> {
    /// Detect the format and read the file header (pcap) or first section header (pcapng).
    pub fn new(mut inner: R) -> Result<PcapReader<R>, PcapError> {
        let mut magic = [0u8; 4];
        let got = read_full(&mut inner, &mut magic)?;
        if got == 0 {
            return Err(PcapError::Empty);
        }
        if got < magic.len() {
            return Err(PcapError::TruncatedHeader {
                got: got as u64,
                needed: 4,
            });
        }
        match Format::detect(magic) {
            Some(Format::Pcap { .. }) => classic::open(inner, magic),
            Some(Format::PcapNg) => ng::open(inner),
            None => Err(PcapError::NotACapture {
                found: format!(
                    "it starts with {:02x} {:02x} {:02x} {:02x}",
                    magic[0], magic[1], magic[2], magic[3]
                ),
            }),
        }
    }

    /// The next packet, `None` at a clean end of file (a record or block boundary).
    ///
    /// Non-packet pcapng blocks are consumed along the way; unknown ones (name resolution,
    /// interface statistics, custom, ...) are skipped by their length. After an error the
    /// reader's position in the input is unspecified; stop reading.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, PcapError> {
        match self.state {
            State::Classic { endian, interface } => self.next_classic(endian, interface),
            State::Ng(_) => self.next_ng(),
        }
    }

    /// Format of the file.
    pub fn format(&self) -> Format {
        self.header.format()
    }

    /// What a [`PcapWriter`] needs to write the same format.
    pub fn header(&self) -> FileHeader {
        self.header
    }

    /// Interfaces seen so far, indexed by [`Record::interface_id`].
    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    /// Number of records returned so far.
    pub fn records_read(&self) -> u64 {
        self.records
    }

    /// Bytes consumed from the input so far.
    pub fn byte_offset(&self) -> u64 {
        self.pos
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn truncated(&self, offset: u64, what: &'static str, got: u64, needed: u64) -> PcapError {
        PcapError::Truncated {
            record: self.records + 1,
            offset,
            what,
            got,
            needed,
        }
    }

    fn corrupt(&self, offset: u64, reason: String) -> PcapError {
        PcapError::Corrupt {
            record: self.records + 1,
            offset,
            reason,
        }
    }

    /// Read exactly `buf.len()` bytes; returns how many arrived before EOF.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let got = read_full(&mut self.inner, buf)?;
        self.pos += got as u64;
        Ok(got)
    }

    /// Read `len` bytes into the record buffer (see [`read_up_to`]); returns how many
    /// arrived before EOF.
    fn fill_buf(&mut self, len: usize) -> io::Result<usize> {
        let got = read_up_to(&mut self.inner, &mut self.buf, len)?;
        self.pos += got as u64;
        Ok(got)
    }
}

/// Capture writer producing classic pcap or pcapng.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    inner: W,
    records: u64,
    state: WriterState,
}

#[derive(Debug)]
enum WriterState {
    Classic(PcapHeader),
    Ng {
        endian: Endian,
        /// Interfaces written so far, indexed by output interface id, keyed by the
        /// record's interface id and description.
        interfaces: Vec<(u32, Interface)>,
    },
}

impl<W: Write> PcapWriter<W> {
    /// Start a file in the format `header` describes and write its header.
    ///
    /// pcapng files get one section; an Interface Description Block is written before the
    /// first packet of every interface.
    pub fn new(mut inner: W, header: FileHeader) -> Result<PcapWriter<W>, PcapError> {
        let state = match header {
            FileHeader::Pcap(h) => {
                classic::write_header(&mut inner, &h)?;
                WriterState::Classic(h)
            }
            FileHeader::PcapNg(h) => {
                let endian = Endian { big: h.big_endian };
                ng::write_section_header(&mut inner, endian)?;
                WriterState::Ng {
                    endian,
                    interfaces: Vec::new(),
                }
            }
        };
        Ok(PcapWriter {
            inner,
            records: 0,
            state,
        })
    }

    /// Start a file in the same format as `reader`'s input.
    pub fn like<R: Read>(reader: &PcapReader<R>, inner: W) -> Result<PcapWriter<W>, PcapError> {
        PcapWriter::new(inner, reader.header())
    }

    /// Append one packet.
    ///
    /// Classic pcap: the record's link type must be the file's; its timestamp is converted
    /// to the file's units if they differ. Fields kept from a classic record whose
    /// sub-second field held a second or more ([`ClassicTs`]) are written back unchanged
    /// when the units are the same. pcapng: the timestamp is written in the units of the
    /// record's interface, so reading it back gives the same [`Timestamp`]; interface ids
    /// are assigned in order of first use. pcapng stores one 64-bit tick count, so such a
    /// classic timestamp is written as the instant its fields add up to (as libpcap and
    /// Wireshark read it): the same instant, normalised.
    pub fn write_record(&mut self, record: &Record<'_>) -> Result<(), PcapError> {
        let number = self.records + 1;
        let unwritable = |reason: String| PcapError::Unwritable {
            record: number,
            reason,
        };
        if record.data.len() > MAX_CAPLEN as usize {
            return Err(unwritable(format!(
                "captured length {} is over the {MAX_CAPLEN}-byte limit",
                record.data.len()
            )));
        }
        let result = match &mut self.state {
            WriterState::Classic(h) => classic::write_record(&mut self.inner, h, record),
            WriterState::Ng { endian, interfaces } => {
                ng::write_record(&mut self.inner, *endian, interfaces, record)
            }
        };
        result.map_err(|e| match e {
            WriteError::Io(e) => PcapError::Io(e),
            WriteError::Unwritable(reason) => unwritable(reason),
        })?;
        self.records = number;
        Ok(())
    }

    /// Number of records written whole to the underlying writer (a refused record is not
    /// counted). If that writer buffers, they reach the file only on [`flush`] or
    /// [`finish`].
    ///
    /// [`flush`]: PcapWriter::flush
    /// [`finish`]: PcapWriter::finish
    pub fn records_written(&self) -> u64 {
        self.records
    }

    /// Flush the underlying writer.
    pub fn flush(&mut self) -> Result<(), PcapError> {
        Ok(self.inner.flush()?)
    }

    /// Flush and return the underlying writer.
    pub fn finish(mut self) -> Result<W, PcapError> {
        self.inner.flush()?;
        Ok(self.inner)
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }
}

/// Build a little-endian nanosecond classic pcap file in memory from `(timestamp, frame)`
/// pairs, every frame fully captured. Meant for tests of code that consumes captures.
pub fn build_pcap(link_type: u16, frames: &[(Timestamp, &[u8])]) -> Result<Vec<u8>, PcapError> {
    let header = PcapHeader::new(link_type, 262_144, true);
    let interface = header.interface();
    let mut writer = PcapWriter::new(Vec::new(), FileHeader::Pcap(header))?;
    for &(ts, data) in frames {
        let orig_len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        writer.write_record(&Record {
            interface_id: 0,
            interface,
            ts,
            orig_len,
            data,
        })?;
    }
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_codes() {
        assert_eq!(TsResolution::from_if_tsresol(6), Some(TsResolution::MICROS));
        assert_eq!(
            TsResolution::from_if_tsresol(9).map(|r| r.units_per_sec()),
            Some(1_000_000_000)
        );
        assert_eq!(
            TsResolution::from_if_tsresol(0x8a).map(|r| r.units_per_sec()),
            Some(1024)
        );
        assert_eq!(TsResolution::from_if_tsresol(20), None);
        assert_eq!(TsResolution::from_if_tsresol(0x80 | 64), None);
        assert_eq!(TsResolution::pow2(63).map(|r| r.if_tsresol()), Some(0xbf));
    }

    #[test]
    fn timestamp_conversions() {
        let ts = Timestamp::from_micros(1_700_000_000_123_456);
        assert_eq!(ts.secs(), 1_700_000_000);
        assert_eq!(ts.subsec_nanos(), 123_456_000);
        assert_eq!(
            ts.to_resolution(TsResolution::NANOS),
            Some(Timestamp::from_nanos(1_700_000_000_123_456_000))
        );
        let half = Timestamp::new(3, TsResolution::pow2(1).unwrap_or(TsResolution::NANOS));
        assert_eq!(half.to_duration(), Duration::from_millis(1500));
        assert_eq!(
            Timestamp::from_nanos(u64::MAX)
                .to_resolution(TsResolution::pow10(19).unwrap_or(TsResolution::NANOS)),
            None
        );
    }
}
