//! Reading hand-built pcap and pcapng files, and the errors bad files give.

use pvnet_linux::pcap::{
    build_pcap, FileHeader, Format, Interface, PcapError, PcapHeader, PcapReader, PcapWriter,
    Record, Timestamp, TsResolution, LINKTYPE_ETHERNET, LINKTYPE_RAW, MAX_CAPLEN,
};

/// A record copied out of the reader.
#[derive(Debug, PartialEq)]
struct Owned {
    interface_id: u32,
    link_type: u16,
    ts: Timestamp,
    orig_len: u32,
    data: Vec<u8>,
}

/// Read every record, returning them and the error that stopped reading, if any.
fn read_all(bytes: &[u8]) -> Result<(Vec<Owned>, Option<PcapError>), PcapError> {
    let mut reader = PcapReader::new(bytes)?;
    let mut out = Vec::new();
    loop {
        match reader.next_record() {
            Ok(Some(r)) => out.push(Owned {
                interface_id: r.interface_id,
                link_type: r.link_type(),
                ts: r.ts,
                orig_len: r.orig_len,
                data: r.data.to_vec(),
            }),
            Ok(None) => return Ok((out, None)),
            Err(e) => return Ok((out, Some(e))),
        }
    }
}

fn read_ok(bytes: &[u8]) -> Vec<Owned> {
    match read_all(bytes) {
        Ok((records, None)) => records,
        other => panic!("expected a clean read, got {other:?}"),
    }
}

// Classic pcap, little-endian, microseconds, snaplen 65535, Ethernet.
#[rustfmt::skip]
const PCAP_LE: &[u8] = &[
    0xd4, 0xc3, 0xb2, 0xa1, 0x02, 0x00, 0x04, 0x00, // magic, version 2.4
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // thiszone, sigfigs
    0xff, 0xff, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // snaplen 65535, link type 1
    // record 1 at offset 24: 1600000000.123456, 4 of 60 bytes
    0x00, 0x10, 0x5e, 0x5f, 0x40, 0xe2, 0x01, 0x00,
    0x04, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x00, 0x00,
    0xde, 0xad, 0xbe, 0xef,
    // record 2 at offset 44: 1600000001.000000, 2 of 2 bytes
    0x01, 0x10, 0x5e, 0x5f, 0x00, 0x00, 0x00, 0x00,
    0x02, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
    0x01, 0x02,
];

// The same file big-endian, nanoseconds (second record at .999999999).
#[rustfmt::skip]
const PCAP_BE_NANOS: &[u8] = &[
    0xa1, 0xb2, 0x3c, 0x4d, 0x00, 0x02, 0x00, 0x04,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01,
    0x5f, 0x5e, 0x10, 0x00, 0x00, 0x01, 0xe2, 0x40,
    0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x3c,
    0xde, 0xad, 0xbe, 0xef,
    0x5f, 0x5e, 0x10, 0x01, 0x3b, 0x9a, 0xc9, 0xff,
    0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02,
    0x01, 0x02,
];

#[test]
fn classic_little_endian_micros() {
    let reader = PcapReader::new(PCAP_LE).expect("header");
    assert_eq!(
        reader.format(),
        Format::Pcap {
            nanos: false,
            big_endian: false
        }
    );
    let FileHeader::Pcap(h) = reader.header() else {
        panic!("not classic")
    };
    assert_eq!((h.snaplen, h.link_type(), h.version_minor), (65535, 1, 4));
    let records = read_ok(PCAP_LE);
    assert_eq!(
        records,
        [
            Owned {
                interface_id: 0,
                link_type: LINKTYPE_ETHERNET,
                ts: Timestamp::from_micros(1_600_000_000_123_456),
                orig_len: 60,
                data: vec![0xde, 0xad, 0xbe, 0xef],
            },
            Owned {
                interface_id: 0,
                link_type: LINKTYPE_ETHERNET,
                ts: Timestamp::from_micros(1_600_000_001_000_000),
                orig_len: 2,
                data: vec![1, 2],
            },
        ]
    );
    assert_eq!(records[0].ts.secs(), 1_600_000_000);
    assert_eq!(records[0].ts.subsec_nanos(), 123_456_000);
}

#[test]
fn classic_big_endian_nanos() {
    let reader = PcapReader::new(PCAP_BE_NANOS).expect("header");
    assert_eq!(
        reader.format(),
        Format::Pcap {
            nanos: true,
            big_endian: true
        }
    );
    let records = read_ok(PCAP_BE_NANOS);
    assert_eq!(records.len(), 2);
    // 123456 in the sub-second field means nanoseconds here.
    assert_eq!(
        records[0].ts,
        Timestamp::from_nanos(1_600_000_000_000_123_456)
    );
    assert_eq!(
        records[1].ts,
        Timestamp::from_nanos(1_600_000_001_999_999_999)
    );
    assert_eq!(records[0].data, [0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(records[1].data, [1, 2]);
}

#[test]
fn classic_big_endian_micros() {
    let mut bytes = PCAP_BE_NANOS.to_vec();
    bytes[2..4].copy_from_slice(&[0xc3, 0xd4]);
    // Make the second record's sub-second field a valid microsecond count.
    bytes[48..52].copy_from_slice(&999_999u32.to_be_bytes());
    let records = read_ok(&bytes);
    assert_eq!(records[0].ts, Timestamp::from_micros(1_600_000_000_123_456));
    assert_eq!(records[1].ts, Timestamp::from_micros(1_600_000_001_999_999));
}

/// Each record's start offset and the file length, for cutting.
fn classic_cut_points() -> Vec<(usize, u64)> {
    // (cut, record being cut) for every cut strictly inside a record.
    let mut cuts = Vec::new();
    for cut in 25..44 {
        cuts.push((cut, 1));
    }
    for cut in 45..PCAP_LE.len() {
        cuts.push((cut, 2));
    }
    cuts
}

#[test]
fn classic_truncated_records() {
    for (cut, record) in classic_cut_points() {
        let (records, err) = read_all(&PCAP_LE[..cut]).expect("header is whole");
        assert_eq!(records.len() as u64, record - 1, "cut at {cut}");
        let offset = if record == 1 { 24 } else { 44 };
        match err {
            Some(PcapError::Truncated {
                record: r,
                offset: o,
                ..
            }) => assert_eq!((r, o), (record, offset), "cut at {cut}"),
            other => panic!("cut at {cut}: expected truncation, got {other:?}"),
        }
    }
    // Cuts at record boundaries are clean ends of file.
    assert_eq!(read_ok(&PCAP_LE[..24]).len(), 0);
    assert_eq!(read_ok(&PCAP_LE[..44]).len(), 1);
    let err = read_all(&PCAP_LE[..50]).expect("header").1.expect("error");
    assert_eq!(
        err.to_string(),
        "capture truncated at byte offset 44 while reading record 2: \
         record header ends after 6 of 16 bytes"
    );
    let err = read_all(&PCAP_LE[..61]).expect("header").1.expect("error");
    assert_eq!(
        err.to_string(),
        "capture truncated at byte offset 44 while reading record 2: \
         record ends after 17 of 18 bytes"
    );
}

#[test]
fn truncated_headers() {
    for cut in 1..24 {
        match PcapReader::new(&PCAP_LE[..cut]) {
            Err(PcapError::TruncatedHeader { got, needed }) => {
                assert_eq!(got, cut as u64);
                assert_eq!(needed, if cut < 4 { 4 } else { 24 });
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    let ng = pcapng_file();
    for cut in 1..28 {
        assert!(
            matches!(
                PcapReader::new(&ng[..cut]),
                Err(PcapError::TruncatedHeader { .. })
            ),
            "cut at {cut}"
        );
    }
}

#[test]
fn not_a_capture() {
    let err = PcapReader::new(&b"GET / HTTP/1.1\r\n"[..]).expect_err("not a capture");
    assert!(matches!(err, PcapError::NotACapture { .. }));
    assert_eq!(
        err.to_string(),
        "not a pcap or pcapng file: it starts with 47 45 54 20 \
         (expected magic a1b2c3d4, a1b23c4d or 0a0d0d0a)"
    );
    let err = PcapReader::new(&[][..]).expect_err("empty");
    assert!(matches!(err, PcapError::Empty), "{err}");
    assert!(err.to_string().contains("empty (0 bytes)"), "{err}");
}

#[test]
fn classic_bad_version_and_corrupt_caplen() {
    let mut bytes = PCAP_LE.to_vec();
    bytes[4] = 1;
    let err = PcapReader::new(&bytes[..]).expect_err("version 1.4");
    assert!(matches!(err, PcapError::BadHeader(_)), "{err}");

    let mut bytes = PCAP_LE.to_vec();
    bytes[52..56].copy_from_slice(&(MAX_CAPLEN + 1).to_le_bytes());
    let (records, err) = read_all(&bytes).expect("header");
    assert_eq!(records.len(), 1);
    match err {
        Some(PcapError::Corrupt { record, offset, .. }) => assert_eq!((record, offset), (2, 44)),
        other => panic!("{other:?}"),
    }
}

// --- pcapng, built block by block -------------------------------------------------------

struct Ng {
    big: bool,
    bytes: Vec<u8>,
}

impl Ng {
    fn u16(&self, v: u16) -> [u8; 2] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn u32(&self, v: u32) -> [u8; 4] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    /// Append a block of `block_type` around `body` (padded to 4 bytes).
    fn block(&mut self, block_type: u32, body: &[u8]) -> &mut Self {
        let padded = body.len().div_ceil(4) * 4;
        let len = (12 + padded) as u32;
        let (t, l) = (self.u32(block_type), self.u32(len));
        self.bytes.extend_from_slice(&t);
        self.bytes.extend_from_slice(&l);
        self.bytes.extend_from_slice(body);
        self.bytes.resize(self.bytes.len() + padded - body.len(), 0);
        self.bytes.extend_from_slice(&l);
        self
    }

    fn section(&mut self, big: bool) -> &mut Self {
        self.big = big;
        let mut body = self.u32(0x1a2b_3c4d).to_vec();
        body.extend_from_slice(&self.u16(1));
        body.extend_from_slice(&self.u16(0));
        body.extend_from_slice(&[0xff; 8]);
        self.block(0x0a0d_0d0a, &body)
    }

    fn interface(&mut self, link_type: u16, snaplen: u32, tsresol: Option<u8>) -> &mut Self {
        let mut body = self.u16(link_type).to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&self.u32(snaplen));
        if let Some(r) = tsresol {
            // if_shortname-ish unknown option first, to check options are walked.
            body.extend_from_slice(&self.u16(2));
            body.extend_from_slice(&self.u16(3));
            body.extend_from_slice(b"eth\0");
            body.extend_from_slice(&self.u16(9));
            body.extend_from_slice(&self.u16(1));
            body.extend_from_slice(&[r, 0, 0, 0]);
            body.extend_from_slice(&[0, 0, 0, 0]);
        }
        self.block(1, &body)
    }

    fn epb(&mut self, interface: u32, ticks: u64, orig_len: u32, data: &[u8]) -> &mut Self {
        let mut body = self.u32(interface).to_vec();
        body.extend_from_slice(&self.u32((ticks >> 32) as u32));
        body.extend_from_slice(&self.u32(ticks as u32));
        body.extend_from_slice(&self.u32(data.len() as u32));
        body.extend_from_slice(&self.u32(orig_len));
        body.extend_from_slice(data);
        self.block(6, &body)
    }

    fn spb(&mut self, orig_len: u32, data: &[u8]) -> &mut Self {
        let mut body = self.u32(orig_len).to_vec();
        body.extend_from_slice(data);
        self.block(3, &body)
    }

    fn obsolete_pb(&mut self, interface: u16, ticks: u64, data: &[u8]) -> &mut Self {
        let mut body = self.u16(interface).to_vec();
        body.extend_from_slice(&self.u16(0));
        body.extend_from_slice(&self.u32((ticks >> 32) as u32));
        body.extend_from_slice(&self.u32(ticks as u32));
        body.extend_from_slice(&self.u32(data.len() as u32));
        body.extend_from_slice(&self.u32(data.len() as u32));
        body.extend_from_slice(data);
        self.block(2, &body)
    }
}

fn ng() -> Ng {
    Ng {
        big: false,
        bytes: Vec::new(),
    }
}

/// Two sections: little-endian with two interfaces (nanoseconds; 2^-10 s), a Name
/// Resolution Block, an Interface Statistics Block and a custom block to skip; then a
/// big-endian one with a default (microsecond) interface.
fn pcapng_file() -> Vec<u8> {
    let mut f = ng();
    f.section(false)
        .interface(LINKTYPE_ETHERNET, 0, Some(9))
        .interface(LINKTYPE_RAW, 128, Some(0x8a))
        .block(4, &[1, 0, 4, 0, 10, 0, 0, 1, 0, 0, 0, 0])
        .epb(1, 0x1_0000_0400, 100, &[0x45, 0, 0, 20, 0])
        .block(5, &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        .epb(0, 1_700_000_000_000_000_001, 6, &[1, 2, 3, 4, 5, 6])
        .block(0x0000_0bad, &[0xa, 0xb, 0xc, 0xd, 0xe])
        .spb(6, &[9, 8, 7, 6, 5, 4])
        .obsolete_pb(1, 2048, &[0x60])
        .section(true)
        .interface(LINKTYPE_ETHERNET, 1514, None)
        .epb(0, 1_700_000_000_654_321, 3, &[7, 7, 7]);
    f.bytes
}

#[test]
fn pcapng_sections_interfaces_and_skipped_blocks() {
    let bytes = pcapng_file();
    let reader = PcapReader::new(&bytes[..]).expect("header");
    assert_eq!(reader.format(), Format::PcapNg);
    let records = read_ok(&bytes);
    let nanos = TsResolution::NANOS;
    let pow2_10 = TsResolution::pow2(10).expect("2^-10");
    let expected = [
        Owned {
            interface_id: 1,
            link_type: LINKTYPE_RAW,
            ts: Timestamp::new(0x1_0000_0400, pow2_10),
            orig_len: 100,
            data: vec![0x45, 0, 0, 20, 0],
        },
        Owned {
            interface_id: 0,
            link_type: LINKTYPE_ETHERNET,
            ts: Timestamp::new(1_700_000_000_000_000_001, nanos),
            orig_len: 6,
            data: vec![1, 2, 3, 4, 5, 6],
        },
        Owned {
            interface_id: 0,
            link_type: LINKTYPE_ETHERNET,
            ts: Timestamp::new(0, nanos),
            orig_len: 6,
            data: vec![9, 8, 7, 6, 5, 4],
        },
        Owned {
            interface_id: 1,
            link_type: LINKTYPE_RAW,
            ts: Timestamp::new(2048, pow2_10),
            orig_len: 1,
            data: vec![0x60],
        },
        Owned {
            interface_id: 2,
            link_type: LINKTYPE_ETHERNET,
            ts: Timestamp::from_micros(1_700_000_000_654_321),
            orig_len: 3,
            data: vec![7, 7, 7],
        },
    ];
    assert_eq!(records, expected);
    // 0x1_0000_0400 ticks of 1/1024 s.
    assert_eq!(records[0].ts.secs(), 4_194_305);
    assert_eq!(records[0].ts.subsec_nanos(), 0);
    assert_eq!(records[3].ts.secs(), 2);

    let mut reader = PcapReader::new(&bytes[..]).expect("header");
    while reader.next_record().expect("record").is_some() {}
    assert_eq!(
        reader.interfaces(),
        [
            Interface {
                link_type: LINKTYPE_ETHERNET,
                snaplen: 0,
                resolution: nanos,
                ts_offset: 0
            },
            Interface {
                link_type: LINKTYPE_RAW,
                snaplen: 128,
                resolution: pow2_10,
                ts_offset: 0
            },
            Interface::new(LINKTYPE_ETHERNET, 1514),
        ]
    );
    assert_eq!(reader.records_read(), 5);
    assert_eq!(reader.byte_offset(), bytes.len() as u64);
}

#[test]
fn pcapng_simple_packet_respects_snaplen() {
    let mut f = ng();
    f.section(true)
        .interface(LINKTYPE_ETHERNET, 4, None)
        .spb(60, &[1, 2, 3, 4]);
    let records = read_ok(&f.bytes);
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].orig_len, &records[0].data[..]),
        (60, &[1, 2, 3, 4][..])
    );
}

#[test]
fn pcapng_truncated_at_every_cut() {
    let bytes = pcapng_file();
    let full = read_ok(&bytes);
    // Block boundaries: a cut there is a clean end of file.
    let mut boundaries = vec![];
    let mut at = 0;
    let mut big = false;
    while at < bytes.len() {
        boundaries.push(at);
        let field = |o: usize| {
            let b = [bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]];
            (u32::from_le_bytes(b), u32::from_be_bytes(b))
        };
        if field(at).0 == 0x0a0d_0d0a {
            big = field(at + 8).1 == 0x1a2b_3c4d;
        }
        let (le, be) = field(at + 4);
        at += if big { be } else { le } as usize;
    }
    for cut in 28..bytes.len() {
        let (records, err) = read_all(&bytes[..cut]).expect("header is whole");
        // Previous records came back unchanged.
        assert_eq!(records[..], full[..records.len()], "cut at {cut}");
        if boundaries.contains(&cut) {
            assert!(err.is_none(), "cut at boundary {cut}: {err:?}");
            continue;
        }
        match err {
            Some(PcapError::Truncated { record, offset, .. }) => {
                assert_eq!(record, records.len() as u64 + 1, "cut at {cut}");
                let block_start = boundaries.iter().rev().find(|&&b| b < cut);
                assert_eq!(Some(offset as usize), block_start.copied(), "cut at {cut}");
            }
            other => panic!("cut at {cut}: expected truncation, got {other:?}"),
        }
    }
}

#[test]
fn pcapng_corrupt_block_lengths() {
    let mut good = ng();
    good.section(false).interface(LINKTYPE_ETHERNET, 0, None);
    let prefix = good.bytes.clone();
    good.epb(0, 5, 4, &[1, 2, 3, 4]);
    let epb_at = prefix.len();

    let corrupt_with = |patch: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = good.bytes.clone();
        patch(&mut bytes);
        let (records, err) = read_all(&bytes).expect("header");
        assert!(records.is_empty());
        match err {
            Some(e @ PcapError::Corrupt { record: 1, .. }) => {
                assert!(matches!(e, PcapError::Corrupt { offset, .. } if offset == epb_at as u64));
                e.to_string()
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    };
    // Not a multiple of 4.
    let msg = corrupt_with(&|b| b[epb_at + 4] = 45);
    assert!(msg.contains("block total length 45 is invalid"), "{msg}");
    // Below the minimum.
    corrupt_with(&|b| b[epb_at + 4..epb_at + 8].copy_from_slice(&8u32.to_le_bytes()));
    // Trailing length differs.
    let end = good.bytes.len();
    let msg = corrupt_with(&|b| b[end - 4] = 40);
    assert!(msg.contains("trailing block length 40"), "{msg}");
    // Captured length beyond the block.
    corrupt_with(&|b| b[epb_at + 20] = 9);
    // Unknown interface.
    let msg = corrupt_with(&|b| b[epb_at + 8] = 3);
    assert!(msg.contains("interface 3"), "{msg}");
    // Unknown block with a bad length.
    let mut bytes = prefix.clone();
    bytes.extend_from_slice(&[0xad, 0x0b, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0, 13, 0, 0, 0]);
    assert!(matches!(
        read_all(&bytes).expect("header").1,
        Some(PcapError::Corrupt { record: 1, .. })
    ));
}

#[test]
fn pcapng_bad_section_headers() {
    let mut bytes = pcapng_file();
    bytes[8] = 0x4e;
    let err = PcapReader::new(&bytes[..]).expect_err("bad byte-order magic");
    assert!(matches!(err, PcapError::BadHeader(_)), "{err}");
    let mut bytes = pcapng_file();
    bytes[12] = 2;
    let err = PcapReader::new(&bytes[..]).expect_err("version 2");
    assert!(err.to_string().contains("version 2.0"), "{err}");
}

#[test]
fn writer_rejects_a_second_link_type_in_classic_pcap() {
    let header = PcapHeader::new(LINKTYPE_ETHERNET, 65535, false);
    let mut w = PcapWriter::new(Vec::new(), FileHeader::Pcap(header)).expect("header");
    let record = Record {
        interface_id: 0,
        interface: Interface::new(LINKTYPE_RAW, 65535),
        ts: Timestamp::from_micros(1),
        orig_len: 1,
        data: &[0x45],
    };
    let err = w
        .write_record(&record)
        .expect_err("raw in an Ethernet file");
    assert!(
        matches!(err, PcapError::Unwritable { record: 1, .. }),
        "{err}"
    );
    // A refused record is not counted as written, and the next one takes its number.
    assert_eq!(w.records_written(), 0);
    let ethernet = Record {
        interface: header.interface(),
        ..record
    };
    w.write_record(&ethernet).expect("Ethernet");
    assert_eq!(w.records_written(), 1);
    let err = w.write_record(&record).expect_err("raw again");
    assert!(
        matches!(err, PcapError::Unwritable { record: 2, .. }),
        "{err}"
    );
    assert_eq!(w.records_written(), 1);
    assert_eq!(read_ok(&w.finish().expect("in memory")).len(), 1);
}

#[test]
fn build_pcap_helper() {
    let frames: [(Timestamp, &[u8]); 2] = [
        (Timestamp::from_nanos(1_000_000_001), &[1, 2, 3]),
        (Timestamp::from_micros(2_000_001), &[4]),
    ];
    let bytes = build_pcap(LINKTYPE_ETHERNET, &frames).expect("in memory");
    let records = read_ok(&bytes);
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].ts, Timestamp::from_nanos(1_000_000_001));
    assert_eq!(records[1].ts, Timestamp::from_nanos(2_000_001_000));
    assert_eq!(
        (records[0].orig_len, &records[0].data[..]),
        (3, &[1, 2, 3][..])
    );
    assert_eq!(records[1].link_type, LINKTYPE_ETHERNET);
}
