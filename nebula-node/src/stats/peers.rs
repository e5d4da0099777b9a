//! Per-peer series for the Prometheus page (ours; Go has none): traffic, round trip, path,
//! handshake age and certificate lifetime of each peer, labelled by name and vpn address, for at
//! most `stats.peer_metrics` peers (label cardinality stays bounded), and each CA's lifetime.

use std::time::Instant;

use nebula_core::aead::Traffic;

use crate::plane::Plane;
use crate::status::{primary_tunnels, report::Path};

/// One peer's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerSeries {
    pub name: String,
    pub vpn_addr: String,
    pub traffic: Traffic,
    /// Seconds; `None` until measured.
    pub rtt_seconds: Option<f64>,
    pub relayed: bool,
    pub handshake_age_seconds: u64,
    pub cert_ttl_seconds: i64,
}

/// A CA's lifetime.
#[derive(Debug, Clone, PartialEq)]
pub struct CaSeries {
    pub name: String,
    pub ttl_seconds: i64,
}

/// The first `limit` peers by vpn address (a stable choice between scrapes), and the CAs.
pub fn collect(
    plane: &Plane,
    limit: usize,
    now: Instant,
    now_unix: i64,
) -> (Vec<PeerSeries>, Vec<CaSeries>) {
    let engine = plane.lock();
    let mut tunnels: Vec<_> = primary_tunnels(&engine).collect();
    tunnels.sort_by_key(|t| t.vpn_addr);
    let peers = tunnels
        .into_iter()
        .take(limit)
        .map(|t| PeerSeries {
            name: t.peer.cert.name().to_string(),
            vpn_addr: t.vpn_addr.to_string(),
            traffic: t.session.traffic(),
            rtt_seconds: plane.rtt().sample(&t.vpn_addr).rtt.map(|d| d.as_secs_f64()),
            relayed: matches!(crate::status::path_of(t), Path::Relayed { .. }),
            handshake_age_seconds: now.saturating_duration_since(t.created).as_secs(),
            cert_ttl_seconds: t.peer.cert.not_after().saturating_sub(now_unix),
        })
        .collect();
    let cas = engine
        .pki()
        .ca_pool()
        .cas()
        .map(|c| CaSeries {
            name: c.name().to_string(),
            ttl_seconds: c.not_after().saturating_sub(now_unix),
        })
        .collect();
    (peers, cas)
}
