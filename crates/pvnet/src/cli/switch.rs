//! `pvnet switch PORT... [--config FILE.toml] [--metrics ADDR] [--pcap FILE]
//! [--print-config] [-v]`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Args;
use pvnet::switch::config::{Effective, EffectivePort, EffectiveSwitch, FileConfig};
use pvnet::switch::metrics::MetricsServer;
use pvnet::switch::open::{open_port, OpenError};
use pvnet::switch::{sys, Switch, SwitchConfig};
use pvnet_core::offload::features::Features;
use pvnet_linux::portspec::PortSpec;

/// Exit status of a runtime failure (a port that cannot be opened, …).
const EXIT_FAIL: u8 = 1;
/// Exit status of a usage or permission problem.
const EXIT_USAGE: u8 = 2;

pub const LONG_ABOUT: &str = "\
Run a userspace L2 switch between tap devices and interfaces, adapting every frame to what
its destination can take: super-frames (TSO/USO) pass through to ports that take them and
are segmented in software for the others; partial checksums are completed for ports without
checksum offload; frames from ports without offloads are coalesced (GRO) for ports that
take super-frames. MAC addresses are learned (and age out); broadcast, multicast and
unknown destinations are flooded.

Runs in the foreground until SIGINT or SIGTERM, then closes its ports (taps it created
disappear with them) and exits 0.

PORT is one of:
  tap:NAME[,netns=NS][,offload=FEATURES][,queues=N][,vlan=VID]
        a tap device, created if missing, inside the existing namespace NS when given;
        FEATURES is a '+'-list such as csum+sg+tso4+tso6, 'none' (a legacy peer) or
        'all' (the default); what this kernel refuses is dropped per offload type;
        queues=N opens a multi-queue tap; vlan=VID makes it an access port
  packet:IFNAME[,netns=NS][,offload=FEATURES][,vlan=VID]
        an AF_PACKET socket on an existing interface (e.g. one end of a veth pair);
        offload= limits what the switch sends to it (the interface's own settings,
        ethtool -K, decide what it hands up)";

pub const AFTER_HELP: &str = "\
Config file (--config), ports from the command line are added to its ports:
  [switch]
  mac_table_size = 4096
  ageing_secs = 300
  [[port]]
  spec = \"tap:pv0,netns=red\"

Examples:
  ip netns add red; ip netns add blue
  pvnet switch tap:pv0,netns=red tap:pv1,netns=blue,offload=none -v
  pvnet switch tap:pv0,netns=red tap:pv1,netns=blue --print-config
  pvnet switch --config sw.toml --metrics 127.0.0.1:9100 --pcap sent.pcap
  curl -s 127.0.0.1:9100/metrics | grep segments

Logs go to stderr: -v for info, -vv for debug, or RUST_LOG (e.g. RUST_LOG=pvnet=debug).
Needs CAP_NET_ADMIN (root).";

#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// Ports to switch between (see above).
    #[arg(value_name = "PORT")]
    pub ports: Vec<PortSpec>,
    /// TOML file with [switch] settings and [[port]] specs.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9100).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Write every frame the switch sends (after adaptation) to this pcap file.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Open the ports, print the effective configuration (TOML, with each port's
    /// resolved offload features) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// More logging: -v info, -vv debug.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Set up tracing on stderr: RUST_LOG if set, else warn / info / debug by `verbose`.
pub fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn run(args: SwitchArgs) -> ExitCode {
    init_logging(args.verbose);
    match run_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("pvnet switch: {msg}");
            ExitCode::from(code)
        }
    }
}

fn run_inner(args: SwitchArgs) -> Result<(), (u8, String)> {
    let mut cfg = SwitchConfig {
        pcap: args.pcap.clone(),
        ..SwitchConfig::default()
    };
    let mut specs = Vec::new();
    if let Some(path) = &args.config {
        let file = FileConfig::load(path).map_err(|e| (EXIT_USAGE, e))?;
        file.apply(&mut cfg);
        for p in &file.port {
            let spec: PortSpec = p
                .spec
                .parse()
                .map_err(|e| (EXIT_USAGE, format!("config {}: {e}", path.display())))?;
            specs.push(spec);
        }
    }
    specs.extend(args.ports.iter().cloned());
    if specs.is_empty() {
        return Err((
            EXIT_USAGE,
            "no ports: give PORT arguments or [[port]] entries in --config (see --help)".into(),
        ));
    }
    if sys::has_net_admin() == Some(false) {
        return Err((EXIT_USAGE, sys::NEED_NET_ADMIN.to_string()));
    }

    let mut sw = Switch::new(cfg.clone()).map_err(|e| (EXIT_FAIL, e.to_string()))?;
    for spec in &specs {
        let port = open_port(spec).map_err(|e| {
            let code = match e {
                OpenError::NotPermitted(_) => EXIT_USAGE,
                _ => EXIT_FAIL,
            };
            (code, e.to_string())
        })?;
        sw.add_port(&port.name, port.queues, spec.vlan)
            .map_err(|e| (EXIT_FAIL, e.to_string()))?;
    }

    if args.print_config {
        let ports = sw
            .port_features()
            .into_iter()
            .zip(&specs)
            .map(|((name, features, gro), spec)| EffectivePort {
                spec: spec.to_string(),
                name,
                netns: spec.netns.clone(),
                vlan: spec.vlan,
                features: features_short(features),
                features_ethtool: features.ethtool_string(),
                gro,
            })
            .collect();
        let eff = Effective {
            switch: EffectiveSwitch {
                mac_table_size: cfg.mac_table_size,
                ageing_secs: cfg.ageing_secs,
                pcap: cfg.pcap.as_ref().map(|p| p.display().to_string()),
            },
            port: ports,
        };
        print!("{}", eff.to_toml());
        return Ok(());
    }

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed)).map_err(|e| {
        (
            EXIT_FAIL,
            format!("cannot install the SIGINT/SIGTERM handler: {e}"),
        )
    })?;
    let _metrics = match &args.metrics {
        Some(addr) => {
            Some(MetricsServer::start(addr, sw.stats()).map_err(|e| (EXIT_FAIL, e.to_string()))?)
        }
        None => None,
    };
    for (name, features, gro) in sw.port_features() {
        tracing::info!(port = %name, features = %features, gro, "port ready");
    }
    let stats = sw.run(&stop).map_err(|e| (EXIT_FAIL, e.to_string()))?;
    drop(sw);
    for (name, s) in stats {
        tracing::info!(
            port = %name,
            rx = s.rx_packets,
            tx = s.tx_packets,
            segments = s.segments,
            "port closed"
        );
    }
    Ok(())
}

fn features_short(f: Features) -> String {
    f.to_string()
}
