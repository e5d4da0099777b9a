//! The benchmark's figures and how they are shown: a table per target, the ratios between sizes
//! and between ours and Go's against the targets, and the same as JSON.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use crate::driver::BatchStats;

/// One measured window: figures of the lighthouse and of the load generator.
#[derive(Clone, Debug)]
pub struct Window {
    pub stats: BatchStats,
    pub lighthouse_cpu_s: f64,
    pub generator_cpu_s: f64,
}

/// Everything measured at one size.
#[derive(Clone, Debug)]
pub struct SizeResult {
    /// Live tunnels when the window started.
    pub live_tunnels: u64,
    /// Lighthouse RSS at that moment, KiB.
    pub rss_kib: u64,
    pub grow_handshakes: u64,
    pub grow_lighthouse_cpu_s: f64,
    pub grow_wall_s: f64,
    pub window: Window,
}

/// Garbage measurements at one size.
#[derive(Clone, Debug)]
pub struct GarbageResult {
    pub live_tunnels: u64,
    /// Garbage sent as fast as possible, and how many the lighthouse's socket dropped.
    pub sent: u64,
    pub dropped: u64,
    pub wall_s: f64,
    pub lighthouse_cpu_s: f64,
    /// Garbage per second during the handshake window, sent and dropped.
    pub during_rate: f64,
    pub during_sent: u64,
    pub during_dropped: u64,
    pub window: Window,
}

/// One target's run.
#[derive(Clone, Debug)]
pub struct TargetResult {
    pub label: String,
    pub binary: String,
    pub rss_start_kib: u64,
    pub sizes: Vec<SizeResult>,
    pub garbage: Vec<GarbageResult>,
    /// Why the run stopped early, if it did.
    pub note: Option<String>,
}

fn per(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

impl Window {
    pub fn rate(&self) -> Option<f64> {
        per(
            self.stats.completed as f64,
            self.stats.elapsed.as_secs_f64(),
        )
    }
    pub fn cpu_per_1000(&self) -> Option<f64> {
        per(self.lighthouse_cpu_s * 1000.0, self.stats.completed as f64)
    }
    pub fn per_cpu_second(&self) -> Option<f64> {
        per(self.stats.completed as f64, self.lighthouse_cpu_s)
    }
}

impl SizeResult {
    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
    pub fn rss_per_1000(&self) -> Option<f64> {
        per(self.rss_mib() * 1000.0, self.live_tunnels as f64)
    }
    /// RSS above the lighthouse's RSS before any tunnel, per 1,000 tunnels.
    pub fn rss_added_per_1000(&self, rss_start_kib: u64) -> Option<f64> {
        per(
            self.rss_kib.saturating_sub(rss_start_kib) as f64 / 1024.0 * 1000.0,
            self.live_tunnels as f64,
        )
    }
    pub fn one_line(&self) -> String {
        format!(
            "{} tunnels: {} hs/s, {} CPU-s/1k hs, RSS {:.1} MiB",
            self.live_tunnels,
            f1(self.window.rate()),
            f3(self.window.cpu_per_1000()),
            self.rss_mib()
        )
    }
}

impl GarbageResult {
    pub fn processed(&self) -> u64 {
        self.sent.saturating_sub(self.dropped)
    }
    pub fn cpu_per_10k(&self) -> Option<f64> {
        per(self.lighthouse_cpu_s * 10_000.0, self.processed() as f64)
    }
    pub fn one_line(&self) -> String {
        format!(
            "garbage at {} tunnels: {} CPU-s/10k read ({} sent, {} dropped); hs/s under {}/s garbage: {}",
            self.live_tunnels,
            f3(self.cpu_per_10k()),
            self.sent,
            self.dropped,
            self.during_rate,
            f1(self.window.rate())
        )
    }
}

impl TargetResult {
    pub fn new(label: &str, binary: &Path) -> TargetResult {
        TargetResult {
            label: label.to_string(),
            binary: binary.display().to_string(),
            rss_start_kib: 0,
            sizes: Vec::new(),
            garbage: Vec::new(),
            note: None,
        }
    }
    pub fn failed(label: &str, binary: &Path, why: String) -> TargetResult {
        let mut t = TargetResult::new(label, binary);
        t.note = Some(why);
        t
    }
    /// Rate at the largest size measured over the rate at the smallest.
    pub fn flat_ratio(&self) -> Option<(u64, u64, f64)> {
        let first = self.sizes.first()?;
        let last = self.sizes.last()?;
        if self.sizes.len() < 2 {
            return None;
        }
        Some((
            first.live_tunnels,
            last.live_tunnels,
            per(last.window.rate()?, first.window.rate()?)?,
        ))
    }
}

fn f1(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}
fn f2(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}
fn f3(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

/// The whole report as text.
pub fn text(results: &[TargetResult], settings: &str, load: Option<&str>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Lighthouse load benchmark (benches/lhload)");
    let _ = writeln!(s, "settings: {settings}");
    let _ = writeln!(s, "load average at start: {}", load.unwrap_or("?"));
    for t in results {
        let _ = writeln!(s, "\n## {} ({})", t.label, t.binary);
        let _ = writeln!(
            s,
            "RSS before any tunnel: {:.1} MiB",
            t.rss_start_kib as f64 / 1024.0
        );
        if !t.sizes.is_empty() {
            let _ = writeln!(
                s,
                "{:>8} {:>9} {:>11} {:>11} {:>9} {:>10} {:>10} {:>9} {:>8} {:>12}",
                "tunnels",
                "hs/s",
                "CPU-s/1k hs",
                "hs/CPU-s",
                "RSS MiB",
                "MiB/1k tun",
                "+MiB/1k",
                "gen CPU-s",
                "fail/rtx",
                "grow CPU/1k"
            );
        }
        for r in &t.sizes {
            let w = &r.window;
            let _ = writeln!(
                s,
                "{:>8} {:>9} {:>11} {:>11} {:>9.1} {:>10} {:>10} {:>9.2} {:>8} {:>12}",
                r.live_tunnels,
                f1(w.rate()),
                f3(w.cpu_per_1000()),
                f1(w.per_cpu_second()),
                r.rss_mib(),
                f3(r.rss_per_1000()),
                f3(r.rss_added_per_1000(t.rss_start_kib)),
                w.generator_cpu_s,
                format!("{}/{}", w.stats.failed, w.stats.retries),
                f3(per(
                    r.grow_lighthouse_cpu_s * 1000.0,
                    r.grow_handshakes as f64
                )),
            );
        }
        if !t.garbage.is_empty() {
            let _ = writeln!(
                s,
                "garbage: {:>8} {:>8} {:>8} {:>14} {:>11} | {:>10} {:>10} {:>9}",
                "tunnels",
                "sent",
                "dropped",
                "CPU-s/10k read",
                "read/s",
                "hs/s+garb",
                "garb sent",
                "garb drop"
            );
        }
        for g in &t.garbage {
            let _ = writeln!(
                s,
                "         {:>8} {:>8} {:>8} {:>14} {:>11} | {:>10} {:>10} {:>9}",
                g.live_tunnels,
                g.sent,
                g.dropped,
                f3(g.cpu_per_10k()),
                f1(per(g.processed() as f64, g.wall_s)),
                f1(g.window.rate()),
                g.during_sent,
                g.during_dropped
            );
        }
        for (what, w) in t
            .sizes
            .iter()
            .map(|r| (r.live_tunnels, &r.window))
            .chain(t.garbage.iter().map(|g| (g.live_tunnels, &g.window)))
        {
            if w.stats.timed_out {
                let _ = writeln!(
                    s,
                    "note: the window at {what} tunnels timed out after {} handshakes",
                    w.stats.completed
                );
            }
            if let Some(e) = &w.stats.first_error {
                let _ = writeln!(s, "note: at {what} tunnels, first failure: {e}");
            }
        }
        if let Some(n) = &t.note {
            let _ = writeln!(s, "note: {n}");
        }
    }
    s.push_str(&ratios(results));
    s
}

fn find<'a>(results: &'a [TargetResult], label: &str) -> Option<&'a TargetResult> {
    results.iter().find(|t| t.label == label)
}

/// The targets, from the figures of one run.
pub fn ratios(results: &[TargetResult]) -> String {
    let mut s = String::from("\n## Ratios\n");
    for t in results {
        match t.flat_ratio() {
            Some((a, b, r)) => {
                let _ = writeln!(
                    s,
                    "flat, {}: rate at {b} / rate at {a} tunnels = {r:.2} (target >= 0.80: {})",
                    t.label,
                    verdict(r >= 0.8)
                );
            }
            None => {
                let _ = writeln!(s, "flat, {}: fewer than two sizes measured", t.label);
            }
        }
        if let (Some(a), Some(b)) = (t.garbage.first(), t.garbage.last()) {
            if t.garbage.len() > 1 {
                let _ = writeln!(
                    s,
                    "garbage cost, {}: CPU per datagram at {} / at {} tunnels = {}",
                    t.label,
                    b.live_tunnels,
                    a.live_tunnels,
                    f2(b.cpu_per_10k()
                        .zip(a.cpu_per_10k())
                        .and_then(|(x, y)| per(x, y)))
                );
            }
        }
    }
    let (Some(ours), Some(go)) = (find(results, "ours"), find(results, "go-1.11.0")) else {
        return s;
    };
    for (o, g) in ours.sizes.iter().zip(&go.sizes) {
        let speed = o
            .window
            .per_cpu_second()
            .zip(g.window.per_cpu_second())
            .and_then(|(a, b)| per(a, b));
        let mem = o
            .rss_per_1000()
            .zip(g.rss_per_1000())
            .and_then(|(a, b)| per(a, b));
        let _ = writeln!(
            s,
            "at {} tunnels (Go {}): ours/Go handshakes per CPU-s = {} (target >= 2: {}); \
             ours/Go RSS per 1k tunnels = {} (target <= 0.25: {})",
            o.live_tunnels,
            g.live_tunnels,
            f2(speed),
            verdict(speed.is_some_and(|v| v >= 2.0)),
            f2(mem),
            verdict(mem.is_some_and(|v| v <= 0.25)),
        );
    }
    for (o, g) in ours.garbage.iter().zip(&go.garbage) {
        let r = o
            .cpu_per_10k()
            .zip(g.cpu_per_10k())
            .and_then(|(a, b)| per(a, b));
        let _ = writeln!(
            s,
            "garbage at {} tunnels: ours/Go CPU per garbage datagram = {}",
            o.live_tunnels,
            f2(r)
        );
    }
    if let Some(last) = ours.sizes.last() {
        let _ = writeln!(
            s,
            "ours at {} tunnels: RSS {:.1} MiB (target for 100k: < 200 MiB)",
            last.live_tunnels,
            last.rss_mib()
        );
    }
    s
}

fn window_json(w: &Window) -> Value {
    json!({
        "handshakes": w.stats.completed,
        "failed": w.stats.failed,
        "retries": w.stats.retries,
        "other_datagrams": w.stats.other,
        "wall_s": w.stats.elapsed.as_secs_f64(),
        "timed_out": w.stats.timed_out,
        "first_error": w.stats.first_error,
        "lighthouse_cpu_s": w.lighthouse_cpu_s,
        "generator_cpu_s": w.generator_cpu_s,
        "handshakes_per_s": w.rate(),
        "cpu_s_per_1000_handshakes": w.cpu_per_1000(),
        "handshakes_per_cpu_s": w.per_cpu_second(),
    })
}

/// The whole report as JSON.
pub fn json(
    results: &[TargetResult],
    settings: &str,
    load: Option<&str>,
    started_unix: i64,
) -> Value {
    let targets: Vec<Value> = results
        .iter()
        .map(|t| {
            json!({
                "label": t.label,
                "binary": t.binary,
                "rss_start_kib": t.rss_start_kib,
                "note": t.note,
                "sizes": t.sizes.iter().map(|r| json!({
                    "live_tunnels": r.live_tunnels,
                    "rss_kib": r.rss_kib,
                    "rss_mib_per_1000_tunnels": r.rss_per_1000(),
                    "rss_added_mib_per_1000_tunnels": r.rss_added_per_1000(t.rss_start_kib),
                    "grow_handshakes": r.grow_handshakes,
                    "grow_lighthouse_cpu_s": r.grow_lighthouse_cpu_s,
                    "grow_wall_s": r.grow_wall_s,
                    "window": window_json(&r.window),
                })).collect::<Vec<_>>(),
                "garbage": t.garbage.iter().map(|g| json!({
                    "live_tunnels": g.live_tunnels,
                    "sent": g.sent,
                    "dropped": g.dropped,
                    "wall_s": g.wall_s,
                    "lighthouse_cpu_s": g.lighthouse_cpu_s,
                    "cpu_s_per_10000_read": g.cpu_per_10k(),
                    "during_rate": g.during_rate,
                    "during_sent": g.during_sent,
                    "during_dropped": g.during_dropped,
                    "window": window_json(&g.window),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "benchmark": "lighthouse-load",
        "started_unix": started_unix,
        "settings": settings,
        "load_average_start": load,
        "targets": targets,
        "ratios_text": ratios(results),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn window(done: u64, secs: f64, cpu: f64) -> Window {
        Window {
            stats: BatchStats {
                completed: done,
                elapsed: Duration::from_secs_f64(secs),
                ..BatchStats::default()
            },
            lighthouse_cpu_s: cpu,
            generator_cpu_s: 0.5,
        }
    }

    fn size(live: u64, rss_mib: u64, rate: f64, cpu: f64) -> SizeResult {
        SizeResult {
            live_tunnels: live,
            rss_kib: rss_mib * 1024,
            grow_handshakes: live,
            grow_lighthouse_cpu_s: 1.0,
            grow_wall_s: 1.0,
            window: window(2000, 2000.0 / rate, cpu),
        }
    }

    fn target(label: &str, sizes: Vec<SizeResult>) -> TargetResult {
        let mut t = TargetResult::new(label, Path::new("/bin/x"));
        t.rss_start_kib = 10 * 1024;
        t.sizes = sizes;
        t
    }

    #[test]
    fn window_figures() {
        let w = window(2000, 2.0, 0.5);
        assert_eq!(w.rate(), Some(1000.0));
        assert_eq!(w.cpu_per_1000(), Some(0.25));
        assert_eq!(w.per_cpu_second(), Some(4000.0));
        let empty = window(0, 0.0, 0.0);
        assert_eq!(empty.rate(), None);
        assert_eq!(empty.per_cpu_second(), None);
    }

    #[test]
    fn rss_figures() {
        let r = size(10_000, 30, 1000.0, 1.0);
        assert_eq!(r.rss_per_1000(), Some(3.0));
        assert_eq!(r.rss_added_per_1000(10 * 1024), Some(2.0));
    }

    #[test]
    fn ratios_against_the_targets() {
        let ours = target(
            "ours",
            vec![size(1000, 20, 1000.0, 0.5), size(100_000, 100, 900.0, 0.5)],
        );
        let go = target(
            "go-1.11.0",
            vec![size(1000, 40, 800.0, 2.0), size(100_000, 500, 700.0, 2.0)],
        );
        let flat = ours.flat_ratio().unwrap();
        assert_eq!((flat.0, flat.1), (1000, 100_000));
        assert!((flat.2 - 0.9).abs() < 1e-6, "{flat:?}");
        let text = ratios(&[go, ours]);
        assert!(
            text.contains(
                "flat, ours: rate at 100000 / rate at 1000 tunnels = 0.90 (target >= 0.80: met)"
            ),
            "{text}"
        );
        assert!(
            text.contains("flat, go-1.11.0: rate at 100000 / rate at 1000 tunnels = 0.88"),
            "{text}"
        );
        // 4000 vs 1000 handshakes per CPU-s; RSS per 1k 1.0 vs 5.0 MiB at 100k.
        assert!(text.contains("at 100000 tunnels (Go 100000): ours/Go handshakes per CPU-s = 4.00 (target >= 2: met); ours/Go RSS per 1k tunnels = 0.20 (target <= 0.25: met)"), "{text}");
        assert!(
            text.contains("ours/Go RSS per 1k tunnels = 0.50 (target <= 0.25: NOT met)"),
            "{text}"
        );
    }

    #[test]
    fn report_names_a_timed_out_window() {
        let mut r = size(10_000, 30, 100.0, 1.0);
        r.window.stats.timed_out = true;
        r.window.stats.completed = 17;
        r.window.stats.first_error = Some("no answer after 10 attempts".into());
        let out = text(&[target("ours", vec![r])], "s", None);
        assert!(out.contains("note: the window at 10000 tunnels timed out after 17 handshakes"));
        assert!(out.contains("first failure: no answer after 10 attempts"));
    }

    #[test]
    fn report_names_a_failed_target() {
        let t = TargetResult::failed("ours", Path::new("/x"), "it broke".into());
        let out = text(&[t], "s", None);
        assert!(out.contains("note: it broke"));
        assert!(out.contains("flat, ours: fewer than two sizes measured"));
        let j = json(&[], "s", Some("0.1 0.2 0.3"), 5);
        assert_eq!(j["load_average_start"], "0.1 0.2 0.3");
    }
}
