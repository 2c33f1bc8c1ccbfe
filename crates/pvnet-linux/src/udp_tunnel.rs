//! A UDP socket on an overlay's underlay, with the kernel's UDP segmentation offloads:
//! `UDP_SEGMENT` (one `sendmsg` carries many equal datagrams, cut by the kernel or the
//! NIC) and `UDP_GRO` (consecutive datagrams of a flow arrive as one buffer, with the
//! size they were cut at).
//!
//! A driver: it sends what it is given and splits nothing; cutting a received buffer
//! into datagrams by its [`Received::gso_size`] is the caller's.

use std::io::{self, IoSlice};
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use crate::sys;

/// `UDP_SEGMENT` (linux/udp.h): the gso_size of a send, as a socket option or a cmsg.
const UDP_SEGMENT: libc::c_int = 103;
/// `UDP_GRO` (linux/udp.h): coalesce received datagrams; the cmsg carries the gso_size.
const UDP_GRO: libc::c_int = 104;

/// `SO_SNDBUFFORCE`, `SO_RCVBUFFORCE` (asm-generic/socket.h; not in libc for glibc).
const SO_SNDBUFFORCE: libc::c_int = 32;
const SO_RCVBUFFORCE: libc::c_int = 33;

/// Room for one cmsg carrying a u16 or an int.
const CMSG_SPACE: usize = 32;

/// Most iovecs one send gathers (the kernel's `UIO_MAXIOV`).
pub const MAX_IOV: usize = 1024;

/// One received buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes in the buffer.
    pub len: usize,
    /// Who sent it.
    pub src: SocketAddr,
    /// With `UDP_GRO` on: the buffer holds several datagrams of this size (the last may
    /// be shorter). `None`: one datagram.
    pub gso_size: Option<u16>,
    /// The buffer was too small and the datagram was cut.
    pub truncated: bool,
}

/// A non-blocking UDP socket bound to a local address.
#[derive(Debug)]
pub struct UdpTunnelSocket {
    sock: UdpSocket,
    local: SocketAddr,
}

impl UdpTunnelSocket {
    /// Bind to `addr` (port 0: one the kernel chooses from the local port range).
    pub fn bind(addr: SocketAddr) -> io::Result<UdpTunnelSocket> {
        let sock = UdpSocket::bind(addr)
            .map_err(|e| sys::with_context(e, format_args!("bind UDP {addr}")))?;
        sock.set_nonblocking(true)?;
        let local = sock.local_addr()?;
        Ok(UdpTunnelSocket { sock, local })
    }

    /// Bind to `addr` with `SO_REUSEPORT`, so that several sockets share it and the kernel
    /// spreads the datagrams over them by a hash of their addresses and ports (one flow
    /// always to the same socket). Any socket of the same user that asks for it joins the
    /// group: check first that nobody else serves `addr` ([`UdpTunnelSocket::bind`]).
    pub fn bind_shared(addr: SocketAddr) -> io::Result<UdpTunnelSocket> {
        use rustix::net::{self, sockopt, AddressFamily, SocketFlags, SocketType};
        let family = if addr.is_ipv4() {
            AddressFamily::INET
        } else {
            AddressFamily::INET6
        };
        let fd = net::socket_with(
            family,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?;
        sockopt::set_socket_reuseport(&fd, true)
            .map_err(|e| sys::with_context(e.into(), "setsockopt SO_REUSEPORT"))?;
        net::bind(&fd, &addr)
            .map_err(|e| sys::with_context(e.into(), format_args!("bind UDP {addr}")))?;
        let sock = UdpSocket::from(fd);
        let local = sock.local_addr()?;
        Ok(UdpTunnelSocket { sock, local })
    }

    /// The bound address (with the port the kernel chose).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Turn `UDP_GRO` on or off: with it, [`UdpTunnelSocket::recv`] may return many
    /// datagrams in one buffer.
    pub fn set_gro(&self, on: bool) -> io::Result<()> {
        let v = libc::c_int::from(on);
        // SAFETY: setsockopt reads `optlen` bytes from `optval`, a live c_int.
        let ret = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_UDP,
                UDP_GRO,
                (&v as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        sys::cvt(ret)
            .map(|_| ())
            .map_err(|e| sys::with_context(e, "setsockopt UDP_GRO"))
    }

    /// Set the socket's receive and send buffer sizes in bytes (`None`: leave it): with `SO_RCVBUFFORCE` /
    /// `SO_SNDBUFFORCE` when permitted (CAP_NET_ADMIN), past `net.core.rmem_max`, else
    /// as far as the plain options go.
    pub fn set_buffers(&self, rcv: Option<usize>, snd: Option<usize>) -> io::Result<()> {
        for (force, plain, size) in [
            (SO_RCVBUFFORCE, libc::SO_RCVBUF, rcv),
            (SO_SNDBUFFORCE, libc::SO_SNDBUF, snd),
        ] {
            let Some(size) = size else {
                continue;
            };
            let v = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
            let set = |opt| {
                // SAFETY: setsockopt reads `optlen` bytes from `optval`, a live c_int.
                let ret = unsafe {
                    libc::setsockopt(
                        self.sock.as_raw_fd(),
                        libc::SOL_SOCKET,
                        opt,
                        (&v as *const libc::c_int).cast(),
                        size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
                sys::cvt(ret).map(|_| ())
            };
            set(force)
                .or_else(|_| set(plain))
                .map_err(|e| sys::with_context(e, "setsockopt SO_RCVBUF/SO_SNDBUF"))?;
        }
        Ok(())
    }

    /// Send the bytes of `iov` to `dst` with one `sendmsg`: one datagram, or with
    /// `gso_size` as many datagrams of `gso_size` bytes as they hold (the last may be
    /// shorter). Returns the bytes sent.
    pub fn send(
        &self,
        dst: SocketAddr,
        iov: &[IoSlice<'_>],
        gso_size: Option<u16>,
    ) -> io::Result<usize> {
        let (mut name, name_len) = sockaddr(dst);
        let mut control = [0u64; CMSG_SPACE / 8];
        // SAFETY: all-zero is a valid msghdr.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = name_len;
        // IoSlice is guaranteed ABI-compatible with iovec.
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = iov.len();
        if let Some(size) = gso_size {
            // SAFETY: CMSG_SPACE only computes a length.
            let space = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space;
            // SAFETY: msg_control points at `control` (CMSG_SPACE bytes, 8-aligned, larger
            // than `space`), so CMSG_FIRSTHDR is non-null and the header and its u16 of
            // data lie inside it.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&msg);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), size);
            }
        }
        // SAFETY: `msg` points at `name`, the caller's iovecs (each borrowing live memory
        // for the call) and `control`, all alive across the call.
        let ret = unsafe { libc::sendmsg(self.sock.as_raw_fd(), &msg, libc::MSG_DONTWAIT) };
        sys::cvt_size(ret)
    }

    /// Receive one buffer into `buf` without blocking; `Ok(None)` when nothing waits.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut control = [0u64; CMSG_SPACE / 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: all-zero is a valid msghdr.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = CMSG_SPACE;
        // SAFETY: `msg` points at `name`, one iovec over `buf` and `control`, all alive
        // and writable for the call.
        let ret = unsafe { libc::recvmsg(self.sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        let len = match sys::cvt_size(ret) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut gso_size = None;
        // SAFETY: recvmsg filled msg_control/msg_controllen; the CMSG_* macros walk
        // exactly that many bytes of `control`, which is alive.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                    let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                    gso_size = u16::try_from(v).ok().filter(|&s| s > 0);
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        let src = from_sockaddr(&name).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "datagram from a non-IP address")
        })?;
        Ok(Some(Received {
            len,
            src,
            gso_size,
            truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        }))
    }
}

impl AsFd for UdpTunnelSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// `addr` as a sockaddr_in or sockaddr_in6 with its length.
fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for any sockaddr.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// The address recvmsg filled in, if it is IPv4 or IPv6.
fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((ss as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((ss as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (UdpTunnelSocket, UdpTunnelSocket) {
        let a = UdpTunnelSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = UdpTunnelSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        (a, b)
    }

    fn recv_all(s: &UdpTunnelSocket, buf: &mut [u8]) -> Vec<(Vec<u8>, Option<u16>)> {
        let mut out = Vec::new();
        for _ in 0..100 {
            match s.recv(buf).unwrap() {
                Some(r) => out.push((buf[..r.len].to_vec(), r.gso_size)),
                None if out.is_empty() => std::thread::sleep(std::time::Duration::from_millis(5)),
                None => break,
            }
        }
        out
    }

    #[test]
    fn one_send_with_udp_segment_is_many_datagrams() {
        let (a, b) = pair();
        let data: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let iov = [IoSlice::new(&data[..1000]), IoSlice::new(&data[1000..])];
        let sent = a.send(b.local_addr(), &iov, Some(1000)).unwrap();
        assert_eq!(sent, 2500);
        let mut buf = vec![0u8; 65536];
        let got = recv_all(&b, &mut buf);
        let lens: Vec<usize> = got.iter().map(|(d, _)| d.len()).collect();
        assert_eq!(lens, vec![1000, 1000, 500]);
        let joined: Vec<u8> = got.into_iter().flat_map(|(d, _)| d).collect();
        assert_eq!(joined, data);
    }

    #[test]
    fn udp_gro_hands_over_one_buffer_with_its_size() {
        let (a, b) = pair();
        b.set_gro(true).unwrap();
        let data = vec![7u8; 3000];
        a.send(b.local_addr(), &[IoSlice::new(&data)], Some(1200))
            .unwrap();
        let mut buf = vec![0u8; 65536];
        let got = recv_all(&b, &mut buf);
        let total: usize = got.iter().map(|(d, _)| d.len()).sum();
        assert_eq!(total, 3000);
        // Over loopback the GSO buffer reaches the GRO socket whole.
        assert_eq!(
            got.len(),
            1,
            "{:?}",
            got.iter().map(|(d, s)| (d.len(), *s)).collect::<Vec<_>>()
        );
        assert_eq!(got[0].1, Some(1200));
    }

    #[test]
    fn ipv6_and_the_sender_address() {
        let a = UdpTunnelSocket::bind("[::1]:0".parse().unwrap()).unwrap();
        let b = UdpTunnelSocket::bind("[::1]:0".parse().unwrap()).unwrap();
        a.send(b.local_addr(), &[IoSlice::new(b"hello")], None)
            .unwrap();
        let mut buf = [0u8; 64];
        let r = loop {
            if let Some(r) = b.recv(&mut buf).unwrap() {
                break r;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(&buf[..r.len], b"hello");
        assert_eq!(r.src, a.local_addr());
        assert_eq!(r.gso_size, None);
        assert!(!r.truncated);
    }
}
