//! The host's side of a report: pvnet's build, the kernel's version and configuration,
//! the sysctls that shape offloads, the modules loaded and the kernel log. Everything is
//! read from `/proc` and `/boot` directly; only the kernel log falls back on `dmesg`.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use flate2::read::GzDecoder;

/// pvnet's version and how it was built.
pub fn version() -> String {
    let mut s = format!("pvnet {}\n", env!("CARGO_PKG_VERSION"));
    let or_unknown = |v: &'static str| if v.is_empty() { "unknown" } else { v };
    let _ = writeln!(s, "target: {}", or_unknown(env!("PVNET_BUILD_TARGET")));
    let _ = writeln!(s, "profile: {}", or_unknown(env!("PVNET_BUILD_PROFILE")));
    let _ = writeln!(s, "compiler: {}", or_unknown(env!("PVNET_BUILD_RUSTC")));
    s.push_str("git revision: not recorded at build time\n");
    match std::env::current_exe() {
        Ok(p) => {
            let _ = writeln!(s, "executable: {}", p.display());
        }
        Err(e) => {
            let _ = writeln!(s, "executable: unknown ({e})");
        }
    }
    s
}

/// Read a small text file, the error naming it.
fn read(path: &str) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> Result<String, String> {
    read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned())
}

/// The host name, as `uname -n` says it.
pub fn hostname() -> String {
    read("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// `uname`'s fields, `/proc/version` and the distribution.
pub fn uname() -> Result<String, String> {
    let version = read("/proc/version")?;
    let mut s = String::new();
    for (label, path) in [
        ("kernel name", "/proc/sys/kernel/ostype"),
        ("node name", "/proc/sys/kernel/hostname"),
        ("kernel release", "/proc/sys/kernel/osrelease"),
        ("kernel version", "/proc/sys/kernel/version"),
    ] {
        let value = read(path).map_or_else(|e| format!("unknown ({e})"), |v| v.trim().into());
        let _ = writeln!(s, "{label}: {value}");
    }
    let _ = writeln!(s, "machine: {}", std::env::consts::ARCH);
    let _ = writeln!(s, "\n/proc/version:\n{}", version.trim_end());
    if let Ok(os) = read("/etc/os-release") {
        let pretty = os
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"'));
        if let Some(p) = pretty {
            let _ = writeln!(s, "\ndistribution: {p}");
        }
    }
    Ok(s)
}

/// Configuration options that matter to a virtual network: matched as a prefix of the
/// name after `CONFIG_`.
const CONFIG_PREFIXES: &[&str] = &[
    "TUN",
    "TAP",
    "VHOST",
    "VIRTIO",
    "VXLAN",
    "GENEVE",
    "BRIDGE",
    "VETH",
    "MACVLAN",
    "MACVTAP",
    "IPVLAN",
    "VLAN_8021Q",
    "PACKET",
    "NET_NS",
    "NET_UDP_TUNNEL",
    "NET_FOU",
    "NET_IPGRE",
    "NET_IP_TUNNEL",
    "OPENVSWITCH",
];

/// Options matched by their whole name.
const CONFIG_NAMES: &[&str] = &["MODULES"];

/// Whether a line of a kernel config (`CONFIG_X=y` or `# CONFIG_X is not set`) is one of
/// ours: the options above, and every option about segmentation or receive offload
/// (a `GSO` or `GRO` word in the name: `NET_MPLS_GSO`, `GRO_CELLS`).
fn relevant_config(line: &str) -> bool {
    let name = line
        .strip_prefix("# ")
        .unwrap_or(line)
        .strip_prefix("CONFIG_")
        .and_then(|rest| rest.split([' ', '=']).next());
    name.is_some_and(|n| {
        CONFIG_NAMES.contains(&n)
            || CONFIG_PREFIXES.iter().any(|p| n.starts_with(p))
            || n.split('_').any(|w| w == "GSO" || w == "GRO")
    })
}

/// The relevant lines of the running kernel's configuration, from `/proc/config.gz` or
/// `/boot/config-RELEASE`.
pub fn kernel_config() -> Result<String, String> {
    let (source, text) = match read_config_gz("/proc/config.gz") {
        Ok(t) => ("/proc/config.gz".to_owned(), t),
        Err(gz_err) => {
            let release = kernel_release()?;
            let boot = format!("/boot/config-{release}");
            match fs::read_to_string(&boot) {
                Ok(t) => (boot, t),
                Err(e) => {
                    return Err(format!(
                        "neither /proc/config.gz ({gz_err}) nor {boot} ({e}) can be read; \
                         `modprobe configs` provides the first"
                    ))
                }
            }
        }
    };
    let mut s = format!(
        "# From {source}: the options about taps, vhost, virtio, tunnels, bridges, packet \
         sockets, namespaces, GSO and GRO.\n"
    );
    for line in text.lines().filter(|l| relevant_config(l)) {
        s.push_str(line);
        s.push('\n');
    }
    Ok(s)
}

fn read_config_gz(path: &str) -> Result<String, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    GzDecoder::new(file)
        .read_to_string(&mut text)
        .map_err(|e| format!("{path}: {e}"))?;
    Ok(text)
}

/// The sysctls that shape offloads, batching and TCP over virtual devices.
const SYSCTLS: &[&str] = &[
    "net.core.gro_normal_batch",
    "net.core.netdev_max_backlog",
    "net.core.netdev_budget",
    "net.core.netdev_budget_usecs",
    "net.core.dev_weight",
    "net.core.rmem_default",
    "net.core.rmem_max",
    "net.core.wmem_default",
    "net.core.wmem_max",
    "net.core.optmem_max",
    "net.core.busy_poll",
    "net.core.busy_read",
    "net.core.default_qdisc",
    "net.ipv4.ip_forward",
    "net.ipv4.ip_no_pmtu_disc",
    "net.ipv4.tcp_congestion_control",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_mem",
    "net.ipv4.tcp_mtu_probing",
    "net.ipv4.tcp_sack",
    "net.ipv4.tcp_timestamps",
    "net.ipv4.tcp_window_scaling",
    "net.ipv4.tcp_ecn",
    "net.ipv4.tcp_autocorking",
    "net.ipv4.tcp_tso_win_divisor",
    "net.ipv4.tcp_min_tso_segs",
    "net.ipv4.tcp_limit_output_bytes",
    "net.ipv4.udp_rmem_min",
    "net.ipv4.udp_wmem_min",
    "net.ipv6.conf.all.disable_ipv6",
    "net.ipv6.conf.all.forwarding",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
];

/// `name = value` for each of [`SYSCTLS`], read from `/proc/sys` by the calling thread:
/// the `net.*` ones are those of the thread's network namespace. With `only_present`,
/// sysctls this namespace does not have are left out (many `net.core` ones exist only in
/// the host's); otherwise they are listed as absent.
pub fn sysctls(only_present: bool) -> String {
    let mut s = String::new();
    for name in SYSCTLS {
        let path = Path::new("/proc/sys").join(name.replace('.', "/"));
        match fs::read_to_string(&path) {
            Ok(v) => {
                let _ = writeln!(s, "{name} = {}", v.trim().replace('\t', " "));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !only_present {
                    let _ = writeln!(
                        s,
                        "{name}: not present (module not loaded or kernel without it)"
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(s, "{name}: {e}");
            }
        }
    }
    s
}

/// Modules whose state matters to a virtual network.
const MODULES: &[&str] = &[
    "tun",
    "tap",
    "vhost",
    "vhost_net",
    "vhost_vsock",
    "vhost_iotlb",
    "virtio",
    "virtio_net",
    "virtio_ring",
    "virtio_pci",
    "vxlan",
    "geneve",
    "bridge",
    "br_netfilter",
    "veth",
    "macvlan",
    "macvtap",
    "ipvlan",
    "8021q",
    "udp_tunnel",
    "ip6_udp_tunnel",
    "af_packet",
    "openvswitch",
];

/// The relevant lines of `/proc/modules`.
pub fn modules() -> Result<String, String> {
    let all = match fs::read_to_string("/proc/modules") {
        Ok(all) => all,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(
                "the kernel loads no modules (no /proc/modules: built without \
                        CONFIG_MODULES); what it has is built in, see kernel-config.txt"
                    .into(),
            )
        }
        Err(e) => return Err(format!("/proc/modules: {e}")),
    };
    let mut s = String::from(
        "# Loaded modules about virtual networking, from /proc/modules (name size refs users \
         state address); built-in ones are `=y` in kernel-config.txt.\n",
    );
    for line in all.lines() {
        if line
            .split_whitespace()
            .next()
            .is_some_and(|m| MODULES.contains(&m))
        {
            s.push_str(line);
            s.push('\n');
        }
    }
    Ok(s)
}

/// Words that make a kernel log line worth reporting.
const KERNEL_LOG_WORDS: &[&str] = &["tun", "tap", "virtio", "vhost", "vxlan", "geneve", "pvnet"];

/// Most kernel log lines kept (the latest).
const KERNEL_LOG_MAX: usize = 2000;

fn kernel_log_relevant(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    KERNEL_LOG_WORDS.iter().any(|w| lower.contains(w))
}

/// The kernel log lines mentioning tun, tap, virtio, vhost, vxlan, geneve or pvnet: read
/// from `/dev/kmsg` without waiting for new ones, or else from `dmesg`.
pub fn kernel_log() -> Result<String, String> {
    let (source, lines) = match read_kmsg() {
        Ok(lines) => ("/dev/kmsg", lines),
        Err(kmsg_err) => match dmesg() {
            Ok(lines) => ("dmesg", lines),
            Err(dmesg_err) => return Err(format!("/dev/kmsg: {kmsg_err}; dmesg: {dmesg_err}")),
        },
    };
    let total = lines.len();
    let mut kept: Vec<&String> = lines.iter().filter(|l| kernel_log_relevant(l)).collect();
    let matched = kept.len();
    if kept.len() > KERNEL_LOG_MAX {
        kept.drain(..kept.len() - KERNEL_LOG_MAX);
    }
    let mut s = format!(
        "# From {source}: {matched} of the {total} lines in the kernel's log buffer mention \
         {}{}.\n",
        KERNEL_LOG_WORDS.join(", "),
        if matched > kept.len() {
            format!(" (the last {} are here)", kept.len())
        } else {
            String::new()
        }
    );
    for l in kept {
        s.push_str(l);
        s.push('\n');
    }
    Ok(s)
}

/// Every record in the kernel's log buffer, as `[seconds.micros] message`.
fn read_kmsg() -> Result<Vec<String>, String> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => {
                format!("{e} (reading the kernel log needs root, or kernel.dmesg_restrict=0)")
            }
            _ => e.to_string(),
        })?;
    // One read returns one record; records are at most about 8 KiB.
    let mut buf = vec![0u8; 16 * 1024];
    let mut lines = Vec::new();
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Some(l) = kmsg_record(&String::from_utf8_lossy(&buf[..n])) {
                    lines.push(l);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            // Records were overwritten while we read: go on from the oldest left.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(lines)
}

/// `PRIO,SEQ,MICROS,FLAGS[,…];MESSAGE\n KEY=VALUE…` → `[SECS.MICROS] MESSAGE`.
fn kmsg_record(record: &str) -> Option<String> {
    let (head, rest) = record.split_once(';')?;
    let message = rest.lines().next().unwrap_or("");
    let micros: u64 = head.split(',').nth(2)?.parse().ok()?;
    Some(format!(
        "[{:>5}.{:06}] {message}",
        micros / 1_000_000,
        micros % 1_000_000
    ))
}

fn dmesg() -> Result<Vec<String>, String> {
    let out = std::process::Command::new("dmesg")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                "not installed".to_owned()
            } else {
                e.to_string()
            }
        })?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lines_are_picked_by_option_name() {
        assert!(relevant_config("CONFIG_TUN=m"));
        assert!(relevant_config("# CONFIG_VHOST_NET is not set"));
        assert!(relevant_config("CONFIG_NET_UDP_TUNNEL=y"));
        assert!(relevant_config("CONFIG_VIRTIO_NET=y"));
        assert!(relevant_config("CONFIG_NET_SCH_FQ_GSO=y"));
        assert!(!relevant_config("CONFIG_SMP=y"));
        assert!(!relevant_config("# Networking options"));
        assert!(relevant_config("CONFIG_GRO_CELLS=y"));
        assert!(relevant_config("# CONFIG_MODULES is not set"));
        assert!(!relevant_config("CONFIG_HZ=250"));
        assert!(!relevant_config("CONFIG_CGROUPS=y"));
        assert!(!relevant_config("CONFIG_MODULES_TREE_LOOKUP=y"));
    }

    #[test]
    fn kmsg_records_become_dmesg_lines() {
        assert_eq!(
            kmsg_record("6,1234,5012345,-;tun: Universal TUN/TAP device driver\n SUBSYSTEM=x\n")
                .as_deref(),
            Some("[    5.012345] tun: Universal TUN/TAP device driver")
        );
        assert_eq!(kmsg_record("garbage"), None);
        assert_eq!(kmsg_record("6,1,notanumber,-;x"), None);
    }

    #[test]
    fn kernel_log_words_match_case_insensitively() {
        assert!(kernel_log_relevant("virtio_net virtio0 eth0: renamed"));
        assert!(kernel_log_relevant("VXLAN: device up"));
        assert!(!kernel_log_relevant("EXT4-fs (sda1): mounted filesystem"));
    }
}
