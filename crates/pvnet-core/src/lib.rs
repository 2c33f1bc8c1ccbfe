//! pvnet-core: the sans-IO heart of pvnet.
//!
//! Pure functions over byte buffers and feature sets, in the order a frame meets them:
//!
//! - [`wire`]: typed views of Ethernet, 802.1Q, IPv4, IPv6, TCP and UDP headers, and
//!   [`wire::parse`], the offsets of every layer of a frame;
//! - [`vnet`]: the virtio_net_hdr that travels with a frame, checked once by
//!   [`vnet::validate`] into a [`vnet::Validated`];
//! - [`frame`]: [`frame::Frame`], headers plus payload slices with their offload
//!   metadata, the one thing every stage hands on;
//! - [`offload`]: GRO ([`offload::gro`]), the per-destination transmit plan
//!   ([`offload::xmit`]), GSO ([`offload::gso`]) and checksum completion
//!   ([`offload::checksum`]), over the checksum engine [`csum`];
//! - [`switch`]: the decisions of an L2 switch (MAC learning, VLANs, destinations,
//!   counters).
//!
//! No I/O, no clock, no threads: it can be driven by a test, a fuzzer, a tap loop or a
//! VMM alike. `unsafe` is only allowed inside the fenced SIMD module of [`csum`]. Two
//! runnable examples are in `examples/`: segmenting a virtio-net super-frame for a device
//! without TSO, and a tun receive loop that coalesces with GRO and writes super-frames with
//! one writev.
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

pub mod csum;
pub mod frame;
pub mod offload;
pub mod overlay;
pub mod switch;
pub mod vnet;
pub mod wire;
