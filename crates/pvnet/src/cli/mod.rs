//! Subcommands of the `pvnet` binary.

pub mod demo;
pub mod pcap;
pub mod switch;
