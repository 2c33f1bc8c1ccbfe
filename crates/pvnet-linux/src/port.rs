//! The switch's view of a port: receive batches of (vnet header, frame), send one frame
//! with its vnet header, declare the transmit features, expose an fd for epoll.
//!
//! Headers travel as raw bytes (`&[u8]` of [`Port::vnet_hdr_len`] bytes, little-endian
//! virtio_net_hdr layout, 24 bytes with the UDP tunnel offsets on a tap that takes tunnel
//! super-frames): decoding and validation belong to the core's vnet codec, which
//! the switch loop calls between [`Port::recv_batch`] and `xmit_action`. That keeps the
//! drivers free of policy and lets the codec be plugged in without touching them.
//!
//! Run-time fallback: a kernel may refuse a GSO frame it should take (an old or vendor
//! kernel, a device that lost an offload). [`SendError::GsoRejected`] reports exactly
//! that case, so the switch can drop the offload from the port's features
//! ([`Port::set_features`]) and resend the frame segmented instead of losing it.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use pvnet_core::frame::{Frame, FrameError};
use pvnet_core::offload::features::Features;
use pvnet_core::wire::Start;

use crate::sys;
use crate::tap::Tap;

/// Most iovecs one frame may be sent from (header included): a segment is a header block
/// plus payload slices, a super-frame at most 17 pages plus headers.
pub const MAX_IOV: usize = 64;

/// Offset of gso_type in a virtio_net_hdr.
const GSO_TYPE_OFFSET: usize = 1;

/// Why a send failed.
#[derive(Debug)]
pub enum SendError {
    /// Non-blocking port with a full queue: retry after `EPOLLOUT`, or drop and count.
    WouldBlock,
    /// The kernel refused a GSO frame (`EINVAL` with a GSO type in the header): disable
    /// this GSO type on the port and resend the frame segmented.
    GsoRejected { gso_type: u8, source: io::Error },
    /// The kernel refused a non-GSO frame (`EINVAL`): bad header or frame; drop it.
    Invalid(io::Error),
    /// Frame larger than the port takes (`EMSGSIZE`).
    TooBig(io::Error),
    /// The frame is in more slices than one send can gather ([`MAX_IOV`] with the
    /// header): send it again as one buffer. Nothing was sent.
    TooManySlices {
        /// Slices of the frame.
        slices: usize,
    },
    /// The port has nobody to take the frame (a vhost-user port with no VM connected,
    /// or whose receive queue is not set up): dropped, counted as no carrier.
    NoCarrier,
    /// Any other error (device gone, …).
    Io(io::Error),
}

/// Frames a port took in [`Port::send`] but left for [`Port::flush`] to deliver, and
/// that could not be delivered then, by cause. The switch counted them as sent; it takes
/// them back out of its transmit counts and counts them as drops of these causes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LateDrops {
    /// No receive buffer was free, as [`SendError::WouldBlock`].
    pub busy: u64,
    /// Longer than the buffer it would have gone in, as [`SendError::TooBig`].
    pub too_big: u64,
    /// The peer went away or its queue broke, as [`SendError::NoCarrier`].
    pub no_carrier: u64,
    /// The frames' lengths (without a vnet header), as the switch counted them.
    pub bytes: u64,
}

impl LateDrops {
    /// Frames dropped, whatever the cause.
    pub fn frames(&self) -> u64 {
        self.busy + self.too_big + self.no_carrier
    }

    pub fn is_empty(&self) -> bool {
        self.frames() == 0
    }

    /// Add `o`'s drops to these.
    pub fn add(&mut self, o: LateDrops) {
        self.busy += o.busy;
        self.too_big += o.too_big;
        self.no_carrier += o.no_carrier;
        self.bytes += o.bytes;
    }
}

impl SendError {
    /// Classify a send error, given the vnet header that was sent (empty without one).
    pub fn classify(err: io::Error, vnet_hdr: &[u8]) -> SendError {
        let gso_type = vnet_hdr.get(GSO_TYPE_OFFSET).copied().unwrap_or(0);
        match sys::errno(&err) {
            Some(libc::EAGAIN) | Some(libc::ENOBUFS) => SendError::WouldBlock,
            Some(libc::EINVAL) if gso_type & 0x7f != 0 => SendError::GsoRejected {
                gso_type,
                source: err,
            },
            Some(libc::EINVAL) => SendError::Invalid(err),
            Some(libc::EMSGSIZE) => SendError::TooBig(err),
            _ => SendError::Io(err),
        }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::WouldBlock => write!(f, "port busy"),
            SendError::GsoRejected { gso_type, source } => {
                write!(f, "GSO frame (gso_type {gso_type:#x}) rejected: {source}")
            }
            SendError::Invalid(e) => write!(f, "frame rejected: {e}"),
            SendError::TooBig(e) => write!(f, "frame too big: {e}"),
            SendError::TooManySlices { slices } => write!(
                f,
                "frame in {slices} slices, at most {} fit in one send",
                MAX_IOV - 1
            ),
            SendError::NoCarrier => write!(f, "no carrier (nobody connected to the port)"),
            SendError::Io(e) => write!(f, "send failed: {e}"),
        }
    }
}

impl std::error::Error for SendError {}

/// What a guest did wrong on a port, by cause (descriptor chains refused, rings found
/// broken), as other threads read it: for `pvnet ctl stats` and the metrics.
pub trait GuestErrors: Send + Sync {
    /// Every cause with its count since the port was opened, zero or not, always in the
    /// same order.
    fn by_cause(&self) -> Vec<(&'static str, u64)>;
}

/// Whether a port has a peer to take frames (a VM on a vhost-user port), as other threads
/// see it, and how often the peer went away: for `pvnet ctl port list` and the metrics.
#[derive(Debug, Default)]
pub struct Carrier {
    up: std::sync::atomic::AtomicBool,
    losses: std::sync::atomic::AtomicU64,
}

impl Carrier {
    /// The peer is there.
    pub fn set_up(&self) {
        self.up.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The peer went away (counted).
    pub fn set_down(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.up.swap(false, Relaxed) {
            self.losses.fetch_add(1, Relaxed);
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Times the peer went away.
    pub fn losses(&self) -> u64 {
        self.losses.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Whether an error from a port's fd means its device is gone for good (deleted, or its
/// namespace with it): `ENODEV`, `EBADFD` (a tap whose interface was deleted), `EIO`,
/// `ENXIO`. The switch then takes the port down instead of retrying.
pub fn device_gone(err: &io::Error) -> bool {
    matches!(
        sys::errno(err),
        Some(libc::ENODEV | libc::EBADFD | libc::EIO | libc::ENXIO)
    )
}

/// Reusable receive buffers: `count` slots of `slot_len` bytes in one allocation, filled
/// by [`Port::recv_batch`]. Nothing is allocated per packet.
///
/// A port whose peer hands over its own memory (a VM's, on a vhost-user port) may leave a
/// super-frame's payload there instead of copying it ([`RecvBufs::external`]): the slot
/// then holds the frame's first bytes, all its headers among them, and the rest of the
/// frame is pieces of that memory, kept mapped until the next batch.
#[derive(Debug)]
pub struct RecvBufs {
    data: Vec<u8>,
    slot_len: usize,
    lens: Vec<usize>,
    truncated: Vec<bool>,
    filled: usize,
    hdr_len: usize,
    /// Per slot, the payload left in the peer's memory (allocated by the first port that
    /// leaves any).
    external: Vec<External>,
    /// Keeps the memory the batch's external pieces point into mapped.
    keep: Option<Keep>,
}

/// Most pieces of a frame's payload left in a peer's memory; a frame in more is copied.
/// With the vnet header and the head, such a frame still fits one `writev`.
pub const MAX_EXTERNAL: usize = MAX_IOV - 2;

/// The payload of one frame past its first `head` bytes, as pieces of a peer's memory
/// (address, length), in order.
#[derive(Debug, Clone, Copy)]
pub struct External {
    head: usize,
    n: usize,
    pieces: [(usize, usize); MAX_EXTERNAL],
}

impl Default for External {
    fn default() -> External {
        External {
            head: 0,
            n: 0,
            pieces: [(0, 0); MAX_EXTERNAL],
        }
    }
}

impl External {
    /// Forget every piece.
    pub fn clear(&mut self) {
        self.n = 0;
    }

    /// The frame's first `head` bytes are in the slot; the pieces follow them.
    pub fn set_head(&mut self, head: usize) {
        self.head = head;
    }

    /// Keep only the first `n` pieces.
    pub fn truncate(&mut self, n: usize) {
        self.n = self.n.min(n);
    }

    /// Pieces recorded so far, as (address, length).
    pub fn pieces(&self) -> &[(usize, usize)] {
        &self.pieces[..self.n]
    }

    /// Append `len` bytes at `ptr`; `false` (nothing recorded) when the frame already has
    /// [`MAX_EXTERNAL`] pieces.
    ///
    /// # Safety
    ///
    /// `ptr` must be valid for reads of `len` bytes for as long as the keepalive given to
    /// [`RecvBufs::set_keepalive`] for this batch lives. The bytes may change under the
    /// reader (another process's memory): they are only ever copied or summed, so a
    /// change corrupts this frame's payload and nothing else.
    pub unsafe fn push(&mut self, ptr: *const u8, len: usize) -> bool {
        let Some(p) = self.pieces.get_mut(self.n) else {
            return false;
        };
        *p = (ptr as usize, len);
        self.n += 1;
        true
    }
}

/// What keeps a batch's external pieces mapped (a VM's guest memory).
#[derive(Clone)]
pub struct Keep(pub std::sync::Arc<dyn std::any::Any + Send + Sync>);

impl std::fmt::Debug for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keep")
    }
}

/// Room for the largest super-frame (64 KiB IP packet + Ethernet/VLAN + vnet header).
pub const DEFAULT_SLOT_LEN: usize = 65_536 + 64;

impl RecvBufs {
    pub fn new(count: usize, slot_len: usize) -> RecvBufs {
        let count = count.max(1);
        RecvBufs {
            data: vec![0; count * slot_len],
            slot_len,
            lens: vec![0; count],
            truncated: vec![false; count],
            filled: 0,
            hdr_len: 0,
            external: Vec::new(),
            keep: None,
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// Frames received by the last `recv_batch`.
    pub fn len(&self) -> usize {
        self.filled
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Frame `i` of the last batch as (vnet header, frame); `None` past the batch or for a
    /// frame that was truncated (larger than a slot) or shorter than its header.
    #[inline]
    pub fn get(&self, i: usize) -> Option<(&[u8], &[u8])> {
        if i >= self.filled || self.truncated[i] {
            return None;
        }
        let slot = self
            .data
            .get(i * self.slot_len..i * self.slot_len + self.lens[i])?;
        (slot.len() >= self.hdr_len).then(|| slot.split_at(self.hdr_len))
    }

    /// For a frame whose payload was left in the peer's memory: how many of its first bytes
    /// (all its headers) the slot holds. The rest of the slot up to the frame's length
    /// holds stale bytes, so only header checks may read [`RecvBufs::get`]'s frame then;
    /// the frame itself is the slot's first bytes and [`RecvBufs::external_slices`].
    #[inline]
    pub fn external(&self, i: usize) -> Option<usize> {
        if i >= self.filled {
            return None;
        }
        self.external.get(i).filter(|e| e.n > 0).map(|e| e.head)
    }

    /// The pieces of frame `i`'s payload left in the peer's memory, into `out`: returns
    /// how many (0 for a frame that is all in its slot).
    pub fn external_slices<'a>(&'a self, i: usize, out: &mut [&'a [u8]]) -> usize {
        let (Some(e), Some(_)) = (self.external.get(i).filter(|_| i < self.filled), &self.keep)
        else {
            // Pieces are only good while something keeps their memory mapped.
            return 0;
        };
        let mut n = 0;
        for (&(ptr, len), o) in e.pieces().iter().zip(out.iter_mut()) {
            // SAFETY: `External::push`'s contract: readable for `len` bytes while the
            // batch's keepalive lives, and `self.keep` holds it for as long as `self` is
            // borrowed. The bytes may change under us (a guest's memory); they are only
            // copied or summed, so a change corrupts this frame's payload only.
            *o = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
            n += 1;
        }
        n
    }

    /// Frame `i` was cut because it did not fit in a slot.
    #[inline]
    pub fn is_truncated(&self, i: usize) -> bool {
        i < self.filled && self.truncated[i]
    }

    /// Fill the buffers with `frames` (each: vnet header of `hdr_len` bytes, then the
    /// frame), as a batch of `recv_batch` would: for ports that are not kernel devices
    /// (replays, test ports). Frames longer than a slot are cut and marked truncated;
    /// frames beyond the capacity are ignored. Returns the number filled.
    pub fn fill_from<'f>(
        &mut self,
        hdr_len: usize,
        frames: impl IntoIterator<Item = &'f [u8]>,
    ) -> usize {
        let mut n = 0;
        for f in frames.into_iter().take(self.capacity()) {
            let slot = self.slot_mut(n);
            let len = f.len().min(slot.len());
            slot[..len].copy_from_slice(&f[..len]);
            self.set_len(n, len, len < f.len());
            n += 1;
        }
        self.set_filled(hdr_len, n);
        n
    }

    /// Mutable slot `i` for a driver to fill (whole slot).
    pub(crate) fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        let l = self.slot_len;
        &mut self.data[i * l..(i + 1) * l]
    }

    pub(crate) fn slots_mut(&mut self) -> impl Iterator<Item = &mut [u8]> {
        self.data.chunks_exact_mut(self.slot_len)
    }

    pub(crate) fn set_filled(&mut self, hdr_len: usize, n: usize) {
        self.hdr_len = hdr_len;
        self.filled = n;
    }

    #[inline]
    pub(crate) fn set_len(&mut self, i: usize, len: usize, truncated: bool) {
        self.lens[i] = len.min(self.slot_len);
        self.truncated[i] = truncated;
        if let Some(e) = self.external.get_mut(i) {
            e.clear();
        }
    }

    /// Slot `i` and its external pieces (cleared), for a port that leaves payload in its
    /// peer's memory; its length is then set with [`RecvBufs::set_len_external`].
    #[inline]
    pub(crate) fn slot_and_external_mut(&mut self, i: usize) -> (&mut [u8], &mut External) {
        if self.external.len() < self.lens.len() {
            self.external
                .resize_with(self.lens.len(), External::default);
        }
        let l = self.slot_len;
        let e = &mut self.external[i];
        e.clear();
        (&mut self.data[i * l..(i + 1) * l], e)
    }

    /// [`RecvBufs::set_len`] for a frame filled through
    /// [`RecvBufs::slot_and_external_mut`], keeping its pieces.
    #[inline]
    pub(crate) fn set_len_external(&mut self, i: usize, len: usize) {
        self.lens[i] = len.min(self.slot_len);
        self.truncated[i] = false;
    }

    /// What keeps this batch's external pieces mapped, until the next batch replaces it.
    pub(crate) fn set_keepalive(&mut self, keep: Option<Keep>) {
        self.keep = keep;
    }
}

/// A switch port. Its fd (the one to wait on for received frames) is lent out as a
/// [`BorrowedFd`], so an epoll set can watch it without unsafe code.
pub trait Port: AsFd {
    /// Name for counters and logs.
    fn name(&self) -> &str;
    /// What the port takes on transmit (the `dst` of `xmit_action`).
    fn features(&self) -> Features;
    /// Change what the port takes (e.g. drop a GSO type after [`SendError::GsoRejected`]).
    fn set_features(&mut self, features: Features) -> io::Result<()>;
    /// Whether [`Port::features`] changes while the port runs (a VM's driver negotiates
    /// them): the switch then reads them again before it plans each frame.
    fn features_may_change(&self) -> bool {
        false
    }
    /// Where frames start: Ethernet (tap, packet) or IP (tun).
    fn start(&self) -> Start;
    /// Bytes of virtio_net_hdr before every frame (0: none; frames then carry no offload).
    fn vnet_hdr_len(&self) -> usize;
    /// Receive up to `bufs.capacity()` frames without blocking; `Ok(0)` when none is
    /// waiting.
    fn recv_batch(&mut self, bufs: &mut RecvBufs) -> io::Result<usize>;
    /// Send one frame: `vnet_hdr` ([`Port::vnet_hdr_len`] bytes) then the frame's slices,
    /// with one system call (a frame in more slices than that can gather is refused with
    /// [`SendError::TooManySlices`]).
    fn send(&mut self, vnet_hdr: &[u8], frame: &Frame<'_>) -> Result<(), SendError>;
    /// Make what the sends since the last flush put on the port visible to its peer. The
    /// switch calls it after every receive batch it forwarded. A vhost-user port defers
    /// the used-ring index update and the guest's interrupt to here, once per batch
    /// instead of once per frame, and writes the small frames it took since into the
    /// guest's buffers here too; what it then cannot deliver comes back as [`LateDrops`].
    /// Other ports send at once and have nothing to do.
    fn flush(&mut self) -> LateDrops {
        LateDrops::default()
    }
    /// The switch is done with the frames of the last receive batch (forwarded or
    /// dropped): a port that left their payload in its peer's memory
    /// ([`RecvBufs::external`]) gives that memory back now rather than at the next
    /// [`Port::recv_batch`]. The switch calls it after forwarding each batch.
    fn release(&mut self) {}
    /// Whether the port hands the switch super-frames on receive. A kernel device that
    /// takes TSO/USO does, so by default this is whether it takes them; a port that takes
    /// super-frames but hands over what came off a wire (an overlay port) says no, and
    /// the switch coalesces what it receives.
    fn rx_super_frames(&self) -> bool {
        self.features()
            .intersects(Features::TSO4 | Features::TSO6 | Features::USO)
    }
    /// Frames a receive batch should hold at least (0: the switch's default will do). A
    /// port whose one read can bring many frames asks for a batch that takes them all,
    /// so that the switch coalesces them into one super-frame rather than several.
    fn rx_batch(&self) -> usize {
        0
    }
    /// Frames the port itself refused on receive since the last call (an overlay port's
    /// hostile or broken datagrams), for the switch to count as parse drops; the port
    /// keeps the causes.
    fn take_rx_drops(&mut self) -> u64 {
        0
    }
    /// The port's carrier, for a port whose peer comes and goes (a VM's frontend); `None`
    /// for a device that is there as long as the port is.
    fn carrier(&self) -> Option<std::sync::Arc<Carrier>> {
        None
    }
    /// The errors of a port whose peer is a guest handing over its own memory (a
    /// vhost-user port); `None` for other ports.
    fn guest_errors(&self) -> Option<std::sync::Arc<dyn GuestErrors>> {
        None
    }
    /// Another handle on the port for sending from another thread, with the same
    /// features: a dup'ed fd of the same queue, or (a vhost-user port) a handle on the
    /// next queue pair in turn. `Ok(None)` when the port has none to give.
    fn try_clone_sender(&self) -> io::Result<Option<Box<dyn Port + Send>>> {
        Ok(None)
    }
}

/// Join the header and the frame's slices into one iovec array on the stack.
pub(crate) fn gather<'a>(
    vnet_hdr: &'a [u8],
    frame: &Frame<'a>,
    out: &mut [IoSlice<'a>; MAX_IOV],
) -> Result<usize, SendError> {
    let (hdr, rest) = out.split_at_mut(usize::from(!vnet_hdr.is_empty()));
    if let Some(h) = hdr.first_mut() {
        *h = IoSlice::new(vnet_hdr);
    }
    match frame.fill_iovecs(rest) {
        Ok(n) => Ok(hdr.len() + n),
        Err(FrameError::TooManySlices { needed, .. }) => {
            Err(SendError::TooManySlices { slices: needed })
        }
        Err(e) => Err(SendError::Invalid(io::Error::new(
            io::ErrorKind::InvalidInput,
            e.to_string(),
        ))),
    }
}

/// A tap or tun device as a port. Its features are the `TUNSETOFFLOAD` mask: what we take
/// from the kernel, and (symmetrically) what we hand it, so `offload=none` makes a legacy
/// peer in both directions. The kernel itself accepts any valid GSO frame written to a
/// tap and segments it as needed.
#[derive(Debug)]
pub struct TapPort {
    tap: Tap,
    features: Features,
    tun: bool,
}

/// Whether the fd is attached to a tun (IFF_TUN) rather than a tap device (`TUNGETIFF`).
fn is_tun(tap: &Tap) -> io::Result<bool> {
    let mut req = sys::IfReq::new("", 0)?;
    // SAFETY: TUNGETIFF writes one `struct ifreq` (name and flags) through the pointer;
    // `req` is a live, properly sized `#[repr(C)]` ifreq for the duration of the call.
    let ret = unsafe {
        libc::ioctl(
            tap.as_raw_fd(),
            sys::TUNGETIFF as _,
            &mut req as *mut sys::IfReq,
        )
    };
    sys::cvt(ret)
        .map_err(|e| sys::with_context(e, format_args!("TUNGETIFF on {:?}", tap.name())))?;
    Ok(req.flags & sys::IFF_TUN != 0)
}

impl TapPort {
    /// Wrap an open, non-blocking tap; its features are read back from its offload mask.
    pub fn new(tap: Tap) -> io::Result<TapPort> {
        tap.set_nonblocking(true)?;
        let features = if tap.vnet_hdr_len() == 0 {
            // Without headers the port can take nothing but plain frames.
            Features::NONE
        } else {
            Features::from_tun_offload(tap.offloads())
        };
        let tun = is_tun(&tap)?;
        Ok(TapPort { tap, features, tun })
    }

    pub fn tap(&self) -> &Tap {
        &self.tap
    }
}

impl AsRawFd for TapPort {
    fn as_raw_fd(&self) -> RawFd {
        self.tap.as_raw_fd()
    }
}

impl AsFd for TapPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tap.as_fd()
    }
}

impl Port for TapPort {
    fn name(&self) -> &str {
        self.tap.name()
    }

    fn features(&self) -> Features {
        self.features
    }

    fn set_features(&mut self, features: Features) -> io::Result<()> {
        if self.tap.vnet_hdr_len() == 0 {
            self.features = Features::NONE;
            return Ok(());
        }
        self.tap
            .set_offload(features.to_tun_offload_for_hdr(self.tap.vnet_hdr_len()))?;
        // Keep only what the tap really does with that mask, plus GRO (ours, not the tap's).
        self.features =
            Features::from_tun_offload(self.tap.offloads()) | (features & Features::GRO);
        Ok(())
    }

    fn start(&self) -> Start {
        // A tun device has no Ethernet header: IFF_TUN queues read and write bare IP.
        if self.tun {
            Start::Ip
        } else {
            Start::Ethernet
        }
    }

    fn vnet_hdr_len(&self) -> usize {
        self.tap.vnet_hdr_len()
    }

    fn recv_batch(&mut self, bufs: &mut RecvBufs) -> io::Result<usize> {
        // A tap has no recvmmsg: one read per frame, until the queue is empty.
        let hdr_len = self.tap.vnet_hdr_len();
        let mut n = 0;
        bufs.set_filled(hdr_len, 0);
        while n < bufs.capacity() {
            let slot = bufs.slot_mut(n);
            let cap = slot.len();
            match self.tap.read(slot) {
                Ok(len) => {
                    // read() cuts a frame longer than the slot silently; a full slot is
                    // the only sign.
                    bufs.set_len(n, len, len == cap);
                    n += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if n == 0 => return Err(e),
                Err(_) => break,
            }
        }
        bufs.set_filled(hdr_len, n);
        Ok(n)
    }

    fn send(&mut self, vnet_hdr: &[u8], frame: &Frame<'_>) -> Result<(), SendError> {
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let n = gather(vnet_hdr, frame, &mut iov)?;
        self.tap
            .writev(&iov[..n])
            .map(|_| ())
            .map_err(|e| SendError::classify(e, vnet_hdr))
    }

    fn try_clone_sender(&self) -> io::Result<Option<Box<dyn Port + Send>>> {
        Ok(Some(Box::new(TapPort {
            tap: self.tap.try_clone()?,
            features: self.features,
            tun: self.tun,
        })))
    }
}
