//! Known underlay addresses per vpn address (static entries, lighthouse answers, calculated and
//! learned addresses, relays) and the allow lists and `calculated_remotes` rules that filter them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

/// Most addresses kept per family from one lighthouse answer (Go's `MaxRemotes`).
pub const MAX_REMOTES_PER_FAMILY: usize = 10;
/// Most relays kept per host from one lighthouse answer (Go caps a host's relays at 10 too).
pub const MAX_RELAYS: usize = 10;
/// Most addresses kept on a host's block list (wrong host answered there); the oldest go first.
pub const MAX_BLOCKED: usize = 16;

/// `items` without duplicates, in order, at most `max` of them.
pub fn distinct_capped<T: PartialEq + Copy>(
    items: impl IntoIterator<Item = T>,
    max: usize,
) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for i in items {
        if out.len() == max {
            break;
        }
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// `addrs` without duplicates, at most [`MAX_REMOTES_PER_FAMILY`] per family: IPv4 first, then
/// IPv6, each in the order given.
pub fn capped_per_family(addrs: impl IntoIterator<Item = SocketAddr>) -> Vec<SocketAddr> {
    let mut v4: Vec<SocketAddr> = Vec::new();
    let mut v6: Vec<SocketAddr> = Vec::new();
    for a in addrs {
        let list = if a.is_ipv4() { &mut v4 } else { &mut v6 };
        if list.len() < MAX_REMOTES_PER_FAMILY && !list.contains(&a) {
            list.push(a);
        }
    }
    v4.extend(v6);
    v4
}

/// The addresses we know for one vpn address. Most hosts a lighthouse knows have only a learned
/// address, so everything else sits in a box made on first use (a lighthouse keeps one list per
/// host: 32 bytes inline instead of about 200).
#[derive(Clone, Debug, Default)]
pub struct RemoteList {
    /// Where a handshake or an authenticated packet from this host came from.
    pub learned: Vec<SocketAddr>,
    sources: Option<Box<Sources>>,
}

/// The rarer sources of a [`RemoteList`].
#[derive(Clone, Debug, Default)]
struct Sources {
    /// From `static_host_map`; never forgotten.
    static_addrs: Vec<SocketAddr>,
    /// From lighthouse answers, by the lighthouse that reported them.
    from_lighthouse: HashMap<IpAddr, Vec<SocketAddr>>,
    /// Addresses that answered a handshake with the wrong certificate.
    blocked: Vec<SocketAddr>,
    /// Guessed from `lighthouse.calculated_remotes` while the lighthouse has not answered.
    calculated: Vec<SocketAddr>,
    /// Relays that can reach this host, by the lighthouse that reported them.
    relays_from_lighthouse: HashMap<IpAddr, Vec<IpAddr>>,
}

impl RemoteList {
    /// A list holding `static_host_map` entries.
    pub fn with_static(addrs: Vec<SocketAddr>) -> RemoteList {
        let mut r = RemoteList::default();
        r.set_static(addrs);
        r
    }

    fn sources_mut(&mut self) -> &mut Sources {
        self.sources.get_or_insert_with(Box::default)
    }

    /// From `static_host_map`; never forgotten.
    pub fn static_addrs(&self) -> &[SocketAddr] {
        self.sources.as_ref().map_or(&[], |s| &s.static_addrs)
    }

    /// Replace the `static_host_map` entries.
    pub fn set_static(&mut self, addrs: Vec<SocketAddr>) {
        if addrs.is_empty() && self.sources.is_none() {
            return;
        }
        self.sources_mut().static_addrs = addrs;
    }

    /// Replace the addresses guessed from `lighthouse.calculated_remotes`.
    pub fn set_calculated(&mut self, addrs: Vec<SocketAddr>) {
        if addrs.is_empty() && self.sources.is_none() {
            return;
        }
        self.sources_mut().calculated = addrs;
    }

    /// What `lighthouse` told us about this host.
    pub fn from_lighthouse(&self, lighthouse: &IpAddr) -> &[SocketAddr] {
        self.sources
            .as_ref()
            .and_then(|s| s.from_lighthouse.get(lighthouse))
            .map_or(&[], |v| v)
    }

    /// The lighthouses whose answer about this host named an address, in address order.
    pub fn answered_by(&self) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = self.sources.as_ref().map_or(Vec::new(), |s| {
            s.from_lighthouse
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, _)| *k)
                .collect()
        });
        out.sort();
        out
    }

    /// Addresses that answered a handshake with the wrong certificate (oldest first).
    pub fn blocked(&self) -> &[SocketAddr] {
        self.sources.as_ref().map_or(&[], |s| &s.blocked)
    }

    /// Every distinct address, preferred ranges first, then in insertion order (static, learned,
    /// lighthouse), blocked ones left out.
    pub fn addrs(&self, preferred: &[IpNet]) -> Vec<SocketAddr> {
        let mut all: Vec<SocketAddr> = Vec::new();
        let empty = Sources::default();
        let src = self.sources.as_deref().unwrap_or(&empty);
        let lh = {
            let mut v: Vec<&IpAddr> = src.from_lighthouse.keys().collect();
            v.sort();
            v.into_iter()
                .filter_map(|k| src.from_lighthouse.get(k))
                .flatten()
                .copied()
                .collect::<Vec<_>>()
        };
        for a in src
            .static_addrs
            .iter()
            .chain(self.learned.iter())
            .chain(lh.iter())
            .chain(src.calculated.iter())
        {
            if !all.contains(a) && !src.blocked.contains(a) {
                all.push(*a);
            }
        }
        // Stable partition: preferred-range addresses first.
        let (mut pref, rest): (Vec<_>, Vec<_>) = all
            .into_iter()
            .partition(|a| preferred.iter().any(|n| n.contains(&a.ip())));
        pref.extend(rest);
        pref
    }

    pub fn is_empty(&self) -> bool {
        self.learned.is_empty()
            && self.sources.as_ref().is_none_or(|s| {
                s.static_addrs.is_empty()
                    && s.from_lighthouse.values().all(|v| v.is_empty())
                    && s.calculated.is_empty()
            })
    }

    /// Every relay any lighthouse reported for this host, without duplicates (lighthouses in
    /// address order).
    pub fn relays(&self) -> Vec<IpAddr> {
        let Some(src) = &self.sources else {
            return Vec::new();
        };
        let mut keys: Vec<&IpAddr> = src.relays_from_lighthouse.keys().collect();
        keys.sort();
        let mut out: Vec<IpAddr> = Vec::new();
        for k in keys {
            for r in src.relays_from_lighthouse.get(k).into_iter().flatten() {
                if !out.contains(r) {
                    out.push(*r);
                }
            }
        }
        out
    }

    /// Per lighthouse that answered about this host (in address order): the addresses and the
    /// relays it reported (diagnostics: the debug console's address map).
    pub fn by_lighthouse(&self) -> Vec<(IpAddr, Vec<SocketAddr>, Vec<IpAddr>)> {
        let Some(src) = &self.sources else {
            return Vec::new();
        };
        let mut keys: Vec<IpAddr> = src
            .from_lighthouse
            .keys()
            .chain(src.relays_from_lighthouse.keys())
            .copied()
            .collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .map(|lh| {
                let addrs = src.from_lighthouse.get(&lh).cloned().unwrap_or_default();
                let relays = src
                    .relays_from_lighthouse
                    .get(&lh)
                    .cloned()
                    .unwrap_or_default();
                (lh, addrs, relays)
            })
            .collect()
    }

    /// Replace the relays `lighthouse` reported: the first [`MAX_RELAYS`] distinct ones.
    pub fn set_relays_from_lighthouse(&mut self, lighthouse: IpAddr, relays: Vec<IpAddr>) {
        self.sources_mut()
            .relays_from_lighthouse
            .insert(lighthouse, distinct_capped(relays, MAX_RELAYS));
    }

    /// Never try `addr` again for this host (it answered with another host's certificate).
    pub fn block(&mut self, addr: SocketAddr) {
        let blocked = &mut self.sources_mut().blocked;
        if !blocked.contains(&addr) {
            if blocked.len() == MAX_BLOCKED {
                blocked.remove(0);
            }
            blocked.push(addr);
        }
    }

    /// Record an address seen on an authenticated packet or handshake: newest first, at most
    /// [`MAX_REMOTES_PER_FAMILY`] per family (the oldest of its family goes), so a peer roaming
    /// over many IPv4 addresses does not push out its IPv6 one.
    pub fn learn(&mut self, addr: SocketAddr) {
        if self.learned.contains(&addr) {
            return;
        }
        // Grow one slot at a time: nearly every host has exactly one learned address.
        self.learned.reserve_exact(1);
        self.learned.insert(0, addr);
        let same_family = |a: &SocketAddr| a.is_ipv4() == addr.is_ipv4();
        if self.learned.iter().filter(|a| same_family(a)).count() > MAX_REMOTES_PER_FAMILY {
            if let Some(oldest) = self.learned.iter().rposition(same_family) {
                self.learned.remove(oldest);
            }
        }
    }

    /// Replace what `lighthouse` told us.
    pub fn set_from_lighthouse(&mut self, lighthouse: IpAddr, addrs: Vec<SocketAddr>) {
        self.sources_mut()
            .from_lighthouse
            .insert(lighthouse, capped_per_family(addrs));
    }

    /// Forget everything but the static entries (a tunnel died).
    pub fn forget_dynamic(&mut self) {
        self.learned = Vec::new();
        if let Some(s) = self.sources.take() {
            self.set_static(s.static_addrs);
        }
    }
}

/// A CIDR allow list (`allow_list.go`): the most specific matching rule wins; an address no rule
/// covers is allowed. Go's implied per-family defaults are expected among the rules already.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    pub rules: Vec<(IpNet, bool)>,
}

impl AllowList {
    /// Whether `ip` is allowed (IPv4-mapped IPv6 is checked as IPv4, as 1.11 does).
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.rules
            .iter()
            .filter(|(net, _)| net.contains(&ip))
            .max_by_key(|(net, _)| net.prefix_len())
            .map(|(_, allow)| *allow)
            .unwrap_or(true)
    }
}

/// `lighthouse.remote_allow_list` and `lighthouse.remote_allow_ranges`: which underlay addresses
/// we accept for peers (handshakes, roaming, lighthouse answers, punch targets).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteAllowList {
    /// The base list; `None` = everything allowed.
    pub base: Option<AllowList>,
    /// Per vpn range lists: a peer inside the range must pass its list as well as the base one.
    pub ranges: Vec<(IpNet, AllowList)>,
}

impl RemoteAllowList {
    /// The base list alone (used before the peer's vpn address is known).
    pub fn allows_base(&self, remote: IpAddr) -> bool {
        self.base.as_ref().is_none_or(|b| b.allows(remote))
    }

    /// Whether `remote` is acceptable for the peer with vpn address `vpn`.
    pub fn allows(&self, vpn: IpAddr, remote: IpAddr) -> bool {
        let vpn = vpn.to_canonical();
        let inner = self
            .ranges
            .iter()
            .filter(|(net, _)| net.contains(&vpn))
            .max_by_key(|(net, _)| net.prefix_len());
        if let Some((_, list)) = inner {
            if !list.allows(remote) {
                return false;
            }
        }
        self.allows_base(remote)
    }

    /// Whether `remote` is acceptable for every one of a peer's vpn addresses (1.11 `AllowAll`).
    pub fn allows_all(&self, vpns: &[IpAddr], remote: IpAddr) -> bool {
        vpns.iter().all(|v| self.allows(*v, remote))
    }
}

/// One `lighthouse.calculated_remotes` rule: for vpn addresses in `vpn_range`, guess the underlay
/// address by keeping the vpn address's host bits and taking the network bits from `mask`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CalculatedRemote {
    pub vpn_range: IpNet,
    pub mask: IpNet,
    pub port: u16,
}

impl CalculatedRemote {
    /// The guessed underlay address for `vpn`, if the rule covers it and the families match.
    pub fn apply(&self, vpn: IpAddr) -> Option<SocketAddr> {
        if !self.vpn_range.contains(&vpn) {
            return None;
        }
        let ip = match (self.mask.addr(), vpn) {
            (IpAddr::V4(m), IpAddr::V4(v)) => {
                let bits = u32::from(
                    self.mask
                        .netmask()
                        .to_canonical()
                        .to_string()
                        .parse::<Ipv4Addr>()
                        .ok()?,
                );
                IpAddr::V4(Ipv4Addr::from(
                    (u32::from(m) & bits) | (u32::from(v) & !bits),
                ))
            }
            (IpAddr::V6(m), IpAddr::V6(v)) => {
                let bits = match self.mask.netmask() {
                    IpAddr::V6(n) => u128::from(n),
                    IpAddr::V4(_) => return None,
                };
                IpAddr::V6(Ipv6Addr::from(
                    (u128::from(m) & bits) | (u128::from(v) & !bits),
                ))
            }
            _ => return None,
        };
        Some(SocketAddr::new(ip, self.port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn preferred_first_dedup_and_blocked_skipped() {
        let mut r = RemoteList::with_static(vec![sa("203.0.113.1:4242")]);
        r.set_from_lighthouse(
            "10.0.0.1".parse().expect("ip"),
            vec![
                sa("192.168.1.5:4242"),
                sa("203.0.113.1:4242"),
                sa("198.51.100.7:1"),
            ],
        );
        r.block(sa("198.51.100.7:1"));
        let pref: Vec<IpNet> = vec!["192.168.0.0/16".parse().expect("net")];
        assert_eq!(
            r.addrs(&pref),
            vec![sa("192.168.1.5:4242"), sa("203.0.113.1:4242")]
        );
    }

    #[test]
    fn allow_lists_most_specific_wins_and_ranges_add_up() {
        let net = |s: &str| s.parse::<IpNet>().expect("net");
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let base = AllowList {
            rules: vec![
                (net("0.0.0.0/0"), true),
                (net("10.0.0.0/8"), false),
                (net("10.42.0.0/16"), true),
            ],
        };
        let ral = RemoteAllowList {
            base: Some(base),
            ranges: vec![(
                net("10.99.0.0/16"),
                AllowList {
                    rules: vec![(net("192.168.0.0/16"), true), (net("0.0.0.0/0"), false)],
                },
            )],
        };
        assert!(ral.allows_base(ip("203.0.113.1")));
        assert!(!ral.allows_base(ip("10.1.1.1")));
        assert!(ral.allows_base(ip("10.42.1.1")));
        assert!(ral.allows_base(ip("::ffff:10.42.1.1")));
        assert!(!ral.allows_base(ip("::ffff:10.1.1.1")));
        // A peer in 10.99/16 may only use 192.168/16 addresses.
        assert!(ral.allows(ip("10.99.0.5"), ip("192.168.1.1")));
        assert!(!ral.allows(ip("10.99.0.5"), ip("203.0.113.1")));
        assert!(ral.allows(ip("10.50.0.5"), ip("203.0.113.1")));
        assert!(!ral.allows_all(&[ip("10.50.0.5"), ip("10.99.0.5")], ip("203.0.113.1")));
        assert!(RemoteAllowList::default().allows(ip("10.1.1.1"), ip("10.1.1.1")));
    }

    #[test]
    fn calculated_remotes_keep_host_bits() {
        let c = CalculatedRemote {
            vpn_range: "10.0.10.0/24".parse().expect("net"),
            mask: "192.168.1.0/24".parse().expect("net"),
            port: 4242,
        };
        assert_eq!(
            c.apply("10.0.10.182".parse().expect("ip")),
            Some(sa("192.168.1.182:4242"))
        );
        assert_eq!(c.apply("10.0.11.1".parse().expect("ip")), None);
        let c6 = CalculatedRemote {
            vpn_range: "fd00::/64".parse().expect("net"),
            mask: "2001:db8:1::/64".parse().expect("net"),
            port: 1,
        };
        assert_eq!(
            c6.apply("fd00::1:2".parse().expect("ip")),
            Some(sa("[2001:db8:1::1:2]:1"))
        );
        assert_eq!(c6.apply("10.0.10.1".parse().expect("ip")), None);
    }

    #[test]
    fn a_host_known_only_by_its_learned_address_stays_small() {
        let mut r = RemoteList::default();
        r.learn(sa("198.51.100.1:4242"));
        r.set_calculated(Vec::new());
        r.set_static(Vec::new());
        assert!(
            r.sources.is_none(),
            "no box for sources the host does not have"
        );
        assert_eq!(r.learned.capacity(), 1, "one slot for one address");
        assert!(std::mem::size_of::<RemoteList>() <= 32);
        r.set_static(vec![sa("203.0.113.1:4242")]);
        r.block(sa("192.0.2.1:1"));
        r.forget_dynamic();
        assert_eq!(r.static_addrs(), &[sa("203.0.113.1:4242")]);
        assert!(r.blocked().is_empty() && r.learned.is_empty());
    }

    #[test]
    fn relays_merge_across_lighthouses() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let mut r = RemoteList::default();
        r.set_relays_from_lighthouse(ip("10.0.0.2"), vec![ip("10.0.0.9"), ip("10.0.0.8")]);
        r.set_relays_from_lighthouse(ip("10.0.0.1"), vec![ip("10.0.0.8")]);
        assert_eq!(r.relays(), vec![ip("10.0.0.8"), ip("10.0.0.9")]);
        r.forget_dynamic();
        assert!(r.relays().is_empty());
    }

    #[test]
    fn lighthouse_answers_are_capped_per_family() {
        let mut r = RemoteList::default();
        let many: Vec<SocketAddr> = (1..=15).map(|p| sa(&format!("203.0.113.9:{p}"))).collect();
        r.set_from_lighthouse("10.0.0.1".parse().expect("ip"), many);
        assert_eq!(r.addrs(&[]).len(), MAX_REMOTES_PER_FAMILY);
        r.forget_dynamic();
        assert!(r.is_empty());
    }

    #[test]
    fn relay_and_block_lists_are_bounded_and_distinct() {
        let lh: IpAddr = "10.0.0.1".parse().expect("ip");
        let mut r = RemoteList::default();
        // A member advertising thousands of relays, with repeats.
        let flood: Vec<IpAddr> = (0..8_000u32)
            .map(|n| IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + n % 4_000)))
            .collect();
        r.set_relays_from_lighthouse(lh, flood.clone());
        assert_eq!(r.relays(), flood[..MAX_RELAYS].to_vec());
        let dup = vec![flood[0], flood[0], flood[1]];
        r.set_relays_from_lighthouse(lh, dup);
        assert_eq!(r.relays(), vec![flood[0], flood[1]]);
        for n in 0..100u16 {
            let a = SocketAddr::from(([192, 0, 2, 1], 4000 + n));
            r.block(a);
            r.block(a);
        }
        assert_eq!(r.blocked().len(), MAX_BLOCKED);
        assert_eq!(
            r.blocked().last(),
            Some(&SocketAddr::from(([192, 0, 2, 1], 4099)))
        );
    }

    #[test]
    fn learned_addresses_are_capped_per_family_newest_first() {
        let mut r = RemoteList::default();
        let v6 = sa("[2001:db8::1]:4242");
        r.learn(v6);
        for n in 0..100u16 {
            r.learn(SocketAddr::from(([198, 51, 100, 1], 1000 + n)));
        }
        let v4: Vec<&SocketAddr> = r.learned.iter().filter(|a| a.is_ipv4()).collect();
        assert_eq!(v4.len(), MAX_REMOTES_PER_FAMILY);
        assert_eq!(
            r.learned.first(),
            Some(&sa("198.51.100.1:1099")),
            "newest first"
        );
        assert!(
            r.learned.contains(&v6),
            "an IPv4 flood does not push out the IPv6 address"
        );
        for n in 0..100u16 {
            r.learn(SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 2], n)));
        }
        assert_eq!(r.learned.len(), 2 * MAX_REMOTES_PER_FAMILY);
        assert!(!r.learned.contains(&v6), "the oldest IPv6 address went");
        r.learn(r.learned[5]);
        assert_eq!(
            r.learned.len(),
            2 * MAX_REMOTES_PER_FAMILY,
            "a known address is not re-added"
        );
    }
}
