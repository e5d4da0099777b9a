//! The seam between the engine and the firewall: a per-packet verdict for a peer, plus the small
//! IP-header reads the engine itself needs (destination address for routing, reject replies).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use nebula_cert::cert::Certificate;

use crate::firewall::{Action, Conntrack, DropReason, Firewall, Packet, PeerInfo};
use crate::pki::CaLabel;

/// What to do with a packet; a refusal carries the firewall's reason (for metrics and logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Drop(DropReason),
    /// Drop and answer with a TCP RST / ICMP unreachable.
    Reject(DropReason),
}

/// Who is at the other end of a tunnel, as the firewall matches it: its certificate, its vpn
/// addresses and its CA. One `Arc` is shared by the tunnel and its data-plane entry.
#[derive(Debug)]
pub struct Peer {
    pub cert: Certificate,
    /// The peer's vpn addresses, from its certificate (primary first).
    pub vpn_addrs: Vec<IpAddr>,
    /// The issuing CA's name and fingerprint (firewall `ca_name` / `ca_sha`).
    pub ca: Arc<CaLabel>,
}

impl Peer {
    /// Who the peer is, as the firewall sees it (borrowed: no allocation).
    pub fn identity(&self) -> PeerIdentity<'_> {
        PeerIdentity {
            cert: &self.cert,
            vpn_addrs: &self.vpn_addrs,
            ca_name: &self.ca.name,
            issuer_hex: &self.ca.sha,
        }
    }
}

/// Who is on the other end of the tunnel a packet uses (borrowed from the tunnel: no allocation).
pub struct PeerIdentity<'a> {
    pub cert: &'a Certificate,
    pub vpn_addrs: &'a [IpAddr],
    /// Name of the peer's issuing CA (for `ca_name`).
    pub ca_name: &'a str,
    /// Hex fingerprint of the peer's issuing CA (for `ca_sha`).
    pub issuer_hex: &'a str,
}

/// The firewall as the engine and the data-plane workers see it: shared (`&self`), so whatever
/// state it keeps is synchronised inside. `incoming`: from a tunnel towards the TUN.
pub trait PacketFilter: Send + Sync {
    fn check(
        &self,
        now: Instant,
        packet: &[u8],
        incoming: bool,
        peer: &PeerIdentity<'_>,
    ) -> Verdict;

    /// The same filter with new rules (SIGHUP), keeping its connection state: connections
    /// admitted under the old rules are re-checked on next use. `None`: this filter has no rules.
    fn with_rules(&self, _firewall: Firewall) -> Option<Arc<dyn PacketFilter>> {
        None
    }

    /// Reclaim state that expired by `now` (the engine calls this from a periodic timer, so an
    /// idle part of the state is reclaimed too). Returns how many entries went; does a bounded
    /// amount of work per call.
    fn sweep(&self, _now: Instant) -> usize {
        0
    }

    /// Flows in the connection table (`firewall.conntrack.count`).
    fn conntrack_len(&self) -> usize {
        0
    }

    /// FNV-1a of the rules (`firewall.rules.hash`); `None`: this filter has no rules.
    fn rules_hash_fnv(&self) -> Option<u32> {
        None
    }

    /// Packets refused so far, by direction and reason (`firewall.*.dropped.*`).
    fn drops(&self) -> FirewallDrops {
        FirewallDrops::default()
    }
}

/// Refused packets by reason, one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionDrops {
    pub local_addr: u64,
    pub remote_addr: u64,
    pub no_rule: u64,
    /// Ours: a new flow with the connection table full.
    pub conntrack_full: u64,
}

/// Refused packets in both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FirewallDrops {
    pub incoming: DirectionDrops,
    pub outgoing: DirectionDrops,
}

/// The live counters behind [`FirewallDrops`]: atomics touched only when a packet is refused,
/// shared by a firewall and the ones reloads make from it.
#[derive(Debug, Default)]
struct DropCounters {
    /// `[incoming, outgoing]` × `[local_addr, remote_addr, no_rule, conntrack_full]`.
    counts: [[AtomicU64; 4]; 2],
}

impl DropCounters {
    fn note(&self, incoming: bool, reason: DropReason) {
        let slot = match reason {
            DropReason::InvalidLocalIp => 0,
            DropReason::InvalidRemoteIp | DropReason::PeerRejected => 1,
            DropReason::NoMatchingRule => 2,
            DropReason::ConntrackFull => 3,
            // Go counts unparseable packets nowhere.
            DropReason::Unparseable => return,
        };
        let dir = if incoming { 0 } else { 1 };
        self.counts[dir][slot].fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self) -> FirewallDrops {
        let dir = |d: &[AtomicU64; 4]| DirectionDrops {
            local_addr: d[0].load(Ordering::Relaxed),
            remote_addr: d[1].load(Ordering::Relaxed),
            no_rule: d[2].load(Ordering::Relaxed),
            conntrack_full: d[3].load(Ordering::Relaxed),
        };
        FirewallDrops {
            incoming: dir(&self.counts[0]),
            outgoing: dir(&self.counts[1]),
        }
    }
}

/// A shared filter is a filter: the engine can own one handle while a test or a status reader
/// keeps another (to read the conntrack, say).
impl<F: PacketFilter + ?Sized> PacketFilter for Arc<F> {
    fn check(
        &self,
        now: Instant,
        packet: &[u8],
        incoming: bool,
        peer: &PeerIdentity<'_>,
    ) -> Verdict {
        (**self).check(now, packet, incoming, peer)
    }

    fn with_rules(&self, firewall: Firewall) -> Option<Arc<dyn PacketFilter>> {
        (**self).with_rules(firewall)
    }

    fn sweep(&self, now: Instant) -> usize {
        (**self).sweep(now)
    }

    fn conntrack_len(&self) -> usize {
        (**self).conntrack_len()
    }

    fn rules_hash_fnv(&self) -> Option<u32> {
        (**self).rules_hash_fnv()
    }

    fn drops(&self) -> FirewallDrops {
        (**self).drops()
    }
}

/// Conntrack shards: a flow's packets in both directions share a key, so they meet in one shard.
pub const CONNTRACK_SHARDS: usize = 64;

/// Expiry-queue items each shard examines per [`ShardedConntrack::sweep`]: with the engine's
/// sweep every second, 16k expired flows a second are reclaimed from shards no packet touches
/// (the default table of 131k in about 8 s), and one sweep holds a shard's lock for at most this
/// much work.
pub const SWEEP_PER_SHARD: usize = 256;

/// The conntrack table split into independently locked shards by flow hash, so workers handling
/// different flows never wait for each other. The cap (`firewall.conntrack.max_entries`) is split
/// evenly: each shard holds at most `ceil(max / 64)` flows, so the total never exceeds the cap
/// rounded up to a multiple of 64, and no lock beyond the shard's is taken to enforce it.
pub struct ShardedConntrack {
    shards: Box<[Mutex<Conntrack>]>,
}

impl Default for ShardedConntrack {
    fn default() -> Self {
        ShardedConntrack::with_max_entries(crate::firewall::DEFAULT_CONNTRACK_MAX_ENTRIES)
    }
}

/// One shard's share of a table cap of `max`.
fn per_shard(max: usize) -> usize {
    max.div_ceil(CONNTRACK_SHARDS)
}

impl ShardedConntrack {
    /// An empty table that holds about `max` flows (see the type's doc).
    pub fn with_max_entries(max: usize) -> ShardedConntrack {
        ShardedConntrack {
            shards: (0..CONNTRACK_SHARDS)
                .map(|_| {
                    let mut c = Conntrack::new();
                    c.set_max_entries(per_shard(max));
                    Mutex::new(c)
                })
                .collect(),
        }
    }

    /// Change the cap (a reload). Flows above a lowered cap stay until they expire.
    pub fn set_max_entries(&self, max: usize) {
        for s in self.shards.iter() {
            lock(s).set_max_entries(per_shard(max));
        }
    }

    /// Remove flows expired by `now` from every shard, examining at most `per_shard` expiry-queue
    /// items in each. Returns how many flows went.
    pub fn sweep(&self, now: Instant, per_shard: usize) -> usize {
        self.shards
            .iter()
            .map(|s| lock(s).purge_expired(now, per_shard))
            .sum()
    }

    /// The shard that holds `key`, locked.
    pub fn shard(&self, key: &Packet) -> MutexGuard<'_, Conntrack> {
        let i = shard_index(key, self.shards.len());
        lock(&self.shards[i])
    }

    /// Flows tracked in all shards.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A shard, locked. Every conntrack operation completes or leaves the table as it was, so a
/// poisoned shard is still consistent.
fn lock(shard: &Mutex<Conntrack>) -> MutexGuard<'_, Conntrack> {
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

/// Which of `n` shards holds a flow: a multiply-xor mix of the tuple (picking a shard needs
/// no keyed hash: each shard's own map keeps the standard keyed hasher against flooding).
fn shard_index(key: &Packet, n: usize) -> usize {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let fold = |a: &IpAddr| match a {
        IpAddr::V4(v4) => u64::from(u32::from(*v4)),
        IpAddr::V6(v6) => {
            let x = u128::from(*v6);
            (x as u64) ^ ((x >> 64) as u64)
        }
    };
    let ports = (u64::from(key.local_port) << 32)
        | (u64::from(key.remote_port) << 16)
        | (u64::from(key.protocol) << 8)
        | u64::from(key.fragment);
    let h = (fold(&key.local_addr).wrapping_mul(K) ^ fold(&key.remote_addr)).wrapping_mul(K);
    let h = (h ^ ports).wrapping_mul(K);
    ((h >> 32) as usize) % n.max(1)
}

/// Go Nebula's group firewall with its connection tracking.
pub struct GroupFirewall {
    firewall: Firewall,
    conntrack: Arc<ShardedConntrack>,
    drops: Arc<DropCounters>,
}

impl GroupFirewall {
    /// The firewall with an empty conntrack capped at its `conntrack_max_entries`.
    pub fn new(firewall: Firewall) -> GroupFirewall {
        let conntrack = ShardedConntrack::with_max_entries(firewall.conntrack_max_entries());
        GroupFirewall {
            firewall,
            conntrack: Arc::new(conntrack),
            drops: Arc::default(),
        }
    }

    pub fn firewall(&self) -> &Firewall {
        &self.firewall
    }

    pub fn conntrack(&self) -> &ShardedConntrack {
        &self.conntrack
    }
}

impl PacketFilter for GroupFirewall {
    fn check(
        &self,
        now: Instant,
        packet: &[u8],
        incoming: bool,
        peer: &PeerIdentity<'_>,
    ) -> Verdict {
        let Ok(pkt) = Packet::parse(packet, incoming) else {
            return Verdict::Drop(DropReason::Unparseable);
        };
        let info = PeerInfo {
            vpn_networks: peer.cert.networks(),
            unsafe_networks: peer.cert.unsafe_networks(),
            name: peer.cert.name(),
            groups: peer.cert.groups(),
            ca_name: peer.ca_name,
            ca_sha: peer.issuer_hex,
        };
        let mut conntrack = self.conntrack.shard(&pkt);
        match self
            .firewall
            .drop(&pkt, incoming, &info, &mut conntrack, now)
        {
            Ok(()) => Verdict::Allow,
            Err(reason) => {
                self.drops.note(incoming, reason);
                match self.firewall.action(incoming) {
                    Action::Reject => Verdict::Reject(reason),
                    Action::Drop => Verdict::Drop(reason),
                }
            }
        }
    }

    fn with_rules(&self, firewall: Firewall) -> Option<Arc<dyn PacketFilter>> {
        self.conntrack
            .set_max_entries(firewall.conntrack_max_entries());
        Some(Arc::new(GroupFirewall {
            firewall,
            conntrack: Arc::clone(&self.conntrack),
            drops: Arc::clone(&self.drops),
        }))
    }

    fn sweep(&self, now: Instant) -> usize {
        self.conntrack.sweep(now, SWEEP_PER_SHARD)
    }

    fn conntrack_len(&self) -> usize {
        self.conntrack.len()
    }

    fn rules_hash_fnv(&self) -> Option<u32> {
        Some(self.firewall.rules_hash_fnv())
    }

    fn drops(&self) -> FirewallDrops {
        self.drops.read()
    }
}

/// Lets everything through. Only for tests of the engine that are not about the firewall.
pub struct AllowAll;

impl PacketFilter for AllowAll {
    fn check(&self, _: Instant, _: &[u8], _: bool, _: &PeerIdentity<'_>) -> Verdict {
        Verdict::Allow
    }
}

/// The destination address of an IPv4 or IPv6 packet.
pub fn destination(packet: &[u8]) -> Option<IpAddr> {
    address(packet, 16, 24)
}

/// The source address of an IPv4 or IPv6 packet.
pub fn source(packet: &[u8]) -> Option<IpAddr> {
    address(packet, 12, 8)
}

/// The address at byte `v4_at` of an IPv4 header, or at `v6_at` of an IPv6 header.
fn address(packet: &[u8], v4_at: usize, v6_at: usize) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 => {
            let b: [u8; 4] = packet.get(v4_at..v4_at + 4)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        6 => {
            let b: [u8; 16] = packet.get(v6_at..v6_at + 16)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// The reject answer (TCP RST or ICMP unreachable) for `packet`, if it gets one.
pub fn reject_reply(packet: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; packet.len().max(128) + 128];
    let n = crate::firewall::build_reject(packet, &mut out)?;
    out.truncate(n);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_v4_and_v6_packets() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[12..16].copy_from_slice(&[10, 0, 0, 1]);
        v4[16..20].copy_from_slice(&[10, 0, 0, 2]);
        assert_eq!(source(&v4), Some("10.0.0.1".parse().expect("ip")));
        assert_eq!(destination(&v4), Some("10.0.0.2".parse().expect("ip")));
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[39] = 1;
        assert_eq!(destination(&v6), Some("::1".parse().expect("ip")));
        assert_eq!(destination(&v4[..10]), None);
        assert_eq!(destination(&[0x50; 40]), None);
        assert_eq!(destination(&[]), None);
    }

    #[test]
    fn flows_spread_over_the_conntrack_shards() {
        let mut used = std::collections::HashSet::new();
        for port in 0..1000u16 {
            let p = Packet {
                local_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                remote_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                local_port: 443,
                remote_port: 40_000 + port,
                protocol: 6,
                fragment: false,
            };
            used.insert(shard_index(&p, CONNTRACK_SHARDS));
        }
        // 1,000 flows of one host pair reach (nearly) every shard.
        assert!(
            used.len() >= CONNTRACK_SHARDS * 9 / 10,
            "{} shards",
            used.len()
        );
    }

    #[test]
    fn a_reply_checked_on_another_thread_finds_the_outbound_flow() {
        use crate::firewall::FirewallConfig;
        use crate::sim::udp_packet;
        let (fw, peer_cert) = capped_firewall(FirewallConfig::default().conntrack_max_entries);
        let fw = Arc::new(fw);
        let (me, them) = (Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 1, 0, 2));
        let vpn_addrs = [IpAddr::V4(them)];
        let now = Instant::now();
        let check = |fw: &GroupFirewall, packet: &[u8], incoming: bool| {
            let peer = PeerIdentity {
                cert: &peer_cert,
                vpn_addrs: &vpn_addrs,
                ca_name: "ca",
                issuer_hex: "",
            };
            fw.check(now, packet, incoming, &peer)
        };
        std::thread::scope(|s| {
            s.spawn(|| {
                for port in 0..500 {
                    let out = udp_packet(me, them, 30_000 + port, 53, b"q");
                    assert_eq!(check(&fw, &out, false), Verdict::Allow);
                }
            });
        });
        assert_eq!(fw.conntrack().len(), 500);
        std::thread::scope(|s| {
            s.spawn(|| {
                for port in 0..500 {
                    let reply = udp_packet(them, me, 53, 30_000 + port, b"a");
                    assert_eq!(check(&fw, &reply, true), Verdict::Allow, "reply {port}");
                }
                // No rule admits an inbound flow nobody opened.
                let stranger = udp_packet(them, me, 53, 29_999, b"x");
                assert_eq!(
                    check(&fw, &stranger, true),
                    Verdict::Drop(DropReason::NoMatchingRule)
                );
            });
        });
    }

    /// A firewall admitting every outbound flow, its conntrack capped at `max`, and a peer.
    fn capped_firewall(max: usize) -> (GroupFirewall, Certificate) {
        use crate::firewall::FirewallConfig;
        use crate::sim::{rule_from_anyone, TestCa};
        let ca = TestCa::new(
            "ca",
            nebula_cert::Curve::Curve25519,
            nebula_cert::Version::V1,
        );
        let (peer_cert, _) = ca.host("peer", "10.1.0.2/16", &[]);
        let cfg = FirewallConfig {
            outbound: vec![rule_from_anyone("any", "any")],
            conntrack_max_entries: max,
            ..FirewallConfig::default()
        };
        let mine: ipnet::IpNet = "10.1.0.1/16".parse().expect("net");
        let fw = GroupFirewall::new(Firewall::new(&cfg, &[mine], &[]).expect("firewall"));
        (fw, peer_cert)
    }

    fn check_as_peer(
        fw: &dyn PacketFilter,
        cert: &Certificate,
        now: Instant,
        packet: &[u8],
        incoming: bool,
    ) -> Verdict {
        let vpn_addrs = [IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2))];
        let peer = PeerIdentity {
            cert,
            vpn_addrs: &vpn_addrs,
            ca_name: "ca",
            issuer_hex: "",
        };
        fw.check(now, packet, incoming, &peer)
    }

    /// Refusals are counted by direction and reason (Go's `firewall.*.dropped.*`), the counts
    /// and the conntrack size survive a reload, and allowed packets count nothing.
    #[test]
    fn drops_are_counted_by_direction_and_reason() {
        use crate::sim::udp_packet;
        let (fw, cert) = capped_firewall(640);
        let (me, them) = (Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 1, 0, 2));
        let now = Instant::now();
        assert_eq!(fw.drops(), FirewallDrops::default());
        // No inbound rule: an unsolicited packet is refused (no_rule).
        let unsolicited = udp_packet(them, me, 9, 9, b"x");
        check_as_peer(&fw, &cert, now, &unsolicited, true);
        check_as_peer(&fw, &cert, now, &unsolicited, true);
        // From an address that is not the peer's: remote_addr.
        let spoofed = udp_packet(Ipv4Addr::new(10, 1, 0, 9), me, 9, 9, b"x");
        check_as_peer(&fw, &cert, now, &spoofed, true);
        // Outbound to a local address that is not ours: local_addr.
        let not_mine = udp_packet(Ipv4Addr::new(10, 1, 0, 7), them, 9, 9, b"x");
        check_as_peer(&fw, &cert, now, &not_mine, false);
        // Allowed: nothing counted, one flow tracked.
        let ok = udp_packet(me, them, 5, 53, b"q");
        assert_eq!(check_as_peer(&fw, &cert, now, &ok, false), Verdict::Allow);
        let want = FirewallDrops {
            incoming: DirectionDrops {
                no_rule: 2,
                remote_addr: 1,
                ..DirectionDrops::default()
            },
            outgoing: DirectionDrops {
                local_addr: 1,
                ..DirectionDrops::default()
            },
        };
        assert_eq!(fw.drops(), want);
        assert_eq!(fw.conntrack_len(), 1);
        let reloaded = fw
            .with_rules(fw.firewall().clone())
            .expect("a group firewall has rules");
        assert_eq!(reloaded.drops(), want, "the counts survive a reload");
        assert_eq!(reloaded.conntrack_len(), 1);
        assert_eq!(
            reloaded.rules_hash_fnv(),
            Some(fw.firewall().rules_hash_fnv())
        );
    }

    #[test]
    fn a_flood_of_new_flows_stops_at_the_cap_and_old_flows_keep_working() {
        use crate::sim::udp_packet;
        let (fw, cert) = capped_firewall(640);
        let (me, them) = (Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 1, 0, 2));
        let now = Instant::now();
        let mut admitted = Vec::new();
        let mut full = 0;
        for port in 0..20_000u16 {
            let out = udp_packet(me, them, port, 53, b"q");
            match check_as_peer(&fw, &cert, now, &out, false) {
                Verdict::Allow => admitted.push(port),
                Verdict::Drop(DropReason::ConntrackFull) => full += 1,
                v => panic!("port {port}: {v:?}"),
            }
        }
        // Each of the 64 shards holds ceil(640 / 64) = 10 flows.
        assert_eq!(fw.conntrack().len(), 640, "the table stops at its cap");
        assert_eq!(admitted.len(), 640);
        assert_eq!(full, 20_000 - 640);
        // Every admitted flow still gets its replies; nothing else got an entry.
        for port in &admitted {
            let reply = udp_packet(them, me, 53, *port, b"a");
            assert_eq!(check_as_peer(&fw, &cert, now, &reply, true), Verdict::Allow);
        }
        let refused = (0..20_000u16)
            .find(|p| !admitted.contains(p))
            .expect("a refused port");
        let reply = udp_packet(them, me, 53, refused, b"a");
        assert_eq!(
            check_as_peer(&fw, &cert, now, &reply, true),
            Verdict::Drop(DropReason::NoMatchingRule),
            "a refused flow's reply is not admitted"
        );
        // Once the flows expire, new ones are admitted again.
        let later = now + crate::firewall::DEFAULT_UDP_TIMEOUT + std::time::Duration::from_secs(1);
        let out = udp_packet(me, them, refused, 53, b"q");
        assert_eq!(
            check_as_peer(&fw, &cert, later, &out, false),
            Verdict::Allow
        );
    }

    #[test]
    fn a_reload_applies_a_new_cap_to_the_kept_conntrack() {
        use crate::firewall::FirewallConfig;
        let (fw, _) = capped_firewall(64);
        let mine: ipnet::IpNet = "10.1.0.1/16".parse().expect("net");
        let cfg = FirewallConfig {
            conntrack_max_entries: 6_400,
            ..FirewallConfig::default()
        };
        let _reloaded = fw
            .with_rules(Firewall::new(&cfg, &[mine], &[]).expect("firewall"))
            .expect("a group firewall keeps its state");
        let caps: Vec<usize> = fw
            .conntrack()
            .shards
            .iter()
            .map(|s| lock(s).max_entries())
            .collect();
        assert!(caps.iter().all(|c| *c == 100), "{caps:?}");
    }

    /// Lets a test keep a handle on the firewall it gives the engine.
    struct Shared(Arc<GroupFirewall>);

    impl PacketFilter for Shared {
        fn check(
            &self,
            now: Instant,
            p: &[u8],
            incoming: bool,
            peer: &PeerIdentity<'_>,
        ) -> Verdict {
            self.0.check(now, p, incoming, peer)
        }
        fn sweep(&self, now: Instant) -> usize {
            self.0.sweep(now)
        }
    }

    #[test]
    fn the_engines_timer_reclaims_flows_no_packet_touches_any_more() {
        use crate::sim::{udp_packet, Sim};
        let (fw, cert) = capped_firewall(crate::firewall::DEFAULT_CONNTRACK_MAX_ENTRIES);
        let fw = Arc::new(fw);
        let mut sim = Sim::new(7);
        let ca = crate::sim::TestCa::new(
            "ca",
            nebula_cert::Curve::Curve25519,
            nebula_cert::Version::V1,
        );
        sim.add_node_with_filter(
            "me",
            "192.0.2.1:4242",
            crate::EngineConfig::default(),
            ca.pki("me", "10.1.0.1/16"),
            Box::new(Shared(Arc::clone(&fw))),
        );
        let (me, them) = (Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 1, 0, 2));
        // 5,000 flows in every shard, then silence: no decision ever purges them lazily.
        for port in 0..5_000u16 {
            let out = udp_packet(me, them, port, 53, b"q");
            assert_eq!(
                check_as_peer(&*fw, &cert, sim.now, &out, false),
                Verdict::Allow
            );
        }
        assert_eq!(fw.conntrack().len(), 5_000);
        sim.run_for(crate::firewall::DEFAULT_UDP_TIMEOUT - std::time::Duration::from_secs(1));
        assert_eq!(fw.conntrack().len(), 5_000, "live flows are kept");
        sim.run_for(std::time::Duration::from_secs(5));
        assert_eq!(
            fw.conntrack().len(),
            0,
            "expired flows are reclaimed without traffic"
        );
    }
}
