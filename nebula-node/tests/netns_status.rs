//! The operator's view of a mesh (root, network namespaces, Go 1.11.0 as one peer): a lighthouse
//! that also relays, two direct peers (one of them Go's), and a peer reachable only through the
//! relay. `nebula-ctl status` on our node must show each path, a round trip within 50% of `ping`'s
//! and traffic within 5% of what iperf3 moved; `health` must follow the lighthouse going away and
//! coming back; the per-peer metrics must say the same.
#![cfg(all(feature = "netns", feature = "interop"))]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nebula_cert::{Curve, Version};
use nebula_node::status::report::{Path as TunnelPath, Response, Status, TunnelInfo};
use support::*;

const LH_VPN: &str = "10.78.0.1";
const A_VPN: &str = "10.78.0.2";
const B_VPN: &str = "10.78.0.3";
const C_VPN: &str = "10.78.0.4";
const LH_UDP: &str = "192.0.2.1:4242";

fn ctl(lab: &Lab, ns: &str, socket: &Path, args: &str) -> std::process::Output {
    lab.exec(
        ns,
        &format!(
            "{} --socket {} {args}",
            env!("CARGO_BIN_EXE_nebula-ctl"),
            socket.display()
        ),
    )
}

fn status(lab: &Lab, ns: &str, socket: &Path) -> Status {
    let o = ctl(lab, ns, socket, "status --json");
    assert!(
        o.status.success(),
        "nebula-ctl status: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r: Response = serde_json::from_slice(&o.stdout).expect("status JSON");
    r.status.expect("a status")
}

fn tunnel<'a>(s: &'a Status, vpn: &str) -> Option<&'a TunnelInfo> {
    s.tunnels
        .iter()
        .find(|t| t.vpn_addrs.first().map(String::as_str) == Some(vpn))
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    false
}

/// A node config with a larger TUN MTU (so the IP headers are a small part of what iperf3 moves)
/// and `extra` sections.
fn config(opts: &NodeOpts<'_>, extra: &str) -> String {
    format!(
        "{}{extra}",
        node_config(opts).replace("mtu: 1300", "mtu: 8000")
    )
}

/// `ping`'s average round trip in milliseconds.
fn ping_avg_ms(lab: &Lab, ns: &str, dst: &str) -> f64 {
    let o = lab.exec(ns, &format!("ping -q -c 10 -i 0.2 {dst}"));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    // rtt min/avg/max/mdev = 15.1/15.3/15.9/0.2 ms
    text.lines()
        .find(|l| l.contains("min/avg/max"))
        .and_then(|l| l.split('=').nth(1))
        .and_then(|v| v.trim().split('/').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no ping average in {text}"))
}

#[test]
fn status_shows_paths_rtt_traffic_and_health() {
    let mut lab = Lab::new("ss");
    let lh_ns = lab.public_host("lh", "192.0.2.1");
    let a_ns = lab.public_host("a", "192.0.2.2");
    let b_ns = lab.public_host("b", "192.0.2.3");
    let c_ns = lab.public_host("c", "192.0.2.4");
    // Jumbo frames on the underlay, so a tunnelled 8000-byte packet is one datagram.
    let wan = lab.wan();
    must(&format!(
        "for l in $(ip -n {wan} -o link show | awk -F': ' '{{print $2}}' | cut -d@ -f1); do ip -n {wan} link set $l mtu 9000; done"
    ));
    for ns in [&lh_ns, &a_ns, &b_ns, &c_ns] {
        must(&format!("ip -n {ns} link set eth0 mtu 9000"));
    }
    // A reaches B only through a relay on "mid" that delays each datagram 10 ms each way (this
    // kernel has no netem): a round trip of about 20 ms, well above scheduling noise.
    let mid_ns = lab.public_host("mid", "192.0.2.5");
    must(&format!("ip -n {mid_ns} link set eth0 mtu 9000"));
    must(&format!(
        "ip netns exec {a_ns} iptables -A OUTPUT -d 192.0.2.3 -j DROP && ip netns exec {a_ns} iptables -A INPUT -s 192.0.2.3 -j DROP"
    ));
    // C and A cannot reach each other directly: only through the relay.
    must(&format!(
        "ip netns exec {c_ns} iptables -A INPUT -s 192.0.2.2 -j DROP && ip netns exec {c_ns} iptables -A OUTPUT -d 192.0.2.2 -j DROP"
    ));
    let dir: PathBuf = lab.dir.path().to_path_buf();
    let pki = Pki::new(Version::V1, Curve::Curve25519);
    for (name, vpn) in [("lh", LH_VPN), ("a", A_VPN), ("b", B_VPN), ("c", C_VPN)] {
        pki.host(&dir, name, &format!("{vpn}/24"), &[]);
    }
    let lh_cfg = lab.write(
        "lh.yml",
        &config(
            &lighthouse_mesh_node("lh", &dir, true, (LH_VPN, LH_UDP), "aes"),
            "relay:\n  am_relay: true\n",
        ),
    );
    let socket = dir.join("a-control.sock");
    let mut a_opts = lighthouse_mesh_node("a", &dir, false, (LH_VPN, LH_UDP), "aes");
    a_opts.statics = vec![(B_VPN, "192.0.2.5:4243")];
    let a_cfg = lab.write(
        "a.yml",
        &config(
            &a_opts,
            &format!(
                "control:\n  socket: {}\nstats:\n  type: prometheus\n  listen: 127.0.0.1:8080\n  path: /metrics\n  namespace: nebula\n  interval: 1s\n",
                socket.display()
            ),
        ),
    );
    let mut b_opts = lighthouse_mesh_node("b", &dir, false, (LH_VPN, LH_UDP), "aes");
    b_opts.listen_port = 4242;
    let b_cfg = lab.write("b.yml", &config(&b_opts, ""));
    let relay = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/udp_delay.py");
    lab.spawn(
        &mid_ns,
        &format!(
            "python3 {} 192.0.2.5 4243 192.0.2.3 4242 0.010",
            relay.display()
        ),
        "delay.log",
    );
    let c_cfg = lab.write(
        "c.yml",
        &config(
            &lighthouse_mesh_node("c", &dir, false, (LH_VPN, LH_UDP), "aes"),
            &format!("relay:\n  relays:\n    - {LH_VPN}\n  use_relays: true\n"),
        ),
    );
    let lh = lab.spawn(&lh_ns, &Impl::Ours.cmd(&lh_cfg), "lh.log");
    lab.spawn(&b_ns, &Impl::Go1110.cmd(&b_cfg), "b.log");
    lab.spawn(&c_ns, &Impl::Ours.cmd(&c_cfg), "c.log");
    lab.spawn(&a_ns, &Impl::Ours.cmd(&a_cfg), "a.log");
    for (dst, what) in [
        (LH_VPN, "lighthouse"),
        (B_VPN, "Go peer"),
        (C_VPN, "relayed peer"),
    ] {
        assert!(
            lab.wait_ping(&a_ns, dst, Duration::from_secs(40)),
            "no ping to the {what}\na:\n{}\nc:\n{}",
            lab.log("a.log"),
            lab.log("c.log")
        );
    }

    // Paths, once every tunnel has a round trip measured.
    let have_rtts = wait_until(Duration::from_secs(40), || {
        let s = status(&lab, &a_ns, &socket);
        [LH_VPN, B_VPN, C_VPN]
            .iter()
            .all(|v| tunnel(&s, v).is_some_and(|t| t.rtt_ms.is_some()))
    });
    let s = status(&lab, &a_ns, &socket);
    assert!(have_rtts, "round trips not measured: {s:#?}");
    let path = |vpn: &str| tunnel(&s, vpn).map(|t| t.path.clone());
    assert_eq!(
        path(LH_VPN),
        Some(TunnelPath::Direct {
            remote: LH_UDP.into()
        })
    );
    assert_eq!(
        path(B_VPN),
        Some(TunnelPath::Direct {
            remote: "192.0.2.5:4243".into()
        }),
        "{s:#?}"
    );
    assert_eq!(
        path(C_VPN),
        Some(TunnelPath::Relayed { via: LH_VPN.into() }),
        "{s:#?}"
    );
    assert_eq!(tunnel(&s, B_VPN).map(|t| t.name.as_str()), Some("b"));
    assert_eq!(s.health.lighthouses_reachable, 1);

    // The round trip to B against ping's, both through the tunnel, ten probes each.
    let ping = ping_avg_ms(&lab, &a_ns, B_VPN);
    let o = ctl(&lab, &a_ns, &socket, &format!("ping {B_VPN} -c 10"));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "nebula-ctl ping: {text}");
    assert!(text.contains("via direct 192.0.2.5:4243"), "{text}");
    let rtts: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split(" in ").nth(1))
        .filter_map(|v| v.trim_end_matches(" ms").parse().ok())
        .collect();
    assert!(rtts.len() >= 8, "{text}");
    let rtt = rtts.iter().sum::<f64>() / rtts.len() as f64;
    assert!(
        (rtt - ping).abs() <= 0.5 * ping,
        "RTT {rtt:.3} ms (nebula-ctl ping) vs {ping:.3} ms (ping)\n{text}"
    );
    let status_rtt = tunnel(&status(&lab, &a_ns, &socket), B_VPN).and_then(|t| t.rtt_ms);
    assert!(status_rtt.is_some(), "status shows no RTT for b");

    // Traffic against an iperf3 transfer to the lighthouse (direct: the delaying relay to B is
    // not built for bulk traffic).
    lab.spawn(
        &lh_ns,
        &format!("iperf3 -s -1 -B {LH_VPN}"),
        "iperf-server.log",
    );
    std::thread::sleep(Duration::from_secs(1));
    let (before, before_packets) = tunnel(&status(&lab, &a_ns, &socket), LH_VPN)
        .map(|t| (t.tx_bytes, t.tx_packets))
        .expect("tunnel to the lighthouse");
    let o = lab.exec(&a_ns, &format!("iperf3 -c {LH_VPN} -n 20M -J"));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "iperf3: {e}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    let sent = report["end"]["sum_sent"]["bytes"]
        .as_f64()
        .expect("iperf3 bytes sent");
    // What reached the server: iperf3 stops the test when the client has written its bytes, so
    // the tail still in flight is neither received nor (always) through the tunnel yet.
    let received = report["end"]["sum_received"]["bytes"]
        .as_f64()
        .expect("iperf3 bytes received");
    // iperf3 ends when its bytes are written; let the socket buffer drain into the tunnel.
    std::thread::sleep(Duration::from_secs(2));
    let s = status(&lab, &a_ns, &socket);
    let (after, after_packets) = tunnel(&s, LH_VPN)
        .map(|t| (t.tx_bytes, t.tx_packets))
        .expect("tunnel to the lighthouse");
    let counted = (after - before) as f64;
    // Retransmitted segments cross the tunnel again: count them in what iperf3 moved.
    let retransmits = report["end"]["sum_sent"]["retransmits"]
        .as_u64()
        .unwrap_or(0);
    let mss = report["start"]["tcp_mss_default"].as_f64().unwrap_or(0.0);
    // iperf3 stops counting with a tail still in flight: the tunnel carried at least what the
    // server received and at most what the client wrote (plus retransmissions); within 5% of
    // that range (the IP headers are under 1% at this MTU).
    let (low, high) = (received, sent + retransmits as f64 * mss);
    assert!(
        counted >= 0.95 * low && counted <= 1.05 * high,
        "tunnel counted {counted} bytes in {} packets, iperf3 received {received} of {sent} ({retransmits} retransmits of {mss} bytes)",
        after_packets - before_packets
    );
    eprintln!(
        "status after the transfer (iperf3 received {received} of {sent} bytes, {retransmits} retransmits of {mss}; the tunnel counted {counted} in {} packets; ping {ping:.2} ms, rtt {rtt:.2} ms):",
        after_packets - before_packets
    );
    let table = ctl(&lab, &a_ns, &socket, "status");
    eprintln!("{}", String::from_utf8_lossy(&table.stdout));

    // The per-peer metrics say the same.
    let page = lab.exec(&a_ns, "curl -sf http://127.0.0.1:8080/metrics");
    let page = String::from_utf8_lossy(&page.stdout).into_owned();
    assert!(
        page.contains(&format!(
            "nebula_peer_relayed{{peer=\"c\",vpn_addr=\"{C_VPN}\"}} 1.0"
        )),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "nebula_peer_relayed{{peer=\"b\",vpn_addr=\"{B_VPN}\"}} 0.0"
        )),
        "{page}"
    );

    // Health follows the lighthouse.
    let healthy = |lab: &Lab| ctl(lab, &a_ns, &socket, "health").status.code();
    assert_eq!(healthy(&lab), Some(0));
    lab.kill(lh, "KILL");
    assert!(lab.wait_exit(lh, Duration::from_secs(5)).is_some());
    assert!(
        wait_until(Duration::from_secs(60), || healthy(&lab) == Some(1)),
        "health stayed 0 with the lighthouse gone"
    );
    let o = ctl(&lab, &a_ns, &socket, "health");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no lighthouse reachable"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    lab.spawn(&lh_ns, &Impl::Ours.cmd(&lh_cfg), "lh2.log");
    assert!(
        wait_until(Duration::from_secs(90), || healthy(&lab) == Some(0)),
        "health did not recover with the lighthouse back\na:\n{}",
        lab.log("a.log")
    );
}
