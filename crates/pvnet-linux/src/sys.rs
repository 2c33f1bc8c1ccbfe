//! Raw kernel interface for the tap driver: ioctl numbers, flag values and the `ifreq`
//! layout, defined here rather than taken from a bindings crate so that every number is
//! visible and checked. Also the errno helpers every driver uses, and a socket option std
//! does not offer.
//!
//! The ioctl numbers follow `_IOW('T', nr, int)` / `_IOR('T', nr, unsigned int)` from
//! `include/uapi/linux/if_tun.h` with the generic `asm-generic/ioctl.h` encoding
//! (dir << 30 | size << 16 | type << 8 | nr), which is what x86, arm64 and riscv use. They
//! were checked against the values a C program built with the system's `<linux/if_tun.h>`
//! prints, and a compile-time assertion recomputes them from the encoding.
//! Architectures with a different encoding (powerpc, mips, sparc) are not supported.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

/// Encode an ioctl request number the way `asm-generic/ioctl.h` does.
const fn ioc(dir: u32, ty: u8, nr: u8, size: u32) -> u32 {
    (dir << 30) | (size << 16) | ((ty as u32) << 8) | (nr as u32)
}
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;
const INT_SIZE: u32 = 4;

/// `TUNSETIFF = _IOW('T', 202, int)`: attach the fd to a (new) device; takes `struct ifreq *`.
pub const TUNSETIFF: u32 = 0x4004_54ca;
/// `TUNGETFEATURES = _IOR('T', 207, unsigned int)`: the IFF_* flags this kernel supports.
pub const TUNGETFEATURES: u32 = 0x8004_54cf;
/// `TUNSETOFFLOAD = _IOW('T', 208, unsigned int)`: TUN_F_* bits, passed by value.
pub const TUNSETOFFLOAD: u32 = 0x4004_54d0;
/// `TUNGETIFF = _IOR('T', 210, unsigned int)`: name and flags of the attached device.
pub const TUNGETIFF: u32 = 0x8004_54d2;
/// `TUNGETVNETHDRSZ = _IOR('T', 215, int)`.
pub const TUNGETVNETHDRSZ: u32 = 0x8004_54d7;
/// `TUNSETVNETHDRSZ = _IOW('T', 216, int)`: takes `int *`; at least 10 bytes.
pub const TUNSETVNETHDRSZ: u32 = 0x4004_54d8;
/// `TUNSETVNETLE = _IOW('T', 220, int)`: takes `int *`; non-zero = little-endian headers.
pub const TUNSETVNETLE: u32 = 0x4004_54dc;

// Checked at compile time: every number above is `_IOW`/`_IOR` of an int-sized argument.
const _: () = {
    assert!(TUNSETIFF == ioc(IOC_WRITE, b'T', 202, INT_SIZE));
    assert!(TUNGETFEATURES == ioc(IOC_READ, b'T', 207, INT_SIZE));
    assert!(TUNSETOFFLOAD == ioc(IOC_WRITE, b'T', 208, INT_SIZE));
    assert!(TUNGETIFF == ioc(IOC_READ, b'T', 210, INT_SIZE));
    assert!(TUNGETVNETHDRSZ == ioc(IOC_READ, b'T', 215, INT_SIZE));
    assert!(TUNSETVNETHDRSZ == ioc(IOC_WRITE, b'T', 216, INT_SIZE));
    assert!(TUNSETVNETLE == ioc(IOC_WRITE, b'T', 220, INT_SIZE));
};

/// `SIOCGIFFLAGS` (`include/uapi/linux/sockios.h`): a device's `IFF_*` flags, by name, on
/// any socket of its namespace; `ENODEV` when there is no such device.
pub const SIOCGIFFLAGS: u32 = 0x8913;
/// `SIOCETHTOOL`: an ethtool command through `ifr_data`.
pub const SIOCETHTOOL: u32 = 0x8946;
/// `ETHTOOL_GDRVINFO` (`include/uapi/linux/ethtool.h`): the driver's name and bus info.
pub const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
/// `IFF_LOOPBACK` in the flags `SIOCGIFFLAGS` returns.
pub const IFF_LOOPBACK: i16 = 0x0008;

/// `TUNSETIFF` flags (`ifr_flags`).
pub const IFF_TUN: i16 = 0x0001;
pub const IFF_TAP: i16 = 0x0002;
pub const IFF_NO_PI: i16 = 0x1000;
pub const IFF_VNET_HDR: i16 = 0x4000;
pub const IFF_MULTI_QUEUE: i16 = 0x0100;

/// `IFNAMSIZ`: interface names are at most 15 bytes plus the terminating NUL.
pub const IFNAMSIZ: usize = 16;

/// `struct ifreq` as TUNSETIFF uses it: the name, then the flags as the first member of the
/// 24-byte `ifr_ifru` union (its largest member, `struct ifmap`, is 24 bytes on 64-bit
/// targets and 16 on 32-bit; 24 is enough for both because the kernel copies
/// `sizeof(struct ifreq)` of its own build, which is never larger than 40).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IfReq {
    pub name: [u8; IFNAMSIZ],
    pub flags: i16,
    pub pad: [u8; 22],
}

impl IfReq {
    /// A zeroed request carrying `name` (must be shorter than IFNAMSIZ and have no NUL).
    pub fn new(name: &str, flags: i16) -> io::Result<IfReq> {
        let bytes = name.as_bytes();
        if bytes.len() >= IFNAMSIZ || bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("interface name {name:?} must be 0..=15 bytes without NUL"),
            ));
        }
        let mut req = IfReq {
            name: [0; IFNAMSIZ],
            flags,
            pad: [0; 22],
        };
        req.name[..bytes.len()].copy_from_slice(bytes);
        Ok(req)
    }

    /// The name the kernel wrote back (it fills in `%d` templates), up to the first NUL.
    pub fn name(&self) -> String {
        let end = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.name.len());
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }
}

/// `struct ifreq` with a pointer as its union member (`ifr_data`), as `SIOCETHTOOL` takes
/// it. 40 bytes on 64-bit targets, like [`IfReq`].
#[repr(C)]
pub struct IfReqData {
    pub name: [u8; IFNAMSIZ],
    pub data: *mut libc::c_void,
    pub pad: [u8; 16],
}

/// `struct ethtool_drvinfo` (`include/uapi/linux/ethtool.h`), 196 bytes.
#[repr(C)]
pub struct EthtoolDrvinfo {
    pub cmd: u32,
    pub driver: [u8; 32],
    pub version: [u8; 32],
    pub fw_version: [u8; 32],
    pub bus_info: [u8; 32],
    pub erom_version: [u8; 32],
    pub reserved2: [u8; 12],
    pub n_priv_flags: u32,
    pub n_stats: u32,
    pub testinfo_len: u32,
    pub eedump_len: u32,
    pub regdump_len: u32,
}

/// A NUL-terminated C string field as text, up to its first NUL.
pub fn c_field(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Turn a `-1`-on-error libc return value into an `io::Result`, keeping the raw errno.
pub fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Same as [`cvt`] for `ssize_t` returns (read/write/writev).
pub fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        // A non-negative ssize_t always fits in usize.
        Ok(ret as usize)
    }
}

/// An OS error with a note on what was being done (the ioctl and device, the command, …).
/// It stays reachable as the `source()`, and [`errno`] still finds its raw errno.
#[derive(Debug)]
pub struct Context {
    what: String,
    source: io::Error,
}

impl std::fmt::Display for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl std::error::Error for Context {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Wrap an OS error with context, keeping its kind and (through [`errno`]) its errno.
pub fn with_context(err: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        err.kind(),
        Context {
            what: what.to_string(),
            source: err,
        },
    )
}

/// The raw errno of an error, also when it was wrapped by [`with_context`]
/// (`io::Error::raw_os_error` alone does not see through the wrapper).
pub fn errno(err: &io::Error) -> Option<i32> {
    err.raw_os_error().or_else(|| {
        err.get_ref()
            .and_then(|inner| inner.downcast_ref::<Context>())
            .and_then(|ctx| errno(&ctx.source))
    })
}

/// Make a write on `sock` give up after `timeout` (`SO_SNDTIMEO`) instead of blocking for as
/// long as the peer does not read. Set on a listening socket, it is inherited by every
/// connection `accept` returns (the kernel copies the listener's socket), which is the only
/// way to bound the writes of a server library that owns its accepted sockets.
pub fn set_send_timeout(sock: impl AsFd, timeout: Duration) -> io::Result<()> {
    rustix::net::sockopt::set_socket_timeout(
        sock,
        rustix::net::sockopt::Timeout::Send,
        Some(timeout),
    )
    .map_err(|e| with_context(e.into(), "setsockopt SO_SNDTIMEO"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_timeout_is_inherited_by_accepted_sockets() {
        use rustix::net::sockopt::{socket_timeout, Timeout};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        set_send_timeout(&listener, Duration::from_millis(1500)).expect("SO_SNDTIMEO");
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        let (conn, _) = listener.accept().expect("accept");
        let got = socket_timeout(&conn, Timeout::Send).expect("getsockopt");
        assert_eq!(got, Some(Duration::from_millis(1500)));
        // Receives are left alone: a receive timeout on the listener would make accept fail.
        assert_eq!(
            socket_timeout(&conn, Timeout::Recv).expect("getsockopt"),
            None
        );
    }

    #[test]
    fn ifreq_layout_matches_the_kernel() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert_eq!(std::mem::offset_of!(IfReq, flags), IFNAMSIZ);
    }

    #[test]
    fn ethtool_layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<EthtoolDrvinfo>(), 196);
        assert_eq!(std::mem::offset_of!(EthtoolDrvinfo, bus_info), 100);
        assert_eq!(std::mem::offset_of!(IfReqData, data), IFNAMSIZ);
        assert!(std::mem::size_of::<IfReqData>() >= 32);
    }

    #[test]
    fn ifreq_name_round_trip_and_limits() {
        let req = IfReq::new("pvt0", IFF_TAP).expect("valid name");
        assert_eq!(req.name(), "pvt0");
        assert!(IfReq::new("0123456789abcdef", IFF_TAP).is_err());
        assert!(IfReq::new("a\0b", IFF_TAP).is_err());
        assert_eq!(
            IfReq::new("", IFF_TAP).expect("empty is a template").name(),
            ""
        );
    }

    #[test]
    fn errno_survives_context() {
        let raw = io::Error::from_raw_os_error(libc::EINVAL);
        let wrapped = with_context(raw, "TUNSETOFFLOAD 0x80 on tap \"x\"");
        assert_eq!(wrapped.raw_os_error(), None);
        assert_eq!(errno(&wrapped), Some(libc::EINVAL));
        assert_eq!(wrapped.kind(), io::ErrorKind::InvalidInput);
        let twice = with_context(wrapped, "outer");
        assert_eq!(errno(&twice), Some(libc::EINVAL));
        assert!(twice.to_string().starts_with("outer: TUNSETOFFLOAD 0x80"));
        assert_eq!(errno(&io::Error::other("no errno")), None);
    }
}
