//! `pvnet ctl`: the client of a running switch's control socket, iproute2-style verbs.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use pvnet::ctl::client::{Client, CtlError};
use pvnet::ctl::proto::{
    ConfigReply, LogReply, MacReply, OffloadReply, PortInfo, Request, StatsReply, VersionReply,
    DEFAULT_SOCKET,
};
use serde::de::DeserializeOwned;

pub const LONG_ABOUT: &str = "\
Talk to a running `pvnet switch` over its control socket: list, add and remove ports while
it forwards, read counters (once or every second), the MAC table, each port's offloads in
`ethtool -k` form, the switch's configuration and its last log lines.

Every command prints a human-readable answer, or with --json the switch's JSON result
(docs/ctl.md describes both the protocol and the result shapes). Errors are one line on
stderr and exit status 1: an unknown port, a spec that cannot be opened (the same message
as at start-up), or no switch on the socket (the message names the socket tried).";

pub const AFTER_HELP: &str = "\
Examples:
  pvnet ctl port list
  pvnet ctl port add tap:vm7,netns=tenant3,offload=csum+sg+tso4+tso6
  pvnet ctl port del vm7
  pvnet ctl stats --watch
  pvnet ctl --json stats vm7 | jq .ports[0].counters
  pvnet ctl mac list
  pvnet ctl offload show vm7
  pvnet ctl --ctl /run/pvnet/lab.sock log -n 50";

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The switch's control socket (its --ctl).
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub ctl: PathBuf,
    /// Print the switch's JSON result instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Ports: add, del, list.
    #[command(subcommand)]
    Port(PortCommand),
    /// Counters of every port, or of one.
    Stats {
        /// Only this port (all counters and drops by cause).
        port: Option<String>,
        /// Print them again every second, with rates, until Ctrl-C.
        #[arg(long)]
        watch: bool,
    },
    /// The MAC learning table.
    #[command(subcommand)]
    Mac(MacCommand),
    /// A port's offloads.
    #[command(subcommand)]
    Offload(OffloadCommand),
    /// The configuration the switch runs now (TOML, as --print-config prints it).
    Config,
    /// The switch's last log lines.
    Log {
        /// How many lines (it keeps 1000).
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
    },
    /// The switch's version, pid and uptime.
    Version,
}

#[derive(Debug, Subcommand)]
pub enum PortCommand {
    /// Open a port and add it to the running switch (SPEC as for `pvnet switch`).
    Add {
        /// e.g. tap:pv2,netns=red, packet:veth0,offload=none,
        /// vxlan:192.0.2.1,remote=192.0.2.2 or vhost-user:/run/pvnet/vm1.sock
        spec: String,
    },
    /// Remove a port (a tap the switch created disappears).
    Del {
        /// The port's name.
        name: String,
    },
    /// Every port: name, kind, namespace, state, VLAN, queues, GRO, offloads in effect
    /// and as configured.
    List,
}

#[derive(Debug, Subcommand)]
pub enum MacCommand {
    /// Every learned address: MAC, VLAN, port, seconds since last seen.
    List,
}

#[derive(Debug, Subcommand)]
pub enum OffloadCommand {
    /// The port's offloads in `ethtool -k` form, and why each one that is off is off.
    Show {
        /// The port's name.
        port: String,
    },
}

pub fn run(args: CtlArgs) -> ExitCode {
    match run_inner(&args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pvnet ctl: {e}");
            ExitCode::from(1)
        }
    }
}

/// One request; the JSON result as text with --json, else `show`'s rendering.
fn ask<T: DeserializeOwned>(
    args: &CtlArgs,
    req: &Request,
    show: impl FnOnce(T) -> String,
) -> Result<String, CtlError> {
    let mut client = Client::connect(&args.ctl)?;
    let value = client.call(req)?;
    if args.json {
        return Ok(format!("{value}\n"));
    }
    Ok(show(client.decode(value)?))
}

fn run_inner(args: &CtlArgs) -> Result<String, CtlError> {
    match &args.command {
        CtlCommand::Port(PortCommand::Add { spec }) => ask(
            args,
            &Request::PortAdd { spec: spec.clone() },
            |p: PortInfo| {
                format!(
                    "added port {} ({}{}), offloads in effect: {}\n",
                    p.name,
                    p.kind,
                    p.netns
                        .map_or_else(String::new, |n| format!(" in netns {n}")),
                    p.offload_in_effect
                )
            },
        ),
        CtlCommand::Port(PortCommand::Del { name }) => ask(
            args,
            &Request::PortDel { name: name.clone() },
            |_: serde_json::Value| format!("removed port {name}\n"),
        ),
        CtlCommand::Port(PortCommand::List) => {
            ask(args, &Request::PortList {}, |ports: Vec<PortInfo>| {
                port_table(&ports)
            })
        }
        CtlCommand::Stats { port, watch: false } => ask(
            args,
            &Request::Stats { port: port.clone() },
            |s: StatsReply| stats_text(&s, port.is_some(), None),
        ),
        CtlCommand::Stats { port, watch: true } => watch(args, port.clone()),
        CtlCommand::Mac(MacCommand::List) => {
            ask(args, &Request::MacList {}, |m: MacReply| mac_table(&m))
        }
        CtlCommand::Offload(OffloadCommand::Show { port }) => ask(
            args,
            &Request::OffloadShow { port: port.clone() },
            |o: OffloadReply| offload_text(&o),
        ),
        CtlCommand::Config => ask(args, &Request::Config {}, |c: ConfigReply| {
            let mut out = String::new();
            if let Some(f) = c.config_file {
                let _ = writeln!(out, "# started with --config {f}");
            }
            out.push_str(&c.toml);
            out
        }),
        CtlCommand::Log { lines } => ask(args, &Request::Log { lines: *lines }, |l: LogReply| {
            l.lines.iter().map(|l| format!("{l}\n")).collect()
        }),
        CtlCommand::Version => ask(args, &Request::Version {}, |v: VersionReply| {
            format!(
                "pvnet switch {} (pid {}, up {} s); pvnet ctl {}\n",
                v.version,
                v.pid,
                v.uptime_secs,
                env!("CARGO_PKG_VERSION")
            )
        }),
    }
}

/// Rows of cells as aligned columns.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn port_table(ports: &[PortInfo]) -> String {
    if ports.is_empty() {
        return "no ports\n".to_owned();
    }
    let mut rows = vec![[
        "NAME",
        "KIND",
        "NETNS",
        "STATE",
        "VLAN",
        "QUEUES",
        "GRO",
        "OFFLOADS",
        "CONFIGURED",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    for p in ports {
        rows.push(vec![
            p.name.clone(),
            p.kind.clone(),
            p.netns.clone().unwrap_or_else(|| "-".into()),
            p.state.clone(),
            p.vlan.map_or_else(|| "trunk".into(), |v| v.to_string()),
            p.queues.to_string(),
            if p.gro { "on" } else { "off" }.into(),
            p.offload_in_effect.clone(),
            p.offload_configured.clone(),
        ]);
    }
    columns(&rows)
}

fn counter(s: &pvnet::ctl::proto::PortStats, k: &str) -> u64 {
    s.counters.get(k).copied().unwrap_or(0)
}

/// The counters as a table (all ports) or a list (one port); with `rates`, the previous
/// reply and the seconds since, for per-second rates.
fn stats_text(s: &StatsReply, one: bool, rates: Option<(&StatsReply, f64)>) -> String {
    let mut out = String::new();
    if one {
        for p in &s.ports {
            let _ = writeln!(out, "port {}", p.port);
            for (k, v) in &p.counters {
                let _ = writeln!(out, "  {k:<16} {v}");
            }
            for (k, v) in p.drops.iter().filter(|(_, v)| **v > 0) {
                let _ = writeln!(out, "  drops/{k:<10} {v}");
            }
            if p.drops.values().all(|v| *v == 0) {
                let _ = writeln!(out, "  drops            0");
            }
            for (k, v) in p.guest_errors.iter().filter(|(_, v)| **v > 0) {
                let _ = writeln!(out, "  guest/{k:<10} {v}");
            }
        }
        return out;
    }
    let mut head = vec![
        "PORT",
        "RX",
        "RX-BYTES",
        "TX",
        "TX-BYTES",
        "GSO-RX",
        "GSO-TX",
        "SEGMENTED",
        "CSUM",
        "GRO",
        "DROPS",
    ];
    if rates.is_some() {
        head.extend(["RX/s", "TX/s"]);
    }
    let mut rows = vec![head.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    for p in &s.ports {
        let drops: u64 = p.drops.values().sum();
        let mut row = vec![
            p.port.clone(),
            counter(p, "rx_packets").to_string(),
            counter(p, "rx_bytes").to_string(),
            counter(p, "tx_packets").to_string(),
            counter(p, "tx_bytes").to_string(),
            counter(p, "gso_rx").to_string(),
            counter(p, "gso_tx").to_string(),
            counter(p, "gso_segmented").to_string(),
            counter(p, "csum_completed").to_string(),
            counter(p, "gro_coalesced").to_string(),
            drops.to_string(),
        ];
        if let Some((prev, secs)) = rates {
            let before = prev.ports.iter().find(|q| q.port == p.port);
            let rate = |k: &str| {
                let old = before.map_or(0, |b| counter(b, k));
                format!(
                    "{:.0}",
                    counter(p, k).saturating_sub(old) as f64 / secs.max(1e-3)
                )
            };
            row.push(rate("rx_packets"));
            row.push(rate("tx_packets"));
        }
        rows.push(row);
    }
    out.push_str(&columns(&rows));
    let removed: Vec<String> = s
        .ports_removed
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(
        out,
        "MAC table {}/{}; ports removed: {}",
        s.mac_entries,
        s.mac_capacity,
        removed.join(", ")
    );
    out
}

/// `stats --watch`: the table every second until interrupted.
fn watch(args: &CtlArgs, port: Option<String>) -> Result<String, CtlError> {
    let mut client = Client::connect(&args.ctl)?;
    let req = Request::Stats { port: port.clone() };
    let tty = std::io::stdout().is_terminal();
    let mut prev: Option<(StatsReply, Instant)> = None;
    loop {
        let value = client.call(&req)?;
        let now = Instant::now();
        if args.json {
            println!("{value}");
        } else {
            let s: StatsReply = client.decode(value)?;
            let rates = prev
                .as_ref()
                .map(|(p, t)| (p, now.duration_since(*t).as_secs_f64()));
            let text = stats_text(&s, port.is_some(), rates);
            if tty {
                // Home and clear, then the table: a refreshing screen like watch(1).
                print!("\x1b[H\x1b[2J");
            }
            println!("{text}");
            prev = Some((s, now));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn mac_table(m: &MacReply) -> String {
    let mut rows = vec![["MAC", "VLAN", "PORT", "AGE"]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()];
    for e in &m.entries {
        rows.push(vec![
            e.mac.clone(),
            e.vlan.to_string(),
            e.port.clone(),
            format!("{:.1}s", e.age_secs),
        ]);
    }
    let mut out = columns(&rows);
    let _ = writeln!(
        out,
        "{} of {} entries; addresses age out after {} s",
        m.entries.len(),
        m.capacity,
        m.ageing_secs
    );
    out
}

fn offload_text(o: &OffloadReply) -> String {
    let mut out = format!("Features for {}:\n", o.port);
    for f in &o.features {
        let state = if f.on { "on" } else { "off" };
        let fixed = if f.fixed { " [fixed]" } else { "" };
        let why = f
            .why_off
            .as_ref()
            .map_or_else(String::new, |w| format!("\t# {w}"));
        let _ = writeln!(out, "{}: {state}{fixed}{why}", f.name);
    }
    out
}
