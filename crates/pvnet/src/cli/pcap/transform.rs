//! The loop shared by the commands that rewrite a capture (`segment`, `coalesce`): read
//! every record, hand it to the command, write what it produces in the input's format,
//! with a progress bar, Ctrl-C handling and errors that name the file and record.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pvnet_core::wire::Start;
use pvnet_linux::pcap::{PcapWriter, Record};

use super::progress::Progress;
use super::{
    open_input, output_header, start_for_link_type, unsupported_link_type, EXIT_OK, EXIT_UNREADABLE,
};

/// Output side handed to a command: writes records in the input's format.
pub struct Sink {
    writer: PcapWriter<BufWriter<File>>,
    out: String,
}

impl Sink {
    /// Write one output frame that takes its timestamp and interface from `like`.
    pub fn write(&mut self, like: &Record<'_>, data: &[u8]) -> Result<(), String> {
        let rec = Record {
            data,
            orig_len: data.len() as u32,
            ..*like
        };
        self.writer
            .write_record(&rec)
            .map_err(|e| format!("writing {}: {e}", self.out))
    }
}

/// How a transform run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Every record was read.
    Complete,
    /// SIGINT or SIGTERM: the output holds what was produced so far and is a valid file.
    Interrupted,
}

/// How a run went, and what it left in the output file.
pub struct Outcome {
    pub result: Result<Ended, String>,
    /// Frames in the output file, counted once it is flushed: what a summary may call
    /// written. `None` when there is no output to speak of: it was not created, or could
    /// not be written out (the error says which).
    pub frames_out: Option<u64>,
}

/// One input frame as the command sees it.
pub struct Input<'r> {
    /// Frame number, counting from 1.
    pub number: u64,
    pub record: Record<'r>,
    pub start: Start,
    /// The capture cut this frame short (captured length below the original length).
    pub cut_short: bool,
}

/// Installs a SIGINT/SIGTERM handler once and returns the flag it sets.
fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = Arc::clone(&flag);
        // If a handler cannot be installed, Ctrl-C simply kills the process as usual.
        let _ = ctrlc::set_handler(move || f.store(true, Ordering::SeqCst));
        flag
    })
    .clone()
}

/// Run `each` over every record of `input`, then `finish`, writing to `output`.
///
/// Errors are messages for the user that name the file and record. On error the output
/// written so far is flushed (it is a valid capture of the frames before the problem).
pub fn run(
    label: &str,
    input: &Path,
    output: &Path,
    mut each: impl FnMut(Input<'_>, &mut Sink) -> Result<(), String>,
    finish: impl FnOnce(&mut Sink) -> Result<(), String>,
) -> Outcome {
    let (mut reader, mut sink, size) = match open(input, output) {
        Ok(opened) => opened,
        Err(e) => {
            return Outcome {
                result: Err(e),
                frames_out: None,
            }
        }
    };
    let interrupted = interrupt_flag();
    let progress = Progress::new(label, size);

    let mut number = 0;
    let result = loop {
        if interrupted.load(Ordering::Relaxed) {
            break Ok(Ended::Interrupted);
        }
        let Some(reader) = reader.as_mut() else {
            break Ok(Ended::Complete);
        };
        let record = match reader.next_record() {
            Ok(Some(r)) => r,
            Ok(None) => break Ok(Ended::Complete),
            Err(e) => break Err(format!("{}: {e}", input.display())),
        };
        number += 1;
        let Some(start) = start_for_link_type(record.link_type()) else {
            break Err(unsupported_link_type(number, record.link_type()));
        };
        let cut_short = (record.data.len() as u64) < u64::from(record.orig_len);
        if let Err(e) = each(
            Input {
                number,
                record,
                start,
                cut_short,
            },
            &mut sink,
        ) {
            break Err(e);
        }
        progress.update(reader.byte_offset());
    };
    progress.finish();
    // Whatever ended the loop, what was produced so far reaches the file.
    let finished = finish(&mut sink);
    let written = sink.writer.records_written();
    let flushed = sink
        .writer
        .finish()
        .map(|_| ())
        .map_err(|e| format!("writing {}: {e}", output.display()));
    Outcome {
        frames_out: flushed.is_ok().then_some(written),
        result: result.and_then(|ended| {
            finished?;
            flushed?;
            Ok(ended)
        }),
    }
}

/// Open the input, and create the output with the input's file header; also returns the
/// input's size.
fn open(input: &Path, output: &Path) -> Result<(super::Input, Sink, u64), String> {
    if let (Ok(a), Ok(b)) = (input.canonicalize(), output.canonicalize()) {
        if a == b {
            return Err(format!(
                "output {} is the input file itself; write elsewhere",
                output.display()
            ));
        }
    }
    let reader = open_input(input)?;
    let size = std::fs::metadata(input).map(|m| m.len()).unwrap_or(0);
    let out_file =
        File::create(output).map_err(|e| format!("cannot create {}: {e}", output.display()))?;
    let header = output_header(&reader, output);
    let writer = PcapWriter::new(BufWriter::with_capacity(1 << 20, out_file), header)
        .map_err(|e| format!("writing {}: {e}", output.display()))?;
    let sink = Sink {
        writer,
        out: output.display().to_string(),
    };
    Ok((reader, sink, size))
}

/// Exit status of a run, telling the user what an early end left in `output`: 0 when the
/// whole input was processed, 130 after Ctrl-C, 2 after an error.
pub fn exit_code(result: Result<Ended, String>, output: &Path) -> ExitCode {
    match result {
        Ok(Ended::Complete) => ExitCode::from(EXIT_OK),
        Ok(Ended::Interrupted) => {
            eprintln!(
                "interrupted: {} holds the frames processed so far",
                output.display()
            );
            ExitCode::from(130)
        }
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::from(EXIT_UNREADABLE)
        }
    }
}
