//! `pvnet pcap segment IN OUT (--mss N | --mtu M) [--udp uso|ufo] [--csum full|partial] [--json]`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use pvnet_core::frame::GsoKind;
use pvnet_core::offload::checksum::rewrite_l4_checksum;
use pvnet_core::offload::gso::{segment_linear, CsumMode, GsoOptions, SegmentBuf};
use pvnet_core::offload::xmit::{gso_kind_of, gso_size_for_mtu, superframe_gso, UdpGso};
use pvnet_core::vnet;
use pvnet_core::wire::{parse, Layers};

use super::transform::{self, Input, Sink};

pub const LONG_ABOUT: &str = "\
Segment the super-frames of a capture as the Linux kernel would for a device without
segmentation offload (GSO with gso_size = MSS).

Every TCP or UDP frame whose payload exceeds the MSS is split: TCP into MSS-sized segments
(sequence numbers, FIN/PSH on the last segment, CWR on the first, IPv4 ID +1 per segment);
UDP either into separate datagrams (--udp uso, UDP_L4) or into IP fragments of one datagram
(--udp ufo). Such captures come from hosts with TSO/GSO, where frames of up to 64 KiB are
captured before the NIC splits them.

Every other TCP/UDP frame is copied with only its checksum field rewritten, and all output
checksums are computed from scratch (the input field may hold a partial sum or garbage):
--csum full (the default) writes complete checksums, as the kernel hands frames to a device
without tx checksum offload; --csum partial writes the pseudo-header sum, as it hands them
to a device with tx-checksumming. Non-TCP/UDP frames, IP fragments, frames cut short by the
snap length and frames that do not parse are copied unchanged (the last are counted as
malformed).";

pub const AFTER_HELP: &str = "\
The output has the input's format (pcap or pcapng); segments keep the timestamp of their
super-frame. An empty (0-byte) input is read as a capture with no frames and gives an empty
capture: pcapng if OUT ends in .pcapng, else pcap. Once the output is written, a summary
goes to stderr (--json: one JSON object). A progress bar is shown on a terminal for inputs
over 100 MB. Ctrl-C stops early and leaves a valid output file.

Exit status: 0 when the whole input was processed; 2 when it could not be read whole or the
output could not be written (the frames before the problem are written); 130 when
interrupted.

Examples:
  pvnet pcap segment tso.pcapng wire.pcapng --mss 1448
  pvnet pcap segment tso.pcap wire.pcap --mtu 1500 --csum partial
  pvnet pcap segment uso.pcap out.pcap --mss 1200 --udp ufo --json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UdpMode {
    /// UDP_L4 (USO): every segment is a UDP datagram of its own.
    Uso,
    /// UFO: IP fragmentation of one UDP datagram.
    Ufo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CsumArg {
    /// Complete checksums (destination without tx checksum offload).
    Full,
    /// Pseudo-header sum left in the field (destination with tx-checksumming).
    Partial,
}

#[derive(Debug, Args)]
pub struct SegmentArgs {
    /// Capture to read (pcap or pcapng).
    pub input: PathBuf,
    /// Capture to write, same format as the input.
    pub output: PathBuf,
    /// Payload bytes per segment (TCP MSS; USO segment size; UFO fragment size).
    #[arg(long, value_name = "N", required_unless_present = "mtu", conflicts_with = "mtu",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub mss: Option<u16>,
    /// IP MTU: the MSS is derived per frame from its own IP and TCP/UDP header lengths.
    #[arg(long, value_name = "M", value_parser = clap::value_parser!(u16).range(68..))]
    pub mtu: Option<u16>,
    /// How UDP super-frames are split.
    #[arg(long, value_enum, default_value_t = UdpMode::Uso)]
    pub udp: UdpMode,
    /// Checksums in the output.
    #[arg(long, value_enum, default_value_t = CsumArg::Full)]
    pub csum: CsumArg,
    /// Print the summary as one JSON object on stderr.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Default)]
struct Summary {
    frames_in: u64,
    superframes: u64,
    segments: u64,
    malformed: u64,
    cut_short: u64,
}

/// The gso_size for one frame: the given MSS, or what fits in the MTU after this frame's
/// own headers.
fn gso_size(args: &SegmentArgs, layers: &Layers, kind: GsoKind) -> Option<u16> {
    args.mss
        .or_else(|| gso_size_for_mtu(layers, kind, args.mtu?))
}

struct Segmenting {
    summary: Summary,
    scratch: SegmentBuf,
    line: Vec<u8>,
    copy: Vec<u8>,
}

impl Segmenting {
    fn frame(
        &mut self,
        args: &SegmentArgs,
        input: Input<'_>,
        sink: &mut Sink,
    ) -> Result<(), String> {
        self.summary.frames_in += 1;
        let data = input.record.data;
        if input.cut_short {
            self.summary.cut_short += 1;
            return sink.write(&input.record, data);
        }
        let Ok(layers) = parse(data, input.start) else {
            self.summary.malformed += 1;
            return sink.write(&input.record, data);
        };
        let udp = match args.udp {
            UdpMode::Uso => UdpGso::Uso,
            UdpMode::Ufo => UdpGso::Ufo,
        };
        let Some(kind) = gso_kind_of(&layers, udp) else {
            return sink.write(&input.record, data);
        };
        let mode = match args.csum {
            CsumArg::Full => CsumMode::Full,
            CsumArg::Partial => CsumMode::Partial,
        };
        // Link-layer padding after the IP packet is not part of what gets segmented.
        let packet = &data[..layers.ip_end];
        let size = gso_size(args, &layers, kind);
        if let Some(gso) = size.and_then(|s| superframe_gso(packet, &layers, kind, s)) {
            let opts = GsoOptions {
                csum: mode,
                ..GsoOptions::default()
            };
            let mut write_err = None;
            let record = input.record;
            // Refused by validation: counted and copied unchanged, as the segmenter's own
            // refusals.
            let made = vnet::validate_gso(packet, input.start, gso)
                .map_err(|_| ())
                .and_then(|v| {
                    segment_linear(
                        packet,
                        &v,
                        opts,
                        &mut self.scratch,
                        &mut self.line,
                        |seg, _| {
                            if write_err.is_none() {
                                write_err = sink.write(&record, seg).err();
                            }
                        },
                    )
                    .map_err(|_| ())
                });
            if let Some(e) = write_err {
                return Err(e);
            }
            match made {
                Ok(n) => {
                    self.summary.superframes += 1;
                    self.summary.segments += n as u64;
                    return Ok(());
                }
                Err(_) => {
                    self.summary.malformed += 1;
                    return sink.write(&input.record, data);
                }
            }
        }
        self.copy.clear();
        self.copy.extend_from_slice(data);
        rewrite_l4_checksum(&mut self.copy, &layers, mode);
        sink.write(&input.record, &self.copy)
    }
}

pub fn run(args: SegmentArgs) -> ExitCode {
    let mut state = Segmenting {
        summary: Summary::default(),
        scratch: SegmentBuf::with_capacity(64),
        line: Vec::with_capacity(65536 + 128),
        copy: Vec::with_capacity(65536 + 128),
    };
    let outcome = transform::run(
        "segmenting",
        &args.input,
        &args.output,
        |input, sink| state.frame(&args, input, sink),
        |_| Ok(()),
    );
    if let Some(frames_out) = outcome.frames_out {
        summary(&args, &state.summary, frames_out);
    }
    transform::exit_code(outcome.result, &args.output)
}

/// The summary line on stderr; `frames_out` counts the frames in the output file.
fn summary(args: &SegmentArgs, s: &Summary, frames_out: u64) {
    if args.json {
        eprintln!(
            "{{\"frames_in\":{},\"superframes_segmented\":{},\"segments_out\":{},\"frames_out\":{},\"malformed_skipped\":{},\"cut_short\":{}}}",
            s.frames_in, s.superframes, s.segments, frames_out, s.malformed, s.cut_short
        );
    } else {
        eprintln!(
            "{}: {} frames in, {} super-frames segmented into {} segments, {} frames out, \
             {} malformed copied unchanged, {} cut short by the snap length copied unchanged",
            args.output.display(),
            s.frames_in,
            s.superframes,
            s.segments,
            frames_out,
            s.malformed,
            s.cut_short
        );
    }
}
