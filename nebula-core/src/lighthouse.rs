//! The lighthouse client's messages (queries and host updates) and the seam where a lighthouse's
//! address book (the `nebula-lighthouse` crate) plugs into the engine.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use nebula_cert::Version;
use proto::lighthouse::{AddrEncoding, NebulaMeta, NebulaMetaDetails, NebulaMetaType};

/// The lighthouse side (`lighthouse.am_lighthouse: true`): given a message from a peer, produce
/// replies addressed to vpn addresses (the engine sends each over its tunnel to that host).
pub trait LighthouseServer: Send {
    /// `from_vpn`: the sender's vpn addresses (first = identity); `learned`: the sender's underlay
    /// address as we see it (the tunnel's current remote), `None` when relayed.
    fn handle(
        &mut self,
        now: Instant,
        from_vpn: &[IpAddr],
        learned: Option<SocketAddr>,
        msg: &NebulaMeta,
        replies: &mut Vec<(IpAddr, NebulaMeta)>,
    );

    /// A tunnel to `vpn` went away: forget what it told us.
    fn host_gone(&mut self, _vpn: IpAddr) {}

    /// Everything the book holds, in any order (diagnostics: the debug console's address map).
    fn known_hosts(&self) -> Vec<KnownHost> {
        Vec::new()
    }
}

/// What a lighthouse's address book holds about one host, as plain data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownHost {
    pub vpn_addr: IpAddr,
    /// Where the lighthouse sees the host.
    pub learned: Vec<SocketAddr>,
    /// What the host reported.
    pub reported: Vec<SocketAddr>,
    /// Relays the host can be reached through.
    pub relays: Vec<IpAddr>,
}

/// Lighthouse messages other than plain host queries a lighthouse takes from one tunnel at once.
/// Honest hosts send one host update per `lighthouse.interval` (and a few on start or reload).
pub const UPDATE_BURST: u32 = 20;
/// Tokens back per second for [`UPDATE_BURST`] (one every 100 ms).
pub const UPDATE_REFILL_PER_SEC: u32 = 10;

/// True if `payload` starts with a NebulaMeta type field saying HostQuery, in the canonical
/// one-byte form every implementation writes (field 1, varint). Lets a lighthouse tell queries
/// from everything else without decoding the message.
pub fn is_plain_query(payload: &[u8]) -> bool {
    payload.first() == Some(&0x08) && payload.get(1) == Some(&(NebulaMetaType::HostQuery as u8))
}

/// A lighthouse's budget for the messages it decodes in full (host updates, anything not a
/// plain query) per tunnel: a token bucket of [`UPDATE_BURST`] refilled at
/// [`UPDATE_REFILL_PER_SEC`]. A member flooding 9 KB host updates (thousands of relays and
/// addresses) would otherwise keep the lighthouse decoding them while everyone else's
/// handshakes and queries wait behind them in the socket buffer. A full bucket is the same as
/// none, so the table keeps only tunnels that spent tokens lately: when it has doubled since the
/// last sweep, refilled buckets and those of tunnels that are gone are dropped. An honest host
/// (one update per interval) is back to a full bucket 100 ms after its update, so a lighthouse
/// holds no budget state for its idle hosts.
#[derive(Default, Debug)]
pub struct UpdateBudget {
    buckets: std::collections::HashMap<u32, (Instant, u32)>,
    /// Sweep when the table holds 64 more entries than this (and never later than at twice the
    /// tunnels, plus 64).
    sweep_at: usize,
    dropped: u64,
}

fn per_token() -> std::time::Duration {
    std::time::Duration::from_secs(1) / UPDATE_REFILL_PER_SEC
}

/// Whether a bucket left at `tokens` at `since` is full again at `now`.
fn refilled(now: Instant, since: Instant, tokens: u32) -> bool {
    now.saturating_duration_since(since) >= per_token() * UPDATE_BURST.saturating_sub(tokens)
}

impl UpdateBudget {
    /// Take a token for tunnel `local_index` at `now`; false (and counted) if it has none.
    /// `alive` says whether a local index still names a tunnel (for the clean-up).
    pub fn take(
        &mut self,
        now: Instant,
        local_index: u32,
        tunnels: usize,
        alive: impl Fn(u32) -> bool,
    ) -> bool {
        if !self.buckets.contains_key(&local_index)
            && self.buckets.len() >= self.sweep_at.max(2).min(2 * tunnels) + 64
        {
            self.buckets
                .retain(|i, (since, tokens)| alive(*i) && !refilled(now, *since, *tokens));
            if self.buckets.len() < self.buckets.capacity() / 4 {
                self.buckets.shrink_to_fit();
            }
            self.sweep_at = 2 * self.buckets.len();
        }
        let (since, tokens) = self
            .buckets
            .entry(local_index)
            .or_insert((now, UPDATE_BURST));
        let per_token = per_token();
        let earned = now.saturating_duration_since(*since).as_nanos() / per_token.as_nanos();
        if earned > 0 {
            *tokens = (*tokens)
                .saturating_add(u32::try_from(earned).unwrap_or(u32::MAX))
                .min(UPDATE_BURST);
            *since += per_token
                * u32::try_from(earned.min(u128::from(UPDATE_BURST))).unwrap_or(UPDATE_BURST);
            if *tokens == UPDATE_BURST {
                *since = now;
            }
        }
        if *tokens == 0 {
            self.dropped += 1;
            return false;
        }
        *tokens -= 1;
        true
    }

    /// Messages refused so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Tunnels with a bucket.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// Most lighthouse messages kept while their lighthouse has no tunnel yet.
pub const MAX_DEFERRED: usize = 256;

/// The lighthouse client's waiting room: messages for lighthouses we have no tunnel to yet, in
/// order, at most [`MAX_DEFERRED`] (the oldest go first).
#[derive(Default, Debug)]
pub struct Deferred {
    queue: VecDeque<(IpAddr, Vec<u8>)>,
}

impl Deferred {
    /// Keep `msg` (an encoded lighthouse message) for `lighthouse`.
    pub fn push(&mut self, lighthouse: IpAddr, msg: Vec<u8>) {
        self.queue.push_back((lighthouse, msg));
        while self.queue.len() > MAX_DEFERRED {
            self.queue.pop_front();
        }
    }

    /// Take out, in order, the messages whose lighthouse `ready` says can be reached now.
    pub fn take_ready(&mut self, mut ready: impl FnMut(&IpAddr) -> bool) -> Vec<(IpAddr, Vec<u8>)> {
        let mut out = Vec::new();
        let mut keep = VecDeque::with_capacity(self.queue.len());
        for (lh, msg) in self.queue.drain(..) {
            if ready(&lh) {
                out.push((lh, msg));
            } else {
                keep.push_back((lh, msg));
            }
        }
        self.queue = keep;
        out
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// The address encoding for a tunnel that uses certificate `version` (v1 fields for v1 tunnels,
/// which is all a 1.6.1 peer understands; IPv6 needs v2).
pub fn encoding_for(version: Version, addr: IpAddr) -> AddrEncoding {
    if version == Version::V1 && addr.is_ipv4() {
        AddrEncoding::V1
    } else {
        AddrEncoding::V2
    }
}

/// `HostQuery` for `vpn`.
pub fn host_query(vpn: IpAddr, version: Version) -> NebulaMeta {
    let details =
        NebulaMetaDetails::for_vpn_addr(vpn, encoding_for(version, vpn)).unwrap_or_default();
    NebulaMeta::new(NebulaMetaType::HostQuery, details)
}

/// `HostUpdateNotification` announcing our underlay addresses and the relays that reach us
/// (`relay.relays`; v1 tunnels can only carry IPv4 relays).
pub fn host_update(
    me: IpAddr,
    addrs: &[SocketAddr],
    relays: &[IpAddr],
    version: Version,
) -> NebulaMeta {
    let encoding = encoding_for(version, me);
    let mut details = NebulaMetaDetails::for_vpn_addr(me, encoding).unwrap_or_default();
    for a in addrs {
        details.push_underlay(*a);
    }
    let relays: Vec<IpAddr> = relays
        .iter()
        .copied()
        .filter(|r| encoding == AddrEncoding::V2 || r.is_ipv4())
        .collect();
    if !relays.is_empty() {
        let _ = details.set_relays(relays, encoding);
    }
    NebulaMeta::new(NebulaMetaType::HostUpdateNotification, details)
}

/// The relays a reply names for its subject.
pub fn parse_relays(msg: &NebulaMeta) -> Vec<IpAddr> {
    msg.details.as_ref().map(|d| d.relays()).unwrap_or_default()
}

/// The subject and underlay addresses of a reply or punch notification.
pub fn parse_addresses(msg: &NebulaMeta) -> Option<(IpAddr, Vec<SocketAddr>)> {
    let d = msg.details.as_ref()?;
    let (vpn, _) = d.vpn_addr_and_encoding()?;
    Some((vpn, d.underlay_addrs().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn queries_are_told_from_updates_without_decoding() {
        let q = host_query("10.42.1.6".parse().expect("ip"), Version::V1).encode_to_vec();
        let u =
            host_update("10.42.1.6".parse().expect("ip"), &[], &[], Version::V2).encode_to_vec();
        assert!(is_plain_query(&q));
        assert!(!is_plain_query(&u));
        assert!(!is_plain_query(&[]));
        // The same query with its type as a two-byte varint is not "plain": it pays.
        let mut long = vec![0x08, 0x81, 0x00];
        long.extend_from_slice(&q[2..]);
        assert_eq!(
            NebulaMeta::decode(long.as_slice()).expect("decodes"),
            NebulaMeta::decode(q.as_slice()).expect("decodes")
        );
        assert!(!is_plain_query(&long));
    }

    #[test]
    fn update_budget_allows_a_burst_then_ten_a_second_per_tunnel() {
        let t0 = Instant::now();
        let mut b = UpdateBudget::default();
        for _ in 0..UPDATE_BURST {
            assert!(b.take(t0, 7, 1, |_| true));
        }
        assert!(!b.take(t0, 7, 1, |_| true), "the burst is spent");
        // Another tunnel has its own bucket.
        assert!(b.take(t0, 8, 2, |_| true));
        // 250 ms later: two more (one per 100 ms), not three.
        let t1 = t0 + std::time::Duration::from_millis(250);
        assert!(b.take(t1, 7, 2, |_| true));
        assert!(b.take(t1, 7, 2, |_| true));
        assert!(!b.take(t1, 7, 2, |_| true));
        // The 50 ms left over count towards the next token.
        assert!(b.take(t0 + std::time::Duration::from_millis(300), 7, 2, |_| true));
        // A long pause refills to the burst, no more.
        let t2 = t0 + std::time::Duration::from_secs(3600);
        let got = (0..100).filter(|_| b.take(t2, 7, 2, |_| true)).count();
        assert_eq!(got, UPDATE_BURST as usize);
        assert_eq!(b.dropped(), 2 + 100 - u64::from(UPDATE_BURST));
    }

    #[test]
    fn update_budget_keeps_nothing_for_hosts_that_are_back_to_a_full_bucket() {
        let t0 = Instant::now();
        let mut b = UpdateBudget::default();
        // 10,000 live tunnels each send one update, 1 ms apart: by the time the table sweeps,
        // the early ones are full again and go.
        for i in 0..10_000u32 {
            let now = t0 + std::time::Duration::from_millis(u64::from(i));
            assert!(b.take(now, i, 10_000, |_| true));
        }
        // At most the last 100 ms of senders (one a millisecond), twice over, plus the slack.
        assert!(
            b.len() <= 2 * 100 + 64,
            "{} buckets kept for idle hosts",
            b.len()
        );
        // A tunnel that spent its burst keeps its (empty) bucket across sweeps.
        let t1 = t0 + std::time::Duration::from_secs(20);
        for _ in 0..UPDATE_BURST {
            assert!(b.take(t1, 99_999, 10_000, |_| true));
        }
        for i in 0..1_000u32 {
            b.take(t1, 20_000 + i, 10_000, |_| true);
        }
        assert!(
            !b.take(t1, 99_999, 10_000, |_| true),
            "the flooder stays limited"
        );
    }

    #[test]
    fn update_budget_forgets_tunnels_that_are_gone() {
        let t0 = Instant::now();
        let mut b = UpdateBudget::default();
        // 1 live tunnel (index 0): the table may hold 2 * 1 + 64 entries before a clean-up.
        for i in 0..66 {
            assert!(b.take(t0, i, 1, |i| i == 0));
        }
        assert_eq!(b.len(), 66);
        assert!(b.take(t0, 1000, 1, |i| i == 0));
        assert_eq!(b.len(), 2, "only the live tunnel and the new one are left");
    }

    #[test]
    fn v1_query_matches_go_bytes() {
        // PROTOCOL.md §5.1: v1 HostQuery for 10.42.1.6.
        let m = host_query("10.42.1.6".parse().expect("ip"), Version::V1);
        assert_eq!(
            m.encode_to_vec(),
            [0x08, 0x01, 0x12, 0x05, 0x08, 0x86, 0x82, 0xa8, 0x51]
        );
    }

    #[test]
    fn v2_query_matches_go_bytes() {
        let m = host_query("10.42.1.6".parse().expect("ip"), Version::V2);
        assert_eq!(
            m.encode_to_vec(),
            [0x08, 0x01, 0x12, 0x0a, 0x32, 0x08, 0x10, 0x86, 0x82, 0xa8, 0xd1, 0xf0, 0xff, 0x3f]
        );
    }

    #[test]
    fn update_round_trips_addresses() {
        let addrs: Vec<SocketAddr> = vec![
            "192.0.2.1:4242".parse().expect("a"),
            "[2001:db8::1]:4242".parse().expect("b"),
        ];
        let relays: Vec<IpAddr> = vec!["10.1.0.9".parse().expect("ip")];
        let m = host_update(
            "10.1.0.2".parse().expect("ip"),
            &addrs,
            &relays,
            Version::V1,
        );
        let back = NebulaMeta::decode(m.encode_to_vec().as_slice()).expect("decode");
        let (vpn, got) = parse_addresses(&back).expect("parse");
        assert_eq!(vpn, "10.1.0.2".parse::<IpAddr>().expect("ip"));
        assert_eq!(got, addrs);
        assert_eq!(parse_relays(&back), relays);
        // v1 relays travel in field 5 as BE uint32, which 1.6.1 reads.
        assert_eq!(
            back.details.as_ref().expect("d").old_relay_vpn_addrs,
            vec![0x0a01_0009]
        );
    }

    #[test]
    fn deferred_messages_are_bounded_and_leave_in_order_when_ready() {
        let a: IpAddr = "10.1.0.1".parse().expect("ip");
        let b: IpAddr = "10.1.0.2".parse().expect("ip");
        let mut d = Deferred::default();
        for n in 0..(MAX_DEFERRED + 10) as u32 {
            d.push(if n % 2 == 0 { a } else { b }, n.to_be_bytes().to_vec());
        }
        assert_eq!(d.len(), MAX_DEFERRED, "the oldest went first");
        let ready = d.take_ready(|lh| *lh == a);
        assert_eq!(ready.len(), MAX_DEFERRED / 2);
        assert!(ready.iter().all(|(lh, _)| *lh == a));
        let first = u32::from_be_bytes(ready[0].1.clone().try_into().expect("4 bytes"));
        assert_eq!(first, 10, "messages 0..10 were dropped for room");
        assert!(ready.windows(2).all(|w| w[0].1 < w[1].1), "in order");
        assert_eq!(d.len(), MAX_DEFERRED / 2, "b's wait");
        assert_eq!(d.take_ready(|_| true).len(), MAX_DEFERRED / 2);
        assert!(d.is_empty());
    }
}
