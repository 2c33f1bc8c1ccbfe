//! Offloads acting on packets.
pub mod checksum;
pub mod features;
pub mod gro;
pub mod gso;
pub mod xmit;
