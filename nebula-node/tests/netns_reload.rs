//! SIGHUP with a changed certificate: the node swaps it without a restart and its tunnels move to
//! the new certificate (re-handshake), as Go 1.7+ does; and with a new remote allow list, which
//! applies to the next handshakes. Namespaces, real daemons (root).
#![cfg(feature = "netns")]

mod support;

use std::time::{Duration, Instant};

use nebula_cert::{Curve, Version};
use support::*;

const A_VPN: &str = "10.91.0.1";
const B_VPN: &str = "10.91.0.2";

#[test]
fn sighup_swaps_the_certificate_without_a_restart() {
    let mut lab = Lab::new("hup");
    let ns_a = lab.public_host("a", "192.0.2.1");
    let ns_b = lab.public_host("b", "192.0.2.2");
    let pki = Pki::new(Version::V1, Curve::Curve25519);
    let dir = lab.dir.path().to_path_buf();
    pki.host(&dir, "a", &format!("{A_VPN}/16"), &["before"]);
    pki.host(&dir, "b", &format!("{B_VPN}/16"), &[]);
    let statics = vec![(A_VPN, "192.0.2.1:4242"), (B_VPN, "192.0.2.2:4242")];
    let mut idx = Vec::new();
    for (name, ns) in [("a", &ns_a), ("b", &ns_b)] {
        idx.push(lab.start_node(ns, &static_node(name, &dir, &statics), &our_nebula()));
    }
    assert!(
        lab.wait_ping(&ns_a, B_VPN, Duration::from_secs(15)),
        "{}",
        lab.log("a.log")
    );
    let pid_before = lab.pid(idx[0]);
    // A new certificate (new key, new group, same address) for A, then SIGHUP.
    pki.host(&dir, "a", &format!("{A_VPN}/16"), &["after"]);
    lab.kill(idx[0], "HUP");
    // B sees A's new certificate within a couple of connection checks, traffic never stops.
    let end = Instant::now() + Duration::from_secs(25);
    let mut swapped = false;
    while Instant::now() < end {
        let o = lab.exec(&ns_b, &format!("ping -c 1 -W 1 {A_VPN}"));
        assert!(
            o.status.success(),
            "traffic stopped during the swap\n{}\n{}",
            lab.log("a.log"),
            lab.log("b.log")
        );
        if lab.log("b.log").matches("cert_name=a").count() >= 2 {
            swapped = true;
            break;
        }
    }
    assert!(
        swapped,
        "b never saw a second handshake from a\n{}\n{}",
        lab.log("a.log"),
        lab.log("b.log")
    );
    assert_eq!(lab.pid(idx[0]), pid_before);
    assert!(
        lab.wait_exit(idx[0], Duration::from_millis(10)).is_none(),
        "a restarted or died"
    );
    assert!(lab.log("a.log").contains("reloading config"));
}

#[test]
fn sighup_applies_a_new_remote_allow_list() {
    let mut lab = Lab::new("hupal");
    let ns_a = lab.public_host("a", "192.0.2.1");
    let ns_b = lab.public_host("b", "192.0.2.2");
    let pki = Pki::new(Version::V1, Curve::Curve25519);
    let dir = lab.dir.path().to_path_buf();
    pki.host(&dir, "a", &format!("{A_VPN}/16"), &[]);
    pki.host(&dir, "b", &format!("{B_VPN}/16"), &[]);
    let statics = vec![(A_VPN, "192.0.2.1:4242"), (B_VPN, "192.0.2.2:4242")];
    let a = lab.start_node(&ns_a, &static_node("a", &dir, &statics), &our_nebula());
    let b = lab.start_node(&ns_b, &static_node("b", &dir, &statics), &our_nebula());
    assert!(
        lab.wait_ping(&ns_b, A_VPN, Duration::from_secs(15)),
        "{}",
        lab.log("a.log")
    );
    // a stops accepting peers from b's underlay network, and reloads.
    let denied = node_config(&static_node("a", &dir, &statics)).replacen(
        "lighthouse:\n",
        "lighthouse:\n  remote_allow_list:\n    \"192.0.2.0/24\": false\n",
        1,
    );
    lab.write("a.yml", &denied);
    lab.kill(a, "HUP");
    let end = Instant::now() + Duration::from_secs(5);
    while !lab.log("a.log").contains("Firewall reloaded") && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    // b comes back with new session keys: its handshakes to a must now be refused.
    lab.kill(b, "9");
    let _ = lab.wait_exit(b, Duration::from_secs(5));
    lab.start_node(&ns_b, &static_node("b", &dir, &statics), &our_nebula());
    assert!(
        !lab.wait_ping(&ns_b, A_VPN, Duration::from_secs(8)),
        "a still accepts b after the reload\n{}",
        lab.log("a.log")
    );
}
