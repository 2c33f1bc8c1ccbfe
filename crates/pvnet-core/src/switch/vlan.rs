//! VLAN port semantics as pure functions on frames.
//!
//! A frame keeps the tag it arrived with until it leaves (the switch never copies a frame
//! for its own use); [`ingress`] says which VLAN it belongs to inside the switch, and
//! [`egress`] what each destination needs done to its tag:
//!
//! | port | in: untagged | in: 802.1Q tag V | out: frame of VLAN V |
//! | --- | --- | --- | --- |
//! | `Access(N)` | VLAN N | V = 0 (priority tag): VLAN N; else dropped | sent untagged when V = N, else not sent |
//! | `Trunk` | VLAN 0 (native) | VLAN V | V = 0: untagged; else tagged V |
//!
//! [`retag`] carries out what [`egress`] decided: it copies the frame's head into a
//! scratch buffer with the tag pushed, popped or rewritten, and leaves the payload where it
//! is. A partial checksum's `csum_start` and every layer offset move with the headers.

use crate::frame::{CsumState, Frame};
use crate::vnet::Validated;
use crate::wire::{ethernet, ethertype, vlan, Layers, MAX_VLAN_TAGS};

/// How a port treats VLANs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VlanMode {
    /// Tagged frames carry their VLAN; untagged ones are VLAN 0.
    #[default]
    Trunk,
    /// Untagged frames of one VLAN (1..=4094).
    Access(u16),
}

impl VlanMode {
    /// Whether frames of VLAN `vid` may leave through this port.
    pub const fn carries(self, vid: u16) -> bool {
        match self {
            VlanMode::Trunk => true,
            VlanMode::Access(n) => n == vid,
        }
    }
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
    /// Pushing a tag would give the frame more tags than a frame may have.
    TooManyTags,
}

impl core::fmt::Display for VlanError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VlanError::Truncated => write!(f, "frame too short for a VLAN operation"),
            VlanError::TaggedOnAccess => write!(f, "tagged frame on an access port"),
            VlanError::BadVid(v) => write!(f, "VLAN id {v} not in 1..=4094"),
            VlanError::TooManyTags => {
                write!(f, "frame already has {MAX_VLAN_TAGS} VLAN tags")
            }
        }
    }
}

impl std::error::Error for VlanError {}

/// Where the tag protocol identifier of an outer tag sits: in place of the EtherType,
/// right after the MAC addresses.
const TPID_AT: usize = ethernet::field::ETHERTYPE.start;
/// Where the outer tag's view starts (its TCI), right after the TPID.
const TAG_AT: usize = ethernet::field::ETHERTYPE.end;

/// The VID of the frame's outer 802.1Q tag, `None` when untagged (802.1ad S-tags are not
/// 802.1Q tags: a QinQ frame counts as untagged here).
pub fn frame_vid(frame: &[u8]) -> Option<u16> {
    let tpid = frame.get(ethernet::field::ETHERTYPE)?;
    if u16::from_be_bytes([tpid[0], tpid[1]]) != ethertype::VLAN {
        return None;
    }
    // Only the TCI needs to be there.
    let tci = frame.get(TAG_AT..TAG_AT + vlan::field::TCI.end)?;
    Some(vlan::Tag::new_unchecked(tci).vid())
}

/// A frame as the switch sees it after it entered through a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingress {
    /// The VLAN it belongs to inside the switch.
    pub vid: u16,
    /// The VID of the 802.1Q tag it still carries, if any (a priority tag on an access
    /// port carries 0 while the frame belongs to the port's VLAN).
    pub tag: Option<u16>,
}

/// Classify a frame (`head`: at least its Ethernet header and outer tag) entering through
/// a port of `mode`.
pub fn ingress(mode: VlanMode, head: &[u8]) -> Result<Ingress, VlanError> {
    if head.len() < ethernet::HEADER_LEN {
        return Err(VlanError::Truncated);
    }
    let tag = frame_vid(head);
    match (mode, tag) {
        (VlanMode::Trunk, t) => Ok(Ingress {
            vid: t.unwrap_or(0),
            tag: t,
        }),
        (VlanMode::Access(n), None | Some(0)) => Ok(Ingress { vid: n, tag }),
        (VlanMode::Access(_), Some(_)) => Err(VlanError::TaggedOnAccess),
    }
}

/// What a destination port needs done to a frame's tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// The port is not in the frame's VLAN: do not send.
    Skip,
    /// Send as it is.
    AsIs,
    /// Push a tag with this VID (priority 0).
    Push(u16),
    /// Pop the outer tag.
    Pop,
    /// Rewrite the outer tag's VID (its priority is kept).
    SetVid(u16),
}

/// What leaving through a port of `mode` needs for a frame that entered as `ing`.
pub fn egress(mode: VlanMode, ing: Ingress) -> Egress {
    let want = match mode {
        VlanMode::Access(n) if n != ing.vid => return Egress::Skip,
        VlanMode::Access(_) => None,
        VlanMode::Trunk => (ing.vid != 0).then_some(ing.vid),
    };
    match (want, ing.tag) {
        (None, None) => Egress::AsIs,
        (None, Some(_)) => Egress::Pop,
        (Some(v), None) => Egress::Push(v),
        (Some(v), Some(t)) if t == v => Egress::AsIs,
        (Some(v), Some(_)) => Egress::SetVid(v),
    }
}

/// Carry out `op` (one of [`Egress::Push`], [`Egress::Pop`], [`Egress::SetVid`]) on a
/// frame whose layers and metadata are `v`: the new head is written into `scratch`, the
/// payload stays where it is. Returns the retagged frame and its layers, moved by the
/// tag's length. [`Egress::AsIs`] and [`Egress::Skip`] give the frame back unchanged.
pub fn retag<'s, 'a: 's>(
    frame: &Frame<'a>,
    v: &Validated,
    op: Egress,
    scratch: &'s mut Vec<u8>,
) -> Result<(Frame<'s>, Validated), VlanError> {
    let mut layers = *v.layers();
    let mut meta = *v.meta();
    // Bytes that must be in the head: the MAC addresses and the outer tag or EtherType.
    let need = match op {
        Egress::AsIs | Egress::Skip => return Ok((*frame, *v)),
        Egress::Push(_) => ethernet::HEADER_LEN,
        Egress::Pop | Egress::SetVid(_) => ethernet::HEADER_LEN + vlan::HEADER_LEN,
    };
    let tail = frame
        .split_head_into(need, scratch)
        .map_err(|_| VlanError::Truncated)?;
    let shift = match op {
        Egress::Push(vid) => {
            if !(1..=4094).contains(&vid) {
                return Err(VlanError::BadVid(vid));
            }
            if layers.vlans >= MAX_VLAN_TAGS {
                return Err(VlanError::TooManyTags);
            }
            let tpid = ethertype::VLAN.to_be_bytes();
            let tci = vid.to_be_bytes();
            scratch.splice(TPID_AT..TPID_AT, [tpid[0], tpid[1], tci[0], tci[1]]);
            layers.vlans += 1;
            Shift::Grow
        }
        Egress::Pop => {
            if frame_vid(scratch).is_none() {
                return Err(VlanError::Truncated);
            }
            scratch.drain(TPID_AT..TPID_AT + vlan::HEADER_LEN);
            layers.vlans = layers.vlans.saturating_sub(1);
            Shift::Shrink
        }
        Egress::SetVid(vid) => {
            if !(1..=4094).contains(&vid) {
                return Err(VlanError::BadVid(vid));
            }
            if frame_vid(scratch).is_none() {
                return Err(VlanError::Truncated);
            }
            // `frame_vid` found the tag, so its TCI is in the head.
            let mut tag = vlan::Tag::new_unchecked(&mut scratch[TAG_AT..]);
            tag.set_vid(vid);
            Shift::None
        }
        Egress::AsIs | Egress::Skip => Shift::None,
    };
    shift.layers(&mut layers);
    if let CsumState::Partial { start, offset } = meta.csum {
        meta.csum = CsumState::Partial {
            start: shift.offset16(start).ok_or(VlanError::Truncated)?,
            offset,
        };
    }
    // A tunnel super-frame's inner packet moves with everything else.
    if let Some(t) = meta.gso.as_mut().and_then(|g| g.tunnel.as_mut()) {
        t.inner_nh = shift.offset16(t.inner_nh).ok_or(VlanError::Truncated)?;
    }
    let inner = v.inner_layers().map(|l| {
        let mut l = *l;
        shift.layers(&mut l);
        l
    });
    Ok((
        tail.with_head(scratch).with_meta(meta),
        Validated::new_unchecked(layers, meta).with_inner(inner),
    ))
}

/// How the headers after the MAC addresses move.
#[derive(Debug, Clone, Copy)]
enum Shift {
    None,
    Grow,
    Shrink,
}

impl Shift {
    fn offset(self, at: usize) -> usize {
        match self {
            Shift::None => at,
            Shift::Grow => at + vlan::HEADER_LEN,
            Shift::Shrink => at.saturating_sub(vlan::HEADER_LEN),
        }
    }

    fn offset16(self, at: u16) -> Option<u16> {
        u16::try_from(self.offset(usize::from(at))).ok()
    }

    /// Every offset past the link-layer header moves; lengths stay.
    fn layers(self, l: &mut Layers) {
        l.l2_len = self.offset(l.l2_len);
        l.l3_offset = self.offset(l.l3_offset);
        l.ip_end = self.offset(l.ip_end);
        l.pseudo_dst_offset = self.offset(l.pseudo_dst_offset);
        l.l4_offset = self.offset(l.l4_offset);
        l.payload_offset = self.offset(l.payload_offset);
    }
}
