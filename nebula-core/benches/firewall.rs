//! Criterion benchmarks of the firewall's per-packet costs: classification, and one decision
//! against a 50-rule set with a conntrack miss (rules evaluated) and a conntrack hit.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ipnet::IpNet;
use nebula_core::firewall::{
    Conntrack, Firewall, FirewallConfig, Packet, PeerInfo, RuleConfig, PROTO_TCP, PROTO_UDP,
};

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// 50 inbound rules of the usual kinds: per-port group rules, host rules, CIDR rules, ranges,
/// CA-constrained rules, and an ICMP rule.
fn fifty_rules() -> Vec<RuleConfig> {
    let mut rules = Vec::new();
    for i in 0..15u16 {
        rules.push(RuleConfig {
            proto: s("tcp"),
            port: s(&(8000 + i).to_string()),
            groups: Some(vec![format!("svc-{i}"), "prod".into()]),
            ..RuleConfig::default()
        });
    }
    for i in 0..10u16 {
        rules.push(RuleConfig {
            proto: s("udp"),
            port: s(&(5000 + i * 10).to_string()),
            host: s(&format!("host-{i}")),
            ..RuleConfig::default()
        });
    }
    for i in 0..10u16 {
        rules.push(RuleConfig {
            proto: s("any"),
            port: s(&format!("{}-{}", 10000 + i * 100, 10000 + i * 100 + 50)),
            cidr: s(&format!("10.{i}.0.0/16")),
            ..RuleConfig::default()
        });
    }
    for i in 0..10u16 {
        rules.push(RuleConfig {
            proto: s("tcp"),
            port: s(&(9000 + i).to_string()),
            group: s("admin"),
            ca_name: s(&format!("ca-{i}")),
            ..RuleConfig::default()
        });
    }
    rules.push(RuleConfig {
        proto: s("icmp"),
        host: s("any"),
        ..RuleConfig::default()
    });
    rules.push(RuleConfig {
        proto: s("tcp"),
        port: s("22"),
        groups: Some(vec!["ops".into(), "oncall".into()]),
        ..RuleConfig::default()
    });
    rules.push(RuleConfig {
        proto: s("tcp"),
        port: s("443"),
        group: s("web"),
        local_cidr: s("10.128.0.0/16"),
        ..RuleConfig::default()
    });
    rules.push(RuleConfig {
        proto: s("udp"),
        port: s("fragment"),
        host: s("any"),
        ..RuleConfig::default()
    });
    rules.push(RuleConfig {
        proto: s("tcp"),
        port: s("443"),
        groups: Some(vec!["web".into(), "prod".into()]),
        ..RuleConfig::default()
    });
    assert_eq!(rules.len(), 50);
    rules
}

fn bench_firewall(c: &mut Criterion) {
    let cfg = FirewallConfig {
        inbound: fifty_rules(),
        outbound: vec![RuleConfig {
            proto: s("any"),
            port: s("any"),
            host: s("any"),
            ..RuleConfig::default()
        }],
        ..FirewallConfig::default()
    };
    let mine: Vec<IpNet> = vec!["10.128.0.1/16".parse().unwrap()];
    let fw = Firewall::new(&cfg, &mine, &[]).unwrap();

    let peer_nets: Vec<IpNet> = vec!["10.128.3.7/16".parse().unwrap()];
    let groups: Vec<String> = ["laptop", "prod", "web", "eng"]
        .iter()
        .map(|g| g.to_string())
        .collect();
    let peer = PeerInfo {
        vpn_networks: &peer_nets,
        unsafe_networks: &[],
        name: "laptop-17",
        groups: &groups,
        ca_name: "ca-main",
        ca_sha: "5f3c1c0e9d9b2e7d8f0a0c4e6b1d2a3f5e7c9b1d3f5a7c9e1b3d5f7a9c1e3b5d",
    };
    // Admitted by the last rule (tcp/443, groups web+prod).
    let allowed = Packet {
        local_addr: "10.128.0.1".parse().unwrap(),
        remote_addr: "10.128.3.7".parse().unwrap(),
        local_port: 443,
        remote_port: 51000,
        protocol: PROTO_TCP,
        fragment: false,
    };
    // Admitted by nothing: walks every table that could apply.
    let denied = Packet {
        local_port: 8005,
        protocol: PROTO_TCP,
        ..allowed
    };
    let now = Instant::now();

    let mut g = c.benchmark_group("firewall");
    g.measurement_time(Duration::from_secs(3));

    g.bench_function("decision_50_rules_conntrack_hit", |b| {
        let mut ct = Conntrack::new();
        fw.drop(&allowed, true, &peer, &mut ct, now).unwrap();
        b.iter(|| {
            black_box(fw.drop(black_box(&allowed), true, &peer, &mut ct, now)).unwrap();
        })
    });

    g.bench_function("decision_50_rules_conntrack_miss_admit", |b| {
        // Each decision misses conntrack, matches the rules and inserts the flow; clearing the
        // one-entry table keeps its capacity (no allocation) and is included in the figure.
        let mut ct = Conntrack::with_capacity(16);
        b.iter(|| {
            black_box(fw.drop(black_box(&allowed), true, &peer, &mut ct, now)).unwrap();
            ct.clear();
        })
    });

    g.bench_function("decision_50_rules_conntrack_miss_deny", |b| {
        let mut ct = Conntrack::new();
        b.iter(|| {
            black_box(fw.drop(black_box(&denied), true, &peer, &mut ct, now)).unwrap_err();
        })
    });

    g.bench_function("rules_match_50_rules", |b| {
        b.iter(|| black_box(fw.rules_match(black_box(&allowed), true, &peer)))
    });

    let mut v4 = vec![0u8; 40];
    v4[0] = 0x45;
    v4[9] = PROTO_TCP;
    v4[12..16].copy_from_slice(&[10, 128, 3, 7]);
    v4[16..20].copy_from_slice(&[10, 128, 0, 1]);
    v4[20..22].copy_from_slice(&51000u16.to_be_bytes());
    v4[22..24].copy_from_slice(&443u16.to_be_bytes());
    g.bench_function("classify_ipv4_tcp", |b| {
        b.iter(|| black_box(Packet::parse(black_box(&v4), true)).unwrap())
    });

    let mut v6 = vec![0u8; 56];
    v6[0] = 0x60;
    v6[6] = 0; // hop-by-hop, then UDP
    v6[8] = 0xfd;
    v6[24] = 0xfd;
    v6[40] = PROTO_UDP;
    v6[48..50].copy_from_slice(&5353u16.to_be_bytes());
    v6[50..52].copy_from_slice(&53u16.to_be_bytes());
    g.bench_function("classify_ipv6_udp_ext_header", |b| {
        b.iter(|| black_box(Packet::parse(black_box(&v6), true)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench_firewall);
criterion_main!(benches);
