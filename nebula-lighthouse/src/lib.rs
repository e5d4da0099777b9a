//! The lighthouse's address book: which underlay addresses each host reported and where we saw it,
//! answers to HostQuery and the HostPunchNotification that lets both sides punch at once. Sans-IO.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use ipnet::IpNet;
use nebula_core::lighthouse::{KnownHost, LighthouseServer};
use nebula_core::remotes::{distinct_capped, RemoteAllowList, MAX_RELAYS};
use proto::lighthouse::{AddrEncoding, NebulaMeta, NebulaMetaDetails, NebulaMetaType};

/// Most reported addresses kept per family for one host (Go's `MaxRemotes`).
pub const MAX_REPORTED_PER_FAMILY: usize = 10;

/// Most hosts the address book holds by default ([`AddressBook::with_max_hosts`]).
///
/// An entry costs at most about 1.5 KiB (the map slot, 10 + 10 reported addresses and 10 relays,
/// with the vectors' slack), usually ~300 bytes: 100k hosts are ~150 MiB at worst. The book only
/// holds hosts with a live tunnel to the lighthouse (see [`LighthouseServer::host_gone`]), and a
/// tunnel costs the lighthouse several times an entry, so this is a backstop that no mesh this
/// lighthouse can carry should reach. Go has no such cap.
pub const MAX_HOSTS: usize = 100_000;

/// What the lighthouse knows about one host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostEntry {
    /// Where the lighthouse sees the host (the tunnel's current remote).
    pub learned: Option<SocketAddr>,
    /// What the host reported in its last HostUpdateNotification.
    pub reported: Box<[SocketAddr]>,
    /// Relays the host can be reached through.
    pub relays: Box<[IpAddr]>,
    /// The encoding the host used last (we answer it in kind).
    pub encoding: Option<AddrEncoding>,
}

impl HostEntry {
    /// Learned address first, then the reported ones, without duplicates.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = Vec::new();
        for a in self.learned.iter().chain(self.reported.iter()) {
            if !v.contains(a) {
                v.push(*a);
            }
        }
        v
    }
}

/// Which reported addresses the lighthouse keeps: `(host's vpn address, address) -> keep?`.
pub type AddressFilter = Box<dyn Fn(IpAddr, SocketAddr) -> bool + Send>;

/// The address book; plug it into the engine with `Engine::set_lighthouse_server`.
///
/// It holds at most [`AddressBook::max_hosts`] hosts. When it is full, a host not in it yet is
/// refused rather than another evicted: an evicted host would be unreachable until its next update
/// (and would then evict someone else), so eviction lets one member with many certificates churn
/// everyone out, while refusal keeps every registered host working. A refused host's update is
/// counted ([`AddressBook::refused_updates`]) and not acknowledged; it gets in with a later
/// update once a host's tunnel goes away. Queries are still answered for it.
pub struct AddressBook {
    hosts: HashMap<IpAddr, HostEntry>,
    filter: Option<AddressFilter>,
    max_hosts: usize,
    refused_updates: u64,
}

impl Default for AddressBook {
    fn default() -> Self {
        AddressBook {
            hosts: HashMap::new(),
            filter: None,
            max_hosts: MAX_HOSTS,
            refused_updates: 0,
        }
    }
}

impl AddressBook {
    pub fn new() -> AddressBook {
        AddressBook::default()
    }

    /// An address book that keeps only the reported addresses `filter` accepts.
    pub fn with_filter(filter: AddressFilter) -> AddressBook {
        AddressBook {
            filter: Some(filter),
            ..AddressBook::default()
        }
    }

    /// The same book holding at most `max` hosts (default [`MAX_HOSTS`]).
    pub fn with_max_hosts(mut self, max: usize) -> AddressBook {
        self.max_hosts = max;
        self
    }

    /// Most hosts this book holds.
    pub fn max_hosts(&self) -> usize {
        self.max_hosts
    }

    /// Host updates refused so far because the book was full.
    pub fn refused_updates(&self) -> u64 {
        self.refused_updates
    }

    /// The entry for `vpn`, made if there is room; `None` if the book is full.
    fn entry_with_room(&mut self, vpn: IpAddr) -> Option<&mut HostEntry> {
        if !self.hosts.contains_key(&vpn) && self.hosts.len() >= self.max_hosts {
            return None;
        }
        Some(self.hosts.entry(vpn).or_default())
    }

    /// As Go's lighthouse does: reported addresses must pass our `lighthouse.remote_allow_list`
    /// (and its `remote_allow_ranges`) and must not lie inside our vpn networks.
    pub fn with_remote_allow_list(list: RemoteAllowList, vpn_networks: Vec<IpNet>) -> AddressBook {
        AddressBook::with_filter(Box::new(move |vpn, addr| {
            list.allows(vpn, addr.ip()) && !vpn_networks.iter().any(|n| n.contains(&addr.ip()))
        }))
    }

    pub fn get(&self, vpn: &IpAddr) -> Option<&HostEntry> {
        self.hosts.get(vpn)
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    fn details_for(
        subject: IpAddr,
        entry: &HostEntry,
        encoding: AddrEncoding,
    ) -> NebulaMetaDetails {
        let encoding = if subject.is_ipv4() {
            encoding
        } else {
            AddrEncoding::V2
        };
        let mut d = NebulaMetaDetails::for_vpn_addr(subject, encoding).unwrap_or_default();
        for a in entry.addresses() {
            d.push_underlay(a);
        }
        let relays: Vec<IpAddr> = entry
            .relays
            .iter()
            .copied()
            .filter(|r| encoding == AddrEncoding::V2 || r.is_ipv4())
            .collect();
        let _ = d.set_relays(relays, encoding);
        d
    }
}

fn capped(addrs: impl Iterator<Item = SocketAddr>) -> Vec<SocketAddr> {
    let (mut v4, mut v6) = (0usize, 0usize);
    let mut out = Vec::new();
    for a in addrs {
        let n = if a.is_ipv4() { &mut v4 } else { &mut v6 };
        if *n < MAX_REPORTED_PER_FAMILY && !out.contains(&a) {
            *n += 1;
            out.push(a);
        }
    }
    out
}

impl LighthouseServer for AddressBook {
    fn known_hosts(&self) -> Vec<KnownHost> {
        self.hosts
            .iter()
            .map(|(vpn, e)| KnownHost {
                vpn_addr: *vpn,
                learned: e.learned.into_iter().collect(),
                reported: e.reported.to_vec(),
                relays: e.relays.to_vec(),
            })
            .collect()
    }

    fn handle(
        &mut self,
        _now: Instant,
        from_vpn: &[IpAddr],
        learned: Option<SocketAddr>,
        msg: &NebulaMeta,
        replies: &mut Vec<(IpAddr, NebulaMeta)>,
    ) {
        let Some(sender) = from_vpn.first().copied() else {
            return;
        };
        let Some(details) = msg.details.as_ref() else {
            return;
        };
        match msg.known_type() {
            Some(NebulaMetaType::HostQuery) => {
                let Some((subject, encoding)) = details.vpn_addr_and_encoding() else {
                    return;
                };
                // Keep the querier's learned address fresh: the punch notification uses it. In a
                // full book a new querier is not stored, only used for this punch.
                let querier = match self.entry_with_room(sender) {
                    Some(q) => {
                        if learned.is_some() {
                            q.learned = learned;
                        }
                        q.clone()
                    }
                    None => HostEntry {
                        learned,
                        ..HostEntry::default()
                    },
                };
                let Some(entry) = self.hosts.get(&subject) else {
                    return; // unknown host: no answer, as Go
                };
                replies.push((
                    sender,
                    NebulaMeta::new(
                        NebulaMetaType::HostQueryReply,
                        Self::details_for(subject, entry, encoding),
                    ),
                ));
                // Tell the queried host to punch towards the querier.
                let enc = entry.encoding.unwrap_or(encoding);
                replies.push((
                    subject,
                    NebulaMeta::new(
                        NebulaMetaType::HostPunchNotification,
                        Self::details_for(sender, &querier, enc),
                    ),
                ));
            }
            Some(NebulaMetaType::HostUpdateNotification) => {
                let encoding = match details.vpn_addr_and_encoding() {
                    // The subject must be the sender itself.
                    Some((vpn, enc)) if from_vpn.contains(&vpn) => enc,
                    Some(_) => return,
                    // v2 may omit it.
                    None => AddrEncoding::V2,
                };
                let filter = self.filter.as_ref();
                let reported = capped(
                    details
                        .underlay_addrs()
                        .filter(|a| filter.is_none_or(|f| f(sender, *a))),
                );
                let Some(entry) = self.entry_with_room(sender) else {
                    self.refused_updates += 1;
                    return;
                };
                entry.learned = learned;
                entry.reported = reported.into_boxed_slice();
                // A host may advertise at most MAX_RELAYS distinct relays (as Go caps them).
                entry.relays = distinct_capped(details.relays(), MAX_RELAYS).into_boxed_slice();
                entry.encoding = Some(encoding);
                let ack = NebulaMetaDetails::for_vpn_addr(
                    sender,
                    if sender.is_ipv4() {
                        encoding
                    } else {
                        AddrEncoding::V2
                    },
                )
                .unwrap_or_default();
                replies.push((
                    sender,
                    NebulaMeta::new(NebulaMetaType::HostUpdateNotificationAck, ack),
                ));
            }
            _ => {}
        }
    }

    fn host_gone(&mut self, vpn: IpAddr) {
        self.hosts.remove(&vpn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }
    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    fn update(me: &str, addrs: &[&str], enc: AddrEncoding) -> NebulaMeta {
        let mut d = NebulaMetaDetails::for_vpn_addr(ip(me), enc).expect("details");
        for a in addrs {
            d.push_underlay(sa(a));
        }
        NebulaMeta::new(NebulaMetaType::HostUpdateNotification, d)
    }

    fn query(subject: &str, enc: AddrEncoding) -> NebulaMeta {
        NebulaMeta::new(
            NebulaMetaType::HostQuery,
            NebulaMetaDetails::for_vpn_addr(ip(subject), enc).expect("details"),
        )
    }

    #[test]
    fn update_then_query_answers_and_punches() {
        let mut lh = AddressBook::new();
        let now = Instant::now();
        let mut r = Vec::new();
        lh.handle(
            now,
            &[ip("10.1.0.2")],
            Some(sa("203.0.113.2:4242")),
            &update("10.1.0.2", &["192.168.1.2:4242"], AddrEncoding::V1),
            &mut r,
        );
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].1.known_type(),
            Some(NebulaMetaType::HostUpdateNotificationAck)
        );
        r.clear();
        lh.handle(
            now,
            &[ip("10.1.0.3")],
            Some(sa("198.51.100.3:5000")),
            &query("10.1.0.2", AddrEncoding::V1),
            &mut r,
        );
        assert_eq!(r.len(), 2);
        let (to, reply) = &r[0];
        assert_eq!(*to, ip("10.1.0.3"));
        assert_eq!(reply.known_type(), Some(NebulaMetaType::HostQueryReply));
        let d = reply.details.as_ref().expect("details");
        assert_eq!(d.old_vpn_addr, 0x0a01_0002);
        let addrs: Vec<SocketAddr> = d.underlay_addrs().collect();
        assert_eq!(addrs, vec![sa("203.0.113.2:4242"), sa("192.168.1.2:4242")]);
        let (to, punch) = &r[1];
        assert_eq!(*to, ip("10.1.0.2"));
        assert_eq!(
            punch.known_type(),
            Some(NebulaMetaType::HostPunchNotification)
        );
        let pd = punch.details.as_ref().expect("details");
        assert_eq!(
            pd.underlay_addrs().collect::<Vec<_>>(),
            vec![sa("198.51.100.3:5000")]
        );
    }

    #[test]
    fn unknown_host_gets_no_answer_and_spoofed_updates_are_ignored() {
        let mut lh = AddressBook::new();
        let now = Instant::now();
        let mut r = Vec::new();
        lh.handle(
            now,
            &[ip("10.1.0.3")],
            None,
            &query("10.1.0.9", AddrEncoding::V2),
            &mut r,
        );
        assert!(r.is_empty());
        // 10.1.0.3 claims to be 10.1.0.2.
        lh.handle(
            now,
            &[ip("10.1.0.3")],
            Some(sa("203.0.113.3:1")),
            &update("10.1.0.2", &["192.0.2.66:1"], AddrEncoding::V1),
            &mut r,
        );
        assert!(r.is_empty());
        assert!(lh.get(&ip("10.1.0.2")).is_none());
    }

    #[test]
    fn remote_allow_list_and_vpn_networks_filter_reported_addresses() {
        use nebula_core::remotes::AllowList;
        let list = RemoteAllowList {
            base: Some(AllowList {
                rules: vec![
                    ("172.16.0.0/12".parse().expect("net"), false),
                    ("0.0.0.0/0".parse().expect("net"), true),
                ],
            }),
            ranges: Vec::new(),
        };
        let mut lh =
            AddressBook::with_remote_allow_list(list, vec!["10.1.0.0/16".parse().expect("net")]);
        let mut r = Vec::new();
        lh.handle(
            Instant::now(),
            &[ip("10.1.0.2")],
            Some(sa("203.0.113.2:4242")),
            &update(
                "10.1.0.2",
                &["172.17.0.5:4242", "10.1.0.2:4242", "192.168.1.2:4242"],
                AddrEncoding::V1,
            ),
            &mut r,
        );
        assert_eq!(
            &*lh.get(&ip("10.1.0.2")).expect("entry").reported,
            &[sa("192.168.1.2:4242")]
        );
    }

    #[test]
    fn an_entry_is_small() {
        // One per registered host; 100k hosts at about 100 bytes a slot.
        assert!(std::mem::size_of::<HostEntry>() <= 72);
    }

    #[test]
    fn reported_addresses_are_capped_and_forgotten_when_the_host_goes() {
        let mut lh = AddressBook::new();
        let now = Instant::now();
        let mut r = Vec::new();
        let many: Vec<String> = (1..=20).map(|p| format!("192.0.2.1:{p}")).collect();
        let refs: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
        lh.handle(
            now,
            &[ip("10.1.0.2")],
            None,
            &update("10.1.0.2", &refs, AddrEncoding::V2),
            &mut r,
        );
        assert_eq!(
            lh.get(&ip("10.1.0.2")).expect("entry").reported.len(),
            MAX_REPORTED_PER_FAMILY
        );
        lh.host_gone(ip("10.1.0.2"));
        assert!(lh.is_empty());
    }

    #[test]
    fn an_advertised_relay_list_is_capped_and_distinct() {
        let mut lh = AddressBook::new();
        let now = Instant::now();
        let mut msg = update("10.1.0.2", &["192.0.2.2:4242"], AddrEncoding::V2);
        // A member (holding a valid certificate) advertising 8,000 relays, every one twice.
        let relays: Vec<IpAddr> = (0..8_000u32)
            .map(|n| IpAddr::V4(std::net::Ipv4Addr::from(0x0a02_0000 + n / 2)))
            .collect();
        msg.details
            .as_mut()
            .expect("details")
            .set_relays(relays.clone(), AddrEncoding::V2)
            .expect("relays");
        let mut r = Vec::new();
        lh.handle(now, &[ip("10.1.0.2")], None, &msg, &mut r);
        let stored = &lh.get(&ip("10.1.0.2")).expect("entry").relays;
        assert_eq!(stored.len(), MAX_RELAYS);
        let want: Vec<IpAddr> = (0..MAX_RELAYS as u32)
            .map(|n| IpAddr::V4(std::net::Ipv4Addr::from(0x0a02_0000 + n)))
            .collect();
        assert_eq!(&stored[..], &want[..]);
        // And that is all a querier is handed.
        let mut replies = Vec::new();
        lh.handle(
            now,
            &[ip("10.1.0.3")],
            None,
            &query("10.1.0.2", AddrEncoding::V2),
            &mut replies,
        );
        let answer = replies.first().expect("an answer");
        assert_eq!(
            answer.1.details.as_ref().expect("details").relays().len(),
            MAX_RELAYS
        );
    }

    #[test]
    fn a_full_book_refuses_new_hosts_and_keeps_the_registered_ones() {
        let mut lh = AddressBook::new().with_max_hosts(100);
        let now = Instant::now();
        let mut r = Vec::new();
        // 1,000 members (each with a valid certificate) register.
        for n in 0..1_000u32 {
            let vpn = IpAddr::V4(std::net::Ipv4Addr::from(0x0a01_0000 + n));
            let msg = update(&vpn.to_string(), &["192.0.2.2:4242"], AddrEncoding::V2);
            lh.handle(now, &[vpn], None, &msg, &mut r);
        }
        assert_eq!(lh.len(), 100, "the book stops at its cap");
        assert_eq!(lh.refused_updates(), 900);
        assert_eq!(r.len(), 100, "only stored updates are acknowledged");
        // The first hundred stay, and can be found.
        let first = IpAddr::V4(std::net::Ipv4Addr::from(0x0a01_0000));
        assert!(lh.get(&first).is_some());
        // A refused host can still ask, and the host it asks for is told where to punch.
        let late = IpAddr::V4(std::net::Ipv4Addr::from(0x0a01_0000 + 999));
        r.clear();
        lh.handle(
            now,
            &[late],
            Some(sa("198.51.100.9:7")),
            &query(&first.to_string(), AddrEncoding::V2),
            &mut r,
        );
        assert_eq!(r.len(), 2);
        let punch = r[1].1.details.as_ref().expect("details");
        assert_eq!(
            punch.underlay_addrs().collect::<Vec<_>>(),
            vec![sa("198.51.100.9:7")]
        );
        assert_eq!(lh.len(), 100, "a query does not add a host to a full book");
        // Once a host goes, a newcomer gets its place.
        lh.host_gone(first);
        lh.handle(
            now,
            &[late],
            None,
            &update(&late.to_string(), &["192.0.2.9:4242"], AddrEncoding::V2),
            &mut r,
        );
        assert!(lh.get(&late).is_some());
        assert_eq!(lh.len(), 100);
    }
}
