//! End-to-end tests in network namespaces (root): our `nebula` with real TUN devices and UDP, with
//! itself and mixed with Debian's Go Nebula 1.6.1 and 1.11.0, lighthouses of both kinds, NAT.
#![cfg(all(feature = "netns", feature = "interop"))]

mod support;

use std::time::Duration;

use nebula_cert::{Curve, Version};
use support::*;

const LH_VPN: &str = "10.66.0.1";
const A_VPN: &str = "10.66.0.2";
const B_VPN: &str = "10.66.0.3";

struct Mesh {
    lab: Lab,
    a: String,
    b: String,
    procs: Vec<(String, usize)>,
}

/// Lighthouse on the wan, A on the wan, B behind a NAT. Everyone knows only the lighthouse.
fn mesh(tag: &str, lh_impl: Impl, a_impl: Impl, b_impl: Impl, cipher: &str) -> Mesh {
    mesh_with(tag, lh_impl, a_impl, b_impl, cipher, Tuning::default())
}

/// How our nodes in a mesh are tuned.
#[derive(Clone, Copy)]
struct Tuning {
    /// `false` turns off our TUN and UDP offloads (`tun.use_offloads`, `listen.udp_offloads`).
    offloads: bool,
    /// `routines`: data-plane workers.
    routines: usize,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            offloads: true,
            routines: 1,
        }
    }
}

/// As `mesh`, with our nodes tuned.
fn mesh_with(
    tag: &str,
    lh_impl: Impl,
    a_impl: Impl,
    b_impl: Impl,
    cipher: &str,
    tuning: Tuning,
) -> Mesh {
    let mut lab = Lab::new(tag);
    let lh = lab.public_host("lh", "192.0.2.1");
    let a = lab.public_host("a", "192.0.2.2");
    let (b, _router) = lab.natted_host("b", "192.0.2.3", "192.168.33", false);
    let pki = Pki::new(Version::V1, Curve::Curve25519);
    let dir = lab.dir.path().to_path_buf();
    let mut procs = Vec::new();
    let hosts = [
        ("lh", LH_VPN, &lh, lh_impl, true),
        ("a", A_VPN, &a, a_impl, false),
        ("b", B_VPN, &b, b_impl, false),
    ];
    for (name, vpn, _, _, _) in &hosts {
        pki.host(&dir, name, &format!("{vpn}/16"), &[name]);
    }
    for (name, _, ns, imp, am_lh) in hosts {
        let cfg = node_config(&lighthouse_mesh_node(
            name,
            &dir,
            am_lh,
            (LH_VPN, "192.0.2.1:4242"),
            cipher,
        ));
        let cfg = if tuning.offloads || imp != Impl::Ours {
            cfg
        } else {
            cfg.replacen("tun:\n", "tun:\n  use_offloads: false\n", 1)
                .replacen("listen:\n", "listen:\n  udp_offloads: false\n", 1)
        };
        let cfg = if imp == Impl::Ours {
            format!("{cfg}routines: {}\n", tuning.routines)
        } else {
            cfg
        };
        let path = lab.write(&format!("{name}.yml"), &cfg);
        let idx = lab.spawn(ns, &imp.cmd(&path), &format!("{name}.log"));
        procs.push((name.to_string(), idx));
    }
    Mesh { lab, a, b, procs }
}

impl Mesh {
    fn logs(&self) -> String {
        let mut s = String::new();
        for (name, _) in &self.procs {
            s.push_str(&format!(
                "----- {name}.log -----\n{}\n",
                self.lab.log(&format!("{name}.log"))
            ));
        }
        s
    }
}

fn ping_and_transfer(m: &mut Mesh, label: &str) {
    let (a, b) = (m.a.clone(), m.b.clone());
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
    assert!(
        m.lab.wait_ping(&a, B_VPN, Duration::from_secs(20)),
        "{label}: a -> b\n{}",
        m.logs()
    );
    assert!(
        m.lab.wait_ping(&b, A_VPN, Duration::from_secs(10)),
        "{label}: b -> a\n{}",
        m.logs()
    );
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
    for (from, to, ip, port) in [(&a, &b, B_VPN, 5003), (&b, &a, A_VPN, 5004)] {
        let (ok, bad) = m.lab.udp_transfer(from, to, ip, port);
        assert_eq!(bad, 0, "{label}: corrupted UDP datagrams\n{}", m.logs());
        // Local veths drop nothing; allow a few for a loaded machine.
        assert!(
            ok >= 290,
            "{label}: only {ok} of 300 UDP datagrams to {ip}\n{}",
            m.logs()
        );
    }
}

#[test]
fn ours_with_ours_both_ciphers() {
    for cipher in ["aes", "chachapoly"] {
        let mut m = mesh("oo", Impl::Ours, Impl::Ours, Impl::Ours, cipher);
        ping_and_transfer(&mut m, &format!("ours/{cipher}"));
    }
}

#[test]
fn ours_without_offloads_with_ours_and_go() {
    let off = Tuning {
        offloads: false,
        ..Tuning::default()
    };
    let mut m = mesh_with("nof", Impl::Ours, Impl::Ours, Impl::Ours, "aes", off);
    ping_and_transfer(&mut m, "ours, offloads off");
    let mut m = mesh_with("nog", Impl::Go1110, Impl::Ours, Impl::Go1110, "aes", off);
    ping_and_transfer(&mut m, "go1110 lh and b, ours a with offloads off");
}

#[test]
fn ours_with_several_workers_with_ours_and_go() {
    // Two workers per node: two TUN queues, two SO_REUSEPORT sockets, one shared session table.
    let two = Tuning {
        routines: 2,
        ..Tuning::default()
    };
    let mut m = mesh_with("rt2", Impl::Ours, Impl::Ours, Impl::Ours, "aes", two);
    ping_and_transfer(&mut m, "ours, 2 routines");
    for (name, _) in &m.procs {
        let log = m.lab.log(&format!("{name}.log"));
        assert!(log.contains("workers=2"), "{name} runs 2 workers\n{log}");
    }
    let mut m = mesh_with(
        "rtg",
        Impl::Go1110,
        Impl::Ours,
        Impl::Go1110,
        "chachapoly",
        two,
    );
    ping_and_transfer(&mut m, "go1110 lh and b, ours a with 2 routines");
}

#[test]
fn ours_with_go_1_6_1_both_directions() {
    // Go lighthouse serving ours, Go node talking to ours; then our lighthouse serving Go.
    let mut m = mesh("g6a", Impl::Go161, Impl::Ours, Impl::Go161, "aes");
    ping_and_transfer(&mut m, "go161 lh, ours a, go b");
    let mut m = mesh("g6b", Impl::Ours, Impl::Go161, Impl::Ours, "chachapoly");
    ping_and_transfer(&mut m, "ours lh, go a, ours b");
}

#[test]
fn ours_with_go_1_11_0_both_directions() {
    let mut m = mesh("gba", Impl::Go1110, Impl::Ours, Impl::Go1110, "chachapoly");
    ping_and_transfer(&mut m, "go1110 lh, ours a, go b");
    let mut m = mesh("gbb", Impl::Ours, Impl::Go1110, Impl::Ours, "aes");
    ping_and_transfer(&mut m, "ours lh, go a, ours b");
}

#[test]
fn kill_9_and_restart_resumes_traffic() {
    let mut m = mesh("k9", Impl::Ours, Impl::Ours, Impl::Ours, "aes");
    let (a, b) = (m.a.clone(), m.b.clone());
    assert!(
        m.lab.wait_ping(&a, B_VPN, Duration::from_secs(20)),
        "before\n{}",
        m.logs()
    );
    let bidx = m.procs[2].1;
    m.lab.kill(bidx, "9");
    let _ = m.lab.wait_exit(bidx, Duration::from_secs(5));
    let cfg = m.lab.path("b.yml");
    let idx = m.lab.spawn(&b, &Impl::Ours.cmd(&cfg), "b2.log");
    m.procs.push(("b2".into(), idx));
    // Go's defaults: a dead tunnel is noticed within ~15 s (5 s check + 10 s pending deletion),
    // a recvError makes it immediate.
    assert!(
        m.lab.wait_ping(&a, B_VPN, Duration::from_secs(30)),
        "after restart\n{}",
        m.logs()
    );
    assert!(
        m.lab.wait_ping(&b, A_VPN, Duration::from_secs(10)),
        "after restart b->a\n{}",
        m.logs()
    );
}

#[test]
fn sigterm_closes_tunnels_and_removes_the_device() {
    let mut m = mesh("st", Impl::Ours, Impl::Ours, Impl::Ours, "aes");
    let (a, b) = (m.a.clone(), m.b.clone());
    assert!(
        m.lab.wait_ping(&a, B_VPN, Duration::from_secs(20)),
        "{}",
        m.logs()
    );
    let aidx = m.procs[1].1;
    m.lab.kill(aidx, "TERM");
    let st = m.lab.wait_exit(aidx, Duration::from_secs(5));
    assert!(
        st.is_some_and(|s| s.success()),
        "clean exit: {st:?}\n{}",
        m.logs()
    );
    // The device is gone, and B heard the closeTunnel.
    let o = m.lab.exec(&a, "ip link show nebula1");
    assert!(!o.status.success(), "device still there");
    std::thread::sleep(Duration::from_millis(500));
    let blog = m.lab.log("b.log");
    assert!(blog.contains("PeerClosed"), "b saw no closeTunnel:\n{blog}");
    let _ = b;
}
