//! Offloads acting on packets.
pub mod checksum;
pub mod features;
pub mod xmit;
