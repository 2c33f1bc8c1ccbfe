//! VLAN port semantics as pure functions on frames.
//!
//! Inside the switch a frame travels untagged with its VLAN id beside it; ports translate
//! on the way in ([`ingress`]) and out ([`egress`]):
//!
//! | port | in: untagged | in: 802.1Q tag V | out: frame of VLAN V |
//! | --- | --- | --- | --- |
//! | `Access(N)` | VLAN N | V = 0 (priority tag): popped, VLAN N; else dropped | sent untagged when V = N, else not sent |
//! | `Trunk` | VLAN 0 (native) | tag popped, VLAN V | V = 0: untagged; else a tag V is pushed |
//!
//! Tags are pushed into the packet's headroom and popped by moving the MAC addresses,
//! so the payload is never copied. A partial checksum's `csum_start` moves with the
//! headers; a GSO header length (vnet `hdr_len`) is recomputed by the vnet encoder from
//! the frame, so it needs no fixing here.

use crate::packet::{CsumState, Packet};
use crate::wire::{ethertype, vlan::HEADER_LEN as TAG_LEN};

/// How a port treats VLANs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VlanMode {
    /// Tagged frames carry their VLAN; untagged ones are VLAN 0.
    #[default]
    Trunk,
    /// Untagged frames of one VLAN (1..=4094).
    Access(u16),
}

/// Why a frame cannot enter or leave through a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VlanError {
    /// Shorter than an Ethernet header (plus the tag, for a pop).
    Truncated,
    /// A frame tagged with a real VLAN arrived on an access port.
    TaggedOnAccess,
    /// A VLAN id outside 1..=4094.
    BadVid(u16),
}

impl core::fmt::Display for VlanError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VlanError::Truncated => write!(f, "frame too short for a VLAN operation"),
            VlanError::TaggedOnAccess => write!(f, "tagged frame on an access port"),
            VlanError::BadVid(v) => write!(f, "VLAN id {v} not in 1..=4094"),
        }
    }
}

impl std::error::Error for VlanError {}

const MACS: usize = 12;

/// The VID of the frame's outer 802.1Q tag, `None` when untagged (802.1ad S-tags are not
/// 802.1Q tags: a QinQ frame counts as untagged here).
pub fn frame_vid(frame: &[u8]) -> Option<u16> {
    let tpid = frame.get(MACS..MACS + 2)?;
    if u16::from_be_bytes([tpid[0], tpid[1]]) != ethertype::VLAN {
        return None;
    }
    let tci = frame.get(MACS + 2..MACS + 4)?;
    Some(u16::from_be_bytes([tci[0], tci[1]]) & 0x0fff)
}

fn shift_csum(pkt: &mut Packet<'_>, grow: bool) {
    if let CsumState::Partial { start, offset } = pkt.meta.csum {
        let start = if grow {
            start.saturating_add(TAG_LEN as u16)
        } else {
            start.saturating_sub(TAG_LEN as u16)
        };
        pkt.meta.csum = CsumState::Partial { start, offset };
    }
}

/// Insert an 802.1Q tag with `vid` (priority 0) after the MAC addresses.
pub fn push_tag(pkt: &mut Packet<'_>, vid: u16) -> Result<(), VlanError> {
    if !(1..=4094).contains(&vid) {
        return Err(VlanError::BadVid(vid));
    }
    // The MAC addresses must be in the head to be moved.
    pkt.pull_up(MACS).map_err(|_| VlanError::Truncated)?;
    // The new bytes go in front; then the MACs move to them and the tag takes their place.
    pkt.push_head(TAG_LEN);
    let head = pkt.head_mut();
    head.copy_within(TAG_LEN..TAG_LEN + MACS, 0);
    head[MACS..MACS + 2].copy_from_slice(&ethertype::VLAN.to_be_bytes());
    head[MACS + 2..MACS + 4].copy_from_slice(&vid.to_be_bytes());
    shift_csum(pkt, true);
    Ok(())
}

/// Remove the outer 802.1Q tag; returns its VID, `None` (and no change) when untagged.
pub fn pop_tag(pkt: &mut Packet<'_>) -> Result<Option<u16>, VlanError> {
    if pkt.len() < MACS + TAG_LEN + 2 {
        return Ok(None);
    }
    pkt.pull_up(MACS + TAG_LEN)
        .map_err(|_| VlanError::Truncated)?;
    let Some(vid) = frame_vid(pkt.head()) else {
        return Ok(None);
    };
    pkt.head_mut().copy_within(0..MACS, TAG_LEN);
    pkt.pull_head(TAG_LEN).map_err(|_| VlanError::Truncated)?;
    shift_csum(pkt, false);
    Ok(Some(vid))
}

/// A frame entering through a port of `mode`: its VLAN inside the switch. The tag, if
/// any, is popped.
pub fn ingress(mode: VlanMode, pkt: &mut Packet<'_>) -> Result<u16, VlanError> {
    match (mode, pop_tag(pkt)?) {
        (VlanMode::Trunk, vid) => Ok(vid.unwrap_or(0)),
        (VlanMode::Access(n), None | Some(0)) => Ok(n),
        (VlanMode::Access(_), Some(_)) => Err(VlanError::TaggedOnAccess),
    }
}

/// A frame of VLAN `vid` (untagged inside the switch) leaving through a port of `mode`:
/// `false` when the port is not in that VLAN (do not send); tags it for a trunk.
pub fn egress(mode: VlanMode, vid: u16, pkt: &mut Packet<'_>) -> Result<bool, VlanError> {
    match mode {
        VlanMode::Access(n) => Ok(n == vid),
        VlanMode::Trunk if vid == 0 => Ok(true),
        VlanMode::Trunk => push_tag(pkt, vid).map(|()| true),
    }
}
