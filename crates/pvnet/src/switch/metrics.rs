//! `--metrics ADDR`: the switch's counters in the Prometheus text format (version 0.0.4),
//! served at `GET /metrics` by `tiny_http` on a thread of its own ([`MetricsServer`]).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// `Content-Type` of the Prometheus text format the counters are rendered in.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Makes the text a scrape returns.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// How long the server thread waits for a request before looking at its stop flag: the
/// most a drop waits for it, besides a response being written.
const POLL: Duration = Duration::from_millis(100);
/// How long writing a response may block on a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause before listening again after the server stopped accepting (e.g. out of fds).
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// A running metrics endpoint; stopped and joined when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Bind `addr` and answer `GET /metrics` with `render()` (404 for anything else) until
    /// dropped.
    pub fn start(addr: &str, render: Render) -> io::Result<MetricsServer> {
        let context = |e: io::Error| io::Error::new(e.kind(), format!("--metrics {addr}: {e}"));
        let listener = TcpListener::bind(addr).map_err(context)?;
        // tiny_http owns the sockets it accepts; they inherit this from the listener.
        pvnet_linux::sys::set_send_timeout(&listener, WRITE_TIMEOUT).map_err(context)?;
        let local = listener.local_addr().map_err(context)?;
        // A second handle, to listen again should tiny_http's accept thread give up.
        let spare = listener.try_clone().map_err(context)?;
        let server = serve_on(listener).map_err(context)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("pvnet-metrics".into())
            .spawn(move || run(server, spare, &render, &flag))
            .map_err(context)?;
        Ok(MetricsServer {
            addr: local,
            stop,
            thread: Some(thread),
        })
    }

    /// The address actually bound (port 0 picks one).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_on(listener: TcpListener) -> io::Result<tiny_http::Server> {
    tiny_http::Server::from_listener(listener, None).map_err(|e| io::Error::other(e.to_string()))
}

/// The server thread: answer requests until `stop`. Dropping the `tiny_http::Server` on
/// the way out stops its accept thread.
fn run(mut server: tiny_http::Server, spare: TcpListener, render: &Render, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match server.recv_timeout(POLL) {
            Ok(Some(request)) => respond(request, render),
            Ok(None) => {}
            Err(e) => {
                // tiny_http's accept thread ends on any accept error (EMFILE, …): a switch
                // that runs for months listens again rather than go dark.
                tracing::warn!("metrics endpoint: accept failed: {e}; listening again");
                let again = spare.try_clone().and_then(serve_on);
                match again {
                    Ok(s) => server = s,
                    Err(e) => tracing::warn!("metrics endpoint: {e}"),
                }
                let until = std::time::Instant::now() + RESTART_PAUSE;
                while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < until {
                    std::thread::sleep(POLL);
                }
            }
        }
    }
}

fn respond(request: tiny_http::Request, render: &Render) {
    let url = request.url();
    let is_metrics = url == "/metrics" || url.starts_with("/metrics?");
    let result = if *request.method() == tiny_http::Method::Get && is_metrics {
        let mut response = tiny_http::Response::from_string(render());
        if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE) {
            response.add_header(h);
        }
        request.respond(response)
    } else {
        request.respond(
            tiny_http::Response::from_string("not found: try GET /metrics\n").with_status_code(404),
        )
    };
    if let Err(e) = result {
        tracing::debug!("metrics response: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;

    /// Send `request` to `addr` and read the whole response (the server closes HTTP/1.0).
    fn fetch(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(request.as_bytes()).expect("request");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("response");
        out
    }

    #[test]
    fn server_answers_metrics_and_404_over_loopback() {
        let scrapes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = scrapes.clone();
        let render: Render = Arc::new(move || {
            let n = seen.fetch_add(1, Ordering::Relaxed) + 1;
            format!("pvnet_port_rx_packets_total{{port=\"pa\"}} {n}\n")
        });
        let server = MetricsServer::start("127.0.0.1:0", render).expect("start");
        let addr = server.local_addr();
        assert!(addr.ip().is_loopback() && addr.port() != 0);

        let resp = fetch(addr, "GET /metrics HTTP/1.0\r\n\r\n");
        assert!(resp.starts_with("HTTP/1.0 200"), "{resp}");
        let (head, body) = resp.split_once("\r\n\r\n").expect("head and body");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-type: {CONTENT_TYPE}")),
            "{head}"
        );
        assert!(
            body.contains("pvnet_port_rx_packets_total{port=\"pa\"} 1\n"),
            "{body}"
        );
        // Rendered per scrape, not once.
        let resp = fetch(
            addr,
            "GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(
            resp.contains("pvnet_port_rx_packets_total{port=\"pa\"} 2\n"),
            "{resp}"
        );

        for bad in [
            "GET / HTTP/1.0\r\n\r\n",
            "GET /metricsx HTTP/1.0\r\n\r\n",
            "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
        ] {
            let resp = fetch(addr, bad);
            assert!(resp.starts_with("HTTP/1.0 404"), "{bad:?}: {resp}");
        }
        assert_eq!(scrapes.load(Ordering::Relaxed), 2);

        let start = Instant::now();
        drop(server);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "drop took {:?}",
            start.elapsed()
        );
        // The listener closes once tiny_http's accept thread has seen the stop.
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(addr).is_ok() {
            assert!(Instant::now() < deadline, "still listening after drop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn drop_does_not_hang_on_a_client_that_never_reads() {
        // Far more than the socket buffers of both ends hold.
        let big: Render = Arc::new(|| "# x\n".repeat(16 << 20));
        let server = MetricsServer::start("127.0.0.1:0", big).expect("start");
        let mut s = TcpStream::connect(server.local_addr()).expect("connect");
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
            .expect("request");
        // Let the server start writing, then stop it while the client reads nothing.
        std::thread::sleep(Duration::from_millis(300));
        let (done, dropped) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(server);
            let _ = done.send(());
        });
        // The write gives up after WRITE_TIMEOUT; without it the drop would never return.
        let limit = WRITE_TIMEOUT + Duration::from_secs(3);
        assert!(
            dropped.recv_timeout(limit).is_ok(),
            "drop still blocked after {limit:?}"
        );
        drop(s);
    }

    #[test]
    fn a_busy_address_is_named() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr").to_string();
        let err = MetricsServer::start(&addr, Arc::new(String::new)).expect_err("in use");
        assert!(
            err.to_string().starts_with(&format!("--metrics {addr}: ")),
            "{err}"
        );
    }
}
