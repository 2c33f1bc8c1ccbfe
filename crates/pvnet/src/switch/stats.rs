//! The counters the switch threads publish for other threads (`--metrics`, the demo, the
//! tests): each thread keeps its own counters of every port it touches and publishes a
//! copy about ten times a second; a reader sums the copies.

use std::sync::{Arc, Mutex};

use pvnet_core::switch::counters::{render_prometheus, PortCounters};

use super::port::PortState;

/// Counters of every port as last published by the switch threads, shared with other
/// threads.
#[derive(Debug, Clone, Default)]
pub struct StatsHandle {
    inner: Arc<Mutex<Published>>,
}

/// Port names, and each thread's counters of every port (summed when read).
#[derive(Debug, Default)]
struct Published {
    names: Vec<String>,
    parts: Vec<Vec<PortCounters>>,
}

impl StatsHandle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Published> {
        match self.inner.lock() {
            Ok(v) => v,
            Err(p) => p.into_inner(),
        }
    }

    /// A copy of the last published counters, in port order.
    pub fn snapshot(&self) -> Vec<(String, PortCounters)> {
        let p = self.lock();
        p.names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let total = p.parts.iter().filter_map(|part| part.get(i)).sum();
                (n.clone(), total)
            })
            .collect()
    }

    /// Start over with these port names and one part per thread.
    pub(super) fn reset(&self, names: Vec<String>, parts: Vec<Vec<PortCounters>>) {
        let mut p = self.lock();
        p.names = names;
        p.parts = parts;
    }

    /// Publish thread `part`'s counters of every port.
    pub(super) fn publish(&self, part: usize, ports: &[PortState]) {
        let mut p = self.lock();
        if let Some(v) = p.parts.get_mut(part) {
            v.clear();
            v.extend(ports.iter().map(|p| p.counters));
        }
    }

    /// The counters in the Prometheus text format (`port` label on every series).
    pub fn render_prometheus(&self) -> String {
        let snap = self.snapshot();
        let mut out = String::new();
        render_prometheus(snap.iter().map(|(n, s)| (n.as_str(), s)), &mut out);
        out
    }
}
