//! Fuzz the data table's fast path and the engine's `handle_outside` (and `handle_inside`) after a
//! real handshake: arbitrary datagrams, datagrams carrying the live tunnel's index, and stage-1
//! lookalikes must never panic. Packets go to the table first and to the engine when it declines,
//! as in the node.
#![no_main]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use nebula_cert::{Curve, Version};
use nebula_core::dataplane::{FastInside, FastOutside};
use nebula_core::engine::{Engine, EngineConfig, Outputs};
use nebula_core::sim::{udp_packet, Sim, TestCa};

struct World {
    sim: Sim,
    index: u32,
}

fn world() -> World {
    let ca = TestCa::new("fuzz", Curve::Curve25519, Version::V1);
    let mut sim = Sim::new(1);
    let mut a = EngineConfig::default();
    a.static_host_map
        .insert("10.9.0.2".parse().expect("ip"), vec!["192.0.2.2:4242".parse().expect("addr")]);
    sim.add_node("a", "192.0.2.1:4242", a, ca.pki("a", "10.9.0.1/16"));
    sim.add_node("b", "192.0.2.2:4242", EngineConfig::default(), ca.pki("b", "10.9.0.2/16"));
    sim.inside(0, &udp_packet("10.9.0.1".parse().expect("ip"), "10.9.0.2".parse().expect("ip"), 1, 2, b"x"));
    sim.run_for(Duration::from_secs(1));
    let index = sim.nodes[1]
        .engine
        .tunnel_to(&"10.9.0.1".parse().expect("ip"))
        .map(|t| t.local_index)
        .expect("handshake in the fuzz world");
    World { sim, index }
}

thread_local! {
    static WORLD: RefCell<World> = RefCell::new(world());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    WORLD.with(|w| {
        let mut w = w.borrow_mut();
        let index = w.index;
        let now = w.sim.now;
        let from: SocketAddr = "192.0.2.1:4242".parse().expect("addr");
        let mut out = Outputs::default();
        let node = &mut w.sim.nodes[1];
        if let Some(t) = node.engine.data_table() {
            node.table = Some(t);
        }
        let table = node.table.clone();
        let engine = &mut node.engine;
        let outside = |engine: &mut Engine, d: &mut [u8], out: &mut Outputs| {
            if let Some(t) = &table {
                if t.open_outside(now, from, d) != FastOutside::Engine {
                    return;
                }
            }
            let _ = engine.handle_outside(now, from, d, out);
        };
        match mode % 4 {
            0 => {
                let mut d = rest.to_vec();
                outside(engine, &mut d, &mut out);
            }
            1 => {
                // A header naming the live tunnel, any type, then fuzz bytes.
                let mut d = vec![0x10 | (rest.first().copied().unwrap_or(1) & 0x0f), 0, 0, 0];
                d.extend_from_slice(&index.to_be_bytes());
                d.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 3]);
                d.extend_from_slice(rest.get(1..).unwrap_or(&[]));
                outside(engine, &mut d, &mut out);
            }
            2 => {
                // A stage-1 lookalike.
                let mut d = vec![0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
                d.extend_from_slice(rest);
                let _ = engine.handle_outside(now, from, &mut d, &mut out);
            }
            _ => {
                let mut buf = vec![0u8; rest.len() + 64];
                buf[16..16 + rest.len()].copy_from_slice(rest);
                let fast = table
                    .as_ref()
                    .map(|t| t.seal_inside(now, &mut buf, rest.len()))
                    .unwrap_or(FastInside::Engine);
                if fast == FastInside::Engine {
                    let _ = engine.handle_inside(now, &mut buf, rest.len(), &mut out);
                }
            }
        }
        let _ = engine.handle_timeout(now, &mut out);
    });
});
