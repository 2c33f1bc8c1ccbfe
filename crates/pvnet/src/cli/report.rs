//! `pvnet report [--ctl PATH] [-o FILE.tar.gz] [--log-lines N] [--frames N]`: a bug-report
//! bundle for a virtual-network problem.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use pvnet::ctl::proto::{PortInfo, DEFAULT_SOCKET};

mod bundle;
mod ctl;
mod ports;
mod system;

use bundle::Bundle;

pub const LONG_ABOUT: &str = "\
Gather what a maintainer asks for first about a virtual-network problem into one
.tar.gz file, to attach to a bug report. It holds, one file per part:

  pvnet/version.txt         pvnet's version and build (target, compiler, profile)
  system/uname.txt          the kernel's version and the distribution
  system/kernel-config.txt  the kernel options about tun/tap, vhost, virtio, VXLAN,
                            GENEVE, bridges, packet sockets, GSO and GRO
  system/sysctl.txt         the sysctls about offloads, batching and TCP buffers
  system/modules.txt        the modules of that kind that are loaded
  system/kernel-log.txt     the kernel log lines mentioning tun, tap, virtio, vhost,
                            vxlan, geneve or pvnet
  switch/…                  from the running switch over its control socket: version,
                            configuration, port list, counters, MAC table, its last log
                            lines (--log-lines)
  ports/PORT/…              for each of its ports, in the port's namespace: `ip -d -s
                            link`, `ethtool -k`, the switch's offload view, the
                            namespace's sysctls, a capture of the first --frames frames
                            seen within --capture-secs (both ways, headers only) and the
                            `pvnet pcap csum` verdicts over it
  README.txt                the index: every part, and for each part that could not be
                            collected, why

It works with whatever it can reach: with no switch running, the switch and port parts are
listed as not collected, with the reason, and the rest is there. Run it as root: reading
the kernel log, entering namespaces and capturing need it.

What never leaves the host: the payload of the captured frames beyond their first 128
bytes (the snap length; enough for the Ethernet, VLAN, IP and TCP/UDP headers). Small
frames, whose headers end before byte 128, keep the start of their payload. Addresses
(MAC, IP, ports), interface and namespace names, the switch's configuration and log lines
are in the bundle: read README.txt and the files before sharing it.";

pub const AFTER_HELP: &str = "\
The file is written whole or not at all. The parts that could not be collected are also
printed on stderr; the exit status is 0 whenever the file was written, 1 when it could not
be.

Examples:
  sudo pvnet report
  sudo pvnet report --ctl /run/pvnet/lab.sock -o /tmp/pvnet-bug.tar.gz
  sudo pvnet report --frames 0            # no capture
  tar -xzf pvnet-report-*.tar.gz && less pvnet-report-*/README.txt";

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Control socket of the switch to report on.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub ctl: PathBuf,
    /// Where to write the bundle [default: pvnet-report-HOST-YYYYmmdd-HHMMSS.tar.gz in the
    /// current directory, the time in UTC].
    #[arg(short = 'o', long = "output", value_name = "FILE.tar.gz")]
    pub output: Option<PathBuf>,
    /// How many of the switch's last log lines to include (it keeps 1000; 0: none).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub log_lines: usize,
    /// Frames to capture on each port, at most (0: no capture).
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub frames: usize,
    /// How long the captures run, at most (all ports at once).
    #[arg(long, value_name = "SECS", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub capture_secs: u64,
}

/// Progress lines on stderr, only when it is a terminal (a pipe or a log gets the
/// summary and the skipped parts only).
struct Progress(bool);

impl Progress {
    fn say(&self, what: &str) {
        if self.0 {
            eprintln!("pvnet report: {what}…");
        }
    }
}

pub fn run(args: ReportArgs) -> ExitCode {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let host = system::hostname();
    let top = format!(
        "pvnet-report-{}-{}",
        file_safe(&host, "unknown"),
        utc(now).compact()
    );
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{top}.tar.gz")));
    // Say so now rather than after gathering for seconds.
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            eprintln!(
                "pvnet report: cannot write {}: {} is not a directory",
                out.display(),
                dir.display()
            );
            return ExitCode::from(1);
        }
    }
    let progress = Progress(std::io::stderr().is_terminal());

    let mut bundle = Bundle::default();
    bundle.text(
        "pvnet/version.txt",
        "pvnet's version and build",
        Ok(system::version()),
    );

    progress.say(&format!("asking the switch on {}", args.ctl.display()));
    let mut switch_parts = Bundle::default();
    let ports = ctl::collect(&args.ctl, args.log_lines, &mut switch_parts);

    let mut port_parts = Bundle::default();
    std::thread::scope(|scope| {
        // The captures run while the rest is gathered.
        let deadline = Instant::now() + Duration::from_secs(args.capture_secs);
        let mut captures = Vec::new();
        if let Ok(ports) = &ports {
            if args.frames > 0 && !ports.is_empty() {
                progress.say(&format!(
                    "capturing on {} port(s) for up to {} s",
                    ports.len(),
                    args.capture_secs
                ));
            }
            for port in ports {
                captures.push(if args.frames == 0 {
                    Err("--frames 0".to_owned())
                } else {
                    ports::open_capture(&port.info).map(|opened| {
                        let frames = args.frames;
                        scope.spawn(move || ports::capture(opened, frames, deadline))
                    })
                });
            }
        }

        progress.say("reading the kernel's state");
        add_system(&mut bundle);

        match &ports {
            Ok(ports) if ports.is_empty() => port_parts.text(
                "ports/",
                "each port's device, offloads, sysctls, capture and checksum verdicts",
                Err("the switch has no ports".into()),
            ),
            Ok(ports) => {
                let dirs = port_dirs(ports.iter().map(|p| &p.info));
                for ((port, dir), capture) in ports.iter().zip(&dirs).zip(captures) {
                    let capture = capture.and_then(|h| match h.join() {
                        Ok(r) => r,
                        Err(_) => Err("the capture thread panicked".into()),
                    });
                    add_port(&mut port_parts, port, dir, capture, &args);
                }
            }
            Err(why) => port_parts.text(
                "ports/",
                "each port's device (ip -d -s link, ethtool -k), offloads, sysctls, capture \
                 and checksum verdicts",
                Err(format!(
                    "the ports come from the switch's port list, which was not collected: {why}"
                )),
            ),
        }
    });
    bundle.append(switch_parts);
    bundle.append(port_parts);

    let index = bundle.index(&index_header(&host, now, &args), INDEX_FOOTER);
    progress.say(&format!("writing {}", out.display()));
    if let Err(e) = bundle.write(&out, &top, &index, now) {
        eprintln!("pvnet report: {e}");
        return ExitCode::from(1);
    }
    for (why, paths) in bundle.skipped() {
        eprintln!("pvnet report: skipped {}: {why}", paths.join(", "));
    }
    let total = bundle.parts().len();
    let missing = bundle
        .parts()
        .iter()
        .filter(|p| p.contents.is_err())
        .count();
    println!(
        "{}: {} of {total} parts collected{}",
        out.display(),
        total - missing,
        if missing == 0 {
            String::new()
        } else {
            format!(", {missing} not (see stderr, or {} in it)", bundle::INDEX)
        }
    );
    ExitCode::SUCCESS
}

fn add_system(b: &mut Bundle) {
    b.text(
        "system/uname.txt",
        "the kernel's version (uname, /proc/version) and the distribution",
        system::uname(),
    );
    b.text(
        "system/kernel-config.txt",
        "the kernel options about tun/tap, vhost, virtio, tunnels, bridges, packet \
         sockets, GSO and GRO",
        system::kernel_config(),
    );
    b.text(
        "system/sysctl.txt",
        "sysctls about offloads, batching and TCP (this process's namespace)",
        Ok(system::sysctls(false)),
    );
    b.text(
        "system/modules.txt",
        "the loaded modules about virtual networking",
        system::modules(),
    );
    b.text(
        "system/kernel-log.txt",
        "the kernel log lines mentioning tun, tap, virtio, vhost, vxlan, geneve or pvnet",
        system::kernel_log(),
    );
}

fn add_port(
    b: &mut Bundle,
    port: &ctl::Port,
    dir: &str,
    capture: Result<ports::Capture, String>,
    args: &ReportArgs,
) {
    let ctl::Port {
        info: port,
        offload_show,
    } = port;
    let at = ports::describe(port);
    b.text(
        format!("ports/{dir}/ip-link.txt"),
        format!("`ip -d -s link show dev {}`, {at}", port.name),
        ports::ip_link(port),
    );
    b.text(
        format!("ports/{dir}/ethtool-k.txt"),
        format!("`ethtool -k {}`: the device's offloads, {at}", port.name),
        ports::ethtool_k(port),
    );
    b.add(
        format!("ports/{dir}/offload_show.json"),
        "the switch's view of the port's offloads, and why each is off (`offload_show`)",
        offload_show.clone(),
    );
    if port.netns.is_some() {
        b.text(
            format!("ports/{dir}/sysctl.txt"),
            "the sysctls of the port's namespace",
            ports::netns_sysctls(port),
        );
    }
    let what = format!(
        "the first {} frames seen on {at} both ways, in {} s at most, {} bytes of each \
         (classic pcap)",
        args.frames,
        args.capture_secs,
        ports::SNAPLEN
    );
    let pcap_path = format!("ports/{dir}/capture.pcap");
    match capture {
        Ok(c) => {
            let csum = ports::csum_verdicts(&c.pcap, &pcap_path);
            b.add(
                pcap_path,
                format!(
                    "{what}: {} frames ({} received by the device, {} sent out of it) in \
                     {:.1} s",
                    c.frames,
                    c.frames - c.outgoing,
                    c.outgoing,
                    c.took.as_secs_f64()
                ),
                Ok(c.pcap),
            );
            b.text(
                format!("ports/{dir}/csum.txt"),
                "`pvnet pcap csum` over capture.pcap: the IP and TCP/UDP checksum verdicts",
                csum,
            );
        }
        Err(why) => {
            b.add(pcap_path, what, Err(why.clone()));
            b.add(
                format!("ports/{dir}/csum.txt"),
                "`pvnet pcap csum` over capture.pcap",
                Err(format!("no capture: {why}")),
            );
        }
    }
}

/// A directory name for each port: its name made safe for a path, made unique (two ports
/// in different namespaces may share a name).
fn port_dirs<'a>(ports: impl IntoIterator<Item = &'a PortInfo>) -> Vec<String> {
    let mut dirs: Vec<String> = Vec::new();
    for p in ports {
        let base = file_safe(&p.name, "port");
        let mut dir = base.clone();
        let mut n = 2;
        while dirs.contains(&dir) {
            dir = format!("{base}-{n}");
            n += 1;
        }
        dirs.push(dir);
    }
    dirs
}

/// `s` with every character but letters, digits, `.`, `_` and `-` replaced by `_`, never
/// `.` or `..`; `empty` if nothing is left.
fn file_safe(s: &str, empty: &str) -> String {
    let safe: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match safe.as_str() {
        "" => empty.to_owned(),
        "." | ".." => safe.replace('.', "_"),
        _ => safe,
    }
}

fn index_header(host: &str, now: u64, args: &ReportArgs) -> String {
    let command: Vec<String> = std::env::args().collect();
    format!(
        "pvnet report\n\
         ============\n\
         Made by pvnet {} on host {host}, {} UTC.\n\
         Command: {}\n\
         Switch asked on its control socket {}.\n\
         \n\
         Every part below is one file of this directory; a part that could not be collected\n\
         is listed with the reason.\n",
        env!("CARGO_PKG_VERSION"),
        utc(now).readable(),
        command.join(" "),
        args.ctl.display()
    )
}

const INDEX_FOOTER: &str = "\
About the captures:
- Each keeps the first 128 bytes of every frame (the snap length): the headers, and the
  start of the payload of frames whose headers end sooner. Nothing beyond byte 128 of a
  frame is in this bundle.
- Checksum verdicts of frames cut by the snap length are n/a for TCP/UDP (their checksum
  covers the payload). A `partial` verdict on a frame the host sent out of a device with
  checksum offload is normal: the capture sees it before the checksum is filled in.
- Timestamps are the kernel's, UTC.

Addresses (MAC, IP, ports), names, the switch's configuration and its log are in this
bundle: look through it before sharing it.
";

/// A UTC calendar time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Utc {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
}

impl Utc {
    /// `YYYYmmdd-HHMMSS`.
    fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `YYYY-mm-dd HH:MM:SS`.
    fn readable(&self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// The UTC calendar time `secs` seconds after the Unix epoch (proleptic Gregorian, Howard
/// Hinnant's `civil_from_days`).
fn utc(secs: u64) -> Utc {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Utc {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0).readable(), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400).readable(), "2000-02-29 00:00:00");
        assert_eq!(utc(1_700_000_000).compact(), "20231114-221320");
        assert_eq!(utc(4_102_444_799).readable(), "2099-12-31 23:59:59");
    }

    #[test]
    fn file_names_are_made_safe_and_unique() {
        assert_eq!(file_safe("host.example", "x"), "host.example");
        assert_eq!(file_safe("a/b c", "x"), "a_b_c");
        assert_eq!(file_safe("..", "x"), "__");
        assert_eq!(file_safe("", "x"), "x");
        let port = |name: &str| PortInfo {
            name: name.into(),
            kind: "tap".into(),
            spec: format!("tap:{name}"),
            netns: None,
            state: "up".into(),
            carrier_losses: None,
            offload_configured: String::new(),
            offload_in_effect: String::new(),
            gro: false,
            queues: 1,
            vlan: None,
        };
        assert_eq!(
            port_dirs(&[port("pa"), port("pa"), port("p/b"), port("pa")]),
            ["pa", "pa-2", "p_b", "pa-3"]
        );
    }
}
