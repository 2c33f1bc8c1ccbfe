//! Fuzz body shared by the cargo-fuzz target `gso_segment` (fuzz/) and the proptest in
//! tests/gso_fuzz.rs, so CI runs exactly what the fuzzer does. Not a stable API.

use super::{CsumMode, GsoOptions, SegmentBuf, Segmenter};
use crate::frame::{CsumState, GsoKind};
use crate::offload::checksum::{verify_frame, verify_parsed, Verdict};
use crate::vnet::fuzz::split_selector;
use crate::vnet::{flags, gso, validate, HashTunnel, HdrLen, Validated, VnetHdr};
use crate::wire::{ip_proto, parse, udp, Start, L3};

/// Input layout as for `vnet_validate`: byte 0 selects the form (bit 0: 12-byte header,
/// bit 1: big-endian, bit 2: frame starts at the IP header, bit 3: 24-byte header), then
/// the header, then the frame. A UDP tunnel super-frame is checked with
/// [`check_tunnel_segments`] instead of what follows. A frame the vnet header validation accepts as a super-frame is segmented in
/// both checksum modes, in batches of 3, and every segment must:
/// - re-parse with `wire::parse`;
/// - in Full mode have a good IPv4 header checksum and a good TCP/UDP checksum (UFO
///   fragments: checked after reassembly);
/// - in Partial mode carry `CsumState::Partial` whose field sits inside the segment.
///
/// The segments' payloads must concatenate to the super-frame's.
///
/// Returns the number of segments made in Full mode (`None`: not a valid super-frame).
pub fn gso_segment(data: &[u8]) -> Option<usize> {
    let (len, endian, start, rest) = split_selector(data)?;
    let hdr = VnetHdr::decode(rest, len, endian).ok()?;
    let frame = rest.get(len.size()..)?;
    let v = validate(&hdr, frame, start).ok()?;
    let gso = v.meta().gso?;
    // Link padding is not part of the packet (and the layers stay those of the frame).
    let frame = frame.get(..v.layers().ip_end)?;
    if gso.tunnel.is_some() {
        let mut made = None;
        for mode in [CsumMode::Full, CsumMode::Partial] {
            let segs = match tunnel_segments(frame, &v, mode, 3) {
                Ok(s) => s,
                Err(e) => {
                    assert!(
                        matches!(e.cause(), "unsupported_ext_header" | "header_too_long"),
                        "validated tunnel super-frame refused: {e}"
                    );
                    return None;
                }
            };
            let n = check_tunnel_segments(frame, &v, mode, &segs);
            if mode == CsumMode::Full {
                made = Some(n);
            }
        }
        return made;
    }
    let ly = *v.layers();
    let mut made = None;
    for mode in [CsumMode::Full, CsumMode::Partial] {
        let opts = GsoOptions {
            csum: mode,
            fixed_id: false,
            ipv6_frag_id: 0x0102_0304,
        };
        let mut seg = match Segmenter::from_linear(frame, &v, opts) {
            Ok(s) => s,
            // Validation and segmentation agree on what a super-frame is except for
            // the causes below (stricter or different limits here).
            Err(e) => {
                assert!(
                    matches!(e.cause(), "unsupported_ext_header" | "ufo_size_too_small"),
                    "validated super-frame refused: {e}"
                );
                return None;
            }
        };
        let count = seg.segment_count();
        let mut buf = SegmentBuf::with_capacity(3);
        let mut joined = Vec::with_capacity(frame.len());
        let mut line = Vec::new();
        let mut n = 0;
        while !seg.is_done() {
            let batch = seg.next_batch(&mut buf);
            assert!(!batch.is_empty());
            for s in batch.iter() {
                s.copy_to(&mut line);
                let sl = parse(&line, start).expect("segment re-parses");
                assert_eq!(sl.ip_end, line.len());
                let ufo = gso.kind == GsoKind::Ufo && count > 1;
                if ufo {
                    // Fragments: the IP payload, UDP header included in the first.
                    joined.extend_from_slice(&line[sl.l3_offset + sl.l3_len..]);
                } else {
                    joined.extend_from_slice(&line[sl.payload_offset..]);
                }
                let verdict = verify_frame(&line, start);
                assert_ne!(verdict.ip, Verdict::Bad, "IPv4 header checksum");
                match (mode, s.meta.csum) {
                    (_, CsumState::Unnecessary) => assert!(ufo),
                    (CsumMode::Full, CsumState::None) => {
                        assert_eq!(verdict.l4, Verdict::Good, "segment {n}")
                    }
                    (CsumMode::Partial, CsumState::Partial { start, offset }) => {
                        assert!(usize::from(start) + usize::from(offset) + 2 <= line.len());
                        assert_ne!(verdict.l4, Verdict::Bad);
                    }
                    (m, c) => panic!("mode {m:?} gave checksum state {c:?}"),
                }
                n += 1;
            }
        }
        assert_eq!(n, count);
        let payload = &frame[ly.payload_offset..];
        if gso.kind == GsoKind::Ufo && count > 1 {
            // The datagram: UDP header (checksum now filled) then the payload.
            assert_eq!(&joined[udp::HEADER_LEN..], payload);
            let mut sum = crate::offload::checksum::pseudo_header(
                frame,
                &ly,
                crate::wire::ip_proto::UDP,
                joined.len() as u32,
            )
            .expect("addresses in the frame");
            sum.add(&joined);
            assert_eq!(sum.fold(), 0xFFFF, "UFO datagram checksum");
        } else {
            assert_eq!(joined, payload);
        }
        if mode == CsumMode::Full {
            made = Some(n);
        }
    }
    made
}

/// A UDP tunnel super-frame to build ([`TunnelSpec::build`]): outer Ethernet, IPv4 or
/// IPv6, UDP, VXLAN or GENEVE (with options), inner Ethernet (with a VLAN tag or not),
/// inner IPv4 or IPv6, TCP (with options) or UDP, payload; with the header a Linux sender
/// writes for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelSpec {
    /// Outer IPv6 (else IPv4).
    pub outer_v6: bool,
    /// Inner IPv6 (else IPv4).
    pub inner_v6: bool,
    /// GENEVE with this many bytes of options (a multiple of 4, at most 128); `None`:
    /// VXLAN.
    pub geneve: Option<usize>,
    /// An 802.1Q tag on the inner Ethernet header.
    pub inner_vlan: bool,
    /// Inner TCP with this many bytes of options (a multiple of 4, at most 40); `None`:
    /// inner UDP (USO).
    pub tcp_opts: Option<usize>,
    /// The outer UDP checksum is wanted (UDP_TUNNEL_CSUM).
    pub csum: bool,
    /// Inner transport payload bytes.
    pub payload: usize,
    /// gso_size.
    pub gso_size: u16,
    /// Picks every other field (addresses, ports, IDs, sequence number, flags, payload).
    pub seed: u64,
}

/// UDP destination port of VXLAN (RFC 7348).
pub const VXLAN_PORT: u16 = 4789;
/// UDP destination port of GENEVE (RFC 8926).
pub const GENEVE_PORT: u16 = 6081;

impl TunnelSpec {
    /// The super-frame and its 24-byte header: NEEDS_CSUM at the inner transport checksum,
    /// which holds the pseudo-header sum (as a sender using checksum offload leaves it),
    /// the outer UDP checksum field the pseudo-header sum too with `csum` (what Linux's
    /// `udp_set_csum` leaves for GSO) or 0, every IPv4 header checksum complete.
    pub fn build(&self) -> (Vec<u8>, VnetHdr) {
        let mut rng = self.seed | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut f = Vec::with_capacity(self.payload + 200);
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01]);
        f.extend_from_slice(&if self.outer_v6 {
            [0x86, 0xdd]
        } else {
            [0x08, 0x00]
        });
        let ol3 = f.len();
        push_ip(&mut f, self.outer_v6, ip_proto::UDP, &mut next, 0x0a);
        let oth = f.len();
        f.extend_from_slice(&((next() as u16) | 0x8000).to_be_bytes());
        let port = if self.geneve.is_some() {
            GENEVE_PORT
        } else {
            VXLAN_PORT
        };
        f.extend_from_slice(&port.to_be_bytes());
        f.extend_from_slice(&[0; 4]);
        let vni = (next() as u32) & 0x00ff_ffff;
        match self.geneve {
            None => {
                f.extend_from_slice(&[0x08, 0, 0, 0]);
                f.extend_from_slice(&(vni << 8).to_be_bytes());
            }
            Some(opts) => {
                let opts = opts.min(128) & !3;
                f.push((opts / 4) as u8);
                f.push(0);
                f.extend_from_slice(&0x6558u16.to_be_bytes());
                f.extend_from_slice(&(vni << 8).to_be_bytes());
                // Options as TLVs of at most 4 + 124 bytes: class, type, length in words.
                let mut left = opts;
                while left > 0 {
                    let len = left.min(128);
                    f.extend_from_slice(&[0x01, 0x02, 0x80, ((len - 4) / 4) as u8]);
                    f.extend((0..len - 4).map(|_| next() as u8));
                    left -= len;
                }
            }
        }
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x04, 0x02, 0, 0, 0, 0, 0x03]);
        if self.inner_vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, (next() as u8) | 1]);
        }
        f.extend_from_slice(&if self.inner_v6 {
            [0x86, 0xdd]
        } else {
            [0x08, 0x00]
        });
        let inh = f.len();
        let proto = if self.tcp_opts.is_some() {
            ip_proto::TCP
        } else {
            ip_proto::UDP
        };
        push_ip(&mut f, self.inner_v6, proto, &mut next, 0xc0);
        let ith = f.len();
        f.extend_from_slice(&(next() as u32).to_be_bytes()); // ports
        match self.tcp_opts {
            Some(opts) => {
                let opts = opts.min(40) & !3;
                f.extend_from_slice(&(next() as u32).to_be_bytes());
                f.extend_from_slice(&(next() as u32).to_be_bytes());
                // ACK, sometimes PSH/FIN/CWR, as a sender's super-frame may have them.
                let flags = 0x10 | (next() as u8 & 0x89);
                f.extend_from_slice(&[(((20 + opts) / 4) << 4) as u8, flags]);
                f.extend_from_slice(&(next() as u16).to_be_bytes());
                f.extend_from_slice(&[0; 4]);
                f.extend(std::iter::repeat_n(1u8, opts));
            }
            None => f.extend_from_slice(&[0; 4]),
        }
        let payload_at = f.len();
        f.extend((0..self.payload).map(|_| next() as u8));

        // Lengths, inner then outer; checksums.
        let end = f.len();
        set_ip_len(&mut f, inh, self.inner_v6, end);
        set_ip_len(&mut f, ol3, self.outer_v6, end);
        f[oth + 4..oth + 6].copy_from_slice(&((end - oth) as u16).to_be_bytes());
        let tcp = self.tcp_opts.is_some();
        if !tcp {
            f[ith + 4..ith + 6].copy_from_slice(&((end - ith) as u16).to_be_bytes());
        }
        let field = ith + if tcp { 16 } else { 6 };
        let inner = pseudo_of(&f, inh, self.inner_v6, proto, end - ith);
        f[field..field + 2].copy_from_slice(&inner.to_be_bytes());
        if self.csum {
            let outer = pseudo_of(&f, ol3, self.outer_v6, ip_proto::UDP, end - oth);
            f[oth + 6..oth + 8].copy_from_slice(&outer.to_be_bytes());
        }

        let outer_bit = if self.outer_v6 {
            gso::UDP_TUNNEL_IPV6
        } else {
            gso::UDP_TUNNEL_IPV4
        };
        let inner_type = match (tcp, self.inner_v6) {
            (true, false) => gso::TCPV4,
            (true, true) => gso::TCPV6,
            (false, _) => gso::UDP_L4,
        };
        let hdr = VnetHdr {
            flags: flags::NEEDS_CSUM | if self.csum { flags::UDP_TUNNEL_CSUM } else { 0 },
            gso_type: outer_bit | inner_type,
            hdr_len: payload_at as u16,
            gso_size: self.gso_size,
            csum_start: ith as u16,
            csum_offset: if tcp { 16 } else { 6 },
            num_buffers: 0,
            tunnel: Some(HashTunnel {
                outer_th_offset: oth as u16,
                inner_nh_offset: inh as u16,
                ..HashTunnel::default()
            }),
        };
        (f, hdr)
    }
}

/// Append an IP header (lengths 0, filled by [`set_ip_len`]) with random addresses under
/// the prefix byte `net`.
fn push_ip(f: &mut Vec<u8>, v6: bool, proto: u8, next: &mut impl FnMut() -> u64, net: u8) {
    if v6 {
        let r = next();
        // Any traffic class and flow label.
        f.extend_from_slice(&[0x60 | (r as u8 & 0x0f), (r >> 8) as u8, (r >> 16) as u8]);
        f.extend_from_slice(&[(r >> 24) as u8, 0, 0, proto, 64]);
        for _ in 0..2 {
            f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, net, 0, 0, 0]);
            f.extend_from_slice(&next().to_be_bytes());
        }
    } else {
        let r = next();
        // DF or not, any TOS: both are copied into every segment.
        f.extend_from_slice(&[0x45, (r >> 16) as u8, 0, 0]);
        f.extend_from_slice(&(r as u16).to_be_bytes());
        f.extend_from_slice(&[
            if r & (1 << 24) != 0 { 0x40 } else { 0 },
            0,
            64,
            proto,
            0,
            0,
        ]);
        for _ in 0..2 {
            f.extend_from_slice(&[net, 0x00]);
            f.extend_from_slice(&(next() as u16).to_be_bytes());
        }
    }
}

/// Fill the length (and IPv4 header checksum) of the IP header at `l3` for a packet ending
/// at `end`.
fn set_ip_len(f: &mut [u8], l3: usize, v6: bool, end: usize) {
    if v6 {
        f[l3 + 4..l3 + 6].copy_from_slice(&((end - l3 - 40) as u16).to_be_bytes());
    } else {
        f[l3 + 2..l3 + 4].copy_from_slice(&((end - l3) as u16).to_be_bytes());
        let mut ip = crate::wire::ipv4::Packet::new_unchecked(&mut f[l3..l3 + 20]);
        ip.fill_checksum();
    }
}

/// The folded pseudo-header sum of a transport segment of `len` bytes under the IP header
/// at `l3`.
fn pseudo_of(f: &[u8], l3: usize, v6: bool, proto: u8, len: usize) -> u16 {
    let sum = if v6 {
        let a = |o: usize| -> [u8; 16] { f[l3 + o..l3 + o + 16].try_into().unwrap_or([0; 16]) };
        crate::csum::pseudo_header_v6(&a(8), &a(24), proto, len as u32)
    } else {
        let a = |o: usize| -> [u8; 4] { f[l3 + o..l3 + o + 4].try_into().unwrap_or([0; 4]) };
        crate::csum::pseudo_header_v4(a(12), a(16), proto, len as u32)
    };
    sum.fold()
}

/// Check the segments of a validated UDP tunnel super-frame `frame` (`v`), made in `mode`,
/// against the RFC arithmetic rather than against another implementation:
/// - every segment re-parses, outer and inner (from the same inner offset);
/// - every outer IPv4 header checksum is good, the outer IPv4 ID is the super-frame's + i,
///   the outer UDP length covers the segment, the outer UDP checksum is 0 without
///   UDP_TUNNEL_CSUM and good with it (in Partial mode, once the inner checksum is
///   completed: the outer one is computed for the packet as it will be sent);
/// - the inner checksums are good (Full) or partial at the inner transport header
///   (Partial);
/// - the bytes before the inner IP header other than the outer lengths, IDs and
///   checksums are the super-frame's;
/// - the inner payloads concatenate to the super-frame's.
///
/// Returns the number of segments.
pub fn check_tunnel_segments(
    frame: &[u8],
    v: &Validated,
    mode: CsumMode,
    segs: &[(Vec<u8>, CsumState)],
) -> usize {
    let Some(gso) = v.meta().gso else {
        panic!("not a super-frame");
    };
    let Some(t) = gso.tunnel else {
        panic!("not a tunnel super-frame");
    };
    let Some(inner) = v.inner_layers() else {
        panic!("a tunnel super-frame without inner layers");
    };
    let ly = v.layers();
    let inner_nh = usize::from(t.inner_nh);
    let th = ly.l4_offset;
    // A frame parsed from its IP header (tun) has no link layer.
    let start = if ly.l2_len == 0 {
        Start::Ip
    } else {
        Start::Ethernet
    };
    let mut joined = Vec::with_capacity(frame.len());
    let outer_id = (ly.l3 == Some(L3::Ipv4))
        .then(|| u16::from_be_bytes([frame[ly.l3_offset + 4], frame[ly.l3_offset + 5]]));
    for (i, (seg, csum)) in segs.iter().enumerate() {
        let sl = parse(seg, start).expect("segment re-parses");
        assert_eq!(sl.ip_end, seg.len(), "segment {i}: outer length");
        assert_eq!(sl.l4_offset, th, "segment {i}: outer UDP header moved");
        let il = crate::vnet::inner_layers(seg, inner_nh, seg.len())
            .unwrap_or_else(|e| panic!("segment {i}: inner packet: {e}"));
        assert_eq!(il.payload_offset, inner.payload_offset);
        joined.extend_from_slice(&seg[il.payload_offset..]);
        // Unchanged bytes: the tunnel header and inner Ethernet header.
        assert_eq!(
            seg[th + 8..inner_nh],
            frame[th + 8..inner_nh],
            "segment {i}: tunnel header"
        );
        let outer = verify_parsed(seg, &sl);
        assert_ne!(outer.ip, Verdict::Bad, "segment {i}: outer IPv4 checksum");
        if let Some(id) = outer_id {
            let got = u16::from_be_bytes([seg[sl.l3_offset + 4], seg[sl.l3_offset + 5]]);
            assert_eq!(got, id.wrapping_add(i as u16), "segment {i}: outer IPv4 ID");
        }
        let uh = udp::Packet::new_unchecked(&seg[th..th + 8]);
        assert_eq!(usize::from(uh.len()), seg.len() - th);
        let mut done = seg.clone();
        match (mode, *csum) {
            (CsumMode::Full, CsumState::None) => {
                let iv = verify_parsed(seg, &il);
                assert_ne!(iv.ip, Verdict::Bad, "segment {i}: inner IPv4 checksum");
                assert_eq!(iv.l4, Verdict::Good, "segment {i}: inner checksum");
            }
            (CsumMode::Partial, CsumState::Partial { start, offset }) => {
                assert_eq!(usize::from(start), il.l4_offset, "segment {i}: csum_start");
                // A pseudo-header sum can happen to be the complete checksum too.
                let iv = verify_parsed(seg, &il);
                assert_ne!(iv.l4, Verdict::Bad, "segment {i}: inner partial sum");
                crate::offload::checksum::complete_partial_linear(
                    &mut done,
                    usize::from(start),
                    usize::from(offset),
                )
                .expect("field in the segment");
                let iv = verify_parsed(&done, &il);
                assert_eq!(
                    iv.l4,
                    Verdict::Good,
                    "segment {i}: inner checksum completed"
                );
            }
            (m, c) => panic!("segment {i}: mode {m:?} gave checksum state {c:?}"),
        }
        if t.csum {
            let ov = verify_parsed(&done, &sl);
            assert_eq!(ov.l4, Verdict::Good, "segment {i}: outer UDP checksum");
        } else {
            assert_eq!(uh.checksum(), 0, "segment {i}: outer UDP checksum not 0");
        }
    }
    assert_eq!(
        joined,
        frame[inner.payload_offset..],
        "inner payloads do not join up"
    );
    segs.len()
}

/// Segment a validated tunnel super-frame in `mode` (batches of `batch`), linearized.
pub fn tunnel_segments(
    frame: &[u8],
    v: &Validated,
    mode: CsumMode,
    batch: usize,
) -> Result<Vec<(Vec<u8>, CsumState)>, super::GsoError> {
    let opts = GsoOptions {
        csum: mode,
        fixed_id: false,
        ipv6_frag_id: 0,
    };
    let mut seg = Segmenter::from_linear(frame, v, opts)?;
    let mut buf = SegmentBuf::with_capacity(batch);
    let mut out = Vec::with_capacity(seg.segment_count());
    while !seg.is_done() {
        for s in seg.next_batch(&mut buf).iter() {
            let mut line = Vec::with_capacity(s.len());
            s.copy_to(&mut line);
            out.push((line, s.meta.csum));
        }
    }
    Ok(out)
}

/// Fuzz body of the `gso_tunnel` target: a UDP tunnel super-frame described by the first
/// bytes of `data`, its 24-byte header then mutated by the next ones, validated and, when
/// that succeeds as a tunnel super-frame, segmented in both modes and checked with
/// [`check_tunnel_segments`]. Input layout: byte 0 (bit 0 outer IPv6, bit 1 inner IPv6,
/// bit 2 GENEVE, bit 3 inner VLAN tag, bit 4 inner UDP, bit 5 UDP_TUNNEL_CSUM), byte 1
/// (GENEVE options / 4, TCP options / 4), bytes 2-3 the payload length, bytes 4-5
/// gso_size, bytes 6-7 a header byte to overwrite and its value (byte 6 ≥ 24: none),
/// bytes 8.. the seed.
///
/// Returns the number of segments made in Full mode (`None`: not a valid tunnel
/// super-frame).
pub fn gso_tunnel(data: &[u8]) -> Option<usize> {
    let p = data.get(..8)?;
    let seed = data
        .get(8..)
        .unwrap_or_default()
        .iter()
        .fold(0x9e37_79b9_7f4a_7c15u64, |s, &b| {
            s.rotate_left(8) ^ u64::from(b)
        });
    let spec = TunnelSpec {
        outer_v6: p[0] & 1 != 0,
        inner_v6: p[0] & 2 != 0,
        geneve: (p[0] & 4 != 0).then_some(usize::from(p[1] & 0x1f) * 4),
        inner_vlan: p[0] & 8 != 0,
        tcp_opts: (p[0] & 16 == 0).then_some(usize::from(p[1] >> 5) * 4),
        csum: p[0] & 32 != 0,
        payload: usize::from(u16::from_be_bytes([p[2], p[3]])) % 62_000,
        gso_size: u16::from_be_bytes([p[4], p[5]]),
        seed,
    };
    let (frame, hdr) = spec.build();
    let mut wire = hdr.to_array(crate::vnet::Endian::Little);
    if let Some(b) = wire.get_mut(usize::from(p[6])) {
        *b = p[7];
    }
    let hdr = VnetHdr::decode(&wire, HdrLen::V24, crate::vnet::Endian::Little).ok()?;
    let v = validate(&hdr, &frame, Start::Ethernet).ok()?;
    v.meta().gso?.tunnel?;
    let mut made = None;
    for mode in [CsumMode::Full, CsumMode::Partial] {
        let segs = match tunnel_segments(&frame, &v, mode, 3) {
            Ok(s) => s,
            // Limits of the segmenter that validation does not know.
            Err(e) if matches!(e.cause(), "unsupported_ext_header" | "header_too_long") => {
                return None
            }
            Err(e) => panic!("validated tunnel super-frame refused: {e} ({spec:?})"),
        };
        let n = check_tunnel_segments(&frame, &v, mode, &segs);
        if mode == CsumMode::Full {
            made = Some(n);
        }
    }
    made
}
