//! The engine's side of Go Nebula's metric set: one [`StatsSnapshot`] of every figure only the
//! engine knows (host map and handshake tables, firewall, certificate, its own counters).

use std::time::Instant;

use nebula_cert::Version;

use super::Engine;
use crate::filter::FirewallDrops;
use crate::stats::{EngineCounters, ReplayCounts};

/// Every engine figure an exporter shows, taken at one moment under the engine lock.
#[derive(Debug, Clone, Default)]
pub struct StatsSnapshot {
    /// The engine's monotonic counters.
    pub counters: EngineCounters,
    /// `hostmap.main.hosts`: vpn addresses with a tunnel.
    pub hosts: usize,
    /// `hostmap.main.indexes`: tunnels.
    pub indexes: usize,
    /// `hostmap.main.remoteIndexes`: tunnels by the peer's index.
    pub remote_indexes: usize,
    /// `hostmap.main.relayIndexes`: relay entries.
    pub relay_indexes: usize,
    /// `hostmap.pending.hosts`.
    pub pending_hosts: usize,
    /// `hostmap.pending.indexes`.
    pub pending_indexes: usize,
    /// `firewall.conntrack.count`.
    pub conntrack: usize,
    /// `firewall.rules.hash` (FNV-1a of the rules; 0 without a firewall).
    pub rules_hash: u32,
    /// `firewall.{incoming,outgoing}.dropped.*`.
    pub drops: FirewallDrops,
    /// `network.packets.*`.
    pub replay: ReplayCounts,
    /// `certificate.ttl_seconds`: until our (initiating) certificate expires; negative when expired.
    pub cert_ttl_seconds: i64,
    /// `certificate.initiating_version`.
    pub initiating_version: u8,
    /// `certificate.max_version`: the highest version among our certificates.
    pub max_version: u8,
}

fn version_number(v: Version) -> u8 {
    match v {
        Version::V1 => 1,
        Version::V2 => 2,
    }
}

impl Engine {
    /// Every figure for the metrics exporters, at `now`. Costs one pass over the tunnels (their
    /// replay windows): meant for a scrape every few seconds, not per packet.
    pub fn stats(&self, now: Instant) -> StatsSnapshot {
        let initiating = self.pki.initiating_version();
        let ttl = self
            .pki
            .cert(initiating)
            .map(|c| c.not_after().saturating_sub(self.unix_secs(now)))
            .unwrap_or(0);
        let max_version = [Version::V2, Version::V1]
            .into_iter()
            .find(|v| self.pki.cert(*v).is_some())
            .map(version_number)
            .unwrap_or(0);
        StatsSnapshot {
            counters: self.counters.clone(),
            hosts: self.hostmap.hosts(),
            indexes: self.hostmap.len(),
            remote_indexes: self.hostmap.remote_indexes(),
            relay_indexes: self.relays.len(),
            pending_hosts: self.pending.hosts(),
            pending_indexes: self.pending.len(),
            conntrack: self.filter.conntrack_len(),
            rules_hash: self.filter.rules_hash_fnv().unwrap_or(0),
            drops: self.filter.drops(),
            replay: self.hostmap.replay_counts(),
            cert_ttl_seconds: ttl,
            initiating_version: version_number(initiating),
            max_version,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nebula_cert::{Curve, Version};

    use crate::sim::{static_config, udp_packet, Sim, TestCa};

    const A: &str = "10.1.0.1";
    const B: &str = "10.1.0.2";
    const A_ADDR: &str = "192.0.2.1:4242";
    const B_ADDR: &str = "192.0.2.2:4242";

    /// A handshake moves the initiator's counters as Go's do: one initiated, one duration sampled,
    /// the queued packet counted as sent, a host and an index in each host map.
    #[test]
    fn a_handshake_moves_the_counters() {
        let ca = TestCa::new("stats", Curve::Curve25519, Version::V1);
        let mut sim = Sim::new(3);
        let a = sim.add_node(
            "a",
            A_ADDR,
            static_config(&[(B, B_ADDR)]),
            ca.pki("a", &format!("{A}/16")),
        );
        let b = sim.add_node(
            "b",
            B_ADDR,
            static_config(&[(A, A_ADDR)]),
            ca.pki("b", &format!("{B}/16")),
        );
        let before = sim.nodes[a].engine.stats(sim.now);
        assert_eq!(before.counters.handshakes_initiated, 0);
        assert_eq!((before.hosts, before.indexes), (0, 0));
        let hello = udp_packet(A.parse().expect("v4"), B.parse().expect("v4"), 1, 2, b"hi");
        sim.inside(a, &hello);
        let during = sim.nodes[a].engine.stats(sim.now);
        assert_eq!((during.pending_hosts, during.pending_indexes), (1, 1));
        sim.run_for(Duration::from_secs(2));
        assert!(sim.has_tunnel(a, B));
        let after = sim.nodes[a].engine.stats(sim.now);
        assert_eq!(after.counters.handshakes_initiated, 1);
        assert_eq!(after.counters.handshakes_timed_out, 0);
        assert_eq!(after.counters.handshakes.summary().count, 1);
        assert_eq!(after.counters.cached_packets_sent, 1);
        assert_eq!(
            (after.hosts, after.indexes, after.remote_indexes),
            (1, 1, 1)
        );
        assert_eq!((after.pending_hosts, after.pending_indexes), (0, 0));
        assert_eq!((after.initiating_version, after.max_version), (1, 1));
        assert!(after.cert_ttl_seconds > 0);
        // The responder started nothing but holds the tunnel too.
        let b_stats = sim.nodes[b].engine.stats(sim.now);
        assert_eq!(b_stats.counters.handshakes_initiated, 0);
        assert_eq!(b_stats.indexes, 1);
    }

    /// A handshake to a host that never answers times out once, after its retries.
    #[test]
    fn an_unanswered_handshake_times_out() {
        let ca = TestCa::new("stats", Curve::Curve25519, Version::V1);
        let mut sim = Sim::new(4);
        let a = sim.add_node(
            "a",
            A_ADDR,
            static_config(&[(B, B_ADDR)]),
            ca.pki("a", &format!("{A}/16")),
        );
        let hello = udp_packet(A.parse().expect("v4"), B.parse().expect("v4"), 1, 2, b"hi");
        sim.inside(a, &hello);
        sim.run_for(Duration::from_secs(30));
        let s = sim.nodes[a].engine.stats(sim.now);
        assert_eq!(s.counters.handshakes_initiated, 1);
        assert_eq!(s.counters.handshakes_timed_out, 1);
        assert_eq!(s.counters.handshakes.summary().count, 0);
        assert_eq!((s.pending_hosts, s.indexes), (0, 0));
    }
}
