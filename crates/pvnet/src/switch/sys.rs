//! What the switch runtime asks of the system besides its ports: the CAP_NET_ADMIN check
//! and `ip` commands. Its syscalls (epoll, namespaces, scheduling) are in `pvnet-linux`.

use std::io;

/// CAP_NET_ADMIN's bit in the capability sets.
const CAP_NET_ADMIN: u32 = 12;

/// Whether this process has CAP_NET_ADMIN in its effective set (from /proc/self/status);
/// `None` when that cannot be read.
pub fn has_net_admin() -> Option<bool> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    let hex = line.trim_start_matches("CapEff:").trim();
    let caps = u64::from_str_radix(hex, 16).ok()?;
    Some(caps & (1 << CAP_NET_ADMIN) != 0)
}

/// The one-line explanation given when CAP_NET_ADMIN is missing.
pub const NEED_NET_ADMIN: &str = "needs CAP_NET_ADMIN to create tap devices and enter network \
                                  namespaces: run it as root (e.g. with sudo)";

/// Run `ip ARGS…`, returning an error that names the command and carries its stderr.
pub fn ip(args: &[&str]) -> io::Result<()> {
    let out = std::process::Command::new("ip")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("spawn `ip`: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
