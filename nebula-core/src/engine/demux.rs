//! Demultiplexing: whose datagram this is (header, local index) and local index allocation;
//! unknown indexes and the recvError messages they cause.

use super::*;

impl Engine {
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

    pub(super) fn handle_packet(
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
                    if refusal.rejects() {
                        if let Some(reply) = crate::filter::reject_reply(&datagram[start..end]) {
                            self.send_on_tunnel(idx, MessageType::Message, 0, &reply, out);
                        }
                    }
                    OutsideOutcome::Dropped(refusal.reason())
                }
                Err((refusal, None)) => OutsideOutcome::Dropped(refusal.reason()),
            };
        }
        let (start, end) = match crate::dataplane::open(
            &t.session,
            crate::aead::KeyUse::Control,
            h.message_counter,
            datagram,
        ) {
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

    pub(super) fn allocate_index(&mut self) -> Option<u32> {
        for _ in 0..32 {
            let i = self.rng.next_u32();
            if i != 0 && !self.hostmap.contains_index(i) && !self.pending.contains_index(i) {
                return Some(i);
            }
        }
        None
    }

    pub(super) fn maybe_send_recv_error(&mut self, via: Via, index: u32, out: &mut Outputs) {
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

    pub(super) fn handle_recv_error(
        &mut self,
        now: Instant,
        via: Via,
        h: &Header,
        out: &mut Outputs,
    ) {
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
}

pub(super) fn is_private(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}
