//! The `--config FILE.toml` file and the effective configuration `--print-config` shows.
//!
//! ```toml
//! [switch]
//! mac_table_size = 4096   # MAC learning table capacity
//! ageing_secs = 300       # forget a MAC address not seen for this long
//!
//! [[port]]
//! spec = "tap:pv0,netns=red,offload=csum+sg+tso4+tso6"
//!
//! [[port]]
//! spec = "tap:pv1,offload=none,vlan=10"
//! ```
//!
//! Ports given on the command line are added after the file's.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::SwitchConfig;

/// The file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub switch: SwitchSection,
    #[serde(default)]
    pub port: Vec<PortEntry>,
}

/// `[switch]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchSection {
    pub mac_table_size: Option<usize>,
    pub ageing_secs: Option<u64>,
}

/// One `[[port]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortEntry {
    pub spec: String,
}

impl FileConfig {
    /// Read and parse a config file; the error names the file and the problem.
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))
    }

    /// Apply `[switch]` to `cfg`.
    pub fn apply(&self, cfg: &mut SwitchConfig) {
        if let Some(n) = self.switch.mac_table_size {
            cfg.mac_table_size = n;
        }
        if let Some(s) = self.switch.ageing_secs {
            cfg.ageing_secs = s;
        }
    }
}

/// What `--print-config` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Effective {
    pub switch: EffectiveSwitch,
    pub port: Vec<EffectivePort>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EffectiveSwitch {
    pub mac_table_size: usize,
    pub ageing_secs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcap: Option<String>,
}

/// One port with what it resolved to on this kernel.
#[derive(Debug, Clone, Serialize)]
pub struct EffectivePort {
    /// The spec as given (canonical form).
    pub spec: String,
    /// Device name.
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// Transmit features after probing, short names.
    pub features: String,
    /// The same with `ethtool -k` names.
    pub features_ethtool: String,
    /// GRO coalesces what this port receives.
    pub gro: bool,
}

impl Effective {
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}
