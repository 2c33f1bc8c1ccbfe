//! The switch side of the control socket: a listener thread, one short-lived thread per
//! connection, requests handed to a [`Handler`]. Nothing here touches the data path: a
//! client that sends garbage, too much, half a line or never reads its answer costs a
//! thread until its timeout, and forwarding goes on.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use pvnet_linux::epoll::Epoll;

use super::proto::{Request, Response, MAX_REQUEST};

/// What answers requests: the running switch.
pub trait Handler: Send + Sync + 'static {
    /// Carry out one request.
    fn handle(&self, req: Request) -> Response;
}

/// Connections served at once; more are told to come back later.
const MAX_CONNECTIONS: usize = 16;
/// How long a connection may take to send a whole request line.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an answer may take to be read by its client.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// A listening control socket; stopped and its file removed when dropped.
#[derive(Debug)]
pub struct CtlServer {
    path: PathBuf,
    /// Device and inode of the socket file we created: only that file is removed.
    id: (u64, u64),
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Bind the control socket at `path`, mode 0600. Refuses when a live switch answers
/// there or the path is something other than a socket; takes over a stale socket.
pub fn bind(path: &Path) -> Result<(UnixListener, (u64, u64)), String> {
    let shown = path.display();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)
            .map_err(|e| format!("--ctl {shown}: cannot create {}: {e}", dir.display()))?;
    }
    match fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(format!(
                "--ctl {shown}: exists and is not a socket; not replacing it"
            ))
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(format!(
                    "--ctl {shown}: another pvnet switch is running there (`pvnet ctl --ctl \
                     {shown} port list` shows it); stop it or give this one another --ctl PATH"
                ))
            }
            // Nobody listens: a switch that did not exit cleanly left it. Take it over.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!("taking over the stale control socket {shown}");
            }
            Err(e) => return Err(format!("--ctl {shown}: cannot check the socket there: {e}")),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("--ctl {shown}: {e}")),
    }
    // Bind under a private name, restrict it, then move it into place: the socket is
    // never reachable with looser permissions, and a stale one is replaced atomically.
    let name = path
        .file_name()
        .ok_or_else(|| format!("--ctl {shown}: not a file path"))?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(|e| format!("--ctl {shown}: bind: {e}"))?;
    let placed = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
        .and_then(|()| fs::rename(&tmp, path))
        .and_then(|()| fs::metadata(path));
    match placed {
        Ok(m) => Ok((listener, (m.dev(), m.ino()))),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(format!("--ctl {shown}: {e}"))
        }
    }
}

/// A control socket bound and listening, not served yet: connections wait in its
/// backlog. Bound first, so that a switch that cannot have its socket fails before it
/// opens any port.
#[derive(Debug)]
pub struct Bound {
    /// The listener, its path and the socket's identity; taken when served.
    inner: Option<(UnixListener, PathBuf, (u64, u64))>,
}

impl Bound {
    /// Bind `path`: see [`bind`].
    pub fn new(path: &Path) -> Result<Bound, String> {
        let (listener, id) = bind(path)?;
        Ok(Bound {
            inner: Some((listener, path.to_owned(), id)),
        })
    }

    /// Serve `handler` on a thread of its own.
    pub fn serve(mut self, handler: Arc<dyn Handler>) -> Result<CtlServer, String> {
        let Some((listener, path, id)) = self.inner.take() else {
            return Err("control socket served twice".to_owned());
        };
        let fail = |e: io::Error| {
            let _ = fs::remove_file(&path);
            format!("--ctl {}: {e}", path.display())
        };
        listener.set_nonblocking(true).map_err(fail)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("pvnet-ctl".into())
            .spawn(move || accept_loop(listener, handler, &flag))
            .map_err(fail)?;
        Ok(CtlServer {
            path,
            id,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        // Not served after all (the switch failed to start): leave no socket behind.
        if let Some((_, path, id)) = self.inner.take() {
            remove_if_ours(&path, id);
        }
    }
}

/// Remove the socket at `path` if it is still the one we created.
fn remove_if_ours(path: &Path, id: (u64, u64)) {
    // Another switch may have taken the path over since: leave its socket alone.
    if let Ok(m) = fs::symlink_metadata(path) {
        if (m.dev(), m.ino()) == id {
            let _ = fs::remove_file(path);
        }
    }
}

impl CtlServer {
    /// Bind `path` (see [`bind`]) and serve `handler` on a thread of its own.
    pub fn start(path: &Path, handler: Arc<dyn Handler>) -> Result<CtlServer, String> {
        Bound::new(path)?.serve(handler)
    }

    /// Where it listens.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for CtlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        remove_if_ours(&self.path, self.id);
    }
}

fn accept_loop(listener: UnixListener, handler: Arc<dyn Handler>, stop: &AtomicBool) {
    // Woken by a connection or every 200 ms to look at the stop flag.
    let mut epoll = match Epoll::new(1).and_then(|e| e.add(&listener, 0).map(|()| e)) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("control socket: epoll: {e}; not serving it");
            return;
        }
    };
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        match epoll.wait(Some(Duration::from_millis(200))) {
            Ok(ready) => {
                if ready.count() == 0 {
                    continue;
                }
            }
            Err(e) => {
                tracing::warn!("control socket: epoll: {e}");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        }
        loop {
            let stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!("control socket: accept: {e}");
                    break;
                }
            };
            if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                active.fetch_sub(1, Ordering::AcqRel);
                let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
                let _ = answer(
                    &stream,
                    &Response::err("too many control connections at once; try again"),
                );
                continue;
            }
            let (handler, active) = (handler.clone(), active.clone());
            let spawned = std::thread::Builder::new()
                .name("pvnet-ctl-conn".into())
                .spawn(move || {
                    if let Err(e) = serve(stream, &*handler) {
                        tracing::debug!("control connection: {e}");
                    }
                    active.fetch_sub(1, Ordering::AcqRel);
                });
            if let Err(e) = spawned {
                tracing::warn!("control socket: cannot start a connection thread: {e}");
            }
        }
    }
}

fn answer(mut stream: &UnixStream, resp: &Response) -> io::Result<()> {
    let mut line = serde_json::to_vec(resp).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)
}

/// Serve one connection: requests one per line until the client closes, errs or stalls.
fn serve(stream: UnixStream, handler: &dyn Handler) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = Vec::with_capacity(512);
    loop {
        line.clear();
        let limit = u64::try_from(MAX_REQUEST).unwrap_or(u64::MAX);
        let n = match (&mut reader).take(limit).read_until(b'\n', &mut line) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                let _ = answer(
                    &stream,
                    &Response::err(format!(
                        "no complete request line within {} s",
                        READ_TIMEOUT.as_secs()
                    )),
                );
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') {
            let why = if n >= MAX_REQUEST {
                format!("request longer than {MAX_REQUEST} bytes")
            } else {
                "request line not terminated by a newline".to_owned()
            };
            let _ = answer(&stream, &Response::err(why));
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let resp = match serde_json::from_str::<Request>(text) {
            Ok(req) => handler.handle(req),
            Err(e) => Response::err(format!("not a request ({e}); see docs/ctl.md")),
        };
        answer(&stream, &resp)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    impl Handler for Echo {
        fn handle(&self, req: Request) -> Response {
            Response::ok(serde_json::to_value(req).unwrap_or_default())
        }
    }

    #[test]
    fn a_live_socket_is_refused_a_stale_one_taken_over_and_ours_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run").join("ctl.sock");
        let first = CtlServer::start(&path, Arc::new(Echo)).expect("first");
        let mode = fs::metadata(&path).expect("socket").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let err = CtlServer::start(&path, Arc::new(Echo)).expect_err("second");
        assert!(
            err.contains("another pvnet switch is running there"),
            "{err}"
        );
        drop(first);
        assert!(!path.exists(), "removed on exit");

        // A switch that died left its socket: nobody listens, so it is taken over.
        drop(UnixListener::bind(&path).expect("stale socket"));
        assert!(path.exists());
        let again = CtlServer::start(&path, Arc::new(Echo)).expect("takes over");
        let mut s = UnixStream::connect(&path).expect("connect");
        s.write_all(b"{\"cmd\":\"version\"}\n").expect("write");
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).expect("answer");
        assert_eq!(line, "{\"ok\":true,\"result\":{\"cmd\":\"version\"}}\n");
        drop(again);

        // Whatever is not a socket is left alone.
        fs::write(&path, "precious").expect("file");
        let err = CtlServer::start(&path, Arc::new(Echo)).expect_err("not a socket");
        assert!(err.contains("not a socket"), "{err}");
        assert_eq!(fs::read_to_string(&path).expect("file"), "precious");
    }

    #[test]
    fn a_socket_bound_but_never_served_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ctl.sock");
        let bound = Bound::new(&path).expect("bind");
        assert!(path.exists());
        drop(bound);
        assert!(!path.exists());
    }
}
