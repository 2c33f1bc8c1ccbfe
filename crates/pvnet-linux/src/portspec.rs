//! Port specifications: the `--port` strings of the switch, parsed without touching the
//! system.
//!
//! ```text
//! tap:NAME[,netns=NS][,offload=FEATURES][,queues=N][,vlan=VID]
//! tun:NAME[,netns=NS][,offload=FEATURES][,queues=N][,vlan=VID]
//! packet:IFNAME[,netns=NS][,offload=FEATURES][,vlan=VID]
//! pcap:PATH[,mode=write|replay]
//! vxlan:LOCAL_IP,remote=IP[+IP…][,vni=N][,dstport=4789][,mtu=1500][,netns=NS][,offload=none][,queues=N][,vlan=VID]
//! geneve:LOCAL_IP,remote=IP[+IP…][,vni=N][,dstport=6081][,mtu=1500][,netns=NS][,offload=none][,queues=N][,vlan=VID]
//! vhost-user:PATH[,queues=N][,client][,offload=FEATURES][,mac=MAC][,mtu=N][,poll=on][,vlan=VID]
//! ```
//!
//! A `vhost-user:` port is a VM's virtio-net device: pvnet listens on the unix socket
//! `PATH` (or with `client` connects to a frontend listening there), and the VM's
//! frontend (QEMU, cloud-hypervisor, …) plugs the guest in. `queues=N` offers N queue
//! pairs, `offload=` narrows the offloads offered to the driver (both directions), `mac=`
//! and `mtu=` go into the device's config space (default: a locally administered MAC made
//! from the path, MTU 1500). `poll=on` busy-polls the guest's rings instead of waiting for
//! its kicks (a core spins while a guest is connected).
//!
//! An overlay port (`vxlan:`, `geneve:`) sends the switch's frames to the `remote` tunnel
//! endpoints (IPv4 or IPv6, the local address's family) over UDP from `LOCAL_IP`, VNI 1
//! unless `vni=` says otherwise; `mtu` is the underlay's IP MTU. `offload=none` turns its
//! UDP GSO and GRO off (one system call per datagram); any other list leaves them on.
//! `queues=N` receives on N sockets sharing the address (`SO_REUSEPORT`), each with a
//! thread of the switch: the kernel keeps each flow on one of them.
//!
//! Only `tap:` and `packet:` ports can join the switch today: `tun:` and `pcap:` are parsed
//! so that it can say why it refuses them, and the errors list only the kinds that work.
//!
//! `FEATURES` is a [`Features`] list (`csum+sg+tso4+tso6+uso`, `none` for a legacy peer,
//! `all`). Without `offload=` the port uses its default: a tap takes every offload the
//! kernel accepts ([`crate::tap::Tap::probe_offloads`]), a packet socket the interface's
//! own. `vlan=N` makes the port an access port of VLAN N; without it the port is a trunk.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use pvnet_core::offload::features::Features;
use pvnet_core::overlay::{Encap, Vni};

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
    /// A vhost-user-net device backend on a unix socket.
    VhostUser {
        path: PathBuf,
        client: bool,
        queues: u16,
        mac: Option<[u8; 6]>,
        mtu: Option<u16>,
        /// Busy-poll the guest's rings (`poll=on`).
        poll: bool,
    },
    /// A VXLAN or GENEVE tunnel to other hosts over a UDP underlay.
    Overlay {
        encap: Encap,
        local: IpAddr,
        remotes: Vec<IpAddr>,
        vni: Vni,
        dstport: u16,
        mtu: u16,
        /// Receive queues: sockets sharing the local address.
        queues: u16,
    },
}

/// VNI of an overlay port without `vni=`.
pub const DEFAULT_VNI: u32 = 1;

/// Underlay IP MTU of an overlay port without `mtu=`.
pub const DEFAULT_UNDERLAY_MTU: u16 = 1500;

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
const KINDS: &str = "tap, packet, vxlan, geneve, vhost-user";

fn valid_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        "tap" | "tun" => &["netns", "offload", "queues", "vlan"],
        "packet" => &["netns", "offload", "vlan"],
        "vxlan" | "geneve" => &[
            "remote", "vni", "dstport", "mtu", "netns", "offload", "queues", "vlan",
        ],
        "vhost-user" => &["queues", "client", "offload", "mac", "mtu", "poll", "vlan"],
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

/// `aa:bb:cc:dd:ee:ff` (hex digits, `:`-separated).
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in m.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
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
        if !matches!(
            kind,
            "tap" | "tun" | "packet" | "pcap" | "vxlan" | "geneve" | "vhost-user"
        ) {
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
        let mut remotes: Vec<IpAddr> = Vec::new();
        let mut vni = None;
        let mut dstport = None;
        let mut mtu = None;
        let mut client = false;
        let mut mac = None;
        let mut poll = false;
        let mut seen: Vec<&str> = Vec::new();
        for kv in parts {
            if kv == "client" && keys.contains(&"client") {
                if client {
                    return Err(err("key \"client\" given twice".into()));
                }
                client = true;
                continue;
            }
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
                "remote" => {
                    for r in value.split('+') {
                        let ip = r
                            .parse::<IpAddr>()
                            .map_err(|_| bad("IP addresses joined by '+'"))?;
                        if remotes.contains(&ip) {
                            return Err(bad(&format!("remote {ip} given twice")));
                        }
                        remotes.push(ip);
                    }
                }
                "vni" => {
                    vni = Some(
                        value
                            .parse::<u32>()
                            .ok()
                            .and_then(Vni::new)
                            .ok_or_else(|| bad("a VNI in 0..=16777215"))?,
                    );
                }
                "dstport" => {
                    dstport = Some(
                        value
                            .parse::<u16>()
                            .ok()
                            .filter(|p| *p != 0)
                            .ok_or_else(|| bad("a UDP port in 1..=65535"))?,
                    );
                }
                "mtu" if kind == "vhost-user" => {
                    mtu = Some(
                        value
                            .parse::<u16>()
                            .ok()
                            .filter(|m| *m >= 68)
                            .ok_or_else(|| bad("an MTU in 68..=65535"))?,
                    );
                }
                "mtu" => {
                    mtu = Some(
                        value
                            .parse::<u16>()
                            .ok()
                            .filter(|m| *m >= 576)
                            .ok_or_else(|| bad("an IP MTU of at least 576"))?,
                    );
                }
                "mac" => {
                    let m = parse_mac(value)
                        .ok_or_else(|| bad("a MAC address like 52:54:00:12:34:56"))?;
                    if m[0] & 1 != 0 {
                        return Err(bad("a unicast MAC address (multicast bit set)"));
                    }
                    mac = Some(m);
                }
                "client" => return Err(bad("client takes no value")),
                "poll" => {
                    poll = match value {
                        "on" => true,
                        "off" => false,
                        _ => return Err(bad("on or off")),
                    };
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
            "vhost-user" => {
                if name.is_empty() {
                    return Err(err("missing vhost-user socket path".into()));
                }
                PortKind::VhostUser {
                    path: PathBuf::from(name),
                    client,
                    queues: queues.unwrap_or(1),
                    mac,
                    mtu,
                    poll,
                }
            }
            "vxlan" | "geneve" => {
                let local = name
                    .parse::<IpAddr>()
                    .map_err(|_| err(format!("{kind}:LOCAL_IP: {name:?} is not an IP address")))?;
                if remotes.is_empty() {
                    return Err(err(format!(
                        "a {kind} port needs remote=IP[+IP…], the other tunnel endpoints"
                    )));
                }
                if let Some(r) = remotes.iter().find(|r| r.is_ipv4() != local.is_ipv4()) {
                    return Err(err(format!(
                        "remote {r} and local address {local} are of different IP versions"
                    )));
                }
                let encap = if kind == "vxlan" {
                    Encap::Vxlan
                } else {
                    Encap::Geneve
                };
                PortKind::Overlay {
                    encap,
                    local,
                    remotes,
                    vni: vni.unwrap_or(Vni::new(DEFAULT_VNI).unwrap_or_default()),
                    dstport: dstport.unwrap_or(encap.default_port()),
                    mtu: mtu.unwrap_or(DEFAULT_UNDERLAY_MTU),
                    queues: queues.unwrap_or(1),
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
            PortKind::VhostUser {
                path,
                client,
                queues,
                mac,
                mtu,
                poll,
            } => {
                write!(f, "vhost-user:{}", path.display())?;
                if *queues != 1 {
                    write!(f, ",queues={queues}")?;
                }
                if *client {
                    write!(f, ",client")?;
                }
                if let Some(m) = mac {
                    write!(
                        f,
                        ",mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                        m[0], m[1], m[2], m[3], m[4], m[5]
                    )?;
                }
                if let Some(m) = mtu {
                    write!(f, ",mtu={m}")?;
                }
                if *poll {
                    write!(f, ",poll=on")?;
                }
            }
            PortKind::Pcap { path, mode } => {
                write!(f, "pcap:{}", path.display())?;
                if *mode == PcapMode::Replay {
                    write!(f, ",mode=replay")?;
                }
            }
            PortKind::Overlay {
                encap,
                local,
                remotes,
                vni,
                dstport,
                mtu,
                ..
            } => {
                write!(f, "{}:{local},remote=", encap.name())?;
                for (i, r) in remotes.iter().enumerate() {
                    write!(f, "{}{r}", if i > 0 { "+" } else { "" })?;
                }
                if vni.get() != DEFAULT_VNI {
                    write!(f, ",vni={vni}")?;
                }
                if *dstport != encap.default_port() {
                    write!(f, ",dstport={dstport}")?;
                }
                if *mtu != DEFAULT_UNDERLAY_MTU {
                    write!(f, ",mtu={mtu}")?;
                }
            }
        }
        if let Some(ns) = &self.netns {
            write!(f, ",netns={ns}")?;
        }
        if let Some(o) = self.offload {
            write!(f, ",offload={o}")?;
        }
        if let PortKind::Tap { queues, .. } | PortKind::Overlay { queues, .. } = self.kind {
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
            PortKind::Pcap { path, .. } | PortKind::VhostUser { path, .. } => {
                path.display().to_string()
            }
            PortKind::Overlay { encap, local, .. } => format!("{}:{local}", encap.name()),
        }
    }
}
