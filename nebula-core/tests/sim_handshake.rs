//! Simulation tests of handshakes and sessions: engines on a fake clock over a fake, faulty network.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use nebula_cert::{Curve, Version};
use nebula_core::aead::CipherKind;
use nebula_core::engine::{CloseReason, EngineConfig, Event, InsideOutcome};
use nebula_core::pki::Pki;
use nebula_core::sim::{
    static_config, two_nodes, udp_packet, Nat, NatKind, Sim, TestCa, SIM_EPOCH_UNIX,
};

const A_VPN: &str = "10.42.0.1";
const B_VPN: &str = "10.42.0.2";
const A_ADDR: &str = "192.0.2.1:4242";
const B_ADDR: &str = "192.0.2.2:4242";

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("ipv4")
}

fn pair(seed: u64, ca: &TestCa) -> Sim {
    two_nodes(seed, ca, B_ADDR)
}

fn pkt(from: &str, to: &str, n: u32) -> Vec<u8> {
    udp_packet(ip(from), ip(to), 1000, 2000, &n.to_be_bytes())
}

fn delivered(sim: &Sim, node: usize, n: u32) -> usize {
    sim.nodes[node]
        .tun
        .iter()
        .filter(|p| p.get(28..32) == Some(&n.to_be_bytes()[..]))
        .count()
}

#[test]
fn handshake_and_data_both_ciphers_and_curves() {
    for cipher in [CipherKind::AesGcm, CipherKind::ChaChaPoly] {
        for (curve, version) in [
            (Curve::Curve25519, Version::V1),
            (Curve::Curve25519, Version::V2),
            (Curve::P256, Version::V2),
            (Curve::P256, Version::V1),
        ] {
            let ca = TestCa::new("ca", curve, version);
            let mut sim = Sim::new(1);
            let mut ca_cfg = static_config(&[(B_VPN, B_ADDR)]);
            ca_cfg.cipher = cipher;
            sim.add_node("a", A_ADDR, ca_cfg, ca.pki("a", "10.42.0.1/16"));
            let mut cb = static_config(&[(A_VPN, A_ADDR)]);
            cb.cipher = cipher;
            sim.add_node("b", B_ADDR, cb, ca.pki("b", "10.42.0.2/16"));
            assert_eq!(sim.inside(0, &pkt(A_VPN, B_VPN, 1)), InsideOutcome::Queued);
            sim.run_for(Duration::from_secs(1));
            assert!(sim.has_tunnel(0, B_VPN), "{cipher:?} {curve:?} {version:?}");
            assert!(sim.has_tunnel(1, A_VPN));
            assert_eq!(delivered(&sim, 1, 1), 1, "queued packet delivered once");
            for n in 2..50 {
                assert!(matches!(
                    sim.inside(0, &pkt(A_VPN, B_VPN, n)),
                    InsideOutcome::Send { .. }
                ));
                assert!(matches!(
                    sim.inside(1, &pkt(B_VPN, A_VPN, n)),
                    InsideOutcome::Send { .. }
                ));
            }
            sim.run_for(Duration::from_millis(100));
            for n in 2..50 {
                assert_eq!(delivered(&sim, 1, n), 1);
                assert_eq!(delivered(&sim, 0, n), 1);
            }
        }
    }
}

#[test]
fn nothing_readable_on_the_wire() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = pair(2, &ca);
    let secret = b"TOP-SECRET-PAYLOAD";
    sim.inside(0, &udp_packet(ip(A_VPN), ip(B_VPN), 1, 2, secret));
    sim.run_for(Duration::from_secs(1));
    sim.inside(0, &udp_packet(ip(A_VPN), ip(B_VPN), 1, 2, secret));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.nodes[1].tun.len(), 2);
    for (_, d) in &sim.wire_log {
        assert!(!d.payload.windows(secret.len()).any(|w| w == secret));
    }
}

#[test]
fn handshake_completes_under_30_percent_loss() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut ok = 0;
    for seed in 0..20 {
        let mut sim = pair(100 + seed, &ca);
        sim.net.loss = 0.3;
        sim.inside(0, &pkt(A_VPN, B_VPN, 1));
        sim.run_for(Duration::from_secs(6));
        if sim.has_tunnel(0, B_VPN) {
            ok += 1;
            // Data keeps flowing over the lossy link (some packets are lost, none twice).
            for n in 2..102 {
                sim.inside(0, &pkt(A_VPN, B_VPN, n));
            }
            sim.run_for(Duration::from_millis(100));
            let got: usize = (2..102).map(|n| delivered(&sim, 1, n)).sum();
            assert!(got > 40 && got < 100, "{got} of 100 at 30% loss");
            assert!((2..102).all(|n| delivered(&sim, 1, n) <= 1));
        }
    }
    // 10 attempts with two legs each at 30% loss: P(fail) = 0.51^10, about 0.1%.
    assert!(ok >= 19, "only {ok}/20 handshakes completed");
}

#[test]
fn duplicated_and_reordered_network() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = pair(3, &ca);
    sim.net.duplicate = 0.5;
    sim.net.jitter = Duration::from_millis(30);
    sim.inside(0, &pkt(A_VPN, B_VPN, 1));
    sim.run_for(Duration::from_secs(2));
    assert!(sim.has_tunnel(0, B_VPN));
    let (a_tunnels, _) = sim.nodes[0].engine.counts();
    assert_eq!(
        a_tunnels, 1,
        "duplicated stage 1/2 did not make extra tunnels"
    );
    for n in 2..300 {
        sim.inside(0, &pkt(A_VPN, B_VPN, n));
    }
    sim.run_for(Duration::from_secs(1));
    // Every packet arrives exactly once despite duplicates and reordering.
    for n in 1..300 {
        assert_eq!(delivered(&sim, 1, n), 1, "packet {n}");
    }
}

#[test]
fn replayed_data_packets_are_dropped() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = pair(4, &ca);
    sim.inside(0, &pkt(A_VPN, B_VPN, 1));
    sim.run_for(Duration::from_secs(1));
    let before = sim.wire_log.len();
    for n in 2..10 {
        sim.inside(0, &pkt(A_VPN, B_VPN, n));
    }
    sim.run_for(Duration::from_millis(50));
    let data: Vec<_> = sim.wire_log[before..]
        .iter()
        .filter(|(_, d)| d.to == B_ADDR.parse().expect("addr") && d.payload.first() == Some(&0x11))
        .map(|(_, d)| d.clone())
        .collect();
    assert_eq!(data.len(), 8);
    // Replay them all, in reverse order, from the right and from a wrong address.
    for d in data.iter().rev() {
        sim.inject(d.from, d.to, d.payload.clone());
        sim.inject(
            "198.51.100.9:9999".parse().expect("addr"),
            d.to,
            d.payload.clone(),
        );
    }
    sim.run_for(Duration::from_millis(50));
    for n in 2..10 {
        assert_eq!(delivered(&sim, 1, n), 1, "packet {n} delivered once");
    }
    // The replays from elsewhere did not move the tunnel.
    let t = sim.nodes[1]
        .engine
        .tunnel_to(&A_VPN.parse().expect("ip"))
        .expect("tunnel");
    assert_eq!(t.remote(), Some(A_ADDR.parse().expect("addr")));
}

#[test]
fn reordered_data_inside_the_window_is_accepted_once() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = pair(5, &ca);
    sim.inside(0, &pkt(A_VPN, B_VPN, 1));
    sim.run_for(Duration::from_secs(1));
    // Capture 1100 data packets instead of delivering them, then deliver out of order.
    sim.blocked
        .push((ip("192.0.2.1").into(), ip("192.0.2.2").into()));
    let before = sim.wire_log.len();
    for n in 0..1100 {
        sim.inside(0, &pkt(A_VPN, B_VPN, 10_000 + n));
    }
    sim.blocked.clear();
    let caught: Vec<_> = sim.wire_log[before..]
        .iter()
        .map(|(_, d)| d.clone())
        .collect();
    // Deliver the newest first, then the oldest: packets more than 1024 behind are refused (Go).
    for d in caught.iter().rev() {
        sim.inject(d.from, d.to, d.payload.clone());
    }
    sim.run_for(Duration::from_millis(50));
    let got: usize = (0..1100).map(|n| delivered(&sim, 1, 10_000 + n)).sum();
    assert!((1020..=1024).contains(&got), "got {got}");
    assert_eq!(delivered(&sim, 1, 10_000 + 1099), 1);
    assert_eq!(delivered(&sim, 1, 10_000), 0, "too old for the window");
}

#[test]
fn both_sides_initiate_at_once() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    for seed in 0..5 {
        let mut sim = pair(10 + seed, &ca);
        sim.inside(0, &pkt(A_VPN, B_VPN, 1));
        sim.inside(1, &pkt(B_VPN, A_VPN, 1));
        sim.run_for(Duration::from_secs(1));
        for n in 2..20 {
            sim.inside(0, &pkt(A_VPN, B_VPN, n));
            sim.inside(1, &pkt(B_VPN, A_VPN, n));
            sim.run_for(Duration::from_millis(30));
        }
        sim.run_for(Duration::from_secs(12));
        for n in 1..20 {
            assert_eq!(delivered(&sim, 1, n), 1, "a->b {n}");
            assert_eq!(delivered(&sim, 0, n), 1, "b->a {n}");
        }
        // Both ends settled on the same tunnel, and the loser was cleaned up.
        let ta = sim.nodes[0]
            .engine
            .tunnel_to(&B_VPN.parse().expect("ip"))
            .expect("a");
        let tb = sim.nodes[1]
            .engine
            .tunnel_to(&A_VPN.parse().expect("ip"))
            .expect("b");
        assert_eq!(ta.remote_index, tb.local_index);
        assert_eq!(tb.remote_index, ta.local_index);
        // The higher vpn address (b) initiated the survivor.
        assert!(tb.initiator && !ta.initiator);
        assert_eq!(sim.nodes[0].engine.counts(), (1, 0));
        assert_eq!(sim.nodes[1].engine.counts(), (1, 0));
    }
}

#[test]
fn restarted_peer_recovers() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = pair(20, &ca);
    sim.inside(0, &pkt(A_VPN, B_VPN, 1));
    sim.run_for(Duration::from_secs(1));
    let old = sim.nodes[0]
        .engine
        .tunnel_to(&B_VPN.parse().expect("ip"))
        .expect("t")
        .local_index;
    // B restarts: new engine, new keys, new indexes; A still holds the old tunnel.
    sim.restart_node(
        1,
        static_config(&[(A_VPN, A_ADDR)]),
        ca.pki("b", "10.42.0.2/16"),
    );
    // A keeps sending on the old tunnel: B answers recvError, A re-handshakes.
    for n in 2..5 {
        sim.inside(0, &pkt(A_VPN, B_VPN, n));
        sim.run_for(Duration::from_millis(200));
    }
    sim.run_for(Duration::from_secs(1));
    let t = sim.nodes[0]
        .engine
        .tunnel_to(&B_VPN.parse().expect("ip"))
        .expect("new tunnel");
    assert_ne!(t.local_index, old);
    assert!(sim.nodes[0].events.iter().any(|e| matches!(
        e,
        Event::TunnelDown {
            reason: CloseReason::RecvError,
            ..
        }
    )));
    sim.inside(0, &pkt(A_VPN, B_VPN, 99));
    sim.inside(1, &pkt(B_VPN, A_VPN, 98));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(delivered(&sim, 1, 99), 1);
    assert_eq!(delivered(&sim, 0, 98), 1);
}

#[test]
fn restarted_peer_that_initiates_replaces_the_old_tunnel() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = pair(21, &ca);
    sim.inside(0, &pkt(A_VPN, B_VPN, 1));
    sim.run_for(Duration::from_secs(1));
    sim.run_for(Duration::from_secs(20));
    sim.restart_node(
        1,
        static_config(&[(A_VPN, A_ADDR)]),
        ca.pki("b", "10.42.0.2/16"),
    );
    sim.inside(1, &pkt(B_VPN, A_VPN, 5));
    sim.run_for(Duration::from_secs(1));
    assert_eq!(delivered(&sim, 0, 5), 1);
    sim.inside(0, &pkt(A_VPN, B_VPN, 6));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(delivered(&sim, 1, 6), 1, "a answers on the new tunnel");
}

#[test]
fn bad_certificates_are_refused() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let other = TestCa::new("evil", Curve::Curve25519, Version::V1);
    // Wrong CA.
    let (cert, key) = other.host("b", "10.42.0.2/16", &[]);
    let wrong_ca = Pki::new(vec![cert], key, other.pool(), None).expect("pki");
    // Expired.
    let (cert, key) = ca.host_with_validity(
        "b",
        "10.42.0.2/16",
        &[],
        SIM_EPOCH_UNIX - 1000,
        SIM_EPOCH_UNIX - 10,
    );
    let expired = Pki::new(vec![cert], key, ca.pool(), None).expect("pki");
    // Not yet valid.
    let (cert, key) = ca.host_with_validity(
        "b",
        "10.42.0.2/16",
        &[],
        SIM_EPOCH_UNIX + 1000,
        SIM_EPOCH_UNIX + 9000,
    );
    let future = Pki::new(vec![cert], key, ca.pool(), None).expect("pki");
    // Blocklisted (A blocks B's fingerprint).
    let (cert, key) = ca.host("b", "10.42.0.2/16", &[]);
    let fp = cert.fingerprint_hex();
    let blocked = Pki::new(vec![cert], key, ca.pool(), None).expect("pki");

    for (what, b_pki, block) in [
        ("wrong CA", wrong_ca, None),
        ("expired", expired, None),
        ("not yet valid", future, None),
        ("blocklisted", blocked, Some(fp)),
    ] {
        let mut sim = Sim::new(30);
        let mut pool = ca.pool();
        if let Some(fp) = &block {
            pool.blocklist_fingerprint(fp);
        }
        let (ac, ak) = ca.host("a", "10.42.0.1/16", &[]);
        let a_pki = Pki::new(vec![ac], ak, pool, None).expect("pki");
        sim.add_node("a", A_ADDR, static_config(&[(B_VPN, B_ADDR)]), a_pki);
        sim.add_node("b", B_ADDR, static_config(&[(A_VPN, A_ADDR)]), b_pki);
        // B initiates to A: A must refuse B's certificate.
        sim.inside(1, &pkt(B_VPN, A_VPN, 1));
        sim.run_for(Duration::from_secs(7));
        assert!(!sim.has_tunnel(0, B_VPN), "{what}: a accepted b");
        assert_eq!(delivered(&sim, 0, 1), 0, "{what}");
        assert!(
            sim.nodes[0]
                .events
                .iter()
                .any(|e| matches!(e, Event::HandshakeRejected { .. })),
            "{what}: no rejection event"
        );
        // A initiates to B: A refuses B's stage 2 (B may or may not accept A).
        sim.inside(0, &pkt(A_VPN, B_VPN, 2));
        sim.run_for(Duration::from_secs(7));
        assert!(!sim.has_tunnel(0, B_VPN), "{what}: a completed to b");
    }
}

#[test]
fn counter_limit_forces_a_rehandshake() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = Sim::new(40);
    let mut ca_cfg = static_config(&[(B_VPN, B_ADDR)]);
    ca_cfg.rehandshake_after_messages = 100;
    sim.add_node("a", A_ADDR, ca_cfg, ca.pki("a", "10.42.0.1/16"));
    sim.add_node(
        "b",
        B_ADDR,
        static_config(&[(A_VPN, A_ADDR)]),
        ca.pki("b", "10.42.0.2/16"),
    );
    sim.inside(0, &pkt(A_VPN, B_VPN, 0));
    sim.run_for(Duration::from_secs(1));
    let first = sim.nodes[0]
        .engine
        .tunnel_to(&B_VPN.parse().expect("ip"))
        .expect("t")
        .local_index;
    let mut n = 1;
    // Send steadily for 30 s; the tunnel passes 100 messages and is replaced.
    for _ in 0..300 {
        sim.inside(0, &pkt(A_VPN, B_VPN, n));
        sim.inside(1, &pkt(B_VPN, A_VPN, n));
        n += 1;
        sim.run_for(Duration::from_millis(100));
    }
    let now = sim.nodes[0]
        .engine
        .tunnel_to(&B_VPN.parse().expect("ip"))
        .expect("t");
    assert_ne!(
        now.local_index, first,
        "a new tunnel replaced the spent one"
    );
    assert!(now.session.send_counter() < 200);
    // Nothing was lost across the switch.
    for k in 1..n {
        assert_eq!(delivered(&sim, 1, k), 1, "a->b {k}");
    }
}

#[test]
fn nat_rewrites_addresses_and_the_tunnel_follows() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = Sim::new(50);
    sim.nats.push(Nat::new(
        "192.168.1.0/24",
        "203.0.113.1",
        NatKind::RestrictedCone,
    ));
    sim.add_node(
        "a",
        "192.168.1.10:4242",
        static_config(&[(B_VPN, B_ADDR)]),
        ca.pki("a", "10.42.0.1/16"),
    );
    sim.add_node(
        "b",
        B_ADDR,
        EngineConfig::default(),
        ca.pki("b", "10.42.0.2/16"),
    );
    sim.inside(0, &pkt(A_VPN, B_VPN, 1));
    sim.run_for(Duration::from_secs(1));
    let t = sim.nodes[1]
        .engine
        .tunnel_to(&A_VPN.parse().expect("ip"))
        .expect("t");
    assert_eq!(
        t.remote().expect("remote").ip(),
        "203.0.113.1".parse::<IpAddr>().expect("ip")
    );
    // B answers through the NAT mapping.
    sim.inside(1, &pkt(B_VPN, A_VPN, 2));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(delivered(&sim, 0, 2), 1);
    // The NAT reboots and picks a new port: the next packet from A moves B's tunnel (roaming).
    sim.nats[0].reset();
    sim.inside(0, &pkt(A_VPN, B_VPN, 3));
    sim.run_for(Duration::from_millis(100));
    sim.inside(1, &pkt(B_VPN, A_VPN, 4));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(delivered(&sim, 1, 3), 1);
    assert_eq!(delivered(&sim, 0, 4), 1);
    assert!(sim.nodes[1]
        .events
        .iter()
        .any(|e| matches!(e, Event::Roamed { .. })));
}

/// Stage 1 is in the clear: someone who recorded it can replay it, or change its time field,
/// from another address. Go lets that copy take over a working tunnel; we must not.
#[test]
fn replayed_or_altered_stage1_does_not_hijack_a_working_tunnel() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = pair(60, &ca);
    sim.inside(0, &pkt(A_VPN, B_VPN, 1));
    sim.run_for(Duration::from_secs(1));
    let stage1 = sim
        .wire_log
        .iter()
        .find(|(_, d)| d.payload.len() > 16 && d.payload[0] == 0x10 && d.payload[15] == 1)
        .map(|(_, d)| d.payload.clone())
        .expect("captured stage 1");
    let attacker: SocketAddr = "198.51.100.66:6666".parse().expect("addr");
    // 1. Verbatim replay from elsewhere; 2. with the time field bumped (last varint bytes).
    let mut altered = stage1.clone();
    if let Some(pos) = altered.windows(1).rposition(|w| w[0] == 0x28) {
        // Field 5 (time) tag 0x28: bump its first varint byte.
        altered[pos + 1] ^= 0x01;
    }
    for (i, forged) in [stage1.clone(), altered].into_iter().enumerate() {
        let sent_before = sim.wire_log.len();
        sim.inject(attacker, B_ADDR.parse().expect("addr"), forged);
        sim.run_for(Duration::from_millis(50));
        // The verbatim copy makes no new tunnel (the working one is at least as new; our
        // cached stage 2 is gone since A confirmed, so nothing is reflected to the sender); the
        // altered one makes a second, unconfirmed tunnel that is not primary.
        let answered = sim.wire_log[sent_before..]
            .iter()
            .any(|(_, d)| d.to == attacker && d.payload.first() == Some(&0x10));
        assert_eq!(answered, i == 1, "forged stage 1 #{i} answered: {answered}");
        assert_eq!(sim.nodes[1].engine.counts().0, 1 + i);
        // B still sends to A's real address, on the tunnel A can read.
        sim.inside(1, &pkt(B_VPN, A_VPN, 77));
        sim.run_for(Duration::from_millis(50));
        let t = sim.nodes[1]
            .engine
            .tunnel_to(&A_VPN.parse().expect("ip"))
            .expect("tunnel");
        assert_eq!(t.remote(), Some(A_ADDR.parse().expect("addr")));
        assert!(t.is_confirmed());
    }
    assert_eq!(delivered(&sim, 0, 77), 2, "both packets reached a");
    // Over time the forged tunnel is dropped and the real one lives on.
    for n in 0..30 {
        sim.inside(0, &pkt(A_VPN, B_VPN, 1000 + n));
        sim.run_for(Duration::from_millis(500));
    }
    assert_eq!(sim.nodes[1].engine.counts().0, 1);
    assert!(sim.has_tunnel(1, A_VPN));
}

/// A v1 certificate whose details hold an odd number of IP words crashes Go 1.6.1; we drop the
/// handshake and keep serving.
#[test]
fn odd_ip_words_in_stage1_are_dropped() {
    use nebula_core::aead::CipherKind;
    use nebula_core::noise::{DhKind, Initiator, StaticKeypair};
    use prost::Message as _;
    use proto::cert::RawNebulaCertificateDetails;
    use proto::handshake::{NebulaHandshake, NebulaHandshakeDetails};
    use rand::SeedableRng;

    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = pair(70, &ca);
    let details = RawNebulaCertificateDetails {
        name: "evil".into(),
        ips: vec![0x0a2a0003, 0xffff0000, 0x0a2a0004],
        groups: vec![],
        not_before: SIM_EPOCH_UNIX - 10,
        not_after: SIM_EPOCH_UNIX + 1000,
        issuer: ca.cert.fingerprint().to_vec(),
        ..Default::default()
    };
    let raw = proto::cert::RawNebulaCertificate {
        details: Some(details),
        signature: vec![0; 64],
    };
    let payload = NebulaHandshake::from_details(NebulaHandshakeDetails {
        cert: raw.encode_to_vec(),
        initiator_index: 1234,
        time: 1,
        ..Default::default()
    })
    .encode_to_vec();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let kp = StaticKeypair::generate(DhKind::X25519, &mut rng);
    let msg = Initiator::new(CipherKind::AesGcm, kp)
        .write_message_1(&payload, &mut rng)
        .expect("msg1");
    let mut d = vec![0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    d.extend_from_slice(&msg);
    sim.inject(
        "198.51.100.1:1".parse().expect("addr"),
        B_ADDR.parse().expect("addr"),
        d,
    );
    sim.run_for(Duration::from_millis(50));
    assert!(sim.nodes[1].events.iter().any(
        |e| matches!(e, Event::HandshakeRejected { reason, .. } if reason.contains("odd") || reason.contains("pairs") || reason.contains("IP"))
    ), "{:?}", sim.nodes[1].events);
    // B still serves A.
    sim.inside(0, &pkt(A_VPN, B_VPN, 1));
    sim.run_for(Duration::from_secs(1));
    assert_eq!(delivered(&sim, 1, 1), 1);
}

#[test]
fn close_tunnel_is_honoured() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = pair(80, &ca);
    sim.inside(0, &pkt(A_VPN, B_VPN, 1));
    sim.run_for(Duration::from_secs(1));
    let mut out = nebula_core::Outputs::default();
    sim.nodes[0].engine.close_all(&mut out);
    sim.dispatch(0, out);
    sim.run_for(Duration::from_millis(100));
    assert!(!sim.has_tunnel(0, B_VPN));
    assert!(!sim.has_tunnel(1, A_VPN));
    assert!(sim.nodes[1].events.iter().any(|e| matches!(
        e,
        Event::TunnelDown {
            reason: CloseReason::PeerClosed,
            ..
        }
    )));
}

#[test]
fn dead_tunnel_is_detected_and_removed() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = pair(90, &ca);
    sim.inside(0, &pkt(A_VPN, B_VPN, 1));
    sim.run_for(Duration::from_secs(1));
    // Cut the link both ways; A keeps sending.
    sim.blocked
        .push((ip("192.0.2.1").into(), ip("192.0.2.2").into()));
    sim.blocked
        .push((ip("192.0.2.2").into(), ip("192.0.2.1").into()));
    for n in 0..40 {
        sim.inside(0, &pkt(A_VPN, B_VPN, 100 + n));
        sim.run_for(Duration::from_millis(500));
    }
    assert!(sim.nodes[0].events.iter().any(|e| matches!(
        e,
        Event::TunnelDown {
            reason: CloseReason::Dead,
            ..
        }
    )));
}

#[test]
fn test_request_is_answered_with_the_same_payload() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = pair(91, &ca);
    let mut out = nebula_core::Outputs::default();
    let now = sim.now;
    sim.nodes[0]
        .engine
        .send_test_request(now, B_VPN.parse().expect("ip"), b"ping-123", &mut out);
    sim.dispatch(0, out);
    sim.run_for(Duration::from_secs(1));
    assert!(sim.nodes[0].events.iter().any(|e| matches!(
        e,
        Event::TestReply { payload, .. } if payload == b"ping-123"
    )));
}

/// A lost stage 2 makes the initiator send its stage 1 again: until the tunnel is confirmed the
/// responder answers every copy with the very same stage 2 (found by hash, no new tunnel).
#[test]
fn a_retransmitted_stage1_gets_the_same_stage2_until_confirmed() {
    use nebula_core::aead::CipherKind;
    use nebula_core::engine::{Engine, Outputs};
    use nebula_core::filter::AllowAll;
    use nebula_core::handshake;
    use nebula_core::sim::SIM_EPOCH_UNIX;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::time::Instant;

    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let now = Instant::now();
    let unix = u64::try_from(SIM_EPOCH_UNIX).expect("epoch") * 1_000_000_000;
    let mut b = Engine::new(
        EngineConfig::default(),
        ca.pki("b", "10.42.0.2/16"),
        Box::new(AllowAll),
        Box::new(StdRng::seed_from_u64(1)),
        now,
        unix,
    );
    let a_pki = ca.pki("a", "10.42.0.1/16");
    let p = handshake::initiate(
        &a_pki,
        CipherKind::AesGcm,
        Version::V1,
        B_VPN.parse().expect("ip"),
        42,
        unix,
        now,
        &mut StdRng::seed_from_u64(2),
    )
    .expect("stage 1");
    let from: SocketAddr = A_ADDR.parse().expect("addr");
    let mut answers = Vec::new();
    for _ in 0..3 {
        let mut out = Outputs::default();
        let mut d = p.stage1.clone();
        b.handle_outside(now, from, &mut d, &mut out);
        answers.extend(out.transmits.into_iter().map(|t| t.payload));
    }
    assert_eq!(answers.len(), 3, "every copy answered");
    assert!(answers.iter().all(|a| *a == answers[0]), "the same stage 2");
    assert_eq!(b.counts().0, 1, "one tunnel");
}

/// Intervals far beyond any clock (a hostile or mistyped config that slipped past the config's
/// bounds) give far-away deadlines, never an overflow panic: handshakes, connection checks,
/// lighthouse updates and punches all still work or simply wait.
#[test]
fn huge_timer_settings_never_panic() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let huge = |mut cfg: EngineConfig| {
        cfg.handshake_try_interval = Duration::MAX;
        cfg.handshake_retries = u32::MAX;
        cfg.connection_alive_interval = Duration::MAX;
        cfg.pending_deletion_interval = Duration::MAX;
        cfg.lighthouse_interval = Duration::MAX;
        cfg.requery_wait = Duration::MAX;
        cfg.punchy.delay = Duration::MAX;
        cfg.punchy.respond_delay = Duration::MAX;
        cfg.punchy.punch = true;
        cfg.punchy.respond = true;
        cfg
    };
    let mut sim = Sim::new(99);
    let mut a_cfg = huge(static_config(&[(B_VPN, B_ADDR)]));
    // B is also A's lighthouse: host updates and queries run on the huge interval too.
    a_cfg.lighthouses = vec![B_VPN.parse().expect("ip")];
    sim.add_node("a", A_ADDR, a_cfg, ca.pki("a", "10.42.0.1/16"));
    sim.add_node(
        "b",
        B_ADDR,
        huge(static_config(&[(A_VPN, A_ADDR)])),
        ca.pki("b", "10.42.0.2/16"),
    );
    sim.inside(0, &pkt(A_VPN, B_VPN, 1));
    sim.run_for(Duration::from_secs(30));
    assert_eq!(delivered(&sim, 1, 1), 1, "the tunnel came up");
    sim.inside(1, &pkt(B_VPN, A_VPN, 2));
    sim.run_for(Duration::from_secs(30));
    assert_eq!(delivered(&sim, 0, 2), 1);
}

/// With no working tunnel to a host, a replayed copy of that host's stage 1 (sent from anywhere)
/// must not become the tunnel our traffic takes: its sender cannot read it. Our own handshake to
/// the host goes ahead, queued and new packets reach the real host, and the copy's tunnel, never
/// confirmed, goes away.
#[test]
fn a_replayed_stage1_does_not_black_hole_traffic_while_no_tunnel_is_up() {
    use nebula_core::engine::Outputs;

    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = pair(61, &ca);
    let (a_addr, b_addr): (SocketAddr, SocketAddr) =
        (A_ADDR.parse().expect("addr"), B_ADDR.parse().expect("addr"));
    // B dials A: B's stage 1 goes over the wire, where anyone may record it.
    sim.inside(1, &pkt(B_VPN, A_VPN, 1));
    sim.run_for(Duration::from_secs(1));
    assert_eq!(delivered(&sim, 0, 1), 1);
    let stage1 = sim
        .wire_log
        .iter()
        .find(|(_, d)| {
            d.from == b_addr && d.payload.len() > 16 && d.payload[0] == 0x10 && d.payload[15] == 1
        })
        .map(|(_, d)| d.payload.clone())
        .expect("captured stage 1 of b");
    // B closes the tunnel: neither side has one now.
    let mut out = Outputs::default();
    sim.nodes[1]
        .engine
        .close_tunnel(&A_VPN.parse().expect("ip"), &mut out);
    sim.dispatch(1, out);
    sim.run_for(Duration::from_secs(1));
    assert!(!sim.has_tunnel(0, B_VPN) && !sim.has_tunnel(1, A_VPN));
    // The recorded stage 1 comes back from elsewhere; A answers it (stage 1 is not
    // authenticated) but must not send B's traffic there.
    let attacker: SocketAddr = "198.51.100.66:6666".parse().expect("addr");
    let sent_before = sim.wire_log.len();
    sim.inject(attacker, a_addr, stage1);
    sim.run_for(Duration::from_millis(50));
    for n in 2..12 {
        sim.inside(0, &pkt(A_VPN, B_VPN, n));
        sim.run_for(Duration::from_millis(100));
    }
    sim.run_for(Duration::from_secs(1));
    for n in 2..12 {
        assert_eq!(delivered(&sim, 1, n), 1, "packet {n} reached b");
    }
    let to_attacker: Vec<u8> = sim.wire_log[sent_before..]
        .iter()
        .filter(|(_, d)| d.to == attacker)
        .map(|(_, d)| d.payload[0])
        .collect();
    assert!(
        to_attacker.iter().all(|b| *b == 0x10),
        "only the stage 2 went to the replayer: {to_attacker:x?}"
    );
    let t = sim.nodes[0]
        .engine
        .tunnel_to(&B_VPN.parse().expect("ip"))
        .expect("a has a tunnel to b");
    assert_eq!(t.remote(), Some(b_addr));
    assert!(t.is_confirmed());
    // The replayed stage 1's tunnel is never confirmed and expires.
    sim.run_for(Duration::from_secs(15));
    assert!(
        sim.nodes[0]
            .engine
            .hostmap()
            .tunnels()
            .all(|t| t.remote() != Some(attacker)),
        "the replayer's tunnel is gone"
    );
}

/// Alone, the replayed copy's tunnel is not "a tunnel to the host" either: traffic for the host
/// starts our own handshake rather than going to the replayer, and the copy expires unconfirmed.
#[test]
fn a_lone_replayed_stage1_tunnel_expires_and_carries_nothing() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = pair(62, &ca);
    let (a_addr, b_addr): (SocketAddr, SocketAddr) =
        (A_ADDR.parse().expect("addr"), B_ADDR.parse().expect("addr"));
    sim.inside(1, &pkt(B_VPN, A_VPN, 1));
    sim.run_for(Duration::from_secs(1));
    let stage1 = sim
        .wire_log
        .iter()
        .find(|(_, d)| {
            d.from == b_addr && d.payload.len() > 16 && d.payload[0] == 0x10 && d.payload[15] == 1
        })
        .map(|(_, d)| d.payload.clone())
        .expect("captured stage 1 of b");
    // A restarts (it forgets B); B is gone from the network for the rest of the test.
    sim.restart_node(
        0,
        static_config(&[(B_VPN, B_ADDR)]),
        ca.pki("a", "10.42.0.1/16"),
    );
    sim.blocked.push((b_addr.ip(), a_addr.ip()));
    let attacker: SocketAddr = "198.51.100.66:6666".parse().expect("addr");
    let sent_before = sim.wire_log.len();
    sim.inject(attacker, a_addr, stage1);
    sim.run_for(Duration::from_millis(50));
    assert_eq!(sim.nodes[0].engine.counts().0, 1, "a answered the copy");
    assert!(
        !sim.has_tunnel(0, B_VPN),
        "an unconfirmed answer is no tunnel to b"
    );
    let r = sim.inside(0, &pkt(A_VPN, B_VPN, 2));
    assert_eq!(r, InsideOutcome::Queued);
    sim.run_for(Duration::from_secs(15));
    assert!(
        sim.wire_log[sent_before..]
            .iter()
            .filter(|(_, d)| d.to == attacker)
            .all(|(_, d)| d.payload[0] == 0x10),
        "nothing but the stage 2 went to the replayer"
    );
    assert_eq!(
        sim.nodes[0].engine.counts().0,
        0,
        "the copy's tunnel expired"
    );
}
