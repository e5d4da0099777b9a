//! The Nebula IX handshake on top of our Noise implementation: building and reading the two
//! messages with Go's payload, certificate checks, and the initiator's pending state and queues.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use nebula_cert::cert::Certificate;
use nebula_cert::Version;
use prost::Message as _;
use proto::handshake::{NebulaHandshake, NebulaHandshakeDetails};
use proto::header::{subtype, Header, MessageType};
use rand_core::CryptoRngCore;

use crate::aead::{CipherKind, Session};
use crate::noise;
use crate::pki::Pki;
use crate::{EngineError, HandshakeError};

/// Most packets queued behind one pending handshake (Go: 100).
pub const MAX_QUEUED_PACKETS: usize = 100;

/// Most handshakes one peer's relay requests may have us run at once (a relay dials a target
/// it has no tunnel to, as Go does, so the requester's next try finds one).
pub const MAX_RELAY_HANDSHAKES_PER_REQUESTER: usize = 16;
/// Relay requests, all requesters together, may use at most 1/this of the pending table: the
/// rest stays for our own traffic.
pub const RELAY_HANDSHAKE_SHARE: usize = 4;

/// Default byte budget for the packets queued behind all pending handshakes together
/// ([`crate::EngineConfig::max_queued_bytes`]). Without it the queues could hold 4,096 pending
/// handshakes x 100 packets x MTU (3.7 GB at MTU 9001); 32 MiB still queues a full 100 packets of
/// MTU 1300 for 250 hosts at once, or of MTU 9001 for 37.
pub const MAX_QUEUED_BYTES: usize = 32 * 1024 * 1024;

/// What one queued packet costs against the budget: its bytes plus the queue slot holding it (so
/// empty control messages are not free).
fn cost(p: &QueuedPacket) -> usize {
    let body = match p {
        QueuedPacket::Inside(b) => b.len(),
        QueuedPacket::Control(_, _, b) => b.len(),
    };
    body.saturating_add(std::mem::size_of::<QueuedPacket>())
}

/// The byte budget shared by every queue of one [`PendingTable`]. Atomics only so the engine stays
/// `Send`; it is used from one thread.
#[derive(Debug)]
struct QueueBudget {
    used: AtomicUsize,
    limit: usize,
    /// Packets refused because the budget was spent.
    refused: AtomicU64,
}

impl QueueBudget {
    fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                u.checked_add(n).filter(|t| *t <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(n))
            });
    }
}

/// Why [`PacketQueue::push`] refused a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueRefusal {
    /// This handshake already has [`MAX_QUEUED_PACKETS`] packets waiting.
    #[error("{MAX_QUEUED_PACKETS} packets already wait for this handshake")]
    TooMany,
    /// The packets waiting behind all pending handshakes already use the byte budget.
    #[error("the byte budget for packets waiting on handshakes is spent")]
    OverBudget,
}

/// The packets waiting for one pending handshake, charged to the table's byte budget from the
/// moment they are queued until they leave the queue: sent (iterating the queue by value takes
/// them out) or dropped with the queue (the handshake failed, timed out or was cleared).
#[derive(Debug, Default)]
pub struct PacketQueue {
    items: Vec<QueuedPacket>,
    /// What `items` cost, all of it charged to `budget` (if any).
    bytes: usize,
    /// `None` until the queue's handshake enters a [`PendingTable`]: then only the per-handshake
    /// count applies.
    budget: Option<Arc<QueueBudget>>,
}

impl PacketQueue {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// What the queued packets cost against the budget, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queue `p`, unless this handshake already has [`MAX_QUEUED_PACKETS`] or the byte budget
    /// of all queues is spent (then it is counted, see [`PendingTable::budget_refusals`]).
    pub fn push(&mut self, p: QueuedPacket) -> Result<(), QueueRefusal> {
        if self.items.len() >= MAX_QUEUED_PACKETS {
            return Err(QueueRefusal::TooMany);
        }
        let c = cost(&p);
        if let Some(b) = &self.budget {
            if !b.try_take(c) {
                b.refused.fetch_add(1, Ordering::Relaxed);
                return Err(QueueRefusal::OverBudget);
            }
        }
        self.bytes = self.bytes.saturating_add(c);
        self.items.push(p);
        Ok(())
    }

    /// Charge this queue to `budget` (a handshake entering a table). What it already holds is
    /// charged even past the limit: those packets were admitted under the same table's budget
    /// (a handshake restarted after the wrong host answered keeps its queue).
    fn attach(&mut self, budget: &Arc<QueueBudget>) {
        if self.budget.as_ref().is_some_and(|b| Arc::ptr_eq(b, budget)) {
            return;
        }
        if let Some(old) = self.budget.take() {
            old.give_back(self.bytes);
        }
        budget.used.fetch_add(self.bytes, Ordering::Relaxed);
        self.budget = Some(Arc::clone(budget));
    }

    fn release(&mut self) {
        if let Some(b) = &self.budget {
            b.give_back(self.bytes);
        }
        self.bytes = 0;
    }
}

impl Drop for PacketQueue {
    fn drop(&mut self) {
        self.release();
    }
}

impl IntoIterator for PacketQueue {
    type Item = QueuedPacket;
    type IntoIter = std::vec::IntoIter<QueuedPacket>;

    /// Take the packets out (to send them): their bytes go back to the budget.
    fn into_iter(mut self) -> Self::IntoIter {
        self.release();
        std::mem::take(&mut self.items).into_iter()
    }
}

/// Something waiting for a tunnel.
#[derive(Clone, Debug)]
pub enum QueuedPacket {
    /// An IP packet from the TUN.
    Inside(Vec<u8>),
    /// A control-plane message (type, subtype, plaintext).
    Control(MessageType, u8, Vec<u8>),
}

/// A handshake we started and have not finished.
pub struct PendingHandshake {
    pub vpn_addr: IpAddr,
    pub local_index: u32,
    pub version: Version,
    /// The whole stage-1 datagram, re-sent unchanged on every attempt.
    pub stage1: Vec<u8>,
    pub noise: noise::Initiator,
    pub attempts: u32,
    pub started: Instant,
    /// Packets waiting for the tunnel (charged to the table's byte budget).
    pub queued: PacketQueue,
    /// Addresses the last attempt went to.
    pub last_addrs: Vec<std::net::SocketAddr>,
}

/// The handshakes we initiated and have not finished, by local index and by vpn address (at
/// most one per host), with a bound on how many run at once, on how many of them relay
/// requests made us start (per requester and in all), and a byte budget shared by the packets
/// queued behind them all.
pub struct PendingTable {
    by_index: HashMap<u32, PendingHandshake>,
    by_vpn: HashMap<IpAddr, u32>,
    capacity: usize,
    /// Handshakes started for a relay request, by local index: the requester.
    for_relay: HashMap<u32, IpAddr>,
    /// How many of those each requester has running.
    per_requester: HashMap<IpAddr, usize>,
    budget: Arc<QueueBudget>,
}

impl PendingTable {
    /// A table that admits at most `capacity` handshakes at once, queueing at most
    /// [`MAX_QUEUED_BYTES`] behind them.
    pub fn new(capacity: usize) -> PendingTable {
        PendingTable::with_queue_budget(capacity, MAX_QUEUED_BYTES)
    }

    /// A table that admits at most `capacity` handshakes at once, queueing at most `bytes` (as
    /// [`PacketQueue::bytes`] counts them) behind all of them together.
    pub fn with_queue_budget(capacity: usize, bytes: usize) -> PendingTable {
        PendingTable {
            by_index: HashMap::new(),
            by_vpn: HashMap::new(),
            capacity,
            for_relay: HashMap::new(),
            per_requester: HashMap::new(),
            budget: Arc::new(QueueBudget {
                used: AtomicUsize::new(0),
                limit: bytes,
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// May a relay request from `requester` start one more handshake? Within
    /// [`MAX_RELAY_HANDSHAKES_PER_REQUESTER`] for it and 1/[`RELAY_HANDSHAKE_SHARE`] of the
    /// table for all requesters, with room left in the table.
    pub fn relay_room(&self, requester: &IpAddr) -> bool {
        let share = (self.capacity / RELAY_HANDSHAKE_SHARE).max(1);
        !self.is_full()
            && self.for_relay.len() < share
            && self.per_requester.get(requester).copied().unwrap_or(0)
                < MAX_RELAY_HANDSHAKES_PER_REQUESTER
    }

    /// Count handshake `local_index` against `requester`'s relay budget until it ends.
    pub fn started_for_relay(&mut self, local_index: u32, requester: IpAddr) {
        if !self.by_index.contains_key(&local_index) || self.for_relay.contains_key(&local_index) {
            return;
        }
        self.for_relay.insert(local_index, requester);
        *self.per_requester.entry(requester).or_default() += 1;
    }

    /// Handshakes relay requests have running (all requesters).
    pub fn relay_started(&self) -> usize {
        self.for_relay.len()
    }

    /// Bytes queued behind all pending handshakes now.
    pub fn queued_bytes(&self) -> usize {
        self.budget.used.load(Ordering::Relaxed)
    }

    /// Packets refused so far because the byte budget was spent.
    pub fn budget_refusals(&self) -> u64 {
        self.budget.refused.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.by_index.len()
    }

    /// Vpn addresses with a handshake running (Go's `hostmap.pending.hosts`).
    pub fn hosts(&self) -> usize {
        self.by_vpn.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_index.is_empty()
    }

    /// No room for another handshake.
    pub fn is_full(&self) -> bool {
        self.by_index.len() >= self.capacity
    }

    /// Add a handshake; false (and dropped) when the table is full or its host already has one.
    #[must_use]
    pub fn insert(&mut self, mut p: PendingHandshake) -> bool {
        if self.is_full() || self.by_vpn.contains_key(&p.vpn_addr) {
            return false;
        }
        p.queued.attach(&self.budget);
        self.by_vpn.insert(p.vpn_addr, p.local_index);
        self.by_index.insert(p.local_index, p);
        true
    }

    /// Take a handshake out (finished, failed or timed out).
    pub fn remove(&mut self, local_index: u32) -> Option<PendingHandshake> {
        let p = self.by_index.remove(&local_index)?;
        if self.by_vpn.get(&p.vpn_addr) == Some(&local_index) {
            self.by_vpn.remove(&p.vpn_addr);
        }
        if let Some(req) = self.for_relay.remove(&local_index) {
            if let Some(n) = self.per_requester.get_mut(&req) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_requester.remove(&req);
                }
            }
        }
        Some(p)
    }

    /// Every pending handshake, in no particular order (diagnostics).
    pub fn iter(&self) -> impl Iterator<Item = &PendingHandshake> {
        self.by_index.values()
    }

    pub fn get(&self, local_index: u32) -> Option<&PendingHandshake> {
        self.by_index.get(&local_index)
    }

    pub fn get_mut(&mut self, local_index: u32) -> Option<&mut PendingHandshake> {
        self.by_index.get_mut(&local_index)
    }

    pub fn contains_index(&self, local_index: u32) -> bool {
        self.by_index.contains_key(&local_index)
    }

    /// The local index of the handshake to `vpn`, if one runs.
    pub fn index_for(&self, vpn: &IpAddr) -> Option<u32> {
        self.by_vpn.get(vpn).copied()
    }

    /// The handshake to `vpn`, if one runs.
    pub fn for_vpn(&self, vpn: &IpAddr) -> Option<&PendingHandshake> {
        self.index_for(vpn).and_then(|i| self.by_index.get(&i))
    }

    /// The handshake to `vpn`, if one runs.
    pub fn for_vpn_mut(&mut self, vpn: &IpAddr) -> Option<&mut PendingHandshake> {
        let i = self.index_for(vpn)?;
        self.by_index.get_mut(&i)
    }

    pub fn clear(&mut self) {
        self.by_index.clear();
        self.by_vpn.clear();
        self.for_relay.clear();
        self.per_requester.clear();
    }
}

/// The responder's result: everything needed to install the tunnel and answer.
pub struct Response {
    pub peer_cert: Certificate,
    pub vpn_addrs: Vec<IpAddr>,
    pub peer_index: u32,
    pub peer_time: u64,
    pub our_version: Version,
    /// The stage-2 Noise message (without header).
    pub stage2: Vec<u8>,
    pub session: Session,
}

/// The initiator's result.
pub struct Completed {
    pub peer_cert: Certificate,
    pub vpn_addrs: Vec<IpAddr>,
    pub peer_index: u32,
    pub peer_time: u64,
    pub session: Session,
}

fn version_number(v: Version) -> u32 {
    match v {
        Version::V1 => 1,
        Version::V2 => 2,
    }
}

fn payload(
    pki: &Pki,
    version: Version,
    initiator_index: u32,
    responder_index: u32,
    unix_nanos: u64,
) -> Vec<u8> {
    NebulaHandshake::from_details(NebulaHandshakeDetails {
        cert: pki.handshake_cert(version).to_vec(),
        initiator_index,
        responder_index,
        cookie: 0,
        time: unix_nanos,
        cert_version: version_number(version),
    })
    .encode_to_vec()
}

/// Build stage 1 for a handshake to `vpn`.
#[allow(clippy::too_many_arguments)]
pub fn initiate(
    pki: &Pki,
    cipher: CipherKind,
    version: Version,
    vpn: IpAddr,
    local_index: u32,
    unix_nanos: u64,
    now: Instant,
    rng: &mut dyn CryptoRngCore,
) -> Result<PendingHandshake, EngineError> {
    let keypair = pki.static_keypair().clone();
    let mut init = noise::Initiator::new(cipher, keypair);
    let body = init
        .write_message_1(&payload(pki, version, local_index, 0, unix_nanos), rng)
        .map_err(EngineError::Crypto)?;
    let mut stage1 = Header::new(MessageType::Handshake, subtype::HANDSHAKE_IX_PSK0, 0, 1)
        .to_bytes()
        .to_vec();
    stage1.extend_from_slice(&body);
    Ok(PendingHandshake {
        vpn_addr: vpn,
        local_index,
        version,
        stage1,
        noise: init,
        attempts: 0,
        started: now,
        queued: PacketQueue::default(),
        last_addrs: Vec::new(),
    })
}

/// Decode a handshake payload and rebuild + verify the peer's certificate against our pool.
fn verify_peer(
    pki: &Pki,
    payload: &[u8],
    remote_static: &[u8],
    unix_secs: i64,
) -> Result<(NebulaHandshakeDetails, Certificate, Vec<IpAddr>), EngineError> {
    let details = proto::handshake::decode_strict(payload).map_err(HandshakeError::Payload)?;
    if details.cert.is_empty() {
        return Err(HandshakeError::NoCertificate.into());
    }
    let version = match details.cert_version {
        0 | 1 => Version::V1,
        2 => Version::V2,
        v => return Err(HandshakeError::UnknownCertVersion(v).into()),
    };
    let cert =
        Certificate::recombine_from_handshake(version, &details.cert, remote_static, pki.curve())
            .map_err(HandshakeError::BadCertificate)?;
    if cert.curve() != pki.curve() {
        return Err(HandshakeError::OtherCurve.into());
    }
    if cert.is_ca() {
        return Err(HandshakeError::CaCertificate.into());
    }
    pki.ca_pool()
        .verify(unix_secs, &cert)
        .map_err(|source| HandshakeError::Untrusted {
            name: cert.name().to_string(),
            source,
        })?;
    let vpn_addrs: Vec<IpAddr> = cert.networks().iter().map(|n| n.addr()).collect();
    if vpn_addrs.is_empty() {
        return Err(HandshakeError::NoNetworks.into());
    }
    Ok((details, cert, vpn_addrs))
}

/// We are the responder: read stage 1 (`body` = the datagram without its header) and build stage 2.
pub fn respond(
    pki: &Pki,
    cipher: CipherKind,
    body: &[u8],
    local_index: u32,
    unix_nanos: u64,
    unix_secs: i64,
    rng: &mut dyn CryptoRngCore,
) -> Result<Response, EngineError> {
    let keypair = pki.static_keypair().clone();
    let (payload_in, remote_static, responder) =
        noise::Responder::read_message_1(cipher, keypair, body).map_err(HandshakeError::Noise)?;
    let (details, cert, vpn_addrs) = verify_peer(pki, &payload_in, &remote_static, unix_secs)?;
    if details.initiator_index == 0 {
        return Err(HandshakeError::NoInitiatorIndex.into());
    }
    if details.responder_index != 0 {
        return Err(HandshakeError::ResponderIndexInStage1.into());
    }
    let our_version = pki.answer_version(cert.version());
    let reply = payload(
        pki,
        our_version,
        details.initiator_index,
        local_index,
        unix_nanos,
    );
    let (stage2, keys) = responder
        .write_message_2(&reply, rng)
        .map_err(EngineError::Crypto)?;
    let session = keys.into_session(false).map_err(EngineError::Session)?;
    Ok(Response {
        peer_cert: cert,
        vpn_addrs,
        peer_index: details.initiator_index,
        peer_time: details.time,
        our_version,
        stage2,
        session,
    })
}

/// We are the initiator: read stage 2. `Ok(None)` when the Noise read fails (the attempt stays
/// alive: it may be a stray or forged packet); `Err` when a genuine answer is unacceptable.
pub fn complete(
    pending: &mut PendingHandshake,
    pki: &Pki,
    body: &[u8],
    unix_secs: i64,
) -> Result<Option<Completed>, EngineError> {
    let Ok((payload_in, remote_static, keys)) = pending.noise.read_message_2(body) else {
        return Ok(None);
    };
    let (details, cert, vpn_addrs) = verify_peer(pki, &payload_in, &remote_static, unix_secs)?;
    if details.responder_index == 0 {
        return Err(HandshakeError::NoResponderIndex.into());
    }
    if details.initiator_index != pending.local_index {
        return Err(HandshakeError::WrongInitiatorIndex.into());
    }
    let session = keys.into_session(true).map_err(EngineError::Session)?;
    Ok(Some(Completed {
        peer_cert: cert,
        vpn_addrs,
        peer_index: details.responder_index,
        peer_time: details.time,
        session,
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use nebula_cert::{Curve, Version};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::sim::TestCa;

    fn pending(pki: &Pki, vpn: &str, index: u32) -> PendingHandshake {
        let mut rng = StdRng::seed_from_u64(u64::from(index));
        initiate(
            pki,
            CipherKind::AesGcm,
            Version::V1,
            vpn.parse().expect("vpn"),
            index,
            0,
            Instant::now(),
            &mut rng,
        )
        .expect("stage 1")
    }

    #[test]
    fn the_pending_table_is_bounded_and_keeps_one_handshake_per_host() {
        let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
        let pki = ca.pki("me", "10.42.0.1/16");
        let mut t = PendingTable::new(2);
        assert!(t.insert(pending(&pki, "10.42.0.2", 1)));
        // A second handshake to the same host is refused; the first stays.
        assert!(!t.insert(pending(&pki, "10.42.0.2", 2)));
        assert_eq!(t.index_for(&"10.42.0.2".parse().expect("ip")), Some(1));
        assert!(t.insert(pending(&pki, "10.42.0.3", 3)));
        assert!(t.is_full());
        assert!(!t.insert(pending(&pki, "10.42.0.4", 4)), "over capacity");
        assert_eq!(t.len(), 2);
        let p = t.remove(1).expect("pending 1");
        assert_eq!(p.local_index, 1);
        assert_eq!(t.index_for(&"10.42.0.2".parse().expect("ip")), None);
        assert!(t.for_vpn(&"10.42.0.3".parse().expect("ip")).is_some());
        assert!(t.insert(pending(&pki, "10.42.0.4", 4)));
        t.clear();
        assert!(t.is_empty());
        assert_eq!(t.index_for(&"10.42.0.4".parse().expect("ip")), None);
    }

    #[test]
    fn relay_requests_have_a_budget_per_requester_and_in_all() {
        let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
        let pki = ca.pki("me", "10.42.0.1/16");
        let cap = RELAY_HANDSHAKE_SHARE * (MAX_RELAY_HANDSHAKES_PER_REQUESTER + 4);
        let mut t = PendingTable::new(cap);
        let (a, b): (IpAddr, IpAddr) = (
            "10.42.9.1".parse().expect("ip"),
            "10.42.9.2".parse().expect("ip"),
        );
        let mut next = 1u32;
        let mut start = |t: &mut PendingTable, req: IpAddr| -> Option<u32> {
            if !t.relay_room(&req) {
                return None;
            }
            let i = next;
            next += 1;
            assert!(t.insert(pending(&pki, &format!("10.42.1.{i}"), i)));
            t.started_for_relay(i, req);
            Some(i)
        };
        let mine: Vec<u32> = (0..100).filter_map(|_| start(&mut t, a)).collect();
        assert_eq!(
            mine.len(),
            MAX_RELAY_HANDSHAKES_PER_REQUESTER,
            "per requester"
        );
        // Another requester gets the rest of the share, no more.
        let theirs: Vec<u32> = (0..100).filter_map(|_| start(&mut t, b)).collect();
        assert_eq!(
            t.relay_started(),
            cap / RELAY_HANDSHAKE_SHARE,
            "share of the table"
        );
        assert!(theirs.len() < MAX_RELAY_HANDSHAKES_PER_REQUESTER);
        // A finished handshake gives its slot back; counting one twice changes nothing.
        t.started_for_relay(mine[0], a);
        t.remove(mine[0]);
        assert!(t.relay_room(&a));
        assert_eq!(t.relay_started(), cap / RELAY_HANDSHAKE_SHARE - 1);
        t.clear();
        assert_eq!(t.relay_started(), 0);
        assert!(t.relay_room(&a) && t.relay_room(&b));
    }

    #[test]
    fn queued_packets_share_one_byte_budget_freed_when_they_leave() {
        let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
        let pki = ca.pki("me", "10.42.0.1/16");
        let budget = 64 * 1024;
        let mut t = PendingTable::with_queue_budget(4096, budget);
        let packet = || QueuedPacket::Inside(vec![0u8; 1300]);
        // 40 hosts x 100 packets of 1,300 bytes would be 5.2 MB.
        let (mut queued, mut refused) = (0usize, 0usize);
        for host in 0..40u32 {
            let index = host + 1;
            assert!(t.insert(pending(&pki, &format!("10.42.1.{host}"), index)));
            let p = t.get_mut(index).expect("pending");
            for _ in 0..MAX_QUEUED_PACKETS {
                match p.queued.push(packet()) {
                    Ok(()) => queued += 1,
                    Err(QueueRefusal::OverBudget) => refused += 1,
                    Err(QueueRefusal::TooMany) => panic!("per-host cap before the budget"),
                }
            }
            // The budget (about 49 packets) runs out long before a host's 100.
            assert_eq!(p.queued.push(packet()), Err(QueueRefusal::OverBudget));
        }
        assert!(
            t.queued_bytes() <= budget,
            "{} > {budget}",
            t.queued_bytes()
        );
        assert!(
            t.queued_bytes() + cost(&packet()) > budget,
            "the budget is used up"
        );
        assert!(queued > 0 && refused > 0);
        assert_eq!(t.budget_refusals(), refused as u64 + 40);
        // Sending a queue (taking it by value) gives its bytes back...
        let first = t.get_mut(1).expect("pending 1");
        let n = first.queued.len();
        let sent: Vec<QueuedPacket> = std::mem::take(&mut first.queued).into_iter().collect();
        assert_eq!(sent.len(), n);
        assert!(t
            .get_mut(2)
            .expect("pending 2")
            .queued
            .push(packet())
            .is_ok());
        // ...and so does a handshake that ends with its packets still queued.
        let before = t.queued_bytes();
        let gone = t.remove(2).expect("pending 2");
        let its = gone.queued.bytes();
        assert!(its > 0);
        drop(gone);
        assert_eq!(t.queued_bytes(), before - its);
        // A queue moved to a restarted handshake stays charged, once.
        let mut moved = t.remove(3).expect("pending 3");
        let kept = moved.queued.bytes();
        let before = t.queued_bytes();
        let mut again = pending(&pki, "10.42.2.1", 1_000);
        again.queued = std::mem::take(&mut moved.queued);
        assert!(t.insert(again));
        assert_eq!(t.queued_bytes(), before);
        assert_eq!(t.get(1_000).expect("restarted").queued.bytes(), kept);
        t.clear();
        assert_eq!(t.queued_bytes(), 0, "clearing the table frees every queue");
    }

    #[test]
    fn a_refused_handshake_keeps_its_cause() {
        use std::error::Error as _;
        let ours = TestCa::new("ours", Curve::Curve25519, Version::V1);
        let theirs = TestCa::new("theirs", Curve::Curve25519, Version::V1);
        let me = ours.pki("me", "10.42.0.1/16");
        let stranger = theirs.pki("stranger", "10.42.0.9/16");
        let p = pending(&stranger, "10.42.0.1", 7);
        let mut rng = StdRng::seed_from_u64(9);
        let err = match respond(
            &me,
            CipherKind::AesGcm,
            &p.stage1[proto::header::HEADER_LEN..],
            1,
            0,
            crate::sim::SIM_EPOCH_UNIX,
            &mut rng,
        ) {
            Ok(_) => panic!("a certificate from another CA was accepted"),
            Err(e) => e,
        };
        let EngineError::Handshake(HandshakeError::Untrusted { name, .. }) = &err else {
            panic!("unexpected error {err:?}");
        };
        assert_eq!(name, "stranger");
        // The chain reaches the certificate library's own error.
        let cause = err.source().and_then(|h| h.source()).expect("a cause");
        assert!(cause
            .downcast_ref::<nebula_cert::error::CertError>()
            .is_some());
    }
}
