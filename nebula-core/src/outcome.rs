//! What the engine and the data plane hand back: datagrams to send, events, and the outcome of
//! each packet with the documented reasons for a drop. A leaf: it depends on no engine module.

use std::net::{IpAddr, SocketAddr};

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
    /// No traffic for `tunnels.inactivity_timeout` (`tunnels.drop_inactive`).
    Inactive,
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
    /// The tunnel moved to a new underlay address (`from: None`: it was relayed until now).
    Roamed {
        vpn_addr: IpAddr,
        from: Option<SocketAddr>,
        to: SocketAddr,
    },
    /// A peer's certificate stopped verifying (expired, blocklisted, CA gone) at a connection
    /// check; with `pki.disconnect_invalid` (or a blocklisting) its tunnel closes right after.
    PeerCertificateInvalid {
        vpn_addr: IpAddr,
        cert_name: String,
        error: String,
    },
    TestReply {
        vpn_addr: IpAddr,
        payload: Vec<u8>,
    },
    /// A CreateRelayRequest that `hop` sent us (for a relay from `from` to `to`) was refused.
    RelayRefused {
        hop: IpAddr,
        from: IpAddr,
        to: IpAddr,
        reason: RelayRefusal,
    },
}

/// Why a CreateRelayRequest was refused ([`Event::RelayRefused`]). Each is the requester's doing
/// (a misconfiguration, or a peer probing us), never ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayRefusal {
    /// It asks us to forward, but `relay.am_relay` is off.
    NotARelay,
    /// It asks us to be the end of a relay through a host that is not one of our `relay.relays`
    /// (the hosts we advertise for that), or we are a relay ourselves (relays use no relays).
    NotOurRelay,
    /// It asks us to forward from someone other than the requester itself.
    ForeignFrom,
    /// It asks us to forward to an address outside our vpn networks, where no host can be.
    TargetOutsideNetworks,
    /// We have no tunnel to the target, and the requester already has as many handshakes
    /// running on its behalf as it may (`handshake::MAX_RELAY_HANDSHAKES_PER_REQUESTER`), or
    /// relay requests hold their whole share of the pending table.
    HandshakeBudget,
    /// A host it involves already takes part in `hostmap::MAX_RELAYS_PER_HOST` relays.
    TooManyForHost,
    /// The relay table holds `hostmap::MAX_RELAYS` entries (or no relay index was free).
    TableFull,
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

/// Why a packet was not forwarded. Each variant says where it comes from; none of them is an
/// error of ours: they are the ordinary fate of stray, stale, forged or refused traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// A datagram shorter than a Nebula header (hole-punch bytes are such), or a message too
    /// short to hold its AEAD tag or the packet inside a relay frame.
    TooShort,
    /// The header is malformed (unknown version, type or subtype) or the message type makes no
    /// sense where it arrived (a relay frame inside a relay frame).
    BadHeader,
    /// No tunnel (or relay) has the local index the header names: a stale peer after our restart,
    /// or garbage. Answered with recvError per `listen.send_recv_error`.
    UnknownIndex,
    /// The message counter was seen before or is too old for the replay window.
    Replay,
    /// The AEAD tag did not verify: forged, corrupted, or sealed with another session's key.
    Decrypt,
    /// The firewall refused the packet; the firewall's own reason rides along (metrics use it).
    Firewall(crate::firewall::DropReason),
    /// No tunnel route: the destination is outside our networks and unsafe routes, or the
    /// tunnel is relayed and its relay is gone.
    NoRoute,
    /// The caller's buffer has no room for the header, tag or relay framing.
    BufferTooSmall,
    /// A TUN packet that is neither IPv4 nor IPv6.
    NotIp,
    /// A TUN packet addressed to one of our own vpn addresses.
    ToSelf,
    /// A datagram whose underlay source is inside our own overlay networks (a loop).
    DoubleEncrypted,
    /// No handshake could be started (pending table full, no free index) or its queue is full.
    HandshakeQueueFull,
    /// The packets queued behind all pending handshakes together already use
    /// `max_queued_bytes` (counted by [`crate::Engine::queue_budget_drops`]); freed as those
    /// handshakes complete, fail or time out.
    HandshakeQueueBytes,
    /// The tunnel's send counter is used up (it must re-handshake).
    CounterExhausted,
}

/// Result of [`crate::Engine::handle_inside`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsideOutcome {
    /// `buf[..len]` is a sealed datagram for `to`.
    Send { to: SocketAddr, len: usize },
    /// Queued until a handshake completes.
    Queued,
    /// Handled by the control plane (outputs may hold a reject).
    Dropped(DropReason),
}

/// Result of [`crate::Engine::handle_outside`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutsideOutcome {
    /// `datagram[start..end]` is a decrypted IP packet for the TUN.
    Tun {
        start: usize,
        end: usize,
    },
    /// `datagram[..len]` was re-sealed in place for `to`: a relay frame we forward to the next
    /// hop (same length as it came in; only its header and tag changed). Send it from the
    /// caller's buffer.
    Send {
        to: SocketAddr,
        len: usize,
    },
    /// Consumed by the control plane; see the outputs.
    Handled,
    Dropped(DropReason),
}
