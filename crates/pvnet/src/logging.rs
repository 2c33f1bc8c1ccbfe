//! Logging for the daemon: tracing to stderr as text or JSON lines, and a copy of the
//! last lines in memory for `pvnet ctl`'s `log` request and `pvnet report`.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// How many log lines the switch keeps for `pvnet report`.
pub const KEPT_LINES: usize = 1000;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for journald, Loki, jq).
    Json,
}

/// The last [`KEPT_LINES`] log lines.
#[derive(Debug, Clone, Default)]
pub struct LogRing {
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl LogRing {
    /// The last `n` lines, oldest first.
    pub fn last(&self, n: usize) -> Vec<String> {
        let lines = match self.lines.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        let skip = lines.len().saturating_sub(n);
        lines.iter().skip(skip).cloned().collect()
    }

    fn push(&self, text: &[u8]) {
        let mut lines = match self.lines.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        for line in String::from_utf8_lossy(text).lines() {
            if lines.len() == KEPT_LINES {
                lines.pop_front();
            }
            lines.push_back(line.to_owned());
        }
    }
}

/// One event's text on its way to stderr and the ring: written out whole when dropped.
pub struct Tee {
    ring: LogRing,
    buf: Vec<u8>,
}

impl Write for Tee {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        let _ = io::stderr().write_all(&self.buf);
        self.ring.push(&self.buf);
    }
}

impl<'a> MakeWriter<'a> for LogRing {
    type Writer = Tee;

    fn make_writer(&'a self) -> Tee {
        Tee {
            ring: self.clone(),
            buf: Vec::with_capacity(256),
        }
    }
}

/// Set up tracing: RUST_LOG if set, else warn / info / debug by `verbose`; lines go to
/// stderr in `format` and are kept in the returned ring.
pub fn init(verbose: u8, format: LogFormat) -> LogRing {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let ring = LogRing::default();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ring.clone());
    let _ = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    ring
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_lines_in_order() {
        let ring = LogRing::default();
        for i in 0..(KEPT_LINES + 5) {
            ring.push(format!("line {i}\n").as_bytes());
        }
        let last = ring.last(3);
        assert_eq!(
            last,
            vec![
                format!("line {}", KEPT_LINES + 2),
                format!("line {}", KEPT_LINES + 3),
                format!("line {}", KEPT_LINES + 4)
            ]
        );
        assert_eq!(ring.last(usize::MAX).len(), KEPT_LINES);
        assert_eq!(ring.last(usize::MAX)[0], "line 5");
    }
}
