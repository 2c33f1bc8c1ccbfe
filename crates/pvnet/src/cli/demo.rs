//! `pvnet demo [--seconds N]`: two namespaces joined through the switch, a TCP bulk
//! transfer between them in three offload configurations, and a table of what the switch
//! did.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use pvnet::switch::lab::{Lab, LabOptions};
use pvnet::switch::{sys, SwitchConfig};
use pvnet_core::switch::counters::PortCounters;

pub const LONG_ABOUT: &str = "\
Show the switch at work, with nothing but pvnet and iproute2: create two network
namespaces (unique names), put a tap port of the switch in each (10.199.x.1 and .2), run
a TCP bulk transfer each way between them (both at once) for a few seconds, and print
what the switch did, for three configurations:

  offloads both      both taps take checksum offload and TSO/USO: super-frames pass
                     through unchanged
  offload=none one   the second tap takes no offloads: super-frames to it are
                     segmented and checksums completed in software, its wire-sized
                     frames are coalesced (GRO) for the first
  offload=none both  neither does: wire-sized frames only, with full checksums

The switch runs in this process (the same runtime as `pvnet switch`). Everything the demo
creates is removed when it ends, also on Ctrl-C or failure. Needs root.";

pub const AFTER_HELP: &str = "\
Columns: Gbit/s of both transfers together; super-frames passed through whole; super-frames
segmented in software; segments made; checksums completed in software; received frames
coalesced by GRO into super-frames.

Examples:
  sudo pvnet demo
  sudo pvnet demo --seconds 10
  sudo RUST_LOG=pvnet=info pvnet demo --seconds 1";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Length of each transfer, in seconds.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub seconds: u64,
}

struct Row {
    name: &'static str,
    gbps: f64,
    /// Counters of both ports added up.
    totals: PortCounters,
}

pub fn run(args: DemoArgs) -> ExitCode {
    let _ = pvnet::logging::init(0, pvnet::logging::LogFormat::Text);
    if sys::has_net_admin() != Some(true) {
        eprintln!("pvnet demo: {}", sys::NEED_NET_ADMIN);
        return ExitCode::from(2);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed)) {
        eprintln!("pvnet demo: cannot install the Ctrl-C handler: {e}");
        return ExitCode::FAILURE;
    }
    let configs: [(&'static str, [Option<&str>; 2]); 3] = [
        ("offloads both", [None, None]),
        ("offload=none one", [None, Some("none")]),
        ("offload=none both", [Some("none"), Some("none")]),
    ];
    let secs = Duration::from_secs(args.seconds.max(1));
    let mut rows = Vec::new();
    for (name, offload) in configs {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match run_one(offload, secs, &stop) {
            Ok((gbps, totals)) => rows.push(Row { name, gbps, totals }),
            Err(e) => {
                eprintln!("pvnet demo: {name}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if stop.load(Ordering::Relaxed) {
        eprintln!("pvnet demo: interrupted; everything it created was removed");
        return ExitCode::from(130);
    }
    println!(
        "{:<18} {:>8} {:>12} {:>10} {:>10} {:>10} {:>10}",
        "configuration", "Gbit/s", "passed-thru", "segmented", "segments", "csum-done", "coalesced"
    );
    for r in rows {
        let t = r.totals;
        println!(
            "{:<18} {:>8.2} {:>12} {:>10} {:>10} {:>10} {:>10}",
            r.name,
            r.gbps,
            t.gso_tx,
            t.gso_segmented,
            t.segments,
            t.csum_completed,
            t.gro_coalesced
        );
    }
    ExitCode::SUCCESS
}

fn run_one(
    offload: [Option<&str>; 2],
    secs: Duration,
    stop: &AtomicBool,
) -> std::io::Result<(f64, PortCounters)> {
    let mut lab = Lab::start(LabOptions {
        offload: offload.map(|o| o.map(str::to_owned)),
        config: SwitchConfig::default(),
        ..LabOptions::default()
    })?;
    // Both directions at once: with one port offload=none, one direction is segmented
    // and the other coalesced.
    let (fwd, rev) = std::thread::scope(|s| {
        let lab = &lab;
        let back = s.spawn(move || lab.tcp(1, false, 0, secs, Some(stop)));
        let fwd = lab.tcp(0, false, 0, secs, Some(stop));
        let rev = back
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("transfer thread panicked")));
        (fwd, rev)
    });
    let (fwd, rev) = (fwd?, rev?);
    let stats = lab.stop()?;
    for t in [fwd, rev] {
        if !t.intact && !stop.load(Ordering::Relaxed) {
            return Err(std::io::Error::other(format!(
                "transfer corrupted: sent {} bytes, {} arrived",
                t.sent, t.received
            )));
        }
    }
    Ok((
        fwd.gbit_per_sec() + rev.gbit_per_sec(),
        stats.iter().map(|(_, c)| c).sum(),
    ))
}
