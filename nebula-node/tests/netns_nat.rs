//! NAT traversal and relays in network namespaces (root): direct through cone NATs (nothing crosses
//! the lighthouse), relayed through symmetric/blocked ones, mixed with Go 1.6.1/1.11.0, roaming.
#![cfg(all(feature = "netns", feature = "interop"))]

mod support;

use std::time::{Duration, Instant};

use nebula_cert::{Curve, Version};
use support::*;

const LH_VPN: &str = "10.77.0.1";
const A_VPN: &str = "10.77.0.2";
const B_VPN: &str = "10.77.0.3";
const LH_IP: &str = "192.0.2.1";

/// How the two NAT routers behave.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Nats {
    /// Plain masquerade: hole punching works.
    Cone,
    /// `MASQUERADE --random-fully` on both routers: a new random port per flow, no punching.
    Symmetric,
    /// Plain masquerade, but each router drops UDP towards the other router's public address.
    Blocked,
}

struct NatMesh {
    lab: Lab,
    lh: String,
    a: String,
    b: String,
    procs: Vec<(String, usize)>,
}

impl NatMesh {
    fn logs(&self) -> String {
        let mut s = String::new();
        for (name, _) in &self.procs {
            let log = self.lab.log(&format!("{name}.log"));
            // The tail is what matters; whole debug logs drown the assertion message.
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            s.push_str(&format!("----- {name}.log (last 60 lines) -----\n"));
            for l in tail.into_iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

/// Lighthouse on the wan at 192.0.2.1; A behind router 192.0.2.2, B behind router 192.0.2.3.
/// `relay`: the lighthouse is also a relay and both nodes list it in `relay.relays`.
fn nat_mesh(tag: &str, imps: [Impl; 3], nats: Nats, relay: bool) -> NatMesh {
    let mut lab = Lab::new(tag);
    let lh = lab.public_host("lh", LH_IP);
    let symmetric = nats == Nats::Symmetric;
    let (a, ra) = lab.natted_host("a", "192.0.2.2", "192.168.41", symmetric);
    let (b, rb) = lab.natted_host("b", "192.0.2.3", "192.168.42", symmetric);
    // Like a home router's firewall: unsolicited inbound packets are dropped before conntrack
    // confirms an entry for them. (Otherwise the router keeps an entry for the peer's first,
    // unanswered handshake, and its own host's punch towards that peer collides with it and gets
    // a remapped source port.)
    for r in [&ra, &rb] {
        must(&format!(
            "ip netns exec {r} iptables -A INPUT -i eth0 -m conntrack --ctstate NEW -j DROP"
        ));
    }
    if nats == Nats::Blocked {
        // Each router refuses to forward UDP to the other router (but talks to the lighthouse).
        must(&format!(
            "ip netns exec {ra} iptables -I FORWARD -o eth0 -p udp -d 192.0.2.3 -j DROP"
        ));
        must(&format!(
            "ip netns exec {rb} iptables -I FORWARD -o eth0 -p udp -d 192.0.2.2 -j DROP"
        ));
    }
    let pki = Pki::new(Version::V1, Curve::Curve25519);
    let dir = lab.dir.path().to_path_buf();
    let hosts = [
        ("lh", LH_VPN, lh.clone(), imps[0], true),
        ("a", A_VPN, a.clone(), imps[1], false),
        ("b", B_VPN, b.clone(), imps[2], false),
    ];
    for (name, vpn, _, _, _) in &hosts {
        pki.host(&dir, name, &format!("{vpn}/16"), &[name]);
    }
    let mut procs = Vec::new();
    for (name, _, ns, imp, am_lh) in hosts {
        let mut cfg = node_config(&lighthouse_mesh_node(
            name,
            &dir,
            am_lh,
            (LH_VPN, "192.0.2.1:4242"),
            "aes",
        ));
        if relay {
            if am_lh {
                cfg.push_str("relay:\n  am_relay: true\n");
            } else {
                cfg.push_str(&format!(
                    "relay:\n  relays:\n    - \"{LH_VPN}\"\n  use_relays: true\n"
                ));
            }
        }
        let path = lab.write(&format!("{name}.yml"), &cfg);
        let idx = lab.spawn(&ns, &imp.cmd(&path), &format!("{name}.log"));
        procs.push((name.to_string(), idx));
    }
    NatMesh {
        lab,
        lh,
        a,
        b,
        procs,
    }
}

/// A packet capture on `ns`'s eth0 (UDP only), stopped and summarised by [`Capture::stop`].
struct Capture {
    idx: usize,
    file: std::path::PathBuf,
}

impl Capture {
    fn start(lab: &mut Lab, ns: &str, name: &str) -> Capture {
        let file = lab.path(&format!("{name}.pcap"));
        let idx = lab.spawn(
            ns,
            &format!("tcpdump -i eth0 -n -U -w {} udp", file.display()),
            &format!("{name}.tcpdump.log"),
        );
        // tcpdump needs a moment before it sees packets.
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end
            && !lab
                .log(&format!("{name}.tcpdump.log"))
                .contains("listening on")
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        Capture { idx, file }
    }

    /// Stop; returns (UDP frames seen, tunnelled data in full-size datagram equivalents).
    /// Data is counted in bytes (frames over 600 bytes, divided by 1,400): with UDP GRO the veth
    /// may hand the capture one coalesced frame for many datagrams.
    fn stop(self, lab: &mut Lab) -> (usize, usize) {
        lab.kill(self.idx, "INT");
        let _ = lab.wait_exit(self.idx, Duration::from_secs(5));
        let data = std::fs::read(&self.file).unwrap_or_default();
        let (mut frames, mut big_bytes) = (0usize, 0usize);
        let mut off = 24;
        while off + 16 <= data.len() {
            let field = |i: usize| {
                u32::from_le_bytes([
                    data[off + i],
                    data[off + i + 1],
                    data[off + i + 2],
                    data[off + i + 3],
                ]) as usize
            };
            let (incl, orig) = (field(8), field(12));
            off += 16 + incl;
            frames += 1;
            if orig > 600 {
                big_bytes += orig;
            }
        }
        (frames, big_bytes / 1400)
    }
}

/// Ping both ways, then move 4 MiB each way over TCP while capturing on the lighthouse.
/// Returns (seconds until the first A -> B ping answered, big datagrams the lighthouse saw).
fn connect_and_transfer(m: &mut NatMesh, label: &str) -> (f64, usize) {
    let (a, b, lh) = (m.a.clone(), m.b.clone(), m.lh.clone());
    assert!(
        m.lab.wait_ping(&a, LH_VPN, Duration::from_secs(15)),
        "{label}: a -> lighthouse\n{}",
        m.logs()
    );
    assert!(
        m.lab.wait_ping(&b, LH_VPN, Duration::from_secs(15)),
        "{label}: b -> lighthouse\n{}",
        m.logs()
    );
    let t0 = Instant::now();
    assert!(
        m.lab.wait_ping(&a, B_VPN, Duration::from_secs(25)),
        "{label}: a -> b\n{}",
        m.logs()
    );
    let first = t0.elapsed().as_secs_f64();
    assert!(
        m.lab.wait_ping(&b, A_VPN, Duration::from_secs(10)),
        "{label}: b -> a\n{}",
        m.logs()
    );
    // Give a relayed tunnel its chance to move to a direct path (probe after the punch delay).
    std::thread::sleep(Duration::from_secs(3));
    let cap = Capture::start(&mut m.lab, &lh, "lh");
    let t1 = Instant::now();
    assert!(
        m.lab.tcp_transfer(&a, &b, B_VPN, 5001, 4),
        "{label}: tcp a -> b\n{}",
        m.logs()
    );
    assert!(
        m.lab.tcp_transfer(&b, &a, A_VPN, 5002, 4),
        "{label}: tcp b -> a\n{}",
        m.logs()
    );
    let secs = t1.elapsed().as_secs_f64();
    let (udp, big) = cap.stop(&mut m.lab);
    eprintln!(
        "{label}: first a->b ping after {first:.2} s; 2 x 4 MiB in {secs:.1} s; \
         lighthouse saw {udp} UDP datagrams, {big} of them > 600 bytes"
    );
    (first, big)
}

fn expect_direct(imps: [Impl; 3], tag: &str, label: &str) {
    expect_direct_with(imps, tag, false, label)
}

fn expect_direct_with(imps: [Impl; 3], tag: &str, relay: bool, label: &str) {
    let mut m = nat_mesh(tag, imps, Nats::Cone, relay);
    let (_, big) = connect_and_transfer(&mut m, label);
    // 8 MiB of TCP is ~6500 full-size datagrams each way; none may cross the lighthouse.
    assert!(
        big < 20,
        "{label}: {big} data-sized datagrams passed the lighthouse\n{}",
        m.logs()
    );
}

fn expect_relayed(imps: [Impl; 3], tag: &str, nats: Nats, label: &str) {
    let mut m = nat_mesh(tag, imps, nats, true);
    let (_, big) = connect_and_transfer(&mut m, label);
    // Each data datagram crosses the relay's interface twice (in and out).
    assert!(
        big > 6000,
        "{label}: only {big} data-sized datagrams passed the relay\n{}",
        m.logs()
    );
}

#[test]
fn direct_through_nats_ours_everywhere() {
    expect_direct(
        [Impl::Ours, Impl::Ours, Impl::Ours],
        "nd",
        "direct: ours lh, ours a, ours b",
    );
}

#[test]
fn direct_through_nats_go_lighthouse_our_nodes() {
    expect_direct(
        [Impl::Go161, Impl::Ours, Impl::Ours],
        "ngl",
        "direct: go1.6.1 lh, ours a, ours b",
    );
}

#[test]
fn direct_through_nats_our_lighthouse_go_nodes() {
    expect_direct(
        [Impl::Ours, Impl::Go1110, Impl::Go161],
        "nog",
        "direct: ours lh, go1.11.0 a, go1.6.1 b",
    );
}

#[test]
fn direct_through_nats_go_and_ours() {
    expect_direct(
        [Impl::Go1110, Impl::Ours, Impl::Go161],
        "nmx",
        "direct: go1.11.0 lh, ours a, go1.6.1 b",
    );
}

#[test]
fn direct_wins_over_a_configured_relay() {
    // The relay answers first; the nodes then find the punched direct path and leave it.
    expect_direct_with(
        [Impl::Ours, Impl::Ours, Impl::Ours],
        "ndr",
        true,
        "direct despite a relay: ours relay, ours a, ours b",
    );
}

#[test]
fn direct_wins_over_a_configured_relay_go_peer() {
    expect_direct_with(
        [Impl::Ours, Impl::Ours, Impl::Go161],
        "ndg",
        true,
        "direct despite a relay: ours relay, ours a, go1.6.1 b",
    );
}

#[test]
fn relay_ours_symmetric_nats() {
    expect_relayed(
        [Impl::Ours, Impl::Ours, Impl::Ours],
        "nro",
        Nats::Symmetric,
        "relay: ours relay, ours a, ours b, symmetric NATs",
    );
}

#[test]
fn relay_go_1_6_1_relay_for_our_nodes() {
    expect_relayed(
        [Impl::Go161, Impl::Ours, Impl::Ours],
        "nrg",
        Nats::Blocked,
        "relay: go1.6.1 relay, ours a, ours b, UDP blocked between the NATs",
    );
}

#[test]
fn relay_ours_for_go_nodes() {
    expect_relayed(
        [Impl::Ours, Impl::Go1110, Impl::Go161],
        "nrm",
        Nats::Symmetric,
        "relay: ours relay, go1.11.0 a, go1.6.1 b, symmetric NATs",
    );
}

#[test]
fn relay_go_1_11_0_relay_ours_and_go() {
    expect_relayed(
        [Impl::Go1110, Impl::Ours, Impl::Go1110],
        "nrx",
        Nats::Symmetric,
        "relay: go1.11.0 relay, ours a, go1.11.0 b, symmetric NATs",
    );
}

/// A streams to B over TCP; half way B's underlay address changes. The transfer must finish
/// intact over the same tunnel (no new handshake), following B to its new address.
fn roam_mid_transfer(tag: &str, a_impl: Impl, label: &str) {
    let mut lab = Lab::new(tag);
    let lh = lab.public_host("lh", LH_IP);
    let a = lab.public_host("a", "192.0.2.2");
    let b = lab.public_host("b", "192.0.2.3");
    // Keep the new address when the old (primary) one is deleted.
    must(&format!(
        "ip netns exec {b} sysctl -qw net.ipv4.conf.all.promote_secondaries=1 && \
         ip netns exec {b} sysctl -qw net.ipv4.conf.eth0.promote_secondaries=1"
    ));
    let pki = Pki::new(Version::V1, Curve::Curve25519);
    let dir = lab.dir.path().to_path_buf();
    let hosts = [
        ("lh", LH_VPN, lh.clone(), Impl::Ours, true),
        ("a", A_VPN, a.clone(), a_impl, false),
        ("b", B_VPN, b.clone(), Impl::Ours, false),
    ];
    for (name, vpn, _, _, _) in &hosts {
        pki.host(&dir, name, &format!("{vpn}/16"), &[name]);
    }
    let mut procs = Vec::new();
    for (name, _, ns, imp, am_lh) in hosts {
        let cfg = node_config(&NodeOpts {
            name,
            dir: &dir,
            listen_port: 4242,
            am_lighthouse: am_lh,
            lighthouse: if am_lh {
                None
            } else {
                Some((LH_VPN, "192.0.2.1:4242"))
            },
            statics: vec![],
            cipher: "aes",
            dev: "nebula1",
            inbound: ALLOW_ALL_IN,
            punchy: true,
        });
        let path = lab.write(&format!("{name}.yml"), &cfg);
        let idx = lab.spawn(&ns, &imp.cmd(&path), &format!("{name}.log"));
        procs.push((name.to_string(), idx));
    }
    let m = NatMesh {
        lab,
        lh,
        a: a.clone(),
        b: b.clone(),
        procs,
    };
    let mut lab = m.lab;
    let logs = |lab: &Lab| {
        let mut s = String::new();
        for n in ["lh", "a", "b"] {
            s.push_str(&format!(
                "----- {n}.log -----\n{}\n",
                lab.log(&format!("{n}.log"))
            ));
        }
        s
    };
    assert!(
        lab.wait_ping(&a, B_VPN, Duration::from_secs(20)),
        "{label}: a -> b\n{}",
        logs(&lab)
    );
    // 12 MiB in 24 paced chunks (~5 s), so the move lands in the middle.
    let src = lab.path("roam-src.bin");
    let dst = lab.path("roam-dst.bin");
    must(&format!("head -c 12M /dev/urandom > {}", src.display()));
    let server = lab.spawn(
        &b,
        &format!("timeout 60 nc -l 5003 > {}", dst.display()),
        "roam-server.log",
    );
    std::thread::sleep(Duration::from_millis(300));
    let client = lab.spawn(
        &a,
        &format!(
            "bash -c 'for i in $(seq 0 23); do dd if={} bs=512K skip=$i count=1 status=none; sleep 0.2; done \
             | timeout 60 nc -N -w 15 {B_VPN} 5003'",
            src.display()
        ),
        "roam-client.log",
    );
    std::thread::sleep(Duration::from_millis(2000));
    let t_move = Instant::now();
    eprintln!(
        "{label}: moving b at {}",
        must("date -u +%H:%M:%S.%N").trim()
    );
    must(&format!(
        "ip -n {b} addr add 192.0.2.13/24 dev eth0 && ip -n {b} addr del 192.0.2.3/24 dev eth0"
    ));
    let st = lab.wait_exit(client, Duration::from_secs(45));
    let _ = lab.wait_exit(server, Duration::from_secs(15));
    let took = t_move.elapsed().as_secs_f64();
    assert!(
        st.is_some_and(|s| s.success()),
        "{label}: sender failed: {st:?}\n{}",
        logs(&lab)
    );
    let x = must(&format!("sha256sum < {}", src.display()));
    let y = must(&format!("sha256sum < {}", dst.display()));
    assert_eq!(x, y, "{label}: data corrupted or cut short\n{}", logs(&lab));
    let alog = lab.log("a.log");
    let roamed = alog.contains("192.0.2.13");
    eprintln!(
        "{label}: moved at {}; a's first mention of the new address: {}",
        must("date -u +%H:%M:%S.%N").trim(),
        alog.lines()
            .find(|l| l.contains("192.0.2.13") && l.contains("oamed"))
            .unwrap_or("none")
    );
    assert!(
        roamed,
        "{label}: a never saw b's new address\n{}",
        logs(&lab)
    );
    // Still answers at the new address.
    assert!(
        lab.wait_ping(&a, B_VPN, Duration::from_secs(5)),
        "{label}: ping after the move\n{}",
        logs(&lab)
    );
    let handshakes = if a_impl == Impl::Ours {
        alog.lines()
            .filter(|l| l.contains("tunnel up") && l.contains(B_VPN))
            .count()
    } else {
        alog.lines()
            .filter(|l| l.contains("Handshake message received") && l.contains(B_VPN))
            .count()
    };
    eprintln!(
        "{label}: transfer finished {took:.1} s after the move; tunnels to b made by a: {handshakes}"
    );
    if a_impl == Impl::Ours {
        assert_eq!(handshakes, 1, "{label}: a re-handshook\n{}", logs(&lab));
    }
}

#[test]
fn roaming_mid_transfer_ours() {
    roam_mid_transfer("nrm1", Impl::Ours, "roaming: ours a, ours b");
}

#[test]
fn roaming_mid_transfer_go_peer() {
    roam_mid_transfer("nrm2", Impl::Go1110, "roaming: go1.11.0 a, ours b");
}

#[test]
fn two_lighthouses_one_stopped() {
    // Our lighthouse and a Go 1.11.0 lighthouse; the nodes (ours, behind NATs) use both. With
    // ours stopped, the Go one alone brings A and B together, directly.
    const LH2_VPN: &str = "10.77.0.4";
    let mut lab = Lab::new("n2l");
    let lh1 = lab.public_host("lh", LH_IP);
    let lh2 = lab.public_host("lh2", "192.0.2.4");
    let (a, ra) = lab.natted_host("a", "192.0.2.2", "192.168.41", false);
    let (b, rb) = lab.natted_host("b", "192.0.2.3", "192.168.42", false);
    for r in [&ra, &rb] {
        must(&format!(
            "ip netns exec {r} iptables -A INPUT -i eth0 -m conntrack --ctstate NEW -j DROP"
        ));
    }
    let pki = Pki::new(Version::V1, Curve::Curve25519);
    let dir = lab.dir.path().to_path_buf();
    let hosts = [
        ("lh", LH_VPN, lh1.clone(), Impl::Ours, true),
        ("lh2", LH2_VPN, lh2.clone(), Impl::Go1110, true),
        ("a", A_VPN, a.clone(), Impl::Ours, false),
        ("b", B_VPN, b.clone(), Impl::Ours, false),
    ];
    for (name, vpn, _, _, _) in &hosts {
        pki.host(&dir, name, &format!("{vpn}/16"), &[name]);
    }
    let mut idx = Vec::new();
    for (name, _, ns, imp, am_lh) in hosts {
        let mut cfg = node_config(&NodeOpts {
            name,
            dir: &dir,
            listen_port: if am_lh { 4242 } else { 0 },
            am_lighthouse: am_lh,
            lighthouse: if am_lh {
                None
            } else {
                Some((LH_VPN, "192.0.2.1:4242"))
            },
            statics: if am_lh {
                vec![]
            } else {
                vec![(LH2_VPN, "192.0.2.4:4242")]
            },
            cipher: "aes",
            dev: "nebula1",
            inbound: ALLOW_ALL_IN,
            punchy: true,
        });
        if !am_lh {
            let one = format!("  hosts:\n    - \"{LH_VPN}\"\n");
            assert!(cfg.contains(&one), "{cfg}");
            cfg = cfg.replace(&one, &format!("{one}    - \"{LH2_VPN}\"\n"));
        }
        let path = lab.write(&format!("{name}.yml"), &cfg);
        idx.push(lab.spawn(&ns, &imp.cmd(&path), &format!("{name}.log")));
    }
    let logs = |lab: &Lab| {
        let mut s = String::new();
        for n in ["lh", "lh2", "a", "b"] {
            let log = lab.log(&format!("{n}.log"));
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            s.push_str(&format!("----- {n}.log -----\n"));
            for l in tail.into_iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    };
    for ns in [&a, &b] {
        for lh in [LH_VPN, LH2_VPN] {
            assert!(
                lab.wait_ping(ns, lh, Duration::from_secs(15)),
                "{ns} -> {lh}\n{}",
                logs(&lab)
            );
        }
    }
    // Both lighthouses now know A and B (updates go to every lighthouse). Stop ours.
    lab.kill(idx[0], "KILL");
    let _ = lab.wait_exit(idx[0], Duration::from_secs(5));
    let t0 = Instant::now();
    assert!(
        lab.wait_ping(&a, B_VPN, Duration::from_secs(25)),
        "a -> b with one lighthouse down\n{}",
        logs(&lab)
    );
    let took = t0.elapsed().as_secs_f64();
    let cap = Capture::start(&mut lab, &lh2, "lh2");
    assert!(
        lab.tcp_transfer(&a, &b, B_VPN, 5004, 4),
        "tcp a -> b\n{}",
        logs(&lab)
    );
    let (udp, big) = cap.stop(&mut lab);
    eprintln!(
        "two lighthouses, ours stopped: first a->b ping after {took:.2} s; \
         go lighthouse saw {udp} UDP datagrams during 4 MiB, {big} > 600 bytes"
    );
    assert!(
        big < 20,
        "data passed the lighthouse: {big}\n{}",
        logs(&lab)
    );
}
