//! The vhost-user port's own descriptor walk against `virtio-queue`'s, on rings written
//! by hand: each case the driver may get wrong (loops, indices past the table, indirect
//! tables that nest, have odd lengths or lie outside memory, chains over 4 GiB) and each
//! place the port's region map does not cover (tables across two regions) must walk as
//! `virtio-queue` walks it, and as the virtio spec says.
#![cfg(feature = "testing")]

use pvnet_linux::vhost_user::fuzz::same_walk_as_virtio_queue;
use pvnet_linux::vhost_user::ring::Desc;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const NEXT: u16 = 1;
const WRITE: u16 = 2;
const INDIRECT: u16 = 4;

/// Three adjacent regions (0..0x4000, 0x4000..0x8000, 0x8000..0xc000), a hole, and a
/// fourth region at 0x10000.
fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::<()>::from_ranges(&[
        (GuestAddress(0), 0x4000),
        (GuestAddress(0x4000), 0x4000),
        (GuestAddress(0x8000), 0x4000),
        (GuestAddress(0x10000), 0x4000),
    ])
    .expect("guest memory")
}

const SIZE: u16 = 8;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;

fn desc(addr: u64, len: u32, flags: u16, next: u16) -> Desc {
    Desc {
        addr,
        len,
        flags,
        next,
    }
}

fn put(mem: &GuestMemoryMmap, at: u64, d: Desc) {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&d.addr.to_le_bytes());
    b[8..12].copy_from_slice(&d.len.to_le_bytes());
    b[12..14].copy_from_slice(&d.flags.to_le_bytes());
    b[14..].copy_from_slice(&d.next.to_le_bytes());
    mem.write_slice(&b, GuestAddress(at)).expect("descriptor");
}

/// Write `table` as the queue's descriptor table at `at`, offer `heads`, and return both
/// walks' result (they are checked to agree).
fn walk(mem: &GuestMemoryMmap, at: u64, table: &[Desc], heads: &[u16]) -> Vec<(u16, Vec<Desc>)> {
    for (i, d) in table.iter().enumerate() {
        put(mem, at + 16 * i as u64, *d);
    }
    for (i, h) in heads.iter().enumerate() {
        mem.write_obj(h.to_le(), GuestAddress(AVAIL + 4 + 2 * i as u64))
            .expect("avail entry");
    }
    mem.write_obj((heads.len() as u16).to_le(), GuestAddress(AVAIL + 2))
        .expect("avail index");
    same_walk_as_virtio_queue(queue(at), queue(at), mem).expect("avail ring read")
}

/// A ready queue of `SIZE` with its descriptor table at `table` and the rings at `AVAIL`
/// and `USED`.
fn queue(table: u64) -> Queue {
    let mut q = Queue::new(SIZE).expect("queue");
    q.set_desc_table_address(Some(table as u32), Some(0));
    q.set_avail_ring_address(Some(AVAIL as u32), Some(0));
    q.set_used_ring_address(Some(USED as u32), Some(0));
    q.set_ready(true);
    q
}

const TABLE: u64 = 0x1000;

#[test]
fn a_plain_chain_is_walked_whole() {
    let mem = memory();
    let t = [
        desc(0x100, 12, NEXT, 1),
        desc(0x10000, 64, 0, 0),
        desc(0x200, 100, WRITE, 0),
    ];
    let w = walk(&mem, TABLE, &t, &[0, 2]);
    assert_eq!(w, vec![(0, t[..2].to_vec()), (2, vec![t[2]])]);
}

#[test]
fn a_loop_ends_after_a_queue_of_descriptors() {
    let mem = memory();
    let t = [desc(0x100, 10, NEXT, 1), desc(0x200, 10, NEXT, 0)];
    let w = walk(&mem, TABLE, &t, &[0]);
    assert_eq!(w[0].1.len(), usize::from(SIZE));
    assert!(w[0].1.last().is_some_and(Desc::has_next), "cut, not ended");
}

#[test]
fn an_index_past_the_table_ends_the_walk() {
    let mem = memory();
    let t = [desc(0x100, 10, NEXT, SIZE)];
    assert_eq!(
        walk(&mem, TABLE, &t, &[0, SIZE]),
        vec![(0, vec![t[0]]), (SIZE, vec![])]
    );
}

#[test]
fn an_indirect_table_is_walked_in_place_of_its_descriptor() {
    let mem = memory();
    let inner = [
        desc(0x300, 12, NEXT, 1),
        desc(0x400, 1500, NEXT, 2),
        desc(0x500, 9, 0, 0),
    ];
    for (i, d) in inner.iter().enumerate() {
        put(&mem, 0x1800 + 16 * i as u64, *d);
    }
    // At the head, and after a plain descriptor (its "next" flag on the indirect one is
    // ignored: the table ends the chain).
    let t = [
        desc(0x1800, 48, INDIRECT, 0),
        desc(0x100, 4, NEXT, 2),
        desc(0x1800, 48, INDIRECT | NEXT, 0),
    ];
    let w = walk(&mem, TABLE, &t, &[0, 1]);
    assert_eq!(w[0], (0, inner.to_vec()));
    let mut after = vec![t[1]];
    after.extend(inner);
    assert_eq!(w[1], (1, after));
}

#[test]
fn bad_indirect_tables_cut_the_chain() {
    let mem = memory();
    // Nested: the walk stops at the inner indirect descriptor.
    put(&mem, 0x1800, desc(0x600, 10, NEXT, 1));
    put(&mem, 0x1810, desc(0x1800, 32, INDIRECT, 0));
    // Outside memory (the hole between 0xc000 and 0x10000).
    let t = [
        desc(0x1800, 32, INDIRECT, 0),
        desc(0x1800, 24, INDIRECT, 0),
        desc(0xd000, 32, INDIRECT, 0),
        desc(0x1800, 0, INDIRECT, 0),
    ];
    let w = walk(&mem, TABLE, &t, &[0, 1, 2, 3]);
    assert_eq!(w[0].1, vec![desc(0x600, 10, NEXT, 1)], "nested");
    assert_eq!(w[1].1, vec![], "length not a multiple of 16");
    assert_eq!(w[2].1, vec![], "table outside memory");
    assert_eq!(w[3].1, vec![], "empty table");
}

#[test]
fn a_chain_past_4_gib_is_cut_before_the_descriptor_that_overflows() {
    let mem = memory();
    let t = [desc(0x100, u32::MAX, NEXT, 1), desc(0x200, 1, 0, 0)];
    assert_eq!(walk(&mem, TABLE, &t, &[0]), vec![(0, vec![t[0]])]);
}

#[test]
fn tables_across_two_regions_are_read_through_vm_memory() {
    let mem = memory();
    // The main table straddles 0x4000 (entries 0..4 in the first region, 4..8 in the
    // second), an indirect table 0x8000, and a buffer 0x4000 again.
    let at = 0x4000 - 64;
    let inner = [desc(0x3ff8, 16, NEXT, 1), desc(0x700, 8, 0, 0)];
    put(&mem, 0x7ff0, inner[0]);
    put(&mem, 0x8000, inner[1]);
    let t = [
        desc(0x100, 10, NEXT, 5),
        desc(0x7ff0, 32, INDIRECT, 0),
        desc(0, 0, 0, 0),
        desc(0, 0, 0, 0),
        desc(0, 0, 0, 0),
        desc(0x200, 20, 0, 0),
    ];
    let w = walk(&mem, at, &t, &[0, 1]);
    assert_eq!(w, vec![(0, vec![t[0], t[5]]), (1, inner.to_vec())]);
}

#[test]
fn an_avail_index_past_the_queue_size_is_refused_by_both() {
    let mem = memory();
    mem.write_obj((SIZE + 1).to_le(), GuestAddress(AVAIL + 2))
        .expect("avail index");
    assert_eq!(
        same_walk_as_virtio_queue(queue(TABLE), queue(TABLE), &mem),
        None
    );
}

/// Descriptors are read as two 8-byte words where they are 8-aligned and byte by byte
/// where not: an indirect table may lie at any address, and both must read the same
/// descriptors (fields whose bytes all differ, so a byte read out of place shows).
#[test]
fn an_indirect_table_off_alignment_reads_as_an_aligned_one() {
    let mem = memory();
    let inner = [desc(0x1234, 0x0567, NEXT, 1), desc(0x2a2b, 0x3c3d, 0, 0)];
    for at in [0x1800u64, 0x1804, 0x1803] {
        for (i, d) in inner.iter().enumerate() {
            put(&mem, at + 16 * i as u64, *d);
        }
        let t = [desc(at, 32, INDIRECT, 0)];
        let w = walk(&mem, TABLE, &t, &[0]);
        assert_eq!(w, vec![(0, inner.to_vec())], "indirect table at {at:#x}");
    }
}

/// The driver moves the avail index while the device reads it. Read as two bytes, an
/// index going from 0x00ff to 0x0100 can read as 0x01ff or 0x0000: hundreds of chains
/// ahead, or behind, of the device, which then takes the ring for inconsistent and stops
/// it (this stopped the busiest queues of the vhost-user benchmark now and then). Here a
/// thread flips the index across that boundary as fast as it can while the ring is read
/// over and over; every reading must be one of the two values.
#[test]
fn the_avail_index_is_read_whole_while_the_driver_moves_it() {
    use pvnet_linux::vhost_user::ring::{Avail, HostMap};
    use std::sync::atomic::{AtomicBool, Ordering};

    let mem = memory();
    let mut q = queue(TABLE);
    q.set_next_avail(0x00ff);
    mem.write_obj(0x00ffu16.to_le(), GuestAddress(AVAIL + 2))
        .expect("avail index");
    let map = HostMap::of(&mem);
    let done = AtomicBool::new(false);
    let mut refused = 0u64;
    std::thread::scope(|s| {
        s.spawn(|| {
            let at = GuestAddress(AVAIL + 2);
            while !done.load(Ordering::Relaxed) {
                for idx in [0x0100u16, 0x00ff] {
                    mem.store(idx.to_le(), at, Ordering::Release)
                        .expect("avail index");
                }
            }
        });
        for _ in 0..2_000_000 {
            if Avail::new(&mut q, &mem, &map).is_err() {
                refused += 1;
            }
        }
        done.store(true, Ordering::Relaxed);
    });
    assert_eq!(refused, 0, "readings of a torn avail index");
}
