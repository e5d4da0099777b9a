//! What the node feeds the engine from the OS while it runs: static host addresses re-resolved
//! from DNS (`Engine::set_static_addrs`) and routes learned from the kernel
//! (`Engine::set_system_route`). Fake clock, fake network.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use nebula_cert::{Curve, Version};
use nebula_core::engine::{DropReason, InsideOutcome, MAX_UNSAFE_ROUTES};
use nebula_core::sim::{two_nodes, udp_packet, Sim, TestCa};

const A_VPN: &str = "10.42.0.1";
const B_VPN: &str = "10.42.0.2";
const B_ADDR: &str = "192.0.2.2:4242";

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("ipv4")
}

fn pair(b_in_a_map: &str) -> Sim {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    two_nodes(3, &ca, b_in_a_map)
}

#[test]
fn a_re_resolved_static_address_is_used_by_the_next_handshake() {
    // A's map first points at an address where nobody listens.
    let mut sim = pair("192.0.2.99:4242");
    sim.inside(0, &udp_packet(ip(A_VPN), ip(B_VPN), 1, 2, b"x"));
    sim.run_for(Duration::from_secs(10));
    assert!(!sim.has_tunnel(0, B_VPN));
    let b: IpAddr = B_VPN.parse().expect("vpn");
    sim.nodes[0]
        .engine
        .set_static_addrs(b, vec![B_ADDR.parse().expect("addr")]);
    let static_now = sim.nodes[0]
        .engine
        .remotes_for(&b)
        .map(|r| r.static_addrs().to_vec());
    assert_eq!(static_now, Some(vec![B_ADDR.parse().expect("addr")]));
    sim.inside(0, &udp_packet(ip(A_VPN), ip(B_VPN), 1, 2, b"y"));
    sim.run_for(Duration::from_secs(2));
    assert!(sim.has_tunnel(0, B_VPN));
    // A host that is not in static_host_map is left alone.
    let stranger: IpAddr = "10.42.0.77".parse().expect("vpn");
    sim.nodes[0]
        .engine
        .set_static_addrs(stranger, vec!["192.0.2.77:4242".parse().expect("addr")]);
    assert!(sim.nodes[0].engine.remotes_for(&stranger).is_none());
}

#[test]
fn a_system_route_carries_traffic_until_it_is_removed() {
    let mut sim = pair(B_ADDR);
    sim.inside(0, &udp_packet(ip(A_VPN), ip(B_VPN), 1, 2, b"x"));
    sim.run_for(Duration::from_secs(1));
    assert!(sim.has_tunnel(0, B_VPN));
    let behind = udp_packet(ip(A_VPN), ip("192.168.50.1"), 1, 2, b"r");
    assert_eq!(
        sim.inside(0, &behind),
        InsideOutcome::Dropped(DropReason::NoRoute)
    );
    let net: IpNet = "192.168.50.0/24".parse().expect("net");
    let b: IpAddr = B_VPN.parse().expect("vpn");
    assert!(sim.nodes[0].engine.set_system_route(net, Some(b)));
    let b_addr: SocketAddr = B_ADDR.parse().expect("addr");
    assert!(matches!(
        sim.inside(0, &behind),
        InsideOutcome::Send { to, .. } if to == b_addr
    ));
    assert!(sim.nodes[0].engine.set_system_route(net, None));
    assert_eq!(
        sim.inside(0, &behind),
        InsideOutcome::Dropped(DropReason::NoRoute)
    );
}

#[test]
fn learned_routes_are_bounded() {
    let mut sim = pair(B_ADDR);
    let b: IpAddr = B_VPN.parse().expect("vpn");
    let e = &mut sim.nodes[0].engine;
    for i in 0..MAX_UNSAFE_ROUTES {
        let n = u32::try_from(i).expect("fits") << 8;
        let net = IpNet::new(IpAddr::V4(Ipv4Addr::from(0x6400_0000 | n)), 24).expect("net");
        assert!(e.set_system_route(net, Some(b)), "route {i}");
    }
    let one_more: IpNet = "203.0.113.0/24".parse().expect("net");
    assert!(!e.set_system_route(one_more, Some(b)));
    // Replacing or removing a known prefix still works at the cap.
    let first: IpNet = "100.0.0.0/24".parse().expect("net");
    assert!(e.set_system_route(first, Some(b)));
    assert!(e.set_system_route(first, None));
    assert!(e.set_system_route(one_more, Some(b)));
}
