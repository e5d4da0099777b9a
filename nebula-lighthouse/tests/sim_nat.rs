//! Simulated NAT traversal and relays: fake cone/symmetric NATs, our lighthouse, direct or relayed
//! paths, roaming, re-queries, several lighthouses, allow lists, calculated remotes, IPv6.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use nebula_cert::{Curve, Version};
use nebula_core::engine::{EngineConfig, Event};
use nebula_core::hostmap::{RelayKind, RelayState};
use nebula_core::remotes::{AllowList, CalculatedRemote, RemoteAllowList};
use nebula_core::sim::{udp_packet, Nat, NatKind, Sim, TestCa};
use nebula_lighthouse::AddressBook;

const LH_VPN: &str = "10.50.0.1";
const LH_ADDR: &str = "203.0.113.1:4242";
const A_VPN: &str = "10.50.0.2";
const B_VPN: &str = "10.50.0.3";
const RELAY_VPN: &str = "10.50.0.9";
const RELAY_ADDR: &str = "203.0.113.9:4242";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// A node that knows the lighthouses `lhs` (vpn, underlay) and reports `advertise`.
fn node_cfg(lhs: &[(&str, &str)], advertise: &str, relays: &[&str]) -> EngineConfig {
    let mut m: HashMap<IpAddr, Vec<SocketAddr>> = HashMap::new();
    for (vpn, addr) in lhs {
        m.insert(ip(vpn), vec![sa(addr)]);
    }
    EngineConfig {
        static_host_map: m,
        lighthouses: lhs.iter().map(|(v, _)| ip(v)).collect(),
        lighthouse_interval: Duration::from_secs(10),
        advertise_addrs: vec![sa(advertise)],
        relays: relays.iter().map(|r| ip(r)).collect(),
        ..EngineConfig::default()
    }
}

fn add_lighthouse(sim: &mut Sim, ca: &TestCa, vpn: &str, addr: &str, am_relay: bool) -> usize {
    let cfg = EngineConfig {
        am_lighthouse: true,
        am_relay,
        use_relays: false,
        ..EngineConfig::default()
    };
    let i = sim.add_node("lh", addr, cfg, ca.pki("lh", &format!("{vpn}/16")));
    sim.nodes[i]
        .engine
        .set_lighthouse_server(Box::new(AddressBook::new()));
    i
}

fn packet(from: &str, to: &str, marker: &[u8]) -> Vec<u8> {
    udp_packet(
        from.parse().expect("ip"),
        to.parse().expect("ip"),
        1000,
        2000,
        marker,
    )
}

fn delivered(sim: &Sim, node: usize, marker: &[u8]) -> usize {
    sim.nodes[node]
        .tun
        .iter()
        .filter(|p| p.ends_with(marker))
        .count()
}

/// Datagrams of at least `min_len` bytes sent to or from `addr` since `since` in the wire log.
fn big_datagrams_touching(sim: &Sim, since: usize, addr: IpAddr, min_len: usize) -> usize {
    sim.wire_log[since..]
        .iter()
        .filter(|(_, d)| d.payload.len() >= min_len)
        .filter(|(_, d)| d.to.ip() == addr || d.from.ip() == addr)
        .count()
}

struct World {
    sim: Sim,
    lh: usize,
    a: usize,
    b: usize,
}

/// Lighthouse (also a relay when `lh_relays`) on the public side; A and B each behind their own
/// NAT of `kind`; both name `relays` in `relay.relays`.
fn natted_world(seed: u64, kind: NatKind, lh_relays: bool, relays: &[&str]) -> World {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = Sim::new(seed);
    sim.nats
        .push(Nat::new("192.168.1.0/24", "198.51.100.1", kind));
    sim.nats
        .push(Nat::new("192.168.2.0/24", "198.51.100.2", kind));
    let lh = add_lighthouse(&mut sim, &ca, LH_VPN, LH_ADDR, lh_relays);
    let lhs = [(LH_VPN, LH_ADDR)];
    let a = sim.add_node(
        "a",
        "192.168.1.10:4242",
        node_cfg(&lhs, "192.168.1.10:4242", relays),
        ca.pki("a", &format!("{A_VPN}/16")),
    );
    let b = sim.add_node(
        "b",
        "192.168.2.10:4242",
        node_cfg(&lhs, "192.168.2.10:4242", relays),
        ca.pki("b", &format!("{B_VPN}/16")),
    );
    sim.run_for(Duration::from_secs(2));
    assert!(sim.has_tunnel(a, LH_VPN) && sim.has_tunnel(b, LH_VPN));
    World { sim, lh, a, b }
}

/// Send `n` packets each way between A and B, `gap` apart, and count what arrived.
fn exchange(w: &mut World, n: usize, gap: Duration, marker: &[u8]) -> (usize, usize) {
    for _ in 0..n {
        w.sim.inside(w.a, &packet(A_VPN, B_VPN, marker));
        w.sim.inside(w.b, &packet(B_VPN, A_VPN, marker));
        w.sim.run_for(gap);
    }
    w.sim.run_for(Duration::from_millis(200));
    (
        delivered(&w.sim, w.b, marker),
        delivered(&w.sim, w.a, marker),
    )
}

#[test]
fn symmetric_nats_fall_back_to_the_lighthouse_relay() {
    let mut w = natted_world(11, NatKind::Symmetric, true, &[LH_VPN]);
    let t0 = w.sim.now;
    w.sim.inside(w.a, &packet(A_VPN, B_VPN, b"first"));
    w.sim.run_for(Duration::from_secs(3));
    assert_eq!(delivered(&w.sim, w.b, b"first"), 1, "queued packet arrives");
    let up = w.sim.nodes[w.a].events.iter().any(
        |e| matches!(e, Event::TunnelUp { vpn_addr, remote: None, .. } if *vpn_addr == ip(B_VPN)),
    );
    assert!(up, "a's tunnel to b came up through the relay");
    let t = w.sim.nodes[w.a]
        .engine
        .tunnel_to(&ip(B_VPN))
        .expect("tunnel");
    assert_eq!(t.remote(), None, "no direct path through symmetric NATs");
    assert_eq!(&t.relays[..], &[ip(LH_VPN)]);
    // The relay holds two forwarding halves, both established; each end one terminal index.
    let lh_relays: Vec<_> = w.sim.nodes[w.lh].engine.relays().iter().cloned().collect();
    assert_eq!(lh_relays.len(), 2);
    assert!(lh_relays
        .iter()
        .all(|r| r.kind == RelayKind::Forwarding && r.state == RelayState::Established));
    for n in [w.a, w.b] {
        let r: Vec<_> = w.sim.nodes[n].engine.relays().iter().cloned().collect();
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].kind, r[0].state),
            (RelayKind::Terminal, RelayState::Established)
        );
    }
    // Data flows both ways, every packet through the lighthouse's address.
    let since = w.sim.wire_log.len();
    let (to_b, to_a) = exchange(&mut w, 50, Duration::from_millis(20), b"relayed");
    assert_eq!((to_b, to_a), (50, 50));
    let lh = sa(LH_ADDR).ip();
    let through = big_datagrams_touching(&w.sim, since, lh, 60);
    assert!(
        through >= 200,
        "each packet crosses the relay twice: {through}"
    );
    let a_pub = ip("198.51.100.1");
    let b_pub = ip("198.51.100.2");
    let direct = w.sim.wire_log[since..]
        .iter()
        .filter(|(_, d)| d.payload.len() >= 60)
        .filter(|(_, d)| {
            (d.from.ip() == a_pub && d.to.ip() == b_pub)
                || (d.from.ip() == b_pub && d.to.ip() == a_pub)
        })
        .count();
    assert!(
        direct < 10,
        "only the odd direct probe goes between the NATs: {direct}"
    );
    // The tunnel stays up (connection checks pass through the relay) for a minute.
    w.sim.run_for(Duration::from_secs(60));
    let (to_b, to_a) = exchange(&mut w, 5, Duration::from_millis(50), b"later");
    assert_eq!((to_b, to_a), (5, 5));
    assert!(w.sim.nodes[w.a]
        .events
        .iter()
        .all(|e| !matches!(e, Event::TunnelDown { vpn_addr, .. } if *vpn_addr == ip(B_VPN))));
    let _ = t0;
}

#[test]
fn blocked_udp_between_the_nats_uses_a_separate_relay_node() {
    // Cone NATs, but a firewall drops UDP between the two public addresses; the relay is a
    // public node that is not the lighthouse.
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = Sim::new(5);
    sim.nats.push(Nat::new(
        "192.168.1.0/24",
        "198.51.100.1",
        NatKind::RestrictedCone,
    ));
    sim.nats.push(Nat::new(
        "192.168.2.0/24",
        "198.51.100.2",
        NatKind::RestrictedCone,
    ));
    sim.blocked.push((ip("198.51.100.1"), ip("198.51.100.2")));
    sim.blocked.push((ip("198.51.100.2"), ip("198.51.100.1")));
    let lh = add_lighthouse(&mut sim, &ca, LH_VPN, LH_ADDR, false);
    let lhs = [(LH_VPN, LH_ADDR)];
    let relay_cfg = EngineConfig {
        am_relay: true,
        use_relays: false,
        ..node_cfg(&lhs, RELAY_ADDR, &[])
    };
    let relay = sim.add_node(
        "relay",
        RELAY_ADDR,
        relay_cfg,
        ca.pki("relay", &format!("{RELAY_VPN}/16")),
    );
    let a = sim.add_node(
        "a",
        "192.168.1.10:4242",
        node_cfg(&lhs, "192.168.1.10:4242", &[RELAY_VPN]),
        ca.pki("a", &format!("{A_VPN}/16")),
    );
    let b = sim.add_node(
        "b",
        "192.168.2.10:4242",
        node_cfg(&lhs, "192.168.2.10:4242", &[RELAY_VPN]),
        ca.pki("b", &format!("{B_VPN}/16")),
    );
    sim.run_for(Duration::from_secs(2));
    // B must have a tunnel to its relay for the relay to reach it: B talks to the relay first.
    sim.inside(b, &packet(B_VPN, RELAY_VPN, b"hello-relay"));
    sim.run_for(Duration::from_secs(2));
    assert_eq!(delivered(&sim, relay, b"hello-relay"), 1);
    // A reaches B: A needs a tunnel to the relay (made on demand), then the relay index.
    sim.inside(a, &packet(A_VPN, B_VPN, b"x"));
    sim.run_for(Duration::from_secs(6));
    assert!(sim.has_tunnel(a, B_VPN), "tunnel up");
    let t = sim.nodes[a].engine.tunnel_to(&ip(B_VPN)).expect("t");
    assert_eq!(t.remote(), None);
    assert_eq!(&t.relays[..], &[ip(RELAY_VPN)]);
    let since = sim.wire_log.len();
    for _ in 0..20 {
        sim.inside(a, &packet(A_VPN, B_VPN, b"via-relay"));
        sim.inside(b, &packet(B_VPN, A_VPN, b"via-relay"));
        sim.run_for(Duration::from_millis(10));
    }
    sim.run_for(Duration::from_millis(200));
    assert_eq!(delivered(&sim, b, b"via-relay"), 20);
    assert_eq!(delivered(&sim, a, b"via-relay"), 20);
    let relay_ip = sa(RELAY_ADDR).ip();
    assert!(big_datagrams_touching(&sim, since, relay_ip, 60) >= 80);
    assert_eq!(big_datagrams_touching(&sim, since, sa(LH_ADDR).ip(), 60), 0);
    let _ = lh;
}

#[test]
fn cone_nats_with_a_relay_still_end_up_direct() {
    let mut w = natted_world(3, NatKind::RestrictedCone, true, &[LH_VPN]);
    w.sim.inside(w.a, &packet(A_VPN, B_VPN, b"first"));
    // The relay answers first; the probe after the punch delay moves both ends to a direct path.
    w.sim.run_for(Duration::from_secs(5));
    assert_eq!(delivered(&w.sim, w.b, b"first"), 1);
    let ta = w.sim.nodes[w.a].engine.tunnel_to(&ip(B_VPN)).expect("a->b");
    assert_eq!(ta.remote().map(|r| r.ip()), Some(ip("198.51.100.2")));
    let tb = w.sim.nodes[w.b].engine.tunnel_to(&ip(A_VPN)).expect("b->a");
    assert_eq!(tb.remote().map(|r| r.ip()), Some(ip("198.51.100.1")));
    let since = w.sim.wire_log.len();
    let (to_b, to_a) = exchange(&mut w, 30, Duration::from_millis(10), b"direct");
    assert_eq!((to_b, to_a), (30, 30));
    assert_eq!(
        big_datagrams_touching(&w.sim, since, sa(LH_ADDR).ip(), 60),
        0,
        "no data through the lighthouse"
    );
}

#[test]
fn roaming_peer_keeps_its_tunnel_without_a_new_handshake() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = Sim::new(21);
    sim.nats.push(Nat::new(
        "192.168.2.0/24",
        "198.51.100.2",
        NatKind::RestrictedCone,
    ));
    sim.nats.push(Nat::new(
        "192.168.3.0/24",
        "198.51.100.3",
        NatKind::RestrictedCone,
    ));
    let _lh = add_lighthouse(&mut sim, &ca, LH_VPN, LH_ADDR, false);
    let lhs = [(LH_VPN, LH_ADDR)];
    let a = sim.add_node(
        "a",
        "203.0.113.20:4242",
        node_cfg(&lhs, "203.0.113.20:4242", &[]),
        ca.pki("a", &format!("{A_VPN}/16")),
    );
    let b = sim.add_node(
        "b",
        "192.168.2.10:4242",
        node_cfg(&lhs, "192.168.2.10:4242", &[]),
        ca.pki("b", &format!("{B_VPN}/16")),
    );
    sim.run_for(Duration::from_secs(2));
    sim.inside(b, &packet(B_VPN, A_VPN, b"start"));
    sim.run_for(Duration::from_secs(2));
    let before = sim.nodes[a]
        .engine
        .tunnel_to(&ip(B_VPN))
        .map(|t| (t.local_index, t.remote()))
        .expect("tunnel");
    assert_eq!(before.1.map(|r| r.ip()), Some(ip("198.51.100.2")));
    // A "transfer": A streams to B, B acknowledges. Half way, B changes networks.
    let mut acked = 0;
    for i in 0..200u32 {
        if i == 100 {
            sim.nodes[b].addr = sa("192.168.3.10:4242");
        }
        sim.inside(a, &packet(A_VPN, B_VPN, b"data"));
        sim.run_for(Duration::from_millis(5));
        let got = delivered(&sim, b, b"data");
        while acked < got {
            sim.inside(b, &packet(B_VPN, A_VPN, b"ack"));
            acked += 1;
        }
        sim.run_for(Duration::from_millis(5));
    }
    sim.run_for(Duration::from_millis(200));
    let after = sim.nodes[a]
        .engine
        .tunnel_to(&ip(B_VPN))
        .map(|t| (t.local_index, t.remote()))
        .expect("tunnel");
    assert_eq!(after.0, before.0, "same tunnel, no new handshake");
    assert_eq!(after.1.map(|r| r.ip()), Some(ip("198.51.100.3")));
    let got = delivered(&sim, b, b"data");
    assert!(
        got >= 195,
        "at most a packet or two lost in the move: {got}/200"
    );
    assert!(sim.nodes[a].events.iter().any(|e| matches!(
        e,
        Event::Roamed { vpn_addr, from: Some(_), .. } if *vpn_addr == ip(B_VPN)
    )));
    let ups = sim.nodes[a]
        .events
        .iter()
        .filter(|e| matches!(e, Event::TunnelUp { vpn_addr, .. } if *vpn_addr == ip(B_VPN)))
        .count();
    assert_eq!(ups, 1);
}

#[test]
fn dead_tunnel_requeries_and_finds_the_moved_host() {
    let mut w = natted_world(8, NatKind::RestrictedCone, false, &[]);
    w.sim.inside(w.a, &packet(A_VPN, B_VPN, b"one"));
    w.sim.run_for(Duration::from_secs(3));
    assert_eq!(delivered(&w.sim, w.b, b"one"), 1);
    let first = w.sim.nodes[w.a]
        .engine
        .tunnel_to(&ip(B_VPN))
        .map(|t| t.local_index)
        .expect("t");
    // B moves behind another NAT and stays silent towards A; only its lighthouse updates tell
    // where it went.
    w.sim.nats.push(Nat::new(
        "192.168.3.0/24",
        "198.51.100.3",
        NatKind::RestrictedCone,
    ));
    w.sim.nodes[w.b].addr = sa("192.168.3.10:4242");
    let mut arrived_at = None;
    for s in 0..40 {
        w.sim.inside(w.a, &packet(A_VPN, B_VPN, b"ping"));
        w.sim.run_for(Duration::from_secs(1));
        if arrived_at.is_none() && delivered(&w.sim, w.b, b"ping") > 0 {
            arrived_at = Some(s);
        }
    }
    let s = arrived_at.expect("a reaches b again");
    eprintln!("dead tunnel: a reached the moved b again after {s} s");
    assert!(s <= 30, "found again after {s} s");
    let t = w.sim.nodes[w.a].engine.tunnel_to(&ip(B_VPN)).expect("t");
    assert_ne!(t.local_index, first, "a new tunnel replaced the dead one");
    assert_eq!(t.remote().map(|r| r.ip()), Some(ip("198.51.100.3")));
    assert!(w.sim.nodes[w.a].events.iter().any(|e| matches!(
        e,
        Event::TunnelDown { vpn_addr, reason: nebula_core::CloseReason::Dead, .. } if *vpn_addr == ip(B_VPN)
    )));
}

#[test]
fn several_lighthouses_one_down() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = Sim::new(31);
    sim.nats.push(Nat::new(
        "192.168.1.0/24",
        "198.51.100.1",
        NatKind::RestrictedCone,
    ));
    sim.nats.push(Nat::new(
        "192.168.2.0/24",
        "198.51.100.2",
        NatKind::RestrictedCone,
    ));
    let lh1 = ("10.50.0.1", "203.0.113.1:4242");
    let lh2 = ("10.50.0.4", "203.0.113.4:4242");
    let lh3 = ("10.50.0.5", "203.0.113.5:4242"); // never started
    add_lighthouse(&mut sim, &ca, lh1.0, lh1.1, false);
    add_lighthouse(&mut sim, &ca, lh2.0, lh2.1, false);
    let lhs = [lh1, lh2, lh3];
    let a = sim.add_node(
        "a",
        "192.168.1.10:4242",
        node_cfg(&lhs, "192.168.1.10:4242", &[]),
        ca.pki("a", &format!("{A_VPN}/16")),
    );
    let b = sim.add_node(
        "b",
        "192.168.2.10:4242",
        node_cfg(&lhs, "192.168.2.10:4242", &[]),
        ca.pki("b", &format!("{B_VPN}/16")),
    );
    sim.run_for(Duration::from_secs(2));
    sim.inside(a, &packet(A_VPN, B_VPN, b"multi"));
    sim.run_for(Duration::from_secs(4));
    assert_eq!(delivered(&sim, b, b"multi"), 1);
    // Both live lighthouses answered; their answers are kept apart.
    let r = sim.nodes[a]
        .engine
        .remotes_for(&ip(B_VPN))
        .expect("remotes");
    assert_eq!(r.answered_by(), vec![ip(lh1.0), ip(lh2.0)]);
    assert!(r
        .from_lighthouse(&ip(lh1.0))
        .contains(&sa("192.168.2.10:4242")));
}

#[test]
fn remote_allow_list_keeps_denied_addresses_out() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = Sim::new(41);
    sim.nats.push(Nat::new(
        "192.168.2.0/24",
        "198.51.100.2",
        NatKind::RestrictedCone,
    ));
    add_lighthouse(&mut sim, &ca, LH_VPN, LH_ADDR, false);
    let lhs = [(LH_VPN, LH_ADDR)];
    let deny_lan = RemoteAllowList {
        base: Some(AllowList {
            rules: vec![
                ("192.168.0.0/16".parse().expect("net"), false),
                ("0.0.0.0/0".parse().expect("net"), true),
            ],
        }),
        ranges: Vec::new(),
    };
    let a = sim.add_node(
        "a",
        "203.0.113.20:4242",
        EngineConfig {
            remote_allow_list: deny_lan,
            ..node_cfg(&lhs, "203.0.113.20:4242", &[])
        },
        ca.pki("a", &format!("{A_VPN}/16")),
    );
    let b = sim.add_node(
        "b",
        "192.168.2.10:4242",
        node_cfg(&lhs, "192.168.2.10:4242", &[]),
        ca.pki("b", &format!("{B_VPN}/16")),
    );
    sim.run_for(Duration::from_secs(2));
    sim.inside(a, &packet(A_VPN, B_VPN, b"allowed"));
    sim.run_for(Duration::from_secs(3));
    assert_eq!(delivered(&sim, b, b"allowed"), 1);
    let addrs = sim.nodes[a]
        .engine
        .remotes_for(&ip(B_VPN))
        .expect("r")
        .addrs(&[]);
    assert!(!addrs.is_empty());
    assert!(
        addrs
            .iter()
            .all(|x| !x.ip().to_string().starts_with("192.168.")),
        "{addrs:?}"
    );
    let a_addr = sa("203.0.113.20:4242");
    assert!(sim
        .wire_log
        .iter()
        .all(|(_, d)| !(d.from == a_addr && d.to.ip().to_string().starts_with("192.168."))));
}

#[test]
fn calculated_remotes_reach_a_host_no_lighthouse_knows() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = Sim::new(51);
    let calc = CalculatedRemote {
        vpn_range: "10.50.0.0/16".parse().expect("net"),
        mask: "192.168.7.0/24".parse().expect("net"),
        port: 4242,
    };
    let a = sim.add_node(
        "a",
        "192.168.7.2:4242",
        EngineConfig {
            calculated_remotes: vec![calc],
            ..EngineConfig::default()
        },
        ca.pki("a", &format!("{A_VPN}/16")),
    );
    let b = sim.add_node(
        "b",
        "192.168.7.3:4242",
        EngineConfig::default(),
        ca.pki("b", &format!("{B_VPN}/16")),
    );
    sim.inside(a, &packet(A_VPN, B_VPN, b"guessed"));
    sim.run_for(Duration::from_millis(200));
    assert_eq!(
        delivered(&sim, b, b"guessed"),
        1,
        "sent at once, no retry wait"
    );
    let t = sim.nodes[a].engine.tunnel_to(&ip(B_VPN)).expect("t");
    assert_eq!(t.remote(), Some(sa("192.168.7.3:4242")));
}

#[test]
fn ipv6_underlay_through_the_lighthouse() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = Sim::new(61);
    let lh_addr = "[2001:db8::1]:4242";
    add_lighthouse(&mut sim, &ca, LH_VPN, lh_addr, false);
    let lhs = [(LH_VPN, lh_addr)];
    let a = sim.add_node(
        "a",
        "[2001:db8:a::10]:4242",
        node_cfg(&lhs, "[2001:db8:a::10]:4242", &[]),
        ca.pki("a", &format!("{A_VPN}/16")),
    );
    let b = sim.add_node(
        "b",
        "[2001:db8:b::10]:4242",
        node_cfg(&lhs, "[2001:db8:b::10]:4242", &[]),
        ca.pki("b", &format!("{B_VPN}/16")),
    );
    sim.run_for(Duration::from_secs(2));
    sim.inside(a, &packet(A_VPN, B_VPN, b"six"));
    sim.run_for(Duration::from_secs(3));
    assert_eq!(delivered(&sim, b, b"six"), 1);
    let t = sim.nodes[a].engine.tunnel_to(&ip(B_VPN)).expect("t");
    assert_eq!(t.remote(), Some(sa("[2001:db8:b::10]:4242")));
    let since = sim.wire_log.len();
    sim.inside(b, &packet(B_VPN, A_VPN, b"back"));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(delivered(&sim, a, b"back"), 1);
    assert_eq!(
        big_datagrams_touching(&sim, since, ip("2001:db8::1"), 40),
        0
    );
}

#[test]
fn relay_recovers_after_the_far_end_restarts() {
    let mut w = natted_world(71, NatKind::Symmetric, true, &[LH_VPN]);
    let (to_b, _) = exchange(&mut w, 3, Duration::from_millis(500), b"before");
    assert_eq!(to_b, 3);
    // B restarts: new keys, new indexes, no relay state.
    let ca_b = w.sim.nodes[w.b].engine.pki().clone();
    let cfg_b = w.sim.nodes[w.b].engine.config().clone();
    w.sim.restart_node(w.b, cfg_b, ca_b);
    w.sim.run_for(Duration::from_secs(2));
    let mut back_at = None;
    for s in 0..45 {
        w.sim.inside(w.a, &packet(A_VPN, B_VPN, b"after"));
        w.sim.run_for(Duration::from_secs(1));
        if back_at.is_none() && delivered(&w.sim, w.b, b"after") > 0 {
            back_at = Some(s);
        }
    }
    let s = back_at.expect("a reaches the restarted b through the relay again");
    eprintln!("relay: a reached the restarted b again after {s} s");
    assert!(s <= 30, "after {s} s");
    let t = w.sim.nodes[w.a].engine.tunnel_to(&ip(B_VPN)).expect("t");
    assert_eq!(t.remote(), None);
}

#[test]
fn forged_or_replayed_relay_frames_are_dropped_and_never_roam() {
    let mut w = natted_world(81, NatKind::Symmetric, true, &[LH_VPN]);
    w.sim.inside(w.a, &packet(A_VPN, B_VPN, b"setup"));
    w.sim.run_for(Duration::from_secs(2));
    assert_eq!(delivered(&w.sim, w.b, b"setup"), 1);
    let since = w.sim.wire_log.len();
    w.sim.inside(w.a, &packet(A_VPN, B_VPN, b"capture-me"));
    w.sim.run_for(Duration::from_millis(200));
    assert_eq!(delivered(&w.sim, w.b, b"capture-me"), 1);
    let lh_addr = sa(LH_ADDR);
    // The relay frame A sent to the relay: type message (1), subtype relay (1).
    let frame = w.sim.wire_log[since..]
        .iter()
        .find(|(_, d)| d.to == lh_addr && d.payload.len() > 60 && d.payload[..2] == [0x11, 0x01])
        .map(|(_, d)| d.clone())
        .expect("a relay frame on the wire");
    let lh_sees_a = w.sim.nodes[w.lh]
        .engine
        .tunnel_to(&ip(A_VPN))
        .and_then(|t| t.remote());
    // Replayed from another address: the window refuses it, nothing moves.
    let attacker = sa("203.0.113.66:5555");
    w.sim.inject(attacker, lh_addr, frame.payload.clone());
    // Altered inner bytes: the hop's tag no longer verifies.
    let mut forged = frame.payload.clone();
    let n = forged.len();
    forged[n - 20] ^= 0x55;
    w.sim.inject(frame.from, lh_addr, forged);
    w.sim.run_for(Duration::from_millis(200));
    assert_eq!(delivered(&w.sim, w.b, b"capture-me"), 1, "no duplicate");
    assert_eq!(
        w.sim.nodes[w.lh]
            .engine
            .tunnel_to(&ip(A_VPN))
            .and_then(|t| t.remote()),
        lh_sees_a,
        "the relay's tunnel to a did not roam to the attacker"
    );
    // B's tunnel to A stays relayed whatever arrives through the relay.
    let tb = w.sim.nodes[w.b].engine.tunnel_to(&ip(A_VPN)).expect("b->a");
    assert_eq!(tb.remote(), None);
    let (to_b, to_a) = exchange(&mut w, 5, Duration::from_millis(20), b"still");
    assert_eq!((to_b, to_a), (5, 5));
}
