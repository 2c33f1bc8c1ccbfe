//! pvnet: the userspace virtual switch runtime, shared by `pvnet switch`, `pvnet demo`
//! and the integration tests.
//!
//! Every syscall goes through `pvnet-linux`: this crate is safe Rust only.

#![forbid(unsafe_code)]

pub mod ctl;
#[cfg(feature = "testing")]
pub mod guest;
pub mod logging;
pub mod switch;
