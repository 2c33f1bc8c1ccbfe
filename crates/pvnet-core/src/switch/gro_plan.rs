//! Which ports coalesce what they receive.
//!
//! GRO costs a checksum pass per frame, so the switch runs it only where it pays: on a
//! port that hands the switch wire-sized frames (it takes no TSO/USO itself, so its kernel
//! side segments before handing frames over), and only when some other port takes
//! super-frames. UDP is coalesced only when some other port takes USO, since a UDP
//! super-frame must be segmented again for everyone else; flows inside VXLAN and GENEVE
//! become UDP tunnel super-frames only when some other port takes tunnel GSO (otherwise
//! they are UDP to the coalescer, as before).

use crate::offload::features::{Feature, Features};
use crate::offload::gro::GroConfig;

/// Features that make a port take (and hand over) super-frames.
const SUPER_FRAMES: Features = Features::TSO4.union(Features::TSO6).union(Features::USO);
const TSO: Features = Features::TSO4.union(Features::TSO6);

/// For every port (its transmit features, in port order): the coalescer settings of its
/// ingress, `None` when it does not coalesce.
pub fn gro_plan(features: &[Features]) -> Vec<Option<GroConfig>> {
    (0..features.len())
        .map(|i| {
            if features[i].intersects(SUPER_FRAMES) {
                return None;
            }
            let mut tcp = false;
            let mut udp = false;
            let mut tunnels = false;
            for (_, f) in features.iter().enumerate().filter(|(j, _)| *j != i) {
                let f = f.fixed();
                tcp |= f.intersects(TSO);
                udp |= f.intersects(Features::USO);
                tunnels |= f.has(Feature::TnlGso);
            }
            (tcp || udp).then_some(GroConfig {
                udp,
                tunnels,
                ..GroConfig::default()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_of(plan: &[Option<GroConfig>]) -> Vec<Option<bool>> {
        plan.iter().map(|g| g.map(|c| c.udp)).collect()
    }

    #[test]
    fn coalesce_only_for_ports_that_feed_super_frame_takers() {
        let all = Features::ALL;
        let none = Features::NONE;
        let tso = Features::CSUM | Features::SG | Features::TSO4 | Features::TSO6;
        // Both take super-frames: nobody coalesces.
        assert_eq!(udp_of(&gro_plan(&[all, all])), vec![None, None]);
        // A legacy port next to a full one: it coalesces TCP and UDP.
        assert_eq!(udp_of(&gro_plan(&[none, all])), vec![Some(true), None]);
        // Next to a TSO-only port: TCP only.
        assert_eq!(udp_of(&gro_plan(&[none, tso])), vec![Some(false), None]);
        // Only legacy ports: nothing to coalesce for.
        assert_eq!(udp_of(&gro_plan(&[none, none])), vec![None, None]);
        // TSO declared without SG is not really TSO (fixed()).
        let broken = Features::CSUM | Features::TSO4;
        assert_eq!(udp_of(&gro_plan(&[none, broken])), vec![None, None]);
        assert!(gro_plan(&[none, all])[0].is_some_and(|c| c.tcp));
    }

    #[test]
    fn tunnels_only_for_ports_that_feed_tunnel_takers() {
        let none = Features::NONE;
        let tso = Features::CSUM | Features::SG | Features::TSO4 | Features::TSO6;
        let tnl = tso | Features::TNL;
        let tunnels =
            |p: Vec<Option<GroConfig>>| p.iter().map(|g| g.map(|c| c.tunnels)).collect::<Vec<_>>();
        assert_eq!(tunnels(gro_plan(&[none, tnl])), vec![Some(true), None]);
        assert_eq!(tunnels(gro_plan(&[none, tso])), vec![Some(false), None]);
        assert_eq!(
            tunnels(gro_plan(&[none, Features::ALL])),
            vec![Some(true), None]
        );
        // The tunnel feature without TSO or USO to carry is no tunnel GSO (fixed()).
        let bare = Features::CSUM | Features::SG | Features::TNL;
        assert_eq!(tunnels(gro_plan(&[none, bare])), vec![None, None]);
    }
}
