//! Handshakes in both roles: starting and retrying ours (the pending table), answering stage 1
//! (retransmits by the host map's stage-1 hash), reading stage 2, and installing the tunnel.

use super::*;

impl Engine {
    pub(super) fn handle_handshake(
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

    /// Begin a handshake to `vpn` as initiator. Returns the pending local index.
    pub(super) fn start_handshake(
        &mut self,
        now: Instant,
        vpn: IpAddr,
        out: &mut Outputs,
    ) -> Option<u32> {
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
        if !self.pending.insert(pending) {
            return None;
        }
        self.counters.handshakes_initiated += 1;
        self.timers.add_after(
            now,
            self.cfg.handshake_try_interval,
            Timer::HandshakeRetry { local_index },
        );
        // Static hosts are tried at once; so are addresses guessed by `calculated_remotes`.
        // Everyone else waits for the lighthouse.
        let has_static = self
            .remotes
            .get(&vpn)
            .is_some_and(|r| !r.static_addrs().is_empty());
        let calculated = if has_static {
            Vec::new()
        } else {
            self.calculated_remotes_for(vpn)
        };
        let has_calculated = !calculated.is_empty();
        if has_calculated {
            self.remotes
                .entry(vpn)
                .or_default()
                .set_calculated(calculated);
        }
        if has_static || has_calculated {
            self.handshake_attempt(now, local_index, false, out);
        }
        self.query_lighthouses(now, vpn, out);
        Some(local_index)
    }

    /// Addresses `lighthouse.calculated_remotes` guesses for `vpn`, filtered like lighthouse answers.
    pub(super) fn calculated_remotes_for(&self, vpn: IpAddr) -> Vec<SocketAddr> {
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
    pub(super) fn should_add(&self, vpn: IpAddr, addr: SocketAddr) -> bool {
        self.cfg.remote_allow_list.allows(vpn, addr.ip()) && !self.pki.in_my_networks(&addr.ip())
    }

    /// One handshake attempt: send stage 1 to every known address.
    pub(super) fn handshake_attempt(
        &mut self,
        now: Instant,
        idx: u32,
        from_timer: bool,
        out: &mut Outputs,
    ) {
        let Some(p) = self.pending.get_mut(idx) else {
            return;
        };
        let vpn = p.vpn_addr;
        if from_timer && p.attempts >= self.cfg.handshake_retries {
            self.pending.remove(idx);
            self.counters.handshakes_timed_out += 1;
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
            self.timers.add_after(
                now,
                self.cfg.handshake_try_interval.saturating_mul(attempts),
                Timer::HandshakeRetry { local_index: idx },
            );
            if addrs.len() <= 1 && attempts == 5 {
                self.query_lighthouses(now, vpn, out);
            }
        }
    }

    /// We are the responder: a stage-1 message arrived.
    pub(super) fn handshake_stage1(
        &mut self,
        now: Instant,
        via: Via,
        datagram: &[u8],
        out: &mut Outputs,
    ) {
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
            .map(|t| t.stage2().map(<[u8]>::to_vec));
        if let Some(s2) = seen {
            if let Some(s2) = s2 {
                self.send_via(via, &s2, out);
            }
            return;
        }
        if let Some((local_index, resp)) = self.answer_stage1(now, via, body, out) {
            self.install_responder_tunnel(now, via, body, local_index, resp, out);
        }
    }

    /// Read a new stage 1 and decide whether to answer it: the peer's certificate, our allow
    /// lists, and whether a working tunnel with that host is at least as new. `None`: refused
    /// (told as an event) or not needed.
    fn answer_stage1(
        &mut self,
        now: Instant,
        via: Via,
        body: &[u8],
        out: &mut Outputs,
    ) -> Option<(u32, handshake::Response)> {
        let unix = self.unix_nanos(now);
        let unix_secs = self.unix_secs(now);
        let local_index = self.allocate_index()?;
        let refuse = |reason: String, out: &mut Outputs| {
            out.events.push(Event::HandshakeRejected {
                from: via.log_addr(),
                reason,
            });
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
                refuse(e.to_string(), out);
                return None;
            }
        };
        let vpn = resp.vpn_addrs[0];
        if resp.vpn_addrs.iter().any(|a| self.pki.is_my_addr(a)) {
            refuse("refusing to handshake with myself".into(), out);
            return None;
        }
        if let Via::Udp(a) = via {
            if !self
                .cfg
                .remote_allow_list
                .allows_all(&resp.vpn_addrs, a.ip())
            {
                refuse(
                    format!("lighthouse.remote_allow_list denies {a} for {vpn}"),
                    out,
                );
                return None;
            }
        }
        // An existing, working tunnel with a handshake at least as new wins ("handshake too old"),
        // unless we initiated it (as 1.11).
        if let Some(cur) = self.hostmap.primary(&vpn).and_then(|i| self.hostmap.get(i)) {
            if !cur.initiator && cur.peer_handshake_time >= resp.peer_time && cur.is_confirmed() {
                let ci = cur.local_index;
                self.send_on_tunnel(ci, MessageType::Test, subtype::TEST_REQUEST, &[], out);
                return None;
            }
        }
        Some((local_index, resp))
    }

    /// Install the tunnel an accepted stage 1 made, and answer with stage 2.
    fn install_responder_tunnel(
        &mut self,
        now: Instant,
        via: Via,
        body: &[u8],
        local_index: u32,
        resp: handshake::Response,
        out: &mut Outputs,
    ) {
        let vpn = resp.vpn_addrs[0];
        let header = Header::new(
            MessageType::Handshake,
            subtype::HANDSHAKE_IX_PSK0,
            resp.peer_index,
            2,
        );
        let mut datagram2 = header.to_bytes().to_vec();
        datagram2.extend_from_slice(&resp.stage2);
        let tunnel = Tunnel::new(NewTunnel {
            local_index,
            remote_index: resp.peer_index,
            vpn_addrs: resp.vpn_addrs,
            peer_ca: self.pki.ca_label(&resp.peer_cert),
            peer_cert: resp.peer_cert,
            session: resp.session,
            remote: via.udp(),
            relays: via.relays(),
            initiator: false,
            peer_handshake_time: resp.peer_time,
            stage1: Some(crate::hostmap::stage1_digest(body)),
            stage2_datagram: Some(datagram2.clone()),
            cert_version: resp.our_version,
            pki_generation: self.pki_generation,
            now,
        });
        let cert_name = tunnel.peer.cert.name().to_string();
        // Stage 1 is not authenticated and may be a replay from anywhere: the tunnel it made
        // carries none of our traffic (it is not primary, and our own handshake to the host, if
        // any, goes on) until the peer proves it holds the keys; then `on_confirmed` promotes it
        // and sends what we queued. Never confirmed, it goes at its first connection check.
        self.install_tunnel(now, tunnel, false, via, out);
        self.send_via(via, &datagram2, out);
        out.events.push(Event::TunnelUp {
            vpn_addr: vpn,
            remote: via.udp(),
            local_index,
            initiator: false,
            cert_name,
        });
    }

    /// We are the initiator: stage 2 for our pending handshake `idx` arrived.
    pub(super) fn handshake_stage2(
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
                self.remotes.entry(p.vpn_addr).or_default().block(a);
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
            peer_ca: self.pki.ca_label(&done.peer_cert),
            peer_cert: done.peer_cert,
            session: done.session,
            remote: via.udp(),
            relays: via.relays(),
            initiator: true,
            peer_handshake_time: done.peer_time,
            stage1: None,
            stage2_datagram: None,
            cert_version: p.version,
            pki_generation: self.pki_generation,
            now,
        });
        let cert_name = tunnel.peer.cert.name().to_string();
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
        let took = now.saturating_duration_since(p.started);
        self.counters
            .handshakes
            .record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
        let nothing_queued = p.queued.is_empty();
        self.counters.cached_packets_sent += p.queued.len() as u64;
        for q in p.queued {
            self.send_queued(now, idx, q, out);
        }
        if nothing_queued {
            // Prove our keys on the new tunnel at once: the peer sends nothing on a tunnel it
            // answered until we have (see `HostMap::primary`), and on a re-handshake it moves
            // over from the working one only then.
            self.send_on_tunnel(idx, MessageType::Test, subtype::TEST_REQUEST, &[], out);
        }
        if self.cfg.lighthouses.contains(&vpn) {
            self.flush_deferred(now, out);
        }
    }

    /// Put a finished tunnel in the host map (as primary or behind the current one) and start its
    /// upkeep: connection checks, and the peer's address learned (or a direct probe if relayed).
    pub(super) fn install_tunnel(
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
        self.timers.add_after(
            now,
            self.cfg.connection_alive_interval,
            Timer::ConnectionCheck { local_index },
        );
    }

    /// Send what a pending handshake to `vpn` had queued, over the current primary tunnel.
    pub(super) fn flush_pending_for(&mut self, now: Instant, vpn: IpAddr, out: &mut Outputs) {
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

    pub(super) fn send_queued(
        &mut self,
        now: Instant,
        idx: u32,
        q: QueuedPacket,
        out: &mut Outputs,
    ) {
        match q {
            QueuedPacket::Inside(packet) => {
                let Some(t) = self.hostmap.get(idx) else {
                    return;
                };
                let mut frame = vec![0u8; HEADER_LEN + packet.len() + TAG_LEN];
                frame[HEADER_LEN..HEADER_LEN + packet.len()].copy_from_slice(&packet);
                let sealed = self.seal_outbound(now, t, &mut frame);
                match sealed {
                    Ok(()) => self.send_sealed(idx, frame, out),
                    Err(refusal) if refusal.rejects() => {
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
}

pub(super) fn reorder_first(mut addrs: Vec<IpAddr>, first: IpAddr) -> Vec<IpAddr> {
    addrs.retain(|a| *a != first);
    addrs.insert(0, first);
    addrs
}
