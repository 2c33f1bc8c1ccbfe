//! A port of several queues in the switch: one thread per queue, named after the port and
//! the queue, each receiving what its own queue brings, so the queues are served in
//! parallel; all of them start with the port (before the switch runs or while it does)
//! and end with it (deleted, or its device gone); the port stays one port to `pvnet ctl`
//! and its counters are the sum of its threads'. Frames from a two-pair guest's two
//! threads reach another two-pair guest on both its receive queues.

use std::collections::{BTreeSet, HashSet};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use pvnet::switch::open::{self, open_port};
use pvnet::switch::{NewPort, Removal, StatsHandle, Switch, SwitchConfig, SwitchControl};
use pvnet_core::frame::Frame;
use pvnet_core::offload::features::Features;
use pvnet_core::switch::counters::PortCounters;
use pvnet_core::wire::Start;
use pvnet_linux::netns::{in_netns, Netns};
use pvnet_linux::port::{Carrier, LateDrops, Port, RecvBufs, SendError};
use pvnet_linux::portspec::PortSpec;
use pvnet_linux::vhost_user::guest::FakeGuest;

const SECOND: Duration = Duration::from_secs(1);

/// Who received a batch: (queue, thread, thread name), one entry per batch.
type Receivers = Arc<Mutex<Vec<(usize, ThreadId, String)>>>;

/// A queue that notes which thread received each of its batches.
struct Noted {
    inner: Box<dyn Port + Send>,
    queue: usize,
    seen: Receivers,
}

impl AsFd for Noted {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl Port for Noted {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn features(&self) -> Features {
        self.inner.features()
    }
    fn set_features(&mut self, f: Features) -> io::Result<()> {
        self.inner.set_features(f)
    }
    fn features_may_change(&self) -> bool {
        self.inner.features_may_change()
    }
    fn start(&self) -> Start {
        self.inner.start()
    }
    fn vnet_hdr_len(&self) -> usize {
        self.inner.vnet_hdr_len()
    }
    fn recv_batch(&mut self, bufs: &mut RecvBufs) -> io::Result<usize> {
        let n = self.inner.recv_batch(bufs)?;
        if n > 0 {
            let t = std::thread::current();
            let name = t.name().unwrap_or_default().to_owned();
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.push((self.queue, t.id(), name));
        }
        Ok(n)
    }
    fn send(&mut self, hdr: &[u8], frame: &Frame<'_>) -> Result<(), SendError> {
        self.inner.send(hdr, frame)
    }
    fn flush(&mut self) -> LateDrops {
        self.inner.flush()
    }
    fn release(&mut self) {
        self.inner.release()
    }
    fn rx_super_frames(&self) -> bool {
        self.inner.rx_super_frames()
    }
    fn rx_batch(&self) -> usize {
        self.inner.rx_batch()
    }
    fn take_rx_drops(&mut self) -> u64 {
        self.inner.take_rx_drops()
    }
    fn carrier(&self) -> Option<Arc<Carrier>> {
        self.inner.carrier()
    }
    fn try_clone_sender(&self) -> io::Result<Option<Box<dyn Port + Send>>> {
        self.inner.try_clone_sender()
    }
}

/// A socket path of this test's own; its last part is short, so that the thread names
/// (`pvnet-NAME:Q`) fit in the 15 bytes the kernel keeps.
fn sock(tag: char) -> PathBuf {
    std::env::temp_dir().join(format!("{tag}{}", std::process::id() % 100_000))
}

fn spec(s: &str) -> PortSpec {
    s.parse().expect("port spec")
}

/// The names of this process's threads, as the kernel keeps them (`top -H`).
fn thread_names() -> BTreeSet<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|c| c.trim_end().to_owned())
        .collect()
}

/// The names of the threads of port `name` (a socket path: its last part) with `queues`
/// queues.
fn port_threads(name: &str, queues: usize) -> BTreeSet<String> {
    let base = name.rsplit('/').next().unwrap_or(name);
    (0..queues).map(|q| format!("pvnet-{base}:{q}")).collect()
}

/// Wait until `f` holds (five seconds at most).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + 5 * SECOND;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn counters(stats: &StatsHandle, name: &str) -> PortCounters {
    stats
        .snapshot()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, c)| c)
        .unwrap_or_default()
}

/// What [`Switch::run`] returns: every port's final counters.
type Finished = io::Result<Vec<(String, PortCounters)>>;

/// A switch running on a thread of its own; stopped when dropped.
struct Running {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Finished>>,
    control: SwitchControl,
    stats: StatsHandle,
}

impl Running {
    fn start(mut sw: Switch) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let (control, stats, flag) = (sw.control(), sw.stats(), stop.clone());
        let handle = std::thread::spawn(move || sw.run(&flag));
        Running {
            stop,
            handle: Some(handle),
            control,
            stats,
        }
    }

    fn finish(mut self) -> Vec<(String, PortCounters)> {
        self.stop.store(true, Ordering::Relaxed);
        let h = self.handle.take().expect("running");
        h.join().expect("switch thread").expect("switch run")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A broadcast frame of a protocol nobody coalesces, `seed` in its payload.
fn frame(src: [u8; 6], seed: u8) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend((0..200u16).map(|i| (i as u8).wrapping_mul(13) ^ seed));
    f
}

#[test]
fn each_queue_of_a_port_has_a_thread_of_its_own() {
    let (path_a, path_b, path_c) = (sock('a'), sock('b'), sock('c'));
    let mut sw = Switch::new(SwitchConfig::default()).expect("switch");
    // Port a: two queue pairs, each queue noting who receives from it.
    let spec_a = spec(&format!("vhost-user:{},queues=2", path_a.display()));
    let opened = open_port(&spec_a).expect("open port a");
    let seen = Receivers::default();
    let queues = opened
        .queues
        .into_iter()
        .enumerate()
        .map(|(queue, inner)| {
            Box::new(Noted {
                inner,
                queue,
                seen: seen.clone(),
            }) as Box<dyn Port + Send>
        })
        .collect();
    let a = opened.name.clone();
    sw.add_opened(NewPort::opened(
        &spec_a,
        open::OpenedPort { queues, ..opened },
    ))
    .expect("add a");
    let spec_b = spec(&format!("vhost-user:{},queues=2", path_b.display()));
    let b = sw
        .add_opened(NewPort::opened(
            &spec_b,
            open_port(&spec_b).expect("open port b"),
        ))
        .map(|_| spec_b.name())
        .expect("add b");
    let sw = Running::start(sw);

    // Both ports' queues have their threads, named after port and queue.
    let mut expected = port_threads(&a, 2);
    expected.extend(port_threads(&b, 2));
    eventually("a thread per queue", || {
        thread_names().is_superset(&expected)
    });
    // One port each to `pvnet ctl port list`, with its queues.
    let ports = sw.control.ports();
    assert_eq!(ports.len(), 2);
    assert!(ports.iter().all(|r| r.queues == 2), "{ports:?}");

    // Guest b takes frames on both of its receive queues; guest a sends on both of its
    // transmit queues (pair 0's is queue 1, pair 1's queue 3).
    let mut gb = FakeGuest::connect(&path_b, u64::MAX, 2, 256).expect("guest b");
    gb.post_rx_on(0, 64, 2048);
    gb.post_rx_on(2, 64, 2048);
    let mut ga = FakeGuest::connect(&path_a, u64::MAX, 2, 256).expect("guest a");
    let hdr = [0u8; 12];
    let per_queue = 20;
    for k in 0..per_queue {
        for q in [1, 3] {
            let f = frame([0x02, 0, 0, 0, 0, 0xa], (q * 100 + k) as u8);
            ga.post_tx(q, &[&hdr, &f]);
        }
    }
    // Everything arrives, and the port's counters are its two threads' summed.
    let total = 2 * per_queue as u64;
    eventually("a's frames counted", || {
        counters(&sw.stats, &a).rx_packets == total && counters(&sw.stats, &b).tx_packets == total
    });

    // Each queue was received by a thread of its own, the one named for it.
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let threads: HashSet<(usize, ThreadId, String)> = seen.into_iter().collect();
    let by_queue = |q: usize| -> Vec<(ThreadId, String)> {
        threads
            .iter()
            .filter(|t| t.0 == q)
            .map(|t| (t.1, t.2.clone()))
            .collect()
    };
    let (q0, q1) = (by_queue(0), by_queue(1));
    assert_eq!(q0.len(), 1, "one thread received from queue 0: {q0:?}");
    assert_eq!(q1.len(), 1, "one thread received from queue 1: {q1:?}");
    assert_ne!(q0[0].0, q1[0].0, "the two queues share a thread");
    let names: BTreeSet<String> = [q0[0].1.clone(), q1[0].1.clone()].into();
    assert_eq!(names, port_threads(&a, 2));

    // a's two threads send to b through handles on different queue pairs: b receives
    // on both of its receive queues.
    let r0 = gb.recv_frames_on(0, total as usize, Duration::from_millis(200));
    let r2 = gb.recv_frames_on(2, total as usize - r0.len(), SECOND);
    assert_eq!(r0.len() + r2.len(), total as usize);
    assert!(
        !r0.is_empty() && !r2.is_empty(),
        "b received {} frames on queue 0 and {} on queue 2",
        r0.len(),
        r2.len()
    );

    // A port added while the switch runs gets a thread per queue too.
    let added = sw
        .control
        .add_spec(&spec(&format!("vhost-user:{},queues=3", path_c.display())))
        .expect("add c");
    assert_eq!(added.queues, 3);
    let c_threads = port_threads(&added.name, 3);
    eventually("c's threads", || thread_names().is_superset(&c_threads));

    // Deleting a port ends all of its threads, and only those.
    sw.control.del(&a).expect("delete a");
    let a_threads = port_threads(&a, 2);
    eventually("a's threads to end", || {
        thread_names().is_disjoint(&a_threads)
    });
    let names = thread_names();
    assert!(names.is_superset(&port_threads(&b, 2)), "{names:?}");
    assert!(names.is_superset(&c_threads), "{names:?}");
    assert_eq!(
        sw.stats.removed(),
        vec![(Removal::DeviceGone, 0), (Removal::Deleted, 1)]
    );
    // What a's threads sent to b stays counted (a counter never goes down).
    assert_eq!(counters(&sw.stats, &b).tx_packets, total, "b after a left");
    drop(ga);
    drop(gb);
    let last = sw.finish();
    let names: Vec<&str> = last.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, [b.as_str(), added.name.as_str()]);
    assert_eq!(last[0].1.tx_packets, total, "b's final counters");
}

/// A multi-queue tap deleted under the switch: each of its threads finds the device
/// gone, the port is removed once, and all its threads end.
#[test]
fn a_multi_queue_device_that_goes_away_takes_all_its_threads() {
    pvnet_linux::testing::require_root("multi-queue taps in a namespace");
    let ns = Netns::create_unique("pvmq").expect("namespace");
    let tap = format!("mq{}", std::process::id() % 100_000);
    let mut sw = Switch::new(SwitchConfig::default()).expect("switch");
    let tap_spec = spec(&format!("tap:{tap},netns={},queues=2", ns.name()));
    let opened = open_port(&tap_spec).expect("open the tap");
    assert_eq!(opened.queues.len(), 2);
    sw.add_opened(NewPort::opened(&tap_spec, opened))
        .expect("add the tap");
    let path = sock('d');
    let other = spec(&format!("vhost-user:{}", path.display()));
    sw.add_opened(NewPort::opened(
        &other,
        open_port(&other).expect("open vhost-user"),
    ))
    .expect("add the other port");
    let sw = Running::start(sw);
    let tap_threads = port_threads(&tap, 2);
    eventually("the tap's threads", || {
        thread_names().is_superset(&tap_threads)
    });

    ns.run(&["link", "del", &tap]).expect("delete the tap");
    eventually("the tap's threads to end", || {
        thread_names().is_disjoint(&tap_threads)
    });
    eventually("the port removed", || sw.control.ports().len() == 1);
    assert_eq!(
        sw.stats.removed(),
        vec![(Removal::DeviceGone, 1), (Removal::Deleted, 0)],
        "removed once, though both its threads found it gone"
    );
    let last = sw.finish();
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(last[0].0, other.name());
}

/// Frames received per queue of each tap (`10 * side + queue`), from what [`Noted`]
/// queues saw.
fn frames_per_queue(seen: &Receivers) -> std::collections::BTreeMap<usize, u64> {
    let mut per = std::collections::BTreeMap::new();
    for (q, _, _) in seen.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        *per.entry(*q).or_insert(0) += 1;
    }
    per
}

/// TCP flows between two namespaces through two-queue taps: the kernel hashes each flow
/// to a queue, and the switch writes a flow's packets into the other tap on the queue of
/// the same number, where the tun driver steers the replies: the flows stay spread over
/// both queues, in both directions. (With every thread writing on queue 0, the tun flow
/// table pulled nearly every frame onto the queue 0 threads.)
#[test]
fn tcp_flows_stay_spread_over_the_queues_of_two_taps() {
    pvnet_linux::testing::require_root("taps in namespaces");
    let ns = [
        Netns::create_unique("pvmq").expect("namespace"),
        Netns::create_unique("pvmq").expect("namespace"),
    ];
    let pid = std::process::id() % 100_000;
    let taps = [format!("mqa{pid}"), format!("mqb{pid}")];
    let addrs = ["10.198.7.1", "10.198.7.2"];
    let mut sw = Switch::new(SwitchConfig::default()).expect("switch");
    let seen = Receivers::default();
    for side in 0..2 {
        let s = spec(&format!(
            "tap:{},netns={},queues=2",
            taps[side],
            ns[side].name()
        ));
        let opened = open_port(&s).expect("open tap");
        let queues = opened
            .queues
            .into_iter()
            .enumerate()
            .map(|(q, inner)| {
                Box::new(Noted {
                    inner,
                    queue: 10 * side + q,
                    seen: seen.clone(),
                }) as Box<dyn Port + Send>
            })
            .collect();
        sw.add_opened(NewPort::opened(&s, open::OpenedPort { queues, ..opened }))
            .expect("add tap");
        let dev = taps[side].as_str();
        ns[side]
            .run(&["addr", "add", &format!("{}/24", addrs[side]), "dev", dev])
            .expect("address");
        ns[side]
            .run(&["link", "set", "dev", dev, "up"])
            .expect("up");
    }
    let sw = Running::start(sw);

    // Many flows, so that the kernel's hash gives each queue a fair share: under 15 % of
    // the frames on a queue takes 4 flows of 32 or fewer on it, about once in 10^5 runs.
    // With every thread writing on queue 0 it was about 5 %: the first packets of each
    // flow, before the tun flow table steered it.
    const FLOWS: usize = 32;
    const CHUNK: usize = 64 * 1024;
    const ROUNDS: usize = 100;
    let listener = in_netns(ns[1].name(), || {
        std::net::TcpListener::bind((addrs[1], 5201))
    })
    .expect("listen");
    let server = std::thread::spawn(move || -> io::Result<u64> {
        let readers: Vec<_> = (0..FLOWS)
            .map(|_| {
                let (mut s, _) = listener.accept()?;
                s.set_read_timeout(Some(10 * SECOND))?;
                Ok(std::thread::spawn(move || {
                    std::io::copy(&mut s, &mut std::io::sink())
                }))
            })
            .collect::<io::Result<_>>()?;
        let mut total = 0;
        for r in readers {
            total += r
                .join()
                .map_err(|_| io::Error::other("reader panicked"))??;
        }
        Ok(total)
    });
    let to = std::net::SocketAddr::from(([10, 198, 7, 2], 5201));
    let mut flows: Vec<std::net::TcpStream> = in_netns(ns[0].name(), || {
        (0..FLOWS)
            .map(|_| std::net::TcpStream::connect_timeout(&to, 5 * SECOND))
            .collect()
    })
    .expect("connect");
    let chunk = vec![0x5a; CHUNK];
    for _ in 0..ROUNDS {
        for f in &mut flows {
            f.set_write_timeout(Some(10 * SECOND)).expect("timeout");
            std::io::Write::write_all(f, &chunk).expect("send");
        }
    }
    drop(flows);
    let received = server.join().expect("server thread").expect("server");
    assert_eq!(
        received,
        (FLOWS * ROUNDS * CHUNK) as u64,
        "every byte arrived"
    );

    let per = frames_per_queue(&seen);
    for side in 0..2 {
        let q0 = per.get(&(10 * side)).copied().unwrap_or(0);
        let q1 = per.get(&(10 * side + 1)).copied().unwrap_or(0);
        let least = q0.min(q1) as f64 / (q0 + q1).max(1) as f64;
        assert!(
            least >= 0.15,
            "tap {side}: {q0} frames on queue 0, {q1} on queue 1 ({per:?})"
        );
    }
    drop(sw);
}
