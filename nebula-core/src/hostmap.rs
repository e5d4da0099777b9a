//! The host map: established tunnels by local index, by the peer's remote index and by vpn address
//! (several per address, the first primary), and the relay table (Go's `Relays` + `RelayState`).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nebula_cert::cert::Certificate;

use crate::aead::Session;
use crate::dataplane::{DataIndex, DataTunnel};
use crate::filter::{Peer, PeerIdentity};
use crate::outcome::RelayRefusal;
use crate::pki::CaLabel;
use crate::stats::ReplayCounts;

/// Most tunnels kept per vpn address (as Go's `MaxHostInfosPerVpnIp`).
pub const MAX_TUNNELS_PER_VPN_ADDR: usize = 5;

/// How long after a peer moves we refuse to move it back to where it was (Go: 2 s).
pub const ROAMING_SUPPRESS: Duration = Duration::from_secs(2);
/// A tunnel moves at most [`ROAMS_PER_WINDOW`] times per this span; further moves wait for the
/// next window (a peer cycling source ports cannot make us rewrite tables or logs per packet).
pub const ROAM_WINDOW: Duration = Duration::from_secs(5);
/// See [`ROAM_WINDOW`].
pub const ROAMS_PER_WINDOW: u8 = 4;

/// Everything a finished handshake knows about the new tunnel ([`Tunnel::new`]).
pub struct NewTunnel {
    pub local_index: u32,
    pub remote_index: u32,
    /// The peer's vpn addresses, the one that identifies it first.
    pub vpn_addrs: Vec<IpAddr>,
    pub peer_cert: Certificate,
    /// The CA that issued `peer_cert` (shared by every tunnel of that CA, see [`Pki::ca_label`]).
    ///
    /// [`Pki::ca_label`]: crate::pki::Pki::ca_label
    pub peer_ca: Arc<CaLabel>,
    pub session: Session,
    /// The underlay address the handshake came over; `None` when relayed.
    pub remote: Option<SocketAddr>,
    pub relays: Vec<IpAddr>,
    pub initiator: bool,
    pub peer_handshake_time: u64,
    /// Responder only: the stage 1 that made the tunnel (see [`stage1_digest`]) and our
    /// stage-2 datagram, to answer retransmits until the peer confirms the tunnel.
    pub stage1: Option<[u8; 32]>,
    pub stage2_datagram: Option<Vec<u8>>,
    pub cert_version: nebula_cert::Version,
    pub pki_generation: u64,
    pub now: Instant,
}

/// A tunnel's roaming state (see [`HostMap::roam`]).
struct Roaming {
    /// Where the peer was before the last roam, and when it moved (for roaming suppression).
    last: Option<(SocketAddr, Instant)>,
    /// Start of the current roaming window and the moves made in it.
    window: (Instant, u8),
}

/// What a responder tunnel keeps to answer a retransmitted stage 1 until the peer confirms it.
struct Stage1Answer {
    /// Digest of the stage 1 (without header) that created the tunnel, to spot retransmits.
    digest: Option<[u8; 32]>,
    /// Our stage-2 datagram, re-sent when the initiator retransmits its stage 1.
    stage2: Option<Vec<u8>>,
}

impl Stage1Answer {
    fn new(digest: Option<[u8; 32]>, stage2: Option<Vec<u8>>) -> Option<Box<Stage1Answer>> {
        (digest.is_some() || stage2.is_some()).then(|| Box::new(Stage1Answer { digest, stage2 }))
    }
}

/// One established tunnel (Go's `HostInfo` + `ConnectionState`).
pub struct Tunnel {
    pub local_index: u32,
    /// The vpn address that identifies the peer (the first of `peer.vpn_addrs`).
    pub vpn_addr: IpAddr,
    pub remote_index: u32,
    /// The peer's certificate, vpn addresses and CA.
    pub peer: Arc<Peer>,
    /// Keys, send counter, replay window and traffic flags (shared with the data-plane workers).
    pub session: Arc<Session>,
    /// Current underlay address of the peer; `None` while only reachable through a relay.
    /// Changed only by [`HostMap::roam`] / [`HostMap::set_remote`].
    remote: Option<SocketAddr>,
    /// Roaming limits, from the first move on (most tunnels never move).
    roaming: Option<Box<Roaming>>,
    /// True if we sent stage 1 of the handshake that made this tunnel.
    pub initiator: bool,
    /// The peer's handshake time field (nanoseconds since the Unix epoch).
    pub peer_handshake_time: u64,
    /// Responder only, until the peer confirms the tunnel: what answers a retransmitted stage 1.
    answer: Option<Box<Stage1Answer>>,
    /// When the peer proved it holds the session keys (an authenticated packet arrived, or we
    /// initiated and read its stage 2). Unconfirmed tunnels are never primary.
    /// Set only by [`HostMap::confirm`].
    confirmed_at: Option<Instant>,
    /// When this tunnel was installed.
    pub created: Instant,
    /// A test request was sent for lack of inbound traffic; no reply by the next check = dead.
    pub pending_deletion: bool,
    /// Whole seconds after `created` of the last connection check that found traffic on this
    /// tunnel (either direction); 0 until then. What `tunnels.drop_inactive` measures idleness
    /// from (see [`Tunnel::last_used`]). Seconds in a `u32`: the lighthouse holds one per host.
    last_used_secs: u32,
    /// The certificate version we used for this tunnel.
    pub cert_version: nebula_cert::Version,
    /// Relay hosts (vpn addresses) this peer is reached through while `remote` is `None`.
    pub relays: Box<[IpAddr]>,
    /// No lighthouse re-query for this peer before this time (`timers.requery_wait_duration`).
    pub next_requery: Option<Instant>,
    /// The engine's credential generation when this tunnel was made (a SIGHUP with a new
    /// certificate bumps it and the tunnel re-handshakes).
    pub pki_generation: u64,
    /// The data plane's view of this tunnel while it is direct (rebuilt when it moves).
    data: Option<Arc<DataTunnel>>,
}

impl Tunnel {
    /// When a connection check last found traffic on this tunnel (its creation until then), to
    /// the second.
    pub fn last_used(&self) -> Instant {
        crate::timers::after(
            self.created,
            Duration::from_secs(u64::from(self.last_used_secs)),
        )
    }

    /// A connection check at `now` found traffic on this tunnel.
    pub fn mark_used(&mut self, now: Instant) {
        let secs = now.saturating_duration_since(self.created).as_secs();
        self.last_used_secs = u32::try_from(secs).unwrap_or(u32::MAX);
    }

    /// The one place a tunnel is made. A tunnel we initiated is confirmed from the start (we read
    /// the peer's stage 2); a responder's waits for the peer's first authenticated packet.
    pub fn new(n: NewTunnel) -> Tunnel {
        let vpn_addr = n
            .vpn_addrs
            .first()
            .copied()
            .unwrap_or(IpAddr::from([0u8; 4]));
        let mut t = Tunnel {
            local_index: n.local_index,
            vpn_addr,
            remote_index: n.remote_index,
            peer: Arc::new(Peer {
                cert: n.peer_cert,
                vpn_addrs: n.vpn_addrs,
                ca: n.peer_ca,
            }),
            session: Arc::new(n.session),
            remote: n.remote,
            roaming: None,
            initiator: n.initiator,
            peer_handshake_time: n.peer_handshake_time,
            answer: Stage1Answer::new(n.stage1.filter(|_| !n.initiator), n.stage2_datagram),
            confirmed_at: n.initiator.then_some(n.now),
            created: n.now,
            pending_deletion: false,
            last_used_secs: 0,
            cert_version: n.cert_version,
            relays: n.relays.into_boxed_slice(),
            next_requery: None,
            pki_generation: n.pki_generation,
            data: None,
        };
        t.data = t.remote.map(|r| t.data_entry(r));
        t
    }

    /// The peer's current underlay address (`None`: reached only through a relay).
    pub fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// The peer has proven it holds the keys.
    pub fn is_confirmed(&self) -> bool {
        self.confirmed_at.is_some()
    }

    /// When the peer proved it holds the keys.
    pub fn confirmed_at(&self) -> Option<Instant> {
        self.confirmed_at
    }

    /// The digest of the stage 1 that made this (unconfirmed responder) tunnel.
    fn stage1_digest(&self) -> Option<[u8; 32]> {
        self.answer.as_ref().and_then(|a| a.digest)
    }

    /// Our stage-2 datagram, while a retransmitted stage 1 may still need it.
    pub fn stage2(&self) -> Option<&[u8]> {
        self.answer.as_ref().and_then(|a| a.stage2.as_deref())
    }

    /// Who the peer is, as the firewall sees it (borrowed: no allocation).
    pub fn peer_identity(&self) -> PeerIdentity<'_> {
        self.peer.identity()
    }

    /// The data plane's entry for this tunnel at `remote`.
    fn data_entry(&self, remote: SocketAddr) -> Arc<DataTunnel> {
        Arc::new(DataTunnel {
            local_index: self.local_index,
            remote_index: self.remote_index,
            remote,
            session: Arc::clone(&self.session),
            peer: Arc::clone(&self.peer),
        })
    }
}

/// What a responder remembers of a stage 1 (the datagram without its header): its SHA-256.
pub fn stage1_digest(body: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(body).into()
}

/// Whether [`HostMap::roam`] moved a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Roam {
    /// Moved from the old address (`None`: it was relayed).
    Moved(Option<SocketAddr>),
    /// Already there.
    Same,
    /// Back to where it just came from within [`ROAMING_SUPPRESS`], or over [`ROAMS_PER_WINDOW`].
    Suppressed,
}

/// The tunnels to one vpn address, primary first: at most [`MAX_TUNNELS_PER_VPN_ADDR`], plus
/// room for the one being inserted before the surplus is evicted. Inline, so a host with one
/// tunnel costs no allocation beyond its map slot.
#[derive(Clone, Copy, Debug, Default)]
pub struct TunnelList {
    len: u8,
    items: [u32; MAX_TUNNELS_PER_VPN_ADDR + 1],
}

impl TunnelList {
    pub fn as_slice(&self) -> &[u32] {
        &self.items[..usize::from(self.len).min(self.items.len())]
    }

    pub fn first(&self) -> Option<u32> {
        self.as_slice().first().copied()
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Put `idx` at `at` (clamped to the end). A full list (never the case: the host map evicts
    /// down to [`MAX_TUNNELS_PER_VPN_ADDR`] after each insert) drops its last entry to make room.
    fn insert(&mut self, at: usize, idx: u32) {
        let len = self.len().min(self.items.len() - 1);
        let at = at.min(len);
        self.items.copy_within(at..len, at + 1);
        self.items[at] = idx;
        self.len = u8::try_from(len + 1).unwrap_or(u8::MAX);
    }

    fn retain(&mut self, keep: impl Fn(&u32) -> bool) {
        let mut n = 0;
        for i in 0..self.len() {
            let v = self.items[i];
            if keep(&v) {
                self.items[n] = v;
                n += 1;
            }
        }
        self.len = u8::try_from(n).unwrap_or(u8::MAX);
    }
}

/// Established tunnels, indexed three ways, plus the data plane's view of them.
pub struct HostMap {
    /// Boxed: the table's spare slots (a quarter to a half of them) then cost a pointer each,
    /// not a whole tunnel.
    by_index: HashMap<u32, Box<Tunnel>>,
    by_remote_index: HashMap<u32, u32>,
    by_vpn: HashMap<IpAddr, TunnelList>,
    /// Responder tunnels by a hash of the stage 1 that made them (a retransmit is a lookup).
    by_stage1: HashMap<u64, u32>,
    stage1_hasher: RandomState,
    /// What the data-plane workers see, kept up to date entry by entry.
    data: DataIndex,
    /// Bumped whenever what the data plane sees changes: a tunnel added or removed, a new
    /// primary, a tunnel moved or confirmed.
    generation: u64,
    /// Replay-window figures of the tunnels removed so far (for `network.packets.*`).
    retired_replay: ReplayCounts,
}

impl Default for HostMap {
    fn default() -> Self {
        HostMap {
            by_index: HashMap::new(),
            by_remote_index: HashMap::new(),
            by_vpn: HashMap::new(),
            by_stage1: HashMap::new(),
            stage1_hasher: RandomState::new(),
            data: DataIndex::default(),
            generation: 0,
            retired_replay: ReplayCounts::default(),
        }
    }
}

impl HostMap {
    /// Changes each time a tunnel is added, removed, made primary, moved or confirmed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The data plane's view (cheap to clone: persistent maps).
    pub(crate) fn data(&self) -> &DataIndex {
        &self.data
    }

    /// Bring tunnel `local_index`'s data-plane entry up to date (receiving: confirmed and direct).
    fn sync_index(&mut self, local_index: u32) {
        let entry = self
            .by_index
            .get(&local_index)
            .filter(|t| t.is_confirmed())
            .and_then(|t| t.data.clone());
        match entry {
            Some(d) => {
                self.data.by_index.insert(local_index, d);
            }
            None => {
                self.data.by_index.remove(&local_index);
            }
        }
    }

    /// Bring `vpn`'s data-plane entry up to date (sending: its primary tunnel, when direct).
    fn sync_vpn(&mut self, vpn: IpAddr) {
        let entry = self
            .primary(&vpn)
            .and_then(|i| self.by_index.get(&i))
            .and_then(|t| t.data.clone());
        match entry {
            Some(d) => {
                self.data.by_vpn.insert(vpn, d);
            }
            None => {
                self.data.by_vpn.remove(&vpn);
            }
        }
    }

    /// Resync everything tunnel `local_index` appears under.
    fn sync_tunnel(&mut self, local_index: u32, vpn_addrs: &[IpAddr]) {
        self.generation += 1;
        self.sync_index(local_index);
        for a in vpn_addrs {
            self.sync_vpn(*a);
        }
    }

    /// Move tunnel `local_index` to `remote` (`None`: relayed only). False if it was there.
    pub fn set_remote(&mut self, local_index: u32, remote: Option<SocketAddr>) -> bool {
        let Some(t) = self.by_index.get_mut(&local_index) else {
            return false;
        };
        if t.remote == remote {
            return false;
        }
        t.remote = remote;
        t.data = remote.map(|r| t.data_entry(r));
        let addrs = t.peer.vpn_addrs.clone();
        self.sync_tunnel(local_index, &addrs);
        true
    }

    /// An authenticated packet for tunnel `local_index` came from `from`: follow the peer there,
    /// unless it is bouncing back within [`ROAMING_SUPPRESS`] or has used up its moves for this
    /// [`ROAM_WINDOW`].
    pub fn roam(&mut self, local_index: u32, from: SocketAddr, now: Instant) -> Roam {
        let Some(t) = self.by_index.get_mut(&local_index) else {
            return Roam::Same;
        };
        if t.remote == Some(from) {
            return Roam::Same;
        }
        let r = t.roaming.get_or_insert_with(|| {
            Box::new(Roaming {
                last: None,
                window: (now, 0),
            })
        });
        if let Some((prev, at)) = r.last {
            if prev == from && now.saturating_duration_since(at) < ROAMING_SUPPRESS {
                return Roam::Suppressed;
            }
        }
        let (window_start, moves) = r.window;
        if now.saturating_duration_since(window_start) >= ROAM_WINDOW {
            r.window = (now, 0);
        } else if moves >= ROAMS_PER_WINDOW {
            return Roam::Suppressed;
        }
        r.window.1 += 1;
        let old = t.remote;
        if let Some(o) = old {
            r.last = Some((o, now));
        }
        self.set_remote(local_index, Some(from));
        Roam::Moved(old)
    }

    /// Mark tunnel `local_index` confirmed at `now`. True if it was not confirmed before.
    pub fn confirm(&mut self, local_index: u32, now: Instant) -> bool {
        let Some(t) = self.by_index.get_mut(&local_index) else {
            return false;
        };
        if t.confirmed_at.is_some() {
            return false;
        }
        t.confirmed_at = Some(now);
        // The peer has our stage 2: no retransmit of its stage 1 will need an answer.
        if let Some(d) = t.answer.take().and_then(|a| a.digest) {
            let key = self.stage1_hasher.hash_one(d);
            if self.by_stage1.get(&key) == Some(&local_index) {
                self.by_stage1.remove(&key);
            }
        }
        // Confirmed, it may now be what `primary` answers for its addresses.
        let addrs = t.peer.vpn_addrs.clone();
        self.sync_tunnel(local_index, &addrs);
        true
    }

    pub fn len(&self) -> usize {
        self.by_index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_index.is_empty()
    }

    pub fn get(&self, local_index: u32) -> Option<&Tunnel> {
        self.by_index.get(&local_index).map(|t| &**t)
    }

    pub fn get_mut(&mut self, local_index: u32) -> Option<&mut Tunnel> {
        self.by_index.get_mut(&local_index).map(|t| &mut **t)
    }

    pub fn contains_index(&self, local_index: u32) -> bool {
        self.by_index.contains_key(&local_index)
    }

    /// The tunnel whose peer knows us by `remote_index` (for recvError).
    pub fn by_remote_index(&self, remote_index: u32) -> Option<u32> {
        self.by_remote_index.get(&remote_index).copied()
    }

    /// The unconfirmed responder tunnel made by exactly this stage-1 body (a retransmit), by
    /// hash look-up.
    pub fn by_stage1(&self, body: &[u8]) -> Option<&Tunnel> {
        let d = stage1_digest(body);
        self.by_stage1
            .get(&self.stage1_hasher.hash_one(d))
            .and_then(|i| self.by_index.get(i))
            .map(|t| &**t)
            .filter(|t| t.stage1_digest() == Some(d))
    }

    /// Local index of the primary tunnel to `vpn`: the one our traffic to `vpn` takes. Never an
    /// unconfirmed (responder) tunnel: its stage 1 was not authenticated and may be a replay from
    /// someone who cannot read what we send, so it carries nothing of ours until the peer proves
    /// it holds the keys ([`HostMap::confirm`]).
    pub fn primary(&self, vpn: &IpAddr) -> Option<u32> {
        self.by_vpn
            .get(vpn)
            .and_then(TunnelList::first)
            .filter(|i| self.by_index.get(i).is_some_and(|t| t.is_confirmed()))
    }

    /// All tunnels to `vpn`, primary first.
    pub fn tunnels_for(&self, vpn: &IpAddr) -> &[u32] {
        self.by_vpn
            .get(vpn)
            .map(TunnelList::as_slice)
            .unwrap_or(&[])
    }

    pub fn indexes(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_index.keys().copied()
    }

    pub fn tunnels(&self) -> impl Iterator<Item = &Tunnel> {
        self.by_index.values().map(|t| &**t)
    }

    pub fn vpn_addrs(&self) -> impl Iterator<Item = &IpAddr> {
        self.by_vpn.keys()
    }

    /// Insert a tunnel; `primary` puts it first for each of its vpn addresses, else it goes after
    /// the current first. An unconfirmed tunnel never goes before another tunnel, and a confirmed
    /// one always goes before an unconfirmed first (so [`HostMap::primary`] finds it). Returns
    /// tunnels evicted to stay within the per-address limit.
    pub fn insert(&mut self, tunnel: Tunnel, primary: bool) -> Vec<Tunnel> {
        let idx = tunnel.local_index;
        let addrs = tunnel.peer.vpn_addrs.clone();
        let confirmed = tunnel.is_confirmed();
        self.by_remote_index.insert(tunnel.remote_index, idx);
        if let Some(d) = tunnel.stage1_digest() {
            let key = self.stage1_hasher.hash_one(d);
            self.by_stage1.insert(key, idx);
        }
        self.by_index.insert(idx, Box::new(tunnel));
        let mut evict = Vec::new();
        for a in &addrs {
            let list = self.by_vpn.entry(*a).or_default();
            list.retain(|i| *i != idx);
            let first_unconfirmed = list
                .first()
                .is_some_and(|f| self.by_index.get(&f).is_some_and(|t| !t.is_confirmed()));
            if list.is_empty() || (confirmed && (primary || first_unconfirmed)) {
                list.insert(0, idx);
            } else {
                list.insert(1, idx);
            }
            while list.len() > MAX_TUNNELS_PER_VPN_ADDR {
                // Evict the oldest unconfirmed tunnel, else the last one; never the primary.
                let victim = list
                    .as_slice()
                    .iter()
                    .skip(1)
                    .rev()
                    .find(|i| self.by_index.get(i).is_some_and(|t| !t.is_confirmed()))
                    .copied()
                    .or_else(|| list.as_slice().last().copied());
                if let Some(v) = victim {
                    list.retain(|i| *i != v);
                    evict.push(v);
                } else {
                    break;
                }
            }
        }
        self.sync_tunnel(idx, &addrs);
        let mut out = Vec::new();
        for v in evict {
            if let Some(t) = self.remove(v) {
                out.push(t);
            }
        }
        out
    }

    /// Make `local_index` the primary tunnel for each of its vpn addresses (only a confirmed
    /// tunnel can be primary: see [`HostMap::primary`]).
    pub fn make_primary(&mut self, local_index: u32) {
        let Some(t) = self.by_index.get(&local_index).filter(|t| t.is_confirmed()) else {
            return;
        };
        let addrs = t.peer.vpn_addrs.clone();
        for a in &addrs {
            if let Some(list) = self.by_vpn.get_mut(a) {
                list.retain(|i| *i != local_index);
                list.insert(0, local_index);
            }
        }
        self.sync_tunnel(local_index, &addrs);
    }

    /// Remove a tunnel from every index.
    pub fn remove(&mut self, local_index: u32) -> Option<Tunnel> {
        let t = *self.by_index.remove(&local_index)?;
        if self.by_remote_index.get(&t.remote_index) == Some(&local_index) {
            self.by_remote_index.remove(&t.remote_index);
        }
        if let Some(d) = t.stage1_digest() {
            let key = self.stage1_hasher.hash_one(d);
            if self.by_stage1.get(&key) == Some(&local_index) {
                self.by_stage1.remove(&key);
            }
        }
        for a in &t.peer.vpn_addrs {
            if let Some(list) = self.by_vpn.get_mut(a) {
                list.retain(|i| *i != local_index);
                if list.is_empty() {
                    self.by_vpn.remove(a);
                }
            }
        }
        self.sync_tunnel(local_index, &t.peer.vpn_addrs);
        self.retired_replay.add(replay_counts(&t));
        Some(t)
    }

    /// Vpn addresses with at least one tunnel (Go's `hostmap.main.hosts`).
    pub fn hosts(&self) -> usize {
        self.by_vpn.len()
    }

    /// Tunnels findable by the peer's index (Go's `hostmap.main.remoteIndexes`).
    pub fn remote_indexes(&self) -> usize {
        self.by_remote_index.len()
    }

    /// Packets lost, duplicated and out of window on every tunnel, live or gone
    /// (`network.packets.*`). Takes each live tunnel's window lock once.
    pub fn replay_counts(&self) -> ReplayCounts {
        let mut sum = self.retired_replay;
        for t in self.by_index.values() {
            sum.add(replay_counts(t));
        }
        sum
    }
}

fn replay_counts(t: &Tunnel) -> ReplayCounts {
    let w = t.session.replay();
    ReplayCounts {
        lost: w.lost(),
        duplicate: w.duplicates(),
        out_of_window: w.out_of_window(),
    }
}

/// Most relay entries one host may take part in, as the hop whose tunnel carries them or as the
/// far end: whatever a peer asks, it cannot make us hold more for it. (A host reached through one
/// relay by this many peers at once is far beyond what relays are for.)
pub const MAX_RELAYS_PER_HOST: usize = 1024;
/// Most relay entries in all (each costs well under a kilobyte with its indexes).
pub const MAX_RELAYS: usize = 32 * 1024;
/// A relay entry a peer's request made must be in use by then: a forwarding pair established, or
/// (our end of a relay) a tunnel with the far end made or being made through it. Otherwise it
/// goes. Requesters re-ask on every handshake attempt, so this is many of their retries.
pub const RELAY_SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// What a relay index does for us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayKind {
    /// We are an end: frames on this index carry packets of our own tunnel with `peer`.
    Terminal,
    /// We are the relay: frames on this index are re-wrapped for `peer`'s hop.
    Forwarding,
}

/// How far a relay is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayState {
    /// We sent a CreateRelayRequest and wait for the response.
    Requested,
    /// A peer asked us to relay; we wait for the far end's response.
    PeerRequested,
    /// Frames may flow.
    Established,
}

/// One relay index on one hop (Go's `Relay`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relay {
    /// Our index: relay frames from `hop` carry it in their header.
    pub local_index: u32,
    /// `hop`'s index for the same relay: our relay frames to `hop` carry it (0 until known).
    pub remote_index: u32,
    /// The vpn address of the adjacent host whose tunnel carries the frames.
    pub hop: IpAddr,
    /// The other end: the far host (terminal) or the other hop (forwarding).
    pub peer: IpAddr,
    pub kind: RelayKind,
    pub state: RelayState,
}

/// Relays by local index, by (hop, peer), by the hop's index and by host: every look-up an event
/// needs is a hash look-up, never a scan of the table.
#[derive(Default, Debug)]
pub struct RelayTable {
    by_index: HashMap<u32, Relay>,
    by_pair: HashMap<(IpAddr, IpAddr), u32>,
    /// Relays by the hop's index for them (recvError names that index).
    by_remote: HashMap<u32, Vec<u32>>,
    /// Relays by each host they involve (as hop or as the other end).
    by_host: HashMap<IpAddr, Vec<u32>>,
}

fn unlink<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<u32>>, key: K, index: u32) {
    if let Some(list) = map.get_mut(&key) {
        list.retain(|i| *i != index);
        if list.is_empty() {
            map.remove(&key);
        }
    }
}

impl RelayTable {
    pub fn len(&self) -> usize {
        self.by_index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_index.is_empty()
    }

    pub fn get(&self, local_index: u32) -> Option<&Relay> {
        self.by_index.get(&local_index)
    }

    pub fn contains_index(&self, local_index: u32) -> bool {
        self.by_index.contains_key(&local_index)
    }

    /// The relay on `hop`'s tunnel that leads to `peer`.
    pub fn find(&self, hop: IpAddr, peer: IpAddr) -> Option<&Relay> {
        self.by_pair
            .get(&(hop, peer))
            .and_then(|i| self.by_index.get(i))
    }

    /// The relays `hop` knows by `remote_index` (for recvError).
    pub fn by_remote_index(&self, hop_addrs: &[IpAddr], remote_index: u32) -> Option<u32> {
        self.by_remote
            .get(&remote_index)?
            .iter()
            .copied()
            .find(|i| {
                self.by_index
                    .get(i)
                    .is_some_and(|r| hop_addrs.contains(&r.hop))
            })
    }

    /// Every relay with the hop's index `remote_index`.
    pub fn with_remote_index(&self, remote_index: u32) -> &[u32] {
        self.by_remote
            .get(&remote_index)
            .map(|v| v.as_slice())
            .unwrap_or(&[])
    }

    /// Insert (replacing any relay on the same hop for the same peer).
    pub fn insert(&mut self, relay: Relay) -> Option<Relay> {
        let old = self
            .by_pair
            .get(&(relay.hop, relay.peer))
            .copied()
            .and_then(|i| self.remove(i));
        let i = relay.local_index;
        self.by_pair.insert((relay.hop, relay.peer), i);
        self.by_remote
            .entry(relay.remote_index)
            .or_default()
            .push(i);
        self.by_host.entry(relay.hop).or_default().push(i);
        if relay.peer != relay.hop {
            self.by_host.entry(relay.peer).or_default().push(i);
        }
        self.by_index.insert(i, relay);
        old
    }

    /// The hop told us its index for relay `local_index` and where the set-up stands.
    pub fn update(&mut self, local_index: u32, remote_index: u32, state: RelayState) {
        let Some(r) = self.by_index.get_mut(&local_index) else {
            return;
        };
        let old_remote = r.remote_index;
        r.remote_index = remote_index;
        r.state = state;
        if old_remote != remote_index {
            unlink(&mut self.by_remote, old_remote, local_index);
            self.by_remote
                .entry(remote_index)
                .or_default()
                .push(local_index);
        }
    }

    pub fn remove(&mut self, local_index: u32) -> Option<Relay> {
        let r = self.by_index.remove(&local_index)?;
        if self.by_pair.get(&(r.hop, r.peer)) == Some(&local_index) {
            self.by_pair.remove(&(r.hop, r.peer));
        }
        unlink(&mut self.by_remote, r.remote_index, local_index);
        unlink(&mut self.by_host, r.hop, local_index);
        unlink(&mut self.by_host, r.peer, local_index);
        Some(r)
    }

    /// May `new` more relay entries involving hosts `a` and `b` be added (within
    /// [`MAX_RELAYS_PER_HOST`] for each and [`MAX_RELAYS`] in all)?
    pub fn room_for(&self, a: IpAddr, b: IpAddr, new: usize) -> Result<(), RelayRefusal> {
        if new == 0 {
            return Ok(());
        }
        if self.by_index.len() + new > MAX_RELAYS {
            return Err(RelayRefusal::TableFull);
        }
        let held = |h: &IpAddr| self.by_host.get(h).map_or(0, Vec::len);
        if held(&a) + new > MAX_RELAYS_PER_HOST || held(&b) + new > MAX_RELAYS_PER_HOST {
            return Err(RelayRefusal::TooManyForHost);
        }
        Ok(())
    }

    /// Local indexes of every relay riding on `hop` or leading to `peer == vpn`.
    pub fn involving(&self, vpn: IpAddr) -> Vec<u32> {
        self.by_host.get(&vpn).cloned().unwrap_or_default()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Relay> {
        self.by_index.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn relay(idx: u32, hop: &str, peer: &str) -> Relay {
        Relay {
            local_index: idx,
            remote_index: 0,
            hop: ip(hop),
            peer: ip(peer),
            kind: RelayKind::Forwarding,
            state: RelayState::Requested,
        }
    }

    #[test]
    fn relay_table_indexes_by_pair_and_replaces_stale_entries() {
        let mut t = RelayTable::default();
        assert!(t.insert(relay(1, "10.0.0.1", "10.0.0.3")).is_none());
        assert!(t.insert(relay(2, "10.0.0.3", "10.0.0.1")).is_none());
        assert_eq!(
            t.find(ip("10.0.0.1"), ip("10.0.0.3"))
                .map(|r| r.local_index),
            Some(1)
        );
        // A new relay for the same pair pushes the old one out of both indexes.
        let old = t.insert(relay(7, "10.0.0.1", "10.0.0.3"));
        assert_eq!(old.map(|r| r.local_index), Some(1));
        assert!(t.get(1).is_none());
        assert_eq!(t.len(), 2);
        t.update(2, 99, RelayState::Requested);
        assert_eq!(t.by_remote_index(&[ip("10.0.0.3")], 99), Some(2));
        assert_eq!(t.by_remote_index(&[ip("10.0.0.1")], 99), None);
        let mut inv = t.involving(ip("10.0.0.3"));
        inv.sort();
        assert_eq!(inv, vec![2, 7]);
        t.remove(7);
        t.remove(2);
        assert!(t.is_empty());
        assert!(t.find(ip("10.0.0.1"), ip("10.0.0.3")).is_none());
    }
}

#[cfg(test)]
mod index_tests {
    //! The data-plane index the host map keeps entry by entry must always equal the one a
    //! full rebuild would make; and retransmitted stage 1s are found by hash.
    use std::collections::HashMap as StdMap;

    use nebula_cert::{Curve, Version};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::aead::{CipherKind, SessionCipher};
    use crate::sim::TestCa;

    fn stage1_of(idx: u32) -> Vec<u8> {
        format!("stage1 of {idx}").into_bytes()
    }

    fn session() -> Session {
        let key = [7u8; 32];
        let c = || SessionCipher::new(CipherKind::AesGcm, &key).expect("cipher");
        Session::new(c(), c())
    }

    fn tunnel(
        ca: &TestCa,
        idx: u32,
        host: u8,
        remote: Option<SocketAddr>,
        initiator: bool,
        now: Instant,
    ) -> Tunnel {
        let (cert, _) = ca.host(&format!("h{host}"), &format!("10.42.0.{host}/16"), &[]);
        let vpn = cert.networks()[0].addr();
        Tunnel::new(NewTunnel {
            local_index: idx,
            remote_index: idx ^ 0xffff,
            vpn_addrs: vec![vpn],
            peer_cert: cert,
            peer_ca: Arc::new(CaLabel::default()),
            session: session(),
            remote,
            relays: Vec::new(),
            initiator,
            peer_handshake_time: 0,
            stage1: Some(stage1_digest(&stage1_of(idx))),
            stage2_datagram: None,
            cert_version: Version::V1,
            pki_generation: 0,
            now,
        })
    }

    /// What a full rebuild would publish: (receiving index -> remote, vpn -> (index, remote)).
    type Expected = (StdMap<u32, SocketAddr>, StdMap<IpAddr, (u32, SocketAddr)>);

    fn rebuild(m: &HostMap) -> Expected {
        let by_index = m
            .tunnels()
            .filter(|t| t.is_confirmed())
            .filter_map(|t| t.remote().map(|r| (t.local_index, r)))
            .collect();
        let by_vpn = m
            .vpn_addrs()
            .filter_map(|v| {
                let t = m.get(m.primary(v)?)?;
                Some((*v, (t.local_index, t.remote()?)))
            })
            .collect();
        (by_index, by_vpn)
    }

    fn incremental(m: &HostMap) -> Expected {
        let d = m.data();
        let by_index = d
            .by_index
            .iter()
            .map(|(i, t)| {
                assert_eq!(*i, t.local_index);
                (*i, t.remote)
            })
            .collect();
        let by_vpn = d
            .by_vpn
            .iter()
            .map(|(v, t)| (*v, (t.local_index, t.remote)))
            .collect();
        (by_index, by_vpn)
    }

    #[test]
    fn the_incremental_index_always_equals_a_rebuild() {
        let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
        let t0 = Instant::now();
        for seed in 0..8u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut m = HostMap::default();
            let mut now = t0;
            for step in 0..400 {
                now += Duration::from_millis(rng.gen_range(0..3000));
                let idx = rng.gen_range(1..40u32);
                let addr = |rng: &mut StdRng| -> SocketAddr {
                    SocketAddr::from(([192, 0, 2, rng.gen_range(1..4u8)], 4242))
                };
                match rng.gen_range(0..7) {
                    0 | 1 => {
                        if !m.contains_index(idx) {
                            let remote = rng.gen_bool(0.8).then(|| addr(&mut rng));
                            let host = rng.gen_range(1..6u8);
                            let t = tunnel(&ca, idx, host, remote, rng.gen(), now);
                            m.insert(t, rng.gen());
                        }
                    }
                    2 => {
                        m.remove(idx);
                    }
                    3 => {
                        let remote = rng.gen_bool(0.8).then(|| addr(&mut rng));
                        m.set_remote(idx, remote);
                    }
                    4 => {
                        m.confirm(idx, now);
                    }
                    5 => m.make_primary(idx),
                    _ => {
                        let to = addr(&mut rng);
                        m.roam(idx, to, now);
                    }
                }
                assert_eq!(incremental(&m), rebuild(&m), "seed {seed} step {step}");
                for t in m.tunnels() {
                    let found = m
                        .by_stage1(&stage1_of(t.local_index))
                        .map(|f| f.local_index);
                    let answers = !t.initiator && !t.is_confirmed();
                    let want = answers.then_some(t.local_index);
                    assert_eq!(found, want, "stage 1 of {}", t.local_index);
                    assert_eq!(t.stage2().is_some(), answers && t.stage2().is_some());
                }
            }
        }
    }

    #[test]
    fn an_unconfirmed_tunnel_is_never_primary() {
        let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
        let t0 = Instant::now();
        let at: SocketAddr = "192.0.2.1:4242".parse().expect("addr");
        let mut m = HostMap::default();
        // A responder tunnel alone: listed, but not what our traffic takes.
        let lone = tunnel(&ca, 1, 2, Some(at), false, t0);
        let vpn = lone.vpn_addr;
        m.insert(lone, true);
        assert_eq!(m.tunnels_for(&vpn), &[1]);
        assert_eq!(m.primary(&vpn), None);
        assert!(!m.data().by_vpn.contains_key(&vpn));
        m.make_primary(1);
        assert_eq!(
            m.primary(&vpn),
            None,
            "make_primary refuses an unconfirmed tunnel"
        );
        // A confirmed tunnel (ours) goes before it even when not asked to be primary.
        m.insert(tunnel(&ca, 2, 2, Some(at), true, t0), false);
        assert_eq!(m.primary(&vpn), Some(2));
        // Another responder tunnel never goes first; confirmed, it can be made primary.
        m.insert(tunnel(&ca, 3, 2, Some(at), false, t0), true);
        assert_eq!(m.primary(&vpn), Some(2));
        m.remove(2);
        assert_eq!(m.primary(&vpn), None);
        assert!(!m.data().by_vpn.contains_key(&vpn));
        assert!(m.confirm(3, t0));
        m.make_primary(3);
        assert_eq!(m.primary(&vpn), Some(3));
        assert_eq!(m.data().by_vpn.get(&vpn).map(|d| d.local_index), Some(3));
        // Confirming the first entry publishes it at once.
        m.remove(3);
        assert_eq!(m.tunnels_for(&vpn), &[1]);
        assert!(m.confirm(1, t0));
        assert_eq!(m.primary(&vpn), Some(1));
        assert_eq!(m.data().by_vpn.get(&vpn).map(|d| d.local_index), Some(1));
    }

    #[test]
    fn a_tunnel_list_keeps_order_inline_and_never_overflows() {
        let mut l = TunnelList::default();
        assert!(l.is_empty() && l.first().is_none());
        l.insert(0, 1);
        l.insert(1, 2);
        l.insert(0, 3);
        l.insert(9, 4);
        assert_eq!(l.as_slice(), &[3, 1, 2, 4]);
        l.retain(|i| *i != 1);
        assert_eq!(l.as_slice(), &[3, 2, 4]);
        for i in 10..20 {
            l.insert(1, i);
        }
        assert_eq!(
            l.len(),
            MAX_TUNNELS_PER_VPN_ADDR + 1,
            "full: the last one makes room"
        );
        assert_eq!(l.first(), Some(3));
        assert_eq!(std::mem::size_of::<TunnelList>(), 28);
    }

    #[test]
    fn what_a_lighthouse_holds_per_tunnel_stays_small() {
        // A lighthouse holds one of each per host; these bounds keep 100k tunnels well under
        // 200 MiB (see benches/lighthouse-load.sh). Rare state lives in boxes made on demand.
        let sizes = [
            ("Tunnel", std::mem::size_of::<Tunnel>(), 184),
            ("Peer", std::mem::size_of::<Peer>(), 48),
            ("Session", std::mem::size_of::<Session>(), 320),
            ("DataTunnel", std::mem::size_of::<DataTunnel>(), 64),
        ];
        for (name, size, bound) in sizes {
            assert!(size <= bound, "{name} is {size} bytes (bound {bound})");
        }
        let now = Instant::now();
        let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
        let mut t = tunnel(
            &ca,
            1,
            2,
            Some("192.0.2.1:4242".parse().expect("addr")),
            false,
            now,
        );
        assert!(t.answer.is_some() && t.roaming.is_none());
        let mut m = HostMap::default();
        m.insert(
            std::mem::replace(&mut t, tunnel(&ca, 2, 3, None, true, now)),
            true,
        );
        m.confirm(1, now);
        let confirmed = m.get(1).expect("tunnel");
        assert!(
            confirmed.answer.is_none(),
            "confirming drops the stage-1 answer"
        );
        assert!(
            confirmed.roaming.is_none(),
            "no roaming state before a move"
        );
    }

    #[test]
    fn roaming_is_rate_limited_per_tunnel() {
        let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
        let t0 = Instant::now();
        let home: SocketAddr = "192.0.2.1:4242".parse().expect("addr");
        let mut m = HostMap::default();
        m.insert(tunnel(&ca, 1, 2, Some(home), true, t0), true);
        let gen0 = m.generation();
        // A peer cycling three source ports, one packet every 10 ms for 10 s.
        let mut moves = 0;
        for n in 0..1000u32 {
            let now = t0 + Duration::from_millis(10 * u64::from(n));
            let port = 5000 + (n % 3) as u16;
            if let Roam::Moved(_) = m.roam(1, SocketAddr::new(home.ip(), port), now) {
                moves += 1;
            }
        }
        let windows = 10_000 / ROAM_WINDOW.as_millis() as u32;
        assert!(
            moves <= ROAMS_PER_WINDOW as u32 * (windows + 1),
            "{moves} moves"
        );
        assert!(moves >= 1);
        // Every move is one table change, not one per packet.
        assert_eq!(m.generation() - gen0, u64::from(moves));
        // A real move after a quiet spell goes through at once.
        let later = t0 + Duration::from_secs(60);
        let new_home: SocketAddr = "192.0.2.7:4242".parse().expect("addr");
        assert!(matches!(m.roam(1, new_home, later), Roam::Moved(_)));
        assert_eq!(m.get(1).and_then(|t| t.remote()), Some(new_home));
    }
}
