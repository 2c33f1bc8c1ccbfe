//! A record or block header is read from the file and can claim any length up to the
//! reader's limit (64 MiB). The reader must not take that claim on trust: a short, damaged
//! or hostile file may cost only as much memory as it holds.
//!
//! This test binary counts every allocation (its own global allocator), so it holds this
//! one test only: other tests running at the same time would disturb the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use pvnet_linux::pcap::{PcapError, PcapReader, MAX_CAPLEN};

/// The system allocator, keeping the number of bytes allocated and its high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::SeqCst) + size;
    PEAK.fetch_max(live, Ordering::SeqCst);
}

// SAFETY: every call is passed on unchanged to `System`, which upholds the GlobalAlloc
// contract; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same layout, same contract as our caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same layout, same contract as our caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Read `bytes` to the end; returns the error that stopped reading and the most memory
/// in use at any moment of it beyond what was in use before.
fn read_peak(bytes: &[u8]) -> (Option<PcapError>, usize) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let err = match PcapReader::new(bytes) {
        Err(e) => Some(e),
        Ok(mut reader) => loop {
            match reader.next_record() {
                Ok(Some(_)) => {}
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        },
    };
    (err, PEAK.load(Ordering::SeqCst) - base)
}

/// Far below the 64 MiB the files claim, far above what reading 40 bytes needs.
const BUDGET: usize = 1 << 20;

fn le32(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

#[test]
fn claimed_lengths_cost_only_the_bytes_that_arrive() {
    // Classic pcap: the 24-byte file header, then a record header claiming MAX_CAPLEN
    // captured bytes, and nothing after it: 40 bytes in all.
    let mut classic = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    classic.extend_from_slice(&[0; 8]);
    classic.extend_from_slice(&le32(MAX_CAPLEN));
    classic.extend_from_slice(&le32(1));
    classic.extend_from_slice(&le32(1_700_000_000));
    classic.extend_from_slice(&le32(0));
    classic.extend_from_slice(&le32(MAX_CAPLEN));
    classic.extend_from_slice(&le32(MAX_CAPLEN));
    assert_eq!(classic.len(), 40);
    let (err, peak) = read_peak(&classic);
    match &err {
        Some(PcapError::Truncated {
            record: 1,
            offset: 24,
            got: 16,
            ..
        }) => {}
        other => panic!("expected truncation of record 1 at offset 24, got {other:?}"),
    }
    assert!(
        peak < BUDGET,
        "classic: {peak} bytes allocated for a 40-byte file"
    );
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("byte offset 24") && msg.contains("record 1"),
        "{msg}"
    );

    // pcapng: a section header, then an enhanced packet block whose length claims 64 MiB.
    let mut ng = vec![0x0a, 0x0d, 0x0d, 0x0a];
    ng.extend_from_slice(&le32(28));
    ng.extend_from_slice(&le32(0x1a2b_3c4d));
    ng.extend_from_slice(&[1, 0, 0, 0]);
    ng.extend_from_slice(&u64::MAX.to_le_bytes());
    ng.extend_from_slice(&le32(28));
    ng.extend_from_slice(&le32(6));
    ng.extend_from_slice(&le32(MAX_CAPLEN));
    ng.extend_from_slice(&[0; 4]);
    let (err, peak) = read_peak(&ng);
    match err {
        Some(PcapError::Truncated {
            record: 1,
            offset: 28,
            ..
        }) => {}
        other => panic!("expected truncation of record 1 at offset 28, got {other:?}"),
    }
    assert!(
        peak < BUDGET,
        "pcapng: {peak} bytes allocated for a 40-byte file"
    );

    // pcapng: a section header claiming 64 MiB of options.
    let mut shb = vec![0x0a, 0x0d, 0x0d, 0x0a];
    shb.extend_from_slice(&le32(MAX_CAPLEN));
    shb.extend_from_slice(&le32(0x1a2b_3c4d));
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&[0; 20]);
    let (err, peak) = read_peak(&shb);
    assert!(
        matches!(err, Some(PcapError::TruncatedHeader { got: 36, .. })),
        "{err:?}"
    );
    assert!(peak < BUDGET, "section header: {peak} bytes allocated");
}
