//! Simulation tests of what the connection check does with quiet tunnels: keepalive punches
//! (`punchy.punch`, `punchy.target_all_remotes`) and dropping idle tunnels
//! (`tunnels.drop_inactive`), on a fake clock.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use nebula_cert::{Curve, Version};
use nebula_core::engine::{CloseReason, EngineConfig, Event, PunchyConfig};
use nebula_core::sim::{static_config, two_nodes, udp_packet, Sim, TestCa};

const A_VPN: &str = "10.42.0.1";
const B_VPN: &str = "10.42.0.2";
const C_VPN: &str = "10.42.0.3";
const D_VPN: &str = "10.42.0.4";
const A_ADDR: &str = "192.0.2.1:4242";
const B_ADDR: &str = "192.0.2.2:4242";
const C_ADDR: &str = "192.0.2.3:4242";
const D_ADDR: &str = "192.0.2.4:4242";
/// A second address of B's that nothing listens on (an old or other-NAT address).
const B_OTHER: &str = "198.51.100.2:4242";

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("ipv4")
}

fn pkt(from: &str, to: &str, n: u32) -> Vec<u8> {
    udp_packet(ip(from), ip(to), 1000, 2000, &n.to_be_bytes())
}

/// Keepalive punches (`[1]`) node A put on the wire, by destination.
fn punches_from_a(sim: &Sim) -> Vec<SocketAddr> {
    let a: SocketAddr = A_ADDR.parse().expect("addr");
    let mut v: Vec<SocketAddr> = sim
        .wire_log
        .iter()
        .filter(|(_, d)| d.from == a && d.payload == [1])
        .map(|(_, d)| d.to)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// A punching A whose static map gives B two addresses; a tunnel A -> B, then a minute of quiet.
fn punch_world(target_all_remotes: bool) -> Sim {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = Sim::new(7);
    let mut a_cfg = static_config(&[(B_VPN, B_ADDR)]);
    a_cfg.static_host_map.insert(
        B_VPN.parse().expect("vpn"),
        vec![
            B_ADDR.parse().expect("addr"),
            B_OTHER.parse().expect("addr"),
        ],
    );
    a_cfg.punchy = PunchyConfig {
        punch: true,
        target_all_remotes,
        ..PunchyConfig::default()
    };
    sim.add_node("a", A_ADDR, a_cfg, ca.pki("a", "10.42.0.1/16"));
    sim.add_node(
        "b",
        B_ADDR,
        static_config(&[(A_VPN, A_ADDR)]),
        ca.pki("b", "10.42.0.2/16"),
    );
    sim.inside(0, &pkt(A_VPN, B_VPN, 1));
    sim.run_for(Duration::from_secs(1));
    assert!(sim.has_tunnel(0, B_VPN));
    sim.run_for(Duration::from_secs(60));
    assert!(sim.has_tunnel(0, B_VPN));
    sim
}

#[test]
fn target_all_remotes_punches_every_known_address() {
    let sim = punch_world(true);
    let b: SocketAddr = B_ADDR.parse().expect("addr");
    let other: SocketAddr = B_OTHER.parse().expect("addr");
    assert_eq!(punches_from_a(&sim), vec![b, other]);
}

#[test]
fn without_target_all_remotes_only_the_current_address_is_punched() {
    let sim = punch_world(false);
    let b: SocketAddr = B_ADDR.parse().expect("addr");
    assert_eq!(punches_from_a(&sim), vec![b]);
}

/// A drops idle tunnels after 30s. B gets A's packets (outbound traffic only), C sends to A
/// (inbound only), D is quiet after its first packet.
#[test]
fn drop_inactive_closes_the_idle_tunnel_and_keeps_the_busy_ones() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = Sim::new(11);
    let peers = [(B_VPN, B_ADDR), (C_VPN, C_ADDR), (D_VPN, D_ADDR)];
    let a_cfg = EngineConfig {
        drop_inactive: true,
        inactivity_timeout: Duration::from_secs(30),
        ..static_config(&peers)
    };
    sim.add_node("a", A_ADDR, a_cfg, ca.pki("a", "10.42.0.1/16"));
    for (name, (vpn, addr)) in ["b", "c", "d"].iter().zip(peers) {
        sim.add_node(
            name,
            addr,
            static_config(&[(A_VPN, A_ADDR)]),
            ca.pki(name, &format!("{vpn}/16")),
        );
    }
    for (i, vpn) in [(1, B_VPN), (2, C_VPN), (3, D_VPN)] {
        sim.inside(0, &pkt(A_VPN, vpn, i));
        sim.run_for(Duration::from_secs(1));
        assert!(sim.has_tunnel(0, vpn));
    }
    for n in 0..45u32 {
        sim.inside(0, &pkt(A_VPN, B_VPN, 100 + n));
        sim.inside(2, &pkt(C_VPN, A_VPN, 100 + n));
        sim.run_for(Duration::from_secs(2));
    }
    assert!(sim.has_tunnel(0, B_VPN), "busy (outbound) tunnel dropped");
    assert!(sim.has_tunnel(0, C_VPN), "busy (inbound) tunnel dropped");
    assert!(!sim.has_tunnel(0, D_VPN), "idle tunnel kept");
    let d: IpAddr = D_VPN.parse().expect("vpn");
    assert!(sim.nodes[0].events.iter().any(|e| matches!(
        e,
        Event::TunnelDown {
            vpn_addr,
            reason: CloseReason::Inactive,
            ..
        } if *vpn_addr == d
    )));
    // A told D (closeTunnel): D's side is gone too.
    assert!(!sim.has_tunnel(3, A_VPN), "D was not told");
    // Only D's went for inactivity.
    let inactive = sim.nodes[0]
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::TunnelDown {
                    reason: CloseReason::Inactive,
                    ..
                }
            )
        })
        .count();
    assert_eq!(inactive, 1);
}

#[test]
fn without_drop_inactive_an_idle_tunnel_stays() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = two_nodes(12, &ca, B_ADDR);
    sim.inside(0, &pkt(A_VPN, B_VPN, 1));
    sim.run_for(Duration::from_secs(20 * 60));
    assert!(sim.has_tunnel(0, B_VPN));
}

/// SIGHUP turns `tunnels.drop_inactive` on (as Go reloads it): the idle tunnel goes.
#[test]
fn drop_inactive_is_reloadable() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = two_nodes(13, &ca, B_ADDR);
    sim.inside(0, &pkt(A_VPN, B_VPN, 1));
    sim.run_for(Duration::from_secs(60));
    assert!(sim.has_tunnel(0, B_VPN));
    let pki = ca.pki("a", "10.42.0.1/16");
    let firewall = nebula_core::firewall::Firewall::new(
        &nebula_core::firewall::FirewallConfig::default(),
        pki.networks(),
        pki.unsafe_networks(),
    )
    .expect("firewall");
    let config = EngineConfig {
        drop_inactive: true,
        inactivity_timeout: Duration::from_secs(30),
        ..sim.nodes[0].engine.config().clone()
    };
    let mut out = nebula_core::engine::Outputs::default();
    let now = sim.now;
    sim.nodes[0].engine.reload(
        now,
        nebula_core::engine::Reload {
            config,
            pki,
            firewall,
        },
        &mut out,
    );
    sim.dispatch(0, out);
    // The new certificate makes the tunnel re-handshake (traffic); then it is idle again.
    sim.run_for(Duration::from_secs(90));
    assert!(!sim.has_tunnel(0, B_VPN));
}
