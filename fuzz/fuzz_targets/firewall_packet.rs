//! Fuzz target: firewall packet classification of arbitrary bytes in both directions, a decision
//! against a fixed small rule set (shared conntrack, advancing fake time) and the reject builder.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use nebula_core::firewall::{
    build_reject, Action, Conntrack, Firewall, FirewallConfig, Packet, PeerInfo, RuleConfig,
    MAX_REJECT_PACKET_SIZE,
};

struct State {
    fw: Firewall,
    start: Instant,
    conntrack: Mutex<Conntrack>,
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn rule(proto: &str, port: &str) -> RuleConfig {
    RuleConfig {
        proto: s(proto),
        port: s(port),
        ..RuleConfig::default()
    }
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let cfg = FirewallConfig {
            inbound: vec![
                RuleConfig {
                    host: s("any"),
                    ..rule("icmp", "any")
                },
                RuleConfig {
                    groups: Some(vec!["web".into(), "prod".into()]),
                    ..rule("tcp", "443")
                },
                RuleConfig {
                    cidr: s("10.0.0.0/8"),
                    ..rule("udp", "53")
                },
                RuleConfig {
                    host: s("fuzz-peer"),
                    ..rule("any", "1000-2000")
                },
                RuleConfig {
                    ca_name: s("fuzz-ca"),
                    ..rule("udp", "fragment")
                },
                RuleConfig {
                    local_cidr: s("fd00::/8"),
                    ..rule("tcp", "22")
                },
            ],
            outbound: vec![RuleConfig {
                host: s("any"),
                ..rule("any", "any")
            }],
            inbound_action: Action::Reject,
            udp_timeout: Duration::from_secs(30),
            ..FirewallConfig::default()
        };
        // Prefix length 0: every address is inside our VPN networks and our unsafe networks.
        let mine: Vec<IpNet> = vec!["10.0.0.1/0".parse().unwrap(), "fd00::1/0".parse().unwrap()];
        let unsafe_nets: Vec<IpNet> = vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()];
        State {
            fw: Firewall::new(&cfg, &mine, &unsafe_nets).expect("fixed rule set is valid"),
            start: Instant::now(),
            conntrack: Mutex::new(Conntrack::new()),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let st = state();
    static TICK: AtomicU64 = AtomicU64::new(0);
    let now = st.start + Duration::from_secs(TICK.fetch_add(1, Ordering::Relaxed) % 100_000);

    let incoming = Packet::parse(data, true);
    let outgoing = Packet::parse(data, false);
    // Direction only swaps the orientation, never the verdict.
    match (&incoming, &outgoing) {
        (Ok(i), Ok(o)) => {
            assert_eq!(i.local_addr, o.remote_addr);
            assert_eq!(i.remote_addr, o.local_addr);
            assert_eq!(i.protocol, o.protocol);
            assert_eq!(i.fragment, o.fragment);
            if i.fragment {
                assert_eq!((i.local_port, i.remote_port), (0, 0));
            }
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("direction changed the verdict: {incoming:?} vs {outgoing:?}"),
    }

    if let Ok(pkt) = incoming {
        let peer_net = [IpNet::from(pkt.remote_addr)];
        let groups = ["web".to_string(), "prod".to_string()];
        let peer = PeerInfo {
            vpn_networks: &peer_net,
            unsafe_networks: &[],
            name: "fuzz-peer",
            groups: &groups,
            ca_name: "fuzz-ca",
            ca_sha: "00",
        };
        let mut ct = st.conntrack.lock().unwrap_or_else(|e| e.into_inner());
        if ct.len() > 50_000 {
            ct.clear();
        }
        let verdict = st.fw.drop(&pkt, true, &peer, &mut ct, now);
        if verdict.is_ok() {
            // An admitted packet is tracked, so the same flow passes again at once.
            assert!(ct.contains(&pkt, now));
            assert_eq!(st.fw.drop(&pkt, true, &peer, &mut ct, now), Ok(()));
        }
        let out_pkt = outgoing.expect("checked above");
        let _ = st.fw.drop(&out_pkt, false, &peer, &mut ct, now);
    }

    let mut out = [0u8; MAX_REJECT_PACKET_SIZE];
    if let Some(n) = build_reject(data, &mut out) {
        assert!(n <= MAX_REJECT_PACKET_SIZE);
        let reply = &out[..n];
        // A reject reply is itself a well-formed packet going back to the sender.
        let r = Packet::parse(reply, false).expect("reject reply classifies");
        if let Ok(orig) = Packet::parse(data, true) {
            assert_eq!(r.remote_addr, orig.remote_addr);
            assert_eq!(r.local_addr, orig.local_addr);
        }
    }
});
