//! Pure building blocks of the L2 switch: the MAC learning table, VLAN access-port
//! helpers and per-port counters. No I/O and no clock: the caller passes the time.

pub mod counters;
pub mod mac_table;
pub mod vlan;
