//! `pvnet pcap coalesce IN OUT [--max-size BYTES] [--window N] [--json]`.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use pvnet_core::offload::gro::{
    complete_checksum, Coalesced, Coalescer, GroConfig, GroStats, PassCause,
};
use pvnet_linux::pcap::Record;

use super::transform::{self, Input, Sink};

pub const LONG_ABOUT: &str = "\
Coalesce the wire-sized TCP and UDP frames of a capture into super-frames, as Linux GRO
does on receive: consecutive segments of one flow that the kernel would merge (valid
checksums, contiguous sequence numbers, equal flags apart from PSH/FIN, same ACK, same TCP
options, same TTL/TOS/DF or IPv6 first word and hop limit, IPv4 ID +1 or fixed, no IP
options or fragments; UDP datagrams of one flow with the same size, the last one may be
shorter, at most 64) become one frame of up to --max-size bytes of IP length.

A capture carries no offload metadata, so super-frames are written with complete, correct
checksums. Frames that cannot be merged are copied unchanged, and no frame is reordered
within its flow: the output lists every item at the position of its first frame.";

pub const AFTER_HELP: &str = "\
Frames merge only within a sliding window of N input frames (--window, default 64): a
flow held for N frames is written out. Each super-frame keeps the timestamp of its first
merged frame. The output has the input's format (pcap or pcapng); an empty (0-byte) input
is read as a capture with no frames and gives an empty capture: pcapng if OUT ends in
.pcapng, else pcap. Once the output is written, a summary goes to stderr (--json: one JSON
object); a progress bar is shown on a terminal for inputs over 100 MB. Ctrl-C stops early
and leaves a valid output file.

Exit status: 0 when the whole input was processed; 2 when it could not be read whole or
the output could not be written (what was read before is written); 130 when interrupted.

Examples:
  pvnet pcap coalesce wire.pcapng gro.pcapng
  pvnet pcap coalesce wire.pcap gro.pcap --window 256 --max-size 32768 --json";

#[derive(Debug, Args)]
pub struct CoalesceArgs {
    /// Capture to read (pcap or pcapng).
    pub input: PathBuf,
    /// Capture to write, same format as the input.
    pub output: PathBuf,
    /// Largest IP length of a super-frame (header included).
    #[arg(long, value_name = "BYTES", default_value_t = 65535,
          value_parser = clap::value_parser!(u32).range(576..=65535))]
    pub max_size: u32,
    /// Frames merge only within a window of this many input frames.
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub window: u64,
    /// Print the summary as one JSON object on stderr.
    #[arg(long)]
    pub json: bool,
}

/// An output item waiting for every item that started before it.
struct Pending {
    data: Vec<u8>,
    like: Record<'static>,
}

/// Everything that leaves the coalescer, kept until it can be written in input order.
struct Collector {
    window: u64,
    /// Timestamp and interface of the last `window + 1` frames, by frame number: every
    /// item starts inside that range.
    recent: VecDeque<(u64, Record<'static>)>,
    pending: BTreeMap<u64, Pending>,
    /// Spare buffers for `Pending::data`, so steady state does not allocate.
    pool: Vec<Vec<u8>>,
}

impl Collector {
    fn collect(&mut self, e: &Coalesced<'_>) {
        let Some(like) = self
            .recent
            .iter()
            .rev()
            .find(|(n, _)| *n == e.first_frame)
            .map(|(_, r)| *r)
        else {
            // Unreachable: flows are flushed before their first frame leaves `recent`.
            return;
        };
        let mut data = self.pool.pop().unwrap_or_default();
        e.frame.copy_to(&mut data);
        if complete_checksum(&mut data, &e.frame.meta).is_err() {
            // A partial checksum the coalescer made always completes; keep the frame as
            // it is rather than lose it if that ever changes.
            e.frame.copy_to(&mut data);
        }
        self.pending.insert(e.first_frame, Pending { data, like });
    }

    /// Write every pending item that started before `limit` (all when `None`).
    fn drain(&mut self, sink: &mut Sink, limit: Option<u64>) -> Result<(), String> {
        while let Some(entry) = self.pending.first_entry() {
            if limit.is_some_and(|l| *entry.key() >= l) {
                break;
            }
            let p = entry.remove();
            sink.write(&p.like, &p.data)?;
            self.pool.push(p.data);
        }
        Ok(())
    }
}

struct Coalescing {
    gro: Coalescer,
    out: Collector,
}

/// The record's timestamp and interface, without its data.
fn header_of(r: &Record<'_>) -> Record<'static> {
    Record {
        interface_id: r.interface_id,
        interface: r.interface,
        ts: r.ts,
        orig_len: r.orig_len,
        data: &[],
    }
}

impl Coalescing {
    fn frame(&mut self, input: Input<'_>, sink: &mut Sink) -> Result<(), String> {
        let Coalescing { gro, out } = self;
        let n = input.number;
        let window = out.window;
        out.recent.push_back((n, header_of(&input.record)));
        if out.recent.len() as u64 > window + 1 {
            out.recent.pop_front();
        }
        let mut collect = |e: Coalesced<'_>| out.collect(&e);
        // A flow opened `window` frames ago has had its chance to grow.
        if n > window {
            gro.flush_started_before(n - window + 1, &mut collect);
        }
        gro.push(input.record.data, input.start, &mut collect);
        out.drain(sink, gro.oldest_held_frame())
    }

    fn finish(&mut self, sink: &mut Sink) -> Result<(), String> {
        let Coalescing { gro, out } = self;
        gro.flush(&mut |e: Coalesced<'_>| out.collect(&e));
        out.drain(sink, None)
    }
}

pub fn run(args: CoalesceArgs) -> ExitCode {
    let cfg = GroConfig {
        max_size: args.max_size as usize,
        ..GroConfig::default()
    };
    let state = std::cell::RefCell::new(Coalescing {
        gro: Coalescer::new(cfg),
        out: Collector {
            window: args.window,
            recent: VecDeque::new(),
            pending: BTreeMap::new(),
            pool: Vec::new(),
        },
    });
    let outcome = transform::run(
        "coalescing",
        &args.input,
        &args.output,
        |input, sink| state.borrow_mut().frame(input, sink),
        |sink| state.borrow_mut().finish(sink),
    );
    if let Some(frames_out) = outcome.frames_out {
        summary(&args, state.into_inner().gro.stats(), frames_out);
    }
    transform::exit_code(outcome.result, &args.output)
}

/// The summary line on stderr; `frames_out` counts the frames in the output file.
fn summary(args: &CoalesceArgs, stats: &GroStats, frames_out: u64) {
    let frames_in = stats.frames_in;
    let merged_frames = stats.merged + stats.super_frames;
    let malformed = stats.passed(PassCause::Malformed);
    if args.json {
        eprintln!(
            "{{\"frames_in\":{frames_in},\"superframes_out\":{},\"frames_coalesced\":{merged_frames},\"frames_out\":{frames_out},\"malformed_passed\":{malformed}}}",
            stats.super_frames
        );
    } else {
        eprintln!(
            "{}: {frames_in} frames in, {merged_frames} coalesced into {} super-frames, \
             {frames_out} frames out ({malformed} malformed copied unchanged)",
            args.output.display(),
            stats.super_frames
        );
    }
}
