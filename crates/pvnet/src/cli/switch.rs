//! `pvnet switch PORT... [--config FILE.toml] [--ctl PATH] [--metrics ADDR] [--pcap FILE]
//! [--print-config] [--log-format text|json] [-v]`: the switch as a daemon, with its
//! control socket, systemd readiness and SIGHUP reload.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use pvnet::ctl::proto::DEFAULT_SOCKET;
use pvnet::ctl::server::Bound;
use pvnet::logging::{self, LogFormat};
use pvnet::switch::config::FileConfig;
use pvnet::switch::control::CtlService;
use pvnet::switch::metrics::MetricsServer;
use pvnet::switch::open::{open_port, OpenError};
use pvnet::switch::{sys, NewPort, Switch, SwitchConfig, SwitchControl};
use pvnet_linux::portspec::PortSpec;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

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
disappear with them) and exits 0. While it runs, `pvnet ctl` talks to it over the control
socket (--ctl): ports are listed, added and removed, counters, MAC table and offloads are
shown. SIGHUP re-reads --config and adds and removes the ports whose [[port]] entries were
added or removed there; every other port is left alone. A port whose device disappears
(a tap deleted, a namespace removed) is removed and counted; the others forward on.
Under systemd (Type=notify) it reports ready once every port is open.

PORT is one of:
  tap:NAME[,netns=NS][,offload=FEATURES][,queues=N][,vlan=VID]
        a tap device, created if missing, inside the existing namespace NS when given;
        FEATURES is a '+'-list such as csum+sg+tso4+tso6, 'none' (a legacy peer) or
        'all' (the default); what this kernel refuses is dropped per offload type;
        queues=N opens a multi-queue tap; vlan=VID makes it an access port
  packet:IFNAME[,netns=NS][,offload=FEATURES][,vlan=VID]
        an AF_PACKET socket on an existing interface (e.g. one end of a veth pair);
        offload= limits what the switch sends to it (the interface's own settings,
        ethtool -K, decide what it hands up)
  vxlan:LOCAL_IP,remote=IP[+IP...][,vni=N][,dstport=4789][,mtu=1500][,netns=NS][,queues=N]
  geneve:LOCAL_IP,remote=IP[+IP...][,vni=N][,dstport=6081][,mtu=1500][,netns=NS][,queues=N]
        an overlay port to the switches (or kernel vxlan devices) of other hosts: frames
        go in VXLAN or GENEVE over UDP from LOCAL_IP (IPv4 or IPv6, inside NS when
        given) to each remote, VNI 1 unless vni= says otherwise; broadcast and unknown
        destinations go to every remote, learned MACs to theirs; mtu is the underlay's
        IP MTU (VXLAN over IPv4 costs 50 bytes: workloads need an MTU of 1450 on a
        1500 underlay); super-frames leave as UDP GSO sends, offload=none sends one
        datagram per system call; queues=N receives on N sockets of the address
        (SO_REUSEPORT), a thread each, the kernel keeping each flow on one
  vhost-user:PATH[,queues=N][,client][,offload=FEATURES][,mac=MAC][,mtu=N][,poll=on][,vlan=VID]
        a VM's virtio-net device: pvnet is the vhost-user backend on the unix socket
        PATH (created; with client, pvnet connects to a frontend listening there);
        QEMU plugs a guest in with -chardev socket,id=c0,path=PATH,reconnect=1
        -netdev vhost-user,id=n0,chardev=c0 -device virtio-net-pci,netdev=n0 and
        shared guest memory (memory-backend-memfd,share=on); the guest's driver
        negotiates checksum, TSO4/6, ECN, UFO and USO both ways (offload= narrows what
        is offered), and what it acknowledges decides what the switch sends it; a
        guest that goes away leaves the socket to the next one; poll=on spins on the
        guest's rings instead of waiting for kicks (a core per port while a guest is
        connected)";

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
  pvnet ctl port add tap:pv2,netns=green     # while it runs
  pvnet switch tap:pv0,netns=red vxlan:192.0.2.1,remote=192.0.2.2,vni=42
  pvnet switch tap:pv0,netns=red vhost-user:/run/pvnet/vm1.sock
  kill -HUP $(pidof pvnet)                   # after editing sw.toml

Logs go to stderr: -v for info, -vv for debug, or RUST_LOG (e.g. RUST_LOG=pvnet=debug);
--log-format json writes one JSON object per line. The switch keeps its last 1000 lines
for `pvnet ctl log` and `pvnet report`. A daemon unit is in contrib/pvnet.service.
Needs CAP_NET_ADMIN (root).";

#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// Ports to switch between (see above).
    #[arg(value_name = "PORT")]
    pub ports: Vec<PortSpec>,
    /// TOML file with [switch] settings and [[port]] specs; re-read on SIGHUP.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Control socket for `pvnet ctl` (created mode 0600, removed on exit). The switch
    /// refuses to start if another running switch answers there.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub ctl: PathBuf,
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
    /// Log lines as text or as JSON objects.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,
    /// More logging: -v info, -vv debug.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

pub fn run(args: SwitchArgs) -> ExitCode {
    let log = logging::init(args.verbose, args.log_format);
    match run_inner(args, log) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("pvnet switch: {msg}");
            ExitCode::from(code)
        }
    }
}

/// A failure: exit status and message.
type Failure = (u8, String);

/// The switch settings, and the port specs of `--config` (if any) and of the command line.
fn load(args: &SwitchArgs) -> Result<(SwitchConfig, Vec<PortSpec>, Vec<PortSpec>), Failure> {
    let mut cfg = SwitchConfig {
        pcap: args.pcap.clone(),
        ..SwitchConfig::default()
    };
    let file_specs = match &args.config {
        Some(path) => {
            let file = FileConfig::load(path).map_err(|e| (EXIT_USAGE, e))?;
            file.apply(&mut cfg);
            file_specs(&file, path).map_err(|e| (EXIT_USAGE, e))?
        }
        None => Vec::new(),
    };
    Ok((cfg, file_specs, args.ports.clone()))
}

fn file_specs(file: &FileConfig, path: &Path) -> Result<Vec<PortSpec>, String> {
    file.port
        .iter()
        .map(|p| {
            p.spec
                .parse::<PortSpec>()
                .map_err(|e| format!("config {}: {e}", path.display()))
        })
        .collect()
}

fn open_error(e: OpenError) -> Failure {
    let code = match e {
        OpenError::NotPermitted(_) => EXIT_USAGE,
        _ => EXIT_FAIL,
    };
    (code, e.to_string())
}

fn run_inner(args: SwitchArgs, log: logging::LogRing) -> Result<(), Failure> {
    let started = Instant::now();
    let (cfg, from_file, from_args) = load(&args)?;
    let specs: Vec<PortSpec> = from_file.iter().chain(&from_args).cloned().collect();
    if specs.is_empty() {
        return Err((
            EXIT_USAGE,
            "no ports: give PORT arguments or [[port]] entries in --config (see --help)".into(),
        ));
    }
    // Two specs for one name would fight over one device (and one metric series).
    for (i, a) in specs.iter().enumerate() {
        if let Some(b) = specs[..i].iter().find(|b| b.name() == a.name()) {
            return Err((
                EXIT_USAGE,
                format!(
                    "ports {b} and {a} have the same name {}: port names must be unique, \
                     also across network namespaces (they name the counters and \
                     `pvnet ctl` requests)",
                    a.name()
                ),
            ));
        }
    }
    if sys::has_net_admin() == Some(false) {
        return Err((EXIT_USAGE, sys::NEED_NET_ADMIN.to_string()));
    }

    // The control socket first: a switch that cannot have it fails before touching any
    // device. (--print-config only looks.)
    let ctl = if args.print_config {
        None
    } else {
        Some(Bound::new(&args.ctl).map_err(|e| (EXIT_FAIL, e))?)
    };
    let mut sw = Switch::new(cfg.clone()).map_err(|e| (EXIT_FAIL, e.to_string()))?;
    for spec in &specs {
        let port = open_port(spec).map_err(open_error)?;
        sw.add_opened(NewPort::opened(spec, port))
            .map_err(|e| (EXIT_FAIL, e.to_string()))?;
    }
    let control = sw.control();

    if args.print_config {
        print!("{}", control.effective().to_toml());
        return Ok(());
    }
    if specs.len() == 1 {
        tracing::warn!(
            "the switch has one port: frames have nowhere to go until another is added \
             (`pvnet ctl port add SPEC`)"
        );
    }

    let service = CtlService {
        control: control.clone(),
        log,
        config_file: args.config.clone(),
        started,
    };
    let _ctl = match ctl {
        Some(ctl) => Some(ctl.serve(Arc::new(service)).map_err(|e| (EXIT_FAIL, e))?),
        None => None,
    };
    let _metrics = match &args.metrics {
        Some(addr) => {
            let control = control.clone();
            let render = Arc::new(move || control.render_metrics());
            Some(MetricsServer::start(addr, render).map_err(|e| (EXIT_FAIL, e.to_string()))?)
        }
        None => None,
    };

    let stop = Arc::new(AtomicBool::new(false));
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(|e| {
        (
            EXIT_FAIL,
            format!("cannot install the SIGINT/SIGTERM/SIGHUP handlers: {e}"),
        )
    })?;
    let signal_handle = signals.handle();
    let reloader = Reloader {
        control: control.clone(),
        config: args.config.clone(),
        from_file,
    };
    let flag = stop.clone();
    let signal_thread = std::thread::Builder::new()
        .name("pvnet-signals".into())
        .spawn(move || {
            let mut reloader = reloader;
            for sig in signals.forever() {
                match sig {
                    SIGHUP => reloader.reload(),
                    _ => {
                        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
                        flag.store(true, Ordering::Relaxed);
                        break;
                    }
                }
            }
        })
        .map_err(|e| (EXIT_FAIL, format!("cannot start the signal thread: {e}")))?;

    for (name, features, gro) in sw.port_features() {
        tracing::info!(port = %name, features = %features, gro, "port ready");
    }
    tracing::info!(ctl = %args.ctl.display(), ports = specs.len(), "switch running");
    // Every port is open and the control socket listens: tell systemd (a no-op when
    // not started by it).
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::debug!("sd_notify: {e}");
    }
    let result = sw.run(&stop);
    signal_handle.close();
    let _ = signal_thread.join();
    let stats = result.map_err(|e| (EXIT_FAIL, e.to_string()))?;
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

/// SIGHUP: re-read `--config` and apply the difference in its `[[port]]` entries to the
/// running switch. Ports from the command line or added with `pvnet ctl` are not the
/// file's, and are left alone.
struct Reloader {
    control: SwitchControl,
    config: Option<PathBuf>,
    /// The file's port specs as last applied.
    from_file: Vec<PortSpec>,
}

impl Reloader {
    fn reload(&mut self) {
        let Some(path) = &self.config else {
            tracing::warn!("SIGHUP: the switch was started without --config; nothing to re-read");
            return;
        };
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
        let file = match FileConfig::load(path).and_then(|f| file_specs(&f, path).map(|s| (f, s))) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!("SIGHUP: {e}; keeping the running configuration");
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
                return;
            }
        };
        let (file, new) = file;
        let mut cfg = SwitchConfig::default();
        file.apply(&mut cfg);
        if (cfg.mac_table_size, cfg.ageing_secs)
            != (
                self.control.effective().switch.mac_table_size,
                self.control.effective().switch.ageing_secs,
            )
        {
            tracing::warn!(
                "SIGHUP: [switch] settings changed in {}; they take effect at the next start",
                path.display()
            );
        }
        let key = |s: &PortSpec| s.to_string();
        let (mut added, mut removed, mut failed) = (0, 0, 0);
        for old in &self.from_file {
            if new.iter().all(|n| key(n) != key(old)) {
                match self.control.del(&old.name()) {
                    Ok(()) => removed += 1,
                    Err(e) => {
                        failed += 1;
                        tracing::error!("SIGHUP: removing {old}: {e}");
                    }
                }
            }
        }
        for spec in &new {
            if self.from_file.iter().all(|o| key(o) != key(spec)) {
                match self.control.add_spec(spec) {
                    Ok(_) => added += 1,
                    Err(e) => {
                        failed += 1;
                        tracing::error!("SIGHUP: adding {spec}: {e}");
                    }
                }
            }
        }
        tracing::info!(added, removed, failed, "SIGHUP: re-read {}", path.display());
        self.from_file = new;
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    }
}
