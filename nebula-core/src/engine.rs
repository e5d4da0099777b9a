//! The engine: one sans-IO state machine per node. Datagrams, inside packets and time go in;
//! transmits, packets for the TUN, events and the next deadline come out. Relays live here too.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use nebula_cert::cert::Certificate;
use nebula_cert::Version;
use prost::Message as _;
use proto::control::{NebulaControl, NebulaControlType, RelayEnds};
use proto::header::{subtype, Header, MessageType, HEADER_LEN};
use proto::lighthouse::{AddrEncoding, NebulaMeta, NebulaMetaType};
use rand_core::CryptoRngCore;

use crate::aead::{CipherKind, Session, TAG_LEN};
use crate::dataplane::{DataTable, Refusal, Routing};
use crate::filter::PacketFilter;
use crate::handshake::{self, PendingTable, QueuedPacket, MAX_QUEUED_PACKETS};
pub use crate::hostmap::ROAMING_SUPPRESS;
use crate::hostmap::{
    HostMap, NewTunnel, Relay, RelayKind, RelayState, RelayTable, Roam, Tunnel,
    MAX_TUNNELS_PER_VPN_ADDR,
};
use crate::lighthouse::{self, LighthouseServer};
pub use crate::outcome::{
    CloseReason, DropReason, Event, InsideOutcome, Outputs, OutsideOutcome, Transmit,
};
use crate::pki::Pki;
use crate::remotes::{CalculatedRemote, RemoteAllowList, RemoteList};
use crate::timers::{Timer, Timers};

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
    /// `lighthouse.remote_allow_list` / `remote_allow_ranges`.
    pub remote_allow_list: RemoteAllowList,
    /// `lighthouse.calculated_remotes`.
    pub calculated_remotes: Vec<CalculatedRemote>,
    /// `relay.relays`: hosts that may relay for us (reported to the lighthouses).
    pub relays: Vec<IpAddr>,
    /// `relay.am_relay`: forward relay frames for others.
    pub am_relay: bool,
    /// `relay.use_relays`: reach peers through the relays they advertise (never when `am_relay`).
    pub use_relays: bool,
    /// `counters.try_promote`: every this many packets to a peer not on a preferred address (or
    /// only relayed), probe its other addresses with test requests. 0 = never.
    pub try_promote_every: u32,
    /// `counters.requery_every_packets`: re-query the lighthouses every this many packets. 0 = never.
    pub requery_every_packets: u32,
    /// `timers.requery_wait_duration`: at most one such re-query per peer per this span.
    pub requery_wait: Duration,
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
            remote_allow_list: RemoteAllowList::default(),
            calculated_remotes: Vec::new(),
            relays: Vec::new(),
            am_relay: false,
            use_relays: true,
            try_promote_every: 1000,
            requery_every_packets: 5000,
            requery_wait: Duration::from_secs(60),
        }
    }
}

/// What a SIGHUP hands to [`Engine::reload`]: the settings, credentials and firewall built from
/// the re-read config, exactly as at start-up.
pub struct Reload {
    pub config: EngineConfig,
    pub pki: Pki,
    pub firewall: crate::firewall::Firewall,
}

/// Where a packet came from: straight off the UDP socket, or out of a relay frame.
#[derive(Clone, Copy, Debug)]
enum Via {
    Udp(SocketAddr),
    /// Unwrapped from a relay frame that `hop` sent us on our terminal relay index `relay`.
    Relay {
        hop: IpAddr,
        relay: u32,
    },
}

impl Via {
    /// The UDP source, `None` for relayed packets (which never set or move a remote).
    fn udp(self) -> Option<SocketAddr> {
        match self {
            Via::Udp(a) => Some(a),
            Via::Relay { .. } => None,
        }
    }

    /// An address for events and logs (unspecified for relayed packets).
    fn log_addr(self) -> SocketAddr {
        self.udp().unwrap_or(SocketAddr::new(
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            0,
        ))
    }

    /// The relay hosts a tunnel made from this packet is reached through.
    fn relays(self) -> Vec<IpAddr> {
        match self {
            Via::Udp(_) => Vec::new(),
            Via::Relay { hop, .. } => vec![hop],
        }
    }
}

/// Where an inside packet goes.
#[derive(Clone, Copy, Debug)]
enum Route {
    Direct(SocketAddr),
    /// Through the hop tunnel `hop_index` (to `to`), on the hop's relay index `relay_remote`.
    Relay {
        hop_index: u32,
        relay_remote: u32,
        to: SocketAddr,
    },
    Nowhere,
}

/// The protocol engine of one node.
pub struct Engine {
    cfg: EngineConfig,
    pki: Pki,
    rng: Box<dyn CryptoRngCore + Send>,
    hostmap: HostMap,
    pending: PendingTable,
    remotes: HashMap<IpAddr, RemoteList>,
    timers: Timers,
    filter: Arc<dyn PacketFilter>,
    /// The firewall or our networks changed since the last [`Engine::data_table`] (host map
    /// changes are told by its generation).
    table_dirty: bool,
    /// The host map's generation the last table was made from.
    table_hostmap_generation: u64,
    /// Bumped each time a new data table is made.
    table_generation: u64,
    /// Networks, routes and firewall of the tables (rebuilt only when `table_dirty`).
    routing: Option<Arc<Routing>>,
    lighthouse_server: Option<Box<dyn LighthouseServer>>,
    /// Wall clock anchor: `unix_nanos` at `mono`.
    wall: (Instant, u64),
    started: bool,
    /// Lighthouse messages waiting for a tunnel: (vpn, type, plaintext).
    deferred: VecDeque<(IpAddr, MessageType, u8, Vec<u8>)>,
    /// Relay indexes, ours and the ones we forward.
    relays: RelayTable,
    /// Bumped by every `reload_pki`; tunnels remember the generation they were made with.
    pki_generation: u64,
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
        let pending = PendingTable::new(cfg.max_pending_handshakes);
        Engine {
            cfg,
            pki,
            rng,
            hostmap: HostMap::default(),
            pending,
            remotes,
            timers: Timers::default(),
            filter: Arc::from(filter),
            table_dirty: true,
            table_hostmap_generation: 0,
            table_generation: 0,
            routing: None,
            lighthouse_server: None,
            wall: (now, unix_nanos),
            started: false,
            deferred: VecDeque::new(),
            relays: RelayTable::default(),
            pki_generation: 0,
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
        self.filter = Arc::from(filter);
        self.table_dirty = true;
    }

    /// Apply a re-read configuration (SIGHUP): the one way to change a running engine's settings.
    ///
    /// What changes: our credentials (tunnels made with the old ones re-handshake at their next
    /// connection check; peers that no longer verify are closed then), the firewall rules (open
    /// connections are re-checked on their next packet), the lighthouse and static host lists,
    /// `lighthouse.remote_allow_list`/`calculated_remotes` (from the next address offered),
    /// `relay.*` (relays already set up keep working until their tunnels go), `preferred_ranges`,
    /// `punchy.*` and `listen.send_recv_error`/`accept_recv_error`. Everything else in
    /// `new.config` (cipher, timers, handshake settings, `am_lighthouse`, advertised addresses)
    /// keeps its start-up value, as in Go.
    pub fn reload(&mut self, now: Instant, new: Reload, out: &mut Outputs) {
        let Reload {
            config,
            pki,
            firewall,
        } = new;
        if let Some(f) = self.filter.with_rules(firewall) {
            self.filter = f;
        }
        self.pki = pki;
        self.pki_generation += 1;
        self.table_dirty = true;
        for r in self.remotes.values_mut() {
            r.static_addrs.clear();
        }
        for (vpn, addrs) in &config.static_host_map {
            self.remotes.entry(*vpn).or_default().static_addrs = addrs.clone();
        }
        let lighthouses_changed = config.lighthouses != self.cfg.lighthouses;
        let c = &mut self.cfg;
        c.lighthouses = config.lighthouses;
        c.static_host_map = config.static_host_map;
        c.remote_allow_list = config.remote_allow_list;
        c.calculated_remotes = config.calculated_remotes;
        c.relays = if config.am_relay {
            Vec::new()
        } else {
            config.relays
        };
        c.am_relay = config.am_relay;
        c.use_relays = config.use_relays && !config.am_relay;
        c.preferred_ranges = config.preferred_ranges;
        c.punchy = config.punchy;
        c.send_recv_error = config.send_recv_error;
        c.accept_recv_error = config.accept_recv_error;
        if lighthouses_changed && self.started {
            self.send_host_updates(now, out);
        }
    }

    fn ca_name_of(&self, cert: &Certificate) -> String {
        self.pki
            .ca_pool()
            .get_ca_for_cert(cert)
            .map(|ca| ca.name().to_string())
            .unwrap_or_default()
    }

    /// Update the underlay addresses we advertise (the node learned its local addresses).
    pub fn set_advertise_addrs(&mut self, addrs: Vec<SocketAddr>) {
        self.cfg.advertise_addrs = addrs;
    }

    /// The relay table (tests, diagnostics).
    pub fn relays(&self) -> &RelayTable {
        &self.relays
    }

    /// A new data-plane snapshot if anything in it changed since the last call (tunnels, their
    /// addresses, primaries, the firewall, our networks); `None` if the last one is still right.
    /// O(1) in the number of tunnels: the host map keeps the table's maps up to date entry by
    /// entry, and a snapshot shares them.
    pub fn data_table(&mut self) -> Option<Arc<DataTable>> {
        if !self.table_dirty && self.hostmap.generation() == self.table_hostmap_generation {
            return None;
        }
        if self.table_dirty || self.routing.is_none() {
            self.routing = Some(Arc::new(Routing {
                networks: self.pki.networks().to_vec(),
                unsafe_routes: self.cfg.unsafe_routes.clone(),
                filter: Arc::clone(&self.filter),
                try_promote_every: self.cfg.try_promote_every,
                requery_every: self.cfg.requery_every_packets,
            }));
        }
        self.table_dirty = false;
        self.table_hostmap_generation = self.hostmap.generation();
        self.table_generation += 1;
        let routing = Arc::clone(self.routing.as_ref()?);
        Some(Arc::new(DataTable::new(
            self.table_generation,
            self.hostmap.data(),
            routing,
        )))
    }

    /// The data plane sent the `count`th TUN packet on tunnel `local_index` and that count is
    /// due for path promotion or a lighthouse re-query ([`crate::dataplane::FastInside::Send`]).
    pub fn sent_from_tun(&mut self, now: Instant, local_index: u32, count: u32, out: &mut Outputs) {
        self.try_promote_best(now, local_index, count, out);
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
        let vpn = match crate::dataplane::route(self.pki.networks(), &self.cfg.unsafe_routes, &dst)
        {
            Ok(vpn) => vpn,
            Err(reason) => return InsideOutcome::Dropped(reason),
        };
        let Some(idx) = self.hostmap.primary(&vpn) else {
            // No tunnel: queue the packet and start (or continue) a handshake.
            let packet = buf[HEADER_LEN..HEADER_LEN + len].to_vec();
            return self.queue_for_handshake(now, vpn, QueuedPacket::Inside(packet), out);
        };
        let route = match self.hostmap.get(idx) {
            None => return InsideOutcome::Dropped(DropReason::NoRoute),
            Some(t) => match t.remote() {
                Some(to) => Route::Direct(to),
                None => self.relay_route(t),
            },
        };
        // Where the sealed message sits: at the front, or one header further for a relay frame.
        let at = match route {
            Route::Direct(_) => 0,
            Route::Relay { .. } => {
                if buf.len() < total + HEADER_LEN + TAG_LEN {
                    return InsideOutcome::Dropped(DropReason::BufferTooSmall);
                }
                buf.copy_within(HEADER_LEN..HEADER_LEN + len, 2 * HEADER_LEN);
                HEADER_LEN
            }
            Route::Nowhere => {
                // Relayed, but the relay is gone: count it as outbound traffic so the connection
                // check notices the silence and retires the tunnel (as Go does).
                if let Some(t) = self.hostmap.get(idx) {
                    t.session.mark_out();
                }
                return InsideOutcome::Dropped(DropReason::NoRoute);
            }
        };
        let Some(t) = self.hostmap.get(idx) else {
            return InsideOutcome::Dropped(DropReason::NoRoute);
        };
        let frame = &mut buf[at..at + total];
        let sealed = crate::dataplane::outbound(
            &*self.filter,
            now,
            &t.session,
            t.remote_index,
            &t.peer_identity(),
            frame,
        );
        if let Err(refusal) = sealed {
            if let Refusal::Firewall { reject: true, .. } = refusal {
                let packet = &buf[at + HEADER_LEN..at + HEADER_LEN + len];
                if let Some(reply) = crate::filter::reject_reply(packet) {
                    out.tun.push(reply);
                }
            }
            return InsideOutcome::Dropped(refusal.reason());
        }
        let promote = t.session.count_sent_from_tun();
        let outcome = match route {
            Route::Direct(to) => InsideOutcome::Send { to, len: total },
            Route::Relay {
                hop_index,
                relay_remote,
                to,
            } => match self.wrap_relay_in_place(hop_index, relay_remote, buf, total) {
                Some(len) => InsideOutcome::Send { to, len },
                None => InsideOutcome::Dropped(DropReason::NoRoute),
            },
            Route::Nowhere => InsideOutcome::Dropped(DropReason::NoRoute),
        };
        let every = self.cfg.try_promote_every;
        let requery = self.cfg.requery_every_packets;
        if (every != 0 && promote.is_multiple_of(every))
            || (requery != 0 && promote.is_multiple_of(requery))
        {
            self.try_promote_best(now, idx, promote, out);
        }
        outcome
    }

    /// How to reach a tunnel that has no underlay address: the first of its relays with an
    /// established relay index and a direct tunnel to the relay.
    fn relay_route(&self, t: &Tunnel) -> Route {
        for hop in &t.relays {
            let Some(r) = self.relays.find(*hop, t.vpn_addr) else {
                continue;
            };
            if r.state != RelayState::Established || r.kind != RelayKind::Terminal {
                continue;
            }
            let Some(hi) = self.hostmap.primary(hop) else {
                continue;
            };
            if let Some(to) = self.hostmap.get(hi).and_then(|h| h.remote()) {
                return Route::Relay {
                    hop_index: hi,
                    relay_remote: r.remote_index,
                    to,
                };
            }
        }
        Route::Nowhere
    }

    /// `buf[HEADER_LEN..HEADER_LEN + inner_len]` holds a complete packet for the far end: put a
    /// relay header for the hop tunnel in front and its tag after. Returns the frame length.
    fn wrap_relay_in_place(
        &mut self,
        hop_index: u32,
        relay_remote: u32,
        buf: &mut [u8],
        inner_len: usize,
    ) -> Option<usize> {
        let total = HEADER_LEN + inner_len + TAG_LEN;
        if buf.len() < total {
            return None;
        }
        let hop = self.hostmap.get(hop_index)?;
        relay_frame_in_place(&hop.session, relay_remote, &mut buf[..total])?;
        Some(total)
    }

    /// Every `counters.try_promote` packets: probe better paths (Go's `TryPromoteBest`); every
    /// `counters.requery_every_packets`: ask the lighthouses again, at most once per
    /// `timers.requery_wait_duration`.
    fn try_promote_best(&mut self, now: Instant, idx: u32, count: u32, out: &mut Outputs) {
        if self.cfg.am_lighthouse {
            return;
        }
        let Some(t) = self.hostmap.get(idx) else {
            return;
        };
        let vpn = t.vpn_addr;
        let every = self.cfg.try_promote_every;
        if every != 0 && count.is_multiple_of(every) {
            self.probe_paths(idx, out);
        }
        let requery = self.cfg.requery_every_packets;
        if requery != 0 && count.is_multiple_of(requery) {
            let Some(t) = self.hostmap.get_mut(idx) else {
                return;
            };
            if t.next_requery.is_some_and(|n| now < n) {
                return;
            }
            t.next_requery = Some(now + self.cfg.requery_wait);
            self.query_lighthouses(now, vpn, out);
        }
    }

    /// Send a test request straight to the peer's other addresses: its preferred-range ones if
    /// the tunnel is direct but not on a preferred range, all of them if it is relayed. The peer
    /// roams to where the probe came from and answers there, and so do we.
    fn probe_paths(&mut self, idx: u32, out: &mut Outputs) {
        let Some(t) = self.hostmap.get(idx) else {
            return;
        };
        let vpn = t.vpn_addr;
        let remote = t.remote();
        let preferred = &self.cfg.preferred_ranges;
        if remote.is_some_and(|r| preferred.iter().any(|n| n.contains(&r.ip()))) {
            return;
        }
        let addrs: Vec<SocketAddr> = self
            .remotes
            .get(&vpn)
            .map(|r| r.addrs(preferred))
            .unwrap_or_default()
            .into_iter()
            .filter(|a| Some(*a) != remote)
            .filter(|a| remote.is_none() || preferred.iter().any(|n| n.contains(&a.ip())))
            .filter(|a| !self.pki.in_my_networks(&a.ip()))
            .collect();
        for a in addrs {
            let Some(t) = self.hostmap.get_mut(idx) else {
                return;
            };
            if let Some(d) = seal_message(t, MessageType::Test, subtype::TEST_REQUEST, &[]) {
                out.transmits.push(Transmit { to: a, payload: d });
            }
        }
    }

    fn queue_for_handshake(
        &mut self,
        now: Instant,
        vpn: IpAddr,
        packet: QueuedPacket,
        out: &mut Outputs,
    ) -> InsideOutcome {
        let idx = match self.pending.index_for(&vpn) {
            Some(i) => i,
            None => match self.start_handshake(now, vpn, out) {
                Some(i) => i,
                None => return InsideOutcome::Dropped(DropReason::HandshakeQueueFull),
            },
        };
        if let Some(p) = self.pending.get_mut(idx) {
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
        if self.pending.index_for(&vpn).is_none() {
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
        let Some(tun) = self.hostmap.get(idx) else {
            return;
        };
        if tun.remote().is_none() && tun.relays.is_empty() {
            return;
        }
        let Some(d) = seal_message(tun, t, st, payload) else {
            return;
        };
        if t != MessageType::CloseTunnel {
            tun.session.mark_out();
        }
        self.send_sealed(idx, d, out);
    }

    /// Send a datagram sealed for tunnel `idx`: to the peer's address, or through the first of
    /// its relays that is up.
    fn send_sealed(&mut self, idx: u32, datagram: Vec<u8>, out: &mut Outputs) {
        let Some(tun) = self.hostmap.get(idx) else {
            return;
        };
        if let Some(to) = tun.remote() {
            out.transmits.push(Transmit {
                to,
                payload: datagram,
            });
            return;
        }
        // Only reachable through a relay.
        let vpn = tun.vpn_addr;
        let hops = tun.relays.clone();
        for hop in hops {
            let Some(r) = self.relays.find(hop, vpn) else {
                continue;
            };
            if r.kind != RelayKind::Terminal {
                continue;
            }
            if self.send_through_relay(r.local_index, &datagram, out) {
                return;
            }
        }
    }

    /// Wrap `inner` (a complete Nebula packet for the far end) in a relay frame on the hop tunnel
    /// of our relay index `relay_index`, and send it to the hop. False if the relay is not usable.
    fn send_through_relay(&mut self, relay_index: u32, inner: &[u8], out: &mut Outputs) -> bool {
        let Some(r) = self.relays.get(relay_index) else {
            return false;
        };
        if r.state != RelayState::Established {
            return false;
        }
        let (hop, relay_remote) = (r.hop, r.remote_index);
        let Some(hi) = self.hostmap.primary(&hop) else {
            return false;
        };
        let Some(t) = self.hostmap.get_mut(hi) else {
            return false;
        };
        let Some(to) = t.remote() else {
            return false;
        };
        let Some(d) = seal_relay_frame(t, relay_remote, inner) else {
            return false;
        };
        out.transmits.push(Transmit { to, payload: d });
        true
    }

    /// Send a datagram back the way a packet came: to its UDP source or through its relay.
    fn send_via(&mut self, via: Via, payload: &[u8], out: &mut Outputs) {
        match via {
            Via::Udp(to) => out.transmits.push(Transmit {
                to,
                payload: payload.to_vec(),
            }),
            Via::Relay { relay, .. } => {
                self.send_through_relay(relay, payload, out);
            }
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
        if h.msg_type == MessageType::Message && h.subtype == subtype::MESSAGE_RELAY {
            return self.handle_relay_frame(now, via, &h, datagram, out);
        }
        let idx = h.remote_index;
        let Some(t) = self.hostmap.get(idx) else {
            self.maybe_send_recv_error(via, idx, out);
            return OutsideOutcome::Dropped(DropReason::UnknownIndex);
        };
        if (h.msg_type, h.subtype) == (MessageType::Message, subtype::MESSAGE_NONE) {
            // The same per-packet core as the workers' fast path.
            let opened = crate::dataplane::inbound(
                &*self.filter,
                now,
                &t.session,
                &t.peer_identity(),
                h.message_counter,
                datagram,
            );
            return match opened {
                Ok((start, end)) => {
                    self.authenticated(now, idx, via, out);
                    OutsideOutcome::Tun { start, end }
                }
                Err((refusal, Some((start, end)))) => {
                    self.authenticated(now, idx, via, out);
                    if let Refusal::Firewall { reject: true, .. } = refusal {
                        if let Some(reply) = crate::filter::reject_reply(&datagram[start..end]) {
                            self.send_on_tunnel(idx, MessageType::Message, 0, &reply, out);
                        }
                    }
                    OutsideOutcome::Dropped(refusal.reason())
                }
                Err((refusal, None)) => OutsideOutcome::Dropped(refusal.reason()),
            };
        }
        let (start, end) = match crate::dataplane::open(&t.session, h.message_counter, datagram) {
            Ok(range) => range,
            Err(reason) => return OutsideOutcome::Dropped(reason),
        };
        // Authenticated from here on.
        let vpn = t.vpn_addr;
        self.authenticated(now, idx, via, out);
        match (h.msg_type, h.subtype) {
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
            (MessageType::Control, _) => {
                let msg = datagram[start..end].to_vec();
                self.handle_control(now, idx, &msg, out);
                OutsideOutcome::Handled
            }
            _ => OutsideOutcome::Dropped(DropReason::BadHeader),
        }
    }

    /// An authenticated packet arrived on tunnel `idx`: note the traffic, confirm the tunnel,
    /// follow a roaming peer.
    fn authenticated(&mut self, now: Instant, idx: u32, via: Via, out: &mut Outputs) {
        let Some(t) = self.hostmap.get(idx) else {
            return;
        };
        t.session.mark_in();
        let newly_confirmed = self.hostmap.confirm(idx, now);
        self.roam(now, idx, via, out);
        if newly_confirmed {
            self.on_confirmed(now, idx, out);
        }
    }

    /// A relay frame (message subtype 1): verify it with the hop tunnel's key, then either handle
    /// the inner packet as ours (terminal) or re-wrap it for the next hop (forwarding).
    fn handle_relay_frame(
        &mut self,
        now: Instant,
        via: Via,
        h: &Header,
        datagram: &mut [u8],
        out: &mut Outputs,
    ) -> OutsideOutcome {
        // Relays do not chain: a relay frame inside a relay frame is dropped.
        if via.udp().is_none() {
            return OutsideOutcome::Dropped(DropReason::BadHeader);
        }
        let Some(relay) = self.relays.get(h.remote_index).cloned() else {
            self.maybe_send_recv_error(via, h.remote_index, out);
            return OutsideOutcome::Dropped(DropReason::UnknownIndex);
        };
        if datagram.len() < 2 * HEADER_LEN + TAG_LEN {
            return OutsideOutcome::Dropped(DropReason::TooShort);
        }
        // The frame is sealed with the key of (normally the primary) tunnel to the hop.
        let mut verified = None;
        let mut replay = false;
        for k in 0..MAX_TUNNELS_PER_VPN_ADDR {
            let Some(ti) = self.hostmap.tunnels_for(&relay.hop).get(k).copied() else {
                break;
            };
            let Some(t) = self.hostmap.get_mut(ti) else {
                continue;
            };
            match t.session.open_ad_only_frame(h.message_counter, datagram) {
                Ok(_) => {
                    verified = Some(ti);
                    break;
                }
                Err(crate::aead::AeadError::Replay) => replay = true,
                Err(_) => {}
            }
        }
        let Some(hop_index) = verified else {
            return OutsideOutcome::Dropped(if replay {
                DropReason::Replay
            } else {
                DropReason::Decrypt
            });
        };
        self.authenticated(now, hop_index, via, out);
        let end = datagram.len() - TAG_LEN;
        match relay.kind {
            RelayKind::Terminal => {
                let inner = &mut datagram[HEADER_LEN..end];
                let Ok(ih) = Header::parse(inner) else {
                    return OutsideOutcome::Dropped(DropReason::TooShort);
                };
                if ih.check_strict().is_err() {
                    return OutsideOutcome::Dropped(DropReason::BadHeader);
                }
                let inner_via = Via::Relay {
                    hop: relay.hop,
                    relay: relay.local_index,
                };
                match self.handle_packet(now, inner_via, ih, inner, out) {
                    OutsideOutcome::Tun { start, end } => OutsideOutcome::Tun {
                        start: start + HEADER_LEN,
                        end: end + HEADER_LEN,
                    },
                    other => other,
                }
            }
            RelayKind::Forwarding => {
                // The same relay seen from the other hop: frames go out on its index.
                let Some(next) = self.relays.find(relay.peer, relay.hop) else {
                    return OutsideOutcome::Dropped(DropReason::NoRoute);
                };
                if next.kind != RelayKind::Forwarding || next.state != RelayState::Established {
                    return OutsideOutcome::Dropped(DropReason::NoRoute);
                }
                let next_index = next.local_index;
                if self.send_through_relay(next_index, &datagram[HEADER_LEN..end], out) {
                    OutsideOutcome::Handled
                } else {
                    OutsideOutcome::Dropped(DropReason::NoRoute)
                }
            }
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
        if !cur.is_confirmed() {
            return true;
        }
        if !new.is_confirmed() {
            return false;
        }
        let cur_at = cur.confirmed_at().unwrap_or(cur.created);
        let new_at = new.confirmed_at().unwrap_or(now);
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

    /// Follow a peer whose authenticated packet came from a new address (rate-limited per
    /// tunnel by the host map: see [`HostMap::roam`]).
    fn roam(&mut self, now: Instant, idx: u32, via: Via, out: &mut Outputs) {
        // Relayed packets never move a tunnel.
        let Via::Udp(from) = via else {
            return;
        };
        let Some(t) = self.hostmap.get(idx) else {
            return;
        };
        if t.remote() == Some(from)
            || !self
                .cfg
                .remote_allow_list
                .allows_all(&t.vpn_addrs, from.ip())
        {
            return;
        }
        let vpn = t.vpn_addr;
        if let Roam::Moved(old) = self.hostmap.roam(idx, from, now) {
            self.remotes.entry(vpn).or_default().learn(from);
            out.events.push(Event::Roamed {
                vpn_addr: vpn,
                from: old,
                to: from,
            });
        }
    }

    fn maybe_send_recv_error(&mut self, via: Via, index: u32, out: &mut Outputs) {
        let send = match (self.cfg.send_recv_error, via) {
            (RecvErrorPolicy::Never, _) => false,
            (RecvErrorPolicy::Always, _) => true,
            (RecvErrorPolicy::Private, Via::Udp(to)) => is_private(&to.ip()),
            (RecvErrorPolicy::Private, Via::Relay { .. }) => false,
        };
        if send {
            let h = Header::new(MessageType::RecvError, 0, index, 0);
            self.send_via(via, &h.to_bytes(), out);
        }
    }

    fn handle_recv_error(&mut self, now: Instant, via: Via, h: &Header, out: &mut Outputs) {
        if !self.cfg.accept_recv_error {
            return;
        }
        let Some(idx) = self.hostmap.by_remote_index(h.remote_index) else {
            // Maybe a relay index the hop no longer knows: drop that relay.
            if let Via::Udp(from) = via {
                let stale: Vec<u32> = self
                    .relays
                    .with_remote_index(h.remote_index)
                    .iter()
                    .filter_map(|i| self.relays.get(*i))
                    .filter(|r| self.tunnel_to(&r.hop).and_then(|t| t.remote()) == Some(from))
                    .map(|r| r.local_index)
                    .collect();
                for r in stale {
                    self.remove_relay(r);
                }
            }
            return;
        };
        let Some(t) = self.hostmap.get_mut(idx) else {
            return;
        };
        let same_path = match via {
            Via::Udp(a) => t.remote() == Some(a),
            Via::Relay { hop, .. } => t.remote().is_none() && t.relays.contains(&hop),
        };
        if !same_path {
            return;
        }
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
                // Relays riding on this host, or leading to it, go with it.
                for r in self.relays.involving(t.vpn_addr) {
                    self.remove_relay(r);
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

    /// Drop a relay index; a forwarding relay takes its other half with it.
    fn remove_relay(&mut self, local_index: u32) {
        if let Some(r) = self.relays.remove(local_index) {
            if r.kind == RelayKind::Forwarding {
                let other = self
                    .relays
                    .find(r.peer, r.hop)
                    .filter(|o| o.kind == RelayKind::Forwarding)
                    .map(|o| o.local_index);
                if let Some(o) = other {
                    self.relays.remove(o);
                }
            }
        }
    }

    // ------------------------------------------------------------------ handshakes

    /// Begin a handshake to `vpn` as initiator. Returns the pending local index.
    fn start_handshake(&mut self, now: Instant, vpn: IpAddr, out: &mut Outputs) -> Option<u32> {
        if let Some(i) = self.pending.index_for(&vpn) {
            return Some(i);
        }
        if self.pending.is_full() || self.pki.is_my_addr(&vpn) {
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
        if self.pending.insert(pending).is_err() {
            return None;
        }
        self.timers.add(
            now + self.cfg.handshake_try_interval,
            Timer::HandshakeRetry { local_index },
        );
        // Static hosts are tried at once; so are addresses guessed by `calculated_remotes`.
        // Everyone else waits for the lighthouse.
        let has_static = self
            .remotes
            .get(&vpn)
            .is_some_and(|r| !r.static_addrs.is_empty());
        let calculated = if has_static {
            Vec::new()
        } else {
            self.calculated_remotes_for(vpn)
        };
        let has_calculated = !calculated.is_empty();
        if has_calculated {
            self.remotes.entry(vpn).or_default().calculated = calculated;
        }
        if has_static || has_calculated {
            self.handshake_attempt(now, local_index, false, out);
        }
        self.query_lighthouses(now, vpn, out);
        Some(local_index)
    }

    /// Addresses `lighthouse.calculated_remotes` guesses for `vpn`, filtered like lighthouse answers.
    fn calculated_remotes_for(&self, vpn: IpAddr) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = Vec::new();
        for c in &self.cfg.calculated_remotes {
            if let Some(a) = c.apply(vpn) {
                if self.should_add(vpn, a) && !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        out
    }

    /// May `addr` be used as an underlay address of `vpn` (allow list, not inside our overlay)?
    fn should_add(&self, vpn: IpAddr, addr: SocketAddr) -> bool {
        self.cfg.remote_allow_list.allows(vpn, addr.ip()) && !self.pki.in_my_networks(&addr.ip())
    }

    fn allocate_relay_index(&mut self) -> Option<u32> {
        for _ in 0..32 {
            let i = self.rng.next_u32();
            if i != 0 && !self.relays.contains_index(i) {
                return Some(i);
            }
        }
        None
    }

    fn allocate_index(&mut self) -> Option<u32> {
        for _ in 0..32 {
            let i = self.rng.next_u32();
            if i != 0 && !self.hostmap.contains_index(i) && !self.pending.contains_index(i) {
                return Some(i);
            }
        }
        None
    }

    /// One handshake attempt: send stage 1 to every known address.
    fn handshake_attempt(&mut self, now: Instant, idx: u32, from_timer: bool, out: &mut Outputs) {
        let Some(p) = self.pending.get_mut(idx) else {
            return;
        };
        let vpn = p.vpn_addr;
        if from_timer && p.attempts >= self.cfg.handshake_retries {
            self.pending.remove(idx);
            out.events.push(Event::HandshakeTimedOut { vpn_addr: vpn });
            // Our relays to that host may be stale (a relay restarted): ask afresh next time.
            let stale: Vec<u32> = self
                .relays
                .involving(vpn)
                .into_iter()
                .filter_map(|i| self.relays.get(i))
                .filter(|r| r.kind == RelayKind::Terminal && r.peer == vpn)
                .map(|r| r.local_index)
                .collect();
            for r in stale {
                self.remove_relay(r);
            }
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
        let stage1 = p.stage1.clone();
        self.relay_handshake(now, vpn, &stage1, out);
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

    /// The relay half of a handshake attempt (`handshake_manager.go`): for each relay the target
    /// advertises, make sure we have a tunnel to the relay, then a relay index through it, then
    /// send the stage 1 through it.
    fn relay_handshake(&mut self, now: Instant, target: IpAddr, stage1: &[u8], out: &mut Outputs) {
        if !self.cfg.use_relays || self.cfg.am_relay {
            return;
        }
        let relays = self
            .remotes
            .get(&target)
            .map(|r| r.relays())
            .unwrap_or_default();
        for relay in relays {
            if relay == target || self.pki.is_my_addr(&relay) {
                continue;
            }
            let direct = self.tunnel_to(&relay).is_some_and(|t| t.remote().is_some());
            if !direct {
                self.connect(now, relay, out);
                continue;
            }
            match self
                .relays
                .find(relay, target)
                .map(|r| (r.local_index, r.kind, r.state))
            {
                None => {
                    let Some(index) = self.allocate_relay_index() else {
                        continue;
                    };
                    self.relays.insert(Relay {
                        local_index: index,
                        remote_index: 0,
                        hop: relay,
                        peer: target,
                        kind: RelayKind::Terminal,
                        state: RelayState::Requested,
                    });
                    let me = self.pki.vpn_addr();
                    self.send_relay_control(
                        relay,
                        NebulaControlType::CreateRelayRequest,
                        index,
                        0,
                        me,
                        target,
                        out,
                    );
                }
                Some((index, RelayKind::Terminal, RelayState::Requested)) => {
                    // Ask again, in case the request or its answer was lost.
                    let me = self.pki.vpn_addr();
                    self.send_relay_control(
                        relay,
                        NebulaControlType::CreateRelayRequest,
                        index,
                        0,
                        me,
                        target,
                        out,
                    );
                }
                Some((index, RelayKind::Terminal, RelayState::Established)) => {
                    self.send_through_relay(index, stage1, out);
                }
                Some(_) => {}
            }
        }
    }

    /// Send a CreateRelayRequest/Response on the tunnel to `hop`, in the address encoding that
    /// tunnel's certificate version calls for (v1 fields for v1 tunnels, as 1.6.1 needs).
    #[allow(clippy::too_many_arguments)]
    fn send_relay_control(
        &mut self,
        hop: IpAddr,
        kind: NebulaControlType,
        initiator_index: u32,
        responder_index: u32,
        from: IpAddr,
        to: IpAddr,
        out: &mut Outputs,
    ) {
        let Some(hi) = self.hostmap.primary(&hop) else {
            return;
        };
        let Some(version) = self.hostmap.get(hi).map(|t| t.cert_version) else {
            return;
        };
        let encoding = if version == Version::V1 && from.is_ipv4() && to.is_ipv4() {
            AddrEncoding::V1
        } else {
            AddrEncoding::V2
        };
        let mut msg = NebulaControl {
            msg_type: kind.into(),
            initiator_relay_index: initiator_index,
            responder_relay_index: responder_index,
            ..NebulaControl::default()
        };
        if msg.set_relay_ends(from, to, encoding).is_err() {
            return;
        }
        let bytes = msg.encode_to_vec();
        self.send_on_tunnel(hi, MessageType::Control, 0, &bytes, out);
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
        if let Via::Udp(a) = via {
            if !self.cfg.remote_allow_list.allows_base(a.ip()) {
                return;
            }
        }
        // A retransmit of a stage 1 we already answered: send the same stage 2 again.
        let seen = self
            .hostmap
            .by_stage1(body)
            .map(|t| t.stage2_datagram.clone());
        if let Some(s2) = seen {
            if let Some(s2) = s2 {
                self.send_via(via, &s2, out);
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
                    from: via.log_addr(),
                    reason: e.to_string(),
                });
                return;
            }
        };
        let vpn = resp.vpn_addrs[0];
        if resp.vpn_addrs.iter().any(|a| self.pki.is_my_addr(a)) {
            out.events.push(Event::HandshakeRejected {
                from: via.log_addr(),
                reason: "refusing to handshake with myself".into(),
            });
            return;
        }
        if let Via::Udp(a) = via {
            if !self
                .cfg
                .remote_allow_list
                .allows_all(&resp.vpn_addrs, a.ip())
            {
                out.events.push(Event::HandshakeRejected {
                    from: a,
                    reason: format!("lighthouse.remote_allow_list denies {a} for {vpn}"),
                });
                return;
            }
        }
        // An existing, working tunnel with a handshake at least as new wins ("handshake too old"),
        // unless we initiated it (as 1.11).
        if let Some(cur) = self.hostmap.primary(&vpn).and_then(|i| self.hostmap.get(i)) {
            if !cur.initiator && cur.peer_handshake_time >= resp.peer_time && cur.is_confirmed() {
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
        let tunnel = Tunnel::new(NewTunnel {
            local_index,
            remote_index: resp.peer_index,
            vpn_addrs: resp.vpn_addrs,
            peer_ca_name: self.ca_name_of(&resp.peer_cert),
            peer_cert: resp.peer_cert,
            session: resp.session,
            remote: via.udp(),
            relays: via.relays(),
            initiator: false,
            peer_handshake_time: resp.peer_time,
            stage1_body: body.to_vec(),
            stage2_datagram: Some(datagram2.clone()),
            cert_version: resp.our_version,
            pki_generation: self.pki_generation,
            now,
        });
        let cert_name = tunnel.peer_cert.name().to_string();
        // A tunnel made by answering a stage 1 does not displace a confirmed one: stage 1 is not
        // authenticated and may be a replay. It becomes primary once the peer proves its keys.
        let has_confirmed_primary = self
            .hostmap
            .primary(&vpn)
            .and_then(|i| self.hostmap.get(i))
            .is_some_and(|t| t.is_confirmed());
        self.install_tunnel(now, tunnel, !has_confirmed_primary, via, out);
        self.send_via(via, &datagram2, out);
        out.events.push(Event::TunnelUp {
            vpn_addr: vpn,
            remote: via.udp(),
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
        let Some(p) = self.pending.get_mut(idx) else {
            return;
        };
        // The address must be allowed for the host we are dialling (checked before the Noise
        // read, as Go does, so a denied answer leaves the attempt alive).
        if let Via::Udp(a) = via {
            if !self.cfg.remote_allow_list.allows(p.vpn_addr, a.ip()) {
                return;
            }
        }
        let body = datagram.get(HEADER_LEN..).unwrap_or(&[]);
        let done = match handshake::complete(p, &self.pki, body, unix_secs) {
            Ok(Some(d)) => d,
            // The Noise read failed: maybe noise from someone else; keep trying.
            Ok(None) => return,
            Err(e) => {
                out.events.push(Event::HandshakeRejected {
                    from: via.log_addr(),
                    reason: e.to_string(),
                });
                self.pending.remove(idx);
                return;
            }
        };
        let Some(p) = self.pending.remove(idx) else {
            return;
        };
        if done.vpn_addrs.iter().any(|a| self.pki.is_my_addr(a)) {
            return;
        }
        if !done.vpn_addrs.contains(&p.vpn_addr) {
            // The wrong host answered: tell it, block that address and start over.
            let addr = via.log_addr();
            if let Via::Udp(a) = via {
                self.remotes.entry(p.vpn_addr).or_default().blocked.push(a);
            }
            // Sealed with the session the wrong host just agreed, on the index it gave.
            if let Some(d) = crate::dataplane::seal_datagram(
                &done.session,
                done.peer_index,
                MessageType::CloseTunnel,
                0,
                &[],
            ) {
                self.send_via(via, &d, out);
            }
            out.events.push(Event::HandshakeRejected {
                from: addr,
                reason: format!("wrong host answered for {}", p.vpn_addr),
            });
            let queued = p.queued;
            if let Some(ni) = self.start_handshake(now, p.vpn_addr, out) {
                if let Some(np) = self.pending.get_mut(ni) {
                    np.queued = queued;
                }
            }
            return;
        }
        let vpn = p.vpn_addr;
        let tunnel = Tunnel::new(NewTunnel {
            local_index: idx,
            remote_index: done.peer_index,
            vpn_addrs: reorder_first(done.vpn_addrs, vpn),
            peer_ca_name: self.ca_name_of(&done.peer_cert),
            peer_cert: done.peer_cert,
            session: done.session,
            remote: via.udp(),
            relays: via.relays(),
            initiator: true,
            peer_handshake_time: done.peer_time,
            stage1_body: Vec::new(),
            stage2_datagram: None,
            cert_version: p.version,
            pki_generation: self.pki_generation,
            now,
        });
        let cert_name = tunnel.peer_cert.name().to_string();
        let replacing = self.hostmap.primary(&vpn).is_some();
        let promote = match self.hostmap.primary(&vpn).and_then(|i| self.hostmap.get(i)) {
            None => true,
            Some(cur) => self.newer_wins(now, &tunnel, cur),
        };
        self.install_tunnel(now, tunnel, promote, via, out);
        out.events.push(Event::TunnelUp {
            vpn_addr: vpn,
            remote: via.udp(),
            local_index: idx,
            initiator: true,
            cert_name,
        });
        let nothing_queued = p.queued.is_empty();
        for q in p.queued {
            self.send_queued(now, idx, q, out);
        }
        if replacing && nothing_queued {
            // A re-handshake: prove our keys on the new tunnel at once, so the peer (which never
            // lets an unconfirmed tunnel replace a working one) moves over too.
            self.send_on_tunnel(idx, MessageType::Test, subtype::TEST_REQUEST, &[], out);
        }
        if self.cfg.lighthouses.contains(&vpn) {
            self.flush_deferred(now, out);
        }
    }

    /// Put a finished tunnel in the host map (as primary or behind the current one) and start its
    /// upkeep: connection checks, and the peer's address learned (or a direct probe if relayed).
    fn install_tunnel(
        &mut self,
        now: Instant,
        tunnel: Tunnel,
        primary: bool,
        via: Via,
        out: &mut Outputs,
    ) {
        let (vpn, local_index) = (tunnel.vpn_addr, tunnel.local_index);
        for e in self.hostmap.insert(tunnel, primary) {
            out.events.push(Event::TunnelDown {
                vpn_addr: e.vpn_addr,
                local_index: e.local_index,
                reason: CloseReason::Replaced,
            });
        }
        if let Via::Udp(a) = via {
            self.remotes.entry(vpn).or_default().learn(a);
        } else {
            self.schedule_direct_probe(now, local_index);
        }
        self.timers.add(
            now + self.cfg.connection_alive_interval,
            Timer::ConnectionCheck { local_index },
        );
    }

    /// Send what a pending handshake to `vpn` had queued, over the current primary tunnel.
    fn flush_pending_for(&mut self, now: Instant, vpn: IpAddr, out: &mut Outputs) {
        let Some(primary) = self.hostmap.primary(&vpn) else {
            return;
        };
        let Some(p) = self.pending.for_vpn_mut(&vpn) else {
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
                let mut frame = vec![0u8; HEADER_LEN + packet.len() + TAG_LEN];
                frame[HEADER_LEN..HEADER_LEN + packet.len()].copy_from_slice(&packet);
                let sealed = crate::dataplane::outbound(
                    &*self.filter,
                    now,
                    &t.session,
                    t.remote_index,
                    &t.peer_identity(),
                    &mut frame,
                );
                match sealed {
                    Ok(()) => self.send_sealed(idx, frame, out),
                    Err(Refusal::Firewall { reject: true, .. }) => {
                        if let Some(reply) = crate::filter::reject_reply(&packet) {
                            out.tun.push(reply);
                        }
                    }
                    Err(_) => {}
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
                Timer::TryDirect { local_index } => {
                    if self
                        .hostmap
                        .get(local_index)
                        .is_some_and(|t| t.remote().is_none())
                    {
                        self.probe_paths(local_index, out);
                    }
                }
            }
        }
    }

    /// A tunnel just came up through a relay: try the direct addresses once the lighthouse's punch
    /// notification has had time to open the far NAT (`punchy.delay`), and again a bit later.
    fn schedule_direct_probe(&mut self, now: Instant, local_index: u32) {
        let first = self.cfg.punchy.delay + Duration::from_millis(250);
        self.timers
            .add(now + first, Timer::TryDirect { local_index });
        self.timers
            .add(now + first * 3, Timer::TryDirect { local_index });
    }

    /// Go 1.11's per-tunnel connection check.
    fn connection_check(&mut self, now: Instant, idx: u32, out: &mut Outputs) {
        let unix_secs = self.unix_secs(now);
        let Some(t) = self.hostmap.get(idx) else {
            return;
        };
        let vpn = t.vpn_addr;
        let is_primary = self.hostmap.primary(&vpn) == Some(idx);
        // Certificate still good? Its signature was checked by the handshake; only a new CA
        // pool (a reload) makes that worth doing again.
        let cert_check = if t.pki_generation == self.pki_generation {
            self.pki.ca_pool().reverify(unix_secs, &t.peer_cert)
        } else {
            self.pki.ca_pool().verify(unix_secs, &t.peer_cert)
        };
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
        let (tin, tout) = t.session.take_traffic();
        if !t.is_confirmed() && !is_primary && !tin {
            // An answer to a stage 1 that nobody followed up: a replay or a lost race.
            self.remove_tunnel(idx, CloseReason::Replaced, out);
            return;
        }
        if is_primary && (t.remote().is_none() || !self.cfg.preferred_ranges.is_empty()) {
            // Relayed, or maybe not on a preferred range: keep looking for a better path.
            self.probe_paths(idx, out);
        }
        let Some(t) = self.hostmap.get_mut(idx) else {
            return;
        };
        if tin {
            t.pending_deletion = false;
            let needs_rehandshake = t.session.send_counter() >= self.cfg.rehandshake_after_messages
                || t.pki_generation != self.pki_generation;
            if !tout && self.cfg.punchy.punch {
                if let Some(r) = t.remote() {
                    out.transmits.push(Transmit {
                        to: r,
                        payload: vec![1],
                    });
                }
            }
            if is_primary && needs_rehandshake && self.pending.index_for(&vpn).is_none() {
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
            // Ask where the host went, so the next handshake has fresh addresses.
            if self.hostmap.primary(&vpn).is_none() {
                self.query_lighthouses(now, vpn, out);
            }
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
            if let Some(r) = t.remote() {
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
            .and_then(|t| t.remote())
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
        let relays: Vec<IpAddr> = if self.cfg.am_relay {
            Vec::new()
        } else {
            self.cfg.relays.clone()
        };
        for lh in lhs {
            let version = self.version_towards(&lh);
            let msg = lighthouse::host_update(me, &self.cfg.advertise_addrs, &relays, version);
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
        let learned = t.remote();
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
                if self.pki.is_my_addr(&vpn) {
                    return;
                }
                let addrs: Vec<SocketAddr> = addrs
                    .into_iter()
                    .filter(|a| self.should_add(vpn, *a))
                    .collect();
                let relays: Vec<IpAddr> = lighthouse::parse_relays(&msg)
                    .into_iter()
                    .filter(|r| *r != vpn && !self.pki.is_my_addr(r))
                    .collect();
                let entry = self.remotes.entry(vpn).or_default();
                let new_relays = relays.iter().any(|r| !entry.relays().contains(r));
                entry.set_from_lighthouse(sender, addrs.clone());
                entry.set_relays_from_lighthouse(sender, relays);
                // Answer at once if the addresses (or relays) are news to a pending handshake.
                if let Some(pi) = self.pending.index_for(&vpn) {
                    let fresh = self
                        .pending
                        .get(pi)
                        .is_some_and(|p| addrs.iter().any(|a| !p.last_addrs.contains(a)));
                    if fresh || new_relays {
                        self.handshake_attempt(now, pi, false, out);
                    }
                }
            }
            Some(NebulaMetaType::HostPunchNotification) if self.is_lighthouse(&sender) => {
                let Some((vpn, addrs)) = lighthouse::parse_addresses(&msg) else {
                    return;
                };
                for a in addrs {
                    if !self.should_add(vpn, a) {
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

    // ------------------------------------------------------------------ relays

    /// A NebulaControl message on tunnel `idx` (relay setup, `relay_manager.go`).
    fn handle_control(&mut self, now: Instant, idx: u32, payload: &[u8], out: &mut Outputs) {
        let Ok(msg) = NebulaControl::decode(payload) else {
            return;
        };
        let Some(ends) = msg.relay_ends() else {
            return;
        };
        let Some(hop) = self.hostmap.get(idx).map(|t| t.vpn_addr) else {
            return;
        };
        match msg.known_type() {
            Some(NebulaControlType::CreateRelayRequest) => {
                self.relay_request(now, hop, msg.initiator_relay_index, ends, out)
            }
            Some(NebulaControlType::CreateRelayResponse) => self.relay_response(
                hop,
                msg.initiator_relay_index,
                msg.responder_relay_index,
                out,
            ),
            _ => {}
        }
    }

    /// `hop` asks for a relay from `ends.from` to `ends.to` on its index `init`.
    fn relay_request(
        &mut self,
        now: Instant,
        hop: IpAddr,
        init: u32,
        ends: RelayEnds,
        out: &mut Outputs,
    ) {
        if self.pki.is_my_addr(&ends.from) || init == 0 {
            return;
        }
        if self.pki.is_my_addr(&ends.to) {
            // We are the target: our end of the relay is ready as soon as we answer.
            let from = ends.from;
            let local = match self.relays.find(hop, from).cloned() {
                Some(r)
                    if r.kind == RelayKind::Terminal
                        && (r.state == RelayState::Requested || r.remote_index == init) =>
                {
                    self.relays
                        .update(r.local_index, init, RelayState::Established);
                    r.local_index
                }
                _ => {
                    let Some(local) = self.allocate_relay_index() else {
                        return;
                    };
                    self.relays.insert(Relay {
                        local_index: local,
                        remote_index: init,
                        hop,
                        peer: from,
                        kind: RelayKind::Terminal,
                        state: RelayState::Established,
                    });
                    local
                }
            };
            self.send_relay_control(
                hop,
                NebulaControlType::CreateRelayResponse,
                init,
                local,
                from,
                ends.to,
                out,
            );
            return;
        }
        // Someone wants us to relay.
        if !self.cfg.am_relay {
            return;
        }
        let target = ends.to;
        if target == hop {
            return;
        }
        let Some(ti) = self.hostmap.primary(&target) else {
            // No tunnel to the target yet: make one; the requester's retry will find it.
            self.connect(now, target, out);
            return;
        };
        if self.hostmap.get(ti).and_then(|t| t.remote()).is_none() {
            // Only relay to hosts we reach directly (relays do not chain).
            return;
        }
        // Our index on the target's tunnel.
        let fwd = match self.relays.find(target, hop).cloned() {
            Some(r) if r.kind == RelayKind::Forwarding => r.local_index,
            Some(_) => return,
            None => {
                let Some(i) = self.allocate_relay_index() else {
                    return;
                };
                self.relays.insert(Relay {
                    local_index: i,
                    remote_index: 0,
                    hop: target,
                    peer: hop,
                    kind: RelayKind::Forwarding,
                    state: RelayState::Requested,
                });
                i
            }
        };
        // The requester's side, on its tunnel, answering to its index.
        match self.relays.find(hop, target).cloned() {
            Some(r) if r.kind == RelayKind::Forwarding => {
                if r.remote_index != init {
                    self.relays
                        .update(r.local_index, init, RelayState::PeerRequested);
                }
            }
            Some(_) => return,
            None => {
                let Some(i) = self.allocate_relay_index() else {
                    return;
                };
                self.relays.insert(Relay {
                    local_index: i,
                    remote_index: init,
                    hop,
                    peer: target,
                    kind: RelayKind::Forwarding,
                    state: RelayState::PeerRequested,
                });
            }
        }
        // Always (re)ask the target, as 1.11 does: its answer completes both halves.
        self.send_relay_control(
            target,
            NebulaControlType::CreateRelayRequest,
            fwd,
            0,
            hop,
            target,
            out,
        );
    }

    /// `hop` answered our CreateRelayRequest `init` with its index `resp`.
    fn relay_response(&mut self, hop: IpAddr, init: u32, resp: u32, out: &mut Outputs) {
        let Some(r) = self.relays.get(init).cloned() else {
            return;
        };
        if r.hop != hop || resp == 0 {
            return;
        }
        self.relays.update(init, resp, RelayState::Established);
        match r.kind {
            RelayKind::Terminal => {
                // Our own path to r.peer is ready: send the pending stage 1 through it now.
                let stage1 = self.pending.for_vpn(&r.peer).map(|p| p.stage1.clone());
                if let Some(s1) = stage1 {
                    self.send_through_relay(r.local_index, &s1, out);
                }
            }
            RelayKind::Forwarding => {
                // We are the middle: tell the requester its relay is ready.
                let Some(req) = self.relays.find(r.peer, r.hop).cloned() else {
                    return;
                };
                if req.kind != RelayKind::Forwarding || req.state == RelayState::Requested {
                    return;
                }
                self.relays
                    .update(req.local_index, req.remote_index, RelayState::Established);
                self.send_relay_control(
                    r.peer,
                    NebulaControlType::CreateRelayResponse,
                    req.remote_index,
                    req.local_index,
                    r.peer,
                    r.hop,
                    out,
                );
            }
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

/// A relay frame on hop tunnel `t`: header (message/relay, the hop's relay index, the tunnel's
/// next counter) ‖ `inner` in the clear ‖ tag over both (PROTOCOL.md §6).
fn seal_relay_frame(t: &mut Tunnel, relay_remote: u32, inner: &[u8]) -> Option<Vec<u8>> {
    let mut d = vec![0u8; HEADER_LEN + inner.len() + TAG_LEN];
    d[HEADER_LEN..HEADER_LEN + inner.len()].copy_from_slice(inner);
    relay_frame_in_place(&t.session, relay_remote, &mut d)?;
    Some(d)
}

/// Make `frame` (`header room || inner packet || TAG_LEN room`) a relay frame on the hop tunnel's
/// `session`: a relay header for the hop's index `relay_remote`, and a tag over header and packet
/// (relay frames are authenticated, not encrypted).
fn relay_frame_in_place(session: &Session, relay_remote: u32, frame: &mut [u8]) -> Option<()> {
    let tag_at = frame
        .len()
        .checked_sub(TAG_LEN)
        .filter(|t| *t >= HEADER_LEN)?;
    let counter = session.next_counter().ok()?;
    Header::new(
        MessageType::Message,
        subtype::MESSAGE_RELAY,
        relay_remote,
        counter,
    )
    .encode(&mut frame[..HEADER_LEN])
    .ok()?;
    let tag = session.send.seal_ad_only(counter, &frame[..tag_at]).ok()?;
    frame[tag_at..].copy_from_slice(&tag);
    session.mark_out();
    Some(())
}

/// Seal one message for a tunnel into a fresh datagram (control plane).
fn seal_message(t: &Tunnel, mt: MessageType, st: u8, payload: &[u8]) -> Option<Vec<u8>> {
    crate::dataplane::seal_datagram(&t.session, t.remote_index, mt, st, payload)
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
