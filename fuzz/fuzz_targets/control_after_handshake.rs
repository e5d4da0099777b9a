//! Fuzz the control plane behind the AEAD: relay control (CreateRelayRequest/Response), test,
//! closeTunnel messages and relay frames, sealed on live tunnels of a relay R, host H and host V.
#![no_main]

#[path = "common/tunnel.rs"]
mod tunnel;

use std::cell::RefCell;
use std::net::IpAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use nebula_cert::{Curve, Version};
use nebula_core::engine::{EngineConfig, Outputs};
use nebula_core::sim::{static_config, udp_packet, Sim, TestCa};
use proto::control::{AddrEncoding, NebulaControl};
use proto::header::MessageType;
use proto::prost::Message;

const R: usize = 0;
const H: usize = 1;
const V: usize = 2;
const VPN: [&str; 3] = ["10.42.0.3", "10.42.0.8", "10.42.0.9"];
const ADDR: [&str; 3] = ["192.0.2.3:4242", "192.0.2.8:4242", "192.0.2.9:4242"];

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// A relay control message from fields the fuzzer picks (ends from a small set of addresses).
fn control(kind: u8, init: u32, resp: u32, ends: u8) -> Vec<u8> {
    let pick = |i: u8| match i % 5 {
        3 => ip("10.42.0.77"),
        4 => ip("fd00::1"),
        i => ip(VPN[usize::from(i)]),
    };
    let mut c = NebulaControl {
        msg_type: i32::from(kind % 4),
        initiator_relay_index: init,
        responder_relay_index: resp,
        ..NebulaControl::default()
    };
    let encoding = if ends & 0x80 != 0 {
        AddrEncoding::V2
    } else {
        AddrEncoding::V1
    };
    let _ = c.set_relay_ends(pick(ends), pick(ends >> 3), encoding);
    c.encode_to_vec()
}

/// Relay R (`am_relay`), H and V (V names R in `relay.relays`); tunnels H-R, V-R and H-V are up,
/// and H has asked R for a relay to V.
fn world() -> Sim {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = Sim::new(7);
    let r = EngineConfig {
        am_relay: true,
        use_relays: false,
        ..static_config(&[])
    };
    let h = static_config(&[(VPN[R], ADDR[R]), (VPN[V], ADDR[V])]);
    let v = EngineConfig {
        relays: vec![ip(VPN[R])],
        ..static_config(&[(VPN[R], ADDR[R])])
    };
    for (i, cfg) in [r, h, v].into_iter().enumerate() {
        let name = ["r", "h", "v"][i];
        sim.add_node(name, ADDR[i], cfg, ca.pki(name, &format!("{}/16", VPN[i])));
    }
    for (from, to) in [(H, R), (V, R), (H, V)] {
        let hello = udp_packet(
            VPN[from].parse().expect("v4"),
            VPN[to].parse().expect("v4"),
            1,
            2,
            b"hi",
        );
        sim.inside(from, &hello);
    }
    sim.run_for(Duration::from_secs(1));
    deliver(
        &mut sim,
        H,
        R,
        MessageType::Control,
        0,
        &control(1, 77, 0, 1 | (2 << 3)),
    );
    sim.run_for(Duration::from_secs(1));
    sim
}

/// Seal `payload` on `from`'s tunnel to `to` and hand it to `to`; what `to` answers goes out on
/// the simulated network.
fn deliver(sim: &mut Sim, from: usize, to: usize, mt: MessageType, st: u8, payload: &[u8]) {
    let Some(mut d) = sim.nodes[from]
        .engine
        .tunnel_to(&ip(VPN[to]))
        .and_then(|t| tunnel::seal(t, mt, st, payload))
    else {
        return;
    };
    handle(sim, from, to, &mut d);
}

fn handle(sim: &mut Sim, from: usize, to: usize, d: &mut [u8]) {
    let now = sim.now;
    let addr = sim.node_addr(from);
    let mut out = Outputs::default();
    let _ = sim.nodes[to].engine.handle_outside(now, addr, d, &mut out);
    sim.dispatch(to, out);
}

thread_local! {
    static WORLD: RefCell<Sim> = RefCell::new(world());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    WORLD.with(|w| {
        let mut sim = w.borrow_mut();
        let all_up = [(H, R), (V, R), (H, V)]
            .iter()
            .all(|&(a, b)| sim.has_tunnel(a, VPN[b]) && sim.has_tunnel(b, VPN[a]));
        if !all_up {
            *sim = world();
        }
        // Who sends to whom: H -> R, V -> R, R -> V, H -> V.
        let (from, to) = [(H, R), (V, R), (R, V), (H, V)][usize::from(mode >> 6)];
        match mode & 7 {
            0 => deliver(&mut sim, from, to, MessageType::Control, 0, rest),
            1 => {
                let [kind, ends, i0, i1, i2, i3, r0, r1, ..] = *rest else {
                    return;
                };
                let c = control(
                    kind,
                    u32::from_be_bytes([i0, i1, i2, i3]),
                    u32::from_be_bytes([0, 0, r0, r1]),
                    ends,
                );
                deliver(&mut sim, from, to, MessageType::Control, 0, &c);
            }
            2 => {
                let Some((&st, payload)) = rest.split_first() else {
                    return;
                };
                deliver(&mut sim, from, to, MessageType::Test, st, payload);
            }
            3 => deliver(&mut sim, from, to, MessageType::CloseTunnel, 0, rest),
            4 | 5 => {
                // A relay frame on the relay H asked for, or on an index the fuzzer names.
                let relay = sim.nodes[to]
                    .engine
                    .relays()
                    .find(ip(VPN[from]), ip(VPN[[V, H][usize::from(mode & 1)]]))
                    .map(|r| r.local_index);
                let (index, inner) = match relay {
                    Some(i) if mode & 8 == 0 => (i, rest),
                    _ => {
                        let [a, b, c, d, inner @ ..] = rest else {
                            return;
                        };
                        (u32::from_be_bytes([*a, *b, *c, *d]), inner)
                    }
                };
                let Some(mut d) = sim.nodes[from]
                    .engine
                    .tunnel_to(&ip(VPN[to]))
                    .and_then(|t| tunnel::seal_relay(t, index, inner))
                else {
                    return;
                };
                handle(&mut sim, from, to, &mut d);
            }
            _ => {
                // Any type and subtype, sealed.
                let [mt, st, payload @ ..] = rest else {
                    return;
                };
                let mt = match mt % 8 {
                    0 => MessageType::Handshake,
                    1 => MessageType::Message,
                    2 => MessageType::RecvError,
                    3 => MessageType::LightHouse,
                    4 => MessageType::Test,
                    5 => MessageType::CloseTunnel,
                    6 => MessageType::Control,
                    _ => MessageType::Unknown(*mt),
                };
                deliver(&mut sim, from, to, mt, *st, payload);
            }
        }
        // Let the relays' and tunnels' timers act on it, and the answers cross the network.
        if mode & 0x20 != 0 {
            sim.run_for(Duration::from_millis(200));
        }
    });
});
