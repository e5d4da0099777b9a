//! The outbound path: a TUN packet to its tunnel (direct or through a relay), and every
//! way the engine sends a sealed message: on a tunnel, through a relay hop, back the way it came.

use super::*;

impl Engine {
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
        let sealed = self.seal_outbound(now, t, &mut buf[at..at + total]);
        if let Err(refusal) = sealed {
            if refusal.rejects() {
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

    /// The outbound per-packet core on tunnel `t`: its firewall verdict for the packet in
    /// `frame` (`header room || packet || tag room`), then the seal.
    pub(super) fn seal_outbound(
        &self,
        now: Instant,
        t: &Tunnel,
        frame: &mut [u8],
    ) -> Result<(), Refusal> {
        crate::dataplane::outbound(
            &*self.filter,
            now,
            &t.session,
            t.remote_index,
            &t.peer_identity(),
            frame,
        )
    }

    /// How to reach a tunnel that has no underlay address: the first of its relays with an
    /// established relay index and a direct tunnel to the relay.
    pub(super) fn relay_route(&self, t: &Tunnel) -> Route {
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
    pub(super) fn wrap_relay_in_place(
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

    pub(super) fn queue_for_handshake(
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
        let Some(p) = self.pending.get_mut(idx) else {
            return InsideOutcome::Dropped(DropReason::HandshakeQueueFull);
        };
        let outcome = match p.queued.push(packet) {
            Ok(()) => return InsideOutcome::Queued,
            Err(QueueRefusal::TooMany) => InsideOutcome::Dropped(DropReason::HandshakeQueueFull),
            Err(QueueRefusal::OverBudget) => {
                InsideOutcome::Dropped(DropReason::HandshakeQueueBytes)
            }
        };
        self.counters.cached_packets_dropped += 1;
        outcome
    }

    /// Send an encrypted control-plane message to `vpn`, queueing it behind a handshake if needed.
    pub(super) fn send_to_vpn(
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
    pub(super) fn send_on_tunnel(
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
    pub(super) fn send_sealed(&mut self, idx: u32, datagram: Vec<u8>, out: &mut Outputs) {
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
    pub(super) fn send_through_relay(
        &mut self,
        relay_index: u32,
        inner: &[u8],
        out: &mut Outputs,
    ) -> bool {
        let Some((hi, relay_remote, to)) = self.relay_hop(relay_index) else {
            return false;
        };
        let Some(t) = self.hostmap.get_mut(hi) else {
            return false;
        };
        let Some(d) = seal_relay_frame(t, relay_remote, inner) else {
            return false;
        };
        out.transmits.push(Transmit { to, payload: d });
        true
    }

    /// Where frames on our relay index `relay_index` go: the hop's primary tunnel, the hop's
    /// index for the relay, and the hop's underlay address. `None` unless the relay is
    /// established and the hop is directly reachable.
    pub(super) fn relay_hop(&self, relay_index: u32) -> Option<(u32, u32, SocketAddr)> {
        let r = self.relays.get(relay_index)?;
        if r.state != RelayState::Established {
            return None;
        }
        let hi = self.hostmap.primary(&r.hop)?;
        let to = self.hostmap.get(hi)?.remote()?;
        Some((hi, r.remote_index, to))
    }

    /// Send a datagram back the way a packet came: to its UDP source or through its relay.
    pub(super) fn send_via(&mut self, via: Via, payload: &[u8], out: &mut Outputs) {
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
}

/// A relay frame on hop tunnel `t`: header (message/relay, the hop's relay index, the tunnel's
/// next counter) ‖ `inner` in the clear ‖ tag over both (PROTOCOL.md §6).
pub(super) fn seal_relay_frame(t: &mut Tunnel, relay_remote: u32, inner: &[u8]) -> Option<Vec<u8>> {
    let mut d = vec![0u8; HEADER_LEN + inner.len() + TAG_LEN];
    d[HEADER_LEN..HEADER_LEN + inner.len()].copy_from_slice(inner);
    relay_frame_in_place(&t.session, relay_remote, &mut d)?;
    Some(d)
}

/// Make `frame` (`header room || inner packet || TAG_LEN room`) a relay frame on the hop tunnel's
/// `session`: a relay header for the hop's index `relay_remote`, and a tag over header and packet
/// (relay frames are authenticated, not encrypted).
pub(super) fn relay_frame_in_place(
    session: &Session,
    relay_remote: u32,
    frame: &mut [u8],
) -> Option<()> {
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
    let tag = session
        .send
        .seal_ad_only(crate::aead::KeyUse::Data, counter, &frame[..tag_at])
        .ok()?;
    frame[tag_at..].copy_from_slice(&tag);
    session.mark_out();
    session.note_sent(tag_at - HEADER_LEN);
    Some(())
}

/// Seal one message for a tunnel into a fresh datagram (control plane).
pub(super) fn seal_message(t: &Tunnel, mt: MessageType, st: u8, payload: &[u8]) -> Option<Vec<u8>> {
    crate::dataplane::seal_datagram(&t.session, t.remote_index, mt, st, payload)
}
