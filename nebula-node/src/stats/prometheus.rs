//! `stats.type: prometheus`: the metric list in the Prometheus text format, written with the
//! `prometheus-client` crate and served over HTTP at `stats.listen` + `stats.path`.
//!
//! Names as Go's bridge forms them: `<namespace>_<subsystem>_<go name with . and - as _>`, every
//! value a gauge whose help text is the Go name, the `handshakes` histogram as one gauge per
//! `type` label. Process metrics (`process_*`) stand in for Go's runtime metrics.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::metrics::{Metric, Value};
use super::peers::{CaSeries, PeerSeries};

/// Go's `flattenKey`: the characters a Prometheus name cannot hold become `_`.
pub fn flatten(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            ' ' | '.' | '-' | '=' => '_',
            c => c,
        })
        .collect()
}

/// Go's `BuildFQName` prefix: the non-empty parts joined by `_`.
fn prefix(namespace: &str, subsystem: &str) -> String {
    [namespace, subsystem]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("_")
}

/// The metric list at one scrape.
#[derive(Debug)]
struct NodeFamilies {
    metrics: Vec<Metric>,
    version: &'static str,
}

fn gauge<N: prometheus_client::encoding::EncodeGaugeValue + std::fmt::Debug + Send + Sync>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: N,
) -> std::fmt::Result {
    let g = ConstGauge::new(value);
    let m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(m)
}

impl Collector for NodeFamilies {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        for m in &self.metrics {
            let name = flatten(&m.name);
            match m.value {
                Value::Int(v) => gauge(&mut encoder, &name, &m.name, v)?,
                Value::Histogram(h) => {
                    let [_, p75, p95, p99, p999] = h.percentiles;
                    let mut family =
                        encoder.encode_descriptor(&name, &m.name, None, MetricType::Gauge)?;
                    for (label, v) in [
                        ("count", h.count as f64),
                        ("max", h.max as f64),
                        ("mean", h.mean),
                        ("min", h.min as f64),
                        ("perc75", p75),
                        ("perc95", p95),
                        ("perc99", p99),
                        ("perc999", p999),
                        ("stddev", h.stddev),
                        ("sum", h.sum as f64),
                        ("variance", h.variance),
                    ] {
                        ConstGauge::new(v).encode(family.encode_family(&[("type", label)])?)?;
                    }
                }
            }
        }
        let info = ConstGauge::new(1i64);
        let mut m = encoder.encode_descriptor(
            "info",
            "Version information for the Nebula binary",
            None,
            info.metric_type(),
        )?;
        info.encode(m.encode_family(&[("version", self.version), ("implementation", "rust")])?)
    }
}

/// The standard process metrics, from `/proc/self`.
#[derive(Debug)]
struct ProcessFamilies;

impl Collector for ProcessFamilies {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let Some(p) = process_stats() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(p.cpu_seconds);
        let m = encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            cpu.metric_type(),
        )?;
        cpu.encode(m)?;
        for (name, help, v) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                p.rss_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                p.vsize_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                p.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                p.max_fds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                p.threads,
            ),
        ] {
            gauge(&mut encoder, name, help, v)?;
        }
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            p.start_time_seconds,
        )
    }
}

struct ProcessStats {
    cpu_seconds: f64,
    rss_bytes: i64,
    vsize_bytes: i64,
    open_fds: i64,
    max_fds: i64,
    threads: i64,
    start_time_seconds: f64,
}

/// Reads `/proc/self/stat` and friends; `None` when they are unreadable.
fn process_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i - 3).and_then(|s| s.parse::<i64>().ok());
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1);
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    })?;
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<i64>().ok())
        })
        .unwrap_or(0);
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as i64)
        .unwrap_or(0);
    Some(ProcessStats {
        cpu_seconds: (num(14)? + num(15)?) as f64 / ticks,
        rss_bytes: num(24)?.saturating_mul(page),
        vsize_bytes: num(23)?,
        open_fds,
        max_fds,
        threads: num(20)?,
        start_time_seconds: boot + num(22)? as f64 / ticks,
    })
}

/// Per-peer and per-CA families (ours).
#[derive(Debug)]
struct PeerFamilies {
    peers: Vec<PeerSeries>,
    cas: Vec<CaSeries>,
}

impl Collector for PeerFamilies {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        type Get = fn(&PeerSeries) -> Option<f64>;
        type Count = fn(&PeerSeries) -> u64;
        let counters: [(&str, &str, Count); 4] = [
            (
                "peer_rx_bytes",
                "Bytes received from the peer (inner packets and control messages).",
                |p| p.traffic.rx_bytes,
            ),
            ("peer_tx_bytes", "Bytes sent to the peer.", |p| {
                p.traffic.tx_bytes
            }),
            ("peer_rx_packets", "Messages received from the peer.", |p| {
                p.traffic.rx_packets
            }),
            ("peer_tx_packets", "Messages sent to the peer.", |p| {
                p.traffic.tx_packets
            }),
        ];
        for (name, help, get) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for p in &self.peers {
                ConstCounter::new(get(p)).encode(family.encode_family(&[
                    ("peer", p.name.as_str()),
                    ("vpn_addr", p.vpn_addr.as_str()),
                ])?)?;
            }
        }
        let gauges: [(&str, &str, Get); 4] = [
            (
                "peer_rtt_seconds",
                "Last measured round trip to the peer (Nebula test messages).",
                |p| p.rtt_seconds,
            ),
            (
                "peer_relayed",
                "1 when the tunnel goes through a relay, 0 when direct.",
                |p| Some(if p.relayed { 1.0 } else { 0.0 }),
            ),
            (
                "peer_handshake_age_seconds",
                "Seconds since the tunnel's handshake.",
                |p| Some(p.handshake_age_seconds as f64),
            ),
            (
                "peer_cert_ttl_seconds",
                "Seconds until the peer's certificate expires.",
                |p| Some(p.cert_ttl_seconds as f64),
            ),
        ];
        for (name, help, get) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for p in &self.peers {
                if let Some(v) = get(p) {
                    ConstGauge::new(v).encode(family.encode_family(&[
                        ("peer", p.name.as_str()),
                        ("vpn_addr", p.vpn_addr.as_str()),
                    ])?)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "certificate_ca_ttl_seconds",
            "Seconds until each trusted CA certificate expires.",
            None,
            MetricType::Gauge,
        )?;
        for c in &self.cas {
            ConstGauge::new(c.ttl_seconds)
                .encode(family.encode_family(&[("ca", c.name.as_str())])?)?;
        }
        Ok(())
    }
}

/// The page a scrape gets, with per-peer series.
pub fn render_with_peers(
    metrics: Vec<Metric>,
    peers: &[PeerSeries],
    cas: &[CaSeries],
    namespace: &str,
    subsystem: &str,
) -> String {
    render_inner(metrics, Some((peers, cas)), namespace, subsystem)
}

/// The page a scrape gets (Go's set and process metrics only).
pub fn render(metrics: Vec<Metric>, namespace: &str, subsystem: &str) -> String {
    render_inner(metrics, None, namespace, subsystem)
}

fn render_inner(
    metrics: Vec<Metric>,
    peers: Option<(&[PeerSeries], &[CaSeries])>,
    namespace: &str,
    subsystem: &str,
) -> String {
    let p = prefix(namespace, subsystem);
    let mut node = if p.is_empty() {
        Registry::default()
    } else {
        Registry::with_prefix(p)
    };
    node.register_collector(Box::new(NodeFamilies {
        metrics,
        version: env!("CARGO_PKG_VERSION"),
    }));
    if let Some((peers, cas)) = peers {
        node.register_collector(Box::new(PeerFamilies {
            peers: peers.to_vec(),
            cas: cas.to_vec(),
        }));
    }
    let mut process = Registry::default();
    process.register_collector(Box::new(ProcessFamilies));
    let mut out = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail; a failing collector would leave a shorter page.
    let _ = prometheus_client::encoding::text::encode_registry(&mut out, &node);
    let _ = prometheus_client::encoding::text::encode_registry(&mut out, &process);
    let _ = prometheus_client::encoding::text::encode_eof(&mut out);
    out
}

/// Go's `stats.listen` form: `host:port`, or `:port` for every address.
pub fn listen_addr(listen: &str) -> io::Result<SocketAddr> {
    let spec = match listen.strip_prefix(':') {
        Some(port) => format!("[::]:{port}"),
        None => listen.to_string(),
    };
    spec.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no address for {listen:?}"),
        )
    })
}

/// Longest request head we read (a scrape's is a few hundred bytes).
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serve `path` on `listener` until `stop`, one connection at a time; `page` renders a scrape.
pub fn serve(listener: TcpListener, path: &str, stop: &AtomicBool, page: &dyn Fn() -> String) {
    // Non-blocking accept, polled, so `stop` is noticed within the poll interval.
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = answer(stream, path, page) {
                    tracing::debug!(error = %e, "stats: a scrape connection failed");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => {
                tracing::warn!(error = %e, "stats: accept failed");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// Read one request head and answer it: the page for `GET path`, else 404 or 405.
fn answer(mut stream: TcpStream, path: &str, page: &dyn Fn() -> String) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= MAX_REQUEST {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            );
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let target_path = target.split('?').next().unwrap_or("");
    if target_path != path {
        return respond(
            &mut stream,
            "404 Not Found",
            "text/plain",
            "404 page not found\n",
        );
    }
    match method {
        "GET" => respond(
            &mut stream,
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            &page(),
        ),
        "HEAD" => respond(&mut stream, "200 OK", "text/plain; version=0.0.4", ""),
        _ => respond(&mut stream, "405 Method Not Allowed", "text/plain", ""),
    }
}

fn respond(stream: &mut TcpStream, status: &str, ctype: &str, body: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::metrics::Kind;
    use nebula_core::stats::DurationSample;

    fn sample() -> Vec<Metric> {
        let mut d = DurationSample::default();
        d.record(1_000);
        d.record(3_000);
        vec![
            Metric {
                name: "hostmap.main.remoteIndexes".into(),
                kind: Kind::Gauge,
                value: Value::Int(3),
            },
            Metric {
                name: "udp.0.rcvbuf".into(),
                kind: Kind::Gauge,
                value: Value::Int(212_992),
            },
            Metric {
                name: "handshakes".into(),
                kind: Kind::Gauge,
                value: Value::Histogram(d.summary()),
            },
        ]
    }

    #[test]
    fn names_are_formed_as_go_forms_them() {
        let page = render(sample(), "nebula", "");
        assert!(
            page.contains("# HELP nebula_hostmap_main_remoteIndexes hostmap.main.remoteIndexes\n")
        );
        assert!(page.contains("# TYPE nebula_hostmap_main_remoteIndexes gauge\n"));
        assert!(page.contains("\nnebula_hostmap_main_remoteIndexes 3\n"));
        assert!(page.contains("\nnebula_udp_0_rcvbuf 212992\n"));
        assert!(page.contains("nebula_handshakes{type=\"count\"} 2"));
        assert!(page.contains("nebula_handshakes{type=\"mean\"} 2000"));
        assert!(page.contains("nebula_info{version="));
        assert!(page.contains("\nprocess_resident_memory_bytes "));
        assert!(page.contains("\nprocess_cpu_seconds_total "));
        let both = render(sample(), "ns", "sub");
        assert!(both.contains("\nns_sub_udp_0_rcvbuf 212992\n"));
        let none = render(sample(), "", "");
        assert!(none.contains("\nudp_0_rcvbuf 212992\n"));
        let sub_only = render(sample(), "", "sub");
        assert!(sub_only.contains("\nsub_udp_0_rcvbuf 212992\n"));
    }

    #[test]
    fn peers_get_labelled_series() {
        let peers = vec![PeerSeries {
            name: "h2".into(),
            vpn_addr: "10.0.0.2".into(),
            traffic: nebula_core::aead::Traffic {
                rx_packets: 3,
                rx_bytes: 300,
                tx_packets: 4,
                tx_bytes: 400,
            },
            rtt_seconds: Some(0.002),
            relayed: true,
            handshake_age_seconds: 9,
            cert_ttl_seconds: 86_400,
        }];
        let cas = vec![CaSeries {
            name: "ca".into(),
            ttl_seconds: 100,
        }];
        let page = render_with_peers(sample(), &peers, &cas, "nebula", "");
        let l = "{peer=\"h2\",vpn_addr=\"10.0.0.2\"}";
        assert!(
            page.contains(&format!("nebula_peer_rx_bytes_total{l} 300\n")),
            "{page}"
        );
        assert!(
            page.contains(&format!("nebula_peer_tx_packets_total{l} 4\n")),
            "{page}"
        );
        assert!(
            page.contains(&format!("nebula_peer_rtt_seconds{l} 0.002\n")),
            "{page}"
        );
        assert!(
            page.contains(&format!("nebula_peer_relayed{l} 1.0\n")),
            "{page}"
        );
        assert!(
            page.contains("nebula_certificate_ca_ttl_seconds{ca=\"ca\"} 100\n"),
            "{page}"
        );
        // Without peers (limit 0) the families are there, empty.
        let none = render_with_peers(sample(), &[], &cas, "nebula", "");
        assert!(!none.contains("peer=\""), "{none}");
    }

    #[test]
    fn listen_forms() {
        assert_eq!(
            listen_addr("127.0.0.1:8080").expect("addr"),
            "127.0.0.1:8080".parse().expect("sa")
        );
        assert_eq!(listen_addr(":9").expect("addr").port(), 9);
        assert!(listen_addr("nonsense").is_err());
    }

    /// The server answers its path with the page, other paths with 404, other methods with
    /// 405, an endless header with 431, and stops when asked.
    #[test]
    fn serves_the_path_and_nothing_else() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = AtomicBool::new(false);
        let ask = |req: &[u8]| -> String {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(req).expect("write");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        };
        std::thread::scope(|sc| {
            sc.spawn(|| serve(listener, "/metrics", &stop, &|| "page\n".to_string()));
            let ok = ask(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
            assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
            assert!(ok.ends_with("\r\n\r\npage\n"), "{ok}");
            assert!(ask(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n").contains(" 200 OK"));
            assert!(ask(b"GET /other HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
            assert!(ask(b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
            let huge = vec![b'a'; MAX_REQUEST + 10];
            assert!(ask(&huge).starts_with("HTTP/1.1 431"));
            stop.store(true, Ordering::Release);
        });
    }
}
