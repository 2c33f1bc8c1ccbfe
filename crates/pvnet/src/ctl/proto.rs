//! The control protocol, as the switch and `pvnet ctl` speak it over the control socket:
//! one JSON object per line each way, one request then one response per line, on a Unix
//! stream socket. `docs/ctl.md` is the user-facing description; these types are the
//! definition.
//!
//! ```text
//! → {"cmd":"port_del","name":"pa"}
//! ← {"ok":true,"result":null}
//! → {"cmd":"port_del","name":"nope"}
//! ← {"ok":false,"error":"no port named nope (ports: pa, pb)"}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Longest request line the switch reads (bytes, newline included); a longer one is
/// answered with an error and the connection closed.
pub const MAX_REQUEST: usize = 64 * 1024;

/// Default path of the control socket, for the switch and for `pvnet ctl`.
pub const DEFAULT_SOCKET: &str = "/run/pvnet/pvnet.sock";

/// One request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Open a port from a spec (as on the command line) and add it to the running switch.
    PortAdd {
        /// The port spec, e.g. `tap:pv2,netns=red`.
        spec: String,
    },
    /// Remove a port by name; its device is closed (a tap the switch created disappears).
    PortDel {
        /// The port's name.
        name: String,
    },
    /// Every port: [`PortInfo`].
    PortList {},
    /// Counters: [`StatsReply`], of one port or all.
    Stats {
        /// Only this port.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<String>,
    },
    /// The MAC learning table: [`MacReply`].
    MacList {},
    /// One port's offloads in `ethtool -k` form: [`OffloadReply`].
    OffloadShow {
        /// The port's name.
        port: String,
    },
    /// The switch's effective configuration: [`ConfigReply`].
    Config {},
    /// The switch's last log lines: [`LogReply`].
    Log {
        /// How many lines at most (the switch keeps the last 1000).
        #[serde(default = "default_log_lines")]
        lines: usize,
    },
    /// Who is answering: [`VersionReply`].
    Version {},
}

fn default_log_lines() -> usize {
    200
}

/// One response: `ok` with a `result` whose shape depends on the request, or an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request was carried out.
    pub ok: bool,
    /// The result (`null` for requests that return nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// Why not, one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    /// A success carrying `result`.
    pub fn ok(result: serde_json::Value) -> Response {
        Response {
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    /// A failure saying `why`.
    pub fn err(why: impl Into<String>) -> Response {
        Response {
            ok: false,
            result: None,
            error: Some(why.into()),
        }
    }
}

/// A port as `port_list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    /// Port (device) name.
    pub name: String,
    /// `tap`, `packet`, `vxlan`, `geneve` or `vhost-user`.
    pub kind: String,
    /// The spec it was opened from (canonical form).
    pub spec: String,
    /// Network namespace of the device, if not the switch's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// `up`; `down` while it is being removed; `no-carrier` for a vhost-user port with no
    /// VM connected.
    pub state: String,
    /// How often the peer of a port whose peer comes and goes (a VM's frontend) went
    /// away; absent for other ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier_losses: Option<u64>,
    /// Offloads asked for in the spec (short names, `+`-joined).
    pub offload_configured: String,
    /// Offloads in effect: what the device accepted and the switch sends.
    pub offload_in_effect: String,
    /// Whether the switch coalesces (GRO) what this port receives.
    pub gro: bool,
    /// Number of queues (fds).
    pub queues: usize,
    /// Access VLAN, none for a trunk port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
}

/// The counters of one port, by name (`rx_packets`, …, `drops` by cause).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStats {
    /// Port name.
    pub port: String,
    /// Counter name → value, in a fixed order.
    pub counters: BTreeMap<String, u64>,
    /// Drop cause → frames dropped.
    pub drops: BTreeMap<String, u64>,
    /// For a vhost-user port: what its guest did wrong, cause → count (descriptor chains
    /// refused: `broken_chain`, `outside_memory`, `too_long`, `wrong_direction`,
    /// `short`; queues stopped: `ring_broken`). Absent for other ports.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub guest_errors: BTreeMap<String, u64>,
}

/// Reply to `stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReply {
    /// Per-port counters, in port order.
    pub ports: Vec<PortStats>,
    /// Ports removed since start, by cause (`device_gone`, `deleted`).
    pub ports_removed: BTreeMap<String, u64>,
    /// MAC addresses learned now.
    pub mac_entries: u64,
    /// MAC table capacity.
    pub mac_capacity: u64,
}

/// One learned address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MacEntry {
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// VLAN it was learned in (0: untagged on a trunk).
    pub vlan: u16,
    /// Port it was learned on.
    pub port: String,
    /// Seconds since it was last seen.
    pub age_secs: f64,
}

/// Reply to `mac_list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MacReply {
    /// The entries, sorted by port, VLAN and address.
    pub entries: Vec<MacEntry>,
    /// Table capacity.
    pub capacity: u64,
    /// Seconds after which an address not seen again is forgotten.
    pub ageing_secs: u64,
}

/// One offload of a port, in `ethtool -k` terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffloadLine {
    /// ethtool name, e.g. `tx-tcp-segmentation`.
    pub name: String,
    /// Whether the switch uses it for this port.
    pub on: bool,
    /// The device refused it (ethtool's `[fixed]`).
    pub fixed: bool,
    /// Why it is off, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why_off: Option<String>,
}

/// Reply to `offload_show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffloadReply {
    /// Port name.
    pub port: String,
    /// Every offload the switch knows, in ethtool order.
    pub features: Vec<OffloadLine>,
}

/// Reply to `config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigReply {
    /// The effective configuration as `--print-config` prints it (TOML).
    pub toml: String,
    /// The `--config` file the switch was started with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
}

/// Reply to `log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogReply {
    /// The lines, oldest first, as the log wrote them (without the newline).
    pub lines: Vec<String>,
}

/// Reply to `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionReply {
    /// pvnet's version.
    pub version: String,
    /// The switch's process id.
    pub pid: u32,
    /// Seconds since the switch started.
    pub uptime_secs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_the_documented_wire_form() {
        let r: Request = serde_json::from_str(r#"{"cmd":"port_add","spec":"tap:a"}"#).unwrap();
        assert_eq!(
            r,
            Request::PortAdd {
                spec: "tap:a".into()
            }
        );
        let r: Request = serde_json::from_str(r#"{"cmd":"log"}"#).unwrap();
        assert_eq!(r, Request::Log { lines: 200 });
        assert_eq!(
            serde_json::to_string(&Request::Stats { port: None }).unwrap(),
            r#"{"cmd":"stats"}"#
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"port_del"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"port_list","extra":1}"#).is_err());
    }

    #[test]
    fn responses_leave_out_what_they_do_not_carry() {
        assert_eq!(
            serde_json::to_string(&Response::err("no port named x")).unwrap(),
            r#"{"ok":false,"error":"no port named x"}"#
        );
        assert_eq!(
            serde_json::to_string(&Response::ok(serde_json::Value::Null)).unwrap(),
            r#"{"ok":true,"result":null}"#
        );
    }
}
