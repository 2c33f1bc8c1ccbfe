//! Fuzz body for the descriptor-chain paths over a fake guest memory (shared by the
//! cargo-fuzz target `vhost_ring` and the proptest in tests/vhost_user_fuzz.rs).
//!
//! The input is the guest: the first bytes choose the queue size and where the rings
//! lie, the rest fills guest memory (two regions with a hole between them), so the rings,
//! descriptors and lengths are whatever the fuzzer makes them. The transmit path reads
//! every available chain into a slot, and again leaving all but its first bytes in guest
//! memory (zero-copy); the receive path writes frames with and without merged buffers;
//! used entries are published. Nothing may panic, no read may return more than its slot,
//! the two reads of a chain agree byte for byte, and a frame is either written whole or
//! not at all. Before that, the port's own ring walk ([`ring::Avail`], [`ring::Chain`])
//! is held to `virtio-queue`'s: the same chains, each the same descriptors, cut at the
//! same place, and a chain read into a slot holds what `vm-memory` reads at those
//! descriptors.

use std::io::IoSlice;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::ring::{self, Desc, RxError, Used};
use crate::port::External;

/// Size of each of the two guest memory regions.
const REGION: usize = 0x4000;
/// The second region starts here (a hole of one region between them).
const SECOND: u64 = 2 * REGION as u64;

fn u16_at(d: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([
        d.get(i).copied().unwrap_or(0),
        d.get(i + 1).copied().unwrap_or(0),
    ])
}

/// Run the transmit and receive paths on the guest `data` describes.
pub fn ring_body(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&[
        (GuestAddress(0), REGION),
        (GuestAddress(SECOND), REGION),
    ]) else {
        return;
    };
    // Fill both regions with the input (repeated), after the 8 control bytes.
    let body = &data[8..];
    if !body.is_empty() {
        let mut fill = vec![0u8; REGION];
        for (i, b) in fill.iter_mut().enumerate() {
            *b = body[i % body.len()];
        }
        let _ = mem.write_slice(&fill, GuestAddress(0));
        fill.rotate_left(body.len().min(REGION) / 2);
        let _ = mem.write_slice(&fill, GuestAddress(SECOND));
    }
    // Queue size: a power of two up to 256 (what a driver may set).
    let size = 1u16 << (data[0] % 9);
    let place = |v: u16| -> u64 {
        // Anywhere in either region, or in the hole, or past the end.
        u64::from(v) * 4
    };
    let desc = place(u16_at(data, 1));
    let avail = place(u16_at(data, 3));
    let used = place(u16_at(data, 5));
    let mergeable = data[7] & 1 != 0;
    let event_idx = data[7] & 2 != 0;

    for (tx, base_shift) in [(true, 0u64), (false, SECOND)] {
        let queue = || {
            let mut q = Queue::new(size).ok()?;
            q.set_size(size);
            q.set_desc_table_address(Some((desc + base_shift) as u32), Some(0));
            q.set_avail_ring_address(Some((avail + base_shift) as u32), Some(0));
            q.set_used_ring_address(Some((used + base_shift) as u32), Some(0));
            q.set_event_idx(event_idx);
            q.set_ready(true);
            Some(q)
        };
        let (Some(mut q), Some(ours), Some(theirs)) = (queue(), queue(), queue()) else {
            return;
        };
        let _ = same_walk_as_virtio_queue(ours, theirs, &mem);
        let mut used_elems = Used::with_capacity(usize::from(size));
        // Whatever the rings hold, warming the cache reads only guest memory and changes
        // nothing the walks below see.
        let map = ring::HostMap::of(&mem);
        ring::prefetch_chains(&q, &map, size, !tx);
        if tx {
            let mut slot = vec![0u8; 2048];
            let mut split = vec![0u8; 2048];
            let mut ext = External::default();
            // One reading of the avail index, as the port takes a batch (a reading holds
            // at most a queue's worth of chains).
            let chains = ring::Avail::new(&mut q, &mem, &map).ok().flatten();
            for mut chain in chains.into_iter().flatten() {
                let head = chain.head_index();
                let mut again = chain.clone();
                let keep = 16 + usize::from(head % 64);
                let copied = ring::read_chain(&mut chain, &mut slot, keep, |_| false, &mut ext);
                let in_place = ring::read_chain(&mut again, &mut split, keep, |_| true, &mut ext);
                assert_eq!(copied.is_ok(), in_place.is_ok(), "{copied:?} {in_place:?}");
                if let (Ok(n), Ok(m)) = (copied, in_place) {
                    assert!(n <= slot.len());
                    assert_eq!(n, m);
                    let whole = if ext.pieces().is_empty() {
                        split[..n].to_vec()
                    } else {
                        let mut w = split[..keep].to_vec();
                        for &(ptr, len) in ext.pieces() {
                            // SAFETY: recorded from `mem`, which is alive here.
                            let p = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
                            w.extend_from_slice(p);
                        }
                        w
                    };
                    assert_eq!(&whole[..], &slot[..n], "zero-copy read differs");
                }
                used_elems.push(head, 0);
            }
        } else {
            let hdr = [0u8; 12];
            let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
            let frame = [
                IoSlice::new(&payload[..1000]),
                IoSlice::new(&payload[1000..]),
            ];
            for _ in 0..4 {
                let before = q.next_avail();
                let kept = used_elems.len();
                match ring::write_frame(&mut q, &mem, &hdr, &frame, mergeable, &mut used_elems) {
                    Ok(()) => {}
                    Err(RxError::NoBuffers | RxError::TooBig { .. } | RxError::Chain(_)) => {
                        // Not written: the queue moved only past chains returned empty.
                        let returned = &used_elems.as_slice()[kept..];
                        assert_eq!(
                            usize::from(q.next_avail().wrapping_sub(before)),
                            returned.len()
                        );
                        assert!(returned.iter().all(|&(_, len)| len == 0));
                        let n = returned.len();
                        assert!(used_elems.take_refused().count() <= n);
                        break;
                    }
                }
                let _ = used_elems.take_refused();
            }
        }
        // A transmit batch as an in-order driver gets it: its last element only.
        let _ = ring::publish_used(&mut q, &mem, &mut used_elems, tx);
    }
}

/// Walk every available chain of `ours` with the port's walk and of `theirs` (the same
/// queue) with `virtio-queue`'s, and require the same outcome: the same chains, each the
/// same descriptors (so cut short at the same place), and the same bytes when a chain is
/// read into a slot. Panics on a difference; returns the walk (each chain's head and
/// descriptors), `None` when both refused the avail ring.
#[allow(clippy::type_complexity)]
pub fn same_walk_as_virtio_queue(
    mut ours: Queue,
    mut theirs: Queue,
    mem: &GuestMemoryMmap,
) -> Option<Vec<(u16, Vec<Desc>)>> {
    let map = ring::HostMap::of(mem);
    let walk = ring::Avail::new(&mut ours, mem, &map);
    let reference = theirs.iter(mem);
    let (walk, mut reference) = match (walk, reference) {
        (Ok(Some(w)), Ok(r)) => (w, r),
        (Ok(None), Err(virtio_queue::Error::QueueNotReady)) => return Some(Vec::new()),
        (Err(_), Err(e)) => {
            assert!(!matches!(e, virtio_queue::Error::QueueNotReady));
            return None;
        }
        (w, r) => panic!(
            "avail ring read differently: ours {:?}, virtio-queue's {:?}",
            w.map(|a| a.is_some()),
            r.map(|_| ())
        ),
    };
    let mut slot = vec![0u8; 2048];
    let mut ext = External::default();
    let mut walked = Vec::new();
    for chain in walk {
        let Some(their_chain) = reference.next() else {
            panic!("virtio-queue's walk ended before ours");
        };
        let head = chain.head_index();
        assert_eq!(head, their_chain.head_index());
        let read = ring::read_chain(
            &mut chain.clone(),
            &mut slot,
            usize::MAX,
            |_| false,
            &mut ext,
        );
        let descs: Vec<Desc> = chain.collect();
        let their_descs: Vec<Desc> = their_chain
            .map(|d| Desc {
                addr: d.addr().0,
                len: d.len(),
                flags: d.flags(),
                next: d.next(),
            })
            .collect();
        assert_eq!(descs, their_descs, "chain walked differently");
        // The chain as vm-memory reads it: whole, read-only, readable, within the slot.
        let mut bytes = Vec::new();
        let whole = descs.last().is_some_and(|d| !d.has_next())
            && descs.iter().all(|d| {
                let len = d.len as usize;
                if d.is_write_only() || bytes.len() + len > slot.len() {
                    return false;
                }
                let mut b = vec![0u8; len];
                let ok = mem.read_slice(&mut b, GuestAddress(d.addr)).is_ok();
                bytes.extend_from_slice(&b);
                ok
            });
        match read {
            Ok(n) => {
                assert!(whole, "a chain read that vm-memory cannot read: {descs:?}");
                assert_eq!(
                    &slot[..n],
                    &bytes[..],
                    "chain read differs from vm-memory's"
                );
            }
            Err(e) => assert!(!whole, "a readable chain refused ({e}): {descs:?}"),
        }
        walked.push((head, descs));
    }
    assert!(
        reference.next().is_none(),
        "our walk ended before virtio-queue's"
    );
    assert_eq!(ours.next_avail(), theirs.next_avail());
    Some(walked)
}
