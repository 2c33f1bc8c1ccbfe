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

/// A port as the plan sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroPort {
    /// What it takes on transmit.
    pub features: Features,
    /// It hands the switch super-frames on receive. A tap or packet socket that takes
    /// TSO/USO does (the kernel behind it coalesces, or never segments); an overlay port
    /// takes super-frames but hands over what came off the wire, datagram by datagram.
    pub rx_super_frames: bool,
}

impl GroPort {
    /// A port that hands over super-frames exactly when it takes them.
    pub const fn symmetric(features: Features) -> GroPort {
        GroPort {
            features,
            rx_super_frames: features.intersects(SUPER_FRAMES),
        }
    }
}

/// For every port (its transmit features, in port order): the coalescer settings of its
/// ingress, `None` when it does not coalesce. Every port is taken to be
/// [`GroPort::symmetric`].
pub fn gro_plan(features: &[Features]) -> Vec<Option<GroConfig>> {
    let ports: Vec<GroPort> = features.iter().map(|f| GroPort::symmetric(*f)).collect();
    gro_plan_ports(&ports)
}

/// [`gro_plan`] for ports that say whether they hand over super-frames: a port that
/// hands over wire-sized frames coalesces them when some other port takes super-frames,
/// whatever it takes itself.
pub fn gro_plan_ports(ports: &[GroPort]) -> Vec<Option<GroConfig>> {
    (0..ports.len())
        .map(|i| {
            if ports[i].rx_super_frames {
                return None;
            }
            let mut tcp = false;
            let mut udp = false;
            let mut tunnels = false;
            for (_, p) in ports.iter().enumerate().filter(|(j, _)| *j != i) {
                let f = p.features.fixed();
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

    #[test]
    fn a_port_that_takes_super_frames_but_hands_over_wire_sized_ones_coalesces() {
        let tso = Features::CSUM | Features::SG | Features::TSO4 | Features::TSO6;
        let overlay = GroPort {
            features: tso | Features::USO,
            rx_super_frames: false,
        };
        let tap = GroPort::symmetric(tso);
        // The overlay port coalesces for the tap (TCP only: the tap takes no USO); the
        // tap, which hands over super-frames, does not.
        assert_eq!(
            udp_of(&gro_plan_ports(&[overlay, tap])),
            vec![Some(false), None]
        );
        // Two overlay ports coalesce for each other, UDP included.
        assert_eq!(
            udp_of(&gro_plan_ports(&[overlay, overlay])),
            vec![Some(true), Some(true)]
        );
        // Alone with a legacy port there is nothing to coalesce for.
        let legacy = GroPort::symmetric(Features::NONE);
        assert_eq!(
            udp_of(&gro_plan_ports(&[overlay, legacy])),
            vec![None, Some(true)]
        );
        // Symmetric ports plan as before.
        assert_eq!(
            gro_plan_ports(&[GroPort::symmetric(tso), legacy]),
            gro_plan(&[tso, Features::NONE])
        );
    }
}
