//! The merge and flush cases of the Linux GRO selftest (tools/testing/selftests/net/gro.c),
//! rebuilt as table-driven tests: the same packet sequences (payload 100, start seq 100,
//! MSS 4096 - 60 for "large"), each followed by the explicit flush that the selftest's FIN
//! packet stands for, and the payload sizes the selftest expects to come out. Every case
//! runs over IPv4 and IPv6 where the selftest does.

#[path = "gro_util.rs"]
mod util;

use pvnet_core::offload::checksum::verify_frame;
use pvnet_core::offload::gro::GroConfig;
use pvnet_core::wire::Start;
use util::*;

const PAYLOAD_LEN: usize = 100;
const START_SEQ: u32 = 100;
const MSS: usize = 4096 - 20 - 40;
const MAX_PAYLOAD: usize = 65535 - 20 - 40;

fn seg(v6: bool, off: usize, len: usize) -> Frame {
    Frame::tcp(v6, START_SEQ + off as u32, len)
}

fn b(f: Frame) -> Vec<u8> {
    f.build()
}

/// TCP options as the selftest lays them out: two NOPs and a timestamp in one of three
/// orders.
fn ts_options(ts: u32, order: u8) -> Vec<u8> {
    let mut t = vec![8, 10];
    t.extend_from_slice(&ts.to_ne_bytes());
    t.extend_from_slice(&[0; 4]);
    match order {
        0 => [vec![1, 1], t].concat(),
        1 => [vec![1], t, vec![1]].concat(),
        _ => [t, vec![1, 1]].concat(),
    }
}

struct Case {
    name: &'static str,
    v4: bool,
    v6: bool,
    frames: fn(bool) -> Vec<Vec<u8>>,
    expect: fn(bool) -> Vec<usize>,
}

fn cases() -> Vec<Case> {
    vec![
        // --- data ---
        Case {
            name: "data same size coalesces",
            v4: true,
            v6: true,
            frames: |v6| vec![b(seg(v6, 0, 100)), b(seg(v6, 100, 100))],
            expect: |_| vec![200],
        },
        Case {
            name: "data large then small coalesces",
            v4: true,
            v6: true,
            frames: |v6| vec![b(seg(v6, 0, 100)), b(seg(v6, 100, 50))],
            expect: |_| vec![150],
        },
        Case {
            name: "data small then large does not",
            v4: true,
            v6: true,
            frames: |v6| vec![b(seg(v6, 0, 50)), b(seg(v6, 50, 100))],
            expect: |_| vec![50, 100],
        },
        // --- ack ---
        Case {
            name: "duplicate ack and pure ack",
            v4: true,
            v6: true,
            frames: |v6| {
                vec![
                    b(seg(v6, 0, 0)),
                    b(seg(v6, 0, 0)),
                    b(seg(v6, 0, 0).ack(101)),
                ]
            },
            expect: |_| vec![0, 0, 0],
        },
        // --- flags: one flagged packet in the middle of five ---
        Case {
            name: "psh ends coalescing",
            v4: true,
            v6: true,
            frames: |v6| flagged(v6, PSH),
            expect: |_| vec![300, 200],
        },
        Case {
            name: "syn ends coalescing",
            v4: true,
            v6: true,
            frames: |v6| flagged(v6, SYN),
            expect: |_| vec![200, 0, 200],
        },
        Case {
            name: "rst ends coalescing",
            v4: true,
            v6: true,
            frames: |v6| flagged(v6, RST),
            expect: |_| vec![200, 0, 200],
        },
        Case {
            name: "urg ends coalescing",
            v4: true,
            v6: true,
            frames: |v6| flagged(v6, URG),
            expect: |_| vec![200, 0, 200],
        },
        // --- tcp ---
        Case {
            name: "changed checksum does not coalesce",
            v4: true,
            v6: true,
            frames: |v6| {
                let mut bad = seg(v6, 100, 100);
                bad.csum_delta = 1;
                vec![b(seg(v6, 0, 100)), b(bad)]
            },
            expect: |_| vec![100, 100],
        },
        Case {
            name: "wrong seq number does not coalesce",
            v4: true,
            v6: true,
            frames: |v6| vec![b(seg(v6, 0, 100)), b(seg(v6, 101, 100))],
            expect: |_| vec![100, 100],
        },
        Case {
            name: "different timestamp does not coalesce",
            v4: true,
            v6: true,
            frames: |v6| {
                vec![
                    b(seg(v6, 0, 100).options(ts_options(0, 0))),
                    b(seg(v6, 100, 100).options(ts_options(0, 0))),
                    b(seg(v6, 200, 100).options(ts_options(100, 0))),
                    b(seg(v6, 300, 100).options(ts_options(100, 1))),
                    b(seg(v6, 400, 100).options(ts_options(100, 2))),
                ]
            },
            expect: |_| vec![200, 100, 100, 100],
        },
        Case {
            name: "different options do not coalesce",
            v4: true,
            v6: true,
            frames: |v6| {
                vec![
                    b(seg(v6, 0, 100).options(ts_options(0, 0))),
                    b(seg(v6, 100, 100).options(ts_options(0, 0))),
                    // NOP + window scale 0.
                    b(seg(v6, 200, 100).options(vec![1, 3, 3, 0])),
                ]
            },
            expect: |_| vec![200, 100],
        },
        // --- ip ---
        Case {
            name: "different ECN does not coalesce",
            v4: true,
            v6: true,
            frames: |v6| {
                let mut f = seg(v6, 100, 100);
                f.tos ^= 0x02;
                vec![b(seg(v6, 0, 100)), b(f)]
            },
            expect: |_| vec![100, 100],
        },
        Case {
            name: "different tos does not coalesce",
            v4: true,
            v6: true,
            frames: |v6| {
                let mut f = seg(v6, 100, 100);
                f.tos = if v6 { 0xf0 } else { 1 };
                vec![b(seg(v6, 0, 100)), b(f)]
            },
            expect: |_| vec![100, 100],
        },
        Case {
            name: "different ttl does not coalesce",
            v4: true,
            v6: false,
            frames: |v6| {
                let mut f = seg(v6, 100, 100);
                f.ttl = 7;
                vec![b(seg(v6, 0, 100)), b(f)]
            },
            expect: |_| vec![100, 100],
        },
        Case {
            name: "ip options do not coalesce",
            v4: true,
            v6: false,
            frames: |v6| {
                let mut f = seg(v6, 100, 100);
                // IPOPT_TS, length 8, pointer 5, flags TSONLY, one empty slot.
                f.ip_options = vec![0x44, 8, 5, 0, 0, 0, 0, 0];
                vec![b(seg(v6, 0, 100)), b(f), b(seg(v6, 200, 100))]
            },
            expect: |_| vec![100, 100, 100],
        },
        Case {
            name: "fragmented ip4 does not coalesce",
            v4: true,
            v6: false,
            frames: |v6| {
                let mut f = seg(v6, 100, 100);
                f.frag = (true, 0);
                vec![b(seg(v6, 0, 100)), b(f)]
            },
            expect: |_| vec![100, 100],
        },
        Case {
            name: "DF=1 incrementing ID coalesces",
            v4: true,
            v6: false,
            frames: |_| ids(true, &[8, 9]),
            expect: |_| vec![200],
        },
        Case {
            name: "DF=1 fixed ID coalesces",
            v4: true,
            v6: false,
            frames: |_| ids(true, &[8, 8]),
            expect: |_| vec![200],
        },
        Case {
            name: "DF=0 incrementing ID coalesces",
            v4: true,
            v6: false,
            frames: |_| ids(false, &[8, 9]),
            expect: |_| vec![200],
        },
        Case {
            name: "DF=0 fixed ID coalesces",
            v4: true,
            v6: false,
            frames: |_| ids(false, &[8, 8]),
            expect: |_| vec![200],
        },
        Case {
            name: "DF=1 two incrementing then fixed: first two only",
            v4: true,
            v6: false,
            frames: |_| ids(true, &[8, 9, 9]),
            expect: |_| vec![200, 100],
        },
        Case {
            name: "DF=1 two fixed then incrementing: first two only",
            v4: true,
            v6: false,
            frames: |_| ids(true, &[8, 8, 9]),
            expect: |_| vec![200, 100],
        },
        Case {
            name: "fragmented ip6 does not coalesce",
            v4: false,
            v6: true,
            frames: |v6| {
                let mut f = seg(v6, 200, 100);
                f.exts = vec![(44, vec![0; 6])];
                vec![
                    b(seg(v6, 0, 100)),
                    b(seg(v6, 100, 100)),
                    b(f),
                    b(seg(v6, 300, 100)),
                ]
            },
            expect: |_| vec![200, 100, 100],
        },
        Case {
            name: "ipv6 with equal extension headers coalesces",
            v4: false,
            v6: true,
            frames: |v6| {
                let mut f1 = seg(v6, 0, 100);
                f1.exts = vec![(0, vec![0; 6])];
                let mut f2 = seg(v6, 100, 100);
                f2.exts = vec![(0, vec![0; 6])];
                vec![b(f1), b(f2)]
            },
            expect: |_| vec![200],
        },
        Case {
            name: "ipv6 with different extension headers does not coalesce",
            v4: false,
            v6: true,
            frames: |v6| {
                let mut f1 = seg(v6, 0, 100);
                f1.exts = vec![(0, vec![0; 6])];
                let mut f2 = seg(v6, 100, 100);
                f2.exts = vec![(0, vec![0x11; 6])];
                vec![b(f1), b(f2)]
            },
            expect: |_| vec![100, 100],
        },
        // --- large ---
        Case {
            name: "does not coalesce beyond the IP maximum",
            v4: true,
            v6: true,
            frames: |v6| large(v6, remainder(v6)),
            expect: |v6| vec![MAX_PAYLOAD + offset(v6), remainder(v6)],
        },
        Case {
            name: "last segment sent individually does not start a new segment",
            v4: true,
            v6: true,
            frames: |v6| large(v6, remainder(v6) + 1),
            expect: |v6| {
                vec![
                    MAX_PAYLOAD + offset(v6) - remainder(v6),
                    remainder(v6) + 1,
                    remainder(v6) + 1,
                ]
            },
        },
    ]
}

/// Five segments of which the middle one carries `flag` (with payload only for PSH, as in
/// the selftest's send_flags).
fn flagged(v6: bool, flag: u8) -> Vec<Vec<u8>> {
    let psh = flag == PSH;
    let flag_len = if psh { PAYLOAD_LEN } else { 0 };
    (0..5)
        .map(|i| {
            if i == 2 {
                b(seg(v6, 2 * flag_len, flag_len).flags(ACK | flag))
            } else {
                b(seg(v6, i * PAYLOAD_LEN, PAYLOAD_LEN))
            }
        })
        .collect()
}

fn ids(df: bool, ids: &[u16]) -> Vec<Vec<u8>> {
    ids.iter()
        .enumerate()
        .map(|(i, &id)| {
            let mut f = seg(false, i * PAYLOAD_LEN, PAYLOAD_LEN);
            f.df = df;
            f.id = id;
            b(f)
        })
        .collect()
}

/// The IPv4 header is 20 bytes shorter than IPv6's, so IPv4 fits 20 more payload bytes.
fn offset(v6: bool) -> usize {
    if v6 {
        0
    } else {
        20
    }
}

fn remainder(v6: bool) -> usize {
    (MAX_PAYLOAD + offset(v6)) % MSS
}

fn large(v6: bool, rem: usize) -> Vec<Vec<u8>> {
    let n = MAX_PAYLOAD / MSS;
    let mut v: Vec<Vec<u8>> = (0..n).map(|i| b(seg(v6, i * MSS, MSS))).collect();
    v.push(b(seg(v6, n * MSS, rem)));
    v.push(b(seg(v6, (n + 1) * MSS, rem)));
    v
}

#[test]
fn kernel_selftest_cases() {
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in cases() {
        for v6 in [false, true] {
            if (v6 && !case.v6) || (!v6 && !case.v4) {
                continue;
            }
            ran += 1;
            let frames = (case.frames)(v6);
            let (outs, gro) = run(GroConfig::default(), &frames, Start::Ethernet);
            let got = sizes(&outs, Start::Ethernet);
            let want = (case.expect)(v6);
            if got != want {
                failures.push(format!(
                    "{} ({}): got {got:?}, want {want:?}",
                    case.name,
                    if v6 { "ipv6" } else { "ipv4" }
                ));
            }
            // Whatever came out is a valid frame once the partial checksum is completed,
            // and a frame given back unchanged is byte-for-byte one of the inputs.
            for o in &outs {
                if o.meta.gso.is_some() {
                    let mut lin = o.frame.clone();
                    pvnet_core::offload::gro::complete_checksum(&mut lin, &o.meta).unwrap();
                    let v = verify_frame(&lin, Start::Ethernet);
                    assert!(v.is_ok(), "{}: super-frame checksums {v:?}", case.name);
                } else {
                    assert!(
                        frames.contains(&o.frame),
                        "{}: a frame that was not coalesced changed",
                        case.name
                    );
                }
            }
            assert_eq!(gro.held_flows(), 0);
        }
    }
    assert!(ran >= 44, "only {ran} cases ran");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
