//! The lighthouse client: host updates and queries to our lighthouses, messages deferred until
//! a lighthouse tunnel is up, and answers and punch notifications from them.

use super::*;

impl Engine {
    pub(super) fn is_lighthouse(&self, vpn: &IpAddr) -> bool {
        self.cfg.lighthouses.contains(vpn)
    }

    pub(super) fn query_lighthouses(&mut self, now: Instant, vpn: IpAddr, out: &mut Outputs) {
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
    pub(super) fn version_towards(&self, vpn: &IpAddr) -> Version {
        self.tunnel_to(vpn)
            .map(|t| t.cert_version)
            .unwrap_or_else(|| self.pki.initiating_version())
    }

    pub(super) fn send_lighthouse_message(
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
            self.deferred.push(lh, bytes);
            self.connect(now, lh, out);
        }
    }

    pub(super) fn flush_deferred(&mut self, _now: Instant, out: &mut Outputs) {
        let hostmap = &self.hostmap;
        let ready = self.deferred.take_ready(|lh| hostmap.primary(lh).is_some());
        for (lh, msg) in ready {
            if let Some(idx) = self.hostmap.primary(&lh) {
                self.send_on_tunnel(idx, MessageType::LightHouse, 0, &msg, out);
            }
        }
    }

    pub(super) fn send_host_updates(&mut self, now: Instant, out: &mut Outputs) {
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

    pub(super) fn handle_lighthouse(
        &mut self,
        now: Instant,
        idx: u32,
        payload: &[u8],
        out: &mut Outputs,
    ) {
        // A lighthouse decodes host updates (up to a datagram of addresses and relays) only
        // within each tunnel's budget; queries are cheap and always answered.
        if self.cfg.am_lighthouse && !lighthouse::is_plain_query(payload) {
            let hostmap = &self.hostmap;
            if !self
                .update_budget
                .take(now, idx, hostmap.len(), |i| hostmap.get(i).is_some())
            {
                return;
            }
        }
        let Ok(msg) = NebulaMeta::decode(payload) else {
            return;
        };
        let Some(t) = self.hostmap.get(idx) else {
            return;
        };
        let from_vpn = t.peer.vpn_addrs.clone();
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
                let relays = crate::remotes::distinct_capped(
                    lighthouse::parse_relays(&msg)
                        .into_iter()
                        .filter(|r| *r != vpn && !self.pki.is_my_addr(r)),
                    crate::remotes::MAX_RELAYS,
                );
                let entry = self.remotes.entry(vpn).or_default();
                let known = entry.relays();
                let new_relays = relays.iter().any(|r| !known.contains(r));
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
                    let punch = Timer::Punch {
                        ip: a.ip(),
                        port: a.port(),
                    };
                    self.timers.add_after(now, self.cfg.punchy.delay, punch);
                }
                if self.cfg.punchy.respond {
                    self.timers.add_after(
                        now,
                        self.cfg.punchy.respond_delay,
                        Timer::PunchRespond { vpn },
                    );
                }
            }
            _ => {}
        }
    }
}
