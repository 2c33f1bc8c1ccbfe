//! One switch thread: an epoll loop over the queues it receives from (in shared mode one
//! queue of one port, else every queue of every port), each ready queue drained a few
//! batches at a time into the ingress path, and a mailbox through which the supervisor
//! ([`super::Switch::run`]) attaches and detaches ports while it runs.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pvnet_core::switch::counters::DropCause;
use pvnet_linux::epoll::{Epoll, Waker};
use pvnet_linux::port::{device_gone, RecvBufs};

use super::forward::{lock_mac, Forwarder};
use super::ingress::{Ingress, Rx};
use super::offload::IngressGro;
use super::port::PortState;
use super::quiet::Suppressed;
use super::stats::StatsHandle;
use super::{flush_mac, Supervise};

/// What the supervisor tells a thread; each is acknowledged once carried out.
pub(super) enum Command {
    /// Send to the port in `slot` from now on; with `rx`, also receive from it.
    Attach {
        slot: usize,
        port: Box<PortState>,
        rx: Option<Receive>,
    },
    /// Forget the port in `slot`: stop receiving from it, close this thread's handle.
    Detach { slot: usize },
    /// Coalesce what the port in `slot` receives with these settings, or not at all.
    SetGro {
        slot: usize,
        gro: Option<IngressGro>,
    },
    /// End the loop (its port is being removed, or the switch stops).
    Stop,
}

/// What a thread needs to receive from a port.
pub(super) struct Receive {
    pub bufs: RecvBufs,
    pub gro: Option<IngressGro>,
}

/// A command and where to acknowledge it.
pub(super) type Letter = (Command, mpsc::Sender<()>);

/// A thread's side of its mailbox.
pub(super) struct Mailbox {
    pub letters: mpsc::Receiver<Letter>,
    pub waker: Arc<Waker>,
    pub events: mpsc::Sender<Supervise>,
}

/// One switch thread: the ports it receives from (`owned`, with their receive buffers
/// and coalescers) and its handles on every port it sends to, all by slot.
pub(super) struct Worker {
    /// Every port, by slot: the owned ones themselves (in shared mode, the part of its
    /// port with the one queue it receives from), the others as senders.
    pub ports: Vec<Option<PortState>>,
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
    pub mailbox: Mailbox,
}

/// What draining a queue found.
enum Serviced {
    /// Go on.
    Ok,
    /// The port's device is gone (the error says how).
    Gone(io::Error),
}

/// Token of the mailbox's waker in the epoll set (never a port's: those have a queue
/// number below 2^16).
const WAKE: u64 = u64::MAX;

/// Make `v` at least `n` long, filling with `None`/defaults.
fn grow<T: Default>(v: &mut Vec<T>, n: usize) {
    if v.len() < n {
        v.resize_with(n, T::default);
    }
}

impl Worker {
    /// Service the owned ports until `stop`, a [`Command::Stop`], or `failed` (another
    /// thread failed).
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

    fn watch(&self, epoll: &Epoll, slot: usize) -> io::Result<()> {
        if let Some(Some(port)) = self.ports.get(slot) {
            for (q, queue) in port.queues.iter().enumerate() {
                epoll.add(queue.as_fd(), token(slot, q))?;
            }
        }
        Ok(())
    }

    fn unwatch(&self, epoll: &Epoll, slot: usize) {
        if let Some(Some(port)) = self.ports.get(slot) {
            for queue in &port.queues {
                // Already gone from the set when the port was taken down.
                let _ = epoll.delete(queue.as_fd());
            }
        }
    }

    fn run_loop(
        &mut self,
        stop: &AtomicBool,
        failed: &AtomicBool,
        clock: Instant,
        stats: &StatsHandle,
    ) -> io::Result<()> {
        let nfds: usize = self
            .owned
            .iter()
            .filter_map(|&i| self.ports.get(i)?.as_ref())
            .map(|p| p.queues.len())
            .sum();
        let mut epoll = Epoll::new(nfds + 1)?;
        epoll.add(self.mailbox.waker.as_fd(), WAKE)?;
        for &i in &self.owned {
            self.watch(&epoll, i)?;
        }
        let mut last_publish = Duration::ZERO;
        let mut last_expire = Duration::ZERO;
        let mut ready: Vec<u64> = Vec::with_capacity(nfds + 1);
        while !stop.load(Ordering::Relaxed) && !failed.load(Ordering::Relaxed) {
            ready.clear();
            ready.extend(epoll.wait(Some(Duration::from_millis(100)))?);
            let now = clock.elapsed();
            self.fwd.now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
            for &t in &ready {
                if t == WAKE {
                    self.mailbox.waker.drain();
                    continue;
                }
                let (i, q) = untoken(t);
                if let Serviced::Gone(e) = self.service(i, q) {
                    self.take_down(&epoll, i, &e);
                }
            }
            // Nothing sent stays unpublished across a wait.
            for p in self.ports.iter_mut().flatten() {
                p.flush();
            }
            if !self.read_mail(&epoll, stats)? {
                break;
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

    /// Carry out the supervisor's commands; `false` when told to stop.
    fn read_mail(&mut self, epoll: &Epoll, stats: &StatsHandle) -> io::Result<bool> {
        let mut go_on = true;
        while let Ok((cmd, ack)) = self.mailbox.letters.try_recv() {
            self.fwd.ports_changed();
            match cmd {
                Command::Attach { slot, port, rx } => {
                    grow(&mut self.ports, slot + 1);
                    grow(&mut self.bufs, slot + 1);
                    grow(&mut self.gro, slot + 1);
                    grow(&mut self.recv_errors, slot + 1);
                    self.ports[slot] = Some(*port);
                    self.recv_errors[slot] = Suppressed::default();
                    if let Some(rx) = rx {
                        // Sized once here, so that no batch grows them.
                        self.rx.reserve(rx.bufs.capacity());
                        self.run.reserve(rx.bufs.capacity());
                        self.bufs[slot] = Some(rx.bufs);
                        self.gro[slot] = rx.gro;
                        self.watch(epoll, slot)?;
                        self.owned.push(slot);
                    }
                }
                Command::Detach { slot } => {
                    if self.owned.contains(&slot) {
                        self.unwatch(epoll, slot);
                        self.owned.retain(|&o| o != slot);
                    }
                    if let Some(b) = self.bufs.get_mut(slot) {
                        *b = None;
                    }
                    if let Some(g) = self.gro.get_mut(slot) {
                        *g = None;
                    }
                    if let Some(p) = self.ports.get_mut(slot) {
                        *p = None;
                    }
                    stats.publish(self.part, &self.ports);
                }
                Command::SetGro { slot, gro } => {
                    if let Some(g) = self.gro.get_mut(slot) {
                        *g = gro;
                    }
                }
                Command::Stop => go_on = false,
            }
            let _ = ack.send(());
        }
        Ok(go_on)
    }

    /// Port `i`'s device is gone: stop watching its queues, stop every thread sending to
    /// it, forget the addresses learned on it, say so once, and have the supervisor
    /// remove it. Each of the port's threads stops watching its own queues (a dead fd
    /// stays ready); only the first to find the device gone says so.
    fn take_down(&mut self, epoll: &Epoll, i: usize, e: &io::Error) {
        self.unwatch(epoll, i);
        let Some(Some(port)) = self.ports.get(i) else {
            return;
        };
        if !port.set_down() {
            return;
        }
        tracing::warn!(
            port = %port.name,
            "device gone ({e}): port taken down, the other ports forward on"
        );
        flush_mac(&self.fwd.mac, i);
        let _ = self.mailbox.events.send(Supervise::Gone {
            slot: i,
            name: port.name.clone(),
            why: e.to_string(),
        });
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
            let Some(queue) = ports
                .get_mut(i)
                .and_then(Option::as_mut)
                .and_then(|p| p.queues.get_mut(q))
            else {
                return Serviced::Ok;
            };
            let n = match queue.recv_batch(bufs) {
                Ok(n) => n,
                Err(e) if device_gone(&e) => return Serviced::Gone(e),
                Err(e) => {
                    let left_out = recv_errors.get_mut(i).and_then(Suppressed::hit);
                    if let (Some(n), Some(Some(p))) = (left_out, ports.get(i)) {
                        tracing::warn!(
                            port = %p.name,
                            "receive failed: {e} ({n} more since the last such line)"
                        );
                    }
                    return Serviced::Ok;
                }
            };
            let refused = queue.take_rx_drops();
            if refused > 0 {
                if let Some(Some(port)) = ports.get_mut(i) {
                    port.counters.drops[DropCause::Parse as usize] += refused;
                }
            }
            if n == 0 {
                return Serviced::Ok;
            }
            let Some(Some(port)) = ports.get(i) else {
                return Serviced::Ok;
            };
            let start = port.start;
            let bufs: &RecvBufs = bufs;
            let mut ctx = Ingress {
                ports: &mut ports[..],
                fwd,
                i,
                start,
            };
            if let Some(gro) = gro.as_mut() {
                // Validate every frame first, so that GRO sees whole runs of plain frames.
                rx.clear();
                for k in 0..n {
                    rx.push(ctx.validate(bufs, k));
                }
                ctx.forward_batch(bufs, rx, gro, run);
            } else {
                // Nothing to coalesce: each frame goes while its headers are still in
                // the cache, and what validation found is never stored.
                for k in 0..n {
                    ctx.validate_and_forward(bufs, k);
                }
            }
            for p in ports.iter_mut().flatten() {
                p.flush();
            }
            if let Some(queue) = ports
                .get_mut(i)
                .and_then(Option::as_mut)
                .and_then(|p| p.queues.get_mut(q))
            {
                queue.release();
            }
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
