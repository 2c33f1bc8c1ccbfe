//! Differential test: pvnet's UDP tunnel segmentation against the Linux kernel's.
//!
//! Random UDP tunnel super-frames (outer IPv4/IPv6, VXLAN or GENEVE with 0–128 bytes of
//! options, inner Ethernet with or without a VLAN tag, inner IPv4/IPv6, inner TCP with
//! random options and flags or inner UDP (USO), with and without UDP_TUNNEL_CSUM, random
//! gso_size and payload) are written with a 24-byte virtio_net_hdr into the kernel oracle
//! ([`KernelGso`]), whose `out` tap has no tunnel offload, so the kernel segments them
//! (`__skb_udp_tunnel_segment`); pvnet's [`Segmenter`] must make the same frames, byte for
//! byte.
//!
//! - Full mode against an `out` tap with no offloads at all (every checksum completed).
//! - Partial mode against an `out` tap with CSUM only (the inner checksum left partial,
//!   NEEDS_CSUM at the inner transport header; the outer one complete).
//! - Pass-through against an `out` tap with tunnel offload: the kernel hands the
//!   super-frame back whole with its own 24-byte header, which must describe it as pvnet's
//!   does.
//!
//! A "super-frame" whose inner payload fits one segment is not one to either side, but
//! the kernel (6.18) cannot forward it through this path: `virtio_net_hdr_tnl_to_skb` ORs
//! the tunnel GSO bits into the skb even though it is not GSO, and reading it from the
//! `out` tap then fails with EINVAL (`virtio_net_hdr_tnl_from_skb`: a tunnel type the tap
//! has not negotiated, or a tunnel header with no inner type). Those cases are checked
//! against the RFC arithmetic instead: pvnet treats them as plain packets with a partial
//! inner checksum, and completing it gives a good inner checksum. One whose payload fits
//! but not with its TCP options is dropped by the kernel (as in `gso_kernel_diff`):
//! checked, not compared.
//!
//! Reproduce a failure with `TUNNEL_DIFF_SEED=<seed>`; `TUNNEL_DIFF_CASES` changes the
//! number of cases per mode (default 5000). Needs root.

use std::time::{Duration, Instant};

use pvnet_core::frame::CsumState;
use pvnet_core::offload::checksum::{complete_partial_linear, verify_parsed, Verdict};
use pvnet_core::offload::gso::fuzz::{check_tunnel_segments, tunnel_segments, TunnelSpec};
use pvnet_core::offload::gso::CsumMode;
use pvnet_core::vnet::{gso, validate, Endian, HdrLen, VnetHdr, USO_MAX_SEGMENTS};
use pvnet_core::wire::{parse, Start};
use pvnet_linux::oracle::{KernelGso, OracleFrame, TUNNEL_HDR_LEN};
use pvnet_linux::tap::offload;
use pvnet_linux::testing::require_root;

use pvnet_linux::testing::TestRng as Rng;

/// A random tunnel super-frame and its header.
fn build(rng: &mut Rng) -> (TunnelSpec, Vec<u8>, [u8; TUNNEL_HDR_LEN]) {
    let tcp = rng.chance(70);
    let mut spec = TunnelSpec {
        outer_v6: rng.chance(50),
        inner_v6: rng.chance(50),
        geneve: rng.chance(50).then(|| rng.range(0, 32) * 4),
        inner_vlan: rng.chance(25),
        tcp_opts: tcp.then(|| {
            if rng.chance(50) {
                rng.range(0, 10) * 4
            } else {
                0
            }
        }),
        csum: rng.chance(50),
        payload: 0,
        gso_size: 0,
        seed: rng.next_u64(),
    };
    // Headers in front of the payload, counted from the outer IP header.
    let hdrs = if spec.outer_v6 { 40 } else { 20 }
        + 8
        + 8
        + spec.geneve.unwrap_or(0)
        + 14
        + if spec.inner_vlan { 4 } else { 0 }
        + if spec.inner_v6 { 40 } else { 20 }
        + spec.tcp_opts.map_or(8, |o| 20 + o);
    // Within 64 KiB of outer IP packet (IPv6: of payload after the fixed header).
    let max = 65_535 - hdrs + if spec.outer_v6 { 40 } else { 0 };
    let max = max.min(64_000);
    let len = match rng.range(0, 19) {
        0 => rng.range(1, 200),
        1..=6 => rng.range(1, 20_000),
        _ => rng.range(1, max),
    };
    let mut size = match rng.range(0, 3) {
        0 => rng.range(100, 1500),
        1 => 1398,
        _ => rng.range(100, 9000),
    };
    if !tcp {
        // pvnet takes (and makes) at most 64 USO segments.
        size = size.max(len.div_ceil(USO_MAX_SEGMENTS));
    }
    spec.payload = len;
    spec.gso_size = size as u16;
    let (frame, hdr) = spec.build();
    let mut wire = [0u8; TUNNEL_HDR_LEN];
    let n = hdr
        .encode(&mut wire, HdrLen::V24, Endian::Little)
        .expect("24 bytes");
    assert_eq!(n, TUNNEL_HDR_LEN);
    if tcp && rng.chance(30) {
        wire[1] |= gso::ECN;
    }
    (spec, frame, wire)
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

#[derive(Default)]
struct Stats {
    cases: usize,
    segments: usize,
    not_gso: usize,
    kernel_drops: usize,
    csum: usize,
    geneve: usize,
    /// Outer UDP checksums that computed to 0 and went out as 0xFFFF.
    mangled: usize,
}

fn run(mode: CsumMode, out_offloads: u32, seed: u64, cases: usize) -> Stats {
    let mut k = KernelGso::with_hdr_len(TUNNEL_HDR_LEN, out_offloads).expect("build oracle");
    k.set_expect_timeout(Duration::from_millis(1500));
    k.set_idle_timeout(Duration::from_millis(40));
    // A frame that is not GSO after all must not be dropped for its size by the bridge.
    for dev in ["in", "out", "br0"] {
        k.netns()
            .run(&["link", "set", "dev", dev, "mtu", "65000"])
            .expect("raise MTU");
    }
    let stream = match mode {
        CsumMode::Full => 0,
        CsumMode::Partial => 0x9e37_79b9_7f4a_7c15,
    };
    let mut rng = Rng((seed ^ stream) | 1);
    let mut st = Stats::default();
    let mut kout: Vec<OracleFrame> = Vec::new();
    for n in 0..cases {
        let (spec, frame, wire) = build(&mut rng);
        let ctx = format!(
            "seed={seed} case={n} mode={mode:?} {spec:?} gso_type={:#04x}",
            wire[1]
        );
        let hdr = VnetHdr::decode(&wire, HdrLen::V24, Endian::Little).expect("decode");
        let v = validate(&hdr, &frame, Start::Ethernet)
            .unwrap_or_else(|e| panic!("{ctx}: pvnet refused: {e}"));
        let size = usize::from(spec.gso_size);
        let opts = spec.tcp_opts.unwrap_or(0);
        if v.meta().gso.is_none() && spec.payload + opts > size {
            // The kernel counts 20 bytes of TCP header, not the options, in its "is it
            // GSO" test, then tcp_gso_segment refuses a payload that fits one segment.
            kout.clear();
            k.segment(&wire, &frame, &mut kout).expect("write");
            assert!(kout.is_empty(), "{ctx}: kernel no longer drops it");
            st.kernel_drops += 1;
            continue;
        }
        let expect: Vec<(Vec<u8>, CsumState)> = match v.meta().gso {
            Some(_) => {
                let segs = tunnel_segments(&frame, &v, mode, 64)
                    .unwrap_or_else(|e| panic!("{ctx}: pvnet cannot segment: {e}"));
                check_tunnel_segments(&frame, &v, mode, &segs);
                segs
            }
            None => {
                // Not GSO: a plain packet with a partial inner checksum, which the kernel
                // cannot hand back (see the module docs). Completing it must give a good
                // inner checksum; the outer one is left as the sender wrote it.
                st.not_gso += 1;
                let CsumState::Partial { start, offset } = v.meta().csum else {
                    panic!("{ctx}: no partial checksum");
                };
                let mut f = frame.clone();
                complete_partial_linear(&mut f, usize::from(start), usize::from(offset))
                    .expect("field in the frame");
                let inner_nh = usize::from(hdr.tunnel.expect("24 bytes").inner_nh_offset);
                let inner = parse(&f[inner_nh..], Start::Ip).expect("inner packet parses");
                assert_eq!(
                    verify_parsed(&f[inner_nh..], &inner).l4,
                    Verdict::Good,
                    "{ctx}: inner checksum"
                );
                continue;
            }
        };
        kout.clear();
        match k.segment_expect(&wire, &frame, expect.len(), &mut kout) {
            Ok(()) => {}
            Err(e) => panic!(
                "{ctx}: kernel gave {} frames, pvnet {} ({e}); kernel sizes {:?}, ours {:?}\n\
                 vnet hdr {wire:02x?}\n{}",
                kout.len(),
                expect.len(),
                kout.iter().map(|f| f.1.len()).collect::<Vec<_>>(),
                expect.iter().map(|f| f.0.len()).collect::<Vec<_>>(),
                hex(&frame[..frame.len().min(200)])
            ),
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
            if spec.csum {
                let th = usize::from(hdr.tunnel.expect("24 bytes").outer_th_offset);
                st.mangled += usize::from(oframe[th + 6..th + 8] == [0xff, 0xff]);
            }
            let needs_csum = khdr[0] & 1 != 0;
            let cs = u16::from_le_bytes([khdr[6], khdr[7]]);
            let co = u16::from_le_bytes([khdr[8], khdr[9]]);
            assert_eq!(khdr[1], 0, "{ctx}: segment {i} has gso_type {:#x}", khdr[1]);
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
        }
        st.cases += 1;
        st.segments += expect.len();
        st.csum += usize::from(spec.csum);
        st.geneve += usize::from(spec.geneve.is_some());
    }
    assert_eq!(k.foreign_frames(), 0, "foreign frames on the out tap");
    st
}

fn seed() -> u64 {
    pvnet_linux::testing::env_seed("TUNNEL_DIFF_SEED")
}

fn cases() -> usize {
    pvnet_linux::testing::env_count("TUNNEL_DIFF_CASES", 5000)
}

fn report(name: &str, seed: u64, st: &Stats, took: Duration) {
    eprintln!(
        "{name}: seed={seed} {} super-frames ({} with the outer checksum, {} GENEVE), {} \
         segments ({} outer checksums 0xffff), {} not GSO, {} dropped by the kernel as \
         expected, {took:?}",
        st.cases, st.csum, st.geneve, st.segments, st.mangled, st.not_gso, st.kernel_drops
    );
}

#[test]
fn tunnel_full_mode_matches_kernel_without_offloads() {
    require_root("the kernel GSO oracle (a namespace, a bridge and taps)");
    let seed = seed();
    eprintln!("TUNNEL_DIFF_SEED={seed}");
    let t = Instant::now();
    let st = run(CsumMode::Full, 0, seed, cases());
    report("full", seed, &st, t.elapsed());
    assert!(st.cases > cases() / 2, "too few cases compared");
}

#[test]
fn tunnel_partial_mode_matches_kernel_with_csum_offload() {
    require_root("the kernel GSO oracle (a namespace, a bridge and taps)");
    let seed = seed();
    eprintln!("TUNNEL_DIFF_SEED={seed}");
    let t = Instant::now();
    let st = run(CsumMode::Partial, offload::CSUM, seed, cases());
    report("partial", seed, &st, t.elapsed());
    assert!(st.cases > cases() / 2, "too few cases compared");
}

/// An `out` tap that takes tunnel super-frames gets them whole, with a 24-byte header that
/// says what pvnet's [`VnetHdr::from_meta`] says (but `hdr_len`, the kernel's linear
/// length, and the hash fields).
#[test]
fn tunnel_pass_through_header_matches_kernel() {
    require_root("the kernel GSO oracle (a namespace, a bridge and taps)");
    let out = offload::CSUM
        | offload::TSO4
        | offload::TSO6
        | offload::TSO_ECN
        | offload::USO4
        | offload::USO6
        | offload::UDP_TUNNEL_GSO
        | offload::UDP_TUNNEL_GSO_CSUM;
    let mut k = KernelGso::with_hdr_len(TUNNEL_HDR_LEN, out).expect("build oracle");
    assert_eq!(
        k.out_offloads(),
        out,
        "this kernel should take the tunnel offload bits"
    );
    let seed = seed();
    let mut rng = Rng(seed | 1);
    let mut kout: Vec<OracleFrame> = Vec::new();
    let mut compared = 0;
    for n in 0..200 {
        let (spec, frame, wire) = build(&mut rng);
        let ctx = format!("seed={seed} case={n} {spec:?}");
        let hdr = VnetHdr::decode(&wire, HdrLen::V24, Endian::Little).expect("decode");
        let v = validate(&hdr, &frame, Start::Ethernet).expect("valid");
        if v.meta().gso.is_none() {
            continue;
        }
        kout.clear();
        k.segment_expect(&wire, &frame, 1, &mut kout)
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let (khdr, kframe) = &kout[0];
        assert_eq!(kframe, &frame, "{ctx}: the super-frame changed");
        let theirs = VnetHdr::decode(khdr, HdrLen::V24, Endian::Little).expect("decode");
        let ours = VnetHdr::from_meta(v.meta(), v.layers());
        let strip = |h: VnetHdr| VnetHdr {
            hdr_len: 0,
            tunnel: h.tunnel.map(|t| pvnet_core::vnet::HashTunnel {
                hash_value: 0,
                hash_report: 0,
                ..t
            }),
            ..h
        };
        assert_eq!(strip(theirs), strip(ours), "{ctx}");
        // And the kernel's header validates to the same metadata.
        let again = validate(&theirs, kframe, Start::Ethernet).expect("kernel header valid");
        assert_eq!(again.meta(), v.meta(), "{ctx}");
        compared += 1;
    }
    assert!(compared > 100, "only {compared} super-frames compared");
}
