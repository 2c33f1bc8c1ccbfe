//! AF_PACKET ports: a raw packet socket bound to one interface, with virtio-net headers.
//!
//! With `PACKET_VNET_HDR` every frame read is preceded by a 10-byte virtio_net_hdr that
//! the kernel fills from the skb (`virtio_net_hdr_from_skb`): super-frames (GRO'd, or a
//! veth peer's TSO sends) arrive whole with their GSO type and size, partial checksums
//! with NEEDS_CSUM, validated ones with DATA_VALID. Every frame sent must carry one too;
//! `packet_snd` checks it (`virtio_net_hdr_to_skb`) and `validate_xmit_skb` segments a
//! super-frame the device cannot take, so a packet port takes every GSO type.
//!
//! Options: `PACKET_QDISC_BYPASS` (straight to the driver, as a switch port has no use for
//! the qdisc), `PACKET_IGNORE_OUTGOING` (our own sends, and the host's, are not read back:
//! without it the switch would see every frame it injects), promiscuous membership
//! (`PACKET_MR_PROMISC`, reference-counted by the kernel and dropped with the socket).
//!
//! Batching: [`PacketSocket::recv_batch`] is one `recvmmsg`, [`PacketSocket::send_batch`]
//! one `sendmmsg`; their iovec and mmsghdr arrays live on the stack and point into
//! caller-owned buffers, so nothing is allocated per packet. The socket is non-blocking;
//! poll its fd for readiness.
//!
//! [`CaptureSocket`] is the other use of AF_PACKET here: a short read-only capture of an
//! interface's traffic both ways, headers only, for diagnostics (`pvnet report`).
//!
//! Not handled yet: VLAN tags the driver strips into skb metadata (veth and most NICs do)
//! are not in the frame; restoring them needs `PACKET_AUXDATA` control messages.

use std::ffi::CString;
use std::io::{self, IoSlice};

use pvnet_core::frame::Frame;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use pvnet_core::offload::features::Features;
use pvnet_core::wire::Start;

use crate::port::{gather, Port, RecvBufs, SendError, MAX_IOV};
use crate::sys;

/// `SOL_PACKET` options and values (`include/uapi/linux/if_packet.h`).
const SOL_PACKET: libc::c_int = 263;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
/// `sll_pkttype` of a frame the host sent (`PACKET_OUTGOING`).
const PACKET_OUTGOING: libc::c_uchar = 4;
/// `ETH_P_ALL`: every protocol.
const ETH_P_ALL: u16 = 0x0003;

/// Size of the header `PACKET_VNET_HDR` adds (`struct virtio_net_hdr`, no num_buffers).
pub const VNET_HDR_LEN: usize = 10;

/// Most frames one `recv_batch` / `send_batch` call moves.
pub const MAX_BATCH: usize = 64;

/// What `packet_snd` takes in a virtio_net_hdr: every GSO type and partial checksums
/// (the kernel finishes whatever the device cannot). Scatter-gather: a send is gathered
/// from iovecs by the kernel anyway.
pub const PACKET_SND_FEATURES: Features = Features::CSUM
    .union(Features::SG)
    .union(Features::TSO4)
    .union(Features::TSO6)
    .union(Features::TSO_ECN)
    .union(Features::USO)
    .union(Features::UFO);

/// How to open a packet socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketOptions {
    /// Put the interface in promiscuous mode while the socket is open.
    pub promisc: bool,
    /// Do not read frames the host (or we) send out of the interface.
    pub ignore_outgoing: bool,
    /// Bypass the qdisc on send.
    pub qdisc_bypass: bool,
    /// Transmit features; default [`PACKET_SND_FEATURES`].
    pub features: Features,
}

impl Default for PacketOptions {
    fn default() -> Self {
        PacketOptions {
            promisc: true,
            ignore_outgoing: true,
            qdisc_bypass: true,
            features: PACKET_SND_FEATURES,
        }
    }
}

/// An AF_PACKET SOCK_RAW socket bound to one interface, with vnet headers.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifname: String,
    ifindex: i32,
    features: Features,
}

fn setsockopt_int(
    fd: &OwnedFd,
    opt: libc::c_int,
    value: libc::c_int,
    what: &str,
) -> io::Result<()> {
    // SAFETY: setsockopt reads `optlen` bytes from `optval`, which points at a live c_int.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            SOL_PACKET,
            opt,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    sys::cvt(ret)
        .map(|_| ())
        .map_err(|e| sys::with_context(e, what))
}

/// A new AF_PACKET SOCK_RAW socket (close-on-exec, plus `flags`) for protocol 0: it
/// receives nothing until [`bind`] names a protocol, so no frame of another interface can
/// slip in between socket() and bind().
fn raw_socket(flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket() takes integers only and returns a new fd or -1.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | flags,
            0,
        )
    };
    let raw = sys::cvt(raw).map_err(|e| sys::with_context(e, "socket(AF_PACKET)"))?;
    // SAFETY: `raw` is a fresh, open fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Bind a packet socket to interface `ifindex` (`ifname`, for the error) and to frames of
/// EtherType `protocol` (host order; 0: receive none, [`ETH_P_ALL`]: every frame).
fn bind(fd: &OwnedFd, ifindex: i32, protocol: u16, ifname: &str) -> io::Result<()> {
    // SAFETY: sockaddr_ll holds only integers and byte arrays, for which all-zero is a
    // valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as libc::c_ushort;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex;
    // SAFETY: bind reads `addrlen` bytes from the pointer, exactly the sockaddr_ll that
    // the live local `sll` holds; `fd` is open.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    sys::cvt(ret)
        .map(|_| ())
        .map_err(|e| sys::with_context(e, format_args!("bind to {ifname:?}")))
}

/// The index of interface `name` in the calling thread's network namespace.
pub fn ifindex(name: &str) -> io::Result<i32> {
    let c = CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {name:?} has a NUL"),
        )
    })?;
    // SAFETY: if_nametoindex reads the NUL-terminated string, which `c` keeps alive.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(sys::with_context(
            io::Error::last_os_error(),
            format_args!("no interface {name:?}"),
        ));
    }
    i32::try_from(idx).map_err(|_| io::Error::other("ifindex out of range"))
}

impl PacketSocket {
    /// Open a socket on `ifname` in the calling thread's namespace (use
    /// [`crate::netns::Netns::enter_and`] for another one; the fd keeps working from any
    /// thread afterwards).
    pub fn open(ifname: &str, opts: &PacketOptions) -> io::Result<PacketSocket> {
        let ifindex = ifindex(ifname)?;
        let fd = raw_socket(libc::SOCK_NONBLOCK)?;

        setsockopt_int(&fd, PACKET_VNET_HDR, 1, "PACKET_VNET_HDR")?;
        if opts.qdisc_bypass {
            setsockopt_int(&fd, PACKET_QDISC_BYPASS, 1, "PACKET_QDISC_BYPASS")?;
        }
        if opts.ignore_outgoing {
            setsockopt_int(&fd, PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING")?;
        }

        bind(&fd, ifindex, ETH_P_ALL, ifname)?;

        if opts.promisc {
            let mreq = libc::packet_mreq {
                mr_ifindex: ifindex,
                mr_type: PACKET_MR_PROMISC,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            // SAFETY: setsockopt reads one packet_mreq from the live `mreq`.
            let ret = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    SOL_PACKET,
                    PACKET_ADD_MEMBERSHIP,
                    (&mreq as *const libc::packet_mreq).cast(),
                    size_of::<libc::packet_mreq>() as libc::socklen_t,
                )
            };
            sys::cvt(ret).map_err(|e| sys::with_context(e, "PACKET_ADD_MEMBERSHIP promisc"))?;
        }

        Ok(PacketSocket {
            fd,
            ifname: ifname.to_owned(),
            ifindex,
            features: opts.features,
        })
    }

    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// Receive up to `min(bufs.capacity(), MAX_BATCH)` frames with one `recvmmsg`;
    /// `Ok(0)` when none is waiting. Each slot holds the 10-byte vnet header and the frame.
    pub fn recv_batch(&self, bufs: &mut RecvBufs) -> io::Result<usize> {
        let want = bufs.capacity().min(MAX_BATCH);
        // SAFETY: all-zero is valid for iovec and mmsghdr (null pointers, zero lengths).
        let mut iov: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
        for (i, slot) in bufs.slots_mut().take(want).enumerate() {
            iov[i] = libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: slot.len(),
            };
        }
        for i in 0..want {
            msgs[i].msg_hdr.msg_iov = &mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        let n = loop {
            // SAFETY: `msgs[..want]` each point at one iovec in `iov`, which points into a
            // distinct slot of `bufs` (borrowed mutably by this function, so nothing else
            // touches it); all live across the call. No address or control buffers.
            let ret = unsafe {
                libc::recvmmsg(
                    self.fd.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    want as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            match sys::cvt(ret) {
                Ok(n) => break n as usize,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(e) => return Err(e),
            }
        };
        for (i, m) in msgs.iter().enumerate().take(n) {
            let truncated = m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            bufs.set_len(i, m.msg_len as usize, truncated);
        }
        bufs.set_filled(VNET_HDR_LEN, n);
        Ok(n)
    }

    /// Send one frame: the 10-byte vnet header, then the frame's slices (one `sendmsg`).
    pub fn send(&self, vnet_hdr: &[u8], frame: &Frame<'_>) -> Result<(), SendError> {
        if vnet_hdr.len() != VNET_HDR_LEN {
            return Err(SendError::Invalid(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "vnet header of {} bytes, packet sockets take {VNET_HDR_LEN}",
                    vnet_hdr.len()
                ),
            )));
        }
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let n = gather(vnet_hdr, frame, &mut iov)?;
        // SAFETY: all-zero is a valid msghdr.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // IoSlice is ABI-compatible with iovec; the kernel only reads through it.
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = n as _;
        loop {
            // SAFETY: `msg` points at `n` iovecs in `iov`, each borrowing live memory for
            // the duration of the call; no name or control data.
            let ret = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, libc::MSG_DONTWAIT) };
            match sys::cvt_size(ret) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SendError::classify(e, vnet_hdr)),
            }
        }
    }

    /// Send several frames with one `sendmmsg`. Each element of `frames` is the iovecs of
    /// one frame, its 10-byte vnet header first. Returns how many were sent: fewer than
    /// given when the batch is larger than [`MAX_BATCH`] or than 256 iovecs in total, or
    /// when the queue filled up (then resend the rest later). An error is returned only
    /// when the first frame fails, classified with its header.
    pub fn send_batch(&self, frames: &[&[IoSlice<'_>]]) -> Result<usize, SendError> {
        const MAX_TOTAL_IOV: usize = 256;
        let mut iov = [IoSlice::new(&[]); MAX_TOTAL_IOV];
        // SAFETY: all-zero is valid for mmsghdr.
        let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
        let mut used = 0;
        let mut count = 0;
        for frame in frames.iter().take(MAX_BATCH) {
            if used + frame.len() > MAX_TOTAL_IOV {
                break;
            }
            iov[used..used + frame.len()].copy_from_slice(frame);
            msgs[count].msg_hdr.msg_iov = iov[used..].as_ptr() as *mut libc::iovec;
            msgs[count].msg_hdr.msg_iovlen = frame.len() as _;
            used += frame.len();
            count += 1;
        }
        if count == 0 {
            return Ok(0);
        }
        loop {
            // SAFETY: each of `msgs[..count]` points at its own run of iovecs in `iov`,
            // borrowing memory that `frames` keeps alive for the call; the kernel only
            // reads them and writes `msg_len`.
            let ret = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    count as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            match sys::cvt(ret) {
                Ok(n) => return Ok(n as usize),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let hdr: &[u8] = frames.first().and_then(|f| f.first()).map_or(&[], |s| s);
                    return Err(SendError::classify(e, hdr));
                }
            }
        }
    }
}

/// A sender of raw Ethernet frames on one interface, for tests that inject arbitrary
/// traffic: every frame goes out exactly as given, from its destination MAC address on
/// (no vnet header, nothing checked, completed or padded by pvnet): an 802.1Q or 802.1ad
/// tag, any EtherType, truncated or lying IP headers. It receives nothing (it is bound to
/// protocol 0) and it blocks when the device queue is full.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// use pvnet_linux::packet_socket::RawSender;
///
/// let tx = RawSender::open("veth0")?; // in the calling thread's namespace
/// let mut frame = vec![0xff; 6]; // broadcast
/// frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]); // source
/// frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]); // 802.1Q, VLAN 10
/// frame.extend_from_slice(&[0x88, 0xb5]); // local experimental EtherType
/// frame.extend_from_slice(&[0; 46]);
/// tx.send(&frame)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RawSender {
    fd: OwnedFd,
    ifname: String,
}

impl RawSender {
    /// Open a sender on interface `ifname` of the calling thread's network namespace (use
    /// [`crate::netns::in_netns`] for another one: the sender keeps sending into that
    /// namespace from any thread afterwards).
    pub fn open(ifname: &str) -> io::Result<RawSender> {
        let ifindex = ifindex(ifname)?;
        let fd = raw_socket(0)?;
        bind(&fd, ifindex, 0, ifname)?;
        Ok(RawSender {
            fd,
            ifname: ifname.to_owned(),
        })
    }

    /// The interface it sends on.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Send one whole Ethernet frame, starting with its destination MAC address. The
    /// kernel refuses a frame shorter than an Ethernet header or longer than the
    /// interface's MTU plus its header (`EINVAL`, `EMSGSIZE`). Retries on `EINTR`.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: send reads `frame.len()` bytes from `frame`, a live borrowed slice,
            // for the duration of the call; `fd` is open.
            let ret =
                unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            match sys::cvt_size(ret) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(sys::with_context(
                        e,
                        format_args!("send a {}-byte frame on {:?}", frame.len(), self.ifname),
                    ))
                }
            }
        }
    }
}

impl AsFd for RawSender {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// One frame read by [`CaptureSocket::recv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Captured {
    /// Bytes copied into the buffer: the frame's first `min(orig_len, buffer length)`.
    pub len: usize,
    /// The frame's whole length on the wire (a super-frame's, when the device does GSO).
    pub orig_len: usize,
    /// The host sent it out of the interface (`PACKET_OUTGOING`); otherwise it came in.
    pub outgoing: bool,
    /// The interface's ARPHRD type: `ARPHRD_ETHER` (1) for a tap or veth, where frames
    /// start with an Ethernet header; `ARPHRD_NONE` (0xfffe) for a tun, bare IP packets.
    pub hatype: u16,
    /// When the kernel received or sent it (`SO_TIMESTAMPNS`), since the Unix epoch;
    /// `None` if the kernel gave no timestamp.
    pub timestamp: Option<std::time::Duration>,
}

/// A read-only AF_PACKET socket on one interface that sees the frames going both ways,
/// without vnet headers and without changing the interface (no promiscuous mode): what
/// `tcpdump -i IFNAME` sees, for a short diagnostic capture. The caller's buffer is the
/// snap length: the kernel copies no more of a frame than fits and reports its real
/// length.
#[derive(Debug)]
pub struct CaptureSocket {
    fd: OwnedFd,
    ifname: String,
}

impl CaptureSocket {
    /// Open a capture of `ifname` in the calling thread's namespace (use
    /// [`crate::netns::in_netns`] for another one: the socket keeps capturing there from
    /// any thread afterwards). Needs `CAP_NET_RAW`.
    pub fn open(ifname: &str) -> io::Result<CaptureSocket> {
        let ifindex = ifindex(ifname)?;
        let fd = raw_socket(libc::SOCK_NONBLOCK)?;
        let on: libc::c_int = 1;
        // SAFETY: setsockopt reads `optlen` bytes from `optval`, which points at the live
        // c_int `on`.
        let ret = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        sys::cvt(ret).map_err(|e| sys::with_context(e, "SO_TIMESTAMPNS"))?;
        bind(&fd, ifindex, ETH_P_ALL, ifname)?;
        Ok(CaptureSocket {
            fd,
            ifname: ifname.to_owned(),
        })
    }

    /// The interface it captures.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Wait up to `timeout` for a frame and copy its first `buf.len()` bytes into `buf`;
    /// `Ok(None)` when none came in time. Retries on `EINTR` (within the same timeout).
    pub fn recv(
        &self,
        buf: &mut [u8],
        timeout: std::time::Duration,
    ) -> io::Result<Option<Captured>> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(c) = self.try_recv(buf)? {
                return Ok(Some(c));
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let ts = Timespec {
                tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            match poll(&mut fds, Some(&ts)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(sys::with_context(e.into(), "poll a capture socket")),
            }
        }
    }

    /// Read one waiting frame without blocking (`Ok(None)`: none waiting).
    fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<Captured>> {
        // SAFETY: sockaddr_ll holds only integers and byte arrays; all-zero is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        // Room for one SCM_TIMESTAMPNS message (a timespec), u64-aligned as cmsghdr needs.
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: all-zero is a valid msghdr.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut sll as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = loop {
            // SAFETY: `msg` points at `sll`, one iovec over `buf` and the `control` array,
            // all live and exclusively borrowed for the call; the kernel writes at most the
            // lengths given. MSG_TRUNC makes it return the frame's real length while copying
            // only what fits.
            let ret = unsafe {
                libc::recvmsg(
                    self.fd.as_raw_fd(),
                    &mut msg,
                    libc::MSG_TRUNC | libc::MSG_DONTWAIT,
                )
            };
            match sys::cvt_size(ret) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => {
                    return Err(sys::with_context(
                        e,
                        format_args!("capture on {:?}", self.ifname),
                    ))
                }
            }
        };
        let mut timestamp = None;
        // SAFETY: `msg` was filled by recvmsg: msg_control/msg_controllen describe the
        // control messages the kernel wrote into `control`, which is still alive; the
        // CMSG_* macros only walk within that buffer.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET
                    && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
                {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    if let (Ok(s), Ok(ns)) = (u64::try_from(ts.tv_sec), u32::try_from(ts.tv_nsec)) {
                        timestamp = Some(std::time::Duration::new(s, ns));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        Ok(Some(Captured {
            len: n.min(buf.len()),
            orig_len: n,
            outgoing: sll.sll_pkttype == PACKET_OUTGOING,
            hatype: sll.sll_hatype,
            timestamp,
        }))
    }
}

impl AsFd for CaptureSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Port for PacketSocket {
    fn name(&self) -> &str {
        &self.ifname
    }

    fn features(&self) -> Features {
        self.features
    }

    fn set_features(&mut self, features: Features) -> io::Result<()> {
        self.features = features;
        Ok(())
    }

    fn start(&self) -> Start {
        Start::Ethernet
    }

    fn vnet_hdr_len(&self) -> usize {
        VNET_HDR_LEN
    }

    fn recv_batch(&mut self, bufs: &mut RecvBufs) -> io::Result<usize> {
        PacketSocket::recv_batch(self, bufs)
    }

    fn send(&mut self, vnet_hdr: &[u8], frame: &Frame<'_>) -> Result<(), SendError> {
        PacketSocket::send(self, vnet_hdr, frame)
    }

    /// A second handle on the same socket: sends from several threads are each one
    /// `sendmsg`, which the kernel serializes per socket.
    fn try_clone_sender(&self) -> io::Result<Option<Box<dyn Port + Send>>> {
        Ok(Some(Box::new(PacketSocket {
            fd: self.fd.try_clone()?,
            ifname: self.ifname.clone(),
            ifindex: self.ifindex,
            features: self.features,
        })))
    }
}
