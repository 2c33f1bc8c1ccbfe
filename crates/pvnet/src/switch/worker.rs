//! One switch thread: an epoll loop over the ports it receives from, each ready queue
//! drained a few batches at a time into the ingress path.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pvnet_core::switch::mac_table::PortId;
use pvnet_linux::epoll::Epoll;
use pvnet_linux::port::{device_gone, RecvBufs};

use super::forward::{lock_mac, Forwarder};
use super::ingress::{Ingress, Rx};
use super::offload::IngressGro;
use super::port::PortState;
use super::stats::StatsHandle;

/// One switch thread: the ports it receives from (`owned`, with their receive buffers
/// and coalescers) and its handles on every port it sends to.
pub(super) struct Worker {
    /// Every port, by index: the owned ones themselves, the others as senders.
    pub ports: Vec<PortState>,
    pub bufs: Vec<Option<RecvBufs>>,
    pub gro: Vec<Option<IngressGro>>,
    pub fwd: Forwarder,
    /// Per receive batch: what validation found of each frame.
    pub rx: Vec<Rx>,
    /// Per receive batch: the frames of the run GRO coalesces.
    pub run: Vec<usize>,
    pub owned: Vec<usize>,
    /// Index of this thread's counters in the [`StatsHandle`].
    pub part: usize,
    /// Receive errors not logged yet, per port, and when the last line was written: a
    /// daemon logs one line per cause and interval, never one per frame.
    pub recv_errors: Vec<Suppressed>,
}

/// Repeated warnings of one kind, written at most once per [`WARN_INTERVAL_MS`] with the
/// number of those left out.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Suppressed {
    last_ms: Option<u64>,
    count: u64,
}

/// Least time between two lines of the same warning.
const WARN_INTERVAL_MS: u64 = 10_000;

impl Suppressed {
    /// Count one occurrence at `now_ms`; `Some(left out since the last line)` when a line
    /// is due.
    fn hit(&mut self, now_ms: u64) -> Option<u64> {
        let due = self
            .last_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= WARN_INTERVAL_MS);
        if !due {
            self.count += 1;
            return None;
        }
        self.last_ms = Some(now_ms);
        Some(std::mem::take(&mut self.count))
    }
}

/// What draining a queue found.
enum Serviced {
    /// Go on.
    Ok,
    /// The port's device is gone (the error says how).
    Gone(io::Error),
}

impl Worker {
    /// Service the owned ports until `stop` (or `failed`: another thread failed).
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        failed: &AtomicBool,
        clock: Instant,
        stats: &StatsHandle,
    ) -> io::Result<()> {
        let r = self.run_loop(stop, failed, clock, stats);
        if r.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        if let Some(p) = &mut self.fwd.pcap {
            p.flush();
        }
        stats.publish(self.part, &self.ports);
        r
    }

    fn run_loop(
        &mut self,
        stop: &AtomicBool,
        failed: &AtomicBool,
        clock: Instant,
        stats: &StatsHandle,
    ) -> io::Result<()> {
        let nfds: usize = self.owned.iter().map(|&i| self.ports[i].queues.len()).sum();
        let mut epoll = Epoll::new(nfds.max(1))?;
        for &i in &self.owned {
            for (q, queue) in self.ports[i].queues.iter().enumerate() {
                epoll.add(queue.as_fd(), token(i, q))?;
            }
        }
        let mut last_publish = Duration::ZERO;
        let mut last_expire = Duration::ZERO;
        let mut ready: Vec<u64> = Vec::with_capacity(nfds.max(1));
        while !stop.load(Ordering::Relaxed) && !failed.load(Ordering::Relaxed) {
            ready.clear();
            ready.extend(epoll.wait(Some(Duration::from_millis(100)))?);
            let now = clock.elapsed();
            self.fwd.now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
            for &t in &ready {
                let (i, q) = untoken(t);
                if let Serviced::Gone(e) = self.service(i, q) {
                    self.take_down(&epoll, i, &e);
                }
            }
            if now.saturating_sub(last_expire) >= Duration::from_secs(1) {
                lock_mac(&self.fwd.mac).expire(self.fwd.now_ms);
                last_expire = now;
            }
            if now.saturating_sub(last_publish) >= Duration::from_millis(100) {
                stats.publish(self.part, &self.ports);
                last_publish = now;
            }
        }
        Ok(())
    }

    /// Port `i`'s device is gone: stop watching its queues, stop every thread sending to
    /// it, forget the addresses learned on it, count it, and say so once.
    fn take_down(&mut self, epoll: &Epoll, i: usize, e: &io::Error) {
        let Some(port) = self.ports.get_mut(i) else {
            return;
        };
        if port.is_down() {
            return;
        }
        for queue in &port.queues {
            if let Err(err) = epoll.delete(queue.as_fd()) {
                tracing::debug!(port = %port.name, "epoll delete: {err}");
            }
        }
        port.set_down();
        port.counters.removed += 1;
        tracing::warn!(
            port = %port.name,
            "device gone ({e}): port taken down, the other ports forward on"
        );
        if let Ok(id) = PortId::try_from(i) {
            lock_mac(&self.fwd.mac).flush_port(id);
        }
    }

    /// Drain one queue of port `i`: a few batches at most, so other ports get their turn
    /// (epoll is level-triggered and wakes us again).
    fn service(&mut self, i: usize, q: usize) -> Serviced {
        let Worker {
            ports,
            bufs,
            gro,
            fwd,
            rx,
            run,
            recv_errors,
            ..
        } = self;
        let (Some(Some(bufs)), Some(gro)) = (bufs.get_mut(i), gro.get_mut(i)) else {
            return Serviced::Ok;
        };
        for _ in 0..4 {
            let Some(queue) = ports.get_mut(i).and_then(|p| p.queues.get_mut(q)) else {
                return Serviced::Ok;
            };
            let n = match queue.recv_batch(bufs) {
                Ok(n) => n,
                Err(e) if device_gone(&e) => return Serviced::Gone(e),
                Err(e) => {
                    let left_out = recv_errors.get_mut(i).and_then(|w| w.hit(fwd.now_ms));
                    if let Some(n) = left_out {
                        tracing::warn!(
                            port = %ports[i].name,
                            "receive failed: {e} ({n} more since the last such line)"
                        );
                    }
                    return Serviced::Ok;
                }
            };
            if n == 0 {
                return Serviced::Ok;
            }
            let start = ports[i].start;
            let bufs: &RecvBufs = bufs;
            let mut ctx = Ingress {
                ports: &mut ports[..],
                fwd,
                i,
                start,
            };
            // Validate every frame first, so that GRO sees whole runs of plain frames.
            rx.clear();
            for k in 0..n {
                rx.push(ctx.validate(bufs, k));
            }
            ctx.forward_batch(bufs, rx, gro.as_mut(), run);
            if n < bufs.capacity() {
                return Serviced::Ok;
            }
        }
        Serviced::Ok
    }
}

fn token(port: usize, queue: usize) -> u64 {
    ((port as u64) << 16) | queue as u64
}

fn untoken(t: u64) -> (usize, usize) {
    ((t >> 16) as usize, (t & 0xffff) as usize)
}
