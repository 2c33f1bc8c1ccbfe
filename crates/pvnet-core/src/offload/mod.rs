//! Offloads acting on packets.
pub mod checksum;
