//! Criterion benchmarks of the workers' per-packet path through the data table: seal a TUN packet
//! (route, firewall with a conntrack hit, counter, AES-GCM) and open it on the peer (replay
//! window, AES-GCM, firewall), 1,400-byte packets, between two engines with a tunnel up.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nebula_cert::{Curve, Version};
use nebula_core::dataplane::{FastInside, FastOutside};
use nebula_core::engine::EngineConfig;
use nebula_core::filter::{GroupFirewall, PacketFilter};
use nebula_core::firewall::{Firewall, FirewallConfig};
use nebula_core::sim::{rule_from_anyone, static_config, udp_packet, Sim, TestCa};
use proto::header::HEADER_LEN;

const A: &str = "192.0.2.1:4242";
const B: &str = "192.0.2.2:4242";

fn cfg_to(vpn: &str, addr: &str) -> EngineConfig {
    static_config(&[(vpn, addr)])
}

fn firewall(mine: &str) -> Box<dyn PacketFilter> {
    let any = rule_from_anyone("any", "any");
    let cfg = FirewallConfig {
        inbound: vec![any.clone()],
        outbound: vec![any],
        ..FirewallConfig::default()
    };
    let net = mine.parse().expect("net");
    Box::new(GroupFirewall::new(
        Firewall::new(&cfg, &[net], &[]).expect("firewall"),
    ))
}

fn bench(c: &mut Criterion) {
    let ca = TestCa::new("bench", Curve::Curve25519, Version::V1);
    let mut sim = Sim::new(3);
    let (na, nb) = ("10.42.0.1/16", "10.42.0.2/16");
    sim.add_node_with_filter(
        "a",
        A,
        cfg_to("10.42.0.2", B),
        ca.pki("a", na),
        firewall(na),
    );
    sim.add_node_with_filter(
        "b",
        B,
        cfg_to("10.42.0.1", A),
        ca.pki("b", nb),
        firewall(nb),
    );
    let (va, vb) = (
        "10.42.0.1".parse().expect("ip"),
        "10.42.0.2".parse().expect("ip"),
    );
    sim.inside(0, &udp_packet(va, vb, 5000, 6000, b"up"));
    sim.run_for(Duration::from_secs(1));
    sim.inside(1, &udp_packet(vb, va, 6000, 5000, b"up"));
    sim.run_for(Duration::from_millis(50));
    let ta = sim.nodes[0].table.clone().expect("a's table");
    let tb = sim.nodes[1].table.clone().expect("b's table");
    let now = sim.now;
    let from: SocketAddr = A.parse().expect("addr");
    let packet = udp_packet(va, vb, 5000, 6000, &[0x5a; 1372]);
    let mut buf = vec![0u8; HEADER_LEN + packet.len() + 64];

    let mut g = c.benchmark_group("dataplane");
    g.throughput(Throughput::Bytes(packet.len() as u64));
    g.bench_function("seal_inside 1400 B (route, firewall hit, aes-gcm)", |bch| {
        bch.iter(|| {
            buf[HEADER_LEN..HEADER_LEN + packet.len()].copy_from_slice(&packet);
            black_box(ta.seal_inside(now, &mut buf, packet.len()))
        })
    });
    g.bench_function("seal_inside + open_outside 1400 B", |bch| {
        bch.iter(|| {
            buf[HEADER_LEN..HEADER_LEN + packet.len()].copy_from_slice(&packet);
            let FastInside::Send { len, .. } = ta.seal_inside(now, &mut buf, packet.len()) else {
                panic!("seal refused");
            };
            let opened = tb.open_outside(now, from, &mut buf[..len]);
            assert!(matches!(opened, FastOutside::Tun { .. }));
            black_box(opened)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
