//! `pvnet`: packet-offload tools and the userspace virtual switch.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// pvnet: a software network-offload engine.
///
/// pvnet does in userspace what a paravirtual NIC and its host do with packet offloads:
/// partial checksums, scatter-gather buffers, segmentation (TSO/USO/UFO) and receive
/// coalescing. These commands apply that engine to capture files and run it as a
/// userspace virtual switch between tap devices.
#[derive(Debug, Parser)]
#[command(name = "pvnet", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work on pcap/pcapng capture files.
    #[command(subcommand)]
    Pcap(cli::pcap::PcapCommand),
    /// Run the userspace L2 switch with offload adaptation between ports.
    #[command(long_about = cli::switch::LONG_ABOUT, after_help = cli::switch::AFTER_HELP)]
    Switch(cli::switch::SwitchArgs),
    /// Talk to a running switch: ports, counters, MAC table, offloads, log.
    #[command(long_about = cli::ctl::LONG_ABOUT, after_help = cli::ctl::AFTER_HELP)]
    Ctl(cli::ctl::CtlArgs),
    /// Demonstrate the switch between two throw-away namespaces (needs root).
    #[command(long_about = cli::demo::LONG_ABOUT, after_help = cli::demo::AFTER_HELP)]
    Demo(cli::demo::DemoArgs),
    /// Gather a bug-report bundle: versions, kernel state, the switch's state, captures.
    #[command(long_about = cli::report::LONG_ABOUT, after_help = cli::report::AFTER_HELP)]
    Report(cli::report::ReportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Pcap(cmd) => cli::pcap::run(cmd),
        Command::Switch(args) => cli::switch::run(args),
        Command::Ctl(args) => cli::ctl::run(args),
        Command::Demo(args) => cli::demo::run(args),
        Command::Report(args) => cli::report::run(args),
    }
}
