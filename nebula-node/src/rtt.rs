//! Round-trip times to peers, measured with Nebula's own test request/reply (which Go peers
//! answer by echoing the payload): a gentle background sweep over the tunnels, and `ping`.
//!
//! A probe's payload is a marker and a nonce; the reply's event is matched here by the thread that
//! carries out the engine's outputs, so the measured time is the network's plus a poll wake-up.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::mpsc::Sender;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The first bytes of our probes' payload (Go peers echo any payload).
const MARKER: &[u8; 4] = b"nrtt";
/// A sweep measures each tunnel about this often...
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// ...but sends at most this many probes a second (a lighthouse with 100k tunnels then goes round
/// them in about half an hour, at a load no peer notices).
pub const MAX_PROBES_PER_SECOND: usize = 50;
/// Lighthouses are probed this often (their reachability is part of `health`).
pub const LIGHTHOUSE_INTERVAL: Duration = Duration::from_secs(5);
/// A probe without a reply by then is forgotten.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most probes in flight (each is a few dozen bytes).
const MAX_IN_FLIGHT: usize = 4096;

/// What we know of one peer's round trip.
#[derive(Debug, Clone, Copy, Default)]
pub struct RttSample {
    /// The last measured round trip.
    pub rtt: Option<Duration>,
    /// When the last reply arrived.
    pub replied: Option<Instant>,
}

struct InFlight {
    vpn: IpAddr,
    sent: Instant,
    /// A `ping` waiting for this reply.
    waiter: Option<Sender<Duration>>,
}

#[derive(Default)]
struct Inner {
    samples: HashMap<IpAddr, RttSample>,
    in_flight: HashMap<u64, InFlight>,
    next_nonce: u64,
    /// Tunnels still to probe in this sweep.
    queue: VecDeque<IpAddr>,
    sweep_started: Option<Instant>,
    last_probe_tick: Option<Instant>,
    lighthouses_probed: Option<Instant>,
}

/// Round trips by vpn address, and the probes in flight. Bounded by the tunnels the node has
/// (`retain`) and [`MAX_IN_FLIGHT`].
#[derive(Default)]
pub struct RttTable {
    inner: Mutex<Inner>,
}

impl RttTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new probe of `vpn` sent at `now`: its payload. `waiter` hears the round trip.
    pub fn probe(&self, vpn: IpAddr, now: Instant, waiter: Option<Sender<Duration>>) -> Vec<u8> {
        let mut g = self.lock();
        g.in_flight
            .retain(|_, f| now.saturating_duration_since(f.sent) < PROBE_TIMEOUT);
        if g.in_flight.len() >= MAX_IN_FLIGHT {
            // Oldest first: the map is small, and this only happens when replies stop coming.
            if let Some(k) = g
                .in_flight
                .iter()
                .min_by_key(|(_, f)| f.sent)
                .map(|(k, _)| *k)
            {
                g.in_flight.remove(&k);
            }
        }
        g.next_nonce = g.next_nonce.wrapping_add(1);
        let nonce = g.next_nonce;
        g.in_flight.insert(
            nonce,
            InFlight {
                vpn,
                sent: now,
                waiter,
            },
        );
        let mut payload = Vec::with_capacity(12);
        payload.extend_from_slice(MARKER);
        payload.extend_from_slice(&nonce.to_be_bytes());
        payload
    }

    /// A test reply with `payload` came from `vpn` at `now`: if it answers one of our probes,
    /// record the round trip (and tell a waiting `ping`).
    pub fn reply(&self, vpn: IpAddr, payload: &[u8], now: Instant) {
        let Some(nonce) = payload
            .strip_prefix(MARKER.as_slice())
            .and_then(|n| <[u8; 8]>::try_from(n).ok())
            .map(u64::from_be_bytes)
        else {
            return;
        };
        let mut g = self.lock();
        let Some(f) = g.in_flight.remove(&nonce) else {
            return;
        };
        if f.vpn != vpn {
            // Someone echoed another peer's probe: not a measurement of either.
            return;
        }
        let rtt = now.saturating_duration_since(f.sent);
        let s = g.samples.entry(vpn).or_default();
        s.rtt = Some(rtt);
        s.replied = Some(now);
        if let Some(w) = f.waiter {
            let _ = w.send(rtt);
        }
    }

    /// The last round trip to `vpn`.
    pub fn sample(&self, vpn: &IpAddr) -> RttSample {
        self.lock().samples.get(vpn).copied().unwrap_or_default()
    }

    /// Forget peers without a tunnel (`keep` says which still have one).
    pub fn retain(&self, keep: impl Fn(&IpAddr) -> bool) {
        let mut g = self.lock();
        g.samples.retain(|k, _| keep(k));
        g.queue.retain(|k| keep(k));
    }

    /// The peers to probe now: this second's share of the sweep, plus the lighthouses every
    /// [`LIGHTHOUSE_INTERVAL`]. `tunnels` lists the peers with a tunnel (called only when a new
    /// sweep starts, every [`SWEEP_INTERVAL`]).
    pub fn due(
        &self,
        now: Instant,
        lighthouses: &[IpAddr],
        tunnels: impl FnOnce() -> Vec<IpAddr>,
    ) -> Vec<IpAddr> {
        // The tunnel list is made without our lock held (the caller may touch this table).
        let sweep = self
            .lock()
            .sweep_started
            .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_INTERVAL);
        let fresh = sweep.then(tunnels);
        let mut g = self.lock();
        let mut out = Vec::new();
        if g.lighthouses_probed
            .is_none_or(|t| now.saturating_duration_since(t) >= LIGHTHOUSE_INTERVAL)
        {
            g.lighthouses_probed = Some(now);
            out.extend_from_slice(lighthouses);
        }
        if let Some(mut all) = fresh {
            g.sweep_started = Some(now);
            all.retain(|v| !lighthouses.contains(v));
            g.queue = all.into();
        }
        if g.last_probe_tick
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return out;
        }
        g.last_probe_tick = Some(now);
        // Spread the sweep over its interval, within the rate cap.
        let per_tick = g
            .queue
            .len()
            .div_ceil(SWEEP_INTERVAL.as_secs() as usize)
            .clamp(1, MAX_PROBES_PER_SECOND);
        for _ in 0..per_tick {
            match g.queue.pop_front() {
                Some(v) => out.push(v),
                None => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn a_reply_to_our_probe_is_a_round_trip() {
        let t = RttTable::default();
        let now = Instant::now();
        let (tx, rx) = std::sync::mpsc::channel();
        let p = t.probe(ip(2), now, Some(tx));
        t.reply(ip(2), &p, now + Duration::from_millis(7));
        assert_eq!(t.sample(&ip(2)).rtt, Some(Duration::from_millis(7)));
        assert_eq!(rx.try_recv(), Ok(Duration::from_millis(7)));
        // A second copy, another peer's echo, or a foreign payload change nothing.
        t.reply(ip(2), &p, now + Duration::from_secs(1));
        assert_eq!(t.sample(&ip(2)).rtt, Some(Duration::from_millis(7)));
        let q = t.probe(ip(3), now, None);
        t.reply(ip(4), &q, now + Duration::from_millis(1));
        assert_eq!(t.sample(&ip(4)).rtt, None);
        t.reply(ip(3), b"hello", now);
        t.reply(ip(3), &[], now);
        assert_eq!(t.sample(&ip(3)).rtt, None);
    }

    #[test]
    fn in_flight_probes_are_bounded() {
        let t = RttTable::default();
        let now = Instant::now();
        for i in 0..(MAX_IN_FLIGHT + 100) {
            t.probe(ip(2), now + Duration::from_micros(i as u64), None);
        }
        assert_eq!(t.lock().in_flight.len(), MAX_IN_FLIGHT);
        // Expired probes go at the next one.
        t.probe(ip(2), now + PROBE_TIMEOUT + Duration::from_secs(1), None);
        assert_eq!(t.lock().in_flight.len(), 1);
    }

    #[test]
    fn the_sweep_is_spread_and_capped() {
        let t = RttTable::default();
        let now = Instant::now();
        let lh = [ip(1)];
        let many: Vec<IpAddr> = (0..3000u32)
            .map(|i| IpAddr::from(i.to_be_bytes()))
            .collect();
        let first = t.due(now, &lh, || many.clone());
        // The lighthouse, then 3000 / 30 = 100 capped at 50.
        assert_eq!(first.len(), 1 + MAX_PROBES_PER_SECOND);
        assert_eq!(first[0], ip(1));
        // Nothing more within the same second; the lighthouse again after its interval.
        assert!(t
            .due(now + Duration::from_millis(500), &lh, || unreachable!())
            .is_empty());
        let later = t.due(now + LIGHTHOUSE_INTERVAL, &lh, || unreachable!());
        assert_eq!(later.len(), 1 + MAX_PROBES_PER_SECOND);
        // A small node: one probe a second until the sweep is done.
        let small = RttTable::default();
        let few = vec![ip(5), ip(6)];
        assert_eq!(small.due(now, &[], || few.clone()), vec![ip(5)]);
        assert_eq!(
            small.due(now + Duration::from_secs(1), &[], || few.clone()),
            vec![ip(6)]
        );
        assert!(small
            .due(now + Duration::from_secs(2), &[], || few.clone())
            .is_empty());
        small.retain(|v| *v != ip(6));
        // The tunnel list may consult the table itself (it did deadlock once).
        let t2 = RttTable::default();
        let got = t2.due(now, &[], || {
            t2.retain(|_| true);
            vec![ip(9)]
        });
        assert_eq!(got, vec![ip(9)]);
    }
}
