//! The host map: established tunnels by local index, by the peer's remote index and by vpn address.
//! A vpn address may have several tunnels (rehandshakes, races); the first in its list is primary.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use nebula_cert::cert::Certificate;

use crate::aead::Session;

/// Most tunnels kept per vpn address (as Go's `MaxHostInfosPerVpnIp`).
pub const MAX_TUNNELS_PER_VPN_ADDR: usize = 5;

/// One established tunnel (Go's `HostInfo` + `ConnectionState`).
pub struct Tunnel {
    pub local_index: u32,
    /// The vpn address that identifies the peer (the first of `vpn_addrs`).
    pub vpn_addr: IpAddr,
    pub remote_index: u32,
    /// The peer's vpn addresses, from its certificate (primary first).
    pub vpn_addrs: Vec<IpAddr>,
    pub peer_cert: Arc<Certificate>,
    /// Hex fingerprint of the peer's certificate.
    pub peer_fingerprint: String,
    /// Name of the CA that issued the peer's certificate (firewall `ca_name`).
    pub peer_ca_name: String,
    /// Hex fingerprint of that CA (firewall `ca_sha`).
    pub peer_issuer_hex: String,
    /// Keys, send counter and replay window.
    pub session: Session,
    /// Current underlay address of the peer; `None` while only reachable through a relay.
    pub remote: Option<SocketAddr>,
    /// Where the peer was before the last roam, and when it moved (for roaming suppression).
    pub last_roam: Option<(SocketAddr, Instant)>,
    /// True if we sent stage 1 of the handshake that made this tunnel.
    pub initiator: bool,
    /// The peer's handshake time field (nanoseconds since the Unix epoch).
    pub peer_handshake_time: u64,
    /// Stage-1 body (without header) that created this tunnel, to spot retransmits.
    pub stage1_body: Vec<u8>,
    /// Our stage-2 datagram, re-sent when the initiator retransmits its stage 1.
    pub stage2_datagram: Option<Vec<u8>>,
    /// The peer has proven it holds the session keys (an authenticated packet arrived, or we
    /// initiated and read its stage 2). Unconfirmed tunnels never replace a confirmed primary.
    pub confirmed: bool,
    /// When this tunnel was installed.
    pub created: Instant,
    /// When it was confirmed.
    pub confirmed_at: Option<Instant>,
    /// Traffic flags for the connection check, cleared at each check.
    pub traffic_in: bool,
    pub traffic_out: bool,
    /// A test request was sent for lack of inbound traffic; no reply by the next check = dead.
    pub pending_deletion: bool,
    /// The certificate version we used for this tunnel.
    pub cert_version: nebula_cert::Version,
    /// recvError messages seen for this tunnel.
    pub recv_errors: u32,
}

/// Established tunnels, indexed three ways.
#[derive(Default)]
pub struct HostMap {
    by_index: HashMap<u32, Tunnel>,
    by_remote_index: HashMap<u32, u32>,
    by_vpn: HashMap<IpAddr, Vec<u32>>,
}

impl HostMap {
    pub fn len(&self) -> usize {
        self.by_index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_index.is_empty()
    }

    pub fn get(&self, local_index: u32) -> Option<&Tunnel> {
        self.by_index.get(&local_index)
    }

    pub fn get_mut(&mut self, local_index: u32) -> Option<&mut Tunnel> {
        self.by_index.get_mut(&local_index)
    }

    pub fn contains_index(&self, local_index: u32) -> bool {
        self.by_index.contains_key(&local_index)
    }

    /// The tunnel whose peer knows us by `remote_index` (for recvError).
    pub fn by_remote_index(&self, remote_index: u32) -> Option<u32> {
        self.by_remote_index.get(&remote_index).copied()
    }

    /// Local index of the primary tunnel to `vpn`.
    pub fn primary(&self, vpn: &IpAddr) -> Option<u32> {
        self.by_vpn.get(vpn).and_then(|l| l.first().copied())
    }

    /// All tunnels to `vpn`, primary first.
    pub fn tunnels_for(&self, vpn: &IpAddr) -> &[u32] {
        self.by_vpn.get(vpn).map(|v| v.as_slice()).unwrap_or(&[])
    }

    pub fn indexes(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_index.keys().copied()
    }

    pub fn tunnels(&self) -> impl Iterator<Item = &Tunnel> {
        self.by_index.values()
    }

    pub fn vpn_addrs(&self) -> impl Iterator<Item = &IpAddr> {
        self.by_vpn.keys()
    }

    /// Insert a tunnel; `primary` puts it first for each of its vpn addresses, else it goes after
    /// the current primary. Returns tunnels evicted to stay within the per-address limit.
    pub fn insert(&mut self, tunnel: Tunnel, primary: bool) -> Vec<Tunnel> {
        let idx = tunnel.local_index;
        let addrs = tunnel.vpn_addrs.clone();
        self.by_remote_index.insert(tunnel.remote_index, idx);
        self.by_index.insert(idx, tunnel);
        let mut evict = Vec::new();
        for a in addrs {
            let list = self.by_vpn.entry(a).or_default();
            list.retain(|i| *i != idx);
            if primary || list.is_empty() {
                list.insert(0, idx);
            } else {
                list.insert(1, idx);
            }
            while list.len() > MAX_TUNNELS_PER_VPN_ADDR {
                // Evict the oldest unconfirmed tunnel, else the last one; never the primary.
                let victim = list
                    .iter()
                    .skip(1)
                    .rev()
                    .find(|i| self.by_index.get(i).is_some_and(|t| !t.confirmed))
                    .copied()
                    .or_else(|| list.last().copied());
                if let Some(v) = victim {
                    list.retain(|i| *i != v);
                    evict.push(v);
                } else {
                    break;
                }
            }
        }
        let mut out = Vec::new();
        for v in evict {
            if let Some(t) = self.remove(v) {
                out.push(t);
            }
        }
        out
    }

    /// Make `local_index` the primary tunnel for each of its vpn addresses.
    pub fn make_primary(&mut self, local_index: u32) {
        let Some(t) = self.by_index.get(&local_index) else {
            return;
        };
        for a in &t.vpn_addrs {
            if let Some(list) = self.by_vpn.get_mut(a) {
                list.retain(|i| *i != local_index);
                list.insert(0, local_index);
            }
        }
    }

    /// Remove a tunnel from every index.
    pub fn remove(&mut self, local_index: u32) -> Option<Tunnel> {
        let t = self.by_index.remove(&local_index)?;
        if self.by_remote_index.get(&t.remote_index) == Some(&local_index) {
            self.by_remote_index.remove(&t.remote_index);
        }
        for a in &t.vpn_addrs {
            if let Some(list) = self.by_vpn.get_mut(a) {
                list.retain(|i| *i != local_index);
                if list.is_empty() {
                    self.by_vpn.remove(a);
                }
            }
        }
        Some(t)
    }
}
