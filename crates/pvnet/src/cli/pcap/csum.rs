//! `pvnet pcap csum FILE [--fix OUT] [--json]`.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use pvnet_core::offload::checksum::{fix_frame, verify_frame, FrameChecksums, Verdict};
use pvnet_linux::pcap::{FileHeader, PcapError, PcapReader, PcapWriter, Record};

use super::{
    open_input, output_header, start_for_link_type, unsupported_link_type, EXIT_FOUND_BAD, EXIT_OK,
    EXIT_UNREADABLE,
};

pub const LONG_ABOUT: &str = "\
Verify the IPv4 header checksum and the TCP/UDP checksum of every frame of a pcap or pcapng
capture (Ethernet or raw IP link type), and report each as:

  good     the checksum is correct
  bad      the checksum is wrong
  partial  the field holds exactly the folded pseudo-header sum: a checksum left for
           offload, as in captures taken on a host with tx checksum offload (the packet
           was captured before the NIC or the host finished the checksum)
  absent   UDP over IPv4 with a zero checksum (the sender chose not to checksum)
  n/a      nothing to verify: no such header, IPv6 (no header checksum), an IP fragment,
           or a frame cut short by the capture's snap length";

pub const AFTER_HELP: &str = "\
Output: one line per frame on stdout (or one JSON object per line with --json:
{\"frame\":N,\"ip_checksum\":\"…\",\"l4_protocol\":\"tcp|udp|other|none\",\"l4_checksum\":\"…\"},
N counting from 1) and a summary line on stderr. An empty (0-byte) file is read as a
capture with no frames; its --fix copy is an empty capture, pcapng if OUT ends in .pcapng,
else pcap.

Exit status: 0 when every checksum is good, absent or n/a; 1 when any is bad or partial;
2 when the file cannot be read whole (missing, not a capture, truncated or corrupt record:
the frames before it are still reported) or the output cannot be written.

Examples:
  pvnet pcap csum capture.pcapng
  pvnet pcap csum capture.pcap --fix fixed.pcap      # same format, checksums corrected
  pvnet pcap csum capture.pcap --json | jq 'select(.l4_checksum == \"bad\")'";

#[derive(Debug, Args)]
pub struct CsumArgs {
    /// Capture to check (pcap or pcapng).
    pub file: PathBuf,
    /// Write a copy of the capture, same format, with every bad or partial checksum
    /// corrected (good, absent and n/a ones are left as they are).
    #[arg(long, value_name = "OUT")]
    pub fix: Option<PathBuf>,
    /// Print one JSON object per frame instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Counts for the summary line.
#[derive(Debug, Default)]
struct Tally {
    /// The file was recognised as a capture (so a summary is worth printing).
    opened: bool,
    frames: u64,
    ip: [u64; 5],
    l4: [u64; 5],
    /// Frames written to the --fix copy with a corrected checksum.
    fixed: u64,
    /// Frames in the --fix copy, once it is flushed; `None` until then, or if it was
    /// not created or could not be written out.
    written: Option<u64>,
}

fn slot(v: Verdict) -> usize {
    match v {
        Verdict::Good => 0,
        Verdict::Bad => 1,
        Verdict::Partial => 2,
        Verdict::Absent => 3,
        Verdict::NotApplicable => 4,
    }
}

const VERDICTS: [Verdict; 5] = [
    Verdict::Good,
    Verdict::Bad,
    Verdict::Partial,
    Verdict::Absent,
    Verdict::NotApplicable,
];

impl Tally {
    fn add(&mut self, c: &FrameChecksums) {
        self.frames += 1;
        self.ip[slot(c.ip)] += 1;
        self.l4[slot(c.l4)] += 1;
    }

    fn all_ok(&self) -> bool {
        let bad = slot(Verdict::Bad);
        let partial = slot(Verdict::Partial);
        self.ip[bad] + self.ip[partial] + self.l4[bad] + self.l4[partial] == 0
    }

    fn counts(counts: &[u64; 5]) -> String {
        let parts: Vec<String> = VERDICTS
            .iter()
            .filter(|v| counts[slot(**v)] > 0)
            .map(|v| format!("{} {}", counts[slot(*v)], v.as_str()))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }

    fn summary(&self, file: &Path) -> String {
        format!(
            "{}: {} frames; ip checksum: {}; tcp/udp checksum: {}",
            file.display(),
            self.frames,
            Self::counts(&self.ip),
            Self::counts(&self.l4)
        )
    }
}

/// Why the run stopped early.
enum Failure {
    /// Reading the capture failed: exit 2 after the summary.
    Input(String),
    /// Writing the report or the fixed copy failed.
    Output(String),
    /// stdout was closed (e.g. piped into `head`): stop quietly.
    BrokenPipe,
}

pub fn run(args: CsumArgs) -> ExitCode {
    let mut tally = Tally::default();
    let stdout = io::stdout();
    let mut report = BufWriter::new(stdout.lock());
    let result = check(&args, &mut tally, &mut report);
    if tally.opened {
        eprintln!("{}", tally.summary(&args.file));
    }
    if let (Some(out), Some(written)) = (&args.fix, tally.written) {
        eprintln!(
            "{}: {} frames fixed, {written} written",
            out.display(),
            tally.fixed,
        );
    }
    match result {
        Ok(()) if tally.all_ok() => ExitCode::from(EXIT_OK),
        Ok(()) => ExitCode::from(EXIT_FOUND_BAD),
        Err(Failure::BrokenPipe) => ExitCode::from(if tally.all_ok() {
            EXIT_OK
        } else {
            EXIT_FOUND_BAD
        }),
        Err(Failure::Input(msg)) | Err(Failure::Output(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(EXIT_UNREADABLE)
        }
    }
}

fn out_err(e: io::Error) -> Failure {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Failure::BrokenPipe
    } else {
        Failure::Output(format!("writing the report: {e}"))
    }
}

/// The verdicts of every frame of the capture held in `capture`, as `pvnet pcap csum`
/// prints them (the table, then its summary line, naming the capture `name`), written to
/// `out`: what `pvnet report` stores beside each capture it takes. `Ok` carries the
/// summary line; `Err` why the capture could not be checked whole (the frames before are
/// in `out`).
pub fn verdicts(capture: &[u8], name: &Path, out: &mut impl Write) -> Result<String, String> {
    let args = CsumArgs {
        file: name.to_owned(),
        fix: None,
        json: false,
    };
    let mut tally = Tally::default();
    let reader = match PcapReader::new(capture) {
        Ok(reader) => Ok(Some(reader)),
        // As for a file: an empty capture has no frames.
        Err(PcapError::Empty) => Ok(None),
        Err(e) => Err(Failure::Input(read_error(name, e))),
    };
    let result = reader.and_then(|reader| check_input(reader, &args, &mut tally, out));
    let summary = tally.summary(name);
    let written = writeln!(out, "{summary}");
    match result {
        Ok(()) => written.map(|()| summary).map_err(|e| e.to_string()),
        Err(Failure::Input(msg)) | Err(Failure::Output(msg)) => Err(msg),
        Err(Failure::BrokenPipe) => Err("the output was closed".into()),
    }
}

fn check(args: &CsumArgs, tally: &mut Tally, report: &mut impl Write) -> Result<(), Failure> {
    let reader = open_input(&args.file).map_err(Failure::Input)?;
    check_input(reader, args, tally, report)
}

/// Check the capture `reader` reads (`None`: an empty one).
fn check_input<R: Read>(
    mut reader: Option<PcapReader<R>>,
    args: &CsumArgs,
    tally: &mut Tally,
    report: &mut impl Write,
) -> Result<(), Failure> {
    tally.opened = true;

    let mut writer = match &args.fix {
        Some(out) => Some(open_fix_output(
            &args.file,
            out,
            output_header(&reader, out),
        )?),
        None => None,
    };

    if !args.json {
        writeln!(report, "  frame  ip       l4     l4-csum").map_err(out_err)?;
    }

    let mut scratch = Vec::new();
    let result = loop {
        let Some(reader) = reader.as_mut() else {
            break Ok(());
        };
        let record = match reader.next_record() {
            Ok(Some(r)) => r,
            Ok(None) => break Ok(()),
            Err(e) => break Err(Failure::Input(read_error(&args.file, e))),
        };
        let frame = tally.frames + 1;
        let Some(start) = start_for_link_type(record.link_type()) else {
            break Err(Failure::Input(unsupported_link_type(
                frame,
                record.link_type(),
            )));
        };
        let verdicts = verify_frame(record.data, start);
        tally.add(&verdicts);
        if let Some(w) = writer.as_mut() {
            let mut changed = false;
            let data = if verdicts.is_ok() {
                record.data
            } else {
                scratch.clear();
                scratch.extend_from_slice(record.data);
                changed = fix_frame(&mut scratch, start).any();
                &scratch[..]
            };
            let fixed = Record { data, ..record };
            if let Err(e) = w.write_record(&fixed) {
                break Err(Failure::Output(fix_error(args, e)));
            }
            tally.fixed += u64::from(changed);
        }
        let line = if args.json {
            writeln!(
                report,
                "{{\"frame\":{frame},\"ip_checksum\":\"{}\",\"l4_protocol\":\"{}\",\"l4_checksum\":\"{}\"}}",
                verdicts.ip.as_str(),
                verdicts.l4_protocol.as_str(),
                verdicts.l4.as_str()
            )
        } else {
            writeln!(
                report,
                "{frame:>7}  {:<8} {:<6} {}",
                verdicts.ip.as_str(),
                verdicts.l4_protocol.as_str(),
                verdicts.l4.as_str()
            )
        };
        if let Err(e) = line {
            break Err(out_err(e));
        }
    };
    // Whatever happened, what was read so far is reported and written out.
    let flushed = report.flush().map_err(out_err);
    if let Some(w) = writer {
        let written = w.records_written();
        w.finish()
            .map_err(|e| Failure::Output(fix_error(args, e)))?;
        tally.written = Some(written);
    }
    result.and(flushed)
}

fn read_error(file: &Path, e: PcapError) -> String {
    format!("{}: {e}", file.display())
}

fn fix_error(args: &CsumArgs, e: PcapError) -> String {
    let out = args.fix.as_deref().unwrap_or(Path::new("-"));
    format!("writing {}: {e}", out.display())
}

fn open_fix_output(
    input: &Path,
    out: &Path,
    header: FileHeader,
) -> Result<PcapWriter<BufWriter<File>>, Failure> {
    // Writing over the capture being read would truncate it under our feet.
    if let (Ok(a), Ok(b)) = (input.canonicalize(), out.canonicalize()) {
        if a == b {
            return Err(Failure::Output(format!(
                "--fix {} is the input file itself; write the fixed copy elsewhere",
                out.display()
            )));
        }
    }
    let file = File::create(out)
        .map_err(|e| Failure::Output(format!("cannot create {}: {e}", out.display())))?;
    PcapWriter::new(BufWriter::with_capacity(1 << 20, file), header)
        .map_err(|e| Failure::Output(format!("writing {}: {e}", out.display())))
}
