//! `--metrics ADDR`: the switch's counters in the Prometheus text format (version 0.0.4),
//! encoded by `prometheus-client` ([`encode`]) and served at `GET /metrics` by `tiny_http`
//! on a thread of its own ([`MetricsServer`]).
//!
//! Every per-port series has a `port` label: `pvnet_port_<counter>_total{port}` for each
//! counter of [`PortCounters`] and `pvnet_port_drops_total{port,cause}`, and for vhost-user
//! ports `pvnet_port_guest_errors_total{port,cause}` (what the guest did wrong, from
//! [`SwitchMetrics::guest_errors`]). The switch-level
//! series are `pvnet_port_removed_total{cause}` and the gauges `pvnet_mac_table_entries`
//! and `pvnet_mac_table_capacity`, from [`SwitchMetrics`].
//!
//! [`PortCounters::removed`] has no series of its own: `pvnet_port_removed_total` is the
//! switch-level family by cause, which has to outlive the ports it counts, and one name
//! cannot carry two families. Whoever fills [`SwitchMetrics::ports_removed`] counts them.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use pvnet_core::switch::counters::{DropCause, PortCounters, COUNTERS};

/// `Content-Type` of what [`encode`] returns.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// What the switch as a whole reports, besides its ports' counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwitchMetrics {
    /// Ports taken out of the switch, by cause (the `cause` label value).
    pub ports_removed: Vec<(String, u64)>,
    /// MAC addresses in the learning table now.
    pub mac_entries: u64,
    /// Most MAC addresses the learning table holds.
    pub mac_capacity: u64,
    /// Per vhost-user port: what its guest did wrong, by cause.
    pub guest_errors: Vec<(String, Vec<(&'static str, u64)>)>,
}

/// The counters as they were when [`encode`] was called: `prometheus-client` asks a
/// collector for its series at encoding time, which suits counters that live in the switch
/// threads rather than in the registry.
#[derive(Debug)]
struct Snapshot {
    ports: Vec<(String, PortCounters)>,
    switch: SwitchMetrics,
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, get) in COUNTERS {
            let name = format!("pvnet_port_{name}");
            let mut family = enc.encode_descriptor(&name, help, None, MetricType::Counter)?;
            for (port, c) in &self.ports {
                let labels = [("port", port.as_str())];
                ConstCounter::new(get(c)).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut drops = enc.encode_descriptor(
            "pvnet_port_drops",
            "Frames dropped, by cause.",
            None,
            MetricType::Counter,
        )?;
        for (port, c) in &self.ports {
            for cause in DropCause::ALL {
                let labels = [("port", port.as_str()), ("cause", cause.as_str())];
                ConstCounter::new(c.drops_of(cause)).encode(drops.encode_family(&labels)?)?;
            }
        }
        let mut guest = enc.encode_descriptor(
            "pvnet_port_guest_errors",
            "Descriptor chains a guest handed over that were refused, and queues stopped, \
             by cause (vhost-user ports).",
            None,
            MetricType::Counter,
        )?;
        for (port, causes) in &self.switch.guest_errors {
            for (cause, n) in causes {
                let labels = [("port", port.as_str()), ("cause", *cause)];
                ConstCounter::new(*n).encode(guest.encode_family(&labels)?)?;
            }
        }
        let mut removed = enc.encode_descriptor(
            "pvnet_port_removed",
            "Ports taken out of the switch, by cause.",
            None,
            MetricType::Counter,
        )?;
        for (cause, n) in &self.switch.ports_removed {
            let labels = [("cause", cause.as_str())];
            ConstCounter::new(*n).encode(removed.encode_family(&labels)?)?;
        }
        let gauges = [
            (
                "pvnet_mac_table_entries",
                "MAC addresses in the learning table.",
                self.switch.mac_entries,
            ),
            (
                "pvnet_mac_table_capacity",
                "Most MAC addresses the learning table holds.",
                self.switch.mac_capacity,
            ),
        ];
        for (name, help, v) in gauges {
            ConstGauge::new(v).encode(enc.encode_descriptor(
                name,
                help,
                None,
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
    }
}

/// The Prometheus text exposition of `ports`' counters and the switch-level `switch`
/// values (see the module documentation for the series), to serve as [`CONTENT_TYPE`].
pub fn encode(ports: &[(String, PortCounters)], switch: &SwitchMetrics) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot {
        ports: ports.to_vec(),
        switch: switch.clone(),
    }));
    let mut out = String::new();
    // Only the writer can fail, and a String does not.
    let _ = prometheus_text::encode(&mut out, &registry);
    out
}

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
    use std::collections::BTreeMap;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;

    /// One sample line of the text format: name, labels (`\"`, `\\`, `\n` unescaped), value.
    type Sample = (String, BTreeMap<String, String>, u64);

    /// Parse the text exposition into its samples and its `# TYPE` lines, failing on any
    /// line that is neither (so a malformed line fails the test).
    fn parse(text: &str) -> (Vec<Sample>, BTreeMap<String, String>) {
        let mut samples = Vec::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').expect("TYPE name type");
                assert!(
                    types.insert(name.to_owned(), ty.to_owned()).is_none(),
                    "family {name} declared twice"
                );
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample: series value");
            let value: u64 = value.parse().expect("integer value");
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("closing brace");
                    (name.to_owned(), parse_labels(body))
                }
            };
            samples.push((name, labels, value));
        }
        (samples, types)
    }

    fn parse_labels(body: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut chars = body.chars().peekable();
        while chars.peek().is_some() {
            let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
            assert_eq!(chars.next(), Some('"'), "label value opens with a quote");
            let mut value = String::new();
            loop {
                match chars.next().expect("unterminated label value") {
                    '"' => break,
                    '\\' => match chars.next().expect("escape") {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    c => value.push(c),
                }
            }
            assert!(out.insert(key, value).is_none(), "label repeated");
            if chars.peek() == Some(&',') {
                chars.next();
            }
        }
        out
    }

    fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut found = samples.iter().filter(|(n, l, _)| n == name && *l == want);
        let first = found.next().map(|s| s.2);
        assert!(found.next().is_none(), "{name} {labels:?} appears twice");
        first
    }

    fn counters(seed: u64) -> PortCounters {
        let mut c = PortCounters {
            rx_packets: seed + 1,
            rx_bytes: seed + 2,
            tx_packets: seed + 3,
            tx_bytes: seed + 4,
            gso_rx: seed + 5,
            gso_tx: seed + 6,
            segments: seed + 7,
            csum_completed: seed + 8,
            linearized: seed + 9,
            gro_coalesced: seed + 10,
            gso_rejected: seed + 11,
            gso_segmented: seed + 12,
            drops: [0; DropCause::COUNT],
        };
        for (i, d) in c.drops.iter_mut().enumerate() {
            *d = seed * 100 + i as u64;
        }
        c
    }

    #[test]
    fn encode_gives_every_counter_its_port_and_cause() {
        let weird = "we\"ird\\\n";
        let ports = vec![
            ("tap0".to_owned(), counters(1000)),
            (weird.to_owned(), counters(2000)),
        ];
        let switch = SwitchMetrics {
            ports_removed: vec![("device_gone".into(), 3), ("deleted".into(), 5)],
            mac_entries: 17,
            mac_capacity: 4096,
            guest_errors: vec![(
                "vm0".into(),
                vec![("broken_chain", 4), ("outside_memory", 0)],
            )],
        };
        let text = encode(&ports, &switch);
        let (samples, types) = parse(&text);

        for (port, c) in &ports {
            let label = [("port", port.as_str())];
            for (family, _, get) in COUNTERS {
                let name = format!("pvnet_port_{family}_total");
                assert_eq!(value(&samples, &name, &label), Some(get(c)), "{name}");
                assert_eq!(types.get(&name).map(String::as_str), Some("counter"));
            }
            for cause in DropCause::ALL {
                let labels = [("port", port.as_str()), ("cause", cause.as_str())];
                assert_eq!(
                    value(&samples, "pvnet_port_drops_total", &labels),
                    Some(c.drops_of(cause)),
                    "{port:?} {cause:?}"
                );
            }
        }
        // The names the core's renderer gave, spelled out so that a rename shows here.
        for name in [
            "pvnet_port_rx_packets_total",
            "pvnet_port_rx_bytes_total",
            "pvnet_port_tx_packets_total",
            "pvnet_port_tx_bytes_total",
            "pvnet_port_gso_rx_total",
            "pvnet_port_gso_tx_total",
            "pvnet_port_segments_total",
            "pvnet_port_csum_completed_total",
            "pvnet_port_linearized_total",
            "pvnet_port_gro_coalesced_total",
            "pvnet_port_gso_rejected_total",
            "pvnet_port_gso_segmented_total",
            "pvnet_port_drops_total",
        ] {
            assert_eq!(
                types.get(name).map(String::as_str),
                Some("counter"),
                "{name}"
            );
        }
        assert_eq!(
            value(
                &samples,
                "pvnet_port_removed_total",
                &[("cause", "device_gone")]
            ),
            Some(3)
        );
        assert_eq!(
            value(
                &samples,
                "pvnet_port_removed_total",
                &[("cause", "deleted")]
            ),
            Some(5)
        );
        assert_eq!(
            types.get("pvnet_port_removed_total").map(String::as_str),
            Some("counter")
        );
        assert_eq!(value(&samples, "pvnet_mac_table_entries", &[]), Some(17));
        assert_eq!(value(&samples, "pvnet_mac_table_capacity", &[]), Some(4096));
        for g in ["pvnet_mac_table_entries", "pvnet_mac_table_capacity"] {
            assert_eq!(types.get(g).map(String::as_str), Some("gauge"), "{g}");
        }
        let vm = |cause| [("port", "vm0"), ("cause", cause)];
        let guest = "pvnet_port_guest_errors_total";
        assert_eq!(value(&samples, guest, &vm("broken_chain")), Some(4));
        assert_eq!(value(&samples, guest, &vm("outside_memory")), Some(0));
        assert_eq!(types.get(guest).map(String::as_str), Some("counter"));
        // Nothing else: 12 counters and 9 causes per port, 2 guest error causes, 2
        // removal causes, 2 gauges.
        assert_eq!(
            samples.len(),
            2 * (12 + DropCause::COUNT) + 2 + 2 + 2,
            "{text}"
        );
        assert!(text.contains("# HELP pvnet_port_drops_total Frames dropped, by cause.\n"));
    }

    #[test]
    fn encode_without_ports_keeps_the_switch_series() {
        let text = encode(&[], &SwitchMetrics::default());
        let (samples, types) = parse(&text);
        assert_eq!(value(&samples, "pvnet_mac_table_entries", &[]), Some(0));
        assert_eq!(samples.len(), 2, "{text}");
        assert!(types.contains_key("pvnet_port_rx_packets_total"));
    }

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
            let c = PortCounters {
                rx_packets: n,
                ..PortCounters::default()
            };
            encode(&[("pa".into(), c)], &SwitchMetrics::default())
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
