//! Offloads acting on packets.
pub mod checksum;
pub mod features;
pub mod gro;
pub mod gso;
pub mod xmit;

/// How the transport checksums of the segments of a super-frame are left: the one
/// decision the transmit plan ([`xmit`]) makes for the segmenter ([`gso`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CsumMode {
    /// Complete checksums, for a destination without checksum offload.
    #[default]
    Full,
    /// The pseudo-header sum in the field and `CsumState::Partial` in each segment's
    /// metadata (NEEDS_CSUM in its header), for a destination that completes checksums
    /// itself. UFO fragments are complete anyway.
    Partial,
}
