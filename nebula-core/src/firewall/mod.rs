//! The Nebula group firewall (Go Nebula 1.11 semantics): packet classification, rules by port,
//! protocol, CA, host, groups and CIDRs, connection tracking and reject replies. Pure logic: time is passed in.
//!
//! Flow of one decision ([`Firewall::drop`]): the remote address must belong to the peer's
//! certificate, the local address to this host (VPN addresses or unsafe networks), then a live
//! conntrack entry admits the packet (re-checked against the rules if it was admitted by an older
//! rule set), else the direction's rules must match; an admitted packet creates or refreshes the
//! flow's conntrack entry (a new flow that finds the table full is dropped instead).

mod config;
mod conntrack;
mod packet;
mod reject;
mod rules;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipnet::IpNet;

pub use config::{
    Action, Direction, FirewallConfig, FirewallError, PortError, RuleConfig, RuleProblem,
    RuleWarning, DEFAULT_TCP_TIMEOUT, DEFAULT_TIMEOUT, DEFAULT_UDP_TIMEOUT,
};
pub use conntrack::{Conntrack, DEFAULT_MAX_ENTRIES as DEFAULT_CONNTRACK_MAX_ENTRIES};
pub use packet::{
    ipv6_find_upper_protocol, FlowKey, Ipv6Upper, Packet, PacketError, IPV4_HEADER_LEN,
    IPV6_HEADER_LEN, PROTO_ANY, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP,
};
pub use reject::{build_reject, MAX_IPV4_REJECT_PACKET_SIZE, MAX_REJECT_PACKET_SIZE};

use config::{go_rule_string, parse_rule};
use rules::{DirectionTable, LocalDefault, PrefixMap};

/// Expiry-queue items examined by each [`Firewall::drop`] call (Go purges one per call).
const PURGE_PER_DECISION: usize = 2;

/// Conntrack timeouts are capped at this (about 100 years) so deadlines cannot overflow.
const MAX_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Every firewall gets a distinct rules version, so conntrack entries admitted by any other
/// (older) firewall are re-checked when first used with this one.
static NEXT_RULES_VERSION: AtomicU64 = AtomicU64::new(1);

/// What the firewall needs to know about the peer at the other end of the tunnel, taken from its
/// certificate (all borrowed; build it once per tunnel).
#[derive(Debug, Clone, Copy)]
pub struct PeerInfo<'a> {
    /// The peer certificate's networks (its VPN addresses with their prefix lengths).
    pub vpn_networks: &'a [IpNet],
    /// The peer certificate's unsafe networks (routes it may send from).
    pub unsafe_networks: &'a [IpNet],
    /// The peer certificate's name (matched by `host`).
    pub name: &'a str,
    /// The peer certificate's groups (matched by `group`/`groups`).
    pub groups: &'a [String],
    /// Name of the CA that issued the peer certificate (matched by `ca_name`); empty if unknown.
    pub ca_name: &'a str,
    /// Hex fingerprint of the issuing CA, i.e. the certificate's issuer (matched by `ca_sha`).
    pub ca_sha: &'a str,
}

/// Why a packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DropReason {
    /// The remote address is neither one of the peer certificate's VPN addresses nor inside one of
    /// its unsafe networks: the peer is spoofing (or routing for someone it may not).
    #[error("remote address is not in remote certificate networks")]
    InvalidRemoteIp,
    /// The remote address is one of the peer's VPN addresses, but outside every VPN network of
    /// ours (a network we do not handle; refused for now, as in Go 1.10+).
    #[error("remote address is not within a network that we handle")]
    PeerRejected,
    /// The local address is neither one of our VPN addresses nor in one of our unsafe networks.
    #[error("local address is not in list of handled local addresses")]
    InvalidLocalIp,
    /// No conntrack entry and no rule of this direction admits the packet.
    #[error("no matching rule in firewall table")]
    NoMatchingRule,
    /// The packet is not a well-formed IPv4/IPv6 packet the firewall can classify (truncated
    /// header, bad length). Go drops these before its firewall and counts them nowhere.
    #[error("packet could not be parsed")]
    Unparseable,
    /// A rule admits the packet, but it starts a new flow and the conntrack table is at
    /// `firewall.conntrack.max_entries`: the flow is not tracked, so it is dropped (its replies
    /// could not be admitted). Existing flows keep their entries. A peer opening flows faster
    /// than they expire, or a cap set too low for the traffic; Go has no such cap.
    #[error("connection tracking table is full")]
    ConntrackFull,
}

impl DropReason {
    /// The last part of Go's metric name (`firewall.{incoming,outgoing}.dropped.<this>`);
    /// `None` for drops Go does not count there. `conntrack_full` is ours (Go has no cap).
    pub fn metric_suffix(&self) -> Option<&'static str> {
        match self {
            DropReason::InvalidRemoteIp | DropReason::PeerRejected => Some("remote_addr"),
            DropReason::InvalidLocalIp => Some("local_addr"),
            DropReason::NoMatchingRule => Some("no_rule"),
            DropReason::ConntrackFull => Some("conntrack_full"),
            DropReason::Unparseable => None,
        }
    }
}

/// A compiled firewall: immutable, shareable between workers (`Sync`); the mutable part is the
/// [`Conntrack`] passed to each decision. On reload build a new one and keep using the old
/// conntrack: entries admitted under the old rules are re-checked on their next use.
#[derive(Debug, Clone)]
pub struct Firewall {
    inbound: DirectionTable,
    outbound: DirectionTable,
    inbound_action: Action,
    outbound_action: Action,
    tcp_timeout: Duration,
    udp_timeout: Duration,
    default_timeout: Duration,
    conntrack_max_entries: usize,
    /// Our VPN networks (full prefixes): a peer VPN address outside them is refused.
    my_vpn_networks: PrefixMap<()>,
    /// Our VPN addresses (host prefixes) and our unsafe networks: valid local addresses.
    routable: PrefixMap<()>,
    rules_version: u64,
    rules_text: String,
    warnings: Vec<RuleWarning>,
}

fn parse_rules(
    list: &[RuleConfig],
    direction: Direction,
    warnings: &mut Vec<RuleWarning>,
) -> Result<Vec<config::ParsedRule>, FirewallError> {
    let mut out = Vec::with_capacity(list.len());
    for (index, r) in list.iter().enumerate() {
        let mut w = Vec::new();
        let parsed = parse_rule(r, &mut w).map_err(|problem| FirewallError::Rule {
            direction,
            index,
            problem,
        })?;
        warnings.extend(w.into_iter().map(|message| RuleWarning {
            direction,
            index,
            message,
        }));
        out.push(parsed);
    }
    Ok(out)
}

fn host_prefix(n: &IpNet) -> IpNet {
    IpNet::from(n.addr())
}

impl Firewall {
    /// Validates `cfg` and compiles it. `local_networks` are this host's certificate networks (VPN
    /// addresses with prefix length), `local_unsafe_networks` its certificate's unsafe networks.
    /// Errors name the list, the rule index and the problem, with Go Nebula 1.11's texts; outbound
    /// rules are checked first, as in Go.
    pub fn new(
        cfg: &FirewallConfig,
        local_networks: &[IpNet],
        local_unsafe_networks: &[IpNet],
    ) -> Result<Firewall, FirewallError> {
        let mut warnings = Vec::new();
        let outbound = parse_rules(&cfg.outbound, Direction::Outbound, &mut warnings)?;
        let inbound = parse_rules(&cfg.inbound, Direction::Inbound, &mut warnings)?;

        let default = LocalDefault {
            any: local_unsafe_networks.is_empty() || cfg.default_local_cidr_any,
            vpn_networks: local_networks.to_vec(),
        };

        let mut my_vpn_networks = PrefixMap::default();
        let mut routable = PrefixMap::default();
        for n in local_networks {
            my_vpn_networks.insert(*n);
            routable.insert(host_prefix(n));
        }
        for n in local_unsafe_networks {
            routable.insert(*n);
        }

        let mut rules_text = String::new();
        for r in &outbound {
            rules_text.push_str(&go_rule_string(false, r));
            rules_text.push('\n');
        }
        for r in &inbound {
            rules_text.push_str(&go_rule_string(true, r));
            rules_text.push('\n');
        }

        Ok(Firewall {
            inbound: DirectionTable::build(&inbound, &default),
            outbound: DirectionTable::build(&outbound, &default),
            inbound_action: cfg.inbound_action,
            outbound_action: cfg.outbound_action,
            tcp_timeout: cfg.tcp_timeout.min(MAX_TIMEOUT),
            udp_timeout: cfg.udp_timeout.min(MAX_TIMEOUT),
            default_timeout: cfg.default_timeout.min(MAX_TIMEOUT),
            conntrack_max_entries: cfg.conntrack_max_entries,
            my_vpn_networks,
            routable,
            rules_version: NEXT_RULES_VERSION.fetch_add(1, Ordering::Relaxed),
            rules_text,
            warnings,
        })
    }

    /// Decides one packet. `Ok(())` lets it through (and creates or refreshes its conntrack entry);
    /// `Err` says why it is dropped (then, if [`Firewall::action`] is [`Action::Reject`], answer
    /// with [`build_reject`]). `incoming` is true for packets from the tunnel to the TUN.
    /// Allocation-free except when a new flow grows the conntrack table.
    pub fn drop(
        &self,
        pkt: &Packet,
        incoming: bool,
        peer: &PeerInfo<'_>,
        conntrack: &mut Conntrack,
        now: Instant,
    ) -> Result<(), DropReason> {
        self.check_remote(pkt, peer)?;
        if !self.routable.contains(pkt.local_addr) {
            return Err(DropReason::InvalidLocalIp);
        }

        conntrack.purge_expired(now, PURGE_PER_DECISION);
        let timeout = self.timeout(pkt.protocol);
        if let Some(entry) = conntrack.get_mut(pkt) {
            let mut live = entry.expires > now;
            if live && entry.rules_version != self.rules_version {
                // Admitted under another rule set: keep it only if the current rules of the
                // direction that created it still admit it.
                if self
                    .table(entry.incoming)
                    .matches(pkt, entry.incoming, peer)
                {
                    entry.rules_version = self.rules_version;
                } else {
                    live = false;
                }
            }
            if live {
                entry.expires = deadline(now, timeout);
                return Ok(());
            }
            conntrack.remove(pkt);
        }

        if !self.table(incoming).matches(pkt, incoming, peer) {
            return Err(DropReason::NoMatchingRule);
        }
        conntrack
            .insert(
                *pkt,
                incoming,
                self.rules_version,
                deadline(now, timeout),
                now,
            )
            .map_err(|conntrack::Full| DropReason::ConntrackFull)
    }

    /// The remote address must be the peer's: one of its VPN addresses (which must lie in one of
    /// our VPN networks) or inside one of its unsafe networks. Longest match wins, as Go's table.
    fn check_remote(&self, pkt: &Packet, peer: &PeerInfo<'_>) -> Result<(), DropReason> {
        let addr = pkt.remote_addr;
        let mut peer_vpn_addr = false;
        for n in peer.vpn_networks {
            if n.addr() == addr {
                if self.my_vpn_networks.contains(addr) {
                    return Ok(());
                }
                peer_vpn_addr = true;
            }
        }
        if peer_vpn_addr {
            // An unsafe network that is exactly this host address overrides the VPN entry.
            if peer
                .unsafe_networks
                .iter()
                .any(|n| n.addr() == addr && n.prefix_len() == n.max_prefix_len())
            {
                return Ok(());
            }
            return Err(DropReason::PeerRejected);
        }
        if peer.unsafe_networks.iter().any(|n| n.contains(&addr)) {
            return Ok(());
        }
        Err(DropReason::InvalidRemoteIp)
    }

    fn table(&self, incoming: bool) -> &DirectionTable {
        if incoming {
            &self.inbound
        } else {
            &self.outbound
        }
    }

    /// True if this direction's rules (ignoring conntrack and the address checks) admit `pkt`.
    pub fn rules_match(&self, pkt: &Packet, incoming: bool, peer: &PeerInfo<'_>) -> bool {
        self.table(incoming).matches(pkt, incoming, peer)
    }

    /// Conntrack timeout for a protocol: TCP, UDP, or the default for everything else.
    pub fn timeout(&self, protocol: u8) -> Duration {
        match protocol {
            PROTO_TCP => self.tcp_timeout,
            PROTO_UDP => self.udp_timeout,
            _ => self.default_timeout,
        }
    }

    /// `firewall.conntrack.max_entries`: the cap for the conntrack table used with this firewall
    /// (applied by [`crate::filter::GroupFirewall`], also on reload).
    pub fn conntrack_max_entries(&self) -> usize {
        self.conntrack_max_entries
    }

    /// The action for refused packets of a direction (`incoming` true = `inbound_action`).
    pub fn action(&self, incoming: bool) -> Action {
        if incoming {
            self.inbound_action
        } else {
            self.outbound_action
        }
    }

    /// This firewall's rules version (distinct for every [`Firewall`] built in this process).
    pub fn rules_version(&self) -> u64 {
        self.rules_version
    }

    /// Warnings about accepted rules (ICMP port ignored, `any` swallowing other selectors, `code`).
    pub fn warnings(&self) -> &[RuleWarning] {
        &self.warnings
    }

    /// Hex SHA-256 of Go's rule description string (Go's `GetRuleHash`).
    pub fn rules_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        use std::fmt::Write;
        let digest = Sha256::digest(self.rules_text.as_bytes());
        digest.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    /// FNV-1a (32 bit) of Go's rule description string (Go's `GetRuleHashFNV`, a metric value).
    pub fn rules_hash_fnv(&self) -> u32 {
        self.rules_text.bytes().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        })
    }

    /// Both hashes as Go logs them: `SHA:<hex>,FNV:<decimal>`.
    pub fn rules_hashes(&self) -> String {
        format!("SHA:{},FNV:{}", self.rules_hash(), self.rules_hash_fnv())
    }
}

fn deadline(now: Instant, timeout: Duration) -> Instant {
    now.checked_add(timeout).unwrap_or(now)
}

#[cfg(test)]
mod tests;
