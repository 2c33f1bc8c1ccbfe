use super::{Layers, ParseError};

/// Where parsing starts: at an Ethernet header (tap, AF_PACKET, pcap) or at the IP header
/// (tun).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Ethernet,
    Ip,
}

/// Parse a frame and return the offsets of its layers.
pub fn parse(_buf: &[u8], _start: Start) -> Result<Layers, ParseError> {
    unimplemented!("wire parse: being written")
}
