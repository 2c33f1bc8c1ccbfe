//! Port specifications: the `--port` strings of the switch, parsed without touching the
//! system.
//!
//! ```text
//! tap:NAME[,netns=NS][,offload=FEATURES][,queues=N][,vlan=VID]
//! tun:NAME[,netns=NS][,offload=FEATURES][,queues=N][,vlan=VID]
//! packet:IFNAME[,netns=NS][,offload=FEATURES][,vlan=VID]
//! pcap:PATH[,mode=write|replay]
//! ```
//!
//! Only `tap:` and `packet:` ports can join the switch today: `tun:` and `pcap:` are parsed
//! so that it can say why it refuses them, and the errors list only the kinds that work.
//!
//! `FEATURES` is a [`Features`] list (`csum+sg+tso4+tso6+uso`, `none` for a legacy peer,
//! `all`). Without `offload=` the port uses its default: a tap takes every offload the
//! kernel accepts ([`crate::tap::Tap::probe_offloads`]), a packet socket the interface's
//! own. `vlan=N` makes the port an access port of VLAN N; without it the port is a trunk.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use pvnet_core::offload::features::Features;

/// What a pcap port does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PcapMode {
    /// Write every frame sent to the port (a capture sink).
    #[default]
    Write,
    /// Inject the file's frames into the switch once, then go quiet.
    Replay,
}

/// The kind-specific part of a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortKind {
    /// A tap (Ethernet) or tun (bare IP) device with virtio-net headers.
    Tap {
        name: String,
        tun: bool,
        queues: u16,
    },
    /// An AF_PACKET socket on an existing interface.
    Packet { ifname: String },
    /// A pcap/pcapng file.
    Pcap { path: PathBuf, mode: PcapMode },
}

/// A parsed port spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub kind: PortKind,
    /// Network namespace (a name under /var/run/netns) the device lives in.
    pub netns: Option<String>,
    /// Offloads to use; `None`: the port's default (see the module docs).
    pub offload: Option<Features>,
    /// Access-port VLAN; `None`: trunk.
    pub vlan: Option<u16>,
}

/// A spec that could not be parsed; the message names the bad part and what is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpecError {
    pub spec: String,
    pub reason: String,
}

impl fmt::Display for PortSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port spec {:?}: {}", self.spec, self.reason)
    }
}

impl std::error::Error for PortSpecError {}

/// The kinds an error offers as valid: the ones that make a switch port. `tun:` and `pcap:`
/// still parse, so that the switch (the only program that reads specs) can say why it
/// refuses them, but listing them as valid sent users to a second error.
const KINDS: &str = "tap, packet";

fn valid_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        "tap" | "tun" => &["netns", "offload", "queues", "vlan"],
        "packet" => &["netns", "offload", "vlan"],
        _ => &["mode"],
    }
}

/// Longest interface name (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("missing interface name".into());
    }
    if name.len() > MAX_IFNAME {
        return Err(format!(
            "interface name {name:?} longer than {MAX_IFNAME} bytes"
        ));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
    {
        return Err(format!(
            "interface name {name:?} contains '/', ':', NUL or whitespace"
        ));
    }
    Ok(())
}

impl FromStr for PortSpec {
    type Err = PortSpecError;

    fn from_str(s: &str) -> Result<PortSpec, PortSpecError> {
        let err = |reason: String| PortSpecError {
            spec: s.to_owned(),
            reason,
        };
        let (kind, rest) = s.split_once(':').ok_or_else(|| {
            err(format!(
                "expected KIND:NAME[,key=value…] with KIND one of {KINDS}"
            ))
        })?;
        if !matches!(kind, "tap" | "tun" | "packet" | "pcap") {
            return Err(err(format!(
                "unknown port kind {kind:?}; valid kinds: {KINDS}"
            )));
        }
        let mut parts = rest.split(',');
        // split always yields at least one item.
        let name = parts.next().unwrap_or_default();
        let keys = valid_keys(kind);

        let mut netns = None;
        let mut offload = None;
        let mut vlan = None;
        let mut queues: Option<u16> = None;
        let mut mode = None;
        let mut seen: Vec<&str> = Vec::new();
        for kv in parts {
            let (key, value) = kv.split_once('=').ok_or_else(|| {
                err(format!(
                    "expected key=value, got {kv:?}; valid keys for {kind}: {}",
                    keys.join(", ")
                ))
            })?;
            if !keys.contains(&key) {
                return Err(err(format!(
                    "unknown key {key:?} for a {kind} port; valid keys: {}",
                    keys.join(", ")
                )));
            }
            if seen.contains(&key) {
                return Err(err(format!("key {key:?} given twice")));
            }
            seen.push(key);
            let bad = |why: &str| err(format!("bad value {value:?} for {key}: {why}"));
            match key {
                "netns" => {
                    if value.is_empty() || value.contains('/') || value == "." || value == ".." {
                        return Err(bad("a namespace name, without '/'"));
                    }
                    netns = Some(value.to_owned());
                }
                "offload" => {
                    offload = Some(value.parse::<Features>().map_err(|e| bad(&e.to_string()))?);
                }
                "vlan" => {
                    let v = value
                        .parse::<u16>()
                        .ok()
                        .filter(|v| (1..=4094).contains(v))
                        .ok_or_else(|| bad("a VLAN id in 1..=4094"))?;
                    vlan = Some(v);
                }
                "queues" => {
                    let q = value
                        .parse::<u16>()
                        .ok()
                        .filter(|q| (1..=256).contains(q))
                        .ok_or_else(|| bad("a queue count in 1..=256"))?;
                    queues = Some(q);
                }
                "mode" => {
                    mode = Some(match value {
                        "write" => PcapMode::Write,
                        "replay" => PcapMode::Replay,
                        _ => return Err(bad("write or replay")),
                    });
                }
                _ => unreachable!("keys are checked against valid_keys above"),
            }
        }

        let kind = match kind {
            "tap" | "tun" => {
                check_ifname(name).map_err(err)?;
                PortKind::Tap {
                    name: name.to_owned(),
                    tun: kind == "tun",
                    queues: queues.unwrap_or(1),
                }
            }
            "packet" => {
                check_ifname(name).map_err(err)?;
                PortKind::Packet {
                    ifname: name.to_owned(),
                }
            }
            _ => {
                if name.is_empty() {
                    return Err(err("missing pcap file path".into()));
                }
                PortKind::Pcap {
                    path: PathBuf::from(name),
                    mode: mode.unwrap_or_default(),
                }
            }
        };
        Ok(PortSpec {
            kind,
            netns,
            offload,
            vlan,
        })
    }
}

impl fmt::Display for PortSpec {
    /// The canonical spec string; parsing it gives the same spec back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            PortKind::Tap { name, tun, .. } => {
                write!(f, "{}:{name}", if *tun { "tun" } else { "tap" })?
            }
            PortKind::Packet { ifname } => write!(f, "packet:{ifname}")?,
            PortKind::Pcap { path, mode } => {
                write!(f, "pcap:{}", path.display())?;
                if *mode == PcapMode::Replay {
                    write!(f, ",mode=replay")?;
                }
            }
        }
        if let Some(ns) = &self.netns {
            write!(f, ",netns={ns}")?;
        }
        if let Some(o) = self.offload {
            write!(f, ",offload={o}")?;
        }
        if let PortKind::Tap { queues, .. } = self.kind {
            if queues != 1 {
                write!(f, ",queues={queues}")?;
            }
        }
        if let Some(v) = self.vlan {
            write!(f, ",vlan={v}")?;
        }
        Ok(())
    }
}

impl PortSpec {
    /// The port's name for counters and logs: the device name, or the file path.
    pub fn name(&self) -> String {
        match &self.kind {
            PortKind::Tap { name, .. } => name.clone(),
            PortKind::Packet { ifname } => ifname.clone(),
            PortKind::Pcap { path, .. } => path.display().to_string(),
        }
    }
}
