//! The counters the switch threads publish for other threads (`--metrics`, `pvnet ctl
//! stats`, the demo, the tests): each thread keeps its own counters of every port it
//! touches and publishes a copy about ten times a second; a reader sums the copies.
//!
//! Ports are kept by their slot (the number the MAC table knows them by); a slot is empty
//! once its port is removed and may be given to a port added later, with counters from
//! zero.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use pvnet_core::switch::counters::PortCounters;

use super::port::PortState;

/// Why a port left the switch (the `cause` of `pvnet_port_removed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Its device disappeared under the switch.
    DeviceGone,
    /// It was removed on purpose (`pvnet ctl port del`, a reload).
    Deleted,
}

impl Removal {
    /// Every cause, in label order.
    pub const ALL: [Removal; 2] = [Removal::DeviceGone, Removal::Deleted];

    /// The `cause` label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Removal::DeviceGone => "device_gone",
            Removal::Deleted => "deleted",
        }
    }
}

/// Counters of every port as last published by the switch threads, shared with other
/// threads.
#[derive(Debug, Clone, Default)]
pub struct StatsHandle {
    inner: Arc<Mutex<Published>>,
}

/// Where [`StatsHandle::remove_part`] keeps the counters of threads that ended (never a
/// thread's id: those count up from 0).
const RETIRED: usize = usize::MAX;

/// Port names by slot, each thread's counters of every slot (summed when read), and the
/// switch's own counts.
#[derive(Debug, Default)]
struct Published {
    names: Vec<Option<String>>,
    /// By thread id (and [`RETIRED`]), then by slot.
    parts: BTreeMap<usize, Vec<PortCounters>>,
    removed: [u64; Removal::ALL.len()],
}

impl StatsHandle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Published> {
        match self.inner.lock() {
            Ok(v) => v,
            Err(p) => p.into_inner(),
        }
    }

    /// A copy of the last published counters of the ports there are, in slot order.
    pub fn snapshot(&self) -> Vec<(String, PortCounters)> {
        let p = self.lock();
        p.names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let n = n.as_ref()?;
                let total = p.parts.values().filter_map(|part| part.get(i)).sum();
                Some((n.clone(), total))
            })
            .collect()
    }

    /// Ports removed since the switch started, by cause.
    pub fn removed(&self) -> Vec<(Removal, u64)> {
        let p = self.lock();
        Removal::ALL
            .iter()
            .map(|&r| (r, p.removed[r as usize]))
            .collect()
    }

    /// Count one port removed for `cause`.
    pub(super) fn count_removed(&self, cause: Removal) {
        self.lock().removed[cause as usize] += 1;
    }

    /// Start over with these port names (by slot) and one part per thread.
    pub(super) fn reset(&self, names: Vec<Option<String>>, parts: Vec<Vec<PortCounters>>) {
        let mut p = self.lock();
        p.names = names;
        p.parts = parts.into_iter().enumerate().collect();
    }

    /// Name slot `slot` (a port added there) or empty it (`None`: its port removed); its
    /// counters start again from zero either way.
    pub(super) fn set_slot(&self, slot: usize, name: Option<String>) {
        let mut p = self.lock();
        if p.names.len() <= slot {
            p.names.resize(slot + 1, None);
        }
        p.names[slot] = name;
        for part in p.parts.values_mut() {
            if let Some(c) = part.get_mut(slot) {
                *c = PortCounters::default();
            }
        }
    }

    /// Make room for thread `part`'s counters.
    pub(super) fn add_part(&self, part: usize) {
        self.lock().parts.insert(part, Vec::new());
    }

    /// Retire thread `part`'s counters (the thread ended with its port): what it counted
    /// of the other ports (the frames it sent them) stays in their sums, so that no
    /// port's counters go down when another port leaves.
    pub(super) fn remove_part(&self, part: usize) {
        let mut p = self.lock();
        let Some(gone) = p.parts.remove(&part) else {
            return;
        };
        let kept = p.parts.entry(RETIRED).or_default();
        if kept.len() < gone.len() {
            kept.resize(gone.len(), PortCounters::default());
        }
        for (k, g) in kept.iter_mut().zip(&gone) {
            k.add(g);
        }
    }

    /// What the threads that ended while the switch ran counted, by slot.
    pub(super) fn retired(&self) -> Vec<PortCounters> {
        self.lock().parts.get(&RETIRED).cloned().unwrap_or_default()
    }

    /// Publish thread `part`'s counters of every slot.
    pub(super) fn publish(&self, part: usize, ports: &[Option<PortState>]) {
        let mut p = self.lock();
        if let Some(v) = p.parts.get_mut(&part) {
            v.clear();
            v.extend(
                ports
                    .iter()
                    .map(|p| p.as_ref().map(|p| p.counters).unwrap_or_default()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(rx_packets: u64, tx_packets: u64) -> PortCounters {
        PortCounters {
            rx_packets,
            tx_packets,
            ..PortCounters::default()
        }
    }

    #[test]
    fn what_an_ended_thread_sent_other_ports_stays_counted() {
        let stats = StatsHandle::default();
        stats.set_slot(0, Some("a".into()));
        stats.set_slot(1, Some("b".into()));
        // Thread 0 received 5 frames from a and sent them to b; thread 1 the other way.
        stats.add_part(0);
        stats.add_part(1);
        stats
            .lock()
            .parts
            .insert(0, vec![counts(5, 0), counts(0, 5)]);
        stats
            .lock()
            .parts
            .insert(1, vec![counts(0, 2), counts(2, 0)]);
        // a leaves: its thread ends, its slot is emptied.
        stats.remove_part(0);
        stats.set_slot(0, None);
        assert_eq!(stats.snapshot(), vec![("b".to_owned(), counts(2, 5))]);
        // A port added in a's slot counts from zero.
        stats.set_slot(0, Some("c".into()));
        assert_eq!(
            stats.snapshot()[0],
            ("c".to_owned(), PortCounters::default())
        );
    }
}
