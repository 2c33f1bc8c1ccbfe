//! Each port's device as the kernel sees it, in the port's namespace: `ip -d -s link`,
//! `ethtool -k`, the namespace's sysctls, and a short capture, headers only, with the
//! checksum verdicts of `pvnet pcap csum` over it.

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pvnet::ctl::proto::PortInfo;
use pvnet_linux::netns;
use pvnet_linux::packet_socket::CaptureSocket;
use pvnet_linux::pcap::{FileHeader, PcapHeader, PcapWriter, Record, Timestamp, TsResolution};
use pvnet_linux::pcap::{LINKTYPE_ETHERNET, LINKTYPE_RAW};

use super::system;

/// Bytes of each frame a capture keeps: every header of a TCP/IPv6 frame with options
/// and a VLAN tag (14 + 4 + 40 + 60 = 118), and no payload beyond that.
pub const SNAPLEN: usize = 128;

/// Run `f` in the port's namespace (the caller's when it has none).
fn in_port_ns<T: Send>(port: &PortInfo, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    match &port.netns {
        Some(ns) => netns::in_netns(ns, f),
        None => f(),
    }
}

/// Where the port lives, for messages: `pa in namespace A`.
pub fn describe(port: &PortInfo) -> String {
    match &port.netns {
        Some(ns) => format!("{} in namespace {ns}", port.name),
        None => format!("{} in the switch's namespace", port.name),
    }
}

/// Run `program args…` in the port's namespace (a child spawned by a thread that
/// entered a namespace lives in it) and return its standard output.
fn tool(port: &PortInfo, program: &str, args: &[&str]) -> Result<String, String> {
    let out = in_port_ns(port, || {
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => io::Error::new(
                    e.kind(),
                    format!("{program}: not installed (not found in PATH)"),
                ),
                _ => io::Error::new(e.kind(), format!("{program}: {e}")),
            })
    })
    .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip -d -s link show dev NAME` in the port's namespace.
pub fn ip_link(port: &PortInfo) -> Result<String, String> {
    tool(port, "ip", &["-d", "-s", "link", "show", "dev", &port.name])
}

/// `ethtool -k NAME` in the port's namespace.
pub fn ethtool_k(port: &PortInfo) -> Result<String, String> {
    tool(port, "ethtool", &["-k", &port.name])
}

/// The sysctls of the port's namespace (only those it has of its own).
pub fn netns_sysctls(port: &PortInfo) -> Result<String, String> {
    let ns = port.netns.as_deref().ok_or_else(|| {
        "the port is in the switch's own namespace: see system/sysctl.txt".to_owned()
    })?;
    let body = in_port_ns(port, || Ok(system::sysctls(true))).map_err(|e| e.to_string())?;
    Ok(format!(
        "# Sysctls of network namespace {ns}, the ones it has of its own (the host-wide ones \
         are in system/sysctl.txt).\n{body}"
    ))
}

/// A capture socket opened on a port, ready to read.
pub struct Opened {
    sock: CaptureSocket,
}

/// Open a capture of the port's device, in its namespace.
pub fn open_capture(port: &PortInfo) -> Result<Opened, String> {
    let name = port.name.clone();
    in_port_ns(port, move || CaptureSocket::open(&name))
        .map(|sock| Opened { sock })
        .map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => {
                format!("{e} (capturing needs CAP_NET_RAW: run pvnet report as root)")
            }
            _ => e.to_string(),
        })
}

/// What a capture gave.
pub struct Capture {
    /// The classic pcap file (nanosecond timestamps, snap length [`SNAPLEN`]).
    pub pcap: Vec<u8>,
    /// Frames in it.
    pub frames: usize,
    /// Of those, frames the host sent out of the device.
    pub outgoing: usize,
    /// How long it ran.
    pub took: Duration,
}

/// Read up to `max_frames` frames, until `deadline`, and write them as pcap.
pub fn capture(opened: Opened, max_frames: usize, deadline: Instant) -> Result<Capture, String> {
    let started = Instant::now();
    let mut buf = [0u8; SNAPLEN];
    // (timestamp, original length, bytes kept)
    let mut frames: Vec<(Duration, u32, Vec<u8>)> = Vec::new();
    let mut hatype = None;
    let mut outgoing = 0;
    while frames.len() < max_frames {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let Some(c) = opened
            .sock
            .recv(&mut buf, left)
            .map_err(|e| e.to_string())?
        else {
            break;
        };
        hatype.get_or_insert(c.hatype);
        outgoing += usize::from(c.outgoing);
        let ts = c.timestamp.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
        });
        let orig = u32::try_from(c.orig_len).unwrap_or(u32::MAX);
        frames.push((ts, orig, buf[..c.len].to_vec()));
    }
    let link_type = match hatype {
        // Nothing came: Ethernet, like a tap, so the file still opens.
        None | Some(libc::ARPHRD_ETHER) | Some(libc::ARPHRD_LOOPBACK) => LINKTYPE_ETHERNET,
        Some(libc::ARPHRD_NONE) => LINKTYPE_RAW,
        Some(other) => {
            return Err(format!(
                "{} frames of link type ARPHRD {other}, which pcap link types pvnet writes \
                 (Ethernet, raw IP) do not cover",
                frames.len()
            ))
        }
    };
    let header = PcapHeader::new(link_type, SNAPLEN as u32, true);
    let iface = header.interface();
    let err = |e: pvnet_linux::pcap::PcapError| format!("writing the capture: {e}");
    let mut w = PcapWriter::new(Vec::new(), FileHeader::Pcap(header)).map_err(err)?;
    for (ts, orig_len, data) in &frames {
        let nanos = u64::try_from(ts.as_nanos()).unwrap_or(u64::MAX);
        w.write_record(&Record {
            interface_id: 0,
            interface: iface,
            ts: Timestamp::new(nanos, TsResolution::NANOS),
            orig_len: *orig_len,
            data,
        })
        .map_err(err)?;
    }
    Ok(Capture {
        pcap: w.finish().map_err(err)?,
        frames: frames.len(),
        outgoing,
        took: started.elapsed(),
    })
}

/// The checksum verdicts of a capture, as `pvnet pcap csum NAME` prints them.
pub fn csum_verdicts(pcap: &[u8], name: &str) -> Result<String, String> {
    let mut out = Vec::new();
    let result = crate::cli::pcap::csum::verdicts(pcap, Path::new(name), &mut out);
    let mut text = String::from_utf8_lossy(&out).into_owned();
    match result {
        Ok(_) => Ok(text),
        Err(e) => {
            text.push_str(&format!("error: {e}\n"));
            Ok(text)
        }
    }
}
