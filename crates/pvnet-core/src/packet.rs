//! Scatter-gather packet with offload metadata.
//!
//! A [`Packet`] is headroom + a linear head (the headers) + a list of payload fragments,
//! so headers can be pushed and pulled without touching the payload, and a segment can be
//! a fresh header block followed by slices of someone else's buffer. [`OffloadMeta`]
//! carries what a virtio_net_hdr carries, in checked form.

/// Checksum state of a packet, as the kernel's `skb->ip_summed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CsumState {
    /// Nothing is known (CHECKSUM_NONE): the checksums in the packet are what they are.
    #[default]
    None,
    /// The checksums were verified (CHECKSUM_UNNECESSARY, virtio DATA_VALID).
    Unnecessary,
    /// The L4 checksum is partial (CHECKSUM_PARTIAL, virtio NEEDS_CSUM): the field at
    /// `start + offset` holds the folded pseudo-header sum and whoever needs the real
    /// checksum sums from `start` to the end of the packet into it.
    Partial { start: u16, offset: u16 },
}

/// Segmentation offload type (virtio_net_hdr gso_type without the ECN bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoKind {
    /// TSO over IPv4 (VIRTIO_NET_HDR_GSO_TCPV4).
    Tcpv4,
    /// TSO over IPv6 (VIRTIO_NET_HDR_GSO_TCPV6).
    Tcpv6,
    /// UFO: one UDP datagram split into IP fragments (VIRTIO_NET_HDR_GSO_UDP).
    Ufo,
    /// USO: every segment its own UDP datagram (VIRTIO_NET_HDR_GSO_UDP_L4).
    UdpL4,
}

/// Segmentation metadata of a super-frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    pub kind: GsoKind,
    /// Payload bytes per segment (MSS for TCP).
    pub size: u16,
    /// The sender set CWR on the super-frame and expects it on the first segment only
    /// (VIRTIO_NET_HDR_GSO_ECN).
    pub ecn: bool,
}

/// Offload metadata travelling with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OffloadMeta {
    pub csum: CsumState,
    /// `None` for a packet that is not a super-frame.
    pub gso: Option<Gso>,
}
