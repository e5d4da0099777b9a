//! Simulation: a public lighthouse and two nodes behind NATs find each other and talk directly.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use nebula_cert::{Curve, Version};
use nebula_core::engine::EngineConfig;
use nebula_core::sim::{udp_packet, Nat, NatKind, Sim, TestCa};
use nebula_lighthouse::AddressBook;

const LH_VPN: &str = "10.50.0.1";
const LH_ADDR: &str = "203.0.113.1:4242";

fn node_cfg(advertise: &str) -> EngineConfig {
    let lh: IpAddr = LH_VPN.parse().expect("ip");
    let mut m: HashMap<IpAddr, Vec<SocketAddr>> = HashMap::new();
    m.insert(lh, vec![LH_ADDR.parse().expect("addr")]);
    EngineConfig {
        static_host_map: m,
        lighthouses: vec![lh],
        lighthouse_interval: Duration::from_secs(10),
        advertise_addrs: vec![advertise.parse().expect("addr")],
        ..EngineConfig::default()
    }
}

fn delivered(sim: &Sim, node: usize, marker: &[u8]) -> usize {
    sim.nodes[node]
        .tun
        .iter()
        .filter(|p| p.ends_with(marker))
        .count()
}

#[test]
fn nodes_behind_nats_meet_through_the_lighthouse_and_go_direct() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = Sim::new(7);
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
    let lh_cfg = EngineConfig {
        am_lighthouse: true,
        ..EngineConfig::default()
    };
    let lh = sim.add_node("lh", LH_ADDR, lh_cfg, ca.pki("lh", "10.50.0.1/16"));
    sim.nodes[lh]
        .engine
        .set_lighthouse_server(Box::new(AddressBook::new()));
    let a = sim.add_node(
        "a",
        "192.168.1.10:4242",
        node_cfg("192.168.1.10:4242"),
        ca.pki("a", "10.50.0.2/16"),
    );
    let b = sim.add_node(
        "b",
        "192.168.2.10:4242",
        node_cfg("192.168.2.10:4242"),
        ca.pki("b", "10.50.0.3/16"),
    );
    // Both register with the lighthouse.
    sim.run_for(Duration::from_secs(2));
    assert!(sim.has_tunnel(a, LH_VPN) && sim.has_tunnel(b, LH_VPN));
    // A talks to B: query, reply, punch, handshake, data.
    let p = udp_packet(
        "10.50.0.2".parse().expect("ip"),
        "10.50.0.3".parse().expect("ip"),
        1,
        2,
        b"via-lighthouse",
    );
    sim.inside(a, &p);
    sim.run_for(Duration::from_secs(3));
    assert!(sim.has_tunnel(a, "10.50.0.3"), "a reached b");
    assert_eq!(delivered(&sim, b, b"via-lighthouse"), 1);
    // The tunnel is direct: B's remote for A is A's NAT address, not the lighthouse.
    let t = sim.nodes[b]
        .engine
        .tunnel_to(&"10.50.0.2".parse().expect("ip"))
        .expect("t");
    assert_eq!(
        t.remote().expect("remote").ip(),
        "198.51.100.1".parse::<IpAddr>().expect("ip")
    );
    // And data between A and B never touches the lighthouse's address.
    let before = sim.wire_log.len();
    for _ in 0..10 {
        sim.inside(
            b,
            &udp_packet(
                "10.50.0.3".parse().expect("ip"),
                "10.50.0.2".parse().expect("ip"),
                2,
                1,
                b"back",
            ),
        );
    }
    sim.run_for(Duration::from_millis(200));
    assert_eq!(delivered(&sim, a, b"back"), 10);
    let lh_addr: SocketAddr = LH_ADDR.parse().expect("addr");
    assert!(sim.wire_log[before..]
        .iter()
        .filter(|(_, d)| d.payload.len() > 40)
        .all(|(_, d)| d.to != lh_addr));
}
