//! Known underlay addresses per vpn address: static entries, lighthouse answers and addresses
//! learned from handshakes, merged into the ordered list a handshake attempt sends to.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// Most addresses kept per family from one lighthouse answer (Go's `MaxRemotes`).
pub const MAX_REMOTES_PER_FAMILY: usize = 10;

/// The addresses we know for one vpn address.
#[derive(Clone, Debug, Default)]
pub struct RemoteList {
    /// From `static_host_map`; never forgotten.
    pub static_addrs: Vec<SocketAddr>,
    /// From lighthouse answers, by the lighthouse that reported them.
    pub from_lighthouse: HashMap<IpAddr, Vec<SocketAddr>>,
    /// Where a handshake or an authenticated packet from this host came from.
    pub learned: Vec<SocketAddr>,
    /// Addresses that answered a handshake with the wrong certificate.
    pub blocked: Vec<SocketAddr>,
}

impl RemoteList {
    /// Every distinct address, preferred ranges first, then in insertion order (static, learned,
    /// lighthouse), blocked ones left out.
    pub fn addrs(&self, preferred: &[IpNet]) -> Vec<SocketAddr> {
        let mut all: Vec<SocketAddr> = Vec::new();
        let lh = {
            let mut v: Vec<&IpAddr> = self.from_lighthouse.keys().collect();
            v.sort();
            v.into_iter()
                .filter_map(|k| self.from_lighthouse.get(k))
                .flatten()
                .copied()
                .collect::<Vec<_>>()
        };
        for a in self
            .static_addrs
            .iter()
            .chain(self.learned.iter())
            .chain(lh.iter())
        {
            if !all.contains(a) && !self.blocked.contains(a) {
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
        self.static_addrs.is_empty() && self.learned.is_empty() && self.from_lighthouse.is_empty()
    }

    /// Record an address seen on an authenticated packet or handshake.
    pub fn learn(&mut self, addr: SocketAddr) {
        if !self.learned.contains(&addr) {
            self.learned.insert(0, addr);
            self.learned.truncate(MAX_REMOTES_PER_FAMILY);
        }
    }

    /// Replace what `lighthouse` told us.
    pub fn set_from_lighthouse(&mut self, lighthouse: IpAddr, addrs: Vec<SocketAddr>) {
        let mut v4: Vec<SocketAddr> = Vec::new();
        let mut v6: Vec<SocketAddr> = Vec::new();
        for a in addrs {
            let list = if a.is_ipv4() { &mut v4 } else { &mut v6 };
            if list.len() < MAX_REMOTES_PER_FAMILY && !list.contains(&a) {
                list.push(a);
            }
        }
        v4.extend(v6);
        self.from_lighthouse.insert(lighthouse, v4);
    }

    /// Forget everything but the static entries (a tunnel died).
    pub fn forget_dynamic(&mut self) {
        self.from_lighthouse.clear();
        self.learned.clear();
        self.blocked.clear();
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
        let mut r = RemoteList {
            static_addrs: vec![sa("203.0.113.1:4242")],
            ..Default::default()
        };
        r.set_from_lighthouse(
            "10.0.0.1".parse().expect("ip"),
            vec![
                sa("192.168.1.5:4242"),
                sa("203.0.113.1:4242"),
                sa("198.51.100.7:1"),
            ],
        );
        r.blocked.push(sa("198.51.100.7:1"));
        let pref: Vec<IpNet> = vec!["192.168.0.0/16".parse().expect("net")];
        assert_eq!(
            r.addrs(&pref),
            vec![sa("192.168.1.5:4242"), sa("203.0.113.1:4242")]
        );
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
}
