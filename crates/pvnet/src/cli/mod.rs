//! Subcommands of the `pvnet` binary.

pub mod ctl;
pub mod demo;
pub mod pcap;
pub mod report;
pub mod switch;
