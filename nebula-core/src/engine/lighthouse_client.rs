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
        self.counters.lighthouse_tx[lighthouse_kind(msg.known_type())] += 1;
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
        self.counters.lighthouse_rx[lighthouse_kind(msg.known_type())] += 1;
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
                        self.counters.lighthouse_tx[lighthouse_kind(reply.known_type())] += 1;
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
                // Only answers we can use: a host we are handshaking with, have a tunnel to, or
                // already keep addresses for (a re-query). An unasked-for answer would make a
                // new entry per message.
                if self.pending.index_for(&vpn).is_none()
                    && self.hostmap.tunnels_for(&vpn).is_empty()
                    && !self.remotes.contains_key(&vpn)
                {
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
                for a in crate::remotes::capped_per_family(addrs) {
                    if !self.should_add(vpn, a) {
                        continue;
                    }
                    if self.queued_punches >= super::MAX_QUEUED_PUNCHES {
                        break;
                    }
                    self.queued_punches += 1;
                    let punch = Timer::Punch {
                        ip: a.ip(),
                        port: a.port(),
                    };
                    self.timers.add_after(now, self.cfg.punchy.delay, punch);
                }
                if self.cfg.punchy.respond && self.queued_punches < super::MAX_QUEUED_PUNCHES {
                    self.queued_punches += 1;
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

#[cfg(test)]
mod tests {
    //! What a lighthouse's messages can make a client store or queue is bounded (issue 13,
    //! finding 1's class): answers nobody asked for, and punch notifications by the thousand.
    use std::net::{IpAddr, SocketAddr};
    use std::time::Duration;

    use nebula_cert::{Curve, Version};
    use prost::Message as _;
    use proto::header::MessageType;
    use proto::lighthouse::{AddrEncoding, NebulaMeta, NebulaMetaDetails, NebulaMetaType};

    use crate::engine::{EngineConfig, Outputs, MAX_QUEUED_PUNCHES};
    use crate::sim::{static_config, udp_packet, Sim, TestCa};

    const C_VPN: &str = "10.42.0.2";
    const L_VPN: &str = "10.42.0.1";
    const C_ADDR: &str = "192.0.2.2:4242";
    const L_ADDR: &str = "192.0.2.1:4242";

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    /// Client C with lighthouse L, their tunnel up.
    fn world() -> (Sim, usize, usize) {
        let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
        let mut sim = Sim::new(5);
        let l = sim.add_node(
            "l",
            L_ADDR,
            static_config(&[]),
            ca.pki("l", &format!("{L_VPN}/16")),
        );
        let c = sim.add_node(
            "c",
            C_ADDR,
            EngineConfig {
                lighthouses: vec![ip(L_VPN)],
                punchy: crate::engine::PunchyConfig {
                    punch: true,
                    respond: true,
                    ..Default::default()
                },
                ..static_config(&[(L_VPN, L_ADDR)])
            },
            ca.pki("c", &format!("{C_VPN}/16")),
        );
        let hello = udp_packet(
            C_VPN.parse().expect("v4"),
            L_VPN.parse().expect("v4"),
            1,
            2,
            b"hi",
        );
        sim.inside(c, &hello);
        sim.run_for(Duration::from_secs(1));
        assert!(sim.has_tunnel(l, C_VPN) && sim.has_tunnel(c, L_VPN));
        (sim, l, c)
    }

    /// L sends `msg` to C on their tunnel.
    fn from_lighthouse(sim: &mut Sim, l: usize, msg: &NebulaMeta) {
        let idx = sim.nodes[l]
            .engine
            .hostmap
            .primary(&ip(C_VPN))
            .expect("tunnel");
        let mut out = Outputs::default();
        let bytes = msg.encode_to_vec();
        sim.nodes[l]
            .engine
            .send_on_tunnel(idx, MessageType::LightHouse, 0, &bytes, &mut out);
        sim.dispatch(l, out);
    }

    fn about(
        kind: NebulaMetaType,
        vpn: IpAddr,
        addrs: impl Iterator<Item = SocketAddr>,
    ) -> NebulaMeta {
        let mut d = NebulaMetaDetails::for_vpn_addr(vpn, AddrEncoding::V1).expect("v4");
        for a in addrs {
            d.push_underlay(a);
        }
        NebulaMeta::new(kind, d)
    }

    #[test]
    fn answers_nobody_asked_for_are_not_kept() {
        let (mut sim, l, c) = world();
        let before = sim.nodes[c].engine.remote_lists();
        for n in 0..2_000u32 {
            let vpn = IpAddr::from([10, 42, 100 + (n / 250) as u8, (n % 250) as u8 + 1]);
            let addr = SocketAddr::from(([198, 51, 100, 7], 1000 + n as u16));
            let msg = about(NebulaMetaType::HostQueryReply, vpn, std::iter::once(addr));
            from_lighthouse(&mut sim, l, &msg);
        }
        sim.run_for(Duration::from_millis(100));
        assert!(sim.nodes[c]
            .engine
            .remotes_for(&ip("10.42.100.1"))
            .is_none());
        assert_eq!(sim.nodes[c].engine.remote_lists(), before);
    }

    #[test]
    fn a_flood_of_punch_notifications_queues_a_bounded_number_of_punches() {
        let (mut sim, l, c) = world();
        let wire = sim.wire_log.len();
        // 1,000 notifications of 50 addresses each, well within one punch delay.
        for n in 0..1_000u32 {
            let vpn = IpAddr::from([10, 42, 9, (n % 250) as u8 + 1]);
            let addrs = (0..50u16).map(|p| SocketAddr::from(([203, 0, 113, 9], 2000 + p)));
            let msg = about(NebulaMetaType::HostPunchNotification, vpn, addrs);
            from_lighthouse(&mut sim, l, &msg);
        }
        assert!(sim.nodes[c].engine.queued_punches() <= MAX_QUEUED_PUNCHES);
        // Past `punchy.delay` and `punchy.respond_delay`: every queued timer has fired.
        sim.run_for(Duration::from_secs(6));
        let c_addr: SocketAddr = C_ADDR.parse().expect("addr");
        let punches = sim.wire_log[wire..]
            .iter()
            .filter(|(_, d)| d.from == c_addr && d.payload == [0])
            .count();
        assert!(
            punches <= MAX_QUEUED_PUNCHES,
            "{punches} punches sent for one burst of notifications"
        );
        assert!(punches > 0, "punching still works");
        assert_eq!(
            sim.nodes[c].engine.queued_punches(),
            0,
            "fired punches leave the count"
        );
    }
}
