//! Named network namespaces for tests and oracles, removed when dropped.
//!
//! A [`Netns`] is created with `ip netns add`, so it is visible to `ip -n NAME …` and
//! `ip netns exec NAME …`, and bound at `/var/run/netns/NAME`. Code that must create
//! sockets or devices inside it runs through [`Netns::enter_and`], on a fresh thread that
//! switched its own network namespace with `setns(2)`; file descriptors opened there keep
//! pointing into the namespace and may be used from any thread afterwards.
//!
//! Dropping the guard runs `ip netns del NAME` (errors ignored). The namespace itself
//! disappears once nothing references it any more: devices whose fds are still open (a
//! tap) keep it alive until they are closed, so close those first.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace owned by this guard.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Create a new namespace named `PREFIX-PID-N` (N counts up per process, and past names
    /// left over by an earlier crashed process with the same pid).
    pub fn create_unique(prefix: &str) -> io::Result<Netns> {
        let pid = std::process::id();
        for _ in 0..64 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!("{prefix}-{pid}-{n}");
            if PathBuf::from("/var/run/netns").join(&name).exists() {
                continue;
            }
            run_command("ip", &["netns", "add", &name])?;
            return Ok(Netns { name });
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("no free namespace name with prefix {prefix:?}"),
        ))
    }

    /// The namespace's name (for `ip -n NAME`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mounted namespace file, `/var/run/netns/NAME`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    /// Run `ip -n NAME ARGS…` and return its standard output. A failure names the command
    /// and carries its standard error.
    pub fn run(&self, args: &[&str]) -> io::Result<String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_command("ip", &full)
    }

    /// Run `PROGRAM ARGS…` inside the namespace (`ip netns exec NAME PROGRAM ARGS…`), e.g.
    /// `sysctl`, and return its standard output.
    pub fn exec(&self, program: &str, args: &[&str]) -> io::Result<String> {
        let mut full = vec!["netns", "exec", self.name.as_str(), program];
        full.extend_from_slice(args);
        run_command("ip", &full)
    }

    /// Turn IPv6 off for every interface of the namespace, present and future. Done before
    /// any device is added, this keeps DAD, router solicitations and MLD reports out of
    /// captures and coalescing tests.
    pub fn disable_ipv6(&self) -> io::Result<()> {
        self.exec(
            "sysctl",
            &[
                "-q",
                "-w",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        )
        .map(|_| ())
    }

    /// Run `f` on a new thread whose network namespace is this one, and return its result.
    /// Sockets and tap fds opened by `f` belong to this namespace. A panic in `f` is
    /// propagated to the caller (so this guard, if owned up the stack, still drops).
    pub fn enter_and<F, T>(&self, f: F) -> io::Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let ns_file = File::open(self.path())
            .map_err(|e| sys::with_context(e, format_args!("open {}", self.path().display())))?;
        let name = &self.name;
        std::thread::scope(|scope| {
            let handle = scope.spawn(move || -> io::Result<T> {
                // SAFETY: setns only reads the fd, which `ns_file` keeps open; it changes the
                // namespace of this (new, private) thread only, which ends with `f`.
                let ret = unsafe { libc::setns(ns_file.as_raw_fd(), libc::CLONE_NEWNET) };
                sys::cvt(ret)
                    .map_err(|e| sys::with_context(e, format_args!("setns into {name}")))?;
                Ok(f())
            });
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Never panic here (we may already be unwinding): ignore every failure.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Run a command to completion; on failure return an error naming it with its stderr.
pub(crate) fn run_command(program: &str, args: &[&str]) -> io::Result<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| sys::with_context(e, format_args!("spawn {program}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}
