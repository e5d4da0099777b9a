//! The seam between the engine and the firewall: a per-packet verdict for a peer, plus the small
//! IP-header reads the engine itself needs (destination address for routing, reject replies).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use nebula_cert::cert::Certificate;

use crate::firewall::{Action, Conntrack, Firewall, Packet, PeerInfo};
use crate::hostmap::Tunnel;

/// What to do with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Drop,
    /// Drop and answer with a TCP RST / ICMP unreachable.
    Reject,
}

/// Who is on the other end of the tunnel a packet uses (borrowed from the tunnel: no allocation).
pub struct PeerIdentity<'a> {
    pub cert: &'a Certificate,
    pub vpn_addrs: &'a [IpAddr],
    /// Name of the peer's issuing CA (for `ca_name`).
    pub ca_name: &'a str,
    /// Hex fingerprint of the peer's issuing CA (for `ca_sha`).
    pub issuer_hex: &'a str,
}

impl<'a> PeerIdentity<'a> {
    pub fn of(t: &'a Tunnel) -> PeerIdentity<'a> {
        PeerIdentity {
            cert: &t.peer_cert,
            vpn_addrs: &t.vpn_addrs,
            ca_name: &t.peer_ca_name,
            issuer_hex: &t.peer_issuer_hex,
        }
    }
}

/// The firewall as the engine sees it. `incoming`: from a tunnel towards the TUN.
pub trait PacketFilter: Send {
    fn check(
        &mut self,
        now: Instant,
        packet: &[u8],
        incoming: bool,
        peer: &PeerIdentity<'_>,
    ) -> Verdict;

    /// New rules (SIGHUP). Connections admitted under the old rules are re-checked on next use.
    fn reload(&mut self, _firewall: Firewall) {}
}

/// Go Nebula's group firewall with its connection tracking.
pub struct GroupFirewall {
    firewall: Firewall,
    conntrack: Conntrack,
}

impl GroupFirewall {
    pub fn new(firewall: Firewall) -> GroupFirewall {
        GroupFirewall {
            firewall,
            conntrack: Conntrack::new(),
        }
    }

    pub fn firewall(&self) -> &Firewall {
        &self.firewall
    }

    pub fn conntrack(&self) -> &Conntrack {
        &self.conntrack
    }
}

impl PacketFilter for GroupFirewall {
    fn check(
        &mut self,
        now: Instant,
        packet: &[u8],
        incoming: bool,
        peer: &PeerIdentity<'_>,
    ) -> Verdict {
        let Ok(pkt) = Packet::parse(packet, incoming) else {
            return Verdict::Drop;
        };
        let info = PeerInfo {
            vpn_networks: peer.cert.networks(),
            unsafe_networks: peer.cert.unsafe_networks(),
            name: peer.cert.name(),
            groups: peer.cert.groups(),
            ca_name: peer.ca_name,
            ca_sha: peer.issuer_hex,
        };
        match self
            .firewall
            .drop(&pkt, incoming, &info, &mut self.conntrack, now)
        {
            Ok(()) => Verdict::Allow,
            Err(_) => match self.firewall.action(incoming) {
                Action::Reject => Verdict::Reject,
                Action::Drop => Verdict::Drop,
            },
        }
    }

    fn reload(&mut self, firewall: Firewall) {
        self.firewall = firewall;
    }
}

/// Lets everything through. Only for tests of the engine that are not about the firewall.
pub struct AllowAll;

impl PacketFilter for AllowAll {
    fn check(&mut self, _: Instant, _: &[u8], _: bool, _: &PeerIdentity<'_>) -> Verdict {
        Verdict::Allow
    }
}

/// The destination address of an IPv4 or IPv6 packet.
pub fn destination(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 => {
            let b: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        6 => {
            let b: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// The source address of an IPv4 or IPv6 packet.
pub fn source(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 => {
            let b: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        6 => {
            let b: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// The reject answer (TCP RST or ICMP unreachable) for `packet`, if it gets one.
pub fn reject_reply(packet: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; packet.len().max(128) + 128];
    let n = crate::firewall::build_reject(packet, &mut out)?;
    out.truncate(n);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_v4_and_v6_packets() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[12..16].copy_from_slice(&[10, 0, 0, 1]);
        v4[16..20].copy_from_slice(&[10, 0, 0, 2]);
        assert_eq!(source(&v4), Some("10.0.0.1".parse().expect("ip")));
        assert_eq!(destination(&v4), Some("10.0.0.2".parse().expect("ip")));
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[39] = 1;
        assert_eq!(destination(&v6), Some("::1".parse().expect("ip")));
        assert_eq!(destination(&v4[..10]), None);
        assert_eq!(destination(&[0x50; 40]), None);
        assert_eq!(destination(&[]), None);
    }
}
