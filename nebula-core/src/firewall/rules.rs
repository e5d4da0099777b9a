//! Compiled firewall rule tables: protocol -> port segment -> CA -> (host | group set | remote CIDR)
//! -> local CIDR, built once per config and evaluated without allocation (Go Nebula 1.11 semantics).

use std::net::IpAddr;

use ipnet::IpNet;

use super::config::{CidrSpec, ParsedRule, PortSpec};
use super::packet::{Packet, PROTO_ANY, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use super::PeerInfo;

// ---------------------------------------------------------------------------------------------
// Prefix lookups

fn addr_key(addr: IpAddr) -> (bool, u128) {
    match addr {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

fn mask(key: u128, bits: u8, width: u8) -> u128 {
    if bits == 0 {
        0
    } else {
        // keys never have bits above `width`; 0 <= drop < 128 because bits >= 1
        let drop = u32::from(width.saturating_sub(bits.min(width)));
        key & (u128::MAX << drop)
    }
}

/// One prefix length of a [`PrefixMap`]: masked keys sorted for binary search.
#[derive(Debug, Clone)]
struct Bucket<T> {
    bits: u8,
    entries: Vec<(u128, T)>,
}

/// Prefixes (IPv4 and IPv6 kept apart) mapped to values; a lookup visits every stored prefix that
/// contains an address with one binary search per distinct prefix length.
#[derive(Debug, Clone)]
pub(crate) struct PrefixMap<T> {
    v4: Vec<Bucket<T>>,
    v6: Vec<Bucket<T>>,
}

impl<T> Default for PrefixMap<T> {
    fn default() -> Self {
        PrefixMap {
            v4: Vec::new(),
            v6: Vec::new(),
        }
    }
}

impl<T> PrefixMap<T> {
    /// The value for exactly this (masked) prefix, created with `init` if absent.
    /// (Always `Some`; an `Option` only to avoid indexing.)
    pub(crate) fn entry(&mut self, net: IpNet, init: impl FnOnce() -> T) -> Option<&mut T> {
        let (v6, key) = addr_key(net.addr());
        let (width, buckets) = if v6 {
            (128, &mut self.v6)
        } else {
            (32, &mut self.v4)
        };
        let bits = net.prefix_len();
        let key = mask(key, bits, width);
        let bi = match buckets.binary_search_by(|b| bits.cmp(&b.bits)) {
            Ok(i) => i,
            Err(i) => {
                buckets.insert(
                    i,
                    Bucket {
                        bits,
                        entries: Vec::new(),
                    },
                );
                i
            }
        };
        let bucket = buckets.get_mut(bi)?;
        let ei = match bucket.entries.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => i,
            Err(i) => {
                bucket.entries.insert(i, (key, init()));
                i
            }
        };
        bucket.entries.get_mut(ei).map(|(_, v)| v)
    }

    /// True if some stored prefix containing `addr` has a value for which `f` is true (longest
    /// prefixes first).
    pub(crate) fn any_containing(&self, addr: IpAddr, mut f: impl FnMut(&T) -> bool) -> bool {
        let (v6, key) = addr_key(addr);
        let (width, buckets) = if v6 { (128, &self.v6) } else { (32, &self.v4) };
        buckets.iter().any(|b| {
            let k = mask(key, b.bits, width);
            match b.entries.binary_search_by(|(e, _)| e.cmp(&k)) {
                Ok(i) => b.entries.get(i).is_some_and(|(_, v)| f(v)),
                Err(_) => false,
            }
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

impl PrefixMap<()> {
    /// Adds a prefix to a plain set.
    pub(crate) fn insert(&mut self, net: IpNet) {
        let _ = self.entry(net, || ());
    }

    /// True if any stored prefix contains `addr`.
    pub(crate) fn contains(&self, addr: IpAddr) -> bool {
        self.any_containing(addr, |_| true)
    }
}

// ---------------------------------------------------------------------------------------------
// Name lookups

/// Names (host names, CA names, CA fingerprints) mapped to values: a sorted vector, looked up by
/// binary search.
#[derive(Debug, Clone)]
pub(crate) struct NameMap<T> {
    entries: Vec<(Box<str>, T)>,
}

impl<T> Default for NameMap<T> {
    fn default() -> Self {
        NameMap {
            entries: Vec::new(),
        }
    }
}

impl<T> NameMap<T> {
    /// The value for `name`, created with `init` if absent (always `Some`).
    fn entry(&mut self, name: &str, init: impl FnOnce() -> T) -> Option<&mut T> {
        let i = match self.entries.binary_search_by(|(k, _)| (**k).cmp(name)) {
            Ok(i) => i,
            Err(i) => {
                self.entries.insert(i, (name.into(), init()));
                i
            }
        };
        self.entries.get_mut(i).map(|(_, v)| v)
    }

    fn get(&self, name: &str) -> Option<&T> {
        if self.entries.is_empty() {
            return None;
        }
        self.entries
            .binary_search_by(|(k, _)| (**k).cmp(name))
            .ok()
            .and_then(|i| self.entries.get(i))
            .map(|(_, v)| v)
    }
}

// ---------------------------------------------------------------------------------------------
// Rule tree

/// What `local_cidr: ""` means for this host: any (no unsafe networks, or
/// `default_local_cidr_any`), else our own VPN networks.
#[derive(Debug, Clone)]
pub(crate) struct LocalDefault {
    pub any: bool,
    pub vpn_networks: Vec<IpNet>,
}

/// The local-address condition at the end of each branch.
#[derive(Debug, Clone, Default)]
struct LocalCidr {
    any: bool,
    nets: PrefixMap<()>,
}

impl LocalCidr {
    fn add(&mut self, spec: CidrSpec, default: &LocalDefault) {
        match spec {
            CidrSpec::Any => self.any = true,
            CidrSpec::Unset => {
                if default.any {
                    self.any = true;
                } else {
                    for n in &default.vpn_networks {
                        self.nets.insert(*n);
                    }
                }
            }
            CidrSpec::Net(n) => self.nets.insert(n),
        }
    }

    fn matches(&self, local: IpAddr) -> bool {
        self.any || self.nets.contains(local)
    }
}

/// A conjunction of groups (the peer must hold all of them) with its local condition.
#[derive(Debug, Clone)]
struct GroupRule {
    groups: Box<[Box<str>]>,
    local: LocalCidr,
}

/// Rules below one CA selector: any host, or by host name, group set or remote CIDR.
#[derive(Debug, Clone, Default)]
struct RuleSet {
    any: Option<LocalCidr>,
    hosts: NameMap<LocalCidr>,
    groups: Vec<GroupRule>,
    cidr: PrefixMap<LocalCidr>,
}

impl RuleSet {
    fn add(&mut self, r: &ParsedRule, default: &LocalDefault) {
        let is_any = (r.groups.is_empty() && r.host.is_empty() && r.cidr == CidrSpec::Unset)
            || r.groups.iter().any(|g| g == "any")
            || r.host == "any"
            || r.cidr == CidrSpec::Any;
        if is_any {
            self.any
                .get_or_insert_with(LocalCidr::default)
                .add(r.local_cidr, default);
            return;
        }
        if !r.groups.is_empty() {
            let mut local = LocalCidr::default();
            local.add(r.local_cidr, default);
            self.groups.push(GroupRule {
                groups: r.groups.iter().map(|g| g.as_str().into()).collect(),
                local,
            });
        }
        if !r.host.is_empty() {
            if let Some(t) = self.hosts.entry(&r.host, LocalCidr::default) {
                t.add(r.local_cidr, default);
            }
        }
        if let CidrSpec::Net(n) = r.cidr {
            if let Some(t) = self.cidr.entry(n, LocalCidr::default) {
                t.add(r.local_cidr, default);
            }
        }
    }

    fn matches(&self, p: &Packet, peer: &PeerInfo<'_>) -> bool {
        if self.any.as_ref().is_some_and(|l| l.matches(p.local_addr)) {
            return true;
        }
        for g in &self.groups {
            if g.groups
                .iter()
                .all(|want| peer.groups.iter().any(|have| have.as_str() == &**want))
                && g.local.matches(p.local_addr)
            {
                return true;
            }
        }
        if let Some(l) = self.hosts.get(peer.name) {
            if l.matches(p.local_addr) {
                return true;
            }
        }
        !self.cidr.is_empty()
            && self
                .cidr
                .any_containing(p.remote_addr, |l| l.matches(p.local_addr))
    }
}

/// Rules for one port (segment): without CA constraint, or by issuing CA fingerprint / name.
#[derive(Debug, Clone, Default)]
struct CaTable {
    any: Option<RuleSet>,
    by_sha: NameMap<RuleSet>,
    by_name: NameMap<RuleSet>,
}

impl CaTable {
    fn add(&mut self, r: &ParsedRule, default: &LocalDefault) {
        if r.ca_sha.is_empty() && r.ca_name.is_empty() {
            self.any
                .get_or_insert_with(RuleSet::default)
                .add(r, default);
            return;
        }
        if !r.ca_sha.is_empty() {
            if let Some(t) = self.by_sha.entry(&r.ca_sha, RuleSet::default) {
                t.add(r, default);
            }
        }
        if !r.ca_name.is_empty() {
            if let Some(t) = self.by_name.entry(&r.ca_name, RuleSet::default) {
                t.add(r, default);
            }
        }
    }

    fn matches(&self, p: &Packet, peer: &PeerInfo<'_>) -> bool {
        if self.any.as_ref().is_some_and(|t| t.matches(p, peer)) {
            return true;
        }
        if self
            .by_sha
            .get(peer.ca_sha)
            .is_some_and(|t| t.matches(p, peer))
        {
            return true;
        }
        !peer.ca_name.is_empty()
            && self
                .by_name
                .get(peer.ca_name)
                .is_some_and(|t| t.matches(p, peer))
    }
}

/// A run of ports [start, end] sharing the same merged rules.
#[derive(Debug, Clone)]
struct Segment {
    start: u16,
    end: u16,
    table: CaTable,
}

/// Rules of one protocol column (any, tcp, udp, icmp).
#[derive(Debug, Clone, Default)]
struct ProtoTable {
    any_port: Option<CaTable>,
    fragment: Option<CaTable>,
    /// Disjoint, sorted by start.
    segments: Vec<Segment>,
}

impl ProtoTable {
    fn build(rules: &[&ParsedRule], default: &LocalDefault) -> ProtoTable {
        let mut t = ProtoTable::default();
        let mut bounds: Vec<u32> = Vec::new();
        for r in rules {
            match r.port {
                PortSpec::Any => t
                    .any_port
                    .get_or_insert_with(CaTable::default)
                    .add(r, default),
                PortSpec::Fragment => t
                    .fragment
                    .get_or_insert_with(CaTable::default)
                    .add(r, default),
                PortSpec::Range(s, e) => {
                    bounds.push(u32::from(s));
                    bounds.push(u32::from(e) + 1);
                }
            }
        }
        bounds.sort_unstable();
        bounds.dedup();
        for w in bounds.windows(2) {
            let (Some(&lo), Some(&hi)) = (w.first(), w.get(1)) else {
                continue;
            };
            let (Ok(start), Ok(end)) = (u16::try_from(lo), u16::try_from(hi - 1)) else {
                continue;
            };
            let mut table: Option<CaTable> = None;
            for r in rules {
                if let PortSpec::Range(s, e) = r.port {
                    if s <= start && end <= e {
                        table.get_or_insert_with(CaTable::default).add(r, default);
                    }
                }
            }
            if let Some(table) = table {
                t.segments.push(Segment { start, end, table });
            }
        }
        t
    }

    fn segment(&self, port: u16) -> Option<&CaTable> {
        let i = self.segments.partition_point(|s| s.end < port);
        self.segments
            .get(i)
            .filter(|s| s.start <= port)
            .map(|s| &s.table)
    }

    fn matches(&self, p: &Packet, incoming: bool, peer: &PeerInfo<'_>) -> bool {
        let any = |peer: &PeerInfo<'_>| self.any_port.as_ref().is_some_and(|t| t.matches(p, peer));
        // ICMP "ports" are only for conntrack; rules never filter on them.
        if p.protocol == PROTO_ICMP || p.protocol == PROTO_ICMPV6 {
            return any(peer);
        }
        let specific = if p.fragment {
            self.fragment.as_ref()
        } else {
            let port = if incoming {
                p.local_port
            } else {
                p.remote_port
            };
            self.segment(port)
        };
        specific.is_some_and(|t| t.matches(p, peer)) || any(peer)
    }
}

/// All rules of one direction.
#[derive(Debug, Clone, Default)]
pub(crate) struct DirectionTable {
    any_proto: ProtoTable,
    tcp: ProtoTable,
    udp: ProtoTable,
    icmp: ProtoTable,
}

impl DirectionTable {
    pub(crate) fn build(rules: &[ParsedRule], default: &LocalDefault) -> DirectionTable {
        let pick =
            |proto: u8| -> Vec<&ParsedRule> { rules.iter().filter(|r| r.proto == proto).collect() };
        DirectionTable {
            any_proto: ProtoTable::build(&pick(PROTO_ANY), default),
            tcp: ProtoTable::build(&pick(PROTO_TCP), default),
            udp: ProtoTable::build(&pick(PROTO_UDP), default),
            icmp: ProtoTable::build(&pick(PROTO_ICMP), default),
        }
    }

    /// True if some rule admits the packet: the `any` protocol column first, then the packet's own.
    pub(crate) fn matches(&self, p: &Packet, incoming: bool, peer: &PeerInfo<'_>) -> bool {
        if self.any_proto.matches(p, incoming, peer) {
            return true;
        }
        match p.protocol {
            PROTO_TCP => self.tcp.matches(p, incoming, peer),
            PROTO_UDP => self.udp.matches(p, incoming, peer),
            PROTO_ICMP | PROTO_ICMPV6 => self.icmp.matches(p, incoming, peer),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn mask_widths() {
        assert_eq!(mask(0xffff_ffff, 24, 32), 0xffff_ff00);
        assert_eq!(mask(0xffff_ffff, 32, 32), 0xffff_ffff);
        assert_eq!(mask(0xffff_ffff, 0, 32), 0);
        assert_eq!(mask(u128::MAX, 128, 128), u128::MAX);
        assert_eq!(mask(u128::MAX, 1, 128), 1u128 << 127);
    }

    #[test]
    fn prefix_map_lookup() {
        let mut m: PrefixMap<u32> = PrefixMap::default();
        *m.entry(net("1.2.3.4/24"), || 0).unwrap() += 1;
        *m.entry(net("1.2.3.0/24"), || 0).unwrap() += 10;
        *m.entry(net("0.0.0.0/0"), || 0).unwrap() += 100;
        *m.entry(net("fd00::/8"), || 0).unwrap() += 1000;
        let mut seen = Vec::new();
        m.any_containing(ip("1.2.3.99"), |v| {
            seen.push(*v);
            false
        });
        seen.sort();
        assert_eq!(seen, vec![11, 100]);
        let mut seen = Vec::new();
        m.any_containing(ip("9.9.9.9"), |v| {
            seen.push(*v);
            false
        });
        assert_eq!(seen, vec![100]);
        // 0.0.0.0/0 is IPv4 only
        let mut seen = Vec::new();
        m.any_containing(ip("fd12::1"), |v| {
            seen.push(*v);
            false
        });
        assert_eq!(seen, vec![1000]);
        assert!(!m.any_containing(ip("fe80::1"), |_| true));

        let mut s: PrefixMap<()> = PrefixMap::default();
        s.insert(net("::/0"));
        assert!(s.contains(ip("9::9")));
        assert!(!s.contains(ip("1.1.1.1")));
    }

    #[test]
    fn segments_split_overlapping_ranges() {
        let d = LocalDefault {
            any: true,
            vpn_networks: vec![],
        };
        let mk = |s, e, host: &str| ParsedRule {
            proto: PROTO_TCP,
            port: PortSpec::Range(s, e),
            groups: vec![],
            host: host.into(),
            cidr: CidrSpec::Unset,
            cidr_text: String::new(),
            local_cidr: CidrSpec::Unset,
            local_cidr_text: String::new(),
            ca_name: String::new(),
            ca_sha: String::new(),
        };
        let rules = [mk(10, 20, "a"), mk(15, 30, "b"), mk(65535, 65535, "c")];
        let refs: Vec<&ParsedRule> = rules.iter().collect();
        let t = ProtoTable::build(&refs, &d);
        let spans: Vec<(u16, u16)> = t.segments.iter().map(|s| (s.start, s.end)).collect();
        assert_eq!(spans, vec![(10, 14), (15, 20), (21, 30), (65535, 65535)]);
        assert!(t.segment(9).is_none());
        assert!(t.segment(0).is_none());
        assert!(t.segment(31).is_none());
        assert!(t.segment(65534).is_none());
        let hosts = |port| {
            t.segment(port)
                .and_then(|c| c.any.as_ref())
                .map(|r| {
                    r.hosts
                        .entries
                        .iter()
                        .map(|(k, _)| k.to_string())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        assert_eq!(hosts(10), vec!["a"]);
        assert_eq!(hosts(15), vec!["a", "b"]);
        assert_eq!(hosts(20), vec!["a", "b"]);
        assert_eq!(hosts(30), vec!["b"]);
        assert_eq!(hosts(65535), vec!["c"]);
    }
}
