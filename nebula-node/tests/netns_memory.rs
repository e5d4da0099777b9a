//! Resident memory of our daemon holding 1,000 idle tunnels (target: under 64 MiB). The peers are
//! 1,000 sans-IO engines in this test process, sharing one UDP socket inside the namespace.
#![cfg(feature = "netns")]

mod support;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nebula_cert::{keys, Curve, Version};
use nebula_core::engine::{Engine, EngineConfig, Outputs};
use nebula_core::filter::AllowAll;
use nebula_core::sim::TestCa;
use proto::prost::Message as _;
use rand::SeedableRng;
use support::*;

const PEERS: usize = 1000;
const HUB_VPN: &str = "10.120.0.1";

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Enter the namespace `ns` on this thread (sockets made afterwards live there).
fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns file");
    // SAFETY: setns on a valid namespace fd; affects only this thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns failed");
}

#[test]
fn a_thousand_idle_tunnels_fit_in_64_mib() {
    let mut lab = Lab::new("mem");
    let ns = lab.public_host("hub", "192.0.2.1");
    let ca = TestCa::new("mem-ca", Curve::Curve25519, Version::V1);
    let dir = lab.dir.path().to_path_buf();
    let (hub_cert, hub_key) = ca.host("hub", &format!("{HUB_VPN}/16"), &[]);
    std::fs::write(dir.join("ca.crt"), ca.cert.marshal_pem()).expect("ca");
    std::fs::write(dir.join("hub.crt"), hub_cert.marshal_pem()).expect("crt");
    std::fs::write(
        dir.join("hub.key"),
        keys::marshal_private_key(Curve::Curve25519, &hub_key),
    )
    .expect("key");
    let idx = lab.start_node(&ns, &static_node("hub", &dir, &[]), &our_nebula());
    std::thread::sleep(Duration::from_millis(500));
    let pid = lab.pid(idx);
    let before = rss_kib(pid);

    // The peers run in a thread inside the namespace, on one socket.
    let ns2 = ns.clone();
    let up = std::thread::spawn(move || {
        enter(&ns2);
        let sock = UdpSocket::bind("192.0.2.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let hub: SocketAddr = "192.0.2.1:4242".parse().expect("addr");
        let hub_vpn: IpAddr = HUB_VPN.parse().expect("ip");
        let now = Instant::now();
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut engines = Vec::with_capacity(PEERS);
        for i in 0..PEERS {
            let net = format!("10.120.{}.{}/16", 1 + i / 250, 1 + i % 250);
            let mut cfg = EngineConfig::default();
            cfg.static_host_map.insert(hub_vpn, vec![hub]);
            let e = Engine::new(
                cfg,
                ca.pki(&format!("p{i}"), &net),
                Box::new(AllowAll),
                Box::new(rand::rngs::StdRng::seed_from_u64(i as u64)),
                now,
                unix,
            );
            engines.push(e);
        }
        // Stage 1 is in the clear: its payload names the initiator's index, which the hub's
        // answers carry in their header.
        let mut by_index: HashMap<u32, usize> = HashMap::new();
        let mut buf = vec![0u8; 9001];
        // Fifty handshakes at a time, so none times out while the others are served.
        for chunk in 0..PEERS.div_ceil(50) {
            let range = chunk * 50..((chunk + 1) * 50).min(PEERS);
            for i in range.clone() {
                let mut out = Outputs::default();
                engines[i].send_test_request(Instant::now(), hub_vpn, b"hi", &mut out);
                for t in out.transmits {
                    if let Some(body) = t.payload.get(16 + 64..) {
                        if let Ok(h) = proto::handshake::NebulaHandshake::decode(body) {
                            if let Some(d) = h.details {
                                by_index.insert(d.initiator_index, i);
                            }
                        }
                    }
                    let _ = sock.send_to(&t.payload, t.to);
                }
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut last_timers = Instant::now();
            while Instant::now() < deadline
                && engines[range.clone()].iter().any(|e| e.counts().0 == 0)
            {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let index = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                    if let Some(&c) = by_index.get(&index) {
                        let mut out = Outputs::default();
                        let _ = engines[c].handle_outside(
                            Instant::now(),
                            from,
                            &mut buf[..n],
                            &mut out,
                        );
                        for t in out.transmits {
                            let _ = sock.send_to(&t.payload, t.to);
                        }
                    }
                }
                if last_timers.elapsed() > Duration::from_millis(100) {
                    last_timers = Instant::now();
                    // Retries re-send the same stage 1 (same index): the map stays right. A
                    // handshake that timed out (a loaded machine) is started again.
                    for i in range.clone() {
                        let mut out = Outputs::default();
                        let e = &mut engines[i];
                        e.handle_timeout(Instant::now(), &mut out);
                        if e.counts() == (0, 0) {
                            e.send_test_request(Instant::now(), hub_vpn, b"hi", &mut out);
                        }
                        for t in out.transmits {
                            if t.payload.get(15) == Some(&1) {
                                if let Some(body) = t.payload.get(16 + 64..) {
                                    if let Ok(h) = proto::handshake::NebulaHandshake::decode(body) {
                                        if let Some(d) = h.details {
                                            by_index.insert(d.initiator_index, i);
                                        }
                                    }
                                }
                            }
                            let _ = sock.send_to(&t.payload, t.to);
                        }
                    }
                }
            }
            let got = engines[range.clone()]
                .iter()
                .filter(|e| e.counts().0 > 0)
                .count();
            if got < range.len() {
                println!("chunk {chunk}: only {got} tunnels up");
            }
        }
        let up = engines.iter().filter(|e| e.counts().0 > 0).count();
        up
    });
    let up = up.join().expect("peer thread");
    assert!(
        up >= PEERS * 95 / 100,
        "only {up} of {PEERS} tunnels came up\n{}",
        lab.log("hub.log")
    );
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(pid);
    println!("hub RSS: {before} KiB at start, {after} KiB with {up} tunnels");
    assert!(after < 64 * 1024, "RSS {after} KiB with {up} tunnels");
    assert!(lab.log("hub.log").matches("tunnel up").count() >= up * 95 / 100);
}
