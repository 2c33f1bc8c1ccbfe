//! Hand-built test frames with correct lengths (IPv4 header checksum, IP/UDP length fields)
//! and the pseudo-header sum in the L4 checksum field, as a sender using NEEDS_CSUM leaves it.
//! Shared by the vnet_* integration tests (`mod vnet_frames;`).
#![allow(dead_code)]

use pvnet_core::csum::{checksum, pseudo_header_v4, pseudo_header_v6};
use pvnet_core::vnet::{flags, gso, VnetHdr};
use pvnet_core::wire::Start;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Spec {
    /// TCP with this many bytes of options (multiple of 4, ≤ 40).
    Tcp {
        opts: usize,
    },
    Udp,
}

#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub start: Start,
    pub vlans: usize,
    pub ipv6: bool,
    /// IPv6: one 8-byte Hop-by-Hop extension header before the transport header.
    pub ext: bool,
    pub l4: L4Spec,
    pub payload: usize,
    /// IPv4: set More Fragments (a first fragment).
    pub fragment: bool,
    /// Ethernet padding appended after the IP packet.
    pub padding: usize,
}

impl Spec {
    fn new(ipv6: bool, l4: L4Spec, payload: usize) -> Spec {
        Spec {
            start: Start::Ethernet,
            vlans: 0,
            ipv6,
            ext: false,
            l4,
            payload,
            fragment: false,
            padding: 0,
        }
    }
    pub fn tcp4(payload: usize) -> Spec {
        Spec::new(false, L4Spec::Tcp { opts: 0 }, payload)
    }
    pub fn tcp6(payload: usize) -> Spec {
        Spec::new(true, L4Spec::Tcp { opts: 0 }, payload)
    }
    pub fn udp4(payload: usize) -> Spec {
        Spec::new(false, L4Spec::Udp, payload)
    }
    pub fn udp6(payload: usize) -> Spec {
        Spec::new(true, L4Spec::Udp, payload)
    }
    pub fn ip_start(mut self) -> Spec {
        self.start = Start::Ip;
        self
    }
    pub fn vlans(mut self, n: usize) -> Spec {
        self.vlans = n;
        self
    }
    pub fn ext(mut self) -> Spec {
        self.ext = true;
        self
    }
    pub fn tcp_opts(mut self, opts: usize) -> Spec {
        self.l4 = L4Spec::Tcp { opts };
        self
    }
    pub fn fragment(mut self) -> Spec {
        self.fragment = true;
        self
    }
    pub fn padding(mut self, n: usize) -> Spec {
        self.padding = n;
        self
    }
    pub fn build(&self) -> Frame {
        build(self)
    }
}

/// A built frame and the offsets its builder knows.
#[derive(Debug, Clone)]
pub struct Frame {
    pub bytes: Vec<u8>,
    pub start: Start,
    pub l3: usize,
    pub l4: usize,
    pub payload: usize,
    /// End of the IP packet (before padding).
    pub ip_end: usize,
}

impl Frame {
    /// A header for this frame with NEEDS_CSUM at the transport checksum field and the given
    /// GSO type and size; `hdr_len` is the end of the transport header.
    pub fn gso_hdr(&self, gso_type: u8, gso_size: u16) -> VnetHdr {
        let is_tcp = self.payload - self.l4 != 8;
        VnetHdr {
            flags: flags::NEEDS_CSUM,
            gso_type,
            hdr_len: self.payload as u16,
            gso_size,
            csum_start: self.l4 as u16,
            csum_offset: if is_tcp { 16 } else { 6 },
            num_buffers: 0,
            tunnel: None,
        }
    }

    /// NEEDS_CSUM only.
    pub fn csum_hdr(&self) -> VnetHdr {
        let mut h = self.gso_hdr(gso::NONE, 0);
        h.hdr_len = 0;
        h
    }

    /// The same frame without its link-layer header (for a tun).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
}

fn push16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_be_bytes());
}

pub fn build(s: &Spec) -> Frame {
    let mut b = Vec::new();
    if s.start == Start::Ethernet {
        b.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01]);
        for i in 0..s.vlans {
            push16(&mut b, if i + 1 < s.vlans { 0x88a8 } else { 0x8100 });
            push16(&mut b, 100 + i as u16);
        }
        push16(&mut b, if s.ipv6 { 0x86dd } else { 0x0800 });
    }
    let l3 = b.len();
    let (proto, l4_hdr_len) = match s.l4 {
        L4Spec::Tcp { opts } => (TCP, 20 + opts),
        L4Spec::Udp => (UDP, 8),
    };
    let l4_total = l4_hdr_len + s.payload;
    let src4 = [192, 0, 2, 1];
    let dst4 = [198, 51, 100, 7];
    let mut src6 = [0u8; 16];
    let mut dst6 = [0u8; 16];
    src6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    dst6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    src6[15] = 1;
    dst6[15] = 2;
    if s.ipv6 {
        let ext_len = if s.ext { 8 } else { 0 };
        b.extend_from_slice(&[0x60, 0, 0, 0]);
        push16(&mut b, (ext_len + l4_total) as u16);
        b.push(if s.ext { 0 } else { proto });
        b.push(64);
        b.extend_from_slice(&src6);
        b.extend_from_slice(&dst6);
        if s.ext {
            // Hop-by-Hop: next header, length 0 (8 bytes), PadN with 4 bytes of padding.
            b.extend_from_slice(&[proto, 0, 1, 4, 0, 0, 0, 0]);
        }
    } else {
        let total = 20 + l4_total;
        b.extend_from_slice(&[0x45, 0]);
        push16(&mut b, total as u16);
        push16(&mut b, 0x1234);
        push16(&mut b, if s.fragment { 0x2000 } else { 0x4000 });
        b.extend_from_slice(&[64, proto, 0, 0]);
        b.extend_from_slice(&src4);
        b.extend_from_slice(&dst4);
        let c = checksum(&b[l3..l3 + 20]);
        b[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    let l4 = b.len();
    let pseudo = if s.ipv6 {
        pseudo_header_v6(&src6, &dst6, proto, l4_total as u32)
    } else {
        pseudo_header_v4(src4, dst4, proto, l4_total as u32)
    };
    match s.l4 {
        L4Spec::Tcp { opts } => {
            push16(&mut b, 40000);
            push16(&mut b, 443);
            b.extend_from_slice(&1000u32.to_be_bytes());
            b.extend_from_slice(&2000u32.to_be_bytes());
            b.push((((20 + opts) / 4) as u8) << 4);
            b.push(0x18); // PSH|ACK
            push16(&mut b, 0xffff);
            push16(&mut b, pseudo.fold());
            push16(&mut b, 0);
            // NOPs then an end-of-options list.
            b.extend(std::iter::repeat_n(1u8, opts));
        }
        L4Spec::Udp => {
            push16(&mut b, 40000);
            push16(&mut b, 4433);
            push16(&mut b, l4_total as u16);
            push16(&mut b, pseudo.fold());
        }
    }
    let payload = b.len();
    b.extend((0..s.payload).map(|i| (i % 251) as u8));
    let ip_end = b.len();
    b.extend(std::iter::repeat_n(0u8, s.padding));
    Frame {
        bytes: b,
        start: s.start,
        l3,
        l4,
        payload,
        ip_end,
    }
}

/// An Ethernet ARP request padded to 60 bytes.
pub fn arp() -> Vec<u8> {
    let mut b = vec![0xff; 6];
    b.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    push16(&mut b, 0x0806);
    b.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    b.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 192, 0, 2, 1]);
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 192, 0, 2, 2]);
    b.resize(60, 0);
    b
}
