//! Hand-built frames for the GRO tests (included by the other `gro_*` test files with
//! `#[path]`; compiled on its own it is an empty test binary).
#![allow(dead_code)]

use pvnet_core::csum::{self, Sum};
use pvnet_core::frame::OffloadMeta;
use pvnet_core::offload::gro::{Coalesced, Coalescer, EmitCause, GroConfig};
use pvnet_core::wire::{parse, Start};

pub const SRC_MAC: [u8; 6] = [0xaa, 0, 0, 0, 0, 2];
pub const DST_MAC: [u8; 6] = [0xaa, 0, 0, 0, 0, 1];
pub const SRC4: [u8; 4] = [192, 168, 1, 200];
pub const DST4: [u8; 4] = [192, 168, 1, 100];
pub const SRC6: [u8; 16] = [0xfd, 0xaa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
pub const DST6: [u8; 16] = [0xfd, 0xaa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

pub const ACK: u8 = 0x10;
pub const PSH: u8 = 0x08;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const URG: u8 = 0x20;
pub const FIN: u8 = 0x01;
pub const CWR: u8 = 0x80;

/// Transport of a built frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
        options: Vec<u8>,
    },
    Udp,
}

/// One frame, described field by field; `build` lays it out with correct lengths and
/// checksums (unless told to break them).
#[derive(Debug, Clone)]
pub struct Frame {
    pub v6: bool,
    pub ethernet: bool,
    pub src_mac: [u8; 6],
    pub vlans: Vec<u16>,
    pub src4: [u8; 4],
    pub dst4: [u8; 4],
    pub src6: [u8; 16],
    pub dst6: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub l4: L4,
    pub payload: Vec<u8>,
    pub ttl: u8,
    /// IPv4 TOS / IPv6 traffic class.
    pub tos: u8,
    pub flow_label: u32,
    pub id: u16,
    pub df: bool,
    /// IPv4 MF flag and fragment offset (8-byte units).
    pub frag: (bool, u16),
    pub ip_options: Vec<u8>,
    /// IPv6 extension headers as (type, body after the two first bytes); each is padded
    /// to a multiple of 8 by the caller.
    pub exts: Vec<(u8, Vec<u8>)>,
    /// Add this to the correct L4 checksum.
    pub csum_delta: u16,
    /// Ethernet padding bytes after the IP packet.
    pub padding: usize,
    /// Leave the L4 checksum at the pseudo-header sum (a partial checksum).
    pub partial_csum: bool,
}

impl Frame {
    pub fn tcp(v6: bool, seq: u32, payload_len: usize) -> Frame {
        Frame {
            v6,
            ethernet: true,
            src_mac: SRC_MAC,
            vlans: Vec::new(),
            src4: SRC4,
            dst4: DST4,
            src6: SRC6,
            dst6: DST6,
            sport: 1500,
            dport: 8000,
            l4: L4::Tcp {
                seq,
                ack: 100,
                flags: ACK,
                window: 65535,
                options: Vec::new(),
            },
            payload: pattern(seq as usize, payload_len),
            ttl: 8,
            tos: 0,
            flow_label: 0,
            id: 0,
            df: true,
            frag: (false, 0),
            ip_options: Vec::new(),
            exts: Vec::new(),
            csum_delta: 0,
            padding: 0,
            partial_csum: false,
        }
    }

    pub fn udp(v6: bool, payload: Vec<u8>) -> Frame {
        Frame {
            l4: L4::Udp,
            payload,
            ..Frame::tcp(v6, 0, 0)
        }
    }

    pub fn flags(mut self, f: u8) -> Frame {
        if let L4::Tcp { flags, .. } = &mut self.l4 {
            *flags = f;
        }
        self
    }

    pub fn ack(mut self, a: u32) -> Frame {
        if let L4::Tcp { ack, .. } = &mut self.l4 {
            *ack = a;
        }
        self
    }

    pub fn window(mut self, w: u16) -> Frame {
        if let L4::Tcp { window, .. } = &mut self.l4 {
            *window = w;
        }
        self
    }

    pub fn options(mut self, o: Vec<u8>) -> Frame {
        if let L4::Tcp { options, .. } = &mut self.l4 {
            *options = o;
        }
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.ethernet {
            out.extend_from_slice(&DST_MAC);
            out.extend_from_slice(&self.src_mac);
            for v in &self.vlans {
                out.extend_from_slice(&0x8100u16.to_be_bytes());
                out.extend_from_slice(&v.to_be_bytes());
            }
            out.extend_from_slice(&(if self.v6 { 0x86DDu16 } else { 0x0800 }).to_be_bytes());
        }
        let l3 = out.len();
        let proto = match self.l4 {
            L4::Tcp { .. } => 6u8,
            L4::Udp => 17,
        };
        // Transport header + payload first (its length is needed by L3).
        let mut seg = Vec::new();
        seg.extend_from_slice(&self.sport.to_be_bytes());
        seg.extend_from_slice(&self.dport.to_be_bytes());
        match &self.l4 {
            L4::Tcp {
                seq,
                ack,
                flags,
                window,
                options,
            } => {
                assert_eq!(options.len() % 4, 0, "TCP options must be padded");
                seg.extend_from_slice(&seq.to_be_bytes());
                seg.extend_from_slice(&ack.to_be_bytes());
                seg.push((((20 + options.len()) / 4) as u8) << 4);
                seg.push(*flags);
                seg.extend_from_slice(&window.to_be_bytes());
                seg.extend_from_slice(&[0, 0, 0, 0]);
                seg.extend_from_slice(options);
            }
            L4::Udp => {
                seg.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                seg.extend_from_slice(&[0, 0]);
            }
        }
        seg.extend_from_slice(&self.payload);
        let csum_at = match self.l4 {
            L4::Tcp { .. } => 16,
            L4::Udp => 6,
        };
        let pseudo = if self.v6 {
            csum::pseudo_header_v6(&self.src6, &self.dst6, proto, seg.len() as u32)
        } else {
            csum::pseudo_header_v4(self.src4, self.dst4, proto, seg.len() as u32)
        };
        let c = if self.partial_csum {
            pseudo.fold()
        } else {
            let mut s: Sum = pseudo;
            s.add(&seg);
            let c = s.checksum();
            let c = if c == 0 && proto == 17 { 0xFFFF } else { c };
            csum::update16(c, 0, self.csum_delta)
        };
        seg[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());

        if self.v6 {
            let mut exts = Vec::new();
            let mut next = proto;
            for (i, (t, body)) in self.exts.iter().enumerate().rev() {
                let mut h = vec![next, ((body.len() + 2) / 8 - 1) as u8];
                h.extend_from_slice(body);
                assert_eq!(h.len() % 8, 0);
                exts.splice(0..0, h);
                next = *t;
                let _ = i;
            }
            let word = (6u32 << 28) | (u32::from(self.tos) << 20) | (self.flow_label & 0xFFFFF);
            out.extend_from_slice(&word.to_be_bytes());
            out.extend_from_slice(&((exts.len() + seg.len()) as u16).to_be_bytes());
            out.push(next);
            out.push(self.ttl);
            out.extend_from_slice(&self.src6);
            out.extend_from_slice(&self.dst6);
            out.extend_from_slice(&exts);
        } else {
            assert_eq!(self.ip_options.len() % 4, 0);
            let hl = 20 + self.ip_options.len();
            out.push(0x40 | (hl / 4) as u8);
            out.push(self.tos);
            out.extend_from_slice(&((hl + seg.len()) as u16).to_be_bytes());
            out.extend_from_slice(&self.id.to_be_bytes());
            let ff = (u16::from(self.df) << 14) | (u16::from(self.frag.0) << 13) | self.frag.1;
            out.extend_from_slice(&ff.to_be_bytes());
            out.push(self.ttl);
            out.push(proto);
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&self.src4);
            out.extend_from_slice(&self.dst4);
            out.extend_from_slice(&self.ip_options);
            let c = csum::checksum(&out[l3..l3 + hl]);
            out[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        }
        out.extend_from_slice(&seg);
        out.extend(std::iter::repeat_n(0u8, self.padding));
        out
    }
}

/// One change to a list of frames: in frame `which`, overwrite the byte at `at` with
/// `byte`, or (`cut`) truncate the frame there.
pub type Damage = (proptest::sample::Index, proptest::sample::Index, u8, bool);

/// Up to `max` [`Damage`]s.
pub fn damages(max: usize) -> impl proptest::strategy::Strategy<Value = Vec<Damage>> {
    use proptest::prelude::*;
    proptest::collection::vec(any::<Damage>(), 0..max)
}

/// Apply `damage` to `frames` (empty frames are left alone).
pub fn damage(frames: &mut [Vec<u8>], damage: &[Damage]) {
    if frames.is_empty() {
        return;
    }
    for (which, at, byte, cut) in damage {
        let f = &mut frames[which.index(frames.len())];
        if f.is_empty() {
            continue;
        }
        let at = at.index(f.len());
        if *cut {
            f.truncate(at);
        } else {
            f[at] = *byte;
        }
    }
}

/// Payload bytes that depend on their stream offset, so misplaced bytes are noticed.
pub fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len)
        .map(|i| (i.wrapping_mul(131) >> 3) as u8)
        .collect()
}

/// What came out of the coalescer, owned.
#[derive(Debug, Clone)]
pub struct Out {
    pub frame: Vec<u8>,
    pub meta: OffloadMeta,
    pub segments: u16,
    pub fixed_id: bool,
    pub cause: EmitCause,
}

impl Out {
    fn of(e: &Coalesced<'_>) -> Out {
        let mut frame = Vec::new();
        e.frame.copy_to(&mut frame);
        Out {
            frame,
            meta: e.frame.meta,
            segments: e.segments,
            fixed_id: e.fixed_id,
            cause: e.cause,
        }
    }

    /// Transport payload length (0 when it does not parse as TCP/UDP).
    pub fn payload_len(&self, start: Start) -> usize {
        parse(&self.frame, start).map_or(0, |l| l.payload_len())
    }
}

/// Push every frame, then flush; return what came out.
///
/// Every run is made twice: frame by frame in linear mode, and as one batch in gather
/// mode (`coalesce_batch`), which must emit the same frames byte for byte, with the same
/// metadata and counters, and without copying any payload.
pub fn run(cfg: GroConfig, frames: &[Vec<u8>], start: Start) -> (Vec<Out>, Coalescer) {
    let mut gro = Coalescer::new(cfg);
    let mut out = Vec::new();
    let mut sink = |e: Coalesced<'_>| out.push(Out::of(&e));
    for f in frames {
        gro.push(f, start, &mut sink);
    }
    gro.flush(&mut sink);
    let (gathered, batch) = run_gathered(cfg, frames, start);
    assert_eq!(
        gathered.len(),
        out.len(),
        "gather mode emitted another number of items"
    );
    for (n, (g, o)) in gathered.iter().zip(&out).enumerate() {
        assert_eq!(g.frame, o.frame, "gather mode, item {n}: other bytes");
        assert_eq!(
            (g.meta, g.segments, g.fixed_id, g.cause),
            (o.meta, o.segments, o.fixed_id, o.cause),
            "gather mode, item {n}: other metadata"
        );
    }
    assert_eq!(batch.stats(), gro.stats(), "gather mode counted otherwise");
    (out, gro)
}

/// `frames` as one batch through `Coalescer::coalesce_batch`, each item linearized with
/// `Frame::copy_to`. Asserts that every gathered payload is a slice of an input frame
/// (ending where that frame ends), not a copy.
pub fn run_gathered(cfg: GroConfig, frames: &[Vec<u8>], start: Start) -> (Vec<Out>, Coalescer) {
    let mut gro = Coalescer::new(cfg);
    let mut out = Vec::new();
    gro.coalesce_batch(frames, start, &mut |g| {
        for p in g.frame.payload() {
            let inside = frames.iter().any(|f| {
                let end = f.as_ptr_range().end;
                p.as_ptr_range().end == end && p.len() <= f.len()
            });
            assert!(
                inside,
                "a gathered payload is not the tail of an input frame"
            );
        }
        assert_eq!(
            g.frame.payload().count() > 0,
            matches!(g.cause, EmitCause::Flushed(_)),
            "payloads exactly for flows"
        );
        // The item began with frame `batch_index` of the batch.
        let first = &frames[g.batch_index().expect("every item began in the batch")];
        match g.frame.payload().next() {
            Some(p) => assert_eq!(p.as_ptr_range().end, first.as_ptr_range().end),
            None => assert_eq!(g.frame.head(), &first[..]),
        }
        let mut frame = Vec::new();
        g.frame.copy_to(&mut frame);
        assert_eq!(frame.len(), g.frame.len());
        out.push(Out {
            frame,
            meta: g.frame.meta,
            segments: g.segments,
            fixed_id: g.fixed_id,
            cause: g.cause,
        });
    });
    (out, gro)
}

/// Payload sizes of everything that came out, in order.
pub fn sizes(outs: &[Out], start: Start) -> Vec<usize> {
    outs.iter().map(|o| o.payload_len(start)).collect()
}
