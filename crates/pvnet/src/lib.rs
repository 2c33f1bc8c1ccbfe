//! pvnet: the userspace virtual switch runtime, shared by `pvnet switch`, `pvnet demo`
//! and the integration tests.

pub mod switch;
