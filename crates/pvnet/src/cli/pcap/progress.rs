//! A progress bar on stderr for long runs over big captures, drawn by `indicatif`.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Files at least this big get a progress bar (when stderr is a terminal).
pub const THRESHOLD: u64 = 100 * 1000 * 1000;

/// Redraws per second: enough to look alive, too few to cost anything.
const REFRESH_HZ: u8 = 5;

/// Label, bar, percent, bytes read of the total, rate and time left. Decimal units, as
/// file sizes are usually shown.
const TEMPLATE: &str = "{msg} [{bar:30}] {percent:>3}%  {decimal_bytes}/{decimal_total_bytes}  \
                        {decimal_bytes_per_sec}  eta {eta}";

/// Shows how far through the input file a run is. Draws nothing unless the file is big
/// and stderr is a terminal, so pipes, logs and tests see only the summary that follows.
#[derive(Debug)]
pub struct Progress {
    /// `None` when nothing is drawn, which then costs nothing per record.
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(label: &str, total: u64) -> Self {
        if total < THRESHOLD || !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        // indicatif also hides it on a terminal without cursor control (TERM=dumb).
        let target = ProgressDrawTarget::stderr_with_hz(REFRESH_HZ);
        let bar = ProgressBar::with_draw_target(Some(total), target);
        // The template is a constant that parses (a test checks); should that ever
        // change, a plain bar is better than none.
        let style = ProgressStyle::with_template(TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("#> ");
        bar.set_style(style);
        bar.set_message(label.to_owned());
        Progress { bar: Some(bar) }
    }

    /// Record that `done` bytes of the input have been consumed; indicatif redraws at
    /// most REFRESH_HZ times a second.
    pub fn update(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    /// Erase the bar so the summary that follows starts on a clean line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_inputs_get_no_bar() {
        assert!(Progress::new("segmenting", THRESHOLD - 1).bar.is_none());
    }

    #[test]
    fn the_template_parses() {
        assert!(ProgressStyle::with_template(TEMPLATE).is_ok());
    }
}
