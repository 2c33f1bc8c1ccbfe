//! Network namespaces: running code inside an existing one, and named namespaces for
//! tests and oracles, removed when dropped.
//!
//! Code that must create sockets or devices inside a namespace runs through
//! [`in_netns`] (a namespace by name), [`run_in`] (by path) or [`Netns::enter_and`], on a
//! fresh thread that switched its own network namespace with `setns(2)`; file descriptors
//! opened there keep pointing into the namespace and may be used from any thread
//! afterwards. The calling thread, and every other thread, stay where they are.
//!
//! A [`Netns`] is created with `ip netns add`, so it is visible to `ip -n NAME …` and
//! `ip netns exec NAME …`, and bound at `/var/run/netns/NAME`. Dropping the guard runs
//! `ip netns del NAME` (errors ignored). The namespace itself disappears once nothing
//! references it any more: devices whose fds are still open (a tap) keep it alive until
//! they are closed, so close those first.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Where `ip netns` binds the namespace named `name`: `/var/run/netns/NAME`.
pub fn path(name: &str) -> PathBuf {
    Path::new("/var/run/netns").join(name)
}

/// Run `f` on a new thread that entered the existing network namespace `name` (as
/// `ip netns exec NAME` does), and return its result; a panic in `f` is propagated.
///
/// A namespace that does not exist is a `NotFound` error saying how to create it; a
/// refused `setns` keeps its errno (see [`crate::sys::errno`]).
pub fn in_netns<F, T>(name: &str, f: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send,
    T: Send,
{
    let ns_path = path(name);
    if !ns_path.exists() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "network namespace {name:?} does not exist ({} missing); create it with \
                 `ip netns add {name}`",
                ns_path.display()
            ),
        ));
    }
    run_in(&ns_path, f)?
}

/// Run `f` on a new thread that entered the network namespace bound at `ns_path` (a file
/// under `/var/run/netns`, or `/proc/PID/ns/net`), and return its result; a panic in `f`
/// is propagated. Errors to open the file or enter the namespace name the path.
pub fn run_in<F, T>(ns_path: &Path, f: F) -> io::Result<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let ns_file = File::open(ns_path)
        .map_err(|e| sys::with_context(e, format_args!("open {}", ns_path.display())))?;
    std::thread::scope(|scope| {
        let handle = scope.spawn(move || -> io::Result<T> {
            enter(&ns_file).map_err(|e| {
                sys::with_context(
                    e,
                    format_args!("setns into network namespace {}", ns_path.display()),
                )
            })?;
            Ok(f())
        });
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Move the calling thread into the network namespace `ns` refers to (`setns(2)` with
/// `CLONE_NEWNET`): the one place pvnet calls it. Only ever called on a thread that
/// [`run_in`] spawned for this and that ends with its closure, so no thread of a pool or
/// of the caller is left in a namespace it does not expect.
fn enter(ns: &File) -> io::Result<()> {
    use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};
    move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))?;
    Ok(())
}

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
            if path(&name).exists() {
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
        path(&self.name)
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
        run_in(&self.path(), f)
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
