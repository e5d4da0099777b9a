//! The seam between the engine and the firewall: a per-packet verdict for a peer, plus the small
//! IP-header reads the engine itself needs (destination address for routing, reject replies).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use nebula_cert::cert::Certificate;

use crate::firewall::{Action, Conntrack, DropReason, Firewall, Packet, PeerInfo};

/// What to do with a packet; a refusal carries the firewall's reason (for metrics and logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Drop(DropReason),
    /// Drop and answer with a TCP RST / ICMP unreachable.
    Reject(DropReason),
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
}

/// Conntrack shards: a flow's packets in both directions share a key, so they meet in one shard.
const CONNTRACK_SHARDS: usize = 64;

/// The conntrack table split into independently locked shards by flow hash, so workers handling
/// different flows never wait for each other.
pub struct ShardedConntrack {
    shards: Box<[Mutex<Conntrack>]>,
}

impl Default for ShardedConntrack {
    fn default() -> Self {
        ShardedConntrack {
            shards: (0..CONNTRACK_SHARDS)
                .map(|_| Mutex::new(Conntrack::new()))
                .collect(),
        }
    }
}

impl ShardedConntrack {
    /// The shard that holds `key`, locked.
    pub fn shard(&self, key: &Packet) -> MutexGuard<'_, Conntrack> {
        let i = shard_index(key, self.shards.len());
        // Every conntrack operation completes or leaves the table as it was, so a poisoned
        // shard is still consistent.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Flows tracked in all shards.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
}

impl GroupFirewall {
    pub fn new(firewall: Firewall) -> GroupFirewall {
        GroupFirewall {
            firewall,
            conntrack: Arc::new(ShardedConntrack::default()),
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
            Err(reason) => match self.firewall.action(incoming) {
                Action::Reject => Verdict::Reject(reason),
                Action::Drop => Verdict::Drop(reason),
            },
        }
    }

    fn with_rules(&self, firewall: Firewall) -> Option<Arc<dyn PacketFilter>> {
        Some(Arc::new(GroupFirewall {
            firewall,
            conntrack: Arc::clone(&self.conntrack),
        }))
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
        use crate::sim::{rule_from_anyone, udp_packet, TestCa};
        let ca = TestCa::new(
            "ca",
            nebula_cert::Curve::Curve25519,
            nebula_cert::Version::V1,
        );
        let (peer_cert, _) = ca.host("peer", "10.1.0.2/16", &[]);
        let cfg = FirewallConfig {
            outbound: vec![rule_from_anyone("any", "any")],
            ..FirewallConfig::default()
        };
        let mine: ipnet::IpNet = "10.1.0.1/16".parse().expect("net");
        let fw = Arc::new(GroupFirewall::new(
            Firewall::new(&cfg, &[mine], &[]).expect("firewall"),
        ));
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
}
