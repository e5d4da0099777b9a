//! The data plane's lock-free view of the engine: an immutable snapshot of the direct tunnels,
//! routes and firewall with which workers seal and open ordinary packets without the engine.
//!
//! The engine publishes a new [`DataTable`] (see [`crate::Engine::data_table`]) whenever a
//! tunnel appears, goes, moves, is confirmed or becomes primary, and when the firewall or our
//! certificate changes. A worker loads the current table once per batch and handles every
//! ordinary packet with it: plain `Message` datagrams from a confirmed tunnel's current address,
//! and TUN packets for a vpn address whose primary tunnel is direct. Everything else, and
//! everything that needs the engine to act (a roaming peer, a new flow that must be rejected,
//! a packet with no tunnel yet) is answered [`FastInside::Engine`] / [`FastOutside::Engine`]:
//! the caller hands that packet, untouched, to the engine.
//!
//! Tunnels share their [`Session`] with the engine (an `Arc`): send counters are atomics, so the
//! engine's control messages and every worker draw from one counter; the replay window is one
//! small lock per tunnel.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use ipnet::IpNet;
use proto::header::{subtype, Header, MessageType, HEADER_LEN};

use crate::aead::{AeadError, KeyUse, Session, TAG_LEN};
use crate::filter::Peer;
use crate::filter::{PacketFilter, PeerIdentity, Verdict};
use crate::outcome::{DropReason, Transmit};

/// One direct tunnel as the data plane sees it (made by the host map when the tunnel is
/// installed or moves; shared by every table that contains it).
pub struct DataTunnel {
    pub local_index: u32,
    pub remote_index: u32,
    /// The peer's underlay address (the tunnel is direct).
    pub remote: SocketAddr,
    pub session: Arc<Session>,
    /// The same peer record as the engine's tunnel.
    pub(crate) peer: Arc<Peer>,
}

impl DataTunnel {
    fn peer(&self) -> PeerIdentity<'_> {
        self.peer.identity()
    }
}

/// The tunnels the data plane may use, as persistent maps: the host map updates one entry per
/// event (O(log n) path copy), and a table takes them by cloning the roots (O(1)).
#[derive(Clone, Default)]
pub(crate) struct DataIndex {
    /// Confirmed direct tunnels by our local index (the index peers put in their headers).
    pub by_index: imbl::OrdMap<u32, Arc<DataTunnel>>,
    /// The primary tunnel of each vpn address, when it is direct.
    pub by_vpn: imbl::OrdMap<IpAddr, Arc<DataTunnel>>,
}

/// What [`DataTable::seal_inside`] did with a TUN packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastInside {
    /// `buf[..len]` is a sealed datagram for `to`. With `promote`, call
    /// [`crate::Engine::sent_from_tun`] with it (every `counters.try_promote` /
    /// `requery_every_packets` packets the engine looks for better paths).
    Send {
        to: SocketAddr,
        len: usize,
        promote: Option<(u32, u32)>,
    },
    /// Dropped (the firewall, an exhausted counter); nothing to do.
    Dropped(DropReason),
    /// Refused by the outbound firewall with `outbound_action: reject`: the packet is still at
    /// `buf[HEADER_LEN..HEADER_LEN + len]`; write [`crate::filter::reject_reply`] of it to the TUN.
    Rejected(DropReason),
    /// Not for the fast path: give the packet, untouched, to [`crate::Engine::handle_inside`].
    Engine,
}

/// What [`DataTable::open_outside`] did with a datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum FastOutside {
    /// `datagram[start..end]` is a decrypted IP packet for the TUN.
    Tun { start: usize, end: usize },
    /// Dropped; with a reject answer (`inbound_action: reject`) to send.
    Dropped(DropReason, Option<Transmit>),
    /// Not for the fast path: give the datagram, untouched, to [`crate::Engine::handle_outside`].
    Engine,
}

/// An immutable snapshot of what the data plane needs. Cheap to make and to share (`Arc`):
/// its maps share structure with the host map's and with earlier tables.
pub struct DataTable {
    generation: u64,
    /// The host map's index as it was when the table was made (shared structure).
    pub(crate) index: DataIndex,
    routing: Arc<Routing>,
}

/// The parts of a table that change only on a reload: our networks, unsafe routes, firewall.
pub(crate) struct Routing {
    pub networks: Vec<IpNet>,
    pub unsafe_routes: Vec<(IpNet, IpAddr)>,
    pub filter: Arc<dyn PacketFilter>,
    pub try_promote_every: u32,
    pub requery_every: u32,
}

/// Makes the engine's data-plane snapshots: a new [`DataTable`] only when the host map's
/// generation moved or the routing (networks, routes, firewall) changed, in O(1) either way.
#[derive(Default)]
pub(crate) struct Publisher {
    /// The routing changed since the last table (host map changes are told by its generation).
    routing_dirty: bool,
    /// The host map's generation the last table was made from (`None`: no table yet).
    hostmap_generation: Option<u64>,
    /// Bumped each time a new table is made.
    generation: u64,
    routing: Option<Arc<Routing>>,
}

impl Publisher {
    /// Our networks, unsafe routes or firewall changed: the next table gets new routing.
    pub fn routing_changed(&mut self) {
        self.routing_dirty = true;
    }

    /// A table over `index` if anything changed since the last one; `make_routing` is called
    /// only when the routing must be rebuilt.
    pub fn publish(
        &mut self,
        hostmap_generation: u64,
        index: &DataIndex,
        make_routing: impl FnOnce() -> Routing,
    ) -> Option<Arc<DataTable>> {
        let fresh = self.hostmap_generation == Some(hostmap_generation);
        if fresh && !self.routing_dirty && self.routing.is_some() {
            return None;
        }
        let routing = match &self.routing {
            Some(r) if !self.routing_dirty => Arc::clone(r),
            _ => {
                let r = Arc::new(make_routing());
                self.routing = Some(Arc::clone(&r));
                r
            }
        };
        self.routing_dirty = false;
        self.hostmap_generation = Some(hostmap_generation);
        self.generation += 1;
        Some(Arc::new(DataTable::new(self.generation, index, routing)))
    }
}

/// Why the per-packet core ([`outbound`], [`inbound`]) refused a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not authenticated (bad tag, replay), or no counter or room left.
    Dropped(DropReason),
    /// The firewall refused it; `reject`: the configured action is to answer.
    Firewall {
        reason: crate::firewall::DropReason,
        reject: bool,
    },
}

impl Refusal {
    /// The firewall refused with its `reject` action: the sender gets an answer.
    pub fn rejects(self) -> bool {
        matches!(self, Refusal::Firewall { reject: true, .. })
    }

    pub fn reason(self) -> DropReason {
        match self {
            Refusal::Dropped(r) => r,
            Refusal::Firewall { reason, .. } => DropReason::Firewall(reason),
        }
    }
}

/// The outbound per-packet core, for the workers and the engine alike: the outbound firewall
/// for `peer`, then seal `frame` (`header room || packet || TAG_LEN room`) in place as an
/// ordinary message on `session`. On a firewall refusal the packet is left untouched.
pub(crate) fn outbound(
    filter: &dyn PacketFilter,
    now: Instant,
    session: &Session,
    remote_index: u32,
    peer: &PeerIdentity<'_>,
    frame: &mut [u8],
) -> Result<(), Refusal> {
    let end = frame
        .len()
        .checked_sub(TAG_LEN)
        .filter(|e| *e >= HEADER_LEN)
        .ok_or(Refusal::Dropped(DropReason::BufferTooSmall))?;
    match filter.check(now, &frame[HEADER_LEN..end], false, peer) {
        Verdict::Allow => {}
        Verdict::Drop(reason) => {
            return Err(Refusal::Firewall {
                reason,
                reject: false,
            })
        }
        Verdict::Reject(reason) => {
            return Err(Refusal::Firewall {
                reason,
                reject: true,
            })
        }
    }
    seal_in_place(
        session,
        remote_index,
        MessageType::Message,
        subtype::MESSAGE_NONE,
        frame,
    )
    .map_err(Refusal::Dropped)?;
    session.mark_out();
    Ok(())
}

/// Open a message in place on `session` (AEAD with the header as associated data, then the
/// replay window) and note the inbound traffic. Returns where the plaintext sits.
pub(crate) fn open(
    session: &Session,
    use_: KeyUse,
    counter: u64,
    datagram: &mut [u8],
) -> Result<(usize, usize), DropReason> {
    if datagram.len() < HEADER_LEN + TAG_LEN {
        return Err(DropReason::TooShort);
    }
    let plain_len = match session.open_frame(use_, counter, datagram, HEADER_LEN) {
        Ok(p) => p.len(),
        Err(AeadError::Replay) => return Err(DropReason::Replay),
        Err(_) => return Err(DropReason::Decrypt),
    };
    session.mark_in();
    Ok((HEADER_LEN, HEADER_LEN + plain_len))
}

/// What [`inbound`] made of a datagram: the plaintext's place, or the refusal (with the
/// plaintext's place when the packet was authenticated before the firewall refused it).
pub(crate) type Inbound = Result<(usize, usize), (Refusal, Option<(usize, usize)>)>;

/// The inbound per-packet core, for the workers and the engine alike: [`open`], then the
/// inbound firewall for `peer`. The plaintext is `datagram[start..end]` on success and also on a
/// firewall refusal (the packet was authenticated: the caller may still act on that).
pub(crate) fn inbound(
    filter: &dyn PacketFilter,
    now: Instant,
    session: &Session,
    peer: &PeerIdentity<'_>,
    counter: u64,
    datagram: &mut [u8],
) -> Inbound {
    let (start, end) =
        open(session, KeyUse::Data, counter, datagram).map_err(|r| (Refusal::Dropped(r), None))?;
    match filter.check(now, &datagram[start..end], true, peer) {
        Verdict::Allow => Ok((start, end)),
        Verdict::Drop(reason) => Err((
            Refusal::Firewall {
                reason,
                reject: false,
            },
            Some((start, end)),
        )),
        Verdict::Reject(reason) => Err((
            Refusal::Firewall {
                reason,
                reject: true,
            },
            Some((start, end)),
        )),
    }
}

impl DataTable {
    /// A table over the host map's current `index` (O(1): the maps share structure).
    pub(crate) fn new(generation: u64, index: &DataIndex, routing: Arc<Routing>) -> DataTable {
        DataTable {
            generation,
            index: index.clone(),
            routing,
        }
    }

    /// Which build this is (each table the engine publishes has a higher number).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Direct tunnels that receive on the fast path.
    pub fn inbound_tunnels(&self) -> usize {
        self.index.by_index.len()
    }

    /// Vpn addresses that send on the fast path.
    pub fn outbound_peers(&self) -> usize {
        self.index.by_vpn.len()
    }

    /// A packet read from the TUN, at `buf[HEADER_LEN..HEADER_LEN + len]` with `TAG_LEN` spare
    /// bytes after it (the same layout as [`crate::Engine::handle_inside`]).
    pub fn seal_inside(&self, now: Instant, buf: &mut [u8], len: usize) -> FastInside {
        let total = HEADER_LEN + len + TAG_LEN;
        let Some(packet) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
            return FastInside::Engine;
        };
        if buf.len() < total {
            return FastInside::Engine;
        }
        let Some(dst) = crate::filter::destination(packet) else {
            return FastInside::Engine;
        };
        let r = &self.routing;
        let vpn = match route(&r.networks, &r.unsafe_routes, &dst) {
            Ok(vpn) => vpn,
            Err(reason) => return FastInside::Dropped(reason),
        };
        let Some(t) = self.index.by_vpn.get(&vpn) else {
            return FastInside::Engine;
        };
        match outbound(
            &*r.filter,
            now,
            &t.session,
            t.remote_index,
            &t.peer(),
            &mut buf[..total],
        ) {
            Ok(()) => {}
            Err(Refusal::Firewall {
                reason,
                reject: true,
            }) => return FastInside::Rejected(DropReason::Firewall(reason)),
            Err(refusal) => return FastInside::Dropped(refusal.reason()),
        }
        let n = t.session.count_sent_from_tun();
        let due = |every: u32| every != 0 && n.is_multiple_of(every);
        let promote =
            (due(r.try_promote_every) || due(r.requery_every)).then_some((t.local_index, n));
        FastInside::Send {
            to: t.remote,
            len: total,
            promote,
        }
    }

    /// A datagram from the UDP socket. On [`FastOutside::Tun`] it was decrypted in place.
    pub fn open_outside(&self, now: Instant, from: SocketAddr, datagram: &mut [u8]) -> FastOutside {
        let Ok(h) = Header::parse(datagram) else {
            return FastOutside::Engine;
        };
        if h.msg_type != MessageType::Message
            || h.subtype != subtype::MESSAGE_NONE
            || h.check_strict().is_err()
            || datagram.len() < HEADER_LEN + TAG_LEN
        {
            return FastOutside::Engine;
        }
        let Some(t) = self.index.by_index.get(&h.remote_index) else {
            return FastOutside::Engine;
        };
        // A peer at a new address may be roaming: the engine decides.
        if t.remote != from {
            return FastOutside::Engine;
        }
        let filter = &*self.routing.filter;
        match inbound(
            filter,
            now,
            &t.session,
            &t.peer(),
            h.message_counter,
            datagram,
        ) {
            Ok((start, end)) => FastOutside::Tun { start, end },
            Err((refusal, Some((start, end)))) if refusal.rejects() => {
                let reply = crate::filter::reject_reply(&datagram[start..end])
                    .and_then(|r| seal_reply(t, &r));
                FastOutside::Dropped(refusal.reason(), reply)
            }
            Err((refusal, _)) => FastOutside::Dropped(refusal.reason(), None),
        }
    }
}

/// Seal `payload` as an ordinary message on tunnel `t` (a reject answer).
fn seal_reply(t: &DataTunnel, payload: &[u8]) -> Option<Transmit> {
    let d = seal_datagram(
        &t.session,
        t.remote_index,
        MessageType::Message,
        subtype::MESSAGE_NONE,
        payload,
    )?;
    t.session.mark_out();
    Some(Transmit {
        to: t.remote,
        payload: d,
    })
}

/// The vpn address carrying traffic for `dst`: the host itself if it is in one of our
/// `networks`, else the gateway of the longest matching unsafe route. A packet for one of our
/// own addresses is [`DropReason::ToSelf`]; one with no route, [`DropReason::NoRoute`].
pub(crate) fn route(
    networks: &[IpNet],
    unsafe_routes: &[(IpNet, IpAddr)],
    dst: &IpAddr,
) -> Result<IpAddr, DropReason> {
    if networks.iter().any(|n| n.addr() == *dst) {
        return Err(DropReason::ToSelf);
    }
    if networks.iter().any(|n| n.contains(dst)) {
        return Ok(*dst);
    }
    unsafe_routes
        .iter()
        .filter(|(net, _)| net.contains(dst))
        .max_by_key(|(net, _)| net.prefix_len())
        .map(|(_, via)| *via)
        .ok_or(DropReason::NoRoute)
}

/// Seal `frame` (`header room || plaintext || TAG_LEN room`) in place: a header of type `mt`/`st`
/// for the peer's `remote_index` with the session's next send counter, then the AEAD.
pub(crate) fn seal_in_place(
    session: &Session,
    remote_index: u32,
    mt: MessageType,
    st: u8,
    frame: &mut [u8],
) -> Result<(), DropReason> {
    let counter = session
        .next_counter()
        .map_err(|_| DropReason::CounterExhausted)?;
    let header = frame
        .get_mut(..HEADER_LEN)
        .ok_or(DropReason::BufferTooSmall)?;
    Header::new(mt, st, remote_index, counter)
        .encode(header)
        .map_err(|_| DropReason::BufferTooSmall)?;
    let use_ = if (mt, st) == (MessageType::Message, subtype::MESSAGE_NONE) {
        KeyUse::Data
    } else {
        KeyUse::Control
    };
    session
        .send
        .seal_frame(use_, counter, frame, HEADER_LEN)
        .map_err(|_| DropReason::CounterExhausted)?;
    session.note_sent(frame.len().saturating_sub(HEADER_LEN + TAG_LEN));
    Ok(())
}

/// Seal one message into a fresh datagram (see [`seal_in_place`]).
pub(crate) fn seal_datagram(
    session: &Session,
    remote_index: u32,
    mt: MessageType,
    st: u8,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let mut d = vec![0u8; HEADER_LEN + payload.len() + TAG_LEN];
    d[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
    seal_in_place(session, remote_index, mt, st, &mut d).ok()?;
    Some(d)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use super::*;
    use crate::engine::{EngineConfig, Event, InsideOutcome, Outputs};
    use crate::filter::{AllowAll, GroupFirewall};
    use crate::firewall::{Action, Firewall, FirewallConfig};
    use crate::sim::{rule_from_anyone, static_config, udp_packet, Sim, TestCa};
    use nebula_cert::{Curve, Version};

    const A: &str = "192.0.2.1:4242";
    const B: &str = "192.0.2.2:4242";

    fn cfg_to(vpn: &str, addr: &str) -> EngineConfig {
        static_config(&[(vpn, addr)])
    }

    /// Two nodes (a = 10.42.0.1, b = 10.42.0.2) with a tunnel up.
    fn pair(fa: Box<dyn PacketFilter>, fb: Box<dyn PacketFilter>) -> Sim {
        let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
        let mut sim = Sim::new(7);
        let a_pki = ca.pki("a", "10.42.0.1/16");
        let b_pki = ca.pki("b", "10.42.0.2/16");
        sim.add_node_with_filter("a", A, cfg_to("10.42.0.2", B), a_pki, fa);
        sim.add_node_with_filter("b", B, cfg_to("10.42.0.1", A), b_pki, fb);
        sim.inside(0, &pkt(0, 1, 53, 0));
        sim.run_for(Duration::from_secs(1));
        // b answers, which confirms the tunnel on both sides.
        sim.inside(1, &pkt(1, 0, 53, 0));
        sim.run_for(Duration::from_millis(50));
        sim
    }

    fn vpn(i: usize) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::new(10, 42, 0, 1 + i as u8)
    }

    /// A UDP packet from node `from` to node `to`, destination port `port`, tagged `n`.
    fn pkt(from: usize, to: usize, port: u16, n: u32) -> Vec<u8> {
        udp_packet(vpn(from), vpn(to), 40_000, port, &n.to_be_bytes())
    }

    fn got(sim: &Sim, node: usize, n: u32) -> usize {
        sim.nodes[node]
            .tun
            .iter()
            .filter(|p| p.get(28..32) == Some(&n.to_be_bytes()[..]))
            .count()
    }

    /// Node `i`'s newest table (the engine may have made one since the sim last asked).
    fn latest(sim: &mut Sim, i: usize) -> Arc<DataTable> {
        if let Some(t) = sim.nodes[i].engine.data_table() {
            sim.nodes[i].table = Some(t);
        }
        sim.nodes[i].table.clone().expect("a table")
    }

    fn allow_all() -> Box<dyn PacketFilter> {
        Box::new(AllowAll)
    }

    /// Each side's tunnel counts what it sealed and what it opened, on either path: the bytes
    /// are the inner packets' lengths.
    #[test]
    fn tunnels_count_their_traffic_both_ways() {
        for fast in [true, false] {
            let mut sim = pair(allow_all(), allow_all());
            sim.fast_path = fast;
            let traffic = |sim: &Sim, i: usize| {
                let t = &sim.nodes[i].engine;
                let idx = t.hostmap().primary(&vpn(1 - i).into()).expect("tunnel");
                t.hostmap().get(idx).expect("tunnel").session.traffic()
            };
            let (a0, b0) = (traffic(&sim, 0), traffic(&sim, 1));
            let p = pkt(0, 1, 53, 7);
            for _ in 0..10 {
                sim.inside(0, &p);
                sim.run_for(Duration::from_millis(10));
            }
            let (a1, b1) = (traffic(&sim, 0), traffic(&sim, 1));
            assert_eq!(a1.tx_packets - a0.tx_packets, 10, "fast {fast}");
            assert_eq!(
                a1.tx_bytes - a0.tx_bytes,
                10 * p.len() as u64,
                "fast {fast}"
            );
            assert_eq!(b1.rx_packets - b0.rx_packets, 10, "fast {fast}");
            assert_eq!(
                b1.rx_bytes - b0.rx_bytes,
                10 * p.len() as u64,
                "fast {fast}"
            );
            assert_eq!(a1.rx_packets, a0.rx_packets, "nothing came back");
        }
    }

    #[test]
    fn ordinary_packets_take_the_fast_path_both_ways() {
        for fast in [true, false] {
            let mut sim = pair(allow_all(), allow_all());
            sim.fast_path = fast;
            let before = (sim.nodes[0].fast_packets, sim.nodes[1].fast_packets);
            for n in 1..=50 {
                assert!(matches!(
                    sim.inside(0, &pkt(0, 1, 53, n)),
                    InsideOutcome::Send { .. }
                ));
                assert!(matches!(
                    sim.inside(1, &pkt(1, 0, 53, n + 1000)),
                    InsideOutcome::Send { .. }
                ));
                sim.run_for(Duration::from_millis(10));
            }
            for n in 1..=50 {
                assert_eq!(got(&sim, 1, n), 1, "packet {n} a->b");
                assert_eq!(got(&sim, 0, n + 1000), 1, "packet {n} b->a");
            }
            let after = (sim.nodes[0].fast_packets, sim.nodes[1].fast_packets);
            if fast {
                assert_eq!(after.0 .0 - before.0 .0, 50, "a sealed on the fast path");
                assert_eq!(after.1 .1 - before.1 .1, 50, "b opened on the fast path");
                assert_eq!(after.1 .0 - before.1 .0, 50, "b sealed on the fast path");
                assert_eq!(after.0 .1 - before.0 .1, 50, "a opened on the fast path");
            } else {
                assert_eq!(after, before);
            }
        }
    }

    #[test]
    fn fast_path_and_engine_share_the_send_counter_and_replay_window() {
        let mut sim = pair(allow_all(), allow_all());
        let a_addr: SocketAddr = A.parse().expect("addr");
        let b_addr: SocketAddr = B.parse().expect("addr");
        let mut sent = Vec::new();
        for n in 1..=40u32 {
            let p = pkt(0, 1, 53, n);
            let mut buf = vec![0u8; p.len() + 64];
            buf[HEADER_LEN..HEADER_LEN + p.len()].copy_from_slice(&p);
            let len = if n % 2 == 0 {
                // Through the engine.
                let mut out = Outputs::default();
                let now = sim.now;
                match sim.nodes[0]
                    .engine
                    .handle_inside(now, &mut buf, p.len(), &mut out)
                {
                    InsideOutcome::Send { len, .. } => len,
                    other => panic!("engine: {other:?}"),
                }
            } else {
                let table = sim.nodes[0].table.clone().expect("table");
                match table.seal_inside(sim.now, &mut buf, p.len()) {
                    FastInside::Send { len, .. } => len,
                    other => panic!("fast path: {other:?}"),
                }
            };
            sent.push(buf[..len].to_vec());
            sim.inject(a_addr, b_addr, buf[..len].to_vec());
        }
        sim.run_for(Duration::from_millis(50));
        for n in 1..=40 {
            assert_eq!(got(&sim, 1, n), 1, "packet {n} delivered once");
        }
        let counters: HashSet<u64> = sent
            .iter()
            .map(|d| Header::parse(d).expect("header").message_counter)
            .collect();
        assert_eq!(counters.len(), 40, "no counter used twice");
        // Replays of either path's datagrams are refused by the shared window.
        for d in sent.iter().take(4) {
            sim.inject(a_addr, b_addr, d.clone());
        }
        sim.run_for(Duration::from_millis(50));
        for n in 1..=4 {
            assert_eq!(got(&sim, 1, n), 1, "replayed packet {n} refused");
        }
    }

    #[test]
    fn a_roaming_peer_goes_through_the_engine_and_the_table_follows() {
        let mut sim = pair(allow_all(), allow_all());
        let moved: SocketAddr = "192.0.2.9:5000".parse().expect("addr");
        let old_gen = sim.nodes[1].table.as_ref().map(|t| t.generation());
        sim.nodes[0].addr = moved;
        sim.inside(0, &pkt(0, 1, 53, 1));
        sim.run_for(Duration::from_millis(20));
        assert_eq!(got(&sim, 1, 1), 1);
        assert!(sim.nodes[1]
            .events
            .iter()
            .any(|e| matches!(e, Event::Roamed { to, .. } if *to == moved)));
        // b's next packet uses a table that knows the new address, on the fast path.
        let fast_before = sim.nodes[1].fast_packets.0;
        assert!(matches!(
            sim.inside(1, &pkt(1, 0, 53, 2)),
            InsideOutcome::Send { to, .. } if to == moved
        ));
        assert_eq!(sim.nodes[1].fast_packets.0, fast_before + 1);
        assert!(sim.nodes[1].table.as_ref().map(|t| t.generation()) > old_gen);
        sim.run_for(Duration::from_millis(20));
        assert_eq!(got(&sim, 0, 2), 1);
        // And a's later packets from the new address open on b's fast path again.
        let fast_in = sim.nodes[1].fast_packets.1;
        sim.inside(0, &pkt(0, 1, 53, 3));
        sim.run_for(Duration::from_millis(20));
        assert_eq!(got(&sim, 1, 3), 1);
        assert_eq!(sim.nodes[1].fast_packets.1, fast_in + 1);
    }

    #[test]
    fn a_rebuild_reuses_the_entries_of_unchanged_tunnels() {
        let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
        let mut sim = Sim::new(11);
        let mut hub = EngineConfig::default();
        for (vpn, addr) in [("10.42.0.2", B), ("10.42.0.3", "192.0.2.3:4242")] {
            hub.static_host_map
                .insert(vpn.parse().expect("vpn"), vec![addr.parse().expect("addr")]);
        }
        sim.add_node("a", A, hub, ca.pki("a", "10.42.0.1/16"));
        sim.add_node("b", B, cfg_to("10.42.0.1", A), ca.pki("b", "10.42.0.2/16"));
        sim.add_node(
            "c",
            "192.0.2.3:4242",
            cfg_to("10.42.0.1", A),
            ca.pki("c", "10.42.0.3/16"),
        );
        sim.inside(0, &pkt(0, 1, 53, 1));
        sim.run_for(Duration::from_secs(1));
        let before = latest(&mut sim, 0);
        let b_entry = Arc::clone(before.index.by_vpn.get(&IpAddr::V4(vpn(1))).expect("b"));
        // A second tunnel (to c) makes a new table; b's entry is carried over as is.
        sim.inside(0, &pkt(0, 2, 53, 2));
        sim.run_for(Duration::from_secs(1));
        let after = latest(&mut sim, 0);
        assert!(after.generation() > before.generation());
        assert!(after.index.by_vpn.contains_key(&IpAddr::V4(vpn(2))));
        let b_again = after.index.by_vpn.get(&IpAddr::V4(vpn(1))).expect("b");
        assert!(Arc::ptr_eq(&b_entry, b_again), "b's entry was rebuilt");
        // b moving makes a fresh entry for b.
        sim.nodes[1].addr = "192.0.2.9:4000".parse().expect("addr");
        sim.inside(1, &pkt(1, 0, 53, 4));
        sim.run_for(Duration::from_millis(20));
        let moved = latest(&mut sim, 0);
        let b_moved = moved.index.by_vpn.get(&IpAddr::V4(vpn(1))).expect("b");
        assert!(!Arc::ptr_eq(&b_entry, b_moved));
        assert_eq!(b_moved.remote, sim.nodes[1].addr);
    }

    #[test]
    fn a_closed_tunnel_leaves_the_table() {
        let mut sim = pair(allow_all(), allow_all());
        let table = sim.nodes[0].table.clone().expect("table");
        assert_eq!(table.outbound_peers(), 1);
        assert_eq!(table.inbound_tunnels(), 1);
        assert!(
            sim.nodes[0].engine.data_table().is_none(),
            "nothing changed"
        );
        let mut out = Outputs::default();
        sim.nodes[0]
            .engine
            .close_tunnel(&IpAddr::V4(vpn(1)), &mut out);
        let next = sim.nodes[0].engine.data_table().expect("a new table");
        assert!(next.generation() > table.generation());
        assert_eq!(next.outbound_peers(), 0);
        assert_eq!(next.inbound_tunnels(), 0);
        let p = pkt(0, 1, 53, 9);
        let mut buf = vec![0u8; p.len() + 64];
        buf[HEADER_LEN..HEADER_LEN + p.len()].copy_from_slice(&p);
        assert_eq!(
            next.seal_inside(sim.now, &mut buf, p.len()),
            FastInside::Engine
        );
    }

    fn firewall(inbound_port: &str, action: Action, mine: &str) -> Box<dyn PacketFilter> {
        let cfg = FirewallConfig {
            inbound: vec![rule_from_anyone("udp", inbound_port)],
            outbound: vec![rule_from_anyone("udp", "53")],
            inbound_action: action,
            ..FirewallConfig::default()
        };
        let net: IpNet = mine.parse().expect("net");
        Box::new(GroupFirewall::new(
            Firewall::new(&cfg, &[net], &[]).expect("firewall"),
        ))
    }

    /// `outbound_action: reject` on the fast path: the worker answers the local sender itself
    /// (no second firewall pass in the engine), and nothing is sealed.
    #[test]
    fn an_outbound_reject_is_answered_on_the_fast_path() {
        let cfg = FirewallConfig {
            inbound: vec![rule_from_anyone("udp", "53")],
            outbound: vec![rule_from_anyone("udp", "53")],
            outbound_action: Action::Reject,
            ..FirewallConfig::default()
        };
        let net: IpNet = "10.42.0.1/16".parse().expect("net");
        let fa: Box<dyn PacketFilter> = Box::new(GroupFirewall::new(
            Firewall::new(&cfg, &[net], &[]).expect("firewall"),
        ));
        let mut sim = pair(fa, allow_all());
        let fast = sim.nodes[0].fast_packets.0;
        let tun_before = sim.nodes[0].tun.len();
        let wire = sim.wire_log.len();
        assert_eq!(
            sim.inside(0, &pkt(0, 1, 2000, 1)),
            InsideOutcome::Dropped(DropReason::Firewall(
                crate::firewall::DropReason::NoMatchingRule
            ))
        );
        assert_eq!(
            sim.nodes[0].fast_packets.0,
            fast + 1,
            "decided on the fast path"
        );
        assert_eq!(
            sim.nodes[0].tun.len(),
            tun_before + 1,
            "a reject answer for the sender"
        );
        let reply = sim.nodes[0].tun.last().expect("reply");
        assert_eq!(crate::filter::destination(reply), Some(IpAddr::V4(vpn(0))));
        sim.run_for(Duration::from_millis(20));
        assert_eq!(sim.wire_log.len(), wire, "nothing was sealed or sent");
    }

    #[test]
    fn the_firewall_decides_on_the_fast_path() {
        let mut sim = pair(
            firewall("53", Action::Drop, "10.42.0.1/16"),
            firewall("53", Action::Reject, "10.42.0.2/16"),
        );
        // Outbound: a may only send to port 53.
        let fast = sim.nodes[0].fast_packets.0;
        assert_eq!(
            sim.inside(0, &pkt(0, 1, 2000, 1)),
            InsideOutcome::Dropped(DropReason::Firewall(
                crate::firewall::DropReason::NoMatchingRule
            ))
        );
        assert_eq!(sim.nodes[0].fast_packets.0, fast + 1);
        sim.inside(0, &pkt(0, 1, 53, 2));
        sim.run_for(Duration::from_millis(20));
        assert_eq!(got(&sim, 1, 2), 1, "allowed packet delivered");
        // b's outbound rules drop its own packet to port 2000 before anything is sealed.
        let wire = sim.wire_log.len();
        sim.inside(1, &pkt(1, 0, 2000, 3));
        sim.run_for(Duration::from_millis(20));
        assert_eq!(got(&sim, 0, 3), 0);
        assert_eq!(sim.wire_log.len(), wire, "nothing went out");
        // Inbound: b only takes port 53 and rejects the rest. Seal a packet to b:2000 by hand
        // (a's own outbound rules would stop it) and check b refuses it on the fast path and
        // answers with a reject.
        let b_fast_in = sim.nodes[1].fast_packets.1;
        let p = pkt(0, 1, 2000, 4);
        let mut buf = vec![0u8; p.len() + 64];
        buf[HEADER_LEN..HEADER_LEN + p.len()].copy_from_slice(&p);
        let t = sim.nodes[0].table.clone().expect("table");
        let d = t.index.by_vpn.get(&IpAddr::V4(vpn(1))).expect("tunnel");
        let counter = d.session.next_counter().expect("counter");
        Header::new(
            MessageType::Message,
            subtype::MESSAGE_NONE,
            d.remote_index,
            counter,
        )
        .encode(&mut buf[..HEADER_LEN])
        .expect("header");
        let total = HEADER_LEN + p.len() + TAG_LEN;
        d.session
            .send
            .seal_frame(KeyUse::Data, counter, &mut buf[..total], HEADER_LEN)
            .expect("seal");
        sim.inject(
            A.parse().expect("a"),
            B.parse().expect("b"),
            buf[..total].to_vec(),
        );
        let wire = sim.wire_log.len();
        sim.run_for(Duration::from_millis(20));
        assert_eq!(got(&sim, 1, 4), 0, "b's inbound rules refuse port 2000");
        assert_eq!(
            sim.nodes[1].fast_packets.1,
            b_fast_in + 1,
            "decided on the fast path"
        );
        let b_addr: SocketAddr = B.parse().expect("b");
        assert!(
            sim.wire_log[wire..].iter().any(|(_, d)| d.from == b_addr),
            "b sent a reject back"
        );
    }

    #[test]
    fn concurrent_workers_never_share_a_counter_or_open_a_datagram_twice() {
        let sim = pair(allow_all(), allow_all());
        let a_table = sim.nodes[0].table.clone().expect("table");
        let b_table = sim.nodes[1].table.clone().expect("table");
        let now = sim.now;
        let seal = |worker: u32| {
            let t = Arc::clone(&a_table);
            std::thread::spawn(move || {
                let mut out = Vec::new();
                for n in 0..2000u32 {
                    let p = pkt(0, 1, 53, worker * 10_000 + n);
                    let mut buf = vec![0u8; p.len() + 64];
                    buf[HEADER_LEN..HEADER_LEN + p.len()].copy_from_slice(&p);
                    if let FastInside::Send { len, .. } = t.seal_inside(now, &mut buf, p.len()) {
                        buf.truncate(len);
                        out.push(buf);
                    }
                }
                out
            })
        };
        let (w1, w2) = (seal(1), seal(2));
        let mut all = w1.join().expect("worker 1");
        all.extend(w2.join().expect("worker 2"));
        assert_eq!(all.len(), 4000);
        let counters: HashSet<u64> = all
            .iter()
            .map(|d| Header::parse(d).expect("header").message_counter)
            .collect();
        assert_eq!(counters.len(), 4000, "every datagram has its own counter");
        all.sort_by_key(|d| Header::parse(d).map(|h| h.message_counter).unwrap_or(0));
        // Two receiving workers are handed every datagram (a duplicating network): each counter
        // may open at most once in total.
        let from: SocketAddr = A.parse().expect("a");
        let open = |copy: Vec<Vec<u8>>| {
            let t = Arc::clone(&b_table);
            std::thread::spawn(move || {
                let mut opened = Vec::new();
                for mut d in copy {
                    let c = Header::parse(&d).map(|h| h.message_counter).unwrap_or(0);
                    if matches!(t.open_outside(now, from, &mut d), FastOutside::Tun { .. }) {
                        opened.push(c);
                    }
                }
                opened
            })
        };
        let (r1, r2) = (open(all.clone()), open(all));
        let mut opened = r1.join().expect("receiver 1");
        opened.extend(r2.join().expect("receiver 2"));
        let unique: HashSet<u64> = opened.iter().copied().collect();
        assert_eq!(unique.len(), opened.len(), "a datagram was opened twice");
        assert!(
            unique.len() >= 2000,
            "most datagrams open: {}",
            unique.len()
        );
    }
}
