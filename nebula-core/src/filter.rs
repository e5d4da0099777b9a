//! The seam between the engine and the firewall: a per-packet verdict for a peer, plus the small
//! IP-header reads the engine itself needs (destination address for routing, reject replies).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use nebula_cert::cert::Certificate;

use crate::hostmap::Tunnel;

/// What to do with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Drop,
    /// Drop and answer with a TCP RST / ICMP unreachable.
    Reject,
}

/// Who is on the other end of the tunnel a packet uses.
pub struct PeerIdentity<'a> {
    pub cert: &'a Certificate,
    pub vpn_addrs: &'a [IpAddr],
    /// Hex fingerprint of the peer's issuing CA (for `ca_sha`).
    pub issuer_hex: String,
}

impl<'a> PeerIdentity<'a> {
    pub fn of(t: &'a Tunnel) -> PeerIdentity<'a> {
        PeerIdentity {
            cert: &t.peer_cert,
            vpn_addrs: &t.vpn_addrs,
            issuer_hex: t.peer_cert.issuer().map(hex_lower).unwrap_or_default(),
        }
    }
}

fn hex_lower(b: [u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for x in b {
        s.push(HEX[(x >> 4) as usize] as char);
        s.push(HEX[(x & 15) as usize] as char);
    }
    s
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
