//! The engine: one sans-IO state machine per node. Datagrams, inside packets and time go in;
//! transmits, packets for the TUN, events and the next deadline come out.
//!
//! The state has owners, each a type with its own tests: the host map ([`HostMap`]: tunnels,
//! their data-plane view, the stage-1 cache, and the relay table), the pending handshakes
//! ([`PendingTable`]), the timers ([`Timers`]) and the address book ([`RemoteList`] per host).
//! The engine's behaviour is split by concern into child modules, each an `impl Engine` block:
//! `demux` (whose datagram, index allocation, recvError), `inside` (the outbound path and every
//! send), `handshakes` (both roles), `tunnels` (confirm, roam, connection checks, rehandshake),
//! `lighthouse_client` and `relays`. The per-packet work itself is [`crate::dataplane`]'s, shared
//! with the workers' fast path.

mod demux;
mod handshakes;
mod inside;
pub mod inspect;
mod lighthouse_client;
mod metrics;
mod relays;
mod tunnels;

use std::collections::HashMap;
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
use crate::dataplane::{DataTable, Publisher, Refusal, Routing};
use crate::filter::PacketFilter;
use crate::handshake::{self, PendingTable, QueueRefusal, QueuedPacket};
pub use crate::hostmap::ROAMING_SUPPRESS;
use crate::hostmap::{
    HostMap, NewTunnel, Relay, RelayKind, RelayState, RelayTable, Roam, Tunnel,
    MAX_TUNNELS_PER_VPN_ADDR, RELAY_SETUP_TIMEOUT,
};
use crate::lighthouse::{self, LighthouseServer};
pub use crate::outcome::{
    CloseReason, DropReason, Event, InsideOutcome, Outputs, OutsideOutcome, RelayRefusal, Transmit,
};
use crate::pki::Pki;
use crate::remotes::{CalculatedRemote, RemoteAllowList, RemoteList};
use crate::stats::{lighthouse_kind, EngineCounters};
use crate::timers::{Timer, Timers};
pub use metrics::StatsSnapshot;

/// Most routes to unsafe networks (`tun.unsafe_routes` and routes learned from the kernel).
pub const MAX_UNSAFE_ROUTES: usize = 8192;

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
    /// `punchy.target_all_remotes`: the connection check's keepalive punches go to every address
    /// we know for the host (its whole remote list), not only the tunnel's current one; and while
    /// we only send to a host, its other addresses get a punch too (Go 1.11's `SendPunchToAll`).
    pub target_all_remotes: bool,
}

impl Default for PunchyConfig {
    fn default() -> Self {
        PunchyConfig {
            punch: false,
            respond: false,
            delay: Duration::from_secs(1),
            respond_delay: Duration::from_secs(5),
            target_all_remotes: false,
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
    /// Bytes of packets queued behind all pending handshakes together (ours; Go bounds only the
    /// count per handshake): past it, packets for hosts without a tunnel are dropped
    /// ([`DropReason::HandshakeQueueBytes`]). Default [`handshake::MAX_QUEUED_BYTES`].
    pub max_queued_bytes: usize,
    /// `counters.requery_every_packets`: re-query the lighthouses every this many packets. 0 = never.
    pub requery_every_packets: u32,
    /// `timers.requery_wait_duration`: at most one such re-query per peer per this span.
    pub requery_wait: Duration,
    /// `tunnels.drop_inactive`: close (with closeTunnel) a primary tunnel that carried no
    /// authenticated packet in either direction for `inactivity_timeout`.
    pub drop_inactive: bool,
    /// `tunnels.inactivity_timeout` (Go: 10 minutes).
    pub inactivity_timeout: Duration,
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
            max_queued_bytes: handshake::MAX_QUEUED_BYTES,
            requery_every_packets: 5000,
            requery_wait: Duration::from_secs(60),
            drop_inactive: false,
            inactivity_timeout: Duration::from_secs(600),
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
    /// Makes the data-plane snapshots (knows what changed since the last one).
    publisher: Publisher,
    lighthouse_server: Option<Box<dyn LighthouseServer>>,
    /// Wall clock anchor: `unix_nanos` at `mono`.
    wall: (Instant, u64),
    started: bool,
    /// Lighthouse messages waiting for a tunnel to their lighthouse (the client's own queue).
    deferred: lighthouse::Deferred,
    /// As a lighthouse: how many fully decoded messages each tunnel may send us.
    update_budget: lighthouse::UpdateBudget,
    /// Relay indexes, ours and the ones we forward.
    relays: RelayTable,
    /// Bumped by every `reload_pki`; tunnels remember the generation they were made with.
    pki_generation: u64,
    /// Punches (and `punchy.respond` test requests) queued from lighthouse notifications (at
    /// most [`MAX_QUEUED_PUNCHES`]).
    queued_punches: usize,
    /// What Go's metrics count that only the engine sees.
    counters: EngineCounters,
}

/// Most hole punches waiting for their `punchy.delay` at once. A notification names at most
/// [`crate::remotes::MAX_REMOTES_PER_FAMILY`] addresses per family; this bounds what a flood of
/// notifications can queue (Go punches the same way, and its punch list is capped as well).
pub const MAX_QUEUED_PUNCHES: usize = 4096;

impl Engine {
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
            remotes.entry(*vpn).or_default().set_static(addrs.clone());
        }
        let pending =
            PendingTable::with_queue_budget(cfg.max_pending_handshakes, cfg.max_queued_bytes);
        let mut timers = Timers::default();
        timers.add_after(
            now,
            crate::timers::CONNTRACK_SWEEP_INTERVAL,
            Timer::ConntrackSweep,
        );
        Engine {
            cfg,
            pki,
            rng,
            hostmap: HostMap::default(),
            pending,
            remotes,
            queued_punches: 0,
            timers,
            filter: Arc::from(filter),
            publisher: Publisher::default(),
            lighthouse_server: None,
            wall: (now, unix_nanos),
            started: false,
            deferred: lighthouse::Deferred::default(),
            update_budget: lighthouse::UpdateBudget::default(),
            relays: RelayTable::default(),
            pki_generation: 0,
            counters: EngineCounters::default(),
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

    /// Bytes of packets queued behind pending handshakes now (at most `max_queued_bytes`).
    pub fn queued_bytes(&self) -> usize {
        self.pending.queued_bytes()
    }

    /// Packets dropped so far because the queued-packet byte budget was spent.
    pub fn queue_budget_drops(&self) -> u64 {
        self.pending.budget_refusals()
    }

    pub fn remotes_for(&self, vpn: &IpAddr) -> Option<&RemoteList> {
        self.remotes.get(vpn)
    }

    /// How many vpn addresses we keep underlay addresses for.
    pub fn remote_lists(&self) -> usize {
        self.remotes.len()
    }

    /// Hole punches waiting for their delay.
    pub fn queued_punches(&self) -> usize {
        self.queued_punches
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
        self.publisher.routing_changed();
    }

    /// Apply a re-read configuration (SIGHUP): the one way to change a running engine's settings.
    ///
    /// What changes: our credentials (tunnels made with the old ones re-handshake at their next
    /// connection check; peers that no longer verify are closed then), the firewall rules (open
    /// connections are re-checked on their next packet), the lighthouse and static host lists,
    /// `lighthouse.remote_allow_list`/`calculated_remotes` (from the next address offered),
    /// `relay.*` (relays already set up keep working until their tunnels go), `preferred_ranges`,
    /// `punchy.*`, `tunnels.*` and `listen.send_recv_error`/`accept_recv_error`. Everything else in
    /// `new.config` (cipher, timers, handshake settings, `am_lighthouse`, advertised addresses)
    /// keeps its start-up value, as in Go.
    pub fn reload(&mut self, now: Instant, new: Reload, out: &mut Outputs) {
        let Reload {
            config,
            pki,
            firewall,
        } = new;
        let old_rules = self.filter.rules_hash_fnv();
        let new_rules = firewall.rules_hash_fnv();
        if let Some(f) = self.filter.with_rules(firewall) {
            self.filter = f;
            if old_rules != Some(new_rules) {
                self.counters.rules_version += 1;
            }
        }
        self.pki = pki;
        self.pki_generation += 1;
        self.publisher.routing_changed();
        for r in self.remotes.values_mut() {
            r.set_static(Vec::new());
        }
        for (vpn, addrs) in &config.static_host_map {
            self.remotes
                .entry(*vpn)
                .or_default()
                .set_static(addrs.clone());
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
        c.drop_inactive = config.drop_inactive;
        c.inactivity_timeout = config.inactivity_timeout;
        c.send_recv_error = config.send_recv_error;
        c.accept_recv_error = config.accept_recv_error;
        if lighthouses_changed && self.started {
            self.send_host_updates(now, out);
        }
    }

    /// A `static_host_map` host's names resolved to a new set of addresses (the node re-resolves
    /// them every `static_map.cadence`): `vpn`'s static addresses become `addrs`. Hosts that are
    /// not in `static_host_map` are left alone (a late answer for an entry a reload removed).
    /// The next handshake to the host uses them; a working tunnel stays where it is.
    pub fn set_static_addrs(&mut self, vpn: IpAddr, addrs: Vec<SocketAddr>) {
        let Some(entry) = self.cfg.static_host_map.get_mut(&vpn) else {
            return;
        };
        entry.clone_from(&addrs);
        self.remotes.entry(vpn).or_default().set_static(addrs);
    }

    /// A route learned from the kernel (`tun.use_system_route_table`): traffic to `net` goes to
    /// the host `gateway` (`Some`), or the route to `net` is gone (`None`), whichever way it was
    /// configured, as Go 1.11 does. Returns false (and changes nothing) when a new prefix would
    /// take the route table past [`MAX_UNSAFE_ROUTES`].
    pub fn set_system_route(&mut self, net: IpNet, gateway: Option<IpAddr>) -> bool {
        let routes = &mut self.cfg.unsafe_routes;
        let at = routes.iter().position(|(n, _)| *n == net);
        match (at, gateway) {
            (Some(i), Some(g)) => routes[i].1 = g,
            (None, Some(g)) => {
                if routes.len() >= MAX_UNSAFE_ROUTES {
                    return false;
                }
                routes.push((net, g));
            }
            (Some(i), None) => {
                routes.swap_remove(i);
            }
            (None, None) => return true,
        }
        self.publisher.routing_changed();
        true
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
        let (pki, cfg, filter) = (&self.pki, &self.cfg, &self.filter);
        self.publisher
            .publish(self.hostmap.generation(), self.hostmap.data(), || Routing {
                networks: pki.networks().to_vec(),
                unsafe_routes: cfg.unsafe_routes.clone(),
                filter: Arc::clone(filter),
                try_promote_every: cfg.try_promote_every,
                requery_every: cfg.requery_every_packets,
            })
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
                    .add_after(now, self.cfg.lighthouse_interval, Timer::LighthouseUpdate);
            }
        }
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

    /// As a lighthouse: messages refused because their tunnel sent more than its budget of
    /// host updates ([`lighthouse::UpdateBudget`]).
    pub fn lighthouse_budget_drops(&self) -> u64 {
        self.update_budget.dropped()
    }

    /// Seal `payload` as a `(mt, st)` message on the primary tunnel to `vpn` and queue it, exactly
    /// as the engine's own control messages go out. For tools and tests that speak the protocol
    /// on purpose (the hostile-member namespace test); returns false if there is no tunnel.
    pub fn send_message(
        &mut self,
        vpn: IpAddr,
        mt: MessageType,
        st: u8,
        payload: &[u8],
        out: &mut Outputs,
    ) -> bool {
        let Some(idx) = self.hostmap.primary(&vpn) else {
            return false;
        };
        let before = out.transmits.len();
        self.send_on_tunnel(idx, mt, st, payload, out);
        out.transmits.len() > before
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
        self.tunnel_to(vpn).map(|t| &t.peer.cert)
    }
}
