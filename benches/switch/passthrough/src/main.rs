//! `vnet-passthrough`: the ceiling for a userspace switch.
//!
//! Opens two taps with 12-byte virtio-net headers and the offloads this kernel supports,
//! and copies every packet from one to the other unchanged, header included: a TSO
//! super-frame or a partial checksum read from one side is written as it is into the
//! other. No parsing, no switching decision, one read and one write per packet, one
//! thread per direction blocked in `read(2)`, no allocation after start-up. Whatever a
//! switch does on top of this costs throughput; this program measures what is left
//! without it.
//!
//! ```text
//! vnet-passthrough [--offload probe|none|0xBITS] SIDE SIDE
//!   SIDE = [tap:]NAME[,netns=NS]   (tap created if missing, inside /var/run/netns/NS)
//! ```
//!
//! Once both taps are open it prints one `ready …` line on standard output. SIGINT or
//! SIGTERM ends it with exit status 0 after printing per-direction counters on standard
//! error. A read error is fatal (exit status 1); a write the kernel refuses is counted as
//! a drop and forwarding goes on.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pvnet_linux::tap::{offload, Tap, TapOptions};

/// virtio_net_hdr with num_buffers, as the pvnet switch uses.
const VNET_HDR_LEN: usize = 12;

/// A GSO super-frame is at most 64 KiB of IP packet plus its Ethernet (and VLAN) header,
/// after the vnet header; leave room to spare so a read is never truncated.
const BUF_LEN: usize = 65_536 + 4096;

/// What `--offload probe` (the default) asks for: everything a virtio-net guest would.
const WANTED_OFFLOADS: u32 = offload::CSUM
    | offload::TSO4
    | offload::TSO6
    | offload::TSO_ECN
    | offload::USO4
    | offload::USO6;

const USAGE: &str = "usage: vnet-passthrough [--offload probe|none|0xBITS] SIDE SIDE\n  \
                     SIDE = [tap:]NAME[,netns=NS]";

/// One end: a tap device name and the named namespace it lives in (none: ours).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Side {
    name: String,
    netns: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offloads {
    /// The largest subset of [`WANTED_OFFLOADS`] the kernel accepts.
    Probe,
    /// Exactly these `TUN_F_*` bits.
    Exact(u32),
}

#[derive(Debug)]
struct Args {
    offloads: Offloads,
    sides: [Side; 2],
}

fn parse_side(spec: &str) -> Result<Side, String> {
    let spec = spec.strip_prefix("tap:").unwrap_or(spec);
    let mut parts = spec.split(',');
    let name = parts.next().unwrap_or_default();
    if name.is_empty() || name.len() > 15 {
        return Err(format!("{spec:?}: the tap name must have 1 to 15 bytes"));
    }
    let mut netns = None;
    for part in parts {
        match part.split_once('=') {
            Some(("netns", ns)) if !ns.is_empty() => netns = Some(ns.to_owned()),
            _ => return Err(format!("{spec:?}: unknown option {part:?} (only netns=NS)")),
        }
    }
    Ok(Side {
        name: name.to_owned(),
        netns,
    })
}

fn parse_offloads(value: &str) -> Result<Offloads, String> {
    match value {
        "probe" => Ok(Offloads::Probe),
        "none" => Ok(Offloads::Exact(0)),
        _ => {
            let hex = value
                .strip_prefix("0x")
                .ok_or_else(|| format!("--offload {value:?}: probe, none or 0xBITS"))?;
            u32::from_str_radix(hex, 16)
                .map(Offloads::Exact)
                .map_err(|e| format!("--offload {value:?}: {e}"))
        }
    }
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut offloads = Offloads::Probe;
    let mut sides = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--offload" => {
                let value = args.next().ok_or("--offload needs a value")?;
                offloads = parse_offloads(&value)?;
            }
            _ if arg.starts_with("--offload=") => {
                offloads = parse_offloads(&arg["--offload=".len()..])?;
            }
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg:?}")),
            _ => sides.push(parse_side(&arg)?),
        }
    }
    let sides: [Side; 2] = sides
        .try_into()
        .map_err(|s: Vec<Side>| format!("need exactly two taps, got {}", s.len()))?;
    if sides[0] == sides[1] {
        return Err("the two sides are the same tap".to_owned());
    }
    Ok(Args { offloads, sides })
}

/// The namespace file of `netns`: a name under `/var/run/netns`, or a path.
fn netns_path(netns: &str) -> PathBuf {
    if netns.contains('/') {
        PathBuf::from(netns)
    } else {
        pvnet_linux::netns::path(netns)
    }
}

fn open_side(side: &Side, offloads: Offloads) -> io::Result<Tap> {
    let opts = TapOptions {
        name: side.name.clone(),
        tun: false,
        vnet_hdr: true,
        vnet_hdr_len: VNET_HDR_LEN,
        multi_queue: false,
        offloads: 0,
    };
    let tap = match &side.netns {
        None => Tap::open(&opts)?,
        Some(ns) => pvnet_linux::netns::run_in(&netns_path(ns), || Tap::open(&opts))??,
    };
    match offloads {
        Offloads::Probe => {
            tap.probe_offloads(WANTED_OFFLOADS)?;
        }
        Offloads::Exact(bits) => tap.set_offload(bits)?,
    }
    Ok(tap)
}

/// Counters of one direction, on a cache line of their own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Counters {
    packets: AtomicU64,
    bytes: AtomicU64,
    drops: AtomicU64,
}

/// Copy packets from `from` to `to` until a read fails, and return that error.
fn forward(from: &Tap, to: &Tap, counters: &Counters) -> io::Error {
    let mut buf = vec![0u8; BUF_LEN];
    loop {
        let n = match from.read(&mut buf) {
            Ok(n) => n,
            Err(e) => return e,
        };
        // A read that fills the buffer may have been truncated: never pass that on.
        let result = if n >= buf.len() {
            Err(io::Error::other(format!("packet of {n}+ bytes truncated")))
        } else {
            to.write(&buf[..n])
        };
        match result {
            Ok(_) => {
                counters.packets.fetch_add(1, Ordering::Relaxed);
                counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => {
                let drops = counters.drops.fetch_add(1, Ordering::Relaxed) + 1;
                // The 1st, 2nd, 4th, 8th … drop is reported, so a flood does not flood stderr.
                if drops.is_power_of_two() {
                    eprintln!(
                        "vnet-passthrough: {} -> {}: dropped a packet of {n} bytes ({drops} so \
                         far): {e}",
                        from.name(),
                        to.name()
                    );
                }
            }
        }
    }
}

/// Block SIGINT and SIGTERM in this thread (and so in every thread spawned after) and
/// return the set, for [`wait_for_signal`].
fn block_exit_signals() -> io::Result<libc::sigset_t> {
    // SAFETY: sigemptyset/sigaddset initialise and fill the local set through a valid
    // pointer; pthread_sigmask reads it and changes only this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let ret = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if ret != 0 {
            return Err(io::Error::from_raw_os_error(ret));
        }
        Ok(set)
    }
}

/// Wait until one of the blocked signals in `set` is pending and return its number.
fn wait_for_signal(set: &libc::sigset_t) -> io::Result<libc::c_int> {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is an initialised sigset and `sig` a live int to write to.
    let ret = unsafe { libc::sigwait(set, &mut sig) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(sig)
}

fn run(args: Args) -> io::Result<()> {
    // Before any thread exists, so the forwarding threads never take the signals.
    let signals = block_exit_signals()?;

    let a = Arc::new(open_side(&args.sides[0], args.offloads)?);
    let b = Arc::new(open_side(&args.sides[1], args.offloads)?);
    let counters = Arc::new([Counters::default(), Counters::default()]);

    for (dir, from, to) in [(0, &a, &b), (1, &b, &a)] {
        let (from, to, counters) = (Arc::clone(from), Arc::clone(to), Arc::clone(&counters));
        std::thread::Builder::new()
            .name(format!("{}->{}", from.name(), to.name()))
            .spawn(move || {
                let err = forward(&from, &to, &counters[dir]);
                eprintln!("vnet-passthrough: read from {}: {err}", from.name());
                // The main thread is in sigwait; end the process from here.
                std::process::exit(1);
            })?;
    }

    let mut stdout = io::stdout().lock();
    writeln!(
        stdout,
        "ready {} <-> {} vnet_hdr={VNET_HDR_LEN} offloads={:#x}/{:#x}",
        a.name(),
        b.name(),
        a.offloads(),
        b.offloads()
    )?;
    stdout.flush()?;
    drop(stdout);

    let sig = wait_for_signal(&signals)?;
    for (from, to, c) in [(&a, &b, &counters[0]), (&b, &a, &counters[1])] {
        eprintln!(
            "vnet-passthrough: {} -> {}: {} packets, {} bytes, {} dropped",
            from.name(),
            to.name(),
            c.packets.load(Ordering::Relaxed),
            c.bytes.load(Ordering::Relaxed),
            c.drops.load(Ordering::Relaxed)
        );
    }
    eprintln!("vnet-passthrough: signal {sig}, exiting");
    // Returning ends the process, the forwarding threads with it; the taps close on exit.
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(msg) if msg.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("vnet-passthrough: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vnet-passthrough: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse_args(list.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn parses_sides_and_offloads() {
        let a = args(&["tap:a0,netns=A", "b0", "--offload", "none"]).unwrap();
        assert_eq!(a.offloads, Offloads::Exact(0));
        assert_eq!(
            a.sides,
            [
                Side {
                    name: "a0".into(),
                    netns: Some("A".into())
                },
                Side {
                    name: "b0".into(),
                    netns: None
                }
            ]
        );
        assert_eq!(
            args(&["--offload=0x3", "x", "y"]).unwrap().offloads,
            Offloads::Exact(3)
        );
        assert_eq!(args(&["x", "y"]).unwrap().offloads, Offloads::Probe);
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(args(&["a0"]).is_err());
        assert!(args(&["a0", "b0", "c0"]).is_err());
        assert!(args(&["a0", "a0"]).is_err());
        assert!(args(&["a0,mtu=9000", "b0"]).is_err());
        assert!(args(&["a0", "b0", "--offload", "all"]).is_err());
        assert!(args(&["a0", "0123456789abcdef"]).is_err());
        assert!(args(&["--verbose", "a0", "b0"]).is_err());
    }
}
