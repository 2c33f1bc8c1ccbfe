//! tap/tun devices with virtio-net headers (`IFF_VNET_HDR`) and offloads (`TUNSETOFFLOAD`).
//!
//! A [`Tap`] is one queue of a tap (Ethernet frames) or tun (bare IP packets) device. With
//! `vnet_hdr` every packet read or written is preceded by a virtio_net_hdr of
//! `vnet_hdr_len` bytes (10, 12 with `num_buffers`, or 24 with the UDP tunnel offsets of
//! `virtio_net_hdr_v1_hash_tunnel`), which carries the partial checksum and segmentation
//! metadata. Linux 6.17+ reads a tunnel super-frame's header from any write when the
//! header is 24 bytes; older kernels read its first 10 bytes and skip the rest, so a
//! 24-byte header is safe everywhere, and the tunnel offload bits say whether the kernel
//! may hand us tunnel super-frames.
//!
//! Byte order of the header: the driver asks for little-endian headers with `TUNSETVNETLE`
//! (virtio 1.0 order). On little-endian hosts (x86, arm64, riscv) the kernel's default —
//! guest-native order — is little-endian anyway, so a kernel that refuses the ioctl is
//! fine there; on a big-endian host a refusal is an error.
//!
//! Offloads (`TUN_F_*`) describe what *we* can take when reading: with `CSUM` the kernel may
//! hand us partial checksums, with `TSO4` unsegmented TCP super-frames, and so on. Writing
//! a GSO frame into the device does not depend on them. The kernel rejects bits it does not
//! know with `EINVAL`, which is how [`Tap::probe_offloads`] finds what this kernel supports.

use std::fs::OpenOptions;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys;

/// `TUN_F_*` offload bits for `TUNSETOFFLOAD`, defined once in the core next to the
/// feature sets that map to them.
pub use pvnet_core::offload::features::tun_offload as offload;

/// How to open a tap/tun queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapOptions {
    /// Device name (≤ 15 bytes); empty or a template such as `"pvt%d"` lets the kernel pick.
    pub name: String,
    /// `true`: tun device (IFF_TUN, bare IP packets); `false`: tap (IFF_TAP, Ethernet).
    pub tun: bool,
    /// Prefix every packet with a virtio_net_hdr (IFF_VNET_HDR).
    pub vnet_hdr: bool,
    /// Size of that header: 10 (legacy), 12 (with num_buffers) or 24 (with the UDP tunnel
    /// offsets; needed for the tunnel offload bits).
    pub vnet_hdr_len: usize,
    /// Open one queue of a multi-queue device (IFF_MULTI_QUEUE); open again for more.
    pub multi_queue: bool,
    /// `TUN_F_*` bits (see [`offload`]) set exactly; `EINVAL` if the kernel refuses them.
    /// Use [`Tap::probe_offloads`] afterwards to get the best supported subset instead.
    pub offloads: u32,
}

impl Default for TapOptions {
    fn default() -> Self {
        TapOptions {
            name: String::new(),
            tun: false,
            vnet_hdr: true,
            vnet_hdr_len: 12,
            multi_queue: false,
            offloads: 0,
        }
    }
}

/// One open queue of a tap or tun device. The device lives as long as a queue is open
/// (it is not made persistent). The fd may be used from any thread.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
    vnet_hdr_len: usize,
    /// Last mask the kernel accepted; atomic so that a shared `&Tap` can change it.
    offloads: AtomicU32,
}

impl Tap {
    /// Open `/dev/net/tun` and attach it to the device `opts.name` (created if missing) in the
    /// calling thread's network namespace (see [`crate::netns::Netns::enter_and`]).
    pub fn open(opts: &TapOptions) -> io::Result<Tap> {
        if opts.vnet_hdr && !matches!(opts.vnet_hdr_len, 10 | 12 | 24) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "tap {:?}: vnet_hdr_len must be 10, 12 or 24, not {}",
                    opts.name, opts.vnet_hdr_len
                ),
            ));
        }
        if opts.offloads & offload::UDP_TUNNEL != 0
            && (!opts.vnet_hdr || opts.vnet_hdr_len < offload::TUNNEL_HDR_LEN)
        {
            // The kernel would hand us tunnel super-frames whose offsets do not fit the
            // header.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "tap {:?}: UDP tunnel offloads {:#x} need a {}-byte vnet header",
                    opts.name,
                    opts.offloads & offload::UDP_TUNNEL,
                    offload::TUNNEL_HDR_LEN
                ),
            ));
        }
        if !opts.vnet_hdr && opts.offloads != 0 {
            // Without a header the kernel could hand us a super-frame or a partial checksum
            // with no way to tell; refuse the combination.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "tap {:?}: offloads {:#x} need vnet_hdr",
                    opts.name, opts.offloads
                ),
            ));
        }

        // std opens with O_CLOEXEC already.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .map_err(|e| sys::with_context(e, "open /dev/net/tun"))?;
        let fd = OwnedFd::from(file);

        let mut flags = sys::IFF_NO_PI | if opts.tun { sys::IFF_TUN } else { sys::IFF_TAP };
        if opts.vnet_hdr {
            flags |= sys::IFF_VNET_HDR;
        }
        if opts.multi_queue {
            flags |= sys::IFF_MULTI_QUEUE;
        }
        let mut req = sys::IfReq::new(&opts.name, flags)?;
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`; `req` is a live, properly
        // sized and aligned `#[repr(C)]` ifreq for the duration of the call, and `fd` is open.
        let ret = unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                sys::TUNSETIFF as _,
                &mut req as *mut sys::IfReq,
            )
        };
        sys::cvt(ret).map_err(|e| setiff_error(e, opts))?;
        let name = req.name();

        let mut tap = Tap {
            fd,
            name,
            vnet_hdr_len: 0,
            offloads: AtomicU32::new(0),
        };
        if opts.vnet_hdr {
            tap.set_vnet_le()?;
            tap.set_vnet_hdr_len_raw(opts.vnet_hdr_len)?;
        }
        // The offload mask is device-wide and survives re-attach: always set it.
        tap.set_offload(opts.offloads)?;
        Ok(tap)
    }

    /// Ask for little-endian vnet headers. A kernel without TUNSETVNETLE (before 4.0, or
    /// refusing it) already uses native order, which is little-endian on LE hosts.
    fn set_vnet_le(&self) -> io::Result<()> {
        let le: libc::c_int = 1;
        // SAFETY: TUNSETVNETLE reads one `int` through the pointer; `le` lives across the call.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                sys::TUNSETVNETLE as _,
                &le as *const libc::c_int,
            )
        };
        match sys::cvt(ret) {
            Ok(_) => Ok(()),
            Err(e)
                if cfg!(target_endian = "little")
                    && matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOTTY)) =>
            {
                Ok(())
            }
            Err(e) => Err(sys::with_context(
                e,
                format_args!("TUNSETVNETLE on tap {:?}", self.name),
            )),
        }
    }

    /// Change the size of the vnet header (`TUNSETVNETHDRSZ`): 10, 12 or 24. The size is
    /// the device's, shared by all its queues. A caller that opened a queue with 24 bytes
    /// to probe the UDP tunnel offloads goes back to 12 when the kernel refused them;
    /// offload bits that need the longer header must be cleared first.
    pub fn set_vnet_hdr_len(&mut self, len: usize) -> io::Result<()> {
        if self.vnet_hdr_len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("tap {:?} was opened without vnet_hdr", self.name),
            ));
        }
        if !matches!(len, 10 | 12 | 24) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "tap {:?}: vnet_hdr_len must be 10, 12 or 24, not {len}",
                    self.name
                ),
            ));
        }
        if len < offload::TUNNEL_HDR_LEN && self.offloads() & offload::UDP_TUNNEL != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "tap {:?}: a {len}-byte vnet header cannot carry the UDP tunnel offloads \
                     {:#x} still set",
                    self.name,
                    self.offloads() & offload::UDP_TUNNEL
                ),
            ));
        }
        self.set_vnet_hdr_len_raw(len)
    }

    fn set_vnet_hdr_len_raw(&mut self, len: usize) -> io::Result<()> {
        let sz = libc::c_int::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "vnet_hdr_len too large"))?;
        // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer; `sz` outlives the call.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                sys::TUNSETVNETHDRSZ as _,
                &sz as *const libc::c_int,
            )
        };
        sys::cvt(ret).map_err(|e| {
            sys::with_context(
                e,
                format_args!("TUNSETVNETHDRSZ {len} on tap {:?}", self.name),
            )
        })?;
        self.vnet_hdr_len = len;
        Ok(())
    }

    /// Set exactly these `TUN_F_*` bits. `EINVAL` means the kernel does not support one of
    /// them; the message names the ioctl and device, [`sys::errno`] gives the errno. The
    /// UDP tunnel bits on a queue whose header is shorter than 24 bytes are refused with
    /// `InvalidInput` before the kernel is asked.
    pub fn set_offload(&self, bits: u32) -> io::Result<()> {
        if bits & offload::UDP_TUNNEL != 0 && self.vnet_hdr_len < offload::TUNNEL_HDR_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "TUNSETOFFLOAD {bits:#x} on tap {:?}: the UDP tunnel bits need a {}-byte \
                     vnet header, the queue has {}",
                    self.name,
                    offload::TUNNEL_HDR_LEN,
                    self.vnet_hdr_len
                ),
            ));
        }
        self.try_offload(bits).map_err(|e| {
            sys::with_context(
                e,
                format_args!("TUNSETOFFLOAD {bits:#x} on tap {:?}", self.name),
            )
        })?;
        self.offloads.store(bits, Ordering::Relaxed);
        Ok(())
    }

    fn try_offload(&self, bits: u32) -> io::Result<()> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long), no memory is
        // passed; `fd` is open.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                sys::TUNSETOFFLOAD as _,
                libc::c_ulong::from(bits),
            )
        };
        sys::cvt(ret).map(|_| ())
    }

    /// Set the largest subset of `wanted` that this kernel accepts and return it.
    ///
    /// The kernel answers `EINVAL` for any bit it does not know or cannot combine (USO
    /// needs 6.2 and USO4+USO6 together, the UDP tunnel bits 6.17 and a plain GSO bit,
    /// TSO_ECN needs a TSO bit, everything needs CSUM). On `EINVAL` the bits are dropped in
    /// this order until the kernel agrees: bits unknown to this module,
    /// UDP_TUNNEL_GSO_CSUM, UDP_TUNNEL_GSO, USO4|USO6, UFO, TSO_ECN, TSO6, TSO4, CSUM. The
    /// tunnel bits are not even tried on a queue whose header is shorter than 24 bytes.
    /// Errors other than `EINVAL` (a closed device, …) are returned, never swallowed.
    pub fn probe_offloads(&self, wanted: u32) -> io::Result<u32> {
        let wanted = if self.vnet_hdr_len < offload::TUNNEL_HDR_LEN {
            wanted & !offload::UDP_TUNNEL
        } else {
            wanted
        };
        let drops = [
            !offload::ALL,
            offload::UDP_TUNNEL_GSO_CSUM,
            offload::UDP_TUNNEL_GSO,
            offload::USO4 | offload::USO6,
            offload::UFO,
            offload::TSO_ECN,
            offload::TSO6,
            offload::TSO4,
            offload::CSUM,
        ];
        let mut bits = wanted;
        let mut tried: Option<u32> = None;
        for drop in std::iter::once(0).chain(drops) {
            bits &= !drop;
            if tried == Some(bits) {
                continue;
            }
            tried = Some(bits);
            match self.try_offload(bits) {
                Ok(()) => {
                    self.offloads.store(bits, Ordering::Relaxed);
                    return Ok(bits);
                }
                Err(e) if sys::errno(&e) == Some(libc::EINVAL) => continue,
                Err(e) => {
                    return Err(sys::with_context(
                        e,
                        format_args!("TUNSETOFFLOAD {bits:#x} on tap {:?}", self.name),
                    ))
                }
            }
        }
        // Even 0 was refused with EINVAL: not a tap we can use.
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TUNSETOFFLOAD 0 refused on tap {:?}", self.name),
        ))
    }

    /// The `TUN_F_*` bits last set successfully on this queue.
    pub fn offloads(&self) -> u32 {
        self.offloads.load(Ordering::Relaxed)
    }

    /// The IFF_* flags this kernel's tun driver supports (`TUNGETFEATURES`).
    pub fn kernel_features(&self) -> io::Result<u32> {
        let mut features: libc::c_uint = 0;
        // SAFETY: TUNGETFEATURES writes one `unsigned int` through the pointer; `features`
        // is a live, aligned c_uint for the duration of the call.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                sys::TUNGETFEATURES as _,
                &mut features as *mut libc::c_uint,
            )
        };
        sys::cvt(ret)
            .map_err(|e| sys::with_context(e, format_args!("TUNGETFEATURES on {:?}", self.name)))?;
        Ok(features)
    }

    /// Switch the fd between blocking and non-blocking mode (`O_NONBLOCK`).
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        let fd = self.fd.as_raw_fd();
        // SAFETY: F_GETFL takes no argument and only reads the open fd's status flags.
        let flags = sys::cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
        let new = if nonblocking {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        if new != flags {
            // SAFETY: F_SETFL takes an int by value; no memory is passed.
            sys::cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, new) })?;
        }
        Ok(())
    }

    /// Read one packet (vnet header first, when enabled). A buffer shorter than the packet
    /// gets it truncated, so use at least 65 536 + header bytes when GSO offloads are on.
    /// `WouldBlock` when non-blocking and nothing is queued. Retries on `EINTR`.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: `buf` is a valid, writable region of `buf.len()` bytes for the call.
            let ret = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                )
            };
            match sys::cvt_size(ret) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    /// Write one packet (vnet header first, when enabled). The kernel checks the header and
    /// answers `EINVAL` for one it rejects; the raw errno is kept. Retries on `EINTR`.
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        loop {
            // SAFETY: `buf` is a valid, readable region of `buf.len()` bytes for the call.
            let ret = unsafe {
                libc::write(
                    self.fd.as_raw_fd(),
                    buf.as_ptr().cast::<libc::c_void>(),
                    buf.len(),
                )
            };
            match sys::cvt_size(ret) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    /// Write one packet gathered from several buffers (e.g. vnet header, headers, payload
    /// slices of a segment). Same errors as [`Tap::write`].
    pub fn writev(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let count = libc::c_int::try_from(bufs.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many iovecs"))?;
        loop {
            // SAFETY: `IoSlice` is guaranteed ABI-compatible with `struct iovec` on Unix, and
            // every slice it points to is borrowed (so valid) for the duration of the call.
            let ret = unsafe {
                libc::writev(
                    self.fd.as_raw_fd(),
                    bufs.as_ptr().cast::<libc::iovec>(),
                    count,
                )
            };
            match sys::cvt_size(ret) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    /// Another handle on the same queue (a dup'ed fd sharing the open file, hence its
    /// `O_NONBLOCK`), e.g. to write to the queue from another thread.
    pub fn try_clone(&self) -> io::Result<Tap> {
        Ok(Tap {
            fd: self.fd.try_clone()?,
            name: self.name.clone(),
            vnet_hdr_len: self.vnet_hdr_len,
            offloads: AtomicU32::new(self.offloads()),
        })
    }

    /// The device name the kernel attached us to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes of virtio_net_hdr before every packet (0 without IFF_VNET_HDR).
    pub fn vnet_hdr_len(&self) -> usize {
        self.vnet_hdr_len
    }
}

/// What a network device is, as far as opening it as a tap goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceKind {
    /// A tap device (tun driver, Ethernet frames).
    Tap,
    /// A tun device (tun driver, bare IP packets).
    Tun,
    /// The loopback device.
    Loopback,
    /// Any other device, with its driver's name when it reports one (`veth`, `bridge`, …).
    Other(Option<String>),
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceKind::Tap => f.write_str("a tap device"),
            DeviceKind::Tun => f.write_str("a tun device (bare IP packets)"),
            DeviceKind::Loopback => f.write_str("the loopback device"),
            DeviceKind::Other(Some(driver)) => write!(f, "a {driver} device"),
            DeviceKind::Other(None) => f.write_str("a device of another kind"),
        }
    }
}

/// What the device `name` is in the calling thread's network namespace (see
/// [`crate::netns::in_netns`]), or `None` if it has no device of that name.
///
/// Asked of the kernel through a socket made here, which belongs to the thread's
/// namespace: `/sys/class/net` would show the namespace sysfs was mounted in instead.
pub fn device_kind(name: &str) -> io::Result<Option<DeviceKind>> {
    let sock = std::os::unix::net::UnixDatagram::unbound()
        .map_err(|e| sys::with_context(e, "socket(AF_UNIX)"))?;
    let mut req = sys::IfReq::new(name, 0)?;
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into one `struct
    // ifreq`; `req` is a live, properly sized `#[repr(C)]` ifreq for the call, and `sock`
    // is open.
    let ret = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            sys::SIOCGIFFLAGS as _,
            &mut req as *mut sys::IfReq,
        )
    };
    match sys::cvt(ret) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(None),
        Err(e) => {
            return Err(sys::with_context(
                e,
                format_args!("SIOCGIFFLAGS on {name:?}"),
            ))
        }
    }
    if req.flags & sys::IFF_LOOPBACK != 0 {
        return Ok(Some(DeviceKind::Loopback));
    }
    let mut info = sys::EthtoolDrvinfo {
        cmd: sys::ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    let mut dreq = sys::IfReqData {
        name: req.name,
        data: (&mut info as *mut sys::EthtoolDrvinfo).cast(),
        pad: [0; 16],
    };
    // SAFETY: SIOCETHTOOL reads the ifreq (name and `ifr_data`) and ETHTOOL_GDRVINFO writes
    // one `struct ethtool_drvinfo` through `ifr_data`; `dreq` and `info` are live,
    // properly sized `#[repr(C)]` values for the duration of the call.
    let ret = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            sys::SIOCETHTOOL as _,
            &mut dreq as *mut sys::IfReqData,
        )
    };
    if sys::cvt(ret).is_err() {
        // Devices without driver information (EOPNOTSUPP) are none of the above.
        return Ok(Some(DeviceKind::Other(None)));
    }
    let driver = sys::c_field(&info.driver);
    Ok(Some(
        match (driver.as_str(), sys::c_field(&info.bus_info).as_str()) {
            ("tun", "tap") => DeviceKind::Tap,
            ("tun", "tun") => DeviceKind::Tun,
            _ => DeviceKind::Other(Some(driver).filter(|d| !d.is_empty())),
        },
    ))
}

/// The processes holding a tun/tap device named `name` open (in any namespace: the
/// kernel's fdinfo gives the name only), as (pid, command name), from `/proc`. Processes
/// whose fds cannot be read are left out.
pub fn holders(name: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|t| t == std::path::Path::new("/dev/net/tun"))
                && std::fs::read_to_string(p.path().join("fdinfo").join(fd.file_name())).is_ok_and(
                    |info| {
                        info.lines()
                            .any(|l| l.strip_prefix("iff:").map(str::trim) == Some(name))
                    },
                )
        });
        if holds {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            out.push((pid, comm.trim().to_owned()));
        }
    }
    out
}

/// The error of a refused `TUNSETIFF`, naming the cause when it can be found: a tap that
/// someone already holds (`EBUSY`), or a device of that name that is not a tap of the
/// kind asked for (`EINVAL`). The errno is kept.
fn setiff_error(e: io::Error, opts: &TapOptions) -> io::Error {
    let name = &opts.name;
    let what = if opts.tun { "tun" } else { "tap" };
    let cause = match e.raw_os_error() {
        Some(libc::EBUSY) => {
            let me = std::process::id();
            let (mine, others): (Vec<_>, Vec<_>) =
                holders(name).into_iter().partition(|(pid, _)| *pid == me);
            let others = others
                .iter()
                .map(|(pid, comm)| format!("pid {pid} ({comm})"))
                .collect::<Vec<_>>()
                .join(", ");
            Some(match (mine.is_empty(), others.is_empty()) {
                (false, true) => format!(
                    "{what} {name:?} is busy: this process already holds a {what} of that \
                     name (is the port named twice?)"
                ),
                (false, false) => format!(
                    "{what} {name:?} is busy: this process already holds a {what} of that \
                     name (is the port named twice?), and so does {others}"
                ),
                (true, false) => {
                    format!("{what} {name:?} is busy: another process holds it: {others}")
                }
                (true, true) => format!(
                    "{what} {name:?} is busy: another process holds it, or the port is named \
                     twice"
                ),
            })
        }
        Some(libc::EINVAL) => match device_kind(name) {
            Ok(Some(DeviceKind::Tap)) if !opts.tun => Some(queue_mismatch(what, name, opts)),
            Ok(Some(DeviceKind::Tun)) if opts.tun => Some(queue_mismatch(what, name, opts)),
            Ok(Some(kind)) => Some(format!(
                "{name:?} exists and is not a {what} but {kind}: choose another name"
            )),
            _ => None,
        },
        _ => None,
    };
    match cause {
        Some(c) => sys::with_context(e, c),
        None => sys::with_context(e, format_args!("TUNSETIFF on {what} {name:?}")),
    }
}

/// A tap of the right kind refuses to attach only when its multi-queue setting differs.
fn queue_mismatch(what: &str, name: &str, opts: &TapOptions) -> String {
    if opts.multi_queue {
        format!(
            "{what} {name:?} exists as a single-queue device and cannot be opened with \
             several queues: delete it to have it made anew"
        )
    } else {
        format!(
            "{what} {name:?} exists as a multi-queue device and cannot be opened with one \
             queue: open it with several, or delete it to have it made anew"
        )
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_kind_knows_loopback_and_absence() {
        // Every namespace has `lo`, and none of ours a device of that other name.
        assert_eq!(device_kind("lo").expect("lo"), Some(DeviceKind::Loopback));
        assert_eq!(device_kind("pvnet-nonesuch").expect("query"), None);
    }

    #[test]
    fn rejects_bad_header_length_and_offloads_without_header() {
        let bad_len = TapOptions {
            vnet_hdr_len: 11,
            ..TapOptions::default()
        };
        let err = Tap::open(&bad_len).expect_err("11-byte header must be refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);

        let short_tunnel = TapOptions {
            offloads: offload::CSUM | offload::TSO4 | offload::UDP_TUNNEL_GSO,
            ..TapOptions::default()
        };
        let err = Tap::open(&short_tunnel).expect_err("tunnel bits need 24 bytes");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("24-byte"), "{err}");

        let no_hdr = TapOptions {
            vnet_hdr: false,
            offloads: offload::CSUM,
            ..TapOptions::default()
        };
        let err = Tap::open(&no_hdr).expect_err("offloads need a vnet header");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
