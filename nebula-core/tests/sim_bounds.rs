//! Simulation tests of the engine's memory bounds: what a flood of inside packets towards hosts
//! without a tunnel can make the engine hold, and that it is given back.

use std::net::Ipv4Addr;
use std::time::Duration;

use nebula_cert::{Curve, Version};
use nebula_core::engine::{DropReason, EngineConfig, InsideOutcome};
use nebula_core::sim::{udp_packet, Sim, TestCa};

#[test]
fn packets_queued_behind_handshakes_stay_within_the_byte_budget_and_are_freed() {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let budget = 1024 * 1024;
    let cfg = EngineConfig {
        max_queued_bytes: budget,
        ..EngineConfig::default()
    };
    let mut sim = Sim::new(1);
    let a = sim.add_node("a", "192.0.2.1:4242", cfg, ca.pki("a", "10.42.0.1/16"));
    // 200 hosts nobody can reach, 100 full-size packets each: 26 MB if nothing bounded it.
    let me = Ipv4Addr::new(10, 42, 0, 1);
    let (mut queued, mut over_budget) = (0u32, 0u32);
    for host in 0..200u16 {
        let to = Ipv4Addr::new(10, 42, 1 + (host >> 8) as u8, host as u8);
        for n in 0..100u16 {
            let p = udp_packet(me, to, 1000 + n, 2000, &[0u8; 1272]);
            match sim.inside(a, &p) {
                InsideOutcome::Queued => queued += 1,
                InsideOutcome::Dropped(DropReason::HandshakeQueueBytes) => over_budget += 1,
                other => panic!("host {host} packet {n}: {other:?}"),
            }
        }
    }
    let engine = &sim.nodes[a].engine;
    assert!(
        engine.queued_bytes() <= budget,
        "{} bytes queued, budget {budget}",
        engine.queued_bytes()
    );
    assert!(queued > 0, "packets are still queued up to the budget");
    assert!(over_budget > 0);
    assert_eq!(engine.queue_budget_drops(), u64::from(over_budget));
    // The handshakes time out (nobody answers): every queued byte is given back.
    sim.run_for(Duration::from_secs(30));
    let engine = &sim.nodes[a].engine;
    assert_eq!(engine.pending_handshakes(), 0);
    assert_eq!(engine.queued_bytes(), 0);
}
