//! Chaos soak: 50 hosts, two lighthouses and a relay on a lossy, duplicating, reordering network
//! with NAT rebinding and restarts; delivery, firewall and table-bound invariants checked each second.
//!
//! `soak_short` runs one seed briefly in every `cargo test`; `soak_long` (ignored) is the long run,
//! driven by `scripts/soak.sh [SEEDS] [SECONDS]` through `SOAK_SEEDS` and `SOAK_SECONDS`.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nebula_cert::{Curve, Version};
use nebula_core::engine::EngineConfig;
use nebula_core::filter::GroupFirewall;
use nebula_core::firewall::{Firewall, FirewallConfig};
use nebula_core::hostmap::{MAX_RELAYS, MAX_RELAYS_PER_HOST, MAX_TUNNELS_PER_VPN_ADDR};
use nebula_core::pki::Pki;
use nebula_core::sim::{rule_from_anyone, udp_packet, Nat, NatKind, NetConfig, Sim, TestCa};
use nebula_lighthouse::AddressBook;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Hosts in the long run (the short run in every `cargo test` uses fewer: debug builds are slow).
const HOSTS: usize = 50;
const LH1: (&str, &str) = ("10.60.0.1", "203.0.113.1:4242");
const LH2: (&str, &str) = ("10.60.0.2", "203.0.113.2:4242");
const RELAY: (&str, &str) = ("10.60.0.3", "203.0.113.3:4242");
/// The port the firewall admits inbound (UDP); everything else inbound is dropped.
const ALLOWED_PORT: u16 = 2000;
const FORBIDDEN_PORT: u16 = 3000;
/// Conntrack cap of every node (a multiple of the 64 shards, so the cap is exact).
const CONNTRACK_MAX: usize = 1024;
/// Hosts' pending-handshake cap and queued-packet byte budget: small, so chaos reaches them.
const MAX_PENDING: usize = 32;
const MAX_QUEUED_BYTES: usize = 16 * 1024;
const LIGHTHOUSE_INTERVAL: Duration = Duration::from_secs(10);
/// Inside packets older than this are forgotten: one delivered later counts as a replay (queued
/// packets wait at most a handshake's lifetime, a few seconds).
const STALE_AFTER: Duration = Duration::from_secs(120);
/// After the faults stop, every allowed pair must get a packet through within this bound. A stale
/// tunnel (its peer's NAT rebound or the peer restarted silently) is found dead by the connection
/// check (connection-alive 5 s + pending-deletion 10 s), the peer's new address reaches the
/// lighthouses within one lighthouse interval (10 s), and a new handshake (or relay set-up) takes
/// up to its timeout (100 ms x (1+..+10) = 5.5 s). Twice (alive + deletion + handshake) = 41 s,
/// plus a lighthouse interval for the re-registration, rounded up to a minute.
const RECOVERY_BOUND: Duration = Duration::from_secs(60);

/// The simulated second a soak is at, for a panic's report.
static NOW_SECS: AtomicU64 = AtomicU64::new(0);

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Lighthouse,
    Relay,
    Host,
}

/// What the soak needs to rebuild a node (restart) and to check its bounds.
struct Member {
    index: usize,
    role: Role,
    vpn: Ipv4Addr,
    cfg: EngineConfig,
    pki: Pki,
    firewall: Arc<GroupFirewall>,
}

/// An inside packet on its way: where it must land and whether it may.
struct Sent {
    to: usize,
    allowed: bool,
    at: Instant,
}

#[derive(Default)]
struct Stats {
    allowed_sent: u64,
    allowed_delivered: u64,
    forbidden_sent: u64,
    restarts: u64,
    rebinds: u64,
    max_pending: usize,
    max_tunnels_per_vpn: usize,
    max_relays: usize,
    /// The largest relay table at the latest check (a leak would make this climb).
    relays_now: usize,
    max_relays_per_host: usize,
    max_conntrack: usize,
    max_queued_bytes: usize,
    recovery: Duration,
}

struct Soak {
    seed: u64,
    sim: Sim,
    members: Vec<Member>,
    rng: StdRng,
    next_id: u64,
    outstanding: HashMap<u64, Sent>,
    stats: Stats,
    start: Instant,
}

fn firewall_config() -> FirewallConfig {
    FirewallConfig {
        outbound: vec![rule_from_anyone("any", "any")],
        inbound: vec![rule_from_anyone("udp", &ALLOWED_PORT.to_string())],
        udp_timeout: Duration::from_secs(60),
        conntrack_max_entries: CONNTRACK_MAX,
        ..FirewallConfig::default()
    }
}

fn new_firewall(pki: &Pki) -> Arc<GroupFirewall> {
    let fw = Firewall::new(&firewall_config(), pki.networks(), pki.unsafe_networks())
        .expect("soak firewall config");
    Arc::new(GroupFirewall::new(fw))
}

/// Config of a lighthouse client (a host or the relay) that reports `advertise`.
fn client_cfg(advertise: SocketAddr) -> EngineConfig {
    let mut static_host_map: HashMap<IpAddr, Vec<SocketAddr>> = HashMap::new();
    for (vpn, addr) in [LH1, LH2] {
        static_host_map.insert(ip(vpn), vec![sa(addr)]);
    }
    EngineConfig {
        static_host_map,
        lighthouses: vec![ip(LH1.0), ip(LH2.0)],
        lighthouse_interval: LIGHTHOUSE_INTERVAL,
        advertise_addrs: vec![advertise],
        relays: vec![ip(RELAY.0)],
        max_pending_handshakes: MAX_PENDING,
        max_queued_bytes: MAX_QUEUED_BYTES,
        ..EngineConfig::default()
    }
}

impl Soak {
    fn new(seed: u64, hosts: usize) -> Soak {
        let ca = TestCa::new("soak-ca", Curve::Curve25519, Version::V1);
        let mut sim = Sim::new(seed);
        let mut members = Vec::new();
        let mut add =
            |sim: &mut Sim, name: &str, vpn: &str, addr: &str, role: Role, cfg: EngineConfig| {
                let pki = ca.pki(name, &format!("{vpn}/16"));
                let firewall = new_firewall(&pki);
                let index = sim.add_node_with_filter(
                    name,
                    addr,
                    cfg.clone(),
                    pki.clone(),
                    Box::new(Arc::clone(&firewall)),
                );
                if role == Role::Lighthouse {
                    sim.nodes[index]
                        .engine
                        .set_lighthouse_server(Box::new(AddressBook::new()));
                }
                members.push(Member {
                    index,
                    role,
                    vpn: vpn.parse().expect("vpn"),
                    cfg,
                    pki,
                    firewall,
                });
            };
        for (name, (vpn, addr)) in [("lh1", LH1), ("lh2", LH2)] {
            let cfg = EngineConfig {
                am_lighthouse: true,
                use_relays: false,
                ..EngineConfig::default()
            };
            add(&mut sim, name, vpn, addr, Role::Lighthouse, cfg);
        }
        let relay_cfg = EngineConfig {
            am_relay: true,
            use_relays: false,
            relays: Vec::new(),
            ..client_cfg(sa(RELAY.1))
        };
        add(&mut sim, "relay", RELAY.0, RELAY.1, Role::Relay, relay_cfg);
        // Two in five hosts are public, two sit behind cone NATs, one behind a symmetric NAT.
        for k in 0..hosts {
            let vpn = format!("10.60.1.{}", k + 1);
            let addr = match k % 5 {
                0 | 1 => format!("203.0.113.{}:4242", 10 + k),
                kind => {
                    let nat_kind = if kind == 4 {
                        NatKind::Symmetric
                    } else {
                        NatKind::RestrictedCone
                    };
                    sim.nats.push(Nat::new(
                        &format!("192.168.{}.0/24", k + 1),
                        &format!("198.51.100.{}", k + 1),
                        nat_kind,
                    ));
                    format!("192.168.{}.10:4242", k + 1)
                }
            };
            let cfg = client_cfg(sa(&addr));
            add(&mut sim, &format!("host{k}"), &vpn, &addr, Role::Host, cfg);
        }
        let start = sim.now;
        Soak {
            seed,
            sim,
            members,
            rng: StdRng::seed_from_u64(seed ^ 0x5eed_50a6),
            next_id: 0,
            outstanding: HashMap::new(),
            stats: Stats::default(),
            start,
        }
    }

    fn secs(&self) -> u64 {
        (self.sim.now - self.start).as_secs()
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "soak seed {} at simulated second {}: {what}",
            self.seed,
            self.secs()
        )
    }

    fn hosts(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|m| self.members[*m].role == Role::Host)
            .collect()
    }

    /// Send a tagged inside packet from member `from` to member `to`; `spoof` puts another host's
    /// vpn address in the source (the receiver's firewall must refuse it).
    fn send(
        &mut self,
        from: usize,
        to: usize,
        dport: u16,
        sport: u16,
        spoof: Option<usize>,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let src = self.members[spoof.unwrap_or(from)].vpn;
        let dst = self.members[to].vpn;
        let mut payload = b"SOAK".to_vec();
        payload.extend_from_slice(&id.to_be_bytes());
        let packet = udp_packet(src, dst, sport, dport, &payload);
        let allowed = dport == ALLOWED_PORT && spoof.is_none();
        if allowed {
            self.stats.allowed_sent += 1;
        } else {
            self.stats.forbidden_sent += 1;
        }
        self.outstanding.insert(
            id,
            Sent {
                to,
                allowed,
                at: self.sim.now,
            },
        );
        let node = self.members[from].index;
        self.sim.inside(node, &packet);
        id
    }

    /// Random traffic for one step: allowed packets, forbidden-port ones and spoofed sources.
    fn random_traffic(&mut self, hosts: &[usize]) {
        for n in 0..4 {
            let a = hosts[self.rng.gen_range(0..hosts.len())];
            let mut b = hosts[self.rng.gen_range(0..hosts.len())];
            if a == b {
                b = hosts[(hosts.iter().position(|h| *h == a).unwrap_or(0) + 1) % hosts.len()];
            }
            let sport = 10_000 + self.rng.gen_range(0..8);
            match n {
                0 | 1 => {
                    self.send(a, b, ALLOWED_PORT, sport, None);
                }
                2 if self.rng.gen_bool(0.5) => {
                    self.send(a, b, FORBIDDEN_PORT, sport, None);
                }
                2 => {
                    let other = hosts
                        .iter()
                        .copied()
                        .find(|h| *h != a && *h != b)
                        .unwrap_or(a);
                    self.send(a, b, ALLOWED_PORT, sport, Some(other));
                }
                _ => {}
            }
        }
    }

    /// Take every TUN's packets and check each: tagged, to its destination, allowed, first time.
    /// Returns the ids delivered.
    fn check_deliveries(&mut self) -> Vec<u64> {
        let mut ids = Vec::new();
        for m in 0..self.members.len() {
            let node = self.members[m].index;
            let tun = std::mem::take(&mut self.sim.nodes[node].tun);
            for p in tun {
                let Some(id) = p
                    .get(28..40)
                    .filter(|t| t.starts_with(b"SOAK"))
                    .and_then(|t| t[4..].try_into().ok())
                    .map(u64::from_be_bytes)
                else {
                    self.fail(&format!(
                        "{} got an untagged packet on its TUN: {p:02x?}",
                        self.sim.nodes[node].name
                    ));
                };
                let Some(sent) = self.outstanding.remove(&id) else {
                    self.fail(&format!(
                        "packet {id} reached {}'s TUN twice (or a replay, or over {STALE_AFTER:?} late)",
                        self.sim.nodes[node].name
                    ));
                };
                if sent.to != m {
                    self.fail(&format!(
                        "packet {id} for {} reached {}",
                        self.sim.nodes[self.members[sent.to].index].name, self.sim.nodes[node].name
                    ));
                }
                if !sent.allowed {
                    self.fail(&format!(
                        "packet {id} that the firewall forbids reached {}",
                        self.sim.nodes[node].name
                    ));
                }
                self.stats.allowed_delivered += 1;
                ids.push(id);
            }
        }
        let cutoff = self.sim.now.checked_sub(STALE_AFTER);
        if let Some(cutoff) = cutoff {
            self.outstanding.retain(|_, s| s.at >= cutoff);
        }
        ids
    }

    /// Every table of every node within its bound.
    fn check_bounds(&mut self) {
        let vpns: Vec<IpAddr> = self.members.iter().map(|m| IpAddr::V4(m.vpn)).collect();
        self.stats.relays_now = 0;
        for m in 0..self.members.len() {
            let member = &self.members[m];
            let engine = &self.sim.nodes[member.index].engine;
            let name = &self.sim.nodes[member.index].name;
            let pending = engine.pending_handshakes();
            if pending > member.cfg.max_pending_handshakes {
                self.fail(&format!(
                    "{name}: {pending} pending handshakes > {}",
                    member.cfg.max_pending_handshakes
                ));
            }
            let hostmap = engine.hostmap();
            let per_vpn = hostmap
                .vpn_addrs()
                .map(|v| hostmap.tunnels_for(v).len())
                .max()
                .unwrap_or(0);
            if per_vpn > MAX_TUNNELS_PER_VPN_ADDR {
                self.fail(&format!("{name}: {per_vpn} tunnels to one vpn address"));
            }
            let relays = engine.relays();
            if relays.len() > MAX_RELAYS {
                self.fail(&format!("{name}: {} relays", relays.len()));
            }
            let per_host = vpns
                .iter()
                .map(|v| relays.involving(*v).len())
                .max()
                .unwrap_or(0);
            if per_host > MAX_RELAYS_PER_HOST {
                self.fail(&format!("{name}: {per_host} relays for one host"));
            }
            let conntrack = member.firewall.conntrack().len();
            if conntrack > CONNTRACK_MAX {
                self.fail(&format!("{name}: {conntrack} conntrack entries"));
            }
            let queued = engine.queued_bytes();
            if queued > member.cfg.max_queued_bytes {
                self.fail(&format!(
                    "{name}: {queued} queued bytes > {}",
                    member.cfg.max_queued_bytes
                ));
            }
            let s = &mut self.stats;
            s.max_pending = s.max_pending.max(pending);
            s.max_tunnels_per_vpn = s.max_tunnels_per_vpn.max(per_vpn);
            s.max_relays = s.max_relays.max(relays.len());
            s.relays_now = s.relays_now.max(relays.len());
            s.max_relays_per_host = s.max_relays_per_host.max(per_host);
            s.max_conntrack = s.max_conntrack.max(conntrack);
            s.max_queued_bytes = s.max_queued_bytes.max(queued);
        }
        // The logs would grow without end over a long run; the checks above read only state.
        self.sim.wire_log.clear();
        for n in &mut self.sim.nodes {
            n.events.clear();
        }
    }

    /// Restart member `m`: a new engine, a new (empty) firewall, its keys and config kept.
    fn restart(&mut self, m: usize) {
        let firewall = new_firewall(&self.members[m].pki);
        let member = &mut self.members[m];
        member.firewall = Arc::clone(&firewall);
        let (index, cfg, pki) = (member.index, member.cfg.clone(), member.pki.clone());
        self.sim
            .restart_node_with_filter(index, cfg, pki, Box::new(firewall));
        if self.members[m].role == Role::Lighthouse {
            self.sim.nodes[index]
                .engine
                .set_lighthouse_server(Box::new(AddressBook::new()));
        }
        self.stats.restarts += 1;
    }

    /// One simulated second of chaos: new fault settings now and then, restarts, NAT rebinding,
    /// random traffic in four steps, then the checks.
    fn chaos_second(&mut self, hosts: &[usize]) {
        if self.secs().is_multiple_of(100) {
            self.sim.net = NetConfig {
                latency: Duration::from_millis(self.rng.gen_range(1..40)),
                jitter: Duration::from_millis(self.rng.gen_range(0..60)),
                loss: self.rng.gen_range(0.0..0.25),
                duplicate: self.rng.gen_range(0.0..0.1),
            };
        }
        if self.rng.gen_bool(0.01) {
            let m = self.rng.gen_range(0..self.members.len());
            self.restart(m);
        }
        if !self.sim.nats.is_empty() && self.rng.gen_bool(0.02) {
            let k = self.rng.gen_range(0..self.sim.nats.len());
            self.sim.nats[k].reset();
            self.stats.rebinds += 1;
        }
        for _ in 0..4 {
            self.random_traffic(hosts);
            self.sim.run_for(Duration::from_millis(250));
        }
        NOW_SECS.store(self.secs(), Ordering::Relaxed);
        self.check_deliveries();
        self.check_bounds();
    }

    /// Faults off; every ordered pair of hosts must get an allowed packet through within
    /// [`RECOVERY_BOUND`]. Each unanswered pair is probed once a second.
    fn recover(&mut self, hosts: &[usize]) {
        self.sim.net = NetConfig::default();
        let stopped = self.sim.now;
        let mut waiting: HashSet<(usize, usize)> = hosts
            .iter()
            .flat_map(|a| hosts.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a != b)
            .collect();
        let mut probes: HashMap<u64, (usize, usize)> = HashMap::new();
        while !waiting.is_empty() {
            if self.sim.now - stopped > RECOVERY_BOUND {
                let mut left: Vec<String> = waiting
                    .iter()
                    .take(10)
                    .map(|(a, b)| {
                        format!(
                            "{} -> {}",
                            self.sim.nodes[self.members[*a].index].name,
                            self.sim.nodes[self.members[*b].index].name
                        )
                    })
                    .collect();
                left.sort();
                self.fail(&format!(
                    "{} host pairs still without a packet through {RECOVERY_BOUND:?} after the faults stopped, e.g. {left:?}",
                    waiting.len()
                ));
            }
            let mut pairs: Vec<(usize, usize)> = waiting.iter().copied().collect();
            pairs.sort_unstable();
            for (a, b) in pairs {
                let id = self.send(a, b, ALLOWED_PORT, 9999, None);
                probes.insert(id, (a, b));
            }
            self.sim.run_for(Duration::from_secs(1));
            NOW_SECS.store(self.secs(), Ordering::Relaxed);
            for id in self.check_deliveries() {
                if let Some(pair) = probes.remove(&id) {
                    waiting.remove(&pair);
                }
            }
            self.check_bounds();
        }
        self.stats.recovery = self.sim.now - stopped;
    }
}

/// Run one seed for `seconds` simulated seconds (the last stretch is the recovery check).
fn run_seed(seed: u64, hosts: usize, seconds: u64) -> Stats {
    let run = catch_unwind(AssertUnwindSafe(|| {
        let mut soak = Soak::new(seed, hosts);
        let wall = Instant::now();
        let hosts = soak.hosts();
        // Let everyone register before the faults start.
        soak.sim.run_for(Duration::from_secs(5));
        soak.check_bounds();
        while soak.secs() < seconds {
            soak.chaos_second(&hosts);
            if soak.secs().is_multiple_of(10_000) && soak.secs() < seconds {
                report(seed, soak.secs(), &soak.stats, wall.elapsed());
            }
        }
        soak.recover(&hosts);
        soak.stats
    }));
    match run {
        Ok(stats) => stats,
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "soak seed {seed} panicked near simulated second {}: {msg}",
                NOW_SECS.load(Ordering::Relaxed)
            )
        }
    }
}

fn report(seed: u64, seconds: u64, s: &Stats, wall: Duration) {
    let recovery = if s.recovery.is_zero() {
        "recovery not checked yet".to_string()
    } else {
        format!(
            "all pairs through {:?} after the faults stopped",
            s.recovery
        )
    };
    eprintln!(
        "soak seed {seed}: {seconds} s simulated in {wall:.1?}; allowed {}/{} delivered, {} forbidden sent (none delivered); {} restarts, {} NAT rebinds; max pending {} (cap {MAX_PENDING}), tunnels/vpn {} (cap {MAX_TUNNELS_PER_VPN_ADDR}), relays {} (now {}, cap {MAX_RELAYS}), relays/host {} (cap {MAX_RELAYS_PER_HOST}), conntrack {} (cap {CONNTRACK_MAX}), queued bytes {} (cap {MAX_QUEUED_BYTES}); {recovery}",
        s.allowed_delivered,
        s.allowed_sent,
        s.forbidden_sent,
        s.restarts,
        s.rebinds,
        s.max_pending,
        s.max_tunnels_per_vpn,
        s.max_relays,
        s.relays_now,
        s.max_relays_per_host,
        s.max_conntrack,
        s.max_queued_bytes,
    );
}

#[test]
fn soak_short() {
    let seconds = 300;
    let wall = Instant::now();
    let stats = run_seed(1, 8, seconds);
    report(1, seconds, &stats, wall.elapsed());
    // The run must have done something: traffic flowed, faults happened.
    assert!(stats.allowed_delivered > stats.allowed_sent / 2);
    assert!(stats.forbidden_sent > 0 && stats.restarts > 0 && stats.rebinds > 0);
}

/// The long run: `SOAK_SEEDS` seeds (default 3) of `SOAK_SECONDS` simulated seconds (default
/// 100,000). Run it with `scripts/soak.sh`.
#[test]
#[ignore = "long: run with scripts/soak.sh"]
fn soak_long() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let seeds = env("SOAK_SEEDS", 3);
    let seconds = env("SOAK_SECONDS", 100_000);
    let first = env("SOAK_FIRST_SEED", 1);
    for seed in first..first + seeds {
        let wall = Instant::now();
        let stats = run_seed(seed, HOSTS, seconds);
        report(seed, seconds, &stats, wall.elapsed());
    }
}
