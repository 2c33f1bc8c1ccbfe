//! Subcommands of the `pvnet` binary.

pub mod pcap;
