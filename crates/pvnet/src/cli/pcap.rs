//! `pvnet pcap …`: offload operations on capture files.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use pvnet_linux::pcap::{
    FileHeader, PcapError, PcapHeader, PcapNgHeader, PcapReader, LINKTYPE_ETHERNET,
};

mod coalesce;
pub mod csum;
mod progress;
mod segment;
mod transform;

/// Exit status when every checksum is fine.
pub const EXIT_OK: u8 = 0;
/// Exit status when the capture holds bad or partial checksums.
pub const EXIT_FOUND_BAD: u8 = 1;
/// Exit status when the file cannot be read whole (or the output cannot be written).
pub const EXIT_UNREADABLE: u8 = 2;

#[derive(Debug, Subcommand)]
pub enum PcapCommand {
    /// Verify the IPv4, TCP and UDP checksums of every frame, and optionally fix them.
    #[command(long_about = csum::LONG_ABOUT, after_help = csum::AFTER_HELP)]
    Csum(csum::CsumArgs),
    /// Split super-frames (TSO/USO/UFO captures) into wire-sized segments as the kernel would.
    #[command(long_about = segment::LONG_ABOUT, after_help = segment::AFTER_HELP)]
    Segment(segment::SegmentArgs),
    /// Merge wire-sized TCP/UDP frames into super-frames as Linux GRO would.
    #[command(long_about = coalesce::LONG_ABOUT, after_help = coalesce::AFTER_HELP)]
    Coalesce(coalesce::CoalesceArgs),
}

pub fn run(cmd: PcapCommand) -> ExitCode {
    match cmd {
        PcapCommand::Csum(args) => csum::run(args),
        PcapCommand::Segment(args) => segment::run(args),
        PcapCommand::Coalesce(args) => coalesce::run(args),
    }
}

/// Where parsing starts for a capture's link type, or `None` for a link type pvnet does
/// not read.
pub fn start_for_link_type(link_type: u16) -> Option<pvnet_core::wire::Start> {
    use pvnet_core::wire::Start;
    use pvnet_linux::pcap::{LINKTYPE_ETHERNET, LINKTYPE_RAW};
    match link_type {
        LINKTYPE_ETHERNET => Some(Start::Ethernet),
        // Raw IP: the generic one and the IPv4-only / IPv6-only variants.
        LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 => Some(Start::Ip),
        _ => None,
    }
}

const LINKTYPE_IPV4: u16 = 228;
const LINKTYPE_IPV6: u16 = 229;

/// The message for a frame whose link type pvnet does not read.
pub fn unsupported_link_type(frame: u64, link_type: u16) -> String {
    format!(
        "frame {frame}: link type {link_type} is not supported: pvnet reads Ethernet \
         (link type 1) and raw IP (101, 228, 229) captures"
    )
}

/// A capture file opened for reading: `None` for an empty one.
pub type Input = Option<PcapReader<BufReader<File>>>;

/// Open a capture file; an empty (0-byte) file is read as a capture with no frames (as
/// Wireshark's tools read it: what `touch` or a capture that never started leaves), which
/// a note on stderr says. Errors are messages for the user naming the file.
pub fn open_input(file: &Path) -> Result<Input, String> {
    let f = File::open(file).map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    match PcapReader::new(BufReader::with_capacity(1 << 20, f)) {
        Ok(reader) => Ok(Some(reader)),
        Err(PcapError::Empty) => {
            eprintln!(
                "note: {} is empty (0 bytes): read as a capture with no frames",
                file.display()
            );
            Ok(None)
        }
        Err(e) => Err(format!("{}: {e}", file.display())),
    }
}

/// The file header of an output written from `input`: the input's own, or for an empty
/// input, which has no format to keep, pcapng if the output's name ends in `.pcapng` and
/// classic pcap otherwise (little-endian, microseconds, Ethernet, tcpdump's snap length).
pub fn output_header<R: Read>(input: &Option<PcapReader<R>>, output: &Path) -> FileHeader {
    if let Some(reader) = input {
        return reader.header();
    }
    let pcapng = output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("pcapng"));
    if pcapng {
        FileHeader::PcapNg(PcapNgHeader { big_endian: false })
    } else {
        FileHeader::Pcap(PcapHeader::new(LINKTYPE_ETHERNET, 262_144, false))
    }
}
