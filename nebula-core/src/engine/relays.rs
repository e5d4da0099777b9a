//! Relays in both roles: relay frames (terminal or forwarded), relay set-up control messages,
//! relayed handshake attempts, and relay index allocation and removal.

use super::*;

impl Engine {
    /// A relay frame (message subtype 1): verify it with the hop tunnel's key, then either handle
    /// the inner packet as ours (terminal) or re-wrap it for the next hop (forwarding).
    pub(super) fn handle_relay_frame(
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

    /// Drop a relay index; a forwarding relay takes its other half with it.
    pub(super) fn remove_relay(&mut self, local_index: u32) {
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

    pub(super) fn allocate_relay_index(&mut self) -> Option<u32> {
        for _ in 0..32 {
            let i = self.rng.next_u32();
            if i != 0 && !self.relays.contains_index(i) {
                return Some(i);
            }
        }
        None
    }

    /// A new relay entry on a fresh local index: `hop`'s tunnel carries it towards `peer`.
    /// `None` when no index is free.
    fn new_relay(
        &mut self,
        remote_index: u32,
        hop: IpAddr,
        peer: IpAddr,
        kind: RelayKind,
        state: RelayState,
    ) -> Option<u32> {
        let local_index = self.allocate_relay_index()?;
        self.relays.insert(Relay {
            local_index,
            remote_index,
            hop,
            peer,
            kind,
            state,
        });
        Some(local_index)
    }

    /// The relay half of a handshake attempt (`handshake_manager.go`): for each relay the target
    /// advertises, make sure we have a tunnel to the relay, then a relay index through it, then
    /// send the stage 1 through it.
    pub(super) fn relay_handshake(
        &mut self,
        now: Instant,
        target: IpAddr,
        stage1: &[u8],
        out: &mut Outputs,
    ) {
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
            let requested = match self
                .relays
                .find(relay, target)
                .map(|r| (r.local_index, r.kind, r.state))
            {
                None => {
                    self.new_relay(0, relay, target, RelayKind::Terminal, RelayState::Requested)
                }
                // Ask again, in case the request or its answer was lost.
                Some((index, RelayKind::Terminal, RelayState::Requested)) => Some(index),
                Some((index, RelayKind::Terminal, RelayState::Established)) => {
                    self.send_through_relay(index, stage1, out);
                    None
                }
                Some(_) => None,
            };
            if let Some(index) = requested {
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
        }
    }

    /// Send a CreateRelayRequest/Response on the tunnel to `hop`, in the address encoding that
    /// tunnel's certificate version calls for (v1 fields for v1 tunnels, as 1.6.1 needs).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_relay_control(
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

    /// A NebulaControl message on tunnel `idx` (relay setup, `relay_manager.go`).
    pub(super) fn handle_control(
        &mut self,
        now: Instant,
        idx: u32,
        payload: &[u8],
        out: &mut Outputs,
    ) {
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
    pub(super) fn relay_request(
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
            self.relay_request_to_us(hop, init, ends, out);
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
                let Some(i) =
                    self.new_relay(0, target, hop, RelayKind::Forwarding, RelayState::Requested)
                else {
                    return;
                };
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
                let made = self.new_relay(
                    init,
                    hop,
                    target,
                    RelayKind::Forwarding,
                    RelayState::PeerRequested,
                );
                if made.is_none() {
                    return;
                }
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

    /// `hop` asks, on its index `init`, for a relay from `ends.from` to us: our end of the relay
    /// is ready as soon as we answer.
    fn relay_request_to_us(&mut self, hop: IpAddr, init: u32, ends: RelayEnds, out: &mut Outputs) {
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
                let Some(local) = self.new_relay(
                    init,
                    hop,
                    from,
                    RelayKind::Terminal,
                    RelayState::Established,
                ) else {
                    return;
                };
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
    }

    /// `hop` answered our CreateRelayRequest `init` with its index `resp`.
    pub(super) fn relay_response(&mut self, hop: IpAddr, init: u32, resp: u32, out: &mut Outputs) {
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
}
