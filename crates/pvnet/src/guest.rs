//! A Linux guest under QEMU for tests (behind the `testing` cargo feature): the virtio-net
//! driver of a real kernel on the other side of a tap or, later, a vhost-user port.
//!
//! [`Guest::boot`] builds the guest when needed (`scripts/guest/build`: a Debian kernel and
//! an initramfs with busybox, iperf3 and ethtool, cached in `target/guest/` or
//! `$PVNET_GUEST_DIR`), starts `qemu-system-x86_64 -accel tcg` with the caller's network
//! arguments and waits until the guest's control channel answers. [`Guest::run`] runs a
//! shell script in the guest and returns its exit status and output. Dropping the guest
//! kills QEMU and removes its files, also when the test panics.
//!
//! The control channel is the guest's second serial port, a unix socket QEMU listens on:
//! each script goes as one line `ID BASE64`, and the guest answers with its output between
//! `PVNET-BEGIN-ID` and `PVNET-END-ID STATUS` (see scripts/guest/init). IDs carry a
//! per-guest nonce, so stale answers and the script's own output are never mistaken for
//! the end of a command. The first serial port is the console: the kernel log, kept in a
//! file and quoted in boot errors ([`Guest::console_log`]).
//!
//! Guest RAM is a shared memfd (`memory-backend-memfd,share=on`), which a vhost-user
//! backend needs to map it; [`vhost_user_net_args`] gives the rest.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;

/// The kernel and initramfs `scripts/guest/build` made.
#[derive(Debug, Clone)]
pub struct GuestImages {
    /// `vmlinuz`.
    pub kernel: PathBuf,
    /// `initrd.gz`.
    pub initrd: PathBuf,
}

/// Build the guest if it is missing or out of date (once per process) and return its
/// files. The build needs root on a machine without QEMU or the tools (it apt-get installs
/// them) and about 20 s the first time; after that it only checks its stamp.
pub fn images() -> io::Result<GuestImages> {
    static IMAGES: OnceLock<Result<GuestImages, String>> = OnceLock::new();
    IMAGES
        .get_or_init(build_images)
        .clone()
        .map_err(io::Error::other)
}

fn build_images() -> Result<GuestImages, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/guest/build");
    let out = Command::new(&script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            script.display(),
            out.status,
            stderr.trim()
        ));
    }
    // Shown with the output of a failing test only.
    eprint!("{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout
        .lines()
        .last()
        .map(PathBuf::from)
        .ok_or_else(|| format!("{} printed no output directory", script.display()))?;
    let images = GuestImages {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.gz"),
    };
    for f in [&images.kernel, &images.initrd] {
        if !f.is_file() {
            return Err(format!(
                "{} did not leave {}",
                script.display(),
                f.display()
            ));
        }
    }
    Ok(images)
}

/// How to boot a guest.
#[derive(Debug, Clone)]
pub struct GuestOptions {
    /// QEMU arguments of the guest's NIC(s), e.g. [`tap_net_args`] or
    /// [`vhost_user_net_args`]; empty: a guest with no NIC (only the control channel).
    pub net_args: Vec<String>,
    /// IPv4 address of eth0, `ADDR/LEN` (`pvnet.ip=`).
    pub ip: Option<String>,
    /// IPv6 address of eth0, `ADDR/LEN`, without DAD (`pvnet.ip6=`); without one the guest
    /// turns IPv6 off.
    pub ip6: Option<String>,
    /// MTU of eth0 (`pvnet.mtu=`).
    pub mtu: Option<u32>,
    /// Guest RAM in MiB (the shared memfd has the same size).
    pub memory_mib: u32,
    /// More kernel command-line parameters.
    pub append: Vec<String>,
    /// Start QEMU inside this network namespace (by name, as for `ip netns`), so that a tap
    /// it creates is born there; `None`: the caller's namespace.
    pub netns: Option<String>,
    /// How long the guest may take until its control channel answers.
    pub boot_timeout: Duration,
}

impl Default for GuestOptions {
    fn default() -> GuestOptions {
        GuestOptions {
            net_args: Vec::new(),
            ip: None,
            ip6: None,
            mtu: None,
            memory_mib: 512,
            append: Vec::new(),
            netns: None,
            // A few seconds when the machine is idle; generous for a CI machine busy
            // compiling and running other tests on both cores.
            boot_timeout: Duration::from_secs(90),
        }
    }
}

/// QEMU arguments for a virtio-net NIC on a tap that QEMU creates as `ifname` (in the
/// namespace QEMU runs in, see [`GuestOptions::netns`]), with a virtio-net header so the
/// guest gets the tap's checksum and segmentation offloads. Needs CAP_NET_ADMIN.
pub fn tap_net_args(ifname: &str, mac: &str) -> Vec<String> {
    vec![
        "-netdev".into(),
        format!("tap,id=n0,ifname={ifname},script=no,downscript=no,vnet_hdr=on"),
        "-device".into(),
        format!("virtio-net-pci,netdev=n0,mac={mac},vectors=0,mrg_rxbuf=on"),
    ]
}

/// QEMU arguments for a virtio-net NIC served by a vhost-user backend listening on
/// `socket` (QEMU connects, and reconnects every second if the backend goes away).
/// `vectors=0`: Debian 12's QEMU 7.2 crashes at driver start with vhost-user under TCG
/// otherwise.
pub fn vhost_user_net_args(socket: &Path, mac: &str) -> Vec<String> {
    vec![
        "-chardev".into(),
        format!("socket,id=c0,path={},reconnect=1", socket.display()),
        "-netdev".into(),
        "vhost-user,id=n0,chardev=c0".into(),
        "-device".into(),
        format!("virtio-net-pci,netdev=n0,mac={mac},vectors=0,mrg_rxbuf=on"),
    ]
}

/// A locally administered unicast MAC address unique to this process and call, so that
/// guests booted by concurrent tests on one switch never share one.
pub fn unique_mac() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    format!(
        "52:54:{:02x}:{:02x}:{:02x}:{:02x}",
        (pid >> 16) as u8,
        (pid >> 8) as u8,
        pid as u8,
        n as u8
    )
}

/// A running guest. Dropping it kills QEMU and removes its directory.
#[derive(Debug)]
pub struct Guest {
    child: Child,
    dir: PathBuf,
    nonce: String,
    chan: Mutex<Channel>,
}

#[derive(Debug)]
struct Channel {
    sock: UnixStream,
    /// What arrived and no command has consumed yet.
    buf: Vec<u8>,
    next: u64,
}

/// How long [`Guest::run`] waits for a command.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Every read on the control socket wakes up this often, to check the deadline.
const POLL: Duration = Duration::from_millis(100);

impl Guest {
    /// Boot a guest and wait until its control channel answers. Errors name the cause and
    /// quote the console (the kernel log) and QEMU's own messages.
    pub fn boot(opts: GuestOptions) -> io::Result<Guest> {
        let images = images()?;
        let dir = scratch_dir()?;
        // From here on a failure drops the half-made guest, which kills QEMU and removes
        // the directory; until QEMU runs, remove the directory by hand.
        let child = match spawn_qemu(&opts, &images, &dir) {
            Ok(c) => c,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let nonce = format!("g{:x}n{nanos:x}", std::process::id());
        let mut guest = Guest {
            child,
            dir,
            nonce,
            // Replaced once QEMU's socket accepts a connection.
            chan: Mutex::new(Channel {
                sock: UnixStream::pair()?.0,
                buf: Vec::new(),
                next: 0,
            }),
        };
        guest.wait_ready(opts.boot_timeout)?;
        Ok(guest)
    }

    /// Connect to the control socket and ping the guest until it answers.
    fn wait_ready(&mut self, limit: Duration) -> io::Result<()> {
        let start = Instant::now();
        let path = self.dir.join("ctl.sock");
        let sock = loop {
            self.check_alive()?;
            match UnixStream::connect(&path) {
                Ok(s) => break s,
                Err(e) if start.elapsed() > limit => {
                    return Err(self.error(format!(
                        "QEMU's control socket {} never accepted a connection ({e})",
                        path.display()
                    )))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        sock.set_read_timeout(Some(POLL))?;
        sock.set_write_timeout(Some(Duration::from_secs(10)))?;
        self.chan.get_mut().map_err(poisoned)?.sock = sock;
        // Until the guest's shell reads the serial port, what is sent may be lost or
        // garbled (the line is not in raw mode yet): ping every second and take the first
        // answer to any ping.
        loop {
            self.check_alive()?;
            let left = limit.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(self.error(format!(
                    "the guest's control channel did not answer within {limit:?}"
                )));
            }
            match self.run_timeout("true", left.min(Duration::from_millis(250))) {
                Ok((0, _)) => return Ok(()),
                Ok((rc, out)) => {
                    return Err(self.error(format!(
                        "the guest answered `true` with exit status {rc}: {out}"
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => continue,
                Err(e) => {
                    // Most likely QEMU quit after opening its sockets (a bad device
                    // argument): give it a moment, so that the error says so.
                    for _ in 0..20 {
                        self.check_alive()?;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    return Err(self.error(format!("the guest's control channel failed: {e}")));
                }
            }
        }
    }

    fn check_alive(&mut self) -> io::Result<()> {
        match self.child.try_wait()? {
            Some(status) => Err(self.error(format!("QEMU exited ({status})"))),
            None => Ok(()),
        }
    }

    /// Run `script` with `sh` in the guest (in /root, stdin from /dev/null, stderr merged
    /// into stdout) and return its exit status and output. Waits up to [`RUN_TIMEOUT`].
    pub fn run(&self, script: &str) -> io::Result<(i32, String)> {
        self.run_timeout(script, RUN_TIMEOUT)
    }

    /// [`Guest::run`] that must exit 0: its output, or an error quoting it.
    pub fn run_ok(&self, script: &str) -> io::Result<String> {
        let (rc, out) = self.run(script)?;
        if rc == 0 {
            Ok(out)
        } else {
            Err(io::Error::other(format!(
                "`{script}` in the guest exited with status {rc}: {}",
                out.trim_end()
            )))
        }
    }

    /// [`Guest::run`] with its own time limit; past it the error is `TimedOut`, and the
    /// script may still be running in the guest (later commands queue behind it).
    pub fn run_timeout(&self, script: &str, limit: Duration) -> io::Result<(i32, String)> {
        let mut chan = self.chan.lock().map_err(poisoned)?;
        let id = format!("{}x{}", self.nonce, chan.next);
        chan.next += 1;
        let line = format!(
            "\n{id} {}\n",
            base64::engine::general_purpose::STANDARD.encode(script)
        );
        chan.sock.write_all(line.as_bytes()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot send a command to the guest (has QEMU exited?): {e}"),
            )
        })?;
        let begin = format!("PVNET-BEGIN-{id}\n");
        let end = format!("PVNET-END-{id} ");
        let start = Instant::now();
        let mut piece = [0u8; 16 * 1024];
        loop {
            if let Some(found) = take_answer(&mut chan.buf, &begin, &end) {
                return found.map_err(|e| io::Error::other(format!("guest command {id}: {e}")));
            }
            if start.elapsed() > limit {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the guest did not finish `{script}` within {limit:?}"),
                ));
            }
            match chan.sock.read(&mut piece) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "the guest's control channel closed while running `{script}` \
                             (QEMU exited?); console: {}",
                            tail(&self.console_log(), 30)
                        ),
                    ))
                }
                Ok(n) => chan.buf.extend_from_slice(&piece[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// `(Tcp InCsumErrors, Udp InCsumErrors)` from the guest's `/proc/net/snmp`.
    pub fn csum_errors(&self) -> io::Result<(u64, u64)> {
        let snmp = self.run_ok("cat /proc/net/snmp")?;
        let tcp = snmp_value(&snmp, "Tcp", "InCsumErrors");
        let udp = snmp_value(&snmp, "Udp", "InCsumErrors");
        match (tcp, udp) {
            (Some(t), Some(u)) => Ok((t, u)),
            _ => Err(io::Error::other(format!(
                "no Tcp/Udp InCsumErrors in the guest's /proc/net/snmp: {snmp}"
            ))),
        }
    }

    /// What the guest wrote to its console so far: the kernel log and /init's messages.
    pub fn console_log(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.dir.join("console.log")).unwrap_or_default())
            .into_owned()
    }

    /// The directory of QEMU's files (control socket, console log, QEMU's output).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error that quotes the end of the console and QEMU's own output.
    fn error(&self, what: String) -> io::Error {
        let qemu = fs::read_to_string(self.dir.join("qemu.log")).unwrap_or_default();
        let qemu = match qemu.trim() {
            "" => "(no output)",
            q => q,
        };
        let console = tail(&self.console_log(), 40);
        let console = if console.is_empty() {
            "(empty)"
        } else {
            &console
        };
        io::Error::other(format!(
            "{what}\n--- QEMU: {qemu}\n--- console (last lines):\n{console}"
        ))
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        // Never panic here (we may be unwinding): ignore every failure.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> io::Error {
    io::Error::other("a thread panicked while talking to the guest")
}

/// `pvnet-guest-PID-N` in the temporary directory, new.
fn scratch_dir() -> io::Result<PathBuf> {
    static N: AtomicU32 = AtomicU32::new(0);
    loop {
        let dir = std::env::temp_dir().join(format!(
            "pvnet-guest-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            // Left over by an earlier process with the same pid.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot create {}: {e}", dir.display()),
                ))
            }
        }
    }
}

/// The QEMU command line of a guest: everything but the caller's NIC is fixed here.
fn qemu_args(opts: &GuestOptions, images: &GuestImages, dir: &Path) -> Vec<String> {
    let mut append = vec![
        "console=ttyS0".to_owned(),
        // A panic ends QEMU (-no-reboot) instead of hanging until the boot timeout.
        "panic=-1".to_owned(),
    ];
    if let Some(ip) = &opts.ip {
        append.push(format!("pvnet.ip={ip}"));
    }
    if let Some(ip6) = &opts.ip6 {
        append.push(format!("pvnet.ip6={ip6}"));
    }
    if let Some(mtu) = opts.mtu {
        append.push(format!("pvnet.mtu={mtu}"));
    }
    append.extend(opts.append.iter().cloned());
    let mem = opts.memory_mib;
    let mut args: Vec<String> = [
        "-accel",
        "tcg",
        "-m",
        &format!("{mem}"),
        "-smp",
        "1",
        // No default devices: in particular no NIC with user-mode networking.
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-object",
        &format!("memory-backend-memfd,id=mem,size={mem}M,share=on"),
        "-numa",
        "node,memdev=mem",
        "-kernel",
        &images.kernel.to_string_lossy(),
        "-initrd",
        &images.initrd.to_string_lossy(),
        "-append",
        &append.join(" "),
        "-serial",
        &format!("file:{}", dir.join("console.log").display()),
        "-serial",
        &format!("unix:{},server=on,wait=off", dir.join("ctl.sock").display()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(opts.net_args.iter().cloned());
    args
}

fn spawn_qemu(opts: &GuestOptions, images: &GuestImages, dir: &Path) -> io::Result<Child> {
    let args = qemu_args(opts, images, dir);
    let log = fs::File::create(dir.join("qemu.log"))?;
    let spawn = move || {
        Command::new("qemu-system-x86_64")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot start qemu-system-x86_64 ({e}); scripts/guest/build \
                         installs it (Debian package qemu-system-x86)"
                    ),
                )
            })
    };
    match &opts.netns {
        // A child forked by a thread inside the namespace starts there.
        Some(ns) => pvnet_linux::netns::in_netns(ns, spawn),
        None => spawn(),
    }
}

/// If `buf` holds the whole answer of one command (`begin`, output, `end` STATUS newline),
/// remove it (and anything before it) and return `(status, output)`.
fn take_answer(buf: &mut Vec<u8>, begin: &str, end: &str) -> Option<Result<(i32, String), String>> {
    let b = find(buf, begin.as_bytes(), 0)?;
    let out_start = b + begin.len();
    let e = find(buf, end.as_bytes(), out_start)?;
    let status_start = e + end.len();
    let nl = find(buf, b"\n", status_start)?;
    let output = String::from_utf8_lossy(&buf[out_start..e]).into_owned();
    let status = String::from_utf8_lossy(&buf[status_start..nl])
        .trim()
        .to_owned();
    buf.drain(..=nl);
    Some(
        status
            .parse()
            .map(|rc| (rc, output))
            .map_err(|_| format!("exit status {status:?} is not a number")),
    )
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The value of column `field` in the `/proc/net/snmp` table of `proto` (a header line
/// `Proto: names…` followed by `Proto: values…`).
fn snmp_value(snmp: &str, proto: &str, field: &str) -> Option<u64> {
    let prefix = format!("{proto}:");
    let mut lines = snmp.lines().filter(|l| l.starts_with(&prefix));
    let names = lines.next()?;
    let values = lines.next()?;
    let i = names.split_whitespace().position(|n| n == field)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_is_taken_whole_and_only_its_own() {
        let mut buf =
            b"noise\nPVNET-BEGIN-a1\nstale\nPVNET-END-a1 0\nPVNET-BEGIN-a2\nx\nPVN".to_vec();
        assert!(take_answer(&mut buf, "PVNET-BEGIN-a2\n", "PVNET-END-a2 ").is_none());
        buf.extend_from_slice(b"ET-END-a2 3");
        // The status line is not complete before its newline.
        assert!(take_answer(&mut buf, "PVNET-BEGIN-a2\n", "PVNET-END-a2 ").is_none());
        buf.extend_from_slice(b"\nPVNET-BEGIN-a3\n");
        let got = take_answer(&mut buf, "PVNET-BEGIN-a2\n", "PVNET-END-a2 ");
        assert_eq!(got, Some(Ok((3, "x\n".to_owned()))));
        assert_eq!(buf, b"PVNET-BEGIN-a3\n");
    }

    #[test]
    fn output_without_final_newline_and_bad_status() {
        let mut buf = b"PVNET-BEGIN-b\nabcPVNET-END-b 0\n".to_vec();
        let got = take_answer(&mut buf, "PVNET-BEGIN-b\n", "PVNET-END-b ");
        assert_eq!(got, Some(Ok((0, "abc".to_owned()))));
        let mut buf = b"PVNET-BEGIN-b\nPVNET-END-b ?\n".to_vec();
        let got = take_answer(&mut buf, "PVNET-BEGIN-b\n", "PVNET-END-b ");
        assert!(matches!(got, Some(Err(_))), "{got:?}");
    }

    #[test]
    fn snmp_columns() {
        let snmp = "Tcp: RtoAlgorithm InSegs InCsumErrors\nTcp: 1 25 7\n\
                    Udp: InDatagrams InCsumErrors\nUdp: 3 2\n\
                    UdpLite: InDatagrams InCsumErrors\nUdpLite: 0 9\n";
        assert_eq!(snmp_value(snmp, "Tcp", "InCsumErrors"), Some(7));
        assert_eq!(snmp_value(snmp, "Udp", "InCsumErrors"), Some(2));
        assert_eq!(snmp_value(snmp, "Udp", "Missing"), None);
    }

    #[test]
    fn qemu_command_line_has_shared_memory_and_no_default_nic() {
        let opts = GuestOptions {
            ip: Some("10.0.0.2/24".into()),
            mtu: Some(9000),
            net_args: tap_net_args("t0", "52:54:00:00:00:01"),
            ..GuestOptions::default()
        };
        let images = GuestImages {
            kernel: "/k".into(),
            initrd: "/i".into(),
        };
        let args = qemu_args(&opts, &images, Path::new("/d"));
        let joined = args.join(" ");
        assert!(joined.contains("-nodefaults"), "{joined}");
        assert!(
            joined.contains("memory-backend-memfd,id=mem,size=512M,share=on"),
            "{joined}"
        );
        let append = &args[args.iter().position(|a| a == "-append").expect("-append") + 1];
        assert!(
            append.contains("pvnet.ip=10.0.0.2/24 pvnet.mtu=9000"),
            "{append}"
        );
        assert_eq!(
            args[args.len() - 4..],
            tap_net_args("t0", "52:54:00:00:00:01")
        );
        assert!(!joined.contains("user"), "{joined}");
    }
}
