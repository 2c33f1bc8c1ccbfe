//! A progress bar on stderr for long runs over big captures.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Files at least this big get a progress bar (when stderr is a terminal).
pub const THRESHOLD: u64 = 100 * 1000 * 1000;

const REDRAW_EVERY: Duration = Duration::from_millis(200);
const WIDTH: usize = 30;

/// Shows how far through the input file a run is: bytes read of the total, percent, rate.
/// Draws nothing unless the file is big and stderr is a terminal, so pipes and logs stay
/// clean.
#[derive(Debug)]
pub struct Progress {
    total: u64,
    label: String,
    started: Instant,
    last_draw: Option<Instant>,
    enabled: bool,
}

impl Progress {
    pub fn new(label: &str, total: u64) -> Self {
        Progress {
            total,
            label: label.to_owned(),
            started: Instant::now(),
            last_draw: None,
            enabled: total >= THRESHOLD && std::io::stderr().is_terminal(),
        }
    }

    /// Record that `done` bytes of the input have been consumed; redraws at most five
    /// times a second.
    pub fn update(&mut self, done: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self
            .last_draw
            .is_some_and(|t| now.duration_since(t) < REDRAW_EVERY)
        {
            return;
        }
        self.last_draw = Some(now);
        self.draw(done, now);
    }

    fn draw(&self, done: u64, now: Instant) {
        let frac = if self.total == 0 {
            1.0
        } else {
            (done as f64 / self.total as f64).min(1.0)
        };
        let filled = (frac * WIDTH as f64) as usize;
        let secs = now.duration_since(self.started).as_secs_f64().max(1e-3);
        let rate = done as f64 / secs / 1e6;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{} [{}{}] {:5.1}%  {}/{} MB  {:.0} MB/s ",
            self.label,
            "#".repeat(filled),
            " ".repeat(WIDTH - filled),
            frac * 100.0,
            done / 1_000_000,
            self.total / 1_000_000,
            rate
        );
        let _ = err.flush();
    }

    /// Erase the bar so the summary that follows starts on a clean line.
    pub fn finish(&mut self) {
        if self.enabled && self.last_draw.is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{}\r", " ".repeat(self.label.len() + WIDTH + 50));
            let _ = err.flush();
        }
    }
}
