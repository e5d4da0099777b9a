//! Config keys that need the real OS: `tun.use_system_route_table` (routes added and deleted with
//! `ip route` are followed live) and `static_map.cadence` (a host name whose `/etc/hosts` entry
//! changes is re-resolved and the new address used). Namespaces, real daemons (root).
#![cfg(feature = "netns")]

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nebula_cert::cert::TbsCertificate;
use nebula_cert::{keys, Curve, Version};
use support::*;

const A_VPN: &str = "10.93.0.1";
const B_VPN: &str = "10.93.0.2";
const ROUTED: &str = "192.168.50.0/24";
const BEHIND_B: &str = "192.168.50.1";

/// `<name>.crt`/`.key` with `unsafe` networks (the gateway's certificate).
fn host_with_unsafe(pki: &Pki, dir: &std::path::Path, name: &str, network: &str, unsafe_: &str) {
    let (private, public) = keys::keygen(pki.curve);
    let now = now_unix();
    let tbs = TbsCertificate {
        version: pki.version,
        name: name.into(),
        networks: vec![network.parse().expect("network")],
        unsafe_networks: vec![unsafe_.parse().expect("unsafe network")],
        groups: vec![],
        is_ca: false,
        not_before: now - 3600,
        not_after: now + 86400,
        public_key: public,
        curve: pki.curve,
    };
    let cert = tbs.sign(Some(&pki.ca), &pki.key).expect("host cert");
    std::fs::write(dir.join("ca.crt"), pki.ca.marshal_pem()).expect("ca");
    std::fs::write(dir.join(format!("{name}.crt")), cert.marshal_pem()).expect("crt");
    std::fs::write(
        dir.join(format!("{name}.key")),
        keys::marshal_private_key(pki.curve, &private),
    )
    .expect("key");
}

/// Ping fails for the whole of `d` (one try per second).
fn stays_unreachable(lab: &Lab, ns: &str, dst: &str, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if lab
            .exec(ns, &format!("ping -c 1 -W 1 {dst}"))
            .status
            .success()
        {
            return false;
        }
    }
    true
}

#[test]
fn use_system_route_table_follows_ip_route_add_and_del() {
    let mut lab = Lab::new("srt");
    let ns_a = lab.public_host("a", "192.0.2.1");
    let ns_b = lab.public_host("b", "192.0.2.2");
    let pki = Pki::new(Version::V1, Curve::Curve25519);
    let dir = lab.dir.path().to_path_buf();
    pki.host(&dir, "a", &format!("{A_VPN}/16"), &[]);
    host_with_unsafe(&pki, &dir, "b", &format!("{B_VPN}/16"), ROUTED);
    // The routed network lives behind b (an address on its loopback).
    must(&format!("ip -n {ns_b} addr add {BEHIND_B}/32 dev lo"));
    let statics = vec![(A_VPN, "192.0.2.1:4242"), (B_VPN, "192.0.2.2:4242")];
    let a_cfg = node_config(&static_node("a", &dir, &statics)).replacen(
        "tun:\n",
        "tun:\n  use_system_route_table: true\n  use_system_route_table_buffer_size: 1048576\n",
        1,
    );
    let a_path = lab.write("a.yml", &a_cfg);
    lab.spawn(
        &ns_a,
        &format!("{} -config {}", our_nebula().display(), a_path.display()),
        "a.log",
    );
    // Since Go 1.10 a rule without local_cidr admits only the vpn addresses of a host that has
    // unsafe networks: b admits the routed network explicitly.
    let b_in = format!("{ALLOW_ALL_IN}    - port: any\n      proto: any\n      host: any\n      local_cidr: {ROUTED}\n");
    let b_opts = NodeOpts {
        inbound: &b_in,
        ..static_node("b", &dir, &statics)
    };
    lab.start_node(&ns_b, &b_opts, &our_nebula());
    assert!(
        lab.wait_ping(&ns_a, B_VPN, Duration::from_secs(15)),
        "{}",
        lab.log("a.log")
    );

    // The kernel learns the route through the tunnel; so must the node.
    must(&format!(
        "ip -n {ns_a} route add {ROUTED} via {B_VPN} dev nebula1"
    ));
    assert!(
        lab.wait_ping(&ns_a, BEHIND_B, Duration::from_secs(10)),
        "no traffic through the learned route\n{}\n{}",
        lab.log("a.log"),
        lab.log("b.log")
    );
    assert!(lab.log("a.log").contains("Adding route"));

    // Deleted: the node forgets it. A gateway-less route keeps the kernel sending the packets
    // into the TUN, so only the node's own route table can carry them, and it must not.
    must(&format!(
        "ip -n {ns_a} route del {ROUTED} via {B_VPN} dev nebula1"
    ));
    must(&format!("ip -n {ns_a} route add {ROUTED} dev nebula1"));
    assert!(
        stays_unreachable(&lab, &ns_a, BEHIND_B, Duration::from_secs(4)),
        "traffic still routed after ip route del\n{}",
        lab.log("a.log")
    );
    assert!(lab.log("a.log").contains("Removing route"));

    // And learns it again.
    must(&format!("ip -n {ns_a} route del {ROUTED} dev nebula1"));
    must(&format!(
        "ip -n {ns_a} route add {ROUTED} via {B_VPN} dev nebula1"
    ));
    assert!(
        lab.wait_ping(&ns_a, BEHIND_B, Duration::from_secs(10)),
        "route not learned again\n{}",
        lab.log("a.log")
    );
}

/// `/etc/netns/<ns>/`, which `ip netns exec` bind-mounts over `/etc`; removed on drop.
struct NetnsEtc(PathBuf);

impl NetnsEtc {
    fn new(ns: &str) -> NetnsEtc {
        let p = PathBuf::from("/etc/netns").join(ns);
        std::fs::create_dir_all(&p).expect("/etc/netns/<ns>");
        NetnsEtc(p)
    }

    /// Rewrite `hosts` in place (same inode: the bind mount sees the new content).
    fn hosts(&self, content: &str) {
        std::fs::write(self.0.join("hosts"), content).expect("hosts");
    }
}

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn static_map_cadence_picks_up_a_changed_host_name() {
    let mut lab = Lab::new("smc");
    let ns_a = lab.public_host("a", "192.0.2.1");
    let ns_b = lab.public_host("b", "192.0.2.2");
    let pki = Pki::new(Version::V1, Curve::Curve25519);
    let dir = lab.dir.path().to_path_buf();
    pki.host(&dir, "a", &format!("{A_VPN}/16"), &[]);
    pki.host(&dir, "b", &format!("{B_VPN}/16"), &[]);
    // a knows b only by name; the name first points nowhere.
    let etc = NetnsEtc::new(&ns_a);
    etc.hosts("127.0.0.1 localhost\n192.0.2.99 peer-b.test\n");
    let a_cfg = node_config(&static_node("a", &dir, &[(B_VPN, "peer-b.test:4242")])).replacen(
        "lighthouse:\n",
        "static_map:\n  cadence: 1s\n  lookup_timeout: 500ms\nlighthouse:\n",
        1,
    );
    let a_path = lab.write("a.yml", &a_cfg);
    lab.spawn(
        &ns_a,
        &format!("{} -config {}", our_nebula().display(), a_path.display()),
        "a.log",
    );
    lab.start_node(
        &ns_b,
        &static_node("b", &dir, &[(A_VPN, "192.0.2.1:4242")]),
        &our_nebula(),
    );
    assert!(
        stays_unreachable(&lab, &ns_a, B_VPN, Duration::from_secs(3)),
        "reached b through a wrong address?\n{}",
        lab.log("a.log")
    );
    etc.hosts("127.0.0.1 localhost\n192.0.2.2 peer-b.test\n");
    assert!(
        lab.wait_ping(&ns_a, B_VPN, Duration::from_secs(15)),
        "the changed name was not picked up\n{}",
        lab.log("a.log")
    );
    assert!(
        lab.log("a.log")
            .contains("DNS results changed for static_host_map host"),
        "{}",
        lab.log("a.log")
    );
}
