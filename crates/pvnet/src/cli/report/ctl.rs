//! What the running switch says about itself over its control socket.

use std::io;
use std::path::{Path, PathBuf};

use pvnet::ctl::client::{Client, CtlError};
use pvnet::ctl::proto::{PortInfo, Request};

use super::bundle::Bundle;

/// A connection made on first use; after a failure that may have left the connection
/// unusable (a timeout, a closed socket) later requests are not sent, so that a hung
/// switch costs one timeout, not one per request.
struct Switch {
    path: PathBuf,
    client: Option<Client>,
    /// Why no further request is sent.
    dead: Option<String>,
}

impl Switch {
    fn new(path: &Path) -> Switch {
        Switch {
            path: path.to_owned(),
            client: None,
            dead: None,
        }
    }

    /// Send `req`; its result, or why there is none.
    fn ask(&mut self, req: &Request) -> Result<serde_json::Value, String> {
        if let Some(why) = &self.dead {
            return Err(why.clone());
        }
        let client = match &mut self.client {
            Some(c) => c,
            None => match Client::connect(&self.path) {
                Ok(c) => self.client.insert(c),
                Err(e) => {
                    let why = self.explain(&e);
                    self.dead = Some(why.clone());
                    return Err(why);
                }
            },
        };
        match client.call(req) {
            Ok(v) => Ok(v),
            Err(CtlError::Refused(why)) => Err(format!("the switch refused: {why}")),
            Err(e) => {
                let why = self.explain(&e);
                self.client = None;
                self.dead = Some(format!("not asked: an earlier request failed ({why})"));
                Err(why)
            }
        }
    }

    fn explain(&self, e: &CtlError) -> String {
        let shown = self.path.display();
        match e {
            CtlError::NotRunning { source, .. } => match source.kind() {
                io::ErrorKind::NotFound => {
                    format!("no switch running on {shown} (no such socket)")
                }
                io::ErrorKind::ConnectionRefused => {
                    format!("no switch running on {shown} (connection refused)")
                }
                io::ErrorKind::PermissionDenied => format!(
                    "cannot connect to the switch on {shown} (permission denied: the socket \
                     is root's; run pvnet report as root)"
                ),
                _ => format!("cannot connect to the switch on {shown} ({source})"),
            },
            other => other.to_string(),
        }
    }
}

fn pretty(v: &serde_json::Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
    out.push(b'\n');
    out
}

/// A port of the switch, with what the switch says of its offloads.
pub struct Port {
    pub info: PortInfo,
    /// The `offload_show` answer, pretty-printed, or why there is none.
    pub offload_show: Result<Vec<u8>, String>,
}

/// Ask the switch everything at once (the connection is not left idle while the
/// captures run: the switch closes idle ones) and add the switch's parts to `bundle`.
/// Returns its ports, or why they are not known.
pub fn collect(path: &Path, log_lines: usize, bundle: &mut Bundle) -> Result<Vec<Port>, String> {
    let mut switch = Switch::new(path);
    let switch = &mut switch;
    let version = switch.ask(&Request::Version {});
    bundle.add(
        "switch/version.json",
        "the switch's version, process id and uptime",
        version.as_ref().map(pretty).map_err(Clone::clone),
    );

    let config = switch.ask(&Request::Config {});
    bundle.add(
        "switch/config.json",
        "the switch's effective configuration (control socket `config`)",
        config.as_ref().map(pretty).map_err(Clone::clone),
    );
    let toml = config.and_then(|v| match v.get("toml").and_then(|t| t.as_str()) {
        Some(t) => Ok(t.to_owned()),
        None => Err(format!("the `config` answer has no `toml` text: {v}")),
    });
    bundle.text(
        "switch/config.toml",
        "the same configuration, as `pvnet switch --print-config` prints it",
        toml,
    );

    let ports = switch.ask(&Request::PortList {});
    bundle.add(
        "switch/port_list.json",
        "the switch's ports: kind, spec, namespace, state, offloads, queues, VLAN",
        ports.as_ref().map(pretty).map_err(Clone::clone),
    );
    let ports = ports.and_then(|v| {
        serde_json::from_value::<Vec<PortInfo>>(v)
            .map_err(|e| format!("the port list is not the protocol's ({e})"))
    });

    let stats = switch.ask(&Request::Stats { port: None });
    bundle.add(
        "switch/stats.json",
        "the switch's counters per port, drops by cause, ports removed",
        stats.as_ref().map(pretty).map_err(Clone::clone),
    );

    let macs = switch.ask(&Request::MacList {});
    bundle.add(
        "switch/mac_list.json",
        "the switch's MAC table: address, VLAN, port, age",
        macs.as_ref().map(pretty).map_err(Clone::clone),
    );

    let log = if log_lines == 0 {
        Err("--log-lines 0".to_owned())
    } else {
        switch
            .ask(&Request::Log { lines: log_lines })
            .and_then(|v| log_text(&v))
    };
    bundle.text(
        "switch/log.txt",
        format!("the switch's last log lines (at most {log_lines}), oldest first"),
        log,
    );
    let ports = ports?;
    Ok(ports
        .into_iter()
        .map(|info| {
            let offload_show = switch
                .ask(&Request::OffloadShow {
                    port: info.name.clone(),
                })
                .map(|v| pretty(&v));
            Port { info, offload_show }
        })
        .collect())
}

/// The `log` answer's lines, one per line.
fn log_text(v: &serde_json::Value) -> Result<String, String> {
    let lines = v
        .get("lines")
        .and_then(|l| l.as_array())
        .ok_or_else(|| format!("the `log` answer has no `lines`: {v}"))?;
    let mut s = String::new();
    for l in lines {
        match l.as_str() {
            Some(t) => s.push_str(t),
            None => s.push_str(&l.to_string()),
        }
        s.push('\n');
    }
    Ok(s)
}
