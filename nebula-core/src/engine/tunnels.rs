//! The per-tunnel state machine: confirmation and the choice of primary, roaming, removal, and
//! the timers that keep a tunnel honest (connection checks, rehandshakes, path probes).

use super::inside::seal_message;
use super::*;

impl Engine {
    /// An authenticated packet arrived on tunnel `idx`: note the traffic, confirm the tunnel,
    /// follow a roaming peer.
    pub(super) fn authenticated(&mut self, now: Instant, idx: u32, via: Via, out: &mut Outputs) {
        let Some(t) = self.hostmap.get(idx) else {
            return;
        };
        t.session.mark_in();
        let newly_confirmed = self.hostmap.confirm(idx, now);
        self.roam(now, idx, via, out);
        if newly_confirmed {
            self.on_confirmed(now, idx, out);
        }
    }

    /// A tunnel's peer just proved it holds the keys: decide whether it becomes primary; if it
    /// does, what we queued for the peer (our own handshake's packets, lighthouse messages) goes
    /// out on it now.
    pub(super) fn on_confirmed(&mut self, now: Instant, idx: u32, out: &mut Outputs) {
        let Some(t) = self.hostmap.get(idx) else {
            return;
        };
        let vpn = t.vpn_addr;
        let current = self.hostmap.primary(&vpn);
        if current == Some(idx) {
            return;
        }
        let promote = match current.and_then(|c| self.hostmap.get(c)) {
            None => true,
            Some(cur) => self.newer_wins(now, t, cur),
        };
        if promote {
            self.hostmap.make_primary(idx);
        }
        if self.hostmap.primary(&vpn) == Some(idx) {
            // Our own handshake to the host, if any, keeps running (a race settles by vpn
            // address in `newer_wins`); its queued packets need not wait for it.
            self.flush_pending_for(now, vpn, out);
            if self.cfg.lighthouses.contains(&vpn) {
                self.flush_deferred(now, out);
            }
        }
    }

    /// Should confirmed tunnel `new` replace confirmed primary `cur`? A clearly newer tunnel wins;
    /// two confirmed within [`RACE_WINDOW`] are a race, won by the one the higher vpn address
    /// initiated (both ends reach the same answer).
    pub(super) fn newer_wins(&self, now: Instant, new: &Tunnel, cur: &Tunnel) -> bool {
        if !cur.is_confirmed() {
            return true;
        }
        if !new.is_confirmed() {
            return false;
        }
        let cur_at = cur.confirmed_at().unwrap_or(cur.created);
        let new_at = new.confirmed_at().unwrap_or(now);
        if new_at.saturating_duration_since(cur_at) > RACE_WINDOW {
            return true;
        }
        let me = self.pki.vpn_addr();
        let init = |t: &Tunnel| if t.initiator { me } else { t.vpn_addr };
        let (a, b) = (init(new), init(cur));
        if a != b {
            return a > b;
        }
        true
    }

    /// Follow a peer whose authenticated packet came from a new address (rate-limited per
    /// tunnel by the host map: see [`HostMap::roam`]).
    pub(super) fn roam(&mut self, now: Instant, idx: u32, via: Via, out: &mut Outputs) {
        // Relayed packets never move a tunnel.
        let Via::Udp(from) = via else {
            return;
        };
        let Some(t) = self.hostmap.get(idx) else {
            return;
        };
        if t.remote() == Some(from)
            || !self
                .cfg
                .remote_allow_list
                .allows_all(&t.peer.vpn_addrs, from.ip())
        {
            return;
        }
        let vpn = t.vpn_addr;
        if let Roam::Moved(old) = self.hostmap.roam(idx, from, now) {
            self.remotes.entry(vpn).or_default().learn(from);
            out.events.push(Event::Roamed {
                vpn_addr: vpn,
                from: old,
                to: from,
            });
        }
    }

    pub(super) fn remove_tunnel(&mut self, idx: u32, reason: CloseReason, out: &mut Outputs) {
        if let Some(t) = self.hostmap.remove(idx) {
            out.events.push(Event::TunnelDown {
                vpn_addr: t.vpn_addr,
                local_index: idx,
                reason,
            });
            if self.hostmap.primary(&t.vpn_addr).is_none() {
                if let Some(server) = self.lighthouse_server.as_mut() {
                    server.host_gone(t.vpn_addr);
                }
                // Relays riding on this host, or leading to it, go with it.
                for r in self.relays.involving(t.vpn_addr) {
                    self.remove_relay(r);
                }
            }
            if self.hostmap.primary(&t.vpn_addr).is_none() && reason != CloseReason::Replaced {
                if let Some(r) = self.remotes.get_mut(&t.vpn_addr) {
                    if !self.cfg.lighthouses.contains(&t.vpn_addr) {
                        r.forget_dynamic();
                        // Nothing left (no static entry) and nothing under way: drop the entry,
                        // so the map holds only hosts we know something about.
                        if r.is_empty()
                            && r.blocked().is_empty()
                            && self.pending.index_for(&t.vpn_addr).is_none()
                        {
                            self.remotes.remove(&t.vpn_addr);
                        }
                    }
                }
            }
        }
    }

    /// Run every timer that is due.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Outputs) {
        while let Some(t) = self.timers.pop_due(now) {
            match t {
                Timer::HandshakeRetry { local_index } => {
                    self.handshake_attempt(now, local_index, true, out)
                }
                Timer::ConnectionCheck { local_index } => {
                    self.connection_check(now, local_index, out)
                }
                Timer::LighthouseUpdate => {
                    self.send_host_updates(now, out);
                    if !self.cfg.lighthouse_interval.is_zero() {
                        self.timers.add_after(
                            now,
                            self.cfg.lighthouse_interval,
                            Timer::LighthouseUpdate,
                        );
                    }
                }
                Timer::Punch { ip, port } => {
                    self.queued_punches = self.queued_punches.saturating_sub(1);
                    out.transmits.push(Transmit {
                        to: SocketAddr::new(ip, port),
                        payload: vec![0],
                    });
                }
                Timer::PunchRespond { vpn } => {
                    self.queued_punches = self.queued_punches.saturating_sub(1);
                    self.send_test_request(now, vpn, &[], out);
                }
                Timer::RelayCheck { local_index } => self.relay_check(now, local_index),
                Timer::TryDirect { local_index } => {
                    if self
                        .hostmap
                        .get(local_index)
                        .is_some_and(|t| t.remote().is_none())
                    {
                        self.probe_paths(local_index, out);
                    }
                }
                Timer::ConntrackSweep => {
                    self.filter.sweep(now);
                    self.timers.add_after(
                        now,
                        crate::timers::CONNTRACK_SWEEP_INTERVAL,
                        Timer::ConntrackSweep,
                    );
                }
            }
        }
    }

    /// A tunnel just came up through a relay: try the direct addresses once the lighthouse's punch
    /// notification has had time to open the far NAT (`punchy.delay`), and again a bit later.
    pub(super) fn schedule_direct_probe(&mut self, now: Instant, local_index: u32) {
        let first = self
            .cfg
            .punchy
            .delay
            .saturating_add(Duration::from_millis(250));
        self.timers
            .add_after(now, first, Timer::TryDirect { local_index });
        self.timers.add_after(
            now,
            first.saturating_mul(3),
            Timer::TryDirect { local_index },
        );
    }

    /// Go 1.11's per-tunnel connection check.
    pub(super) fn connection_check(&mut self, now: Instant, idx: u32, out: &mut Outputs) {
        let unix_secs = self.unix_secs(now);
        let Some(t) = self.hostmap.get(idx) else {
            return;
        };
        let vpn = t.vpn_addr;
        let primary = self.hostmap.primary(&vpn);
        let (is_primary, has_primary) = (primary == Some(idx), primary.is_some());
        // Certificate still good? Its signature was checked by the handshake; only a new CA
        // pool (a reload) makes that worth doing again.
        let cert_check = if t.pki_generation == self.pki_generation {
            self.pki.ca_pool().reverify(unix_secs, &t.peer.cert)
        } else {
            self.pki.ca_pool().verify(unix_secs, &t.peer.cert)
        };
        if let Err(e) = cert_check {
            let blocklisted = self.pki.ca_pool().is_blocklisted(&t.peer.cert);
            if blocklisted || self.cfg.disconnect_invalid {
                out.events.push(Event::PeerCertificateInvalid {
                    vpn_addr: vpn,
                    cert_name: t.peer.cert.name().to_string(),
                    error: e.to_string(),
                });
                self.send_on_tunnel(idx, MessageType::CloseTunnel, 0, &[], out);
                self.remove_tunnel(idx, CloseReason::CertInvalid, out);
                return;
            }
        }
        let Some(t) = self.hostmap.get_mut(idx) else {
            return;
        };
        if t.session.is_exhausted() {
            self.remove_tunnel(idx, CloseReason::CounterExhausted, out);
            return;
        }
        let (tin, tout) = t.session.take_traffic();
        if !t.is_confirmed() {
            // An answer to a stage 1 that nobody followed up with an authenticated packet: a
            // replay or a lost race. It carries none of our traffic (see `HostMap::primary`).
            // Beside a working tunnel it goes now. Alone, it may be a real initiator whose first
            // packets were lost: its own connection check probes us about now, so it gets one
            // more interval before it goes.
            if !has_primary && !t.pending_deletion {
                t.pending_deletion = true;
                self.timers.add_after(
                    now,
                    self.cfg.connection_alive_interval,
                    Timer::ConnectionCheck { local_index: idx },
                );
            } else {
                self.remove_tunnel(idx, CloseReason::Replaced, out);
            }
            return;
        }
        if is_primary && (t.remote().is_none() || !self.cfg.preferred_ranges.is_empty()) {
            // Relayed, or maybe not on a preferred range: keep looking for a better path.
            self.probe_paths(idx, out);
        }
        let Some(t) = self.hostmap.get_mut(idx) else {
            return;
        };
        if tin || tout {
            t.mark_used(now);
        }
        if tin {
            t.pending_deletion = false;
            let needs_rehandshake = t.session.send_counter() >= self.cfg.rehandshake_after_messages
                || t.pki_generation != self.pki_generation;
            if !tout {
                self.keepalive_punch(idx, false, out);
            }
            if is_primary && needs_rehandshake && self.pending.index_for(&vpn).is_none() {
                self.start_rehandshake(now, vpn, out);
            }
            self.timers.add_after(
                now,
                self.cfg.connection_alive_interval,
                Timer::ConnectionCheck { local_index: idx },
            );
            return;
        }
        if t.pending_deletion {
            self.remove_tunnel(idx, CloseReason::Dead, out);
            // Ask where the host went, so the next handshake has fresh addresses.
            if self.hostmap.primary(&vpn).is_none() {
                self.query_lighthouses(now, vpn, out);
            }
            return;
        }
        if !is_primary {
            // A replaced tunnel that went quiet.
            self.remove_tunnel(idx, CloseReason::Replaced, out);
            return;
        }
        if tout {
            t.pending_deletion = true;
            // Our own traffic keeps the current address's NAT state warm; the host's other
            // addresses get a punch only with `punchy.target_all_remotes`.
            self.keepalive_punch(idx, true, out);
            self.send_on_tunnel(idx, MessageType::Test, subtype::TEST_REQUEST, &[], out);
            self.timers.add_after(
                now,
                self.cfg.pending_deletion_interval,
                Timer::ConnectionCheck { local_index: idx },
            );
            return;
        }
        // No traffic either way since the last check.
        if self.cfg.drop_inactive
            && now.saturating_duration_since(t.last_used()) >= self.cfg.inactivity_timeout
        {
            self.send_on_tunnel(idx, MessageType::CloseTunnel, 0, &[], out);
            self.remove_tunnel(idx, CloseReason::Inactive, out);
            return;
        }
        self.keepalive_punch(idx, false, out);
        self.timers.add_after(
            now,
            self.cfg.connection_alive_interval,
            Timer::ConnectionCheck { local_index: idx },
        );
    }

    /// A keepalive punch (one byte, `[1]`) for tunnel `idx`, to keep the NAT state between us
    /// and the peer open. Only with `punchy.punch`, never to a lighthouse (the lighthouse updates
    /// keep that path warm). With `punchy.target_all_remotes` it goes to every address in the
    /// host's remote list, else to the tunnel's current address. `all_only`: send only in the
    /// `target_all_remotes` mode (the "we only send" case, where our traffic already keeps the
    /// current address warm).
    pub(super) fn keepalive_punch(&self, idx: u32, all_only: bool, out: &mut Outputs) {
        let p = &self.cfg.punchy;
        if !p.punch || (all_only && !p.target_all_remotes) {
            return;
        }
        let Some(t) = self.hostmap.get(idx) else {
            return;
        };
        if t.peer
            .vpn_addrs
            .iter()
            .chain(std::iter::once(&t.vpn_addr))
            .any(|a| self.cfg.lighthouses.contains(a))
        {
            return;
        }
        let targets = if p.target_all_remotes {
            self.remotes
                .get(&t.vpn_addr)
                .map(|r| r.addrs(&self.cfg.preferred_ranges))
                .unwrap_or_default()
        } else {
            t.remote().into_iter().collect()
        };
        for to in targets {
            out.transmits.push(Transmit {
                to,
                payload: vec![1],
            });
        }
    }

    /// Start a new handshake to a host we already have a tunnel with (counter limit, new cert).
    pub(super) fn start_rehandshake(&mut self, now: Instant, vpn: IpAddr, out: &mut Outputs) {
        if let Some(r) = self
            .hostmap
            .primary(&vpn)
            .and_then(|i| self.hostmap.get(i))
            .and_then(|t| t.remote())
        {
            self.remotes.entry(vpn).or_default().learn(r);
        }
        if let Some(idx) = self.start_handshake(now, vpn, out) {
            // Known address: try at once rather than wait for the timer.
            let has = self.remotes.get(&vpn).is_some_and(|r| !r.is_empty());
            if has {
                self.handshake_attempt(now, idx, false, out);
            }
        }
    }

    /// Every `counters.try_promote` packets: probe better paths (Go's `TryPromoteBest`); every
    /// `counters.requery_every_packets`: ask the lighthouses again, at most once per
    /// `timers.requery_wait_duration`.
    pub(super) fn try_promote_best(
        &mut self,
        now: Instant,
        idx: u32,
        count: u32,
        out: &mut Outputs,
    ) {
        if self.cfg.am_lighthouse {
            return;
        }
        let Some(t) = self.hostmap.get(idx) else {
            return;
        };
        let vpn = t.vpn_addr;
        let every = self.cfg.try_promote_every;
        if every != 0 && count.is_multiple_of(every) {
            self.probe_paths(idx, out);
        }
        let requery = self.cfg.requery_every_packets;
        if requery != 0 && count.is_multiple_of(requery) {
            let Some(t) = self.hostmap.get_mut(idx) else {
                return;
            };
            if t.next_requery.is_some_and(|n| now < n) {
                return;
            }
            t.next_requery = Some(crate::timers::after(now, self.cfg.requery_wait));
            self.query_lighthouses(now, vpn, out);
        }
    }

    /// Send a test request straight to the peer's other addresses: its preferred-range ones if
    /// the tunnel is direct but not on a preferred range, all of them if it is relayed. The peer
    /// roams to where the probe came from and answers there, and so do we.
    pub(super) fn probe_paths(&mut self, idx: u32, out: &mut Outputs) {
        let Some(t) = self.hostmap.get(idx) else {
            return;
        };
        let vpn = t.vpn_addr;
        let remote = t.remote();
        let preferred = &self.cfg.preferred_ranges;
        if remote.is_some_and(|r| preferred.iter().any(|n| n.contains(&r.ip()))) {
            return;
        }
        let addrs: Vec<SocketAddr> = self
            .remotes
            .get(&vpn)
            .map(|r| r.addrs(preferred))
            .unwrap_or_default()
            .into_iter()
            .filter(|a| Some(*a) != remote)
            .filter(|a| remote.is_none() || preferred.iter().any(|n| n.contains(&a.ip())))
            .filter(|a| !self.pki.in_my_networks(&a.ip()))
            .collect();
        for a in addrs {
            let Some(t) = self.hostmap.get_mut(idx) else {
                return;
            };
            if let Some(d) = seal_message(t, MessageType::Test, subtype::TEST_REQUEST, &[]) {
                out.transmits.push(Transmit { to: a, payload: d });
            }
        }
    }
}
