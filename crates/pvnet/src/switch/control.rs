//! Changing and reading a running switch from other threads: [`SwitchControl`] adds and
//! removes ports and reads the ports, counters and MAC table; [`CtlService`] answers the
//! control socket's requests with it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pvnet_core::offload::features::{Feature, Features};
use pvnet_core::switch::counters::{DropCause, PortCounters, COUNTERS};
use pvnet_linux::portspec::{PortKind, PortSpec};

use super::config::{Effective, EffectivePort, EffectiveSwitch};
use super::forward::{lock_mac, SharedMac};
use super::metrics::{self, SwitchMetrics};
use super::open::open_port;
use super::{
    duplicate, lock_registry, NewPort, PortRecord, Registry, StatsHandle, Supervise, SwitchConfig,
};
use crate::ctl::proto::{
    ConfigReply, LogReply, MacEntry, MacReply, OffloadLine, OffloadReply, PortInfo, PortStats,
    Request, Response, StatsReply, VersionReply,
};
use crate::ctl::server::Handler;
use crate::logging::LogRing;

/// How long a request waits for the switch loop to carry out an add or a removal.
const SUPERVISOR_TIMEOUT: Duration = Duration::from_secs(20);

/// A handle on a switch for other threads; cheap to clone.
#[derive(Clone)]
pub struct SwitchControl {
    tx: mpsc::Sender<Supervise>,
    registry: Registry,
    stats: StatsHandle,
    mac: SharedMac,
    cfg: SwitchConfig,
    clock: Instant,
}

impl std::fmt::Debug for SwitchControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwitchControl").finish_non_exhaustive()
    }
}

impl SwitchControl {
    pub(super) fn new(
        tx: mpsc::Sender<Supervise>,
        registry: Registry,
        stats: StatsHandle,
        mac: SharedMac,
        cfg: SwitchConfig,
        clock: Instant,
    ) -> SwitchControl {
        SwitchControl {
            tx,
            registry,
            stats,
            mac,
            cfg,
            clock,
        }
    }

    fn ask<T>(
        &self,
        msg: impl FnOnce(mpsc::Sender<Result<T, String>>) -> Supervise,
    ) -> Result<T, String> {
        let (reply, answer) = mpsc::channel();
        self.tx
            .send(msg(reply))
            .map_err(|_| "the switch is shutting down".to_owned())?;
        match answer.recv_timeout(SUPERVISOR_TIMEOUT) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "the switch did not answer within {} s (is it running?)",
                SUPERVISOR_TIMEOUT.as_secs()
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err("the switch stopped before answering".to_owned())
            }
        }
    }

    /// Open the port `spec` describes and add it to the running switch. Fails, with the
    /// message a start-up failure would give, when it cannot be opened or its name is
    /// taken.
    pub fn add_spec(&self, spec: &PortSpec) -> Result<PortRecord, String> {
        let name = spec.name();
        if let Some(why) = duplicate(&lock_registry(&self.registry), &name) {
            return Err(why);
        }
        let port = open_port(spec).map_err(|e| e.to_string())?;
        let slot = self.add(NewPort::opened(spec, port))?;
        lock_registry(&self.registry)
            .get(slot)
            .cloned()
            .flatten()
            .ok_or_else(|| format!("port {spec} was removed right after it was added"))
    }

    /// Add an opened port to the running switch; returns its slot.
    pub fn add(&self, port: NewPort) -> Result<usize, String> {
        self.ask(|reply| Supervise::Add { port, reply })
    }

    /// Remove the port `name` from the running switch and close it.
    pub fn del(&self, name: &str) -> Result<(), String> {
        self.ask(|reply| Supervise::Del {
            name: name.to_owned(),
            reply,
        })
    }

    /// The ports, in slot order.
    pub fn ports(&self) -> Vec<PortRecord> {
        lock_registry(&self.registry)
            .iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// The port `name`, or an error listing the ports there are.
    pub fn port(&self, name: &str) -> Result<PortRecord, String> {
        self.ports()
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| super::no_such_port(&self.registry, name))
    }

    /// The counters the threads last published.
    pub fn stats(&self) -> &StatsHandle {
        &self.stats
    }

    /// The MAC table's entries: address, VLAN, port name, seconds since last seen; and
    /// the table's capacity.
    pub fn mac_entries(&self) -> (Vec<MacEntry>, usize) {
        let names: Vec<Option<String>> = lock_registry(&self.registry)
            .iter()
            .map(|r| r.as_ref().map(|r| r.name.clone()))
            .collect();
        let now = u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mac = lock_mac(&self.mac);
        let mut entries: Vec<MacEntry> = mac
            .iter()
            .map(|(addr, vlan, port, seen)| MacEntry {
                mac: addr
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
                vlan,
                port: names
                    .get(usize::from(port))
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| format!("#{port}")),
                age_secs: now.saturating_sub(seen) as f64 / 1000.0,
            })
            .collect();
        entries.sort_by(|a, b| (&a.port, a.vlan, &a.mac).cmp(&(&b.port, b.vlan, &b.mac)));
        (entries, mac.capacity())
    }

    /// Every counter in the Prometheus text format (what `--metrics` serves): the ports'
    /// counters, ports removed by cause, and the MAC table's occupancy.
    pub fn render_metrics(&self) -> String {
        metrics::encode(&self.stats.snapshot(), &self.switch_metrics())
    }

    /// The switch's own counts: ports removed by cause, and the MAC table's occupancy
    /// (for the metrics and `pvnet ctl stats`).
    pub fn switch_metrics(&self) -> SwitchMetrics {
        let (mac_entries, mac_capacity) = {
            let mac = lock_mac(&self.mac);
            (mac.len() as u64, mac.capacity() as u64)
        };
        SwitchMetrics {
            ports_removed: self
                .stats
                .removed()
                .into_iter()
                .map(|(r, n)| (r.as_str().to_owned(), n))
                .collect(),
            mac_entries,
            mac_capacity,
            guest_errors: lock_registry(&self.registry)
                .iter()
                .flatten()
                .map(|r| (r.name.clone(), r.guest_errors()))
                .filter(|(_, e)| !e.is_empty())
                .collect(),
        }
    }

    /// The configuration the switch runs now, as `--print-config` prints it.
    pub fn effective(&self) -> Effective {
        Effective {
            switch: EffectiveSwitch {
                mac_table_size: self.cfg.mac_table_size,
                ageing_secs: self.cfg.ageing_secs,
                pcap: self.cfg.pcap.as_ref().map(|p| p.display().to_string()),
            },
            port: self
                .ports()
                .into_iter()
                .map(|r| {
                    let f = r.features();
                    EffectivePort {
                        spec: r
                            .spec
                            .as_ref()
                            .map_or_else(|| r.name.clone(), |s| s.to_string()),
                        name: r.name.clone(),
                        netns: r.spec.as_ref().and_then(|s| s.netns.clone()),
                        vlan: r.vlan,
                        features: f.to_string(),
                        features_ethtool: f.ethtool_string(),
                        gro: r.gro,
                    }
                })
                .collect(),
        }
    }
}

fn kind_name(spec: Option<&PortSpec>) -> &'static str {
    match spec.map(|s| &s.kind) {
        Some(PortKind::Tap { tun: false, .. }) => "tap",
        Some(PortKind::Tap { tun: true, .. }) => "tun",
        Some(PortKind::Packet { .. }) => "packet",
        Some(PortKind::Pcap { .. }) => "pcap",
        Some(PortKind::Overlay { encap, .. }) => encap.name(),
        Some(PortKind::VhostUser { .. }) => "vhost-user",
        None => "other",
    }
}

/// A port as `port_list` shows it.
pub fn port_info(r: &PortRecord) -> PortInfo {
    PortInfo {
        name: r.name.clone(),
        kind: kind_name(r.spec.as_ref()).to_owned(),
        spec: r
            .spec
            .as_ref()
            .map_or_else(|| r.name.clone(), |s| s.to_string()),
        netns: r.spec.as_ref().and_then(|s| s.netns.clone()),
        state: match (r.is_down(), r.carrier()) {
            (true, _) => "down",
            (false, Some((false, _))) => "no-carrier",
            _ => "up",
        }
        .to_owned(),
        carrier_losses: r.carrier().map(|(_, n)| n),
        offload_configured: r.configured.to_string(),
        offload_in_effect: r.features().to_string(),
        gro: r.gro,
        queues: r.queues,
        vlan: r.vlan,
    }
}

/// One port's counters by name.
pub fn port_stats(port: &str, c: &PortCounters, guest: &[(&'static str, u64)]) -> PortStats {
    PortStats {
        guest_errors: guest.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        port: port.to_owned(),
        counters: COUNTERS
            .iter()
            .map(|(k, _, get)| ((*k).to_owned(), get(c)))
            .collect(),
        drops: DropCause::ALL
            .iter()
            .map(|&d| (d.as_str().to_owned(), c.drops_of(d)))
            .collect(),
    }
}

/// The port's offloads in `ethtool -k` terms, and why each that is off is off.
pub fn offload_lines(r: &PortRecord) -> Vec<OffloadLine> {
    let now = r.features();
    Feature::ALL
        .iter()
        .map(|&f| {
            let name = f.ethtool_name().to_owned();
            if f == Feature::Gro {
                return OffloadLine {
                    name,
                    on: r.gro,
                    fixed: false,
                    why_off: (!r.gro).then(|| {
                        if now.intersects(Features::TSO4 | Features::TSO6 | Features::USO) {
                            "the port takes super-frames itself: its kernel side hands them \
                             over unsegmented"
                        } else {
                            "no other port takes super-frames"
                        }
                        .to_owned()
                    }),
                };
            }
            let on = now.has(f);
            let (fixed, why) = if on {
                (false, None)
            } else if !r.configured.has(f) {
                let asked = r.spec.as_ref().and_then(|s| s.offload).map_or_else(
                    || "the port kind's default".to_owned(),
                    |o| format!("offload={o}"),
                );
                (false, Some(format!("not asked for ({asked})")))
            } else if !r.opened.has(f) {
                (
                    true,
                    Some("refused by the device when the port was opened".to_owned()),
                )
            } else {
                (
                    true,
                    Some(
                        "turned off while running: the device refused a super-frame of this \
                         type"
                            .to_owned(),
                    ),
                )
            };
            OffloadLine {
                name,
                on,
                fixed,
                why_off: why,
            }
        })
        .collect()
}

/// The control socket's handler: a running switch, its log, and where its config came
/// from.
#[derive(Debug, Clone)]
pub struct CtlService {
    /// The switch.
    pub control: SwitchControl,
    /// Its last log lines.
    pub log: LogRing,
    /// The `--config` file it was started with.
    pub config_file: Option<PathBuf>,
    /// When it started.
    pub started: Instant,
}

fn json<T: serde::Serialize>(v: T) -> Response {
    match serde_json::to_value(v) {
        Ok(v) => Response::ok(v),
        Err(e) => Response::err(format!("cannot encode the result: {e}")),
    }
}

impl CtlService {
    fn stats(&self, port: Option<&str>) -> Result<StatsReply, String> {
        let snap = self.control.stats.snapshot();
        let switch = self.control.switch_metrics();
        if let Some(p) = port {
            if !snap.iter().any(|(n, _)| n == p) {
                return Err(super::no_such_port(&self.control.registry, p));
            }
        }
        let ports = snap
            .iter()
            .filter(|(n, _)| port.is_none_or(|p| p == n))
            .map(|(n, c)| {
                let guest = switch
                    .guest_errors
                    .iter()
                    .find(|(g, _)| g == n)
                    .map_or(&[][..], |(_, e)| &e[..]);
                port_stats(n, c, guest)
            })
            .collect();
        Ok(StatsReply {
            ports,
            ports_removed: switch.ports_removed.into_iter().collect::<BTreeMap<_, _>>(),
            mac_entries: switch.mac_entries,
            mac_capacity: switch.mac_capacity,
        })
    }
}

impl Handler for CtlService {
    fn handle(&self, req: Request) -> Response {
        let c = &self.control;
        match req {
            Request::PortAdd { spec } => match spec.parse::<PortSpec>() {
                Ok(spec) => match c.add_spec(&spec) {
                    Ok(r) => json(port_info(&r)),
                    Err(e) => Response::err(e),
                },
                Err(e) => Response::err(e.to_string()),
            },
            Request::PortDel { name } => match c.del(&name) {
                Ok(()) => Response::ok(serde_json::Value::Null),
                Err(e) => Response::err(e),
            },
            Request::PortList {} => json(c.ports().iter().map(port_info).collect::<Vec<_>>()),
            Request::Stats { port } => match self.stats(port.as_deref()) {
                Ok(s) => json(s),
                Err(e) => Response::err(e),
            },
            Request::MacList {} => {
                let (entries, capacity) = c.mac_entries();
                json(MacReply {
                    entries,
                    capacity: capacity as u64,
                    ageing_secs: c.cfg.ageing_secs,
                })
            }
            Request::OffloadShow { port } => match c.port(&port) {
                Ok(r) => json(OffloadReply {
                    port: r.name.clone(),
                    features: offload_lines(&r),
                }),
                Err(e) => Response::err(e),
            },
            Request::Config {} => json(ConfigReply {
                toml: c.effective().to_toml(),
                config_file: self.config_file.as_ref().map(|p| p.display().to_string()),
            }),
            Request::Log { lines } => json(LogReply {
                lines: self.log.last(lines),
            }),
            Request::Version {} => json(VersionReply {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                pid: std::process::id(),
                uptime_secs: self.started.elapsed().as_secs(),
            }),
        }
    }
}
