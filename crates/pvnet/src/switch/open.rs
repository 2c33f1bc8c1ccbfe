//! Opening the ports a `PortSpec` describes.
//!
//! - `tap:`: the tap is created if missing (attached to otherwise), inside `netns=NAME`
//!   when given — that namespace must exist. A tap another process holds (or that the
//!   switch was given twice), or a device of that name that is not a tap, is refused with
//!   that reason (see `pvnet_linux::tap`). Its offload mask (`TUNSETOFFLOAD`) is probed
//!   from the wanted features: whatever this kernel refuses is dropped per offload type
//!   (UDP tunnel with outer checksum, UDP tunnel, USO, UFO, TSO-ECN, TSO6, TSO4, checksum,
//!   in that order) with a warning. The tap reads and writes the 24-byte
//!   `virtio_net_hdr_v1_hash_tunnel` when the kernel takes a UDP tunnel offload (so that
//!   tunnel super-frames cross it whole), the 12-byte header otherwise. A `gro`
//!   in the list is ignored: the switch coalesces what a port receives whenever the
//!   kernel hands it wire-sized frames and another port takes super-frames. `queues=N`
//!   opens N queues of a multi-queue tap. The link is set up.
//! - `packet:`: an AF_PACKET socket on an existing interface.
//! - `vxlan:`, `geneve:`: an overlay port's UDP sockets, bound to the local address
//!   inside `netns=NAME` when given (the underlay is that namespace's), with UDP GSO and
//!   GRO unless `offload=none`.
//! - `vhost-user:`: a VM's virtio-net backend on a unix socket (see
//!   `pvnet_linux::vhost_user`): the socket is bound here, frontends are served from a
//!   thread of the port's own, one after the other.
//! - `tun:` and `pcap:` ports cannot join an L2 switch (use `--pcap FILE` to capture).

use std::fmt;
use std::io;

use pvnet_core::offload::features::{tun_offload, Features};
use pvnet_linux::netns;
use pvnet_linux::overlay_port::{OverlayConfig, OverlayPort};
use pvnet_linux::packet_socket::{PacketOptions, PacketSocket, PACKET_SND_FEATURES};
use pvnet_linux::port::{Port, TapPort};
use pvnet_linux::portspec::{PortKind, PortSpec};
use pvnet_linux::sys as lsys;
use pvnet_linux::tap::{Tap, TapOptions};
use pvnet_linux::vhost_user::{self, VhostUserConfig, VhostUserPort};

use super::sys;

/// An opened port: its name and queues.
pub struct OpenedPort {
    pub name: String,
    pub queues: Vec<Box<dyn Port + Send>>,
    /// Transmit features after probing.
    pub features: Features,
}

impl OpenedPort {
    /// A port made of `queues` of one device, with the features of its first.
    fn of_queues<P: Port + Send + 'static>(name: String, queues: Vec<P>) -> OpenedPort {
        let features = queues.first().map_or(Features::NONE, |p| p.features());
        OpenedPort {
            name,
            queues: queues
                .into_iter()
                .map(|p| Box::new(p) as Box<dyn Port + Send>)
                .collect(),
            features,
        }
    }
}

impl fmt::Debug for OpenedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedPort")
            .field("name", &self.name)
            .field("queues", &self.queues.len())
            .field("features", &self.features)
            .finish()
    }
}

/// Why a port could not be opened; the message says what to do.
#[derive(Debug)]
pub enum OpenError {
    /// No CAP_NET_ADMIN.
    NotPermitted(String),
    /// The `netns=` namespace does not exist.
    NoNamespace(String),
    /// The `packet:` interface does not exist.
    NoInterface(String),
    /// The spec names a kind of port the switch cannot use.
    Unsupported(String),
    Io(io::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::NotPermitted(m)
            | OpenError::NoNamespace(m)
            | OpenError::NoInterface(m)
            | OpenError::Unsupported(m) => f.write_str(m),
            OpenError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for OpenError {}

fn classify(spec: &PortSpec, e: io::Error) -> OpenError {
    if matches!(lsys::errno(&e), Some(libc::EPERM | libc::EACCES))
        || e.kind() == io::ErrorKind::PermissionDenied
    {
        return OpenError::NotPermitted(format!(
            "port {spec}: {e}: pvnet switch {}",
            sys::NEED_NET_ADMIN
        ));
    }
    OpenError::Io(io::Error::new(e.kind(), format!("port {spec}: {e}")))
}

/// Open the port `spec` describes.
pub fn open_port(spec: &PortSpec) -> Result<OpenedPort, OpenError> {
    if let Some(ns) = &spec.netns {
        if !netns::path(ns).exists() {
            return Err(OpenError::NoNamespace(format!(
                "port {spec}: network namespace {ns:?} does not exist; create it first with \
                 `ip netns add {ns}` (pvnet switch does not create namespaces)"
            )));
        }
    }
    match &spec.kind {
        PortKind::Tap {
            name,
            tun: false,
            queues,
        } => open_tap(spec, name, *queues),
        PortKind::Tap { tun: true, .. } => Err(OpenError::Unsupported(format!(
            "port {spec}: tun devices carry bare IP packets and cannot join the L2 switch; \
             use tap:NAME"
        ))),
        PortKind::Packet { ifname } => open_packet(spec, ifname),
        PortKind::VhostUser {
            path,
            client,
            queues,
            mac,
            mtu,
            poll,
        } => open_vhost_user(
            spec,
            VhostUserConfig {
                path: path.clone(),
                client: *client,
                pairs: *queues,
                offload: spec.offload.unwrap_or(Features::ALL),
                mac: mac.unwrap_or_else(|| default_mac(path)),
                mtu: mtu.unwrap_or(vhost_user::DEFAULT_MTU),
                poll: *poll,
            },
        ),
        PortKind::Pcap { .. } => Err(OpenError::Unsupported(format!(
            "port {spec}: pcap ports are not switch ports; capture with --pcap FILE"
        ))),
        PortKind::Overlay {
            encap,
            local,
            remotes,
            vni,
            dstport,
            mtu,
            queues,
        } => {
            let cfg = OverlayConfig {
                encap: *encap,
                local: *local,
                remotes: remotes.clone(),
                vni: *vni,
                dstport: *dstport,
                mtu: *mtu,
                offload: spec.offload != Some(Features::NONE),
            };
            open_overlay(spec, cfg, usize::from(*queues))
        }
    }
}

fn open_overlay(
    spec: &PortSpec,
    cfg: OverlayConfig,
    queues: usize,
) -> Result<OpenedPort, OpenError> {
    let name = spec.name();
    let ports = in_ns(spec, || OverlayPort::open_queues(&name, cfg, queues)).map_err(|e| {
        if matches!(lsys::errno(&e), Some(libc::EADDRNOTAVAIL)) {
            OpenError::NoInterface(format!(
                "port {spec}: no interface has the local address{}: {e}",
                in_netns_named(spec)
            ))
        } else {
            classify(spec, e)
        }
    })?;
    Ok(OpenedPort::of_queues(name, ports))
}

fn open_vhost_user(spec: &PortSpec, cfg: VhostUserConfig) -> Result<OpenedPort, OpenError> {
    let name = spec.name();
    let client = cfg.client;
    let ports = VhostUserPort::open(&name, cfg).map_err(|e| classify(spec, e))?;
    let opened = OpenedPort::of_queues(name, ports);
    tracing::info!(
        port = %opened.name,
        offered = %opened.features,
        queues = opened.queues.len(),
        "vhost-user port {}",
        if client { "connecting to its frontend" } else { "listening" }
    );
    Ok(opened)
}

/// A locally administered unicast MAC made from the socket path, the same on every start.
fn default_mac(path: &std::path::Path) -> [u8; 6] {
    // FNV-1a: stable across builds, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.as_os_str().as_encoded_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    [0x02, b[3], b[4], b[5], b[6], b[7]]
}

/// " in network namespace \"NS\"" for a spec with `netns=`, else nothing: for messages.
fn in_netns_named(spec: &PortSpec) -> String {
    spec.netns
        .as_ref()
        .map_or(String::new(), |n| format!(" in network namespace {n:?}"))
}

/// Run `f` in the spec's namespace, or here.
fn in_ns<T: Send>(spec: &PortSpec, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    match &spec.netns {
        Some(ns) => netns::in_netns(ns, f),
        None => f(),
    }
}

fn open_tap(spec: &PortSpec, name: &str, queues: u16) -> Result<OpenedPort, OpenError> {
    let wanted = spec.offload.unwrap_or(Features::ALL);
    // The UDP tunnel offloads need the 24-byte header; without them the port keeps the
    // 12-byte one, which every kernel takes.
    let bits = wanted.to_tun_offload_for_hdr(tun_offload::TUNNEL_HDR_LEN);
    let (taps, got) = in_ns(spec, || {
        let multi = queues > 1;
        let mut taps = Vec::with_capacity(usize::from(queues));
        let mut got = 0;
        let mut hdr_len = if bits & tun_offload::UDP_TUNNEL != 0 {
            tun_offload::TUNNEL_HDR_LEN
        } else {
            12
        };
        for q in 0..queues {
            let mut tap = Tap::open(&TapOptions {
                name: name.to_owned(),
                multi_queue: multi,
                vnet_hdr_len: hdr_len,
                ..TapOptions::default()
            })?;
            if q == 0 {
                if multi {
                    let f = tap.kernel_features()?;
                    if f & u32::from(lsys::IFF_MULTI_QUEUE as u16) == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::Unsupported,
                            "this kernel's tun driver has no IFF_MULTI_QUEUE: use queues=1",
                        ));
                    }
                }
                got = tap.probe_offloads(bits)?;
                if hdr_len > 12 && got & tun_offload::UDP_TUNNEL == 0 {
                    // The header size is the device's: the queues opened next keep it.
                    tap.set_vnet_hdr_len(12)?;
                    hdr_len = 12;
                }
            } else {
                // The mask is device-wide but is set on every attach.
                tap.set_offload(got)?;
            }
            taps.push(tap);
        }
        Ok((taps, got))
    })
    .map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            OpenError::NoNamespace(format!("port {spec}: {e}"))
        } else {
            classify(spec, e)
        }
    })?;
    if got != bits {
        let lost = Features::from_tun_offload(bits).difference(Features::from_tun_offload(got));
        tracing::warn!(
            port = %name,
            "this kernel refuses some tap offloads; falling back without: {lost}"
        );
    }
    let dev = taps
        .first()
        .map_or_else(|| name.to_owned(), |t| t.name().to_owned());
    let mut out: Vec<Box<dyn Port + Send>> = Vec::with_capacity(taps.len());
    let mut features = Features::NONE;
    for tap in taps {
        // GRO is not a transmit feature: whether the switch coalesces what a port
        // receives is decided from all ports' features (see `Switch::port_features`).
        let p = TapPort::new(tap).map_err(|e| classify(spec, e))?;
        features = p.features();
        out.push(Box::new(p));
    }
    let mut args = vec![];
    if let Some(ns) = &spec.netns {
        args.extend(["-n", ns.as_str()]);
    }
    args.extend(["link", "set", "dev", dev.as_str(), "up"]);
    sys::ip(&args).map_err(|e| classify(spec, e))?;
    tracing::info!(port = %dev, features = %features, queues, "tap port open");
    Ok(OpenedPort {
        name: dev,
        queues: out,
        features,
    })
}

fn open_packet(spec: &PortSpec, ifname: &str) -> Result<OpenedPort, OpenError> {
    let features = spec
        .offload
        .unwrap_or(PACKET_SND_FEATURES)
        .difference(Features::GRO);
    let sock = in_ns(spec, || {
        PacketSocket::open(
            ifname,
            &PacketOptions {
                features,
                ..PacketOptions::default()
            },
        )
    })
    .map_err(|e| {
        if matches!(lsys::errno(&e), Some(libc::ENODEV)) || e.to_string().contains("no interface") {
            OpenError::NoInterface(format!(
                "port {spec}: no interface {ifname:?}{}",
                in_netns_named(spec)
            ))
        } else {
            classify(spec, e)
        }
    })?;
    let features = sock.features();
    Ok(OpenedPort {
        name: ifname.to_owned(),
        queues: vec![Box::new(sock)],
        features,
    })
}

/// The offloads `spec` asks for: its `offload=` list, or what a port of its kind tries by
/// default (everything for a tap, what AF_PACKET can take for a packet socket).
pub fn configured_features(spec: &PortSpec) -> Features {
    let default = match spec.kind {
        PortKind::Packet { .. } => PACKET_SND_FEATURES,
        _ => Features::ALL,
    };
    spec.offload.unwrap_or(default).difference(Features::GRO)
}
