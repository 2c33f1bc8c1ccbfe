//! Differential test: pvnet's software GSO against the Linux kernel's.
//!
//! Randomized super-frames (TCPv4 with and without IP options, TCPv6 with and without
//! extension headers, USO v4/v6, UFO v4/v6, 0–2 VLAN tags, random MSS, payload length,
//! TCP flags and options) are written into the kernel oracle ([`KernelGso`]) and segmented
//! by [`Segmenter`]; the frames must be byte-for-byte identical.
//!
//! - Full mode against an `out` tap with no offloads (the kernel completes every checksum).
//! - Partial mode against an `out` tap with CSUM only (the kernel leaves NEEDS_CSUM with a
//!   pseudo-header sum): frames equal and csum_start/csum_offset equal to our meta.
//!
//! Reproduce a failure with `GSO_DIFF_SEED=<seed>`; `GSO_DIFF_CASES` changes the number of
//! cases per mode (default 5000, so 10,000 super-frames per run, a few seconds). Needs root.

use std::time::{Duration, Instant};

use pvnet_core::frame::{CsumState, Gso, GsoKind};
use pvnet_core::offload::gso::{CsumMode, GsoOptions, SegmentBuf, Segmenter};
use pvnet_core::vnet::{validate_gso, USO_MAX_SEGMENTS};
use pvnet_core::wire::{parse, Start};
use pvnet_linux::oracle::{KernelGso, OracleFrame, VNET_HDR_LEN};
use pvnet_linux::tap::offload;
use pvnet_linux::testing::require_root;

use pvnet_linux::testing::TestRng as Rng;

const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SRC4: [u8; 4] = [192, 0, 2, 1];
const DST4: [u8; 4] = [198, 51, 100, 7];
const SRC6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const DST6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xab, 0xcd, 2,
];

const GSO_TCPV4: u8 = 1;
const GSO_UDP: u8 = 3;
const GSO_TCPV6: u8 = 4;
const GSO_UDP_L4: u8 = 5;
const GSO_ECN: u8 = 0x80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp4,
    Tcp6,
    Uso4,
    Uso6,
    Ufo4,
    Ufo6,
}

/// A generated super-frame with its vnet header.
struct Case {
    kind: Kind,
    desc: String,
    frame: Vec<u8>,
    gso: Gso,
    hdr: [u8; VNET_HDR_LEN],
    tcp: bool,
    /// Offset of the TCP options (TCP) / payload (UDP) and the payload length.
    payload_at: usize,
    payload_len: usize,
}

fn sum16(data: &[u8]) -> u32 {
    let mut acc = 0u32;
    let mut it = data.chunks_exact(2);
    for c in &mut it {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = it.remainder() {
        acc += u32::from(*b) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn build(rng: &mut Rng, kind: Kind) -> Case {
    let v6 = matches!(kind, Kind::Tcp6 | Kind::Uso6 | Kind::Ufo6);
    let tcp = matches!(kind, Kind::Tcp4 | Kind::Tcp6);
    let mut f = Vec::with_capacity(66000);
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    let vlans = rng.range(0, 2);
    let mut desc = format!("{kind:?} vlans={vlans}");
    for t in 0..vlans {
        // Outer S-tag for QinQ, else a C-tag.
        let tpid: u16 = if vlans == 2 && t == 0 { 0x88a8 } else { 0x8100 };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(rng.range(1, 4094) as u16).to_be_bytes());
    }
    f.extend_from_slice(&(if v6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
    let l3 = f.len();

    // Network header (lengths filled in below).
    let mut ext_len = 0;
    if v6 {
        f.extend_from_slice(&[0x60 | rng.byte() & 0x0f, rng.byte(), rng.byte(), rng.byte()]);
        f.extend_from_slice(&[0, 0, 0, rng.range(1, 255) as u8]);
        f.extend_from_slice(&SRC6);
        f.extend_from_slice(&DST6);
        // Extension headers: none, Hop-by-Hop, Destination options, or both.
        let exts = if kind == Kind::Ufo6 {
            // The kernel's IPv6 UFO counts unfragmentable extension headers into the
            // fragment offsets of every fragment after the first (ipv6_gso_segment adds
            // payload_len - 8 per fragment), so its fragments do not reassemble: compare
            // only without extension headers (pvnet's own handling is unit-tested).
            0
        } else {
            rng.range(0, 3)
        };
        let mut chain: Vec<u8> = Vec::new();
        if exts & 1 != 0 {
            chain.push(ext_hdr(&mut f, rng, 0));
        }
        if exts & 2 != 0 {
            chain.push(ext_hdr(&mut f, rng, 60));
        }
        desc += &format!(" exts={exts}");
        // Link the chain: the fixed header names the first, each names the next.
        let upper = if tcp { 6 } else { 17 };
        let mut at = l3 + 6;
        let mut p = l3 + 40;
        for &t in &chain {
            f[at] = t;
            at = p;
            p += (usize::from(f[p + 1]) + 1) * 8;
        }
        f[at] = upper;
        ext_len = p - (l3 + 40);
    } else {
        let opt_words = if rng.chance(20) { rng.range(1, 10) } else { 0 };
        let ihl = 5 + opt_words;
        f.push(0x40 | ihl as u8);
        f.push(rng.byte()); // DSCP + ECN
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&(rng.next_u64() as u16).to_be_bytes());
        f.extend_from_slice(&(if rng.chance(50) { 0x4000u16 } else { 0 }).to_be_bytes());
        f.push(rng.range(1, 255) as u8);
        f.push(if tcp { 6 } else { 17 });
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&SRC4);
        f.extend_from_slice(&DST4);
        // Options: NOPs and an End of list, a harmless pattern the kernel never parses in
        // the forwarding path.
        for i in 0..opt_words * 4 {
            f.push(if i + 1 == opt_words * 4 { 0 } else { 1 });
        }
        if opt_words > 0 {
            desc += &format!(" ipopts={}", opt_words * 4);
        }
    }
    let l4 = f.len();

    // Transport header.
    let thlen;
    let mut ecn = false;
    if tcp {
        let opt_words = if rng.chance(60) { rng.range(0, 10) } else { 0 };
        thlen = 20 + opt_words * 4;
        f.extend_from_slice(&(rng.range(1, 65535) as u16).to_be_bytes());
        f.extend_from_slice(&(rng.range(1, 65535) as u16).to_be_bytes());
        f.extend_from_slice(&(rng.next_u64() as u32).to_be_bytes());
        f.extend_from_slice(&(rng.next_u64() as u32).to_be_bytes());
        f.push(((thlen / 4) as u8) << 4);
        let mut flags = 0x10u8; // ACK
        for bit in [0x01u8, 0x08, 0x80, 0x40, 0x20] {
            if rng.chance(30) {
                flags |= bit;
            }
        }
        f.push(flags);
        f.extend_from_slice(&(rng.next_u64() as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]); // checksum, filled below
        f.extend_from_slice(
            &(if flags & 0x20 != 0 {
                rng.next_u64() as u16
            } else {
                0
            })
            .to_be_bytes(),
        );
        // Options: a timestamp when there is room, NOP padding otherwise.
        let mut left = opt_words * 4;
        if left >= 12 && rng.chance(70) {
            f.extend_from_slice(&[1, 1, 8, 10]);
            f.extend_from_slice(&(rng.next_u64() as u32).to_be_bytes());
            f.extend_from_slice(&(rng.next_u64() as u32).to_be_bytes());
            left -= 12;
        }
        f.extend(std::iter::repeat_n(1u8, left));
        ecn = rng.chance(50);
        desc += &format!(" flags={flags:#04x} thlen={thlen} ecnbit={ecn}");
    } else {
        thlen = 8;
        f.extend_from_slice(&(rng.range(1, 65535) as u16).to_be_bytes());
        f.extend_from_slice(&(rng.range(1, 65535) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0]);
    }
    let payload_at = f.len();

    // Payload and segment size, within the 64 KiB IP limit.
    let hdr_after_l3 = payload_at - l3;
    let max_payload = if v6 {
        65535 - (hdr_after_l3 - 40)
    } else {
        65535 - hdr_after_l3
    }
    .min(65000);
    let mut len = match rng.range(0, 9) {
        0 => rng.range(1, 200),
        1..=3 => rng.range(1, 20000),
        _ => rng.range(1, max_payload),
    };
    let mut size = match rng.range(0, 3) {
        0 => rng.range(100, 1500),
        1 => 1448,
        _ => rng.range(100, 9000),
    };
    match kind {
        // Mainline kernels take at most 128 USO segments, older ones 64; pvnet takes (and
        // makes) at most USO_MAX_SEGMENTS = 64, refusing more in validation.
        Kind::Uso4 | Kind::Uso6 => size = size.max(len.div_ceil(USO_MAX_SEGMENTS)),
        // Fragments carry multiples of 8 bytes.
        Kind::Ufo4 | Kind::Ufo6 => size = (size & !7).max(8),
        _ => {}
    }
    if kind == Kind::Ufo6 || kind == Kind::Ufo4 {
        len = len.min(max_payload - 8);
    }
    for _ in 0..len {
        f.push(rng.byte());
    }
    desc += &format!(" len={len} size={size}");

    // Lengths and checksums.
    let ip_len = f.len() - l3;
    let l4_len = f.len() - l4;
    if v6 {
        f[l3 + 4..l3 + 6].copy_from_slice(&((ip_len - 40) as u16).to_be_bytes());
    } else {
        f[l3 + 2..l3 + 4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        let c = !fold(sum16(&f[l3..l4]));
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    let proto = if tcp { 6u32 } else { 17 };
    let pseudo = if v6 {
        sum16(&SRC6) + sum16(&DST6) + proto + l4_len as u32
    } else {
        sum16(&SRC4) + sum16(&DST4) + proto + l4_len as u32
    };
    let field = if tcp { l4 + 16 } else { l4 + 6 };
    if !tcp {
        f[l4 + 4..l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    }
    // The pseudo-header sum, as a sender using checksum offload leaves it.
    f[field..field + 2].copy_from_slice(&fold(pseudo).to_be_bytes());
    let _ = ext_len;

    let gso_kind = match kind {
        Kind::Tcp4 => GsoKind::Tcpv4,
        Kind::Tcp6 => GsoKind::Tcpv6,
        Kind::Uso4 | Kind::Uso6 => GsoKind::UdpL4,
        Kind::Ufo4 | Kind::Ufo6 => GsoKind::Ufo,
    };
    let mut gso_type = match gso_kind {
        GsoKind::Tcpv4 => GSO_TCPV4,
        GsoKind::Tcpv6 => GSO_TCPV6,
        GsoKind::UdpL4 => GSO_UDP_L4,
        GsoKind::Ufo => GSO_UDP,
    };
    if ecn {
        gso_type |= GSO_ECN;
    }
    let mut hdr = [0u8; VNET_HDR_LEN];
    hdr[0] = 1; // NEEDS_CSUM
    hdr[1] = gso_type;
    hdr[2..4].copy_from_slice(&(payload_at as u16).to_le_bytes());
    hdr[4..6].copy_from_slice(&(size as u16).to_le_bytes());
    hdr[6..8].copy_from_slice(&(l4 as u16).to_le_bytes());
    hdr[8..10].copy_from_slice(&(if tcp { 16u16 } else { 6 }).to_le_bytes());
    let _ = thlen;
    Case {
        kind,
        desc,
        frame: f,
        gso: Gso {
            kind: gso_kind,
            size: size as u16,
            ecn,
            tunnel: None,
        },
        hdr,
        tcp,
        payload_at: l4 + if tcp { 20 } else { 8 },
        payload_len: len,
    }
}

/// Append an IPv6 extension header of type `t` (its Next Header patched by the caller) with
/// PadN filling; return `t`.
fn ext_hdr(f: &mut Vec<u8>, rng: &mut Rng, t: u8) -> u8 {
    let units = rng.range(0, 2);
    let len = (units + 1) * 8;
    f.push(0);
    f.push(units as u8);
    // PadN option covering the rest.
    f.push(1);
    f.push((len - 4) as u8);
    f.extend(std::iter::repeat_n(0u8, len - 4));
    t
}

/// Our segments of `frame`, linearized, with their meta.
fn ours(case: &Case, mode: CsumMode, frag_id: u32) -> Result<Vec<(Vec<u8>, CsumState)>, String> {
    let v = validate_gso(&case.frame, Start::Ethernet, case.gso)
        .map_err(|e| format!("validate: {e}"))?;
    let opts = GsoOptions {
        csum: mode,
        fixed_id: false,
        ipv6_frag_id: frag_id,
    };
    let mut seg = Segmenter::from_linear(&case.frame, &v, opts).map_err(|e| e.to_string())?;
    let mut buf = SegmentBuf::with_capacity(64);
    let mut out = Vec::new();
    while !seg.is_done() {
        let batch = seg.next_batch(&mut buf);
        for s in batch.iter() {
            let mut v = Vec::new();
            s.copy_to(&mut v);
            out.push((v, s.meta.csum));
        }
    }
    Ok(out)
}

fn hex(b: &[u8]) -> String {
    b.chunks(32)
        .enumerate()
        .map(|(i, c)| {
            format!(
                "  {:04x}: {}\n",
                i * 32,
                c.iter().map(|x| format!("{x:02x}")).collect::<String>()
            )
        })
        .collect()
}

/// Make segment `j`'s Full-mode L4 checksum compute to zero by rewriting one payload word,
/// so that the 0 / 0xFFFF choice of every path is exercised.
fn force_zero_checksum(case: &mut Case, rng: &mut Rng) {
    let Ok(segs) = ours(case, CsumMode::Full, 0) else {
        return;
    };
    if segs.is_empty() || matches!(case.kind, Kind::Ufo4 | Kind::Ufo6) {
        return;
    }
    let layers = parse(&case.frame, Start::Ethernet).expect("parse");
    let j = rng.range(0, segs.len() - 1);
    let seg_payload = segs[j].0.len() - layers.payload_offset;
    if seg_payload < 2 {
        return;
    }
    let size = usize::from(case.gso.size);
    let base = layers.payload_offset + if segs.len() == 1 { 0 } else { j * size };
    // An even offset inside the segment's payload (the L4 header length is even).
    let at = base + (rng.range(0, seg_payload - 2) & !1);
    case.frame[at] = 0;
    case.frame[at + 1] = 0;
    let segs = ours(case, CsumMode::Full, 0).expect("segment");
    let seg = &segs[j].0;
    let l4 = layers.l4_offset;
    let field = l4
        + if matches!(case.kind, Kind::Tcp4 | Kind::Tcp6) {
            16
        } else {
            6
        };
    let mut c = u16::from_be_bytes([seg[field], seg[field + 1]]);
    if c == 0xFFFF {
        // Already a (mangled) zero.
        c = 0;
    }
    // Adding word w = c to a sum whose complement is c makes the sum 0xFFFF.
    case.frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    case.desc += &format!(" zero-csum-seg={j}");
}

struct Stats {
    cases: usize,
    segments: usize,
    passthrough: usize,
    zero_csums: usize,
    kernel_drops: usize,
}

fn run(mode: CsumMode, out_offloads: u32, seed: u64, cases: usize) -> Stats {
    let mut k = KernelGso::new(out_offloads).expect("build oracle");
    k.set_expect_timeout(Duration::from_millis(1500));
    k.set_idle_timeout(Duration::from_millis(40));
    // A super-frame whose payload fits in one segment is not GSO to the kernel, and the
    // bridge drops a non-GSO frame longer than the port MTU: raise it so the pass-through
    // cases (up to 9000-byte segments) are forwarded like the rest.
    for dev in ["in", "out", "br0"] {
        k.netns()
            .run(&["link", "set", "dev", dev, "mtu", "65000"])
            .expect("raise MTU");
    }
    // The two modes see different cases from the same seed.
    let stream = match mode {
        CsumMode::Full => 0,
        CsumMode::Partial => 0x9e37_79b9_7f4a_7c15,
    };
    let mut rng = Rng((seed ^ stream) | 1);
    let kinds = [
        Kind::Tcp4,
        Kind::Tcp4,
        Kind::Tcp6,
        Kind::Tcp6,
        Kind::Uso4,
        Kind::Uso6,
        Kind::Ufo4,
        Kind::Ufo6,
    ];
    let mut st = Stats {
        cases: 0,
        segments: 0,
        passthrough: 0,
        zero_csums: 0,
        kernel_drops: 0,
    };
    let mut kout: Vec<OracleFrame> = Vec::new();
    for n in 0..cases {
        let kind = kinds[rng.range(0, kinds.len() - 1)];
        let mut case = build(&mut rng, kind);
        if rng.chance(10) {
            force_zero_checksum(&mut case, &mut rng);
        }
        let ctx = format!("seed={seed} case={n} mode={mode:?} {}", case.desc);
        // virtio_net_hdr_to_skb decides "GSO or not" on payload + TCP options (it counts a
        // 20-byte TCP header), tcp_gso_segment on the payload alone: a frame whose payload
        // fits gso_size but not with its options is marked GSO and then dropped by
        // tcp_gso_segment. pvnet passes it through; check the kernel does drop it.
        let opts_len = case.frame.len() - case.payload_at - case.payload_len;
        if case.tcp
            && case.payload_len <= usize::from(case.gso.size)
            && case.payload_len + opts_len > usize::from(case.gso.size)
        {
            kout.clear();
            k.segment(&case.hdr, &case.frame, &mut kout).expect("write");
            assert!(kout.is_empty(), "{ctx}: kernel no longer drops it");
            st.kernel_drops += 1;
            continue;
        }
        let expect = ours(&case, mode, 0).unwrap_or_else(|e| panic!("{ctx}: pvnet refused: {e}"));
        kout.clear();
        match k.segment_expect(&case.hdr, &case.frame, expect.len(), &mut kout) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                panic!(
                    "{ctx}: kernel refused the super-frame: {e}\n{}",
                    hex(&case.frame[..80.min(case.frame.len())])
                )
            }
            Err(e) => panic!(
                "{ctx}: kernel gave {} frames, pvnet {} ({e}); kernel sizes {:?}, ours {:?}\n\
                 vnet hdr {:02x?}\n{}",
                kout.len(),
                expect.len(),
                kout.iter().map(|f| f.1.len()).collect::<Vec<_>>(),
                expect.iter().map(|f| f.0.len()).collect::<Vec<_>>(),
                case.hdr,
                hex(&case.frame[..case.frame.len().min(128)])
            ),
        }
        // IPv6 UFO: the kernel picks the fragment ID with a secret hash; adopt it.
        let expect = if kind == Kind::Ufo6 && expect.len() > 1 {
            let layers = parse(&kout[0].1, Start::Ethernet).expect("kernel frame parses");
            // The Fragment header ends the kernel's header chain (nothing fragmentable
            // precedes the UDP header in these cases).
            let fh = layers.l3_offset + layers.l3_len - 8;
            let id = u32::from_be_bytes(kout[0].1[fh + 4..fh + 8].try_into().expect("4 bytes"));
            ours(&case, mode, id).expect("segment")
        } else {
            expect
        };
        if expect.len() == 1 {
            st.passthrough += 1;
        }
        for (i, ((khdr, kframe), (oframe, ocsum))) in kout.iter().zip(&expect).enumerate() {
            if kframe != oframe {
                let first = kframe
                    .iter()
                    .zip(oframe)
                    .position(|(a, b)| a != b)
                    .unwrap_or(kframe.len().min(oframe.len()));
                panic!(
                    "{ctx}: segment {i} of {} differs at offset {first} (kernel {} bytes, \
                     pvnet {} bytes)\nkernel vnet hdr {khdr:02x?}\nkernel:\n{}pvnet:\n{}",
                    expect.len(),
                    kframe.len(),
                    oframe.len(),
                    hex(&kframe[..kframe.len().min(first + 64)]),
                    hex(&oframe[..oframe.len().min(first + 64)])
                );
            }
            let needs_csum = khdr[0] & 1 != 0;
            let cs = u16::from_le_bytes([khdr[6], khdr[7]]);
            let co = u16::from_le_bytes([khdr[8], khdr[9]]);
            match *ocsum {
                CsumState::Partial { start, offset } => assert!(
                    needs_csum && (cs, co) == (start, offset),
                    "{ctx}: segment {i}: kernel vnet hdr {khdr:02x?}, pvnet Partial {{ {start}, {offset} }}"
                ),
                _ => assert!(
                    !needs_csum,
                    "{ctx}: segment {i}: kernel left NEEDS_CSUM ({khdr:02x?}), pvnet completed it"
                ),
            }
            let l4 = parse(oframe, Start::Ethernet).expect("parse").l4_offset;
            let field = if matches!(kind, Kind::Tcp4 | Kind::Tcp6) {
                16
            } else {
                6
            };
            if mode == CsumMode::Full
                && matches!(
                    oframe.get(l4 + field..l4 + field + 2),
                    Some([0, 0] | [0xff, 0xff])
                )
            {
                st.zero_csums += 1;
            }
        }
        st.cases += 1;
        st.segments += expect.len();
    }
    assert_eq!(k.foreign_frames(), 0, "foreign frames on the out tap");
    st
}

fn seed() -> u64 {
    pvnet_linux::testing::env_seed("GSO_DIFF_SEED")
}

fn cases() -> usize {
    pvnet_linux::testing::env_count("GSO_DIFF_CASES", 5000)
}

fn report(name: &str, seed: u64, st: &Stats, took: Duration) {
    eprintln!(
        "{name}: seed={seed} {} super-frames, {} segments, {} passed through, {} zero \
         checksums, {} dropped by the kernel as expected, {took:?}",
        st.cases, st.segments, st.passthrough, st.zero_csums, st.kernel_drops
    );
}

#[test]
fn full_mode_matches_kernel_without_offloads() {
    require_root("the kernel GSO oracle (a namespace, a bridge and taps)");
    let seed = seed();
    eprintln!("GSO_DIFF_SEED={seed}");
    let t = Instant::now();
    let st = run(CsumMode::Full, 0, seed, cases());
    report("full", seed, &st, t.elapsed());
}

#[test]
fn partial_mode_matches_kernel_with_csum_offload() {
    require_root("the kernel GSO oracle (a namespace, a bridge and taps)");
    let seed = seed();
    eprintln!("GSO_DIFF_SEED={seed}");
    let t = Instant::now();
    let st = run(CsumMode::Partial, offload::CSUM, seed, cases());
    report("partial", seed, &st, t.elapsed());
}
