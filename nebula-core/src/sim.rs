//! The simulation test kit: many engines in one process on a fake clock, joined by a fake network
//! that drops, duplicates, reorders, delays and NATs datagrams. Deterministic for a given seed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use nebula_cert::cert::{Certificate, TbsCertificate};
use nebula_cert::pool::CaPool;
use nebula_cert::signing::CaSigningKey;
use nebula_cert::{keys, Curve, Version};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::dataplane::{DataTable, FastInside, FastOutside};
use crate::engine::{Engine, EngineConfig, Event, InsideOutcome, Outputs, OutsideOutcome};
use crate::filter::{AllowAll, PacketFilter};
use crate::firewall::RuleConfig;
use crate::pki::Pki;

/// 2026-01-01T00:00:00Z, the simulated wall clock's start.
pub const SIM_EPOCH_UNIX: i64 = 1_767_225_600;

/// A certificate authority for tests.
pub struct TestCa {
    pub cert: Certificate,
    pub key: CaSigningKey,
    pub curve: Curve,
    pub version: Version,
}

impl TestCa {
    /// A CA valid from a year before to ten years after [`SIM_EPOCH_UNIX`].
    pub fn new(name: &str, curve: Curve, version: Version) -> TestCa {
        let key = keys::generate_ca_key(curve);
        let tbs = TbsCertificate {
            version,
            name: name.to_string(),
            networks: Vec::new(),
            unsafe_networks: Vec::new(),
            groups: Vec::new(),
            is_ca: true,
            not_before: SIM_EPOCH_UNIX - 365 * 86400,
            not_after: SIM_EPOCH_UNIX + 3650 * 86400,
            public_key: keys::ca_public_key_bytes(&key),
            curve,
        };
        let cert = tbs.sign(None, &key).expect("self-signed test CA");
        TestCa {
            cert,
            key,
            curve,
            version,
        }
    }

    /// A host certificate and its private key, valid for `[not_before, not_after]`.
    pub fn host_with_validity(
        &self,
        name: &str,
        network: &str,
        groups: &[&str],
        not_before: i64,
        not_after: i64,
    ) -> (Certificate, Vec<u8>) {
        let (private, public) = keys::keygen(self.curve);
        let net: IpNet = network.parse().expect("test network");
        let tbs = TbsCertificate {
            version: self.version,
            name: name.to_string(),
            networks: vec![net],
            unsafe_networks: Vec::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            is_ca: false,
            not_before,
            not_after,
            public_key: public,
            curve: self.curve,
        };
        let cert = tbs
            .sign(Some(&self.cert), &self.key)
            .expect("test host cert");
        (cert, private.to_vec())
    }

    /// A host certificate valid for the whole simulation.
    pub fn host(&self, name: &str, network: &str, groups: &[&str]) -> (Certificate, Vec<u8>) {
        self.host_with_validity(
            name,
            network,
            groups,
            SIM_EPOCH_UNIX - 86400,
            SIM_EPOCH_UNIX + 3000 * 86400,
        )
    }

    pub fn pool(&self) -> CaPool {
        let mut p = CaPool::new();
        p.add_ca(self.cert.clone()).expect("test CA into pool");
        p
    }

    /// A `Pki` for a host of this CA.
    pub fn pki(&self, name: &str, network: &str) -> Pki {
        let (cert, key) = self.host(name, network, &[]);
        Pki::new(vec![cert], key, self.pool(), None).expect("test pki")
    }
}

/// How a NAT maps flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatKind {
    /// Endpoint-independent mapping, address-restricted filtering (a typical home router).
    RestrictedCone,
    /// A new public port per destination; only that destination may answer.
    Symmetric,
}

/// One NAT: nodes whose underlay address is inside `inside` appear as `public`.
#[derive(Clone, Debug)]
pub struct Nat {
    pub inside: IpNet,
    pub public: IpAddr,
    pub kind: NatKind,
    /// (private source, destination or None for cone) -> public port.
    mappings: HashMap<(SocketAddr, Option<SocketAddr>), u16>,
    /// public port -> (private address, addresses it sent to).
    reverse: HashMap<u16, (SocketAddr, Vec<SocketAddr>)>,
    next_port: u16,
}

impl Nat {
    pub fn new(inside: &str, public: &str, kind: NatKind) -> Nat {
        Nat {
            inside: inside.parse().expect("nat inside network"),
            public: public.parse().expect("nat public address"),
            kind,
            mappings: HashMap::new(),
            reverse: HashMap::new(),
            next_port: 40000,
        }
    }

    /// Forget every mapping (the router rebooted).
    pub fn reset(&mut self) {
        self.mappings.clear();
        self.reverse.clear();
        self.next_port = self.next_port.wrapping_add(1000).max(40000);
    }

    fn outbound(&mut self, from: SocketAddr, to: SocketAddr) -> SocketAddr {
        let key = match self.kind {
            NatKind::RestrictedCone => (from, None),
            NatKind::Symmetric => (from, Some(to)),
        };
        let port = match self.mappings.get(&key) {
            Some(p) => *p,
            None => {
                let p = self.next_port;
                self.next_port = self.next_port.wrapping_add(1).max(40000);
                self.mappings.insert(key, p);
                self.reverse.insert(p, (from, Vec::new()));
                p
            }
        };
        if let Some((_, peers)) = self.reverse.get_mut(&port) {
            if !peers.contains(&to) {
                peers.push(to);
            }
        }
        SocketAddr::new(self.public, port)
    }

    fn inbound(&self, from: SocketAddr, to: SocketAddr) -> Option<SocketAddr> {
        if to.ip() != self.public {
            return None;
        }
        let (private, peers) = self.reverse.get(&to.port())?;
        if peers.iter().any(|p| p.ip() == from.ip()) {
            Some(*private)
        } else {
            None
        }
    }
}

/// A datagram in flight.
#[derive(Clone, Debug)]
pub struct Datagram {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub payload: Vec<u8>,
}

/// Fault settings of the fake network.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub latency: Duration,
    /// Extra random delay up to this much (reorders packets).
    pub jitter: Duration,
    pub loss: f64,
    pub duplicate: f64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

/// One simulated host.
pub struct SimNode {
    pub name: String,
    pub engine: Engine,
    /// The node's own (private, if behind a NAT) underlay address.
    pub addr: SocketAddr,
    /// Packets delivered to this node's TUN.
    pub tun: Vec<Vec<u8>>,
    pub events: Vec<Event>,
    /// The engine's latest data-plane snapshot, used first for every packet as the node does.
    pub table: Option<Arc<DataTable>>,
    /// Packets the snapshot handled without the engine: (from the TUN, from the network).
    pub fast_packets: (u64, u64),
}

/// The whole simulation.
pub struct Sim {
    pub now: Instant,
    start: Instant,
    pub nodes: Vec<SimNode>,
    pub net: NetConfig,
    pub nats: Vec<Nat>,
    /// Every datagram handed to the network, after NAT, with the time it was sent.
    pub wire_log: Vec<(Instant, Datagram)>,
    /// Blocked (from ip, to ip) pairs: a firewall between two places.
    pub blocked: Vec<(IpAddr, IpAddr)>,
    in_flight: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    flights: HashMap<usize, Datagram>,
    seq: u64,
    rng: StdRng,
    /// Use the data-plane snapshot before the engine (on by default, as the node does).
    pub fast_path: bool,
}

impl Sim {
    pub fn new(seed: u64) -> Sim {
        let now = Instant::now();
        Sim {
            now,
            start: now,
            nodes: Vec::new(),
            net: NetConfig::default(),
            nats: Vec::new(),
            wire_log: Vec::new(),
            blocked: Vec::new(),
            in_flight: BinaryHeap::new(),
            flights: HashMap::new(),
            seq: 0,
            rng: StdRng::seed_from_u64(seed),
            fast_path: true,
        }
    }

    /// Simulated Unix time in nanoseconds.
    pub fn unix_nanos(&self) -> u64 {
        let base = u64::try_from(SIM_EPOCH_UNIX).unwrap_or(0) * 1_000_000_000;
        base + u64::try_from((self.now - self.start).as_nanos()).unwrap_or(0)
    }

    /// Add a node with the given config and a filter; returns its index.
    pub fn add_node(&mut self, name: &str, addr: &str, cfg: EngineConfig, pki: Pki) -> usize {
        self.add_node_with_filter(name, addr, cfg, pki, Box::new(AllowAll))
    }

    pub fn add_node_with_filter(
        &mut self,
        name: &str,
        addr: &str,
        cfg: EngineConfig,
        pki: Pki,
        filter: Box<dyn PacketFilter>,
    ) -> usize {
        let seed = self.rng.gen::<u64>();
        let engine = Engine::new(
            cfg,
            pki,
            filter,
            Box::new(StdRng::seed_from_u64(seed)),
            self.now,
            self.unix_nanos(),
        );
        self.nodes.push(SimNode {
            name: name.to_string(),
            engine,
            addr: addr.parse().expect("sim node address"),
            tun: Vec::new(),
            events: Vec::new(),
            table: None,
            fast_packets: (0, 0),
        });
        let i = self.nodes.len() - 1;
        let mut out = Outputs::default();
        let now = self.now;
        self.nodes[i].engine.start(now, &mut out);
        self.dispatch(i, out);
        i
    }

    /// Replace a node's engine (a restart: new indexes, new keys).
    pub fn restart_node(&mut self, i: usize, cfg: EngineConfig, pki: Pki) {
        self.restart_node_with_filter(i, cfg, pki, Box::new(AllowAll));
    }

    /// Replace a node's engine, giving the new one `filter` (a restart of a node with a firewall;
    /// whatever state the filter carries is the caller's to keep or drop).
    pub fn restart_node_with_filter(
        &mut self,
        i: usize,
        cfg: EngineConfig,
        pki: Pki,
        filter: Box<dyn PacketFilter>,
    ) {
        let seed = self.rng.gen::<u64>();
        self.nodes[i].engine = Engine::new(
            cfg,
            pki,
            filter,
            Box::new(StdRng::seed_from_u64(seed)),
            self.now,
            self.unix_nanos(),
        );
        self.nodes[i].table = None;
        let mut out = Outputs::default();
        let now = self.now;
        self.nodes[i].engine.start(now, &mut out);
        self.dispatch(i, out);
    }

    /// SIGHUP node `i` with new credentials (same settings, an allow-everything rule set).
    pub fn reload_pki(&mut self, i: usize, pki: Pki) {
        let firewall = crate::firewall::Firewall::new(
            &crate::firewall::FirewallConfig::default(),
            pki.networks(),
            pki.unsafe_networks(),
        )
        .expect("default firewall");
        let config = self.nodes[i].engine.config().clone();
        let mut out = Outputs::default();
        let now = self.now;
        self.nodes[i].engine.reload(
            now,
            crate::engine::Reload {
                config,
                pki,
                firewall,
            },
            &mut out,
        );
        self.dispatch(i, out);
    }

    /// The address others see for node `i` (its NAT's public side once it has sent something).
    pub fn node_addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].addr
    }

    /// Hand an IP packet to node `i` as if read from its TUN.
    pub fn inside(&mut self, i: usize, packet: &[u8]) -> InsideOutcome {
        let mut buf = vec![0u8; packet.len() + 64];
        buf[16..16 + packet.len()].copy_from_slice(packet);
        let mut out = Outputs::default();
        let now = self.now;
        self.refresh_table(i);
        if let Some(table) = self.nodes[i].table.clone().filter(|_| self.fast_path) {
            match table.seal_inside(now, &mut buf, packet.len()) {
                FastInside::Send { to, len, promote } => {
                    self.nodes[i].fast_packets.0 += 1;
                    let from = self.nodes[i].addr;
                    self.send(from, to, buf[..len].to_vec());
                    if let Some((idx, count)) = promote {
                        self.nodes[i]
                            .engine
                            .sent_from_tun(now, idx, count, &mut out);
                    }
                    self.dispatch(i, out);
                    return InsideOutcome::Send { to, len };
                }
                FastInside::Dropped(reason) => {
                    self.nodes[i].fast_packets.0 += 1;
                    return InsideOutcome::Dropped(reason);
                }
                FastInside::Rejected(reason) => {
                    self.nodes[i].fast_packets.0 += 1;
                    if let Some(reply) = crate::filter::reject_reply(packet) {
                        self.nodes[i].tun.push(reply);
                    }
                    return InsideOutcome::Dropped(reason);
                }
                FastInside::Engine => {}
            }
        }
        let r = self.nodes[i]
            .engine
            .handle_inside(now, &mut buf, packet.len(), &mut out);
        if let InsideOutcome::Send { to, len } = r {
            let from = self.nodes[i].addr;
            self.send(from, to, buf[..len].to_vec());
        }
        self.dispatch(i, out);
        r
    }

    /// Put a raw datagram on the wire (an attacker, a replay).
    pub fn inject(&mut self, from: SocketAddr, to: SocketAddr, payload: Vec<u8>) {
        self.send(from, to, payload);
    }

    /// Take the engine's new data-plane snapshot, if it made one.
    fn refresh_table(&mut self, i: usize) {
        if let Some(t) = self.nodes[i].engine.data_table() {
            self.nodes[i].table = Some(t);
        }
    }

    /// Apply a node's outputs: transmits onto the network, TUN packets and events recorded.
    pub fn dispatch(&mut self, i: usize, out: Outputs) {
        let from = self.nodes[i].addr;
        for t in out.transmits {
            self.send(from, t.to, t.payload);
        }
        self.nodes[i].tun.extend(out.tun);
        self.nodes[i].events.extend(out.events);
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, payload: Vec<u8>) {
        // Source NAT.
        let mut from = from;
        for nat in &mut self.nats {
            if nat.inside.contains(&from.ip()) && !nat.inside.contains(&to.ip()) {
                from = nat.outbound(from, to);
            }
        }
        let d = Datagram { from, to, payload };
        self.wire_log.push((self.now, d.clone()));
        if self
            .blocked
            .iter()
            .any(|(a, b)| *a == from.ip() && *b == to.ip())
        {
            return;
        }
        if self.net.loss > 0.0 && self.rng.gen_bool(self.net.loss.min(1.0)) {
            return;
        }
        let copies = if self.net.duplicate > 0.0 && self.rng.gen_bool(self.net.duplicate.min(1.0)) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = if self.net.jitter.is_zero() {
                Duration::ZERO
            } else {
                let ns = u64::try_from(self.net.jitter.as_nanos()).unwrap_or(u64::MAX);
                Duration::from_nanos(self.rng.gen_range(0..=ns))
            };
            let at = self.now + self.net.latency + jitter;
            self.seq += 1;
            let id = self.seq as usize;
            self.flights.insert(id, d.clone());
            self.in_flight.push(Reverse((at, self.seq, id)));
        }
    }

    /// Which node (and its own address) a datagram to `to` reaches, after destination NAT.
    fn resolve(&self, from: SocketAddr, to: SocketAddr) -> Option<usize> {
        // A private address behind a NAT is only reachable from inside the same NAT.
        if self
            .nats
            .iter()
            .any(|n| n.inside.contains(&to.ip()) && !n.inside.contains(&from.ip()))
        {
            return None;
        }
        let mut to = to;
        for nat in &self.nats {
            if let Some(private) = nat.inbound(from, to) {
                to = private;
            }
        }
        self.nodes.iter().position(|n| n.addr == to)
    }

    /// Run until `deadline`, delivering datagrams and firing timers in time order.
    pub fn run_until(&mut self, deadline: Instant) {
        loop {
            let next_packet = self.in_flight.peek().map(|Reverse((at, _, _))| *at);
            let next_timer = self
                .nodes
                .iter()
                .filter_map(|n| n.engine.poll_timeout())
                .min();
            let next = match (next_packet, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => break,
            };
            if next > deadline {
                break;
            }
            if next > self.now {
                self.now = next;
            }
            if next_packet == Some(next) {
                if let Some(Reverse((_, _, id))) = self.in_flight.pop() {
                    if let Some(d) = self.flights.remove(&id) {
                        self.deliver(d);
                    }
                }
            } else {
                for i in 0..self.nodes.len() {
                    let due = self.nodes[i]
                        .engine
                        .poll_timeout()
                        .is_some_and(|t| t <= self.now);
                    if due {
                        let mut out = Outputs::default();
                        let now = self.now;
                        self.nodes[i].engine.handle_timeout(now, &mut out);
                        self.dispatch(i, out);
                    }
                }
            }
        }
        if deadline > self.now {
            self.now = deadline;
        }
    }

    /// Run for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) {
        let deadline = self.now + d;
        self.run_until(deadline);
    }

    fn deliver(&mut self, d: Datagram) {
        let Some(i) = self.resolve(d.from, d.to) else {
            return;
        };
        let mut payload = d.payload;
        let mut out = Outputs::default();
        let now = self.now;
        self.refresh_table(i);
        if let Some(table) = self.nodes[i].table.clone().filter(|_| self.fast_path) {
            match table.open_outside(now, d.from, &mut payload) {
                FastOutside::Tun { start, end } => {
                    self.nodes[i].fast_packets.1 += 1;
                    self.nodes[i].tun.push(payload[start..end].to_vec());
                    return;
                }
                FastOutside::Dropped(_, reply) => {
                    self.nodes[i].fast_packets.1 += 1;
                    out.transmits.extend(reply);
                    self.dispatch(i, out);
                    return;
                }
                FastOutside::Engine => {}
            }
        }
        let r = self.nodes[i]
            .engine
            .handle_outside(now, d.from, &mut payload, &mut out);
        if let OutsideOutcome::Tun { start, end } = r {
            self.nodes[i].tun.push(payload[start..end].to_vec());
        }
        self.dispatch(i, out);
        // A forwarded relay frame, re-sealed in place, goes out after the outputs (the order it
        // had when it was one of them).
        if let OutsideOutcome::Send { to, len } = r {
            payload.truncate(len);
            let from = self.nodes[i].addr;
            self.send(from, to, payload);
        }
    }

    /// Does node `i` have a tunnel to vpn address `vpn`?
    pub fn has_tunnel(&self, i: usize, vpn: &str) -> bool {
        let ip: IpAddr = vpn.parse().expect("vpn address");
        self.nodes[i].engine.tunnel_to(&ip).is_some()
    }
}

/// A firewall rule admitting `proto` (`any`, `tcp`, ...) on `port` from any host.
pub fn rule_from_anyone(proto: &str, port: &str) -> RuleConfig {
    RuleConfig {
        proto: Some(proto.into()),
        port: Some(port.into()),
        host: Some("any".into()),
        ..RuleConfig::default()
    }
}

/// Two nodes, `a` (10.42.0.1/16 at 192.0.2.1:4242) and `b` (10.42.0.2/16 at 192.0.2.2:4242),
/// each in the other's static host map; `b_in_a_map` is the address `a` has for `b`.
pub fn two_nodes(seed: u64, ca: &TestCa, b_in_a_map: &str) -> Sim {
    let mut sim = Sim::new(seed);
    sim.add_node(
        "a",
        "192.0.2.1:4242",
        static_config(&[("10.42.0.2", b_in_a_map)]),
        ca.pki("a", "10.42.0.1/16"),
    );
    sim.add_node(
        "b",
        "192.0.2.2:4242",
        static_config(&[("10.42.0.1", "192.0.2.1:4242")]),
        ca.pki("b", "10.42.0.2/16"),
    );
    sim
}

/// An engine config whose `static_host_map` names each peer (vpn address, "ip:port").
pub fn static_config(peers: &[(&str, &str)]) -> EngineConfig {
    let mut static_host_map: HashMap<IpAddr, Vec<SocketAddr>> = HashMap::new();
    for (vpn, addr) in peers {
        static_host_map.insert(
            vpn.parse().expect("vpn address"),
            vec![addr.parse().expect("underlay address")],
        );
    }
    EngineConfig {
        static_host_map,
        ..EngineConfig::default()
    }
}

/// A minimal IPv4/UDP packet from `src` to `dst` carrying `payload` (checksums zero: the engine
/// does not look at them).
pub fn udp_packet(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}
