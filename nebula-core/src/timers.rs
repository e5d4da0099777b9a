//! The engine's timer queue: deadlines for handshake retries, connection checks, lighthouse
//! updates, punches, relay set-up and the conntrack sweep. Time is the caller's `Instant`; nothing reads a clock.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// What a deadline is for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Next attempt (or time-out) of the pending handshake with this local index.
    HandshakeRetry { local_index: u32 },
    /// Connection check of an established tunnel.
    ConnectionCheck { local_index: u32 },
    /// Periodic HostUpdateNotification to the lighthouses.
    LighthouseUpdate,
    /// Send a hole-punch byte to this address (answer to a punch notification). Address and
    /// port rather than a `SocketAddr` (32 bytes): every queued timer is as large as the largest.
    Punch { ip: IpAddr, port: u16 },
    /// `punchy.respond`: send a test request to this vpn address.
    PunchRespond { vpn: IpAddr },
    /// A relayed tunnel: probe the peer's direct addresses (after the punches had time to open
    /// the NATs).
    TryDirect { local_index: u32 },
    /// A relay entry a peer's request made: gone by now unless in use
    /// (`hostmap::RELAY_SETUP_TIMEOUT`).
    RelayCheck { local_index: u32 },
    /// Reclaim expired conntrack flows (every [`CONNTRACK_SWEEP_INTERVAL`]), including those in
    /// shards no packet touches any more.
    ConntrackSweep,
}

/// How often the engine sweeps the firewall's conntrack for expired flows.
pub const CONNTRACK_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// `now + delay`, saturating: a delay too large for the clock (a huge configured interval) is a
/// deadline about a century away instead of a panic.
pub fn after(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay)
        .or_else(|| now.checked_add(FAR_AWAY))
        .unwrap_or(now)
}

/// How far [`after`] falls back to when `now + delay` does not fit in an `Instant`.
const FAR_AWAY: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A min-heap of deadlines. Stale entries are allowed: the handler re-checks state when one fires.
#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    seq: u64,
}

impl Timers {
    pub fn add(&mut self, at: Instant, timer: Timer) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, timer)));
    }

    /// Add `timer` due `delay` after `now` (saturating, see [`after`]).
    pub fn add_after(&mut self, now: Instant, delay: Duration, timer: Timer) {
        self.add(after(now, delay), timer);
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Pop one timer that is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => self.heap.pop().map(|Reverse((_, _, t))| t),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_timer_stays_small() {
        // One connection check per tunnel sits in the heap: 48 bytes each with its deadline.
        assert!(std::mem::size_of::<Timer>() <= 24);
        assert!(std::mem::size_of::<Reverse<(Instant, u64, Timer)>>() <= 48);
    }

    #[test]
    fn a_huge_delay_saturates_instead_of_panicking() {
        let t0 = Instant::now();
        let far = after(t0, Duration::MAX);
        assert!(far > t0 + Duration::from_secs(365 * 86_400));
        let mut t = Timers::default();
        t.add_after(t0, Duration::MAX, Timer::LighthouseUpdate);
        t.add_after(t0, Duration::from_secs(1), Timer::LighthouseUpdate);
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.add(t0 + Duration::from_secs(2), Timer::LighthouseUpdate);
        t.add(
            t0 + Duration::from_secs(1),
            Timer::HandshakeRetry { local_index: 7 },
        );
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.pop_due(t0), None);
        assert_eq!(
            t.pop_due(t0 + Duration::from_secs(3)),
            Some(Timer::HandshakeRetry { local_index: 7 })
        );
        assert_eq!(
            t.pop_due(t0 + Duration::from_secs(3)),
            Some(Timer::LighthouseUpdate)
        );
        assert!(t.is_empty());
    }
}
