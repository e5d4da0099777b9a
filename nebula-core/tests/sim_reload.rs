//! Simulation: a node whose certificate is swapped (SIGHUP) re-handshakes its tunnels at the next
//! connection check, as Go 1.7+ does, and traffic keeps flowing throughout.

use std::net::IpAddr;
use std::time::Duration;

use nebula_cert::{Curve, Version};
use nebula_core::engine::EngineConfig;
use nebula_core::sim::{static_config, udp_packet, Sim, TestCa};

fn cfg_to(vpn: &str, addr: &str) -> EngineConfig {
    static_config(&[(vpn, addr)])
}

#[test]
fn new_certificate_moves_tunnels_to_it_without_dropping_traffic() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = Sim::new(17);
    let a = sim.add_node(
        "a",
        "192.0.2.1:4242",
        cfg_to("10.42.0.2", "192.0.2.2:4242"),
        ca.pki("a", "10.42.0.1/16"),
    );
    let b = sim.add_node(
        "b",
        "192.0.2.2:4242",
        cfg_to("10.42.0.1", "192.0.2.1:4242"),
        ca.pki("b", "10.42.0.2/16"),
    );
    let a_vpn: IpAddr = "10.42.0.1".parse().expect("ip");
    let pkt = |from: &str, to: &str| {
        udp_packet(
            from.parse().expect("ip"),
            to.parse().expect("ip"),
            1,
            2,
            b"hup",
        )
    };
    sim.inside(a, &pkt("10.42.0.1", "10.42.0.2"));
    sim.run_for(Duration::from_secs(1));
    let old_fp = sim.nodes[b]
        .engine
        .tunnel_to(&a_vpn)
        .map(|t| t.peer.cert.fingerprint_hex())
        .expect("tunnel");
    let new_pki = ca.pki("a", "10.42.0.1/16");
    let new_fp = new_pki.cert(Version::V1).expect("cert").fingerprint_hex();
    sim.reload_pki(a, new_pki);
    let mut sent = 0;
    for _ in 0..150 {
        sim.inside(b, &pkt("10.42.0.2", "10.42.0.1"));
        sent += 1;
        sim.run_for(Duration::from_millis(100));
    }
    let got = sim.nodes[a]
        .tun
        .iter()
        .filter(|p| p.ends_with(b"hup"))
        .count();
    assert_eq!(got, sent, "no packet lost during the swap");
    let now_fp = sim.nodes[b]
        .engine
        .tunnel_to(&a_vpn)
        .map(|t| t.peer.cert.fingerprint_hex())
        .expect("tunnel");
    assert_ne!(now_fp, old_fp);
    assert_eq!(
        now_fp, new_fp,
        "b's primary tunnel now carries a's new certificate"
    );
}

/// The engine's idea of the wall clock follows `set_wall_clock`: after a clock step past the
/// peer's certificate expiry (a suspend, an NTP correction), the next connection check closes the
/// tunnel, although the monotonic clock barely moved.
#[test]
fn a_wall_clock_step_past_the_peer_cert_expiry_closes_the_tunnel() {
    use nebula_core::engine::{CloseReason, Event};
    use nebula_core::pki::Pki;
    use nebula_core::sim::SIM_EPOCH_UNIX;

    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = Sim::new(5);
    let a = sim.add_node(
        "a",
        "192.0.2.1:4242",
        cfg_to("10.42.0.2", "192.0.2.2:4242"),
        ca.pki("a", "10.42.0.1/16"),
    );
    // b's certificate expires one day after the simulation's start.
    let (cert, key) = ca.host_with_validity(
        "b",
        "10.42.0.2/16",
        &[],
        SIM_EPOCH_UNIX - 86400,
        SIM_EPOCH_UNIX + 86400,
    );
    let b_pki = Pki::new(vec![cert], key, ca.pool(), None).expect("pki");
    sim.add_node(
        "b",
        "192.0.2.2:4242",
        cfg_to("10.42.0.1", "192.0.2.1:4242"),
        b_pki,
    );
    let b_vpn: IpAddr = "10.42.0.2".parse().expect("ip");
    let ping = udp_packet(
        "10.42.0.1".parse().expect("ip"),
        "10.42.0.2".parse().expect("ip"),
        1,
        2,
        b"t",
    );
    sim.inside(a, &ping);
    sim.run_for(Duration::from_secs(1));
    assert!(sim.nodes[a].engine.tunnel_to(&b_vpn).is_some());
    // Keep the tunnel busy for a while: no step, no close.
    for _ in 0..20 {
        sim.inside(a, &ping);
        sim.run_for(Duration::from_millis(500));
    }
    assert!(
        sim.nodes[a].engine.tunnel_to(&b_vpn).is_some(),
        "closed early"
    );
    // The wall clock jumps two days ahead.
    let now = sim.now;
    let stepped = sim.unix_nanos() + 2 * 86_400 * 1_000_000_000;
    sim.nodes[a].engine.set_wall_clock(now, stepped);
    sim.run_for(Duration::from_secs(12));
    assert!(sim.nodes[a].engine.tunnel_to(&b_vpn).is_none());
    assert!(sim.nodes[a].events.iter().any(|e| matches!(
        e,
        Event::TunnelDown {
            reason: CloseReason::CertInvalid,
            ..
        }
    )));
    // The reason is told, not dropped.
    assert!(sim.nodes[a].events.iter().any(|e| matches!(
        e,
        Event::PeerCertificateInvalid { cert_name, error, .. }
            if cert_name == "b" && !error.is_empty()
    )));
}
