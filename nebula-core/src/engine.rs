//! The engine: one sans-IO state machine per node. Datagrams, inside packets and time go in;
//! transmits, packets for the TUN, events and the next deadline come out.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use nebula_cert::cert::Certificate;
use nebula_cert::Version;
use prost::Message as _;
use proto::header::{subtype, Header, MessageType, HEADER_LEN};
use proto::lighthouse::{NebulaMeta, NebulaMetaType};
use rand_core::CryptoRngCore;

use crate::aead::{CipherKind, TAG_LEN};
use crate::filter::{PacketFilter, PeerIdentity, Verdict};
use crate::handshake::{self, PendingHandshake, QueuedPacket, MAX_QUEUED_PACKETS};
use crate::hostmap::{HostMap, Tunnel};
use crate::lighthouse::{self, LighthouseServer};
use crate::pki::Pki;
use crate::remotes::RemoteList;
use crate::timers::{Timer, Timers};

/// How long after a peer moves we refuse to move it back to where it was (Go: 2 s).
pub const ROAMING_SUPPRESS: Duration = Duration::from_secs(2);
/// Two tunnels to one host confirmed within this span are a handshake race, settled by vpn address.
pub const RACE_WINDOW: Duration = Duration::from_secs(6);

/// When to answer an unknown index with recvError (`listen.send_recv_error`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RecvErrorPolicy {
    #[default]
    Always,
    Never,
    /// Only to private (RFC 1918 / ULA / loopback / link-local) sources.
    Private,
}

/// `punchy.*`.
#[derive(Clone, Debug)]
pub struct PunchyConfig {
    pub punch: bool,
    pub respond: bool,
    pub delay: Duration,
    pub respond_delay: Duration,
}

impl Default for PunchyConfig {
    fn default() -> Self {
        PunchyConfig {
            punch: false,
            respond: false,
            delay: Duration::from_secs(1),
            respond_delay: Duration::from_secs(5),
        }
    }
}

/// Everything the engine needs to know besides credentials.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub cipher: CipherKind,
    pub handshake_try_interval: Duration,
    pub handshake_retries: u32,
    /// Most handshakes we initiate at once; further requests are refused until one ends.
    pub max_pending_handshakes: usize,
    pub connection_alive_interval: Duration,
    pub pending_deletion_interval: Duration,
    /// Re-handshake once a tunnel has sent this many messages (Go 1.11.1: 2^34).
    pub rehandshake_after_messages: u64,
    pub static_host_map: HashMap<IpAddr, Vec<SocketAddr>>,
    pub lighthouses: Vec<IpAddr>,
    pub am_lighthouse: bool,
    /// `lighthouse.interval`; zero disables updates.
    pub lighthouse_interval: Duration,
    /// Our underlay addresses to report to lighthouses (advertise_addrs, then local addresses).
    pub advertise_addrs: Vec<SocketAddr>,
    pub preferred_ranges: Vec<IpNet>,
    pub punchy: PunchyConfig,
    pub send_recv_error: RecvErrorPolicy,
    pub accept_recv_error: bool,
    pub disconnect_invalid: bool,
    /// `tun.unsafe_routes`: destination network -> vpn address of the gateway host.
    pub unsafe_routes: Vec<(IpNet, IpAddr)>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            cipher: CipherKind::AesGcm,
            handshake_try_interval: Duration::from_millis(100),
            handshake_retries: 10,
            max_pending_handshakes: 4096,
            connection_alive_interval: Duration::from_secs(5),
            pending_deletion_interval: Duration::from_secs(10),
            rehandshake_after_messages: crate::aead::REHANDSHAKE_AFTER_MESSAGES,
            static_host_map: HashMap::new(),
            lighthouses: Vec::new(),
            am_lighthouse: false,
            lighthouse_interval: Duration::from_secs(10),
            advertise_addrs: Vec::new(),
            preferred_ranges: Vec::new(),
            punchy: PunchyConfig::default(),
            send_recv_error: RecvErrorPolicy::Always,
            accept_recv_error: true,
            disconnect_invalid: true,
            unsafe_routes: Vec::new(),
        }
    }
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub payload: Vec<u8>,
}

/// Why a tunnel went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent closeTunnel.
    PeerClosed,
    /// We closed it (shutdown, invalid certificate, wrong host).
    LocalClose,
    /// No inbound traffic after a test request.
    Dead,
    /// The peer answered with recvError: it no longer knows this tunnel.
    RecvError,
    /// A newer tunnel to the same host replaced it.
    Replaced,
    /// The peer's certificate stopped verifying (expired, blocklisted, CA removed).
    CertInvalid,
    /// The send counter is exhausted.
    CounterExhausted,
}

/// Something that happened, for logs and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    TunnelUp {
        vpn_addr: IpAddr,
        remote: Option<SocketAddr>,
        local_index: u32,
        initiator: bool,
        cert_name: String,
    },
    TunnelDown {
        vpn_addr: IpAddr,
        local_index: u32,
        reason: CloseReason,
    },
    HandshakeTimedOut {
        vpn_addr: IpAddr,
    },
    /// A handshake was refused; `from` sent it.
    HandshakeRejected {
        from: SocketAddr,
        reason: String,
    },
    Roamed {
        vpn_addr: IpAddr,
        from: Option<SocketAddr>,
        to: SocketAddr,
    },
    TestReply {
        vpn_addr: IpAddr,
        payload: Vec<u8>,
    },
}

/// Control-plane output of one call.
#[derive(Default, Debug)]
pub struct Outputs {
    pub transmits: Vec<Transmit>,
    /// IP packets to write to the TUN (control-plane produced: queued packets, rejects).
    pub tun: Vec<Vec<u8>>,
    pub events: Vec<Event>,
}

impl Outputs {
    pub fn clear(&mut self) {
        self.transmits.clear();
        self.tun.clear();
        self.events.clear();
    }
}

/// Why a packet was not forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    TooShort,
    BadHeader,
    UnknownIndex,
    Replay,
    Decrypt,
    Firewall,
    NoRoute,
    BufferTooSmall,
    NotIp,
    ToSelf,
    DoubleEncrypted,
    HandshakeQueueFull,
    CounterExhausted,
}

/// Result of [`Engine::handle_inside`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsideOutcome {
    /// `buf[..len]` is a sealed datagram for `to`.
    Send { to: SocketAddr, len: usize },
    /// Queued until a handshake completes.
    Queued,
    /// Handled by the control plane (outputs may hold a reject).
    Dropped(DropReason),
}

/// Result of [`Engine::handle_outside`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutsideOutcome {
    /// `datagram[start..end]` is a decrypted IP packet for the TUN.
    Tun {
        start: usize,
        end: usize,
    },
    /// Consumed by the control plane; see the outputs.
    Handled,
    Dropped(DropReason),
}

/// Where a packet came from: straight off the UDP socket, or out of a relay frame.
#[derive(Clone, Copy, Debug)]
enum Via {
    Udp(SocketAddr),
}

impl Via {
    fn addr(self) -> SocketAddr {
        match self {
            Via::Udp(a) => a,
        }
    }
}

/// The protocol engine of one node.
pub struct Engine {
    cfg: EngineConfig,
    pki: Pki,
    rng: Box<dyn CryptoRngCore + Send>,
    hostmap: HostMap,
    pending: HashMap<u32, PendingHandshake>,
    pending_by_vpn: HashMap<IpAddr, u32>,
    remotes: HashMap<IpAddr, RemoteList>,
    timers: Timers,
    filter: Box<dyn PacketFilter>,
    lighthouse_server: Option<Box<dyn LighthouseServer>>,
    /// Wall clock anchor: `unix_nanos` at `mono`.
    wall: (Instant, u64),
    started: bool,
    /// Lighthouse messages waiting for a tunnel: (vpn, type, plaintext).
    deferred: VecDeque<(IpAddr, MessageType, u8, Vec<u8>)>,
}

impl Engine {
    /// A new engine. `now`/`unix_nanos` anchor the wall clock used for certificate validity and
    /// handshake times; `rng` supplies indexes and ephemeral keys.
    pub fn new(
        cfg: EngineConfig,
        pki: Pki,
        filter: Box<dyn PacketFilter>,
        rng: Box<dyn CryptoRngCore + Send>,
        now: Instant,
        unix_nanos: u64,
    ) -> Engine {
        let mut remotes: HashMap<IpAddr, RemoteList> = HashMap::new();
        for (vpn, addrs) in &cfg.static_host_map {
            remotes.entry(*vpn).or_default().static_addrs = addrs.clone();
        }
        Engine {
            cfg,
            pki,
            rng,
            hostmap: HostMap::default(),
            pending: HashMap::new(),
            pending_by_vpn: HashMap::new(),
            remotes,
            timers: Timers::default(),
            filter,
            lighthouse_server: None,
            wall: (now, unix_nanos),
            started: false,
            deferred: VecDeque::new(),
        }
    }

    /// Plug in the lighthouse's address book (`lighthouse.am_lighthouse`).
    pub fn set_lighthouse_server(&mut self, server: Box<dyn LighthouseServer>) {
        self.lighthouse_server = Some(server);
    }

    /// Re-anchor the wall clock (call now and then; cheap).
    pub fn set_wall_clock(&mut self, now: Instant, unix_nanos: u64) {
        self.wall = (now, unix_nanos);
    }

    fn unix_nanos(&self, now: Instant) -> u64 {
        let (mono, base) = self.wall;
        if now >= mono {
            base.saturating_add(u64::try_from((now - mono).as_nanos()).unwrap_or(u64::MAX))
        } else {
            base.saturating_sub(u64::try_from((mono - now).as_nanos()).unwrap_or(u64::MAX))
        }
    }

    fn unix_secs(&self, now: Instant) -> i64 {
        i64::try_from(self.unix_nanos(now) / 1_000_000_000).unwrap_or(i64::MAX)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    pub fn hostmap(&self) -> &HostMap {
        &self.hostmap
    }

    pub fn pending_handshakes(&self) -> usize {
        self.pending.len()
    }

    pub fn remotes_for(&self, vpn: &IpAddr) -> Option<&RemoteList> {
        self.remotes.get(vpn)
    }

    /// Our vpn address.
    pub fn vpn_addr(&self) -> IpAddr {
        self.pki.vpn_addr()
    }

    /// The primary tunnel to `vpn`, if any.
    pub fn tunnel_to(&self, vpn: &IpAddr) -> Option<&Tunnel> {
        self.hostmap.primary(vpn).and_then(|i| self.hostmap.get(i))
    }

    /// Replace the packet filter entirely (drops its connection state).
    pub fn set_filter(&mut self, filter: Box<dyn PacketFilter>) {
        self.filter = filter;
    }

    /// New firewall rules (SIGHUP): open connections are re-checked against them on next use.
    pub fn reload_firewall(&mut self, firewall: crate::firewall::Firewall) {
        self.filter.reload(firewall);
    }

    fn ca_name_of(&self, cert: &Certificate) -> String {
        self.pki
            .ca_pool()
            .get_ca_for_cert(cert)
            .map(|ca| ca.name().to_string())
            .unwrap_or_default()
    }

    /// Replace our credentials (SIGHUP). Existing tunnels keep running; tunnels whose peer no longer
    /// verifies are closed at their next connection check, and new handshakes use the new cert.
    pub fn reload_pki(&mut self, pki: Pki) {
        self.pki = pki;
    }

    /// Replace the lighthouse and static host lists (SIGHUP).
    pub fn reload_lighthouses(
        &mut self,
        lighthouses: Vec<IpAddr>,
        static_host_map: HashMap<IpAddr, Vec<SocketAddr>>,
        now: Instant,
        out: &mut Outputs,
    ) {
        for r in self.remotes.values_mut() {
            r.static_addrs.clear();
        }
        for (vpn, addrs) in &static_host_map {
            self.remotes.entry(*vpn).or_default().static_addrs = addrs.clone();
        }
        let changed = lighthouses != self.cfg.lighthouses;
        self.cfg.lighthouses = lighthouses;
        self.cfg.static_host_map = static_host_map;
        if changed && self.started {
            self.send_host_updates(now, out);
        }
    }

    /// Update the underlay addresses we advertise (the node learned its local addresses).
    pub fn set_advertise_addrs(&mut self, addrs: Vec<SocketAddr>) {
        self.cfg.advertise_addrs = addrs;
    }

    /// The next time [`Engine::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Start background work (lighthouse updates). Call once after creating the engine.
    pub fn start(&mut self, now: Instant, out: &mut Outputs) {
        if self.started {
            return;
        }
        self.started = true;
        if !self.cfg.am_lighthouse && !self.cfg.lighthouses.is_empty() {
            self.send_host_updates(now, out);
            if !self.cfg.lighthouse_interval.is_zero() {
                self.timers
                    .add(now + self.cfg.lighthouse_interval, Timer::LighthouseUpdate);
            }
        }
    }

    // ------------------------------------------------------------------ inside -> outside

    /// A packet read from the TUN. The packet sits at `buf[HEADER_LEN..HEADER_LEN + len]`; `buf` must
    /// have `TAG_LEN` spare bytes after it. On `Send`, `buf[..len]` is the datagram.
    pub fn handle_inside(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        out: &mut Outputs,
    ) -> InsideOutcome {
        let total = HEADER_LEN + len + TAG_LEN;
        if buf.len() < total {
            return InsideOutcome::Dropped(DropReason::BufferTooSmall);
        }
        let Some(dst) = crate::filter::destination(&buf[HEADER_LEN..HEADER_LEN + len]) else {
            return InsideOutcome::Dropped(DropReason::NotIp);
        };
        if self.pki.is_my_addr(&dst) {
            return InsideOutcome::Dropped(DropReason::ToSelf);
        }
        let Some(vpn) = self.route(&dst) else {
            return InsideOutcome::Dropped(DropReason::NoRoute);
        };
        let Some(idx) = self.hostmap.primary(&vpn) else {
            // No tunnel: queue the packet and start (or continue) a handshake.
            let packet = buf[HEADER_LEN..HEADER_LEN + len].to_vec();
            return self.queue_for_handshake(now, vpn, QueuedPacket::Inside(packet), out);
        };
        let Some(t) = self.hostmap.get_mut(idx) else {
            return InsideOutcome::Dropped(DropReason::NoRoute);
        };
        let peer = PeerIdentity::of(t);
        match self
            .filter
            .check(now, &buf[HEADER_LEN..HEADER_LEN + len], false, &peer)
        {
            Verdict::Allow => {}
            Verdict::Drop => return InsideOutcome::Dropped(DropReason::Firewall),
            Verdict::Reject => {
                if let Some(reply) = crate::filter::reject_reply(&buf[HEADER_LEN..HEADER_LEN + len])
                {
                    out.tun.push(reply);
                }
                return InsideOutcome::Dropped(DropReason::Firewall);
            }
        }
        let Some(to) = t.remote else {
            return InsideOutcome::Dropped(DropReason::NoRoute);
        };
        let counter = match t.session.next_counter() {
            Ok(c) => c,
            Err(_) => return InsideOutcome::Dropped(DropReason::CounterExhausted),
        };
        let h = Header::new(
            MessageType::Message,
            subtype::MESSAGE_NONE,
            t.remote_index,
            counter,
        );
        if h.encode(&mut buf[..HEADER_LEN]).is_err() {
            return InsideOutcome::Dropped(DropReason::BufferTooSmall);
        }
        if t.session
            .send
            .seal_frame(counter, &mut buf[..total], HEADER_LEN)
            .is_err()
        {
            return InsideOutcome::Dropped(DropReason::CounterExhausted);
        }
        t.traffic_out = true;
        InsideOutcome::Send { to, len: total }
    }

    /// The vpn address that carries traffic for `dst`: the host itself, or an unsafe-route gateway.
    fn route(&self, dst: &IpAddr) -> Option<IpAddr> {
        if self.pki.in_my_networks(dst) {
            return Some(*dst);
        }
        self.cfg
            .unsafe_routes
            .iter()
            .filter(|(net, _)| net.contains(dst))
            .max_by_key(|(net, _)| net.prefix_len())
            .map(|(_, via)| *via)
    }

    fn queue_for_handshake(
        &mut self,
        now: Instant,
        vpn: IpAddr,
        packet: QueuedPacket,
        out: &mut Outputs,
    ) -> InsideOutcome {
        let idx = match self.pending_by_vpn.get(&vpn) {
            Some(i) => *i,
            None => match self.start_handshake(now, vpn, out) {
                Some(i) => i,
                None => return InsideOutcome::Dropped(DropReason::HandshakeQueueFull),
            },
        };
        if let Some(p) = self.pending.get_mut(&idx) {
            if p.queued.len() < MAX_QUEUED_PACKETS {
                p.queued.push(packet);
                return InsideOutcome::Queued;
            }
        }
        InsideOutcome::Dropped(DropReason::HandshakeQueueFull)
    }

    /// Make sure a tunnel to `vpn` exists or is being made (used by the node for lighthouses and
    /// tests). Returns true if a tunnel is already up.
    pub fn connect(&mut self, now: Instant, vpn: IpAddr, out: &mut Outputs) -> bool {
        if self.hostmap.primary(&vpn).is_some() {
            return true;
        }
        if !self.pending_by_vpn.contains_key(&vpn) {
            self.start_handshake(now, vpn, out);
        }
        false
    }

    /// Send a test request with `payload` to `vpn` (starts a handshake if needed).
    pub fn send_test_request(
        &mut self,
        now: Instant,
        vpn: IpAddr,
        payload: &[u8],
        out: &mut Outputs,
    ) {
        self.send_to_vpn(
            now,
            vpn,
            MessageType::Test,
            subtype::TEST_REQUEST,
            payload,
            out,
        );
    }

    /// Send an encrypted control-plane message to `vpn`, queueing it behind a handshake if needed.
    fn send_to_vpn(
        &mut self,
        now: Instant,
        vpn: IpAddr,
        t: MessageType,
        st: u8,
        payload: &[u8],
        out: &mut Outputs,
    ) {
        if let Some(idx) = self.hostmap.primary(&vpn) {
            self.send_on_tunnel(idx, t, st, payload, out);
        } else {
            self.queue_for_handshake(
                now,
                vpn,
                QueuedPacket::Control(t, st, payload.to_vec()),
                out,
            );
        }
    }

    /// Encrypt and send one message on a specific tunnel.
    fn send_on_tunnel(
        &mut self,
        idx: u32,
        t: MessageType,
        st: u8,
        payload: &[u8],
        out: &mut Outputs,
    ) {
        let Some(tun) = self.hostmap.get_mut(idx) else {
            return;
        };
        let Some(to) = tun.remote else {
            return;
        };
        if let Some(d) = seal_message(tun, t, st, payload) {
            if t == MessageType::Message {
                tun.traffic_out = true;
            } else if t != MessageType::CloseTunnel {
                tun.traffic_out = true;
            }
            out.transmits.push(Transmit { to, payload: d });
        }
    }

    /// Close every tunnel, telling each peer (clean shutdown).
    pub fn close_all(&mut self, out: &mut Outputs) {
        let idxs: Vec<u32> = self.hostmap.indexes().collect();
        for idx in idxs {
            self.send_on_tunnel(idx, MessageType::CloseTunnel, 0, &[], out);
            self.remove_tunnel(idx, CloseReason::LocalClose, out);
        }
        self.pending.clear();
        self.pending_by_vpn.clear();
    }

    /// Close the tunnels to `vpn`, telling the peer.
    pub fn close_tunnel(&mut self, vpn: &IpAddr, out: &mut Outputs) {
        let idxs: Vec<u32> = self.hostmap.tunnels_for(vpn).to_vec();
        for idx in idxs {
            self.send_on_tunnel(idx, MessageType::CloseTunnel, 0, &[], out);
            self.remove_tunnel(idx, CloseReason::LocalClose, out);
        }
    }

    // ------------------------------------------------------------------ outside -> inside

    /// A datagram from the UDP socket. On `Tun`, the decrypted packet is `datagram[start..end]`.
    pub fn handle_outside(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &mut [u8],
        out: &mut Outputs,
    ) -> OutsideOutcome {
        let Ok(h) = Header::parse(datagram) else {
            // Hole-punch bytes and runts.
            return OutsideOutcome::Dropped(DropReason::TooShort);
        };
        if h.check_strict().is_err() {
            return OutsideOutcome::Dropped(DropReason::BadHeader);
        }
        if self.pki.in_my_networks(&from.ip()) {
            return OutsideOutcome::Dropped(DropReason::DoubleEncrypted);
        }
        self.handle_packet(now, Via::Udp(from), h, datagram, out)
    }

    fn handle_packet(
        &mut self,
        now: Instant,
        via: Via,
        h: Header,
        datagram: &mut [u8],
        out: &mut Outputs,
    ) -> OutsideOutcome {
        match h.msg_type {
            MessageType::Handshake => {
                self.handle_handshake(now, via, &h, datagram, out);
                return OutsideOutcome::Handled;
            }
            MessageType::RecvError => {
                self.handle_recv_error(now, via, &h, out);
                return OutsideOutcome::Handled;
            }
            _ => {}
        }
        let idx = h.remote_index;
        let Some(t) = self.hostmap.get_mut(idx) else {
            self.maybe_send_recv_error(via, idx, out);
            return OutsideOutcome::Dropped(DropReason::UnknownIndex);
        };
        if datagram.len() < HEADER_LEN + TAG_LEN {
            return OutsideOutcome::Dropped(DropReason::TooShort);
        }
        let plain_len = match t
            .session
            .open_frame(h.message_counter, datagram, HEADER_LEN)
        {
            Ok(p) => p.len(),
            Err(crate::aead::AeadError::Replay) => {
                return OutsideOutcome::Dropped(DropReason::Replay)
            }
            Err(_) => return OutsideOutcome::Dropped(DropReason::Decrypt),
        };
        // Authenticated from here on.
        t.traffic_in = true;
        let vpn = t.vpn_addr;
        let newly_confirmed = !t.confirmed;
        if newly_confirmed {
            t.confirmed = true;
            t.confirmed_at = Some(now);
        }
        self.roam(now, idx, via, out);
        if newly_confirmed {
            self.on_confirmed(now, idx, out);
        }
        let start = HEADER_LEN;
        let end = HEADER_LEN + plain_len;
        match (h.msg_type, h.subtype) {
            (MessageType::Message, subtype::MESSAGE_NONE) => {
                let Some(t) = self.hostmap.get(idx) else {
                    return OutsideOutcome::Dropped(DropReason::UnknownIndex);
                };
                let peer = PeerIdentity::of(t);
                match self.filter.check(now, &datagram[start..end], true, &peer) {
                    Verdict::Allow => OutsideOutcome::Tun { start, end },
                    Verdict::Drop => OutsideOutcome::Dropped(DropReason::Firewall),
                    Verdict::Reject => {
                        if let Some(reply) = crate::filter::reject_reply(&datagram[start..end]) {
                            self.send_on_tunnel(idx, MessageType::Message, 0, &reply, out);
                        }
                        OutsideOutcome::Dropped(DropReason::Firewall)
                    }
                }
            }
            (MessageType::Test, subtype::TEST_REQUEST) => {
                let payload = datagram[start..end].to_vec();
                self.send_on_tunnel(idx, MessageType::Test, subtype::TEST_REPLY, &payload, out);
                OutsideOutcome::Handled
            }
            (MessageType::Test, subtype::TEST_REPLY) => {
                out.events.push(Event::TestReply {
                    vpn_addr: vpn,
                    payload: datagram[start..end].to_vec(),
                });
                OutsideOutcome::Handled
            }
            (MessageType::CloseTunnel, _) => {
                self.remove_tunnel(idx, CloseReason::PeerClosed, out);
                OutsideOutcome::Handled
            }
            (MessageType::LightHouse, _) => {
                let msg = datagram[start..end].to_vec();
                self.handle_lighthouse(now, idx, &msg, out);
                OutsideOutcome::Handled
            }
            _ => OutsideOutcome::Dropped(DropReason::BadHeader),
        }
    }

    /// A tunnel's peer just proved it holds the keys: decide whether it becomes primary.
    fn on_confirmed(&mut self, now: Instant, idx: u32, _out: &mut Outputs) {
        let Some(t) = self.hostmap.get(idx) else {
            return;
        };
        let vpn = t.vpn_addr;
        let current = self.hostmap.primary(&vpn);
        if current == Some(idx) {
            return;
        }
        let promote = match current.and_then(|c| self.hostmap.get(c)) {
            None => true,
            Some(cur) => self.newer_wins(now, t, cur),
        };
        if promote {
            self.hostmap.make_primary(idx);
        }
    }

    /// Should confirmed tunnel `new` replace confirmed primary `cur`? A clearly newer tunnel wins;
    /// two confirmed within [`RACE_WINDOW`] are a race, won by the one the higher vpn address
    /// initiated (both ends reach the same answer).
    fn newer_wins(&self, now: Instant, new: &Tunnel, cur: &Tunnel) -> bool {
        if !cur.confirmed {
            return true;
        }
        if !new.confirmed {
            return false;
        }
        let cur_at = cur.confirmed_at.unwrap_or(cur.created);
        let new_at = new.confirmed_at.unwrap_or(now);
        if new_at.saturating_duration_since(cur_at) > RACE_WINDOW {
            return true;
        }
        let me = self.pki.vpn_addr();
        let init = |t: &Tunnel| if t.initiator { me } else { t.vpn_addr };
        let (a, b) = (init(new), init(cur));
        if a != b {
            return a > b;
        }
        true
    }

    fn roam(&mut self, now: Instant, idx: u32, via: Via, out: &mut Outputs) {
        let Via::Udp(from) = via;
        let Some(t) = self.hostmap.get_mut(idx) else {
            return;
        };
        if t.remote == Some(from) {
            return;
        }
        if let Some((prev, at)) = t.last_roam {
            if prev == from && now.saturating_duration_since(at) < ROAMING_SUPPRESS {
                return;
            }
        }
        let old = t.remote;
        if let Some(o) = old {
            t.last_roam = Some((o, now));
        }
        t.remote = Some(from);
        let vpn = t.vpn_addr;
        self.remotes.entry(vpn).or_default().learn(from);
        if old.is_some() {
            out.events.push(Event::Roamed {
                vpn_addr: vpn,
                from: old,
                to: from,
            });
        }
    }

    fn maybe_send_recv_error(&mut self, via: Via, index: u32, out: &mut Outputs) {
        let Via::Udp(to) = via;
        let send = match self.cfg.send_recv_error {
            RecvErrorPolicy::Always => true,
            RecvErrorPolicy::Never => false,
            RecvErrorPolicy::Private => is_private(&to.ip()),
        };
        if send {
            let h = Header::new(MessageType::RecvError, 0, index, 0);
            out.transmits.push(Transmit {
                to,
                payload: h.to_bytes().to_vec(),
            });
        }
    }

    fn handle_recv_error(&mut self, now: Instant, via: Via, h: &Header, out: &mut Outputs) {
        if !self.cfg.accept_recv_error {
            return;
        }
        let Some(idx) = self.hostmap.by_remote_index(h.remote_index) else {
            return;
        };
        let Some(t) = self.hostmap.get_mut(idx) else {
            return;
        };
        if t.remote != Some(via.addr()) {
            return;
        }
        t.recv_errors += 1;
        let vpn = t.vpn_addr;
        self.remove_tunnel(idx, CloseReason::RecvError, out);
        if self.hostmap.primary(&vpn).is_none() {
            self.start_handshake(now, vpn, out);
        }
    }

    fn remove_tunnel(&mut self, idx: u32, reason: CloseReason, out: &mut Outputs) {
        if let Some(t) = self.hostmap.remove(idx) {
            out.events.push(Event::TunnelDown {
                vpn_addr: t.vpn_addr,
                local_index: idx,
                reason,
            });
            if self.hostmap.primary(&t.vpn_addr).is_none() {
                if let Some(server) = self.lighthouse_server.as_mut() {
                    server.host_gone(t.vpn_addr);
                }
            }
            if self.hostmap.primary(&t.vpn_addr).is_none() && reason != CloseReason::Replaced {
                if let Some(r) = self.remotes.get_mut(&t.vpn_addr) {
                    if !self.cfg.lighthouses.contains(&t.vpn_addr) {
                        r.forget_dynamic();
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------ handshakes

    /// Begin a handshake to `vpn` as initiator. Returns the pending local index.
    fn start_handshake(&mut self, now: Instant, vpn: IpAddr, out: &mut Outputs) -> Option<u32> {
        if let Some(i) = self.pending_by_vpn.get(&vpn) {
            return Some(*i);
        }
        if self.pending.len() >= self.cfg.max_pending_handshakes || self.pki.is_my_addr(&vpn) {
            return None;
        }
        let local_index = self.allocate_index()?;
        let version = if vpn.is_ipv6() {
            Version::V2
        } else {
            self.pki.initiating_version()
        };
        let version = if self.pki.cert(version).is_some() {
            version
        } else {
            self.pki.initiating_version()
        };
        let unix = self.unix_nanos(now);
        let pending = handshake::initiate(
            &self.pki,
            self.cfg.cipher,
            version,
            vpn,
            local_index,
            unix,
            now,
            &mut *self.rng,
        )
        .ok()?;
        self.pending.insert(local_index, pending);
        self.pending_by_vpn.insert(vpn, local_index);
        self.timers.add(
            now + self.cfg.handshake_try_interval,
            Timer::HandshakeRetry { local_index },
        );
        // Static hosts (and anything we already know) are tried at once; everyone else waits for
        // the lighthouse.
        let has_static = self
            .remotes
            .get(&vpn)
            .is_some_and(|r| !r.static_addrs.is_empty());
        if has_static {
            self.handshake_attempt(now, local_index, false, out);
        }
        self.query_lighthouses(now, vpn, out);
        Some(local_index)
    }

    fn allocate_index(&mut self) -> Option<u32> {
        for _ in 0..32 {
            let i = self.rng.next_u32();
            if i != 0 && !self.hostmap.contains_index(i) && !self.pending.contains_key(&i) {
                return Some(i);
            }
        }
        None
    }

    /// One handshake attempt: send stage 1 to every known address.
    fn handshake_attempt(&mut self, now: Instant, idx: u32, from_timer: bool, out: &mut Outputs) {
        let Some(p) = self.pending.get_mut(&idx) else {
            return;
        };
        let vpn = p.vpn_addr;
        if from_timer && p.attempts >= self.cfg.handshake_retries {
            self.pending.remove(&idx);
            self.pending_by_vpn.remove(&vpn);
            out.events.push(Event::HandshakeTimedOut { vpn_addr: vpn });
            return;
        }
        p.attempts += 1;
        let attempts = p.attempts;
        let addrs = self
            .remotes
            .get(&vpn)
            .map(|r| r.addrs(&self.cfg.preferred_ranges))
            .unwrap_or_default();
        for a in &addrs {
            out.transmits.push(Transmit {
                to: *a,
                payload: p.stage1.clone(),
            });
        }
        p.last_addrs = addrs.clone();
        if from_timer {
            self.timers.add(
                now + self.cfg.handshake_try_interval * attempts,
                Timer::HandshakeRetry { local_index: idx },
            );
            if addrs.len() <= 1 && attempts == 5 {
                self.query_lighthouses(now, vpn, out);
            }
        }
    }

    fn handle_handshake(
        &mut self,
        now: Instant,
        via: Via,
        h: &Header,
        datagram: &[u8],
        out: &mut Outputs,
    ) {
        if h.subtype != subtype::HANDSHAKE_IX_PSK0 {
            return;
        }
        match h.message_counter {
            1 => {
                if h.remote_index != 0 {
                    return;
                }
                self.handshake_stage1(now, via, datagram, out);
            }
            2 => self.handshake_stage2(now, via, h.remote_index, datagram, out),
            _ => {}
        }
    }

    /// We are the responder: a stage-1 message arrived.
    fn handshake_stage1(&mut self, now: Instant, via: Via, datagram: &[u8], out: &mut Outputs) {
        let body = datagram.get(HEADER_LEN..).unwrap_or(&[]);
        // A retransmit of a stage 1 we already answered: send the same stage 2 again.
        if let Some(t) = self
            .hostmap
            .tunnels()
            .find(|t| !t.initiator && t.stage1_body == body)
        {
            if let Some(s2) = &t.stage2_datagram {
                out.transmits.push(Transmit {
                    to: via.addr(),
                    payload: s2.clone(),
                });
            }
            return;
        }
        let unix = self.unix_nanos(now);
        let unix_secs = self.unix_secs(now);
        let local_index = match self.allocate_index() {
            Some(i) => i,
            None => return,
        };
        let resp = match handshake::respond(
            &self.pki,
            self.cfg.cipher,
            body,
            local_index,
            unix,
            unix_secs,
            &mut *self.rng,
        ) {
            Ok(r) => r,
            Err(e) => {
                out.events.push(Event::HandshakeRejected {
                    from: via.addr(),
                    reason: e.to_string(),
                });
                return;
            }
        };
        let vpn = resp.vpn_addrs[0];
        if resp.vpn_addrs.iter().any(|a| self.pki.is_my_addr(a)) {
            out.events.push(Event::HandshakeRejected {
                from: via.addr(),
                reason: "refusing to handshake with myself".into(),
            });
            return;
        }
        // An existing, working tunnel with a handshake at least as new wins ("handshake too old"),
        // unless we initiated it (as 1.11).
        if let Some(cur) = self.hostmap.primary(&vpn).and_then(|i| self.hostmap.get(i)) {
            if !cur.initiator && cur.peer_handshake_time >= resp.peer_time && cur.confirmed {
                let ci = cur.local_index;
                self.send_on_tunnel(ci, MessageType::Test, subtype::TEST_REQUEST, &[], out);
                return;
            }
        }
        let mut datagram2 = resp.stage2;
        let mut hdr = [0u8; HEADER_LEN];
        let _ = Header::new(
            MessageType::Handshake,
            subtype::HANDSHAKE_IX_PSK0,
            resp.peer_index,
            2,
        )
        .encode(&mut hdr);
        datagram2.splice(0..0, hdr);
        let tunnel = Tunnel {
            local_index,
            vpn_addr: vpn,
            remote_index: resp.peer_index,
            vpn_addrs: resp.vpn_addrs,
            peer_fingerprint: resp.peer_cert.fingerprint_hex(),
            peer_ca_name: self.ca_name_of(&resp.peer_cert),
            peer_issuer_hex: resp.peer_cert.issuer_hex(),
            peer_cert: Arc::new(resp.peer_cert),
            session: resp.session,
            remote: Some(via.addr()),
            last_roam: None,
            initiator: false,
            peer_handshake_time: resp.peer_time,
            stage1_body: body.to_vec(),
            stage2_datagram: Some(datagram2.clone()),
            confirmed: false,
            created: now,
            confirmed_at: None,
            traffic_in: false,
            traffic_out: false,
            pending_deletion: false,
            cert_version: resp.our_version,
            recv_errors: 0,
        };
        let cert_name = tunnel.peer_cert.name().to_string();
        // A tunnel made by answering a stage 1 does not displace a confirmed one: stage 1 is not
        // authenticated and may be a replay. It becomes primary once the peer proves its keys.
        let has_confirmed_primary = self
            .hostmap
            .primary(&vpn)
            .and_then(|i| self.hostmap.get(i))
            .is_some_and(|t| t.confirmed);
        let evicted = self.hostmap.insert(tunnel, !has_confirmed_primary);
        for e in evicted {
            out.events.push(Event::TunnelDown {
                vpn_addr: e.vpn_addr,
                local_index: e.local_index,
                reason: CloseReason::Replaced,
            });
        }
        self.remotes.entry(vpn).or_default().learn(via.addr());
        self.timers.add(
            now + self.cfg.connection_alive_interval,
            Timer::ConnectionCheck { local_index },
        );
        out.transmits.push(Transmit {
            to: via.addr(),
            payload: datagram2,
        });
        out.events.push(Event::TunnelUp {
            vpn_addr: vpn,
            remote: Some(via.addr()),
            local_index,
            initiator: false,
            cert_name,
        });
        // If we were also trying to reach this host, our queued packets can go now on the
        // new tunnel once it is confirmed; keep our own attempt running (a race settles by
        // vpn address in `newer_wins`).
        if !has_confirmed_primary {
            self.flush_pending_for(now, vpn, out);
        }
        if self.cfg.lighthouses.contains(&vpn) {
            self.flush_deferred(now, out);
        }
    }

    /// We are the initiator: stage 2 for our pending handshake `idx` arrived.
    fn handshake_stage2(
        &mut self,
        now: Instant,
        via: Via,
        idx: u32,
        datagram: &[u8],
        out: &mut Outputs,
    ) {
        let unix_secs = self.unix_secs(now);
        let Some(p) = self.pending.get_mut(&idx) else {
            return;
        };
        let body = datagram.get(HEADER_LEN..).unwrap_or(&[]);
        let done = match handshake::complete(p, &self.pki, body, unix_secs) {
            Ok(Some(d)) => d,
            // The Noise read failed: maybe noise from someone else; keep trying.
            Ok(None) => return,
            Err(e) => {
                out.events.push(Event::HandshakeRejected {
                    from: via.addr(),
                    reason: e.to_string(),
                });
                if let Some(p) = self.pending.remove(&idx) {
                    self.pending_by_vpn.remove(&p.vpn_addr);
                }
                return;
            }
        };
        let Some(p) = self.pending.remove(&idx) else {
            return;
        };
        self.pending_by_vpn.remove(&p.vpn_addr);
        if done.vpn_addrs.iter().any(|a| self.pki.is_my_addr(a)) {
            return;
        }
        if !done.vpn_addrs.contains(&p.vpn_addr) {
            // The wrong host answered: tell it, block that address and start over.
            let addr = via.addr();
            self.remotes
                .entry(p.vpn_addr)
                .or_default()
                .blocked
                .push(addr);
            let mut tmp = Tunnel {
                local_index: idx,
                vpn_addr: done.vpn_addrs[0],
                remote_index: done.peer_index,
                vpn_addrs: done.vpn_addrs,
                peer_fingerprint: String::new(),
                peer_ca_name: String::new(),
                peer_issuer_hex: String::new(),
                peer_cert: Arc::new(done.peer_cert),
                session: done.session,
                remote: Some(addr),
                last_roam: None,
                initiator: true,
                peer_handshake_time: 0,
                stage1_body: Vec::new(),
                stage2_datagram: None,
                confirmed: true,
                created: now,
                confirmed_at: Some(now),
                traffic_in: false,
                traffic_out: false,
                pending_deletion: false,
                cert_version: p.version,
                recv_errors: 0,
            };
            if let Some(d) = seal_message(&mut tmp, MessageType::CloseTunnel, 0, &[]) {
                out.transmits.push(Transmit {
                    to: addr,
                    payload: d,
                });
            }
            out.events.push(Event::HandshakeRejected {
                from: addr,
                reason: format!("wrong host answered for {}", p.vpn_addr),
            });
            let queued = p.queued;
            if let Some(ni) = self.start_handshake(now, p.vpn_addr, out) {
                if let Some(np) = self.pending.get_mut(&ni) {
                    np.queued = queued;
                }
            }
            return;
        }
        let vpn = p.vpn_addr;
        let tunnel = Tunnel {
            local_index: idx,
            vpn_addr: vpn,
            remote_index: done.peer_index,
            vpn_addrs: reorder_first(done.vpn_addrs, vpn),
            peer_fingerprint: done.peer_cert.fingerprint_hex(),
            peer_ca_name: self.ca_name_of(&done.peer_cert),
            peer_issuer_hex: done.peer_cert.issuer_hex(),
            peer_cert: Arc::new(done.peer_cert),
            session: done.session,
            remote: Some(via.addr()),
            last_roam: None,
            initiator: true,
            peer_handshake_time: done.peer_time,
            stage1_body: Vec::new(),
            stage2_datagram: None,
            confirmed: true,
            created: now,
            confirmed_at: Some(now),
            traffic_in: true,
            traffic_out: false,
            pending_deletion: false,
            cert_version: p.version,
            recv_errors: 0,
        };
        let cert_name = tunnel.peer_cert.name().to_string();
        let promote = match self.hostmap.primary(&vpn).and_then(|i| self.hostmap.get(i)) {
            None => true,
            Some(cur) => self.newer_wins(now, &tunnel, cur),
        };
        let evicted = self.hostmap.insert(tunnel, promote);
        for e in evicted {
            out.events.push(Event::TunnelDown {
                vpn_addr: e.vpn_addr,
                local_index: e.local_index,
                reason: CloseReason::Replaced,
            });
        }
        self.remotes.entry(vpn).or_default().learn(via.addr());
        self.timers.add(
            now + self.cfg.connection_alive_interval,
            Timer::ConnectionCheck { local_index: idx },
        );
        out.events.push(Event::TunnelUp {
            vpn_addr: vpn,
            remote: Some(via.addr()),
            local_index: idx,
            initiator: true,
            cert_name,
        });
        for q in p.queued {
            self.send_queued(now, idx, q, out);
        }
        if self.cfg.lighthouses.contains(&vpn) {
            self.flush_deferred(now, out);
        }
    }

    /// Send what a pending handshake to `vpn` had queued, over the current primary tunnel.
    fn flush_pending_for(&mut self, now: Instant, vpn: IpAddr, out: &mut Outputs) {
        let Some(primary) = self.hostmap.primary(&vpn) else {
            return;
        };
        let Some(pidx) = self.pending_by_vpn.get(&vpn).copied() else {
            return;
        };
        let Some(p) = self.pending.get_mut(&pidx) else {
            return;
        };
        let queued = std::mem::take(&mut p.queued);
        for q in queued {
            self.send_queued(now, primary, q, out);
        }
    }

    fn send_queued(&mut self, now: Instant, idx: u32, q: QueuedPacket, out: &mut Outputs) {
        match q {
            QueuedPacket::Inside(packet) => {
                let Some(t) = self.hostmap.get(idx) else {
                    return;
                };
                let peer = PeerIdentity::of(t);
                match self.filter.check(now, &packet, false, &peer) {
                    Verdict::Allow => {
                        self.send_on_tunnel(idx, MessageType::Message, 0, &packet, out)
                    }
                    Verdict::Drop => {}
                    Verdict::Reject => {
                        if let Some(reply) = crate::filter::reject_reply(&packet) {
                            out.tun.push(reply);
                        }
                    }
                }
            }
            QueuedPacket::Control(t, st, payload) => self.send_on_tunnel(idx, t, st, &payload, out),
        }
    }

    // ------------------------------------------------------------------ timers

    /// Run every timer that is due.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Outputs) {
        while let Some(t) = self.timers.pop_due(now) {
            match t {
                Timer::HandshakeRetry { local_index } => {
                    self.handshake_attempt(now, local_index, true, out)
                }
                Timer::ConnectionCheck { local_index } => {
                    self.connection_check(now, local_index, out)
                }
                Timer::LighthouseUpdate => {
                    self.send_host_updates(now, out);
                    if !self.cfg.lighthouse_interval.is_zero() {
                        self.timers
                            .add(now + self.cfg.lighthouse_interval, Timer::LighthouseUpdate);
                    }
                }
                Timer::Punch { to } => out.transmits.push(Transmit {
                    to,
                    payload: vec![0],
                }),
                Timer::PunchRespond { vpn } => self.send_test_request(now, vpn, &[], out),
            }
        }
    }

    /// Go 1.11's per-tunnel connection check.
    fn connection_check(&mut self, now: Instant, idx: u32, out: &mut Outputs) {
        let unix_secs = self.unix_secs(now);
        let Some(t) = self.hostmap.get(idx) else {
            return;
        };
        let vpn = t.vpn_addr;
        let is_primary = self.hostmap.primary(&vpn) == Some(idx);
        // Certificate still good?
        let cert_check = self.pki.ca_pool().verify(unix_secs, &t.peer_cert);
        if let Err(e) = cert_check {
            let blocklisted = self.pki.ca_pool().is_blocklisted(&t.peer_cert);
            if blocklisted || self.cfg.disconnect_invalid {
                let _ = e;
                self.send_on_tunnel(idx, MessageType::CloseTunnel, 0, &[], out);
                self.remove_tunnel(idx, CloseReason::CertInvalid, out);
                return;
            }
        }
        let Some(t) = self.hostmap.get_mut(idx) else {
            return;
        };
        if t.session.is_exhausted() {
            self.remove_tunnel(idx, CloseReason::CounterExhausted, out);
            return;
        }
        let (tin, tout) = (t.traffic_in, t.traffic_out);
        t.traffic_in = false;
        t.traffic_out = false;
        if !t.confirmed && !is_primary && !tin {
            // An answer to a stage 1 that nobody followed up: a replay or a lost race.
            self.remove_tunnel(idx, CloseReason::Replaced, out);
            return;
        }
        if tin {
            t.pending_deletion = false;
            let needs_rehandshake = t.session.send_counter() >= self.cfg.rehandshake_after_messages;
            if !tout && self.cfg.punchy.punch {
                if let Some(r) = t.remote {
                    out.transmits.push(Transmit {
                        to: r,
                        payload: vec![1],
                    });
                }
            }
            if is_primary && needs_rehandshake && !self.pending_by_vpn.contains_key(&vpn) {
                self.start_rehandshake(now, vpn, out);
            }
            self.timers.add(
                now + self.cfg.connection_alive_interval,
                Timer::ConnectionCheck { local_index: idx },
            );
            return;
        }
        if t.pending_deletion {
            self.remove_tunnel(idx, CloseReason::Dead, out);
            return;
        }
        if !is_primary {
            // A replaced tunnel that went quiet.
            self.remove_tunnel(idx, CloseReason::Replaced, out);
            return;
        }
        if tout {
            t.pending_deletion = true;
            self.send_on_tunnel(idx, MessageType::Test, subtype::TEST_REQUEST, &[], out);
            self.timers.add(
                now + self.cfg.pending_deletion_interval,
                Timer::ConnectionCheck { local_index: idx },
            );
            return;
        }
        if self.cfg.punchy.punch && !self.cfg.lighthouses.contains(&vpn) {
            if let Some(r) = t.remote {
                out.transmits.push(Transmit {
                    to: r,
                    payload: vec![1],
                });
            }
        }
        self.timers.add(
            now + self.cfg.connection_alive_interval,
            Timer::ConnectionCheck { local_index: idx },
        );
    }

    /// Start a new handshake to a host we already have a tunnel with (counter limit, new cert).
    fn start_rehandshake(&mut self, now: Instant, vpn: IpAddr, out: &mut Outputs) {
        if let Some(r) = self
            .hostmap
            .primary(&vpn)
            .and_then(|i| self.hostmap.get(i))
            .and_then(|t| t.remote)
        {
            self.remotes.entry(vpn).or_default().learn(r);
        }
        if let Some(idx) = self.start_handshake(now, vpn, out) {
            // Known address: try at once rather than wait for the timer.
            let has = self.remotes.get(&vpn).is_some_and(|r| !r.is_empty());
            if has {
                self.handshake_attempt(now, idx, false, out);
            }
        }
    }

    // ------------------------------------------------------------------ lighthouse client

    fn is_lighthouse(&self, vpn: &IpAddr) -> bool {
        self.cfg.lighthouses.contains(vpn)
    }

    fn query_lighthouses(&mut self, now: Instant, vpn: IpAddr, out: &mut Outputs) {
        if self.cfg.am_lighthouse || self.is_lighthouse(&vpn) {
            return;
        }
        let lhs = self.cfg.lighthouses.clone();
        for lh in lhs {
            let version = self.version_towards(&lh);
            let msg = lighthouse::host_query(vpn, version);
            self.send_lighthouse_message(now, lh, msg, out);
        }
    }

    /// The certificate version used (or to be used) on the tunnel to `vpn`.
    fn version_towards(&self, vpn: &IpAddr) -> Version {
        self.tunnel_to(vpn)
            .map(|t| t.cert_version)
            .unwrap_or_else(|| self.pki.initiating_version())
    }

    fn send_lighthouse_message(
        &mut self,
        now: Instant,
        lh: IpAddr,
        msg: NebulaMeta,
        out: &mut Outputs,
    ) {
        let bytes = msg.encode_to_vec();
        if let Some(idx) = self.hostmap.primary(&lh) {
            self.send_on_tunnel(idx, MessageType::LightHouse, 0, &bytes, out);
        } else {
            self.deferred
                .push_back((lh, MessageType::LightHouse, 0, bytes));
            while self.deferred.len() > 256 {
                self.deferred.pop_front();
            }
            self.connect(now, lh, out);
        }
    }

    fn flush_deferred(&mut self, _now: Instant, out: &mut Outputs) {
        let items: Vec<_> = self.deferred.drain(..).collect();
        for (vpn, t, st, payload) in items {
            if let Some(idx) = self.hostmap.primary(&vpn) {
                self.send_on_tunnel(idx, t, st, &payload, out);
            } else {
                self.deferred.push_back((vpn, t, st, payload));
            }
        }
    }

    fn send_host_updates(&mut self, now: Instant, out: &mut Outputs) {
        if self.cfg.am_lighthouse {
            return;
        }
        let me = self.pki.vpn_addr();
        let lhs = self.cfg.lighthouses.clone();
        for lh in lhs {
            let version = self.version_towards(&lh);
            let msg = lighthouse::host_update(me, &self.cfg.advertise_addrs, version);
            self.send_lighthouse_message(now, lh, msg, out);
        }
    }

    fn handle_lighthouse(&mut self, now: Instant, idx: u32, payload: &[u8], out: &mut Outputs) {
        let Ok(msg) = NebulaMeta::decode(payload) else {
            return;
        };
        let Some(t) = self.hostmap.get(idx) else {
            return;
        };
        let from_vpn = t.vpn_addrs.clone();
        let learned = t.remote;
        let sender = t.vpn_addr;
        match msg.known_type() {
            Some(NebulaMetaType::HostQuery | NebulaMetaType::HostUpdateNotification)
                if self.cfg.am_lighthouse =>
            {
                if let Some(server) = self.lighthouse_server.as_mut() {
                    let mut replies = Vec::new();
                    server.handle(now, &from_vpn, learned, &msg, &mut replies);
                    for (to, reply) in replies {
                        let bytes = reply.encode_to_vec();
                        if let Some(i) = self.hostmap.primary(&to) {
                            self.send_on_tunnel(i, MessageType::LightHouse, 0, &bytes, out);
                        }
                    }
                }
            }
            Some(NebulaMetaType::HostQueryReply) if self.is_lighthouse(&sender) => {
                let Some((vpn, addrs)) = lighthouse::parse_addresses(&msg) else {
                    return;
                };
                let addrs: Vec<SocketAddr> = addrs
                    .into_iter()
                    .filter(|a| !self.pki.in_my_networks(&a.ip()))
                    .collect();
                self.remotes
                    .entry(vpn)
                    .or_default()
                    .set_from_lighthouse(sender, addrs.clone());
                // Answer at once if the addresses are news to a pending handshake.
                if let Some(pi) = self.pending_by_vpn.get(&vpn).copied() {
                    let fresh = self
                        .pending
                        .get(&pi)
                        .is_some_and(|p| addrs.iter().any(|a| !p.last_addrs.contains(a)));
                    if fresh {
                        self.handshake_attempt(now, pi, false, out);
                    }
                }
            }
            Some(NebulaMetaType::HostPunchNotification) if self.is_lighthouse(&sender) => {
                let Some((vpn, addrs)) = lighthouse::parse_addresses(&msg) else {
                    return;
                };
                for a in addrs {
                    if self.pki.in_my_networks(&a.ip()) {
                        continue;
                    }
                    self.timers
                        .add(now + self.cfg.punchy.delay, Timer::Punch { to: a });
                }
                if self.cfg.punchy.respond {
                    self.timers.add(
                        now + self.cfg.punchy.respond_delay,
                        Timer::PunchRespond { vpn },
                    );
                }
            }
            _ => {}
        }
    }

    /// Borrow the filter (tests and the node's stats).
    pub fn filter(&self) -> &dyn PacketFilter {
        &*self.filter
    }

    /// Debug/test helper: how many tunnels and pending handshakes exist.
    pub fn counts(&self) -> (usize, usize) {
        (self.hostmap.len(), self.pending.len())
    }

    /// For tests: the tunnel with this local index.
    pub fn tunnel(&self, idx: u32) -> Option<&Tunnel> {
        self.hostmap.get(idx)
    }

    /// Peer certificate of the primary tunnel to `vpn`.
    pub fn peer_cert(&self, vpn: &IpAddr) -> Option<&Certificate> {
        self.tunnel_to(vpn).map(|t| &*t.peer_cert)
    }
}

/// Seal one message for a tunnel into a fresh datagram (control plane).
fn seal_message(t: &mut Tunnel, mt: MessageType, st: u8, payload: &[u8]) -> Option<Vec<u8>> {
    let counter = t.session.next_counter().ok()?;
    let mut d = vec![0u8; HEADER_LEN + payload.len() + TAG_LEN];
    Header::new(mt, st, t.remote_index, counter)
        .encode(&mut d[..HEADER_LEN])
        .ok()?;
    d[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
    t.session
        .send
        .seal_frame(counter, &mut d, HEADER_LEN)
        .ok()?;
    Some(d)
}

fn reorder_first(mut addrs: Vec<IpAddr>, first: IpAddr) -> Vec<IpAddr> {
    addrs.retain(|a| *a != first);
    addrs.insert(0, first);
    addrs
}

fn is_private(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}
