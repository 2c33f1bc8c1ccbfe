//! The L2 switch's decisions as pure functions: the MAC learning table, VLAN rules, the
//! destinations of a frame, which ports coalesce on ingress, the drop cause of every error
//! and the per-port counters. No I/O and no clock: the caller passes the time, the runtime
//! (the `pvnet` binary) only moves frames and runs threads.

pub mod counters;
pub mod forward;
pub mod gro_plan;
pub mod mac_table;
pub mod vlan;
