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
                // The inner packet stays where it is: only the outer header and the tag change
                // (same length), so forwarding re-seals the caller's buffer and allocates nothing.
                let next_index = next.local_index;
                let Some((hop_index, relay_remote, to)) = self.relay_hop(next_index) else {
                    return OutsideOutcome::Dropped(DropReason::NoRoute);
                };
                let Some(hop) = self.hostmap.get(hop_index) else {
                    return OutsideOutcome::Dropped(DropReason::NoRoute);
                };
                match super::inside::relay_frame_in_place(&hop.session, relay_remote, datagram) {
                    Some(()) => OutsideOutcome::Send {
                        to,
                        len: datagram.len(),
                    },
                    None => OutsideOutcome::Dropped(DropReason::NoRoute),
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
    /// Refused when it would take a host over [`crate::hostmap::MAX_RELAYS_PER_HOST`] or the
    /// table over [`crate::hostmap::MAX_RELAYS`] (or no index is free).
    fn new_relay(
        &mut self,
        remote_index: u32,
        hop: IpAddr,
        peer: IpAddr,
        kind: RelayKind,
        state: RelayState,
    ) -> Result<u32, RelayRefusal> {
        let new = usize::from(self.relays.find(hop, peer).is_none());
        self.relays.room_for(hop, peer, new)?;
        let local_index = self.allocate_relay_index().ok_or(RelayRefusal::TableFull)?;
        self.relays.insert(Relay {
            local_index,
            remote_index,
            hop,
            peer,
            kind,
            state,
        });
        Ok(local_index)
    }

    /// A relay entry made at a peer's request is checked after [`RELAY_SETUP_TIMEOUT`].
    fn check_relay_later(&mut self, now: Instant, local_index: u32) {
        self.timers
            .add_after(now, RELAY_SETUP_TIMEOUT, Timer::RelayCheck { local_index });
    }

    /// [`Timer::RelayCheck`]: a relay entry a peer's request made goes unless it is in use. A
    /// forwarding pair must be established by now (then it lives as long as both tunnels); our
    /// end of a relay must carry a tunnel with the far end, made or being made (then it goes
    /// with that tunnel, in `remove_tunnel`).
    pub(super) fn relay_check(&mut self, now: Instant, local_index: u32) {
        let Some(r) = self.relays.get(local_index).cloned() else {
            return;
        };
        match r.kind {
            RelayKind::Forwarding => {
                let other_up = self
                    .relays
                    .find(r.peer, r.hop)
                    .is_some_and(|o| o.state == RelayState::Established);
                if r.state != RelayState::Established || !other_up {
                    self.remove_relay(local_index);
                }
            }
            RelayKind::Terminal => {
                let tunnel = !self.hostmap.tunnels_for(&r.peer).is_empty();
                let handshake = self.pending.index_for(&r.peer).is_some();
                if tunnel {
                    return;
                }
                if handshake {
                    self.check_relay_later(now, local_index);
                } else {
                    self.remove_relay(local_index);
                }
            }
        }
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
                None => self
                    .new_relay(0, relay, target, RelayKind::Terminal, RelayState::Requested)
                    .ok(),
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
                if let Err(reason) =
                    self.relay_request(now, idx, msg.initiator_relay_index, ends, out)
                {
                    out.events.push(Event::RelayRefused {
                        hop,
                        from: ends.from,
                        to: ends.to,
                        reason,
                    });
                }
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

    /// The peer on tunnel `idx` (the hop) asks, on its index `init`, for a relay from
    /// `ends.from` to `ends.to`: us as the far end, or us as the relay. `Err`: refused, with
    /// why (malformed or pointless requests are dropped without a word, as Go does).
    ///
    /// Go 1.11 checks only that `from` is not us and, to forward, that `relay.am_relay` is on;
    /// with no tunnel to the target it starts a handshake to it, unchecked. We check more, as a
    /// peer's request must not make us store or start things without bound: as the far end,
    /// the hop must be one of our `relay.relays` (the only hosts a requester can have learned to
    /// use for us); as the relay, `from` must be the requester itself, the target inside our
    /// vpn networks, and the handshake we start for it within the requester's budget
    /// ([`handshake::MAX_RELAY_HANDSHAKES_PER_REQUESTER`]); and every relay entry we make is
    /// bounded per host and in all ([`crate::hostmap::MAX_RELAYS_PER_HOST`],
    /// [`crate::hostmap::MAX_RELAYS`]) and goes if unused after [`RELAY_SETUP_TIMEOUT`].
    pub(super) fn relay_request(
        &mut self,
        now: Instant,
        idx: u32,
        init: u32,
        ends: RelayEnds,
        out: &mut Outputs,
    ) -> Result<(), RelayRefusal> {
        let relays = &self.cfg.relays;
        let Some((hop, from_is_hop, hop_is_our_relay)) = self.hostmap.get(idx).map(|t| {
            (
                t.vpn_addr,
                t.peer.vpn_addrs.contains(&ends.from),
                t.peer.vpn_addrs.iter().any(|a| relays.contains(a)),
            )
        }) else {
            return Ok(());
        };
        if self.pki.is_my_addr(&ends.from) || init == 0 {
            return Ok(());
        }
        if self.pki.is_my_addr(&ends.to) {
            // `relay.use_relays` is about our reaching others through relays; Go advertises
            // `relay.relays` whatever it says, so it does not gate this.
            if self.cfg.am_relay || !hop_is_our_relay {
                return Err(RelayRefusal::NotOurRelay);
            }
            return self.relay_request_to_us(now, hop, init, ends, out);
        }
        // Someone wants us to relay.
        if !self.cfg.am_relay {
            return Err(RelayRefusal::NotARelay);
        }
        let target = ends.to;
        if target == hop {
            return Ok(());
        }
        if !from_is_hop {
            return Err(RelayRefusal::ForeignFrom);
        }
        if !self.pki.in_my_networks(&target) {
            return Err(RelayRefusal::TargetOutsideNetworks);
        }
        let Some(ti) = self.hostmap.primary(&target) else {
            // No tunnel to the target yet: make one (as Go does); the requester's retry will
            // find it. Within the requester's budget: its requests alone must not fill the
            // pending table.
            if self.pending.index_for(&target).is_some() {
                return Ok(());
            }
            if !self.pending.relay_room(&hop) {
                return Err(RelayRefusal::HandshakeBudget);
            }
            if let Some(i) = self.start_handshake(now, target, out) {
                self.pending.started_for_relay(i, hop);
            }
            return Ok(());
        };
        if self.hostmap.get(ti).and_then(|t| t.remote()).is_none() {
            // Only relay to hosts we reach directly (relays do not chain).
            return Ok(());
        }
        let fwd_existing = self.relays.find(target, hop).cloned();
        let req_existing = self.relays.find(hop, target).cloned();
        if fwd_existing
            .as_ref()
            .is_some_and(|r| r.kind != RelayKind::Forwarding)
            || req_existing
                .as_ref()
                .is_some_and(|r| r.kind != RelayKind::Forwarding)
        {
            return Ok(());
        }
        // Both halves fit, or neither is made.
        let new = usize::from(fwd_existing.is_none()) + usize::from(req_existing.is_none());
        self.relays.room_for(target, hop, new)?;
        // Our index on the target's tunnel.
        let fwd = match fwd_existing {
            Some(r) => r.local_index,
            None => {
                let i =
                    self.new_relay(0, target, hop, RelayKind::Forwarding, RelayState::Requested)?;
                self.check_relay_later(now, i);
                i
            }
        };
        // The requester's side, on its tunnel, answering to its index.
        match req_existing {
            Some(r) => {
                if r.remote_index != init {
                    if r.state == RelayState::Established {
                        // Asked afresh: it must be set up again in time.
                        self.check_relay_later(now, fwd);
                    }
                    self.relays
                        .update(r.local_index, init, RelayState::PeerRequested);
                }
            }
            None => {
                if let Err(e) = self.new_relay(
                    init,
                    hop,
                    target,
                    RelayKind::Forwarding,
                    RelayState::PeerRequested,
                ) {
                    self.remove_relay(fwd);
                    return Err(e);
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
        Ok(())
    }

    /// `hop` asks, on its index `init`, for a relay from `ends.from` to us: our end of the relay
    /// is ready as soon as we answer.
    fn relay_request_to_us(
        &mut self,
        now: Instant,
        hop: IpAddr,
        init: u32,
        ends: RelayEnds,
        out: &mut Outputs,
    ) -> Result<(), RelayRefusal> {
        let from = ends.from;
        let local = match self.relays.find(hop, from).cloned() {
            // Ours (we asked `hop` for it), or asked again: on a new index if the hop had to
            // set its half up anew (the requester restarted). The entry keeps its local index,
            // so the far end's frames and any pending `RelayCheck` still find it.
            Some(r) if r.kind == RelayKind::Terminal => {
                self.relays
                    .update(r.local_index, init, RelayState::Established);
                r.local_index
            }
            _ => {
                let local = self.new_relay(
                    init,
                    hop,
                    from,
                    RelayKind::Terminal,
                    RelayState::Established,
                )?;
                self.check_relay_later(now, local);
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
        Ok(())
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

#[cfg(test)]
mod tests {
    //! CreateRelayRequest abuse (issue 13 finding 2): what a peer with a valid certificate can
    //! make a relay, or a relay's far end, start or store is bounded; honest relays still work.
    use std::net::IpAddr;
    use std::time::Duration;

    use nebula_cert::{Curve, Version};
    use proto::control::NebulaControlType;

    use crate::engine::{EngineConfig, Event, Outputs, RelayRefusal};
    use crate::sim::{static_config, udp_packet, Sim, TestCa};

    const R_VPN: &str = "10.42.0.3";
    const H_VPN: &str = "10.42.0.8";
    const V_VPN: &str = "10.42.0.9";
    const R_ADDR: &str = "192.0.2.3:4242";
    const H_ADDR: &str = "192.0.2.8:4242";
    const V_ADDR: &str = "192.0.2.9:4242";

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    /// Relay R (`am_relay`); H, a host with a valid certificate that knows R and V; V, which
    /// names R in `relay.relays`. Tunnels H-R, V-R and H-V are up.
    fn world(seed: u64) -> (Sim, usize, usize, usize) {
        let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
        let mut sim = Sim::new(seed);
        let r = sim.add_node(
            "r",
            R_ADDR,
            EngineConfig {
                am_relay: true,
                use_relays: false,
                ..static_config(&[])
            },
            ca.pki("r", &format!("{R_VPN}/16")),
        );
        let h = sim.add_node(
            "h",
            H_ADDR,
            static_config(&[(R_VPN, R_ADDR), (V_VPN, V_ADDR)]),
            ca.pki("h", &format!("{H_VPN}/16")),
        );
        let v = sim.add_node(
            "v",
            V_ADDR,
            EngineConfig {
                relays: vec![ip(R_VPN)],
                ..static_config(&[(R_VPN, R_ADDR)])
            },
            ca.pki("v", &format!("{V_VPN}/16")),
        );
        let hello = |from: &str, to: &str| {
            udp_packet(
                from.parse().expect("v4"),
                to.parse().expect("v4"),
                1,
                2,
                b"hi",
            )
        };
        sim.inside(h, &hello(H_VPN, R_VPN));
        sim.inside(v, &hello(V_VPN, R_VPN));
        sim.inside(h, &hello(H_VPN, V_VPN));
        sim.run_for(Duration::from_secs(1));
        for (a, b) in [
            (h, R_VPN),
            (v, R_VPN),
            (r, H_VPN),
            (r, V_VPN),
            (h, V_VPN),
            (v, H_VPN),
        ] {
            assert!(sim.has_tunnel(a, b), "{} -> {b}", sim.nodes[a].name);
        }
        (sim, r, h, v)
    }

    /// Node `from` sends a CreateRelayRequest (`from_addr` -> `to`, its index `init`) on its
    /// tunnel to `hop`.
    fn request(sim: &mut Sim, from: usize, hop: &str, init: u32, from_addr: IpAddr, to: IpAddr) {
        let mut out = Outputs::default();
        sim.nodes[from].engine.send_relay_control(
            ip(hop),
            NebulaControlType::CreateRelayRequest,
            init,
            0,
            from_addr,
            to,
            &mut out,
        );
        sim.dispatch(from, out);
    }

    /// How many times node `i` refused a relay request for `reason`.
    fn refusals(sim: &Sim, i: usize, reason: RelayRefusal) -> usize {
        sim.nodes[i]
            .events
            .iter()
            .filter(|e| matches!(e, Event::RelayRefused { reason: r, .. } if *r == reason))
            .count()
    }

    fn nth_addr(base: [u8; 2], n: u32) -> IpAddr {
        let [hi, lo] = u16::try_from(n).expect("small n").to_be_bytes();
        IpAddr::from([base[0], base[1], hi, lo.max(1)])
    }

    #[test]
    fn a_flood_of_relay_requests_cannot_fill_the_relays_pending_table() {
        let (mut sim, r, h, v) = world(21);
        let before = sim.nodes[r].engine.pending_handshakes();
        // 3000 requests for hosts nobody has a tunnel to: inside our network, and outside it.
        for n in 0..3000u32 {
            let to = if n % 3 == 0 {
                nth_addr([172, 16], n)
            } else {
                nth_addr([10, 42], 256 + n)
            };
            request(&mut sim, h, R_VPN, 1000 + n, ip(H_VPN), to);
            if n % 100 == 0 {
                sim.run_for(Duration::from_millis(20));
            }
        }
        sim.run_for(Duration::from_millis(200));
        let pending = sim.nodes[r].engine.pending_handshakes() - before;
        assert!(
            pending <= crate::handshake::MAX_RELAY_HANDSHAKES_PER_REQUESTER,
            "{pending} handshakes started for one requester"
        );
        // Nothing of it stayed in the relay table either; each refusal was told.
        assert!(sim.nodes[r].engine.relays().is_empty());
        assert_eq!(refusals(&sim, r, RelayRefusal::TargetOutsideNetworks), 1000);
        assert!(refusals(&sim, r, RelayRefusal::HandshakeBudget) > 1900);
        // Requests from someone else than the requester are refused too.
        request(&mut sim, h, R_VPN, 99, ip(V_VPN), ip("10.42.7.7"));
        sim.run_for(Duration::from_millis(50));
        assert_eq!(refusals(&sim, r, RelayRefusal::ForeignFrom), 1);
        // Once those handshakes time out, the budget is back.
        sim.run_for(Duration::from_secs(10));
        assert_eq!(sim.nodes[r].engine.pending_handshakes(), 0);
        // An honest request still works: H asks R for a relay to V, V answers through R.
        request(&mut sim, h, R_VPN, 77, ip(H_VPN), ip(V_VPN));
        sim.run_for(Duration::from_millis(200));
        let rel = sim.nodes[r].engine.relays();
        assert_eq!(rel.len(), 2, "two forwarding halves");
        assert!(rel
            .iter()
            .all(|x| x.state == crate::hostmap::RelayState::Established));
        assert_eq!(sim.nodes[v].engine.relays().len(), 1);
    }

    #[test]
    fn a_host_that_is_not_our_relay_cannot_make_us_an_end() {
        let (mut sim, _r, h, v) = world(22);
        // H is not in V's relay.relays, yet asks V to be the end of relays from 2000 hosts.
        for n in 0..2000u32 {
            request(
                &mut sim,
                h,
                V_VPN,
                5000 + n,
                nth_addr([10, 42], 300 + n),
                ip(V_VPN),
            );
        }
        sim.run_for(Duration::from_millis(200));
        assert_eq!(sim.nodes[v].engine.relays().len(), 0);
        assert!(refusals(&sim, v, RelayRefusal::NotOurRelay) > 1900);
        // V is no relay either: it forwards nothing for H.
        request(&mut sim, h, V_VPN, 9, ip(H_VPN), ip(R_VPN));
        sim.run_for(Duration::from_millis(50));
        assert_eq!(refusals(&sim, v, RelayRefusal::NotARelay), 1);
        assert_eq!(sim.nodes[v].engine.relays().len(), 0);
    }

    #[test]
    fn our_relay_cannot_make_us_hold_unbounded_relay_state() {
        let (mut sim, r, _h, v) = world(23);
        // R is V's relay, but (compromised or buggy) asks V to be the end of relays from more
        // hosts than one hop may carry.
        let n_req = crate::hostmap::MAX_RELAYS_PER_HOST as u32 + 500;
        for n in 0..n_req {
            request(
                &mut sim,
                r,
                V_VPN,
                5000 + n,
                nth_addr([10, 42], 300 + n),
                ip(V_VPN),
            );
            if n % 100 == 0 {
                sim.run_for(Duration::from_millis(5));
            }
        }
        sim.run_for(Duration::from_millis(200));
        let held = sim.nodes[v].engine.relays().len();
        assert!(
            held <= crate::hostmap::MAX_RELAYS_PER_HOST,
            "{held} relay entries on one hop"
        );
        assert!(held > 0);
        assert!(refusals(&sim, v, RelayRefusal::TooManyForHost) >= 400);
        // None of those hosts ever makes a tunnel through them: they go.
        sim.run_for(crate::hostmap::RELAY_SETUP_TIMEOUT * 2);
        assert_eq!(sim.nodes[v].engine.relays().len(), 0);
    }
}
