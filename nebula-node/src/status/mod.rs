//! What the node tells its operator: the status report (node, tunnels, health) behind the control
//! API and `nebula-ctl`, round-trip probes, certificate-expiry warnings and the watchdog's test.
//!
//! Everything here reads the engine through the [`Plane`] (briefly, under its lock) and the
//! node's own counters; none of it is on the packet path.

pub mod api;
pub mod report;

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use nebula_cert::cert::Certificate;
use nebula_cert::Version;
use nebula_core::aead::CipherKind;
use nebula_core::engine::{Engine, Outputs};
use nebula_core::hostmap::Tunnel;

use crate::plane::Plane;
use report::{CertInfo, Health, LighthouseInfo, NodeInfo, Path, Status, TunnelInfo};

/// A lighthouse counts as reachable while its tunnel is up and it answered a probe this recently
/// (probes go every [`crate::rtt::LIGHTHOUSE_INTERVAL`]).
pub const LIGHTHOUSE_FRESH: Duration = Duration::from_secs(20);
/// The data plane is alive while every worker went round its loop this recently (a worker wakes
/// at least once a second).
pub const WORKER_FRESH: Duration = Duration::from_secs(5);

/// What the report needs that the engine does not know.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    /// Where we listen (UDP).
    pub listen: Vec<String>,
    /// When the daemon started.
    pub started: Instant,
}

const SECS_PER_DAY: f64 = 86_400.0;

fn days_left(not_after: i64, now_unix: i64) -> f64 {
    (not_after.saturating_sub(now_unix)) as f64 / SECS_PER_DAY
}

fn version_number(v: Version) -> u8 {
    match v {
        Version::V1 => 1,
        Version::V2 => 2,
    }
}

fn cert_info(c: &Certificate, now_unix: i64) -> CertInfo {
    CertInfo {
        name: c.name().to_string(),
        version: version_number(c.version()),
        fingerprint: c.fingerprint_hex(),
        not_after: c.not_after(),
        days_left: days_left(c.not_after(), now_unix),
    }
}

fn cipher_name(c: CipherKind) -> &'static str {
    match c {
        CipherKind::AesGcm => "aes",
        CipherKind::ChaChaPoly => "chachapoly",
    }
}

/// How a tunnel's packets travel now.
pub fn path_of(t: &Tunnel) -> Path {
    match (t.remote(), t.relays.first()) {
        (Some(r), _) => Path::Direct {
            remote: r.to_string(),
        },
        (None, Some(via)) => Path::Relayed {
            via: via.to_string(),
        },
        (None, None) => Path::Direct {
            remote: String::new(),
        },
    }
}

/// The primary tunnel of every peer.
pub fn primary_tunnels(engine: &Engine) -> impl Iterator<Item = &Tunnel> {
    let hm = engine.hostmap();
    hm.tunnels()
        .filter(move |t| hm.primary(&t.vpn_addr) == Some(t.local_index))
}

/// One peer's line in the report.
fn tunnel_info(
    engine: &Engine,
    t: &Tunnel,
    plane: &Plane,
    now: Instant,
    now_unix: i64,
) -> TunnelInfo {
    let traffic = t.session.traffic();
    let cert = &t.peer.cert;
    TunnelInfo {
        name: cert.name().to_string(),
        vpn_addrs: t.peer.vpn_addrs.iter().map(|a| a.to_string()).collect(),
        groups: cert.groups().to_vec(),
        path: path_of(t),
        rtt_ms: plane
            .rtt()
            .sample(&t.vpn_addr)
            .rtt
            .map(|d| d.as_secs_f64() * 1000.0),
        rx_bytes: traffic.rx_bytes,
        tx_bytes: traffic.tx_bytes,
        rx_packets: traffic.rx_packets,
        tx_packets: traffic.tx_packets,
        handshake_age_seconds: now.saturating_duration_since(t.created).as_secs(),
        cipher: cipher_name(engine.config().cipher).to_string(),
        cert_version: version_number(t.cert_version),
        cert_not_after: cert.not_after(),
        cert_days_left: days_left(cert.not_after(), now_unix),
        initiator: t.initiator,
    }
}

/// Whether the lighthouse `lh` answered recently over a tunnel that is up.
fn lighthouse_reachable(engine: &Engine, plane: &Plane, lh: &IpAddr, now: Instant) -> bool {
    engine.hostmap().primary(lh).is_some()
        && plane
            .rtt()
            .sample(lh)
            .replied
            .is_some_and(|t| now.saturating_duration_since(t) <= LIGHTHOUSE_FRESH)
}

/// The whole report, now.
pub fn status(plane: &Plane, facts: &NodeFacts, now: Instant, now_unix: i64) -> Status {
    let engine = plane.lock();
    let cfg = engine.config();
    let pki = engine.pki();
    let mine = pki
        .cert(pki.initiating_version())
        .or_else(|| pki.cert(Version::V2))
        .or_else(|| pki.cert(Version::V1));
    let cert = mine.map(|c| cert_info(c, now_unix)).unwrap_or(CertInfo {
        name: String::new(),
        version: 0,
        fingerprint: String::new(),
        not_after: 0,
        days_left: 0.0,
    });
    let cas: Vec<CertInfo> = pki
        .ca_pool()
        .cas()
        .map(|c| cert_info(c, now_unix))
        .collect();
    let lighthouses: Vec<LighthouseInfo> = cfg
        .lighthouses
        .iter()
        .map(|lh| LighthouseInfo {
            vpn_addr: lh.to_string(),
            reachable: lighthouse_reachable(&engine, plane, lh, now),
        })
        .collect();
    let mut tunnels: Vec<TunnelInfo> = primary_tunnels(&engine)
        .map(|t| tunnel_info(&engine, t, plane, now, now_unix))
        .collect();
    tunnels.sort_by(|a, b| a.name.cmp(&b.name).then(a.vpn_addrs.cmp(&b.vpn_addrs)));
    let cert_days_left = cas
        .iter()
        .map(|c| c.days_left)
        .fold(cert.days_left, f64::min);
    let health = Health {
        lighthouses: lighthouses.len(),
        lighthouses_reachable: lighthouses.iter().filter(|l| l.reachable).count(),
        data_plane_alive: plane.workers_alive(now, WORKER_FRESH),
        cert_days_left,
    };
    Status {
        node: NodeInfo {
            name: cert.name.clone(),
            vpn_addrs: pki
                .networks()
                .iter()
                .map(|n| n.addr().to_string())
                .collect(),
            cert,
            cas,
            listen: facts.listen.clone(),
            am_lighthouse: cfg.am_lighthouse,
            am_relay: cfg.am_relay,
            lighthouses,
            relays: cfg.relays.iter().map(|r| r.to_string()).collect(),
            uptime_seconds: now.saturating_duration_since(facts.started).as_secs(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        },
        tunnels,
        health,
    }
}

/// Send this moment's round-trip probes (the sweep's share and the lighthouses). Call about once
/// a second from the control thread; the outputs carry the probes.
pub fn send_probes(plane: &Plane, now: Instant, out: &mut Outputs) {
    plane.with_engine(|engine| {
        let lighthouses: Vec<IpAddr> = engine
            .config()
            .lighthouses
            .iter()
            .copied()
            .filter(|lh| engine.hostmap().primary(lh).is_some())
            .collect();
        let due = plane.rtt().due(now, &lighthouses, || {
            let live: Vec<IpAddr> = primary_tunnels(engine).map(|t| t.vpn_addr).collect();
            let hm = engine.hostmap();
            plane.rtt().retain(|v| hm.primary(v).is_some());
            live
        });
        for vpn in due {
            if engine.hostmap().primary(&vpn).is_some() {
                let payload = plane.rtt().probe(vpn, now, None);
                engine.send_test_request(now, vpn, &payload, out);
            }
        }
    });
}

/// A peer by certificate name (case-insensitive) or vpn address: its name and vpn address.
pub fn resolve(engine: &Engine, host: &str) -> Option<(String, IpAddr)> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        let name = engine
            .hostmap()
            .primary(&ip)
            .and_then(|i| engine.hostmap().get(i))
            .map(|t| t.peer.cert.name().to_string())
            .unwrap_or_default();
        return Some((name, ip));
    }
    primary_tunnels(engine)
        .find(|t| t.peer.cert.name().eq_ignore_ascii_case(host))
        .map(|t| (t.peer.cert.name().to_string(), t.vpn_addr))
}

/// Days before expiry at which a warning is logged.
pub const EXPIRY_WARNINGS: [u32; 3] = [30, 7, 1];
/// How often certificates are checked for expiry.
pub const EXPIRY_CHECK: Duration = Duration::from_secs(3600);

/// Logs each certificate's expiry warnings once per threshold: ours, our CAs, and our peers'.
#[derive(Default)]
pub struct ExpiryWatch {
    /// (fingerprint, threshold) already warned about.
    warned: HashSet<(String, u32)>,
    last: Option<Instant>,
}

/// Whose certificate a warning is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whose {
    Ours,
    Ca,
    Peer,
}

impl ExpiryWatch {
    /// Check (at most every [`EXPIRY_CHECK`]), logging new warnings; returns them too (tests).
    pub fn check(
        &mut self,
        plane: &Plane,
        now: Instant,
        now_unix: i64,
    ) -> Vec<(Whose, String, u32)> {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < EXPIRY_CHECK)
        {
            return Vec::new();
        }
        self.last = Some(now);
        let engine = plane.lock();
        let pki = engine.pki();
        let mut certs: Vec<(Whose, CertInfo)> = Vec::new();
        for v in [Version::V1, Version::V2] {
            if let Some(c) = pki.cert(v) {
                certs.push((Whose::Ours, cert_info(c, now_unix)));
            }
        }
        for c in pki.ca_pool().cas() {
            certs.push((Whose::Ca, cert_info(c, now_unix)));
        }
        for t in primary_tunnels(&engine) {
            certs.push((Whose::Peer, cert_info(&t.peer.cert, now_unix)));
        }
        drop(engine);
        let present: HashSet<&str> = certs.iter().map(|(_, c)| c.fingerprint.as_str()).collect();
        self.warned.retain(|(f, _)| present.contains(f.as_str()));
        let mut new = Vec::new();
        for (whose, c) in &certs {
            // The smallest threshold reached: one warning per crossing.
            let Some(th) = EXPIRY_WARNINGS
                .iter()
                .rev()
                .find(|d| c.days_left <= f64::from(**d))
                .copied()
            else {
                continue;
            };
            if !self.warned.insert((c.fingerprint.clone(), th)) {
                continue;
            }
            let what = match whose {
                Whose::Ours => "our certificate",
                Whose::Ca => "a trusted CA certificate",
                Whose::Peer => "a peer's certificate",
            };
            if c.days_left <= 0.0 {
                tracing::error!(cert_name = %c.name, fingerprint = %c.fingerprint, "{what} has expired");
            } else {
                tracing::warn!(
                    cert_name = %c.name,
                    fingerprint = %c.fingerprint,
                    days_left = format!("{:.1}", c.days_left),
                    "{what} expires within {th} day(s)"
                );
            }
            new.push((*whose, c.name.clone(), th));
        }
        new
    }
}

#[cfg(test)]
mod tests {

    use nebula_cert::{Curve, Version};
    use nebula_core::engine::Engine;
    use nebula_core::filter::AllowAll;
    use nebula_core::pki::Pki;
    use nebula_core::sim::{static_config, TestCa, SIM_EPOCH_UNIX};
    use rand::SeedableRng;

    use super::*;

    const DAY: i64 = 86_400;

    /// A node whose certificate expires `days` days after the simulation epoch.
    fn plane_with_cert_expiring(days: i64) -> Plane {
        let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
        let (cert, key) = ca.host_with_validity(
            "me",
            "10.1.0.1/16",
            &[],
            SIM_EPOCH_UNIX - DAY,
            SIM_EPOCH_UNIX + days * DAY,
        );
        let pki = Pki::new(vec![cert], key, ca.pool(), None).expect("pki");
        let engine = Engine::new(
            static_config(&[]),
            pki,
            Box::new(AllowAll),
            Box::new(rand::rngs::StdRng::seed_from_u64(1)),
            Instant::now(),
            0,
        );
        Plane::for_test(engine)
    }

    /// Our certificate's warnings come once per threshold as its expiry nears, at most once per
    /// check interval; the CA (ten years left) stays quiet.
    #[test]
    fn expiry_is_warned_once_per_threshold() {
        let plane = plane_with_cert_expiring(40);
        let mut watch = ExpiryWatch::default();
        let t0 = Instant::now();
        assert!(
            watch.check(&plane, t0, SIM_EPOCH_UNIX).is_empty(),
            "40 days left"
        );
        let at = |days_before: f64| SIM_EPOCH_UNIX + 40 * DAY - (days_before * DAY as f64) as i64;
        let t = std::cell::Cell::new(t0);
        let next = |watch: &mut ExpiryWatch, unix: i64| {
            t.set(t.get() + EXPIRY_CHECK);
            watch.check(&plane, t.get(), unix)
        };
        assert_eq!(
            next(&mut watch, at(29.0)),
            vec![(Whose::Ours, "me".into(), 30)]
        );
        assert!(
            next(&mut watch, at(20.0)).is_empty(),
            "still within 30: warned already"
        );
        assert_eq!(
            next(&mut watch, at(2.0)),
            vec![(Whose::Ours, "me".into(), 7)]
        );
        // Within the hour nothing is checked.
        assert!(watch.check(&plane, t.get(), at(0.5)).is_empty());
        assert_eq!(
            next(&mut watch, at(0.5)),
            vec![(Whose::Ours, "me".into(), 1)]
        );
        assert!(
            next(&mut watch, at(-1.0)).is_empty(),
            "expired: already at the last threshold"
        );
    }

    /// The report shows our certificate and CA, and health counts nothing unreachable when no
    /// lighthouse is configured; a stalled worker makes the data plane dead.
    #[test]
    fn the_report_and_health() {
        let mut plane = plane_with_cert_expiring(2);
        plane.set_workers(1);
        let facts = NodeFacts {
            listen: vec!["0.0.0.0:4242".into()],
            started: Instant::now(),
        };
        let now = Instant::now();
        let s = status(&plane, &facts, now, SIM_EPOCH_UNIX);
        assert_eq!(s.node.name, "me");
        assert_eq!(s.node.vpn_addrs, vec!["10.1.0.1".to_string()]);
        assert!((s.node.cert.days_left - 2.0).abs() < 1e-9);
        assert_eq!(s.node.cas.len(), 1);
        assert!((s.health.cert_days_left - 2.0).abs() < 1e-9);
        assert_eq!(
            (s.health.lighthouses, s.health.lighthouses_reachable),
            (0, 0)
        );
        assert!(s.health.data_plane_alive);
        assert!(s.tunnels.is_empty());
        let later = now + WORKER_FRESH + Duration::from_secs(1);
        assert!(
            !status(&plane, &facts, later, SIM_EPOCH_UNIX)
                .health
                .data_plane_alive
        );
        plane.beat(0);
        assert!(
            status(&plane, &facts, Instant::now(), SIM_EPOCH_UNIX)
                .health
                .data_plane_alive
        );
    }
}
