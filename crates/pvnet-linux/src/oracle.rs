//! The Linux kernel as a segmentation and checksum oracle.
//!
//! [`KernelGso`] builds, in a namespace of its own, two taps joined by a bridge:
//!
//! ```text
//!   write(vnet hdr + super-frame) ─► tap "in" ─► bridge "br0" ─► tap "out" ─► read(frames)
//! ```
//!
//! The bridge floods the frame (learning is off, so no address is ever known) to `out`;
//! on the way out the kernel adapts it to what `out` declared with `TUNSETOFFLOAD`: with
//! no offloads it segments a GSO frame and completes every checksum, with `CSUM` only it
//! segments but leaves partial checksums (NEEDS_CSUM headers), with TSO/USO it passes the
//! super-frame through. What comes out is what pvnet's own GSO must produce.
//!
//! With 24-byte headers ([`KernelGso::with_hdr_len`]) the `in` tap takes UDP tunnel
//! super-frames (Linux 6.17+ reads the tunnel offsets of every write with a header that
//! long), and an `out` tap without `TUN_F_UDP_TUNNEL_GSO` gets them segmented.
//!
//! Noise: IPv6 is disabled in the namespace before any device exists (no link-local
//! addresses, so no DAD, router or MLD traffic), the devices get `addrgenmode none`, the
//! bridge runs without STP and multicast snooping, and nothing has an IPv4 address. As a
//! last line, frames whose Ethernet addresses differ from the written frame's are dropped.
//!
//! What the frames must look like to be forwarded (plain bridge rules): a unicast source
//! MAC that is not all-zero; a destination that is not one of [`DEVICE_MACS`] (those are
//! delivered to the bridge itself) nor a link-local group `01:80:c2:00:00:0x` (never
//! forwarded). Locally administered addresses such as `02:00:00:00:00:01` are ideal.

use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::netns::Netns;
use crate::sys;
use crate::tap::{offload, Tap, TapOptions};

/// Size of the virtio_net_hdr used on both taps by [`KernelGso::new`] (with num_buffers).
pub const VNET_HDR_LEN: usize = 12;

/// Size of the virtio_net_hdr with the UDP tunnel offsets.
pub const TUNNEL_HDR_LEN: usize = offload::TUNNEL_HDR_LEN;

/// Offloads of the `in` tap: everything the kernel may be handed.
pub const IN_OFFLOADS: u32 = offload::CSUM
    | offload::TSO4
    | offload::TSO6
    | offload::TSO_ECN
    | offload::USO4
    | offload::USO6;

/// Fixed MAC addresses of `br0`, `in` and `out` (without them the bridge takes the lowest
/// random port address, which a test frame could hit by chance).
pub const DEVICE_MACS: [(&str, &str); 3] = [
    ("br0", "06:70:76:00:00:01"),
    ("in", "06:70:76:00:00:02"),
    ("out", "06:70:76:00:00:03"),
];

/// Largest frame a tap can return, plus its header, with room to spare.
const READ_BUF_LEN: usize = 65_536 + 4096;

/// One frame read from `out`: its vnet header (12 or 24 bytes) and the frame.
pub type OracleFrame = (Vec<u8>, Vec<u8>);

/// A tap → bridge → tap path inside a private namespace. Fields drop in order: the taps
/// close before the namespace is deleted.
#[derive(Debug)]
pub struct KernelGso {
    input: Tap,
    output: Tap,
    ns: Netns,
    buf: Vec<u8>,
    idle: Duration,
    expect_timeout: Duration,
    foreign: u64,
    hdr_len: usize,
}

impl KernelGso {
    /// Build the namespace, taps and bridge. `out_offloads` are the `TUN_F_*` bits of the
    /// `out` tap, i.e. what the kernel may leave undone for us (0: segment and checksum
    /// everything).
    pub fn new(out_offloads: u32) -> io::Result<KernelGso> {
        Self::with_hdr_len(VNET_HDR_LEN, out_offloads)
    }

    /// [`KernelGso::new`] with vnet headers of `hdr_len` bytes (10, 12 or 24) on both taps:
    /// 24 for UDP tunnel super-frames, and for an `out` tap whose `out_offloads` have the
    /// tunnel bits.
    pub fn with_hdr_len(hdr_len: usize, out_offloads: u32) -> io::Result<KernelGso> {
        let ns = Netns::create_unique("pvt")?;

        // Before any device exists, so none of them ever gets an IPv6 address.
        ns.disable_ipv6()?;

        ns.run(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "mcast_snooping",
            "0",
        ])?;

        let open = |name: &str, offloads: u32| {
            let opts = TapOptions {
                name: name.to_owned(),
                tun: false,
                vnet_hdr: true,
                vnet_hdr_len: hdr_len,
                multi_queue: false,
                offloads,
            };
            ns.enter_and(|| Tap::open(&opts))?
        };
        let input = open("in", IN_OFFLOADS)?;
        let output = open("out", out_offloads)?;
        output.set_nonblocking(true)?;

        for (dev, mac) in DEVICE_MACS {
            ns.run(&["link", "set", "dev", dev, "address", mac])?;
            ns.run(&["link", "set", "dev", dev, "addrgenmode", "none"])?;
        }
        for port in ["in", "out"] {
            ns.run(&["link", "set", "dev", port, "master", "br0"])?;
            ns.run(&[
                "link",
                "set",
                "dev",
                port,
                "type",
                "bridge_slave",
                "learning",
                "off",
                "flood",
                "on",
            ])?;
        }
        for dev in ["br0", "in", "out"] {
            ns.run(&["link", "set", "dev", dev, "up"])?;
        }

        Ok(KernelGso {
            input,
            output,
            ns,
            buf: vec![0; READ_BUF_LEN],
            idle: Duration::from_millis(200),
            expect_timeout: Duration::from_secs(2),
            foreign: 0,
            hdr_len,
        })
    }

    /// The namespace holding the taps and bridge (for `ip -n`, `nstat`, …).
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// The `TUN_F_*` bits in force on the `out` tap.
    pub fn out_offloads(&self) -> u32 {
        self.output.offloads()
    }

    /// Change what the `out` tap accepts (device-wide, takes effect for the next frame).
    pub fn set_out_offloads(&self, bits: u32) -> io::Result<()> {
        self.output.set_offload(bits)
    }

    /// Frames read from `out` that were not ours (left over from an earlier write, or
    /// anything the kernel sent by itself) and were dropped. Stays 0 when the setup is quiet.
    pub fn foreign_frames(&self) -> u64 {
        self.foreign
    }

    /// How long [`KernelGso::segment`] waits after the write and after each frame (200 ms).
    pub fn set_idle_timeout(&mut self, idle: Duration) {
        self.idle = idle;
    }

    /// How long [`KernelGso::segment_expect`] waits in total (2 s).
    pub fn set_expect_timeout(&mut self, timeout: Duration) {
        self.expect_timeout = timeout;
    }

    /// Write `vnet_hdr` + `frame` into `in` and append every frame that comes out of `out`
    /// until nothing more arrives for the idle timeout. A write error is returned as the
    /// kernel gave it (`EINVAL`: the kernel rejected the header or frame).
    pub fn segment(
        &mut self,
        vnet_hdr: &[u8],
        frame: &[u8],
        out: &mut Vec<OracleFrame>,
    ) -> io::Result<()> {
        self.send(vnet_hdr, frame)?;
        let key = addr_key(frame);
        let mut deadline = Instant::now() + self.idle;
        loop {
            if self.read_matching(&key, out)? {
                deadline = Instant::now() + self.idle;
                continue;
            }
            let now = Instant::now();
            if now >= deadline || !self.wait(deadline - now)? {
                return Ok(());
            }
        }
    }

    /// Like [`KernelGso::segment`], but return as soon as `expected_count` frames arrived;
    /// `TimedOut` (with the frames seen so far appended) if they do not arrive within the
    /// expect timeout. Frames beyond the count are discarded before the next write.
    pub fn segment_expect(
        &mut self,
        vnet_hdr: &[u8],
        frame: &[u8],
        expected_count: usize,
        out: &mut Vec<OracleFrame>,
    ) -> io::Result<()> {
        self.send(vnet_hdr, frame)?;
        let key = addr_key(frame);
        let start = out.len();
        let deadline = Instant::now() + self.expect_timeout;
        while out.len() - start < expected_count {
            if self.read_matching(&key, out)? {
                continue;
            }
            let now = Instant::now();
            if now >= deadline || !self.wait(deadline - now)? {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "kernel oracle: {} of {expected_count} frames after {:?}",
                        out.len() - start,
                        self.expect_timeout
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Bytes of vnet header on both taps.
    pub fn hdr_len(&self) -> usize {
        self.hdr_len
    }

    /// Drop whatever is queued on `out`, then write the frame into `in`.
    fn send(&mut self, vnet_hdr: &[u8], frame: &[u8]) -> io::Result<()> {
        if vnet_hdr.len() != self.hdr_len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "kernel oracle: a {}-byte vnet header for taps that take {}",
                    vnet_hdr.len(),
                    self.hdr_len
                ),
            ));
        }
        loop {
            match self.output.read(&mut self.buf) {
                Ok(_) => self.foreign += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(sys::with_context(e, "kernel oracle: drain out")),
            }
        }
        let written = self
            .input
            .writev(&[IoSlice::new(vnet_hdr), IoSlice::new(frame)])?;
        if written != self.hdr_len + frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "kernel oracle: short write {written} of {}",
                    self.hdr_len + frame.len()
                ),
            ));
        }
        Ok(())
    }

    /// Read one frame from `out` if one is queued. Returns whether one of ours was appended;
    /// `Ok(false)` also when nothing was queued (the caller then waits).
    fn read_matching(&mut self, key: &[u8], out: &mut Vec<OracleFrame>) -> io::Result<bool> {
        loop {
            let n = match self.output.read(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(sys::with_context(e, "kernel oracle: read out")),
            };
            let ours = self
                .buf
                .get(..n)
                .filter(|p| p.len() >= self.hdr_len)
                .map(|p| p.split_at(self.hdr_len))
                .filter(|(_, frame)| frame.get(..key.len()) == Some(key));
            let Some((hdr, frame)) = ours else {
                self.foreign += 1;
                continue;
            };
            out.push((hdr.to_vec(), frame.to_vec()));
            return Ok(true);
        }
    }

    /// Wait until `out` is readable or `timeout` passes; `Ok(false)` on timeout.
    fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let ms = libc::c_int::try_from(timeout.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        let mut pfd = libc::pollfd {
            fd: self.output.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one valid pollfd, borrowed mutably for the call; nfds is 1.
        let ret = unsafe { libc::poll(&mut pfd, 1, ms) };
        match sys::cvt(ret) {
            Ok(n) => Ok(n > 0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(sys::with_context(e, "kernel oracle: poll out")),
        }
    }
}

/// The destination and source MAC addresses of a frame: how ours are told from others.
fn addr_key(frame: &[u8]) -> Vec<u8> {
    frame.get(..12).unwrap_or(frame).to_vec()
}
