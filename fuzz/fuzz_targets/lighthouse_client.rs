//! Fuzz the lighthouse client: after a real handshake between a host and its lighthouse, the
//! fuzzer's bytes are sealed as lightHouse messages on that tunnel and delivered to the host.
#![no_main]

#[path = "common/tunnel.rs"]
mod tunnel;

use std::cell::RefCell;
use std::net::IpAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use nebula_cert::{Curve, Version};
use nebula_core::engine::{EngineConfig, Outputs};
use nebula_core::sim::{udp_packet, Sim, TestCa};
use proto::header::MessageType;

const HOST: usize = 0;
const LIGHTHOUSE: usize = 1;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// Host 10.9.0.1 with lighthouse 10.9.0.2 (a static host map entry), tunnel up.
fn world() -> Sim {
    let ca = TestCa::new("fuzz", Curve::Curve25519, Version::V1);
    let mut sim = Sim::new(1);
    let mut host = EngineConfig::default();
    host.static_host_map.insert(
        ip("10.9.0.2"),
        vec!["192.0.2.2:4242".parse().expect("addr")],
    );
    host.lighthouses = vec![ip("10.9.0.2")];
    let lh = EngineConfig {
        am_lighthouse: true,
        ..EngineConfig::default()
    };
    sim.add_node(
        "host",
        "192.0.2.1:4242",
        host,
        ca.pki("host", "10.9.0.1/16"),
    );
    sim.add_node("lh", "192.0.2.2:4242", lh, ca.pki("lh", "10.9.0.2/16"));
    let hello = udp_packet(
        "10.9.0.1".parse().expect("v4"),
        "10.9.0.2".parse().expect("v4"),
        1,
        2,
        b"x",
    );
    sim.inside(HOST, &hello);
    sim.run_for(Duration::from_secs(1));
    assert!(
        sim.has_tunnel(HOST, "10.9.0.2"),
        "handshake in the fuzz world"
    );
    sim
}

thread_local! {
    static WORLD: RefCell<Sim> = RefCell::new(world());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // Mode bit 0: `rest` is the whole NebulaMeta; else type byte + NebulaMetaDetails bytes, framed
    // here so the fuzzer spends its time on the details.
    let payload = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let Some((&kind, details)) = rest.split_first() else {
            return;
        };
        let mut p = vec![0x08, kind & 0x7f, 0x12];
        let mut len = details.len();
        while len >= 0x80 {
            p.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        p.push(len as u8);
        p.extend_from_slice(details);
        p
    };
    WORLD.with(|w| {
        let mut sim = w.borrow_mut();
        if !sim.has_tunnel(LIGHTHOUSE, "10.9.0.1") || !sim.has_tunnel(HOST, "10.9.0.2") {
            *sim = world();
        }
        let now = sim.now;
        let from = sim.node_addr(LIGHTHOUSE);
        let Some(mut d) = sim.nodes[LIGHTHOUSE]
            .engine
            .tunnel_to(&ip("10.9.0.1"))
            .and_then(|t| tunnel::seal(t, MessageType::LightHouse, 0, &payload))
        else {
            return;
        };
        let mut out = Outputs::default();
        let engine = &mut sim.nodes[HOST].engine;
        let _ = engine.handle_outside(now, from, &mut d, &mut out);
        // Mode bit 1: let the timers act on what was learned (queries, punches, handshakes).
        if mode & 2 != 0 {
            let later = now + Duration::from_millis(u64::from(mode >> 2) * 100);
            let _ = engine.handle_timeout(later, &mut out);
            sim.now = later; // time only moves forward
        }
    });
});
