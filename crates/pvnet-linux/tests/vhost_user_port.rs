//! A vhost-user port driven by an in-process frontend (rust-vmm's `Frontend`, guest memory
//! in a memfd) and a hand-written driver side of the rings: feature negotiation, frames
//! both ways (merged receive buffers included), reconnection, and hostile rings, each
//! refused and counted without touching memory outside the guest's.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pvnet_core::frame::{Frame, OffloadMeta};
use pvnet_core::offload::features::{virtio_net, Features};
use pvnet_linux::port::{LateDrops, Port, RecvBufs, SendError};
use pvnet_linux::vhost_user::guest::{Desc, FakeGuest, F_INDIRECT, F_NEXT, F_WRITE};
use pvnet_linux::vhost_user::{VhostUserConfig, VhostUserPort};

const SECOND: Duration = Duration::from_secs(1);

/// A socket path of this test's own.
fn sock(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pvnet-vu-{}-{tag}.sock", std::process::id()))
}

fn config(path: PathBuf) -> VhostUserConfig {
    VhostUserConfig {
        path,
        client: false,
        pairs: 1,
        offload: Features::ALL,
        mac: [0x02, 0, 0, 0, 0, 1],
        mtu: 1500,
        poll: false,
    }
}

fn open(tag: &str) -> VhostUserPort {
    let mut ports = VhostUserPort::open(tag, config(sock(tag))).expect("open vhost-user port");
    ports.remove(0)
}

/// Send one frame and flush, as the switch does after each batch (the used index moves
/// only at the flush, and a wire-sized frame is only written then): the error of the
/// send, or of the flush for a frame the send took.
fn sf(port: &mut dyn Port, hdr: &[u8], frame: &Frame<'_>) -> Result<(), SendError> {
    let r = port.send(hdr, frame);
    let late = port.flush();
    if r.is_err() {
        assert!(late.is_empty(), "a refused frame dropped again: {late:?}");
        return r;
    }
    assert!(late.frames() <= 1, "one frame sent, {late:?} dropped");
    if late.busy == 1 {
        Err(SendError::WouldBlock)
    } else if late.too_big == 1 {
        Err(SendError::TooBig(std::io::Error::other(
            "too big at the flush",
        )))
    } else if late.no_carrier == 1 {
        Err(SendError::NoCarrier)
    } else {
        Ok(())
    }
}

/// Every feature the port offers.
const ALL: u64 = u64::MAX;

/// Receive from the port until `n` frames came or a second passed.
fn recv(port: &mut VhostUserPort, bufs: &mut RecvBufs, n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let deadline = Instant::now() + SECOND;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        let got = port.recv_batch(bufs).expect("recv_batch");
        for i in 0..got {
            out.push(whole(bufs, i));
        }
        if got == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    out
}

/// Frame `i` of the batch as (vnet header, frame): its slot, or for a super-frame left in
/// guest memory the slot's first bytes and the pieces.
fn whole(bufs: &RecvBufs, i: usize) -> (Vec<u8>, Vec<u8>) {
    let (h, f) = bufs.get(i).expect("frame in batch");
    let Some(head) = bufs.external(i) else {
        return (h.to_vec(), f.to_vec());
    };
    let mut pieces = [&[][..]; pvnet_linux::port::MAX_EXTERNAL];
    let n = bufs.external_slices(i, &mut pieces);
    let mut v = f[..head].to_vec();
    for p in &pieces[..n] {
        v.extend_from_slice(p);
    }
    assert_eq!(v.len(), f.len(), "pieces and length agree");
    (h.to_vec(), v)
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect();
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}

fn hdr_plain() -> [u8; 12] {
    [0; 12]
}

#[test]
fn a_guest_negotiates_what_it_acks() {
    let mut port = open("neg");
    assert!(!port.is_connected());
    // Before a guest, the port plans with what it offers.
    assert!(port.features().contains(Features::TSO4 | Features::CSUM));
    let want = virtio_net::VERSION_1
        | virtio_net::MRG_RXBUF
        | virtio_net::CSUM
        | virtio_net::HOST_TSO4
        | virtio_net::PROTOCOL_FEATURES
        | virtio_net::MAC
        | virtio_net::MTU;
    let mut g = FakeGuest::connect(port.path(), want, 1, 256).expect("guest");
    assert_eq!(g.acked(), want, "the port offers all of these");
    let deadline = Instant::now() + SECOND;
    while port.acked_features() != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(port.acked_features(), want);
    // No GUEST_CSUM / GUEST_TSO: the switch must send this guest complete, wire-sized
    // frames.
    assert_eq!(port.features(), Features::SG);
    // The config space: MAC, link up, one pair, MTU.
    let c = g.config(0, 12).expect("config");
    assert_eq!(&c[..6], &[0x02, 0, 0, 0, 0, 1]);
    assert_eq!(u16::from_le_bytes([c[6], c[7]]), 1, "link up");
    assert_eq!(u16::from_le_bytes([c[8], c[9]]), 1, "pairs");
    assert_eq!(u16::from_le_bytes([c[10], c[11]]), 1500, "mtu");
    let _ = &mut port;
}

#[test]
fn frames_cross_both_ways_and_super_frames_use_merged_buffers() {
    let mut port = open("both");
    let mut g = FakeGuest::connect(port.path(), ALL, 1, 256).expect("guest");
    assert_eq!(g.hdr_len(), 12);
    // Guest → port: a 64 KiB TSO super-frame with a partial checksum, in 4 KiB pieces.
    let mut hdr = [0u8; 12];
    hdr[0] = 1; // NEEDS_CSUM
    hdr[1] = 1; // TCPV4
    hdr[2..4].copy_from_slice(&54u16.to_le_bytes());
    hdr[4..6].copy_from_slice(&1448u16.to_le_bytes());
    hdr[6..8].copy_from_slice(&34u16.to_le_bytes());
    hdr[8..10].copy_from_slice(&16u16.to_le_bytes());
    let big = frame(65_000, 3);
    // Written by hand (not send_frame) to know where the payload lies in guest memory.
    let bytes = [&hdr[..], &big[..]].concat();
    let at = g.alloc(bytes.len() as u64);
    g.write(at, &bytes);
    let descs: Vec<Desc> = (0..bytes.len().div_ceil(4096))
        .map(|i| Desc {
            addr: at + 4096 * i as u64,
            len: (bytes.len() - 4096 * i).min(4096) as u32,
            flags: if 4096 * (i + 1) < bytes.len() {
                F_NEXT
            } else {
                0
            },
            next: (i + 1) as u16,
        })
        .collect();
    let head = 0u16;
    g.offer(1, head, &descs);
    g.kick(1);
    let mut bufs = RecvBufs::new(64, pvnet_linux::port::DEFAULT_SLOT_LEN);
    let got = recv(&mut port, &mut bufs, 1);
    assert_eq!(got.len(), 1, "the super-frame arrives");
    assert_eq!(got[0].0, hdr, "header as the guest wrote it");
    assert_eq!(got[0].1, big, "every byte");
    // Its payload was read in place: the slot holds the headers, guest memory the rest,
    // and the chain stays the port's until the switch releases the batch.
    let payload_in_place = bufs.external(0);
    assert_eq!(
        payload_in_place,
        Some(pvnet_linux::vhost_user::ZERO_COPY_HEAD)
    );
    g.write(at + 12 + 40_000, &[!big[40_000]]);
    assert_eq!(
        whole(&bufs, 0).1[40_000],
        !big[40_000],
        "the payload is read from guest memory, not from a copy"
    );
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        g.take_used(1).is_empty(),
        "returned while the switch may read it"
    );
    port.release();
    let used = g.wait_used(1, 1, SECOND);
    assert_eq!(used, vec![(u32::from(head), 0)]);

    // Port → guest: plain frames in one buffer each, then a super-frame over merged
    // 1536-byte buffers with num_buffers set.
    g.post_rx(128, 1536);
    // The rings reach the port with the guest's first kick; wait for a send to land.
    let small = frame(1000, 9);
    let deadline = Instant::now() + SECOND;
    loop {
        match sf(
            &mut port,
            &hdr_plain(),
            &Frame::linear(&small, OffloadMeta::default()),
        ) {
            Ok(()) => break,
            Err(SendError::NoCarrier) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => panic!("send: {e}"),
        }
    }
    let rx = g.recv_frames(1, SECOND);
    assert_eq!(rx.len(), 1);
    assert_eq!(
        u16::from_le_bytes([rx[0].0[10], rx[0].0[11]]),
        1,
        "num_buffers"
    );
    assert_eq!(rx[0].1, small);

    let payload = frame(60_000, 5);
    let (head_part, rest) = payload.split_at(54);
    let pieces: Vec<&[u8]> = rest.chunks(7000).collect();
    let f = Frame::new(head_part, &pieces, OffloadMeta::default());
    sf(&mut port, &hdr, &f).expect("super-frame into merged buffers");
    let rx = g.recv_frames(1, SECOND);
    assert_eq!(rx.len(), 1);
    let nb = u16::from_le_bytes([rx[0].0[10], rx[0].0[11]]);
    assert_eq!(
        usize::from(nb),
        (12 + payload.len()).div_ceil(1536),
        "num_buffers"
    );
    assert_eq!(&rx[0].0[..10], &hdr[..10], "the rest of the header as sent");
    assert_eq!(rx[0].1, payload, "every byte, in order");
}

#[test]
fn an_in_order_driver_gets_a_transmit_batch_back_as_one_used_element() {
    for (tag, want) in [("inorder", ALL), ("anyorder", ALL & !virtio_net::IN_ORDER)] {
        let mut port = open(tag);
        let mut g = FakeGuest::connect(port.path(), want, 1, 256).expect("guest");
        let in_order = g.acked() & virtio_net::IN_ORDER != 0;
        assert_eq!(
            in_order,
            want == ALL,
            "IN_ORDER is offered, and acked if wanted"
        );
        let mut bufs = RecvBufs::new(64, pvnet_linux::port::DEFAULT_SLOT_LEN);
        g.scribble_used(1, 0xee);
        let start = g.used_taken(1);
        let frames: Vec<Vec<u8>> = (0..5).map(|i| frame(100 + i, i as u8)).collect();
        let heads: Vec<u32> = frames
            .iter()
            .map(|f| u32::from(g.send_frame(&hdr_plain(), f, 4096)))
            .collect();
        // Made available before the port looks: one batch.
        let got = recv(&mut port, &mut bufs, frames.len());
        assert_eq!(got.len(), frames.len(), "{tag}: every frame arrives");
        let used = g.wait_used(1, frames.len(), SECOND);
        let used: Vec<u32> = used.iter().map(|&(head, _)| head).collect();
        assert_eq!(used, heads, "{tag}: every chain goes back, in order");
        let slots: Vec<(u32, u32)> = (0..5u16)
            .map(|i| g.used_slot(1, start.wrapping_add(i)))
            .collect();
        let untouched = (0xeeee_eeee, 0xeeee_eeee);
        if in_order {
            assert_eq!(
                slots[..4],
                [untouched; 4],
                "only the batch's last element..."
            );
            assert_eq!(slots[4], (heads[4], 0), "...in its own place");
        } else {
            let every: Vec<(u32, u32)> = heads.iter().map(|&h| (h, 0)).collect();
            assert_eq!(slots, every, "every element, each in its place");
        }
        // Receive buffers take every element either way: their lengths are the frames'.
        g.scribble_used(0, 0xee);
        g.post_rx(8, 2048);
        for f in &frames[..2] {
            sf(
                &mut port,
                &hdr_plain(),
                &Frame::linear(f, OffloadMeta::default()),
            )
            .expect("send");
        }
        let rx = g.recv_frames(2, SECOND);
        assert_eq!(rx.len(), 2, "{tag}: both frames reach the guest");
        assert_eq!(rx[0].1, frames[0]);
        assert_eq!(rx[1].1, frames[1]);
    }
}

#[test]
fn without_merged_buffers_a_frame_needs_one_big_enough_chain() {
    let mut port = open("big");
    let want = ALL & !virtio_net::MRG_RXBUF;
    let mut g = FakeGuest::connect(port.path(), want, 1, 256).expect("guest");
    g.post_rx(4, 1536);
    let small = frame(1400, 1);
    let deadline = Instant::now() + SECOND;
    while sf(
        &mut port,
        &hdr_plain(),
        &Frame::linear(&small, OffloadMeta::default()),
    )
    .is_err()
    {
        assert!(Instant::now() < deadline, "port never took a frame");
        std::thread::sleep(Duration::from_millis(2));
    }
    let rx = g.recv_frames(1, SECOND);
    assert_eq!(rx[0].1, small);
    // A frame longer than one buffer is refused as too big, and the buffers stay posted.
    let large = frame(3000, 2);
    match sf(
        &mut port,
        &hdr_plain(),
        &Frame::linear(&large, OffloadMeta::default()),
    ) {
        Err(SendError::TooBig(_)) => {}
        r => panic!("expected TooBig, got {r:?}"),
    }
    sf(
        &mut port,
        &hdr_plain(),
        &Frame::linear(&small, OffloadMeta::default()),
    )
    .expect("the buffers are still there");
    assert_eq!(g.recv_frames(1, SECOND).len(), 1);
}

#[test]
fn a_full_receive_ring_is_busy_not_an_error() {
    let mut port = open("busy");
    let mut g = FakeGuest::connect(port.path(), ALL, 1, 256).expect("guest");
    g.post_rx(2, 1536);
    let f = frame(1000, 4);
    let deadline = Instant::now() + SECOND;
    while sf(
        &mut port,
        &hdr_plain(),
        &Frame::linear(&f, OffloadMeta::default()),
    )
    .is_err()
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(2));
    }
    sf(
        &mut port,
        &hdr_plain(),
        &Frame::linear(&f, OffloadMeta::default()),
    )
    .expect("second buffer");
    match sf(
        &mut port,
        &hdr_plain(),
        &Frame::linear(&f, OffloadMeta::default()),
    ) {
        Err(SendError::WouldBlock) => {}
        r => panic!("expected WouldBlock, got {r:?}"),
    }
    // A super-frame that needs more buffers than posted leaves the ring as it was.
    g.post_rx(2, 1536);
    let big = frame(5000, 4);
    match sf(
        &mut port,
        &hdr_plain(),
        &Frame::linear(&big, OffloadMeta::default()),
    ) {
        Err(SendError::WouldBlock) => {}
        r => panic!("expected WouldBlock, got {r:?}"),
    }
    sf(
        &mut port,
        &hdr_plain(),
        &Frame::linear(&f, OffloadMeta::default()),
    )
    .expect("the two buffers are still free");
    let rx = g.recv_frames(3, SECOND);
    assert_eq!(rx.len(), 3);
}

#[test]
fn a_batch_of_small_frames_goes_in_at_the_flush_and_what_finds_no_buffer_is_reported() {
    let mut port = open("stage");
    let mut g = FakeGuest::connect(port.path(), ALL, 1, 256).expect("guest");
    g.post_rx(5, 2048);
    let first = frame(100, 0);
    send_when_ready(&mut port, &first);
    // The guest reads it and posts its buffer again, as a driver does.
    assert_eq!(g.recv_frames(1, SECOND)[0].1, first);

    // Five buffers. Two small frames, a super-frame (written at once, after them),
    // then four more small ones: the last two find no buffer.
    let small: Vec<Vec<u8>> = (1..=6u8).map(|i| frame(200 + usize::from(i), i)).collect();
    let big = frame(3000, 9);
    for f in &small[..2] {
        port.send(&hdr_plain(), &Frame::linear(f, OffloadMeta::default()))
            .expect("a small frame is taken");
    }
    port.send(&hdr_plain(), &Frame::linear(&big, OffloadMeta::default()))
        .expect("the super-frame fits two merged buffers");
    for f in &small[2..] {
        port.send(&hdr_plain(), &Frame::linear(f, OffloadMeta::default()))
            .expect("a small frame is taken");
    }
    assert!(
        g.recv_frames(1, Duration::from_millis(50)).is_empty(),
        "nothing is published before the flush"
    );
    let late = port.flush();
    assert_eq!(
        late,
        LateDrops {
            busy: 3,
            too_big: 0,
            no_carrier: 0,
            bytes: (small[3].len() + small[4].len() + small[5].len()) as u64,
        }
    );
    let got: Vec<Vec<u8>> = g
        .recv_frames(4, SECOND)
        .into_iter()
        .map(|(_, f)| f)
        .collect();
    assert_eq!(
        got,
        vec![small[0].clone(), small[1].clone(), big, small[2].clone()]
    );

    // The ring works on: the guest posted the buffers it read again.
    send_when_ready(&mut port, &small[5]);
    assert_eq!(g.recv_frames(1, SECOND)[0].1, small[5]);
}

/// Small frames that each fit their chain's first buffer are written together at the end
/// of the batch, and one that needs merged buffers goes in where it was sent: the guest
/// reads them in order, each whole, the merged one with its `num_buffers`.
#[test]
fn small_frames_in_whole_and_merged_buffers_keep_their_order() {
    let mut port = open("stmix");
    let mut g = FakeGuest::connect(port.path(), ALL, 1, 256).expect("guest");
    g.post_rx(1, 2048);
    let first = frame(100, 0);
    send_when_ready(&mut port, &first);
    assert_eq!(g.recv_frames(1, SECOND)[0].1, first);
    // The buffer read above is posted again (2048 bytes); then 2048, three of 100 and two
    // of 2048.
    g.post_rx(1, 2048);
    g.post_rx(3, 100);
    g.post_rx(2, 2048);
    let frames: Vec<Vec<u8>> = [200usize, 201, 250, 150, 1000]
        .iter()
        .zip(1u8..)
        .map(|(&len, seed)| frame(len, seed))
        .collect();
    for f in &frames[..4] {
        port.send(&hdr_plain(), &Frame::linear(f, OffloadMeta::default()))
            .expect("a small frame is taken");
    }
    assert_eq!(port.flush(), LateDrops::default());
    let got = g.recv_frames(4, SECOND);
    let bodies: Vec<Vec<u8>> = got.iter().map(|(_, f)| f.clone()).collect();
    assert_eq!(bodies, frames[..4].to_vec());
    let num_buffers = |h: &[u8]| u16::from_le_bytes([h[10], h[11]]);
    assert_eq!(
        got.iter().map(|(h, _)| num_buffers(h)).collect::<Vec<_>>(),
        vec![1, 1, 3, 1],
        "the third frame spread over the three small buffers"
    );
    // The last buffer is left for the next batch.
    send_when_ready(&mut port, &frames[4]);
    assert_eq!(g.recv_frames(1, SECOND)[0].1, frames[4]);
}

#[test]
fn small_frames_staged_for_a_guest_that_went_away_are_reported_without_carrier() {
    let mut port = open("stgone");
    let mut g = FakeGuest::connect(port.path(), ALL, 1, 256).expect("guest");
    g.post_rx(4, 2048);
    let f = frame(300, 3);
    send_when_ready(&mut port, &f);
    assert_eq!(g.recv_frames(1, SECOND).len(), 1);
    port.send(&hdr_plain(), &Frame::linear(&f, OffloadMeta::default()))
        .expect("taken while the guest is there");
    g.disconnect();
    let deadline = Instant::now() + SECOND;
    while port.is_connected() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(!port.is_connected());
    let late = port.flush();
    assert_eq!(late.no_carrier, 1, "{late:?}");
    assert_eq!(late.bytes, f.len() as u64);
    assert_eq!(late.frames(), 1);
}

#[test]
fn the_next_frontend_takes_over_after_one_goes_away() {
    let mut port = open("again");
    for round in 0..3u8 {
        let mut g = FakeGuest::connect(port.path(), ALL, 1, 256).expect("guest");
        let f = frame(200, round);
        g.send_frame(&hdr_plain(), &f, 4096);
        let mut bufs = RecvBufs::new(8, 4096);
        let got = recv(&mut port, &mut bufs, 1);
        assert_eq!(got.len(), 1, "round {round}");
        assert_eq!(got[0].1, f);
        g.disconnect();
        let deadline = Instant::now() + SECOND;
        while port.is_connected() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(!port.is_connected(), "round {round}: the port went down");
        match sf(
            &mut port,
            &hdr_plain(),
            &Frame::linear(&f, OffloadMeta::default()),
        ) {
            Err(SendError::NoCarrier) => {}
            r => panic!("expected NoCarrier without a guest, got {r:?}"),
        }
    }
    assert_eq!(port.connections(), (3, 3));
}

#[test]
fn the_socket_is_refused_while_served_and_removed_when_closed() {
    let port = open("owned");
    let path = port.path().to_owned();
    assert!(path.exists());
    let err = VhostUserPort::open("again", config(path.clone())).expect_err("second backend");
    assert!(err.to_string().contains("another backend"), "{err}");
    drop(port);
    assert!(!path.exists(), "the socket is removed with the port");
    // A regular file is never replaced.
    std::fs::write(&path, b"not a socket").expect("write file");
    let err = VhostUserPort::open("file", config(path.clone())).expect_err("not a socket");
    assert!(err.to_string().contains("not a socket"), "{err}");
    std::fs::remove_file(&path).expect("cleanup");
}

/// Set up a guest and wait until the port took one frame (so the rings are known).
fn connected(tag: &str) -> (VhostUserPort, FakeGuest, RecvBufs) {
    let mut port = open(tag);
    let mut g = FakeGuest::connect(port.path(), ALL, 1, 64).expect("guest");
    let mut bufs = RecvBufs::new(64, pvnet_linux::port::DEFAULT_SLOT_LEN);
    g.send_frame(&hdr_plain(), &frame(100, 0), 4096);
    assert_eq!(recv(&mut port, &mut bufs, 1).len(), 1);
    assert_eq!(g.wait_used(1, 1, SECOND).len(), 1);
    (port, g, bufs)
}

/// After a hostile chain, a good frame still crosses (the queue was not wedged).
fn still_works(port: &mut VhostUserPort, g: &mut FakeGuest, bufs: &mut RecvBufs) {
    let f = frame(300, 77);
    g.send_frame(&hdr_plain(), &f, 4096);
    let got = recv(port, bufs, 1);
    assert_eq!(got.len(), 1, "a good frame after the bad one");
    assert_eq!(got[0].1, f);
}

fn count(port: &VhostUserPort, cause: &str) -> u64 {
    port.chain_errors()
        .snapshot()
        .iter()
        .find(|(c, _)| *c == cause)
        .map(|(_, n)| *n)
        .expect("known cause")
}

#[test]
fn a_descriptor_outside_guest_memory_is_refused() {
    let (mut port, mut g, mut bufs) = connected("oom");
    for addr in [
        pvnet_linux::vhost_user::guest::MEM_SIZE - 10,
        u64::MAX - 5,
        1 << 40,
    ] {
        g.offer(
            1,
            10,
            &[Desc {
                addr,
                len: 100,
                flags: 0,
                next: 0,
            }],
        );
        g.kick(1);
    }
    assert!(recv(&mut port, &mut bufs, 1).is_empty());
    assert_eq!(count(&port, "outside_memory"), 3);
    assert_eq!(port.take_rx_drops(), 3);
    // Returned to the guest, unused.
    assert_eq!(g.wait_used(1, 3, SECOND), vec![(10, 0); 3]);
    still_works(&mut port, &mut g, &mut bufs);
}

#[test]
fn a_looping_or_dangling_chain_is_refused() {
    let (mut port, mut g, mut bufs) = connected("loop");
    let a = g.alloc(64);
    // 20 → 21 → 20 → …
    g.offer(
        1,
        20,
        &[
            Desc {
                addr: a,
                len: 16,
                flags: F_NEXT,
                next: 21,
            },
            Desc {
                addr: a,
                len: 16,
                flags: F_NEXT,
                next: 20,
            },
        ],
    );
    // next past the table (queue size 64).
    g.offer(
        1,
        30,
        &[Desc {
            addr: a,
            len: 16,
            flags: F_NEXT,
            next: 500,
        }],
    );
    // A head index past the table.
    g.make_available(1, 9999);
    // An indirect table whose length is not a multiple of 16.
    g.offer(
        1,
        40,
        &[Desc {
            addr: a,
            len: 17,
            flags: F_INDIRECT,
            next: 0,
        }],
    );
    g.kick(1);
    assert!(recv(&mut port, &mut bufs, 1).is_empty());
    assert_eq!(count(&port, "broken_chain"), 4);
    still_works(&mut port, &mut g, &mut bufs);
}

#[test]
fn lengths_that_overflow_or_exceed_a_frame_are_refused() {
    let (mut port, mut g, mut bufs) = connected("len");
    let a = g.alloc(64);
    g.offer(
        1,
        10,
        &[
            Desc {
                addr: a,
                len: u32::MAX,
                flags: F_NEXT,
                next: 11,
            },
            Desc {
                addr: a,
                len: u32::MAX,
                flags: 0,
                next: 0,
            },
        ],
    );
    // 17 × 4096 + … more than a 64 KiB slot, all inside memory.
    let big = g.alloc(70_000);
    g.offer(
        1,
        20,
        &[Desc {
            addr: big,
            len: 70_000,
            flags: 0,
            next: 0,
        }],
    );
    // Shorter than the header.
    g.offer(
        1,
        30,
        &[Desc {
            addr: a,
            len: 6,
            flags: 0,
            next: 0,
        }],
    );
    // A device-writable descriptor in a transmit chain.
    g.offer(
        1,
        40,
        &[Desc {
            addr: a,
            len: 60,
            flags: F_WRITE,
            next: 0,
        }],
    );
    g.kick(1);
    assert!(recv(&mut port, &mut bufs, 1).is_empty());
    assert_eq!(count(&port, "too_long"), 2);
    assert_eq!(count(&port, "short"), 1);
    assert_eq!(count(&port, "wrong_direction"), 1);
    still_works(&mut port, &mut g, &mut bufs);
}

#[test]
fn an_avail_index_that_jumps_stops_the_queue() {
    let (mut port, mut g, mut bufs) = connected("jump");
    g.set_avail_idx(1, 1000);
    g.kick(1);
    assert!(recv(&mut port, &mut bufs, 1).is_empty());
    assert_eq!(count(&port, "ring_broken"), 1);
    // Broken until the driver resets (here: a new connection).
    g.disconnect();
    let mut g = FakeGuest::connect(port.path(), ALL, 1, 64).expect("guest again");
    g.send_frame(&hdr_plain(), &frame(100, 1), 4096);
    assert_eq!(recv(&mut port, &mut bufs, 1).len(), 1);
}

#[test]
fn hostile_receive_chains_are_returned_empty() {
    let (mut port, mut g, _bufs) = connected("rxbad");
    // A read-only "receive buffer", then one outside memory, then a good one.
    let a = g.alloc(2048);
    g.offer(
        0,
        50,
        &[Desc {
            addr: a,
            len: 2048,
            flags: 0,
            next: 0,
        }],
    );
    g.offer(
        0,
        51,
        &[Desc {
            addr: 1 << 40,
            len: 2048,
            flags: F_WRITE,
            next: 0,
        }],
    );
    g.offer(
        0,
        52,
        &[Desc {
            addr: a,
            len: 2048,
            flags: F_WRITE,
            next: 0,
        }],
    );
    g.kick(0);
    let f = frame(500, 8);
    let deadline = Instant::now() + SECOND;
    while sf(
        &mut port,
        &hdr_plain(),
        &Frame::linear(&f, OffloadMeta::default()),
    )
    .is_err()
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(2));
    }
    let used = g.wait_used(0, 3, SECOND);
    assert_eq!(used, vec![(50, 0), (51, 0), (52, 12 + 500)]);
    assert_eq!(&g.read(a + 12, 500), &f);
    // Counted by what was wrong with them.
    assert_eq!(count(&port, "wrong_direction"), 1);
    assert_eq!(count(&port, "outside_memory"), 1);
    assert_eq!(count(&port, "broken_chain"), 0);
}

/// Whether the fd the switch waits on for `port` becomes readable within `timeout`.
fn wakes(port: &VhostUserPort, timeout: Duration) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    use std::os::fd::AsFd;
    let fd = port.as_fd();
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let ts = Timespec {
        tv_sec: timeout.as_secs() as _,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    poll(&mut fds, Some(&ts)).expect("poll") == 1
}

#[test]
fn a_kick_wakes_the_port_and_one_from_a_disabled_ring_is_not_lost() {
    let (mut port, mut g, mut bufs) = connected("kicks");
    // Drained: the port sleeps until the guest kicks.
    while port.recv_batch(&mut bufs).expect("recv") > 0 {}
    assert!(!wakes(&port, Duration::ZERO), "nothing to do, yet woken");
    let f = frame(200, 3);
    g.send_frame(&hdr_plain(), &f, 4096);
    assert!(
        wakes(&port, SECOND),
        "the guest's kick did not wake the port"
    );
    assert_eq!(port.recv_batch(&mut bufs).expect("recv"), 1);
    assert_eq!(bufs.get(0).expect("frame").1, &f[..]);
    while port.recv_batch(&mut bufs).expect("recv") > 0 {}
    assert!(!wakes(&port, Duration::ZERO));
    // A frame and its kick while the ring is disabled: the port may not take it, and
    // clears the kick; enabling the ring wakes it again.
    g.enable_ring(1, false).expect("disable");
    let f = frame(300, 4);
    g.send_frame(&hdr_plain(), &f, 4096);
    assert!(wakes(&port, SECOND));
    assert_eq!(
        port.recv_batch(&mut bufs).expect("recv"),
        0,
        "taken from a disabled ring"
    );
    assert!(!wakes(&port, Duration::from_millis(50)));
    g.enable_ring(1, true).expect("enable");
    assert!(
        wakes(&port, SECOND),
        "enabling the ring did not wake the port"
    );
    let got = recv(&mut port, &mut bufs, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, f);
    // A new kick fd on the live connection: the port waits on it, not the old one.
    while port.recv_batch(&mut bufs).expect("recv") > 0 {}
    assert!(!wakes(&port, Duration::ZERO));
    g.replace_kick(1).expect("new kick fd");
    while port.recv_batch(&mut bufs).expect("recv") > 0 {}
    assert!(!wakes(&port, Duration::ZERO));
    let f = frame(400, 5);
    g.send_frame(&hdr_plain(), &f, 4096);
    assert!(
        wakes(&port, SECOND),
        "a kick on the new fd did not wake the port"
    );
    let got = recv(&mut port, &mut bufs, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, f);
}

/// Memory plugged in at run time (`ADD_MEM_REG`, as QEMU sends for a DIMM), above 4 GiB.
const PLUGGED: u64 = 4 << 30;
const PLUGGED_SIZE: u64 = 16 << 20;

/// Send one frame, waiting for the guest's receive buffers to be there.
#[track_caller]
fn sf_wait(port: &mut VhostUserPort, hdr: &[u8], frame: &Frame<'_>) {
    let deadline = Instant::now() + SECOND;
    loop {
        match sf(port, hdr, frame) {
            Ok(()) => return,
            Err(SendError::WouldBlock | SendError::NoCarrier) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => panic!("send: {e}"),
        }
    }
}

/// Frames of these lengths from the guest, in pieces of `piece` bytes, arrive intact and
/// their chains go back to the guest.
#[track_caller]
fn guest_sends(
    port: &mut VhostUserPort,
    g: &mut FakeGuest,
    bufs: &mut RecvBufs,
    lens: &[usize],
    piece: usize,
) {
    let frames: Vec<Vec<u8>> = lens
        .iter()
        .enumerate()
        .map(|(i, &len)| frame(len, i as u8))
        .collect();
    for f in &frames {
        g.send_frame(&hdr_plain(), f, piece);
    }
    let got = recv(port, bufs, frames.len());
    assert_eq!(
        got.len(),
        frames.len(),
        "every frame arrives ({:?})",
        port.chain_errors().snapshot()
    );
    for (i, (g, f)) in got.iter().zip(&frames).enumerate() {
        assert_eq!(&g.1, f, "frame {i}: every byte");
    }
    assert_eq!(g.wait_used(1, frames.len(), SECOND).len(), frames.len());
}

/// A plain frame and a super-frame over merged buffers from the port reach the guest's
/// posted receive buffers intact.
#[track_caller]
fn port_sends(port: &mut VhostUserPort, g: &mut FakeGuest, seed: u8) {
    let small = frame(1000, seed);
    sf_wait(
        port,
        &hdr_plain(),
        &Frame::linear(&small, OffloadMeta::default()),
    );
    let rx = g.recv_frames(1, SECOND);
    assert_eq!(rx.len(), 1, "the frame arrives");
    assert_eq!(rx[0].1, small);
    let big = frame(8000, seed);
    let pieces: Vec<&[u8]> = big[54..].chunks(3000).collect();
    let f = Frame::new(&big[..54], &pieces, OffloadMeta::default());
    sf_wait(port, &hdr_plain(), &f);
    let rx = g.recv_frames(1, SECOND);
    assert_eq!(rx.len(), 1, "the super-frame arrives");
    assert!(
        u16::from_le_bytes([rx[0].0[10], rx[0].0[11]]) > 1,
        "over merged buffers"
    );
    assert_eq!(rx[0].1, big, "every byte, in order");
}

/// A transmit chain of one descriptor at `addr`, at table index `head`, kicked.
fn offer_tx(g: &mut FakeGuest, head: u16, addr: u64, len: u32) {
    g.offer(
        1,
        head,
        &[Desc {
            addr,
            len,
            flags: 0,
            next: 0,
        }],
    );
    g.kick(1);
}

#[test]
fn buffers_in_memory_added_at_run_time_carry_frames_both_ways() {
    let (mut port, mut g, mut bufs) = connected("memadd");
    // Not there yet: a descriptor pointing at it is outside guest memory.
    offer_tx(&mut g, 40, PLUGGED, 100);
    assert!(recv(&mut port, &mut bufs, 1).is_empty());
    assert_eq!(count(&port, "outside_memory"), 1);
    assert_eq!(g.wait_used(1, 1, SECOND), vec![(40, 0)]);

    g.add_region(PLUGGED, PLUGGED_SIZE).expect("ADD_MEM_REG");
    g.use_buffers_in(PLUGGED..PLUGGED + PLUGGED_SIZE);
    guest_sends(
        &mut port,
        &mut g,
        &mut bufs,
        &[60, 1500, 9000, 65_000],
        4096,
    );
    // One chain over both regions: the header in the first memory, the frame in the new.
    let f = frame(700, 42);
    let (h, a) = (g.alloc(12), g.alloc(700));
    let h = h - PLUGGED; // the same offset, in the first region
    g.write(h, &hdr_plain());
    g.write(a, &f);
    g.offer(
        1,
        40,
        &[
            Desc {
                addr: h,
                len: 12,
                flags: F_NEXT,
                next: 41,
            },
            Desc {
                addr: a,
                len: 700,
                flags: 0,
                next: 0,
            },
        ],
    );
    g.kick(1);
    let got = recv(&mut port, &mut bufs, 1);
    assert_eq!(got.len(), 1, "a chain over two regions arrives");
    assert_eq!(got[0].1, f);
    assert_eq!(g.wait_used(1, 1, SECOND), vec![(40, 0)]);

    // Receive buffers in the new region.
    g.post_rx(32, 1536);
    port_sends(&mut port, &mut g, 1);
    assert_eq!(g.short_rx_buffers(), 0);
    assert_eq!(count(&port, "outside_memory"), 1, "nothing refused since");
    assert_eq!(count(&port, "broken_chain"), 0);
}

#[test]
fn buffers_in_memory_removed_at_run_time_are_refused_and_the_rest_works() {
    let (mut port, mut g, mut bufs) = connected("memrem");
    g.add_region(PLUGGED, PLUGGED_SIZE).expect("ADD_MEM_REG");
    g.use_buffers_in(PLUGGED..PLUGGED + PLUGGED_SIZE);
    guest_sends(&mut port, &mut g, &mut bufs, &[800], 4096);
    g.post_rx(8, 1536);
    port_sends(&mut port, &mut g, 2);
    assert_eq!(g.short_rx_buffers(), 0);

    g.remove_region(PLUGGED).expect("REM_MEM_REG");
    // A driver that still points at unplugged memory is broken, as one pointing past
    // its memory is: neither virtio nor vhost-user makes that the device's failure (QEMU
    // unplugs a DIMM only once the guest has offlined it). Each such chain is refused,
    // counted and returned unused, as any chain outside guest memory; the queue goes on.
    // Transmit: a chain all in the removed region, one with only its frame there.
    offer_tx(&mut g, 40, PLUGGED + 0x1000, 300);
    g.use_buffers_in(pvnet_linux::vhost_user::guest::BUFFERS);
    let h = g.alloc(12);
    g.write(h, &hdr_plain());
    g.offer(
        1,
        42,
        &[
            Desc {
                addr: h,
                len: 12,
                flags: F_NEXT,
                next: 43,
            },
            Desc {
                addr: PLUGGED + 0x2000,
                len: 300,
                flags: 0,
                next: 0,
            },
        ],
    );
    g.kick(1);
    assert!(recv(&mut port, &mut bufs, 1).is_empty());
    assert_eq!(count(&port, "outside_memory"), 2);
    assert_eq!(port.take_rx_drops(), 2);
    assert_eq!(g.wait_used(1, 2, SECOND), vec![(40, 0), (42, 0)]);
    still_works(&mut port, &mut g, &mut bufs);

    // Receive: the eight buffers posted in the removed region are refused and returned
    // empty; with nothing else posted the port is busy, not broken.
    let f = frame(900, 3);
    for _ in 0..3 {
        match sf(
            &mut port,
            &hdr_plain(),
            &Frame::linear(&f, OffloadMeta::default()),
        ) {
            Err(SendError::WouldBlock) => {}
            r => panic!("expected WouldBlock, got {r:?}"),
        }
    }
    assert_eq!(
        count(&port, "outside_memory"),
        2 + 8,
        "each refused buffer counted once, however often the port tried"
    );
    // Two good buffers, one in the removed region, eight good. The small frame takes
    // the first; the super-frame the second, then meets the bad one: the driver reads a
    // frame's buffers as consecutive used entries, so the one already filled goes back
    // empty too and the frame starts over after the bad one.
    g.post_rx(2, 1536);
    g.use_buffers_in(PLUGGED..PLUGGED + PLUGGED_SIZE);
    g.post_rx(1, 1536);
    g.use_buffers_in(pvnet_linux::vhost_user::guest::BUFFERS);
    g.post_rx(8, 1536);
    port_sends(&mut port, &mut g, 4);
    assert_eq!(
        g.short_rx_buffers(),
        8 + 2,
        "the refused buffers, and the one filled before the last, came back empty"
    );
    assert_eq!(count(&port, "outside_memory"), 2 + 8 + 1);
    assert_eq!(count(&port, "broken_chain"), 0);
    assert_eq!(count(&port, "ring_broken"), 0);
}

#[test]
fn a_new_memory_table_replaces_the_old_one_while_frames_flow() {
    let (mut port, mut g, mut bufs) = connected("memset");
    // What one port_sends takes (a frame, then a super-frame in six buffers): each one
    // below fills the buffers the one before refilled.
    g.post_rx(7, 1536);
    port_sends(&mut port, &mut g, 5);
    g.add_region(PLUGGED, PLUGGED_SIZE).expect("ADD_MEM_REG");
    g.use_buffers_in(PLUGGED..PLUGGED + PLUGGED_SIZE);
    guest_sends(&mut port, &mut g, &mut bufs, &[500], 4096);

    // A new table: the first 64 MiB in two regions of a new memfd (the rings and the
    // posted receive buffers in it, carried over), 16 MiB at 8 GiB, and the plugged
    // region gone. The old memory is overwritten: the port must read the new one.
    const MOVED: u64 = 8 << 30;
    const MOVED_SIZE: u64 = 16 << 20;
    let half = pvnet_linux::vhost_user::guest::MEM_SIZE / 2;
    g.replace_memory(&[(0, half), (half, half), (MOVED, MOVED_SIZE)])
        .expect("SET_MEM_TABLE");
    // Receive buffers posted before the change, then buffers across the boundary of the
    // two new regions, then in the region at 8 GiB.
    g.use_buffers_in(half - 3000..2 * half);
    guest_sends(&mut port, &mut g, &mut bufs, &[9000, 1000], 65_536);
    port_sends(&mut port, &mut g, 6);
    g.use_buffers_in(MOVED..MOVED + MOVED_SIZE);
    guest_sends(&mut port, &mut g, &mut bufs, &[1400, 65_000], 4096);
    port_sends(&mut port, &mut g, 7);
    assert_eq!(g.rx_posted_in(MOVED..MOVED + MOVED_SIZE), 7);
    port_sends(&mut port, &mut g, 8);
    assert_eq!(count(&port, "outside_memory"), 0);

    // The plugged region went with the old table...
    offer_tx(&mut g, 60, PLUGGED, 100);
    assert!(recv(&mut port, &mut bufs, 1).is_empty());
    assert_eq!(count(&port, "outside_memory"), 1);
    assert_eq!(g.wait_used(1, 1, SECOND), vec![(60, 0)]);
    // ...and comes back when it is added again.
    g.add_region(PLUGGED, PLUGGED_SIZE)
        .expect("ADD_MEM_REG again");
    g.use_buffers_in(PLUGGED..PLUGGED + PLUGGED_SIZE);
    guest_sends(&mut port, &mut g, &mut bufs, &[600], 4096);
    assert_eq!(count(&port, "outside_memory"), 1);
    assert_eq!(count(&port, "ring_broken"), 0);
}

/// A port of two queue pairs: a handle on each.
fn open_pairs(tag: &str) -> Vec<VhostUserPort> {
    let cfg = VhostUserConfig {
        pairs: 2,
        ..config(sock(tag))
    };
    VhostUserPort::open(tag, cfg).expect("open vhost-user port")
}

/// Send `f` on `port` and flush, retrying while the rings have not reached the port yet
/// (they do with the guest's first kick).
fn send_when_ready(port: &mut dyn Port, f: &[u8]) {
    let deadline = Instant::now() + SECOND;
    loop {
        match sf(
            port,
            &hdr_plain(),
            &Frame::linear(f, OffloadMeta::default()),
        ) {
            Ok(()) => return,
            Err(SendError::NoCarrier) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => panic!("send: {e}"),
        }
    }
}

/// Which of `sent` each frame of `got` is (`None`: none of them).
fn which(sent: &[Vec<u8>], got: &[(Vec<u8>, Vec<u8>)]) -> Vec<Option<usize>> {
    got.iter()
        .map(|(_, f)| sent.iter().position(|s| s == f))
        .collect()
}

/// The switch's threads each send to a port through a handle of their own: with two queue
/// pairs the handles take the pairs in turn, so the guest receives on both receive
/// queues (each one interrupted), and nothing lands on a queue it did not come to.
#[test]
fn sender_handles_take_the_receive_queues_in_turn() {
    let ports = open_pairs("mqsend");
    let mut g = FakeGuest::connect(ports[0].path(), ALL, 2, 64).expect("guest");
    assert_ne!(g.acked() & virtio_net::MQ, 0, "the guest negotiated MQ");
    g.post_rx_on(0, 8, 2048);
    g.post_rx_on(2, 8, 2048);
    let mut handles: Vec<Box<dyn Port + Send>> = (0..3)
        .map(|_| {
            ports[0]
                .try_clone_sender()
                .expect("clone")
                .expect("a sender")
        })
        .collect();
    let sent: Vec<Vec<u8>> = (0..3u8).map(|k| frame(200, 40 + k)).collect();
    for (h, f) in handles.iter_mut().zip(&sent) {
        send_when_ready(h.as_mut(), f);
    }
    // Handles 0 and 2 fill pair 0's receive queue, handle 1 pair 1's.
    let q0 = g.recv_frames_on(0, 2, SECOND);
    let q2 = g.recv_frames_on(2, 1, SECOND);
    assert_eq!(which(&sent, &q0), [Some(0), Some(2)], "receive queue 0");
    assert_eq!(which(&sent, &q2), [Some(1)], "receive queue 2 (pair 1)");
    assert!(
        g.called(2),
        "the guest was interrupted on pair 1's receive queue"
    );
    assert!(g.recv_frames_on(0, 1, Duration::from_millis(50)).is_empty());
}

/// A guest that set up one pair of the two the port offers (a driver before `ethtool -L
/// eth0 combined 2`): every sender handle fills pair 0's receive queue.
#[test]
fn sender_handles_fall_back_to_pair_0_while_the_guest_uses_one() {
    let ports = open_pairs("mqfall");
    let mut g = FakeGuest::connect(ports[0].path(), ALL, 1, 64).expect("guest");
    g.post_rx_on(0, 8, 2048);
    let sent: Vec<Vec<u8>> = (0..2u8).map(|k| frame(300, 60 + k)).collect();
    for f in &sent {
        let mut h = ports[0]
            .try_clone_sender()
            .expect("clone")
            .expect("a sender");
        send_when_ready(h.as_mut(), f);
    }
    let q0 = g.recv_frames_on(0, 2, SECOND);
    assert_eq!(which(&sent, &q0), [Some(0), Some(1)]);
}

#[test]
fn a_polling_port_takes_frames_without_kicks() {
    let tag = "poll";
    let cfg = VhostUserConfig {
        poll: true,
        ..config(sock(tag))
    };
    let mut port = VhostUserPort::open(tag, cfg).expect("open").remove(0);
    let mut g = FakeGuest::connect(port.path(), ALL, 1, 64).expect("guest");
    let mut bufs = RecvBufs::new(64, pvnet_linux::port::DEFAULT_SLOT_LEN);
    // The first frame's kick hands the rings over.
    g.send_frame(&hdr_plain(), &frame(100, 0), 4096);
    assert_eq!(recv(&mut port, &mut bufs, 1).len(), 1);
    // From then on the port keeps the switch calling it, with or without frames.
    for _ in 0..3 {
        assert_eq!(port.recv_batch(&mut bufs).expect("recv"), 0);
        assert!(wakes(&port, Duration::ZERO), "a polling port went to sleep");
    }
    // A frame made available with no kick at all is taken.
    let f = frame(300, 6);
    let bytes = [&hdr_plain()[..], &f[..]].concat();
    let at = g.alloc(bytes.len() as u64);
    g.write(at, &bytes);
    g.offer(
        1,
        40,
        &[Desc {
            addr: at,
            len: bytes.len() as u32,
            flags: 0,
            next: 0,
        }],
    );
    let got = recv(&mut port, &mut bufs, 1);
    assert_eq!(got.len(), 1, "the port did not poll the ring");
    assert_eq!(got[0].1, f);
}

#[test]
fn a_queue_broken_by_its_driver_works_again_after_the_driver_resets_it() {
    let (mut port, mut g, mut bufs) = connected("reset");
    // The avail index jumps past the queue size: the queue is stopped.
    g.set_avail_idx(1, 1000);
    g.kick(1);
    assert!(recv(&mut port, &mut bufs, 1).is_empty());
    assert_eq!(count(&port, "ring_broken"), 1);
    let f = frame(200, 8);
    g.restart_ring(1).expect("restart the ring");
    g.send_frame(&hdr_plain(), &f, 4096);
    let got = recv(&mut port, &mut bufs, 1);
    assert_eq!(got.len(), 1, "the reset queue still refuses frames");
    assert_eq!(got[0].1, f);
    assert_eq!(g.wait_used(1, 1, SECOND).len(), 1);
    assert_eq!(count(&port, "ring_broken"), 1, "counted once");
}
