//! Read → write → read gives the same records and the same bytes, for both formats.

use proptest::prelude::*;
use pvnet_linux::pcap::{
    FileHeader, Interface, PcapHeader, PcapNgHeader, PcapReader, PcapWriter, Record, Timestamp,
    TsResolution,
};

#[derive(Clone, Debug, PartialEq)]
struct Owned {
    interface_id: u32,
    interface: Interface,
    ts: Timestamp,
    orig_len: u32,
    data: Vec<u8>,
}

impl Owned {
    fn record(&self) -> Record<'_> {
        Record {
            interface_id: self.interface_id,
            interface: self.interface,
            ts: self.ts,
            orig_len: self.orig_len,
            data: &self.data,
        }
    }
}

fn write(header: FileHeader, records: &[Owned]) -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new(), header).expect("header");
    for r in records {
        w.write_record(&r.record()).expect("record");
    }
    w.finish().expect("flush")
}

/// Read a file, and copy it through a writer made `like` the reader.
fn read_and_copy(bytes: &[u8]) -> (FileHeader, Vec<Owned>, Vec<u8>) {
    let mut reader = PcapReader::new(bytes).expect("header");
    let mut writer = PcapWriter::like(&reader, Vec::new()).expect("header");
    let mut records = Vec::new();
    while let Some(r) = reader.next_record().expect("record") {
        writer.write_record(&r).expect("write");
        records.push(Owned {
            interface_id: r.interface_id,
            interface: r.interface,
            ts: r.ts,
            orig_len: r.orig_len,
            data: r.data.to_vec(),
        });
    }
    (reader.header(), records, writer.finish().expect("flush"))
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..70)
}

fn pcap_header() -> impl Strategy<Value = PcapHeader> {
    (
        any::<(bool, bool, u16, i32, u32, u32, u16)>(),
        prop_oneof![Just(0u32), Just(0x1400_0000)],
    )
        .prop_map(
            |((big_endian, nanos, minor, thiszone, sigfigs, snaplen, link), fcs)| PcapHeader {
                big_endian,
                nanos,
                version_major: 2,
                version_minor: minor,
                thiszone,
                sigfigs,
                snaplen,
                link_type_field: fcs | u32::from(link),
            },
        )
}

fn resolution() -> impl Strategy<Value = TsResolution> {
    prop_oneof![
        (0u8..=19).prop_filter_map("pow10", TsResolution::pow10),
        (0u8..=63).prop_filter_map("pow2", TsResolution::pow2),
    ]
}

fn interface() -> impl Strategy<Value = Interface> {
    (any::<u16>(), any::<u32>(), resolution(), any::<i64>()).prop_map(
        |(link_type, snaplen, resolution, ts_offset)| Interface {
            link_type,
            snaplen,
            resolution,
            ts_offset,
        },
    )
}

proptest! {
    #[test]
    fn classic_round_trip(
        header in pcap_header(),
        raw in prop::collection::vec((any::<u32>(), any::<u32>(), any::<u32>(), data()), 0..12),
    ) {
        let interface = header.interface();
        // Any sub-second field, including the malformed ones of a second or more.
        let records: Vec<Owned> = raw
            .into_iter()
            .map(|(secs, frac, orig_len, data)| Owned {
                interface_id: 0,
                interface,
                ts: Timestamp::from_classic(secs, frac, header.resolution())
                    .expect("32-bit fields fit in 64 bits"),
                orig_len,
                data,
            })
            .collect();
        let bytes = write(FileHeader::Pcap(header), &records);
        prop_assert_eq!(bytes.len(), 24 + records.iter().map(|r| 16 + r.data.len()).sum::<usize>());
        let (read_header, read, copy) = read_and_copy(&bytes);
        prop_assert_eq!(read_header, FileHeader::Pcap(header));
        prop_assert_eq!(&read, &records);
        prop_assert_eq!(copy, bytes);
    }

    #[test]
    fn pcapng_round_trip(
        big_endian in any::<bool>(),
        interfaces in prop::collection::vec(interface(), 1..4),
        raw in prop::collection::vec((any::<usize>(), any::<u64>(), any::<u32>(), data()), 0..12),
    ) {
        // Use every interface once, in order, so the writer keeps the ids.
        let first_uses = (0..interfaces.len()).map(|i| (i, 0, 0, Vec::new()));
        let records: Vec<Owned> = first_uses
            .chain(raw)
            .map(|(i, ticks, orig_len, data)| {
                let id = i % interfaces.len();
                Owned {
                    interface_id: id as u32,
                    interface: interfaces[id],
                    ts: Timestamp::new(ticks, interfaces[id].resolution),
                    orig_len,
                    data,
                }
            })
            .collect();
        let header = FileHeader::PcapNg(PcapNgHeader { big_endian });
        let bytes = write(header, &records);
        let (read_header, read, copy) = read_and_copy(&bytes);
        prop_assert_eq!(read_header, header);
        prop_assert_eq!(&read, &records);
        prop_assert_eq!(copy, bytes);
    }

    #[test]
    fn cut_files_never_panic_and_keep_earlier_records(
        header in pcap_header(),
        datas in prop::collection::vec(data(), 1..6),
        ng in any::<bool>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let interface = header.interface();
        let records: Vec<Owned> = datas
            .into_iter()
            .enumerate()
            .map(|(i, data)| Owned {
                interface_id: 0,
                interface,
                ts: Timestamp::new(i as u64, header.resolution()),
                orig_len: data.len() as u32,
                data,
            })
            .collect();
        let file_header = if ng {
            FileHeader::PcapNg(PcapNgHeader { big_endian: header.big_endian })
        } else {
            FileHeader::Pcap(header)
        };
        let bytes = write(file_header, &records);
        let bytes = &bytes[..cut.index(bytes.len() + 1)];
        if let Ok(mut reader) = PcapReader::new(bytes) {
            let mut n = 0;
            loop {
                match reader.next_record() {
                    Ok(Some(r)) => {
                        prop_assert_eq!(r.data, &records[n].data[..]);
                        n += 1;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let msg = e.to_string();
                        prop_assert!(msg.contains(&format!("record {}", n + 1)), "{}", msg);
                        break;
                    }
                }
            }
        }
    }
}

#[test]
fn pcapng_timestamps_convert_when_units_differ() {
    // A record carrying nanoseconds written on a microsecond interface is rounded down.
    let interface = Interface::new(1, 0);
    let record = Owned {
        interface_id: 0,
        interface,
        ts: Timestamp::from_nanos(1_500_999),
        orig_len: 0,
        data: Vec::new(),
    };
    let bytes = write(
        FileHeader::PcapNg(PcapNgHeader { big_endian: false }),
        &[record],
    );
    let (_, read, _) = read_and_copy(&bytes);
    assert_eq!(read[0].ts, Timestamp::from_micros(1_500));
}

/// A classic record whose sub-second field holds a second or more, with the seconds field
/// at its maximum: the sum is past 32 bits of seconds.
fn classic_overflowing_ts(header: PcapHeader) -> Vec<u8> {
    let units = header.resolution().units_per_sec() as u32;
    let ts = Timestamp::from_classic(u32::MAX, units + 7, header.resolution()).expect("fits");
    let record = Owned {
        interface_id: 0,
        interface: header.interface(),
        ts,
        orig_len: 1,
        data: vec![0xab],
    };
    write(FileHeader::Pcap(header), &[record])
}

#[test]
fn classic_sub_second_fields_of_a_second_or_more_are_kept() {
    for (nanos, big_endian) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut header = PcapHeader::new(1, 65535, nanos);
        header.big_endian = big_endian;
        let units = header.resolution().units_per_sec();
        let bytes = classic_overflowing_ts(header);
        let field = |at: usize| {
            let b: [u8; 4] = bytes[at..at + 4].try_into().expect("4 bytes");
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        // Written as given, not normalised (and not refused for its 33-bit seconds).
        assert_eq!((field(24), field(28)), (u32::MAX, units as u32 + 7));

        let (_, read, copy) = read_and_copy(&bytes);
        assert_eq!(copy, bytes, "nanos {nanos}, big-endian {big_endian}");
        let ts = read[0].ts;
        assert_eq!(ts.ticks, u64::from(u32::MAX) * units + units + 7);
        assert_eq!(
            (ts.secs(), ts.subsec_nanos()),
            (1 << 32, if nanos { 7 } else { 7000 })
        );

        // pcapng has one 64-bit tick count: the same instant, normalised.
        let ng = write(
            FileHeader::PcapNg(PcapNgHeader { big_endian }),
            &[read[0].clone()],
        );
        let (_, from_ng, _) = read_and_copy(&ng);
        assert_eq!(from_ng[0].ts, Timestamp::new(ts.ticks, ts.resolution));

        // A tool that moves the timestamp writes the new instant normalised.
        let mut moved = read[0].clone();
        moved.ts.ticks -= units + 8;
        let (_, again, _) = read_and_copy(&write(FileHeader::Pcap(header), &[moved]));
        assert_eq!(
            again[0].ts,
            Timestamp::new(u64::from(u32::MAX) * units - 1, ts.resolution)
        );
        assert_eq!(again[0].ts.classic, None);
    }
}

#[test]
fn classic_sub_second_overflow_into_other_units_is_refused_clearly() {
    // Microsecond fields into a nanosecond file: the fields are tied to their units, so
    // the instant is converted, and past 32 bits of seconds it cannot be written.
    let bytes = classic_overflowing_ts(PcapHeader::new(1, 65535, false));
    let mut reader = PcapReader::new(&bytes[..]).expect("header");
    let record = reader.next_record().expect("read").expect("a record");
    let mut writer = PcapWriter::new(
        Vec::new(),
        FileHeader::Pcap(PcapHeader::new(1, 65535, true)),
    )
    .expect("header");
    let err = writer.write_record(&record).expect_err("33-bit seconds");
    assert_eq!(
        err.to_string(),
        "cannot write record 1: timestamp 4294967296 s is past the 32-bit seconds of \
         classic pcap"
    );
}
