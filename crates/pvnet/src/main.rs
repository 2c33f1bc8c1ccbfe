//! `pvnet`: packet-offload tools and (later) the userspace virtual switch.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// pvnet: a software network-offload engine.
///
/// pvnet does in userspace what a paravirtual NIC and its host do with packet offloads:
/// partial checksums, scatter-gather buffers, segmentation (TSO/USO/UFO) and receive
/// coalescing. These commands apply that engine to capture files.
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Pcap(cmd) => cli::pcap::run(cmd),
    }
}
