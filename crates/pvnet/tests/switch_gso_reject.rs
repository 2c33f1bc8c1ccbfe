//! A port whose kernel refuses GSO writes at run time: the switch turns that offload off
//! on the port and segments instead, losing nothing.

mod switch_util;

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use pvnet::switch::lab::{Lab, LabOptions};
use pvnet_core::frame::Frame;
use pvnet_core::offload::features::Features;
use pvnet_core::switch::counters::PortCounters;
use pvnet_core::wire::Start;
use pvnet_linux::port::{Port, RecvBufs, SendError};

/// Passes everything to the real port but refuses every GSO frame with `EINVAL`, as an
/// old or vendor kernel would.
struct RejectGso {
    inner: Box<dyn Port + Send>,
}

impl AsFd for RejectGso {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl Port for RejectGso {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn features(&self) -> Features {
        self.inner.features()
    }
    fn set_features(&mut self, f: Features) -> io::Result<()> {
        self.inner.set_features(f)
    }
    fn start(&self) -> Start {
        self.inner.start()
    }
    fn vnet_hdr_len(&self) -> usize {
        self.inner.vnet_hdr_len()
    }
    fn recv_batch(&mut self, bufs: &mut RecvBufs) -> io::Result<usize> {
        self.inner.recv_batch(bufs)
    }
    fn send(&mut self, hdr: &[u8], frame: &Frame<'_>) -> Result<(), SendError> {
        let gso_type = hdr.get(1).copied().unwrap_or(0);
        if gso_type & 0x7f != 0 {
            return Err(SendError::classify(
                io::Error::from_raw_os_error(libc::EINVAL),
                hdr,
            ));
        }
        self.inner.send(hdr, frame)
    }
}

/// A lab whose port 1 refuses GSO writes, with `offload` on the two ports; a 4 MiB TCP
/// transfer from port 0 over IPv4 and IPv6 must arrive intact. Returns the final counters
/// of ports 0 and 1, after checking that port 1 refused super-frames, segmented instead,
/// sent no super-frame and its namespace saw no checksum error.
fn transfer_to_a_port_that_rejects_gso(offload: [Option<String>; 2]) -> [PortCounters; 2] {
    switch_util::require_root();
    let mut lab = Lab::start(LabOptions {
        offload,
        wrap: Some(Box::new(|i, q| {
            if i == 1 {
                Box::new(RejectGso { inner: q })
            } else {
                q
            }
        })),
        ..LabOptions::default()
    })
    .expect("lab");
    for v6 in [false, true] {
        let t = lab.tcp(0, v6, 4 << 20, Duration::ZERO, None).expect("tcp");
        assert!(
            t.intact && t.received == 4 << 20,
            "transfer lost data: {t:?}"
        );
    }
    let stats = lab.stop().expect("stop");
    let rx = switch_util::port(&stats, 1);
    assert!(rx.gso_rejected > 0, "no rejection seen: {stats:?}");
    assert!(rx.segments > 0, "nothing segmented: {stats:?}");
    assert_eq!(rx.gso_tx, 0);
    assert_eq!(lab.csum_errors(1).expect("nstat"), (0, 0));
    [switch_util::port(&stats, 0), rx]
}

#[test]
fn rejected_gso_writes_fall_back_to_segmentation() {
    transfer_to_a_port_that_rejects_gso([None, None]);
}

/// Wire-sized frames from an `offload=none` port are coalesced (gathered, not copied) for
/// a port that announces TSO; when that port refuses the writev of the gathered
/// super-frame, the switch copies it into one buffer and segments it instead.
#[test]
fn rejected_gathered_super_frames_are_segmented() {
    let [tx, _] = transfer_to_a_port_that_rejects_gso([Some("none".into()), None]);
    assert!(tx.gro_coalesced > 0, "nothing coalesced: {tx:?}");
}
