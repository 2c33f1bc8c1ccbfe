//! One switch thread: an epoll loop over the ports it receives from, each ready queue
//! drained a few batches at a time into the ingress path.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pvnet_linux::epoll::Epoll;
use pvnet_linux::port::RecvBufs;

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
                self.service(i, q);
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

    /// Drain one queue of port `i`: a few batches at most, so other ports get their turn
    /// (epoll is level-triggered and wakes us again).
    fn service(&mut self, i: usize, q: usize) {
        let Worker {
            ports,
            bufs,
            gro,
            fwd,
            rx,
            run,
            ..
        } = self;
        let (Some(Some(bufs)), Some(gro)) = (bufs.get_mut(i), gro.get_mut(i)) else {
            return;
        };
        for _ in 0..4 {
            let Some(queue) = ports.get_mut(i).and_then(|p| p.queues.get_mut(q)) else {
                return;
            };
            let n = match queue.recv_batch(bufs) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(port = %ports[i].name, "receive failed: {e}");
                    return;
                }
            };
            if n == 0 {
                return;
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
                return;
            }
        }
    }
}

fn token(port: usize, queue: usize) -> u64 {
    ((port as u64) << 16) | queue as u64
}

fn untoken(t: u64) -> (usize, usize) {
    ((t >> 16) as usize, (t & 0xffff) as usize)
}
