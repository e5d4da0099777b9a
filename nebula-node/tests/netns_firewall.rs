//! The ADR's firewall policy end to end (root, namespaces): group `public-ingress` reaches TCP 443
//! on an ingress host, others do not; ICMP is allowed; replies to outbound connections flow; a
//! SIGHUP that removes the rule cuts an open connection.
#![cfg(feature = "netns")]

mod support;

use std::time::{Duration, Instant};

use nebula_cert::{Curve, Version};
use support::*;

const INGRESS: &str = "10.77.0.10";
const MEMBER: &str = "10.77.0.20";
const OUTSIDER: &str = "10.77.0.30";

fn ingress_rules(with_443: bool) -> String {
    let mut s = String::from("    - port: any\n      proto: icmp\n      host: any\n");
    if with_443 {
        s.push_str("    - port: 443\n      proto: tcp\n      group: public-ingress\n");
    }
    s
}

#[test]
fn adr_policy_and_sighup_revocation() {
    let mut lab = Lab::new("fw");
    let ns_i = lab.public_host("ingress", "192.0.2.10");
    let ns_m = lab.public_host("member", "192.0.2.20");
    let ns_o = lab.public_host("outsider", "192.0.2.30");
    let pki = Pki::new(Version::V1, Curve::Curve25519);
    let dir = lab.dir.path().to_path_buf();
    pki.host(
        &dir,
        "ingress",
        &format!("{INGRESS}/16"),
        &["public-ingress"],
    );
    pki.host(&dir, "member", &format!("{MEMBER}/16"), &["public-ingress"]);
    pki.host(&dir, "outsider", &format!("{OUTSIDER}/16"), &["laptops"]);
    let statics = vec![
        (INGRESS, "192.0.2.10:4242"),
        (MEMBER, "192.0.2.20:4242"),
        (OUTSIDER, "192.0.2.30:4242"),
    ];
    let member_rules = "    - port: any\n      proto: icmp\n      host: any\n    - port: 8080\n      proto: tcp\n      host: any\n";
    let mut procs = Vec::new();
    for (name, ns, rules) in [
        ("ingress", &ns_i, ingress_rules(true)),
        ("member", &ns_m, member_rules.to_string()),
        ("outsider", &ns_o, member_rules.to_string()),
    ] {
        let opts = NodeOpts {
            inbound: &rules,
            ..static_node(name, &dir, &statics)
        };
        procs.push(lab.start_node(ns, &opts, &our_nebula()));
    }
    let logs = |lab: &Lab| {
        ["ingress", "member", "outsider"]
            .iter()
            .map(|n| format!("--- {n}\n{}", lab.log(&format!("{n}.log"))))
            .collect::<Vec<_>>()
            .join("\n")
    };

    // ICMP is allowed from anyone.
    assert!(
        lab.wait_ping(&ns_m, INGRESS, Duration::from_secs(15)),
        "member ping\n{}",
        logs(&lab)
    );
    assert!(
        lab.wait_ping(&ns_o, INGRESS, Duration::from_secs(15)),
        "outsider ping\n{}",
        logs(&lab)
    );

    // TCP 443: the member gets through, the outsider does not; another port is closed for both.
    assert!(
        lab.tcp_transfer(&ns_m, &ns_i, INGRESS, 443, 1),
        "member -> 443\n{}",
        logs(&lab)
    );
    let blocked = lab.exec(&ns_o, &format!("timeout 5 nc -z -w 3 {INGRESS} 443"));
    assert!(!blocked.status.success(), "outsider reached 443");
    let blocked = lab.exec(&ns_m, &format!("timeout 5 nc -z -w 3 {INGRESS} 22"));
    assert!(!blocked.status.success(), "member reached 22");

    // Replies to the ingress host's own outbound connection flow back (conntrack), although its
    // inbound rules allow no TCP from the member's port 8080.
    assert!(
        lab.tcp_transfer(&ns_i, &ns_m, MEMBER, 8080, 1),
        "ingress -> member:8080 replies\n{}",
        logs(&lab)
    );

    // An open connection from the member to 443, then SIGHUP with the rule removed: it stops.
    let sink = lab.path("stream.out");
    let server = lab.spawn(
        &ns_i,
        &format!("timeout 60 nc -l 443 > {}", sink.display()),
        "stream-server.log",
    );
    std::thread::sleep(Duration::from_millis(300));
    let client = lab.spawn(
        &ns_m,
        &format!("bash -c 'for i in $(seq 1 400); do echo line-$i; sleep 0.1; done | timeout 60 nc -w 30 {INGRESS} 443'"),
        "stream-client.log",
    );
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let start = Instant::now();
    while size(&sink) < 50 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(size(&sink) >= 50, "stream never started\n{}", logs(&lab));
    std::thread::sleep(Duration::from_secs(1));
    let growing = size(&sink);
    assert!(growing > 50);
    // Revoke: rewrite the ingress config without the 443 rule and SIGHUP.
    let revoked = ingress_rules(false);
    let opts = NodeOpts {
        inbound: &revoked,
        ..static_node("ingress", &dir, &statics)
    };
    lab.write("ingress.yml", &node_config(&opts));
    lab.kill(procs[0], "HUP");
    std::thread::sleep(Duration::from_secs(2));
    let after_hup = size(&sink);
    std::thread::sleep(Duration::from_secs(3));
    let later = size(&sink);
    assert_eq!(
        after_hup,
        later,
        "connection still flowing after the rule was removed\n{}",
        logs(&lab)
    );
    assert!(
        lab.log("ingress.log").contains("reloading config"),
        "{}",
        logs(&lab)
    );
    // ICMP still works after the reload, and new 443 connections are refused.
    assert!(lab.wait_ping(&ns_m, INGRESS, Duration::from_secs(5)));
    let refused = lab.exec(&ns_m, &format!("timeout 5 nc -z -w 3 {INGRESS} 443"));
    assert!(
        !refused.status.success(),
        "new 443 connection after revocation"
    );
    let _ = (server, client);
}

/// `firewall.inbound_action: reject`: a refused TCP connection gets a RST back through the tunnel
/// (the client sees "connection refused" at once), where `drop` leaves it to time out.
#[test]
fn reject_action_answers_with_a_reset() {
    let mut lab = Lab::new("rj");
    let ns_i = lab.public_host("ingress", "192.0.2.10");
    let ns_m = lab.public_host("member", "192.0.2.20");
    let pki = Pki::new(Version::V1, Curve::Curve25519);
    let dir = lab.dir.path().to_path_buf();
    pki.host(
        &dir,
        "ingress",
        &format!("{INGRESS}/16"),
        &["public-ingress"],
    );
    pki.host(&dir, "member", &format!("{MEMBER}/16"), &["public-ingress"]);
    let statics = vec![(INGRESS, "192.0.2.10:4242"), (MEMBER, "192.0.2.20:4242")];
    let rules = ingress_rules(true);
    let opts = NodeOpts {
        inbound: &rules,
        ..static_node("ingress", &dir, &statics)
    };
    let mut cfg = node_config(&opts);
    cfg = cfg.replacen("firewall:\n", "firewall:\n  inbound_action: reject\n", 1);
    let path = lab.write("ingress.yml", &cfg);
    lab.spawn(
        &ns_i,
        &format!("{} -config {}", our_nebula().display(), path.display()),
        "ingress.log",
    );
    lab.start_node(&ns_m, &static_node("member", &dir, &statics), &our_nebula());
    assert!(
        lab.wait_ping(&ns_m, INGRESS, Duration::from_secs(15)),
        "{}",
        lab.log("ingress.log")
    );
    // Port 22 is not allowed: with reject the client is refused quickly, not left hanging.
    let start = Instant::now();
    let o = lab.exec(
        &ns_m,
        &format!("timeout 8 nc -z -w 6 {INGRESS} 22 2>&1; echo rc=$?"),
    );
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains("rc=1"), "nc should fail: {text}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "refused only after {:?} (no RST came back): {text}",
        start.elapsed()
    );
    // Allowed traffic still flows.
    assert!(lab.tcp_transfer(&ns_m, &ns_i, INGRESS, 443, 1));
}
