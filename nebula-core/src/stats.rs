//! The numbers behind Go Nebula's metric set that only the engine sees (handshakes started, timed
//! out and how long they took, packets queued behind handshakes, lighthouse messages by kind).
//!
//! Plain integers: the engine is behind one lock, and exporters read a [`crate::engine::StatsSnapshot`]
//! taken under it once per scrape. The data plane's own counters live with the data plane.

/// Handshake durations kept for the `handshakes` histogram (Go keeps a 1028-slot reservoir).
pub const HANDSHAKE_SAMPLE: usize = 1028;

/// The lighthouse message kinds Go counts (`lighthouse.{rx,tx}.<kind>`), `other` last.
pub const LIGHTHOUSE_KINDS: [&str; 6] = [
    "HostQuery",
    "HostQueryReply",
    "HostUpdateNotification",
    "HostPunchNotification",
    "HostUpdateNotificationAck",
    "other",
];

/// The last [`HANDSHAKE_SAMPLE`] durations, in nanoseconds, and how many were ever recorded.
///
/// Go's histogram samples with exponential decay (biased to the last five minutes); this one keeps
/// the most recent handshakes, which tells an operator the same thing without randomness.
#[derive(Debug, Clone, Default)]
pub struct DurationSample {
    count: u64,
    ring: Vec<u64>,
    next: usize,
}

impl DurationSample {
    /// Record one duration.
    pub fn record(&mut self, nanos: u64) {
        self.count = self.count.saturating_add(1);
        if self.ring.len() < HANDSHAKE_SAMPLE {
            self.ring.push(nanos);
        } else if let Some(slot) = self.ring.get_mut(self.next) {
            *slot = nanos;
        }
        self.next = (self.next + 1) % HANDSHAKE_SAMPLE;
    }

    /// Count, extremes, moments and percentiles, computed as go-metrics computes them.
    pub fn summary(&self) -> HistogramSummary {
        let mut v = self.ring.clone();
        v.sort_unstable();
        let n = v.len();
        let mut s = HistogramSummary {
            count: self.count,
            ..HistogramSummary::default()
        };
        if n == 0 {
            return s;
        }
        s.min = v[0];
        s.max = v[n - 1];
        s.sum = v.iter().fold(0u64, |a, x| a.saturating_add(*x));
        s.mean = v.iter().map(|x| *x as f64).sum::<f64>() / n as f64;
        s.variance = v
            .iter()
            .map(|x| {
                let d = *x as f64 - s.mean;
                d * d
            })
            .sum::<f64>()
            / n as f64;
        s.stddev = s.variance.sqrt();
        s.percentiles = PERCENTILES.map(|p| percentile(&v, p));
        s
    }
}

/// The percentiles both exporters show, in this order (Go's prometheus bridge shows the last
/// four as `perc75`..`perc999`; graphite shows all five).
pub const PERCENTILES: [f64; 5] = [0.5, 0.75, 0.95, 0.99, 0.999];

/// go-metrics' interpolation: position `p × (n + 1)`, clamped to the ends.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    let n = sorted.len();
    let pos = p * (n as f64 + 1.0);
    if n == 0 {
        0.0
    } else if pos < 1.0 {
        sorted[0] as f64
    } else if pos >= n as f64 {
        sorted[n - 1] as f64
    } else {
        let lower = sorted[pos as usize - 1] as f64;
        let upper = sorted[pos as usize] as f64;
        lower + (pos - pos.floor()) * (upper - lower)
    }
}

/// A histogram's figures at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HistogramSummary {
    /// Durations ever recorded.
    pub count: u64,
    pub min: u64,
    pub max: u64,
    /// Sum of the sampled values.
    pub sum: u64,
    pub mean: f64,
    pub stddev: f64,
    pub variance: f64,
    /// At [`PERCENTILES`].
    pub percentiles: [f64; 5],
}

/// The engine's own counters (monotonic since start).
#[derive(Debug, Clone, Default)]
pub struct EngineCounters {
    /// `handshake_manager.initiated`: handshakes we started.
    pub handshakes_initiated: u64,
    /// `handshake_manager.timed_out`: handshakes we gave up on.
    pub handshakes_timed_out: u64,
    /// `handshakes`: how long our completed handshakes took (start to stage 2).
    pub handshakes: DurationSample,
    /// `hostinfo.cached_packets.sent`: packets queued behind a handshake and sent when it completed.
    pub cached_packets_sent: u64,
    /// `hostinfo.cached_packets.dropped`: packets that found a handshake's queue full.
    pub cached_packets_dropped: u64,
    /// `lighthouse.rx.<kind>`, by [`LIGHTHOUSE_KINDS`].
    pub lighthouse_rx: [u64; 6],
    /// `lighthouse.tx.<kind>`, by [`LIGHTHOUSE_KINDS`].
    pub lighthouse_tx: [u64; 6],
    /// Replay-window figures of tunnels that are gone (live ones are summed at each snapshot).
    pub retired_replay: ReplayCounts,
    /// `firewall.rules.version`: firewall reloads that changed the rules.
    pub rules_version: u64,
}

/// `network.packets.{lost,duplicate,out_of_window}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayCounts {
    pub lost: u64,
    pub duplicate: u64,
    pub out_of_window: u64,
}

impl ReplayCounts {
    pub fn add(&mut self, o: ReplayCounts) {
        self.lost = self.lost.saturating_add(o.lost);
        self.duplicate = self.duplicate.saturating_add(o.duplicate);
        self.out_of_window = self.out_of_window.saturating_add(o.out_of_window);
    }
}

/// Index in [`LIGHTHOUSE_KINDS`] of a lighthouse message type.
pub fn lighthouse_kind(t: Option<proto::lighthouse::NebulaMetaType>) -> usize {
    use proto::lighthouse::NebulaMetaType as T;
    match t {
        Some(T::HostQuery) => 0,
        Some(T::HostQueryReply) => 1,
        Some(T::HostUpdateNotification) => 2,
        Some(T::HostPunchNotification) => 3,
        Some(T::HostUpdateNotificationAck) => 4,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_sample_is_all_zero() {
        let s = DurationSample::default().summary();
        assert_eq!(s, HistogramSummary::default());
    }

    /// The figures go-metrics gives for 1..=10 (its own test values).
    #[test]
    fn summary_matches_go_metrics_arithmetic() {
        let mut d = DurationSample::default();
        for v in (1..=10).rev() {
            d.record(v);
        }
        let s = d.summary();
        assert_eq!((s.count, s.min, s.max, s.sum), (10, 1, 10, 55));
        assert!((s.mean - 5.5).abs() < 1e-9);
        assert!((s.variance - 8.25).abs() < 1e-9);
        assert!((s.stddev - 8.25f64.sqrt()).abs() < 1e-9);
        // p × 11: 5.5 → 5.5, 8.25 → 8.25, 10.45 → 10 (clamped), ...
        assert_eq!(s.percentiles, [5.5, 8.25, 10.0, 10.0, 10.0]);
    }

    #[test]
    fn the_sample_keeps_the_latest_values_and_counts_all() {
        let mut d = DurationSample::default();
        for v in 0..(HANDSHAKE_SAMPLE as u64 + 10) {
            d.record(v);
        }
        let s = d.summary();
        assert_eq!(s.count, HANDSHAKE_SAMPLE as u64 + 10);
        assert_eq!(s.min, 10, "the ten oldest were replaced");
        assert_eq!(s.max, HANDSHAKE_SAMPLE as u64 + 9);
        assert_eq!(d.ring.len(), HANDSHAKE_SAMPLE);
    }
}
