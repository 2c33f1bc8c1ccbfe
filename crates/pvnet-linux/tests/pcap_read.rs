//! Reading hand-built pcap and pcapng files, and the errors bad files give.

use pvnet_linux::pcap::{
    FileHeader, Format, Interface, PcapError, PcapHeader, PcapReader, PcapWriter, Record,
    Timestamp, LINKTYPE_ETHERNET, LINKTYPE_RAW, MAX_CAPLEN,
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
    let FileHeader::Pcap(h) = reader.header();
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
    assert!(err.to_string().contains("empty"), "{err}");
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
}
