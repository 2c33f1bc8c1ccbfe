//! `--pcap FILE`: every frame the switch sends, as sent (after segmentation and checksum
//! completion; a partial checksum stays partial), in a classic pcap file.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use pvnet_core::frame::Frame;
use pvnet_linux::pcap::{FileHeader, Interface, PcapHeader, PcapWriter, Record, Timestamp};
use pvnet_linux::pcap::{TsResolution, LINKTYPE_ETHERNET};

/// Snap length of the capture: a whole super-frame.
const SNAPLEN: u32 = 262_144;

/// A capture sink with a reusable copy buffer.
pub struct PcapSink {
    writer: PcapWriter<BufWriter<File>>,
    iface: Interface,
    buf: Vec<u8>,
    failed: bool,
}

impl PcapSink {
    /// Create (truncate) `path` and write its header.
    pub fn create(path: &Path) -> io::Result<PcapSink> {
        let file = File::create(path)
            .map_err(|e| io::Error::new(e.kind(), format!("create {}: {e}", path.display())))?;
        let header = PcapHeader::new(LINKTYPE_ETHERNET, SNAPLEN, true);
        let writer = PcapWriter::new(BufWriter::new(file), FileHeader::Pcap(header))
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
        Ok(PcapSink {
            writer,
            iface: header.interface(),
            buf: Vec::with_capacity(65_600),
            failed: false,
        })
    }

    /// Append one frame. A write error is logged once and the capture stops; forwarding
    /// goes on.
    pub fn write(&mut self, frame: &Frame<'_>) {
        if self.failed {
            return;
        }
        frame.copy_to(&mut self.buf);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        let rec = Record {
            interface_id: 0,
            interface: self.iface,
            ts: Timestamp::new(nanos, TsResolution::NANOS),
            orig_len: len,
            data: &self.buf[..self.buf.len().min(SNAPLEN as usize)],
        };
        if let Err(e) = self.writer.write_record(&rec) {
            tracing::error!("pcap capture stopped: {e}");
            self.failed = true;
        }
    }

    /// Flush buffered records to the file.
    pub fn flush(&mut self) {
        if let Err(e) = self.writer.flush() {
            tracing::error!("pcap flush: {e}");
        }
    }
}

impl Drop for PcapSink {
    fn drop(&mut self) {
        self.flush();
    }
}
