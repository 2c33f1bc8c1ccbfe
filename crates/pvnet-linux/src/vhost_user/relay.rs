//! The frontend's control messages on their way to rust-vmm's request handler, with one
//! ordering QEMU has and the handler refuses made right.
//!
//! QEMU's virtio-net (7.2, Debian 12's) sends `SET_VRING_ENABLE` as soon as the backend
//! offers `VHOST_USER_F_PROTOCOL_FEATURES`, before the guest's driver has acknowledged any
//! feature, so before `SET_FEATURES` (virtio-net attaches its queue pairs when the device
//! is realized). The `vhost` crate checks that `SET_FEATURES` acknowledged
//! `PROTOCOL_FEATURES` first and drops the connection otherwise: no QEMU guest could ever
//! use a backend built on it with protocol features on. The spec allows the message
//! whenever the feature was *offered and negotiated*.
//!
//! So each connection passes through this relay (a thread; control messages only, never
//! a frame): messages go through unchanged, file descriptors included, except that a
//! `SET_VRING_ENABLE` that arrives before `SET_FEATURES` is answered here (with the ack
//! the frontend asked for) and remembered, then replayed to the handler right after
//! `SET_FEATURES`, so the ring ends up in the state the frontend last asked for. When the
//! frontend negotiated protocol features (`SET_PROTOCOL_FEATURES`) but leaves the bit
//! out of `SET_FEATURES`, as QEMU before 7.2 does, the bit is added: the handler then
//! accepts the `SET_VRING_ENABLE`s the frontend sends after it.
//!
//! With several queue pairs QEMU runs one vhost device per pair over the one connection,
//! and each sends `ADD_MEM_REG` for every region of guest memory (only `SET_MEM_TABLE` is
//! a once-per-connection request), which the handler refuses as overlapping regions. The
//! relay counts each region's adds and removes: the first add and the last remove go to
//! the handler, the others are acknowledged here. A `SET_MEM_TABLE` replaces the handler's
//! whole table, so the counts start over with it.
//!
//! Kicks go straight to the switch's threads: the handler would register every ring's
//! kick eventfd with `vhost-user-backend`'s worker thread, whose only job would be to
//! wake the port's thread, two context switches per batch where one does (most of the
//! backend's time at 64-byte frames). So `SET_VRING_KICK`'s fd is handed to the port
//! (`take_kick`), which waits on it itself, and the handler gets a stand-in eventfd in its
//! place that nobody signals. The worker still calls the backend once each time it starts
//! watching a ring's kick, when the ring is started or enabled (`vhost-user-backend` does
//! so for events that may have come while it was not watching): that hands the port the
//! rings and wakes its thread, which cleared any kick that came while the ring was off.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use rustix::event::{poll, PollFd, PollFlags};
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use pvnet_core::offload::features::virtio_net::PROTOCOL_FEATURES;

/// Request codes (vhost-user spec, front-end message types).
const SET_FEATURES: u32 = 2;
const SET_MEM_TABLE: u32 = 5;
const SET_PROTOCOL_FEATURES: u32 = 16;
const SET_VRING_KICK: u32 = 12;
const SET_VRING_ENABLE: u32 = 18;
const ADD_MEM_REG: u32 = 37;
const REM_MEM_REG: u32 = 38;
/// Header flags: protocol version 1, a reply, "reply with an ack".
const VERSION: u32 = 0x1;
const REPLY: u32 = 0x4;
const NEED_REPLY: u32 = 0x8;
/// Header: request, flags, payload size (u32 each, little-endian).
const HDR: usize = 12;
/// Largest payload accepted (the spec's messages are at most a few hundred bytes; a
/// CONFIG message carries up to 256 bytes of config space).
const MAX_PAYLOAD: usize = 4096;
/// Most file descriptors one message carries (SET_MEM_TABLE: 8 regions).
const MAX_FDS: usize = 32;

/// One control message.
struct Msg {
    hdr: [u8; HDR],
    payload: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Msg {
    fn request(&self) -> u32 {
        u32::from_le_bytes([self.hdr[0], self.hdr[1], self.hdr[2], self.hdr[3]])
    }
    fn flags(&self) -> u32 {
        u32::from_le_bytes([self.hdr[4], self.hdr[5], self.hdr[6], self.hdr[7]])
    }
    fn set_flags(&mut self, f: u32) {
        self.hdr[4..8].copy_from_slice(&f.to_le_bytes());
    }
    fn u64_payload(&self) -> Option<u64> {
        let b: [u8; 8] = self.payload.get(..8)?.try_into().ok()?;
        Some(u64::from_le_bytes(b))
    }
}

/// Read one message (header with its fds, then the payload). `Ok(None)` at end of stream.
fn read_msg(sock: &mut UnixStream) -> io::Result<Option<Msg>> {
    let mut hdr = [0u8; HDR];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = {
        let mut iov = [IoSliceMut::new(&mut hdr)];
        recvmsg(&*sock, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?.bytes
    };
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(it) = m {
            fds.extend(it);
        }
    }
    if got == 0 {
        return Ok(None);
    }
    sock.read_exact(&mut hdr[got..])?;
    let size = u32::from_le_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]) as usize;
    if size > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("vhost-user message of {size} bytes"),
        ));
    }
    let mut payload = vec![0u8; size];
    sock.read_exact(&mut payload)?;
    Ok(Some(Msg { hdr, payload, fds }))
}

fn write_msg(sock: &UnixStream, m: &Msg) -> io::Result<()> {
    let fds: Vec<BorrowedFd<'_>> = m.fds.iter().map(|f| f.as_fd()).collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("too many file descriptors in one message"));
    }
    let iov = [IoSlice::new(&m.hdr), IoSlice::new(&m.payload)];
    let total = HDR + m.payload.len();
    let sent = sendmsg(sock, &iov, &mut control, SendFlags::NOSIGNAL)?;
    if sent < total {
        // The fds went with the first bytes; the rest is plain data.
        let mut all = Vec::with_capacity(total);
        all.extend_from_slice(&m.hdr);
        all.extend_from_slice(&m.payload);
        (&*sock).write_all(&all[sent..])?;
    }
    Ok(())
}

/// What the relay knows of the negotiation so far.
#[derive(Default)]
struct State {
    features_set: bool,
    protocol_negotiated: bool,
    /// `SET_VRING_ENABLE`s that came before `SET_FEATURES`: (queue, enable), the last per
    /// queue wins.
    early: Vec<(u32, u32)>,
    /// Memory regions added (guest address, size, frontend address) and how often.
    regions: Vec<((u64, u64, u64), u32)>,
}

/// The region a `ADD_MEM_REG`/`REM_MEM_REG` is about: (guest physical address, size,
/// frontend address), after the 8-byte padding.
fn region_key(m: &Msg) -> Option<(u64, u64, u64)> {
    let p = m.payload.get(8..32)?;
    let u = |i: usize| u64::from_le_bytes(p[i..i + 8].try_into().unwrap_or([0; 8]));
    Some((u(0), u(8), u(16)))
}

/// Answer `m` here with a success ack, if the frontend asked for one.
fn ack_here(m: &Msg, front: &UnixStream) -> io::Result<()> {
    if m.flags() & NEED_REPLY == 0 {
        return Ok(());
    }
    let mut hdr = [0u8; HDR];
    hdr[..4].copy_from_slice(&m.request().to_le_bytes());
    hdr[4..8].copy_from_slice(&(VERSION | REPLY).to_le_bytes());
    hdr[8..12].copy_from_slice(&8u32.to_le_bytes());
    let ack = Msg {
        hdr,
        payload: 0u64.to_le_bytes().to_vec(),
        fds: Vec::new(),
    };
    write_msg(front, &ack)
}

/// `SET_VRING_KICK`'s payload: bits 0–7 the queue, bit 8 "no fd, the ring is polled".
const VRING_NOFD: u64 = 0x100;

/// Where a ring's kick eventfd goes: given the queue and the frontend's fd, keep it and
/// return the fd the handler gets instead.
pub type TakeKick<'a> = &'a mut dyn FnMut(usize, OwnedFd) -> io::Result<OwnedFd>;

/// Relay between the frontend and the request handler's end until either closes.
pub fn run(frontend: UnixStream, handler: UnixStream, take_kick: TakeKick<'_>) -> io::Result<()> {
    let (mut front, mut back) = (frontend, handler);
    let mut st = State::default();
    loop {
        let (f_ready, b_ready) = {
            let mut fds = [
                PollFd::new(&front, PollFlags::IN),
                PollFd::new(&back, PollFlags::IN),
            ];
            poll(&mut fds, None)?;
            let r = |p: &PollFd<'_>| !p.revents().is_empty();
            (r(&fds[0]), r(&fds[1]))
        };
        if b_ready {
            match read_msg(&mut back)? {
                Some(m) => write_msg(&front, &m)?,
                None => return Ok(()),
            }
        }
        if f_ready {
            let Some(m) = read_msg(&mut front)? else {
                return Ok(());
            };
            from_frontend(m, &mut st, &front, &back, take_kick)?;
        }
    }
}

fn from_frontend(
    mut m: Msg,
    st: &mut State,
    front: &UnixStream,
    back: &UnixStream,
    take_kick: TakeKick<'_>,
) -> io::Result<()> {
    match m.request() {
        SET_PROTOCOL_FEATURES => st.protocol_negotiated = true,
        SET_VRING_KICK => {
            if let (Some(v), 1) = (m.u64_payload(), m.fds.len()) {
                if v & VRING_NOFD == 0 {
                    let q = (v & 0xff) as usize;
                    if let Some(fd) = m.fds.pop() {
                        m.fds.push(take_kick(q, fd)?);
                    }
                }
            }
        }
        // The regions added so far are gone from the handler: adding one again is a new
        // region, not another queue pair's copy of one it has.
        SET_MEM_TABLE => st.regions.clear(),
        SET_VRING_ENABLE if !st.features_set => {
            // vhost_vring_state: index u32, num u32.
            let p = &m.payload;
            if p.len() >= 8 {
                let q = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
                let on = u32::from_le_bytes([p[4], p[5], p[6], p[7]]);
                st.early.retain(|(i, _)| *i != q);
                st.early.push((q, on));
            }
            return ack_here(&m, front);
        }
        ADD_MEM_REG => {
            if let Some(key) = region_key(&m) {
                if let Some((_, n)) = st.regions.iter_mut().find(|(k, _)| *k == key) {
                    // Another queue pair's device adding a region the handler has.
                    *n += 1;
                    return ack_here(&m, front);
                }
                st.regions.push((key, 1));
            }
        }
        REM_MEM_REG => {
            if let Some(key) = region_key(&m) {
                if let Some(i) = st.regions.iter().position(|(k, _)| *k == key) {
                    st.regions[i].1 -= 1;
                    if st.regions[i].1 > 0 {
                        return ack_here(&m, front);
                    }
                    st.regions.swap_remove(i);
                }
            }
        }
        SET_FEATURES => {
            if let Some(v) = m.u64_payload() {
                if st.protocol_negotiated && v & PROTOCOL_FEATURES == 0 {
                    m.payload[..8].copy_from_slice(&(v | PROTOCOL_FEATURES).to_le_bytes());
                }
            }
            st.features_set = true;
            write_msg(back, &m)?;
            for (q, on) in std::mem::take(&mut st.early) {
                let mut hdr = [0u8; HDR];
                hdr[..4].copy_from_slice(&SET_VRING_ENABLE.to_le_bytes());
                hdr[4..8].copy_from_slice(&VERSION.to_le_bytes());
                hdr[8..12].copy_from_slice(&8u32.to_le_bytes());
                let mut payload = q.to_le_bytes().to_vec();
                payload.extend_from_slice(&on.to_le_bytes());
                let mut replay = Msg {
                    hdr,
                    payload,
                    fds: Vec::new(),
                };
                replay.set_flags(VERSION);
                write_msg(back, &replay)?;
            }
            return Ok(());
        }
        _ => {}
    }
    write_msg(back, &m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(request: u32, flags: u32, payload: &[u8]) -> Msg {
        let mut hdr = [0u8; HDR];
        hdr[..4].copy_from_slice(&request.to_le_bytes());
        hdr[4..8].copy_from_slice(&flags.to_le_bytes());
        hdr[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        Msg {
            hdr,
            payload: payload.to_vec(),
            fds: Vec::new(),
        }
    }

    fn vring_state(q: u32, on: u32) -> Vec<u8> {
        let mut p = q.to_le_bytes().to_vec();
        p.extend_from_slice(&on.to_le_bytes());
        p
    }

    fn region(gpa: u64, size: u64, uaddr: u64) -> Vec<u8> {
        let mut p = vec![0u8; 8];
        for v in [gpa, size, uaddr, 0] {
            p.extend_from_slice(&v.to_le_bytes());
        }
        p
    }

    /// A relay between a fake frontend and a fake handler: (frontend end, handler end).
    fn relay() -> (
        UnixStream,
        UnixStream,
        std::thread::JoinHandle<io::Result<()>>,
    ) {
        let (front_ours, front_relay) = UnixStream::pair().expect("pair");
        let (back_relay, back_ours) = UnixStream::pair().expect("pair");
        let t = std::thread::spawn(move || run(front_relay, back_relay, &mut |_, fd| Ok(fd)));
        for s in [&front_ours, &back_ours] {
            s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .expect("timeout");
        }
        (front_ours, back_ours, t)
    }

    fn read(s: &mut UnixStream) -> Msg {
        read_msg(s).expect("read").expect("a message")
    }

    #[test]
    fn an_early_vring_enable_is_acked_here_and_replayed_after_set_features() {
        let (mut front, mut back, t) = relay();
        write_msg(
            &front,
            &msg(SET_PROTOCOL_FEATURES, VERSION, &1u64.to_le_bytes()),
        )
        .expect("send");
        assert_eq!(read(&mut back).request(), SET_PROTOCOL_FEATURES);
        // Before SET_FEATURES: answered by the relay, not passed on.
        write_msg(
            &front,
            &msg(SET_VRING_ENABLE, VERSION | NEED_REPLY, &vring_state(1, 0)),
        )
        .expect("send");
        write_msg(
            &front,
            &msg(SET_VRING_ENABLE, VERSION | NEED_REPLY, &vring_state(1, 1)),
        )
        .expect("send");
        for _ in 0..2 {
            let ack = read(&mut front);
            assert_eq!(ack.request(), SET_VRING_ENABLE);
            assert_eq!(ack.flags(), VERSION | REPLY);
            assert_eq!(ack.u64_payload(), Some(0));
        }
        // SET_FEATURES without the protocol bit: passed on with it, then the last early
        // state of ring 1 (enabled), without asking for a reply.
        write_msg(
            &front,
            &msg(SET_FEATURES, VERSION, &(1u64 << 32).to_le_bytes()),
        )
        .expect("send");
        let f = read(&mut back);
        assert_eq!(f.request(), SET_FEATURES);
        assert_eq!(f.u64_payload(), Some((1 << 32) | PROTOCOL_FEATURES));
        let e = read(&mut back);
        assert_eq!(e.request(), SET_VRING_ENABLE);
        assert_eq!(e.flags(), VERSION);
        assert_eq!(e.payload, vring_state(1, 1));
        // After SET_FEATURES everything passes, replies come back.
        write_msg(&front, &msg(SET_VRING_ENABLE, VERSION, &vring_state(0, 1))).expect("send");
        assert_eq!(read(&mut back).payload, vring_state(0, 1));
        write_msg(&back, &msg(1, VERSION | REPLY, &7u64.to_le_bytes())).expect("reply");
        assert_eq!(read(&mut front).u64_payload(), Some(7));
        drop(front);
        t.join().expect("relay thread").expect("relay ends cleanly");
    }

    #[test]
    fn each_memory_region_reaches_the_handler_once() {
        let (mut front, mut back, t) = relay();
        let r = region(0, 512 << 20, 0x7f00_0000_0000);
        // Two queue pairs' devices add the same region; the handler sees one add.
        write_msg(&front, &msg(ADD_MEM_REG, VERSION | NEED_REPLY, &r)).expect("send");
        assert_eq!(read(&mut back).request(), ADD_MEM_REG);
        write_msg(&front, &msg(ADD_MEM_REG, VERSION | NEED_REPLY, &r)).expect("send");
        let ack = read(&mut front);
        assert_eq!((ack.request(), ack.u64_payload()), (ADD_MEM_REG, Some(0)));
        // The first remove is answered here, the last goes through.
        write_msg(&front, &msg(REM_MEM_REG, VERSION | NEED_REPLY, &r)).expect("send");
        assert_eq!(read(&mut front).request(), REM_MEM_REG);
        write_msg(&front, &msg(REM_MEM_REG, VERSION, &r)).expect("send");
        assert_eq!(read(&mut back).request(), REM_MEM_REG);
        // A different region is its own.
        let other = region(1 << 32, 1 << 20, 0x7f10_0000_0000);
        write_msg(&front, &msg(ADD_MEM_REG, VERSION, &other)).expect("send");
        assert_eq!(read(&mut back).payload, other);
        // A new table replaces it: added again, it reaches the handler again.
        write_msg(&front, &msg(SET_MEM_TABLE, VERSION, &[0u8; 8])).expect("send");
        assert_eq!(read(&mut back).request(), SET_MEM_TABLE);
        write_msg(&front, &msg(ADD_MEM_REG, VERSION, &other)).expect("send");
        assert_eq!(read(&mut back).payload, other);
        drop(back);
        t.join().expect("relay thread").expect("relay ends cleanly");
    }

    #[test]
    fn a_kick_fd_goes_to_the_port_and_the_handler_gets_a_stand_in() {
        use rustix::event::{eventfd, EventfdFlags};
        let (front, front_relay) = UnixStream::pair().expect("pair");
        let (back_relay, mut back) = UnixStream::pair().expect("pair");
        back.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .expect("timeout");
        let (taken_tx, taken_rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            run(front_relay, back_relay, &mut |q, fd| {
                taken_tx.send((q, fd)).expect("test alive");
                Ok(eventfd(5, EventfdFlags::NONBLOCK)?)
            })
        });
        let kick = eventfd(0, EventfdFlags::NONBLOCK).expect("eventfd");
        let mut m = msg(SET_VRING_KICK, VERSION, &3u64.to_le_bytes());
        m.fds.push(kick.try_clone().expect("dup"));
        write_msg(&front, &m).expect("send");
        let got = read(&mut back);
        assert_eq!(
            (got.request(), got.u64_payload()),
            (SET_VRING_KICK, Some(3))
        );
        let (q, taken) = taken_rx.recv().expect("the kick was taken");
        assert_eq!(q, 3);
        // The frontend's kick reaches the taken fd, not the handler's.
        rustix::io::write(&kick, &1u64.to_ne_bytes()).expect("kick");
        let mut buf = [0u8; 8];
        rustix::io::read(&taken, &mut buf).expect("the port sees the kick");
        assert_eq!(u64::from_ne_bytes(buf), 1);
        assert_eq!(got.fds.len(), 1);
        rustix::io::read(&got.fds[0], &mut buf).expect("the stand-in");
        assert_eq!(u64::from_ne_bytes(buf), 5, "the handler got the stand-in");
        // A polled ring (no fd) passes through as it is.
        write_msg(
            &front,
            &msg(SET_VRING_KICK, VERSION, &(VRING_NOFD | 1).to_le_bytes()),
        )
        .expect("send");
        let got = read(&mut back);
        assert_eq!(
            (got.u64_payload(), got.fds.len()),
            (Some(VRING_NOFD | 1), 0)
        );
        assert!(taken_rx.try_recv().is_err());
        drop(front);
        t.join().expect("relay thread").expect("relay ends cleanly");
    }
}
