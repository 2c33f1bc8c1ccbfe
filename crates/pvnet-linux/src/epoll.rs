//! A level-triggered epoll set whose events carry a caller-chosen `u64` token: what the
//! switch runtime waits on (one set per forwarding thread, one fd per port queue).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::event::Timespec;

/// An epoll set (`epoll_create1(EPOLL_CLOEXEC)`), closed when dropped.
pub struct Epoll {
    fd: OwnedFd,
    events: Vec<Event>,
}

impl std::fmt::Debug for Epoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoll")
            .field("fd", &self.fd)
            .field("max_events", &self.events.len())
            .finish()
    }
}

impl Epoll {
    /// A new epoll set that reports up to `max_events` events (at least 1) per
    /// [`Epoll::wait`].
    pub fn new(max_events: usize) -> io::Result<Epoll> {
        let fd = epoll::create(CreateFlags::CLOEXEC)?;
        let empty = Event {
            flags: EventFlags::empty(),
            data: EventData::new_u64(0),
        };
        Ok(Epoll {
            fd,
            events: vec![empty; max_events.max(1)],
        })
    }

    /// Watch `fd` for readability (level-triggered); its events carry `token`. The set
    /// does not keep `fd` open: close it only after the last [`Epoll::wait`] that may
    /// report it, or the kernel may still report the token.
    pub fn add(&self, fd: impl AsFd, token: u64) -> io::Result<()> {
        epoll::add(&self.fd, fd, EventData::new_u64(token), EventFlags::IN)?;
        Ok(())
    }

    /// Stop watching `fd` (a port whose device is gone).
    pub fn delete(&self, fd: impl AsFd) -> io::Result<()> {
        epoll::delete(&self.fd, fd)?;
        Ok(())
    }

    /// Wait for events, up to `timeout` (`None`: until one comes), and return the tokens
    /// of the ready fds: empty on timeout or when a signal interrupted the wait.
    pub fn wait(
        &mut self,
        timeout: Option<Duration>,
    ) -> io::Result<impl Iterator<Item = u64> + '_> {
        let timeout = timeout
            .map(Timespec::try_from)
            .transpose()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "epoll timeout too long"))?;
        let n = match epoll::wait(&self.fd, &mut self.events[..], timeout.as_ref()) {
            Ok(n) => n,
            Err(e) if e == rustix::io::Errno::INTR => 0,
            Err(e) => return Err(e.into()),
        };
        Ok(self.events[..n].iter().map(|e| e.data.u64()))
    }
}

/// A wake-up another thread can give an epoll loop (an `eventfd`): add it to the set with
/// a token of its own, [`Waker::wake`] from anywhere, [`Waker::drain`] when it fires.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    /// A new, unsignalled waker (non-blocking, close-on-exec).
    pub fn new() -> io::Result<Waker> {
        use rustix::event::{eventfd, EventfdFlags};
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Waker { fd })
    }

    /// Make the fd readable until the next [`Waker::drain`]. Never blocks: a waker that
    /// is already signalled stays so.
    pub fn wake(&self) {
        // Fails only when the counter would overflow, i.e. it is signalled already.
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    /// Clear the signal.
    pub fn drain(&self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut buf);
    }
}

impl AsFd for Waker {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waker_wakes_the_set_until_drained() {
        let mut ep = Epoll::new(4).expect("epoll");
        let w = Waker::new().expect("eventfd");
        ep.add(&w, 7).expect("add");
        let t: Vec<u64> = ep.wait(Some(Duration::ZERO)).expect("wait").collect();
        assert!(t.is_empty(), "not signalled yet: {t:?}");
        w.wake();
        w.wake();
        let t: Vec<u64> = ep.wait(Some(Duration::ZERO)).expect("wait").collect();
        assert_eq!(t, vec![7]);
        w.drain();
        let t: Vec<u64> = ep.wait(Some(Duration::ZERO)).expect("wait").collect();
        assert!(t.is_empty(), "drained: {t:?}");
    }
}
