//! A daemon never logs per frame: repeated lines of one kind are written at most once per
//! interval, with the number left out since the last one. The frames themselves are
//! counted (drops by cause), so nothing is lost but log volume.
//!
//! Hand-written rather than a tracing layer: the one crate for it, `tracing-throttle`, is
//! young and writes its "N suppressed" summaries only with an async runtime; here each
//! line must carry its own count, and the limiter lives with the counter it belongs to
//! (per port and cause, per thread), costing one `Instant::now()` on error paths only.

use std::time::{Duration, Instant};

/// Least time between two lines of the same kind.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Repeated lines of one kind: when the last was written, and how many were left out since.
#[derive(Debug, Default, Clone, Copy)]
pub struct Suppressed {
    last: Option<Instant>,
    left_out: u64,
}

impl Suppressed {
    /// Count one occurrence now; `Some(left out since the last line)` when a line is due.
    pub fn hit(&mut self) -> Option<u64> {
        self.hit_at(Instant::now())
    }

    /// [`Suppressed::hit`] at `now`.
    pub fn hit_at(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .last
            .is_none_or(|t| now.saturating_duration_since(t) >= INTERVAL);
        if !due {
            self.left_out += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.left_out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_left_out() {
        let mut s = Suppressed::default();
        let t0 = Instant::now();
        assert_eq!(s.hit_at(t0), Some(0));
        for k in 1..=1000u64 {
            assert_eq!(s.hit_at(t0 + Duration::from_millis(k)), None);
        }
        assert_eq!(s.hit_at(t0 + INTERVAL), Some(1000));
        assert_eq!(s.hit_at(t0 + INTERVAL), None);
        assert_eq!(s.hit_at(t0 + INTERVAL * 2), Some(1));
    }
}
