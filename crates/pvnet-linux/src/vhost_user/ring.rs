//! The split virtqueues of a virtio-net device as the backend sees them: descriptor chains
//! the guest offers are read into the switch's buffers (transmit queue) or filled with
//! frames (receive queue, with merged buffers), and the used ring is published once per
//! batch.
//!
//! Guest memory is hostile input. Every address is checked against the guest's regions
//! before it is touched, and chains are walked by the rules `virtio-queue` walks them by
//! (loops end after queue-size descriptors, indices are checked; see [`Chain`]). This
//! module walks them itself, over host pointers looked up once per batch ([`HostMap`]),
//! because going through `virtio-queue`'s iterators and `vm-memory`'s per-access region
//! lookups cost more than everything else a small frame needs; whatever the map does not
//! cover (a range across two regions, a memory with many regions) goes through
//! `vm-memory` as before, so the result is the same either way. The fuzz body compares
//! the walk with `virtio-queue`'s, descriptor by descriptor.
//!
//! What this module adds to the walk is noticing *why* a chain ended: the walk just stops
//! yielding descriptors, so a chain whose last descriptor still says "next" was cut short
//! (a loop, an index past the table, a bad indirect table) and is refused as
//! [`ChainError::Broken`], never taken as a shorter frame.

use std::io::IoSlice;
use std::marker::PhantomData;
use std::num::Wrapping;
use std::sync::atomic::{fence, AtomicU16, Ordering};

use virtio_queue::{Queue, QueueT};
use vm_memory::guest_memory::GuestMemorySliceIterator;
use vm_memory::{Bytes, GuestAddress, GuestMemory, Permissions};

use crate::port::External;

/// Size of a used-ring element (`id: u32, len: u32`).
const USED_ELEM: u64 = 8;
/// The used ring's `flags` and `idx` before the elements.
const USED_HDR: u64 = 4;
/// The avail ring's `flags` and `idx` before the elements.
const AVAIL_HDR: u64 = 4;
/// `VRING_AVAIL_F_NO_INTERRUPT`: the driver asks not to be interrupted.
const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Offset of `num_buffers` in a 12-byte virtio_net_hdr_v1.
pub const NUM_BUFFERS_OFFSET: usize = 10;

/// Why a descriptor chain (or the ring) was refused. Each is counted by the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The chain ended while its last descriptor said more followed: a loop longer than
    /// the queue, a `next` index past the table, or a bad indirect table.
    #[error("descriptor chain {head} is broken (loop, index out of range or bad indirect table)")]
    Broken { head: u16 },
    /// A descriptor points outside guest memory.
    #[error(
        "descriptor chain {head}: {len} bytes at guest address {addr:#x} are outside guest memory"
    )]
    OutOfMemory { head: u16, addr: u64, len: u32 },
    /// The frame is longer than a receive slot (or the chain's lengths overflow).
    #[error("descriptor chain {head} holds more than {max} bytes")]
    TooLong { head: u16, max: usize },
    /// A transmit chain with a device-writable descriptor, or a receive chain with a
    /// read-only one.
    #[error("descriptor chain {head} has a descriptor of the wrong direction")]
    WrongDirection { head: u16 },
    /// A transmit chain shorter than the virtio_net_hdr.
    #[error("descriptor chain {head} holds {len} bytes, less than the {hdr}-byte header")]
    Short { head: u16, len: usize, hdr: usize },
    /// The avail index moved by more than the queue size, or the ring is unreadable: the
    /// device is broken until the driver resets it (virtio 1.2, 2.1.2).
    #[error("the avail ring is inconsistent ({0}); queue stopped until the driver resets it")]
    Ring(&'static str),
}

/// Regions a [`HostMap`] holds; a guest with more has the rest reached through
/// `vm-memory` (QEMU gives two, or a few more with memory hotplug; DPDK's `virtio_user`
/// one per hugepage file).
const MAPPED_REGIONS: usize = 8;

/// `VRING_DESC_F_NEXT`, `VRING_DESC_F_WRITE`, `VRING_DESC_F_INDIRECT`.
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const DESC_F_INDIRECT: u16 = 4;
/// Size of a descriptor in a table.
const DESC_SIZE: u64 = 16;

/// The host addresses of a guest memory's regions, looked up once per batch so that each
/// ring entry, descriptor and buffer costs a few compares instead of `vm-memory`'s region
/// search and slice iterators. It borrows the memory object, which keeps the regions
/// mapped for as long as the map is used.
pub struct HostMap<'m> {
    regions: [Mapped; MAPPED_REGIONS],
    n: usize,
    _mem: PhantomData<&'m ()>,
}

impl<'m> HostMap<'m> {
    /// The map of `mem`'s first [`MAPPED_REGIONS`] regions (empty for a memory that has
    /// no plain physical regions).
    pub fn of<M: GuestMemory + ?Sized>(mem: &'m M) -> HostMap<'m> {
        use vm_memory::{GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};
        let mut map = HostMap {
            regions: [Mapped::NONE; MAPPED_REGIONS],
            n: 0,
            _mem: PhantomData,
        };
        let Some(phys) = mem.physical_memory() else {
            return map;
        };
        for region in phys.iter().take(MAPPED_REGIONS) {
            if let Ok(host) = region.get_host_address(MemoryRegionAddress(0)) {
                map.regions[map.n] = Mapped {
                    start: region.start_addr().0,
                    len: region.len(),
                    host,
                };
                map.n += 1;
            }
        }
        map
    }

    /// The host address of the `len` bytes at guest address `addr`, when they all lie in
    /// one mapped region.
    fn find(&self, addr: u64, len: u64) -> Option<*mut u8> {
        self.regions[..self.n].iter().find_map(|r| r.at(addr, len))
    }
}

/// Copy the guest bytes at `addr` into `out`: straight from the mapping when they lie in
/// one mapped region, through `vm-memory` otherwise (across regions, or outside them: an
/// error).
fn read_guest<M: GuestMemory + ?Sized>(
    mem: &M,
    map: &HostMap<'_>,
    addr: u64,
    out: &mut [u8],
) -> Result<(), ()> {
    match map.find(addr, out.len() as u64) {
        // SAFETY: `p` points at `out.len()` bytes inside a region mapped for as long as
        // `map` lives; guest memory is never a Rust reference, so it cannot overlap
        // `out`. The driver may write those bytes meanwhile: what lands in `out` is what
        // gets checked.
        Some(p) => unsafe { std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), out.len()) },
        None => mem.read_slice(out, GuestAddress(addr)).map_err(|_| ())?,
    }
    Ok(())
}

/// Copy `src` into guest memory at `addr`, as [`read_guest`] reads.
fn write_guest<M: GuestMemory + ?Sized>(
    mem: &M,
    map: &HostMap<'_>,
    addr: u64,
    src: &[u8],
) -> Result<(), ()> {
    match map.find(addr, src.len() as u64) {
        // SAFETY: as in `read_guest`, `src.len()` bytes inside a mapped region, which no
        // Rust reference covers.
        Some(p) => unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), p, src.len()) },
        None => mem.write_slice(src, GuestAddress(addr)).map_err(|_| ())?,
    }
    Ok(())
}

/// One descriptor of a chain, as the driver wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

impl Desc {
    fn from_bytes(b: [u8; 16]) -> Desc {
        let [a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, f0, f1, n0, n1] = b;
        Desc {
            addr: u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
            len: u32::from_le_bytes([l0, l1, l2, l3]),
            flags: u16::from_le_bytes([f0, f1]),
            next: u16::from_le_bytes([n0, n1]),
        }
    }

    /// The same from the two little-endian words a descriptor is in memory.
    fn from_words([addr, rest]: [u64; 2]) -> Desc {
        let rest = u64::from_le(rest);
        Desc {
            addr: u64::from_le(addr),
            len: rest as u32,
            flags: (rest >> 32) as u16,
            next: (rest >> 48) as u16,
        }
    }

    pub fn has_next(&self) -> bool {
        self.flags & DESC_F_NEXT != 0
    }

    pub fn is_write_only(&self) -> bool {
        self.flags & DESC_F_WRITE != 0
    }

    fn is_indirect(&self) -> bool {
        self.flags & DESC_F_INDIRECT != 0
    }
}

/// The descriptors of one chain, walked by `virtio-queue`'s rules
/// (`DescriptorChain`), which the fuzz body holds this walk to:
/// - at most as many descriptors as the table has entries (a loop ends there), none
///   whose index lies past the table;
/// - an indirect descriptor (anywhere in the chain) switches to its table, whose length
///   must be a multiple of 16 and at most 65535 entries; it is not yielded itself, and an
///   indirect descriptor inside an indirect table ends the walk;
/// - the walk ends before a descriptor that takes the chain past 2^32 bytes, and at a
///   descriptor that cannot be read.
///
/// The walk just stops in each case: a caller that sees the last descriptor yielded
/// still saying "next" knows the chain was cut short.
#[derive(Clone)]
pub struct Chain<'a, M: GuestMemory + ?Sized> {
    mem: &'a M,
    map: &'a HostMap<'a>,
    /// The table being walked, its host address when the whole table lies in one mapped
    /// region, and its number of entries.
    table: u64,
    table_host: Option<*const u8>,
    size: u16,
    head: u16,
    next: u16,
    ttl: u16,
    indirect: bool,
    bytes: u32,
}

impl<'a, M: GuestMemory + ?Sized> Chain<'a, M> {
    fn new(
        mem: &'a M,
        map: &'a HostMap<'a>,
        table: (u64, Option<*const u8>),
        size: u16,
        head: u16,
    ) -> Self {
        Chain {
            mem,
            map,
            table: table.0,
            table_host: table.1,
            size,
            head,
            next: head,
            ttl: size,
            indirect: false,
            bytes: 0,
        }
    }

    /// The index of the chain's first descriptor, which goes back on the used ring.
    pub fn head_index(&self) -> u16 {
        self.head
    }

    /// Descriptor `index` of the current table (`index < size`).
    fn read(&self, index: u16) -> Option<Desc> {
        let off = u64::from(index) * DESC_SIZE;
        if let Some(base) = self.table_host {
            // SAFETY: `table_host` covers the table's `size` entries in a mapped region
            // (checked when it was looked up) and `index < size`.
            return Some(unsafe { read_desc(base.add(off as usize)) });
        }
        let mut b = [0u8; 16];
        let addr = self.table.checked_add(off)?;
        self.mem.read_slice(&mut b, GuestAddress(addr)).ok()?;
        Some(Desc::from_bytes(b))
    }
}

impl<M: GuestMemory + ?Sized> Iterator for Chain<'_, M> {
    type Item = Desc;

    fn next(&mut self) -> Option<Desc> {
        loop {
            if self.ttl == 0 || self.next >= self.size {
                return None;
            }
            let desc = self.read(self.next)?;
            if desc.is_indirect() {
                if self.indirect || desc.len % DESC_SIZE as u32 != 0 {
                    return None;
                }
                let entries = u16::try_from(desc.len / DESC_SIZE as u32).ok()?;
                self.table = desc.addr;
                self.table_host = self
                    .map
                    .find(desc.addr, u64::from(entries) * DESC_SIZE)
                    .map(|p| p.cast_const());
                self.size = entries;
                self.next = 0;
                self.ttl = entries;
                self.indirect = true;
                continue;
            }
            self.bytes = self.bytes.checked_add(desc.len)?;
            if desc.has_next() {
                self.next = desc.next;
                self.ttl -= 1;
            } else {
                self.ttl = 0;
            }
            return Some(desc);
        }
    }
}

/// The avail ring through one reading of its index. The driver keeps writing that index
/// from its own core, so each reading costs a cache miss: a batch reads it once, and
/// again only when it has taken every chain the last reading showed. Taking a chain moves
/// the queue's next-avail position, as `virtio-queue`'s `AvailIter` does.
pub struct Avail<'q, 'm, M: GuestMemory + ?Sized> {
    queue: &'q mut Queue,
    mem: &'m M,
    map: &'m HostMap<'m>,
    /// The ring's entries when they lie in one mapped region.
    ring_host: Option<*const u8>,
    table: (u64, Option<*const u8>),
    /// The avail index read.
    last: u16,
}

/// The descriptor at `at`, read once and volatile (the driver may be writing it: what is
/// read is what is checked): as two 8-byte words where 8-aligned (a table always is, by
/// the spec; an indirect one need not be), else as bytes, which the compiler loads one
/// by one.
///
/// # Safety
/// `at` points to 16 bytes of a mapped guest region.
unsafe fn read_desc(at: *const u8) -> Desc {
    if at.align_offset(8) == 0 {
        // SAFETY: 16 mapped bytes (by the caller), 8-aligned.
        Desc::from_words(unsafe { std::ptr::read_volatile(at.cast::<[u64; 2]>()) })
    } else {
        // SAFETY: 16 mapped bytes (by the caller); no alignment asked.
        Desc::from_bytes(unsafe { std::ptr::read_volatile(at.cast::<[u8; 16]>()) })
    }
}

/// The slot of ring index `idx` in a ring of `size` entries. A split ring's size is a
/// power of two (`virtio-queue` refuses any other), so this is a mask, not the division
/// that `%` costs on every element of every batch; any other size still works.
fn ring_slot(idx: u64, size: u64) -> u64 {
    if size.is_power_of_two() {
        idx & (size - 1)
    } else {
        idx % size.max(1)
    }
}

/// The host address of the avail ring at guest address `ring` with `size` entries, when
/// it lies in one mapped region at a 2-aligned host address: where its index and
/// entries can be read with 16-bit loads ([`load_avail_idx`], [`load_avail_entry`]).
fn avail_ring_host(map: &HostMap<'_>, ring: u64, size: u64) -> Option<*const u8> {
    map.find(ring, AVAIL_HDR + 2 * size)
        .map(|p| p.cast_const())
        .filter(|p| p.align_offset(2) == 0)
}

/// Entry `slot` of the avail ring: one 16-bit volatile load, as the driver writes it.
///
/// # Safety
/// `ring` comes from [`avail_ring_host`] for the ring's size, and `slot < size`.
unsafe fn load_avail_entry(ring: *const u8, slot: u64) -> u16 {
    // SAFETY: by the caller, the entry lies inside the mapping, 2-aligned.
    let e =
        unsafe { std::ptr::read_volatile(ring.add((AVAIL_HDR + 2 * slot) as usize).cast::<u16>()) };
    u16::from_le(e)
}

/// The avail ring's index, which the driver moves while we read it: one 16-bit atomic
/// load, then an acquire fence so that the entries and descriptors it publishes are read
/// after it. Never two byte loads: an index crossing a multiple of 256 between them would
/// read as up to 255 chains the driver never made available (a volatile `[u8; 2]` read
/// promises no single access, and did tear here, breaking busy queues).
///
/// # Safety
/// `ring` comes from [`avail_ring_host`].
unsafe fn load_avail_idx(ring: *const u8) -> u16 {
    // SAFETY: by the caller, `ring + 2` is 2-aligned and inside the mapping; guest memory
    // is only ever accessed through raw pointers and atomics, never references.
    let idx = unsafe { (*ring.add(2).cast::<AtomicU16>()).load(Ordering::Acquire) };
    u16::from_le(idx)
}

impl<'q, 'm, M: GuestMemory + ?Sized> Avail<'q, 'm, M> {
    /// The chains the driver has made available so far; `None` while the queue is not
    /// set up. `map` is `mem`'s.
    pub fn new(
        queue: &'q mut Queue,
        mem: &'m M,
        map: &'m HostMap<'m>,
    ) -> Result<Option<Self>, ChainError> {
        let ring = queue.avail_ring();
        if !queue.ready() || ring == 0 {
            return Ok(None);
        }
        let size = queue.size();
        // The index and the entries, through `vm-memory` where they are not mapped at a
        // 2-aligned host address.
        let ring_host = avail_ring_host(map, ring, u64::from(size));
        let last = match ring_host {
            // SAFETY: from `avail_ring_host`.
            Some(p) => unsafe { load_avail_idx(p) },
            None => {
                let addr = ring
                    .checked_add(2)
                    .ok_or(ChainError::Ring("avail ring unreadable"))?;
                mem.load(GuestAddress(addr), Ordering::Acquire)
                    .map(u16::from_le)
                    .map_err(|_| ChainError::Ring("avail ring unreadable"))?
            }
        };
        if last.wrapping_sub(queue.next_avail()) > size {
            return Err(ChainError::Ring("avail index moved past the queue size"));
        }
        let table = queue.desc_table();
        let table_host = map
            .find(table, u64::from(size) * DESC_SIZE)
            .map(|p| p.cast_const());
        Ok(Some(Avail {
            queue,
            mem,
            map,
            ring_host,
            table: (table, table_host),
            last,
        }))
    }

    /// Give the last `n` chains taken back, to be taken again.
    fn put_back(&mut self, n: u16) {
        let at = self.queue.next_avail().wrapping_sub(n);
        self.queue.set_next_avail(at);
    }
}

/// A receive buffer of one descriptor, in one mapped region, with room for a whole
/// frame: where [`Avail::take_whole`] puts a small frame.
#[derive(Clone, Copy)]
pub struct WholeBuffer<'m> {
    ptr: *mut u8,
    len: usize,
    _map: PhantomData<&'m ()>,
}

impl WholeBuffer<'_> {
    /// Write a frame at the start of the buffer, its virtio_net header `hdr` first; no
    /// more than the length the buffer was taken for.
    ///
    /// The 12-byte header is stored on its own, in two stores. A driver's buffer seldom
    /// starts a cache line: DPDK's starts 12 bytes before one, so that the frame after
    /// the header starts it. Copied in one piece, header and frame go out as 64-byte
    /// blocks that straddle the two lines, stores that need both lines from the driver's
    /// core before they, and the stores after them, can complete (measured: 3-4 % more
    /// 64-byte frames with the header apart).
    ///
    /// Kept out of line: inlined into the port's loop that writes a staged batch, the
    /// same stores measured 9 % fewer 64-byte frames, for a reason the profile does not
    /// show.
    #[inline(never)]
    pub fn write(&self, hdr: &[u8], frame: &[u8]) {
        let h = hdr.len().min(self.len);
        let n = frame.len().min(self.len - h);
        // SAFETY: `ptr` holds `len` bytes inside a region mapped for as long as the map
        // it was found in ('m), `h + n <= len`, and no Rust reference covers guest memory.
        unsafe {
            match (
                hdr.first_chunk::<8>(),
                hdr.get(8..).and_then(|r| r.first_chunk::<4>()),
            ) {
                (Some(lo), Some(hi)) if h == 12 && hdr.len() == 12 => {
                    self.ptr
                        .cast::<u64>()
                        .write_unaligned(u64::from_ne_bytes(*lo));
                    self.ptr
                        .add(8)
                        .cast::<u32>()
                        .write_unaligned(u32::from_ne_bytes(*hi));
                }
                _ => std::ptr::copy_nonoverlapping(hdr.as_ptr(), self.ptr, h),
            }
            std::ptr::copy_nonoverlapping(frame.as_ptr(), self.ptr.add(h), n);
        }
    }
}

impl<'m, M: GuestMemory + ?Sized> Avail<'_, 'm, M> {
    /// Take the next chain if its first descriptor is a device-writable buffer of at
    /// least `len` bytes inside one mapped region: all a frame of `len` bytes needs, as
    /// [`write_frame_from`] would write it (it stops at the descriptor the frame ends in).
    /// The caller writes it later with [`WholeBuffer::write`], so that a batch's stores
    /// into guest memory go out back to back: each may wait for a line the driver's core
    /// holds, and only stores that follow each other wait together. Any other chain
    /// stays where it is, for [`write_frame_from`].
    // Inlined for the same reason as `Avail::next`.
    #[inline(always)]
    pub fn take_whole(&mut self, len: usize) -> Option<(u16, WholeBuffer<'m>)> {
        let mut chain = self.next()?;
        let found = chain
            .next()
            .filter(|d| d.is_write_only() && d.len as usize >= len)
            .and_then(|d| self.map.find(d.addr, len as u64));
        match found {
            Some(ptr) => Some((
                chain.head_index(),
                WholeBuffer {
                    ptr,
                    len,
                    _map: PhantomData,
                },
            )),
            None => {
                self.put_back(1);
                None
            }
        }
    }
}

/// The chains of this reading, in the order the driver made them available.
impl<'m, M: GuestMemory + ?Sized> Iterator for Avail<'_, 'm, M> {
    type Item = Chain<'m, M>;

    // Inlined into the ring loops, so that the chain is made where it is used: returned
    // through memory, its four 16-bit fields were stored one by one and loaded back as
    // one word, a load that waits for all four stores to retire, on every frame.
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        let at = self.queue.next_avail();
        if at == self.last {
            return None;
        }
        let size = self.queue.size();
        if size == 0 {
            return None;
        }
        let slot = ring_slot(u64::from(at), u64::from(size));
        let head = match self.ring_host {
            // SAFETY: `p` from `avail_ring_host` (in `new`) for this size, `slot < size`.
            Some(p) => unsafe { load_avail_entry(p, slot) },
            None => {
                let addr = self.queue.avail_ring().checked_add(AVAIL_HDR + 2 * slot)?;
                self.mem
                    .load(GuestAddress(addr), Ordering::Acquire)
                    .map(u16::from_le)
                    .ok()?
            }
        };
        self.queue.set_next_avail(at.wrapping_add(1));
        Some(Chain::new(self.mem, self.map, self.table, size, head))
    }
}

/// Read one transmit chain (driver → device, all descriptors read-only) into `out`:
/// returns the bytes read. Nothing is read twice: the copy in `out` is what is checked.
///
/// The first `head` bytes are always copied. If `leave(&out[..head])` approves them (a
/// super-frame's header), the rest is left in guest memory: recorded in `ext` as host
/// addresses, not copied; a chain in more pieces than `ext` holds is copied whole after
/// all. Lengths are checked against `out` either way (a frame longer than a slot is
/// refused), so the switch may check the headers on `out[..len]`, whose bytes past
/// `head` are stale when `ext` has pieces.
///
/// The pieces stay valid while the memory object behind `mem` is mapped: the caller
/// keeps it alive for as long as the batch is used.
pub fn read_chain<M: GuestMemory + ?Sized>(
    chain: &mut Chain<'_, M>,
    out: &mut [u8],
    head: usize,
    leave: impl Fn(&[u8]) -> bool,
    ext: &mut External,
) -> Result<usize, ChainError> {
    let head_index = chain.head_index();
    let (mem, map) = (chain.mem, chain.map);
    let mut off = 0usize;
    let mut more = true;
    let mut any = false;
    // Decided once the first `head` bytes are in `out`.
    let mut leaving: Option<bool> = None;
    ext.clear();
    // Walked where the caller made it, not moved in: a move reloads its 16-bit fields as
    // one word, a load that waits for the four stores that wrote them, and so for every
    // store into guest memory before them.
    for desc in chain.by_ref() {
        any = true;
        more = desc.has_next();
        if desc.is_write_only() {
            return Err(ChainError::WrongDirection { head: head_index });
        }
        let len = desc.len as usize;
        let oom = || ChainError::OutOfMemory {
            head: head_index,
            addr: desc.addr,
            len: desc.len,
        };
        let end = off
            .checked_add(len)
            .filter(|&e| e <= out.len())
            .ok_or(ChainError::TooLong {
                head: head_index,
                max: out.len(),
            })?;
        // The part of this descriptor that goes into `out` no matter what.
        let copied = head.saturating_sub(off).min(len);
        read_guest(mem, map, desc.addr, &mut out[off..off + copied]).map_err(|()| oom())?;
        let rest = len - copied;
        if rest > 0 {
            let at = desc.addr.checked_add(copied as u64).ok_or_else(oom)?;
            let leave_it = *leaving.get_or_insert_with(|| leave(&out[..head.min(out.len())]));
            if !leave_it || !record(mem, map, at, rest, ext).map_err(|()| oom())? {
                if leave_it {
                    // Too many pieces: copy what was recorded, and from here on copy.
                    copy_back(ext, &mut out[head..off + copied]);
                    ext.clear();
                    leaving = Some(false);
                }
                read_guest(mem, map, at, &mut out[off + copied..end]).map_err(|()| oom())?;
            }
        }
        off = end;
    }
    if !any || more {
        return Err(ChainError::Broken { head: head_index });
    }
    Ok(off)
}

/// Record `len` bytes of guest memory at `at` in `ext` (as many pieces as the regions
/// they cross): `Ok(false)` and nothing recorded when `ext` has no room for them,
/// `Err` when they are not all guest memory.
fn record<M: GuestMemory + ?Sized>(
    mem: &M,
    map: &HostMap<'_>,
    at: u64,
    len: usize,
    ext: &mut External,
) -> Result<bool, ()> {
    if let Some(p) = map.find(at, len as u64) {
        // SAFETY: `len` bytes inside a region mapped as long as `map`'s memory object,
        // which the caller keeps for the batch (see `read_chain`).
        return Ok(unsafe { ext.push(p.cast_const(), len) });
    }
    let kept = ext.pieces().len();
    let slices = mem
        .get_slices(GuestAddress(at), len, Permissions::Read)
        .map_err(|_| ())?
        .stop_on_error()
        .map_err(|_| ())?;
    let mut got = 0;
    for s in slices {
        // SAFETY: the slice is guest memory checked to lie in a mapped region; the
        // mapping lives as long as the memory object, which the caller keeps for the
        // batch (see `read_chain`).
        let ok = unsafe { ext.push(s.ptr_guard().as_ptr(), s.len()) };
        if !ok {
            ext.truncate(kept);
            return Ok(false);
        }
        got += s.len();
    }
    if got != len {
        ext.truncate(kept);
        return Err(());
    }
    Ok(true)
}

/// Copy the pieces recorded in `ext` into `out`, one after the other.
fn copy_back(ext: &External, out: &mut [u8]) {
    let mut at = 0;
    for &(ptr, len) in ext.pieces() {
        let Some(dst) = out.get_mut(at..at + len) else {
            return;
        };
        // SAFETY: recorded by `record` from mapped guest memory, still mapped (the
        // caller holds the memory object); read as bytes that may be changing.
        let src = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
        dst.copy_from_slice(src);
        at += len;
    }
}

/// Used-ring elements of one batch, published together by [`publish_used`], and why the
/// chains [`write_frame`] returned unused were refused. Reused: no allocation once warm.
#[derive(Debug, Default)]
pub struct Used {
    elems: Vec<(u16, u32)>,
    refused: Vec<ChainError>,
}

impl Used {
    /// Room for a queue's worth of elements.
    pub fn with_capacity(n: usize) -> Used {
        Used {
            elems: Vec::with_capacity(n),
            refused: Vec::with_capacity(n),
        }
    }

    /// Return chain `head` with `len` bytes written into it.
    pub fn push(&mut self, head: u16, len: u32) {
        self.elems.push((head, len));
    }

    /// Return chain `head` unused, refused for `e`.
    fn refuse(&mut self, head: u16, e: ChainError) {
        self.elems.push((head, 0));
        self.refused.push(e);
    }

    /// Why chains were refused since the last call, each once.
    pub fn take_refused(&mut self) -> std::vec::Drain<'_, ChainError> {
        self.refused.drain(..)
    }

    /// The elements, in order: (chain head, bytes written).
    pub fn as_slice(&self) -> &[(u16, u32)] {
        &self.elems
    }

    pub fn len(&self) -> usize {
        self.elems.len()
    }

    pub fn is_empty(&self) -> bool {
        self.elems.is_empty()
    }

    fn truncate(&mut self, n: usize) {
        self.elems.truncate(n);
    }

    /// Forget every element (their ring is gone).
    pub fn clear(&mut self) {
        self.elems.clear();
        self.refused.clear();
    }

    /// Return the chains from element `i` on unused.
    fn empty_from(&mut self, i: usize) {
        for e in self.elems.iter_mut().skip(i) {
            e.1 = 0;
        }
    }
}

/// Write the batch's used elements into the used ring and advance the queue's next-used
/// position, without publishing them: the driver sees nothing until [`publish`] moves the
/// used index. Empties `used`.
///
/// With `last_only` (a transmit queue of a driver that acked VIRTIO_F_IN_ORDER, whose
/// lengths say nothing) only the batch's last element is written, in its own place: an
/// in-order driver knows the chains before it from the order it made them available
/// (virtio 1.2, "In-order use of descriptors"), and the used ring's lines, which the
/// driver's core reads, are fetched for one store per batch instead of one per frame.
pub fn write_used<M: GuestMemory>(
    queue: &mut Queue,
    mem: &M,
    used: &mut Used,
    last_only: bool,
) -> Result<(), ChainError> {
    let size = queue.size();
    if size == 0 && !used.elems.is_empty() {
        return Err(ChainError::Ring("used ring of no entries"));
    }
    let ring = queue.used_ring();
    let map = HostMap::of(mem);
    let ring_host = map.find(ring, USED_HDR + USED_ELEM * u64::from(size));
    let mut idx = Wrapping(queue.next_used());
    let skipped = if last_only {
        used.elems.len().saturating_sub(1)
    } else {
        0
    };
    // At most a queue's worth of elements: the skip fits the 16-bit index.
    idx += Wrapping(skipped as u16);
    for &(head, len) in &used.elems[skipped..] {
        let slot = ring_slot(u64::from(idx.0), u64::from(size));
        // id, then len, both little-endian: one 8-byte store. Built as bytes, the element
        // went through the stack in two halves and was read back whole, a load that
        // waits for both stores to retire (no store forwarding across two stores).
        let elem = (u64::from(head) | u64::from(len) << 32).to_le();
        match ring_host {
            // SAFETY: `slot < size` and the mapping covers the ring's header and `size`
            // elements; an unaligned store (elements are only 4-aligned), which the driver
            // reads only once the index publishes it.
            Some(p) => unsafe {
                let at = p.add((USED_HDR + slot * USED_ELEM) as usize);
                std::ptr::write_unaligned(at.cast::<u64>(), elem);
            },
            None => {
                let elem = elem.to_ne_bytes();
                let addr = ring
                    .checked_add(USED_HDR + slot * USED_ELEM)
                    .map(GuestAddress)
                    .ok_or(ChainError::Ring("used ring address overflows"))?;
                mem.write_slice(&elem, addr)
                    .map_err(|_| ChainError::Ring("used ring outside guest memory"))?;
            }
        }
        idx += Wrapping(1);
    }
    used.elems.clear();
    queue.set_next_used(idx.0);
    Ok(())
}

/// Move the used index to the queue's next-used position, publishing every element
/// written since the index last moved (`old`), so the driver never sees part of a frame
/// spread over merged buffers. Returns whether the driver wants an interrupt for them
/// (event index, or the NO_INTERRUPT flag).
pub fn publish<M: GuestMemory>(queue: &Queue, mem: &M, old: u16) -> Result<bool, ChainError> {
    let new = queue.next_used();
    if new == old {
        return Ok(false);
    }
    let ring = GuestAddress(queue.used_ring());
    // The elements before the index that publishes them.
    fence(Ordering::Release);
    let idx_addr = GuestAddress(ring.0.wrapping_add(2));
    mem.store(new.to_le(), idx_addr, Ordering::Release)
        .map_err(|_| ChainError::Ring("used ring outside guest memory"))?;
    // The index before reading what the driver asked for.
    fence(Ordering::SeqCst);
    let avail = GuestAddress(queue.avail_ring());
    if queue.event_idx_enabled() {
        let used_event_addr = GuestAddress(
            avail
                .0
                .wrapping_add(AVAIL_HDR + 2 * u64::from(queue.size())),
        );
        let event: u16 = mem
            .load(used_event_addr, Ordering::Acquire)
            .map(u16::from_le)
            .map_err(|_| ChainError::Ring("avail ring outside guest memory"))?;
        // vring_need_event: the driver's event index lies in (old, new].
        let (new, old, event) = (Wrapping(new), Wrapping(old), Wrapping(event));
        Ok((new - event - Wrapping(1)).0 < (new - old).0)
    } else {
        let flags: u16 = mem
            .load(avail, Ordering::Acquire)
            .map(u16::from_le)
            .map_err(|_| ChainError::Ring("avail ring outside guest memory"))?;
        Ok(flags & AVAIL_F_NO_INTERRUPT == 0)
    }
}

/// [`write_used`] and [`publish`] in one: the batch is visible to the driver on return.
pub fn publish_used<M: GuestMemory>(
    queue: &mut Queue,
    mem: &M,
    used: &mut Used,
    last_only: bool,
) -> Result<bool, ChainError> {
    if used.is_empty() {
        return Ok(false);
    }
    let old = queue.next_used();
    write_used(queue, mem, used, last_only)?;
    publish(queue, mem, old)
}

/// Why a frame could not be put on the receive queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxError {
    /// Not enough buffers posted: the frame was not written (the queue is as before).
    NoBuffers,
    /// Without merged buffers, the frame is longer than the chain the guest posted.
    TooBig { len: usize, room: usize },
    /// A chain or the ring itself was refused.
    Chain(ChainError),
}

/// Put one frame (`hdr`, the virtio_net_hdr as the guest reads it, then `frame`'s
/// slices) into the chains on `queue`'s avail ring: as many chains as it takes when
/// `mergeable` (the header's `num_buffers` says how many), one chain otherwise. The
/// chains go to `used`; nothing is published.
///
/// A chain the guest broke is returned to it empty, its cause kept in `used`
/// ([`Used::take_refused`]), and so are the chains this frame had filled before it: the
/// driver takes the `num_buffers` used entries that follow a frame's first as the rest of
/// it, so nothing may come between them (it drops the empty ones as short packets). The
/// frame then starts over in the next chain. When the frame does not fit, the chains
/// returned empty stay returned (each refused once, however often the frame is tried
/// again) and the rest of the queue is as before.
pub fn write_frame<M: GuestMemory>(
    queue: &mut Queue,
    mem: &M,
    hdr: &[u8],
    frame: &[IoSlice<'_>],
    mergeable: bool,
    used: &mut Used,
) -> Result<(), RxError> {
    let map = HostMap::of(mem);
    match Avail::new(queue, mem, &map).map_err(RxError::Chain)? {
        Some(mut avail) => write_frame_from(&mut avail, hdr, frame, mergeable, used),
        None => Err(RxError::NoBuffers),
    }
}

/// [`write_frame`] with the chains of `avail`: a batch of frames reads the avail index
/// once. [`RxError::NoBuffers`] means none is left of that reading; the driver may have
/// posted more since.
pub fn write_frame_from<M: GuestMemory + ?Sized>(
    avail: &mut Avail<'_, '_, M>,
    hdr: &[u8],
    frame: &[IoSlice<'_>],
    mergeable: bool,
    used: &mut Used,
) -> Result<(), RxError> {
    let kept = used.len();
    let total = hdr.len() + frame.iter().map(|s| s.len()).sum::<usize>();
    let mut src = Cursor::new(hdr, frame);
    let (mem, map) = (avail.mem, avail.map);
    // Where the header's num_buffers field went (two bytes, maybe in two descriptors).
    let mut nb_addr: [Option<u64>; 2] = [None, None];
    let mut chains: u16 = 0;
    // Chains taken from the avail ring, and how many of them went back empty.
    let mut popped: u16 = 0;
    let mut returned: u16 = 0;
    let undo = |avail: &mut Avail<'_, '_, M>, used: &mut Used, popped: u16, returned: u16| {
        avail.put_back(popped.wrapping_sub(returned));
        used.truncate(kept + usize::from(returned));
    };
    while src.done < total {
        let Some(chain) = avail.next() else {
            undo(avail, used, popped, returned);
            return Err(RxError::NoBuffers);
        };
        popped = popped.wrapping_add(1);
        let head = chain.head_index();
        match fill_chain(chain, &mut src, &mut nb_addr) {
            Ok(n) => {
                used.push(head, n as u32);
                chains = chains.saturating_add(1);
            }
            Err(e) => {
                used.refuse(head, e);
                used.empty_from(kept + usize::from(returned));
                returned = popped;
                src = Cursor::new(hdr, frame);
                nb_addr = [None, None];
                chains = 0;
                continue;
            }
        }
        if src.done < total && !mergeable {
            let room = src.done;
            undo(avail, used, popped, returned);
            return Err(RxError::TooBig { len: total, room });
        }
    }
    if chains != 1 && hdr.len() > NUM_BUFFERS_OFFSET + 1 {
        let b = chains.to_le_bytes();
        for (a, byte) in nb_addr.iter().zip(b) {
            if let Some(a) = a {
                write_guest(mem, map, *a, &[byte])
                    .map_err(|()| RxError::Chain(ChainError::Ring("header moved")))?;
            }
        }
    }
    Ok(())
}

/// Fill the writable descriptors of one receive chain from `src`; returns the bytes
/// written. Records where the header's `num_buffers` bytes land.
fn fill_chain<M: GuestMemory + ?Sized>(
    chain: Chain<'_, M>,
    src: &mut Cursor<'_>,
    nb_addr: &mut [Option<u64>; 2],
) -> Result<usize, ChainError> {
    let head = chain.head_index();
    let (mem, map) = (chain.mem, chain.map);
    let mut written = 0usize;
    let mut more = true;
    let mut any = false;
    for desc in chain {
        any = true;
        more = desc.has_next();
        if !desc.is_write_only() {
            return Err(ChainError::WrongDirection { head });
        }
        let mut addr = desc.addr;
        let mut room = desc.len as usize;
        while room > 0 && !src.is_empty() {
            let (piece, at) = src.peek(room);
            for (k, slot) in nb_addr.iter_mut().enumerate() {
                let field = NUM_BUFFERS_OFFSET + k;
                if (at..at + piece.len()).contains(&field) && src.in_header(field) {
                    *slot = Some(addr.wrapping_add((field - at) as u64));
                }
            }
            write_guest(mem, map, addr, piece).map_err(|()| ChainError::OutOfMemory {
                head,
                addr,
                len: desc.len,
            })?;
            let n = piece.len();
            src.advance(n);
            addr = addr.wrapping_add(n as u64);
            room -= n;
            written += n;
        }
        if src.is_empty() {
            // The rest of the chain stays unused; a merged frame ends in this chain.
            return Ok(written);
        }
    }
    if !any || more {
        return Err(ChainError::Broken { head });
    }
    Ok(written)
}

/// A read position over the header and the frame's slices.
struct Cursor<'a> {
    hdr: &'a [u8],
    frame: &'a [IoSlice<'a>],
    /// Bytes consumed so far (header included).
    done: usize,
    /// Slice index (0 = header, i + 1 = frame slice i) and offset in it.
    piece: usize,
    off: usize,
}

impl<'a> Cursor<'a> {
    fn new(hdr: &'a [u8], frame: &'a [IoSlice<'a>]) -> Cursor<'a> {
        let mut c = Cursor {
            hdr,
            frame,
            done: 0,
            piece: 0,
            off: 0,
        };
        c.skip_empty();
        c
    }

    fn get(&self, i: usize) -> Option<&'a [u8]> {
        if i == 0 {
            Some(self.hdr)
        } else {
            self.frame.get(i - 1).map(|s| {
                let s: &'a IoSlice<'a> = s;
                &**s
            })
        }
    }

    fn skip_empty(&mut self) {
        while let Some(p) = self.get(self.piece) {
            if self.off < p.len() {
                break;
            }
            self.piece += 1;
            self.off = 0;
        }
    }

    fn is_empty(&self) -> bool {
        self.get(self.piece).is_none()
    }

    /// The next up to `max` contiguous bytes and their offset in the whole.
    fn peek(&self, max: usize) -> (&'a [u8], usize) {
        let p = self.get(self.piece).unwrap_or(&[]);
        let rest = &p[self.off.min(p.len())..];
        (&rest[..rest.len().min(max)], self.done)
    }

    /// Whether byte `at` of the whole is a header byte.
    fn in_header(&self, at: usize) -> bool {
        at < self.hdr.len()
    }

    fn advance(&mut self, n: usize) {
        self.off += n;
        self.done += n;
        self.skip_empty();
    }
}

/// A guest region's host mapping, to turn guest addresses into host pointers without a
/// lookup while they stay in it.
#[derive(Clone, Copy)]
struct Mapped {
    start: u64,
    len: u64,
    host: *mut u8,
}

impl Mapped {
    const NONE: Mapped = Mapped {
        start: 0,
        len: 0,
        host: std::ptr::null_mut(),
    };

    /// The host address of `len` bytes at `addr`, when they all lie in this region.
    fn at(&self, addr: u64, len: u64) -> Option<*mut u8> {
        let off = addr.checked_sub(self.start)?;
        (off.checked_add(len)? <= self.len).then(|| self.host.wrapping_add(off as usize))
    }
}

/// Hint the CPU to fetch the cache line at `p`; `for_write` asks for it in a state it
/// can write without asking the other cores again (PREFETCHW). A hint only: it never
/// faults, whatever `p` is, and changes nothing the program can observe.
fn prefetch(p: *const u8, for_write: bool) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 and PREFETCHW take any address; they neither fault nor read
    // into a register.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0, _MM_HINT_T0};
        if for_write {
            _mm_prefetch::<_MM_HINT_ET0>(p.cast());
        } else {
            _mm_prefetch::<_MM_HINT_T0>(p.cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, for_write);
}

/// Ask for the lines the next `n` chains of `queue` will touch: their avail entries,
/// descriptors and, on a transmit queue, the first 128 bytes of their first buffers (a
/// small frame and its header, which seldom starts a line), all at once, so that the
/// cache misses on lines the driver's core just wrote overlap instead of coming one after
/// the other as the chains are walked. The used ring's next elements are fetched for
/// writing: the driver's core reads those lines, and a store that has to wait for one
/// holds up every store after it. The buffers of a receive queue (`rx`) are left alone:
/// its small frames are written back to back ([`Avail::take_whole`]), which asks for
/// their lines at once anyway, and fetching them here as well measured 2-5 % slower.
/// Reads only what lies in guest memory, changes nothing; an index or address out of
/// place is left for the walk to refuse.
pub fn prefetch_chains(queue: &Queue, map: &HostMap<'_>, n: u16, rx: bool) {
    let size = u64::from(queue.size());
    if size == 0 || n == 0 {
        return;
    }
    let avail = queue.avail_ring();
    let table = queue.desc_table();
    // Only the chains the driver has made available: the ones past them are stale.
    let Some(ring) = avail_ring_host(map, avail, size) else {
        return;
    };
    // SAFETY: from `avail_ring_host`.
    let idx = unsafe { load_avail_idx(ring) };
    let ready = idx.wrapping_sub(queue.next_avail());
    let mut heads = [0u16; 64];
    let n = usize::from(n.min(ready)).min(heads.len());
    // Where descriptor `head` lies (a head past the table is the walk's to refuse).
    let desc_at = |head: u16| {
        table
            .checked_add(DESC_SIZE * ring_slot(u64::from(head), size))
            .and_then(|a| map.find(a, DESC_SIZE))
    };
    let first = u64::from(queue.next_avail());
    for (j, head) in heads.iter_mut().enumerate().take(n) {
        let slot = ring_slot(first + j as u64, size);
        // SAFETY: `ring` from `avail_ring_host` for this size, `slot < size`.
        *head = unsafe { load_avail_entry(ring, slot) };
        if let Some(d) = desc_at(*head) {
            prefetch(d, false);
        }
    }
    // A receive queue's buffers are left alone (see above).
    let buffers = if rx { &heads[..0] } else { &heads[..n] };
    for &head in buffers {
        let Some(d) = desc_at(head) else {
            continue;
        };
        // SAFETY: as above, 16 bytes of a descriptor inside a mapped guest region.
        let desc = unsafe { read_desc(d) };
        let span = desc.len.min(128);
        if span == 0 {
            continue;
        }
        if let Some(p) = map.find(desc.addr, u64::from(span)) {
            let first = p as usize & !63;
            let last = (p as usize + span as usize - 1) & !63;
            for line in (first..=last).step_by(64) {
                prefetch(p.wrapping_add(line.wrapping_sub(p as usize)), false);
            }
        }
    }
    // The used elements these chains will take (8 per line).
    let used = queue.used_ring();
    let next = u64::from(queue.next_used());
    for j in (0..n as u64)
        .step_by(8)
        .chain([(n as u64).saturating_sub(1)])
    {
        let slot = ring_slot(next + j, size);
        if let Some(p) = map.find(used.wrapping_add(USED_HDR + USED_ELEM * slot), USED_ELEM) {
            prefetch(p, true);
        }
    }
}
