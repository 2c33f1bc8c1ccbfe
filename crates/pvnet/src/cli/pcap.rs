//! `pvnet pcap …`: offload operations on capture files.

use std::process::ExitCode;

use clap::Subcommand;

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
