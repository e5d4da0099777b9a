//! What the debug console (`sshd`) reads from the engine, as plain data, and the few things it
//! asks the engine to do (close, create, re-point a tunnel; ask the lighthouses).
//!
//! Every query copies what it needs out of the owners (host map, pending table, address book,
//! relay table) so the caller can format it without holding the engine.

use super::*;

use crate::lighthouse::KnownHost;

/// One host of the host map or of the pending handshakes (Go's `ControlHostInfo`).
#[derive(Clone, Debug, PartialEq)]
pub struct HostView {
    pub vpn_addrs: Vec<IpAddr>,
    pub local_index: u32,
    pub remote_index: u32,
    /// Every underlay address we know for the host, preferred ranges first.
    pub remote_addrs: Vec<SocketAddr>,
    /// The peer's certificate (`None` while handshaking).
    pub cert: Option<Certificate>,
    /// The last send counter used on the tunnel.
    pub message_counter: u64,
    /// Where the tunnel sends now (`None`: relayed only, or not known yet).
    pub current_remote: Option<SocketAddr>,
    /// Relays this host is reached through.
    pub relays_to_me: Vec<IpAddr>,
    /// Hosts we relay for over this host's tunnel.
    pub relays_through_me: Vec<IpAddr>,
}

/// What one source told us about a host's addresses (one entry of Go's `CacheMap`): `owner` is
/// the lighthouse that answered, the host itself for what we saw, or we for `static_host_map`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrCache {
    pub owner: IpAddr,
    pub learned: Vec<SocketAddr>,
    pub reported: Vec<SocketAddr>,
    pub relays: Vec<IpAddr>,
}

/// One relay index, as the console prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayView {
    pub hop: IpAddr,
    pub peer: IpAddr,
    pub local_index: u32,
    pub remote_index: u32,
    pub forwarding: bool,
    pub established: bool,
}

/// What [`Engine::create_tunnel`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateTunnel {
    AlreadyExists,
    AlreadyHandshaking,
    Created,
    /// No handshake could start (our own address, or the pending table is full).
    Refused,
}

impl Engine {
    fn host_view(&self, t: &Tunnel) -> HostView {
        let vpn_addrs = t.peer.vpn_addrs.clone();
        let remote_addrs = self
            .remotes
            .get(&t.vpn_addr)
            .map(|r| r.addrs(&self.cfg.preferred_ranges))
            .unwrap_or_default();
        let mut relays_through_me: Vec<IpAddr> = Vec::new();
        for i in self.relays.involving(t.vpn_addr) {
            if let Some(r) = self.relays.get(i) {
                if r.kind == RelayKind::Forwarding
                    && r.hop == t.vpn_addr
                    && !relays_through_me.contains(&r.peer)
                {
                    relays_through_me.push(r.peer);
                }
            }
        }
        HostView {
            vpn_addrs,
            local_index: t.local_index,
            remote_index: t.remote_index,
            remote_addrs,
            cert: Some(t.peer.cert.clone()),
            message_counter: t.session.sent_counter(),
            current_remote: t.remote(),
            relays_to_me: t.relays.to_vec(),
            relays_through_me,
        }
    }

    /// The host map: one entry per host (its primary tunnel), or with `by_index` one per tunnel.
    /// Sorted by first vpn address (then local index).
    pub fn host_views(&self, by_index: bool) -> Vec<HostView> {
        let mut out: Vec<HostView> = if by_index {
            self.hostmap.tunnels().map(|t| self.host_view(t)).collect()
        } else {
            let mut vpns: Vec<IpAddr> = self.hostmap.vpn_addrs().copied().collect();
            vpns.sort();
            vpns.dedup();
            vpns.iter()
                .filter_map(|v| self.tunnel_to(v))
                .filter(|t| t.peer.vpn_addrs.first() == Some(&t.vpn_addr))
                .map(|t| self.host_view(t))
                .collect()
        };
        out.sort_by(|a, b| {
            (a.vpn_addrs.first(), a.local_index).cmp(&(b.vpn_addrs.first(), b.local_index))
        });
        out
    }

    /// The primary tunnel to `vpn`, as the console prints it.
    pub fn host_view_for(&self, vpn: &IpAddr) -> Option<HostView> {
        self.tunnel_to(vpn).map(|t| self.host_view(t))
    }

    /// Is a handshake we initiated to `vpn` running?
    pub fn is_handshaking(&self, vpn: &IpAddr) -> bool {
        self.pending.index_for(vpn).is_some()
    }

    /// The handshakes we initiated and have not finished, sorted by vpn address.
    pub fn pending_views(&self) -> Vec<HostView> {
        let mut out: Vec<HostView> = self
            .pending
            .iter()
            .map(|p| HostView {
                vpn_addrs: vec![p.vpn_addr],
                local_index: p.local_index,
                remote_index: 0,
                remote_addrs: self
                    .remotes
                    .get(&p.vpn_addr)
                    .map(|r| r.addrs(&self.cfg.preferred_ranges))
                    .unwrap_or_default(),
                cert: None,
                message_counter: 0,
                current_remote: p.last_addrs.first().copied(),
                relays_to_me: Vec::new(),
                relays_through_me: Vec::new(),
            })
            .collect();
        out.sort_by(|a, b| a.vpn_addrs.cmp(&b.vpn_addrs));
        out
    }

    /// What we know about `vpn`'s underlay addresses, per source (`None`: nothing known).
    pub fn addr_cache_for(&self, vpn: &IpAddr) -> Option<Vec<AddrCache>> {
        let r = self.remotes.get(vpn)?;
        let mut out: Vec<AddrCache> = Vec::new();
        // As Go files them: what we saw under the host, what we configured under ourselves.
        if !r.learned.is_empty() {
            out.push(AddrCache {
                owner: *vpn,
                learned: r.learned.clone(),
                reported: Vec::new(),
                relays: Vec::new(),
            });
        }
        if !r.static_addrs().is_empty() {
            out.push(AddrCache {
                owner: self.vpn_addr(),
                learned: Vec::new(),
                reported: r.static_addrs().to_vec(),
                relays: Vec::new(),
            });
        }
        for (lh, reported, relays) in r.by_lighthouse() {
            out.push(AddrCache {
                owner: lh,
                learned: Vec::new(),
                reported,
                relays,
            });
        }
        Some(out)
    }

    /// The whole address map, by vpn address: what the lighthouse's book holds when we are one,
    /// and what we learned about every host we keep addresses for.
    pub fn addr_map(&self) -> Vec<(IpAddr, Vec<AddrCache>)> {
        let mut map: HashMap<IpAddr, Vec<AddrCache>> = HashMap::new();
        if let Some(server) = &self.lighthouse_server {
            for KnownHost {
                vpn_addr,
                learned,
                reported,
                relays,
            } in server.known_hosts()
            {
                map.entry(vpn_addr).or_default().push(AddrCache {
                    owner: vpn_addr,
                    learned,
                    reported,
                    relays,
                });
            }
        }
        for vpn in self.remotes.keys() {
            if let Some(c) = self.addr_cache_for(vpn) {
                map.entry(*vpn).or_default().extend(c);
            }
        }
        let mut out: Vec<(IpAddr, Vec<AddrCache>)> = map.into_iter().collect();
        out.sort_by_key(|(v, _)| *v);
        out
    }

    /// Every relay index we hold, by hop then peer.
    pub fn relay_views(&self) -> Vec<RelayView> {
        let mut out: Vec<RelayView> = self
            .relays
            .iter()
            .map(|r| RelayView {
                hop: r.hop,
                peer: r.peer,
                local_index: r.local_index,
                remote_index: r.remote_index,
                forwarding: r.kind == RelayKind::Forwarding,
                established: r.state == RelayState::Established,
            })
            .collect();
        out.sort_by_key(|r| (r.hop, r.peer, r.local_index));
        out
    }

    /// Close the tunnels to `vpn` without telling the peer (`close-tunnel -local-only`).
    /// Returns false if there was none.
    pub fn close_tunnel_quietly(&mut self, vpn: &IpAddr, out: &mut Outputs) -> bool {
        let idxs: Vec<u32> = self.hostmap.tunnels_for(vpn).to_vec();
        for idx in &idxs {
            self.remove_tunnel(*idx, CloseReason::LocalClose, out);
        }
        !idxs.is_empty()
    }

    /// Start a handshake to `vpn` (`create-tunnel`), to `addr` at once if given, else to what
    /// the lighthouses answer.
    pub fn create_tunnel(
        &mut self,
        now: Instant,
        vpn: IpAddr,
        addr: Option<SocketAddr>,
        out: &mut Outputs,
    ) -> CreateTunnel {
        if self.hostmap.primary(&vpn).is_some() {
            return CreateTunnel::AlreadyExists;
        }
        if self.pending.index_for(&vpn).is_some() {
            return CreateTunnel::AlreadyHandshaking;
        }
        if let Some(a) = addr {
            self.remotes.entry(vpn).or_default().learn(a);
        }
        match self.start_handshake(now, vpn, out) {
            Some(idx) => {
                if addr.is_some() {
                    self.handshake_attempt(now, idx, false, out);
                }
                CreateTunnel::Created
            }
            None => CreateTunnel::Refused,
        }
    }

    /// Send the primary tunnel to `vpn` to `addr` from now on (`change-remote`). False if there
    /// is no tunnel.
    pub fn change_remote(&mut self, vpn: &IpAddr, addr: SocketAddr) -> bool {
        let Some(idx) = self.hostmap.primary(vpn) else {
            return false;
        };
        self.hostmap.set_remote(idx, Some(addr));
        true
    }

    /// `query-lighthouse`: what we know about `vpn` now; when nothing, ask the lighthouses (the
    /// answer arrives later).
    pub fn query_lighthouse(
        &mut self,
        now: Instant,
        vpn: IpAddr,
        out: &mut Outputs,
    ) -> Option<Vec<AddrCache>> {
        let known = self.addr_cache_for(&vpn);
        if known.is_none() {
            self.query_lighthouses(now, vpn, out);
        }
        known
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};
    use std::time::Duration;

    use nebula_cert::{Curve, Version};

    use crate::engine::Outputs;
    use crate::sim::{static_config, udp_packet, Sim, TestCa};

    use super::CreateTunnel;

    const A_VPN: &str = "10.42.0.1";
    const B_VPN: &str = "10.42.0.2";
    const A_ADDR: &str = "192.0.2.1:4242";
    const B_ADDR: &str = "192.0.2.2:4242";

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    /// A and B, each with the other in its static host map; nothing sent yet.
    fn pair() -> Sim {
        let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
        let mut sim = Sim::new(11);
        sim.add_node(
            "a",
            A_ADDR,
            static_config(&[(B_VPN, B_ADDR)]),
            ca.pki("a", &format!("{A_VPN}/16")),
        );
        sim.add_node(
            "b",
            B_ADDR,
            static_config(&[(A_VPN, A_ADDR)]),
            ca.pki("b", &format!("{B_VPN}/16")),
        );
        sim
    }

    fn connected() -> Sim {
        let mut sim = pair();
        let hello = udp_packet(
            A_VPN.parse().expect("v4"),
            B_VPN.parse().expect("v4"),
            1,
            2,
            b"hi",
        );
        sim.inside(0, &hello);
        sim.run_for(Duration::from_secs(1));
        assert!(sim.has_tunnel(0, B_VPN));
        sim
    }

    #[test]
    fn host_views_show_a_made_tunnel_and_close_quietly_removes_it() {
        let mut sim = connected();
        let b = ip(B_VPN);
        let e = &mut sim.nodes[0].engine;
        let hosts = e.host_views(false);
        assert_eq!(hosts.len(), 1, "{hosts:?}");
        assert_eq!(hosts[0].vpn_addrs, vec![b]);
        assert_eq!(
            hosts[0].cert.as_ref().map(|c| c.name().to_string()),
            Some("b".to_string())
        );
        assert_eq!(hosts[0].current_remote, Some(B_ADDR.parse().expect("addr")));
        assert!(hosts[0]
            .remote_addrs
            .contains(&B_ADDR.parse().expect("addr")));
        assert!(hosts[0].message_counter >= 2);
        assert_eq!(e.host_views(true).len(), 1);
        let view = e.host_view_for(&b).expect("tunnel to B");
        assert_eq!(view.local_index, hosts[0].local_index);
        let cache = e.addr_cache_for(&b).expect("addresses of B");
        let b_addr: SocketAddr = B_ADDR.parse().expect("addr");
        assert!(
            cache
                .iter()
                .any(|c| c.owner == ip(A_VPN) && c.reported == vec![b_addr]),
            "static_host_map entries are ours: {cache:?}"
        );
        assert!(e.addr_map().iter().any(|(v, _)| *v == b));
        let mut out = Outputs::default();
        assert!(e.close_tunnel_quietly(&b, &mut out));
        assert!(
            out.transmits.is_empty(),
            "local-only close must not tell the peer"
        );
        assert!(e.host_views(false).is_empty());
        assert!(!e.close_tunnel_quietly(&b, &mut out));
    }

    #[test]
    fn create_and_change_remote_report_what_they_did() {
        let mut sim = pair();
        let now = sim.now;
        let mut out = Outputs::default();
        let addr: SocketAddr = "198.51.100.9:4242".parse().expect("addr");
        let e = &mut sim.nodes[0].engine;
        assert!(!e.change_remote(&ip(B_VPN), addr), "no tunnel yet");
        assert_eq!(
            e.create_tunnel(now, ip(B_VPN), Some(addr), &mut out),
            CreateTunnel::Created
        );
        assert!(out.transmits.iter().any(|t| t.to == addr));
        assert_eq!(
            e.create_tunnel(now, ip(B_VPN), None, &mut out),
            CreateTunnel::AlreadyHandshaking
        );
        let pending = e.pending_views();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].vpn_addrs, vec![ip(B_VPN)]);
        assert_eq!(
            e.create_tunnel(now, ip(A_VPN), None, &mut out),
            CreateTunnel::Refused
        );

        let mut sim = connected();
        let e = &mut sim.nodes[0].engine;
        assert_eq!(
            e.create_tunnel(now, ip(B_VPN), None, &mut out),
            CreateTunnel::AlreadyExists
        );
        assert!(e.change_remote(&ip(B_VPN), addr));
        assert_eq!(
            e.host_view_for(&ip(B_VPN)).and_then(|h| h.current_remote),
            Some(addr)
        );
    }
}
