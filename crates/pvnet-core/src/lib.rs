//! pvnet-core: the sans-IO heart of pvnet.
//!
//! Pure functions over byte buffers and feature sets: wire views, the one's-complement
//! checksum engine, the virtio_net_hdr codec and validation, scatter-gather packets and the
//! offloads that act on them. No I/O, no clock. `unsafe` is only allowed inside the fenced
//! SIMD module of [`csum`].
#![deny(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod csum;
pub mod frame;
pub mod offload;
pub mod packet;
pub mod switch;
pub mod vnet;
pub mod wire;
