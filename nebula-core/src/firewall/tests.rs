//! Rule-semantics, conntrack and address-check tests of the firewall (cases of Go Nebula's
//! firewall_test.go @ v1.11.1 rewritten as tables over our API, plus the config docs' semantics).

use super::*;
use std::net::IpAddr;

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}
fn net(v: &str) -> IpNet {
    v.parse().unwrap()
}
fn ip(v: &str) -> IpAddr {
    v.parse().unwrap()
}

/// A rule with proto and port set; selectors are added with the builder methods below.
fn rule(proto: &str, port: &str) -> RuleConfig {
    RuleConfig {
        proto: s(proto),
        port: if port.is_empty() { None } else { s(port) },
        ..RuleConfig::default()
    }
}

trait RuleExt {
    fn host(self, v: &str) -> Self;
    fn group(self, v: &str) -> Self;
    fn groups(self, v: &[&str]) -> Self;
    fn cidr(self, v: &str) -> Self;
    fn local_cidr(self, v: &str) -> Self;
    fn ca_name(self, v: &str) -> Self;
    fn ca_sha(self, v: &str) -> Self;
}

impl RuleExt for RuleConfig {
    fn host(mut self, v: &str) -> Self {
        self.host = s(v);
        self
    }
    fn group(mut self, v: &str) -> Self {
        self.group = s(v);
        self
    }
    fn groups(mut self, v: &[&str]) -> Self {
        self.groups = Some(v.iter().map(|g| g.to_string()).collect());
        self
    }
    fn cidr(mut self, v: &str) -> Self {
        self.cidr = s(v);
        self
    }
    fn local_cidr(mut self, v: &str) -> Self {
        self.local_cidr = s(v);
        self
    }
    fn ca_name(mut self, v: &str) -> Self {
        self.ca_name = s(v);
        self
    }
    fn ca_sha(mut self, v: &str) -> Self {
        self.ca_sha = s(v);
        self
    }
}

/// An owned peer description from which a [`PeerInfo`] is borrowed.
#[derive(Clone)]
struct Peer {
    vpn: Vec<IpNet>,
    unsafe_nets: Vec<IpNet>,
    name: String,
    groups: Vec<String>,
    ca_name: String,
    ca_sha: String,
}

impl Peer {
    fn new(name: &str, nets: &[&str]) -> Peer {
        Peer {
            vpn: nets.iter().map(|n| net(n)).collect(),
            unsafe_nets: Vec::new(),
            name: name.into(),
            groups: vec!["default-group".into()],
            ca_name: String::new(),
            ca_sha: "signer-shasum".into(),
        }
    }
    fn groups(mut self, g: &[&str]) -> Peer {
        self.groups = g.iter().map(|g| g.to_string()).collect();
        self
    }
    fn ca(mut self, name: &str, sha: &str) -> Peer {
        self.ca_name = name.into();
        self.ca_sha = sha.into();
        self
    }
    fn unsafe_nets(mut self, n: &[&str]) -> Peer {
        self.unsafe_nets = n.iter().map(|n| net(n)).collect();
        self
    }
    fn info(&self) -> PeerInfo<'_> {
        PeerInfo {
            vpn_networks: &self.vpn,
            unsafe_networks: &self.unsafe_nets,
            name: &self.name,
            groups: &self.groups,
            ca_name: &self.ca_name,
            ca_sha: &self.ca_sha,
        }
    }
}

fn pkt(local: &str, remote: &str, local_port: u16, remote_port: u16, protocol: u8) -> Packet {
    Packet {
        local_addr: ip(local),
        remote_addr: ip(remote),
        local_port,
        remote_port,
        protocol,
        fragment: false,
    }
}

fn cfg(inbound: Vec<RuleConfig>, outbound: Vec<RuleConfig>) -> FirewallConfig {
    FirewallConfig {
        inbound,
        outbound,
        ..FirewallConfig::default()
    }
}

fn fw(
    inbound: Vec<RuleConfig>,
    outbound: Vec<RuleConfig>,
    mine: &[&str],
    unsafe_nets: &[&str],
) -> Firewall {
    let mine: Vec<IpNet> = mine.iter().map(|n| net(n)).collect();
    let unsafe_nets: Vec<IpNet> = unsafe_nets.iter().map(|n| net(n)).collect();
    Firewall::new(&cfg(inbound, outbound), &mine, &unsafe_nets).unwrap()
}

/// Fresh-conntrack decision.
fn decide(f: &Firewall, p: &Packet, incoming: bool, peer: &Peer) -> Result<(), DropReason> {
    f.drop(
        p,
        incoming,
        &peer.info(),
        &mut Conntrack::new(),
        Instant::now(),
    )
}

// ------------------------------------------------------------------------------------------------
// firewall_test.go TestFirewall_Drop / DropV6

#[test]
fn drop_basic_v4_and_v6() {
    for (mine, addr, other) in [
        ("1.2.3.4/8", "1.2.3.4", "1.2.3.10"),
        ("fd12::34/7", "fd12::34", "fd12::56"),
    ] {
        let peer_net = if addr.contains(':') {
            "fd12::34/120"
        } else {
            "1.2.3.4/24"
        };
        let peer = Peer::new("host1", &[peer_net]);
        let f = fw(vec![rule("any", "any").group("any")], vec![], &[mine], &[]);
        let p = pkt(addr, addr, 10, 90, PROTO_UDP);
        let mut ct = Conntrack::new();
        let now = Instant::now();
        assert_eq!(
            f.drop(&p, false, &peer.info(), &mut ct, now),
            Err(DropReason::NoMatchingRule)
        );
        assert_eq!(f.drop(&p, true, &peer.info(), &mut ct, now), Ok(()));
        // outbound now allowed by conntrack
        assert_eq!(f.drop(&p, false, &peer.info(), &mut ct, now), Ok(()));
        // remote mismatch
        let mut q = p;
        q.remote_addr = ip(other);
        assert_eq!(
            f.drop(&q, false, &peer.info(), &mut ct, now),
            Err(DropReason::InvalidRemoteIp)
        );

        // ca_sha / ca_name must not get in the way of group checks, and must admit on match
        let peer = peer.ca("ca-good", "signer-shasum");
        let cases: Vec<(Vec<RuleConfig>, Result<(), DropReason>)> = vec![
            (
                vec![
                    rule("any", "any").group("nope").ca_sha("signer-shasum"),
                    rule("any", "any")
                        .group("default-group")
                        .ca_sha("signer-shasum-bad"),
                ],
                Err(DropReason::NoMatchingRule),
            ),
            (
                vec![
                    rule("any", "any").group("nope").ca_sha("signer-shasum-bad"),
                    rule("any", "any")
                        .group("default-group")
                        .ca_sha("signer-shasum"),
                ],
                Ok(()),
            ),
            (
                vec![
                    rule("any", "any").group("nope").ca_name("ca-good"),
                    rule("any", "any")
                        .group("default-group")
                        .ca_name("ca-good-bad"),
                ],
                Err(DropReason::NoMatchingRule),
            ),
            (
                vec![
                    rule("any", "any").group("nope").ca_name("ca-good-bad"),
                    rule("any", "any").group("default-group").ca_name("ca-good"),
                ],
                Ok(()),
            ),
        ];
        for (i, (rules, want)) in cases.into_iter().enumerate() {
            let f = fw(rules, vec![], &[mine], &[]);
            assert_eq!(decide(&f, &p, true, &peer), want, "case {i} {mine}");
        }
    }
}

// TestFirewall_Drop2: groups are AND-ed
#[test]
fn groups_must_all_be_held() {
    let f = fw(
        vec![rule("any", "any").groups(&["default-group", "test-group"])],
        vec![],
        &["1.2.3.4/8"],
        &[],
    );
    let p = pkt("1.2.3.4", "1.2.3.4", 10, 90, PROTO_UDP);
    let good = Peer::new("host1", &["1.2.3.4/24"]).groups(&["default-group", "test-group"]);
    let bad = Peer::new("host1", &["1.2.3.4/24"]).groups(&["default-group", "test-group-not"]);
    assert_eq!(decide(&f, &p, true, &bad), Err(DropReason::NoMatchingRule));
    assert_eq!(decide(&f, &p, true, &good), Ok(()));
}

// TestFirewall_Drop3 / Drop3V6: host, ca_sha and remote cidr selectors
#[test]
fn host_ca_sha_and_cidr_selectors() {
    let f = fw(
        vec![
            rule("any", "1").host("host1"),
            rule("any", "1").ca_sha("signer-sha"),
        ],
        vec![],
        &["1.2.3.4/8"],
        &[],
    );
    let p = pkt("1.2.3.4", "1.2.3.4", 1, 1, PROTO_UDP);
    let h1 = Peer::new("host1", &["1.2.3.4/24"]).ca("", "signer-sha-bad");
    let h2 = Peer::new("host2", &["1.2.3.4/24"]).ca("", "signer-sha");
    let h3 = Peer::new("host3", &["1.2.3.4/24"]).ca("", "signer-sha-bad");
    assert_eq!(decide(&f, &p, true, &h1), Ok(()));
    assert_eq!(decide(&f, &p, true, &h2), Ok(()));
    assert_eq!(decide(&f, &p, true, &h3), Err(DropReason::NoMatchingRule));

    let f = fw(
        vec![rule("any", "1").cidr("1.2.3.4/24")],
        vec![],
        &["1.2.3.4/8"],
        &[],
    );
    assert_eq!(decide(&f, &p, true, &h1), Ok(()));

    let p6 = pkt("fd12::34", "fd12::34", 1, 1, PROTO_UDP);
    let h6 = Peer::new("host-owner", &["fd12::34/120"]);
    let f = fw(
        vec![rule("any", "1").cidr("fd12::34/120")],
        vec![],
        &["fd12::34/7"],
        &[],
    );
    assert_eq!(decide(&f, &p6, true, &h6), Ok(()));
}

// TestFirewall_DropConntrackReload
#[test]
fn reload_rechecks_conntrack_and_cuts_connections() {
    let peer = Peer::new("host1", &["1.2.3.4/24"]);
    let p = pkt("1.2.3.4", "1.2.3.4", 10, 90, PROTO_UDP);
    let now = Instant::now();
    let mut ct = Conntrack::new();

    let f1 = fw(
        vec![rule("any", "any").group("any")],
        vec![],
        &["1.2.3.4/8"],
        &[],
    );
    assert_eq!(
        f1.drop(&p, false, &peer.info(), &mut ct, now),
        Err(DropReason::NoMatchingRule)
    );
    assert_eq!(f1.drop(&p, true, &peer.info(), &mut ct, now), Ok(()));
    assert_eq!(f1.drop(&p, false, &peer.info(), &mut ct, now), Ok(()));

    // New rules still admit local port 10 inbound: the outbound packet keeps flowing.
    let f2 = fw(
        vec![rule("any", "10").group("any")],
        vec![],
        &["1.2.3.4/8"],
        &[],
    );
    assert_ne!(f1.rules_version(), f2.rules_version());
    assert_eq!(f2.drop(&p, false, &peer.info(), &mut ct, now), Ok(()));

    // New rules only admit port 11: the tracked flow is cut.
    let f3 = fw(
        vec![rule("any", "11").group("any")],
        vec![],
        &["1.2.3.4/8"],
        &[],
    );
    assert_eq!(
        f3.drop(&p, false, &peer.info(), &mut ct, now),
        Err(DropReason::NoMatchingRule)
    );
    assert_eq!(ct.len(), 0);
    // ... and stays cut even for the direction that opened it.
    assert_eq!(
        f3.drop(&p, true, &peer.info(), &mut ct, now),
        Err(DropReason::NoMatchingRule)
    );
}

#[test]
fn reload_removing_outbound_rule_cuts_established_tcp() {
    // A client connection: outbound SYN admitted by an outbound rule, replies by conntrack.
    let peer = Peer::new("server", &["10.0.0.2/24"]);
    let out = pkt("10.0.0.1", "10.0.0.2", 40000, 22, PROTO_TCP);
    let now = Instant::now();
    let mut ct = Conntrack::new();
    let old = fw(
        vec![],
        vec![rule("tcp", "22").host("any")],
        &["10.0.0.1/24"],
        &[],
    );
    assert_eq!(old.drop(&out, false, &peer.info(), &mut ct, now), Ok(()));
    assert_eq!(old.drop(&out, true, &peer.info(), &mut ct, now), Ok(()));
    // SIGHUP: outbound now only allows 443. The reply arriving inbound is re-checked against the
    // outbound table (the direction that created the flow) and refused.
    let new = fw(
        vec![],
        vec![rule("tcp", "443").host("any")],
        &["10.0.0.1/24"],
        &[],
    );
    assert_eq!(
        new.drop(&out, true, &peer.info(), &mut ct, now),
        Err(DropReason::NoMatchingRule)
    );
    assert!(ct.is_empty());
}

// TestFirewall_ICMPPortBehavior
#[test]
fn icmp_ports_are_conntrack_only() {
    let peer = Peer::new("host1", &["1.2.3.4/24"]);
    let mine = ["1.2.3.4/8"];
    let icmp = |l, r| pkt("1.2.3.4", "1.2.3.4", l, r, PROTO_ICMP);
    let now = Instant::now();

    // icmp allowed: whatever the ports
    let f = fw(vec![rule("icmp", "0").group("any")], vec![], &mine, &[]);
    for (l, r) in [(0, 0), (0xabcd, 0x1234)] {
        let mut ct = Conntrack::new();
        let p = icmp(l, r);
        assert_eq!(
            f.drop(&p, false, &peer.info(), &mut ct, now),
            Err(DropReason::NoMatchingRule)
        );
        assert_eq!(f.drop(&p, true, &peer.info(), &mut ct, now), Ok(()));
        assert_eq!(f.drop(&p, false, &peer.info(), &mut ct, now), Ok(()));
    }

    // proto any with a port range never matches ICMP, even when the "ports" fall in the range
    let f = fw(vec![rule("any", "80-444").group("any")], vec![], &mine, &[]);
    for (l, r) in [(0, 0), (0xabcd, 0x1234), (80, 80)] {
        let mut ct = Conntrack::new();
        let p = icmp(l, r);
        assert_eq!(
            f.drop(&p, false, &peer.info(), &mut ct, now),
            Err(DropReason::NoMatchingRule)
        );
        assert_eq!(
            f.drop(&p, true, &peer.info(), &mut ct, now),
            Err(DropReason::NoMatchingRule)
        );
        assert_eq!(
            f.drop(&p, false, &peer.info(), &mut ct, now),
            Err(DropReason::NoMatchingRule)
        );
    }

    // proto any, any port: allowed; a different identifier is a different flow
    let f = fw(vec![rule("any", "0").group("any")], vec![], &mine, &[]);
    let mut ct = Conntrack::new();
    let mut p = icmp(0xabcd, 0x1234);
    assert_eq!(
        f.drop(&p, false, &peer.info(), &mut ct, now),
        Err(DropReason::NoMatchingRule)
    );
    assert_eq!(f.drop(&p, true, &peer.info(), &mut ct, now), Ok(()));
    assert_eq!(f.drop(&p, false, &peer.info(), &mut ct, now), Ok(()));
    p.remote_port += 1;
    assert_eq!(
        f.drop(&p, false, &peer.info(), &mut ct, now),
        Err(DropReason::NoMatchingRule)
    );
}

#[test]
fn icmp_rule_matches_icmpv6() {
    let peer = Peer::new("h", &["fd00::2/64"]);
    let f = fw(
        vec![rule("icmp", "").host("any")],
        vec![],
        &["fd00::1/64"],
        &[],
    );
    let p = pkt("fd00::1", "fd00::2", 0, 7, PROTO_ICMPV6);
    assert_eq!(decide(&f, &p, true, &peer), Ok(()));
    let tcp = pkt("fd00::1", "fd00::2", 22, 4000, PROTO_TCP);
    assert_eq!(
        decide(&f, &tcp, true, &peer),
        Err(DropReason::NoMatchingRule)
    );
}

// TestFirewall_DropIPSpoofing
#[test]
fn spoofed_source_is_dropped() {
    let peer = Peer::new("host", &["192.0.2.2/24"]).unsafe_nets(&["198.51.100.0/24"]);
    let f = fw(
        vec![rule("any", "1").host("any")],
        vec![],
        &["192.0.2.1/24"],
        &[],
    );
    let p = pkt("192.0.2.1", "192.0.2.3", 1, 1, PROTO_UDP);
    assert_eq!(
        decide(&f, &p, true, &peer),
        Err(DropReason::InvalidRemoteIp)
    );
    // The peer's unsafe network is a legitimate source.
    let p = pkt("192.0.2.1", "198.51.100.7", 1, 1, PROTO_UDP);
    assert_eq!(decide(&f, &p, true, &peer), Ok(()));
}

// TestFirewall_ConntrackSourceSpoofingAcrossPeers: the address check comes before conntrack
#[test]
fn conntrack_cannot_be_reused_by_another_peer() {
    let victim = Peer::new("victim", &["192.0.2.2/24"]);
    let attacker = Peer::new("attacker", &["192.0.2.3/24"]);
    let f = fw(
        vec![rule("any", "0").group("any")],
        vec![],
        &["192.0.2.1/24"],
        &[],
    );
    let mut ct = Conntrack::new();
    let now = Instant::now();
    let flow = pkt("192.0.2.1", "192.0.2.2", 443, 55000, PROTO_UDP);
    assert_eq!(f.drop(&flow, true, &victim.info(), &mut ct, now), Ok(()));
    let mut unseen = flow;
    unseen.remote_port = 55001;
    assert_eq!(
        f.drop(&unseen, true, &attacker.info(), &mut ct, now),
        Err(DropReason::InvalidRemoteIp)
    );
    assert_eq!(
        f.drop(&flow, true, &attacker.info(), &mut ct, now),
        Err(DropReason::InvalidRemoteIp)
    );
}

// TestFirewall_Drop_EnforceIPMatch
#[test]
fn enforce_ip_match_table() {
    let two = ["1.2.3.4/24", "2.2.2.2/24"];
    struct Case {
        name: &'static str,
        mine: &'static str,
        peer: Vec<&'static str>,
        local: Option<&'static str>,
        remote: Option<&'static str>,
        want: Result<(), DropReason>,
    }
    let cases = [
        Case {
            name: "allow inbound all matching",
            mine: "1.1.1.1/8",
            peer: vec!["1.2.3.4/24"],
            local: None,
            remote: None,
            want: Ok(()),
        },
        Case {
            name: "local not ours",
            mine: "1.1.1.1/8",
            peer: vec!["1.2.3.4/24"],
            local: Some("1.2.3.8"),
            remote: None,
            want: Err(DropReason::InvalidLocalIp),
        },
        Case {
            name: "block inbound remote mismatched",
            mine: "1.1.1.1/8",
            peer: vec!["1.2.3.4/24"],
            local: None,
            remote: Some("9.9.9.9"),
            want: Err(DropReason::InvalidRemoteIp),
        },
        Case {
            name: "block a vpn peer packet",
            mine: "1.1.1.1/8",
            peer: vec!["2.2.2.2/24"],
            local: None,
            remote: None,
            want: Err(DropReason::PeerRejected),
        },
        Case {
            name: "allow inbound one matching",
            mine: "1.1.1.1/8",
            peer: two.to_vec(),
            local: None,
            remote: None,
            want: Ok(()),
        },
        Case {
            name: "block inbound multimismatch",
            mine: "1.1.1.1/8",
            peer: two.to_vec(),
            local: None,
            remote: Some("9.9.9.9"),
            want: Err(DropReason::InvalidRemoteIp),
        },
        Case {
            name: "allow inbound 2nd one matching",
            mine: "2.2.2.1/24",
            peer: two.to_vec(),
            local: None,
            remote: Some("2.2.2.2"),
            want: Ok(()),
        },
        Case {
            name: "peer address outside our networks, other one inside",
            mine: "2.2.2.1/24",
            peer: two.to_vec(),
            local: None,
            remote: Some("1.2.3.4"),
            want: Err(DropReason::PeerRejected),
        },
    ];
    for c in cases {
        let f = fw(vec![rule("any", "0").group("any")], vec![], &[c.mine], &[]);
        let peer = Peer::new("host1", &c.peer);
        let mine_addr = net(c.mine).addr().to_string();
        let first = net(c.peer[0]).addr().to_string();
        let p = pkt(
            c.local.unwrap_or(&mine_addr),
            c.remote.unwrap_or(&first),
            10,
            90,
            PROTO_UDP,
        );
        assert_eq!(decide(&f, &p, true, &peer), c.want, "{}", c.name);
    }
}

#[test]
fn unsafe_route_needs_local_cidr_unless_default_any() {
    let peer = Peer::new("host1", &["1.2.3.4/24"]);
    let p = pkt("192.168.0.3", "1.2.3.4", 10, 90, PROTO_UDP);
    let to_vpn = pkt("1.1.1.1", "1.2.3.4", 10, 90, PROTO_UDP);
    let mine = [net("1.1.1.1/8")];
    let unsafe_nets = [net("192.168.0.0/24")];

    // default_local_cidr_any false (1.10+): a rule without local_cidr only covers our VPN networks
    let f = Firewall::new(
        &cfg(vec![rule("any", "0").group("any")], vec![]),
        &mine,
        &unsafe_nets,
    )
    .unwrap();
    assert_eq!(decide(&f, &p, true, &peer), Err(DropReason::NoMatchingRule));
    assert_eq!(decide(&f, &to_vpn, true, &peer), Ok(()));

    let f = Firewall::new(
        &cfg(
            vec![
                rule("any", "0").group("any"),
                rule("any", "0").group("any").local_cidr("192.168.0.0/24"),
            ],
            vec![],
        ),
        &mine,
        &unsafe_nets,
    )
    .unwrap();
    assert_eq!(decide(&f, &p, true, &peer), Ok(()));

    // default_local_cidr_any true: every rule covers every local address we route
    let mut c = cfg(vec![rule("any", "0").group("any")], vec![]);
    c.default_local_cidr_any = true;
    let f = Firewall::new(&c, &mine, &unsafe_nets).unwrap();
    assert_eq!(decide(&f, &p, true, &peer), Ok(()));

    // local_cidr: any, and a local_cidr that does not cover the destination
    let f = Firewall::new(
        &cfg(
            vec![rule("any", "0").host("host1").local_cidr("any")],
            vec![],
        ),
        &mine,
        &unsafe_nets,
    )
    .unwrap();
    assert_eq!(decide(&f, &p, true, &peer), Ok(()));
    let f = Firewall::new(
        &cfg(
            vec![rule("any", "0").host("host1").local_cidr("192.168.1.0/24")],
            vec![],
        ),
        &mine,
        &unsafe_nets,
    )
    .unwrap();
    assert_eq!(decide(&f, &p, true, &peer), Err(DropReason::NoMatchingRule));
    // Without unsafe networks an unset local_cidr means any.
    let f = fw(
        vec![rule("any", "0").group("any")],
        vec![],
        &["1.1.1.1/8"],
        &[],
    );
    assert_eq!(decide(&f, &to_vpn, true, &peer), Ok(()));
    // A local address outside everything we route is refused before the rules.
    assert_eq!(decide(&f, &p, true, &peer), Err(DropReason::InvalidLocalIp));
}

#[test]
fn local_only_rule_is_valid_selector() {
    // local_cidr alone is a selector: any host, restricted by destination
    let peer = Peer::new("h", &["10.0.0.2/24"]);
    let f = Firewall::new(
        &cfg(vec![rule("tcp", "80").local_cidr("10.0.0.1/32")], vec![]),
        &[net("10.0.0.1/24")],
        &[],
    )
    .unwrap();
    assert_eq!(
        decide(
            &f,
            &pkt("10.0.0.1", "10.0.0.2", 80, 5000, PROTO_TCP),
            true,
            &peer
        ),
        Ok(())
    );
}

// ------------------------------------------------------------------------------------------------
// Rule semantics by field

struct Sem {
    name: &'static str,
    rule: RuleConfig,
    pkt: Packet,
    peer: Peer,
    incoming: bool,
    allow: bool,
}

fn default_peer() -> Peer {
    Peer::new("host1", &["10.1.0.2/16"])
        .groups(&["g1", "g2", "g3"])
        .ca("ca-a", "sha-a")
        .unsafe_nets(&["192.168.50.0/24"])
}

fn sem(name: &'static str, rule: RuleConfig, pkt: Packet, allow: bool) -> Sem {
    Sem {
        name,
        rule,
        pkt,
        peer: default_peer(),
        incoming: true,
        allow,
    }
}

const L: &str = "10.1.0.1";
const R: &str = "10.1.0.2";

#[test]
fn rule_semantics_table() {
    let tcp = |lp, rp| pkt(L, R, lp, rp, PROTO_TCP);
    let udp = |lp, rp| pkt(L, R, lp, rp, PROTO_UDP);
    let mut frag = udp(0, 0);
    frag.fragment = true;
    let gre = pkt(L, R, 0x1234, 0x5678, 47);
    let v6 = pkt("fd00::1", "fd00::2", 80, 5000, PROTO_TCP);
    let peer6 = Peer::new("host1", &["fd00::2/64"]);

    let mut cases = vec![
        // ports
        sem("port any", rule("tcp", "any").host("any"), tcp(1, 2), true),
        sem(
            "port 0 is any",
            rule("tcp", "0").host("any"),
            tcp(65535, 2),
            true,
        ),
        sem(
            "single port hit",
            rule("tcp", "80").host("any"),
            tcp(80, 5000),
            true,
        ),
        sem(
            "single port miss",
            rule("tcp", "80").host("any"),
            tcp(81, 80),
            false,
        ),
        sem(
            "range low edge",
            rule("tcp", "200-901").host("any"),
            tcp(200, 1),
            true,
        ),
        sem(
            "range high edge",
            rule("tcp", "200-901").host("any"),
            tcp(901, 1),
            true,
        ),
        sem(
            "range below",
            rule("tcp", "200-901").host("any"),
            tcp(199, 1),
            false,
        ),
        sem(
            "range above",
            rule("tcp", "200-901").host("any"),
            tcp(902, 1),
            false,
        ),
        sem(
            "range from 0 is any",
            rule("tcp", "0-10").host("any"),
            tcp(5000, 1),
            true,
        ),
        sem(
            "full range",
            rule("tcp", "1-65535").host("any"),
            tcp(65535, 1),
            true,
        ),
        sem(
            "full range misses port 0",
            rule("tcp", "1-65535").host("any"),
            tcp(0, 1),
            false,
        ),
        sem(
            "fragment rule admits fragments",
            rule("udp", "fragment").host("any"),
            frag,
            true,
        ),
        sem(
            "fragment rule ignores first fragments",
            rule("udp", "fragment").host("any"),
            udp(53, 53),
            false,
        ),
        sem(
            "port rule ignores fragments",
            rule("udp", "53").host("any"),
            frag,
            false,
        ),
        sem(
            "any port admits fragments",
            rule("udp", "any").host("any"),
            frag,
            true,
        ),
        // protocols
        sem(
            "proto any admits tcp",
            rule("any", "80").host("any"),
            tcp(80, 1),
            true,
        ),
        sem(
            "proto any admits udp",
            rule("any", "80").host("any"),
            udp(80, 1),
            true,
        ),
        sem(
            "proto any port any admits gre",
            rule("any", "any").host("any"),
            gre,
            true,
        ),
        sem(
            "proto any with port matches gre pseudo-ports",
            rule("any", "4660").host("any"),
            gre,
            true,
        ),
        sem(
            "tcp rule refuses udp",
            rule("tcp", "80").host("any"),
            udp(80, 1),
            false,
        ),
        sem(
            "udp rule refuses tcp",
            rule("udp", "80").host("any"),
            tcp(80, 1),
            false,
        ),
        sem(
            "tcp rule refuses gre",
            rule("tcp", "any").host("any"),
            gre,
            false,
        ),
        sem(
            "icmp rule refuses udp",
            rule("icmp", "any").host("any"),
            udp(80, 1),
            false,
        ),
        // host
        sem(
            "host hit",
            rule("tcp", "80").host("host1"),
            tcp(80, 1),
            true,
        ),
        sem(
            "host miss",
            rule("tcp", "80").host("host2"),
            tcp(80, 1),
            false,
        ),
        // groups
        sem("group hit", rule("tcp", "80").group("g2"), tcp(80, 1), true),
        sem(
            "group miss",
            rule("tcp", "80").group("g9"),
            tcp(80, 1),
            false,
        ),
        sem(
            "group any",
            rule("tcp", "80").group("any"),
            tcp(80, 1),
            true,
        ),
        sem(
            "groups all held",
            rule("tcp", "80").groups(&["g1", "g3"]),
            tcp(80, 1),
            true,
        ),
        sem(
            "groups one missing",
            rule("tcp", "80").groups(&["g1", "g9"]),
            tcp(80, 1),
            false,
        ),
        sem(
            "groups containing any",
            rule("tcp", "80").groups(&["g9", "any"]),
            tcp(80, 1),
            true,
        ),
        // host OR group OR cidr within one rule
        sem(
            "host or group: group hits",
            rule("tcp", "80").host("nope").group("g1"),
            tcp(80, 1),
            true,
        ),
        sem(
            "host or group: host hits",
            rule("tcp", "80").host("host1").group("g9"),
            tcp(80, 1),
            true,
        ),
        sem(
            "host or cidr: cidr hits",
            rule("tcp", "80").host("nope").cidr("10.1.0.0/16"),
            tcp(80, 1),
            true,
        ),
        sem(
            "host or cidr: none",
            rule("tcp", "80").host("nope").cidr("10.2.0.0/16"),
            tcp(80, 1),
            false,
        ),
        sem(
            "host any swallows group",
            rule("tcp", "80").host("any").group("g9"),
            tcp(80, 1),
            true,
        ),
        // remote cidr
        sem(
            "cidr hit",
            rule("tcp", "80").cidr("10.1.0.2/32"),
            tcp(80, 1),
            true,
        ),
        sem(
            "cidr host bits ignored",
            rule("tcp", "80").cidr("10.1.7.7/16"),
            tcp(80, 1),
            true,
        ),
        sem(
            "cidr miss",
            rule("tcp", "80").cidr("10.1.0.3/32"),
            tcp(80, 1),
            false,
        ),
        sem("cidr any", rule("tcp", "80").cidr("any"), tcp(80, 1), true),
        sem(
            "cidr 0.0.0.0/0 covers ipv4",
            rule("tcp", "80").cidr("0.0.0.0/0"),
            tcp(80, 1),
            true,
        ),
        sem(
            "cidr ::/0 does not cover ipv4",
            rule("tcp", "80").cidr("::/0"),
            tcp(80, 1),
            false,
        ),
        sem(
            "cidr on peer unsafe network",
            rule("tcp", "80").cidr("192.168.50.0/24"),
            pkt(L, "192.168.50.9", 80, 1, PROTO_TCP),
            true,
        ),
        // local cidr
        sem(
            "local_cidr hit",
            rule("tcp", "80").host("any").local_cidr("10.1.0.0/24"),
            tcp(80, 1),
            true,
        ),
        sem(
            "local_cidr miss",
            rule("tcp", "80").host("any").local_cidr("10.1.1.0/24"),
            tcp(80, 1),
            false,
        ),
        sem(
            "local_cidr any",
            rule("tcp", "80").host("any").local_cidr("any"),
            tcp(80, 1),
            true,
        ),
        sem(
            "local_cidr ::/0 vs ipv4",
            rule("tcp", "80").host("any").local_cidr("::/0"),
            tcp(80, 1),
            false,
        ),
        sem(
            "local_cidr 0.0.0.0/0",
            rule("tcp", "80").host("any").local_cidr("0.0.0.0/0"),
            tcp(80, 1),
            true,
        ),
        sem(
            "group and local_cidr",
            rule("tcp", "80").group("g1").local_cidr("10.1.1.0/24"),
            tcp(80, 1),
            false,
        ),
        // CA selectors
        sem(
            "ca_name only",
            rule("tcp", "80").ca_name("ca-a"),
            tcp(80, 1),
            true,
        ),
        sem(
            "ca_name other",
            rule("tcp", "80").ca_name("ca-b"),
            tcp(80, 1),
            false,
        ),
        sem(
            "ca_sha only",
            rule("tcp", "80").ca_sha("sha-a"),
            tcp(80, 1),
            true,
        ),
        sem(
            "ca_sha other",
            rule("tcp", "80").ca_sha("sha-b"),
            tcp(80, 1),
            false,
        ),
        sem(
            "ca_name or ca_sha: sha hits",
            rule("tcp", "80").ca_name("ca-b").ca_sha("sha-a"),
            tcp(80, 1),
            true,
        ),
        sem(
            "ca_name or ca_sha: name hits",
            rule("tcp", "80").ca_name("ca-a").ca_sha("sha-b"),
            tcp(80, 1),
            true,
        ),
        sem(
            "ca and host both needed",
            rule("tcp", "80").ca_name("ca-a").host("host2"),
            tcp(80, 1),
            false,
        ),
        sem(
            "ca and host",
            rule("tcp", "80").ca_sha("sha-a").host("host1"),
            tcp(80, 1),
            true,
        ),
        sem(
            "ca and group",
            rule("tcp", "80").ca_sha("sha-a").group("g9"),
            tcp(80, 1),
            false,
        ),
    ];

    // direction: inbound rules look at the local (destination) port, outbound at the remote one
    let mut c = sem(
        "outbound uses remote port",
        rule("tcp", "443").host("any"),
        tcp(5000, 443),
        true,
    );
    c.incoming = false;
    cases.push(c);
    let mut c = sem(
        "outbound ignores local port",
        rule("tcp", "443").host("any"),
        tcp(443, 5000),
        false,
    );
    c.incoming = false;
    cases.push(c);
    // ipv6
    let mut c = sem("ipv6 cidr", rule("tcp", "80").cidr("fd00::/64"), v6, true);
    c.peer = peer6.clone();
    cases.push(c);
    let mut c = sem(
        "0.0.0.0/0 does not cover ipv6",
        rule("tcp", "80").cidr("0.0.0.0/0"),
        v6,
        false,
    );
    c.peer = peer6.clone();
    cases.push(c);
    let mut c = sem(
        "cidr any covers ipv6",
        rule("tcp", "80").cidr("any"),
        v6,
        true,
    );
    c.peer = peer6.clone();
    cases.push(c);
    // the peer's CA name unknown (empty) never matches a ca_name rule
    let mut c = sem(
        "unknown ca name",
        rule("tcp", "80").ca_name("ca-a"),
        tcp(80, 1),
        false,
    );
    c.peer = c.peer.ca("", "sha-x");
    cases.push(c);

    for c in cases {
        let mine = if c.pkt.local_addr.is_ipv4() {
            "10.1.0.1/16"
        } else {
            "fd00::1/64"
        };
        let (inb, outb) = if c.incoming {
            (vec![c.rule.clone()], vec![])
        } else {
            (vec![], vec![c.rule.clone()])
        };
        let f = fw(inb, outb, &[mine], &[]);
        let got = decide(&f, &c.pkt, c.incoming, &c.peer);
        let want = if c.allow {
            Ok(())
        } else {
            Err(DropReason::NoMatchingRule)
        };
        assert_eq!(got, want, "{}", c.name);
        assert_eq!(
            f.rules_match(&c.pkt, c.incoming, &c.peer.info()),
            c.allow,
            "{}",
            c.name
        );
    }
}

#[test]
fn several_cas_and_many_rules_or_together() {
    let f = fw(
        vec![
            rule("tcp", "22").ca_name("ops-ca").group("admin"),
            rule("tcp", "443").ca_sha("sha-web"),
            rule("tcp", "80-90").host("lb"),
            rule("udp", "53").cidr("10.1.0.0/16"),
        ],
        vec![],
        &["10.1.0.1/16"],
        &[],
    );
    let admin = Peer::new("x", &["10.1.0.2/16"])
        .groups(&["admin"])
        .ca("ops-ca", "sha-ops");
    let web = Peer::new("y", &["10.1.0.3/16"])
        .groups(&["admin"])
        .ca("web-ca", "sha-web");
    let lb = Peer::new("lb", &["10.1.0.4/16"]).ca("web-ca", "sha-web");
    let tcp = |r: &str, port| pkt(L, r, port, 999, PROTO_TCP);
    assert_eq!(decide(&f, &tcp("10.1.0.2", 22), true, &admin), Ok(()));
    assert_eq!(
        decide(&f, &tcp("10.1.0.3", 22), true, &web),
        Err(DropReason::NoMatchingRule)
    );
    assert_eq!(decide(&f, &tcp("10.1.0.3", 443), true, &web), Ok(()));
    assert_eq!(
        decide(&f, &tcp("10.1.0.2", 443), true, &admin),
        Err(DropReason::NoMatchingRule)
    );
    assert_eq!(decide(&f, &tcp("10.1.0.4", 85), true, &lb), Ok(()));
    assert_eq!(decide(&f, &tcp("10.1.0.4", 443), true, &lb), Ok(()));
    assert_eq!(
        decide(&f, &pkt(L, "10.1.0.4", 53, 1, PROTO_UDP), true, &lb),
        Ok(())
    );
}

#[test]
fn no_rules_means_default_deny() {
    let f = fw(vec![], vec![], &["10.1.0.1/16"], &[]);
    let peer = Peer::new("h", &["10.1.0.2/16"]);
    for proto in [PROTO_TCP, PROTO_UDP, PROTO_ICMP, 47] {
        let p = pkt(L, R, 1, 1, proto);
        assert_eq!(decide(&f, &p, true, &peer), Err(DropReason::NoMatchingRule));
        assert_eq!(
            decide(&f, &p, false, &peer),
            Err(DropReason::NoMatchingRule)
        );
    }
}

// ------------------------------------------------------------------------------------------------
// Conntrack through the firewall

#[test]
fn conntrack_reply_admission_and_expiry_with_fake_clock() {
    let peer = Peer::new("h", &["10.1.0.2/16"]);
    let f = fw(
        vec![],
        vec![rule("any", "any").host("any")],
        &["10.1.0.1/16"],
        &[],
    );
    let t0 = Instant::now();
    let min = Duration::from_secs(60);
    for (proto, timeout) in [
        (PROTO_TCP, 12 * min),
        (PROTO_UDP, 3 * min),
        (PROTO_ICMP, 10 * min),
    ] {
        let mut ct = Conntrack::new();
        let out = pkt(L, R, 40000, 80, proto);
        // a reply without an outbound packet first is refused
        assert_eq!(
            f.drop(&out, true, &peer.info(), &mut ct, t0),
            Err(DropReason::NoMatchingRule)
        );
        assert_eq!(f.drop(&out, false, &peer.info(), &mut ct, t0), Ok(()));
        assert_eq!(
            f.drop(&out, true, &peer.info(), &mut ct, t0 + timeout - min),
            Ok(())
        );
        // the reply refreshed the entry
        let later = t0 + 2 * timeout - 2 * min;
        assert_eq!(f.drop(&out, true, &peer.info(), &mut ct, later), Ok(()));
        // idle for a full timeout: gone
        let expired = later + timeout;
        assert_eq!(
            f.drop(&out, true, &peer.info(), &mut ct, expired),
            Err(DropReason::NoMatchingRule)
        );
        assert_eq!(ct.len(), 0, "proto {proto}");
    }
}

#[test]
fn custom_timeouts_and_lazy_purge() {
    let mut c = cfg(vec![rule("any", "any").host("any")], vec![]);
    c.udp_timeout = Duration::from_secs(5);
    let f = Firewall::new(&c, &[net("10.1.0.1/16")], &[]).unwrap();
    assert_eq!(f.timeout(PROTO_UDP), Duration::from_secs(5));
    assert_eq!(f.timeout(PROTO_TCP), DEFAULT_TCP_TIMEOUT);
    assert_eq!(f.timeout(47), DEFAULT_TIMEOUT);
    let peer = Peer::new("h", &["10.1.0.2/16"]);
    let mut ct = Conntrack::new();
    let t0 = Instant::now();
    for port in 0..100 {
        let p = pkt(L, R, port, 1, PROTO_UDP);
        f.drop(&p, true, &peer.info(), &mut ct, t0).unwrap();
    }
    assert_eq!(ct.len(), 100);
    // Each decision purges a bounded number of expired flows.
    let later = t0 + Duration::from_secs(6);
    let p = pkt(L, R, 9999, 1, PROTO_TCP);
    f.drop(&p, true, &peer.info(), &mut ct, later).unwrap();
    assert_eq!(ct.len(), 101 - PURGE_PER_DECISION);
    assert_eq!(
        ct.purge_expired(later, usize::MAX),
        100 - PURGE_PER_DECISION
    );
    assert_eq!(ct.len(), 1);
}

#[test]
fn fragments_have_their_own_flow() {
    // Non-first fragments carry ports 0 and fragment=true: they never hit the flow's entry.
    let peer = Peer::new("h", &["10.1.0.2/16"]);
    let f = fw(
        vec![rule("udp", "53").host("any")],
        vec![],
        &["10.1.0.1/16"],
        &[],
    );
    let mut ct = Conntrack::new();
    let now = Instant::now();
    let first = pkt(L, R, 53, 5353, PROTO_UDP);
    let mut later = pkt(L, R, 0, 0, PROTO_UDP);
    later.fragment = true;
    assert_eq!(f.drop(&first, true, &peer.info(), &mut ct, now), Ok(()));
    assert_eq!(
        f.drop(&later, true, &peer.info(), &mut ct, now),
        Err(DropReason::NoMatchingRule)
    );
    let f = fw(
        vec![
            rule("udp", "53").host("any"),
            rule("udp", "fragment").host("any"),
        ],
        vec![],
        &["10.1.0.1/16"],
        &[],
    );
    assert_eq!(f.drop(&later, true, &peer.info(), &mut ct, now), Ok(()));
}

// ------------------------------------------------------------------------------------------------
// Construction

#[test]
fn new_reports_direction_index_and_problem() {
    let mine = [net("10.0.0.1/24")];
    let bad = rule("tcp", "80");
    let good = rule("tcp", "80").host("any");
    let e = Firewall::new(&cfg(vec![good.clone(), bad.clone()], vec![]), &mine, &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "firewall.inbound rule #1; at least one of host, group, cidr, local_cidr, ca_name, or ca_sha must be provided"
    );
    // outbound is validated first
    let e = Firewall::new(
        &cfg(vec![bad.clone()], vec![good, rule("tcp", "x").host("a")]),
        &mine,
        &[],
    )
    .unwrap_err();
    assert_eq!(
        e,
        FirewallError::Rule {
            direction: Direction::Outbound,
            index: 1,
            problem: RuleProblem::Port {
                field: "port",
                error: PortError::NotANumber {
                    prefix: "",
                    value: "x".into()
                }
            }
        }
    );
    assert_eq!(
        e.to_string(),
        "firewall.outbound rule #1; port was not a number; `x`"
    );
}

#[test]
fn actions_warnings_and_versions() {
    let mut c = cfg(
        vec![
            rule("icmp", "80").host("any"),
            rule("tcp", "1").host("any").group("g"),
        ],
        vec![],
    );
    c.inbound_action = Action::Reject;
    let f = Firewall::new(&c, &[net("10.0.0.1/24")], &[]).unwrap();
    assert_eq!(f.action(true), Action::Reject);
    assert_eq!(f.action(false), Action::Drop);
    let w: Vec<String> = f.warnings().iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with("firewall.inbound rule #0; ignoring port"),
        "{w:?}"
    );
    assert!(
        w[1].starts_with("firewall.inbound rule #1; groups specified as"),
        "{w:?}"
    );
    let g = Firewall::new(&c, &[net("10.0.0.1/24")], &[]).unwrap();
    assert_ne!(f.rules_version(), g.rules_version());
    assert_eq!(f.rules_hash(), g.rules_hash());
}

#[test]
fn rule_hash_string_is_gos() {
    let c = cfg(
        vec![
            rule("tcp", "443").groups(&["laptop", "home"]),
            rule("icmp", "any").host("any"),
            rule("any", "fragment")
                .cidr("10.0.0.0/8")
                .local_cidr("any")
                .ca_name("n")
                .ca_sha("s"),
        ],
        vec![rule("any", "any").host("any")],
    );
    let f = Firewall::new(&c, &[net("10.0.0.1/24")], &[]).unwrap();
    assert_eq!(
        f.rules_text,
        "incoming: false, proto: 0, startPort: 0, endPort: 0, groups: [], host: any, ip: , localIp: , caName: , caSha: \n\
         incoming: true, proto: 6, startPort: 443, endPort: 443, groups: [laptop home], host: , ip: , localIp: , caName: , caSha: \n\
         incoming: true, proto: 1, startPort: 0, endPort: 0, groups: [], host: any, ip: , localIp: , caName: , caSha: \n\
         incoming: true, proto: 0, startPort: -1, endPort: -1, groups: [], host: , ip: 10.0.0.0/8, localIp: any, caName: n, caSha: s\n"
    );
    assert_eq!(f.rules_hash().len(), 64);
    assert!(f.rules_hashes().starts_with("SHA:"));
    // FNV-1a of the empty string is the offset basis
    let empty = Firewall::new(&FirewallConfig::default(), &[], &[]).unwrap();
    assert_eq!(empty.rules_hash_fnv(), 0x811c_9dc5);
    assert_eq!(
        empty.rules_hash(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn drop_reason_texts_and_metrics() {
    assert_eq!(
        DropReason::InvalidRemoteIp.to_string(),
        "remote address is not in remote certificate networks"
    );
    assert_eq!(
        DropReason::PeerRejected.metric_suffix(),
        Some("remote_addr")
    );
    assert_eq!(
        DropReason::InvalidLocalIp.metric_suffix(),
        Some("local_addr")
    );
    assert_eq!(DropReason::NoMatchingRule.metric_suffix(), Some("no_rule"));
    assert_eq!(DropReason::Unparseable.metric_suffix(), None);
}

#[test]
fn classify_then_decide_end_to_end() {
    // An IPv4 UDP datagram read from the TUN (outgoing), then its reply from the tunnel.
    let mut out = vec![0u8; 28];
    out[0] = 0x45;
    out[9] = PROTO_UDP;
    out[12..16].copy_from_slice(&[10, 1, 0, 1]);
    out[16..20].copy_from_slice(&[10, 1, 0, 2]);
    out[20..22].copy_from_slice(&5353u16.to_be_bytes());
    out[22..24].copy_from_slice(&53u16.to_be_bytes());
    let mut reply = out.clone();
    reply[12..16].copy_from_slice(&[10, 1, 0, 2]);
    reply[16..20].copy_from_slice(&[10, 1, 0, 1]);
    reply[20..22].copy_from_slice(&53u16.to_be_bytes());
    reply[22..24].copy_from_slice(&5353u16.to_be_bytes());

    let po = Packet::parse(&out, false).unwrap();
    let pr = Packet::parse(&reply, true).unwrap();
    assert_eq!(
        po, pr,
        "an outbound packet and its reply share the flow key"
    );

    let f = fw(
        vec![],
        vec![rule("udp", "53").host("any")],
        &["10.1.0.1/16"],
        &[],
    );
    let peer = Peer::new("dns", &["10.1.0.2/16"]);
    let mut ct = Conntrack::new();
    let now = Instant::now();
    assert_eq!(
        f.drop(&pr, true, &peer.info(), &mut ct, now),
        Err(DropReason::NoMatchingRule)
    );
    assert_eq!(f.drop(&po, false, &peer.info(), &mut ct, now), Ok(()));
    assert_eq!(f.drop(&pr, true, &peer.info(), &mut ct, now), Ok(()));
}

/// Golden value: Go Nebula 1.11.0 (`/opt/go-nebula/1.11.0/usr/bin/nebula`, firewall.go is identical
/// in 1.11.1) run with `tun.disabled: true` and this firewall section logged
/// `Firewall started firewallHashes=SHA:e3b7...e37e,FNV:3782017600`.
#[test]
fn rule_hashes_match_go_1_11() {
    let c = cfg(
        vec![
            rule("tcp", "443").groups(&["laptop", "home"]),
            rule("icmp", "80").host("any"),
            rule("any", "fragment")
                .cidr("10.0.0.0/8")
                .local_cidr("any")
                .ca_name("n")
                .ca_sha("s"),
            rule("udp", "0-90").group("g1"),
            rule("tcp", "20-30").host("h").cidr("any"),
        ],
        vec![rule("any", "any").host("any")],
    );
    let f = Firewall::new(&c, &[net("10.9.0.1/24")], &[]).unwrap();
    assert_eq!(
        f.rules_hashes(),
        "SHA:e3b790710562a764059d3f02ec364010ffd1060393601fe75d520c2fed4ee37e,FNV:3782017600"
    );
}
