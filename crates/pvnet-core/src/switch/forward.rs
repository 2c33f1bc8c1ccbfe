//! Where a frame goes: the destination ports of one frame, from the MAC table's answer and
//! the ports' VLAN membership (the bridge's `br_handle_frame_finish` / `br_flood`).

use super::counters::DropCause;
use super::mac_table::{Forward, PortId};
use super::vlan::VlanMode;

/// Fill `out` (cleared first) with the ports a frame of VLAN `vid` that entered through
/// `ingress` goes to, given the MAC table's `fwd` and every port's VLAN mode in port order
/// (`None` for a port number that has no port now: ports come and go while the switch
/// runs): the one learned port, or for a flood every other port that carries `vid`. A
/// frame whose destination was learned on its own ingress port is filtered
/// (`DropCause::Hairpin`). A unicast destination is given as the table says; the caller
/// skips it if that port is gone.
pub fn destinations(
    fwd: Forward,
    ingress: PortId,
    vid: u16,
    modes: impl IntoIterator<Item = Option<VlanMode>>,
    out: &mut Vec<PortId>,
) -> Result<(), DropCause> {
    out.clear();
    match fwd {
        Forward::Unicast(p) => out.push(p),
        Forward::Filter => return Err(DropCause::Hairpin),
        Forward::Flood => {
            for (i, mode) in modes.into_iter().enumerate() {
                let Ok(id) = PortId::try_from(i) else {
                    break;
                };
                if id != ingress && mode.is_some_and(|m| m.carries(vid)) {
                    out.push(id);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODES: [Option<VlanMode>; 5] = [
        Some(VlanMode::Trunk),
        Some(VlanMode::Access(10)),
        Some(VlanMode::Access(20)),
        Some(VlanMode::Trunk),
        // A port removed while the switch runs.
        None,
    ];

    fn dsts(fwd: Forward, ingress: PortId, vid: u16) -> Result<Vec<PortId>, DropCause> {
        let mut out = vec![99];
        destinations(fwd, ingress, vid, MODES, &mut out).map(|()| out)
    }

    #[test]
    fn flood_reaches_the_vlan_but_not_the_ingress() {
        assert_eq!(dsts(Forward::Flood, 0, 10), Ok(vec![1, 3]));
        assert_eq!(dsts(Forward::Flood, 1, 10), Ok(vec![0, 3]));
        assert_eq!(dsts(Forward::Flood, 0, 0), Ok(vec![3]));
        assert_eq!(dsts(Forward::Flood, 3, 20), Ok(vec![0, 2]));
    }

    #[test]
    fn unicast_and_hairpin() {
        assert_eq!(dsts(Forward::Unicast(2), 0, 20), Ok(vec![2]));
        assert_eq!(dsts(Forward::Filter, 0, 20), Err(DropCause::Hairpin));
    }
}
