//! A fake guest for tests: a vhost-user frontend (rust-vmm's `Frontend`) with guest memory
//! in memfds, and a virtio-net driver's side of the split rings written by hand, so a
//! test can negotiate features, put chains of its choosing (hostile ones too) on the
//! rings, change the memory table while connected, and read what the backend returned.
//! Test-only (`testing` feature).

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pvnet_core::offload::features::virtio_net;
use vhost::vhost_user::message::{VhostUserHeaderFlag, VhostUserProtocolFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Guest memory size.
pub const MEM_SIZE: u64 = 64 << 20;
/// Where the rings live: queue `q` at `q * RING_STRIDE`.
const RING_STRIDE: u64 = 0x4_0000;
/// Where buffers go unless a test says otherwise ([`FakeGuest::use_buffers_in`]): the
/// first region, past the rings.
pub const BUFFERS: Range<u64> = (8 << 20)..MEM_SIZE;
/// The frontend's "userspace address" of guest address 0 (any value: the backend only
/// translates ring addresses with it). Every region is at `UADDR + guest address`, in
/// every table, as in QEMU, where guest RAM keeps its host address while the VM runs.
const UADDR: u64 = 0x7f00_0000_0000;

/// `VRING_DESC_F_NEXT` / `VRING_DESC_F_WRITE` / `VRING_DESC_F_INDIRECT`.
pub const F_NEXT: u16 = 1;
pub const F_WRITE: u16 = 2;
pub const F_INDIRECT: u16 = 4;

/// One descriptor as a test writes it: the port's own form of it.
pub use super::ring::Desc;

/// The driver's side of one split ring.
#[derive(Debug)]
struct DriverRing {
    base: u64,
    size: u16,
    /// Next descriptor index to hand out (round robin).
    next_desc: u16,
    avail_idx: u16,
    /// Used entries read so far.
    used_seen: u16,
    /// The heads made available and not yet used, in order: what an in-order driver
    /// knows of a transmit batch the device returned with one used element.
    in_flight: std::collections::VecDeque<u16>,
}

impl DriverRing {
    fn desc_addr(&self) -> u64 {
        self.base
    }
    fn avail_addr(&self) -> u64 {
        self.base + 16 * u64::from(self.size)
    }
    fn used_addr(&self) -> u64 {
        // 4-byte aligned after the avail ring (flags, idx, ring, used_event).
        (self.avail_addr() + 6 + 2 * u64::from(self.size) + 3) & !3
    }
}

/// One region of guest memory: `size` bytes at guest address `gpa`, from `offset` in
/// `file`.
#[derive(Debug)]
struct Backing {
    gpa: u64,
    size: u64,
    file: Arc<File>,
    offset: u64,
}

impl Backing {
    /// The region as the frontend describes it to the backend.
    fn info(&self) -> VhostUserMemoryRegionInfo {
        VhostUserMemoryRegionInfo {
            guest_phys_addr: self.gpa,
            memory_size: self.size,
            userspace_addr: UADDR + self.gpa,
            mmap_offset: self.offset,
            mmap_handle: self.file.as_raw_fd(),
        }
    }

    fn range(&self) -> Range<u64> {
        self.gpa..self.gpa + self.size
    }
}

/// A connected fake guest.
pub struct FakeGuest {
    frontend: Frontend,
    /// The test's own mapping of guest memory.
    pub mem: GuestMemoryMmap,
    /// The memory table as the backend was last told it.
    regions: Vec<Backing>,
    rings: Vec<DriverRing>,
    kicks: Vec<EventFd>,
    calls: Vec<EventFd>,
    acked: u64,
    /// Where buffers are allocated, and the next free byte there (wraps).
    buffers: Range<u64>,
    next_buf: u64,
    /// Receive buffers posted: (queue, descriptor head) → (address, size).
    rx_posted: std::collections::HashMap<(usize, u16), (u64, u32)>,
    /// Per receive queue: used entries read from the ring but not yet returned as frames.
    rx_pending: std::collections::HashMap<usize, std::collections::VecDeque<(u32, u32)>>,
    /// Receive buffers the backend returned with less than a header in them.
    rx_short: u64,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl FakeGuest {
    /// Connect to a backend listening on `path` (retrying for up to 5 s), negotiate the
    /// offered features masked by `want`, share 64 MiB of memory and set up `pairs` queue
    /// pairs of `queue_size` entries, all enabled.
    pub fn connect(path: &Path, want: u64, pairs: usize, queue_size: u16) -> io::Result<FakeGuest> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut frontend = loop {
            match Frontend::connect(path, 2 * pairs as u64) {
                Ok(f) => break f,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(io_err(format!("connect {}: {e}", path.display()))),
            }
        };
        let base = Backing {
            gpa: 0,
            size: MEM_SIZE,
            file: Arc::new(memfd(MEM_SIZE)?),
            offset: 0,
        };
        let mem = map(std::slice::from_ref(&base))?;
        frontend.set_owner().map_err(io_err)?;
        let offered = frontend.get_features().map_err(io_err)?;
        let acked = offered & want;
        frontend.set_features(acked).map_err(io_err)?;
        if acked & virtio_net::PROTOCOL_FEATURES != 0 {
            let p = frontend.get_protocol_features().map_err(io_err)?;
            let keep = p
                & (VhostUserProtocolFeatures::MQ
                    | VhostUserProtocolFeatures::REPLY_ACK
                    | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
                    | VhostUserProtocolFeatures::CONFIG);
            frontend.set_protocol_features(keep).map_err(io_err)?;
        }
        let mut g = FakeGuest {
            frontend,
            mem,
            regions: vec![base],
            rings: Vec::new(),
            kicks: Vec::new(),
            calls: Vec::new(),
            acked,
            buffers: BUFFERS,
            next_buf: BUFFERS.start,
            rx_posted: Default::default(),
            rx_pending: Default::default(),
            rx_short: 0,
        };
        let table = [g.regions[0].info()];
        g.memory_request(|f| f.set_mem_table(&table).map(drop))?;
        for q in 0..2 * pairs {
            g.setup_queue(q, queue_size)?;
        }
        Ok(g)
    }

    /// Send a memory table request and, with `REPLY_ACK`, wait for the backend's ack, as
    /// QEMU does: guest memory must not be used before the backend has mapped it, nor
    /// taken away before it has unmapped it.
    fn memory_request(
        &mut self,
        req: impl FnOnce(&mut Frontend) -> vhost::Result<()>,
    ) -> io::Result<()> {
        self.frontend.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        let r = req(&mut self.frontend);
        self.frontend.set_hdr_flags(VhostUserHeaderFlag::empty());
        r.map_err(io_err)
    }

    fn setup_queue(&mut self, q: usize, size: u16) -> io::Result<()> {
        let (ring, call, kick) = self.init_queue(q, size)?;
        self.rings.push(ring);
        self.kicks.push(kick);
        self.calls.push(call);
        Ok(())
    }

    /// Stop queue `q` and set it up again from scratch, as a driver reset does (a guest
    /// rebooting under the same QEMU): `GET_VRING_BASE`, then the ring zeroed and handed
    /// over again with new eventfds. Receive buffers posted on it are forgotten.
    pub fn restart_ring(&mut self, q: usize) -> io::Result<()> {
        self.frontend.get_vring_base(q).map_err(io_err)?;
        let size = self.rings[q].size;
        let (ring, call, kick) = self.init_queue(q, size)?;
        self.rings[q] = ring;
        self.kicks[q] = kick;
        self.calls[q] = call;
        self.rx_posted.retain(|&(rq, _), _| rq != q);
        self.rx_pending.remove(&q);
        // Answered in order: once this is back, the backend has the ring again.
        self.config(0, 1).map(|_| ())
    }

    fn init_queue(&mut self, q: usize, size: u16) -> io::Result<(DriverRing, EventFd, EventFd)> {
        let ring = DriverRing {
            base: q as u64 * RING_STRIDE,
            size,
            next_desc: 0,
            avail_idx: 0,
            used_seen: 0,
            in_flight: std::collections::VecDeque::new(),
        };
        let zero = vec![0u8; RING_STRIDE as usize];
        self.mem
            .write_slice(&zero, GuestAddress(ring.base))
            .map_err(io_err)?;
        let f = &mut self.frontend;
        f.set_vring_num(q, size).map_err(io_err)?;
        f.set_vring_addr(
            q,
            &VringConfigData {
                queue_max_size: size,
                queue_size: size,
                flags: 0,
                desc_table_addr: UADDR + ring.desc_addr(),
                used_ring_addr: UADDR + ring.used_addr(),
                avail_ring_addr: UADDR + ring.avail_addr(),
                log_addr: None,
            },
        )
        .map_err(io_err)?;
        f.set_vring_base(q, 0).map_err(io_err)?;
        let call = EventFd::new(EFD_NONBLOCK)?;
        let kick = EventFd::new(EFD_NONBLOCK)?;
        f.set_vring_call(q, &call).map_err(io_err)?;
        f.set_vring_kick(q, &kick).map_err(io_err)?;
        if self.acked & virtio_net::PROTOCOL_FEATURES != 0 {
            f.set_vring_enable(q, true).map_err(io_err)?;
        }
        Ok((ring, call, kick))
    }

    /// The features the guest acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The header size this guest uses.
    pub fn hdr_len(&self) -> usize {
        if self.acked & (virtio_net::VERSION_1 | virtio_net::MRG_RXBUF) != 0 {
            12
        } else {
            10
        }
    }

    /// Config space bytes `[offset, offset + len)`.
    pub fn config(&mut self, offset: u32, len: u32) -> io::Result<Vec<u8>> {
        let buf = vec![0u8; len as usize];
        let (_, data) = self
            .frontend
            .get_config(
                offset,
                len,
                vhost::vhost_user::message::VhostUserConfigFlags::WRITABLE,
                &buf,
            )
            .map_err(io_err)?;
        Ok(data)
    }

    /// Reserve `len` bytes of guest memory for a buffer (8-byte aligned).
    pub fn alloc(&mut self, len: u64) -> u64 {
        let len = (len + 7) & !7;
        if self.next_buf + len > self.buffers.end {
            self.next_buf = self.buffers.start;
        }
        let a = self.next_buf;
        self.next_buf += len;
        a
    }

    /// Allocate buffers (those of [`alloc`](Self::alloc), [`post_tx`](Self::post_tx),
    /// [`send_frame`](Self::send_frame) and [`post_rx`](Self::post_rx)) in `range` from
    /// now on.
    pub fn use_buffers_in(&mut self, range: Range<u64>) {
        self.next_buf = range.start;
        self.buffers = range;
    }

    /// Plug in `size` bytes of new memory at guest address `gpa` (a memory hot-plug):
    /// mapped here, then `ADD_MEM_REG` (needs `CONFIGURE_MEM_SLOTS`).
    pub fn add_region(&mut self, gpa: u64, size: u64) -> io::Result<()> {
        let b = Backing {
            gpa,
            size,
            file: Arc::new(memfd(size)?),
            offset: 0,
        };
        let region = GuestRegionMmap::from_range(
            GuestAddress(gpa),
            size as usize,
            Some(FileOffset::from_arc(b.file.clone(), 0)),
        )
        .map_err(io_err)?;
        self.mem = self.mem.insert_region(Arc::new(region)).map_err(io_err)?;
        self.memory_request(|f| f.add_mem_region(&b.info()).map(drop))?;
        self.regions.push(b);
        Ok(())
    }

    /// Unplug the region at guest address `gpa`: `REM_MEM_REG`, then unmapped here (the
    /// memory is gone; the test can no longer read or write it).
    pub fn remove_region(&mut self, gpa: u64) -> io::Result<()> {
        let i = self
            .regions
            .iter()
            .position(|b| b.gpa == gpa)
            .ok_or_else(|| io_err(format!("no region at guest address {gpa:#x}")))?;
        let info = self.regions[i].info();
        self.memory_request(|f| f.remove_mem_region(&info))?;
        let b = self.regions.remove(i);
        self.mem = self
            .mem
            .remove_region(GuestAddress(b.gpa), b.size)
            .map_err(io_err)?
            .0;
        Ok(())
    }

    /// Replace the whole memory table (`SET_MEM_TABLE`) with regions at `layout`
    /// (guest address, size), all in one new memfd, laid out there back to front so no
    /// region keeps its file offset. Guest memory keeps its contents where the old and
    /// new layouts overlap, rings included: the driver's rings stay where it put them and
    /// no ring message is sent, as QEMU and DPDK's virtio-user do (the backend is the one
    /// that re-translates ring addresses, vhost-user spec and libvhost-user). The old
    /// memory is then filled with 0xEE, so a backend still reading it finds garbage, not
    /// the rings.
    pub fn replace_memory(&mut self, layout: &[(u64, u64)]) -> io::Result<()> {
        let total = layout.iter().map(|&(_, size)| size).sum();
        let file = Arc::new(memfd(total)?);
        let mut end = total;
        let new: Vec<Backing> = layout
            .iter()
            .map(|&(gpa, size)| {
                end -= size;
                Backing {
                    gpa,
                    size,
                    file: file.clone(),
                    offset: end,
                }
            })
            .collect();
        let mem = map(&new)?;
        let mut chunk = vec![0u8; 1 << 20];
        for n in &new {
            for o in &self.regions {
                let (start, stop) = (n.gpa.max(o.gpa), n.range().end.min(o.range().end));
                let mut a = start;
                while a < stop {
                    let len = (stop - a).min(chunk.len() as u64) as usize;
                    self.mem
                        .read_slice(&mut chunk[..len], GuestAddress(a))
                        .map_err(io_err)?;
                    mem.write_slice(&chunk[..len], GuestAddress(a))
                        .map_err(io_err)?;
                    a += len as u64;
                }
            }
        }
        let infos: Vec<_> = new.iter().map(Backing::info).collect();
        self.memory_request(|f| f.set_mem_table(&infos).map(drop))?;
        chunk.fill(0xee);
        for o in &self.regions {
            let mut a = o.gpa;
            while a < o.range().end {
                let len = (o.range().end - a).min(chunk.len() as u64) as usize;
                self.mem
                    .write_slice(&chunk[..len], GuestAddress(a))
                    .map_err(io_err)?;
                a += len as u64;
            }
        }
        self.mem = mem;
        self.regions = new;
        Ok(())
    }

    /// Write bytes into guest memory.
    pub fn write(&self, addr: u64, bytes: &[u8]) {
        self.mem
            .write_slice(bytes, GuestAddress(addr))
            .expect("test writes inside guest memory");
    }

    /// Read bytes from guest memory.
    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem
            .read_slice(&mut v, GuestAddress(addr))
            .expect("test reads inside guest memory");
        v
    }

    /// Write descriptors at table index `first` onward (as given: flags and next are the
    /// caller's), without making them available.
    pub fn write_descs(&mut self, q: usize, first: u16, descs: &[Desc]) {
        let r = &self.rings[q];
        for (i, d) in descs.iter().enumerate() {
            let idx = (u64::from(first) + i as u64) % u64::from(r.size);
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&d.addr.to_le_bytes());
            b[8..12].copy_from_slice(&d.len.to_le_bytes());
            b[12..14].copy_from_slice(&d.flags.to_le_bytes());
            b[14..16].copy_from_slice(&d.next.to_le_bytes());
            self.write(r.desc_addr() + 16 * idx, &b);
        }
    }

    /// Make head `head` available on queue `q` (without a kick).
    pub fn make_available(&mut self, q: usize, head: u16) {
        let r = &self.rings[q];
        let slot = u64::from(r.avail_idx % r.size);
        let (avail, idx) = (r.avail_addr(), r.avail_idx.wrapping_add(1));
        self.write(avail + 4 + 2 * slot, &head.to_le_bytes());
        std::sync::atomic::fence(Ordering::Release);
        self.write(avail + 2, &idx.to_le_bytes());
        self.rings[q].avail_idx = idx;
        self.rings[q].in_flight.push_back(head);
    }

    /// Write a chain of descriptors at table index `head` onward (flags and next as given)
    /// and make `head` available on queue `q`, without a kick.
    pub fn offer(&mut self, q: usize, head: u16, descs: &[Desc]) {
        self.write_descs(q, head, descs);
        self.make_available(q, head);
    }

    /// Set the avail index to anything (a hostile driver).
    pub fn set_avail_idx(&mut self, q: usize, idx: u16) {
        let avail = self.rings[q].avail_addr();
        self.write(avail + 2, &idx.to_le_bytes());
        self.rings[q].avail_idx = idx;
    }

    /// Enable or disable queue `q` (`SET_VRING_ENABLE`), as a driver that stops a queue
    /// does, and return once the backend has carried it out (it answers requests in
    /// order: a config read after it is the barrier).
    pub fn enable_ring(&mut self, q: usize, on: bool) -> io::Result<()> {
        self.frontend.set_vring_enable(q, on).map_err(io_err)?;
        self.config(0, 1).map(|_| ())
    }

    /// Give queue `q` a new kick eventfd (`SET_VRING_KICK` on a live connection, as a
    /// frontend does when it restarts a ring); later kicks go to it. Returns once the
    /// backend has it.
    pub fn replace_kick(&mut self, q: usize) -> io::Result<()> {
        let kick = EventFd::new(EFD_NONBLOCK)?;
        self.frontend.set_vring_kick(q, &kick).map_err(io_err)?;
        self.kicks[q] = kick;
        self.config(0, 1).map(|_| ())
    }

    /// Kick queue `q`.
    pub fn kick(&self, q: usize) {
        let _ = self.kicks[q].write(1);
    }

    /// Put a chain of buffers holding `pieces` (device-readable) on queue `q` and kick:
    /// returns the head index.
    pub fn post_tx(&mut self, q: usize, pieces: &[&[u8]]) -> u16 {
        let mut descs = Vec::with_capacity(pieces.len());
        let first = self.take_descs(q, pieces.len());
        let size = self.rings[q].size;
        for (i, p) in pieces.iter().enumerate() {
            let addr = self.alloc(p.len() as u64);
            self.write(addr, p);
            let last = i + 1 == pieces.len();
            descs.push(Desc {
                addr,
                len: p.len() as u32,
                flags: if last { 0 } else { F_NEXT },
                next: ((u32::from(first) + i as u32 + 1) % u32::from(size)) as u16,
            });
        }
        self.offer(q, first, &descs);
        self.kick(q);
        first
    }

    /// Send one frame from the guest: `hdr` (this guest's header size) and the frame, the
    /// header in its own descriptor and the frame cut into pieces of at most `piece`
    /// bytes (as a Linux guest's skb fragments are).
    pub fn send_frame(&mut self, hdr: &[u8], frame: &[u8], piece: usize) -> u16 {
        let mut pieces: Vec<&[u8]> = vec![hdr];
        pieces.extend(frame.chunks(piece.max(1)));
        self.post_tx(1, &pieces)
    }

    fn take_descs(&mut self, q: usize, n: usize) -> u16 {
        let r = &mut self.rings[q];
        let first = r.next_desc;
        r.next_desc = ((u32::from(first) + n as u32) % u32::from(r.size)) as u16;
        first
    }

    /// Post `n` receive buffers of `size` bytes each (one writable descriptor per chain)
    /// on queue 0 and kick.
    pub fn post_rx(&mut self, n: usize, size: u32) {
        self.post_rx_on(0, n, size);
    }

    /// [`FakeGuest::post_rx`] on receive queue `q` (`2 * pair`).
    pub fn post_rx_on(&mut self, q: usize, n: usize, size: u32) {
        for _ in 0..n {
            let head = self.take_descs(q, 1);
            let addr = self.alloc(u64::from(size));
            self.rx_posted.insert((q, head), (addr, size));
            self.offer(
                q,
                head,
                &[Desc {
                    addr,
                    len: size,
                    flags: F_WRITE,
                    next: 0,
                }],
            );
        }
        self.kick(q);
    }

    /// New used entries on queue `q`: (descriptor head, length).
    pub fn take_used(&mut self, q: usize) -> Vec<(u32, u32)> {
        let mut idx = [0u8; 2];
        self.mem
            .read_slice(&mut idx, GuestAddress(self.rings[q].used_addr() + 2))
            .expect("used ring in memory");
        std::sync::atomic::fence(Ordering::Acquire);
        let idx = u16::from_le_bytes(idx);
        let mut out = Vec::new();
        let mut seen = self.rings[q].used_seen;
        // A transmit queue of an in-order driver: the device may have written only the
        // last element of each batch, so the heads come from the order they were made
        // available in, and the newest element must name the last of them.
        let in_order = q % 2 == 1 && self.acked & virtio_net::IN_ORDER != 0;
        if in_order && seen != idx {
            let last = self.used_slot(q, idx.wrapping_sub(1));
            while seen != idx {
                let head = self.rings[q]
                    .in_flight
                    .pop_front()
                    .expect("the device used more transmit chains than the driver made available");
                out.push((u32::from(head), 0));
                seen = seen.wrapping_add(1);
            }
            assert_eq!(
                out.last().map(|&(head, _)| (head, last.1)),
                Some(last),
                "the newest used element names the last transmit chain used, length 0"
            );
            self.rings[q].used_seen = seen;
            return out;
        }
        while seen != idx {
            out.push(self.used_slot(q, seen));
            seen = seen.wrapping_add(1);
        }
        if !in_order {
            // Used out of order as they may be, they are not tracked.
            self.rings[q].in_flight.clear();
        }
        self.rings[q].used_seen = seen;
        out
    }

    /// Element `pos` (a ring index, taken modulo the size) of queue `q`'s used ring as it
    /// is in memory: (id, length), whatever the device did or did not write there.
    pub fn used_slot(&self, q: usize, pos: u16) -> (u32, u32) {
        let r = &self.rings[q];
        let e = self.read(r.used_addr() + 4 + 8 * u64::from(pos % r.size), 8);
        (
            u32::from_le_bytes([e[0], e[1], e[2], e[3]]),
            u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
        )
    }

    /// Fill every element of queue `q`'s used ring with `byte`, to see which ones the
    /// device writes.
    pub fn scribble_used(&self, q: usize, byte: u8) {
        let r = &self.rings[q];
        let elems = vec![byte; 8 * usize::from(r.size)];
        self.write(r.used_addr() + 4, &elems);
    }

    /// How many used entries of queue `q` were taken so far (the ring index of the next).
    pub fn used_taken(&self, q: usize) -> u16 {
        self.rings[q].used_seen
    }

    /// Wait until queue `q`'s used ring has `n` new entries (or `timeout`), and take them.
    pub fn wait_used(&mut self, q: usize, n: usize, timeout: Duration) -> Vec<(u32, u32)> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while got.len() < n && Instant::now() < deadline {
            got.extend(self.take_used(q));
            if got.len() < n {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        got
    }

    /// Receive frames the backend put in the posted receive buffers: each as (header,
    /// frame), merged buffers joined by the header's num_buffers; each buffer read is
    /// replaced by a new one of the same size. Returns once `n` frames are there, or what
    /// came within `timeout`.
    pub fn recv_frames(&mut self, n: usize, timeout: Duration) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.recv_frames_on(0, n, timeout)
    }

    /// [`FakeGuest::recv_frames`] from receive queue `q` (`2 * pair`).
    pub fn recv_frames_on(
        &mut self,
        q: usize,
        n: usize,
        timeout: Duration,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let deadline = Instant::now() + timeout;
        let hdr_len = self.hdr_len();
        let mut out = Vec::new();
        // Out of the map while this reads guest memory; back in it at the end.
        let mut pending = self.rx_pending.remove(&q).unwrap_or_default();
        while out.len() < n {
            pending.extend(self.take_used(q));
            let Some(&(head, len)) = pending.front() else {
                if Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            let Some(&(addr, _)) = self.rx_posted.get(&(q, head as u16)) else {
                panic!("backend used receive chain {head} of queue {q}, which was not posted");
            };
            if (len as usize) < hdr_len {
                // Returned without a frame (the backend refused the buffer): dropped and
                // not posted again, as Linux's virtio_net drops a "short packet".
                pending.pop_front();
                self.rx_posted.remove(&(q, head as u16));
                self.rx_short += 1;
                continue;
            }
            let first = self.read(addr, len as usize);
            let nbuf = if hdr_len == 12 && first.len() >= 12 {
                usize::from(u16::from_le_bytes([first[10], first[11]])).max(1)
            } else {
                1
            };
            if pending.len() < nbuf {
                if Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            let mut bytes = Vec::new();
            let taken: Vec<(u32, u32)> = pending.drain(..nbuf).collect();
            for (h, l) in taken {
                let (a, size) = self.rx_posted[&(q, h as u16)];
                bytes.extend(self.read(a, l as usize));
                // Refilled as a driver refills: with fresh memory from where buffers are
                // allocated now.
                let fresh = self.alloc(u64::from(size));
                self.rx_posted.insert((q, h as u16), (fresh, size));
                let desc = Desc {
                    addr: fresh,
                    len: size,
                    flags: F_WRITE,
                    next: 0,
                };
                self.offer(q, h as u16, &[desc]);
            }
            self.kick(q);
            let (h, f) = bytes.split_at(hdr_len.min(bytes.len()));
            out.push((h.to_vec(), f.to_vec()));
        }
        self.rx_pending.insert(q, pending);
        out
    }

    /// Receive buffers posted now whose memory lies in `range`.
    pub fn rx_posted_in(&self, range: Range<u64>) -> usize {
        self.rx_posted
            .values()
            .filter(|&&(a, size)| range.start <= a && a + u64::from(size) <= range.end)
            .count()
    }

    /// Receive buffers [`recv_frames`](Self::recv_frames) found returned without a frame
    /// (refused by the backend) and dropped.
    pub fn short_rx_buffers(&self) -> u64 {
        self.rx_short
    }

    /// Whether queue `q`'s call eventfd fired since the last look.
    pub fn called(&self, q: usize) -> bool {
        self.calls[q].read().is_ok()
    }

    /// Disconnect (as a killed QEMU would).
    pub fn disconnect(self) {
        drop(self);
    }
}

/// The test's own mapping of `regions`.
fn map(regions: &[Backing]) -> io::Result<GuestMemoryMmap> {
    let mut sorted: Vec<&Backing> = regions.iter().collect();
    sorted.sort_by_key(|b| b.gpa);
    GuestMemoryMmap::from_ranges_with_files(sorted.iter().map(|b| {
        (
            GuestAddress(b.gpa),
            b.size as usize,
            Some(FileOffset::from_arc(b.file.clone(), b.offset)),
        )
    }))
    .map_err(io_err)
}

fn memfd(size: u64) -> io::Result<File> {
    use rustix::fs::{ftruncate, memfd_create, MemfdFlags};
    let fd = memfd_create("pvnet-fake-guest", MemfdFlags::CLOEXEC)?;
    ftruncate(&fd, size)?;
    Ok(File::from(fd))
}
