//! `stats.type: graphite`: the metric list as Graphite plaintext lines (`<prefix>.<name>.<field>
//! <value> <unix time>`), in Go's format, sent over TCP to `stats.host` every `stats.interval`.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::metrics::{Kind, Metric, Value};
use nebula_core::stats::PERCENTILES;

/// Go's percentile keys: `p × 100` without its decimal point (0.999 → `999`).
const PERCENTILE_KEYS: [&str; 5] = ["50", "75", "95", "99", "999"];

/// The lines for one flush. `interval` gives the `count_ps` rate of counters, as Go computes it
/// (the count divided by the flush interval in seconds).
pub fn lines(metrics: &[Metric], prefix: &str, interval: Duration, now_unix: i64) -> String {
    let secs = interval.as_secs_f64().max(f64::MIN_POSITIVE);
    let mut out = String::with_capacity(metrics.len() * 64);
    for m in metrics {
        let name = format!("{prefix}.{}", m.name);
        // Writing to a String cannot fail.
        let _ = match (m.kind, m.value) {
            (Kind::Counter, Value::Int(v)) => writeln!(out, "{name}.count {v} {now_unix}")
                .and_then(|_| writeln!(out, "{name}.count_ps {:.2} {now_unix}", v as f64 / secs)),
            (Kind::Gauge, Value::Int(v)) => writeln!(out, "{name}.value {v} {now_unix}"),
            (_, Value::Histogram(h)) => {
                let _ = writeln!(out, "{name}.count {} {now_unix}", h.count);
                let _ = writeln!(out, "{name}.min {} {now_unix}", h.min);
                let _ = writeln!(out, "{name}.max {} {now_unix}", h.max);
                let _ = writeln!(out, "{name}.mean {:.2} {now_unix}", h.mean);
                let _ = writeln!(out, "{name}.std-dev {:.2} {now_unix}", h.stddev);
                for (key, v) in PERCENTILE_KEYS.iter().zip(h.percentiles) {
                    let _ = writeln!(out, "{name}.{key}-percentile {v:.2} {now_unix}");
                }
                Ok(())
            }
        };
    }
    debug_assert_eq!(PERCENTILES.len(), PERCENTILE_KEYS.len());
    out
}

/// How long connecting and writing one flush may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Send one flush: a fresh connection per flush, as Go does.
pub fn send(to: SocketAddr, text: &str) -> io::Result<()> {
    let mut s = TcpStream::connect_timeout(&to, SEND_TIMEOUT)?;
    s.set_write_timeout(Some(SEND_TIMEOUT))?;
    s.write_all(text.as_bytes())?;
    s.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nebula_core::stats::DurationSample;

    #[test]
    fn lines_in_go_s_format() {
        let mut d = DurationSample::default();
        for v in 1..=10 {
            d.record(v);
        }
        let metrics = vec![
            Metric {
                name: "handshake_manager.initiated".into(),
                kind: Kind::Counter,
                value: Value::Int(5),
            },
            Metric {
                name: "hostmap.main.hosts".into(),
                kind: Kind::Gauge,
                value: Value::Int(2),
            },
            Metric {
                name: "handshakes".into(),
                kind: Kind::Gauge,
                value: Value::Histogram(d.summary()),
            },
        ];
        let text = lines(&metrics, "nebula", Duration::from_secs(10), 1700000000);
        let want = "\
nebula.handshake_manager.initiated.count 5 1700000000
nebula.handshake_manager.initiated.count_ps 0.50 1700000000
nebula.hostmap.main.hosts.value 2 1700000000
nebula.handshakes.count 10 1700000000
nebula.handshakes.min 1 1700000000
nebula.handshakes.max 10 1700000000
nebula.handshakes.mean 5.50 1700000000
nebula.handshakes.std-dev 2.87 1700000000
nebula.handshakes.50-percentile 5.50 1700000000
nebula.handshakes.75-percentile 8.25 1700000000
nebula.handshakes.95-percentile 10.00 1700000000
nebula.handshakes.99-percentile 10.00 1700000000
nebula.handshakes.999-percentile 10.00 1700000000
";
        assert_eq!(text, want);
    }

    #[test]
    fn a_flush_arrives_over_tcp() {
        use std::io::Read;
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        send(addr, "a.b.value 1 2\n").expect("send");
        let (mut s, _) = l.accept().expect("accept");
        let mut got = String::new();
        s.read_to_string(&mut got).expect("read");
        assert_eq!(got, "a.b.value 1 2\n");
    }
}
